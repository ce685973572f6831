//! Booking over WhatsApp, end to end over real sockets: signed Cloud API webhooks into the Kav
//! server, the inbox workers, the booking agent (offline dialog, same tools as the LLM agent) on
//! the seeded business of migration 0002, routed by `phone_number_id` through the booking tables,
//! and a fake Graph API on 127.0.0.1 receiving the replies and the booking confirmation.

mod wa_server;

use std::time::Duration;

use kav::config::Config;
use kav::store::Store;
use kav::testing::fake_graph::{FakeGraph, RecordedSend};

const APP_SECRET: &str = "booking_app_secret";
const ACCESS_TOKEN: &str = "EAAGbooking";
/// The seeded business's WhatsApp number id (migration 0002).
const SEEDED_NUMBER_ID: &str = "100200300400500";
const CUSTOMER: &str = "972521234567";

struct Harness {
    server: wa_server::Server,
    graph: kav::testing::fake_graph::FakeVendor,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let graph = FakeGraph::graph(ACCESS_TOKEN).await.unwrap();
    let mut cfg = Config::default();
    cfg.store.url = format!("sqlite://{}", dir.path().join("kav.db").display());
    cfg.whatsapp.graph_base_url = graph.base_url.clone();
    cfg.whatsapp.poll_ms = 50;
    cfg.whatsapp.retry_base_ms = 5;
    cfg.whatsapp.retry_max_ms = 20;
    cfg.booking.outbox_poll_ms = 50;
    let store = Store::connect(&cfg.store.url).await.unwrap();
    // The scenario books a Friday evening: this business opens Friday nights.
    store
        .set_opening_hours(
            "biz_escape_tlv",
            r#"{"sun":["10:00","22:00"],"mon":["10:00","22:00"],"tue":["10:00","22:00"],
                "wed":["10:00","22:00"],"thu":["10:00","23:00"],"fri":["09:00","23:00"],
                "sat":["19:00","23:00"]}"#,
            1,
        )
        .await
        .unwrap();
    let server = wa_server::serve(
        store.clone(),
        cfg,
        APP_SECRET,
        ACCESS_TOKEN,
        Duration::from_secs(5),
    )
    .await;
    Harness {
        server,
        graph,
        store,
        _dir: dir,
    }
}

fn text_webhook(wamid: &str, body: &str) -> Vec<u8> {
    kav::testing::fake_graph::text_webhook(wamid, CUSTOMER, SEEDED_NUMBER_ID, "97235550100", body)
}

impl Harness {
    async fn send(&self, wamid: &str, text: &str) {
        let body = text_webhook(wamid, text);
        let url = self.server.webhook_url();
        let status = kav::testing::fake_graph::post_signed_webhook(&url, APP_SECRET, &body).await;
        assert_eq!(status, 200);
    }

    /// Waits for the `n`-th message the fake Graph API accepted for the customer.
    async fn nth_send(&self, n: usize) -> RecordedSend {
        for _ in 0..2000 {
            let sends: Vec<_> = self
                .graph
                .sends()
                .into_iter()
                .filter(|s| s.status == 200)
                .collect();
            if sends.len() > n {
                return sends[n].clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no send #{n}: {:#?}", self.graph.sends());
    }

    async fn says(&self, wamid: &str, text: &str, n: usize) -> String {
        self.send(wamid, text).await;
        let reply = self.nth_send(n).await;
        assert_eq!(reply.sender_id, SEEDED_NUMBER_ID, "{reply:?}");
        let to = reply.body["to"].as_str().unwrap_or_default();
        assert_eq!(to.trim_start_matches('+'), CUSTOMER, "{reply:?}");
        reply.text().unwrap_or_default().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_question_gets_a_short_answer_and_a_friday_night_booking_is_confirmed() {
    let h = start().await;

    // A question about a room: a short answer from the business's documents, no booking.
    let answer = h.says("wamid.q1", "details on the New York room?", 0).await;
    assert!(answer.contains("New York"), "{answer}");
    assert!(answer.contains("detective"), "{answer}");
    assert!(
        !answer.contains("Dubai"),
        "only the room asked about: {answer}"
    );
    assert!(answer.len() < 120, "short: {answer}");

    // The booking: slots are checked with the tool, the caller's WhatsApp number is the phone.
    let asked = h
        .says("wamid.b1", "check next Friday 21:00 Barcelona room", 1)
        .await;
    let mut n = 2;
    let mut reply = asked.clone();
    if reply.to_lowercase().contains("name") {
        reply = h.says("wamid.b2", "My name is Dana", n).await;
        n += 1;
    }
    assert!(
        reply.contains("21:00") && reply.contains("Barcelona"),
        "read back before booking: {reply}"
    );
    // Meta retries: the same "yes" webhook arrives 50 times at once. It is answered with two
    // messages, once: the confirmation (sent inside the booking tool) and the agent's reply.
    futures_util::future::join_all((0..50).map(|_| h.send("wamid.b3", "yes"))).await;
    let (first, second) = (h.nth_send(n).await, h.nth_send(n + 1).await);
    let is_confirmation = |s: &RecordedSend| s.text().is_some_and(|t| t.contains("Escape TLV"));
    assert!(
        is_confirmation(&first) != is_confirmation(&second),
        "one confirmation and one reply: {first:?} {second:?}"
    );
    let done = [first, second]
        .into_iter()
        .find(|s| !is_confirmation(s))
        .and_then(|s| s.text().map(str::to_string))
        .unwrap();
    assert!(done.to_lowercase().contains("booked"), "{done}");
    assert!(
        done.contains("WhatsApp"),
        "told the confirmation was sent on WhatsApp: {done}"
    );

    // Exactly one appointment, in the Barcelona room, next Friday at 21:00 local time.
    let appointments = h
        .store
        .appointments_for_business("biz_escape_tlv")
        .await
        .unwrap();
    assert_eq!(appointments.len(), 1, "{appointments:#?}");
    let a = &appointments[0];
    assert_eq!(a.resource_id.as_deref(), Some("room_barcelona"), "{a:?}");
    let start = jiff::Timestamp::from_millisecond(a.start_ms)
        .unwrap()
        .in_tz("Asia/Jerusalem")
        .unwrap();
    assert_eq!(start.weekday(), jiff::civil::Weekday::Friday);
    assert_eq!((start.hour(), start.minute()), (21, 0));

    // The tools ran in order and the confirmation left through the Graph API once.
    let conversation = kav::store::whatsapp::conversation_id("biz_escape_tlv", CUSTOMER);
    let traces = h.store.tool_traces(&conversation).await.unwrap();
    let order: Vec<&str> = traces.iter().map(|t| t.tool.as_str()).collect();
    let find = order.iter().position(|t| *t == "calendar_find_slots");
    let create = order
        .iter()
        .position(|t| *t == "calendar_create_appointment");
    assert!(
        matches!((find, create), (Some(f), Some(c)) if f < c),
        "{order:?}"
    );
    let confirmations: Vec<_> = h
        .graph
        .sends()
        .into_iter()
        .filter(|s| {
            s.status == 200
                && s.text()
                    .is_some_and(|t| t.contains("Escape TLV") && t.contains("21:00"))
        })
        .collect();
    assert_eq!(confirmations.len(), 1, "{:#?}", h.graph.sends());
    // Nothing more trickles in from the 49 duplicates.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted = h.graph.sends().iter().filter(|s| s.status == 200).count();
    assert_eq!(accepted, n + 2, "{:#?}", h.graph.sends());
}
