//! The event queue: every event numbered and kept on disk until the broker has acknowledged
//! it, so that events raised while the broker is away, or before a restart, are delivered
//! after it, in order.
//!
//! Two files under the state directory, per device:
//! - `<device>.events.jsonl`: one event per line, as published (with its `seq`), appended as
//!   it is raised;
//! - `<device>.acked`: the number of the last event the broker acknowledged (or that was
//!   dropped), replaced whole on each change. Lines up to it are dead; the events file is
//!   rewritten without them once they outnumber the live ones.
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
    /// Published on the current connection, not acknowledged yet.
    in_flight: bool,
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
    entries: VecDeque<Entry>,
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
    /// unacknowledged. Unreadable lines are skipped and counted in the returned warnings.
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
            Ok(text) => match text.trim().parse::<u64>() {
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
                for raw in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
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
                                in_flight: false,
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
        let mut queue = Self {
            events_path,
            acked_path,
            file: Some(file),
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
        // not glued to it.
        if !queue.entries.is_empty() || queue.dead_lines > 0 {
            queue.compact();
        }
        while queue.entries.len() > queue.capacity {
            queue.drop_oldest();
        }
        Ok((queue, warnings))
    }

    /// Numbers an event, keeps it, and returns its number. The oldest goes when the queue is
    /// full.
    pub fn push(&mut self, json: String) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut line = schema::event_payload(seq, false, &json);
        line.push('\n');
        let written = match self.file.as_mut() {
            Some(file) => file.write_all(line.as_bytes()),
            None => Err(std::io::Error::other("the events file is not open")),
        };
        self.note_disk(written);
        self.entries.push_back(Entry {
            seq,
            json,
            in_flight: false,
            acked: false,
            resent: false,
        });
        while self.entries.len() > self.capacity {
            self.drop_oldest();
        }
        seq
    }

    /// The next event to publish, as its payload, marked in flight; none while `window` are
    /// in flight already.
    pub fn next_to_send(&mut self, window: usize) -> Option<(u64, String)> {
        let in_flight = self
            .entries
            .iter()
            .filter(|e| e.in_flight && !e.acked)
            .count();
        if in_flight >= window {
            return None;
        }
        let entry = self.entries.iter_mut().find(|e| !e.in_flight && !e.acked)?;
        entry.in_flight = true;
        Some((
            entry.seq,
            schema::event_payload(entry.seq, entry.resent, &entry.json),
        ))
    }

    /// The broker acknowledged event `seq`.
    pub fn ack(&mut self, seq: u64) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.seq == seq) {
            entry.acked = true;
        }
        let mut through = None;
        while self.entries.front().is_some_and(|e| e.acked) {
            through = self.entries.pop_front().map(|e| e.seq);
            self.dead_lines += 1;
        }
        if let Some(seq) = through {
            self.mark_acked(seq);
        }
    }

    /// The connection went: what was in flight goes again, marked resent, from the oldest.
    pub fn connection_lost(&mut self) {
        for entry in self.entries.iter_mut().filter(|e| e.in_flight && !e.acked) {
            entry.in_flight = false;
            entry.resent = true;
        }
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
            self.dropped += 1;
            self.dead_lines += 1;
            self.mark_acked(entry.seq);
        }
    }

    fn mark_acked(&mut self, seq: u64) {
        self.acked_through = seq;
        let tmp = self.acked_path.with_extension("acked.part");
        let written = std::fs::write(&tmp, format!("{seq}\n"))
            .and_then(|()| std::fs::rename(&tmp, &self.acked_path));
        self.note_disk(written);
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
        let written =
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.events_path));
        let ok = written.is_ok();
        self.note_disk(written);
        if ok {
            self.dead_lines = 0;
            self.file = OpenOptions::new()
                .append(true)
                .open(&self.events_path)
                .map_err(|e| self.note_disk(Err(e)))
                .ok();
        }
    }

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
                        "MQTT event queue: {}: {e}; events are kept in memory only until it is writable",
                        self.events_path.display()
                    );
                }
                self.disk_error = Some(e.to_string());
            }
        }
    }
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
    }
}
