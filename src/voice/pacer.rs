//! Paced playout. TTS audio lands in a bounded buffer; frames leave on an absolute 20 ms schedule
//! (no drift): the first `lead` frames of a reply go out at once (the priming burst), then one per
//! 20 ms. The lead at Twilio is therefore bounded by *time sent ahead of the schedule*, never by
//! how quickly mark echoes come back, so round-trip time does not slow the playout rate.
//!
//! A mark follows every `mark_every` frames and the last frame of a reply. Mark echoes tell us what
//! the caller actually heard (heard text, reply finished), and feed an RTT estimate (echo arrival −
//! when that frame was due to finish playing, smoothed as TCP's SRTT/RTTVAR, RFC 6298). A safety
//! cap on unconfirmed audio — `lead + mark interval + SRTT + 4·RTTVAR`, plus slack for a TCP
//! stall, at most `cap_max` — stops a dead peer from being fed seconds of audio. An echo that does
//! not come within `echo_timeout` of its frame's play time is taken as played by the schedule
//! (counted), so lost echoes never stall playback forever.
//!
//! Twilio echoes a mark when playback reaches it, or at once for every pending mark after `clear`.
//! Marks are numbered; after a clear, echoes of marks sent before it are recognised as flushed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::voice::g711;
use crate::voice::twilio::FRAME_BYTES;

pub const FRAME: Duration = Duration::from_millis(20);
/// Steady-state frames sent later than these after their due time are counted
/// ([`PacerStats::late_5ms`], [`PacerStats::late_20ms`]): the server's own share of jitter.
pub const LATE_THRESHOLDS: [Duration; 2] = [Duration::from_millis(5), FRAME];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacerOutput {
    Frame([u8; FRAME_BYTES]),
    Mark(u64),
    /// The reply's final echo never came within the echo timeout; by the schedule it has played.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkOutcome {
    /// Playback reached this mark.
    Played,
    /// Playback reached the reply's last mark: the caller heard all of it.
    Finished,
    /// An echo for a mark flushed by `clear`.
    Flushed,
    /// An echo for a mark already confirmed (by a later echo) or given up on (timed out).
    Stale,
    /// Not a mark we sent.
    Unknown,
}

/// Smoothed round-trip estimate as in RFC 6298 (SRTT, RTTVAR), fed plain samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimator {
    pub fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
    }

    /// Smoothed RTT; `None` before the first sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }
}

/// Limits of the adaptive cap on unconfirmed audio and the echo timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacerLimits {
    /// Headroom above the RTT-based estimate, so a TCP retransmit stall on the echo path does
    /// not hold playout.
    pub cap_slack: Duration,
    /// Ceiling on unconfirmed audio (also the cap before the first RTT sample).
    pub cap_max: Duration,
    pub echo_timeout: Duration,
}

