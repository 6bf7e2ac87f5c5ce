//! V4L2 cameras through nokhwa: USB UVC cameras, and Pi CSI cameras through libcamera's V4L2
//! compatibility layer.
//!
//! The mode is chosen, unless the board profile or `--camera-mode` fixes it, as the smallest
//! one that covers the model input at the board's aspect ratio, preferring formats that need no
//! JPEG decode (YUYV, NV12) at small sizes and MJPEG above 640x480, where USB 2 bandwidth
//! makes uncompressed modes slow ([`choose_mode`]).
//!
//! Frames are converted to RGB by [`super::pixels`], not by nokhwa's decoders.
//!
//! nokhwa's frame call blocks inside the driver and its camera is not `Send`, so each opened
//! camera lives on a worker thread of its own that hands frames over a channel; a camera that
//! stops delivering is given up on after the grab timeout (its worker is left to end when the
//! driver returns) and a fresh one is opened. A driver that never returns would leave a thread
//! behind at every reopen: past [`MAX_STUCK_WORKERS`] of them no new one is started, and the
//! camera stays lost (its `camera_lost` event says why) until they return.

use super::{CaptureDevice, Error, Result};
use image::RgbImage;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// How a camera's pixels are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// YUV 4:2:2, uncompressed.
    Yuyv,
    /// YUV 4:2:0, uncompressed.
    Nv12,
    /// Motion JPEG.
    Mjpeg,
    /// 8-bit grey.
    Gray,
    /// 24-bit RGB.
    Rgb,
}

impl PixelFormat {
    fn uncompressed(self) -> bool {
        !matches!(self, PixelFormat::Mjpeg)
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Mjpeg => "MJPEG",
            PixelFormat::Gray => "GRAY",
            PixelFormat::Rgb => "RGB",
        })
    }
}

impl std::str::FromStr for PixelFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "YUYV" | "YUY2" => Ok(Self::Yuyv),
            "NV12" => Ok(Self::Nv12),
            "MJPEG" | "MJPG" => Ok(Self::Mjpeg),
            "GRAY" | "GREY" => Ok(Self::Gray),
            "RGB" | "RAWRGB" => Ok(Self::Rgb),
            other => Err(format!(
                "pixel format {other:?} is not YUYV, NV12, MJPEG, GRAY or RGB"
            )),
        }
    }
}

/// One capture mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Pixel encoding.
    pub format: PixelFormat,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{}@{} {}",
            self.width, self.height, self.fps, self.format
        )
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    /// `WIDTHxHEIGHT@FPS FORMAT`, e.g. `640x480@30 YUYV`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!("camera mode {s:?} is not WIDTHxHEIGHT@FPS FORMAT, e.g. \"640x480@30 YUYV\"")
        };
        let (size_fps, format) = s.trim().split_once(char::is_whitespace).ok_or_else(bad)?;
        let (size, fps) = size_fps.split_once('@').ok_or_else(bad)?;
        let (w, h) = size.split_once('x').ok_or_else(bad)?;
        Ok(Mode {
            width: w.parse().map_err(|_| bad())?,
            height: h.parse().map_err(|_| bad())?,
            fps: fps.parse().map_err(|_| bad())?,
            format: format.trim().parse()?,
        })
    }
}

/// Largest frame area at which uncompressed modes are preferred over MJPEG.
const UNCOMPRESSED_MAX_AREA: u64 = 640 * 480;

