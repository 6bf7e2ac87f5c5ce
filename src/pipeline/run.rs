//! The run loop: frames from a source through a [`Watched`] pipeline into a [`SinkSet`], with
//! whoever steers the run (consoles, the reloader) asked between frames.
//!
//! Every event of a run travels one path, the loop's queue: what the source says (a camera
//! lost), what steering does (a model switched or rolled back), what the drift monitor and the
//! sample collector notice. The queue is delivered to every sink at three points, which fixes
//! the order a reader sees:
//! - before a frame is read: the source's events, then steering's (a switch is told before the
//!   new model's first record);
//! - after a model fault: what steering did about it, before the record of the model that took
//!   over;
//! - after a record: the drift and sample events that frame raised.

use super::{PipelineError, Watched};
use crate::frames::source::{Frame, FrameSource, SourceError};
use crate::lifecycle::samples::Collector;
use crate::results::record::EventRecord;
use crate::results::sink::{SinkError, SinkSet};
use std::time::{Duration, Instant};

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

/// What whoever steers a run (the serial console, the reloader) may look at and change between
/// frames.
pub struct RunControl<'a> {
    /// The model, its thresholds included.
    pub pipeline: &'a mut Watched,
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
    /// The run's event queue: what steering does is told here.
    pub events: &'a mut Vec<EventRecord>,
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
            events: &mut *self.events,
        }
    }
}

/// Steers a run between frames; see [`crate::results::console`].
pub trait Steering {
    /// Called before every frame, and every [`PAUSE_POLL`] while paused.
    fn between_frames(&mut self, control: RunControl<'_>);

    /// The model failed on a frame ([`PipelineError::is_model_fault`]). Returns true when the
    /// steering put a model that worked in its place (a version on trial returned to the one
    /// before), so the frame is tried again; false ends the run with the error. What it did is
    /// told on `events`.
    fn model_failed(
        &mut self,
        _pipeline: &mut Watched,
        _events: &mut Vec<EventRecord>,
        _error: &PipelineError,
    ) -> bool {
        false
    }
}

/// No steering: the run goes from start to end.
#[derive(Debug, Default)]
pub struct Unsteered;

impl Steering for Unsteered {
    fn between_frames(&mut self, _: RunControl<'_>) {}
}

/// Two steerings in turn (the consoles, then the model reloader).
impl<A: Steering, B: Steering> Steering for (A, B) {
    fn between_frames(&mut self, mut control: RunControl<'_>) {
        self.0.between_frames(control.reborrow());
        self.1.between_frames(control);
    }

    fn model_failed(
        &mut self,
        pipeline: &mut Watched,
        events: &mut Vec<EventRecord>,
        error: &PipelineError,
    ) -> bool {
        self.0.model_failed(pipeline, events, error) || self.1.model_failed(pipeline, events, error)
    }
}

/// A steering that may be absent.
impl<S: Steering> Steering for Option<S> {
    fn between_frames(&mut self, control: RunControl<'_>) {
        if let Some(s) = self {
            s.between_frames(control);
        }
    }

    fn model_failed(
        &mut self,
        pipeline: &mut Watched,
        events: &mut Vec<EventRecord>,
        error: &PipelineError,
    ) -> bool {
        self.as_mut()
            .is_some_and(|s| s.model_failed(pipeline, events, error))
    }
}

/// Several steerings in turn (a console on each of several serial lines).
impl<S: Steering> Steering for Vec<S> {
    fn between_frames(&mut self, mut control: RunControl<'_>) {
        for s in self.iter_mut() {
            s.between_frames(control.reborrow());
        }
    }

