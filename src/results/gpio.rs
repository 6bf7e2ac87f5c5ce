//! GPIO: lines driven by what the model sees.
//!
//! [`GpioRules`] is the rule engine, generic over `embedded_hal::digital::OutputPin`, so the
//! same code drives a board's character-device lines ([`open_header_lines`], through
//! `linux-embedded-hal`'s `CdevPin`) and `embedded-hal-mock` pins in the tests. Time is passed
//! in, never read, so a test can script exactly when each frame arrives.
//!
//! A rule (`[[gpio.rules]]` in the board profile, or a rules file) sets its line active while
//! its label is seen at or above `min_score` (or, with `zone`, while an object of its label is
//! present in that zone), keeps it active `hold_ms` after the last such
//! frame, and will not start a new activation sooner than `min_interval_ms` after the previous
//! one started. The optional heartbeat line changes level every half period while frames
//! arrive. Every line starts inactive, and is set inactive again when lookout stops.
//!
//! The chip is found by its label (`pinctrl-rp1`, `pinctrl-bcm2711`, ...), never by its
//! `/dev/gpiochipN` number, which changed between kernels on the Pi 5.

use crate::board::{GpioDefaults, GpioRule, Heartbeat, ZoneConfig};
use crate::results::record::FrameRecord;
use crate::results::sink::{Sink, SinkError};
use embedded_hal::digital::OutputPin;
use std::path::Path;
use std::time::{Duration, Instant};

/// Errors setting up or driving GPIO lines.
#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    /// A rule names a label the model does not have.
    #[error("gpio rules[{index}].when: {label:?} is not one of the model's labels ({labels})")]
    UnknownLabel {
        /// Index of the rule.
        index: usize,
        /// The label given.
        label: String,
        /// The model's labels, comma-separated.
        labels: String,
    },
    /// A rule names a zone that is not defined.
    #[error("gpio rules[{index}].zone: {zone:?} is not one of the zones ({zones})")]
    UnknownZone {
        /// Index of the rule.
        index: usize,
        /// The zone given.
        zone: String,
        /// The zones defined, comma-separated, or "none defined".
        zones: String,
    },
    /// A rule's zone does not report the rule's label, so the rule could never fire.
    #[error(
        "gpio rules[{index}].when: zone {zone:?} reports only {labels}, not {label:?}: add it to \
         the zone's labels"
    )]
    ZoneIgnoresLabel {
        /// Index of the rule.
        index: usize,
        /// The zone.
        zone: String,
        /// The rule's label.
        label: String,
        /// The zone's labels, comma-separated.
        labels: String,
    },
    /// No chip has the label.
    #[error("no GPIO chip labelled {label:?}; found: {found}. Check [gpio] chip_label in the board profile (gpiodetect lists the chips)")]
    ChipNotFound {
        /// The label looked for.
        label: String,
        /// What there is.
        found: String,
    },
    /// The chip or line cannot be opened or driven.
    #[error("{what}: {message}")]
    Device {
        /// The chip and line.
        what: String,
        /// The driver's message.
        message: String,
    },
    /// The `--sink gpio...` text is not understood, or there is nothing to drive.
    #[error("--sink {spec}: {message}")]
    Spec {
        /// What was given.
        spec: String,
        /// What is wrong.
        message: String,
    },
    /// A rules file cannot be read, parsed or is inconsistent.
    #[error(transparent)]
    RulesFile(#[from] lookout_contract::ConfigError),
}

/// A GPIO operation's result.
pub type Result<T> = std::result::Result<T, GpioError>;

