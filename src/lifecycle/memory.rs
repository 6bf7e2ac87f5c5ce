//! The process's heap: large blocks kept for reuse, and freed heap handed back on request.
//!
//! Each frame through tract allocates its intermediate tensors afresh and frees them when the
//! frame is done (tract 0.23 keeps only its matrix products' scratch space between runs): some
//! hundreds of kilobytes in blocks of 32 KiB and more. Under glibc alone that churn fragments
//! the main arena: in an hour-long soak (`scripts/soak`; the README's "Months unattended") the
//! arena was three quarters free, in chunks of 40 to 270 KiB between blocks still in use, and
//! resident memory climbed in steps. [`ReusingAllocator`] keeps freed blocks of those sizes and
//! hands them to the next request of the same size class, so that a frame's tensors take the
//! blocks the frame before freed, and glibc sees requests of those sizes only for what the
//! bounds leave out. When a model is dropped, [`give_back_freed`] hands what loading and running
//! it left back to the system. With both, resident memory stayed within 1.2 % over the last 30
//! minutes of an hour-long soak.
//!
//! What was tried before, each in a soak: handing freed heap back once a minute (`malloc_trim`)
//! turned the climb into a sawtooth up to 3.7 MiB high, the next minute's frames touching the
//! same pages again; keeping the size from which glibc maps blocks on their own at 128 KiB made
//! inference 70 % slower (tract's tensors mapped and unmapped on every frame); starting that size
//! at glibc's ceiling with the arenas bounded held more memory and still climbed; mimalloc held
//! twice as much.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The smallest block kept for reuse. Smaller blocks are glibc's thread caches' and bins' job,
/// which serve them without growing the heap.
pub const SMALLEST_KEPT: usize = 32 << 10;
/// The largest block kept for reuse; larger ones are glibc's (mapped on their own).
pub const LARGEST_KEPT: usize = 8 << 20;
/// At most this many bytes are kept free for reuse: the bound on what keeping adds to resident
/// memory, besides rounding live blocks up to their class (at most a quarter).
pub const MAX_KEPT_BYTES: usize = 16 << 20;
/// At most this many free blocks are kept per size class: a frame's tensors of one size are
/// rarely alive more than a few at once.
pub const MAX_KEPT_PER_CLASS: usize = 8;
/// A block kept unused for this many requests and frees of kept sizes (some 55 000 frames of the
/// bundled detector in `bench`, 76 a frame: about 15 minutes at 60 frames a second; fewer
/// in a run, whose capture and samples ask for such sizes too) goes back to the system: a size
/// no longer seen is not held for good. Long, because sizes asked for now and then (a sample's
/// or a snapshot's encoding, a preview frame) went back and were asked for again when it was
/// 100 000 (1 400 frames), and resident memory crept up between model switches in a soak. A block
/// each frame takes again stays. When a frame frees more than the bounds allow, the blocks
/// beyond them go back at once, the same ones every frame. The count stands still while no frame
/// runs (paused, a camera lost): what is kept then stays kept, at most [`MAX_KEPT_BYTES`]. What
/// loading a model left goes back when the model it replaced is dropped ([`give_back_freed`]).
const STALE_AFTER: u64 = 1 << 22;
/// Every block of a kept size is allocated with this alignment, so that a freed block serves any
/// request of its class: tract's tensors ask for 64 bytes on AVX-512, 32 on AVX, 16 on ARM; its
/// packing buffers for up to 256.
const KEPT_ALIGN: usize = 256;
/// Size classes: four per doubling (a request rounds up by at most a quarter), from
/// [`SMALLEST_KEPT`] to [`LARGEST_KEPT`].
const CLASSES: usize = class_index(LARGEST_KEPT) + 1;

/// The heap of `lookout` (its `#[global_allocator]` is [`GlobalHeap`]).
pub static HEAP: ReusingAllocator = ReusingAllocator::new(System);

/// The global allocator of the `lookout` binary: [`HEAP`].
pub struct GlobalHeap;

