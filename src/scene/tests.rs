//! The scene layer on scripted sequences with known trajectories: objects that move, cross,
//! hide and leave, with detections jittered and dropped at random (seeded), and the identity
//! switches, fragmentation and events counted against the truth.

use super::*;
use lookout_contract::board::{Anchor, MaskConfig, TrackingConfig, ZoneConfig};

const LABELS: [&str; 3] = ["person", "car", "parcel"];

fn labels() -> Vec<String> {
    LABELS.iter().map(|s| s.to_string()).collect()
}

/// An object of a scripted scene: a box of `size` whose top-left corner moves from `from` at
/// `velocity` pixels a frame, present in frames `frames`, hidden in `hidden`.
#[derive(Clone)]
struct Actor {
    class_id: usize,
    from: [f32; 2],
    velocity: [f32; 2],
    size: [f32; 2],
    frames: std::ops::Range<u64>,
    hidden: Option<std::ops::Range<u64>>,
}

impl Actor {
    fn walking(
        class_id: usize,
        from: [f32; 2],
        velocity: [f32; 2],
        frames: std::ops::Range<u64>,
    ) -> Self {
        Self {
            class_id,
            from,
            velocity,
            size: [40.0, 80.0],
            frames,
            hidden: None,
        }
    }

    fn bbox(&self, seq: u64) -> Option<[f32; 4]> {
        if !self.frames.contains(&seq) || self.hidden.as_ref().is_some_and(|h| h.contains(&seq)) {
            return None;
        }
        let t = (seq - self.frames.start) as f32;
        let (x, y) = (
            self.from[0] + self.velocity[0] * t,
            self.from[1] + self.velocity[1] * t,
        );
        Some([x, y, x + self.size[0], y + self.size[1]])
    }
}

/// How the scripted detector errs.
struct Noise {
    seed: u64,
    /// Pixels of jitter on each box edge, at most.
    jitter: f32,
    /// Chance that a visible object is not detected in a frame.
    drop: f64,
}

/// One frame's detections with the actor each came from, shuffled.
fn detect(
    actors: &[Actor],
    seq: u64,
    noise: &Noise,
    rng: &mut fastrand::Rng,
) -> Vec<(usize, DetectionRecord)> {
    let mut out: Vec<(usize, DetectionRecord)> = Vec::new();
    for (a, actor) in actors.iter().enumerate() {
        let Some(mut bbox) = actor.bbox(seq) else {
            continue;
        };
        if rng.f64() < noise.drop {
            continue;
        }
        for v in &mut bbox {
            *v = (*v + (rng.f32() * 2.0 - 1.0) * noise.jitter).max(0.0);
        }
        out.push((
            a,
            DetectionRecord {
                label_id: actor.class_id,
                label: LABELS[actor.class_id].into(),
                score: 0.55 + 0.4 * rng.f32(),
                bbox,
                keypoints: None,
                track_id: None,
            },
        ));
    }
    rng.shuffle(&mut out);
    out
}

/// What a run of a scripted scene gave.
#[derive(Default, Debug)]
struct Run {
    events: Vec<(u64, ObjectEvent)>,
    /// Times an actor's track id changed between two frames it was tracked in.
    id_switches: usize,
    /// Times an actor went from tracked to untracked and back while visible (a detection
    /// dropped by `noise` does not count as untracked).
    fragmentations: usize,
    /// Track ids given to detections of more than one actor, or of none.
    shared_ids: usize,
    /// Distinct ids per actor.
    ids_of: Vec<Vec<u64>>,
}

