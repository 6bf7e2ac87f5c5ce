//! Board health: the SoC's temperature and the firmware's throttling flags, so that a frame rate
//! that halves in a warm case has a reason on the sinks.
//!
//! A Raspberry Pi lowers its CPU clock when the SoC reaches its soft limit (60 °C on a Pi 4 with
//! default settings, from 80 °C on a Pi 5) or when the supply sags below 4.63 V (under-voltage):
//! a Pi 4 in a closed case without a heatsink throttles within minutes at full load. The kernel
//! says both in sysfs:
//! - `/sys/class/thermal/thermal_zone*/temp`: millidegrees Celsius; the SoC's zone has `type`
//!   `cpu-thermal` on Raspberry Pi OS (the first zone is taken where none has that type);
//! - `/sys/devices/platform/soc/soc:firmware/get_throttled`: the firmware's flags as hex, the
//!   same word as `vcgencmd get_throttled`: bit 0 under-voltage now, 1 ARM frequency capped now,
//!   2 throttled now, 3 soft temperature limit now; bits 16–19 the same "has occurred since
//!   boot".
//!
//! [`SysfsHealth`] reads them under a root folder (`/` on a board; a fake tree in tests, or
//! `LOOKOUT_SYSFS_ROOT`), behind the [`HealthSource`] trait. [`HealthMonitor`] reads every
//! [`READ_EVERY`] (two small files: time is passed in, so a frame costs a comparison between
//! reads) and raises `throttled` when any "now" flag comes on and `throttle_cleared` when all are
//! off again. Where neither file exists (a PC, a VM) there is nothing to report and nothing is
//! read again.

use crate::results::record::EventRecord;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the files are read.
pub const READ_EVERY: Duration = Duration::from_secs(5);

/// The firmware's throttling word (`get_throttled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Throttled(pub u32);

/// The "now" flags, with their names.
const NOW_FLAGS: [(u32, &str); 4] = [
    (1 << 0, "under-voltage"),
    (1 << 1, "frequency capped"),
    (1 << 2, "throttled"),
    (1 << 3, "soft temperature limit"),
];

impl Throttled {
    /// Whether any of the "now" flags (bits 0–3) is set.
    pub fn now(self) -> bool {
        self.0 & 0xF != 0
    }

    /// The "now" flags by name, `none` when there are none.
    pub fn describe_now(self) -> String {
        let names: Vec<&str> = NOW_FLAGS
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| *name)
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// The "has occurred since boot" flags (bits 16–19) by name.
    pub fn describe_occurred(self) -> String {
        Throttled(self.0 >> 16).describe_now()
    }
}

/// One reading; a part is `None` where the board does not say it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct HealthReading {
    /// The SoC's temperature in °C.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soc_temp_c: Option<f32>,
    /// The firmware's throttling word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled: Option<Throttled>,
}

impl HealthReading {
    /// Whether the board said anything at all.
    pub fn is_empty(&self) -> bool {
        self.soc_temp_c.is_none() && self.throttled.is_none()
    }
}

/// Where readings come from.
pub trait HealthSource {
    /// Reads the board now.
    fn read(&mut self) -> HealthReading;
}

/// The kernel's files under a root folder.
#[derive(Debug, Clone)]
pub struct SysfsHealth {
    root: PathBuf,
    /// The thermal zone's `temp` file, found on the first read.
    temp: Option<PathBuf>,
    searched: bool,
}

impl SysfsHealth {
    /// Reads the files under `root` (`/` on a board).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            temp: None,
            searched: false,
        }
    }

    /// The SoC's zone: `cpu-thermal` if a zone has that type, else the first.
    fn find_zone(root: &Path) -> Option<PathBuf> {
        let dir = root.join("sys/class/thermal");
        let mut zones: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("thermal_zone"))
            })
            .collect();
        zones.sort();
        let kind = |zone: &PathBuf| std::fs::read_to_string(zone.join("type")).unwrap_or_default();
        let zone = zones
            .iter()
            .find(|z| kind(z).trim() == "cpu-thermal")
            .or(zones.first())?;
        Some(zone.join("temp"))
    }
}

