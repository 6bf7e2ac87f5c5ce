//! Finding the model and board to run with: the ones built into the binary, or files.
//!
//! A flashed binary carries one model, its manifest and the board profile it was built for
//! (see `build.rs`), so it runs with no files beside it. `--model` and `--board` replace them
//! with files; a model from a file passes the same deployment check the build applies
//! (integrity against its manifest, the board's budget, a compatible input), so nothing runs on
//! a board that would not have been allowed to build for it.

//!
//! Also here: [`engine`], the tract model loaded once with its input buffer reused;
//! [`inspect`], what an ONNX file holds and whether tract runs it; [`verify`], a model tried in
//! a child process before this one loads it; [`embedded`], the model and board built into the
//! binary; [`half_cast`], the f32/f16 casts of plans computed in half precision.

pub mod embedded;
pub mod engine;
pub mod half_cast;
pub mod import;
pub mod inspect;
pub mod int8;
pub mod verify;

use crate::board::Board;
use crate::budget::{self, CheckError, CheckReport};
use crate::lifecycle::slots::Slots;
use crate::manifest::{Manifest, Precision};
use lookout_contract::ConfigError;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// A model with its manifest, checked for a board.
#[derive(Debug, Clone)]
pub struct ModelBundle {
    /// The manifest.
    pub manifest: Manifest,
    /// The ONNX bytes.
    pub onnx: Cow<'static, [u8]>,
    /// Where it came from, for messages (`models/x.toml (embedded)` or a path).
    pub origin: String,
    /// The passing check.
    pub report: CheckReport,
    /// The manifest's `compute` as written; `manifest.model.compute` is what this machine
    /// computes in ([`fit_precision`]).
    pub asked_compute: Precision,
}

/// The board profile built into the binary.
pub fn embedded_board() -> Result<Board, ConfigError> {
    Board::parse(embedded::BOARD, Path::new(embedded::BOARD_ORIGIN))
}

/// Loads a board: a profile path, a name in `boards_dir`, or the embedded one when `None`.
/// Returns the board and the path it is named by in messages.
pub fn board(arg: Option<&str>, boards_dir: &Path) -> Result<(Board, PathBuf), ConfigError> {
    match arg {
        None => Ok((embedded_board()?, PathBuf::from(embedded::BOARD_ORIGIN))),
        Some(arg) => {
            let path = budget::resolve(arg, boards_dir);
            Ok((Board::load(&path)?, path))
        }
    }
}

/// The model built into the binary, checked against `board`.
pub fn embedded_model(board: &Board, board_file: &Path) -> Result<ModelBundle, CheckError> {
    let origin = Path::new(embedded::MANIFEST_ORIGIN);
    let manifest = Manifest::parse(embedded::MANIFEST, origin)?;
    let report = budget::check_model(board, board_file, &manifest, origin, embedded::MODEL)?;
    let mut manifest = manifest;
    let asked_compute = manifest.model.compute;
    fit_precision(&mut manifest, board);
    Ok(ModelBundle {
        asked_compute,
        manifest,
        onnx: Cow::Borrowed(embedded::MODEL),
        origin: format!("{} (embedded)", origin.display()),
        report,
    })
}

/// A model from files, checked against `board`. `arg` is a manifest (`.toml`), an ONNX file
/// with its manifest beside it (same stem), or a name: the version in use of a model installed
/// in the board's `models.dir`, else `<models_dir>/<name>.toml`.
pub fn model_from_files(
    arg: &str,
    models_dir: &Path,
    board: &Board,
    board_file: &Path,
) -> Result<ModelBundle, CheckError> {
    let manifest_path = manifest_path_for(arg, models_dir, &board.models.dir);
    load_checked(&manifest_path, board, board_file)
}

/// The model of the manifest at `manifest_path` (its ONNX file beside it), checked against
/// `board` as an install or a build checks it: what `--model` loads at start-up and the
/// reloader loads on a switch.
pub fn load_checked(
    manifest_path: &Path,
    board: &Board,
    board_file: &Path,
) -> Result<ModelBundle, CheckError> {
    let (report, mut manifest, onnx) =
        budget::check_manifest_file(board, board_file, manifest_path)?;
    let asked_compute = manifest.model.compute;
    fit_precision(&mut manifest, board);
    Ok(ModelBundle {
        asked_compute,
        origin: manifest.model_path(manifest_path).display().to_string(),
        manifest,
        onnx: Cow::Owned(onnx),
        report,
    })
}

