//! The console: commands typed on the serial line (or any byte stream), answered between
//! frames.
//!
//! ```text
//! help                   the commands
//! status                 uptime, frames, fps, model@version, threshold, drift, objects and zones, samples, memory, dropped lines, last error
//! info                   model, labels with their ids, input, thresholds, source, board
//! set threshold <0..1>   minimum score to report, from the next frame on
//! pause | resume         stop and restart reading frames
//! snapshot               save the last frame as PNG in the snapshot folder (the newest 20 kept)
//! reboot-pipeline        reload the model and reopen the source
//! model use <version>    switch to an installed version of the running model (see `slots`)
//! ```
//!
//! Every reply line starts with `# ` and a reply ends with `# ok ...` or `# error: ...`, so a
//! program reading results can skip replies (see [`crate::results::serial::protocol`]). Input is forgiving:
//! a line ends at CR, LF or both in either order; backspace and DEL erase, Ctrl-U and Ctrl-C
//! clear the line; other control bytes are ignored; case does not matter. A line longer than
//! [`MAX_LINE`] bytes, or one that is not UTF-8, is answered with an error and otherwise ignored.
//! Nothing typed can stop the process.

use crate::lifecycle::reload::ModelControl;
use crate::pipeline::{RunControl, Steering};
use crate::results::serial::SharedLink;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Longest command line accepted, in bytes.
pub const MAX_LINE: usize = 256;

/// Where console bytes come from and replies go.
pub trait ConsolePort {
    /// Appends whatever input has arrived, without waiting.
    fn read_input(&mut self, input: &mut Vec<u8>);
    /// Writes reply lines.
    fn write_reply(&mut self, text: &str);
    /// Delivers the `snapshot` command's frame where this port sends frames, returning the
    /// reply; `None` (the default) saves it as PNG in the console's snapshot folder.
    fn snapshot(&mut self, frame: &crate::frames::source::Frame) -> Option<Result<String, String>> {
        let _ = frame;
        None
    }
}

impl ConsolePort for SharedLink {
    fn read_input(&mut self, input: &mut Vec<u8>) {
        self.borrow_mut().receive(input);
    }

    fn write_reply(&mut self, text: &str) {
        self.borrow_mut().send(text);
    }
}

/// One complete input line, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A line of text (without its ending).
    Line(String),
    /// A line longer than [`MAX_LINE`]; its length in bytes.
    TooLong(usize),
    /// A line that is not UTF-8.
    NotText,
}

/// Turns a byte stream into lines, with the editing a serial terminal sends.
#[derive(Debug, Default)]
pub struct LineAssembler {
    line: Vec<u8>,
    overflow: usize,
}

impl LineAssembler {
    /// Feeds bytes; returns the lines they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Input> {
        let mut done = Vec::new();
        for &b in bytes {
            match b {
                b'\r' | b'\n' => {
                    if self.overflow > 0 {
                        done.push(Input::TooLong(self.overflow));
                    } else if !self.line.is_empty() {
                        done.push(match String::from_utf8(std::mem::take(&mut self.line)) {
                            Ok(text) => Input::Line(text),
                            Err(_) => Input::NotText,
                        });
                    }
                    self.line.clear();
                    self.overflow = 0;
                }
                0x08 | 0x7f => {
                    if self.overflow == 0 {
                        // Erase a whole UTF-8 character, not one byte of it.
                        while let Some(last) = self.line.pop() {
                            if last & 0xC0 != 0x80 {
                                break;
                            }
                        }
                    }
                }
                0x03 | 0x15 => {
                    self.line.clear();
                    self.overflow = 0;
                }
                b'\t' => self.keep(b' '),
                0x00..=0x1f => {}
                _ => self.keep(b),
            }
        }
        done
    }

    fn keep(&mut self, b: u8) {
        if self.overflow > 0 {
            self.overflow += 1;
        } else if self.line.len() >= MAX_LINE {
            self.overflow = self.line.len() + 1;
            self.line.clear();
        } else {
            self.line.push(b);
        }
    }
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// List the commands.
    Help,
    /// Counters.
    Status,
    /// Model and set-up.
    Info,
    /// Change the score threshold.
    SetThreshold(f32),
    /// Stop reading frames.
    Pause,
    /// Read frames again.
    Resume,
    /// Save the last frame.
    Snapshot,
    /// Reload the model and reopen the source.
    RebootPipeline,
    /// Switch to an installed version.
    ModelUse(String),
}

