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

use crate::budget::sha256_hex;
use crate::manifest::{
    BoxEncoding, BoxUnits, ColorOrder, ExternalFile, InputDtype, InputSpec, Layout, Manifest,
    OutputSpec, ResizeMode,
};
use crate::onnx_meta::{Dim, OnnxMeta, TensorDecl};
use std::fmt::Write as _;
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

/// Labels per ImageNet-normalised channel, the torchvision convention guessed for a classifier
/// without metadata.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

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
            kpt_shape: m.get("kpt_shape").and_then(|v| int_pair(v)),
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

/// The input tensor from the graph, sizes left symbolic filled from metadata or `--size`.
fn input_spec(
    meta: &OnnxMeta,
    ultralytics: Option<&Ultralytics>,
    options: &ImportOptions,
    notes: &mut Vec<Note>,
) -> Result<InputSpec, String> {
    let input = match meta.inputs.as_slice() {
        [only] => only,
        [] => return Err("the graph has no input".into()),
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|i| format!("`{}` {}", i.name, i.shape_text()))
                .collect();
            return Err(format!(
                "the graph has {} inputs ({}); lookout feeds one image tensor",
                many.len(),
                names.join(", ")
            ));
        }
    };
    let dtype = match input.elem_type {
        "float" => InputDtype::F32,
        "uint8" => InputDtype::U8,
        other => {
            return Err(format!(
                "`{}` is {other}; lookout feeds float or uint8 pixels",
                input.name
            ))
        }
    };
    let dims = &input.shape;
    if dims.len() != 4 {
        return Err(format!(
            "`{}` is {}, rank {}; lookout feeds a 4-d image tensor",
            input.name,
            input.shape_text(),
            dims.len()
        ));
    }
    if let Some(zero) = dims.iter().position(|d| *d == Dim::Fixed(0)) {
        return Err(format!(
            "`{}` is {}: dimension {zero} is 0",
            input.name,
            input.shape_text()
        ));
    }
    let channels_at = |i: usize| matches!(fixed(&dims[i]), Some(1 | 3));
    let (layout, layout_origin, layout_reason) = match options.layout {
        Some(layout) => (layout, Origin::Flag, "--layout".to_owned()),
        None if channels_at(1) => (
            Layout::Nchw,
            Origin::Graph,
            "dimension 1 holds the channels".to_owned(),
        ),
        None if channels_at(3) => (
            Layout::Nhwc,
            Origin::Graph,
            "dimension 3 holds the channels".to_owned(),
        ),
        None => (
            Layout::Nchw,
            Origin::Guess,
            "neither dimension 1 nor 3 is a channel count of 1 or 3 (--layout nhwc if wrong)"
                .to_owned(),
        ),
    };
    let (c, h, w) = match layout {
        Layout::Nchw => (1, 2, 3),
        Layout::Nhwc => (3, 1, 2),
    };
    let batch = match &dims[0] {
        Dim::Fixed(1) => "1".to_owned(),
        Dim::Fixed(b) => {
            return Err(format!(
                "`{}` is {}: batch {b}; lookout runs batch 1",
                input.name,
                input.shape_text()
            ))
        }
        symbolic => format!("symbolic `{symbolic}`, fixed to 1"),
    };
    let graph_size = (fixed(&dims[w]), fixed(&dims[h]));
    let (width, height, size_origin, size_reason) = match (graph_size, options.size) {
        ((Some(gw), Some(gh)), Some((fw, fh))) if (gw, gh) != (fw, fh) => {
            return Err(format!(
                "`{}` is {}: {gw}x{gh}, not the --size {fw}x{fh}",
                input.name,
                input.shape_text()
            ));
        }
        ((Some(gw), Some(gh)), _) => (gw, gh, Origin::Graph, "fixed in the graph".to_owned()),
        (_, Some((fw, fh))) => (fw, fh, Origin::Flag, "--size".to_owned()),
        _ => match ultralytics.and_then(|u| u.imgsz) {
            Some([ih, iw]) if ih > 0 && iw > 0 => (
                iw,
                ih,
                Origin::Metadata("imgsz".into()),
                "symbolic in the graph".to_owned(),
            ),
            _ => {
                return Err(format!(
                    "`{}` is {}: its height and width are not fixed and the file does not say \
                     them; give --size WIDTHxHEIGHT (the size the model was trained at)",
                    input.name,
                    input.shape_text()
                ))
            }
        },
    };
    let channels = match fixed(&dims[c]) {
        Some(n @ (1 | 3)) => n,
        Some(n) => {
            return Err(format!(
                "`{}` is {}: {n} channels; lookout feeds 1 (gray) or 3 (colour)",
                input.name,
                input.shape_text()
            ))
        }
        None if options.color == Some(ColorOrder::Gray) => 1,
        None => 3,
    };
    let shape = match layout {
        Layout::Nchw => [1, channels, height, width],
        Layout::Nhwc => [1, height, width, channels],
    };
    notes.push(Note {
        field: "input",
        value: format!(
            "`{}` {shape:?} {} {}",
            input.name,
            layout_key(layout),
            dtype_key(dtype)
        ),
        origin: if size_origin == Origin::Graph {
            layout_origin.clone()
        } else {
            size_origin
        },
        reason: format!(
            "declared {}; batch {batch}; {width}x{height} {size_reason}; layout {layout_reason}",
            input.shape_text()
        ),
    });
    if layout_origin == Origin::Guess {
        notes.push(Note {
            field: "input.layout",
            value: layout_key(layout).into(),
            origin: Origin::Guess,
            reason: layout_reason,
        });
    }
    Ok(InputSpec {
        name: input.name.clone(),
        shape,
        dtype,
        layout,
    })
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
            let labels: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
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

