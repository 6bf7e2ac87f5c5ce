//! MQTT: results, events, counts and statistics published through an existing broker, Home
//! Assistant discovery, and the console's commands read from a topic.
//!
//! - [`schema`]: every topic and message, in one place.
//! - [`outbox`]: the event queue, numbered and kept on disk until acknowledged.
//! - [`link`]: the connection, on its own thread; the frame loop never waits for it.
//!
//! A run gets two parts from [`open`]: the [`MqttSink`], which decides what of each record is
//! published (results by `[mqtt] results`, counts on change, stats on time) and hands it to the
//! link, and the [`MqttSteering`], which runs commands from `<prefix>/<device>/set` between
//! frames through the serial console's parser and answers on `reply`.

pub mod link;
pub mod outbox;
pub mod schema;

use crate::board::{Board, MqttConfig, MqttUrl, ResultsPolicy};
use crate::lifecycle::reload::ModelControl;
use crate::pipeline::{RunControl, Steering};
use crate::results::console::{Console, ConsoleInfo, ConsolePort};
use crate::results::record::{EventRecord, FrameRecord};
use crate::results::sink::{Sink, SinkError};
use link::{LinkHandle, LinkSettings, ToLink};
use schema::{LatencyTotals, Topics};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Why MQTT cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The `--sink` text or `[mqtt] url` is not an MQTT address.
    #[error("MQTT sink {spec:?}: {message}")]
    Spec {
        /// What was given.
        spec: String,
        /// What is wrong.
        message: String,
    },
    /// A file named by `[mqtt]` (credentials, certificate authorities) cannot be used.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The event queue's folder or files.
    #[error("MQTT event queue: {0}")]
    Queue(#[from] outbox::QueueError),
    /// The link thread could not start.
    #[error("MQTT: starting its thread: {0}")]
    Thread(std::io::Error),
}

/// Where a run's MQTT goes and what it publishes: the address with the board's `[mqtt]`.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// Broker and prefix.
    pub url: MqttUrl,
    /// The device name in topics.
    pub device: String,
    /// The board's table.
    pub config: MqttConfig,
}

impl MqttSettings {
    /// Reads `--sink mqtt` (the board's `[mqtt] url`) or `--sink mqtt://...` with the board's
    /// `[mqtt]` for the rest.
    pub fn parse(spec: &str, config: &MqttConfig) -> Result<Self, MqttError> {
        let fail = |message: String| MqttError::Spec {
            spec: spec.to_owned(),
            message,
        };
        let text = if spec == "mqtt" {
            config.url.clone().ok_or_else(|| {
                fail("no address: give mqtt://HOST[:PORT][/PREFIX], or set [mqtt] url in the board profile".into())
            })?
        } else {
            spec.to_owned()
        };
        let url = MqttUrl::parse(&text).map_err(fail)?;
        let device = match &config.device {
            Some(d) => d.clone(),
            None => host_device_name(),
        };
        crate::board::mqtt::check_device(&device)
            .map_err(|e| fail(format!("device name {e} (set [mqtt] device)")))?;
        Ok(Self {
            url,
            device,
            config: config.clone(),
        })
    }

    /// The topics.
    pub fn topics(&self) -> Topics {
        Topics::new(
            &self.url.prefix,
            &self.device,
            &self.config.discovery_prefix,
        )
    }
}

/// The host name as a device name: letters, digits, `-` and `_`, others turned to `_`.
fn host_device_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "lookout".into()
    } else {
        name
    }
}

/// Reads a credentials file: the user name on the first line, the password on the second.
fn read_credentials(path: &Path) -> Result<(String, String), MqttError> {
    let fail = |message: String| MqttError::File {
        path: path.to_owned(),
        message,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read credentials: {e}")))?;
    let mut lines = text.lines();
    let user = lines.next().unwrap_or("").trim_end_matches('\r');
    let password = lines.next().unwrap_or("").trim_end_matches('\r');
    if user.is_empty() {
        return Err(fail(
            "no user name: the first line is the user name, the second the password".into(),
        ));
    }
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(
                "{}: anyone on this board can read the MQTT password (chmod 640 it)",
                path.display()
            );
        }
    }
    Ok((user.to_owned(), password.to_owned()))
}

