//! Frames: where they come from and how they become the model's input.
//!
//! - [`source`]: [`FrameSource`], the seam everything upstream of
//!   pre-processing hides behind; image files, folders and the test pattern.
//! - [`camera`]: V4L2 capture on its own thread (newest frame only, reopened when the camera
//!   goes away), pixel-format conversion, frames turned for a camera mounted sideways or upside
//!   down, network cameras (MJPEG over HTTP, RTSP with H.264), and a folder replayed as a live
//!   camera.
//! - [`preprocess`]: resize, letterbox, colour order and normalisation exactly as in training.

pub mod camera;
pub mod preprocess;
pub mod source;

use crate::board::CameraDefaults;
use source::{FrameSource, SourceError};

/// A source opened from its `--source` text.
pub struct Opened {
    /// The source.
    pub source: Box<dyn FrameSource>,
    /// Whether it is live (a camera, a replayed folder): its frames go stale while the run
    /// waits, so nothing downstream should make it wait. Files do not go stale.
    pub live: bool,
}

/// Opens a `--source` text: `camera[:N|:/dev/videoN]`, network cameras (`http://` MJPEG,
/// `rtsp://`; also the board's `device` when it is such a URL) and `replay:DIR[@FPS]` as live sources
/// (the board's `[camera]` settings, the model input `need` as (width, height), and a fixed
/// `mode` from the command line choose the camera's mode; its `rotate` and `flip` turn the
/// frames of both), anything else as files or the
/// test pattern ([`source::open`]), `looping` folders.
pub fn open_source(
    spec: &str,
    looping: bool,
    camera_defaults: &CameraDefaults,
    need: (u32, u32),
    mode: Option<&str>,
) -> Result<Opened, SourceError> {
    let live = |source: camera::LatestFrame| Opened {
        source: Box::new(source),
        live: true,
    };
    let orientation = camera::orient::Orientation::of(camera_defaults);
    if camera::net::is_network(spec) {
        return Ok(live(camera::open_network(spec, orientation)?));
    }
    Ok(match crate::spec::scheme(spec, &["replay:", "camera"]) {
        Some(("replay:", rest)) => live(camera::open_replay(spec, rest, orientation)?),
        // The board's camera may be a network camera: `device = "rtsp://..."`.
        Some(("camera", "")) if camera::net::is_network(&camera_defaults.device) => {
            live(camera::open_network(&camera_defaults.device, orientation)?)
        }
        Some((_, rest)) => live(camera::open_camera(
            spec,
            rest,
            camera_defaults,
            need,
            mode,
        )?),
        None => Opened {
            source: source::open(spec, looping)?,
            live: false,
        },
    })
}