fn run(config: &SceneConfig, actors: &[Actor], frames: u64, noise: &Noise) -> Run {
    let mut scene = Scene::new(config, &labels()).expect("scene");
    let mut rng = fastrand::Rng::with_seed(noise.seed);
    let mut result = Run {
        ids_of: vec![Vec::new(); actors.len()],
        ..Run::default()
    };
    let mut last_id: Vec<Option<u64>> = vec![None; actors.len()];
    let mut gap: Vec<bool> = vec![false; actors.len()];
    let mut owner: BTreeMap<u64, usize> = BTreeMap::new();
    for seq in 0..frames {
        let detected = detect(actors, seq, noise, &mut rng);
        let (who, mut detections): (Vec<usize>, Vec<DetectionRecord>) =
            detected.into_iter().unzip();
        let events = scene
            .update(seq, [640, 480], &mut detections)
            .expect("update");
        result.events.extend(events.into_iter().map(|e| (seq, e)));
        let mut tracked_now = vec![false; actors.len()];
        for (a, d) in who.iter().zip(&detections) {
            let Some(id) = d.track_id else { continue };
            tracked_now[*a] = true;
            if owner.insert(id, *a).is_some_and(|o| o != *a) {
                result.shared_ids += 1;
            }
            if !result.ids_of[*a].contains(&id) {
                result.ids_of[*a].push(id);
            }
            if last_id[*a].is_some_and(|last| last != id) {
                result.id_switches += 1;
            }
            if gap[*a] {
                result.fragmentations += 1;
                gap[*a] = false;
            }
            last_id[*a] = Some(id);
        }
        // Visible and detected, yet without an id after having one: a gap in its track.
        for (a, d) in who.iter().zip(&detections) {
            if d.track_id.is_none() && last_id[*a].is_some() && !tracked_now[*a] {
                gap[*a] = true;
            }
        }
    }
    result
        .events
        .extend(scene.finish().into_iter().map(|e| (frames, e)));
    result
}

fn tracking() -> TrackingConfig {
    TrackingConfig {
        enabled: true,
        patience: 10,
        ..TrackingConfig::default()
    }
}

fn zone(name: &str, points: Vec<[f32; 2]>, labels: &[&str]) -> ZoneConfig {
    ZoneConfig {
        name: name.into(),
        points,
        labels: labels.iter().map(|s| s.to_string()).collect(),
        anchor: Anchor::BottomCenter,
    }
}

/// `(frame, kind, track, zone)` of each event.
fn summary(run: &Run) -> Vec<(u64, &'static str, u64, Option<String>)> {
    run.events
        .iter()
        .map(|(seq, e)| (*seq, e.kind.as_str(), e.track_id, e.zone.clone()))
        .collect()
}

#[test]
fn two_people_crossing_keep_their_ids() {
    // Walking towards each other on nearly the same line, boxes overlapping for ~10 frames,
    // the one behind hidden for 4 of them.
    let mut right = Actor::walking(0, [500.0, 200.0], [-8.0, 0.0], 0..60);
    right.hidden = Some(28..32);
    let left = Actor::walking(0, [60.0, 206.0], [8.0, 0.0], 0..60);
    for seed in 0..20 {
        let noise = Noise {
            seed,
            jitter: 2.0,
            drop: 0.0,
        };
        let result = run(
            &SceneConfig {
                tracking: tracking(),
                ..SceneConfig::default()
            },
            &[right.clone(), left.clone()],
            60,
            &noise,
        );
        assert_eq!(result.id_switches, 0, "seed {seed}: {result:?}");
        assert_eq!(result.shared_ids, 0, "seed {seed}");
        assert!(
            result.ids_of.iter().all(|ids| ids.len() == 1),
            "seed {seed}: {:?}",
            result.ids_of
        );
    }
}

