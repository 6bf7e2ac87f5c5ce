//! One serial port, kept open: 8N1 at a chosen baud rate, reopened with backoff when the
//! device goes away (a USB adapter unplugged, a UART driver reset).
//!
//! Nothing here blocks for long and nothing is buffered without bound: while the port is down,
//! lines handed to [`SerialLink::send`] are counted as dropped, and a write that cannot finish
//! within [`WRITE_TIMEOUT`] (a receiver holding CTS low, a full pseudo-terminal) drops its line
//! too. Reads never wait.

use crate::board::{FlowControl, LineFormat};
use crate::reconnect::Backoff;
use serialport::SerialPort;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// A write that has not finished after this long is abandoned and its line counted as dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// First wait before reopening a port that failed; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two attempts to reopen a port.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Bytes waiting in the driver's output queue above which new lines are dropped at once rather
/// than waited for (a receiver that stopped reading, CTS held low, XOFF).
pub const MAX_PENDING: u32 = 4096;

/// The board profile's handshake as the port driver names it.
fn port_flow(flow: FlowControl) -> serialport::FlowControl {
    match flow {
        FlowControl::None => serialport::FlowControl::None,
        FlowControl::Hardware => serialport::FlowControl::Hardware,
        FlowControl::Software => serialport::FlowControl::Software,
    }
}

/// Everything needed to open the line.
#[derive(Debug, Clone, PartialEq)]
pub struct SerialSettings {
    /// Device path, e.g. `/dev/serial0` or `/dev/ttyUSB0`.
    pub path: String,
    /// Baud rate; 8 data bits, no parity, one stop bit.
    pub baud: u32,
    /// Handshake.
    pub flow: FlowControl,
    /// How results are written.
    pub format: LineFormat,
    /// Whether the console listens on this line.
    pub console: bool,
}

/// Counters a person asks about with the console's `status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStats {
    /// Lines not written because the port was down or a write timed out.
    pub dropped_lines: u64,
    /// Times the port was reopened after failing.
    pub reconnects: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Whether the port is open now.
    pub connected: bool,
}

/// A serial port that reopens itself.
pub struct SerialLink {
    settings: SerialSettings,
    port: Option<Box<dyn SerialPort>>,
    backoff: Backoff,
    next_attempt: Instant,
    /// When the current outage began; `None` while connected or before the first open.
    down_since: Option<Instant>,
    dropped_in_outage: u64,
    ever_connected: bool,
    /// A write timed out part-way: the receiver holds half a line, ended before the next one.
    broken_line: bool,
    /// The last write timed out: until one goes through, writes do not wait at all, so a
    /// receiver that stopped reading costs lines, not 0.5 s per frame.
    stalled: bool,
    /// While the receiver takes nothing (a write timed out or the output queue is full): the
    /// dropped-line count when that began, for the log line when it reads again.
    stall: Option<u64>,
    stats: LinkStats,
}

