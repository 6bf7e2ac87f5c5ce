//! Output decoding: turns the model's raw output tensors into what the application reports.
//!
//! A network ends in plain arrays of numbers; what they mean is a convention of the architecture
//! and the export, written down in the manifest's `[output]` table ([`OutputSpec`]). This module
//! reads those arrays under that convention and produces either ranked classes or detections
//! with boxes in model-input pixels (the pipeline maps them back to the source frame).
//!
//! Supported layouts:
//! - `classify` (`classify.rs`): one score per class, `[1, C]` (also `[C]` and `[1, C, 1, 1]`),
//!   optionally softmaxed, reported as the top `top_k`.
//! - `yolov8` (`yolo.rs`): `[1, 4 + C, N]` (or the transposed `[1, N, 4 + C]`): cx, cy, w, h, then
//!   C class scores.
//!   With `keypoints = [K, D]`, the pose layout `[1, 4 + C + K·D, N]` (YOLOv8-pose).
//! - `yolov5` (`yolo.rs`): `[1, N, 5 + C]`: cx, cy, w, h, objectness, C class probabilities.
//! - `end2end` (`end2end.rs`): `[1, N, 6]` (or `[1, N, 6 + K·D]` with keypoints): rows of
//!   x0, y0, x1, y1, score, class from a graph that ran its own NMS (YOLOv10, Ultralytics
//!   `nms=True`, which tract 0.23.9 cannot run); ranked and thresholded, never suppressed
//!   again.
//! - `ssd` (`ssd.rs`): a scores tensor `[1, N, C]` and a boxes tensor `[1, N, 4]` found by name,
//!   boxes either as corners or as SSD offsets against UltraFace-style priors
//!   ([`generate_priors`]).
//! - `raw`: no decoding: each output's shape and first values.
//!
//! Detectors then go through class-aware greedy non-maximum suppression ([`nms()`], [`Nms`]).
//! Pose models carry each candidate's keypoints beside it and report those of the kept boxes.
//!
//! The layout is checked against the model's declared output shapes once, in [`Decoder::new`], so
//! a manifest that does not fit its model fails at load with a message naming the tensor, the
//! expected layout and the real shape, rather than producing nonsense on every frame. Every frame
//! is checked again (cheaply) because a tensor's data could still disagree with its shape, and a
//! malformed tensor must give an error, never a panic on a device nobody is watching.

mod classify;
mod end2end;
mod nms;
mod ssd;
mod yolo;

pub use nms::{nms, Nms};
pub use ssd::{generate_priors, Prior};

use crate::manifest::{BoxUnits, OutputSpec, Thresholds};
use classify::Classifier;
use end2end::End2end;
use ssd::Ssd;
use yolo::Yolo;

/// One output tensor of the model, borrowed (f32, row-major / C order).
#[derive(Debug, Clone, Copy)]
pub struct OutputView<'a> {
    /// Name of the graph output.
    pub name: &'a str,
    /// Shape of the tensor.
    pub shape: &'a [usize],
    /// Elements in row-major order; must hold exactly the product of `shape` values.
    pub data: &'a [f32],
}

/// Axis-aligned box, corner coordinates in pixels (x0 <= x1, y0 <= y1).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BBox {
    /// Left edge.
    pub x0: f32,
    /// Top edge.
    pub y0: f32,
    /// Right edge.
    pub x1: f32,
    /// Bottom edge.
    pub y1: f32,
}

