//! Models lookout did not make, as tract meets them: each is tried in a child process (`lookout
//! verify-model`) before `check`, `inspect`, `model install` or `run` trusts it, so a model that
//! makes tract panic is that model's error, one line, never an abort; a model tract refuses is
//! refused by `check` with tract's reason; and an exporter's conflicting `value_info` no longer
//! stops a model onnxruntime runs. The models are built by `tools/odd-models`.

use crate::common;
use crate::common::{assert_clean_failure, json_lines, lookout, repo, stderr, stdout};
use std::path::{Path, PathBuf};

/// `tests/fixtures/odd-models/<name>.onnx` copied into `dir` with a manifest written for it:
/// the bundled classifier's (same input and output), renamed, its hash and size the file's.
fn with_manifest(dir: &Path, name: &str) -> PathBuf {
    let onnx = std::fs::read(repo(&format!("tests/fixtures/odd-models/{name}.onnx")))
        .expect("odd model (tools/odd-models writes them)");
    std::fs::write(dir.join(format!("{name}.onnx")), &onnx).expect("copy model");
    let text = std::fs::read_to_string(repo("models/shapes-classifier.toml")).expect("manifest");
    let text = text[..text.find("[profile]").unwrap_or(text.len())]
        .replace("shapes-classifier", name)
        .replace("quantization = \"int8-weights\"", "quantization = \"fp32\"");
    let text = common::rewrite_key(
        &text,
        "sha256",
        &format!("{:?}", lookout::budget::sha256_hex(&onnx)),
    );
    let text = common::rewrite_key(&text, "bytes", &onnx.len().to_string());
    let manifest = dir.join(format!("{name}.toml"));
    std::fs::write(&manifest, text).expect("write manifest");
    manifest
}

#[test]
fn a_model_that_makes_tract_panic_is_its_error_everywhere_never_an_abort() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = with_manifest(dir.path(), "maxpool-zero-kernel");
    let onnx = dir.path().join("maxpool-zero-kernel.onnx");

    // inspect reports what the file declares, and tract's verdict as the model's.
    let out = lookout(&["inspect", &onnx.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("operators:    Conv×1, Flatten×1, GlobalAveragePool×1, MaxPool×1, Relu×1"),
        "{text}"
    );
    let verdict = text
        .lines()
        .find(|l| l.starts_with("tract:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        verdict.contains("REFUSED:")
            && verdict.contains("maxpool-zero-kernel.onnx: tract crashes on this model (a panic: ")
            && verdict.contains(", at tract-core-0.23.9/src/ops/cnn/"),
        "{verdict}"
    );

    // check, install and run refuse it with one line naming the file, and exit 1.
    let path = manifest.to_string_lossy().into_owned();
    let needles = ["maxpool-zero-kernel.onnx: tract crashes on this model (a panic: "];
    for args in [
        vec!["check", "-m", path.as_str()],
        vec!["run", "-m", path.as_str(), "-s", "tests/images/classify"],
    ] {
        let out = lookout(&args);
        assert_clean_failure(&out, &needles);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    }
    let root = dir.path().join("slots");
    let root = root.to_string_lossy();
    let out = lookout(&["model", "install", &path, "--root", &root]);
    assert_clean_failure(&out, &["installing", needles[0]]);
    let list = stdout(&lookout(&["model", "list", "--root", &root]));
    assert!(list.starts_with("no model installed"), "{list}");
}

#[test]
fn check_refuses_a_model_tract_cannot_load_with_tracts_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = with_manifest(dir.path(), "gemm-one-input");
    let out = lookout(&["check", "-m", &manifest.to_string_lossy()]);
    assert_clean_failure(
        &out,
        &[
            "gemm-one-input.onnx: tract cannot load the model",
            "Gemm",
            "Wrong input number",
        ],
    );
}

#[test]
fn a_symbolic_batch_in_value_info_no_longer_stops_a_model_onnxruntime_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = with_manifest(dir.path(), "value-info-batch");
    let path = manifest.to_string_lossy();
    let out = lookout(&["check", "-m", &path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("ok: value-info-batch@2.1.0") && text.contains("; runs: loaded in "),
        "{text}"
    );
    let out = lookout(&["run", "-m", &path, "-s", "tests/images/classify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records = json_lines(&stdout(&out));
    let images = std::fs::read_dir(repo("tests/images/classify"))
        .expect("images")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png"))
        })
        .count();
    assert_eq!(records.len(), images);
    for r in &records {
        let classes = r["classes"].as_array().expect("classes");
        assert_eq!(classes.len(), 3, "{r}");
        let total: f64 = classes
            .iter()
            .map(|c| c["score"].as_f64().expect("score"))
            .sum();
        assert!((total - 1.0).abs() < 1e-4, "softmax over 3 classes: {r}");
    }
}