/// A manifest's `compute = "f16"` holds only where the board's CPU computes in half precision
/// (its `cpu_features` list `asimdhp`) and so does the CPU lookout runs on: elsewhere f16 is
/// converted element by element, 20-100 times slower than f32, so the model is computed in f32
/// and the log says why. The second condition keeps `select`, `cost` and `bench --board rpi-5`
/// on this x86 machine measuring what the board's estimate is scaled from, f32.
pub fn fit_precision(manifest: &mut Manifest, board: &Board) {
    if manifest.model.compute == Precision::F16 {
        let fitted = precision_for(Precision::F16, board.computes_f16(), cpu_computes_f16());
        if fitted != Precision::F16 {
            let whose = if board.computes_f16() {
                "this machine's CPU".to_owned()
            } else {
                format!("board {}'s CPU (its cpu_features lack asimdhp)", board.name)
            };
            tracing::warn!(
                "{}: compute = \"f16\", but {whose} has no half-precision arithmetic: \
                 computing in f32",
                manifest.id()
            );
        }
        manifest.model.compute = fitted;
    }
}

/// The float type a model asking for `wanted` is computed in, given whether the board's CPU
/// and the running CPU compute half precision.
pub fn precision_for(wanted: Precision, board_has_f16: bool, cpu_has_f16: bool) -> Precision {
    match wanted {
        Precision::F16 if board_has_f16 && cpu_has_f16 => Precision::F16,
        _ => Precision::F32,
    }
}

/// Whether the CPU lookout runs on has half-precision arithmetic (ARMv8.2 FP16: the kernel's
/// `asimdhp`, which qemu-user also reports for `-cpu cortex-a76`).
pub fn cpu_computes_f16() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("fp16")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

/// The manifest path for a `--model` argument: an ONNX file's manifest beside it, a manifest,
/// or for a bare name the version in use of that model in `installed` (see [`crate::lifecycle::slots`])
/// when one is installed and chosen, else `<models_dir>/<name>.toml`.
pub fn manifest_path_for(arg: &str, models_dir: &Path, installed: &Path) -> PathBuf {
    let path = Path::new(arg);
    if path.extension().is_some_and(|e| e == "onnx") {
        return path.with_extension("toml");
    }
    let resolved = budget::resolve(arg, models_dir);
    if resolved == path {
        return resolved;
    }
    match Slots::new(installed).through_current(arg) {
        Ok(Some(current)) => current,
        _ => resolved,
    }
}

/// Reads the manifest beside an ONNX file; `None` when there is none.
pub fn manifest_beside(onnx_path: &Path) -> Result<Option<Manifest>, ConfigError> {
    let manifest_path = onnx_path.with_extension("toml");
    if !manifest_path.exists() {
        return Ok(None);
    }
    Manifest::load(&manifest_path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `compute = "f16"` holds where both the board's CPU and the running one compute half
    /// precision, and falls back to f32 where either only converts it.
    #[test]
    fn f16_compute_holds_only_where_the_cpu_has_it() {
        use Precision::{F16, F32};
        assert_eq!(precision_for(F16, true, true), F16);
        for (board, cpu) in [(true, false), (false, true), (false, false)] {
            assert_eq!(precision_for(F16, board, cpu), F32, "{board} {cpu}");
        }
        assert_eq!(precision_for(F32, true, true), F32);
        let dir = Path::new("boards");
        let board = |name: &str| Board::load(&dir.join(format!("{name}.toml"))).expect("board");
        let mut manifest =
            Manifest::load(Path::new("models/shapes-detector.toml")).expect("manifest");
        manifest.model.compute = F16;
        let mut on_pi5 = manifest.clone();
        fit_precision(&mut on_pi5, &board("rpi-5"));
        // This machine: f16 on an aarch64 CPU with FP16 (qemu's default CPU has it), f32 on x86.
        let here = if cpu_computes_f16() { F16 } else { F32 };
        assert_eq!(on_pi5.model.compute, here);
        for name in ["host", "rpi-4b", "rpi-3b"] {
            let mut elsewhere = manifest.clone();
            fit_precision(&mut elsewhere, &board(name));
            assert_eq!(elsewhere.model.compute, F32, "{name}");
        }
    }

    #[test]
    fn a_name_is_the_installed_version_in_use_before_a_file_in_the_models_folder() {
        let work = tempfile::tempdir().expect("tempdir");
        let installed = work.path().join("installed");
        let models = Path::new("models");
        let family = installed.join("det");
        std::fs::create_dir_all(family.join("1.0")).expect("slot");
        let by_name = |name| manifest_path_for(name, models, &installed);
        // Installed but none chosen: the models folder.
        assert_eq!(by_name("det"), models.join("det.toml"));
        std::os::unix::fs::symlink("1.0", family.join("current")).expect("link");
        assert_eq!(by_name("det"), family.join("current/det.toml"));
        assert_eq!(by_name("other"), models.join("other.toml"));
        assert_eq!(by_name("x/det.toml"), Path::new("x/det.toml"));
        assert_eq!(by_name("det.onnx"), Path::new("det.toml"));
        assert_eq!(by_name(".."), models.join("...toml"));
    }
}
