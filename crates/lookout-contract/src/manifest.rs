//! The model manifest: the contract an ONNX file travels with.
//!
//! A model is only usable on a device if the device feeds it exactly what it saw in training and
//! reads its outputs the way they were meant. The manifest (`models/<name>.toml`, beside
//! `models/<name>.onnx`) writes that down: input tensor, pre-processing, output decoding, labels,
//! thresholds, and the sha256 that ties the manifest to one file. Every field is documented in
//! `models/README.md`.
//!
//! Parsing is strict (unknown keys are errors) because a misspelt key silently falling back to a
//! default would feed the model the wrong pixels without any visible failure.
//!
use crate::error::{parse_toml, read_text, ConfigError};
use crate::onnx_meta::QuantForm;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A parsed and validated model manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model name; equals the file stem of the manifest.
    pub name: String,
    /// Model version, reported with every result (`name@version`).
    pub version: String,
    /// One sentence on what the model does and what it was trained on.
    #[serde(default)]
    pub description: String,
    /// Class names, indexed by the model's class ids.
    pub labels: Vec<String>,
    /// The ONNX file this manifest describes.
    pub model: ModelFile,
    /// The input tensor.
    pub input: InputSpec,
    /// How a camera frame becomes the input tensor.
    pub preprocess: Preprocess,
    /// How the output tensors become classes or detections.
    pub output: OutputSpec,
    /// Default decision thresholds, overridable at run time.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Reference statistics on held-out data, for drift monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

/// Bins of the brightness histogram (luma 0..=255, 16 levels each).
pub const BRIGHTNESS_BINS: usize = 16;
/// Bins of the best-score histogram (0..=1, 0.1 each).
pub const SCORE_BINS: usize = 10;
/// Bins of each colour channel's histogram (0..=255, 16 levels each).
pub const CHANNEL_BINS: usize = 16;
/// Bins of the sharpness histogram (see `drift::stats`).
pub const SHARPNESS_BINS: usize = 16;
/// Bins of the detections-per-frame histogram: 0 to 7, and 8 or more.
pub const DETECTION_BINS: usize = 9;

/// Reference statistics of a model on held-out frames (`[profile]`), the baseline drift is
/// measured against; computed by `lookout profile` (`profile::ProfileBuilder`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// What the statistics were measured on.
    pub data: String,
    /// Frames measured.
    pub frames: u64,
    /// Share of sampled pixels per luma bin (ITU-R 601 luma, 16 bins over 0..=255); sums to 1.
    pub brightness: Vec<f64>,
    /// Mean R, G, B of the sampled pixels, 0..=255.
    pub rgb_mean: [f64; 3],
    /// Mean over frames of the standard deviation of luma within a frame (contrast).
    pub contrast: f64,
    /// Share of frames per bin of their best score (10 bins over 0..=1; a frame with nothing
    /// reported counts as 0); sums to 1.
    pub top_score: Vec<f64>,
    /// Share of each label among what was reported (detections, or top-1 classes), by label
    /// id; sums to 1 unless nothing was reported.
    pub class_share: Vec<f64>,
    /// Mean detections per frame (detectors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detections_per_frame: Option<f64>,
    /// Standard deviation of R, G, B over the sampled pixels, 0..=255.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rgb_std: Option<[f64; 3]>,
    /// Share of sampled pixels per red level (16 bins over 0..=255); sums to 1. Empty in
    /// profiles written before colour histograms were kept; drift is then not watched on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub red: Vec<f64>,
    /// As `red`, for green.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub green: Vec<f64>,
    /// As `red`, for blue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blue: Vec<f64>,
    /// Share of frames per sharpness bin (mean luma gradient, on a log scale: see
    /// `drift::stats`); sums to 1. A blurred or fogged lens moves mass to the low bins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sharpness: Vec<f64>,
    /// Share of frames with 0, 1, ..., 7 and 8 or more detections (detectors only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detections: Vec<f64>,
}

