//! Latency on a board that is not here, estimated from a measurement on this machine.
//!
//! The scaling model: a board is as many times slower than this machine on any CNN as it is on
//! a reference CNN. The reference is MobileNetV2 1.0 at 224×224, the network whose per-board
//! times are published (the board profile's `[perf]` table, with its source). This machine's
//! time on the same layers is measured here, with tract, on
//! `models/reference/mobilenetv2-224.onnx` (built into the binary, 20 KB: its weights are
//! computed in the graph). So
//!
//! ```text
//! board latency ≈ latency measured here × board reference time / reference time measured here
//! ```
//!
//! What this assumes, and why every figure it gives is labelled an estimate:
//! - tract on the board is as fast as the framework of the published figure (ncnn, which is
//!   tuned for ARM; tract is likely slower, so the estimate is optimistic);
//! - a small model keeps the reference's balance of compute and memory traffic: layers too
//!   small to fill the vector units cost relatively more on an in-order core such as the A53;
//! - the whole frame (pre-processing and decoding too) scales like the model.

use crate::board::Board;
use crate::engine::{Engine, EngineError};
use crate::manifest::{InputDtype, InputSpec, Layout};
use crate::pipeline::millis;
use serde::Serialize;
use std::time::Instant;

/// The reference network's ONNX file.
pub const REFERENCE_ONNX: &[u8] = include_bytes!("../models/reference/mobilenetv2-224.onnx");

/// Multiply-accumulates of one inference of the reference (counted by `lookout inspect` and
/// `tools/count_macs.py`).
pub const REFERENCE_MACS: u64 = 300_774_272;

/// Times the reference network on this machine: median of `runs` inferences after three
/// untimed ones, in milliseconds, on one thread.
pub fn time_reference(runs: usize) -> Result<f64, EngineError> {
    let spec = InputSpec {
        name: "input".into(),
        shape: [1, 3, 224, 224],
        dtype: InputDtype::F32,
        layout: Layout::Nchw,
    };
    let mut engine = Engine::load(
        REFERENCE_ONNX,
        &spec,
        "models/reference/mobilenetv2-224.onnx",
    )?;
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 3 {
        let started = Instant::now();
        engine.run()?;
        if i >= 3 {
            times.push(millis(started.elapsed()));
        }
    }
    Ok(crate::bench::Percentiles::of(&times).p50)
}

/// A latency on a board, estimated from one measured here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyEstimate {
    /// The board.
    pub board: String,
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

/// Scales `host_ms` to `board`; `None` when the profile publishes no reference figure (the host
/// profile, or a board not yet calibrated) or the host reference time is not positive.
pub fn scale(host_ms: f64, host_reference_ms: f64, board: &Board) -> Option<LatencyEstimate> {
    let perf = board.perf.as_ref()?;
    if !(host_reference_ms.is_finite() && host_reference_ms > 0.0) {
        return None;
    }
    let factor = perf.reference_ms / host_reference_ms;
    Some(LatencyEstimate {
        board: board.name.clone(),
        host_ms,
        host_reference_ms,
        board_reference_ms: perf.reference_ms,
        factor,
        estimated_ms: host_ms * factor,
        source: perf.source.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The Pi 4 profile with its `[perf]` table replaced.
    fn with_perf(perf: &str) -> Result<Board, crate::board::BoardError> {
        let text = std::fs::read_to_string("boards/rpi-4b.toml").expect("profile");
        let start = text.find("[perf]").expect("perf table");
        let end = start + text[start..].find("\n[camera]").expect("camera table");
        let text = format!("{}{perf}{}", &text[..start], &text[end..]);
        Board::parse(&text, Path::new("rpi-4b.toml"))
    }

    fn board(perf: &str) -> Board {
        with_perf(perf).expect("board")
    }

    #[test]
    fn a_host_time_is_scaled_by_the_reference_ratio() {
        let b = board("[perf]\nreference_ms = 90.0\nsource = \"test\"\n");
        let e = scale(2.0, 15.0, &b).expect("estimate");
        assert_eq!(e.factor, 6.0);
        assert_eq!(e.estimated_ms, 12.0);
        assert_eq!(e.board, "rpi-4b");
        assert!(scale(2.0, 0.0, &b).is_none());
        assert!(scale(2.0, f64::NAN, &b).is_none());
    }

    #[test]
    fn a_board_without_figures_has_no_estimate_and_bad_figures_are_refused() {
        let b = board("");
        assert!(scale(2.0, 15.0, &b).is_none());
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

    #[test]
    fn the_reference_network_runs_and_is_what_its_constants_say() {
        let probe = crate::engine::probe(REFERENCE_ONNX, "reference").expect("probe");
        assert_eq!(probe.macs, REFERENCE_MACS);
        let ms = time_reference(2).expect("timed");
        assert!(ms > 0.0);
    }
}
