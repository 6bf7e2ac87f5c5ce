//! `lookout run`: a model on a source, records to the sinks, until the source ends.

use super::{check_unit, ModelArgs};
use anyhow::{bail, Context as _, Result};
use clap::Args;
use lookout::frames;
use lookout::lifecycle::reload::{ModelControl, Reloader};
use lookout::lifecycle::samples::{Collector, WhenBusy};
use lookout::lifecycle::service;
use lookout::lifecycle::stop::StopRequest;
use lookout::model;
use lookout::pipeline::{self, cores, Watched};
use lookout::results::outputs;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
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
    /// Where records go: `stdout`, `file:PATH[,max_bytes=SIZE][,keep=N]` (JSON Lines, rotated
    /// at 64M with 4 kept unless these say otherwise),
    /// `serial[:PATH][@BAUD][,format=json|compact][,flow=none|hardware|software][,console=on|off]`
    /// (defaults from the board profile; the console listens on the same line unless
    /// `console=off`), or `gpio` / `gpio:RULES.toml` (lines driven by the board's
    /// [[gpio.rules]] or a rules file), or `mqtt://HOST[:PORT][/PREFIX]` / `mqtts://...` /
    /// `mqtt` (an MQTT broker, with the board's [mqtt]; README "MQTT"). Repeat for several.
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
    /// Threads tract splits each frame over. Default: chosen at start with --workers from the
    /// board's `threads` and the model's measured time (docs/operations.md, "Cores").
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: Option<u32>,
    /// Frames in flight at once, one worker each; records stay in frame order. Default: chosen
    /// with --threads.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    workers: Option<u32>,
    /// Serve the live preview and the API (README "Web preview and API"): at ADDR (`PORT`,
    /// `IP:PORT`), or without it at the board's `[http] listen` (default 127.0.0.1:8080).
    #[arg(long, num_args = 0..=1, value_name = "ADDR")]
    http: Option<Option<String>>,
    /// A zones file: `[tracking]`, `[[zones]]` and `[[masks]]` as in a board profile, used
    /// instead of the board's (docs/operations.md, "Tracking and zones").
    #[arg(long)]
    zones: Option<PathBuf>,
}

