//! The MQTT schema, in one place: every topic lookout publishes on or listens to, and every
//! message it publishes, with Home Assistant's discovery configs. The README's "MQTT" section
//! shows an example of each; field names change only with a version note.
//!
//! Under `<prefix>/<device>/`:
//!
//! | topic      | QoS | retained | what                                                          |
//! |------------|-----|----------|---------------------------------------------------------------|
//! | `status`   | 1   | yes      | `online`, or `offline` (said at exit, and by the broker as the last will) |
//! | `results`  | 0   | no       | a frame record, as in JSON Lines (`[mqtt] results`)           |
//! | `events`   | 1   | no       | an event record with `seq` (and `resent` when sent again)     |
//! | `counts`   | 1   | yes      | objects of each label in the last frame                       |
//! | `stats`    | 0   | no       | rates, latencies, drops, drift (`[mqtt] stats_interval_s`)    |
//! | `set`      | —   | —        | console commands, read when `[mqtt] commands = true`          |
//! | `reply`    | 1   | no       | the console's answer                                          |
//! | `snapshot` | 0   | no       | the last frame as JPEG, on the `snapshot` command             |

use crate::results::record::{EventRecord, FrameRecord, StageLatency};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

/// The topics of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    base: String,
    discovery_prefix: String,
    device: String,
}

impl Topics {
    /// The topics under `<prefix>/<device>/`, and discovery configs under `discovery_prefix`.
    pub fn new(prefix: &str, device: &str, discovery_prefix: &str) -> Self {
        Self {
            base: format!("{prefix}/{device}"),
            discovery_prefix: discovery_prefix.to_owned(),
            device: device.to_owned(),
        }
    }

    fn topic(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.base)
    }

    /// `online`/`offline`, retained; the last will.
    pub fn status(&self) -> String {
        self.topic("status")
    }
    /// Frame records.
    pub fn results(&self) -> String {
        self.topic("results")
    }
    /// Event records with their sequence numbers.
    pub fn events(&self) -> String {
        self.topic("events")
    }
    /// Per-label counts, retained.
    pub fn counts(&self) -> String {
        self.topic("counts")
    }
    /// Periodic statistics.
    pub fn stats(&self) -> String {
        self.topic("stats")
    }
    /// Where commands are read.
    pub fn set(&self) -> String {
        self.topic("set")
    }
    /// Where the console answers.
    pub fn reply(&self) -> String {
        self.topic("reply")
    }
    /// Where `snapshot` sends the frame.
    pub fn snapshot(&self) -> String {
        self.topic("snapshot")
    }

    /// The device name in topics.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Home Assistant's config topic of one entity: `<discovery>/<component>/lookout_<device>/<object>/config`.
    fn discovery(&self, component: &str, object: &str) -> String {
        format!(
            "{}/{component}/lookout_{}/{object}/config",
            self.discovery_prefix, self.device
        )
    }
}

/// The payloads of `status`.
pub const ONLINE: &str = "online";
/// See [`ONLINE`].
pub const OFFLINE: &str = "offline";

/// An event's payload: the event record with its sequence number first, and `"resent": true`
/// when it went out before on a connection that was lost before the broker acknowledged it
/// (a receiver that has seen this `seq` drops it).
pub fn event_payload(seq: u64, resent: bool, event_json: &str) -> String {
    // The record is a JSON object: the sequence number goes in after its opening brace, so the
    // queue keeps the record as serialised once.
    let body = event_json.strip_prefix('{').unwrap_or(event_json);
    let resent = if resent { ",\"resent\":true" } else { "" };
    if body.trim_start().starts_with('}') {
        format!("{{\"seq\":{seq}{resent}}}")
    } else {
        format!("{{\"seq\":{seq}{resent},{body}")
    }
}

/// An event record as the queue keeps it (without its sequence number).
pub fn event_json(event: &EventRecord) -> String {
    serde_json::to_string(event).unwrap_or_else(|e| {
        // Serialising plain strings and numbers cannot fail; if it ever did, the event is
        // still told.
        json!({"event": event.event, "message": format!("unserialisable event: {e}")}).to_string()
    })
}

