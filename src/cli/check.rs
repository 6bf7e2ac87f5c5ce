//! `lookout check`: a model against its manifest and a board's budget, as the build checks it.

use super::{load, print_out, verifier, ModelArgs};
use anyhow::Result;

pub(crate) fn check(args: ModelArgs) -> Result<()> {
    print_out(verdict(&args)?)
}

/// The deployment check's one-line verdict (`import` runs it too): the static check, and for a
/// model from files, one black frame through it.
pub(crate) fn verdict(args: &ModelArgs) -> Result<String> {
    let (_, bundle) = load(args)?;
    // A model from files is loaded and run once, in a child process: the static check alone
    // passed models tract cannot load. The built-in one was checked when it was built.
    let runs = match &args.model {
        Some(model) => {
            let v = verifier(&args.place)?.run_once(model)?;
            let nan = if v.finite {
                ""
            } else {
                " (its outputs on it hold NaN or infinity: a run would refuse them)"
            };
            format!(
                "; runs: loaded in {:.0} ms, a black frame through it in {:.1} ms{nan}",
                v.load_ms, v.run_ms
            )
        }
        None => String::new(),
    };
    let r = &bundle.report;
    Ok(format!(
        "ok: {} ({}, {} bytes, sha256 {}) fits board {} ({}): {:.2}% of its {}-byte model budget; \
         quantization: {}{runs}",
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
