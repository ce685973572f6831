//! Keypad input: DTMF from Twilio events and in-band tones is merged (one press counted once),
//! interrupts the bot like speech, and is collected until a terminator, the maximum length or a
//! timeout; the collected digits (or an abandoned collection) start a turn.

use std::time::{Duration, Instant};

use super::{CallSession, Output, Phase};
use crate::voice::digits::{DigitCollector, DigitOutcome};
use crate::voice::dtmf::DigitSource;
use crate::voice::events::{CallEvent, InputKind, LatencyMarks};

impl CallSession {
    // ------------------------------------------------------------------ DTMF

    pub(super) fn new_collector(&self, max_digits: u8) -> DigitCollector {
        DigitCollector::new(
            max_digits.min(self.cfg.dtmf.max_digits),
            Duration::from_millis(self.cfg.dtmf.inter_digit_timeout_ms),
            Duration::from_millis(self.cfg.dtmf.overall_timeout_ms),
        )
    }

    pub(super) fn on_digit(&mut self, now: Instant, digit: char, source: DigitSource) {
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

    pub(super) fn on_digits_outcome(&mut self, now: Instant, outcome: DigitOutcome) {
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
}