/// An allocator over another (the system's), keeping freed blocks of 32 KiB to 8 MiB (at most
/// [`MAX_KEPT_BYTES`], [`MAX_KEPT_PER_CLASS`] per class) and handing them out again by size class.
/// Blocks of those sizes are asked of the inner allocator rounded up to their class and aligned
/// to 256 bytes, so that any freed one serves any request of its class; all others pass through.
pub struct ReusingAllocator<A: GlobalAlloc = System> {
    inner: A,
    kept: Mutex<Kept>,
    reused: AtomicU64,
    from_inner: AtomicU64,
    given_back: AtomicU64,
}

/// What the allocator did with requests of kept sizes since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReuseStats {
    /// Requests served with a kept block.
    pub reused: u64,
    /// Requests the inner allocator served.
    pub from_system: u64,
    /// Free blocks handed back to the inner allocator (bounds, staleness, or
    /// [`ReusingAllocator::release_kept`]).
    pub given_back: u64,
    /// Bytes kept free for reuse now.
    pub kept_bytes: usize,
}

struct Kept {
    classes: [Class; CLASSES],
    bytes: usize,
    /// Counts requests and frees of kept sizes: the time a block was kept at, so that a stale
    /// one can be told apart.
    clock: u64,
    /// [`STALE_AFTER`], shorter in tests.
    stale_after: u64,
}

/// A class's free blocks, oldest first: the last one kept is the first handed out, so the
/// first ones are those no frame took again.
#[derive(Clone, Copy)]
struct Class {
    blocks: [*mut u8; MAX_KEPT_PER_CLASS],
    kept_at: [u64; MAX_KEPT_PER_CLASS],
    len: usize,
}

// SAFETY: the pointers are free blocks owned by the allocator alone, only touched under the
// mutex.
unsafe impl Send for Kept {}

impl<A: GlobalAlloc> ReusingAllocator<A> {
    /// An allocator over `inner`, keeping nothing yet.
    pub const fn new(inner: A) -> Self {
        Self::with_stale_after(inner, STALE_AFTER)
    }

    /// An allocator over `inner` whose kept blocks go back after `stale_after` ticks.
    const fn with_stale_after(inner: A, stale_after: u64) -> Self {
        const EMPTY: Class = Class {
            blocks: [std::ptr::null_mut(); MAX_KEPT_PER_CLASS],
            kept_at: [0; MAX_KEPT_PER_CLASS],
            len: 0,
        };
        ReusingAllocator {
            inner,
            kept: Mutex::new(Kept {
                classes: [EMPTY; CLASSES],
                bytes: 0,
                clock: 0,
                stale_after,
            }),
            reused: AtomicU64::new(0),
            from_inner: AtomicU64::new(0),
            given_back: AtomicU64::new(0),
        }
    }

    /// What the allocator did so far.
    pub fn stats(&self) -> ReuseStats {
        ReuseStats {
            reused: self.reused.load(Ordering::Relaxed),
            from_system: self.from_inner.load(Ordering::Relaxed),
            given_back: self.given_back.load(Ordering::Relaxed),
            kept_bytes: self.lock().bytes,
        }
    }

