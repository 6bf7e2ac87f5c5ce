//! The inference pipeline: capture → pre-process → infer → post-process → sinks.
//!
//! Read in stages, as tract's own loading reads:
//! - [`Pipeline`] owns one model's lanes (an engine, a pre-processor and a decoder each, the
//!   engines sharing one optimized plan), built from the manifest, and numbers the frames;
//!   [`Pipeline::process`] turns one frame into one [`FrameRecord`] with boxes in source
//!   pixels, in three steps that let several frames be in flight at once.
//! - [`Watched`] is a pipeline as a board runs it: its frames watched for drift, and its model
//!   kept so that it can be built again.
//! - [`run()`] drives a source through a watched pipeline into a
//!   [`SinkSet`](crate::results::sink::SinkSet), asks its [`Steering`] (consoles, the reloader)
//!   between frames, runs frames in flight on worker threads (`workers`) and finishes them in
//!   order, carries every event on one queue, and decides what an error costs: a bad file
//!   costs its frame (reported, counted, the run goes on), a broken model or sink ends the run.
//! - [`cores`] chooses how a run uses the board's cores.

pub mod cores;
mod run;
mod watched;
mod workers;

pub use run::{
    run, RunControl, RunExtras, RunStats, RunSummary, Steering, Unsteered, FPS_WINDOW, PAUSE_POLL,
};
pub use watched::Watched;

use crate::frames::preprocess::{ImageView, InputTransform, PreprocessError, Preprocessor};
use crate::frames::source::{Frame, SourceError};
use crate::manifest::{Manifest, Thresholds};
use crate::model::engine::{Blueprint, Engine, EngineError, InputBuffer, Output};
use crate::results::decode::{DecodeError, Decoded, Decoder, Detection, Keypoint, OutputView};
use crate::results::record::{
    format_timestamp, ClassRecord, DetectionRecord, FrameRecord, StageLatency,
};
use crate::results::sink::SinkError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors of the pipeline, by stage.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Model loading or inference.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Pre-processing a frame.
    #[error("frame {frame}: {source}")]
    Preprocess {
        /// The frame id.
        frame: String,
        /// What failed.
        source: PreprocessError,
    },
    /// The outputs do not match the manifest's decoder.
    #[error("{origin}: {source}")]
    Decode {
        /// Model identity.
        origin: String,
        /// What failed.
        source: DecodeError,
    },
    /// The model put out a NaN or an infinity: its weights or its arithmetic are broken, and
    /// whatever the decoder made of the frame would be wrong.
    #[error("{origin}: output `{output}` holds {value} at index {index}: the model is broken")]
    NotFinite {
        /// Model identity.
        origin: String,
        /// The output's name.
        output: String,
        /// Where in it (flat index).
        index: usize,
        /// The value.
        value: f32,
    },
    /// The source.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A sink.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A zone or mask does not fit the frames (a corner outside them).
    #[error(transparent)]
    Scene(#[from] crate::scene::SceneError),
    /// The threads that run frames' models could not be started, or one stopped.
    #[error("inference workers ({threads} threads): {message}")]
    Workers {
        /// Threads of the pool.
        threads: usize,
        /// What happened.
        message: String,
    },
    /// Too many frames in a row failed to read; the source is treated as broken.
    #[error("{count} frames in a row could not be read; last error: {last}")]
    TooManyFailures {
        /// Consecutive failures.
        count: u32,
        /// The last one.
        last: SourceError,
    },
}

impl PipelineError {
    /// Whether the model is at fault (it failed to run, or put out what cannot be decoded),
    /// rather than the frame, the source or a sink: what a model on trial is judged by.
    pub fn is_model_fault(&self) -> bool {
        matches!(
            self,
            Self::Engine(_) | Self::Decode { .. } | Self::NotFinite { .. }
        )
    }
}

/// A model ready to turn frames into records.
///
/// A frame goes through in three steps, which [`process`](Self::process) takes in turn:
/// [`start`](Self::start) pre-processes it into the input of a free lane (an engine with its
/// own pre-processor), [`Started::infer`] runs the model (on any thread), and
/// [`finish`](Self::finish) decodes the outputs into a record. With several lanes
/// ([`set_lanes`](Self::set_lanes)) several frames are in flight at once: whole frames on
/// several cores, every lane sharing the one copy of the weights.
pub struct Pipeline {
    manifest: Manifest,
    decoding: Arc<Decoding>,
    /// Lanes not in flight.
    free: Vec<Lane>,
    /// Lanes kept when they come back: frames in flight at once, as the run loop keeps them.
    lanes: usize,
    /// Makes a lane when none is free: the first frames, or a pipeline back in place after
    /// the lanes it had in flight were dropped (a model returned to after a failed trial).
    blueprint: Blueprint,
    decoder: Decoder,
    thresholds: Thresholds,
    seq: u64,
    /// Tells this pipeline's lanes from another's, after a model was replaced or rebuilt.
    generation: u64,
    /// Tells this model's frames from another's: kept when the same model is rebuilt.
    lineage: u64,
}

