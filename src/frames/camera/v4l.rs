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
//! driver returns) and a fresh one is opened.

use super::{CaptureDevice, Error, Result};
use image::RgbImage;
use std::sync::atomic::{AtomicBool, Ordering};
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

struct Worker {
    frames: Receiver<Result<RgbImage>>,
    stop: Arc<AtomicBool>,
}

/// A V4L2 camera as a [`CaptureDevice`].
pub struct V4lCamera {
    id: CameraId,
    request: ModeRequest,
    worker: Option<Worker>,
}

impl V4lCamera {
    /// A camera to be opened by the capture thread.
    pub fn new(id: CameraId, request: ModeRequest) -> Self {
        Self {
            id,
            request,
            worker: None,
        }
    }
}

/// How long opening a camera may take.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

impl CaptureDevice for V4lCamera {
    fn open(&mut self) -> Result<String> {
        self.close();
        let (setup_tx, setup_rx) = mpsc::sync_channel(1);
        let (frame_tx, frame_rx) = mpsc::sync_channel(2);
        let stop = Arc::new(AtomicBool::new(false));
        let (id, request, worker_stop) = (self.id.clone(), self.request.clone(), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || {
                let opened = native::open(&id).and_then(|(mut camera, modes)| {
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
                    native::start(&id, &mut camera, &mode)?;
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
                    let frame = native::frame(&id, &mut camera, &mode);
                    let failed = frame.is_err();
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
}
