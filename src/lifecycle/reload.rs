//! Switching the running model without a restart, and returning to the one before when the
//! new one fails.
//!
//! `run --model` starts through a [`Reloader`]. Asked to switch — by SIGHUP or by the console's
//! `model use`, both through its [`ModelControl`] — it loads the manifest it was started with
//! again (through a slot's `current` link, see [`crate::lifecycle::slots`], that is the version
//! in use now), checks it as an install is checked, and swaps it in between two frames;
//! sequence numbers go on. The signal handler only sets the control's flag; the switch itself
//! happens on the run loop's thread, between frames.
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
use crate::budget::CheckError;
use crate::lifecycle::slots::{Slot, SlotError, Slots};
use crate::model;
use crate::model::verify::{Verifier, VerifyError};
use crate::pipeline::{PipelineError, RunControl, Steering, Watched};
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
    /// The model fails to load or run in a child process (tract's reason, or a panic, an
    /// allocation or a time limit that would have taken this process down).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// SIGHUP cannot be listened for.
    #[error("listening for SIGHUP: {0}")]
    Signal(std::io::Error),
}

impl LoadError {
    /// Whether the model itself failed (rather than its trial's circumstances: a process that
    /// could not start, was killed, or ran out of time on a busy board). Only a model fault
    /// points a slot's `current` back for good.
    pub fn is_model_fault(&self) -> bool {
        match self {
            Self::Verify(e) => e.is_model_fault(),
            Self::Check(_) | Self::Pipeline(_) => true,
            Self::Signal(_) => false,
        }
    }
}

/// Why the console's `model use` cannot switch.
#[derive(Debug, thiserror::Error)]
pub enum ModelUseError {
    /// The run's model is not an installed model's version in use, so there is no slot to
    /// switch.
    #[error(
        "{0} is not an installed model's version in use; run --model <name> with the model \
         installed (`lookout model install`)"
    )]
    NotInstalled(String),
    /// The slot refused the version (not installed, or the switch failed).
    #[error(transparent)]
    Slot(#[from] SlotError),
}

/// The handle by which a run's model is switched: the console's `model use` and SIGHUP both
/// ask through it, and the [`Reloader`] answers between frames. Cloned freely; every clone
/// asks the same reloader.
#[derive(Debug, Clone)]
pub struct ModelControl {
    requested: Arc<AtomicBool>,
    /// The installed model the run follows (its slots and name), when it is one.
    installed: Option<(Slots, String)>,
    /// The model file the run follows, for messages.
    running: String,
}

impl ModelControl {
    /// A control for a run that follows the manifest at `manifest` (a slot's `current`
    /// version, or any manifest) whose model file is `running`.
    pub fn following(manifest: &Path, running: String) -> Self {
        Self {
            requested: Arc::new(AtomicBool::new(false)),
            installed: Slots::of_current_file(manifest),
            running,
        }
    }

    /// A control for a model that cannot be switched (the one built into the binary).
    pub fn fixed(running: String) -> Self {
        Self {
            requested: Arc::new(AtomicBool::new(false)),
            installed: None,
            running,
        }
    }

    /// Makes SIGHUP ask for a switch (and not end the process, its default action). The
    /// handler only sets a flag, which the run loop's thread reads between frames.
    pub fn listen_for_sighup(&self) -> std::io::Result<()> {
        signal_hook::flag::register(signal_hook::consts::SIGHUP, self.requested.clone()).map(|_| ())
    }

