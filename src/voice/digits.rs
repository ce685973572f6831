//! Keypad digit collection: `#` commits, `*` clears, inter-digit and overall timeouts, and an
//! automatic commit at the maximum length.

use std::time::{Duration, Instant};

const CAPACITY: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigitOutcome {
    /// Digits are ready for the agent. `by` is `"hash"`, `"max_digits"` or `"timeout"`.
    Committed { digits: String, by: &'static str },
    /// The caller gave up (timeout with nothing typed).
    Abandoned,
}

#[derive(Debug, Clone)]
pub struct DigitCollector {
    digits: [u8; CAPACITY],
    len: usize,
    max_digits: usize,
    inter_digit: Duration,
    overall: Duration,
    /// Timers run only while armed (not while the prompt is still playing).
    started_at: Option<Instant>,
    last_key_at: Option<Instant>,
}

impl DigitCollector {
    pub fn new(max_digits: u8, inter_digit: Duration, overall: Duration) -> Self {
        Self {
            digits: [0; CAPACITY],
            len: 0,
            max_digits: (max_digits as usize).clamp(1, CAPACITY),
            inter_digit,
            overall,
            started_at: None,
            last_key_at: None,
        }
    }

    pub fn entered(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.digits[..self.len]).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Starts the timers (when the prompt finished playing, or at the first key).
    pub fn arm(&mut self, now: Instant) {
        self.started_at.get_or_insert(now);
    }

    pub fn armed(&self) -> bool {
        self.started_at.is_some()
    }

    pub fn on_key(&mut self, now: Instant, key: char) -> Option<DigitOutcome> {
        self.arm(now);
        self.last_key_at = Some(now);
        match key {
            '#' if self.len > 0 => Some(self.commit("hash")),
            '#' => None, // nothing to commit yet; keep waiting
            '*' => {
                self.len = 0;
                None
            }
            '0'..='9' | 'A'..='D' => {
                self.digits[self.len] = key as u8;
                self.len += 1;
                (self.len >= self.max_digits).then(|| self.commit("max_digits"))
            }
            _ => None,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let started = self.started_at?;
        let overall = started + self.overall;
        Some(match self.last_key_at {
            Some(last) => overall.min(last + self.inter_digit),
            None => overall.min(started + self.inter_digit),
        })
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<DigitOutcome> {
        if self.poll_timeout().is_none_or(|t| now < t) {
            return None;
        }
        Some(if self.len > 0 {
            self.commit("timeout")
        } else {
            DigitOutcome::Abandoned
        })
    }

    fn commit(&mut self, by: &'static str) -> DigitOutcome {
        let digits = self.entered().to_string();
        self.len = 0;
        DigitOutcome::Committed { digits, by }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collector() -> DigitCollector {
        DigitCollector::new(10, Duration::from_secs(3), Duration::from_secs(20))
    }

    fn keys(c: &mut DigitCollector, t0: Instant, s: &str) -> Option<DigitOutcome> {
        let mut last = None;
        for (i, k) in s.chars().enumerate() {
            last = c.on_key(t0 + Duration::from_millis(300 * i as u64), k);
        }
        last
    }

    #[test]
    fn hash_commits_and_star_clears() {
        let t0 = Instant::now();
        let mut c = collector();
        assert_eq!(
            keys(&mut c, t0, "12*0501#"),
            Some(DigitOutcome::Committed {
                digits: "0501".into(),
                by: "hash"
            })
        );
        assert!(c.is_empty());
    }

    #[test]
    fn max_digits_commits_on_its_own() {
        let mut c = collector();
        let out = keys(&mut c, Instant::now(), "0501234567");
        assert_eq!(
            out,
            Some(DigitOutcome::Committed {
                digits: "0501234567".into(),
                by: "max_digits"
            })
        );
    }

    #[test]
    fn lone_hash_does_not_commit_nothing() {
        let mut c = collector();
        assert_eq!(keys(&mut c, Instant::now(), "#"), None);
    }

    #[test]
    fn inter_digit_timeout_commits_partial_and_overall_timeout_abandons() {
        let t0 = Instant::now();
        let mut c = collector();
        keys(&mut c, t0, "05");
        let deadline = c.poll_timeout().unwrap();
        assert_eq!(
            deadline,
            t0 + Duration::from_millis(300) + Duration::from_secs(3)
        );
        assert_eq!(c.handle_timeout(deadline - Duration::from_millis(1)), None);
        assert_eq!(
            c.handle_timeout(deadline),
            Some(DigitOutcome::Committed {
                digits: "05".into(),
                by: "timeout"
            })
        );

        let mut c = collector();
        assert_eq!(c.poll_timeout(), None, "timers wait until armed");
        c.arm(t0);
        assert_eq!(
            c.handle_timeout(t0 + Duration::from_secs(3)),
            Some(DigitOutcome::Abandoned)
        );
    }
}
