//! The event queue: every event numbered and kept on disk until the broker has acknowledged
//! it, so that events raised while the broker is away, or before a restart, are delivered
//! after it, in order.
//!
//! Two files under the state directory, per device:
//! - `<device>.events.jsonl`: one event per line, as published (with its `seq`), appended as
//!   it is raised;
//! - `<device>.acked`: the number of the last event the broker acknowledged (or that was
//!   dropped), replaced whole on each change. Lines up to it are dead; the events file is
//!   rewritten without them once they outnumber the live ones. When no new file can be made
//!   to replace either (no inodes left), both are written over in place, so the events file
//!   stays as bounded as the queue;
//! - `<device>.lock`: held while a run uses the queue.
//!
//! Bounded: past `capacity` events the oldest is dropped and counted. A disk that refuses a
//! write (full, read-only) costs the persistence, not the event: it stays in memory and goes
//! out when the broker is back, and the failure is counted and said once.

use super::schema;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// An event waiting for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    seq: u64,
    /// The event record's JSON, without `seq`.
    json: String,
    /// Acknowledged, waiting for the ones before it.
    acked: bool,
    /// Published before, on a connection lost before the acknowledgement.
    resent: bool,
}

/// The queue, in memory and on disk.
#[derive(Debug)]
pub struct EventQueue {
    events_path: PathBuf,
    acked_path: PathBuf,
    file: Option<File>,
    /// `<device>.lock`, held with an exclusive lock: two runs publishing as the same device
    /// from the same folder would corrupt each other's queue.
    _lock: File,
    /// Oldest first.
    entries: VecDeque<Entry>,
    /// Leading entries handed out on this connection (in flight, or acknowledged and waiting
    /// for one before them).
    sent: usize,
    /// Of those, the acknowledged ones.
    acked_waiting: usize,
    /// A write failed part-way: the file is rewritten whole before the next append, so no
    /// event is glued to a torn line.
    rewrite: bool,
    capacity: usize,
    next_seq: u64,
    /// The last event acknowledged or dropped: what `acked_path` says.
    acked_through: u64,
    /// Lines of the events file at or before `acked_through`.
    dead_lines: usize,
    dropped: u64,
    /// Writes the disk refused.
    unsaved: u64,
    /// What the last refused write said, until one succeeds again.
    disk_error: Option<String>,
}

/// Why the queue cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct QueueError {
    /// The file or folder.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// The fields of a queued line the queue reads back.
#[derive(serde::Deserialize)]
struct Line {
    seq: u64,
}

