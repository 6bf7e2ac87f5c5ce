//! `lookout bench`: per-stage latency of the pipeline against bare inference.

use super::{load_model, print_out, progress_bar, PlaceArgs};
use anyhow::Result;
use clap::Args;
use lookout::frames::source;
use lookout::lab::bench;
use lookout::lab::measure::{self, Preloaded};
use lookout::model;
use lookout::results::sink;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
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
    /// Threads tract splits each operator over (matrix products, packing, element-wise and
    /// reduction operators), per worker.
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
    /// Also time every kind of operator in tract's plan, at one thread and at --threads:
    /// which operators take the time, and which ones more threads do not speed up.
    #[arg(long)]
    ops: bool,
    /// Run only the model, --frames times after --warmup, on the first frame's input: no
    /// pipeline, no sink (what onnxruntime's timings measure; scripts/insn-count counts it).
    #[arg(long, conflicts_with_all = ["ops", "sink", "workers"])]
    bare_only: bool,
    /// The float type to compute in, f32 or f16, for every model, instead of its manifest's
    /// `compute` (which holds only where the board's and this machine's CPUs compute f16).
    #[arg(long, value_parser = super::parse_precision)]
    compute: Option<lookout::manifest::Precision>,
}

pub(crate) fn run_bench(args: BenchArgs) -> Result<()> {
    lookout::model::engine::set_threads(args.threads)?;
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
        .map(|name| {
            let mut bundle = load_model(*name, &args.place, &board, &board_file)?;
            if let Some(compute) = args.compute {
                bundle.manifest.model.compute = compute;
            }
            Ok(bundle)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut source = source::open(&args.source, false)?;
    let options = bench::BenchOptions {
        warmup: args.warmup as usize,
        frames: args.frames as usize,
        workers: args.workers as usize,
    };
    // Enough distinct frames that decoding varies as in a run, few enough that holding them
    // does not swamp the peak memory figure.
    // The model alone runs on one frame's input: reading more would only be counted against it.
    let preload = if args.bare_only {
        1
    } else {
        options.frames.min(16)
    };
    let input = Preloaded::from_source(source.as_mut(), preload)?;
    if args.bare_only {
        let reports = bundles
            .iter()
            .map(|bundle| measure::bare_model(bundle, &input, options.warmup, options.frames))
            .collect::<Result<Vec<_>, _>>()?;
        if args.json {
            return print_out(serde_json::to_string_pretty(&reports)?);
        }
        let text: Vec<String> = reports.iter().map(|r| r.to_string()).collect();
        return print_out(text.join("\n\n"));
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
        let mut report = measure::bench_model(
            &bundle,
            &board.drift,
            &input,
            options,
            sink.as_mut(),
            &mut |done| bar.set_position(done as u64),
        )?;
        if args.ops {
            bar.set_message(format!("{}: operators", bundle.manifest.id()));
            let runs = (options.frames / 4).clamp(1, 20);
            report.operators = Some(measure::operator_profile(
                &bundle,
                &input,
                args.threads,
                runs,
            )?);
        }
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
