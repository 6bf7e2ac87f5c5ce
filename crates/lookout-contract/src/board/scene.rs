//! The board profile's `[tracking]` table and its `[[zones]]` and `[[masks]]`: how the scene
//! layer (`lookout::scene`) follows objects from frame to frame and where it reports them.
//!
//! Zones and masks are polygons in **source-frame pixels** (the camera's frame after `[camera]`
//! `rotate` and `flip`), the same coordinates as the boxes in the records, so a polygon can be
//! drawn on a snapshot (the console's `snapshot`, or any saved frame) and copied here.
//! Whether a polygon fits the frame is known only once frames arrive: `lookout run` checks it
//! on the first frame and whenever the frame size changes (a camera reopened in another mode),
//! and stops with the zone and point named if one lies outside.
//!
//! A zones file (`lookout run --zones FILE`) holds the same three tables and replaces the
//! board's, so one board profile serves cameras that look at different scenes.

use crate::error::{parse_toml, read_text, ConfigError, FieldError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How objects are tracked and events debounced: the `[tracking]` table.
///
/// Counts are in frames, not seconds, so that a replay gives the same events at any speed; at
/// a camera's 15 fps, `patience = 30` is two seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Track objects and report object events even without zones (zones and masks turn
    /// tracking on).
    pub enabled: bool,
    /// Detections scored at or over this start tracks and are matched first; those under it
    /// (down to the manifest's score threshold) only continue tracks that already exist, the
    /// two-pass association of ByteTrack, so an object partly hidden keeps its track.
    pub high_score: f32,
    /// Least overlap (intersection over union) between a track's predicted box and a detection
    /// for the two to be matched.
    pub match_iou: f32,
    /// Frames in a row a new track must be matched before it is reported: a one-frame false
    /// detection never becomes an object.
    pub min_hits: u32,
    /// Frames an object survives without a matching detection (occluded, missed by the model):
    /// an occlusion of up to this many frames keeps the object and its id, and the object
    /// leaves at the next frame missed.
    pub patience: u32,
    /// The same for a stationary object (a parked car behind a passing truck); at least
    /// `patience`.
    pub stationary_patience: u32,
    /// An object whose box centre stays within this many pixels of where it settled, for
    /// `stationary_frames` sightings, is stationary (a parked car, a parcel); it moves again
    /// when seen farther away three times in a row.
    pub stationary_px: f32,
    /// See `stationary_px`.
    pub stationary_frames: u32,
    /// Frames in a row an object must be seen inside a zone before it has entered it.
    pub enter_frames: u32,
    /// Frames in a row an object must be seen outside a zone before it has left it (an object
    /// that is not seen at all leaves when its track ends, after `patience`).
    pub leave_frames: u32,
}

impl Default for TrackingConfig {
    /// ByteTrack's thresholds for the association, a second of patience at 30 fps (ten for a
    /// stationary object), and three frames to enter or leave a zone.
    fn default() -> Self {
        Self {
            enabled: false,
            high_score: 0.5,
            match_iou: 0.3,
            min_hits: 3,
            patience: 30,
            stationary_patience: 300,
            stationary_px: 10.0,
            stationary_frames: 75,
            enter_frames: 3,
            leave_frames: 3,
        }
    }
}

/// Which point of a box decides whether its object is in a zone or a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// The middle of the box's bottom edge: where a person or car stands on the ground, so a
    /// zone drawn on the ground means "standing there" whatever the object's height.
    #[default]
    BottomCenter,
    /// The box's centre: for objects seen from above, or not standing on anything.
    Center,
}

impl Anchor {
    /// The anchor point of the box `[x0, y0, x1, y1]`.
    pub fn of(self, bbox: [f32; 4]) -> [f32; 2] {
        let x = 0.5 * (bbox[0] + bbox[2]);
        match self {
            Anchor::BottomCenter => [x, bbox[3]],
            Anchor::Center => [x, 0.5 * (bbox[1] + bbox[3])],
        }
    }
}

/// A zone: a polygon of the frame and the labels reported in it (`[[zones]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Its name in events, records and serial lines: letters, digits, `_` and `-`.
    pub name: String,
    /// Corners `[x, y]` in source-frame pixels, in order around the polygon (either way); at
    /// least three, edges not crossing.
    pub points: Vec<[f32; 2]>,
    /// Labels reported in this zone (the manifest's spelling); empty: every label.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Which point of a box must be inside.
    #[serde(default)]
    pub anchor: Anchor,
}