/// How many classes a decoder reads from the outputs, and the output that says so.
#[derive(Debug)]
struct Classes {
    count: usize,
    evidence: String,
}

const DECODERS: &str = "classify, yolov8, yolov5, end2end, ssd, raw";

/// The decoder for the outputs: `--decoder`, the Ultralytics task, or the output shapes.
fn output_spec(
    meta: &OnnxMeta,
    ultralytics: Option<&Ultralytics>,
    options: &ImportOptions,
    notes: &mut Vec<Note>,
) -> Result<(OutputSpec, Option<Classes>), String> {
    let outputs = &meta.outputs;
    let shapes: Vec<String> = outputs
        .iter()
        .map(|o| format!("`{}` {}", o.name, o.shape_text()))
        .collect();
    let shapes = shapes.join(", ");
    let keypoints = ultralytics.and_then(|u| u.kpt_shape);
    let asked = options.decoder.as_deref();
    if let Some(name) = asked {
        if !DECODERS.split(", ").any(|d| d == name) {
            return Err(format!("--decoder {name:?} is not one of {DECODERS}"));
        }
    }
    let single = match outputs.as_slice() {
        [only] => Some(only),
        _ => None,
    };
    let task = ultralytics.map(|u| u.task.as_str());

    // Each candidate layout: the spec and class count it reads from `out`, if it fits.
    let classify = |out: &TensorDecl| -> Option<(OutputSpec, Classes)> {
        let dims: Vec<Option<usize>> = out.shape.iter().map(fixed).collect();
        let count = match dims.as_slice() {
            [Some(c)] => *c,
            [_, Some(c)] => *c,
            [_, Some(c), Some(1), Some(1)] => *c,
            _ => return None,
        };
        let ends_in_softmax = meta.output_ops.get(&out.name).map(String::as_str) == Some("Softmax");
        Some((
            OutputSpec::Classify {
                softmax: !ends_in_softmax,
                top_k: 5.min(count.max(1)),
            },
            Classes {
                count,
                evidence: format!("`{}` {}", out.name, out.shape_text()),
            },
        ))
    };
    let extra = keypoints.map_or(0, |[k, d]| k * d);
    let yolov8 = |out: &TensorDecl| -> Option<(OutputSpec, Classes)> {
        let [_, a, n] = out.shape.as_slice() else {
            return None;
        };
        let a = fixed(a)?;
        // Candidates outnumber attributes in every real head; a symbolic N counts as many.
        if a <= 4 + extra || fixed(n).is_some_and(|n| n <= a) {
            return None;
        }
        Some((
            OutputSpec::Yolov8 {
                box_units: BoxUnits::Pixels,
                keypoints,
            },
            Classes {
                count: a - 4 - extra,
                evidence: format!("`{}` {}", out.name, out.shape_text()),
            },
        ))
    };
    let end2end = |out: &TensorDecl| -> Option<(OutputSpec, Classes)> {
        let [_, _, v] = out.shape.as_slice() else {
            return None;
        };
        (fixed(v)? == 6 + extra).then(|| {
            (
                OutputSpec::End2end {
                    box_units: BoxUnits::Pixels,
                    keypoints,
                },
                Classes {
                    count: 0,
                    evidence: format!("`{}` {}", out.name, out.shape_text()),
                },
            )
        })
    };
    let yolov5 = |out: &TensorDecl| -> Option<(OutputSpec, Classes)> {
        let [_, n, v] = out.shape.as_slice() else {
            return None;
        };
        let v = fixed(v)?;
        if v <= 5 || fixed(n).is_some_and(|n| n <= v) {
            return None;
        }
        Some((
            OutputSpec::Yolov5 {
                box_units: BoxUnits::Pixels,
            },
            Classes {
                count: v - 5,
                evidence: format!("`{}` {}", out.name, out.shape_text()),
            },
        ))
    };
    let ssd = || -> Option<(OutputSpec, Classes)> {
        let [a, b] = outputs.as_slice() else {
            return None;
        };
        let last = |o: &TensorDecl| o.shape.last().and_then(fixed);
        let (scores, boxes) = match (last(a), last(b)) {
            (_, Some(4)) if a.shape.len() == 3 && b.shape.len() == 3 => (a, b),
            (Some(4), _) if a.shape.len() == 3 && b.shape.len() == 3 => (b, a),
            _ => return None,
        };
        let count = last(scores)?;
        Some((
            OutputSpec::Ssd {
                scores: scores.name.clone(),
                boxes: boxes.name.clone(),
                box_encoding: BoxEncoding::Corners,
                box_units: BoxUnits::Normalized,
                background_class: None,
                priors: None,
                score_activation: crate::manifest::ScoreActivation::None,
            },
            Classes {
                count,
                evidence: format!("`{}` {}", scores.name, scores.shape_text()),
            },
        ))
    };
    let raw = || (OutputSpec::Raw { values: 32 }, None::<Classes>);

    let fit = |decoder: &str| -> Option<(OutputSpec, Classes)> {
        match decoder {
            "classify" => single.and_then(classify),
            "yolov8" => single.and_then(yolov8),
            "end2end" => single.and_then(end2end),
            "yolov5" => single.and_then(yolov5),
            "ssd" => ssd(),
            _ => None,
        }
    };
    let (spec, classes, origin, reason) = match (asked, task) {
        (Some("raw"), _) => {
            let (spec, classes) = raw();
            (spec, classes, Origin::Flag, "--decoder raw".to_owned())
        }
        (Some(name), _) => {
            let (spec, classes) = fit(name)
                .ok_or_else(|| format!("the outputs {shapes} do not have the {name} layout"))?;
            (
                spec,
                Some(classes),
                Origin::Flag,
                format!("--decoder {name}; {shapes}"),
            )
        }
        (None, Some(task @ ("detect" | "pose"))) => {
            if task == "pose" && keypoints.is_none() {
                return Err(
                    "Ultralytics task `pose` without a readable `kpt_shape` in the metadata".into(),
                );
            }
            // YOLOv10 and `nms=True` exports end in rows of 6 (+ keypoints) instead.
            let (spec, classes) = fit("yolov8")
                .or_else(|| fit("end2end"))
                .ok_or_else(|| {
                    format!("Ultralytics task `{task}`, but the outputs {shapes} are neither [1, 4+C, N] nor [1, N, 6]")
                })?;
            let reason = format!("metadata task `{task}`; {shapes}");
            (spec, Some(classes), Origin::Metadata("task".into()), reason)
        }
        (None, Some("classify")) => {
            let (spec, classes) = single.and_then(classify).ok_or_else(|| {
                format!("Ultralytics task `classify`, but the outputs are {shapes}")
            })?;
            let reason = format!("metadata task `classify`; {shapes}");
            (spec, Some(classes), Origin::Metadata("task".into()), reason)
        }
        (None, Some(task)) => {
            let (spec, classes) = raw();
            let reason = format!(
                "Ultralytics task `{task}` has no decoder in lookout; raw reports the outputs' first values"
            );
            (spec, classes, Origin::Metadata("task".into()), reason)
        }
        (None, None) => {
            let guessed = ["classify", "end2end", "yolov8", "yolov5", "ssd"]
                .into_iter()
                .find_map(|d| fit(d).map(|f| (d, f)));
            match guessed {
                Some((decoder, (spec, classes))) => {
                    let why = match decoder {
                        "classify" => "one score per class",
                        "end2end" => "rows of 6 values: x0, y0, x1, y1, score, class",
                        "yolov8" => "4 box values + C class scores per candidate, candidates last",
                        "yolov5" => "rows of 5 + C values (box, objectness, classes); --decoder yolov8 if there is no objectness",
                        _ => "a scores and a boxes output (corners, normalized)",
                    };
                    (
                        spec,
                        Some(classes),
                        Origin::Guess,
                        format!("{shapes}: {why}"),
                    )
                }
                None => {
                    let (spec, classes) = raw();
                    (
                        spec,
                        classes,
                        Origin::Graph,
                        format!("no decoder fits {shapes}; raw reports the outputs' first values"),
                    )
                }
            }
        }
    };
    let mut classes = classes;
    // end2end rows carry the class as a value: the count comes from the labels.
    if matches!(spec, OutputSpec::End2end { .. }) {
        classes = None;
    }
    let mut value = spec.decoder_name().to_owned();
    if let OutputSpec::Classify { softmax, .. } = &spec {
        let _ = write!(value, ", softmax = {softmax}");
    }
    if let Some([k, d]) = spec.keypoints() {
        let _ = write!(value, ", keypoints = [{k}, {d}]");
    }
    notes.push(Note {
        field: "output",
        value,
        origin,
        reason,
    });
    if let OutputSpec::Classify { softmax, .. } = &spec {
        let op = single
            .and_then(|o| meta.output_ops.get(&o.name))
            .map_or("nothing", String::as_str);
        notes.push(Note {
            field: "output.softmax",
            value: softmax.to_string(),
            origin: Origin::Graph,
            reason: format!("the graph's output comes from {op}"),
        });
    }
    Ok((spec, classes))
}

