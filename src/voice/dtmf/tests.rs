//! Detector tests synthesize tones here (no fixtures); the talk-off test reads real speech from
//! the Debian package `asterisk-core-sounds-en-wav`.

use super::*;
use crate::voice::g711;
use std::path::{Path, PathBuf};

const SPEECH_DIR: &str = "/usr/share/asterisk/sounds/en";

/// xorshift64*: deterministic noise without a crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn amp(dbm0: f64) -> f64 {
    f64::from(DBM0_PEAK) * 10f64.powf(dbm0 / 20.0)
}

fn key_freqs(key: char) -> (f64, f64) {
    let i = KEYS.iter().position(|&k| k == key).expect("DTMF key");
    (f64::from(FREQS[i / 4]), f64::from(FREQS[4 + i % 4]))
}

/// Audio under construction, in f64 so that mixing does not clip until `pcm`.
#[derive(Default)]
struct Sig(Vec<f64>);

impl Sig {
    fn silence(mut self, samples: usize) -> Self {
        self.0.resize(self.0.len() + samples, 0.0);
        self
    }
    /// Sum of sines `(frequency, peak)`, phase referenced to the segment start.
    fn tones(mut self, parts: &[(f64, f64)], samples: usize) -> Self {
        for n in 0..samples {
            let t = n as f64 / 8000.0;
            let v: f64 = parts
                .iter()
                .enumerate()
                .map(|(i, &(f, a))| a * (2.0 * std::f64::consts::PI * f * t + 0.7 * i as f64).sin())
                .sum();
            self.0.push(v);
        }
        self
    }
    fn key(self, key: char, samples: usize) -> Self {
        let (lo, hi) = key_freqs(key);
        self.tones(&[(lo, amp(-10.0)), (hi, amp(-10.0))], samples)
    }
    fn noise(mut self, rms: f64, rng: &mut Rng) -> Self {
        for v in &mut self.0 {
            *v += rms * rng.gauss();
        }
        self
    }
    fn pcm(&self) -> Vec<i16> {
        self.0
            .iter()
            .map(|&v| v.round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }
}

fn ms(ms: usize) -> usize {
    ms * 8
}

/// Runs fresh audio (plus 300 ms of silence so a press can finish) through a new detector.
fn detect(pcm: &[i16]) -> String {
    let mut det = DtmfDetector::new(DtmfDetectorConfig::default());
    detect_with(&mut det, pcm)
}

fn detect_with(det: &mut DtmfDetector, pcm: &[i16]) -> String {
    let mut out = String::new();
    let mut padded = pcm.to_vec();
    padded.resize(pcm.len().div_ceil(160) * 160 + ms(300), 0);
    for frame in padded.chunks_exact(160) {
        if let Some(d) = det.process_frame(frame.try_into().unwrap()) {
            out.push(d);
        }
    }
    out
}

/// One two-tone burst `(frequency, peak)` after 50 ms of silence.
fn single(lo: (f64, f64), hi: (f64, f64), samples: usize) -> String {
    detect(
        &Sig::default()
            .silence(ms(50))
            .tones(&[lo, hi], samples)
            .pcm(),
    )
}

#[test]
fn all_16_keys() {
    for (i, &key) in KEYS.iter().enumerate() {
        let sig = Sig::default()
            .silence(37 * i)
            .key(key, ms(60))
            .silence(ms(100));
        assert_eq!(detect(&sig.pcm()), key.to_string(), "key {key}");
    }
}

#[test]
fn accepts_frequencies_within_1_5_percent() {
    for &key in &KEYS {
        let (lo, hi) = key_freqs(key);
        for dl in [-0.015, 0.015] {
            for dh in [-0.015, 0.015] {
                let got = single(
                    (lo * (1.0 + dl), amp(-10.0)),
                    (hi * (1.0 + dh), amp(-10.0)),
                    ms(45),
                );
                assert_eq!(got, key.to_string(), "key {key} low {dl:+} high {dh:+}");
            }
        }
    }
}

#[test]
fn rejects_frequencies_beyond_3_5_percent() {
    for &key in &KEYS {
        let (lo, hi) = key_freqs(key);
        for dev in [-0.06, -0.05, -0.04, -0.035, 0.035, 0.04, 0.05, 0.06] {
            let off_lo = single((lo * (1.0 + dev), amp(-10.0)), (hi, amp(-10.0)), ms(200));
            assert_eq!(off_lo, "", "key {key}: low tone off by {dev:+}");
            let off_hi = single((lo, amp(-10.0)), (hi * (1.0 + dev), amp(-10.0)), ms(200));
            assert_eq!(off_hi, "", "key {key}: high tone off by {dev:+}");
        }
    }
}

/// Pins the measured edges (design: per window ±3 %, per press ±2.5 %) so a regression shows up.
#[test]
fn frequency_edges_between_requirements() {
    for (k, &f) in FREQS.iter().enumerate() {
        let partner = if k < 4 { FREQS[4] } else { FREQS[0] };
        for dev in [-0.02f64, 0.02] {
            let parts = [
                (f64::from(f) * (1.0 + dev), amp(-10.0)),
                (f64::from(partner), amp(-10.0)),
            ];
            let got = detect(&Sig::default().silence(ms(10)).tones(&parts, ms(200)).pcm());
            assert_eq!(got.len(), 1, "{f} Hz {dev:+} should still be accepted");
        }
        for dev in [-0.03f64, 0.03] {
            let parts = [
                (f64::from(f) * (1.0 + dev), amp(-10.0)),
                (f64::from(partner), amp(-10.0)),
            ];
            let got = detect(&Sig::default().silence(ms(10)).tones(&parts, ms(200)).pcm());
            assert_eq!(got, "", "{f} Hz {dev:+} should be rejected");
        }
    }
}

#[test]
fn accepts_40ms_at_any_alignment() {
    for &key in &KEYS {
        for offset in (0..160).step_by(9) {
            let sig = Sig::default().silence(offset).key(key, ms(40));
            assert_eq!(
                detect(&sig.pcm()),
                key.to_string(),
                "key {key} offset {offset}"
            );
        }
    }
}

#[test]
fn rejects_short_tones_at_any_alignment() {
    for &key in &KEYS {
        for offset in (0..160).step_by(7) {
            for len in [ms(10), ms(20), ms(22)] {
                let sig = Sig::default().silence(offset).key(key, len);
                assert_eq!(
                    detect(&sig.pcm()),
                    "",
                    "key {key} offset {offset} len {len}"
                );
            }
        }
    }
}

#[test]
fn long_press_is_one_digit() {
    let sig = Sig::default().key('7', ms(2000));
    assert_eq!(detect(&sig.pcm()), "7");
}

#[test]
fn repeated_key_with_40ms_gap_is_two_digits() {
    for &key in &KEYS {
        for offset in (0..160).step_by(16) {
            let sig = Sig::default()
                .silence(offset)
                .key(key, ms(40))
                .silence(ms(40))
                .key(key, ms(40));
            let want: String = [key, key].iter().collect();
            assert_eq!(detect(&sig.pcm()), want, "key {key} offset {offset}");
        }
    }
}

#[test]
fn bridges_10ms_dropouts() {
    for offset in (0..160).step_by(16) {
        // Drop-out after the digit is confirmed, and one before (two 30 ms halves).
        let late = Sig::default()
            .silence(offset)
            .key('9', ms(80))
            .silence(ms(10))
            .key('9', ms(60));
        assert_eq!(detect(&late.pcm()), "9", "late drop-out, offset {offset}");
        let early = Sig::default()
            .silence(offset)
            .key('9', ms(30))
            .silence(ms(10))
            .key('9', ms(30));
        assert_eq!(detect(&early.pcm()), "9", "early drop-out, offset {offset}");
    }
}

#[test]
fn different_keys_back_to_back() {
    let sig = Sig::default()
        .key('1', ms(60))
        .key('2', ms(60))
        .key('1', ms(60));
    assert_eq!(detect(&sig.pcm()), "121");
}

#[test]
fn sequence_0501234567_hash() {
    let digits = "0501234567#";
    for (on, off) in [(ms(40), ms(40)), (ms(50), ms(50)), (ms(100), ms(60))] {
        let mut sig = Sig::default().silence(ms(13));
        for d in digits.chars() {
            sig = sig.key(d, on).silence(off);
        }
        assert_eq!(detect(&sig.pcm()), digits, "on {on} off {off}");
        // The same through G.711, with 15 dB SNR noise.
        let p = amp(-10.0).powi(2);
        let noisy = sig.noise((p / 10f64.powf(1.5)).sqrt(), &mut Rng::new(on as u64));
        let mulaw: Vec<i16> = noisy
            .pcm()
            .iter()
            .map(|&s| g711::decode(g711::encode(s)))
            .collect();
        assert_eq!(detect(&mulaw), digits, "mu-law + noise, on {on} off {off}");
    }
}

#[test]
fn twist_limits() {
    for &key in &KEYS {
        let (lo, hi) = key_freqs(key);
        let run = |lo_db: f64, hi_db: f64| single((lo, amp(lo_db)), (hi, amp(hi_db)), ms(60));
        assert_eq!(
            run(-6.0, -14.0),
            key.to_string(),
            "key {key}: 8 dB normal twist"
        );
        assert_eq!(
            run(-10.0, -6.0),
            key.to_string(),
            "key {key}: 4 dB reverse twist"
        );
        assert_eq!(run(-6.0, -16.0), "", "key {key}: 10 dB normal twist");
        assert_eq!(run(-16.0, -6.0), "", "key {key}: 10 dB reverse twist");
        // Twist on top of the frequency edge: scalloping is compensated.
        let shifted = single((lo * 0.985, amp(-6.0)), (hi * 1.015, amp(-14.0)), ms(60));
        assert_eq!(
            shifted,
            key.to_string(),
            "key {key}: 8 dB twist, -1.5 %/+1.5 %"
        );
    }
}

#[test]
fn low_level_through_mulaw() {
    for &key in &KEYS {
        let (lo, hi) = key_freqs(key);
        for level in [-25.0, -30.0] {
            let sig = Sig::default()
                .silence(ms(20))
                .tones(&[(lo, amp(level)), (hi, amp(level))], ms(50));
            let mulaw: Vec<i16> = sig
                .pcm()
                .iter()
                .map(|&s| g711::decode(g711::encode(s)))
                .collect();
            assert_eq!(detect(&mulaw), key.to_string(), "key {key} at {level} dBm0");
        }
        let quiet = Sig::default().tones(&[(lo, amp(-45.0)), (hi, amp(-45.0))], ms(200));
        assert_eq!(detect(&quiet.pcm()), "", "key {key} at -45 dBm0");
    }
}

#[test]
fn white_noise_at_15db_snr() {
    for &key in &KEYS {
        for seed in 0..3 {
            let mut rng = Rng::new(seed * 100 + key as u64);
            for level in [-10.0, -25.0] {
                let (lo, hi) = key_freqs(key);
                let sig = Sig::default()
                    .silence(ms(100))
                    .tones(&[(lo, amp(level)), (hi, amp(level))], ms(50))
                    .silence(ms(100));
                let noise_rms = (amp(level).powi(2) / 10f64.powf(1.5)).sqrt();
                let got = detect(&sig.noise(noise_rms, &mut rng).pcm());
                assert_eq!(got, key.to_string(), "key {key} level {level} seed {seed}");
            }
        }
    }
}

#[test]
fn noise_and_silence_alone_give_nothing() {
    let mut rng = Rng::new(7);
    for rms in [10.0, 300.0, 3000.0, 20000.0] {
        let sig = Sig::default().silence(ms(5000)).noise(rms, &mut rng);
        assert_eq!(detect(&sig.pcm()), "", "noise rms {rms}");
    }
    assert_eq!(detect(&[0; 8000]), "");
    let idle = [g711::decode(g711::SILENCE), g711::decode(0x7F)];
    let mulaw_idle: Vec<i16> = (0..8000).map(|i| idle[i % 2]).collect();
    assert_eq!(detect(&mulaw_idle), "");
}

#[test]
fn hostile_input_never_panics() {
    let mut det = DtmfDetector::new(DtmfDetectorConfig::default());
    let frames: [[i16; 160]; 6] = [
        [i16::MAX; 160],
        [i16::MIN; 160],
        std::array::from_fn(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN }),
        std::array::from_fn(|i| if i % 12 < 6 { i16::MAX } else { i16::MIN }),
        std::array::from_fn(|i| (i as i16).wrapping_mul(7919)),
        [0; 160],
    ];
    for _ in 0..50 {
        for f in &frames {
            let _ = det.process_frame(f);
        }
    }
    // A clipped DTMF signal is mostly harmonics: no panic, digit or not.
    let clipped = Sig::default().tones(&[(697.0, 40000.0), (1209.0, 40000.0)], ms(500));
    let _ = detect_with(&mut det, &clipped.pcm());
    // Garbage config must not disable the detector or panic.
    let cfg = DtmfDetectorConfig {
        min_tone_dbm0: f32::NAN,
        max_normal_twist_db: f32::INFINITY,
        ..Default::default()
    };
    let mut det = DtmfDetector::new(cfg);
    assert_eq!(
        detect_with(&mut det, &Sig::default().key('4', ms(60)).pcm()),
        "4"
    );
}

