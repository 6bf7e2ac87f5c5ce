//! `lookout import`: the manifest for an ONNX file someone already has, written from what the
//! file itself says.
//!
//! Everything that can be read is read: the input's name, shape and layout from the graph; size,
//! labels and task from the exporter's metadata (Ultralytics writes `names`, `imgsz`, `task`,
//! `kpt_shape`; Paddle a `character` list) or a `labels.txt` beside the file; the decoder from the
//! task or the output shapes; sha256 and size from the bytes. What cannot be read — how pixels
//! were normalised for a model without metadata — comes from flags, or is written as a guess
//! marked `# GUESS` in the manifest, with the reason. Every choice is returned as a [`Note`]
//! so the command can say where each value came from.
//!
//! This module decides and writes text only; loading and running the model once (the
//! deployment check) is the command's next step, through [`crate::model::verify`].
//!
//! Each part of the manifest is decided in its own file: `input.rs` (the tensor and its size),
//! `decoder.rs` (the decoder and the class count it reads), `pixels.rs` (pre-processing), and
//! `render.rs` writes the TOML; labels and external data files are read here.

mod decoder;
mod input;
mod pixels;
mod render;

use crate::budget::sha256_hex;
use crate::manifest::{ColorOrder, ExternalFile, Layout, Manifest, OutputSpec, ResizeMode};
use crate::onnx_meta::{Dim, OnnxMeta};
use decoder::output_spec;
use input::input_spec;
use pixels::preprocess;
use render::{render, Header};
use std::path::{Path, PathBuf};

/// What the user states on the command line; `None` leaves the choice to the file or a guess.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Model version written to the manifest (default `1`).
    pub version: Option<String>,
    /// A labels file, one label per line.
    pub labels: Option<PathBuf>,
    /// Input width and height, for a model whose graph leaves them symbolic.
    pub size: Option<(usize, usize)>,
    /// Input layout.
    pub layout: Option<Layout>,
    /// Channel order.
    pub color: Option<ColorOrder>,
    /// How frames are fitted to the input.
    pub resize: Option<ResizeMode>,
    /// Pixel multiplier.
    pub scale: Option<f32>,
    /// Per-channel mean.
    pub mean: Option<Vec<f32>>,
    /// Per-channel std.
    pub std: Option<Vec<f32>>,
    /// Decoder name, overriding the choice from metadata and shapes.
    pub decoder: Option<String>,
}

/// Why no manifest can be written for the file: each names the file and the part of it.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not an ONNX model.
    #[error("{path}: {source}")]
    NotOnnx {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        source: crate::onnx_meta::OnnxMetaError,
    },
    /// Something the file declares (or a flag) does not fit what lookout runs.
    #[error("{path}: {field}: {message}")]
    Field {
        /// The model file.
        path: PathBuf,
        /// What is wrong: `input`, `labels`, `output`, a flag such as `--mean`.
        field: String,
        /// Why, with the values involved.
        message: String,
    },
    /// The manifest written does not validate: a defect of the import, reported rather than
    /// written.
    #[error("the manifest written for {path} does not validate: {source}")]
    Invalid {
        /// The model file.
        path: PathBuf,
        /// Validation's error.
        source: lookout_contract::ConfigError,
    },
}

/// Where a value of the manifest came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The graph (input and output declarations, operators).
    Graph,
    /// The file's metadata, by key.
    Metadata(String),
    /// A file beside the model, or given by a flag.
    File(PathBuf),
    /// A command-line flag.
    Flag,
    /// A known exporter's convention (Ultralytics).
    Convention,
    /// Not known: a guess, marked in the manifest.
    Guess,
}

/// One decision of the import, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// The manifest part it decides (`input`, `labels`, `output`, `preprocess`).
    pub field: &'static str,
    /// The value chosen, as text.
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
    /// Why, in a few words.
    pub reason: String,
}

