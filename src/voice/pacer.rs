//! Paced playout. TTS audio lands in a bounded buffer; frames leave one per 20 ms on an absolute
//! schedule (no drift), at most `lead + mark_every` frames ahead of what Twilio has confirmed
//! playing. A mark follows every `mark_every` frames and the last frame of a reply, so mark echoes
//! tell us what was actually played.
//!
//! Twilio echoes a mark when playback reaches it, or at once for every pending mark after `clear`.
//! Marks are numbered; after a clear, echoes of marks sent before it are recognised as flushed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::voice::g711;
use crate::voice::twilio::FRAME_BYTES;

pub const FRAME: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacerOutput {
    Frame([u8; FRAME_BYTES]),
    Mark(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkOutcome {
    /// Playback reached this mark.
    Played,
    /// Playback reached the reply's last mark: the caller heard all of it.
    Finished,
    /// An echo for a mark flushed by `clear`.
    Flushed,
    /// Not a mark we sent.
    Unknown,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    pub frames_sent: u64,
    pub underrun_events: u64,
    pub underrun_ms: u64,
    /// Times sending paused because Twilio had not confirmed playback of the lead.
    pub lead_holds: u64,
    pub overflow_bytes: u64,
}

#[derive(Debug)]
pub struct Pacer {
    buffer: VecDeque<u8>,
    capacity: usize,
    lead: u64,
    mark_every: u64,
    /// Frames of the current reply sent / confirmed played.
    sent: u64,
    played: u64,
    /// Outstanding marks: (id, frames sent when it went out).
    marks: VecDeque<(u64, u64)>,
    next_mark_id: u64,
    /// Echoes for ids below this were flushed by a clear.
    flushed_below: u64,
    final_mark: Option<u64>,
    pending_mark: Option<u64>,
    /// (anchor time, frame index at anchor): frame n is due at anchor + (n - index - lead + 1) frames.
    anchor: Option<(Instant, u64)>,
    input_done: bool,
    underrun_since: Option<Instant>,
    holding: bool,
    stats: PacerStats,
}

impl Pacer {
    pub fn new(buffer_ms: u32, lead_frames: u32, mark_every_frames: u32) -> Self {
        let capacity = (buffer_ms as usize * 8).max(2 * FRAME_BYTES);
        let lead = lead_frames.max(1) as u64;
        let mark_every = mark_every_frames.max(1) as u64;
        Self {
            buffer: VecDeque::with_capacity(capacity),
            capacity,
            lead,
            mark_every,
            sent: 0,
            played: 0,
            marks: VecDeque::with_capacity(((lead + mark_every) / mark_every + 4) as usize),
            next_mark_id: 1,
            flushed_below: 1,
            final_mark: None,
            pending_mark: None,
            anchor: None,
            input_done: false,
            underrun_since: None,
            holding: false,
            stats: PacerStats::default(),
        }
    }

    pub fn stats(&self) -> PacerStats {
        self.stats
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
    }

    pub fn input_done(&self) -> bool {
        self.input_done
    }

    /// Frames of this reply Twilio confirmed playing.
    pub fn played_frames(&self) -> u64 {
        self.played
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
        self.input_done = false;
        self.holding = false;
    }

    fn has_frame(&self) -> bool {
        self.buffer.len() >= FRAME_BYTES || (self.input_done && !self.buffer.is_empty())
    }

    fn due_at(&self, anchor: (Instant, u64)) -> Instant {
        let (at, index) = anchor;
        let steps = (self.sent - index + 1).saturating_sub(self.lead);
        at + FRAME * steps as u32
    }

    fn lead_exhausted(&self) -> bool {
        self.sent - self.played >= self.lead + self.mark_every
    }

    /// Next moment `poll` has something to send.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.pending_mark.is_some() || self.lead_exhausted() {
            return None; // marks go out with their frame; a hold waits for an echo
        }
        match self.anchor {
            Some(anchor) if self.has_frame() || !self.input_done => Some(self.due_at(anchor)),
            _ => None,
        }
    }

    pub fn poll(&mut self, now: Instant) -> Option<PacerOutput> {
        if let Some(id) = self.pending_mark.take() {
            return Some(PacerOutput::Mark(id));
        }
        if self.lead_exhausted() {
            if !self.holding {
                self.holding = true;
                self.stats.lead_holds += 1;
            }
            return None;
        }
        self.holding = false;
        let anchor = match self.anchor {
            Some(anchor) => anchor,
            None if self.has_frame() => *self.anchor.insert((now, self.sent)),
            None => return None,
        };
        if now < self.due_at(anchor) {
            return None;
        }
        if !self.has_frame() {
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
        self.sent += 1;
        self.stats.frames_sent += 1;
        let last = self.input_done && self.buffer.is_empty();
        if last || self.sent.is_multiple_of(self.mark_every) {
            let id = self.next_mark_id;
            self.next_mark_id += 1;
            self.marks.push_back((id, self.sent));
            self.pending_mark = Some(id);
            if last {
                self.final_mark = Some(id);
            }
        }
        Some(PacerOutput::Frame(frame))
    }

    fn end_underrun(&mut self, now: Instant) {
        if let Some(since) = self.underrun_since.take() {
            self.stats.underrun_ms += now.saturating_duration_since(since).as_millis() as u64;
        }
    }

    /// A mark echo from Twilio.
    pub fn on_mark(&mut self, id: u64) -> MarkOutcome {
        let Some(pos) = self.marks.iter().position(|(m, _)| *m == id) else {
            return if id < self.flushed_below {
                MarkOutcome::Flushed
            } else {
                MarkOutcome::Unknown
            };
        };
        // Echoes arrive in order; anything older than this one has been played too.
        let (_, frames) = self.marks[pos];
        self.marks.drain(..=pos);
        self.played = self.played.max(frames);
        if self.final_mark == Some(id) {
            self.final_mark = None;
            MarkOutcome::Finished
        } else {
            MarkOutcome::Played
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(p: &mut Pacer, now: Instant) -> Vec<PacerOutput> {
        std::iter::from_fn(|| p.poll(now)).collect()
    }

    fn frames(out: &[PacerOutput]) -> usize {
        out.iter()
            .filter(|o| matches!(o, PacerOutput::Frame(_)))
            .count()
    }

    #[test]
    fn burst_of_lead_then_one_frame_per_20ms() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 3, 5);
        assert_eq!(p.push(&[0x55; 1600]), 1600);
        assert_eq!(frames(&drain(&mut p, t0)), 3, "lead goes out at once");
        assert_eq!(p.poll_timeout(), Some(t0 + FRAME));
        assert_eq!(
            frames(&drain(&mut p, t0 + FRAME - Duration::from_millis(1))),
            0
        );
        assert_eq!(frames(&drain(&mut p, t0 + FRAME)), 1);
        // A late wake-up catches up on the absolute schedule but never exceeds the lead cap (3 + 5).
        assert_eq!(frames(&drain(&mut p, t0 + FRAME * 20)), 4);
        assert_eq!(p.stats().lead_holds, 1);
    }

    #[test]
    fn marks_every_n_frames_and_final_mark_finishes() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 2, 2);
        p.push(&[1; 160 * 4 + 10]);
        p.finish_input();
        let mut all = Vec::new();
        for i in 0..10 {
            all.extend(drain(&mut p, t0 + FRAME * i));
            let marks: Vec<u64> = all
                .iter()
                .filter_map(|o| {
                    if let PacerOutput::Mark(id) = o {
                        Some(*id)
                    } else {
                        None
                    }
                })
                .collect();
            for id in marks {
                p.on_mark(id);
            }
            all.retain(|o| matches!(o, PacerOutput::Frame(_)));
        }
        assert_eq!(p.sent_frames(), 5, "tail padded into a fifth frame");
        assert!(p.is_idle());
    }

    #[test]
    fn final_mark_reports_finished_and_tail_is_padded_with_silence() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 5, 5);
        p.push(&[7; 100]);
        p.finish_input();
        let out = drain(&mut p, t0);
        let PacerOutput::Frame(f) = out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(&f[..100], &[7; 100][..]);
        assert!(f[100..].iter().all(|b| *b == g711::SILENCE));
        let PacerOutput::Mark(id) = out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(p.on_mark(id), MarkOutcome::Finished);
    }

    #[test]
    fn clear_flushes_and_old_echoes_are_recognised() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 5, 1);
        p.push(&[1; 800]);
        let out = drain(&mut p, t0);
        let ids: Vec<u64> = out
            .iter()
            .filter_map(|o| {
                if let PacerOutput::Mark(id) = o {
                    Some(*id)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(p.on_mark(ids[0]), MarkOutcome::Played);
        assert_eq!(p.played_frames(), 1);
        p.clear(t0);
        assert_eq!(p.buffered_bytes(), 0);
        assert_eq!(p.on_mark(ids[1]), MarkOutcome::Flushed);
        assert_eq!(p.on_mark(999), MarkOutcome::Unknown);
    }

    #[test]
    fn underrun_is_counted_and_playback_reprimes() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 2, 50);
        p.push(&[1; 320]);
        assert_eq!(frames(&drain(&mut p, t0)), 2);
        assert_eq!(frames(&drain(&mut p, t0 + FRAME)), 0);
        assert_eq!(p.stats().underrun_events, 1);
        p.push(&[1; 480]);
        let later = t0 + FRAME * 5;
        assert_eq!(frames(&drain(&mut p, later)), 2, "fresh lead after the gap");
        assert_eq!(p.stats().underrun_ms, 80);
    }

    #[test]
    fn push_is_bounded() {
        let mut p = Pacer::new(100, 2, 5);
        assert_eq!(p.free_bytes(), 800);
        assert_eq!(p.push(&[0; 1000]), 800);
        assert_eq!(p.stats().overflow_bytes, 200);
    }
}
