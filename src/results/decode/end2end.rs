//! End-to-end detectors: the graph ran its own non-maximum suppression.
//!
//! YOLOv10 and Ultralytics exports with `nms=True` (which tract 0.23.9 cannot run: they size
//! their rows at run time) end in `[1, N, 6]`: N rows of x0, y0, x1, y1,
//! score, class (the class id as a float), padded with zero-score rows when fewer objects were
//! found. Pose exports append K·D keypoint values to each row (`[1, N, 6 + K·D]`). The rows are
//! final detections, so lookout applies no NMS of its own (it would drop overlapping boxes the
//! model chose to keep): rows under the score threshold, with an unusable box or with a class id
//! that is not a label index are dropped, the rest ranked best first and cut at
//! `max_detections`.

use super::{
    keypoint_values, push_candidate, push_keypoints, single_shape, single_view, BBox, DecodeError,
    Detection, Geometry, Keypoint, OutputView,
};
use crate::manifest::BoxUnits;

const NAME: &str = "end2end";

/// Decoder for `[1, N, 6 (+ K·D)]`.
#[derive(Debug, Clone)]
pub(super) struct End2end {
    num_classes: usize,
    /// `[K, D]` of a pose model.
    keypoints: Option<[usize; 2]>,
    /// Values per row.
    row: usize,
    /// Factors from the model's units to model-input pixels.
    scale: (f32, f32),
}

impl End2end {
    /// Checks the single output's shape against the layout.
    pub(super) fn new(
        units: BoxUnits,
        keypoints: Option<[usize; 2]>,
        geometry: Geometry,
        shapes: &[(&str, &[usize])],
    ) -> Result<Self, DecodeError> {
        geometry.check_input(NAME)?;
        let (name, shape) = single_shape(NAME, shapes)?;
        let decoder = Self {
            num_classes: geometry.num_classes,
            keypoints,
            row: 6usize.saturating_add(keypoint_values(NAME, keypoints)?),
            scale: geometry.scale(units),
        };
        decoder.check(name, shape)?;
        Ok(decoder)
    }

    /// Keypoints each row carries (K, or 0).
    pub(super) fn keypoints_per_candidate(&self) -> usize {
        self.keypoints.map_or(0, |[k, _]| k)
    }

    fn check(&self, name: &str, shape: &[usize]) -> Result<(), DecodeError> {
        match shape {
            &[1, _, values] if values == self.row => Ok(()),
            _ => Err(DecodeError::Shape {
                output: name.to_owned(),
                decoder: NAME,
                expected: match self.keypoints {
                    None => "[1, N, 6]".to_owned(),
                    Some([k, d]) => format!("[1, N, 6+{k}*{d}]"),
                },
                got: shape.to_vec(),
            }),
        }
    }