/// The certificate authorities for `mqtts://`: the board's `ca_file`, else the system's.
fn read_authorities(config: &MqttConfig) -> Result<Vec<u8>, MqttError> {
    let path = config
        .ca_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let fail = |message: String| MqttError::File {
        path: path.clone(),
        message,
    };
    let pem = std::fs::read(&path).map_err(|e| {
        fail(format!(
            "cannot read the certificate authorities for mqtts:// ({e}); set [mqtt] ca_file"
        ))
    })?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(fail(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(pem)
}

/// Largest message lookout takes from the broker: room for a 1 MB command to be answered
/// with an error rather than to end the connection.
const MAX_INCOMING: usize = 2 << 20;
/// Largest message lookout sends (a snapshot of a big frame).
const MAX_OUTGOING: usize = 16 << 20;

/// The rumqttc options of every connection.
fn options(settings: &MqttSettings) -> Result<(rumqttc::MqttOptions, Option<String>), MqttError> {
    let topics = settings.topics();
    // A suffix of its own per run: two boards left with the same host name would otherwise
    // take the connection from each other in turn, forever.
    let mut options = rumqttc::MqttOptions::new(
        format!("lookout-{}-{:08x}", settings.device, fastrand::u32(..)),
        settings.url.host.clone(),
        settings.url.port,
    );
    options
        .set_keep_alive(Duration::from_secs(settings.config.keep_alive_s))
        .set_clean_session(true)
        .set_max_packet_size(MAX_INCOMING, MAX_OUTGOING)
        .set_last_will(rumqttc::LastWill::new(
            topics.status(),
            schema::OFFLINE,
            rumqttc::QoS::AtLeastOnce,
            true,
        ));
    let mut from = None;
    if let Some(path) = &settings.config.credentials_file {
        let (user, password) = read_credentials(path)?;
        options.set_credentials(user, password);
        from = Some(path.display().to_string());
    }
    if settings.url.tls {
        let ca = read_authorities(&settings.config)?;
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            },
        ));
    }
    Ok((options, from))
}

