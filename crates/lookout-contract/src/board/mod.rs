//! Board profiles: what a target board can afford, written down before deployment.
//!
//! A profile (`boards/<name>.toml`) names the target triple, the hardware (cores, RAM), the
//! budgets a model must fit (file size, RAM, latency), the default camera, serial and GPIO
//! settings, and the board's power draw for cost estimates. `build.rs` and `lookout check` read
//! the same profile, so the budget that fails a build is the one a person can read.
//!
//! Hardware notes that trip people up, kept in the profiles themselves:
//! - Pi 3, Pi 4 and Zero 2 W give the PL011 UART to Bluetooth; the header pins 8/10 carry the
//!   mini-UART `ttyS0` (`/dev/serial0`) unless `dtoverlay=disable-bt` is set.
//! - Pi 5 has a dedicated debug UART (`/dev/serial0` → `ttyAMA10`); the header UART is `ttyAMA0`.
//! - The header GPIO chip is found by its label (`pinctrl-rp1` on Pi 5, `pinctrl-bcm2711` on
//!   Pi 4, `pinctrl-bcm2835` on Pi 3 / Zero 2 W): its `/dev/gpiochipN` number changed between
//!   kernels on Pi 5.
//!
//! Each table a profile holds is typed in its own module here, named after the part of lookout
//! that reads it: [`serial`], [`gpio`], [`drift`], [`samples`], [`models`], [`health`], [`mqtt`], [`http`], [`scene`]
//! (`[tracking]`, `[[zones]]`, `[[masks]]`). Each checks its own
//! values and says which field is wrong ([`FieldError`](crate::FieldError)); [`Board::parse`]
//! puts the file and table in front ([`ConfigError`]).

pub mod drift;
pub mod gpio;
pub mod health;
pub mod http;
pub mod models;
pub mod mqtt;
pub mod samples;
pub mod scene;
pub mod serial;

use crate::error::{parse_toml, read_text, ConfigError};
pub use drift::DriftConfig;
pub use gpio::{GpioDefaults, GpioRule, Heartbeat};
pub use health::HealthConfig;
pub use http::HttpConfig;
pub use models::ModelsConfig;
pub use mqtt::{MqttConfig, MqttUrl, ResultsPolicy};
pub use samples::SamplesConfig;
pub use scene::{Anchor, MaskConfig, SceneConfig, TrackingConfig, ZoneConfig};
use serde::{Deserialize, Serialize};
pub use serial::{FlowControl, LineFormat, SerialDefaults};
use std::path::Path;

/// A board profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Profile name; equals the file stem.
    pub name: String,
    /// Human description of the board.
    #[serde(default)]
    pub description: String,
    /// Rust target triple the binary is built for.
    pub target: String,
    /// CPU cores.
    pub cores: usize,
    /// RAM of the smallest variant this profile covers, in bytes.
    pub ram_bytes: u64,
    /// Largest ONNX file allowed on this board, in bytes.
    pub model_budget_bytes: u64,
    /// Peak resident memory allowed for the whole process, in bytes.
    pub ram_budget_bytes: u64,
    /// Per-frame latency the deployment must meet, in milliseconds.
    pub latency_target_ms: f64,
    /// Cores `run` may use for inference: as tract's threads within a frame or as workers on
    /// whole frames, chosen at start from the model's measured time (at most the cores the
    /// machine has).
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// The CPU core, as in the board's documentation (`cortex-a76`); informative.
    #[serde(default)]
    pub cpu: String,
    /// Instruction-set extensions of the CPU that change what is fast, in the kernel's
    /// /proc/cpuinfo spelling (see [`CPU_FEATURES`]): `asimdhp` (half-precision arithmetic)
    /// lets a manifest's `compute = "f16"` take effect, `asimddp` (dot product) speeds tract's
    /// int8 matrix products.
    #[serde(default)]
    pub cpu_features: Vec<String>,
    /// Power draw figures.
    pub power: Power,
    /// Published speed of this board on a reference network, for estimating a model's latency
    /// here from a measurement on another machine; absent for the host profile.
    #[serde(default)]
    pub perf: Option<Perf>,
    /// Default camera settings.
    pub camera: CameraDefaults,
    /// Default serial settings.
    pub serial: SerialDefaults,
    /// Default GPIO settings.
    pub gpio: GpioDefaults,
    /// How drift is watched (`[drift]`; defaults when absent).
    #[serde(default)]
    pub drift: DriftConfig,
    /// Which frames are kept for retraining (`[samples]`; off when absent).
    #[serde(default)]
    pub samples: SamplesConfig,
    /// Where installed model versions live and how a new one is tried (`[models]`; defaults
    /// when absent).
    #[serde(default)]
    pub models: ModelsConfig,
    /// Whether the SoC temperature and throttling are read (`[health]`; on when absent).
    #[serde(default)]
    pub health: HealthConfig,
    /// Where results and events are published through a broker, and what is (`[mqtt]`;
    /// used by `--sink mqtt`).
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// The live preview and the API (`[http]`; off when absent, unless `run --http`).
    #[serde(default)]
    pub http: HttpConfig,
    // The scene tables are SceneConfig's fields written out, not a flattened SceneConfig:
    // serde's flatten turns deny_unknown_fields off, and a misspelt table must be an error.
    /// How objects are followed across frames (`[tracking]`; off when absent and no zone is
    /// defined).
    #[serde(default)]
    pub tracking: TrackingConfig,
    /// Regions of the frame whose objects are counted and reported (`[[zones]]`).
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    /// Regions of the frame whose detections are ignored (`[[masks]]`).
    #[serde(default)]
    pub masks: Vec<MaskConfig>,
}

