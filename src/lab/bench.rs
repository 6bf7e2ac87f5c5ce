//! Latency and throughput of the real pipeline, stage by stage, against bare inference.
//!
//! The question this answers: how much does lookout add around the model, and how many frames
//! a second does a board get? Frames are read once into memory (the read and decode times are
//! kept as the capture stage), so disk and decode speed do not blur the rest. Then whole frames
//! go through the pipeline on `workers` threads, each with its own copy of the model, and the
//! records are put back in sequence order and emitted to a sink, as `run` would. Afterwards the
//! model alone is run as often on one input. The ratio of the medians is lookout's overhead.

use crate::frames::source::{Frame, FrameSource, SourceError};
use crate::manifest::Precision;
use crate::pipeline::{millis, PipelineError, Watched};
use crate::results::record::{FrameRecord, StageLatency};
use crate::results::sink::{Sink, SinkError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Barrier};
use std::time::{Duration, Instant};

/// Errors of a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Loading the model or running a frame.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The sink the records go to.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A worker thread died (a bug, not bad input).
    #[error("bench worker {0} stopped without a result")]
    WorkerLost(usize),
    /// Nothing to run on.
    #[error("no frames to benchmark on")]
    NoFrames,
}

/// How a benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchOptions {
    /// Untimed frames each worker runs first.
    pub warmup: usize,
    /// Timed frames, over all workers.
    pub frames: usize,
    /// Threads that each run whole frames with their own copy of the model.
    pub workers: usize,
}

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

/// Bytes a deployment of the model occupies: on storage and, at the peak, in memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Footprint {
    /// The ONNX file.
    pub model_bytes: u64,
    /// The lookout executable (with any model embedded in it); `None` where it cannot be found.
    pub binary_bytes: Option<u64>,
    /// The process's peak resident memory while the model ran (`VmHWM`); `None` where the
    /// kernel does not report it. It includes the frames held in memory for the benchmark.
    pub peak_rss_bytes: Option<u64>,
    /// Pixel bytes of the frames held in memory for the benchmark, part of the peak: a camera
    /// run holds two or three frames instead.
    pub preloaded_frame_bytes: u64,
}

impl Footprint {
    /// Measures this process now, for a model of `model_bytes` run on `frames`.
    pub fn measure(model_bytes: u64, frames: &[Frame]) -> Self {
        let binary_bytes = std::env::current_exe()
            .and_then(std::fs::metadata)
            .map(|m| m.len())
            .ok();
        let peak_rss_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| crate::lifecycle::memory::status_bytes(&status, "VmHWM"));
        Footprint {
            model_bytes,
            binary_bytes,
            peak_rss_bytes,
            preloaded_frame_bytes: frames.iter().map(|f| f.image.as_raw().len() as u64).sum(),
        }
    }
}

/// The result of benchmarking one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// `name@version`.
    pub model: String,
    /// The float type the model was computed in.
    pub compute: Precision,
    /// Where the model came from (a path, or the embedded manifest).
    pub origin: String,
    /// Timed frames.
    pub frames: usize,
    /// Untimed warm-up frames per worker.
    pub warmup: usize,
    /// Threads running whole frames.
    pub workers: usize,
    /// Reading and decoding each distinct input frame once, before the timed run.
    pub capture_ms: Percentiles,
    /// Pre-processing.
    pub pre_ms: Percentiles,
    /// Model run inside the pipeline.
    pub infer_ms: Percentiles,
    /// Decoding and box mapping.
    pub post_ms: Percentiles,
    /// The drift monitor's statistics (0 when the model has no reference profile or the
    /// board turns drift off).
    pub drift_ms: Percentiles,
    /// Writing the record to the sink.
    pub emit_ms: Percentiles,
    /// pre + infer + post + drift + emit per frame.
    pub pipeline_ms: Percentiles,
    /// The model alone, run back to back on one input.
    pub bare_infer_ms: Percentiles,
    /// Median pipeline time over median bare inference time.
    pub overhead_ratio: f64,
    /// Timed frames over the wall-clock time from the first frame's start to the last record
    /// emitted.
    pub fps: f64,
    /// That wall-clock time, in seconds.
    pub wall_seconds: f64,
    /// What running the model occupies.
    pub footprint: Footprint,
    /// Where the model's time goes by kind of operator, at each thread count measured
    /// (`bench --ops`); absent unless asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operators: Option<Vec<(usize, crate::model::engine::OperatorProfile)>>,
}

