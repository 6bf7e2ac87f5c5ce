//! Sample collection end to end: `lookout run` keeps frames under a byte cap, in the layout
//! `lookout eval` reads, stops (and says so) when the disk is full or the free-space floor is
//! reached while inference goes on, and `lookout samples export` packs what is kept.

mod common;

use common::{json_lines, lookout, stdout};
use std::path::Path;

/// A board profile like the host's keeping samples in `store` with the given cap and floor,
/// every frame chosen (one in 1 at random), no rate limit to speak of.
fn board(dir: &Path, store: &Path, max_bytes: u64, min_free_bytes: u64) -> String {
    common::host_board_with(
        dir,
        "samples-test",
        "samples",
        &format!(
            "enabled = true\ndir = {:?}\nevery_n = 1\nmax_per_minute = 100000\n\
             max_bytes = {max_bytes}\nmin_free_bytes = {min_free_bytes}\n",
            store.display().to_string()
        ),
    )
}

/// `lookout run` of the bundled detector over the test scenes, played as a camera at 60 fps,
/// for `frames` frames. The pace is a camera's: unpaced, frames come faster than the writer
/// flushes them to disk, and on a loaded machine so many are dropped that the cap is never
/// reached.
fn run(board: &str, frames: u64) -> std::process::Output {
    lookout(&[
        "run",
        "-m",
        "models/shapes-detector.toml",
        "-b",
        board,
        "-s",
        "replay:tests/images/detect@60",
        "--max-frames",
        &frames.to_string(),
    ])
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

#[test]
fn the_cap_holds_to_the_byte_the_newest_are_kept_and_eval_reads_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let cap = 60_000;
    let board = board(dir.path(), &store, cap, 0);
    let out = run(&board, 120);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(
        json_lines(&stdout(&out)).len(),
        120,
        "every frame has its record"
    );

    let kept = files(&store);
    let total: u64 = kept.iter().map(|f| f.1).sum();
    assert!(total <= cap, "{total} bytes under a cap of {cap}");
    let images = assert_store_is_whole(&store);
    // 120 frames of 2-9 KB do not fit in 60 KB: the oldest went, so the store is nearly full
    // and the last frame is in it.
    assert!(images >= 5, "{images} images kept");
    assert!(
        total > cap - 10_000,
        "{total} bytes: evicted more than needed"
    );
    let model_dir = store.join("shapes-detector@2.1.0");
    // Names are `<time>_<seq>_<reason>`; frames the writer had no room for are dropped (and
    // counted), so the newest kept is near the end rather than exactly the last.
    let seqs: Vec<u64> = kept
        .iter()
        .filter_map(|(p, _)| {
            let name = p.file_name()?.to_str()?.strip_suffix(".jpg")?;
            name.split('_').nth(1)?.parse().ok()
        })
        .collect();
    assert_eq!(seqs.len(), images);
    let (oldest, newest) = (seqs.iter().min(), seqs.iter().max());
    assert!(newest.is_some_and(|&s| s >= 100), "{seqs:?}");
    assert!(
        oldest.is_some_and(|&s| s >= 20),
        "the oldest went first: {seqs:?}"
    );
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

#[test]
fn below_the_free_space_floor_collection_stops_and_says_so_while_inference_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let board = board(dir.path(), &store, 1 << 30, u64::MAX / 4);
    let out = run(&board, 40);
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
    let out = run(&board, 100);
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
