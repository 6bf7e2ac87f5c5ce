//! Scenes, not frames: objects followed across frames, zones they enter and leave, and the
//! events that say so once instead of fifteen times a second.
//!
//! A frame's detections pass, in order:
//! 1. **Masks** ([`zones::Mask`]): detections whose anchor point lies in a mask are dropped, as
//!    if the model had not seen them.
//! 2. **The tracker** ([`tracker`]): each detection joins the track of an object, which gets an
//!    id once seen `min_hits` frames in a row and keeps it through occlusions of up to
//!    `patience` frames.
//! 3. **Zones** ([`zones::Zone`]): for each object seen in this frame and each zone that reports
//!    its label, whether it is in the zone. Presence changes only after `enter_frames` frames
//!    in a row inside, or `leave_frames` in a row outside, so a box that jitters across the edge
//!    or a detection the model misses for a frame changes nothing. An object that is not seen
//!    at all keeps its presence until its track ends, and leaves then.
//!
//! Out come [`ObjectEvent`]s: `object_entered` (the frame, `zone` absent, when an object is
//! first confirmed; a zone when it has entered it), `object_updated` (it became stationary or
//! moved off again) and `object_left` (a zone left, or the frame when its track ends); and each
//! zone's count of objects present, which changes exactly with those events.
//!
//! The configuration is the board profile's `[tracking]`, `[[zones]]` and `[[masks]]`
//! (`lookout_contract::board::scene`).

pub mod assign;
pub mod tracker;
pub mod zones;

use crate::manifest::Manifest;
use crate::results::record::{format_timestamp, DetectionRecord, EventRecord, FrameRecord};
use lookout_contract::board::SceneConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use tracker::{Observation, Track, Tracker};
use zones::{Mask, Zone};

/// A zone or mask that does not fit the model or the frame.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SceneError {
    /// A zone or mask names a label the model does not have.
    #[error("{table}: label {label:?} is not one of the model's labels ({known})")]
    UnknownLabel {
        /// `zones[0] (driveway)` or `masks[1]`.
        table: String,
        /// The label as written.
        label: String,
        /// The model's labels.
        known: String,
    },
    /// A corner lies outside the frame.
    #[error(
        "{table}: points[{index}] [{x}, {y}] is outside the {width}x{height} frame (zones and \
         masks are in the source frame's pixels)"
    )]
    OutOfFrame {
        /// `zones[0] (driveway)` or `masks[1]`.
        table: String,
        /// Which corner.
        index: usize,
        /// Its x.
        x: f32,
        /// Its y.
        y: f32,
        /// The frame's width.
        width: u32,
        /// The frame's height.
        height: u32,
    },
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectEventKind {
    /// It appeared (in the frame, or in a zone).
    ObjectEntered,
    /// It became stationary, or moved again.
    ObjectUpdated,
    /// It left the zone, or its track ended.
    ObjectLeft,
}

impl ObjectEventKind {
    /// The event's name in records: `object_entered`, `object_updated`, `object_left`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ObjectEntered => "object_entered",
            Self::ObjectUpdated => "object_updated",
            Self::ObjectLeft => "object_left",
        }
    }
}

/// An event about one object, in one zone or in the frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectEvent {
    /// What happened.
    #[serde(skip)]
    pub kind: ObjectEventKind,
    /// The object's id.
    pub track_id: u64,
    /// Its label's index in the model's labels.
    pub label_id: usize,
    /// Its label.
    pub label: String,
    /// The zone; absent for the frame as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Objects present in the zone after this event (zone events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_count: Option<usize>,
    /// Its last box, `[x0, y0, x1, y1]` in source-frame pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// The score of its last detection.
    pub score: f32,
    /// The best score it had.
    pub best_score: f32,
    /// Frame number it was first seen in.
    pub first_seen: u64,
    /// Frame number it was last seen in.
    pub last_seen: u64,
    /// Whether it is stationary.
    pub stationary: bool,
}

/// A zone's objects after a frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneCount {
    /// The zone.
    pub zone: String,
    /// Objects present.
    pub count: usize,
    /// Objects present by label (labels with none left out).
    pub labels: BTreeMap<String, usize>,
}

