//! SSD / UltraFace heads: per-prior class scores and boxes, in two tensors found by name.
//!
//! Boxes come either already decoded as corners (UltraFace exported with its post-processing),
//! as SSD offsets against prior boxes (exp-encoded sizes, UltraFace / the SSD paper), or as
//! MediaPipe's linear offsets against anchors (BlazeFace, whose box rows also carry keypoints).
//! Priors are generated here exactly as UltraFace's `generate_priors` does — which, when every
//! stride divides the input size and anchors are the input's size, is also MediaPipe's
//! `SsdAnchorsCalculator` with `fixed_anchor_size` — so that prior `k` of ours is prior `k` of
//! the network's training.
//! Scores may be logits (`score_activation = "sigmoid"`), as BlazeFace's are.

use super::{
    find_shape, find_view, push_candidate, BBox, DecodeError, Detection, Geometry, OutputView,
};
use crate::manifest::{BoxEncoding, BoxUnits, PriorSpec, ScoreActivation, SSD_VARIANCE};

const DECODER: &str = "ssd";

/// A prior (anchor) box in centre form, normalized to the model input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    /// Centre x, 0..1.
    pub cx: f32,
    /// Centre y, 0..1.
    pub cy: f32,
    /// Width, 0..1.
    pub w: f32,
    /// Height, 0..1.
    pub h: f32,
}

/// Generates priors the UltraFace way (`vision/utils/box_utils.py::generate_priors` with the
/// feature maps of `define_img_size`): for each stride `s` with its sizes, a feature map of
/// `ceil(W / s) x ceil(H / s)` cells; for each row `j`, column `i` and size `m`, a prior at
/// `((i + 0.5) / (W / s), (j + 0.5) / (H / s))` of size `(m / W, m / H)`, every value clamped to
/// [0, 1]. Order: stride, row, column, size, which is the order of the network's outputs.
pub fn generate_priors(
    spec: &PriorSpec,
    input_width: usize,
    input_height: usize,
) -> Result<Vec<Prior>, DecodeError> {
    let fail = |message: String| {
        Err(DecodeError::Spec {
            decoder: DECODER,
            message,
        })
    };
    if input_width == 0 || input_height == 0 {
        return fail(format!(
            "priors need a non-zero input size, got {input_width}x{input_height}"
        ));
    }
    if spec.steps.len() != spec.min_sizes.len() {
        return fail(format!(
            "priors have {} min_sizes lists for {} steps",
            spec.min_sizes.len(),
            spec.steps.len()
        ));
    }
    if spec.steps.contains(&0) {
        return fail("prior steps contain 0".into());
    }
    if let Some(bad) = spec
        .min_sizes
        .iter()
        .flatten()
        .find(|m| !(m.is_finite() && **m > 0.0))
    {
        return fail(format!(
            "prior min_sizes contain {bad}, sizes must be positive"
        ));
    }
    // Python computes in doubles and torch stores float32: do the same so priors match bit for
    // bit as far as possible.
    let (width, height) = (input_width as f64, input_height as f64);
    let clamp = |v: f64| v.clamp(0.0, 1.0) as f32;
    let total = spec
        .steps
        .iter()
        .zip(&spec.min_sizes)
        .map(|(&step, sizes)| {
            input_width
                .div_ceil(step)
                .saturating_mul(input_height.div_ceil(step))
                .saturating_mul(sizes.len())
        })
        .fold(0usize, usize::saturating_add);
    let mut priors = Vec::with_capacity(total);
    for (&step, sizes) in spec.steps.iter().zip(&spec.min_sizes) {
        let (cells_w, cells_h) = (input_width.div_ceil(step), input_height.div_ceil(step));
        // Not the cell counts: UltraFace divides by the unrounded W / step.
        let (scale_w, scale_h) = (width / step as f64, height / step as f64);
        for j in 0..cells_h {
            let cy = clamp((j as f64 + 0.5) / scale_h);
            for i in 0..cells_w {
                let cx = clamp((i as f64 + 0.5) / scale_w);
                for &size in sizes {
                    priors.push(Prior {
                        cx,
                        cy,
                        w: clamp(f64::from(size) / width),
                        h: clamp(f64::from(size) / height),
                    });
                }
            }
        }
    }
    Ok(priors)
}

