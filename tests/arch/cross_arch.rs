//! lookout's outputs on the bundled models, every variant of them, and the test images, against
//! the outputs recorded from an x86_64 build (`tests/fixtures/x86-outputs/`).
//!
//! On x86_64 this guards against unnoticed changes in what lookout reports. Built for an ARM
//! target and run under qemu-user (`scripts/test-cross`), it is the check that tract's ARM
//! kernels (NEON, the 32-bit ones for armv7) give the same answers: same labels and order,
//! boxes within 1 pixel, scores within 1e-4.
//!
//! After a deliberate change (a retrained model, a new decoder), re-record on x86_64 with
//! `LOOKOUT_RECORD_X86=1 cargo test --test arch cross_arch::` and commit the files.

use crate::common;
use crate::common::*;
use serde_json::Value;

const SCORE_TOLERANCE: f64 = 1e-4;
const BOX_TOLERANCE: f64 = 1.0;

/// (recording name, model manifest, image folder)
fn cases() -> Vec<(String, String, &'static str)> {
    let mut cases = Vec::new();
    for model in ["shapes-detector", "shapes-classifier"] {
        let images = if model.ends_with("detector") {
            "tests/images/detect"
        } else {
            "tests/images/classify"
        };
        cases.push((model.to_string(), format!("models/{model}.toml"), images));
        for variant in ["fp32", "fp16", "int8-weights", "int8-qdq", "int8-qoperator"] {
            cases.push((
                format!("{model}-{variant}"),
                format!("models/variants/{model}-{variant}.toml"),
                images,
            ));
        }
    }
    cases
}

/// What is compared: everything lookout reports about a frame except when and how fast.
fn comparable(mut record: Value) -> Value {
    if let Some(map) = record.as_object_mut() {
        map.remove("timestamp");
        map.remove("latency_ms");
    }
    record
}

fn run(manifest: &str, images: &str) -> Vec<Value> {
    let out = lookout(&["run", "--model", manifest, "--source", images]);
    assert!(out.status.success(), "{manifest}: {}", stderr(&out));
    json_lines(&stdout(&out))
        .into_iter()
        .map(comparable)
        .collect()
}

/// Walks both values in step: same keys, same strings, same array lengths; numbers within the
/// tolerance of the field they are in (`box` coordinates in pixels, everything else 1e-4).
fn assert_close(ours: &Value, x86: &Value, path: &str, in_box: bool) {
    match (ours, x86) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().expect("number"), b.as_f64().expect("number"));
            let tolerance = if in_box {
                BOX_TOLERANCE
            } else {
                SCORE_TOLERANCE
            };
            assert!(
                (a - b).abs() <= tolerance,
                "{path}: {a} here, {b} on x86_64 (tolerance {tolerance})"
            );
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: {ours} here, {x86} on x86_64");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_close(x, y, &format!("{path}[{i}]"), in_box);
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(a), keys(b), "{path}: fields differ");
            for (k, x) in a {
                assert_close(x, &b[k], &format!("{path}.{k}"), in_box || k == "box");
            }
        }
        _ => assert_eq!(ours, x86, "{path}"),
    }
}

#[test]
fn outputs_match_the_recorded_x86_outputs() {
    let record = std::env::var_os("LOOKOUT_RECORD_X86").is_some();
    if record {
        assert_eq!(
            std::env::consts::ARCH,
            "x86_64",
            "the recorded outputs are x86_64's"
        );
    }
    let dir = repo("tests/fixtures/x86-outputs");
    let mut frames = 0;
    let cases = cases();
    // One model form per core: each is a lookout process, single-threaded under qemu-user.
    let outputs = common::par_map(&cases, |(_, manifest, images)| run(manifest, images));
    for ((name, _, _), ours) in cases.iter().zip(outputs) {
        let file = dir.join(format!("{name}.jsonl"));
        if record {
            std::fs::create_dir_all(&dir).expect("fixture folder");
            let text: String = ours.iter().map(|r| format!("{r}\n")).collect();
            std::fs::write(&file, text).expect("write recording");
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (record with LOOKOUT_RECORD_X86=1 on x86_64)",
                file.display()
            )
        });
        let x86 = json_lines(&text);
        assert_eq!(ours.len(), x86.len(), "{name}: frame count");
        for (a, b) in ours.iter().zip(&x86) {
            assert_close(a, b, &format!("{name} {}", b["frame"]), false);
        }
        frames += ours.len();
    }
    if !record {
        // 2 models x 6 forms: 8 scenes for the detector forms, 12 crops for the classifier's.
        assert_eq!(frames, 6 * 8 + 6 * 12);
    }
}
