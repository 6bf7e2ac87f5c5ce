//! Cameras: capture on its own thread, the pipeline always on the newest frame.
//!
//! A [`CaptureDevice`] is anything that can be opened and asked for a frame: a V4L2 camera
//! through nokhwa ([`v4l`]), a network camera ([`mjpeg`] over HTTP, [`rtsp`] with H.264
//! decoded by [`h264`]), or a folder of images played at a frame rate ([`replay`]), which
//! stands in for a camera in tests and for replaying recorded footage. [`LatestFrame`] runs one
//! on a capture thread and hands the pipeline only the newest frame: frames the pipeline had no
//! time for are dropped and counted, never queued, and each frame carries its capture time.
//!
//! A device that fails to open, errors, or delivers nothing for [`GRAB_TIMEOUT`] is closed and
//! reopened with backoff ([`MIN_BACKOFF`] doubling to [`MAX_BACKOFF`]); the outage and the
//! recovery are reported as events on the sinks (`camera_lost`, `camera_restored`), and the
//! process keeps running.

pub mod csi;
pub mod h264;
pub mod mjpeg;
pub mod net;
pub mod orient;
pub mod pixels;
pub mod replay;
pub mod rtsp;
pub mod v4l;

use crate::frames::source::{Frame, FrameSource, SourceError};
use crate::reconnect::Backoff;
use crate::results::record::EventRecord;
use image::RgbImage;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// A device that delivers nothing for this long counts as gone.
pub const GRAB_TIMEOUT: Duration = Duration::from_secs(3);
/// First wait before reopening a failed device.
pub const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between two attempts to reopen a device.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long `next_frame` waits for a new frame before handing control back to the run loop
/// (so the console stays responsive while a camera is down).
pub const FRAME_WAIT: Duration = Duration::from_millis(250);

/// Why a camera could not be opened or read. Each names the device (`camera:/dev/video0`,
/// `replay:DIR`); none ends a run: the capture thread reports it as `camera_lost` and reopens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The driver refused to open the device (absent, busy, no permission).
    #[error("{device}: {message}")]
    Open {
        /// The device.
        device: String,
        /// The driver's message.
        message: String,
    },
    /// The device opened but its modes cannot be read.
    #[error("{device}: listing modes: {message}")]
    Modes {
        /// The device.
        device: String,
        /// The driver's message.
        message: String,
    },
    /// The mode fixed by the board profile or `--camera-mode` is not one the camera has.
    #[error("{device} has no mode {wanted}; it has: {available}")]
    NoSuchMode {
        /// The device.
        device: String,
        /// The mode asked for.
        wanted: v4l::Mode,
        /// The modes it has, comma-separated.
        available: String,
    },
    /// No mode of the camera is one lookout can convert.
    #[error("{device} offers no mode lookout can decode")]
    NoDecodableMode {
        /// The device.
        device: String,
    },
    /// Setting or starting a mode failed.
    #[error("{device}: {step} {mode}: {message}")]
    Start {
        /// The device.
        device: String,
        /// `setting` or `starting`.
        step: &'static str,
        /// The mode.
        mode: v4l::Mode,
        /// The driver's message.
        message: String,
    },
    /// The thread that talks to the device could not be started.
    #[error("{device}: cannot start its thread: {source}")]
    Thread {
        /// The device.
        device: String,
        /// Why.
        source: std::io::Error,
    },
    /// Earlier worker threads are still inside the driver, in a call that never returned: no
    /// more are started until they return.
    #[error(
        "{device}: {threads} earlier capture threads are still inside the driver (a call that \
         never returned); no more are started until they return: replug the camera or restart \
         lookout"
    )]
    Stuck {
        /// The device.
        device: String,
        /// Threads still inside the driver.
        threads: usize,
    },
    /// The device did not finish opening in time (a driver stuck in an ioctl).
    #[error("{device}: did not open within {seconds} s")]
    OpenTimeout {
        /// The device.
        device: String,
        /// The limit.
        seconds: u64,
    },
    /// A frame was asked of a device that is not open.
    #[error("{device}: not open")]
    NotOpen {
        /// The device.
        device: String,
    },
    /// The driver failed to deliver a frame (unplugged: `VIDIOC_DQBUF: No such device`).
    #[error("{device}: {message}")]
    Frame {
        /// The device.
        device: String,
        /// The driver's message.
        message: String,
    },
    /// A frame's bytes do not make a picture of its mode.
    #[error("{device}: {source}")]
    Pixels {
        /// The device.
        device: String,
        /// What does not add up.
        source: pixels::PixelError,
    },
    /// A network camera's stream is in an encoding lookout does not decode, or its decoder is
    /// missing.
    #[error("{device}: {message}")]
    Codec {
        /// The camera.
        device: String,
        /// The encoding and what lookout decodes.
        message: String,
    },
    /// Nothing came within the grab timeout.
    #[error("{device}: no frame for {seconds} s")]
    NoFrame {
        /// The device.
        device: String,
        /// The timeout.
        seconds: f64,
    },
    /// The device's thread stopped delivering.
    #[error("{device}: capture stopped")]
    Stopped {
        /// The device.
        device: String,
    },
    /// A replayed folder or one of its images cannot be read.
    #[error(transparent)]
    Replay(#[from] SourceError),
    /// A replayed folder's next frame is not due within the grab timeout.
    #[error("no frame within {0} ms")]
    NotDue(u128),
    /// Listing the cameras failed.
    #[error("listing cameras: {0}")]
    List(String),
}

