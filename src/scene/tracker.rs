//! The multi-object tracker: detections of successive frames joined into tracks, each an
//! object with an id, in the ByteTrack family.
//!
//! Per frame:
//! 1. Every track's box is predicted where its motion takes it (an alpha-beta filter on the box
//!    centre, with the size smoothed: the constant-velocity model of SORT's Kalman filter, with
//!    fixed gains instead of covariances; a detector's boxes are accurate to a few pixels, so
//!    the gains trust the measurement).
//! 2. Detections scored at or over `high_score` are matched to the objects, by the optimal
//!    assignment ([`super::assign`]) on 1 − IoU, per label, pairs under `match_iou` never
//!    made and a pair made only where it beats leaving the object unmatched. An object not
//!    seen for some frames is matched with both boxes widened by 10 % of their size on each
//!    side per missed frame (up to half): the longer it is hidden, the less sure its predicted
//!    position, and widening both boxes (the buffered IoU of C-BIoU) lets a prediction a little
//!    off still overlap while an exact one stays at IoU 1.
//! 3. The remaining detections, scored under `high_score`, are matched to the objects seen in
//!    the previous frame that are still unmatched: an object partly hidden scores lower, and
//!    this keeps its track (ByteTrack's second association) without letting weak detections
//!    start or confirm objects.
//! 4. Tentative tracks (seen in the previous frame, not yet objects) take what strong
//!    detections are left; a tentative track seen once is matched with its boxes widened by
//!    half, since it has no velocity yet (a fast object at a few frames a second moves more
//!    than its width).
//! 5. A strong detection left over starts a tentative track. It becomes an object with an id
//!    when seen in `min_hits` frames in a row, and is dropped at its first miss before that.
//!    An object survives `patience` frames without a detection (a stationary one
//!    `stationary_patience`) and ends at the next one missed.
//!
//! Labels are not mixed: a detection whose label flickers to another class starts another
//! track. Counts are in frames, not seconds (a replay at any speed gives the same tracks).
//! Detections with a box that is not finite or has no area are not tracked. The work is
//! bounded: at most [`MAX_OBSERVATIONS`] detections a frame (the highest scored) and
//! [`MAX_TRACKS`] tracks.

use super::assign::assign;
use crate::results::decode::BBox;
use lookout_contract::board::TrackingConfig;

/// A detection as the tracker needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Label index.
    pub class_id: usize,
    /// Confidence.
    pub score: f32,
    /// `[x0, y0, x1, y1]` in source-frame pixels.
    pub bbox: [f32; 4],
}

/// An object as the tracker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Its id, from 1, never reused within a run.
    pub id: u64,
    /// Label index.
    pub class_id: usize,
    /// The box of its last detection.
    pub bbox: [f32; 4],
    /// The score of its last detection.
    pub score: f32,
    /// The best score any of its detections had.
    pub best_score: f32,
    /// Frame sequence number of its first detection.
    pub first_seen: u64,
    /// Frame sequence number of its last detection.
    pub last_seen: u64,
    /// Its box centre has stayed within `stationary_px` of where it settled for
    /// `stationary_frames` sightings.
    pub stationary: bool,
}

/// What one frame did to the tracks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackUpdate {
    /// For each observation given, the id of the object it belongs to (`None`: not an object
    /// yet, or not matched).
    pub ids: Vec<Option<u64>>,
    /// Tracks that became objects this frame (seen in `min_hits` frames in a row).
    pub started: Vec<u64>,
    /// Objects whose `stationary` changed this frame.
    pub stationary_changed: Vec<u64>,
    /// Objects whose track ended this frame (the frame after `patience` frames without a
    /// detection), as they were when last seen.
    pub ended: Vec<Track>,
}

/// Detections a frame the tracker takes at most, the highest scored: the assignment costs
/// O(n²·(n + m)), and a camera frame with more objects than this is not a scene to follow one
/// by one.
pub const MAX_OBSERVATIONS: usize = 256;

/// Tracks kept at most (objects, hidden ones included, and tentative tracks): no new track is
/// started while this many exist.
pub const MAX_TRACKS: usize = 512;