impl BBox {
    /// A box from its centre and size, the form detectors regress.
    pub fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self {
            x0: cx - w / 2.0,
            y0: cy - h / 2.0,
            x1: cx + w / 2.0,
            y1: cy + h / 2.0,
        }
    }

    /// Area; 0 for a box with inverted or zero-length sides, so that a degenerate box can never
    /// contribute a negative area to an IoU.
    pub fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }

    /// Intersection over union, in [0, 1]; 0 when the union is empty (two degenerate boxes).
    pub fn iou(&self, other: &BBox) -> f32 {
        let iw = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let ih = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = iw * ih;
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }

    /// Whether the box is usable: all coordinates finite and both sides strictly positive.
    /// Detectors emit garbage boxes for low-confidence anchors (and a broken model emits NaN);
    /// such boxes are dropped rather than reported or fed to NMS.
    pub fn is_valid(&self) -> bool {
        // Written as `x1 > x0` so that NaN (for which every comparison is false) fails too.
        self.x0.is_finite()
            && self.y0.is_finite()
            && self.x1.is_finite()
            && self.y1.is_finite()
            && self.x1 > self.x0
            && self.y1 > self.y0
    }
}

/// One detected object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Index into the manifest's labels.
    pub class_id: usize,
    /// Confidence in [0, 1] for well-behaved models.
    pub score: f32,
    /// Box in model-input pixels.
    pub bbox: BBox,
}

/// One keypoint of a pose model, in the units of its detection's box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keypoint {
    /// Horizontal position.
    pub x: f32,
    /// Vertical position.
    pub y: f32,
    /// Visibility score (the model's third value); 1 for models that give x and y only.
    pub score: f32,
}

/// One detection of a pose model with its keypoints, in the model's keypoint order.
#[derive(Debug, Clone, PartialEq)]
pub struct Pose {
    /// The box, class and score.
    pub detection: Detection,
    /// Its keypoints.
    pub keypoints: Vec<Keypoint>,
}

/// One class of a classification result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScore {
    /// Index into the manifest's labels.
    pub class_id: usize,
    /// Score (probability after softmax).
    pub score: f32,
}

/// The first values of one output, for the `raw` decoder.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RawValues {
    /// The output's name.
    pub name: String,
    /// Its first values, row-major.
    pub values: Vec<f32>,
    /// Whether it holds more than these.
    pub truncated: bool,
}

/// The decoded result of one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// Classes, best first.
    Classes(Vec<ClassScore>),
    /// Detections after NMS, best first.
    Detections(Vec<Detection>),
    /// Detections of a pose model after NMS, best first, each with its keypoints.
    Poses(Vec<Pose>),
    /// The outputs as they are, for the `raw` decoder.
    Raw {
        /// Shape of each output, in the model's output order.
        shapes: Vec<Vec<usize>>,
        /// Each output's first values, row-major, in the same order.
        values: Vec<RawValues>,
    },
}