    fn model_failed(
        &mut self,
        pipeline: &mut Watched,
        events: &mut Vec<EventRecord>,
        error: &PipelineError,
    ) -> bool {
        self.iter_mut()
            .any(|s| s.model_failed(pipeline, events, error))
    }
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

/// Why the loop stopped before its source ended.
enum Stop {
    /// A sink's reader went away (`lookout run | head`): the run ends quietly.
    ReaderGone,
    /// An error ends the run.
    Failed(PipelineError),
}

impl From<SinkError> for Stop {
    fn from(e: SinkError) -> Self {
        match e {
            SinkError::Closed { .. } => Stop::ReaderGone,
            e => Stop::Failed(e.into()),
        }
    }
}

impl From<PipelineError> for Stop {
    fn from(e: PipelineError) -> Self {
        Stop::Failed(e)
    }
}

/// Runs frames from `source` through `pipeline` into every sink until the source ends or
/// `max_frames` frames (read or failed) have passed. Unreadable frames are handed to
/// `on_skipped` and skipped; any other error ends the run. `steering` is asked before every
/// frame and may pause the run, change its thresholds or switch its model. `samples`, when
/// given, is offered every frame with its record (see [`crate::lifecycle::samples`]).
pub fn run(
    pipeline: &mut Watched,
    source: &mut dyn FrameSource,
    sinks: &mut SinkSet,
    max_frames: Option<u64>,
    steering: &mut dyn Steering,
    samples: Option<&mut Collector>,
    on_skipped: impl FnMut(&SourceError),
) -> Result<RunSummary, PipelineError> {
    let mut summary = RunSummary::default();
    let outcome = run_frames(
        pipeline,
        source,
        sinks,
        max_frames,
        steering,
        samples,
        on_skipped,
        &mut summary,
    );
    // Every way out flushes every sink (GPIO lines are released here), an error included.
    let flushed = sinks.flush();
    match outcome {
        Ok(()) => {}
        Err(Stop::ReaderGone) => summary.stopped_by_reader = true,
        Err(Stop::Failed(e)) => return Err(e),
    }
    flushed?;
    Ok(summary)
}

/// The loop itself.
#[allow(clippy::too_many_arguments)]
fn run_frames(
    pipeline: &mut Watched,
    source: &mut dyn FrameSource,
    sinks: &mut SinkSet,
    max_frames: Option<u64>,
    steering: &mut dyn Steering,
    mut samples: Option<&mut Collector>,
    mut on_skipped: impl FnMut(&SourceError),
    summary: &mut RunSummary,
) -> Result<(), Stop> {
    let mut stats = RunStats::new();
    let mut last_frame: Option<Frame> = None;
    let mut paused = false;
    let mut consecutive_failures = 0;
    let mut events: Vec<EventRecord> = Vec::new();
    while max_frames.is_none_or(|max| summary.frames + summary.failed_frames < max) {
        steering.between_frames(RunControl {
            pipeline,
            source,
            last_frame: last_frame.as_ref(),
            stats: &stats,
            paused: &mut paused,
            samples: samples.as_deref(),
            events: &mut events,
        });
        // The source's events (taken after steering, so one raised meanwhile is told now)
        // go before what steering did.
        let from_source = source.take_events();
        for event in &from_source {
            stats.last_error = Some(format!(
                "{}: {}: {}",
                event.source, event.event, event.message
            ));
        }
        events.splice(0..0, from_source);
        sinks.events(events.drain(..))?;
        if paused {
            sinks.idle()?;
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
                sinks.idle()?;
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) if e.is_recoverable() => {
                on_skipped(&e);
                stats.last_error = Some(e.to_string());
                pipeline.pipeline_mut().skip_frame();
                summary.failed_frames += 1;
                stats.failed_frames += 1;
                consecutive_failures += 1;
                if consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
                    return Err(Stop::Failed(PipelineError::TooManyFailures {
                        count: consecutive_failures,
                        last: e,
                    }));
                }
                continue;
            }
            Err(e) => return Err(Stop::Failed(e.into())),
        };
        consecutive_failures = 0;
        let capture = started.elapsed();
        let record = match pipeline.process(&frame, capture) {
            Ok(record) => record,
            Err(e) if e.is_model_fault() => {
                let recovered = steering.model_failed(pipeline, &mut events, &e);
                // What happened is told before the record of the model that took over, which
                // gets the same frame under the same number; without one (or on a second fault)
                // the run ends, its events delivered first.
                sinks.events(events.drain(..))?;
                if !recovered {
                    return Err(Stop::Failed(e));
                }
                pipeline.pipeline_mut().number_again();
                pipeline.process(&frame, capture)?
            }
            Err(e) => return Err(Stop::Failed(e)),
        };
        events.extend(pipeline.take_events());
        if let Some(collector) = samples.as_deref_mut() {
            let m = pipeline.manifest();
            collector.follow(&record.model, &m.labels, m.output.is_detector());
            collector.offer(&frame, &record, pipeline.drifting());
            events.extend(collector.take_events());
        }
        last_frame = Some(frame);
        summary.frames += 1;
        stats.frame_done();
        sinks.record(&record)?;
        sinks.events(events.drain(..))?;
    }
    Ok(())
}