/// Whether an object is in a zone, and for how many frames it has looked otherwise.
#[derive(Debug, Clone, Copy, Default)]
struct Presence {
    present: bool,
    contrary_frames: u32,
}

/// The scene layer of a run: tracker, zones and masks for one model.
#[derive(Debug)]
pub struct Scene {
    tracker: Tracker,
    zones: Vec<Zone>,
    masks: Vec<Mask>,
    labels: Vec<String>,
    enter_frames: u32,
    leave_frames: u32,
    /// `(track id, zone index)` of every object seen in a zone or present there.
    presence: BTreeMap<(u64, usize), Presence>,
    /// Per zone, the objects present of each label index present.
    counts: Vec<BTreeMap<usize, usize>>,
    /// The frame size the corners were last checked against.
    checked_size: Option<[u32; 2]>,
}

impl Scene {
    /// The scene for a model with `labels`; an error names a zone or mask whose labels the model
    /// does not have.
    pub fn new(config: &SceneConfig, labels: &[String]) -> Result<Self, SceneError> {
        Self::numbered_from(config, labels, 1)
    }

    /// The same, its first object numbered `first_id` (the scene of a model that replaces
    /// another goes on from the ids the other gave).
    pub fn numbered_from(
        config: &SceneConfig,
        labels: &[String],
        first_id: u64,
    ) -> Result<Self, SceneError> {
        let zones = config
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| Zone::new(i, z, labels))
            .collect::<Result<Vec<_>, _>>()?;
        let masks = config
            .masks
            .iter()
            .enumerate()
            .map(|(i, m)| Mask::new(i, m, labels))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            tracker: Tracker::new(config.tracking.clone(), first_id),
            counts: vec![BTreeMap::new(); zones.len()],
            zones,
            masks,
            labels: labels.to_vec(),
            enter_frames: config.tracking.enter_frames,
            leave_frames: config.tracking.leave_frames,
            presence: BTreeMap::new(),
            checked_size: None,
        })
    }

    /// Each zone's count of objects present, in all and by label.
    pub fn zone_counts(&self) -> Vec<ZoneCount> {
        self.zones
            .iter()
            .zip(&self.counts)
            .map(|(zone, counts)| ZoneCount {
                zone: zone.name.clone(),
                count: counts.values().sum(),
                labels: counts
                    .iter()
                    .map(|(&class_id, &n)| (self.label(class_id), n))
                    .collect(),
            })
            .collect()
    }

    /// Objects present in zone `z`, every label.
    fn count_in(&self, z: usize) -> usize {
        self.counts[z].values().sum()
    }

    /// One more (`arrived`) or one fewer object of `class_id` in zone `z`.
    fn recount(&mut self, z: usize, class_id: usize, arrived: bool) {
        let counts = &mut self.counts[z];
        if arrived {
            *counts.entry(class_id).or_default() += 1;
        } else if let Some(n) = counts.get_mut(&class_id) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&class_id);
            }
        }
    }

    fn label(&self, class_id: usize) -> String {
        self.labels
            .get(class_id)
            .cloned()
            .unwrap_or_else(|| format!("class {class_id}"))
    }

    /// The id the next object will get.
    pub fn next_id(&self) -> u64 {
        self.tracker.next_id()
    }

    /// The objects now tracked.
    pub fn objects(&self) -> Vec<Track> {
        self.tracker.objects().collect()
    }

    /// Checks every corner against a frame of `size` once per size.
    fn check_frame(&mut self, size: [u32; 2]) -> Result<(), SceneError> {
        if self.checked_size == Some(size) {
            return Ok(());
        }
        let corners = self
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| (format!("zones[{i}] ({})", z.name), z.outside(size)))
            .chain(
                self.masks
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (format!("masks[{i}]"), m.outside(size))),
            );
        for (table, corner) in corners {
            if let Some((index, [x, y])) = corner {
                return Err(SceneError::OutOfFrame {
                    table,
                    index,
                    x,
                    y,
                    width: size[0],
                    height: size[1],
                });
            }
        }
        self.checked_size = Some(size);
        Ok(())
    }

    /// Takes frame `seq` (of `frame_size`, `[width, height]`): drops the masked detections,
    /// sets each remaining one's `track_id`, and returns the events of this frame in order:
    /// objects whose track ended (each zone, then the frame), objects confirmed, zones entered
    /// and left, then updates.
    pub fn update(
        &mut self,
        seq: u64,
        frame_size: [u32; 2],
        detections: &mut Vec<DetectionRecord>,
    ) -> Result<Vec<ObjectEvent>, SceneError> {
        self.check_frame(frame_size)?;
        if !self.masks.is_empty() {
            detections.retain(|d| {
                !self
                    .masks
                    .iter()
                    .any(|m| m.hides(d.label_id, d.bbox, frame_size))
            });
        }
        let observations: Vec<Observation> = detections
            .iter()
            .map(|d| Observation {
                class_id: d.label_id,
                score: d.score,
                bbox: d.bbox,
            })
            .collect();
        let update = self.tracker.update(seq, &observations);
        for (detection, id) in detections.iter_mut().zip(&update.ids) {
            detection.track_id = *id;
        }
        let mut events = Vec::new();
        for track in &update.ended {
            self.leave_everywhere(track, &mut events);
        }
        for &id in &update.started {
            if let Some(track) = self.tracker.objects().find(|t| t.id == id) {
                events.push(self.event(ObjectEventKind::ObjectEntered, &track, None));
            }
        }
        // Objects seen in this frame: their presence in each zone, debounced.
        let seen: Vec<Track> = self
            .tracker
            .objects()
            .filter(|t| t.last_seen == seq)
            .collect();
        for track in &seen {
            for z in 0..self.zones.len() {
                if !self.zones[z].cares_about(track.class_id) {
                    continue;
                }
                let inside = self.zones[z].holds(track.bbox, frame_size);
                let needed = |present: bool| {
                    if present {
                        self.leave_frames
                    } else {
                        self.enter_frames
                    }
                };
                let entry = self.presence.entry((track.id, z)).or_default();
                if inside == entry.present {
                    entry.contrary_frames = 0;
                    continue;
                }
                entry.contrary_frames += 1;
                if entry.contrary_frames < needed(entry.present) {
                    continue;
                }
                entry.present = inside;
                entry.contrary_frames = 0;
                self.recount(z, track.class_id, inside);
                let kind = if inside {
                    ObjectEventKind::ObjectEntered
                } else {
                    ObjectEventKind::ObjectLeft
                };
                events.push(self.event(kind, track, Some(z)));
            }
        }
        for &id in &update.stationary_changed {
            if let Some(track) = seen.iter().find(|t| t.id == id) {
                events.push(self.event(ObjectEventKind::ObjectUpdated, track, None));
                let present: Vec<usize> = self.present_zones(id).collect();
                for z in present {
                    events.push(self.event(ObjectEventKind::ObjectUpdated, track, Some(z)));
                }
            }
        }
        Ok(events)
    }

    /// Ends every object (the source ended, the model changed): their `object_left` events.
    pub fn finish(&mut self) -> Vec<ObjectEvent> {
        let mut events = Vec::new();
        for track in self.tracker.finish() {
            self.leave_everywhere(&track, &mut events);
        }
        events
    }

    fn present_zones(&self, id: u64) -> impl Iterator<Item = usize> + '_ {
        self.presence
            .range((id, 0)..(id, usize::MAX))
            .filter(|(_, p)| p.present)
            .map(|(&(_, z), _)| z)
    }

    /// An object's track ended: it leaves each zone it is in, then the frame.
    fn leave_everywhere(&mut self, track: &Track, events: &mut Vec<ObjectEvent>) {
        let present: Vec<usize> = self.present_zones(track.id).collect();
        for z in present {
            self.recount(z, track.class_id, false);
            events.push(self.event(ObjectEventKind::ObjectLeft, track, Some(z)));
        }
        let keys: Vec<(u64, usize)> = self
            .presence
            .range((track.id, 0)..(track.id, usize::MAX))
            .map(|(&k, _)| k)
            .collect();
        for key in keys {
            self.presence.remove(&key);
        }
        events.push(self.event(ObjectEventKind::ObjectLeft, track, None));
    }

    fn event(&self, kind: ObjectEventKind, track: &Track, zone: Option<usize>) -> ObjectEvent {
        ObjectEvent {
            kind,
            track_id: track.id,
            label_id: track.class_id,
            label: self.label(track.class_id),
            zone: zone.map(|z| self.zones[z].name.clone()),
            zone_count: zone.map(|z| self.count_in(z)),
            bbox: track.bbox,
            score: track.score,
            best_score: track.best_score,
            first_seen: track.first_seen,
            last_seen: track.last_seen,
            stationary: track.stationary,
        }
    }
}

