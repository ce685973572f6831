//! Unit tests for the ops console: latency percentiles per business, provider and window,
//! the p95 series per five minutes, and the waterfall bars drawn to the call's scale.

use super::*;

fn turn(business: &str, provider: &str, at_ms: i64, total: u32) -> WindowTurn {
    let mut marks = [None; MARK_NAMES.len()];
    marks[4] = Some(total);
    marks[1] = Some(total / 2);
    WindowTurn {
        business: business.into(),
        provider: provider.into(),
        at_ms,
        marks,
    }
}

#[test]
fn percentiles_per_business_provider_and_window() {
    let now = 10 * DAY_MS;
    let mut turns = Vec::new();
    // 100 turns in the last hour with totals 1..=100 ms, 100 more earlier in the day at
    // 1001..=1100 ms, one older than a day (ignored), another provider and business.
    for i in 1..=100u32 {
        turns.push(turn("a", "sim/offline/espeak", now - 60_000, i));
        turns.push(turn("a", "sim/offline/espeak", now - 5 * HOUR_MS, 1000 + i));
    }
    turns.push(turn("a", "sim/offline/espeak", now - DAY_MS - 1, 9_999));
    turns.push(turn("a", "google/booking/google", now - 1, 700));
    turns.push(turn("b", "sim/offline/espeak", now - 1, 300));
    let rows = percentiles(&turns, now);
    let find = |b: &str, p: &str, w: &str, m: &str| {
        rows.iter()
            .find(|r| r.business == b && r.provider == p && r.window == w && r.mark == m)
            .cloned()
            .unwrap_or_else(|| panic!("no row {b} {p} {w} {m}"))
    };
    let hour = find("a", "sim/offline/espeak", "hour", "total");
    assert_eq!(
        (hour.count, hour.p50, hour.p95, hour.p99),
        (100, 50, 95, 99)
    );
    let day = find("a", "sim/offline/espeak", "day", "total");
    assert_eq!(
        (day.count, day.p50, day.p95, day.p99),
        (200, 100, 1090, 1098)
    );
    let stt = find("a", "sim/offline/espeak", "hour", "stt_final");
    assert_eq!((stt.count, stt.p50), (100, 25));
    let other = find("a", "google/booking/google", "day", "total");
    assert_eq!((other.count, other.p99), (1, 700));
    assert_eq!(find("b", "sim/offline/espeak", "hour", "total").p50, 300);
    // Unmeasured marks have no row.
    assert!(!rows.iter().any(|r| r.mark == "ai_latency"));
}

#[test]
fn the_series_is_p95_total_per_five_minutes() {
    let now = 10 * DAY_MS + 2 * 60_000; // 2 minutes into a bucket
    let mut turns = Vec::new();
    for i in 1..=20u32 {
        turns.push(turn("a", "p", now - 60_000, i * 10)); // current bucket
    }
    turns.push(turn("a", "p", now - 11 * 60_000, 500)); // two buckets back
    let s = series(&turns, now);
    assert_eq!(s.t.len(), 288);
    assert_eq!(s.p95_total_ms.len(), 288);
    assert_eq!(*s.p95_total_ms.last().unwrap(), Some(190));
    assert_eq!(s.p95_total_ms[285], Some(500));
    assert_eq!(s.p95_total_ms[286], None);
    assert_eq!(s.t[287] * 1000, 10 * DAY_MS);
    assert_eq!(s.t[1] - s.t[0], 300);
}

#[test]
fn waterfall_bars_are_drawn_to_the_call_scale() {
    let mut marks = [None; MARK_NAMES.len()];
    marks[0] = Some(120); // stt_first_partial
    marks[1] = Some(200); // stt_final
    marks[2] = Some(450); // ai_latency
    marks[4] = Some(800); // total; tts_ready unmeasured
    let b = bars(&marks, 1600);
    let got: Vec<_> = b.iter().map(|b| (b.mark, b.ms, b.width_pct)).collect();
    assert_eq!(
        got,
        vec![
            ("stt_first_partial", Some(120), 7.5),
            ("stt_final", Some(200), 12.5),
            ("ai_latency", Some(450), 28.1),
            ("tts_ready", None, 0.0),
            ("total", Some(800), 50.0),
        ]
    );
}
