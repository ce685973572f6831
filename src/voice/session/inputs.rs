//! The session's entry points: one `handle_*` per input from Twilio (media, DTMF, mark echoes,
//! stop), from the providers (transcripts, agent text and actions, TTS audio, their ends and
//! failures) and from the clock (`handle_timeout`). Each applies one input at `now` and pumps the
//! pacer; after `Ended` they do nothing. Provider events for a turn that is no longer current are
//! counted and ignored (`live_reply`).

use std::time::Instant;

use super::{CallSession, Output, Phase, Reply, SessionCounters, ms_between, parse_mark_name};
use crate::voice::dtmf::DigitSource;
use crate::voice::events::{CallEvent, InputKind, LatencyMarks};
use crate::voice::pacer::MarkOutcome;
use crate::voice::ports::{AgentEvent, ProviderError, SttEvent};
use crate::voice::twilio::FRAME_BYTES;

impl CallSession {
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
