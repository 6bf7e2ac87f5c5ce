//! The board profile's `[models]` table: where installed model versions live
//! (`lookout::lifecycle::slots`) and how long a new one is on trial.

use crate::error::FieldError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where installed model versions live and how a new one is tried: the board profile's
/// `[models]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// The installed versions, one folder per model name (see `lookout::lifecycle::slots`); `--model
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
    /// Checks the values, naming the field that is wrong.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.dir.as_os_str().is_empty() {
            return Err(FieldError::new("dir", "is empty"));
        }
        Ok(())
    }
}