    /// Hands every kept block back to the inner allocator: before memory is measured, and when
    /// it has none left to give.
    pub fn release_kept(&self) {
        loop {
            let block = {
                let mut kept = self.lock();
                let kept = &mut *kept;
                let Some(class) = (0..CLASSES).find(|&class| kept.classes[class].len > 0) else {
                    return;
                };
                kept.pop(class)
            };
            // SAFETY: a kept block of a class was allocated with its layout and is free.
            unsafe { self.give_back(block.0, block.1) };
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
        let (block, stale) = {
            let mut kept = self.lock();
            match kept.tick() {
                // The class's only block, just stale but asked for: handed out rather than
                // given back and asked for again. (A spare one below a block in use goes back.)
                Some((block, stale_class))
                    if stale_class == class && kept.classes[class].len == 0 =>
                {
                    (Some(block), None)
                }
                stale => {
                    let block = (kept.classes[class].len > 0).then(|| kept.pop(class).0);
                    (block, stale)
                }
            }
        };
        self.give_back_stale(stale);
        if block.is_some() {
            self.reused.fetch_add(1, Ordering::Relaxed);
        }
        block
    }

    /// What `ask` gets of the inner allocator; if it has nothing left, what it gets after the
    /// kept blocks were given back to it.
    fn or_after_release(&self, ask: impl Fn() -> *mut u8) -> *mut u8 {
        let block = ask();
        if !block.is_null() || self.lock().bytes == 0 {
            return block;
        }
        self.release_kept();
        ask()
    }

    /// A new block of `class` from the inner allocator.
    fn new_block(&self, class: usize) -> *mut u8 {
        // SAFETY: a class layout has a non-zero size.
        let block = self.or_after_release(|| unsafe { self.inner.alloc(class_layout(class)) });
        if !block.is_null() {
            self.from_inner.fetch_add(1, Ordering::Relaxed);
        }
        block
    }

    /// Keeps `block` of `class` for reuse if the bounds allow, or gives it back. The inner
    /// allocator is called outside the lock: freeing a large block can take a while (unmapping
    /// it).
    ///
    /// # Safety
    /// `block` was allocated by the inner allocator with [`class_layout`] of `class` and is no
    /// longer used.
    unsafe fn keep(&self, block: *mut u8, class: usize) {
        let (kept, stale) = {
            let mut kept = self.lock();
            let stale = kept.tick();
            (kept.keep(block, class), stale)
        };
        self.give_back_stale(stale);
        if !kept {
            // SAFETY: the caller's promise.
            unsafe { self.give_back(block, class) };
        }
    }

    /// Gives back the block [`Kept::tick`] found stale, if any.
    fn give_back_stale(&self, stale: Option<(*mut u8, usize)>) {
        if let Some((block, class)) = stale {
            // SAFETY: a kept block of a class was allocated with its layout and is free.
            unsafe { self.give_back(block, class) };
        }
    }

    /// # Safety
    /// `block` was allocated by the inner allocator with [`class_layout`] of `class` and is no
    /// longer used.
    unsafe fn give_back(&self, block: *mut u8, class: usize) {
        self.given_back.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's promise.
        unsafe { self.inner.dealloc(block, class_layout(class)) };
    }
}

impl Kept {
    /// Takes the last kept block of `class`, which has one.
    fn pop(&mut self, class: usize) -> (*mut u8, usize) {
        let slot = &mut self.classes[class];
        slot.len -= 1;
        self.bytes -= class_size(class);
        (slot.blocks[slot.len], class)
    }

    /// Takes the oldest kept block of `class`, which has one.
    fn pop_oldest(&mut self, class: usize) -> (*mut u8, usize) {
        let slot = &mut self.classes[class];
        let block = slot.blocks[0];
        slot.blocks.copy_within(1..slot.len, 0);
        slot.kept_at.copy_within(1..slot.len, 0);
        slot.len -= 1;
        self.bytes -= class_size(class);
        (block, class)
    }

    /// Counts a request or a free of a kept size; takes the oldest kept block if that makes it
    /// stale. Blocks are kept at distinct ticks, so at most one becomes stale per tick, and none
    /// stays kept longer than `stale_after` ticks.
    fn tick(&mut self) -> Option<(*mut u8, usize)> {
        self.clock += 1;
        let oldest = (0..CLASSES)
            .filter(|&c| self.classes[c].len > 0)
            .min_by_key(|&c| self.classes[c].kept_at[0])?;
        (self.clock - self.classes[oldest].kept_at[0] > self.stale_after)
            .then(|| self.pop_oldest(oldest))
    }