/// Opens MQTT for a run: the sink and the steering that reads commands. `labels` are the
/// model's, for counts and discovery; `snapshot_dir` and `model` are the console's.
pub fn open(
    spec: &str,
    board: &Board,
    labels: &[String],
    info: ConsoleInfo,
    snapshot_dir: &Path,
    model: &ModelControl,
) -> Result<(MqttSink, MqttSteering), MqttError> {
    let settings = MqttSettings::parse(spec, &board.mqtt)?;
    let topics = settings.topics();
    let (options, credentials_from) = options(&settings)?;
    let (queue, warnings) = outbox::EventQueue::open(
        &settings.config.state_dir,
        &settings.device,
        settings.config.queue_events,
    )?;
    for warning in warnings {
        tracing::warn!("MQTT event queue: {warning}");
    }
    if !queue.is_empty() {
        tracing::info!(
            "MQTT: {} event{} from before wait for the broker",
            queue.len(),
            if queue.len() == 1 { "" } else { "s" }
        );
    }
    let discovery = if !settings.config.discovery {
        Vec::new()
    } else if labels.len() > schema::MAX_DISCOVERY_LABELS {
        tracing::warn!(
            "MQTT: the model has {} labels; Home Assistant discovery is published for at most {} (none now); `counts` still has them all",
            labels.len(),
            schema::MAX_DISCOVERY_LABELS
        );
        Vec::new()
    } else {
        schema::discovery_configs(
            &topics,
            labels,
            &schema::DeviceInfo {
                board: board.name.clone(),
            },
        )
    };
    let (commands_tx, commands_rx) = mpsc::sync_channel(COMMANDS_WAITING);
    let link = LinkHandle::start(
        LinkSettings {
            options,
            topics: topics.clone(),
            discovery,
            commands: settings.config.commands,
            credentials_from,
            broker: settings.url.to_string(),
        },
        queue,
        commands_tx,
    )
    .map_err(MqttError::Thread)?;
    tracing::info!(
        "MQTT: publishing to {} as {} (results: {:?}, commands {})",
        settings.url,
        settings.device,
        settings.config.results,
        if settings.config.commands {
            "on"
        } else {
            "off"
        }
    );
    let drift = Rc::new(RefCell::new(BTreeMap::new()));
    let console = settings.config.commands.then(|| {
        Console::new(
            MqttPort {
                commands: commands_rx,
                link: link.sender(),
                topics: topics.clone(),
            },
            snapshot_dir.to_owned(),
            info,
            model.clone(),
        )
    });
    let now = Instant::now();
    let config = &settings.config;
    let sink = MqttSink {
        topics,
        labels: labels.to_vec(),
        policy: config.results,
        interval: Duration::from_millis(config.results_interval_ms),
        results: Gate::default(),
        counts: Gate::default(),
        stats_every: (config.stats_interval_s > 0)
            .then(|| Duration::from_secs(config.stats_interval_s)),
        stats_due: now
            .checked_add(Duration::from_secs(config.stats_interval_s))
            .unwrap_or(now),
        stats_since: now,
        started: now,
        latency: LatencyTotals::default(),
        frames: 0,
        model: String::new(),
        drift: drift.clone(),
        link,
    };
    let steering = MqttSteering {
        console,
        drift,
        drift_read: None,
    };
    Ok((sink, steering))
}

/// What was last published on one topic, and what waits for its time.
#[derive(Debug, Default)]
struct Gate<K> {
    sent_at: Option<Instant>,
    sent: Option<K>,
    /// A change that came before the interval was up: the latest one.
    waiting: Option<(K, Vec<u8>)>,
}

impl<K: PartialEq> Gate<K> {
    /// Whether the interval since the last publish is up.
    fn due(&self, now: Instant, interval: Duration) -> bool {
        self.sent_at
            .is_none_or(|at| now.duration_since(at) >= interval)
    }

    fn sent(&mut self, now: Instant, key: K) {
        self.sent_at = Some(now);
        self.sent = Some(key);
        self.waiting = None;
    }
}

/// The results, counts and stats of a run, published through the link.
pub struct MqttSink {
    topics: Topics,
    labels: Vec<String>,
    policy: ResultsPolicy,
    interval: Duration,
    results: Gate<(Vec<u32>, Vec<usize>)>,
    counts: Gate<Vec<u32>>,
    stats_every: Option<Duration>,
    stats_due: Instant,
    stats_since: Instant,
    started: Instant,
    latency: LatencyTotals,
    frames: u64,
    model: String,
    /// Drift PSI per statistic, as the steering last read it.
    drift: Rc<RefCell<BTreeMap<String, f64>>>,
    link: LinkHandle,
}

impl MqttSink {
    /// Objects of each label in `record`, by label index (labels a model does not list are
    /// not counted).
    fn counts_by_label(&self, record: &FrameRecord) -> Vec<u32> {
        let mut counts = vec![0u32; self.labels.len()];
        if let Some(detections) = &record.detections {
            for d in detections {
                if let Some(c) = counts.get_mut(d.label_id) {
                    *c += 1;
                }
            }
        } else if let Some(top) = record.classes.as_ref().and_then(|c| c.first()) {
            if let Some(c) = counts.get_mut(top.label_id) {
                *c += 1;
            }
        }
        counts
    }

    fn publish(&self, topic: String, payload: Vec<u8>, at_least_once: bool, retain: bool) {
        self.link.send(ToLink::Publish {
            results: topic == self.topics.results(),
            topic,
            payload,
            at_least_once,
            retain,
            keep: retain,
        });
    }

