//! Weight-only int8 (`lookout import --int8-weights`): the form that shrinks a model to about a
//! quarter and costs tract nothing per frame.
//!
//! Every float weight of a Conv, Gemm or MatMul (their second input, when it is an initializer)
//! is stored as symmetric per-output-channel int8 (`scale = max|w| / 127`, zero point 0) behind
//! a `DequantizeLinear` that writes the original tensor name, so the operators that read it are
//! untouched. tract folds the `DequantizeLinear` of a constant at load, so the graph it runs is
//! the fp32 graph with weights rounded to 255 levels per channel: the same instructions per
//! frame as fp32 (models/README.md measures it: 1.00× for both bundled models), where
//! onnxruntime's QDQ and QOperator forms cost tract 1.5× and 3.4–3.8× (models/README.md).
//! This is `tools/variants.py`'s `int8-weights` form, written here so a user needs no Python.
//!
//! A QDQ file from onnxruntime's quantizer already stores its weights as int8 behind
//! `DequantizeLinear`; what makes tract slower on it is the activations' `QuantizeLinear` →
//! `DequantizeLinear` pairs, which turn every operator into integer arithmetic. Converting it
//! drops those pairs (each `DequantizeLinear` of a quantized activation becomes an `Identity` of
//! the float it was made from), leaving the int8-weights form.

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, ModelProto, NodeProto,
    TensorProto,
};

/// Why a model cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum Int8Error {
    /// The bytes are not an ONNX model prost can decode.
    #[error("{origin}: not a valid ONNX protobuf: {message}")]
    Decode {
        /// The model.
        origin: String,
        /// prost's message.
        message: String,
    },
    /// Per-channel `DequantizeLinear` (its `axis`) needs opset 13.
    #[error("{origin}: opset {opset}: per-channel DequantizeLinear needs opset 13 or later; re-export the model at opset 13+")]
    Opset {
        /// The model.
        origin: String,
        /// Its standard-domain opset.
        opset: i64,
    },
    /// A weight's stored data does not hold as many values as its shape says.
    #[error(
        "{origin}: initializer `{name}` holds {got} values but its shape {dims:?} needs {expected}"
    )]
    Data {
        /// The model.
        origin: String,
        /// The initializer.
        name: String,
        /// Its dims.
        dims: Vec<i64>,
        /// Values the shape needs.
        expected: usize,
        /// Values stored.
        got: usize,
    },
}

/// The converted model.
#[derive(Debug, Clone)]
pub struct Int8Weights {
    /// The ONNX bytes.
    pub onnx: Vec<u8>,
    /// Weight tensors converted.
    pub tensors: usize,
    /// Weight values converted.
    pub values: usize,
    /// Activation `QuantizeLinear`/`DequantizeLinear` pairs removed (QDQ files).
    pub activation_pairs: usize,
}

/// Replaces each `DequantizeLinear` of a `QuantizeLinear`'s output by an `Identity` of the
/// quantized float, then drops the `QuantizeLinear`s nothing reads any more. Returns the pairs
/// undone.
fn strip_activation_qdq(graph: &mut tract_onnx::pb::GraphProto) -> usize {
    let quantized: std::collections::BTreeMap<String, String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear" && !n.input.is_empty() && !n.output.is_empty())
        .map(|n| (n.output[0].clone(), n.input[0].clone()))
        .collect();
    let mut pairs = 0;
    for node in graph.node.iter_mut() {
        if node.op_type != "DequantizeLinear" {
            continue;
        }
        let Some(float) = node.input.first().and_then(|i| quantized.get(i)) else {
            continue;
        };
        node.input = vec![float.clone()];
        node.op_type = "Identity".into();
        node.attribute.clear();
        node.domain.clear();
        pairs += 1;
    }
    // A QuantizeLinear whose output no node and no graph output reads is dead.
    let read: std::collections::BTreeSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    graph
        .node
        .retain(|n| n.op_type != "QuantizeLinear" || n.output.iter().any(|o| read.contains(o)));
    pairs
}

/// Weights smaller than this stay float: a handful of values saves nothing and a
/// `DequantizeLinear` per tensor costs load time.
const MIN_VALUES: usize = 16;