fn default_threads() -> usize {
    1
}

/// The `cpu_features` a board profile may list: the ARMv8 extensions tract's kernels choose by.
pub const CPU_FEATURES: [&str; 4] = ["asimd", "asimddp", "asimdhp", "i8mm"];

impl Board {
    /// The board's `[tracking]`, `[[zones]]` and `[[masks]]` together.
    pub fn scene(&self) -> SceneConfig {
        SceneConfig {
            tracking: self.tracking.clone(),
            zones: self.zones.clone(),
            masks: self.masks.clone(),
        }
    }

    /// Whether the CPU computes in half precision (`asimdhp`), so that a model computed in f16
    /// runs faster than in f32 rather than 20-100 times slower.
    pub fn computes_f16(&self) -> bool {
        self.cpu_features.iter().any(|f| f == "asimdhp")
    }
}

/// Typical power draw, for energy-cost estimates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Power {
    /// Board idle, camera attached, in watts.
    pub idle_watts: f64,
    /// All cores busy, in watts.
    pub load_watts: f64,
    /// Where the figures come from.
    #[serde(default)]
    pub source: String,
}

/// The board's published times for reference networks, with where the figures come from: what
/// a latency measured on another machine is scaled by (`lookout::lab::estimate`).
///
/// Two references, because boards and machines differ more on some kinds of convolution than
/// on others: MobileNetV2 1.0 at 224x224 (fp32, 300.8 M multiply-accumulates, mostly 1x1 and
/// depthwise convolutions; `models/reference/mobilenetv2-224.onnx` has the same layers) for
/// models with depthwise convolutions, and ResNet-18 at 224x224 (fp32, 1.81 G
/// multiply-accumulates, dense convolutions only; `models/reference/resnet18-224.onnx`) for
/// models without. The ResNet-18 figures are optional; without them every model is scaled by
/// MobileNetV2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Perf {
    /// MobileNetV2, one thread, in milliseconds.
    pub reference_ms: f64,
    /// MobileNetV2, all cores, in milliseconds.
    #[serde(default)]
    pub reference_ms_all_cores: Option<f64>,
    /// Source of the MobileNetV2 figures, and how they were derived if not measured on this
    /// board.
    pub source: String,
    /// ResNet-18, one thread, in milliseconds.
    #[serde(default)]
    pub dense_reference_ms: Option<f64>,
    /// ResNet-18, all cores, in milliseconds.
    #[serde(default)]
    pub dense_reference_ms_all_cores: Option<f64>,
    /// Source of the ResNet-18 figures; required with them.
    #[serde(default)]
    pub dense_source: Option<String>,
}

