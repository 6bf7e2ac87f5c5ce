//! The library pipeline on the real bundled models.

mod common;

use common::*;
use lookout::board::Board;
use lookout::frames::source;
use lookout::model;
use lookout::pipeline::Pipeline;
use std::time::Duration;

fn detector() -> Pipeline {
    let board_file = repo("boards/host.toml");
    let board = Board::load(&board_file).expect("host board");
    let bundle = model::model_from_files("shapes-detector", &repo("models"), &board, &board_file)
        .expect("bundled detector passes its check");
    Pipeline::new(bundle.manifest, &bundle.onnx, &bundle.origin).expect("detector loads")
}

#[test]
fn the_embedded_model_is_the_default_model_checked_for_the_default_board() {
    let board = model::embedded_board().expect("embedded board parses");
    assert_eq!(board.name, "host");
    let bundle = model::embedded_model(
        &board,
        std::path::Path::new(lookout::model::embedded::BOARD_ORIGIN),
    )
    .expect("embedded model passes");
    assert_eq!(bundle.manifest.name, "shapes-detector");
    let on_disk = std::fs::read(repo("models/shapes-detector.onnx")).expect("model file");
    assert_eq!(&*bundle.onnx, on_disk.as_slice());
}

#[test]
fn input_buffer_is_reused_across_frames_of_different_sizes() {
    let mut pipeline = detector();
    let address = pipeline.engine_mut().input_address();
    let mut frames = source::open("tests/images/detect", false).expect("images");
    let mut pattern = source::open("pattern:300x100", false).expect("pattern");
    for _ in 0..3 {
        for src in [&mut frames, &mut pattern] {
            let frame = src.next_frame().expect("read").expect("frame");
            pipeline.process(&frame, Duration::ZERO).expect("process");
        }
    }
    assert_eq!(pipeline.engine_mut().input_address(), address);
    assert_eq!(pipeline.engine_mut().input_reallocations(), 0);
}

#[test]
fn the_same_frame_gives_the_same_record_every_time() {
    let mut pipeline = detector();
    let frame = source::open("tests/images/detect", false)
        .expect("images")
        .next_frame()
        .expect("read")
        .expect("frame");
    let first = pipeline.process(&frame, Duration::ZERO).expect("first");
    let second = pipeline.process(&frame, Duration::ZERO).expect("second");
    assert_eq!(second.seq, first.seq + 1);
    assert_eq!(first.detections, second.detections);
    assert!(!first.detections.as_ref().expect("detector").is_empty());
}

#[test]
fn boxes_are_in_source_pixels_inside_the_frame() {
    let mut pipeline = detector();
    let mut frames = source::open("tests/images/detect", false).expect("images");
    while let Some(frame) = frames.next_frame().expect("read") {
        let (w, h) = frame.image.dimensions();
        let record = pipeline.process(&frame, Duration::ZERO).expect("process");
        for d in record.detections.expect("detections") {
            let [x0, y0, x1, y1] = d.bbox;
            assert!(
                0.0 <= x0 && x0 < x1 && x1 <= w as f32,
                "{:?} in {w}x{h}",
                d.bbox
            );
            assert!(
                0.0 <= y0 && y0 < y1 && y1 <= h as f32,
                "{:?} in {w}x{h}",
                d.bbox
            );
            assert!((0.25..=1.0).contains(&d.score));
        }
    }
}
