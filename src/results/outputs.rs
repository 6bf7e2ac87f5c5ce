//! The `--sink` texts of a run, opened: every sink in one [`SinkSet`], and a console on each
//! serial line that has one, and MQTT's command readers.

use crate::board::Board;
use crate::lifecycle::reload::ModelControl;
use crate::results::console::{Console, ConsoleInfo};
use crate::results::gpio::{self, GpioError};
use crate::results::mqtt::{self, MqttSteering};
use crate::results::serial::{self, SerialLink, SerialSink, SharedLink};
use crate::results::sink::{self, SinkError, SinkSet};
use std::path::Path;

/// Why a sink could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A JSON Lines or serial sink.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A GPIO sink.
    #[error(transparent)]
    Gpio(#[from] GpioError),
    /// A serial line.
    #[error(transparent)]
    Serial(#[from] serial::Error),
    /// An MQTT broker.
    #[error(transparent)]
    Mqtt(#[from] mqtt::MqttError),
}

/// What the sinks of a run are: where records and events go, and the consoles listening on
/// serial lines.
pub struct Outputs {
    /// Every sink, in the order given.
    pub sinks: SinkSet,
    /// A console per serial line with `console=on` (the default).
    pub consoles: Vec<Console<SharedLink>>,
    /// MQTT's commands and drift readings, one per MQTT sink.
    pub mqtt: Vec<MqttSteering>,
}

/// Opens each `--sink` text in `specs`: `gpio[:RULES.toml]` on the board's header (rules
/// checked against the model's `labels` and the run's `zones` first), `serial[...]` with the board's `[serial]`
/// defaults, else `stdout` or `file:PATH`. A console's `snapshot` saves to `snapshot_dir` and
/// its `model use` asks `model`.
pub fn open(
    specs: &[String],
    board: &Board,
    labels: &[String],
    zones: &[crate::board::ZoneConfig],
    snapshot_dir: &Path,
    model: &ModelControl,
) -> Result<Outputs, OutputError> {
    let mut outputs = Outputs {
        sinks: SinkSet::default(),
        consoles: Vec::new(),
        mqtt: Vec::new(),
    };
    let info = ConsoleInfo {
        board: board.name.clone(),
        sinks: specs.to_vec(),
    };
    for spec in specs {
        if spec == "mqtt" || spec.starts_with("mqtt://") || spec.starts_with("mqtts://") {
            let (sink, steering) =
                mqtt::open(spec, board, labels, info.clone(), snapshot_dir, model)?;
            outputs.sinks.push(Box::new(sink));
            outputs.mqtt.push(steering);
            continue;
        }
        match crate::spec::scheme(spec, &["gpio", "serial"]) {
            Some(("gpio", rest)) => outputs
                .sinks
                .push(Box::new(gpio::open_sink(spec, rest, board, labels, zones)?)),
            Some(_) => {
                let settings = serial::parse_spec(spec, &board.serial)?;
                let console = settings.console;
                let link: SharedLink =
                    std::rc::Rc::new(std::cell::RefCell::new(SerialLink::new(settings)));
                outputs.sinks.push(Box::new(SerialSink::new(link.clone())));
                if console {
                    outputs.consoles.push(
                        Console::new(
                            link.clone(),
                            snapshot_dir.to_owned(),
                            info.clone(),
                            model.clone(),
                        )
                        .with_link_stats(link),
                    );
                }
            }
            None => outputs.sinks.push(sink::open(spec)?),
        }
    }
    Ok(outputs)
}