/// Sightings in a row away from where a stationary object settled before it moves again: one
/// jittery box does not end it.
const MOVED_SIGHTINGS: u32 = 3;

/// The alpha-beta filter's gains: the share of a measurement's surprise taken into the
/// position, and into the velocity.
const ALPHA: f32 = 0.85;
const BETA: f32 = 0.3;

#[derive(Debug, Clone)]
struct TrackState {
    /// 0 while tentative.
    id: u64,
    class_id: usize,
    /// Filtered centre and size `[cx, cy, w, h]` at `last_seen`.
    state: [f32; 4],
    /// Centre velocity in pixels per frame.
    velocity: [f32; 2],
    bbox: [f32; 4],
    score: f32,
    best_score: f32,
    first_seen: u64,
    last_seen: u64,
    /// Matches in all.
    hits: u32,
    settled_at: [f32; 2],
    settled_frames: u32,
    /// Sightings in a row away from `settled_at`, while stationary.
    moved: u32,
    stationary: bool,
}

impl TrackState {
    fn new(seq: u64, obs: &Observation) -> Self {
        let state = centre_size(obs.bbox);
        Self {
            id: 0,
            class_id: obs.class_id,
            state,
            velocity: [0.0; 2],
            bbox: obs.bbox,
            score: obs.score,
            best_score: obs.score,
            first_seen: seq,
            last_seen: seq,
            hits: 1,
            settled_at: [state[0], state[1]],
            settled_frames: 0,
            moved: 0,
            stationary: false,
        }
    }

    fn missed(&self, seq: u64) -> u64 {
        seq.saturating_sub(self.last_seen).saturating_sub(1)
    }

    /// The box predicted at frame `seq`.
    fn predicted(&self, seq: u64) -> [f32; 4] {
        let dt = seq.saturating_sub(self.last_seen) as f32;
        let [cx, cy, w, h] = self.state;
        let (cx, cy) = (cx + self.velocity[0] * dt, cy + self.velocity[1] * dt);
        [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h]
    }

    /// How far the boxes are widened, each side, as a share of their size, when this track is
    /// matched at frame `seq`: 10 % per frame it was not seen, up to half; half for a track
    /// seen once, whose velocity is unknown.
    fn buffer(&self, seq: u64) -> f32 {
        if self.hits <= 1 {
            return 0.5;
        }
        (0.1 * self.missed(seq) as f32).min(0.5)
    }

    fn update(&mut self, seq: u64, obs: &Observation, config: &TrackingConfig) {
        let dt = seq.saturating_sub(self.last_seen).max(1) as f32;
        let z = centre_size(obs.bbox);
        let predicted = [
            self.state[0] + self.velocity[0] * dt,
            self.state[1] + self.velocity[1] * dt,
        ];
        let residual = [z[0] - predicted[0], z[1] - predicted[1]];
        if self.hits == 1 {
            // The second sighting is the first velocity measured: take it whole.
            self.velocity = [residual[0] / dt, residual[1] / dt];
            self.state = z;
        } else {
            for k in 0..2 {
                self.state[k] = predicted[k] + ALPHA * residual[k];
                self.velocity[k] += BETA / dt * residual[k];
            }
            for (size, measured) in self.state[2..].iter_mut().zip(&z[2..]) {
                *size += ALPHA * (measured - *size);
            }
        }
        self.bbox = obs.bbox;
        self.score = obs.score;
        self.best_score = self.best_score.max(obs.score);
        self.last_seen = seq;
        self.hits = self.hits.saturating_add(1);
        let (dx, dy) = (z[0] - self.settled_at[0], z[1] - self.settled_at[1]);
        if (dx * dx + dy * dy).sqrt() <= config.stationary_px {
            self.settled_frames = self.settled_frames.saturating_add(1);
            self.moved = 0;
        } else if self.stationary && self.moved + 1 < MOVED_SIGHTINGS {
            // Stationary until it is seen away from its place a few times in a row.
            self.moved += 1;
        } else {
            self.settled_at = [z[0], z[1]];
            self.settled_frames = 0;
            self.moved = 0;
        }
    }

    fn view(&self) -> Track {
        Track {
            id: self.id,
            class_id: self.class_id,
            bbox: self.bbox,
            score: self.score,
            best_score: self.best_score,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            stationary: self.stationary,
        }
    }
}

