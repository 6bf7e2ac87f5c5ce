//! `/metrics`: the run's counters in Prometheus' text format (version 0.0.4), in one place.
//!
//! Updated by the frame loop (a lock held for a few additions per frame) and written out by
//! the server thread when asked.

use crate::results::record::{EventRecord, FrameRecord};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Upper bounds of the latency histograms' buckets, in seconds: from a fast stage on a Pi 5 to
/// a slow model on a Zero.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The stages of a frame, as the records name them.
const STAGES: [&str; 5] = ["capture", "pre", "infer", "post", "drift"];

/// One histogram: counts per bucket (not cumulative), their sum and count.
#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            self.counts[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// What the frame loop tells the metrics between frames (the console's `status` figures).
#[derive(Debug, Clone, Default)]
pub struct LoopFigures {
    /// Frames that could not be read.
    pub failed_frames: u64,
    /// Frames a live source dropped as stale.
    pub dropped_stale: u64,
    /// Frames per second over the last frames.
    pub fps: f64,
    /// Whether the run is paused.
    pub paused: bool,
    /// The model in use, `name@version`.
    pub model: String,
    /// Each watched statistic's last PSI.
    pub drift_psi: BTreeMap<String, f64>,
}

/// The run's counters.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    frames: u64,
    latency: [Histogram; 5],
    events: BTreeMap<String, u64>,
    objects: BTreeMap<String, u64>,
    loop_figures: LoopFigures,
}

impl Metrics {
    /// Counts a frame's record.
    pub fn record(&mut self, record: &FrameRecord) {
        self.frames += 1;
        let l = record.latency_ms;
        for (h, ms) in self
            .latency
            .iter_mut()
            .zip([l.capture, l.pre, l.infer, l.post, l.drift])
        {
            h.observe(ms / 1000.0);
        }
        for n in self.objects.values_mut() {
            *n = 0;
        }
        if let Some(detections) = &record.detections {
            for d in detections {
                *self.objects.entry(d.label.clone()).or_default() += 1;
            }
        }
    }

    /// Counts an event.
    pub fn event(&mut self, event: &EventRecord) {
        *self.events.entry(event.event.clone()).or_default() += 1;
    }

    /// The loop's own figures, as last read.
    pub fn set_loop_figures(&mut self, figures: LoopFigures) {
        self.loop_figures = figures;
    }

