//! How the C library's allocator is set for a process that runs for months, and freed heap
//! handed back on request.
//!
//! glibc maps blocks from 128 KiB up on their own and unmaps them when freed, but each time a
//! mapped block is freed it raises that size to the block's (up to a ceiling: 32 MiB on 64-bit
//! boards, 16 MiB on 32-bit ones), so that blocks of that size come from its arenas from then on
//! and stay resident for reuse. Over a long run the size climbs whenever some rarer work (a
//! model switch, a drift episode's samples) frees a larger block than before, and each climb is
//! a step up in resident memory: in an hour's soak (`scripts/soak`) lookout's resident memory
//! rose in such steps for 40 minutes while the heap in use stayed at 1.5 MiB. Handing freed
//! heap back once a minute (`malloc_trim`) only turned the steps into a sawtooth, the next
//! minute's frames touching the same pages again; keeping the size at 128 KiB made inference
//! 70 % slower (tract's intermediate tensors mapped and unmapped on every frame).
//! [`settle_allocator`] starts the size at its ceiling instead, where glibc would take it
//! anyway, with the matching trim threshold, and bounds the arenas, so that no later work
//! changes how the allocator keeps memory.

/// Arenas at most: one per core, and two on a single core, so that the lanes running models
/// side by side seldom wait for each other's allocations while the other threads share.
fn arenas() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .max(2)
}

/// glibc's ceiling for the size from which blocks are mapped on their own
/// (`DEFAULT_MMAP_THRESHOLD_MAX`): 4 MiB per byte of a pointer.
pub const MMAP_THRESHOLD: usize = 4 * 1024 * 1024 * std::mem::size_of::<usize>();

/// Free memory at the top of the heap kept rather than given back: twice the mapping size, as
/// glibc sets it when it raises that size itself, so a large block freed at the top and asked
/// for again by the next frame does not cost a system call and page faults each time.
pub const TRIM_THRESHOLD: usize = 2 * MMAP_THRESHOLD;

/// Sets the allocator up for a long run: [`arenas`] arenas at most, and the mapping size at
/// [`MMAP_THRESHOLD`] from the start. Called first thing in `main`, before any thread starts.
/// With another C library than glibc there is nothing to set.
pub fn settle_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters; called before other threads
    // exist, nothing allocates concurrently.
    unsafe {
        let int = |n: usize| libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
        libc::mallopt(libc::M_ARENA_MAX, int(arenas()));
        libc::mallopt(libc::M_MMAP_THRESHOLD, int(MMAP_THRESHOLD));
        libc::mallopt(libc::M_TRIM_THRESHOLD, int(TRIM_THRESHOLD));
    }
}

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

    #[test]
    fn once_settled_a_block_under_the_ceiling_comes_from_the_heap_not_a_mapping_of_its_own() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            settle_allocator();
            // SAFETY: mallinfo2 only reads the allocator's counters.
            let mapped = || unsafe { libc::mallinfo2() }.hblkhd;
            let before = mapped();
            // Four times glibc's starting size (128 KiB): mapped on its own unless settled.
            let block = vec![1u8; 4 << 20];
            let during = mapped();
            assert_eq!(block[(4 << 20) - 1], 1);
            assert!(
                during < before + (4 << 20),
                "a 4 MiB block was mapped on its own: {before} -> {during} bytes mapped"
            );
        }
    }
}
