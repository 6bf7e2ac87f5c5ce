//! Running as a systemd service: readiness and watchdog notifications.
//!
//! The packaged unit (`packaging/lookout.service`) is `Type=notify` with `WatchdogSec=`: systemd
//! starts counting only after `READY=1`, and restarts lookout when `WATCHDOG=1` stops coming.
//! The notifications ride on the [`Sink`] calls the frame loop makes anyway (a record per
//! frame, `idle` while waiting for a camera or paused), so they stop exactly when the loop is
//! stuck. A camera that is away is not a stuck loop: the loop keeps waiting and idling, and the
//! capture thread retries on its own.
//!
//! The protocol is one datagram of `KEY=value` lines to the socket named by `NOTIFY_SOCKET`
//! (sd_notify(3)); it is small enough not to need libsystemd.

use crate::results::record::{EventRecord, FrameRecord};
use crate::results::sink::{Sink, SinkError};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Notifies systemd; does nothing when lookout was not started by systemd.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: std::os::unix::net::SocketAddr,
    /// Half the watchdog timeout, as sd_watchdog_enabled(3) recommends; `None`: no watchdog.
    ping_every: Option<Duration>,
    last_ping: Option<Instant>,
    ready: bool,
    frames: u64,
}

impl Notifier {
    /// The notifier for this process, if systemd asked for notifications (`NOTIFY_SOCKET`).
    /// A socket that cannot be reached is logged and treated as absent: lookout's job is the
    /// camera, not the supervisor.
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog_usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        // The watchdog is for this process only when WATCHDOG_PID is unset or ours.
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let ping_every = watchdog_usec
            .filter(|_| for_us)
            .filter(|&us| us > 0)
            .map(|us| Duration::from_micros(us / 2));
        match Self::connect(&path, ping_every) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET {path:?}: {e}; not notifying systemd");
                None
            }
        }
    }

    fn connect(path: &std::ffi::OsStr, ping_every: Option<Duration>) -> std::io::Result<Self> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_bytes();
        let address = match bytes.strip_prefix(b"@") {
            // A name in the abstract namespace (what systemd uses for user services).
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(path)?,
        };
        Ok(Self {
            socket: UnixDatagram::unbound()?,
            address,
            ping_every,
            last_ping: None,
            ready: false,
            frames: 0,
        })
    }

    fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.address) {
            tracing::warn!("systemd notification failed: {e}");
        }
    }

    /// The frame loop is running: the first call says `READY=1`, later ones feed the watchdog
    /// (at most once per half timeout) with a status line for `systemctl status`.
    pub fn alive(&mut self) {
        self.alive_at(Instant::now());
    }

    /// [`alive`](Self::alive) at `now`: the time is passed in so that the spacing of the pings
    /// is tested on exact instants, not on how fast the test runs.
    fn alive_at(&mut self, now: Instant) {
        if !self.ready {
            self.ready = true;
            self.last_ping = Some(now);
            self.send("READY=1\nSTATUS=running\n");
            return;
        }
        let Some(every) = self.ping_every else {
            return;
        };
        if self
            .last_ping
            .is_some_and(|t| now.duration_since(t) < every)
        {
            return;
        }
        self.last_ping = Some(now);
        self.send(&format!(
            "WATCHDOG=1\nSTATUS={} frames processed\n",
            self.frames
        ));
    }

    /// Says the service is stopping, so systemd does not take the exit for a crash mid-start.
    pub fn stopping(&self) {
        self.send("STOPPING=1\n");
    }
}

impl Sink for Notifier {
    fn emit(&mut self, _record: &FrameRecord) -> Result<(), SinkError> {
        self.frames += 1;
        self.alive();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.stopping();
        Ok(())
    }

    fn idle(&mut self) -> Result<(), SinkError> {
        self.alive();
        Ok(())
    }

    fn event(&mut self, _event: &EventRecord) -> Result<(), SinkError> {
        self.alive();
        Ok(())
    }
}

/// Tells systemd the service is busy but alive while a model is tried in a child process
/// (`model::verify`): feeds the watchdog, and before `READY=1` extends the start timeout by
/// [`BUSY_EXTENSION`], so that a slow load is neither killed by the watchdog nor by the start
/// timeout. Nothing when not run under systemd.
pub fn still_working() {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        busy_to(&path);
    }
}

