//! `lookout eval` end to end: real model, real images, labels on disk, the real binary — and
//! its mAP held to pycocotools' on the same detections (`tools/coco_eval.py`).
//!
//! Needs `python3` with `tools/requirements-ref.txt` installed (`scripts/setup` does it).

use crate::common;
use crate::common::{assert_clean_failure, lookout, python_tool, repo, stdout};
use serde_json::Value;
use std::path::Path;

/// Copies the detector test scenes into `dir`, then spoils some labels so the set has misses,
/// false alarms, a background image and loose boxes: a perfect score would test nothing.
fn spoiled_detection_set(dir: &Path) {
    for entry in std::fs::read_dir(repo("tests/images/detect")).expect("test scenes") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
    }
    let edit = |name: &str, change: &dyn Fn(Vec<Vec<f64>>) -> Vec<Vec<f64>>| {
        let path = dir.join(name);
        let rows: Vec<Vec<f64>> = std::fs::read_to_string(&path)
            .expect("labels")
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .map(|f| f.parse().expect("number"))
                    .collect()
            })
            .collect();
        let text: String = change(rows)
            .iter()
            .map(|r| format!("{} {} {} {} {}\n", r[0] as usize, r[1], r[2], r[3], r[4]))
            .collect();
        std::fs::write(&path, text).expect("write labels");
    };
    // Wrong class: one miss and one false alarm.
    edit("scene_0.txt", &|mut r| {
        r[0][0] = ((r[0][0] as usize + 1) % 3) as f64;
        r
    });
    // An object the model cannot find.
    edit("scene_1.txt", &|mut r| {
        r.push(vec![0.0, 0.06, 0.06, 0.1, 0.1]);
        r
    });
    // A box 15 % too wide: still a hit at IoU 0.5 (the detector's boxes on these scenes have
    // IoU > 0.6), a miss at the strict thresholds.
    edit("scene_2.txt", &|mut r| {
        r[0][3] *= 1.15;
        r
    });
    // No label file: a background image, so every detection there is a false alarm.
    std::fs::remove_file(dir.join("scene_3.txt")).expect("remove");
}

fn eval_json(args: &[&str]) -> Value {
    let out = lookout(&[&["eval", "--json"], args].concat());
    assert!(
        out.status.success(),
        "eval failed: {}",
        common::stderr(&out)
    );
    serde_json::from_str(&stdout(&out)).expect("eval prints JSON")
}

fn pycocotools(data: &Path, detections: &Path) -> Value {
    let out = python_tool("coco_eval.py", [data, detections]);
    serde_json::from_slice(&out.stdout).expect("coco_eval.py prints JSON")
}

#[test]
fn detector_map_equals_pycocotools_on_a_set_with_mistakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("set");
    std::fs::create_dir(&data).expect("mkdir");
    spoiled_detection_set(&data);
    let data_arg = data.to_str().expect("utf8");

    let report = eval_json(&["--data", data_arg]);
    assert_eq!(report["task"], "detection");
    assert_eq!(report["images"], 8);
    assert_eq!(report["unlabelled"], 1);
    let map = &report["map"];
    let ours = |k: &str| map[k].as_f64().expect("number");

    // The same detections lookout evaluated, written by `lookout run` at eval settings.
    let detections = dir.path().join("dets.jsonl");
    let sink = format!("file:{}", detections.display());
    let run = lookout(&[
        "run",
        "--source",
        data_arg,
        "--score",
        "0.001",
        "--max-detections",
        "100",
        "--sink",
        &sink,
    ]);
    assert!(run.status.success(), "{}", common::stderr(&run));
    let coco = pycocotools(&data, &detections);
    for key in ["map50", "map75", "map50_95"] {
        let theirs = coco[key].as_f64().expect("number");
        assert!(
            (ours(key) - theirs).abs() < 1e-9,
            "{key}: lookout {} vs pycocotools {theirs}",
            ours(key)
        );
    }
    // The spoilt labels really bite, at every threshold and most at the strict ones.
    assert!(ours("map50") < 0.95 && ours("map50") > 0.5, "{map}");
    assert!(
        ours("map50_95") < ours("map75") && ours("map75") <= ours("map50"),
        "{map}"
    );

    // At the manifest's threshold: the wrong-class object and the invented one are missed,
    // the wrongly classed detection and everything on the background image are false alarms.
    let op = &report["operating_point"];
    let objects = report["objects"].as_u64().expect("objects");
    assert_eq!(op["score"].as_f64(), Some(0.25));
    assert_eq!(op["missed"], 2, "{op}");
    assert_eq!(
        op["true_positives"].as_u64().expect("tp"),
        objects - 2,
        "{op}"
    );
    assert!(op["false_positives"].as_u64().expect("fp") >= 2, "{op}");
}

