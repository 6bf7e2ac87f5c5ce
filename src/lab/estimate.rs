//! Latency on a board that is not here, estimated from a measurement on this machine.
//!
//! The scaling model: a board is as many times slower than this machine on a CNN as it is on a
//! reference CNN of the same kind. Two references have per-board times published (the board
//! profile's `[perf]` table, with their sources), and this machine's time on the same layers is
//! measured here, with tract, on files built into the binary (their weights are computed in
//! the graph, so they are a few KB each):
//!
//! - MobileNetV2 1.0 at 224×224 (`models/reference/mobilenetv2-224.onnx`), mostly 1x1 and
//!   depthwise convolutions, for models with grouped (depthwise) convolutions;
//! - ResNet-18 at 224×224 (`models/reference/resnet18-224.onnx`), dense convolutions only, for
//!   models without.
//!
//! So
//!
//! ```text
//! board latency ≈ latency measured here × board reference time / reference time measured here
//! ```
//!
//! Why two: how a CPU's speed on depthwise convolutions compares with its speed on dense ones
//! depends on the CPU and the framework, so the board/here ratio depends on the kind of model.
//! The boards run ResNet-18 2.0 to 2.4 times as long as MobileNetV2 (ncnn's figures); this
//! machine, with tract, about 2.6 times (docs/choosing-a-model.md, "Latency on a board"), so MobileNetV2's ratio
//! put a dense model 1.1 to 1.3 times slower on a board than ResNet-18's does. A model is
//! scaled by the reference of its kind, the nearer calibration point. A model with any grouped
//! convolution counts as MobileNetV2's kind, even if most of its arithmetic is dense: a
//! depthwise layer takes far more time than its share of multiply-accumulates, and no blend of
//! the two ratios could be checked against a published figure.
//!
//! What this assumes, and why every figure it gives is labelled an estimate:
//! - tract on the board is as fast as the framework of the published figures (ncnn, which is
//!   tuned for ARM; tract is likely slower, so the estimate is optimistic). More so for dense
//!   models: ncnn computes ResNet-18's stride-1 3x3 convolutions by Winograd's method, with fewer
//!   multiplications than tract's im2col and matrix product;
//! - a model keeps its reference's balance of compute and memory traffic: layers too small to
//!   fill the vector units cost relatively more on an in-order core such as the A53;
//! - the whole frame (pre-processing and decoding too) scales like the model.

use crate::board::Board;
use crate::manifest::{InputDtype, InputSpec, Layout};
use crate::model::engine::{Engine, EngineError, Probe};
use crate::pipeline::millis;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// A reference network: one whose time on each board is published and which is timed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reference {
    /// MobileNetV2 1.0 at 224×224: for models with grouped (depthwise) convolutions.
    #[serde(rename = "MobileNetV2")]
    MobileNetV2,
    /// ResNet-18 at 224×224: for models of dense convolutions only.
    #[serde(rename = "ResNet-18")]
    ResNet18,
}

impl Reference {
    /// Every reference.
    pub const ALL: [Reference; 2] = [Reference::MobileNetV2, Reference::ResNet18];

