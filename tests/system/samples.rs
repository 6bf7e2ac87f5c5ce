//! Sample collection end to end: `lookout run` keeps frames under a byte cap, in the layout
//! `lookout eval` reads, stops (and says so) when the disk is full or the free-space floor is
//! reached while inference goes on, and `lookout samples export` packs what is kept.

use crate::common;
use crate::common::{json_lines, lookout, stdout};
use std::path::Path;

/// A board profile like the host's keeping samples in `store` with the given cap and floor,
/// every frame chosen (one in 1 at random), no rate limit to speak of.
fn board(dir: &Path, store: &Path, max_bytes: u64, min_free_bytes: u64) -> String {
    common::samples_board(
        dir,
        "samples-test",
        store,
        Some(max_bytes),
        Some(min_free_bytes),
    )
}

/// `lookout run` of the bundled detector over the test scenes for `frames` frames, from
/// `source` (the scene folder looping, or the same played as a camera), logging each sample the
/// writer keeps. From files the frame loop waits for the writer, so every frame is a sample;
/// from a camera the writer drops what it has no time for, as many as the machine's speed
/// decides, so nothing asserted of a camera run depends on how many.
fn run(board: &str, source: &str, frames: u64) -> std::process::Output {
    let mut args = vec![
        "run",
        "-m",
        "models/shapes-detector.toml",
        "-b",
        board,
        "-s",
        source,
    ];
    if !source.starts_with("replay:") {
        args.push("--loop");
    }
    let frames = frames.to_string();
    args.extend(["--max-frames", &frames]);
    common::lookout_command()
        .args(&args)
        .env("LOOKOUT_LOG", "info,lookout::lifecycle::samples=debug")
        .output()
        .expect("the lookout binary runs")
}

/// The test scenes as files: the loop waits for the sample writer.
const FILES: &str = "tests/images/detect";
/// The same scenes as a 60 fps camera: the writer drops what it cannot keep up with.
const CAMERA: &str = "replay:tests/images/detect@60";

/// The samples a run's log says the writer kept, in the order it wrote them: (stem, bytes).
fn written(log: &str) -> Vec<(String, u64)> {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("sample ")?;
            let (stem, rest) = rest.split_once(" kept: ")?;
            let bytes = rest.strip_suffix(" bytes")?.parse().ok()?;
            Some((stem.to_owned(), bytes))
        })
        .collect()
}

/// The run's closing count of samples: (saved, dropped busy).
fn counts(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .find_map(|l| l.split_once("samples: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no closing sample count: {log}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (words[1], words[3], words[4]),
        ("saved,", "dropped", "busy,"),
        "{line}"
    );
    (
        words[0].parse().expect("saved"),
        words[2].parse().expect("dropped"),
    )
}

/// Every file under `dir` with its size.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

/// Every kept image decodes, and every label file is YOLO lines; no `.tmp` is left.
fn assert_store_is_whole(store: &Path) -> usize {
    let mut images = 0;
    for (path, _) in files(store) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(!name.ends_with(".tmp"), "left over: {}", path.display());
        match path.extension().and_then(|e| e.to_str()) {
            Some("jpg") => {
                let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                // The frame as captured, at its own size (the test scenes' sizes).
                let size = (img.width(), img.height());
                assert!(
                    matches!(size, (192, 144) | (128, 128) | (144, 176) | (160, 120)),
                    "{}: {size:?}",
                    path.display()
                );
                images += 1;
            }
            Some("txt") if name != "labels.txt" => {
                let text = std::fs::read_to_string(&path).expect("label");
                for line in text.lines() {
                    let fields: Vec<f32> = line
                        .split_whitespace()
                        .map(|f| f.parse().expect("number"))
                        .collect();
                    assert_eq!(fields.len(), 5, "{}: {line}", path.display());
                    assert!(
                        fields[1..].iter().all(|v| (0.0..=1.0).contains(v)),
                        "{line}"
                    );
                }
            }
            _ => {}
        }
    }
    images
}

/// The store against what the writer wrote: every file counted, no more than the cap; every
/// sample whole; and exactly the newest of the written samples, as many as fit: the newest
/// one evicted would not have fitted beside them. Returns the images kept.
fn assert_newest_written_are_kept(store: &Path, cap: u64, written: &[(String, u64)]) -> usize {
    let kept = files(store);
    let total: u64 = kept.iter().map(|f| f.1).sum();
    assert!(total <= cap, "{total} bytes under a cap of {cap}");
    let images = assert_store_is_whole(store);
    let mut stems: Vec<&str> = kept
        .iter()
        .filter_map(|(p, _)| p.file_name()?.to_str()?.strip_suffix(".jpg"))
        .collect();
    stems.sort_unstable();
    assert_eq!(stems.len(), images);
    assert!(
        images <= written.len(),
        "{images} kept of {} written",
        written.len()
    );
    let evicted = written.len() - images;
    let newest: Vec<&str> = written[evicted..].iter().map(|w| w.0.as_str()).collect();
    assert_eq!(stems, newest, "the newest written are the ones kept");
    if let Some((stem, bytes)) = evicted.checked_sub(1).map(|i| &written[i]) {
        assert!(
            total + bytes > cap,
            "{stem} ({bytes} bytes) was evicted though it fits beside the {total} bytes kept \
             under the cap of {cap}"
        );
    }
    images
}