/// The output-channel axis of each Conv/Gemm/MatMul weight initializer; a weight two operators
/// read along different axes is left float.
fn weight_axes(model: &ModelProto) -> std::collections::BTreeMap<String, Option<usize>> {
    let mut axes = std::collections::BTreeMap::new();
    let Some(graph) = &model.graph else {
        return axes;
    };
    let dims = |name: &str| {
        graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.dims.len())
    };
    for node in &graph.node {
        let Some(weight) = node.input.get(1) else {
            continue;
        };
        let Some(rank) = dims(weight) else {
            continue;
        };
        let axis = match node.op_type.as_str() {
            // OIHW.
            "Conv" => 0,
            // B is [N, K] with transB, else [K, N].
            "Gemm" => {
                let trans_b = node
                    .attribute
                    .iter()
                    .find(|a| a.name == "transB")
                    .is_some_and(|a| a.i != 0);
                if trans_b {
                    0
                } else {
                    1
                }
            }
            // B is [..., K, N].
            "MatMul" => rank.saturating_sub(1),
            _ => continue,
        };
        let entry = axes.entry(weight.clone()).or_insert(Some(axis));
        if *entry != Some(axis) {
            *entry = None;
        }
    }
    axes
}

/// The f32 values of a float initializer stored inside the file.
fn float_values(t: &TensorProto, origin: &str) -> Result<Vec<f32>, Int8Error> {
    let expected = t
        .dims
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(usize::try_from(*d).ok()?))
        .unwrap_or(usize::MAX);
    let values: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    if values.len() != expected {
        return Err(Int8Error::Data {
            origin: origin.to_owned(),
            name: t.name.clone(),
            dims: t.dims.clone(),
            expected,
            got: values.len(),
        });
    }
    Ok(values)
}

