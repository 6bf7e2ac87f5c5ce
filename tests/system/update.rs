//! Model updates with the real binary: `lookout model install|use|rollback|list` on a slot
//! folder, and `lookout run` on the version in use.

use crate::common;
use crate::common::{json_lines, lookout, lookout_command, stderr, stdout};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::VARIANT as NAME;

/// The bundled detector's int8-weights variant under `version`, in a folder of its own.
fn release(dir: &Path, version: &str, corrupt: bool) -> PathBuf {
    common::variant_release(dir, version, corrupt, "yolov8")
}

/// The same with another output decoder: `yolov5` passes the install check (hash, budget,
/// graph) but cannot decode this model's outputs, so it fails when loaded.
fn release_with(dir: &Path, version: &str, corrupt: bool, decoder: &str) -> PathBuf {
    common::variant_release(dir, version, corrupt, decoder)
}

/// Breaks an installed version in its slot: its manifest's decoder becomes `yolov5`, which
/// cannot read the model's outputs, as a manifest edited by hand on the card would leave it.
/// `model install` loads and runs every model once before it installs it, so a version that
/// fails to load can only come about this way.
fn break_installed_decoder(root: &Path, version: &str) {
    let manifest = root.join(NAME).join(version).join(format!("{NAME}.toml"));
    let text = std::fs::read_to_string(&manifest).expect("installed manifest");
    assert!(text.contains("decoder = \"yolov8\""), "{text}");
    std::fs::write(
        &manifest,
        text.replace("decoder = \"yolov8\"", "decoder = \"yolov5\""),
    )
    .expect("rewrite installed manifest");
}

fn model(args: &[&str], root: &Path) -> std::process::Output {
    let mut all = vec!["model"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--root", root.to_str().expect("utf-8 path")]);
    lookout(&all)
}

/// `model install` loads the model and runs a frame through it in a child process first: a
/// model whose outputs its decoder cannot read passes the static check (hash, budget, graph)
/// but is refused, and nothing is installed.
#[test]
fn install_refuses_a_model_that_does_not_load_and_installs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("models");
    let broken = release_with(dir.path(), "2.3.0", false, "yolov5");
    let out = model(&["install", &broken.to_string_lossy()], &root);
    common::assert_clean_failure(
        &out,
        &[
            "installing",
            "shapes-detector-int8-weights.onnx: output `output0`: yolov5 expects [1, N, 5+3], got [1, 7, 256]",
        ],
    );
    let list = stdout(&model(&["list"], &root));
    assert!(list.starts_with("no model installed"), "{list}");
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
    /// `lookout run` with `model_args` naming the model (and board).
    fn start(model_args: &[&str]) -> Self {
        Self::start_with(model_args, &[])
    }

    /// `lookout run` with `model_args` and `extra` arguments (threads, workers).
    fn start_with(model_args: &[&str], extra: &[&str]) -> Self {
        let mut child = lookout_command()
            .arg("run")
            .args(model_args)
            .args(extra)
            .args(["-s", "tests/images/detect", "--loop"])
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

    /// Lines until one for which `done` holds (included); panics after a minute (scaled:
    /// [`common::patience`]), a guard against a hung run that no step here comes near.
    fn until(&self, done: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + common::patience(Duration::from_secs(60));
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
    let broken = release(dir.path(), "2.3.0", false);
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
    break_installed_decoder(&root, "2.3.0");
    let current = root.join(NAME).join("current").join(format!("{NAME}.toml"));
    // Samples kept of every frame, to see them filed under the version that saw them.
    let store = dir.path().join("samples");
    let board = common::samples_board(dir.path(), "sampling", &store, None, None);
    let run = Running::start(&["-m", &current.to_string_lossy(), "-b", &board]);
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
    // Samples of the frames after the switch go under the new version. From files the loop
    // waits for the writer, so every record's sample is written, at most a queue behind.
    let deadline = Instant::now() + common::patience(Duration::from_secs(60));
    let images = |version: &str| {
        std::fs::read_dir(store.join(format!("{NAME}@{version}")))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "jpg"))
                    .count()
            })
            .unwrap_or(0)
    };
    while images("2.2.0") < 3 {
        assert!(Instant::now() < deadline, "no samples of 2.2.0");
        run.until(|v| v.get("seq").is_some());
    }
    assert!(images("2.1.0") >= 1, "samples of 2.1.0 stay under 2.1.0");
    assert!(store.join(format!("{NAME}@2.2.0/labels.txt")).is_file());

    // A version that fails to load: never swapped in, and `current` points back.
    assert!(model(&["use", NAME, "2.3.0"], &root).status.success());
    run.hang_up();
    let lines = run.until(|v| v["event"] == "model_rolled_back");
    let failed = lines
        .iter()
        .find(|v| v["event"] == "model_load_failed")
        .unwrap_or_else(|| panic!("no model_load_failed event: {lines:#?}"));
    assert_eq!(failed["source"], format!("{NAME}@2.3.0"), "{failed}");
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
    // `previous` is left as it was: `rollback` never returns to the version that failed.
    let list = stdout(&model(&["list"], &root));
    assert!(list.contains(&format!("* {NAME}@2.2.0")), "{list}");
    assert!(list.contains(&format!("  {NAME}@2.3.0")), "{list}");
}

