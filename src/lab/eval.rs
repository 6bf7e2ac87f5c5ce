//! `lookout eval`: how accurate is this model, through lookout's own pipeline, on a labelled set?
//!
//! Accuracy is measured on exactly what the device computes — the same pre-processing, tract,
//! the same decoder and NMS — not on a training framework's idea of the model. Detectors get
//! COCO mAP ([`crate::lab::metrics::coco_map`]) on a YOLO txt set, plus precision and recall at the
//! manifest's own score threshold (what a deployment would report); classifiers get top-1,
//! top-5 and a confusion matrix on an image-folder set ([`crate::lab::dataset`]).
//!
//! As COCO evaluations do, detectors run with a very low score threshold (default 0.001) and
//! 100 detections per image, so the precision-recall curve is measured over its whole length;
//! the NMS IoU stays the manifest's.

use crate::frames::source::{read_frame, SourceError};
use crate::lab::dataset::{ClassificationSet, DatasetError, DetectionSet};
use crate::lab::metrics::{
    coco_map, operating_point, top_k, ImageBoxes, MapReport, OperatingPoint, ScoredBox, TopK,
    TruthBox, COCO_MAX_DETECTIONS,
};
use crate::manifest::{Manifest, OutputSpec, Thresholds};
use crate::pipeline::{Pipeline, PipelineError};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// Score threshold of a detector evaluation unless told otherwise (COCO practice).
pub const DEFAULT_EVAL_SCORE: f32 = 0.001;

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The labelled set is broken.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// An image of the set cannot be read; an evaluation with holes would be misleading.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The model failed on an image.
    #[error("{path}: {source}")]
    Pipeline {
        /// The image.
        path: std::path::PathBuf,
        /// What failed (boxed: a pipeline error is large and this one is rare).
        source: Box<PipelineError>,
    },
    /// `--score` given for a classifier, which is ranked over all its classes.
    #[error("--score applies to detectors; a classifier is ranked over all its classes")]
    ScoreForClassifier,
    /// `--score` above the deployment's threshold, which would drop detections it reports.
    #[error(
        "--score {score} is above the manifest's threshold {operating}; evaluation needs at least \
         everything a deployment reports"
    )]
    ScoreAboveOperating {
        /// The score given.
        score: f32,
        /// The manifest's threshold.
        operating: f32,
    },
    /// A `raw` model has no labels or boxes to compare.
    #[error("model {model} has decoder `raw`: there are no classes or boxes to evaluate")]
    NotEvaluable {
        /// `name@version`.
        model: String,
    },
}

/// Accuracy of a detector on a set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectionReport {
    /// `name@version`.
    pub model: String,
    /// The set's folder.
    pub dataset: String,
    /// Images evaluated.
    pub images: usize,
    /// Images without a label file (counted as having no objects).
    pub unlabelled: usize,
    /// Ground-truth objects.
    pub objects: usize,
    /// Score threshold the model ran at.
    pub eval_score: f32,
    /// NMS IoU threshold the model ran at.
    pub nms_iou: f32,
    /// Class names, by id.
    pub labels: Vec<String>,
    /// COCO mAP.
    pub map: MapReport,
    /// Counts at the manifest's score threshold, IoU 0.5.
    pub operating_point: OperatingPoint,
}

/// Accuracy of a classifier on a set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationReport {
    /// `name@version`.
    pub model: String,
    /// The set's folder.
    pub dataset: String,
    /// Class names, by id.
    pub labels: Vec<String>,
    /// Top-1, top-5, confusion.
    pub accuracy: TopK,
}

/// The outcome of `lookout eval`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "task", rename_all = "lowercase")]
pub enum EvalReport {
    /// A detector's report.
    Detection(DetectionReport),
    /// A classifier's report.
    Classification(ClassificationReport),
}

/// Prepares a manifest for evaluation: detectors keep every candidate down to `score`
/// (default [`DEFAULT_EVAL_SCORE`]) and up to 100 per image; classifiers rank every class,
/// whatever its score (logits may be negative). Returns the manifest's own thresholds, the
/// deployment's operating point, or why `score` cannot be used.
pub fn prepare(manifest: &mut Manifest, score: Option<f32>) -> Result<Thresholds, EvalError> {
    let operating = manifest.thresholds;
    let classes = manifest.labels.len();
    match &mut manifest.output {
        OutputSpec::Classify { top_k, .. } => {
            if score.is_some() {
                return Err(EvalError::ScoreForClassifier);
            }
            *top_k = classes;
            manifest.thresholds.score = f32::NEG_INFINITY;
        }
        _ => {
            let score = score.unwrap_or(DEFAULT_EVAL_SCORE);
            if score > operating.score {
                // The operating point needs every detection the deployment would report.
                return Err(EvalError::ScoreAboveOperating {
                    score,
                    operating: operating.score,
                });
            }
            manifest.thresholds.score = score;
            manifest.thresholds.max_detections = COCO_MAX_DETECTIONS;
        }
    }
    Ok(operating)
}

