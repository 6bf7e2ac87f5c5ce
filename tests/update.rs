//! Model updates with the real binary: `lookout model install|use|rollback|list` on a slot
//! folder, and `lookout run` on the version in use.

mod common;

use common::{json_lines, lookout, lookout_command, stderr, stdout};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::VARIANT as NAME;

/// The bundled detector's int8-weights variant under `version`, in a folder of its own.
fn release(dir: &Path, version: &str, corrupt: bool) -> PathBuf {
    common::variant_release(dir, version, corrupt, "yolov8")
}

/// The same with another output decoder: `yolov5` passes the install check (hash, budget,
/// graph) but cannot decode this model's outputs, so it fails when loaded.
fn release_with(dir: &Path, version: &str, corrupt: bool, decoder: &str) -> PathBuf {
    common::variant_release(dir, version, corrupt, decoder)
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

/// `lookout run` looping over the test scenes on the version in use; its stdout lines arrive
/// on a channel. Killed when dropped.
struct Running {
    child: std::process::Child,
    lines: mpsc::Receiver<serde_json::Value>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(manifest: &Path) -> Self {
        let mut child = lookout_command()
            .args([
                "run",
                "-m",
                &manifest.to_string_lossy(),
                "-s",
                "tests/images/detect",
                "--loop",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("lookout starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Self { child, lines }
    }

    fn hang_up(&self) {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Lines until one for which `done` holds (included); panics after a minute.
    fn until(&self, done: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Ok(v) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let stop = done(&v);
            seen.push(v);
            if stop {
                return seen;
            }
        }
        let events: Vec<_> = seen.iter().filter(|v| v.get("event").is_some()).collect();
        panic!("timed out after {} lines; events: {events:#?}", seen.len());
    }
}

#[test]
fn sighup_switches_the_running_model_and_a_version_that_fails_to_load_is_rolled_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("models");
    let v1 = release(dir.path(), "2.1.0", false);
    let v2 = release(dir.path(), "2.2.0", false);
    let broken = release_with(dir.path(), "2.3.0", false, "yolov5");
    for (manifest, use_it) in [(&v1, true), (&v2, false), (&broken, false)] {
        let mut args = vec![
            "install".to_owned(),
            manifest.to_string_lossy().into_owned(),
        ];
        if use_it {
            args.push("--use".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = model(&args, &root);
        assert!(
            out.status.success(),
            "the install check passes: {}",
            stderr(&out)
        );
    }
    let current = root.join(NAME).join("current").join(format!("{NAME}.toml"));
    let run = Running::start(&current);
    let record_of = |version: &'static str| {
        move |v: &serde_json::Value| v["model"] == format!("{NAME}@{version}")
    };
    let before = run.until(record_of("2.1.0"));
    let seq_before = before.last().expect("a record")["seq"]
        .as_u64()
        .expect("seq");

    // Switch, then hang up: the next records come from 2.2.0, numbered on.
    assert!(model(&["use", NAME, "2.2.0"], &root).status.success());
    run.hang_up();
    let switched = run.until(record_of("2.2.0"));
    let event = switched
        .iter()
        .find(|v| v["event"] == "model_switched")
        .unwrap_or_else(|| panic!("no model_switched event"));
    assert!(
        event["message"]
            .as_str()
            .expect("message")
            .contains(&format!("{NAME}@2.1.0 replaced by {NAME}@2.2.0")),
        "{event}"
    );
    let seq_after = switched.last().expect("record")["seq"]
        .as_u64()
        .expect("seq");
    assert!(
        seq_after > seq_before,
        "sequence numbers go on: {seq_before} then {seq_after}"
    );

    // A version that fails to load: never swapped in, and `current` points back.
    assert!(model(&["use", NAME, "2.3.0"], &root).status.success());
    run.hang_up();
    let lines = run.until(|v| v["event"] == "model_rolled_back");
    let failed = lines
        .iter()
        .find(|v| v["event"] == "model_load_failed")
        .unwrap_or_else(|| panic!("no model_load_failed event: {lines:#?}"));
    assert!(
        failed["message"]
            .as_str()
            .expect("message")
            .contains("yolov5"),
        "{failed}"
    );
    assert!(
        lines
            .iter()
            .all(|v| v.get("seq").is_none() || v["model"] == format!("{NAME}@2.2.0")),
        "only 2.2.0 ran"
    );
    let after = run.until(|v| v.get("seq").is_some());
    assert_eq!(
        after.last().expect("record")["model"],
        format!("{NAME}@2.2.0")
    );
    let list = stdout(&model(&["list"], &root));
    assert!(list.contains(&format!("* {NAME}@2.2.0")), "{list}");
    assert!(list.contains(&format!("< {NAME}@2.3.0")), "{list}");
}
