//! `lookout import` as a user meets it: a bare ONNX file in a folder, a manifest written beside
//! it from what the file says (graph, metadata, a labels.txt), guesses marked, the deployment
//! check run on the result; and the files it cannot describe refused with one line naming the
//! file and the field, writing nothing.

use crate::common;
use crate::common::{assert_clean_failure, json_lines, lookout, repo, stderr, stdout};
use lookout::manifest::{Layout, Manifest, OutputSpec, ResizeMode};
use std::path::{Path, PathBuf};

/// `src` (a repository path) copied into `dir`, returning the copy.
fn bare(src: &str, dir: &Path) -> PathBuf {
    let from = repo(src);
    let to = dir.join(from.file_name().expect("file name"));
    std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    to
}

fn import(model: &Path, flags: &[&str]) -> std::process::Output {
    let model = model.to_string_lossy().into_owned();
    let mut args = vec!["import", model.as_str()];
    args.extend_from_slice(flags);
    lookout(&args)
}

#[test]
fn a_detector_without_metadata_gets_its_guesses_marked_and_flags_make_it_the_shipped_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let onnx = bare("models/shapes-detector.onnx", dir.path());
    let out = import(&onnx, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    let manifest_path = dir.path().join("shapes-detector.toml");
    assert!(
        report.starts_with(&format!("wrote {}", manifest_path.display())),
        "{report}"
    );
    // What the graph says is read; what it cannot say is a marked guess.
    assert!(
        report.contains("`output0` [1, 7, 256]: 4 box values + C class scores"),
        "{report}"
    );
    assert!(report.contains("3 value(s) are guesses"), "{report}");
    let check = report.lines().last().expect("check line");
    assert!(
        check.starts_with("check: ok: shapes-detector@1 (")
            && check.contains("fits board host")
            && check.contains("runs: loaded in"),
        "{check}"
    );
    let text = std::fs::read_to_string(&manifest_path).expect("manifest written");
    for guessed in [
        "labels = [",
        "resize = ",
        "color = ",
        "scale = ",
        "mean = ",
        "std = ",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(guessed))
            .unwrap_or_else(|| panic!("{guessed} in {text}"));
        assert!(line.contains("# GUESS:"), "{line}");
    }
    let m = Manifest::load(&manifest_path).expect("the manifest written validates");
    assert_eq!(m.input.name, "images");
    assert_eq!(m.input.shape, [1, 3, 128, 128]);
    assert_eq!(m.input.layout, Layout::Nchw);
    assert_eq!(m.labels, ["class0", "class1", "class2"]);
    assert!(matches!(
        m.output,
        OutputSpec::Yolov8 {
            keypoints: None,
            ..
        }
    ));
    assert_eq!(m.preprocess.resize, ResizeMode::Stretch);
    assert_eq!(m.model.bytes, std::fs::metadata(&onnx).expect("size").len());

    // Stated with flags and a labels file, the imported manifest detects exactly what the
    // shipped one does.
    let labels = dir.path().join("names.txt");
    std::fs::write(&labels, "circle\nsquare\ntriangle\n").expect("labels");
    let out = import(
        &onnx,
        &[
            "--force",
            "--labels",
            &labels.to_string_lossy(),
            "--resize",
            "letterbox",
            "--color",
            "rgb",
            "--scale",
            "0.00392156862745098",
            "--mean",
            "0,0,0",
            "--std",
            "1,1,1",
            "--decoder",
            "yolov8",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("guesses"), "{}", stdout(&out));
    let text = std::fs::read_to_string(&manifest_path).expect("manifest");
    assert!(!text.contains("GUESS"), "{text}");
    let detections = |manifest: &str| common::detections(manifest, "tests/images/detect");
    let shipped = detections("models/shapes-detector.toml");
    assert!(shipped
        .iter()
        .any(|d| d.as_array().is_some_and(|a| !a.is_empty())));
    assert_eq!(detections(&manifest_path.to_string_lossy()), shipped);
}

