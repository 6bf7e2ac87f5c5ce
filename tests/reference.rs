//! lookout against an independent reference pipeline: Pillow + numpy pre-processing,
//! onnxruntime inference and numpy decoding (`tools/reference.py`), on the same images and the
//! same manifests. Boxes must agree within 1 pixel and scores within 1e-3.
//!
//! Needs `python3` with `tools/requirements-ref.txt` installed (`scripts/setup` does it).

mod common;

use common::*;
use serde_json::Value;

const SCORE_TOLERANCE: f64 = 1e-3;
const BOX_TOLERANCE: f64 = 1.0;

fn reference(manifest: &str, images: &str) -> Vec<Value> {
    let out = std::process::Command::new("python3")
        .args(["tools/reference.py", "--manifest", manifest, images])
        .current_dir(root())
        .output()
        .expect("python3 runs (install with scripts/setup)");
    assert!(
        out.status.success(),
        "reference pipeline failed (is tools/requirements-ref.txt installed?): {}",
        stderr(&out)
    );
    json_lines(&stdout(&out))
}

fn lookout_records(manifest: &str, images: &str) -> Vec<Value> {
    let out = lookout(&["run", "--model", manifest, "--source", images]);
    assert!(out.status.success(), "{}", stderr(&out));
    json_lines(&stdout(&out))
}

fn score(v: &Value) -> f64 {
    v["score"].as_f64().expect("score")
}

/// An item only one side reports must sit at the score threshold, where 1e-3 of numeric
/// difference may put it on either side.
fn assert_borderline(item: &Value, threshold: f64, frame: &str, side: &str) {
    assert!(
        (score(item) - threshold).abs() <= SCORE_TOLERANCE,
        "{frame}: only {side} reports {item}"
    );
}

#[test]
fn detector_matches_the_reference_within_one_pixel() {
    let manifest = "models/shapes-detector.toml";
    let ours = lookout_records(manifest, "tests/images/detect");
    let theirs = reference(manifest, "tests/images/detect");
    assert_eq!(ours.len(), theirs.len());
    let threshold = 0.25;
    let mut compared = 0;
    for (a, b) in ours.iter().zip(&theirs) {
        let frame = a["frame"].as_str().expect("frame");
        assert_eq!(a["frame"], b["frame"]);
        let ours = a["detections"].as_array().expect("ours");
        let theirs = b["detections"].as_array().expect("theirs");
        let mut used = vec![false; theirs.len()];
        for d in ours {
            let best = theirs
                .iter()
                .enumerate()
                .filter(|(i, t)| !used[*i] && t["label_id"] == d["label_id"])
                .max_by(|(_, x), (_, y)| {
                    iou(json_box(&x["box"]), json_box(&d["box"]))
                        .total_cmp(&iou(json_box(&y["box"]), json_box(&d["box"])))
                });
            let Some((i, t)) =
                best.filter(|(_, t)| iou(json_box(&t["box"]), json_box(&d["box"])) > 0.5)
            else {
                assert_borderline(d, threshold, frame, "lookout");
                continue;
            };
            used[i] = true;
            compared += 1;
            assert!(
                (score(d) - score(t)).abs() <= SCORE_TOLERANCE,
                "{frame}: score {} vs reference {}",
                score(d),
                score(t)
            );
            let (bd, bt) = (json_box(&d["box"]), json_box(&t["box"]));
            for k in 0..4 {
                assert!(
                    (bd[k] - bt[k]).abs() <= BOX_TOLERANCE,
                    "{frame}: box {bd:?} vs reference {bt:?}"
                );
            }
        }
        for (i, t) in theirs.iter().enumerate() {
            if !used[i] {
                assert_borderline(t, threshold, frame, "the reference");
            }
        }
    }
    assert!(compared >= 8, "compared {compared} detections");
}

#[test]
fn classifier_matches_the_reference_scores() {
    let manifest = "models/shapes-classifier.toml";
    let ours = lookout_records(manifest, "tests/images/classify");
    let theirs = reference(manifest, "tests/images/classify");
    assert_eq!(ours.len(), theirs.len());
    assert!(!ours.is_empty());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a["frame"], b["frame"]);
        let (ca, cb) = (
            a["classes"].as_array().expect("ours"),
            b["classes"].as_array().expect("ref"),
        );
        assert_eq!(ca.len(), cb.len(), "{}", a["frame"]);
        for (x, y) in ca.iter().zip(cb) {
            assert_eq!(x["label_id"], y["label_id"], "{}", a["frame"]);
            assert!(
                (score(x) - score(y)).abs() <= SCORE_TOLERANCE,
                "{}: {x} vs {y}",
                a["frame"]
            );
        }
    }
}