/// The scene layer as a run keeps it across model switches: the configuration, and the scene
/// of the model whose records it follows.
#[derive(Debug)]
pub struct SceneRun {
    config: SceneConfig,
    /// `name@version` of the model whose records it follows.
    model: String,
    labels: Vec<String>,
    /// `None` while the zones do not fit the model in use (an event said so).
    scene: Option<Scene>,
    /// The id the next object gets while `scene` is `None`: ids are never reused in a run.
    next_id: u64,
    events: Vec<EventRecord>,
    /// Events of a model switch (objects of the model replaced leaving, `scene_off`): told
    /// before the first record of the model that took over.
    switch_events: Vec<EventRecord>,
}

impl SceneRun {
    /// The scene layer for the model of `manifest`, when `config` tracks at all (`None`
    /// otherwise); an error names a zone or mask the model cannot serve. A model that does not
    /// detect boxes leaves it idle, with a `scene_off` event, until one that does is switched
    /// in.
    pub fn start(config: &SceneConfig, manifest: &Manifest) -> Result<Option<Self>, SceneError> {
        if !config.tracks() {
            return Ok(None);
        }
        let mut run = Self {
            config: config.clone(),
            model: manifest.id(),
            labels: manifest.labels.clone(),
            scene: None,
            next_id: 1,
            events: Vec::new(),
            switch_events: Vec::new(),
        };
        if manifest.output.is_detector() {
            run.scene = Some(Scene::new(config, &manifest.labels)?);
        } else {
            run.off(&manifest.id(), "it does not detect boxes");
        }
        Ok(Some(run))
    }

