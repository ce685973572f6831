//! The server and the per-call driver over real sockets on 127.0.0.1:0: the simulated Twilio
//! caller (or a raw WebSocket client) against `server::serve` with the simulated providers and a
//! temporary SQLite store. Every test is bounded in time; bot replies play in real time.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use kav::caller::{self, Step, synthetic_speech};
use kav::channels::signature;
use kav::providers::sim::SimulatedAgent;
use kav::server::{STREAM_PATH, VOICE_PATH};
use kav::voice::twilio;
use support::*;
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
        let prompt = SimulatedAgent::reply_for(said, false, false).0;
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
            ("ai_total_ms", m.ai_total_ms),
            ("tts_total_ms", m.tts_total_ms),
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

        // The turn API serves transcripts: closed without credentials (tests/console.rs covers
        // it signed in).
        let api = srv.get(&format!("/api/calls/{sid}/turns")).await;
        assert_eq!(api.status, 401);

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
        assert!(metrics.contains("# TYPE kav_turn_total_ms histogram\n"));
        assert_eq!(
            metric(&metrics, "kav_turn_total_ms_bucket{le=\"10000.0\"}"),
            2.0
        );
        assert!(metric(&metrics, "kav_turn_total_ms_sum") > 0.0);
        // Counters are counters (also the ones read at scrape time), gauges are gauges.
        for counter in [
            "kav_calls_started",
            "process_cpu_seconds",
            "kav_store_rows_dropped",
        ] {
            assert!(
                metrics.contains(&format!("# TYPE {counter} counter\n")),
                "{counter}: {metrics}"
            );
        }
        assert!(metrics.contains("# TYPE process_resident_memory_bytes gauge\n"));
        assert!(metrics.ends_with("# EOF\n"));
        // Exact quantiles for load measurements.
        let latency: serde_json::Value =
            serde_json::from_str(&srv.get("/metrics/latency").await.body).unwrap();
        assert_eq!(latency["turn"]["total_ms"]["count"], 2, "{latency}");
        assert!(
            latency["turn"]["total_ms"]["p50"].as_u64().unwrap() > 0,
            "{latency}"
        );
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
        let full = SimulatedAgent::reply_for(said, false, false).0;
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
        // Server side, the barge-in decision → `clear` on the socket: part of what the caller saw.
        let server_ms = server_barge_in_max_ms(&srv, &metrics).await;
        assert!(
            server_ms > 0.0 && server_ms * 1000.0 <= reaction as f64,
            "server {server_ms} ms, caller {reaction} µs"
        );
    })
    .await;
}

