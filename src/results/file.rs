//! The file sink's file: JSON Lines that stay within a size, `file:PATH[,max_bytes=SIZE][,keep=N]`.
//!
//! A board writing 15 records a second appends about 600 MB a day; on an SD card that runs for
//! months, the file must not grow forever. Like logrotate and Python's `RotatingFileHandler`,
//! the file is renamed when the next record would take it past `max_bytes`: `PATH` becomes
//! `PATH.1`, `PATH.1` becomes `PATH.2`, and so on up to `PATH.<keep>`, the oldest, which the
//! next rotation replaces. So the records take at most `max_bytes × (keep + 1)` on disk, a
//! reader following `PATH` by name (`tail -F`) sees each new file, and every file holds whole
//! lines only. Rotation is renames, so a power cut in the middle loses no record.
//!
//! A file that cannot be written (a full card, a failing one, a removed stick) does not end the
//! run: [`FileSink`] drops the lines, counts them, and says so with events.

use crate::results::record::{EventRecord, FrameRecord};
use crate::results::sink::{json_line, Sink, SinkError};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A file grows to this before it is rotated, when `max_bytes` is not given: about 2.5 hours
/// of records at 15 frames per second.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Rotated files kept, when `keep` is not given: with the file being written, at most 320 MiB.
pub const DEFAULT_KEEP: u32 = 4;
/// The most rotated files `keep` may ask for.
pub const MAX_KEEP: u32 = 1000;

/// Where a file sink writes and how much it keeps: what `file:...` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// The file being written.
    pub path: PathBuf,
    /// Size at which it is rotated; `None` (`max_bytes=none`): never.
    pub max_bytes: Option<u64>,
    /// Rotated files kept beside it (`PATH.1` is the newest); 0 keeps none.
    pub keep: u32,
}

impl FileSpec {
    /// Parses what follows `file:`. Options are `,key=value` after the path; an unknown key is
    /// an error (a mistyped option must not end up as part of the file name).
    pub fn parse(rest: &str) -> Result<Self, String> {
        // A comma followed by text without `=` belongs to the path (`a,b.jsonl`); from the
        // first option on, everything is one.
        let mut parts = rest.split(',');
        let mut path = parts.next().unwrap_or_default().to_owned();
        let mut options = Vec::new();
        for part in parts {
            // A known key without its value (`keep`, `max_bytes:16M`) is a mistyped option,
            // not part of the path.
            let option =
                part.contains('=') || ["max_bytes", "keep"].iter().any(|k| part.starts_with(k));
            if options.is_empty() && !option {
                path.push(',');
                path.push_str(part);
            } else {
                options.push(part);
            }
        }
        if path.is_empty() {
            return Err("expected file:PATH[,max_bytes=SIZE][,keep=N]".into());
        }
        let mut spec = FileSpec {
            path: PathBuf::from(path),
            max_bytes: Some(DEFAULT_MAX_BYTES),
            keep: DEFAULT_KEEP,
        };
        for option in options {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| format!("option {option:?} is not key=value"))?;
            match key {
                "max_bytes" => {
                    spec.max_bytes = if value == "none" {
                        None
                    } else {
                        Some(parse_size(value).ok_or_else(|| {
                            format!(
                                "max_bytes={value:?} is not a size (bytes, or with K, M or G: \
                                 64M), at least 1, or `none`"
                            )
                        })?)
                    }
                }
                "keep" => {
                    spec.keep = value
                        .parse()
                        .ok()
                        .filter(|&k| k <= MAX_KEEP)
                        .ok_or_else(|| {
                            format!("keep={value:?} is not a whole number from 0 to {MAX_KEEP}")
                        })?
                }
                _ => return Err(format!("unknown option {key:?} (known: max_bytes, keep)")),
            }
        }
        Ok(spec)
    }

    /// What the records may take on disk at most, for the log: `None` when unbounded.
    pub fn cap(&self) -> Option<u64> {
        self.max_bytes
            .map(|max| max.saturating_mul(u64::from(self.keep) + 1))
    }
}