#[test]
fn dc_offset_does_not_hide_or_fake_digits() {
    for dc in [-12000.0, 8000.0] {
        let mut sig = Sig::default()
            .silence(ms(100))
            .key('8', ms(60))
            .silence(ms(60))
            .key('8', ms(60));
        for v in &mut sig.0 {
            *v += dc;
        }
        assert_eq!(detect(&sig.pcm()), "88", "dc {dc}");
    }
}

/// Harmonic-rich "instrument" notes: each partial k at amplitude a/k.
fn note(f0: f64, a: f64, partials: usize) -> Vec<(f64, f64)> {
    (1..=partials)
        .map(|k| (f0 * k as f64, a / k as f64))
        .filter(|&(f, _)| f < 3900.0)
        .collect()
}

#[test]
fn music_like_harmonics_give_nothing() {
    let a = amp(-10.0);
    let cases: Vec<(&str, Vec<(f64, f64)>)> = vec![
        // Harmonics 3 and 7 sit on 697 and (almost) 1633 Hz.
        ("F0=697/3", note(697.0 / 3.0, a * 2.0, 12)),
        // F5 + F#6 is key 3 within 0.2 %; A#5 + E6 is key 0 within 1.3 %. Real notes have overtones.
        ("F5+F#6", [note(698.46, a, 4), note(1479.98, a, 3)].concat()),
        ("A#5+E6", [note(932.33, a, 4), note(1318.51, a, 3)].concat()),
        ("row chord", vec![(697.0, a), (770.0, a), (1209.0, a)]),
        ("column chord", vec![(697.0, a), (1209.0, a), (1336.0, a)]),
    ];
    for (name, parts) in &cases {
        let got = detect(&Sig::default().tones(parts, ms(1000)).pcm());
        assert_eq!(got, "", "{name}");
    }
    // Exact DTMF pairs with a 2nd harmonic at -10 dB on each tone.
    for &key in &KEYS {
        let (lo, hi) = key_freqs(key);
        let h = a * 10f64.powf(-0.5);
        let parts = [(lo, a), (hi, a), (2.0 * lo, h), (2.0 * hi, h)];
        let got = detect(&Sig::default().tones(&parts, ms(300)).pcm());
        assert_eq!(got, "", "key {key} with 2nd harmonics");
    }
    // Pure glides through the DTMF band, back and forth (sirens, whistles), at 3 and 4 kHz/s.
    // A pure glide slow enough to stay within ±3 % of a row and a column frequency at once for
    // ~35 ms (≤ 1.5 kHz/s) is indistinguishable from a valid tone and is detected.
    let mut sig = Sig::default();
    let mut phase = [0.0f64; 2];
    for n in 0..ms(2100) {
        let cycle = (n % ms(300)) as f64 / ms(150) as f64;
        let t = if cycle < 1.0 { cycle } else { 2.0 - cycle };
        let f = [600.0 + 450.0 * t, 1150.0 + 600.0 * t];
        let mut v = 0.0;
        for i in 0..2 {
            phase[i] += 2.0 * std::f64::consts::PI * f[i] / 8000.0;
            v += a * phase[i].sin();
        }
        sig.0.push(v);
    }
    assert_eq!(detect(&sig.pcm()), "", "glide");
}

