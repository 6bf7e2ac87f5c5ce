//! The web preview and API: a page with the live frames and the boxes drawn over them, the
//! last record, a stream of records and events, the console's `status` as JSON, Prometheus
//! metrics, and the console's commands for whoever holds the token.
//!
//! - [`server`]: the HTTP server on its own thread (routes, the token, the client limit).
//! - [`metrics`]: `/metrics`, in Prometheus' text format.
//!
//! A run gets two parts from [`open`], as with MQTT: the [`HttpSink`] keeps the last record,
//! counts, and passes records and events to whoever follows `/api/events`; the
//! [`HttpSteering`] reads the loop's figures for `/api/status` and `/metrics`, hands the last
//! frame to the preview's encoder while someone watches (and only then), and runs commands
//! from `POST /api/command`. Neither waits for the server: what they hand over is a lock held
//! for a copy, or a broadcast that drops what a slow client has not taken.

pub mod metrics;
pub mod server;

use crate::board::{Board, HttpConfig};
use crate::lifecycle::reload::ModelControl;
use crate::pipeline::{RunControl, Steering};
use crate::results::console::{Console, ConsoleInfo, ConsolePort};
use crate::results::record::{EventRecord, FrameRecord};
use crate::results::sink::{Sink, SinkError};
use image::RgbImage;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// `--http` or `[http] listen` is not an address.
    #[error("--http {given:?}: {message}")]
    Address {
        /// What was given.
        given: String,
        /// What is wrong.
        message: String,
    },
    /// The token file cannot be used.
    #[error("{path}: {message}")]
    Token {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The address cannot be listened on (in use, not this machine's, a port below 1024).
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A thread could not start.
    #[error("the HTTP server's thread: {0}")]
    Thread(std::io::Error),
}

/// Where the server listens and what it serves: `--http` with the board's `[http]`.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The address.
    pub listen: SocketAddr,
    /// The bearer token, when a file gives one.
    pub token: Option<String>,
    /// The board's table.
    pub config: HttpConfig,
}

impl HttpSettings {
    /// The settings of a run: `--http` (`Some(None)` for the board's address, `Some(Some(a))`
    /// for another) or the board's `[http] enabled`; `None` when the server is off.
    pub fn resolve(
        flag: Option<Option<&str>>,
        config: &HttpConfig,
    ) -> Result<Option<Self>, HttpError> {
        let given = match flag {
            None if !config.enabled => return Ok(None),
            None | Some(None) => config.listen.clone(),
            Some(Some(addr)) => addr.to_owned(),
        };
        let listen =
            crate::board::http::parse_listen(&given).map_err(|message| HttpError::Address {
                given: given.clone(),
                message,
            })?;
        let token = match &config.token_file {
            Some(path) => Some(read_token(path)?),
            None => None,
        };
        if token.is_none() && !listen.ip().is_loopback() {
            tracing::warn!(
                "HTTP on {listen} without [http] token_file: other machines get 401 for everything"
            );
        }
        Ok(Some(Self {
            listen,
            token,
            config: config.clone(),
        }))
    }
}

/// Reads a token file: its first line, at least 16 characters.
fn read_token(path: &Path) -> Result<String, HttpError> {
    let fail = |message: String| HttpError::Token {
        path: path.to_owned(),
        message,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read the token: {e}")))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.len() < 16 {
        return Err(fail(format!(
            "the token is {} characters; at least 16 (e.g. `openssl rand -hex 24 > {}`)",
            token.len(),
            path.display()
        )));
    }
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(fail("the token holds spaces or control characters".into()));
    }
    Ok(token)
}

/// One message of `/api/events`.
#[derive(Debug, Clone)]
pub struct FeedItem {
    /// `record`, `event` or `frame`.
    pub kind: &'static str,
    /// The JSON.
    pub json: Arc<str>,
}

/// The preview's last frame, as JPEG.
#[derive(Debug, Clone)]
pub struct PreviewFrame {
    /// The record's `seq`.
    pub seq: u64,
    /// The JPEG.
    pub jpeg: bytes::Bytes,
}

/// A frame waiting for the encoder.
struct RawFrame {
    seq: u64,
    image: RgbImage,
}

