//! In-band DTMF detection (Goertzel) and merging with Twilio `dtmf` events. OWNER: DTMF helper.
//!
//! # Detector design
//!
//! A plain Goertzel magnitude test cannot tell a tone 1.5 % off (must accept) from one 3.5 % off
//! (must reject): at 697 Hz that is 10 Hz against 24 Hz, while any window short enough for the
//! 23/40 ms duration limits has bins 40-50 Hz wide. So each tone's frequency is *measured*:
//!
//! * Every 4 ms (hop `HOP` = 32 samples) a 20 ms Hann window (`WIN` = 160) is run through eight
//!   complex Goertzel filters, one per Q.23 frequency. For a tone at `f`, the complex output of
//!   the filter tuned to `f0` rotates by `2π·f·HOP/fs` between successive windows whatever the
//!   window shape, so `y_t·conj(y_{t-1})·e^{-j2π·f0·HOP/fs}` has angle `2π(f−f0)·HOP/fs`: the
//!   frequency error, unambiguous to ±125 Hz. Each window must be within ±3 % on both tones; the
//!   phase steps, summed over the press, must be within ±2.5 % before the digit is reported, which
//!   leaves a full 1 % of margin to each required edge (1.5 % accept, 3.5 % reject).
//! * Knowing `f−f0` also undoes the Hann window's scalloping loss, so twist and level are judged
//!   on true tone amplitudes even at 1633 Hz + 3 % (almost a full bin off).
//! * Duration: a window only counts if all five of its 4 ms sub-blocks carry similar energy (the
//!   tone fills it), so a tone of length D yields about (D − 16 ms)/4 ms valid windows whatever
//!   its alignment to the 20 ms frames. Five are needed: ≥ 40 ms always gives ≥ 6, < 23 ms at
//!   most 3 (measured: accepted at every alignment from 35.5 ms, never up to 30 ms). Drop-outs
//!   ≤ 10 ms cost ≤ 7 windows and are bridged; a 40 ms gap costs ≥ 13 and ends the press.
//! * Talk-off: ≥ 75 % of the window energy must sit in the two tones, the strongest bin of each
//!   group must dominate its neighbours by 6 dB, neither tone may carry a 2nd harmonic above
//!   −15 dB (speech and music are harmonic series, DTMF is two pure sines), plus the frequency
//!   and steadiness tests above, which speech rarely holds for 30 ms (over the whole Asterisk
//!   prompt corpus, 25 minutes of speech, a single window passed and no press came close).
//!
//! Level reference (G.711): a full-scale sine, peak 32 636 in our 16-bit scale (14-bit 8159 × 4),
//! is +3.17 dBm0, so a 0 dBm0 sine has peak 22 656 (rms 16 020, ≈ 0.49 of full scale).
//!
//! Cost per 20 ms frame: five windows × 160 samples × eight 1-multiply Goertzel updates, run as
//! one batch, all on fixed arrays: ~1.6 µs per frame, ~2.3 µs while a tone is present (rustc -O,
//! baseline x86-64). Nothing after `new` allocates, locks or logs.

use std::f32::consts::PI;
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

const FS: f32 = 8000.0;
const FRAME: usize = 160;
/// Hop between analysis windows, and the sub-block whose energy proves the tone fills a window.
const HOP: usize = 32;
/// 20 ms: long enough that cross-group leakage through the Hann sidelobes is below −50 dB.
const WIN: usize = 160;
const SUBS: usize = WIN / HOP;
const HOPS_PER_FRAME: usize = FRAME / HOP;
const PREFIX: usize = WIN - HOP;

/// Q.23: four row (low group) then four column (high group) frequencies.
const FREQS: [f32; 8] = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [char; 16] = [
    '1', '2', '3', 'A', '4', '5', '6', 'B', '7', '8', '9', 'C', '*', '0', '#', 'D',
];

