//! The serial line: results out, console in, on one UART.
//!
//! - [`protocol`]: every line format on the wire (JSON Lines, compact `D`/`C`/`F` lines with
//!   CRC-8, console replies), in one place.
//! - [`link`]: the port itself, 8N1, reopened with backoff, never buffering without bound.
//! - [`SerialSink`]: the [`Sink`] that writes results to a link.
//!
//! The console that reads commands from the same line is [`crate::results::console`]; it shares the
//! link through [`SharedLink`].
//!
//! On the command line a line is `serial[:PATH][@BAUD][,format=json|compact][,flow=none|hardware|software][,console=on|off]`;
//! what is left out comes from the board profile's `[serial]` table.

pub mod link;
pub mod protocol;

pub use crate::board::{FlowControl, LineFormat};
pub use link::{LinkStats, SerialLink, SerialSettings};

use crate::board::SerialDefaults;
use crate::results::record::FrameRecord;
use crate::results::sink::{Sink, SinkError};
use std::cell::RefCell;
use std::rc::Rc;

/// Why a serial line cannot be set up. (A port that cannot be opened is not one: the link
/// keeps trying with backoff, and says why on the log and in the console's `status`.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--sink serial...` text is not understood.
    #[error("sink {spec:?}: {message}")]
    Spec {
        /// What was given.
        spec: String,
        /// What is wrong.
        message: String,
    },
}

/// A serial set-up's result.
pub type Result<T> = std::result::Result<T, Error>;

/// A link shared by the sink that writes results and the console that answers on it. The
/// frame loop is single-threaded, so a `RefCell` is enough.
pub type SharedLink = Rc<RefCell<SerialLink>>;

/// Parses `serial[:PATH][@BAUD][,key=value...]` with the board's defaults for what is left out.
pub fn parse_spec(spec: &str, defaults: &SerialDefaults) -> Result<SerialSettings> {
    let bad = |message: String| Error::Spec {
        spec: spec.to_owned(),
        message,
    };
    let rest = spec
        .strip_prefix("serial")
        .ok_or_else(|| bad("expected serial[:PATH][@BAUD][,options]".into()))?;
    let mut parts = rest.split(',');
    let head = parts.next().unwrap_or_default();
    let head = match head.strip_prefix(':') {
        Some(h) => h,
        // `serial` or `serial@BAUD`: the board's port.
        None if head.is_empty() || head.starts_with('@') => head,
        None => return Err(bad("expected `:` after `serial`".into())),
    };
    let (path, baud) = match head.rsplit_once('@') {
        Some((p, b)) => {
            let baud: u32 = b
                .parse()
                .ok()
                .filter(|&b| b > 0)
                .ok_or_else(|| bad(format!("baud rate {b:?} is not a positive integer")))?;
            (p, baud)
        }
        None => (head, defaults.baud),
    };
    let mut settings = SerialSettings {
        path: if path.is_empty() {
            defaults.port.clone()
        } else {
            path.to_owned()
        },
        baud,
        flow: defaults.flow,
        format: defaults.format,
        console: true,
    };
    for option in parts {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| bad(format!("option {option:?} is not key=value")))?;
        match key {
            "format" => settings.format = value.parse().map_err(bad)?,
            "flow" => settings.flow = value.parse().map_err(bad)?,
            "console" => {
                settings.console = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad(format!("console={value:?} is not on or off"))),
                }
            }
            _ => {
                return Err(bad(format!(
                    "unknown option {key:?} (format, flow, console)"
                )))
            }
        }
    }
    Ok(settings)
}

/// Writes every frame's results to a serial link, in the link's format. A line the link
/// cannot take is counted there as dropped; the run goes on.
#[derive(Debug)]
pub struct SerialSink {
    link: SharedLink,
}

impl SerialSink {
    /// A sink writing to `link`.
    pub fn new(link: SharedLink) -> Self {
        Self { link }
    }
}

impl Sink for SerialSink {
    fn emit(&mut self, record: &FrameRecord) -> std::result::Result<(), SinkError> {
        let mut link = self.link.borrow_mut();
        let text = protocol::result_lines(record, link.settings().format).map_err(|e| {
            SinkError::Write {
                destination: link.settings().path.clone(),
                source: e.into(),
            }
        })?;
        link.send(&text);
        Ok(())
    }

    fn event(
        &mut self,
        event: &crate::results::record::EventRecord,
    ) -> std::result::Result<(), SinkError> {
        let mut link = self.link.borrow_mut();
        let text =
            protocol::event_lines(event, link.settings().format).map_err(|e| SinkError::Write {
                destination: link.settings().path.clone(),
                source: e.into(),
            })?;
        link.send(&text);
        Ok(())
    }

    fn flush(&mut self) -> std::result::Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> SerialDefaults {
        SerialDefaults {
            port: "/dev/serial0".into(),
            baud: 115200,
            format: LineFormat::Json,
            flow: FlowControl::None,
        }
    }

    #[test]
    fn specs_fill_in_the_board_defaults() {
        let s = parse_spec("serial", &defaults()).expect("bare");
        assert_eq!((s.path.as_str(), s.baud), ("/dev/serial0", 115200));
        assert_eq!(
            (s.format, s.flow, s.console),
            (LineFormat::Json, FlowControl::None, true)
        );
        let s = parse_spec(
            "serial:/dev/ttyUSB0@9600,format=compact,flow=hardware,console=off",
            &defaults(),
        )
        .expect("full");
        assert_eq!((s.path.as_str(), s.baud), ("/dev/ttyUSB0", 9600));
        assert_eq!(
            (s.format, s.flow, s.console),
            (LineFormat::Compact, FlowControl::Hardware, false)
        );
        let s = parse_spec("serial:/dev/ttyAMA0", &defaults()).expect("path only");
        assert_eq!((s.path.as_str(), s.baud), ("/dev/ttyAMA0", 115200));
        let s = parse_spec("serial@57600", &defaults()).expect("baud only");
        assert_eq!((s.path.as_str(), s.baud), ("/dev/serial0", 57600));
    }

    #[test]
    fn bad_specs_name_the_part() {
        for (spec, part) in [
            ("serial:/dev/x@fast", "baud rate \"fast\""),
            ("serial:/dev/x@0", "baud rate \"0\""),
            ("serial:/dev/x,format=xml", "format \"xml\""),
            ("serial:/dev/x,flow=maybe", "flow \"maybe\""),
            ("serial:/dev/x,speed=1", "unknown option \"speed\""),
            ("serial:/dev/x,compact", "not key=value"),
            ("serialx", "expected `:`"),
        ] {
            let err = parse_spec(spec, &defaults()).expect_err(spec).to_string();
            assert!(err.contains(part), "{spec}: {err}");
            assert!(err.contains(spec), "{spec}: {err}");
        }
    }
}