#[test]
fn an_occlusion_shorter_than_patience_keeps_the_object() {
    let config = SceneConfig {
        tracking: tracking(),
        ..SceneConfig::default()
    };
    let patience = config.tracking.patience as u64;
    let quiet = Noise {
        seed: 1,
        jitter: 1.0,
        drop: 0.0,
    };
    // Hidden for exactly `patience` frames: the same object after, no object_left before the end.
    let mut walker = Actor::walking(0, [100.0, 100.0], [3.0, 1.0], 0..60);
    walker.hidden = Some(20..20 + patience);
    let result = run(&config, &[walker.clone()], 60, &quiet);
    assert_eq!(
        summary(&result),
        vec![(2, "object_entered", 1, None), (60, "object_left", 1, None)],
        "min_hits = 3: confirmed in frame 2"
    );
    // Hidden one frame longer: it left, and what comes back is a new object.
    walker.hidden = Some(20..21 + patience);
    let result = run(&config, &[walker], 60, &quiet);
    assert_eq!(
        summary(&result),
        vec![
            (2, "object_entered", 1, None),
            (20 + patience, "object_left", 1, None),
            (21 + patience + 2, "object_entered", 2, None),
            (60, "object_left", 2, None),
        ]
    );
    let left = &result.events[1].1;
    assert_eq!((left.first_seen, left.last_seen), (0, 19));
}

#[test]
fn detections_in_fewer_than_min_hits_frames_are_never_an_object() {
    let config = SceneConfig {
        tracking: tracking(),
        ..SceneConfig::default()
    };
    // One frame, then two (min_hits = 3), then two with a frame between them.
    let flashes = [
        Actor::walking(1, [300.0, 300.0], [0.0, 0.0], 5..6),
        Actor::walking(1, [100.0, 300.0], [0.0, 0.0], 8..10),
        Actor {
            hidden: Some(13..14),
            ..Actor::walking(1, [500.0, 300.0], [0.0, 0.0], 12..15)
        },
    ];
    let result = run(
        &config,
        &flashes,
        20,
        &Noise {
            seed: 3,
            jitter: 0.0,
            drop: 0.0,
        },
    );
    assert!(result.events.is_empty(), "{:?}", summary(&result));
}

fn person_at(bbox: [f32; 4], score: f32) -> DetectionRecord {
    DetectionRecord {
        label_id: 0,
        label: "person".into(),
        score,
        bbox,
        keypoints: None,
        track_id: None,
    }
}

#[test]
fn weak_detections_continue_objects_but_never_start_them() {
    let config = SceneConfig {
        tracking: tracking(),
        ..SceneConfig::default()
    };
    let mut scene = Scene::new(&config, &labels()).expect("scene");
    let mut ids = Vec::new();
    // Strong for three frames (an object), then weak (0.3, partly hidden) for ten: the same
    // object all along.
    for seq in 0..13 {
        let score = if seq < 3 { 0.9 } else { 0.3 };
        let x = 100.0 + 4.0 * seq as f32;
        let mut frame = vec![person_at([x, 100.0, x + 40.0, 180.0], score)];
        scene.update(seq, [640, 480], &mut frame).expect("update");
        ids.push(frame[0].track_id);
    }
    assert_eq!(ids[..2], [None, None]);
    assert!(ids[2..].iter().all(|id| *id == Some(1)), "{ids:?}");
    // Weak detections alone, elsewhere, for ten frames: never an object.
    let mut weak_ids = Vec::new();
    for seq in 13..23 {
        let mut frame = vec![person_at([500.0, 100.0, 540.0, 180.0], 0.3)];
        let events = scene.update(seq, [640, 480], &mut frame).expect("update");
        assert!(events.iter().all(|e| e.track_id == 1), "{events:?}");
        weak_ids.push(frame[0].track_id);
    }
    assert!(weak_ids.iter().all(Option::is_none), "{weak_ids:?}");
}