/// A board profile in `dir` whose installed models are under `<dir>/models` (returned), so
/// `--model <name>` finds them, with trials of `trial_frames`.
fn slotted(dir: &Path, trial_frames: u64) -> (PathBuf, String) {
    let root = dir.join("models");
    let board = common::host_board_with(
        dir,
        "slotted",
        "models",
        &format!(
            "dir = {:?}\ntrial_frames = {trial_frames}\n",
            root.to_string_lossy()
        ),
    );
    (root, board)
}

/// `lookout model <args>` with the board profile `board`.
fn model_on(board: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["model"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--board", board]);
    lookout(&all)
}

/// `lookout run --model <name>` on `board`, and its lines up to the first record of `version`.
fn started_by_name(board: &str, version: &str) -> (Running, Vec<serde_json::Value>) {
    let run = Running::start(&["--model", NAME, "--board", board]);
    let model = format!("{NAME}@{version}");
    let lines = run.until(|v| v["model"] == model.as_str() && v.get("seq").is_some());
    (run, lines)
}

/// Each line's event name, `None` for a record.
fn kinds(lines: &[serde_json::Value]) -> Vec<Option<&str>> {
    lines.iter().map(|v| v["event"].as_str()).collect()
}

/// Lines of one kind of event among `lines`.
fn events<'a>(lines: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|v| v["event"] == kind).collect()
}

