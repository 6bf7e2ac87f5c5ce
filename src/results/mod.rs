//! Results: what is made of the model's outputs, and where it goes.
//!
//! - [`decode`]: classification top-k, YOLOv5/YOLOv8, SSD/UltraFace, non-maximum suppression.
//! - [`record`]: the per-frame [`FrameRecord`](record::FrameRecord) and the
//!   [`EventRecord`](record::EventRecord), and their JSON form.
//! - [`sink`]: the [`Sink`](sink::Sink) seam, stdout and file sinks, and the
//!   [`SinkSet`](sink::SinkSet) the run loop hands every record and event to once.
//! - [`file`]: the file sink's file, rotated by size under a total cap.
//! - [`serial`]: the serial line (its protocol in one place, the port, the sink), and
//!   [`console`], the commands typed on it.
//! - [`gpio`]: lines driven by rules on the detections, written against embedded-hal.
//! - [`http`]: the web preview, the API and Prometheus metrics.
//! - [`mqtt`]: results, events, counts and stats through a broker, Home Assistant discovery,
//!   and commands from a topic.
//! - [`outputs`]: a run's `--sink` texts opened into a `SinkSet` and its consoles.

pub mod console;
pub mod decode;
pub mod file;
pub mod gpio;
pub mod http;
pub mod mqtt;
pub mod outputs;
pub mod record;
pub mod serial;
pub mod sink;
