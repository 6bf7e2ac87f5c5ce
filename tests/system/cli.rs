//! The `lookout` binary on the bundled models and real image files: correct answers, and a
//! clear one-line error for every kind of bad input.

use crate::common;
use crate::common::*;
use std::path::Path;

/// Ground truth of a detection test image: `(class, [x0, y0, x1, y1])` in pixels.
fn ground_truth(image: &Path) -> Vec<(usize, [f64; 4])> {
    let (w, h) = image::image_dimensions(image).expect("test image readable");
    let (w, h) = (f64::from(w), f64::from(h));
    let text =
        std::fs::read_to_string(image.with_extension("txt")).expect("label file beside image");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<f64> = l
                .split_whitespace()
                .map(|x| x.parse().expect("number"))
                .collect();
            let (cx, cy, bw, bh) = (v[1] * w, v[2] * h, v[3] * w, v[4] * h);
            (
                v[0] as usize,
                [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0],
            )
        })
        .collect()
}

#[test]
fn detector_finds_every_object_in_the_test_scenes() {
    let out = lookout(&["run", "--source", "tests/images/detect"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records = json_lines(&stdout(&out));
    let dir = repo("tests/images/detect");
    let mut images: Vec<_> = std::fs::read_dir(&dir)
        .expect("detect dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .collect();
    images.sort();
    assert_eq!(records.len(), images.len(), "one record per image");
    let mut matched = 0;
    let mut total = 0;
    for (seq, (record, image)) in records.iter().zip(&images).enumerate() {
        assert_eq!(record["seq"], seq as u64);
        assert_eq!(record["model"], "shapes-detector@2.1.0");
        let name = image.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(record["frame"], name);
        let detections = record["detections"].as_array().expect("detections");
        for (class, truth) in ground_truth(image) {
            total += 1;
            let found = detections
                .iter()
                .any(|d| d["label_id"] == class as u64 && iou(json_box(&d["box"]), truth) > 0.5);
            if found {
                matched += 1;
            } else {
                eprintln!("{name}: missed class {class} at {truth:?}; got {detections:?}");
            }
        }
    }
    assert!(total >= 8, "the test scenes hold objects");
    assert_eq!(
        matched, total,
        "every ground-truth object detected with IoU > 0.5"
    );
}

#[test]
fn classifier_labels_every_test_image() {
    let out = lookout(&[
        "run",
        "--model",
        "models/shapes-classifier.toml",
        "--source",
        "tests/images/classify",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records = json_lines(&stdout(&out));
    assert!(records.len() >= 9, "at least three images per class");
    for record in &records {
        let frame = record["frame"].as_str().expect("frame");
        let expected = frame.split('_').next().expect("label prefix");
        let classes = record["classes"].as_array().expect("classes");
        assert_eq!(classes.len(), 3, "top_k = 3");
        assert_eq!(classes[0]["label"], expected, "{frame}: {classes:?}");
        let total: f64 = classes
            .iter()
            .map(|c| c["score"].as_f64().expect("score"))
            .sum();
        assert!(
            (total - 1.0).abs() < 1e-4,
            "softmax over all 3 classes sums to 1: {total}"
        );
        assert!(record.get("detections").is_none());
    }
}

#[test]
fn records_follow_the_documented_schema() {
    let out = lookout(&["run", "--source", "pattern:320x240", "--max-frames", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records = json_lines(&stdout(&out));
    assert_eq!(records.len(), 3);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as u64);
        assert_eq!(r["frame"], format!("pattern-{i}"));
        assert_eq!(r["frame_size"], serde_json::json!([320, 240]));
        let ts = r["timestamp"].as_str().expect("timestamp");
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
        for stage in ["capture", "pre", "infer", "post"] {
            assert!(r["latency_ms"][stage].as_f64().expect(stage) >= 0.0);
        }
        assert!(r["latency_ms"]["infer"].as_f64().expect("infer") > 0.0);
        assert!(r["detections"].is_array());
    }
}

/// The records of the bundled detector and classifier on the test images, as text: what a
/// program reading lookout's stdout sees, field order included, apart from timing.
#[test]
fn records_are_the_recorded_golden_transcript() {
    for (name, images) in [
        ("shapes-detector", "tests/images/detect"),
        ("shapes-classifier", "tests/images/classify"),
    ] {
        let manifest = format!("models/{name}.toml");
        let out = lookout(&["run", "-m", &manifest, "--source", images]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text: String = stdout(&out)
            .lines()
            .map(|l| common::without_timing(l) + "\n")
            .collect();
        common::assert_golden(&format!("run-{name}.jsonl"), &text);
    }
}

#[test]
fn thresholds_from_the_command_line_apply() {
    let strict = lookout(&["run", "--source", "tests/images/detect", "--score", "1.0"]);
    assert!(strict.status.success(), "{}", stderr(&strict));
    for r in json_lines(&stdout(&strict)) {
        assert_eq!(
            r["detections"],
            serde_json::json!([]),
            "nothing scores above 1.0"
        );
    }
    let one = lookout(&[
        "run",
        "--source",
        "tests/images/detect",
        "--max-detections",
        "1",
    ]);
    assert!(one.status.success(), "{}", stderr(&one));
    for r in json_lines(&stdout(&one)) {
        assert!(r["detections"].as_array().expect("array").len() <= 1);
    }
    let bad = lookout(&["run", "--source", "tests/images/detect", "--score", "1.5"]);
    assert_clean_failure(&bad, &["--score 1.5"]);
}

#[test]
fn file_sink_gets_the_same_records_as_stdout_and_rotates_under_its_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("results.jsonl");
    let rotated = dir.path().join("rotated.jsonl");
    let out = lookout_command()
        .env("LOOKOUT_LOG", "info")
        .args([
            "run",
            "--source",
            "tests/images/detect",
            "--loop",
            "--max-frames",
            "30",
            "--sink",
            &format!("file:{}", path.display()),
            "--sink",
            &format!("file:{},max_bytes=2k,keep=2", rotated.display()),
            "--sink",
            "stdout",
        ])
        .output()
        .expect("the lookout binary runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rotated at 2048 bytes, 2 kept, at most 6144 bytes"),
        "{}",
        stderr(&out)
    );
    let from_file = json_lines(&std::fs::read_to_string(&path).expect("sink file"));
    let from_stdout = json_lines(&stdout(&out));
    assert_eq!(from_file.len(), 30);
    assert_eq!(from_file, from_stdout);
    // 30 records of some 500 bytes pass 2 KiB several times: the newest records, whole and in
    // order, in three files of at most 2 KiB each, and nothing older.
    let mut kept = Vec::new();
    for name in ["rotated.jsonl.2", "rotated.jsonl.1", "rotated.jsonl"] {
        let text = std::fs::read_to_string(dir.path().join(name)).expect(name);
        assert!(text.len() <= 2048, "{name}: {} bytes", text.len());
        kept.extend(json_lines(&text));
    }
    assert!(!dir.path().join("rotated.jsonl.3").exists());
    assert!(kept.len() < 30, "{} records kept", kept.len());
    assert_eq!(kept[..], from_stdout[30 - kept.len()..]);
    let bad = lookout(&[
        "run",
        "--source",
        "tests/images/detect",
        "--sink",
        &format!("file:{},maxbytes=2k", rotated.display()),
    ]);
    assert_clean_failure(
        &bad,
        &["maxbytes", "unknown option", "known: max_bytes, keep"],
    );
}

#[test]
fn check_passes_for_the_default_build_and_names_everything() {
    let out = lookout(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("ok: shapes-detector@2.1.0"), "{text}");
    assert!(text.contains("board host (boards/host.toml)"), "{text}");
    let out = lookout(&[
        "check",
        "--board",
        "rpi-zero-2w",
        "--model",
        "shapes-classifier",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("fits board rpi-zero-2w"));
}

#[test]
fn check_refuses_an_over_budget_model_naming_model_size_budget_and_board() {
    let out = lookout(&[
        "check",
        "--board",
        "tests/fixtures/boards/tiny.toml",
        "--model",
        "shapes-detector",
    ]);
    let size = std::fs::metadata(repo("models/shapes-detector.onnx"))
        .expect("model")
        .len();
    assert_clean_failure(
        &out,
        &[
            "shapes-detector@2.1.0",
            &format!("is {size} bytes"),
            "model budget of 1024 bytes",
            "board tiny (tests/fixtures/boards/tiny.toml)",
        ],
    );
}

#[test]
fn inspect_reports_the_model() {
    let out = lookout(&["inspect", "models/shapes-detector.onnx"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("input:        images float [1, 3, 128, 128]"),
        "{text}"
    );
    assert!(text.contains("output:       output0 float"), "{text}");
    assert!(text.contains("Conv×"), "{text}");
    // The shipped detector stores its weights as int8 (tools/model-table chose it).
    assert!(text.contains("DequantizeLinear×"), "{text}");
    assert!(text.contains("quantization: weight-only int8"), "{text}");
    assert!(
        text.contains("tract:        loads and optimizes; outputs output0 [1, 7, "),
        "{text}"
    );
    // tract folds the dequantization into float weights at load: none is left to run.
    let runs = text
        .lines()
        .find_map(|l| l.strip_prefix("tract runs:"))
        .unwrap_or_else(|| panic!("no `tract runs` line: {text}"));
    assert!(runs.contains("OptMatMul×"), "{runs}");
    assert!(!runs.contains("Dequantize"), "{runs}");
    assert!(
        text.contains("manifest:     shapes-detector@2.1.0 beside it"),
        "{text}"
    );
}

#[test]
fn inspect_of_garbage_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("garbage.onnx");
    std::fs::write(&path, [0xffu8; 64]).expect("write");
    let out = lookout(&["inspect", path.to_str().expect("utf8")]);
    assert_clean_failure(&out, &["garbage.onnx", "not a valid ONNX protobuf"]);
}

// ---- bad input: each a single error line naming the file and the field ----

#[test]
fn missing_model_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = copy_model("shapes-detector", dir.path());
    std::fs::remove_file(dir.path().join("shapes-detector.onnx")).expect("rm");
    let out = lookout(&["check", "--model", manifest.to_str().expect("utf8")]);
    assert_clean_failure(&out, &["shapes-detector.onnx", "cannot read model"]);
}

#[test]
fn missing_manifest() {
    let out = lookout(&[
        "run",
        "--model",
        "models/no-such-model.toml",
        "--source",
        "pattern",
    ]);
    assert_clean_failure(&out, &["models/no-such-model.toml", "cannot read manifest"]);
}

#[test]
fn corrupt_model_is_caught_by_its_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = copy_model("shapes-detector", dir.path());
    let onnx = dir.path().join("shapes-detector.onnx");
    let mut bytes = std::fs::read(&onnx).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&onnx, bytes).expect("write");
    let out = run_on_pattern(&manifest);
    assert_clean_failure(
        &out,
        &["shapes-detector.onnx: sha256 is", "field `model.sha256`"],
    );
}

#[test]
fn corrupt_model_with_a_matching_manifest_is_not_onnx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = copy_model("shapes-detector", dir.path());
    let onnx = dir.path().join("shapes-detector.onnx");
    let garbage = vec![0xffu8; 300];
    std::fs::write(&onnx, &garbage).expect("write");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let sha = lookout::budget::sha256_hex(&garbage);
    let text = common::rewrite_key(&text, "sha256", &format!("{sha:?}"));
    let text = common::rewrite_key(&text, "bytes", "300");
    std::fs::write(&manifest, text).expect("write");
    let out = lookout(&["check", "--model", manifest.to_str().expect("utf8")]);
    assert_clean_failure(&out, &["shapes-detector.onnx", "not a valid ONNX protobuf"]);
}

/// `lookout run` of a model from a manifest path on the test pattern.
fn run_on_pattern(manifest: &Path) -> std::process::Output {
    lookout(&[
        "run",
        "--model",
        manifest.to_str().expect("utf8"),
        "--source",
        "pattern",
    ])
}

#[test]
fn manifest_with_a_wrong_field_names_it() {
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "range",
            "[0.0, 2.0]",
            &["field `preprocess.range`", "[0.0, 2.0]"],
        ),
        ("resize", "\"squash\"", &["squash", "stretch"]),
        (
            "shape",
            "[1, 3, 96, 96]",
            &["field `input.shape`", "[1, 3, 96, 96]"],
        ),
        ("std", "[1.0, 0.0, 1.0]", &["field `preprocess.std`"]),
        ("layout", "\"nchw\"\nlayuot = \"nhwc\"", &["layuot"]),
    ];
    for (key, value, needles) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = copy_model("shapes-detector", dir.path());
        let text = std::fs::read_to_string(&manifest).expect("manifest");
        let edited = common::rewrite_key(&text, key, value);
        assert_ne!(edited, text, "key {key} present in the manifest");
        std::fs::write(&manifest, edited).expect("write");
        let out = lookout(&["check", "--model", manifest.to_str().expect("utf8")]);
        let mut all = vec!["shapes-detector.toml"];
        all.extend_from_slice(needles);
        assert_clean_failure(&out, &all);
    }
}