    /// Keeps `block` of `class` if the bounds allow; whether it did.
    fn keep(&mut self, block: *mut u8, class: usize) -> bool {
        let size = class_size(class);
        let clock = self.clock;
        let slot = &mut self.classes[class];
        if slot.len == MAX_KEPT_PER_CLASS || self.bytes + size > MAX_KEPT_BYTES {
            return false;
        }
        slot.blocks[slot.len] = block;
        slot.kept_at[slot.len] = clock;
        slot.len += 1;
        self.bytes += size;
        true
    }
}

impl<A: GlobalAlloc> Drop for ReusingAllocator<A> {
    fn drop(&mut self) {
        self.release_kept();
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

/// The doubling [`SMALLEST_KEPT`] falls in (its size minus one's highest bit).
const FIRST_DOUBLING: usize = (usize::BITS - 1 - (SMALLEST_KEPT - 1).leading_zeros()) as usize;

/// The class of a size between [`SMALLEST_KEPT`] and [`LARGEST_KEPT`]: the doubling it falls
/// in, and which quarter of it, rounding up.
const fn class_index(size: usize) -> usize {
    let above = size - 1;
    let doubling = (usize::BITS - 1 - above.leading_zeros()) as usize;
    // 4 to 7: the size rounds up to (quarter + 1) quarters of the doubling.
    let quarter = above >> (doubling - 2);
    // SMALLEST_KEPT is the last quarter of its doubling: class 0.
    (doubling - FIRST_DOUBLING) * 4 + quarter - 7
}

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

// SAFETY: every block comes from the inner allocator with the layout it is given back with:
// blocks of a class always with the class's layout, all others with their own.
unsafe impl<A: GlobalAlloc> GlobalAlloc for ReusingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            Some(class) => match self.take(class) {
                Some(block) => block,
                None => self.new_block(class),
            },
            // SAFETY: the caller's promise that `layout` has a non-zero size.
            None => self.or_after_release(|| unsafe { self.inner.alloc(layout) }),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            Some(_) => {
                // Only the bytes asked for: a block aligned beyond malloc's own comes from
                // posix_memalign, which has no zeroed pages to offer anyway.
                // SAFETY: the caller's promise.
                let block = unsafe { self.alloc(layout) };
                if !block.is_null() {
                    // SAFETY: the block has its class's size, at least `layout.size()`.
                    unsafe { block.write_bytes(0, layout.size()) };
                }
                block
            }
            // SAFETY: the caller's promise that `layout` has a non-zero size.
            None => self.or_after_release(|| unsafe { self.inner.alloc_zeroed(layout) }),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class_of(layout) {
            // SAFETY: a block of a kept size was allocated with its class's layout.
            Some(class) => unsafe { self.keep(ptr, class) },
            // SAFETY: the caller's promise; other blocks were allocated with their own layout.
            None => unsafe { self.inner.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's promise that the new layout is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            // SAFETY: neither size is kept, so the block was allocated with `layout`; a failed
            // reallocation leaves it as it was, to be tried again.
            (None, None) => {
                self.or_after_release(|| unsafe { self.inner.realloc(ptr, layout, new_size) })
            }
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

// SAFETY: forwards to HEAP, a sound allocator.
unsafe impl GlobalAlloc for GlobalHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's promises, passed on.
        unsafe { HEAP.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's promises, passed on.
        unsafe { HEAP.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's promises, passed on.
        unsafe { HEAP.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's promises, passed on.
        unsafe { HEAP.realloc(ptr, layout, new_size) }
    }
}

/// The process's memory now, as the kernel counts it and [`HEAP`] keeps it: for the console's
/// `status`, `/api/status` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryUse {
    /// Resident memory (`VmRSS`).
    pub resident_bytes: u64,
    /// Its anonymous part (`RssAnon`): the heap and the stacks, where a leak would show; the
    /// rest is the pages of the binary and the libraries read so far.
    pub anonymous_bytes: Option<u64>,
    /// Free heap kept for reuse: at most this much of the anonymous memory (a block's pages
    /// past what its requests wrote may never have been touched).
    pub kept_bytes: u64,
    /// Requests served with kept blocks since the start.
    pub reused_blocks: u64,
}

impl MemoryUse {
    /// Read from `/proc/self/status`; `None` where the kernel does not say.
    pub fn now() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Self::from_status(&status, HEAP.stats())
    }

    /// From the text of a `/proc/<pid>/status` and the heap's figures.
    pub fn from_status(status: &str, heap: ReuseStats) -> Option<Self> {
        Some(MemoryUse {
            resident_bytes: status_bytes(status, "VmRSS")?,
            anonymous_bytes: status_bytes(status, "RssAnon"),
            kept_bytes: heap.kept_bytes as u64,
            reused_blocks: heap.reused,
        })
    }

    /// One line for the console's `status`.
    pub fn status(&self) -> String {
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        let anonymous = match self.anonymous_bytes {
            Some(bytes) => format!(", {:.1} MiB of it heap and stacks", mib(bytes)),
            None => String::new(),
        };
        format!(
            "memory {:.1} MiB resident{anonymous}, {:.1} MiB free heap kept for reuse",
            mib(self.resident_bytes),
            mib(self.kept_bytes)
        )
    }
}

/// A `Name:  1234 kB` line of `/proc/<pid>/status`, in bytes.
pub fn status_bytes(status: &str, name: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?;
    let mut words = line.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next()? {
        "kB" => value.checked_mul(1024),
        _ => None,
    }
}

/// Hands the heap's free pages back to the system, the blocks [`HEAP`] kept first; whether any
/// were (by glibc's count). Done when a model was dropped (a switch's trial passed, a rollback,
/// a failed load): what loading and running it left would otherwise stay resident as free heap
/// between blocks in use, a step in resident memory at every switch. The next frame takes its
/// blocks again. With another C library than glibc only the kept blocks go back.
pub fn give_back_freed() -> bool {
    HEAP.release_kept();
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

    /// Staleness in the tests' ticks: short enough to reach, long enough for their set-ups.
    const STALE_AFTER: u64 = 100_000;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;

    /// The system's allocator, checking that every block is freed with the layout it was
    /// allocated with (the system's `free` would not notice), and able to fail once.
    #[derive(Default)]
    struct Recording {
        live: Mutex<HashMap<usize, Layout>>,
        fail_next: AtomicBool,
    }

    // SAFETY: System's blocks, recorded.
    unsafe impl GlobalAlloc for &Recording {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if self.fail_next.swap(false, Ordering::SeqCst) {
                return std::ptr::null_mut();
            }
            // SAFETY: the caller's promises.
            let block = unsafe { System.alloc(layout) };
            assert!(!block.is_null());
            let mut live = self.live.lock().expect("not poisoned");
            live.insert(block as usize, layout);
            block
        }

        unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
            let recorded = self
                .live
                .lock()
                .expect("not poisoned")
                .remove(&(block as usize));
            assert_eq!(recorded, Some(layout), "freed with another layout");
            // SAFETY: the caller's promises, checked above.
            unsafe { System.dealloc(block, layout) }
        }
    }

    impl Recording {
        fn live(&self) -> usize {
            self.live.lock().expect("not poisoned").len()
        }

        fn holds(&self, block: *mut u8) -> bool {
            self.live
                .lock()
                .expect("not poisoned")
                .contains_key(&(block as usize))
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("a valid layout")
    }

    #[test]
    fn every_kept_size_rounds_up_by_at_most_a_quarter() {
        assert_eq!(class_index(SMALLEST_KEPT), 0);
        assert_eq!(class_size(0), SMALLEST_KEPT);
        assert_eq!(class_index(SMALLEST_KEPT + 1), 1);
        assert_eq!(class_size(1), 40 << 10);
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
        assert_eq!(class_of(layout(SMALLEST_KEPT - 1, 8)), None);
        assert_eq!(class_of(layout(LARGEST_KEPT + 1, 8)), None);
        assert_eq!(class_of(layout(100_000, 512)), None);
    }

    #[test]
    fn a_freed_block_serves_the_next_request_of_its_class() {
        let system = Recording::default();
        let heap = ReusingAllocator::new(&system);
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
                kept_bytes: 114_688 + 229_376,
            }
        );
        assert_eq!(system.live(), 2, "the two kept blocks");
        drop(heap);
        assert_eq!(system.live(), 0, "kept blocks not given back");
    }

