//! Tracking and zones end to end: `lookout run` with the bundled detector on a real test scene,
//! zones from a zones file or the board profile, and the events and records it writes; and
//! zones that do not fit the model or the frame, refused with the file, zone and field named.

use crate::common;
use crate::common::{json_lines, lookout, stderr, stdout};
use serde_json::Value;
use std::path::Path;

const BOTTOM_SQUARES: &str = "[tracking]\nenabled = true\n\n[[zones]]\nname = \"bottom\"\n\
     points = [[0, 72], [192, 72], [192, 144], [0, 144]]\nlabels = [\"square\"]\n";

fn run_still(dir: &Path, extra: &[&str]) -> std::process::Output {
    let source = common::still_scene(dir);
    let mut args = vec!["run", "--source", &source, "--loop", "--max-frames", "8"];
    args.extend_from_slice(extra);
    lookout(&args)
}

/// `(event, track_id, zone, zone_count)` of every event line, in order.
fn events(lines: &[Value]) -> Vec<(String, u64, Option<String>, Option<u64>)> {
    lines
        .iter()
        .filter(|l| l.get("event").is_some())
        .map(|l| {
            (
                l["event"].as_str().expect("event").to_string(),
                l["track_id"].as_u64().expect("track_id"),
                l.get("zone").and_then(Value::as_str).map(String::from),
                l.get("zone_count").and_then(Value::as_u64),
            )
        })
        .collect()
}

fn assert_still_scene_events(out: &std::process::Output) {
    assert!(out.status.success(), "{}", stderr(out));
    let lines = json_lines(&stdout(out));
    let ev = |kind: &str, id: u64, zone: Option<&str>, count: Option<u64>| {
        (kind.to_string(), id, zone.map(String::from), count)
    };
    // Four objects confirmed at frame 2 (min_hits 3), ids by their order in the record (score);
    // the lower square (3) in zone "bottom" after 3 frames inside (2, 3, 4); at the end of the
    // source every object leaves, its zones first.
    assert_eq!(
        events(&lines),
        vec![
            ev("object_entered", 1, None, None),
            ev("object_entered", 2, None, None),
            ev("object_entered", 3, None, None),
            ev("object_entered", 4, None, None),
            ev("object_entered", 3, Some("bottom"), Some(1)),
            ev("object_left", 1, None, None),
            ev("object_left", 2, None, None),
            ev("object_left", 3, Some("bottom"), Some(0)),
            ev("object_left", 3, None, None),
            ev("object_left", 4, None, None),
        ]
    );
    let records: Vec<&Value> = lines.iter().filter(|l| l.get("seq").is_some()).collect();
    assert_eq!(records.len(), 8);
    for record in &records {
        let seq = record["seq"].as_u64().expect("seq");
        let detections = record["detections"].as_array().expect("detections");
        let ids: Vec<Option<u64>> = detections
            .iter()
            .map(|d| d.get("track_id").and_then(Value::as_u64))
            .collect();
        if seq < 2 {
            assert!(ids.iter().all(Option::is_none), "seq {seq}: {ids:?}");
        } else {
            assert_eq!(ids, [Some(1), Some(2), Some(3), Some(4)], "seq {seq}");
        }
        let count = record["zones"][0]["count"].as_u64();
        assert_eq!(record["zones"][0]["zone"], "bottom");
        assert_eq!(count, Some(u64::from(seq >= 4)), "seq {seq}");
    }
    // The square's entering names the frame it happened in.
    let entered = lines
        .iter()
        .find(|l| l["event"] == "object_entered" && l.get("zone").is_some())
        .expect("zone event");
    assert_eq!(entered["label"], "square");
    assert_eq!(entered["source"], "shapes-detector@2.1.0");
    // After the record of the frame it happened in (frame 4), before the next one.
    let at = |pred: &dyn Fn(&Value) -> bool| lines.iter().position(pred).expect("line");
    let event_at = at(&|l| l["event"] == "object_entered" && l.get("zone").is_some());
    assert_eq!(lines[event_at - 1]["seq"], 4);
    assert_eq!(lines[event_at + 1]["seq"], 5);
    assert_eq!(entered["message"], "square 3 entered zone bottom");
    assert_eq!(entered["last_seen"], 4);
}

#[test]
fn a_zones_file_gives_object_and_zone_events_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zones = dir.path().join("zones.toml");
    std::fs::write(&zones, BOTTOM_SQUARES).expect("zones");
    let zones = zones.to_string_lossy();
    let one = ["--zones", &zones, "--threads", "1", "--workers", "1"];
    assert_still_scene_events(&run_still(dir.path(), &one));
    // With two frames in flight at once, records and events come in the same order.
    let two = ["--zones", &zones, "--threads", "1", "--workers", "2"];
    assert_still_scene_events(&run_still(dir.path(), &two));
}