/// Why the outputs cannot be decoded as the manifest says.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// An output's shape does not fit the decoder's layout (including a class count that
    /// differs from the manifest's labels).
    #[error("output `{output}`: {decoder} expects {expected}, got {got:?}")]
    Shape {
        /// The output tensor.
        output: String,
        /// The decoder (`classify`, `yolov8`, ...).
        decoder: &'static str,
        /// The expected layout, e.g. `[1, 4+3, N]`.
        expected: String,
        /// The real shape.
        got: Vec<usize>,
    },
    /// A named output does not exist.
    #[error("model has no output `{name}` (outputs: {available})")]
    MissingOutput {
        /// The name the manifest gives.
        name: String,
        /// The model's outputs, comma-separated.
        available: String,
    },
    /// The decoder reads exactly one output but the model has another number.
    #[error("{decoder} expects exactly 1 output, the model has {got} ({available})")]
    OutputCount {
        /// The decoder.
        decoder: &'static str,
        /// How many outputs the model has.
        got: usize,
        /// The model's outputs, comma-separated.
        available: String,
    },
    /// A tensor's data does not hold as many values as its shape says.
    #[error("output `{output}`: shape {shape:?} holds {expected} values but the tensor has {got}")]
    DataLength {
        /// The output tensor.
        output: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Product of the shape (saturated at `usize::MAX`).
        expected: usize,
        /// Length of the data.
        got: usize,
    },
    /// The output spec itself cannot work (for specs that bypassed manifest validation, or
    /// combinations it does not check).
    #[error("{decoder}: {message}")]
    Spec {
        /// The decoder.
        decoder: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The decoder for one model, built once at load from its manifest and output shapes.
#[derive(Debug, Clone)]
pub struct Decoder {
    kind: Kind,
    /// Candidates of the current frame, kept between frames so that their storage is reused.
    candidates: Vec<Detection>,
    /// Keypoints of the candidates of a pose model, K per candidate in candidate order.
    keypoints: Vec<Keypoint>,
    nms: Nms,
}

#[derive(Debug, Clone)]
enum Kind {
    Classify(Classifier),
    Yolo(Yolo),
    End2end(End2end),
    Ssd(Box<Ssd>),
    Raw {
        /// Values reported per output.
        values: usize,
    },
}

impl Decoder {
    /// Checks the spec against the model's declared output shapes once, at load, so a mismatch is
    /// reported before the first frame. `output_shapes` are (name, shape) of the model outputs in
    /// order.
    pub fn new(
        spec: &OutputSpec,
        num_classes: usize,
        input_width: usize,
        input_height: usize,
        output_shapes: &[(String, Vec<usize>)],
    ) -> Result<Self, DecodeError> {
        let shapes: Vec<(&str, &[usize])> = output_shapes
            .iter()
            .map(|(name, shape)| (name.as_str(), shape.as_slice()))
            .collect();
        let geometry = Geometry {
            num_classes,
            width: input_width,
            height: input_height,
        };
        let kind = match spec {
            OutputSpec::Classify { softmax, top_k } => {
                Kind::Classify(Classifier::new(*softmax, *top_k, num_classes, &shapes)?)
            }
            OutputSpec::Yolov5 { box_units } => Kind::Yolo(Yolo::new(
                yolo::Version::V5,
                *box_units,
                None,
                geometry,
                &shapes,
            )?),
            OutputSpec::Yolov8 {
                box_units,
                keypoints,
            } => Kind::Yolo(Yolo::new(
                yolo::Version::V8,
                *box_units,
                *keypoints,
                geometry,
                &shapes,
            )?),
            OutputSpec::End2end {
                box_units,
                keypoints,
            } => Kind::End2end(End2end::new(*box_units, *keypoints, geometry, &shapes)?),
            OutputSpec::Ssd {
                scores,
                boxes,
                box_encoding,
                box_units,
                background_class,
                priors,
                score_activation,
            } => Kind::Ssd(Box::new(Ssd::new(
                ssd::Config {
                    scores: scores.clone(),
                    boxes: boxes.clone(),
                    encoding: *box_encoding,
                    units: *box_units,
                    background_class: *background_class,
                    priors: priors.as_ref(),
                    activation: *score_activation,
                },
                geometry,
                &shapes,
            )?)),
            OutputSpec::Raw { values } => Kind::Raw { values: *values },
        };
        Ok(Self {
            kind,
            candidates: Vec::new(),
            keypoints: Vec::new(),
            nms: Nms::new(),
        })
    }

    /// Decodes one frame. Boxes are in model-input pixels. Reuses internal buffers between frames
    /// (no per-frame allocation of candidate lists beyond the returned Vec).
    pub fn decode(
        &mut self,
        outputs: &[OutputView<'_>],
        thresholds: &Thresholds,
    ) -> Result<Decoded, DecodeError> {
        for view in outputs {
            check_len(view)?;
        }
        self.candidates.clear();
        self.keypoints.clear();
        // IoU above which a box suppresses another, and keypoints per candidate.
        let (iou, per_candidate) = match &self.kind {
            Kind::End2end(e) => (f32::INFINITY, e.keypoints_per_candidate()),
            Kind::Yolo(y) => (thresholds.iou, y.keypoints_per_candidate()),
            _ => (thresholds.iou, 0),
        };
        match &mut self.kind {
            Kind::Classify(classifier) => {
                return classifier
                    .decode(outputs, thresholds.score)
                    .map(Decoded::Classes)
            }
            Kind::Yolo(yolo) => yolo.candidates(
                outputs,
                thresholds.score,
                &mut self.candidates,
                &mut self.keypoints,
            )?,
            Kind::End2end(e) => e.candidates(
                outputs,
                thresholds.score,
                &mut self.candidates,
                &mut self.keypoints,
            )?,
            Kind::Ssd(ssd) => ssd.candidates(outputs, thresholds.score, &mut self.candidates)?,
            Kind::Raw { values } => {
                let per_output = *values;
                return Ok(Decoded::Raw {
                    shapes: outputs.iter().map(|o| o.shape.to_vec()).collect(),
                    values: if per_output == 0 {
                        Vec::new()
                    } else {
                        outputs
                            .iter()
                            .map(|o| RawValues {
                                name: o.name.to_owned(),
                                values: o.data.iter().take(per_output).copied().collect(),
                                truncated: o.data.len() > per_output,
                            })
                            .collect()
                    },
                });
            }
        }
        let kept = self
            .nms
            .kept(&self.candidates, iou, thresholds.max_detections);
        if per_candidate == 0 {
            return Ok(Decoded::Detections(
                kept.into_iter().map(|i| self.candidates[i]).collect(),
            ));
        }
        Ok(Decoded::Poses(
            kept.into_iter()
                .map(|i| Pose {
                    detection: self.candidates[i],
                    keypoints: self
                        .keypoints
                        .get(i * per_candidate..(i + 1) * per_candidate)
                        .map(<[Keypoint]>::to_vec)
                        .unwrap_or_default(),
                })
                .collect(),
        ))
    }
}

/// What the decoders need to know about the model besides its outputs.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    /// Number of labels in the manifest.
    num_classes: usize,
    /// Model input width in pixels.
    width: usize,
    /// Model input height in pixels.
    height: usize,
}

impl Geometry {
    /// Factors that bring box coordinates in `units` to model-input pixels, (x, y).
    fn scale(&self, units: BoxUnits) -> (f32, f32) {
        match units {
            BoxUnits::Pixels => (1.0, 1.0),
            BoxUnits::Normalized => (self.width as f32, self.height as f32),
        }
    }

    /// Rejects an input size of zero, for which normalized boxes and priors are meaningless.
    fn check_input(&self, decoder: &'static str) -> Result<(), DecodeError> {
        if self.width == 0 || self.height == 0 {
            return Err(DecodeError::Spec {
                decoder,
                message: format!(
                    "model input is {}x{}, it needs a non-zero size",
                    self.width, self.height
                ),
            });
        }
        if self.num_classes == 0 {
            return Err(DecodeError::Spec {
                decoder,
                message: "needs at least one label".into(),
            });
        }
        Ok(())
    }
}

/// Pushes a candidate if its score and box are usable, and says whether it did (a pose
/// decoder then pushes its keypoints, keeping them aligned). Non-finite scores are dropped
/// here so that NMS and sorting only ever see real numbers.
fn push_candidate(out: &mut Vec<Detection>, class_id: usize, score: f32, bbox: BBox) -> bool {
    let usable = score.is_finite() && bbox.is_valid();
    if usable {
        out.push(Detection {
            class_id,
            score,
            bbox,
        });
    }
    usable
}

/// Checks a keypoint spec `[K, D]` and gives K·D, the values each candidate carries for them.
fn keypoint_values(
    decoder: &'static str,
    keypoints: Option<[usize; 2]>,
) -> Result<usize, DecodeError> {
    match keypoints {
        None => Ok(0),
        Some([count, values @ (2 | 3)]) if count > 0 => Ok(count.saturating_mul(values)),
        Some(bad) => Err(DecodeError::Spec {
            decoder,
            message: format!("keypoints {bad:?} must be [K, 2] or [K, 3] with K >= 1"),
        }),
    }
}

/// Appends the keypoints stored as `values` (x, y[, score] per keypoint, `dims` values each),
/// scaled by `scale` to model-input pixels.
fn push_keypoints(
    out: &mut Vec<Keypoint>,
    values: impl Iterator<Item = f32>,
    dims: usize,
    scale: (f32, f32),
) {
    let mut values = values;
    loop {
        let (Some(x), Some(y)) = (values.next(), values.next()) else {
            return;
        };
        let score = if dims == 3 {
            values.next().unwrap_or(0.0)
        } else {
            1.0
        };
        out.push(Keypoint {
            x: x * scale.0,
            y: y * scale.1,
            score,
        });
    }
}

/// Checks that a tensor's data holds exactly the values its shape says, which every later
/// step relies on to slice it without bounds failures.
fn check_len(view: &OutputView<'_>) -> Result<(), DecodeError> {
    // Saturating: a product past usize::MAX cannot match any real slice length, so it still
    // reports the mismatch instead of wrapping into a false match.
    let expected = view
        .shape
        .iter()
        .fold(1usize, |acc, &d| acc.saturating_mul(d));
    if expected != view.data.len() {
        return Err(DecodeError::DataLength {
            output: view.name.to_owned(),
            shape: view.shape.to_vec(),
            expected,
            got: view.data.len(),
        });
    }
    Ok(())
}

/// Comma-separated output names for error messages.
fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<&str> = names.collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// The only output of a single-output decoder, from (name, shape) pairs.
fn single_shape<'a>(
    decoder: &'static str,
    shapes: &[(&'a str, &'a [usize])],
) -> Result<(&'a str, &'a [usize]), DecodeError> {
    match shapes {
        [only] => Ok(*only),
        _ => Err(DecodeError::OutputCount {
            decoder,
            got: shapes.len(),
            available: names(shapes.iter().map(|(n, _)| *n)),
        }),
    }
}

