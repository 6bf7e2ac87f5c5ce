//! The `lookout` command: argument parsing and error reporting around the library.

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};
use lookout::board::Board;
use lookout::frames::{camera, source};
use lookout::lab::{bench, eval};
use lookout::lifecycle::service;
use lookout::model::inspect;
use lookout::model::{self, ModelBundle};
use lookout::pipeline::{self, Pipeline};
use lookout::results::{console, gpio, serial, sink};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

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
    Run(RunArgs),
    /// List the cameras (V4L2) and their modes.
    Cameras,
    /// Describe an ONNX file: inputs, outputs, operators, parameters, quantization, tract support.
    Inspect {
        /// The ONNX file.
        model: PathBuf,
    },
    /// Check a model against its manifest and a board's budget (the check the build runs).
    Check(ModelArgs),
    /// Measure per-stage latency of the pipeline against bare inference.
    Bench(BenchArgs),
    /// What running a model at a frame rate costs on a board: compute, memory, latency (measured
    /// here, scaled to the board), CPU share, energy, sample storage, and cloud calls instead.
    Cost(CostArgs),
    /// Choose the model for a board: measure each candidate's accuracy on a labelled set and its
    /// latency here (scaled to the board), mark the budgets each meets and the Pareto front of
    /// accuracy × latency × size, and pick one, with the reason.
    Select(SelectArgs),
    /// Measure accuracy on a labelled set: mAP for detectors (YOLO txt labels), top-1/top-5
    /// for classifiers (one folder per label).
    Eval(EvalArgs),
    /// Measure the reference statistics of a model on held-out images (brightness, colour,
    /// scores, classes) that drift monitoring compares a device's frames against.
    Profile(ProfileArgs),
    /// The frames kept for retraining (board profile `[samples]`).
    #[command(subcommand)]
    Samples(SamplesCommand),
    /// Installed model versions: install (checked against the board's budget), use, rollback.
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Every installed version, the one in use marked `*` and the one rollback returns to `<`.
    List(SlotsArgs),
    /// Check a model against its manifest and the board (as the build does) and install it as
    /// `<name>/<version>`; a refused model changes nothing.
    Install {
        /// The manifest (.toml), its model file beside it.
        manifest: PathBuf,
        #[command(flatten)]
        slots: SlotsArgs,
        /// Switch to it once installed.
        #[arg(long = "use")]
        use_it: bool,
    },
    /// Switch to an installed version; the one in use becomes the one rollback returns to.
    Use {
        /// Model name.
        name: String,
        /// Version.
        version: String,
        #[command(flatten)]
        slots: SlotsArgs,
    },
    /// Switch back to the version used before.
    Rollback {
        /// Model name.
        name: String,
        #[command(flatten)]
        slots: SlotsArgs,
    },
}

#[derive(Debug, Args)]
struct SlotsArgs {
    #[command(flatten)]
    place: PlaceArgs,
    /// The installed models. Default: the board profile's `models.dir`.
    #[arg(long)]
    root: Option<PathBuf>,
}

impl SlotsArgs {
    /// The board, its profile's path, and the slots.
    fn open(&self) -> Result<(Board, PathBuf, lookout::lifecycle::slots::Slots)> {
        let (board, board_file) =
            model::board(self.place.board.as_deref(), &self.place.boards_dir)?;
        let root = self
            .root
            .clone()
            .unwrap_or_else(|| board.models.dir.clone());
        Ok((
            board,
            board_file,
            lookout::lifecycle::slots::Slots::new(root),
        ))
    }
}