    /// Asks for the model the run follows to be loaded again before the next frame.
    pub fn request_switch(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    /// Points the installed model's `current` at `version` and asks for the switch: what the
    /// console's `model use` does.
    pub fn use_version(&self, version: &str) -> Result<Slot, ModelUseError> {
        let (slots, name) = self
            .installed
            .as_ref()
            .ok_or_else(|| ModelUseError::NotInstalled(self.running.clone()))?;
        let slot = slots.use_version(name, version)?;
        self.request_switch();
        Ok(slot)
    }

    /// Whether a switch was asked for since the last call.
    fn take_request(&self) -> bool {
        self.requested.swap(false, Ordering::SeqCst)
    }

    /// The installed model the run follows, when it is one.
    fn installed(&self) -> Option<(&Slots, &str)> {
        self.installed.as_ref().map(|(s, n)| (s, n.as_str()))
    }
}

/// What a version on trial returns to when it fails.
enum Fallback {
    /// The pipeline that ran before the switch, kept loaded.
    Loaded(Box<Watched>),
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

/// Reloads the model between frames when asked (its [`ModelControl`]), and returns to the
/// version before when a new one fails its trial.
pub struct Reloader {
    manifest: PathBuf,
    board: Board,
    board_file: PathBuf,
    /// Tries each model in a child process before it is loaded here.
    verifier: Verifier,
    control: ModelControl,
    trial: Option<Trial>,
    /// What happened at start-up, told before the first frame.
    startup_events: Vec<EventRecord>,
    /// A model was dropped: the heap it left goes back to the system between the next two
    /// frames, once the frames in flight on its lanes are done with it too.
    give_back_pending: bool,
}

impl Reloader {
    /// Loads the model of `manifest`, checked against the board profile at `board_file` and
    /// watched for drift as `board` says, and listens for SIGHUP. When the manifest is a slot's
    /// `current` version and that fails to load, the slot's `good` version (else `previous`) is
    /// started instead (the run's first events say so); otherwise, or when that fails too, the
    /// first failure is the error. Every model is tried by `verifier` (in a child process)
    /// before it is loaded in this one.
    pub fn start(
        manifest: PathBuf,
        board: &Board,
        board_file: PathBuf,
        verifier: Verifier,
    ) -> Result<(Watched, Self), LoadError> {
        let running = model_file(&manifest);
        let control = ModelControl::following(&manifest, running);
        control.listen_for_sighup().map_err(LoadError::Signal)?;
        let mut reloader = Self {
            manifest,
            board: board.clone(),
            board_file,
            verifier,
            control,
            trial: None,
            startup_events: Vec::new(),
            give_back_pending: false,
        };
        let (fallback, proven) = reloader.start_fallback();
        let version = reloader.version_in_use();
        let mut events = Vec::new();
        match reloader.load(&reloader.manifest) {
            Ok(pipeline) => {
                if !proven {
                    reloader.begin_trial(&pipeline, &mut events, fallback.map(Fallback::Installed));
                }
                reloader.startup_events = events;
                Ok((pipeline, reloader))
            }
            Err(e) => {
                let Some(fallback) = fallback else {
                    return Err(e);
                };
                let pipeline = match reloader.load(&fallback) {
                    Ok(pipeline) => pipeline,
                    Err(second) => {
                        tracing::error!("{} fails to load too: {second}", fallback.display());
                        return Err(e);
                    }
                };
                let failed = reloader.describe(version.as_deref());
                tracing::warn!("{failed} fails to load, starting the version before it: {e}");
                events.push(EventRecord::now(
                    "model_load_failed",
                    &failed,
                    format!("{e}; {} runs instead", pipeline.manifest().id()),
                ));
                // Only a model at fault is given up on; one whose trial could not be held (the
                // board too busy, the child killed) stays `current`, to be tried again.
                if e.is_model_fault() {
                    reloader.point_back(&pipeline, &mut events, version.as_deref());
                }
                // It has to get through a trial of its own to be `good`; with nothing behind it.
                reloader.begin_trial(&pipeline, &mut events, None);
                reloader.startup_events = events;
                Ok((pipeline, reloader))
            }
        }
    }

    /// The handle the console's `model use` asks through (SIGHUP already does).
    pub fn control(&self) -> ModelControl {
        self.control.clone()
    }

