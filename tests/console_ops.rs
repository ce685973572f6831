//! The console's live ops view over a real server (127.0.0.1:0, SQLite in a temp dir, simulated
//! call providers): a simulated call appears in the server-sent event stream and leaves it when it
//! ends; a call's waterfall shows the marks of its recorded turns to scale; latency percentiles
//! per business and provider against a known set of rows; counters; tenant isolation (403) on
//! every ops route. The store reads also run on PostgreSQL when `KAV_TEST_POSTGRES_URL` is set.

mod backends;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use kav::agent::BookingRuntime;
use kav::caller::{self, CallOptions, Step, synthetic_speech};
use kav::channels::twilio::call::CallDeps;
use kav::config::{BookingConfig, Config};
use kav::console::Console;
use kav::server::{self, AppState};
use kav::store::{Record, Recorder, Store};
use kav::testing::switchable_sender::SwitchableSender;
use kav::voice::events::{CallEvent, InputKind, LatencyMarks, TurnRecord};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const A: &str = "biz_escape_tlv";
/// A number of A (seeded) and of the second business (inserted below).
const TO_A: &str = "+97235550100";
const TO_B: &str = "+15550000001";
const ADMIN: &str = "ops-admin-token";

struct Server {
    url: String,
    store: Store,
    recorder: Recorder,
    state: Arc<AppState>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    start_with(|_| {}).await
}

async fn start_with(edit: impl FnOnce(&mut Config)) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.call.stt = "simulated".into();
    cfg.call.agent = "simulated".into();
    cfg.call.tts = "simulated".into();
    cfg.store.url = format!("sqlite://{}", dir.path().join("kav.db").display());
    edit(&mut cfg);
    let cfg = Arc::new(cfg);
    let store = Store::connect(&cfg.store.url).await.unwrap();
    second_business(&cfg.store.url).await;
    let (recorder, _writer) = store.recorder(1024);
    let rt = BookingRuntime::new(
        store.clone(),
        Arc::new(SwitchableSender::new()),
        kav::agent::system_clock(),
        BookingConfig::default(),
    );
    let providers = kav::app::providers_from_config(&cfg).await.unwrap();
    let deps = CallDeps::new(cfg.clone(), providers, Some(recorder.clone()));
    let state = AppState::new(deps, None, Some(store.clone()));
    let console = Console::new(rt, cfg.console.clone(), Some(ADMIN.into()));
    assert!(state.console.set(console).is_ok());
    tokio::spawn(server::serve(
        listener,
        state.clone(),
        std::future::pending::<()>(),
    ));
    Server {
        url: format!("http://{addr}"),
        store,
        recorder,
        state,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _dir: dir,
    }
}