/// Through a delaying proxy on 127.0.0.1 (RTT 240 ms, 20 ms jitter each way): playout keeps its
/// pace (no underrun, no hold), the server's RTT estimate sees the round trip, a barge-in still
/// keeps a heard prefix, and the per-call figures reach `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playout_over_a_delayed_link() {
    bounded(60, async {
        let srv = TestServer::start(|_, _| {}).await;
        let sid = "CA00000000000000000000000000000251";
        let said = "I would like to book an appointment";
        let steps = vec![
            say(700, said),
            wait_for_bot(),
            say(700, said),
            Step::BargeIn {
                after: ms(1_500),
                audio: speech(600),
                transcript: "wait, hello".into(),
            },
            wait_for_bot(),
        ];
        let opts = caller::CallOptions {
            rtt: ms(240),
            jitter: ms(20),
            ..srv.caller(sid)
        };
        let report = caller::run_call(&opts, steps).await.unwrap();
        srv.settle().await;

        assert!(!report.closed_by_server, "{report:?}");
        assert_eq!(report.underruns, 0, "caller heard a gap: {report:?}");
        assert_eq!(report.clears, 1, "{report:?}");
        let reaction = report.barge_in_reaction_us[0];
        assert!(
            reaction >= 240_000,
            "the clear crossed the link: {reaction} µs"
        );

        let turns = srv.store.call_turns(sid).await.unwrap();
        assert_eq!(turns.len(), 3, "{turns:#?}");
        let full = SimulatedAgent::reply_for(said, false, false).0;
        assert_eq!(turns[0].bot_text, full, "played to the end");
        let cut = &turns[1];
        assert!(cut.interrupted, "{cut:?}");
        assert!(
            !cut.bot_text.is_empty() && full.starts_with(&cut.bot_text),
            "heard {:?}",
            cut.bot_text
        );

        let metrics = srv.metrics().await;
        assert_eq!(metric(&metrics, "kav_underruns_total"), 0.0);
        assert_eq!(metric(&metrics, "kav_lead_holds_total"), 0.0);
        assert_eq!(metric(&metrics, "kav_missing_mark_echoes_total"), 0.0);
        assert_eq!(metric(&metrics, "kav_call_rtt_ms_count"), 1.0);
        let latency: serde_json::Value =
            serde_json::from_str(&srv.get("/metrics/latency").await.body).unwrap();
        let rtt = latency["call"]["kav_call_rtt_ms"]["max"].as_f64().unwrap();
        assert!((240.0..600.0).contains(&rtt), "estimated RTT {rtt} ms");
        let lead = latency["call"]["kav_call_lead_max_ms"]["max"]
            .as_f64()
            .unwrap();
        assert!(lead <= 120.0, "lead at Twilio {lead} ms");
        // The server's own part of the barge-in excludes both crossings of the delayed link.
        let server_ms = server_barge_in_max_ms(&srv, &metrics).await;
        assert!(
            server_ms * 1000.0 <= reaction as f64 - 240_000.0,
            "server {server_ms} ms, caller {reaction} µs"
        );
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

/// Garbage on a live call is counted and ignored; only an oversized message ends a stream, and
/// then only that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_a_live_call_is_counted_and_survived() {
    bounded(30, async {
        let max = 16 * 1024;
        let srv = TestServer::start(|cfg, _| cfg.server.max_message_bytes = max).await;
        let sid = "CA00000000000000000000000000000401";
        let mut call = RawCall::open(srv.addr, sid, &["hello there"]).await;
        let stream_sid = call.stream_sid.clone();
        let other_sid = "MZ99999999999999999999999999999999".to_string();
        let silence = [kav::voice::g711::SILENCE; twilio::FRAME_BYTES];
        let good_media = call.media_message(&silence);
        let garbage = [
            // malformed JSON (twice: truncated, and not JSON at all)
            good_media[..good_media.len() / 2].to_string(),
            "\u{1F4DE} not json".to_string(),
            // media with a payload that is not base64
            format!(
                r#"{{"event":"media","sequenceNumber":"5","media":{{"track":"inbound","chunk":"3","timestamp":"60","payload":"@@not*base64@@"}},"streamSid":"{stream_sid}"}}"#
            ),
            // media, dtmf and mark for another stream
            good_media.replace(&stream_sid, &other_sid),
            wire(|b| twilio::write_dtmf(b, &other_sid, 90, '5')),
            wire(|b| twilio::write_mark_echo(b, &other_sid, 91, "k1")),
            // well-formed, unknown events
            format!(r#"{{"event":"transcription","streamSid":"{stream_sid}"}}"#),
            r#"{"event":"close"}"#.to_string(),
            // a second start is ignored
            start_message(sid, &stream_sid, &["ignored"]),
        ];
        for g in garbage {
            call.send(g).await;
        }
        call.ws
            .send(Message::Binary(vec![0xFF; 320].into()))
            .await
            .unwrap();

        // Media before start, on a second connection.
        let mut early = RawCall::unstarted(ws_connect(srv.addr, None).await.unwrap(), sid);
        early.send(wire(twilio::write_connected)).await;
        let media = early.media_message(&silence);
        early.send(media).await;
        let dtmf = wire(|b| twilio::write_dtmf(b, &early.stream_sid, 3, '1'));
        early.send(dtmf).await;
        early.ws.close(None).await.unwrap();
        expect_closed(&mut early.ws, Duration::from_secs(3)).await;

        // An oversized message on a third call ends that stream only.
        let big_sid = "CA00000000000000000000000000000402";
        let mut big = RawCall::open(srv.addr, big_sid, &[]).await;
        let huge = big.media_message(&vec![0x7F; max]);
        assert!(huge.len() > max);
        big.send(huge).await;
        expect_closed(&mut big.ws, Duration::from_secs(3)).await;

        // The first call is still alive: it answers speech, and marks round-trip.
        call.speak(&synthetic_speech(ms(700)), 400).await;
        call.pump_until(Duration::from_secs(10), |r| r.media >= 30 && r.marks.len() >= 4)
            .await;
        call.stop().await;
        srv.settle().await;

        let turns = srv.store.call_turns(sid).await.unwrap();
        assert_eq!(turns.len(), 1, "{turns:?}");
        assert_eq!(turns[0].user_text, "hello there");
        let ended = |sid: &str| {
            let store = srv.store.clone();
            let sid = sid.to_string();
            async move { store.call(&sid).await.unwrap().and_then(|c| c.end_reason) }
        };
        assert_eq!(ended(sid).await.as_deref(), Some("stop"));
        assert_eq!(ended(big_sid).await.as_deref(), Some("oversized_message"));

        let m = srv.metrics().await;
        for (name, at_least) in [
            ("kav_malformed_messages_total", 2.0),
            ("kav_invalid_payloads_total", 1.0),
            ("kav_binary_frames_total", 1.0),
            ("kav_unknown_stream_sid_total", 3.0),
            ("kav_unknown_events_total", 2.0),
            ("kav_events_before_start_total", 2.0),
            ("kav_oversized_messages_total", 1.0),
        ] {
            assert_eq!(metric(&m, name), at_least, "{name}");
        }
        assert_eq!(metric(&m, "kav_calls_started_total"), 2.0);
        assert_eq!(metric(&m, "kav_calls_ended_total"), 2.0);
        assert_eq!(metric(&m, "kav_unknown_marks_total"), 0.0);
    })
    .await;
}

/// A stream that never sends `start` is closed after `server.start_timeout_ms` and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_without_start_times_out() {
    bounded(10, async {
        let srv = TestServer::start(|cfg, _| cfg.server.start_timeout_ms = 300).await;
        let mut ws = ws_connect(srv.addr, None).await.unwrap();
        ws.send(Message::Text(wire(twilio::write_connected).into()))
            .await
            .unwrap();
        let opened = Instant::now();
        expect_closed(&mut ws, Duration::from_secs(3)).await;
        let waited = opened.elapsed();
        assert!(
            waited >= ms(250) && waited < ms(2_000),
            "closed after {waited:?}"
        );
        srv.wait_idle(Duration::from_secs(3)).await;
        let m = srv.metrics().await;
        assert_eq!(metric(&m, "kav_start_timeouts_total"), 1.0);
        assert_eq!(metric(&m, "kav_calls_started_total"), 0.0);
        assert_eq!(metric(&m, "kav_abrupt_disconnects_total"), 0.0);
    })
    .await;
}

/// The caller vanishes mid-reply (TCP dropped, no `stop`, no close frame).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_disconnect_mid_reply_ends_the_call_cleanly() {
    bounded(20, async {
        let srv = TestServer::start(|_, _| {}).await;
        let sid = "CA00000000000000000000000000000701";
        let mut call = RawCall::open(srv.addr, sid, &["I would like to book an appointment"]).await;
        call.speak(&synthetic_speech(ms(700)), 300).await;
        call.pump_until(Duration::from_secs(10), |r| r.media >= 20)
            .await;
        drop(call); // no stop, no close handshake: the TCP connection just goes away
        srv.settle().await;

        let row = srv.store.call(sid).await.unwrap().expect("call row");
        let reason = row.end_reason.expect("end reason recorded");
        assert!(
            [
                "socket_error",
                "disconnected_without_stop",
                "closed_without_stop"
            ]
            .contains(&reason.as_str()),
            "{reason}"
        );
        assert!(row.ended_at_ms.is_some());
        let turns = srv.store.call_turns(sid).await.unwrap();
        assert_eq!(turns.len(), 1, "{turns:?}");
        assert!(
            turns[0].interrupted,
            "the caller left mid-reply: {:?}",
            turns[0]
        );
        let m = srv.metrics().await;
        assert_eq!(metric(&m, "kav_abrupt_disconnects_total"), 1.0);
        assert_eq!(metric(&m, "kav_calls_ended_total"), 1.0);
        assert_eq!(metric(&m, "kav_calls_active"), 0.0);
    })
    .await;
}