    /// The network's name, as in the board profiles' comments and docs/choosing-a-model.md.
    pub fn name(self) -> &'static str {
        match self {
            Reference::MobileNetV2 => "MobileNetV2",
            Reference::ResNet18 => "ResNet-18",
        }
    }

    /// The network's ONNX file, built into the binary.
    pub fn onnx(self) -> &'static [u8] {
        match self {
            Reference::MobileNetV2 => {
                include_bytes!("../../models/reference/mobilenetv2-224.onnx")
            }
            Reference::ResNet18 => include_bytes!("../../models/reference/resnet18-224.onnx"),
        }
    }

    /// Where the file is in the repository, for messages.
    pub fn origin(self) -> &'static str {
        match self {
            Reference::MobileNetV2 => "models/reference/mobilenetv2-224.onnx",
            Reference::ResNet18 => "models/reference/resnet18-224.onnx",
        }
    }

    /// Multiply-accumulates of one inference (counted by `lookout inspect` and
    /// `tools/count_macs.py`).
    pub fn macs(self) -> u64 {
        match self {
            Reference::MobileNetV2 => 300_774_272,
            Reference::ResNet18 => 1_814_073_344,
        }
    }

    /// The reference of a model's kind: MobileNetV2 when any of its multiply-accumulates are
    /// in grouped convolutions, ResNet-18 otherwise.
    pub fn for_model(probe: &Probe) -> Self {
        if probe.grouped_macs > 0 {
            Reference::MobileNetV2
        } else {
            Reference::ResNet18
        }
    }

    /// The board's published one-thread time for this network, in ms, and its source; `None`
    /// when the profile has no figure for it.
    pub fn on_board(self, board: &Board) -> Option<(f64, &str)> {
        let perf = board.perf.as_ref()?;
        match self {
            Reference::MobileNetV2 => Some((perf.reference_ms, perf.source.as_str())),
            Reference::ResNet18 => Some((
                perf.dense_reference_ms?,
                perf.dense_source.as_deref().unwrap_or(""),
            )),
        }
    }

    /// The reference a model is scaled by on `board`: the one of its kind, or MobileNetV2 when
    /// the profile has no ResNet-18 figure; `None` when it has no figures at all (the host
    /// profile, or a board not yet calibrated).
    pub fn choose(probe: &Probe, board: &Board) -> Option<Self> {
        let preferred = Self::for_model(probe);
        [preferred, Reference::MobileNetV2]
            .into_iter()
            .find(|r| r.on_board(board).is_some())
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Times a reference network on this machine: median of `runs` inferences after one untimed
/// one (which pays the first run's allocations), in milliseconds, on one thread.
pub fn time_reference(reference: Reference, runs: usize) -> Result<f64, EngineError> {
    let spec = InputSpec {
        name: "input".into(),
        shape: [1, 3, 224, 224],
        dtype: InputDtype::F32,
        layout: Layout::Nchw,
    };
    let mut engine = Engine::load(reference.onnx(), &spec, reference.origin())?;
    let mut times = Vec::with_capacity(runs);
    for i in 0..=runs {
        let started = Instant::now();
        engine.run()?;
        if i >= 1 {
            times.push(millis(started.elapsed()));
        }
    }
    Ok(crate::lab::bench::Percentiles::of(&times).p50)
}

/// A latency on a board, estimated from one measured here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyEstimate {
    /// The board.
    pub board: String,
    /// The reference network the host time was scaled by.
    pub reference: Reference,
    /// The latency measured on this machine, in ms.
    pub host_ms: f64,
    /// The reference network measured on this machine, in ms.
    pub host_reference_ms: f64,
    /// The reference network on the board, as published, in ms.
    pub board_reference_ms: f64,
    /// How many times slower the board is: board reference over host reference.
    pub factor: f64,
    /// The estimate, in ms.
    pub estimated_ms: f64,
    /// Where the board's figure comes from.
    pub source: String,
}

/// Scales `host_ms` to `board` by `reference`, whose time here is `host_reference_ms`; `None`
/// when the profile publishes no figure for that reference or the host reference time is not
/// positive.
pub fn scale(
    host_ms: f64,
    reference: Reference,
    host_reference_ms: f64,
    board: &Board,
) -> Option<LatencyEstimate> {
    let (board_reference_ms, source) = reference.on_board(board)?;
    if !(host_reference_ms.is_finite() && host_reference_ms > 0.0) {
        return None;
    }
    let factor = board_reference_ms / host_reference_ms;
    Some(LatencyEstimate {
        board: board.name.clone(),
        reference,
        host_ms,
        host_reference_ms,
        board_reference_ms,
        factor,
        estimated_ms: host_ms * factor,
        source: source.to_owned(),
    })
}

/// Estimates models' latencies on one board, timing each reference network here the first time
/// a model needs it and never again: `select` scales several candidates, often of one kind, and
/// a reference costs seconds to time.
#[derive(Debug)]
pub struct Estimator<'a> {
    board: &'a Board,
    runs: usize,
    time: ReferenceTimer,
    host_reference_ms: BTreeMap<Reference, f64>,
}

/// How an [`Estimator`] times a reference network here: [`time_reference`], or in the unit
/// tests a stand-in, so that what they check (which reference, timed once) does not wait for a
/// ResNet-18 to run, which takes a minute under an emulator (`lookout select`'s tests time the
/// real one, natively).
type ReferenceTimer = fn(Reference, usize) -> Result<f64, EngineError>;

impl<'a> Estimator<'a> {
    /// An estimator for `board` that times a reference over `runs` inferences.
    pub fn new(board: &'a Board, runs: usize) -> Self {
        Self::timed_by(board, runs, time_reference)
    }

