//! End to end through the real server with `call.agent = "openai"` (the booking agent on the LLM):
//! the simulated Twilio caller against `server::serve` (simulated STT and TTS), the agent talking
//! SSE to the fake OpenAI server on 127.0.0.1:0. Bot replies play in real time; every test is
//! bounded.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kav::caller::{self, Step, synthetic_speech};
use kav::testing::fake_openai::{FakeOpenAi, FakeReply};
use support::*;

async fn bounded<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time bound")
}

async fn server_with_llm(fake: &FakeOpenAi, timeout_ms: u64) -> TestServer {
    let base_url = fake.base_url();
    TestServer::start(move |cfg, _| {
        cfg.call.agent = "openai".into();
        cfg.llm.base_url = base_url;
        cfg.llm.model = "e2e-model".into();
        cfg.llm.first_byte_timeout_ms = timeout_ms;
        cfg.llm.timeout_ms = timeout_ms;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_hears_the_llm_reply_to_their_transcript() {
    bounded(40, async {
        let reply = "We are open from nine to five. Would you like to book?";
        let fake = FakeOpenAi::start(vec![FakeReply::text(reply, 6)]).await;
        let srv = server_with_llm(&fake, 10_000).await;
        let health = srv.get("/healthz").await;
        let health: serde_json::Value = serde_json::from_str(&health.body).unwrap();
        assert_eq!(health["providers"]["agent"], "llm-booking", "{health}");

        let sid = "CA00000000000000000000000000000901";
        let said = "When are you open tomorrow";
        let report = caller::run_call(&srv.caller(sid), vec![say(700, said), wait_for_bot()])
            .await
            .unwrap();
        srv.settle().await;

        assert!(!report.closed_by_server, "{report:?}");
        assert_eq!(report.response_us.len(), 1, "{report:?}");
        assert!(report.frames_received > 50, "{report:?}");

        let turns = srv.store.call_turns(sid).await.unwrap();
        assert_eq!(turns.len(), 1, "{turns:#?}");
        assert_eq!(turns[0].user_text, said);
        assert_eq!(turns[0].bot_text, reply);
        assert!(
            turns[0].marks.ai_latency_ms.is_some(),
            "{:?}",
            turns[0].marks
        );

        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        let body = &requests[0];
        assert_eq!(body["model"], "e2e-model");
        assert_eq!(body["max_tokens"], 60, "phone replies are short");
        assert_eq!(body["stream"], true);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages[0]["role"], "system");
        let system = messages[0]["content"].as_str().unwrap();
        assert!(system.contains("Channel: phone."), "{system}");
        assert_eq!(messages.last().unwrap()["role"], "user");
        assert_eq!(messages.last().unwrap()["content"], said);

        // LLM latency is exported (process-wide, so other tests may have added to it).
        let metrics = srv.metrics().await;
        assert!(metric(&metrics, "kav_llm_completions_total") >= 1.0);
        assert!(metric(&metrics, "kav_llm_ttfb_ms_count") >= 1.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_reply_is_marked_in_the_next_request() {
    bounded(40, async {
        // Within the agent's 24-word limit for a first phone reply and free of claims (booked,
        // free, sent): short sentences that go to the caller one by one as they stream.
        let long = "Thank you for calling. We cut hair. We colour hair. We style hair. We treat \
                    hair. Short or long, all welcome. Ask away.";
        let fake = FakeOpenAi::start(vec![
            // Still streaming when the caller barges in at 1.5 s (12 × 250 ms).
            FakeReply::text(long, 12).chunk_interval(ms(250)),
            FakeReply::text("Sure, what day suits you?", 2),
        ])
        .await;
        let srv = server_with_llm(&fake, 10_000).await;
        let sid = "CA00000000000000000000000000000902";
        let steps = vec![
            say(700, "Hi, what do you offer"),
            Step::BargeIn {
                after: ms(1_500),
                audio: Arc::new(synthetic_speech(ms(600))),
                transcript: "I want a haircut".into(),
            },
            wait_for_bot(),
        ];
        let report = caller::run_call(&srv.caller(sid), steps).await.unwrap();
        srv.settle().await;
        assert_eq!(report.clears, 1, "{report:?}");
        // Barge-in cancelled the turn: its HTTP stream was closed, not read to the end.
        fake.wait_for_disconnects(1).await;
        assert_eq!(
            fake.streams_finished(),
            1,
            "only the second reply ran to the end"
        );

        let requests = fake.requests();
        assert_eq!(requests.len(), 2, "{requests:#?}");
        let messages = requests[1]["messages"].as_array().unwrap();
        let n = messages.len();
        assert_eq!(messages[n - 1]["content"], "I want a haircut");
        let cut = messages[n - 2]["content"].as_str().unwrap();
        assert_eq!(messages[n - 2]["role"], "assistant");
        assert!(
            cut.starts_with("[interrupted; the caller heard only: \""),
            "{cut}"
        );
        let turns = srv.store.call_turns(sid).await.unwrap();
        assert!(turns[0].interrupted, "{turns:#?}");
        assert!(
            cut.contains(&turns[0].bot_text),
            "{cut} vs {:?}",
            turns[0].bot_text
        );
        assert_eq!(turns[1].bot_text, "Sure, what day suits you?");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_failures_leave_the_call_alive_with_the_offline_dialog_answering() {
    bounded(60, async {
        let fake = FakeOpenAi::start(vec![
            // Turn 1: 500 twice (one retry) → the offline dialog answers.
            FakeReply::error(500, "overloaded"),
            FakeReply::error(500, "still overloaded"),
            // Turn 2: no first byte in time → timeout → the offline dialog answers.
            FakeReply::text("too late", 1).delay_first_byte(Duration::from_secs(30)),
            // Turn 3: the model is back.
            FakeReply::text("Sorry about that. How can I help?", 3),
        ])
        .await;
        // Short LLM timeout so the fallback comes well within the turn's agent timeout.
        let srv = server_with_llm(&fake, 1_500).await;
        let fallback = srv.state.deps.config.call.fallback_reply.clone();
        let sid = "CA00000000000000000000000000000903";
        let steps = vec![
            say(700, "Hello?"),
            wait_for_bot(),
            say(700, "Are you there?"),
            wait_for_bot(),
            say(700, "Hello again"),
            wait_for_bot(),
        ];
        let report = caller::run_call(&srv.caller(sid), steps).await.unwrap();
        srv.settle().await;

        assert!(!report.closed_by_server, "{report:?}");
        assert_eq!(
            report.response_us.len(),
            3,
            "every turn was answered: {report:?}"
        );
        let turns = srv.store.call_turns(sid).await.unwrap();
        assert_eq!(turns.len(), 3, "{turns:#?}");
        for turn in &turns[..2] {
            assert!(!turn.bot_text.is_empty(), "{turns:#?}");
            assert_ne!(turn.bot_text, fallback, "{turns:#?}");
        }
        assert_eq!(turns[2].bot_text, "Sorry about that. How can I help?");
        assert_eq!(fake.requests().len(), 4);

        let metrics = srv.metrics().await;
        // The agent answered every turn, so the engine saw no agent error.
        assert_eq!(metric(&metrics, "kav_agent_errors_total"), 0.0);
        let call = srv.store.call(sid).await.unwrap().expect("call row");
        assert_eq!(call.end_reason.as_deref(), Some("stop"));
    })
    .await;
}
