//! First-turn latency of a whole call with and without pre-connect.
//!
//! Real clients (Google STT + TTS over gRPC, the OpenAI-compatible LLM over HTTP/SSE) talk to the
//! local fake servers through `LatencyProxy`, which gives each a network distance (one-way delay)
//! and a cost per new connection (TCP + TLS + token on a real cloud link). The fakes answer with
//! fixed latencies. Every sample is a fresh server (fresh clients and pools) answering one call:
//! a webhook, `ring_ms` of ringing, then the media stream with one caller utterance. The first
//! turn's TOTAL_MS (end of caller speech → first bot audio frame) is read from the turns table.
//!
//!   cargo run --release --example first_turn -- [samples] [--distance ONE_WAY_MS,CONNECT_MS]
//!
//! Modes:
//! - `cold`: no pre-connect. The LLM connection is opened on the first turn.
//! - `preconnect`: the webhook (phone ringing) opens the STT stream and the LLM connection.
//!
//! In both modes the Google channels are connected when the providers start (that is the
//! providers' start-up check), so the difference measured is the per-call part.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kav::caller::latency_proxy::LatencyProxy;
use kav::caller::{self, CallOptions, Step};
use kav::channels::twilio::call::CallDeps;
use kav::config::Config;
use kav::server::{self, AppState};
use kav::store::Store;
use kav::testing::fake_google::{FakeGoogle, ScriptedUtterance, SpeechFakeConfig};
use kav::testing::fake_openai::{FakeOpenAi, FakeReply};
use tokio::net::TcpListener;

const SAID: &str = "I would like to book for tomorrow";
const REPLY: &str = "Sure. What time suits you tomorrow?";
/// Fixed provider latencies of the fakes.
const LLM_FIRST_BYTE: Duration = Duration::from_millis(250);
const TTS_LATENCY: Duration = Duration::from_millis(60);
const STT_FINAL_DELAY: Duration = Duration::from_millis(80);

fn arg_pair(args: &[String], flag: &str) -> Option<(u64, u64)> {
    let i = args.iter().position(|a| a == flag)?;
    let (a, b) = args.get(i + 1)?.split_once(',')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

async fn one_call(
    cfg: Config,
    dir: &std::path::Path,
    sample: usize,
    ring: Duration,
) -> (Option<u32>, Option<u32>) {
    let mut cfg = cfg;
    cfg.store.url = format!("sqlite://{}", dir.join(format!("s{sample}.db")).display());
    let cfg = Arc::new(cfg);
    let store = Store::connect(&cfg.store.url).await.expect("store");
    let (recorder, _writer) = store.recorder(cfg.store.writer_queue);
    let providers = kav::app::providers_from_config(&cfg)
        .await
        .expect("providers");
    let deps = CallDeps::new(cfg.clone(), providers, Some(recorder.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().unwrap();
    let state = AppState::new(deps, None, Some(store.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server::serve(listener, state, async move {
        let _ = stop_rx.await;
    }));

    let sid = format!("CA{:032}", sample);
    let opts = CallOptions {
        server: format!("http://{addr}"),
        call_sid: sid.clone(),
        lead_frames: cfg.playout.lead_frames,
        max_duration: Duration::from_secs(30),
        ..CallOptions::default()
    };
    // The webhook while the phone rings; `run_call` posts it again when the call is answered.
    caller::fetch_twiml(&opts).await.expect("webhook");
    tokio::time::sleep(ring).await;
    let steps = vec![
        Step::Say {
            audio: Arc::new(caller::synthetic_speech(Duration::from_millis(900))),
            transcript: SAID.into(),
        },
        Step::WaitForBot {
            max: Duration::from_secs(15),
        },
    ];
    caller::run_call(&opts, steps).await.expect("call");
    recorder.flush().await;
    let turns = store.call_turns(&sid).await.expect("turns");
    let _ = stop_tx.send(());
    let _ = served.await;
    let first = turns.iter().find(|t| t.input_kind.as_str() == "speech");
    (
        first.and_then(|t| t.marks.total_ms),
        first.and_then(|t| t.marks.ai_latency_ms),
    )
}

fn summary(label: &str, mut v: Vec<u32>) {
    v.sort_unstable();
    if v.is_empty() {
        println!("{label:<12} no samples");
        return;
    }
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!(
        "{label:<12} n={:<3} p50={:>5} ms  p90={:>5} ms  max={:>5} ms",
        v.len(),
        q(0.5),
        q(0.9),
        v[v.len() - 1]
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let samples: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let (one_way, connect) = arg_pair(&args, "--distance").unwrap_or((20, 150));
    let ring = Duration::from_millis(1_000);

    let google = FakeGoogle::start(SpeechFakeConfig {
        final_delay: STT_FINAL_DELAY,
        ..SpeechFakeConfig::default()
    })
    .await
    .expect("fake google");
    google.set_tts_latency(TTS_LATENCY);
    let llm = FakeOpenAi::start(vec![]).await;
    let google_addr: SocketAddr = google
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .expect("google addr");
    let llm_url = url::Url::parse(&llm.base_url()).expect("llm url");
    let llm_addr: SocketAddr = format!(
        "{}:{}",
        llm_url.host_str().unwrap(),
        llm_url.port().unwrap()
    )
    .parse()
    .unwrap();
    let (d, c) = (
        Duration::from_millis(one_way),
        Duration::from_millis(connect),
    );
    let google_proxy = LatencyProxy::start(google_addr, d, c).await.unwrap();
    let llm_proxy = LatencyProxy::start(llm_addr, d, c).await.unwrap();

    let mut cfg = Config::default();
    cfg.call.language = "en-US".into();
    cfg.call.stt = "google".into();
    cfg.call.tts = "google".into();
    cfg.call.agent = "openai".into();
    cfg.call.keep_warm_ms = 0;
    cfg.google.stt_endpoint = format!("http://{}", google_proxy.addr());
    cfg.google.tts_endpoint = format!("http://{}", google_proxy.addr());
    let mut base = llm_url.clone();
    base.set_port(Some(llm_proxy.addr().port())).unwrap();
    cfg.llm.base_url = base.to_string().trim_end_matches('/').to_string();
    cfg.llm.first_byte_timeout_ms = 3_000;

    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "fakes: {one_way} ms one way, {connect} ms per new connection; LLM first byte {} ms, \
         TTS {} ms, STT final {} ms after end of speech; ring {} ms; {samples} calls per mode",
        LLM_FIRST_BYTE.as_millis(),
        TTS_LATENCY.as_millis(),
        STT_FINAL_DELAY.as_millis(),
        ring.as_millis()
    );
    let mut sample = 0;
    for preconnect in [false, true] {
        let mut totals = Vec::new();
        let mut ai = Vec::new();
        for _ in 0..samples {
            sample += 1;
            google.script([ScriptedUtterance::new(&["I would like"], SAID)]);
            llm.push(FakeReply::text(REPLY, 8).delay_first_byte(LLM_FIRST_BYTE));
            let mut c = cfg.clone();
            c.call.preconnect = preconnect;
            let (total, ai_ms) = one_call(c, dir.path(), sample, ring).await;
            totals.extend(total);
            ai.extend(ai_ms);
        }
        let mode = if preconnect { "preconnect" } else { "cold" };
        println!("{mode}:");
        summary("  TOTAL_MS", totals);
        summary("  AI_LATENCY", ai);
    }
}