/// The mode to capture in: the smallest that covers `need` (the model input, width x height)
/// with the board's `aspect` (width / height), at `min_fps` or more; ties go to uncompressed
/// formats up to 640x480 and to MJPEG above it, then to the higher rate. When nothing covers the
/// input, the largest mode at the aspect is taken (the pre-processing scales up); when no mode has
/// the aspect, any aspect is considered.
pub fn choose_mode(modes: &[Mode], need: (u32, u32), aspect: f64, min_fps: u32) -> Option<Mode> {
    let at_aspect: Vec<Mode> = modes
        .iter()
        .copied()
        .filter(|m| m.height > 0 && ((m.width as f64 / m.height as f64) - aspect).abs() < 0.02)
        .collect();
    let pool = if at_aspect.is_empty() {
        modes.to_vec()
    } else {
        at_aspect
    };
    let fast: Vec<Mode> = pool.iter().copied().filter(|m| m.fps >= min_fps).collect();
    let pool = if fast.is_empty() { pool } else { fast };
    let area = |m: &Mode| m.width as u64 * m.height as u64;
    let preference = |m: &Mode| {
        let wants_uncompressed = area(m) <= UNCOMPRESSED_MAX_AREA;
        // Lower is better.
        (m.format.uncompressed() != wants_uncompressed) as u8
    };
    let covering: Vec<Mode> = pool
        .iter()
        .copied()
        .filter(|m| m.width >= need.0 && m.height >= need.1)
        .collect();
    if covering.is_empty() {
        return pool
            .into_iter()
            .max_by_key(|m| (area(m), std::cmp::Reverse(preference(m)), m.fps));
    }
    covering
        .into_iter()
        .min_by_key(|m| (area(m), preference(m), std::cmp::Reverse(m.fps)))
}

/// Which camera: an index or a device path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraId {
    /// The Nth camera V4L2 lists.
    Index(u32),
    /// A device path such as `/dev/video0`.
    Path(String),
}

impl std::fmt::Display for CameraId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CameraId::Index(i) => write!(f, "camera:{i}"),
            CameraId::Path(p) => write!(f, "camera:{p}"),
        }
    }
}

/// What the capture needs to pick a mode.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeRequest {
    /// A fixed mode (board profile or `--camera-mode`), or automatic.
    pub fixed: Option<Mode>,
    /// The model input, width x height.
    pub need: (u32, u32),
    /// The board camera's aspect ratio.
    pub aspect: f64,
    /// Lowest acceptable frame rate.
    pub min_fps: u32,
}

mod native {
    //! Everything that touches nokhwa.
    use super::{CameraId, Error, Mode, PixelFormat, Result};
    use nokhwa::pixel_format::RgbFormat;
    use nokhwa::utils::{
        ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
        Resolution,
    };
    use nokhwa::Camera;

    pub fn index(id: &CameraId) -> CameraIndex {
        match id {
            CameraId::Index(i) => CameraIndex::Index(*i),
            CameraId::Path(p) => {
                // nokhwa's V4L2 backend takes /dev/videoN by its number.
                match p.strip_prefix("/dev/video").and_then(|n| n.parse().ok()) {
                    Some(n) => CameraIndex::Index(n),
                    None => CameraIndex::String(p.clone()),
                }
            }
        }
    }

    fn to_mode(f: &CameraFormat) -> Option<Mode> {
        let format = match f.format() {
            FrameFormat::YUYV => PixelFormat::Yuyv,
            FrameFormat::NV12 => PixelFormat::Nv12,
            FrameFormat::MJPEG => PixelFormat::Mjpeg,
            FrameFormat::GRAY => PixelFormat::Gray,
            FrameFormat::RAWRGB => PixelFormat::Rgb,
            _ => return None,
        };
        Some(Mode {
            width: f.width(),
            height: f.height(),
            fps: f.frame_rate(),
            format,
        })
    }

    fn to_format(m: &Mode) -> CameraFormat {
        let format = match m.format {
            PixelFormat::Yuyv => FrameFormat::YUYV,
            PixelFormat::Nv12 => FrameFormat::NV12,
            PixelFormat::Mjpeg => FrameFormat::MJPEG,
            PixelFormat::Gray => FrameFormat::GRAY,
            PixelFormat::Rgb => FrameFormat::RAWRGB,
        };
        CameraFormat::new(Resolution::new(m.width, m.height), format, m.fps)
    }

