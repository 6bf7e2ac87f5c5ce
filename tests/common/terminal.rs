//! The test's end of a serial line: a pseudo-terminal pair whose other end lookout writes to,
//! read line by line with deadlines, as a microcontroller or a person with a USB-serial cable
//! would.

use super::patience;
use serialport::{SerialPort, TTYPort};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The test's end of the line: reads whole lines with a deadline.
pub struct Terminal {
    master: TTYPort,
    pending: Vec<u8>,
}

impl Terminal {
    pub fn new(mut master: TTYPort) -> Self {
        master
            .set_timeout(Duration::from_millis(50))
            .expect("set timeout");
        Self {
            master,
            pending: Vec::new(),
        }
    }

    pub fn send(&mut self, text: &[u8]) {
        self.master.write_all(text).expect("write to pty");
        self.master.flush().expect("flush pty");
    }

    /// The next line (without its ending), or None after `wait`.
    pub fn line(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                return Some(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut buf = [0u8; 4096];
            match self.master.read(&mut buf) {
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) if e.raw_os_error() == Some(5) => {
                    // EIO: the other end is not open (yet); wait.
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("reading the pty: {e}"),
            }
        }
    }

    /// Lines up to and including the first for which `done` holds; panics after `wait`
    /// (scaled: [`super::patience`]), a guard against a hung run.
    pub fn until(&mut self, wait: Duration, done: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + patience(wait);
        let mut seen = Vec::new();
        while let Some(line) = self.line(deadline.saturating_duration_since(Instant::now())) {
            let stop = done(&line);
            seen.push(line);
            if stop {
                return seen;
            }
        }
        panic!("timed out; lines so far: {seen:#?}");
    }

    /// Sends a command and returns the reply lines up to its `# ok` / `# error:` line,
    /// skipping result lines that arrive meanwhile.
    pub fn command(&mut self, text: &str) -> Vec<String> {
        self.send(format!("{text}\r\n").as_bytes());
        self.until(Duration::from_secs(20), |l| {
            l.starts_with("# ok") || l.starts_with("# error:")
        })
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .collect()
    }
}

/// A pseudo-terminal pair: the test's end, lookout's end (kept open so the line exists), and
/// the name of lookout's end for `--sink serial:NAME`.
pub fn pair() -> (Terminal, TTYPort, String) {
    let (master, slave) = TTYPort::pair().expect("a pseudo-terminal pair");
    let name = slave.name().expect("slave has a name");
    (Terminal::new(master), slave, name)
}