/// One frame in flight at a time: an engine and the pre-processor that fills its input (and
/// keeps the resized image the drift monitor looks at).
struct Lane {
    engine: Engine,
    preprocessor: Preprocessor,
    decoder: Decoder,
}

/// What names a model's outputs in a record; shared with the frames in flight, which may
/// outlive their pipeline when the model is replaced meanwhile.
struct Decoding {
    labels: Vec<String>,
    model_id: String,
}

/// Numbers every pipeline built in this process.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A frame pre-processed into a lane's input, to be run ([`infer`](Self::infer)) and
/// finished ([`Pipeline::finish`]).
pub struct Started {
    lane: Lane,
    seq: u64,
    frame_id: String,
    captured_at: std::time::SystemTime,
    frame_size: [u32; 2],
    transform: InputTransform,
    thresholds: Thresholds,
    decoding: Arc<Decoding>,
    generation: u64,
    lineage: u64,
    capture: Duration,
    pre: Duration,
    infer: Duration,
    outputs: Option<Result<Vec<Output>, EngineError>>,
}

impl Started {
    /// Runs the model on the frame's input. Takes the time of the model alone.
    pub fn infer(&mut self) {
        let started = Instant::now();
        self.outputs = Some(self.lane.engine.run());
        self.infer = started.elapsed();
    }

