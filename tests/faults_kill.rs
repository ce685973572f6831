//! Fault injection (issue 15): a real `kav serve` on a SQLite file is killed with SIGKILL while a
//! WhatsApp booking turn is in flight, and while its reply and confirmation are being delivered
//! (the fake Graph API holds them); then it is restarted. After recovery the booking exists
//! exactly once, the customer is told "booked" exactly once (and only if it is booked), and the
//! confirmation is delivered exactly once.

mod backends;
mod kav_process;

use std::time::Duration;

use kav::store::Store;
use kav::testing::fake_graph::{FakeGraph, post_signed_webhook, text_webhook};
use kav_process::{ACCESS_TOKEN, APP_SECRET, KavProcess, spawn_kav};
use sqlx::{AnyPool, Row};

const SEEDED_NUMBER_ID: &str = "100200300400500";
const CUSTOMER: &str = "972527776655";
const OPEN_ALWAYS: &str = r#"{"sun":["09:00","23:00"],"mon":["09:00","23:00"],"tue":["09:00","23:00"],
    "wed":["09:00","23:00"],"thu":["09:00","23:00"],"fri":["09:00","23:00"],"sat":["09:00","23:00"]}"#;
/// Inbox rows of a killed worker are taken again after this.
const ENV: &[(&str, &str)] = &[("KAV_WHATSAPP_LEASE_MS", "1000")];

async fn post(kav: &KavProcess, wamid: &str, text: &str) {
    let body = text_webhook(wamid, CUSTOMER, SEEDED_NUMBER_ID, "97235550100", text);
    let status = post_signed_webhook(&kav.url("/whatsapp/webhook"), APP_SECRET, &body).await;
    assert_eq!(status, 200);
}

async fn until(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..secs * 50 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn count(pool: &AnyPool, sql: &str) -> i64 {
    backends::count(pool, sql, &[]).await
}

#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Right after the "yes" webhook is acknowledged: the turn is anywhere between claimed and
    /// replied.
    MidTurn,
    /// The booking is made and its reply and confirmation are on the wire (held by the API).
    MidDelivery,
}

async fn killed_and_recovered(point: KillPoint) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kav.db").display());
    let store = Store::connect(&url).await.unwrap();
    store
        .set_opening_hours("biz_escape_tlv", OPEN_ALWAYS, 1)
        .await
        .unwrap();
    sqlx::any::install_default_drivers();
    let side = AnyPool::connect(&url).await.unwrap();
    let graph = FakeGraph::graph(ACCESS_TOKEN).await.unwrap();

    let kav = spawn_kav(&url, &graph.base_url, ENV).await;
    post(
        &kav,
        "wamid.K1",
        "Barcelona, the day after tomorrow at 19:00?",
    )
    .await;
    until("the first reply", 30, async || {
        !graph.accepted_texts().is_empty()
    })
    .await;
    post(&kav, "wamid.K2", "Noa").await;
    until("the second reply", 30, async || {
        graph.accepted_texts().len() >= 2
    })
    .await;

    if matches!(point, KillPoint::MidDelivery) {
        graph.hang();
    }
    post(&kav, "wamid.K3", "yes").await;
    if matches!(point, KillPoint::MidDelivery) {
        until("the booking, its sends held", 30, async || {
            graph.hanging() >= 1 && count(&side, "SELECT COUNT(*) FROM appointments").await == 1
        })
        .await;
    }
    kav.kill9().await;
    graph.calm();

    let kav = spawn_kav(&url, &graph.base_url, ENV).await;
    // The reply to "yes" and the confirmation (the outbox lease of a killed delivery is 30 s).
    until("reply and confirmation after the restart", 90, async || {
        graph.accepted_texts().len() >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sends = graph.accepted_texts();
    assert_eq!(sends.len(), 4, "{point:?}: {sends:#?}");
    let booked = count(
        &side,
        "SELECT COUNT(*) FROM appointments WHERE status = 'booked'",
    )
    .await;
    assert_eq!(booked, 1, "{point:?}: booked exactly once");
    let told: Vec<&String> = sends
        .iter()
        .filter(|t| t.to_lowercase().contains("booked"))
        .collect();
    assert_eq!(told.len(), 1, "{point:?}: told once: {sends:#?}");
    let confirmation: String = sqlx::query(
        "SELECT payload_json FROM outbox WHERE kind = 'appointment.created' AND status = 'delivered'",
    )
    .fetch_one(&side)
    .await
    .unwrap()
    .try_get(0)
    .unwrap();
    let confirmation: serde_json::Value = serde_json::from_str(&confirmation).unwrap();
    let text = confirmation["message"]["body"]["text"].as_str().unwrap();
    assert_eq!(
        sends.iter().filter(|s| s.as_str() == text).count(),
        1,
        "{point:?}: the confirmation delivered exactly once: {sends:#?}"
    );
    kav.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_booking_turn_then_restart() {
    killed_and_recovered(KillPoint::MidTurn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_then_restart() {
    killed_and_recovered(KillPoint::MidDelivery).await;
}
