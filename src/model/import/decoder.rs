//! The decoder: `--decoder`, the Ultralytics task, or what the output shapes fit, with the
//! class count the chosen layout reads from them.

use super::{fixed, ImportOptions, Note, Origin, Ultralytics};
use crate::manifest::{BoxEncoding, BoxUnits, OutputSpec};
use crate::onnx_meta::{OnnxMeta, TensorDecl};
use std::fmt::Write as _;

/// How many classes a decoder reads from the outputs, and the output that says so.
#[derive(Debug)]
pub(super) struct Classes {
    pub(super) count: usize,
    pub(super) evidence: String,
}

const DECODERS: &str = "classify, yolov8, yolov5, end2end, ssd, raw";

/// The decoder for the outputs: `--decoder`, the Ultralytics task, or the output shapes.
pub(super) fn output_spec(
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
            // YOLOv10 (and `nms=True`) exports end in rows of 6 (+ keypoints) instead.
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