impl HealthSource for SysfsHealth {
    fn read(&mut self) -> HealthReading {
        if !self.searched {
            self.temp = Self::find_zone(&self.root);
            self.searched = true;
        }
        let soc_temp_c = self
            .temp
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| t.trim().parse::<i64>().ok())
            .map(|milli| milli as f32 / 1000.0);
        let throttled = std::fs::read_to_string(
            self.root
                .join("sys/devices/platform/soc/soc:firmware/get_throttled"),
        )
        .ok()
        .and_then(|t| {
            let t = t.trim();
            u32::from_str_radix(t.trim_start_matches("0x"), 16).ok()
        })
        .map(Throttled);
        HealthReading {
            soc_temp_c,
            throttled,
        }
    }
}

/// Reads the board now and then, and says when throttling starts and stops.
pub struct HealthMonitor {
    source: Box<dyn HealthSource>,
    every: Duration,
    last_read: Option<Instant>,
    reading: HealthReading,
    /// Whether the board gave anything on the first read: if not, it is not read again.
    says_anything: bool,
    throttling: bool,
    events: Vec<EventRecord>,
}

impl HealthMonitor {
    /// A monitor reading `source` every `every`.
    pub fn new(source: Box<dyn HealthSource>, every: Duration) -> Self {
        Self {
            source,
            every,
            last_read: None,
            reading: HealthReading::default(),
            says_anything: true,
            throttling: false,
            events: Vec::new(),
        }
    }

    /// The board's own files: under `LOOKOUT_SYSFS_ROOT` when set (a fake tree), else `/`.
    pub fn of_this_board() -> Self {
        let root = std::env::var_os("LOOKOUT_SYSFS_ROOT").unwrap_or_else(|| "/".into());
        Self::new(Box::new(SysfsHealth::new(root)), READ_EVERY)
    }

    /// Reads the board if `every` has passed since the last read (at `now`); returns the
    /// latest reading, `None` where the board says nothing.
    pub fn poll(&mut self, now: Instant) -> Option<HealthReading> {
        let due = self
            .last_read
            .is_none_or(|last| now.saturating_duration_since(last) >= self.every);
        if due && self.says_anything {
            self.last_read = Some(now);
            self.reading = self.source.read();
            if self.reading.is_empty() {
                // A PC or a VM: no thermal zone, no firmware. Nothing to watch.
                self.says_anything = false;
            }
            self.check_throttling();
        }
        (!self.reading.is_empty()).then_some(self.reading)
    }

    fn check_throttling(&mut self) {
        let Some(flags) = self.reading.throttled else {
            return;
        };
        let temp = match self.reading.soc_temp_c {
            Some(t) => format!(" at {t:.1} °C"),
            None => String::new(),
        };
        if flags.now() && !self.throttling {
            self.throttling = true;
            let message = format!(
                "the board slows itself: {}{temp} (get_throttled 0x{:x})",
                flags.describe_now(),
                flags.0
            );
            tracing::warn!("{message}");
            self.events
                .push(EventRecord::now("throttled", "board", message));
        } else if !flags.now() && self.throttling {
            self.throttling = false;
            let message = format!("full speed again{temp} (get_throttled 0x{:x})", flags.0);
            tracing::info!("{message}");
            self.events
                .push(EventRecord::now("throttle_cleared", "board", message));
        }
    }

    /// Events raised since the last call.
    pub fn take_events(&mut self) -> Vec<EventRecord> {
        std::mem::take(&mut self.events)
    }

    /// One line for the console's `status`; `None` where the board says nothing.
    pub fn status(&self) -> Option<String> {
        self.reading.status()
    }
}

