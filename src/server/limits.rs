//! Limits that bound one client, and admission control (issue 15).
//!
//! * Connections: at most `limits.max_connections` open at once (a call's WebSocket holds its
//!   connection's slot for the whole call); beyond that a new connection is closed at once. Each
//!   must send a whole request head within `header_read_timeout_ms` (hyper's timer; it also runs
//!   while a keep-alive connection idles between requests and for the WebSocket handshake), and a
//!   request must be answered within `request_timeout_ms` (tower-http). The accept loop that
//!   applies them is [`super::serve`].
//! * Rate: webhooks are limited per client IP by a keyed GCRA limiter (governor); [`RateLimit`] is
//!   the reusable piece (the console login can hold its own).
//! * Admission: [`admission`] decides from the live calls and the event-loop lag measured by
//!   [`sample_loop_lag`] whether a new call is taken; a refused call gets [`overflow_twiml`]
//!   instead of degrading the calls already live. A call counts from the webhook that admits it:
//!   [`Admitted`] holds its place until its stream opens (or `admission_hold_ms` passes), so a
//!   burst of webhooks cannot all pass before their streams arrive and overshoot `max_calls`.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::LimitsConfig;

/// The server's limits and the state they keep (one per [`super::AppState`]).
pub struct Limits {
    /// One permit per open connection.
    pub connections: std::sync::Arc<tokio::sync::Semaphore>,
    pub max_connections: usize,
    pub lag: LoopLag,
    pub webhook_rate: Option<RateLimit>,
    /// Calls admitted whose stream has not opened yet.
    pub admitted: Admitted,
}

impl Limits {
    pub fn new(cfg: &LimitsConfig) -> Self {
        let max_connections = cfg.max_connections.max(1);
        Self {
            connections: std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections)),
            max_connections,
            lag: LoopLag::default(),
            webhook_rate: RateLimit::per_ip(cfg.webhook_rate_per_s, cfg.webhook_burst),
            admitted: Admitted::default(),
        }
    }

    pub fn open_connections(&self) -> usize {
        self.max_connections - self.connections.available_permits()
    }
}

/// A per-client-IP rate limit (GCRA: a sustained rate plus a burst).
pub struct RateLimit(DefaultKeyedRateLimiter<IpAddr>);

impl RateLimit {
    /// `None` when `per_s` is 0 (no limit).
    pub fn per_ip(per_s: u32, burst: u32) -> Option<Self> {
        let per_s = NonZeroU32::new(per_s)?;
        let burst = NonZeroU32::new(burst).unwrap_or(per_s);
        Some(Self(DefaultKeyedRateLimiter::keyed(
            Quota::per_second(per_s).allow_burst(burst),
        )))
    }

    /// True if this request from `ip` is within the limit (and counts it).
    pub fn check(&self, ip: IpAddr) -> bool {
        self.0.check_key(&ip).is_ok()
    }

    /// Forgets clients whose limit has fully recovered, so the map stays bounded by the clients
    /// of the last burst window.
    pub fn housekeep(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }

    pub fn tracked_clients(&self) -> usize {
        self.0.len()
    }
}

/// Why a new call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Draining,
    Calls { live: usize, max: usize },
    LoopLag { lag_ms: u64, max_ms: u64 },
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Draining => "draining",
            Refusal::Calls { .. } => "max_calls",
            Refusal::LoopLag { .. } => "loop_lag",
        }
    }
}

/// Whether a new call may start: under `max_calls` live calls and with the event loop on time.
pub fn admission(
    draining: bool,
    live: usize,
    lag_ms: u64,
    cfg: &LimitsConfig,
) -> Result<(), Refusal> {
    if draining {
        return Err(Refusal::Draining);
    }
    if cfg.max_calls > 0 && live >= cfg.max_calls {
        return Err(Refusal::Calls {
            live,
            max: cfg.max_calls,
        });
    }
    if cfg.max_loop_lag_ms > 0 && lag_ms > cfg.max_loop_lag_ms {
        return Err(Refusal::LoopLag {
            lag_ms,
            max_ms: cfg.max_loop_lag_ms,
        });
    }
    Ok(())
}