/// A mask: a region of the frame whose detections are dropped before tracking (a road behind
/// the fence, a television, a tree that moves) (`[[masks]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// Corners `[x, y]` in source-frame pixels, as for a zone.
    pub points: Vec<[f32; 2]>,
    /// Labels dropped here; empty: every label.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Which point of a box must be inside for it to be dropped.
    #[serde(default)]
    pub anchor: Anchor,
}

/// Most frames an object may go unseen and stay (about an hour at 30 fps): hidden objects are
/// kept in memory and matched every frame.
pub const MAX_PATIENCE: u32 = 108_000;

/// Longest zone name: it goes on the serial line in every zone line.
pub const MAX_ZONE_NAME: usize = 32;

/// The scene tables together, as a board profile or a zones file holds them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneConfig {
    /// `[tracking]`.
    #[serde(default)]
    pub tracking: TrackingConfig,
    /// `[[zones]]`.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    /// `[[masks]]`.
    #[serde(default)]
    pub masks: Vec<MaskConfig>,
}

impl SceneConfig {
    /// Reads a zones file (`lookout run --zones FILE`).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let scene: SceneConfig = parse_toml(&read_text(path, "zones file")?, path)?;
        scene.check().map_err(|e| e.in_file(path, ""))?;
        Ok(scene)
    }

    /// Whether objects are tracked: asked for, or needed by a zone or a mask.
    pub fn tracks(&self) -> bool {
        self.tracking.enabled || !self.zones.is_empty() || !self.masks.is_empty()
    }

    /// Checks every table, naming the field that is wrong (`tracking.patience`,
    /// `zones[1].points[3]`).
    pub fn check(&self) -> Result<(), FieldError> {
        self.tracking.check().map_err(|e| e.within("tracking"))?;
        let mut names = std::collections::BTreeMap::new();
        for (i, zone) in self.zones.iter().enumerate() {
            let field = |f: &str| format!("zones[{i}].{f}");
            check_name(&zone.name).map_err(|m| FieldError::new(field("name"), m))?;
            if let Some(first) = names.insert(zone.name.as_str(), i) {
                return Err(FieldError::new(
                    field("name"),
                    format!("{:?} is also the name of zones[{first}]", zone.name),
                ));
            }
            check_polygon(&zone.points).map_err(|e| e.within(&format!("zones[{i}]")))?;
            check_labels(&zone.labels).map_err(|e| e.within(&format!("zones[{i}]")))?;
        }
        for (i, mask) in self.masks.iter().enumerate() {
            check_polygon(&mask.points).map_err(|e| e.within(&format!("masks[{i}]")))?;
            check_labels(&mask.labels).map_err(|e| e.within(&format!("masks[{i}]")))?;
        }
        Ok(())
    }
}