/// Valid windows before a press is reported (see the duration argument at the top).
const CONFIRM_WINDOWS: u16 = 5;
/// Invalid windows that abandon an unconfirmed press: bridges 10 ms drop-outs (≤ 7 windows) but
/// not a 20 ms gap (≥ 8), so two sub-23 ms bursts cannot add up to a digit across a real gap.
const PENDING_RELEASE: u8 = 8;
/// Invalid windows that end a reported press: > 7 (10 ms drop-out), < 13 (40 ms gap).
const ACTIVE_RELEASE: u8 = 10;
/// Stop summing phase steps past this: the estimate has long converged and the sum stays bounded.
const ACCUMULATE_CAP: u16 = 64;
/// Weakest sub-block energy relative to the strongest in a window; a sub-block with < ~30 % of
/// its samples covered by the tone (or −15 dB noise in a gap) fails.
const STEADY: f32 = 0.3;
/// Frequency error allowed in one window (loose: one window's estimate is the noisiest).
const WINDOW_TOL: f32 = 0.03;
/// Frequency error allowed for the press, from the phase steps summed over its windows.
const CONFIRM_TOL: f32 = 0.025;
/// Share of the window energy that must be in the two tones (15 dB SNR leaves ~97 %).
const MIN_TONE_SHARE: f32 = 0.75;
/// −6 dB: a pure tone 1.5 % off leaks at most −9 dB into its neighbour bin.
const DOMINANCE: f32 = 0.25;
/// −15 dB.
const MAX_HARMONIC: f32 = 0.0316;
/// A row tone's 2nd harmonic bin this close to the column tone sees the column tone itself
/// (1394 Hz vs 1336 Hz for key 2), so that check is skipped for such keys.
const HARMONIC_GUARD_HZ: f32 = 120.0;
/// DC blocker pole (−3 dB at 25 Hz): DC would fake steady sub-block energy and dilute the
/// tone-share test.
const DC_POLE: f32 = 0.98;
/// Peak of a 0 dBm0 sine, see the level reference above.
const DBM0_PEAK: f32 = 22_656.0;
/// Hann (sin²) window: Σw = N/2, so a tone of peak A gives |X| = A·N/4.
const AMP2_PER_POWER: f32 = 16.0 / (WIN as f32 * WIN as f32);
/// Σw² = 3N/8, so a tone of peak A puts (3N/16)·A² into the windowed energy.
const ENERGY_PER_AMP2: f32 = 3.0 * WIN as f32 / 16.0;

// At most one confirmation fits in one frame, so `process_frame` never has to queue a digit.
const _: () = assert!(CONFIRM_WINDOWS as usize >= HOPS_PER_FRAME);
const _: () = assert!(FRAME.is_multiple_of(HOP) && WIN.is_multiple_of(HOP) && WIN >= HOP);

#[derive(Debug, Clone)]
pub struct DtmfDetectorConfig {
    /// Weakest accepted tone, each of the pair, in dBm0 (reference above). The requirement is
    /// −25 dBm0; the default leaves room for 8 dB of twist on top of that.
    pub min_tone_dbm0: f32,
    /// Largest accepted "normal" twist (high-group tone weaker than low-group), dB.
    pub max_normal_twist_db: f32,
    /// Largest accepted reverse twist (high-group tone stronger), dB.
    pub max_reverse_twist_db: f32,
}

impl Default for DtmfDetectorConfig {
    fn default() -> Self {
        Self {
            min_tone_dbm0: -36.0,
            max_normal_twist_db: 9.0,
            max_reverse_twist_db: 6.5,
        }
    }
}

/// One window's verdict: which key, and the per-tone phase steps (unit phasors).
#[derive(Clone, Copy)]
struct Hit {
    key: u8,
    step_low: (f32, f32),
    step_high: (f32, f32),
}

/// A window that passed every test but the harmonic one, which is batched per frame.
#[derive(Clone, Copy)]
struct Candidate {
    hit: Hit,
    low: usize,
    high: usize,
    p_low: f32,
    p_high: f32,
}

