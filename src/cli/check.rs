//! `lookout check`: a model against its manifest and a board's budget, as the build checks it.

use super::{load, print_out, ModelArgs};
use anyhow::Result;

pub(crate) fn check(args: ModelArgs) -> Result<()> {
    let (_, bundle) = load(&args)?;
    let r = &bundle.report;
    print_out(format_args!(
        "ok: {} ({}, {} bytes, sha256 {}) fits board {} ({}): {:.2}% of its {}-byte model budget; \
         quantization: {}",
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
