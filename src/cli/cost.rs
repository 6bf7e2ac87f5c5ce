//! `lookout cost`: what running a model at a frame rate costs on a board.

use super::{load, print_out, ModelArgs};
use anyhow::Result;
use clap::Args;
use lookout::frames::source;
use lookout::lab::cost;
use lookout::lab::measure::{self, CostRequest, Preloaded};

#[derive(Debug, Args)]
pub(crate) struct CostArgs {
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

pub(crate) fn run_cost(args: CostArgs) -> Result<()> {
    // A bad rate is refused before the model is loaded and anything is timed.
    cost::check_rates(args.fps, args.cloud_price, args.kwh_price)?;
    let (board, bundle) = load(&args.model)?;
    let spec = args
        .source
        .clone()
        .unwrap_or_else(|| format!("pattern:{}x{}", board.camera.width, board.camera.height));
    let mut source = source::open(&spec, false)?;
    // Few frames in memory: they count in the peak memory reported.
    let input = Preloaded::from_source(source.as_mut(), 4)?;
    let request = CostRequest {
        fps: args.fps,
        timed_frames: args.frames as usize,
        reference_runs: args.reference_runs as usize,
        sample_one_in: args.sample_one_in,
        sample_bytes: args.sample_bytes,
        cloud_price_per_1000: args.cloud_price,
        kwh_price: args.kwh_price,
    };
    let report = measure::cost(&bundle, &board, &input, request)?;
    if args.json {
        print_out(serde_json::to_string_pretty(&report)?)
    } else {
        print_out(report.to_string().trim_end())
    }
}
