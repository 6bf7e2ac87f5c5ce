//! The live-source path of `lookout run` as a process: a camera that is not there, and a
//! file-backed "camera" (`replay:DIR@FPS`) whose folder disappears and comes back, which runs
//! the same capture thread, outage events and reconnect logic as a V4L2 camera.

use crate::common;
use crate::common::{lookout, lookout_command, patience, root, stderr};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// A running `lookout run`, killed when dropped; its log (the capture thread's at debug level)
/// goes to a file, printed when the test fails.
struct Running {
    child: Child,
    lines: Receiver<String>,
    log: tempfile::NamedTempFile,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("lookout's log:\n{}", self.log());
        }
    }
}

fn spawn(args: &[&str]) -> Running {
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut child = lookout_command()
        .args(args)
        .env("LOOKOUT_LOG", "info,lookout::frames::camera=debug")
        .stdout(Stdio::piped())
        .stderr(log.reopen().expect("log file"))
        .spawn()
        .expect("lookout starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running { child, lines, log }
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits until the capture thread has tried to reopen the device and failed `times` times
    /// (its log says so), while the run goes on: the outage has lasted through retries, however
    /// slowly this machine runs.
    fn until_reopen_failed(&mut self, times: usize) {
        let deadline = Instant::now() + patience(Duration::from_secs(30));
        while self.log().matches(": open failed: ").count() < times {
            assert!(
                self.child.try_wait().expect("poll").is_none(),
                "lookout ended: {}",
                self.log()
            );
            assert!(Instant::now() < deadline, "no reopen attempt");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// JSON records until one satisfies `done`; panics after `wait` (scaled:
    /// [`common::patience`]), a guard against a hung run.
    fn until(
        &self,
        wait: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + patience(wait);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("timed out; records so far: {seen:#?}"));
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
            let stop = done(&v);
            seen.push(v);
            if stop {
                return seen;
            }
        }
    }
}

fn is_event(v: &serde_json::Value, kind: &str) -> bool {
    v["event"] == kind
}

#[test]
fn cameras_without_a_camera_says_so_and_how_to_fix_it() {
    if std::path::Path::new("/dev/video0").exists() {
        return; // a machine with a camera lists it instead
    }
    let out = lookout(&["cameras"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with("error: no camera found"), "{err}");
    assert!(err.contains("libcamerify"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_missing_camera_is_reported_as_an_event_and_the_run_goes_on() {
    let mut run = spawn(&["run", "-s", "camera:/dev/video97"]);
    let seen = run.until(Duration::from_secs(30), |v| is_event(v, "camera_lost"));
    let lost = seen.last().expect("event");
    assert_eq!(lost["source"], "camera:/dev/video97");
    assert!(
        !lost["message"].as_str().expect("message").is_empty(),
        "{lost}"
    );
    // Still running, and still trying: two more attempts after the one that reported it.
    run.until_reopen_failed(3);
}

#[test]
fn a_camera_that_disappears_is_reopened_and_the_outage_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let frames = dir.path().join("frames");
    let away = dir.path().join("unplugged");
    std::fs::create_dir(&frames).expect("mkdir");
    for entry in std::fs::read_dir(root().join("tests/images/detect")).expect("images") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "png") {
            std::fs::copy(&path, frames.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let spec = format!("replay:{}@20", frames.display());
    let mut run = spawn(&["run", "-m", "models/shapes-detector.toml", "-s", &spec]);

    let before = run.until(Duration::from_secs(60), |v| v["seq"].as_u64() >= Some(3));
    assert!(
        before.iter().all(|v| v.get("detections").is_some()),
        "{before:#?}"
    );
    // Frames carry capture times, in order.
    let times: Vec<&str> = before
        .iter()
        .filter_map(|v| v["timestamp"].as_str())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    std::fs::rename(&frames, &away).expect("unplug");
    let lost = run.until(Duration::from_secs(30), |v| is_event(v, "camera_lost"));
    let event = lost.last().expect("event");
    assert!(
        event["source"]
            .as_str()
            .expect("source")
            .starts_with("replay:"),
        "{event}"
    );
    // Plugged back in only after reopening failed twice, so the outage spans retries.
    run.until_reopen_failed(2);
    std::fs::rename(&away, &frames).expect("plug back in");

    let back = run.until(Duration::from_secs(30), |v| is_event(v, "camera_restored"));
    assert!(
        back.iter().all(|v| !is_event(v, "camera_lost")),
        "one lost event per outage: {back:#?}"
    );
    let restored = back.last().expect("event");
    assert!(
        restored["message"]
            .as_str()
            .expect("message")
            .contains("after"),
        "{restored}"
    );
    let last_seq = before.last().and_then(|v| v["seq"].as_u64()).expect("seq");
    let after = run.until(Duration::from_secs(30), |v| v.get("detections").is_some());
    let seq = after.last().and_then(|v| v["seq"].as_u64()).expect("seq");
    assert!(
        seq > last_seq,
        "frames again after the outage: {seq} after {last_seq}"
    );
}

#[test]
fn bad_live_source_specs_fail_before_any_frame() {
    for (spec, needle) in [
        ("replay:", "expected replay:DIR[@FPS]"),
        ("replay:/tmp@0", "frame rate \"0\""),
        ("replay:/tmp@1e-20", "not in [0.5, 1000]"),
        ("camera:", "expected camera, camera:N or camera:/dev/videoN"),
    ] {
        let out = lookout(&["run", "-s", spec]);
        common::assert_clean_failure(&out, &[needle]);
    }
    let out = lookout(&["run", "-s", "camera:0", "--camera-mode", "640x480 YUYV"]);
    common::assert_clean_failure(&out, &["WIDTHxHEIGHT@FPS FORMAT"]);
}

/// A host board profile whose camera is turned as `orientation` says (`rotate = …` and/or
/// `flip = …` lines).
fn oriented_board(dir: &std::path::Path, orientation: &str) -> String {
    let host = std::fs::read_to_string(common::repo("boards/host.toml")).expect("host");
    let text = host
        .replace("name = \"host\"", "name = \"turned\"")
        .replacen("[camera]\n", &format!("[camera]\n{orientation}\n"), 1);
    let path = dir.join("turned.toml");
    std::fs::write(&path, text).expect("board");
    path.to_string_lossy().into_owned()
}

/// Each record's `(label_id, box)` list.
fn boxes_of(records: &[serde_json::Value]) -> Vec<Vec<(u64, [f64; 4])>> {
    records
        .iter()
        .filter(|r| r.get("seq").is_some())
        .map(|r| {
            r["detections"]
                .as_array()
                .expect("detections")
                .iter()
                .map(|d| {
                    (
                        d["label_id"].as_u64().expect("label"),
                        common::json_box(&d["box"]),
                    )
                })
                .collect()
        })
        .collect()
}

/// How a camera mounted turned gives its frames.
type Turn = fn(&image::RgbImage) -> image::RgbImage;

/// A camera mounted turned (or mirrored) gives the test scenes turned; `[camera] rotate` /
/// `flip` turn them back before the model sees them, so every record of the replay has the
/// boxes of one of the upright scenes, within 1 px, in the upright frame's size.
#[test]
fn a_turned_camera_s_frames_are_turned_back_and_give_the_upright_boxes() {
    let upright = common::lookout(&["run", "--source", "tests/images/detect"]);
    assert!(upright.status.success(), "{}", common::stderr(&upright));
    let upright_records = common::json_lines(&common::stdout(&upright));
    let upright_boxes = boxes_of(&upright_records);
    let sizes: Vec<serde_json::Value> = upright_records
        .iter()
        .map(|r| r["frame_size"].clone())
        .collect();
    // (how the camera's frames come, how the board turns them back)
    let cases: [(Turn, &str); 3] = [
        (image::imageops::rotate90, "rotate = 270"),
        (image::imageops::rotate180, "rotate = 180"),
        (image::imageops::flip_horizontal, "flip = \"horizontal\""),
    ];
    for (camera_turns, board_turns) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let frames = dir.path().join("frames");
        std::fs::create_dir(&frames).expect("frames");
        let mut names: Vec<_> = std::fs::read_dir(common::repo("tests/images/detect"))
            .expect("scenes")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        names.sort();
        for path in &names {
            let image = image::open(path).expect("scene").into_rgb8();
            camera_turns(&image)
                .save(frames.join(path.file_name().expect("name")))
                .expect("save");
        }
        let board = oriented_board(dir.path(), board_turns);
        let spec = format!("replay:{}@4", frames.display());
        let out = common::lookout(&[
            "run",
            "--source",
            &spec,
            "--max-frames",
            "8",
            "--board",
            &board,
        ]);
        assert!(
            out.status.success(),
            "{board_turns}: {}",
            common::stderr(&out)
        );
        let records = common::json_lines(&common::stdout(&out));
        let turned = boxes_of(&records);
        assert_eq!(turned.len(), 8, "{board_turns}");
        for (record, boxes) in records
            .iter()
            .filter(|r| r.get("seq").is_some())
            .zip(&turned)
        {
            // Frames may be dropped or repeat (a live source): each must be one of the scenes.
            let matched = upright_boxes.iter().position(|want| {
                want.len() == boxes.len()
                    && want.iter().zip(boxes).all(|((l1, b1), (l2, b2))| {
                        l1 == l2 && b1.iter().zip(b2).all(|(p, q)| (p - q).abs() <= 1.0)
                    })
            });
            let scene = matched.unwrap_or_else(|| {
                panic!("{board_turns}: {boxes:?} is none of the upright scenes' {upright_boxes:?}")
            });
            assert_eq!(record["frame_size"], sizes[scene], "{board_turns}");
        }
    }
}

#[test]
fn a_rotation_that_is_not_a_quarter_turn_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refused = |orientation: &str| {
        let board = oriented_board(dir.path(), orientation);
        let out = common::lookout(&[
            "run",
            "-s",
            "pattern",
            "--max-frames",
            "1",
            "--board",
            &board,
        ]);
        assert!(!out.status.success(), "{orientation}");
        common::stderr(&out)
    };
    let err = refused("rotate = 45");
    assert!(
        err.contains("turned.toml: field `camera.rotate`: 45 is not 0, 90, 180 or 270"),
        "{err}"
    );
    let err = refused("flip = \"diagonal\"");
    assert!(
        err.contains("turned.toml") && err.contains("diagonal"),
        "{err}"
    );
}

/// A host board profile with `[camera] kind = "csi"`.
fn csi_board(dir: &std::path::Path) -> String {
    oriented_board(dir, "kind = \"csi\"")
}

#[test]
fn a_csi_camera_runs_lookout_again_through_libcamera_s_v4l2_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let board = csi_board(dir.path());
    // Without the layer: one clear error naming the package.
    let missing = dir.path().join("no-such/v4l2-compat.so");
    let out = lookout_command()
        .args(["run", "--source", "camera:/dev/video99", "--board", &board])
        .env("LOOKOUT_V4L2_COMPAT", &missing)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("kind is \"csi\", but libcamera's V4L2 layer is not installed: `sudo apt install libcamera-v4l2`"),
        "{err}"
    );
    // With it (here a harmless system library standing in for libcamera's, which this machine
    // does not have): lookout starts itself again with it preloaded, then waits for the camera.
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).is_file())
    .expect("libm");
    let layer = dir.path().join("v4l2-compat.so");
    std::fs::copy(libm, &layer).expect("copy");
    let log = tempfile::NamedTempFile::new().expect("log");
    let mut child = lookout_command()
        .args(["run", "--source", "camera:/dev/video99", "--board", &board])
        .env("LOOKOUT_V4L2_COMPAT", &layer)
        .env("LOOKOUT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log.reopen().expect("log"))
        .spawn()
        .expect("starts");
    let want = format!(
        "CSI camera through libcamera's V4L2 layer (LD_PRELOAD={})",
        layer.display()
    );
    let deadline = Instant::now() + patience(Duration::from_secs(30));
    let text = loop {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        if text.contains(&want) && text.contains("reopening") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains(&want), "{text}");
    assert_eq!(text.matches("starting again through").count(), 1, "{text}");
}

