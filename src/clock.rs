//! The one wall clock the shells read: Unix milliseconds, the time axis of every row the
//! database shares between instances (leases, retry times, message times). Sans-IO machines never
//! read it; their shells do, and pass `now_ms` in. Tests inject their own (`testing::ManualClock`,
//! or one that follows tokio's paused time).

use std::sync::Arc;
use std::time::Duration;

/// Unix milliseconds "now".
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system's wall clock, read once.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The system's wall clock.
pub fn system_clock() -> Clock {
    Arc::new(unix_ms)
}

/// How long a shell sleeps from `now_ms` until `at_ms` (zero if it has passed).
pub fn until(now_ms: i64, at_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0))
}