fn speech_files() -> Vec<PathBuf> {
    let dir = Path::new(SPEECH_DIR);
    assert!(
        dir.is_dir(),
        "talk-off corpus missing: {SPEECH_DIR} not found. Install the Debian package \
         `asterisk-core-sounds-en-wav` (apt-get install asterisk-core-sounds-en-wav); CI must too."
    );
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("read speech dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "wav") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(
        files.len() > 100,
        "talk-off corpus in {SPEECH_DIR} looks incomplete: {} files",
        files.len()
    );
    files
}

fn read_speech(path: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert!(
        spec.sample_rate == 8000 && spec.channels == 1 && spec.bits_per_sample == 16,
        "{}: expected 8 kHz mono 16-bit, got {spec:?}",
        path.display()
    );
    r.samples::<i16>().map(|s| s.expect("wav sample")).collect()
}

/// Runs `files` through fresh detectors on a few threads; returns (frames, false digits).
fn scan(files: &[PathBuf], gain: f64, mix: impl Fn(usize) -> f64 + Sync) -> (usize, Vec<String>) {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                let mix = &mix;
                s.spawn(move || {
                    let mut frames = 0;
                    let mut hits = Vec::new();
                    for path in part {
                        let pcm: Vec<i16> = read_speech(path)
                            .iter()
                            .enumerate()
                            .map(|(n, &x)| {
                                (f64::from(x) * gain + mix(n))
                                    .round()
                                    .clamp(-32768.0, 32767.0) as i16
                            })
                            .collect();
                        frames += pcm.len().div_ceil(160);
                        let got = detect(&pcm);
                        if !got.is_empty() {
                            hits.push(format!("{} -> {got:?}", path.display()));
                        }
                    }
                    (frames, hits)
                })
            })
            .collect();
        handles.into_iter().fold((0, Vec::new()), |(f, mut h), t| {
            let (tf, th) = t.join().expect("scan thread");
            h.extend(th);
            (f + tf, h)
        })
    })
}

