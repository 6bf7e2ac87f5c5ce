//! The inference engine: one tract model, loaded once, run frame after frame.
//!
//! Loading follows tract's stages: parse the ONNX protobuf, fix the input to the manifest's
//! shape and type (so every shape in the graph becomes concrete), optimize, and build the run
//! plan. The plan and its state are kept; per frame the caller writes pixels into the input
//! tensor in place and calls [`Engine::run`].
//!
//! The input tensor is shared with tract through an `Arc`: tract drops its reference when a run
//! ends, which hands the buffer back for the next frame without copying or allocating it.

use crate::manifest::{InputDtype, InputSpec};
use crate::onnx_meta::{Dim, OnnxMeta};
use std::sync::Arc;
use tract_onnx::prelude::*;

/// Errors loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// tract could not parse, type or optimize the model.
    #[error("{origin}: tract cannot load the model: {message}")]
    Load {
        /// Where the model came from.
        origin: String,
        /// tract's error chain.
        message: String,
    },
    /// A run failed inside tract.
    #[error("{origin}: inference failed: {message}")]
    Run {
        /// The model.
        origin: String,
        /// tract's error chain.
        message: String,
    },
    /// The model returned another number of outputs than its graph declares.
    #[error("{origin}: inference failed: the model returned {returned} outputs, its graph declares {declared}")]
    OutputCount {
        /// The model.
        origin: String,
        /// Outputs returned.
        returned: usize,
        /// Outputs declared.
        declared: usize,
    },
    /// The input tensor cannot be written in place.
    #[error("{origin}: input buffer: {message}")]
    InputBuffer {
        /// The model.
        origin: String,
        /// What tract said, or that the tensor is not one contiguous buffer.
        message: String,
    },
    /// `--threads 0`.
    #[error("--threads must be at least 1")]
    NoThreads,
    /// More than one thread asked of a build that runs tract on one.
    #[error(
        "--threads {0}: this build runs tract on one thread; build with \
         `--features tract-threads`, or use --workers for whole frames in parallel"
    )]
    ThreadsNotBuilt(usize),
    /// An output cannot be read as f32.
    #[error("{origin}: output `{name}`: cannot be read as f32: {message}")]
    Output {
        /// The model.
        origin: String,
        /// Output name.
        name: String,
        /// tract's message.
        message: String,
    },
}

/// Sets how many threads tract splits each matrix product over, for every model loaded in this
/// process. One thread needs nothing; more need the `tract-threads` build feature.
pub fn set_threads(threads: usize) -> Result<(), EngineError> {
    match threads {
        0 => Err(EngineError::NoThreads),
        1 => Ok(()),
        #[cfg(feature = "tract-threads")]
        n => {
            use tract_core::prelude::multithread::{set_default_executor, Executor};
            set_default_executor(Executor::multithread(n));
            Ok(())
        }
        #[cfg(not(feature = "tract-threads"))]
        n => Err(EngineError::ThreadsNotBuilt(n)),
    }
}

/// The input tensor, copied first if tract still holds it (counted in `reallocations`).
fn exclusive<'a>(input: &'a mut Arc<Tensor>, reallocations: &mut u64) -> &'a mut Tensor {
    if Arc::get_mut(input).is_none() {
        *reallocations += 1;
        *input = Arc::new((**input).clone());
    }
    // The branch above guarantees a single owner.
    Arc::make_mut(input)
}

/// Names and concrete shapes of a model's outputs, in graph order.
pub type OutputShapes = Vec<(String, Vec<usize>)>;

/// The input tensor's storage, typed by the manifest's `input.dtype`.
#[derive(Debug)]
pub enum InputBuffer<'a> {
    /// Normalised floats.
    F32(&'a mut [f32]),
    /// Raw pixels.
    U8(&'a mut [u8]),
}

/// An output tensor as f32, with its name.
#[derive(Debug)]
pub struct Output {
    /// Graph output name.
    pub name: String,
    /// The values; cast from the model's type when it is not f32.
    pub tensor: Tensor,
}

/// A loaded, optimized model ready to run.
pub struct Engine {
    /// The model, for errors.
    origin: String,
    state: TypedSimpleState,
    input: Arc<Tensor>,
    input_dtype: InputDtype,
    output_shapes: OutputShapes,
    input_reallocations: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("input_shape", &self.input.shape())
            .field("output_shapes", &self.output_shapes)
            .finish()
    }
}