/// A size in bytes: digits, optionally followed by K, M or G (powers of 1024). At least 1.
fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let shift = match unit {
        "" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "m" | "MiB" => 20,
        "G" | "g" | "GiB" => 30,
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1 << shift).filter(|&n| n > 0)
}

/// The file a file sink appends to, rotated by size ([`FileSpec`]), a whole line at a time: a
/// line that would take the file past `max_bytes` goes into a new one (a single line longer
/// than `max_bytes` still goes whole into a file of its own). Only a regular file rotates:
/// `file:/dev/null`, a terminal or a FIFO is written as it is.
#[derive(Debug)]
pub struct RotatingFile {
    spec: FileSpec,
    /// `None` after a failed write or rotation: opened again by path for the next line.
    file: Option<File>,
    /// The device of the folder holding the file when it was first opened. The file is created
    /// again only while its folder is still on that device: after it was deleted by hand, yes;
    /// after a card was unmounted, leaving its mount point on the root file system, no (a new
    /// file there would fill the card underneath).
    folder_device: Option<u64>,
    /// A regular file (rotated and checked for a cut last line).
    regular: bool,
    /// Bytes in the file being written.
    size: u64,
    /// The file ends with a newline (or is empty): false after a crash or a failed write cut a
    /// line short.
    at_line_start: bool,
    /// Lines written since the path was last checked to still name the open file.
    since_check: u32,
}

/// Every this many lines the path is checked to still name the file being written: a file
/// deleted or moved away (its folder removed, a stick pulled) would otherwise take the lines
/// into an unlinked file, uncounted, until the next rotation.
const CHECK_EVERY: u32 = 64;