    /// Follows the model of `manifest`, which replaces the one followed so far, from its first
    /// record on. With the same labels every object goes on under its id; with others, every
    /// object leaves (events under the model replaced) and the zones are resolved again. A
    /// model whose labels the zones name no longer, or that does not detect boxes, leaves the
    /// scene layer idle, with a `scene_off` event that says why. Ids are never reused in a run.
    pub fn follow(&mut self, manifest: &Manifest) {
        let now = manifest.id();
        if now == self.model {
            return;
        }
        let same = manifest.labels == self.labels && manifest.output.is_detector();
        let was = std::mem::replace(&mut self.model, now.clone());
        if same && self.scene.is_some() {
            return;
        }
        let timestamp = format_timestamp(std::time::SystemTime::now());
        if let Some(mut scene) = self.scene.take() {
            self.next_id = scene.next_id();
            for event in scene.finish() {
                self.switch_events
                    .push(event_record(event, &timestamp, &was));
            }
        }
        self.labels = manifest.labels.clone();
        let fresh = if manifest.output.is_detector() {
            Scene::numbered_from(&self.config, &manifest.labels, self.next_id)
                .map_err(|e| e.to_string())
        } else {
            Err("it does not detect boxes".to_string())
        };
        match fresh {
            Ok(scene) => self.scene = Some(scene),
            Err(why) => self.off(&now, &why),
        }
    }

    /// Zones and tracking wait while `model` runs, for `why`.
    fn off(&mut self, model: &str, why: &str) {
        let message = format!("zones and tracking are off while {model} runs: {why}");
        tracing::warn!("{message}");
        self.switch_events
            .push(EventRecord::now("scene_off", model, message));
    }

    /// The events of a model switch, to be told before the record of the model that took over
    /// ([`SceneRun::follow`]).
    pub fn take_switch_events(&mut self) -> Vec<EventRecord> {
        std::mem::take(&mut self.switch_events)
    }