    pub fn open(id: &CameraId) -> Result<(Camera, Vec<Mode>)> {
        let requested = RequestedFormat::new::<RgbFormat>(RequestedFormatType::None);
        let mut camera = Camera::with_backend(index(id), requested, ApiBackend::Video4Linux)
            .map_err(|e| Error::Open {
                device: id.to_string(),
                message: e.to_string(),
            })?;
        let modes = camera
            .compatible_camera_formats()
            .map_err(|e| Error::Modes {
                device: id.to_string(),
                message: e.to_string(),
            })?
            .iter()
            .filter_map(to_mode)
            .collect();
        Ok((camera, modes))
    }

    pub fn start(id: &CameraId, camera: &mut Camera, mode: &Mode) -> Result<()> {
        let failed = |step| {
            move |e: nokhwa::NokhwaError| Error::Start {
                device: id.to_string(),
                step,
                mode: *mode,
                message: e.to_string(),
            }
        };
        let requested =
            RequestedFormat::new::<RgbFormat>(RequestedFormatType::Exact(to_format(mode)));
        camera
            .set_camera_requset(requested)
            .map_err(failed("setting"))?;
        camera.open_stream().map_err(failed("starting"))
    }

    pub fn frame(id: &CameraId, camera: &mut Camera, mode: &Mode) -> Result<image::RgbImage> {
        let device = || id.to_string();
        let buffer = camera.frame_raw().map_err(|e| Error::Frame {
            device: device(),
            message: e.to_string(),
        })?;
        super::super::pixels::to_rgb(mode.format, mode.width, mode.height, &buffer).map_err(
            |source| Error::Pixels {
                device: device(),
                source,
            },
        )
    }

    /// Every camera V4L2 lists, with its modes (or why they could not be read).
    pub fn list() -> Result<Vec<super::CameraListing>> {
        let cameras =
            nokhwa::query(ApiBackend::Video4Linux).map_err(|e| Error::List(e.to_string()))?;
        Ok(cameras
            .into_iter()
            .map(|info| {
                let id = match info.index() {
                    CameraIndex::Index(i) => CameraId::Index(*i),
                    CameraIndex::String(s) => CameraId::Path(s.clone()),
                };
                super::CameraListing {
                    modes: open(&id).map(|(_, modes)| modes).map_err(|e| e.to_string()),
                    id: id.to_string(),
                    name: info.human_name(),
                }
            })
            .collect())
    }
}

/// A camera with its mode, as `lookout cameras` lists it.
#[derive(Debug, Clone)]
pub struct CameraListing {
    /// `camera:N`.
    pub id: String,
    /// The driver's name for it.
    pub name: String,
    /// Its modes, or why they could not be read (busy, no permission).
    pub modes: std::result::Result<Vec<Mode>, String>,
}

/// Every camera on the machine.
pub fn list_cameras() -> Result<Vec<CameraListing>> {
    native::list()
}

/// The V4L2 calls a camera's worker thread makes: the device itself on a board, a script in
/// the tests (a driver that hangs cannot be had otherwise).
pub trait Driver: Send + Sync + 'static {
    /// An opened device; it never leaves its worker thread (nokhwa's camera is not `Send`).
    type Camera;
    /// Opens the device and lists its modes.
    fn open(&self, id: &CameraId) -> Result<(Self::Camera, Vec<Mode>)>;
    /// Sets `mode` and starts streaming.
    fn start(&self, id: &CameraId, camera: &mut Self::Camera, mode: &Mode) -> Result<()>;
    /// Waits in the driver for the next frame, as RGB.
    fn frame(&self, id: &CameraId, camera: &mut Self::Camera, mode: &Mode) -> Result<RgbImage>;
}

/// The machine's V4L2 devices, through nokhwa.
#[derive(Debug, Clone, Copy, Default)]
pub struct Native;

impl Driver for Native {
    type Camera = nokhwa::Camera;

    fn open(&self, id: &CameraId) -> Result<(Self::Camera, Vec<Mode>)> {
        native::open(id)
    }