/// Detects DTMF key presses in 8 kHz linear audio, one 20 ms frame at a time.
pub struct DtmfDetector {
    min_amp2: f32,
    min_window_energy: f32,
    max_normal: f32,
    max_reverse: f32,
    hann: [f32; WIN],
    /// Goertzel `2cos ω`, and `cos ω`, `sin ω` for the complex output.
    coef: [f32; 8],
    cos: [f32; 8],
    sin: [f32; 8],
    /// `e^{-jω·HOP}`: removes the nominal rotation so only the frequency error is left.
    rot: [(f32, f32); 8],
    tan_window: [f32; 8],
    tan_confirm: [f32; 8],
    harm_coef: [f32; 8],
    check_low_harmonic: [bool; 16],
    /// The window tail kept from earlier frames, then the current frame (DC-blocked).
    buf: [f32; PREFIX + FRAME],
    /// Sub-block energies, aligned with `buf`: window `h` of this frame spans `[h..h + SUBS]`.
    sub_energy: [f32; SUBS - 1 + HOPS_PER_FRAME],
    prev: [(f32, f32); 8],
    dc_x: f32,
    dc_y: f32,
    /// Reported press still held (and its run of invalid windows).
    active: Option<u8>,
    active_gap: u8,
    /// Press being confirmed.
    pending: Option<u8>,
    pending_count: u16,
    pending_gap: u8,
    acc_low: (f32, f32),
    acc_high: (f32, f32),
}

impl DtmfDetector {
    pub fn new(cfg: DtmfDetectorConfig) -> Self {
        let hann = std::array::from_fn(|n| {
            let s = (PI * (n as f32 + 0.5) / WIN as f32).sin();
            s * s
        });
        let omega = FREQS.map(|f| 2.0 * PI * f / FS);
        let tan_for = |tol: f32| FREQS.map(|f| (2.0 * PI * tol * f * HOP as f32 / FS).tan());
        let check_low_harmonic = std::array::from_fn(|k| {
            (2.0 * FREQS[k / 4] - FREQS[4 + k % 4]).abs() >= HARMONIC_GUARD_HZ
        });
        // NaN in the config would silently disable a test; fall back to the defaults instead.
        let d = DtmfDetectorConfig::default();
        let pick = |v: f32, def: f32| if v.is_finite() { v } else { def };
        let min_amp = DBM0_PEAK * db_to_amp(pick(cfg.min_tone_dbm0, d.min_tone_dbm0));
        let min_amp2 = min_amp * min_amp;
        Self {
            min_amp2,
            min_window_energy: ENERGY_PER_AMP2 * min_amp2,
            max_normal: db_to_power(pick(cfg.max_normal_twist_db, d.max_normal_twist_db)),
            max_reverse: db_to_power(pick(cfg.max_reverse_twist_db, d.max_reverse_twist_db)),
            hann,
            coef: omega.map(|w| 2.0 * w.cos()),
            cos: omega.map(f32::cos),
            sin: omega.map(f32::sin),
            rot: omega.map(|w| ((w * HOP as f32).cos(), -(w * HOP as f32).sin())),
            tan_window: tan_for(WINDOW_TOL),
            tan_confirm: tan_for(CONFIRM_TOL),
            harm_coef: omega.map(|w| 2.0 * (2.0 * w).cos()),
            check_low_harmonic,
            buf: [0.0; PREFIX + FRAME],
            sub_energy: [0.0; SUBS - 1 + HOPS_PER_FRAME],
            prev: [(0.0, 0.0); 8],
            dc_x: 0.0,
            dc_y: 0.0,
            active: None,
            active_gap: 0,
            pending: None,
            pending_count: 0,
            pending_gap: 0,
            acc_low: (0.0, 0.0),
            acc_high: (0.0, 0.0),
        }
    }

