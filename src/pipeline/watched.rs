//! A pipeline as a board runs it: its frames watched for drift, its objects tracked through
//! zones, its model kept to build it again.

use super::{millis, Pipeline, PipelineError, Started};
use crate::frames::source::Frame;
use crate::lifecycle::drift::{DriftConfig, DriftMonitor};
use crate::manifest::{Manifest, Thresholds};
use crate::results::record::{EventRecord, FrameRecord};
use crate::scene::SceneRun;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A [`Pipeline`] with what running it on a board adds: a [`DriftMonitor`] when the manifest
/// has a reference profile and the board watches drift, and the model's bytes, so the
/// console's `reboot-pipeline` can build it again without reading a file.
pub struct Watched {
    pipeline: Pipeline,
    /// Records this model made (its own frames, not those of a model it replaced).
    frames_done: u64,
    drift: Option<DriftMonitor>,
    /// Tracking and zones, when the board asks for them and the model detects boxes.
    scene: Option<SceneRun>,
    onnx: Arc<[u8]>,
    origin: String,
}

impl Watched {
    /// Builds the pipeline of `manifest` and `onnx` (from `origin`, for messages) and watches
    /// its frames as `drift` says.
    pub fn load(
        manifest: Manifest,
        onnx: &[u8],
        origin: &str,
        drift: &DriftConfig,
    ) -> Result<Self, PipelineError> {
        let pipeline = Pipeline::new(manifest, onnx, origin)?;
        let drift = match (&pipeline.manifest().profile, drift.enabled) {
            (Some(profile), true) => {
                let m = pipeline.manifest();
                Some(DriftMonitor::new(
                    drift.clone(),
                    profile.clone(),
                    m.id(),
                    m.labels.len(),
                    m.output.is_detector(),
                ))
            }
            _ => None,
        };
        Ok(Self {
            pipeline,
            frames_done: 0,
            drift,
            scene: None,
            onnx: onnx.into(),
            origin: origin.to_owned(),
        })
    }

    /// Turns one frame into a record, as [`Pipeline::process`], and shows the frame and
    /// record to the drift monitor (its time is the record's `drift` latency).
    pub fn process(
        &mut self,
        frame: &Frame,
        capture: Duration,
    ) -> Result<FrameRecord, PipelineError> {
        let mut started = self.pipeline.start(frame, capture)?;
        started.infer();
        self.finish(started, frame)
    }

    /// Finishes a frame started on this pipeline ([`Pipeline::start`], then
    /// [`Started::infer`]), as [`Pipeline::finish`], and shows it to the drift monitor. A frame
    /// of a model replaced since it started is not shown: the monitor watches this model.
    pub fn finish(
        &mut self,
        started: Started,
        frame: &Frame,
    ) -> Result<FrameRecord, PipelineError> {
        let own = self.pipeline.owns(&started);
        let mut record = self.finish_watched(started, frame)?;
        if own {
            self.frames_done += 1;
        }
        if let Some(scene) = &mut self.scene {
            // The scene follows this model from its first record on: frames of the model it
            // replaced, finished after the switch, are still that model's.
            if own {
                scene.follow(self.pipeline.manifest());
            }
            scene.observe(&mut record)?;
        }
        Ok(record)
    }

    /// Tracks objects and reports zones as `config` says (the board's `[tracking]`, `[[zones]]`
    /// and `[[masks]]`, or a zones file), for the frames finished from now on; nothing for a
    /// model that does not detect boxes or a `config` that does not track. An error names the
    /// zone or mask whose labels the model does not have.
    pub fn track_scene(
        &mut self,
        config: &lookout_contract::board::SceneConfig,
    ) -> Result<(), crate::scene::SceneError> {
        self.scene = SceneRun::start(config, self.pipeline.manifest())?;
        Ok(())
    }

    /// The scene layer, when objects are tracked.
    pub fn scene(&self) -> Option<&SceneRun> {
        self.scene.as_ref()
    }