impl Engine {
    /// Loads ONNX bytes with the input fixed to `spec`. `origin` names the model in errors.
    pub fn load(onnx: &[u8], spec: &InputSpec, origin: &str) -> Result<Self, EngineError> {
        let datum = match spec.dtype {
            InputDtype::F32 => f32::datum_type(),
            InputDtype::U8 => u8::datum_type(),
        };
        let model = decluttered(onnx, datum, &spec.shape, origin)?;
        let (model, output_shapes) = optimize(onnx, model, origin)?;
        let load_err = |e| load_error(origin, e);
        let plan = model.into_runnable().map_err(load_err)?;
        let state = TypedSimpleState::new(&plan).map_err(load_err)?;
        let input = Tensor::zero_dt(datum, &spec.shape).map_err(load_err)?;
        Ok(Engine {
            origin: origin.to_owned(),
            state,
            input: Arc::new(input),
            input_dtype: spec.dtype,
            output_shapes,
            input_reallocations: 0,
        })
    }

    /// Where the model came from, as errors name it.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Names and concrete shapes of the outputs, in graph order.
    pub fn output_shapes(&self) -> &[(String, Vec<usize>)] {
        &self.output_shapes
    }

    /// The input's element type.
    pub fn input_dtype(&self) -> InputDtype {
        self.input_dtype
    }

    /// The input buffer, to be filled in place before [`Engine::run`].
    pub fn input_mut(&mut self) -> Result<InputBuffer<'_>, EngineError> {
        let dtype = self.input_dtype;
        let tensor = exclusive(&mut self.input, &mut self.input_reallocations);
        // Borrowed, not cloned: this runs every frame, and the errors almost never.
        let origin = &self.origin;
        let not_plain = || EngineError::InputBuffer {
            origin: origin.clone(),
            message: "the tensor is not one contiguous buffer".into(),
        };
        let tract_err = |e: anyhow::Error| EngineError::InputBuffer {
            origin: origin.clone(),
            message: format!("{e:#}"),
        };
        Ok(match dtype {
            InputDtype::F32 => InputBuffer::F32(
                tensor
                    .to_plain_array_view_mut::<f32>()
                    .map_err(tract_err)?
                    .into_slice()
                    .ok_or_else(not_plain)?,
            ),
            InputDtype::U8 => InputBuffer::U8(
                tensor
                    .to_plain_array_view_mut::<u8>()
                    .map_err(tract_err)?
                    .into_slice()
                    .ok_or_else(not_plain)?,
            ),
        })
    }

    /// How many times the input buffer had to be copied because tract still held it; stays 0
    /// in normal operation.
    pub fn input_reallocations(&self) -> u64 {
        self.input_reallocations
    }

    /// Address of the input buffer, for tests that check it is reused.
    pub fn input_address(&self) -> usize {
        self.input.as_bytes().as_ptr() as usize
    }

    /// Runs the model on the current input; returns the outputs as f32.
    pub fn run(&mut self) -> Result<Vec<Output>, EngineError> {
        let outputs = self
            .state
            .run(tvec![TValue::from_const(self.input.clone())])
            .map_err(|e| EngineError::Run {
                origin: self.origin.clone(),
                message: format!("{e:#}"),
            })?;
        if outputs.len() != self.output_shapes.len() {
            return Err(EngineError::OutputCount {
                origin: self.origin.clone(),
                returned: outputs.len(),
                declared: self.output_shapes.len(),
            });
        }
        outputs
            .into_iter()
            .zip(self.output_shapes.iter().map(|(name, _)| name))
            .map(|(value, name)| {
                let tensor = value.into_tensor();
                let tensor = if tensor.datum_type() == f32::datum_type() {
                    tensor
                } else {
                    tensor
                        .cast_to::<f32>()
                        .map_err(|e| EngineError::Output {
                            origin: self.origin.clone(),
                            name: name.clone(),
                            message: format!("{e:#}"),
                        })?
                        .into_owned()
                };
                Ok(Output {
                    name: name.clone(),
                    tensor,
                })
            })
            .collect()
    }
}