pub(crate) fn run(args: RunArgs) -> Result<()> {
    let place = &args.model.place;
    let (board, board_file) = model::board(place.board.as_deref(), &place.boards_dir)?;
    // A CSI camera is read through libcamera's V4L2 layer: start again with it preloaded
    // before anything is loaded (this returns only when it is preloaded already).
    let camera = lookout::spec::scheme(&args.source, &["camera"]).is_some();
    if camera && board.camera.kind == lookout::board::CameraKind::Csi {
        frames::camera::csi::run_through_layer()?;
        tracing::info!(
            "CSI camera through libcamera's V4L2 layer (LD_PRELOAD={})",
            std::env::var("LD_PRELOAD").unwrap_or_default()
        );
    }
    // From here on, `systemctl stop` and Ctrl-C end the run as its source ending, every sink
    // flushed (lifecycle::stop); one during start-up ends it before its first frame.
    let stop = StopRequest::on_signals().context("listening for SIGTERM and SIGINT")?;
    // Where the zones come from, for messages.
    let from = match &args.zones {
        Some(path) => path.display().to_string(),
        None => board_file.display().to_string(),
    };
    // A model from files can be switched (SIGHUP, the console's `model use`), and a new
    // version returns to the one before when it fails; the embedded model has nothing to
    // reload, but SIGHUP must not end its run (the signal's default action).
    let (mut pipeline, reloader, control) = match &args.model.model {
        Some(arg) => {
            let manifest = model::manifest_path_for(arg, &place.models_dir, &board.models.dir);
            tracing::info!("model {arg}: {}", manifest.display());
            let verifier = super::verifier(place)?.with_stop(stop.clone());
            let hidden = hidden_from_the_service(&manifest);
            let started = Reloader::start(manifest, &board, board_file, verifier);
            if started.is_err() && stop.requested() {
                // Its trial was stopped, not failed.
                tracing::info!("stopped by {} during start-up", stop.by());
                return Ok(());
            }
            let (pipeline, reloader) =
                started
                    .map_err(anyhow::Error::from)
                    .map_err(|e| match hidden {
                        Some(hint) => e.context(hint),
                        None => e,
                    })?;
            let control = reloader.control();
            (pipeline, Some(reloader), control)
        }
        None => {
            let bundle = model::embedded_model(&board, &board_file)?;
            let control = ModelControl::fixed(bundle.origin.clone());
            control
                .listen_for_sighup()
                .context("listening for SIGHUP")?;
            let pipeline =
                Watched::load(bundle.manifest, &bundle.onnx, &bundle.origin, &board.drift)?;
            (pipeline, None, control)
        }
    };
    if !pipeline.manifest().model.compute.is_f32() {
        tracing::info!(
            "{}: computed in {} (the manifest's compute; board {} has {})",
            pipeline.manifest().id(),
            pipeline.manifest().model.compute.as_str(),
            board.name,
            board.cpu_features.join(", ")
        );
    }
    if pipeline.watches_drift() {
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
    let scene = match &args.zones {
        Some(path) => lookout::board::SceneConfig::load(path)?,
        None => board.scene(),
    };
    pipeline
        .track_scene(&scene)
        .with_context(|| format!("{from}: the zones do not fit {}", pipeline.manifest().id()))?;
    // A model that does not detect boxes leaves the scene idle (its scene_off event says so)
    // until one that does is switched in.
    if scene.tracks() && pipeline.manifest().output.is_detector() {
        tracing::info!(
            "tracking objects ({from}): {} zone{}, {} mask{}",
            scene.zones.len(),
            if scene.zones.len() == 1 { "" } else { "s" },
            scene.masks.len(),
            if scene.masks.len() == 1 { "" } else { "s" },
        );
    }
    // GPIO rules may name a zone of the scene in use.
    let zones = if scene.tracks() {
        scene.zones.clone()
    } else {
        Vec::new()
    };
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
    let cores = use_cores(&mut pipeline, &board, args.threads, args.workers)?;
    tracing::info!(
        "{} thread{} per frame, {} frame{} at once: {}",
        cores.threads,
        if cores.threads == 1 { "" } else { "s" },
        cores.workers,
        if cores.workers == 1 { "" } else { "s" },
        cores.reason
    );
    let input = &pipeline.manifest().input;
    let need = (input.width() as u32, input.height() as u32);
    let frames::Opened { mut source, live } = frames::open_source(
        &args.source,
        args.looping,
        &board.camera,
        need,
        args.camera_mode.as_deref(),
    )?;
    let outputs::Outputs {
        mut sinks,
        consoles,
        mqtt,
    } = outputs::open(
        &args.sinks,
        &board,
        &pipeline.manifest().labels,
        &zones,
        &args.snapshot_dir,
        &control,
    )?;
    let http = match lookout::results::http::HttpSettings::resolve(
        args.http.as_ref().map(|a| a.as_deref()),
        &board.http,
    )? {
        Some(settings) => {
            let info = lookout::results::console::ConsoleInfo {
                board: board.name.clone(),
                sinks: args.sinks.clone(),
            };
            let (sink, steering) =
                lookout::results::http::open(settings, &board, info, &args.snapshot_dir, &control)?;
            sinks.push(Box::new(sink));
            Some(steering)
        }
        None => None,
    };
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
        // A live source's frames go stale while the loop waits for the writer; files do not.
        let when_busy = if live { WhenBusy::Drop } else { WhenBusy::Wait };
        let collector = Collector::start(
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
    let mut steering = (((consoles, mqtt), http), reloader);
    let started = std::time::Instant::now();
    let summary = pipeline::run(
        &mut pipeline,
        source.as_mut(),
        &mut sinks,
        args.max_frames,
        &mut steering,
        pipeline::RunExtras {
            samples: samples.as_mut(),
            health: board
                .health
                .enabled
                .then(lookout::lifecycle::health::HealthMonitor::of_this_board),
            stop,
        },
        |e| eprintln!("error: skipped frame: {e}"),
    )
    .map_err(|e| {
        let zones = matches!(e, pipeline::PipelineError::Scene(_));
        let e = anyhow::Error::from(e);
        if zones {
            e.context(format!("{from}: the zones do not fit the frames"))
        } else {
            e
        }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "{}{} frames in {seconds:.2} s: {:.2} frames/s",
        summary
            .stopped_by
            .map(|by| format!("stopped by {by}: "))
            .unwrap_or_default(),
        summary.frames,
        if seconds > 0.0 {
            summary.frames as f64 / seconds
        } else {
            0.0
        }
    );
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

/// Sets tract's threads and the pipeline's lanes: as `--threads`/`--workers` say (one where only
/// the other is given), or chosen from the board and the model's time here.
fn use_cores(
    pipeline: &mut Watched,
    board: &lookout::board::Board,
    threads: Option<u32>,
    workers: Option<u32>,
) -> Result<cores::CorePlan> {
    let available = cores::available_cores();
    let plan = if threads.is_some() || workers.is_some() {
        let plan = cores::CorePlan {
            threads: threads.map_or(1, |t| t as usize),
            workers: workers.map_or(1, |w| w as usize),
            reason: "as --threads/--workers say".into(),
        };
        if plan.threads * plan.workers > available {
            tracing::warn!(
                "--threads {} --workers {} keep {} threads busy on the {available} cores this                  process may use: frames will wait for each other",
                plan.threads,
                plan.workers,
                plan.threads * plan.workers
            );
        }
        plan
    } else {
        let budget = cores::CoreBudget {
            board_threads: board.threads,
            available,
            frame_ms: board.latency_target_ms,
        };
        let engine = pipeline.pipeline_mut().engine_mut()?;
        match cores::choose(budget, |threads| cores::time_engine(engine, threads)) {
            Ok(plan) => plan,
            // A model that fails here fails its first frame too, where a version on trial is
            // returned from: the run starts on one core and lets that happen.
            Err(e) => cores::CorePlan {
                threads: 1,
                workers: 1,
                reason: format!("timing the model failed ({e}); one core"),
            },
        }
    };
    lookout::model::engine::set_threads(plan.threads)?;
    pipeline.pipeline_mut().set_lanes(plan.workers);
    Ok(plan)
}

/// Why a model under a home folder is not there for the service: the packaged unit's
/// `ProtectHome=yes` hides `/home` and `/root` from it. `None` outside systemd (no
/// `INVOCATION_ID`) or for a manifest elsewhere or present.
fn hidden_from_the_service(manifest: &std::path::Path) -> Option<String> {
    let under_home = manifest.starts_with("/home") || manifest.starts_with("/root");
    (under_home && std::env::var_os("INVOCATION_ID").is_some() && !manifest.exists()).then(|| {
        format!(
            "{} is under a home folder, which the service cannot see (its unit has \
             ProtectHome=yes): install the model with `sudo lookout model install {} --board \
             /etc/lookout/board.toml --use` and run it by name (--model NAME)",
            manifest.display(),
            manifest.display()
        )
    })
}
