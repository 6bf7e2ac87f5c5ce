//! Latency measurement of the real pipeline, stage by stage, against bare inference.
//!
//! The question this answers: how much does lookout add around the model? Frames are read once
//! into memory (so disk and decode speed do not blur the figures), then pushed through the
//! whole pipeline; afterwards the model alone is run the same number of times on the same
//! input. The ratio of the two medians is lookout's overhead.

use crate::pipeline::{millis, Pipeline, PipelineError};
use crate::record::StageLatency;
use crate::source::{Frame, FrameSource, SourceError};
use serde::Serialize;
use std::time::Instant;

/// Percentiles of one stage, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of a sample (nearest-rank); zeros for an empty sample.
    pub fn of(samples: &[f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank =
            |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Self {
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: sorted[sorted.len() - 1],
        }
    }
}

/// The result of a benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// `name@version`.
    pub model: String,
    /// Timed frames.
    pub frames: usize,
    /// Untimed warm-up frames.
    pub warmup: usize,
    /// Pre-processing.
    pub pre_ms: Percentiles,
    /// Model run inside the pipeline.
    pub infer_ms: Percentiles,
    /// Decoding and box mapping.
    pub post_ms: Percentiles,
    /// pre + infer + post per frame.
    pub pipeline_ms: Percentiles,
    /// The model alone, run back to back on one input.
    pub bare_infer_ms: Percentiles,
    /// Median pipeline time over median bare inference time.
    pub overhead_ratio: f64,
    /// Frames per second at the median pipeline time.
    pub fps: f64,
    /// What running the model occupies.
    pub footprint: Footprint,
}

/// Bytes a deployment of the model occupies: on storage and, at the peak, in memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Footprint {
    /// The ONNX file.
    pub model_bytes: u64,
    /// The lookout executable (with any model embedded in it); `None` where it cannot be found.
    pub binary_bytes: Option<u64>,
    /// The process's peak resident memory so far (`VmHWM`); `None` where the kernel does not
    /// report it.
    pub peak_rss_bytes: Option<u64>,
}

impl Footprint {
    /// Measures this process now, for a model of `model_bytes`.
    pub fn measure(model_bytes: u64) -> Self {
        let binary_bytes = std::env::current_exe()
            .and_then(std::fs::metadata)
            .map(|m| m.len())
            .ok();
        let peak_rss_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| peak_rss_from_status(&status));
        Footprint {
            model_bytes,
            binary_bytes,
            peak_rss_bytes,
        }
    }
}

/// The `VmHWM:  1234 kB` line of `/proc/<pid>/status`, in bytes.
fn peak_rss_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let mut words = line.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next()? {
        "kB" => value.checked_mul(1024),
        _ => None,
    }
}

/// Reads up to `count` frames from a source into memory (fewer if the source ends).
pub fn preload(source: &mut dyn FrameSource, count: usize) -> Result<Vec<Frame>, SourceError> {
    let mut frames = Vec::with_capacity(count);
    while frames.len() < count {
        match source.next_frame()? {
            Some(frame) => frames.push(frame),
            None => break,
        }
    }
    Ok(frames)
}

/// Runs `warmup` untimed then `frames` timed frames through the pipeline, cycling over `input`,
/// then times bare inference as often. `model_bytes` is the ONNX file's size, for the footprint.
pub fn run(
    pipeline: &mut Pipeline,
    input: &[Frame],
    warmup: usize,
    frames: usize,
    model_bytes: u64,
) -> Result<BenchReport, PipelineError> {
    let mut stages: Vec<StageLatency> = Vec::with_capacity(frames);
    for (i, frame) in input.iter().cycle().take(warmup + frames).enumerate() {
        let record = pipeline.process(frame, std::time::Duration::ZERO)?;
        if i >= warmup {
            stages.push(record.latency_ms);
        }
    }
    let engine = pipeline.engine_mut();
    let mut bare = Vec::with_capacity(frames);
    for i in 0..warmup + frames {
        let started = Instant::now();
        engine.run()?;
        if i >= warmup {
            bare.push(millis(started.elapsed()));
        }
    }
    let column = |f: fn(&StageLatency) -> f64| -> Vec<f64> { stages.iter().map(f).collect() };
    let pipeline_ms = Percentiles::of(&column(|s| s.pre + s.infer + s.post));
    let bare_infer_ms = Percentiles::of(&bare);
    Ok(BenchReport {
        model: pipeline.manifest().id(),
        frames: stages.len(),
        warmup,
        pre_ms: Percentiles::of(&column(|s| s.pre)),
        infer_ms: Percentiles::of(&column(|s| s.infer)),
        post_ms: Percentiles::of(&column(|s| s.post)),
        // A model too fast for the timer would divide by zero: report 0 rather than inf.
        overhead_ratio: ratio_or_zero(pipeline_ms.p50, bare_infer_ms.p50),
        fps: ratio_or_zero(1000.0, pipeline_ms.p50),
        pipeline_ms,
        bare_infer_ms,
        footprint: Footprint::measure(model_bytes),
    })
}

fn ratio_or_zero(numerator: f64, denominator: f64) -> f64 {
    if denominator > 0.0 {
        numerator / denominator
    } else {
        0.0
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "model {}: {} frames after {} warm-up",
            self.model, self.frames, self.warmup
        )?;
        writeln!(
            f,
            "{:<14} {:>9} {:>9} {:>9} {:>9}",
            "stage (ms)", "p50", "p95", "p99", "max"
        )?;
        for (name, p) in [
            ("pre", self.pre_ms),
            ("infer", self.infer_ms),
            ("post", self.post_ms),
            ("pipeline", self.pipeline_ms),
            ("bare infer", self.bare_infer_ms),
        ] {
            writeln!(
                f,
                "{name:<14} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                p.p50, p.p95, p.p99, p.max
            )?;
        }
        writeln!(
            f,
            "pipeline / bare inference (medians): {:.3}",
            self.overhead_ratio
        )?;
        writeln!(f, "throughput at the median: {:.1} fps", self.fps)?;
        let mib = |b: Option<u64>| match b {
            Some(b) => format!("{:.2} MiB", b as f64 / 1048576.0),
            None => "unknown".into(),
        };
        write!(
            f,
            "model file {} bytes, binary {}, peak resident memory {}",
            self.footprint.model_bytes,
            mib(self.footprint.binary_bytes),
            mib(self.footprint.peak_rss_bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        let p = Percentiles::of(&samples);
        assert_eq!(p.p50, 10.0);
        assert_eq!(p.p95, 19.0);
        assert_eq!(p.p99, 20.0);
        assert_eq!(p.max, 20.0);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(Percentiles::of(&hundred).p99, 99.0);
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
        assert_eq!(Percentiles::of(&[3.5]).p95, 3.5);
    }

    #[test]
    fn peak_rss_is_read_from_the_status_line_in_bytes() {
        let status =
            "Name:\tlookout\nVmPeak:\t  900000 kB\nVmHWM:\t   52344 kB\nVmRSS:\t 51000 kB\n";
        assert_eq!(peak_rss_from_status(status), Some(52344 * 1024));
        assert_eq!(peak_rss_from_status("VmRSS:\t 10 kB\n"), None);
        assert_eq!(peak_rss_from_status("VmHWM:\t 10 MB\n"), None);
        assert_eq!(peak_rss_from_status("VmHWM:\t lots kB\n"), None);
    }
}
