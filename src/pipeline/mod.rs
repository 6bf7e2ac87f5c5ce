//! The inference pipeline: capture → pre-process → infer → post-process → sinks.
//!
//! Read in stages, as tract's own loading reads:
//! - [`Pipeline`] owns one model's engine, its pre-processor and decoder, all built once from
//!   the manifest, and numbers the frames; [`Pipeline::process`] turns one frame into one
//!   [`FrameRecord`] with boxes in source pixels.
//! - [`Watched`] is a pipeline as a board runs it: its frames watched for drift, and its model
//!   kept so that it can be built again.
//! - [`run()`] drives a source through a watched pipeline into a
//!   [`SinkSet`](crate::results::sink::SinkSet), asks its [`Steering`] (consoles, the reloader)
//!   between frames, carries every event on one queue, and decides what an error costs: a bad
//!   file costs its frame (reported, counted, the run goes on), a broken model or sink ends
//!   the run.

mod run;
mod watched;

pub use run::{run, RunControl, RunStats, RunSummary, Steering, Unsteered, FPS_WINDOW, PAUSE_POLL};
pub use watched::Watched;

use crate::frames::preprocess::{ImageView, InputTransform, PreprocessError, Preprocessor};
use crate::frames::source::{Frame, SourceError};
use crate::manifest::{Manifest, Thresholds};
use crate::model::engine::{Engine, EngineError, InputBuffer};
use crate::results::decode::{DecodeError, Decoded, Decoder, Detection, Keypoint, OutputView};
use crate::results::record::{
    format_timestamp, ClassRecord, DetectionRecord, FrameRecord, StageLatency,
};
use crate::results::sink::SinkError;
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
pub struct Pipeline {
    manifest: Manifest,
    model_id: String,
    engine: Engine,
    preprocessor: Preprocessor,
    decoder: Decoder,
    thresholds: Thresholds,
    seq: u64,
}

impl Pipeline {
    /// Builds the engine, pre-processor and decoder for a checked manifest and its ONNX bytes.
    /// The decoder is checked against the model's real output shapes here, before any frame.
    pub fn new(manifest: Manifest, onnx: &[u8], origin: &str) -> Result<Self, PipelineError> {
        let engine = Engine::load(onnx, &manifest.input, origin)?;
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
        Ok(Self {
            model_id: manifest.id(),
            thresholds: manifest.thresholds,
            manifest,
            engine,
            preprocessor,
            decoder,
            seq: 0,
        })
    }

    /// Thresholds in force.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Thresholds in force; start as the manifest's.
    pub fn thresholds_mut(&mut self) -> &mut Thresholds {
        &mut self.thresholds
    }

    /// The engine, for bare-inference measurements.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Gives the next frame the number the last one had: that frame again, after the model
    /// that failed it was replaced.
    pub fn number_again(&mut self) {
        self.seq = self.seq.saturating_sub(1);
    }

    /// Counts a frame that never reached the model (unreadable), so sequence numbers show the gap.
    pub fn skip_frame(&mut self) {
        self.seq += 1;
    }

    /// Turns one frame into a record. `capture` is the time the source took to deliver it.
    pub fn process(
        &mut self,
        frame: &Frame,
        capture: Duration,
    ) -> Result<FrameRecord, PipelineError> {
        let seq = self.seq;
        self.seq += 1;

        let started = Instant::now();
        let preprocess_error = |source| PipelineError::Preprocess {
            frame: frame.id.clone(),
            source,
        };
        let transform = match self.engine.input_mut()? {
            InputBuffer::F32(buffer) => self.preprocessor.run(&frame.image, buffer),
            InputBuffer::U8(buffer) => self.preprocessor.run(&frame.image, buffer),
        }
        .map_err(preprocess_error)?;
        let pre_done = Instant::now();

        let outputs = self.engine.run()?;
        let infer_done = Instant::now();

        let mut views = Vec::with_capacity(outputs.len());
        for output in &outputs {
            let data = output
                .tensor
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>())
                .map_err(|e| EngineError::Output {
                    origin: self.engine.origin().to_owned(),
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
        let decoded = self
            .decoder
            .decode(&views, &self.thresholds)
            .map_err(|source| PipelineError::Decode {
                origin: self.model_id.clone(),
                source,
            })?;
        let label = |id: usize| {
            self.manifest
                .labels
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("class{id}"))
        };
        let (mut classes, mut detections, mut shapes, mut raw_values) = (None, None, None, None);
        match decoded {
            Decoded::Classes(list) => {
                classes = Some(
                    list.into_iter()
                        .map(|c| ClassRecord {
                            label_id: c.class_id,
                            label: label(c.class_id),
                            score: c.score,
                        })
                        .collect(),
                )
            }
            Decoded::Detections(list) => {
                detections = Some(
                    list.into_iter()
                        .map(|d| detection_record(&d, None, &transform, label(d.class_id)))
                        .collect(),
                )
            }
            Decoded::Poses(list) => {
                detections = Some(
                    list.into_iter()
                        .map(|p| {
                            let name = label(p.detection.class_id);
                            detection_record(&p.detection, Some(&p.keypoints), &transform, name)
                        })
                        .collect(),
                )
            }
            Decoded::Raw { shapes: s, values } => {
                shapes = Some(s);
                raw_values = Some(values).filter(|v| !v.is_empty());
            }
        }
        let post_done = Instant::now();

        let mut record = FrameRecord {
            seq,
            timestamp: format_timestamp(frame.captured_at),
            model: self.model_id.clone(),
            frame: frame.id.clone(),
            frame_size: [frame.image.width(), frame.image.height()],
            latency_ms: StageLatency {
                capture: millis(capture),
                pre: millis(pre_done - started),
                infer: millis(infer_done - pre_done),
                post: millis(post_done - infer_done),
                drift: 0.0,
            },
            classes,
            detections,
            outputs: shapes,
            values: raw_values,
        };
        record.latency_ms = record.latency_ms.rounded_to_microseconds();
        Ok(record)
    }

    /// Takes over from `old` (a model being replaced): frame numbers go on from its.
    pub fn continue_after(&mut self, old: &Pipeline) {
        self.seq = old.seq;
    }

    /// What the model saw of `frame` in the last [`process`](Self::process): the resized
    /// image before padding and normalisation.
    pub fn model_view<'a>(&'a self, frame: &'a Frame) -> Option<ImageView<'a>> {
        self.preprocessor.model_view(&frame.image)
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
    }
}

/// Milliseconds as f64.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
