//! lookout: an offline camera detector for Raspberry Pi-class boards.
//!
//! A frame travels source → pre-processing → model → decoding → sinks, driven by the run loop.
//! What a model needs is written in its manifest, what a board allows in its board profile; the
//! deployment check weighs one against the other, at build time and on the device.
//!
//! The modules are grouped by what a person deploying lookout meets:
//! - [`frames`]: where frames come from (files, folders, a test pattern, V4L2 cameras, a folder
//!   replayed as a camera) and how they become the model's input tensor.
//! - [`model`]: finding the model and board to run with (built in, or files), the tract engine,
//!   and `inspect`.
//! - [`results`]: what is made of the model's outputs and where it goes: decoders, the record,
//!   sinks, the serial line and its console, GPIO rules.
//! - [`pipeline`]: the [`Pipeline`](pipeline::Pipeline) (one model's frame-to-record path) and
//!   the run loop that drives a source through it into the sinks.
//! - [`scene`]: objects tracked across frames, zones and masks, and the debounced events
//!   (`object_entered`, `object_updated`, `object_left`) and zone counts made of them.
//! - [`lifecycle`]: what keeps a deployed model honest for months: drift, samples for
//!   retraining, installed versions (slots), switching and rolling back, systemd.
//! - [`lab`]: measuring and choosing models before deployment: bench, cost, estimate, select,
//!   eval and its metrics and data sets, reference profiles.
//! - [`reconnect`]: the backoff between attempts to reopen a camera or serial port that went
//!   away.
//! - [`spec`]: which part of lookout a `--source` or `--sink` text belongs to.
//! - [`fuzz`]: the fuzz targets' entry points, one per parser of bytes from outside.
//! - The deployment contract ([`manifest`], [`board`], [`onnx_meta`], [`budget`]) is its own
//!   crate, `lookout-contract`, shared with the build script; it is re-exported here under the
//!   paths the rest of lookout uses.

pub use lookout_contract::{board, budget, external, manifest, onnx_meta};

pub mod frames;
pub mod fuzz;
pub mod lab;
pub mod lifecycle;
pub mod model;
pub mod pipeline;
pub mod reconnect;
pub mod results;
pub mod scene;
pub mod spec;
