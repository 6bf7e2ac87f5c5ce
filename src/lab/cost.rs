//! What running a model at a frame rate on a board costs: compute, time, energy, storage, and
//! what the same inferences would cost as cloud calls.
//!
//! Every figure comes with its inputs, so a reader can redo the arithmetic: compute from tract's
//! graph, latency measured here and scaled to the board ([`crate::lab::estimate`]), power from the
//! board profile's `[power]` figures, storage from the sampling settings and the size of one
//! stored frame.

use crate::board::Board;
use crate::lab::estimate::LatencyEstimate;
use serde::Serialize;

/// Seconds in a day, and days in the month the monthly figures use.
const DAY_SECONDS: f64 = 86_400.0;
const MONTH_DAYS: f64 = 30.0;

/// What a cost is computed from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostInputs {
    /// `name@version`.
    pub model: String,
    /// Frames per second the deployment runs at.
    pub fps: f64,
    /// Multiply-accumulates per inference (tract's graph).
    pub macs: u64,
    /// Weights and biases (tract's graph).
    pub parameters: u64,
    /// The ONNX file.
    pub model_bytes: u64,
    /// Peak resident memory of lookout running the model, measured on this machine.
    pub peak_rss_bytes: Option<u64>,
    /// Frame pixels held in memory during that measurement, part of the peak.
    pub held_frame_bytes: u64,
    /// Per-frame time (pre + infer + post + emit, median) measured on this machine, in ms.
    pub host_frame_ms: f64,
    /// The board estimate of that time; `None` when the board is this machine (the host
    /// profile), where the measurement is used as it is.
    pub estimate: Option<LatencyEstimate>,
    /// One frame in this many is stored for retraining (0: none).
    pub sample_one_in: u64,
    /// Bytes of one stored frame (JPEG).
    pub sample_bytes: u64,
    /// Price of 1000 cloud inference calls, in the user's currency.
    pub cloud_price_per_1000: Option<f64>,
    /// Price of a kWh, in the same currency.
    pub kwh_price: Option<f64>,
}

/// The cost of running a model on a board.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostReport {
    /// The inputs, as given or measured.
    pub inputs: CostInputs,
    /// The board.
    pub board: String,
    /// Cores of the board.
    pub cores: usize,
    /// Per-frame latency on the board, in ms.
    pub latency_ms: f64,
    /// `"measured"` on this machine, or `"estimated"` from it.
    pub latency_basis: &'static str,
    /// Whether the latency meets the board's `latency_target_ms`.
    pub meets_latency_target: bool,
    /// Highest rate one worker sustains: 1000 / latency.
    pub max_fps_one_worker: f64,
    /// Busy fraction of one core at the requested rate (above 1: one worker cannot keep up).
    pub core_duty: f64,
    /// Busy fraction of the whole CPU (all cores).
    pub cpu_share: f64,
    /// Multiply-accumulates per second at the requested rate.
    pub macs_per_second: f64,
    /// Average power draw: idle plus the busy share of the idle-to-load difference, in W.
    pub average_watts: f64,
    /// Energy per day, in Wh.
    pub wh_per_day: f64,
    /// Energy per 30-day month, in kWh.
    pub kwh_per_month: f64,
    /// The month's energy at `kwh_price`.
    pub energy_price_per_month: Option<f64>,
    /// Inferences per day.
    pub inferences_per_day: f64,
    /// Frames stored per day for retraining.
    pub samples_per_day: f64,
    /// Bytes stored per day for retraining.
    pub sample_bytes_per_day: f64,
    /// The day's inferences as cloud calls.
    pub cloud_price_per_day: Option<f64>,
    /// The month's inferences as cloud calls.
    pub cloud_price_per_month: Option<f64>,
}

/// Bytes of `image` stored as a sample: a JPEG at `quality`, as sample collection writes it
/// (the board profile's `samples.jpeg_quality`).
pub fn sample_size(image: &image::RgbImage, quality: u8) -> Result<u64, image::ImageError> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality).encode_image(image)?;
    Ok(bytes.len() as u64)
}

/// Errors in the inputs.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CostError {
    /// A rate or price that is not a positive number.
    #[error("{what} must be a positive number, not {value}")]
    NotPositive {
        /// Which input.
        what: &'static str,
        /// What was given.
        value: f64,
    },
}

fn positive(what: &'static str, value: f64) -> Result<(), CostError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(CostError::NotPositive { what, value })
    }
}

/// Checks the rates and prices a user gives, so a bad one is refused before anything is
/// measured.
pub fn check_rates(
    fps: f64,
    cloud_price_per_1000: Option<f64>,
    kwh_price: Option<f64>,
) -> Result<(), CostError> {
    positive("--fps", fps)?;
    for (what, price) in [
        ("--cloud-price", cloud_price_per_1000),
        ("--kwh-price", kwh_price),
    ] {
        if let Some(price) = price {
            positive(what, price)?;
        }
    }
    Ok(())
}

