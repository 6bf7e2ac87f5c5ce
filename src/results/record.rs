//! The per-frame result record: what lookout tells the application about each frame.
//!
//! One record per frame, serialised as one JSON object per line by every sink that speaks JSON.
//! The schema is documented in the README ("Result records"); field names are part of the
//! product's interface and change only with a version note.

use serde::Serialize;

/// Time spent in each stage of one frame, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageLatency {
    /// Getting the frame from the source (read + decode for files).
    pub capture: f64,
    /// Resize, colour conversion and normalisation into the input tensor.
    pub pre: f64,
    /// The model run.
    pub infer: f64,
    /// Decoding, NMS and mapping boxes to source pixels.
    pub post: f64,
    /// The drift monitor's statistics of the frame (0 when drift is not watched).
    pub drift: f64,
}

impl StageLatency {
    /// The same latencies rounded to 1 µs: finer digits are timer noise and only lengthen
    /// every record.
    pub fn rounded_to_microseconds(self) -> Self {
        let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
        Self {
            capture: round(self.capture),
            pre: round(self.pre),
            infer: round(self.infer),
            post: round(self.post),
            drift: round(self.drift),
        }
    }

    /// Sum of all stages.
    pub fn total(&self) -> f64 {
        self.capture + self.pre + self.infer + self.post + self.drift
    }
}

/// One class of a classifier's top-k.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassRecord {
    /// Index in the manifest's labels.
    pub label_id: usize,
    /// The label.
    pub label: String,
    /// Probability (or raw score when the manifest does not ask for softmax).
    pub score: f32,
}

/// One detected object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectionRecord {
    /// Index in the manifest's labels.
    pub label_id: usize,
    /// The label.
    pub label: String,
    /// Confidence, 0..1.
    pub score: f32,
    /// `[x0, y0, x1, y1]` in source-frame pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Pose models only: `[x, y, score]` per keypoint in the model's order, x and y in
    /// source-frame pixels (clamped to the frame like the box), score the model's visibility
    /// (1 when it gives none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keypoints: Option<Vec<[f32; 3]>>,
    /// The tracked object this detection belongs to (when tracking is on, and once the object
    /// is confirmed: see [`crate::scene`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
}

/// Everything reported about one frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameRecord {
    /// Frame sequence number since start, from 0.
    pub seq: u64,
    /// Capture time, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// `name@version` of the model that produced this record.
    pub model: String,
    /// Source frame identifier (file name or frame counter).
    pub frame: String,
    /// `[width, height]` of the source frame in pixels.
    pub frame_size: [u32; 2],
    /// Per-stage latency.
    pub latency_ms: StageLatency,
    /// Top-k classes (classifiers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<ClassRecord>>,
    /// Detections sorted by score, highest first (detectors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detections: Option<Vec<DetectionRecord>>,
    /// Output tensor shapes (raw decoder only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<Vec<usize>>>,
    /// Each output's first values, with whether there are more (raw decoder only, unless the
    /// manifest's `values` is 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<crate::results::decode::RawValues>>,
    /// Objects present in each zone after this frame (when the board defines zones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<crate::scene::ZoneCount>>,
    /// The board's SoC temperature and throttling flags, as last read (where the board says
    /// them: see [`crate::lifecycle::health`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::lifecycle::health::HealthReading>,
}

/// Something that happened outside any one frame (a camera lost or restored), reported on
/// the sinks between frame records. In JSON Lines it is told apart by its `event` key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    /// What happened: `camera_lost`, `camera_restored`, `drift`, `drift_cleared`,
    /// `object_entered`, `object_updated`, `object_left`, … (the README's list).
    pub event: String,
    /// When, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// Which source or device.
    pub source: String,
    /// Details for a person.
    pub message: String,
    /// For `drift` and `drift_cleared`: which statistic, how far off, over which frames.
    #[serde(flatten)]
    pub drift: Option<DriftDetail>,
    /// For `object_entered`, `object_updated` and `object_left`: which object, where
    /// ([`crate::scene`]).
    #[serde(flatten)]
    pub object: Option<crate::scene::ObjectEvent>,
}

impl EventRecord {
    /// An event happening now, without drift details.
    pub fn now(kind: &str, source: &str, message: String) -> Self {
        Self {
            event: kind.into(),
            timestamp: format_timestamp(std::time::SystemTime::now()),
            source: source.into(),
            message,
            drift: None,
            object: None,
        }
    }
}

/// What a drift event is about (see [`crate::lifecycle::drift`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftDetail {
    /// The statistic: `brightness`, `red`, `green`, `blue`, `sharpness`, `top_score`,
    /// `classes` or `detections`.
    pub stat: String,
    /// Population Stability Index of the last window against the model's reference profile.
    pub psi: f64,
    /// The threshold crossed: `alarm_psi` for `drift`, `clear_psi` for `drift_cleared`.
    pub threshold: f64,
    /// Windows in a row past the threshold.
    pub windows: u32,
    /// Sequence numbers of the first and last frame of the last window.
    pub window: [u64; 2],
}

/// RFC 3339 UTC timestamp with milliseconds. A clock set before 1970 or after 9999 (a board
/// without a battery-backed clock, a GPS module's garbage) is written as the nearest time
/// RFC 3339 can say, where the formatter would panic.
pub fn format_timestamp(time: std::time::SystemTime) -> String {
    use std::time::{Duration, UNIX_EPOCH};
    // The last millisecond of 9999-12-31.
    let last = UNIX_EPOCH + Duration::from_millis(253_402_300_799_999);
    humantime::format_rfc3339_millis(time.clamp(UNIX_EPOCH, last)).to_string()
}

#[cfg(test)]
impl FrameRecord {
    /// A record of frame `seq` with no detections, for the tests of what handles records.
    pub(crate) fn empty(seq: u64) -> Self {
        FrameRecord {
            seq,
            timestamp: "2026-12-07T08:00:00.000Z".into(),
            model: "m@1".into(),
            frame: format!("f{seq}"),
            frame_size: [8, 8],
            latency_ms: StageLatency::default(),
            classes: None,
            detections: Some(Vec::new()),
            outputs: None,
            values: None,
            zones: None,
            health: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_outside_what_rfc_3339_can_say_are_clamped_not_a_panic() {
        let at = |ms: u64| format_timestamp(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(at(1_764_750_062_345), "2025-12-03T08:21:02.345Z");
        assert_eq!(
            format_timestamp(UNIX_EPOCH - Duration::from_secs(3600)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(at(300_000_000_000_000), "9999-12-31T23:59:59.999Z");
    }
}