/// The model alone on one input, nothing around it (`bench --bare-only`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BareReport {
    /// `name@version`.
    pub model: String,
    /// The float type the model was computed in.
    pub compute: Precision,
    /// Where the model came from.
    pub origin: String,
    /// Timed runs.
    pub frames: usize,
    /// Untimed runs first.
    pub warmup: usize,
    /// Each run.
    pub bare_infer_ms: Percentiles,
}

impl std::fmt::Display for BareReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.bare_infer_ms;
        write!(
            f,
            "model {} ({}{}): the model alone, {} runs after {} untimed\n\
             bare infer (ms)  p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}",
            self.model,
            self.origin,
            computed_in(self.compute),
            self.frames,
            self.warmup,
            p.p50,
            p.p95,
            p.p99,
            p.max
        )
    }
}

/// Reads up to `count` frames from a source into memory (fewer if the source ends), with the
/// time each one took to read.
pub fn preload(
    source: &mut dyn FrameSource,
    count: usize,
) -> Result<(Vec<Frame>, Vec<f64>), SourceError> {
    let mut frames = Vec::with_capacity(count);
    let mut capture_ms = Vec::with_capacity(count);
    while frames.len() < count {
        let started = Instant::now();
        match source.next_frame()? {
            Some(frame) => {
                capture_ms.push(millis(started.elapsed()));
                frames.push(frame);
            }
            None => break,
        }
    }
    Ok((frames, capture_ms))
}

/// What one worker sends per frame: its sequence number and the outcome.
type Outcome = (usize, Result<FrameRecord, PipelineError>);

/// Benchmarks one model. `load` builds a pipeline (called once per worker, on the worker's
/// thread); frames cycle over `input`, whose read times are `capture_ms`. Records go to `sink`
/// in sequence order; `progress` hears how many have been emitted. `model_bytes` is the ONNX
/// file's size, for the footprint.
pub fn run(
    load: &(dyn Fn() -> Result<Watched, PipelineError> + Sync),
    input: &[Frame],
    capture_ms: &[f64],
    options: BenchOptions,
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut(usize),
    model_bytes: u64,
) -> Result<BenchReport, BenchError> {
    if input.is_empty() {
        return Err(BenchError::NoFrames);
    }
    let workers = options.workers.max(1);
    // The previous model's peak must not count as this one's.
    reset_peak_rss();
    let next_seq = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let ready = Barrier::new(workers + 1);
    let (tx, rx) = mpsc::sync_channel::<Outcome>(workers * 2);

    let (collected, pipelines) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let tx = tx.clone();
                let (next_seq, stop, ready) = (&next_seq, &stop, &ready);
                let shared = Shared {
                    next_seq,
                    stop,
                    ready,
                };
                scope.spawn(move || worker(load, input, options, shared, i == 0, tx))
            })
            .collect();
        drop(tx);
        ready.wait();
        let collected = collect_in_order(rx, options.frames, sink, progress, &stop);
        let pipelines: Vec<_> = handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| h.join().map_err(|_| BenchError::WorkerLost(i)))
            .collect();
        (collected, pipelines)
    });
    let mut first = None;
    for pipeline in pipelines {
        let pipeline = pipeline??;
        first.get_or_insert(pipeline);
    }
    let Collected {
        stages,
        emit_ms,
        wall,
    } = collected?;
    sink.flush()?;
    let (mut pipeline, bare) = first.ok_or(BenchError::WorkerLost(0))?;
    let column = |f: fn(&StageLatency) -> f64| -> Vec<f64> { stages.iter().map(f).collect() };
    let per_frame: Vec<f64> = stages
        .iter()
        .zip(&emit_ms)
        .map(|(s, emit)| s.pre + s.infer + s.post + s.drift + emit)
        .collect();
    let pipeline_ms = Percentiles::of(&per_frame);
    let bare_infer_ms = Percentiles::of(&bare);
    let wall_seconds = wall.as_secs_f64();
    Ok(BenchReport {
        model: pipeline.manifest().id(),
        compute: pipeline.pipeline_mut().engine_mut()?.computes_in(),
        origin: pipeline.origin().to_owned(),
        frames: stages.len(),
        warmup: options.warmup,
        workers,
        capture_ms: Percentiles::of(capture_ms),
        pre_ms: Percentiles::of(&column(|s| s.pre)),
        infer_ms: Percentiles::of(&column(|s| s.infer)),
        post_ms: Percentiles::of(&column(|s| s.post)),
        drift_ms: Percentiles::of(&column(|s| s.drift)),
        emit_ms: Percentiles::of(&emit_ms),
        // A model too fast for the timer would divide by zero: report 0 rather than inf.
        overhead_ratio: ratio_or_zero(pipeline_ms.p50, bare_infer_ms.p50),
        fps: ratio_or_zero(stages.len() as f64, wall_seconds),
        wall_seconds,
        pipeline_ms,
        bare_infer_ms,
        footprint: Footprint::measure(model_bytes, input),
        operators: None,
    })
}

