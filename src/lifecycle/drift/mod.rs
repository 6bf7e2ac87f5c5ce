//! On-device drift monitoring: are the frames, and the model's answers, still like the ones
//! the model was judged on?
//!
//! The model's manifest carries a reference profile (`[profile]`, written by `lookout
//! profile`). The monitor counts the same statistics ([`stats::Tally`]) over windows of
//! `window_frames` frames, one window after another, and at the end of each window computes the
//! Population Stability Index of every statistic against the reference: brightness, red, green
//! and blue levels, sharpness, the best score per frame, the class mix and (detectors) the
//! detections per frame.
//!
//! One odd window proves nothing (a cloud, a person in front of the lens), so a statistic is
//! declared drifting only after `windows_to_alarm` windows in a row at or over `alarm_psi`, and
//! back to normal only after `windows_to_clear` windows in a row under `clear_psi`; between the
//! two thresholds it keeps its state. Each change is an event on the sinks:
//!
//! ```json
//! {"event":"drift","timestamp":"…","source":"shapes-detector@2.1.0","message":"…",
//!  "stat":"brightness","psi":0.8124,"threshold":0.25,"window":[1800,2699]}
//! ```
//!
//! and `drift_cleared` when it is over. The console's `status` shows the last window's values.

pub mod stats;

pub use crate::board::DriftConfig;

use crate::frames::preprocess::ImageView;
use crate::manifest::Profile;
use crate::results::record::{format_timestamp, DriftDetail, EventRecord, FrameRecord};
use stats::{psi, Tally};
use std::fmt::Write as _;

/// A statistic the monitor compares with the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Luma levels of the pixels.
    Brightness,
    /// Red levels.
    Red,
    /// Green levels.
    Green,
    /// Blue levels.
    Blue,
    /// Mean gradient per frame.
    Sharpness,
    /// Best score per frame.
    TopScore,
    /// Share of each label in what was reported.
    Classes,
    /// Detections per frame.
    Detections,
}

impl Stat {
    const ALL: [Stat; 8] = [
        Stat::Brightness,
        Stat::Red,
        Stat::Green,
        Stat::Blue,
        Stat::Sharpness,
        Stat::TopScore,
        Stat::Classes,
        Stat::Detections,
    ];

    /// The name in events and `status`.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Brightness => "brightness",
            Stat::Red => "red",
            Stat::Green => "green",
            Stat::Blue => "blue",
            Stat::Sharpness => "sharpness",
            Stat::TopScore => "top_score",
            Stat::Classes => "classes",
            Stat::Detections => "detections",
        }
    }

    /// This statistic's histogram in a profile (empty when the profile does not have it).
    fn of(self, profile: &Profile) -> &[f64] {
        match self {
            Stat::Brightness => &profile.brightness,
            Stat::Red => &profile.red,
            Stat::Green => &profile.green,
            Stat::Blue => &profile.blue,
            Stat::Sharpness => &profile.sharpness,
            Stat::TopScore => &profile.top_score,
            Stat::Classes => &profile.class_share,
            Stat::Detections => &profile.detections,
        }
    }
}

/// One statistic's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    /// Which statistic.
    pub stat: Stat,
    /// PSI of the last window; `None` before the first or when the window had nothing to
    /// compare (no class reported, say).
    pub psi: Option<f64>,
    /// Windows in a row at or over the alarm threshold.
    over: u32,
    /// Windows in a row under the clear threshold.
    under: u32,
    /// Declared drifting.
    pub drifting: bool,
}

/// Watches one model's frames for drift against its reference profile.
#[derive(Debug, Clone)]
pub struct DriftMonitor {
    config: DriftConfig,
    reference: Profile,
    model: String,
    window: Tally,
    /// Frames offered, counted or not.
    offered: u64,
    /// Sequence numbers of the first and last frame in the current window.
    span: Option<(u64, u64)>,
    windows: u64,
    watches: Vec<Watch>,
    events: Vec<EventRecord>,
}

impl DriftMonitor {
    /// A monitor for model `model` (`name@version`) with `labels` labels against its
    /// reference profile. Statistics the profile lacks (older profiles have no colour
    /// histograms) are not watched.
    pub fn new(
        config: DriftConfig,
        reference: Profile,
        model: String,
        labels: usize,
        detector: bool,
    ) -> Self {
        let watches = Stat::ALL
            .into_iter()
            .filter(|s| stat_has_mass(s.of(&reference)))
            .map(|stat| Watch {
                stat,
                psi: None,
                over: 0,
                under: 0,
                drifting: false,
            })
            .collect();
        Self {
            config,
            reference,
            model,
            window: Tally::new(labels, detector),
            offered: 0,
            span: None,
            windows: 0,
            watches,
            events: Vec::new(),
        }
    }