impl Default for PacerLimits {
    fn default() -> Self {
        Self {
            cap_slack: Duration::from_millis(600),
            cap_max: Duration::from_millis(1_200),
            echo_timeout: Duration::from_millis(2_000),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    pub frames_sent: u64,
    /// Frames sent in priming bursts (the first `lead` frames of a reply or after an underrun).
    pub priming_frames: u64,
    /// Steady-state frames sent more than 5 / 20 ms after their due time (the driver woke late,
    /// or TTS audio came after the frame was due).
    pub late_5ms: u64,
    pub late_20ms: u64,
    pub underrun_events: u64,
    pub underrun_ms: u64,
    /// Times sending paused because unconfirmed audio reached the safety cap.
    pub lead_holds: u64,
    pub overflow_bytes: u64,
    /// Smoothed RTT and its variation from mark echoes (0 before the first sample).
    pub srtt_ms: u64,
    pub rttvar_ms: u64,
    /// Largest lead at Twilio (audio sent minus audio due to have played by the schedule).
    pub lead_max_ms: u64,
    /// Echoes for marks already confirmed or timed out (out of order, or very late).
    pub stale_echoes: u64,
    /// Marks whose echo did not come within the echo timeout.
    pub missing_echoes: u64,
}

#[derive(Debug, Clone, Copy)]
struct SentMark {
    id: u64,
    /// Frames of the reply sent when it went out.
    frames: u64,
    /// When the frame before it is due to finish playing, by the schedule.
    due: Instant,
}

#[derive(Debug)]
pub struct Pacer {
    buffer: VecDeque<u8>,
    capacity: usize,
    lead: u64,
    mark_every: u64,
    limits: PacerLimits,
    rtt: RttEstimator,
    /// Frames of the current reply sent / confirmed played.
    sent: u64,
    played: u64,
    /// Outstanding marks, oldest first.
    marks: VecDeque<SentMark>,
    next_mark_id: u64,
    /// Echoes for ids below this were flushed by a clear.
    flushed_below: u64,
    final_mark: Option<u64>,
    pending_mark: Option<u64>,
    /// (anchor time, frame index at anchor): frame n leaves at anchor + (n - index - lead + 1)
    /// frames (not before the anchor) and is due to finish playing at anchor + (n - index + 1).
    anchor: Option<(Instant, u64)>,
    /// When the last frame sent is due to finish playing.
    last_due: Option<Instant>,
    input_done: bool,
    underrun_since: Option<Instant>,
    holding: bool,
    stats: PacerStats,
}

impl Pacer {
    pub fn new(buffer_ms: u32, lead_frames: u32, mark_every_frames: u32) -> Self {
        Self::with_limits(
            buffer_ms,
            lead_frames,
            mark_every_frames,
            PacerLimits::default(),
        )
    }

    pub fn with_limits(
        buffer_ms: u32,
        lead_frames: u32,
        mark_every_frames: u32,
        limits: PacerLimits,
    ) -> Self {
        let capacity = (buffer_ms as usize * 8).max(2 * FRAME_BYTES);
        let lead = lead_frames.max(1) as u64;
        let mark_every = mark_every_frames.max(1) as u64;
        // Outstanding marks are bounded by the cap; room for all of them up front.
        let cap_frames = limits.cap_max.as_millis() as u64 / FRAME.as_millis() as u64;
        Self {
            buffer: VecDeque::with_capacity(capacity),
            capacity,
            lead,
            mark_every,
            limits,
            rtt: RttEstimator::default(),
            sent: 0,
            played: 0,
            marks: VecDeque::with_capacity((cap_frames / mark_every + lead + 4) as usize),
            next_mark_id: 1,
            flushed_below: 1,
            final_mark: None,
            pending_mark: None,
            anchor: None,
            last_due: None,
            input_done: false,
            underrun_since: None,
            holding: false,
            stats: PacerStats::default(),
        }
    }

    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    pub fn rtt(&self) -> RttEstimator {
        self.rtt
    }

    /// Room left in the playout buffer. The driver only takes TTS audio when this is large enough,
    /// which is what throttles synthesis.
    pub fn free_bytes(&self) -> usize {
        self.capacity - self.buffer.len()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Queues reply audio; returns the bytes accepted (the rest is dropped and counted).
    pub fn push(&mut self, mulaw: &[u8]) -> usize {
        let take = mulaw.len().min(self.free_bytes());
        self.buffer.extend(&mulaw[..take]);
        self.stats.overflow_bytes += (mulaw.len() - take) as u64;
        take
    }

    /// No more audio will come for this reply: flush the tail and mark the end.
    pub fn finish_input(&mut self) {
        self.input_done = true;
        if !self.buffer.is_empty() || self.final_mark.is_some() || self.played >= self.sent {
            // The tail still to go carries the final mark, or nothing is left to confirm.
            return;
        }
        // Every frame went out before the end was known, so none carried the final mark; without
        // one the reply would never be reported finished (found by `tests/faults_tts.rs`: a
        // 100 ms reply, all of it sent in the priming burst before synthesis said it was done).
        if let Some(last) = self.marks.back()
            && last.frames == self.sent
        {
            self.final_mark = Some(last.id);
        } else if let Some(due) = self.last_due {
            self.mark_sent_frames(due, true);
        }
    }

    /// Queues a mark after the frames sent so far (`due`: when the last of them finishes
    /// playing); `last`: it is the reply's final mark.
    fn mark_sent_frames(&mut self, due: Instant, last: bool) {
        let id = self.next_mark_id;
        self.next_mark_id += 1;
        self.marks.push_back(SentMark {
            id,
            frames: self.sent,
            due,
        });
        self.pending_mark = Some(id);
        if last {
            self.final_mark = Some(id);
        }
    }

    pub fn input_done(&self) -> bool {
        self.input_done
    }

    /// Frames of this reply Twilio confirmed playing (or that timed out waiting for an echo).
    pub fn played_frames(&self) -> u64 {
        self.played
    }

    /// Frames of this reply the caller has heard by `now`: confirmed by echoes, plus what the
    /// schedule says has played since. Audio reached Twilio one one-way delay after we sent it,
    /// and a `clear` sent now reaches Twilio one one-way delay later, so the two cancel and the
    /// schedule position at `now` is what will have played when Twilio stops.
    pub fn heard_frames(&self, now: Instant) -> u64 {
        let by_schedule = match self.anchor {
            Some((at, index)) => {
                index + (now.saturating_duration_since(at).as_millis() / FRAME.as_millis()) as u64
            }
            None => self.sent,
        };
        by_schedule.clamp(self.played, self.sent)
    }

    pub fn sent_frames(&self) -> u64 {
        self.sent
    }

    /// Nothing buffered here and nothing outstanding at Twilio.
    pub fn is_idle(&self) -> bool {
        self.buffer.is_empty() && self.marks.is_empty() && self.pending_mark.is_none()
    }

    /// Drops everything buffered (barge-in). The caller sends `clear` to Twilio.
    pub fn clear(&mut self, now: Instant) {
        self.end_underrun(now);
        self.buffer.clear();
        self.marks.clear();
        self.pending_mark = None;
        self.final_mark = None;
        self.flushed_below = self.next_mark_id;
        self.reset_reply();
    }

    /// Starts bookkeeping for a new reply (after the previous one finished or was cleared).
    pub fn reset_reply(&mut self) {
        self.sent = 0;
        self.played = 0;
        self.anchor = None;
        self.last_due = None;
        self.input_done = false;
        self.holding = false;
    }

    fn has_frame(&self) -> bool {
        self.buffer.len() >= FRAME_BYTES || (self.input_done && !self.buffer.is_empty())
    }

    /// When the next frame leaves: the first `lead` frames at the anchor, then one per 20 ms.
    fn due_at(&self, anchor: (Instant, u64)) -> Instant {
        let (at, index) = anchor;
        let steps = (self.sent - index + 1).saturating_sub(self.lead);
        at + FRAME * steps as u32
    }

    /// When everything sent so far has played, by the schedule.
    fn play_end(&self, anchor: (Instant, u64)) -> Instant {
        anchor.0 + FRAME * (self.sent - anchor.1) as u32
    }

    /// Unconfirmed audio allowed at Twilio: lead + mark interval + SRTT + 4·RTTVAR + slack for a
    /// stall, at most `cap_max` (and `cap_max` before the first RTT sample).
    pub fn cap(&self) -> Duration {
        match self.rtt.srtt() {
            Some(srtt) => {
                let base = FRAME * (self.lead + self.mark_every) as u32;
                (base + srtt + self.rtt.rttvar() * 4 + self.limits.cap_slack)
                    .min(self.limits.cap_max)
            }
            None => self.limits.cap_max,
        }
    }

    fn cap_reached(&self) -> bool {
        FRAME * (self.sent - self.played) as u32 >= self.cap()
    }

    /// When we stop waiting for the oldest outstanding echo.
    fn echo_deadline(&self) -> Option<Instant> {
        let srtt = self.rtt.srtt().unwrap_or_default();
        self.marks
            .front()
            .map(|m| m.due + srtt + self.limits.echo_timeout)
    }

    /// Next moment `poll` has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let echo = self.echo_deadline();
        if self.pending_mark.is_some() || self.cap_reached() {
            return echo; // marks go out with their frame; a hold waits for an echo
        }
        let send = match self.anchor {
            Some(anchor) if self.has_frame() => Some(self.due_at(anchor)),
            // Waiting for TTS: Twilio runs dry when everything sent has played.
            Some(anchor) if !self.input_done => {
                Some(self.due_at(anchor).max(self.play_end(anchor)))
            }
            _ => None,
        };
        match (send, echo) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll(&mut self, now: Instant) -> Option<PacerOutput> {
        if let Some(id) = self.pending_mark.take() {
            return Some(PacerOutput::Mark(id));
        }
        if self.expire_echoes(now) {
            return Some(PacerOutput::Finished);
        }
        if self.cap_reached() {
            if !self.holding {
                self.holding = true;
                self.stats.lead_holds += 1;
            }
            return None;
        }
        self.holding = false;
        let anchor = match self.anchor {
            // Twilio has played everything sent (by the schedule) and audio is waiting: it was
            // held at the cap, or the driver woke late. Frames due by the old schedule would all
            // leave at once and queue more than the lead at Twilio (found by the `call_session`
            // fuzzer: 140 ms queued after a hold released by late echoes), so re-prime with a
            // fresh lead from now, as after an underrun. The caller heard silence meanwhile:
            // counted as an underrun.
            Some(anchor) if self.has_frame() && now > self.play_end(anchor) => {
                self.stats.underrun_events += 1;
                self.stats.underrun_ms += now
                    .saturating_duration_since(self.play_end(anchor))
                    .as_millis() as u64;
                *self.anchor.insert((now, self.sent))
            }
            Some(anchor) => anchor,
            None if self.has_frame() => *self.anchor.insert((now, self.sent)),
            None => return None,
        };
        let due_to_leave = self.due_at(anchor);
        if now < due_to_leave {
            return None;
        }
        if !self.has_frame() {
            // Audio still buffered at Twilio is no underrun yet: frames that come before it has
            // played keep the schedule.
            if now < self.play_end(anchor) {
                return None;
            }
            if !self.input_done && self.underrun_since.is_none() {
                self.underrun_since = Some(now);
                self.stats.underrun_events += 1;
            }
            // Re-prime Twilio's buffer with a fresh lead once audio is back.
            self.anchor = None;
            return None;
        }
        self.end_underrun(now);
        let mut frame = [g711::SILENCE; FRAME_BYTES];
        let n = self.buffer.len().min(FRAME_BYTES);
        for (dst, src) in frame.iter_mut().zip(self.buffer.drain(..n)) {
            *dst = src;
        }
        if self.sent - anchor.1 < self.lead {
            self.stats.priming_frames += 1;
        } else {
            let late = now.saturating_duration_since(due_to_leave);
            self.stats.late_5ms += u64::from(late > LATE_THRESHOLDS[0]);
            self.stats.late_20ms += u64::from(late > LATE_THRESHOLDS[1]);
        }
        self.sent += 1;
        self.stats.frames_sent += 1;
        let (at, index) = anchor;
        let due = at + FRAME * (self.sent - index) as u32;
        self.last_due = Some(due);
        let lead = due.saturating_duration_since(now).as_millis() as u64;
        self.stats.lead_max_ms = self.stats.lead_max_ms.max(lead);
        let last = self.input_done && self.buffer.is_empty();
        if last || self.sent.is_multiple_of(self.mark_every) {
            self.mark_sent_frames(due, last);
        }
        Some(PacerOutput::Frame(frame))
    }

    /// Gives up on echoes overdue by the echo timeout: by the schedule those frames have played.
    /// True when that includes the reply's final mark.
    fn expire_echoes(&mut self, now: Instant) -> bool {
        let mut finished = false;
        while let Some(deadline) = self.echo_deadline()
            && deadline <= now
            && let Some(mark) = self.marks.pop_front()
        {
            self.stats.missing_echoes += 1;
            self.played = self.played.max(mark.frames);
            if self.final_mark == Some(mark.id) {
                self.final_mark = None;
                finished = true;
            }
        }
        finished
    }

    fn end_underrun(&mut self, now: Instant) {
        if let Some(since) = self.underrun_since.take() {
            self.stats.underrun_ms += now.saturating_duration_since(since).as_millis() as u64;
        }
    }

    /// A mark echo from Twilio, arriving at `now`.
    pub fn on_mark(&mut self, now: Instant, id: u64) -> MarkOutcome {
        let Some(pos) = self.marks.iter().position(|m| m.id == id) else {
            return if id < self.flushed_below {
                MarkOutcome::Flushed
            } else if id < self.next_mark_id {
                self.stats.stale_echoes += 1;
                MarkOutcome::Stale
            } else {
                MarkOutcome::Unknown
            };
        };
        // Echoes arrive in order; anything older than this one has been played too.
        let mark = self.marks[pos];
        self.marks.drain(..=pos);
        self.played = self.played.max(mark.frames);
        self.rtt.sample(now.saturating_duration_since(mark.due));
        if let Some(srtt) = self.rtt.srtt() {
            self.stats.srtt_ms = srtt.as_millis() as u64;
            self.stats.rttvar_ms = self.rtt.rttvar().as_millis() as u64;
        }
        if self.final_mark == Some(id) {
            self.final_mark = None;
            MarkOutcome::Finished
        } else {
            MarkOutcome::Played
        }
    }
}

#[cfg(test)]
mod tests;
