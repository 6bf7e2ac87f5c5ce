//! The deployment check: does this model, with this manifest, belong on this board?
//!
//! One function answers it for both `build.rs` (which refuses to build a binary with an
//! over-budget or mismatched model embedded) and `lookout check` (which answers the same
//! question for a file on disk), so the two can never disagree.
//!
//! The check is cheap and runs without tract: integrity (sha256 and size against the
//! manifest), the board's model-size budget, a parseable ONNX protobuf, the manifest's input
//! declared by the graph with a compatible shape and type, no operators outside the standard
//! ONNX domain, and external weight files only where the manifest lists them, inside the
//! model's folder.

use crate::board::Board;
use crate::error::ConfigError;
use crate::manifest::{InputDtype, Manifest};
use crate::onnx_meta::{Dim, OnnxMeta, OnnxMetaError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Why a model does not pass the deployment check.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The manifest or board profile is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The manifest's labels are not the ones the model file carries in its metadata (a
    /// guessed order is the usual cause: every result would be named wrongly).
    #[error(
        "{manifest} field `labels` is [{labels}] but {path} says in its metadata `{key}`: [{carried}]"
    )]
    Labels {
        /// The manifest path.
        manifest: PathBuf,
        /// The ONNX path.
        path: PathBuf,
        /// The metadata key (`names`, `character`, …).
        key: &'static str,
        /// The manifest's labels, comma-separated (the first that differ, and around them).
        labels: String,
        /// The file's labels, the same way.
        carried: String,
    },
    /// The ONNX file cannot be read.
    #[error("{path}: cannot read model: {source}")]
    ReadModel {
        /// The ONNX path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not the one the manifest describes.
    #[error("{path}: sha256 is {actual} but {manifest} field `model.sha256` says {expected}")]
    Sha256 {
        /// The ONNX path.
        path: PathBuf,
        /// The manifest path.
        manifest: PathBuf,
        /// What the manifest says.
        expected: String,
        /// What the file hashes to.
        actual: String,
    },
    /// The file size disagrees with the manifest.
    #[error("{path}: size is {actual} bytes but {manifest} field `model.bytes` says {expected}")]
    Size {
        /// The ONNX path.
        path: PathBuf,
        /// The manifest path.
        manifest: PathBuf,
        /// What the manifest says.
        expected: u64,
        /// The real size.
        actual: u64,
    },
    /// The model is larger than the board allows.
    #[error(
        "model {model} ({path}) is {bytes} bytes, over the model budget of {budget} bytes \
         for board {board} ({board_file}) by {over} bytes; float weights take a quarter of the \
         space as int8 (`lookout import MODEL.onnx --int8-weights`, then install the -int8 file)",
        over = bytes - budget
    )]
    OverBudget {
        /// `name@version`.
        model: String,
        /// The ONNX path.
        path: PathBuf,
        /// Model size.
        bytes: u64,
        /// The board's `model_budget_bytes`.
        budget: u64,
        /// Board name.
        board: String,
        /// Board profile path.
        board_file: PathBuf,
    },
    /// Not an ONNX protobuf.
    #[error("{path}: {source}")]
    NotOnnx {
        /// The ONNX path.
        path: PathBuf,
        /// What the decoder said.
        source: OnnxMetaError,
    },
    /// The graph disagrees with the manifest's `[input]`.
    #[error("{path}: {message} (manifest {manifest}, field `{field}`)")]
    Input {
        /// The ONNX path.
        path: PathBuf,
        /// The manifest path.
        manifest: PathBuf,
        /// The manifest field at odds with the graph.
        field: &'static str,
        /// What differs.
        message: String,
    },
    /// The graph is not stored in the form the manifest declares.
    #[error(
        "{path}: the graph is {actual} but {manifest} field `model.quantization` says {declared}"
    )]
    Quantization {
        /// The ONNX path.
        path: PathBuf,
        /// The manifest path.
        manifest: PathBuf,
        /// What the manifest says.
        declared: &'static str,
        /// What the operators and initializers show.
        actual: &'static str,
    },
    /// Operators tract cannot run.
    #[error("{path}: operators outside the standard ONNX domain, which tract does not run: {ops} (onnxruntime's quantizer writes these for QOperator files; `lookout import --int8-weights` on the fp32 original gives an int8 form tract runs)")]
    ForeignOps {
        /// The ONNX path.
        path: PathBuf,
        /// The offending operators.
        ops: String,
    },
    /// Weights stored beside the file that the manifest does not account for.
    #[error("{path}: {message} (manifest {manifest}, field `model.external`)")]
    ExternalData {
        /// The ONNX path.
        path: PathBuf,
        /// The manifest path.
        manifest: PathBuf,
        /// Which files, and what is wrong.
        message: String,
    },
    /// An external data file cannot be used.
    #[error(transparent)]
    External(#[from] crate::external::ExternalError),
}

