//! Interruptions: a barge-in (caller speech or a key press over the bot) ends the reply at once
//! (`clear`, pacer emptied, agent and TTS cancelled) and keeps in the history only what the
//! caller heard, judged from mark echoes and the schedule, never from what was sent. A reply
//! nobody heard yet is withdrawn instead, its user text carried into the continuing utterance.

use std::time::Instant;

use super::{CallSession, Output, Phase, Reply};
use crate::voice::events::CallEvent;
use crate::voice::ports::Role;
use crate::voice::twilio::FRAME_BYTES;

impl CallSession {
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
    pub(super) fn interrupt_reply(&mut self, now: Instant) {
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
    pub(super) fn withdraw_unheard_reply(&mut self, now: Instant) -> String {
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

    pub(super) fn barge_in(&mut self, now: Instant) {
        self.barge_candidate = false;
        self.counters.barge_ins += 1;
        self.interrupt_reply(now);
        let onset = self.segmenter.onset().unwrap_or(now);
        self.begin_utterance(onset, String::new());
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