impl EventQueue {
    /// Opens (or creates) the queue of `device` in `dir`, with the events a previous run left
    /// unacknowledged. Unreadable lines are skipped and said in the returned warnings, as are
    /// events over `capacity` (dropped, and counted in [`dropped`](Self::dropped)).
    pub fn open(
        dir: &Path,
        device: &str,
        capacity: usize,
    ) -> Result<(Self, Vec<String>), QueueError> {
        std::fs::create_dir_all(dir).map_err(|source| QueueError {
            path: dir.to_owned(),
            source,
        })?;
        let events_path = dir.join(format!("{device}.events.jsonl"));
        let acked_path = dir.join(format!("{device}.acked"));
        let mut warnings = Vec::new();
        let acked_through = match std::fs::read_to_string(&acked_path) {
            // NULs: a padded number written in place whose data a power cut kept from the card.
            Ok(text) => match text
                .trim_matches(|c: char| c.is_whitespace() || c == '\0')
                .parse::<u64>()
            {
                Ok(n) => n,
                Err(_) => {
                    warnings.push(format!(
                        "{}: {:?} is not an event number; every queued event is sent again",
                        acked_path.display(),
                        text.chars().take(40).collect::<String>()
                    ));
                    0
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => {
                return Err(QueueError {
                    path: acked_path,
                    source,
                })
            }
        };
        let mut entries = VecDeque::new();
        let mut dead_lines = 0;
        let mut last_seq = acked_through;
        match std::fs::read(&events_path) {
            Ok(bytes) => {
                let mut bad = 0;
                for raw in bytes.split(|&b| b == b'\n') {
                    // NULs before a line: data a power cut kept from the card while the file's
                    // length had already grown; the line after them is whole.
                    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
                    let raw = &raw[start..];
                    if raw.is_empty() {
                        continue;
                    }
                    let parsed = std::str::from_utf8(raw).ok().and_then(|text| {
                        serde_json::from_str::<Line>(text)
                            .ok()
                            .map(|l| (l.seq, text))
                    });
                    match parsed {
                        Some((seq, _)) if seq <= acked_through => dead_lines += 1,
                        Some((seq, text)) if seq > last_seq => {
                            last_seq = seq;
                            entries.push_back(Entry {
                                seq,
                                json: strip_seq(text),
                                acked: false,
                                resent: true,
                            });
                        }
                        // A number not after the last: a line written twice, or a torn one.
                        _ => bad += 1,
                    }
                }
                if bad > 0 {
                    warnings.push(format!(
                        "{}: {bad} unreadable line{} skipped (a write cut short?)",
                        events_path.display(),
                        if bad == 1 { "" } else { "s" }
                    ));
                    dead_lines += bad;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(QueueError {
                    path: events_path,
                    source,
                })
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&events_path)
            .map_err(|source| QueueError {
                path: events_path.clone(),
                source,
            })?;
        // A file of its own: the events file is replaced whole when compacted.
        let lock_path = dir.join(format!("{device}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| QueueError {
                path: lock_path.clone(),
                source,
            })?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| QueueError {
                path: lock_path.clone(),
                source: std::io::Error::other(format!(
                    "in use by another lookout publishing as {device:?} ({e}); give each run its own [mqtt] device or state_dir"
                )),
            },
        )?;
        // Made now, while files can be made: when later none can (no inodes left), the number
        // is written over in place, which needs the file to exist.
        if !acked_path.exists() {
            let tmp = acked_path.with_extension("acked.part");
            let _ = std::fs::write(&tmp, format!("{acked_through}\n"))
                .and_then(|()| std::fs::rename(&tmp, &acked_path));
        }
        let mut queue = Self {
            events_path,
            acked_path,
            file: Some(file),
            _lock: lock,
            sent: 0,
            acked_waiting: 0,
            rewrite: false,
            entries,
            capacity: capacity.max(1),
            next_seq: last_seq + 1,
            acked_through,
            dead_lines,
            dropped: 0,
            unsaved: 0,
            disk_error: None,
        };
        // A torn last line (power cut mid-write) gets its own line ending, so the next event is
        // not glued to it: until a compaction has done that, events are not appended.
        if !queue.entries.is_empty() || queue.dead_lines > 0 {
            queue.rewrite = true;
            queue.compact();
        }
        let over = queue.entries.len().saturating_sub(queue.capacity);
        if over > 0 {
            warnings.push(format!(
                "{} events from before, {over} more than queue_events = {}: the oldest are dropped",
                queue.entries.len(),
                queue.capacity
            ));
            for _ in 0..over {
                queue.drop_oldest();
            }
        }
        Ok((queue, warnings))
    }

    /// Numbers an event, keeps it, and returns its number. The oldest goes when the queue is
    /// full.
    pub fn push(&mut self, json: String) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push_back(Entry {
            seq,
            json,
            acked: false,
            resent: false,
        });
        if self.rewrite {
            self.compact();
        } else if let Some(entry) = self.entries.back() {
            let mut line = schema::event_payload(seq, false, &entry.json);
            line.push('\n');
            // Synced: an event can be published within milliseconds, and a line lost to a power
            // cut before the card had it would let the next run give its number to another.
            // Events come a few a second at most (zones in a busy scene), and the sync costs
            // this link thread, not the frame loop.
            let written = match self.file.as_mut() {
                Some(file) => file
                    .write_all(line.as_bytes())
                    .and_then(|()| file.sync_data()),
                None => Err(std::io::Error::other("the events file is not open")),
            }
            .map_err(|e| at(&self.events_path, e));
            self.rewrite = written.is_err();
            self.note_disk(written);
        }
        while self.entries.len() > self.capacity {
            self.drop_oldest();
        }
        seq
    }

    /// The next event to publish, as its payload, marked in flight; none while `window` are
    /// in flight already.
    pub fn next_to_send(&mut self, window: usize) -> Option<(u64, String)> {
        // Acknowledged entries behind an unacknowledged one are not sent again.
        while self.entries.get(self.sent).is_some_and(|e| e.acked) {
            self.sent += 1;
            self.acked_waiting += 1;
        }
        if self.sent - self.acked_waiting >= window {
            return None;
        }
        let entry = self.entries.get(self.sent)?;
        self.sent += 1;
        Some((
            entry.seq,
            schema::event_payload(entry.seq, entry.resent, &entry.json),
        ))
    }

    /// The last event [`next_to_send`](Self::next_to_send) gave could not be handed on: it is
    /// the next one again.
    pub fn unsend(&mut self, seq: u64) {
        if self.sent > 0
            && self
                .entries
                .get(self.sent - 1)
                .is_some_and(|e| e.seq == seq)
        {
            self.sent -= 1;
        }
    }

    /// Whether an event waits to be published on this connection.
    pub fn has_unsent(&self) -> bool {
        self.entries.len() > self.sent
    }

    /// The broker acknowledged event `seq`.
    pub fn ack(&mut self, seq: u64) {
        if let Some(entry) = self
            .entries
            .iter_mut()
            .take(self.sent)
            .find(|e| e.seq == seq && !e.acked)
        {
            entry.acked = true;
            self.acked_waiting += 1;
        }
        let mut through = None;
        while self.entries.front().is_some_and(|e| e.acked) {
            through = self.entries.pop_front().map(|e| e.seq);
            self.sent -= 1;
            self.acked_waiting -= 1;
            self.dead_lines += 1;
        }
        if let Some(seq) = through {
            self.mark_acked(seq);
        }
    }

    /// The connection went: what was in flight goes again, marked resent, from the oldest.
    pub fn connection_lost(&mut self) {
        for entry in self.entries.iter_mut().take(self.sent).filter(|e| !e.acked) {
            entry.resent = true;
        }
        // Acknowledged entries behind a lost one stay acknowledged: sending skips them.
        self.sent = 0;
        self.acked_waiting = 0;
    }

    /// Events waiting (in flight included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes the disk refused.
    pub fn unsaved(&self) -> u64 {
        self.unsaved
    }

    fn drop_oldest(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            if self.sent > 0 {
                self.sent -= 1;
                if entry.acked {
                    self.acked_waiting -= 1;
                }
            }
            self.dropped += 1;
            self.dead_lines += 1;
            self.mark_acked(entry.seq);
        }
    }

    fn mark_acked(&mut self, seq: u64) {
        self.acked_through = seq;
        let tmp = self.acked_path.with_extension("acked.part");
        let written = std::fs::write(&tmp, format!("{seq}\n"))
            .and_then(|()| std::fs::rename(&tmp, &self.acked_path))
            .map_err(|e| at(&tmp, e))
            .or_else(|e| {
                overwrite_number(&self.acked_path, seq)
                    .map_err(|in_place| at(&self.acked_path, in_place))
                    .map_err(|in_place| std::io::Error::other(format!("{e}, then {in_place}")))
            });
        let saved = written.is_ok();
        self.note_disk(written);
        if !saved {
            // The file still says an older number: the events file keeps every line, so the
            // next run numbers on after the last of them, never reusing a number.
            return;
        }
        if self.entries.is_empty() {
            // Nothing live: the file starts over empty.
            let truncated = match self.file.as_mut() {
                Some(file) => file.set_len(0),
                None => Ok(()),
            };
            if truncated.is_ok() {
                self.dead_lines = 0;
            }
        } else if self.dead_lines > 256 && self.dead_lines > self.entries.len() {
            self.compact();
        }
    }

    /// Rewrites the events file with the live events only.
    fn compact(&mut self) {
        let tmp = self.events_path.with_extension("jsonl.part");
        let mut text = String::new();
        for e in &self.entries {
            text.push_str(&schema::event_payload(e.seq, false, &e.json));
            text.push('\n');
        }
        let replaced = std::fs::write(&tmp, &text)
            .and_then(|()| std::fs::rename(&tmp, &self.events_path))
            .map_err(|e| at(&tmp, e));
        if let Err(e) = replaced {
            // No new file can be made (no inodes left: thousands of samples on the card, or
            // something in the temporary file's way) while the old one can still be written:
            // it is rewritten in place, so it does not grow with every event for as long as
            // that lasts.
            match rewrite_in_place(&self.events_path, text.as_bytes()) {
                // Not noted as the disk working again: on a full disk this shrinks the file
                // while the next append still fails.
                Ok(()) => {
                    self.dead_lines = 0;
                    self.rewrite = false;
                    // An append handle on the same file writes after the live events.
                    if self.file.is_none() {
                        self.reopen();
                    }
                }
                Err((touched, in_place)) => {
                    // A write cut short leaves a torn line: rewritten again before the next
                    // event. One that never began leaves the file as it was.
                    self.rewrite |= touched;
                    let in_place = at(&self.events_path, in_place);
                    self.note_disk(Err(std::io::Error::other(format!("{e}, then {in_place}"))));
                }
            }
            return;
        }
        self.note_disk(Ok(()));
        self.dead_lines = 0;
        self.rewrite = false;
        self.reopen();
    }

    /// Opens the events file for appending, as it now is.
    fn reopen(&mut self) {
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.events_path)
            .map_err(|e| {
                let e = at(&self.events_path, e);
                self.note_disk(Err(e))
            })
            .ok();
    }

