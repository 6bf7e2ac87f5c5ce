//! Zones and masks made ready for a model: their labels resolved to the model's label indices,
//! their corners checked against the frame, and the rule that puts a box in one.
//!
//! A box is in a zone (or a mask) when its anchor point is inside the polygon: by default the
//! middle of its bottom edge, where a person or a car touches the ground
//! ([`Anchor`](lookout_contract::board::Anchor)), so a zone drawn on a driveway holds the people
//! standing on it and not those walking past in front of it whose heads overlap it.

use super::SceneError;
use lookout_contract::board::scene::polygon_contains;
use lookout_contract::board::{Anchor, MaskConfig, ZoneConfig};

/// A zone ready for a model.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Its name.
    pub name: String,
    points: Vec<[f32; 2]>,
    /// Label indices it reports; `None`: every label.
    classes: Option<Vec<usize>>,
    anchor: Anchor,
}

/// A mask ready for a model.
#[derive(Debug, Clone)]
pub struct Mask {
    points: Vec<[f32; 2]>,
    classes: Option<Vec<usize>>,
    anchor: Anchor,
}

/// The label indices of `names`, or which one the model does not have.
fn resolve(
    names: &[String],
    labels: &[String],
    table: impl Fn() -> String,
) -> Result<Option<Vec<usize>>, SceneError> {
    if names.is_empty() {
        return Ok(None);
    }
    names
        .iter()
        .map(|name| {
            labels
                .iter()
                .position(|l| l == name)
                .ok_or_else(|| SceneError::UnknownLabel {
                    table: table(),
                    label: name.clone(),
                    known: labels.join(", "),
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The first corner outside a `width` × `height` frame.
fn outside(points: &[[f32; 2]], size: [u32; 2]) -> Option<(usize, [f32; 2])> {
    points
        .iter()
        .copied()
        .enumerate()
        .find(|(_, p)| p[0] > size[0] as f32 || p[1] > size[1] as f32)
}

/// The anchor of `bbox`, moved half a pixel inside a frame of `size`: boxes are clamped to the
/// frame, so the anchor of an object cut off by the bottom edge lies on that edge, which the
/// even-odd test counts as outside a zone drawn down to it.
fn anchor_in_frame(anchor: Anchor, bbox: [f32; 4], size: [u32; 2]) -> [f32; 2] {
    let [x, y] = anchor.of(bbox);
    let most = |side: u32| (side as f32 - 0.5).max(0.0);
    [x.clamp(0.0, most(size[0])), y.clamp(0.0, most(size[1]))]
}

impl Zone {
    /// `config` (the board's `zones[index]`) for a model with `labels`.
    pub fn new(index: usize, config: &ZoneConfig, labels: &[String]) -> Result<Self, SceneError> {
        let classes = resolve(&config.labels, labels, || {
            format!("zones[{index}] ({})", config.name)
        })?;
        Ok(Self {
            name: config.name.clone(),
            points: config.points.clone(),
            classes,
            anchor: config.anchor,
        })
    }

    /// Whether objects of label `class_id` are reported here.
    pub fn cares_about(&self, class_id: usize) -> bool {
        self.classes
            .as_ref()
            .is_none_or(|classes| classes.contains(&class_id))
    }

    /// Whether the box `[x0, y0, x1, y1]` of a frame of `size` is in the zone.
    pub fn holds(&self, bbox: [f32; 4], size: [u32; 2]) -> bool {
        polygon_contains(&self.points, anchor_in_frame(self.anchor, bbox, size))
    }

    /// The first corner outside a frame of `size` (`[width, height]`), with its index.
    pub fn outside(&self, size: [u32; 2]) -> Option<(usize, [f32; 2])> {
        outside(&self.points, size)
    }
}

impl Mask {
    /// `config` (the board's `masks[index]`) for a model with `labels`.
    pub fn new(index: usize, config: &MaskConfig, labels: &[String]) -> Result<Self, SceneError> {
        let classes = resolve(&config.labels, labels, || format!("masks[{index}]"))?;
        Ok(Self {
            points: config.points.clone(),
            classes,
            anchor: config.anchor,
        })
    }

    /// Whether a detection of label `class_id` with this box, in a frame of `size`, is dropped.
    pub fn hides(&self, class_id: usize, bbox: [f32; 4], size: [u32; 2]) -> bool {
        self.classes
            .as_ref()
            .is_none_or(|classes| classes.contains(&class_id))
            && polygon_contains(&self.points, anchor_in_frame(self.anchor, bbox, size))
    }

    /// The first corner outside a frame of `size`, with its index.
    pub fn outside(&self, size: [u32; 2]) -> Option<(usize, [f32; 2])> {
        outside(&self.points, size)
    }
}
