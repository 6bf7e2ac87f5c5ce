//! `lookout inspect`: what an ONNX file is, before anyone tries to deploy it.
//!
//! Reports the declared inputs and outputs, the operators and their counts, parameter count,
//! size and sha256, the quantization form the operators show, and — the question that matters —
//! whether tract loads and optimizes it, with tract's reason when it does not.

use crate::budget::sha256_hex;
use crate::model::engine;
use crate::onnx_meta::{OnnxMeta, OnnxMetaError, QuantForm};
use std::path::{Path, PathBuf};

/// Errors that stop an inspection (anything after a successful parse is reported instead).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file cannot be read.
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
        source: OnnxMetaError,
    },
}

/// What `inspect` found.
#[derive(Debug)]
pub struct Inspection {
    /// The file.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256.
    pub sha256: String,
    /// Declared contents.
    pub meta: OnnxMeta,
    /// Quantization form.
    pub quant: QuantForm,
    /// tract's verdict: output shapes, or why it refuses the model.
    pub tract: Result<engine::Probe, String>,
}

/// Inspects an ONNX file. `trial` tries it where a panic inside tract cannot take this process
/// down (a child process: [`crate::model::verify`]); only a model that passes it is probed here.
pub fn inspect(
    path: &Path,
    trial: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<Inspection, InspectError> {
    let onnx = std::fs::read(path).map_err(|source| InspectError::Read {
        path: path.to_owned(),
        source,
    })?;
    let meta = OnnxMeta::parse(&onnx).map_err(|source| InspectError::NotOnnx {
        path: path.to_owned(),
        source,
    })?;
    let tract = trial(path).and_then(|()| {
        let whole = whole_model(&onnx, &meta, path).map_err(|e| e.to_string())?;
        engine::probe(&whole, &path.display().to_string()).map_err(|e| e.to_string())
    });
    Ok(Inspection {
        path: path.to_owned(),
        bytes: onnx.len() as u64,
        sha256: sha256_hex(&onnx),
        quant: meta.quant_form(),
        meta,
        tract,
    })
}

/// The model as tract should see it: with the initializers stored in external data files beside
/// it written in (never from outside its folder).
pub fn whole_model<'a>(
    onnx: &'a [u8],
    meta: &OnnxMeta,
    path: &Path,
) -> Result<std::borrow::Cow<'a, [u8]>, crate::external::ExternalError> {
    if meta.external_data {
        crate::external::inline_beside(onnx, path).map(std::borrow::Cow::Owned)
    } else {
        Ok(std::borrow::Cow::Borrowed(onnx))
    }
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.meta;
        writeln!(f, "file:         {}", self.path.display())?;
        writeln!(f, "size:         {} bytes", self.bytes)?;
        writeln!(f, "sha256:       {}", self.sha256)?;
        writeln!(f, "producer:     {} (ONNX IR {})", m.producer, m.ir_version)?;
        let opsets: Vec<String> = m
            .opsets
            .iter()
            .map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d }))
            .collect();
        writeln!(f, "opsets:       {}", opsets.join(", "))?;
        for i in &m.inputs {
            writeln!(
                f,
                "input:        {} {} {}",
                i.name,
                i.elem_type,
                i.shape_text()
            )?;
        }
        for o in &m.outputs {
            writeln!(
                f,
                "output:       {} {} {}",
                o.name,
                o.elem_type,
                o.shape_text()
            )?;
        }
        if !m.metadata.is_empty() {
            let keys: Vec<&str> = m.metadata.keys().map(String::as_str).collect();
            writeln!(f, "metadata:     {}", keys.join(", "))?;
        }
        if let Some((labels, key)) = m.metadata_labels() {
            const SHOWN: usize = 10;
            let mut shown = labels
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if labels.len() > SHOWN {
                shown.push_str(", …");
            }
            writeln!(
                f,
                "labels:       {} from metadata `{key}`: {shown}",
                labels.len()
            )?;
        }
        writeln!(f, "parameters:   {}", m.parameters)?;
        let types: Vec<String> = m
            .initializer_types
            .iter()
            .map(|(t, n)| format!("{t}×{n}"))
            .collect();
        writeln!(f, "initializers: {}", types.join(", "))?;
        if !m.external_files.is_empty() {
            writeln!(
                f,
                "external data: {} (weights stored beside the file; the manifest lists them)",
                m.external_files.join(", ")
            )?;
        }
        let ops: Vec<String> = m.ops.iter().map(|(op, n)| format!("{op}×{n}")).collect();
        writeln!(f, "operators:    {}", ops.join(", "))?;
        writeln!(f, "quantization: {}", self.quant.describe())?;
        if let Some(cost) = self.quant.tract_cost() {
            writeln!(f, "on tract:     {cost}")?;
        }
        let foreign = m.foreign_ops();
        if !foreign.is_empty() {
            writeln!(
                f,
                "non-standard: {} (tract does not run these; onnxruntime's quantizer writes them \
                 for QOperator files: `lookout import --int8-weights` on the fp32 original is the \
                 int8 form tract runs)",
                foreign.join(", ")
            )?;
        }
        match &self.tract {
            Ok(probe) => {
                let outs: Vec<String> = probe
                    .outputs
                    .iter()
                    .map(|(n, s)| format!("{n} {s:?}"))
                    .collect();
                writeln!(
                    f,
                    "tract:        loads and optimizes; outputs {}",
                    outs.join(", ")
                )?;
                writeln!(
                    f,
                    "compute:      {} multiply-accumulates per inference ({:.2} M), {} weights \
                     and biases",
                    probe.macs,
                    probe.macs as f64 / 1e6,
                    probe.parameters
                )?;
                let reference = crate::lab::estimate::Reference::for_model(probe);
                if probe.grouped_macs == 0 {
                    writeln!(
                        f,
                        "grouped conv: none; board estimates scale by {reference}"
                    )?;
                } else {
                    writeln!(
                        f,
                        "grouped conv: {} multiply-accumulates ({:.1} %); board estimates scale \
                         by {reference}",
                        probe.grouped_macs,
                        100.0 * probe.grouped_macs as f64 / probe.macs.max(1) as f64
                    )?;
                }
                let ops: Vec<String> = probe
                    .ops
                    .iter()
                    .map(|(op, n)| format!("{op}×{n}"))
                    .collect();
                write!(f, "tract runs:   {}", ops.join(", "))
            }
            Err(why) => write!(f, "tract:        REFUSED: {why}"),
        }
    }
}
