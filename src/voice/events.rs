//! What a call session reports for persistence and metrics. Emitted at most a few times per turn,
//! never per frame, so these may own their strings.

/// Per-turn latency marks in milliseconds. Each is `None` when the turn never reached that point
/// (e.g. a barge-in before any TTS audio). Definitions (also in README, "Latency marks"):
///
/// * `stt_first_partial_ms`: caller speech start (first voiced frame of the utterance) → first
///   partial transcript.
/// * `stt_final_ms`: end of caller speech (arrival of the last voiced frame) → final transcript
///   accepted and the turn handed on. When the recogniser finished first, this is the VAD
///   hangover: the turn cannot start before our VAD decides the caller has stopped.
/// * `ai_latency_ms`: request handed to the agent → first agent text delta.
/// * `tts_ready_ms`: first sentence handed to TTS → first TTS audio received.
/// * `total_ms`: end of caller speech → first bot audio frame sent to Twilio.
/// * `ai_total_ms`: request handed to the agent → agent finished the turn (tools included).
/// * `tts_total_ms`: first sentence handed to TTS → last sentence fully synthesised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LatencyMarks {
    pub stt_first_partial_ms: Option<u32>,
    pub stt_final_ms: Option<u32>,
    pub ai_latency_ms: Option<u32>,
    pub tts_ready_ms: Option<u32>,
    pub total_ms: Option<u32>,
    pub ai_total_ms: Option<u32>,
    pub tts_total_ms: Option<u32>,
}

/// How the caller's side of a turn reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    Speech,
    Digits,
    /// The bot spoke first (greeting); there was no caller input.
    Greeting,
    /// The bot spoke unprompted about a failure (the recogniser stopped for good).
    Notice,
}

impl InputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Speech => "speech",
            InputKind::Digits => "digits",
            InputKind::Greeting => "greeting",
            InputKind::Notice => "notice",
        }
    }
}

/// One completed (or interrupted) exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnRecord {
    pub turn: u32,
    pub input: InputKind,
    pub user_text: String,
    /// What the caller actually heard of the reply (truncated on barge-in; whole sentences only
    /// when synthesis broke off mid-sentence).
    pub bot_text: String,
    /// The reply did not play as written: the caller barged in, or its synthesis broke off after
    /// part of a sentence had been sent.
    pub interrupted: bool,
    pub marks: LatencyMarks,
    /// The call's smoothed RTT to Twilio (SRTT from mark echoes) when the turn ended; `None`
    /// before the first echo. Logged with the turn, not stored.
    pub rtt_ms: Option<u32>,
}

/// Something worth keeping about a call. The adapter stamps call id and wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    Turn(TurnRecord),
    BargeIn {
        turn: u32,
        heard_chars: u32,
        speech_ms: u32,
    },
    Digits {
        digits: String,
        committed_by: &'static str,
    },
    /// A recoverable problem (bad frame, provider failure, timeout); `kind` is a stable label.
    Warning {
        kind: &'static str,
        detail: String,
    },
    /// The driver woke the session for a turn-deciding deadline (not the 20 ms playout clock,
    /// which is only counted): the reason `poll_timeout` gave, and how late the wake-up was.
    Timer {
        reason: crate::voice::session::TimerReason,
        late_ms: u32,
    },
}

impl CallEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            CallEvent::Turn(_) => "turn",
            CallEvent::BargeIn { .. } => "barge_in",
            CallEvent::Digits { .. } => "digits",
            CallEvent::Warning { kind, .. } => kind,
            CallEvent::Timer { .. } => "timer",
        }
    }
}
