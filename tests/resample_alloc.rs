//! The 8k→16k upsampler runs on the per-frame audio path: after `new` it must never allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use kav::voice::resample::Upsampler8kTo16k;

/// Counts allocations made by the current thread only, so the test harness's own threads do not
/// disturb the count.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the thread-local may already be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> usize {
    ALLOCATIONS.with(|c| c.get())
}

#[test]
fn upsampler_process_does_not_allocate() {
    let mut up = Upsampler8kTo16k::new();
    let mut input = [0i16; 160];
    let mut out = [0i16; 320];
    for (i, s) in input.iter_mut().enumerate() {
        *s = ((i as f32 * 0.7).sin() * 8000.0) as i16;
    }

    let before = allocations();
    for _ in 0..500 {
        up.process(&input, &mut out);
    }
    up.reset();
    up.process(&input, &mut out);
    let during = allocations() - before;

    assert_eq!(
        during, 0,
        "Upsampler8kTo16k allocated {during} times in 501 frames"
    );
    // The counter works: a Vec allocation is seen.
    let probe = allocations();
    drop(std::hint::black_box(vec![0u8; 16]));
    assert!(allocations() > probe);
}
