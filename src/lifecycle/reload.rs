//! Switching the running model without a restart, and returning to the one before when the
//! new one fails.
//!
//! `run --model` starts through a [`Reloader`]. On SIGHUP it loads the manifest it was started
//! with again — through a slot's `current` link (see [`crate::lifecycle::slots`]) that is the version in
//! use now — checks it as an install is checked, and swaps it in between two frames; sequence
//! numbers go on.
//!
//! A version is on trial for its first `trial_frames` frames (board `[models]`), whether it was
//! switched to or started on. Until it gets through them, what it replaced is kept: the
//! running pipeline itself after a switch, the slot's `previous` version at start-up. Going
//! back happens by itself, with an event on the sinks, when:
//! - the new version fails to load (`model_load_failed`): it is never swapped in; at start-up
//!   the previous version is loaded instead;
//! - it fails a frame of its trial (`model_trial_failed`): an inference error, outputs the
//!   decoder cannot read, or a NaN or infinite output. The version before takes over at that
//!   frame.
//!
//! Either way, when the manifest is a slot's, `current` is pointed back at the version that runs
//! (`model_rolled_back`), so a restart does not pick the broken one up again.

use crate::board::Board;
use crate::budget::{check_model, CheckError};
use crate::lifecycle::slots::Slots;
use crate::manifest::Manifest;
use crate::pipeline::{Pipeline, PipelineError, RunControl, Steering};
use crate::results::record::EventRecord;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why a model could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The model fails the deployment check (manifest, hash, budget, graph).
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The model cannot be built into a pipeline (its outputs do not fit its decoder).
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// SIGHUP cannot be listened for.
    #[error("listening for SIGHUP: {0}")]
    Signal(std::io::Error),
}

/// What a version on trial returns to when it fails.
enum Fallback {
    /// The pipeline that ran before the switch, kept loaded.
    Loaded(Box<Pipeline>),
    /// A slot's version (its manifest), loaded when needed: the trial at start-up.
    Installed(PathBuf),
}

/// A version that has not yet got through its trial frames.
struct Trial {
    /// The run's frame count at which the trial is passed.
    ends_at: u64,
    /// What it returns to when it fails; with nothing, a fault ends the run as it would
    /// without a trial.
    fallback: Option<Fallback>,
}

/// Reloads the model between frames when asked (SIGHUP), and returns to the version before
/// when a new one fails its trial.
pub struct Reloader {
    manifest: PathBuf,
    board: Board,
    board_file: PathBuf,
    requested: Arc<AtomicBool>,
    trial: Option<Trial>,
    /// The run's frame count when last asked, for a trial begun on a fault.
    frames: u64,
}