#[test]
fn talk_off_real_speech() {
    let files = speech_files();
    for gain in [1.0, 2.0] {
        let (frames, hits) = scan(&files, gain, |_| 0.0);
        println!(
            "talk-off gain {gain}: {} files, {frames} frames, {} false digits",
            files.len(),
            hits.len()
        );
        assert!(
            hits.is_empty(),
            "talk-off at gain {gain}: {} false digits in {} files / {frames} frames:\n{}",
            hits.len(),
            files.len(),
            hits.join("\n")
        );
    }
}

#[test]
fn talk_off_speech_over_music_like_tones() {
    let files = speech_files();
    let subset: Vec<PathBuf> = files.iter().step_by(4).cloned().collect();
    // A sustained instrument note under the speech, with partials on a DTMF row frequency.
    let f0 = 697.0 / 3.0;
    let parts = note(f0, amp(-20.0), 8);
    let (frames, hits) = scan(&subset, 1.0, |n| {
        let t = n as f64 / 8000.0;
        parts
            .iter()
            .map(|&(f, a)| a * (2.0 * std::f64::consts::PI * f * t).sin())
            .sum()
    });
    println!(
        "speech + note: {} files, {frames} frames, {} false digits",
        subset.len(),
        hits.len()
    );
    assert!(
        hits.is_empty(),
        "speech + note: false digits:\n{}",
        hits.join("\n")
    );
}