impl Note {
    /// Whether the value is a guess the user should check.
    pub fn is_guess(&self) -> bool {
        self.origin == Origin::Guess
    }
}

/// The manifest written for a model.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Where the manifest belongs: beside the model, named after its stem.
    pub path: PathBuf,
    /// The manifest text (TOML with comments).
    pub text: String,
    /// The same, parsed and validated.
    pub manifest: Manifest,
    /// Every decision, in manifest order.
    pub notes: Vec<Note>,
}

/// What Ultralytics writes into its exports' metadata.
#[derive(Debug, Clone, PartialEq)]
struct Ultralytics {
    task: String,
    /// `[height, width]`.
    imgsz: Option<[usize; 2]>,
    kpt_shape: Option<[usize; 2]>,
}

impl Ultralytics {
    fn from_meta(meta: &OnnxMeta) -> Option<Self> {
        let m = &meta.metadata;
        let task = m.get("task")?.trim().to_owned();
        let by_ultralytics =
            m.get("author").is_some_and(|a| a.contains("Ultralytics")) || m.contains_key("stride");
        if !by_ultralytics {
            return None;
        }
        Some(Self {
            task,
            imgsz: m.get("imgsz").and_then(|v| int_pair(v)),
            // Anything but K keypoints (at most 1024) of 2 or 3 values is not read: the pose
            // task then asks for a readable one.
            kpt_shape: m
                .get("kpt_shape")
                .and_then(|v| int_pair(v))
                .filter(|[k, d]| (1..=1024).contains(k) && (2..=3).contains(d)),
        })
    }

    fn is_classifier(&self) -> bool {
        self.task == "classify"
    }
}

/// `[a, b]` (a Python list literal) as two integers.
fn int_pair(text: &str) -> Option<[usize; 2]> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut values = inner.split(',').map(|v| v.trim().parse::<usize>());
    let pair = [values.next()?.ok()?, values.next()?.ok()?];
    values.next().is_none().then_some(pair)
}

fn fixed(d: &Dim) -> Option<usize> {
    match d {
        Dim::Fixed(v) if *v >= 0 => usize::try_from(*v).ok(),
        _ => None,
    }
}