/// What a passing check found.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// `name@version` of the model.
    pub model: String,
    /// ONNX path.
    pub model_path: PathBuf,
    /// Model size in bytes, external data files included.
    pub model_bytes: u64,
    /// Board name.
    pub board: String,
    /// Board profile path.
    pub board_file: PathBuf,
    /// The board's model budget in bytes.
    pub budget_bytes: u64,
    /// sha256 of the model file.
    pub sha256: String,
    /// Declared model summary.
    pub meta: OnnxMeta,
}

impl CheckReport {
    /// Share of the budget used, in percent.
    pub fn budget_used_percent(&self) -> f64 {
        100.0 * self.model_bytes as f64 / self.budget_bytes as f64
    }
}

/// Resolves a board or model argument: a bare name (`rpi-4b`) is `<dir>/<name>.toml`; anything
/// with a directory part or a `.toml` ending is taken as a path.
pub fn resolve(arg: &str, dir: &Path) -> PathBuf {
    let path = Path::new(arg);
    if arg.ends_with(".toml") || path.components().count() > 1 {
        path.to_owned()
    } else {
        dir.join(format!("{arg}.toml"))
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads board and manifest from their files, reads the model the manifest names, and checks it.
/// Returns the report, the manifest and the model bytes, so a caller can embed or load them.
pub fn check_files(
    board_file: &Path,
    manifest_path: &Path,
) -> Result<(CheckReport, Manifest, Vec<u8>), CheckError> {
    check_manifest_file(&Board::load(board_file)?, board_file, manifest_path)
}

/// Loads the manifest at `manifest_path`, reads the model it names beside it, and checks both
/// against `board` (loaded from `board_file`): what the build, `lookout check`, `run --model`
/// and a model switch all do with a manifest on disk.
pub fn check_manifest_file(
    board: &Board,
    board_file: &Path,
    manifest_path: &Path,
) -> Result<(CheckReport, Manifest, Vec<u8>), CheckError> {
    let manifest = Manifest::load(manifest_path)?;
    let model_path = manifest.model_path(manifest_path);
    let onnx = std::fs::read(&model_path).map_err(|source| CheckError::ReadModel {
        path: model_path.clone(),
        source,
    })?;
    let report = check_model(board, board_file, &manifest, manifest_path, &onnx)?;
    let onnx = if manifest.model.external.is_empty() {
        onnx
    } else {
        crate::external::inline(&onnx, &model_path, manifest_path, &manifest.model.external)?
    };
    Ok((report, manifest, onnx))
}

/// `labels` around where they first differ from `other` (a COCO list is 80 long), quoted.
fn excerpt(labels: &[String], other: &[String]) -> String {
    let first = labels
        .iter()
        .zip(other)
        .position(|(a, b)| a != b)
        .unwrap_or(labels.len().min(other.len()));
    let start = first.saturating_sub(2);
    let end = (first + 3).min(labels.len());
    let mut parts: Vec<String> = labels[start..end]
        .iter()
        .map(|l| format!("{l:?}"))
        .collect();
    if start > 0 {
        parts.insert(0, format!("…{start} more"));
    }
    if end < labels.len() {
        parts.push(format!(
            "…{} more ({} in all)",
            labels.len() - end,
            labels.len()
        ));
    }
    parts.join(", ")
}

/// Checks model bytes against their manifest and a board. Paths are used in messages only.
pub fn check_model(
    board: &Board,
    board_file: &Path,
    manifest: &Manifest,
    manifest_path: &Path,
    onnx: &[u8],
) -> Result<CheckReport, CheckError> {
    let model_path = manifest.model_path(manifest_path);
    let sha256 = sha256_hex(onnx);
    if sha256 != manifest.model.sha256 {
        return Err(CheckError::Sha256 {
            path: model_path,
            manifest: manifest_path.to_owned(),
            expected: manifest.model.sha256.clone(),
            actual: sha256,
        });
    }
    let bytes = onnx.len() as u64;
    if bytes != manifest.model.bytes {
        return Err(CheckError::Size {
            path: model_path,
            manifest: manifest_path.to_owned(),
            expected: manifest.model.bytes,
            actual: bytes,
        });
    }
    let total = manifest.model.total_bytes();
    if total > board.model_budget_bytes {
        return Err(CheckError::OverBudget {
            model: manifest.id(),
            path: model_path,
            bytes: total,
            budget: board.model_budget_bytes,
            board: board.name.clone(),
            board_file: board_file.to_owned(),
        });
    }
    let meta = OnnxMeta::parse(onnx).map_err(|source| CheckError::NotOnnx {
        path: model_path.clone(),
        source,
    })?;
    check_input(&meta, manifest, manifest_path, &model_path)?;
    if let Some((carried, key)) = meta.metadata_labels() {
        if carried != manifest.labels {
            return Err(CheckError::Labels {
                manifest: manifest_path.to_owned(),
                path: model_path,
                key,
                labels: excerpt(&manifest.labels, &carried),
                carried: excerpt(&carried, &manifest.labels),
            });
        }
    }
    let foreign = meta.foreign_ops();
    if !foreign.is_empty() {
        return Err(CheckError::ForeignOps {
            path: model_path,
            ops: foreign.join(", "),
        });
    }
    let listed: Vec<&str> = manifest
        .model
        .external
        .iter()
        .map(|f| f.file.as_str())
        .collect();
    let external_error = |message: String| CheckError::ExternalData {
        path: model_path.clone(),
        manifest: manifest_path.to_owned(),
        message,
    };
    if let Some(outside) = meta
        .external_files
        .iter()
        .find(|l| !crate::external::plain_location(l))
    {
        return Err(external_error(format!(
            "names external data {outside:?}, which is not a file inside the model's folder"
        )));
    }
    let unlisted: Vec<&str> = meta
        .external_files
        .iter()
        .map(String::as_str)
        .filter(|l| !listed.contains(l))
        .collect();
    if !unlisted.is_empty() {
        return Err(external_error(format!(
            "weights are stored in external data files the manifest does not list: {} (`lookout import` lists them with their sha256)",
            unlisted.join(", ")
        )));
    }
    if let Some(unused) = listed
        .iter()
        .find(|l| !meta.external_files.iter().any(|f| f == *l))
    {
        return Err(external_error(format!(
            "lists {unused:?}, which the model does not read"
        )));
    }
    let form = meta.quant_form();
    if let Some(declared) = manifest.model.quantization.filter(|d| *d != form) {
        return Err(CheckError::Quantization {
            path: model_path,
            manifest: manifest_path.to_owned(),
            declared: declared.key(),
            actual: form.key(),
        });
    }
    Ok(CheckReport {
        model: manifest.id(),
        model_path,
        model_bytes: total,
        board: board.name.clone(),
        board_file: board_file.to_owned(),
        budget_bytes: board.model_budget_bytes,
        sha256,
        meta,
    })
}

fn check_input(
    meta: &OnnxMeta,
    manifest: &Manifest,
    manifest_path: &Path,
    model_path: &Path,
) -> Result<(), CheckError> {
    let fail = |field: &'static str, message: String| CheckError::Input {
        path: model_path.to_owned(),
        manifest: manifest_path.to_owned(),
        field,
        message,
    };
    let spec = &manifest.input;
    let Some(decl) = meta.inputs.iter().find(|i| i.name == spec.name) else {
        let names: Vec<&str> = meta.inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(fail(
            "input.name",
            format!(
                "the graph has no input {:?} (inputs: {})",
                spec.name,
                names.join(", ")
            ),
        ));
    };
    if meta.inputs.len() != 1 {
        return Err(fail(
            "input.name",
            format!(
                "the graph has {} inputs; lookout feeds exactly one image",
                meta.inputs.len()
            ),
        ));
    }
    let want_type = match spec.dtype {
        InputDtype::F32 => "float",
        InputDtype::U8 => "uint8",
    };
    if decl.elem_type != want_type {
        return Err(fail(
            "input.dtype",
            format!(
                "input {:?} is {} in the graph, not {want_type}",
                decl.name, decl.elem_type
            ),
        ));
    }
    let compatible = decl.shape.len() == spec.shape.len()
        && decl.shape.iter().zip(spec.shape).all(|(d, s)| match d {
            Dim::Fixed(v) => *v == s as i64,
            // Symbolic and undeclared sizes are fixed by lookout at load time.
            Dim::Symbolic(_) | Dim::Unknown => true,
        });
    if !compatible {
        return Err(fail(
            "input.shape",
            format!(
                "input {:?} is {} in the graph, the manifest says {:?}",
                decl.name,
                decl.shape_text(),
                spec.shape
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_label_list_is_shown_around_its_first_difference() {
        let coco: Vec<String> = (0..80).map(|i| format!("c{i}")).collect();
        let mut guessed = coco.clone();
        guessed.swap(40, 41);
        assert_eq!(
            excerpt(&guessed, &coco),
            "…38 more, \"c38\", \"c39\", \"c41\", \"c40\", \"c42\", …37 more (80 in all)"
        );
        let short = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(excerpt(&short, &coco), "\"a\", \"b\"");
    }

    #[test]
    fn names_resolve_in_the_directory_paths_stay_paths() {
        let dir = Path::new("boards");
        assert_eq!(resolve("rpi-4b", dir), Path::new("boards/rpi-4b.toml"));
        assert_eq!(resolve("my.toml", dir), Path::new("my.toml"));
        assert_eq!(resolve("x/rpi-4b", dir), Path::new("x/rpi-4b"));
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn shipped_models_pass_on_every_board_they_fit() {
        let root = &crate::repo_root();
        for model in ["shapes-detector", "shapes-classifier"] {
            for board in ["host", "rpi-zero-2w", "rpi-3b", "rpi-4b", "rpi-5"] {
                let (report, manifest, onnx) = check_files(
                    &root.join(format!("boards/{board}.toml")),
                    &root.join(format!("models/{model}.toml")),
                )
                .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(report.model, manifest.id());
                assert_eq!(report.model_bytes, onnx.len() as u64);
                assert_eq!(report.meta.inputs[0].name, manifest.input.name);
                assert!(report.budget_used_percent() < 100.0);
            }
        }
    }
}
