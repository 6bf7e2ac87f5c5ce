//! YOLOv5 and YOLOv8 heads: one candidate per anchor point, its box as centre and size.
//!
//! The two differ in layout and scoring. YOLOv8 (ultralytics export) is `[1, 4 + C, N]`, one
//! candidate per *column*, and its class scores are final; some exports transpose it to
//! `[1, N, 4 + C]`, which is accepted too. YOLOv5 is `[1, N, 5 + C]`, one candidate per *row*,
//! with an objectness that multiplies every class probability.
//!
//! A YOLOv8-pose head is the YOLOv8 layout with K·D more values per candidate after the class
//! scores: K keypoints of x, y (and a visibility score when D = 3), in the units of the box.

use super::{
    keypoint_values, push_candidate, push_keypoints, single_shape, single_view, BBox, DecodeError,
    Detection, Geometry, Keypoint, OutputView,
};
use crate::manifest::BoxUnits;

/// Which YOLO head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    /// `[1, N, 5 + C]` with objectness.
    V5,
    /// `[1, 4 + C, N]` without objectness.
    V8,
}

impl Version {
    fn name(self) -> &'static str {
        match self {
            Version::V5 => "yolov5",
            Version::V8 => "yolov8",
        }
    }

    /// Values per candidate, `extra` of them keypoint values.
    fn attributes(self, num_classes: usize, extra: usize) -> usize {
        match self {
            Version::V5 => num_classes.saturating_add(5),
            Version::V8 => num_classes.saturating_add(4),
        }
        .saturating_add(extra)
    }

    fn expected(self, num_classes: usize, keypoints: Option<[usize; 2]>) -> String {
        match (self, keypoints) {
            (Version::V5, _) => format!("[1, N, 5+{num_classes}]"),
            (Version::V8, None) => format!("[1, 4+{num_classes}, N]"),
            (Version::V8, Some([k, d])) => format!("[1, 4+{num_classes}+{k}*{d}, N]"),
        }
    }
}

/// How the candidates lie in the tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `[1, N, attributes]`: one candidate per row, its values contiguous.
    Rows,
    /// `[1, attributes, N]`: one candidate per column, each attribute a contiguous row of N.
    Columns {
        /// N.
        count: usize,
    },
}

/// Decoder for YOLO heads.
#[derive(Debug, Clone)]
pub(super) struct Yolo {
    version: Version,
    num_classes: usize,
    /// `[K, D]` of a pose head.
    keypoints: Option<[usize; 2]>,
    /// K·D: keypoint values per candidate after the class scores (0 without keypoints).
    keypoint_values: usize,
    /// Factors from the head's box units to model-input pixels.
    scale: (f32, f32),
    /// Best class score per candidate for the column layout; reused between frames.
    best: Vec<f32>,
    /// Its class per candidate; reused between frames.
    best_class: Vec<usize>,
}

impl Yolo {
    /// Checks the single output's shape against the head's layout and the label count.
    pub(super) fn new(
        version: Version,
        units: BoxUnits,
        keypoints: Option<[usize; 2]>,
        geometry: Geometry,
        shapes: &[(&str, &[usize])],
    ) -> Result<Self, DecodeError> {
        geometry.check_input(version.name())?;
        let (name, shape) = single_shape(version.name(), shapes)?;
        let yolo = Self {
            version,
            num_classes: geometry.num_classes,
            keypoints,
            keypoint_values: keypoint_values(version.name(), keypoints)?,
            scale: geometry.scale(units),
            best: Vec::new(),
            best_class: Vec::new(),
        };
        yolo.layout(name, shape)?;
        Ok(yolo)
    }

    /// Keypoints each candidate carries (K, or 0 for a plain detector).
    pub(super) fn keypoints_per_candidate(&self) -> usize {
        self.keypoints.map_or(0, |[k, _]| k)
    }