/// Calls the webhook admitted whose Media Stream has not opened yet, as the deadlines of their
/// held places (oldest first; one hold for all, so the queue is in deadline order). Sans-IO: the
/// caller passes `now`. At most `max_calls` places are held, so it is bounded.
///
/// The stream's handshake does not say which webhook it follows (the call SID comes later, in
/// its `start` message), so an opening stream releases the oldest place: the count stays right,
/// and a place whose call never streams (hung up while ringing) lapses at its deadline.
#[derive(Debug, Default)]
pub struct Admitted(std::sync::Mutex<VecDeque<Instant>>);

impl Admitted {
    /// Admission at the webhook (see [`admission`]), counting the held places as live calls;
    /// an admitted call holds a place until `now + hold` or until a stream opens.
    pub fn admit(
        &self,
        now: Instant,
        draining: bool,
        live: usize,
        lag_ms: u64,
        cfg: &LimitsConfig,
    ) -> Result<(), Refusal> {
        // Check and hold under one lock, so two webhooks cannot both take the last place.
        let mut held = self.lock(now);
        admission(draining, live + held.len(), lag_ms, cfg)?;
        if cfg.max_calls > 0 {
            held.push_back(now + Duration::from_millis(cfg.admission_hold_ms));
        }
        Ok(())
    }

    /// Places held at `now`.
    pub fn held(&self, now: Instant) -> usize {
        self.lock(now).len()
    }

    /// A call's stream opened (it is now a live call): the oldest held place is released.
    pub fn stream_opened(&self, now: Instant) {
        self.lock(now).pop_front();
    }

    /// The queue with the places that lapsed by `now` removed.
    fn lock(&self, now: Instant) -> std::sync::MutexGuard<'_, VecDeque<Instant>> {
        // A poisoned lock only means a holder panicked between two queue operations, each of
        // which leaves the queue valid.
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while held.front().is_some_and(|deadline| *deadline <= now) {
            held.pop_front();
        }
        held
    }
}

/// Built-in sentence for refused calls, in the call's language.
fn overflow_sentence(language: &str) -> &'static str {
    if language.starts_with("he") || language.starts_with("iw") {
        "כל הקווים תפוסים כרגע. אנא נסו שוב בעוד כמה דקות."
    } else {
        "All our lines are busy right now. Please call again in a few minutes."
    }
}

/// TwiML for a call we do not take: `<Dial>` the overflow number when one is set, else a short
/// `<Say>` in the call's language and `<Hangup/>`.
pub fn overflow_twiml(cfg: &LimitsConfig, language: &str) -> String {
    let body = if cfg.overflow_dial.is_empty() {
        let text = if cfg.overflow_say.is_empty() {
            overflow_sentence(language)
        } else {
            cfg.overflow_say.as_str()
        };
        format!(
            "  <Say language=\"{}\">{}</Say>\n  <Hangup/>\n",
            super::xml_escape(language),
            super::xml_escape(text)
        )
    } else {
        format!("  <Dial>{}</Dial>\n", super::xml_escape(&cfg.overflow_dial))
    };
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n{body}</Response>\n")
}

/// Event-loop lag: how late a timer fires, rising at once and decaying by a quarter per sample,
/// so one slow tick shows for about a second at the default sample rate.
#[derive(Debug, Default)]
pub struct LoopLag(AtomicU64);

impl LoopLag {
    pub fn ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed) / 1000
    }

    /// Folds in one sample (µs of lateness).
    pub fn record(&self, late_us: u64) {
        let old = self.0.load(Ordering::Relaxed);
        self.0.store(late_us.max(old - old / 4), Ordering::Relaxed);
    }
}