#[test]
fn labels_come_from_the_files_metadata_or_a_labels_txt_and_two_that_disagree_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ultralytics-style `names` in the metadata.
    let onnx = bare("tests/fixtures/odd-models/names-metadata.onnx", dir.path());
    let out = import(&onnx, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("labels          3 (\"cat\", \"dog's bowl\", \"bird\") [metadata `names`]"),
        "{}",
        stdout(&out)
    );
    let m = Manifest::load(&dir.path().join("names-metadata.toml")).expect("manifest");
    assert_eq!(m.labels, ["cat", "dog's bowl", "bird"]);
    assert!(matches!(
        m.output,
        OutputSpec::Classify {
            softmax: true,
            top_k: 3
        }
    ));

    // A labels.txt beside it that says otherwise: an error naming both, nothing written.
    std::fs::remove_file(dir.path().join("names-metadata.toml")).expect("remove");
    std::fs::write(dir.path().join("labels.txt"), "cat\ndog\nbird\n").expect("labels.txt");
    let out = import(&onnx, &[]);
    assert_clean_failure(
        &out,
        &[
            "names-metadata.onnx: labels: ",
            "labels.txt has 3 labels [\"cat\", \"dog\", \"bird\"]",
            "the file's metadata `names` has 3 [\"cat\", \"dog's bowl\", \"bird\"]",
        ],
    );
    assert!(!dir.path().join("names-metadata.toml").exists());

    // Without metadata, labels.txt beside the model names the classes.
    let onnx = bare("models/shapes-classifier.onnx", dir.path());
    std::fs::write(dir.path().join("labels.txt"), "circle\nsquare\ntriangle\n").expect("labels");
    let out = import(&onnx, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m = Manifest::load(&dir.path().join("shapes-classifier.toml")).expect("manifest");
    assert_eq!(m.labels, ["circle", "square", "triangle"]);
    // Its graph ends in Gemm, not Softmax: its scores are logits.
    assert!(matches!(
        m.output,
        OutputSpec::Classify { softmax: true, .. }
    ));

    // As many labels as the output has classes, or an error naming both counts.
    let onnx = bare("tests/fixtures/odd-models/four-classes.onnx", dir.path());
    let out = import(&onnx, &[]);
    assert_clean_failure(
        &out,
        &[
            "four-classes.onnx: labels: 3 labels from ",
            "labels.txt, but `logits` [1, 4] holds 4 classes for the classify decoder",
        ],
    );
    assert!(!dir.path().join("four-classes.toml").exists());
}

#[test]
fn symbolic_sizes_are_asked_for_and_fixed_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let onnx = bare("tests/fixtures/odd-models/dynamic-hw.onnx", dir.path());
    let out = import(&onnx, &[]);
    assert_clean_failure(
        &out,
        &[
            "dynamic-hw.onnx: input: `images` is [N, H, W, 3]",
            "give --size WIDTHxHEIGHT",
        ],
    );
    assert!(!dir.path().join("dynamic-hw.toml").exists());
    let out = import(&onnx, &["--size", "96x64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("batch symbolic `N`, fixed to 1; 96x64 --size"),
        "{report}"
    );
    assert!(report.contains("check: ok: dynamic-hw@1"), "{report}");
    let m = Manifest::load(&dir.path().join("dynamic-hw.toml")).expect("manifest");
    assert_eq!(m.input.shape, [1, 64, 96, 3]);
    assert_eq!(m.input.layout, Layout::Nhwc);
}

#[test]
fn files_import_cannot_describe_are_refused_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &[&str]); 3] = [
        (
            "two-inputs",
            &["two-inputs.onnx: input: the graph has 2 inputs (`images` [1, 3, 64, 64], `"],
        ),
        (
            "string-input",
            &["string-input.onnx: input: `images` is string; lookout feeds float or uint8 pixels"],
        ),
        (
            "zero-input",
            &["zero-input.onnx: input: `images` is [1, 3, 0, 0]: dimension 2 is 0"],
        ),
    ];
    for (name, needles) in cases {
        let onnx = bare(
            &format!("tests/fixtures/odd-models/{name}.onnx"),
            dir.path(),
        );
        assert_clean_failure(&import(&onnx, &[]), needles);
        assert!(!dir.path().join(format!("{name}.toml")).exists(), "{name}");
    }
    // Not ONNX at all: random bytes, and a real model cut short.
    let noise = dir.path().join("noise.onnx");
    let bytes: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&noise, bytes).expect("noise");
    assert_clean_failure(
        &import(&noise, &[]),
        &["noise.onnx: not a valid ONNX protobuf"],
    );
    let whole = std::fs::read(repo("models/shapes-detector.onnx")).expect("model");
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &whole[..whole.len() / 2]).expect("cut");
    assert_clean_failure(&import(&cut, &[]), &["cut.onnx: not a valid ONNX protobuf"]);
    // A flag that does not fit the input.
    let onnx = bare("models/shapes-classifier.onnx", dir.path());
    assert_clean_failure(
        &import(&onnx, &["--mean", "0.5,0.5"]),
        &["shapes-classifier.onnx: --mean: has 2 values, the input has 3 channels"],
    );
    assert!(!dir.path().join("shapes-classifier.toml").exists());
}

