//! The library pipeline on the real bundled models.

use crate::common::*;
use lookout::board::Board;
use lookout::frames::source;
use lookout::model;
use lookout::pipeline::{self, Pipeline, Watched};
use lookout::results::record::FrameRecord;
use lookout::results::sink::{Sink, SinkError, SinkSet};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
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
    let address = pipeline.engine_mut().expect("engine").input_address();
    let mut frames = source::open("tests/images/detect", false).expect("images");
    let mut pattern = source::open("pattern:300x100", false).expect("pattern");
    for _ in 0..3 {
        for src in [&mut frames, &mut pattern] {
            let frame = src.next_frame().expect("read").expect("frame");
            pipeline.process(&frame, Duration::ZERO).expect("process");
        }
    }
    assert_eq!(
        pipeline.engine_mut().expect("engine").input_address(),
        address
    );
    assert_eq!(
        pipeline.engine_mut().expect("engine").input_reallocations(),
        0
    );
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

/// A source that notes, at every read, how many frames were read and not yet emitted.
struct Counted {
    inner: Box<dyn source::FrameSource>,
    read: u64,
    emitted: Rc<Cell<u64>>,
    held_at_reads: Vec<u64>,
}

impl source::FrameSource for Counted {
    fn next_frame(&mut self) -> Result<Option<source::Frame>, source::SourceError> {
        self.held_at_reads.push(self.read - self.emitted.get());
        let frame = self.inner.next_frame()?;
        self.read += u64::from(frame.is_some());
        Ok(frame)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Keeps the records and counts them for [`Counted`].
struct Kept {
    records: Rc<RefCell<Vec<FrameRecord>>>,
    emitted: Rc<Cell<u64>>,
}

impl Sink for Kept {
    fn emit(&mut self, record: &FrameRecord) -> Result<(), SinkError> {
        self.emitted.set(self.emitted.get() + 1);
        self.records.borrow_mut().push(record.clone());
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The records of 40 frames of the test scenes run with `lanes` frames in flight, and how
/// many frames were held (read, not emitted) at each read.
fn run_with_lanes(lanes: usize) -> (Vec<FrameRecord>, Vec<u64>) {
    let board_file = repo("boards/host.toml");
    let board = Board::load(&board_file).expect("host board");
    let bundle = model::model_from_files("shapes-detector", &repo("models"), &board, &board_file)
        .expect("bundled detector");
    let mut watched =
        Watched::load(bundle.manifest, &bundle.onnx, &bundle.origin, &board.drift).expect("loads");
    watched.pipeline_mut().set_lanes(lanes);
    let emitted = Rc::new(Cell::new(0));
    let records = Rc::new(RefCell::new(Vec::new()));
    let mut source = Counted {
        inner: source::open("tests/images/detect", true).expect("scenes"),
        read: 0,
        emitted: Rc::clone(&emitted),
        held_at_reads: Vec::new(),
    };
    let mut sinks = SinkSet::new(vec![Box::new(Kept {
        records: Rc::clone(&records),
        emitted,
    })]);
    let summary = pipeline::run(
        &mut watched,
        &mut source,
        &mut sinks,
        Some(40),
        &mut pipeline::Unsteered,
        pipeline::RunExtras::default(),
        |e| panic!("{e}"),
    )
    .expect("runs");
    assert_eq!(summary.frames, 40);
    let records = records.borrow().clone();
    (records, source.held_at_reads)
}

#[test]
fn frames_in_flight_on_two_lanes_come_out_in_order_as_on_one_and_none_wait_in_a_queue() {
    let (one, held_one) = run_with_lanes(1);
    let (two, held_two) = run_with_lanes(2);
    let seqs: Vec<u64> = two.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..40).collect::<Vec<u64>>());
    let without_times = |records: &[FrameRecord]| {
        records
            .iter()
            .map(|r| (r.seq, r.frame.clone(), r.detections.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(without_times(&one), without_times(&two));
    // A frame is read only when a lane is free: never more than the lanes' count held, so a
    // camera's frame is the newest when it is read.
    assert_eq!(held_one.iter().max(), Some(&0), "{held_one:?}");
    assert_eq!(held_two.iter().max(), Some(&1), "{held_two:?}");
}
