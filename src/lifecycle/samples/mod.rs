//! Sample collection for retraining: frames kept as JPEG with the model's predictions as labels
//! to review, chosen by policy, in a store that never fills the disk.
//!
//! Policy (the board profile's `[samples]`): a frame is kept when something was reported with
//! a score under `low_confidence` (the model was unsure), one in `drift_every` while a
//! statistic drifts ([`crate::lifecycle::drift`]), and one in `every_n` at random; never more than
//! `max_per_minute`. Frames are encoded and written on a thread of their own. When it falls
//! behind, what happens to a chosen frame depends on the source ([`WhenBusy`]): from a live
//! camera it is dropped and counted, so a slow card never holds up inference (the camera would
//! drop frames instead); from files the frame loop waits for the writer, since a file never
//! goes stale and nothing is gained by losing a sample of it.
//!
//! Layout, per model (`name@version`), the one `lookout eval` reads:
//!
//! ```text
//! <dir>/<name>@<version>/labels.txt                          detectors: class names
//! <dir>/<name>@<version>/<time>_<seq>_<reason>.jpg           the frame as captured
//! <dir>/<name>@<version>/<time>_<seq>_<reason>.txt           YOLO: class cx cy w h, normalised
//! <dir>/<name>@<version>/<label>/<time>_<seq>_<reason>.jpg   classifiers: folder of the top class
//! ```
//!
//! `<reason>` is `low`, `drift` or `random`. The store's byte cap counts every file and evicts
//! the oldest samples first ([`store`]); below `min_free_bytes` of free space, or on a write
//! error (a full disk), collection stops with a `samples_stopped` event, inference goes on, and
//! it is tried again a minute later (`samples_resumed` when it works). The frames chosen in
//! that minute are counted as not kept, as are the one whose write failed and any that cannot
//! be encoded or are larger than the whole store.

pub mod export;
pub mod store;

pub use crate::board::SamplesConfig;

use crate::frames::source::Frame;
use crate::results::record::{format_timestamp, EventRecord, FrameRecord};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SendError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use store::{NewSample, Store, StoreError};

/// After collection stopped, how long until it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Frames waiting for the writer at most; more are dropped and counted.
const QUEUE: usize = 4;

/// What the collector does with a chosen frame while the writer is still busy with the ones
/// before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenBusy {
    /// Drop it and count it (`status`: "dropped busy"): a live camera must not wait for a slow
    /// card, or it would drop frames itself and detection would suffer for the samples.
    Drop,
    /// Wait until the writer takes it: frames from files wait for the loop, so keeping every
    /// sample chosen costs only time.
    Wait,
}

/// Why a frame is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Something was reported with a low score.
    Low,
    /// A statistic drifts.
    Drift,
    /// One in N at random.
    Random,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Reason::Low => "low",
            Reason::Drift => "drift",
            Reason::Random => "random",
        }
    }
}

/// Counters for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleStats {
    /// Samples written this run.
    pub saved: u64,
    /// Frames chosen but dropped because the writer was busy.
    pub dropped: u64,
    /// Frames the writer took but did not keep: the one whose write stopped collection, those
    /// chosen while it was stopped (until its retry), and any that could not be encoded or
    /// were larger than the whole store.
    pub not_kept: u64,
    /// Samples in the store.
    pub stored: usize,
    /// Bytes in the store.
    pub bytes: u64,
    /// Why collection is stopped, while it is.
    pub stopped: Option<String>,
}

/// Where the writer thread reports to the frame loop.
#[derive(Debug, Default)]
struct Shared {
    stats: SampleStats,
    events: Vec<EventRecord>,
}

/// A frame on its way to the writer.
struct Job {
    image: image::RgbImage,
    /// The model whose frame it is (`name@version`), its folder.
    model: String,
    /// Its class names, one per line, for a detector's YOLO label files.
    labels_text: Option<Arc<str>>,
    stem: String,
    folder: PathBuf,
    label: Option<String>,
}

/// Chooses frames and hands them to the writer thread.
pub struct Collector {
    config: SamplesConfig,
    model: String,
    labels: Vec<String>,
    labels_text: Option<Arc<str>>,
    sender: Option<SyncSender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
    rng: fastrand::Rng,
    when_busy: WhenBusy,
    /// Frames offered while drifting, for `drift_every`.
    drifting_frames: u64,
    /// Times of the samples of the last minute.
    recent: std::collections::VecDeque<Instant>,
    /// The time in the newest sample's name, in milliseconds since 1970 ([`NameClock`]).
    names: NameClock,
}