/// `biz_other`, reached on [`TO_B`]: a copy of the seeded business.
async fn second_business(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    // One connection: the temporary table is the connection's own.
    let mut conn = pool.acquire().await.unwrap();
    for sql in [
        "CREATE TEMP TABLE copy AS SELECT * FROM businesses WHERE id = 'biz_escape_tlv'",
        "UPDATE copy SET id = 'biz_other', name = 'Other Studio'",
        "INSERT INTO businesses SELECT * FROM copy",
    ] {
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO business_numbers (channel, address, business_id) VALUES ('phone', $1, 'biz_other')",
    )
    .bind(TO_B)
    .execute(&mut *conn)
    .await
    .unwrap();
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// An account of `business` with an API token.
    async fn token(&self, email: &str, role: &str, business: Option<&str>) -> String {
        kav::console::admin::create_user(&self.store, email, role, business, "a long password", 0)
            .await
            .unwrap();
        kav::console::admin::create_token(&self.store, email, "ops", 0)
            .await
            .unwrap()
            .1
    }

    /// A GET with a bearer token; the body is left to read (or stream).
    async fn open(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, String) {
        let r = self.open(token, path).await;
        (r.status(), r.text().await.unwrap())
    }

    async fn json(&self, token: &str, path: &str) -> Value {
        let (status, body) = self.get(token, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// A call to `to`, started now, served by `providers`.
    fn call(&self, sid: &str, to: &str, providers: &str) -> String {
        record_call(&self.recorder, sid, to, providers, now_ms())
    }

    fn turn(&self, call_id: &str, turn: u32, at_ms: i64, marks: LatencyMarks) {
        record_turn(&self.recorder, call_id, turn, at_ms, marks);
    }
}

/// A call's start (parameters as Twilio would pass them) and its providers; returns its id.
fn record_call(recorder: &Recorder, sid: &str, to: &str, providers: &str, at_ms: i64) -> String {
    let call_id = format!("{sid}:MZ{sid}");
    recorder.record(Record::CallStarted {
        call_id: call_id.clone(),
        call_sid: sid.into(),
        stream_sid: format!("MZ{sid}"),
        account_sid: "AC".into(),
        at_ms,
        parameters_json: json!({"To": to, "CallSid": sid}).to_string(),
    });
    recorder.record(Record::CallProviders {
        call_id: call_id.clone(),
        providers: providers.into(),
    });
    call_id
}

fn record_turn(recorder: &Recorder, call_id: &str, turn: u32, at_ms: i64, marks: LatencyMarks) {
    recorder.record(Record::Event {
        call_id: call_id.into(),
        at_ms,
        event: CallEvent::Turn(TurnRecord {
            turn,
            input: InputKind::Speech,
            user_text: format!("caller {turn}"),
            bot_text: format!("bot {turn}"),
            interrupted: false,
            marks,
            rtt_ms: None,
        }),
    });
}

fn total(ms: u32) -> LatencyMarks {
    LatencyMarks {
        total_ms: Some(ms),
        ..LatencyMarks::default()
    }
}

/// Reads `calls` events until one satisfies `done` (or fails after `within`).
async fn until_event(
    events: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let raw: String = buf.drain(..end + 2).collect();
            if !raw.lines().any(|l| l == "event: calls") {
                continue;
            }
            let data: Vec<&str> = raw
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or(l.strip_prefix("data:")))
                .collect();
            let data = data.join("\n");
            if done(&data) {
                return data;
            }
        }
        let chunk = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the awaited event did not come in time")
            .expect("the event stream ended")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_call_appears_in_the_event_stream_and_leaves_when_it_ends() {
    let s = start().await;
    let staff_b = s.token("staff@b.example", "staff", Some("biz_other")).await;
    let response = s.open(ADMIN, "/console/ops/events").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut events = response.bytes_stream();
    let mut buf = String::new();
    // The first event is the table as it is: empty.
    let first = until_event(&mut events, &mut buf, Duration::from_secs(10), |_| true).await;
    assert!(!first.contains("class=\"live-call\""), "{first}");
    // Another business's staff watch their own stream, which must never show this call.
    let other = s.open(&staff_b, "/console/api/ops/events").await;
    assert_eq!(other.status(), StatusCode::OK);
    let mut other_events = other.bytes_stream();
    let mut other_buf = String::new();

    let sid = "CA0ps000000000000000000000000001";
    let opts = CallOptions {
        server: s.url.clone(),
        call_sid: sid.into(),
        to: TO_A.into(),
        max_duration: Duration::from_secs(60),
        ..CallOptions::default()
    };
    let call = tokio::spawn(async move {
        // No greeting is configured: the caller speaks first.
        let steps = vec![
            Step::Pause(Duration::from_millis(300)),
            Step::Say {
                audio: Arc::new(synthetic_speech(Duration::from_millis(700))),
                transcript: "is the Dubai room free tomorrow".into(),
            },
            Step::WaitForBot {
                max: Duration::from_secs(15),
            },
            // Stay on the line for a few more snapshots.
            Step::Pause(Duration::from_millis(4000)),
        ];
        caller::run_call(&opts, steps).await.unwrap()
    });
    let row = format!("data-call-sid=\"{sid}\"");
    let seen = until_event(&mut events, &mut buf, Duration::from_secs(30), |d| {
        d.contains(&row)
    })
    .await;
    assert!(seen.contains("<tr class=\"live-call\""), "{seen}");
    assert!(
        seen.contains(&format!("href=\"/console/calls/{sid}")),
        "the row links to the call page: {seen}"
    );
    assert!(seen.contains(&format!("data-business=\"{A}\"")), "{seen}");
    // A later snapshot shows the call's progress (a completed turn).
    until_event(&mut events, &mut buf, Duration::from_secs(30), |d| {
        d.contains(&row) && !d.contains("<td class=\"turn\">0</td>")
    })
    .await;
    let report = call.await.unwrap();
    assert!(report.frames_received > 0);
    // The call ended: the next table no longer lists it, and the registry is empty.
    let gone = until_event(&mut events, &mut buf, Duration::from_secs(20), |d| {
        !d.contains(&row)
    })
    .await;
    assert!(!gone.contains("live-call\""), "{gone}");
    assert!(s.state.deps.live.is_empty());
    // The other business's stream (JSON under /api) listed nothing all along.
    let theirs = until_event(
        &mut other_events,
        &mut other_buf,
        Duration::from_secs(10),
        |_| true,
    )
    .await;
    let theirs: Value = serde_json::from_str(&theirs).unwrap();
    assert_eq!(theirs, json!([]));
    drop(other_events);

    // The finished call's page has its turns with a waterfall.
    s.recorder.flush().await;
    let view = s.json(ADMIN, &format!("/console/api/calls/{sid}")).await;
    assert_eq!(view["business"], A);
    let turns = view["turns"].as_array().unwrap();
    assert!(!turns.is_empty(), "{view}");
    let stored = s.store.call_turns(sid).await.unwrap();
    for (t, row) in turns.iter().zip(&stored) {
        let total = t["bars"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["mark"] == "total")
            .unwrap();
        assert_eq!(total["ms"].as_u64(), row.marks.total_ms.map(u64::from));
    }
}

#[tokio::test]
async fn the_waterfall_shows_each_turns_marks_to_scale() {
    let s = start().await;
    let call_id = s.call("CA_w", TO_A, "simulated/offline/espeak");
    let at = now_ms();
    s.turn(
        &call_id,
        1,
        at,
        LatencyMarks {
            stt_first_partial_ms: Some(150),
            stt_final_ms: Some(240),
            ai_latency_ms: Some(610),
            tts_ready_ms: Some(790),
            total_ms: Some(960),
            ai_total_ms: Some(1200),
            tts_total_ms: Some(900),
        },
    );
    s.turn(
        &call_id,
        2,
        at + 1,
        LatencyMarks {
            stt_final_ms: Some(300),
            total_ms: Some(600),
            ..LatencyMarks::default()
        },
    );
    s.recorder.record(Record::Event {
        call_id: call_id.clone(),
        at_ms: at + 2,
        event: CallEvent::BargeIn {
            turn: 2,
            heard_chars: 4,
            speech_ms: 300,
        },
    });
    s.recorder.flush().await;

    let view = s.json(ADMIN, "/console/api/calls/CA_w").await;
    // The scale is the largest mark of the call (ai_total 1200 ms), so total 960 ms is 80 %.
    assert_eq!(view["scale_ms"], 1200);
    assert_eq!(view["barge_ins"], 1);
    let t1 = &view["turns"][0];
    let bars: Vec<(String, Value, f64)> = t1["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["mark"].as_str().unwrap().to_string(),
                b["ms"].clone(),
                b["width_pct"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        bars,
        vec![
            ("stt_first_partial".to_string(), json!(150), 12.5),
            ("stt_final".to_string(), json!(240), 20.0),
            ("ai_latency".to_string(), json!(610), 50.8),
            ("tts_ready".to_string(), json!(790), 65.8),
            ("total".to_string(), json!(960), 80.0),
        ]
    );
    assert_eq!(view["turns"][1]["barged_in"], true);
    assert_eq!(view["turns"][1]["bars"][0]["ms"], Value::Null);

    // The page: one `.turn` per turn, bars with CSS widths and the values as text.
    let (status, html) = s.get(ADMIN, "/console/calls/CA_w").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"waterfall\""));
    assert_eq!(
        html.matches("<div class=\"turn-head\">").count(),
        2,
        "{html}"
    );
    assert!(
        html.contains("<div class=\"turn\" data-turn=\"1\">"),
        "{html}"
    );
    assert!(
        html.contains("<div class=\"turn barged-in\" data-turn=\"2\">"),
        "{html}"
    );
    assert!(
        html.contains(
            "class=\"bar\" data-mark=\"stt_final\" data-ms=\"240\" style=\"width: 20.0%\""
        ),
        "{html}"
    );
    assert!(html.contains("960 ms"));
    assert!(html.contains("caller 1") && html.contains("bot 2"));
    // Unknown calls: 404.
    let (status, _) = s.get(ADMIN, "/console/calls/CA_nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn percentiles_per_business_and_provider_over_hour_and_day() {
    let s = start().await;
    let now = now_ms();
    let recent = s.call("CA_p1", TO_A, "google/booking/google");
    let earlier = s.call("CA_p2", TO_A, "google/booking/google");
    let other_provider = s.call("CA_p3", TO_A, "whisper/offline/espeak");
    let other_business = s.call("CA_p4", TO_B, "google/booking/google");
    for i in 1..=100u32 {
        s.turn(&recent, i, now - 10 * 60_000, total(i * 10)); // 10..1000 ms, last hour
        s.turn(&earlier, i, now - 3 * 3_600_000, total(1000 + i)); // earlier today
    }
    s.turn(&earlier, 500, now - 25 * 3_600_000, total(9000)); // older than a day
    s.turn(&other_provider, 1, now - 60_000, total(444));
    s.turn(&other_business, 1, now - 60_000, total(777));
    s.recorder.flush().await;

    let view = s.json(ADMIN, "/console/api/ops").await;
    let rows = view["percentiles"].as_array().unwrap();
    let find = |b: &str, p: &str, w: &str| {
        rows.iter()
            .find(|r| {
                r["business"] == b && r["provider"] == p && r["window"] == w && r["mark"] == "total"
            })
            .unwrap_or_else(|| panic!("no {b} {p} {w} in {rows:?}"))
            .clone()
    };
    let hour = find(A, "google/booking/google", "hour");
    assert_eq!(
        (&hour["count"], &hour["p50"], &hour["p95"], &hour["p99"]),
        (&json!(100), &json!(500), &json!(950), &json!(990))
    );
    let day = find(A, "google/booking/google", "day");
    assert_eq!(
        (&day["count"], &day["p50"], &day["p95"], &day["p99"]),
        (&json!(200), &json!(1000), &json!(1090), &json!(1098))
    );
    assert_eq!(find(A, "whisper/offline/espeak", "hour")["p99"], 444);
    assert_eq!(
        find("biz_other", "google/booking/google", "day")["p50"],
        777
    );
    // 200 turns of A's first provider, one of its second, one of the other business.
    assert_eq!(view["rows_read"], 202);
    // The chart's last buckets carry the recent turns' p95.
    let series = view["series"]["p95_total_ms"].as_array().unwrap();
    assert_eq!(series.len(), 288);
    assert!(series.iter().any(|v| *v == json!(950)), "{series:?}");

    // A business's owner sees their business only; the page has the hooks.
    let owner = s.token("owner@a.example", "owner", Some(A)).await;
    let mine = s.json(&owner, "/console/api/ops").await;
    assert!(
        mine["percentiles"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["business"] == A)
    );
    let counters: Vec<&str> = mine["counters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"].as_str().unwrap())
        .collect();
    assert!(
        !counters.contains(&"process"),
        "process-wide counters are the admin's"
    );
    let (status, html) = s.get(&owner, "/console/b/biz_escape_tlv/ops").await;
    assert_eq!(status, StatusCode::OK);
    for hook in [
        "id=\"live-calls\"",
        "id=\"percentiles\"",
        "id=\"latency-chart\"",
        "id=\"counters\"",
        "data-window=\"hour\" data-mark=\"total\"",
    ] {
        assert!(html.contains(hook), "{hook} missing");
    }
    assert!(!html.contains("biz_other"));
    let (status, html) = s.get(&owner, "/console/ops?lang=he").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("dir=\"rtl\"") && html.contains("שיחות חיות"));
}