/// What the workers share: the next frame number, the collector's stop flag and the start line.
#[derive(Clone, Copy)]
struct Shared<'a> {
    next_seq: &'a AtomicUsize,
    stop: &'a AtomicBool,
    ready: &'a Barrier,
}

/// One worker: loads its model, warms up, waits for the others, then takes frame numbers until
/// there are none left or the collector says stop. Returns its pipeline and, for `bare`, the
/// bare-inference times (see [`bare_inference`]).
fn worker(
    load: &(dyn Fn() -> Result<Watched, PipelineError> + Sync),
    input: &[Frame],
    options: BenchOptions,
    shared: Shared<'_>,
    bare: bool,
    results: mpsc::SyncSender<Outcome>,
) -> Result<(Watched, Vec<f64>), BenchError> {
    let Shared {
        next_seq,
        stop,
        ready,
    } = shared;
    let warmed = load().and_then(|mut pipeline| {
        for frame in input.iter().cycle().take(options.warmup) {
            pipeline.process(frame, Duration::ZERO)?;
        }
        Ok(pipeline)
    });
    // Every worker reaches the barrier, failed or not, or the others would wait forever.
    ready.wait();
    let mut pipeline = warmed?;
    while !stop.load(Ordering::Relaxed) {
        let seq = next_seq.fetch_add(1, Ordering::Relaxed);
        if seq >= options.frames {
            break;
        }
        let outcome = pipeline.process(&input[seq % input.len()], Duration::ZERO);
        let failed = outcome.is_err();
        if results.send((seq, outcome)).is_err() || failed {
            break;
        }
    }
    // Hang up before the bare runs, so the collector is not kept waiting for them.
    drop(results);
    let times = if bare {
        bare_inference(&mut pipeline, options)?
    } else {
        Vec::new()
    };
    Ok((pipeline, times))
}

/// The model alone, run back to back on the last frame's input: what the pipeline's ratio is
/// taken against. Timed on the thread that ran the pipeline's frames, right after them: timed
/// from another thread afterwards, the same runs measured 20-60 % slower here (a colder core
/// and cache), which made the pipeline look faster than its own model.
fn bare_inference(pipeline: &mut Watched, options: BenchOptions) -> Result<Vec<f64>, BenchError> {
    let engine = pipeline.pipeline_mut().engine_mut()?;
    let mut times = Vec::with_capacity(options.frames);
    for i in 0..options.warmup + options.frames {
        let started = Instant::now();
        engine.run().map_err(PipelineError::from)?;
        if i >= options.warmup {
            times.push(millis(started.elapsed()));
        }
    }
    Ok(times)
}

/// What the collector saw, in sequence order.
struct Collected {
    stages: Vec<StageLatency>,
    emit_ms: Vec<f64>,
    wall: Duration,
}

