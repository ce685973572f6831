//! Measures what the Google clients themselves add, against the fake gRPC servers on loopback
//! (the fake answers with no delay of its own): utterance end → final transcript delivered, and
//! TTS request → first audio chunk. Real Google adds its network and recognition time on top.
//!
//! `cargo run --release --example google_fake_latency -- 200`

use std::sync::Arc;
use std::time::{Duration, Instant};

use kav::config::Config;
use kav::providers::google::{GoogleStats, GoogleStt, GoogleTts};
use kav::providers::*;
use kav::testing::fake_google::{FakeGoogle, ScriptedUtterance, SpeechFakeConfig};
use tokio::sync::mpsc;

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.9),
        percentile(&v, 0.99),
        percentile(&v, 1.0)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let fake = FakeGoogle::start(SpeechFakeConfig {
        final_delay: Duration::ZERO,
        ..Default::default()
    })
    .await
    .expect("fake server");
    fake.script((0..n).map(|i| ScriptedUtterance::new(&[], &format!("utterance {i}"))));
    let mut cfg = Config::default();
    cfg.google.stt_endpoint = fake.endpoint();
    cfg.google.tts_endpoint = fake.endpoint();
    let stats = Arc::new(GoogleStats::default());

    let stt = GoogleStt::new(&cfg, stats.clone()).await.expect("stt");
    stt.warm().await.expect("warm");
    let (input, in_rx) = mpsc::channel(256);
    let (ev_tx, mut events) = mpsc::channel(64);
    let call = CallContext {
        call_sid: "CA-bench".into(),
        language: "he-IL".into(),
        ..Default::default()
    };
    tokio::spawn(stt.stream(call, in_rx, ev_tx));
    let mut stt_latency = Vec::with_capacity(n);
    for _ in 0..n {
        // 400 ms of audio (as a burst: the pace does not matter for what is measured here).
        for _ in 0..20 {
            input.send(SttInput::Mulaw([0x55; 160])).await.unwrap();
        }
        // Let the standby behind this stream open, as it would during real-time speech.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = Instant::now();
        input.send(SttInput::UtteranceEnd).await.unwrap();
        loop {
            match events.recv().await.expect("events") {
                SttEvent::Final { .. } => break,
                SttEvent::Partial { .. } => {}
            }
        }
        stt_latency.push(t.elapsed());
    }
    report("stt utterance end -> final (fake, loopback)", stt_latency);

    let tts = GoogleTts::new(&cfg, stats.clone()).await.expect("tts");
    tts.warm().await.expect("warm");
    let mut tts_latency = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, mut rx) = mpsc::channel(4);
        let t = Instant::now();
        let fut = tts.synthesize(format!("משפט מספר {i} לבדיקה"), "he-IL".into(), tx);
        let task = tokio::spawn(fut);
        rx.recv().await.expect("first chunk");
        tts_latency.push(t.elapsed());
        while rx.recv().await.is_some() {}
        task.await.unwrap().expect("synthesis");
    }
    report(
        "tts request -> first audio chunk (fake, loopback)",
        tts_latency,
    );
    let metrics = kav::metrics::Metrics::new();
    metrics.add_source(stats.clone());
    let text = metrics.render_prometheus(&[]);
    for line in text
        .lines()
        .filter(|l| l.starts_with("kav_google_stt_final_after_end_ms_"))
    {
        println!("GoogleStats {line}");
    }
}