    fn timed_by(board: &'a Board, runs: usize, time: ReferenceTimer) -> Self {
        Estimator {
            board,
            runs,
            time,
            host_reference_ms: BTreeMap::new(),
        }
    }

    /// Scales `host_ms`, measured here for the model `probe` describes, to the board by the
    /// reference [`Reference::choose`] picks; `None` when the board has no published figures.
    pub fn estimate(
        &mut self,
        host_ms: f64,
        probe: &Probe,
    ) -> Result<Option<LatencyEstimate>, EngineError> {
        let Some(reference) = Reference::choose(probe, self.board) else {
            return Ok(None);
        };
        let host_reference_ms = match self.host_reference_ms.get(&reference) {
            Some(ms) => *ms,
            None => {
                let ms = (self.time)(reference, self.runs)?;
                self.host_reference_ms.insert(reference, ms);
                ms
            }
        };
        Ok(scale(host_ms, reference, host_reference_ms, self.board))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::engine::probe;
    use std::path::Path;

    /// The Pi 4 profile with its `[perf]` table replaced.
    fn with_perf(perf: &str) -> Result<Board, lookout_contract::ConfigError> {
        let text = std::fs::read_to_string("boards/rpi-4b.toml").expect("profile");
        let start = text.find("[perf]").expect("perf table");
        let end = start + text[start..].find("\n[camera]").expect("camera table");
        let text = format!("{}{perf}{}", &text[..start], &text[end..]);
        Board::parse(&text, Path::new("rpi-4b.toml"))
    }

    fn board(perf: &str) -> Board {
        with_perf(perf).expect("board")
    }

    fn load(name: &str) -> Board {
        Board::load(&Path::new("boards").join(format!("{name}.toml"))).expect("profile")
    }

    const TWO_REFERENCES: &str = "[perf]\nreference_ms = 90.0\nsource = \"m\"\n\
                                  dense_reference_ms = 300.0\ndense_source = \"r\"\n";

    #[test]
    fn a_host_time_is_scaled_by_the_reference_ratio() {
        let b = board(TWO_REFERENCES);
        let e = scale(2.0, Reference::MobileNetV2, 15.0, &b).expect("estimate");
        assert_eq!(e.factor, 6.0);
        assert_eq!(e.estimated_ms, 12.0);
        assert_eq!(e.board, "rpi-4b");
        assert_eq!(
            (e.reference, e.source.as_str()),
            (Reference::MobileNetV2, "m")
        );
        let e = scale(2.0, Reference::ResNet18, 60.0, &b).expect("estimate");
        assert_eq!(e.factor, 5.0);
        assert_eq!(e.estimated_ms, 10.0);
        assert_eq!((e.reference, e.source.as_str()), (Reference::ResNet18, "r"));
        assert!(scale(2.0, Reference::ResNet18, 0.0, &b).is_none());
        assert!(scale(2.0, Reference::MobileNetV2, f64::NAN, &b).is_none());
    }

    #[test]
    fn the_reference_is_named_in_json() {
        let e = scale(2.0, Reference::ResNet18, 60.0, &board(TWO_REFERENCES)).expect("estimate");
        let json = serde_json::to_value(&e).expect("json");
        assert_eq!(json["reference"], "ResNet-18");
        assert_eq!(Reference::MobileNetV2.to_string(), "MobileNetV2");
    }

    #[test]
    fn a_board_without_figures_has_no_estimate_and_bad_figures_are_refused() {
        let b = board("");
        for reference in Reference::ALL {
            assert!(scale(2.0, reference, 15.0, &b).is_none());
        }
        for (perf, field) in [
            (
                "[perf]\nreference_ms = 0.0\nsource = \"x\"\n",
                "perf.reference_ms",
            ),
            (
                "[perf]\nreference_ms = 9.0\nreference_ms_all_cores = -1.0\nsource = \"x\"\n",
                "perf.reference_ms_all_cores",
            ),
            (
                "[perf]\nreference_ms = 9.0\nsource = \" \"\n",
                "perf.source",
            ),
        ] {
            let err = with_perf(perf).expect_err(perf);
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    /// Each reference file is what its constants say and a model of its own kind, and the
    /// estimate of it, scaled by its own ratio, is the published figure: the choice of reference
    /// does not bend the calibration points. (One probe per network: under qemu each costs
    /// seconds.)
    #[test]
    fn each_reference_is_of_its_own_kind_and_gives_back_its_published_figure() {
        for reference in Reference::ALL {
            let p = probe(reference.onnx(), reference.origin()).expect("probe");
            // The ResNet-18 figure is `python3 tools/count_macs.py`'s count of the file.
            assert_eq!(p.macs, reference.macs(), "{reference}");
            assert_eq!(Reference::for_model(&p), reference);
            assert_eq!(p.grouped_macs == 0, reference == Reference::ResNet18);
            for name in ["rpi-zero-2w", "rpi-3b", "rpi-3b-armhf", "rpi-4b", "rpi-5"] {
                let b = load(name);
                let chosen = Reference::choose(&p, &b).expect("chosen");
                assert_eq!(chosen, reference, "{name}");
                let (published, _) = reference.on_board(&b).expect("figure");
                let here = 37.3;
                let e = scale(here, chosen, here, &b).expect("estimate");
                assert!(
                    (e.estimated_ms - published).abs() < 1e-9,
                    "{name} {reference}: {} against {published}",
                    e.estimated_ms
                );
            }
        }
    }

    #[test]
    fn the_bundled_detector_is_scaled_by_resnet18_and_falls_back_without_its_figure() {
        let onnx = std::fs::read("models/shapes-detector.onnx").expect("detector");
        let p = probe(&onnx, "shapes-detector").expect("probe");
        assert_eq!(p.grouped_macs, 0, "plain 3x3 convolutions");
        let pi4 = load("rpi-4b");
        assert_eq!(Reference::choose(&p, &pi4), Some(Reference::ResNet18));
        // A profile with only MobileNetV2 figures still gives an estimate, by MobileNetV2.
        let only_mobilenet = board("[perf]\nreference_ms = 90.0\nsource = \"m\"\n");
        assert_eq!(
            Reference::choose(&p, &only_mobilenet),
            Some(Reference::MobileNetV2)
        );
        assert_eq!(Reference::choose(&p, &load("host")), None);
    }

    thread_local! {
        /// The references [`counting_timer`] was asked to time, on this test's thread.
        static TIMED: std::cell::RefCell<Vec<(Reference, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// A stand-in for [`time_reference`]: 10 ms the first time, 20 ms the second, and so on, so
    /// that a reference timed twice would change the factor.
    fn counting_timer(reference: Reference, runs: usize) -> Result<f64, EngineError> {
        TIMED.with(|t| {
            t.borrow_mut().push((reference, runs));
            Ok(10.0 * t.borrow().len() as f64)
        })
    }

    #[test]
    fn the_estimator_times_only_the_reference_a_model_needs_and_only_once() {
        let onnx = std::fs::read("models/shapes-detector.onnx").expect("detector");
        let detector = probe(&onnx, "shapes-detector").expect("probe");
        let pi4 = load("rpi-4b");
        let mut estimator = Estimator::timed_by(&pi4, 3, counting_timer);
        let first = estimator.estimate(4.0, &detector).expect("timed");
        let first = first.expect("estimate");
        // A detector without grouped convolutions is scaled by the dense reference.
        assert_eq!(first.reference, Reference::ResNet18);
        assert_eq!(first.board_reference_ms, 191.10);
        assert_eq!(first.host_reference_ms, 10.0);
        assert_eq!(first.factor, 19.11);
        assert!((first.estimated_ms - 76.44).abs() < 1e-9, "{first:?}");
        // The second model of the kind reuses the time: the same factor exactly.
        let second = estimator.estimate(8.0, &detector).expect("timed");
        assert_eq!(second.expect("estimate").factor, first.factor);
        TIMED.with(|t| assert_eq!(*t.borrow(), [(Reference::ResNet18, 3)]));

        // The host profile publishes no figures: nothing to scale by, nothing timed.
        let host = load("host");
        let mut estimator = Estimator::timed_by(&host, 1, counting_timer);
        assert_eq!(estimator.estimate(4.0, &detector).expect("no timing"), None);
        TIMED.with(|t| assert_eq!(t.borrow().len(), 1));
    }

    #[test]
    fn the_mobilenet_reference_runs() {
        let ms = time_reference(Reference::MobileNetV2, 1).expect("timed");
        assert!(ms > 0.0);
    }
}