/// Whether tract accepts a model on its own: the single input is fixed to its declared shape
/// (symbolic sizes such as `batch` set to 1) and type, and the model optimized. Returns the
/// output names and shapes, the operators of the optimized graph and the multiply-accumulates
/// of one inference, with how many of them are in grouped (depthwise) convolutions.
pub fn probe(onnx: &[u8], origin: &str) -> Result<Probe, EngineError> {
    let meta = OnnxMeta::parse(onnx).map_err(|e| load_error(origin, e.into()))?;
    let [input] = meta.inputs.as_slice() else {
        return Err(load_error(
            origin,
            anyhow::anyhow!(
                "lookout runs single-input models; this one has {}",
                meta.inputs.len()
            ),
        ));
    };
    let shape: Vec<usize> = input
        .shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) => usize::try_from(*v).unwrap_or(1),
            Dim::Symbolic(_) | Dim::Unknown => 1,
        })
        .collect();
    let datum = match input.elem_type {
        "float" => f32::datum_type(),
        "uint8" => u8::datum_type(),
        "int8" => i8::datum_type(),
        other => {
            return Err(load_error(
                origin,
                anyhow::anyhow!(
                    "input {:?} has element type {other}, not an image type",
                    input.name
                ),
            ))
        }
    };
    let model = decluttered(onnx, datum, &shape, origin)?;
    let compute = count_compute(&model).map_err(|e| load_error(origin, e))?;
    let (model, outputs) = optimize(onnx, model, origin)?;
    let mut ops = std::collections::BTreeMap::new();
    for node in model.nodes() {
        *ops.entry(node.op().name().into_owned()).or_insert(0) += 1;
    }
    Ok(Probe {
        outputs,
        ops,
        macs: compute.macs,
        grouped_macs: compute.grouped_macs,
        parameters: compute.parameters,
    })
}

/// What tract made of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Output names and shapes.
    pub outputs: OutputShapes,
    /// Operators of the optimized graph tract runs, with counts: shows, for instance, whether
    /// a quantized model's dequantization was folded away or runs on every frame.
    pub ops: std::collections::BTreeMap<String, usize>,
    /// Multiply-accumulates of the convolutions and matrix products in one inference at that
    /// input shape: the compute a board must supply per frame.
    pub macs: u64,
    /// The part of `macs` in convolutions of more than one group, depthwise ones included.
    /// Their speed relative to dense convolutions differs much between frameworks and CPUs
    /// (tract on x86 against ncnn on ARM), so it decides which reference network a board
    /// estimate is scaled by ([`crate::lab::estimate::Reference::for_model`]).
    pub grouped_macs: u64,
    /// Weights and biases of those convolutions and matrix products, as tract holds them
    /// after folding constants: counted alike whether the file stores them as floats, as int8
    /// behind a dequantization, or computes them in the graph. A bias of zeros is not counted:
    /// tract removes an addition of zeros.
    pub parameters: u64,
}

fn load_error(origin: &str, e: anyhow::Error) -> EngineError {
    EngineError::Load {
        origin: origin.to_owned(),
        message: format!("{e:#}"),
    }
}

/// Parses and fixes the input, then declutters: the graph in tract's own operators, every
/// shape concrete, before the operators are replaced by kernels.
fn decluttered(
    onnx: &[u8],
    datum: DatumType,
    shape: &[usize],
    origin: &str,
) -> Result<TypedModel, EngineError> {
    let load_err = |e| load_error(origin, e);
    // value_info are hints about intermediate tensors, which tract infers itself. Exporters
    // write them with symbolic sizes (Paddle's `DynamicDimension.0` batch) that contradict the
    // input lookout fixes; onnxruntime tolerates that, and so must lookout.
    tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_read(&mut std::io::Cursor::new(onnx))
        .map_err(load_err)?
        .with_input_fact(0, InferenceFact::dt_shape(datum, shape))
        .map_err(load_err)?
        .into_typed()
        .map_err(load_err)?
        .into_decluttered()
        .map_err(load_err)
}

/// What [`count_compute`] counts.
#[derive(Debug, Default)]
struct Compute {
    macs: u64,
    grouped_macs: u64,
    parameters: u64,
}