    /// Offers one frame: `view` is what the model saw, `record` what it reported. Counts it
    /// when it is due (`sample_every`), and closes the window when it is full.
    pub fn observe(&mut self, view: &ImageView<'_>, record: &FrameRecord) {
        self.offered += 1;
        if !(self.offered - 1).is_multiple_of(self.config.sample_every) {
            return;
        }
        self.window.add(view, record);
        self.span = Some(match self.span {
            Some((first, _)) => (first, record.seq),
            None => (record.seq, record.seq),
        });
        if self.window.frames() >= self.config.window_frames {
            self.close_window();
        }
    }

    fn close_window(&mut self) {
        let current = self.window.to_profile(String::new());
        let span = self.span.take().unwrap_or_default();
        self.window.clear();
        self.windows += 1;
        let c = &self.config;
        for w in &mut self.watches {
            w.psi = psi(w.stat.of(&self.reference), w.stat.of(&current));
            let Some(value) = w.psi else { continue };
            if value >= c.alarm_psi {
                (w.over, w.under) = (w.over + 1, 0);
            } else if value < c.clear_psi {
                (w.over, w.under) = (0, w.under + 1);
            } else {
                (w.over, w.under) = (0, 0);
            }
            let (event, threshold, windows, message) =
                if !w.drifting && w.over >= c.windows_to_alarm {
                    let m = format!(
                        "{} PSI {value:.3} at or over {} for {} windows of {} frames",
                        w.stat.name(),
                        c.alarm_psi,
                        w.over,
                        c.window_frames
                    );
                    ("drift", c.alarm_psi, w.over, m)
                } else if w.drifting && w.under >= c.windows_to_clear {
                    let m = format!(
                        "{} PSI {value:.3} under {} for {} windows: back to normal",
                        w.stat.name(),
                        c.clear_psi,
                        w.under
                    );
                    ("drift_cleared", c.clear_psi, w.under, m)
                } else {
                    continue;
                };
            w.drifting = event == "drift";
            self.events.push(EventRecord {
                event: event.into(),
                timestamp: format_timestamp(std::time::SystemTime::now()),
                source: self.model.clone(),
                message,
                drift: Some(DriftDetail {
                    stat: w.stat.name().into(),
                    psi: (value * 1e4).round() / 1e4,
                    threshold,
                    windows,
                    window: [span.0, span.1],
                }),
                object: None,
            });
        }
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<EventRecord> {
        std::mem::take(&mut self.events)
    }

    /// The statistics watched and their state.
    pub fn watches(&self) -> &[Watch] {
        &self.watches
    }

    /// Whether any statistic is declared drifting.
    pub fn drifting(&self) -> bool {
        self.watches.iter().any(|w| w.drifting)
    }

    /// Windows closed so far.
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// The settings.
    pub fn config(&self) -> &DriftConfig {
        &self.config
    }

    /// Two lines for the console's `status`: the last window's PSI per statistic, and which
    /// are drifting.
    pub fn status(&self) -> String {
        let mut out = format!(
            "drift: {} windows of {} frames, {} in the current one;",
            self.windows,
            self.config.window_frames,
            self.window.frames()
        );
        for w in &self.watches {
            match w.psi {
                Some(p) => {
                    let _ = write!(out, " {} {p:.3}", w.stat.name());
                }
                None => {
                    let _ = write!(out, " {} -", w.stat.name());
                }
            }
        }
        let drifting: Vec<&str> = self
            .watches
            .iter()
            .filter(|w| w.drifting)
            .map(|w| w.stat.name())
            .collect();
        let _ = write!(
            out,
            "\ndrifting: {}",
            if drifting.is_empty() {
                "none".to_owned()
            } else {
                drifting.join(", ")
            }
        );
        out
    }
}

/// Whether a reference histogram has anything in it to compare with.
fn stat_has_mass(values: &[f64]) -> bool {
    values.iter().sum::<f64>() > 0.0
}

#[cfg(test)]
mod tests {
    use super::stats::tests::{det, record};
    use super::*;
    use image::RgbImage;

    /// A reference made of `frames` frames of `image` with one detection of class 0 at 0.9.
    fn reference(image: &RgbImage, frames: usize) -> Profile {
        let mut t = Tally::new(2, true);
        for _ in 0..frames {
            t.add(
                &ImageView::of(image),
                &record(None, Some(vec![det(0, 0.9)])),
            );
        }
        t.to_profile("test".into())
    }

    fn scene(level: u8) -> RgbImage {
        RgbImage::from_fn(32, 24, |x, y| {
            image::Rgb([level.saturating_add(((x * 7 + y * 3) % 40) as u8); 3])
        })
    }

    fn monitor(config: DriftConfig) -> DriftMonitor {
        DriftMonitor::new(config, reference(&scene(100), 10), "m@1".into(), 2, true)
    }

    fn feed(m: &mut DriftMonitor, image: &RgbImage, frames: u64, seq: &mut u64) {
        for _ in 0..frames {
            let mut r = record(None, Some(vec![det(0, 0.9)]));
            r.seq = *seq;
            *seq += 1;
            m.observe(&ImageView::of(image), &r);
        }
    }

