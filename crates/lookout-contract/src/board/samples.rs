//! The board profile's `[samples]` table: which frames the sample collector
//! (`lookout::lifecycle::samples`) keeps for retraining.

use crate::error::FieldError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which frames are kept for retraining, where, and how much disk they may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplesConfig {
    /// Keep samples at all.
    pub enabled: bool,
    /// The sample store (docs/operations.md, "Samples").
    pub dir: PathBuf,
    /// Keep a frame when something was reported with a score under this: the model was
    /// unsure, and a person's label is worth most there (0: off).
    pub low_confidence: f32,
    /// Keep one frame in this many, at random, whatever was seen (0: off).
    pub every_n: u64,
    /// While a statistic drifts, keep one frame in this many (0: off).
    pub drift_every: u64,
    /// At most this many samples a minute, whatever the reasons.
    pub max_per_minute: u32,
    /// Bytes the store may hold, every file in it counted; the oldest samples go first.
    pub max_bytes: u64,
    /// Stop collecting while the file system has less free space than this.
    pub min_free_bytes: u64,
    /// JPEG quality, 1..=100.
    pub jpeg_quality: u8,
}

impl Default for SamplesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: PathBuf::from("/var/lib/lookout/samples"),
            low_confidence: 0.5,
            every_n: 1000,
            drift_every: 30,
            max_per_minute: 6,
            max_bytes: 256 << 20,
            min_free_bytes: 64 << 20,
            jpeg_quality: 90,
        }
    }
}

impl SamplesConfig {
    /// Checks the values, naming the field that is wrong.
    pub fn check(&self) -> Result<(), FieldError> {
        if !(0.0..=1.0).contains(&self.low_confidence) {
            return Err(FieldError::new(
                "low_confidence",
                format!("{} is not in [0, 1]", self.low_confidence),
            ));
        }
        if self.max_per_minute == 0 {
            return Err(FieldError::new("max_per_minute", "must be at least 1"));
        }
        if self.max_bytes == 0 {
            return Err(FieldError::new("max_bytes", "must be at least 1"));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return Err(FieldError::new(
                "jpeg_quality",
                format!("{} is not in 1..=100", self.jpeg_quality),
            ));
        }
        if self.dir.as_os_str().is_empty() {
            return Err(FieldError::new("dir", "is empty"));
        }
        Ok(())
    }
}
