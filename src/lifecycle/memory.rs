//! Freed heap handed back to the system on request.
//!
//! `lookout run` leaves glibc's allocator as it is. What was tried to keep a run's resident
//! memory flat, each in a soak (`scripts/soak`; the README's "Months unattended"): handing
//! freed heap back once a minute (`malloc_trim`) turned its slow climb into a sawtooth up to
//! 3.7 MiB high, the next minute's frames touching the same pages again; keeping the size from
//! which blocks are mapped on their own at 128 KiB made inference 70 % slower (tract's
//! intermediate tensors mapped and unmapped on every frame); starting that size at glibc's
//! ceiling with the arenas bounded held more memory and still climbed; mimalloc held twice as
//! much.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_heap_is_given_back() {
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
