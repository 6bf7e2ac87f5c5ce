//! The README's path for a model of one's own ("From an export to the board, step by step"),
//! walked on this machine: an Ultralytics export (the compatibility suite's YOLOv8 detector)
//! is imported with `--int8-weights`, installed with `lookout model install` into the slots
//! folder of a board profile as an administrator would (with `sudo`: the installed version is
//! left to the owner of the state folder, the service's user), and run with the packaged
//! unit's command line (`packaging/lookout.service`'s `ExecStart`, `LOOKOUT_ARGS` in the form
//! `packaging/lookout.conf` shows), in the unit's working directory and, when the test runs as
//! root, as an unprivileged user, until its compact lines arrive on a serial line (a
//! pseudo-terminal pair).

use crate::common;
use crate::common::terminal::pair;
use crate::common::{lookout, lookout_command, repo, stderr, stdout};
use lookout::results::serial::protocol::parse_compact;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

/// The user the state folder belongs to, as `lookout` does on a Pi (`nobody` here).
const SERVICE_UID: u32 = 65534;

/// The packaged unit's `ExecStart`, split into words.
fn exec_start() -> Vec<String> {
    let unit = std::fs::read_to_string(repo("packaging/lookout.service")).expect("unit");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart in the unit");
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn an_export_goes_from_import_to_the_serial_line_as_the_packaged_service_runs_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let as_root = rustix::process::geteuid().is_root();
    if !as_root {
        eprintln!(
            "not root: the install and the run are walked as this user; that an install under \
             sudo leaves the slots to the service's user and the run works as that user is \
             checked only when the tests run as root (as CI does)"
        );
    }

    // /var/lib/lookout: the service's working and state folder, its user's.
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    if as_root {
        std::os::unix::fs::chown(&state, Some(SERVICE_UID), Some(SERVICE_UID)).expect("chown");
        // The scratch folder is root's, mode 700: the service's user must pass through it.
        let mut mode = std::fs::metadata(dir.path()).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
        std::fs::set_permissions(dir.path(), mode).expect("chmod");
    }
    let slots = state.join("models");
    let board = common::host_board_with(
        dir.path(),
        "pi",
        "models",
        &format!("dir = {:?}\ntrial_frames = 3\n", slots.to_string_lossy()),
    );

    // 1. The export, as the user downloaded it.
    let export = dir.path().join("home");
    std::fs::create_dir(&export).expect("export dir");
    let onnx = export.join("yolov8n-det-mini.onnx");
    std::fs::copy(
        repo("tests/fixtures/compat/yolov8n-det-mini/yolov8n-det-mini.onnx"),
        &onnx,
    )
    .expect("copy export");

    // 2-4. Import with int8 weights, checked against the board.
    let onnx_arg = onnx.to_string_lossy().into_owned();
    let out = lookout(&["import", &onnx_arg, "--int8-weights", "--board", &board]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("check: ok: yolov8n-det-mini-int8@1"),
        "{report}"
    );
    assert!(report.contains("fits board pi"), "{report}");

    // 5. Installed with `sudo lookout model install ... --use`.
    let manifest = export.join("yolov8n-det-mini-int8.toml");
    let out = lookout(&[
        "model",
        "install",
        &manifest.to_string_lossy(),
        "--board",
        &board,
        "--use",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("* yolov8n-det-mini-int8@1"),
        "{}",
        stdout(&out)
    );
    let slot = slots.join("yolov8n-det-mini-int8").join("1");
    let installed = slot.join("yolov8n-det-mini-int8.onnx");
    assert!(installed.is_file());
    if as_root {
        for path in [
            &slots,
            &slot.parent().expect("family").to_owned(),
            &slot,
            &installed,
        ] {
            let meta = std::fs::symlink_metadata(path).expect("installed");
            assert_eq!(
                (meta.uid(), meta.gid()),
                (SERVICE_UID, SERVICE_UID),
                "{} is not the service user's",
                path.display()
            );
        }
    }

    // 6. The unit's command line, LOOKOUT_ARGS in lookout.conf's form, on a serial line.
    let (mut term, _slave, port) = pair();
    if as_root {
        std::os::unix::fs::chown(&port, Some(SERVICE_UID), Some(SERVICE_UID)).expect("chown pty");
    }
    let images = repo("tests/images/detect").to_string_lossy().into_owned();
    let lookout_args = format!(
        "--model yolov8n-det-mini-int8 --source {images} --sink serial:{port},format=compact \
         --score 0.0001"
    );
    let words = exec_start();
    assert_eq!(
        words[..4],
        [
            "/usr/bin/lookout",
            "run",
            "--board",
            "/etc/lookout/board.toml"
        ]
    );
    assert_eq!(words[4..], ["$LOOKOUT_ARGS"]);
    let log = tempfile::NamedTempFile::new().expect("log file");
    if as_root {
        std::os::unix::fs::chown(log.path(), Some(SERVICE_UID), Some(SERVICE_UID)).expect("chown");
    }
    let mut cmd = lookout_command();
    cmd.arg(&words[1])
        .args(["--board", &board])
        .args(lookout_args.split_whitespace())
        .current_dir(&state)
        .env("LOOKOUT_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().expect("log file"));
    if as_root {
        cmd.uid(SERVICE_UID).gid(SERVICE_UID);
    }
    let mut child = cmd.spawn().expect("lookout starts");

    let frames = lookout::frames::source::image_files(&repo("tests/images/detect"))
        .expect("images")
        .len();
    let mut lines = Vec::new();
    while lines
        .iter()
        .filter(|l: &&String| l.starts_with("F,"))
        .count()
        < frames
    {
        match term.line(common::patience(Duration::from_secs(60))) {
            Some(line) => lines.push(line),
            None => {
                let _ = child.kill();
                panic!(
                    "lines so far: {lines:#?}\nlookout's log:\n{}",
                    std::fs::read_to_string(log.path()).unwrap_or_default()
                );
            }
        }
    }
    let status = child.wait().expect("lookout ends");
    let log = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(status.success(), "{log}");
    assert!(log.contains("yolov8n-det-mini-int8@1"), "{log}");
    let mut detections = 0;
    for line in &lines {
        let parsed = parse_compact(line).unwrap_or_else(|e| panic!("{e}"));
        if parsed.kind == 'D' {
            detections += 1;
            // label id within COCO's 80.
            assert!(parsed.fields[1] < 80, "{line}");
        }
    }
    assert_eq!(lines.iter().filter(|l| l.starts_with("F,")).count(), frames);
    assert!(detections > 0, "{lines:?}");
}
