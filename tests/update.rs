//! Model updates with the real binary: `lookout model install|use|rollback|list` on a slot
//! folder, and `lookout run` on the version in use.

mod common;

use common::{json_lines, lookout, stderr, stdout};
use std::path::{Path, PathBuf};

const NAME: &str = "shapes-detector-int8-weights";

/// The bundled detector's int8-weights variant under `version`, in a folder of its own.
fn release(dir: &Path, version: &str, corrupt: bool) -> PathBuf {
    let src = common::repo("models/variants");
    let out = dir.join(format!("release-{version}"));
    std::fs::create_dir_all(&out).expect("dir");
    let mut onnx = std::fs::read(src.join(format!("{NAME}.onnx"))).expect("model");
    if corrupt {
        let middle = onnx.len() / 2;
        onnx[middle] ^= 0x55;
    }
    std::fs::write(out.join(format!("{NAME}.onnx")), onnx).expect("write model");
    let text = std::fs::read_to_string(src.join(format!("{NAME}.toml"))).expect("manifest");
    let text = text.replacen(
        "version = \"2.1.0\"",
        &format!("version = \"{version}\""),
        1,
    );
    let manifest = out.join(format!("{NAME}.toml"));
    std::fs::write(&manifest, text).expect("write manifest");
    manifest
}

fn model(args: &[&str], root: &Path) -> std::process::Output {
    let mut all = vec!["model"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--root", root.to_str().expect("utf-8 path")]);
    lookout(&all)
}

#[test]
fn install_use_rollback_and_run_the_version_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("models");
    let v1 = release(dir.path(), "2.1.0", false);
    let v2 = release(dir.path(), "2.2.0", false);
    let bad = release(dir.path(), "2.3.0", true);

    let out = model(&["install", &v1.to_string_lossy(), "--use"], &root);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("* {NAME}@2.1.0")),
        "{}",
        stdout(&out)
    );
    let out = model(&["install", &v2.to_string_lossy()], &root);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = model(&["use", NAME, "2.2.0"], &root);
    assert!(out.status.success(), "{}", stderr(&out));

    // A corrupt model is refused by its hash, and nothing changes.
    let before = stdout(&model(&["list"], &root));
    let out = model(&["install", &bad.to_string_lossy(), "--use"], &root);
    assert!(!out.status.success());
    common::assert_clean_failure(&out, &["sha256", "release-2.3.0"]);
    assert_eq!(stdout(&model(&["list"], &root)), before);
    assert!(before.contains(&format!("* {NAME}@2.2.0")), "{before}");
    assert!(before.contains(&format!("< {NAME}@2.1.0")), "{before}");
    assert!(!before.contains("2.3.0"), "{before}");

    // The version in use is what runs, and its records say so.
    let current = root.join(NAME).join("current").join(format!("{NAME}.toml"));
    let run = |expected: &str| {
        let out = lookout(&[
            "run",
            "-m",
            &current.to_string_lossy(),
            "-s",
            "tests/images/detect/scene_0.png",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let records = json_lines(&stdout(&out));
        assert_eq!(records[0]["model"], expected);
    };
    run(&format!("{NAME}@2.2.0"));

    let out = model(&["rollback", NAME], &root);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("2.1.0"), "{}", stdout(&out));
    run(&format!("{NAME}@2.1.0"));

    let out = model(&["use", NAME, "7.0.0"], &root);
    common::assert_clean_failure(&out, &["7.0.0 is not installed", "2.1.0, 2.2.0"]);
}