#[derive(Debug, Subcommand)]
enum SamplesCommand {
    /// Pack the sample store into one tar file for the trainer: images, YOLO labels and
    /// class names (or a folder per class), complete samples only.
    Export {
        #[command(flatten)]
        place: PlaceArgs,
        /// The store (default: the board profile's samples.dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Only this model's samples (`name@version`).
        #[arg(long)]
        model: Option<String>,
        /// The tar file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct PlaceArgs {
    /// Board profile: a name in --boards-dir or a path to a .toml. Default: the board this
    /// binary was built for.
    #[arg(long, short)]
    board: Option<String>,
    /// Where board names are looked up.
    #[arg(long, default_value = "boards")]
    boards_dir: PathBuf,
    /// Where model names are looked up.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
}

#[derive(Debug, Args)]
struct ModelArgs {
    #[command(flatten)]
    place: PlaceArgs,
    /// Model: a manifest (.toml), an .onnx with its manifest beside it, or a name: the version
    /// in use when the model is installed (board profile `models.dir`, `lookout model`), else
    /// the manifest in --models-dir. Default: the model built into this binary.
    #[arg(long, short)]
    model: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Frame source: `camera[:N|:/dev/videoN]` (V4L2), `replay:DIR[@FPS]` (a folder played as
    /// a live camera), an image file, a directory of images (sorted by name), or
    /// `pattern[:WIDTHxHEIGHT]` for a generated test pattern.
    #[arg(long, short)]
    source: String,
    /// Start a directory over when it ends.
    #[arg(long = "loop")]
    looping: bool,
    /// Where records go: `stdout`, `file:PATH` (JSON Lines),
    /// `serial[:PATH][@BAUD][,format=json|compact][,flow=none|hardware|software][,console=on|off]`
    /// (defaults from the board profile; the console listens on the same line unless
    /// `console=off`), or `gpio` / `gpio:RULES.toml` (lines driven by the board's
    /// [[gpio.rules]] or a rules file). Repeat for several.
    #[arg(long = "sink", default_value = "stdout")]
    sinks: Vec<String>,
    /// Camera mode, `WIDTHxHEIGHT@FPS FORMAT` (e.g. "640x480@30 YUYV"); default: the board
    /// profile's, or the smallest mode covering the model input.
    #[arg(long)]
    camera_mode: Option<String>,
    /// Where the console's `snapshot` saves frames.
    #[arg(long, default_value = "snapshots")]
    snapshot_dir: PathBuf,
    /// Stop after this many frames.
    #[arg(long)]
    max_frames: Option<u64>,
    /// Minimum score to report (default: the manifest's).
    #[arg(long)]
    score: Option<f32>,
    /// NMS IoU threshold (default: the manifest's).
    #[arg(long)]
    iou: Option<f32>,
    /// Most detections per frame (default: the manifest's).
    #[arg(long)]
    max_detections: Option<usize>,
}

#[derive(Debug, Args)]
struct BenchArgs {
    #[command(flatten)]
    place: PlaceArgs,
    /// Models to measure, one after the other: manifests (.toml), .onnx files with their
    /// manifest beside them, or names in --models-dir. Repeat for several. Default: the model
    /// built into this binary.
    #[arg(long = "model", short)]
    models: Vec<String>,
    /// Frames to benchmark on (as for `run`); read once into memory.
    #[arg(long, short, default_value = "pattern:640x480")]
    source: String,
    /// Threads that each run whole frames with their own copy of the model; records are put
    /// back in frame order before they are emitted.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    workers: u32,
    /// Threads tract splits each matrix product over (builds with the `tract-threads`
    /// feature).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Where the records go (`stdout`, `file:PATH`); default: serialised as JSON and dropped.
    #[arg(long)]
    sink: Option<String>,
    /// Timed frames.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    frames: u32,
    /// Untimed frames first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    warmup: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CostArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Frames per second the deployment runs at.
    #[arg(long)]
    fps: f64,
    /// Frames to measure on (as for `run`). Default: a test pattern at the board's camera size.
    #[arg(long, short)]
    source: Option<String>,
    /// Timed frames of the measurement here.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    frames: u32,
    /// Sample collection keeps one frame in this many (0: none). Default: the board profile's
    /// `samples.every_n`.
    #[arg(long)]
    sample_one_in: Option<u64>,
    /// Bytes of one stored sample. Default: the first frame as a JPEG at the board profile's
    /// `samples.jpeg_quality`.
    #[arg(long)]
    sample_bytes: Option<u64>,
    /// Price of 1000 cloud inference calls, to compare with.
    #[arg(long)]
    cloud_price: Option<f64>,
    /// Price of a kWh, in the same currency.
    #[arg(long)]
    kwh_price: Option<f64>,
    /// Timed runs of the reference network behind a board estimate (their median is used).
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u32).range(1..=1000))]
    reference_runs: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SelectArgs {
    #[command(flatten)]
    place: PlaceArgs,
    /// The models to choose from (manifests, .onnx files with their manifests, or names in
    /// --models-dir); all of one task.
    #[arg(long, num_args = 1.., required = true)]
    candidates: Vec<String>,
    /// The labelled set accuracy is measured on (as for `eval`); its first images are also the
    /// frames latency is measured on.
    #[arg(long)]
    dataset: PathBuf,
    /// Lowest accuracy accepted, in percent (mAP@0.5:0.95 for detectors, top-1 for
    /// classifiers).
    #[arg(long)]
    min_accuracy: Option<f64>,
    /// Replaces the board's latency_target_ms.
    #[arg(long)]
    max_latency_ms: Option<f64>,
    /// Replaces the board's model_budget_bytes.
    #[arg(long)]
    max_model_bytes: Option<u64>,
    /// Replaces the board's ram_budget_bytes.
    #[arg(long)]
    max_ram_bytes: Option<u64>,
    /// Accuracy points within which candidates count as equally accurate (then the fastest
    /// wins).
    #[arg(long, default_value_t = 0.5)]
    tolerance: f64,
    /// Timed frames per candidate for its latency.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    frames: u32,
    /// Timed runs of the reference network behind a board estimate (their median is used).
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u32).range(1..=1000))]
    reference_runs: u32,
    /// Also write the table as CSV to this file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Also draw accuracy against latency, the Pareto front and the pick, as SVG to this file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The labelled set: for detectors, images with YOLO `.txt` labels (side by side, or
    /// `images/` + `labels/`); for classifiers, one sub-folder of images per label.
    #[arg(long, short)]
    data: PathBuf,
    /// Lowest score kept while evaluating a detector (COCO practice: 0.001).
    #[arg(long)]
    score: Option<f32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ProfileArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder of held-out images (sub-folders included).
    #[arg(long, short)]
    data: PathBuf,
    /// Store the result as the `[profile]` table of the model's manifest (needs --model).
    #[arg(long)]
    write: bool,
    /// What the images are, recorded with the statistics (default: the folder and its size).
    #[arg(long)]
    describe: Option<String>,
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
        Command::Run(args) => run(args),
        Command::Cameras => list_cameras(),
        Command::Inspect { model } => inspect_model(&model),
        Command::Check(args) => check(args),
        Command::Bench(args) => run_bench(args),
        Command::Cost(args) => run_cost(args),
        Command::Select(args) => run_select(args),
        Command::Eval(args) => run_eval(args),
        Command::Profile(args) => run_profile(args),
        Command::Samples(SamplesCommand::Export {
            place,
            dir,
            model,
            out,
        }) => export_samples(&place, dir, model.as_deref(), &out),
        Command::Model(command) => manage_models(command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Library errors already quote their cause in their
/// message, so a cause whose text is already there is not repeated.
fn one_line(error: &anyhow::Error) -> String {
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

/// Loads the board and model the arguments name, checked against each other.
fn load(args: &ModelArgs) -> Result<(Board, ModelBundle)> {
    let (board, board_file) = model::board(args.place.board.as_deref(), &args.place.boards_dir)?;
    let bundle = load_model(args.model.as_deref(), &args.place, &board, &board_file)?;
    Ok((board, bundle))
}

/// One model for a board already loaded: the embedded one for `None`.
fn load_model(
    arg: Option<&str>,
    place: &PlaceArgs,
    board: &Board,
    board_file: &Path,
) -> Result<ModelBundle> {
    Ok(match arg {
        None => model::embedded_model(board, board_file)?,
        Some(arg) => model::model_from_files(arg, &place.models_dir, board, board_file)?,
    })
}

fn pipeline_for(bundle: ModelBundle) -> Result<Pipeline> {
    // Load errors already name the model file.
    Ok(Pipeline::new(
        bundle.manifest,
        &bundle.onnx,
        &bundle.origin,
    )?)
}

fn run(args: RunArgs) -> Result<()> {
    let place = &args.model.place;
    let (board, board_file) = model::board(place.board.as_deref(), &place.boards_dir)?;
    // A model from files can be switched on SIGHUP, and a new version returns to the one
    // before when it fails; the embedded model has nothing to reload.
    let (mut pipeline, reloader) = match &args.model.model {
        Some(arg) => {
            let manifest = model::manifest_path_for(arg, &place.models_dir, &board.models.dir);
            tracing::info!("model {arg}: {}", manifest.display());
            let (pipeline, reloader) =
                lookout::lifecycle::reload::Reloader::start(manifest, &board, board_file)?;
            (pipeline, Some(reloader))
        }
        None => {
            // Nothing to reload, but SIGHUP must not end the run (its default action).
            signal_hook::flag::register(
                signal_hook::consts::SIGHUP,
                std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            )
            .context("listening for SIGHUP")?;
            (
                pipeline_for(model::embedded_model(&board, &board_file)?)?,
                None,
            )
        }
    };
    if pipeline.watch_drift(&board.drift) {
        let d = &board.drift;
        tracing::info!(
            "watching drift: windows of {} frames (one in {}), alarm at PSI {} for {} windows",
            d.window_frames,
            d.sample_every,
            d.alarm_psi,
            d.windows_to_alarm
        );
    } else if board.drift.enabled {
        tracing::warn!(
            "{} has no [profile] in its manifest: drift is not watched (`lookout profile` writes one)",
            pipeline.manifest().id()
        );
    }
    let thresholds = pipeline.thresholds_mut();
    if let Some(score) = args.score {
        check_unit("--score", score)?;
        thresholds.score = score;
    }
    if let Some(iou) = args.iou {
        check_unit("--iou", iou)?;
        thresholds.iou = iou;
    }
    if let Some(max) = args.max_detections {
        if max == 0 {
            bail!("--max-detections must be at least 1");
        }
        thresholds.max_detections = max;
    }
    let input = &pipeline.manifest().input;
    let need = (input.width() as u32, input.height() as u32);
    // A live camera's frames go stale while the loop waits; files do not.
    let (mut source, when_busy): (Box<dyn source::FrameSource>, _) = match camera::open_source(
        &args.source,
        &board.camera,
        need,
        args.camera_mode.as_deref(),
    ) {
        Some(live) => (Box::new(live?), lookout::lifecycle::samples::WhenBusy::Drop),
        None => (
            source::open(&args.source, args.looping)?,
            lookout::lifecycle::samples::WhenBusy::Wait,
        ),
    };
    let mut sinks: Vec<Box<dyn sink::Sink>> = Vec::new();
    let mut consoles = Vec::new();
    for spec in &args.sinks {
        if let Some(gpio) = gpio::open_sink(spec, &board, &pipeline.manifest().labels) {
            sinks.push(Box::new(gpio?));
            continue;
        }
        if !spec.starts_with("serial") {
            sinks.push(sink::open(spec)?);
            continue;
        }
        let settings = serial::parse_spec(spec, &board.serial)?;
        let console = settings.console;
        let link: serial::SharedLink =
            std::rc::Rc::new(std::cell::RefCell::new(serial::SerialLink::new(settings)));
        sinks.push(Box::new(serial::SerialSink::new(link.clone())));
        if console {
            let info = console::ConsoleInfo {
                board: board.name.clone(),
                sinks: args.sinks.clone(),
            };
            consoles.push(
                console::Console::new(link.clone(), args.snapshot_dir.clone(), info)
                    .with_link_stats(link),
            );
        }
    }
    if let Some(notifier) = service::Notifier::from_env() {
        sinks.push(Box::new(notifier));
    }
    tracing::info!(
        "running {} on {}",
        pipeline.manifest().id(),
        source.describe()
    );
    let mut samples = if board.samples.enabled {
        let m = pipeline.manifest();
        let collector = lookout::lifecycle::samples::Collector::start(
            board.samples.clone(),
            m.id(),
            m.labels.clone(),
            m.output.is_detector(),
            when_busy,
        )
        .with_context(|| "opening the sample store (board profile [samples])")?;
        tracing::info!(
            "keeping samples in {} (at most {} bytes)",
            board.samples.dir.display(),
            board.samples.max_bytes
        );
        Some(collector)
    } else {
        None
    };
    let mut steering = (consoles, reloader);
    let summary = pipeline::run(
        &mut pipeline,
        source.as_mut(),
        &mut sinks,
        args.max_frames,
        &mut steering,
        samples.as_mut(),
        |e| eprintln!("error: skipped frame: {e}"),
    )?;
    if let Some(collector) = samples.as_mut() {
        collector.finish();
        tracing::info!("{}", collector.status());
    }
    if summary.failed_frames > 0 {
        bail!(
            "{} of {} frames could not be read (see the errors above)",
            summary.failed_frames,
            summary.frames + summary.failed_frames
        );
    }
    Ok(())
}

fn list_cameras() -> Result<()> {
    let cameras =
        camera::v4l::list_cameras().map_err(|e| anyhow::anyhow!("listing cameras: {e}"))?;
    if cameras.is_empty() {
        bail!(
            "no camera found: plug in a USB (UVC) camera and check `ls /dev/video*` and that this user \
             is in group video; a Pi CSI camera on Bookworm needs libcamera's V4L2 layer: \
             `libcamerify lookout cameras` (package libcamera-v4l2)"
        );
    }
    let mut text = String::new();
    for c in &cameras {
        text.push_str(&format!("{}  {}\n", c.id, c.name));
        match &c.modes {
            Ok(modes) => {
                for m in modes {
                    text.push_str(&format!("    {m}\n"));
                }
            }
            Err(e) => text.push_str(&format!("    modes unreadable: {e}\n")),
        }
    }
    print_out(format_args!("{}", text.trim_end()))
}

fn check_unit(flag: &str, value: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&value) {
        bail!("{flag} {value} is not in [0, 1]");
    }
    Ok(())
}

fn inspect_model(path: &Path) -> Result<()> {
    let report = inspect::inspect(path)?;
    let manifest = match model::manifest_beside(path) {
        Some(Ok(m)) => format!("\nmanifest:     {} beside it", m.id()),
        Some(Err(e)) => format!("\nmanifest:     INVALID: {e}"),
        None => String::new(),
    };
    print_out(format_args!("{report}{manifest}"))
}

fn check(args: ModelArgs) -> Result<()> {
    let (_, bundle) = load(&args)?;
    let r = &bundle.report;
    print_out(format_args!(
        "ok: {} ({}, {} bytes, sha256 {}) fits board {} ({}): {:.2}% of its {}-byte model budget; \
         quantization: {}",
        r.model,
        bundle.origin,
        r.model_bytes,
        r.sha256,
        r.board,
        r.board_file.display(),
        r.budget_used_percent(),
        r.budget_bytes,
        r.meta.quant_form().describe()
    ))
}

fn run_bench(args: BenchArgs) -> Result<()> {
    lookout::model::engine::set_threads(args.threads).map_err(anyhow::Error::msg)?;
    let (board, board_file) = model::board(args.place.board.as_deref(), &args.place.boards_dir)?;
    let names: Vec<Option<&str>> = if args.models.is_empty() {
        vec![None]
    } else {
        args.models.iter().map(|m| Some(m.as_str())).collect()
    };
    // Every model is checked before the first is timed: a typo in the last name should not
    // cost the minutes the others take.
    let bundles = names
        .iter()
        .map(|name| load_model(*name, &args.place, &board, &board_file))
        .collect::<Result<Vec<_>>>()?;
    let mut source = source::open(&args.source, false)?;
    let options = bench::BenchOptions {
        warmup: args.warmup as usize,
        frames: args.frames as usize,
        workers: args.workers as usize,
    };
    // Enough distinct frames that decoding varies as in a run, few enough that holding them
    // does not swamp the peak memory figure.
    let (frames, capture_ms) = bench::preload(source.as_mut(), options.frames.min(16))?;
    if frames.is_empty() {
        bail!("{}: gave no frames", source.describe());
    }
    let mut sink: Box<dyn sink::Sink> = match &args.sink {
        Some(spec) => sink::open(spec)?,
        None => Box::new(sink::discard()),
    };
    let bar = progress_bar("frames");
    let mut reports = Vec::with_capacity(bundles.len());
    for bundle in bundles {
        bar.reset();
        bar.set_length(options.frames as u64);
        bar.set_message(bundle.manifest.id());
        let report = bench_model(
            &bundle,
            &board.drift,
            &frames,
            &capture_ms,
            options,
            sink.as_mut(),
            &mut |done| bar.set_position(done as u64),
        )?;
        reports.push(report);
    }
    bar.finish_and_clear();
    if args.json {
        return print_out(serde_json::to_string_pretty(&reports)?);
    }
    let mut text = reports
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n\n");
    if reports.len() > 1 {
        text.push_str("\n\n");
        text.push_str(&bench::summary_table(&reports));
    }
    print_out(text)
}

/// Benchmarks one model bundle: each worker loads its own pipeline from it, watching drift as
/// `run` would on the board.
fn bench_model(
    bundle: &ModelBundle,
    drift: &lookout::lifecycle::drift::DriftConfig,
    frames: &[source::Frame],
    capture_ms: &[f64],
    options: bench::BenchOptions,
    sink: &mut dyn sink::Sink,
    progress: &mut dyn FnMut(usize),
) -> Result<bench::BenchReport> {
    let load = || {
        Pipeline::new(bundle.manifest.clone(), &bundle.onnx, &bundle.origin).map(|mut p| {
            p.watch_drift(drift);
            p
        })
    };
    let model_bytes = bundle.onnx.len() as u64;
    Ok(bench::run(
        &load,
        frames,
        capture_ms,
        options,
        sink,
        progress,
        model_bytes,
    )?)
}

/// Times a model here on `frames` (one worker, records dropped): what `cost` and `select`
/// scale to a board.
fn measure_here(
    bundle: &ModelBundle,
    drift: &lookout::lifecycle::drift::DriftConfig,
    frames: &[source::Frame],
    capture_ms: &[f64],
    timed: usize,
) -> Result<bench::BenchReport> {
    let options = bench::BenchOptions {
        warmup: 5,
        frames: timed,
        workers: 1,
    };
    bench_model(
        bundle,
        drift,
        frames,
        capture_ms,
        options,
        &mut sink::discard(),
        &mut |_| {},
    )
}

fn run_cost(args: CostArgs) -> Result<()> {
    lookout::lab::cost::check_rates(args.fps, args.cloud_price, args.kwh_price)?;
    let (board, bundle) = load(&args.model)?;
    let spec = args
        .source
        .clone()
        .unwrap_or_else(|| format!("pattern:{}x{}", board.camera.width, board.camera.height));
    let mut source = source::open(&spec, false)?;
    // Few frames in memory: they count in the peak memory reported.
    let (frames, capture_ms) = bench::preload(source.as_mut(), 4)?;
    let Some(first) = frames.first() else {
        bail!("{}: gave no frames", source.describe());
    };
    let sample_bytes = match args.sample_bytes {
        Some(bytes) => bytes,
        None => lookout::lab::cost::sample_size(&first.image, board.samples.jpeg_quality)
            .map_err(|e| anyhow::anyhow!("encoding a sample frame as JPEG: {e}"))?,
    };
    let probe = lookout::model::engine::probe(&bundle.onnx, &bundle.origin)?;
    let measured = measure_here(
        &bundle,
        &board.drift,
        &frames,
        &capture_ms,
        args.frames as usize,
    )?;
    let host_frame_ms = measured.pipeline_ms.p50;
    let estimate = lookout::lab::estimate::Estimator::new(&board, args.reference_runs as usize)
        .estimate(host_frame_ms, &probe)?;
    let inputs = lookout::lab::cost::CostInputs {
        model: bundle.manifest.id(),
        fps: args.fps,
        macs: probe.macs,
        parameters: probe.parameters,
        model_bytes: bundle.onnx.len() as u64,
        peak_rss_bytes: measured.footprint.peak_rss_bytes,
        held_frame_bytes: measured.footprint.preloaded_frame_bytes,
        host_frame_ms,
        estimate,
        sample_one_in: args.sample_one_in.unwrap_or(board.samples.every_n),
        sample_bytes,
        cloud_price_per_1000: args.cloud_price,
        kwh_price: args.kwh_price,
    };
    let report = lookout::lab::cost::compute(inputs, &board)?;
    if args.json {
        print_out(serde_json::to_string_pretty(&report)?)
    } else {
        print_out(report.to_string().trim_end())
    }
}

fn run_select(args: SelectArgs) -> Result<()> {
    let (board, board_file) = model::board(args.place.board.as_deref(), &args.place.boards_dir)?;
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        bail!("--tolerance {} must be 0 or more", args.tolerance);
    }
    let budgets = lookout::lab::select::Budgets {
        model_bytes: args.max_model_bytes.unwrap_or(board.model_budget_bytes),
        ram_bytes: args.max_ram_bytes.unwrap_or(board.ram_budget_bytes),
        latency_ms: args.max_latency_ms.unwrap_or(board.latency_target_ms),
        min_accuracy: args.min_accuracy,
    };
    // The size budget is judged here, with the others, rather than refusing to load: a
    // candidate over it is still worth a row that says by how much.
    let mut unlimited = board.clone();
    unlimited.model_budget_bytes = u64::MAX;
    let bundles = args
        .candidates
        .iter()
        .map(|c| load_model(Some(c), &args.place, &unlimited, &board_file))
        .collect::<Result<Vec<_>>>()?;
    let classifies = |b: &ModelBundle| {
        matches!(
            b.manifest.output,
            lookout::manifest::OutputSpec::Classify { .. }
        )
    };
    if bundles.iter().any(classifies) && !bundles.iter().all(classifies) {
        bail!("the candidates mix detectors and classifiers; choose among models of one task");
    }
    let files = source::image_files_under(&args.dataset)?;
    let mut frames = Vec::new();
    let mut capture_ms = Vec::new();
    for path in files.iter().take(8) {
        let started = std::time::Instant::now();
        frames.push(source::read_frame(path)?);
        capture_ms.push(pipeline::millis(started.elapsed()));
    }
    if frames.is_empty() {
        bail!("{}: no images", args.dataset.display());
    }
    // Each reference network is timed when the first candidate of its kind needs it.
    let mut estimator =
        lookout::lab::estimate::Estimator::new(&board, args.reference_runs as usize);
    let bar = progress_bar("images");
    let mut candidates = Vec::with_capacity(bundles.len());
    for bundle in &bundles {
        bar.set_message(format!("{} accuracy", bundle.manifest.id()));
        let mut manifest = bundle.manifest.clone();
        let operating = eval::prepare(&mut manifest, None).map_err(anyhow::Error::msg)?;
        let mut pipeline = Pipeline::new(manifest, &bundle.onnx, &bundle.origin)?;
        let report = eval::evaluate(
            &mut pipeline,
            &args.dataset,
            operating,
            &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
        )?;
        let (accuracy, metric) = match &report {
            eval::EvalReport::Detection(d) => (d.map.map50_95 * 100.0, "mAP@0.5:0.95"),
            eval::EvalReport::Classification(c) => (c.accuracy.top1 * 100.0, "top-1"),
        };
        bar.set_message(format!("{} latency", bundle.manifest.id()));
        let measured = measure_here(
            bundle,
            &board.drift,
            &frames,
            &capture_ms,
            args.frames as usize,
        )?;
        let host_ms = measured.pipeline_ms.p50;
        // The probe tells which reference fits the model; the host profile needs none.
        let estimate = match board.perf {
            Some(_) => {
                let probe = lookout::model::engine::probe(&bundle.onnx, &bundle.origin)?;
                estimator.estimate(host_ms, &probe)?
            }
            None => None,
        };
        candidates.push(lookout::lab::select::Candidate {
            model: bundle.manifest.id(),
            origin: bundle.origin.clone(),
            accuracy,
            metric: metric.into(),
            model_bytes: bundle.onnx.len() as u64,
            peak_rss_bytes: measured.footprint.peak_rss_bytes,
            host_ms,
            board_ms: estimate.as_ref().map_or(host_ms, |e| e.estimated_ms),
            estimated: estimate.is_some(),
        });
    }
    bar.finish_and_clear();
    let selection = lookout::lab::select::select(&board.name, budgets, candidates, args.tolerance);
    if let Some(path) = &args.csv {
        let text = lookout::lab::select::to_csv(&selection)?;
        std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("{}: cannot write the table: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let svg = lookout::lab::select::plot_svg(&selection)
            .map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
        std::fs::write(path, svg)
            .map_err(|e| anyhow::anyhow!("{}: cannot write the plot: {e}", path.display()))?;
    }
    if args.json {
        print_out(serde_json::to_string_pretty(&selection)?)
    } else {
        print_out(&selection)
    }
}

fn run_eval(args: EvalArgs) -> Result<()> {
    let (_, mut bundle) = load(&args.model)?;
    if let Some(score) = args.score {
        check_unit("--score", score)?;
    }
    let operating = eval::prepare(&mut bundle.manifest, args.score).map_err(anyhow::Error::msg)?;
    let mut pipeline = pipeline_for(bundle)?;
    let bar = progress_bar("images");
    let report = eval::evaluate(&mut pipeline, &args.data, operating, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    if args.json {
        print_out(serde_json::to_string_pretty(&report)?)
    } else {
        print_out(&report)
    }
}

/// Prints a report on stdout. A reader that went away (`lookout eval … | head`) is not an
/// error worth a message, and must not become a panic.
fn print_out(text: impl std::fmt::Display) -> Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A progress bar for long runs over image sets; hidden automatically when stderr is not a
/// terminal, so logs and CI output stay clean.
fn progress_bar(unit: &str) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{msg}} {{bar:40}} {{pos}}/{{len}} {unit}, {{per_sec}}, eta {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    )
}

