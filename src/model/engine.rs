//! The inference engine: one tract model, loaded once, run frame after frame.
//!
//! Loading follows tract's stages: parse the ONNX protobuf, fix the input to the manifest's
//! shape and type (so every shape in the graph becomes concrete), optimize, and build the run
//! plan. The plan and its state are kept; per frame the caller writes pixels into the input
//! tensor in place and calls [`Engine::run`].
//!
//! The input tensor is shared with tract through an `Arc`: tract drops its reference when a run
//! ends, which hands the buffer back for the next frame without copying or allocating it.

use crate::manifest::{InputDtype, InputSpec, Precision};
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
    /// The thread pool could not be started (the system refused a thread).
    #[error("cannot start {threads} threads for tract: {message}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// The system's reason.
        message: String,
    },
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

/// Sets how many threads tract splits each operator over, for every model run in this process
/// from now on (outside [`with_threads`]). tract splits matrix products, weight packing,
/// element-wise and reduction operators; the rest of a plan runs on the calling thread.
pub fn set_threads(threads: usize) -> Result<(), EngineError> {
    let executor = executor(threads)?;
    tract_linalg::multithread::set_default_executor(executor);
    Ok(())
}

/// Runs `f` with tract on `threads` threads on this thread only, whatever [`set_threads`] set:
/// what an operator profile at several thread counts needs in one process.
pub fn with_threads<R>(threads: usize, f: impl FnOnce() -> R) -> Result<R, EngineError> {
    let executor = executor(threads)?;
    Ok(tract_linalg::multithread::multithread_tract_scope(
        executor, f,
    ))
}

/// tract's executor for a thread count: the calling thread alone for one, a pool for more.
fn executor(threads: usize) -> Result<tract_linalg::multithread::Executor, EngineError> {
    use tract_linalg::multithread::Executor;
    match threads {
        0 => Err(EngineError::NoThreads),
        1 => Ok(Executor::SingleThread),
        n => {
            // Executor::multithread panics when the pool cannot start; build it here instead.
            let pool = rayon::ThreadPoolBuilder::new()
                .thread_name(|i| format!("tract-{i}"))
                .num_threads(n)
                .build()
                .map_err(|e| EngineError::ThreadPool {
                    threads: n,
                    message: e.to_string(),
                })?;
            Ok(Executor::MultiThread(Arc::new(pool)))
        }
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
        Self::load_computing(onnx, spec, origin, Precision::F32)
    }

    /// [`Engine::load`], computing in `compute`'s float type. The input and outputs stay as
    /// they were (the pre-processor writes f32, the decoders read f32): with f16, the graph
    /// casts its input to f16 and [`Engine::run`] its outputs back to f32.
    pub fn load_computing(
        onnx: &[u8],
        spec: &InputSpec,
        origin: &str,
        compute: Precision,
    ) -> Result<Self, EngineError> {
        let datum = match spec.dtype {
            InputDtype::F32 => f32::datum_type(),
            InputDtype::U8 => u8::datum_type(),
        };
        let mut model = decluttered(onnx, datum, &spec.shape, origin)?;
        if compute == Precision::F16 {
            model = in_half_precision(&model).map_err(|e| load_error(origin, e))?;
        }
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

    /// What another engine on the same optimized model is made from ([`Blueprint::engine`]):
    /// the weights are shared.
    pub fn blueprint(&self) -> Blueprint {
        Blueprint {
            plan: Arc::clone(self.state.plan()),
            origin: self.origin.clone(),
            input_dtype: self.input_dtype,
            input_datum: self.input.datum_type(),
            input_shape: self.input.shape().to_vec(),
            output_shapes: self.output_shapes.clone(),
        }
    }

    /// Where the model came from, as errors name it.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Names and concrete shapes of the outputs, in graph order.
    pub fn output_shapes(&self) -> &[(String, Vec<usize>)] {
        &self.output_shapes
    }

    /// The float type the plan computes in: f16 when any of its operators makes f16 values
    /// (a manifest's `compute = "f16"` that held), else f32.
    pub fn computes_in(&self) -> Precision {
        let plan = self.state.plan().model();
        if plan.nodes().iter().any(|node| {
            node.outputs
                .iter()
                .any(|output| output.fact.datum_type == f16::datum_type())
        }) {
            Precision::F16
        } else {
            Precision::F32
        }
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
                let tensor = as_f32(value.into_tensor()).map_err(|e| EngineError::Output {
                    origin: self.origin.clone(),
                    name: name.clone(),
                    message: format!("{e:#}"),
                })?;
                Ok(Output {
                    name: name.clone(),
                    tensor,
                })
            })
            .collect()
    }
}