    /// Counts a refused write and says the first of a run of them (the error names its file),
    /// or says that writes work again.
    fn note_disk(&mut self, result: std::io::Result<()>) {
        match result {
            Ok(()) => {
                if self.disk_error.take().is_some() {
                    tracing::info!(
                        "MQTT event queue: {} writable again",
                        self.events_path.display()
                    );
                }
            }
            Err(e) => {
                self.unsaved += 1;
                if self.disk_error.is_none() {
                    tracing::warn!(
                        "MQTT event queue: {e}; events are kept in memory only until it is writable"
                    );
                }
                self.disk_error = Some(e.to_string());
            }
        }
    }
}

/// An I/O error with the file it happened to, for the log.
fn at(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Writes `seq` over the number in the existing file at `path`, for when no new file can be
/// made to replace it: one write of 21 bytes (the widest number, padded) at the start of a file
/// that never holds more, so the whole number lands in the file's first block at once. Synced,
/// so that it reaches the card before the events file is emptied after it: in place, nothing
/// else orders the two.
fn overwrite_number(path: &Path, seq: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    // Not created: making a file is what just failed.
    let file = OpenOptions::new().write(true).open(path)?;
    file.write_all_at(format!("{seq:<20}\n").as_bytes(), 0)?;
    file.sync_data()
}

/// Writes `text` over the file at `path` from its start, syncs it, and only then cuts off what
/// is left after it: until the new text is on the card, the old lines (the newest number among
/// them) are too, so a power cut does not let the next run number events again from an older
/// one; a torn line between the two is skipped when the queue is read back. (When the new text
/// ends within the old copy of its last line, a power cut before the sync can tear both: only
/// then, in this fallback alone, may a number be given twice.) The error says whether the file
/// was touched.
fn rewrite_in_place(path: &Path, text: &[u8]) -> Result<(), (bool, std::io::Error)> {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| (false, e))?;
    file.write_all_at(text, 0).map_err(|e| (true, e))?;
    file.sync_data().map_err(|e| (true, e))?;
    file.set_len(text.len() as u64).map_err(|e| (true, e))
}