impl HealthReading {
    /// One line for the console's `status`; `None` where the board says nothing. Made when
    /// someone asks, not at every frame.
    pub fn status(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let temp = match self.soc_temp_c {
            Some(t) => format!("SoC {t:.1} °C"),
            None => "SoC temperature unknown".into(),
        };
        Some(match self.throttled {
            Some(flags) => format!(
                "{temp}, slowed now: {}, since boot: {}",
                flags.describe_now(),
                flags.describe_occurred()
            ),
            None => temp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs tree: two thermal zones (the SoC's second), the firmware's word.
    fn tree(temp_milli: &str, throttled: Option<&str>) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let zone = |n: u32, kind: &str, temp: &str| {
            let dir = root
                .path()
                .join(format!("sys/class/thermal/thermal_zone{n}"));
            std::fs::create_dir_all(&dir).expect("zone");
            std::fs::write(dir.join("type"), format!("{kind}\n")).expect("type");
            std::fs::write(dir.join("temp"), format!("{temp}\n")).expect("temp");
        };
        zone(0, "rp1_adc", "30000");
        zone(1, "cpu-thermal", temp_milli);
        if let Some(word) = throttled {
            set_throttled(root.path(), word);
        }
        root
    }

    fn set_throttled(root: &Path, word: &str) {
        let dir = root.join("sys/devices/platform/soc/soc:firmware");
        std::fs::create_dir_all(&dir).expect("firmware");
        std::fs::write(dir.join("get_throttled"), format!("{word}\n")).expect("word");
    }

    #[test]
    fn the_soc_zone_and_the_firmware_word_are_read() {
        let root = tree("61234", Some("50005"));
        let reading = SysfsHealth::new(root.path()).read();
        assert_eq!(reading.soc_temp_c, Some(61.234));
        let flags = reading.throttled.expect("word");
        assert_eq!(flags, Throttled(0x50005));
        assert!(flags.now());
        assert_eq!(flags.describe_now(), "under-voltage, throttled");
        assert_eq!(flags.describe_occurred(), "under-voltage, throttled");
        // A board without the firmware file (not a Pi) still gives its temperature; a folder
        // without either gives nothing.
        let root = tree("45000", None);
        assert_eq!(
            SysfsHealth::new(root.path()).read(),
            HealthReading {
                soc_temp_c: Some(45.0),
                throttled: None
            }
        );
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(SysfsHealth::new(empty.path()).read().is_empty());
        // Garbage in the files is no reading, not a panic.
        let root = tree("hot", Some("0xzz"));
        assert!(SysfsHealth::new(root.path()).read().is_empty());
    }

    #[test]
    fn throttling_raises_one_event_when_it_starts_and_one_when_it_stops() {
        let root = tree("58000", Some("0"));
        let mut monitor = HealthMonitor::new(
            Box::new(SysfsHealth::new(root.path())),
            Duration::from_secs(5),
        );
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(monitor.poll(at(0)).and_then(|r| r.soc_temp_c), Some(58.0));
        assert!(monitor.take_events().is_empty());
        // Throttled from now on; read only every 5 s.
        set_throttled(root.path(), "0x20002");
        assert_eq!(
            monitor.poll(at(3)).and_then(|r| r.throttled),
            Some(Throttled(0))
        );
        assert_eq!(
            monitor.poll(at(5)).and_then(|r| r.throttled),
            Some(Throttled(0x20002))
        );
        let events = monitor.take_events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "throttled");
        assert_eq!(
            events[0].message,
            "the board slows itself: frequency capped at 58.0 °C (get_throttled 0x20002)"
        );
        monitor.poll(at(10));
        assert!(
            monitor.take_events().is_empty(),
            "still throttled: no second event"
        );
        assert_eq!(
            monitor.status().expect("status"),
            "SoC 58.0 °C, slowed now: frequency capped, since boot: frequency capped"
        );
        set_throttled(root.path(), "20000");
        monitor.poll(at(15));
        let events = monitor.take_events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "throttle_cleared");
    }

    #[test]
    fn a_machine_without_the_files_is_read_once() {
        struct Counting(std::rc::Rc<std::cell::Cell<u32>>);
        impl HealthSource for Counting {
            fn read(&mut self) -> HealthReading {
                self.0.set(self.0.get() + 1);
                HealthReading::default()
            }
        }
        let reads = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut monitor =
            HealthMonitor::new(Box::new(Counting(reads.clone())), Duration::from_secs(5));
        let t0 = Instant::now();
        for s in 0..60 {
            assert_eq!(monitor.poll(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(reads.get(), 1);
        assert_eq!(monitor.status(), None);
    }
}