    fn counts_payload(&self, counts: &[u32]) -> Vec<u8> {
        let named: BTreeMap<String, u32> = self
            .labels
            .iter()
            .cloned()
            .zip(counts.iter().copied())
            .collect();
        schema::counts_payload(&named)
    }

    /// Publishes what waited for its interval, and the stats when due.
    fn tick(&mut self, now: Instant) {
        if self.results.waiting.is_some() && self.results.due(now, self.interval) {
            if let Some((key, payload)) = self.results.waiting.take() {
                self.publish(self.topics.results(), payload, false, false);
                self.results.sent(now, key);
            }
        }
        if self.counts.waiting.is_some() && self.counts.due(now, self.interval) {
            if let Some((key, payload)) = self.counts.waiting.take() {
                self.publish(self.topics.counts(), payload, true, true);
                self.counts.sent(now, key);
            }
        }
        if let Some(every) = self.stats_every {
            if now >= self.stats_due {
                self.publish_stats(now);
                self.stats_due = now.checked_add(every).unwrap_or(now);
            }
        }
    }

    fn publish_stats(&mut self, now: Instant) {
        let span = now.duration_since(self.stats_since).as_secs_f64();
        let stats = schema::Stats {
            timestamp: crate::results::record::format_timestamp(std::time::SystemTime::now()),
            uptime_s: (now.duration_since(self.started).as_secs_f64() * 10.0).round() / 10.0,
            model: self.model.clone(),
            frames: self.frames,
            fps: if span > 0.0 {
                ((self.latency.frames() as f64 / span) * 100.0).round() / 100.0
            } else {
                0.0
            },
            latency_ms: self.latency.summary(),
            // The link's counters, filled in by the link as it publishes.
            results_published: 0,
            results_dropped: 0,
            events_queued: 0,
            events_dropped: 0,
            reconnects: 0,
            drift_psi: self.drift.borrow().clone(),
        };
        self.link.send(ToLink::Stats(Box::new(stats)));
        self.latency = LatencyTotals::default();
        self.stats_since = now;
    }
}

impl Sink for MqttSink {
    fn emit(&mut self, record: &FrameRecord) -> Result<(), SinkError> {
        let now = Instant::now();
        self.frames += 1;
        self.latency.add(&record.latency_ms);
        if self.model != record.model {
            self.model.clone_from(&record.model);
        }
        let counts = self.counts_by_label(record);
        if self.counts.sent.as_ref() != Some(&counts) {
            let payload = self.counts_payload(&counts);
            if self.counts.due(now, self.interval) {
                self.publish(self.topics.counts(), payload, true, true);
                self.counts.sent(now, counts.clone());
            } else {
                self.counts.waiting = Some((counts.clone(), payload));
            }
        } else {
            // Back to what was published: nothing waits.
            self.counts.waiting = None;
        }
        match self.policy {
            ResultsPolicy::Off => {}
            ResultsPolicy::Every | ResultsPolicy::Change => {
                let zones: Vec<usize> = record
                    .zones
                    .as_ref()
                    .map(|z| z.iter().map(|z| z.count).collect())
                    .unwrap_or_default();
                let key = (counts, zones);
                let changed = self.results.sent.as_ref() != Some(&key);
                if self.policy == ResultsPolicy::Every || changed {
                    let payload = schema::results_payload(record);
                    if self.results.due(now, self.interval) {
                        self.publish(self.topics.results(), payload, false, false);
                        self.results.sent(now, key);
                    } else {
                        self.results.waiting = Some((key, payload));
                    }
                } else {
                    self.results.waiting = None;
                }
            }
        }
        self.tick(now);
        Ok(())
    }

    fn event(&mut self, event: &EventRecord) -> Result<(), SinkError> {
        self.link.send(ToLink::Event(Box::new(event.clone())));
        Ok(())
    }