/// An output as f32: an f16 one (a model computed in half precision) converted in vector code.
fn as_f32(tensor: Tensor) -> TractResult<Tensor> {
    let datum = tensor.datum_type();
    if datum == f32::datum_type() {
        Ok(tensor)
    } else if datum == f16::datum_type() {
        super::half_cast::cast(&tensor, f32::datum_type())
    } else {
        Ok(tensor.cast_to::<f32>()?.into_owned())
    }
}

impl Engine {
    /// Runs the model `runs` times on the current input and times every operator of tract's
    /// plan: which operators take a frame's time, and (compared across thread counts) which
    /// ones tract does not split over threads. The sum is close to, not equal to, a plain run:
    /// the clock is read around each operator.
    pub fn profile(&mut self, runs: usize) -> Result<OperatorProfile, EngineError> {
        let mut by_op: std::collections::BTreeMap<String, OperatorTime> = Default::default();
        let mut node_ops: Vec<Option<String>> = Vec::new();
        for _ in 0..runs {
            let mut clock = |ctx: &tract_core::plan::EvalContext<'_>,
                             state: Option<&mut (dyn tract_core::ops::OpState + 'static)>,
                             node: &TypedNode,
                             inputs: TVec<TValue>|
             -> TractResult<TVec<TValue>> {
                let started = std::time::Instant::now();
                let outputs = tract_core::plan::eval(ctx, state, node, inputs)?;
                let elapsed = started.elapsed();
                if node_ops.len() <= node.id {
                    node_ops.resize(node.id + 1, None);
                }
                let op = node_ops[node.id].get_or_insert_with(|| node.op().name().into_owned());
                let entry = by_op.entry(op.clone()).or_default();
                entry.seconds += elapsed.as_secs_f64();
                entry.evaluations += 1;
                Ok(outputs)
            };
            self.state
                .run_plan_with_eval(tvec![TValue::from_const(self.input.clone())], &mut clock)
                .map_err(|e| EngineError::Run {
                    origin: self.origin.clone(),
                    message: format!("{e:#}"),
                })?;
        }
        let runs = runs.max(1) as f64;
        let mut operators: Vec<(String, OperatorTime)> = by_op
            .into_iter()
            .map(|(op, t)| {
                let per_run = OperatorTime {
                    seconds: t.seconds / runs,
                    evaluations: (t.evaluations as f64 / runs).round() as u64,
                };
                (op, per_run)
            })
            .collect();
        operators.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds));
        Ok(OperatorProfile { operators })
    }
}

/// Time one kind of operator takes in one run of a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct OperatorTime {
    /// Seconds per run, summed over the nodes of that kind.
    pub seconds: f64,
    /// Nodes of that kind evaluated per run.
    pub evaluations: u64,
}

/// Where one run of a model spends its time, by kind of operator in tract's optimized plan
/// (`OptConv`/`Optimized` matrix products, element-wise ops, copies), slowest first.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct OperatorProfile {
    /// Operator kind and its time, slowest first.
    pub operators: Vec<(String, OperatorTime)>,
}

impl OperatorProfile {
    /// Seconds per run over every operator.
    pub fn total_seconds(&self) -> f64 {
        self.operators.iter().map(|(_, t)| t.seconds).sum()
    }

    /// The time of one kind of operator, zero when the plan has none.
    pub fn seconds_of(&self, op: &str) -> f64 {
        self.operators
            .iter()
            .find(|(name, _)| name == op)
            .map_or(0.0, |(_, t)| t.seconds)
    }
}

/// An optimized model without a run state: makes engines that share its weights, each with
/// its own intermediate tensors and input buffer, to run frames on several threads at once.
#[derive(Clone)]
pub struct Blueprint {
    plan: Arc<TypedRunnableModel>,
    origin: String,
    input_dtype: InputDtype,
    input_datum: DatumType,
    input_shape: Vec<usize>,
    output_shapes: OutputShapes,
}

