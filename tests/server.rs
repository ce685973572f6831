//! The server and the per-call driver over real sockets on 127.0.0.1:0: the simulated Twilio
//! caller (or a raw WebSocket client) against `server::serve` with the simulated providers and a
//! temporary SQLite store. Every test is bounded in time; bot replies play in real time.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kav::adapters::sim::SimulatedAgent;
use kav::caller::{self, Step, synthetic_speech};
use kav::core::signature;
use kav::core::twilio;
use kav::server::{STREAM_PATH, VOICE_PATH};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

async fn bounded<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time bound")
}

fn speech(len_ms: u64) -> Arc<Vec<u8>> {
    Arc::new(synthetic_speech(ms(len_ms)))
}

fn say(len_ms: u64, transcript: &str) -> Step {
    Step::Say {
        audio: speech(len_ms),
        transcript: transcript.into(),
    }
}

fn wait_for_bot() -> Step {
    Step::WaitForBot {
        max: Duration::from_secs(15),
    }
}

/// Speech, a digit prompt, keypad entry: turns, latency marks, media, marks, health and metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_over_real_sockets() {
    bounded(40, async {
        let srv = TestServer::start(|_, _| {}).await;
        let sid = "CA00000000000000000000000000000101";
        let said = "I want to leave my phone number";
        let steps = vec![
            say(700, said),
            wait_for_bot(),
            Step::Keys {
                digits: "0501#".into(),
                gap: ms(100),
            },
            wait_for_bot(),
        ];
        let report = caller::run_call(&srv.caller(sid), steps).await.unwrap();
        srv.settle().await;

        assert!(!report.closed_by_server, "{report:?}");
        assert!(report.frames_received > 50, "{report:?}");
        assert!(report.marks_echoed > 5, "{report:?}");
        assert_eq!(report.clears, 0);
        assert_eq!(report.response_us.len(), 2, "one reply per input");

        let turns = srv.store.call_turns(sid).await.unwrap();
        assert_eq!(turns.len(), 2, "{turns:#?}");
        let (t1, t2) = (&turns[0], &turns[1]);
        let prompt = SimulatedAgent::reply_for(said, false).0;
        assert_eq!(
            (t1.turn, t1.input_kind.as_str(), t1.user_text.as_str()),
            (1, "speech", said)
        );
        assert_eq!(t1.bot_text, prompt);
        assert!(!t1.interrupted);
        let m = t1.marks;
        for (name, v) in [
            ("stt_first_partial_ms", m.stt_first_partial_ms),
            ("stt_final_ms", m.stt_final_ms),
            ("ai_latency_ms", m.ai_latency_ms),
            ("tts_ready_ms", m.tts_ready_ms),
            ("total_ms", m.total_ms),
        ] {
            assert!(v.is_some(), "{name} missing: {m:?}");
        }
        // Simulated: ~50 ms final + 50 ms first token + 50 ms first audio, plus VAD hangover.
        assert!((150..3_000).contains(&m.total_ms.unwrap()), "{m:?}");
        assert_eq!((t2.turn, t2.input_kind.as_str()), (2, "digits"));
        assert_eq!(t2.user_text, "0501");
        assert!(t2.bot_text.contains("0 5 0 1"), "{}", t2.bot_text);
        assert!(t2.marks.total_ms.is_some(), "{:?}", t2.marks);

        let call = srv.store.call(sid).await.unwrap().expect("call row");
        assert_eq!(call.end_reason.as_deref(), Some("stop"));
        let digits = srv.store.call_events(sid).await.unwrap();
        assert!(digits.iter().any(|e| e.kind == "digits"), "{digits:?}");

        // The turn API reads the same rows.
        let api = srv.get(&format!("/api/calls/{sid}/turns")).await;
        assert_eq!(api.status, 200);
        let api: serde_json::Value = serde_json::from_str(&api.body).unwrap();
        assert_eq!(api.as_array().map(Vec::len), Some(2), "{api}");

        let health = srv.get("/healthz").await;
        assert_eq!(health.status, 200);
        assert!(
            health
                .head
                .to_ascii_lowercase()
                .contains("application/json")
        );
        let health: serde_json::Value = serde_json::from_str(&health.body).unwrap();
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(health["calls_active"], 0, "{health}");
        assert_eq!(health["providers"]["tts"], "simulated-tts", "{health}");

        let metrics = srv.metrics().await;
        assert!(
            metrics.contains("\nkav_calls_started_total 1\n"),
            "{metrics}"
        );
        assert_eq!(metric(&metrics, "kav_calls_ended_total"), 1.0);
        assert_eq!(metric(&metrics, "kav_turns_total"), 2.0);
        assert_eq!(metric(&metrics, "kav_calls_active"), 0.0);
        assert!(metric(&metrics, "kav_digits_total") >= 4.0);
        assert!(metric(&metrics, "kav_frames_out_total") >= report.frames_received as f64);
        assert_eq!(metric(&metrics, "kav_turn_total_ms_count"), 2.0);
        assert_eq!(metric(&metrics, "kav_turn_stt_final_ms_count"), 1.0);
        assert!(metrics.contains("kav_turn_total_ms{quantile=\"0.5\"}"));
        assert!(metric(&metrics, "kav_turn_total_ms_sum") > 0.0);
        for problem in ["malformed_messages", "abrupt_disconnects", "slow_consumers"] {
            assert_eq!(metric(&metrics, &format!("kav_{problem}_total")), 0.0);
        }
    })
    .await;
}