// ---- merger ----

fn merger() -> (DtmfMerger, Instant) {
    (DtmfMerger::new(Duration::from_millis(300)), Instant::now())
}

fn ms_after(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

use DigitSource::{InBand, TwilioEvent};

#[test]
fn merger_one_source_only() {
    for src in [InBand, TwilioEvent] {
        let (mut m, t0) = merger();
        assert!(m.accept(t0, '1', src));
        assert!(
            m.accept(ms_after(t0, 100), '1', src),
            "same source never pairs with itself"
        );
        assert!(m.accept(ms_after(t0, 800), '1', src));
    }
}

#[test]
fn merger_both_sources_either_order() {
    for (a, b) in [(InBand, TwilioEvent), (TwilioEvent, InBand)] {
        let (mut m, t0) = merger();
        assert!(m.accept(t0, '#', a));
        assert!(!m.accept(ms_after(t0, 120), '#', b));
        // The pair is consumed: the next report starts a new press.
        assert!(m.accept(ms_after(t0, 200), '#', b));
    }
}

#[test]
fn merger_quick_double_press_all_interleavings() {
    let orders: [[DigitSource; 4]; 6] = [
        [TwilioEvent, InBand, TwilioEvent, InBand],
        [InBand, TwilioEvent, InBand, TwilioEvent],
        [TwilioEvent, TwilioEvent, InBand, InBand],
        [InBand, InBand, TwilioEvent, TwilioEvent],
        [TwilioEvent, InBand, InBand, TwilioEvent],
        [InBand, TwilioEvent, TwilioEvent, InBand],
    ];
    for order in orders {
        let (mut m, t0) = merger();
        let news = order
            .iter()
            .enumerate()
            .filter(|&(i, &s)| m.accept(ms_after(t0, 40 * i as u64), '1', s))
            .count();
        assert_eq!(news, 2, "{order:?}");
    }
}

#[test]
fn merger_window_and_digits() {
    let (mut m, t0) = merger();
    assert!(m.accept(t0, '1', TwilioEvent));
    assert!(
        m.accept(ms_after(t0, 301), '1', InBand),
        "outside the window"
    );
    assert!(m.accept(ms_after(t0, 350), '2', TwilioEvent));
    assert!(m.accept(ms_after(t0, 360), '3', InBand), "different digit");
    assert!(!m.accept(ms_after(t0, 370), '2', InBand));
    assert!(
        !m.accept(ms_after(t0, 400), '1', TwilioEvent),
        "pairs with the in-band 1 at 301"
    );
    assert!(m.accept(ms_after(t0, 500), 'a', TwilioEvent));
    assert!(
        !m.accept(ms_after(t0, 510), 'A', InBand),
        "case does not split a press"
    );
}

#[test]
fn merger_is_bounded_and_time_tolerant() {
    let (mut m, t0) = merger();
    for i in 0..1000u64 {
        assert!(m.accept(ms_after(t0, i), '5', TwilioEvent));
    }
    // Only the newest MERGE_SLOTS are remembered; they still pair, oldest first.
    for _ in 0..MERGE_SLOTS {
        assert!(!m.accept(ms_after(t0, 1000), '5', InBand));
    }
    assert!(m.accept(ms_after(t0, 1000), '5', InBand));
    // A clock that goes backwards must not panic.
    assert!(!m.accept(t0, '5', TwilioEvent));
}
