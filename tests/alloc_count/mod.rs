//! A counting global allocator for the "allocates nothing" tests, shared by every test binary
//! that needs one (`mod alloc_count;` installs it as that binary's global allocator).
//!
//! Counts per thread: libtest's own threads (the main thread bookkeeping a test it has just
//! spawned, the output capture) allocate while a test runs, and on a loaded 2-core machine that
//! lands inside the measured window often enough to fail a global count (CI saw 4 such
//! allocations). The code under test is single-threaded, so the current thread's count is the
//! one that matters.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct CountingAlloc;

thread_local! {
    // `const` and `Cell<usize>` (no destructor) so touching it never allocates itself.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with` because the allocator also runs while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: forwards every call to `System` unchanged; counting has no effect on the memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f` and returns how many allocations this thread made during it, with `f`'s result.
pub fn allocations_during<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    (ALLOCATIONS.with(Cell::get) - before, result)
}

#[test]
fn the_counter_sees_this_threads_allocations_only() {
    let (mine, v) = allocations_during(|| std::hint::black_box(vec![1u8; 10]));
    assert!(mine >= 1, "a Vec allocation on this thread is counted");
    drop(v);
    let (mine, ()) = allocations_during(|| {
        std::thread::spawn(|| drop(std::hint::black_box(vec![0u8; 64])))
            .join()
            .unwrap();
    });
    // Spawning allocates on this thread (the handle), but the other thread's Vec is not ours:
    // count only what a spawn-and-join costs here, measured the same way without the Vec.
    let (baseline, ()) = allocations_during(|| std::thread::spawn(|| {}).join().unwrap());
    assert_eq!(
        mine, baseline,
        "another thread's allocations are not counted here"
    );
}
