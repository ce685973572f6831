//! Resampling on top of rubato, into caller-owned buffers. OWNER: audio helper.

/// Streaming 8 kHz -> 16 kHz for one 20 ms frame at a time; allocates nothing after `new`.
pub struct Upsampler8kTo16k {}

impl Upsampler8kTo16k {
    pub fn new() -> Self {
        Self {}
    }

    /// Placeholder: sample-and-hold until the rubato version lands.
    pub fn process(&mut self, input: &[i16; 160], out: &mut [i16; 320]) {
        for (i, s) in input.iter().enumerate() {
            out[2 * i] = *s;
            out[2 * i + 1] = *s;
        }
    }
}

impl Default for Upsampler8kTo16k {
    fn default() -> Self {
        Self::new()
    }
}
