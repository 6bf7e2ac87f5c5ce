//! Stopping a run: SIGTERM (`systemctl stop`) and SIGINT (Ctrl-C) end it as its source ending:
//! the frames in flight finished, every sink flushed, GPIO lines idle, exit status 0. The
//! signal's default action ended it with 143 between two writes.

use crate::common::{self, json_lines, lookout_command, repo, wait_until};
use lookout::board::{Board, GpioDefaults, GpioRule};
use lookout::frames::source::{self, FrameSource};
use lookout::lifecycle::stop::StopRequest;
use lookout::model;
use lookout::pipeline::{self, RunControl, Steering, Watched};
use lookout::results::gpio::{GpioRules, GpioSink};
use lookout::results::sink::SinkSet;
use std::cell::RefCell;
use std::process::Stdio;
use std::rc::Rc;
use std::time::Duration;

/// The closing line's frame count: "stopped by SIGTERM: N frames in ...".
fn frames_stopped_by(log: &str, signal: &str) -> u64 {
    let needle = format!("stopped by {signal}: ");
    let rest = log
        .lines()
        .find_map(|l| l.split_once(&needle).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no \"{needle}\" in the log: {log}"));
    rest.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no frame count in {rest:?}"))
}

/// A camera run (a replayed folder, which never ends by itself) into a file and the sample
/// store, sent `signal` once records are coming.
fn a_signal_ends_a_camera_run_as_its_source_ending(signal: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("samples");
    let board = common::samples_board(dir.path(), "stop-test", &store, Some(100_000_000), Some(0));
    let records = dir.path().join("records.jsonl");
    let log = dir.path().join("log");
    let mut child = lookout_command()
        .args([
            "run",
            "-m",
            "models/shapes-detector.toml",
            "-b",
            &board,
            "-s",
            "replay:tests/images/detect@20",
            "--sink",
            &format!("file:{}", records.display()),
        ])
        .env("LOOKOUT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("lookout starts");
    wait_until(Duration::from_secs(120), "five records", || {
        std::fs::read_to_string(&records).is_ok_and(|text| text.lines().count() >= 5)
    });
    common::send_signal(child.id(), signal);
    let mut status = None;
    wait_until(Duration::from_secs(60), "lookout to stop", || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    let status = status.expect("stopped");
    let log = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(0), "{status}; log: {log}");
    let frames = frames_stopped_by(&log, &format!("SIG{signal}"));

    // Every record whole, one per frame the run counted, none missing.
    let text = std::fs::read_to_string(&records).expect("records");
    assert!(text.ends_with('\n'), "last record cut short: {text}");
    let seqs: Vec<u64> = json_lines(&text)
        .iter()
        .map(|r| r["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (0..frames).collect::<Vec<u64>>());

    // The sample writer finished: as many complete samples as it says it saved, nothing
    // half-written.
    let line = log
        .lines()
        .find_map(|l| l.split_once("samples: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no closing sample count: {log}"));
    let saved: usize = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    let mut images = 0;
    let mut stack = vec![store.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            let name = path.to_string_lossy().into_owned();
            assert!(!name.ends_with(".tmp"), "half-written: {name}");
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".jpg") {
                images += 1;
            }
        }
    }
    assert!(saved > 0, "{line}");
    assert_eq!(images, saved, "{line}");
}

#[test]
fn sigterm_ends_a_camera_run_with_every_record_and_sample_whole_and_exit_0() {
    a_signal_ends_a_camera_run_as_its_source_ending("TERM");
}

#[test]
fn sigint_ends_a_camera_run_the_same_way() {
    a_signal_ends_a_camera_run_as_its_source_ending("INT");
}

/// An output line that remembers every level it was set to.
#[derive(Clone, Default)]
struct Line(Rc<RefCell<Vec<bool>>>);

impl embedded_hal::digital::ErrorType for Line {
    type Error = std::convert::Infallible;
}

impl embedded_hal::digital::OutputPin for Line {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.0.borrow_mut().push(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.0.borrow_mut().push(true);
        Ok(())
    }
}

/// Asks the run to stop once `after` records are out, as a signal would between two frames.
struct StopAfter {
    stop: StopRequest,
    after: u64,
}

impl Steering for StopAfter {
    fn between_frames(&mut self, control: RunControl<'_>) {
        if control.stats.frames >= self.after {
            self.stop.request();
        }
    }
}

/// Counts the frames read.
struct Counted {
    inner: Box<dyn FrameSource>,
    read: Rc<RefCell<u64>>,
}

impl FrameSource for Counted {
    fn next_frame(&mut self) -> Result<Option<source::Frame>, source::SourceError> {
        let frame = self.inner.next_frame()?;
        *self.read.borrow_mut() += u64::from(frame.is_some());
        Ok(frame)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[test]
fn a_stop_finishes_the_frames_in_flight_and_sets_gpio_lines_idle() {
    let board_file = repo("boards/host.toml");
    let board = Board::load(&board_file).expect("host board");
    let bundle = model::model_from_files("shapes-detector", &repo("models"), &board, &board_file)
        .expect("bundled detector");
    let labels = bundle.manifest.labels.clone();
    let mut watched =
        Watched::load(bundle.manifest, &bundle.onnx, &bundle.origin, &board.drift).expect("loads");
    // Two frames in flight: one may be running when the stop is asked.
    watched.pipeline_mut().set_lanes(2);
    // A line held active for minutes after a circle: still active when the run stops.
    let config = GpioDefaults {
        chip_label: "test".into(),
        rules: vec![GpioRule {
            when: "circle".into(),
            min_score: 0.3,
            pin: 17,
            active_low: false,
            hold_ms: 600_000,
            min_interval_ms: 0,
            zone: None,
        }],
        heartbeat: None,
    };
    let line = Line::default();
    let rules = GpioRules::new(&config, &labels, vec![line.clone()], None).expect("rules");
    let records = Rc::new(RefCell::new(Vec::new()));
    let mut sinks = SinkSet::new(vec![
        Box::new(GpioSink::new(rules, "test".into())),
        Box::new(Kept(records.clone())),
    ]);
    let read = Rc::new(RefCell::new(0));
    let mut source = Counted {
        inner: source::open(&repo("tests/images/detect").to_string_lossy(), true).expect("scenes"),
        read: read.clone(),
    };
    let stop = StopRequest::never();
    let summary = pipeline::run(
        &mut watched,
        &mut source,
        &mut sinks,
        Some(40),
        &mut StopAfter {
            stop: stop.clone(),
            after: 6,
        },
        pipeline::RunExtras {
            stop,
            ..Default::default()
        },
        |e| panic!("{e}"),
    )
    .expect("runs");
    assert_eq!(summary.stopped_by, Some("a stop request"));
    // Every frame read became a record, in order, and reading stopped well before the 40.
    let read = *read.borrow();
    assert_eq!(summary.frames, read);
    assert!((6..=7).contains(&read), "{read} frames read");
    let seqs: Vec<u64> = records
        .borrow()
        .iter()
        .map(|r: &serde_json::Value| r["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (0..read).collect::<Vec<u64>>());
    let levels = line.0.borrow().clone();
    assert!(levels.contains(&true), "no circle seen: {levels:?}");
    assert_eq!(levels.last(), Some(&false), "line left active: {levels:?}");
}

/// Keeps each record as JSON, as a file sink writes it.
struct Kept(Rc<RefCell<Vec<serde_json::Value>>>);

impl lookout::results::sink::Sink for Kept {
    fn emit(
        &mut self,
        record: &lookout::results::record::FrameRecord,
    ) -> Result<(), lookout::results::sink::SinkError> {
        self.0
            .borrow_mut()
            .push(serde_json::to_value(record).expect("record as JSON"));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), lookout::results::sink::SinkError> {
        Ok(())
    }
}

#[test]
fn a_stop_during_a_models_trial_stops_the_trial_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The trial's child, started through this wrapper, says when it has begun and then takes
    // long: the stop comes while the parent waits for it.
    let mark = dir.path().join("trying");
    let wrapper = dir.path().join("slow-trial");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ntouch '{}'\nsleep 120\nexec \"$@\"\n",
            mark.display()
        ),
    )
    .expect("wrapper");
    std::process::Command::new("chmod")
        .args(["+x", &wrapper.to_string_lossy()])
        .status()
        .expect("chmod");
    let runner = match std::env::var("LOOKOUT_TEST_RUNNER") {
        Ok(emulator) if !emulator.trim().is_empty() => format!("{} {emulator}", wrapper.display()),
        _ => wrapper.display().to_string(),
    };
    let log = dir.path().join("log");
    let mut child = lookout_command()
        .args([
            "run",
            "-m",
            "models/shapes-detector.toml",
            "-s",
            "replay:tests/images/detect@20",
            "--sink",
            "file:/dev/null",
        ])
        .env("LOOKOUT_CHILD_RUNNER", &runner)
        .env("LOOKOUT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("lookout starts");
    wait_until(Duration::from_secs(60), "the trial to begin", || {
        mark.exists()
    });
    common::send_signal(child.id(), "TERM");
    // Well before the trial's 120 s (a generous wait, not a measure of speed): the parent stops
    // it rather than waiting it out.
    let mut status = None;
    wait_until(Duration::from_secs(60), "lookout to stop", || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    let log = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert!(log.contains("stopped by SIGTERM during start-up"), "{log}");
    assert!(!log.contains("model_load_failed"), "{log}");
}