/// The times sample names carry, which must only grow: the store evicts by name, oldest
/// first, so a clock set back (NTP correcting a wrong clock at boot, a board without a
/// battery-backed clock) would otherwise make the new samples the first to go, and keep the
/// ones named in the clock's future. A frame captured at or before the newest name's time is
/// named one millisecond after it, until the clock passes it again.
#[derive(Debug, Default)]
struct NameClock {
    /// Milliseconds since 1970 in the newest name.
    newest: Option<u64>,
    /// The clock is a second or more behind the newest name (told once per such stretch).
    behind: bool,
}

impl NameClock {
    /// Starts after the newest name in the store, if it has one.
    fn after(stem: Option<&str>) -> Self {
        Self {
            newest: stem.and_then(stem_millis),
            behind: false,
        }
    }

    /// The time for a sample of a frame captured at `captured`.
    fn name_time(&mut self, captured: SystemTime) -> SystemTime {
        let captured = millis(captured);
        let time = match self.newest {
            Some(newest) if captured <= newest => {
                if newest - captured >= 1000 && !self.behind {
                    self.behind = true;
                    tracing::warn!(
                        "the clock is {:.1} s behind the newest sample's name: samples are named \
                         after it, so that the oldest are still evicted first",
                        (newest - captured) as f64 / 1000.0
                    );
                }
                newest + 1
            }
            _ => {
                if std::mem::take(&mut self.behind) {
                    tracing::info!("the clock has passed the newest sample's name again");
                }
                captured
            }
        };
        self.newest = Some(time);
        SystemTime::UNIX_EPOCH + Duration::from_millis(time)
    }
}

/// Milliseconds since 1970 (0 for a clock set before it).
fn millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The time a sample's name carries ([`file_time`]), in milliseconds since 1970.
fn stem_millis(stem: &str) -> Option<u64> {
    // 20261203T090102.345Z_000123_random
    let t = stem.split('_').next()?;
    if t.len() != 20 || !t.is_ascii() {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}",
        &t[0..4],
        &t[4..6],
        &t[6..8],
        &t[9..11],
        &t[11..13],
        &t[13..]
    );
    humantime::parse_rfc3339(&text).ok().map(millis)
}

impl Collector {
    /// Opens the store (creating it; cleaning what a crash left) and starts the writer for
    /// model `model` (`name@version`) with `labels`. Detectors get `labels.txt` and YOLO label
    /// files; classifiers a folder per label. `when_busy` says what a frame chosen while the
    /// writer is behind costs: itself, or the loop's time.
    pub fn start(
        config: SamplesConfig,
        model: String,
        labels: Vec<String>,
        detector: bool,
        when_busy: WhenBusy,
    ) -> Result<Self, StoreError> {
        let mut store = Store::open(&config.dir, config.max_bytes, config.min_free_bytes)?;
        let names = NameClock::after(store.newest_stem());
        let labels_text = labels_text(&labels, detector);
        if let Some(text) = &labels_text {
            // Without room for them now, the writer tries again before each sample.
            let _ = store.ensure_file(&PathBuf::from(&model), "labels.txt", text);
        }
        let shared = Arc::new(Mutex::new(Shared {
            stats: SampleStats {
                stored: store.len(),
                bytes: store.total_bytes(),
                ..SampleStats::default()
            },
            events: Vec::new(),
        }));
        let (sender, receiver) = sync_channel(QUEUE);
        let writer = {
            let shared = shared.clone();
            let quality = config.jpeg_quality;
            std::thread::Builder::new()
                .name("samples".into())
                .spawn(move || write_samples(receiver, store, shared, quality))
                .map_err(|source| StoreError::Io {
                    path: config.dir.clone(),
                    source,
                })?
        };
        Ok(Self {
            config,
            model,
            labels,
            labels_text,
            sender: Some(sender),
            writer: Some(writer),
            shared,
            rng: fastrand::Rng::new(),
            when_busy,
            drifting_frames: 0,
            recent: std::collections::VecDeque::new(),
            names,
        })
    }

    /// Files the samples of the frames to come under `model` (`name@version`) with its
    /// `labels`: the model that runs now, after a switch.
    pub fn follow(&mut self, model: &str, labels: &[String], detector: bool) {
        if self.model != model {
            self.model = model.to_owned();
            self.labels = labels.to_vec();
            self.labels_text = labels_text(labels, detector);
        }
    }

