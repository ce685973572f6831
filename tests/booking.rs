//! Booking agent, directly (no engine): tools, outbox, guard, offline dialog, settings cache.
//! SQLite in a temp dir; a fixed clock (Monday 2026-11-23 12:00 Asia/Jerusalem); a WhatsApp
//! sender that can be switched down and up.

use std::collections::BTreeMap;
use std::sync::Arc;

use kav::agent::offline::{OfflineBookingAgent, OfflineReply, PHONE_MAX_DIGITS};
use kav::agent::tools::{self, ToolContext};
use kav::agent::{BookingRuntime, GUARD_TRACE};
use kav::booking::guard::Evidence;
use kav::booking::outbox;
use kav::config::BookingConfig;
use kav::providers::{Agent, AgentEvent, AgentRequest, CallContext, Channel, Message, Role};
use kav::store::Store;
use kav::store::booking::OutboxStatus;
use kav::testing::clock::{ManualClock, monday_noon_ms};
use kav::testing::switchable_sender::SwitchableSender;
use serde_json::{Value, json};

const BUSINESS: &str = "biz_escape_tlv";
const CALLER: &str = "+972501234567";

struct Fixture {
    rt: Arc<BookingRuntime>,
    sender: Arc<SwitchableSender>,
    clock: ManualClock,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kav.db").display());
    let store = Store::connect(&url).await.unwrap();
    fixture_on(store, dir).await
}

async fn fixture_on(store: Store, dir: tempfile::TempDir) -> Fixture {
    let sender = Arc::new(SwitchableSender::new());
    let clock = ManualClock::monday_noon();
    let rt = BookingRuntime::new(
        store.clone(),
        sender.clone(),
        clock.clock(),
        BookingConfig::default(),
    );
    Fixture {
        rt,
        sender,
        clock,
        store,
        _dir: dir,
    }
}

fn request(
    sid: &str,
    from: Option<&str>,
    history: Vec<Message>,
    digits: bool,
    language: &str,
) -> AgentRequest {
    let mut parameters = BTreeMap::new();
    if let Some(f) = from {
        parameters.insert("From".to_string(), f.to_string());
    }
    parameters.insert("To".to_string(), "+97235550100".to_string());
    AgentRequest {
        channel: Channel::Phone,
        call: CallContext {
            call_sid: sid.into(),
            stream_sid: "MZ1".into(),
            language: language.into(),
            parameters,
        },
        turn: history.iter().filter(|m| m.role == Role::User).count() as u32,
        history,
        digits,
    }
}

/// A conversation with the offline agent through the public `Agent` interface.
struct Conversation {
    agent: OfflineBookingAgent,
    sid: String,
    from: Option<String>,
    language: String,
    history: Vec<Message>,
}

impl Conversation {
    fn new(f: &Fixture, sid: &str, from: Option<&str>, language: &str) -> Self {
        Self {
            agent: OfflineBookingAgent::new(f.rt.clone()),
            sid: sid.into(),
            from: from.map(str::to_string),
            language: language.into(),
            history: Vec::new(),
        }
    }