#[tokio::test]
async fn counters_come_from_the_registry_metrics_and_store() {
    let s = start().await;
    s.state
        .deps
        .metrics
        .add(kav::metrics::Counter::Underruns, 3);
    s.state
        .deps
        .metrics
        .add(kav::metrics::Counter::AgentErrors, 2);
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!(
        "sqlite://{}",
        s._dir.path().join("kav.db").display()
    ))
    .await
    .unwrap();
    for (id, biz, state) in [
        ("i1", A, "queued"),
        ("i2", A, "working"),
        ("i3", A, "failed"),
        ("i4", "biz_other", "queued"),
    ] {
        sqlx::query(
            "INSERT INTO whatsapp_inbox (id, provider, business_id, conversation_id, payload_json, \
             state, attempts, received_at_ms) VALUES ($1, 'meta', $2, 'c', '{}', $3, 0, 0)",
        )
        .bind(id)
        .bind(biz)
        .bind(state)
        .execute(&pool)
        .await
        .unwrap();
    }
    let view = s.json(ADMIN, "/console/api/ops").await;
    let value = |v: &Value, name: &str, source: &str| {
        v["counters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name && c["source"] == source)
            .unwrap_or_else(|| panic!("no counter {name}/{source}"))["value"]
            .clone()
    };
    assert_eq!(value(&view, "underruns", "process"), 3);
    assert_eq!(value(&view, "fallbacks", "process"), 2);
    assert_eq!(value(&view, "live_calls", "live"), 0);
    assert_eq!(view["whatsapp"]["inbox_depth"], 3);
    assert_eq!(view["whatsapp"]["inbox_failed"], 1);
    let b = s.json(ADMIN, "/console/api/b/biz_escape_tlv/ops").await;
    assert_eq!(b["whatsapp"]["inbox_depth"], 2);
    let (status, html) = s.get(ADMIN, "/console/ops").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("data-counter=\"whatsapp_inbox_depth\""));
}

