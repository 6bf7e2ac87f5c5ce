//! The process's heap: large blocks kept for reuse, and freed heap handed back on request.
//!
//! Each frame through tract allocates its intermediate tensors afresh and frees them when the
//! frame is done (tract 0.23 keeps no buffers between runs), some hundreds of kilobytes in
//! blocks of 32 KiB and more. Under glibc alone that churn fragments the main arena: in an
//! hour-long soak (`scripts/soak`; the README's "Months unattended") the arena was three
//! quarters free, in chunks of 40 to 270 KiB between blocks still in use, and resident memory
//! climbed in steps. [`ReusingAllocator`] keeps freed blocks of those sizes and hands them to the
//! next request of the same size class, so the same memory serves every frame and glibc sees
//! only the few requests of a new size.
//!
//! What was tried before, each in a soak: handing freed heap back once a minute (`malloc_trim`)
//! turned the climb into a sawtooth up to 3.7 MiB high, the next minute's frames touching the
//! same pages again; keeping the size from which glibc maps blocks on their own at 128 KiB made
//! inference 70 % slower (tract's tensors mapped and unmapped on every frame); starting that size
//! at glibc's ceiling with the arenas bounded held more memory and still climbed; mimalloc held
//! twice as much.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// The smallest block kept for reuse. Smaller blocks are glibc's thread caches' and bins' job,
/// which serve them without growing the heap.
pub const SMALLEST_KEPT: usize = 32 << 10;
/// The largest block kept for reuse; larger ones are glibc's (mapped on their own).
pub const LARGEST_KEPT: usize = 8 << 20;
/// At most this many bytes are kept free for reuse; past it the block used least recently goes
/// back to glibc. It bounds what reuse adds to resident memory.
pub const MAX_KEPT_BYTES: usize = 16 << 20;
/// At most this many free blocks are kept per size class: a frame's tensors of one size are
/// rarely alive more than a few at once.
pub const MAX_KEPT_PER_CLASS: usize = 8;
/// Every block of a kept size is allocated with this alignment, so that a freed block serves any
/// request of its class: tract asks for 64 bytes on AVX-512, 32 on AVX, 16 on ARM.
const KEPT_ALIGN: usize = 64;
/// Size classes: four per doubling (a request rounds up by at most a quarter), from
/// [`SMALLEST_KEPT`] to [`LARGEST_KEPT`].
const CLASSES: usize = class_index(LARGEST_KEPT) + 1;

/// The global allocator of `lookout`: the system's, with freed blocks of 32 KiB to 8 MiB kept
/// (at most [`MAX_KEPT_BYTES`]) and handed out again by size class. Every block comes from
/// and goes back to [`System`]; only when it goes back changes.
pub struct ReusingAllocator {
    kept: Mutex<Kept>,
}

/// Counts of what the allocator did with kept-size requests since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReuseStats {
    /// Requests served with a kept block.
    pub reused: u64,
    /// Requests that went to the system.
    pub from_system: u64,
    /// Free blocks handed back to the system to stay under the bounds.
    pub given_back: u64,
    /// Bytes kept free for reuse now.
    pub kept_bytes: usize,
}

struct Kept {
    classes: [Class; CLASSES],
    bytes: usize,
    /// Counts frees; a class's `last_used` is this count at its last use, so the class used
    /// least recently is the one given back first.
    clock: u64,
    stats: ReuseStats,
}

#[derive(Clone, Copy)]
struct Class {
    blocks: [*mut u8; MAX_KEPT_PER_CLASS],
    len: usize,
    last_used: u64,
}

// SAFETY: the pointers are free blocks owned by the allocator alone, only touched under the
// mutex.
unsafe impl Send for Kept {}

