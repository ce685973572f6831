//! The one retry backoff policy: exponential (`base`·2^retry, capped at `max`) with equal jitter
//! (uniform in [d/2, d], so instances that failed together do not retry together), raised to the
//! server's hint (`Retry-After`) when that is larger, still capped at `max`.
//!
//! In-memory retries run it through backon ([`Backoff::retries`]); database-scheduled retries (the
//! outbox, the WhatsApp inbox) call [`Backoff::delay`] with the attempt number, so both follow
//! the same function of the attempt. Pure: the jitter's random unit is an argument
//! ([`Backoff::delay_at`]) for tests.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// Delay before retry `retry` (0 = the first retry), with jitter `unit` in [0, 1).
    pub fn delay_at(&self, retry: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .min(self.max);
        let jittered = full / 2 + full.mul_f64(unit.clamp(0.0, 1.0) / 2.0);
        jittered.max(retry_after.unwrap_or_default().min(self.max))
    }

    /// Delay before retry `retry` (0 = the first retry), with random jitter.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        self.delay_at(retry, retry_after, fastrand::f64())
    }

    /// This policy as a backon backoff for at most `max_retries` retries.
    pub fn retries(self, max_retries: u32) -> Retries {
        Retries {
            policy: self,
            next: 0,
            max_retries,
        }
    }
}

/// The delays of [`Backoff::retries`], one per retry (backon's `Backoff`).
#[derive(Debug, Clone)]
pub struct Retries {
    policy: Backoff,
    next: u32,
    max_retries: u32,
}

impl Iterator for Retries {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.next >= self.max_retries {
            return None;
        }
        let d = self.policy.delay(self.next, None);
        self.next += 1;
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));

    #[test]
    fn doubles_is_capped_and_jitters_within_the_upper_half() {
        let ms = |d: Duration| d.as_millis() as u64;
        assert_eq!(ms(P.delay_at(0, None, 0.0)), 50);
        assert_eq!(ms(P.delay_at(0, None, 0.999_999)), 99);
        assert_eq!(ms(P.delay_at(2, None, 0.0)), 200);
        assert_eq!(ms(P.delay_at(2, None, 0.5)), 300);
        assert_eq!(ms(P.delay_at(10, None, 0.0)), 500);
        assert_eq!(ms(P.delay_at(40, None, 0.999_999)), 999);
        for retry in 0..8 {
            let d = P.delay(retry, None);
            let full = (100u64 << retry).min(1000);
            assert!((full / 2..=full).contains(&ms(d)), "{retry}: {d:?}");
        }
    }

    #[test]
    fn a_server_hint_raises_the_delay_but_not_past_the_cap() {
        let hint = |ms| Some(Duration::from_millis(ms));
        assert_eq!(P.delay_at(0, hint(700), 0.0), Duration::from_millis(700));
        assert_eq!(
            P.delay_at(0, hint(60_000), 0.0),
            Duration::from_millis(1000)
        );
        assert_eq!(P.delay_at(3, hint(10), 0.0), Duration::from_millis(400));
    }

    #[test]
    fn retries_yield_one_delay_per_retry() {
        let delays: Vec<Duration> = P.retries(3).collect();
        assert_eq!(delays.len(), 3);
        assert!(delays[2] >= Duration::from_millis(200));
    }
}
