//! The deployment contract: what a model needs and what a board allows, written down and
//! checked before anything runs.
//!
//! - [`manifest`]: the model manifest (`models/<name>.toml`), the contract an ONNX file
//!   travels with: input, pre-processing, output decoding, labels, thresholds, sha256.
//! - [`board`]: the board profile (`boards/<name>.toml`) with every table it owns, each in the
//!   module of the part of lookout that reads it (`[serial]`, `[gpio]`, `[drift]`, `[samples]`,
//!   `[models]`).
//! - [`onnx_meta`]: what an ONNX file declares (inputs, outputs, operators, quantization),
//!   read from its protobuf without loading the model.
//! - [`external`]: initializers stored in files beside the model (ONNX external data),
//!   checked against the manifest and written into the model before it loads.
//! - [`budget`]: the deployment check, one function for the build script, `lookout check` and
//!   `lookout model install`, so that the three can never disagree.
//! - [`error`]: [`ConfigError`], the one error for a file of the contract that is unreadable,
//!   malformed or inconsistent, naming the file, the table and the field.
//!
//! This crate is a dependency of both lookout's build script (which refuses to build a binary
//! whose embedded model does not fit its board) and the runtime. It depends on no part of the
//! runtime, and on nothing that needs a model loaded: it runs on the build machine, first.

pub mod board;
pub mod budget;
pub mod error;
pub mod external;
pub mod manifest;
pub mod onnx_meta;

pub use error::{ConfigError, FieldError};

/// The repository this crate lives in, whose `boards/` and `models/` the tests check.
#[cfg(test)]
fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