/// Evaluates the model of `pipeline` (built from a [`prepare`]d manifest) on the labelled set
/// at `dir`. `progress(done, total)` is called after every image.
pub fn evaluate(
    pipeline: &mut Pipeline,
    dir: &Path,
    operating: Thresholds,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport, EvalError> {
    let manifest = pipeline.manifest().clone();
    match manifest.output {
        OutputSpec::Raw { .. } => Err(EvalError::NotEvaluable {
            model: manifest.id(),
        }),
        OutputSpec::Classify { .. } => {
            let set = ClassificationSet::open(dir, &manifest.labels)?;
            let total = set.samples.len();
            let mut ranked = Vec::with_capacity(total);
            for (done, (path, truth)) in set.samples.iter().enumerate() {
                let frame = read_frame(path)?;
                let record = run_one(pipeline, &frame, path)?;
                let order: Vec<usize> = record
                    .classes
                    .unwrap_or_default()
                    .iter()
                    .map(|c| c.label_id)
                    .collect();
                ranked.push((*truth, order));
                progress(done + 1, total);
            }
            let accuracy = top_k(
                ranked.iter().map(|(t, r)| (*t, r.as_slice())),
                manifest.labels.len(),
            );
            Ok(EvalReport::Classification(ClassificationReport {
                model: manifest.id(),
                dataset: dir.display().to_string(),
                labels: manifest.labels,
                accuracy,
            }))
        }
        _ => {
            let set = DetectionSet::open(dir, &manifest.labels)?;
            let total = set.samples.len();
            let mut images = Vec::with_capacity(total);
            for (done, sample) in set.samples.iter().enumerate() {
                let frame = read_frame(&sample.image)?;
                let (w, h) = frame.image.dimensions();
                let record = run_one(pipeline, &frame, &sample.image)?;
                images.push(ImageBoxes {
                    truth: sample
                        .objects
                        .iter()
                        .map(|o| TruthBox {
                            class_id: o.class_id,
                            bbox: o.to_pixels(w, h),
                        })
                        .collect(),
                    detections: record
                        .detections
                        .unwrap_or_default()
                        .iter()
                        .map(|d| ScoredBox {
                            class_id: d.label_id,
                            score: d.score,
                            bbox: d.bbox,
                        })
                        .collect(),
                });
                progress(done + 1, total);
            }
            let classes = manifest.labels.len();
            Ok(EvalReport::Detection(DetectionReport {
                model: manifest.id(),
                dataset: dir.display().to_string(),
                images: total,
                unlabelled: set.unlabelled,
                objects: set.objects(),
                eval_score: manifest.thresholds.score,
                nms_iou: manifest.thresholds.iou,
                map: coco_map(&images, classes),
                operating_point: operating_point(
                    &images,
                    classes,
                    operating.score,
                    operating.max_detections,
                ),
                labels: manifest.labels,
            }))
        }
    }
}

fn run_one(
    pipeline: &mut Pipeline,
    frame: &crate::frames::source::Frame,
    path: &Path,
) -> Result<crate::results::record::FrameRecord, EvalError> {
    pipeline
        .process(frame, Duration::ZERO)
        .map_err(|source| EvalError::Pipeline {
            path: path.to_owned(),
            source: Box::new(source),
        })
}

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalReport::Detection(r) => {
                writeln!(f, "model:    {}", r.model)?;
                writeln!(
                    f,
                    "dataset:  {} ({} images, {} objects{})",
                    r.dataset,
                    r.images,
                    r.objects,
                    if r.unlabelled > 0 {
                        let s = if r.unlabelled == 1 { "" } else { "s" };
                        format!(", {} image{s} without a label file", r.unlabelled)
                    } else {
                        String::new()
                    }
                )?;
                writeln!(
                    f,
                    "run at:   score >= {}, NMS IoU {}, <= {} detections per image",
                    r.eval_score, r.nms_iou, COCO_MAX_DETECTIONS
                )?;
                writeln!(
                    f,
                    "mAP@0.5 {:.4}   mAP@0.75 {:.4}   mAP@0.5:0.95 {:.4}   (COCO, 101-point)",
                    r.map.map50, r.map.map75, r.map.map50_95
                )?;
                writeln!(
                    f,
                    "{:<16} {:>8} {:>10} {:>8} {:>12}",
                    "class", "objects", "detections", "AP@0.5", "AP@0.5:0.95"
                )?;
                for c in &r.map.classes {
                    let ap = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
                    let label = r.labels.get(c.class_id).map_or("?", String::as_str);
                    writeln!(
                        f,
                        "{:<16} {:>8} {:>10} {:>8} {:>12}",
                        label,
                        c.objects,
                        c.detections,
                        ap(c.ap50),
                        ap(c.ap50_95)
                    )?;
                }
                let op = &r.operating_point;
                write!(
                    f,
                    "at the manifest's score >= {}, IoU 0.5: precision {}, recall {} \
                     ({} found, {} false, {} missed)",
                    op.score,
                    percent(op.precision),
                    percent(op.recall),
                    op.true_positives,
                    op.false_positives,
                    op.missed
                )
            }
            EvalReport::Classification(r) => {
                let a = &r.accuracy;
                writeln!(f, "model:    {}", r.model)?;
                writeln!(f, "dataset:  {} ({} images)", r.dataset, a.images)?;
                writeln!(f, "top-1 {}   top-5 {}", percent(a.top1), percent(a.top5))?;
                write!(
                    f,
                    "confusion (rows: truth, columns: predicted):\n{:<16}",
                    ""
                )?;
                for label in &r.labels {
                    write!(f, " {label:>10.10}")?;
                }
                for (label, row) in r.labels.iter().zip(&a.confusion) {
                    write!(f, "\n{label:<16}")?;
                    for n in row {
                        write!(f, " {n:>10}")?;
                    }
                }
                Ok(())
            }
        }
    }
}
