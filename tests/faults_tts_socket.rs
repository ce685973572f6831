//! Fault injection (issue 15) over real sockets: Google TTS fails on the second sentence of a
//! reply after the first one played. Google TTS is one unary `SynthesizeSpeech` request per
//! sentence, so the real-socket fault is a lost later sentence: the server answers it with a gRPC
//! error, or the connection is reset in the middle of its response. A whole call runs through
//! the in-process server (`server::serve` on 127.0.0.1:0, a real Media Streams WebSocket from the
//! simulated Twilio caller), with Google STT and TTS against the fake Google server and the LLM
//! booking agent against the fake OpenAI server (`tests/providers_e2e.rs` is the healthy case).
//!
//! The promises, as the engine keeps them (`tests/faults_tts.rs` proves them in virtual time):
//! the caller hears the first sentence whole, the lost one not at all, and the reply goes on
//! (the fallback is spoken only when not one sentence of a reply got through whole); the turn's
//! record and the next agent request say exactly what was heard; the failure is traced and
//! counted; the call goes on and the next turn is heard whole.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kav::caller::{self, CallReport, Step};
use kav::testing::fake_google::{FakeGoogle, ScriptedUtterance, SpeechFakeConfig};
use kav::testing::fake_openai::{FakeOpenAi, FakeReply};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ASK: &str = "When are you open on Friday";
const SENTENCES: [&str; 3] = [
    "We are open on Friday.",
    "The studio is on Herzl street, right next to the old bakery.",
    "Anything else?",
];
const THANKS: &str = "No thanks";
const SECOND_REPLY: &str = "Glad to help.";

/// How sentence 2's synthesis is broken.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// The fake answers `SynthesizeSpeech` with gRPC `UNAVAILABLE`.
    GrpcError,
    /// The TCP connection is reset (RST) after part of the response went through.
    ResetMidResponse,
}

/// A TCP relay between Kav's Google TTS client and the fake server. Once armed, it passes the
/// server's bytes until the first large read (a response body, not a control frame), forwards
/// half of that read, and resets the connection: both sockets closed with SO_LINGER 0, so the
/// client reads ECONNRESET in the middle of the response.
struct Relay {
    addr: SocketAddr,
    armed: Arc<AtomicBool>,
    resets: Arc<AtomicUsize>,
}

/// A read at least this large after arming is taken to be the response body.
const BODY_READ: usize = 1_024;

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let armed = Arc::new(AtomicBool::new(false));
        let resets = Arc::new(AtomicUsize::new(0));
        let (a, r) = (armed.clone(), resets.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, a.clone(), r.clone()));
            }
        });
        Self {
            addr,
            armed,
            resets,
        }
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    armed: Arc<AtomicBool>,
    resets: Arc<AtomicUsize>,
) {
    client.set_zero_linger().unwrap();
    server.set_zero_linger().unwrap();
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
        (client_rx, server_tx)
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if n >= BODY_READ && armed.swap(false, Ordering::SeqCst) {
            let _ = client_tx.write_all(&buf[..n / 2]).await;
            let _ = client_tx.flush().await;
            // Give the half response time to reach the client, then reset mid-way.
            tokio::time::sleep(Duration::from_millis(20)).await;
            resets.fetch_add(1, Ordering::SeqCst);
            upstream.abort();
            return; // every half dropped with linger 0: RST both ways
        }
        if client_tx.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    upstream.abort();
}

/// 20 ms frames of the fake synthesiser's tone the caller received (silence frames not counted).
fn tone_frames(report: &CallReport) -> usize {
    report
        .bot_audio
        .chunks(160)
        .filter(|f| f.iter().any(|&b| b != 0xFF && b != 0x7F))
        .count()
}

/// Frames of tone the fake synthesises for `text`: 60 ms per character, at least 300 ms.
fn frames_for(text: &str) -> usize {
    (text.chars().count() * 3).max(15)
}

/// Polls until the fake TTS has received a request for `text`.
async fn wait_for_tts_request(google: &FakeGoogle, text: &str) {
    for _ in 0..2_000 {
        if google.tts_requests().iter().any(|r| r.text == text) {
            return;
        }
        tokio::time::sleep(ms(5)).await;
    }
    panic!("no TTS request for {text:?}: {:?}", google.tts_requests());
}

