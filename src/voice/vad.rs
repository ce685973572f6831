//! Voice activity: webrtc-vad per 20 ms frame, and the speech segmenter that turns voiced/unvoiced
//! frames into utterances (speech-start window, hangover, minimum utterance).

use std::time::{Duration, Instant};

use crate::voice::config::VadConfig;

/// Milliseconds of audio in one frame.
pub const FRAME_MS: u32 = 20;

/// webrtc-vad (libfvad) at 8 kHz.
pub struct Vad {
    inner: webrtc_vad::Vad,
}

// SAFETY: `webrtc_vad::Vad` holds a raw pointer to a libfvad instance that it alone owns (created
// in `new`, freed in `Drop`); libfvad keeps no thread-local or global state. Moving that exclusive
// ownership to another thread is sound; we never share it (`Vad` is not `Sync`).
unsafe impl Send for Vad {}

impl Vad {
    pub fn new(aggressiveness: u8) -> Self {
        let mode = match aggressiveness {
            0 => webrtc_vad::VadMode::Quality,
            1 => webrtc_vad::VadMode::LowBitrate,
            2 => webrtc_vad::VadMode::Aggressive,
            _ => webrtc_vad::VadMode::VeryAggressive,
        };
        Self {
            inner: webrtc_vad::Vad::new_with_rate_and_mode(webrtc_vad::SampleRate::Rate8kHz, mode),
        }
    }

    /// Classifies one 20 ms frame of 8 kHz audio.
    pub fn is_voice(&mut self, frame: &[i16; 160]) -> bool {
        // libfvad only rejects invalid lengths, which the array type rules out.
        self.inner.is_voice_segment(frame).unwrap_or(false)
    }
}

/// What the segmenter concluded from one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechEvent {
    /// Enough voiced audio inside the start window: the caller is talking. `onset` is the arrival
    /// time of the first voiced frame of the window.
    Started { onset: Instant },
    /// Silence lasted the hangover: the utterance is over. `end` is when its last voiced frame
    /// ended; `voiced` counts voiced audio in it.
    Ended { end: Instant, voiced: Duration },
    /// The utterance ended but was shorter than the minimum: noise, not a turn.
    Discarded { voiced: Duration },
}

/// Turns a stream of voiced/unvoiced frames into utterances.
#[derive(Debug, Clone)]
pub struct SpeechSegmenter {
    start_frames: u32,
    window_frames: u32,
    hangover_frames: u32,
    min_utterance: Duration,
    /// Bit i set = the frame i frames ago was voiced (bit 0 = latest).
    history: u32,
    /// Arrival times of the frames in the start window, newest last (ring indexed by frame count).
    window_times: [Option<Instant>; 32],
    frames_seen: u64,
    in_speech: bool,
    onset: Option<Instant>,
    last_voiced_end: Option<Instant>,
    silent_run: u32,
    voiced_frames: u32,
}

impl SpeechSegmenter {
    pub fn new(cfg: &VadConfig) -> Self {
        let frames = |ms: u32| ms.div_ceil(FRAME_MS).max(1);
        let window_frames = frames(cfg.start_window_ms).min(32);
        Self {
            start_frames: frames(cfg.start_voiced_ms).min(window_frames),
            window_frames,
            hangover_frames: frames(cfg.hangover_ms),
            min_utterance: Duration::from_millis(cfg.min_utterance_ms as u64),
            history: 0,
            window_times: [None; 32],
            frames_seen: 0,
            in_speech: false,
            onset: None,
            last_voiced_end: None,
            silent_run: 0,
            voiced_frames: 0,
        }
    }

    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// Voiced audio since the onset of the current utterance (zero outside speech).
    pub fn voiced(&self) -> Duration {
        Duration::from_millis((self.voiced_frames * FRAME_MS) as u64)
    }

    pub fn onset(&self) -> Option<Instant> {
        self.onset
    }

    /// Forgets any utterance in progress (e.g. after the caller's speech was ignored).
    pub fn reset(&mut self) {
        self.history = 0;
        self.in_speech = false;
        self.onset = None;
        self.silent_run = 0;
        self.voiced_frames = 0;
    }