    /// Appends this frame's candidates scoring at least `threshold` to `out`, in candidate order
    /// (which NMS uses to break score ties), and a pose head's keypoints for each of them to
    /// `keypoints`. The data length has been checked against the shape.
    pub(super) fn candidates(
        &mut self,
        outputs: &[OutputView<'_>],
        threshold: f32,
        out: &mut Vec<Detection>,
        keypoints: &mut Vec<Keypoint>,
    ) -> Result<(), DecodeError> {
        let view = single_view(self.version.name(), outputs)?;
        match self.layout(view.name, view.shape)? {
            Layout::Rows => {
                // `attributes` >= 5 here (at least one class), so chunks_exact cannot panic.
                let attributes = self
                    .version
                    .attributes(self.num_classes, self.keypoint_values);
                for row in view.data.chunks_exact(attributes) {
                    self.row(row, threshold, out, keypoints);
                }
            }
            Layout::Columns { count } => self.columns(view.data, count, threshold, out, keypoints),
        }
        Ok(())
    }

    /// Which layout `shape` is in. For YOLOv8 both orientations are accepted, and the
    /// ultralytics one `[1, 4 + C, N]` wins when both fit (N == 4 + C), since that is what an
    /// unmodified export produces.
    fn layout(&self, name: &str, shape: &[usize]) -> Result<Layout, DecodeError> {
        let attributes = self
            .version
            .attributes(self.num_classes, self.keypoint_values);
        match (self.version, shape) {
            (Version::V8, &[1, a, count]) if a == attributes => Ok(Layout::Columns { count }),
            (Version::V8 | Version::V5, &[1, _, a]) if a == attributes => Ok(Layout::Rows),
            _ => Err(DecodeError::Shape {
                output: name.to_owned(),
                decoder: self.version.name(),
                expected: self.version.expected(self.num_classes, self.keypoints),
                got: shape.to_vec(),
            }),
        }
    }

    /// One candidate stored contiguously.
    fn row(
        &self,
        row: &[f32],
        threshold: f32,
        out: &mut Vec<Detection>,
        keypoints: &mut Vec<Keypoint>,
    ) {
        let (scores, points) = row.split_at(row.len() - self.keypoint_values);
        let (cx, cy, w, h, class_id, score) = match (self.version, scores) {
            (Version::V8, &[cx, cy, w, h, ref classes @ ..]) => {
                let (class_id, score) = argmax(classes.iter().copied());
                (cx, cy, w, h, class_id, score)
            }
            (Version::V5, &[cx, cy, w, h, objectness, ref classes @ ..]) => {
                let (class_id, score) = argmax(classes.iter().map(|p| objectness * p));
                (cx, cy, w, h, class_id, score)
            }
            _ => return,
        };
        if score >= threshold
            && push_candidate(out, class_id, score, self.bbox(cx, cy, w, h))
            && self.keypoint_values > 0
        {
            push_keypoints(keypoints, points.iter().copied(), self.dims(), self.scale);
        }
    }

    /// D: values per keypoint.
    fn dims(&self) -> usize {
        self.keypoints.map_or(0, |[_, d]| d)
    }

    /// All candidates of the column layout. Scanning class row by class row keeps memory access
    /// sequential (a column walk would stride through the whole tensor for every candidate),
    /// which matters on a Pi's small caches with 8400 candidates.
    fn columns(
        &mut self,
        data: &[f32],
        count: usize,
        threshold: f32,
        out: &mut Vec<Detection>,
        keypoints: &mut Vec<Keypoint>,
    ) {
        if count == 0 {
            // No candidates; also chunks_exact(0) would panic.
            return;
        }
        // The keypoint rows come last; class scores are the rows between the box and them.
        let (head, points) = data.split_at(data.len() - self.keypoint_values * count);
        let mut rows = head.chunks_exact(count);
        let (Some(cx), Some(cy), Some(w), Some(h)) =
            (rows.next(), rows.next(), rows.next(), rows.next())
        else {
            return;
        };
        self.best.clear();
        self.best.resize(count, f32::NEG_INFINITY);
        self.best_class.clear();
        self.best_class.resize(count, 0);
        for (class_id, scores) in rows.enumerate() {
            for ((best, best_class), &score) in self
                .best
                .iter_mut()
                .zip(self.best_class.iter_mut())
                .zip(scores)
            {
                // Strictly greater: ties keep the lower class id, NaN never wins.
                if score > *best {
                    *best = score;
                    *best_class = class_id;
                }
            }
        }
        let boxes = cx.iter().zip(cy).zip(w).zip(h);
        let scores = self.best.iter().zip(&self.best_class);
        for (candidate, ((((&cx, &cy), &w), &h), (&score, &class_id))) in
            boxes.zip(scores).enumerate()
        {
            if score >= threshold
                && push_candidate(out, class_id, score, self.bbox(cx, cy, w, h))
                && self.keypoint_values > 0
            {
                // Strided, but only for candidates above the threshold.
                let values = points.iter().skip(candidate).step_by(count).copied();
                push_keypoints(keypoints, values, self.dims(), self.scale);
            }
        }
    }

    fn bbox(&self, cx: f32, cy: f32, w: f32, h: f32) -> BBox {
        let (sx, sy) = self.scale;
        BBox::from_center(cx * sx, cy * sy, w * sx, h * sy)
    }
}

/// Best (class id, score): ties keep the lower id, NaN never wins; `(0, -inf)` if there is no
/// real score, which no threshold lets through as a candidate.
fn argmax(scores: impl Iterator<Item = f32>) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (class_id, score) in scores.enumerate() {
        if score > best.1 {
            best = (class_id, score);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::super::{Decoded, Decoder};
    use super::*;
    use crate::manifest::{OutputSpec, Thresholds};

    fn spec(version: Version, box_units: BoxUnits) -> OutputSpec {
        match version {
            Version::V5 => OutputSpec::Yolov5 { box_units },
            Version::V8 => OutputSpec::Yolov8 {
                box_units,
                keypoints: None,
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn detect(
        version: Version,
        units: BoxUnits,
        num_classes: usize,
        width: usize,
        height: usize,
        shape: &[usize],
        data: &[f32],
    ) -> Vec<Detection> {
        let mut decoder = Decoder::new(
            &spec(version, units),
            num_classes,
            width,
            height,
            &[("output0".to_string(), shape.to_vec())],
        )
        .expect("shape fits");
        let view = OutputView {
            name: "output0",
            shape,
            data,
        };
        match decoder
            .decode(&[view], &Thresholds::default())
            .expect("decodes")
        {
            Decoded::Detections(list) => list,
            other => panic!("detections expected, got {other:?}"),
        }
    }

    fn bbox(x0: f32, y0: f32, x1: f32, y1: f32) -> BBox {
        BBox { x0, y0, x1, y1 }
    }

    fn assert_close(got: &[Detection], want: &[(usize, f32, BBox)]) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, (class_id, score, b)) in got.iter().zip(want) {
            assert_eq!(g.class_id, *class_id, "{got:?}");
            assert!((g.score - score).abs() < 1e-6, "{got:?}");
            let (gb, b) = (g.bbox, b);
            let diff = [gb.x0 - b.x0, gb.y0 - b.y0, gb.x1 - b.x1, gb.y1 - b.y1];
            assert!(diff.iter().all(|d| d.abs() < 1e-4), "{got:?} vs {want:?}");
        }
    }

    /// Four YOLOv8 candidates (cx, cy, w, h, score0, score1), pixels, default thresholds:
    /// A (20,20,10,10, .9,.1) class 0 -> (15,15)-(25,25), kept;
    /// B (21,20,10,10, .8,.2) class 0 -> (16,15)-(26,25): IoU with A = 90/110 = 0.82 > 0.45,
    ///   suppressed;
    /// C (22,21,10,10, .3,.7) class 1 -> (17,16)-(27,26): IoU with A = 72/128 = 0.56 but another
    ///   class, kept;
    /// D (60,60,10,10, .1,.2) best 0.2 < 0.25, dropped.
    const CANDIDATES: [[f32; 6]; 4] = [
        [20.0, 20.0, 10.0, 10.0, 0.9, 0.1],
        [21.0, 20.0, 10.0, 10.0, 0.8, 0.2],
        [22.0, 21.0, 10.0, 10.0, 0.3, 0.7],
        [60.0, 60.0, 10.0, 10.0, 0.1, 0.2],
    ];

    fn expected_a_and_c() -> [(usize, f32, BBox); 2] {
        [
            (0, 0.9, bbox(15.0, 15.0, 25.0, 25.0)),
            (1, 0.7, bbox(17.0, 16.0, 27.0, 26.0)),
        ]
    }

    /// The candidates in the ultralytics `[1, 6, 4]` layout: attribute-major.
    fn columns() -> Vec<f32> {
        (0..6)
            .flat_map(|a| CANDIDATES.iter().map(move |c| c[a]))
            .collect()
    }

    #[test]
    fn yolov8_suppresses_same_class_and_keeps_other_class() {
        let got = detect(
            Version::V8,
            BoxUnits::Pixels,
            2,
            100,
            100,
            &[1, 6, 4],
            &columns(),
        );
        assert_close(&got, &expected_a_and_c());
    }

    #[test]
    fn yolov8_transposed_layout_gives_the_same_result() {
        let rows: Vec<f32> = CANDIDATES.iter().flatten().copied().collect();
        let got = detect(
            Version::V8,
            BoxUnits::Pixels,
            2,
            100,
            100,
            &[1, 4, 6],
            &rows,
        );
        assert_close(&got, &expected_a_and_c());
    }

    #[test]
    fn yolov8_square_tensor_is_read_as_columns() {
        // [1, 6, 6] fits both layouts with C = 2. Only candidate 0 (the first column) is set:
        // (30, 30, 10, 10, 0.9, 0). Read as rows, row 0 would be (30, 0, 0, 0, 0, 0): no score.
        let mut data = vec![0.0f32; 36];
        for (attribute, value) in [30.0, 30.0, 10.0, 10.0, 0.9, 0.0].into_iter().enumerate() {
            data[attribute * 6] = value;
        }
        let got = detect(
            Version::V8,
            BoxUnits::Pixels,
            2,
            100,
            100,
            &[1, 6, 6],
            &data,
        );
        assert_close(&got, &[(0, 0.9, bbox(25.0, 25.0, 35.0, 35.0))]);
    }

    #[test]
    fn normalized_units_scale_x_by_width_and_y_by_height() {
        // (0.5, 0.5, 0.1, 0.2) on 200x100 -> centre (100, 50), size 20 x 20 -> (90,40)-(110,60).
        let data = [0.5, 0.5, 0.1, 0.2, 0.8];
        let got = detect(
            Version::V8,
            BoxUnits::Normalized,
            1,
            200,
            100,
            &[1, 5, 1],
            &data,
        );
        assert_close(&got, &[(0, 0.8, bbox(90.0, 40.0, 110.0, 60.0))]);
    }

    #[test]
    fn yolov5_scores_objectness_times_class() {
        // r0: obj .5 x [.6, .9] -> class 1, 0.45, (40,40)-(60,60)
        // r1: obj .9 x [.3, .2] -> class 0, 0.27, (8,8)-(12,12)
        // r2: obj .2 x [.9, .1] -> 0.18 < 0.25 although its class probability is 0.9: dropped.
        let data = [
            50.0, 50.0, 20.0, 20.0, 0.5, 0.6, 0.9, //
            10.0, 10.0, 4.0, 4.0, 0.9, 0.3, 0.2, //
            80.0, 80.0, 10.0, 10.0, 0.2, 0.9, 0.1,
        ];
        let got = detect(
            Version::V5,
            BoxUnits::Pixels,
            2,
            100,
            100,
            &[1, 3, 7],
            &data,
        );
        assert_close(
            &got,
            &[
                (1, 0.45, bbox(40.0, 40.0, 60.0, 60.0)),
                (0, 0.27, bbox(8.0, 8.0, 12.0, 12.0)),
            ],
        );
    }

    #[test]
    fn degenerate_boxes_and_nan_scores_are_dropped() {
        // Candidates as rows of the transposed layout (cx, cy, w, h, score):
        let rows = [
            [10.0, 10.0, 0.0, 5.0, 0.9],           // zero width
            [10.0, 10.0, 5.0, -1.0, 0.9],          // negative height
            [f32::NAN, 10.0, 5.0, 5.0, 0.9],       // NaN centre
            [30.0, 30.0, 5.0, 5.0, f32::NAN],      // NaN score
            [50.0, 50.0, f32::INFINITY, 5.0, 0.9], // infinite width
            [70.0, 70.0, 4.0, 6.0, 0.6],           // the only good one
        ];
        let data: Vec<f32> = rows.iter().flatten().copied().collect();
        let got = detect(
            Version::V8,
            BoxUnits::Pixels,
            1,
            100,
            100,
            &[1, 6, 5],
            &data,
        );
        assert_close(&got, &[(0, 0.6, bbox(68.0, 67.0, 72.0, 73.0))]);
    }

    #[test]
    fn no_candidates_is_an_empty_result() {
        let got = detect(Version::V8, BoxUnits::Pixels, 3, 64, 64, &[1, 7, 0], &[]);
        assert!(got.is_empty());
        let got = detect(Version::V5, BoxUnits::Pixels, 3, 64, 64, &[1, 0, 8], &[]);
        assert!(got.is_empty());
    }

    #[test]
    fn yolov8_class_count_mismatch_is_reported() {
        let err = Decoder::new(
            &spec(Version::V8, BoxUnits::Pixels),
            3,
            640,
            640,
            &[("output0".into(), vec![1, 84, 8400])],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "output `output0`: yolov8 expects [1, 4+3, N], got [1, 84, 8400]"
        );
    }

    #[test]
    fn yolov5_needs_its_own_layout() {
        // 80 classes: [1, 25200, 85]. A YOLOv8-style tensor is refused, so is the transpose.
        for shape in [vec![1, 25200, 84], vec![1, 85, 25200], vec![25200, 85]] {
            let err = Decoder::new(
                &spec(Version::V5, BoxUnits::Pixels),
                80,
                640,
                640,
                &[("output0".into(), shape.clone())],
            )
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("output `output0`: yolov5 expects [1, N, 5+80], got {shape:?}")
            );
        }
    }

    #[test]
    fn frame_shape_is_checked_again() {
        let mut decoder = Decoder::new(
            &spec(Version::V8, BoxUnits::Pixels),
            3,
            64,
            64,
            &[("output0".into(), vec![1, 7, 2])],
        )
        .expect("fits");
        let data = [0.0f32; 16];
        let view = OutputView {
            name: "output0",
            shape: &[1, 8, 2],
            data: &data,
        };
        let err = decoder.decode(&[view], &Thresholds::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output `output0`: yolov8 expects [1, 4+3, N], got [1, 8, 2]"
        );
    }

    #[test]
    fn pose_keypoints_belong_to_the_boxes_nms_keeps_in_both_layouts() {
        // YOLOv8-pose, one class, two keypoints of (x, y, visibility):
        // c0 (20,20,10,10, .9) kept with keypoints (18,19,.8) (22,21,.7);
        // c1 (21,20,10,10, .8) suppressed by c0 (IoU 0.82);
        // c2 (60,60,10,10, .6) kept with keypoints (58,59,.5) (62,61,.4);
        // c3 (80,80,10,10, .1) under the threshold.
        let candidates: [[f32; 11]; 4] = [
            [
                20.0, 20.0, 10.0, 10.0, 0.9, 18.0, 19.0, 0.8, 22.0, 21.0, 0.7,
            ],
            [21.0, 20.0, 10.0, 10.0, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            [
                60.0, 60.0, 10.0, 10.0, 0.6, 58.0, 59.0, 0.5, 62.0, 61.0, 0.4,
            ],
            [80.0, 80.0, 10.0, 10.0, 0.1, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0],
        ];
        let spec = OutputSpec::Yolov8 {
            box_units: BoxUnits::Pixels,
            keypoints: Some([2, 3]),
        };
        let columns: Vec<f32> = (0..11)
            .flat_map(|a| candidates.iter().map(move |c| c[a]))
            .collect();
        let rows: Vec<f32> = candidates.iter().flatten().copied().collect();
        for (shape, data) in [(vec![1, 11, 4], columns), (vec![1, 4, 11], rows)] {
            let mut decoder = Decoder::new(&spec, 1, 100, 100, &[("out".into(), shape.clone())])
                .expect("shape fits");
            let view = OutputView {
                name: "out",
                shape: &shape,
                data: &data,
            };
            let Decoded::Poses(got) = decoder
                .decode(&[view], &Thresholds::default())
                .expect("decodes")
            else {
                panic!("poses expected");
            };
            let summary: Vec<(f32, Vec<[f32; 3]>)> = got
                .iter()
                .map(|p| {
                    (
                        p.detection.score,
                        p.keypoints.iter().map(|k| [k.x, k.y, k.score]).collect(),
                    )
                })
                .collect();
            assert_eq!(
                summary,
                [
                    (0.9, vec![[18.0, 19.0, 0.8], [22.0, 21.0, 0.7]]),
                    (0.6, vec![[58.0, 59.0, 0.5], [62.0, 61.0, 0.4]]),
                ],
                "{shape:?}"
            );
        }
        let err = Decoder::new(&spec, 1, 64, 64, &[("out".into(), vec![1, 5, 8400])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output `out`: yolov8 expects [1, 4+1+2*3, N], got [1, 5, 8400]"
        );
    }

    #[test]
    fn argmax_ties_and_nan() {
        assert_eq!(argmax([0.2, 0.5, 0.5].into_iter()), (1, 0.5));
        assert_eq!(argmax([f32::NAN, 0.1].into_iter()), (1, 0.1));
        assert_eq!(argmax(std::iter::empty()), (0, f32::NEG_INFINITY));
    }
}
