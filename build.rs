//! Build-time deployment check and model embedding.
//!
//! `LOOKOUT_BOARD` (a name in `boards/` or a path to a profile, default `host`) and
//! `LOOKOUT_MODEL` (a name in `models/` or a path to a manifest, default `shapes-detector`)
//! choose what the binary is built for. The model is checked against its manifest and the
//! board's budget by the same code `lookout check` runs (the `lookout-contract` crate); a model that fails does not build.
//! A model that passes is embedded, with its manifest and the board profile, so the flashed
//! binary runs alone.

use lookout_contract::budget;
use std::path::{Path, PathBuf};

const DEFAULT_BOARD: &str = "host";
const DEFAULT_MODEL: &str = "shapes-detector";

fn main() {
    println!("cargo::rerun-if-env-changed=LOOKOUT_BOARD");
    println!("cargo::rerun-if-env-changed=LOOKOUT_MODEL");

    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let board_arg = std::env::var("LOOKOUT_BOARD").unwrap_or_else(|_| DEFAULT_BOARD.into());
    let model_arg = std::env::var("LOOKOUT_MODEL").unwrap_or_else(|_| DEFAULT_MODEL.into());
    let board_file = resolve(&root, &board_arg, "boards");
    let manifest_file = resolve(&root, &model_arg, "models");
    println!("cargo::rerun-if-changed={}", board_file.display());
    println!("cargo::rerun-if-changed={}", manifest_file.display());

    let (report, manifest, _) = match budget::check_files(&board_file, &manifest_file) {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("error: lookout deployment check failed: {e}");
            eprintln!(
                "(LOOKOUT_BOARD={board_arg}, LOOKOUT_MODEL={model_arg}; `lookout check --board {board_arg} \
                 --model {model_arg}` runs the same check)"
            );
            std::process::exit(1);
        }
    };
    if !manifest.model.external.is_empty() {
        eprintln!(
            "error: {} keeps weights in external data files ({}); a model built into the binary \
             must be one file: install it with `lookout model install` instead, or re-export it \
             without external data",
            manifest_file.display(),
            manifest
                .model
                .external
                .iter()
                .map(|f| f.file.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        std::process::exit(1);
    }
    let model_file = manifest.model_path(&manifest_file);
    println!("cargo::rerun-if-changed={}", model_file.display());
    println!(
        "cargo::warning=embedding {} ({} bytes, {:.1}% of the {} budget of board {})",
        report.model,
        report.model_bytes,
        report.budget_used_percent(),
        report.budget_bytes,
        report.board
    );

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    let generated = format!(
        "/// The embedded model's ONNX bytes.\n\
         pub const MODEL: &[u8] = include_bytes!({model:?});\n\
         /// The embedded model's manifest text.\n\
         pub const MANIFEST: &str = include_str!({manifest:?});\n\
         /// Where the embedded manifest came from, for messages.\n\
         pub const MANIFEST_ORIGIN: &str = {manifest_rel:?};\n\
         /// The board profile the binary was built for.\n\
         pub const BOARD: &str = include_str!({board:?});\n\
         /// Where the embedded board profile came from, for messages.\n\
         pub const BOARD_ORIGIN: &str = {board_rel:?};\n",
        model = absolute(&model_file),
        manifest = absolute(&manifest_file),
        manifest_rel = relative(&root, &manifest_file),
        board = absolute(&board_file),
        board_rel = relative(&root, &board_file),
    );
    let target = out_dir.join("embedded.rs");
    if let Err(e) = std::fs::write(&target, generated) {
        eprintln!("error: cannot write {}: {e}", target.display());
        std::process::exit(1);
    }
}

/// Resolves an argument as `lookout check` does, relative to the crate root.
fn resolve(root: &Path, arg: &str, dir: &str) -> PathBuf {
    root.join(budget::resolve(arg, &root.join(dir)))
}

fn absolute(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}