/// The only output of a single-output decoder, at decode time.
fn single_view<'o, 'a>(
    decoder: &'static str,
    outputs: &'o [OutputView<'a>],
) -> Result<&'o OutputView<'a>, DecodeError> {
    match outputs {
        [only] => Ok(only),
        _ => Err(DecodeError::OutputCount {
            decoder,
            got: outputs.len(),
            available: names(outputs.iter().map(|o| o.name)),
        }),
    }
}

/// Finds an output by name among (name, shape) pairs.
fn find_shape<'a>(
    name: &str,
    shapes: &[(&'a str, &'a [usize])],
) -> Result<&'a [usize], DecodeError> {
    shapes
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| DecodeError::MissingOutput {
            name: name.to_owned(),
            available: names(shapes.iter().map(|(n, _)| *n)),
        })
}

/// Finds an output by name at decode time.
fn find_view<'o, 'a>(
    name: &str,
    outputs: &'o [OutputView<'a>],
) -> Result<&'o OutputView<'a>, DecodeError> {
    outputs
        .iter()
        .find(|o| o.name == name)
        .ok_or_else(|| DecodeError::MissingOutput {
            name: name.to_owned(),
            available: names(outputs.iter().map(|o| o.name)),
        })
}

/// Total order for "best first" that treats scores as numbers (so -0.0 ties +0.0) and breaks
/// ties by the lower index, the rule the reference decoder uses. Callers have removed NaN, so
/// `partial_cmp` never fails; if it did, the pair would fall back to index order.
fn best_first(score_a: f32, index_a: usize, score_b: f32, index_b: usize) -> std::cmp::Ordering {
    score_b
        .partial_cmp(&score_a)
        .unwrap_or(std::cmp::Ordering::Equal)
        .then(index_a.cmp(&index_b))
}

#[cfg(test)]
mod tests;