/// The pixel conversion: flags, the exporter's convention, or a marked guess.
struct Pixels {
    resize: ResizeMode,
    color: ColorOrder,
    scale: f32,
    mean: Vec<f32>,
    std: Vec<f32>,
    /// Which of resize, color, scale/mean/std are guesses.
    guessed: [bool; 3],
}

fn preprocess(
    input: &InputSpec,
    output: &OutputSpec,
    ultralytics: Option<&Ultralytics>,
    options: &ImportOptions,
    notes: &mut Vec<Note>,
) -> Result<Pixels, (&'static str, String)> {
    let channels = input.channels();
    let classifier = matches!(output, OutputSpec::Classify { .. });
    let (convention, why) = match ultralytics {
        Some(u) if u.is_classifier() => (
            true,
            "Ultralytics classifiers: centre crop, RGB, pixels / 255",
        ),
        Some(_) => (
            true,
            "Ultralytics detectors: letterbox with 114, RGB, pixels / 255",
        ),
        None => (false, ""),
    };
    let mut guessed = [false; 3];
    let resize = match options.resize {
        Some(r) => r,
        None if convention => {
            if classifier {
                ResizeMode::CenterCrop
            } else {
                ResizeMode::Letterbox
            }
        }
        None => {
            guessed[0] = true;
            if classifier {
                ResizeMode::CenterCrop
            } else {
                ResizeMode::Stretch
            }
        }
    };
    let color = match options.color {
        Some(c) => c,
        None if channels == 1 => ColorOrder::Gray,
        None if convention => ColorOrder::Rgb,
        None => {
            guessed[1] = true;
            ColorOrder::Rgb
        }
    };
    let raw_pixels = input.dtype == InputDtype::U8;
    let stated = options.scale.is_some() || options.mean.is_some() || options.std.is_some();
    let (scale, mean, std) = if raw_pixels {
        (1.0, vec![0.0; channels], vec![1.0; channels])
    } else if convention && !stated {
        (1.0 / 255.0, vec![0.0; channels], vec![1.0; channels])
    } else {
        if !stated {
            guessed[2] = true;
        }
        let imagenet = classifier && channels == 3 && !stated;
        let scale = options.scale.unwrap_or(1.0 / 255.0);
        let mean = options.mean.clone().unwrap_or_else(|| {
            if imagenet {
                IMAGENET_MEAN.to_vec()
            } else {
                vec![0.0; channels]
            }
        });
        let std = options.std.clone().unwrap_or_else(|| {
            if imagenet {
                IMAGENET_STD.to_vec()
            } else {
                vec![1.0; channels]
            }
        });
        (scale, mean, std)
    };
    for (flag, values) in [("--mean", &mean), ("--std", &std)] {
        if values.len() != channels {
            return Err((
                flag,
                format!(
                    "has {} values, the input has {channels} channels",
                    values.len()
                ),
            ));
        }
    }
    let guesses: Vec<&str> = ["resize", "color", "scale/mean/std"]
        .into_iter()
        .zip(guessed)
        .filter_map(|(part, g)| g.then_some(part))
        .collect();
    let flagged = options.resize.is_some() || options.color.is_some() || stated;
    let (origin, reason) = if raw_pixels {
        (Origin::Graph, "uint8 input: raw pixels".to_owned())
    } else if !guesses.is_empty() {
        (
            Origin::Guess,
            format!(
                "the file does not say how pixels were prepared: {} guessed (--resize, --color, \
                 --scale, --mean, --std state them)",
                guesses.join(", ")
            ),
        )
    } else if flagged {
        (Origin::Flag, "stated by flags".to_owned())
    } else if convention {
        (Origin::Convention, why.to_owned())
    } else {
        (Origin::Graph, "gray input: one channel".to_owned())
    };
    notes.push(Note {
        field: "preprocess",
        value: format!(
            "{}, {}, scale {scale}, mean {mean:?}, std {std:?}",
            resize_key(resize),
            color_key(color)
        ),
        origin,
        reason,
    });
    Ok(Pixels {
        resize,
        color,
        scale,
        mean,
        std,
        guessed,
    })
}