    /// Takes a record of the model followed: masked detections dropped, track ids set, zone
    /// counts added, and its events kept for [`SceneRun::take_events`]. Records of another model
    /// (one replaced while its frames were in flight) are left as they are.
    pub fn observe(&mut self, record: &mut FrameRecord) -> Result<(), SceneError> {
        let Some(scene) = self.scene.as_mut().filter(|_| record.model == self.model) else {
            return Ok(());
        };
        let mut detections = record.detections.take().unwrap_or_default();
        let events = scene.update(record.seq, record.frame_size, &mut detections);
        record.detections = Some(detections);
        let events = events?;
        if !scene.zones.is_empty() {
            record.zones = Some(scene.zone_counts());
        }
        for event in events {
            self.events
                .push(event_record(event, &record.timestamp, &record.model));
        }
        Ok(())
    }

    /// Events raised since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<EventRecord> {
        std::mem::take(&mut self.events)
    }

    /// The objects now tracked and the zones' counts, for `status`.
    pub fn scene(&self) -> Option<&Scene> {
        self.scene.as_ref()
    }

    /// Two lines for the console's `status`: the objects tracked, and each zone's count.
    pub fn status(&self) -> String {
        let Some(scene) = &self.scene else {
            return format!(
                "tracking off while {} runs (see the scene_off event)",
                self.model
            );
        };
        let objects = scene.objects();
        let listed: Vec<String> = objects
            .iter()
            .take(STATUS_OBJECTS)
            .map(|t| {
                format!(
                    "{} {}{}",
                    scene.label(t.class_id),
                    t.id,
                    if t.stationary { " (stationary)" } else { "" }
                )
            })
            .collect();
        let more = objects.len().saturating_sub(STATUS_OBJECTS);
        let mut out = format!(
            "tracking {} object{}{}{}{}",
            objects.len(),
            if objects.len() == 1 { "" } else { "s" },
            if listed.is_empty() { "" } else { ": " },
            listed.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
        let zones: Vec<String> = scene
            .zone_counts()
            .iter()
            .map(|z| {
                let labels: Vec<String> =
                    z.labels.iter().map(|(l, n)| format!("{l} {n}")).collect();
                if labels.is_empty() {
                    format!("{} 0", z.zone)
                } else {
                    format!("{} {} ({})", z.zone, z.count, labels.join(", "))
                }
            })
            .collect();
        if !zones.is_empty() {
            out.push_str(&format!("\nzones: {}", zones.join(", ")));
        }
        out
    }

    /// Ends every object (the run ends): their `object_left` events, with any of a switch not
    /// told yet, for [`SceneRun::take_events`].
    pub fn finish(&mut self) {
        let timestamp = format_timestamp(std::time::SystemTime::now());
        let mut events = std::mem::take(&mut self.switch_events);
        if let Some(scene) = self.scene.as_mut() {
            for event in scene.finish() {
                events.push(event_record(event, &timestamp, &self.model));
            }
        }
        self.events.extend(events);
    }
}

/// Objects the console's `status` names one by one; the rest are counted.
const STATUS_OBJECTS: usize = 8;

/// An object event as the sinks receive it: at the time of the frame that raised it, with a
/// line a person reads.
fn event_record(event: ObjectEvent, timestamp: &str, source: &str) -> EventRecord {
    let place = match &event.zone {
        Some(zone) => format!(" zone {zone}"),
        None => String::new(),
    };
    let message = match event.kind {
        ObjectEventKind::ObjectEntered => {
            format!("{} {} entered{place}", event.label, event.track_id)
        }
        ObjectEventKind::ObjectLeft => format!("{} {} left{place}", event.label, event.track_id),
        ObjectEventKind::ObjectUpdated if event.stationary => {
            format!("{} {} is stationary{place}", event.label, event.track_id)
        }
        ObjectEventKind::ObjectUpdated => {
            format!("{} {} moves again{place}", event.label, event.track_id)
        }
    };
    EventRecord {
        event: event.kind.as_str().into(),
        timestamp: timestamp.into(),
        source: source.into(),
        message,
        drift: None,
        object: Some(event),
    }
}

#[cfg(test)]
mod tests;