/// Works out the cost of `inputs` on `board`.
pub fn compute(inputs: CostInputs, board: &Board) -> Result<CostReport, CostError> {
    check_rates(inputs.fps, inputs.cloud_price_per_1000, inputs.kwh_price)?;
    positive("the measured frame time", inputs.host_frame_ms)?;
    let (latency_ms, latency_basis) = match &inputs.estimate {
        Some(e) => (e.estimated_ms, "estimated"),
        None => (inputs.host_frame_ms, "measured"),
    };
    let core_duty = inputs.fps * latency_ms / 1000.0;
    let cores = board.cores.max(1);
    // More work than the cores have is capped at all cores busy: the frame rate falls instead.
    let cpu_share = (core_duty / cores as f64).min(1.0);
    let power = &board.power;
    let average_watts = power.idle_watts + (power.load_watts - power.idle_watts) * cpu_share;
    let wh_per_day = average_watts * 24.0;
    let kwh_per_month = wh_per_day * MONTH_DAYS / 1000.0;
    let inferences_per_day = inputs.fps * DAY_SECONDS;
    let samples_per_day = if inputs.sample_one_in == 0 {
        0.0
    } else {
        inferences_per_day / inputs.sample_one_in as f64
    };
    let cloud_per_day = inputs
        .cloud_price_per_1000
        .map(|price| inferences_per_day / 1000.0 * price);
    Ok(CostReport {
        board: board.name.clone(),
        cores,
        latency_ms,
        latency_basis,
        meets_latency_target: latency_ms <= board.latency_target_ms,
        max_fps_one_worker: 1000.0 / latency_ms,
        core_duty,
        cpu_share,
        macs_per_second: inputs.macs as f64 * inputs.fps,
        average_watts,
        wh_per_day,
        kwh_per_month,
        energy_price_per_month: inputs.kwh_price.map(|p| p * kwh_per_month),
        inferences_per_day,
        samples_per_day,
        sample_bytes_per_day: samples_per_day * inputs.sample_bytes as f64,
        cloud_price_per_day: cloud_per_day,
        cloud_price_per_month: cloud_per_day.map(|d| d * MONTH_DAYS),
        inputs,
    })
}