fn layout_key(l: Layout) -> &'static str {
    match l {
        Layout::Nchw => "nchw",
        Layout::Nhwc => "nhwc",
    }
}

fn dtype_key(d: InputDtype) -> &'static str {
    match d {
        InputDtype::F32 => "f32",
        InputDtype::U8 => "u8",
    }
}

fn resize_key(r: ResizeMode) -> &'static str {
    match r {
        ResizeMode::Stretch => "stretch",
        ResizeMode::Letterbox => "letterbox",
        ResizeMode::CenterCrop => "center-crop",
    }
}

fn color_key(c: ColorOrder) -> &'static str {
    match c {
        ColorOrder::Rgb => "rgb",
        ColorOrder::Bgr => "bgr",
        ColorOrder::Gray => "gray",
    }
}

struct Header<'a> {
    file: &'a str,
    /// How the weights are stored, as the graph shows it (the check holds the file to it).
    quantization: crate::onnx_meta::QuantForm,
    producer: &'a str,
    opset: Option<i64>,
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn floats(values: &[f32]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", items.join(", "))
}

const GUESS: &str = "  # GUESS:";

#[allow(clippy::too_many_arguments)]
fn render(
    name: &str,
    version: &str,
    header: &Header<'_>,
    labels: &[String],
    (sha256, bytes): (&str, u64),
    external: &[ExternalFile],
    input: &InputSpec,
    pixels: &Pixels,
    output: &OutputSpec,
    notes: &[Note],
) -> String {
    let mut t = String::new();
    let producer = if header.producer.is_empty() {
        "an unnamed exporter"
    } else {
        header.producer
    };
    let opset = header
        .opset
        .map_or_else(|| "no standard opset".to_owned(), |o| format!("opset {o}"));
    let _ = writeln!(
        t,
        "# Written by `lookout import` from {} ({producer}, {opset}).",
        header.file
    );
    if notes.iter().any(Note::is_guess) {
        let _ = writeln!(
            t,
            "# Lines marked GUESS could not be read from the file: check them before trusting \
             results."
        );
    }
    for note in notes {
        let mark = if note.is_guess() { " (GUESS)" } else { "" };
        let _ = writeln!(
            t,
            "# {}{mark}: {} — {}",
            note.field, note.value, note.reason
        );
    }
    let _ = writeln!(t, "name = {}", quoted(name));
    let _ = writeln!(t, "version = {}", quoted(version));
    let _ = writeln!(
        t,
        "description = {}",
        quoted(&format!(
            "Imported from {} ({producer}, {opset}).",
            header.file
        ))
    );
    let guessed_labels = notes.iter().any(|n| n.field == "labels" && n.is_guess());
    let items: Vec<String> = labels.iter().map(|l| quoted(l)).collect();
    let _ = write!(t, "labels = [{}]", items.join(", "));
    if guessed_labels {
        let _ = write!(t, "{GUESS} placeholders, the file names no classes");
    }
    t.push('\n');
    let _ = writeln!(t, "\n[model]");
    let _ = writeln!(t, "file = {}", quoted(header.file));
    let _ = writeln!(t, "sha256 = {}", quoted(sha256));
    let _ = writeln!(t, "bytes = {bytes}");
    let _ = writeln!(t, "quantization = {}", quoted(header.quantization.key()));
    if !external.is_empty() {
        let items: Vec<String> = external
            .iter()
            .map(|f| {
                format!(
                    "{{ file = {}, sha256 = {}, bytes = {} }}",
                    quoted(&f.file),
                    quoted(&f.sha256),
                    f.bytes
                )
            })
            .collect();
        let _ = writeln!(t, "external = [\n    {},\n]", items.join(",\n    "));
    }
    let _ = writeln!(t, "\n[input]");
    let _ = writeln!(t, "name = {}", quoted(&input.name));
    let _ = writeln!(
        t,
        "shape = [{}]",
        input.shape.map(|d| d.to_string()).join(", ")
    );
    let _ = writeln!(t, "dtype = {}", quoted(dtype_key(input.dtype)));
    let _ = write!(t, "layout = {}", quoted(layout_key(input.layout)));
    if notes.iter().any(|n| n.field == "input.layout") {
        let _ = write!(t, "{GUESS} no dimension is a channel count");
    }
    t.push('\n');
    let _ = writeln!(t, "\n[preprocess]");
    let line = |t: &mut String, key: &str, value: String, guessed: bool, why: &str| {
        let _ = write!(t, "{key} = {value}");
        if guessed {
            let _ = write!(t, "{GUESS} {why}");
        }
        t.push('\n');
    };
    let [resize_guess, color_guess, values_guess] = pixels.guessed;
    line(
        &mut t,
        "resize",
        quoted(resize_key(pixels.resize)),
        resize_guess,
        "how frames were fitted in training (stretch, letterbox, center-crop)",
    );
    line(
        &mut t,
        "color",
        quoted(color_key(pixels.color)),
        color_guess,
        "bgr for models trained on OpenCV frames",
    );
    line(
        &mut t,
        "scale",
        format!("{:?}", pixels.scale),
        values_guess,
        "pixels / 255",
    );
    let imagenet = pixels.mean == IMAGENET_MEAN;
    line(
        &mut t,
        "mean",
        floats(&pixels.mean),
        values_guess,
        if imagenet {
            "ImageNet's, the torchvision convention for classifiers"
        } else {
            "no mean subtracted"
        },
    );
    line(
        &mut t,
        "std",
        floats(&pixels.std),
        values_guess,
        if imagenet {
            "ImageNet's"
        } else {
            "no division"
        },
    );
    let _ = writeln!(t, "\n[output]");
    let _ = writeln!(t, "decoder = {}", quoted(output.decoder_name()));
    match output {
        OutputSpec::Classify { softmax, top_k } => {
            let _ = writeln!(t, "softmax = {softmax}");
            let _ = writeln!(t, "top_k = {top_k}");
        }
        OutputSpec::Yolov5 { box_units }
        | OutputSpec::Yolov8 { box_units, .. }
        | OutputSpec::End2end { box_units, .. } => {
            let _ = writeln!(
                t,
                "box_units = {}",
                quoted(match box_units {
                    BoxUnits::Pixels => "pixels",
                    BoxUnits::Normalized => "normalized",
                })
            );
            if let Some([k, d]) = output.keypoints() {
                let _ = writeln!(t, "keypoints = [{k}, {d}]");
            }
        }
        OutputSpec::Ssd { scores, boxes, .. } => {
            let _ = writeln!(t, "scores = {}", quoted(scores));
            let _ = writeln!(t, "boxes = {}", quoted(boxes));
            let _ = writeln!(t, "box_encoding = \"corners\"{GUESS} decoded corners; center-offsets with priors for raw SSD heads");
            let _ = writeln!(t, "box_units = \"normalized\"");
        }
        OutputSpec::Raw { values } => {
            let _ = writeln!(t, "values = {values}");
        }
    }
    t
}