    /// Feeds one 20 ms frame; returns a digit once per key press, when the press is confirmed.
    pub fn process_frame(&mut self, samples: &[i16; 160]) -> Option<char> {
        for (d, &s) in self.buf[PREFIX..].iter_mut().zip(samples) {
            let x = f32::from(s);
            let y = x - self.dc_x + DC_POLE * self.dc_y;
            self.dc_x = x;
            self.dc_y = y;
            *d = y;
        }
        // Keep the blocker's decay out of the (slow) subnormal range during long silences.
        if self.dc_y.abs() < 1e-6 {
            self.dc_y = 0.0;
        }
        for (h, e) in self.sub_energy[SUBS - 1..].iter_mut().enumerate() {
            let start = PREFIX + h * HOP;
            *e = self.buf[start..start + HOP].iter().map(|v| v * v).sum();
        }
        // Most frames of a call are silence or quiet line noise. When every window of the frame is
        // far (13 dB) below the weakest acceptable tone, none can be classified, so the filter bank
        // is skipped. This changes no decision: a window that can pass shares 4 of 5 sub-blocks
        // with its predecessor, whose energy is then ≥ 0.8 × the minimum, so the predecessor (whose
        // phase `classify` needs) was never in a skipped frame.
        let quiet = self.min_window_energy * 0.05;
        let audible =
            (0..HOPS_PER_FRAME).any(|h| self.sub_energy[h..h + SUBS].iter().sum::<f32>() >= quiet);
        if !audible {
            self.prev = [(0.0, 0.0); 8];
            let mut digit = None;
            for _ in 0..HOPS_PER_FRAME {
                if let Some(d) = self.track(None) {
                    digit = Some(d);
                }
            }
            self.sub_energy.copy_within(HOPS_PER_FRAME.., 0);
            self.buf.copy_within(FRAME.., 0);
            return digit;
        }
        // All windows of the frame go through the filters in one pass: one window alone is a
        // chain of dependent multiply-adds (latency-bound); five give the CPU 40 independent ones.
        let mut s1 = [[0.0f32; 8]; HOPS_PER_FRAME];
        let mut s2 = [[0.0f32; 8]; HOPS_PER_FRAME];
        let mut energy = [0.0f32; HOPS_PER_FRAME];
        for (n, &w) in self.hann.iter().enumerate() {
            for h in 0..HOPS_PER_FRAME {
                let v = self.buf[h * HOP + n] * w;
                energy[h] += v * v;
                let (a, b) = (&mut s1[h], &mut s2[h]);
                for k in 0..8 {
                    let s0 = v + self.coef[k] * a[k] - b[k];
                    b[k] = a[k];
                    a[k] = s0;
                }
            }
        }
        let mut candidates = [None; HOPS_PER_FRAME];
        for (h, candidate) in candidates.iter_mut().enumerate() {
            let mut y = [(0.0f32, 0.0f32); 8];
            let mut p = [0.0f32; 8];
            for k in 0..8 {
                let re = s1[h][k] - self.cos[k] * s2[h][k];
                let im = self.sin[k] * s2[h][k];
                y[k] = (re, im);
                p[k] = re * re + im * im;
            }
            let prev = std::mem::replace(&mut self.prev, y);
            *candidate = self.classify(h, energy[h], &y, &p, &prev);
        }
        if candidates.iter().any(Option::is_some) {
            self.reject_harmonics(&mut candidates);
        }
        let mut digit = None;
        for c in candidates {
            if let Some(d) = self.track(c.map(|c| c.hit)) {
                digit = Some(d);
            }
        }
        self.sub_energy.copy_within(HOPS_PER_FRAME.., 0);
        self.buf.copy_within(FRAME.., 0);
        digit
    }

    /// Judges window `h` of the current frame (it starts at `buf[h * HOP]`).
    fn classify(
        &self,
        h: usize,
        energy: f32,
        y: &[(f32, f32); 8],
        p: &[f32; 8],
        prev: &[(f32, f32); 8],
    ) -> Option<Candidate> {
        // Written so that NaN/inf (impossible from i16 input, but cheap to be sure) fails.
        if !(energy >= self.min_window_energy && energy.is_finite()) {
            return None;
        }
        let (mut lo, mut hi) = (f32::MAX, 0.0f32);
        for &e in &self.sub_energy[h..h + SUBS] {
            lo = lo.min(e);
            hi = hi.max(e);
        }
        if lo < STEADY * hi {
            return None;
        }
        let r = strongest(p, 0);
        let c = strongest(p, 4);
        if !dominates(p, r, 0) || !dominates(p, c, 4) {
            return None;
        }
        let step_low = phase_step(y[r], prev[r], self.rot[r])?;
        let step_high = phase_step(y[c], prev[c], self.rot[c])?;
        if !within(step_low, self.tan_window[r]) || !within(step_high, self.tan_window[c]) {
            return None;
        }
        let g_low = hann_gain(step_low);
        let g_high = hann_gain(step_high);
        let a_low = p[r] * AMP2_PER_POWER / (g_low * g_low);
        let a_high = p[c] * AMP2_PER_POWER / (g_high * g_high);
        if a_low < self.min_amp2 || a_high < self.min_amp2 {
            return None;
        }
        if a_low > self.max_normal * a_high || a_high > self.max_reverse * a_low {
            return None;
        }
        if ENERGY_PER_AMP2 * (a_low + a_high) < MIN_TONE_SHARE * energy {
            return None;
        }
        let key = (r * 4 + (c - 4)) as u8;
        Some(Candidate {
            hit: Hit {
                key,
                step_low,
                step_high,
            },
            low: r,
            high: c,
            p_low: p[r],
            p_high: p[c],
        })
    }

