//! In-band DTMF detection (Goertzel) and merging with Twilio `dtmf` events. OWNER: DTMF helper.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct DtmfDetectorConfig {}

impl Default for DtmfDetectorConfig {
    fn default() -> Self {
        Self {}
    }
}

/// Detects DTMF key presses in 8 kHz linear audio, one 20 ms frame at a time.
pub struct DtmfDetector {}

impl DtmfDetector {
    pub fn new(_cfg: DtmfDetectorConfig) -> Self {
        Self {}
    }

    /// Feeds one 20 ms frame; returns a digit once per key press, when the press is confirmed.
    pub fn process_frame(&mut self, _samples: &[i16; 160]) -> Option<char> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitSource {
    InBand,
    TwilioEvent,
}

/// Makes one key press one digit when both the in-band detector and Twilio report it.
pub struct DtmfMerger {}

impl DtmfMerger {
    pub fn new(_window: Duration) -> Self {
        Self {}
    }

    /// Returns true if this report is a new key press, false if it duplicates one already reported by the other source.
    pub fn accept(&mut self, _now: Instant, _digit: char, _source: DigitSource) -> bool {
        true
    }
}