/// The caller talks over a long reply: one `clear`, the interrupted turn keeps what was heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_over_the_wire() {
    bounded(40, async {
        let srv = TestServer::start(|_, _| {}).await;
        let sid = "CA00000000000000000000000000000201";
        let said = "I would like to book an appointment";
        let steps = vec![
            say(700, said),
            Step::BargeIn {
                after: ms(1_500),
                audio: speech(600),
                transcript: "wait, hello".into(),
            },
            wait_for_bot(),
        ];
        let report = caller::run_call(&srv.caller(sid), steps).await.unwrap();
        srv.settle().await;

        assert_eq!(report.clears, 1, "{report:?}");
        assert_eq!(report.barge_in_reaction_us.len(), 1, "{report:?}");
        let reaction = report.barge_in_reaction_us[0];
        assert!(reaction < 1_000_000, "barge-in took {reaction} µs");

        let turns = srv.store.call_turns(sid).await.unwrap();
        assert_eq!(turns.len(), 2, "{turns:#?}");
        let full = SimulatedAgent::reply_for(said, false).0;
        let cut = &turns[0];
        assert!(cut.interrupted, "{cut:?}");
        assert!(
            !cut.bot_text.is_empty(),
            "the caller heard 1.5 s of it: {cut:?}"
        );
        assert!(
            full.starts_with(&cut.bot_text) && cut.bot_text.len() < full.len(),
            "heard {:?} of {full:?}",
            cut.bot_text
        );
        assert_eq!(turns[1].user_text, "wait, hello");
        assert!(!turns[1].interrupted);
        let events = srv.store.call_events(sid).await.unwrap();
        assert_eq!(
            events.iter().filter(|e| e.kind == "barge_in").count(),
            1,
            "{events:?}"
        );

        let metrics = srv.metrics().await;
        assert_eq!(metric(&metrics, "kav_barge_ins_total"), 1.0);
        assert_eq!(metric(&metrics, "kav_turns_total"), 2.0);
    })
    .await;
}

const TOKEN: &str = "12345-test-auth-token";

