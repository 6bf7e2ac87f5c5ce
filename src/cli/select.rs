//! `lookout select`: the model for a board, measured and judged against its budgets.

use super::{load_model, print_out, progress_bar, PlaceArgs};
use anyhow::{bail, Context as _, Result};
use clap::Args;
use lookout::lab::estimate::Estimator;
use lookout::lab::measure::{self, Preloaded};
use lookout::lab::select;
use lookout::model;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(crate) struct SelectArgs {
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

pub(crate) fn run_select(args: SelectArgs) -> Result<()> {
    let (board, board_file) = model::board(args.place.board.as_deref(), &args.place.boards_dir)?;
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        bail!("--tolerance {} must be 0 or more", args.tolerance);
    }
    let budgets = select::Budgets {
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
    measure::check_one_task(&bundles)?;
    let input = Preloaded::from_images_under(&args.dataset, 8)?;
    // Each reference network is timed when the first candidate of its kind needs it.
    let mut estimator = Estimator::new(&board, args.reference_runs as usize);
    let bar = progress_bar("images");
    let mut candidates = Vec::with_capacity(bundles.len());
    for bundle in &bundles {
        bar.set_message(format!("{} accuracy, latency", bundle.manifest.id()));
        candidates.push(measure::judge_candidate(
            bundle,
            &board,
            &mut estimator,
            &args.dataset,
            &input,
            args.frames as usize,
            &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
        )?);
    }
    bar.finish_and_clear();
    let selection = select::select(&board.name, budgets, candidates, args.tolerance);
    if let Some(path) = &args.csv {
        let text = select::to_csv(&selection)?;
        std::fs::write(path, text)
            .with_context(|| format!("{}: cannot write the table", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let svg = select::plot_svg(&selection)?;
        std::fs::write(path, svg)
            .with_context(|| format!("{}: cannot write the plot", path.display()))?;
    }
    if args.json {
        return print_out(serde_json::to_string_pretty(&selection)?);
    }
    print_out(&selection)?;
    // Whether the pick would gain from f16 there. Where this machine measured it in f32 (it has
    // no half-precision arithmetic, docs/speed.md), the estimate is f32's, and says so.
    if let Some(pick) = selection.pick.filter(|_| board.computes_f16()) {
        let bundle = &bundles[pick];
        let offer = super::import::half_precision_offer_for(&board.name, bundle);
        if offer.in_f16 && bundle.manifest.model.compute.is_f32() {
            print_out(format_args!("{} (the estimate above is f32's)", offer.line))?;
        } else {
            print_out(offer.line)?;
        }
    }
    Ok(())
}
