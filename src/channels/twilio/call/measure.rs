//! What a call measures and publishes: its wire counters and events folded into the process
//! metrics, the barge-in `clear` timing, and its entry in the live-call registry. Folding runs
//! about once a second, off the per-frame path.

use super::*;

pub(super) fn fold_wire(m: &Metrics, w: &WireCounters) {
    m.add(Counter::MalformedMessages, w.malformed);
    m.add(Counter::InvalidPayloads, w.invalid_payloads);
    m.add(Counter::OversizedMessages, w.oversized);
    m.add(Counter::EventsBeforeStart, w.before_start);
    m.add(Counter::UnknownStreamSid, w.unknown_stream);
    m.add(Counter::UnknownEvents, w.unknown_events);
    m.add(Counter::BinaryFrames, w.binary);
    m.add(Counter::WsSendDropped, w.send_dropped);
    m.add(Counter::SttAudioDropped, w.stt_dropped);
    m.add(Counter::SttErrors, w.stt_errors);
}

/// Server-side barge-in reaction: the session's decision → the writer has flushed the `clear`
/// onto the socket. Both sides only store plain numbers here; the driver folds the measurements
/// into `/metrics` with its other counters, off the frame path.
pub(super) struct ClearTiming {
    epoch: std::time::Instant,
    /// Decision instant of the `clear` in the queue, µs after `epoch`, plus one (0: none).
    decided: AtomicU64,
    /// Reactions measured and not folded yet, µs plus one (0: free). A call cannot barge in
    /// more than a few times between two folds (one second); a sample with no free slot is lost.
    measured: [AtomicU64; 4],
}

impl ClearTiming {
    pub(super) fn new() -> Self {
        Self {
            epoch: std::time::Instant::now(),
            decided: AtomicU64::new(0),
            measured: Default::default(),
        }
    }

