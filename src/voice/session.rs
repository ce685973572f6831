//! The call session: a sans-IO state machine for one phone call.
//!
//! # Run loop
//! The driver owns a `CallSession` and repeats:
//! 1. apply exactly one input with the current time: `handle_media`, `handle_dtmf`, `handle_mark`,
//!    `handle_stt`, `handle_agent`, `handle_agent_done`, `handle_tts_audio`, `handle_tts_done`,
//!    `handle_stt_lost`, `handle_stop`, or `handle_timeout` when the deadline from `poll_timeout`
//!    has passed;
//! 2. drain `poll_output` until it returns `None`, carrying out each output;
//! 3. wait for the next socket message, provider event, or the `poll_timeout` deadline.
//!
//! The session never reads the clock, so tests drive whole calls in virtual time.
//!
//! # Phases
//! `Listening` → (VAD onset) → `CallerSpeaking` → (VAD end + hangover) → `Thinking` (final
//! transcript, agent, TTS) → (first frame sent) → `BotSpeaking` → (last mark echoed) →
//! `Listening`, or `CollectingDigits` when the agent asked for keypad input. Caller speech during
//! `BotSpeaking` that lasts `barge_in_min_speech_ms` is a barge-in: `clear`, pacer emptied, agent
//! and TTS cancelled, and only the part of the reply that was played is kept in the history.

//!
//! # Layout
//! This file holds the session's state (settings, phase, the utterance and reply in progress) and
//! its queries. The behaviour lives beside it, one concept a file: `inputs` (the `handle_*`
//! entry points), `utterance` (caller audio, VAD and turn-taking), `keypad` (digit collection),
//! `reply` (turns, synthesis requests, playout), `barge_in` (interruptions and heard text),
//! `splitter` (sentence cutting) and `output` (what the driver receives).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::voice::audio::InboundAudio;
use crate::voice::digits::DigitCollector;
use crate::voice::dtmf::DtmfMerger;
use crate::voice::events::{InputKind, LatencyMarks};
use crate::voice::pacer::{Pacer, PacerStats, RttEstimator};
use crate::voice::ports::{HistoryCap, Message, SttAudioFormat};
use crate::voice::twilio::FRAME_BYTES;
use crate::voice::vad::{FRAME_MS, SpeechSegmenter};

mod barge_in;
mod inputs;
mod keypad;
mod output;
mod reply;
mod splitter;
mod utterance;

#[cfg(test)]
mod tests;

pub use output::{Output, SessionCounters, SttFrame, TimerReason, mark_name, parse_mark_name};
pub use splitter::SentenceSplitter;

/// Everything a session needs to know, taken from the configuration once per call
/// (`SessionConfig::from_config`, in `crate::app`).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub vad: crate::voice::config::VadConfig,
    pub turn: crate::voice::config::TurnConfig,
    pub playout: crate::voice::config::PlayoutConfig,
    pub dtmf: crate::voice::config::DtmfConfig,
    pub stt_format: SttAudioFormat,
    pub greeting: String,
    pub fallback_reply: String,
    /// How much of the conversation the session keeps (and so hands to the agent).
    pub history: HistoryCap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Listening,
    CallerSpeaking,
    Thinking,
    BotSpeaking,
    CollectingDigits,
    Ended,
}

/// Caller speech being recognised.
#[derive(Debug)]
struct Utterance {
    onset: Instant,
    end: Option<Instant>,
    /// User text kept from a reply the caller talked over before it was heard.
    prefix: String,
    finals: String,
    last_partial: String,
    first_result_at: Option<Instant>,
    stt_deadline: Option<Instant>,
    /// A keypad tone fell inside it: the "speech" was the tone.
    had_dtmf: bool,
}

#[derive(Debug)]
struct Segment {
    /// Byte range of this sentence in `Reply::text`.
    text_start: usize,
    text_end: usize,
    audio_bytes: usize,
    done: bool,
    /// Synthesis failed: any audio it has is a fragment of the sentence, not the sentence.
    failed: bool,
}

impl Segment {
    /// The caller gets the whole sentence (once played): it synthesised to the end.
    fn whole(&self) -> bool {
        self.done && !self.failed && self.audio_bytes > 0
    }

    /// Synthesis failed after some of its audio went to the pacer: the caller gets a fragment.
    fn cut(&self) -> bool {
        self.failed && self.audio_bytes > 0
    }
}

/// The bot's side of a turn in progress.
#[derive(Debug)]
struct Reply {
    turn: u32,
    input: InputKind,
    user_text: String,
    /// End of caller input (speech end or digit commit): TOTAL_MS starts here.
    input_end: Option<Instant>,
    marks: LatencyMarks,
    agent_running: bool,
    agent_requested_at: Instant,
    agent_deadline: Option<Instant>,
    first_delta_at: Option<Instant>,
    first_tts_request_at: Option<Instant>,
    first_audio_at: Option<Instant>,
    first_frame_at: Option<Instant>,
    splitter: SentenceSplitter,
    text: String,
    segments: Vec<Segment>,
    collect_digits: Option<u8>,
    hangup_after: bool,
    /// A sentence failed to synthesise.
    tts_failed: bool,
    /// The fallback was already asked for once after a TTS failure (it may fail too).
    tts_fallback_requested: bool,
}