    /// Appends the rows scoring at least `threshold` to `out` (and their keypoints to
    /// `keypoints`), in row order.
    pub(super) fn candidates(
        &self,
        outputs: &[OutputView<'_>],
        threshold: f32,
        out: &mut Vec<Detection>,
        keypoints: &mut Vec<Keypoint>,
    ) -> Result<(), DecodeError> {
        let view = single_view(NAME, outputs)?;
        self.check(view.name, view.shape)?;
        let (sx, sy) = self.scale;
        // `row` >= 6, so chunks_exact cannot panic.
        for row in view.data.chunks_exact(self.row) {
            let &[x0, y0, x1, y1, score, class, ref points @ ..] = row else {
                continue;
            };
            // The class travels as a float; anything but a label index is not a detection.
            let class_id = class.round();
            if !(score >= threshold
                && class_id >= 0.0
                && (class_id as usize) < self.num_classes
                && (class - class_id).abs() < 1e-3)
            {
                continue;
            }
            let bbox = BBox {
                x0: x0 * sx,
                y0: y0 * sy,
                x1: x1 * sx,
                y1: y1 * sy,
            };
            if push_candidate(out, class_id as usize, score, bbox) {
                if let Some([_, dims]) = self.keypoints {
                    push_keypoints(keypoints, points.iter().copied(), dims, self.scale);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Decoded, Decoder, Pose};
    use super::*;
    use crate::manifest::{OutputSpec, Thresholds};

    fn decode(
        keypoints: Option<[usize; 2]>,
        units: BoxUnits,
        shape: &[usize],
        data: &[f32],
        thresholds: Thresholds,
    ) -> Decoded {
        let spec = OutputSpec::End2end {
            box_units: units,
            keypoints,
        };
        let mut decoder = Decoder::new(&spec, 2, 200, 100, &[("out".into(), shape.to_vec())])
            .expect("shape fits");
        let view = OutputView {
            name: "out",
            shape,
            data,
        };
        decoder.decode(&[view], &thresholds).expect("decodes")
    }

    #[test]
    fn rows_are_ranked_thresholded_and_never_suppressed() {
        // Two same-class boxes overlapping at IoU 0.82 are both kept: the graph chose them.
        // A low score, a class out of range, a fractional class and an inverted box are dropped.
        let rows = [
            [16.0, 15.0, 26.0, 25.0, 0.8, 0.0],
            [15.0, 15.0, 25.0, 25.0, 0.9, 0.0],
            [50.0, 50.0, 60.0, 60.0, 0.1, 1.0],
            [50.0, 50.0, 60.0, 60.0, 0.9, 2.0],
            [50.0, 50.0, 60.0, 60.0, 0.9, 0.5],
            [60.0, 50.0, 50.0, 60.0, 0.9, 1.0],
            [70.0, 70.0, 80.0, 90.0, 0.5, 1.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ];
        let data: Vec<f32> = rows.iter().flatten().copied().collect();
        let Decoded::Detections(got) = decode(
            None,
            BoxUnits::Pixels,
            &[1, rows.len(), 6],
            &data,
            Thresholds::default(),
        ) else {
            panic!("detections expected");
        };
        let summary: Vec<(usize, f32, [f32; 4])> = got
            .iter()
            .map(|d| {
                (
                    d.class_id,
                    d.score,
                    [d.bbox.x0, d.bbox.y0, d.bbox.x1, d.bbox.y1],
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (0, 0.9, [15.0, 15.0, 25.0, 25.0]),
                (0, 0.8, [16.0, 15.0, 26.0, 25.0]),
                (1, 0.5, [70.0, 70.0, 80.0, 90.0]),
            ]
        );
        let capped = Thresholds {
            max_detections: 2,
            ..Thresholds::default()
        };
        let Decoded::Detections(got) =
            decode(None, BoxUnits::Pixels, &[1, rows.len(), 6], &data, capped)
        else {
            panic!("detections expected");
        };
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn keypoints_follow_their_row_and_normalized_units_scale_them() {
        // Two keypoints of (x, y, visibility), normalized on a 200x100 input.
        let data = [
            0.1, 0.2, 0.3, 0.4, 0.7, 1.0, 0.15, 0.25, 0.9, 0.2, 0.3, 0.1, //
            0.5, 0.5, 0.6, 0.6, 0.95, 0.0, 0.55, 0.55, 0.8, 0.56, 0.57, 0.7,
        ];
        let Decoded::Poses(got) = decode(
            Some([2, 3]),
            BoxUnits::Normalized,
            &[1, 2, 12],
            &data,
            Thresholds::default(),
        ) else {
            panic!("poses expected");
        };
        let points = |p: &Pose| -> Vec<[f32; 3]> {
            p.keypoints.iter().map(|k| [k.x, k.y, k.score]).collect()
        };
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].detection.class_id, 0);
        assert_eq!(got[1].detection.class_id, 1);
        let close = |a: &[[f32; 3]], b: &[[f32; 3]]| {
            a.len() == b.len()
                && a.iter()
                    .flatten()
                    .zip(b.iter().flatten())
                    .all(|(x, y)| (x - y).abs() < 1e-4)
        };
        assert!(
            close(&points(&got[0]), &[[110.0, 55.0, 0.8], [112.0, 57.0, 0.7]]),
            "{got:?}"
        );
        assert!(
            close(&points(&got[1]), &[[30.0, 25.0, 0.9], [40.0, 30.0, 0.1]]),
            "{got:?}"
        );
    }

    #[test]
    fn a_row_of_another_width_is_refused_with_the_expected_layout() {
        let spec = OutputSpec::End2end {
            box_units: BoxUnits::Pixels,
            keypoints: Some([17, 3]),
        };
        let err =
            Decoder::new(&spec, 1, 640, 640, &[("output0".into(), vec![1, 300, 6])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output `output0`: end2end expects [1, N, 6+17*3], got [1, 300, 6]"
        );
    }
}