impl Error {
    /// A frame came but its bytes do not make a picture (truncated by the driver, a broken
    /// JPEG): that frame is skipped, the device is not reopened for it.
    pub fn is_corrupt_frame(&self) -> bool {
        matches!(self, Error::Pixels { .. })
    }
}

/// A camera operation's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Something frames are captured from.
pub trait CaptureDevice: Send + 'static {
    /// Opens the device; returns a description of the mode in use (`640x480 YUYV @ 30 fps`).
    fn open(&mut self) -> Result<String>;
    /// Waits for the next frame, at most `timeout`.
    fn grab(&mut self, timeout: Duration) -> Result<RgbImage>;
    /// Releases the device (after an error, or at the end).
    fn close(&mut self);
    /// What it is, for logs and the console (`camera:/dev/video0`).
    fn describe(&self) -> String;
}

/// Counters of a capture thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames captured.
    pub captured: u64,
    /// Frames replaced by a newer one before the pipeline took them.
    pub dropped: u64,
    /// Times the device was reopened after failing.
    pub reconnects: u64,
    /// Frames skipped because their bytes did not make a picture.
    pub corrupt: u64,
}

#[derive(Default)]
struct Shared {
    latest: Option<Frame>,
    stats: CaptureStats,
    events: Vec<EventRecord>,
    stop: bool,
    restart: bool,
}

/// A [`FrameSource`] over a capture thread with latest-frame semantics.
pub struct LatestFrame {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    description: String,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic on the capture thread must not take the pipeline with it.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LatestFrame {
    /// Starts capturing from `device` on its own thread.
    pub fn start<D: CaptureDevice>(device: D) -> Self {
        Self::start_oriented(device, orient::Orientation::default())
    }