impl std::fmt::Debug for Blueprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blueprint")
            .field("origin", &self.origin)
            .field("input_shape", &self.input_shape)
            .finish()
    }
}

impl Blueprint {
    /// A new engine on this model.
    pub fn engine(&self) -> Result<Engine, EngineError> {
        let load_err = |e| load_error(&self.origin, e);
        let state = TypedSimpleState::new(&self.plan).map_err(load_err)?;
        let input = Tensor::zero_dt(self.input_datum, &self.input_shape).map_err(load_err)?;
        Ok(Engine {
            origin: self.origin.clone(),
            state,
            input: Arc::new(input),
            input_dtype: self.input_dtype,
            output_shapes: self.output_shapes.clone(),
            input_reallocations: 0,
        })
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

/// The decluttered model computing in f16: tract's own translation (f32 constants, operators and
/// values to f16), with the input kept f32 and cast to f16 by the graph, so the engine's input
/// buffer and the pre-processors stay as they are.
///
/// Operators tract 0.23.9 has no f16 kernel for stay in f32, between casts, where the casts
/// cost less than the scalar f16 code (counted on the Cortex-A76 with scripts/insn-profile):
/// depthwise convolutions (MobileNetV2 at 224: 172 M instructions a frame in f16 against 22 M
/// in f32), nearest-neighbour upsampling (YOLOv8n at 320: 26 M against a plain copy) and
/// max-pooling, and hard-swish (MobileNetV3-Small at 224: 49 M instructions a frame in scalar
/// `half` arithmetic). The casts are vector code ([`super::half_cast`]).
fn in_half_precision(model: &TypedModel) -> TractResult<TypedModel> {
    use tract_core::floats::FloatPrecisionTranslator;
    use tract_core::internal::translator::Translate;
    use tract_core::ops::cast::cast;
    use tract_core::ops::cnn::{Conv, MaxPool};
    use tract_core::ops::element_wise::ElementWiseOp;
    use tract_core::ops::nn::resize::NearestUpsample;
    use tract_core::ops::nn::HardSwish;
    use tract_core::ops::source::TypedSource;
    let in_f16 = |node: &TypedNode| {
        !(node.op_is::<NearestUpsample>()
            || node.op_is::<MaxPool>()
            || node.op_as::<Conv>().is_some_and(|conv| conv.group > 1)
            || node
                .op_as::<ElementWiseOp>()
                .is_some_and(|op| op.0.is::<HardSwish>()))
    };
    let mut half =
        FloatPrecisionTranslator::with_filter(f32::datum_type(), f16::datum_type(), in_f16)
            .translate_model(model)?;
    for input in half.input_outlets()?.to_vec() {
        let fact = half.outlet_fact(input)?.clone();
        if fact.datum_type != f16::datum_type() {
            continue; // a u8 input is left alone by the translation
        }
        let consumers = half.outlet_successors(input).to_vec();
        let f32_fact = f32::datum_type().fact(fact.shape.clone());
        let node = half.node_mut(input.node);
        node.op = Box::new(TypedSource::new(f32_fact.clone()));
        node.outputs[input.slot].fact = f32_fact;
        let name = format!("{}.to-f16", half.node(input.node).name);
        let to_half = half.wire_node(name, cast(f16::datum_type()), &[input])?[0];
        for inlet in consumers {
            half.add_edge(to_half, inlet)?;
        }
    }
    half.into_decluttered()
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
    let model = softmax_on_last_axis(model).map_err(load_err)?;
    let model = super::half_cast::vectorize_casts(model).map_err(load_err)?;
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

/// Rewrites the softmaxes tract 0.23.9 computes element by element so that its vector kernel
/// computes them, after the optimizer.
///
/// - An f32 softmax over one axis that is not the last: tract runs it through strided views, on
///   one thread. In YOLOv8's box head (a softmax over 16 bins on axis 1 of [1, 16, 4, 8400])
///   that one node took 67 ms of a 563 ms frame here, at one thread or two. Its axis is moved to
///   the end and back after it: over the last axis the rows are contiguous and tract splits them
///   over threads with its vector kernel; the two moves are plain copies (0.3-0.6 ms each on
///   that tensor).
/// - An f16 softmax (a model computed in half precision): tract computes every exponential with
///   the scalar libm `exp` of the `half` crate, whatever the axis. On the Pi 5's Cortex-A76 that
///   head took 28 M of YOLOv8n's 385 M instructions a frame at 320×320 (scripts/insn-profile).
///   It is computed in f32 between two casts instead, as well as moved when its axis is not the
///   last: the casts are element-wise copies, and f32 is also the more accurate sum.
fn softmax_on_last_axis(mut model: TypedModel) -> TractResult<TypedModel> {
    use tract_core::ops::cast::cast;
    use tract_core::ops::change_axes::AxisOp;
    use tract_core::ops::nn::{Softmax, SoftmaxKind};
    let slow: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|node| {
            let Some(softmax) = node.op_as::<Softmax>() else {
                return false;
            };
            let Ok(fact) = model.outlet_fact(node.inputs[0]) else {
                return false;
            };
            let [axis] = softmax.axes.as_slice() else {
                return false;
            };
            softmax.kind == SoftmaxKind::Softmax
                && softmax.quant_output_dt.is_none()
                && (fact.datum_type == f16::datum_type()
                    || (fact.datum_type == f32::datum_type() && *axis + 1 < fact.rank()))
        })
        .map(|node| node.id)
        .collect();
    if slow.is_empty() {
        return Ok(model);
    }
    for id in slow {
        let node = model.node(id).clone();
        let Some(softmax) = node.op_as::<Softmax>() else {
            continue;
        };
        let input_fact = model.outlet_fact(node.inputs[0])?.clone();
        let (axis, last) = (softmax.axes[0], input_fact.rank() - 1);
        let half = input_fact.datum_type == f16::datum_type();
        // Each step before the softmax (a name suffix and an operator), with its inverse after.
        type Step = (&'static str, Box<dyn TypedOp>);
        let mut steps: Vec<(Step, Step)> = Vec::new();
        if half {
            steps.push((
                ("to-f32", Box::new(cast(f32::datum_type()))),
                ("to-f16", Box::new(cast(f16::datum_type()))),
            ));
        }
        if axis != last {
            steps.push((
                ("to-last-axis", Box::new(AxisOp::Move(axis, last))),
                ("from-last-axis", Box::new(AxisOp::Move(last, axis))),
            ));
        }
        let mut patch = TypedModelPatch::new("softmax-on-last-axis");
        let mut wire = tvec![patch.tap_model(&model, node.inputs[0])?];
        for ((suffix, op), _) in &steps {
            wire = patch.wire_node(format!("{}.{suffix}", node.name), op.clone(), &wire)?;
        }
        wire = patch.wire_node(
            &node.name,
            Softmax {
                axes: tvec![last],
                ..softmax.clone()
            },
            &wire,
        )?;
        for (_, (suffix, op)) in steps.iter().rev() {
            wire = patch.wire_node(format!("{}.{suffix}", node.name), op.clone(), &wire)?;
        }
        patch.shunt_outside(&model, id.into(), wire[0])?;
        patch.apply(&mut model)?;
    }
    model.into_compact()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model's first output on `input`, as f32; the output keeps the input's float type.
    fn first_output(model: TypedModel, input: &Tensor) -> tract_ndarray::ArrayD<f32> {
        let out = model
            .into_runnable()
            .expect("plan")
            .run(tvec![input.clone().into()])
            .expect("run");
        assert_eq!(out[0].datum_type(), input.datum_type());
        out[0]
            .cast_to::<f32>()
            .expect("f32")
            .to_plain_array_view::<f32>()
            .expect("f32")
            .to_owned()
    }

    /// YOLOv8's box head takes a softmax over axis 1 of [1, 16, 4, N]: moved to the last axis,
    /// it gives the outputs of tract's own plan, and no softmax over another axis is left.
    #[test]
    fn a_softmax_over_an_inner_axis_is_moved_to_the_last_one_with_the_same_outputs() {
        let onnx = std::fs::read("tests/fixtures/compat/yolov8n-det-mini/yolov8n-det-mini.onnx")
            .expect("fixture");
        let shape = [1, 3, 320, 320];
        let model = decluttered(&onnx, f32::datum_type(), &shape, "mini").expect("declutter");
        let mut plain = model.clone();
        plain.optimize().expect("optimize");
        let inner_softmaxes = |m: &TypedModel| {
            m.nodes()
                .iter()
                .filter(|n| {
                    n.op_as::<tract_core::ops::nn::Softmax>().is_some_and(|op| {
                        let rank = m.outlet_fact(n.inputs[0]).expect("fact").rank();
                        op.axes.iter().any(|&axis| axis + 1 < rank)
                    })
                })
                .count()
        };
        assert_eq!(inner_softmaxes(&plain), 1, "the head's softmax, on axis 1");
        let moved = softmax_on_last_axis(plain.clone()).expect("rewrite");
        assert_eq!(inner_softmaxes(&moved), 0);
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| ((i as u32).wrapping_mul(0x9E37_79B9) >> 8) as f32 / 16_777_216.0)
            .collect();
        let input = Tensor::from_shape(&shape, &values).expect("input");
        let (before, after) = (first_output(plain, &input), first_output(moved, &input));
        assert_eq!(before.shape(), after.shape());
        let worst = before
            .iter()
            .zip(after.iter())
            .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
            .fold(0.0f32, f32::max);
        // tract's vector softmax rounds its exponentials differently from the strided one.
        assert!(worst < 1e-5, "largest relative difference {worst}");
    }

    /// A model computed in f16: its softmaxes, over an inner axis or the last, are computed in
    /// f32 between casts, and give tract's own f16 results within f16's rounding.
    #[test]
    fn an_f16_softmax_is_computed_in_f32_with_the_same_outputs() {
        use tract_core::ops::nn::{Softmax, SoftmaxKind};
        let shape = [1usize, 16, 4, 50];
        for axis in [1usize, 3] {
            let mut model = TypedModel::default();
            let source = model
                .add_source("x", f16::datum_type().fact(shape))
                .expect("source");
            let softmax = model
                .wire_node(
                    "softmax",
                    Softmax::new(tvec![axis], None, SoftmaxKind::Softmax),
                    &[source],
                )
                .expect("softmax");
            model.select_output_outlets(&softmax).expect("outputs");
            let mut plain = model.into_decluttered().expect("declutter");
            plain.optimize().expect("optimize");
            let rewritten = softmax_on_last_axis(plain.clone()).expect("rewrite");
            let f16_softmaxes = |m: &TypedModel| {
                m.nodes()
                    .iter()
                    .filter(|n| {
                        n.op_as::<Softmax>().is_some()
                            && m.outlet_fact(n.inputs[0]).expect("fact").datum_type
                                == f16::datum_type()
                    })
                    .count()
            };
            assert_eq!(f16_softmaxes(&plain), 1);
            assert_eq!(f16_softmaxes(&rewritten), 0, "axis {axis}");
            let n: usize = shape.iter().product();
            let values: Vec<f16> = (0..n)
                .map(|i| f16::from_f32(((i * 37) % 101) as f32 / 10.0 - 5.0))
                .collect();
            let input = Tensor::from_shape(&shape, &values).expect("input");
            let (before, after) = (first_output(plain, &input), first_output(rewritten, &input));
            assert_eq!(before.shape(), after.shape());
            let sums: Vec<f32> = after
                .lanes(tract_ndarray::Axis(axis))
                .into_iter()
                .map(|lane| lane.sum())
                .collect();
            assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-2), "{sums:?}");
            let worst = before
                .iter()
                .zip(after.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            // Probabilities in [0, 1]: f16 keeps 11 bits, and tract's f16 sum rounds as it goes.
            assert!(worst < 4e-3, "axis {axis}: largest difference {worst}");
        }
    }

    /// The bundled detector computed in f16: the plan's products are f16, the input and the
    /// outputs stay f32, and the outputs are f32's within half precision's rounding.
    #[test]
    fn a_model_computed_in_f16_keeps_its_f32_input_and_outputs_and_agrees() {
        let onnx = std::fs::read("models/shapes-detector.onnx").expect("detector");
        let manifest =
            crate::manifest::Manifest::load(std::path::Path::new("models/shapes-detector.toml"))
                .expect("manifest");
        let spec = &manifest.input;
        let mut f32_engine = Engine::load(&onnx, spec, "f32").expect("f32");
        let mut f16_engine =
            Engine::load_computing(&onnx, spec, "f16", Precision::F16).expect("f16");
        let plan = f16_engine.state.plan().model();
        let f16_values = plan
            .nodes()
            .iter()
            .filter(|n| {
                n.outputs
                    .iter()
                    .any(|o| o.fact.datum_type == f16::datum_type())
            })
            .count();
        assert!(f16_values > 10, "only {f16_values} nodes compute in f16");
        // Its input is cast to f16 in vector code, not by tract's element-by-element Cast.
        let count =
            |is_it: fn(&TypedNode) -> bool| plan.nodes().iter().filter(|n| is_it(n)).count();
        assert_eq!(count(|n| n.op_is::<tract_core::ops::cast::Cast>()), 0);
        assert_eq!(count(|n| n.op_is::<super::super::half_cast::HalfCast>()), 1);
        assert_eq!(
            plan.outlet_fact(plan.input_outlets().expect("inputs")[0])
                .expect("fact")
                .datum_type,
            f32::datum_type()
        );
        // The graph computes in f16 to its end; run() gives the values back as f32.
        for outlet in plan.output_outlets().expect("outputs") {
            let fact = plan.outlet_fact(*outlet).expect("fact");
            assert_eq!(fact.datum_type, f16::datum_type());
        }
        assert_eq!(f16_engine.computes_in(), Precision::F16);
        assert_eq!(f32_engine.computes_in(), Precision::F32);
        for engine in [&mut f32_engine, &mut f16_engine] {
            let InputBuffer::F32(input) = engine.input_mut().expect("input") else {
                panic!("the detector takes f32");
            };
            for (i, v) in input.iter_mut().enumerate() {
                *v = ((i * 7919) % 256) as f32 / 255.0;
            }
        }
        let (full, half) = (
            f32_engine.run().expect("f32"),
            f16_engine.run().expect("f16"),
        );
        assert_eq!(full.len(), half.len());
        for (a, b) in full.iter().zip(&half) {
            let (a, b) = (
                a.tensor.to_plain_array_view::<f32>().expect("f32"),
                b.tensor.to_plain_array_view::<f32>().expect("f32"),
            );
            assert_eq!(a.shape(), b.shape());
            let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1.0);
            let worst = a
                .iter()
                .zip(b.iter())
                .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
            // 11 bits of mantissa through a dozen layers: a few parts in a thousand.
            assert!(
                worst / scale < 2e-2,
                "largest difference {worst} of {scale}"
            );
            assert!(
                worst > 0.0,
                "f16 gave f32's exact outputs: was it computed in f16?"
            );
        }
    }