/// Default camera settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraDefaults {
    /// Video device path.
    pub device: String,
    /// Preferred capture width.
    pub width: u32,
    /// Preferred capture height.
    pub height: u32,
    /// Preferred frame rate.
    pub fps: u32,
    /// A fixed capture mode, `WIDTHxHEIGHT@FPS FORMAT` (e.g. `"640x480@30 YUYV"`); without it
    /// the smallest mode covering the model input at width:height's aspect is chosen.
    #[serde(default)]
    pub mode: Option<String>,
    /// Degrees the captured frame is turned clockwise before anything looks at it: 0, 90, 180
    /// or 270, for a camera mounted sideways or upside down. The source frame of the records
    /// (boxes, zones, snapshots) is the frame after turning.
    #[serde(default)]
    pub rotate: u16,
    /// A mirror applied after `rotate`: `none`, `horizontal` (left and right swapped) or
    /// `vertical` (top and bottom swapped).
    #[serde(default)]
    pub flip: Flip,
    /// `v4l2` (a USB camera, the default) or `csi` (a Camera Module on the ribbon cable, which
    /// lookout reads through libcamera's V4L2 layer, starting itself again with it preloaded).
    #[serde(default)]
    pub kind: CameraKind,
}

/// How the board's camera is reached (`[camera] kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraKind {
    /// A V4L2 capture device (USB/UVC).
    #[default]
    V4l2,
    /// A CSI Camera Module, through libcamera's V4L2 compatibility layer.
    Csi,
}

/// A mirror of the camera's frame (`[camera] flip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flip {
    /// As captured.
    #[default]
    None,
    /// Left and right swapped.
    Horizontal,
    /// Top and bottom swapped.
    Vertical,
}