    /// Drops candidates whose tones carry a 2nd harmonic. All candidate windows of the frame share
    /// one pass for the same reason as the main filter bank.
    fn reject_harmonics(&self, candidates: &mut [Option<Candidate>; HOPS_PER_FRAME]) {
        let mut coef = [[0.0f32; 2]; HOPS_PER_FRAME];
        for (c, cand) in coef.iter_mut().zip(candidates.iter()) {
            if let Some(cand) = cand {
                *c = [self.harm_coef[cand.low], self.harm_coef[cand.high]];
            }
        }
        let mut s1 = [[0.0f32; 2]; HOPS_PER_FRAME];
        let mut s2 = [[0.0f32; 2]; HOPS_PER_FRAME];
        for (n, &w) in self.hann.iter().enumerate() {
            for h in 0..HOPS_PER_FRAME {
                let v = self.buf[h * HOP + n] * w;
                for i in 0..2 {
                    let s0 = v + coef[h][i] * s1[h][i] - s2[h][i];
                    s2[h][i] = s1[h][i];
                    s1[h][i] = s0;
                }
            }
        }
        for (h, slot) in candidates.iter_mut().enumerate() {
            let Some(cand) = slot else { continue };
            let power = |i: usize| {
                s1[h][i] * s1[h][i] + s2[h][i] * s2[h][i] - coef[h][i] * s1[h][i] * s2[h][i]
            };
            let low_bad = self.check_low_harmonic[usize::from(cand.hit.key)]
                && power(0) > MAX_HARMONIC * cand.p_low;
            if low_bad || power(1) > MAX_HARMONIC * cand.p_high {
                *slot = None;
            }
        }
    }

    fn track(&mut self, hit: Option<Hit>) -> Option<char> {
        let key = hit.map(|h| h.key);
        if let Some(a) = self.active {
            if key == Some(a) {
                self.active_gap = 0;
            } else {
                self.active_gap = self.active_gap.saturating_add(1);
                if self.active_gap >= ACTIVE_RELEASE {
                    self.active = None;
                }
            }
        }
        let h = match hit {
            Some(h) if Some(h.key) != self.active => h,
            _ => {
                if self.pending.is_some() {
                    self.pending_gap = self.pending_gap.saturating_add(1);
                    if self.pending_gap >= PENDING_RELEASE {
                        self.pending = None;
                    }
                }
                return None;
            }
        };
        if self.pending == Some(h.key) {
            self.pending_gap = 0;
            self.pending_count = self.pending_count.saturating_add(1);
            if self.pending_count <= ACCUMULATE_CAP {
                self.acc_low = add(self.acc_low, h.step_low);
                self.acc_high = add(self.acc_high, h.step_high);
            }
        } else {
            // A different key takes over at once; a stray window inside a held press cannot
            // re-trigger that press because the held key is tracked separately in `active`.
            self.pending = Some(h.key);
            self.pending_count = 1;
            self.pending_gap = 0;
            self.acc_low = h.step_low;
            self.acc_high = h.step_high;
        }
        let r = usize::from(h.key / 4);
        let c = 4 + usize::from(h.key % 4);
        if self.pending_count >= CONFIRM_WINDOWS
            && within(self.acc_low, self.tan_confirm[r])
            && within(self.acc_high, self.tan_confirm[c])
        {
            self.pending = None;
            self.active = Some(h.key);
            self.active_gap = 0;
            return Some(KEYS[usize::from(h.key)]);
        }
        None
    }
}

