//! `lookout inspect`: what an ONNX file holds.

use super::print_out;
use anyhow::Result;
use lookout::model::verify::Verifier;
use lookout::model::{self, inspect};
use std::path::Path;

pub(crate) fn inspect_model(path: &Path) -> Result<()> {
    let verifier = Verifier::this_binary(Vec::new())?;
    let report = inspect::inspect(path, |onnx| {
        verifier.probe(onnx).map(|_| ()).map_err(|e| e.to_string())
    })?;
    let manifest = match model::manifest_beside(path) {
        Ok(Some(m)) => format!("\nmanifest:     {} beside it", m.id()),
        Err(e) => format!("\nmanifest:     INVALID: {e}"),
        Ok(None) => String::new(),
    };
    print_out(format_args!("{report}{manifest}"))
}
