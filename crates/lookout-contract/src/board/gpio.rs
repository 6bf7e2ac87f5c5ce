//! The board profile's `[gpio]` table, or a rules file holding the same: the header's GPIO chip
//! and the lines driven by detections. The runtime's rule engine (`lookout::results::gpio`)
//! drives them.

use crate::error::{parse_toml, read_text, ConfigError, FieldError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// GPIO settings: the chip carrying the header, and what drives its lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioDefaults {
    /// Label of the GPIO character device that carries the 40-pin header.
    pub chip_label: String,
    /// Lines driven by detections (`[[gpio.rules]]`), used by `--sink gpio`.
    #[serde(default)]
    pub rules: Vec<GpioRule>,
    /// A line that blinks while frames are processed.
    #[serde(default)]
    pub heartbeat: Option<Heartbeat>,
}

/// Drive one line while a label is seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioRule {
    /// The label that sets the line (a detection's or one of a classifier's top-k classes).
    pub when: String,
    /// Lowest score that counts.
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// Line offset on the chip (the BCM GPIO number on a Pi header, not the pin position).
    pub pin: u32,
    /// Active means low (relays and LEDs wired to 3.3 V).
    #[serde(default)]
    pub active_low: bool,
    /// How long the line stays active after the label was last seen, in milliseconds.
    #[serde(default = "default_hold_ms")]
    pub hold_ms: u64,
    /// Shortest time from one activation to the next, in milliseconds (debounce).
    #[serde(default)]
    pub min_interval_ms: u64,
    /// A zone (`[[zones]]`): the line is active while an object labelled `when` is present in
    /// it (the scene layer's debounced presence; `min_score` does not apply) instead of while a
    /// detection of it is seen.
    #[serde(default)]
    pub zone: Option<String>,
}

/// A line that changes level every half period while frames are processed, so a watchdog
/// or an LED shows the pipeline is alive; it stops changing when frames stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Line offset on the chip.
    pub pin: u32,
    /// Full blink period in milliseconds.
    #[serde(default = "default_heartbeat_ms")]
    pub period_ms: u64,
    /// Active means low.
    #[serde(default)]
    pub active_low: bool,
}

fn default_min_score() -> f32 {
    0.5
}

fn default_hold_ms() -> u64 {
    500
}

fn default_heartbeat_ms() -> u64 {
    1000
}

impl GpioDefaults {
    /// Checks the rules on their own (labels are checked against a model when it is known):
    /// scores in [0, 1], positive hold and period, every line used once. The error names the
    /// field, e.g. `rules[1].pin`.
    pub fn check(&self) -> Result<(), FieldError> {
        let mut used = std::collections::BTreeMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let field = |f: &str| format!("rules[{i}].{f}");
            if !(0.0..=1.0).contains(&rule.min_score) {
                return Err(FieldError::new(
                    field("min_score"),
                    format!("{} is not in [0, 1]", rule.min_score),
                ));
            }
            if rule.hold_ms == 0 {
                return Err(FieldError::new(field("hold_ms"), "must be at least 1"));
            }
            if rule.when.trim().is_empty() {
                return Err(FieldError::new(field("when"), "is empty"));
            }
            if let Some(other) = used.insert(rule.pin, field("pin")) {
                return Err(FieldError::new(
                    field("pin"),
                    format!("line {} is already {other}", rule.pin),
                ));
            }
        }
        if let Some(h) = &self.heartbeat {
            if h.period_ms < 2 {
                return Err(FieldError::new("heartbeat.period_ms", "must be at least 2"));
            }
            if let Some(other) = used.get(&h.pin) {
                return Err(FieldError::new(
                    "heartbeat.pin",
                    format!("line {} is already {other}", h.pin),
                ));
            }
        }
        Ok(())
    }

    /// Reads a rules file: this table on its own, with `chip_label` optional (defaulting to
    /// the board's, `board`).
    pub fn load_rules_file(path: &Path, board: &GpioDefaults) -> Result<Self, ConfigError> {
        let file: RulesFile = parse_toml(&read_text(path, "GPIO rules file")?, path)?;
        let config = Self {
            chip_label: file.chip_label.unwrap_or_else(|| board.chip_label.clone()),
            rules: file.rules,
            heartbeat: file.heartbeat,
        };
        config.check().map_err(|e| e.in_file(path, ""))?;
        Ok(config)
    }
}

/// Rules and heartbeat as a rules file holds them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    chip_label: Option<String>,
    #[serde(default)]
    rules: Vec<GpioRule>,
    #[serde(default)]
    heartbeat: Option<Heartbeat>,
}
