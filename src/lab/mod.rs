//! The lab: measuring and choosing models before they go on a board.
//!
//! - [`agreement`]: how far two forms of one model (fp32 and int8 weights) disagree on images.
//! - [`bench`](mod@bench): per-stage latency of the real pipeline against bare inference, on workers.
//! - [`estimate`]: a latency measured here scaled to a board not at hand, by reference networks.
//! - [`cost`]: what running a model at a frame rate costs on a board.
//! - [`select`](mod@select): the model for a board, from accuracy, latency and size, with the reason.
//! - [`eval`] with [`metrics`] and [`dataset`]: accuracy on a labelled set (mAP, top-k).
//! - [`profile`]: reference statistics of a model's inputs and outputs, which drift monitoring
//!   compares a device's frames against.
//! - [`measure`]: the orchestration the commands share (a model timed here, evaluated, scaled),
//!   kept here where tests reach it.

pub mod agreement;
pub mod bench;
pub mod cost;
pub mod dataset;
pub mod estimate;
pub mod eval;
pub mod measure;
pub mod metrics;
pub mod profile;
pub mod select;