/// What the SSD decoder takes from the manifest.
#[derive(Debug)]
pub(super) struct Config<'a> {
    /// Name of the scores output.
    pub scores: String,
    /// Name of the boxes output.
    pub boxes: String,
    /// How boxes are encoded.
    pub encoding: BoxEncoding,
    /// Units of decoded boxes.
    pub units: BoxUnits,
    /// The "no object" class, never reported.
    pub background_class: Option<usize>,
    /// Priors, for center-offsets and anchor-offsets.
    pub priors: Option<&'a PriorSpec>,
    /// Activation applied to the scores.
    pub activation: ScoreActivation,
}

/// Decoder for SSD heads.
#[derive(Debug, Clone)]
pub(super) struct Ssd {
    scores: String,
    boxes: String,
    encoding: BoxEncoding,
    background_class: Option<usize>,
    num_classes: usize,
    /// Factors from the box units to model-input pixels.
    scale: (f32, f32),
    /// Centre and size variances.
    variance: [f32; 2],
    /// Generated once at load; empty for corner-encoded boxes.
    priors: Vec<Prior>,
    /// Activation applied to the scores.
    activation: ScoreActivation,
}

impl Ssd {
    /// Generates the priors and checks both outputs' shapes against them and the label count.
    pub(super) fn new(
        config: Config<'_>,
        geometry: Geometry,
        shapes: &[(&str, &[usize])],
    ) -> Result<Self, DecodeError> {
        geometry.check_input(DECODER)?;
        let spec_error = |message: &str| DecodeError::Spec {
            decoder: DECODER,
            message: message.into(),
        };
        let (priors, variance) = match (config.encoding, config.priors) {
            (BoxEncoding::Corners, _) => (Vec::new(), [0.0; 2]),
            (encoding, None) => {
                return Err(spec_error(&format!(
                    "box_encoding \"{}\" needs output.priors",
                    encoding.key()
                )))
            }
            (encoding, Some(_)) if config.units != BoxUnits::Normalized => {
                // Priors are fractions of the input, so offsets decoded against them are too;
                // reading them as pixels would put every box within a pixel of the origin.
                return Err(spec_error(&format!(
                    "box_encoding \"{}\" decodes against normalized priors, so \
                     box_units must be \"normalized\"",
                    encoding.key()
                )));
            }
            (BoxEncoding::AnchorOffsets, Some(PriorSpec { variance: None, .. })) => {
                return Err(spec_error(
                    "box_encoding \"anchor-offsets\" needs output.priors.variance (1 / x_scale)",
                ))
            }
            (_, Some(spec)) => (
                generate_priors(spec, geometry.width, geometry.height)?,
                spec.variance.unwrap_or(SSD_VARIANCE),
            ),
        };
        let ssd = Self {
            scores: config.scores,
            boxes: config.boxes,
            encoding: config.encoding,
            background_class: config.background_class,
            num_classes: geometry.num_classes,
            scale: geometry.scale(config.units),
            variance,
            priors,
            activation: config.activation,
        };
        let scores = find_shape(&ssd.scores, shapes)?;
        let boxes = find_shape(&ssd.boxes, shapes)?;
        ssd.check(scores, boxes)?;
        Ok(ssd)
    }

    /// The priors in use (empty for corner-encoded boxes).
    #[cfg(test)]
    fn priors(&self) -> &[Prior] {
        &self.priors
    }

