//! The line formats lookout speaks on a serial line, in one place.
//!
//! Three kinds of line share the wire, and a reader tells them apart by the first byte:
//!
//! - **JSON Lines** (`format = "json"`, the default): one [`FrameRecord`] object per frame,
//!   exactly as on stdout. Starts with `{`.
//! - **Compact lines** (`format = "compact"`), for microcontrollers that should not parse JSON:
//!   ```text
//!   D,<seq>,<label_id>,<score_permille>,<x0>,<y0>,<x1>,<y1>*<crc>   one per detection
//!   K,<seq>,<index>,<x>,<y>,<score_permille>,...*<crc>              a pose model's keypoints
//!   C,<seq>,<label_id>,<score_permille>*<crc>                       one per top-k class
//!   T,<seq>,<index>,<track_id>*<crc>                                the tracked object of a detection
//!   Z,<seq>,<zone>,<count>*<crc>                                    objects present in a zone
//!   F,<seq>,<count>*<crc>                                           end of frame <seq>
//!   E,<event>*<crc>                                                 an event, e.g. E,camera_lost
//!   E,<event>,<stat>,<psi_permille>*<crc>                           drift, e.g. E,drift,brightness,812
//!   E,<event>,<track_id>,<label_id>,<stationary>*<crc>              an object, e.g. E,object_entered,7,0,0
//!   E,<event>,<track_id>,<label_id>,<stationary>,<zone>,<count>*<crc> an object in a zone
//!   ```
//!   Fields are decimal integers: `seq` the frame number, `label_id` the index in the model's
//!   labels (the console's `info` lists them), the score in thousandths (0..=1000), the box in
//!   whole pixels of the source frame. Every frame ends with exactly one `F` line carrying the
//!   number of `D` or `C` lines before it, so a receiver knows when a frame is complete and that
//!   the device is alive even when it sees nothing. A pose model's detection is followed by one
//!   `K` line: `index` is the detection's place among the frame's `D` lines (from 0), then
//!   x, y (whole source pixels) and visibility (thousandths) of each keypoint in the model's
//!   order. With tracking on, a detection of a tracked object is followed (after its `K` line)
//!   by a `T` line with the object's id, and the frame's `Z` lines (one per zone, its name and
//!   the objects present) come before its `F`. `K`, `T` and `Z` lines are not counted in `F`;
//!   a receiver that does not know them skips them by their first letter. Object events give
//!   the object's id, label index and whether it is stationary (1) or not (0), and for a zone
//!   its name and the count after the event; `object_updated` says by that flag whether the
//!   object settled or moved again. An `E` line's fields after the name tell its kind by their
//!   number: 2 a drift statistic and its PSI, 3 an object, 5 an object in a zone. `<crc>` is CRC-8/SMBUS (polynomial 0x07,
//!   initial value 0, no reflection) over every byte before the `*`, as two upper-case hex
//!   digits; the line ends with `\r\n`.
//! - **Console replies**: every line starts with `# ` (see [`crate::results::console`]). Results never
//!   start with `#`, so a program reading results skips those lines, and a person reading the
//!   console sees them apart.

pub use crate::board::LineFormat;
use crate::results::record::FrameRecord;
use std::fmt::Write as _;

const CRC8: crc::Crc<u8> = crc::Crc::<u8>::new(&crc::CRC_8_SMBUS);

/// CRC-8/SMBUS of `bytes`.
pub fn crc8(bytes: &[u8]) -> u8 {
    CRC8.checksum(bytes)
}

/// Appends `body*CC\r\n` to `out`, CC being the CRC-8 of `body`.
fn push_compact_line(out: &mut String, body: &str) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{body}*{:02X}\r\n", crc8(body.as_bytes()));
}

fn permille(score: f32) -> u32 {
    (score.clamp(0.0, 1.0) * 1000.0).round() as u32
}

fn pixel(v: f32) -> i64 {
    if v.is_finite() {
        v.round() as i64
    } else {
        0
    }
}

