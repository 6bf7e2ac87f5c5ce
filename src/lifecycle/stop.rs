//! Stopping a run as its source ending: `systemctl stop` (SIGTERM) and Ctrl-C (SIGINT).
//!
//! Killed by the signal's default action, a run would end between two writes: a JSON Lines
//! record cut short, the MQTT `offline` status and the events still in the outbox never sent,
//! GPIO lines left as the last frame set them, a sample half-written. Instead the signal only
//! sets a flag; the run loop reads it before each frame, reads no more frames, finishes the
//! ones in flight and ends as when a file source runs out: every sink flushed, exit status 0.
//!
//! A second signal of either kind, while the first is being handled, ends the process at once
//! with the signal's default action: a person pressing Ctrl-C twice means it, and systemd
//! sends SIGKILL after `TimeoutStopSec=` anyway.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Whether the run was asked to stop, and by which signal.
#[derive(Debug, Clone, Default)]
pub struct StopRequest {
    /// Set by the first signal; the second finds it set and ends the process.
    asked: Arc<AtomicBool>,
    /// The number of the signal that asked, 0 for [`StopRequest::request`].
    signal: Arc<AtomicUsize>,
}

/// The signals that stop a run.
const STOP_SIGNALS: [std::ffi::c_int; 2] =
    [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT];

impl StopRequest {
    /// A request nobody has made yet and no signal makes: a run that ends only with its
    /// source (or by [`StopRequest::request`]).
    pub fn never() -> Self {
        Self::default()
    }

    /// A request SIGTERM and SIGINT make. The handlers only store to atomics, which the run
    /// loop's thread reads between frames.
    pub fn on_signals() -> std::io::Result<Self> {
        let stop = Self::default();
        for signal in STOP_SIGNALS {
            // Registered first, so it sees the flag as it was before this signal: set only
            // when an earlier signal asked already.
            signal_hook::flag::register_conditional_default(signal, stop.asked.clone())?;
            signal_hook::flag::register_usize(signal, stop.signal.clone(), signal as usize)?;
            signal_hook::flag::register(signal, stop.asked.clone())?;
        }
        Ok(stop)
    }

    /// Asks the run to stop, as a signal would.
    pub fn request(&self) {
        self.asked.store(true, Ordering::SeqCst);
    }

    /// Whether the run was asked to stop.
    pub fn requested(&self) -> bool {
        self.asked.load(Ordering::SeqCst)
    }

    /// What asked, for the log: `SIGTERM`, `SIGINT`, or `a stop request`.
    pub fn by(&self) -> &'static str {
        match self.signal.load(Ordering::SeqCst) {
            s if s == signal_hook::consts::SIGTERM as usize => "SIGTERM",
            s if s == signal_hook::consts::SIGINT as usize => "SIGINT",
            _ => "a stop request",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_seen_by_every_clone_and_names_no_signal() {
        let stop = StopRequest::never();
        let seen_by_the_loop = stop.clone();
        assert!(!seen_by_the_loop.requested());
        stop.request();
        assert!(seen_by_the_loop.requested());
        assert_eq!(seen_by_the_loop.by(), "a stop request");
    }
}