#[test]
fn an_object_whose_track_ends_inside_zones_leaves_each_and_counts_return_to_zero() {
    // Two overlapping zones reaching the frame's bottom edge; a person walks in from the
    // bottom, cut off by the edge (its box clamped to y1 = 480), stands, and vanishes.
    let config = SceneConfig {
        tracking: tracking(),
        zones: vec![
            zone(
                "yard",
                vec![[0.0, 240.0], [640.0, 240.0], [640.0, 480.0], [0.0, 480.0]],
                &[],
            ),
            zone(
                "door",
                vec![
                    [200.0, 300.0],
                    [440.0, 300.0],
                    [440.0, 480.0],
                    [200.0, 480.0],
                ],
                &["person"],
            ),
        ],
        masks: Vec::new(),
    };
    let mut scene = Scene::new(&config, &labels()).expect("scene");
    let mut events = Vec::new();
    let mut counts = Vec::new();
    for seq in 0..60u64 {
        let mut frame = if seq < 20 {
            vec![person_at([300.0, 400.0, 340.0, 480.0], 0.9)]
        } else {
            Vec::new()
        };
        events.extend(scene.update(seq, [640, 480], &mut frame).expect("update"));
        counts.push(
            scene
                .zone_counts()
                .iter()
                .map(|c| c.count)
                .collect::<Vec<_>>(),
        );
    }
    let got: Vec<(&str, Option<&str>, Option<usize>)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.zone.as_deref(), e.zone_count))
        .collect();
    assert_eq!(
        got,
        vec![
            ("object_entered", None, None),
            ("object_entered", Some("yard"), Some(1)),
            ("object_entered", Some("door"), Some(1)),
            // Last seen in frame 19; patience 10: gone at frame 30, zones first.
            ("object_left", Some("yard"), Some(0)),
            ("object_left", Some("door"), Some(0)),
            ("object_left", None, None),
        ]
    );
    assert_eq!(counts[3], [0, 0]);
    assert_eq!(
        counts[4],
        [1, 1],
        "confirmed at frame 2, inside at 2, 3 and 4"
    );
    assert_eq!(counts[29], [1, 1], "hidden, still present");
    assert_eq!(counts[30], [0, 0]);
}

#[test]
fn a_stationary_object_moves_again_only_when_seen_away_three_times() {
    let config = SceneConfig {
        tracking: TrackingConfig {
            stationary_frames: 10,
            ..tracking()
        },
        ..SceneConfig::default()
    };
    let mut scene = Scene::new(&config, &labels()).expect("scene");
    let mut updates = Vec::new();
    for seq in 0..60u64 {
        // Parked at x = 200; one jittery box 30 px off at frame 25; drives off from frame 40.
        let x = match seq {
            25 => 230.0,
            40.. => 200.0 + 15.0 * (seq - 39) as f32,
            _ => 200.0,
        };
        let mut frame = vec![DetectionRecord {
            label_id: 1,
            label: "car".into(),
            ..person_at([x, 300.0, x + 120.0, 360.0], 0.9)
        }];
        for e in scene.update(seq, [640, 480], &mut frame).expect("update") {
            if e.kind == ObjectEventKind::ObjectUpdated {
                updates.push((seq, e.stationary));
            }
        }
    }
    // Settled at frame 0, stationary at its 10th sighting after (frame 10); the one box off
    // at 25 changes nothing; moving from 40, seen away at 40, 41 and 42.
    assert_eq!(updates, vec![(10, true), (42, false)]);
}

#[test]
fn boxes_that_are_not_finite_or_empty_are_not_tracked_and_many_detections_are_capped() {
    let config = SceneConfig {
        tracking: TrackingConfig {
            min_hits: 1,
            ..tracking()
        },
        ..SceneConfig::default()
    };
    let mut scene = Scene::new(&config, &labels()).expect("scene");
    let mut frame = vec![
        person_at([0.0, 0.0, f32::NAN, 10.0], 0.9),
        person_at([10.0, 10.0, 10.0, 50.0], 0.9),
        person_at([10.0, 10.0, 50.0, 50.0], f32::NAN),
        person_at([f32::INFINITY, 0.0, 1.0, 1.0], 0.9),
    ];
    let events = scene.update(0, [640, 480], &mut frame).expect("update");
    assert!(events.is_empty() && frame.iter().all(|d| d.track_id.is_none()));
    // 2000 detections on a grid: the 256 highest scored are tracked.
    let mut many: Vec<DetectionRecord> = (0..2000)
        .map(|i| {
            let (x, y) = ((i % 50) as f32 * 12.0, (i / 50) as f32 * 12.0);
            person_at([x, y, x + 10.0, y + 10.0], 0.5 + i as f32 / 4000.0)
        })
        .collect();
    scene.update(1, [640, 480], &mut many).expect("update");
    let tracked: Vec<usize> = (0..many.len())
        .filter(|&i| many[i].track_id.is_some())
        .collect();
    assert_eq!(tracked.len(), tracker::MAX_OBSERVATIONS);
    assert_eq!(tracked[0], 2000 - tracker::MAX_OBSERVATIONS);
}