/// The compact lines of one frame record, each ending in `\r\n`.
pub fn compact_lines(record: &FrameRecord) -> String {
    let mut out = String::new();
    let mut count = 0usize;
    for (index, d) in record.detections.iter().flatten().enumerate() {
        let [x0, y0, x1, y1] = d.bbox.map(pixel);
        let body = format!(
            "D,{},{},{},{x0},{y0},{x1},{y1}",
            record.seq,
            d.label_id,
            permille(d.score)
        );
        push_compact_line(&mut out, &body);
        count += 1;
        if let Some(points) = &d.keypoints {
            let mut body = format!("K,{},{index}", record.seq);
            for [x, y, score] in points {
                let _ = write!(body, ",{},{},{}", pixel(*x), pixel(*y), permille(*score));
            }
            push_compact_line(&mut out, &body);
        }
        if let Some(id) = d.track_id {
            push_compact_line(&mut out, &format!("T,{},{index},{id}", record.seq));
        }
    }
    for c in record.classes.iter().flatten() {
        let body = format!("C,{},{},{}", record.seq, c.label_id, permille(c.score));
        push_compact_line(&mut out, &body);
        count += 1;
    }
    for zone in record.zones.iter().flatten() {
        let body = format!("Z,{},{},{}", record.seq, zone.zone, zone.count);
        push_compact_line(&mut out, &body);
    }
    push_compact_line(&mut out, &format!("F,{},{count}", record.seq));
    out
}

/// One JSON Lines record, ending in `\n`.
pub fn json_line(record: &FrameRecord) -> Result<String, serde_json::Error> {
    let mut line = serde_json::to_string(record)?;
    line.push('\n');
    Ok(line)
}

/// The result lines of one record in `format`.
pub fn result_lines(record: &FrameRecord, format: LineFormat) -> Result<String, serde_json::Error> {
    match format {
        LineFormat::Json => json_line(record),
        LineFormat::Compact => Ok(compact_lines(record)),
    }
}

/// The lines of one event: its JSON object, or `E,<event>*CC`.
pub fn event_lines(
    event: &crate::results::record::EventRecord,
    format: LineFormat,
) -> Result<String, serde_json::Error> {
    match format {
        LineFormat::Json => {
            let mut line = serde_json::to_string(event)?;
            line.push('\n');
            Ok(line)
        }
        LineFormat::Compact => {
            let mut out = String::new();
            let body = match (&event.drift, &event.object) {
                (Some(d), _) => format!(
                    "E,{},{},{}",
                    event.event,
                    d.stat,
                    (d.psi * 1000.0).round() as i64
                ),
                (None, Some(o)) => {
                    let object = format!(
                        "E,{},{},{},{}",
                        event.event,
                        o.track_id,
                        o.label_id,
                        u8::from(o.stationary)
                    );
                    match (&o.zone, o.zone_count) {
                        (Some(zone), Some(count)) => format!("{object},{zone},{count}"),
                        _ => object,
                    }
                }
                (None, None) => format!("E,{}", event.event),
            };
            push_compact_line(&mut out, &body);
            Ok(out)
        }
    }
}

/// A checked compact line, as a receiver decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactLine {
    /// `D`, `K`, `T`, `C`, `Z`, `F` or `E`.
    pub kind: char,
    /// The integer fields after the kind (for `E`: those after the event's name, without a
    /// drift event's statistic or an object event's zone; for `Z`: the frame number and the
    /// count, without the zone).
    pub fields: Vec<i64>,
    /// `E`: the event's name; `Z`: the zone's.
    pub name: Option<String>,
    /// `E`: a drift event's statistic, or an object event's zone.
    pub detail: Option<String>,
}