/// Writes the manifest for `model` (not to disk: see [`Imported::path`]).
pub fn import(model: &Path, options: &ImportOptions) -> Result<Imported, ImportError> {
    let bytes = std::fs::read(model).map_err(|source| ImportError::Read {
        path: model.to_owned(),
        source,
    })?;
    let meta = OnnxMeta::parse(&bytes).map_err(|source| ImportError::NotOnnx {
        path: model.to_owned(),
        source,
    })?;
    let field = |field: &str, message: String| ImportError::Field {
        path: model.to_owned(),
        field: field.to_owned(),
        message,
    };
    let name = model
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| field("file name", "has no usable stem to name the model".into()))?
        .to_owned();
    let file = model
        .file_name()
        .and_then(|s| s.to_str())
        .ok_or_else(|| field("file name", "is not UTF-8".into()))?
        .to_owned();
    let ultralytics = Ultralytics::from_meta(&meta);
    let mut notes = Vec::new();
    let external = external_files(model, &meta, &mut notes)?;
    let form = meta.quant_form();
    notes.push(Note {
        field: "model.quantization",
        value: form.key().to_owned(),
        origin: Origin::Graph,
        reason: form
            .tract_cost()
            .map_or_else(|| form.describe().to_owned(), str::to_owned),
    });

    let input = input_spec(&meta, ultralytics.as_ref(), options, &mut notes)
        .map_err(|m| field("input", m))?;
    let labels = labels(model, &meta, options, &mut notes)?;
    let (output, classes) = output_spec(&meta, ultralytics.as_ref(), options, &mut notes)
        .map_err(|m| field("output", m))?;
    let labels = match (labels, classes) {
        (Some((labels, from)), Some(classes)) if labels.len() != classes.count => {
            return Err(field(
                "labels",
                format!(
                    "{} labels from {from}, but {} holds {} classes for the {} decoder",
                    labels.len(),
                    classes.evidence,
                    classes.count,
                    output.decoder_name()
                ),
            ));
        }
        (Some((labels, _)), _) => labels,
        (None, _) if matches!(output, OutputSpec::End2end { .. }) => {
            return Err(field(
                "labels",
                "end2end rows carry a class id but neither the file's metadata nor a labels.txt \
                 beside it names the classes; give --labels FILE"
                    .into(),
            ));
        }
        (None, Some(classes)) => {
            notes.push(Note {
                field: "labels",
                value: format!("class0 .. class{}", classes.count.saturating_sub(1)),
                origin: Origin::Guess,
                reason: format!(
                    "the file carries no labels and there is no labels.txt beside it; {} \
                     holds {} classes (--labels FILE names them)",
                    classes.evidence, classes.count
                ),
            });
            (0..classes.count).map(|i| format!("class{i}")).collect()
        }
        (None, None) => Vec::new(),
    };
    let preprocess = preprocess(&input, &output, ultralytics.as_ref(), options, &mut notes)
        .map_err(|(flag, m)| field(flag, m))?;

    let path = model.with_file_name(format!("{name}.toml"));
    let header = Header {
        file: &file,
        quantization: meta.quant_form(),
        producer: &meta.producer,
        opset: meta
            .opsets
            .get("")
            .or_else(|| meta.opsets.get("ai.onnx"))
            .copied(),
    };
    let text = render(
        &name,
        options.version.as_deref().unwrap_or("1"),
        &header,
        &labels,
        (&sha256_hex(&bytes), bytes.len() as u64),
        &external,
        &input,
        &preprocess,
        &output,
        &notes,
    );
    let manifest = Manifest::parse(&text, &path).map_err(|source| ImportError::Invalid {
        path: model.to_owned(),
        source,
    })?;
    Ok(Imported {
        path,
        text,
        manifest,
        notes,
    })
}

/// The external data files the model reads, each inside its folder, with sha256 and size.
fn external_files(
    model: &Path,
    meta: &OnnxMeta,
    notes: &mut Vec<Note>,
) -> Result<Vec<ExternalFile>, ImportError> {
    let mut files = Vec::new();
    let dir = model
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    for location in &meta.external_files {
        let path = dir.join(location);
        let outside = || ImportError::Field {
            path: model.to_owned(),
            field: "external data".into(),
            message: format!(
                "names {location:?}, which is not a regular file inside the model's folder"
            ),
        };
        if !crate::external::plain_location(location) {
            return Err(outside());
        }
        let read = |source| ImportError::Read {
            path: path.clone(),
            source,
        };
        let real = path.canonicalize().map_err(read)?;
        if !real.starts_with(dir.canonicalize().map_err(read)?) || !real.is_file() {
            return Err(outside());
        }
        let bytes = std::fs::read(&real).map_err(read)?;
        files.push(ExternalFile {
            file: location.clone(),
            sha256: sha256_hex(&bytes),
            bytes: bytes.len() as u64,
        });
    }
    if !files.is_empty() {
        let total: u64 = files.iter().map(|f| f.bytes).sum();
        notes.push(Note {
            field: "model.external",
            value: meta.external_files.join(", "),
            origin: Origin::Graph,
            reason: format!(
                "initializers stored beside the file ({total} bytes), listed with their sha256"
            ),
        });
    }
    Ok(files)
}

