//! Freed heap handed back to the system, once a minute.
//!
//! glibc keeps what a thread freed in that thread's arena for reuse, and by itself gives back
//! only what lies at the top of a heap. Over a long run, model switches, the sample writer's
//! JPEG buffers and the preview's encoder leave freed pages inside the arenas: in an hour's soak
//! (`scripts/soak`) lookout's heap in use stayed at 1.5 MiB while its resident memory rose in
//! steps by 3.7 MiB, and one `malloc_trim` gave 2 MiB back at once. The run loop trims between
//! frames at most once per [`TRIM_EVERY`].

use std::time::{Duration, Instant};

/// How often the run loop hands freed heap back.
pub const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Hands the heap's free pages back to the system; whether any were. With another C library
/// than glibc there is nothing to do.
pub fn give_back_freed() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; it takes no pointers.
    unsafe {
        libc::malloc_trim(0) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Trims at most once per [`TRIM_EVERY`].
#[derive(Debug)]
pub struct Trimmer {
    last: Instant,
}

impl Trimmer {
    /// A trimmer whose first trim is a period from `now`.
    pub fn new(now: Instant) -> Self {
        Self { last: now }
    }

    /// Trims when a period has passed since the last trim; whether it did.
    pub fn tick(&mut self, now: Instant) -> bool {
        if now.duration_since(self.last) < TRIM_EVERY {
            return false;
        }
        self.last = now;
        give_back_freed();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_a_period_and_gives_freed_heap_back() {
        let start = Instant::now();
        let mut trimmer = Trimmer::new(start);
        assert!(!trimmer.tick(start + TRIM_EVERY / 2));
        assert!(trimmer.tick(start + TRIM_EVERY));
        assert!(!trimmer.tick(start + TRIM_EVERY + TRIM_EVERY / 2));
        assert!(trimmer.tick(start + TRIM_EVERY * 2));

        // Many small blocks freed below one still in use: the top of the heap cannot shrink,
        // only a trim hands the pages between back.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let blocks: Vec<Vec<u8>> = (0..20_000).map(|_| vec![1u8; 1000]).collect();
            let kept = vec![2u8; 1000];
            drop(blocks);
            assert!(give_back_freed(), "20 MB freed and nothing given back");
            assert_eq!(kept[999], 2);
        }
    }
}