fn db_to_amp(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

fn db_to_power(db: f32) -> f32 {
    10f32.powf(db / 10.0)
}

fn strongest(p: &[f32; 8], base: usize) -> usize {
    let mut best = base;
    for k in base + 1..base + 4 {
        if p[k] > p[best] {
            best = k;
        }
    }
    best
}

fn dominates(p: &[f32; 8], winner: usize, base: usize) -> bool {
    (base..base + 4).all(|k| k == winner || p[k] <= DOMINANCE * p[winner])
}

/// Phase step between successive windows minus the nominal one, as a unit phasor.
fn phase_step(now: (f32, f32), before: (f32, f32), rot: (f32, f32)) -> Option<(f32, f32)> {
    // now · conj(before)
    let re = now.0 * before.0 + now.1 * before.1;
    let im = now.1 * before.0 - now.0 * before.1;
    let (re, im) = (re * rot.0 - im * rot.1, re * rot.1 + im * rot.0);
    let mag = re.hypot(im);
    if !(mag > 0.0 && mag.is_finite()) {
        return None;
    }
    Some((re / mag, im / mag))
}

/// |angle(z)| ≤ atan(tan_tol), without computing the angle (tolerances stay below 90°).
fn within(z: (f32, f32), tan_tol: f32) -> bool {
    z.0 > 0.0 && z.1.abs() <= tan_tol * z.0
}

fn add(a: (f32, f32), b: (f32, f32)) -> (f32, f32) {
    (a.0 + b.0, a.1 + b.1)
}

/// Hann amplitude response at the frequency error implied by a phase step, relative to on-bin.
fn hann_gain(step: (f32, f32)) -> f32 {
    let bins = step.1.atan2(step.0) * WIN as f32 / (2.0 * PI * HOP as f32);
    let d = 1.0 - bins * bins;
    let g = if bins.abs() < 1e-4 {
        1.0
    } else if d.abs() < 1e-3 {
        0.5
    } else {
        let x = PI * bins;
        x.sin() / x / d
    };
    // Within the ±3 % gate the gain never drops below 0.5; the floor only guards the division.
    g.max(0.25)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitSource {
    InBand,
    TwilioEvent,
}

/// Reports remembered at once; more than this many unpaired reports within one window means
/// something is flooding us, and the oldest is forgotten.
const MERGE_SLOTS: usize = 16;

#[derive(Clone, Copy)]
struct Report {
    at: Instant,
    digit: char,
    source: DigitSource,
    seq: u64,
}

/// Makes one key press one digit when both the in-band detector and Twilio report it.
pub struct DtmfMerger {
    window: Duration,
    slots: [Option<Report>; MERGE_SLOTS],
    seq: u64,
}

impl DtmfMerger {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            slots: [None; MERGE_SLOTS],
            seq: 0,
        }
    }

    /// Returns true if this report is a new key press, false if it duplicates one already reported by the other source.
    pub fn accept(&mut self, now: Instant, digit: char, source: DigitSource) -> bool {
        // Twilio sends 'A'..'D' upper case; don't let case split one press into two.
        let digit = digit.to_ascii_uppercase();
        let window = self.window;
        for slot in &mut self.slots {
            if slot.is_some_and(|r| now.saturating_duration_since(r.at) > window) {
                *slot = None;
            }
        }
        // Pair with the oldest unpaired report of this digit from the other source.
        let mut pair: Option<(usize, u64)> = None;
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(r) = slot
                && r.digit == digit
                && r.source != source
                && pair.is_none_or(|(_, seq)| r.seq < seq)
            {
                pair = Some((i, r.seq));
            }
        }
        if let Some((i, _)) = pair {
            self.slots[i] = None;
            return false;
        }
        let mut free = 0;
        let mut oldest = u64::MAX;
        for (i, slot) in self.slots.iter().enumerate() {
            match slot {
                None => {
                    free = i;
                    break;
                }
                Some(r) if r.seq < oldest => {
                    oldest = r.seq;
                    free = i;
                }
                Some(_) => {}
            }
        }
        self.slots[free] = Some(Report {
            at: now,
            digit,
            source,
            seq: self.seq,
        });
        self.seq += 1;
        true
    }
}
