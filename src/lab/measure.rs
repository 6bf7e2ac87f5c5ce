//! What `bench`, `cost` and `select` do with a model, in one place: time it here through the
//! real pipeline, evaluate it on a labelled set, scale it to a board.
//!
//! Each command only parses its arguments and prints; the measuring is here, where tests reach
//! it. Every measurement runs the pipeline a deployment runs, drift watching included when the
//! board watches drift, so the time measured is the time a board spends.

use crate::board::Board;
use crate::frames::source::{self, Frame, FrameSource, ImageFiles, SourceError};
use crate::lab::bench::{self, BenchError, BenchOptions, BenchReport};
use crate::lab::cost::{self, CostError, CostInputs, CostReport};
use crate::lab::estimate::Estimator;
use crate::lab::eval::{self, EvalError, EvalReport};
use crate::lab::select::Candidate;
use crate::lifecycle::drift::DriftConfig;
use crate::manifest::OutputSpec;
use crate::model::engine::{self, EngineError};
use crate::model::ModelBundle;
use crate::pipeline::{Pipeline, PipelineError, Watched};
use crate::results::sink::{self, Sink};
use std::path::{Path, PathBuf};

/// Why a model could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// Timing it.
    #[error(transparent)]
    Bench(#[from] BenchError),
    /// Evaluating it.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Probing its graph or timing a reference network.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Loading it.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Reading the frames it is timed on.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The rates or prices of a cost.
    #[error(transparent)]
    Cost(#[from] CostError),
    /// A source that gave no frame to time on.
    #[error("{0}: gave no frames")]
    NoFrames(String),
    /// Encoding a frame as a sample would be stored, for its size.
    #[error("encoding a sample frame as JPEG: {0}")]
    SampleSize(#[from] image::ImageError),
    /// Candidates of different tasks cannot be ranked against each other.
    #[error("the candidates mix detectors and classifiers; choose among models of one task")]
    MixedTasks,
}

/// Frames read into memory once, with the time each took to read (the capture stage), so that
/// disk and decoding speed do not blur what is timed.
#[derive(Debug, Default)]
pub struct Preloaded {
    /// The frames.
    pub frames: Vec<Frame>,
    /// Milliseconds each took to read and decode.
    pub capture_ms: Vec<f64>,
}

impl Preloaded {
    /// Up to `count` frames of `source` (fewer if it ends); an error if it gives none.
    pub fn from_source(source: &mut dyn FrameSource, count: usize) -> Result<Self, MeasureError> {
        let (frames, capture_ms) = bench::preload(source, count)?;
        if frames.is_empty() {
            return Err(MeasureError::NoFrames(source.describe()));
        }
        Ok(Self { frames, capture_ms })
    }

    /// The first `count` images under `dir` (a labelled set: its files in every folder).
    pub fn from_images_under(dir: &Path, count: usize) -> Result<Self, MeasureError> {
        let files: Vec<PathBuf> = source::image_files_under(dir)?
            .into_iter()
            .take(count)
            .collect();
        Self::from_source(
            &mut ImageFiles::list(dir.display().to_string(), files),
            count,
        )
    }
}

/// A pipeline for `bundle` as `run` builds it on a board: drift watched as `drift` says.
pub fn load_pipeline(bundle: &ModelBundle, drift: &DriftConfig) -> Result<Watched, PipelineError> {
    Watched::load(bundle.manifest.clone(), &bundle.onnx, &bundle.origin, drift)
}

/// Benchmarks one model: each worker loads its own pipeline ([`load_pipeline`]); records go
/// to `sink`; `progress` hears how many frames are done.
pub fn bench_model(
    bundle: &ModelBundle,
    drift: &DriftConfig,
    input: &Preloaded,
    options: BenchOptions,
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut(usize),
) -> Result<BenchReport, BenchError> {
    bench::run(
        &|| load_pipeline(bundle, drift),
        &input.frames,
        &input.capture_ms,
        options,
        sink,
        progress,
        bundle.onnx.len() as u64,
    )
}

/// The model's pipeline with the first frame of `input` put through it (not timed), so that
/// its engine's input holds a real frame, as in a run.
fn primed(bundle: &ModelBundle, input: &Preloaded) -> Result<Pipeline, MeasureError> {
    let frame = input
        .frames
        .first()
        .ok_or_else(|| MeasureError::NoFrames(bundle.origin.clone()))?;
    let mut pipeline = Pipeline::new(bundle.manifest.clone(), &bundle.onnx, &bundle.origin)?;
    pipeline.process(frame, std::time::Duration::ZERO)?;
    Ok(pipeline)
}

/// The model alone, run `warmup` times and then `frames` times on the first frame's input,
/// with nothing else around it: what onnxruntime's own timings measure, and what an
/// instruction count of inference alone runs (scripts/insn-count).
pub fn bare_model(
    bundle: &ModelBundle,
    input: &Preloaded,
    warmup: usize,
    frames: usize,
) -> Result<bench::BareReport, MeasureError> {
    let mut pipeline = primed(bundle, input)?;
    let engine = pipeline.engine_mut()?;
    let mut times = Vec::with_capacity(frames);
    for i in 0..warmup + frames {
        let started = std::time::Instant::now();
        engine.run()?;
        if i >= warmup {
            times.push(crate::pipeline::millis(started.elapsed()));
        }
    }
    Ok(bench::BareReport {
        model: bundle.manifest.id(),
        compute: engine.computes_in(),
        origin: bundle.origin.clone(),
        frames,
        warmup,
        bare_infer_ms: bench::Percentiles::of(&times),
    })
}

/// Where a model's time goes by kind of operator, at one thread and at `threads`: the model
/// is run on the first frame's input, `runs` times at each count after one untimed run. Each
/// kind's ratio of the two times says how far tract splits it over threads; kinds near 1.0
/// stay serial and bound what more threads can give.
pub fn operator_profile(
    bundle: &ModelBundle,
    input: &Preloaded,
    threads: usize,
    runs: usize,
) -> Result<Vec<(usize, engine::OperatorProfile)>, MeasureError> {
    let mut pipeline = primed(bundle, input)?;
    let counts: Vec<usize> = if threads > 1 {
        vec![1, threads]
    } else {
        vec![1]
    };
    let mut profiles = Vec::with_capacity(counts.len());
    for count in counts {
        let engine = pipeline.engine_mut()?;
        let profile = engine::with_threads(count, || {
            engine.profile(1)?;
            engine.profile(runs)
        })??;
        profiles.push((count, profile));
    }
    Ok(profiles)
}

/// An operator profile as a table: one line per kind of operator, slowest first, with its
/// time at each thread count, the ratio of the last to the first, and the share of a run.
pub fn operator_table(profiles: &[(usize, engine::OperatorProfile)]) -> String {
    let Some((_, first)) = profiles.first() else {
        return String::new();
    };
    let last = profiles.last().map_or(first, |(_, p)| p);
    let width = first
        .operators
        .iter()
        .map(|(op, _)| op.chars().count())
        .chain(std::iter::once("operator".len()))
        .max()
        .unwrap_or(8);
    let mut table = format!("{:<width$} {:>6}", "operator", "nodes");
    for (threads, _) in profiles {
        table.push_str(&format!(" {:>12}", format!("ms@{threads}")));
    }
    if profiles.len() > 1 {
        table.push_str(&format!(" {:>7} {:>8}", "ratio", "share@N"));
    } else {
        table.push_str(&format!(" {:>8}", "share"));
    }
    table.push('\n');
    let last_total = last.total_seconds();
    for (op, time) in &first.operators {
        table.push_str(&format!("{op:<width$} {:>6}", time.evaluations));
        for (_, profile) in profiles {
            table.push_str(&format!(" {:>12.3}", profile.seconds_of(op) * 1000.0));
        }
        let at_last = last.seconds_of(op);
        if profiles.len() > 1 {
            let ratio = if time.seconds > 0.0 {
                at_last / time.seconds
            } else {
                0.0
            };
            table.push_str(&format!(" {ratio:>7.2}"));
        }
        let share = if last_total > 0.0 {
            at_last / last_total
        } else {
            0.0
        };
        table.push_str(&format!(" {:>7.1}%\n", share * 100.0));
    }
    table.push_str(&format!("{:<width$} {:>6}", "total", ""));
    for (_, profile) in profiles {
        table.push_str(&format!(" {:>12.3}", profile.total_seconds() * 1000.0));
    }
    if profiles.len() > 1 {
        let ratio = if first.total_seconds() > 0.0 {
            last_total / first.total_seconds()
        } else {
            0.0
        };
        table.push_str(&format!(" {ratio:>7.2}"));
    }
    table
}

/// Times a model here over `timed` frames after 5 untimed ones, on one worker with its records
/// dropped: the figure `cost` and `select` scale to a board.
pub fn time_here(
    bundle: &ModelBundle,
    drift: &DriftConfig,
    input: &Preloaded,
    timed: usize,
) -> Result<BenchReport, BenchError> {
    let options = BenchOptions {
        warmup: 5,
        frames: timed,
        workers: 1,
    };
    bench_model(
        bundle,
        drift,
        input,
        options,
        &mut sink::discard(),
        &mut |_| {},
    )
}

/// What a cost is asked for, besides the model and board.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostRequest {
    /// Frames per second the deployment runs at.
    pub fps: f64,
    /// Frames timed here.
    pub timed_frames: usize,
    /// Inferences a reference network is timed over.
    pub reference_runs: usize,
    /// One frame in this many kept as a sample (default: the board's `[samples] every_n`).
    pub sample_one_in: Option<u64>,
    /// Bytes of one stored sample (default: the first frame encoded as the board stores it).
    pub sample_bytes: Option<u64>,
    /// What 1000 cloud calls cost, for the comparison.
    pub cloud_price_per_1000: Option<f64>,
    /// What a kWh costs.
    pub kwh_price: Option<f64>,
}

/// What running `bundle` at `request.fps` costs on `board`, timed here on `input`.
pub fn cost(
    bundle: &ModelBundle,
    board: &Board,
    input: &Preloaded,
    request: CostRequest,
) -> Result<CostReport, MeasureError> {
    cost::check_rates(request.fps, request.cloud_price_per_1000, request.kwh_price)?;
    let sample_bytes = match (request.sample_bytes, input.frames.first()) {
        (Some(bytes), _) => bytes,
        (None, Some(first)) => cost::sample_size(&first.image, board.samples.jpeg_quality)?,
        (None, None) => return Err(MeasureError::NoFrames("the preloaded frames".into())),
    };
    let probe = engine::probe(&bundle.onnx, &bundle.origin)?;
    let measured = time_here(bundle, &board.drift, input, request.timed_frames)?;
    let host_frame_ms = measured.pipeline_ms.p50;
    let estimate = Estimator::new(board, request.reference_runs).estimate(host_frame_ms, &probe)?;
    let inputs = CostInputs {
        model: bundle.manifest.id(),
        fps: request.fps,
        macs: probe.macs,
        parameters: probe.parameters,
        model_bytes: bundle.onnx.len() as u64,
        peak_rss_bytes: measured.footprint.peak_rss_bytes,
        held_frame_bytes: measured.footprint.preloaded_frame_bytes,
        host_frame_ms,
        estimate,
        sample_one_in: request.sample_one_in.unwrap_or(board.samples.every_n),
        sample_bytes,
        cloud_price_per_1000: request.cloud_price_per_1000,
        kwh_price: request.kwh_price,
    };
    Ok(cost::compute(inputs, board)?)
}

/// Refuses candidates that mix classifiers and detectors: their accuracies are different
/// metrics.
pub fn check_one_task(bundles: &[ModelBundle]) -> Result<(), MeasureError> {
    let classifies = |b: &ModelBundle| matches!(b.manifest.output, OutputSpec::Classify { .. });
    if bundles.iter().any(classifies) && !bundles.iter().all(classifies) {
        return Err(MeasureError::MixedTasks);
    }
    Ok(())
}

/// One candidate for `select`: its accuracy on the labelled set at `dataset` (mAP@0.5:0.95
/// for a detector, top-1 for a classifier, in percent), its latency timed here on `input` over
/// `timed` frames and scaled to the board by `estimator`, its size and memory.
/// `progress(stage, done, total)` follows the evaluation.
pub fn judge_candidate(
    bundle: &ModelBundle,
    board: &Board,
    estimator: &mut Estimator<'_>,
    dataset: &Path,
    input: &Preloaded,
    timed: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Candidate, MeasureError> {
    let mut manifest = bundle.manifest.clone();
    let operating = eval::prepare(&mut manifest, None)?;
    let mut pipeline = Pipeline::new(manifest, &bundle.onnx, &bundle.origin)?;
    let report = eval::evaluate(&mut pipeline, dataset, operating, progress)?;
    let (accuracy, metric) = match &report {
        EvalReport::Detection(d) => (d.map.map50_95 * 100.0, "mAP@0.5:0.95"),
        EvalReport::Classification(c) => (c.accuracy.top1 * 100.0, "top-1"),
    };
    let measured = time_here(bundle, &board.drift, input, timed)?;
    let host_ms = measured.pipeline_ms.p50;
    // The probe tells which reference fits the model; the host profile needs none.
    let estimate = match board.perf {
        Some(_) => {
            let probe = engine::probe(&bundle.onnx, &bundle.origin)?;
            estimator.estimate(host_ms, &probe)?
        }
        None => None,
    };
    Ok(Candidate {
        model: bundle.manifest.id(),
        origin: bundle.origin.clone(),
        accuracy,
        metric: metric.into(),
        model_bytes: bundle.onnx.len() as u64,
        peak_rss_bytes: measured.footprint.peak_rss_bytes,
        host_ms,
        board_ms: estimate.as_ref().map_or(host_ms, |e| e.estimated_ms),
        estimated: estimate.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model;
    use std::path::Path;

    fn repo(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
    }

    fn host() -> (Board, PathBuf) {
        let file = repo("boards/host.toml");
        (Board::load(&file).expect("host profile"), file)
    }

    fn bundle(name: &str, board: &Board, board_file: &Path) -> ModelBundle {
        model::model_from_files(
            &repo(&format!("models/{name}.toml")).to_string_lossy(),
            &repo("models"),
            board,
            board_file,
        )
        .expect("the bundled model loads")
    }

    #[test]
    fn preloading_reads_each_image_once_with_its_read_time() {
        let input = Preloaded::from_images_under(&repo("tests/images/detect"), 3).expect("images");
        assert_eq!(input.frames.len(), 3);
        assert_eq!(input.capture_ms.len(), 3);
        assert_eq!(input.frames[0].id, "scene_0.png");
        assert!(input.capture_ms.iter().all(|ms| *ms >= 0.0));
        let empty = tempfile::tempdir().expect("tempdir");
        let err = Preloaded::from_images_under(empty.path(), 3).expect_err("no images");
        assert!(
            err.to_string()
                .contains(&empty.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_candidate_is_judged_on_its_accuracy_and_its_time_here() {
        let (board, board_file) = host();
        let detector = bundle("shapes-detector", &board, &board_file);
        let dataset = repo("tests/images/detect");
        let input = Preloaded::from_images_under(&dataset, 2).expect("images");
        let mut estimator = Estimator::new(&board, 1);
        let mut calls = 0;
        let c = judge_candidate(
            &detector,
            &board,
            &mut estimator,
            &dataset,
            &input,
            3,
            &mut |_, _| calls += 1,
        )
        .expect("judged");
        assert_eq!(c.model, "shapes-detector@2.1.0");
        assert_eq!(c.metric, "mAP@0.5:0.95");
        // The bundled detector finds the test scenes' shapes well (tests/system/cli.rs checks each box).
        assert!(c.accuracy > 50.0 && c.accuracy <= 100.0, "{}", c.accuracy);
        assert_eq!(c.model_bytes, detector.onnx.len() as u64);
        // The host profile has no published speed: the board's time is the time here.
        assert!(!c.estimated);
        assert_eq!(c.board_ms, c.host_ms);
        assert!(c.host_ms > 0.0);
        assert_eq!(calls, 8, "one progress call per image of the set");
    }

    #[test]
    fn candidates_of_two_tasks_are_refused() {
        let (board, board_file) = host();
        let detector = bundle("shapes-detector", &board, &board_file);
        let classifier = bundle("shapes-classifier", &board, &board_file);
        assert!(check_one_task(&[detector.clone(), detector.clone()]).is_ok());
        assert!(matches!(
            check_one_task(&[detector, classifier]),
            Err(MeasureError::MixedTasks)
        ));
    }

    #[test]
    fn a_cost_is_refused_for_a_bad_rate_before_anything_is_timed() {
        let (board, board_file) = host();
        let detector = bundle("shapes-detector", &board, &board_file);
        let request = CostRequest {
            fps: 0.0,
            timed_frames: 1,
            reference_runs: 1,
            sample_one_in: None,
            sample_bytes: None,
            cloud_price_per_1000: None,
            kwh_price: None,
        };
        let err = cost(&detector, &board, &Preloaded::default(), request).expect_err("fps 0");
        assert_eq!(err.to_string(), "--fps must be a positive number, not 0");
    }
}