#[test]
fn a_manifest_already_there_is_kept_unless_forced_and_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let onnx = bare("models/shapes-classifier.onnx", dir.path());
    let manifest = dir.path().join("shapes-classifier.toml");
    std::fs::write(&manifest, "# mine\n").expect("write");
    assert_clean_failure(
        &import(&onnx, &[]),
        &["shapes-classifier.toml: a manifest is already there; --force replaces it"],
    );
    assert_eq!(
        std::fs::read_to_string(&manifest).expect("kept"),
        "# mine\n"
    );
    let out = import(&onnx, &["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("name = \"shapes-classifier\""));
    assert_eq!(
        std::fs::read_to_string(&manifest).expect("kept"),
        "# mine\n"
    );
    let out = import(&onnx, &["--force", "--model-version", "3.0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m = Manifest::load(&manifest).expect("replaced");
    assert_eq!(m.version, "3.0");
}

#[test]
fn a_model_tract_cannot_run_fails_the_import_check_with_tracts_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, reason) in [
        ("gemm-one-input", "Wrong input number"),
        (
            "maxpool-zero-kernel",
            "tract crashes on this model (a panic: ",
        ),
    ] {
        let onnx = bare(
            &format!("tests/fixtures/odd-models/{name}.onnx"),
            dir.path(),
        );
        let out = import(&onnx, &[]);
        assert!(!out.status.success(), "{name}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.contains(&format!(
                "the deployment check of {} failed (the manifest stays written, to edit)",
                dir.path().join(format!("{name}.toml")).display()
            )) && err.contains(reason),
            "{name}: {err}"
        );
        assert!(stdout(&out).starts_with("wrote "), "{name}");
    }
}

