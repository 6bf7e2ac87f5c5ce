//! The board profile's `[models]` table. Its own file because the build script reads board
//! profiles too, and needs this without the slots.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where installed model versions live and how a new one is tried: the board profile's
/// `[models]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// The installed versions, one folder per model name (see [`crate::slots`]); `--model
    /// <name>` runs the version in use there.
    pub dir: PathBuf,
    /// Frames a version switched to (or started on) must get through before the version it
    /// replaced is let go; a model fault in one of them returns to that version.
    pub trial_frames: u64,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/lookout/models"),
            trial_frames: 100,
        }
    }
}

impl ModelsConfig {
    /// Checks the values; returns the offending field (as in the board profile) and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.dir.as_os_str().is_empty() {
            return Err(("models.dir", "is empty".into()));
        }
        Ok(())
    }
}
