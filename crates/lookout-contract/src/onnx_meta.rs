//! What an ONNX file declares, read without building the model.
//!
//! The build script must check a model (parseable protobuf, input shape, operators) without
//! pulling tract into the build-dependencies, which would compile it a second time. ONNX is a
//! protobuf: the messages below declare only the fields lookout reads, with their numbers from
//! `onnx.proto`, and prost skips the rest (weights included) while decoding.

use std::collections::BTreeMap;

/// The file is not an ONNX protobuf, or lacks what a model needs.
#[derive(Debug, thiserror::Error)]
pub enum OnnxMetaError {
    /// Protobuf decoding failed.
    #[error("not a valid ONNX protobuf: {0}")]
    Decode(String),
    /// The model has no graph.
    #[error("the ONNX model has no graph")]
    NoGraph,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(string, tag = "7")]
    domain: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(message, repeated, tag = "13")]
    external_data: Vec<StringStringEntryProto>,
    #[prost(int32, tag = "14")]
    data_location: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

/// One dimension of a declared tensor shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named symbolic size such as `batch`.
    Symbolic(String),
    /// Not declared.
    Unknown,
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Symbolic(s) => write!(f, "{s}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

/// A graph input or output as declared in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDecl {
    /// Tensor name.
    pub name: String,
    /// ONNX element type name (`float`, `uint8`, …).
    pub elem_type: &'static str,
    /// Declared shape.
    pub shape: Vec<Dim>,
}

impl TensorDecl {
    /// Shape as text, e.g. `[1, 3, 128, 128]`.
    pub fn shape_text(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(Dim::to_string).collect();
        format!("[{}]", dims.join(", "))
    }
}

/// How a model stores and computes its numbers, as far as its operators and weights show.
/// The serde names are the values of a manifest's `model.quantization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum QuantForm {
    /// Float weights, float operators.
    #[serde(rename = "fp32")]
    Fp32,
    /// Float16 weights.
    #[serde(rename = "fp16")]
    Fp16,
    /// Int8 weights behind `DequantizeLinear`, float compute (folded at load by tract).
    #[serde(rename = "int8-weights")]
    WeightOnlyInt8,
    /// `QuantizeLinear`/`DequantizeLinear` pairs around float operators (ORT's default QDQ).
    #[serde(rename = "int8-qdq")]
    Qdq,
    /// `QLinearConv`/`QLinearMatMul` integer operators.
    #[serde(rename = "int8-qoperator")]
    QOperator,
    /// `ConvInteger`/`MatMulInteger` with dynamic activation quantization.
    #[serde(rename = "int8-dynamic")]
    DynamicInteger,
}

impl QuantForm {
    /// The manifest's name of the form (`int8-weights`, …), used in tables too.
    pub fn key(self) -> &'static str {
        match self {
            QuantForm::Fp32 => "fp32",
            QuantForm::Fp16 => "fp16",
            QuantForm::WeightOnlyInt8 => "int8-weights",
            QuantForm::Qdq => "int8-qdq",
            QuantForm::QOperator => "int8-qoperator",
            QuantForm::DynamicInteger => "int8-dynamic",
        }
    }

    /// Short human name.
    pub fn describe(self) -> &'static str {
        match self {
            QuantForm::Fp32 => "fp32",
            QuantForm::Fp16 => "fp16 weights",
            QuantForm::WeightOnlyInt8 => "weight-only int8 (DequantizeLinear on initializers)",
            QuantForm::Qdq => "static QDQ int8 (QuantizeLinear/DequantizeLinear pairs)",
            QuantForm::QOperator => "QOperator int8 (QLinearConv/QLinearMatMul)",
            QuantForm::DynamicInteger => "dynamic int8 (ConvInteger/MatMulInteger)",
        }
    }

    /// What the form costs tract against fp32, as models/README.md measures it (instructions
    /// per frame on x86_64, both bundled models), and what to do instead; `None` for the forms
    /// that cost nothing.
    pub fn tract_cost(self) -> Option<&'static str> {
        match self {
            QuantForm::Fp32 | QuantForm::Fp16 | QuantForm::WeightOnlyInt8 => None,
            QuantForm::Qdq => Some(
                "tract computes QDQ activations in integer kernels: 1.53-1.57x the instructions \
                 of fp32 per frame (x86_64, models/README.md) for the same size; \
                 `lookout import FILE --int8-weights` drops the activation pairs and keeps the \
                 int8 weights: the same size at fp32 speed",
            ),
            QuantForm::QOperator => Some(
                "tract runs QLinearConv/QLinearMatMul at 3.36-3.78x the instructions of fp32 \
                 per frame (x86_64, models/README.md); `lookout import --int8-weights` on the \
                 fp32 original gives the same size at fp32 speed",
            ),
            QuantForm::DynamicInteger => Some(
                "tract quantizes activations on every frame (ConvInteger/MatMulInteger): not \
                 measured here, expect it slower than fp32; `lookout import --int8-weights` on \
                 the fp32 original gives int8 weights at fp32 speed",
            ),
        }
    }
}

