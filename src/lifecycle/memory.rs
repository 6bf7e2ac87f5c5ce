//! How the C library's allocator is set for `lookout run`, a process that runs for months, and
//! freed heap handed back on request.
//!
//! glibc maps blocks from 128 KiB up on their own and unmaps them when freed, but each time a
//! mapped block is freed it raises that size to the block's (up to a ceiling: 32 MiB on 64-bit
//! boards, 512 KiB on 32-bit ones), so that blocks of that size come from its arenas from then
//! on and stay resident for reuse. Over a long run the size climbs whenever some rarer work (a
//! model switch, a drift episode's samples) frees a larger block than before, and each climb
//! can be a step up in resident memory: in an hour's soak (`scripts/soak`) lookout's resident
//! memory rose in such steps for 40 minutes while the heap in use stayed at 1.5 MiB. Handing
//! freed heap back once a minute (`malloc_trim`) only turned the steps into a sawtooth 4 MiB
//! high, the next minute's frames touching the same pages again, and keeping the size at
//! 128 KiB made inference 70 % slower (tract's intermediate tensors mapped and unmapped on
//! every frame). [`settle_allocator`] instead starts the size at its ceiling, as if the largest
//! block glibc lets grow the size had already been freed, and bounds the arenas, so that later
//! work no longer changes how the allocator keeps memory.

/// Arenas at most: one per core, and two on a single core, so that the lanes running models
/// side by side seldom wait for each other's allocations while the other threads share.
fn arenas() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .max(2)
}

/// glibc's ceiling for the size from which blocks are mapped on their own
/// (`DEFAULT_MMAP_THRESHOLD_MAX`): 32 MiB on 64-bit targets, 512 KiB on 32-bit ones (there it
/// is also the least a thread's heap may grow to, and address space is scarce).
pub const MMAP_THRESHOLD: usize = if usize::BITS == 32 {
    512 << 10
} else {
    4 * 1024 * 1024 * std::mem::size_of::<usize>()
};

/// Free memory at the top of a heap kept rather than given back: as much as the mapping size,
/// so a block freed at the top and asked for again by the next frame costs no system call
/// and page faults each time, and under the most a thread's heap can hold (twice the ceiling),
/// so that those heaps still shrink after a spike.
pub const TRIM_THRESHOLD: usize = MMAP_THRESHOLD;

/// Environment variables through which an operator sets glibc's allocator; when one is set,
/// lookout leaves the allocator as they set it.
const OPERATOR_SETTINGS: [&str; 4] = [
    "GLIBC_TUNABLES",
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
];

/// What [`settle_allocator`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Every setting was taken.
    Done,
    /// The operator set the allocator through this environment variable: left as it is.
    LeftToOperator(&'static str),
    /// glibc refused these settings; for the mapping size, the trim threshold was then left
    /// alone too, so that glibc's own raising of both goes on.
    Refused(Vec<&'static str>),
    /// Not glibc: nothing to set.
    NotGlibc,
}

/// Sets the allocator up for a long run: [`arenas`] arenas at most, and the mapping size at
/// [`MMAP_THRESHOLD`] from the start, with the trim threshold at [`TRIM_THRESHOLD`]. Called
/// by `lookout run` before it starts any thread; the other commands, `bench` and `select`
/// among them, keep glibc's defaults.
pub fn settle_allocator() -> Settled {
    if let Some(name) = OPERATOR_SETTINGS
        .into_iter()
        .find(|name| std::env::var_os(name).is_some())
    {
        return Settled::LeftToOperator(name);
    }
    settle_glibc()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn settle_glibc() -> Settled {
    let int = |n: usize| libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
    let mut refused = Vec::new();
    // SAFETY: mallopt only changes the allocator's parameters; lookout run calls this before
    // it starts a thread, so nothing allocates beside it.
    let set = |parameter, value| unsafe { libc::mallopt(parameter, int(value)) == 1 };
    if !set(libc::M_ARENA_MAX, arenas()) {
        refused.push("M_ARENA_MAX");
    }
    // A trim threshold set alone would stop glibc from raising the mapping size at all,
    // leaving it at 128 KiB: only with the mapping size.
    if !set(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) {
        refused.push("M_MMAP_THRESHOLD");
    } else if !set(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) {
        refused.push("M_TRIM_THRESHOLD");
    }
    if refused.is_empty() {
        Settled::Done
    } else {
        Settled::Refused(refused)
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn settle_glibc() -> Settled {
    Settled::NotGlibc
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

    /// Sets the allocator of the whole test process: the other tests only run with it.
    #[test]
    fn glibc_takes_every_setting_and_then_serves_a_block_under_the_ceiling_from_the_heap() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // Not settle_allocator: the environment that runs the tests may set the allocator.
            assert_eq!(settle_glibc(), Settled::Done);
            // mallinfo, not mallinfo2: the 32-bit boards' glibc floor (2.31) predates it, and
            // the counts here fit its int fields.
            // SAFETY: mallinfo only reads the allocator's counters.
            let mapped = || unsafe { libc::mallinfo() }.hblkhd as usize;
            let before = mapped();
            // Three times glibc's starting size (128 KiB), under both ceilings: mapped on its
            // own unless settled (or unless an earlier test freed a larger mapped block).
            let size = 384 << 10;
            let block = vec![1u8; size];
            let during = mapped();
            assert_eq!(block[size - 1], 1);
            assert!(
                during < before + size,
                "a {size}-byte block was mapped on its own: {before} -> {during} bytes mapped"
            );
        }
    }
}