    /// The same, each frame turned as `orientation` says before the pipeline sees it.
    pub fn start_oriented<D: CaptureDevice>(device: D, orientation: orient::Orientation) -> Self {
        let description = if orientation.is_identity() {
            device.describe()
        } else {
            format!("{} ({})", device.describe(), orientation.describe())
        };
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || capture_loop(device, orientation, &thread_shared))
            .ok();
        if thread.is_none() {
            lock(&shared.0).events.push(EventRecord::now(
                "camera_lost",
                &description,
                "cannot start the capture thread".into(),
            ));
        }
        Self {
            shared,
            thread,
            description,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> CaptureStats {
        lock(&self.shared.0).stats.clone()
    }
}

/// Waits `duration` unless a stop or restart is asked for first; true when stopping.
fn pause(shared: &(Mutex<Shared>, Condvar), duration: Duration) -> bool {
    let (state, wake) = shared;
    let guard = lock(state);
    let (guard, _) = wake
        .wait_timeout_while(guard, duration, |s| !s.stop && !s.restart)
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    guard.stop
}

fn capture_loop<D: CaptureDevice>(
    mut device: D,
    orientation: orient::Orientation,
    shared: &(Mutex<Shared>, Condvar),
) {
    let (state, ready) = shared;
    let name = device.describe();
    let mut open = false;
    // The mode of the last successful open, and when the current outage began: a device
    // counts as restored only once it delivers a frame, not when it merely opens.
    let mut mode = String::new();
    let mut outage: Option<Instant> = None;
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut count: u64 = 0;
    // Since when every frame was corrupt: that for GRAB_TIMEOUT counts as no frames (timed from
    // the first bad one, so that a slow camera is not reopened for one).
    let mut corrupt_since: Option<Instant> = None;
    // Whether the log said, in this outage, that threads are stuck in the driver.
    let mut stuck_told = false;
    let lost = |s: &mut Shared, outage: &mut Option<Instant>, message: String| {
        if outage.is_none() {
            tracing::warn!("{name}: {message}; reopening");
            s.events
                .push(EventRecord::now("camera_lost", &name, message));
            *outage = Some(Instant::now());
        }
    };
    loop {
        {
            let mut s = lock(state);
            if s.stop {
                break;
            }
            if std::mem::take(&mut s.restart) && open {
                device.close();
                open = false;
            }
        }
        if !open {
            match device.open() {
                Ok(m) => {
                    open = true;
                    corrupt_since = None;
                    tracing::info!("{name}: capturing {m}");
                    mode = m;
                    // An open can take seconds (a network camera): a stop asked meanwhile
                    // should not wait for a grab as well.
                    if lock(state).stop {
                        break;
                    }
                }
                Err(e) => {
                    let wait = backoff.next_wait();
                    tracing::debug!(
                        "{name}: open failed: {e}; next try in {} ms",
                        wait.as_millis()
                    );
                    lost(&mut lock(state), &mut outage, e.to_string());
                    // The outage was told with its first reason (no frame); this one matters
                    // more (replug or restart), so it is said once too.
                    if matches!(e, Error::Stuck { .. }) && !std::mem::replace(&mut stuck_told, true)
                    {
                        tracing::warn!("{e}");
                    }
                    if pause(shared, wait) {
                        break;
                    }
                    continue;
                }
            }
        }
        match device.grab(GRAB_TIMEOUT) {
            Ok(image) => {
                let captured_at = SystemTime::now();
                let frame = Frame {
                    id: format!("camera-{count}"),
                    captured_at,
                    image: orientation.apply(image),
                };
                count += 1;
                backoff.reset();
                corrupt_since = None;
                stuck_told = false;
                let mut s = lock(state);
                if let Some(since) = outage.take() {
                    s.stats.reconnects += 1;
                    let message = format!("{mode}, after {:.1} s", since.elapsed().as_secs_f64());
                    tracing::warn!("{name}: restored: {message}");
                    s.events
                        .push(EventRecord::now("camera_restored", &name, message));
                }
                s.stats.captured += 1;
                if s.latest.replace(frame).is_some() {
                    s.stats.dropped += 1;
                }
                ready.notify_all();
            }
            Err(e)
                if e.is_corrupt_frame()
                    && corrupt_since.get_or_insert_with(Instant::now).elapsed() < GRAB_TIMEOUT =>
            {
                // One bad frame (USB bandwidth, a broken JPEG): skipped and counted; the next
                // one is likely whole.
                let corrupt = {
                    let mut s = lock(state);
                    s.stats.corrupt += 1;
                    s.stats.corrupt
                };
                if corrupt.is_power_of_two() {
                    tracing::warn!("{name}: frame skipped: {e} ({corrupt} so far)");
                }
            }
            Err(e) => {
                device.close();
                open = false;
                lost(&mut lock(state), &mut outage, e.to_string());
                if pause(shared, backoff.next_wait()) {
                    break;
                }
            }
        }
    }
    device.close();
}

impl FrameSource for LatestFrame {
    fn next_frame(&mut self) -> std::result::Result<Option<Frame>, SourceError> {
        let (state, ready) = &*self.shared;
        let mut s = lock(state);
        let deadline = Instant::now() + FRAME_WAIT;
        while s.latest.is_none() {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return Err(SourceError::Stopped {
                    name: self.description.clone(),
                    message: "the capture thread is not running".into(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SourceError::Waiting {
                    name: self.description.clone(),
                });
            }
            s = ready
                .wait_timeout(s, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        Ok(s.latest.take())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn restart(&mut self) -> std::result::Result<(), SourceError> {
        lock(&self.shared.0).restart = true;
        self.shared.1.notify_all();
        Ok(())
    }

    fn take_events(&mut self) -> Vec<EventRecord> {
        std::mem::take(&mut lock(&self.shared.0).events)
    }

    fn dropped_frames(&self) -> u64 {
        self.stats().dropped
    }
}

impl Drop for LatestFrame {
    fn drop(&mut self) {
        lock(&self.shared.0).stop = true;
        // Wakes a capture thread waiting out a backoff; one inside an open or a grab ends
        // within the device's own bounds (V4L2: the open timeout and GRAB_TIMEOUT; RTSP: its
        // open, key-frame and teardown waits, about 24 s at worst).
        self.shared.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens `replay:DIR[@FPS]` (`rest` is what follows `replay:`) as a live source: a folder
/// played at a camera's pace, with its newest-frame semantics.
pub fn open_replay(
    spec: &str,
    rest: &str,
    orientation: orient::Orientation,
) -> std::result::Result<LatestFrame, SourceError> {
    let bad = |message: String| SourceError::Spec {
        spec: spec.to_owned(),
        message,
    };
    let (dir, fps) = match rest.rsplit_once('@') {
        Some((dir, fps)) => match fps.parse::<f64>() {
            // Below 0.5 fps a frame would take longer than GRAB_TIMEOUT to come.
            Ok(f) if (0.5..=1000.0).contains(&f) => (dir, f),
            _ => return Err(bad(format!("frame rate {fps:?} is not in [0.5, 1000]"))),
        },
        None => (rest, replay::DEFAULT_FPS),
    };
    if dir.is_empty() {
        return Err(bad("expected replay:DIR[@FPS]".into()));
    }
    Ok(LatestFrame::start_oriented(
        replay::Replay::new(dir.into(), fps),
        orientation,
    ))
}

/// Opens a network camera's URL (`http://` for MJPEG, `rtsp://`) as a live source. Its
/// stream's size is the camera's to choose; `orientation` turns its frames like any camera's.
pub fn open_network(
    spec: &str,
    orientation: orient::Orientation,
) -> std::result::Result<LatestFrame, SourceError> {
    let url = net::NetUrl::parse(spec).map_err(|message| SourceError::Spec {
        // The spec as given may hold a password: the error shows the URL without it when it
        // parses, and only the scheme otherwise.
        spec: spec.split("://").next().unwrap_or_default().to_owned() + "://…",
        message,
    })?;
    Ok(match url.scheme() {
        net::Scheme::Http => LatestFrame::start_oriented(mjpeg::MjpegHttp::new(url), orientation),
        net::Scheme::Rtsp => LatestFrame::start_oriented(rtsp::RtspCamera::new(url), orientation),
    })
}

/// Opens `camera[:N|:/dev/videoN]` (`rest` is what follows `camera`) as a live source. `need`
/// is the model input (width, height); `mode` a fixed mode from the command line, which wins
/// over the board's.
pub fn open_camera(
    spec: &str,
    rest: &str,
    board: &crate::board::CameraDefaults,
    need: (u32, u32),
    mode: Option<&str>,
) -> std::result::Result<LatestFrame, SourceError> {
    let bad = |message: String| SourceError::Spec {
        spec: spec.to_owned(),
        message,
    };
    let id = match rest.strip_prefix(':') {
        None if rest.is_empty() => board.device.clone(),
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => return Err(bad("expected camera, camera:N or camera:/dev/videoN".into())),
    };
    let id = match id.parse::<u32>() {
        Ok(n) => v4l::CameraId::Index(n),
        Err(_) => v4l::CameraId::Path(id),
    };
    let fixed = match mode.or(board.mode.as_deref()) {
        None => None,
        Some(text) => match text.parse::<v4l::Mode>() {
            Ok(m) => Some(m),
            Err(e) => return Err(bad(e)),
        },
    };
    let orientation = orient::Orientation::of(board);
    let need = orientation.need_in_camera(need);
    let request = v4l::ModeRequest {
        fixed,
        need,
        aspect: board.width as f64 / board.height.max(1) as f64,
        min_fps: board.fps.min(15),
    };
    Ok(LatestFrame::start_oriented(
        v4l::V4lCamera::new(id, request),
        orientation,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A device that follows a script: `fail_from..fail_to` (grab numbers) fail, and while
    /// failing it cannot be reopened until `fail_to` attempts have passed. The first failing
    /// grab waits until `consumer_ready` is set, so the consumer has seen a frame from before
    /// the outage however late it was scheduled.
    struct Scripted {
        grabs: Arc<AtomicU32>,
        fail_from: u32,
        fail_to: u32,
        period: Duration,
        consumer_ready: Arc<std::sync::atomic::AtomicBool>,
    }

    impl CaptureDevice for Scripted {
        fn open(&mut self) -> Result<String> {
            let n = self.grabs.load(Ordering::SeqCst);
            if (self.fail_from..self.fail_to).contains(&n) {
                self.grabs.fetch_add(1, Ordering::SeqCst);
                Err(Error::Open {
                    device: "scripted".into(),
                    message: "unplugged".into(),
                })
            } else {
                Ok("8x8 test".into())
            }
        }
        fn grab(&mut self, _: Duration) -> Result<RgbImage> {
            std::thread::sleep(self.period);
            if self.grabs.load(Ordering::SeqCst) == self.fail_from {
                while !self.consumer_ready.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let n = self.grabs.fetch_add(1, Ordering::SeqCst);
            if (self.fail_from..self.fail_to).contains(&n) {
                return Err(Error::Frame {
                    device: "scripted".into(),
                    message: "VIDIOC_DQBUF: No such device".into(),
                });
            }
            Ok(RgbImage::from_pixel(8, 8, Rgb([n as u8, 0, 0])))
        }
        fn close(&mut self) {}
        fn describe(&self) -> String {
            "scripted".into()
        }
    }

    fn next(source: &mut LatestFrame) -> Frame {
        for _ in 0..100 {
            match source.next_frame() {
                Ok(Some(f)) => return f,
                Err(SourceError::Waiting { .. }) => continue,
                other => panic!("{other:?}"),
            }
        }
        panic!("no frame in 25 s");
    }

    #[test]
    fn a_slow_consumer_gets_the_newest_frame_and_the_rest_are_counted() {
        let grabs = Arc::new(AtomicU32::new(0));
        let mut source = LatestFrame::start(Scripted {
            grabs: grabs.clone(),
            fail_from: u32::MAX,
            fail_to: u32::MAX,
            period: Duration::from_millis(5),
            consumer_ready: Arc::default(),
        });
        let first = next(&mut source);
        let n1: u64 = first.id.trim_start_matches("camera-").parse().expect("id");
        // The consumer is slow until the device has begun eight more grabs: by then the frames
        // up to n1 + 6 are stored, whatever the scheduler did meanwhile.
        let waited = Instant::now();
        while u64::from(grabs.load(Ordering::SeqCst)) < n1 + 8 {
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "the device stalled"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let second = next(&mut source);
        let n2: u64 = second.id.trim_start_matches("camera-").parse().expect("id");
        assert!(
            n2 > n1 + 5,
            "the newest frame, not the next: {n1} then {n2}"
        );
        assert!(second.captured_at > first.captured_at);
        let stats = source.stats();
        assert!(stats.dropped >= n2 - n1 - 1, "{stats:?}");
        assert_eq!(source.dropped_frames(), stats.dropped);
    }

    #[test]
    fn a_device_that_fails_is_reopened_and_the_outage_reported_once() {
        let consumer_ready = Arc::<std::sync::atomic::AtomicBool>::default();
        let mut source = LatestFrame::start(Scripted {
            grabs: Arc::new(AtomicU32::new(0)),
            fail_from: 3,
            fail_to: 6,
            period: Duration::from_millis(2),
            consumer_ready: consumer_ready.clone(),
        });
        let mut seen = Vec::new();
        while seen.len() < 8 {
            seen.push(next(&mut source).image.get_pixel(0, 0)[0]);
            consumer_ready.store(true, Ordering::SeqCst);
        }
        let events = source.take_events();
        let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(kinds, ["camera_lost", "camera_restored"], "{events:?}");
        assert!(events[0].message.contains("No such device"), "{events:?}");
        assert!(
            events[1].message.starts_with("8x8 test, after "),
            "{events:?}"
        );
        assert_eq!(source.stats().reconnects, 1);
        // Frames from before and after the outage, none from it.
        assert!(
            seen.iter().any(|&v| v < 3) && seen.iter().any(|&v| v >= 6),
            "{seen:?}"
        );
        assert!(seen.iter().all(|&v| !(3..6).contains(&v)), "{seen:?}");
        assert!(
            source.take_events().is_empty(),
            "events are handed out once"
        );
    }

    /// A device whose frames are YUYV bytes through the real conversion: grabs in `short`
    /// come truncated, as from a USB camera short of bandwidth.
    struct Truncating {
        grabs: u32,
        short: std::ops::Range<u32>,
    }

    impl CaptureDevice for Truncating {
        fn open(&mut self) -> Result<String> {
            Ok("8x8 YUYV".into())
        }
        fn grab(&mut self, _: Duration) -> Result<RgbImage> {
            std::thread::sleep(Duration::from_millis(2));
            let n = self.grabs;
            self.grabs += 1;
            let full = 8 * 8 * 2;
            let bytes = vec![
                n as u8;
                if self.short.contains(&n) {
                    full / 3
                } else {
                    full
                }
            ];
            pixels::to_rgb(v4l::PixelFormat::Yuyv, 8, 8, &bytes).map_err(|source| Error::Pixels {
                device: "truncating".into(),
                source,
            })
        }
        fn close(&mut self) {}
        fn describe(&self) -> String {
            "truncating".into()
        }
    }

    #[test]
    fn truncated_frames_are_skipped_and_counted_without_reopening_the_device() {
        let mut source = LatestFrame::start(Truncating {
            grabs: 0,
            short: 3..6,
        });
        let mut seen = 0;
        while source.stats().captured < 10 {
            next(&mut source);
            seen += 1;
            assert!(seen < 1000, "{:?}", source.stats());
        }
        let stats = source.stats();
        assert_eq!(stats.corrupt, 3, "{stats:?}");
        assert_eq!(stats.reconnects, 0, "{stats:?}");
        assert!(
            source.take_events().is_empty(),
            "no camera_lost for a bad frame"
        );
    }

    #[test]
    fn a_device_giving_only_corrupt_frames_is_lost_after_the_grab_timeout() {
        let mut source = LatestFrame::start(Truncating {
            grabs: 0,
            short: 0..u32::MAX,
        });
        let deadline = Instant::now() + GRAB_TIMEOUT * 20;
        let events = loop {
            let events = source.take_events();
            if !events.is_empty() {
                break events;
            }
            assert!(Instant::now() < deadline, "{:?}", source.stats());
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(events[0].event, "camera_lost", "{events:?}");
        assert!(
            events[0]
                .message
                .contains("YUYV frame of 8x8 needs 128 bytes, got 42"),
            "{events:?}"
        );
        assert!(source.stats().corrupt > 0);
    }
}
