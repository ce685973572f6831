//! The LLM booking agent against the scripted fake OpenAI SSE server (`kav::testing::fake_openai`)
//! through the real `OpenAiChat` client: scripted tool calls run our real tools over SQLite; the
//! spoken reply is what passed the truthfulness guard.

use std::collections::BTreeMap;
use std::sync::Arc;

use kav::agent::llm::BookingAgent;
use kav::agent::{BookingRuntime, GUARD_TRACE};
use kav::booking::outbox;
use kav::config::{BookingConfig, LlmConfig};
use kav::providers::openai::OpenAiChat;
use kav::providers::{
    Agent, AgentEvent, AgentRequest, CallContext, Channel, ChatModel, Message, Role, ToolCall,
};
use kav::store::Store;
use kav::testing::clock::ManualClock;
use kav::testing::fake_openai::{FakeOpenAi, FakeReply};
use kav::testing::switchable_sender::SwitchableSender;
use serde_json::{Value, json};

const BUSINESS: &str = "biz_escape_tlv";
const CALLER: &str = "+972501234567";

struct Fixture {
    rt: Arc<BookingRuntime>,
    sender: Arc<SwitchableSender>,
    clock: ManualClock,
    store: Store,
    fake: FakeOpenAi,
    agent: BookingAgent,
    _dir: tempfile::TempDir,
}

async fn fixture(script: Vec<FakeReply>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kav.db").display());
    let store = Store::connect(&url).await.unwrap();
    let sender = Arc::new(SwitchableSender::new());
    let clock = ManualClock::monday_noon();
    let config = BookingConfig {
        llm_timeout_ms: 1_500,
        ..BookingConfig::default()
    };
    let rt = BookingRuntime::new(store.clone(), sender.clone(), clock.clock(), config);
    let fake = FakeOpenAi::start(script).await;
    let llm = LlmConfig {
        base_url: fake.base_url(),
        retries: 0,
        ..LlmConfig::default()
    };
    let model: Arc<dyn ChatModel> = Arc::new(OpenAiChat::new(&llm, None).unwrap());
    let agent = BookingAgent::new(rt.clone(), model);
    Fixture {
        rt,
        sender,
        clock,
        store,
        fake,
        agent,
        _dir: dir,
    }
}

fn call(id: &str, name: &str, args: Value) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.to_string(),
    }
}

#[derive(Debug, Default)]
struct Heard {
    text: String,
    collect_digits: Option<u8>,
}

async fn turn(f: &Fixture, sid: &str, from: Option<&str>, user: &[&str]) -> Heard {
    turn_on(&f.agent, sid, from, user).await
}

async fn turn_on(agent: &BookingAgent, sid: &str, from: Option<&str>, user: &[&str]) -> Heard {
    let history = user.iter().map(|t| message(Role::User, t)).collect();
    respond(agent, sid, from, history).await
}

fn message(role: Role, text: &str) -> Message {
    Message {
        role,
        text: text.to_string(),
        interrupted: false,
    }
}

/// One turn whose request carries `history` (ending with the user's message).
async fn respond(
    agent: &BookingAgent,
    sid: &str,
    from: Option<&str>,
    history: Vec<Message>,
) -> Heard {
    let mut parameters = BTreeMap::new();
    if let Some(from) = from {
        parameters.insert("From".to_string(), from.to_string());
    }
    let request = AgentRequest {
        channel: Channel::Phone,
        call: CallContext {
            call_sid: sid.into(),
            stream_sid: "MZ1".into(),
            language: "en-US".into(),
            parameters,
        },
        turn: history.iter().filter(|m| m.role == Role::User).count() as u32,
        history,
        digits: false,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    agent.respond(request, tx).await.unwrap();
    let mut heard = Heard::default();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            AgentEvent::TextDelta(t) => heard.text.push_str(&t),
            AgentEvent::CollectDigits { max_digits } => heard.collect_digits = Some(max_digits),
            AgentEvent::Hangup => {}
        }
    }
    heard
}

