//! Privacy (issue 15): "forget this customer" through `kav admin forget-customer` and through the
//! operator API of a real `kav serve`, and the retention sweep. On SQLite always, on PostgreSQL
//! too when `KAV_TEST_POSTGRES_URL` is set (`tests/backends`).
//!
//! Two customers of one business each book by phone (the real offline agent and booking
//! runtime: conversation messages, tool traces, dialog state, an appointment, a confirmation in
//! the outbox) and talk on WhatsApp (conversation, messages, inbox event, sent reply), and each
//! has a call record with turns. Forgetting one leaves no row that names their phone or their
//! name, keeps their booking (redacted) so the slot stays taken, and leaves the other customer's
//! data whole.

mod backends;
mod dialog;
mod kav_process;

use std::collections::BTreeMap;
use std::sync::Arc;

use kav::agent::BookingRuntime;
use kav::agent::offline::OfflineBookingAgent;
use kav::config::{BookingConfig, RetentionConfig};
use kav::providers::Channel;
use kav::store::Store;
use kav::store::privacy::{REDACTED_NAME, RetentionPlan};
use kav::store::whatsapp::{ConversationKey, InboxOutcome};
use kav::testing::clock::ManualClock;
use kav::testing::switchable_sender::SwitchableSender;
use sqlx::{AnyPool, AssertSqlSafe, Row};

const BUSINESS: &str = "biz_escape_tlv";
const DAY_MS: i64 = 86_400_000;

struct Customer {
    phone: &'static str,
    /// What they would be found by: their number's digits and their name.
    traces: [&'static str; 2],
    name: &'static str,
    call: &'static str,
    room_and_time: &'static str,
}

const FORGET: Customer = Customer {
    phone: "+972501112233",
    traces: ["501112233", "Zvulun"],
    name: "Zvulun",
    call: "CA_forget_me",
    room_and_time: "Barcelona tomorrow at 19:00",
};
const KEEP: Customer = Customer {
    phone: "+972504445566",
    traces: ["504445566", "Yocheved"],
    name: "Yocheved",
    call: "CA_keep_me",
    room_and_time: "Dubai tomorrow at 20:00",
};

/// Columns that may hold a phone, a name or words a customer said.
const PERSONAL_COLUMNS: &[(&str, &str)] = &[
    ("calls", "parameters_json"),
    ("turns", "user_text"),
    ("turns", "bot_text"),
    ("call_events", "detail_json"),
    ("customers", "phone"),
    ("customers", "name"),
    ("appointments", "customer_phone"),
    ("appointments", "customer_name"),
    ("conversation_messages", "text"),
    ("conversation_messages", "customer_phone"),
    ("conversation_summaries", "summary"),
    ("tool_traces", "args_json"),
    ("conversation_state", "state_json"),
    ("outbox", "payload_json"),
    ("outbox", "result"),
    ("whatsapp_conversations", "customer_key"),
    ("whatsapp_conversations", "customer_phone"),
    ("whatsapp_conversations", "profile_name"),
    ("whatsapp_messages", "text"),
    ("whatsapp_messages", "customer_key"),
    ("whatsapp_inbox", "payload_json"),
    ("whatsapp_outbound", "recipient"),
    ("staff_audit", "args_json"),
    ("staff_audit", "items_json"),
    ("staff_chat_messages", "text"),
    ("staff_chat_messages", "arguments_json"),
    ("whatsapp_outbound", "body_json"),
];

/// Where `needle` still appears: `table.column` → rows.
async fn found(pool: &AnyPool, needle: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (table, column) in PERSONAL_COLUMNS {
        let n: i64 = sqlx::query(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE CAST({column} AS TEXT) LIKE $1"
        )))
        .bind(format!("%{needle}%"))
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
        if n > 0 {
            out.insert(format!("{table}.{column}"), n);
        }
    }
    out
}

async fn count(pool: &AnyPool, sql: &str, bind: &str) -> i64 {
    backends::count(pool, sql, &[bind]).await
}

