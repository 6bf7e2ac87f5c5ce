//! Drift monitoring end to end: `lookout run` on frames like the model's held-out set, then on
//! the same kind of frames darkened, colour-cast or blurred (made here), with results and events
//! on a serial pseudo-terminal. The normal frames must raise nothing; each shift must raise a
//! drift event on the statistic it moves, within the windows the board profile configures.

use crate::common;
use crate::common::{lookout_command, python_tool};
use serialport::{SerialPort, TTYPort};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Frames per window and windows in a row before an alarm, as the test board sets them.
const WINDOW: u64 = 100;
const WINDOWS_TO_ALARM: u64 = 2;
/// Normal frames, then shifted ones: two windows of each.
const NORMAL: u64 = 200;
const SHIFTED: u64 = 200;

/// A board profile like the host's with a small drift window.
fn board(dir: &Path) -> String {
    common::host_board_with(
        dir,
        "drift-test",
        "drift",
        &format!(
            "window_frames = {WINDOW}\nwindows_to_alarm = {WINDOWS_TO_ALARM}\n\
             windows_to_clear = 10\nalarm_psi = 0.25\nclear_psi = 0.1\n"
        ),
    )
}

/// Detection scenes rendered by the model tool chain (seed not used for the reference).
fn render(seed: u64, count: u64, dir: &Path) -> Vec<image::RgbImage> {
    let out = python_tool(
        "scenes.py",
        [
            "--kind",
            "detect",
            "--seed",
            &seed.to_string(),
            "--count",
            &count.to_string(),
            "--out",
            &dir.to_string_lossy(),
        ],
    );
    drop(out);
    (0..count)
        .map(|i| {
            image::open(dir.join(format!("scene_{i}.png")))
                .expect("rendered scene")
                .to_rgb8()
        })
        .collect()
}

/// A folder of the normal frames followed (by name) by `shift` applied to other renders.
fn frames(dir: &Path, shift: fn(&image::RgbImage) -> image::RgbImage) -> String {
    let folder = dir.join("frames");
    std::fs::create_dir_all(&folder).expect("frames folder");
    for (i, img) in render(2105, NORMAL, &dir.join("normal")).iter().enumerate() {
        img.save(folder.join(format!("a-{i:04}.png")))
            .expect("save");
    }
    for (i, img) in render(2106, SHIFTED, &dir.join("other")).iter().enumerate() {
        shift(img)
            .save(folder.join(format!("b-{i:04}.png")))
            .expect("save");
    }
    folder.to_string_lossy().into_owned()
}

fn darkened(img: &image::RgbImage) -> image::RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        p.0 = p.0.map(|v| (f32::from(v) * 0.35) as u8);
    }
    out
}

/// A warm cast: red up, blue down, as a wrong white balance gives.
fn colour_cast(img: &image::RgbImage) -> image::RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let [r, g, b] = p.0;
        p.0 = [r.saturating_add(60), g, (f32::from(b) * 0.5) as u8];
    }
    out
}

fn blurred(img: &image::RgbImage) -> image::RgbImage {
    image::imageops::blur(img, 3.0)
}

/// `lookout run` writing JSON Lines to the pty's other end, killed when dropped.
struct Run {
    child: Child,
    master: TTYPort,
    /// Held open so that the line exists until lookout opens it.
    _slave: TTYPort,
    pending: Vec<u8>,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Run {
    fn start(board: &str, source: &str) -> Self {
        let (mut master, slave) = TTYPort::pair().expect("a pseudo-terminal pair");
        master
            .set_timeout(Duration::from_millis(50))
            .expect("timeout");
        let sink = format!(
            "serial:{},format=json",
            slave.name().expect("slave has a name")
        );
        let child = lookout_command()
            .args([
                "run",
                "-m",
                "models/shapes-detector.toml",
                "-b",
                board,
                "-s",
                source,
                "--loop",
                "--sink",
                &sink,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("lookout starts");
        Self {
            child,
            master,
            _slave: slave,
            pending: Vec::new(),
        }
    }

    /// Parsed JSON lines until `done` holds for one (returned last); panics after `wait`
    /// (scaled: [`common::patience`]), a guard against a hung run.
    fn until(
        &mut self,
        wait: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + common::patience(wait);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                let Ok(value) = serde_json::from_str::<serde_json::Value>(text.trim()) else {
                    continue; // console replies start with '#'
                };
                let stop = done(&value);
                seen.push(value);
                if stop {
                    return seen;
                }
            }
            let mut buf = [0u8; 8192];
            match self.master.read(&mut buf) {
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) if e.raw_os_error() == Some(5) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("reading the pty: {e}"),
            }
        }
        let frames = seen.iter().filter(|v| v.get("seq").is_some()).count();
        panic!(
            "timed out after {frames} records; events: {:#?}",
            events(&seen)
        );
    }