#[tokio::test]
async fn every_ops_route_is_closed_to_other_tenants() {
    let s = start().await;
    let staff_a = s.token("staff@a.example", "staff", Some(A)).await;
    s.call("CA_b1", TO_B, "google/booking/google");
    s.call("CA_a1", TO_A, "google/booking/google");
    s.recorder.flush().await;
    for path in [
        "/console/b/biz_other/ops",
        "/console/b/biz_other/ops/events",
        "/console/calls/CA_b1",
        "/console/api/b/biz_other/ops",
        "/console/api/b/biz_other/ops/events",
        "/console/api/calls/CA_b1",
    ] {
        let (status, _) = s.get(&staff_a, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        // And nothing without credentials.
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert!(
            r.status() == StatusCode::UNAUTHORIZED || r.status() == StatusCode::SEE_OTHER,
            "{path}: {}",
            r.status()
        );
    }
    for path in [
        "/console/b/biz_escape_tlv/ops",
        "/console/calls/CA_a1",
        "/console/api/calls/CA_a1",
        "/console/ops",
    ] {
        let (status, body) = s.get(&staff_a, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // The admin may open any business's view.
    let (status, _) = s.get(ADMIN, "/console/b/biz_other/ops").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.get(ADMIN, "/console/b/biz_nowhere/ops").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn event_streams_are_bounded_and_outlive_the_request_timeout() {
    let s = start_with(|c| {
        c.console.ops_max_streams = 3;
        c.limits.request_timeout_ms = 300;
    })
    .await;
    let max = s.state.deps.config.console.ops_max_streams;
    let mut open = Vec::new();
    for _ in 0..max {
        let r = s.open(ADMIN, "/console/api/ops/events").await;
        assert_eq!(r.status(), StatusCode::OK);
        open.push(r);
    }
    let (status, body) = s.get(ADMIN, "/console/api/ops/events").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // Closing one frees its slot (the server notices on its next write).
    drop(open.pop());
    // At the latest with the next heartbeat.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.open(ADMIN, "/console/api/ops/events").await;
        if r.status() == StatusCode::OK {
            // The request timeout bounds the handler, not the stream it returns.
            let mut events = r.bytes_stream();
            let mut buf = String::new();
            until_event(&mut events, &mut buf, Duration::from_secs(10), |_| true).await;
            assert!(
                tokio::time::timeout(Duration::from_secs(1), events.next())
                    .await
                    .is_err(),
                "the stream ended or sent something unprompted"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn window_reads_on_every_backend() {
    for backend in backends::backends().await {
        let store = Store::connect(&backend.url).await.unwrap();
        let (recorder, _writer) = store.recorder(64);
        let c1 = record_call(&recorder, "CA1", TO_A, "google/booking/google", 1_000);
        for (turn, at) in [(1u32, 5_000i64), (2, 9_000), (3, 500)] {
            record_turn(&recorder, &c1, turn, at, total(100 * turn));
        }
        // A turn whose call start never reached the database still counts.
        record_turn(&recorder, "lost", 1, 7_000, total(42));
        recorder.flush().await;
        let rows = store.turns_since(1_000, 10).await.unwrap();
        let got: Vec<(i64, Option<&str>, &str, Option<u32>)> = rows
            .iter()
            .map(|r| {
                (
                    r.turn.at_ms,
                    r.providers.as_deref(),
                    r.parameters_json.as_str(),
                    r.turn.marks.total_ms,
                )
            })
            .collect();
        let params = json!({"To": TO_A, "CallSid": "CA1"}).to_string();
        assert_eq!(
            got,
            vec![
                (
                    9_000,
                    Some("google/booking/google"),
                    params.as_str(),
                    Some(200)
                ),
                (7_000, None, "{}", Some(42)),
                (
                    5_000,
                    Some("google/booking/google"),
                    params.as_str(),
                    Some(100)
                ),
            ],
            "{}",
            backend.name
        );
        assert_eq!(store.turns_since(1_000, 2).await.unwrap().len(), 2);
        let health = store.whatsapp_health(Some(A)).await.unwrap();
        assert_eq!(health.inbox_depth, 0, "{}", backend.name);
        store.whatsapp_health(None).await.unwrap();
        drop(store);
        backend.cleanup().await;
    }
}