#[test]
fn a_version_that_fails_its_trial_frames_is_returned_from_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, board) = slotted(dir.path(), 20);
    let slots = |args: &[&str]| model_on(&board, args);
    let v1 = release(dir.path(), "2.1.0", false);
    let v2 = release(dir.path(), "2.2.0", false);
    let nan = common::nan_release(dir.path(), "2.4.0");
    for (manifest, use_it) in [(&v1, true), (&v2, false), (&nan, false)] {
        let path = manifest.to_string_lossy();
        let mut args = vec!["install", &path];
        if use_it {
            args.push("--use");
        }
        let out = slots(&args);
        assert!(out.status.success(), "installs: {}", stderr(&out));
    }
    let record_of = |version: &'static str| {
        move |v: &serde_json::Value| {
            v["model"] == format!("{NAME}@{version}") && v.get("seq").is_some()
        }
    };

    // Started by name: the version in use. It is on trial, with nothing to return to, and
    // gets through after 20 frames.
    let run = Running::start(&["--model", NAME, "--board", &board]);
    let lines = run.until(|v| v["event"] == "model_trial_passed");
    assert_eq!(lines.iter().filter(|v| record_of("2.1.0")(v)).count(), 20);
    assert_eq!(
        lines.last().expect("event")["source"],
        format!("{NAME}@2.1.0")
    );

    // A good version switched to passes its trial after 20 frames.
    assert!(slots(&["use", NAME, "2.2.0"]).status.success());
    run.hang_up();
    let lines = run.until(|v| v["event"] == "model_trial_passed");
    let on_trial = lines.iter().filter(|v| record_of("2.2.0")(v)).count();
    assert_eq!(on_trial, 20, "the trial is 20 frames: {lines:#?}");

    // A version whose outputs are NaN loads, fails its first frame, and 2.2.0 takes over at
    // that frame: no record of 2.4.0 is ever emitted.
    assert!(slots(&["use", NAME, "2.4.0"]).status.success());
    run.hang_up();
    let lines = run.until(|v| v["event"] == "model_rolled_back");
    let switched = events(&lines, "model_switched");
    assert_eq!(switched.len(), 1, "{lines:#?}");
    let failed = events(&lines, "model_trial_failed");
    assert_eq!(failed.len(), 1, "{lines:#?}");
    let message = failed[0]["message"].as_str().expect("message");
    assert!(
        message.contains("NaN") && message.contains(&format!("{NAME}@2.2.0 runs again")),
        "{message}"
    );
    assert_eq!(failed[0]["source"], format!("{NAME}@2.4.0"));
    let after = run.until(record_of("2.2.0"));
    assert!(
        lines.iter().chain(&after).all(|v| !record_of("2.4.0")(v)),
        "2.4.0 emitted no record"
    );
    drop(run);
    let list = stdout(&slots(&["list"]));
    assert!(list.contains(&format!("* {NAME}@2.2.0")), "{list}");
    assert!(list.contains(&format!("  {NAME}@2.4.0")), "{list}");

    // Started again, 2.2.0 got through its trial before, so it is on none.
    let run = Running::start(&["--model", NAME, "--board", &board]);
    let lines = run.until(|v| v["seq"] == 40);
    assert!(
        lines.iter().all(|v| record_of("2.2.0")(v)),
        "only records of 2.2.0, no trial events: {:#?}",
        lines
            .iter()
            .filter(|v| v.get("event").is_some())
            .collect::<Vec<_>>()
    );
    drop(run);

    // Switched to while lookout was stopped, the broken version is on trial at start-up
    // against the last version that got through its trial, loaded from its slot when needed.
    assert!(slots(&["use", NAME, "2.4.0"]).status.success());
    let (run, lines) = started_by_name(&board, "2.2.0");
    assert_eq!(
        kinds(&lines),
        [Some("model_trial_failed"), Some("model_rolled_back"), None],
        "{lines:#?}"
    );
    assert_eq!(lines[0]["source"], format!("{NAME}@2.4.0"));
    let seq = lines[2]["seq"].as_u64().expect("seq");
    assert_eq!(
        seq, 0,
        "frame 0 failed on 2.4.0, and 2.2.0 processes it under its number"
    );
    drop(run);
    let list = stdout(&slots(&["list"]));
    assert!(list.contains(&format!("* {NAME}@2.2.0")), "{list}");

    // A version that fails to load at start-up: the one before it starts instead.
    let broken = release(dir.path(), "2.3.0", false);
    let out = slots(&["install", &broken.to_string_lossy(), "--use"]);
    assert!(out.status.success(), "{}", stderr(&out));
    break_installed_decoder(&root, "2.3.0");
    let (run, lines) = started_by_name(&board, "2.2.0");
    assert_eq!(
        kinds(&lines),
        [Some("model_load_failed"), Some("model_rolled_back"), None],
        "{lines:#?}"
    );
    let message = lines[0]["message"].as_str().expect("message");
    assert!(message.contains("yolov5"), "{message}");
    assert_eq!(lines[0]["source"], format!("{NAME}@2.3.0"));
    assert_eq!(lines[2]["seq"], 0);
    drop(run);
    let list = stdout(&slots(&["list"]));
    assert!(list.contains(&format!("* {NAME}@2.2.0")), "{list}");

    // A version that got through its trial and later fails to load (its file damaged on the
    // card): `previous` starts instead.
    assert!(slots(&["use", NAME, "2.1.0"]).status.success());
    assert!(slots(&["use", NAME, "2.2.0"]).status.success());
    let damaged = root.join(NAME).join("2.2.0").join(format!("{NAME}.onnx"));
    let mut bytes = std::fs::read(&damaged).expect("model");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&damaged, bytes).expect("damage");
    let (_run, lines) = started_by_name(&board, "2.1.0");
    assert_eq!(
        kinds(&lines),
        [Some("model_load_failed"), Some("model_rolled_back"), None],
        "{lines:#?}"
    );
    assert!(
        lines[0]["message"]
            .as_str()
            .expect("message")
            .contains("sha256"),
        "{lines:#?}"
    );
}