#[test]
fn the_board_profile_s_zones_give_the_same_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = std::fs::read_to_string(common::repo("boards/host.toml")).expect("host");
    let board = dir.path().join("zoned.toml");
    std::fs::write(
        &board,
        host.replace("name = \"host\"", "name = \"zoned\"") + "\n" + BOTTOM_SQUARES,
    )
    .expect("board");
    let out = run_still(
        dir.path(),
        &["--board", &board.to_string_lossy(), "--workers", "1"],
    );
    assert_still_scene_events(&out);
}

#[test]
fn zones_that_do_not_fit_are_refused_naming_file_zone_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zones = dir.path().join("zones.toml");
    let zones_arg = zones.to_string_lossy().into_owned();
    let refused = |text: &str, needles: &[&str]| {
        std::fs::write(&zones, text).expect("zones");
        let out = run_still(dir.path(), &["--zones", &zones_arg]);
        assert!(!out.status.success(), "{text}");
        let err = stderr(&out);
        for needle in needles {
            assert!(err.contains(needle), "{text}\nwanted {needle:?} in:\n{err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    };
    // A label the model does not have.
    refused(
        &BOTTOM_SQUARES.replace("\"square\"", "\"dog\""),
        &[
            "zones.toml: the zones do not fit shapes-detector@2.1.0",
            "zones[0] (bottom): label \"dog\" is not one of the model's labels (circle, square, triangle)",
        ],
    );
    // A corner outside the 192x144 frame: found on the first frame.
    refused(
        &BOTTOM_SQUARES.replace("[192, 72]", "[300, 72]"),
        &[
            "zones.toml: the zones do not fit the frames",
            "zones[0] (bottom): points[1] [300, 72] is outside the 192x144 frame",
        ],
    );
    // A polygon whose edges cross.
    refused(
        &BOTTOM_SQUARES.replace(
            "[[0, 72], [192, 72], [192, 144], [0, 144]]",
            "[[0, 72], [192, 144], [192, 72], [0, 144]]",
        ),
        &["zones.toml: field `zones[0].points`: edge points[0]-points[1] crosses edge points[2]-points[3]"],
    );
    // A zones file that is not there.
    std::fs::remove_file(&zones).expect("remove");
    let out = run_still(dir.path(), &["--zones", &zones_arg]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("zones.toml: cannot read zones file"),
        "{}",
        stderr(&out)
    );
}

/// A running `lookout run`, killed when the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_serial_line_carries_track_and_zone_lines_and_the_console_shows_them() {
    use lookout::results::serial::protocol::parse_compact;
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("tempdir");
    let zones = dir.path().join("zones.toml");
    std::fs::write(&zones, BOTTOM_SQUARES).expect("zones");
    let source = common::still_scene(dir.path());
    let (mut term, _slave, tty) = common::terminal::pair();
    let sink = format!("serial:{tty}@115200,format=compact");
    let _run = Running(
        common::lookout_command()
            .args(["run", "--source", &source, "--loop", "--sink", &sink])
            .args(["--zones", &zones.to_string_lossy(), "--threads", "1"])
            .args(["--workers", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("lookout starts"),
    );
    // Lines until the square has entered the zone (frame 4); every line checks.
    let lines = term.until(common::patience(Duration::from_secs(60)), |l| {
        l.starts_with("E,object_entered,3,1,0,bottom,1*")
    });
    let parsed: Vec<_> = lines
        .iter()
        .filter(|l| !l.starts_with('#'))
        .map(|l| parse_compact(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    // Frame 2: four D lines, each followed by its object's T line, the zone line, then F.
    let frame2: Vec<(char, Vec<i64>)> = parsed
        .iter()
        .filter(|l| l.fields.first() == Some(&2) && l.kind != 'E')
        .map(|l| (l.kind, l.fields.clone()))
        .collect();
    let kinds: String = frame2.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, "DTDTDTDTZF", "{frame2:?}");
    assert_eq!(frame2[1].1, [2, 0, 1]);
    assert_eq!(frame2[7].1, [2, 3, 4]);
    assert_eq!(frame2[8].1, [2, 0], "no square present yet");
    let objects: Vec<(String, Vec<i64>)> = parsed
        .iter()
        .filter(|l| l.kind == 'E')
        .map(|l| (l.name.clone().expect("name"), l.fields.clone()))
        .collect();
    assert_eq!(
        objects,
        vec![
            ("object_entered".to_string(), vec![1, 0, 0]),
            ("object_entered".to_string(), vec![2, 2, 0]),
            ("object_entered".to_string(), vec![3, 1, 0]),
            ("object_entered".to_string(), vec![4, 1, 0]),
            ("object_entered".to_string(), vec![3, 1, 0, 1]),
        ]
    );
    let status = term.command("status");
    assert!(
        status
            .iter()
            .any(|l| l == "# tracking 4 objects: circle 1, triangle 2, square 3, square 4"),
        "{status:?}"
    );
    assert!(
        status.iter().any(|l| l == "# zones: bottom 1 (square 1)"),
        "{status:?}"
    );
}

/// `(frame of the record before it, event, track_id, zone, zone_count, stationary)` of every
/// event line.
type Told = (u64, String, u64, Option<String>, Option<u64>, bool);

/// A rendered sequence with known trajectories (tools/scene_sequence.py: a square walking
/// through a zone behind a post that hides it for 4 frames, a circle moving, a triangle
/// standing still, a square coming in later), through the bundled detector: every object keeps
/// one id, the occlusion ends nothing, and the events are exactly these.
#[test]
fn a_rendered_sequence_is_tracked_through_an_occlusion_with_exact_events() {
    let out = lookout(&[
        "run",
        "--source",
        "tests/images/sequence",
        "--zones",
        "tests/images/sequence/zones.toml",
        "--threads",
        "1",
        "--workers",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo("tests/images/sequence/truth.json")).expect("truth"),
    )
    .expect("truth JSON");
    let frames = truth["frames"].as_array().expect("frames");
    // Each detection to the true object it overlaps (IoU > 0.5, same class): the track ids each
    // true object was given, in order.
    let mut ids_of: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    let mut hidden_frames = 0;
    let records: Vec<&Value> = lines.iter().filter(|l| l.get("seq").is_some()).collect();
    assert_eq!(records.len(), frames.len());
    for (record, frame) in records.iter().zip(frames) {
        for object in frame["objects"].as_array().expect("objects") {
            let truth_box = common::json_box(&object["box"]);
            let found = record["detections"]
                .as_array()
                .expect("detections")
                .iter()
                .find(|d| {
                    d["label_id"] == object["class"]
                        && common::iou(common::json_box(&d["box"]), truth_box) > 0.5
                });
            let id = object["id"].as_u64().expect("id");
            match found.and_then(|d| d["track_id"].as_u64()) {
                Some(track) => {
                    let ids = ids_of.entry(id).or_default();
                    if ids.last() != Some(&track) {
                        ids.push(track);
                    }
                }
                None if object["hidden"] == true => hidden_frames += 1,
                None => {}
            }
        }
    }
    assert!(
        hidden_frames >= 3,
        "the post hides object 1: {hidden_frames} frames"
    );
    // One id per object, the same before and after the post: no switch, no fragment.
    let ids: Vec<(u64, Vec<u64>)> = ids_of.into_iter().collect();
    assert_eq!(
        ids,
        vec![(1, vec![2]), (2, vec![1]), (3, vec![3]), (4, vec![4])],
        "true object -> track ids"
    );
    let mut last_seq = 0;
    let mut told: Vec<Told> = Vec::new();
    for l in &lines {
        if let Some(seq) = l["seq"].as_u64() {
            last_seq = seq;
            continue;
        }
        told.push((
            last_seq,
            l["event"].as_str().expect("event").into(),
            l["track_id"].as_u64().expect("track"),
            l.get("zone").and_then(Value::as_str).map(String::from),
            l.get("zone_count").and_then(Value::as_u64),
            l["stationary"].as_bool().expect("stationary"),
        ));
    }
    let ev =
        |seq: u64, kind: &str, id: u64, zone: Option<&str>, count: Option<u64>, still: bool| {
            (
                seq,
                kind.to_string(),
                id,
                zone.map(String::from),
                count,
                still,
            )
        };
    assert_eq!(
        told,
        vec![
            // Confirmed at their third frame (min_hits 3): circle, square, triangle.
            ev(2, "object_entered", 1, None, None, false),
            ev(2, "object_entered", 2, None, None, false),
            ev(2, "object_entered", 3, None, None, false),
            // The second square comes in at frame 12.
            ev(14, "object_entered", 4, None, None, false),
            // The triangle has stood still for 20 sightings.
            ev(20, "object_updated", 3, None, None, true),
            // Behind the post in frames 15-18, inside the zone from 19: entered after 3 frames.
            ev(21, "object_entered", 2, Some("right"), Some(1), false),
            // The end of the sequence ends every object, zones first.
            ev(35, "object_left", 1, None, None, false),
            ev(35, "object_left", 2, Some("right"), Some(0), false),
            ev(35, "object_left", 2, None, None, false),
            ev(35, "object_left", 3, None, None, true),
            ev(35, "object_left", 4, None, None, false),
        ]
    );
}
