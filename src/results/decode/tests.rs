//! Tests of the shared decoding parts: boxes, IoU, the decoder's checks and buffers.
use super::*;
use crate::manifest::{BoxEncoding, PriorSpec};

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-5
}

fn shapes(list: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
    list.iter()
        .map(|(n, s)| (n.to_string(), s.to_vec()))
        .collect()
}

fn yolov8() -> OutputSpec {
    OutputSpec::Yolov8 {
        box_units: BoxUnits::Pixels,
        keypoints: None,
    }
}

#[test]
fn from_center_gives_corners() {
    let b = BBox::from_center(10.0, 20.0, 4.0, 6.0);
    assert_eq!(
        b,
        BBox {
            x0: 8.0,
            y0: 17.0,
            x1: 12.0,
            y1: 23.0
        }
    );
    assert_eq!(b.area(), 24.0);
}

#[test]
fn iou_of_known_boxes() {
    // (0,0)-(2,2) against (1,1)-(3,3): intersection 1, union 4 + 4 - 1 = 7.
    let a = BBox::from_center(1.0, 1.0, 2.0, 2.0);
    let b = BBox::from_center(2.0, 2.0, 2.0, 2.0);
    assert!(close(a.iou(&b), 1.0 / 7.0), "{}", a.iou(&b));
    assert!(close(b.iou(&a), 1.0 / 7.0));
    assert_eq!(a.iou(&a), 1.0);
    // (0,0)-(2,2) against (0,0)-(2,1): intersection 2, union 4 -> 0.5.
    let half = BBox {
        x0: 0.0,
        y0: 0.0,
        x1: 2.0,
        y1: 1.0,
    };
    assert_eq!(a.iou(&half), 0.5);
    // Touching edges: no overlap.
    let right = BBox::from_center(3.0, 1.0, 2.0, 2.0);
    assert_eq!(a.iou(&right), 0.0);
    // Two empty boxes have an empty union: 0, not NaN.
    let point = BBox::from_center(1.0, 1.0, 0.0, 0.0);
    assert_eq!(point.iou(&point), 0.0);
}

#[test]
fn degenerate_boxes_are_invalid_and_have_no_area() {
    let inverted = BBox {
        x0: 5.0,
        y0: 0.0,
        x1: 1.0,
        y1: 3.0,
    };
    assert_eq!(inverted.area(), 0.0);
    assert!(!inverted.is_valid());
    assert!(!BBox::from_center(1.0, 1.0, 0.0, 2.0).is_valid());
    assert!(!BBox::from_center(f32::NAN, 1.0, 1.0, 1.0).is_valid());
    assert!(!BBox::from_center(1.0, 1.0, f32::INFINITY, 1.0).is_valid());
    assert!(BBox::from_center(1.0, 1.0, 1.0, 1.0).is_valid());
}

#[test]
fn wrong_number_of_outputs_is_reported_with_names() {
    let err = Decoder::new(
        &yolov8(),
        3,
        128,
        128,
        &shapes(&[("output0", &[1, 7, 10]), ("extra", &[1, 2])]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "yolov8 expects exactly 1 output, the model has 2 (output0, extra)"
    );
    let err = Decoder::new(
        &OutputSpec::Classify {
            softmax: false,
            top_k: 1,
        },
        3,
        8,
        8,
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "classify expects exactly 1 output, the model has 0 (none)"
    );
}

#[test]
fn wrong_number_of_outputs_at_decode_time() {
    let mut d =
        Decoder::new(&yolov8(), 3, 128, 128, &shapes(&[("output0", &[1, 7, 0])])).expect("valid");
    let err = d.decode(&[], &Thresholds::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "yolov8 expects exactly 1 output, the model has 0 (none)"
    );
}

#[test]
fn data_length_mismatch_is_an_error_not_a_panic() {
    let mut d =
        Decoder::new(&yolov8(), 3, 128, 128, &shapes(&[("output0", &[1, 7, 2])])).expect("valid");
    let data = [0.0f32; 13];
    let view = OutputView {
        name: "output0",
        shape: &[1, 7, 2],
        data: &data,
    };
    let err = d.decode(&[view], &Thresholds::default()).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::DataLength {
            expected: 14,
            got: 13,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "output `output0`: shape [1, 7, 2] holds 14 values but the tensor has 13"
    );
}

#[test]
fn data_length_is_checked_even_for_raw_and_overflow_saturates() {
    let mut d =
        Decoder::new(&OutputSpec::Raw { values: 32 }, 0, 1, 1, &[]).expect("raw takes anything");
    let huge = [usize::MAX, 2];
    let view = OutputView {
        name: "x",
        shape: &huge,
        data: &[1.0],
    };
    let err = d.decode(&[view], &Thresholds::default()).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::DataLength {
            expected: usize::MAX,
            got: 1,
            ..
        }
    ));
}