impl Board {
    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read_text(path, "board profile")?, path)
    }

    /// Parses profile text; `origin` names it in errors and must be named `<name>.toml`.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let board: Board = parse_toml(text, origin)?;
        board.validate(origin)?;
        Ok(board)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let fail = |field: &str, message: String| Err(ConfigError::invalid(path, field, message));
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if self.name != stem {
            return fail(
                "name",
                format!("is {:?} but the file is named {stem:?}.toml", self.name),
            );
        }
        if self.cores == 0 {
            return fail("cores", "must be at least 1".into());
        }
        if ![0, 90, 180, 270].contains(&self.camera.rotate) {
            return fail(
                "camera.rotate",
                format!(
                    "{} is not 0, 90, 180 or 270 (degrees clockwise)",
                    self.camera.rotate
                ),
            );
        }
        self.drift.check().map_err(|e| e.in_file(path, "drift"))?;
        self.samples
            .check()
            .map_err(|e| e.in_file(path, "samples"))?;
        self.models.check().map_err(|e| e.in_file(path, "models"))?;
        self.mqtt.check().map_err(|e| e.in_file(path, "mqtt"))?;
        self.http.check().map_err(|e| e.in_file(path, "http"))?;
        self.scene().check().map_err(|e| e.in_file(path, ""))?;
        if self.threads == 0 || self.threads > self.cores {
            return fail(
                "threads",
                format!("{} is not in 1..={}", self.threads, self.cores),
            );
        }
        if let Some(unknown) = self
            .cpu_features
            .iter()
            .find(|f| !CPU_FEATURES.contains(&f.as_str()))
        {
            return fail(
                "cpu_features",
                format!(
                    "{unknown:?} is not one of {} (/proc/cpuinfo's spelling)",
                    CPU_FEATURES.join(", ")
                ),
            );
        }
        if self.model_budget_bytes == 0 {
            return fail("model_budget_bytes", "must be positive".into());
        }
        if self.ram_budget_bytes > self.ram_bytes {
            return fail(
                "ram_budget_bytes",
                format!(
                    "{} exceeds the board's RAM ({})",
                    self.ram_budget_bytes, self.ram_bytes
                ),
            );
        }
        if !(self.latency_target_ms.is_finite() && self.latency_target_ms > 0.0) {
            return fail("latency_target_ms", "must be positive".into());
        }
        if !(self.power.idle_watts > 0.0 && self.power.load_watts >= self.power.idle_watts) {
            return fail("power", "needs 0 < idle_watts <= load_watts".into());
        }
        if let Some(perf) = &self.perf {
            let positive = |ms: f64| ms.is_finite() && ms > 0.0;
            if !positive(perf.reference_ms) {
                return fail("perf.reference_ms", "must be positive".into());
            }
            if perf.reference_ms_all_cores.is_some_and(|ms| !positive(ms)) {
                return fail("perf.reference_ms_all_cores", "must be positive".into());
            }
            if perf.source.trim().is_empty() {
                return fail("perf.source", "must say where the figures come from".into());
            }
            if perf.dense_reference_ms.is_some_and(|ms| !positive(ms)) {
                return fail("perf.dense_reference_ms", "must be positive".into());
            }
            if perf
                .dense_reference_ms_all_cores
                .is_some_and(|ms| !positive(ms))
            {
                return fail(
                    "perf.dense_reference_ms_all_cores",
                    "must be positive".into(),
                );
            }
            // An all-cores or source line alone is half an edit: without the one-thread
            // figure the estimate would silently fall back to MobileNetV2.
            if perf.dense_reference_ms.is_none()
                && (perf.dense_reference_ms_all_cores.is_some() || perf.dense_source.is_some())
            {
                return fail(
                    "perf.dense_reference_ms",
                    "is missing, but other ResNet-18 figures are given".into(),
                );
            }
            if perf.dense_reference_ms.is_some()
                && perf
                    .dense_source
                    .as_deref()
                    .is_none_or(|s| s.trim().is_empty())
            {
                return fail(
                    "perf.dense_source",
                    "must say where the ResNet-18 figures come from".into(),
                );
            }
        }
        self.gpio.check().map_err(|e| e.in_file(path, "gpio"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boards_dir() -> std::path::PathBuf {
        crate::repo_root().join("boards")
    }

    fn load(name: &str) -> Board {
        Board::load(&boards_dir().join(format!("{name}.toml"))).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_required_profile_loads() {
        for name in [
            "host",
            "rpi-zero-2w",
            "rpi-3b",
            "rpi-3b-armhf",
            "rpi-4b",
            "rpi-5",
        ] {
            let board = load(name);
            assert_eq!(board.name, name);
            assert!(board.model_budget_bytes < board.ram_budget_bytes, "{name}");
            // The bundled profiles' frame budget is one frame of their camera, rounded to
            // 0.1 ms: change one and the other follows.
            let frame_ms = 1000.0 / f64::from(board.camera.fps);
            assert!(
                (board.latency_target_ms - frame_ms).abs() <= 0.05,
                "{name}: latency_target_ms {} for a {} fps camera",
                board.latency_target_ms,
                board.camera.fps
            );
            // A drift window is a minute of the camera's frames, 900 of them counted.
            assert_eq!(
                board.drift.window_frames,
                60 * u64::from(board.camera.fps),
                "{name}"
            );
            assert_eq!(
                board.drift.window_frames / board.drift.sample_every,
                900,
                "{name}"
            );
        }
    }

    /// Only the Pi 5's Cortex-A76 computes in half precision; an extension the kernel does not
    /// spell so is refused by name.
    #[test]
    fn cpu_features_say_which_boards_compute_f16() {
        assert!(load("rpi-5").computes_f16());
        for name in ["host", "rpi-zero-2w", "rpi-3b", "rpi-3b-armhf", "rpi-4b"] {
            assert!(!load(name).computes_f16(), "{name}");
        }
        let text = std::fs::read_to_string(boards_dir().join("rpi-5.toml")).expect("profile");
        let typo = text.replace("\"asimdhp\"", "\"fp16\"");
        assert_ne!(typo, text);
        let err = Board::parse(&typo, Path::new("rpi-5.toml"))
            .expect_err("unknown feature")
            .to_string();
        assert!(
            err.contains("cpu_features") && err.contains("\"fp16\""),
            "{err}"
        );
    }

    #[test]
    fn pi_specific_defaults() {
        let pi5 = load("rpi-5");
        assert_eq!(
            pi5.serial.port, "/dev/ttyAMA0",
            "serial0 is the debug port on Pi 5"
        );
        assert_eq!(pi5.gpio.chip_label, "pinctrl-rp1");
        assert_eq!(load("rpi-4b").gpio.chip_label, "pinctrl-bcm2711");
        assert_eq!(load("rpi-4b").serial.port, "/dev/serial0");
        for name in ["rpi-zero-2w", "rpi-3b", "rpi-4b", "rpi-5"] {
            assert_eq!(load(name).target, "aarch64-unknown-linux-gnu", "{name}");
        }
        let armhf = load("rpi-3b-armhf");
        assert_eq!(armhf.target, "armv7-unknown-linux-gnueabihf");
        assert_eq!(armhf.gpio.chip_label, load("rpi-3b").gpio.chip_label);
        // Smaller boards get smaller budgets.
        let budgets: Vec<u64> = ["rpi-zero-2w", "rpi-3b", "rpi-4b", "rpi-5"]
            .iter()
            .map(|n| load(n).model_budget_bytes)
            .collect();
        assert!(budgets.windows(2).all(|w| w[0] < w[1]), "{budgets:?}");
    }

    /// Each Pi profile carries both references, as published: ResNet-18 (6x MobileNetV2's
    /// multiply-accumulates) is slower than MobileNetV2 on every board, all cores are faster
    /// than one, and the figures say where they come from.
    #[test]
    fn every_pi_profile_has_both_reference_figures() {
        for (name, mobilenet, resnet) in [
            ("rpi-zero-2w", 274.23, 654.69),
            ("rpi-3b", 185.27, 442.83),
            ("rpi-3b-armhf", 185.27, 442.83),
            ("rpi-4b", 93.48, 191.10),
            ("rpi-5", 24.09, 49.25),
        ] {
            let perf = load(name)
                .perf
                .unwrap_or_else(|| panic!("{name}: no [perf]"));
            assert_eq!(perf.reference_ms, mobilenet, "{name}");
            assert_eq!(perf.dense_reference_ms, Some(resnet), "{name}");
            let all_cores = perf.dense_reference_ms_all_cores.expect("all cores");
            assert!(all_cores < resnet, "{name}");
            assert!(
                perf.dense_source
                    .as_deref()
                    .is_some_and(|s| s.contains("resnet18")),
                "{name}: {:?}",
                perf.dense_source
            );
        }
        assert_eq!(load("host").perf, None);
    }

    #[test]
    fn bad_reference_figures_name_the_field() {
        let text = std::fs::read_to_string(boards_dir().join("rpi-4b.toml")).expect("read");
        let source_line = text
            .lines()
            .find(|l| l.starts_with("dense_source = "))
            .expect("dense_source line");
        let cases = [
            (
                "dense_reference_ms = 191.10",
                "dense_reference_ms = 0.0",
                "perf.dense_reference_ms",
            ),
            (
                "dense_reference_ms = 191.10",
                "dense_reference_ms = nan",
                "perf.dense_reference_ms",
            ),
            (
                "dense_reference_ms_all_cores = 123.12",
                "dense_reference_ms_all_cores = -1.0",
                "perf.dense_reference_ms_all_cores",
            ),
            (source_line, "dense_source = \"  \"", "perf.dense_source"),
            (source_line, "", "perf.dense_source"),
            ("dense_reference_ms = 191.10", "", "perf.dense_reference_ms"),
        ];
        for (from, to, field) in cases {
            assert!(text.contains(from), "{from}");
            let err =
                Board::parse(&text.replacen(from, to, 1), Path::new("rpi-4b.toml")).expect_err(to);
            assert!(
                err.to_string().contains(&format!("field `{field}`")),
                "{to}: {err}"
            );
        }
        let err = Board::parse(
            &text.replacen(
                "dense_reference_ms = 191.10",
                "dense_reference_ms = \"191\"",
                1,
            ),
            Path::new("rpi-4b.toml"),
        )
        .expect_err("a string");
        assert!(err.to_string().contains("dense_reference_ms"), "{err}");
    }

    #[test]
    fn bad_profiles_name_the_field() {
        let text = std::fs::read_to_string(boards_dir().join("rpi-4b.toml")).expect("read");
        let cases = [
            ("threads = 4", "threads = 9", "threads"),
            ("cores = 4", "cores = 0", "cores"),
            ("idle_watts = 2.7", "idle_watts = 9.0", "power"),
            (
                "latency_target_ms = 33.3",
                "latency_target_ms = 0.0",
                "latency_target_ms",
            ),
            (
                "ram_budget_bytes = 536870912",
                "ram_budget_bytes = 9999999999",
                "ram_budget_bytes",
            ),
            ("clear_psi = 0.1", "clear_psi = 0.5", "drift.clear_psi"),
            (
                "jpeg_quality = 90",
                "jpeg_quality = 0",
                "samples.jpeg_quality",
            ),
            (
                "low_confidence = 0.5",
                "low_confidence = 1.5",
                "samples.low_confidence",
            ),
        ];
        for (from, to, field) in cases {
            assert!(text.contains(from), "{from}");
            let err = Board::parse(&text.replacen(from, to, 1), Path::new("rpi-4b.toml"))
                .expect_err("invalid");
            assert!(
                err.to_string().contains(&format!("field `{field}`")),
                "{err}"
            );
        }
        let err = Board::parse(
            &text.replacen("cores = 4", "cores = 4\ncpus = 4", 1),
            Path::new("rpi-4b.toml"),
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("unknown field `cpus`"), "{err}");
        let err = Board::parse(&text, Path::new("rpi-5.toml")).expect_err("name mismatch");
        assert!(err.to_string().contains("field `name`"), "{err}");
    }
}