impl Reloader {
    /// Loads the model of `manifest`, checked against the board profile at `board_file` and
    /// watched for drift as `board` says, and listens for SIGHUP. When the manifest is a slot's
    /// `current` version and that fails to load, the slot's `good` version (else `previous`) is
    /// started instead (the pipeline's first events say so); otherwise, or when that fails
    /// too, the first failure is the error.
    pub fn start(
        manifest: PathBuf,
        board: &Board,
        board_file: PathBuf,
    ) -> Result<(Pipeline, Self), LoadError> {
        let requested = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, requested.clone())
            .map_err(LoadError::Signal)?;
        let mut reloader = Self {
            manifest,
            board: board.clone(),
            board_file,
            requested,
            trial: None,
            frames: 0,
        };
        let (fallback, proven) = reloader.start_fallback();
        let version = reloader.version_in_use();
        match reloader.load(&reloader.manifest) {
            Ok(mut pipeline) => {
                if !proven {
                    reloader.begin_trial(&mut pipeline, 0, fallback.map(Fallback::Installed));
                }
                Ok((pipeline, reloader))
            }
            Err(e) => {
                let Some(fallback) = fallback else {
                    return Err(e);
                };
                let mut pipeline = match reloader.load(&fallback) {
                    Ok(pipeline) => pipeline,
                    Err(second) => {
                        tracing::error!("{} fails to load too: {second}", fallback.display());
                        return Err(e);
                    }
                };
                let failed = reloader.describe(version.as_deref());
                tracing::warn!("{failed} fails to load, starting the version before it: {e}");
                pipeline.push_event(EventRecord::now(
                    "model_load_failed",
                    &failed,
                    format!("{e}; {} runs instead", pipeline.manifest().id()),
                ));
                reloader.point_back(&mut pipeline, version.as_deref());
                // It has to get through a trial of its own to be `good`; with nothing behind it.
                reloader.begin_trial(&mut pipeline, 0, None);
                Ok((pipeline, reloader))
            }
        }
    }

    /// At start-up, for a slot's `current` version: what it returns to if it fails (the last
    /// version that got through its trial, or without one the `previous` version), and whether
    /// it got through its trial itself, so needs none. A manifest outside the slots has
    /// nothing to return to and nothing to prove.
    fn start_fallback(&self) -> (Option<PathBuf>, bool) {
        let Some((slots, name)) = Slots::of_current_file(&self.manifest) else {
            return (None, true);
        };
        let current = slots.current(&name).ok().flatten();
        let good = slots.good(&name).ok().flatten();
        let proven = good.is_some() && good == current;
        // A version that got through its trial may still fail to load later (a damaged card):
        // then `previous` is what is left.
        let fallback = [good, slots.previous(&name).ok().flatten()]
            .into_iter()
            .flatten()
            .find(|candidate| Some(candidate) != current.as_ref());
        (fallback, proven)
    }

    /// The version the slot's `current` names now, when the manifest is a slot's.
    fn version_in_use(&self) -> Option<String> {
        let (slots, name) = Slots::of_current_file(&self.manifest)?;
        slots.in_use(&name).ok().flatten()
    }

    /// The model the manifest names, for messages: `name@version` of a slot's (the manifest
    /// itself may be what cannot be read), else the manifest's path.
    fn describe(&self, version: Option<&str>) -> String {
        match (Slots::of_current_file(&self.manifest), version) {
            (Some((_, name)), Some(version)) => format!("{name}@{version}"),
            _ => self.manifest.display().to_string(),
        }
    }

    /// Puts the model that now runs on trial from the run's frame count `frames`, returning to
    /// `fallback` if it fails; with no trial frames it counts as through at once.
    fn begin_trial(&mut self, running: &mut Pipeline, frames: u64, fallback: Option<Fallback>) {
        let frames_on_trial = self.board.models.trial_frames;
        if frames_on_trial == 0 {
            self.trial = None;
            self.mark_good(running);
        } else {
            self.trial = Some(Trial {
                ends_at: frames + frames_on_trial,
                fallback,
            });
        }
    }

    /// When the manifest is a slot's, records the running version as the one to return to.
    fn mark_good(&self, running: &mut Pipeline) {
        let Some((slots, name)) = Slots::of_current_file(&self.manifest) else {
            return;
        };
        if let Err(e) = slots.mark_good(&name, &running.manifest().version) {
            let id = running.manifest().id();
            running.push_event(EventRecord::now("model_mark_failed", &id, e.to_string()));
        }
    }

    /// A pipeline for the model of `manifest`, checked as an install is, watching drift. Its
    /// origin is named as if through the manifest the run follows (a slot's `current`), where
    /// the console's `model use` finds the slot.
    fn load(&self, manifest_path: &Path) -> Result<Pipeline, LoadError> {
        let manifest = Manifest::load(manifest_path).map_err(CheckError::from)?;
        let model_path = manifest.model_path(manifest_path);
        let onnx = std::fs::read(&model_path).map_err(|source| CheckError::ReadModel {
            path: model_path.clone(),
            source,
        })?;
        check_model(
            &self.board,
            &self.board_file,
            &manifest,
            manifest_path,
            &onnx,
        )?;
        let origin = manifest.model_path(&self.manifest).display().to_string();
        let mut pipeline = Pipeline::new(manifest, &onnx, &origin)?;
        pipeline.watch_drift(&self.board.drift);
        Ok(pipeline)
    }

    /// Swaps in the model the manifest names now; `frames` is the run's frame count.
    fn reload(&mut self, running: &mut Pipeline, frames: u64) {
        let was = running.manifest().id();
        let version = self.version_in_use();
        match self.load(&self.manifest) {
            Ok(mut fresh) => {
                fresh.continue_after(running);
                let now = fresh.manifest().id();
                let replaced = std::mem::replace(running, fresh);
                // A switch during a trial keeps what that trial would return to: the version
                // on trial has not shown it works.
                let fallback = match self.trial.take().and_then(|t| t.fallback) {
                    Some(kept) => kept,
                    None => Fallback::Loaded(Box::new(replaced)),
                };
                self.begin_trial(running, frames, Some(fallback));
                running.push_event(EventRecord::now(
                    "model_switched",
                    &now,
                    format!("{was} replaced by {now}"),
                ));
                tracing::info!("model reloaded: {was} replaced by {now}");
            }
            Err(e) => {
                let failed = self.describe(version.as_deref());
                tracing::warn!("{failed} fails to load, {was} keeps running: {e}");
                running.push_event(EventRecord::now(
                    "model_load_failed",
                    &failed,
                    // The error names the file.
                    format!("{e}; {was} keeps running"),
                ));
                self.point_back(running, version.as_deref());
            }
        }
    }

    /// When the manifest is a slot's, points `current` at the running version again, unless
    /// it names another version than `failed` by now (someone chose one since).
    fn point_back(&self, running: &mut Pipeline, failed: Option<&str>) {
        let (Some((slots, name)), Some(failed)) = (Slots::of_current_file(&self.manifest), failed)
        else {
            return;
        };
        let id = running.manifest().id();
        let version = running.manifest().version.clone();
        let event = match slots.return_to(&name, &version, failed) {
            Ok(true) => EventRecord::now(
                "model_rolled_back",
                &id,
                format!("{name}: current points at {version} again instead of {failed}"),
            ),
            Ok(false) => {
                tracing::warn!("{name}: current was changed after {failed} failed; left as it is");
                return;
            }
            Err(e) => EventRecord::now("model_rollback_failed", &id, e.to_string()),
        };
        running.push_event(event);
    }
}