const HELP: &str = "\
help                   this list
status                 uptime, frames, fps, model, threshold, drift, objects, zones, samples, memory, dropped lines, last error
info                   model, labels, input, thresholds, source
set threshold <0..1>   minimum score to report
pause | resume         stop / restart reading frames
snapshot               save the last frame as PNG
reboot-pipeline        reload the model and reopen the source
model use <version>    switch to an installed version of the running model";

/// Parses one line; the error is the reply.
pub fn parse(line: &str) -> Result<Command, String> {
    let words: Vec<String> = line
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["help"] | ["?"] => Ok(Command::Help),
        ["status"] => Ok(Command::Status),
        ["info"] => Ok(Command::Info),
        ["pause"] => Ok(Command::Pause),
        ["resume"] => Ok(Command::Resume),
        ["snapshot"] => Ok(Command::Snapshot),
        ["reboot-pipeline"] => Ok(Command::RebootPipeline),
        ["model", "use", version] => Ok(Command::ModelUse((*version).to_owned())),
        ["model", ..] => Err("usage: model use <version>".into()),
        ["set", "threshold", value] => match value.parse::<f32>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(Command::SetThreshold(v)),
            _ => Err(format!("threshold {value:?} is not a number in [0, 1]")),
        },
        ["set", "threshold"] => Err("usage: set threshold <0..1>".into()),
        ["set", what, ..] => Err(format!("cannot set {what:?}; settable: threshold")),
        [first, ..] => Err(format!(
            "unknown command {:?}; type help",
            first.chars().take(32).collect::<String>()
        )),
        [] => Err("empty command".into()),
    }
}

/// Everything a console says about the set-up that the run loop does not know.
#[derive(Debug, Clone, Default)]
pub struct ConsoleInfo {
    /// Board profile name.
    pub board: String,
    /// Sinks, as given.
    pub sinks: Vec<String>,
}

/// A console on one port.
pub struct Console<P: ConsolePort> {
    port: P,
    assembler: LineAssembler,
    input: Vec<u8>,
    snapshot_dir: PathBuf,
    info: ConsoleInfo,
    /// Where `model use` asks for a switch.
    model: ModelControl,
    /// The link's counters for `status`, when the port is a serial link.
    link: Option<SharedLink>,
}

impl<P: ConsolePort> Console<P> {
    /// A console reading from and replying on `port`; snapshots go to `snapshot_dir`, and
    /// `model use` asks `model` for the switch.
    pub fn new(port: P, snapshot_dir: PathBuf, info: ConsoleInfo, model: ModelControl) -> Self {
        Self {
            port,
            assembler: LineAssembler::default(),
            input: Vec::with_capacity(MAX_LINE),
            snapshot_dir,
            info,
            model,
            link: None,
        }
    }

    /// The port.
    pub fn port_mut(&mut self) -> &mut P {
        &mut self.port
    }

    /// Shows this link's counters in `status`.
    pub fn with_link_stats(mut self, link: SharedLink) -> Self {
        self.link = Some(link);
        self
    }

    fn reply(&mut self, body: &str, last: Result<String, String>) {
        let mut text = String::new();
        for line in body.lines() {
            let _ = writeln!(text, "# {line}");
        }
        match last {
            Ok(ok) => {
                let _ = writeln!(text, "# ok {ok}");
            }
            Err(e) => {
                let _ = writeln!(text, "# error: {e}");
            }
        }
        self.port.write_reply(&text);
    }