    /// The text format, with the server's own figures.
    pub fn render(&self, uptime_s: f64, clients: usize, refused: u64) -> String {
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "lookout_uptime_seconds",
            "gauge",
            "Seconds since the run started.",
        );
        let _ = writeln!(out, "lookout_uptime_seconds {uptime_s:.3}");
        family(
            &mut out,
            "lookout_frames_total",
            "counter",
            "Frames turned into records.",
        );
        let _ = writeln!(out, "lookout_frames_total {}", self.frames);
        let f = &self.loop_figures;
        family(
            &mut out,
            "lookout_frames_failed_total",
            "counter",
            "Frames that could not be read and were skipped.",
        );
        let _ = writeln!(out, "lookout_frames_failed_total {}", f.failed_frames);
        family(
            &mut out,
            "lookout_frames_dropped_total",
            "counter",
            "Frames a live source dropped because a newer one came.",
        );
        let _ = writeln!(out, "lookout_frames_dropped_total {}", f.dropped_stale);
        family(
            &mut out,
            "lookout_frames_per_second",
            "gauge",
            "Frames per second over the last 30 frames.",
        );
        let _ = writeln!(out, "lookout_frames_per_second {:.3}", f.fps);
        family(
            &mut out,
            "lookout_paused",
            "gauge",
            "1 while the run is paused.",
        );
        let _ = writeln!(out, "lookout_paused {}", u8::from(f.paused));
        family(
            &mut out,
            "lookout_model_info",
            "gauge",
            "The model in use, by name and version.",
        );
        let (name, version) = f.model.split_once('@').unwrap_or((&f.model, ""));
        let _ = writeln!(
            out,
            "lookout_model_info{{model=\"{}\",version=\"{}\"}} 1",
            escape(name),
            escape(version)
        );
        family(
            &mut out,
            "lookout_stage_latency_seconds",
            "histogram",
            "Time each stage of a frame took.",
        );
        for (stage, h) in STAGES.iter().zip(&self.latency) {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "lookout_stage_latency_seconds_bucket{{stage=\"{stage}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "lookout_stage_latency_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {}\n\
                 lookout_stage_latency_seconds_sum{{stage=\"{stage}\"}} {:.6}\n\
                 lookout_stage_latency_seconds_count{{stage=\"{stage}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        family(
            &mut out,
            "lookout_events_total",
            "counter",
            "Events by kind (camera_lost counts the camera's reconnects).",
        );
        for (event, n) in &self.events {
            let _ = writeln!(
                out,
                "lookout_events_total{{event=\"{}\"}} {n}",
                escape(event)
            );
        }
        family(
            &mut out,
            "lookout_objects",
            "gauge",
            "Detections of each label in the last frame.",
        );
        for (label, n) in &self.objects {
            let _ = writeln!(out, "lookout_objects{{label=\"{}\"}} {n}", escape(label));
        }
        family(
            &mut out,
            "lookout_drift_psi",
            "gauge",
            "Population Stability Index of each watched statistic's last window.",
        );
        for (stat, psi) in &f.drift_psi {
            let _ = writeln!(
                out,
                "lookout_drift_psi{{stat=\"{}\"}} {}",
                escape(stat),
                number(*psi)
            );
        }
        family(
            &mut out,
            "lookout_http_clients",
            "gauge",
            "HTTP connections open now.",
        );
        let _ = writeln!(out, "lookout_http_clients {clients}");
        family(
            &mut out,
            "lookout_http_refused_total",
            "counter",
            "HTTP connections refused over max_clients (answered 503, or closed unanswered in a flood).",
        );
        let _ = writeln!(out, "lookout_http_refused_total {refused}");
        if let Some(memory) = crate::lifecycle::memory::MemoryUse::now() {
            memory_families(&mut out, &memory);
        }
        out
    }
}

/// The process's memory: resident (under Prometheus' own name for it), its anonymous part and
/// the free heap kept for reuse.
fn memory_families(out: &mut String, memory: &crate::lifecycle::memory::MemoryUse) {
    family(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    let _ = writeln!(
        out,
        "process_resident_memory_bytes {}",
        memory.resident_bytes
    );
    if let Some(anonymous) = memory.anonymous_bytes {
        family(
            out,
            "lookout_memory_anonymous_bytes",
            "gauge",
            "Resident memory that is heap and stacks rather than the binary's and libraries' pages.",
        );
        let _ = writeln!(out, "lookout_memory_anonymous_bytes {anonymous}");
    }
    family(
        out,
        "lookout_heap_kept_bytes",
        "gauge",
        "Free heap kept for the next frame's blocks of 32 KiB to 8 MiB (at most this much is resident).",
    );
    let _ = writeln!(out, "lookout_heap_kept_bytes {}", memory.kept_bytes);
    family(
        out,
        "lookout_heap_reused_total",
        "counter",
        "Requests for blocks of 32 KiB to 8 MiB served with a kept block.",
    );
    let _ = writeln!(out, "lookout_heap_reused_total {}", memory.reused_blocks);
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A sample value as Prometheus spells it (`+Inf`, `-Inf`, `NaN`).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

/// A label value with Prometheus' escapes.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let mut h = Histogram::default();
        for s in [0.0004, 0.003, 0.003, 9.0] {
            h.observe(s);
        }
        let mut m = Metrics::default();
        m.latency[2] = h;
        m.events.insert("a\"b".into(), 2);
        let text = m.render(1.0, 0, 0);
        assert!(text
            .contains("lookout_stage_latency_seconds_bucket{stage=\"infer\",le=\"0.0005\"} 1\n"));
        assert!(
            text.contains("lookout_stage_latency_seconds_bucket{stage=\"infer\",le=\"0.005\"} 3\n")
        );
        assert!(
            text.contains("lookout_stage_latency_seconds_bucket{stage=\"infer\",le=\"2.5\"} 3\n")
        );
        assert!(
            text.contains("lookout_stage_latency_seconds_bucket{stage=\"infer\",le=\"+Inf\"} 4\n")
        );
        assert!(text.contains("lookout_stage_latency_seconds_count{stage=\"infer\"} 4\n"));
        assert!(text.contains("lookout_events_total{event=\"a\\\"b\"} 2\n"));
        assert!(text.contains(
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes "
        ));
    }

    #[test]
    fn memory_is_in_bytes() {
        let mut out = String::new();
        let memory = crate::lifecycle::memory::MemoryUse {
            resident_bytes: 27 << 20,
            anonymous_bytes: Some(9 << 20),
            kept_bytes: 3 << 19,
            reused_blocks: 12,
        };
        memory_families(&mut out, &memory);
        assert!(
            out.contains("\nprocess_resident_memory_bytes 28311552\n"),
            "{out}"
        );
        assert!(
            out.contains("\nlookout_memory_anonymous_bytes 9437184\n"),
            "{out}"
        );
        assert!(out.contains("\nlookout_heap_kept_bytes 1572864\n"), "{out}");
        assert!(out.contains("\nlookout_heap_reused_total 12\n"), "{out}");
    }
}