    fn start(&self, id: &CameraId, camera: &mut Self::Camera, mode: &Mode) -> Result<()> {
        native::start(id, camera, mode)
    }

    fn frame(&self, id: &CameraId, camera: &mut Self::Camera, mode: &Mode) -> Result<RgbImage> {
        native::frame(id, camera, mode)
    }
}

struct Worker {
    frames: Receiver<Result<RgbImage>>,
    stop: Arc<AtomicBool>,
}

/// Worker threads given up on and still inside the driver, beyond which no new one is started.
/// A driver that never returns from a call (no frame, no error) would otherwise cost a thread,
/// its stack and the device's file descriptor every reopen, for as long as the board runs.
pub const MAX_STUCK_WORKERS: usize = 2;

/// Counts a worker thread as alive until it ends (or is never started).
struct Alive(Arc<AtomicUsize>);

impl Alive {
    fn count(workers: &Arc<AtomicUsize>) -> Self {
        workers.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(workers))
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A V4L2 camera as a [`CaptureDevice`].
pub struct V4lCamera<D: Driver = Native> {
    id: CameraId,
    request: ModeRequest,
    worker: Option<Worker>,
    driver: Arc<D>,
    /// Worker threads that have not ended: the current one and those given up on.
    alive: Arc<AtomicUsize>,
}

impl V4lCamera<Native> {
    /// A camera to be opened by the capture thread.
    pub fn new(id: CameraId, request: ModeRequest) -> Self {
        Self::with_driver(id, request, Native)
    }
}

impl<D: Driver> V4lCamera<D> {
    /// A camera whose calls go to `driver`.
    pub fn with_driver(id: CameraId, request: ModeRequest, driver: D) -> Self {
        Self {
            id,
            request,
            worker: None,
            driver: Arc::new(driver),
            alive: Arc::default(),
        }
    }
}

/// How long opening a camera may take.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

impl<D: Driver> CaptureDevice for V4lCamera<D> {
    fn open(&mut self) -> Result<String> {
        self.close();
        // close() told the last worker to stop; it ends when its call in the driver returns.
        let stuck = self.alive.load(Ordering::SeqCst);
        if stuck >= MAX_STUCK_WORKERS {
            return Err(Error::Stuck {
                device: self.id.to_string(),
                threads: stuck,
            });
        }
        let (setup_tx, setup_rx) = mpsc::sync_channel(1);
        let (frame_tx, frame_rx) = mpsc::sync_channel(2);
        let stop = Arc::new(AtomicBool::new(false));
        let (id, request, worker_stop) = (self.id.clone(), self.request.clone(), Arc::clone(&stop));
        let driver = Arc::clone(&self.driver);
        // Moved into the thread: dropped when it ends, or here if it cannot start.
        let alive = Alive::count(&self.alive);
        std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || {
                let _alive = alive;
                let opened = driver.open(&id).and_then(|(mut camera, modes)| {
                    let mode = match request.fixed {
                        Some(m) if modes.contains(&m) => m,
                        Some(m) => {
                            let list: Vec<String> = modes.iter().map(Mode::to_string).collect();
                            return Err(Error::NoSuchMode {
                                device: id.to_string(),
                                wanted: m,
                                available: list.join(", "),
                            });
                        }
                        None => choose_mode(&modes, request.need, request.aspect, request.min_fps)
                            .ok_or_else(|| Error::NoDecodableMode {
                                device: id.to_string(),
                            })?,
                    };
                    driver.start(&id, &mut camera, &mode)?;
                    Ok((camera, mode))
                });
                let (mut camera, mode) = match opened {
                    Ok((camera, mode)) => {
                        let _ = setup_tx.send(Ok(mode.to_string()));
                        (camera, mode)
                    }
                    Err(e) => {
                        let _ = setup_tx.send(Err(e));
                        return;
                    }
                };
                while !worker_stop.load(Ordering::SeqCst) {
                    let frame = driver.frame(&id, &mut camera, &mode);
                    // A corrupt frame is the capture loop's to skip; the device goes on.
                    let failed = frame.as_ref().is_err_and(|e| !e.is_corrupt_frame());
                    if frame_tx.send(frame).is_err() || failed {
                        break;
                    }
                }
            })
            .map_err(|source| Error::Thread {
                device: self.id.to_string(),
                source,
            })?;
        match setup_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok(mode)) => {
                self.worker = Some(Worker {
                    frames: frame_rx,
                    stop,
                });
                Ok(mode)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                stop.store(true, Ordering::SeqCst);
                Err(Error::OpenTimeout {
                    device: self.id.to_string(),
                    seconds: OPEN_TIMEOUT.as_secs(),
                })
            }
        }
    }

    fn grab(&mut self, timeout: Duration) -> Result<RgbImage> {
        let device = || self.id.to_string();
        let worker = self
            .worker
            .as_ref()
            .ok_or_else(|| Error::NotOpen { device: device() })?;
        match worker.frames.recv_timeout(timeout) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => Err(Error::NoFrame {
                device: device(),
                seconds: timeout.as_secs_f64(),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(Error::Stopped { device: device() }),
        }
    }

    fn close(&mut self) {
        if let Some(worker) = self.worker.take() {
            // The worker may be blocked in the driver; it ends when that returns.
            worker.stop.store(true, Ordering::SeqCst);
        }
    }

    fn describe(&self) -> String {
        self.id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(width: u32, height: u32, fps: u32, format: PixelFormat) -> Mode {
        Mode {
            width,
            height,
            fps,
            format,
        }
    }

    use PixelFormat::{Mjpeg, Nv12, Yuyv};

    /// A typical USB webcam's list.
    fn webcam() -> Vec<Mode> {
        vec![
            m(1920, 1080, 30, Mjpeg),
            m(1920, 1080, 5, Yuyv),
            m(1280, 720, 30, Mjpeg),
            m(1280, 720, 10, Yuyv),
            m(640, 480, 30, Mjpeg),
            m(640, 480, 30, Yuyv),
            m(320, 240, 30, Mjpeg),
            m(320, 240, 30, Yuyv),
            m(160, 120, 30, Yuyv),
        ]
    }

    #[test]
    fn the_smallest_covering_mode_wins_uncompressed_when_small() {
        // A 128x128 model on a 4:3 board: 160x120 does not cover 128 rows, 320x240 does.
        assert_eq!(
            choose_mode(&webcam(), (128, 128), 4.0 / 3.0, 15),
            Some(m(320, 240, 30, Yuyv))
        );
        // A 640x640 model on a 16:9 board: the smallest 16:9 mode covering it is 1280x720,
        // where MJPEG is preferred (and YUYV only gives 10 fps anyway).
        assert_eq!(
            choose_mode(&webcam(), (640, 640), 16.0 / 9.0, 15),
            Some(m(1280, 720, 30, Mjpeg))
        );
        // 480 rows at 4:3: exactly 640x480, uncompressed.
        assert_eq!(
            choose_mode(&webcam(), (480, 480), 4.0 / 3.0, 15),
            Some(m(640, 480, 30, Yuyv))
        );
    }

    #[test]
    fn without_a_covering_mode_the_largest_is_taken_and_rates_matter() {
        let small = vec![m(320, 240, 30, Yuyv), m(160, 120, 30, Nv12)];
        assert_eq!(
            choose_mode(&small, (640, 640), 4.0 / 3.0, 15),
            Some(m(320, 240, 30, Yuyv))
        );
        // 1920x1080 YUYV at 5 fps is below the minimum rate; MJPEG at 30 is taken.
        assert_eq!(
            choose_mode(&webcam(), (1080, 1080), 16.0 / 9.0, 15),
            Some(m(1920, 1080, 30, Mjpeg))
        );
        // No mode at the board's aspect: any aspect.
        assert_eq!(
            choose_mode(&webcam(), (100, 100), 1.0, 15),
            Some(m(160, 120, 30, Yuyv))
        );
        assert_eq!(choose_mode(&[], (100, 100), 1.0, 15), None);
    }

    #[test]
    fn modes_parse_from_text() {
        assert_eq!("640x480@30 YUYV".parse::<Mode>(), Ok(m(640, 480, 30, Yuyv)));
        assert_eq!(
            "1280x720@15  mjpg".parse::<Mode>(),
            Ok(m(1280, 720, 15, Mjpeg))
        );
        assert!("640x480 YUYV"
            .parse::<Mode>()
            .unwrap_err()
            .contains("WIDTHxHEIGHT@FPS FORMAT"));
        assert!("640x480@30 H264"
            .parse::<Mode>()
            .unwrap_err()
            .contains("\"H264\""));
    }

    /// A driver whose frame call never returns until released, as a camera that hangs in
    /// VIDIOC_DQBUF (no frame, no error); once released, frames come at once.
    #[derive(Clone, Default)]
    struct Hanging {
        released: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
        frame_calls: Arc<AtomicUsize>,
    }

    const MODE: Mode = Mode {
        width: 8,
        height: 8,
        fps: 30,
        format: Yuyv,
    };

    impl Driver for Hanging {
        type Camera = ();

        fn open(&self, _: &CameraId) -> Result<((), Vec<Mode>)> {
            Ok(((), vec![MODE]))
        }

        fn start(&self, _: &CameraId, _: &mut (), _: &Mode) -> Result<()> {
            Ok(())
        }

        fn frame(&self, _: &CameraId, _: &mut (), _: &Mode) -> Result<RgbImage> {
            self.frame_calls.fetch_add(1, Ordering::SeqCst);
            let (released, wake) = &*self.released;
            let mut released = released.lock().expect("lock");
            while !*released {
                released = wake.wait(released).expect("wait");
            }
            std::thread::sleep(Duration::from_millis(1));
            Ok(RgbImage::new(8, 8))
        }
    }

    #[test]
    fn a_driver_that_hangs_costs_at_most_two_threads_and_the_camera_is_back_when_it_returns() {
        let driver = Hanging::default();
        let request = ModeRequest {
            fixed: Some(MODE),
            need: (8, 8),
            aspect: 1.0,
            min_fps: 1,
        };
        let mut camera = V4lCamera::with_driver(CameraId::Index(7), request, driver.clone());
        let short = Duration::from_millis(50);
        for _ in 0..MAX_STUCK_WORKERS {
            assert_eq!(camera.open().expect("opens"), "8x8@30 YUYV");
            let err = camera.grab(short).expect_err("hangs");
            assert!(matches!(err, Error::NoFrame { .. }), "{err}");
            camera.close();
        }
        // Both workers inside the driver (waited for: under an emulator a thread starts late).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while driver.frame_calls.load(Ordering::SeqCst) < MAX_STUCK_WORKERS {
            assert!(
                std::time::Instant::now() < deadline,
                "the workers never called"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = camera.open().expect_err("no third thread");
        assert_eq!(
            err.to_string(),
            "camera:7: 2 earlier capture threads are still inside the driver (a call that never \
             returned); no more are started until they return: replug the camera or restart lookout"
        );
        // Tried again (the capture loop's backoff): still no thread more.
        assert!(camera.open().is_err());
        assert_eq!(driver.frame_calls.load(Ordering::SeqCst), MAX_STUCK_WORKERS);
        // The driver returns: the stuck threads end, and the camera opens and delivers.
        *driver.released.0.lock().expect("lock") = true;
        driver.released.1.notify_all();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while camera.open().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the stuck threads never ended"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let frame = camera.grab(Duration::from_secs(60)).expect("a frame");
        assert_eq!(frame.dimensions(), (8, 8));
        camera.close();
    }
}
