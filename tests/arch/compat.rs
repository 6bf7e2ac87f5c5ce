//! The compatibility suite: models lookout did not train, exported by public packages' own
//! exporters (`scripts/export-compat`, pinned; provenance in `tests/fixtures/compat/SOURCES.md`):
//! Ultralytics YOLOv8 detect, pose and classify, YOLOv10 (end-to-end), torchvision MobileNetV3
//! with a symbolic batch in `value_info`, with dynamic height and width, with its weights as
//! external data, and onnxruntime's QDQ int8 form. Each goes the way a user's model goes:
//! `lookout import`, then the deployment check, then `lookout run` on real images (natively
//! only: under an emulator the check's run of one black frame stands for it); and then
//!
//! - its raw output tensors are compared with onnxruntime's on the suite's test input, within a
//!   tolerance stated per form ([`Form`]), and
//! - lookout's decoder is compared with the numpy reference decoder (`tools/reference.py`) on
//!   the *same* tensors (random weights put scores anywhere, so two runtimes' near-equal scores
//!   would flip candidates at any threshold; identical tensors compare the decoders alone).
//!
//! The committed files are the `-mini` twins (same operators and node count, narrower) of models
//! over 2 MB; the full-size ones live in `.cache/compat/` when `scripts/export-compat` ran, and
//! are skipped with a message naming it otherwise. Needs `python3` with
//! `tools/requirements-ref.txt` (`scripts/setup`).

use crate::common;
use crate::common::{lookout, python_tool, repo, stderr, stdout};
use lookout::frames::source::is_image_file;
use lookout::manifest::{Manifest, Thresholds};
use lookout::model::engine::{Engine, InputBuffer};
use lookout::results::decode::{Decoded, Decoder, OutputView};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// How a model's numbers are stored, which decides how closely tract must match onnxruntime.
#[derive(Debug, Clone, Copy)]
enum Form {
    /// fp32 throughout: both runtimes sum the same products in different orders and with
    /// different kernels (FMA or not): differences stay near float rounding.
    Fp32,
    /// QDQ int8: an activation landing on a rounding boundary may take the neighbouring
    /// quantization step in one runtime; such a step then moves later layers.
    Qdq,
}

impl Form {
    /// Largest difference allowed, relative to the largest absolute value of the output.
    fn tolerance(self) -> f64 {
        match self {
            Form::Fp32 => 1e-4,
            Form::Qdq => 0.05,
        }
    }
}

struct Case {
    /// Folder and file stem in `tests/fixtures/compat/`.
    name: &'static str,
    /// What `import` needs told (only the dynamic-size model: its size).
    flags: &'static [&'static str],
    /// The decoder `import` must choose.
    decoder: &'static str,
    form: Form,
    /// Images for `lookout run`.
    images: &'static str,
    /// Whether it runs under an emulator too. The two MobileNetV3 files that differ from
    /// `mobilenetv3-dynbatch-mini` only in how the file is laid out (dynamic height and width
    /// fixed at import, weights in an external file) run tract's same ARM kernels on the same
    /// operators: they are walked natively only.
    emulated: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "yolov8n-det-mini",
        flags: &[],
        decoder: "yolov8",
        form: Form::Fp32,
        emulated: true,
        images: "tests/images/detect",
    },
    Case {
        name: "yolov8n-pose-mini",
        flags: &[],
        decoder: "yolov8, keypoints = [17, 3]",
        form: Form::Fp32,
        emulated: true,
        images: "tests/images/detect",
    },
    Case {
        name: "yolov10n-mini",
        flags: &[],
        decoder: "end2end",
        form: Form::Fp32,
        emulated: true,
        images: "tests/images/detect",
    },
    Case {
        name: "yolov8n-cls-mini",
        flags: &[],
        decoder: "classify, softmax = false",
        form: Form::Fp32,
        emulated: true,
        images: "tests/images/classify",
    },
    Case {
        name: "mobilenetv3-dynbatch-mini",
        flags: &[],
        decoder: "classify, softmax = true",
        form: Form::Fp32,
        emulated: true,
        images: "tests/images/classify",
    },
    Case {
        name: "mobilenetv3-dynhw-mini",
        flags: &["--size", "224x224"],
        decoder: "classify, softmax = true",
        form: Form::Fp32,
        emulated: false,
        images: "tests/images/classify",
    },
    Case {
        name: "mobilenetv3-external-mini",
        flags: &[],
        decoder: "classify, softmax = true",
        form: Form::Fp32,
        emulated: false,
        images: "tests/images/classify",
    },
    Case {
        name: "mobilenetv3-qdq",
        flags: &[],
        decoder: "classify, softmax = true",
        form: Form::Qdq,
        emulated: true,
        images: "tests/images/classify",
    },
];