/// One phone booking through the real offline agent, then a call record, then a WhatsApp thread.
async fn seed_customer(agent: &OfflineBookingAgent, store: &Store, pool: &AnyPool, c: &Customer) {
    let now = ManualClock::monday_noon().now_ms();
    let replies = dialog::converse(
        std::slice::from_ref(agent),
        Channel::Phone,
        c.call,
        c.phone,
        "en-US",
        &[c.room_and_time, c.name, "yes"],
    )
    .await;
    assert!(
        replies[2].to_lowercase().contains("booked"),
        "{}: {replies:?}",
        c.name
    );

    // The call's own record, as the recorder writes it.
    let call_id = format!("{}:MZ1", c.call);
    sqlx::query(
        "INSERT INTO calls (id, call_sid, stream_sid, account_sid, started_at_ms, parameters_json) \
         VALUES ($1, $2, 'MZ1', 'AC1', $3, $4)",
    )
    .bind(&call_id)
    .bind(c.call)
    .bind(now)
    .bind(format!("{{\"From\":\"{}\"}}", c.phone))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO turns (call_id, turn, input_kind, user_text, bot_text, interrupted, at_ms) \
         VALUES ($1, 1, 'speech', $2, 'Booked.', 0, $3)",
    )
    .bind(&call_id)
    .bind(format!("my name is {}", c.name))
    .bind(now)
    .execute(pool)
    .await
    .unwrap();

    // A WhatsApp thread: inbound event (done), both messages, our reply sent.
    let digits = c.phone.trim_start_matches('+');
    let conv = store
        .whatsapp_touch_conversation(
            &ConversationKey {
                business_id: BUSINESS,
                customer_key: digits,
                customer_phone: Some(digits),
                customer_user_id: None,
                profile_name: Some(c.name),
                channel: "whatsapp",
            },
            now,
        )
        .await
        .unwrap();
    let inbox_id = format!("msg:wamid.{}", c.name);
    let payload = format!("{{\"from\":\"{digits}\",\"text\":\"I am {}\"}}", c.name);
    store
        .whatsapp_enqueue(&inbox_id, "meta", BUSINESS, &conv, &payload, now)
        .await
        .unwrap();
    store
        .whatsapp_finish(&inbox_id, InboxOutcome::Done, now)
        .await
        .unwrap();
    for (role, text, reply_to) in [
        ("user", format!("I am {}", c.name), None),
        (
            "assistant",
            format!("Hello {}!", c.name),
            Some(inbox_id.as_str()),
        ),
    ] {
        store
            .whatsapp_append_message(
                &format!("{inbox_id}:{role}"),
                &conv,
                BUSINESS,
                digits,
                role,
                &text,
                now,
                None,
                reply_to,
            )
            .await
            .unwrap();
    }
    store
        .whatsapp_outbound_begin(
            &format!("{inbox_id}:0"),
            &conv,
            BUSINESS,
            digits,
            &format!("{{\"text\":\"Hello {}!\"}}", c.name),
            now,
        )
        .await
        .unwrap();
    sqlx::query("UPDATE whatsapp_outbound SET status = 'sent' WHERE conversation_id = $1")
        .bind(&conv)
        .execute(pool)
        .await
        .unwrap();
    // A staff batch that moved them, and the staff chat line that asked for it.
    store
        .insert_staff_audit(&kav::store::staff::AuditRow {
            id: format!("audit_{}", c.call),
            business_id: BUSINESS.into(),
            account_id: "acct_owner".into(),
            tool: "staff_batch_modify".into(),
            args_json: format!("{{\"customer\":\"{}\"}}", c.name),
            items_json: format!(
                "[{{\"customer_name\":\"{}\",\"customer_phone\":\"{}\",\"ok\":true}}]",
                c.name, c.phone
            ),
            outcome: "done".into(),
            succeeded: 1,
            failed: 0,
            error: None,
            reason: None,
            at_ms: now,
        })
        .await
        .unwrap();
    store
        .append_staff_chat(&[kav::store::staff_chat::StaffChatMessage {
            business_id: BUSINESS.into(),
            account_email: "owner@example.test".into(),
            role: "user".into(),
            text: format!("move {} ({}) to Sunday", c.name, c.phone),
            tool_name: None,
            arguments_json: None,
            call_id: None,
            mode: None,
            at_ms: now,
        }])
        .await
        .unwrap();
}