/// `e` with what was being done to which file.
fn context(what: String) -> impl FnOnce(std::io::Error) -> std::io::Error {
    move |e| std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl RotatingFile {
    /// Opens (or creates) the file to append to.
    pub fn open(spec: FileSpec) -> std::io::Result<Self> {
        let mut file = Self {
            spec,
            file: None,
            folder_device: None,
            regular: true,
            size: 0,
            at_line_start: true,
            since_check: 0,
        };
        file.reopen()?;
        file.folder_device = file.folder_device_now();
        Ok(file)
    }

    /// The device the file's folder is on now, if it can be read.
    fn folder_device_now(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt as _;
        let folder = match self.spec.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::metadata(folder).ok().map(|m| m.dev())
    }

    /// Opens the file at its path, noting its size and whether it ends in the middle of a line.
    fn reopen(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileTypeExt as _;
        let create = match self.folder_device {
            None => true,
            Some(device) => self.folder_device_now() == Some(device),
        };
        // A FIFO is opened to read as well: to write only would wait, in the frame loop, for a
        // reader to come.
        let fifo = std::fs::metadata(&self.spec.path).is_ok_and(|m| m.file_type().is_fifo());
        let file = OpenOptions::new()
            .create(create)
            .append(true)
            .read(fifo)
            .open(&self.spec.path)
            .map_err(context(format!("opening {}", self.spec.path.display())))?;
        let meta = file.metadata()?;
        self.regular = meta.is_file();
        self.size = if self.regular { meta.len() } else { 0 };
        self.at_line_start = !self.regular || self.size == 0 || self.ends_with_newline();
        self.file = Some(file);
        self.since_check = 0;
        Ok(())
    }

    /// Whether the file's last byte is a newline; true when it cannot be read (a file lookout
    /// may write but not read: nothing to mend then).
    fn ends_with_newline(&self) -> bool {
        let last = || -> std::io::Result<u8> {
            let mut file = File::open(&self.spec.path)?;
            file.seek(SeekFrom::End(-1))?;
            let mut byte = [0u8];
            file.read_exact(&mut byte)?;
            Ok(byte[0])
        };
        !matches!(last(), Ok(byte) if byte != b'\n')
    }

    /// Whether the path still names the open file (not deleted, moved or replaced).
    fn still_named(&self) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let Some(file) = &self.file else {
            return false;
        };
        match (file.metadata(), std::fs::metadata(&self.spec.path)) {
            (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
            _ => false,
        }
    }

    /// The path being written.
    pub fn path(&self) -> &Path {
        &self.spec.path
    }

    /// Appends `line` (ending in a newline), rotating first when it would pass `max_bytes`. A
    /// line that a crash or a failed write left unfinished is ended first, so that this one is
    /// a line of its own. After an error the file is opened again by path for the next line.
    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.regular && self.since_check >= CHECK_EVERY {
            self.since_check = 0;
            if !self.still_named() {
                self.file = None;
            }
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        self.since_check += 1;
        let result = self.write_line_open(line);
        if result.is_err() {
            // A full or pulled card, a replaced file: the next line opens the path again.
            self.file = None;
        }
        result
    }

    fn write_line_open(&mut self, line: &[u8]) -> std::io::Result<()> {
        if !self.at_line_start {
            self.append(b"\n")?;
        }
        let past_cap = self
            .spec
            .max_bytes
            .is_some_and(|max| self.size + line.len() as u64 > max);
        if self.regular && self.size > 0 && past_cap {
            self.rotate()?;
        }
        let before = self.size;
        let appended = self.append(line);
        if appended.is_err() && self.regular && self.size != before {
            // Part of the line went in before the disk filled: it is cut off again, so that
            // the file holds whole lines only.
            if let Some(file) = &self.file {
                if file.set_len(before).is_ok() {
                    self.size = before;
                    self.at_line_start = true;
                }
            }
        }
        appended
    }

    /// Writes all of `bytes`, keeping `size` and `at_line_start` true to what reached the file.
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("no file open"));
        };
        let mut written = 0;
        while written < bytes.len() {
            match file.write(&bytes[written..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    self.size += n as u64;
                    self.at_line_start = bytes[written - 1] == b'\n';
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The path of rotated file `n` (1 is the newest).
    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.spec.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Renames the file to `PATH.1` (after moving the older ones up, the oldest out) and
    /// starts a new one. Only the files below the lowest free number move, so a rotation that
    /// failed half way (a failing card) and is tried again moves nothing twice, and no kept file
    /// is lost to the retries.
    fn rotate(&mut self) -> std::io::Result<()> {
        // Whatever happens below, the file being written is written no more: the next line
        // opens the path again.
        self.file = None;
        // Left by a run that kept more: the cap is this run's.
        let mut beyond = self.spec.keep + 1;
        while remove_if_present(&self.rotated(beyond)).map_err(context(format!(
            "removing {}",
            self.rotated(beyond).display()
        )))? {
            beyond += 1;
        }
        if self.spec.keep == 0 {
            remove_if_present(&self.spec.path)
                .map_err(context(format!("removing {}", self.spec.path.display())))?;
        } else {
            let mut free = self.spec.keep;
            for n in 1..=self.spec.keep {
                let kept = self.rotated(n);
                match std::fs::symlink_metadata(&kept) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        free = n;
                        break;
                    }
                    // A card that cannot say which files it holds: nothing is moved blindly.
                    Err(e) => return Err(context(format!("reading {}", kept.display()))(e)),
                }
            }
            for n in (1..free).rev() {
                let (from, to) = (self.rotated(n), self.rotated(n + 1));
                std::fs::rename(&from, &to).map_err(context(format!(
                    "renaming {} to {}",
                    from.display(),
                    to.display()
                )))?;
            }
            // Not there: moved or deleted by hand, nothing to keep of it.
            rename_if_present(&self.spec.path, &self.rotated(1)).map_err(context(format!(
                "renaming {} to {}",
                self.spec.path.display(),
                self.rotated(1).display()
            )))?;
        }
        self.reopen()?;
        tracing::debug!(
            "{}: rotated at {} bytes",
            self.spec.path.display(),
            self.spec.max_bytes.unwrap_or_default()
        );
        Ok(())
    }
}