/// Labels written one per line (a `labels.txt`, Paddle's `character` list): trimmed, blank lines
/// skipped.
pub fn label_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Summary of an ONNX file.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxMeta {
    /// ONNX IR version.
    pub ir_version: i64,
    /// Tool that wrote the file.
    pub producer: String,
    /// Opsets by domain (`""` is the standard `ai.onnx` domain).
    pub opsets: BTreeMap<String, i64>,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<TensorDecl>,
    /// Graph outputs.
    pub outputs: Vec<TensorDecl>,
    /// Operator counts keyed by `domain::op_type` (bare `op_type` for the standard domain).
    pub ops: BTreeMap<String, usize>,
    /// Number of weight values in initializers.
    pub parameters: u64,
    /// Number of initializers per element type.
    pub initializer_types: BTreeMap<&'static str, usize>,
    /// Whether any initializer lives in an external file (lookout embeds single files only).
    pub external_data: bool,
    /// The external data files the initializers name (`location`), each once, in the order
    /// they first appear; as written in the file, not yet checked.
    pub external_files: Vec<String>,
    /// For each graph output, the operator that produces it (`Softmax`, `Concat`, …); absent
    /// for an output no node produces (a graph input or initializer passed through).
    pub output_ops: BTreeMap<String, String>,
    /// The file's own metadata (`metadata_props`): exporters write what the graph does not say
    /// there, e.g. Ultralytics `names`, `imgsz`, `task`, `stride`, or a Paddle `character` list.
    pub metadata: BTreeMap<String, String>,
}

impl OnnxMeta {
    /// Decodes the parts of an ONNX file lookout checks.
    pub fn parse(bytes: &[u8]) -> Result<Self, OnnxMetaError> {
        let model = <ModelProto as prost::Message>::decode(bytes)
            .map_err(|e| OnnxMetaError::Decode(e.to_string()))?;
        let graph = model.graph.ok_or(OnnxMetaError::NoGraph)?;
        let initializer_names: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs = graph
            .input
            .iter()
            .filter(|i| !initializer_names.contains(i.name.as_str()))
            .map(tensor_decl)
            .collect();
        let outputs = graph.output.iter().map(tensor_decl).collect();
        let mut ops = BTreeMap::new();
        for node in &graph.node {
            let key = if is_standard_domain(&node.domain) {
                node.op_type.clone()
            } else {
                format!("{}::{}", node.domain, node.op_type)
            };
            *ops.entry(key).or_insert(0) += 1;
        }
        let mut parameters = 0u64;
        let mut initializer_types = BTreeMap::new();
        for t in &graph.initializer {
            // Sizes from the file: a negative one counts nothing, and a product past u64 is
            // saturated rather than an overflow (a panic in the build script).
            let count = t.dims.iter().fold(1u64, |n, &d| {
                n.saturating_mul(u64::try_from(d).unwrap_or(0))
            });
            parameters = parameters.saturating_add(count);
            *initializer_types
                .entry(elem_type_name(t.data_type))
                .or_insert(0) += 1;
        }
        let mut external_files: Vec<String> = Vec::new();
        for t in graph.initializer.iter().filter(|t| t.data_location == 1) {
            let location = t
                .external_data
                .iter()
                .find(|e| e.key == "location")
                .map(|e| e.value.clone())
                .unwrap_or_default();
            if !external_files.contains(&location) {
                external_files.push(location);
            }
        }
        let output_ops = graph
            .output
            .iter()
            .filter_map(|o| {
                let node = graph
                    .node
                    .iter()
                    .rev()
                    .find(|n| n.output.contains(&o.name))?;
                Some((o.name.clone(), node.op_type.clone()))
            })
            .collect();
        Ok(OnnxMeta {
            ir_version: model.ir_version,
            producer: format!("{} {}", model.producer_name, model.producer_version)
                .trim()
                .to_owned(),
            opsets: model
                .opset_import
                .iter()
                .map(|o| (o.domain.clone(), o.version))
                .collect(),
            inputs,
            outputs,
            ops,
            parameters,
            initializer_types,
            external_data: !external_files.is_empty(),
            external_files,
            output_ops,
            metadata: model
                .metadata_props
                .into_iter()
                .map(|p| (p.key, p.value))
                .collect(),
        })
    }