    fn idle(&mut self) -> Result<(), SinkError> {
        self.tick(Instant::now());
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        // The last change that waited for its interval still goes out.
        let now = Instant::now();
        if let Some((key, payload)) = self.results.waiting.take() {
            self.publish(self.topics.results(), payload, false, false);
            self.results.sent(now, key);
        }
        if let Some((key, payload)) = self.counts.waiting.take() {
            self.publish(self.topics.counts(), payload, true, true);
            self.counts.sent(now, key);
        }
        // The last stats cover the run to its end.
        if self.stats_every.is_some() && self.latency.frames() > 0 {
            self.publish_stats(now);
        }
        self.link.finish();
        Ok(())
    }
}

/// The console's port on MQTT: a command per message on `set`, replies on `reply`, snapshots
/// as JPEG on `snapshot`.
pub struct MqttPort {
    commands: mpsc::Receiver<Vec<u8>>,
    link: link::LinkSender,
    topics: Topics,
}

impl ConsolePort for MqttPort {
    fn read_input(&mut self, input: &mut Vec<u8>) {
        // A few a frame: a burst of commands waits (bounded by the channel) rather than stall
        // one frame.
        for _ in 0..COMMANDS_PER_FRAME {
            let Ok(command) = self.commands.try_recv() else {
                break;
            };
            command_line(&command, input);
        }
    }

    fn write_reply(&mut self, text: &str) {
        self.link.send(ToLink::Publish {
            topic: self.topics.reply(),
            payload: text.as_bytes().to_vec(),
            at_least_once: true,
            retain: false,
            keep: false,
            results: false,
        });
    }

    fn snapshot(&mut self, frame: &crate::frames::source::Frame) -> Option<Result<String, String>> {
        let mut jpeg = Vec::new();
        let encoded = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
            .encode_image(&frame.image)
            .map_err(|e| format!("snapshot: encoding JPEG: {e}"));
        Some(encoded.and_then(|()| {
            let bytes = jpeg.len();
            if self.link.send(ToLink::Publish {
                topic: self.topics.snapshot(),
                payload: jpeg,
                at_least_once: false,
                retain: false,
                keep: false,
                results: false,
            }) {
                Ok(format!(
                    "snapshot of {} ({bytes} bytes of JPEG) on {}",
                    frame.id,
                    self.topics.snapshot()
                ))
            } else {
                Err("snapshot: the MQTT link is busy; try again".into())
            }
        }))
    }
}

/// Appends a command message's payload to the console's input as one line: line ends inside
/// it are spaces, so a message is one command and gets one reply.
pub fn command_line(payload: &[u8], input: &mut Vec<u8>) {
    input.extend(payload.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
    input.push(b'\n');
}

/// Commands received and not yet run at most; past this the link answers that it is busy.
const COMMANDS_WAITING: usize = 16;
/// Commands run between two frames at most.
const COMMANDS_PER_FRAME: usize = 4;

/// How often the drift PSI shown in `stats` is read from the pipeline.
const DRIFT_READ_EVERY: Duration = Duration::from_secs(1);

/// MQTT's part in steering a run: commands from `set` (when the board allows them) and the
/// drift figures for `stats`.
pub struct MqttSteering {
    console: Option<Console<MqttPort>>,
    drift: Rc<RefCell<BTreeMap<String, f64>>>,
    drift_read: Option<Instant>,
}

impl Steering for MqttSteering {
    fn between_frames(&mut self, control: RunControl<'_>) {
        let now = Instant::now();
        if self
            .drift_read
            .is_none_or(|at| now.duration_since(at) >= DRIFT_READ_EVERY)
        {
            self.drift_read = Some(now);
            if let Some(drift) = control.pipeline.drift() {
                let mut psi = self.drift.borrow_mut();
                for watch in drift.watches() {
                    if let Some(p) = watch.psi {
                        psi.insert(watch.stat.name().to_owned(), (p * 1e4).round() / 1e4);
                    }
                }
            }
        }
        if let Some(console) = self.console.as_mut() {
            console.between_frames(control);
        }
    }
}