impl SerialLink {
    /// Opens the port now if it can; if it cannot (not plugged in yet), says so on the log and
    /// keeps trying with backoff, so a service started before its USB adapter still comes up.
    pub fn new(settings: SerialSettings) -> Self {
        let mut link = Self {
            settings,
            port: None,
            backoff: Backoff::new(MIN_BACKOFF, MAX_BACKOFF),
            next_attempt: Instant::now(),
            down_since: Some(Instant::now()),
            dropped_in_outage: 0,
            ever_connected: false,
            broken_line: false,
            stalled: false,
            stall: None,
            stats: LinkStats::default(),
        };
        link.ensure_open();
        link
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &SerialSettings {
        &self.settings
    }

    /// Counters so far, and whether the port is open now.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            connected: self.port.is_some(),
            ..self.stats.clone()
        }
    }

    fn open_port(&self) -> Result<Box<dyn SerialPort>, serialport::Error> {
        let port = serialport::new(&self.settings.path, self.settings.baud)
            .data_bits(serialport::DataBits::Eight)
            .parity(serialport::Parity::None)
            .stop_bits(serialport::StopBits::One)
            .flow_control(port_flow(self.settings.flow))
            .timeout(WRITE_TIMEOUT)
            .open()?;
        Ok(port)
    }

    /// Opens the port if it is closed and the backoff has passed; true when open.
    fn ensure_open(&mut self) -> bool {
        if self.port.is_some() {
            return true;
        }
        let now = Instant::now();
        if now < self.next_attempt {
            return false;
        }
        match self.open_port() {
            Ok(port) => {
                if self.ever_connected {
                    self.stats.reconnects += 1;
                    let outage = self.down_since.map(|t| t.elapsed()).unwrap_or_default();
                    tracing::warn!(
                        "serial {}: reopened after {:.1} s; {} lines dropped meanwhile",
                        self.settings.path,
                        outage.as_secs_f64(),
                        self.dropped_in_outage
                    );
                }
                self.port = Some(port);
                self.ever_connected = true;
                // The backoff is reset by the first successful write, not here: a port that
                // opens but fails every write must not be reopened at full speed.
                self.down_since = None;
                self.dropped_in_outage = 0;
                true
            }
            Err(e) => {
                let wait = self.backoff.next_wait();
                tracing::debug!(
                    "serial {}: open failed: {e}; next try in {} ms",
                    self.settings.path,
                    wait.as_millis()
                );
                let message = format!("{}: cannot open: {e}", self.settings.path);
                // Once per outage on the log, not once per attempt.
                if self.stats.last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(
                        "serial {message}; retrying every {} s at most",
                        self.backoff.ceiling().as_secs()
                    );
                }
                self.stats.last_error = Some(message);
                self.next_attempt = now + wait;
                false
            }
        }
    }

    fn fail(&mut self, what: &str, e: std::io::Error) {
        let message = format!("{}: {what} failed: {e}", self.settings.path);
        if self.stats.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!("serial {message}; reopening");
        }
        self.stats.last_error = Some(message);
        self.port = None;
        self.broken_line = false;
        self.stalled = false;
        self.down_since = Some(Instant::now());
        self.next_attempt = Instant::now() + self.backoff.next_wait();
    }

    /// Writes whole lines; returns false when they were dropped (port down, write failed or
    /// timed out). A dropped batch counts one line per `\n` in it.
    pub fn send(&mut self, text: &str) -> bool {
        let lines = text.bytes().filter(|&b| b == b'\n').count().max(1) as u64;
        if !self.ensure_open() {
            self.drop_lines(lines);
            return false;
        }
        let Some(port) = self.port.as_mut() else {
            self.drop_lines(lines);
            return false;
        };
        // No flush: it waits for the line to drain (tcdrain) without any timeout, which a
        // receiver holding CTS low would turn into a hang of the whole frame loop.
        if port.bytes_to_write().is_ok_and(|n| n > MAX_PENDING) {
            self.stall_begins();
            self.stats.last_error = Some(format!(
                "{}: output queue full (receiver not reading, or CTS low)",
                self.settings.path
            ));
            self.drop_lines(lines);
            return false;
        }
        let ending = if self.broken_line { "\r\n" } else { "" };
        let wait = if self.stalled {
            Duration::ZERO
        } else {
            WRITE_TIMEOUT
        };
        let written = port
            .set_timeout(wait)
            .map_err(std::io::Error::other)
            .and_then(|()| port.write_all(ending.as_bytes()))
            .and_then(|()| port.write_all(text.as_bytes()));
        match written {
            Ok(()) => {
                self.broken_line = false;
                self.stalled = false;
                self.stall_ends();
                self.backoff.reset();
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                self.stall_begins();
                // The receiver is not taking data; the port itself is fine. Part of the line
                // may be out: end it before the next one, so only this line is lost.
                self.broken_line = true;
                self.stalled = true;
                self.stats.last_error = Some(format!(
                    "{}: write timed out after {} ms (receiver not reading, or CTS low)",
                    self.settings.path,
                    WRITE_TIMEOUT.as_millis()
                ));
                self.drop_lines(lines);
                false
            }
            Err(e) => {
                self.fail("write", e);
                self.drop_lines(lines);
                false
            }
        }
    }

    /// The receiver takes nothing: said once, and lines dropped from here on are counted.
    /// Only the log can say it: the console is on this very line.
    fn stall_begins(&mut self) {
        if self.stall.is_none() {
            self.stall = Some(self.stats.dropped_lines);
            tracing::warn!(
                "serial {}: receiver not reading (or CTS low): lines are dropped and counted \
                 until it reads",
                self.settings.path
            );
        }
    }

    /// A line went through after a stall: says how many were dropped meanwhile.
    fn stall_ends(&mut self) {
        if let Some(before) = self.stall.take() {
            tracing::warn!(
                "serial {}: receiver reading again; {} lines dropped",
                self.settings.path,
                self.stats.dropped_lines - before
            );
        }
    }

    fn drop_lines(&mut self, lines: u64) {
        self.stats.dropped_lines += lines;
        self.dropped_in_outage += lines;
    }

    /// Appends whatever bytes have arrived to `input`, without waiting.
    pub fn receive(&mut self, input: &mut Vec<u8>) {
        if !self.ensure_open() {
            return;
        }
        let Some(port) = self.port.as_mut() else {
            return;
        };
        let pending = match port.bytes_to_read() {
            Ok(n) => n as usize,
            Err(e) => {
                self.fail("read", std::io::Error::other(e));
                return;
            }
        };
        if pending == 0 {
            return;
        }
        let start = input.len();
        input.resize(start + pending, 0);
        match port.read(&mut input[start..]) {
            Ok(n) => input.truncate(start + n),
            Err(e) => {
                input.truncate(start);
                if e.kind() != std::io::ErrorKind::TimedOut {
                    self.fail("read", e);
                }
            }
        }
    }
}

impl std::fmt::Debug for SerialLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialLink")
            .field("settings", &self.settings)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serialport::TTYPort;

    #[test]
    fn a_receiver_that_stops_reading_costs_lines_not_a_hang() {
        // The test holds the master end and never reads it: the pseudo-terminal's buffer fills,
        // like a UART whose receiver holds CTS low.
        let (_master, slave) = TTYPort::pair().expect("pty pair");
        let path = slave.name().expect("slave name");
        let mut link = SerialLink::new(SerialSettings {
            path,
            baud: 115200,
            flow: FlowControl::None,
            format: LineFormat::Json,
            console: false,
        });
        assert!(link.stats().connected);
        let line = format!("{}\n", "x".repeat(99));
        let mut sent = 0u64;
        for _ in 0..2000 {
            if link.send(&line) {
                sent += 1;
            }
        }
        let stats = link.stats();
        assert!(sent > 0, "the first lines fit the buffer");
        assert!(stats.dropped_lines > 0, "the rest are dropped: {stats:?}");
        assert_eq!(sent + stats.dropped_lines, 2000);
        assert!(
            stats.connected,
            "a full buffer is not a lost port: {stats:?}"
        );
        let error = stats.last_error.clone().unwrap_or_default();
        assert!(
            error.contains("output queue full") || error.contains("timed out"),
            "{error}"
        );
    }
}