/// A frame record's payload.
pub fn results_payload(record: &FrameRecord) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// Objects of each label in a record: every label of the model (0 when absent), so a sensor
/// reads 0 rather than nothing. A detector counts its detections; a classifier counts its
/// top class as 1.
pub fn label_counts(labels: &[String], record: &FrameRecord) -> BTreeMap<String, u32> {
    let mut counts: BTreeMap<String, u32> = labels.iter().map(|l| (l.clone(), 0)).collect();
    if let Some(detections) = &record.detections {
        for d in detections {
            *counts.entry(d.label.clone()).or_default() += 1;
        }
    } else if let Some(top) = record.classes.as_ref().and_then(|c| c.first()) {
        *counts.entry(top.label.clone()).or_default() += 1;
    }
    counts
}

/// The `counts` payload.
pub fn counts_payload(counts: &BTreeMap<String, u32>) -> Vec<u8> {
    serde_json::to_vec(counts).unwrap_or_default()
}

/// One stage's latency over a stats interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Mean, in milliseconds.
    pub mean: f64,
    /// Largest, in milliseconds.
    pub max: f64,
}

/// The `stats` payload: what happened since the last one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// When, RFC 3339 UTC.
    pub timestamp: String,
    /// Seconds since the run started.
    pub uptime_s: f64,
    /// `name@version` of the model of the last frame.
    pub model: String,
    /// Frames since start.
    pub frames: u64,
    /// Frames per second over the interval.
    pub fps: f64,
    /// Per stage, over the interval's frames.
    pub latency_ms: BTreeMap<&'static str, LatencySummary>,
    /// Results messages published since start.
    pub results_published: u64,
    /// Results messages not published (broker away, or not yet connected, or slow) since
    /// start: results are latest values, never queued.
    pub results_dropped: u64,
    /// Events waiting for the broker now.
    pub events_queued: u64,
    /// Events dropped since start (the queue was full; the oldest went).
    pub events_dropped: u64,
    /// Connections to the broker lost since start.
    pub reconnects: u64,
    /// Population Stability Index of each watched statistic's last window (absent before the
    /// first window, and when drift is not watched).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub drift_psi: BTreeMap<String, f64>,
}

/// Latency totals over a stats interval.
#[derive(Debug, Clone, Default)]
pub struct LatencyTotals {
    frames: u64,
    sum: [f64; 5],
    max: [f64; 5],
}

impl LatencyTotals {
    /// Adds one frame's.
    pub fn add(&mut self, l: &StageLatency) {
        let stages = [l.capture, l.pre, l.infer, l.post, l.drift];
        self.frames += 1;
        for (i, v) in stages.into_iter().enumerate() {
            self.sum[i] += v;
            self.max[i] = self.max[i].max(v);
        }
    }

    /// Frames added.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Mean and max per stage, rounded to 1 µs.
    pub fn summary(&self) -> BTreeMap<&'static str, LatencySummary> {
        let names = ["capture", "pre", "infer", "post", "drift"];
        let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
        names
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let mean = if self.frames == 0 {
                    0.0
                } else {
                    self.sum[i] / self.frames as f64
                };
                (
                    name,
                    LatencySummary {
                        mean: round(mean),
                        max: round(self.max[i]),
                    },
                )
            })
            .collect()
    }
}

/// What Home Assistant's discovery needs to know about this device.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// The board profile's name.
    pub board: String,
}

/// A label as part of an entity id: lower case letters, digits and `_`.
pub fn object_id(label: &str) -> String {
    let id: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        "label".into()
    } else {
        id
    }
}

