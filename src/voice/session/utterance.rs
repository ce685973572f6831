//! Caller audio and turn-taking: each 20 ms frame goes through the audio graph to the recogniser
//! (or the pre-roll while no utterance is open) and to the VAD segmenter, whose speech start and
//! end decide, by phase, whether caller speech begins an utterance, continues one, is a barge-in
//! candidate or is ignored; a finished utterance (final transcript or STT deadline) starts a turn.

use std::time::{Duration, Instant};

use super::{CallSession, Output, Phase, SttFrame, Utterance, ms_between};
use crate::voice::dtmf::DigitSource;
use crate::voice::events::{InputKind, LatencyMarks};
use crate::voice::ports::SttAudioFormat;
use crate::voice::vad::SpeechEvent;

impl CallSession {
    // ------------------------------------------------------------------ audio path

    pub(super) fn on_frame(&mut self, now: Instant) {
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

    pub(super) fn begin_utterance(&mut self, onset: Instant, prefix: String) {
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
    pub(super) fn complete_utterance(&mut self, now: Instant) {
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
}
