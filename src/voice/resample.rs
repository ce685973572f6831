//! Resampling on top of rubato, into caller-owned buffers. OWNER: audio helper.
//!
//! Two tools: [`Upsampler8kTo16k`] sits on the 20 ms frame path (caller audio for 16 kHz
//! recognisers) and therefore never allocates and has a fixed, small delay; [`Resampler`] is for
//! everything off the frame path (TTS output, audio files) and accepts any rates and any piece
//! sizes.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Indexing, Resampler as _, ResamplerConstructionError,
    SincInterpolationParameters, SincInterpolationType, WindowFunction,
};

const FRAME_8K: usize = 160;
const FRAME_16K: usize = 320;

/// Filter of the 8k→16k upsampler. 48 taps with a Blackman-Harris window and the cutoff pushed to
/// 0.9 × 4 kHz keeps the telephone band flat (−0.0 dB at 3 kHz, −1.3 dB at 3.4 kHz) while images
/// stay > 90 dB down, at a delay of only 3 ms. Measured in this module's tests.
const UP_SINC_LEN: usize = 48;
const UP_CUTOFF: f32 = 0.9;

/// Streaming 8 kHz → 16 kHz for one 20 ms frame at a time; allocates nothing after `new`.
///
/// Rubato's sinc resampler with ratio exactly 2 and `Nearest` interpolation over 2× oversampled
/// sincs, i.e. an exact polyphase FIR: no interpolation error and one 48-tap dot product per
/// output sample.
///
/// Delay: exactly [`Self::LATENCY_SAMPLES`] = 50 samples at 16 kHz (3.125 ms): an input sample at
/// 8 kHz index `k` appears at 16 kHz index `2k + 50`. 46 samples are the filter's group delay;
/// 4 more because rubato's first chunk yields 316 samples, so the first frame starts with 4
/// samples of silence to keep every frame exactly 320 long.
pub struct Upsampler8kTo16k {
    inner: Async<f32>,
    input: [f32; FRAME_8K],
    /// Rubato output beyond the current frame is kept at the start and emitted next frame.
    scratch: Vec<f32>,
    carry: usize,
    initial_carry: usize,
}

impl Upsampler8kTo16k {
    /// Delay from input to output in 16 kHz samples (see the type's documentation).
    pub const LATENCY_SAMPLES: usize = 50;

    pub fn new() -> Self {
        let params = SincInterpolationParameters::new(UP_SINC_LEN, WindowFunction::BlackmanHarris)
            .f_cutoff(UP_CUTOFF)
            .oversampling_factor(2)
            .interpolation(SincInterpolationType::Nearest);
        let inner = Async::<f32>::new_sinc(2.0, 1.0, &params, FRAME_8K, 1, FixedAsync::Input)
            .expect("constant, valid resampler parameters");
        let first = inner.output_frames_next();
        let initial_carry = FRAME_16K.saturating_sub(first);
        // Room for the carried samples plus the largest chunk rubato may write after them.
        let scratch = vec![0.0; FRAME_16K + inner.output_frames_max()];
        Self {
            inner,
            input: [0.0; FRAME_8K],
            scratch,
            carry: initial_carry,
            initial_carry,
        }
    }

    /// Upsamples one 20 ms frame. Frames must be consecutive audio of one stream.
    pub fn process(&mut self, input: &[i16; 160], out: &mut [i16; 320]) {
        for (f, s) in self.input.iter_mut().zip(input) {
            *f = to_f32(*s);
        }
        let scratch_len = self.scratch.len();
        let indexing = Indexing::new().output_offset(self.carry);
        let result = match (
            InterleavedSlice::new(&self.input[..], 1, FRAME_8K),
            InterleavedSlice::new_mut(&mut self.scratch[..], 1, scratch_len),
        ) {
            (Ok(buf_in), Ok(mut buf_out)) => self
                .inner
                .process_into_buffer(&buf_in, &mut buf_out, Some(&indexing))
                .map_err(|e| e.to_string()),
            _ => Err("buffer sizes".into()),
        };
        // Buffers are sized from rubato's own limits in `new`, so this cannot fail; if it ever
        // did, a frame of silence beats taking the call down.
        debug_assert!(result.is_ok(), "upsampler: {result:?}");
        let produced = match result {
            Ok((_, produced)) => produced,
            Err(_) => {
                out.fill(0);
                self.reset();
                return;
            }
        };
        let total = self.carry + produced;
        let ready = total.min(FRAME_16K);
        for (o, f) in out.iter_mut().zip(&self.scratch[..ready]) {
            *o = to_i16(*f);
        }
        out[ready..].fill(0);
        self.scratch.copy_within(ready..total, 0);
        self.carry = total - ready;
    }

