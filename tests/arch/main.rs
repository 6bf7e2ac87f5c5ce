//! The integration tests that `scripts/test-arm` also runs built for each ARM target under
//! qemu-user: inference through tract's kernels in every stored form, decoding, the metrics,
//! the pipeline in-process, the compatibility suite against onnxruntime, and the serial line
//! (whose port set-up is the target's own termios2 calls). Natively, `cargo test` runs them
//! all beside `tests/system`.
//!
//! One test binary rather than one per file: each links the whole library and tract, and on
//! two cores those links and the shared helpers compiled once per binary were minutes of a
//! cold CI run (docs/development.md, "Tests and CI").

#[path = "../common/mod.rs"]
mod common;

mod compat;
mod cross_arch;
mod decoders;
mod eval;
mod models;
mod pipeline;
mod reference;
mod serial;