impl TrackingConfig {
    /// Checks the values, naming the field that is wrong.
    pub fn check(&self) -> Result<(), FieldError> {
        if !(self.high_score.is_finite() && (0.0..=1.0).contains(&self.high_score)) {
            return Err(FieldError::new(
                "high_score",
                format!("{} is not in [0, 1]", self.high_score),
            ));
        }
        if !(self.match_iou.is_finite() && self.match_iou > 0.0 && self.match_iou <= 1.0) {
            return Err(FieldError::new(
                "match_iou",
                format!("{} is not in (0, 1]", self.match_iou),
            ));
        }
        for (field, value) in [
            ("min_hits", self.min_hits),
            ("patience", self.patience),
            ("stationary_frames", self.stationary_frames),
            ("enter_frames", self.enter_frames),
            ("leave_frames", self.leave_frames),
        ] {
            if value == 0 {
                return Err(FieldError::new(field, "must be at least 1"));
            }
        }
        if self.patience > MAX_PATIENCE {
            return Err(FieldError::new(
                "patience",
                format!("{} is over {MAX_PATIENCE} frames", self.patience),
            ));
        }
        if !(self.patience..=MAX_PATIENCE).contains(&self.stationary_patience) {
            return Err(FieldError::new(
                "stationary_patience",
                format!(
                    "{} is not in patience..={MAX_PATIENCE} ({}..={MAX_PATIENCE})",
                    self.stationary_patience, self.patience
                ),
            ));
        }
        if !(self.stationary_px.is_finite() && self.stationary_px >= 0.0) {
            return Err(FieldError::new(
                "stationary_px",
                format!("{} is not a number of pixels", self.stationary_px),
            ));
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_ZONE_NAME {
        return Err(format!(
            "{name:?} is longer than {MAX_ZONE_NAME} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{name:?} has {c:?}: a name is letters, digits, '_' and '-' (it goes on the serial \
             line and into topic names)"
        ));
    }
    Ok(())
}

fn check_labels(labels: &[String]) -> Result<(), FieldError> {
    for (i, label) in labels.iter().enumerate() {
        if label.trim().is_empty() {
            return Err(FieldError::new(format!("labels[{i}]"), "is empty"));
        }
        if labels[..i].contains(label) {
            return Err(FieldError::new(
                format!("labels[{i}]"),
                format!("{label:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// A polygon a zone or mask can use: three or more finite, non-negative corners, no two the
/// same in a row, edges that do not cross or touch except at shared corners, and an area.
fn check_polygon(points: &[[f32; 2]]) -> Result<(), FieldError> {
    if points.len() < 3 {
        return Err(FieldError::new(
            "points",
            format!("has {} corners; a polygon needs at least 3", points.len()),
        ));
    }
    for (i, p) in points.iter().enumerate() {
        if !(p[0].is_finite() && p[1].is_finite() && p[0] >= 0.0 && p[1] >= 0.0) {
            return Err(FieldError::new(
                format!("points[{i}]"),
                format!(
                    "[{}, {}] is not a point of the frame (pixels from its top-left corner)",
                    p[0], p[1]
                ),
            ));
        }
    }
    let n = points.len();
    for i in 0..n {
        if points[i] == points[(i + 1) % n] {
            return Err(FieldError::new(
                format!("points[{}]", (i + 1) % n),
                format!("repeats points[{i}]"),
            ));
        }
    }
    // Every pair of edges that share no corner must not meet: O(n²), and zones have a handful
    // of corners.
    for i in 0..n {
        for j in i + 1..n {
            let adjacent = j == i + 1 || (i == 0 && j == n - 1);
            if adjacent {
                continue;
            }
            let (a, b) = (points[i], points[(i + 1) % n]);
            let (c, d) = (points[j], points[(j + 1) % n]);
            if segments_meet(a, b, c, d) {
                return Err(FieldError::new(
                    "points",
                    format!(
                        "edge points[{i}]-points[{}] crosses edge points[{j}]-points[{}]: the \
                         polygon intersects itself; list the corners in order around it",
                        (i + 1) % n,
                        (j + 1) % n
                    ),
                ));
            }
        }
    }
    if polygon_area(points).abs() < 1.0 {
        return Err(FieldError::new(
            "points",
            "encloses no area (its corners lie on one line)",
        ));
    }
    Ok(())
}

/// Twice-signed area halved: positive for corners listed counter-clockwise in a y-up frame.
fn polygon_area(points: &[[f32; 2]]) -> f64 {
    let n = points.len();
    let twice: f64 = (0..n)
        .map(|i| {
            let (p, q) = (points[i], points[(i + 1) % n]);
            f64::from(p[0]) * f64::from(q[1]) - f64::from(q[0]) * f64::from(p[1])
        })
        .sum();
    twice / 2.0
}

/// Whether the closed segments a-b and c-d have a point in common (crossing, touching or
/// overlapping), in f64 so the test is exact for pixel coordinates.
fn segments_meet(a: [f32; 2], b: [f32; 2], c: [f32; 2], d: [f32; 2]) -> bool {
    let p = |v: [f32; 2]| [f64::from(v[0]), f64::from(v[1])];
    let (a, b, c, d) = (p(a), p(b), p(c), p(d));
    let orient = |p: [f64; 2], q: [f64; 2], r: [f64; 2]| {
        let v = (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]);
        v.partial_cmp(&0.0).map_or(0, |o| o as i8)
    };
    let on_segment = |p: [f64; 2], q: [f64; 2], r: [f64; 2]| {
        q[0] >= p[0].min(r[0])
            && q[0] <= p[0].max(r[0])
            && q[1] >= p[1].min(r[1])
            && q[1] <= p[1].max(r[1])
    };
    let (o1, o2, o3, o4) = (
        orient(a, b, c),
        orient(a, b, d),
        orient(c, d, a),
        orient(c, d, b),
    );
    if o1 != o2 && o3 != o4 {
        return true;
    }
    (o1 == 0 && on_segment(a, c, b))
        || (o2 == 0 && on_segment(a, d, b))
        || (o3 == 0 && on_segment(c, a, d))
        || (o4 == 0 && on_segment(c, b, d))
}

/// Whether `point` lies inside the polygon (even-odd rule; a point on an edge counts as
/// inside half the time, which for pixel anchors is immaterial).
pub fn polygon_contains(points: &[[f32; 2]], point: [f32; 2]) -> bool {
    let (x, y) = (point[0], point[1]);
    let mut inside = false;
    let n = points.len();
    let mut j = n.wrapping_sub(1);
    for i in 0..n {
        let (pi, pj) = (points[i], points[j]);
        if (pi[1] > y) != (pj[1] > y) {
            let at = (pj[0] - pi[0]) * (y - pi[1]) / (pj[1] - pi[1]) + pi[0];
            if x < at {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(text: &str) -> Result<SceneConfig, String> {
        let scene: SceneConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        scene.check().map_err(|e| e.to_string())?;
        Ok(scene)
    }

    const SQUARE: &str = "points = [[10, 10], [110, 10], [110, 110], [10, 110]]";

    #[test]
    fn a_zone_and_a_mask_parse_with_defaults() {
        let s = scene(&format!(
            "[[zones]]\nname = \"drive-way_1\"\n{SQUARE}\nlabels = [\"person\"]\n\
             [[masks]]\n{SQUARE}\nanchor = \"center\"\n"
        ))
        .expect("valid");
        assert!(s.tracks(), "a zone turns tracking on");
        assert_eq!(s.zones[0].anchor, Anchor::BottomCenter);
        assert_eq!(s.masks[0].anchor, Anchor::Center);
        assert_eq!(s.tracking, TrackingConfig::default());
        assert!(!scene("").expect("empty").tracks());
    }

    #[test]
    fn bad_polygons_name_the_zone_and_corner() {
        let cases = [
            // A bow tie: edge 0-1 crosses edge 2-3.
            (
                "points = [[0, 0], [100, 100], [100, 0], [0, 100]]",
                "field `zones[0].points`: edge points[0]-points[1] crosses edge points[2]-points[3]",
            ),
            ("points = [[0, 0], [100, 0]]", "has 2 corners"),
            (
                "points = [[0, 0], [100, 0], [100, 0], [0, 50]]",
                "field `zones[0].points[2]`: repeats points[1]",
            ),
            (
                "points = [[0, 0], [50, 50], [100, 100]]",
                "encloses no area",
            ),
            (
                "points = [[0, 0], [-5, 0], [0, 50]]",
                "field `zones[0].points[1]`: [-5, 0] is not a point of the frame",
            ),
            // A corner lying on a non-adjacent edge: touching counts as crossing.
            (
                "points = [[0, 0], [100, 0], [100, 100], [50, 0], [0, 100]]",
                "crosses edge",
            ),
        ];
        for (points, expected) in cases {
            let err = scene(&format!("[[zones]]\nname = \"z\"\n{points}\n")).expect_err(points);
            assert!(err.contains(expected), "{points}: {err}");
        }
    }

    #[test]
    fn bad_names_labels_and_tracking_values_are_named() {
        let err = |text: String| scene(&text).expect_err(&text);
        let e = err(format!("[[zones]]\nname = \"front door\"\n{SQUARE}\n"));
        assert!(e.contains("zones[0].name") && e.contains("' '"), "{e}");
        let e = err(format!(
            "[[zones]]\nname = \"a\"\n{SQUARE}\n[[zones]]\nname = \"a\"\n{SQUARE}\n"
        ));
        assert!(e.contains("zones[1].name") && e.contains("zones[0]"), "{e}");
        let e = err(format!(
            "[[zones]]\nname = \"a\"\n{SQUARE}\nlabels = [\"car\", \"car\"]\n"
        ));
        assert!(e.contains("zones[0].labels[1]"), "{e}");
        let e = err("[tracking]\npatience = 0\n".into());
        assert!(e.contains("tracking.patience"), "{e}");
        let e = err("[tracking]\nmatch_iou = 0\n".into());
        assert!(e.contains("tracking.match_iou"), "{e}");
        let e = scene("[tracking]\npatiance = 3\n").expect_err("typo");
        assert!(e.contains("patiance"), "{e}");
    }

    #[test]
    fn containment_follows_the_polygon_not_its_bounds() {
        // An L shape: the notch at the top right is outside.
        let l = [
            [0.0, 0.0],
            [50.0, 0.0],
            [50.0, 50.0],
            [100.0, 50.0],
            [100.0, 100.0],
            [0.0, 100.0],
        ];
        assert!(polygon_contains(&l, [25.0, 25.0]));
        assert!(polygon_contains(&l, [75.0, 75.0]));
        assert!(!polygon_contains(&l, [75.0, 25.0]));
        assert!(!polygon_contains(&l, [150.0, 75.0]));
        assert_eq!(
            Anchor::BottomCenter.of([10.0, 20.0, 30.0, 60.0]),
            [20.0, 60.0]
        );
        assert_eq!(Anchor::Center.of([10.0, 20.0, 30.0, 60.0]), [20.0, 40.0]);
    }
}