impl Profile {
    /// Checks the shape of the statistics against a model with `labels` labels; returns the
    /// offending field and what is wrong.
    pub fn check(&self, labels: usize) -> Result<(), (&'static str, String)> {
        let histogram = |field: &'static str, values: &[f64], bins: usize| {
            if values.len() != bins {
                return Err((field, format!("has {} bins, expected {bins}", values.len())));
            }
            if values.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err((field, "holds a negative or non-finite share".to_owned()));
            }
            let sum: f64 = values.iter().sum();
            if (sum - 1.0).abs() > 1e-3 {
                return Err((field, format!("shares sum to {sum}, not 1")));
            }
            Ok(())
        };
        if self.frames == 0 {
            return Err(("profile.frames", "is 0".to_owned()));
        }
        histogram("profile.brightness", &self.brightness, BRIGHTNESS_BINS)?;
        histogram("profile.top_score", &self.top_score, SCORE_BINS)?;
        // Kept since colour and sharpness drift are watched; absent from older profiles.
        for (field, values, bins) in [
            ("profile.red", &self.red, CHANNEL_BINS),
            ("profile.green", &self.green, CHANNEL_BINS),
            ("profile.blue", &self.blue, CHANNEL_BINS),
            ("profile.sharpness", &self.sharpness, SHARPNESS_BINS),
            ("profile.detections", &self.detections, DETECTION_BINS),
        ] {
            if !values.is_empty() {
                histogram(field, values, bins)?;
            }
        }
        if self.class_share.len() != labels {
            return Err((
                "profile.class_share",
                format!(
                    "has {} values, the model has {labels} labels",
                    self.class_share.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Identity of the ONNX file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Path of the ONNX file, relative to the manifest.
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// File size in bytes.
    pub bytes: u64,
    /// How the weights are stored and computed; when given, the graph must show that form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<QuantForm>,
    /// The float type tract computes in. `f16` is for boards whose CPU has half-precision
    /// arithmetic (the board profile's `cpu_features` lists `asimdhp`: the Pi 5's Cortex-A76);
    /// elsewhere lookout computes in f32 and says so. The file stays as it is: tract converts
    /// the graph when it loads it.
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub compute: Precision,
    /// Files beside the ONNX file holding initializers stored as external data (see
    /// [`crate::external`]); every file the model reads must be listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external: Vec<ExternalFile>,
}

/// The float type a model is computed in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Single precision: what every exporter writes, and the only fast float type on a CPU
    /// without half-precision arithmetic.
    #[default]
    F32,
    /// Half precision: twice the lanes per vector instruction where the CPU computes it (ARMv8.2
    /// FP16, `asimdhp`); 20-100 times slower where it only converts it (x86, Cortex-A72/A53).
    F16,
}

impl Precision {
    /// Whether this is the default, f32 (left out of a written manifest).
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// As written in a manifest and on the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

/// One external data file of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalFile {
    /// Path relative to the manifest's folder, as the model names it (its `location`).
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// File size in bytes.
    pub bytes: u64,
}

impl ModelFile {
    /// The ONNX file's size and its external data files', together: what the board's budget
    /// counts.
    pub fn total_bytes(&self) -> u64 {
        self.external
            .iter()
            .fold(self.bytes, |sum, f| sum.saturating_add(f.bytes))
    }
}

/// Element type of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputDtype {
    /// 32-bit float, normalised per `preprocess`.
    F32,
    /// Raw 8-bit pixels (models with quantized inputs); scale/mean/std must be identity.
    U8,
}

/// Memory layout of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[batch, channels, height, width]` (PyTorch, most ONNX exports).
    Nchw,
    /// `[batch, height, width, channels]` (TensorFlow exports).
    Nhwc,
}

/// The input tensor of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Name of the graph input.
    pub name: String,
    /// Fixed 4-d shape, in the order given by `layout`; batch must be 1.
    pub shape: [usize; 4],
    /// Element type.
    pub dtype: InputDtype,
    /// Layout of `shape`.
    pub layout: Layout,
}

impl InputSpec {
    /// Model input width in pixels.
    pub fn width(&self) -> usize {
        match self.layout {
            Layout::Nchw => self.shape[3],
            Layout::Nhwc => self.shape[2],
        }
    }

    /// Model input height in pixels.
    pub fn height(&self) -> usize {
        match self.layout {
            Layout::Nchw => self.shape[2],
            Layout::Nhwc => self.shape[1],
        }
    }

    /// Number of colour channels (1 or 3).
    pub fn channels(&self) -> usize {
        match self.layout {
            Layout::Nchw => self.shape[1],
            Layout::Nhwc => self.shape[3],
        }
    }
}

/// How the source frame is fitted to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Scale both axes independently to the input size (aspect ratio not kept).
    Stretch,
    /// Scale to fit inside, keep aspect ratio, pad the rest with `pad_value` (YOLO style).
    Letterbox,
    /// Cut the largest centred region with the input's aspect ratio, then scale it.
    CenterCrop,
}

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear with Pillow-compatible antialiasing on downscale.
    #[default]
    Bilinear,
}

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV-trained models).
    Bgr,
    /// One luma channel, ITU-R 601 weights.
    Gray,
}

