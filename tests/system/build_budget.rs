//! The model budget is enforced by the build itself: `cargo build` for a board whose budget the
//! model exceeds must fail, with a message naming the model, its size, the budget and the
//! board file.
//!
//! The nested build shares the test run's target directory and profile (cargo releases its lock
//! once the tests are built), so the dependencies are already compiled and it fails within
//! seconds, in the build script.

use crate::common::*;
use std::process::Command;

#[test]
fn cargo_build_fails_for_an_over_budget_model() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(build_args())
        .current_dir(root())
        .env("LOOKOUT_BOARD", "tests/fixtures/boards/tiny.toml")
        .env("LOOKOUT_MODEL", "shapes-detector")
        .output()
        .expect("cargo runs");
    let err = stderr(&out);
    assert!(!out.status.success(), "the build must fail: {err}");
    let size = std::fs::metadata(repo("models/shapes-detector.onnx"))
        .expect("model")
        .len();
    for needle in [
        "lookout deployment check failed",
        "model shapes-detector@2.1.0",
        &format!("is {size} bytes, over the model budget of 1024 bytes"),
        "for board tiny",
        "tests/fixtures/boards/tiny.toml",
    ] {
        assert!(err.contains(needle), "build error lacks {needle:?}:\n{err}");
    }
}

fn build_args() -> Vec<String> {
    // `--tests` builds what the outer `cargo test` built, dev-dependencies included, so every
    // dependency resolves to the same features and is already compiled.
    let mut args: Vec<String> = ["build", "--quiet", "--tests"].map(String::from).into();
    if !cfg!(debug_assertions) {
        args.push("--release".into());
    }
    // Under scripts/test-cross the outer build was for an ARM target (`--target T`, and
    // `-Z build-std=…` on the Debian route): the nested one must be the same build.
    if let Ok(extra) = std::env::var("LOOKOUT_TEST_CARGO_ARGS") {
        args.extend(extra.split_whitespace().map(String::from));
    }
    args
}
