//! The inference pipeline: capture → pre-process → infer → post-process → sinks.
//!
//! [`Pipeline`] owns one model's engine, its pre-processor and decoder, all built once from the
//! manifest; [`Pipeline::process`] turns one frame into one [`FrameRecord`] with boxes in source
//! pixels. [`run`] drives a source into sinks and decides what an error costs: a bad file costs
//! its frame (reported, counted, the run goes on), a broken model or sink ends the run.

use crate::frames::preprocess::{ImageView, PreprocessError, Preprocessor};
use crate::frames::source::{Frame, FrameSource, SourceError};
use crate::lifecycle::drift::{DriftConfig, DriftMonitor};
use crate::lifecycle::samples::Collector;
use crate::manifest::{Manifest, Thresholds};
use crate::model::engine::{Engine, EngineError, InputBuffer};
use crate::results::decode::{DecodeError, Decoded, Decoder, OutputView};
use crate::results::record::{
    format_timestamp, ClassRecord, DetectionRecord, EventRecord, FrameRecord, StageLatency,
};
use crate::results::sink::{Sink, SinkError};
use std::time::{Duration, Instant};

/// Errors of the pipeline, by stage.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Model loading or inference.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Pre-processing a frame.
    #[error("frame {frame}: {source}")]
    Preprocess {
        /// The frame id.
        frame: String,
        /// What failed.
        source: PreprocessError,
    },
    /// The outputs do not match the manifest's decoder.
    #[error("{origin}: {source}")]
    Decode {
        /// Model identity.
        origin: String,
        /// What failed.
        source: DecodeError,
    },
    /// The model put out a NaN or an infinity: its weights or its arithmetic are broken, and
    /// whatever the decoder made of the frame would be wrong.
    #[error("{origin}: output `{output}` holds {value} at index {index}: the model is broken")]
    NotFinite {
        /// Model identity.
        origin: String,
        /// The output's name.
        output: String,
        /// Where in it (flat index).
        index: usize,
        /// The value.
        value: f32,
    },
    /// The source.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A sink.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Too many frames in a row failed to read; the source is treated as broken.
    #[error("{count} frames in a row could not be read; last error: {last}")]
    TooManyFailures {
        /// Consecutive failures.
        count: u32,
        /// The last one.
        last: SourceError,
    },
}

impl PipelineError {
    /// Whether the model is at fault (it failed to run, or put out what cannot be decoded),
    /// rather than the frame, the source or a sink: what a model on trial is judged by.
    pub fn is_model_fault(&self) -> bool {
        matches!(
            self,
            Self::Engine(_) | Self::Decode { .. } | Self::NotFinite { .. }
        )
    }
}

/// A model ready to turn frames into records.
pub struct Pipeline {
    manifest: Manifest,
    model_id: String,
    engine: Engine,
    preprocessor: Preprocessor,
    decoder: Decoder,
    thresholds: Thresholds,
    seq: u64,
    /// Watches for drift when the manifest has a reference profile and the board wants it.
    drift: Option<DriftMonitor>,
    /// Events raised about this pipeline (a model switched), for the sinks.
    events: Vec<EventRecord>,
    /// The model file and where it came from, kept for [`Pipeline::reload`].
    onnx: std::sync::Arc<[u8]>,
    origin: String,
}

impl Pipeline {
    /// Builds the engine, pre-processor and decoder for a checked manifest and its ONNX bytes.
    /// The decoder is checked against the model's real output shapes here, before any frame.
    pub fn new(manifest: Manifest, onnx: &[u8], origin: &str) -> Result<Self, PipelineError> {
        let engine = Engine::load(onnx, &manifest.input, origin)?;
        let decoder = Decoder::new(
            &manifest.output,
            manifest.labels.len(),
            manifest.input.width(),
            manifest.input.height(),
            engine.output_shapes(),
        )
        .map_err(|source| PipelineError::Decode {
            origin: origin.to_owned(),
            source,
        })?;
        let preprocessor = Preprocessor::new(&manifest.input, &manifest.preprocess);
        Ok(Self {
            model_id: manifest.id(),
            thresholds: manifest.thresholds,
            manifest,
            engine,
            preprocessor,
            decoder,
            seq: 0,
            drift: None,
            events: Vec::new(),
            onnx: onnx.into(),
            origin: origin.to_owned(),
        })
    }