/// The objects of a record: (label, box), sorted.
fn objects_of(record: &serde_json::Value) -> Vec<(String, [f64; 4])> {
    let mut objects: Vec<(String, [f64; 4])> = record["detections"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|d| {
                    let b: Vec<f64> = d["box"]
                        .as_array()
                        .expect("box")
                        .iter()
                        .map(|x| x.as_f64().expect("coordinate"))
                        .collect();
                    (
                        d["label"].as_str().expect("label").to_owned(),
                        [b[0], b[1], b[2], b[3]],
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    objects.sort_by(|a, b| a.0.cmp(&b.0).then(a.1[0].total_cmp(&b.1[0])));
    objects
}

/// The objects of each frame of the rendered sequence, read as files.
fn sequence_objects() -> Vec<Vec<(String, [f64; 4])>> {
    let out = lookout(&[
        "run",
        "-m",
        "models/shapes-detector.toml",
        "-s",
        "tests/images/sequence",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    common::json_lines(&common::stdout(&out))
        .iter()
        .filter(|v| v.get("detections").is_some())
        .map(objects_of)
        .collect()
}

/// Whether a record shows the objects of one of the sequence's frames: the same labels, each
/// box within `tolerance` pixels.
fn is_a_sequence_frame(
    record: &serde_json::Value,
    frames: &[Vec<(String, [f64; 4])>],
    tolerance: f64,
) -> bool {
    let got = objects_of(record);
    frames.iter().any(|want| {
        want.len() == got.len()
            && want.iter().zip(&got).all(|(w, g)| {
                w.0 == g.0
                    && w.1
                        .iter()
                        .zip(&g.1)
                        .all(|(a, b)| (a - b).abs() <= tolerance)
            })
    })
}

/// A network camera streams the sequence; lookout's records show its frames; the camera goes
/// away (server stopped: the connection ends and new ones are refused) and comes back on the
/// same port; the outage is one `camera_lost` and one `camera_restored`, and frames flow again.
fn network_camera_outage(
    start: &dyn Fn(u16) -> common::camera_servers::Server,
    url: &dyn Fn(u16) -> String,
    tolerance: f64,
    mode: &str,
) {
    let frames = sequence_objects();
    let server = start(0);
    let port = server.port();
    let url = url(port);
    let mut run = spawn(&["run", "-m", "models/shapes-detector.toml", "-s", &url]);
    let before = run.until(Duration::from_secs(60), |v| v["seq"].as_u64() >= Some(4));
    let records: Vec<&serde_json::Value> = before
        .iter()
        .filter(|v| v.get("detections").is_some())
        .collect();
    assert!(records.len() >= 5, "{before:#?}");
    for record in &records {
        assert_eq!(
            record["frame_size"],
            serde_json::json!([192, 144]),
            "{record}"
        );
        assert!(
            is_a_sequence_frame(record, &frames, tolerance),
            "not a frame of the sequence: {record}"
        );
    }
    assert!(
        run.log().contains(mode),
        "the capture mode is logged: {}",
        run.log()
    );

    server.stop();
    let lost = run.until(Duration::from_secs(30), |v| is_event(v, "camera_lost"));
    let event = lost.last().expect("event");
    // The URL carries credentials: every text shows it with the password hidden.
    let (shown, password) = redacted(&url);
    assert_eq!(event["source"], shown.as_str(), "{event}");
    run.until_reopen_failed(2);
    let server = start(port);
    let back = run.until(Duration::from_secs(30), |v| is_event(v, "camera_restored"));
    assert!(
        back.iter().all(|v| !is_event(v, "camera_lost")),
        "one lost event per outage: {back:#?}"
    );
    let last_seq = records.last().and_then(|v| v["seq"].as_u64()).expect("seq");
    let after = run.until(Duration::from_secs(30), |v| v.get("detections").is_some());
    let record = after.last().expect("record");
    assert!(record["seq"].as_u64() > Some(last_seq), "{record}");
    assert!(
        is_a_sequence_frame(record, &frames, tolerance),
        "not a frame of the sequence: {record}"
    );
    drop(server);
    let everything = format!("{before:?}{lost:?}{back:?}{after:?}{}", run.log());
    assert!(!everything.contains(password), "the password was printed");
}

/// A URL with `user:password@` as lookout shows it (`user:***@`), and the password.
fn redacted(url: &str) -> (String, &str) {
    let (scheme, rest) = url.split_once("://").expect("URL");
    let (login, host) = rest.split_once('@').expect("credentials");
    let (user, password) = login.split_once(':').expect("password");
    (format!("{scheme}://{user}:***@{host}"), password)
}

#[test]
fn an_mjpeg_camera_over_http_is_read_and_its_outage_reported() {
    let jpegs = common::camera_servers::jpegs(&root().join("tests/images/sequence"));
    // Parts with a Content-Length first, then, after the outage, without one: the JPEG bytes
    // are the files', so the records are exactly the files' results.
    network_camera_outage(
        &|port| {
            common::camera_servers::mjpeg(
                port,
                jpegs.clone(),
                20.0,
                port == 0,
                Some("viewer:m7Qz4pL"),
            )
        },
        &|port| format!("http://viewer:m7Qz4pL@127.0.0.1:{port}/stream"),
        0.0,
        "MJPEG stream over HTTP",
    );
}

/// The rendered sequence as H.264 (tools/encode-sequence-h264), for the RTSP server.
fn sequence_clip() -> std::sync::Arc<common::camera_servers::H264Clip> {
    std::sync::Arc::new(common::camera_servers::H264Clip::load(
        &root().join("tests/fixtures/network/sequence.h264"),
    ))
}

#[test]
fn an_rtsp_camera_s_h264_is_decoded_and_its_outage_reported() {
    let clip = sequence_clip();
    // H.264 is lossy: boxes within 1 pixel of the files' (tools/encode-sequence-h264).
    network_camera_outage(
        &|port| {
            common::camera_servers::rtsp(
                port,
                clip.clone(),
                20.0,
                common::camera_servers::RtspCodec::H264,
                Some("admin:s3cret"),
            )
        },
        &|port| format!("rtsp://admin:s3cret@127.0.0.1:{port}/cam"),
        1.0,
        "192x144 H.264 over RTSP/TCP, decoded by OpenH264 2.",
    );
}

#[test]
fn a_network_stream_lookout_cannot_decode_is_an_event_naming_the_codec() {
    let clip = sequence_clip();
    let server =
        common::camera_servers::rtsp(0, clip, 20.0, common::camera_servers::RtspCodec::H265, None);
    let url = format!("rtsp://127.0.0.1:{}/cam", server.port());
    let run = spawn(&["run", "-s", &url]);
    let seen = run.until(Duration::from_secs(30), |v| is_event(v, "camera_lost"));
    let message = seen.last().expect("event")["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(
        message.contains("the camera's video is h265; lookout decodes H.264 (h264) or JPEG"),
        "{message}"
    );
    // A camera that answers HTTP with a web page instead of a stream.
    let page = common::camera_servers::http_page(0);
    let url = format!("http://127.0.0.1:{}/", page.port());
    let run = spawn(&["run", "-s", &url]);
    let seen = run.until(Duration::from_secs(30), |v| is_event(v, "camera_lost"));
    let message = seen.last().expect("event")["message"]
        .as_str()
        .expect("message");
    assert!(
        message.contains("the answer is \"text/html\"; lookout reads MJPEG"),
        "{message}"
    );
}

#[test]
fn network_camera_urls_are_checked_before_any_frame_and_passwords_never_shown() {
    for (spec, needle) in [
        ("https://cam.local/video", "https:// is not supported"),
        ("rtsp://", "the URL names no host"),
        ("http://[::1/", "not a URL"),
    ] {
        let out = lookout(&["run", "-s", spec]);
        assert!(!out.status.success(), "{spec}");
        let err = stderr(&out);
        assert!(
            err.contains(needle) && !err.contains("panicked"),
            "{spec}: {err}"
        );
    }
    // Nothing listens on port 9 of the loopback: refused, reported without the password.
    let run = spawn(&["run", "-s", "rtsp://admin:hunter2@127.0.0.1:9/stream1"]);
    let seen = run.until(Duration::from_secs(30), |v| is_event(v, "camera_lost"));
    let event = seen.last().expect("event");
    assert_eq!(event["source"], "rtsp://admin:***@127.0.0.1:9/stream1");
    assert!(
        event["message"]
            .as_str()
            .expect("message")
            .contains("Connection refused"),
        "{event}"
    );
    assert!(!format!("{seen:?}").contains("hunter2"), "{seen:?}");
    assert!(!run.log().contains("hunter2"), "{}", run.log());
}