    /// Scores must be `[1, N, C]` and boxes `[1, N, 4]` (`[1, N, K >= 4]` for anchor offsets,
    /// whose rows carry keypoints after the box), with N the prior count when decoding against
    /// priors, since a prior count that differs means the priors are not the ones the network
    /// was trained with and every box would be wrong. Returns the values per box row.
    fn check(&self, scores: &[usize], boxes: &[usize]) -> Result<usize, DecodeError> {
        let shape_error = |output: &str, expected: String, got: &[usize]| DecodeError::Shape {
            output: output.to_owned(),
            decoder: DECODER,
            expected,
            got: got.to_vec(),
        };
        let c = self.num_classes;
        let rows = match scores {
            &[1, n, classes] if classes == c => n,
            _ => return Err(shape_error(&self.scores, format!("[1, N, {c}]"), scores)),
        };
        if self.encoding != BoxEncoding::Corners && rows != self.priors.len() {
            let expected = format!("[1, {}, {c}] (one row per prior)", self.priors.len());
            return Err(shape_error(&self.scores, expected, scores));
        }
        match (self.encoding, boxes) {
            (BoxEncoding::AnchorOffsets, &[1, n, k]) if n == rows && k >= 4 => Ok(k),
            (_, &[1, n, 4]) if n == rows => Ok(4),
            _ => {
                let expected = match self.encoding {
                    BoxEncoding::CenterOffsets => format!("[1, {rows}, 4] (one row per prior)"),
                    BoxEncoding::AnchorOffsets => {
                        format!("[1, {rows}, K >= 4] (one row per anchor)")
                    }
                    BoxEncoding::Corners => {
                        format!("[1, {rows}, 4] (as many rows as `{}`)", self.scores)
                    }
                };
                Err(shape_error(&self.boxes, expected, boxes))
            }
        }
    }