/// The events of a run through a switch, a trial passed, a trial failed and a version that
/// does not load, in order, as recorded (timestamps out, the temporary folder as `<dir>`).
#[test]
fn events_of_switches_trials_and_rollbacks_are_the_recorded_golden_transcript() {
    switches_trials_and_rollbacks(&[]);
}

/// The same with three frames in flight: the same events in the same order, the frames of a
/// model being replaced told before the switch, the frames a version on trial failed run
/// again on the version returned to, and the records numbered without a gap or a repeat.
#[test]
fn with_three_workers_switches_and_rollbacks_tell_the_same_events_and_lose_no_frame() {
    let lines = switches_trials_and_rollbacks(&["--workers", "3"]);
    let seqs: Vec<u64> = lines.iter().filter_map(|v| v["seq"].as_u64()).collect();
    assert!(seqs.len() > 20, "{seqs:?}");
    for pair in seqs.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "records in order, none lost: {seqs:?}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|v| v["model"] != format!("{NAME}@2.4.0") || v.get("seq").is_none()),
        "the version whose outputs are NaN emitted no record"
    );
    // Each switch is told after the last record of the model it replaces.
    for (i, v) in lines.iter().enumerate() {
        if v["event"] == "model_switched" {
            let now = v["source"].as_str().expect("source");
            let next_record = lines[i..].iter().find(|r| r.get("seq").is_some());
            let before = lines[..i].iter().rev().find(|r| r.get("seq").is_some());
            assert!(
                before.is_some_and(|r| r["model"] != now),
                "the record before the switch is the old model's: {lines:#?}"
            );
            assert!(
                next_record.is_none_or(|r| r["model"] == now
                    || lines[i..]
                        .iter()
                        .any(|e| e["event"] == "model_trial_failed")),
                "the record after the switch is the new model's: {lines:#?}"
            );
        }
    }
}