/// Pixel pre-processing: `value = (pixel * scale - mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// Resize mode.
    pub resize: ResizeMode,
    /// Resampling filter.
    #[serde(default)]
    pub interpolation: Interpolation,
    /// Letterbox fill value in 0–255 pixel units, before normalisation.
    #[serde(default = "default_pad_value")]
    pub pad_value: u8,
    /// Channel order.
    pub color: ColorOrder,
    /// Multiplier applied to the 0–255 pixel value.
    pub scale: f32,
    /// Per-channel mean subtracted after scaling (one value per channel).
    pub mean: Vec<f32>,
    /// Per-channel divisor applied last (one value per channel).
    pub std: Vec<f32>,
    /// The lowest and highest input values over all channels (pixels 0 and 255 through
    /// scale/mean/std). Optional: derived when absent ([`Preprocess::input_range`]); when
    /// written, checked against scale/mean/std, so that a manifest cannot silently disagree
    /// with itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f32; 2]>,
}

impl Preprocess {
    /// The lowest and highest values the model's input takes over all channels: pixels 0 and
    /// 255 through scale, mean and std (the first `channels` of them).
    pub fn input_range(&self, channels: usize) -> [f32; 2] {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for c in 0..channels.min(self.mean.len()).min(self.std.len()) {
            let a = (0.0 * self.scale - self.mean[c]) / self.std[c];
            let b = (255.0 * self.scale - self.mean[c]) / self.std[c];
            lo = lo.min(a.min(b));
            hi = hi.max(a.max(b));
        }
        [lo, hi]
    }
}

fn default_pad_value() -> u8 {
    114
}

/// Unit of box coordinates produced by a detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxUnits {
    /// Pixels of the model input.
    #[default]
    Pixels,
    /// Fractions of the model input size, 0..1.
    Normalized,
}

/// How SSD-style box outputs are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoxEncoding {
    /// Already decoded corners `x0, y0, x1, y1` (UltraFace's exported post-processing).
    Corners,
    /// Offsets against priors: `(dcx, dcy, dw, dh)` with variances, as in the SSD paper.
    CenterOffsets,
    /// Linear offsets against anchors, MediaPipe style (BlazeFace): `cx = a.cx + d0·v0·a.w`,
    /// `w = d2·v1·a.w`, with `v = 1 / x_scale`; values after the first four (keypoints) are
    /// ignored.
    AnchorOffsets,
}

impl BoxEncoding {
    /// The manifest's name of the encoding.
    pub fn key(self) -> &'static str {
        match self {
            BoxEncoding::Corners => "corners",
            BoxEncoding::CenterOffsets => "center-offsets",
            BoxEncoding::AnchorOffsets => "anchor-offsets",
        }
    }
}

/// What turns the scores tensor into probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreActivation {
    /// Scores are probabilities already.
    #[default]
    None,
    /// Scores are logits: `1 / (1 + e^-x)` per class.
    Sigmoid,
}

/// Prior (anchor) boxes generated the UltraFace way: for each feature map of stride `s`, one
/// prior per `min_size` at every cell centre, `w = h = min_size / input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorSpec {
    /// Strides of the feature maps, in input pixels.
    pub steps: Vec<usize>,
    /// Prior sizes in input pixels, one list per stride.
    pub min_sizes: Vec<Vec<f32>>,
    /// Centre and size variances used by the encoder (`1 / x_scale` for anchor offsets).
    /// Optional for `center-offsets`, where SSD's `[0.1, 0.2]` is the default; required for
    /// `anchor-offsets`, where no default would be meaningful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variance: Option<[f32; 2]>,
}

/// SSD's and UltraFace's variances, the default for `center-offsets`.
pub const SSD_VARIANCE: [f32; 2] = [0.1, 0.2];