#[test]
fn past_the_most_tracks_new_objects_go_untracked_until_there_is_room() {
    let config = TrackingConfig {
        min_hits: 1,
        ..tracking()
    };
    let mut tracker = tracker::Tracker::new(config, 1);
    // Each frame a grid of new objects nowhere near the last frame's.
    let grid = |frame: usize| -> Vec<tracker::Observation> {
        (0..tracker::MAX_OBSERVATIONS)
            .map(|i| {
                let (x, y) = ((i % 16) as f32 * 40.0, (frame * 16 + i / 16) as f32 * 40.0);
                tracker::Observation {
                    class_id: 0,
                    score: 0.9,
                    bbox: [x, y, x + 10.0, y + 10.0],
                }
            })
            .collect()
    };
    let full = tracker::MAX_TRACKS / tracker::MAX_OBSERVATIONS;
    for frame in 0..full {
        let update = tracker.update(frame as u64, &grid(frame));
        assert_eq!(update.started.len(), tracker::MAX_OBSERVATIONS);
        assert!(!tracker.is_full());
    }
    let update = tracker.update(full as u64, &grid(full));
    assert!(
        update.started.is_empty(),
        "{} started",
        update.started.len()
    );
    assert!(tracker.is_full());
    assert_eq!(tracker.objects().count(), tracker::MAX_TRACKS);
    // A few objects leave while the rest are seen in turn: the tracker is still full until an
    // eighth of the tracks have ended, so the warning is not said again at the limit.
    let patience = u64::from(tracking().patience);
    let few = 6;
    let mut frame = full as u64 + 1;
    for _ in 0..=patience + 1 {
        let seen = grid((frame % 2) as usize);
        let seen = if frame.is_multiple_of(2) {
            &seen[few..]
        } else {
            &seen[..]
        };
        tracker.update(frame, seen);
        frame += 1;
    }
    assert_eq!(tracker.objects().count(), tracker::MAX_TRACKS - few);
    assert!(tracker.is_full(), "{few} tracks ended: still full");
    // Once more than an eighth run out of patience unseen, there is room again.
    while tracker.objects().count() > tracker::MAX_TRACKS - tracker::MAX_TRACKS / 8 {
        tracker.update(frame, &[]);
        frame += 1;
        assert!(frame < 100, "the tracks never ended");
    }
    assert!(!tracker.is_full());
    let update = tracker.update(frame, &grid(full + 1));
    assert_eq!(update.started.len(), tracker::MAX_OBSERVATIONS);
    assert!(!tracker.is_full());
}

/// A person walks down through a zone drawn across the middle of the frame, and a car drives
/// along the bottom of the frame, outside it.
fn driveway_scene() -> (SceneConfig, Vec<Actor>) {
    let config = SceneConfig {
        tracking: tracking(),
        zones: vec![zone(
            "driveway",
            vec![[0.0, 200.0], [640.0, 200.0], [640.0, 320.0], [0.0, 320.0]],
            &["person"],
        )],
        masks: Vec::new(),
    };
    // Bottom edge at y = 80 + 4t: inside the zone (200 <= y < 320) for frames 30..=59.
    let person = Actor::walking(0, [300.0, 0.0], [0.0, 4.0], 0..100);
    let car = Actor {
        size: [120.0, 60.0],
        ..Actor::walking(1, [0.0, 400.0], [5.0, 0.0], 0..100)
    };
    (config, vec![person, car])
}