/// Installs four versions, runs through the switches of the golden transcript with `extra`
/// arguments to `run`, compares the events with it and returns every line.
fn switches_trials_and_rollbacks(extra: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, board) = slotted(dir.path(), 5);
    let slots = |args: &[&str]| model_on(&board, args);
    let releases = [
        (release(dir.path(), "2.1.0", false), true),
        (release(dir.path(), "2.2.0", false), false),
        (common::nan_release(dir.path(), "2.4.0"), false),
        (release(dir.path(), "2.3.0", false), false),
    ];
    for (manifest, use_it) in &releases {
        let path = manifest.to_string_lossy();
        let mut args = vec!["install", &path];
        if *use_it {
            args.push("--use");
        }
        let out = slots(&args);
        assert!(out.status.success(), "installs: {}", stderr(&out));
    }
    break_installed_decoder(&root, "2.3.0");
    let run = Running::start_with(&["--model", NAME, "--board", &board], extra);
    let mut lines = run.until(|v| v["event"] == "model_trial_passed");
    assert!(slots(&["use", NAME, "2.2.0"]).status.success());
    run.hang_up();
    lines.extend(run.until(|v| v["event"] == "model_trial_passed"));
    // The version returned to after a failed trial goes on a trial of its own: waited for, so
    // that its end cannot fall on either side of the next switch.
    assert!(slots(&["use", NAME, "2.4.0"]).status.success());
    run.hang_up();
    lines.extend(run.until(|v| v["event"] == "model_rolled_back"));
    lines.extend(run.until(|v| v["event"] == "model_trial_passed"));
    assert!(slots(&["use", NAME, "2.3.0"]).status.success());
    run.hang_up();
    lines.extend(run.until(|v| v["event"] == "model_rolled_back"));
    lines.extend(run.until(|v| v.get("seq").is_some()));
    let folder = dir.path().to_string_lossy().into_owned();
    let text: String = lines
        .iter()
        .filter(|v| v.get("event").is_some())
        .map(|v| {
            let mut v = v.clone();
            if let Some(map) = v.as_object_mut() {
                map.remove("timestamp");
            }
            format!("{v}\n").replace(&folder, "<dir>")
        })
        .collect();
    common::assert_golden("events-switch-trial-rollback.jsonl", &text);
    lines
}

/// The file operations a power cut can fall between: every call of these that touches the
/// slots is a point where the install or switch is killed.
const FILE_CALLS: &str = "mkdir,mkdirat,openat,write,fsync,fdatasync,rename,renameat,renameat2,\
                          symlink,symlinkat,unlink,unlinkat,rmdir";

/// `lookout <args>` under strace: with `inject`, killed (SIGKILL) on entering the call it
/// names; without, traced to `log`.
fn strace(args: &[&str], trace: &str) -> std::process::Output {
    std::process::Command::new("strace")
        .args(["-qq", "-y"])
        .args(trace.split_whitespace())
        .arg(env!("CARGO_BIN_EXE_lookout"))
        .args(args)
        .current_dir(common::root())
        .output()
        .expect("strace runs (scripts/setup installs it)")
}

/// Each call in `log` that touches `root`, as (call name, its count among all calls of that
/// name so far): what strace's `inject=<name>:when=<count>` stops at.
fn cut_points(log: &str, root: &str) -> Vec<(String, usize)> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut points = Vec::new();
    for line in log.lines() {
        let Some((name, _)) = line.split_once('(') else {
            continue;
        };
        let count = seen.entry(name.to_owned()).or_default();
        *count += 1;
        if line.contains(root) {
            points.push((name.to_owned(), *count));
        }
    }
    points
}