    #[test]
    fn reallocation_keeps_the_contents_across_classes() {
        let system = Recording::default();
        let heap = ReusingAllocator::new(&system);
        // SAFETY: every block is used within its layout and freed with it, once.
        unsafe {
            let mut block = heap.alloc(layout(1000, 8));
            let mut size = 1000;
            std::slice::from_raw_parts_mut(block, size).fill(1);
            // Small to kept, within the class, to another class, down a class, back to small.
            for (step, new_size) in [40_000, 40_960, 300_000, 50_000, 2000]
                .into_iter()
                .enumerate()
            {
                let before = block;
                block = heap.realloc(block, layout(size, 8), new_size);
                assert!(!block.is_null());
                if new_size == 40_960 {
                    assert_eq!(block, before, "a block resized within its class moved");
                }
                let contents = std::slice::from_raw_parts_mut(block, new_size);
                let carried = size.min(new_size);
                assert!(contents[..carried].iter().all(|&b| b == step as u8 + 1));
                // Every byte of the new size is writable.
                contents.fill(step as u8 + 2);
                size = new_size;
            }
            heap.dealloc(block, layout(size, 8));
        }
        drop(heap);
        assert_eq!(system.live(), 0);
    }

    #[test]
    fn kept_blocks_stay_within_their_bounds_and_stale_ones_go_back() {
        let system = Recording::default();
        let heap = ReusingAllocator::with_stale_after(&system, STALE_AFTER);
        let small = layout(64 << 10, 16);
        let big = layout(4 << 20, 16);
        let churned = layout(3 << 20, 16);
        let free_one = |layout: Layout| {
            // SAFETY: the block is freed with its layout, once.
            unsafe { heap.dealloc(heap.alloc(layout), layout) }
        };
        // Ticks 1 to 20: 8 small blocks kept at ticks 11 to 18, 2 beyond the class's bound.
        // SAFETY: every block is used within its layout and freed with it, once.
        let smalls: Vec<*mut u8> = (0..10).map(|_| unsafe { heap.alloc(small) }).collect();
        // SAFETY: as above.
        unsafe {
            for &block in &smalls {
                heap.dealloc(block, small);
            }
            assert_eq!(heap.stats().kept_bytes, MAX_KEPT_PER_CLASS * (64 << 10));
            assert_eq!(
                heap.stats().given_back,
                2,
                "a class keeps at most {MAX_KEPT_PER_CLASS}"
            );

            // Ticks 21 to 28: three 4 MiB blocks kept at 25 to 27; the fourth would pass the
            // bytes bound.
            let bigs: Vec<*mut u8> = (0..4).map(|_| heap.alloc(big)).collect();
            for &block in &bigs {
                heap.dealloc(block, big);
            }
            assert_eq!(heap.stats().kept_bytes, (1 << 19) + (12 << 20));
            assert_eq!(heap.stats().given_back, 3);
        }
        // Ticks 29 and 30, then a 3 MiB block taken and kept again at every frame, up to tick
        // STALE_AFTER + 18: the small blocks kept at 11 to 17 are now older than STALE_AFTER
        // and went back, the one kept at 18 is exactly STALE_AFTER old and stays.
        free_one(churned);
        let frames = (STALE_AFTER - 12) / 2;
        for _ in 0..frames {
            free_one(churned);
        }
        let stats = heap.stats();
        assert_eq!(stats.kept_bytes, (64 << 10) + (15 << 20));
        assert_eq!(stats.given_back, 3 + 7);
        assert_eq!(stats.reused, frames);
        assert!(
            system.holds(smalls[7]),
            "the youngest small block went back"
        );
        assert!(smalls[..7].iter().all(|&block| !system.holds(block)));
        free_one(churned);
        assert_eq!(heap.stats().kept_bytes, 15 << 20);
        // The big blocks, kept at 25 to 27, go back by tick STALE_AFTER + 28; the one in use
        // stays.
        for _ in 0..4 {
            free_one(churned);
        }
        let stats = heap.stats();
        assert_eq!(stats.kept_bytes, 3 << 20);
        assert_eq!(stats.given_back, 3 + MAX_KEPT_PER_CLASS as u64 + 3);
        assert_eq!(system.live(), 1);
        heap.release_kept();
        assert_eq!(heap.stats().kept_bytes, 0);
        assert_eq!(system.live(), 0);
    }