/// Both customers' data on a fresh database. Returns a side pool for inspection.
async fn seeded(url: &str) -> (Store, AnyPool) {
    let clock = ManualClock::monday_noon();
    let store = Store::connect(url).await.unwrap();
    let rt = BookingRuntime::new(
        store.clone(),
        Arc::new(SwitchableSender::new()),
        clock.clock(),
        BookingConfig::default(),
    );
    let agent = OfflineBookingAgent::new(rt);
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(url).await.unwrap();
    for c in [&FORGET, &KEEP] {
        seed_customer(&agent, &store, &pool, c).await;
    }
    // Before: each customer is findable in the places that matter.
    for c in [&FORGET, &KEEP] {
        let digits = found(&pool, c.traces[0]).await;
        for place in [
            "appointments.customer_phone",
            "outbox.payload_json",
            "conversation_messages.customer_phone",
            "calls.parameters_json",
            "whatsapp_conversations.customer_key",
            "whatsapp_outbound.recipient",
            "staff_audit.items_json",
            "staff_chat_messages.text",
        ] {
            assert!(digits.contains_key(place), "{place} before: {digits:?}");
        }
        let name = found(&pool, c.traces[1]).await;
        for place in [
            "appointments.customer_name",
            "conversation_messages.text",
            "turns.user_text",
            "whatsapp_messages.text",
            "whatsapp_inbox.payload_json",
            "staff_audit.args_json",
            "staff_chat_messages.text",
        ] {
            assert!(name.contains_key(place), "{place} before: {name:?}");
        }
    }
    (store, pool)
}

/// After forgetting FORGET: none of their traces anywhere, their booking kept but redacted,
/// their confirmation not sent, KEEP untouched.
async fn assert_forgotten(backend: &str, store: &Store, pool: &AnyPool, keep_before: &str) {
    for needle in FORGET.traces {
        let left = found(pool, needle).await;
        assert!(left.is_empty(), "{backend}: {needle} still in {left:?}");
    }
    let appts = store.appointments_for_business(BUSINESS).await.unwrap();
    assert_eq!(appts.len(), 2, "{backend}: both bookings stay: {appts:#?}");
    let forgotten = appts
        .iter()
        .find(|a| a.conversation_id == FORGET.call)
        .expect("the forgotten customer's booking still holds its slot");
    assert_eq!(forgotten.customer_name, REDACTED_NAME, "{backend}");
    assert_eq!(forgotten.customer_phone, None, "{backend}");
    assert_eq!(forgotten.status.as_str(), "booked", "{backend}");
    // Their confirmation will not be sent.
    assert_eq!(
        count(
            pool,
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND idempotency_key = $1",
            &format!("confirm:{}", forgotten.id),
        )
        .await,
        0,
        "{backend}"
    );
    assert_eq!(
        count(
            pool,
            "SELECT COUNT(*) FROM tool_traces WHERE conversation_id = $1",
            FORGET.call
        )
        .await,
        0,
        "{backend}"
    );
    // The dedup key of their WhatsApp message stays, so a late vendor retry is still a duplicate.
    assert_eq!(
        count(
            pool,
            "SELECT COUNT(*) FROM whatsapp_inbox WHERE id = $1",
            "msg:wamid.Zvulun"
        )
        .await,
        1,
        "{backend}"
    );
    // The other customer is exactly as before.
    let keep_after = format!(
        "{:?}{:?}",
        found(pool, KEEP.traces[0]).await,
        found(pool, KEEP.traces[1]).await
    );
    assert_eq!(keep_after, keep_before, "{backend}: the other customer");
    assert!(
        count(
            pool,
            "SELECT COUNT(*) FROM tool_traces WHERE conversation_id = $1",
            KEEP.call
        )
        .await
            > 0,
        "{backend}"
    );
}

async fn keep_fingerprint(pool: &AnyPool) -> String {
    format!(
        "{:?}{:?}",
        found(pool, KEEP.traces[0]).await,
        found(pool, KEEP.traces[1]).await
    )
}

