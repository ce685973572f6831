//! All real provider clients in one call: Google STT and TTS over gRPC against the fake Google
//! servers, the LLM agent over SSE against the fake OpenAI server, the simulated Twilio caller
//! against `server::serve` on 127.0.0.1:0. Then the same with the LLM failing: the call goes on
//! and the caller hears the fallback (from the TTS cache).

mod support;

use std::future::Future;
use std::time::Duration;

use kav::caller::{self, Step};
use kav::testing::fake_google::{FakeGoogle, ScriptedUtterance, SpeechFakeConfig};
use kav::testing::fake_openai::{FakeOpenAi, FakeReply};
use support::*;

async fn bounded<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time bound")
}

async fn server(google: &FakeGoogle, llm: &FakeOpenAi) -> TestServer {
    let (endpoint, base_url) = (google.endpoint(), llm.base_url());
    TestServer::start(move |cfg, _| {
        cfg.call.language = "en-US".into();
        cfg.call.stt = "google".into();
        cfg.call.tts = "google".into();
        cfg.call.agent = "openai".into();
        cfg.google.stt_endpoint = endpoint.clone();
        cfg.google.tts_endpoint = endpoint;
        cfg.llm.base_url = base_url;
        cfg.llm.first_byte_timeout_ms = 1_000;
        cfg.llm.timeout_ms = 2_000;
        cfg.llm.retries = 0;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_google_stt_llm_and_google_tts() {
    bounded(60, async {
        let google = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        let said = "When are you open on Friday";
        google.script([ScriptedUtterance::new(&["When are"], said)]);
        let reply = "On Friday we are open from nine to three. Shall I book you in?";
        let llm = FakeOpenAi::start(vec![FakeReply::text(reply, 6)]).await;
        let srv = server(&google, &llm).await;
        for (kind, name) in [
            ("stt", srv.state.deps.stt.name()),
            ("agent", srv.state.deps.agent.name()),
            ("tts", srv.state.deps.tts.name()),
        ] {
            assert!(
                !name.contains("simulated") && !name.contains("espeak"),
                "{kind} fell back to {name}"
            );
        }
        let sid = "CA00000000000000000000000000000951";
        let report = caller::run_call(&srv.caller(sid), vec![say(800, said), wait_for_bot()])
            .await
            .unwrap();
        srv.settle().await;
        assert!(report.frames_received > 50, "{report:?}");

        let turns = srv.store.call_turns(sid).await.unwrap();
        assert_eq!(turns.len(), 1, "{turns:#?}");
        let t = &turns[0];
        assert_eq!(t.user_text, said, "Google's final became the turn");
        assert_eq!(t.bot_text, reply, "the LLM's reply was spoken whole");
        let m = t.marks;
        for (name, v) in [
            ("stt_final_ms", m.stt_final_ms),
            ("ai_latency_ms", m.ai_latency_ms),
            ("ai_total_ms", m.ai_total_ms),
            ("tts_ready_ms", m.tts_ready_ms),
            ("tts_total_ms", m.tts_total_ms),
            ("total_ms", m.total_ms),
        ] {
            assert!(v.is_some(), "{name} missing: {m:?}");
        }
        // The LLM saw the transcript; TTS was asked sentence by sentence.
        let requests = llm.requests();
        assert_eq!(requests.len(), 1);
        let last = requests[0]["messages"].as_array().unwrap().last().unwrap();
        assert_eq!(last["content"], said, "{last}");
        let spoken: Vec<String> = google
            .tts_requests()
            .into_iter()
            .map(|r| r.text)
            .filter(|t| reply.contains(t.as_str()))
            .collect();
        assert_eq!(
            spoken,
            vec![
                "On Friday we are open from nine to three.",
                "Shall I book you in?"
            ]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_failure_leaves_the_call_alive_with_the_offline_dialog_answering() {
    bounded(60, async {
        let google = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        google.script([
            ScriptedUtterance::new(&[], "first question"),
            ScriptedUtterance::new(&[], "second question"),
        ]);
        let llm = FakeOpenAi::start(vec![
            FakeReply::error(500, "upstream exploded"),
            FakeReply::text("Here is the answer.", 3),
        ])
        .await;
        let srv = server(&google, &llm).await;
        let sid = "CA00000000000000000000000000000952";
        let steps = vec![
            say(800, "first question"),
            wait_for_bot(),
            Step::Pause(ms(400)),
            say(800, "second question"),
            wait_for_bot(),
        ];
        caller::run_call(&srv.caller(sid), steps).await.unwrap();
        srv.settle().await;
        let turns = srv.store.call_turns(sid).await.unwrap();
        assert_eq!(turns.len(), 2, "{turns:#?}");
        // The booking agent's offline dialog answered the failed turn: the caller heard a real
        // question, not the engine's "say it again".
        let fallback = &srv.state.deps.config.call.fallback_reply;
        assert!(!turns[0].bot_text.is_empty(), "{turns:#?}");
        assert_ne!(&turns[0].bot_text, fallback, "{turns:#?}");
        assert_eq!(turns[1].bot_text, "Here is the answer.");
        // The offline reply was synthesised by Google TTS like any other, sentence by sentence.
        assert!(
            google
                .tts_requests()
                .iter()
                .any(|r| &r.text != fallback && turns[0].bot_text.contains(&r.text)),
            "{:?}",
            google.tts_requests()
        );
    })
    .await;
}
