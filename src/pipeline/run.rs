//! The run loop: frames from a source through a [`Watched`] pipeline into a [`SinkSet`], with
//! whoever steers the run (consoles, the reloader) asked between frames.
//!
//! Every event of a run travels one path, the loop's queue: what the source says (a camera
//! lost) and the sinks say of themselves (a file sink's disk full), what steering does (a model switched or rolled back), what the drift monitor and the
//! sample collector notice. The queue is delivered to every sink at three points, which fixes
//! the order a reader sees:
//! - before a frame is read: the source's and the sinks' events, then steering's (a switch is told before the
//!   new model's first record);
//! - after a model fault: what steering did about it, before the record of the model that took
//!   over;
//! - after a record: the drift and sample events that frame raised.

use super::workers::Workers;
use super::{PipelineError, Started, Watched};
use crate::frames::source::{Frame, FrameSource, SourceError};
use crate::lifecycle::health::HealthMonitor;
use crate::lifecycle::samples::Collector;
use crate::lifecycle::stop::StopRequest;
use crate::results::record::{EventRecord, FrameRecord};
use crate::results::sink::{SinkError, SinkSet};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a run adds to the frame path besides the model and the sinks.
#[derive(Default)]
pub struct RunExtras<'a> {
    /// Offered every frame with its record (see [`crate::lifecycle::samples`]).
    pub samples: Option<&'a mut Collector>,
    /// The board's temperature and throttling, read now and then: its reading goes into the
    /// records and `status`, its events to the sinks (see [`crate::lifecycle::health`]).
    pub health: Option<HealthMonitor>,
    /// Read before every frame: once asked, the run reads no more frames and ends as if its
    /// source had (see [`crate::lifecycle::stop`]).
    pub stop: StopRequest,
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
    /// The board's temperature and throttling, where it says them.
    pub health: Option<crate::lifecycle::health::HealthReading>,
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
            health: None,
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
    /// The last frame whose record was made, for snapshots.
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
    /// Called before every frame is read (while a lane is free: with frames in flight on
    /// every lane, once one is done), and every [`PAUSE_POLL`] while paused (more often
    /// while frames in flight finish). What it raises is told after the records of the
    /// frames read before.
    fn between_frames(&mut self, control: RunControl<'_>);

    /// The model failed on a frame ([`PipelineError::is_model_fault`]). Returns true when the
    /// steering put a model that worked in its place (a version on trial returned to the one
    /// before), so the frame, and every later one in flight, is run again on it under its
    /// number; false ends the run with the error. What it did is told on `events`, before the
    /// record of that frame.
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
    /// What asked the run to stop before its source ended (`SIGTERM`), if anything did.
    pub stopped_by: Option<&'static str>,
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
/// frame and may pause the run, change its thresholds or switch its model. `extras` adds the
/// sample collector and the board's health ([`RunExtras`]).
pub fn run(
    pipeline: &mut Watched,
    source: &mut dyn FrameSource,
    sinks: &mut SinkSet,
    max_frames: Option<u64>,
    steering: &mut dyn Steering,
    extras: RunExtras<'_>,
    on_skipped: impl FnMut(&SourceError),
) -> Result<RunSummary, PipelineError> {
    let mut summary = RunSummary::default();
    let outcome = run_frames(
        pipeline,
        source,
        sinks,
        max_frames,
        steering,
        extras,
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

/// A frame whose model is running, or has run and waits for the frames before it.
struct InFlight {
    frame: Frame,
    capture: Duration,
    seq: u64,
    /// Back from the workers.
    ran: Option<Started>,
    /// Handed to the workers and not back yet (false for a frame whose model never started).
    running: bool,
}

impl InFlight {
    /// A frame whose model failed, queued to run again on the model that takes over.
    fn to_run_again(frame: Frame, capture: Duration, seq: u64) -> Self {
        Self {
            frame,
            capture,
            seq,
            ran: None,
            running: false,
        }
    }
}

/// The loop's state between frames.
struct Loop<'a, 'b> {
    pipeline: &'a mut Watched,
    source: &'a mut dyn FrameSource,
    sinks: &'a mut SinkSet,
    steering: &'a mut dyn Steering,
    samples: Option<&'b mut Collector>,
    health: Option<HealthMonitor>,
    stop: StopRequest,
    summary: &'a mut RunSummary,
    stats: RunStats,
    last_frame: Option<Frame>,
    paused: bool,
    events: Vec<EventRecord>,
    /// Events raised between frames, each with the number of the next frame then: told once
    /// every frame read before it is, as with one frame at a time.
    deferred: VecDeque<(u64, Vec<EventRecord>)>,
    /// Oldest first.
    in_flight: VecDeque<InFlight>,
    workers: Workers,
    /// Frames in flight at most: the lanes of the pipeline the run started with.
    lanes: usize,
}

/// How long the loop waits for a worker before it asks its source and steering again.
const WORKER_POLL: Duration = Duration::from_millis(5);

/// The loop itself. Frames are read while a lane is free (so a camera's frame is the newest
/// when it is read, never one queued behind a busy model), their models run on the workers,
/// and they are finished and emitted in the order they were read.
#[allow(clippy::too_many_arguments)]
fn run_frames(
    pipeline: &mut Watched,
    source: &mut dyn FrameSource,
    sinks: &mut SinkSet,
    max_frames: Option<u64>,
    steering: &mut dyn Steering,
    extras: RunExtras<'_>,
    mut on_skipped: impl FnMut(&SourceError),
    summary: &mut RunSummary,
) -> Result<(), Stop> {
    let lanes = pipeline.pipeline_mut().lanes();
    let workers = Workers::start(lanes)?;
    let mut state = Loop {
        pipeline,
        source,
        sinks,
        steering,
        samples: extras.samples,
        health: extras.health,
        stop: extras.stop,
        summary,
        stats: RunStats::new(),
        last_frame: None,
        paused: false,
        events: Vec::new(),
        deferred: VecDeque::new(),
        in_flight: VecDeque::with_capacity(lanes),
        workers,
        lanes,
    };
    let mut outcome = state.frames(max_frames, &mut on_skipped);
    if outcome.is_ok() {
        // The source ended: what the sinks raised while the last frames were finished is
        // told, and every object still tracked leaves.
        let raised = state.sinks.take_events();
        let left = state.pipeline.finish_scene();
        outcome = state
            .sinks
            .events(raised.into_iter().chain(left))
            .map_err(Stop::from);
        // And what they raised telling those (a file sink writing again, or failing, on them).
        let raised = state.sinks.take_events();
        if outcome.is_ok() && !raised.is_empty() {
            outcome = state.sinks.events(raised).map_err(Stop::from);
        }
    }
    if outcome.is_err() {
        // What happened before the error is still told, as far as the sinks can; frames in
        // flight are not finished (their model or a sink may be what failed). Every object
        // tracked leaves, so that a receiver counting presence is not left with it.
        for (_, events) in std::mem::take(&mut state.deferred) {
            let _ = state.sinks.events(events);
        }
        let raised = state.sinks.take_events();
        let _ = state.sinks.events(raised);
        let _ = state.sinks.events(state.pipeline.finish_scene());
    }
    outcome
}

impl Loop<'_, '_> {
    fn frames(
        &mut self,
        max_frames: Option<u64>,
        on_skipped: &mut dyn FnMut(&SourceError),
    ) -> Result<(), Stop> {
        let mut consecutive_failures = 0;
        let mut read: u64 = 0;
        let mut ended = false;
        loop {
            self.collect()?;
            self.finish_ready()?;
            if !ended && self.stop.requested() {
                // As the end of the source: the frames in flight are finished and told.
                ended = true;
                self.summary.stopped_by = Some(self.stop.by());
                tracing::info!(
                    "{}: stopping after the {} frame{} in flight",
                    self.stop.by(),
                    self.in_flight.len(),
                    if self.in_flight.len() == 1 { "" } else { "s" }
                );
            }
            let may_read = !ended
                && self.in_flight.len() < self.lanes
                && max_frames.is_none_or(|max| read < max);
            if !may_read {
                if self.in_flight.is_empty() {
                    return Ok(());
                }
                self.wait()?;
                continue;
            }
            let generation = self.pipeline.pipeline_mut().generation();
            self.steering.between_frames(RunControl {
                pipeline: self.pipeline,
                source: self.source,
                last_frame: self.last_frame.as_ref(),
                stats: &self.stats,
                paused: &mut self.paused,
                samples: self.samples.as_deref(),
                events: &mut self.events,
            });
            // The source's events (taken after steering, so one raised meanwhile is told now)
            // go before what steering did; both after the frames read before them.
            // The sinks' own (a file sink's disk full) go with the source's.
            let mut from_source = self.source.take_events();
            from_source.extend(self.sinks.take_events());
            for event in &from_source {
                self.stats.last_error = Some(format!(
                    "{}: {}: {}",
                    event.source, event.event, event.message
                ));
            }
            self.events.splice(0..0, from_source);
            self.defer_events();
            if self.pipeline.pipeline_mut().generation() != generation {
                // Steering replaced the model: the frames the old one is running are finished
                // before the new one starts (their records go before the switch's events).
                self.drain()?;
            }
            // A model put in place (by steering, or after a fault) gets the run's lanes.
            if self.pipeline.pipeline_mut().lanes() != self.lanes {
                self.pipeline.pipeline_mut().set_lanes(self.lanes);
            }
            self.deliver_due()?;
            if self.paused {
                if self.in_flight.is_empty() {
                    self.sinks.idle()?;
                    std::thread::sleep(PAUSE_POLL);
                } else {
                    self.wait()?;
                }
                continue;
            }
            if self.stop.requested() {
                // Asked while steering ran: no frame more (the next turn ends the run).
                continue;
            }
            let started = Instant::now();
            let frame = match self.source.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    ended = true;
                    continue;
                }
                Err(SourceError::Waiting { .. }) => {
                    // A live source with nothing new: let sinks run their clocks and ask
                    // again. The source waits before saying so; the pause guards against one
                    // that does not.
                    self.sinks.idle()?;
                    if self.in_flight.is_empty() {
                        std::thread::sleep(Duration::from_millis(1));
                    } else {
                        self.wait()?;
                    }
                    continue;
                }
                Err(e) if e.is_recoverable() => {
                    on_skipped(&e);
                    self.stats.last_error = Some(e.to_string());
                    self.pipeline.pipeline_mut().skip_frame();
                    read += 1;
                    self.summary.failed_frames += 1;
                    self.stats.failed_frames += 1;
                    consecutive_failures += 1;
                    if consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
                        // The frames read before are the model's and the sinks' to finish.
                        self.drain()?;
                        return Err(Stop::Failed(PipelineError::TooManyFailures {
                            count: consecutive_failures,
                            last: e,
                        }));
                    }
                    continue;
                }
                Err(e) => {
                    self.drain()?;
                    return Err(Stop::Failed(e.into()));
                }
            };
            consecutive_failures = 0;
            read += 1;
            let capture = started.elapsed();
            let seq = self.pipeline.pipeline_mut().next_seq();
            let started = match self.pipeline.pipeline_mut().start(&frame, capture) {
                Ok(started) => started,
                Err(e) if e.is_model_fault() => {
                    // The model's engine failed before it ran (its input buffer): a fault on
                    // this frame, which goes behind the frames in flight.
                    self.in_flight
                        .push_back(InFlight::to_run_again(frame, capture, seq));
                    self.model_failed(e)?;
                    continue;
                }
                Err(e) => return Err(Stop::Failed(e)),
            };
            self.in_flight.push_back(InFlight {
                frame,
                capture,
                seq: started.seq(),
                ran: None,
                running: true,
            });
            self.workers.submit(started)?;
        }
    }

    /// Takes every frame the workers have finished running, without waiting.
    fn collect(&mut self) -> Result<(), Stop> {
        while let Some(ran) = self.workers.try_take() {
            self.place(ran)?;
        }
        Ok(())
    }

    /// Waits a while for a worker to finish a frame.
    fn wait(&mut self) -> Result<(), Stop> {
        if let Some(ran) = self.workers.take(WORKER_POLL)? {
            self.place(ran)?;
        }
        Ok(())
    }

    /// Puts a frame back from the workers with the frame it belongs to.
    fn place(&mut self, ran: Started) -> Result<(), Stop> {
        match self.in_flight.iter_mut().find(|f| f.seq == ran.seq()) {
            Some(slot) => {
                slot.ran = Some(ran);
                Ok(())
            }
            None => Err(Stop::Failed(PipelineError::Workers {
                threads: self.lanes,
                message: format!("frame {} came back, but none such is in flight", ran.seq()),
            })),
        }
    }

    /// Moves the events raised between frames behind the frames read before them.
    fn defer_events(&mut self) {
        if !self.events.is_empty() {
            let next = self.pipeline.pipeline_mut().next_seq();
            self.deferred
                .push_back((next, std::mem::take(&mut self.events)));
        }
    }

    /// Tells the deferred events whose frames before them have all been told.
    fn deliver_due(&mut self) -> Result<(), Stop> {
        let oldest = self.in_flight.front().map(|f| f.seq);
        while self
            .deferred
            .front()
            .is_some_and(|(next, _)| oldest.is_none_or(|seq| seq >= *next))
        {
            if let Some((_, events)) = self.deferred.pop_front() {
                self.sinks.events(events)?;
            }
        }
        Ok(())
    }

    /// Finishes the oldest frames whose models have run, in order.
    fn finish_ready(&mut self) -> Result<(), Stop> {
        while self.in_flight.front().is_some_and(|f| f.ran.is_some()) {
            let Some(InFlight {
                frame,
                capture,
                seq,
                ran: Some(ran),
                ..
            }) = self.in_flight.pop_front()
            else {
                break;
            };
            let own = self.pipeline.pipeline_mut().owns(&ran);
            match self.pipeline.finish(ran, &frame) {
                Ok(record) => self.emit(record, frame)?,
                Err(e) if e.is_model_fault() && own => {
                    self.in_flight
                        .push_front(InFlight::to_run_again(frame, capture, seq));
                    self.model_failed(e)?;
                }
                Err(e) if e.is_model_fault() => {
                    // The model that failed this frame was replaced while it ran: there is no
                    // trial left to judge it by. The frame has no record; the event says so.
                    tracing::warn!("frame {} (number {seq}): {e}", frame.id);
                    self.stats.last_error = Some(e.to_string());
                    self.sinks.events(vec![EventRecord::now(
                        "frame_dropped",
                        &frame.id,
                        format!("frame {seq}: {e}; the model that ran it was replaced meanwhile"),
                    )])?;
                    self.deliver_due()?;
                }
                Err(e) => return Err(Stop::Failed(e)),
            }
        }
        Ok(())
    }

    /// Waits for every frame in flight and finishes it.
    fn drain(&mut self) -> Result<(), Stop> {
        while !self.in_flight.is_empty() {
            self.collect()?;
            self.finish_ready()?;
            if !self.in_flight.is_empty() {
                self.wait()?;
            }
        }
        Ok(())
    }

    /// The model failed a frame, now first in the queue of frames in flight, or last (when
    /// its engine failed before the model ran). Steering may put a model that works in its
    /// place (a version on trial returned to the one before): then every frame in the queue
    /// goes through that model, in order, under its own number. Without one (or on a second
    /// fault) the run ends, its events delivered first.
    fn model_failed(&mut self, error: PipelineError) -> Result<(), Stop> {
        let recovered = self
            .steering
            .model_failed(self.pipeline, &mut self.events, &error);
        // What happened is told before the record of the model that took over.
        self.sinks.events(self.events.drain(..))?;
        if !recovered {
            return Err(Stop::Failed(error));
        }
        // The failed model's lanes come back first (dropped: another pipeline runs now).
        for i in 0..self.in_flight.len() {
            let ran = match self.in_flight[i].ran.take() {
                Some(ran) => Some(ran),
                None if self.in_flight[i].running => {
                    let seq = self.in_flight[i].seq;
                    self.wait_for(seq)?
                }
                None => None,
            };
            self.in_flight[i].running = false;
            if let Some(ran) = ran {
                self.pipeline.pipeline_mut().release(ran);
            }
        }
        // Each frame again under its own number (an unreadable frame between them keeps its
        // gap); the numbering then goes on after the last. Frames stay queued until their
        // turn, so events raised after them still wait for their records.
        let last = self.in_flight.back().map(|f| f.seq + 1);
        let resume = self
            .pipeline
            .pipeline_mut()
            .next_seq()
            .max(last.unwrap_or(0));
        while let Some(next) = self.in_flight.pop_front() {
            self.pipeline.pipeline_mut().number_from(next.seq);
            let record = self.pipeline.process(&next.frame, next.capture)?;
            self.emit(record, next.frame)?;
        }
        self.pipeline.pipeline_mut().number_from(resume);
        Ok(())
    }

    /// Waits for the frame numbered `seq` to come back from the workers (others that come
    /// back meanwhile are kept in place).
    fn wait_for(&mut self, seq: u64) -> Result<Option<Started>, Stop> {
        loop {
            match self.workers.take(WORKER_POLL)? {
                Some(ran) if ran.seq() == seq => return Ok(Some(ran)),
                Some(ran) => self.place(ran)?,
                // Inline, a frame's model has run before it is in flight: nothing to wait for.
                None if self.workers.inline() => return Ok(None),
                None => {}
            }
        }
    }

    /// A record made: drift, scene, sample and health events, counters, then the sinks.
    fn emit(&mut self, mut record: FrameRecord, frame: Frame) -> Result<(), Stop> {
        // What a model switch did to the tracked objects comes before the new model's record.
        let switched = self.pipeline.take_switch_events();
        if !switched.is_empty() {
            self.sinks.events(switched)?;
        }
        self.events.extend(self.pipeline.take_events());
        if let Some(health) = self.health.as_mut() {
            record.health = health.poll(Instant::now());
            self.stats.health = record.health;
            self.events.extend(health.take_events());
        }
        // A frame of a model replaced meanwhile is not offered: the store files samples under
        // the labels of the model in place.
        let current = record.model == self.pipeline.pipeline_mut().model_id();
        let m = self.pipeline.manifest();
        if let Some(collector) = self.samples.as_deref_mut().filter(|_| current) {
            collector.follow(&record.model, &m.labels, m.output.is_detector());
            collector.offer(&frame, &record, self.pipeline.drifting());
            self.events.extend(collector.take_events());
        }
        self.last_frame = Some(frame);
        self.summary.frames += 1;
        self.stats.frame_done();
        self.sinks.record(&record)?;
        self.sinks.events(self.events.drain(..))?;
        self.deliver_due()
    }
}