    /// Forgets all history, as if newly created (e.g. to reuse for another call).
    pub fn reset(&mut self) {
        self.inner.reset();
        self.scratch[..self.initial_carry].fill(0.0);
        self.carry = self.initial_carry;
    }
}

impl Default for Upsampler8kTo16k {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResamplerError {
    #[error("cannot resample {from_hz} Hz -> {to_hz} Hz: sample rates must be non-zero")]
    ZeroRate { from_hz: u32, to_hz: u32 },
    #[error("cannot resample {from_hz} Hz -> {to_hz} Hz: {source}")]
    Construction {
        from_hz: u32,
        to_hz: u32,
        source: ResamplerConstructionError,
    },
}

/// General rate conversion for use off the frame path (TTS output, audio files).
///
/// Streams: feed pieces of any size with [`process`](Self::process), then call
/// [`flush`](Self::flush) once at the end. The filter delay is trimmed, so the output is
/// time-aligned with the input (to within half an output sample) and exactly
/// `ceil(n_in * to / from)` samples long in total.
/// Output is produced in chunks of about 20 ms of input, so a streaming consumer sees at most that
/// plus the filter half-length (~3 ms) of extra latency.
pub struct Resampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` when the rates are equal: samples pass through untouched.
    inner: Option<Async<f32>>,
    /// Input received but not yet consumed by rubato (less than one chunk after `process`).
    pending: Vec<f32>,
    scratch: Vec<f32>,
    /// Output samples still to drop at the start: the filter's delay.
    to_trim: usize,
    total_in: u64,
    total_out: u64,
}

/// 128 taps, Blackman-Harris²: images and aliases > 100 dB down, passband flat to ~0.9 × Nyquist.
const GEN_SINC_LEN: usize = 128;

impl Resampler {
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResamplerError> {
        if from_hz == 0 || to_hz == 0 {
            return Err(ResamplerError::ZeroRate { from_hz, to_hz });
        }
        let inner = if from_hz == to_hz {
            None
        } else {
            let ratio = to_hz as f64 / from_hz as f64;
            let params =
                SincInterpolationParameters::new(GEN_SINC_LEN, WindowFunction::BlackmanHarris2)
                    .oversampling_factor(128)
                    .interpolation(SincInterpolationType::Cubic);
            // 20 ms of input per rubato call: small enough for streaming TTS, large enough that
            // per-call overhead does not matter.
            let chunk = (from_hz as usize / 50).max(16);
            Some(
                Async::<f32>::new_sinc(ratio, 1.0, &params, chunk, 1, FixedAsync::Input).map_err(
                    |source| ResamplerError::Construction {
                        from_hz,
                        to_hz,
                        source,
                    },
                )?,
            )
        };
        let (scratch, pending_cap) = match &inner {
            Some(r) => (vec![0.0; r.output_frames_max()], 2 * r.input_frames_max()),
            None => (Vec::new(), 0),
        };
        let to_trim = Self::delay(from_hz, to_hz);
        Ok(Self {
            from_hz,
            to_hz,
            inner,
            pending: Vec::with_capacity(pending_cap),
            scratch,
            to_trim,
            total_in: 0,
            total_out: 0,
        })
    }

    /// Filter delay in output samples, rounded. Rubato's `output_delay()` reports
    /// `floor(len * ratio / 2)`, but its sinc resampler actually delays by `len / 2 * ratio - 1`
    /// output samples (measured; pinned by `resampler_is_time_aligned`), so trimming its figure
    /// would leave the output up to 1.5 samples off.
    fn delay(from_hz: u32, to_hz: u32) -> usize {
        if from_hz == to_hz {
            return 0;
        }
        let ratio = to_hz as f64 / from_hz as f64;
        ((GEN_SINC_LEN / 2) as f64 * ratio - 1.0).round().max(0.0) as usize
    }

    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Resamples `input` (the next piece of the stream), appending whatever output is ready to
    /// `out`. Some input is held back until a full chunk is available or [`flush`](Self::flush).
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.total_in += input.len() as u64;
        if self.inner.is_none() {
            out.extend_from_slice(input);
            self.total_out += input.len() as u64;
            return;
        }
        self.pending.extend(input.iter().map(|s| to_f32(*s)));
        let mut consumed = 0;
        while let Some(inner) = &self.inner {
            if self.pending.len() - consumed < inner.input_frames_next() {
                break;
            }
            let Some(used) = self.run_chunk(consumed, None, out) else {
                break;
            };
            consumed += used;
        }
        self.pending.drain(..consumed);
    }

    /// Ends the stream: pushes out the held-back input and the filter's tail, so the total output
    /// is exactly `ceil(n_in * to / from)` samples. The resampler is then ready for a new stream.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        let expected = (self.total_in * self.to_hz as u64).div_ceil(self.from_hz as u64);
        if self.inner.is_some() {
            // The first pass feeds what is pending (zero-padded), the rest feed silence until the
            // delayed tail has come out. Each pass yields at least one chunk of output, so the
            // bound only guards against a misbehaving resampler.
            let mut passes = 0;
            while self.total_out < expected && passes < 1_000 {
                let partial = self.pending.len();
                let Some(used) = self.run_chunk(0, Some(partial), out) else {
                    break;
                };
                self.pending.drain(..used.min(partial));
                passes += 1;
            }
            // Only possible if a pass wrote past `expected`; trim our own output, never the
            // caller's earlier samples.
            if self.total_out > expected {
                let extra = (self.total_out - expected) as usize;
                out.truncate(out.len().saturating_sub(extra));
            }
        }
        self.reset();
    }

    /// Forgets all history and pending input.
    pub fn reset(&mut self) {
        if let Some(inner) = &mut self.inner {
            inner.reset();
            self.to_trim = Self::delay(self.from_hz, self.to_hz);
        }
        self.pending.clear();
        self.total_in = 0;
        self.total_out = 0;
    }

    /// Runs one rubato chunk from `pending[offset..]`, appends the output (minus any delay still
    /// to trim) and returns the number of input frames consumed.
    fn run_chunk(
        &mut self,
        offset: usize,
        partial: Option<usize>,
        out: &mut Vec<i16>,
    ) -> Option<usize> {
        let inner = self.inner.as_mut()?;
        let mut indexing = Indexing::new().input_offset(offset);
        indexing.partial_len = partial;
        let scratch_len = self.scratch.len();
        let buf_in = InterleavedSlice::new(&self.pending[..], 1, self.pending.len()).ok()?;
        let mut buf_out = InterleavedSlice::new_mut(&mut self.scratch[..], 1, scratch_len).ok()?;
        let result = inner.process_into_buffer(&buf_in, &mut buf_out, Some(&indexing));
        // Sizes come from rubato's own `input_frames_next`/`output_frames_max`.
        debug_assert!(result.is_ok(), "resampler: {result:?}");
        let (used, produced) = result.ok()?;
        let skip = self.to_trim.min(produced);
        self.to_trim -= skip;
        out.extend(self.scratch[skip..produced].iter().map(|f| to_i16(*f)));
        self.total_out += (produced - skip) as u64;
        Some(used)
    }
}

#[inline]
fn to_f32(s: i16) -> f32 {
    s as f32 * (1.0 / 32768.0)
}

#[inline]
fn to_i16(f: f32) -> i16 {
    (f * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// Power of `x` at frequency `f` (single DFT bin), normalised so a full-scale sine is 0.25.
    fn tone_power(x: &[i16], f: f64, fs: f64) -> f64 {
        let (mut re, mut im) = (0f64, 0f64);
        for (n, v) in x.iter().enumerate() {
            let ph = 2.0 * PI * f * n as f64 / fs;
            re += *v as f64 / 32768.0 * ph.cos();
            im += *v as f64 / 32768.0 * ph.sin();
        }
        (re * re + im * im) / (x.len() as f64 * x.len() as f64)
    }

    fn mean_square(x: &[i16]) -> f64 {
        x.iter().map(|v| (*v as f64 / 32768.0).powi(2)).sum::<f64>() / x.len() as f64
    }

    fn sine(f: f64, fs: f64, amp: f64, start: usize, n: usize) -> Vec<i16> {
        (start..start + n)
            .map(|k| (amp * 32767.0 * (2.0 * PI * f * k as f64 / fs).sin()).round() as i16)
            .collect()
    }

    fn upsample_all(input: &[i16]) -> Vec<i16> {
        let mut up = Upsampler8kTo16k::new();
        let mut out = Vec::new();
        for frame in input.chunks_exact(160) {
            let mut o = [0i16; 320];
            up.process(frame.try_into().unwrap(), &mut o);
            out.extend_from_slice(&o);
        }
        out
    }

    #[test]
    fn upsampled_1khz_sine_is_clean() {
        let out = upsample_all(&sine(1000.0, 8000.0, 0.5, 0, 160 * 50));
        // Skip the start-up transient; 3200 samples hold whole cycles of 1 kHz and 7 kHz.
        let seg = &out[1600..1600 + 3200];
        let p1k = tone_power(seg, 1000.0, 16000.0);
        let p7k = tone_power(seg, 7000.0, 16000.0);
        let total = mean_square(seg);
        let image_db = 10.0 * (p7k / p1k).log10();
        assert!(image_db <= -40.0, "7 kHz image only {image_db:.1} dB down");
        // A sine of amplitude A has mean square A²/2 and bin power A²/4.
        assert!(
            2.0 * p1k / total > 0.999,
            "1 kHz holds only {:.4} of the energy",
            2.0 * p1k / total
        );
        let level_db = 10.0 * (p1k / 0.0625).log10();
        assert!(
            level_db.abs() < 0.1,
            "1 kHz level changed by {level_db:.2} dB"
        );
    }

    #[test]
    fn upsampler_passband_is_flat_over_the_telephone_band() {
        for f in [300.0, 2000.0, 3000.0, 3400.0] {
            let out = upsample_all(&sine(f, 8000.0, 0.5, 0, 160 * 50));
            let seg = &out[1600..1600 + 8000];
            let db = 10.0 * (tone_power(seg, f, 16000.0) / 0.0625).log10();
            assert!(db > -1.5, "{f} Hz attenuated by {db:.2} dB");
        }
    }

    #[test]
    fn upsampler_images_of_speech_are_far_down() {
        // A tone f at 8 kHz leaves an image at 8 kHz - f after upsampling. Speech energy sits
        // below 3 kHz; the band edge (3.4 kHz, image at 4.6 kHz) is inside the transition band.
        for (f, floor_db) in [
            (300.0, -90.0),
            (1000.0, -90.0),
            (2000.0, -90.0),
            (3000.0, -85.0),
        ] {
            let out = upsample_all(&sine(f, 8000.0, 0.5, 0, 160 * 100));
            let seg = &out[1600..1600 + 16000];
            let image_db =
                10.0 * (tone_power(seg, 8000.0 - f, 16000.0) / tone_power(seg, f, 16000.0)).log10();
            assert!(
                image_db < floor_db,
                "{f} Hz: image only {image_db:.1} dB down"
            );
        }
    }

    #[test]
    fn upsampler_latency_is_exact() {
        let mut input = vec![0i16; 160 * 4];
        let k = 170; // second frame, to cross a frame boundary
        input[k] = 16000;
        let out = upsample_all(&input);
        let peak = out
            .iter()
            .enumerate()
            .max_by_key(|(_, v)| v.unsigned_abs())
            .unwrap()
            .0;
        assert_eq!(peak, 2 * k + Upsampler8kTo16k::LATENCY_SAMPLES);
        // Symmetric (linear-phase) response around the peak.
        for d in 1..20 {
            assert!(
                (out[peak - d] as i32 - out[peak + d] as i32).abs() <= 1,
                "asymmetric at {d}"
            );
        }
    }

    #[test]
    fn upsampler_reset_repeats_output() {
        let input = sine(440.0, 8000.0, 0.3, 0, 160);
        let mut up = Upsampler8kTo16k::new();
        let (mut a, mut b) = ([0i16; 320], [0i16; 320]);
        up.process(input.as_slice().try_into().unwrap(), &mut a);
        up.process(input.as_slice().try_into().unwrap(), &mut b);
        up.reset();
        up.process(input.as_slice().try_into().unwrap(), &mut b);
        assert_eq!(a, b);
    }

    fn resample_in_pieces(from: u32, to: u32, input: &[i16], piece: usize) -> Vec<i16> {
        let mut r = Resampler::new(from, to).unwrap();
        let mut out = Vec::new();
        for p in input.chunks(piece.max(1)) {
            r.process(p, &mut out);
        }
        r.flush(&mut out);
        out
    }

    #[test]
    fn resampler_output_length_is_exact_for_any_piece_size() {
        for (from, to) in [
            (22050, 8000),
            (8000, 16000),
            (16000, 8000),
            (44100, 8000),
            (8000, 8000),
            (24000, 8000),
        ] {
            for n in [0usize, 1, 7, 441, 1000, 22050] {
                for piece in [1usize, 160, 333, 4096] {
                    if piece == 1 && n > 1000 {
                        continue;
                    }
                    let input = sine(300.0, from as f64, 0.3, 0, n);
                    let out = resample_in_pieces(from, to, &input, piece);
                    let expected = (n as u64 * to as u64).div_ceil(from as u64) as usize;
                    assert_eq!(out.len(), expected, "{from}->{to} n={n} piece={piece}");
                }
            }
        }
    }

    #[test]
    fn resampler_piece_size_does_not_change_the_result() {
        let input = sine(700.0, 22050.0, 0.4, 0, 10_000);
        let whole = resample_in_pieces(22050, 8000, &input, 10_000);
        assert_eq!(resample_in_pieces(22050, 8000, &input, 37), whole);
        assert_eq!(resample_in_pieces(22050, 8000, &input, 882), whole);
    }

    /// Lag of `x` behind a sine of frequency `f` starting at phase 0, in samples.
    fn lag_of_sine(x: &[i16], first_index: usize, f: f64, fs: f64) -> f64 {
        let (mut re, mut im) = (0f64, 0f64);
        for (n, v) in x.iter().enumerate() {
            let ph = 2.0 * PI * f * (n + first_index) as f64 / fs;
            re += *v as f64 * ph.cos();
            im += *v as f64 * ph.sin();
        }
        // sin(w(n - L)) correlates to (re, im) ~ (-sin wL, cos wL).
        -re.atan2(im) / (2.0 * PI * f) * fs
    }

    #[test]
    fn resampler_preserves_frequency() {
        let (from, to, f) = (22050u32, 8000u32, 440.0);
        let input = sine(f, from as f64, 0.5, 0, from as usize);
        let out = resample_in_pieces(from, to, &input, 1000);
        let seg = &out[400..out.len() - 400];
        assert!(2.0 * tone_power(seg, f, to as f64) / mean_square(seg) > 0.999);
        let level_db = 10.0 * (tone_power(seg, f, to as f64) / 0.0625).log10();
        assert!(level_db.abs() < 0.1, "level changed by {level_db:.2} dB");
    }

    #[test]
    fn resampler_is_time_aligned() {
        for (from, to) in [
            (22050u32, 8000u32),
            (16000, 8000),
            (8000, 16000),
            (44100, 8000),
            (8000, 22050),
        ] {
            let f = 200.0;
            let input = sine(f, from as f64, 0.5, 0, from as usize);
            let out = resample_in_pieces(from, to, &input, 500);
            let lag = lag_of_sine(&out[1000..out.len() - 1000], 1000, f, to as f64);
            assert!(
                lag.abs() <= 0.5,
                "{from}->{to}: output lags by {lag:.3} samples"
            );
        }
    }

    #[test]
    fn resampler_removes_content_above_the_new_nyquist() {
        // 6 kHz at 22.05 kHz would alias to 2 kHz at 8 kHz without the anti-alias filter.
        let input = sine(6000.0, 22050.0, 0.5, 0, 22050);
        let out = resample_in_pieces(22050, 8000, &input, 441);
        let seg = &out[400..out.len() - 400];
        let db = 10.0 * (mean_square(seg) / 0.125).log10();
        assert!(db < -60.0, "alias only {db:.1} dB down");
    }

    #[test]
    fn resampler_is_reusable_after_flush() {
        let input = sine(500.0, 16000.0, 0.5, 0, 3000);
        let mut r = Resampler::new(16000, 8000).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        r.process(&input, &mut a);
        r.flush(&mut a);
        r.process(&input, &mut b);
        r.flush(&mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn zero_rate_is_an_error() {
        let err = Resampler::new(0, 8000).err().unwrap();
        assert!(err.to_string().contains("0 Hz -> 8000 Hz"), "{err}");
    }

    #[test]
    fn resamplers_are_send() {
        fn send<T: Send>() {}
        send::<Upsampler8kTo16k>();
        send::<Resampler>();
    }
}
