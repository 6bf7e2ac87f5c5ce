//! Result sinks: where frame records go.
//!
//! Everything downstream of decoding hides behind [`Sink`], so the pipeline does not care
//! whether records end up on stdout, in a file, on a serial line or on GPIO pins. This module
//! holds the JSON Lines sinks (stdout and file); serial and GPIO sinks implement the same trait
//! in their own modules.

use crate::results::file::{FileSink, FileSpec, RotatingFile};
use crate::results::record::{EventRecord, FrameRecord};
use std::io::Write;
use std::path::PathBuf;

/// Errors writing records.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination cannot be opened.
    #[error("{path}: cannot open for writing: {source}")]
    Open {
        /// The destination.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A write failed (disk full, device gone).
    #[error("{destination}: write failed: {source}")]
    Write {
        /// The destination.
        destination: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The reader went away (`lookout run | head`): not a failure, the run just ends.
    #[error("{destination}: reader closed the stream")]
    Closed {
        /// The destination.
        destination: String,
    },
    /// The `--sink` text is not understood.
    #[error("sink {spec:?}: {message}")]
    Spec {
        /// What was given.
        spec: String,
        /// What is wrong.
        message: String,
    },
}

/// Something that receives frame records.
pub trait Sink {
    /// Delivers one record.
    fn emit(&mut self, record: &FrameRecord) -> Result<(), SinkError>;

    /// Pushes buffered records out; called at the end of a run.
    fn flush(&mut self) -> Result<(), SinkError>;

    /// Called while the run is paused, so time-based outputs (a GPIO hold) still end.
    fn idle(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Delivers an event (a camera lost or restored). Sinks without a way to say it ignore it.
    fn event(&mut self, event: &EventRecord) -> Result<(), SinkError> {
        let _ = event;
        Ok(())
    }

    /// Events the sink raised itself (its destination failing, and coming back), taken by the
    /// run loop between frames and told to every sink like the source's.
    fn take_events(&mut self) -> Vec<EventRecord> {
        Vec::new()
    }
}

/// `value` as one line of JSON, newline included, in `line` (cleared first).
pub(crate) fn json_line(value: &impl serde::Serialize, line: &mut Vec<u8>) -> std::io::Result<()> {
    line.clear();
    serde_json::to_writer(&mut *line, value)?;
    line.push(b'\n');
    Ok(())
}

/// Writes one JSON object per line to any writer, flushing after each record so a reader sees
/// every frame as it happens.
#[derive(Debug)]
pub struct JsonLines<W: Write> {
    writer: W,
    destination: String,
    line: Vec<u8>,
}

impl<W: Write> JsonLines<W> {
    /// Wraps a writer; `destination` names it in errors.
    pub fn new(writer: W, destination: impl Into<String>) -> Self {
        Self {
            writer,
            destination: destination.into(),
            line: Vec::with_capacity(1024),
        }
    }

    fn io_error(&self, source: std::io::Error) -> SinkError {
        if source.kind() == std::io::ErrorKind::BrokenPipe {
            SinkError::Closed {
                destination: self.destination.clone(),
            }
        } else {
            SinkError::Write {
                destination: self.destination.clone(),
                source,
            }
        }
    }
}

impl<W: Write> JsonLines<W> {
    fn write_json(&mut self, value: &impl serde::Serialize) -> Result<(), SinkError> {
        json_line(value, &mut self.line).map_err(|source| SinkError::Write {
            destination: self.destination.clone(),
            source,
        })?;
        // One write per record keeps lines whole if another process appends to the same file.
        if let Err(e) = self.writer.write_all(&self.line) {
            return Err(self.io_error(e));
        }
        self.writer.flush().map_err(|e| self.io_error(e))
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn emit(&mut self, record: &FrameRecord) -> Result<(), SinkError> {
        self.write_json(record)
    }

    fn event(&mut self, event: &EventRecord) -> Result<(), SinkError> {
        self.write_json(event)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.writer.flush().map_err(|e| self.io_error(e))
    }
}

/// JSON Lines written nowhere: every record is serialised as for a real sink, then dropped.
/// What `bench` emits to when no sink is named, so the emit stage costs what JSON costs.
pub fn discard() -> JsonLines<std::io::Sink> {
    JsonLines::new(std::io::sink(), "nowhere")
}

/// JSON Lines on standard output.
pub fn stdout() -> JsonLines<std::io::Stdout> {
    JsonLines::new(std::io::stdout(), "stdout")
}

/// JSON Lines appended to a file (created if missing), rotated as `spec` says; see
/// [`FileSink`] for what a full disk does.
pub fn file(spec: &FileSpec) -> Result<FileSink, SinkError> {
    let file = RotatingFile::open(spec.clone()).map_err(|source| SinkError::Open {
        path: spec.path.clone(),
        source,
    })?;
    Ok(FileSink::new(file))
}

/// Opens a sink from its command-line text: `stdout` or `file:PATH[,options]` ([`FileSpec`]).
pub fn open(spec: &str) -> Result<Box<dyn Sink>, SinkError> {
    if spec == "stdout" || spec == "-" {
        return Ok(Box::new(stdout()));
    }
    if let Some(rest) = spec.strip_prefix("file:") {
        let parsed = FileSpec::parse(rest).map_err(|message| SinkError::Spec {
            spec: spec.to_owned(),
            message,
        })?;
        match parsed.cap() {
            Some(cap) => tracing::info!(
                "records to {}: rotated at {} bytes, {} kept, at most {cap} bytes",
                parsed.path.display(),
                parsed.max_bytes.unwrap_or_default(),
                parsed.keep
            ),
            None => tracing::info!(
                "records to {}, never rotated (max_bytes=none)",
                parsed.path.display()
            ),
        }
        return Ok(Box::new(file(&parsed)?));
    }
    Err(SinkError::Spec {
        spec: spec.to_owned(),
        message: "expected `stdout`, `file:PATH[,max_bytes=SIZE][,keep=N]`, `serial[:PATH][@BAUD][,options]`, `gpio[:RULES]` or `mqtt://HOST[:PORT][/PREFIX]`".into(),
    })
}

/// Every sink of a run, handed each record and event once, in the order given.
///
/// A sink whose reader went away ([`SinkError::Closed`]) stops the delivery there, and the
/// error says so: the run loop ends quietly on it rather than feeding the sinks after it.
#[derive(Default)]
pub struct SinkSet {
    sinks: Vec<Box<dyn Sink>>,
}

impl SinkSet {
    /// The sinks, delivered to in this order.
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        Self { sinks }
    }

    /// Adds a sink after the others.
    pub fn push(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    /// Hands a frame record to every sink.
    pub fn record(&mut self, record: &FrameRecord) -> Result<(), SinkError> {
        self.each(|sink| sink.emit(record))
    }

    /// Hands each event to every sink, in order.
    pub fn events(
        &mut self,
        events: impl IntoIterator<Item = EventRecord>,
    ) -> Result<(), SinkError> {
        for event in events {
            self.each(|sink| sink.event(&event))?;
        }
        Ok(())
    }

    /// What every sink raised itself since last asked ([`Sink::take_events`]), in sink order.
    pub fn take_events(&mut self) -> Vec<EventRecord> {
        self.sinks
            .iter_mut()
            .flat_map(|s| s.take_events())
            .collect()
    }

    /// Lets every sink run its clocks while no frame comes (a GPIO hold ends on time).
    pub fn idle(&mut self) -> Result<(), SinkError> {
        self.each(|sink| sink.idle())
    }

    /// Flushes every sink, even after one fails, so that each releases what it holds (GPIO
    /// lines); a sink whose reader went away is not an error here. Returns the first error.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        let mut flushed = Ok(());
        for sink in &mut self.sinks {
            match sink.flush() {
                Ok(()) | Err(SinkError::Closed { .. }) => {}
                Err(e) => flushed = flushed.and(Err(e)),
            }
        }
        flushed
    }

    fn each(
        &mut self,
        mut deliver: impl FnMut(&mut dyn Sink) -> Result<(), SinkError>,
    ) -> Result<(), SinkError> {
        self.sinks
            .iter_mut()
            .try_for_each(|sink| deliver(sink.as_mut()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::record::{DetectionRecord, StageLatency};

    fn record(seq: u64) -> FrameRecord {
        FrameRecord {
            seq,
            timestamp: "2026-11-29T03:00:00.000Z".into(),
            model: "m@1".into(),
            frame: format!("f{seq}.png"),
            frame_size: [640, 480],
            latency_ms: StageLatency {
                capture: 1.0,
                pre: 2.0,
                infer: 3.0,
                post: 0.5,
                drift: 0.0,
            },
            classes: None,
            detections: Some(vec![DetectionRecord {
                label_id: 1,
                label: "square".into(),
                score: 0.75,
                bbox: [1.0, 2.0, 3.0, 4.0],
                keypoints: None,
                track_id: None,
            }]),
            outputs: None,
            values: None,
            zones: None,
            health: None,
        }
    }

    #[test]
    fn file_sink_appends_one_json_object_per_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let spec = FileSpec::parse(&path.to_string_lossy()).expect("spec");
        for seq in 0..2 {
            let mut sink = file(&spec).expect("open");
            sink.emit(&record(seq)).expect("emit");
            sink.flush().expect("flush");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let first: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
        assert_eq!(first["seq"], 0);
        assert_eq!(first["frame_size"], serde_json::json!([640, 480]));
        assert_eq!(first["latency_ms"]["infer"], 3.0);
        assert_eq!(first["detections"][0]["label"], "square");
        assert_eq!(
            first["detections"][0]["box"],
            serde_json::json!([1.0, 2.0, 3.0, 4.0])
        );
        assert!(first.get("classes").is_none());
        let second: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
        assert_eq!(second["frame"], "f1.png");
    }

    #[test]
    fn unwritable_file_and_bad_spec_are_clear_errors() {
        let err = open("file:/no/such/dir/out.jsonl").err().expect("fails");
        assert!(err
            .to_string()
            .starts_with("/no/such/dir/out.jsonl: cannot open"));
        let err = open("serial-ish").err().expect("fails");
        assert!(err
            .to_string()
            .contains("expected `stdout`, `file:PATH[,max_bytes=SIZE][,keep=N]`, `serial"));
    }

    #[test]
    fn full_disk_is_reported_not_lost() {
        // /dev/full fails every write with ENOSPC, like a full SD card.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full exists on Linux");
        let mut sink = JsonLines::new(full, "/dev/full");
        let err = sink.emit(&record(0)).expect_err("disk full");
        assert!(matches!(err, SinkError::Write { .. }));
        assert!(err.to_string().contains("/dev/full: write failed"));
    }

    /// A sink that notes what it was handed and fails as told.
    struct Noting {
        name: &'static str,
        log: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
        fail: Option<fn() -> SinkError>,
    }

    impl Sink for Noting {
        fn emit(&mut self, record: &FrameRecord) -> Result<(), SinkError> {
            self.log
                .borrow_mut()
                .push(format!("{} record {}", self.name, record.seq));
            self.fail.map_or(Ok(()), |f| Err(f()))
        }
        fn flush(&mut self) -> Result<(), SinkError> {
            self.log.borrow_mut().push(format!("{} flush", self.name));
            self.fail.map_or(Ok(()), |f| Err(f()))
        }
        fn event(&mut self, event: &EventRecord) -> Result<(), SinkError> {
            self.log
                .borrow_mut()
                .push(format!("{} event {}", self.name, event.event));
            Ok(())
        }
    }

    #[test]
    fn a_sink_set_delivers_once_in_order_and_stops_where_a_reader_left() {
        let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let closed = || SinkError::Closed {
            destination: "b".into(),
        };
        let noting = |name, fail| -> Box<dyn Sink> {
            Box::new(Noting {
                name,
                log: log.clone(),
                fail,
            })
        };
        let mut set = SinkSet::new(vec![
            noting("a", None),
            noting("b", Some(closed)),
            noting("c", None),
        ]);
        set.events([
            EventRecord::now("x", "s", "m".to_owned()),
            EventRecord::now("y", "s", "m".to_owned()),
        ])
        .expect("events go everywhere");
        let err = set.record(&record(7)).expect_err("b's reader left");
        assert!(matches!(err, SinkError::Closed { .. }));
        set.flush()
            .expect("a closed reader is no error when flushing");
        assert_eq!(
            *log.borrow(),
            [
                "a event x",
                "b event x",
                "c event x",
                "a event y",
                "b event y",
                "c event y",
                "a record 7",
                "b record 7",
                "a flush",
                "b flush",
                "c flush"
            ]
        );
    }
}