    /// Why `record`'s frame should be kept, if it should.
    fn reason(&mut self, record: &FrameRecord, drifting: bool) -> Option<Reason> {
        let c = &self.config;
        let scores = record
            .detections
            .iter()
            .flatten()
            .map(|d| d.score)
            .chain(record.classes.iter().flatten().take(1).map(|c| c.score));
        let unsure = c.low_confidence > 0.0 && scores.into_iter().any(|s| s < c.low_confidence);
        if drifting {
            self.drifting_frames += 1;
        }
        let drift_due = drifting
            && c.drift_every > 0
            && (self.drifting_frames - 1).is_multiple_of(c.drift_every);
        let random = c.every_n > 0 && self.rng.u64(0..c.every_n) == 0;
        if unsure {
            Some(Reason::Low)
        } else if drift_due {
            Some(Reason::Drift)
        } else if random {
            Some(Reason::Random)
        } else {
            None
        }
    }

    /// Offers one frame and what the model said; `drifting` when a statistic drifts. A chosen
    /// frame is queued for the writer; when the queue is full it is dropped and counted, or,
    /// with [`WhenBusy::Wait`], queued once the writer has taken the one before.
    pub fn offer(&mut self, frame: &Frame, record: &FrameRecord, drifting: bool) {
        let Some(reason) = self.reason(record, drifting) else {
            return;
        };
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.config.max_per_minute as usize {
            return;
        }
        let stem = format!(
            "{}_{:06}_{}",
            file_time(self.names.name_time(frame.captured_at)),
            record.seq,
            reason.name()
        );
        let (folder, label) = match (&record.detections, &record.classes) {
            (Some(dets), _) => {
                let (w, h) = (frame.image.width() as f32, frame.image.height() as f32);
                let text: String = dets
                    .iter()
                    .map(|d| {
                        let [x0, y0, x1, y1] = d.bbox;
                        format!(
                            "{} {:.6} {:.6} {:.6} {:.6}\n",
                            d.label_id,
                            (x0 + x1) / 2.0 / w,
                            (y0 + y1) / 2.0 / h,
                            (x1 - x0) / w,
                            (y1 - y0) / h
                        )
                    })
                    .collect();
                (PathBuf::from(&self.model), Some(text))
            }
            (None, Some(classes)) => {
                let top = classes
                    .first()
                    .and_then(|c| self.labels.get(c.label_id))
                    .map_or("unlabelled", String::as_str);
                (PathBuf::from(&self.model).join(top), None)
            }
            (None, None) => (PathBuf::from(&self.model), None),
        };
        let job = Job {
            image: frame.image.clone(),
            model: self.model.clone(),
            labels_text: self.labels_text.clone(),
            stem,
            folder,
            label,
        };
        let Some(sender) = &self.sender else { return };
        let sent = match self.when_busy {
            WhenBusy::Drop => sender.try_send(job),
            WhenBusy::Wait => sender
                .send(job)
                .map_err(|SendError(job)| TrySendError::Disconnected(job)),
        };
        match sent {
            Ok(()) => self.recent.push_back(now),
            Err(TrySendError::Full(_)) => self.lock().stats.dropped += 1,
            Err(TrySendError::Disconnected(_)) => self.sender = None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Events from the writer since the last call (`samples_stopped`, `samples_resumed`).
    pub fn take_events(&mut self) -> Vec<EventRecord> {
        std::mem::take(&mut self.lock().events)
    }

    /// The counters now.
    pub fn stats(&self) -> SampleStats {
        self.lock().stats.clone()
    }

    /// One line for the console's `status`.
    pub fn status(&self) -> String {
        let s = self.stats();
        format!(
            "samples: {} saved, {} dropped busy, {} not kept, {} in the store ({} of {} bytes){}",
            s.saved,
            s.dropped,
            s.not_kept,
            s.stored,
            s.bytes,
            self.config.max_bytes,
            s.stopped
                .map(|why| format!(", stopped: {why}"))
                .unwrap_or_default()
        )
    }

    /// Writes what is queued and stops the writer.
    pub fn finish(&mut self) {
        self.sender = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `2026-12-03T09:01:02.345Z` as `20261203T090102.345Z`: sortable, and valid in any file system.
fn file_time(time: SystemTime) -> String {
    format_timestamp(time).replace(['-', ':'], "")
}

/// A detector's class names, one per line, for its YOLO label files; `None` for a classifier.
fn labels_text(labels: &[String], detector: bool) -> Option<Arc<str>> {
    detector.then(|| {
        let mut text = labels.join("\n");
        text.push('\n');
        text.into()
    })
}

/// The writer thread: encodes and stores samples until the collector hangs up.
fn write_samples(
    receiver: Receiver<Job>,
    mut store: Store,
    shared: Arc<Mutex<Shared>>,
    quality: u8,
) {
    let lock = || shared.lock().unwrap_or_else(|p| p.into_inner());
    let mut retry_at: Option<Instant> = None;
    let mut jpeg = Vec::new();
    for job in receiver {
        if retry_at.is_some_and(|t| Instant::now() < t) {
            lock().stats.not_kept += 1;
            continue;
        }
        jpeg.clear();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality);
        if let Err(e) = job.image.write_with_encoder(encoder) {
            tracing::warn!("sample {}: JPEG encoding failed: {e}", job.stem);
            lock().stats.not_kept += 1;
            continue;
        }
        let model = &job.model;
        let bytes = jpeg.len() + job.label.as_ref().map_or(0, String::len);
        let stem = job.stem.clone();
        let saved = job
            .labels_text
            .as_deref()
            .map_or(Ok(()), |text| {
                store.ensure_file(&PathBuf::from(model), "labels.txt", text)
            })
            .and_then(|()| {
                store.save(&NewSample {
                    stem: job.stem,
                    folder: job.folder,
                    jpeg: &jpeg,
                    label: job.label,
                })
            });
        let mut shared = lock();
        match saved {
            Ok(()) => {
                // What a run wrote, in order, for whoever checks the store against it.
                tracing::debug!("sample {stem} kept: {bytes} bytes");
                shared.stats.saved += 1;
                if retry_at.take().is_some() {
                    shared.stats.stopped = None;
                    shared.events.push(EventRecord::now(
                        "samples_resumed",
                        model,
                        "sample collection works again".into(),
                    ));
                }
            }
            // One oversized frame says nothing about the next.
            Err(e @ StoreError::TooLarge { .. }) => {
                tracing::warn!("sample {stem} not kept: {e}");
                shared.stats.not_kept += 1;
            }
            Err(e) => {
                shared.stats.not_kept += 1;
                tracing::warn!("sample collection stopped: {e}");
                if retry_at.is_none() {
                    shared.events.push(EventRecord::now(
                        "samples_stopped",
                        model,
                        format!("{e}; inference goes on, collection retries in a minute"),
                    ));
                }
                shared.stats.stopped = Some(e.to_string());
                retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
        shared.stats.stored = store.len();
        shared.stats.bytes = store.total_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn names_carry_their_time_back_and_only_grow_when_the_clock_goes_back() {
        let stem = format!("{}_000123_random", file_time(at(1_764_750_062_345)));
        assert_eq!(stem, "20251203T082102.345Z_000123_random");
        assert_eq!(stem_millis(&stem), Some(1_764_750_062_345));
        assert_eq!(stem_millis("labels"), None);
        let mut names = NameClock::after(Some(&stem));
        // An hour behind the store's newest name, then the clock running on from there, then
        // past the newest name again.
        let given: Vec<u64> = [
            1_764_746_462_000,
            1_764_746_463_000,
            1_764_750_062_345,
            1_764_750_070_000,
        ]
        .into_iter()
        .map(|ms| millis(names.name_time(at(ms))))
        .collect();
        assert_eq!(
            given,
            [
                1_764_750_062_346,
                1_764_750_062_347,
                1_764_750_062_348,
                1_764_750_070_000
            ]
        );
        assert!(!names.behind);
    }

    /// The stems in the store under `dir`, sorted as the store evicts them (oldest first).
    fn stems(dir: &std::path::Path) -> Vec<String> {
        let mut files = Vec::new();
        store::collect_files(dir, &mut files).expect("files");
        let mut stems: Vec<String> = files
            .iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "jpg"))
            .map(|(p, _)| p.file_stem().expect("stem").to_string_lossy().into_owned())
            .collect();
        stems.sort();
        stems
    }

    #[test]
    fn after_the_clock_goes_back_the_oldest_samples_are_still_evicted_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = SamplesConfig {
            enabled: true,
            dir: dir.path().to_owned(),
            every_n: 1,
            max_per_minute: 1000,
            min_free_bytes: 0,
            ..SamplesConfig::default()
        };
        let frame = |seq: u64, ms: u64| Frame {
            id: format!("f{seq}"),
            captured_at: at(ms),
            image: image::RgbImage::from_pixel(8, 8, image::Rgb([seq as u8 * 40, 0, 0])),
        };
        let offer = |config: &SamplesConfig, frames: &[(u64, u64)]| {
            let mut collector = Collector::start(
                config.clone(),
                "m@1".into(),
                vec!["a".into()],
                true,
                WhenBusy::Wait,
            )
            .expect("store");
            for &(seq, ms) in frames {
                collector.offer(&frame(seq, ms), &FrameRecord::empty(seq), false);
            }
            collector.finish();
            collector.stats()
        };
        // One run with the clock right, then one after a restart with the clock an hour
        // behind (NTP not yet synchronised).
        let first = offer(&config, &[(0, 1_764_750_000_000), (1, 1_764_750_001_000)]);
        assert_eq!(first.saved, 2);
        let before = stems(dir.path());
        let second = offer(&config, &[(0, 1_764_746_400_000), (1, 1_764_746_401_000)]);
        assert_eq!(second.saved, 2);
        let all = stems(dir.path());
        assert_eq!(all.len(), 4);
        // The new samples sort after the old ones: the oldest first is still the first run's.
        assert_eq!(all[..2], before[..]);
        assert!(
            all[2].starts_with("20251203T082001.001Z_000000_"),
            "{all:?}"
        );
        assert!(
            all[3].starts_with("20251203T082001.002Z_000001_"),
            "{all:?}"
        );
        // A cap at what is there now: the next sample evicts the first run's oldest, not the
        // newest.
        let mut files = Vec::new();
        store::collect_files(dir.path(), &mut files).expect("files");
        let capped = SamplesConfig {
            max_bytes: files.iter().map(|(_, bytes)| bytes).sum(),
            ..config
        };
        assert_eq!(offer(&capped, &[(2, 1_764_746_402_000)]).saved, 1);
        let kept = stems(dir.path());
        assert!(!kept.contains(&all[0]), "{kept:?}");
        assert!(kept.contains(&all[2]) && kept.contains(&all[3]), "{kept:?}");
        let newest = kept.last().expect("a sample");
        assert!(
            newest.starts_with("20251203T082001.003Z_000002_"),
            "{kept:?}"
        );
    }

    #[test]
    fn frames_chosen_while_collection_is_stopped_are_counted_as_not_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let frame = |seq: u64| Frame {
            id: format!("f{seq}"),
            captured_at: at(1_764_750_000_000 + seq),
            image: image::RgbImage::from_pixel(8, 8, image::Rgb([seq as u8, 0, 0])),
        };
        let run = |config: SamplesConfig, frames: u64| {
            let mut collector =
                Collector::start(config, "m@1".into(), vec![], false, WhenBusy::Wait)
                    .expect("store");
            for seq in 0..frames {
                collector.offer(&frame(seq), &FrameRecord::empty(seq), false);
            }
            collector.finish();
            let events: Vec<String> = collector
                .take_events()
                .into_iter()
                .map(|e| e.event)
                .collect();
            (collector.stats(), events, collector.status())
        };
        let config = SamplesConfig {
            enabled: true,
            dir: dir.path().to_owned(),
            every_n: 1,
            max_per_minute: 1000,
            ..SamplesConfig::default()
        };
        // More free space asked for than any disk has: the first frame stops collection, the
        // rest come within the minute before its retry.
        let (stats, events, status) = run(
            SamplesConfig {
                min_free_bytes: u64::MAX / 4,
                ..config.clone()
            },
            5,
        );
        assert_eq!((stats.saved, stats.dropped, stats.not_kept), (0, 0, 5));
        assert!(stats.stopped.is_some(), "{stats:?}");
        assert_eq!(events, ["samples_stopped"]);
        assert!(
            status.contains("0 saved, 0 dropped busy, 5 not kept"),
            "{status}"
        );
        // A frame larger than the whole store is not kept, and collection goes on.
        let (stats, events, _) = run(
            SamplesConfig {
                min_free_bytes: 0,
                max_bytes: 16,
                ..config
            },
            2,
        );
        assert_eq!((stats.saved, stats.not_kept), (0, 2));
        assert!(stats.stopped.is_none() && events.is_empty(), "{stats:?}");
    }
}