    /// At start-up, for a slot's `current` version: what it returns to if it fails (the last
    /// version that got through its trial, or without one the `previous` version), and whether
    /// it got through its trial itself, so needs none. A manifest outside the slots has
    /// nothing to return to and nothing to prove.
    fn start_fallback(&self) -> (Option<PathBuf>, bool) {
        let Some((slots, name)) = self.control.installed() else {
            return (None, true);
        };
        let current = slots.current(name).ok().flatten();
        let good = slots.good(name).ok().flatten();
        let proven = good.is_some() && good == current;
        // A version that got through its trial may still fail to load later (a damaged card):
        // then `previous` is what is left.
        let fallback = [good, slots.previous(name).ok().flatten()]
            .into_iter()
            .flatten()
            .find(|candidate| Some(candidate) != current.as_ref());
        (fallback, proven)
    }

    /// The version the slot's `current` names now, when the manifest is a slot's.
    fn version_in_use(&self) -> Option<String> {
        let (slots, name) = self.control.installed()?;
        slots.in_use(name).ok().flatten()
    }

    /// The model the manifest names, for messages: `name@version` of a slot's (the manifest
    /// itself may be what cannot be read), else the manifest's path.
    fn describe(&self, version: Option<&str>) -> String {
        match (self.control.installed(), version) {
            (Some((_, name)), Some(version)) => format!("{name}@{version}"),
            _ => self.manifest.display().to_string(),
        }
    }

    /// Puts the model that now runs on trial for its next trial frames (counted in its own
    /// records, [`Watched::frames_done`]), returning to `fallback` if it fails; with no trial
    /// frames it counts as through at once.
    fn begin_trial(
        &mut self,
        running: &Watched,
        events: &mut Vec<EventRecord>,
        fallback: Option<Fallback>,
    ) {
        let frames = running.frames_done();
        let frames_on_trial = self.board.models.trial_frames;
        if frames_on_trial == 0 {
            self.trial = None;
            self.give_back_pending = true;
            self.mark_good(running, events);
        } else {
            self.trial = Some(Trial {
                ends_at: frames + frames_on_trial,
                fallback,
            });
        }
    }

    /// When the manifest is a slot's, records the running version as the one to return to.
    fn mark_good(&self, running: &Watched, events: &mut Vec<EventRecord>) {
        let Some((slots, name)) = self.control.installed() else {
            return;
        };
        if let Err(e) = slots.mark_good(name, &running.manifest().version) {
            let id = running.manifest().id();
            events.push(EventRecord::now("model_mark_failed", &id, e.to_string()));
        }
    }

    /// A pipeline for the model of `manifest_path`, checked as an install is, watching drift.
    /// Its origin is named as if through the manifest the run follows (a slot's `current`).
    fn load(&self, manifest_path: &Path) -> Result<Watched, LoadError> {
        // The version a slot's `current` names now, resolved once: what is tried in the child
        // is what is loaded here, even if `model use` moves the link in between.
        // A manifest outside the slots is named as given.
        let resolved = match self.control.installed() {
            Some(_) => {
                std::fs::canonicalize(manifest_path).unwrap_or_else(|_| manifest_path.to_owned())
            }
            None => manifest_path.to_owned(),
        };
        let named = crate::manifest::Manifest::load(&resolved)
            .map(|m| m.model_path(&self.manifest).display().to_string())
            .ok();
        self.verifier
            .run_once_as(&resolved.to_string_lossy(), named.as_deref())?;
        let bundle = model::load_checked(&resolved, &self.board, &self.board_file)?;
        let origin = bundle
            .manifest
            .model_path(&self.manifest)
            .display()
            .to_string();
        Ok(Watched::load(
            bundle.manifest,
            &bundle.onnx,
            &origin,
            &self.board.drift,
        )?)
    }