/// The full-size models of the `-mini` twins, in the export cache.
const FULL: &[(&str, &str)] = &[
    ("yolov8n-det", "yolov8n-det-mini"),
    ("yolov8n-pose", "yolov8n-pose-mini"),
    ("yolov10n", "yolov10n-mini"),
    ("yolov8n-cls", "yolov8n-cls-mini"),
    ("mobilenetv3-dynbatch", "mobilenetv3-dynbatch-mini"),
    ("mobilenetv3-dynhw", "mobilenetv3-dynhw-mini"),
    ("mobilenetv3-external", "mobilenetv3-external-mini"),
];

/// The suite's test input: `x[i] = ((i * 0x9E3779B9) mod 2^32 >> 8) / 2^24`.
fn test_input(i: usize) -> f32 {
    ((i as u32).wrapping_mul(0x9E37_79B9) >> 8) as f32 / 16_777_216.0
}

/// Copies the files of `folder` into a fresh folder, as a user's download would be.
fn copy_folder(folder: &Path, into: &Path) {
    std::fs::create_dir_all(into).expect("dir");
    for entry in std::fs::read_dir(folder).expect("compat folder") {
        let path = entry.expect("entry").path();
        if !path.to_string_lossy().ends_with(".ort.json") {
            std::fs::copy(&path, into.join(path.file_name().expect("name"))).expect("copy");
        }
    }
}

/// How many images `folder` (a path under the repository) holds, as `lookout run` tells them.
fn images_in(folder: &str) -> usize {
    std::fs::read_dir(repo(folder))
        .expect("image folder")
        .filter(|e| e.as_ref().is_ok_and(|e| is_image_file(&e.path())))
        .count()
}