    /// Loads the model again from its bytes, as at start-up: a fresh engine and decoder. The
    /// thresholds in force and the frame count carry over.
    pub fn reload(&mut self) -> Result<(), PipelineError> {
        let fresh = Self::new(self.manifest.clone(), &self.onnx, &self.origin)?;
        self.engine = fresh.engine;
        self.decoder = fresh.decoder;
        self.preprocessor = fresh.preprocessor;
        Ok(())
    }

    /// Thresholds in force.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Where the model came from (a path, or the embedded manifest), for reports.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Thresholds in force; start as the manifest's.
    pub fn thresholds_mut(&mut self) -> &mut Thresholds {
        &mut self.thresholds
    }

    /// The engine, for bare-inference measurements.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Gives the next frame the number the last one had: that frame again, after the model
    /// that failed it was replaced.
    pub fn number_again(&mut self) {
        self.seq = self.seq.saturating_sub(1);
    }

    /// Counts a frame that never reached the model (unreadable), so sequence numbers show the gap.
    pub fn skip_frame(&mut self) {
        self.seq += 1;
    }

    /// Turns one frame into a record. `capture` is the time the source took to deliver it.
    pub fn process(
        &mut self,
        frame: &Frame,
        capture: Duration,
    ) -> Result<FrameRecord, PipelineError> {
        let seq = self.seq;
        self.seq += 1;

        let started = Instant::now();
        let preprocess_error = |source| PipelineError::Preprocess {
            frame: frame.id.clone(),
            source,
        };
        let transform = match self.engine.input_mut()? {
            InputBuffer::F32(buffer) => self.preprocessor.run(&frame.image, buffer),
            InputBuffer::U8(buffer) => self.preprocessor.run(&frame.image, buffer),
        }
        .map_err(preprocess_error)?;
        let pre_done = Instant::now();

        let outputs = self.engine.run()?;
        let infer_done = Instant::now();

        let mut views = Vec::with_capacity(outputs.len());
        for output in &outputs {
            let data = output
                .tensor
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>())
                .map_err(|e| EngineError::Output {
                    name: output.name.clone(),
                    message: format!("{e:#}"),
                })?;
            if let Some(index) = data.iter().position(|v| !v.is_finite()) {
                return Err(PipelineError::NotFinite {
                    origin: self.model_id.clone(),
                    output: output.name.clone(),
                    index,
                    value: data[index],
                });
            }
            views.push(OutputView {
                name: &output.name,
                shape: output.tensor.shape(),
                data,
            });
        }
        let decoded = self
            .decoder
            .decode(&views, &self.thresholds)
            .map_err(|source| PipelineError::Decode {
                origin: self.model_id.clone(),
                source,
            })?;
        let label = |id: usize| {
            self.manifest
                .labels
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("class{id}"))
        };
        let (mut classes, mut detections, mut shapes) = (None, None, None);
        match decoded {
            Decoded::Classes(list) => {
                classes = Some(
                    list.into_iter()
                        .map(|c| ClassRecord {
                            label_id: c.class_id,
                            label: label(c.class_id),
                            score: c.score,
                        })
                        .collect(),
                )
            }
            Decoded::Detections(list) => {
                detections = Some(
                    list.into_iter()
                        .map(|d| DetectionRecord {
                            label_id: d.class_id,
                            label: label(d.class_id),
                            score: d.score,
                            bbox: transform
                                .box_to_source([d.bbox.x0, d.bbox.y0, d.bbox.x1, d.bbox.y1]),
                        })
                        .collect(),
                )
            }
            Decoded::Raw { shapes: s } => shapes = Some(s),
        }
        let post_done = Instant::now();

        let mut record = FrameRecord {
            seq,
            timestamp: format_timestamp(frame.captured_at),
            model: self.model_id.clone(),
            frame: frame.id.clone(),
            frame_size: [frame.image.width(), frame.image.height()],
            latency_ms: StageLatency {
                capture: millis(capture),
                pre: millis(pre_done - started),
                infer: millis(infer_done - pre_done),
                post: millis(post_done - infer_done),
                drift: 0.0,
            },
            classes,
            detections,
            outputs: shapes,
        };
        if let Some(monitor) = &mut self.drift {
            // The view is the pre-processor's own buffer (or the frame): nothing is copied.
            if let Some(view) = self.preprocessor.model_view(&frame.image) {
                monitor.observe(&view, &record);
            }
            record.latency_ms.drift = millis(post_done.elapsed());
        }
        record.latency_ms = record.latency_ms.rounded_to_microseconds();
        Ok(record)
    }

    /// Watches this model's frames for drift against the reference profile in its manifest
    /// (see [`crate::lifecycle::drift`]). Returns whether it does: not when `config` turns it off or the
    /// manifest has no `[profile]`.
    pub fn watch_drift(&mut self, config: &DriftConfig) -> bool {
        self.drift = match (&self.manifest.profile, config.enabled) {
            (Some(profile), true) => Some(DriftMonitor::new(
                config.clone(),
                profile.clone(),
                self.model_id.clone(),
                self.manifest.labels.len(),
                self.manifest.output.is_detector(),
            )),
            _ => None,
        };
        self.drift.is_some()
    }

    /// The drift monitor, when drift is watched.
    pub fn drift(&self) -> Option<&DriftMonitor> {
        self.drift.as_ref()
    }

    /// Events the pipeline raised since the last call (drift, a model switched), oldest
    /// first.
    pub fn take_events(&mut self) -> Vec<EventRecord> {
        let mut events = std::mem::take(&mut self.events);
        if let Some(drift) = &mut self.drift {
            events.extend(drift.take_events());
        }
        events
    }

    /// Queues an event for the sinks, delivered after the next frame.
    pub fn push_event(&mut self, event: EventRecord) {
        self.events.push(event);
    }

    /// Takes over from `old` (a model being replaced): frame numbers go on from its, and its
    /// undelivered events are kept.
    pub fn continue_after(&mut self, old: &mut Pipeline) {
        self.seq = old.seq;
        self.events.append(&mut old.events);
    }

    /// What the model saw of `frame` in the last [`process`](Self::process): the resized
    /// image before padding and normalisation.
    pub fn model_view<'a>(&'a self, frame: &'a Frame) -> Option<ImageView<'a>> {
        self.preprocessor.model_view(&frame.image)
    }
}

