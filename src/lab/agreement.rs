//! How far two forms of one model disagree on real images: the check `import --int8-weights
//! --check-on DIR` reports before a user trusts the smaller file.
//!
//! Both run on the same pre-processed input (the manifest's pre-processing, once per image):
//! the largest difference of any output value, against the largest value the original gives,
//! and whether the decoded results agree — the same top class for a classifier, the same
//! classes with boxes overlapping by IoU > 0.5 in the same order for a detector.

use crate::frames::preprocess::{PreprocessError, Preprocessor};
use crate::frames::source::{read_frame, SourceError};
use crate::manifest::{Manifest, Thresholds};
use crate::model::engine::{Engine, EngineError, InputBuffer, Output};
use crate::results::decode::{DecodeError, Decoded, Decoder, OutputView};
use std::path::PathBuf;

/// What failed while comparing.
#[derive(Debug, thiserror::Error)]
pub enum AgreementError {
    /// An image cannot be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A model does not load or run.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An image cannot be pre-processed.
    #[error("{path}: {source}")]
    Preprocess {
        /// The image.
        path: PathBuf,
        /// Why.
        source: PreprocessError,
    },
    /// The outputs cannot be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The two forms give outputs of different names or shapes.
    #[error("the two models' outputs differ in shape: {0}")]
    Shapes(String),
}

/// The comparison over a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    /// Images compared.
    pub images: usize,
    /// Largest absolute difference of any output value.
    pub max_abs: f32,
    /// Largest absolute output value of the original, the scale `max_abs` is read against.
    pub max_ref: f32,
    /// Images whose decoded results agree.
    pub decoded_same: usize,
}

/// Runs `original` and `other` (ONNX bytes of two forms of the model `manifest` describes) on
/// every image in `images`.
pub fn compare(
    manifest: &Manifest,
    original: &[u8],
    other: &[u8],
    images: &[PathBuf],
) -> Result<Agreement, AgreementError> {
    let mut a = Engine::load(original, &manifest.input, "original")?;
    let mut b = Engine::load(other, &manifest.input, "converted")?;
    if a.output_shapes() != b.output_shapes() {
        return Err(AgreementError::Shapes(format!(
            "{:?} against {:?}",
            a.output_shapes(),
            b.output_shapes()
        )));
    }
    let decoder = || {
        Decoder::new(
            &manifest.output,
            manifest.labels.len(),
            manifest.input.width(),
            manifest.input.height(),
            a.output_shapes(),
        )
    };
    let (mut decode_a, mut decode_b) = (decoder()?, decoder()?);
    let mut preprocessor = Preprocessor::new(&manifest.input, &manifest.preprocess);
    let mut result = Agreement {
        images: 0,
        max_abs: 0.0,
        max_ref: 0.0,
        decoded_same: 0,
    };
    for path in images {
        let frame = read_frame(path)?;
        let mut outputs = Vec::with_capacity(2);
        for engine in [&mut a, &mut b] {
            let pre = match engine.input_mut()? {
                InputBuffer::F32(x) => preprocessor.run(&frame.image, x),
                InputBuffer::U8(x) => preprocessor.run(&frame.image, x),
            };
            pre.map_err(|source| AgreementError::Preprocess {
                path: path.clone(),
                source,
            })?;
            outputs.push(engine.run()?);
        }
        let (oa, ob) = (values(&outputs[0])?, values(&outputs[1])?);
        for (x, y) in oa.iter().zip(&ob) {
            for (p, q) in x.iter().zip(y.iter()) {
                // A NaN on either side is an infinite difference, not none (f32::max drops NaN).
                let d = (p - q).abs();
                result.max_abs = if d.is_nan() {
                    f32::INFINITY
                } else {
                    result.max_abs.max(d)
                };
                result.max_ref = result.max_ref.max(p.abs());
            }
        }
        let views =
            |outputs: &[Output], data: &[Vec<f32>]| -> Vec<(String, Vec<usize>, Vec<f32>)> {
                outputs
                    .iter()
                    .zip(data)
                    .map(|(o, d)| (o.name.clone(), o.tensor.shape().to_vec(), d.clone()))
                    .collect()
            };
        let (va, vb) = (views(&outputs[0], &oa), views(&outputs[1], &ob));
        let thresholds: &Thresholds = &manifest.thresholds;
        let da = decode_a.decode(&as_views(&va), thresholds)?;
        let db = decode_b.decode(&as_views(&vb), thresholds)?;
        if same(&da, &db) {
            result.decoded_same += 1;
        }
        result.images += 1;
    }
    Ok(result)
}

fn as_views(owned: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<OutputView<'_>> {
    owned
        .iter()
        .map(|(name, shape, data)| OutputView { name, shape, data })
        .collect()
}

fn values(outputs: &[Output]) -> Result<Vec<Vec<f32>>, AgreementError> {
    outputs
        .iter()
        .map(|o| {
            o.tensor
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>())
                .map(<[f32]>::to_vec)
                .map_err(|e| {
                    AgreementError::Engine(EngineError::Output {
                        origin: "comparison".into(),
                        name: o.name.clone(),
                        message: format!("{e:#}"),
                    })
                })
        })
        .collect()
}

/// Whether two decoded results say the same thing.
fn same(a: &Decoded, b: &Decoded) -> bool {
    let boxes_agree = |x: &crate::results::decode::Detection,
                       y: &crate::results::decode::Detection| {
        x.class_id == y.class_id && x.bbox.iou(&y.bbox) > 0.5
    };
    match (a, b) {
        (Decoded::Classes(x), Decoded::Classes(y)) => {
            x.first().map(|c| c.class_id) == y.first().map(|c| c.class_id)
        }
        (Decoded::Detections(x), Decoded::Detections(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| boxes_agree(p, q))
        }
        (Decoded::Poses(x), Decoded::Poses(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| boxes_agree(&p.detection, &q.detection))
        }
        (Decoded::Raw { .. }, Decoded::Raw { .. }) => true,
        _ => false,
    }
}