/// Imports, checks and runs one model, then compares it with onnxruntime and the reference
/// decoder. Returns a line for the log.
fn walk(name: &str, folder: &Path, case: &Case, work: &Path) -> String {
    let dir = work.join(name);
    copy_folder(folder, &dir);
    let onnx = dir.join(format!("{name}.onnx"));

    // import, with the check it runs.
    let mut args = vec!["import".to_owned(), onnx.to_string_lossy().into_owned()];
    args.extend(case.flags.iter().map(|f| f.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lookout(&args);
    assert!(out.status.success(), "{name}: import: {}", stderr(&out));
    let report = stdout(&out);
    let decoder = format!("  output          {} [", case.decoder);
    assert!(report.contains(&decoder), "{name}: {report}");
    assert!(
        report.contains(&format!("check: ok: {name}@1")),
        "{name}: {report}"
    );
    let manifest_path = dir.join(format!("{name}.toml"));
    let manifest = Manifest::load(&manifest_path).expect("imported manifest");

    // run, on real images; natively only. A frame of a 640-pixel detector takes seconds under
    // an emulator (the folder, a minute of each walk). There the import's check has run the
    // model on one black frame in a lookout process, and tract's outputs and the decoders'
    // arithmetic are compared below; real frames' resampling on ARM is the unit tests' and
    // cross_arch's, with the bundled models.
    let manifest_arg = manifest_path.to_string_lossy().into_owned();
    if !common::under_emulator() {
        let out = lookout(&["run", "--model", &manifest_arg, "--source", case.images]);
        assert!(out.status.success(), "{name}: run: {}", stderr(&out));
        let records = common::json_lines(&stdout(&out));
        assert_eq!(
            records.len(),
            images_in(case.images),
            "{name}: one record per image"
        );
    }

    // tract's outputs on the suite's test input.
    let (board, board_file) =
        lookout::model::board(Some("host"), &repo("boards")).expect("host board");
    let bundle =
        lookout::model::load_checked(&manifest_path, &board, &board_file).expect("checked bundle");
    let mut engine =
        Engine::load(&bundle.onnx, &manifest.input, &bundle.origin).expect("tract loads it");
    match engine.input_mut().expect("input") {
        InputBuffer::F32(x) => x
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = test_input(i)),
        InputBuffer::U8(_) => panic!("{name}: the suite's models take floats"),
    }
    let outputs = engine.run().expect("tract runs it");
    let out_dir = dir.join("tract-outputs");
    std::fs::create_dir_all(&out_dir).expect("dir");
    let mut listed = Vec::new();
    let mut values: Vec<Vec<f32>> = Vec::new();
    for (i, o) in outputs.iter().enumerate() {
        let data: Vec<f32> = o
            .tensor
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .expect("f32 output")
            .to_vec();
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let file = format!("{i}.f32");
        std::fs::write(out_dir.join(&file), bytes).expect("write output");
        listed.push(serde_json::json!({"name": o.name, "shape": o.tensor.shape(), "file": file}));
        values.push(data);
    }
    std::fs::write(
        out_dir.join("outputs.json"),
        serde_json::to_string(&listed).expect("json"),
    )
    .expect("write outputs.json");
    let out = python_tool(
        "compat_check.py",
        [
            "--manifest",
            manifest_arg.as_str(),
            "--outputs",
            &out_dir.to_string_lossy(),
        ],
    );
    let verdict: Value = serde_json::from_str(stdout(&out).trim()).expect("compat_check JSON");

    // Agreement with onnxruntime, per output.
    let mut line = format!("{name}: ");
    for (output, a) in verdict["agreement"].as_object().expect("agreement") {
        assert!(a.get("error").is_none(), "{name}: {output}: {a}");
        let (max_abs, max_ref) = (
            a["max_abs"].as_f64().expect("max_abs"),
            a["max_ref"].as_f64().expect("max_ref"),
        );
        let allowed = case.form.tolerance() * max_ref.max(1e-6);
        assert!(
            max_abs <= allowed,
            "{name}: output {output} differs from onnxruntime by {max_abs:e} (largest value \
             {max_ref:e}, allowed {allowed:e})"
        );
        if let Some(rows) = a.get("rows") {
            // End-to-end rows, compared as a set (tools/compat_check.py, rows_agreement).
            assert!(
                rows.as_u64() > Some(0),
                "{name}: no end-to-end row compared: {a}"
            );
            line += &format!("{rows} rows of ");
        }
        line += &format!(
            "{output} within {max_abs:.2e} of onnxruntime (largest |value| {max_ref:.3}); "
        );
    }

    // lookout's decoder against the reference decoder, on tract's tensors.
    let thresholds = Thresholds {
        score: verdict["threshold"]
            .as_f64()
            .map_or(manifest.thresholds.score, |t| t as f32),
        ..manifest.thresholds
    };
    let mut decoder = Decoder::new(
        &manifest.output,
        manifest.labels.len(),
        manifest.input.width(),
        manifest.input.height(),
        engine.output_shapes(),
    )
    .expect("decoder fits");
    let views: Vec<OutputView<'_>> = outputs
        .iter()
        .zip(&values)
        .map(|(o, data)| OutputView {
            name: &o.name,
            shape: o.tensor.shape(),
            data,
        })
        .collect();
    let decoded = decoder.decode(&views, &thresholds).expect("decodes");
    let reference = verdict["decoded"].as_array().expect("reference decoded");
    let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * (1.0 + b.abs());
    let compared = match decoded {
        Decoded::Classes(classes) => {
            assert_eq!(
                classes.len(),
                reference.len(),
                "{name}: {classes:?} vs {reference:?}"
            );
            for (c, r) in classes.iter().zip(reference) {
                assert_eq!(
                    c.class_id as u64,
                    r["label_id"].as_u64().expect("id"),
                    "{name}"
                );
                assert!(
                    close(c.score as f64, r["score"].as_f64().expect("score"), 1e-5),
                    "{name}"
                );
            }
            classes.len()
        }
        Decoded::Detections(list) => {
            assert_eq!(
                list.len(),
                reference.len(),
                "{name}: {list:?} vs {reference:?}"
            );
            for (d, r) in list.iter().zip(reference) {
                assert_eq!(
                    d.class_id as u64,
                    r["label_id"].as_u64().expect("id"),
                    "{name}"
                );
                assert!(
                    close(d.score as f64, r["score"].as_f64().expect("score"), 1e-6),
                    "{name}"
                );
                let b = [d.bbox.x0, d.bbox.y0, d.bbox.x1, d.bbox.y1];
                for (k, v) in b.iter().enumerate() {
                    assert!(
                        close(*v as f64, r["box"][k].as_f64().expect("box"), 1e-5),
                        "{name}: {b:?} vs {r}"
                    );
                }
            }
            list.len()
        }
        Decoded::Poses(list) => {
            assert_eq!(list.len(), reference.len(), "{name}");
            for (p, r) in list.iter().zip(reference) {
                assert_eq!(
                    p.detection.class_id as u64,
                    r["label_id"].as_u64().expect("id")
                );
                assert!(close(
                    p.detection.score as f64,
                    r["score"].as_f64().expect("score"),
                    1e-6
                ));
                let points = r["keypoints"].as_array().expect("keypoints");
                assert_eq!(p.keypoints.len(), points.len(), "{name}");
                for (k, q) in p.keypoints.iter().zip(points) {
                    for (i, v) in [k.x, k.y, k.score].iter().enumerate() {
                        assert!(
                            close(*v as f64, q[i].as_f64().expect("value"), 1e-5),
                            "{name}: {k:?} vs {q}"
                        );
                    }
                }
            }
            list.len()
        }
        Decoded::Raw { .. } => panic!("{name}: raw decoder"),
    };
    assert!(compared > 0, "{name}: the decoders compared nothing");
    line + &format!("decoders agree on {compared} results")
}

fn run_cases(full: bool) {
    if full && common::under_emulator() {
        eprintln!("skipped: the full-size models under an emulator (their -mini twins ran)");
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let mut jobs: Vec<(String, PathBuf, &Case)> = Vec::new();
    for case in CASES {
        if !case.emulated && common::under_emulator() {
            eprintln!(
                "skipped {} under an emulator: the same kernels as mobilenetv3-dynbatch-mini (runs natively)",
                case.name
            );
            continue;
        }
        if !full {
            let folder = repo("tests/fixtures/compat").join(case.name);
            jobs.push((case.name.to_owned(), folder, case));
            continue;
        }
        let Some((full_name, _)) = FULL.iter().find(|(_, mini)| *mini == case.name) else {
            continue;
        };
        let folder: PathBuf = repo(".cache/compat/models").join(full_name);
        if !folder.join(format!("{full_name}.onnx")).is_file() {
            eprintln!(
                "skipped {full_name}: the full-size model is made outside CI by scripts/export-compat \
                 (several GB of exporters); its -mini twin ran"
            );
            continue;
        }
        jobs.push(((*full_name).to_owned(), folder, case));
    }
    // One model per core (common::par_map): under qemu-user, where this suite takes longest,
    // each walk is a chain of single-threaded processes.
    let lines = common::par_map(&jobs, |(name, folder, case)| {
        walk(name, folder, case, work.path())
    });
    for line in &lines {
        eprintln!("{line}");
    }
}

#[test]
fn third_party_models_import_run_and_agree_with_onnxruntime_and_the_reference_decoder() {
    run_cases(false);
}

#[test]
fn full_size_third_party_models_agree_too_where_the_export_script_made_them() {
    run_cases(true);
}

/// What tract cannot run is refused by the import's check with tract's reason, before it
/// reaches a board: onnxruntime's QOperator form uses its own `com.microsoft` operators; and
/// Ultralytics' `nms=True` export slices a fixed 300 rows out of however many boxes its
/// NonMaxSuppression kept and pads the rest, sizes known only at run time, which tract 0.23.9
/// does not do (ONNX clamps a Slice's end to the dimension; tract fails on it, and given the
/// clamp it cannot type a Pad of a data-dependent size).
#[test]
fn what_tract_cannot_run_is_refused_at_import_with_the_reason() {
    let work = tempfile::tempdir().expect("tempdir");
    for (name, reasons) in [
        (
            "mobilenetv3-qop",
            [
                "operators outside the standard ONNX domain, which tract does not run: com.microsoft::QGemm",
                "`lookout import --int8-weights` on the fp32 original",
            ],
        ),
        (
            "yolov8n-det-nms-mini",
            ["inference failed: ", "Invalid range 0..300 for slicing"],
        ),
    ] {
        let dir = work.path().join(name);
        copy_folder(&repo("tests/fixtures/compat").join(name), &dir);
        let onnx = dir.join(format!("{name}.onnx"));
        let out = lookout(&["import", &onnx.to_string_lossy()]);
        assert!(!out.status.success(), "{name}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("the deployment check of")
                && reasons.iter().all(|r| err.contains(r))
                && !err.contains("panicked"),
            "{name}: {err}"
        );
    }
}
