//! Measures the booking tools on SQLite: pure slot computation, `calendar_find_slots` and
//! `calendar_create_appointment` (commit + outbox + one WhatsApp attempt via the log sender).
//!
//!     cargo run --release --example booking_tools -- 300
//!
//! Prints p50 / p99 / max in microseconds. A fixed clock (Monday 2026-11-23 12:00, Tel Aviv).

use std::sync::Arc;
use std::time::Instant;

use kav::agent::{BookingRuntime, tools};
use kav::channels::whatsapp::graph::LogSender;
use kav::config::BookingConfig;
use kav::providers::{AgentRequest, CallContext, Channel};
use kav::store::Store;
use kav::testing::clock::{ManualClock, monday_noon_ms};
use serde_json::json;

fn report(name: &str, mut us: Vec<u128>) {
    us.sort_unstable();
    let at = |q: f64| us[((us.len() as f64 - 1.0) * q) as usize];
    println!(
        "{name:<28} n={:<5} p50={:>7} µs  p99={:>7} µs  max={:>7} µs",
        us.len(),
        at(0.5),
        at(0.99),
        us[us.len() - 1]
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("kav.db").display()))
        .await
        .expect("store");
    let now = monday_noon_ms();
    let rt = BookingRuntime::new(
        store,
        Arc::new(LogSender::new(false)),
        ManualClock::new(now).clock(),
        BookingConfig::default(),
    );
    let mut req = AgentRequest {
        channel: Channel::Phone,
        call: CallContext {
            call_sid: "CA_bench".into(),
            ..CallContext::default()
        },
        turn: 1,
        history: Vec::new(),
        digits: false,
    };
    let ctx = rt.turn_context(&req).await.expect("context");

    let p = &ctx.settings.policy;
    let caps: Vec<_> = ctx.settings.resources.iter().map(|r| r.cap()).collect();
    let from = jiff::civil::date(2026, 11, 24);
    let to = jiff::civil::date(2026, 12, 23);
    let mut us = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(p.find_slots(now, from, to, &caps, &[], None));
        us.push(t.elapsed().as_micros());
    }
    report("policy.find_slots (30 days)", us);

    let mut created = Vec::new();
    let mut found = Vec::new();
    for i in 0..n {
        // Every booking a different customer and slot, spread over the window.
        req.call
            .parameters
            .insert("From".into(), format!("+9725{:08}", i));
        let ctx = rt.turn_context(&req).await.expect("context");
        let day = from
            .checked_add(jiff::Span::new().days((i % 28) as i64))
            .unwrap();
        let t = Instant::now();
        let slots = ctx
            .call(
                tools::FIND_SLOTS,
                &json!({"date": day.to_string()}).to_string(),
            )
            .await;
        found.push(t.elapsed().as_micros());
        let Some(slot) = slots.value["slots"]
            .as_array()
            .and_then(|s| s.first())
            .cloned()
        else {
            continue;
        };
        let args = json!({"start_iso": slot["start_iso"], "resource": slot["resources"][0], "customer_name": "Bench"});
        let t = Instant::now();
        let out = ctx.call(tools::CREATE, &args.to_string()).await;
        created.push(t.elapsed().as_micros());
        assert!(out.ok, "{:?}", out.value);
    }
    report("tool calendar_find_slots", found);
    report("tool calendar_create_appt.", created);
}