    fn execute(&mut self, command: Command, control: &mut RunControl<'_>) {
        match command {
            Command::Help => self.reply(HELP, Ok("help".into())),
            Command::Status => {
                let body = self.status(control);
                self.reply(&body, Ok("status".into()));
            }
            Command::Info => {
                let body = self.describe(control);
                self.reply(&body, Ok("info".into()));
            }
            Command::SetThreshold(v) => {
                let thresholds = control.pipeline.thresholds_mut();
                let was = thresholds.score;
                thresholds.score = v;
                self.reply("", Ok(format!("threshold {v} (was {was})")));
            }
            Command::Pause => {
                let was = std::mem::replace(control.paused, true);
                self.reply("", Ok(if was { "already paused" } else { "paused" }.into()));
            }
            Command::Resume => {
                let was = std::mem::replace(control.paused, false);
                self.reply("", Ok(if was { "resumed" } else { "not paused" }.into()));
            }
            Command::Snapshot => {
                let result = match control.last_frame {
                    None => Err("snapshot: no frame yet".to_owned()),
                    Some(frame) => match self.port.snapshot(frame) {
                        Some(sent) => sent,
                        None => save_snapshot(&self.snapshot_dir, frame)
                            .map(|p| format!("snapshot {}", p.display()))
                            .map_err(|e| format!("snapshot: {e}")),
                    },
                };
                self.reply("", result);
            }
            Command::RebootPipeline => {
                let result = control
                    .pipeline
                    .rebuild()
                    .map_err(|e| format!("reboot-pipeline: model: {e}"))
                    .and_then(|()| {
                        control
                            .source
                            .restart()
                            .map_err(|e| format!("reboot-pipeline: source: {e}"))
                    })
                    .map(|()| format!("reboot-pipeline {}", control.pipeline.manifest().id()));
                self.reply("", result);
            }
            Command::ModelUse(version) => {
                let result = self
                    .model
                    .use_version(&version)
                    .map(|slot| {
                        format!(
                            "model use {}@{}: switching before the next frame",
                            slot.name, slot.version
                        )
                    })
                    .map_err(|e| format!("model use: {e}"));
                self.reply("", result);
            }
        }
    }

    fn status(&self, control: &RunControl<'_>) -> String {
        let s = control.stats;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "uptime {:.1} s, {} frames ({:.2} fps), {} unreadable, {} dropped stale, {}",
            s.started.elapsed().as_secs_f64(),
            s.frames,
            s.fps,
            s.failed_frames,
            control.source.dropped_frames(),
            if *control.paused { "paused" } else { "running" }
        );
        let _ = writeln!(
            out,
            "model {}, threshold {}",
            control.pipeline.manifest().id(),
            control.pipeline.thresholds().score
        );
        if let Some(drift) = control.pipeline.drift() {
            let _ = writeln!(out, "{}", drift.status());
        }
        if let Some(scene) = control.pipeline.scene() {
            let _ = writeln!(out, "{}", scene.status());
        }
        if let Some(health) = s.health.and_then(|reading| reading.status()) {
            let _ = writeln!(out, "{health}");
        }
        if let Some(samples) = control.samples {
            let _ = writeln!(out, "{}", samples.status());
        }
        if let Some(memory) = crate::lifecycle::memory::MemoryUse::now() {
            let _ = writeln!(out, "{}", memory.status());
        }
        let mut last_error = s.last_error.clone();
        if let Some(link) = &self.link {
            let l = link.borrow().stats();
            let _ = writeln!(
                out,
                "serial {} dropped lines, {} reconnects",
                l.dropped_lines, l.reconnects
            );
            if last_error.is_none() {
                last_error = l.last_error;
            }
        }
        let _ = write!(
            out,
            "last error: {}",
            last_error.as_deref().unwrap_or("none")
        );
        out
    }

    fn describe(&self, control: &RunControl<'_>) -> String {
        let m = control.pipeline.manifest();
        let t = control.pipeline.thresholds();
        let labels: Vec<String> = m
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{i}={l}"))
            .collect();
        let mut out = String::new();
        let _ = writeln!(out, "lookout {}", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(out, "model {}: {}", m.id(), m.description);
        let _ = writeln!(out, "labels {}", labels.join(" "));
        let _ = writeln!(
            out,
            "input {} {:?}, thresholds score {} iou {} max {}",
            m.input.name, m.input.shape, t.score, t.iou, t.max_detections
        );
        let _ = writeln!(out, "source {}", control.source.describe());
        let _ = writeln!(out, "board {}", self.info.board);
        let _ = write!(out, "sinks {}", self.info.sinks.join(" "));
        out
    }
}

