//! The model, manifest and board profile built into this binary by `build.rs`
//! (`LOOKOUT_MODEL`, `LOOKOUT_BOARD`), already checked against each other at build time.

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