impl ReusingAllocator {
    /// An allocator keeping nothing yet.
    pub const fn new() -> Self {
        const EMPTY: Class = Class {
            blocks: [std::ptr::null_mut(); MAX_KEPT_PER_CLASS],
            len: 0,
            last_used: 0,
        };
        ReusingAllocator {
            kept: Mutex::new(Kept {
                classes: [EMPTY; CLASSES],
                bytes: 0,
                clock: 0,
                stats: ReuseStats {
                    reused: 0,
                    from_system: 0,
                    given_back: 0,
                    kept_bytes: 0,
                },
            }),
        }
    }

    /// What the allocator did so far.
    pub fn stats(&self) -> ReuseStats {
        let kept = self.lock();
        ReuseStats {
            kept_bytes: kept.bytes,
            ..kept.stats
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Nothing under the lock panics; a poisoned lock still holds consistent blocks.
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A kept block of `class`, if there is one.
    fn take(&self, class: usize) -> Option<*mut u8> {
        let mut kept = self.lock();
        let kept = &mut *kept;
        kept.clock += 1;
        let clock = kept.clock;
        let slot = &mut kept.classes[class];
        slot.last_used = clock;
        if slot.len == 0 {
            kept.stats.from_system += 1;
            return None;
        }
        slot.len -= 1;
        kept.bytes -= class_size(class);
        kept.stats.reused += 1;
        Some(slot.blocks[slot.len])
    }

    /// Keeps `block` of `class` for reuse, handing back the blocks of the classes used least
    /// recently if the bounds need it; or hands `block` back itself.
    ///
    /// # Safety
    /// `block` was allocated by [`System`] with [`class_layout`] of `class` and is no longer used.
    unsafe fn keep(&self, block: *mut u8, class: usize) {
        let size = class_size(class);
        let mut kept = self.lock();
        let kept = &mut *kept;
        kept.clock += 1;
        kept.classes[class].last_used = kept.clock;
        if kept.classes[class].len == MAX_KEPT_PER_CLASS {
            kept.stats.given_back += 1;
            // SAFETY: the caller's promise.
            unsafe { System.dealloc(block, class_layout(class)) };
            return;
        }
        while kept.bytes + size > MAX_KEPT_BYTES {
            let Some(oldest) = (0..CLASSES)
                .filter(|&other| other != class && kept.classes[other].len > 0)
                .min_by_key(|&other| kept.classes[other].last_used)
            else {
                break;
            };
            let slot = &mut kept.classes[oldest];
            slot.len -= 1;
            kept.bytes -= class_size(oldest);
            kept.stats.given_back += 1;
            // SAFETY: every kept block of a class was allocated with its layout and is free.
            unsafe { System.dealloc(slot.blocks[slot.len], class_layout(oldest)) };
        }
        if kept.bytes + size > MAX_KEPT_BYTES {
            kept.stats.given_back += 1;
            // SAFETY: the caller's promise.
            unsafe { System.dealloc(block, class_layout(class)) };
            return;
        }
        let slot = &mut kept.classes[class];
        slot.blocks[slot.len] = block;
        slot.len += 1;
        kept.bytes += size;
    }
}

impl Drop for ReusingAllocator {
    fn drop(&mut self) {
        let kept = self
            .kept
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (class, slot) in kept.classes.iter_mut().enumerate() {
            for &block in &slot.blocks[..slot.len] {
                // SAFETY: every kept block of a class was allocated with its layout and is free.
                unsafe { System.dealloc(block, class_layout(class)) };
            }
            slot.len = 0;
        }
        kept.bytes = 0;
    }
}

impl Default for ReusingAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// The size class of a request, if it is of a kept size.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() < SMALLEST_KEPT || layout.size() > LARGEST_KEPT || layout.align() > KEPT_ALIGN
    {
        return None;
    }
    Some(class_index(layout.size()))
}

/// The class of a size between [`SMALLEST_KEPT`] and [`LARGEST_KEPT`]: the doubling it falls
/// in, and which quarter of it, rounding up.
const fn class_index(size: usize) -> usize {
    let above = size - 1;
    let doubling = (usize::BITS - 1 - above.leading_zeros()) as usize;
    let quarter = above >> (doubling - 2); // 4..=7; the size rounds up to (quarter + 1) quarters
                                           // SMALLEST_KEPT is the last quarter of its doubling: class 0.
    (doubling - FIRST_DOUBLING) * 4 + quarter - 7
}

/// The doubling [`SMALLEST_KEPT`] falls in (its size minus one's highest bit).
const FIRST_DOUBLING: usize = (usize::BITS - 1 - (SMALLEST_KEPT - 1).leading_zeros()) as usize;

/// The bytes every block of `class` has: the largest size that falls in it.
const fn class_size(class: usize) -> usize {
    let position = class + 3;
    let doubling = position / 4 + FIRST_DOUBLING;
    let quarter = position % 4 + 4;
    (quarter + 1) << (doubling - 2)
}

/// The layout every block of `class` is allocated and given back with.
fn class_layout(class: usize) -> Layout {
    // SAFETY: KEPT_ALIGN is a power of two and class sizes are at most LARGEST_KEPT, far below
    // isize::MAX.
    unsafe { Layout::from_size_align_unchecked(class_size(class), KEPT_ALIGN) }
}

// SAFETY: every block comes from System with the layout it is given back with: blocks of a class
// always with the class's layout, all others with their own.
unsafe impl GlobalAlloc for ReusingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            Some(class) => match self.take(class) {
                Some(block) => block,
                // SAFETY: a class layout has a non-zero size.
                None => unsafe { System.alloc(class_layout(class)) },
            },
            // SAFETY: the caller's promise that `layout` has a non-zero size.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            Some(class) => match self.take(class) {
                Some(block) => {
                    // SAFETY: the block has the class's size, at least `layout.size()`.
                    unsafe { block.write_bytes(0, layout.size()) };
                    block
                }
                // SAFETY: a class layout has a non-zero size.
                None => unsafe { System.alloc_zeroed(class_layout(class)) },
            },
            // SAFETY: the caller's promise that `layout` has a non-zero size.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class_of(layout) {
            // SAFETY: a block of a kept size was allocated with its class's layout.
            Some(class) => unsafe { self.keep(ptr, class) },
            // SAFETY: the caller's promise; other blocks were allocated with their own layout.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's promise that the new layout is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            // SAFETY: neither size is kept, so System allocated the block with `layout`.
            (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
            // The block already has its class's size.
            (Some(old), Some(new)) if old == new => ptr,
            _ => {
                // SAFETY: the caller's promises, passed on.
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and do not overlap.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                moved
            }
        }
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
    fn every_kept_size_rounds_up_by_at_most_a_quarter() {
        assert_eq!(class_index(SMALLEST_KEPT), 0);
        assert_eq!(class_size(0), SMALLEST_KEPT);
        assert_eq!(class_index(LARGEST_KEPT), CLASSES - 1);
        assert_eq!(class_size(CLASSES - 1), LARGEST_KEPT);
        assert_eq!(CLASSES, 33);
        for class in 0..CLASSES {
            assert_eq!(class_index(class_size(class)), class);
        }
        for size in (SMALLEST_KEPT..=LARGEST_KEPT).step_by(997) {
            let class = class_index(size);
            assert!(class_size(class) >= size, "{size} in class {class}");
            assert!(
                class == 0 || class_size(class - 1) < size,
                "{size} not in the smallest class"
            );
            assert!(
                class_size(class) * 4 <= size * 5 + 4,
                "{size} rounded to {}",
                class_size(class)
            );
        }
        assert_eq!(class_size(class_index(100_000)), 114_688);
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("a valid layout")
    }

    #[test]
    fn a_freed_block_serves_the_next_request_of_its_class() {
        let heap = ReusingAllocator::new();
        // SAFETY: every block is used within its layout and freed with it, once.
        unsafe {
            let first = heap.alloc(layout(100_000, 32));
            assert!(!first.is_null());
            assert_eq!(first as usize % KEPT_ALIGN, 0);
            first.write_bytes(7, 100_000);
            heap.dealloc(first, layout(100_000, 32));
            assert_eq!(heap.stats().kept_bytes, 114_688);

            let second = heap.alloc(layout(99_000, 16));
            assert_eq!(second, first, "the kept block was not reused");
            second.add(98_999).write(1);
            heap.dealloc(second, layout(99_000, 16));

            let zeroed = heap.alloc_zeroed(layout(110_000, 8));
            assert_eq!(zeroed, first);
            assert!(std::slice::from_raw_parts(zeroed, 110_000)
                .iter()
                .all(|&b| b == 0));
            heap.dealloc(zeroed, layout(110_000, 8));

            // Another class, a small block and an over-aligned one do not take it.
            let other = heap.alloc(layout(200_000, 16));
            assert_ne!(other, first);
            heap.dealloc(other, layout(200_000, 16));
            let small = heap.alloc(layout(1000, 8));
            heap.dealloc(small, layout(1000, 8));
            let aligned = heap.alloc(layout(100_000, 4096));
            assert_eq!(aligned as usize % 4096, 0);
            heap.dealloc(aligned, layout(100_000, 4096));
        }
        assert_eq!(
            heap.stats(),
            ReuseStats {
                reused: 2,
                from_system: 2,
                given_back: 0,
                kept_bytes: 114_688 + class_size(class_index(200_000)),
            }
        );
    }

    #[test]
    fn reallocation_keeps_the_contents_across_classes() {
        let heap = ReusingAllocator::new();
        // SAFETY: every block is used within its layout and freed with it, once.
        unsafe {
            let mut block = heap.alloc(layout(1000, 8));
            let mut size = 1000;
            for (i, byte) in std::slice::from_raw_parts_mut(block, size)
                .iter_mut()
                .enumerate()
            {
                *byte = i as u8;
            }
            // Small to kept, within the class, to another class, back to small.
            for new_size in [40_000, 40_960, 300_000, 2000] {
                let before = block;
                block = heap.realloc(block, layout(size, 8), new_size);
                assert!(!block.is_null());
                if new_size == 40_960 {
                    assert_eq!(block, before, "a block resized within its class moved");
                }
                let kept = size.min(new_size).min(1000);
                let contents = std::slice::from_raw_parts(block, kept);
                assert!(contents.iter().enumerate().all(|(i, &b)| b == i as u8));
                size = new_size;
            }
            heap.dealloc(block, layout(size, 8));
        }
    }

    #[test]
    fn kept_blocks_stay_within_their_bounds() {
        let heap = ReusingAllocator::new();
        let big = layout(4 << 20, 16);
        let small = layout(64 << 10, 16);
        // SAFETY: every block is used within its layout and freed with it, once.
        unsafe {
            let smalls: Vec<*mut u8> = (0..10).map(|_| heap.alloc(small)).collect();
            for &block in &smalls {
                heap.dealloc(block, small);
            }
            let stats = heap.stats();
            assert_eq!(stats.kept_bytes, MAX_KEPT_PER_CLASS * (64 << 10));
            assert_eq!(
                stats.given_back, 2,
                "a class keeps at most {MAX_KEPT_PER_CLASS}"
            );

            // Four 4 MiB blocks fill the bytes bound: the class used least recently (the small
            // one) goes back first, then a fifth big block is not kept.
            let bigs: Vec<*mut u8> = (0..5).map(|_| heap.alloc(big)).collect();
            for &block in &bigs {
                heap.dealloc(block, big);
            }
        }
        let stats = heap.stats();
        assert_eq!(stats.kept_bytes, MAX_KEPT_BYTES);
        assert_eq!(stats.given_back, 2 + MAX_KEPT_PER_CLASS as u64 + 1);
        assert_eq!(stats.reused, 0);
    }

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