    /// Every object still tracked leaves (the source ended): their events.
    pub fn finish_scene(&mut self) -> Vec<EventRecord> {
        self.scene
            .as_mut()
            .map(|scene| {
                scene.finish();
                scene.take_events()
            })
            .unwrap_or_default()
    }

    /// How many records this model has made: what a trial counts, so that the frames of the
    /// model it replaced, finished after the switch, do not count towards its trial.
    pub fn frames_done(&self) -> u64 {
        self.frames_done
    }

    fn finish_watched(
        &mut self,
        started: Started,
        frame: &Frame,
    ) -> Result<FrameRecord, PipelineError> {
        let Some(monitor) = &mut self.drift else {
            return self.pipeline.finish(started);
        };
        let mut drift_time = Duration::ZERO;
        let mut record = self
            .pipeline
            .finish_observed(started, frame, |view, record| {
                let clock = Instant::now();
                // The view is the lane pre-processor's own buffer (or the frame): nothing is copied.
                monitor.observe(view, record);
                drift_time = clock.elapsed();
            })?;
        record.latency_ms.drift = millis(drift_time);
        record.latency_ms = record.latency_ms.rounded_to_microseconds();
        Ok(record)
    }

    /// Builds the model again from its bytes, as at start-up: a fresh engine, pre-processor
    /// and decoder. The thresholds in force and the frame numbers carry over; drift watching
    /// goes on where it was.
    pub fn rebuild(&mut self) -> Result<(), PipelineError> {
        let manifest = self.pipeline.manifest().clone();
        let mut fresh = Pipeline::new(manifest, &self.onnx, &self.origin)?;
        fresh.set_lanes(self.pipeline.lanes());
        fresh.rebuilt_from(&self.pipeline);
        *fresh.thresholds_mut() = *self.pipeline.thresholds();
        self.pipeline = fresh;
        Ok(())
    }

    /// Takes over from `old` (a model being replaced): frame numbers go on from its, and so do
    /// the tracked objects (as [`SceneRun::follow`] says, from this model's first record).
    pub fn continue_after(&mut self, old: &mut Watched) {
        self.pipeline.continue_after(&old.pipeline);
        self.scene = old.scene.take();
    }

    /// The scene's events of a model switch, told before the first record of the model that
    /// took over.
    pub fn take_switch_events(&mut self) -> Vec<EventRecord> {
        self.scene
            .as_mut()
            .map(SceneRun::take_switch_events)
            .unwrap_or_default()
    }

    /// Whether drift is watched (the manifest has a `[profile]` and the board wants it).
    pub fn watches_drift(&self) -> bool {
        self.drift.is_some()
    }

    /// The drift monitor, when drift is watched.
    pub fn drift(&self) -> Option<&DriftMonitor> {
        self.drift.as_ref()
    }

    /// Whether drift is watched and a statistic is drifting now.
    pub fn drifting(&self) -> bool {
        self.drift.as_ref().is_some_and(DriftMonitor::drifting)
    }

    /// Object events, drift alarms and clears raised since the last call, oldest first in each.
    pub fn take_events(&mut self) -> Vec<EventRecord> {
        let mut events = self
            .scene
            .as_mut()
            .map(SceneRun::take_events)
            .unwrap_or_default();
        if let Some(drift) = self.drift.as_mut() {
            events.extend(drift.take_events());
        }
        events
    }

    /// The pipeline, to number a frame again or reach the engine.
    pub fn pipeline_mut(&mut self) -> &mut Pipeline {
        &mut self.pipeline
    }

    /// Where the model came from (a path, or the embedded manifest), for reports.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        self.pipeline.manifest()
    }

    /// Thresholds in force.
    pub fn thresholds(&self) -> &Thresholds {
        self.pipeline.thresholds()
    }

    /// Thresholds in force, to change.
    pub fn thresholds_mut(&mut self) -> &mut Thresholds {
        self.pipeline.thresholds_mut()
    }
}