    /// Appends one candidate per (row, class) whose score reaches `threshold` to `out`, in row
    /// then class order. The data lengths have been checked against the shapes.
    pub(super) fn candidates(
        &self,
        outputs: &[OutputView<'_>],
        threshold: f32,
        out: &mut Vec<Detection>,
    ) -> Result<(), DecodeError> {
        let scores = find_view(&self.scores, outputs)?;
        let boxes = find_view(&self.boxes, outputs)?;
        let row_len = self.check(scores.shape, boxes.shape)?;
        // num_classes >= 1 (checked at load) and row_len >= 4, so chunks_exact cannot panic.
        let rows = scores
            .data
            .chunks_exact(self.num_classes)
            .zip(boxes.data.chunks_exact(row_len));
        match self.encoding {
            BoxEncoding::Corners => {
                for (row_scores, b) in rows {
                    self.emit(row_scores, threshold, out, || self.corners(b));
                }
            }
            BoxEncoding::CenterOffsets => {
                for ((row_scores, d), prior) in rows.zip(&self.priors) {
                    self.emit(row_scores, threshold, out, || self.offsets(d, prior));
                }
            }
            BoxEncoding::AnchorOffsets => {
                for ((row_scores, d), prior) in rows.zip(&self.priors) {
                    self.emit(row_scores, threshold, out, || self.anchor_offsets(d, prior));
                }
            }
        }
        Ok(())
    }

    /// Candidates of one row. The box is decoded only if some class passes, and then once:
    /// most of UltraFace's 4420 rows are background, and `exp` is not free on a Pi.
    fn emit(
        &self,
        scores: &[f32],
        threshold: f32,
        out: &mut Vec<Detection>,
        decode: impl Fn() -> Option<BBox>,
    ) {
        let mut bbox = None;
        for (class_id, &raw) in scores.iter().enumerate() {
            let score = match self.activation {
                ScoreActivation::None => raw,
                ScoreActivation::Sigmoid => 1.0 / (1.0 + (-raw).exp()),
            };
            // `>=` is false for NaN, so NaN scores are dropped here.
            if score >= threshold && Some(class_id) != self.background_class {
                if let Some(b) = *bbox.get_or_insert_with(&decode) {
                    push_candidate(out, class_id, score, b);
                }
            }
        }
    }

    /// `x0, y0, x1, y1` in the configured units.
    fn corners(&self, b: &[f32]) -> Option<BBox> {
        let &[x0, y0, x1, y1] = b else { return None };
        Some(self.to_pixels(BBox { x0, y0, x1, y1 }))
    }

    /// SSD offsets against a prior, as UltraFace's `convert_locations_to_boxes`:
    /// `cx = p.cx + d0 * v0 * p.w`, `cy = p.cy + d1 * v0 * p.h`, `w = p.w * exp(d2 * v1)`,
    /// `h = p.h * exp(d3 * v1)`, normalized; then corners, then pixels.
    fn offsets(&self, d: &[f32], p: &Prior) -> Option<BBox> {
        let &[d0, d1, d2, d3] = d else { return None };
        let [v0, v1] = self.variance;
        let cx = p.cx + d0 * v0 * p.w;
        let cy = p.cy + d1 * v0 * p.h;
        let w = p.w * (d2 * v1).exp();
        let h = p.h * (d3 * v1).exp();
        Some(self.to_pixels(BBox::from_center(cx, cy, w, h)))
    }

    /// MediaPipe's `TensorsToDetectionsCalculator` box decoding with `v = 1 / scale`:
    /// `cx = a.cx + d0 * v0 * a.w`, `cy = a.cy + d1 * v0 * a.h`, `w = d2 * v1 * a.w`,
    /// `h = d3 * v1 * a.h` — sizes are linear here, not exponential as in SSD.
    fn anchor_offsets(&self, d: &[f32], a: &Prior) -> Option<BBox> {
        let &[d0, d1, d2, d3, ..] = d else {
            return None;
        };
        let [v0, v1] = self.variance;
        let cx = a.cx + d0 * v0 * a.w;
        let cy = a.cy + d1 * v0 * a.h;
        let w = d2 * v1 * a.w;
        let h = d3 * v1 * a.h;
        Some(self.to_pixels(BBox::from_center(cx, cy, w, h)))
    }

    fn to_pixels(&self, b: BBox) -> BBox {
        let (sx, sy) = self.scale;
        BBox {
            x0: b.x0 * sx,
            y0: b.y0 * sy,
            x1: b.x1 * sx,
            y1: b.y1 * sy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Decoded, Decoder};
    use super::*;
    use crate::manifest::{OutputSpec, Thresholds};

    fn ultraface_priors() -> PriorSpec {
        PriorSpec {
            steps: vec![8, 16, 32, 64],
            min_sizes: vec![
                vec![10.0, 16.0, 24.0],
                vec![32.0, 48.0],
                vec![64.0, 96.0],
                vec![128.0, 192.0, 256.0],
            ],
            variance: Some([0.1, 0.2]),
        }
    }

    fn ssd_spec(
        encoding: BoxEncoding,
        units: BoxUnits,
        background_class: Option<usize>,
        priors: Option<PriorSpec>,
    ) -> OutputSpec {
        OutputSpec::Ssd {
            scores: "scores".into(),
            boxes: "boxes".into(),
            box_encoding: encoding,
            box_units: units,
            background_class,
            priors,
            score_activation: ScoreActivation::None,
        }
    }

    fn named(scores: &[usize], boxes: &[usize]) -> Vec<(String, Vec<usize>)> {
        vec![
            ("boxes".into(), boxes.to_vec()),
            ("scores".into(), scores.to_vec()),
        ]
    }

    fn run(
        decoder: &mut Decoder,
        scores_shape: &[usize],
        scores: &[f32],
        boxes_shape: &[usize],
        boxes: &[f32],
    ) -> Result<Vec<Detection>, DecodeError> {
        // Boxes first: outputs are found by name, not position.
        let views = [
            OutputView {
                name: "boxes",
                shape: boxes_shape,
                data: boxes,
            },
            OutputView {
                name: "scores",
                shape: scores_shape,
                data: scores,
            },
        ];
        match decoder.decode(&views, &Thresholds::default())? {
            Decoded::Detections(list) => Ok(list),
            other => panic!("detections expected, got {other:?}"),
        }
    }

    fn assert_box(got: BBox, want: [f32; 4]) {
        let diff = [
            got.x0 - want[0],
            got.y0 - want[1],
            got.x1 - want[2],
            got.y1 - want[3],
        ];
        assert!(diff.iter().all(|d| d.abs() < 1e-3), "{got:?} vs {want:?}");
    }

    fn assert_prior(p: Prior, want: [f32; 4]) {
        let diff = [p.cx - want[0], p.cy - want[1], p.w - want[2], p.h - want[3]];
        assert!(diff.iter().all(|d| d.abs() < 1e-6), "{p:?} vs {want:?}");
    }

    #[test]
    fn ultraface_320x240_priors() {
        let priors = generate_priors(&ultraface_priors(), 320, 240).expect("valid");
        // Feature maps 40x30, 20x15, 10x8, 5x4 (ceil) times 3, 2, 2, 3 sizes:
        // 3600 + 600 + 160 + 60.
        assert_eq!(priors.len(), 4420);
        // First: cell (0, 0) of stride 8, size 10: (0.5 / 40, 0.5 / 30, 10 / 320, 10 / 240).
        assert_prior(priors[0], [0.0125, 0.016_666_668, 0.03125, 0.041_666_668]);
        // Sizes vary fastest: same centre, size 16.
        assert_prior(priors[1], [0.0125, 0.016_666_668, 0.05, 0.066_666_67]);
        // Then columns: cell (1, 0), size 10: cx = 1.5 / 40.
        assert_prior(priors[3], [0.0375, 0.016_666_668, 0.03125, 0.041_666_668]);
        // Then rows: cell (0, 1) is after the 40 cells of row 0: cy = 1.5 / 30.
        assert_prior(priors[120], [0.0125, 0.05, 0.03125, 0.041_666_668]);
        // Stride 16 starts at 3600: (0.5 / 20, 0.5 / 15, 32 / 320, 32 / 240).
        assert_prior(priors[3600], [0.025, 0.033_333_335, 0.1, 0.133_333_33]);
        // Last: stride 64, cell (4, 3), size 256. scale_h is 240 / 64 = 3.75 (not the 4 cells),
        // so cy = 3.5 / 3.75; h = 256 / 240 clamps to 1.
        assert_prior(priors[4419], [0.9, 0.933_333_3, 0.8, 1.0]);
    }

    #[test]
    fn prior_spec_errors() {
        let mut spec = ultraface_priors();
        spec.steps[1] = 0;
        let err = generate_priors(&spec, 320, 240).unwrap_err();
        assert_eq!(err.to_string(), "ssd: prior steps contain 0");
        let mut spec = ultraface_priors();
        spec.min_sizes.pop();
        let err = generate_priors(&spec, 320, 240).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ssd: priors have 3 min_sizes lists for 4 steps"
        );
        let mut spec = ultraface_priors();
        spec.min_sizes[0][0] = -1.0;
        let err = generate_priors(&spec, 320, 240).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ssd: prior min_sizes contain -1, sizes must be positive"
        );
    }