impl std::fmt::Display for CostReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.inputs;
        let row = |f: &mut std::fmt::Formatter<'_>, what: &str, value: String, from: String| {
            writeln!(f, "{what:<26} {value:>20}   {from}")
        };
        writeln!(f, "{} on {} at {} fps", i.model, self.board, i.fps)?;
        row(
            f,
            "compute per inference",
            format!("{:.2} M MACs", i.macs as f64 / 1e6),
            format!("{} weights and biases (tract's graph)", i.parameters),
        )?;
        row(
            f,
            "model file",
            format!("{} B", i.model_bytes),
            String::new(),
        )?;
        row(
            f,
            "peak memory",
            i.peak_rss_bytes
                .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                .unwrap_or_else(|| "unknown".into()),
            format!(
                "resident set of lookout with this model, measured on this machine, with {:.1} MiB \
                 of frames held",
                i.held_frame_bytes as f64 / 1048576.0
            ),
        )?;
        row(
            f,
            "frame time here",
            format!("{:.3} ms", i.host_frame_ms),
            "median pre + infer + post + emit, measured, one thread".into(),
        )?;
        match &i.estimate {
            Some(e) => row(
                f,
                "latency on the board",
                format!("{:.1} ms", self.latency_ms),
                format!(
                    "ESTIMATE: x {:.2} = {} {:.2} ms on the board / {:.2} ms here \
                     (source: {})",
                    e.factor, e.reference, e.board_reference_ms, e.host_reference_ms, e.source
                ),
            )?,
            None => row(
                f,
                "latency",
                format!("{:.3} ms", self.latency_ms),
                "measured: the board is this machine".into(),
            )?,
        }
        row(
            f,
            "meets the latency target",
            if self.meets_latency_target {
                "yes"
            } else {
                "NO"
            }
            .into(),
            "board latency_target_ms".into(),
        )?;
        row(
            f,
            "most fps, one worker",
            format!("{:.1}", self.max_fps_one_worker),
            "1000 / latency".into(),
        )?;
        row(
            f,
            "one core busy",
            format!("{:.1} %", self.core_duty * 100.0),
            "fps x latency".into(),
        )?;
        row(
            f,
            "CPU busy",
            format!("{:.1} %", self.cpu_share * 100.0),
            format!("of {} cores", self.cores),
        )?;
        row(
            f,
            "compute rate",
            format!("{:.1} M MACs/s", self.macs_per_second / 1e6),
            "MACs x fps".into(),
        )?;
        row(
            f,
            "average power",
            format!("{:.2} W", self.average_watts),
            "idle + (load - idle) x CPU busy, board [power]".into(),
        )?;
        row(
            f,
            "energy per day",
            format!("{:.1} Wh", self.wh_per_day),
            "average power x 24 h".into(),
        )?;
        row(
            f,
            "energy per month",
            format!("{:.2} kWh", self.kwh_per_month),
            match (self.energy_price_per_month, i.kwh_price) {
                (Some(cost), Some(price)) => format!("30 days; {cost:.2} at {price} per kWh"),
                _ => "30 days".into(),
            },
        )?;
        row(
            f,
            "inferences per day",
            format!("{:.0}", self.inferences_per_day),
            "fps x 86400".into(),
        )?;
        let sampling = if i.sample_one_in == 0 {
            "sampling off".to_owned()
        } else {
            format!(
                "{:.0} frames of {} B (1 in {})",
                self.samples_per_day, i.sample_bytes, i.sample_one_in
            )
        };
        row(
            f,
            "sample storage per day",
            format!("{:.1} MB", self.sample_bytes_per_day / 1e6),
            sampling,
        )?;
        match (self.cloud_price_per_month, i.cloud_price_per_1000) {
            (Some(month), Some(price)) => row(
                f,
                "as cloud calls, per month",
                format!("{month:.2}"),
                format!(
                    "{:.2} a day at {price} per 1000 calls",
                    self.cloud_price_per_day.unwrap_or_default()
                ),
            ),
            _ => row(
                f,
                "as cloud calls",
                "-".into(),
                "give --cloud-price (per 1000 calls) to compare".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn pi4() -> Board {
        Board::load(Path::new("boards/rpi-4b.toml")).expect("profile")
    }

    fn inputs() -> CostInputs {
        CostInputs {
            model: "m@1".into(),
            fps: 5.0,
            macs: 26_000_000,
            parameters: 80_000,
            model_bytes: 89_079,
            peak_rss_bytes: Some(30 << 20),
            held_frame_bytes: 4 * 640 * 480 * 3,
            host_frame_ms: 4.0,
            estimate: Some(LatencyEstimate {
                board: "rpi-4b".into(),
                reference: crate::lab::estimate::Reference::ResNet18,
                host_ms: 4.0,
                host_reference_ms: 20.0,
                board_reference_ms: 100.0,
                factor: 5.0,
                estimated_ms: 20.0,
                source: "test".into(),
            }),
            sample_one_in: 100,
            sample_bytes: 50_000,
            cloud_price_per_1000: Some(1.5),
            kwh_price: Some(0.3),
        }
    }

    #[test]
    fn every_figure_follows_from_its_inputs() {
        let board = pi4();
        let r = compute(inputs(), &board).expect("cost");
        assert_eq!(r.latency_ms, 20.0);
        assert_eq!(r.latency_basis, "estimated");
        assert!(r.meets_latency_target);
        assert_eq!(r.max_fps_one_worker, 50.0);
        assert!((r.core_duty - 0.1).abs() < 1e-12);
        assert!((r.cpu_share - 0.025).abs() < 1e-12);
        let watts =
            board.power.idle_watts + (board.power.load_watts - board.power.idle_watts) * 0.025;
        assert!((r.average_watts - watts).abs() < 1e-12);
        assert!((r.wh_per_day - watts * 24.0).abs() < 1e-9);
        assert!((r.kwh_per_month - watts * 24.0 * 30.0 / 1000.0).abs() < 1e-9);
        assert_eq!(r.inferences_per_day, 432_000.0);
        assert_eq!(r.samples_per_day, 4_320.0);
        assert_eq!(r.sample_bytes_per_day, 216_000_000.0);
        assert_eq!(r.cloud_price_per_day, Some(648.0));
        assert_eq!(r.cloud_price_per_month, Some(19_440.0));
        assert_eq!(r.macs_per_second, 130_000_000.0);
        let text = r.to_string();
        assert!(
            text.contains("ESTIMATE: x 5.00 = ResNet-18 100.00 ms on the board / 20.00 ms here"),
            "{text}"
        );
    }

    #[test]
    fn an_overloaded_board_saturates_and_the_host_is_measured() {
        let board = pi4();
        let mut i = inputs();
        i.fps = 1000.0;
        let r = compute(i, &board).expect("cost");
        assert_eq!(r.cpu_share, 1.0);
        assert_eq!(r.average_watts, board.power.load_watts);
        assert!(!r.meets_latency_target || r.latency_ms <= board.latency_target_ms);
        let mut i = inputs();
        i.estimate = None;
        i.sample_one_in = 0;
        i.cloud_price_per_1000 = None;
        let r = compute(i, &board).expect("cost");
        assert_eq!((r.latency_ms, r.latency_basis), (4.0, "measured"));
        assert_eq!(r.sample_bytes_per_day, 0.0);
        assert_eq!(r.cloud_price_per_month, None);
    }

    #[test]
    fn rates_and_prices_must_be_positive() {
        let board = pi4();
        for (edit, what) in [
            (
                Box::new(|i: &mut CostInputs| i.fps = 0.0) as Box<dyn Fn(&mut CostInputs)>,
                "--fps",
            ),
            (Box::new(|i: &mut CostInputs| i.fps = f64::NAN), "--fps"),
            (
                Box::new(|i: &mut CostInputs| i.cloud_price_per_1000 = Some(-1.0)),
                "--cloud-price",
            ),
            (
                Box::new(|i: &mut CostInputs| i.kwh_price = Some(0.0)),
                "--kwh-price",
            ),
        ] {
            let mut i = inputs();
            edit(&mut i);
            let err = compute(i, &board).expect_err(what);
            assert!(err.to_string().starts_with(what), "{err}");
        }
    }
}
