//! lookout: an offline camera detector for Raspberry Pi-class boards.
//!
//! A frame travels `source` → `preprocess` → `engine` → `decode` → `sink`, driven by
//! `pipeline`. What a model needs is written in its `manifest`; what a board allows in its
//! `board` profile; `budget` checks one against the other, at build time and on the device.
//!
//! Modules, in the order a frame meets them:
//! - [`source`]: frame sources (image files, folders, test pattern) behind [`source::FrameSource`];
//!   [`camera`]: capture on its own thread, newest frame only, reopened when it fails.
//! - [`preprocess`]: resize, colour order and normalisation exactly as in training.
//! - [`engine`]: the tract model, loaded once, input buffer reused.
//! - [`decode`]: classification top-k, YOLOv5/YOLOv8, SSD/UltraFace, NMS.
//! - [`record`]: the per-frame result record and its JSON form.
//! - [`sink`]: result sinks behind [`sink::Sink`]; [`serial`] is the serial line (protocol,
//!   port, sink) and [`console`] the commands typed on it; [`gpio`] drives lines by rules.
//! - [`pipeline`]: the frame loop tying them together.
//!
//! Around them: [`manifest`], [`board`], [`onnx_meta`], [`budget`] (the deployment check),
//! [`model`] (embedded or file models), [`inspect`], [`bench`](mod@bench), [`estimate`] (latency on a board
//! not at hand), [`cost`], [`select`](mod@select) (the model for a board), and [`eval`] (accuracy
//! on a labelled [`dataset`], measured by [`metrics`]), [`profile`] (reference statistics for
//! drift monitoring), [`drift`] (the on-device monitor that compares frames with them), [`samples`] (frames kept for retraining), [`slots`] (installed model versions, switched and rolled back atomically), [`reload`] (the running model switched on SIGHUP), and [`service`] (systemd readiness and watchdog).

// The deployment contract, shared with build.rs (crates/lookout-contract), under the paths the
// runtime has always used.
pub use lookout_contract::{board, budget, manifest, onnx_meta};

pub mod bench;
pub mod camera;
pub mod console;
pub mod cost;
pub mod dataset;
pub mod decode;
pub mod drift;
pub mod embedded;
pub mod engine;
pub mod estimate;
pub mod eval;
pub mod gpio;
pub mod inspect;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod profile;
pub mod record;
pub mod reload;
pub mod samples;
pub mod select;
pub mod serial;
pub mod service;
pub mod sink;
pub mod slots;
pub mod source;