    #[test]
    fn a_spare_block_goes_back_and_the_one_each_frame_takes_stays() {
        let system = Recording::default();
        let heap = ReusingAllocator::with_stale_after(&system, STALE_AFTER);
        let tensor = layout(200_000, 32);
        // SAFETY: every block is used within its layout and freed with it, once.
        unsafe {
            // A warm-up frame holds two blocks of the class; later frames one.
            let (spare, first) = (heap.alloc(tensor), heap.alloc(tensor));
            heap.dealloc(spare, tensor);
            heap.dealloc(first, tensor);
            let mut frame_blocks = std::collections::HashSet::new();
            for _ in 0..STALE_AFTER {
                let block = heap.alloc(tensor);
                frame_blocks.insert(block);
                heap.dealloc(block, tensor);
            }
            assert_eq!(frame_blocks.len(), 1, "each frame got the same block");
            assert!(frame_blocks.contains(&first));
            assert!(!system.holds(spare), "the spare block was kept");
            assert!(system.holds(first));
        }
        let stats = heap.stats();
        assert_eq!((stats.from_system, stats.given_back), (2, 1));
        assert_eq!(stats.kept_bytes, class_size(class_index(200_000)));
    }

    #[test]
    fn kept_blocks_are_given_back_when_the_system_has_none_left() {
        let system = Recording::default();
        let heap = ReusingAllocator::new(&system);
        // SAFETY: every block is used within its layout and freed with it, once.
        unsafe {
            let block = heap.alloc(layout(1 << 20, 8));
            heap.dealloc(block, layout(1 << 20, 8));
            system.fail_next.store(true, Ordering::SeqCst);
            let other = heap.alloc(layout(2 << 20, 8));
            assert!(!other.is_null(), "not tried again");
            assert_eq!(heap.stats().kept_bytes, 0);
            assert_eq!(system.live(), 1);
            heap.dealloc(other, layout(2 << 20, 8));
            // Blocks of other sizes too.
            system.fail_next.store(true, Ordering::SeqCst);
            let small = heap.alloc(layout(1000, 8));
            assert!(!small.is_null(), "not tried again");
            assert_eq!(heap.stats().kept_bytes, 0);
            heap.dealloc(small, layout(1000, 8));
        }
        assert_eq!(heap.stats().from_system, 2);
        assert_eq!(system.live(), 0);
    }