#[test]
fn a_manifest_claiming_the_wrong_quantization_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = copy_model("shapes-detector", dir.path());
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let actual = text
        .lines()
        .find_map(|l| l.strip_prefix("quantization = "))
        .expect("the shipped manifest declares its form")
        .trim_matches('"')
        .to_owned();
    let claim = if actual == "fp32" { "int8-qdq" } else { "fp32" };
    let cases = [
        (
            format!("\"{claim}\""),
            vec![
                format!("shapes-detector.onnx: the graph is {actual}"),
                format!("field `model.quantization` says {claim}"),
            ],
        ),
        (
            "\"int4\"".to_owned(),
            vec![
                "shapes-detector.toml".to_owned(),
                "int4".into(),
                "int8-weights".into(),
            ],
        ),
    ];
    for (value, needles) in cases {
        let edited = common::rewrite_key(&text, "quantization", &value);
        assert_ne!(edited, text);
        std::fs::write(&manifest, edited).expect("write");
        let out = lookout(&["check", "--model", manifest.to_str().expect("utf8")]);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_clean_failure(&out, &needles);
    }
}

#[test]
fn profile_is_measured_and_written_into_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = copy_model("shapes-detector", dir.path());
    let manifest_arg = manifest.to_str().expect("utf8");
    let out = lookout(&[
        "profile",
        "--model",
        manifest_arg,
        "--data",
        "tests/images/detect",
        "--write",
        "--describe",
        "test scenes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let table: toml::Value = toml::from_str(&text).expect("TOML");
    let p = &table["profile"];
    assert_eq!(p["data"].as_str(), Some("test scenes"));
    assert_eq!(p["frames"].as_integer(), Some(8));
    // The detector finds exactly the labelled objects of the test scenes (they were chosen so),
    // so detections per frame and class shares are those of the label files.
    let mut per_class = [0usize; 3];
    for entry in std::fs::read_dir(repo("tests/images/detect")).expect("test scenes") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "txt") && !path.ends_with("labels.txt") {
            for (class, _) in ground_truth(&path.with_extension("png")) {
                per_class[class] += 1;
            }
        }
    }
    let objects: usize = per_class.iter().sum();
    assert_eq!(
        p["detections_per_frame"].as_float(),
        Some(objects as f64 / 8.0)
    );
    let share: Vec<f64> = p["class_share"]
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_float().expect("float"))
        .collect();
    for (got, n) in share.iter().zip(per_class) {
        let want = (n as f64 / objects as f64 * 1e6).round() / 1e6;
        assert!((got - want).abs() < 1e-9, "{share:?} vs {per_class:?}");
    }
    let brightness_sum: f64 = p["brightness"]
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_float().expect("float"))
        .sum();
    assert!((brightness_sum - 1.0).abs() < 1e-5, "{brightness_sum}");
    // The rewritten manifest still passes the deployment check, and a second write replaces
    // the table instead of adding one.
    let check = lookout(&["check", "--model", manifest_arg]);
    assert!(check.status.success(), "{}", stderr(&check));
    let again = lookout(&[
        "profile",
        "--model",
        manifest_arg,
        "--data",
        "tests/images/detect",
        "--write",
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    assert_eq!(text.matches("[profile]").count(), 1, "{text}");

    // A profile that does not fit the model is refused naming the field.
    std::fs::write(
        &manifest,
        text.replace("class_share = [", "class_share = [0.0, "),
    )
    .expect("write");
    let out = lookout(&["check", "--model", manifest_arg]);
    assert_clean_failure(
        &out,
        &[
            "field `profile.class_share`",
            "has 4 values, the model has 3 labels",
        ],
    );
}

#[test]
fn image_that_is_not_an_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("photo.jpg");
    std::fs::write(&path, "this is text").expect("write");
    let out = lookout(&["run", "--source", path.to_str().expect("utf8")]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains(&format!("{}: not a readable image", path.display())),
        "{err}"
    );
    assert!(err.contains("1 of 1 frames could not be read"), "{err}");
    assert_eq!(stdout(&out), "", "no record for an unreadable frame");
}