/// What the frame loop and the server share.
pub struct Shared {
    /// The last record.
    latest: Mutex<Option<FrameRecord>>,
    /// Records, events and preview frames for `/api/events`.
    feed: broadcast::Sender<FeedItem>,
    /// The last events, for a page that opens later.
    recent_events: Mutex<VecDeque<Arc<str>>>,
    /// Connections following `/api/events?frames=1`: while there are none, no frame is
    /// encoded.
    watchers: AtomicUsize,
    /// The frame for the encoder, and its signal.
    raw: Mutex<Option<RawFrame>>,
    raw_ready: Condvar,
    /// The encoder's last frame.
    preview: Mutex<Option<PreviewFrame>>,
    /// The console's `status`, as JSON, as last read.
    status: Mutex<Option<Arc<str>>>,
    /// The counters.
    metrics: Mutex<metrics::Metrics>,
    /// Connections open, refused, and being answered 503 now.
    clients: AtomicUsize,
    refused: AtomicU64,
    refusing: AtomicUsize,
    started: Instant,
    /// The run ended: the encoder stops.
    ended: std::sync::atomic::AtomicBool,
}

/// Events kept for a page that opens later.
const RECENT_EVENTS: usize = 50;
/// Items `/api/events` holds for a slow client before it skips ahead.
const FEED: usize = 256;

impl Shared {
    fn new() -> Self {
        Self {
            latest: Mutex::new(None),
            feed: broadcast::channel(FEED).0,
            recent_events: Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)),
            watchers: AtomicUsize::new(0),
            raw: Mutex::new(None),
            raw_ready: Condvar::new(),
            preview: Mutex::new(None),
            status: Mutex::new(None),
            metrics: Mutex::new(metrics::Metrics::default()),
            clients: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            refusing: AtomicUsize::new(0),
            started: Instant::now(),
            ended: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn broadcast(&self, kind: &'static str, json: String) {
        // Nobody following: nothing is sent (and nothing kept).
        if self.feed.receiver_count() > 0 {
            let _ = self.feed.send(FeedItem {
                kind,
                json: json.into(),
            });
        }
    }
}

/// Starts the server and the preview's encoder; returns the run's two parts.
pub fn open(
    settings: HttpSettings,
    board: &Board,
    info: ConsoleInfo,
    snapshot_dir: &Path,
    model: &ModelControl,
) -> Result<(HttpSink, HttpSteering), HttpError> {
    let shared = Arc::new(Shared::new());
    let (commands_tx, commands_rx) = mpsc::channel(COMMANDS_WAITING);
    let server = server::Server::start(&settings, shared.clone(), commands_tx)?;
    tracing::info!(
        "HTTP: serving the preview and API on http://{} ({})",
        server.addr(),
        if settings.token.is_some() {
            "a token is needed from other machines and for commands"
        } else {
            "this board only; no commands without [http] token_file"
        }
    );
    let encoder = {
        let shared = shared.clone();
        let config = settings.config.clone();
        std::thread::Builder::new()
            .name("http-preview".into())
            .spawn(move || encode_previews(&shared, &config))
            .map_err(HttpError::Thread)?
    };
    let console = Console::new(
        HttpPort {
            commands: commands_rx,
            waiting: VecDeque::new(),
        },
        snapshot_dir.to_owned(),
        info,
        model.clone(),
    );
    let _ = board;
    Ok((
        HttpSink {
            shared: shared.clone(),
            server: Some(server),
            encoder: Some(encoder),
        },
        HttpSteering {
            shared,
            console,
            every: Duration::from_secs_f64(1.0 / settings.config.preview_fps),
            last_preview: None,
            last_status: None,
            last_seq: None,
        },
    ))
}

/// The server without a run, its commands answered by `answer` on a thread of its own: for
/// the fuzz target of request handling ([`crate::fuzz`]), where the frame loop is not what is
/// tested. Serves until the returned server is dropped.
pub fn serve_alone(
    settings: &HttpSettings,
    answer: fn(&str) -> String,
) -> Result<server::Server, HttpError> {
    let (commands_tx, mut commands_rx) = mpsc::channel::<CommandRequest>(COMMANDS_WAITING);
    let server = server::Server::start(settings, Arc::new(Shared::new()), commands_tx)?;
    std::thread::Builder::new()
        .name("http-answers".into())
        .spawn(move || {
            // Ends when the server, the only sender, is gone.
            while let Some(request) = commands_rx.blocking_recv() {
                let _ = request.reply.send(answer(&request.line));
            }
        })
        .map_err(HttpError::Thread)?;
    Ok(server)
}

