//! Limits that bound one client and admission control (issue 15), over real sockets on
//! 127.0.0.1:0: slow clients holding half a header are closed after the header-read timeout while
//! real calls go on, connections beyond the limit are closed at once, webhooks are rate-limited
//! per IP, and past `max_calls` new calls get the overflow TwiML and `/readyz` says not ready.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kav::caller::{self, Step, synthetic_speech};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

async fn bounded<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time bound")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn short_call() -> Vec<Step> {
    vec![
        Step::Say {
            audio: Arc::new(synthetic_speech(ms(700))),
            transcript: "hello there".into(),
        },
        Step::WaitForBot {
            max: Duration::from_secs(15),
        },
    ]
}

/// Reads until the server closes the connection; returns how long that took.
async fn closed_within(sock: &mut TcpStream, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(t0 + within, sock.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t0.elapsed()),
            // A 408 may come before the close; keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

const SLOW_CLIENTS: usize = 300;

/// The attack from the issue, scaled to a test: hundreds of connections each sending half a
/// request head. They are closed after the header-read timeout, a real call placed while they
/// are open completes, and file descriptors come back to where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_headers_are_closed_and_real_calls_go_on() {
    bounded(60, async {
        let srv = TestServer::start(|cfg, _| {
            cfg.limits.header_read_timeout_ms = 1_000;
            cfg.limits.max_connections = SLOW_CLIENTS + 50;
        })
        .await;
        let fds_before = open_fds();
        let mut slow = Vec::with_capacity(SLOW_CLIENTS);
        for _ in 0..SLOW_CLIENTS {
            let mut sock = TcpStream::connect(srv.addr).await.expect("connect");
            sock.write_all(b"POST /twilio/voice HTTP/1.1\r\nHost: kav\r\nContent-Ty")
                .await
                .expect("half a header");
            slow.push(sock);
        }
        let opened = Instant::now();

        // A real call while the slow clients hold their connections.
        let report = caller::run_call(
            &srv.caller("CA000000000000000000000000000000a1"),
            short_call(),
        )
        .await
        .expect("a real call is served");
        assert_eq!(report.response_us.len(), 1, "{report:?}");
        assert!(!report.closed_by_server, "{report:?}");

        for sock in &mut slow {
            let took = closed_within(sock, Duration::from_secs(10))
                .await
                .expect("a slow client is closed by the server");
            assert!(took < Duration::from_secs(10));
        }
        let all_closed = opened.elapsed();
        assert!(
            all_closed >= Duration::from_millis(900),
            "closed before the timeout: {all_closed:?}"
        );
        drop(slow);

        let text = srv.metrics().await;
        assert!(
            metric(&text, "kav_header_timeouts_total") >= SLOW_CLIENTS as f64,
            "{text}"
        );
        assert_eq!(metric(&text, "kav_connections_refused_total"), 0.0);
        srv.settle().await;
        // The server's side of every slow connection is closed too.
        eventually(
            "fds back to the baseline",
            Duration::from_secs(5),
            || async { open_fds() <= fds_before + 5 },
        )
        .await;
        eventually(
            "no open connections but this one",
            Duration::from_secs(5),
            || {
                let state = srv.state.clone();
                async move { state.limits.open_connections() == 0 }
            },
        )
        .await;
    })
    .await;
}

/// Beyond `max_connections` a new connection is closed at once and counted; once a slot frees,
/// connections are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once() {
    bounded(30, async {
        let srv = TestServer::start(|cfg, _| {
            cfg.limits.max_connections = 20;
            cfg.limits.header_read_timeout_ms = 20_000;
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..20 {
            held.push(TcpStream::connect(srv.addr).await.expect("connect"));
        }
        eventually("20 connections open", Duration::from_secs(5), || {
            let state = srv.state.clone();
            async move { state.limits.open_connections() == 20 }
        })
        .await;
        let mut extra = TcpStream::connect(srv.addr).await.expect("connect");
        let took = closed_within(&mut extra, Duration::from_secs(2))
            .await
            .expect("the 21st connection is closed at once");
        assert!(took < Duration::from_secs(2));
        drop(held);
        eventually("slots free again", Duration::from_secs(5), || {
            let state = srv.state.clone();
            async move { state.limits.open_connections() == 0 }
        })
        .await;
        let text = srv.metrics().await;
        assert!(
            metric(&text, "kav_connections_refused_total") >= 1.0,
            "{text}"
        );
    })
    .await;
}

/// Webhooks are limited per client IP: the burst passes, the next request gets 429 and is
/// counted; other routes are not limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_rate_limited_per_ip() {
    bounded(30, async {
        let srv = TestServer::start(|cfg, _| {
            cfg.limits.webhook_rate_per_s = 1;
            cfg.limits.webhook_burst = 5;
        })
        .await;
        let mut statuses = Vec::new();
        for _ in 0..7 {
            let r = srv
                .voice_webhook("CA000000000000000000000000000000b1")
                .await;
            statuses.push(r.status);
        }
        assert_eq!(statuses[..5], [200; 5], "{statuses:?}");
        assert_eq!(statuses[5..], [429, 429], "{statuses:?}");
        for _ in 0..10 {
            assert_eq!(srv.get("/healthz").await.status, 200, "not a webhook");
        }
        let text = srv.metrics().await;
        assert_eq!(metric(&text, "kav_rate_limited_total"), 2.0, "{text}");
    })
    .await;
}