    /// Feeds one frame that arrived at `now`.
    pub fn push(&mut self, now: Instant, voiced: bool) -> Option<SpeechEvent> {
        let mask = if self.window_frames >= 32 {
            u32::MAX
        } else {
            (1u32 << self.window_frames) - 1
        };
        self.history = ((self.history << 1) | voiced as u32) & mask;
        self.window_times[(self.frames_seen % 32) as usize] = Some(now);
        self.frames_seen += 1;
        let frame = Duration::from_millis(FRAME_MS as u64);

        if !self.in_speech {
            if self.history.count_ones() < self.start_frames {
                return None;
            }
            // The oldest voiced frame inside the window is the onset.
            let oldest_voiced_age = 31 - self.history.leading_zeros() as u64;
            let index = (self.frames_seen - 1 - oldest_voiced_age) % 32;
            // A frame that arrives at T carries the audio of [T - 20 ms, T].
            let onset = self.window_times[index as usize].unwrap_or(now) - frame;
            self.in_speech = true;
            self.onset = Some(onset);
            self.voiced_frames = self.history.count_ones();
            self.silent_run = 0;
            self.last_voiced_end = Some(now);
            return Some(SpeechEvent::Started { onset });
        }

        if voiced {
            self.voiced_frames += 1;
            self.silent_run = 0;
            self.last_voiced_end = Some(now);
            return None;
        }
        self.silent_run += 1;
        if self.silent_run < self.hangover_frames {
            return None;
        }
        let voiced = self.voiced();
        let end = self.last_voiced_end.unwrap_or(now);
        self.reset();
        if voiced < self.min_utterance {
            Some(SpeechEvent::Discarded { voiced })
        } else {
            Some(SpeechEvent::Ended { end, voiced })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seg: &mut SpeechSegmenter, t0: Instant, pattern: &str) -> Vec<(usize, SpeechEvent)> {
        pattern
            .chars()
            .enumerate()
            .filter_map(|(i, c)| {
                let now = t0 + Duration::from_millis(20 * i as u64);
                seg.push(now, c == '#').map(|e| (i, e))
            })
            .collect()
    }

    #[test]
    fn utterance_start_and_end_with_hangover() {
        let cfg = VadConfig::default(); // 60 ms voiced in 100 ms, hangover 140, min 220
        let mut seg = SpeechSegmenter::new(&cfg);
        let t0 = Instant::now();
        // 5 silent, 20 voiced (400 ms), 10 silent.
        let events = run(
            &mut seg,
            t0,
            &format!("{}{}{}", ".".repeat(5), "#".repeat(20), ".".repeat(10)),
        );
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[0],
            (
                7,
                SpeechEvent::Started {
                    onset: t0 + Duration::from_millis(80)
                }
            )
        );
        // Hangover: 140 ms = 7 silent frames after the last voiced frame (index 24).
        let (i, e) = events[1];
        assert_eq!(i, 31);
        assert_eq!(
            e,
            SpeechEvent::Ended {
                end: t0 + Duration::from_millis(480),
                voiced: Duration::from_millis(400)
            }
        );
    }

    #[test]
    fn short_burst_is_discarded_and_gaps_within_hangover_are_bridged() {
        let mut seg = SpeechSegmenter::new(&VadConfig::default());
        let t0 = Instant::now();
        let events = run(&mut seg, t0, "####.........");
        assert!(
            matches!(events.last(), Some((_, SpeechEvent::Discarded { .. }))),
            "{events:?}"
        );

        let mut seg = SpeechSegmenter::new(&VadConfig::default());
        // A 100 ms pause inside speech does not end the utterance.
        let events = run(&mut seg, t0, "##########.....##########..........");
        let ended: Vec<_> = events
            .iter()
            .filter(|(_, e)| matches!(e, SpeechEvent::Ended { .. }))
            .collect();
        assert_eq!(ended.len(), 1, "{events:?}");
    }

    #[test]
    fn isolated_voiced_frames_do_not_start_speech() {
        let mut seg = SpeechSegmenter::new(&VadConfig::default());
        assert!(run(&mut seg, Instant::now(), "#....#....#....#....").is_empty());
    }

    #[test]
    fn webrtc_vad_tells_tone_bursts_from_silence() {
        let mut vad = Vad::new(2);
        let silence = [0i16; 160];
        let mut voiced_like = [0i16; 160];
        for (i, s) in voiced_like.iter_mut().enumerate() {
            // A 200 Hz fundamental with harmonics, loud: speech-like enough for libfvad.
            let t = i as f32 / 8000.0;
            let v: f32 = (1..6)
                .map(|h| (2.0 * std::f32::consts::PI * 200.0 * h as f32 * t).sin() / h as f32)
                .sum();
            *s = (v * 8000.0) as i16;
        }
        assert!(!vad.is_voice(&silence));
        let voiced = (0..10).filter(|_| vad.is_voice(&voiced_like)).count();
        assert!(voiced >= 8, "voiced {voiced}/10");
    }
}