#[test]
fn a_bad_file_in_a_folder_costs_only_its_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = repo("tests/images/detect");
    let first = std::fs::read_dir(&src)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .expect("a png");
    std::fs::copy(&first, dir.path().join("b.png")).expect("copy");
    std::fs::write(dir.path().join("a.png"), "not a png").expect("write");
    let out = lookout(&["run", "--source", dir.path().to_str().expect("utf8")]);
    assert!(
        !out.status.success(),
        "a lost frame makes the exit code non-zero"
    );
    let records = json_lines(&stdout(&out));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["frame"], "b.png");
    assert_eq!(
        records[0]["seq"], 1,
        "the skipped frame leaves a gap in the sequence"
    );
    assert!(stderr(&out).contains("a.png: not a readable image"));
}

#[test]
fn directory_with_no_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "hello").expect("write");
    let out = lookout(&["run", "--source", dir.path().to_str().expect("utf8")]);
    assert_clean_failure(
        &out,
        &[
            &dir.path().display().to_string(),
            "directory has no image files",
        ],
    );
}

#[test]
fn missing_source_and_bad_sink() {
    let out = lookout(&["run", "--source", "/no/such/dir"]);
    assert_clean_failure(&out, &["/no/such/dir", "No such file"]);
    let out = lookout(&[
        "run",
        "--source",
        "pattern",
        "--sink",
        "file:/no/such/dir/x.jsonl",
    ]);
    assert_clean_failure(&out, &["/no/such/dir/x.jsonl", "cannot open for writing"]);
}

