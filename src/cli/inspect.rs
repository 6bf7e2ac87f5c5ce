//! `lookout inspect`: what an ONNX file holds.

use super::print_out;
use anyhow::Result;
use lookout::model::{self, inspect};
use std::path::Path;

pub(crate) fn inspect_model(path: &Path) -> Result<()> {
    let report = inspect::inspect(path)?;
    let manifest = match model::manifest_beside(path) {
        Ok(Some(m)) => format!("\nmanifest:     {} beside it", m.id()),
        Err(e) => format!("\nmanifest:     INVALID: {e}"),
        Ok(None) => String::new(),
    };
    print_out(format_args!("{report}{manifest}"))
}