/// Removes `path`; false when it was not there.
fn remove_if_present(path: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Renames `from` to `to` (replacing it) when `from` is there.
fn rename_if_present(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Records and events as JSON Lines in a [`RotatingFile`] that outlives its disk. A line that
/// cannot be written (a full SD card, an I/O error from a failing one) is dropped and counted,
/// and the run goes on: the serial line, GPIO and MQTT still work, and a file sink that ended
/// the run would only have systemd restart it into the same full disk. The first failure
/// raises `sink_failed`; every later line is tried again, and the first that goes through
/// raises `sink_restored` with how many were lost.
pub struct FileSink {
    file: RotatingFile,
    line: Vec<u8>,
    outage: Option<Outage>,
    events: Vec<EventRecord>,
}

/// Since when lines are not written, and how many were not.
struct Outage {
    since: Instant,
    dropped: u64,
}

impl FileSink {
    /// Writes into `file`.
    pub fn new(file: RotatingFile) -> Self {
        Self {
            file,
            line: Vec::with_capacity(1024),
            outage: None,
            events: Vec::new(),
        }
    }

    fn source(&self) -> String {
        format!("file:{}", self.file.path().display())
    }

    fn write(&mut self, value: &impl serde::Serialize) -> Result<(), SinkError> {
        json_line(value, &mut self.line).map_err(|source| SinkError::Write {
            destination: self.file.path().display().to_string(),
            source,
        })?;
        match self.file.write_line(&self.line) {
            Ok(()) => {
                if let Some(outage) = self.outage.take() {
                    let message = format!(
                        "writing again after {:.1} s; {} line{} not written",
                        outage.since.elapsed().as_secs_f64(),
                        outage.dropped,
                        if outage.dropped == 1 {
                            " was"
                        } else {
                            "s were"
                        }
                    );
                    tracing::warn!("{}: {message}", self.file.path().display());
                    let event = EventRecord::now("sink_restored", &self.source(), message);
                    self.events.push(event);
                }
            }
            Err(e) => match self.outage.as_mut() {
                Some(outage) => outage.dropped += 1,
                None => {
                    let message = format!(
                        "write failed: {e}; records and events are dropped and counted until \
                         a write succeeds"
                    );
                    tracing::warn!("{}: {message}", self.file.path().display());
                    let event = EventRecord::now("sink_failed", &self.source(), message);
                    self.events.push(event);
                    self.outage = Some(Outage {
                        since: Instant::now(),
                        dropped: 1,
                    });
                }
            },
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn emit(&mut self, record: &FrameRecord) -> Result<(), SinkError> {
        self.write(record)
    }

    fn event(&mut self, event: &EventRecord) -> Result<(), SinkError> {
        self.write(event)
    }

    /// Nothing is buffered: each line went to the file as it came.
    fn flush(&mut self) -> Result<(), SinkError> {
        if let Some(outage) = &self.outage {
            tracing::warn!(
                "{}: {} line{} not written (the file could not be written since {:.1} s ago)",
                self.file.path().display(),
                outage.dropped,
                if outage.dropped == 1 {
                    " was"
                } else {
                    "s were"
                },
                outage.since.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    fn take_events(&mut self) -> Vec<EventRecord> {
        std::mem::take(&mut self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, max_bytes: u64, keep: u32) -> FileSpec {
        FileSpec {
            path: dir.join("out.jsonl"),
            max_bytes: Some(max_bytes),
            keep,
        }
    }

    /// A line of exactly `len` bytes (newline included) carrying `n`.
    fn line(n: u32, len: usize) -> Vec<u8> {
        let mut text = format!("{{\"seq\":{n},\"pad\":\"");
        let pad = len - text.len() - 3;
        text.push_str(&"x".repeat(pad));
        text.push_str("\"}\n");
        assert_eq!(text.len(), len);
        text.into_bytes()
    }

    fn seqs(path: &Path) -> Vec<u64> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("whole JSON line");
                v["seq"].as_u64().expect("seq")
            })
            .collect()
    }

    #[test]
    fn options_parse_with_defaults_and_errors_name_the_option() {
        assert_eq!(
            FileSpec::parse("out.jsonl"),
            Ok(FileSpec {
                path: "out.jsonl".into(),
                max_bytes: Some(DEFAULT_MAX_BYTES),
                keep: DEFAULT_KEEP
            })
        );
        let spec = FileSpec::parse("/var/log/r.jsonl,max_bytes=2M,keep=7").expect("parses");
        assert_eq!(spec.max_bytes, Some(2 << 20));
        assert_eq!(spec.keep, 7);
        assert_eq!(spec.cap(), Some(16 << 20));
        assert_eq!(
            FileSpec::parse("r,max_bytes=none").expect("parses").cap(),
            None
        );
        assert_eq!(
            FileSpec::parse("r,max_bytes=1500")
                .expect("parses")
                .max_bytes,
            Some(1500)
        );
        assert_eq!(
            FileSpec::parse("r,max_bytes=3k").expect("parses").max_bytes,
            Some(3072)
        );
        // A comma with no `=` after it is the path's.
        let spec = FileSpec::parse("/data/a,b.jsonl,keep=2").expect("parses");
        assert_eq!(spec.path, PathBuf::from("/data/a,b.jsonl"));
        assert_eq!(spec.keep, 2);
        for (text, needle) in [
            ("", "expected file:PATH"),
            ("r,max_bytes=0", "max_bytes=\"0\" is not a size"),
            ("r,max_bytes=12X", "max_bytes=\"12X\" is not a size"),
            ("r,max_bytes=99999999999G", "is not a size"),
            (
                "r,keep=-1",
                "keep=\"-1\" is not a whole number from 0 to 1000",
            ),
            ("r,keep=1001", "keep=\"1001\""),
            (
                "r,maxbytes=5",
                "unknown option \"maxbytes\" (known: max_bytes, keep)",
            ),
            ("r,keep=2,x", "option \"x\" is not key=value"),
            ("r,keep", "option \"keep\" is not key=value"),
            (
                "r,max_bytes:16M",
                "option \"max_bytes:16M\" is not key=value",
            ),
        ] {
            let err = FileSpec::parse(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn files_rotate_between_lines_and_keep_the_newest_records_under_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(dir.path(), 1000, 2);
        let mut file = RotatingFile::open(spec.clone()).expect("open");
        // 300-byte lines: three to a file, the fourth rotates.
        for n in 0..20 {
            file.write_line(&line(n, 300)).expect("write");
        }
        let path = &spec.path;
        let older = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        assert!(!older(3).exists(), "more than keep=2 files kept");
        let mut all = seqs(&older(2));
        all.extend(seqs(&older(1)));
        all.extend(seqs(path));
        // Three lines to a file: 18 and 19 in the one being written, 12..=17 in the two kept;
        // the older ones are gone.
        assert_eq!(all, (12..20).collect::<Vec<u64>>());
        for p in [older(2), older(1), path.clone()] {
            let len = std::fs::metadata(&p).expect("file").len();
            assert!(len <= 1000, "{}: {len} bytes", p.display());
        }
    }

    #[test]
    fn keep_0_keeps_only_the_file_being_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(dir.path(), 1000, 0);
        let mut file = RotatingFile::open(spec.clone()).expect("open");
        for n in 0..7 {
            file.write_line(&line(n, 300)).expect("write");
        }
        assert_eq!(seqs(&spec.path), [6]);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }

    #[test]
    fn a_line_longer_than_the_cap_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(dir.path(), 1000, 3);
        let mut file = RotatingFile::open(spec.clone()).expect("open");
        file.write_line(&line(0, 300)).expect("write");
        file.write_line(&line(1, 2500)).expect("write");
        file.write_line(&line(2, 300)).expect("write");
        assert_eq!(seqs(&dir.path().join("out.jsonl.2")), [0]);
        assert_eq!(seqs(&dir.path().join("out.jsonl.1")), [1]);
        assert_eq!(seqs(&spec.path), [2]);
    }

    #[test]
    fn a_reopened_file_continues_its_size_and_a_cut_last_line_is_ended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(dir.path(), 1000, 1);
        // A crash cut the last record short.
        let mut before = line(0, 300);
        before.extend_from_slice(&line(1, 300)[..100]);
        std::fs::write(&spec.path, &before).expect("write");
        // Left by a run with keep=3.
        std::fs::write(dir.path().join("out.jsonl.2"), line(90, 300)).expect("write");
        std::fs::write(dir.path().join("out.jsonl.3"), line(91, 300)).expect("write");
        let mut file = RotatingFile::open(spec.clone()).expect("open");
        file.write_line(&line(2, 300)).expect("write");
        let text = std::fs::read_to_string(&spec.path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(serde_json::from_str::<serde_json::Value>(lines[1]).is_err());
        assert!(lines[2].starts_with("{\"seq\":2,"), "{}", lines[2]);
        // 701 bytes: the next 300 pass the 1000, so this run's first rotation happens, and
        // takes the files a larger keep left.
        file.write_line(&line(3, 300)).expect("write");
        assert_eq!(seqs(&spec.path), [3]);
        assert!(dir.path().join("out.jsonl.1").exists());
        assert!(!dir.path().join("out.jsonl.2").exists());
        assert!(!dir.path().join("out.jsonl.3").exists());
    }

    #[test]
    fn a_full_disk_drops_lines_counted_says_so_once_and_the_run_goes_on() {
        // /dev/full fails every write with ENOSPC, like a full SD card.
        let spec = FileSpec {
            path: "/dev/full".into(),
            max_bytes: None,
            keep: 0,
        };
        let mut sink = FileSink::new(RotatingFile::open(spec).expect("opens"));
        for seq in 0..3 {
            sink.emit(&FrameRecord::empty(seq))
                .expect("a full disk does not end the run");
        }
        let events = sink.take_events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].event, "sink_failed");
        assert_eq!(events[0].source, "file:/dev/full");
        assert!(
            events[0].message.contains("No space left on device"),
            "{}",
            events[0].message
        );
        assert_eq!(sink.outage.as_ref().map(|o| o.dropped), Some(3));
        assert!(sink.take_events().is_empty(), "said once");
    }

    #[test]
    fn a_folder_that_goes_away_and_comes_back_loses_only_the_lines_in_between() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("stick");
        std::fs::create_dir(&folder).expect("folder");
        let mut line = Vec::new();
        json_line(&FrameRecord::empty(0), &mut line).expect("JSON");
        let len = line.len() as u64;
        let spec = FileSpec {
            path: folder.join("out.jsonl"),
            max_bytes: Some(4 * len + len / 2),
            keep: 0,
        };
        let mut sink = FileSink::new(RotatingFile::open(spec.clone()).expect("opens"));
        // Four records to a file: the fifth rotates, which needs the folder (until then the
        // open file takes them, folder or not).
        for seq in 0..4 {
            sink.emit(&FrameRecord::empty(seq)).expect("emit");
        }
        assert!(sink.take_events().is_empty());
        std::fs::remove_dir_all(&folder).expect("the stick is pulled");
        for seq in 4..7 {
            sink.emit(&FrameRecord::empty(seq))
                .expect("the run goes on");
        }
        let failed = sink.take_events();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].event, "sink_failed");
        std::fs::create_dir(&folder).expect("the stick is back");
        sink.emit(&FrameRecord::empty(7)).expect("emit");
        let restored = sink.take_events();
        assert_eq!(restored.len(), 1, "{restored:?}");
        assert_eq!(restored[0].event, "sink_restored");
        assert!(
            restored[0].message.contains("; 3 lines were not written"),
            "{}",
            restored[0].message
        );
        assert_eq!(seqs(&spec.path), [7]);
    }

    #[test]
    fn a_rotation_tried_again_moves_only_what_is_below_the_gap() {
        // What a rotation that failed half way leaves: PATH.2 already moved up to PATH.3, and
        // PATH.1 not yet moved. The retry must not move PATH.3 again (it would overwrite the
        // oldest kept file with the next one).
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(dir.path(), 1000, 3);
        std::fs::write(dir.path().join("out.jsonl.1"), line(1, 300)).expect("write");
        std::fs::write(dir.path().join("out.jsonl.3"), line(2, 300)).expect("write");
        std::fs::write(
            &spec.path,
            [line(3, 300), line(4, 300), line(5, 300)].concat(),
        )
        .expect("write");
        let mut file = RotatingFile::open(spec.clone()).expect("open");
        file.write_line(&line(6, 300)).expect("write");
        let kept = |n: u32| seqs(&dir.path().join(format!("out.jsonl.{n}")));
        assert_eq!(kept(3), [2]);
        assert_eq!(kept(2), [1]);
        assert_eq!(kept(1), [3, 4, 5]);
        assert_eq!(seqs(&spec.path), [6]);
    }

    #[test]
    fn a_file_that_is_not_a_regular_file_is_written_and_never_rotated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let null = dir.path().join("null.jsonl");
        std::os::unix::fs::symlink("/dev/null", &null).expect("symlink");
        let mut file = RotatingFile::open(FileSpec {
            path: null.clone(),
            max_bytes: Some(100),
            keep: 2,
        })
        .expect("open");
        for n in 0..10 {
            file.write_line(&line(n, 300)).expect("write");
        }
        assert!(!dir.path().join("null.jsonl.1").exists());
        assert_eq!(
            std::fs::read_link(&null).expect("still the link"),
            PathBuf::from("/dev/null")
        );
    }

    #[test]
    fn kept_files_survive_a_folder_that_goes_away_and_comes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("stick");
        std::fs::create_dir(&folder).expect("folder");
        let spec = FileSpec {
            path: folder.join("out.jsonl"),
            max_bytes: Some(1000),
            keep: 2,
        };
        let mut file = RotatingFile::open(spec.clone()).expect("opens");
        let mut file_line = |n: u32| file.write_line(&line(n, 300));
        for n in 0..4 {
            file_line(n).expect("write");
        }
        // out.jsonl.1 holds 0..=2, out.jsonl 3.
        let kept = std::fs::read(folder.join("out.jsonl.1")).expect("kept");
        let moved = dir.path().join("elsewhere");
        std::fs::rename(&folder, &moved).expect("the stick is pulled");
        // 4 and 5 still go to the open file, wherever its folder is; 6 needs a rotation, and
        // from then on the folder.
        for n in 4..20 {
            assert_eq!(file_line(n).is_ok(), n < 6, "line {n}");
        }
        std::fs::rename(&moved, &folder).expect("the stick is back");
        file_line(20).expect("written again");
        // Nothing kept was shifted out by the failed attempts: 0..=2 one file further on,
        // 3..=5 (the file the folder went away with) rotated behind it.
        assert_eq!(
            std::fs::read(folder.join("out.jsonl.2")).expect("kept"),
            kept
        );
        assert_eq!(seqs(&folder.join("out.jsonl.1")), [3, 4, 5]);
        assert_eq!(seqs(&spec.path), [20]);
    }
}
