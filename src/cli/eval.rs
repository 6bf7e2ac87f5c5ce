//! `lookout eval`: accuracy on a labelled set.

use super::{check_unit, load, pipeline_for, print_out, progress_bar, ModelArgs};
use anyhow::Result;
use clap::Args;
use lookout::lab::eval;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The float type to compute in, f32 or f16, instead of the manifest's `compute` (which
    /// holds only where the board's and this machine's CPUs compute f16): f16's accuracy,
    /// measured on any machine.
    #[arg(long, value_parser = super::parse_precision)]
    compute: Option<lookout::manifest::Precision>,
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

pub(crate) fn run_eval(args: EvalArgs) -> Result<()> {
    let (_, mut bundle) = load(&args.model)?;
    if let Some(compute) = args.compute {
        bundle.manifest.model.compute = compute;
    }
    if let Some(score) = args.score {
        check_unit("--score", score)?;
    }
    let operating = eval::prepare(&mut bundle.manifest, args.score)?;
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
