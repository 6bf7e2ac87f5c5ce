//! The board profile's `[serial]` table: the header UART and how results are written on it.
//! The runtime's serial line (`lookout::results::serial`) reads it; the formats themselves are
//! specified there.

use serde::{Deserialize, Serialize};

/// Default serial settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialDefaults {
    /// Device path of the header UART.
    pub port: String,
    /// Baud rate.
    pub baud: u32,
    /// How results are written: `json` (default) or `compact`.
    #[serde(default)]
    pub format: LineFormat,
    /// Handshake: `none` (default), `hardware` or `software`.
    #[serde(default)]
    pub flow: FlowControl,
}

/// How results are written on a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// The same JSON Lines as stdout.
    #[default]
    Json,
    /// `D`/`C`/`F` lines with a CRC-8, for microcontrollers.
    Compact,
}

impl std::str::FromStr for LineFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "compact" => Ok(Self::Compact),
            other => Err(format!("format {other:?} is not `json` or `compact`")),
        }
    }
}

/// Hardware handshake on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    /// No handshake (the Pi header UART without RTS/CTS wired).
    #[default]
    None,
    /// RTS/CTS.
    Hardware,
    /// XON/XOFF.
    Software,
}

impl std::str::FromStr for FlowControl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "hardware" | "rtscts" => Ok(Self::Hardware),
            "software" | "xonxoff" => Ok(Self::Software),
            other => Err(format!(
                "flow {other:?} is not `none`, `hardware` (RTS/CTS) or `software` (XON/XOFF)"
            )),
        }
    }
}