/// Webhook and handshake signatures: missing, forged, over the wrong URL, tampered → 403;
/// correct → TwiML / upgrade. A fully signed call works end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_required_when_a_token_is_set() {
    bounded(30, async {
        let public = "https://kav.example.test";
        let srv = TestServer::start_with(Some(TOKEN), |cfg, _| {
            cfg.server.public_url = format!("{public}/");
        })
        .await;
        let sid = "CA00000000000000000000000000000301";
        let params = voice_params(sid);
        let body = form(&params);
        let post = |sig: Option<String>| {
            let body = body.clone();
            async move {
                let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
                let sig = sig.unwrap_or_default();
                if !sig.is_empty() {
                    headers.push(("X-Twilio-Signature", sig.as_str()));
                }
                http(srv.addr, "POST", VOICE_PATH, &headers, &body).await.unwrap()
            }
        };
        let voice_url = format!("{public}{VOICE_PATH}");
        let good = signature::compute(TOKEN, &voice_url, &params);

        assert_eq!(post(None).await.status, 403, "no signature");
        assert_eq!(post(Some("bm90IGEgc2lnbmF0dXJl".into())).await.status, 403, "forged");
        let wrong_token = signature::compute("another-token", &voice_url, &params);
        assert_eq!(post(Some(wrong_token)).await.status, 403, "other token");
        // Signed over the Host we actually hit instead of the configured public URL.
        let host_url = format!("http://{}{VOICE_PATH}", srv.addr);
        let host_signed = signature::compute(TOKEN, &host_url, &params);
        assert_eq!(post(Some(host_signed)).await.status, 403, "wrong URL");
        // Signed, but a parameter was changed on the way.
        let mut tampered = params.clone();
        tampered[2].1 = "+15550000000".into();
        let tampered_sig = signature::compute(TOKEN, &voice_url, &tampered);
        assert_eq!(post(Some(tampered_sig)).await.status, 403, "tampered");

        let ok = post(Some(good)).await;
        assert_eq!(ok.status, 200, "{ok:?}");
        assert!(ok.head.to_ascii_lowercase().contains("text/xml"), "{}", ok.head);
        let stream_url = "wss://kav.example.test/twilio/stream";
        assert!(
            ok.body.contains(&format!("<Connect>\n    <Stream url=\"{stream_url}\">")),
            "{}",
            ok.body
        );
        assert!(ok.body.contains("<Parameter name=\"From\" value=\"+972501234567\" />"));
        assert!(ok.body.contains(&format!("<Parameter name=\"CallSid\" value=\"{sid}\" />")));
        assert!(!ok.body.contains("AccountSid"), "only caller details are forwarded");
        let (url, forwarded) = caller::parse_twiml(&ok.body).unwrap();
        assert_eq!(url, stream_url);
        assert!(!url.contains('?'), "Twilio forbids a query string: {url}");
        assert_eq!(forwarded.len(), 4, "{forwarded:?}");

        // The Media Streams handshake.
        let refused = |r: Result<Ws, tungstenite::Error>| match r {
            Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("unexpected handshake error {e}"),
            Ok(_) => panic!("handshake accepted"),
        };
        assert_eq!(refused(ws_connect(srv.addr, None).await), 403);
        assert_eq!(refused(ws_connect(srv.addr, Some("Zm9yZ2Vk")).await), 403);
        let host_ws = format!("ws://{}{STREAM_PATH}", srv.addr);
        let sig = signature::compute(TOKEN, &host_ws, &[]);
        assert_eq!(refused(ws_connect(srv.addr, Some(&sig)).await), 403);
        for signed_url in [stream_url.to_string(), format!("{stream_url}/")] {
            let sig = signature::compute(TOKEN, &signed_url, &[]);
            let mut ws = ws_connect(srv.addr, Some(&sig)).await.expect("upgraded");
            ws.close(None).await.unwrap();
            expect_closed(&mut ws, Duration::from_secs(2)).await;
        }
        srv.wait_idle(Duration::from_secs(3)).await;
        let metrics = srv.metrics().await;
        assert_eq!(metric(&metrics, "kav_calls_started_total"), 0.0);

        // A full call signed by the simulated caller, against a server whose public URL is the
        // address it really listens on.
        let live = TestServer::start_with(Some(TOKEN), |cfg, addr| {
            cfg.server.public_url = format!("http://{addr}");
        })
        .await;
        let sid = "CA00000000000000000000000000000302";
        let unsigned = caller::run_call(&live.caller(sid), vec![say(500, "hello")]).await;
        assert!(
            matches!(&unsigned, Err(caller::CallerError::Webhook { detail, .. }) if detail.contains("403")),
            "{unsigned:?}"
        );
        let opts = kav::caller::CallOptions {
            auth_token: Some(TOKEN.into()),
            ..live.caller(sid)
        };
        let report = caller::run_call(&opts, vec![say(600, "hello there"), wait_for_bot()])
            .await
            .unwrap();
        live.settle().await;
        assert!(report.frames_received > 0, "{report:?}");
        let turns = live.store.call_turns(sid).await.unwrap();
        assert_eq!(turns.len(), 1, "{turns:?}");
        assert_eq!(turns[0].user_text, "hello there");
        let call = live.store.call(sid).await.unwrap().unwrap();
        assert!(call.parameters_json.contains("+972501234567"), "{}", call.parameters_json);
    })
    .await;
}