/// Parses and checks one compact line (with or without its line ending): what a receiver on a
/// microcontroller does. The error names what is wrong.
pub fn parse_compact(line: &str) -> Result<CompactLine, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (body, crc_text) = line
        .rsplit_once('*')
        .ok_or_else(|| format!("{line:?}: no `*<crc>`"))?;
    let crc = u8::from_str_radix(crc_text, 16)
        .map_err(|_| format!("{line:?}: CRC {crc_text:?} is not two hex digits"))?;
    if crc_text.len() != 2 || crc != crc8(body.as_bytes()) {
        return Err(format!(
            "{line:?}: CRC {crc_text} does not match {:02X}",
            crc8(body.as_bytes())
        ));
    }
    let mut parts = body.split(',');
    let kind = parts.next().unwrap_or_default();
    let integer = |p: &str| {
        p.parse::<i64>()
            .map_err(|_| format!("{line:?}: field {p:?} is not an integer"))
    };
    let parts: Vec<&str> = parts.collect();
    match kind {
        "E" => {
            // A name, then: nothing; a drift statistic and its PSI; or an object's id and label
            // index, and for a zone its name and count.
            let name = parts
                .first()
                .filter(|n| !n.is_empty())
                .map(|n| n.to_string());
            if name.is_none() {
                return Err(format!("{line:?}: E without an event name"));
            }
            let (detail, fields) = match parts.len() {
                1 => (None, Vec::new()),
                // A drift statistic and its PSI.
                3 => (Some(parts[1].to_string()), vec![integer(parts[2])?]),
                // An object: id, label index, stationary.
                4 => (
                    None,
                    parts[1..]
                        .iter()
                        .map(|p| integer(p))
                        .collect::<Result<_, _>>()?,
                ),
                // An object in a zone: id, label index, stationary, zone, count.
                6 => (
                    Some(parts[4].to_string()),
                    vec![
                        integer(parts[1])?,
                        integer(parts[2])?,
                        integer(parts[3])?,
                        integer(parts[5])?,
                    ],
                ),
                n => {
                    return Err(format!(
                        "{line:?}: E has {} fields after its name (0, 2, 3 or 5)",
                        n - 1
                    ))
                }
            };
            return Ok(CompactLine {
                kind: 'E',
                fields,
                name,
                detail,
            });
        }
        "Z" => {
            if parts.len() != 3 {
                return Err(format!(
                    "{line:?}: Z needs seq, zone and count, has {}",
                    parts.len()
                ));
            }
            return Ok(CompactLine {
                kind: 'Z',
                fields: vec![integer(parts[0])?, integer(parts[2])?],
                name: Some(parts[1].to_string()),
                detail: None,
            });
        }
        _ => {}
    }
    let want = match kind {
        "D" => 7,
        "C" => 3,
        "F" => 2,
        "T" => 3,
        // seq, index, then three values per keypoint: checked below.
        "K" => 0,
        _ => return Err(format!("{line:?}: unknown line kind {kind:?}")),
    };
    let fields = parts
        .into_iter()
        .map(integer)
        .collect::<Result<Vec<_>, _>>()?;
    if kind == "K" && (fields.len() < 5 || (fields.len() - 2) % 3 != 0) {
        return Err(format!(
            "{line:?}: K needs seq, index and 3 values per keypoint (2 + 3·K fields), has {}",
            fields.len()
        ));
    }
    if kind != "K" && fields.len() != want {
        return Err(format!(
            "{line:?}: {kind} needs {want} fields, has {}",
            fields.len()
        ));
    }
    Ok(CompactLine {
        kind: kind.chars().next().unwrap_or('?'),
        fields,
        name: None,
        detail: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::record::{ClassRecord, DetectionRecord, StageLatency};

    fn record(
        detections: Option<Vec<DetectionRecord>>,
        classes: Option<Vec<ClassRecord>>,
    ) -> FrameRecord {
        FrameRecord {
            seq: 42,
            timestamp: "2026-11-29T03:00:00.000Z".into(),
            model: "m@1".into(),
            frame: "f.png".into(),
            frame_size: [640, 480],
            latency_ms: StageLatency::default(),
            classes,
            detections,
            outputs: None,
            values: None,
            zones: None,
            health: None,
        }
    }

    #[test]
    fn crc8_is_smbus() {
        // The standard check value of CRC-8/SMBUS.
        assert_eq!(crc8(b"123456789"), 0xF4);
        assert_eq!(crc8(b""), 0);
    }

    #[test]
    fn the_readme_example_is_what_lookout_writes() {
        let mut r = record(
            Some(vec![DetectionRecord {
                label_id: 2,
                label: "triangle".into(),
                score: 0.988,
                bbox: [10.0, 21.0, 101.0, 200.0],
                keypoints: None,
                track_id: None,
            }]),
            None,
        );
        r.seq = 17;
        assert!(compact_lines(&r).starts_with("D,17,2,988,10,21,101,200*1D\r\n"));
    }

    #[test]
    fn detections_become_d_lines_and_one_f_line() {
        let r = record(
            Some(vec![
                DetectionRecord {
                    label_id: 2,
                    label: "triangle".into(),
                    score: 0.9876,
                    bbox: [10.4, 20.5, 100.6, 200.0],
                    keypoints: None,
                    track_id: None,
                },
                DetectionRecord {
                    label_id: 0,
                    label: "circle".into(),
                    score: 0.5,
                    bbox: [-1.2, 0.0, 3.0, f32::NAN],
                    keypoints: None,
                    track_id: None,
                },
            ]),
            None,
        );
        let text = compact_lines(&r);
        let lines: Vec<&str> = text.split_inclusive("\r\n").collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            format!(
                "D,42,2,988,10,21,101,200*{:02X}\r\n",
                crc8(b"D,42,2,988,10,21,101,200")
            )
        );
        assert!(lines[1].starts_with("D,42,0,500,-1,0,3,0*"));
        assert!(lines[2].starts_with("F,42,2*"));
        for line in &lines {
            parse_compact(line).expect("every line checks");
        }
        let d = parse_compact(lines[0]).expect("parse");
        assert_eq!(d.kind, 'D');
        assert_eq!(d.fields, vec![42, 2, 988, 10, 21, 101, 200]);
    }

    #[test]
    fn a_pose_detection_is_followed_by_its_keypoints_line() {
        let r = record(
            Some(vec![
                DetectionRecord {
                    label_id: 0,
                    label: "person".into(),
                    score: 0.9,
                    bbox: [10.0, 20.0, 110.0, 220.0],
                    keypoints: Some(vec![[50.4, 30.6, 0.95], [60.0, 31.0, 0.0]]),
                    track_id: None,
                },
                DetectionRecord {
                    label_id: 0,
                    label: "person".into(),
                    score: 0.5,
                    bbox: [200.0, 20.0, 300.0, 220.0],
                    keypoints: Some(vec![[250.0, 40.0, 1.0], [f32::NAN, 41.0, 0.5]]),
                    track_id: None,
                },
            ]),
            None,
        );
        let text = compact_lines(&r);
        let lines: Vec<&str> = text.split_inclusive("\r\n").collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("D,42,0,900,10,20,110,220*"));
        assert_eq!(
            lines[1],
            format!(
                "K,42,0,50,31,950,60,31,0*{:02X}\r\n",
                crc8(b"K,42,0,50,31,950,60,31,0")
            )
        );
        assert!(lines[2].starts_with("D,42,0,500,200,20,300,220*"));
        assert!(lines[3].starts_with("K,42,1,250,40,1000,0,41,500*"));
        // K lines are not counted: two detections.
        assert!(lines[4].starts_with("F,42,2*"));
        for line in &lines {
            parse_compact(line).expect("every line checks");
        }
    }

    #[test]
    fn classes_become_c_lines_and_an_empty_frame_only_f() {
        let r = record(
            None,
            Some(vec![ClassRecord {
                label_id: 1,
                label: "square".into(),
                score: 1.2,
            }]),
        );
        let text = compact_lines(&r);
        assert!(text.starts_with("C,42,1,1000*"), "{text}");
        assert!(text.contains("F,42,1*"));
        let empty = compact_lines(&record(Some(vec![]), None));
        assert_eq!(empty, format!("F,42,0*{:02X}\r\n", crc8(b"F,42,0")));
    }

    #[test]
    fn a_receiver_rejects_damaged_lines() {
        let good = compact_lines(&record(Some(vec![]), None));
        assert!(parse_compact(&good).is_ok());
        let flipped = good.replace("F,42", "F,43");
        assert!(parse_compact(&flipped)
            .expect_err("bad crc")
            .contains("does not match"));
        assert!(parse_compact("F,42,0")
            .expect_err("no crc")
            .contains("no `*<crc>`"));
        assert!(parse_compact("X,1*00").is_err());
        assert!(parse_compact(&format!("F,1*{:02X}", crc8(b"F,1")))
            .expect_err("too few fields")
            .contains("needs 2 fields"));
    }

    #[test]
    fn json_lines_match_stdout() {
        let r = record(Some(vec![]), None);
        let line = result_lines(&r, LineFormat::Json).expect("json");
        assert!(line.ends_with('\n') && line.starts_with('{'));
        let v: serde_json::Value = serde_json::from_str(&line).expect("parse");
        assert_eq!(v["seq"], 42);
    }

    #[test]
    fn drift_events_carry_the_statistic_and_psi_in_compact_lines() {
        let event = crate::results::record::EventRecord {
            event: "drift".into(),
            timestamp: "2026-12-03T09:00:00.000Z".into(),
            source: "m@1".into(),
            message: "brightness".into(),
            drift: Some(crate::results::record::DriftDetail {
                stat: "brightness".into(),
                psi: 0.8124,
                threshold: 0.25,
                windows: 3,
                window: [1800, 2699],
            }),
            object: None,
        };
        let compact = event_lines(&event, LineFormat::Compact).expect("compact");
        assert_eq!(
            compact,
            format!(
                "E,drift,brightness,812*{:02X}\r\n",
                crc8(b"E,drift,brightness,812")
            )
        );
        let parsed = parse_compact(&compact).expect("checks");
        assert_eq!(parsed.kind, 'E');
        assert_eq!(parsed.name.as_deref(), Some("drift"));
        assert_eq!(parsed.detail.as_deref(), Some("brightness"));
        assert_eq!(parsed.fields, vec![812]);
        let json: serde_json::Value =
            serde_json::from_str(&event_lines(&event, LineFormat::Json).expect("json"))
                .expect("parses");
        assert_eq!(json["stat"], "brightness");
        assert_eq!(json["window"], serde_json::json!([1800, 2699]));
        assert_eq!(json["event"], "drift");
    }

    #[test]
    fn tracked_detections_zones_and_object_events_have_lines_of_their_own() {
        use crate::scene::{ObjectEvent, ObjectEventKind, ZoneCount};
        let mut tracked = record(
            Some(vec![
                DetectionRecord {
                    label_id: 0,
                    label: "person".into(),
                    score: 0.9,
                    bbox: [10.0, 20.0, 50.0, 120.0],
                    keypoints: None,
                    track_id: Some(7),
                },
                DetectionRecord {
                    label_id: 1,
                    label: "car".into(),
                    score: 0.6,
                    bbox: [100.0, 20.0, 250.0, 120.0],
                    keypoints: None,
                    track_id: None,
                },
            ]),
            None,
        );
        tracked.zones = Some(vec![ZoneCount {
            zone: "drive-way".into(),
            count: 1,
            labels: [("person".to_string(), 1)].into(),
        }]);
        let lines = compact_lines(&tracked);
        let kinds: Vec<(char, Vec<i64>, Option<String>)> = lines
            .lines()
            .map(|l| parse_compact(l).unwrap_or_else(|e| panic!("{e}")))
            .map(|l| (l.kind, l.fields, l.name))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ('D', vec![42, 0, 900, 10, 20, 50, 120], None),
                ('T', vec![42, 0, 7], None),
                ('D', vec![42, 1, 600, 100, 20, 250, 120], None),
                ('Z', vec![42, 1], Some("drive-way".into())),
                ('F', vec![42, 2], None),
            ]
        );
        let object = |zone: Option<&str>| crate::results::record::EventRecord {
            event: "object_entered".into(),
            timestamp: "2026-12-06T09:00:00.000Z".into(),
            source: "camera-9".into(),
            message: "person 7 entered".into(),
            drift: None,
            object: Some(ObjectEvent {
                kind: ObjectEventKind::ObjectEntered,
                track_id: 7,
                label_id: 0,
                label: "person".into(),
                zone: zone.map(String::from),
                zone_count: zone.map(|_| 2),
                bbox: [10.0, 20.0, 50.0, 120.0],
                score: 0.9,
                best_score: 0.95,
                first_seen: 3,
                last_seen: 9,
                stationary: false,
            }),
        };
        let frame_line = event_lines(&object(None), LineFormat::Compact).expect("line");
        assert!(
            frame_line.starts_with("E,object_entered,7,0,0*"),
            "{frame_line}"
        );
        let zone_line = event_lines(&object(Some("porch")), LineFormat::Compact).expect("line");
        assert!(
            zone_line.starts_with("E,object_entered,7,0,0,porch,2*"),
            "{zone_line}"
        );
        let parsed = parse_compact(&zone_line).expect("checks");
        assert_eq!(parsed.name.as_deref(), Some("object_entered"));
        assert_eq!(parsed.detail.as_deref(), Some("porch"));
        assert_eq!(parsed.fields, vec![7, 0, 0, 2]);
        let parsed = parse_compact(&frame_line).expect("checks");
        assert_eq!((parsed.fields, parsed.detail), (vec![7, 0, 0], None));
        // A zone named with digits is still a zone, told apart by the number of fields.
        let numeric = event_lines(&object(Some("2")), LineFormat::Compact).expect("line");
        let parsed = parse_compact(&numeric).expect("checks");
        assert_eq!(
            (parsed.detail.as_deref(), parsed.fields),
            (Some("2"), vec![7, 0, 0, 2])
        );
        // Lines with another number of fields, or no name, are refused.
        let with_crc = |body: &str| format!("{body}*{:02X}", crc8(body.as_bytes()));
        for bad in [
            "E,",
            "E,object_left,7",
            "E,object_left,7,0,1,porch",
            "E,x,1,2,3,4,5,6",
        ] {
            assert!(parse_compact(&with_crc(bad)).is_err(), "{bad}");
        }
        let json: serde_json::Value = serde_json::from_str(
            &event_lines(&object(Some("porch")), LineFormat::Json).expect("json"),
        )
        .expect("parses");
        assert_eq!(json["event"], "object_entered");
        assert_eq!(json["track_id"], 7);
        assert_eq!(json["zone_count"], 2);
    }
}
