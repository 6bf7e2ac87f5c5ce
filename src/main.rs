//! The `lookout` command: arguments parsed, logging set up, one function called per command
//! (`src/cli/`), its error reported on one line.

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Keeps the blocks of tract's per-frame tensors for the next frame (`lookout::lifecycle::memory`).
#[global_allocator]
static GLOBAL: lookout::lifecycle::memory::GlobalHeap = lookout::lifecycle::memory::GlobalHeap;

/// Offline camera detector: runs an ONNX model on frames and reports what it sees.
#[derive(Debug, Parser)]
#[command(name = "lookout", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the model on a source and write one JSON record per frame to the sinks.
    Run(cli::run::RunArgs),
    /// List the cameras (V4L2) and their modes.
    Cameras,
    /// Describe an ONNX file: inputs, outputs, operators, parameters, quantization, tract support.
    Inspect {
        /// The ONNX file.
        model: PathBuf,
    },
    /// Write the manifest for an ONNX file you already have (an Ultralytics, torchvision,
    /// TFLite-converted export...): input, labels, decoder and pre-processing read from the file
    /// where it says them, guesses marked; then check it.
    Import(cli::import::ImportArgs),
    /// Check a model against its manifest and a board's budget (the check the build runs).
    Check(cli::ModelArgs),
    /// Measure per-stage latency of the pipeline against bare inference.
    Bench(cli::bench::BenchArgs),
    /// What running a model at a frame rate costs on a board: compute, memory, latency (measured
    /// here, scaled to the board), CPU share, energy, sample storage, and cloud calls instead.
    Cost(cli::cost::CostArgs),
    /// Choose the model for a board: measure each candidate's accuracy on a labelled set and its
    /// latency here (scaled to the board), mark the budgets each meets and the Pareto front of
    /// accuracy × latency × size, and pick one, with the reason.
    Select(cli::select::SelectArgs),
    /// Measure accuracy on a labelled set: mAP for detectors (YOLO txt labels), top-1/top-5
    /// for classifiers (one folder per label).
    Eval(cli::eval::EvalArgs),
    /// Measure the reference statistics of a model on held-out images (brightness, colour,
    /// scores, classes) that drift monitoring compares a device's frames against.
    Profile(cli::profile::ProfileArgs),
    /// The frames kept for retraining (board profile `[samples]`).
    #[command(subcommand)]
    Samples(cli::samples::SamplesCommand),
    /// Installed model versions: install (checked against the board's budget), use, rollback.
    #[command(subcommand)]
    Model(cli::model::ModelCommand),
    /// Try a model in this process and answer on one line (lookout starts itself with this to
    /// try a model before loading it).
    #[command(hide = true)]
    VerifyModel(cli::verify::VerifyArgs),
}

/// The log filter from `LOOKOUT_LOG` (`warn` when unset), as `level` or `target=level,...`.
/// A spec that does not parse is reported, not silently replaced. tracing-subscriber's
/// `Targets` rather than its `EnvFilter`: the latter's regex engine added about 0.4 MB to the
/// stripped aarch64 binary, for span and field filters nobody uses on a board.
fn log_filter() -> (Targets, Option<String>) {
    let warn_only = Targets::new().with_default(tracing::Level::WARN);
    match std::env::var("LOOKOUT_LOG") {
        Err(std::env::VarError::NotPresent) => (warn_only, None),
        Err(std::env::VarError::NotUnicode(_)) => (
            warn_only,
            Some("LOOKOUT_LOG is not UTF-8; logging warnings only".to_owned()),
        ),
        Ok(spec) => match spec.parse::<Targets>() {
            Ok(targets) => (targets, None),
            Err(e) => (
                warn_only,
                Some(format!(
                    "LOOKOUT_LOG={spec:?}: {e} (expected a level such as `info`, or `lookout=debug,warn`); logging warnings only"
                )),
            ),
        },
    }
}

fn main() -> ExitCode {
    let (log_filter, bad_log_spec) = log_filter();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .without_time()
                .with_target(false),
        )
        .with(log_filter)
        .init();
    if let Some(message) = bad_log_spec {
        tracing::warn!("{message}");
    }
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => cli::run::run(args),
        Command::Cameras => cli::cameras::list_cameras(),
        Command::Inspect { model } => cli::inspect::inspect_model(&model),
        Command::Import(args) => cli::import::import_model(args),
        Command::Check(args) => cli::check::check(args),
        Command::Bench(args) => cli::bench::run_bench(args),
        Command::Cost(args) => cli::cost::run_cost(args),
        Command::Select(args) => cli::select::run_select(args),
        Command::Eval(args) => cli::eval::run_eval(args),
        Command::Profile(args) => cli::profile::run_profile(args),
        Command::Samples(command) => cli::samples::samples(command),
        Command::Model(command) => cli::model::manage_models(command),
        Command::VerifyModel(args) => cli::verify::verify_model(args),
    };
    let heap = lookout::lifecycle::memory::HEAP.stats();
    if heap.reused + heap.from_system > 0 {
        tracing::info!(
            "heap: {} of {} large blocks reused, {:.1} MiB kept for reuse, {} given back",
            heap.reused,
            heap.reused + heap.from_system,
            heap.kept_bytes as f64 / f64::from(1 << 20),
            heap.given_back
        );
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