fn centre_size(b: [f32; 4]) -> [f32; 4] {
    [
        0.5 * (b[0] + b[2]),
        0.5 * (b[1] + b[3]),
        b[2] - b[0],
        b[3] - b[1],
    ]
}

/// `bbox` grown by `share` of its width and height on each side.
fn widened(bbox: [f32; 4], share: f32) -> [f32; 4] {
    let (dw, dh) = (share * (bbox[2] - bbox[0]), share * (bbox[3] - bbox[1]));
    [bbox[0] - dw, bbox[1] - dh, bbox[2] + dw, bbox[3] + dh]
}

/// Whether a detection can be tracked: a finite score and a valid box ([`BBox::is_valid`]:
/// finite, with an area).
fn trackable(obs: &Observation) -> bool {
    obs.score.is_finite() && corners(obs.bbox).is_valid()
}

/// `[x0, y0, x1, y1]` as the decoders' box, whose IoU NMS uses too.
fn corners(b: [f32; 4]) -> BBox {
    BBox {
        x0: b[0],
        y0: b[1],
        x1: b[2],
        y1: b[3],
    }
}

/// Objects followed from frame to frame.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackingConfig,
    tracks: Vec<TrackState>,
    next_id: u64,
    /// [`MAX_TRACKS`] were followed and an object went untracked: said once, until an
    /// eighth of the tracks have ended (so that a scene hovering at the limit is not said at
    /// every frame).
    full: bool,
}

impl Tracker {
    /// A tracker with no tracks yet, whose first object gets id `first_id` (1 for a run's
    /// first tracker; the next unused id when it follows another model's).
    pub fn new(config: TrackingConfig, first_id: u64) -> Self {
        Self {
            config,
            tracks: Vec::new(),
            next_id: first_id.max(1),
            full: false,
        }
    }