/// Samples the event loop's lag every `every` until the server's state is gone: a timer that
/// should fire after `every` and fires later measures how long ready tasks (calls' playout timers
/// among them) wait for a worker. Also keeps the rate limiter's map bounded.
pub async fn sample_loop_lag(state: Weak<super::AppState>, every: Duration) {
    let every = every.max(Duration::from_millis(1));
    let mut ticks: u64 = 0;
    loop {
        let before = tokio::time::Instant::now();
        tokio::time::sleep(every).await;
        let late = before.elapsed().saturating_sub(every);
        let Some(state) = state.upgrade() else {
            return;
        };
        state.limits.lag.record(late.as_micros() as u64);
        ticks += 1;
        if ticks.is_multiple_of(100)
            && let Some(rate) = &state.limits.webhook_rate
        {
            rate.housekeep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            max_calls: 10,
            max_loop_lag_ms: 50,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn admission_refuses_at_capacity_on_lag_and_while_draining() {
        assert_eq!(admission(false, 9, 49, &cfg()), Ok(()));
        assert_eq!(
            admission(false, 10, 0, &cfg()),
            Err(Refusal::Calls { live: 10, max: 10 })
        );
        assert_eq!(
            admission(false, 0, 51, &cfg()),
            Err(Refusal::LoopLag {
                lag_ms: 51,
                max_ms: 50
            })
        );
        assert_eq!(admission(true, 0, 0, &cfg()), Err(Refusal::Draining));
        let off = LimitsConfig {
            max_calls: 0,
            max_loop_lag_ms: 0,
            ..cfg()
        };
        assert_eq!(admission(false, 1_000_000, 10_000, &off), Ok(()));
    }

    /// The overshoot `kav loadgen` showed (240 calls against `max_calls = 200` → 202 live): a
    /// burst of webhooks all passed before their streams opened. Held places close that gap.
    #[test]
    fn a_call_holds_its_place_from_the_webhook_until_its_stream_opens_or_the_hold_lapses() {
        let cfg = LimitsConfig {
            max_calls: 2,
            admission_hold_ms: 10_000,
            ..cfg()
        };
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let admitted = Admitted::default();
        // Two webhooks, no stream yet: the third is refused though no call is live.
        assert_eq!(admitted.admit(at(0), false, 0, 0, &cfg), Ok(()));
        assert_eq!(admitted.admit(at(10), false, 0, 0, &cfg), Ok(()));
        assert_eq!(
            admitted.admit(at(20), false, 0, 0, &cfg),
            Err(Refusal::Calls { live: 2, max: 2 })
        );
        assert_eq!(admitted.held(at(20)), 2);
        // The first stream opens: one live call plus one held place, still full.
        admitted.stream_opened(at(900));
        assert_eq!(admitted.held(at(900)), 1);
        assert!(admitted.admit(at(900), false, 1, 0, &cfg).is_err());
        // The second caller hung up while it rang: its place lapses at its deadline, not before.
        assert!(admitted.admit(at(10_009), false, 1, 0, &cfg).is_err());
        assert_eq!(admitted.admit(at(10_010), false, 1, 0, &cfg), Ok(()));
        // A stream with no held place (the webhook's hold lapsed, or none) is not an error.
        admitted.stream_opened(at(10_020));
        admitted.stream_opened(at(10_020));
        assert_eq!(admitted.held(at(10_020)), 0);
        // Refused calls hold nothing, and with no call limit nothing is held at all.
        let unlimited = LimitsConfig {
            max_calls: 0,
            ..cfg.clone()
        };
        for ms in 0..100 {
            assert_eq!(
                admitted.admit(at(20_000 + ms), false, 5, 0, &unlimited),
                Ok(())
            );
        }
        assert_eq!(admitted.held(at(20_100)), 0);
        assert_eq!(
            admitted.admit(at(20_100), true, 0, 0, &cfg),
            Err(Refusal::Draining)
        );
        assert_eq!(admitted.held(at(20_100)), 0);
    }

    #[test]
    fn overflow_twiml_speaks_the_call_language_or_dials() {
        let he = overflow_twiml(&cfg(), "he-IL");
        assert!(
            he.contains("<Say language=\"he-IL\">כל הקווים תפוסים"),
            "{he}"
        );
        assert!(
            he.contains("<Hangup/>") && !he.contains("<Connect>"),
            "{he}"
        );
        let en = overflow_twiml(&cfg(), "en-US");
        assert!(en.contains("All our lines are busy"), "{en}");
        let dial = overflow_twiml(
            &LimitsConfig {
                overflow_dial: "+972500000000".into(),
                ..cfg()
            },
            "he-IL",
        );
        assert!(dial.contains("<Dial>+972500000000</Dial>"), "{dial}");
        assert!(!dial.contains("<Say"), "{dial}");
    }

    #[test]
    fn loop_lag_rises_at_once_and_decays() {
        let lag = LoopLag::default();
        lag.record(80_000);
        assert_eq!(lag.ms(), 80);
        for _ in 0..20 {
            lag.record(1_000);
        }
        assert!(lag.ms() <= 1, "{}", lag.ms());
    }

    #[test]
    fn rate_limit_allows_the_burst_then_refuses_per_ip() {
        let rl = RateLimit::per_ip(1, 3).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| rl.check(a)));
        assert!(!rl.check(a), "fourth request within the burst window");
        assert!(rl.check(b), "another client has its own budget");
        assert!(RateLimit::per_ip(0, 10).is_none());
    }
}