/// `model` with its Conv/Gemm/MatMul weights as per-channel int8 behind `DequantizeLinear`.
pub fn int8_weights(onnx: &[u8], origin: &str) -> Result<Int8Weights, Int8Error> {
    let mut model =
        <ModelProto as prost::Message>::decode(onnx).map_err(|e| Int8Error::Decode {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(0, |o| o.version);
    if opset < 13 {
        return Err(Int8Error::Opset {
            origin: origin.to_owned(),
            opset,
        });
    }
    let activation_pairs = model.graph.as_mut().map_or(0, strip_activation_qdq);
    let axes = weight_axes(&model);
    let Some(graph) = model.graph.as_mut() else {
        return Err(Int8Error::Decode {
            origin: origin.to_owned(),
            message: "the model has no graph".into(),
        });
    };
    let (mut tensors, mut values) = (0, 0);
    let mut dequantize = Vec::new();
    // Names already in the graph: the new tensors' names must not take one.
    let mut taken: std::collections::BTreeSet<String> = graph
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .chain(graph.node.iter().flat_map(|n| n.output.iter().cloned()))
        .chain(graph.input.iter().map(|i| i.name.clone()))
        .collect();
    let mut fresh = |base: String| {
        let mut name = base.clone();
        let mut n = 1;
        while taken.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        taken.insert(name.clone());
        name
    };
    let mut added = Vec::new();
    for t in graph.initializer.iter_mut() {
        let Some(Some(axis)) = axes.get(&t.name).copied() else {
            continue;
        };
        // Float stored in the file (external data was inlined before this runs).
        if t.data_type != DataType::Float as i32
            || axis >= t.dims.len()
            || t.data_location == Some(1)
        {
            continue;
        }
        let w = float_values(t, origin)?;
        if w.len() < MIN_VALUES {
            continue;
        }
        // Sizes from the file, which must hold exactly the values stored: anything else is
        // left for tract to refuse, not divided by here.
        let Ok(dims) = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
        else {
            continue;
        };
        let product = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if product != Some(w.len()) || dims[axis] == 0 {
            continue;
        }
        let channels = dims[axis];
        // Values between one channel index and the next along `axis`, and per block.
        let inner: usize = dims[axis + 1..].iter().product();
        let mut scale = vec![0f32; channels];
        for (i, v) in w.iter().enumerate() {
            let c = (i / inner) % channels;
            scale[c] = scale[c].max(v.abs());
        }
        for s in scale.iter_mut() {
            // An all-zero channel quantizes to 0 at any scale; a non-finite one cannot be kept.
            *s = if s.is_finite() && *s > 0.0 {
                *s / 127.0
            } else {
                1.0
            };
        }
        let q: Vec<u8> = w
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let c = (i / inner) % channels;
                ((v / scale[c]).round().clamp(-127.0, 127.0) as i8) as u8
            })
            .collect();
        let name = std::mem::take(&mut t.name);
        let (q_name, scale_name, zp_name) = (
            fresh(format!("{name}_q")),
            fresh(format!("{name}_scale")),
            fresh(format!("{name}_zp")),
        );
        added.push(TensorProto {
            dims: vec![channels as i64],
            data_type: DataType::Float as i32,
            name: scale_name.clone(),
            raw_data: scale.iter().flat_map(|s| s.to_le_bytes()).collect(),
            ..Default::default()
        });
        added.push(TensorProto {
            dims: vec![channels as i64],
            data_type: DataType::Int8 as i32,
            name: zp_name.clone(),
            raw_data: vec![0; channels],
            ..Default::default()
        });
        t.name = q_name.clone();
        t.data_type = DataType::Int8 as i32;
        t.raw_data = q;
        t.float_data.clear();
        dequantize.push(NodeProto {
            input: vec![q_name, scale_name, zp_name],
            output: vec![name.clone()],
            name: format!("{name}_dequant"),
            op_type: "DequantizeLinear".into(),
            attribute: vec![AttributeProto {
                name: "axis".into(),
                r#type: AttributeType::Int as i32,
                i: axis as i64,
                ..Default::default()
            }],
            ..Default::default()
        });
        tensors += 1;
        values += w.len();
    }
    // Old exports (IR < 4) list initializers among the graph inputs; the weight is now a node's
    // output, which must not also be an input.
    let now_computed: std::collections::BTreeSet<&str> = dequantize
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .collect();
    graph
        .input
        .retain(|i| !now_computed.contains(i.name.as_str()));
    graph.initializer.extend(added);
    dequantize.append(&mut graph.node);
    graph.node = dequantize;
    Ok(Int8Weights {
        onnx: prost::Message::encode_to_vec(&model),
        tensors,
        values,
        activation_pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_fp32_detector_becomes_the_int8_weights_form_that_ships() {
        // models/variants holds both forms, made by tools/variants.py from the same weights.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let fp32 = std::fs::read(root.join("models/variants/shapes-detector-fp32.onnx"))
            .expect("fp32 variant");
        let ours = int8_weights(&fp32, "fp32").expect("converts");
        let meta = crate::onnx_meta::OnnxMeta::parse(&ours.onnx).expect("valid ONNX");
        assert_eq!(
            meta.quant_form(),
            crate::onnx_meta::QuantForm::WeightOnlyInt8
        );
        let shipped = std::fs::read(root.join("models/variants/shapes-detector-int8-weights.onnx"))
            .expect("int8-weights variant");
        let theirs = crate::onnx_meta::OnnxMeta::parse(&shipped).expect("valid ONNX");
        assert_eq!(
            meta.ops.get("DequantizeLinear"),
            theirs.ops.get("DequantizeLinear")
        );
        assert_eq!(meta.parameters, theirs.parameters);
        // Within a few hundred bytes of the Python tool's output (names and node order differ).
        let (a, b) = (ours.onnx.len() as i64, shipped.len() as i64);
        assert!((a - b).abs() < b / 20, "{a} vs {b}");
        assert!(
            ours.onnx.len() * 3 < fp32.len(),
            "{} of {}",
            ours.onnx.len(),
            fp32.len()
        );
    }

    #[test]
    fn opsets_before_13_and_garbage_are_refused() {
        let err = int8_weights(b"\x08\x07garbage", "x.onnx").unwrap_err();
        assert!(err.to_string().starts_with("x.onnx: "), "{err}");
        let model = ModelProto {
            opset_import: vec![tract_onnx::pb::OperatorSetIdProto {
                domain: String::new(),
                version: 11,
            }],
            ..Default::default()
        };
        let err = int8_weights(&prost::Message::encode_to_vec(&model), "old.onnx").unwrap_err();
        assert!(err.to_string().contains("opset 11"), "{err}");
    }
}