    /// Swaps in the model the manifest names now; `frames` is the run's frame count.
    fn reload(&mut self, running: &mut Watched, events: &mut Vec<EventRecord>) {
        let was = running.manifest().id();
        let version = self.version_in_use();
        match self.load(&self.manifest) {
            Ok(mut fresh) => {
                fresh.continue_after(running);
                let now = fresh.manifest().id();
                let compute = fresh.manifest().model.compute.as_str();
                let replaced = std::mem::replace(running, fresh);
                // A switch during a trial keeps what that trial would return to: the version
                // on trial has not shown it works.
                let fallback = match self.trial.take().and_then(|t| t.fallback) {
                    Some(kept) => kept,
                    None => Fallback::Loaded(Box::new(replaced)),
                };
                self.begin_trial(running, events, Some(fallback));
                events.push(EventRecord::now(
                    "model_switched",
                    &now,
                    format!("{was} replaced by {now}"),
                ));
                tracing::info!("model reloaded: {was} replaced by {now}, computed in {compute}");
            }
            Err(e) => {
                self.give_back_pending = true;
                let failed = self.describe(version.as_deref());
                tracing::warn!("{failed} fails to load, {was} keeps running: {e}");
                events.push(EventRecord::now(
                    "model_load_failed",
                    &failed,
                    // The error names the file.
                    format!("{e}; {was} keeps running"),
                ));
                if e.is_model_fault() {
                    self.point_back(running, events, version.as_deref());
                }
            }
        }
    }

    /// When the manifest is a slot's, points `current` at the running version again, unless
    /// it names another version than `failed` by now (someone chose one since).
    fn point_back(&self, running: &Watched, events: &mut Vec<EventRecord>, failed: Option<&str>) {
        let (Some((slots, name)), Some(failed)) = (self.control.installed(), failed) else {
            return;
        };
        let id = running.manifest().id();
        let version = running.manifest().version.clone();
        let event = match slots.return_to(name, &version, failed) {
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
        events.push(event);
    }
}

/// The model file beside the manifest a run follows, as messages and the console name it.
fn model_file(manifest: &Path) -> String {
    // The manifest may be what cannot be read: its model file is named after it.
    match crate::manifest::Manifest::load(manifest) {
        Ok(m) => m.model_path(manifest).display().to_string(),
        Err(_) => manifest.with_extension("onnx").display().to_string(),
    }
}

impl Steering for Reloader {
    fn between_frames(&mut self, control: RunControl<'_>) {
        control.events.append(&mut self.startup_events);
        if std::mem::take(&mut self.give_back_pending) {
            crate::lifecycle::memory::give_back_freed();
        }
        if self.control.take_request() {
            self.reload(control.pipeline, control.events);
        }
        let frames = control.pipeline.frames_done();
        if self.trial.as_ref().is_some_and(|t| frames >= t.ends_at) {
            // Drops the version replaced, if it was kept for the trial.
            self.trial = None;
            self.give_back_pending = true;
            self.mark_good(control.pipeline, control.events);
            let id = control.pipeline.manifest().id();
            control.events.push(EventRecord::now(
                "model_trial_passed",
                &id,
                format!(
                    "{id} got through its {} trial frames",
                    self.board.models.trial_frames
                ),
            ));
        }
    }

    fn model_failed(
        &mut self,
        running: &mut Watched,
        events: &mut Vec<EventRecord>,
        error: &PipelineError,
    ) -> bool {
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
                    events.push(EventRecord::now(
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
        self.give_back_pending = true;
        tracing::warn!("{failed} failed a trial frame, {now} runs again: {error}");
        events.push(EventRecord::now(
            "model_trial_failed",
            &failed,
            format!("{error}; {now} runs again"),
        ));
        self.point_back(running, events, Some(&failed_version));
        // The version returned to goes on a trial of its own with nothing behind it: one that
        // never got through a trial becomes `good` that way.
        self.begin_trial(running, events, None);
        true
    }
}