/// Refuses rules for zones the run does not have (`zones`: its zones), or for a label their
/// zone does not report, naming the rule.
pub fn check_zones(config: &GpioDefaults, zones: &[ZoneConfig]) -> Result<()> {
    for (index, rule) in config.rules.iter().enumerate() {
        let Some(name) = &rule.zone else { continue };
        let Some(zone) = zones.iter().find(|z| &z.name == name) else {
            return Err(GpioError::UnknownZone {
                index,
                zone: name.clone(),
                zones: if zones.is_empty() {
                    "none defined: [[zones]] in the board profile or --zones FILE".into()
                } else {
                    zones
                        .iter()
                        .map(|z| z.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        };
        if !zone.labels.is_empty() && !zone.labels.contains(&rule.when) {
            return Err(GpioError::ZoneIgnoresLabel {
                index,
                zone: name.clone(),
                label: rule.when.clone(),
                labels: zone.labels.join(", "),
            });
        }
    }
    Ok(())
}

/// Refuses rules for labels the model does not have, naming the rule.
pub fn check_labels(config: &GpioDefaults, labels: &[String]) -> Result<()> {
    for (index, rule) in config.rules.iter().enumerate() {
        if !labels.iter().any(|l| l == &rule.when) {
            return Err(GpioError::UnknownLabel {
                index,
                label: rule.when.clone(),
                labels: labels.join(", "),
            });
        }
    }
    Ok(())
}

struct RuleState {
    rule: GpioRule,
    active: bool,
    /// When the line goes inactive unless the label is seen again.
    until: Duration,
    /// When the current or last activation started.
    started: Option<Duration>,
}

impl RuleState {
    /// Drives this rule's line to `active` (honouring active_low) and remembers it.
    fn drive<P: OutputPin>(&mut self, pin: &mut P, active: bool) -> Result<()> {
        level(
            pin,
            active,
            self.rule.active_low,
            &format!("line {}", self.rule.pin),
        )?;
        self.active = active;
        Ok(())
    }
}

/// The rule engine over any output pins.
pub struct GpioRules<P: OutputPin> {
    rules: Vec<(RuleState, P)>,
    heartbeat: Option<(Heartbeat, P, bool, Duration)>,
}

fn level<P: OutputPin>(pin: &mut P, active: bool, active_low: bool, what: &str) -> Result<()> {
    let high = active != active_low;
    let result = if high { pin.set_high() } else { pin.set_low() };
    result.map_err(|e| GpioError::Device {
        what: what.to_owned(),
        message: format!("{e:?}"),
    })
}

impl<P: OutputPin> GpioRules<P> {
    /// Takes one pin per rule (same order) and one for the heartbeat, and sets them all
    /// inactive. `labels` are the model's: a rule for a label it does not have is refused.
    pub fn new(
        config: &GpioDefaults,
        labels: &[String],
        rule_pins: Vec<P>,
        heartbeat_pin: Option<P>,
    ) -> Result<Self> {
        check_labels(config, labels)?;
        let mut rules = Vec::new();
        for (rule, mut pin) in config.rules.iter().cloned().zip(rule_pins) {
            level(
                &mut pin,
                false,
                rule.active_low,
                &format!("line {}", rule.pin),
            )?;
            rules.push((
                RuleState {
                    rule,
                    active: false,
                    until: Duration::ZERO,
                    started: None,
                },
                pin,
            ));
        }
        let heartbeat = match (config.heartbeat.clone(), heartbeat_pin) {
            (Some(h), Some(mut pin)) => {
                level(&mut pin, false, h.active_low, &format!("line {}", h.pin))?;
                Some((h, pin, false, Duration::ZERO))
            }
            _ => None,
        };
        Ok(Self { rules, heartbeat })
    }

    /// Applies one frame's results, seen at `now` (time since start).
    pub fn on_frame(&mut self, record: &FrameRecord, now: Duration) -> Result<()> {
        // Holds that ran out since the last call end first, so a sighting after a gap starts a
        // new activation (subject to min_interval) instead of extending a stale one.
        self.expire(now)?;
        for (state, pin) in &mut self.rules {
            let rule = &state.rule;
            let seen =
                match &rule.zone {
                    Some(zone) => record.zones.iter().flatten().any(|z| {
                        z.zone == *zone && z.labels.get(&rule.when).is_some_and(|&n| n > 0)
                    }),
                    None => record
                        .detections
                        .iter()
                        .flatten()
                        .map(|d| (&d.label, d.score))
                        .chain(record.classes.iter().flatten().map(|c| (&c.label, c.score)))
                        .any(|(label, score)| *label == rule.when && score >= rule.min_score),
                };
            let hold = Duration::from_millis(rule.hold_ms);
            if seen && state.active {
                state.until = now + hold;
            } else if seen {
                let spacing = Duration::from_millis(rule.min_interval_ms);
                if state.started.is_none_or(|t| now >= t + spacing) {
                    state.drive(pin, true)?;
                    state.started = Some(now);
                    state.until = now + hold;
                }
            }
        }
        self.expire(now)?;
        if let Some((h, pin, on, last)) = &mut self.heartbeat {
            let half = Duration::from_millis(h.period_ms / 2);
            if now >= *last + half {
                *on = !*on;
                *last = now;
                level(pin, *on, h.active_low, &format!("line {}", h.pin))?;
            }
        }
        Ok(())
    }

    /// Ends holds that have run out by `now`, with or without a frame.
    pub fn expire(&mut self, now: Duration) -> Result<()> {
        for (state, pin) in &mut self.rules {
            if state.active && now >= state.until {
                state.drive(pin, false)?;
            }
        }
        Ok(())
    }

    /// Sets every line inactive (at exit).
    pub fn release(&mut self) -> Result<()> {
        for (state, pin) in &mut self.rules {
            state.drive(pin, false)?;
        }
        if let Some((h, pin, on, _)) = &mut self.heartbeat {
            *on = false;
            level(pin, false, h.active_low, &format!("line {}", h.pin))?;
        }
        Ok(())
    }
}

/// Opens the lines of `config` on the chip labelled `config.chip_label`, as outputs owned by
/// "lookout", in the order [`GpioRules::new`] takes them.
pub fn open_header_lines(
    config: &GpioDefaults,
) -> Result<(
    Vec<linux_embedded_hal::CdevPin>,
    Option<linux_embedded_hal::CdevPin>,
)> {
    use linux_embedded_hal::gpio_cdev::{self, LineRequestFlags};
    let device = |what: String, e: gpio_cdev::Error| GpioError::Device {
        what,
        message: e.to_string(),
    };
    let mut found = Vec::new();
    let mut chosen = None;
    if let Ok(chips) = gpio_cdev::chips() {
        for chip in chips.flatten() {
            let label = chip.label().to_owned();
            found.push(format!("{} {label:?}", chip.path().display()));
            if label == config.chip_label && chosen.is_none() {
                chosen = Some(chip);
            }
        }
    }
    let Some(mut chip) = chosen else {
        return Err(GpioError::ChipNotFound {
            label: config.chip_label.clone(),
            found: if found.is_empty() {
                "no GPIO character devices (/dev/gpiochip*) on this machine".into()
            } else {
                found.join(", ")
            },
        });
    };
    let chip_name = chip.path().display().to_string();
    let mut open = |pin: u32| -> Result<linux_embedded_hal::CdevPin> {
        let what = format!("{chip_name} ({}) line {pin}", config.chip_label);
        let line = chip.get_line(pin).map_err(|e| device(what.clone(), e))?;
        // Requested at level 0; GpioRules::new then sets each line's inactive level.
        let handle = line
            .request(LineRequestFlags::OUTPUT, 0, "lookout")
            .map_err(|e| device(what.clone(), e))?;
        linux_embedded_hal::CdevPin::new(handle).map_err(|e| device(what, e))
    };
    let rules = config
        .rules
        .iter()
        .map(|r| open(r.pin))
        .collect::<Result<Vec<_>>>()?;
    let heartbeat = config.heartbeat.as_ref().map(|h| open(h.pin)).transpose()?;
    Ok((rules, heartbeat))
}

/// Opens `gpio` (the board profile's rules) or `gpio:RULES.toml` (`rest` is what follows
/// `gpio`) as a sink on the board's header lines, checking the rules against the model's
/// `labels` and the run's `zones` before any line is touched.
pub fn open_sink(
    spec: &str,
    rest: &str,
    board: &crate::board::Board,
    labels: &[String],
    zones: &[ZoneConfig],
) -> Result<GpioSink<linux_embedded_hal::CdevPin>> {
    let bad = |message: String| GpioError::Spec {
        spec: spec.to_owned(),
        message,
    };
    let config = match rest.strip_prefix(':') {
        None if rest.is_empty() => board.gpio.clone(),
        Some(path) if !path.is_empty() => {
            GpioDefaults::load_rules_file(Path::new(path), &board.gpio)?
        }
        _ => {
            return Err(bad(
                "expected `gpio` (rules from the board profile) or `gpio:RULES.toml`".into(),
            ))
        }
    };
    if config.rules.is_empty() && config.heartbeat.is_none() {
        return Err(bad(format!(
            "no GPIO rules: add [[gpio.rules]] to board {} or pass gpio:RULES.toml",
            board.name
        )));
    }
    check_labels(&config, labels)?;
    check_zones(&config, zones)?;
    let (pins, heartbeat) = open_header_lines(&config)?;
    let rules = GpioRules::new(&config, labels, pins, heartbeat)?;
    Ok(GpioSink::new(rules, config.chip_label))
}

/// The GPIO sink: every frame record goes through the rules; time is measured from when the
/// sink was made.
pub struct GpioSink<P: OutputPin> {
    rules: GpioRules<P>,
    started: Instant,
    chip: String,
}

impl<P: OutputPin> GpioSink<P> {
    /// A sink driving `rules`; `chip` names the chip in errors.
    pub fn new(rules: GpioRules<P>, chip: String) -> Self {
        Self {
            rules,
            started: Instant::now(),
            chip,
        }
    }

    fn error(&self, e: GpioError) -> SinkError {
        SinkError::Write {
            destination: format!("gpio {}", self.chip),
            source: std::io::Error::other(e.to_string()),
        }
    }
}

impl<P: OutputPin> Drop for GpioSink<P> {
    fn drop(&mut self) {
        // Whatever ended the run (an error, a signal that unwinds), lines go inactive.
        let _ = self.rules.release();
    }
}

impl<P: OutputPin> Sink for GpioSink<P> {
    fn emit(&mut self, record: &FrameRecord) -> std::result::Result<(), SinkError> {
        let now = self.started.elapsed();
        self.rules.on_frame(record, now).map_err(|e| self.error(e))
    }

    fn idle(&mut self) -> std::result::Result<(), SinkError> {
        let now = self.started.elapsed();
        self.rules.expire(now).map_err(|e| self.error(e))
    }

    fn flush(&mut self) -> std::result::Result<(), SinkError> {
        self.rules.release().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::record::{ClassRecord, DetectionRecord, StageLatency};
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};

    fn labels() -> Vec<String> {
        ["circle", "square", "triangle"].map(String::from).to_vec()
    }

    fn frame(seen: &[(&str, f32)]) -> FrameRecord {
        FrameRecord {
            seq: 0,
            timestamp: String::new(),
            model: "m@1".into(),
            frame: "f".into(),
            frame_size: [1, 1],
            latency_ms: StageLatency::default(),
            classes: None,
            detections: Some(
                seen.iter()
                    .map(|(label, score)| DetectionRecord {
                        label_id: 0,
                        label: (*label).into(),
                        score: *score,
                        bbox: [0.0; 4],
                        keypoints: None,
                        track_id: None,
                    })
                    .collect(),
            ),
            outputs: None,
            values: None,
            zones: None,
            health: None,
        }
    }

    fn rule(when: &str, pin: u32) -> GpioRule {
        GpioRule {
            when: when.into(),
            min_score: 0.5,
            pin,
            active_low: false,
            hold_ms: 500,
            min_interval_ms: 0,
            zone: None,
        }
    }

    fn config(rules: Vec<GpioRule>, heartbeat: Option<Heartbeat>) -> GpioDefaults {
        GpioDefaults {
            chip_label: "pinctrl-bcm2711".into(),
            rules,
            heartbeat,
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn hold_retrigger_and_debounce_give_exact_pin_sequences() {
        // Rule A: triangle >= 0.5 on line 17, hold 500 ms, at most one activation per 2 s.
        // Rule B: circle >= 0.8 on line 27, active low, hold 200 ms.
        let mut a = rule("triangle", 17);
        a.min_interval_ms = 2000;
        let mut b = rule("circle", 27);
        b.min_score = 0.8;
        b.active_low = true;
        b.hold_ms = 200;
        let mut pin_a = Mock::new(&[
            T::set(State::Low),  // start: inactive
            T::set(State::High), // t=0 triangle
            T::set(State::Low),  // t=900: held 500 ms after the last sighting at 300
            T::set(State::High), // t=2100: 2 s after the first activation
            T::set(State::Low),  // end of run
        ]);
        let mut pin_b = Mock::new(&[
            T::set(State::High), // start: inactive is high for active-low
            T::set(State::Low),  // t=300 circle 0.9
            T::set(State::High), // t=500: the 200 ms hold ran out (0.7 is below 0.8)
            T::set(State::High), // end of run
        ]);
        let mut rules = GpioRules::new(
            &config(vec![a, b], None),
            &labels(),
            vec![pin_a.clone(), pin_b.clone()],
            None,
        )
        .expect("rules");
        let script: &[(u64, &[(&str, f32)])] = &[
            (0, &[("triangle", 0.9)]),
            (100, &[("triangle", 0.4)]), // below min_score: no retrigger
            (300, &[("triangle", 0.6), ("circle", 0.9)]), // retrigger A, start B
            (500, &[("circle", 0.7)]),   // too weak for B
            (600, &[]),
            (900, &[]),                    // A expires (300 + 500)
            (1500, &[("triangle", 0.95)]), // debounced: only 1.5 s after t=0
            (2100, &[("triangle", 0.95)]), // allowed again
            (2200, &[("square", 1.0)]),
        ];
        for (t, seen) in script {
            rules.on_frame(&frame(seen), ms(*t)).expect("on_frame");
        }
        rules.release().expect("release");
        pin_a.done();
        pin_b.done();
    }

    #[test]
    fn a_sighting_after_the_hold_ran_out_is_a_new_activation() {
        // Frames further apart than hold_ms (slow inference): t=0 on, t=600 the hold (500) has
        // run out, and the new sighting is within min_interval (2000), so the line stays off.
        let mut r = rule("circle", 9);
        r.min_interval_ms = 2000;
        let mut pin = Mock::new(&[
            T::set(State::Low),
            T::set(State::High), // t=0
            T::set(State::Low),  // t=600: expired; the sighting is debounced
            T::set(State::High), // t=2000
            T::set(State::Low),  // release
        ]);
        let mut rules = GpioRules::new(&config(vec![r], None), &labels(), vec![pin.clone()], None)
            .expect("rules");
        for t in [0, 600, 2000] {
            rules
                .on_frame(&frame(&[("circle", 0.9)]), ms(t))
                .expect("frame");
        }
        rules.release().expect("release");
        pin.done();
    }

    #[test]
    fn holds_end_while_paused_and_classifiers_count() {
        let mut pin = Mock::new(&[T::set(State::Low), T::set(State::High), T::set(State::Low)]);
        let mut rules = GpioRules::new(
            &config(vec![rule("square", 5)], None),
            &labels(),
            vec![pin.clone()],
            None,
        )
        .expect("rules");
        let mut classified = frame(&[]);
        classified.detections = None;
        classified.classes = Some(vec![ClassRecord {
            label_id: 1,
            label: "square".into(),
            score: 0.7,
        }]);
        rules.on_frame(&classified, ms(0)).expect("frame");
        rules.expire(ms(499)).expect("still held");
        rules.expire(ms(500)).expect("expires without a frame");
        pin.done();
    }

    #[test]
    fn heartbeat_blinks_while_frames_come() {
        let hb = Heartbeat {
            pin: 4,
            period_ms: 1000,
            active_low: false,
        };
        let mut pin = Mock::new(&[
            T::set(State::Low),  // start
            T::set(State::High), // t=500
            T::set(State::Low),  // t=1000
            T::set(State::High), // t=1600
            T::set(State::Low),  // release
        ]);
        let mut rules = GpioRules::new(
            &config(vec![], Some(hb)),
            &labels(),
            vec![],
            Some(pin.clone()),
        )
        .expect("rules");
        for t in [0, 100, 500, 700, 1000, 1400, 1600] {
            rules.on_frame(&frame(&[]), ms(t)).expect("frame");
        }
        rules.release().expect("release");
        pin.done();
    }

    #[test]
    fn rules_for_unknown_labels_and_bad_fields_are_named() {
        let err = check_labels(
            &config(vec![rule("circle", 1), rule("hexagon", 2)], None),
            &labels(),
        )
        .expect_err("unknown label");
        assert_eq!(
            err.to_string(),
            "gpio rules[1].when: \"hexagon\" is not one of the model's labels (circle, square, triangle)"
        );
        let mut twice = config(vec![rule("circle", 3), rule("square", 3)], None);
        assert_eq!(
            twice.check().expect_err("same pin"),
            lookout_contract::FieldError::new("rules[1].pin", "line 3 is already rules[0].pin")
        );
        twice.rules[1].pin = 4;
        twice.rules[1].min_score = 1.5;
        assert_eq!(
            twice.check().expect_err("score").field,
            "rules[1].min_score"
        );
        twice.rules[1].min_score = 0.5;
        twice.heartbeat = Some(Heartbeat {
            pin: 4,
            period_ms: 1000,
            active_low: false,
        });
        assert_eq!(twice.check().expect_err("hb pin").field, "heartbeat.pin");
    }

    #[test]
    fn rules_files_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rules.toml");
        std::fs::write(
            &path,
            "[[rules]]\nwhen = \"triangle\"\npin = 17\nhold_ms = 1000\n\n[heartbeat]\npin = 4\n",
        )
        .expect("write");
        let board = config(vec![], None);
        let c = GpioDefaults::load_rules_file(&path, &board).expect("loads");
        assert_eq!(c.chip_label, "pinctrl-bcm2711");
        assert_eq!(
            (c.rules[0].pin, c.rules[0].hold_ms, c.rules[0].min_score),
            (17, 1000, 0.5)
        );
        assert_eq!(c.heartbeat.as_ref().map(|h| h.period_ms), Some(1000));
        std::fs::write(
            &path,
            "[[rules]]\nwhen = \"triangle\"\npin = 17\nhold = 3\n",
        )
        .expect("write");
        let err = GpioDefaults::load_rules_file(&path, &board)
            .expect_err("unknown field")
            .to_string();
        assert!(err.contains("rules.toml") && err.contains("hold"), "{err}");
    }

    #[test]
    fn no_chip_is_a_clear_error_here() {
        // This machine has no gpiochip (a board does): the error says what was looked for.
        if Path::new("/dev/gpiochip0").exists() {
            return;
        }
        let err = open_header_lines(&config(vec![rule("circle", 17)], None))
            .err()
            .expect("no chip")
            .to_string();
        assert!(
            err.contains("no GPIO chip labelled \"pinctrl-bcm2711\""),
            "{err}"
        );
        assert!(err.contains("no GPIO character devices"), "{err}");
    }

    #[test]
    fn a_zone_rule_follows_the_zone_s_presence_not_the_detections() {
        // Line 22: while a square is present in zone "door", hold 300 ms.
        let mut door = rule("square", 22);
        door.zone = Some("door".into());
        door.hold_ms = 300;
        let mut pin = Mock::new(&[
            T::set(State::Low),  // start: inactive
            T::set(State::High), // t=200: a square present in "door"
            T::set(State::Low),  // t=900: 300 ms after the last frame it was present (600)
            T::set(State::Low),  // end of run
        ]);
        let config = config(vec![door], None);
        let door = |labels: &[&str]| ZoneConfig {
            name: "door".into(),
            points: vec![[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]],
            labels: labels.iter().map(|l| l.to_string()).collect(),
            anchor: Default::default(),
        };
        check_zones(&config, &[door(&[])]).expect("door is a zone of every label");
        check_zones(&config, &[door(&["square"])]).expect("door reports squares");
        let err = check_zones(&config, &[door(&["circle"])]).expect_err("no squares");
        assert_eq!(
            err.to_string(),
            "gpio rules[0].when: zone \"door\" reports only circle, not \"square\": add it to the \
             zone's labels"
        );
        let err = check_zones(&config, &[]).expect_err("no zones");
        assert!(
            err.to_string()
                .starts_with("gpio rules[0].zone: \"door\" is not one of the zones (none defined"),
            "{err}"
        );
        let mut rules = GpioRules::new(&config, &labels(), vec![pin.clone()], None).expect("rules");
        let in_door = |labels: &[(&str, usize)]| {
            let mut f = frame(&[("square", 0.99)]);
            f.zones = Some(vec![crate::scene::ZoneCount {
                zone: "door".into(),
                count: labels.iter().map(|(_, n)| n).sum(),
                labels: labels.iter().map(|(l, n)| (l.to_string(), *n)).collect(),
            }]);
            f
        };
        let script: Vec<(u64, FrameRecord)> = vec![
            // A square detected but not (yet) present in the zone: nothing.
            (0, in_door(&[])),
            (100, in_door(&[("circle", 1)])),
            (200, in_door(&[("square", 1)])),
            (400, in_door(&[("square", 2), ("circle", 1)])),
            (600, in_door(&[("square", 1)])),
            (700, in_door(&[])),
            (900, in_door(&[])),
        ];
        for (t, record) in &script {
            rules.on_frame(record, ms(*t)).expect("on_frame");
        }
        rules.release().expect("release");
        pin.done();
    }
}