#[test]
fn clean_test_scenes_score_full_map50() {
    let report = eval_json(&["--data", "tests/images/detect"]);
    let labelled: usize = std::fs::read_dir(repo("tests/images/detect"))
        .expect("test scenes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt") && !p.ends_with("labels.txt"))
        .map(|p| {
            let text = std::fs::read_to_string(p).expect("labels");
            text.lines().filter(|l| !l.trim().is_empty()).count()
        })
        .sum();
    assert!(labelled >= 8, "{labelled} objects in the test scenes");
    assert_eq!(report["objects"].as_u64(), Some(labelled as u64));
    let map50 = report["map"]["map50"].as_f64().expect("number");
    assert!((map50 - 1.0).abs() < 1e-12, "mAP@0.5 {map50}");
    let strict = report["map"]["map50_95"].as_f64().expect("number");
    // Boxes are good but not pixel-perfect: well above 0.7, below 1.
    assert!(strict > 0.7 && strict < 1.0, "mAP@0.5:0.95 {strict}");
    assert_eq!(report["operating_point"]["false_positives"], 0);
}

#[test]
fn classifier_top1_and_confusion_on_an_image_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(repo("tests/images/classify")).expect("test images") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let Some((label, _)) = name.split_once('_') else {
            continue;
        };
        // One circle filed under "square": the model is right, the label is not.
        let folder = if name == "circle_0.png" {
            "square"
        } else {
            label
        };
        std::fs::create_dir_all(dir.path().join(folder)).expect("mkdir");
        std::fs::copy(&path, dir.path().join(folder).join(&name)).expect("copy");
    }
    let report = eval_json(&[
        "--model",
        "shapes-classifier",
        "--data",
        dir.path().to_str().expect("utf8"),
    ]);
    assert_eq!(report["task"], "classification");
    let acc = &report["accuracy"];
    assert_eq!(acc["images"], 12);
    assert!(
        (acc["top1"].as_f64().expect("top1") - 11.0 / 12.0).abs() < 1e-12,
        "{acc}"
    );
    assert_eq!(
        acc["top5"].as_f64(),
        Some(1.0),
        "3 classes: always in the top 5"
    );
    // Row = truth (square), column = prediction (circle).
    assert_eq!(acc["confusion"][1][0], 1, "{acc}");
    assert_eq!(acc["confusion"][0][0], 3, "{acc}");
}

#[test]
fn a_bad_label_line_stops_eval_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    spoiled_detection_set(dir.path());
    std::fs::write(
        dir.path().join("scene_5.txt"),
        "1 0.5 0.5 0.2 0.2\n1 96 64 20 20\n",
    )
    .expect("write");
    let out = lookout(&["eval", "--data", dir.path().to_str().expect("utf8")]);
    assert_clean_failure(
        &out,
        &[
            "scene_5.txt:2:",
            "cx 96 is outside 0..1",
            "normalised to the image size",
        ],
    );
}

#[test]
fn a_classifier_set_with_an_unknown_class_folder_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("hexagon")).expect("mkdir");
    let out = lookout(&[
        "eval",
        "--model",
        "shapes-classifier",
        "--data",
        dir.path().to_str().expect("utf8"),
    ]);
    assert_clean_failure(
        &out,
        &[
            "hexagon",
            "is not one of the model's labels (circle, square, triangle)",
        ],
    );
}

#[test]
fn a_missing_set_is_named() {
    let out = lookout(&["eval", "--data", "no/such/set"]);
    assert_clean_failure(&out, &["no/such/set"]);
}

