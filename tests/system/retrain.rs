//! The loop closed with the real parts: `lookout run` keeps samples of night frames,
//! `lookout samples export` packs them, `tools/retrain` (JAX) trains the next version from them
//! and the original renders with a new reference profile, and that version passes the
//! deployment check, installs into a slot and runs. A short training: this checks the
//! mechanics; what retraining buys is measured by `tools/drift-loop` (docs/operations.md, "Retraining").

use crate::common;
use crate::common::{json_lines, lookout, stderr, stdout};
use std::path::Path;
use std::process::{Command, Output};

fn retrain<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new("python3")
        .arg(common::repo("tools/retrain"))
        .args(args)
        .current_dir(common::root())
        .output()
        .expect("python3 runs (scripts/setup installs tools/requirements-train.txt)")
}

/// Samples of 60 night frames kept by `lookout run`, exported to a tar in `dir`, and how many
/// it holds: all 60, since from files the frame loop waits for the sample writer.
fn exported_samples(dir: &Path) -> (String, u64) {
    let frames = dir.join("frames");
    common::python_tool(
        "scenes.py",
        [
            "--kind",
            "detect",
            "--seed",
            "5002",
            "--count",
            "60",
            "--shift",
            "night",
            "--out",
            &frames.to_string_lossy(),
        ],
    );
    let store = dir.join("store");
    let board = common::samples_board(dir, "keeping", &store, None, None);
    let out = lookout(&[
        "run",
        "-m",
        "models/shapes-detector.toml",
        "-b",
        &board,
        "-s",
        &frames.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tar = dir.join("samples.tar");
    common::export_samples(&board, &tar);
    let kept = std::fs::read_dir(store.join("shapes-detector@2.1.0"))
        .expect("the store")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "jpg"))
        .count() as u64;
    assert_eq!(kept, 60, "every frame is a sample");
    (tar.to_string_lossy().into_owned(), kept)
}

#[test]
fn samples_retrain_into_a_version_that_installs_and_runs() {
    if common::under_emulator() {
        // The tool runs the lookout binary itself, which is an ARM executable here.
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (tar, kept) = exported_samples(dir.path());
    let release = dir.path().join("release-2.2.0");
    let work = dir.path().join("renders");
    let bin = env!("CARGO_BIN_EXE_lookout");
    let args = |version: &'static str, tar: &str| {
        vec![
            "--base".to_owned(),
            "models/shapes-detector.toml".into(),
            "--samples".into(),
            tar.to_owned(),
            "--version".into(),
            version.into(),
            "--out".into(),
            release.to_string_lossy().into_owned(),
            "--steps".into(),
            "10".into(),
            "--original".into(),
            "64".into(),
            "--heldout-renders".into(),
            "20".into(),
            // Samples are held out by a hash of their names, which hold the time: 40 % of 60
            // keeps both sides over retrain's minimums (10 and 5) whatever the times (the held
            // out count is binomial, 24 ± 3.8: 5 or fewer is five deviations away).
            "--holdout".into(),
            "0.4".into(),
            // Ten steps measure nothing; the guard is tried in tools/drift-loop.
            "--max-loss".into(),
            "100".into(),
            "--lookout".into(),
            bin.into(),
            "--work".into(),
            work.to_string_lossy().into_owned(),
        ]
    };

    // Its own version again is refused before any work.
    let out = retrain(&args("2.1.0", &tar));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--version 2.1.0 is the base's own version"),
        "{}",
        stderr(&out)
    );

    let out = retrain(&args("2.2.0", &tar));
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest = release.join("shapes-detector.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest written");
    assert!(text.contains("version = \"2.2.0\""), "{text}");

    // The report: the split of the samples, and both models measured on both held-out sets.
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(release.join("retrain-report.json")).expect("report"),
    )
    .expect("JSON");
    let held = report["samples"]["held_out"].as_u64().expect("held out");
    let train = report["samples"]["train"].as_u64().expect("train");
    assert_eq!(held + train, kept);
    assert!(held >= 5, "{report}");
    for who in ["base", "retrained"] {
        for set in ["samples", "renders"] {
            let map = report["map"][who][set]["map50"].as_f64().expect("mAP");
            assert!((0.0..=100.0).contains(&map), "{report}");
        }
    }
    assert_eq!(report["map"]["base"]["renders"]["images"], 20);

    // The new profile: measured by lookout on the held-out samples.
    assert!(
        text.contains(&format!("frames = {held}\n"))
            && text.contains("held-out samples (samples.tar)"),
        "profile of {held} frames: {text}"
    );

    // The deployment check (hash, size, budget, graph) passes, and the slot runs it.
    let out = lookout(&["check", "-m", &manifest.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let root = dir.path().join("slots");
    let root = root.to_string_lossy();
    let out = lookout(&[
        "model",
        "install",
        &manifest.to_string_lossy(),
        "--use",
        "--root",
        &root,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let current = format!("{root}/shapes-detector/current/shapes-detector.toml");
    let out = lookout(&[
        "run",
        "-m",
        &current,
        "-s",
        "tests/images/detect/scene_0.png",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records = json_lines(&stdout(&out));
    let record = records
        .iter()
        .find(|v| v.get("seq").is_some())
        .expect("a record");
    assert_eq!(record["model"], "shapes-detector@2.2.0");
}

#[test]
fn samples_of_another_model_are_refused_naming_the_file() {
    if common::under_emulator() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // A store of a model with other labels.
    let folder = dir.path().join("other@1.0");
    std::fs::create_dir_all(&folder).expect("dir");
    std::fs::write(folder.join("labels.txt"), "cat\ndog\n").expect("labels");
    std::fs::copy(
        common::repo("tests/images/detect/scene_0.png"),
        folder.join("a.jpg"),
    )
    .expect("image");
    std::fs::write(folder.join("a.txt"), "0 0.5 0.5 0.2 0.2\n").expect("label");
    let tar = dir.path().join("other.tar");
    let status = Command::new("tar")
        .args(["-cf", &tar.to_string_lossy(), "-C"])
        .arg(dir.path())
        .arg("other@1.0")
        .status()
        .expect("tar runs");
    assert!(status.success());
    let out = retrain(&[
        "--base",
        "models/shapes-detector.toml",
        "--samples",
        &tar.to_string_lossy(),
        "--version",
        "2.2.0",
        "--out",
        &dir.path().join("out").to_string_lossy(),
        "--lookout",
        env!("CARGO_BIN_EXE_lookout"),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("other@1.0/labels.txt names ['cat', 'dog']")
            && err.contains("['circle', 'square', 'triangle']"),
        "{err}"
    );
    assert!(!dir.path().join("out").exists(), "nothing written");
}