fn run_profile(args: ProfileArgs) -> Result<()> {
    let (board, bundle) = load(&args.model)?;
    let manifest_path = match (&args.model.model, args.write) {
        (Some(arg), true) => {
            let path =
                model::manifest_path_for(arg, &args.model.place.models_dir, &board.models.dir);
            if lookout::lifecycle::slots::Slots::of_current_file(&path).is_some() {
                bail!(
                    "{}: an installed version is never changed; profile the manifest it was \
                     installed from and install that as a new version",
                    path.display()
                );
            }
            Some(path)
        }
        (None, true) => bail!("--write needs --model: the embedded manifest cannot be rewritten"),
        (_, false) => None,
    };
    let mut pipeline = pipeline_for(bundle)?;
    let files = source::image_files_under(&args.data)?;
    let bar = progress_bar("images");
    let data = args
        .describe
        .unwrap_or_else(|| format!("{} ({} images)", args.data.display(), files.len()));
    let profile =
        lookout::lab::profile::measure(&mut pipeline, &files, data, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
    bar.finish_and_clear();
    match manifest_path {
        Some(path) => {
            lookout::lab::profile::write_into_manifest(&path, &profile)?;
            print_out(format_args!(
                "wrote [profile] of {} frames into {}",
                profile.frames,
                path.display()
            ))
        }
        None => print_out(lookout::lab::profile::to_toml(&profile)?.trim_end()),
    }
}

fn export_samples(
    place: &PlaceArgs,
    dir: Option<PathBuf>,
    model: Option<&str>,
    out: &Path,
) -> Result<()> {
    let dir = match dir {
        Some(dir) => dir,
        None => {
            model::board(place.board.as_deref(), &place.boards_dir)?
                .0
                .samples
                .dir
        }
    };
    let summary = lookout::lifecycle::samples::export::export(&dir, model, out)?;
    print_out(format_args!(
        "{}: {} images, {} label files, {} bytes from {}",
        out.display(),
        summary.images,
        summary.labels,
        summary.bytes,
        dir.display()
    ))
}

fn manage_models(command: ModelCommand) -> Result<()> {
    use lookout::lifecycle::slots::Slot;
    let line = |s: &Slot| {
        let mark = if s.current {
            "*"
        } else if s.previous {
            "<"
        } else {
            " "
        };
        format!("{mark} {}@{}  {}", s.name, s.version, s.manifest.display())
    };
    match command {
        ModelCommand::List(args) => {
            let (_, _, slots) = args.open()?;
            let listed = slots.list()?;
            if listed.is_empty() {
                return print_out(format_args!(
                    "no model installed in {}",
                    slots.root().display()
                ));
            }
            print_out(listed.iter().map(line).collect::<Vec<_>>().join("\n"))
        }
        ModelCommand::Install {
            manifest,
            slots,
            use_it,
        } => {
            let (board, board_file, slots) = slots.open()?;
            let installed = slots
                .install(&board, &board_file, &manifest)
                .with_context(|| format!("installing {}", manifest.display()))?;
            let slot = if use_it {
                slots.use_version(&installed.name, &installed.version)?
            } else {
                installed
            };
            print_out(format_args!("installed: {}", line(&slot)))
        }
        ModelCommand::Use {
            name,
            version,
            slots,
        } => print_out(format_args!(
            "in use: {}",
            line(&slots.open()?.2.use_version(&name, &version)?)
        )),
        ModelCommand::Rollback { name, slots } => print_out(format_args!(
            "rolled back: {}",
            line(&slots.open()?.2.rollback(&name)?)
        )),
    }
}