#[test]
fn zone_events_are_exact_and_dropped_detections_add_none() {
    let (config, actors) = driveway_scene();
    let clean = run(
        &config,
        &actors,
        100,
        &Noise {
            seed: 0,
            jitter: 0.0,
            drop: 0.0,
        },
    );
    let zone_events = |run: &Run| -> Vec<(&'static str, String, Option<usize>)> {
        run.events
            .iter()
            .filter(|(_, e)| e.zone.is_some())
            .map(|(_, e)| (e.kind.as_str(), e.label.clone(), e.zone_count))
            .collect()
    };
    assert_eq!(
        zone_events(&clean),
        vec![
            ("object_entered", "person".to_string(), Some(1)),
            ("object_left", "person".to_string(), Some(0))
        ]
    );
    // Entered after enter_frames (3) frames inside, from frame 30 (its bottom edge on the
    // zone's top edge counts as inside); left after leave_frames outside, from frame 60.
    let when: Vec<u64> = clean
        .events
        .iter()
        .filter(|(_, e)| e.zone.is_some())
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(when, vec![32, 62]);
    // A detection dropped in 10 % of frames, over many seeds: the same events, no others.
    for seed in 0..50 {
        let noisy = run(
            &config,
            &actors,
            100,
            &Noise {
                seed,
                jitter: 2.0,
                drop: 0.1,
            },
        );
        assert_eq!(zone_events(&noisy), zone_events(&clean), "seed {seed}");
        assert_eq!(noisy.id_switches, 0, "seed {seed}");
        // Each object enters the frame once and leaves it once (at the end of the run).
        let mut frame_events: Vec<(&str, u64)> = summary(&noisy)
            .into_iter()
            .filter(|e| e.3.is_none())
            .map(|e| (e.1, e.2))
            .collect();
        frame_events.sort();
        assert_eq!(
            frame_events,
            vec![
                ("object_entered", 1),
                ("object_entered", 2),
                ("object_left", 1),
                ("object_left", 2)
            ],
            "seed {seed}"
        );
    }
}

#[test]
fn a_parcel_left_behind_becomes_stationary_once() {
    let config = SceneConfig {
        tracking: TrackingConfig {
            stationary_frames: 20,
            ..tracking()
        },
        ..SceneConfig::default()
    };
    // Carried in for 10 frames, then put down.
    let carried = Actor {
        size: [30.0, 30.0],
        ..Actor::walking(2, [100.0, 300.0], [10.0, 0.0], 0..10)
    };
    let put_down = Actor {
        size: [30.0, 30.0],
        ..Actor::walking(2, [200.0, 300.0], [0.0, 0.0], 10..80)
    };
    // One actor for the tracker: the two halves of one trajectory.
    let mut scene = Scene::new(&config, &labels()).expect("scene");
    let mut rng = fastrand::Rng::with_seed(5);
    let mut updates = Vec::new();
    for seq in 0..80 {
        let noise = Noise {
            seed: 5,
            jitter: 1.5,
            drop: 0.0,
        };
        let (_, mut detections): (Vec<usize>, Vec<DetectionRecord>) =
            detect(&[carried.clone(), put_down.clone()], seq, &noise, &mut rng)
                .into_iter()
                .unzip();
        for e in scene
            .update(seq, [640, 480], &mut detections)
            .expect("update")
        {
            if e.kind == ObjectEventKind::ObjectUpdated {
                updates.push((seq, e.track_id, e.stationary));
            }
        }
    }
    // Put down at frame 10, its centre 10 px (stationary_px) from the last carried one, so the
    // jitter decides whether it settles at frame 10, 11 or 12: stationary 20 frames later, once.
    assert_eq!(updates.len(), 1, "{updates:?}");
    let (seq, id, stationary) = updates[0];
    assert!(
        (30..=32).contains(&seq) && id == 1 && stationary,
        "{updates:?}"
    );
    assert!(scene.objects()[0].stationary);
}

