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

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::voice::audio::InboundAudio;
use crate::voice::digits::{DigitCollector, DigitOutcome};
use crate::voice::dtmf::{DigitSource, DtmfMerger};
use crate::voice::events::{CallEvent, InputKind, LatencyMarks, TurnRecord};
use crate::voice::pacer::{MarkOutcome, Pacer, PacerOutput, PacerStats, RttEstimator};
use crate::voice::ports::{
    AgentEvent, HistoryCap, Message, ProviderError, Role, SttAudioFormat, SttEvent,
};
use crate::voice::twilio::FRAME_BYTES;
use crate::voice::vad::{FRAME_MS, SpeechEvent, SpeechSegmenter};

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
    /// Start the agent for `turn`; the conversation is [`CallSession::history`].
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Listening,
    CallerSpeaking,
    Thinking,
    BotSpeaking,
    CollectingDigits,
    Ended,
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

    // ------------------------------------------------------------------ inputs: Twilio

    /// Caller audio: mu-law bytes of any length; processed in 20 ms frames.
    pub fn handle_media(&mut self, now: Instant, mulaw: &[u8]) {
        if self.phase == Phase::Ended {
            return;
        }
        let mut rest = mulaw;
        while !rest.is_empty() {
            let take = (FRAME_BYTES - self.frame_len).min(rest.len());
            self.frame[self.frame_len..self.frame_len + take].copy_from_slice(&rest[..take]);
            self.frame_len += take;
            rest = &rest[take..];
            if self.frame_len == FRAME_BYTES {
                self.frame_len = 0;
                self.on_frame(now);
            }
        }
        self.pump_pacer(now);
    }

    /// A Twilio `dtmf` event.
    pub fn handle_dtmf(&mut self, now: Instant, digit: char) {
        if self.phase != Phase::Ended {
            self.on_digit(now, digit, DigitSource::TwilioEvent);
            self.pump_pacer(now);
        }
    }

    /// A Twilio `mark` echo.
    pub fn handle_mark(&mut self, now: Instant, name: &str) {
        // After the end nothing is played or reported: a late echo has nothing left to confirm
        // (found by the call_session fuzzer: a stale-echo warning after `Ended`).
        if self.phase == Phase::Ended {
            return;
        }
        let Some(id) = parse_mark_name(name) else {
            self.counters.unknown_marks += 1;
            return;
        };
        match self.pacer.on_mark(now, id) {
            MarkOutcome::Finished => self.maybe_finish_reply(now),
            MarkOutcome::Played | MarkOutcome::Flushed => {}
            MarkOutcome::Stale => {
                if self.pacer.stats().stale_echoes == 1 {
                    self.outputs.push_back(Output::Event(CallEvent::Warning {
                        kind: "stale_mark_echo",
                        detail: format!("mark {id} echoed out of order or after its timeout"),
                    }));
                }
            }
            MarkOutcome::Unknown => self.counters.unknown_marks += 1,
        }
        self.pump_pacer(now);
    }

    /// Twilio `stop`, or the socket went away: the call is over.
    pub fn handle_stop(&mut self, now: Instant) {
        if self.phase == Phase::Ended {
            return;
        }
        if self.reply.is_some() {
            // The caller hung up mid-reply: keep what they heard.
            self.interrupt_reply(now);
        }
        if self.stt_open {
            self.stt_open = false;
            self.outputs.push_back(Output::SttUtteranceDiscarded);
        }
        self.utterance = None;
        self.collector = None;
        self.phase = Phase::Ended;
    }

    // ------------------------------------------------------------------ inputs: providers

    pub fn handle_stt(&mut self, now: Instant, event: SttEvent) {
        let Some(u) = self.utterance.as_mut() else {
            self.counters.stray_transcripts += 1;
            return;
        };
        u.first_result_at.get_or_insert(now);
        match event {
            SttEvent::Partial { text } => u.last_partial = text,
            SttEvent::Final { text } => {
                u.finals.push_str(&text);
                u.last_partial.clear();
                if u.end.is_some() {
                    self.complete_utterance(now);
                }
            }
        }
        self.pump_pacer(now);
    }

    pub fn handle_agent(&mut self, now: Instant, turn: u32, event: AgentEvent) {
        let Some(reply) = live_reply(&mut self.reply, &mut self.counters, turn, true) else {
            return;
        };
        match event {
            AgentEvent::TextDelta(text) => {
                if reply.first_delta_at.is_none() {
                    reply.first_delta_at = Some(now);
                    reply.marks.ai_latency_ms = Some(ms_between(reply.agent_requested_at, now));
                }
                reply.splitter.push(&text);
                while let Some(sentence) = self
                    .reply
                    .as_mut()
                    .and_then(|r| r.splitter.next_sentence(false))
                {
                    self.request_tts(now, sentence);
                }
            }
            AgentEvent::CollectDigits { max_digits } => {
                reply.collect_digits = Some(max_digits);
                // Keys typed while the prompt still plays count (type-ahead).
                self.collector = Some(self.new_collector(max_digits));
            }
            AgentEvent::Hangup => reply.hangup_after = true,
        }
        self.pump_pacer(now);
    }

    /// The agent finished the turn. A failure of any kind is traced with its kind; if nothing of
    /// the reply was said yet, the caller hears the fallback (the agent retries what is worth
    /// retrying itself, within the turn's deadline).
    pub fn handle_agent_done(
        &mut self,
        now: Instant,
        turn: u32,
        result: Result<(), ProviderError>,
    ) {
        let Some(reply) = live_reply(&mut self.reply, &mut self.counters, turn, true) else {
            return;
        };
        reply.agent_running = false;
        reply.marks.ai_total_ms = Some(ms_between(reply.agent_requested_at, now));
        if let Err(error) = result {
            self.counters.agent_errors += 1;
            let speak_fallback = reply.text.is_empty() && reply.splitter.is_empty();
            let detail = if speak_fallback {
                format!("{error}; the fallback reply was spoken")
            } else {
                format!("{error}; the reply ends with what was already said")
            };
            self.outputs.push_back(Output::Event(CallEvent::Warning {
                kind: "agent_error",
                detail,
            }));
            if speak_fallback {
                let fallback = self.cfg.fallback_reply.clone();
                self.request_tts(now, fallback);
            }
        }
        if let Some(reply) = self.reply.as_mut()
            && let Some(rest) = reply.splitter.next_sentence(true)
        {
            self.request_tts(now, rest);
        }
        self.after_reply_progress(now);
    }

    pub fn handle_tts_audio(&mut self, now: Instant, turn: u32, segment: u32, mulaw: &[u8]) {
        let Some(reply) = live_reply(&mut self.reply, &mut self.counters, turn, false) else {
            return;
        };
        if reply.first_audio_at.is_none() {
            reply.first_audio_at = Some(now);
            if let Some(asked) = reply.first_tts_request_at {
                reply.marks.tts_ready_ms = Some(ms_between(asked, now));
            }
        }
        let accepted = self.pacer.push(mulaw);
        if let Some(seg) = reply.segments.get_mut(segment as usize) {
            seg.audio_bytes += accepted;
        }
        self.pump_pacer(now);
    }

    pub fn handle_tts_done(
        &mut self,
        now: Instant,
        turn: u32,
        segment: u32,
        result: Result<(), ProviderError>,
    ) {
        let Some(reply) = live_reply(&mut self.reply, &mut self.counters, turn, false) else {
            return;
        };
        if let Some(seg) = reply.segments.get_mut(segment as usize) {
            seg.done = true;
            seg.failed = result.is_err();
        }
        if let Err(error) = result {
            self.counters.tts_errors += 1;
            self.outputs.push_back(Output::Event(CallEvent::Warning {
                kind: "tts_error",
                detail: error.to_string(),
            }));
            reply.tts_failed = true;
        }
        self.after_reply_progress(now);
    }

    /// The recogniser stopped for good (a fatal failure, or retries exhausted): the call goes on
    /// with keypad input only. Traced; when the bot is not already talking, the caller hears the
    /// fallback reply so the silence is not a mystery. An utterance waiting for its transcript
    /// completes at its STT deadline as before.
    pub fn handle_stt_lost(&mut self, now: Instant, error: &ProviderError) {
        if self.phase == Phase::Ended {
            return;
        }
        let speak = self.reply.is_none() && self.utterance.is_none();
        self.outputs.push_back(Output::Event(CallEvent::Warning {
            kind: "stt_lost",
            detail: if speak {
                format!("{error}; keypad input only from now; the fallback reply was spoken")
            } else {
                format!("{error}; keypad input only from now")
            },
        }));
        if speak {
            let fallback = self.cfg.fallback_reply.clone();
            self.speak_fixed(
                now,
                InputKind::Notice,
                String::new(),
                None,
                LatencyMarks::default(),
                &fallback,
            );
        }
        self.pump_pacer(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Ended {
            return;
        }
        if let Some(deadline) = self.utterance.as_ref().and_then(|u| u.stt_deadline)
            && now >= deadline
        {
            self.counters.stt_timeouts += 1;
            self.complete_utterance(now);
        }
        if let Some(reply) = self.reply.as_mut()
            && reply.first_delta_at.is_none()
            && reply.agent_deadline.is_some_and(|d| now >= d)
        {
            reply.agent_deadline = None;
            reply.agent_running = false;
            let turn = reply.turn;
            self.counters.agent_timeouts += 1;
            self.outputs.push_back(Output::AgentCancel { turn });
            self.outputs.push_back(Output::Event(CallEvent::Warning {
                kind: "agent_timeout",
                detail: format!("no reply within {} ms", self.cfg.turn.agent_timeout_ms),
            }));
            let fallback = self.cfg.fallback_reply.clone();
            self.request_tts(now, fallback);
            self.after_reply_progress(now);
        }
        if let Some(outcome) = self.collector.as_mut().and_then(|c| c.handle_timeout(now)) {
            self.on_digits_outcome(now, outcome);
        }
        self.pump_pacer(now);
    }

    // ------------------------------------------------------------------ audio path

    fn on_frame(&mut self, now: Instant) {
        self.counters.frames_in += 1;
        let analysis = self.audio.process(&self.frame);
        let stt_frame = match self.cfg.stt_format {
            SttAudioFormat::Mulaw8k => SttFrame::Mulaw(self.frame),
            SttAudioFormat::Pcm16k => SttFrame::Pcm16k(*self.audio.pcm16k()),
        };
        if self.stt_open {
            self.outputs.push_back(Output::SttAudio(stt_frame));
        } else {
            if self.preroll.len() == self.preroll_cap {
                self.preroll.pop_front();
            }
            self.preroll.push_back(stt_frame);
        }
        if let Some(digit) = analysis.dtmf {
            self.on_digit(now, digit, DigitSource::InBand);
        }
        match self.segmenter.push(now, analysis.voiced) {
            Some(SpeechEvent::Started { onset }) => self.on_speech_start(now, onset),
            Some(SpeechEvent::Ended { end, .. }) => self.on_speech_end(now, end, false),
            Some(SpeechEvent::Discarded { .. }) => self.on_speech_end(now, now, true),
            None => {
                if self.barge_candidate
                    && self.segmenter.voiced()
                        >= Duration::from_millis(self.cfg.turn.barge_in_min_speech_ms as u64)
                {
                    self.barge_in(now);
                }
            }
        }
    }

    fn on_speech_start(&mut self, now: Instant, onset: Instant) {
        match self.phase {
            Phase::BotSpeaking => {
                if self.cfg.turn.barge_in {
                    self.barge_candidate = true;
                    if self.cfg.turn.barge_in_min_speech_ms == 0 {
                        self.barge_in(now);
                    }
                } else {
                    self.ignoring_speech = true;
                    self.counters.speech_ignored += 1;
                }
            }
            Phase::CollectingDigits if self.collector.as_ref().is_some_and(|c| !c.is_empty()) => {
                // The caller is typing; talk in between is not a turn.
                self.ignoring_speech = true;
                self.counters.speech_ignored += 1;
            }
            Phase::Thinking if self.reply.is_some() => {
                // The caller kept talking before hearing anything: take back the request and
                // treat the new speech as the continuation of the same user message.
                let prefix = self.withdraw_unheard_reply(now);
                self.begin_utterance(onset, prefix);
            }
            Phase::Thinking => {
                // Paused, then went on: the same utterance continues.
                if let Some(u) = self.utterance.as_mut() {
                    u.end = None;
                    u.stt_deadline = None;
                }
                self.open_stt();
                self.phase = Phase::CallerSpeaking;
            }
            Phase::Listening | Phase::CollectingDigits => {
                self.begin_utterance(onset, String::new())
            }
            Phase::CallerSpeaking | Phase::Ended => {}
        }
    }

    fn on_speech_end(&mut self, now: Instant, end: Instant, too_short: bool) {
        if std::mem::take(&mut self.barge_candidate) {
            self.counters.false_barge_ins += 1;
            return;
        }
        if std::mem::take(&mut self.ignoring_speech) || self.phase != Phase::CallerSpeaking {
            return;
        }
        let Some(u) = self.utterance.as_mut() else {
            return;
        };
        self.stt_open = false;
        let continuation = !u.finals.is_empty() || !u.prefix.is_empty();
        if u.had_dtmf || (too_short && !continuation) {
            self.counters.short_utterances += u64::from(!u.had_dtmf);
            self.outputs.push_back(Output::SttUtteranceDiscarded);
            self.utterance = None;
            self.phase = if self.collector.is_some() {
                Phase::CollectingDigits
            } else {
                Phase::Listening
            };
            return;
        }
        self.outputs.push_back(Output::SttUtteranceEnd);
        if !too_short {
            u.end = Some(end);
        } else {
            u.end.get_or_insert(end);
        }
        self.phase = Phase::Thinking;
        if !u.finals.is_empty() && u.last_partial.is_empty() {
            // The recogniser already finished before our VAD did.
            self.complete_utterance(now);
        } else {
            u.stt_deadline = Some(now + Duration::from_millis(self.cfg.turn.stt_timeout_ms));
        }
    }

    fn begin_utterance(&mut self, onset: Instant, prefix: String) {
        self.utterance = Some(Utterance {
            onset,
            end: None,
            prefix,
            finals: String::new(),
            last_partial: String::new(),
            first_result_at: None,
            stt_deadline: None,
            had_dtmf: false,
        });
        self.open_stt();
        self.phase = Phase::CallerSpeaking;
    }

    fn open_stt(&mut self) {
        // The onset happened up to a start window ago: send the pre-roll so the recogniser hears it.
        while let Some(frame) = self.preroll.pop_front() {
            self.outputs.push_back(Output::SttAudio(frame));
        }
        self.stt_open = true;
    }

    /// The recogniser is done (final after end of speech) or timed out: start the turn.
    fn complete_utterance(&mut self, now: Instant) {
        let Some(u) = self.utterance.take() else {
            return;
        };
        let mut text = u.prefix;
        for part in [u.finals.trim(), u.last_partial.trim()] {
            if !part.is_empty() {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(part);
            }
        }
        let end = u.end.unwrap_or(now);
        let marks = LatencyMarks {
            stt_first_partial_ms: u.first_result_at.map(|t| ms_between(u.onset, t)),
            stt_final_ms: Some(ms_between(end, now)),
            ..LatencyMarks::default()
        };
        // Spoken input replaces keypad input that had not started.
        if self.collector.as_ref().is_some_and(|c| c.is_empty()) {
            self.collector = None;
        }
        if text.is_empty() {
            let fallback = self.cfg.fallback_reply.clone();
            self.speak_fixed(
                now,
                InputKind::Speech,
                String::new(),
                Some(end),
                marks,
                &fallback,
            );
            return;
        }
        self.start_turn(now, InputKind::Speech, text, end, marks);
    }

    // ------------------------------------------------------------------ DTMF

    fn new_collector(&self, max_digits: u8) -> DigitCollector {
        DigitCollector::new(
            max_digits.min(self.cfg.dtmf.max_digits),
            Duration::from_millis(self.cfg.dtmf.inter_digit_timeout_ms),
            Duration::from_millis(self.cfg.dtmf.overall_timeout_ms),
        )
    }

    fn on_digit(&mut self, now: Instant, digit: char, source: DigitSource) {
        if !self.merger.accept(now, digit, source) {
            self.counters.duplicate_digits += 1;
            return;
        }
        if self.collector.is_none() && matches!(digit, '#' | '*') {
            // A terminator with nothing being collected (e.g. '#' after the maximum length
            // already committed) is not the start of new input.
            self.counters.duplicate_digits += 1;
            return;
        }
        self.counters.digits += 1;
        if let Some(u) = self.utterance.as_mut() {
            u.had_dtmf = true;
        }
        self.barge_candidate = false;
        if self
            .reply
            .as_ref()
            .is_some_and(|r| r.first_frame_at.is_some() || r.agent_running)
        {
            // A key press interrupts the bot like speech does.
            let keep = self.collector.take();
            self.interrupt_reply(now);
            self.collector = keep;
        }
        if self.collector.is_none() {
            // Unprompted typing (e.g. entering a number unasked) starts a collection too.
            self.collector = Some(self.new_collector(self.cfg.dtmf.max_digits));
        }
        if self.phase != Phase::CallerSpeaking {
            self.phase = Phase::CollectingDigits;
        }
        let outcome = self.collector.as_mut().and_then(|c| c.on_key(now, digit));
        if let Some(outcome) = outcome {
            self.on_digits_outcome(now, outcome);
        }
    }

    fn on_digits_outcome(&mut self, now: Instant, outcome: DigitOutcome) {
        self.collector = None;
        let (digits, by) = match outcome {
            DigitOutcome::Committed { digits, by } => (digits, by),
            DigitOutcome::Abandoned => (String::new(), "timeout"),
        };
        self.outputs.push_back(Output::Event(CallEvent::Digits {
            digits: digits.clone(),
            committed_by: by,
        }));
        if self.phase == Phase::CollectingDigits {
            self.phase = Phase::Listening;
        }
        self.start_turn(now, InputKind::Digits, digits, now, LatencyMarks::default());
    }

    // ------------------------------------------------------------------ replies

    fn new_reply(
        &mut self,
        now: Instant,
        input: InputKind,
        user_text: String,
        input_end: Option<Instant>,
        marks: LatencyMarks,
    ) -> u32 {
        // A reply still under way when the next one starts (the caller's utterance began before
        // its audio did, so no barge-in) is cut as in a barge-in: left alone, its buffered audio
        // went out under the new reply with a second priming burst on top of Twilio's lead.
        self.interrupt_reply(now);
        let turn = self.next_turn;
        self.next_turn += 1;
        self.pacer.reset_reply();
        self.reply = Some(Reply {
            turn,
            input,
            user_text,
            input_end,
            marks,
            agent_running: false,
            agent_requested_at: now,
            agent_deadline: None,
            first_delta_at: None,
            first_tts_request_at: None,
            first_audio_at: None,
            first_frame_at: None,
            splitter: SentenceSplitter::default(),
            text: String::new(),
            segments: Vec::new(),
            collect_digits: None,
            hangup_after: false,
            tts_failed: false,
            tts_fallback_requested: false,
        });
        if self.phase != Phase::CallerSpeaking {
            self.phase = Phase::Thinking;
        }
        turn
    }

    fn start_turn(
        &mut self,
        now: Instant,
        input: InputKind,
        user_text: String,
        input_end: Instant,
        marks: LatencyMarks,
    ) {
        self.remember(Message {
            role: Role::User,
            text: user_text.clone(),
            interrupted: false,
        });
        let turn = self.new_reply(now, input, user_text, Some(input_end), marks);
        if let Some(reply) = self.reply.as_mut() {
            reply.agent_running = true;
            reply.agent_deadline =
                Some(now + Duration::from_millis(self.cfg.turn.agent_timeout_ms));
        }
        self.outputs.push_back(Output::AgentRequest {
            turn,
            digits: input == InputKind::Digits,
        });
    }

    /// A reply that needs no agent (greeting, "sorry, say again").
    fn speak_fixed(
        &mut self,
        now: Instant,
        input: InputKind,
        user_text: String,
        input_end: Option<Instant>,
        marks: LatencyMarks,
        text: &str,
    ) {
        if !user_text.is_empty() {
            self.remember(Message {
                role: Role::User,
                text: user_text.clone(),
                interrupted: false,
            });
        }
        self.new_reply(now, input, user_text, input_end, marks);
        self.request_tts(now, text.to_string());
        self.after_reply_progress(now);
    }

    fn request_tts(&mut self, now: Instant, sentence: String) {
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        if !reply.text.is_empty() {
            reply.text.push(' ');
        }
        let text_start = reply.text.len();
        reply.text.push_str(&sentence);
        let segment = reply.segments.len() as u32;
        reply.segments.push(Segment {
            text_start,
            text_end: reply.text.len(),
            audio_bytes: 0,
            done: false,
            failed: false,
        });
        reply.first_tts_request_at.get_or_insert(now);
        self.outputs.push_back(Output::TtsSpeak {
            turn: reply.turn,
            segment,
            text: sentence,
        });
    }

    fn after_reply_progress(&mut self, now: Instant) {
        // Synthesis failed and not one sentence of the reply reaches the caller whole (nothing
        // played, or only a fragment before the TTS stream broke): say the fallback (providers
        // cache it, so it often plays while synthesis is down) rather than leave the caller in
        // silence or mid-word. Once per reply: the fallback may fail too.
        if let Some(reply) = self.reply.as_mut()
            && reply.all_audio_in()
            && reply.tts_failed
            && !reply.segments.iter().any(Segment::whole)
            && !reply.tts_fallback_requested
        {
            reply.tts_fallback_requested = true;
            let fallback = self.cfg.fallback_reply.clone();
            self.request_tts(now, fallback);
        }
        if let Some(reply) = self.reply.as_mut()
            && reply.all_audio_in()
            && reply.marks.tts_total_ms.is_none()
            && let Some(asked) = reply.first_tts_request_at
        {
            reply.marks.tts_total_ms = Some(ms_between(asked, now));
        }
        if self.reply.as_ref().is_some_and(|r| r.all_audio_in()) && !self.pacer.input_done() {
            self.pacer.finish_input();
        }
        self.pump_pacer(now);
        self.maybe_finish_reply(now);
    }

    fn pump_pacer(&mut self, now: Instant) {
        let missing_before = self.pacer.stats().missing_echoes;
        let mut finished = false;
        while let Some(out) = self.pacer.poll(now) {
            match out {
                PacerOutput::Frame(frame) => {
                    if let Some(reply) = self.reply.as_mut()
                        && reply.first_frame_at.is_none()
                    {
                        reply.first_frame_at = Some(now);
                        reply.marks.total_ms = reply.input_end.map(|end| ms_between(end, now));
                        if matches!(
                            self.phase,
                            Phase::Thinking | Phase::Listening | Phase::CollectingDigits
                        ) {
                            self.phase = Phase::BotSpeaking;
                        }
                    }
                    self.outputs.push_back(Output::Media(frame));
                }
                PacerOutput::Mark(id) => self.outputs.push_back(Output::Mark(id)),
                PacerOutput::Finished => finished = true,
            }
        }
        if missing_before == 0 && self.pacer.stats().missing_echoes > 0 {
            self.outputs.push_back(Output::Event(CallEvent::Warning {
                kind: "missing_mark_echo",
                detail: "a mark echo did not come within the echo timeout".to_string(),
            }));
        }
        if finished {
            self.maybe_finish_reply(now);
        }
    }

    fn maybe_finish_reply(&mut self, now: Instant) {
        let done = self.reply.as_ref().is_some_and(|r| r.all_audio_in()) && self.pacer.is_idle();
        if !done {
            return;
        }
        let Some(reply) = self.reply.take() else {
            return;
        };
        // Played to the end; sentences that failed to synthesise were not heard, and one whose
        // synthesis broke off mid-way was heard only in part (how much of its text that audio
        // covers is unknown), so the record keeps whole sentences only and says the reply was
        // cut short.
        let spoken = reply
            .segments
            .iter()
            .filter(|s| s.whole())
            .map(|s| &reply.text[s.text_start..s.text_end])
            .collect::<Vec<_>>()
            .join(" ");
        let cut_short = reply.segments.iter().any(Segment::cut);
        self.record_turn(&reply, spoken, cut_short);
        self.pacer.reset_reply();
        if reply.hangup_after {
            self.outputs.push_back(Output::Hangup { reason: "agent" });
            self.phase = Phase::Ended;
            return;
        }
        if reply.collect_digits.is_some()
            && let Some(c) = self.collector.as_mut()
        {
            c.arm(now);
        }
        if self.barge_candidate {
            // Speech that began during the last words of the reply is the caller's next turn.
            self.barge_candidate = false;
            let onset = self.segmenter.onset().unwrap_or(now);
            self.begin_utterance(onset, String::new());
        } else if self.phase != Phase::CallerSpeaking {
            self.phase = if self.collector.is_some() {
                Phase::CollectingDigits
            } else {
                Phase::Listening
            };
        }
    }

    fn record_turn(&mut self, reply: &Reply, bot_text: String, interrupted: bool) {
        if !bot_text.is_empty() {
            self.remember(Message {
                role: Role::Assistant,
                text: bot_text.clone(),
                interrupted,
            });
        }
        self.counters.turns += 1;
        self.outputs
            .push_back(Output::Event(CallEvent::Turn(TurnRecord {
                turn: reply.turn,
                input: reply.input,
                user_text: reply.user_text.clone(),
                bot_text,
                interrupted,
                marks: reply.marks,
                rtt_ms: self.pacer.rtt().srtt().map(|d| d.as_millis() as u32),
            })));
    }

    /// What of the reply has been played: mark echoes, plus the schedule since the last echo
    /// (never simply what was sent).
    fn heard_text(&self, now: Instant, reply: &Reply) -> String {
        let mut played = self.pacer.heard_frames(now) as usize * FRAME_BYTES;
        let mut heard = String::new();
        for seg in &reply.segments {
            let sentence = &reply.text[seg.text_start..seg.text_end];
            if seg.cut() {
                // A fragment of unknown extent: its audio played, none of its words count.
                if played < seg.audio_bytes {
                    break;
                }
                played -= seg.audio_bytes;
                continue;
            }
            if played >= seg.audio_bytes && seg.done && seg.audio_bytes > 0 {
                played -= seg.audio_bytes;
                heard.push_str(sentence);
                heard.push(' ');
                continue;
            }
            if played > 0 && seg.audio_bytes > 0 {
                // Part of this sentence was heard: keep the words spoken so far, by audio share.
                let share = played as f64 / seg.audio_bytes as f64;
                let cut = floor_char_boundary(sentence, (sentence.len() as f64 * share) as usize);
                let words = sentence[..cut].rsplit_once(' ').map_or("", |(w, _)| w);
                heard.push_str(words);
            }
            break;
        }
        heard.trim_end().to_string()
    }

    /// Ends the reply in progress now, keeping only what the caller heard.
    fn interrupt_reply(&mut self, now: Instant) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        let heard = self.heard_text(now, &reply);
        if reply.first_frame_at.is_some() {
            self.outputs.push_back(Output::Clear { decided_at: now });
        }
        self.pacer.clear(now);
        if reply.agent_running {
            self.outputs
                .push_back(Output::AgentCancel { turn: reply.turn });
        }
        self.outputs
            .push_back(Output::TtsCancel { turn: reply.turn });
        self.outputs.push_back(Output::Event(CallEvent::BargeIn {
            turn: reply.turn,
            heard_chars: heard.chars().count() as u32,
            speech_ms: self.segmenter.voiced().as_millis() as u32,
        }));
        self.record_turn(&reply, heard, true);
        // An interrupted digit prompt is no longer waiting for digits unless some were typed.
        if self
            .collector
            .as_ref()
            .is_some_and(|c| c.is_empty() && !c.armed())
        {
            self.collector = None;
        }
        if self.phase != Phase::CallerSpeaking {
            self.phase = Phase::Listening;
        }
    }

    /// Takes back a reply nobody heard yet (the caller went on talking); returns its user text.
    fn withdraw_unheard_reply(&mut self, now: Instant) -> String {
        let Some(reply) = self.reply.take() else {
            return String::new();
        };
        if reply.agent_running {
            self.outputs
                .push_back(Output::AgentCancel { turn: reply.turn });
        }
        self.outputs
            .push_back(Output::TtsCancel { turn: reply.turn });
        self.pacer.clear(now);
        if self
            .history
            .last()
            .is_some_and(|m| m.role == Role::User && m.text == reply.user_text)
        {
            self.history.pop();
        }
        reply.user_text
    }

    fn barge_in(&mut self, now: Instant) {
        self.barge_candidate = false;
        self.counters.barge_ins += 1;
        self.interrupt_reply(now);
        let onset = self.segmenter.onset().unwrap_or(now);
        self.begin_utterance(onset, String::new());
    }
}