    async fn say(&mut self, text: &str, digits: bool) -> OfflineReply {
        self.history.push(Message {
            role: Role::User,
            text: text.into(),
            interrupted: false,
        });
        let req = request(
            &self.sid,
            self.from.as_deref(),
            self.history.clone(),
            digits,
            &self.language,
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        self.agent.respond(req, tx).await.unwrap();
        let mut reply = OfflineReply {
            text: String::new(),
            collect_digits: None,
            hangup: false,
        };
        while let Ok(ev) = rx.try_recv() {
            match ev {
                AgentEvent::TextDelta(t) => reply.text.push_str(&t),
                AgentEvent::CollectDigits { max_digits } => reply.collect_digits = Some(max_digits),
                AgentEvent::Hangup => reply.hangup = true,
            }
        }
        self.history.push(Message {
            role: Role::Assistant,
            text: reply.text.clone(),
            interrupted: false,
        });
        reply
    }
}

async fn ctx(f: &Fixture, sid: &str, from: Option<&str>) -> ToolContext {
    f.rt.turn_context(&request(sid, from, Vec::new(), false, "en-US"))
        .await
        .unwrap()
}

fn create_args(start: &str, room: &str) -> String {
    json!({"start_iso": start, "resource": room, "customer_name": "Dana Levi"}).to_string()
}

fn times(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["time_display"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn phone_booking_while_whatsapp_is_down_is_confirmed_once_after_recovery() {
    let f = fixture().await;
    f.sender.set_down(true);
    let mut c = Conversation::new(&f, "CA_down", Some(CALLER), "en-US");

    let r = c
        .say("I'd like to book tomorrow at 10 in the Dubai room", false)
        .await;
    assert!(r.text.contains("What name"), "{r:?}");
    let r = c.say("Dana", false).await;
    assert!(
        r.text.contains("Dubai room tomorrow at 10:00") && r.text.contains("Shall I book"),
        "{r:?}"
    );
    let r = c.say("yes please", false).await;
    assert_eq!(
        r.text,
        "You're booked for 2026-11-24 10:00. The details will reach you on WhatsApp shortly."
    );

    // The turns are kept under the caller's phone, where WhatsApp finds the same customer.
    let said = f
        .store
        .customer_messages(BUSINESS, CALLER, "phone", 10)
        .await
        .unwrap();
    assert_eq!(said.len(), 6, "{said:?}");
    assert_eq!(
        (said[0].role.as_str(), said[0].text.as_str()),
        ("user", "I'd like to book tomorrow at 10 in the Dubai room")
    );
    assert_eq!(said[5].role, "assistant");
    assert!(said.iter().all(|m| m.conversation_id == "CA_down"));

    let appts = f.store.appointments_for_business(BUSINESS).await.unwrap();
    assert_eq!(appts.len(), 1);
    let a = &appts[0];
    assert_eq!(
        (
            a.resource_id.as_deref(),
            a.customer_phone.as_deref(),
            a.status.as_str()
        ),
        (Some("room_dubai"), Some(CALLER), "booked")
    );
    assert!(a.customer_id.is_some(), "lead upserted and linked");
    let key = format!("confirm:{}", a.id);
    let ev = f.store.outbox_by_key(&key).await.unwrap().unwrap();
    assert_eq!((ev.status.as_str(), ev.attempts), ("pending", 1));
    assert!(f.sender.delivered().is_empty());

    // Still down at the first retry: backoff grows, nothing delivered.
    f.clock.advance(2_000);
    assert_eq!(outbox::run_once(&f.rt).await.unwrap(), 1);
    let ev = f.store.outbox_by_key(&key).await.unwrap().unwrap();
    assert_eq!((ev.status.as_str(), ev.attempts), ("pending", 2));
    // The one backoff policy: 2 s · 2 for the second retry, jittered into its upper half.
    let wait = ev.next_attempt_at_ms - f.clock.now_ms();
    assert!((2_000..=4_000).contains(&wait), "{wait}");
    // Not due yet: the worker leaves it alone.
    assert_eq!(outbox::run_once(&f.rt).await.unwrap(), 0);

    f.sender.set_down(false);
    f.clock.advance(4_000);
    assert_eq!(outbox::run_once(&f.rt).await.unwrap(), 1);
    assert_eq!(
        outbox::run_once(&f.rt).await.unwrap(),
        0,
        "delivered events are not resent"
    );
    let delivered = f.sender.delivered();
    assert_eq!(delivered.len(), 1, "one confirmation");
    assert_eq!(delivered[0].to, "972501234567");
    assert_eq!(delivered[0].idempotency_key, key);
    assert_eq!(delivered[0].phone_number_id, "100200300400500");
    assert_eq!(
        f.store.outbox_by_key(&key).await.unwrap().unwrap().status,
        OutboxStatus::Delivered
    );
    assert_eq!(f.sender.attempts(), 3);

    // Traces: every tool call, PII masked.
    let traces = f.store.tool_traces("CA_down").await.unwrap();
    let names: Vec<&str> = traces.iter().map(|t| t.tool.as_str()).collect();
    assert!(
        names.contains(&tools::FIND_SLOTS) && names.contains(&tools::CREATE),
        "{names:?}"
    );
    let create = traces.iter().find(|t| t.tool == tools::CREATE).unwrap();
    assert!(create.ok);
    assert!(
        !create.args_json.contains("501234567"),
        "{}",
        create.args_json
    );
    assert!(!create.args_json.contains("Dana"), "{}", create.args_json);
    assert!(create.args_json.contains("sha256:"), "{}", create.args_json);
    assert!(
        create.args_json.contains("[redacted]"),
        "{}",
        create.args_json
    );
}

#[tokio::test]
async fn missing_phone_is_typed_on_the_keypad_then_booked_in_hebrew() {
    let f = fixture().await;
    let mut c = Conversation::new(&f, "CA_dtmf", None, "he-IL");
    let r = c.say("אני רוצה לקבוע מחר בעשר בחדר דובאי", false).await;
    assert!(r.text.contains("שם"), "{r:?}");
    let r = c.say("דנה", false).await;
    assert_eq!(r.collect_digits, Some(PHONE_MAX_DIGITS), "{r:?}");
    assert!(r.text.contains("סולמית"), "{r:?}");
    let r = c.say("0521112222", true).await;
    assert!(
        r.text.contains("לאישור") && r.text.contains("דובאי"),
        "{r:?}"
    );
    let r = c.say("כן", false).await;
    assert_eq!(
        r.text,
        "קבעתי לך תור ל-2026-11-24 10:00, ושלחתי אישור בוואטסאפ."
    );
    let appts = f.store.appointments_for_business(BUSINESS).await.unwrap();
    assert_eq!(appts.len(), 1);
    assert_eq!(appts[0].customer_phone.as_deref(), Some("+972521112222"));
    assert_eq!(f.sender.delivered().len(), 1);
    assert_eq!(f.sender.delivered()[0].to, "972521112222");
}

#[tokio::test]
async fn create_without_any_phone_says_need_phone() {
    let f = fixture().await;
    let ctx = ctx(&f, "CA_np", None).await;
    let out = ctx
        .call(tools::CREATE, &create_args("2026-11-24T10:00", "Dubai"))
        .await;
    assert!(!out.ok);
    assert_eq!(out.error(), Some("need_phone"));
    assert!(out.value["reason"].as_str().unwrap().contains("keypad"));
    assert!(
        f.store
            .appointments_for_business(BUSINESS)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn off_grid_time_gets_the_two_nearest_valid_times() {
    let f = fixture().await;
    let ctx = ctx(&f, "CA_grid", Some(CALLER)).await;
    let out = ctx
        .call(tools::CREATE, &create_args("2026-11-24T10:15", "Dubai"))
        .await;
    assert_eq!(out.error(), Some("off_grid"), "{:?}", out.value);
    assert_eq!(times(&out.value, "suggestions"), ["10:00", "11:00"]);
    // Through the dialog: the caller hears the alternatives.
    let mut c = Conversation::new(&f, "CA_grid2", Some(CALLER), "en-US");
    let r = c.say("tomorrow at 10:15 in the Dubai room", false).await;
    assert!(r.text.contains("10:00 or 11:00"), "{r:?}");
    let r = c.say("11", false).await;
    assert!(r.text.contains("What name"), "{r:?}");
}

#[tokio::test]
async fn full_slot_offers_alternatives() {
    let f = fixture().await;
    let other = ctx(&f, "CA_first", Some("+972509999999")).await;
    assert!(
        other
            .call(tools::CREATE, &create_args("2026-11-24T10:00", "Dubai"))
            .await
            .ok
    );

    let ctx = ctx(&f, "CA_full", Some(CALLER)).await;
    let out = ctx
        .call(tools::CREATE, &create_args("2026-11-24T10:00", "Dubai"))
        .await;
    assert_eq!(out.error(), Some("full"), "{:?}", out.value);
    assert_eq!(times(&out.value, "suggestions"), ["11:00", "12:00"]);
    // Another room at the same time is still free.
    let slots = ctx
        .call(
            tools::FIND_SLOTS,
            &json!({"date": "2026-11-24"}).to_string(),
        )
        .await;
    let ten = &slots.value["slots"][0];
    assert_eq!(ten["time_display"], "10:00");
    assert_eq!(ten["resources"], json!(["Barcelona", "New York"]));

    let mut c = Conversation::new(&f, "CA_full2", Some(CALLER), "en-US");
    let r = c.say("tomorrow at 10 in the Dubai room", false).await;
    assert!(
        r.text.contains("fully booked") && r.text.contains("11:00 or 12:00"),
        "{r:?}"
    );
}

#[tokio::test]
async fn without_a_real_whatsapp_sender_nobody_is_told_a_message_was_sent() {
    // The no-keys set-up: confirmations go to the log stand-in.
    let f = fixture().await;
    let log = Arc::new(kav::channels::whatsapp::graph::LogSender::new(false));
    let rt = BookingRuntime::new(
        f.store.clone(),
        log.clone(),
        f.clock.clock(),
        BookingConfig::default(),
    );
    let req = request("CA_log", Some(CALLER), Vec::new(), false, "en-US");
    let ctx = rt.turn_context(&req).await.unwrap();
    let booked = ctx
        .call(tools::CREATE, &create_args("2026-11-24T12:00", "Dubai"))
        .await;
    assert!(booked.ok, "{:?}", booked.value);
    assert_eq!(booked.value["whatsapp_status"], "pending");
    assert_eq!(log.sent().len(), 1, "the confirmation is kept in the log");
    let again = ctx
        .call(tools::CREATE, &create_args("2026-11-24T12:00", "Dubai"))
        .await;
    assert_eq!(
        (&again.value["duplicate"], &again.value["whatsapp_status"]),
        (&json!(true), &json!("pending"))
    );
    let send = ctx
        .call(
            tools::WHATSAPP_SEND,
            &json!({"text": "see you"}).to_string(),
        )
        .await;
    assert!(!send.ok);
    assert_eq!(send.value["error"], "not_configured");

    // Through the offline dialog: booked, and told the details will follow.
    let mut c = Conversation::new(&f, "CA_log2", Some(CALLER), "en-US");
    c.agent = kav::agent::offline::OfflineBookingAgent::new(rt.clone());
    c.say("tomorrow at 14:00 in the Barcelona room", false)
        .await;
    c.say("Dana", false).await;
    let r = c.say("yes", false).await;
    assert_eq!(
        r.text,
        "You're booked for 2026-11-24 14:00. The details will follow."
    );
}

#[tokio::test]
async fn identical_request_within_five_minutes_is_one_appointment() {
    let f = fixture().await;
    let ctx = ctx(&f, "CA_dup", Some(CALLER)).await;
    let first = ctx
        .call(tools::CREATE, &create_args("2026-11-24T12:00", "New York"))
        .await;
    assert!(first.ok, "{:?}", first.value);
    f.clock.advance(60_000);
    let second = ctx
        .call(tools::CREATE, &create_args("2026-11-24T12:00", "New York"))
        .await;
    assert!(second.ok, "{:?}", second.value);
    assert_eq!(second.value["duplicate"], true);
    assert_eq!(
        first.value["appointment_id"],
        second.value["appointment_id"]
    );
    assert_eq!(second.value["whatsapp_status"], "sent");
    assert_eq!(
        f.store
            .appointments_for_business(BUSINESS)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(f.sender.delivered().len(), 1, "one confirmation");
    // After the window the same request is a new booking attempt: the slot is full.
    f.clock.advance(5 * 60_000);
    let third = ctx
        .call(tools::CREATE, &create_args("2026-11-24T12:00", "New York"))
        .await;
    assert_eq!(third.error(), Some("full"));
}

#[tokio::test]
async fn every_tool_failure_is_a_value_with_error_and_reason() {
    let f = fixture().await;
    let ctx = ctx(&f, "CA_bad", Some(CALLER)).await;
    for (tool, args) in [
        (tools::FIND_SLOTS, r#"{"date":"2026-11-24","extra":1}"#),
        (tools::FIND_SLOTS, r#"{"date":"someday"}"#),
        (tools::FIND_SLOTS, r#"{"date":"31.2"}"#),
        (tools::FIND_SLOTS, r#"{"date":"2020-01-01"}"#),
        (tools::CREATE, &create_args("2020-01-01T10:00", "Dubai")),
        (tools::CREATE, &create_args("tomorrow at 6", "Dubai")),
        (tools::FIND_SLOTS, "not json"),
        (tools::CREATE, r#"{"start_iso":"2026-11-24T10:00"}"#),
        (tools::CREATE, &create_args("2026-11-24T10:00", "Atlantis")),
        (tools::CANCEL, r#"{"appointment_id":"nope"}"#),
        (tools::BUSINESS_INFO, r#"{"topic":"weather"}"#),
        ("calendar_teleport", "{}"),
    ] {
        let out = ctx.call(tool, args).await;
        assert!(!out.ok, "{tool} {args}");
        assert_eq!(out.value["ok"], false);
        assert!(
            out.value["error"].is_string() && out.value["reason"].is_string(),
            "{:?}",
            out.value
        );
    }
    let traces = f.store.tool_traces("CA_bad").await.unwrap();
    assert_eq!(traces.len(), 12);
    assert!(traces.iter().all(|t| !t.ok && t.error.is_some()));
}

/// The model's date/time arguments go through the dialog's parser: never silently shifted.
#[tokio::test]
async fn tool_arguments_are_validated_by_the_temporal_parser_and_refusals_carry_reasons() {
    let f = fixture().await; // Monday 2026-11-23 12:00
    let ctx = ctx(&f, "CA_args", Some(CALLER)).await;
    let create = |start: &str| create_args(start, "Dubai");
    let cases = [
        ("today 06:00", "past_time"),
        ("2026-11-23T09:00", "past_time"),
        ("tomorrow at 6", "ambiguous_time"),
        ("2026-11-28T11:00", "outside_hours"), // Saturday opens at 19:00
        ("2026-11-27T20:00", "outside_hours"), // Friday closes at 15:00
        ("2026-11-23T12:00", "too_soon"),
        ("2027-02-20T19:00", "outside_window"),
        ("2026-11-24T10:15", "off_grid"),
        ("this weekend at 8pm", "ambiguous_date"), // Friday or Saturday: ask, never guess
        ("next week at 8pm", "ambiguous_date"),
        ("in half an hour", "too_soon"), // 12:30: off the grid, but the notice is the reason
    ];
    for (start, error) in cases {
        let out = ctx.call(tools::CREATE, &create(start)).await;
        assert_eq!(out.error(), Some(error), "{start}: {:?}", out.value);
        assert!(out.value["reason"].is_string());
    }
    let out = ctx.call(tools::CREATE, &create("tomorrow at 6pm")).await;
    assert!(out.ok, "{:?}", out.value);
    assert_eq!(out.value["start_iso"], "2026-11-24T18:00:00+02:00");
    let slots = ctx
        .call(
            tools::FIND_SLOTS,
            &json!({"date": "the day after tomorrow"}).to_string(),
        )
        .await;
    assert!(slots.ok, "{:?}", slots.value);
    assert!(
        slots.value["slots"][0]["start_iso"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-25")
    );
}

#[tokio::test]
async fn customer_lists_moves_and_cancels_own_booking_only() {
    let f = fixture().await;
    let mine = ctx(&f, "CA_own", Some(CALLER)).await;
    let made = mine
        .call(tools::CREATE, &create_args("2026-11-24T14:00", "Barcelona"))
        .await;
    let id = made.value["appointment_id"].as_str().unwrap().to_string();
    let list = mine.call(tools::LIST, "{}").await;
    assert_eq!(list.value["appointments"][0]["appointment_id"], id.as_str());
    let stranger = ctx(&f, "CA_other", Some("+972508888888")).await;
    let denied = stranger
        .call(tools::CANCEL, &json!({"appointment_id": id}).to_string())
        .await;
    assert_eq!(denied.error(), Some("not_found"));
    let moved = mine
        .call(
            tools::UPDATE,
            &json!({"appointment_id": id, "start_iso": "2026-11-24T15:00"}).to_string(),
        )
        .await;
    assert!(moved.ok, "{:?}", moved.value);
    assert_eq!(moved.value["time_display"], "15:00");
    assert!(
        mine.call(tools::CANCEL, &json!({"appointment_id": id}).to_string())
            .await
            .ok
    );
    assert!(
        mine.call(tools::LIST, "{}").await.value["appointments"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_lying_reply_is_replaced_and_traced() {
    let f = fixture().await;
    let ctx = ctx(&f, "CA_lie", Some(CALLER)).await;
    let said =
        f.rt.guard_reply(
            &ctx,
            "Done! I've booked the Dubai room for tomorrow at 10.",
            Evidence::default(),
        )
        .await;
    assert!(said.contains("not booked"), "{said}");
    let said_he =
        f.rt.guard_reply(&ctx, "שלחתי לך אישור בוואטסאפ.", Evidence::default())
            .await;
    assert!(said_he.contains("עדיין לא שלחתי"), "{said_he}");
    let traces = f.store.tool_traces("CA_lie").await.unwrap();
    assert_eq!(traces.len(), 2);
    assert!(traces.iter().all(|t| t.tool == GUARD_TRACE && !t.ok));
    assert!(traces[0].reason.as_deref().unwrap().contains("booked"));
    // With the tool's success the same words pass.
    let evidence = Evidence {
        booked: true,
        ..Evidence::default()
    };
    let ok =
        f.rt.guard_reply(&ctx, "You're booked for tomorrow at 10.", evidence)
            .await;
    assert_eq!(ok, "You're booked for tomorrow at 10.");
}

#[tokio::test]
async fn settings_are_cached_per_business_and_channel_and_rebuilt_on_change() {
    let f = fixture().await;
    let s1 = f.rt.settings(BUSINESS, Channel::Phone).await.unwrap();
    let s2 = f.rt.settings(BUSINESS, Channel::Phone).await.unwrap();
    assert!(Arc::ptr_eq(&s1, &s2));
    assert_eq!(f.rt.settings_builds(), 1);
    assert!(s1.instructions.starts_with(kav::agent::SYSTEM_RULES));
    assert!(s1.instructions.contains("בטלפון"), "phone prompt");
    assert_eq!((s1.max_tokens, s1.first_reply_max_words), (60, 24));
    let wa = f.rt.settings(BUSINESS, Channel::Whatsapp).await.unwrap();
    assert!(
        wa.instructions.contains("Escape TLV, מתחם"),
        "falls back to the default prompt"
    );
    assert_eq!(wa.max_tokens, 120);
    assert_eq!(f.rt.settings_builds(), 2);

    f.store
        .set_business_prompt(
            BUSINESS,
            Some("phone"),
            "Say shalom first.",
            monday_noon_ms() + 1,
        )
        .await
        .unwrap();
    let s3 = f.rt.settings(BUSINESS, Channel::Phone).await.unwrap();
    assert_eq!(f.rt.settings_builds(), 3);
    assert!(s3.instructions.ends_with("Say shalom first."));
    // Business text cannot replace the fixed rules: they come first, always.
    assert!(s3.instructions.starts_with(kav::agent::SYSTEM_RULES));
}

#[tokio::test]
async fn business_is_resolved_by_parameter_number_or_default() {
    let f = fixture().await;
    let mut req = request("CA_res", None, Vec::new(), false, "he-IL");
    assert_eq!(f.rt.resolve_business(&req).await.unwrap(), BUSINESS);
    req.call
        .parameters
        .insert("To".into(), "+15550000000".into());
    assert_eq!(
        f.rt.resolve_business(&req).await.unwrap(),
        BUSINESS,
        "default"
    );
    req.call
        .parameters
        .insert("business_id".into(), "biz_other".into());
    assert_eq!(f.rt.resolve_business(&req).await.unwrap(), "biz_other");
    let mut wa = request("wa_1", None, Vec::new(), false, "he-IL");
    wa.channel = Channel::Whatsapp;
    wa.call
        .parameters
        .insert("phone_number_id".into(), "100200300400500".into());
    assert_eq!(f.rt.resolve_business(&wa).await.unwrap(), BUSINESS);
    assert!(
        f.rt.turn_context(&req).await.is_err(),
        "unknown business is an error, not a panic"
    );
}

#[tokio::test]
async fn call_ended_stores_a_summary_with_the_booking() {
    let f = fixture().await;
    let mut c = Conversation::new(&f, "CA_sum", Some(CALLER), "en-US");
    c.say("tomorrow at 10 in the Dubai room", false).await;
    c.say("my name is Dana", false).await;
    let r = c.say("yes", false).await;
    assert!(r.text.contains("booked"), "{r:?}");
    let req = request("CA_sum", Some(CALLER), Vec::new(), false, "en-US");
    f.rt.conversation_ended(&req).await.unwrap();
    f.rt.conversation_ended(&req).await.unwrap(); // idempotent: one event per call
    assert_eq!(outbox::run_once(&f.rt).await.unwrap(), 1);
    let summary = f.store.summary("CA_sum").await.unwrap().unwrap();
    let id = &f.store.appointments_for_business(BUSINESS).await.unwrap()[0].id;
    assert!(
        summary.contains(id.as_str()) && summary.contains("3 customer messages"),
        "{summary}"
    );
    assert!(summary.contains("2026-11-24 10:00"), "{summary}");
}

#[tokio::test]
async fn business_info_answers_from_documents() {
    let f = fixture().await;
    let mut c = Conversation::new(&f, "CA_info", Some(CALLER), "en-US");
    let r = c.say("How much does it cost?", false).await;
    assert!(r.text.contains("300 ILS"), "{r:?}");
    let r = c.say("כמה עולה?", false).await;
    assert!(r.text.contains("300 ש\"ח"), "{r:?}");
}

/// The same booking flow on PostgreSQL when `KAV_TEST_POSTGRES_URL` is set (CI starts one).
#[tokio::test]
async fn booking_tables_work_on_postgres() {
    let Ok(url) = std::env::var("KAV_TEST_POSTGRES_URL") else {
        eprintln!("KAV_TEST_POSTGRES_URL not set; skipping the PostgreSQL booking test");
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    let f = fixture_on(store, tempfile::tempdir().unwrap()).await;
    // Unique per run: the database is shared between runs.
    let sid = format!("CA_pg_{}", std::process::id());
    let phone = format!("+97250{:07}", std::process::id() % 10_000_000);
    let ctx = ctx(&f, &sid, Some(&phone)).await;
    let day = 1 + (std::process::id() % 20) as i64;
    let date = jiff::civil::date(2026, 11, 23)
        .checked_add(jiff::Span::new().days(day))
        .unwrap();
    let slots = ctx
        .call(
            tools::FIND_SLOTS,
            &json!({"date": date.to_string()}).to_string(),
        )
        .await;
    assert!(slots.ok, "{:?}", slots.value);
    let Some(slot) = slots.value["slots"].as_array().unwrap().first().cloned() else {
        return; // closed that day or already full from earlier runs
    };
    let room = slot["resources"][0].as_str().unwrap();
    let args = json!({"start_iso": slot["start_iso"], "resource": room, "customer_name": "PG"})
        .to_string();
    let a = ctx.call(tools::CREATE, &args).await;
    assert!(a.ok, "{:?}", a.value);
    let b = ctx.call(tools::CREATE, &args).await;
    assert_eq!(a.value["appointment_id"], b.value["appointment_id"]);
    assert!(!f.store.tool_traces(&sid).await.unwrap().is_empty());
    // Messages by customer phone (migration 0005) on PostgreSQL.
    f.rt.record_turn(&ctx, "hello from postgres", "hi").await;
    let said = f
        .store
        .customer_messages(BUSINESS, &phone, "phone", 10)
        .await
        .unwrap();
    let texts: Vec<&str> = said.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["hello from postgres", "hi"]);
}

/// A `whatsapp.send` outbox event with idempotency key `key`, due at `now`.
fn send_event(key: &str, now: i64) -> kav::store::booking::NewOutboxEvent {
    let payload = outbox::SendPayload {
        message: kav::providers::OutboundMessage {
            phone_number_id: "100200300400500".into(),
            to: "972501234567".into(),
            body: kav::providers::OutboundBody::Text { text: "hi".into() },
            idempotency_key: key.into(),
        },
        template_fallback: None,
    };
    kav::store::booking::NewOutboxEvent {
        business_id: BUSINESS.into(),
        kind: outbox::KIND_WHATSAPP_SEND.into(),
        payload_json: serde_json::to_string(&payload).unwrap(),
        idempotency_key: key.into(),
        not_before_ms: now,
    }
}

/// A sender whose sends never answer: a worker stuck in one is as good as dead.
struct HangingSender;

impl kav::providers::WhatsAppSender for HangingSender {
    fn name(&self) -> &'static str {
        "hanging"
    }
    fn send(
        &self,
        _: kav::providers::OutboundMessage,
    ) -> kav::providers::BoxFuture<
        'static,
        Result<kav::providers::SendReceipt, kav::providers::SendError>,
    > {
        Box::pin(std::future::pending())
    }
}

async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}", dir.path().join("kav.db").display());
    Store::connect(&url).await.unwrap()
}

#[tokio::test]
async fn a_worker_that_dies_mid_delivery_leaves_the_event_to_another_after_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let now = monday_noon_ms();
    let clock = ManualClock::new(now);
    store
        .enqueue(&send_event("k-dies", now), now)
        .await
        .unwrap();
    let stuck = BookingRuntime::new(
        store.clone(),
        Arc::new(HangingSender),
        clock.clock(),
        BookingConfig::default(),
    );
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let worker = outbox::spawn_worker(stuck, stop_rx);
    // Once the worker holds the lease, the event is no longer due for anyone else.
    for _ in 0..500 {
        if store.outbox_due(now, 10).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        store.outbox_due(now, 10).await.unwrap().is_empty(),
        "leased"
    );
    worker.abort(); // dies mid-send

    let sender = Arc::new(SwitchableSender::new());
    let other = BookingRuntime::new(
        store.clone(),
        sender.clone(),
        clock.clock(),
        BookingConfig::default(),
    );
    clock.set(now + outbox::LEASE_MS - 1);
    assert_eq!(outbox::run_once(&other).await.unwrap(), 0, "still leased");
    clock.set(now + outbox::LEASE_MS);
    assert_eq!(outbox::run_once(&other).await.unwrap(), 1, "lease ran out");
    assert_eq!(sender.delivered().len(), 1);
    let row = store.outbox_by_key("k-dies").await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("delivered", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_over_one_outbox_deliver_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let clock = kav::clock::system_clock();
    let now = clock();
    let keys: Vec<String> = (0..40).map(|i| format!("k-{i:02}")).collect();
    for key in &keys {
        store.enqueue(&send_event(key, now), now).await.unwrap();
    }
    let sender = Arc::new(SwitchableSender::new());
    let config = BookingConfig {
        outbox_poll_ms: 10,
        ..BookingConfig::default()
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let rt =
                BookingRuntime::new(store.clone(), sender.clone(), clock.clone(), config.clone());
            outbox::spawn_worker(rt, stop_rx.clone())
        })
        .collect();
    for _ in 0..1_000 {
        let rows = store.outbox_all().await.unwrap();
        if rows.iter().all(|r| r.status == OutboxStatus::Delivered) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let rows = store.outbox_all().await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.status == OutboxStatus::Delivered && r.attempts == 1),
        "{rows:?}"
    );
    let mut sent: Vec<String> = sender
        .delivered()
        .into_iter()
        .map(|m| m.idempotency_key)
        .collect();
    sent.sort();
    assert_eq!(sent, keys, "each event sent once, none twice");
}

#[tokio::test]
async fn an_outbox_event_is_leased_to_one_worker_and_dies_after_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kav.db").display());
    let store = Store::connect(&url).await.unwrap();
    let sender = Arc::new(SwitchableSender::new());
    let now = monday_noon_ms();
    let clock = ManualClock::new(now);
    let config = BookingConfig {
        outbox_max_attempts: 2,
        ..BookingConfig::default()
    };
    let rt = BookingRuntime::new(store.clone(), sender.clone(), clock.clock(), config);
    let ev = send_event("k1", now);
    store.enqueue(&ev, now).await.unwrap();
    store.enqueue(&ev, now).await.unwrap(); // same key: still one event
    assert_eq!(store.outbox_all().await.unwrap().len(), 1);
    let id = store.outbox_by_key("k1").await.unwrap().unwrap().id;
    // A second worker cannot take a leased event.
    assert!(
        store
            .outbox_claim(&id, now, outbox::LEASE_MS)
            .await
            .unwrap()
    );
    assert!(
        !store
            .outbox_claim(&id, now + 1, outbox::LEASE_MS)
            .await
            .unwrap()
    );
    assert_eq!(
        outbox::run_once(&rt).await.unwrap(),
        0,
        "leased events are skipped"
    );
    // Lease expired: delivery proceeds; WhatsApp is down, so two attempts then dead.
    clock.set(now + outbox::LEASE_MS);
    sender.set_down(true);
    assert_eq!(outbox::run_once(&rt).await.unwrap(), 1);
    clock.advance(60_000);
    assert_eq!(outbox::run_once(&rt).await.unwrap(), 1);
    let row = store.outbox_by_key("k1").await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("dead", 2));
    assert!(row.last_error.unwrap().contains("switched down"));
    clock.advance(600_000);
    sender.set_down(false);
    assert_eq!(
        outbox::run_once(&rt).await.unwrap(),
        0,
        "dead events are not retried"
    );
    assert!(sender.delivered().is_empty());
}

#[tokio::test]
async fn whatsapp_customer_is_asked_to_write_the_phone_not_to_type_digits() {
    let f = fixture().await;
    let agent = OfflineBookingAgent::new(f.rt.clone());
    let mut history = Vec::new();
    let mut last = None;
    for text in ["tomorrow at 10 in the Dubai room", "Dana"] {
        history.push(Message {
            role: Role::User,
            text: text.into(),
            interrupted: false,
        });
        let mut req = request("wa_thread_1", None, history.clone(), false, "en-US");
        req.channel = Channel::Whatsapp;
        req.call
            .parameters
            .insert("phone_number_id".into(), "100200300400500".into());
        last = Some(agent.turn(&req).await.unwrap());
    }
    let last = last.unwrap();
    assert_eq!(last.text, "What is your phone number?");
    assert_eq!(last.collect_digits, None);
}

#[tokio::test]
async fn trace_log_pii_keeps_names_and_phones_in_traces() {
    let f = fixture().await;
    f.store
        .set_business_policy(BUSINESS, true, true, monday_noon_ms() + 1)
        .await
        .unwrap();
    let ctx = ctx(&f, "CA_pii", Some(CALLER)).await;
    let args = json!({"start_iso": "2026-11-24T16:00", "resource": "Dubai",
                      "customer_name": "Dana Levi", "customer_phone": "0501234567"});
    assert!(ctx.call(tools::CREATE, &args.to_string()).await.ok);
    let t = &f.store.tool_traces("CA_pii").await.unwrap()[0];
    assert!(
        t.args_json.contains("Dana Levi") && t.args_json.contains("0501234567"),
        "{}",
        t.args_json
    );
}
