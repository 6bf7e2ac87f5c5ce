//! The board profile's `[drift]` table: how the on-device drift monitor
//! (`lookout::lifecycle::drift`) watches the frames.

use crate::error::FieldError;
use serde::{Deserialize, Serialize};

/// How drift is watched: the board profile's `[drift]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Watch at all (when the model has a reference profile).
    pub enabled: bool,
    /// Frames counted per window.
    pub window_frames: u64,
    /// Count one frame in this many (1: every frame).
    pub sample_every: u64,
    /// PSI at or over which a window counts towards an alarm.
    pub alarm_psi: f64,
    /// PSI under which a window counts towards clearing an alarm.
    pub clear_psi: f64,
    /// Windows in a row over `alarm_psi` before a statistic is declared drifting.
    pub windows_to_alarm: u32,
    /// Windows in a row under `clear_psi` before it is declared normal again.
    pub windows_to_clear: u32,
}

impl Default for DriftConfig {
    /// A minute per window at 15 fps, and three minutes of a shift before an alarm: a dark
    /// minute or a passing truck does not raise one.
    fn default() -> Self {
        Self {
            enabled: true,
            window_frames: 900,
            sample_every: 1,
            alarm_psi: 0.25,
            clear_psi: 0.1,
            windows_to_alarm: 3,
            windows_to_clear: 3,
        }
    }
}

impl DriftConfig {
    /// Checks the values, naming the field that is wrong.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.window_frames == 0 {
            return Err(FieldError::new("window_frames", "must be at least 1"));
        }
        if self.sample_every == 0 {
            return Err(FieldError::new("sample_every", "must be at least 1"));
        }
        if !(self.alarm_psi.is_finite() && self.alarm_psi > 0.0) {
            return Err(FieldError::new("alarm_psi", "must be a number over 0"));
        }
        if !(self.clear_psi.is_finite() && self.clear_psi > 0.0 && self.clear_psi <= self.alarm_psi)
        {
            return Err(FieldError::new(
                "clear_psi",
                format!("must be over 0 and at most alarm_psi ({})", self.alarm_psi),
            ));
        }
        if self.windows_to_alarm == 0 {
            return Err(FieldError::new("windows_to_alarm", "must be at least 1"));
        }
        if self.windows_to_clear == 0 {
            return Err(FieldError::new("windows_to_clear", "must be at least 1"));
        }
        Ok(())
    }
}