/// A WebSocket stand-in for `channels::twilio::call::run_call`: inbound messages come from a channel,
/// and its sink never accepts anything (a peer whose receive window stays shut).
struct StuckPeer {
    inbound: tokio::sync::mpsc::Receiver<axum::extract::ws::Message>,
}

impl futures_util::Stream for StuckPeer {
    type Item = Result<axum::extract::ws::Message, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inbound.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl futures_util::Sink<axum::extract::ws::Message> for StuckPeer {
    type Error = std::convert::Infallible;
    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Pending
    }
    fn start_send(
        self: std::pin::Pin<&mut Self>,
        _: axum::extract::ws::Message,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Pending
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Pending
    }
}

/// In memory: a peer that never drains is ended as a slow consumer even though, with nothing
/// echoing marks, the pacer stops producing after its lead (so no later send notices the full
/// queue), and the driver does not hang on the stuck writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_peer_in_memory_is_ended_as_slow_consumer() {
    bounded(15, async {
        let srv = TestServer::start(|cfg, _| {
            cfg.server.ws_send_queue = 4;
            cfg.server.slow_consumer_ms = 300;
        })
        .await;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let driver = tokio::spawn(kav::channels::twilio::call::run_call(
            StuckPeer { inbound: rx },
            srv.state.deps.clone(),
            stop_rx,
        ));
        let sid = "CA00000000000000000000000000000601";
        let text = |s: String| axum::extract::ws::Message::Text(s.into());
        let stream_sid = "MZ00000000000000000000000000000601";
        let _ = tx.send(text(wire(twilio::write_connected))).await;
        let start = start_message(sid, stream_sid, &["I would like to book an appointment"]);
        let _ = tx.send(text(start)).await;
        let audio = synthetic_speech(ms(700));
        let silence = vec![kav::voice::g711::SILENCE; 160];
        let frames = audio
            .chunks(160)
            .map(|c| c.to_vec())
            .chain(std::iter::repeat(silence));
        let started = Instant::now();
        let mut tick = tokio::time::interval(ms(20));
        // Twilio keeps streaming the caller's line; the peer just never reads.
        for (n, f) in (1u64..).zip(frames) {
            tick.tick().await;
            if driver.is_finished() || started.elapsed() > Duration::from_secs(10) {
                break;
            }
            let media = wire(|b| twilio::write_inbound_media(b, stream_sid, n + 1, n, n * 20, &f));
            // Once the call is over nobody reads this; don't block on it.
            let _ = tx.try_send(text(media));
        }
        assert!(driver.is_finished(), "the stuck call was never ended");
        let summary = driver.await.unwrap();
        assert_eq!(summary.end_reason, "slow_consumer", "{summary:?}");
        assert!(summary.wire.send_dropped > 0, "{summary:?}");
        // ~lead + queue, then 300 ms of a full queue, then at most 2 s for the writer.
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
        // The stuck writer was not left behind holding the socket.
        eventually("the socket stand-in to be dropped", ms(500), || {
            let closed = tx.is_closed();
            async move { closed }
        })
        .await;
        assert_eq!(
            srv.state
                .deps
                .metrics
                .get(kav::metrics::Counter::SlowConsumers),
            1
        );
    })
    .await;
}