    #[test]
    fn a_lasting_shift_alarms_after_the_windows_in_a_row_and_clears_the_same_way() {
        let config = DriftConfig {
            window_frames: 10,
            windows_to_alarm: 2,
            windows_to_clear: 2,
            ..DriftConfig::default()
        };
        let mut m = monitor(config);
        let mut seq = 0;
        feed(&mut m, &scene(100), 50, &mut seq);
        assert!(
            m.take_events().is_empty(),
            "the reference scene does not drift"
        );
        assert_eq!(m.windows(), 5);
        assert!(
            m.watches().iter().all(|w| w.psi == Some(0.0)),
            "{:?}",
            m.watches()
        );

        // Darker: one window over the threshold is not enough, the second is.
        feed(&mut m, &scene(20), 10, &mut seq);
        assert!(m.take_events().is_empty());
        feed(&mut m, &scene(20), 10, &mut seq);
        let events = m.take_events();
        let names: Vec<&str> = events
            .iter()
            .map(|e| e.drift.as_ref().expect("detail").stat.as_str())
            .collect();
        assert!(names.contains(&"brightness"), "{names:?}");
        assert!(!names.contains(&"top_score"), "the answers did not change");
        let brightness = events
            .iter()
            .find(|e| e.drift.as_ref().is_some_and(|d| d.stat == "brightness"))
            .expect("brightness");
        assert_eq!(brightness.event, "drift");
        let d = brightness.drift.as_ref().expect("detail");
        assert_eq!(d.window, [60, 69], "the second dark window");
        assert!(d.psi > 0.25, "{d:?}");
        assert!(
            m.status().contains("drifting: brightness"),
            "{}",
            m.status()
        );

        // Staying dark raises nothing new; going back clears after two normal windows.
        feed(&mut m, &scene(20), 30, &mut seq);
        assert!(m.take_events().is_empty());
        feed(&mut m, &scene(100), 10, &mut seq);
        assert!(m.take_events().is_empty());
        feed(&mut m, &scene(100), 10, &mut seq);
        let cleared = m.take_events();
        assert!(
            cleared.iter().all(|e| e.event == "drift_cleared") && !cleared.is_empty(),
            "{cleared:?}"
        );
        assert!(m.status().contains("drifting: none"));
    }

    #[test]
    fn one_odd_window_between_normal_ones_raises_nothing() {
        let config = DriftConfig {
            window_frames: 10,
            windows_to_alarm: 2,
            ..DriftConfig::default()
        };
        let mut m = monitor(config);
        let mut seq = 0;
        for _ in 0..5 {
            feed(&mut m, &scene(100), 10, &mut seq);
            feed(&mut m, &scene(20), 10, &mut seq);
        }
        assert!(m.take_events().is_empty());
        let brightness = &m.watches()[0];
        assert_eq!(brightness.stat, Stat::Brightness);
        assert!(
            brightness.psi.expect("psi") > 0.25,
            "the odd windows were seen"
        );
    }

    #[test]
    fn sampling_counts_one_frame_in_n() {
        let config = DriftConfig {
            window_frames: 10,
            sample_every: 3,
            ..DriftConfig::default()
        };
        let mut m = monitor(config);
        let mut seq = 0;
        // Frames 1, 4, ..., 25 are counted: nine.
        feed(&mut m, &scene(100), 27, &mut seq);
        assert_eq!(m.windows(), 0);
        feed(&mut m, &scene(100), 1, &mut seq);
        assert_eq!(m.windows(), 1);
    }

    #[test]
    fn statistics_missing_from_an_old_profile_are_not_watched() {
        let mut old = reference(&scene(100), 3);
        old.red.clear();
        old.sharpness.clear();
        let m = DriftMonitor::new(DriftConfig::default(), old, "m@1".into(), 2, true);
        let watched: Vec<&str> = m.watches().iter().map(|w| w.stat.name()).collect();
        assert_eq!(
            watched,
            [
                "brightness",
                "green",
                "blue",
                "top_score",
                "classes",
                "detections"
            ]
        );
    }

    #[test]
    fn bad_settings_name_their_field() {
        let bad = |f: fn(&mut DriftConfig)| {
            let mut c = DriftConfig::default();
            f(&mut c);
            // As the board profile names it: the table, then the field.
            match c
                .check()
                .expect_err("bad")
                .in_file(std::path::Path::new("b.toml"), "drift")
            {
                lookout_contract::ConfigError::Invalid { field, .. } => field,
                other => panic!("{other}"),
            }
        };
        assert_eq!(bad(|c| c.window_frames = 0), "drift.window_frames");
        assert_eq!(bad(|c| c.sample_every = 0), "drift.sample_every");
        assert_eq!(bad(|c| c.alarm_psi = f64::NAN), "drift.alarm_psi");
        assert_eq!(bad(|c| c.clear_psi = 0.5), "drift.clear_psi");
        assert_eq!(bad(|c| c.windows_to_alarm = 0), "drift.windows_to_alarm");
        assert_eq!(bad(|c| c.windows_to_clear = 0), "drift.windows_to_clear");
        assert_eq!(DriftConfig::default().check(), Ok(()));
    }
}