#[test]
fn masked_detections_are_dropped_before_tracking() {
    let config = SceneConfig {
        tracking: tracking(),
        masks: vec![MaskConfig {
            points: vec![[0.0, 350.0], [640.0, 350.0], [640.0, 480.0], [0.0, 480.0]],
            labels: vec!["car".into()],
            anchor: Anchor::BottomCenter,
        }],
        ..SceneConfig::default()
    };
    let (_, actors) = driveway_scene();
    let result = run(
        &config,
        &actors,
        30,
        &Noise {
            seed: 2,
            jitter: 1.0,
            drop: 0.0,
        },
    );
    // The car drives inside the mask: only the person is an object.
    assert_eq!(
        summary(&result)
            .iter()
            .map(|e| (e.1, e.2))
            .collect::<Vec<_>>(),
        vec![("object_entered", 1), ("object_left", 1)]
    );
    assert_eq!(result.events[0].1.label, "person");
}

#[test]
fn zones_that_do_not_fit_the_model_or_frame_are_named() {
    let config = SceneConfig {
        zones: vec![zone(
            "porch",
            vec![[0.0, 0.0], [700.0, 0.0], [700.0, 100.0]],
            &["dog"],
        )],
        ..SceneConfig::default()
    };
    let err = Scene::new(&config, &labels()).expect_err("dog");
    assert_eq!(
        err.to_string(),
        "zones[0] (porch): label \"dog\" is not one of the model's labels (person, car, parcel)"
    );
    let config = SceneConfig {
        zones: vec![zone(
            "porch",
            vec![[0.0, 0.0], [700.0, 0.0], [700.0, 100.0]],
            &[],
        )],
        ..SceneConfig::default()
    };
    let mut scene = Scene::new(&config, &labels()).expect("scene");
    let err = scene
        .update(0, [640, 480], &mut Vec::new())
        .expect_err("outside");
    assert!(
        err.to_string()
            .starts_with("zones[0] (porch): points[1] [700, 0] is outside the 640x480 frame"),
        "{err}"
    );
    // A larger frame holds it.
    assert!(scene.update(0, [800, 600], &mut Vec::new()).is_ok());
}

/// Five people walking across a 640x480 frame in different directions, two of them crossing,
/// one hidden behind a pillar for 6 frames; detections jittered by up to 3 px and dropped in
/// 10 % of frames, over 30 seeds: the counts a tracker is judged by.
#[test]
fn a_busy_scene_is_tracked_without_identity_switches() {
    let mut actors = vec![
        Actor::walking(0, [0.0, 100.0], [6.0, 0.5], 0..100),
        Actor::walking(0, [600.0, 110.0], [-6.0, 0.0], 0..100),
        Actor::walking(0, [300.0, 0.0], [0.0, 3.5], 10..110),
        Actor::walking(0, [100.0, 380.0], [4.0, -1.0], 20..120),
        Actor {
            size: [60.0, 40.0],
            ..Actor::walking(1, [500.0, 300.0], [-3.0, 0.0], 0..120)
        },
    ];
    actors[3].hidden = Some(60..66);
    let config = SceneConfig {
        tracking: tracking(),
        ..SceneConfig::default()
    };
    let (mut switches, mut fragments, mut extra) = (0, 0, 0);
    for seed in 0..30 {
        let result = run(
            &config,
            &actors,
            120,
            &Noise {
                seed,
                jitter: 3.0,
                drop: 0.1,
            },
        );
        switches += result.id_switches;
        fragments += result.fragmentations;
        assert!(
            result.ids_of.iter().all(|ids| !ids.is_empty()),
            "seed {seed}: someone was never tracked"
        );
        extra += result.ids_of.iter().map(|ids| ids.len() - 1).sum::<usize>();
        assert_eq!(result.shared_ids, 0, "seed {seed}: one id on two people");
    }
    // The tally over 30 runs of 5 objects: 0 identity switches, 0 fragmented tracks, 0 objects
    // given a second id.
    assert_eq!((switches, fragments, extra), (0, 0, 0));
}