/// A queued line without its `"seq":N,` (the queue adds it again when it publishes).
fn strip_seq(line: &str) -> String {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line) {
        Ok(mut map) => {
            map.remove("seq");
            map.remove("resent");
            serde_json::Value::Object(map).to_string()
        }
        Err(_) => "{}".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> String {
        format!("{{\"event\":\"e{n}\"}}")
    }

    fn seqs_sent(q: &mut EventQueue, window: usize) -> Vec<u64> {
        std::iter::from_fn(|| q.next_to_send(window).map(|(s, _)| s)).collect()
    }

    #[test]
    fn events_go_in_order_and_unacked_ones_again_after_a_lost_connection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut q, warnings) = EventQueue::open(dir.path(), "d", 100).expect("opens");
        assert!(warnings.is_empty());
        for n in 0..5 {
            q.push(event(n));
        }
        assert_eq!(seqs_sent(&mut q, 3), [1, 2, 3]);
        q.ack(1);
        q.ack(2);
        assert_eq!(seqs_sent(&mut q, 3), [4, 5]);
        q.connection_lost();
        let (seq, payload) = q.next_to_send(3).expect("again");
        assert_eq!(seq, 3);
        let v: serde_json::Value = serde_json::from_str(&payload).expect("json");
        assert_eq!(
            (v["seq"].as_u64(), v["resent"].as_bool()),
            (Some(3), Some(true))
        );
        assert_eq!(v["event"], "e2");
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn a_restart_sends_what_was_not_acknowledged_and_numbers_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut q, _) = EventQueue::open(dir.path(), "d", 100).expect("opens");
            for n in 0..4 {
                q.push(event(n));
            }
            seqs_sent(&mut q, 10);
            q.ack(1);
            q.ack(2);
        }
        let (mut q, warnings) = EventQueue::open(dir.path(), "d", 100).expect("reopens");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(q.len(), 2);
        assert_eq!(q.push(event(9)), 5);
        let sent: Vec<(u64, String)> = std::iter::from_fn(|| q.next_to_send(10)).collect();
        assert_eq!(sent.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4, 5]);
        // Events from the run before may have reached the broker without their ack.
        assert!(sent[0].1.contains("\"resent\":true"));
        assert!(!sent[2].1.contains("resent"));
        for s in 3..=5 {
            q.ack(s);
        }
        assert!(q.is_empty());
        // All acknowledged: the file is empty, the number goes on.
        let text = std::fs::read_to_string(dir.path().join("d.events.jsonl")).expect("file");
        assert_eq!(text, "");
        drop(q);
        let (mut q, _) = EventQueue::open(dir.path(), "d", 100).expect("reopens");
        assert_eq!(q.push(event(10)), 6);
    }

    #[test]
    fn a_second_run_on_the_same_queue_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_q, _) = EventQueue::open(dir.path(), "d", 10).expect("opens");
        let err = EventQueue::open(dir.path(), "d", 10).expect_err("locked");
        assert!(
            err.to_string().contains("in use by another lookout"),
            "{err}"
        );
        EventQueue::open(dir.path(), "other", 10).expect("another device opens");
    }

    #[test]
    fn an_event_acknowledged_behind_a_lost_one_is_not_sent_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut q, _) = EventQueue::open(dir.path(), "d", 10).expect("opens");
        for n in 0..4 {
            q.push(event(n));
        }
        assert_eq!(seqs_sent(&mut q, 10), [1, 2, 3, 4]);
        q.ack(2);
        q.connection_lost();
        assert_eq!(seqs_sent(&mut q, 10), [1, 3, 4]);
        q.ack(1);
        assert_eq!(q.len(), 2, "1 and 2 gone, in order");
        q.ack(3);
        q.ack(4);
        assert!(q.is_empty());
        // A publish that could not be handed on is the next again.
        q.push(event(5));
        let (seq, _) = q.next_to_send(10).expect("one");
        q.unsend(seq);
        assert!(q.has_unsent());
        assert_eq!(seqs_sent(&mut q, 10), [seq]);
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut q, _) = EventQueue::open(dir.path(), "d", 3).expect("opens");
        for n in 0..5 {
            q.push(event(n));
        }
        assert_eq!(q.dropped(), 2);
        assert_eq!(seqs_sent(&mut q, 10), [3, 4, 5]);
        drop(q);
        let (q, _) = EventQueue::open(dir.path(), "d", 3).expect("reopens");
        assert_eq!(q.len(), 3, "the dropped ones are not read back");
    }

    #[test]
    fn a_torn_line_is_skipped_with_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("d.events.jsonl"),
            "{\"seq\":1,\"event\":\"a\"}\n{\"seq\":2,\"eve",
        )
        .expect("file");
        let (mut q, warnings) = EventQueue::open(dir.path(), "d", 10).expect("opens");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("1 unreadable line skipped"));
        assert_eq!(q.len(), 1);
        assert_eq!(q.push(event(3)), 2);
        let text = std::fs::read_to_string(dir.path().join("d.events.jsonl")).expect("file");
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn a_disk_that_refuses_writes_keeps_the_events_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut q, _) = EventQueue::open(dir.path(), "d", 10).expect("opens");
        // /dev/full refuses every write with ENOSPC, as a full SD card does.
        q.file = OpenOptions::new().append(true).open("/dev/full").ok();
        assert!(q.file.is_some());
        q.push(event(0));
        assert_eq!(q.unsaved(), 1);
        assert_eq!(seqs_sent(&mut q, 10), [1]);
        // The next event rewrites the file whole: no line glued to a torn one.
        q.push(event(1));
        drop(q);
        let (q, warnings) = EventQueue::open(dir.path(), "d", 10).expect("reopens");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn when_no_new_file_can_be_made_both_files_are_written_in_place_and_stay_small() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut q, _) = EventQueue::open(dir.path(), "d", 100).expect("opens");
        // Something in the way of both temporary files from the start, before the first
        // acknowledgement: making a file fails, as it does on a card out of inodes, while the
        // existing files can still be written.
        std::fs::create_dir(dir.path().join("d.acked.part")).expect("dir");
        std::fs::create_dir(dir.path().join("d.events.jsonl.part")).expect("dir");
        q.push(event(0));
        seqs_sent(&mut q, 10);
        q.ack(1);
        // One event always waits, so the file is compacted rather than emptied.
        let events_file = dir.path().join("d.events.jsonl");
        let mut longest = 0;
        for n in 1..2000 {
            let seq = q.push(event(n));
            seqs_sent(&mut q, 10);
            q.ack(seq - 1);
            let lines = std::fs::read_to_string(&events_file)
                .expect("events")
                .lines()
                .count();
            longest = longest.max(lines);
        }
        assert!(longest <= 260, "the events file grew to {longest} lines");
        assert_eq!(q.unsaved(), 0, "every write landed");
        let acked = std::fs::read_to_string(dir.path().join("d.acked")).expect("acked");
        assert_eq!((acked.len(), acked.trim()), (21, "1999"));
        drop(q);
        // A restart reads both: the one unacknowledged event again, numbers going on.
        let (mut q, warnings) = EventQueue::open(dir.path(), "d", 100).expect("reopens");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(seqs_sent(&mut q, 10), [2000]);
        assert_eq!(q.push(event(9)), 2001);
    }

    #[test]
    fn nuls_a_power_cut_left_before_a_line_are_skipped_and_the_line_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("d.events.jsonl"),
            b"{\"seq\":1,\"event\":\"a\"}\n\0\0\0\0{\"seq\":2,\"event\":\"b\"}\n\0\0\0",
        )
        .expect("events");
        let (mut q, warnings) = EventQueue::open(dir.path(), "d", 10).expect("opens");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(seqs_sent(&mut q, 10), [1, 2]);
        assert_eq!(q.push(event(3)), 3);
    }

    #[test]
    fn a_number_whose_padding_a_power_cut_left_as_nuls_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The file grew to 21 bytes, but the data written in place never reached the card.
        std::fs::write(
            dir.path().join("d.acked"),
            b"5\n\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        )
        .expect("acked");
        std::fs::write(
            dir.path().join("d.events.jsonl"),
            "{\"seq\":5,\"event\":\"a\"}\n{\"seq\":6,\"event\":\"b\"}\n",
        )
        .expect("events");
        let (mut q, warnings) = EventQueue::open(dir.path(), "d", 10).expect("opens");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(seqs_sent(&mut q, 10), [6]);
        assert_eq!(q.push(event(7)), 7);
    }
}
