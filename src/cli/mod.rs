//! One module per command: each parses nothing itself (clap did) and calls the library, then
//! prints. What the commands share is here: where boards and models are looked up, loading
//! them, printing a report, the progress bar.

pub(crate) mod bench;
pub(crate) mod cameras;
pub(crate) mod check;
pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod import;
pub(crate) mod inspect;
pub(crate) mod model;
pub(crate) mod profile;
pub(crate) mod run;
pub(crate) mod samples;
pub(crate) mod select;
pub(crate) mod verify;

use anyhow::{bail, Result};
use clap::Args;
use lookout::board::Board;
use lookout::manifest::Precision;
use lookout::model::{self as models, ModelBundle};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub(crate) struct PlaceArgs {
    /// Board profile: a name in --boards-dir or a path to a .toml. Default: the board this
    /// binary was built for.
    #[arg(long, short)]
    pub(crate) board: Option<String>,
    /// Where board names are looked up.
    #[arg(long, default_value = "boards")]
    pub(crate) boards_dir: PathBuf,
    /// Where model names are looked up.
    #[arg(long, default_value = "models")]
    pub(crate) models_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ModelArgs {
    #[command(flatten)]
    pub(crate) place: PlaceArgs,
    /// Model: a manifest (.toml), an .onnx with its manifest beside it, or a name: the version
    /// in use when the model is installed (board profile `models.dir`, `lookout model`), else
    /// the manifest in --models-dir. Default: the model built into this binary.
    #[arg(long, short)]
    pub(crate) model: Option<String>,
}

/// `--compute`'s value (bench and eval: the float type to measure a model in, whatever the
/// manifest and the CPUs say).
pub(crate) fn parse_precision(text: &str) -> Result<Precision, String> {
    match text {
        "f32" => Ok(Precision::F32),
        "f16" => Ok(Precision::F16),
        other => Err(format!("{other:?} is not f32 or f16")),
    }
}

/// Loads the board and model the arguments name, checked against each other.
pub(crate) fn load(args: &ModelArgs) -> Result<(Board, ModelBundle)> {
    let (board, board_file) = models::board(args.place.board.as_deref(), &args.place.boards_dir)?;
    let bundle = load_model(args.model.as_deref(), &args.place, &board, &board_file)?;
    Ok((board, bundle))
}

/// One model for a board already loaded: the embedded one for `None`.
pub(crate) fn load_model(
    arg: Option<&str>,
    place: &PlaceArgs,
    board: &Board,
    board_file: &Path,
) -> Result<ModelBundle> {
    Ok(match arg {
        None => models::embedded_model(board, board_file)?,
        Some(arg) => models::model_from_files(arg, &place.models_dir, board, board_file)?,
    })
}

pub(crate) fn check_unit(flag: &str, value: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&value) {
        bail!("{flag} {value} is not in [0, 1]");
    }
    Ok(())
}

/// Prints a report on stdout. A reader that went away (`lookout eval … | head`) is not an
/// error worth a message, and must not become a panic.
pub(crate) fn print_out(text: impl std::fmt::Display) -> Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A progress bar for long runs over image sets; hidden automatically when stderr is not a
/// terminal, so logs and CI output stay clean.
pub(crate) fn progress_bar(unit: &str) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{msg}} {{bar:40}} {{pos}}/{{len}} {unit}, {{per_sec}}, eta {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    )
}

/// A pipeline for a loaded model, without drift watching (evaluation and profiling).
pub(crate) fn pipeline_for(bundle: ModelBundle) -> Result<lookout::pipeline::Pipeline> {
    // Load errors already name the model file.
    Ok(lookout::pipeline::Pipeline::new(
        bundle.manifest,
        &bundle.onnx,
        &bundle.origin,
    )?)
}

/// The error and its causes on one line. Library errors already quote their cause in their
/// message, so a cause whose text is already there is not repeated.
pub(crate) fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// A verifier of models (`lookout::model::verify`) whose children look boards and models up
/// where this command does.
pub(crate) fn verifier(place: &PlaceArgs) -> Result<lookout::model::verify::Verifier> {
    let mut common: Vec<std::ffi::OsString> = vec![
        "--boards-dir".into(),
        place.boards_dir.clone().into(),
        "--models-dir".into(),
        place.models_dir.clone().into(),
    ];
    if let Some(board) = &place.board {
        common.push("--board".into());
        common.push(board.into());
    }
    Ok(lookout::model::verify::Verifier::this_binary(common)?
        .with_heartbeat(lookout::lifecycle::service::still_working))
}