/// Over real sockets: a peer that keeps talking (and acknowledging playback, so the server keeps
/// producing audio) but never reads is ended as `slow_consumer` once the kernel buffers and the
/// send queue are full; its connection is then closed; a concurrent call is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_ended_and_others_are_unaffected() {
    bounded(30, async {
        // Small kernel buffers on both ends so a few hundred ms of audio fills them.
        let listener = listener_small_sndbuf(4096);
        let srv = TestServer::on_listener(listener, None, |cfg, _| {
            cfg.server.ws_send_queue = 4;
            cfg.server.slow_consumer_ms = 300;
        })
        .await;

        let good_sid = "CA00000000000000000000000000000602";
        let good_opts = srv.caller(good_sid);
        let good = tokio::spawn(async move {
            caller::run_call(&good_opts, vec![say(600, "hello there"), wait_for_bot()]).await
        });

        let sid = "CA00000000000000000000000000000603";
        let ws = ws_connect_small_rcvbuf(srv.addr, 2048).await;
        let mut slow = RawCall::unstarted(ws, sid);
        slow.send(wire(twilio::write_connected)).await;
        let start = start_message(
            sid,
            &slow.stream_sid,
            &["I would like to book an appointment"],
        );
        slow.send(start).await;

        // Talk, then keep the line open with silence. From the end of speech on, acknowledge
        // marks blindly (names are `k<n>`, one per 100 ms of audio) as if playback progressed:
        // without echoes the pacer would stop after its lead and never fill anything.
        let audio = synthetic_speech(ms(700));
        let silence = vec![kav::voice::g711::SILENCE; 160];
        let mut frames = audio
            .chunks(160)
            .map(|c| c.to_vec())
            .chain(std::iter::repeat(silence));
        let mut tick = tokio::time::interval(ms(20));
        let started = Instant::now();
        let speech_end = started + ms(700);
        let mut ticks = 0u64;
        let mut ended_at = None;
        let send_failed = loop {
            tick.tick().await;
            ticks += 1;
            let now = Instant::now();
            if ended_at.is_none()
                && srv
                    .state
                    .deps
                    .metrics
                    .get(kav::metrics::Counter::SlowConsumers)
                    > 0
            {
                ended_at = Some(now);
            }
            if now - started > Duration::from_secs(20) {
                break false;
            }
            let mut batch = vec![slow.media_message(&frames.next().unwrap())];
            if now > speech_end && ticks.is_multiple_of(5) {
                let hi = 4 + (now - speech_end).as_millis() as u64 / 100;
                for id in hi.saturating_sub(30).max(1)..=hi {
                    batch.push(slow.mark_echo(&format!("k{id}")));
                }
            }
            let mut failed = false;
            for msg in batch {
                // Never read; only write. A write may block once the server stops reading.
                match tokio::time::timeout(ms(200), slow.ws.send(Message::Text(msg.into()))).await {
                    Ok(Ok(())) | Err(_) => {}
                    Ok(Err(_)) => failed = true,
                }
            }
            if failed {
                break true;
            }
        };
        let ended_at = ended_at.expect("the slow call was never ended");
        assert!(
            send_failed,
            "the server never closed the slow peer's connection"
        );
        // The writer gets 2 s to drain before the socket is dropped.
        assert!(
            ended_at.elapsed() < Duration::from_secs(5),
            "{:?}",
            ended_at.elapsed()
        );

        let report = good.await.unwrap().expect("the concurrent call");
        assert!(!report.closed_by_server, "{report:?}");
        assert!(report.frames_received > 50, "{report:?}");
        srv.settle().await;
        let reason = |sid: &'static str| {
            let store = srv.store.clone();
            async move { store.call(sid).await.unwrap().and_then(|c| c.end_reason) }
        };
        assert_eq!(reason(sid).await.as_deref(), Some("slow_consumer"));
        assert_eq!(reason(good_sid).await.as_deref(), Some("stop"));
        let turns = srv.store.call_turns(good_sid).await.unwrap();
        assert_eq!(turns.len(), 1, "{turns:?}");
        assert!(!turns[0].interrupted);
        let m = srv.metrics().await;
        assert_eq!(metric(&m, "kav_slow_consumers_total"), 1.0);
        assert!(metric(&m, "kav_ws_send_dropped_total") > 0.0);
        assert_eq!(metric(&m, "kav_calls_ended_total"), 2.0);
    })
    .await;
}