/// Output decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decoder", rename_all = "lowercase", deny_unknown_fields)]
pub enum OutputSpec {
    /// One score per class, `[1, C]`.
    Classify {
        /// Apply softmax (the graph outputs logits).
        #[serde(default)]
        softmax: bool,
        /// How many classes to report per frame.
        #[serde(default = "default_top_k")]
        top_k: usize,
    },
    /// YOLOv5 layout `[1, N, 5 + C]`: cx, cy, w, h, objectness, class scores.
    Yolov5 {
        /// Units of cx, cy, w, h.
        #[serde(default)]
        box_units: BoxUnits,
    },
    /// YOLOv8 layout `[1, 4 + C, N]`: cx, cy, w, h, class scores; with `keypoints`, the pose
    /// layout `[1, 4 + C + K·D, N]` (YOLOv8-pose: `[1, 5 + 3K, N]`).
    Yolov8 {
        /// Units of cx, cy, w, h (and of keypoint x, y).
        #[serde(default)]
        box_units: BoxUnits,
        /// `[K, D]`: K keypoints of D values (x, y and, when D = 3, a visibility score).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keypoints: Option<[usize; 2]>,
    },
    /// End-to-end detectors that run non-maximum suppression inside the graph (YOLOv10,
    /// Ultralytics `nms=True` exports, which tract 0.23.9 cannot run): `[1, N, 6]` rows of x0, y0, x1, y1, score, class; with
    /// `keypoints`, `[1, N, 6 + K·D]`. Rows are final detections: lookout ranks them and applies
    /// the score threshold and `max_detections`, never its own NMS.
    End2end {
        /// Units of the corners (and of keypoint x, y).
        #[serde(default)]
        box_units: BoxUnits,
        /// `[K, D]` as for `yolov8`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keypoints: Option<[usize; 2]>,
    },
    /// SSD / UltraFace: a scores tensor `[1, N, C]` and a boxes tensor `[1, N, 4]`.
    Ssd {
        /// Name of the scores output.
        scores: String,
        /// Name of the boxes output.
        boxes: String,
        /// Box encoding.
        box_encoding: BoxEncoding,
        /// Units of decoded boxes (after priors, if any).
        #[serde(default = "default_normalized")]
        box_units: BoxUnits,
        /// Class index that means "no object", skipped when decoding.
        #[serde(default)]
        background_class: Option<usize>,
        /// Priors, required for `center-offsets` and `anchor-offsets`.
        #[serde(default)]
        priors: Option<PriorSpec>,
        /// Activation applied to the scores before thresholds.
        #[serde(default)]
        score_activation: ScoreActivation,
    },
    /// Report the output tensors as they are, decoding left to the application: each output's
    /// shape, and its first `values` values in row-major order (flagged when there are more).
    Raw {
        /// Values reported per output (0: shapes only).
        #[serde(default = "default_raw_values")]
        values: usize,
    },
}

fn default_raw_values() -> usize {
    32
}

/// The most values a `raw` record carries per output: a JSON line per frame must stay small
/// enough for a serial line and a log.
pub const MAX_RAW_VALUES: usize = 4096;

fn default_top_k() -> usize {
    5
}

fn default_normalized() -> BoxUnits {
    BoxUnits::Normalized
}

impl OutputSpec {
    /// Whether this decoder produces boxes.
    pub fn is_detector(&self) -> bool {
        matches!(
            self,
            Self::Yolov5 { .. } | Self::Yolov8 { .. } | Self::End2end { .. } | Self::Ssd { .. }
        )
    }

    /// `[K, D]` of a pose model's keypoints, `None` for every other model.
    pub fn keypoints(&self) -> Option<[usize; 2]> {
        match self {
            Self::Yolov8 { keypoints, .. } | Self::End2end { keypoints, .. } => *keypoints,
            _ => None,
        }
    }

    /// The manifest's name of the decoder.
    pub fn decoder_name(&self) -> &'static str {
        match self {
            Self::Classify { .. } => "classify",
            Self::Yolov5 { .. } => "yolov5",
            Self::Yolov8 { .. } => "yolov8",
            Self::End2end { .. } => "end2end",
            Self::Ssd { .. } => "ssd",
            Self::Raw { .. } => "raw",
        }
    }
}

/// Decision thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Minimum score for a class or detection to be reported.
    #[serde(default = "default_score")]
    pub score: f32,
    /// IoU above which non-maximum suppression drops the weaker of two same-class boxes.
    #[serde(default = "default_iou")]
    pub iou: f32,
    /// Upper bound on detections per frame, after NMS.
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
}

