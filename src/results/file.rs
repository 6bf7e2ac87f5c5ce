//! The file sink's file: JSON Lines that stay within a size, `file:PATH[,max_bytes=SIZE][,keep=N]`.
//!
//! A board writing 15 records a second appends about 600 MB a day; on an SD card that runs for
//! months, the file must not grow forever. Like logrotate and Python's `RotatingFileHandler`,
//! the file is renamed when the next record would take it past `max_bytes`: `PATH` becomes
//! `PATH.1`, `PATH.1` becomes `PATH.2`, and so on up to `PATH.<keep>`, the oldest, which the
//! next rotation replaces. So the records take at most `max_bytes × (keep + 1)` on disk, a
//! reader following `PATH` by name (`tail -F`) sees each new file, and every file holds whole
//! lines only. Rotation is renames, so a power cut in the middle loses no record.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
        let mut parts = rest.split(',');
        let path = parts.next().unwrap_or_default();
        if path.is_empty() {
            return Err("expected file:PATH[,max_bytes=SIZE][,keep=N]".into());
        }
        let mut spec = FileSpec {
            path: PathBuf::from(path),
            max_bytes: Some(DEFAULT_MAX_BYTES),
            keep: DEFAULT_KEEP,
        };
        for option in parts {
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
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1 << shift).filter(|&n| n > 0)
}

/// The file a file sink appends to, rotated by size ([`FileSpec`]). Rotation happens only
/// between lines: a write that starts a line and would pass `max_bytes` goes into a new file
/// (a single line longer than `max_bytes` still goes whole into a file of its own).
#[derive(Debug)]
pub struct RotatingFile {
    spec: FileSpec,
    file: File,
    /// Bytes in the file being written.
    size: u64,
    /// The last byte written ended a line (or nothing was written).
    at_line_start: bool,
}

impl RotatingFile {
    /// Opens (or creates) the file to append to. A file a crash left ending in the middle of a
    /// line gets a newline first, so that the next record is a line of its own.
    pub fn open(spec: FileSpec) -> std::io::Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&spec.path)?;
        let mut size = file.metadata()?.len();
        if size > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(size - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                size += 1;
            }
        }
        Ok(Self {
            spec,
            file,
            size,
            at_line_start: true,
        })
    }

    /// The path of rotated file `n` (1 is the newest).
    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.spec.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Renames the file to `PATH.1` (after moving the older ones up, the oldest out) and
    /// starts a new one.
    fn rotate(&mut self) -> std::io::Result<()> {
        // Left by a run that kept more: the cap is this run's.
        let mut beyond = self.spec.keep + 1;
        while remove_if_present(&self.rotated(beyond))? {
            beyond += 1;
        }
        if self.spec.keep == 0 {
            remove_if_present(&self.spec.path)?;
        } else {
            for n in (1..self.spec.keep).rev() {
                rename_if_present(&self.rotated(n), &self.rotated(n + 1))?;
            }
            std::fs::rename(&self.spec.path, self.rotated(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.spec.path)?;
        self.size = 0;
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

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let past_cap = self
            .spec
            .max_bytes
            .is_some_and(|max| self.size + buf.len() as u64 > max);
        if self.at_line_start && self.size > 0 && past_cap {
            self.rotate()?;
        }
        let written = self.file.write(buf)?;
        self.size += written as u64;
        if written > 0 {
            self.at_line_start = buf[written - 1] == b'\n';
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
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
            ("r,keep", "option \"keep\" is not key=value"),
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
            file.write_all(&line(n, 300)).expect("write");
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
            file.write_all(&line(n, 300)).expect("write");
        }
        assert_eq!(seqs(&spec.path), [6]);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }

    #[test]
    fn a_line_longer_than_the_cap_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec(dir.path(), 1000, 3);
        let mut file = RotatingFile::open(spec.clone()).expect("open");
        file.write_all(&line(0, 300)).expect("write");
        file.write_all(&line(1, 2500)).expect("write");
        file.write_all(&line(2, 300)).expect("write");
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
        file.write_all(&line(2, 300)).expect("write");
        let text = std::fs::read_to_string(&spec.path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(serde_json::from_str::<serde_json::Value>(lines[1]).is_err());
        assert!(lines[2].starts_with("{\"seq\":2,"), "{}", lines[2]);
        // 701 bytes: the next 300 pass the 1000, so this run's first rotation happens, and
        // takes the files a larger keep left.
        file.write_all(&line(3, 300)).expect("write");
        assert_eq!(seqs(&spec.path), [3]);
        assert!(dir.path().join("out.jsonl.1").exists());
        assert!(!dir.path().join("out.jsonl.2").exists());
        assert!(!dir.path().join("out.jsonl.3").exists());
    }
}
