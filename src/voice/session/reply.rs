//! The bot's side of a turn: a new reply (cutting any reply still under way), the agent request,
//! one TTS request per sentence, the pacer pumped into `Media` and `Mark` outputs, the fallback
//! when synthesis fails, and the end of the reply once all audio is in and played, recording the
//! turn with only whole sentences the caller heard.

use std::time::{Duration, Instant};

use super::{CallSession, Output, Phase, Reply, Segment, SentenceSplitter, ms_between};
use crate::voice::events::{CallEvent, InputKind, LatencyMarks, TurnRecord};
use crate::voice::pacer::PacerOutput;
use crate::voice::ports::{Message, Role};

impl CallSession {
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

    pub(super) fn start_turn(
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
    pub(super) fn speak_fixed(
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

    pub(super) fn request_tts(&mut self, now: Instant, sentence: String) {
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

    pub(super) fn after_reply_progress(&mut self, now: Instant) {
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

    pub(super) fn pump_pacer(&mut self, now: Instant) {
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

    pub(super) fn maybe_finish_reply(&mut self, now: Instant) {
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

    pub(super) fn record_turn(&mut self, reply: &Reply, bot_text: String, interrupted: bool) {
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
}
