//! The 8k→16k upsampler runs on the per-frame audio path: after `new` it must never allocate.

mod alloc_count;
use alloc_count::allocations_during;

use kav::voice::resample::Upsampler8kTo16k;

#[test]
fn upsampler_process_does_not_allocate() {
    let mut up = Upsampler8kTo16k::new();
    let mut input = [0i16; 160];
    let mut out = [0i16; 320];
    for (i, s) in input.iter_mut().enumerate() {
        *s = ((i as f32 * 0.7).sin() * 8000.0) as i16;
    }

    let (during, ()) = allocations_during(|| {
        for _ in 0..500 {
            up.process(&input, &mut out);
        }
        up.reset();
        up.process(&input, &mut out);
    });

    assert_eq!(
        during, 0,
        "Upsampler8kTo16k allocated {during} times in 501 frames"
    );
}