#[test]
fn inspect_shows_the_labels_an_export_carries_in_its_metadata() {
    let out = lookout(&["inspect", "tests/fixtures/odd-models/names-metadata.onnx"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\nmetadata:     imgsz, names, task\n"),
        "{text}"
    );
    assert!(
        text.contains("\nlabels:       3 from metadata `names`: cat, dog's bowl, bird\n"),
        "{text}"
    );
    assert!(
        text.contains("tract:        loads and optimizes; outputs logits [1, 3]"),
        "{text}"
    );
}

/// Models lookout cannot feed or read are refused by `check` with one line naming the file and
/// the manifest field (or the output) that does not fit, before anything loads them.
#[test]
fn models_lookout_cannot_feed_or_read_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, needles) in [
        (
            "two-inputs",
            &["two-inputs.onnx: the graph has 2 inputs; lookout feeds exactly one image", "field `input.name`"][..],
        ),
        (
            "string-input",
            &["string-input.onnx: input \"images\" is string in the graph, not float", "field `input.dtype`"][..],
        ),
        (
            "zero-input",
            &["zero-input.toml: field `input.shape`: [1, 3, 0, 0] has a zero dimension"][..],
        ),
        (
            "four-classes",
            &["four-classes.onnx: output `logits`: classify expects [1, 3] (one score per label), got [1, 4]"][..],
        ),
    ] {
        let manifest = with_manifest(dir.path(), name);
        if name == "zero-input" {
            // The manifest says what the graph declares.
            let text = std::fs::read_to_string(&manifest).expect("manifest");
            std::fs::write(&manifest, text.replace("shape = [1, 3, 64, 64]", "shape = [1, 3, 0, 0]"))
                .expect("rewrite");
        }
        let out = lookout(&["check", "-m", &manifest.to_string_lossy()]);
        assert_clean_failure(&out, needles);
        assert_eq!(out.status.code(), Some(1), "{name}");
    }
}

/// A manifest whose labels are not the ones the export carries (here in Ultralytics `names`)
/// is refused, naming both; with the carried labels it passes.
#[test]
fn labels_that_disagree_with_the_models_metadata_are_refused_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = with_manifest(dir.path(), "names-metadata");
    let out = lookout(&["check", "-m", &manifest.to_string_lossy()]);
    assert_clean_failure(
        &out,
        &[
            "names-metadata.toml field `labels` is [\"circle\", \"square\", \"triangle\"]",
            "names-metadata.onnx says in its metadata `names`: [\"cat\", \"dog's bowl\", \"bird\"]",
        ],
    );
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(
        &manifest,
        text.replace(
            "labels = [\"circle\", \"square\", \"triangle\"]",
            "labels = [\"cat\", \"dog's bowl\", \"bird\"]",
        ),
    )
    .expect("rewrite");
    let out = lookout(&["check", "-m", &manifest.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A fully convolutional model whose input sizes are all symbolic runs at the size its manifest
/// fixes, and its raw outputs are onnxruntime's on the same input (a frame already at the input
/// size, so pre-processing is only the scaling to 0..1).
#[test]
fn symbolic_input_sizes_are_fixed_by_the_manifest_and_agree_with_onnxruntime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let onnx = std::fs::read(repo("tests/fixtures/odd-models/dynamic-hw.onnx")).expect("model");
    std::fs::write(dir.path().join("dynamic-hw.onnx"), &onnx).expect("copy");
    let manifest = dir.path().join("dynamic-hw.toml");
    std::fs::write(
        &manifest,
        format!(
            "name = \"dynamic-hw\"\nversion = \"1.0.0\"\nlabels = []\n\n[model]\n\
             file = \"dynamic-hw.onnx\"\nsha256 = {:?}\nbytes = {}\n\n[input]\nname = \"images\"\n\
             shape = [1, 48, 64, 3]\ndtype = \"f32\"\nlayout = \"nhwc\"\n\n[preprocess]\n\
             resize = \"stretch\"\ninterpolation = \"bilinear\"\ncolor = \"rgb\"\n\
             scale = 0.00392156862745098\nmean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]\n\n\
             [output]\ndecoder = \"raw\"\nvalues = 16\n",
            lookout::budget::sha256_hex(&onnx),
            onnx.len()
        ),
    )
    .expect("manifest");
    // A frame at the input size: 64x48, a gradient in each channel.
    let frame = dir.path().join("frame.png");
    image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
    })
    .save(&frame)
    .expect("frame");
    let out = lookout(&[
        "run",
        "-m",
        &manifest.to_string_lossy(),
        "-s",
        &frame.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let record = &json_lines(&stdout(&out))[0];
    // 48x64 → Conv (same) → MaxPool 3x3 stride 2 → 23x31.
    assert_eq!(
        record["outputs"],
        serde_json::json!([[1, 4, 23, 31]]),
        "{record}"
    );
    let ours: Vec<f64> = record["values"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    assert_eq!(ours.len(), 16);
    let script = "import sys, numpy as np, onnxruntime as ort\n\
                  from PIL import Image\n\
                  x = np.asarray(Image.open(sys.argv[2]).convert('RGB'), np.float32)[None] / 255.0\n\
                  y = ort.InferenceSession(sys.argv[1]).run(None, {'images': x})[0]\n\
                  print(' '.join(repr(float(v)) for v in y.reshape(-1)[:16]))";
    let reference = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.path().join("dynamic-hw.onnx"))
        .arg(&frame)
        .output()
        .expect("python3 runs (scripts/setup installs onnxruntime)");
    assert!(reference.status.success(), "{}", stderr(&reference));
    let theirs: Vec<f64> = stdout(&reference)
        .split_whitespace()
        .map(|v| v.parse().expect("number"))
        .collect();
    assert_eq!(theirs.len(), 16);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert!(
            (a - b).abs() < 1e-5,
            "value {i}: {a} here, {b} in onnxruntime"
        );
    }
}