    /// Sends a console command and returns its reply lines.
    fn command(&mut self, text: &str) -> String {
        self.master
            .write_all(format!("{text}\r\n").as_bytes())
            .expect("write");
        let deadline = Instant::now() + common::patience(Duration::from_secs(30));
        let mut reply = String::new();
        while Instant::now() < deadline {
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                if line.starts_with('#') {
                    reply.push_str(&line);
                    reply.push('\n');
                    if line.starts_with("# ok") || line.starts_with("# error") {
                        return reply;
                    }
                }
            }
            let mut buf = [0u8; 8192];
            match self.master.read(&mut buf) {
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("reading the pty: {e}"),
            }
        }
        panic!("no reply to {text}; so far: {reply}");
    }
}

fn events(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines.iter().filter(|v| v.get("event").is_some()).collect()
}

/// Runs normal then `shift`ed frames and checks the first drift event: none during the normal
/// frames, one on `stat` within the configured windows of the shift, and `status` showing it.
fn shift_raises_drift_on(shift: fn(&image::RgbImage) -> image::RgbImage, stats: &[&str]) {
    if common::under_emulator() {
        // Rendering and 400 frames per case under qemu take minutes; nothing here depends on
        // the CPU (the statistics' code runs in the unit tests there).
        eprintln!("skipped under emulation");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let board = board(dir.path());
    let source = frames(dir.path(), shift);
    let mut run = Run::start(&board, &source);
    let mut lines = run.until(Duration::from_secs(120), |v| {
        v.get("event").and_then(|e| e.as_str()) == Some("drift")
    });
    // The other statistics that drifted in the same window come before the next record.
    lines.extend(run.until(Duration::from_secs(30), |v| v.get("seq").is_some()));
    let events = events(&lines);
    assert!(
        events.iter().all(|e| e["event"] == "drift"),
        "nothing clears what never drifted: {events:#?}"
    );
    let first = events.first().expect("a drift event");
    let window: Vec<u64> = first["window"]
        .as_array()
        .expect("window")
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    // Not during the normal frames, and within the alarm's windows of the shift.
    assert!(window[0] >= NORMAL, "{first}");
    assert!(
        window[1] < NORMAL + WINDOWS_TO_ALARM * WINDOW,
        "later than {WINDOWS_TO_ALARM} windows into the shift: {first}"
    );
    let drifted: Vec<&str> = events.iter().filter_map(|e| e["stat"].as_str()).collect();
    let stat = *stats
        .iter()
        .find(|s| drifted.contains(s))
        .unwrap_or_else(|| panic!("none of {stats:?} drifted: {events:#?}"));
    let event = events
        .iter()
        .find(|e| e["stat"] == stat)
        .expect("its event");
    assert!(event["psi"].as_f64().expect("psi") >= 0.25, "{event}");
    assert_eq!(event["threshold"], 0.25);
    assert_eq!(event["windows"], WINDOWS_TO_ALARM);
    assert_eq!(event["source"], "shapes-detector@2.1.0");
    assert!(
        lines
            .iter()
            .any(|v| v.get("seq").and_then(|s| s.as_u64()) == Some(NORMAL - 1)),
        "the normal frames were all processed before"
    );
    let status = run.command("status");
    let drifting = status
        .lines()
        .find(|l| l.contains("drifting: "))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(drifting.contains(stat), "{status}");
}

#[test]
fn darkened_frames_raise_drift_on_brightness() {
    shift_raises_drift_on(darkened, &["brightness"]);
}

#[test]
fn colour_cast_frames_raise_drift_on_a_colour() {
    shift_raises_drift_on(colour_cast, &["red", "blue"]);
}

#[test]
fn blurred_frames_raise_drift_on_sharpness() {
    shift_raises_drift_on(blurred, &["sharpness"]);
}