fn default_score() -> f32 {
    0.25
}
fn default_iou() -> f32 {
    0.45
}
fn default_max_detections() -> usize {
    100
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            score: default_score(),
            iou: default_iou(),
            max_detections: default_max_detections(),
        }
    }
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let manifest = Self::parse(&read_text(path, "manifest")?, path)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if manifest.name != stem {
            return Err(invalid(
                path,
                "name",
                format!("is {:?} but the file is named {stem:?}.toml", manifest.name),
            ));
        }
        Ok(manifest)
    }

    /// Parses and validates manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let manifest: Manifest = parse_toml(text, origin)?;
        manifest.validate(origin)?;
        Ok(manifest)
    }

    /// Path of the ONNX file for a manifest loaded from `manifest_path`.
    pub fn model_path(&self, manifest_path: &Path) -> PathBuf {
        manifest_path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(&self.model.file)
    }

    /// `name@version`, the identity reported with every result.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Checks everything that can be checked without the ONNX file.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        let fail = |field: &str, message: String| Err(invalid(origin, field, message));
        if self.name.is_empty() {
            return fail("name", "is empty".into());
        }
        if self.version.is_empty() {
            return fail("version", "is empty".into());
        }
        let sha = &self.model.sha256;
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return fail(
                "model.sha256",
                format!("{sha:?} is not 64 lowercase hex digits"),
            );
        }
        for (i, external) in self.model.external.iter().enumerate() {
            let field = format!("model.external[{i}]");
            if !crate::external::plain_location(&external.file) {
                return fail(
                    &field,
                    format!(
                        "file {:?} is not a plain path inside the model's folder",
                        external.file
                    ),
                );
            }
            if !is_sha256(&external.sha256) {
                return fail(
                    &field,
                    format!(
                        "sha256 {:?} is not 64 lowercase hex digits",
                        external.sha256
                    ),
                );
            }
            if self.model.external[..i]
                .iter()
                .any(|e| e.file == external.file)
            {
                return fail(&field, format!("file {:?} is listed twice", external.file));
            }
        }
        let input = &self.input;
        let batch = input.shape[0];
        if batch != 1 {
            return fail(
                "input.shape",
                format!("batch is {batch}, lookout runs batch 1"),
            );
        }
        if input.width() == 0 || input.height() == 0 {
            return fail(
                "input.shape",
                format!("{:?} has a zero dimension", input.shape),
            );
        }
        let channels = input.channels();
        let want_channels = match self.preprocess.color {
            ColorOrder::Gray => 1,
            ColorOrder::Rgb | ColorOrder::Bgr => 3,
        };
        if channels != want_channels {
            return fail(
                "input.shape",
                format!(
                    "has {channels} channels in {:?} layout but preprocess.color {:?} needs {want_channels}",
                    input.layout, self.preprocess.color
                ),
            );
        }
        let pre = &self.preprocess;
        for (field, values) in [("preprocess.mean", &pre.mean), ("preprocess.std", &pre.std)] {
            if values.len() != channels {
                return fail(
                    field,
                    format!(
                        "has {} values, the input has {channels} channels",
                        values.len()
                    ),
                );
            }
        }
        if let Some(bad) = pre.mean.iter().find(|m| !m.is_finite()) {
            return fail("preprocess.mean", format!("contains {bad}, must be finite"));
        }
        if let Some(range) = pre.range.filter(|r| r.iter().any(|v| !v.is_finite())) {
            return fail("preprocess.range", format!("{range:?} must be finite"));
        }
        if let Some(bad) = pre.std.iter().find(|s| !(s.is_finite() && **s != 0.0)) {
            return fail(
                "preprocess.std",
                format!("contains {bad}, must be finite and non-zero"),
            );
        }
        if !(pre.scale.is_finite() && pre.scale > 0.0) {
            return fail(
                "preprocess.scale",
                format!("{} must be positive", pre.scale),
            );
        }
        if input.dtype == InputDtype::U8
            && (pre.scale != 1.0
                || pre.mean.iter().any(|m| *m != 0.0)
                || pre.std.iter().any(|s| *s != 1.0))
        {
            return fail(
                "preprocess.scale",
                "u8 inputs take raw pixels: scale must be 1, mean 0 and std 1".into(),
            );
        }
        let [lo, hi] = pre.input_range(channels);
        let tol = 1e-3 * (1.0 + hi.abs().max(lo.abs()));
        if let Some(range) = pre
            .range
            .filter(|r| (lo - r[0]).abs() > tol || (hi - r[1]).abs() > tol)
        {
            return fail(
                "preprocess.range",
                format!("is {range:?} but scale/mean/std map pixels 0..255 to [{lo}, {hi}]"),
            );
        }
        if let OutputSpec::Raw { values } = self.output {
            if values > MAX_RAW_VALUES {
                return fail(
                    "output.values",
                    format!("{values} is more than {MAX_RAW_VALUES} values per output per frame"),
                );
            }
        }
        if self.labels.is_empty() && !matches!(self.output, OutputSpec::Raw { .. }) {
            return fail("labels", "is empty".into());
        }
        if let Some(profile) = &self.profile {
            profile
                .check(self.labels.len())
                .or_else(|(field, message)| fail(field, message))?;
        }
        if let Some([count, values]) = self.output.keypoints() {
            if count == 0 || !(values == 2 || values == 3) {
                return fail(
                    "output.keypoints",
                    format!(
                        "[{count}, {values}] must be [K, 2] or [K, 3] with at least one keypoint"
                    ),
                );
            }
        }
        match &self.output {
            OutputSpec::Classify { top_k, .. } if *top_k == 0 => {
                return fail("output.top_k", "must be at least 1".into());
            }
            OutputSpec::Ssd {
                box_encoding: encoding @ (BoxEncoding::CenterOffsets | BoxEncoding::AnchorOffsets),
                priors: None,
                ..
            } => {
                return fail(
                    "output.priors",
                    format!("is required with box_encoding = \"{}\"", encoding.key()),
                );
            }
            OutputSpec::Ssd {
                box_encoding: encoding @ (BoxEncoding::CenterOffsets | BoxEncoding::AnchorOffsets),
                box_units: BoxUnits::Pixels,
                ..
            } => {
                // Priors are fractions of the input, so offsets against them decode to fractions.
                return fail(
                    "output.box_units",
                    format!(
                        "must be \"normalized\" with box_encoding = \"{}\"",
                        encoding.key()
                    ),
                );
            }
            OutputSpec::Ssd {
                priors,
                background_class,
                box_encoding,
                ..
            } => {
                if let Some(bg) = background_class.filter(|bg| *bg >= self.labels.len()) {
                    return fail(
                        "output.background_class",
                        format!(
                            "{bg} is not a label index (there are {})",
                            self.labels.len()
                        ),
                    );
                }
                if let Some(p) = priors {
                    if *box_encoding == BoxEncoding::Corners {
                        return fail(
                            "output.priors",
                            "is only used with box_encoding = \"center-offsets\" or \"anchor-offsets\""
                                .into(),
                        );
                    }
                    if p.steps.len() != p.min_sizes.len() {
                        return fail(
                            "output.priors.min_sizes",
                            format!(
                                "has {} lists for {} steps",
                                p.min_sizes.len(),
                                p.steps.len()
                            ),
                        );
                    }
                    if p.steps.contains(&0) {
                        return fail("output.priors.steps", "contains 0".into());
                    }
                    if *box_encoding == BoxEncoding::AnchorOffsets && p.variance.is_none() {
                        return fail(
                            "output.priors.variance",
                            "is required with box_encoding = \"anchor-offsets\" (1 / x_scale, \
                             e.g. [0.0078125, 0.0078125] for MediaPipe's 128)"
                                .into(),
                        );
                    }
                    if let Some(bad) = p.variance.iter().flatten().find(|v| !v.is_finite()) {
                        return fail(
                            "output.priors.variance",
                            format!("contains {bad}, must be finite"),
                        );
                    }
                    if let Some(bad) = p
                        .min_sizes
                        .iter()
                        .flatten()
                        .find(|s| !(s.is_finite() && **s > 0.0))
                    {
                        return fail(
                            "output.priors.min_sizes",
                            format!("contains {bad}, must be positive"),
                        );
                    }
                }
            }
            _ => {}
        }
        let t = &self.thresholds;
        if !(0.0..=1.0).contains(&t.score) {
            return fail("thresholds.score", format!("{} is not in [0, 1]", t.score));
        }
        if !(0.0..=1.0).contains(&t.iou) {
            return fail("thresholds.iou", format!("{} is not in [0, 1]", t.iou));
        }
        if t.max_detections == 0 {
            return fail("thresholds.max_detections", "must be at least 1".into());
        }
        Ok(())
    }
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn invalid(path: &Path, field: &str, message: String) -> ConfigError {
    ConfigError::invalid(path, field, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "m"
version = "1"
labels = ["a", "b"]
[model]
file = "m.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
bytes = 10
[input]
name = "x"
shape = [1, 3, 4, 6]
dtype = "f32"
layout = "nchw"
[preprocess]
resize = "letterbox"
color = "rgb"
scale = 0.00392156862745098
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
range = [-2.1179, 2.64]
[output]
decoder = "yolov8"
"#;

    fn parse(text: &str) -> Result<Manifest, ConfigError> {
        Manifest::parse(text, Path::new("m.toml"))
    }

    fn with(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "{from}");
        BASE.replacen(from, to, 1)
    }

    fn field_error(text: &str) -> (String, String) {
        match parse(text) {
            Err(ConfigError::Invalid { field, message, .. }) => (field, message),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn parses_with_defaults() {
        let m = parse(BASE).expect("valid");
        assert_eq!(m.id(), "m@1");
        assert_eq!(
            (m.input.width(), m.input.height(), m.input.channels()),
            (6, 4, 3)
        );
        assert_eq!(m.preprocess.pad_value, 114);
        assert_eq!(m.preprocess.interpolation, Interpolation::Bilinear);
        assert_eq!(m.thresholds, Thresholds::default());
        assert_eq!(
            m.output,
            OutputSpec::Yolov8 {
                box_units: BoxUnits::Pixels,
                keypoints: None
            }
        );
        assert_eq!(
            m.model_path(Path::new("models/m.toml")),
            Path::new("models/m.onnx")
        );
    }

    #[test]
    fn nhwc_dimensions() {
        let m = parse(&with(
            "shape = [1, 3, 4, 6]\ndtype = \"f32\"\nlayout = \"nchw\"",
            "shape = [1, 4, 6, 3]\ndtype = \"f32\"\nlayout = \"nhwc\"",
        ))
        .expect("valid");
        assert_eq!(
            (m.input.width(), m.input.height(), m.input.channels()),
            (6, 4, 3)
        );
    }

    #[test]
    fn unknown_keys_and_values_are_named() {
        let err = parse(&with(
            "color = \"rgb\"",
            "color = \"rgb\"\ncolour = \"bgr\"",
        ))
        .expect_err("unknown key");
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        let err = parse(&with("\"letterbox\"", "\"fit\"")).expect_err("bad variant");
        assert!(err.to_string().contains("unknown variant `fit`"), "{err}");
        let err =
            parse(&with("decoder = \"yolov8\"", "decoder = \"yolov9\"")).expect_err("bad decoder");
        assert!(err.to_string().contains("yolov9"), "{err}");
    }

    #[test]
    fn self_contradictions_are_named_by_field() {
        let cases = [
            (with("range = [-2.1179, 2.64]", "range = [0.0, 1.0]"), "preprocess.range"),
            (with("std = [0.229, 0.224, 0.225]", "std = [0.229, 0.0, 0.225]"), "preprocess.std"),
            (with("mean = [0.485, 0.456, 0.406]", "mean = [0.5]"), "preprocess.mean"),
            (with("color = \"rgb\"", "color = \"gray\""), "input.shape"),
            (with("shape = [1, 3, 4, 6]", "shape = [2, 3, 4, 6]"), "input.shape"),
            (with("shape = [1, 3, 4, 6]", "shape = [1, 3, 0, 6]"), "input.shape"),
            (with("sha256 = \"0000", "sha256 = \"ABCD"), "model.sha256"),
            (with("labels = [\"a\", \"b\"]", "labels = []"), "labels"),
            (with("version = \"1\"", "version = \"\""), "version"),
            (with("dtype = \"f32\"", "dtype = \"u8\""), "preprocess.scale"),
            (format!("{BASE}[thresholds]\nscore = 1.5\n"), "thresholds.score"),
            (format!("{BASE}[thresholds]\niou = -0.1\n"), "thresholds.iou"),
            (format!("{BASE}[thresholds]\nmax_detections = 0\n"), "thresholds.max_detections"),
            (
                with("decoder = \"yolov8\"", "decoder = \"classify\"\ntop_k = 0"),
                "output.top_k",
            ),
            (
                with(
                    "decoder = \"yolov8\"",
                    "decoder = \"ssd\"\nscores = \"s\"\nboxes = \"b\"\nbox_encoding = \"center-offsets\"",
                ),
                "output.priors",
            ),
            (
                with(
                    "decoder = \"yolov8\"",
                    "decoder = \"ssd\"\nscores = \"s\"\nboxes = \"b\"\nbox_encoding = \"center-offsets\"\n\
                     box_units = \"pixels\"\npriors = { steps = [8], min_sizes = [[10.0]] }",
                ),
                "output.box_units",
            ),
            (
                with(
                    "decoder = \"yolov8\"",
                    "decoder = \"ssd\"\nscores = \"s\"\nboxes = \"b\"\nbox_encoding = \"center-offsets\"\n\
                     priors = { steps = [8, 16], min_sizes = [[10.0]] }",
                ),
                "output.priors.min_sizes",
            ),
            (
                with(
                    "decoder = \"yolov8\"",
                    "decoder = \"ssd\"\nscores = \"s\"\nboxes = \"b\"\nbox_encoding = \"anchor-offsets\"\n\
                     priors = { steps = [8], min_sizes = [[10.0]] }",
                ),
                "output.priors.variance",
            ),
            (
                with(
                    "decoder = \"yolov8\"",
                    "decoder = \"ssd\"\nscores = \"s\"\nboxes = \"b\"\nbox_encoding = \"corners\"\n\
                     background_class = 2",
                ),
                "output.background_class",
            ),
            (
                with(
                    "decoder = \"yolov8\"",
                    "decoder = \"ssd\"\nscores = \"s\"\nboxes = \"b\"\nbox_encoding = \"corners\"\n\
                     priors = { steps = [8], min_sizes = [[10.0]] }",
                ),
                "output.priors",
            ),
            (with("mean = [0.485, 0.456, 0.406]", "mean = [nan, 0.456, 0.406]"), "preprocess.mean"),
            (with("range = [-2.1179, 2.64]", "range = [nan, nan]"), "preprocess.range"),
        ];
        for (text, field) in cases {
            let (got, message) = field_error(&text);
            assert_eq!(got, field, "{message}");
        }
    }

    #[test]
    fn pose_and_end_to_end_outputs_parse_and_keypoints_are_checked() {
        let m = parse(&with(
            "decoder = \"yolov8\"",
            "decoder = \"end2end\"\nkeypoints = [17, 3]",
        ))
        .expect("valid");
        assert_eq!(
            m.output,
            OutputSpec::End2end {
                box_units: BoxUnits::Pixels,
                keypoints: Some([17, 3])
            }
        );
        assert!(m.output.is_detector());
        assert_eq!(m.output.decoder_name(), "end2end");
        for bad in ["[0, 3]", "[17, 4]", "[17, 1]"] {
            let text = with(
                "decoder = \"yolov8\"",
                &format!("decoder = \"yolov8\"\nkeypoints = {bad}"),
            );
            let (field, message) = field_error(&text);
            assert_eq!(field, "output.keypoints");
            assert!(message.contains("[K, 2] or [K, 3]"), "{message}");
        }
    }

    #[test]
    fn raw_values_default_and_are_bounded() {
        let raw = with("decoder = \"yolov8\"", "decoder = \"raw\"");
        let m = parse(&raw).expect("raw with the default");
        assert_eq!(m.output, OutputSpec::Raw { values: 32 });
        let over = with("decoder = \"yolov8\"", "decoder = \"raw\"\nvalues = 4097");
        assert_eq!(field_error(&over).0, "output.values");
    }

    #[test]
    fn range_is_derived_when_absent_and_checked_when_written() {
        let without = with("range = [-2.1179, 2.64]\n", "");
        assert!(!without.contains("range ="), "{without}");
        let m = parse(&without).expect("a manifest without range is valid");
        assert_eq!(m.preprocess.range, None);
        let [lo, hi] = m.preprocess.input_range(3);
        // ImageNet's mean and std: (0 - 0.485) / 0.229 and (1 - 0.406) / 0.225.
        assert!(
            (lo - -2.117_904).abs() < 1e-4 && (hi - 2.64).abs() < 1e-4,
            "{lo} {hi}"
        );
        let written = parse(&BASE.replace("range = [-2.1179, 2.64]", "range = [-2.0, 2.64]"));
        assert!(written.is_err(), "a written range is still checked");
    }

    #[test]
    fn u8_inputs_take_raw_pixels() {
        let text = with("dtype = \"f32\"", "dtype = \"u8\"")
            .replace("scale = 0.00392156862745098", "scale = 1.0")
            .replace("mean = [0.485, 0.456, 0.406]", "mean = [0.0, 0.0, 0.0]")
            .replace("std = [0.229, 0.224, 0.225]", "std = [1.0, 1.0, 1.0]")
            .replace("range = [-2.1179, 2.64]", "range = [0.0, 255.0]");
        assert_eq!(parse(&text).expect("valid").input.dtype, InputDtype::U8);
    }

    #[test]
    fn load_checks_the_name_against_the_file() {
        let dir = std::env::temp_dir().join(format!("lookout-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("other.toml");
        std::fs::write(&path, BASE).expect("write");
        let err = Manifest::load(&path).expect_err("name mismatch");
        assert!(err.to_string().contains("field `name`"), "{err}");
        let err = Manifest::load(&dir.join("missing.toml")).expect_err("missing");
        assert!(
            err.to_string()
                .contains("missing.toml: cannot read manifest"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn shipped_manifests_are_valid() {
        let dir = crate::repo_root().join("models");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("models dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
                count += 1;
            }
        }
        assert!(count >= 2, "a detector and a classifier ship");
    }
}