impl<P: ConsolePort> Steering for Console<P> {
    fn between_frames(&mut self, mut control: RunControl<'_>) {
        self.input.clear();
        self.port.read_input(&mut self.input);
        if self.input.is_empty() {
            return;
        }
        let input = std::mem::take(&mut self.input);
        for line in self.assembler.push(&input) {
            match line {
                Input::Line(text) => match parse(&text) {
                    Ok(command) => self.execute(command, &mut control),
                    Err(e) => self.reply("", Err(e)),
                },
                Input::TooLong(n) => self.reply(
                    "",
                    Err(format!("line of {n} bytes ignored; at most {MAX_LINE}")),
                ),
                Input::NotText => self.reply("", Err("line is not UTF-8 text; ignored".into())),
            }
        }
        self.input = input;
    }
}

/// Snapshots kept in the snapshot folder at most: a script asking for one every minute for
/// months must not fill the disk the samples and the MQTT queue share. The oldest go first.
pub const MAX_SNAPSHOTS: usize = 20;

/// Writes `frame` as `snapshot-<frame id>-<unix ms>.png` in `dir`, whole or not at all, and
/// removes the oldest snapshots past [`MAX_SNAPSHOTS`].
fn save_snapshot(dir: &Path, frame: &crate::frames::source::Frame) -> Result<PathBuf, String> {
    let millis = frame
        .captured_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let id: String = frame
        .id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("snapshot-{id}-{millis}.png"));
    let tmp = dir.join(format!(".snapshot-{id}-{millis}.png.part"));
    let mut bytes = Vec::new();
    frame
        .image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| format!("encoding PNG: {e}"))?;
    let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", path.display()));
    }
    prune_snapshots(dir, &path, MAX_SNAPSHOTS);
    Ok(path)
}