/// Multiply-accumulates of one inference: the convolutions' and matrix products' own counts on
/// the decluttered graph. tract also prices pooling, scaling and activations in multiply-adds;
/// those are left out so the figure means what "MACs" means for published models.
fn count_compute(model: &TypedModel) -> TractResult<Compute> {
    use tract_core::ops::{binary::TypedBinOp, cnn::Conv, einsum::EinSum};
    let is_product = |id: usize| {
        let node = model.node(id);
        node.op_is::<Conv>() || node.op_is::<EinSum>()
    };
    let (mut macs, mut grouped_macs, mut parameters) = (0u64, 0u64, 0u64);
    let mut count_constant = |fact: &TypedFact| {
        if let Some(konst) = &fact.konst {
            parameters = parameters.saturating_add(konst.len() as u64);
        }
    };
    for node in model.nodes() {
        let inputs = model.node_input_facts(node.id)?;
        if is_product(node.id) {
            let grouped = node.op_as::<Conv>().is_some_and(|conv| conv.group > 1);
            for (cost, count) in node.op.cost(&inputs)? {
                if let tract_core::ops::Cost::FMA(_) = cost {
                    let count = u64::try_from(count.to_i64()?).unwrap_or(0);
                    macs = macs.saturating_add(count);
                    if grouped {
                        grouped_macs = grouped_macs.saturating_add(count);
                    }
                }
            }
            // Operands and bias only: a quantized product's further inputs are its zero
            // points and scales, which are not weights.
            let operands = if node.op_is::<Conv>() { 1..3 } else { 0..2 };
            for fact in inputs.iter().skip(operands.start).take(operands.len()) {
                count_constant(fact);
            }
        } else if node
            .op_as::<TypedBinOp>()
            .is_some_and(|add| add.0.name() == "Add")
            && node.inputs.iter().any(|i| is_product(i.node))
        {
            // tract moves some biases out of the product into an addition after it.
            for fact in &inputs {
                count_constant(fact);
            }
        }
    }
    Ok(Compute {
        macs,
        grouped_macs,
        parameters,
    })
}

/// Optimizes a decluttered model for running; returns it and its output names and shapes.
fn optimize(
    onnx: &[u8],
    mut model: TypedModel,
    origin: &str,
) -> Result<(TypedModel, OutputShapes), EngineError> {
    let load_err = |e| load_error(origin, e);
    // Output names come from the protobuf: tract renames nodes while optimizing.
    let output_names: Vec<String> = OnnxMeta::parse(onnx)
        .map_err(|e| load_err(e.into()))?
        .outputs
        .into_iter()
        .map(|o| o.name)
        .collect();
    model.optimize().map_err(load_err)?;
    let mut output_shapes = Vec::new();
    for (ix, outlet) in model.output_outlets().map_err(load_err)?.iter().enumerate() {
        let fact = model.outlet_fact(*outlet).map_err(load_err)?;
        let concrete = fact.shape.as_concrete().ok_or_else(|| {
            load_err(anyhow::anyhow!(
                "output {ix} has a symbolic shape {:?} with the input fixed",
                fact.shape
            ))
        })?;
        let name = output_names
            .get(ix)
            .cloned()
            .unwrap_or_else(|| format!("output{ix}"));
        output_shapes.push((name, concrete.to_vec()));
    }
    Ok((model, output_shapes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grouped share against a count from the ONNX graph alone: MobileNetV2's 17 depthwise
    /// 3x3 convolutions (output elements × 9, summed in Python over the Conv nodes with
    /// `group` > 1), and none in the dense networks.
    #[test]
    fn the_probe_counts_the_multiply_accumulates_of_grouped_convolutions() {
        let mobilenet = probe(
            include_bytes!("../../models/reference/mobilenetv2-224.onnx"),
            "mobilenetv2",
        )
        .expect("probe");
        assert_eq!(mobilenet.grouped_macs, 20_716_416);
        assert_eq!(mobilenet.macs, 300_774_272);
        let resnet = probe(
            include_bytes!("../../models/reference/resnet18-224.onnx"),
            "resnet18",
        )
        .expect("probe");
        assert_eq!((resnet.macs, resnet.grouped_macs), (1_814_073_344, 0));
        let detector = std::fs::read("models/shapes-detector.onnx").expect("detector");
        let detector = probe(&detector, "shapes-detector").expect("probe");
        assert_eq!((detector.macs, detector.grouped_macs), (26_038_272, 0));
    }
}