    /// The class labels the file's metadata carries, in class order, and the key they came
    /// from: Ultralytics `names` (a Python dict literal, `{0: 'person', 1: 'bicycle'}`), or a
    /// `character`/`labels`/`classes` list (Paddle writes one label per line). `None` when
    /// there is none, or it cannot be read.
    pub fn metadata_labels(&self) -> Option<(Vec<String>, &'static str)> {
        if let Some(names) = self.metadata.get("names") {
            return python_dict_labels(names).map(|l| (l, "names"));
        }
        for key in ["character", "labels", "classes"] {
            if let Some(text) = self.metadata.get(key) {
                let labels = label_lines(text);
                if !labels.is_empty() {
                    return Some((labels, key));
                }
            }
        }
        None
    }

    /// Operators outside the standard `ai.onnx` domain (e.g. `com.microsoft::QLinearAdd`), which
    /// tract does not run.
    pub fn foreign_ops(&self) -> Vec<&str> {
        self.ops
            .keys()
            .filter(|k| k.contains("::"))
            .map(String::as_str)
            .collect()
    }

    /// The quantization form the operators and weights show.
    pub fn quant_form(&self) -> QuantForm {
        let has = |op: &str| self.ops.contains_key(op);
        let int8_weights = self.initializer_types.contains_key("int8")
            || self.initializer_types.contains_key("uint8");
        if has("QLinearConv") || has("QLinearMatMul") {
            QuantForm::QOperator
        } else if has("ConvInteger") || has("MatMulInteger") {
            QuantForm::DynamicInteger
        } else if has("QuantizeLinear") && has("DequantizeLinear") {
            QuantForm::Qdq
        } else if has("DequantizeLinear") && int8_weights {
            QuantForm::WeightOnlyInt8
        } else if self.initializer_types.contains_key("float16") {
            QuantForm::Fp16
        } else {
            QuantForm::Fp32
        }
    }
}

/// The values of a Python dict literal with integer keys 0..n, in key order: how Ultralytics
/// writes `names` (`{0: 'person', 1: "it's"}`). `None` unless every key 0..n is there once.
fn python_dict_labels(text: &str) -> Option<Vec<String>> {
    let body = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut labels: BTreeMap<usize, String> = BTreeMap::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once(':')?;
        let key: usize = key.trim().parse().ok()?;
        let after = after.trim_start();
        let quote = after.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let mut value = String::new();
        let mut chars = after[1..].char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => value.push(chars.next()?.1),
                c if c == quote => break i + 2,
                c => value.push(c),
            }
        };
        if labels.insert(key, value).is_some() {
            return None;
        }
        rest = after[end..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    let n = labels.len();
    (labels.keys().copied().eq(0..n)).then(|| labels.into_values().collect())
}

fn is_standard_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

fn tensor_decl(v: &ValueInfoProto) -> TensorDecl {
    let tensor = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    let shape = tensor
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match (&d.dim_value, &d.dim_param) {
                    (Some(v), _) => Dim::Fixed(*v),
                    (None, Some(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
                    _ => Dim::Unknown,
                })
                .collect()
        })
        .unwrap_or_default();
    TensorDecl {
        name: v.name.clone(),
        elem_type: elem_type_name(tensor.map(|t| t.elem_type).unwrap_or(0)),
        shape,
    }
}