/// Milliseconds as f64.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What the run loop knows about itself, for the console's `status`.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// When the run started.
    pub started: Instant,
    /// Frames turned into records.
    pub frames: u64,
    /// Frames that could not be read and were skipped.
    pub failed_frames: u64,
    /// Frames per second over the last [`FPS_WINDOW`] frames (0 until two frames have passed).
    pub fps: f64,
    /// The last error the loop survived, if any.
    pub last_error: Option<String>,
    recent: std::collections::VecDeque<Instant>,
}

/// Frames the reported rate is averaged over.
pub const FPS_WINDOW: usize = 30;

impl RunStats {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            frames: 0,
            failed_frames: 0,
            fps: 0.0,
            last_error: None,
            recent: std::collections::VecDeque::with_capacity(FPS_WINDOW + 1),
        }
    }

    fn frame_done(&mut self) {
        self.frames += 1;
        let now = Instant::now();
        self.recent.push_back(now);
        if self.recent.len() > FPS_WINDOW {
            self.recent.pop_front();
        }
        if let (Some(first), n) = (self.recent.front(), self.recent.len()) {
            let span = (now - *first).as_secs_f64();
            self.fps = if n >= 2 && span > 0.0 {
                (n - 1) as f64 / span
            } else {
                0.0
            };
        }
    }
}