/// Removes all but `kept` and the newest `keep - 1` other snapshots in `dir` (by modification
/// time, then name): the one just written stays even when the clock was set back since the
/// others were. Other files are left alone. A file that cannot be removed is left too: the
/// next snapshot tries again.
fn prune_snapshots(dir: &Path, kept: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut snapshots: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("snapshot-") && name.ends_with(".png") && e.path() != kept
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    let others = keep.saturating_sub(1);
    if snapshots.len() <= others {
        return;
    }
    snapshots.sort();
    for (_, path) in &snapshots[..snapshots.len() - others] {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(a: &mut LineAssembler, bytes: &[u8]) -> Vec<Input> {
        a.push(bytes)
    }

    #[test]
    fn snapshots_past_the_limit_go_oldest_first_and_other_files_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let frame = |n: u64| crate::frames::source::Frame {
            id: format!("camera-{n}"),
            captured_at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(n),
            image: image::RgbImage::new(4, 3),
        };
        std::fs::write(dir.path().join("notes.txt"), "mine").expect("write");
        let mut saved = Vec::new();
        for n in 0..MAX_SNAPSHOTS as u64 + 5 {
            saved.push(save_snapshot(dir.path(), &frame(n)).expect("saved"));
            // Modification times a clear order apart, on file systems with coarse clocks.
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + n);
            std::fs::File::options()
                .write(true)
                .open(saved.last().expect("one"))
                .and_then(|f| f.set_modified(at))
                .expect("mtime");
        }
        let mut left: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .expect("read")
            .map(|e| e.expect("entry").path())
            .collect();
        left.sort();
        let mut want: Vec<PathBuf> = saved[5..].to_vec();
        want.push(dir.path().join("notes.txt"));
        want.sort();
        assert_eq!(left, want);

        // The clock set back: the snapshots there are dated a day ahead of it, so each one
        // just taken is the oldest, and stays.
        let ahead = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
        for entry in std::fs::read_dir(dir.path()).expect("read") {
            std::fs::File::options()
                .write(true)
                .open(entry.expect("entry").path())
                .and_then(|f| f.set_modified(ahead))
                .expect("mtime");
        }
        for n in 1_000..1_003 {
            let newest = save_snapshot(dir.path(), &frame(n)).expect("saved");
            assert!(newest.exists(), "the snapshot just written was removed");
        }
        let count = std::fs::read_dir(dir.path()).expect("read").count();
        assert_eq!(count, MAX_SNAPSHOTS + 1, "20 snapshots and notes.txt");
    }

    #[test]
    fn any_line_ending_ends_a_line_once() {
        let mut a = LineAssembler::default();
        let got = lines(&mut a, b"status\r\ninfo\rhelp\npause\n\rresume\r\n\r\n");
        let want: Vec<Input> = ["status", "info", "help", "pause", "resume"]
            .iter()
            .map(|s| Input::Line((*s).into()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn lines_may_arrive_in_pieces() {
        let mut a = LineAssembler::default();
        assert!(lines(&mut a, b"sta").is_empty());
        assert_eq!(lines(&mut a, b"tus\r"), vec![Input::Line("status".into())]);
    }

    #[test]
    fn editing_keys_work() {
        let mut a = LineAssembler::default();
        assert_eq!(
            lines(&mut a, b"stx\x08atus\n"),
            vec![Input::Line("status".into())]
        );
        assert_eq!(
            lines(&mut a, b"garbage\x15info\n"),
            vec![Input::Line("info".into())]
        );
        // Two-byte "é" erased by one backspace; other control bytes dropped.
        assert_eq!(
            lines(&mut a, "he\u{e9}\x7flp\x1b\x07\n".as_bytes()),
            vec![Input::Line("help".into())]
        );
    }

    #[test]
    fn over_long_and_binary_lines_are_reported_once() {
        let mut a = LineAssembler::default();
        let long = vec![b'a'; MAX_LINE + 10];
        let mut bytes = long.clone();
        bytes.extend_from_slice(b"\nstatus\n");
        assert_eq!(
            lines(&mut a, &bytes),
            vec![Input::TooLong(MAX_LINE + 10), Input::Line("status".into())]
        );
        assert_eq!(lines(&mut a, b"\xff\xfe\n"), vec![Input::NotText]);
        // Exactly MAX_LINE bytes is still a line.
        let mut exact = vec![b'b'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(
            lines(&mut a, &exact),
            vec![Input::Line("b".repeat(MAX_LINE))]
        );
    }

    #[test]
    fn commands_parse_forgivingly_and_errors_say_why() {
        assert_eq!(parse("  STATUS "), Ok(Command::Status));
        assert_eq!(parse("set  threshold 0.4"), Ok(Command::SetThreshold(0.4)));
        assert_eq!(parse("Reboot-Pipeline"), Ok(Command::RebootPipeline));
        assert!(parse("set threshold 1.5")
            .unwrap_err()
            .contains("not a number in [0, 1]"));
        assert!(parse("set threshold nan")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse("set threshold").unwrap_err().contains("usage"));
        assert!(parse("set iou 0.3")
            .unwrap_err()
            .contains("cannot set \"iou\""));
        assert!(parse("fly away")
            .unwrap_err()
            .contains("unknown command \"fly\""));
        assert!(parse("help me").unwrap_err().contains("unknown command"));
    }
}