/// Home Assistant discovery configs, `(topic, payload)`, each retained: per label a binary
/// sensor (`<label> seen`, on while one is in the frame) and a sensor (`<label> count`), both
/// reading `counts`, both unavailable while `status` is `offline`. The fields are the ones Home
/// Assistant's MQTT discovery documents for `binary_sensor` and `sensor`.
pub fn discovery_configs(
    topics: &Topics,
    labels: &[String],
    info: &DeviceInfo,
) -> Vec<(String, Vec<u8>)> {
    let node = format!("lookout_{}", topics.device());
    let device = json!({
        "identifiers": [node],
        "name": format!("lookout {}", topics.device()),
        "manufacturer": "lookout",
        "model": info.board,
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let mut configs = Vec::with_capacity(labels.len() * 2);
    let mut seen_ids = std::collections::BTreeSet::new();
    for label in labels {
        let mut id = object_id(label);
        // Two labels that differ only in punctuation must not share an entity.
        let mut n = 2;
        while !seen_ids.insert(id.clone()) {
            id = format!("{}_{n}", object_id(label));
            n += 1;
        }
        // The label as a Jinja string literal: JSON's escaping is one Jinja accepts.
        let key = serde_json::to_string(label).unwrap_or_default();
        let count = format!("value_json.get({key}, 0)");
        // What both entities of a label say alike: where they read, when they are there.
        let entity = |name: String, unique: String, template: String, own: serde_json::Value| {
            let mut config = json!({
                "name": name,
                "unique_id": unique,
                "state_topic": topics.counts(),
                "value_template": template,
                "availability_topic": topics.status(),
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
                "device": device,
                "origin": {"name": "lookout", "sw_version": env!("CARGO_PKG_VERSION")},
            });
            if let (Some(config), serde_json::Value::Object(own)) = (config.as_object_mut(), own) {
                config.extend(own);
            }
            config
        };
        let binary = entity(
            format!("{label} seen"),
            format!("{node}_{id}_seen"),
            format!("{{{{ 'ON' if ({count} | int) > 0 else 'OFF' }}}}"),
            json!({"payload_on": "ON", "payload_off": "OFF", "device_class": "occupancy"}),
        );
        let sensor = entity(
            format!("{label} count"),
            format!("{node}_{id}_count"),
            format!("{{{{ {count} | int }}}}"),
            json!({"state_class": "measurement", "unit_of_measurement": "objects"}),
        );
        configs.push((
            topics.discovery("binary_sensor", &format!("{id}_seen")),
            binary.to_string().into_bytes(),
        ));
        configs.push((
            topics.discovery("sensor", &format!("{id}_count")),
            sensor.to_string().into_bytes(),
        ));
    }
    configs
}

/// Most labels that get discovery configs: a classifier of 1000 classes would otherwise add
/// 2000 entities to Home Assistant.
pub const MAX_DISCOVERY_LABELS: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_payloads_carry_their_number_first() {
        let event = EventRecord::now("camera_lost", "camera", "gone".into());
        let json = event_json(&event);
        let first: serde_json::Value =
            serde_json::from_str(&event_payload(7, false, &json)).expect("json");
        assert_eq!(first["seq"], 7);
        assert_eq!(first["event"], "camera_lost");
        assert!(first.get("resent").is_none());
        let again: serde_json::Value =
            serde_json::from_str(&event_payload(7, true, &json)).expect("json");
        assert_eq!(again["resent"], true);
        assert_eq!(again["message"], "gone");
        assert_eq!(event_payload(3, true, "{}"), "{\"seq\":3,\"resent\":true}");
    }

    #[test]
    fn discovery_names_each_label_once_and_reads_counts() {
        let topics = Topics::new("lookout", "door", "homeassistant");
        let labels = vec!["person".to_owned(), "Person".to_owned()];
        let info = DeviceInfo {
            board: "rpi-5".into(),
        };
        let configs = discovery_configs(&topics, &labels, &info);
        let names: Vec<&str> = configs.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "homeassistant/binary_sensor/lookout_door/person_seen/config",
                "homeassistant/sensor/lookout_door/person_count/config",
                "homeassistant/binary_sensor/lookout_door/person_2_seen/config",
                "homeassistant/sensor/lookout_door/person_2_count/config",
            ]
        );
        let sensor: serde_json::Value = serde_json::from_slice(&configs[3].1).expect("json");
        assert_eq!(sensor["state_topic"], "lookout/door/counts");
        assert_eq!(
            sensor["value_template"],
            "{{ value_json.get(\"Person\", 0) | int }}"
        );
    }
}
