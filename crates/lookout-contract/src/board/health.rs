//! The board profile's `[health]` table: whether lookout reads the board's SoC temperature and
//! throttling flags (`lookout::lifecycle::health`).

use serde::{Deserialize, Serialize};

/// Whether the board's health is read: the `[health]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Read the SoC temperature and the firmware's throttling flags every few seconds, put
    /// them in the records and `status`, and raise `throttled`/`throttle_cleared`.
    pub enabled: bool,
}

impl Default for HealthConfig {
    /// On: a board that says nothing (no thermal zone, no firmware file) is read once.
    fn default() -> Self {
        Self { enabled: true }
    }
}