/// The scene across model switches: the same labels keep the objects; other labels end them
/// under the model replaced and go on numbering; a model without boxes idles the scene.
#[test]
fn a_scene_run_follows_model_switches() {
    let manifest = |version: &str, labels: &[&str]| {
        let mut m =
            crate::manifest::Manifest::load(std::path::Path::new("models/shapes-detector.toml"))
                .expect("manifest");
        m.version = version.into();
        m.labels = labels.iter().map(|l| l.to_string()).collect();
        m
    };
    let shapes = ["circle", "square", "triangle"];
    let v1 = manifest("1.0.0", &shapes);
    let config = SceneConfig {
        tracking: TrackingConfig {
            min_hits: 1,
            ..tracking()
        },
        ..SceneConfig::default()
    };
    let mut run = SceneRun::start(&config, &v1)
        .expect("start")
        .expect("tracks");
    let record = |model: &crate::manifest::Manifest, seq: u64| FrameRecord {
        seq,
        timestamp: "2026-12-06T00:00:00.000Z".into(),
        model: model.id(),
        frame: format!("camera-{seq}"),
        frame_size: [640, 480],
        latency_ms: Default::default(),
        classes: None,
        detections: Some(vec![person_at([100.0, 100.0, 140.0, 180.0], 0.9)]),
        outputs: None,
        values: None,
        zones: None,
        health: None,
    };
    let observed = |run: &mut SceneRun, model: &crate::manifest::Manifest, seq: u64| {
        let mut r = record(model, seq);
        run.observe(&mut r).expect("observe");
        r.detections.expect("detections")[0].track_id
    };
    assert_eq!(observed(&mut run, &v1, 0), Some(1));
    assert_eq!(run.take_events()[0].event, "object_entered");
    // Same labels, another version: the object goes on under its id, nothing is told.
    let v2 = manifest("2.0.0", &shapes);
    run.follow(&v2);
    assert!(run.take_switch_events().is_empty());
    assert_eq!(observed(&mut run, &v2, 1), Some(1));
    // A record of the replaced model, finished after the switch, is left alone.
    assert_eq!(observed(&mut run, &v1, 2), None);
    // Other labels: the object leaves, told under the model replaced; ids go on from 2.
    let v3 = manifest("3.0.0", &["square", "circle", "triangle"]);
    run.follow(&v3);
    let left = run.take_switch_events();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].event.as_str(), left[0].source.as_str()),
        ("object_left", "shapes-detector@2.0.0")
    );
    assert_eq!(observed(&mut run, &v3, 3), Some(2));
    // A classifier: the scene idles with scene_off, then a detector again starts it anew.
    let mut classifier =
        crate::manifest::Manifest::load(std::path::Path::new("models/shapes-classifier.toml"))
            .expect("classifier");
    classifier.labels = shapes.iter().map(|l| l.to_string()).collect();
    run.follow(&classifier);
    let events: Vec<String> = run
        .take_switch_events()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events, ["object_left", "scene_off"]);
    assert!(run.scene().is_none());
    assert!(run
        .status()
        .starts_with("tracking off while shapes-classifier@"));
    run.follow(&v1);
    assert_eq!(observed(&mut run, &v1, 4), Some(3));
    // Started on a classifier: idle from the start, with the reason told first.
    let idle = SceneRun::start(&config, &classifier)
        .expect("start")
        .expect("tracks");
    assert!(idle.scene().is_none());
}