    /// The frame's number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Pipeline {
    /// Builds the engine, pre-processor and decoder for a checked manifest and its ONNX bytes.
    /// The decoder is checked against the model's real output shapes here, before any frame.
    pub fn new(manifest: Manifest, onnx: &[u8], origin: &str) -> Result<Self, PipelineError> {
        let engine = Engine::load_computing(onnx, &manifest.input, origin, manifest.model.compute)?;
        let decoder = Decoder::new(
            &manifest.output,
            manifest.labels.len(),
            manifest.input.width(),
            manifest.input.height(),
            engine.output_shapes(),
        )
        .map_err(|source| PipelineError::Decode {
            origin: origin.to_owned(),
            source,
        })?;
        let preprocessor = Preprocessor::new(&manifest.input, &manifest.preprocess);
        let generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Self {
            blueprint: engine.blueprint(),
            decoder: decoder.clone(),
            decoding: Arc::new(Decoding {
                labels: manifest.labels.clone(),
                model_id: manifest.id(),
            }),
            thresholds: manifest.thresholds,
            manifest,
            free: vec![Lane {
                engine,
                preprocessor,
                decoder,
            }],
            lanes: 1,
            seq: 0,
            generation,
            lineage: generation,
        })
    }

    /// Lets `lanes` frames be in flight at once (at least one). Each lane is a run state on
    /// the same optimized model, so the weights are held once; its memory is the model's
    /// intermediate tensors and one input buffer. Lanes are made as frames need them.
    pub fn set_lanes(&mut self, lanes: usize) {
        self.lanes = lanes.max(1);
        self.free.truncate(self.lanes);
    }

    /// A lane for the next frame: a free one, or a new one.
    fn lane(&mut self) -> Result<Lane, PipelineError> {
        match self.free.pop() {
            Some(lane) => Ok(lane),
            None => Ok(Lane {
                engine: self.blueprint.engine()?,
                preprocessor: Preprocessor::new(&self.manifest.input, &self.manifest.preprocess),
                decoder: self.decoder.clone(),
            }),
        }
    }

    /// How many frames may be in flight at once.
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// Thresholds in force.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// `name@version`, as records carry it.
    pub fn model_id(&self) -> &str {
        &self.decoding.model_id
    }

    /// Thresholds in force; start as the manifest's. A frame in flight keeps the thresholds
    /// in force when it started.
    pub fn thresholds_mut(&mut self) -> &mut Thresholds {
        &mut self.thresholds
    }

    /// The engine of the lane that finished last (a new lane's while every lane is in
    /// flight), for bare-inference measurements.
    pub fn engine_mut(&mut self) -> Result<&mut Engine, PipelineError> {
        let lane = self.lane()?;
        self.free.push(lane);
        let last = self.free.len() - 1;
        Ok(&mut self.free[last].engine)
    }

    /// What the model saw of `frame`, the last frame finished: the resized image before
    /// padding and normalisation. `None` for another frame size, or while every lane is in
    /// flight.
    pub fn model_view<'a>(&'a self, frame: &'a Frame) -> Option<ImageView<'a>> {
        self.free.last()?.preprocessor.model_view(&frame.image)
    }

    /// The number the next frame started gets.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Gives the next frame number `seq`: frames again, after the model that failed them was
    /// replaced.
    pub fn number_from(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Counts a frame that never reached the model (unreadable), so sequence numbers show the gap.
    pub fn skip_frame(&mut self) {
        self.seq += 1;
    }

    /// Tells this pipeline from the one it replaced or that replaces it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `started` is one of this model's frames (not one of a model replaced since;
    /// a rebuild of the same model keeps its frames).
    pub fn owns(&self, started: &Started) -> bool {
        started.lineage == self.lineage
    }

    /// Takes over from `old`, the same model built again: its frames in flight stay this
    /// model's, its frame numbers go on.
    pub fn rebuilt_from(&mut self, old: &Pipeline) {
        self.lineage = old.lineage;
        self.continue_after(old);
    }

    /// Turns one frame into a record. `capture` is the time the source took to deliver it.
    pub fn process(
        &mut self,
        frame: &Frame,
        capture: Duration,
    ) -> Result<FrameRecord, PipelineError> {
        let mut started = self.start(frame, capture)?;
        started.infer();
        self.finish(started)
    }

    /// Pre-processes `frame` into a free lane's input (a new lane when none is free) and
    /// numbers it. How many frames are in flight at once is the caller's to keep to
    /// [`lanes`](Self::lanes).
    pub fn start(&mut self, frame: &Frame, capture: Duration) -> Result<Started, PipelineError> {
        let mut lane = self.lane()?;
        let started_at = Instant::now();
        let preprocess_error = |source| PipelineError::Preprocess {
            frame: frame.id.clone(),
            source,
        };
        let filled = match lane.engine.input_mut() {
            Ok(InputBuffer::F32(buffer)) => lane
                .preprocessor
                .run(&frame.image, buffer)
                .map_err(preprocess_error),
            Ok(InputBuffer::U8(buffer)) => lane
                .preprocessor
                .run(&frame.image, buffer)
                .map_err(preprocess_error),
            Err(e) => Err(e.into()),
        };
        let transform = match filled {
            Ok(transform) => transform,
            Err(e) => {
                self.free.push(lane);
                return Err(e);
            }
        };
        let seq = self.seq;
        self.seq += 1;
        Ok(Started {
            lane,
            seq,
            frame_id: frame.id.clone(),
            captured_at: frame.captured_at,
            frame_size: [frame.image.width(), frame.image.height()],
            transform,
            thresholds: self.thresholds,
            decoding: Arc::clone(&self.decoding),
            generation: self.generation,
            lineage: self.lineage,
            capture,
            pre: started_at.elapsed(),
            infer: Duration::ZERO,
            outputs: None,
        })
    }

    /// Decodes a started frame's outputs into a record and takes its lane back. A frame of a
    /// model replaced since it started is decoded with that model's decoder and labels, and
    /// its lane dropped.
    pub fn finish(&mut self, started: Started) -> Result<FrameRecord, PipelineError> {
        let (record, (lane, generation, _)) = started.decode();
        self.give_back(lane, generation);
        record
    }

    /// Decodes a started frame, shows the drift monitor (`observe`) the model's view of
    /// `frame` with the record when the frame is this pipeline's, and takes its lane back.
    pub(crate) fn finish_observed(
        &mut self,
        started: Started,
        frame: &Frame,
        observe: impl FnOnce(&ImageView<'_>, &FrameRecord),
    ) -> Result<FrameRecord, PipelineError> {
        let (record, (lane, generation, lineage)) = started.decode();
        if let (Ok(record), true) = (&record, lineage == self.lineage) {
            if let Some(view) = lane.preprocessor.model_view(&frame.image) {
                observe(&view, record);
            }
        }
        self.give_back(lane, generation);
        record
    }

    /// Takes a lane back from a frame that is dropped unfinished (its model failed).
    pub fn release(&mut self, started: Started) {
        self.give_back(started.lane, started.generation);
    }

    fn give_back(&mut self, lane: Lane, generation: u64) {
        if generation == self.generation && self.free.len() < self.lanes {
            self.free.push(lane);
        }
    }

    /// Takes over from `old` (a model being replaced): frame numbers go on from its.
    pub fn continue_after(&mut self, old: &Pipeline) {
        self.seq = old.seq;
    }
}

impl Started {
    /// The record, and the lane with its pipeline's generation.
    fn decode(self) -> (Result<FrameRecord, PipelineError>, (Lane, u64, u64)) {
        let Started {
            mut lane,
            seq,
            frame_id,
            captured_at,
            frame_size,
            transform,
            thresholds,
            decoding,
            generation,
            lineage,
            capture,
            pre,
            infer,
            outputs,
        } = self;
        let decode_started = Instant::now();
        let record = outputs
            .unwrap_or_else(|| {
                Err(EngineError::Run {
                    origin: lane.engine.origin().to_owned(),
                    message: "the frame was finished before the model ran".into(),
                })
            })
            .map_err(PipelineError::from)
            .and_then(|outputs| {
                let origin = lane.engine.origin();
                decoding.record(&mut lane.decoder, &outputs, origin, &thresholds, &transform)
            })
            .map(|(classes, detections, shapes, values)| {
                let post = decode_started.elapsed();
                let mut record = FrameRecord {
                    seq,
                    timestamp: format_timestamp(captured_at),
                    model: decoding.model_id.clone(),
                    frame: frame_id,
                    frame_size,
                    latency_ms: StageLatency {
                        capture: millis(capture),
                        pre: millis(pre),
                        infer: millis(infer),
                        post: millis(post),
                        drift: 0.0,
                    },
                    classes,
                    detections,
                    outputs: shapes,
                    values,
                    zones: None,
                    health: None,
                };
                record.latency_ms = record.latency_ms.rounded_to_microseconds();
                record
            });
        (record, (lane, generation, lineage))
    }
}

/// What decoding puts in a record: classes, detections, raw shapes and values.
type Decodings = (
    Option<Vec<ClassRecord>>,
    Option<Vec<DetectionRecord>>,
    Option<Vec<Vec<usize>>>,
    Option<Vec<crate::results::decode::RawValues>>,
);

impl Decoding {
    fn record(
        &self,
        decoder: &mut Decoder,
        outputs: &[Output],
        engine_origin: &str,
        thresholds: &Thresholds,
        transform: &InputTransform,
    ) -> Result<Decodings, PipelineError> {
        let mut views = Vec::with_capacity(outputs.len());
        for output in outputs {
            let data = output
                .tensor
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>())
                .map_err(|e| EngineError::Output {
                    origin: engine_origin.to_owned(),
                    name: output.name.clone(),
                    message: format!("{e:#}"),
                })?;
            if let Some(index) = data.iter().position(|v| !v.is_finite()) {
                return Err(PipelineError::NotFinite {
                    origin: self.model_id.clone(),
                    output: output.name.clone(),
                    index,
                    value: data[index],
                });
            }
            views.push(OutputView {
                name: &output.name,
                shape: output.tensor.shape(),
                data,
            });
        }
        let decoded =
            decoder
                .decode(&views, thresholds)
                .map_err(|source| PipelineError::Decode {
                    origin: self.model_id.clone(),
                    source,
                })?;
        let label = |id: usize| {
            self.labels
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("class{id}"))
        };
        Ok(match decoded {
            Decoded::Classes(list) => (
                Some(
                    list.into_iter()
                        .map(|c| ClassRecord {
                            label_id: c.class_id,
                            label: label(c.class_id),
                            score: c.score,
                        })
                        .collect(),
                ),
                None,
                None,
                None,
            ),
            Decoded::Detections(list) => (
                None,
                Some(
                    list.into_iter()
                        .map(|d| detection_record(&d, None, transform, label(d.class_id)))
                        .collect(),
                ),
                None,
                None,
            ),
            Decoded::Poses(list) => (
                None,
                Some(
                    list.into_iter()
                        .map(|p| {
                            let name = label(p.detection.class_id);
                            detection_record(&p.detection, Some(&p.keypoints), transform, name)
                        })
                        .collect(),
                ),
                None,
                None,
            ),
            Decoded::Raw { shapes, values } => (
                None,
                None,
                Some(shapes),
                Some(values).filter(|v| !v.is_empty()),
            ),
        })
    }
}

/// A detection (and a pose model's keypoints) in source-frame pixels.
fn detection_record(
    d: &Detection,
    keypoints: Option<&[Keypoint]>,
    transform: &InputTransform,
    label: String,
) -> DetectionRecord {
    let (w, h) = (
        transform.source_width as f32,
        transform.source_height as f32,
    );
    DetectionRecord {
        label_id: d.class_id,
        label,
        score: d.score,
        bbox: transform.box_to_source([d.bbox.x0, d.bbox.y0, d.bbox.x1, d.bbox.y1]),
        keypoints: keypoints.map(|points| {
            points
                .iter()
                .map(|k| {
                    let (x, y) = transform.to_source(k.x, k.y);
                    [x.clamp(0.0, w), y.clamp(0.0, h), k.score]
                })
                .collect()
        }),
        track_id: None,
    }
}

/// Milliseconds as f64.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
