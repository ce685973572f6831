//! The engine's settings: the `[vad]`, `[turn]`, `[playout]` and `[dtmf]` sections of
//! `config.toml`, owned here so the engine imports nothing from `crate::config`
//! (which re-exports them). Plain data with their defaults.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VadConfig {
    /// webrtc-vad aggressiveness 0 (permissive) ..= 3 (strict).
    pub aggressiveness: u8,
    /// Speech starts after this much voiced audio within `start_window_ms`.
    pub start_voiced_ms: u32,
    pub start_window_ms: u32,
    /// Silence that must follow speech before the utterance is over.
    pub hangover_ms: u32,
    /// Utterances shorter than this are noise, not a turn.
    pub min_utterance_ms: u32,
    /// Audio kept before the detected onset and sent to the recogniser with the utterance.
    pub preroll_ms: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// After end of speech, wait this long for a final transcript before using the last partial.
    pub stt_timeout_ms: u64,
    /// The agent must produce its first words within this long, or the fallback reply is spoken.
    pub agent_timeout_ms: u64,
    /// The caller must talk over the bot this long before playback is cut (false barge-in guard).
    pub barge_in_min_speech_ms: u32,
    /// Barge-in is possible at all.
    pub barge_in: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PlayoutConfig {
    /// Frames (20 ms each) sent ahead of Twilio's playback position at most.
    pub lead_frames: u32,
    /// A mark goes out every this many frames so we know what has been played.
    pub mark_every_frames: u32,
    /// Internal playout buffer for TTS audio; when full, TTS is throttled.
    pub buffer_ms: u32,
    /// Headroom on the cap of unconfirmed audio above lead + mark interval + SRTT + 4·RTTVAR, so
    /// a TCP stall on the echo path does not hold playout.
    pub unconfirmed_slack_ms: u32,
    /// Most audio sent to Twilio without a mark echo confirming it (a dead peer gets no more).
    pub unconfirmed_max_ms: u32,
    /// A mark echo later than this after its audio was due to play (plus SRTT) is given up on:
    /// the schedule says it played, so playback and end-of-call never wait forever.
    pub echo_timeout_ms: u32,
}

impl PlayoutConfig {
    pub fn limits(&self) -> crate::voice::pacer::PacerLimits {
        use std::time::Duration;
        crate::voice::pacer::PacerLimits {
            cap_slack: Duration::from_millis(self.unconfirmed_slack_ms as u64),
            cap_max: Duration::from_millis(self.unconfirmed_max_ms as u64),
            echo_timeout: Duration::from_millis(self.echo_timeout_ms as u64),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DtmfConfig {
    /// Detect DTMF tones in the audio as well as taking Twilio `dtmf` events.
    pub inband: bool,
    /// Reports of the same key from both sources within this window are one press.
    pub merge_window_ms: u64,
    /// While collecting digits: give up this long after the last key.
    pub inter_digit_timeout_ms: u64,
    /// While collecting digits: give up this long after collection started.
    pub overall_timeout_ms: u64,
    /// Collection commits on its own once this many digits are in (the agent may ask for fewer).
    pub max_digits: u8,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            aggressiveness: 2,
            start_voiced_ms: 60,
            start_window_ms: 100,
            hangover_ms: 140,
            min_utterance_ms: 220,
            preroll_ms: 300,
        }
    }
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            stt_timeout_ms: 1_500,
            agent_timeout_ms: 6_000,
            barge_in_min_speech_ms: 80,
            barge_in: true,
        }
    }
}

impl Default for PlayoutConfig {
    fn default() -> Self {
        Self {
            lead_frames: 5,
            mark_every_frames: 5,
            buffer_ms: 1_000,
            unconfirmed_slack_ms: 600,
            unconfirmed_max_ms: 1_200,
            echo_timeout_ms: 2_000,
        }
    }
}

impl Default for DtmfConfig {
    fn default() -> Self {
        Self {
            inband: true,
            merge_window_ms: 300,
            inter_digit_timeout_ms: 5_000,
            overall_timeout_ms: 30_000,
            max_digits: 15,
        }
    }
}