/// The tool messages the agent sent back to the model, in order.
fn tool_results(f: &Fixture) -> Vec<Value> {
    f.fake
        .requests()
        .iter()
        .flat_map(|r| r["messages"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["role"] == "tool")
        .map(|m| serde_json::from_str(m["content"].as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn llm_books_while_whatsapp_is_down_and_confirmation_arrives_after_recovery() {
    let create =
        json!({"start_iso": "2026-11-24T10:00", "resource": "Dubai", "customer_name": "Dana"});
    let f = fixture(vec![
        FakeReply::tool_calls(vec![call("c1", "calendar_create_appointment", create)], 3),
        FakeReply::text(
            "You're booked for tomorrow at 10:00 in the Dubai room. The details will reach you on WhatsApp shortly.",
            7,
        ),
    ])
    .await;
    f.sender.set_down(true);
    let heard = turn(
        &f,
        "CA_llm1",
        Some(CALLER),
        &["tomorrow at 10 in the Dubai room, Dana, yes"],
    )
    .await;
    assert_eq!(
        heard.text,
        "You're booked for tomorrow at 10:00 in the Dubai room. The details will reach you on WhatsApp shortly."
    );
    let results = tool_results(&f);
    assert_eq!(results[0]["ok"], true, "{results:?}");
    assert_eq!(results[0]["whatsapp_status"], "failed");
    // The request carried the business rules, the tools and the phone channel limits.
    let first = &f.fake.requests()[0];
    assert!(
        first["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with(kav::agent::SYSTEM_RULES)
    );
    assert_eq!(
        first["max_tokens"]
            .as_u64()
            .or(first["max_completion_tokens"].as_u64()),
        Some(60)
    );
    assert!(first["tools"].as_array().unwrap().len() >= 8);

    f.sender.set_down(false);
    f.clock.advance(10_000);
    outbox::run_once(&f.rt).await.unwrap();
    outbox::run_once(&f.rt).await.unwrap();
    assert_eq!(f.sender.delivered().len(), 1);
    assert_eq!(
        f.store
            .appointments_for_business(BUSINESS)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_reply_claiming_a_booking_without_the_tool_is_corrected() {
    let f = fixture(vec![FakeReply::text(
        "Sure! I've booked the Dubai room for you tomorrow at 10. See you then!",
        5,
    )])
    .await;
    let heard = turn(
        &f,
        "CA_lie",
        Some(CALLER),
        &["book the Dubai room tomorrow at 10"],
    )
    .await;
    // "Sure!" was spoken at once; the claim and what followed it were replaced.
    assert_eq!(
        heard.text,
        "Sure! I have not booked anything yet. Shall I check the available times and book it for you?"
    );
    assert!(
        f.store
            .appointments_for_business(BUSINESS)
            .await
            .unwrap()
            .is_empty()
    );
    let traces = f.store.tool_traces("CA_lie").await.unwrap();
    assert_eq!(traces.len(), 1);
    assert_eq!(
        (traces[0].tool.as_str(), traces[0].ok),
        (GUARD_TRACE, false)
    );
}

#[tokio::test]
async fn a_hebrew_availability_claim_without_find_slots_is_corrected() {
    let f = fixture(vec![FakeReply::text("בטח. מחר בעשר פנוי בחדר דובאי.", 4)]).await;
    let heard = turn(&f, "CA_lie_he", Some(CALLER), &["יש מקום מחר בעשר?"]).await;
    // The claim-free first sentence is spoken at once; the false claim is replaced.
    assert_eq!(
        heard.text,
        "בטח. אני צריך לבדוק קודם ביומן. איזה יום מתאים לך?"
    );
}

/// The model asks for tomorrow's (2026-11-24) slots in the Dubai room.
fn find_dubai_tomorrow() -> FakeReply {
    FakeReply::tool_calls(
        vec![call(
            "c1",
            "calendar_find_slots",
            json!({"date": "2026-11-24", "resource": "Dubai"}),
        )],
        2,
    )
}

#[tokio::test]
async fn find_slots_then_an_availability_claim_is_spoken() {
    let f = fixture(vec![
        find_dubai_tomorrow(),
        FakeReply::text(
            "Tomorrow at 10:00 is available in the Dubai room. What name should I use?",
            6,
        ),
    ])
    .await;
    let heard = turn(
        &f,
        "CA_free",
        Some(CALLER),
        &["is the Dubai room free tomorrow at 10?"],
    )
    .await;
    assert_eq!(
        heard.text,
        "Tomorrow at 10:00 is available in the Dubai room. What name should I use?"
    );
    let slots = &tool_results(&f)[0]["slots"];
    assert_eq!(slots[0]["time_display"], "10:00");
}

/// The system message of each request the model received, in order.
fn system_prompts(f: &Fixture) -> Vec<String> {
    f.fake
        .requests()
        .iter()
        .map(|r| {
            r["messages"][0]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn the_next_turn_sees_what_earlier_tools_returned() {
    let f = fixture(vec![
        find_dubai_tomorrow(),
        FakeReply::text("10:00 is available in the Dubai room. Shall I book it?", 3),
        FakeReply::text("What name should I use?", 2),
        FakeReply::text("Hello, how can I help?", 2),
        FakeReply::text("Hello again, how can I help?", 2),
    ])
    .await;
    turn(&f, "CA_mem", Some(CALLER), &["Dubai room tomorrow at 10?"]).await;
    turn(
        &f,
        "CA_mem",
        Some(CALLER),
        &["Dubai room tomorrow at 10?", "yes please"],
    )
    .await;
    let prompts = system_prompts(&f);
    assert_eq!(prompts.len(), 3);
    assert!(!prompts[0].contains("earlier turns"), "{}", prompts[0]);
    // The second turn's model knows the slot it offered, not only its own words about it.
    let earlier = prompts[2]
        .split_once("earlier turns")
        .expect("tool memory in the prompt")
        .1;
    assert!(earlier.contains("calendar_find_slots"), "{earlier}");
    assert!(earlier.contains(r#""resource":"Dubai""#), "{earlier}");
    assert!(earlier.contains(r#""time_display":"10:00""#), "{earlier}");
    assert!(earlier.contains("\"ok\":true"), "{earlier}");

    // A finished call forgets; another call never sees this one's results.
    turn(&f, "CA_other", Some(CALLER), &["hello"]).await;
    assert!(!system_prompts(&f)[3].contains("earlier turns"));
    let ctx = CallContext {
        call_sid: "CA_mem".into(),
        stream_sid: "MZ1".into(),
        language: "en-US".into(),
        parameters: BTreeMap::new(),
    };
    f.agent.call_ended(&ctx, Channel::Phone);
    // Forgetting is a database write in the background (`call_ended` cannot wait).
    for _ in 0..100 {
        let saved = f.store.conversation_state("CA_mem", "tool_memory").await;
        if saved.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    turn(&f, "CA_mem", Some(CALLER), &["hello"]).await;
    let prompts = system_prompts(&f);
    assert_eq!(prompts.len(), 5);
    assert!(!prompts[4].contains("earlier turns"), "{}", prompts[4]);
}

/// Tool memory lives in the database: a second instance (its own runtime, store pool and model
/// client on the same database) taking the next turn sees what the first instance's tools returned.
#[tokio::test]
async fn another_instance_sees_the_tool_memory() {
    let f = fixture(vec![
        find_dubai_tomorrow(),
        FakeReply::text("10:00 is available in the Dubai room. Shall I book it?", 3),
        FakeReply::text("What name should I use?", 2),
    ])
    .await;
    turn(&f, "CA_inst", Some(CALLER), &["Dubai room tomorrow at 10?"]).await;

    let url = format!("sqlite://{}", f._dir.path().join("kav.db").display());
    let store2 = Store::connect(&url).await.unwrap();
    let rt2 = BookingRuntime::new(
        store2,
        f.sender.clone(),
        f.clock.clock(),
        f.rt.config.clone(),
    );
    let llm = LlmConfig {
        base_url: f.fake.base_url(),
        retries: 0,
        ..LlmConfig::default()
    };
    let model2: Arc<dyn ChatModel> = Arc::new(OpenAiChat::new(&llm, None).unwrap());
    let second = BookingAgent::new(rt2, model2);
    turn_on(
        &second,
        "CA_inst",
        Some(CALLER),
        &["Dubai room tomorrow at 10?", "yes please"],
    )
    .await;
    let prompts = system_prompts(&f);
    assert_eq!(prompts.len(), 3);
    let earlier = prompts[2]
        .split_once("earlier turns")
        .expect("the second instance has the tool memory")
        .1;
    assert!(earlier.contains("calendar_find_slots"), "{earlier}");
    assert!(earlier.contains(r#""time_display":"10:00""#), "{earlier}");
}

#[tokio::test]
async fn off_grid_request_returns_suggestions_to_the_model() {
    let f = fixture(vec![
        FakeReply::tool_calls(
            vec![call(
                "c1",
                "calendar_create_appointment",
                json!({"start_iso": "2026-11-24T10:15", "resource": "Dubai", "customer_name": "Dana"}),
            )],
            2,
        ),
        FakeReply::text("10:15 is not possible. I can offer 10:00 or 11:00. Which one?", 4),
    ])
    .await;
    let heard = turn(&f, "CA_grid", Some(CALLER), &["tomorrow at 10:15 in Dubai"]).await;
    assert_eq!(
        heard.text,
        "10:15 is not possible. I can offer 10:00 or 11:00. Which one?"
    );
    let r = &tool_results(&f)[0];
    assert_eq!(r["error"], "off_grid");
    let offered: Vec<&str> = r["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["time_display"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["10:00", "11:00"]);
}

#[tokio::test]
async fn need_phone_makes_the_engine_collect_digits() {
    let f = fixture(vec![
        FakeReply::tool_calls(
            vec![call(
                "c1",
                "calendar_create_appointment",
                json!({"start_iso": "2026-11-24T10:00", "resource": "Dubai", "customer_name": "Dana"}),
            )],
            2,
        ),
        FakeReply::text("Please type your phone number on the keypad and press the pound key.", 3),
    ])
    .await;
    let heard = turn(&f, "CA_np", None, &["book Dubai tomorrow at 10 for Dana"]).await;
    assert_eq!(
        heard.collect_digits,
        Some(kav::agent::offline::PHONE_MAX_DIGITS)
    );
    assert_eq!(tool_results(&f)[0]["error"], "need_phone");
}

#[tokio::test]
async fn full_slot_and_duplicate_parallel_calls_make_one_appointment() {
    let args =
        json!({"start_iso": "2026-11-24T11:00", "resource": "New York", "customer_name": "Dana"});
    let f = fixture(vec![
        FakeReply::tool_calls(
            vec![
                call("c1", "calendar_create_appointment", args.clone()),
                call("c2", "calendar_create_appointment", args.clone()),
            ],
            3,
        )
        .interleaved(),
        FakeReply::text(
            "You're booked for tomorrow at 11:00, and I sent a WhatsApp confirmation.",
            5,
        ),
        // A second customer asks for the same slot: full, with alternatives.
        FakeReply::tool_calls(vec![call("c3", "calendar_create_appointment", args)], 2),
        FakeReply::text("11:00 is taken. I can offer 10:00 or 12:00.", 3),
    ])
    .await;
    let heard = turn(
        &f,
        "CA_dup",
        Some(CALLER),
        &["New York tomorrow at 11 for Dana"],
    )
    .await;
    assert_eq!(
        heard.text,
        "You're booked for tomorrow at 11:00, and I sent a WhatsApp confirmation."
    );
    let r = tool_results(&f);
    assert_eq!(r[0]["appointment_id"], r[1]["appointment_id"]);
    assert_eq!(r[1]["duplicate"], true);
    assert_eq!(
        f.store
            .appointments_for_business(BUSINESS)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(f.sender.delivered().len(), 1);

    let heard = turn(
        &f,
        "CA_dup2",
        Some("+972507777777"),
        &["New York tomorrow at 11"],
    )
    .await;
    assert_eq!(heard.text, "11:00 is taken. I can offer 10:00 or 12:00.");
    let r = tool_results(&f);
    let last = r.last().unwrap();
    assert_eq!(last["error"], "full");
    assert_eq!(last["suggestions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn llm_failure_falls_back_to_the_offline_dialog() {
    let f = fixture(vec![FakeReply::error(500, "upstream exploded")]).await;
    let heard = turn(
        &f,
        "CA_fail",
        Some(CALLER),
        &["tomorrow at 10 in the Dubai room"],
    )
    .await;
    assert_eq!(
        heard.text,
        "Great, tomorrow at 10:00. What name should I book under?"
    );
    // The fallback used the same tools, traced under the same conversation.
    let traces = f.store.tool_traces("CA_fail").await.unwrap();
    assert!(
        traces
            .iter()
            .any(|t| t.tool == "calendar_find_slots" && t.ok)
    );
}

#[tokio::test]
async fn llm_timeout_falls_back_to_the_offline_dialog() {
    let f = fixture(vec![FakeReply::text("never finishes", 3).stall_after(0)]).await;
    let heard = turn(
        &f,
        "CA_slow",
        Some(CALLER),
        &["tomorrow at 10 in the Dubai room"],
    )
    .await;
    assert_eq!(
        heard.text,
        "Great, tomorrow at 10:00. What name should I book under?"
    );
}

#[tokio::test]
async fn llm_failure_after_a_booking_still_tells_the_caller_it_is_booked() {
    let f = fixture(vec![
        FakeReply::tool_calls(
            vec![call(
                "c1",
                "calendar_create_appointment",
                json!({"start_iso": "2026-11-24T13:00", "resource": "Barcelona", "customer_name": "Dana"}),
            )],
            2,
        ),
        FakeReply::error(503, "overloaded"),
    ])
    .await;
    let heard = turn(
        &f,
        "CA_half",
        Some(CALLER),
        &["Barcelona tomorrow at 1pm for Dana"],
    )
    .await;
    assert_eq!(
        heard.text,
        "You're booked for 2026-11-24 13:00, and I sent a WhatsApp confirmation."
    );
    assert_eq!(
        f.store
            .appointments_for_business(BUSINESS)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Through the engine: a simulated Twilio caller, the LLM booking agent over the fake OpenAI
/// server; the model lies about a booking, the caller hears the truthful correction, and the
/// false claim is in the call's tool traces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_call_with_a_lying_llm_hears_the_truth() {
    use kav::caller::{self, CallOptions, Step, synthetic_speech};
    use kav::channels::twilio::call::CallDeps;
    use kav::server::{self, AppState};
    use std::time::Duration;

    let f = fixture(vec![FakeReply::text(
        "Perfect, I've booked the Dubai room for tomorrow at 10.",
        4,
    )])
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = kav::config::Config::default();
    cfg.call.stt = "simulated".into();
    cfg.call.agent = "simulated".into();
    cfg.call.tts = "simulated".into();
    cfg.call.language = "en-US".into();
    cfg.sim.stt_first_partial_ms = "fixed:30".into();
    cfg.sim.stt_final_ms = "fixed:30".into();
    cfg.sim.tts_first_audio_ms = "fixed:30".into();
    let cfg = Arc::new(cfg);
    let mut providers = kav::app::providers_from_config(&cfg).await.unwrap();
    providers.agent = Arc::new(f.agent.clone());
    let (recorder, _writer) = f.store.recorder(cfg.store.writer_queue);
    let deps = CallDeps::new(cfg.clone(), providers, Some(recorder.clone()));
    let state = AppState::new(deps, None, Some(f.store.clone()));
    tokio::spawn(server::serve(
        listener,
        state.clone(),
        std::future::pending::<()>(),
    ));
    let sid = "CA00000000000000000000000000000c01";
    let opts = CallOptions {
        server: format!("http://{addr}"),
        call_sid: sid.into(),
        from: CALLER.into(),
        to: "+97235550100".into(),
        max_duration: Duration::from_secs(40),
        ..CallOptions::default()
    };
    let steps = vec![
        Step::Say {
            audio: Arc::new(synthetic_speech(Duration::from_millis(600))),
            transcript: "book the Dubai room tomorrow at 10".into(),
        },
        Step::WaitForBot {
            max: Duration::from_secs(20),
        },
    ];
    caller::run_call(&opts, steps).await.unwrap();
    for _ in 0..250 {
        if state.live_calls() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    recorder.flush().await;
    let turns = f.store.call_turns(sid).await.unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(
        turns[0].bot_text,
        "I have not booked anything yet. Shall I check the available times and book it for you?"
    );
    assert!(
        f.store
            .appointments_for_business(BUSINESS)
            .await
            .unwrap()
            .is_empty()
    );
    let traces = f.store.tool_traces(sid).await.unwrap();
    assert!(traces.iter().any(|t| t.tool == GUARD_TRACE));
}

#[tokio::test]
async fn config_selects_offline_or_llm_booking_agent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("kav.db").display()))
        .await
        .unwrap();
    let mut cfg = kav::config::Config::default();
    cfg.call.tts = "simulated".into();
    cfg.call.agent = "offline".into();
    let (p, handle) = kav::app::providers_with_store(&cfg, Some(store.clone()))
        .await
        .unwrap();
    assert_eq!(p.agent.name(), "offline-booking");
    assert!(handle.is_some(), "outbox worker started");
    // `booking` with a local LLM server configured: the LLM agent.
    let fake = FakeOpenAi::start(Vec::new()).await;
    cfg.call.agent = "booking".into();
    cfg.llm.base_url = fake.base_url();
    let (p, _) = kav::app::providers_with_store(&cfg, Some(store.clone()))
        .await
        .unwrap();
    assert_eq!(p.agent.name(), "llm-booking");
    // Without a store the booking agent cannot run: a start-up error, never a simulated agent.
    let err = kav::app::providers_from_config(&cfg)
        .await
        .err()
        .expect("no store, no booking agent");
    assert!(err.to_string().contains("needs the store"), "{err}");
    // An LLM that is configured but cannot be built is a start-up error with the reason.
    cfg.llm.base_url = "not a url".into();
    let err = kav::app::providers_with_store(&cfg, Some(store.clone()))
        .await
        .err()
        .expect("bad [llm] is an error");
    assert!(err.to_string().contains("cannot start"), "{err}");
}

// ---------------------------------------------------------------- LLM stream faults (issue 15)

/// The stream breaks in the middle of a create-appointment tool call (its arguments cut off), or
/// is garbage: the half call is never run, nothing is booked, the offline dialog answers and does
/// not claim a booking.
#[tokio::test]
async fn a_stream_cut_or_garbled_mid_tool_call_books_nothing() {
    let create = || {
        vec![call(
            "c1",
            "calendar_create_appointment",
            json!({"start_iso": "2026-11-24T13:00", "resource": "Barcelona", "customer_name": "Dana"}),
        )]
    };
    for (what, reply) in [
        ("cut", FakeReply::tool_calls(create(), 6).drop_after(3)),
        (
            "garbage",
            FakeReply::replay(
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\
                 \"type\":\"function\",\"function\":{\"name\":\"calendar_create_appointment\",\
                 \"arguments\":\"{\\\"start_iso\"}}]}}]}\n\ndata: {not json at all\n\n",
            ),
        ),
    ] {
        let f = fixture(vec![reply]).await;
        let heard = turn(
            &f,
            "CA_cut",
            Some(CALLER),
            &["Barcelona tomorrow at 1pm for Dana"],
        )
        .await;
        let appts = f.store.appointments_for_business(BUSINESS).await.unwrap();
        assert!(appts.is_empty(), "{what}: {appts:#?}");
        assert!(!heard.text.is_empty(), "{what}: something is said");
        assert!(
            !heard.text.to_lowercase().contains("booked"),
            "{what}: no claimed booking: {}",
            heard.text
        );
    }
}

/// The model books, the stream then dies; on the next turn the model makes the same create call
/// again (a retry): still one appointment, and the customer is told it is booked.
#[tokio::test]
async fn a_retried_create_after_a_failure_does_not_book_twice() {
    let create = || {
        vec![call(
            "c1",
            "calendar_create_appointment",
            json!({"start_iso": "2026-11-24T13:00", "resource": "Barcelona", "customer_name": "Dana"}),
        )]
    };
    let f = fixture(vec![
        FakeReply::tool_calls(create(), 2),
        FakeReply::error(503, "overloaded"),
        FakeReply::tool_calls(create(), 2),
        FakeReply::text("You're booked, Dana.", 2),
    ])
    .await;
    turn(
        &f,
        "CA_retry",
        Some(CALLER),
        &["Barcelona tomorrow at 1pm for Dana"],
    )
    .await;
    let heard = turn(
        &f,
        "CA_retry",
        Some(CALLER),
        &["Barcelona tomorrow at 1pm for Dana", "did that work?"],
    )
    .await;
    let appts = f.store.appointments_for_business(BUSINESS).await.unwrap();
    assert_eq!(appts.len(), 1, "{appts:#?}");
    assert!(
        heard.text.to_lowercase().contains("booked"),
        "{}",
        heard.text
    );
}

/// A long conversation (41 turns, a booking in the first, slot searches after it): every request
/// the model gets carries at most the capped history (`[booking] history_max_messages` 24,
/// `history_max_chars` 6,000), its body stops growing once the cap is reached, and the booking of
/// the first turn is still known at the end, from the conversation's state (the booking system's
/// row), though its turn and its tool line are long gone from what the model is shown.
#[tokio::test]
async fn a_long_conversation_stays_under_the_cap_and_an_early_booking_stays_known() {
    let create =
        json!({"start_iso": "2026-11-24T10:00", "resource": "Dubai", "customer_name": "Dana"});
    let mut script = vec![
        FakeReply::tool_calls(vec![call("c1", "calendar_create_appointment", create)], 3),
        FakeReply::text("You're booked for tomorrow at 10:00 in the Dubai room.", 3),
    ];
    const LATER_TURNS: usize = 40;
    for _ in 0..LATER_TURNS {
        script.push(find_dubai_tomorrow());
        script.push(FakeReply::text(
            "I have looked at the calendar for you. Which hour suits you best?",
            3,
        ));
    }
    let f = fixture(script).await;
    let cap = f.rt.config.history_cap();
    assert_eq!((cap.max_messages, cap.max_chars), (24, 6_000));

    // Customer wording of varying length, Hebrew and English.
    let asks = [
        "תגיד, יש משהו פנוי מחר בערב בחדר דובאי? אנחנו חבורה של שישה חברים מהעבודה ורוצים לחגוג יום הולדת",
        "and what about the day after, around seven or eight in the evening, for the same room please?",
        "רגע, ומה עם שבוע הבא? אני לא בטוח שכולם יכולים להגיע מחר, אז אולי עדיף לבדוק גם אפשרויות אחרות",
        "ok",
    ];
    let mut history = vec![message(
        Role::User,
        "Dubai tomorrow at 10 for Dana please, yes book it",
    )];
    let first = respond(&f.agent, "CA_long", Some(CALLER), history.clone()).await;
    assert_eq!(
        first.text,
        "You're booked for tomorrow at 10:00 in the Dubai room."
    );
    history.push(message(Role::Assistant, &first.text));
    let mut first_round_bodies = Vec::new();
    for i in 0..LATER_TURNS {
        history.push(message(Role::User, asks[i % asks.len()]));
        let before = f.fake.requests().len();
        let heard = respond(&f.agent, "CA_long", Some(CALLER), history.clone()).await;
        history.push(message(Role::Assistant, &heard.text));
        let requests = f.fake.requests();
        assert_eq!(
            requests.len(),
            before + 2,
            "turn {i}: find slots, then the answer"
        );
        let body = &requests[before];
        first_round_bodies.push(body.to_string().len());
        // What the model sees of the conversation: the newest messages within the cap, ending
        // with this turn's question, starting with a question.
        let shown: Vec<&Value> = body["messages"].as_array().unwrap()[1..].iter().collect();
        let chars: usize = shown
            .iter()
            .map(|m| m["content"].as_str().unwrap_or("").chars().count())
            .sum();
        assert!(
            shown.len() <= cap.max_messages,
            "turn {i}: {} messages",
            shown.len()
        );
        assert!(chars <= cap.max_chars, "turn {i}: {chars} characters");
        assert_eq!(shown[0]["role"], "user", "turn {i}");
        assert_eq!(
            shown.last().unwrap()["content"],
            asks[i % asks.len()],
            "turn {i}"
        );
    }
    // The whole history is 82 messages; the model was shown a bounded part of it.
    assert_eq!(history.len(), 2 + 2 * LATER_TURNS);
    let last = f.fake.requests()[f.fake.requests().len() - 2].clone();
    let shown = last["messages"].as_array().unwrap();
    assert!(
        shown
            .iter()
            .all(|m| !m["content"].as_str().unwrap_or("").contains("book it")),
        "the booking's turn is no longer shown"
    );
    // The request body is flat once the cap is reached (it grows by tens of kilobytes without).
    let plateau = &first_round_bodies[15..];
    let (lo, hi) = (
        *plateau.iter().min().unwrap(),
        *plateau.iter().max().unwrap(),
    );
    assert!(hi - lo < 1_000, "bodies {first_round_bodies:?}");
    assert!(hi < 20_000, "bodies {first_round_bodies:?}");

    // The booking is known from state: the tool lines hold only slot searches now, and the
    // prompt names the appointment as the booking system has it.
    let appointments = f.store.appointments_for_business(BUSINESS).await.unwrap();
    assert_eq!(appointments.len(), 1);
    let id = &appointments[0].id;
    let prompt = last["messages"][0]["content"].as_str().unwrap();
    let (booked, tools) = prompt
        .split_once("earlier turns")
        .expect("tool memory in the prompt");
    assert!(!tools.contains("calendar_create_appointment"), "{tools}");
    assert!(
        booked.contains(&format!(
            "{id}: 2026-11-24 10:00, room Dubai, under the name \"Dana\", status booked"
        )),
        "{booked}"
    );

    // Cancelled behind the agent's back (e.g. by staff): the next turn says so.
    f.store
        .cancel_appointment(id, kav::testing::clock::monday_noon_ms())
        .await
        .unwrap();
    f.fake.push(FakeReply::text("Anything else?", 1));
    history.push(message(Role::User, "is my booking still on?"));
    respond(&f.agent, "CA_long", Some(CALLER), history).await;
    let prompt = system_prompts(&f).pop().unwrap();
    assert!(
        prompt.contains(&format!("{id}: 2026-11-24 10:00")),
        "{prompt}"
    );
    assert!(prompt.contains("status cancelled"), "{prompt}");
}

/// When the model fails, the offline dialog answers and may book. That booking is the
/// conversation's as much as one the model made: once the model is back, its prompt lists it
/// (id, time, room, name, status), so "move it to 11" or "cancel it" has the id to act on, and
/// the fallback's tool calls are among the remembered tool lines.
#[tokio::test]
async fn a_booking_the_offline_fallback_made_is_known_to_the_model_next_turn() {
    let down = || FakeReply::error(500, "upstream exploded");
    let f = fixture(vec![
        down(),
        down(),
        down(),
        FakeReply::text("Of course. What would you like to change?", 2),
    ])
    .await;
    let said = [
        "tomorrow at 10 in the Dubai room",
        "Noa",
        "yes",
        "actually can we make it a bit later",
    ];
    let mut history = Vec::new();
    let mut replies = Vec::new();
    for user in said {
        history.push(message(Role::User, user));
        let heard = respond(&f.agent, "CA_fallback", Some(CALLER), history.clone()).await;
        history.push(message(Role::Assistant, &heard.text));
        replies.push(heard.text);
    }
    assert!(
        replies[2].starts_with("You're booked for"),
        "the offline dialog booked on the third turn: {replies:?}"
    );
    let booked = f
        .store
        .appointments_for_business(BUSINESS)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.customer_name == "Noa")
        .collect::<Vec<_>>();
    assert_eq!(booked.len(), 1, "one booking: {booked:?}");

    let prompts = system_prompts(&f);
    assert_eq!(prompts.len(), 4, "one request per turn (no retries)");
    for before in &prompts[..3] {
        assert!(
            !before.contains("Appointments this conversation"),
            "{before}"
        );
    }
    let known = prompts[3]
        .split_once("Appointments this conversation booked, moved or cancelled")
        .expect("the fallback's booking is listed for the model")
        .1;
    assert!(known.contains(&booked[0].id), "{known}");
    assert!(known.contains("10:00, room Dubai"), "{known}");
    assert!(known.contains(r#"under the name "Noa""#), "{known}");
    // The fallback's tool calls are remembered as the model's own are: the create call with the
    // id it returned, in the "earlier tool calls" lines.
    let earlier = prompts[3]
        .split_once("Your tool calls in earlier turns")
        .expect("the fallback's tool calls are listed for the model")
        .1;
    let create = earlier
        .lines()
        .find(|l| l.starts_with("- calendar_create_appointment {"))
        .unwrap_or_else(|| panic!("no create line: {earlier}"));
    assert!(create.contains(&booked[0].id), "{create}");
    assert!(create.contains("\"ok\":true"), "{create}");
    assert!(
        !prompts[0].contains("Your tool calls in earlier turns"),
        "{}",
        prompts[0]
    );
    assert_eq!(replies[3], "Of course. What would you like to change?");
}