#[test]
fn bench_reports_stage_medians_and_overhead_ratio() {
    let out = lookout(&[
        "bench",
        "--source",
        "tests/images/detect",
        "--frames",
        "20",
        "--warmup",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reports: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let report = &reports[0];
    assert_eq!(reports.as_array().map(Vec::len), Some(1));
    assert_eq!(report["frames"], 20);
    assert_eq!(report["workers"], 1);
    for stage in [
        "capture_ms",
        "pre_ms",
        "infer_ms",
        "post_ms",
        "emit_ms",
        "pipeline_ms",
        "bare_infer_ms",
    ] {
        let at = |p: &str| report[stage][p].as_f64().expect(p);
        assert!(
            at("p50") > 0.0 && at("p50") <= at("p95") && at("p95") <= at("p99"),
            "{stage}"
        );
        assert!(at("p99") <= at("max"), "{stage}");
    }
    // Every stage of a frame is inside its pipeline time.
    let p50 = |stage: &str| report[stage]["p50"].as_f64().expect("p50");
    assert!(p50("pipeline_ms") >= p50("infer_ms"), "{report}");
    // The embedded model is the bundled detector, and it is inside the binary.
    let footprint = &report["footprint"];
    let model_bytes = std::fs::metadata(repo("models/shapes-detector.onnx"))
        .expect("model file")
        .len();
    assert_eq!(footprint["model_bytes"].as_u64(), Some(model_bytes));
    let binary = footprint["binary_bytes"].as_u64().expect("binary size");
    assert!(binary > model_bytes, "{footprint}");
    let rss = footprint["peak_rss_bytes"].as_u64().expect("peak RSS");
    assert!(rss >= 4 << 20, "a loaded model and 20 frames: {footprint}");
    let ratio = report["overhead_ratio"].as_f64().expect("ratio");
    assert!((ratio - p50("pipeline_ms") / p50("bare_infer_ms")).abs() < 1e-9 && ratio > 0.0);
    let fps = report["fps"].as_f64().expect("fps");
    let wall = report["wall_seconds"].as_f64().expect("wall");
    assert!((fps * wall - 20.0).abs() < 1e-6, "{fps} fps over {wall} s");
}

/// Records from two workers come out in frame order and say exactly what one worker says.
#[test]
fn bench_workers_emit_the_records_of_one_worker_in_frame_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = |workers: &str| {
        let path = dir.path().join(format!("w{workers}.jsonl"));
        let sink = format!("file:{}", path.display());
        let out = lookout(&[
            "bench",
            "--source",
            "tests/images/detect",
            "--frames",
            "24",
            "--warmup",
            "1",
            "--workers",
            workers,
            "--sink",
            &sink,
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
        assert_eq!(report[0]["workers"].as_u64(), workers.parse().ok());
        let text = std::fs::read_to_string(&path).expect("sink file");
        json_lines(&text)
            .into_iter()
            .map(|mut r| {
                // Timing and wall-clock fields differ run to run; everything else must not.
                r.as_object_mut().expect("object").remove("latency_ms");
                r.as_object_mut().expect("object").remove("timestamp");
                r
            })
            .collect::<Vec<_>>()
    };
    let one = records("1");
    let two = records("2");
    assert_eq!(one.len(), 24);
    let seqs: Vec<u64> = two
        .iter()
        .map(|r| r["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (0..24).collect::<Vec<u64>>());
    // 8 scenes cycled: frame 8 is scene 0 again.
    assert_eq!(two[8]["frame"], two[0]["frame"]);
    assert_eq!(one, two);
}

/// Several models are measured one after the other, each named in its report.
#[test]
fn bench_measures_each_model_given() {
    let out = lookout(&[
        "bench",
        "--source",
        "tests/images/classify",
        "--frames",
        "5",
        "--warmup",
        "0",
        "--model",
        "models/variants/shapes-classifier-fp32.toml",
        "--model",
        "shapes-classifier",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let fp32 = std::fs::metadata(repo("models/variants/shapes-classifier-fp32.onnx"))
        .expect("fp32")
        .len();
    let table = text.rsplit("\n\n").next().expect("summary table");
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[0].starts_with("shapes-classifier-fp32@"), "{text}");
    assert!(rows[0].contains(&format!(" {fp32} ")), "{text}");
    assert!(rows[1].starts_with("shapes-classifier@"), "{text}");
    // A model that does not exist stops the run before anything is timed.
    let out = lookout(&[
        "bench",
        "--source",
        "tests/images/classify",
        "--frames",
        "5",
        "--model",
        "shapes-classifier",
        "--model",
        "no-such-model",
    ]);
    assert_clean_failure(&out, &["no-such-model"]);
    assert!(stdout(&out).is_empty());
    // tract's threads are in every build; none at all is refused by name.
    let out = lookout(&[
        "bench",
        "--source",
        "tests/images/classify",
        "--frames",
        "4",
        "--threads",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = lookout(&[
        "bench",
        "--source",
        "tests/images/classify",
        "--threads",
        "0",
    ]);
    assert_clean_failure(&out, &["--threads must be at least 1"]);
    // The model alone: as many runs as asked, nothing emitted.
    let out = lookout(&[
        "bench",
        "--source",
        "tests/images/detect",
        "--frames",
        "3",
        "--warmup",
        "1",
        "--bare-only",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reports: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(reports[0]["frames"], 3);
    assert!(reports[0]["bare_infer_ms"]["p50"].as_f64().expect("p50") > 0.0);
    assert!(reports[0].get("pre_ms").is_none(), "no pipeline stages");
    assert_eq!(reports[0]["compute"], "f32");
    // Computed in half precision on request, even here where the CPU only converts it.
    let out = lookout(&[
        "bench",
        "--source",
        "tests/images/detect",
        "--frames",
        "1",
        "--warmup",
        "0",
        "--bare-only",
        "--compute",
        "f16",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("computed in f16"), "{}", stdout(&out));
    let out = lookout(&["bench", "--compute", "fp16"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&out).contains("\"fp16\" is not f32 or f16"),
        "{}",
        stderr(&out)
    );
    // run computes as each version's manifest says: no override to lose on a switch.
    let out = lookout(&["run", "--compute", "f16", "--source", "tests/images/detect"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let out = lookout(&["bench", "--bare-only", "--ops"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&out).contains("'--bare-only' cannot be used with '--ops'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_decoder_that_does_not_fit_the_outputs_fails_at_load_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = copy_model("shapes-detector", dir.path());
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(
        &manifest,
        common::rewrite_key(&text, "decoder", "\"yolov5\""),
    )
    .expect("write");
    let out = run_on_pattern(&manifest);
    assert_clean_failure(
        &out,
        &[
            "shapes-detector.onnx",
            "output `output0`",
            "yolov5 expects [1, N, 5+3], got [1, 7, 256]",
        ],
    );
    assert_eq!(stdout(&out), "", "no frame is processed");
}

#[test]
fn log_levels_come_from_lookout_log_and_a_bad_spec_is_named() {
    let run_with_log = |spec: Option<&str>| {
        let mut cmd = lookout_command();
        cmd.args(["run", "-s", "tests/images/detect"]);
        match spec {
            Some(spec) => cmd.env("LOOKOUT_LOG", spec),
            None => cmd.env_remove("LOOKOUT_LOG"),
        };
        cmd.output().expect("the lookout binary runs")
    };
    let quiet = run_with_log(None);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert_eq!(stderr(&quiet), "", "warnings only by default");

    let info = run_with_log(Some("info"));
    assert!(
        stderr(&info).contains("running shapes-detector@2.1.0"),
        "{}",
        stderr(&info)
    );
    let per_target = run_with_log(Some("lookout=info"));
    assert!(
        stderr(&per_target).contains("running shapes-detector@2.1.0"),
        "{}",
        stderr(&per_target)
    );

    let bad = run_with_log(Some("lookout=loud"));
    assert!(
        bad.status.success(),
        "a bad log spec does not stop the detector"
    );
    let err = stderr(&bad);
    assert!(err.contains("LOOKOUT_LOG=\"lookout=loud\""), "{err}");
    assert!(
        !err.contains("running shapes-detector"),
        "fell back to warnings: {err}"
    );
    assert_eq!(
        json_lines(&stdout(&bad)).len(),
        json_lines(&stdout(&quiet)).len(),
        "same results either way"
    );
}

/// `cost` shows its inputs and every figure follows from them; on the host profile the latency
/// is the measurement itself.
#[test]
fn cost_derives_every_figure_from_inputs_it_shows() {
    let out = lookout(&[
        "cost",
        "--board",
        "rpi-4b",
        "--fps",
        "5",
        "--frames",
        "10",
        // One timed run of the reference: under qemu each takes many seconds.
        "--reference-runs",
        "1",
        "--cloud-price",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    let inputs = &r["inputs"];
    assert_eq!(inputs["macs"], 26_038_272);
    assert_eq!(
        inputs["model_bytes"].as_u64(),
        std::fs::metadata(repo("models/shapes-detector.onnx"))
            .ok()
            .map(|m| m.len())
    );
    let estimate = &inputs["estimate"];
    assert_eq!(r["latency_basis"], "estimated");
    // The detector has no depthwise convolutions: it is scaled by the dense reference.
    assert_eq!(estimate["reference"], "ResNet-18");
    assert_eq!(
        num(&estimate["board_reference_ms"]),
        191.10,
        "the rpi-4b profile's ResNet-18 figure"
    );
    let factor = num(&estimate["board_reference_ms"]) / num(&estimate["host_reference_ms"]);
    assert!((num(&estimate["factor"]) - factor).abs() < 1e-9);
    let latency = num(&inputs["host_frame_ms"]) * factor;
    assert!((num(&r["latency_ms"]) - latency).abs() < 1e-9);
    assert!((num(&r["core_duty"]) - 5.0 * latency / 1000.0).abs() < 1e-9);
    assert_eq!(num(&r["inferences_per_day"]), 432_000.0);
    assert!((num(&r["cloud_price_per_month"]) - 25_920.0).abs() < 1e-6);
    // One frame in 1000 kept, each the size of the test pattern as a JPEG.
    assert!((num(&r["samples_per_day"]) - 432.0).abs() < 1e-9);
    let sample = num(&inputs["sample_bytes"]);
    assert!(sample > 1000.0, "{sample}");
    assert!((num(&r["sample_bytes_per_day"]) - 432.0 * sample).abs() < 1e-6);

    let out = lookout(&["cost", "--board", "host", "--fps", "2", "--frames", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("measured: the board is this machine"),
        "{text}"
    );
    assert!(!text.contains("ESTIMATE"), "{text}");

    let out = lookout(&["cost", "--board", "rpi-4b", "--fps", "0", "--frames", "5"]);
    assert_clean_failure(&out, &["--fps", "positive"]);
}

/// What `select` decided, checked against its own measurements, so that it holds whatever this
/// machine measured: each row breaks the latency budget exactly when its board time is over
/// it, the pick is the most accurate row within every budget (within the tolerance, then the
/// fastest on the board, then the smallest), and the reason names each more accurate row passed
/// over with what it breaks. Returns the pick's index.
fn assert_the_pick_follows_from_the_rows(s: &serde_json::Value) -> Option<usize> {
    let budget = s["budgets"]["latency_ms"].as_f64().expect("latency budget");
    let rows = s["rows"].as_array().expect("rows");
    let num = |row: &serde_json::Value, key: &str| row[key].as_f64().expect(key);
    let fails = |row: &serde_json::Value| -> Vec<String> {
        row["fails"]
            .as_array()
            .expect("fails")
            .iter()
            .map(|f| f.as_str().expect("fail").to_owned())
            .collect()
    };
    for row in rows {
        let says_slow = fails(row).iter().any(|f| f.starts_with("latency "));
        assert_eq!(num(row, "board_ms") > budget, says_slow, "{row}");
    }
    let tolerance = s["tolerance"].as_f64().expect("tolerance");
    let admissible: Vec<usize> = (0..rows.len())
        .filter(|&i| fails(&rows[i]).is_empty())
        .collect();
    let best = admissible
        .iter()
        .map(|&i| num(&rows[i], "accuracy"))
        .fold(f64::NEG_INFINITY, f64::max);
    let expected = admissible
        .iter()
        .copied()
        .filter(|&i| num(&rows[i], "accuracy") >= best - tolerance)
        .min_by(|&a, &b| {
            num(&rows[a], "board_ms")
                .total_cmp(&num(&rows[b], "board_ms"))
                .then(
                    rows[a]["model_bytes"]
                        .as_u64()
                        .cmp(&rows[b]["model_bytes"].as_u64()),
                )
        });
    assert_eq!(s["pick"].as_u64().map(|p| p as usize), expected, "{s}");
    let reason = s["reason"].as_str().expect("reason");
    if let Some(pick) = expected {
        for row in rows {
            if !fails(row).is_empty() && num(row, "accuracy") > num(&rows[pick], "accuracy") {
                let model = row["model"].as_str().expect("model");
                let passed = format!("{model} is more accurate but {}", fails(row).join("; "));
                assert!(reason.contains(&passed), "{reason}");
            }
        }
    }
    expected
}

/// On wide camera views, where objects are small in the frame, a larger input side buys
/// accuracy with compute. The Zero 2 W and the Pi 5 differ in speed (by their reference times)
/// and in frame budget (one frame at their cameras' 15 and 30 fps): `select` judges the same
/// candidates on each board by that board's budgets and estimates. Which model that picks
/// depends on how fast this machine measured them (on a typical machine the Pi 5 gets the
/// 320 px model and the Zero a smaller one, docs/choosing-a-model.md), so what is asserted is
/// that the pick follows from the measurements, not which it is.
#[test]
fn select_judges_the_same_candidates_by_each_boards_budgets_and_estimates() {
    if under_emulator() {
        // Under qemu one select over wide views took over eight minutes (measured with 640x480
        // views and the 448 px candidate); nothing here is architecture-specific, and the
        // native run of the same suite covers it.
        eprintln!("skipped under an emulator: select's board picks are checked natively");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let views = dir.path().join("wide");
    python_tool(
        "scenes.py",
        [
            "--kind",
            "detect",
            "--seed",
            "2003",
            "--count",
            "4",
            "--wide",
            // Half a camera frame: the objects are still small for a 128 or 192 px input,
            // and resizing it (unoptimised in test builds) does not swamp the models' time.
            "320x240",
            "--out",
            views.to_str().expect("utf-8 path"),
        ],
    );
    let candidates = [
        "models/shapes-detector.toml",
        "models/candidates/shapes-detector-large-int8-weights.toml",
        "models/candidates/shapes-detector-large-320-int8-weights.toml",
    ];
    let select = |board: &str| {
        let mut args = vec!["select", "--board", board, "--frames", "3", "--json"];
        args.extend(["--reference-runs", "3"]);
        args.extend(["--dataset", views.to_str().expect("utf-8 path")]);
        args.push("--candidates");
        args.extend(candidates);
        let out = lookout(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).expect("json")
    };
    let zero = select("rpi-zero-2w");
    let pi5 = select("rpi-5");
    assert_eq!(zero["budgets"]["latency_ms"], 66.7);
    assert_eq!(pi5["budgets"]["latency_ms"], 33.3);
    let rows = |s: &serde_json::Value| s["rows"].as_array().expect("rows").clone();
    let (zero_rows, pi5_rows) = (rows(&zero), rows(&pi5));
    assert_eq!(zero_rows.len(), candidates.len());
    assert_eq!(pi5_rows.len(), candidates.len());
    for (on_zero, on_pi5) in zero_rows.iter().zip(&pi5_rows) {
        // The same model, measured on the same views: the same accuracy on either board, and
        // its time estimated for each, as neither is this machine.
        assert_eq!(on_zero["model"], on_pi5["model"]);
        assert_eq!(
            on_zero["accuracy"], on_pi5["accuracy"],
            "{on_zero}\n{on_pi5}"
        );
        assert_eq!(on_zero["estimated"], true);
        assert_eq!(on_pi5["estimated"], true);
    }
    // Wider inputs see the small objects better: the 320 px model is the most accurate.
    let accuracy = |row: &serde_json::Value| row["accuracy"].as_f64().expect("accuracy");
    assert!(
        accuracy(&pi5_rows[2]) > accuracy(&pi5_rows[0]),
        "{pi5_rows:#?}"
    );
    // Every candidate is of dense convolutions, so each board's estimate scales every one of
    // them by the same factor: that board's ResNet-18 time over this machine's, measured once
    // per selection.
    for rows in [&zero_rows, &pi5_rows] {
        let factor = |row: &serde_json::Value| {
            row["board_ms"].as_f64().expect("board_ms") / row["host_ms"].as_f64().expect("host_ms")
        };
        for row in rows.iter() {
            let (first, this) = (factor(&rows[0]), factor(row));
            assert!(
                (this / first - 1.0).abs() < 1e-9,
                "{first} vs {this}: {rows:#?}"
            );
        }
    }
    assert_the_pick_follows_from_the_rows(&zero);
    assert_the_pick_follows_from_the_rows(&pi5);
}

/// `select` measures each candidate the way `eval` does, judges it against the board's budgets
/// (or the flags that replace them), and writes the same verdicts to CSV and JSON.
#[test]
fn select_judges_candidates_on_their_measured_accuracy_and_the_board_budgets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("select.csv");
    let candidates = [
        "models/variants/shapes-detector-fp32.toml",
        "models/variants/shapes-detector-int8-weights.toml",
        "models/variants/shapes-detector-int8-qoperator.toml",
    ];
    let mut args = vec![
        "select",
        "--board",
        "rpi-5",
        "--dataset",
        "tests/images/detect",
    ];
    args.extend(["--frames", "5", "--max-model-bytes", "95000", "--json"]);
    // Which candidates meet a latency budget is for this machine's speed to say; a budget
    // none can break leaves the verdicts to size, which the files decide.
    args.extend(["--max-latency-ms", "1000000"]);
    args.extend(["--reference-runs", "1"]);
    args.push("--csv");
    let csv_arg = csv.display().to_string();
    args.push(&csv_arg);
    let plot = dir.path().join("front.svg");
    let plot_arg = plot.display().to_string();
    args.extend(["--plot", &plot_arg]);
    args.push("--candidates");
    args.extend(candidates);
    let out = lookout(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(s["board"], "rpi-5");
    assert_eq!(
        s["budgets"]["model_bytes"], 95000,
        "the flag replaces the profile's"
    );
    assert_eq!(s["budgets"]["latency_ms"], 1000000.0, "the flag's");
    let rows = s["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    for (row, manifest) in rows.iter().zip(candidates) {
        // The accuracy is what `eval` says of the same model on the same set.
        let out = lookout(&[
            "eval",
            "--model",
            manifest,
            "--data",
            "tests/images/detect",
            "--json",
        ]);
        let eval: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("eval json");
        let map = eval["map"]["map50_95"].as_f64().expect("map") * 100.0;
        assert!(
            (row["accuracy"].as_f64().expect("accuracy") - map).abs() < 1e-9,
            "{manifest}"
        );
        assert_eq!(row["metric"], "mAP@0.5:0.95");
        assert_eq!(row["estimated"], true, "rpi-5 is not this machine");
    }
    let fp32_fails = rows[0]["fails"].as_array().expect("fails");
    assert!(
        fp32_fails
            .iter()
            .any(|f| f == "model file 330998 B > 95000 B"),
        "{fp32_fails:?}"
    );
    let pick = s["pick"].as_u64().expect("a pick") as usize;
    assert!(rows[pick]["fails"].as_array().expect("fails").is_empty());
    assert_ne!(pick, 0, "fp32 is over the size budget");
    assert_eq!(assert_the_pick_follows_from_the_rows(&s), Some(pick));
    let reason = s["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with(rows[pick]["model"].as_str().expect("model")),
        "{reason}"
    );
    // The CSV says the same, row for row.
    let text = std::fs::read_to_string(&csv).expect("csv");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("model,origin,metric,accuracy_percent"),
        "{text}"
    );
    assert!(lines[1 + pick].ends_with(",true"), "{text}");
    assert!(lines[1].contains("model file 330998 B > 95000 B"), "{text}");
    let svg = std::fs::read_to_string(&plot).expect("plot");
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(
        svg.contains("shapes-detector-int8-qoperator@2.1.0 (93 KB)"),
        "{svg}"
    );

    // select's text output for one candidate on `board` within `max_latency_ms`.
    let select_text = |board: &str, max_latency_ms: &str, candidate: &str| {
        let out = lookout(&[
            "select",
            "--board",
            board,
            "--dataset",
            "tests/images/detect",
            "--frames",
            "2",
            "--reference-runs",
            "1",
            "--max-latency-ms",
            max_latency_ms,
            "--candidates",
            candidate,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    // On the Pi 5, whose CPU computes half precision, the pick is offered f16 (a model of dense
    // convolutions); on the Pi 4 nothing is said about it. A budget no load can miss keeps a
    // busy machine from leaving the board without a pick.
    let pick_on = |board: &str, candidate: &str| select_text(board, "1000000", candidate);
    let on_pi5 = pick_on("rpi-5", "models/shapes-detector.toml");
    let last = on_pi5.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("f16: board rpi-5 computes in half precision")
            && last.ends_with("(the estimate above is f32's)"),
        "{on_pi5}"
    );
    let on_pi4 = pick_on("rpi-4b", "models/shapes-detector.toml");
    assert!(on_pi4.contains("pick: shapes-detector@"), "{on_pi4}");
    assert!(!on_pi4.contains("f16"), "{on_pi4}");
    // A manifest that asks for f16 already is told so, not offered it again; this machine
    // measured it in f32.
    let asks = copy_model("shapes-detector", dir.path());
    let text = std::fs::read_to_string(&asks).expect("manifest");
    std::fs::write(
        &asks,
        text.replacen("[model]\n", "[model]\ncompute = \"f16\"\n", 1),
    )
    .expect("manifest");
    let on_pi5 = pick_on("rpi-5", asks.to_str().expect("utf-8 path"));
    let last = on_pi5.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "f16: board rpi-5 computes this model in half precision (its manifest's compute = \
         \"f16\") (the estimate above is f32's)",
        "{on_pi5}"
    );

    // Nothing fits a budget nobody can meet: said, not an error.
    let none = select_text("rpi-5", "0.000001", candidates[1]);
    assert!(
        none.contains("pick: no candidate meets every budget of rpi-5"),
        "{none}"
    );

    // Models of different tasks cannot be ranked on one measure.
    let out = lookout(&[
        "select",
        "--board",
        "rpi-5",
        "--dataset",
        "tests/images/detect",
        "--frames",
        "2",
        "--candidates",
        candidates[1],
        "models/shapes-classifier.toml",
    ]);
    assert_clean_failure(&out, &["mix detectors and classifiers"]);
}

/// The `raw` decoder reports each output's first values: the bundled classifier read raw gives
/// its logits, whose softmax is exactly what the classify decoder reports for the same image;
/// fewer values than the output holds are flagged.
#[test]
fn raw_records_carry_the_output_values_the_classify_decoder_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let onnx = repo("models/shapes-classifier.onnx");
    std::fs::copy(&onnx, dir.path().join("shapes-classifier.onnx")).expect("copy model");
    let text = std::fs::read_to_string(repo("models/shapes-classifier.toml")).expect("manifest");
    let text = &text[..text.find("[profile]").unwrap_or(text.len())];
    let raw_with = |values: usize| {
        let manifest = dir.path().join("shapes-classifier.toml");
        std::fs::write(
            &manifest,
            text.replace(
                "decoder = \"classify\"\nsoftmax = true\ntop_k = 3",
                &format!("decoder = \"raw\"\nvalues = {values}"),
            ),
        )
        .expect("write manifest");
        let out = lookout(&[
            "run",
            "-m",
            &manifest.to_string_lossy(),
            "-s",
            "tests/images/classify",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        json_lines(&stdout(&out))
    };
    let classified = json_lines(&stdout(&lookout(&[
        "run",
        "-m",
        "models/shapes-classifier.toml",
        "-s",
        "tests/images/classify",
    ])));
    let raw = raw_with(3);
    assert_eq!(raw.len(), classified.len());
    for (r, c) in raw.iter().zip(&classified) {
        assert_eq!(r["outputs"], serde_json::json!([[1, 3]]), "{r}");
        let out = &r["values"][0];
        assert_eq!(out["name"], "logits", "{r}");
        assert_eq!(out["truncated"], false, "{r}");
        let logits: Vec<f64> = out["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect();
        assert_eq!(logits.len(), 3);
        let top = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = logits.iter().map(|l| (l - top).exp()).sum();
        for class in c["classes"].as_array().expect("classes") {
            let id = class["label_id"].as_u64().expect("id") as usize;
            let softmax = (logits[id] - top).exp() / sum;
            let score = class["score"].as_f64().expect("score");
            assert!(
                (softmax - score).abs() < 1e-5,
                "{softmax} vs {score}: {r} {c}"
            );
        }
    }
    let cut = raw_with(2);
    assert_eq!(
        cut[0]["values"][0]["values"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(cut[0]["values"][0]["truncated"], true);
    assert!(
        raw_with(0)[0].get("values").is_none(),
        "values = 0: shapes only"
    );
}

/// With the board's two threads and a frame budget no model meets, `run` times the model on
/// one thread and on two and chooses threads or workers, saying why; either way the records
/// are those of one thread.
#[test]
fn run_chooses_threads_or_workers_from_the_board_and_keeps_the_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = std::fs::read_to_string(repo("boards/host.toml")).expect("host profile");
    let board = dir.path().join("busy.toml");
    let text = host
        .replace("name = \"host\"", "name = \"busy\"")
        .lines()
        .map(|line| match line.split('=').next().map(str::trim) {
            Some("threads") => "threads = 2".to_owned(),
            Some("latency_target_ms") => "latency_target_ms = 0.001".to_owned(),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&board, text).expect("board");
    let records = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--board",
            board.to_str().expect("utf-8"),
            "-s",
            "tests/images/detect",
        ];
        args.extend_from_slice(extra);
        let out = lookout_command()
            .args(&args)
            .env("LOOKOUT_LOG", "info")
            .output()
            .expect("lookout runs");
        assert!(out.status.success(), "{}", stderr(&out));
        let lines: Vec<serde_json::Value> = json_lines(&stdout(&out))
            .into_iter()
            .map(|mut r| {
                r.as_object_mut().expect("object").remove("latency_ms");
                r.as_object_mut().expect("object").remove("timestamp");
                r
            })
            .collect();
        (lines, stderr(&out))
    };
    let (chosen, log) = records(&[]);
    assert!(
        log.contains("on one thread and")
            && (log.contains("2 threads per frame") || log.contains("2 frames at once")),
        "the choice and its figures are logged: {log}"
    );
    let (one, log) = records(&["--threads", "1", "--workers", "1"]);
    assert!(log.contains("as --threads/--workers say"), "{log}");
    assert_eq!(chosen, one);
    assert_eq!(one.len(), 8);
}