/// Encodes the frames the steering hands over, one at a time, while someone watches: scaled to
/// `preview_size`, as JPEG, then announced on the feed.
fn encode_previews(shared: &Shared, config: &HttpConfig) {
    loop {
        let raw = {
            let Ok(mut slot) = shared.raw.lock() else {
                return;
            };
            loop {
                if shared.ended.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(raw) = slot.take() {
                    break raw;
                }
                slot = match shared
                    .raw_ready
                    .wait_timeout(slot, Duration::from_millis(500))
                {
                    Ok((slot, _)) => slot,
                    Err(_) => return,
                };
            }
        };
        let (w, h) = raw.image.dimensions();
        let scale = (config.preview_size as f64 / w.max(h) as f64).min(1.0);
        let image = if scale < 1.0 {
            let (nw, nh) = (
                ((w as f64 * scale).round() as u32).max(1),
                ((h as f64 * scale).round() as u32).max(1),
            );
            image::imageops::resize(&raw.image, nw, nh, image::imageops::FilterType::Triangle)
        } else {
            raw.image
        };
        let mut jpeg = Vec::with_capacity(64 << 10);
        let encoded =
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, config.jpeg_quality)
                .encode_image(&image);
        if let Err(e) = encoded {
            tracing::warn!("HTTP preview: encoding frame {}: {e}", raw.seq);
            continue;
        }
        if let Ok(mut preview) = shared.preview.lock() {
            *preview = Some(PreviewFrame {
                seq: raw.seq,
                jpeg: jpeg.into(),
            });
        }
        shared.broadcast(
            "frame",
            format!(
                "{{\"seq\":{},\"width\":{},\"height\":{},\"scale\":{scale}}}",
                raw.seq,
                image.width(),
                image.height()
            ),
        );
    }
}

/// The records and events of a run, kept and passed on for HTTP.
pub struct HttpSink {
    shared: Arc<Shared>,
    server: Option<server::Server>,
    encoder: Option<std::thread::JoinHandle<()>>,
}

impl Sink for HttpSink {
    fn emit(&mut self, record: &FrameRecord) -> Result<(), SinkError> {
        if let Ok(mut m) = self.shared.metrics.lock() {
            m.record(record);
        }
        if self.shared.feed.receiver_count() > 0 {
            self.shared
                .broadcast("record", serde_json::to_string(record).unwrap_or_default());
        }
        if let Ok(mut latest) = self.shared.latest.lock() {
            match latest.as_mut() {
                Some(kept) => kept.clone_from(record),
                None => *latest = Some(record.clone()),
            }
        }
        Ok(())
    }