/// Receives records from the workers, puts them back in sequence order and emits them. Takes
/// the receiver so that returning early (a failed frame or sink) drops it, which unblocks
/// every worker waiting to send.
fn collect_in_order(
    results: mpsc::Receiver<Outcome>,
    frames: usize,
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut(usize),
    stop: &AtomicBool,
) -> Result<Collected, BenchError> {
    let started = Instant::now();
    let mut waiting: BTreeMap<usize, FrameRecord> = BTreeMap::new();
    let mut stages = Vec::with_capacity(frames);
    let mut emit_ms = Vec::with_capacity(frames);
    let outcome = (|| {
        for (seq, outcome) in results.iter() {
            let mut record = outcome?;
            record.seq = seq as u64;
            waiting.insert(seq, record);
            while let Some(record) = waiting.remove(&stages.len()) {
                let emit_started = Instant::now();
                sink.emit(&record)?;
                emit_ms.push(millis(emit_started.elapsed()));
                stages.push(record.latency_ms);
                progress(stages.len());
            }
        }
        Ok(())
    })();
    if outcome.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    outcome.map(|()| Collected {
        stages,
        emit_ms,
        wall: started.elapsed(),
    })
}

/// Resets the kernel's peak-RSS mark of this process (`VmHWM`), so a footprint measured later
/// covers only what ran since. Best effort: without /proc (or on kernels before 4.0) the peak
/// covers the whole process.
fn reset_peak_rss() {
    // The mark restarts at the current RSS, which includes heap that earlier work freed but
    // glibc kept for reuse (`select` evaluates a whole data set first, hundreds of MiB of
    // frames): hand it back first, or it counts against the model being measured.
    crate::lifecycle::memory::give_back_freed();
    // "5" resets the peak resident set size (Documentation/filesystems/proc.rst, clear_refs).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// ", computed in f16" when the model is not computed in f32, the default.
fn computed_in(compute: Precision) -> String {
    if compute.is_f32() {
        String::new()
    } else {
        format!(", computed in {}", compute.as_str())
    }
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
            "model {} ({}{}): {} frames on {} worker{} after {} warm-up each",
            self.model,
            self.origin,
            computed_in(self.compute),
            self.frames,
            self.workers,
            if self.workers == 1 { "" } else { "s" },
            self.warmup
        )?;
        writeln!(
            f,
            "{:<14} {:>9} {:>9} {:>9} {:>9}",
            "stage (ms)", "p50", "p95", "p99", "max"
        )?;
        for (name, p) in [
            ("capture", self.capture_ms),
            ("pre", self.pre_ms),
            ("infer", self.infer_ms),
            ("post", self.post_ms),
            ("drift", self.drift_ms),
            ("emit", self.emit_ms),
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
        writeln!(
            f,
            "throughput: {:.1} fps ({} frames in {:.3} s)",
            self.fps, self.frames, self.wall_seconds
        )?;
        write!(
            f,
            "model file {} bytes, binary {}, peak resident memory {} (with {} of frames held \
             for the benchmark)",
            self.footprint.model_bytes,
            mib(self.footprint.binary_bytes),
            mib(self.footprint.peak_rss_bytes),
            mib(Some(self.footprint.preloaded_frame_bytes))
        )?;
        if let Some(profiles) = &self.operators {
            write!(f, "\n\n{}", crate::lab::measure::operator_table(profiles))?;
        }
        Ok(())
    }
}

/// Bytes as MiB with two decimals, or "unknown".
fn mib(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) => format!("{:.2} MiB", b as f64 / 1048576.0),
        None => "unknown".into(),
    }
}

/// One line per model, for comparing several: the figures a choice turns on.
pub fn summary_table(reports: &[BenchReport]) -> String {
    // Model names run long (`shapes-detector-large-640-int8-weights@1.0.0`): the column fits them.
    let width = reports
        .iter()
        .map(|r| r.model.chars().count())
        .chain(std::iter::once("model".len()))
        .max()
        .unwrap_or(5);
    let mut table = format!(
        "{:<width$} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>10}\n",
        "model", "file B", "p50 ms", "p99 ms", "bare ms", "ratio", "fps", "peak RSS"
    );
    for r in reports {
        table.push_str(&format!(
            "{:<width$} {:>10} {:>9.3} {:>9.3} {:>9.3} {:>8.3} {:>8.1} {:>10}\n",
            r.model,
            r.footprint.model_bytes,
            r.pipeline_ms.p50,
            r.pipeline_ms.p99,
            r.bare_infer_ms.p50,
            r.overhead_ratio,
            r.fps,
            mib(r.footprint.peak_rss_bytes)
        ));
    }
    table.trim_end().to_owned()
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
}