/// Past `max_calls` the voice webhook answers the overflow TwiML (a short `<Say>` in the call's
/// language), the refusal is counted and `/readyz` is 503 while `/healthz` stays 200; the live
/// call is unaffected, and once it ends new calls are taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_new_calls_get_the_overflow_twiml() {
    bounded(60, async {
        let srv = TestServer::start(|cfg, _| {
            cfg.limits.max_calls = 1;
            cfg.call.language = "he-IL".into();
        })
        .await;
        assert_eq!(srv.get("/readyz").await.status, 200);
        let mut live = RawCall::open(srv.addr, "CA000000000000000000000000000000c1", &[]).await;
        eventually("one live call", Duration::from_secs(5), || {
            let state = srv.state.clone();
            async move { state.live_calls() == 1 }
        })
        .await;

        let r = srv
            .voice_webhook("CA000000000000000000000000000000c2")
            .await;
        assert_eq!(r.status, 200);
        assert!(r.body.contains("<Say language=\"he-IL\">"), "{}", r.body);
        assert!(!r.body.contains("<Stream"), "{}", r.body);
        let ready = srv.get("/readyz").await;
        assert_eq!(ready.status, 503, "{ready:?}");
        let ready: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
        assert_eq!(ready["reason"], "max_calls", "{ready}");
        assert_eq!(ready["store"], "ok", "{ready}");
        assert_eq!(srv.get("/healthz").await.status, 200, "alive, just full");
        // The simulated caller sees the refusal as such.
        let refused = caller::fetch_twiml(&srv.caller("CA000000000000000000000000000000c3")).await;
        assert!(
            matches!(refused, Err(caller::CallerError::Refused)),
            "{refused:?}"
        );

        // The live call still works.
        live.speak(&synthetic_speech(ms(700)), 400).await;
        live.stop().await;
        srv.wait_idle(Duration::from_secs(5)).await;
        assert_eq!(srv.get("/readyz").await.status, 200);
        let r = srv
            .voice_webhook("CA000000000000000000000000000000c2")
            .await;
        assert!(r.body.contains("<Stream"), "{}", r.body);
        let text = srv.metrics().await;
        assert_eq!(metric(&text, "kav_calls_refused_total"), 2.0, "{text}");
    })
    .await;
}

/// A call counts from the webhook that admits it, not from when its stream opens: webhooks that
/// arrive together cannot all pass before their streams do and overshoot `max_calls` (`kav
/// loadgen` at 120 % of capacity had 202 calls live under `max_calls = 200`). A place whose
/// stream never opens (the caller hung up while it rang) lapses after `admission_hold_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_calls_hold_their_place_until_their_stream_opens() {
    bounded(60, async {
        let srv = TestServer::start(|cfg, _| {
            cfg.limits.max_calls = 2;
            cfg.limits.admission_hold_ms = 1_500;
        })
        .await;
        let srv = &srv;
        let webhook = |sid: &'static str| async move { srv.voice_webhook(sid).await.body };
        // Three calls ring at once; no stream has opened yet.
        assert!(
            webhook("CA000000000000000000000000000000h1")
                .await
                .contains("<Stream")
        );
        assert!(
            webhook("CA000000000000000000000000000000h2")
                .await
                .contains("<Stream")
        );
        let third = webhook("CA000000000000000000000000000000h3").await;
        assert!(
            third.contains("<Say"),
            "the third is over capacity: {third}"
        );
        assert!(!third.contains("<Stream"), "{third}");
        let ready = srv.get("/readyz").await;
        assert_eq!(ready.status, 503, "{ready:?}");
        let ready: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
        assert_eq!(ready["calls_active"], 0, "{ready}");
        assert_eq!(ready["calls_admitted_pending"], 2, "{ready}");

        // The first call's stream opens: one live call and one place still held.
        let mut live = RawCall::open(srv.addr, "CA000000000000000000000000000000h1", &[]).await;
        eventually("one live call", Duration::from_secs(5), || {
            let state = srv.state.clone();
            async move { state.live_calls() == 1 }
        })
        .await;
        assert_eq!(srv.state.calls_admitted_pending(), 1);
        assert!(
            webhook("CA000000000000000000000000000000h4")
                .await
                .contains("<Say")
        );

        // The second caller never streams: its place lapses and a new call is taken.
        eventually("the unused place lapses", Duration::from_secs(5), || {
            let state = srv.state.clone();
            async move { state.calls_admitted_pending() == 0 }
        })
        .await;
        assert_eq!(srv.get("/readyz").await.status, 200);
        assert!(
            webhook("CA000000000000000000000000000000h5")
                .await
                .contains("<Stream")
        );
        let text = srv.metrics().await;
        assert_eq!(metric(&text, "kav_calls_refused_total"), 2.0, "{text}");

        // The live call was never disturbed.
        live.speak(&synthetic_speech(ms(700)), 400).await;
        live.stop().await;
    })
    .await;
}