impl Reply {
    fn all_audio_in(&self) -> bool {
        !self.agent_running && self.splitter.is_empty() && self.segments.iter().all(|s| s.done)
    }
}

pub struct CallSession {
    cfg: SessionConfig,
    phase: Phase,
    audio: InboundAudio,
    segmenter: SpeechSegmenter,
    pacer: Pacer,
    merger: DtmfMerger,
    collector: Option<DigitCollector>,
    frame: [u8; FRAME_BYTES],
    frame_len: usize,
    preroll: VecDeque<SttFrame>,
    preroll_cap: usize,
    stt_open: bool,
    utterance: Option<Utterance>,
    reply: Option<Reply>,
    /// Caller speech heard during bot speech, not yet long enough to interrupt.
    barge_candidate: bool,
    /// Speech the session decided to ignore (digits being typed).
    ignoring_speech: bool,
    next_turn: u32,
    history: Vec<Message>,
    outputs: VecDeque<Output>,
    counters: SessionCounters,
}

impl CallSession {
    pub fn new(now: Instant, cfg: SessionConfig) -> Self {
        let preroll_cap = (cfg.vad.preroll_ms / FRAME_MS).max(1) as usize;
        let mut session = Self {
            phase: Phase::Listening,
            audio: InboundAudio::new(
                cfg.vad.aggressiveness,
                cfg.dtmf.inband,
                cfg.stt_format == SttAudioFormat::Pcm16k,
            ),
            segmenter: SpeechSegmenter::new(&cfg.vad),
            pacer: Pacer::with_limits(
                cfg.playout.buffer_ms,
                cfg.playout.lead_frames,
                cfg.playout.mark_every_frames,
                cfg.playout.limits(),
            ),
            merger: DtmfMerger::new(Duration::from_millis(cfg.dtmf.merge_window_ms)),
            collector: None,
            frame: [0; FRAME_BYTES],
            frame_len: 0,
            preroll: VecDeque::with_capacity(preroll_cap),
            preroll_cap,
            stt_open: false,
            utterance: None,
            reply: None,
            barge_candidate: false,
            ignoring_speech: false,
            next_turn: 1,
            history: Vec::with_capacity(16),
            outputs: VecDeque::with_capacity(32),
            counters: SessionCounters::default(),
            cfg,
        };
        if !session.cfg.greeting.is_empty() {
            let greeting = session.cfg.greeting.clone();
            session.speak_fixed(
                now,
                InputKind::Greeting,
                String::new(),
                None,
                LatencyMarks::default(),
                &greeting,
            );
        }
        session
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    pub fn pacer_stats(&self) -> PacerStats {
        self.pacer.stats()
    }

    /// The call's RTT estimate to Twilio, from mark echoes.
    pub fn pacer_rtt(&self) -> RttEstimator {
        self.pacer.rtt()
    }

    /// The conversation so far, as the agent should see it: its newest part, within
    /// `cfg.history`.
    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// Adds a message to the history and forgets the oldest beyond the cap. Once per turn, never
    /// on the per-frame path.
    fn remember(&mut self, message: Message) {
        self.history.push(message);
        let first = self.cfg.history.first_kept(&self.history);
        self.history.drain(..first);
    }

    /// The driver takes TTS audio only while this is true (backpressure on synthesis).
    pub fn wants_tts_audio(&self, chunk_bytes: usize) -> bool {
        self.pacer.free_bytes() >= chunk_bytes
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<(Instant, TimerReason)> {
        let mut best: Option<(Instant, TimerReason)> = None;
        let mut consider = |at: Option<Instant>, why| {
            if let Some(at) = at
                && best.is_none_or(|(b, _)| at < b)
            {
                best = Some((at, why));
            }
        };
        if self.phase == Phase::Ended {
            return None;
        }
        consider(self.pacer.poll_timeout(), TimerReason::Playout);
        consider(
            self.utterance.as_ref().and_then(|u| u.stt_deadline),
            TimerReason::SttFinal,
        );
        consider(
            self.reply
                .as_ref()
                .filter(|r| r.first_delta_at.is_none())
                .and_then(|r| r.agent_deadline),
            TimerReason::AgentFirstWords,
        );
        consider(
            self.collector.as_ref().and_then(|c| c.poll_timeout()),
            TimerReason::Digits,
        );
        best
    }
}

fn ms_between(from: Instant, to: Instant) -> u32 {
    to.saturating_duration_since(from)
        .as_millis()
        .min(u32::MAX as u128) as u32
}
