//! A clock the test sets and advances by hand, handed to the code under test as an
//! [`agent::Clock`](crate::agent::Clock).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::agent::Clock;

#[derive(Clone)]
pub struct ManualClock(Arc<AtomicI64>);

/// Monday 2026-11-23 12:00 in Tel Aviv: when the booking tests take place (the seeded business
/// is open, tomorrow is a working day).
pub fn monday_noon_ms() -> i64 {
    jiff::civil::date(2026, 11, 23)
        .at(12, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::get("Asia/Jerusalem").expect("tz database"))
        .expect("valid local time")
        .timestamp()
        .as_millisecond()
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(now_ms)))
    }

    pub fn monday_noon() -> Self {
        Self::new(monday_noon_ms())
    }

    pub fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    /// The clock the runtime reads; it follows every later `advance` and `set`.
    pub fn clock(&self) -> Clock {
        let inner = self.0.clone();
        Arc::new(move || inner.load(Ordering::SeqCst))
    }
}