/// Name of an ONNX `TensorProto.DataType` value.
pub fn elem_type_name(code: i32) -> &'static str {
    match code {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        16 => "bfloat16",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn ultralytics_names_are_read_in_class_order() {
        assert_eq!(
            python_dict_labels("{0: 'person', 1: \"it's\", 2: 'traffic light'}"),
            Some(vec!["person".into(), "it's".into(), "traffic light".into()])
        );
        assert_eq!(
            python_dict_labels("{1: 'b', 0: 'a'}"),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(python_dict_labels("{0: 'a', 2: 'c'}"), None, "a gap");
        assert_eq!(python_dict_labels("{0: 'a', 0: 'b'}"), None, "a key twice");
        assert_eq!(python_dict_labels("['a', 'b']"), None, "not a dict");
        assert_eq!(python_dict_labels("{0: 'unterminated}"), None);
    }

    fn value_info(name: &str, elem_type: i32, dims: &[Option<i64>]) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|d| Dimension {
                                dim_value: *d,
                                dim_param: d.is_none().then(|| "batch".to_owned()),
                            })
                            .collect(),
                    }),
                }),
            }),
        }
    }

    fn model(ops: &[(&str, &str)], initializer_type: i32) -> Vec<u8> {
        ModelProto {
            ir_version: 8,
            producer_name: "test".into(),
            producer_version: String::new(),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            metadata_props: vec![],
            graph: Some(GraphProto {
                node: ops
                    .iter()
                    .enumerate()
                    .map(|(i, (domain, op))| NodeProto {
                        // The last node produces the graph's output.
                        output: if i + 1 == ops.len() {
                            vec!["y".into()]
                        } else {
                            vec![format!("t{i}")]
                        },
                        op_type: (*op).into(),
                        domain: (*domain).into(),
                    })
                    .collect(),
                name: "g".into(),
                initializer: vec![TensorProto {
                    dims: vec![8, 3, 3, 3],
                    data_type: initializer_type,
                    name: "w".into(),
                    external_data: vec![],
                    data_location: 0,
                }],
                input: vec![
                    value_info("x", 1, &[None, Some(3), Some(64), Some(64)]),
                    value_info("w", 1, &[]),
                ],
                output: vec![value_info("y", 1, &[Some(1), Some(10)])],
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn reads_inputs_outputs_ops_and_parameters() {
        let meta = OnnxMeta::parse(&model(&[("", "Conv"), ("", "Relu"), ("", "Conv")], 1))
            .expect("parses");
        assert_eq!(meta.inputs.len(), 1, "initializers are not inputs");
        assert_eq!(meta.inputs[0].shape_text(), "[batch, 3, 64, 64]");
        assert_eq!(meta.inputs[0].elem_type, "float");
        assert_eq!(meta.outputs[0].shape, vec![Dim::Fixed(1), Dim::Fixed(10)]);
        assert_eq!(meta.ops.get("Conv"), Some(&2));
        assert_eq!(meta.parameters, 8 * 3 * 3 * 3);
        assert_eq!(meta.opsets.get(""), Some(&13));
        assert_eq!(meta.quant_form(), QuantForm::Fp32);
        assert!(meta.foreign_ops().is_empty());
        assert_eq!(meta.output_ops.get("y").map(String::as_str), Some("Conv"));
        assert!(!meta.external_data && meta.external_files.is_empty());
    }

    #[test]
    fn recognises_quantization_forms_and_foreign_ops() {
        let form = |ops: &[(&str, &str)], t| {
            OnnxMeta::parse(&model(ops, t))
                .expect("parses")
                .quant_form()
        };
        assert_eq!(form(&[("", "QLinearConv")], 3), QuantForm::QOperator);
        assert_eq!(form(&[("", "ConvInteger")], 2), QuantForm::DynamicInteger);
        assert_eq!(
            form(&[("", "QuantizeLinear"), ("", "DequantizeLinear")], 3),
            QuantForm::Qdq
        );
        assert_eq!(
            form(&[("", "DequantizeLinear"), ("", "Conv")], 3),
            QuantForm::WeightOnlyInt8
        );
        assert_eq!(form(&[("", "Conv")], 10), QuantForm::Fp16);
        let meta = OnnxMeta::parse(&model(&[("com.microsoft", "QLinearAdd")], 3)).expect("parses");
        assert_eq!(meta.foreign_ops(), vec!["com.microsoft::QLinearAdd"]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            OnnxMeta::parse(&[0xff; 32]),
            Err(OnnxMetaError::Decode(_))
        ));
        let no_graph = ModelProto {
            ir_version: 8,
            producer_name: String::new(),
            producer_version: String::new(),
            graph: None,
            opset_import: vec![],
            metadata_props: vec![],
        }
        .encode_to_vec();
        assert!(matches!(
            OnnxMeta::parse(&no_graph),
            Err(OnnxMetaError::NoGraph)
        ));
    }
}
