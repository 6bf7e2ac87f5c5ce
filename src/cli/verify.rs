//! `lookout verify-model` (hidden): the child [`lookout::model::verify`] starts to try a model
//! before the parent loads it. Its answer is one line on stdout; see that module for what its
//! ends mean.

use super::{load, ModelArgs};
use anyhow::{Context as _, Result};
use clap::Args;
use lookout::frames::source::Frame;
use lookout::model::{engine, verify};
use lookout::pipeline::{Pipeline, PipelineError};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An ONNX file alone, loaded and optimized at its declared input shape (as `inspect`).
    #[arg(long, conflicts_with = "model")]
    onnx: Option<PathBuf>,
    /// The model file as the parent names it in messages (a slot's `current/`).
    #[arg(long)]
    named: Option<String>,
    /// Address-space cap in MB (0: none).
    #[arg(long, default_value_t = 0)]
    memory_mb: u64,
}

pub(crate) fn verify_model(args: VerifyArgs) -> Result<()> {
    use std::io::Write as _;
    // Not println!: a parent that went away (Ctrl-C on `model install`) closed the pipe, and
    // the answer then has nobody to go to, which is no reason to panic.
    match try_model(&args) {
        Ok(verified) => {
            let _ = writeln!(std::io::stdout(), "{}", verify::answer(verified));
            Ok(())
        }
        Err(e) => {
            let _ = writeln!(std::io::stdout(), "{}", super::one_line(&e));
            std::process::exit(verify::REFUSED);
        }
    }
}

fn try_model(args: &VerifyArgs) -> Result<verify::Verified> {
    verify::limit_this_process(args.memory_mb);
    let started = Instant::now();
    if let Some(onnx) = &args.onnx {
        let bytes = std::fs::read(onnx).with_context(|| format!("{}", onnx.display()))?;
        let meta = lookout::onnx_meta::OnnxMeta::parse(&bytes)
            .with_context(|| format!("{}", onnx.display()))?;
        let whole = lookout::model::inspect::whole_model(&bytes, &meta, onnx)?;
        engine::probe(&whole, &onnx.display().to_string())?;
        return Ok(verify::Verified {
            load_ms: millis(started.elapsed()),
            run_ms: 0.0,
            finite: true,
        });
    }
    let (_, mut bundle) = load(&args.model)?;
    if let Some(named) = &args.named {
        bundle.origin = named.clone();
    }
    let mut pipeline = Pipeline::new(bundle.manifest, &bundle.onnx, &bundle.origin)?;
    let loaded = started.elapsed();
    let input = &pipeline.manifest().input;
    let frame = Frame {
        id: "verify-black".into(),
        captured_at: SystemTime::now(),
        image: image::RgbImage::new(input.width() as u32, input.height() as u32),
    };
    let ran = Instant::now();
    let finite = match pipeline.process(&frame, Duration::ZERO) {
        Ok(_) => true,
        Err(PipelineError::NotFinite { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    Ok(verify::Verified {
        load_ms: millis(loaded),
        run_ms: millis(ran.elapsed()),
        finite,
    })
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
