//! Reopening a device that went away (a camera unplugged, a USB-serial adapter pulled): the
//! wait between attempts.
//!
//! The wait starts short, so a glitch costs a fraction of a second, and doubles up to a
//! ceiling, so a device that stays away for hours is tried every few seconds rather than
//! thousands of times a minute (each attempt logs and may wake the USB bus). It goes back to
//! the start only when the device works again — the caller says when: a camera that opens but
//! delivers nothing, or a port that opens but fails every write, must not be retried at full
//! speed.

use std::time::Duration;

/// The wait before the next attempt to reopen a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The wait before this attempt; the one after it is twice as long, up to the ceiling.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// The longest wait.
    pub fn ceiling(&self) -> Duration {
        self.max
    }

    /// The device works again: the next outage starts from the shortest wait.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_and_start_over_on_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(200), ms(1000));
        let waits: Vec<Duration> = (0..5).map(|_| b.next_wait()).collect();
        assert_eq!(waits, [ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        b.reset();
        assert_eq!(b.next_wait(), ms(200));
        assert_eq!(b.ceiling(), ms(1000));
    }
}