    /// Whether new objects went untracked for want of room ([`MAX_TRACKS`] followed already)
    /// and fewer than an eighth of the tracks have ended since.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The id the next object will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The objects now tracked (seen within `patience` frames), oldest first.
    pub fn objects(&self) -> impl Iterator<Item = Track> + '_ {
        self.tracks
            .iter()
            .filter(|t| t.id != 0)
            .map(TrackState::view)
    }

    /// Takes frame `seq`'s detections (frames in increasing order; gaps count as frames in
    /// which nothing was seen).
    pub fn update(&mut self, seq: u64, observations: &[Observation]) -> TrackUpdate {
        let config = self.config.clone();
        let mut update = TrackUpdate {
            ids: vec![None; observations.len()],
            ..TrackUpdate::default()
        };
        // The observation each track took this frame.
        let mut track_matched: Vec<Option<usize>> = vec![None; self.tracks.len()];
        let mut obs_matched = vec![false; observations.len()];
        let mut usable: Vec<usize> = (0..observations.len())
            .filter(|&i| trackable(&observations[i]))
            .collect();
        if usable.len() > MAX_OBSERVATIONS {
            usable.sort_by(|&a, &b| observations[b].score.total_cmp(&observations[a].score));
            usable.truncate(MAX_OBSERVATIONS);
            usable.sort_unstable();
        }
        let (high, low): (Vec<usize>, Vec<usize>) = usable
            .into_iter()
            .partition(|&i| observations[i].score >= config.high_score);
        let seen_last = |t: &TrackState| t.last_seen.saturating_add(1) == seq;
        let objects: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| self.tracks[t].id != 0)
            .collect();
        let objects_seen_last: Vec<usize> = objects
            .iter()
            .copied()
            .filter(|&t| seen_last(&self.tracks[t]))
            .collect();
        let tentative: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| self.tracks[t].id == 0 && seen_last(&self.tracks[t]))
            .collect();
        for (candidates, detections) in [
            (objects, &high),
            (objects_seen_last, &low),
            (tentative, &high),
        ] {
            self.match_pass(
                seq,
                &candidates,
                detections,
                observations,
                &mut track_matched,
                &mut obs_matched,
            );
        }
        // Matched tracks: confirmed, or one frame closer; unmatched: tentative ones dropped,
        // objects ended after their patience.
        let mut kept = Vec::with_capacity(self.tracks.len());
        for (t, mut track) in std::mem::take(&mut self.tracks).into_iter().enumerate() {
            if let Some(o) = track_matched[t] {
                if track.id == 0 && track.hits >= config.min_hits {
                    track.id = self.next_id;
                    self.next_id += 1;
                    update.started.push(track.id);
                }
                if track.id != 0 {
                    update.ids[o] = Some(track.id);
                }
                let stationary = track.settled_frames >= config.stationary_frames;
                if track.id != 0 && stationary != track.stationary {
                    update.stationary_changed.push(track.id);
                }
                track.stationary = stationary;
                kept.push(track);
            } else if track.id == 0 {
                // A tentative track missed: a false detection, or too brief to be an object.
            } else {
                let patience = if track.stationary {
                    config.stationary_patience
                } else {
                    config.patience
                };
                // Frames without a detection, this one included.
                if seq.saturating_sub(track.last_seen) > u64::from(patience) {
                    update.ended.push(track.view());
                } else {
                    kept.push(track);
                }
            }
        }
        // New tentative tracks from strong detections nothing claimed.
        let mut turned_away = false;
        for &o in &high {
            if obs_matched[o] {
                continue;
            }
            if kept.len() >= MAX_TRACKS {
                turned_away = true;
                continue;
            }
            let mut track = TrackState::new(seq, &observations[o]);
            if config.min_hits <= 1 {
                track.id = self.next_id;
                self.next_id += 1;
                update.started.push(track.id);
                update.ids[o] = Some(track.id);
            }
            kept.push(track);
        }
        if turned_away && !self.full {
            tracing::warn!(
                "tracking: {MAX_TRACKS} objects followed at once; new ones go untracked until \
                 some leave"
            );
        }
        self.full = turned_away || (self.full && kept.len() > MAX_TRACKS - MAX_TRACKS / 8);
        self.tracks = kept;
        update
    }

    /// Matches the unmatched tracks among `candidates` with the unmatched observations among
    /// `detections`, one label at a time, and updates the tracks matched.
    fn match_pass(
        &mut self,
        seq: u64,
        candidates: &[usize],
        detections: &[usize],
        observations: &[Observation],
        track_matched: &mut [Option<usize>],
        obs_matched: &mut [bool],
    ) {
        let mut classes: Vec<usize> = detections
            .iter()
            .filter(|&&o| !obs_matched[o])
            .map(|&o| observations[o].class_id)
            .collect();
        classes.sort_unstable();
        classes.dedup();
        for class_id in classes {
            let rows: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&t| track_matched[t].is_none() && self.tracks[t].class_id == class_id)
                .collect();
            let cols: Vec<usize> = detections
                .iter()
                .copied()
                .filter(|&o| !obs_matched[o] && observations[o].class_id == class_id)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let cost: Vec<Option<f64>> = rows
                .iter()
                .flat_map(|&t| cols.iter().map(move |&o| (t, o)))
                .map(|(t, o)| {
                    let track = &self.tracks[t];
                    let b = track.buffer(seq);
                    // Every track's state comes from trackable (finite) boxes, so both are too.
                    let overlap = corners(widened(track.predicted(seq), b))
                        .iou(&corners(widened(observations[o].bbox, b)));
                    (overlap >= self.config.match_iou).then(|| f64::from(1.0 - overlap))
                })
                .collect();
            // Leaving a track unmatched costs as much as the worst pair allowed.
            let unpaired = f64::from(1.0 - self.config.match_iou) + 1e-6;
            for (r, c) in assign(rows.len(), cols.len(), &cost, unpaired) {
                let (t, o) = (rows[r], cols[c]);
                track_matched[t] = Some(o);
                obs_matched[o] = true;
                self.tracks[t].update(seq, &observations[o], &self.config);
            }
        }
    }

    /// Ends every object (the source ended): their tracks, as last seen.
    pub fn finish(&mut self) -> Vec<Track> {
        std::mem::take(&mut self.tracks)
            .into_iter()
            .filter(|t| t.id != 0)
            .map(|t| t.view())
            .collect()
    }
}
