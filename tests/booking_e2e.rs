//! The booking agent end to end through the engine: a Kav server on 127.0.0.1:0, the simulated
//! Twilio caller (`kav::caller`) speaking with scripted transcripts and pressing keys, the
//! simulated recogniser and TTS, the offline booking agent over SQLite in a temp dir, and a
//! WhatsApp sender that is down during the call and recovers afterwards.

use std::sync::Arc;
use std::time::Duration;

use kav::agent::BookingRuntime;
use kav::agent::offline::OfflineBookingAgent;
use kav::booking::outbox;
use kav::caller::{self, CallOptions, Step, synthetic_speech};
use kav::channels::twilio::call::CallDeps;
use kav::config::{BookingConfig, Config};
use kav::server::{self, AppState};
use kav::store::{Recorder, Store};
use kav::testing::clock::ManualClock;
use kav::testing::switchable_sender::SwitchableSender;
use tokio::net::TcpListener;

struct Server {
    url: String,
    state: Arc<AppState>,
    store: Store,
    recorder: Recorder,
    rt: Arc<BookingRuntime>,
    sender: Arc<SwitchableSender>,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.call.stt = "simulated".into();
    cfg.call.agent = "simulated".into(); // replaced by the offline booking agent below
    cfg.call.tts = "simulated".into();
    cfg.call.language = "en-US".into();
    cfg.sim.stt_first_partial_ms = "fixed:30".into();
    cfg.sim.stt_final_ms = "fixed:30".into();
    cfg.sim.tts_first_audio_ms = "fixed:30".into();
    cfg.store.url = format!("sqlite://{}", dir.path().join("kav.db").display());
    let cfg = Arc::new(cfg);
    let store = Store::connect(&cfg.store.url).await.unwrap();
    let (recorder, _writer) = store.recorder(cfg.store.writer_queue);
    let mut providers = kav::app::providers_from_config(&cfg).await.unwrap();
    let sender = Arc::new(SwitchableSender::new());
    let clock = ManualClock::monday_noon();
    let rt = BookingRuntime::new(
        store.clone(),
        sender.clone(),
        clock.clock(),
        BookingConfig::default(),
    );
    providers.agent = Arc::new(OfflineBookingAgent::new(rt.clone()));
    let deps = CallDeps::new(cfg.clone(), providers, Some(recorder.clone()));
    let state = AppState::new(deps, None, Some(store.clone()));
    tokio::spawn(server::serve(
        listener,
        state.clone(),
        std::future::pending::<()>(),
    ));
    Server {
        url: format!("http://{addr}"),
        state,
        store,
        recorder,
        rt,
        sender,
        clock,
        _dir: dir,
    }
}

impl Server {
    fn caller(&self, sid: &str, from: &str) -> CallOptions {
        CallOptions {
            server: self.url.clone(),
            call_sid: sid.into(),
            from: from.into(),
            to: "+97235550100".into(),
            max_duration: Duration::from_secs(60),
            ..CallOptions::default()
        }
    }

    async fn settle(&self) {
        for _ in 0..250 {
            if self.state.live_calls() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.recorder.flush().await;
    }
}

fn say(text: &str) -> Step {
    Step::Say {
        audio: Arc::new(synthetic_speech(Duration::from_millis(600))),
        transcript: text.into(),
    }
}

fn wait() -> Step {
    Step::WaitForBot {
        max: Duration::from_secs(20),
    }
}

/// Caller id withheld and WhatsApp down: the caller books "tomorrow at 10 in the Dubai room",
/// types the number on the keypad, confirms, hears that the details will reach them shortly;
/// once WhatsApp recovers the outbox delivers exactly one confirmation, and the call's summary
/// is stored by the `call.ended` flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_caller_books_with_keypad_number_while_whatsapp_is_down() {
    let srv = start().await;
    srv.sender.set_down(true);
    let sid = "CA00000000000000000000000000000b01";
    let steps = vec![
        say("Hi, tomorrow at 10 in the Dubai room please"),
        wait(),
        say("my name is Dana"),
        wait(),
        Step::Keys {
            digits: "0521112222#".into(),
            gap: Duration::from_millis(60),
        },
        wait(),
        say("yes"),
        wait(),
    ];
    let report = tokio::time::timeout(
        Duration::from_secs(90),
        caller::run_call(&srv.caller(sid, ""), steps),
    )
    .await
    .expect("call finished in time")
    .unwrap();
    srv.settle().await;
    assert!(report.frames_received > 100, "{report:?}");

    let turns = srv.store.call_turns(sid).await.unwrap();
    let bot: Vec<&str> = turns.iter().map(|t| t.bot_text.as_str()).collect();
    assert_eq!(turns.len(), 4, "{bot:#?}");
    assert!(bot[0].contains("What name"), "{bot:#?}");
    assert!(bot[1].contains("keypad"), "{bot:#?}");
    assert_eq!(turns[2].input_kind.as_str(), "digits");
    assert_eq!(turns[2].user_text, "0521112222");
    assert!(
        bot[2].contains("Dubai room tomorrow at 10:00") && bot[2].contains("Dana"),
        "{bot:#?}"
    );
    assert_eq!(
        bot[3],
        "You're booked for 2026-11-24 10:00. The details will reach you on WhatsApp shortly."
    );
    let appts = srv
        .store
        .appointments_for_business("biz_escape_tlv")
        .await
        .unwrap();
    assert_eq!(appts.len(), 1);
    assert_eq!(appts[0].customer_phone.as_deref(), Some("+972521112222"));
    assert_eq!(appts[0].conversation_id, sid);
    assert!(srv.sender.delivered().is_empty());

    // The call.ended event is enqueued by a task the driver spawns as the call ends.
    let key = format!("call-ended:{sid}");
    for _ in 0..250 {
        if srv.store.outbox_by_key(&key).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // WhatsApp recovers; the worker's next due pass delivers the confirmation once.
    srv.sender.set_down(false);
    srv.clock.advance(60_000);
    outbox::run_once(&srv.rt).await.unwrap();
    outbox::run_once(&srv.rt).await.unwrap();
    let delivered = srv.sender.delivered();
    let confirmations: Vec<_> = delivered
        .iter()
        .filter(|m| m.idempotency_key == format!("confirm:{}", appts[0].id))
        .collect();
    assert_eq!(confirmations.len(), 1, "{delivered:#?}");
    assert_eq!(confirmations[0].to, "972521112222");
    let summary = srv
        .store
        .summary(sid)
        .await
        .unwrap()
        .expect("call.ended summary stored");
    assert!(summary.contains(&appts[0].id), "{summary}");
    let traces = srv.store.tool_traces(sid).await.unwrap();
    assert!(
        traces
            .iter()
            .any(|t| t.tool == "calendar_create_appointment" && t.ok)
    );
}

/// An off-grid request on a live call gets the two nearest valid times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_grid_request_gets_the_nearest_times_on_a_call() {
    let srv = start().await;
    let sid = "CA00000000000000000000000000000b02";
    let steps = vec![say("tomorrow at 10:15 in the Dubai room"), wait()];
    caller::run_call(&srv.caller(sid, "+972501234567"), steps)
        .await
        .unwrap();
    srv.settle().await;
    let turns = srv.store.call_turns(sid).await.unwrap();
    assert_eq!(turns.len(), 1);
    assert!(
        turns[0].bot_text.contains("10:00 or 11:00"),
        "{:?}",
        turns[0].bot_text
    );
    assert!(
        srv.store
            .appointments_for_business("biz_escape_tlv")
            .await
            .unwrap()
            .is_empty()
    );
}