/// A labelled set in a temporary folder: the named photos from the third-party cache (see
/// scripts/fetch-thirdparty) with their committed labels from tests/real-photos/.
fn real_photo_set(photos: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let labels = repo("tests/real-photos");
    for name in photos {
        let photo = repo(".cache/thirdparty/shapes-photos").join(name);
        assert!(
            photo.is_file(),
            "{} is missing: run scripts/setup (it runs scripts/fetch-thirdparty)",
            photo.display()
        );
        std::fs::copy(&photo, dir.path().join(name)).expect("copy photo");
        let txt = Path::new(name).with_extension("txt");
        std::fs::copy(labels.join(&txt), dir.path().join(&txt)).expect("copy labels");
    }
    std::fs::copy(labels.join("labels.txt"), dir.path().join("labels.txt"))
        .expect("copy labels.txt");
    dir
}

#[test]
fn detector_on_a_real_photo_of_coins() {
    // A real photograph, unlike anything in training: 24 coins (circles) in greyscale.
    let dir = real_photo_set(&["coins.png"]);
    let report = eval_json(&["--data", dir.path().to_str().expect("utf8")]);
    assert_eq!(report["objects"], 24);
    let circles = &report["map"]["classes"][0];
    let ap50 = circles["ap50"].as_f64().expect("AP@0.5");
    // Measured 0.996 with the shipped detector 2.1.0 (2.0.0: 0.96; before photo textures
    // were added to training: 0.90).
    assert!(ap50 >= 0.95, "circle AP@0.5 on coins.png fell to {ap50}");
    let op = &report["operating_point"];
    let recall = op["recall"].as_f64().expect("recall");
    assert!(
        recall >= 0.8,
        "recall at the manifest threshold fell to {recall}: {op}"
    );
    // Some coins are also called squares or triangles (5 false detections measured).
    let false_alarms = op["false_positives"].as_u64().expect("fp");
    assert!(
        false_alarms <= 8,
        "{false_alarms} false detections on coins.png: {op}"
    );
}

#[test]
fn detector_on_real_photos_of_squares() {
    // The nine ruled blocks of a newspaper sudoku and a backlit square panel.
    let dir = real_photo_set(&["light-panel.jpg", "sudoku.png"]);
    let report = eval_json(&["--data", dir.path().to_str().expect("utf8")]);
    assert_eq!(report["objects"], 10);
    let ap50 = report["map"]["classes"][1]["ap50"]
        .as_f64()
        .expect("AP@0.5");
    // Measured 0.69 with the shipped detector 2.1.0 (2.0.0: 0.67 with the pyramids in the set).
    assert!(ap50 >= 0.6, "square AP@0.5 on real photos fell to {ap50}");
    let op = &report["operating_point"];
    let found = op["true_positives"].as_u64().expect("tp");
    let false_alarms = op["false_positives"].as_u64().expect("fp");
    assert!(found >= 5, "{found} of 10 found (5 measured): {op}");
    assert!(
        false_alarms <= 3,
        "{false_alarms} false detections (2 measured): {op}"
    );
}

#[test]
fn detector_on_real_photos_of_pyramids() {
    // Every pyramid in the packaged photos whose outline is whole: the Red Pyramid filling the
    // frame, its base lost in sand of its own colour; the Louvre pyramid at dusk and by day, a
    // glass lattice in front of a lit building; the front pyramid of Giza, others behind it.
    let dir = real_photo_set(&[
        "red-pyramid.png",
        "louvre-pyramid.png",
        "louvre-day.png",
        "giza.png",
    ]);
    let report = eval_json(&["--data", dir.path().to_str().expect("utf8")]);
    assert_eq!(report["objects"], 4);
    let triangles = &report["map"]["classes"][2];
    let ap50 = triangles["ap50"].as_f64().expect("AP@0.5");
    // Measured 0.55 with the shipped detector 2.1.0 (Red Pyramid and Giza found, both Louvre
    // photos not); 2.0.0, trained on equilateral triangles only, scored 0.03.
    assert!(
        ap50 >= 0.5,
        "triangle AP@0.5 on real pyramids fell to {ap50}"
    );
    let op = &report["operating_point"];
    let found = op["true_positives"].as_u64().expect("tp");
    assert!(found >= 2, "{found} of 4 pyramids found (2 measured): {op}");
}
