//! Two real `kav serve` processes on one database (issue 15): PostgreSQL when
//! `KAV_TEST_POSTGRES_URL` is set (as in CI), else a shared SQLite file.
//!
//! * 1,000 deliveries of a three-message WhatsApp conversation ("Barcelona, the day after
//!   tomorrow at 19:00?" / "Noa" / "yes"), each message delivered hundreds of times and spread
//!   over both instances: exactly one reply per message, one booking, one confirmation.
//! * A rolling restart: one instance is sent SIGTERM during a call; that call finishes on it while
//!   the other instance takes a new call, and the drained instance exits cleanly.

mod backends;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kav::caller::{self, CallOptions, Step, synthetic_speech};
use kav::channels::signature;
use kav::store::Store;
use kav::testing::fake_graph::{FakeGraph, FakeVendor, text_webhook};
use tokio::process::{Child, Command};

const APP_SECRET: &str = "two_instances_secret";
const ACCESS_TOKEN: &str = "EAAGtwo";
const SEEDED_NUMBER_ID: &str = "100200300400500";
const CUSTOMER: &str = "972529998877";
const DELIVERIES: [usize; 3] = [334, 333, 333];

struct Instance {
    child: Child,
    addr: SocketAddr,
}

async fn spawn_instance(db_url: &str, graph: &FakeVendor) -> Instance {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kav"))
        .args(["serve", "--listen", &addr.to_string()])
        .args(["--config", "/nonexistent/kav.toml"])
        .env("KAV_STORE_URL", db_url)
        .env("KAV_CALL_STT", "simulated")
        .env("KAV_CALL_AGENT", "offline")
        .env("KAV_CALL_TTS", "simulated")
        .env("KAV_CALL_GREETING", "")
        .env("KAV_CALL_LANGUAGE", "en-US")
        .env("KAV_CALL_KEEP_WARM_MS", "0")
        .env("KAV_SIM_STT_FINAL_MS", "fixed:50")
        .env("KAV_SIM_TTS_FIRST_AUDIO_MS", "fixed:50")
        .env("KAV_WHATSAPP_GRAPH_BASE_URL", &graph.base_url)
        .env("KAV_WHATSAPP_POLL_MS", "50")
        .env("KAV_BOOKING_OUTBOX_POLL_MS", "50")
        .env("KAV_LIMITS_WEBHOOK_RATE_PER_S", "0")
        .env("KAV_SERVER_SHUTDOWN_GRACE_MS", "20000")
        .env("WHATSAPP_APP_SECRET", APP_SECRET)
        .env("WHATSAPP_ACCESS_TOKEN", ACCESS_TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kav serve starts");
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("http://{addr}/readyz")).send().await
            && r.status() == 200
        {
            return Instance { child, addr };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("kav serve on {addr} did not become ready");
}

/// The accepted sends to the customer, in order.
fn sends(graph: &FakeVendor) -> Vec<String> {
    graph
        .sends()
        .into_iter()
        .filter(|s| s.status == 200)
        .map(|s| s.text().unwrap_or("<template>").to_string())
        .collect()
}

async fn wait_for_sends(graph: &FakeVendor, n: usize) -> Vec<String> {
    for _ in 0..1500 {
        let s = sends(graph);
        if s.len() >= n {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} sends: {:#?}", graph.sends());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_database() {
    let mut all = backends::backends().await;
    // PostgreSQL when configured (the issue's setting), else the shared SQLite file.
    let backend = all.pop().expect("a backend");
    for other in all {
        other.cleanup().await;
    }
    let store = Store::connect(&backend.url).await.unwrap();
    // "The day after tomorrow at 19:00" must be open whatever day the test runs.
    let week = r#"{"sun":["09:00","23:00"],"mon":["09:00","23:00"],"tue":["09:00","23:00"],
        "wed":["09:00","23:00"],"thu":["09:00","23:00"],"fri":["09:00","23:00"],
        "sat":["09:00","23:00"]}"#;
    store
        .set_opening_hours("biz_escape_tlv", week, 1)
        .await
        .unwrap();
    let graph = FakeGraph::graph(ACCESS_TOKEN).await.unwrap();
    let mut a = spawn_instance(&backend.url, &graph).await;
    let b = spawn_instance(&backend.url, &graph).await;
    let http = reqwest::Client::new();

    // ---- 1,000 deliveries of three messages over both instances.
    let messages = ["Barcelona, the day after tomorrow at 19:00?", "Noa", "yes"];
    let mut expected_sends = 0;
    for (i, (text, times)) in messages.iter().zip(DELIVERIES).enumerate() {
        let body = text_webhook(
            &format!("wamid.two.{i}"),
            CUSTOMER,
            SEEDED_NUMBER_ID,
            "15550100",
            text,
        );
        let sig = signature::hub_signature_256(APP_SECRET, &body);
        let posts = (0..times).map(|k| {
            let addr = if k % 2 == 0 { a.addr } else { b.addr };
            let req = http
                .post(format!("http://{addr}/whatsapp/webhook"))
                .header("content-type", "application/json")
                .header("x-hub-signature-256", sig.clone())
                .body(body.clone());
            async move { req.send().await.map(|r| r.status().as_u16()) }
        });
        let statuses = futures_util::future::join_all(posts).await;
        assert!(
            statuses.iter().all(|s| matches!(s, Ok(200))),
            "every delivery acknowledged: {:?}",
            statuses
                .iter()
                .filter(|s| !matches!(s, Ok(200)))
                .collect::<Vec<_>>()
        );
        // The last message is answered twice: the confirmation and the reply.
        expected_sends += if i == 2 { 2 } else { 1 };
        wait_for_sends(&graph, expected_sends).await;
    }
    // Give a duplicate that slipped through time to show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = sends(&graph);
    assert_eq!(
        sent.len(),
        4,
        "one reply per message + one confirmation: {sent:#?}"
    );
    assert!(sent[0].to_lowercase().contains("name"), "{sent:#?}");
    assert!(
        sent[1].contains("Noa") && sent[1].contains("Barcelona"),
        "the message taken by either instance continues the conversation: {sent:#?}"
    );
    let appointments = store
        .appointments_for_business("biz_escape_tlv")
        .await
        .unwrap();
    assert_eq!(appointments.len(), 1, "{appointments:#?}");
    assert_eq!(appointments[0].customer_name, "Noa");
    let start = jiff::Timestamp::from_millisecond(appointments[0].start_ms)
        .unwrap()
        .in_tz("Asia/Jerusalem")
        .unwrap();
    assert_eq!((start.hour(), start.minute()), (19, 0));

    // ---- Rolling restart: drain A during a call while B takes a new one.
    let speech = Arc::new(synthetic_speech(Duration::from_millis(700)));
    let script = |n: usize| {
        let mut steps = Vec::new();
        for _ in 0..n {
            steps.push(Step::Say {
                audio: speech.clone(),
                transcript: "Barcelona tomorrow at 19:00".into(),
            });
            steps.push(Step::WaitForBot {
                max: Duration::from_secs(15),
            });
            steps.push(Step::Pause(Duration::from_millis(500)));
        }
        steps
    };
    let opts = |addr: SocketAddr, sid: &str| CallOptions {
        server: format!("http://{addr}"),
        call_sid: sid.into(),
        max_duration: Duration::from_secs(40),
        ..CallOptions::default()
    };
    let (a_opts, a_script) = (
        opts(a.addr, "CA0000000000000000000000000000aa01"),
        script(3),
    );
    let on_a = tokio::spawn(async move { caller::run_call(&a_opts, a_script).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = a.child.id().expect("A runs");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // A no longer accepts; B takes the new call meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready_b = http
        .get(format!("http://{}/readyz", b.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(ready_b.status(), 200);
    let on_b = caller::run_call(
        &opts(b.addr, "CA0000000000000000000000000000bb01"),
        script(1),
    )
    .await
    .expect("B takes a new call during A's drain");
    assert_eq!(on_b.response_us.len(), 1, "{on_b:?}");
    let on_a = on_a.await.unwrap().expect("A's live call is not cut");
    assert_eq!(
        on_a.response_us.len(),
        3,
        "every turn answered on A: {on_a:?}"
    );
    assert!(!on_a.closed_by_server, "{on_a:?}");
    let status = tokio::time::timeout(Duration::from_secs(20), a.child.wait())
        .await
        .expect("A exits after draining")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let turns = store
        .call_turns("CA0000000000000000000000000000aa01")
        .await
        .unwrap();
    assert_eq!(turns.len(), 3, "A recorded its call before exiting");
    drop(b);
    backend.cleanup().await;
}