impl Steering for Reloader {
    fn between_frames(&mut self, control: RunControl<'_>) {
        let frames = control.stats.frames;
        self.frames = frames;
        if self.requested.swap(false, Ordering::SeqCst) {
            self.reload(control.pipeline, frames);
        }
        if self.trial.as_ref().is_some_and(|t| frames >= t.ends_at) {
            self.trial = None;
            self.mark_good(control.pipeline);
            let id = control.pipeline.manifest().id();
            control.pipeline.push_event(EventRecord::now(
                "model_trial_passed",
                &id,
                format!(
                    "{id} got through its {} trial frames",
                    self.board.models.trial_frames
                ),
            ));
        }
    }

    fn model_failed(&mut self, running: &mut Pipeline, error: &PipelineError) -> bool {
        let Some(fallback) = self.trial.take().and_then(|t| t.fallback) else {
            return false;
        };
        let failed = running.manifest().id();
        let failed_version = running.manifest().version.clone();
        let mut back = match fallback {
            Fallback::Loaded(pipeline) => *pipeline,
            Fallback::Installed(manifest) => match self.load(&manifest) {
                Ok(pipeline) => pipeline,
                Err(e) => {
                    running.push_event(EventRecord::now(
                        "model_rollback_failed",
                        &failed,
                        format!("{}: {e}", manifest.display()),
                    ));
                    return false;
                }
            },
        };
        back.continue_after(running);
        let now = back.manifest().id();
        *running = back;
        tracing::warn!("{failed} failed a trial frame, {now} runs again: {error}");
        running.push_event(EventRecord::now(
            "model_trial_failed",
            &failed,
            format!("{error}; {now} runs again"),
        ));
        self.point_back(running, Some(&failed_version));
        // The version returned to goes on a trial of its own with nothing behind it: one that
        // never got through a trial becomes `good` that way.
        self.begin_trial(running, self.frames, None);
        true
    }
}

/// Asks the reloader of this process to switch before the next frame, as SIGHUP does.
pub fn request() -> std::io::Result<()> {
    signal_hook::low_level::raise(signal_hook::consts::SIGHUP)
}
