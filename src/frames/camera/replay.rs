//! A folder of images played as a camera: `--source replay:DIR[@FPS]`.
//!
//! Frames come at the given rate (default 10 fps) on the capture thread, looping over the
//! folder, with the same latest-frame, outage and reconnect behaviour as a real camera. If the
//! folder disappears or an image cannot be read, the "camera" is lost until the folder is back.
//! Useful to replay recorded footage at its real pace, and it is how the tests make a camera
//! fail and recover.

use super::{CaptureDevice, Error, Result};
use crate::frames::source::{image_files, read_frame, SourceError};
use image::RgbImage;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Default replay rate.
pub const DEFAULT_FPS: f64 = 10.0;

/// Plays the images of a folder, sorted by name, at a fixed rate.
#[derive(Debug)]
pub struct Replay {
    dir: PathBuf,
    period: Duration,
    files: Vec<PathBuf>,
    next: usize,
    due: Instant,
}

impl Replay {
    /// A replay of `dir` at `fps` frames per second.
    pub fn new(dir: PathBuf, fps: f64) -> Self {
        Self {
            dir,
            period: Duration::from_secs_f64(1.0 / fps),
            files: Vec::new(),
            next: 0,
            due: Instant::now(),
        }
    }
}

impl CaptureDevice for Replay {
    fn open(&mut self) -> Result<String> {
        self.files = image_files(&self.dir)?;
        self.due = Instant::now();
        Ok(format!(
            "{} images at {:.1} fps",
            self.files.len(),
            1.0 / self.period.as_secs_f64()
        ))
    }

    fn grab(&mut self, timeout: Duration) -> Result<RgbImage> {
        let wait = self.due.saturating_duration_since(Instant::now());
        if wait > timeout {
            return Err(Error::NotDue(timeout.as_millis()));
        }
        std::thread::sleep(wait);
        self.due = self.due.max(Instant::now() - self.period) + self.period;
        let path = self
            .files
            .get(self.next % self.files.len().max(1))
            .ok_or_else(|| SourceError::EmptyDirectory {
                path: self.dir.clone(),
            })?;
        self.next += 1;
        Ok(read_frame(path)?.image)
    }

    fn close(&mut self) {
        self.files.clear();
    }

    fn describe(&self) -> String {
        format!("replay:{}", self.dir.display())
    }
}