    #[test]
    fn memory_is_read_from_the_status_file_in_bytes() {
        let status =
            "Name:\tlookout\nVmHWM:\t   52344 kB\nVmRSS:\t 51000 kB\nRssAnon:\t  8424 kB\n";
        let heap = ReuseStats {
            reused: 7,
            kept_bytes: 3 << 19,
            ..ReuseStats::default()
        };
        let memory = MemoryUse::from_status(status, heap).expect("VmRSS");
        assert_eq!(
            memory,
            MemoryUse {
                resident_bytes: 51000 * 1024,
                anonymous_bytes: Some(8424 * 1024),
                kept_bytes: 3 << 19,
                reused_blocks: 7,
            }
        );
        assert_eq!(
            memory.status(),
            "memory 49.8 MiB resident, 8.2 MiB of it heap and stacks, 1.5 MiB free heap kept for reuse"
        );
        assert_eq!(status_bytes(status, "VmHWM"), Some(52344 * 1024));
        assert_eq!(status_bytes("VmRSS:\t 10 kB\n", "VmHWM"), None);
        assert_eq!(status_bytes("VmHWM:\t 10 MB\n", "VmHWM"), None);
        assert_eq!(status_bytes("VmHWM:\t lots kB\n", "VmHWM"), None);
        assert_eq!(status_bytes("VmRSSx:\t 10 kB\n", "VmRSS"), None);
        let own = MemoryUse::now().expect("Linux says");
        assert!(own.resident_bytes > 1 << 20, "{own:?}");
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
