//! Frames: where they come from and how they become the model's input.
//!
//! - [`source`]: [`FrameSource`](source::FrameSource), the seam everything upstream of
//!   pre-processing hides behind; image files, folders and the test pattern.
//! - [`camera`]: V4L2 capture on its own thread (newest frame only, reopened when the camera
//!   goes away), pixel-format conversion, and a folder replayed as a live camera.
//! - [`preprocess`]: resize, letterbox, colour order and normalisation exactly as in training.

pub mod camera;
pub mod preprocess;
pub mod source;
