//! The multi-object tracker: detections of successive frames joined into tracks, each an
//! object with an id, in the ByteTrack family.
//!
//! Per frame:
//! 1. Every track's box is predicted where its motion takes it (an alpha-beta filter on the box
//!    centre, with the size smoothed: the constant-velocity model of SORT's Kalman filter, with
//!    fixed gains instead of covariances; a detector's boxes are accurate to a few pixels, so
//!    the gains trust the measurement).
//! 2. Detections scored at or over `high_score` are matched to all tracks, by the optimal
//!    assignment ([`super::assign`]) on 1 − IoU, same label only, pairs under `match_iou`
//!    never made. A track not seen for some frames is matched with both boxes widened by 10 %
//!    of their size on each side per missed frame (up to half): the longer it is hidden, the
//!    less sure its predicted position, and widening both boxes (the buffered IoU of C-BIoU)
//!    lets a prediction a little off still overlap while an exact one stays at IoU 1.
//! 3. The remaining detections, scored under `high_score`, are matched to the tracks seen in
//!    the previous frame that are still unmatched: an object partly hidden scores lower, and
//!    this keeps its track (ByteTrack's second association) without letting weak detections
//!    start objects.
//! 4. A high-scored detection left over starts a tentative track; it becomes an object with an
//!    id once matched in `min_hits` frames in a row, and is dropped at its first miss before
//!    that. An object's track ends after `patience` frames without a match.
//!
//! Labels are not mixed: a detection whose label flickers to another class starts another
//! track. Counts are in frames, not seconds (a replay at any speed gives the same tracks).

use super::assign::assign;
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
    /// Its box centre has stayed within `stationary_px` for `stationary_frames` frames.
    pub stationary: bool,
}

/// What one frame did to the tracks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackUpdate {
    /// For each observation given, the id of the object it belongs to (`None`: not an object
    /// yet, or not matched).
    pub ids: Vec<Option<u64>>,
    /// Objects that became objects this frame (matched `min_hits` times).
    pub started: Vec<u64>,
    /// Objects whose `stationary` changed this frame.
    pub stationary_changed: Vec<u64>,
    /// Objects whose track ended this frame (not seen for more than `patience` frames), as they
    /// were when last seen.
    pub ended: Vec<Track>,
}

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
    /// matched at frame `seq`: 10 % per frame it was not seen, up to half.
    fn buffer(&self, seq: u64) -> f32 {
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
        self.hits += 1;
        let (dx, dy) = (z[0] - self.settled_at[0], z[1] - self.settled_at[1]);
        if (dx * dx + dy * dy).sqrt() <= config.stationary_px {
            self.settled_frames = self.settled_frames.saturating_add(1);
        } else {
            self.settled_at = [z[0], z[1]];
            self.settled_frames = 0;
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

/// Intersection over union of two `[x0, y0, x1, y1]` boxes (0 when either is empty).
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Objects followed from frame to frame.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackingConfig,
    tracks: Vec<TrackState>,
    next_id: u64,
}

impl Tracker {
    /// A tracker with no tracks yet.
    pub fn new(config: TrackingConfig) -> Self {
        Self {
            config,
            tracks: Vec::new(),
            next_id: 1,
        }
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
        let (high, low): (Vec<usize>, Vec<usize>) =
            (0..observations.len()).partition(|&i| observations[i].score >= config.high_score);
        let predicted: Vec<[f32; 4]> = self.tracks.iter().map(|t| t.predicted(seq)).collect();
        // Pass 1: strong detections against every track. Pass 2: weak ones against the tracks
        // seen in the frame before.
        let all_tracks: Vec<usize> = (0..self.tracks.len()).collect();
        let seen_last: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| self.tracks[t].last_seen + 1 == seq)
            .collect();
        for (candidates, detections) in [(all_tracks, &high), (seen_last, &low)] {
            let rows: Vec<usize> = candidates
                .into_iter()
                .filter(|&t| track_matched[t].is_none())
                .collect();
            let cols: Vec<usize> = detections
                .iter()
                .copied()
                .filter(|&o| !obs_matched[o])
                .collect();
            let cost: Vec<Option<f64>> = rows
                .iter()
                .flat_map(|&t| cols.iter().map(move |&o| (t, o)))
                .map(|(t, o)| {
                    let obs = &observations[o];
                    if obs.class_id != self.tracks[t].class_id {
                        return None;
                    }
                    let b = self.tracks[t].buffer(seq);
                    let overlap = iou(widened(predicted[t], b), widened(obs.bbox, b));
                    (overlap >= config.match_iou).then(|| f64::from(1.0 - overlap))
                })
                .collect();
            for (r, c) in assign(rows.len(), cols.len(), &cost) {
                let (t, o) = (rows[r], cols[c]);
                track_matched[t] = Some(o);
                obs_matched[o] = true;
                self.tracks[t].update(seq, &observations[o], &config);
            }
        }
        // Matched tracks: confirmed, or one frame closer; unmatched: tentative ones dropped,
        // objects ended after `patience`.
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
            } else if track.missed(seq + 1) > u64::from(config.patience) {
                update.ended.push(track.view());
            } else {
                kept.push(track);
            }
        }
        // New tentative tracks from strong detections nothing claimed.
        for &o in &high {
            if !obs_matched[o] {
                let mut track = TrackState::new(seq, &observations[o]);
                if config.min_hits <= 1 {
                    track.id = self.next_id;
                    self.next_id += 1;
                    update.started.push(track.id);
                    update.ids[o] = Some(track.id);
                }
                kept.push(track);
            }
        }
        self.tracks = kept;
        update
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