/// Shutdown: no new calls; live calls get `shutdown_grace_ms` to finish and `serve` returns as soon
/// as they have; a call still running at the deadline is closed by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_live_calls_within_the_grace_period() {
    bounded(30, async {
        // A call that ends by itself during the grace period: serve returns right after it.
        let mut srv = TestServer::start(|cfg, _| cfg.server.shutdown_grace_ms = 10_000).await;
        let mut call = RawCall::open(srv.addr, "CA00000000000000000000000000000901", &[]).await;
        call.speak(&[], 200).await;
        srv.trigger_shutdown().await;
        let served = srv.take_served();
        // New calls are refused: the listener is closed, or the webhook answers 503.
        let form_body = form(&voice_params("CA00000000000000000000000000000902"));
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        match http(srv.addr, "POST", VOICE_PATH, &headers, &form_body).await {
            Ok(r) => assert_eq!(r.status, 503, "{r:?}"),
            Err(e) => {
                use std::io::ErrorKind::*;
                assert!(
                    matches!(
                        e.kind(),
                        ConnectionRefused | ConnectionReset | UnexpectedEof
                    ),
                    "{e}"
                );
            }
        }
        // The live call still works during the grace period.
        call.speak(&[], 200).await;
        assert_eq!(srv.state.live_calls(), 1);
        assert!(!served.is_finished(), "serve must wait for the live call");
        let stopped = Instant::now();
        call.stop().await;
        tokio::time::timeout(Duration::from_secs(3), served)
            .await
            .expect("serve returns once the last call ended")
            .unwrap()
            .unwrap();
        assert!(stopped.elapsed() < Duration::from_secs(3));

        // A call that would run for ever is closed by the server when the grace period ends.
        let mut srv = TestServer::start(|cfg, _| cfg.server.shutdown_grace_ms = 800).await;
        let mut call = RawCall::open(srv.addr, "CA00000000000000000000000000000903", &[]).await;
        call.speak(&[], 100).await;
        let asked = Instant::now();
        srv.trigger_shutdown().await;
        let served = srv.take_served();
        let waited = expect_closed(&mut call.ws, Duration::from_secs(5)).await;
        assert!(
            waited >= ms(600),
            "closed after {waited:?}, before the grace period ended"
        );
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("serve returns after closing the straggler")
            .unwrap()
            .unwrap();
        assert!(asked.elapsed() < Duration::from_secs(5));
        srv.recorder.flush().await;
        let row = srv
            .store
            .call("CA00000000000000000000000000000903")
            .await
            .unwrap();
        let row = row.expect("the closed call was recorded");
        assert_eq!(row.end_reason.as_deref(), Some("shutdown"));
    })
    .await;
}

/// The one server-side barge-in reaction of a call (decision → `clear` flushed), ms, exact.
async fn server_barge_in_max_ms(srv: &TestServer, metrics: &str) -> f64 {
    assert_eq!(metric(metrics, "kav_barge_in_clear_ms_count"), 1.0);
    let latency: serde_json::Value =
        serde_json::from_str(&srv.get("/metrics/latency").await.body).unwrap();
    latency["barge_in"]["kav_barge_in_clear_ms"]["max"]
        .as_f64()
        .unwrap()
}