/// Labels from the file's metadata, `--labels`, or `labels.txt` beside the model, with where
/// they came from. Two sources that disagree are an error naming both.
fn labels(
    model: &Path,
    meta: &OnnxMeta,
    options: &ImportOptions,
    notes: &mut Vec<Note>,
) -> Result<Option<(Vec<String>, String)>, ImportError> {
    let carried = meta.metadata_labels();
    let beside = model.with_file_name("labels.txt");
    let file = match &options.labels {
        Some(path) => Some((path.clone(), Origin::Flag)),
        None if beside.is_file() => Some((beside.clone(), Origin::File(beside))),
        None => None,
    };
    let from_file = match &file {
        Some((path, _)) => {
            let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
                path: path.clone(),
                source,
            })?;
            let labels = crate::onnx_meta::label_lines(&text);
            if labels.is_empty() {
                return Err(ImportError::Field {
                    path: path.clone(),
                    field: "labels".into(),
                    message: "holds no labels (one per line)".into(),
                });
            }
            Some(labels)
        }
        None => None,
    };
    let chosen = match (carried, from_file, file) {
        (Some((carried, key)), Some(given), Some((path, _))) if carried != given => {
            return Err(ImportError::Field {
                path: model.to_owned(),
                field: "labels".into(),
                message: format!(
                    "{} has {} labels [{}] but the file's metadata `{key}` has {} [{}]",
                    path.display(),
                    given.len(),
                    preview(&given),
                    carried.len(),
                    preview(&carried)
                ),
            });
        }
        (Some((carried, key)), _, _) => {
            let from = format!("the file's metadata `{key}`");
            notes.push(Note {
                field: "labels",
                value: format!("{} ({})", carried.len(), preview(&carried)),
                origin: Origin::Metadata(key.into()),
                reason: from.clone(),
            });
            Some((carried, from))
        }
        (None, Some(given), Some((path, origin))) => {
            let from = path.display().to_string();
            notes.push(Note {
                field: "labels",
                value: format!("{} ({})", given.len(), preview(&given)),
                origin: if origin == Origin::Flag {
                    Origin::File(path)
                } else {
                    origin
                },
                reason: format!("one per line in {from}"),
            });
            Some((given, from))
        }
        _ => None,
    };
    Ok(chosen)
}

/// The first few labels, for messages.
fn preview(labels: &[String]) -> String {
    let mut text: Vec<String> = labels.iter().take(4).map(|l| format!("{l:?}")).collect();
    if labels.len() > 4 {
        text.push("…".into());
    }
    text.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{ModelProto, StringStringEntryProto};

    /// The bundled classifier rewritten with `edit`, in a folder of its own.
    fn edited(dir: &Path, edit: impl FnOnce(&mut ModelProto)) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(root.join("models/shapes-classifier.onnx")).expect("model");
        let mut model = <ModelProto as prost::Message>::decode(bytes.as_slice()).expect("decodes");
        edit(&mut model);
        let path = dir.join("edited.onnx");
        std::fs::write(&path, prost::Message::encode_to_vec(&model)).expect("write");
        path
    }

    #[test]
    fn text_from_the_model_cannot_write_keys_into_the_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = edited(dir.path(), |m| {
            m.producer_name = "x)\n[thresholds]\nscore = 0.99\n# (".into();
        });
        let imported = import(&model, &ImportOptions::default()).expect("imports");
        assert!(
            !imported
                .text
                .lines()
                .any(|l| l.starts_with("[thresholds]") || l.starts_with("score")),
            "{}",
            imported.text
        );
        assert_eq!(
            imported.manifest.thresholds,
            crate::manifest::Thresholds::default()
        );
    }

    #[test]
    fn an_unreadable_kpt_shape_is_refused_naming_it_not_overflowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = edited(dir.path(), |m| {
            for (key, value) in [
                ("author", "Ultralytics"),
                ("task", "pose"),
                ("kpt_shape", "[4611686018427387904, 3]"),
            ] {
                m.metadata_props.push(StringStringEntryProto {
                    key: key.into(),
                    value: value.into(),
                });
            }
        });
        let err = import(&model, &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(
                "output: Ultralytics task `pose` without a readable `kpt_shape` in the metadata"
            ),
            "{err}"
        );
    }
}