async fn sentence_two_fails(fault: Fault) {
    let google = FakeGoogle::start(SpeechFakeConfig::default())
        .await
        .unwrap();
    google.script([
        ScriptedUtterance::new(&["When are"], ASK),
        ScriptedUtterance::new(&[], THANKS),
    ]);
    let llm = FakeOpenAi::start(vec![
        FakeReply::text(SENTENCES.join(" "), 6),
        FakeReply::text(SECOND_REPLY, 2),
    ])
    .await;
    let google_addr: SocketAddr = google
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let relay = Relay::start(google_addr).await;
    let (stt, tts, base_url) = (
        google.endpoint(),
        format!("http://{}", relay.addr),
        llm.base_url(),
    );
    let srv = TestServer::start(move |cfg, _| {
        cfg.call.language = "en-US".into();
        cfg.call.stt = "google".into();
        cfg.call.tts = "google".into();
        cfg.call.agent = "openai".into();
        cfg.google.stt_endpoint = stt;
        cfg.google.tts_endpoint = tts;
        cfg.llm.base_url = base_url;
        cfg.llm.first_byte_timeout_ms = 1_000;
        cfg.llm.timeout_ms = 2_000;
        cfg.llm.retries = 0;
    })
    .await;
    assert_eq!(srv.state.deps.tts.name(), "google");
    // Each synthesis takes 300 ms, so the fault can be armed between one sentence's request and
    // the next (the call's sentences are synthesised one after another).
    google.set_tts_latency(ms(300));

    let sid = "CA00000000000000000000000000000f15";
    let steps = vec![
        say(800, ASK),
        wait_for_bot(),
        Step::Pause(ms(400)),
        say(800, THANKS),
        wait_for_bot(),
    ];
    let mut options = srv.caller(sid);
    options.record_bot_audio = true;
    let call = tokio::spawn(async move { caller::run_call(&options, steps).await });
    match fault {
        Fault::GrpcError => {
            wait_for_tts_request(&google, SENTENCES[0]).await;
            google.fail_next_tts(1);
        }
        Fault::ResetMidResponse => {
            wait_for_tts_request(&google, SENTENCES[1]).await;
            relay.arm();
        }
    }
    let report = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call ends")
        .unwrap()
        .unwrap();
    srv.settle().await;
    let what = format!("{fault:?}");
    if fault == Fault::ResetMidResponse {
        assert_eq!(relay.resets.load(Ordering::SeqCst), 1, "{what}");
    }

    // Sentence 2 was asked for once and lost; the reply went on with sentence 3.
    let asked: Vec<String> = google.tts_requests().into_iter().map(|r| r.text).collect();
    assert_eq!(
        asked.iter().filter(|t| *t == SENTENCES[1]).count(),
        1,
        "{what}: {asked:?}"
    );
    // What the caller heard: sentence 1 whole, nothing of sentence 2, sentence 3, and the next
    // turn's reply whole; not the fallback (a whole sentence of the reply got through).
    let heard = tone_frames(&report);
    assert_eq!(
        heard,
        frames_for(SENTENCES[0]) + frames_for(SENTENCES[2]) + frames_for(SECOND_REPLY),
        "{what}: {} frames received",
        report.frames_received
    );

    // The turn's record says what was heard; the failure is traced and counted.
    let turns = srv.store.call_turns(sid).await.unwrap();
    assert_eq!(turns.len(), 2, "{what}: {turns:#?}");
    let heard_text = format!("{} {}", SENTENCES[0], SENTENCES[2]);
    assert_eq!(turns[0].bot_text, heard_text, "{what}");
    assert_eq!(turns[1].user_text, THANKS, "{what}");
    assert_eq!(
        turns[1].bot_text, SECOND_REPLY,
        "{what}: the next turn works"
    );
    let events = srv.store.call_events(sid).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "tts_error"),
        "{what}: {events:#?}"
    );
    assert_eq!(
        metric(&srv.metrics().await, "kav_tts_errors_total"),
        1.0,
        "{what}"
    );
    // The model's next request carries what the caller heard, not what it wrote.
    let requests = llm.requests();
    assert_eq!(requests.len(), 2, "{what}");
    let messages = requests[1]["messages"].as_array().unwrap();
    let assistant: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "assistant")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(assistant, [heard_text.as_str()], "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_tts_error_on_the_second_sentence_the_caller_hears_the_rest_and_the_call_goes_on() {
    sentence_two_fails(Fault::GrpcError).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_tts_connection_reset_mid_response_on_the_second_sentence_the_call_goes_on() {
    sentence_two_fails(Fault::ResetMidResponse).await;
}
