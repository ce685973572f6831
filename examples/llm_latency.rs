//! Measures the OpenAI-compatible client: cold vs warmed first request, then time to first chunk
//! and to the end over N streamed completions.
//!
//! Against the local fake server (client + loopback overhead only):
//!   cargo run --release --example llm_latency -- 200
//! Through `LatencyProxy` giving the fake a network distance: 25 ms one way, 150 ms per new
//! connection (TCP + TLS to a cloud region), which is what warm-up saves:
//!   cargo run --release --example llm_latency -- 50 --distance 25,150
//! Against the server in config.toml `[llm]` (real network; key from KAV_LLM_API_KEY/OPENAI_API_KEY):
//!   cargo run --release --example llm_latency -- 20 --real

use std::time::{Duration, Instant};

use kav::caller::latency_proxy::LatencyProxy;
use kav::config::{Config, LlmConfig};
use kav::providers::openai::OpenAiChat;
use kav::providers::{ChatMessage, ChatModel, ChatRequest};
use kav::testing::fake_openai::{FakeOpenAi, FakeReply};
use tokio::sync::mpsc;

const REPLY: &str = "We are open from nine in the morning to five in the afternoon, Sunday to \
                     Thursday. Would you like me to book you an appointment?";

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::System("You are a receptionist. Answer in one sentence.".into()),
            ChatMessage::User("When are you open?".into()),
        ],
        tools: vec![],
        max_tokens: 60,
        temperature: 0.2,
    }
}

async fn one(model: &OpenAiChat) -> (u64, u64, Duration) {
    let (tx, mut rx) = mpsc::channel(256);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let started = Instant::now();
    let done = model.complete(request(), tx).await.expect("completion");
    let wall = started.elapsed();
    drain.await.unwrap();
    (done.ttfb_ms, done.total_ms, wall)
}

fn quantiles(label: &str, mut v: Vec<Duration>) {
    v.sort();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!(
        "{label:<26} n={:<4} p50={:>8.3} ms  p90={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms",
        v.len(),
        q(0.5).as_secs_f64() * 1e3,
        q(0.9).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let real = args.iter().any(|a| a == "--real");
    let distance: Option<(u64, u64)> = args
        .iter()
        .position(|a| a == "--distance")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.split_once(','))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));

    let mut _proxy = None;
    let (_fake, cfg) = if real {
        let cfg = Config::load(std::path::Path::new("config.toml")).expect("config.toml");
        (None, cfg.llm)
    } else {
        let fake = FakeOpenAi::start(vec![]).await;
        for _ in 0..n + 2 {
            fake.push(FakeReply::text(REPLY, 30));
        }
        let base_url = match distance {
            Some((one_way, connect)) => {
                let proxy = LatencyProxy::start(
                    fake.addr(),
                    Duration::from_millis(one_way),
                    Duration::from_millis(connect),
                )
                .await
                .expect("proxy");
                let url = format!("http://{}/v1", proxy.addr());
                _proxy = Some(proxy);
                url
            }
            None => fake.base_url(),
        };
        let cfg = LlmConfig {
            base_url,
            model: "fake".into(),
            ..LlmConfig::default()
        };
        (Some(fake), cfg)
    };
    println!("server: {} model: {}", cfg.base_url, cfg.model);

    // Cold: a fresh client's first completion pays for the connection.
    let cold = OpenAiChat::from_config(&cfg).expect("client");
    let (ttfb, total, wall) = one(&cold).await;
    println!("cold first completion:     ttfb={ttfb} ms total={total} ms wall={wall:?}");

    // Warmed: another fresh client, warmed first.
    let warmed = OpenAiChat::from_config(&cfg).expect("client");
    let warm_took = warmed.warm_up().await.expect("warm-up");
    let (ttfb, total, wall) = one(&warmed).await;
    println!(
        "warm-up took {warm_took:?}; warmed first completion: ttfb={ttfb} ms total={total} ms wall={wall:?}"
    );

    let mut walls = Vec::with_capacity(n);
    let mut ttfbs = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let (tx, mut rx) = mpsc::channel(256);
        let completion = warmed.complete(request(), tx);
        let first = tokio::spawn(async move {
            let first = rx.recv().await.map(|_| started.elapsed());
            while rx.recv().await.is_some() {}
            first
        });
        completion.await.expect("completion");
        walls.push(started.elapsed());
        ttfbs.push(first.await.unwrap().expect("a text delta"));
    }
    quantiles("first text delta", ttfbs);
    quantiles("whole streamed completion", walls);
}