/// The store's cap in the cap tests: 120 frames of 2-9 KB do not fit in it.
const CAP: u64 = 60_000;

/// A run of 120 frames from `source` keeping every frame under [`CAP`], which succeeded and
/// gave every frame its record.
struct CappedRun {
    dir: tempfile::TempDir,
    store: std::path::PathBuf,
    board: String,
    /// lookout's log, the writer's kept samples and closing counts included.
    log: String,
}

fn run_under_cap(source: &str) -> CappedRun {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let board = board(dir.path(), &store, CAP, 0);
    let out = run(&board, source, 120);
    let log = common::stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        json_lines(&stdout(&out)).len(),
        120,
        "every frame has its record"
    );
    CappedRun {
        dir,
        store,
        board,
        log,
    }
}

#[test]
fn from_files_every_frame_is_kept_the_cap_holds_to_the_byte_and_eval_reads_the_store() {
    let CappedRun {
        dir,
        store,
        board,
        log,
    } = run_under_cap(FILES);

    // Files wait for the writer: every frame was written, in order.
    assert_eq!(counts(&log), (120, 0), "{log}");
    let written = written(&log);
    let seqs: Vec<u64> = written
        .iter()
        .map(|(stem, _)| {
            stem.split('_')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("seq")
        })
        .collect();
    assert_eq!(seqs, (0..120).collect::<Vec<u64>>(), "{log}");
    // Not all fit: the oldest went.
    let images = assert_newest_written_are_kept(&store, CAP, &written);
    assert!((5..120).contains(&images), "{images} images kept");
    let model_dir = store.join("shapes-detector@2.1.0");
    assert_eq!(
        std::fs::read_to_string(model_dir.join("labels.txt")).expect("labels.txt"),
        "circle\nsquare\ntriangle\n"
    );

    // The store is a labelled set `lookout eval` reads: its own predictions as labels score
    // (nearly) perfectly.
    let out = lookout(&[
        "eval",
        "-m",
        "models/shapes-detector.toml",
        "--data",
        &model_dir.to_string_lossy(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let map50 = report["map"]["map50"].as_f64().expect("map50");
    assert!(map50 > 0.9, "{report}");

    // And export packs exactly what is there.
    let tar = dir.path().join("samples.tar");
    let out = common::export_samples(&board, &tar);
    assert!(
        stdout(&out).contains(&format!("{images} images")),
        "{}",
        stdout(&out)
    );
    let mut archive = tar::Archive::new(std::fs::File::open(&tar).expect("tar"));
    let packed = archive
        .entries()
        .expect("entries")
        .filter(|e| {
            e.as_ref().is_ok_and(|e| {
                e.path()
                    .is_ok_and(|p| p.extension().is_some_and(|x| x == "jpg"))
            })
        })
        .count();
    assert_eq!(packed, images);
}

/// From a camera the writer drops what it has no time for, and how many is the machine's
/// business; what holds whatever it is: inference never waits (every frame has its record),
/// every frame is either written or counted as dropped, and the store keeps the newest of what
/// was written under the cap.
#[test]
fn from_a_camera_frames_the_writer_is_too_busy_for_are_counted_and_the_newest_kept() {
    // The folder is bound until the end: `..` would drop it, and the store with it.
    let CappedRun {
        dir: _dir,
        store,
        log,
        ..
    } = run_under_cap(CAMERA);
    let (saved, dropped) = counts(&log);
    assert_eq!(
        saved + dropped,
        120,
        "every frame chosen is written or counted: {log}"
    );
    let written = written(&log);
    assert_eq!(written.len() as u64, saved, "{log}");
    assert!(saved >= 1, "the first frame finds the writer idle: {log}");
    assert_newest_written_are_kept(&store, CAP, &written);
}

#[test]
fn below_the_free_space_floor_collection_stops_and_says_so_while_inference_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let board = board(dir.path(), &store, 1 << 30, u64::MAX / 4);
    let out = run(&board, FILES, 40);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let lines = json_lines(&stdout(&out));
    let records = lines.iter().filter(|l| l.get("seq").is_some()).count();
    assert_eq!(records, 40, "inference went on");
    let stopped: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "samples_stopped")
        .collect();
    assert_eq!(stopped.len(), 1, "said once: {stopped:#?}");
    let message = stopped[0]["message"].as_str().expect("message");
    assert!(message.contains("bytes free, the floor is"), "{message}");
    assert_eq!(assert_store_is_whole(&store), 0);
}

/// A tmpfs of 200 KiB with no floor: the disk really fills. Needs root to mount; skipped
/// (and said so) otherwise.
#[test]
fn a_full_disk_stops_collection_leaves_nothing_half_written_and_inference_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=200k", "tmpfs"])
        .arg(&store)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&store);
    let board = board(dir.path(), &store, 1 << 30, 0);
    let out = run(&board, FILES, 100);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let lines = json_lines(&stdout(&out));
    assert_eq!(
        lines.iter().filter(|l| l.get("seq").is_some()).count(),
        100,
        "inference went on"
    );
    let stopped: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "samples_stopped")
        .collect();
    assert_eq!(stopped.len(), 1, "{stopped:#?}");
    let images = assert_store_is_whole(&store);
    assert!(images > 5, "it filled the disk first: {images}");
}