    fn micros(&self, at: std::time::Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// The driver, before queueing the `clear`.
    pub(super) fn decided(&self, at: std::time::Instant) {
        self.decided.store(self.micros(at) + 1, Ordering::Release);
    }

    /// The writer, once a batch holding a `clear` is flushed.
    pub(super) fn sent(&self, at: std::time::Instant) {
        let decided = self.decided.swap(0, Ordering::AcqRel);
        if decided == 0 {
            return;
        }
        let took = self.micros(at).saturating_sub(decided - 1) + 1;
        for slot in &self.measured {
            if slot
                .compare_exchange(0, took, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Takes the measurements not folded yet (µs).
    pub(super) fn take(&self) -> impl Iterator<Item = u64> + '_ {
        self.measured
            .iter()
            .filter_map(|slot| slot.swap(0, Ordering::AcqRel).checked_sub(1))
    }
}

impl CallDriver {
    pub(super) fn record_event(&mut self, event: CallEvent) {
        if let CallEvent::Turn(t) = &event {
            self.deps.metrics.record_turn(&t.marks);
            let m = t.marks;
            tracing::info!(
                call_sid = %self.ctx.call_sid,
                turn = t.turn,
                input = t.input.as_str(),
                interrupted = t.interrupted,
                stt_first_partial_ms = m.stt_first_partial_ms,
                stt_final_ms = m.stt_final_ms,
                ai_latency_ms = m.ai_latency_ms,
                tts_ready_ms = m.tts_ready_ms,
                total_ms = m.total_ms,
                ai_total_ms = m.ai_total_ms,
                tts_total_ms = m.tts_total_ms,
                rtt_ms = t.rtt_ms,
                "turn"
            );
        } else if let CallEvent::Warning { kind, detail } = &event {
            tracing::warn!(call_sid = %self.ctx.call_sid, kind, detail, "call warning");
        }
        if let Some(rec) = &self.deps.recorder {
            rec.record(Record::Event {
                call_id: self.call_id.clone(),
                at_ms: unix_ms(),
                event,
            });
        }
    }

    /// Adds what happened since the last fold to the process-wide counters.
    pub(super) fn fold_metrics(&mut self) {
        let m = &self.deps.metrics;
        let c = self.session.counters();
        let p = self.session.pacer_stats();
        let f = self.folded;
        let fp = self.folded_pacer;
        m.add(Counter::FramesIn, c.frames_in - f.frames_in);
        m.add(Counter::Turns, c.turns - f.turns);
        m.add(Counter::BargeIns, c.barge_ins - f.barge_ins);
        m.add(
            Counter::FalseBargeIns,
            c.false_barge_ins - f.false_barge_ins,
        );
        m.add(
            Counter::ShortUtterances,
            c.short_utterances - f.short_utterances,
        );
        m.add(Counter::SttTimeouts, c.stt_timeouts - f.stt_timeouts);
        m.add(Counter::AgentTimeouts, c.agent_timeouts - f.agent_timeouts);
        m.add(Counter::AgentErrors, c.agent_errors - f.agent_errors);
        m.add(Counter::TtsErrors, c.tts_errors - f.tts_errors);
        m.add(
            Counter::StaleProviderEvents,
            c.stale_provider_events - f.stale_provider_events,
        );
        m.add(Counter::UnknownMarks, c.unknown_marks - f.unknown_marks);
        m.add(Counter::Digits, c.digits - f.digits);
        m.add(
            Counter::DuplicateDigits,
            c.duplicate_digits - f.duplicate_digits,
        );
        m.add(Counter::SpeechIgnored, c.speech_ignored - f.speech_ignored);
        m.add(
            Counter::StrayTranscripts,
            c.stray_transcripts - f.stray_transcripts,
        );
        m.add(Counter::FramesOut, p.frames_sent - fp.frames_sent);
        m.add(Counter::Underruns, p.underrun_events - fp.underrun_events);
        m.add(Counter::UnderrunMs, p.underrun_ms - fp.underrun_ms);
        m.add(Counter::LeadHolds, p.lead_holds - fp.lead_holds);
        m.add(Counter::PrimingFrames, p.priming_frames - fp.priming_frames);
        m.add(Counter::FramesLate5ms, p.late_5ms - fp.late_5ms);
        m.add(Counter::FramesLate20ms, p.late_20ms - fp.late_20ms);
        m.add(Counter::StaleMarkEchoes, p.stale_echoes - fp.stale_echoes);
        m.add(
            Counter::MissingMarkEchoes,
            p.missing_echoes - fp.missing_echoes,
        );
        m.add(
            Counter::TtsOverflowBytes,
            p.overflow_bytes - fp.overflow_bytes,
        );
        self.folded = c;
        self.folded_pacer = p;
        for us in self.clear_timing.take() {
            m.record_barge_in_clear_us(us);
        }
        self.publish_live();
    }

    /// This call's numbers into the live-call registry (with the metrics fold, once a second).
    pub(super) fn publish_live(&self) {
        let Some(live) = &self.live else { return };
        let c = self.session.counters();
        let p = self.session.pacer_stats();
        let w = &self.summary.wire;
        live.publish(
            unix_ms(),
            LiveSnapshot {
                phase: phase_name(self.session.phase(), c.turns),
                turn: c.turns,
                rtt_ms: self
                    .session
                    .pacer_rtt()
                    .srtt()
                    .map(|d| d.as_millis() as u64),
                lead_max_ms: p.lead_max_ms,
                barge_ins: c.barge_ins,
                frames_late_5ms: p.late_5ms,
                frames_late_20ms: p.late_20ms,
                underruns: p.underrun_events,
                frames_dropped: w.stt_dropped + w.send_dropped,
                frames_in: c.frames_in,
                frames_out: p.frames_sent,
                fallbacks: c.stt_timeouts + c.agent_timeouts + c.agent_errors,
                tts_errors: c.tts_errors,
            },
        );
    }
}