/// The reply for `turn` if it is still the current one (with `agent`: still waiting on the
/// agent). Otherwise the event belongs to a cancelled turn: counted and ignored. A free function
/// over the two fields, so callers keep using the session's other fields meanwhile.
fn live_reply<'a>(
    reply: &'a mut Option<Reply>,
    counters: &mut SessionCounters,
    turn: u32,
    agent: bool,
) -> Option<&'a mut Reply> {
    let live = reply
        .as_ref()
        .is_some_and(|r| r.turn == turn && (!agent || r.agent_running));
    if !live {
        counters.stale_provider_events += 1;
        return None;
    }
    reply.as_mut()
}

fn ms_between(from: Instant, to: Instant) -> u32 {
    to.saturating_duration_since(from)
        .as_millis()
        .min(u32::MAX as u128) as u32
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Cuts streamed agent text into sentences so speech can start before the reply is complete.
#[derive(Debug, Default)]
pub struct SentenceSplitter {
    pending: String,
}

impl SentenceSplitter {
    /// Long clauses are cut at a comma once this many bytes are pending.
    const COMMA_SPLIT_BYTES: usize = 60;

    pub fn push(&mut self, text: &str) {
        self.pending.push_str(text);
    }

    pub fn is_empty(&self) -> bool {
        self.pending.trim().is_empty()
    }

    /// The next complete sentence; with `flush`, whatever is left.
    pub fn next_sentence(&mut self, flush: bool) -> Option<String> {
        let bytes = self.pending.as_bytes();
        let mut cut = None;
        for (i, &b) in bytes.iter().enumerate() {
            let next_is_space = bytes.get(i + 1).is_some_and(|n| n.is_ascii_whitespace());
            let terminal = matches!(b, b'.' | b'!' | b'?' | b';' | b':') && next_is_space;
            let comma = b == b',' && next_is_space && i >= Self::COMMA_SPLIT_BYTES;
            if terminal || comma || b == b'\n' {
                cut = Some(i + 1);
                break;
            }
        }
        let cut = match cut {
            Some(cut) => cut,
            None if flush => self.pending.len(),
            None => return None,
        };
        let sentence = self.pending[..cut].trim().to_string();
        self.pending.drain(..cut);
        if sentence.is_empty() {
            return if self.pending.trim().is_empty() {
                None
            } else {
                self.next_sentence(flush)
            };
        }
        Some(sentence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_names_round_trip() {
        let mut buf = [0u8; 24];
        for id in [0, 1, 9, 10, 12345, u64::MAX] {
            assert_eq!(parse_mark_name(mark_name(id, &mut buf)), Some(id));
        }
        assert_eq!(parse_mark_name("responsePart"), None);
    }

    #[test]
    fn splitter_cuts_sentences_and_keeps_decimals() {
        let mut s = SentenceSplitter::default();
        s.push("Sure. The price is 3.5 shekels");
        assert_eq!(s.next_sentence(false).as_deref(), Some("Sure."));
        assert_eq!(s.next_sentence(false), None);
        s.push(" per minute! Anything else?");
        assert_eq!(
            s.next_sentence(false).as_deref(),
            Some("The price is 3.5 shekels per minute!")
        );
        assert_eq!(s.next_sentence(false), None);
        assert_eq!(s.next_sentence(true).as_deref(), Some("Anything else?"));
        assert!(s.is_empty());
    }

    #[test]
    fn splitter_handles_hebrew() {
        let mut s = SentenceSplitter::default();
        s.push("בטח. מחר בעשר בבוקר מתאים?");
        assert_eq!(s.next_sentence(false).as_deref(), Some("בטח."));
        assert_eq!(
            s.next_sentence(true).as_deref(),
            Some("מחר בעשר בבוקר מתאים?")
        );
    }
}