    #[test]
    fn center_offsets_decode_against_generated_priors() {
        let spec = ssd_spec(
            BoxEncoding::CenterOffsets,
            BoxUnits::Normalized,
            Some(0),
            Some(ultraface_priors()),
        );
        let mut decoder =
            Decoder::new(&spec, 2, 320, 240, &named(&[1, 4420, 2], &[1, 4420, 4])).expect("fits");
        let mut scores = vec![0.0f32; 4420 * 2];
        let mut boxes = vec![0.0f32; 4420 * 4];
        // Prior 3600 is (cx .025, cy .033333, w .1, h .133333). Offsets (1, -0.5, 5 ln 2, 0):
        // cx = .025 + 1 * .1 * .1 = .035
        // cy = .033333 - .5 * .1 * .133333 = .026667
        // w = .1 * exp(5 ln 2 * .2) = .2, h = .133333 * exp(0) = .133333
        // -> corners (-.065, -.04, .135, .093333) -> x320, y240: (-20.8, -9.6, 43.2, 22.4).
        scores[3600 * 2] = 0.05;
        scores[3600 * 2 + 1] = 0.95;
        boxes[3600 * 4..3600 * 4 + 4].copy_from_slice(&[1.0, -0.5, 5.0 * 2f32.ln(), 0.0]);
        // The background class scores high at prior 7 but is never reported.
        scores[7 * 2] = 0.99;
        // Prior 4419 scores below the threshold.
        scores[4419 * 2 + 1] = 0.2;
        let got =
            run(&mut decoder, &[1, 4420, 2], &scores, &[1, 4420, 4], &boxes).expect("decodes");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].class_id, 1);
        assert_eq!(got[0].score, 0.95);
        assert_box(got[0].bbox, [-20.8, -9.6, 43.2, 22.4]);
    }

    #[test]
    fn zero_offsets_give_the_prior_itself() {
        // Variances do not matter for zero offsets; the box is the prior, in pixels.
        let spec = PriorSpec {
            steps: vec![16],
            min_sizes: vec![vec![8.0]],
            variance: Some([0.5, 0.5]),
        };
        let cfg = ssd_spec(
            BoxEncoding::CenterOffsets,
            BoxUnits::Normalized,
            None,
            Some(spec),
        );
        // 32x16 input, stride 16: 2x1 cells. Prior 1: cx = 1.5 / 2 = .75, cy = .5, w = 8/32,
        // h = 8/16 -> pixels: centre (24, 8), size 8x8 -> (20, 4, 28, 12).
        let mut decoder =
            Decoder::new(&cfg, 1, 32, 16, &named(&[1, 2, 1], &[1, 2, 4])).expect("fits");
        let got =
            run(&mut decoder, &[1, 2, 1], &[0.1, 0.6], &[1, 2, 4], &[0.0; 8]).expect("decodes");
        assert_eq!(got.len(), 1);
        assert_box(got[0].bbox, [20.0, 4.0, 28.0, 12.0]);
    }

    /// Three rows, classes (background, cat, dog), normalized corners on a 100x50 input:
    /// row 0: [.1, .8, .6], (.1, .2, .5, .6) -> cat .8 and dog .6, same box (10, 10, 50, 30);
    /// row 1: [.9, .1, .05] -> only background;
    /// row 2: [.2, .7, .1], (.12, .2, .52, .6) -> cat .7, IoU with row 0 = .152 / .168 = .905,
    ///   suppressed by the cat of row 0.
    fn corner_rows() -> (Vec<f32>, Vec<f32>) {
        let scores = vec![0.1, 0.8, 0.6, 0.9, 0.1, 0.05, 0.2, 0.7, 0.1];
        let boxes = vec![
            0.1, 0.2, 0.5, 0.6, //
            0.6, 0.6, 0.9, 0.9, //
            0.12, 0.2, 0.52, 0.6,
        ];
        (scores, boxes)
    }

    #[test]
    fn corners_skip_the_background_class_and_keep_other_classes() {
        let spec = ssd_spec(BoxEncoding::Corners, BoxUnits::Normalized, Some(0), None);
        let mut decoder =
            Decoder::new(&spec, 3, 100, 50, &named(&[1, 3, 3], &[1, 3, 4])).expect("fits");
        let (scores, boxes) = corner_rows();
        let got = run(&mut decoder, &[1, 3, 3], &scores, &[1, 3, 4], &boxes).expect("decodes");
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!((got[0].class_id, got[0].score), (1, 0.8));
        assert_eq!((got[1].class_id, got[1].score), (2, 0.6));
        assert_box(got[0].bbox, [10.0, 10.0, 50.0, 30.0]);
        assert_box(got[1].bbox, [10.0, 10.0, 50.0, 30.0]);
    }

    #[test]
    fn without_background_class_every_class_counts() {
        let spec = ssd_spec(BoxEncoding::Corners, BoxUnits::Normalized, None, None);
        let mut decoder =
            Decoder::new(&spec, 3, 100, 50, &named(&[1, 3, 3], &[1, 3, 4])).expect("fits");
        let (scores, boxes) = corner_rows();
        let got = run(&mut decoder, &[1, 3, 3], &scores, &[1, 3, 4], &boxes).expect("decodes");
        let classes: Vec<(usize, f32)> = got.iter().map(|d| (d.class_id, d.score)).collect();
        assert_eq!(classes, [(0, 0.9), (1, 0.8), (2, 0.6)]);
        assert_box(got[0].bbox, [60.0, 30.0, 90.0, 45.0]);
    }

    #[test]
    fn pixel_corners_are_not_scaled_and_inverted_ones_dropped() {
        let spec = ssd_spec(BoxEncoding::Corners, BoxUnits::Pixels, None, None);
        let mut decoder =
            Decoder::new(&spec, 1, 100, 50, &named(&[1, 2, 1], &[1, 2, 4])).expect("fits");
        let boxes = [5.0, 6.0, 7.0, 9.0, 50.0, 10.0, 40.0, 20.0];
        let got = run(&mut decoder, &[1, 2, 1], &[0.5, 0.9], &[1, 2, 4], &boxes).expect("decodes");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].score, 0.5);
        assert_box(got[0].bbox, [5.0, 6.0, 7.0, 9.0]);
    }

    #[test]
    fn prior_count_mismatch_is_reported() {
        let spec = ssd_spec(
            BoxEncoding::CenterOffsets,
            BoxUnits::Normalized,
            Some(0),
            Some(ultraface_priors()),
        );
        let err =
            Decoder::new(&spec, 2, 320, 240, &named(&[1, 4000, 2], &[1, 4000, 4])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output `scores`: ssd expects [1, 4420, 2] (one row per prior), got [1, 4000, 2]"
        );
        let err =
            Decoder::new(&spec, 2, 320, 240, &named(&[1, 4420, 2], &[1, 4000, 4])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output `boxes`: ssd expects [1, 4420, 4] (one row per prior), got [1, 4000, 4]"
        );
    }

    #[test]
    fn shape_errors_name_the_tensor() {
        let spec = ssd_spec(BoxEncoding::Corners, BoxUnits::Normalized, Some(0), None);
        let err = Decoder::new(&spec, 2, 320, 240, &named(&[1, 10, 3], &[1, 10, 4])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output `scores`: ssd expects [1, N, 2], got [1, 10, 3]"
        );
        let err = Decoder::new(&spec, 2, 320, 240, &named(&[1, 10, 2], &[1, 11, 4])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output `boxes`: ssd expects [1, 10, 4] (as many rows as `scores`), got [1, 11, 4]"
        );
    }

    #[test]
    fn missing_output_at_decode_time() {
        let spec = ssd_spec(BoxEncoding::Corners, BoxUnits::Normalized, None, None);
        let mut decoder =
            Decoder::new(&spec, 1, 10, 10, &named(&[1, 1, 1], &[1, 1, 4])).expect("fits");
        let view = OutputView {
            name: "scores",
            shape: &[1, 1, 1],
            data: &[0.9],
        };
        let err = decoder.decode(&[view], &Thresholds::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model has no output `boxes` (outputs: scores)"
        );
    }

    #[test]
    fn center_offsets_spec_errors() {
        let spec = ssd_spec(BoxEncoding::CenterOffsets, BoxUnits::Normalized, None, None);
        let err =
            Decoder::new(&spec, 2, 320, 240, &named(&[1, 4420, 2], &[1, 4420, 4])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ssd: box_encoding \"center-offsets\" needs output.priors"
        );
        let spec = ssd_spec(
            BoxEncoding::CenterOffsets,
            BoxUnits::Pixels,
            None,
            Some(ultraface_priors()),
        );
        let err =
            Decoder::new(&spec, 2, 320, 240, &named(&[1, 4420, 2], &[1, 4420, 4])).unwrap_err();
        assert!(matches!(err, DecodeError::Spec { .. }));
        assert!(
            err.to_string().contains("box_units must be \"normalized\""),
            "{err}"
        );
    }

    #[test]
    fn corners_ignore_priors() {
        let priors = ultraface_priors();
        let config = Config {
            scores: "scores".into(),
            boxes: "boxes".into(),
            encoding: BoxEncoding::Corners,
            units: BoxUnits::Normalized,
            background_class: None,
            priors: Some(&priors),
            activation: ScoreActivation::None,
        };
        let geometry = Geometry {
            num_classes: 1,
            width: 320,
            height: 240,
        };
        let ssd = Ssd::new(
            config,
            geometry,
            &[("scores", &[1, 3, 1]), ("boxes", &[1, 3, 4])],
        )
        .expect("corners do not need 4420 rows");
        assert!(ssd.priors().is_empty());
    }

    /// BlazeFace's layout: 896 anchors of the input's size (2 per stride-8 cell, 6 per
    /// stride-16 cell), 16 values per box row (box + 6 keypoints), logits for scores.
    #[test]
    fn anchor_offsets_decode_linearly_with_sigmoid_scores() {
        let priors = PriorSpec {
            steps: vec![8, 16],
            min_sizes: vec![vec![128.0; 2], vec![128.0; 6]],
            variance: Some([1.0 / 128.0, 1.0 / 128.0]),
        };
        let spec = OutputSpec::Ssd {
            scores: "classificators".into(),
            boxes: "regressors".into(),
            box_encoding: BoxEncoding::AnchorOffsets,
            box_units: BoxUnits::Normalized,
            background_class: None,
            priors: Some(priors),
            score_activation: ScoreActivation::Sigmoid,
        };
        let shapes = [
            ("regressors".to_owned(), vec![1, 896, 16]),
            ("classificators".to_owned(), vec![1, 896, 1]),
        ];
        let mut decoder = Decoder::new(&spec, 1, 128, 128, &shapes).expect("BlazeFace layout");

        let mut logits = vec![-10.0f32; 896];
        let mut rows = vec![0.0f32; 896 * 16];
        // Row 166: stride 8, cell row 5, column 3, first anchor; centre (3.5/16, 5.5/16).
        logits[166] = 2.0;
        rows[166 * 16..166 * 16 + 4].copy_from_slice(&[12.8, -6.4, 32.0, 16.0]);
        // Keypoints after the box must not disturb it.
        rows[166 * 16 + 4..167 * 16].fill(999.0);
        let outputs = [
            OutputView {
                name: "regressors",
                shape: &[1, 896, 16],
                data: &rows,
            },
            OutputView {
                name: "classificators",
                shape: &[1, 896, 1],
                data: &logits,
            },
        ];
        let thresholds = Thresholds {
            score: 0.5,
            iou: 0.3,
            max_detections: 10,
        };
        let Decoded::Detections(found) = decoder.decode(&outputs, &thresholds).expect("decodes")
        else {
            panic!("a detector decodes to detections");
        };
        assert_eq!(found.len(), 1, "{found:?}");
        let d = &found[0];
        assert!(
            (d.score - 0.880_797).abs() < 1e-5,
            "sigmoid(2) = {}",
            d.score
        );
        // cx = 0.21875 + 12.8/128, w = 32/128 of the anchor (1.0): pixels of a 128 input.
        let want = [24.8, 29.6, 56.8, 45.6];
        let got = [d.bbox.x0, d.bbox.y0, d.bbox.x1, d.bbox.y1];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "{got:?} vs {want:?}");
        }

        // Fewer than 4 values per box row cannot be anchor offsets.
        let bad = [
            ("regressors".to_owned(), vec![1, 896, 3]),
            ("classificators".to_owned(), vec![1, 896, 1]),
        ];
        let err = Decoder::new(&spec, 1, 128, 128, &bad).expect_err("3 values per row");
        assert!(err.to_string().contains("[1, 896, K >= 4]"), "{err}");
    }
}