    fn event(&mut self, event: &EventRecord) -> Result<(), SinkError> {
        if let Ok(mut m) = self.shared.metrics.lock() {
            m.event(event);
        }
        let json: Arc<str> = serde_json::to_string(event).unwrap_or_default().into();
        if let Ok(mut recent) = self.shared.recent_events.lock() {
            if recent.len() == RECENT_EVENTS {
                recent.pop_front();
            }
            recent.push_back(json.clone());
        }
        if self.shared.feed.receiver_count() > 0 {
            let _ = self.shared.feed.send(FeedItem {
                kind: "event",
                json,
            });
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        {
            // Under the encoder's lock, so that its wait cannot miss the wake-up.
            let _slot = self.shared.raw.lock();
            self.shared.ended.store(true, Ordering::Relaxed);
        }
        self.shared.raw_ready.notify_all();
        if let Some(encoder) = self.encoder.take() {
            let _ = encoder.join();
        }
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
        Ok(())
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Commands waiting for the frame loop at most; more are answered 503.
const COMMANDS_WAITING: usize = 8;
/// Commands run between two frames at most.
const COMMANDS_PER_FRAME: usize = 4;
/// How often `/api/status` and the loop's metrics are read from the run.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// A command from `POST /api/command`, with where its reply goes.
pub struct CommandRequest {
    /// The command line.
    pub line: String,
    /// The console's reply.
    pub reply: oneshot::Sender<String>,
}

/// The console's port on HTTP: each request one command, its reply its answer.
pub struct HttpPort {
    commands: mpsc::Receiver<CommandRequest>,
    waiting: VecDeque<oneshot::Sender<String>>,
}

impl ConsolePort for HttpPort {
    fn read_input(&mut self, input: &mut Vec<u8>) {
        for _ in 0..COMMANDS_PER_FRAME {
            let Ok(request) = self.commands.try_recv() else {
                break;
            };
            // Its client was answered 504 and went: a command it was told failed is not run.
            if request.reply.is_closed() {
                continue;
            }
            // One line per request, so that each gets exactly one reply.
            input.extend(request.line.bytes().map(|b| match b {
                b'\r' | b'\n' => b' ',
                b => b,
            }));
            input.push(b'\n');
            self.waiting.push_back(request.reply);
        }
    }

    fn write_reply(&mut self, text: &str) {
        if let Some(reply) = self.waiting.pop_front() {
            let _ = reply.send(text.to_owned());
        }
    }
}

impl HttpPort {
    /// Answers the requests still waiting after the console ran (none normally: each line it
    /// was given gets one reply).
    fn answer_the_rest(&mut self, text: &str) {
        for reply in self.waiting.drain(..) {
            let _ = reply.send(text.to_owned());
        }
    }
}

/// The console's `status`, as `/api/status` gives it.
#[derive(Debug, Clone, Serialize)]
struct StatusReport {
    uptime_s: f64,
    frames: u64,
    fps: f64,
    failed_frames: u64,
    dropped_stale: u64,
    paused: bool,
    model: String,
    threshold: f32,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    drift: Option<DriftReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracking: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<crate::lifecycle::health::HealthReading>,
    #[serde(skip_serializing_if = "Option::is_none")]
    samples: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<crate::lifecycle::memory::MemoryUse>,
    last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct DriftReport {
    windows: u64,
    psi: BTreeMap<String, f64>,
    drifting: Vec<String>,
}

/// HTTP's part in steering a run: the loop's figures, the preview's frames, commands.
pub struct HttpSteering {
    shared: Arc<Shared>,
    console: Console<HttpPort>,
    every: Duration,
    last_preview: Option<Instant>,
    last_status: Option<Instant>,
    last_seq: Option<u64>,
}

impl HttpSteering {
    fn read_status(&self, control: &RunControl<'_>) {
        let s = control.stats;
        let drift = control.pipeline.drift().map(|d| DriftReport {
            windows: d.windows(),
            psi: d
                .watches()
                .iter()
                .filter_map(|w| {
                    w.psi
                        .map(|p| (w.stat.name().to_owned(), (p * 1e4).round() / 1e4))
                })
                .collect(),
            drifting: d
                .watches()
                .iter()
                .filter(|w| w.drifting)
                .map(|w| w.stat.name().to_owned())
                .collect(),
        });
        let report = StatusReport {
            uptime_s: (s.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            frames: s.frames,
            fps: (s.fps * 100.0).round() / 100.0,
            failed_frames: s.failed_frames,
            dropped_stale: control.source.dropped_frames(),
            paused: *control.paused,
            model: control.pipeline.manifest().id(),
            threshold: control.pipeline.thresholds().score,
            source: control.source.describe(),
            tracking: control.pipeline.scene().map(|scene| scene.status()),
            health: s.health.filter(|h| !h.is_empty()),
            samples: control.samples.map(|samples| samples.status()),
            memory: crate::lifecycle::memory::MemoryUse::now(),
            last_error: s.last_error.clone(),
            drift: drift.clone(),
        };
        if let Ok(mut status) = self.shared.status.lock() {
            *status = Some(serde_json::to_string(&report).unwrap_or_default().into());
        }
        if let Ok(mut m) = self.shared.metrics.lock() {
            m.set_loop_figures(metrics::LoopFigures {
                failed_frames: report.failed_frames,
                dropped_stale: report.dropped_stale,
                fps: report.fps,
                paused: report.paused,
                model: report.model,
                drift_psi: drift.map(|d| d.psi).unwrap_or_default(),
            });
        }
    }
}

impl Steering for HttpSteering {
    fn between_frames(&mut self, mut control: RunControl<'_>) {
        let now = Instant::now();
        if self
            .last_status
            .is_none_or(|at| now.duration_since(at) >= STATUS_EVERY)
        {
            self.last_status = Some(now);
            self.read_status(&control);
        }
        // The preview: only while someone watches, at most preview_fps, each frame once (a
        // page that comes when nobody watched gets the frame in place, even while paused).
        let watchers = self.shared.watchers.load(Ordering::Relaxed);
        if watchers == 0 {
            self.last_seq = None;
        }
        if watchers > 0
            && self
                .last_preview
                .is_none_or(|at| now.duration_since(at) >= self.every)
        {
            let seq = self
                .shared
                .latest
                .lock()
                .ok()
                .and_then(|l| l.as_ref().map(|r| r.seq));
            if let (Some(frame), Some(seq)) = (control.last_frame, seq) {
                if self.last_seq != Some(seq) {
                    self.last_seq = Some(seq);
                    self.last_preview = Some(now);
                    // Copied before the lock: the encoder never waits for the copy.
                    let image = frame.image.clone();
                    if let Ok(mut raw) = self.shared.raw.lock() {
                        // A frame the encoder has not taken yet is replaced: the newest wins.
                        *raw = Some(RawFrame { seq, image });
                    }
                    self.shared.raw_ready.notify_one();
                }
            }
        }
        self.console.between_frames(control.reborrow());
        // Every request gets an answer, even one the console found nothing in.
        self.console
            .port_mut()
            .answer_the_rest("# error: empty command\n");
    }
}