#[test]
fn a_kill_at_any_file_operation_of_an_install_or_switch_leaves_a_loadable_model() {
    if common::under_emulator() {
        // strace would trace the emulator, not lookout's calls.
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, board) = slotted(dir.path(), 5);
    let root_text = root.to_string_lossy().into_owned();
    let v1 = release(dir.path(), "2.1.0", false);
    let v2 = release(dir.path(), "2.2.0", false);
    let (v1, v2) = (v1.to_string_lossy(), v2.to_string_lossy());
    let install_v2: Vec<&str> = vec!["model", "install", &v2, "--use", "--board", &board];
    let rollback: Vec<&str> = vec!["model", "rollback", NAME, "--board", &board];
    // A rollback the cut came after has already switched: what completes it either way.
    let use_v1: Vec<&str> = vec!["model", "use", NAME, "2.1.0", "--board", &board];
    let checked = |args: &[&str]| {
        let out = lookout(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    // Before the install: 2.1.0 in use. Before the rollback: 2.2.0 in use, 2.1.0 before it.
    let before_install = || {
        let _ = std::fs::remove_dir_all(&root);
        checked(&["model", "install", &v1, "--use", "--board", &board]);
    };
    let before_rollback = || {
        before_install();
        checked(&install_v2);
    };
    let running_version = || {
        let out = checked(&[
            "run",
            "--model",
            NAME,
            "--board",
            &board,
            "-s",
            "tests/images/detect/scene_0.png",
        ]);
        let records = json_lines(&stdout(&out));
        // The version `current` names loads by itself: nothing failed and was returned from.
        let events: Vec<_> = records
            .iter()
            .filter(|v| v["event"] == "model_load_failed" || v["event"] == "model_rolled_back")
            .collect();
        assert!(events.is_empty(), "{events:#?}");
        let record = records
            .iter()
            .find(|v| v.get("seq").is_some())
            .expect("a record");
        record["model"].as_str().expect("model").to_owned()
    };

    let mut cuts = 0;
    for (operation, prepare, complete, done) in [
        (
            &install_v2,
            &before_install as &dyn Fn(),
            &install_v2,
            "2.2.0",
        ),
        (&rollback, &before_rollback, &use_v1, "2.1.0"),
    ] {
        prepare();
        let log = dir.path().join("trace.log");
        let traced = strace(
            operation,
            &format!("-o {} -e trace={FILE_CALLS}", log.display()),
        );
        assert!(traced.status.success(), "{}", stderr(&traced));
        let points = cut_points(&std::fs::read_to_string(&log).expect("trace"), &root_text);
        assert!(
            points
                .iter()
                .filter(|(name, _)| name.starts_with("rename"))
                .count()
                >= 1,
            "{operation:?} renames into place: {points:?}"
        );
        for (call, count) in &points {
            prepare();
            let killed = strace(
                operation,
                &format!("-o /dev/null -e trace={call} -e inject={call}:signal=KILL:when={count}"),
            );
            use std::os::unix::process::ExitStatusExt as _;
            assert!(
                killed.status.code() == Some(137) || killed.status.signal() == Some(9),
                "{operation:?} killed at {call} #{count}: {:?} {}",
                killed.status,
                stderr(&killed)
            );
            cuts += 1;
            // What the cut left runs: the version before, or the new one when the cut came
            // after the last rename.
            let version = running_version();
            assert!(
                version.ends_with("@2.1.0") || version.ends_with("@2.2.0"),
                "after a cut at {call} #{count}: {version}"
            );
            // And the operation can be completed.
            checked(complete);
            assert_eq!(
                running_version(),
                format!("{NAME}@{done}"),
                "{operation:?} again after a cut at {call} #{count}"
            );
            let list = stdout(&checked(&["model", "list", "--board", &board]));
            assert_eq!(list.lines().count(), 2, "{list}");
        }
    }
    eprintln!("killed at {cuts} points, each left a model that runs");
    assert!(cuts >= 20, "{cuts} cut points");
}

#[test]
fn a_failed_trial_with_nothing_loadable_behind_it_ends_the_run_saying_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, board) = slotted(dir.path(), 20);
    let slots = |args: &[&str]| model_on(&board, args);
    let v1 = release(dir.path(), "2.1.0", false);
    let nan = common::nan_release(dir.path(), "2.4.0");
    assert!(slots(&["install", &v1.to_string_lossy(), "--use"])
        .status
        .success());
    assert!(slots(&["install", &nan.to_string_lossy(), "--use"])
        .status
        .success());
    // What it would return to is damaged on the card.
    let damaged = root.join(NAME).join("2.1.0").join(format!("{NAME}.onnx"));
    std::fs::write(&damaged, b"not a model").expect("damage");

    let out = lookout(&[
        "run",
        "--model",
        NAME,
        "--board",
        &board,
        "-s",
        "tests/images/detect",
    ]);
    common::assert_clean_failure(&out, &["output `output0`", "NaN"]);
    let lines = json_lines(&stdout(&out));
    let failed = events(&lines, "model_rollback_failed");
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert!(
        failed[0]["message"]
            .as_str()
            .expect("message")
            .contains("2.1.0"),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|v| v.get("seq").is_none()), "no record");
}
