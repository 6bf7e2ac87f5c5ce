//! Switching the running model without a restart.
//!
//! On SIGHUP, `run` loads the manifest it was started with again — through a slot's `current`
//! link (see [`crate::slots`]) that is the version in use now — checks it as an install is
//! checked, and swaps it in between two frames; sequence numbers go on. A version that fails
//! to load is never swapped in: the running model stays, a `model_load_failed` event says why,
//! and when the manifest is a slot's, `current` is pointed back at the running version
//! (`model_rolled_back`), so a restart does not pick the broken one up either.

use crate::board::Board;
use crate::budget::check_model;
use crate::drift::DriftConfig;
use crate::manifest::Manifest;
use crate::pipeline::{Pipeline, RunControl, Steering};
use crate::record::EventRecord;
use crate::slots::Slots;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Reloads the model between frames when asked (SIGHUP).
pub struct Reloader {
    manifest: PathBuf,
    board: Board,
    board_file: PathBuf,
    drift: DriftConfig,
    requested: Arc<AtomicBool>,
}

impl Reloader {
    /// A reloader of the model at `manifest`, checked against the board profile at
    /// `board_file` and watched for drift as `board` says, listening for SIGHUP.
    pub fn new(manifest: PathBuf, board: &Board, board_file: PathBuf) -> std::io::Result<Self> {
        let requested = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, requested.clone())?;
        let drift = board.drift.clone();
        Ok(Self {
            manifest,
            board: board.clone(),
            board_file,
            drift,
            requested,
        })
    }

    fn load(&self) -> Result<Pipeline, String> {
        let manifest = Manifest::load(&self.manifest).map_err(|e| e.to_string())?;
        let model_path = manifest.model_path(&self.manifest);
        let onnx =
            std::fs::read(&model_path).map_err(|e| format!("{}: {e}", model_path.display()))?;
        check_model(
            &self.board,
            &self.board_file,
            &manifest,
            &self.manifest,
            &onnx,
        )
        .map_err(|e| e.to_string())?;
        let origin = self.manifest.display().to_string();
        Pipeline::new(manifest, &onnx, &origin).map_err(|e| e.to_string())
    }

    fn reload(&self, running: &mut Pipeline) {
        let was = running.manifest().id();
        match self.load() {
            Ok(mut fresh) => {
                fresh.watch_drift(&self.drift);
                fresh.continue_after(running);
                let now = fresh.manifest().id();
                *running = fresh;
                running.push_event(EventRecord::now(
                    "model_switched",
                    &now,
                    format!("{was} replaced by {now}"),
                ));
                tracing::info!("model reloaded: {was} replaced by {now}");
            }
            Err(e) => {
                tracing::warn!("model reload failed, {was} keeps running: {e}");
                running.push_event(EventRecord::now(
                    "model_load_failed",
                    &was,
                    // The error names the file.
                    format!("{e}; {was} keeps running"),
                ));
                if let Some((slots, name)) = Slots::of_current_file(&self.manifest) {
                    let version = running.manifest().version.clone();
                    match slots.use_version(&name, &version) {
                        Ok(_) => running.push_event(EventRecord::now(
                            "model_rolled_back",
                            &was,
                            format!("{name}: current points at {version} again"),
                        )),
                        Err(e) => running.push_event(EventRecord::now(
                            "model_rollback_failed",
                            &was,
                            e.to_string(),
                        )),
                    }
                }
            }
        }
    }
}

impl Steering for Reloader {
    fn between_frames(&mut self, control: RunControl<'_>) {
        if self.requested.swap(false, Ordering::SeqCst) {
            self.reload(control.pipeline);
        }
    }
}

/// Asks the reloader of this process to switch before the next frame, as SIGHUP does.
pub fn request() -> std::io::Result<()> {
    signal_hook::low_level::raise(signal_hook::consts::SIGHUP)
}