/// A model with its weights in `external-data.onnx.data` beside it: import lists the file with
/// its sha256, the check inlines it and runs the model, its scores are onnxruntime's on the
/// same file, an install copies the file into the slot, and a changed file is refused by hash.
#[test]
fn weights_stored_beside_the_model_are_listed_checked_and_run_like_onnxruntime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let onnx = bare("tests/fixtures/odd-models/external-data.onnx", dir.path());
    let data = bare(
        "tests/fixtures/odd-models/external-data.onnx.data",
        dir.path(),
    );
    std::fs::write(dir.path().join("labels.txt"), "circle\nsquare\ntriangle\n").expect("labels");
    let out = import(
        &onnx,
        &["--resize", "stretch", "--mean", "0,0,0", "--std", "1,1,1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("model.external  external-data.onnx.data [graph]: initializers stored beside the file (336 bytes)"),
        "{report}"
    );
    assert!(report.contains("check: ok: external-data@1"), "{report}");
    let manifest = dir.path().join("external-data.toml");
    let m = Manifest::load(&manifest).expect("manifest");
    assert_eq!(m.model.external.len(), 1);
    assert_eq!(m.model.external[0].file, "external-data.onnx.data");
    assert_eq!(m.model.external[0].bytes, 336);

    // Its scores against onnxruntime's, which reads the external file itself.
    let manifest_arg = manifest.to_string_lossy().into_owned();
    let out = lookout(&[
        "run",
        "--model",
        &manifest_arg,
        "--source",
        "tests/images/classify",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ours = json_lines(&stdout(&out));
    let theirs = json_lines(&stdout(&common::python_tool(
        "reference.py",
        ["--manifest", manifest_arg.as_str(), "tests/images/classify"],
    )));
    assert_eq!(ours.len(), theirs.len());
    assert!(!ours.is_empty());
    for (a, b) in ours.iter().zip(&theirs) {
        let (a, b) = (
            a["classes"].as_array().expect("ours"),
            b["classes"].as_array().expect("theirs"),
        );
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x["label_id"], y["label_id"]);
            let (x, y) = (
                x["score"].as_f64().expect("score"),
                y["score"].as_f64().expect("score"),
            );
            assert!((x - y).abs() < 1e-4, "{x} vs onnxruntime {y}");
        }
    }

    // Installed, the external file goes into the slot with the model, and the slot runs.
    let root = dir.path().join("slots");
    let root_arg = root.to_string_lossy().into_owned();
    let out = lookout(&[
        "model",
        "install",
        &manifest_arg,
        "--use",
        "--root",
        &root_arg,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let slot = root.join("external-data").join("1");
    assert_eq!(
        std::fs::read(slot.join("external-data.onnx.data")).expect("copied"),
        std::fs::read(&data).expect("original")
    );
    let current = root.join("external-data/current/external-data.toml");
    let out = lookout(&[
        "run",
        "--model",
        &current.to_string_lossy(),
        "--source",
        "tests/images/classify",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&stdout(&out)).len(), ours.len());

    // A weights file that changed after the import is refused, naming it.
    let mut bytes = std::fs::read(&data).expect("data");
    bytes[100] ^= 0x40;
    std::fs::write(&data, bytes).expect("tamper");
    assert_clean_failure(
        &lookout(&["check", "--model", &manifest_arg]),
        &[
            "external-data.onnx.data: sha256 is ",
            "field `model.external` says sha256 ",
        ],
    );
}

#[test]
fn external_data_outside_the_models_folder_is_never_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("model");
    std::fs::create_dir(&folder).expect("dir");
    // The file the model names, one level up: where it says, but outside its folder.
    bare(
        "tests/fixtures/odd-models/external-data.onnx.data",
        dir.path(),
    );
    let onnx = bare("tests/fixtures/odd-models/external-outside.onnx", &folder);
    assert_clean_failure(
        &import(&onnx, &[]),
        &["external-outside.onnx: external data: names \"../external-data.onnx.data\", which is not a regular file inside the model's folder"],
    );
    let out = lookout(&["inspect", &onnx.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let verdict = text
        .lines()
        .find(|l| l.starts_with("tract:"))
        .expect("verdict");
    assert!(
        verdict.contains("REFUSED") && verdict.contains("names external data \"../external-data.onnx.data\", which is not a file inside the model's folder"),
        "{verdict}"
    );

    // Nor through a link inside the folder that leads out of it.
    let linked = bare("tests/fixtures/odd-models/external-data.onnx", &folder);
    std::os::unix::fs::symlink(
        dir.path().join("external-data.onnx.data"),
        folder.join("external-data.onnx.data"),
    )
    .expect("symlink");
    assert_clean_failure(
        &import(&linked, &[]),
        &["external-data.onnx: external data: names \"external-data.onnx.data\", which is not a regular file inside the model's folder"],
    );
}

/// `--int8-weights` on the bundled detector's fp32 form: a quarter of the size, the same
/// detections as the int8-weights form `tools/variants.py` makes and lookout ships, the two
/// forms compared on `--check-on` images; and a board too small for the fp32 file takes the
/// int8 one, the refusal saying how.
#[test]
fn int8_weights_shrink_a_model_to_fit_a_board_and_detect_what_the_shipped_form_detects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let onnx = bare("models/variants/shapes-detector-fp32.onnx", dir.path());
    std::fs::write(dir.path().join("labels.txt"), "circle\nsquare\ntriangle\n").expect("labels");
    let flags = [
        "--resize",
        "letterbox",
        "--mean",
        "0,0,0",
        "--std",
        "1,1,1",
        "--decoder",
        "yolov8",
    ];

    // The fp32 file does not fit a board with a 200 kB budget; the refusal names the way out.
    let board = common::host_board_with(dir.path(), "small", "models", "");
    let text = std::fs::read_to_string(&board).expect("board");
    std::fs::write(
        &board,
        common::rewrite_key(&text, "model_budget_bytes", "200000"),
    )
    .expect("budget");
    let mut args = vec!["--board", board.as_str()];
    args.extend_from_slice(&flags);
    let out = import(&onnx, &args);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("is 330998 bytes, over the model budget of 200000 bytes")
            && err.contains("`lookout import MODEL.onnx --int8-weights`"),
        "{err}"
    );

    let images = repo("tests/images/detect").to_string_lossy().into_owned();
    let mut args = vec!["--int8-weights", "--check-on", images.as_str(), "--force"];
    args.extend_from_slice(&["--board", board.as_str()]);
    args.extend_from_slice(&flags);
    let out = import(&onnx, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.starts_with(&format!(
            "int8 weights: 9 weight tensors (81408 values) of {} now per-channel int8: 330998 -> ",
            onnx.display()
        )) && report.contains("(0.27x)"),
        "{report}"
    );
    assert!(
        report.contains("check on 8 images of ")
            && report.contains("decoded results agree on 8 of 8"),
        "{report}"
    );
    assert!(
        report.contains("check: ok: shapes-detector-fp32-int8@1"),
        "{report}"
    );
    assert!(report.contains("fits board small"), "{report}");
    let manifest = dir.path().join("shapes-detector-fp32-int8.toml");
    let m = Manifest::load(&manifest).expect("manifest of the int8 form");
    assert_eq!(
        m.model.quantization,
        Some(lookout::onnx_meta::QuantForm::WeightOnlyInt8)
    );
    let detections = |manifest: &str| common::detections(manifest, "tests/images/detect");
    assert_eq!(
        detections(&manifest.to_string_lossy()),
        detections("models/variants/shapes-detector-int8-weights.toml")
    );
}

/// onnxruntime's QDQ file: inspect and import say what it costs on tract; `--int8-weights`
/// drops its activation pairs, leaving int8 weights, and the result agrees with it.
#[test]
fn a_qdq_file_is_told_its_cost_on_tract_and_offered_the_int8_weights_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    for file in ["mobilenetv3-qdq.onnx", "labels.txt"] {
        bare(
            &format!("tests/fixtures/compat/mobilenetv3-qdq/{file}"),
            dir.path(),
        );
    }
    let onnx = dir.path().join("mobilenetv3-qdq.onnx");
    let out = lookout(&["inspect", &onnx.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("on tract:     tract computes QDQ activations in integer kernels: 1.53-1.57x the instructions of fp32"),
        "{}",
        stdout(&out)
    );
    let out = import(&onnx, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("model.quantization int8-qdq [graph]: tract computes QDQ activations"),
        "{}",
        stdout(&out)
    );
    let images = repo("tests/images/classify").to_string_lossy().into_owned();
    let out = import(&onnx, &["--int8-weights", "--check-on", &images]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report
            .contains("activation QuantizeLinear/DequantizeLinear pairs removed, 0 weight tensors")
            && report.contains("decoded results agree on 12 of 12")
            && report.contains("model.quantization int8-weights [graph]"),
        "{report}"
    );
    let m = Manifest::load(&dir.path().join("mobilenetv3-qdq-int8.toml")).expect("manifest");
    assert_eq!(
        m.model.quantization,
        Some(lookout::onnx_meta::QuantForm::WeightOnlyInt8)
    );
}

/// On a board whose CPU computes in half precision, import offers `compute = "f16"` for models
/// with few multiply-accumulates in grouped convolutions (the detector, none; MobileNetV2,
/// 6.9 %) and says why not for one with many (23.2 %) or a quantized one; on the host, whose
/// CPU only converts half precision, it says nothing about it.
#[test]
fn half_precision_is_offered_where_the_board_computes_it_and_the_model_gains() {
    let dir = tempfile::tempdir().expect("tempdir");
    // What import's last line says of f16 for the model at `path` on the Pi 5.
    let said_on_pi5 = |path: &str| {
        let model = bare(path, dir.path());
        let out = import(&model, &["--board", "rpi-5"]);
        assert!(out.status.success(), "{}", stderr(&out));
        (
            model,
            stdout(&out).lines().last().unwrap_or_default().to_owned(),
        )
    };
    let (detector, last) = said_on_pi5("models/shapes-detector.onnx");
    assert!(
        last.starts_with("f16: board rpi-5 computes in half precision")
            && last.contains("compute = \"f16\""),
        "{last}"
    );
    // 6.9 % of MobileNetV2's multiply-accumulates are depthwise: f16 still pays.
    let (_, last) = said_on_pi5("models/reference/mobilenetv2-224.onnx");
    assert!(
        last.starts_with("f16: board rpi-5 computes in half precision"),
        "{last}"
    );
    // 23.2 % of this MobileNetV3's: it does not.
    let (_, last) = said_on_pi5(
        "tests/fixtures/compat/mobilenetv3-dynbatch-mini/mobilenetv3-dynbatch-mini.onnx",
    );
    assert!(
        last.starts_with("f16: not offered for board rpi-5: 23.2 % of this model's"),
        "{last}"
    );
    // A QDQ file computes with quantization steps, not in floats: nothing to offer.
    let (_, last) = said_on_pi5("models/variants/shapes-detector-int8-qdq.onnx");
    assert!(
        last.starts_with("f16: not offered for board rpi-5: this model is quantized (int8-qdq)"),
        "{last}"
    );
    let out = import(&detector, &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("f16"), "{}", stdout(&out));
}
