//! What the session hands its driver: the `Output` queue items (frames and marks for Twilio,
//! audio and control for the providers, events for traces), why it wants to be woken
//! (`TimerReason`), its per-call counters, and the wire names of marks (`k<id>`).
//! `SttFrame` and `Output::Media` carry their audio inline so the frame path never allocates.

use std::time::Instant;

use crate::voice::events::CallEvent;
use crate::voice::twilio::FRAME_BYTES;

/// One 20 ms frame for the recogniser, in the format it asked for.
// Inline audio on purpose: boxing would allocate once per 20 ms frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SttFrame {
    Mulaw([u8; FRAME_BYTES]),
    Pcm16k([i16; 320]),
}

// Inline audio on purpose: boxing would allocate once per 20 ms frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// 20 ms of reply audio for Twilio.
    Media([u8; FRAME_BYTES]),
    /// Send a mark; its name is [`mark_name`] of the id.
    Mark(u64),
    /// Tell Twilio to drop everything buffered. `decided_at` is when the session decided it
    /// (the barge-in decision), so the driver can measure how long sending it took.
    Clear {
        decided_at: Instant,
    },
    SttAudio(SttFrame),
    /// Our VAD ended the utterance: the recogniser should finalise.
    SttUtteranceEnd,
    /// The audio since the last utterance end was noise: forget it.
    SttUtteranceDiscarded,
    /// Start the agent for `turn`; the conversation is
    /// [`CallSession::history`](super::CallSession::history).
    AgentRequest {
        turn: u32,
        digits: bool,
    },
    AgentCancel {
        turn: u32,
    },
    /// Synthesise one sentence of the reply; segments of a turn are spoken in order.
    TtsSpeak {
        turn: u32,
        segment: u32,
        text: String,
    },
    TtsCancel {
        turn: u32,
    },
    Event(CallEvent),
    /// Close the stream (Twilio then ends the call or continues its TwiML).
    Hangup {
        reason: &'static str,
    },
}

/// Why the session wants to be woken (for traces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerReason {
    Playout,
    SttFinal,
    AgentFirstWords,
    Digits,
}

impl TimerReason {
    pub const ALL: [TimerReason; 4] = [
        TimerReason::Playout,
        TimerReason::SttFinal,
        TimerReason::AgentFirstWords,
        TimerReason::Digits,
    ];

    /// Stable label for traces.
    pub fn as_str(self) -> &'static str {
        match self {
            TimerReason::Playout => "playout",
            TimerReason::SttFinal => "stt_final",
            TimerReason::AgentFirstWords => "agent_first_words",
            TimerReason::Digits => "digits",
        }
    }
}

/// Per-call counters, folded into the global metrics by the driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounters {
    pub frames_in: u64,
    pub turns: u64,
    pub barge_ins: u64,
    pub false_barge_ins: u64,
    pub short_utterances: u64,
    pub stt_timeouts: u64,
    pub agent_timeouts: u64,
    pub agent_errors: u64,
    pub tts_errors: u64,
    pub stale_provider_events: u64,
    pub unknown_marks: u64,
    pub digits: u64,
    pub duplicate_digits: u64,
    pub speech_ignored: u64,
    pub stray_transcripts: u64,
}

/// Mark names on the wire: `k<id>`.
pub fn mark_name(id: u64, buf: &mut [u8; 24]) -> &str {
    buf[0] = b'k';
    let mut digits = [0u8; 20];
    let mut n = id;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[1 + i] = digits[len - 1 - i];
    }
    std::str::from_utf8(&buf[..1 + len]).unwrap_or("k")
}

pub fn parse_mark_name(name: &str) -> Option<u64> {
    name.strip_prefix('k')?.parse().ok()
}