    /// In f16, hard-swish stays f32 between casts (tract computes it in scalar `half` code),
    /// while sigmoid, which has an f16 kernel, is translated.
    #[test]
    fn hard_swish_stays_in_f32_in_a_model_computed_in_f16() {
        use tract_core::ops::element_wise::ElementWiseOp;
        use tract_core::ops::nn::{hard_swish, sigmoid, HardSwish, Sigmoid};
        let mut model = TypedModel::default();
        let x = model
            .add_source("x", f32::datum_type().fact([1usize, 64]))
            .expect("source");
        let swished = model.wire_node("swish", hard_swish(), &[x]).expect("swish");
        let squashed = model
            .wire_node("squash", sigmoid(), &swished)
            .expect("sigmoid");
        model.select_output_outlets(&squashed).expect("outputs");
        let half = in_half_precision(&model).expect("f16");
        let input_type = |is_it: &dyn Fn(&ElementWiseOp) -> bool| {
            let node = half
                .nodes()
                .iter()
                .find(|n| n.op_as::<ElementWiseOp>().is_some_and(is_it))
                .expect("the operator");
            half.outlet_fact(node.inputs[0]).expect("fact").datum_type
        };
        assert_eq!(input_type(&|op| op.0.is::<HardSwish>()), f32::datum_type());
        assert_eq!(input_type(&|op| op.0.is::<Sigmoid>()), f16::datum_type());
    }

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