#[tokio::test]
async fn forget_customer_from_the_command_line() {
    for backend in backends::backends().await {
        let (store, pool) = seeded(&backend.url).await;
        let keep = keep_fingerprint(&pool).await;
        // A local spelling of the number, as an operator would type it.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kav"))
            .args([
                "--config",
                "/nonexistent/kav.toml",
                "admin",
                "forget-customer",
            ])
            .args(["--phone", "050-111 2233", "--business", BUSINESS])
            .env("KAV_STORE_URL", &backend.url)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: BTreeMap<String, u64> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report.get("appointments.redacted"), Some(&1), "{report:?}");
        assert_eq!(report.get("calls.deleted"), Some(&1), "{report:?}");
        assert_eq!(
            report.get("whatsapp_conversations.deleted"),
            Some(&1),
            "{report:?}"
        );
        assert_forgotten(backend.name, &store, &pool, &keep).await;

        // Again: nothing left to do; a nonsense phone is refused.
        let again = store
            .forget_customer(FORGET.phone, Some(BUSINESS), 0)
            .await
            .unwrap();
        assert_eq!(again.total(), 0, "{again:?}");
        assert!(store.forget_customer("12", None, 0).await.is_err());
        pool.close().await;
        backend.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_customer_through_the_operator_api() {
    for backend in backends::backends().await {
        let (store, pool) = seeded(&backend.url).await;
        let keep = keep_fingerprint(&pool).await;
        let kav = kav_process::spawn_kav(&backend.url, "http://127.0.0.1:9", &[]).await;
        let http = reqwest::Client::new();
        let body = serde_json::json!({"phone": "972501112233"});
        let refused = http
            .post(kav.url("/api/customers/forget"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
        let wrong = http
            .post(kav.url("/api/customers/forget"))
            .bearer_auth("not-the-token")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        // Nothing was touched by the refused calls.
        assert!(!found(&pool, FORGET.traces[0]).await.is_empty());

        let bad = http
            .post(kav.url("/api/customers/forget"))
            .bearer_auth(kav_process::ADMIN_TOKEN)
            .json(&serde_json::json!({"phone": "call me"}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);

        let ok = http
            .post(kav.url("/api/customers/forget"))
            .bearer_auth(kav_process::ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let report: BTreeMap<String, u64> = ok.json().await.unwrap();
        assert_eq!(report.get("customers.deleted"), Some(&1), "{report:?}");
        assert_forgotten(backend.name, &store, &pool, &keep).await;
        kav.kill9().await;
        pool.close().await;
        backend.cleanup().await;
    }
}

#[tokio::test]
async fn retention_sweep_removes_only_what_is_older_than_its_setting() {
    for backend in backends::backends().await {
        let name = backend.name;
        let (store, pool) = seeded(&backend.url).await;
        let t0 = ManualClock::monday_noon().now_ms();
        let cfg = RetentionConfig {
            transcripts_days: 30,
            tool_traces_days: 90,
            whatsapp_bodies_days: 30,
            sweep_every_s: 3600,
        };
        // 29 days on: nothing is old enough.
        let early = store
            .sweep_retention(&RetentionPlan::at(t0 + 29 * DAY_MS, &cfg))
            .await
            .unwrap();
        assert_eq!(early.total(), 0, "{name}: {early:?}");

        // 31 days on: transcripts and WhatsApp texts go, traces (90 days) and bookings stay.
        let report = store
            .sweep_retention(&RetentionPlan::at(t0 + 31 * DAY_MS, &cfg))
            .await
            .unwrap();
        assert_eq!(report.get("calls.deleted"), 2, "{name}: {report:?}");
        assert_eq!(report.get("turns.deleted"), 2, "{name}: {report:?}");
        assert_eq!(report.get("whatsapp_messages.deleted"), 4, "{name}");
        assert_eq!(report.get("whatsapp_inbox.redacted"), 2, "{name}");
        assert_eq!(report.get("tool_traces.deleted"), 0, "{name}");
        for c in [&FORGET, &KEEP] {
            let left = found(&pool, c.traces[1]).await;
            for gone in [
                "turns.user_text",
                "conversation_messages.text",
                "whatsapp_messages.text",
                "whatsapp_inbox.payload_json",
                "whatsapp_outbound.body_json",
            ] {
                assert!(!left.contains_key(gone), "{name}: {gone} in {left:?}");
            }
            assert!(left.contains_key("appointments.customer_name"), "{left:?}");
        }
        let traces = count(&pool, "SELECT COUNT(*) FROM tool_traces WHERE $1 = $1", "x").await;
        assert!(traces > 0, "{name}");
        // Idempotent: a second sweep at the same time finds nothing more.
        let again = store
            .sweep_retention(&RetentionPlan::at(t0 + 31 * DAY_MS, &cfg))
            .await
            .unwrap();
        assert_eq!(again.total(), 0, "{name}: {again:?}");

        // 91 days on: the traces go too.
        let late = store
            .sweep_retention(&RetentionPlan::at(t0 + 91 * DAY_MS, &cfg))
            .await
            .unwrap();
        assert!(late.get("tool_traces.deleted") > 0, "{name}: {late:?}");
        assert_eq!(
            store
                .appointments_for_business(BUSINESS)
                .await
                .unwrap()
                .len(),
            2
        );
        pool.close().await;
        backend.cleanup().await;
    }
}