/// What whoever steers a run (the serial console) may look at and change between frames.
pub struct RunControl<'a> {
    /// The model, its thresholds included.
    pub pipeline: &'a mut Pipeline,
    /// The frame source.
    pub source: &'a mut dyn FrameSource,
    /// The last frame read, for snapshots.
    pub last_frame: Option<&'a Frame>,
    /// Counters.
    pub stats: &'a RunStats,
    /// While true the loop reads no frames and only asks its steering again.
    pub paused: &'a mut bool,
    /// The sample collector, when samples are kept.
    pub samples: Option<&'a Collector>,
}

impl RunControl<'_> {
    /// The same control for one of several steerings in turn.
    pub fn reborrow(&mut self) -> RunControl<'_> {
        RunControl {
            pipeline: &mut *self.pipeline,
            source: &mut *self.source,
            last_frame: self.last_frame,
            stats: self.stats,
            paused: &mut *self.paused,
            samples: self.samples,
        }
    }
}

/// Steers a run between frames; see [`crate::results::console`].
pub trait Steering {
    /// Called before every frame, and every [`PAUSE_POLL`] while paused.
    fn between_frames(&mut self, control: RunControl<'_>);

    /// The model failed on a frame ([`PipelineError::is_model_fault`]). Returns true when the
    /// steering put a model that worked in its place (a version on trial returned to the one
    /// before), so the frame is tried again; false ends the run with the error.
    fn model_failed(&mut self, _pipeline: &mut Pipeline, _error: &PipelineError) -> bool {
        false
    }
}

/// No steering: the run goes from start to end.
#[derive(Debug, Default)]
pub struct Unsteered;

impl Steering for Unsteered {
    fn between_frames(&mut self, _: RunControl<'_>) {}
}

/// How often a paused run asks its steering whether to go on.
pub const PAUSE_POLL: Duration = Duration::from_millis(20);

/// How a run ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Frames turned into records.
    pub frames: u64,
    /// Frames that could not be read and were skipped.
    pub failed_frames: u64,
    /// The reader of a sink went away, which ends the run early without error.
    pub stopped_by_reader: bool,
}

/// Consecutive unreadable frames after which the source counts as broken, so a looping folder
/// of corrupt files cannot spin forever.
const MAX_CONSECUTIVE_FAILURES: u32 = 100;

/// Runs frames from `source` through `pipeline` into every sink until the source ends or
/// `max_frames` frames (read or failed) have passed. Unreadable frames are handed to
/// `on_skipped` and skipped; any other error ends the run. `steering` is asked before every
/// frame and may pause the run or change its thresholds. `samples`, when given, is offered
/// every frame with its record (see [`crate::lifecycle::samples`]).
pub fn run(
    pipeline: &mut Pipeline,
    source: &mut dyn FrameSource,
    sinks: &mut [Box<dyn Sink>],
    max_frames: Option<u64>,
    steering: &mut dyn Steering,
    samples: Option<&mut Collector>,
    on_skipped: impl FnMut(&SourceError),
) -> Result<RunSummary, PipelineError> {
    let outcome = run_frames(
        pipeline, source, sinks, max_frames, steering, samples, on_skipped,
    );
    // Every way out flushes every sink (GPIO lines are released here), an error included.
    let mut flushed = Ok(());
    for sink in sinks.iter_mut() {
        match sink.flush() {
            Ok(()) | Err(SinkError::Closed { .. }) => {}
            Err(e) => flushed = flushed.and(Err(e)),
        }
    }
    let summary = outcome?;
    flushed?;
    Ok(summary)
}

/// Hands something to every sink; `Ok(false)` when a reader went away (the run ends quietly).
fn each_sink(
    sinks: &mut [Box<dyn Sink>],
    mut deliver: impl FnMut(&mut dyn Sink) -> Result<(), SinkError>,
) -> Result<bool, SinkError> {
    for sink in sinks.iter_mut() {
        match deliver(sink.as_mut()) {
            Ok(()) => {}
            Err(SinkError::Closed { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn run_frames(
    pipeline: &mut Pipeline,
    source: &mut dyn FrameSource,
    sinks: &mut [Box<dyn Sink>],
    max_frames: Option<u64>,
    steering: &mut dyn Steering,
    mut samples: Option<&mut Collector>,
    mut on_skipped: impl FnMut(&SourceError),
) -> Result<RunSummary, PipelineError> {
    let mut summary = RunSummary::default();
    let mut stats = RunStats::new();
    let mut last_frame: Option<Frame> = None;
    let mut paused = false;
    let mut consecutive_failures = 0;
    while max_frames.is_none_or(|max| summary.frames + summary.failed_frames < max) {
        steering.between_frames(RunControl {
            pipeline,
            source,
            last_frame: last_frame.as_ref(),
            stats: &stats,
            paused: &mut paused,
            samples: samples.as_deref(),
        });
        for event in source.take_events() {
            if !each_sink(sinks, |sink| sink.event(&event))? {
                summary.stopped_by_reader = true;
                return Ok(summary);
            }
            stats.last_error = Some(format!(
                "{}: {}: {}",
                event.source, event.event, event.message
            ));
        }
        // What steering did to the model (switched it) is told before the model's next record.
        for event in pipeline.take_events() {
            if !each_sink(sinks, |sink| sink.event(&event))? {
                summary.stopped_by_reader = true;
                return Ok(summary);
            }
        }
        if paused {
            if !each_sink(sinks, |sink| sink.idle())? {
                summary.stopped_by_reader = true;
                return Ok(summary);
            }
            std::thread::sleep(PAUSE_POLL);
            continue;
        }
        let started = Instant::now();
        let frame = match source.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(SourceError::Waiting { .. }) => {
                // A live source with nothing new: let sinks run their clocks and ask again. The
                // source waits before saying so; the pause guards against one that does not.
                if !each_sink(sinks, |sink| sink.idle())? {
                    summary.stopped_by_reader = true;
                    return Ok(summary);
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) if e.is_recoverable() => {
                on_skipped(&e);
                stats.last_error = Some(e.to_string());
                pipeline.skip_frame();
                summary.failed_frames += 1;
                stats.failed_frames += 1;
                consecutive_failures += 1;
                if consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
                    return Err(PipelineError::TooManyFailures {
                        count: consecutive_failures,
                        last: e,
                    });
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        consecutive_failures = 0;
        let capture = started.elapsed();
        let record = match pipeline.process(&frame, capture) {
            Ok(record) => record,
            Err(e) if e.is_model_fault() => {
                let recovered = steering.model_failed(pipeline, &e);
                // What happened is told before the record of the model that took over, which
                // gets the same frame under the same number; without one (or on a second fault)
                // the run ends, its events delivered first.
                for event in pipeline.take_events() {
                    if !each_sink(sinks, |sink| sink.event(&event))? {
                        summary.stopped_by_reader = true;
                        return Ok(summary);
                    }
                }
                if !recovered {
                    return Err(e);
                }
                pipeline.number_again();
                pipeline.process(&frame, capture)?
            }
            Err(e) => return Err(e),
        };
        let mut events = pipeline.take_events();
        if let Some(collector) = samples.as_deref_mut() {
            let drifting = pipeline.drift().is_some_and(DriftMonitor::drifting);
            let m = pipeline.manifest();
            collector.follow(&record.model, &m.labels, m.output.is_detector());
            collector.offer(&frame, &record, drifting);
            events.extend(collector.take_events());
        }
        last_frame = Some(frame);
        summary.frames += 1;
        stats.frame_done();
        if !each_sink(sinks, |sink| sink.emit(&record))? {
            summary.stopped_by_reader = true;
            return Ok(summary);
        }
        for event in events {
            if !each_sink(sinks, |sink| sink.event(&event))? {
                summary.stopped_by_reader = true;
                return Ok(summary);
            }
        }
    }
    Ok(summary)
}
