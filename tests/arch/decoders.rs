//! Every decoder on a real trained model: the bundled YOLOv8-layout detector re-headed into the
//! YOLOv5, SSD-corners and SSD-with-priors layouts (`tools/relayout.py`, which appends operators
//! after the unchanged network), and into the pose and end-to-end layouts. A correct decoder
//! finds the same objects in each layout.
//!
//! Needs `python3` with `tools/requirements-ref.txt` installed (`scripts/setup` does it).

use crate::common;
use crate::common::*;
use serde_json::Value;
use std::path::Path;

fn relayout(dir: &Path) {
    python_tool(
        "relayout.py",
        [Path::new("models/shapes-detector.toml"), dir],
    );
}

fn detections(manifest: &str) -> Vec<Vec<Value>> {
    common::detections(manifest, "tests/images/detect")
        .into_iter()
        .map(|d| d.as_array().expect("detections").clone())
        .collect()
}

#[test]
fn yolov5_and_ssd_layouts_decode_to_the_yolov8_detections() {
    let dir = tempfile::tempdir().expect("tempdir");
    relayout(dir.path());
    let expected = detections("models/shapes-detector.toml");
    let objects: usize = expected.iter().map(Vec::len).sum();
    assert!(objects >= 8, "the test scenes hold objects");
    for variant in ["v5", "ssd", "priors"] {
        let manifest = dir.path().join(format!("shapes-detector-{variant}.toml"));
        let got = detections(manifest.to_str().expect("utf8"));
        assert_eq!(got.len(), expected.len(), "{variant}");
        for (frame, (g, e)) in got.iter().zip(&expected).enumerate() {
            let context = format!("{variant}, frame {frame}");
            // Each YOLOv8 detection, found with the same label, score and box.
            let mut used = vec![false; g.len()];
            for b in e {
                let found = g.iter().position(|a| same(a, b));
                let i = found.unwrap_or_else(|| panic!("{context}: {b} missing from {g:?}"));
                used[i] = true;
            }
            // SSD decodes every class of a prior above the threshold, where YOLO keeps the best:
            // any extra detection must be a weaker second class on a box YOLOv8 also reports.
            for (a, _) in g.iter().zip(&used).filter(|(_, u)| !**u) {
                assert!(variant != "v5", "{context}: unexpected {a}");
                let twin = e
                    .iter()
                    .find(|b| boxes_equal(a, b) && a["label"] != b["label"]);
                let twin = twin.unwrap_or_else(|| panic!("{context}: {a} has no YOLOv8 twin"));
                assert!(score(a) < score(twin), "{context}: {a} outscores {twin}");
            }
        }
    }
}

fn score(d: &Value) -> f64 {
    d["score"].as_f64().expect("score")
}

fn boxes_equal(a: &Value, b: &Value) -> bool {
    let (ba, bb) = (json_box(&a["box"]), json_box(&b["box"]));
    (0..4).all(|k| (ba[k] - bb[k]).abs() < 0.01)
}

fn same(a: &Value, b: &Value) -> bool {
    a["label"] == b["label"] && (score(a) - score(b)).abs() < 1e-5 && boxes_equal(a, b)
}

/// A detection's keypoints as `[x, y, score]`.
fn with_keypoints(d: &Value) -> Vec<[f64; 3]> {
    d["keypoints"]
        .as_array()
        .expect("keypoints")
        .iter()
        .map(|k| [0, 1, 2].map(|i| k[i].as_f64().expect("keypoint value")))
        .collect()
}

#[test]
fn pose_and_end_to_end_layouts_decode_to_the_yolov8_detections_with_their_keypoints() {
    // pose: the YOLOv8 head plus two keypoints per candidate (its box's corners, visibility its
    // score), so NMS must carry each kept box's own keypoints. e2e: ONNX NonMaxSuppression in
    // the graph at the manifest's thresholds, so lookout must not suppress again and finds the
    // same boxes; e2e-pose: both.
    let dir = tempfile::tempdir().expect("tempdir");
    relayout(dir.path());
    let expected = detections("models/shapes-detector.toml");
    for variant in ["pose", "e2e", "e2e-pose"] {
        let manifest = dir.path().join(format!("shapes-detector-{variant}.toml"));
        let manifest = manifest.to_str().expect("utf8");
        let got = detections(manifest);
        assert_eq!(got.len(), expected.len(), "{variant}");
        for (frame, (g, e)) in got.iter().zip(&expected).enumerate() {
            let context = format!("{variant}, frame {frame}");
            assert_eq!(g.len(), e.len(), "{context}: {g:?} vs {e:?}");
            for (a, b) in g.iter().zip(e) {
                assert!(same(a, b), "{context}: {a} vs {b}");
                if variant == "e2e" {
                    assert!(a.get("keypoints").is_none(), "{context}: {a}");
                    continue;
                }
                let [x0, y0, x1, y1] = json_box(&a["box"]);
                let want = [[x0, y0, score(a)], [x1, y1, score(a)]];
                let points = with_keypoints(a);
                assert_eq!(points.len(), 2, "{context}: {a}");
                for (p, w) in points.iter().zip(&want) {
                    assert!(
                        (0..3).all(|i| (p[i] - w[i]).abs() < 0.01),
                        "{context}: keypoints {points:?}, corners {want:?}"
                    );
                }
            }
        }
        // The numpy reference decoder, on onnxruntime's tensors of the same file.
        let theirs = json_lines(&stdout(&python_tool(
            "reference.py",
            ["--manifest", manifest, "tests/images/detect"],
        )));
        assert_eq!(theirs.len(), got.len(), "{variant}");
        for (frame, (g, t)) in got.iter().zip(&theirs).enumerate() {
            let t = t["detections"].as_array().expect("reference detections");
            assert_eq!(g.len(), t.len(), "{variant}, frame {frame}");
            for (a, b) in g.iter().zip(t) {
                assert_eq!(a["label_id"], b["label_id"], "{variant}, frame {frame}");
                assert!((score(a) - score(b)).abs() < 1e-3, "{a} vs {b}");
                let (ba, bb) = (json_box(&a["box"]), json_box(&b["box"]));
                assert!((0..4).all(|k| (ba[k] - bb[k]).abs() <= 1.0), "{a} vs {b}");
                if variant != "e2e" {
                    for (p, q) in with_keypoints(a).iter().zip(with_keypoints(b)) {
                        assert!((0..3).all(|i| (p[i] - q[i]).abs() <= 1.0), "{a} vs {b}");
                    }
                }
            }
        }
    }
}