/// [`still_working`] to the socket at `path`.
fn busy_to(path: &std::ffi::OsStr) {
    if let Ok(notifier) = Notifier::connect(path, None) {
        notifier.send(&format!(
            "WATCHDOG=1\nEXTEND_TIMEOUT_USEC={}\nSTATUS=trying a model\n",
            BUSY_EXTENSION.as_micros()
        ));
    }
}

/// How much longer each [`still_working`] gives the start-up.
pub const BUSY_EXTENSION: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    /// A notifier aimed at a socket we read, as systemd would.
    fn pair(ping_every: Option<Duration>) -> (Notifier, UnixDatagram, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let systemd = UnixDatagram::bind(&path).expect("bind");
        systemd
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let n = Notifier::connect(path.as_os_str(), ping_every).expect("connect");
        (n, systemd, dir)
    }

    fn read(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let len = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..len]).into_owned()
    }

    fn nothing_waiting(socket: &UnixDatagram) -> bool {
        socket.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 512];
        let empty = socket.recv(&mut buf).is_err();
        socket.set_nonblocking(false).expect("blocking");
        empty
    }

    #[test]
    fn first_call_is_ready_then_pings_at_most_every_half_timeout() {
        let (mut n, systemd, _dir) = pair(Some(Duration::from_millis(200)));
        // A second in the past, so that the frame below, at the real time, is due a ping.
        let start = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .expect("the clock has run for a second");
        let at = |ms| start + Duration::from_millis(ms);
        n.alive_at(at(0));
        assert_eq!(read(&systemd), "READY=1\nSTATUS=running\n");
        // Within the interval: no datagram.
        n.alive_at(at(1));
        n.alive_at(at(199));
        assert!(nothing_waiting(&systemd));
        n.alive_at(at(200));
        assert_eq!(read(&systemd), "WATCHDOG=1\nSTATUS=0 frames processed\n");
        n.alive_at(at(399));
        assert!(nothing_waiting(&systemd));
        // A frame at least 600 ms after that ping: it counts, and pings.
        n.frames = 41;
        let record = FrameRecord::empty(41);
        n.emit(&record).expect("emit");
        assert_eq!(read(&systemd), "WATCHDOG=1\nSTATUS=42 frames processed\n");
        n.flush().expect("flush");
        assert_eq!(read(&systemd), "STOPPING=1\n");
    }

    /// The packaged unit's watchdog must outlast the camera's worst retry cycle, in case a
    /// platform's camera open blocks the loop; this ties the two numbers together.
    #[test]
    fn packaged_watchdog_outlasts_a_camera_retry_cycle() {
        let unit = include_str!("../../packaging/lookout.service");
        let secs: u64 = unit
            .lines()
            .find_map(|l| l.strip_prefix("WatchdogSec="))
            .expect("WatchdogSec in the unit")
            .trim()
            .parse()
            .expect("WatchdogSec in seconds");
        let cycle = crate::frames::camera::GRAB_TIMEOUT
            + crate::frames::camera::v4l::OPEN_TIMEOUT
            + crate::frames::camera::MAX_BACKOFF;
        assert_eq!(cycle, Duration::from_secs(23), "update the unit's comment");
        assert!(Duration::from_secs(secs) >= 2 * cycle, "WatchdogSec={secs}");
        assert!(
            unit.contains("Type=notify"),
            "READY=1 is only heard by Type=notify"
        );
    }

    #[test]
    fn without_a_watchdog_only_readiness_is_sent() {
        let (mut n, systemd, _dir) = pair(None);
        let start = Instant::now();
        n.alive_at(start);
        assert_eq!(read(&systemd), "READY=1\nSTATUS=running\n");
        n.alive_at(start + Duration::from_secs(3600));
        n.idle().expect("idle");
        assert!(nothing_waiting(&systemd));
    }

    #[test]
    fn a_trial_in_progress_feeds_the_watchdog_and_extends_the_start() {
        let (n, systemd, dir) = pair(None);
        drop(n);
        busy_to(dir.path().join("notify").as_os_str());
        let mut buf = [0u8; 256];
        let len = systemd.recv(&mut buf).expect("a datagram");
        assert_eq!(
            std::str::from_utf8(&buf[..len]).expect("text"),
            "WATCHDOG=1\nEXTEND_TIMEOUT_USEC=30000000\nSTATUS=trying a model\n"
        );
    }
}
