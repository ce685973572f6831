//! How bot frames arrive at the simulated Twilio peer: each reply's priming burst apart from its
//! steady state.
//!
//! The server sends the first `lead` frames of a reply at once (the priming burst that fills
//! Twilio's buffer), then one frame per 20 ms. Steady-state jitter of frame n (n > lead, counted
//! from the reply's first frame) is |arrival(n) − arrival(n−1) − 20 ms|: the first steady frame is
//! measured against the last frame of the burst, which by the schedule left 20 ms before it. The
//! burst itself is reported as its spread (first to last priming frame), never as jitter.
//!
//! A reply starts with the first frame after a `clear` or after more than [`NEW_REPLY_GAP`]
//! without bot audio.

use std::time::{Duration, Instant};

use crate::voice::pacer::FRAME;

/// Silence between bot frames that starts a new reply.
pub const NEW_REPLY_GAP: Duration = Duration::from_millis(500);

/// Where a bot frame falls in its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The first frame of a reply.
    ReplyStart,
    /// Frames 2..=lead: the rest of the priming burst.
    Priming,
    /// After the burst: paced at 20 ms.
    Steady,
}

#[derive(Debug, Clone)]
pub struct ArrivalMeter {
    lead: u32,
    last: Option<Instant>,
    frames_in_reply: u32,
    burst_start: Option<Instant>,
    /// |inter-arrival − 20 ms| of steady-state frames, µs.
    pub steady_jitter_us: Vec<u64>,
    /// First to last frame of each full priming burst, µs.
    pub priming_spread_us: Vec<u64>,
    /// Frames that arrived as part of a priming burst.
    pub priming_frames: u64,
}

impl ArrivalMeter {
    pub fn new(lead_frames: u32) -> Self {
        Self {
            lead: lead_frames.max(1),
            last: None,
            frames_in_reply: 0,
            burst_start: None,
            steady_jitter_us: Vec::new(),
            priming_spread_us: Vec::new(),
            priming_frames: 0,
        }
    }

    /// True between a reply's first frame and its end (a `clear` or the next reply).
    pub fn in_reply(&self) -> bool {
        self.frames_in_reply > 0
    }

    pub fn on_frame(&mut self, now: Instant) -> Arrival {
        let kind = match self.last {
            Some(prev) if now.saturating_duration_since(prev) < NEW_REPLY_GAP => {
                self.frames_in_reply += 1;
                if self.frames_in_reply <= self.lead {
                    self.priming_frames += 1;
                    Arrival::Priming
                } else {
                    let gap = now.saturating_duration_since(prev).as_micros() as i64;
                    let want = FRAME.as_micros() as i64;
                    self.steady_jitter_us.push((gap - want).unsigned_abs());
                    Arrival::Steady
                }
            }
            _ => {
                self.frames_in_reply = 1;
                self.burst_start = Some(now);
                self.priming_frames += 1;
                Arrival::ReplyStart
            }
        };
        if self.frames_in_reply == self.lead
            && let Some(start) = self.burst_start.take()
        {
            self.priming_spread_us
                .push(now.saturating_duration_since(start).as_micros() as u64);
        }
        self.last = Some(now);
        kind
    }

    /// Twilio emptied its buffer: the next frame starts a new reply.
    pub fn on_clear(&mut self) {
        self.last = None;
        self.frames_in_reply = 0;
        self.burst_start = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pacer's schedule as the peer sees it on a perfect link: `lead` frames at t0, then
    /// frame n (0-based) at t0 + (n − lead + 1)·20 ms.
    fn paced_reply(t0: Instant, lead: u32, frames: u32) -> Vec<Instant> {
        (0..frames)
            .map(|n| t0 + FRAME * (n + 1).saturating_sub(lead))
            .collect()
    }

    #[test]
    fn a_perfectly_paced_reply_has_no_steady_state_jitter() {
        // Before this meter the caller counted the gap inside the burst (frame `lead` after frame
        // `lead − 1`, both at t0) as one frame of jitter: p99 read exactly 20.0 ms for any reply
        // shorter than 100 frames, whatever the network did.
        let t0 = Instant::now();
        let mut m = ArrivalMeter::new(5);
        let kinds: Vec<Arrival> = paced_reply(t0, 5, 40)
            .into_iter()
            .map(|at| m.on_frame(at))
            .collect();
        assert_eq!(kinds[0], Arrival::ReplyStart);
        assert!(kinds[1..5].iter().all(|k| *k == Arrival::Priming));
        assert!(kinds[5..].iter().all(|k| *k == Arrival::Steady));
        assert_eq!(m.steady_jitter_us.len(), 35);
        assert!(
            m.steady_jitter_us.iter().all(|j| *j == 0),
            "{:?}",
            m.steady_jitter_us
        );
        assert_eq!(m.priming_frames, 5);
        assert_eq!(m.priming_spread_us, vec![0]);
    }

    #[test]
    fn each_reply_and_each_clear_starts_a_new_burst() {
        let t0 = Instant::now();
        let mut m = ArrivalMeter::new(5);
        for at in paced_reply(t0, 5, 20) {
            m.on_frame(at);
        }
        // The next reply after a pause of more than NEW_REPLY_GAP, with a burst spread over 3 ms.
        let t1 = t0 + Duration::from_secs(2);
        let mut second = paced_reply(t1, 5, 20);
        second[4] += Duration::from_millis(3);
        for at in second {
            m.on_frame(at);
        }
        // A barge-in clears mid-reply; the reply after it starts fresh even if it comes at once.
        m.on_clear();
        assert!(!m.in_reply());
        let t2 = t1 + FRAME * 16 + Duration::from_millis(1);
        for at in paced_reply(t2, 5, 8) {
            m.on_frame(at);
        }
        assert_eq!(m.priming_frames, 15);
        assert_eq!(m.priming_spread_us, vec![0, 3_000, 0]);
        // Steady frames: 15 + 15 + 3; only the first steady frame after the late burst frame is off.
        assert_eq!(m.steady_jitter_us.len(), 33);
        let off: Vec<u64> = m
            .steady_jitter_us
            .iter()
            .copied()
            .filter(|j| *j > 0)
            .collect();
        assert_eq!(off, vec![3_000]);
    }

    #[test]
    fn a_frame_late_by_one_period_is_measured_as_such() {
        let t0 = Instant::now();
        let mut m = ArrivalMeter::new(2);
        let mut times = paced_reply(t0, 2, 10);
        // Frame 6 held back until frame 7 is due: it arrives 20 ms late, then the two together.
        times[6] += FRAME;
        for at in times {
            m.on_frame(at);
        }
        assert_eq!(m.steady_jitter_us, vec![0, 0, 0, 0, 20_000, 20_000, 0, 0]);
    }
}