#[test]
fn raw_reports_the_shapes_in_order() {
    let mut d = Decoder::new(
        &OutputSpec::Raw { values: 32 },
        0,
        1,
        1,
        &shapes(&[("a", &[1, 2]), ("b", &[3])]),
    )
    .expect("raw takes anything");
    let a = [0.0f32; 2];
    let b = [0.0f32; 3];
    let views = [
        OutputView {
            name: "a",
            shape: &[1, 2],
            data: &a,
        },
        OutputView {
            name: "b",
            shape: &[3],
            data: &b,
        },
    ];
    let got = d.decode(&views, &Thresholds::default()).expect("decodes");
    let Decoded::Raw { shapes, .. } = got else {
        panic!("{got:?}");
    };
    assert_eq!(shapes, vec![vec![1, 2], vec![3]]);
}

#[test]
fn missing_named_output_lists_the_real_ones() {
    let spec = OutputSpec::Ssd {
        scores: "scores".into(),
        boxes: "boxes".into(),
        box_encoding: BoxEncoding::Corners,
        box_units: BoxUnits::Normalized,
        background_class: Some(0),
        priors: None,
        score_activation: crate::manifest::ScoreActivation::None,
    };
    let err = Decoder::new(
        &spec,
        2,
        320,
        240,
        &shapes(&[("boxes", &[1, 10, 4]), ("logits", &[1, 10, 2])]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "model has no output `scores` (outputs: boxes, logits)"
    );
}

#[test]
fn zero_input_size_is_rejected_for_detectors() {
    let err = Decoder::new(&yolov8(), 3, 0, 128, &shapes(&[("o", &[1, 7, 2])])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "yolov8: model input is 0x128, it needs a non-zero size"
    );
    let err = Decoder::new(&yolov8(), 0, 8, 8, &shapes(&[("o", &[1, 4, 2])])).unwrap_err();
    assert_eq!(err.to_string(), "yolov8: needs at least one label");
}

#[test]
fn decoder_reuses_candidate_storage_between_frames() {
    let mut d = Decoder::new(&yolov8(), 1, 64, 64, &shapes(&[("o", &[1, 5, 2])])).expect("valid");
    // Two candidates, columns: (10,10,4,4,0.9) and (40,40,4,4,0.8).
    let data = [10.0, 40.0, 10.0, 40.0, 4.0, 4.0, 4.0, 4.0, 0.9, 0.8];
    let view = OutputView {
        name: "o",
        shape: &[1, 5, 2],
        data: &data,
    };
    let first = d.decode(&[view], &Thresholds::default()).expect("decodes");
    let capacity = d.candidates.capacity();
    let second = d.decode(&[view], &Thresholds::default()).expect("decodes");
    assert_eq!(first, second);
    assert_eq!(d.candidates.capacity(), capacity);
    let Decoded::Detections(list) = second else {
        panic!("detections expected")
    };
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].score, 0.9);
}

#[test]
fn prior_spec_reaches_the_ssd_decoder() {
    // Full wiring through Decoder::new: one stride, one size on a 16x16 input -> 4 priors.
    let spec = OutputSpec::Ssd {
        scores: "scores".into(),
        boxes: "boxes".into(),
        box_encoding: BoxEncoding::CenterOffsets,
        box_units: BoxUnits::Normalized,
        background_class: None,
        priors: Some(PriorSpec {
            steps: vec![8],
            min_sizes: vec![vec![8.0]],
            variance: Some([0.1, 0.2]),
        }),
        score_activation: crate::manifest::ScoreActivation::None,
    };
    let err = Decoder::new(
        &spec,
        1,
        16,
        16,
        &shapes(&[("scores", &[1, 5, 1]), ("boxes", &[1, 5, 4])]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "output `scores`: ssd expects [1, 4, 1] (one row per prior), got [1, 5, 1]"
    );
}
