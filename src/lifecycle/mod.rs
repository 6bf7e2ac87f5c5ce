//! A deployed model over months: is it still seeing what it was trained on, what to retrain it
//! with, and how a new version replaces it without a visit.
//!
//! - [`drift`]: the on-device monitor comparing frames and outputs with the model's reference
//!   profile, alarming with hysteresis.
//! - [`samples`]: frames kept for retraining, within a byte cap, exported as a tar.
//! - [`slots`]: installed model versions, switched and rolled back with atomic renames.
//! - [`reload`]: the running model switched between frames when asked
//!   ([`ModelControl`](reload::ModelControl): SIGHUP or the console), a version on trial, and the
//!   way back when it fails.
//! - [`service`]: systemd readiness and watchdog.
//! - [`stop`]: SIGTERM and SIGINT end a run as its source ending, every sink flushed.
//! - [`health`]: the board's SoC temperature and throttling, in the records, `status` and events.
//! - [`memory`]: freed heap handed back on request (`bench`), and what was tried to keep a
//!   run's resident memory flat.

pub mod drift;
pub mod health;
pub mod memory;
pub mod reload;
pub mod samples;
pub mod service;
pub mod slots;
pub mod stop;
