//! WhatsApp channel over real sockets: a Kav server on 127.0.0.1:0 with the WhatsApp routes, a
//! SQLite inbox, inbox workers, and fake Meta Graph / Twilio REST servers (kav::testing). Inputs
//! are the vendor payloads in shared/protocol-fixtures.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kav::channels::signature;
use kav::channels::twilio::call::CallDeps;
use kav::channels::whatsapp::inbox::{ConfigDirectory, WhatsAppSecrets, WhatsAppService};
use kav::config::{Config, WhatsAppNumber};
use kav::metrics::Metrics;
use kav::providers::sim;
use kav::providers::{
    Agent, AgentError, AgentEvent, AgentRequest, BoxFuture, CallContext, Role, SpeechToText,
    SttAudioFormat, SttError, SttEvent, SttInput,
};
use kav::server::{self, AppState};
use kav::store::Store;
use kav::testing::fake_graph::{FakeGraph, FakeTwilioRest};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const APP_SECRET: &str = "test_app_secret";
const VERIFY_TOKEN: &str = "meatyhamhock";
const ACCESS_TOKEN: &str = "EAAGtest";
const TWILIO_SID: &str = "ACccec30b8f64bfa44a6dc60d2a447f5c5";
const TWILIO_TOKEN: &str = "twilio_test_token";
const ADMIN_TOKEN: &str = "admin-secret";
/// phone_number_id and display number of the fixtures' business.
const NY_NUMBER_ID: &str = "106540352242922";
const CUSTOMER: &str = "16505551234";

/// Vendor payloads, copied verbatim into `fixtures/` (sources in each directory's SOURCES.md).
fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .with_test_writer()
        .try_init();
}

// ------------------------------------------------------------------ scripted providers

/// Answers "Noted: <last user message>" in markdown and records every request.
#[derive(Default)]
struct ScriptedAgent {
    requests: Mutex<Vec<AgentRequest>>,
    /// This many calls fail before the agent starts answering.
    failures: std::sync::atomic::AtomicU32,
}

impl ScriptedAgent {
    fn calls(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
    fn last(&self) -> AgentRequest {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("an agent call")
    }
}

impl Agent for ScriptedAgent {
    fn name(&self) -> &'static str {
        "scripted-test-agent"
    }
    fn respond(
        &self,
        request: AgentRequest,
        events: mpsc::Sender<AgentEvent>,
    ) -> BoxFuture<'static, Result<(), AgentError>> {
        let last = request
            .history
            .last()
            .map(|m| m.text.clone())
            .unwrap_or_default();
        self.requests.lock().unwrap().push(request);
        let fail = self
            .failures
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        Box::pin(async move {
            if fail {
                return Err(AgentError::retryable("model overloaded"));
            }
            for piece in ["**Noted**: ", last.as_str()] {
                let _ = events.send(AgentEvent::TextDelta(piece.to_string())).await;
            }
            Ok(())
        })
    }
}

/// A recogniser that measures the audio it is fed and reports a fixed transcript on
/// `UtteranceEnd`.
struct MeasuringStt {
    transcript: String,
    format: SttAudioFormat,
    /// (frames received, RMS dBFS of the audio)
    heard: Arc<Mutex<Option<(usize, f64)>>>,
}

impl SpeechToText for MeasuringStt {
    fn name(&self) -> &'static str {
        "measuring-test-stt"
    }
    fn audio_format(&self) -> SttAudioFormat {
        self.format
    }
    fn stream(
        &self,
        _call: CallContext,
        mut input: mpsc::Receiver<SttInput>,
        events: mpsc::Sender<SttEvent>,
    ) -> BoxFuture<'static, Result<(), SttError>> {
        let transcript = self.transcript.clone();
        let heard = self.heard.clone();
        Box::pin(async move {
            let (mut frames, mut sum, mut n) = (0usize, 0f64, 0usize);
            while let Some(msg) = input.recv().await {
                match msg {
                    SttInput::Pcm16k(frame) => {
                        frames += 1;
                        for s in frame {
                            sum += f64::from(s).powi(2);
                            n += 1;
                        }
                    }
                    SttInput::Mulaw(frame) => {
                        frames += 1;
                        for b in frame {
                            sum += f64::from(kav::voice::g711::decode(b)).powi(2);
                            n += 1;
                        }
                    }
                    SttInput::UtteranceEnd => {
                        let rms = (sum / n.max(1) as f64).sqrt() / 32768.0;
                        *heard.lock().unwrap() = Some((frames, 20.0 * rms.max(1e-6).log10()));
                        let _ = events
                            .send(SttEvent::Final {
                                text: transcript.clone(),
                            })
                            .await;
                    }
                    SttInput::UtteranceDiscarded => {}
                }
            }
            Ok(())
        })
    }
}

// ------------------------------------------------------------------ harness

struct Options {
    admin_token: bool,
    verify_token: bool,
    /// Start inbox workers.
    workers: bool,
    stt: Option<Arc<dyn SpeechToText>>,
    store_url: Option<String>,
    /// Twilio replies as TwiML instead of REST.
    twiml: bool,
    /// whatsapp.insecure_skip_signature (development only).
    insecure: bool,
    /// The service's wall clock (default: the system's).
    clock: Option<kav::clock::Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            admin_token: true,
            verify_token: true,
            workers: true,
            stt: None,
            store_url: None,
            twiml: false,
            insecure: false,
            clock: None,
        }
    }
}

struct Harness {
    addr: SocketAddr,
    http: reqwest::Client,
    svc: Arc<WhatsAppService>,
    agent: Arc<ScriptedAgent>,
    graph: FakeGraph,
    twilio: FakeTwilioRest,
    store: Store,
    workers: Vec<JoinHandle<()>>,
    server: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for w in &self.workers {
            w.abort();
        }
        self.server.abort();
    }
}

/// A harness whose recogniser hears `transcript` and records what it was fed.
async fn start_measuring(
    transcript: &str,
    format: SttAudioFormat,
) -> (Harness, Arc<Mutex<Option<(usize, f64)>>>) {
    let heard = Arc::new(Mutex::new(None));
    let stt = Arc::new(MeasuringStt {
        transcript: transcript.into(),
        format,
        heard: heard.clone(),
    });
    let h = start(Options {
        stt: Some(stt),
        ..Options::default()
    })
    .await;
    (h, heard)
}

fn numbers() -> Vec<WhatsAppNumber> {
    vec![
        WhatsAppNumber {
            business_id: "biz-ny".into(),
            business_name: "New York Studio".into(),
            language: "en-US".into(),
            phone_number_id: NY_NUMBER_ID.into(),
            display_number: "15550783881".into(),
        },
        WhatsAppNumber {
            business_id: "biz-bcn".into(),
            business_name: "Barcelona Studio".into(),
            language: "es-ES".into(),
            phone_number_id: "200000000000001".into(),
            display_number: "14155238886".into(),
        },
    ]
}

async fn start(opts: Options) -> Harness {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let graph = FakeGraph::graph(ACCESS_TOKEN).await.expect("fake graph");
    let twilio = FakeTwilioRest::twilio(TWILIO_SID, TWILIO_TOKEN)
        .await
        .expect("fake twilio");
    let mut cfg = Config::default();
    cfg.store.url = opts
        .store_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("kav.db").display()));
    cfg.call.tts = "simulated".into();
    cfg.whatsapp.graph_base_url = graph.base_url.clone();
    cfg.whatsapp.twilio_base_url = twilio.base_url.clone();
    cfg.whatsapp.numbers = numbers();
    // Small real delays keep retry tests quick; the schedule itself is unit-tested.
    cfg.whatsapp.retry_base_ms = 5;
    cfg.whatsapp.retry_max_ms = 20;
    cfg.whatsapp.poll_ms = 50;
    cfg.whatsapp.agent_timeout_ms = 10_000;
    cfg.whatsapp.insecure_skip_signature = opts.insecure;
    cfg.whatsapp.twilio_status_callback_url = STATUS_CALLBACK.into();
    if opts.twiml {
        cfg.whatsapp.twilio_reply = "twiml".into();
    }
    let cfg = Arc::new(cfg);
    let store = Store::connect(&cfg.store.url).await.expect("store");
    let lat = Arc::new(sim::SimLatencies::from_config(&cfg.sim).unwrap());
    let agent = Arc::new(ScriptedAgent::default());
    let stt: Arc<dyn SpeechToText> = opts
        .stt
        .clone()
        .unwrap_or_else(|| Arc::new(sim::SimulatedStt::new(lat.clone())));
    let deps = Arc::new(CallDeps {
        config: cfg.clone(),
        stt: stt.clone(),
        agent: agent.clone(),
        tts: Arc::new(sim::SimulatedTts::new(lat)),
        recorder: None,
        metrics: Arc::new(Metrics::new()),
        live: kav::channels::live::LiveCalls::for_config(&cfg),
    });
    let secrets = WhatsAppSecrets {
        app_secret: Some(APP_SECRET.into()),
        verify_token: opts.verify_token.then(|| VERIFY_TOKEN.into()),
        access_token: Some(ACCESS_TOKEN.into()),
        twilio_account_sid: Some(TWILIO_SID.into()),
        twilio_auth_token: Some(TWILIO_TOKEN.into()),
        admin_token: opts.admin_token.then(|| ADMIN_TOKEN.into()),
    };
    let svc = WhatsAppService::new(
        store.clone(),
        agent.clone(),
        stt,
        Arc::new(ConfigDirectory::new(cfg.whatsapp.numbers.clone())),
        cfg.whatsapp.clone(),
        secrets,
        opts.clock.clone().unwrap_or_else(kav::clock::system_clock),
    )
    .expect("service");
    let workers = if opts.workers {
        svc.spawn_workers()
    } else {
        Vec::new()
    };
    let state = AppState::with_whatsapp(deps, None, Some(store.clone()), Some(svc.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(server::serve(listener, state, std::future::pending()));
    Harness {
        addr,
        http: reqwest::Client::new(),
        svc,
        agent,
        graph,
        twilio,
        store,
        workers,
        server,
        _dir: dir,
    }
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn post_meta(&self, body: &[u8], signature: Option<&str>) -> (u16, String) {
        let mut req = self
            .http
            .post(self.url("/whatsapp/webhook"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        let resp = req.send().await.expect("post");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }

    async fn post_signed(&self, body: &[u8]) -> u16 {
        let sig = signature::hub_signature_256(APP_SECRET, body);
        self.post_meta(body, Some(&sig)).await.0
    }

    /// Waits until the inbox has nothing queued or in progress.
    /// The agent fails its next `failures` calls; then the customer's text message arrives.
    async fn text_with_agent_failures(&self, failures: u32) {
        self.agent
            .failures
            .store(failures, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            self.post_signed(&fixture("whatsapp/text_webhook.json"))
                .await,
            200
        );
    }

    async fn drained(&self) {
        eventually("inbox drained", || async {
            let counts = self.store.whatsapp_inbox_counts().await.unwrap();
            counts
                .iter()
                .all(|(state, n)| *n == 0 || state == "done" || state == "failed")
        })
        .await;
    }

    async fn outbound(
        &self,
        customer: &str,
        business: &str,
    ) -> Vec<kav::store::whatsapp::OutboundRow> {
        let conv = kav::store::whatsapp::conversation_id(business, customer);
        self.store.whatsapp_outbound_for(&conv).await.unwrap()
    }
}

/// Polls `cond` until true; fails after 20 s (a bound for a broken build, not a timing claim).
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..2000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn text_webhook(wamid: &str, from: &str, phone_number_id: &str, body: &str) -> Vec<u8> {
    kav::testing::fake_graph::text_webhook(wamid, from, phone_number_id, "15550783881", body)
}

fn status_webhook(wamid: &str, status: &str, ts: i64) -> Vec<u8> {
    let mut s = serde_json::json!({ "id": wamid, "status": status, "timestamp": ts.to_string(),
                                    "recipient_id": CUSTOMER });
    if status == "failed" {
        s["errors"] = serde_json::json!([{ "code": 131026, "title": "Message undeliverable" }]);
    }
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": NY_NUMBER_ID },
            "statuses": [s]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

// ------------------------------------------------------------------ verification and signatures

#[tokio::test]
async fn verification_echoes_challenge_only_with_the_right_token() {
    let h = start(Options::default()).await;
    let get = |q: String| {
        let http = h.http.clone();
        let url = h.url(&format!("/whatsapp/webhook?{q}"));
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // The fixture's query string, verbatim.
    let raw = String::from_utf8(fixture("whatsapp/verify_request.txt")).unwrap();
    // The fixture spreads the query over several lines.
    let query: String = raw
        .split_once('?')
        .expect("query in verify_request.txt")
        .1
        .split_whitespace()
        .collect();
    assert_eq!(get(query).await, (200, "1158201444".to_string()));
    let (status, _) = get("hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong".into()).await;
    assert_eq!(status, 403);
    let (status, _) = get("hub.mode=subscribe&hub.challenge=1".into()).await;
    assert_eq!(status, 403);

    let no_token = start(Options {
        verify_token: false,
        ..Options::default()
    })
    .await;
    let r = no_token
        .http
        .get(no_token.url("/whatsapp/webhook?hub.mode=subscribe&hub.challenge=1&hub.verify_token="))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "no configured token: refuse");
}

#[tokio::test]
async fn forged_unsigned_and_reserialised_webhooks_are_rejected() {
    let h = start(Options::default()).await;
    let body = fixture("whatsapp/text_webhook.json");
    let good = signature::hub_signature_256(APP_SECRET, &body);

    assert_eq!(h.post_meta(&body, None).await.0, 403, "unsigned");
    let forged = signature::hub_signature_256("not-the-secret", &body);
    assert_eq!(
        h.post_meta(&body, Some(&forged)).await.0,
        403,
        "wrong secret"
    );
    // Same JSON, re-serialised: the bytes differ, so the original signature must not validate.
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let reserialised = serde_json::to_vec(&value).unwrap();
    assert_ne!(reserialised, body);
    assert_eq!(
        h.post_meta(&reserialised, Some(&good)).await.0,
        403,
        "re-serialised"
    );
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'5').unwrap();
    tampered[at] = b'6';
    assert_eq!(h.post_meta(&tampered, Some(&good)).await.0, 403, "tampered");
    assert_eq!(
        h.post_meta(&body, Some("sha256=")).await.0,
        403,
        "empty signature"
    );

    assert_eq!(h.store.whatsapp_inbox_counts().await.unwrap(), vec![]);
    assert_eq!(h.agent.calls(), 0);

    // The genuine one is accepted and answered.
    assert_eq!(h.post_meta(&body, Some(&good)).await.0, 200);
    h.drained().await;
    assert_eq!(h.agent.calls(), 1);
    assert_eq!(h.graph.sends().len(), 1);
}

#[tokio::test]
async fn signature_checks_are_off_only_when_explicitly_disabled() {
    let h = start(Options {
        insecure: true,
        ..Options::default()
    })
    .await;
    assert_eq!(
        h.post_meta(&fixture("whatsapp/text_webhook.json"), None)
            .await
            .0,
        200
    );
    h.drained().await;
    assert_eq!(h.agent.calls(), 1);
    // A release build refuses the flag at start-up (WhatsAppService::new).
    use kav::channels::whatsapp::inbox::check_insecure_allowed;
    assert!(check_insecure_allowed(true, true).is_err());
    assert!(check_insecure_allowed(false, true).is_ok());
    assert!(check_insecure_allowed(true, false).is_ok());
}

// ------------------------------------------------------------------ exactly once

#[tokio::test]
async fn same_webhook_fifty_times_is_one_agent_call_and_one_reply() {
    let h = start(Options::default()).await;
    let body = fixture("whatsapp/text_webhook.json");
    let sig = signature::hub_signature_256(APP_SECRET, &body);
    let posts = (0..50).map(|_| h.post_meta(&body, Some(&sig)));
    let results = futures_util::future::join_all(posts).await;
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    h.drained().await;
    // Duplicates arriving after processing are also ignored.
    for _ in 0..5 {
        assert_eq!(h.post_signed(&body).await, 200);
    }
    h.drained().await;
    assert_eq!(h.agent.calls(), 1);
    let sends = h.graph.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(
        sends[0].sender_id, NY_NUMBER_ID,
        "reply from the business's number"
    );
    assert_eq!(
        h.graph.read_receipts(),
        vec!["wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=".to_string()],
        "marked read once"
    );
    assert_eq!(sends[0].body["to"], format!("+{CUSTOMER}"));
    assert!(
        sends[0].text().unwrap().starts_with("*Noted*: "),
        "markdown → WhatsApp bold"
    );
    assert_eq!(
        h.store.whatsapp_inbox_counts().await.unwrap(),
        vec![("done".to_string(), 1)]
    );
    assert_eq!(
        h.svc
            .stats
            .duplicates
            .load(std::sync::atomic::Ordering::Relaxed),
        54
    );

    // The agent ran as the WhatsApp channel with the documented parameters, and nothing the
    // sender controls chose the business.
    let req = h.agent.last();
    assert_eq!(req.channel, kav::providers::Channel::Whatsapp);
    let p = &req.call.parameters;
    assert_eq!(p.get("From").map(String::as_str), Some("+16505551234"));
    assert_eq!(p.get("To").map(String::as_str), Some("+15550783881"));
    assert_eq!(
        p.get("phone_number_id").map(String::as_str),
        Some(NY_NUMBER_ID)
    );
    assert_eq!(p.get("business_id").map(String::as_str), Some("biz-ny"));
    assert_eq!(req.call.language, "en-US");
}

#[tokio::test]
async fn queued_events_survive_a_restart_and_are_processed_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let first = start(Options {
        workers: false,
        store_url: Some(url.clone()),
        ..Options::default()
    })
    .await;
    let a = text_webhook("wamid.RESTART.A", CUSTOMER, NY_NUMBER_ID, "first");
    let b = text_webhook("wamid.RESTART.B", "447700900123", NY_NUMBER_ID, "second");
    assert_eq!(first.post_signed(&a).await, 200);
    assert_eq!(first.post_signed(&b).await, 200);
    // A worker of the first process claimed B and then died (its lease long expired).
    let claimed = first
        .store
        .whatsapp_claim(1_000, 60_000, 5)
        .await
        .unwrap()
        .expect("a queued row");
    assert_eq!(claimed.id, "msg:wamid.RESTART.A");
    assert_eq!(first.agent.calls(), 0);
    drop(first);

    let second = start(Options {
        store_url: Some(url),
        ..Options::default()
    })
    .await;
    second.drained().await;
    // A retry of A delivered to the new process is a duplicate.
    assert_eq!(second.post_signed(&a).await, 200);
    second.drained().await;
    assert_eq!(second.agent.calls(), 2);
    assert_eq!(second.graph.sends().len(), 2);
    assert_eq!(
        second.store.whatsapp_inbox_counts().await.unwrap(),
        vec![("done".to_string(), 2)]
    );
}

// ------------------------------------------------------------------ routing and senders

#[tokio::test]
async fn unknown_phone_number_id_is_acknowledged_not_processed() {
    let h = start(Options::default()).await;
    let body = text_webhook("wamid.UNKNOWN", CUSTOMER, "999999999999999", "hello");
    assert_eq!(h.post_signed(&body).await, 200);
    assert_eq!(h.store.whatsapp_inbox_counts().await.unwrap(), vec![]);
    assert_eq!(
        h.svc
            .stats
            .unknown_number
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // A known number in the same deployment is routed to its own business.
    let body = text_webhook("wamid.BCN", CUSTOMER, "200000000000001", "hola");
    assert_eq!(h.post_signed(&body).await, 200);
    h.drained().await;
    assert_eq!(h.agent.calls(), 1);
    let req = h.agent.last();
    assert_eq!(req.call.parameters["business_id"], "biz-bcn");
    assert_eq!(req.call.language, "es-ES");
    assert_eq!(h.graph.sends()[0].sender_id, "200000000000001");
}

#[tokio::test]
async fn bsuid_sender_without_phone_is_answered_by_user_id() {
    let h = start(Options::default()).await;
    assert_eq!(
        h.post_signed(&fixture(
            "whatsapp/text_webhook_username_bsuid_no_phone.json"
        ))
        .await,
        200
    );
    h.drained().await;
    assert_eq!(h.agent.calls(), 1);
    let req = h.agent.last();
    assert!(
        !req.call.parameters.contains_key("From"),
        "no phone to give"
    );
    assert_eq!(req.call.parameters["user_id"], "US.13491208655302741918");
    let sends = h.graph.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].body["recipient"], "US.13491208655302741918");
    assert!(sends[0].body.get("to").is_none());
}

#[tokio::test]
async fn unsupported_message_type_gets_a_polite_reply_without_the_agent() {
    let h = start(Options::default()).await;
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "1", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": NY_NUMBER_ID },
            "contacts": [{ "profile": { "name": "Test" }, "wa_id": CUSTOMER }],
            "messages": [{ "from": CUSTOMER, "id": "wamid.STICKER", "timestamp": "1749416383",
                           "type": "sticker", "sticker": { "id": "1", "mime_type": "image/webp" } }]
        }}]}]
    })
    .to_string();
    assert_eq!(h.post_signed(body.as_bytes()).await, 200);
    h.drained().await;
    assert_eq!(h.agent.calls(), 0);
    let sends = h.graph.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(
        sends[0].text(),
        Some(h.svc.config.unsupported_reply.as_str())
    );
}

#[tokio::test]
async fn interactive_replies_reach_the_agent_as_their_title() {
    let h = start(Options::default()).await;
    assert_eq!(
        h.post_signed(&fixture("whatsapp/interactive_list_reply_webhook.json"))
            .await,
        200
    );
    h.drained().await;
    let req = h.agent.last();
    let said = &req.history.last().unwrap().text;
    assert!(!said.is_empty());
    assert_eq!(h.graph.sends().len(), 1);
}

#[tokio::test]
async fn rate_limit_130429_is_retried_then_succeeds() {
    let h = start(Options::default()).await;
    h.graph.fail_next(
        400,
        130429,
        "Cloud API message throughput has been reached.",
    );
    h.graph.fail_next(400, 131056, "Pair rate limit hit");
    assert_eq!(
        h.post_signed(&fixture("whatsapp/text_webhook.json")).await,
        200
    );
    h.drained().await;
    assert_eq!(h.graph.refused(), 2);
    assert_eq!(h.graph.attempts().len(), 3);
    assert_eq!(h.graph.sends().len(), 1);
    assert_eq!(
        h.agent.calls(),
        1,
        "retries resend, they do not re-ask the agent"
    );
    let rows = h.outbound(CUSTOMER, "biz-ny").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status.as_str(), "accepted");
    assert_eq!(
        rows[0].provider_message_id.as_deref(),
        Some("wamid.FAKE000001")
    );
}

#[tokio::test]
async fn throttling_beyond_the_send_retries_requeues_and_reuses_the_stored_reply() {
    let h = start(Options::default()).await;
    // send_attempts (5) refusals: the sender gives up, the inbox row is retried later.
    for _ in 0..5 {
        h.graph.fail_next(
            400,
            130429,
            "Cloud API message throughput has been reached.",
        );
    }
    assert_eq!(
        h.post_signed(&fixture("whatsapp/text_webhook.json")).await,
        200
    );
    h.drained().await;
    assert_eq!(h.graph.attempts().len(), 6);
    assert_eq!(h.graph.sends().len(), 1);
    assert_eq!(
        h.agent.calls(),
        1,
        "the second attempt reuses the stored reply"
    );
    assert_eq!(
        h.store.whatsapp_inbox_counts().await.unwrap(),
        vec![("done".to_string(), 1)]
    );
}

#[tokio::test]
async fn agent_failure_is_retried_then_answered_once() {
    let h = start(Options::default()).await;
    h.text_with_agent_failures(2).await;
    h.drained().await;
    assert_eq!(h.agent.calls(), 3);
    let sends = h.graph.sends();
    assert_eq!(sends.len(), 1);
    assert!(sends[0].text().unwrap().starts_with("*Noted*"));
    // The user message is stored once despite three attempts.
    let conv = kav::store::whatsapp::conversation_id("biz-ny", CUSTOMER);
    assert_eq!(h.store.whatsapp_history(&conv, 10).await.unwrap().len(), 2);
}

/// The inbox's timing on a manual clock, with no workers: each pass is run by the test.
#[tokio::test]
async fn agent_failures_are_retried_on_the_backoff_schedule_in_virtual_time() {
    let clock = kav::testing::clock::ManualClock::new(1_800_000_000_000);
    let h = start(Options {
        workers: false,
        clock: Some(clock.clock()),
        ..Options::default()
    })
    .await;
    h.text_with_agent_failures(2).await;
    // This harness's policy: 5 ms doubling, jittered into the upper half: [2, 5], then [5, 10].
    assert_eq!(h.svc.run_pending().await.unwrap(), 1, "attempt 1 fails");
    clock.advance(1);
    assert_eq!(h.svc.run_pending().await.unwrap(), 0, "not before 2 ms");
    clock.advance(4);
    assert_eq!(h.svc.run_pending().await.unwrap(), 1, "attempt 2 fails");
    clock.advance(4);
    assert_eq!(h.svc.run_pending().await.unwrap(), 0, "not before 5 ms");
    clock.advance(6);
    assert_eq!(h.svc.run_pending().await.unwrap(), 1, "attempt 3 answers");
    assert_eq!(h.agent.calls(), 3);
    assert_eq!(h.graph.sends().len(), 1);
    clock.advance(60_000);
    assert_eq!(h.svc.run_pending().await.unwrap(), 0, "done rows stay done");
    assert_eq!(
        h.store.whatsapp_inbox_counts().await.unwrap(),
        vec![("done".to_string(), 1)]
    );
}

#[tokio::test]
async fn a_row_whose_worker_died_is_taken_by_another_after_its_lease() {
    let t0 = 1_800_000_000_000;
    let clock = kav::testing::clock::ManualClock::new(t0);
    let h = start(Options {
        workers: false,
        clock: Some(clock.clock()),
        ..Options::default()
    })
    .await;
    h.text_with_agent_failures(0).await;
    let lease = h.svc.config.lease_ms as i64;
    let max = i64::from(h.svc.config.max_attempts);
    // Worker A claims the message and dies before finishing it.
    let claimed = h.store.whatsapp_claim(t0, lease, max).await.unwrap();
    assert!(claimed.is_some());
    clock.set(t0 + lease);
    assert_eq!(h.svc.run_pending().await.unwrap(), 0, "still A's");
    assert_eq!(h.agent.calls(), 0);
    clock.set(t0 + lease + 1);
    assert_eq!(h.svc.run_pending().await.unwrap(), 1, "the lease ran out");
    assert_eq!(h.agent.calls(), 1);
    assert_eq!(h.graph.sends().len(), 1, "answered once");
    assert_eq!(
        h.store.whatsapp_inbox_counts().await.unwrap(),
        vec![("done".to_string(), 1)]
    );
}

#[tokio::test]
async fn agent_failing_every_attempt_gets_the_fallback_reply() {
    let h = start(Options::default()).await;
    h.text_with_agent_failures(1000).await;
    h.drained().await;
    assert_eq!(h.agent.calls(), 5, "max_attempts");
    let sends = h.graph.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].text(), Some(h.svc.config.fallback_reply.as_str()));
}

#[tokio::test]
async fn outside_the_window_131047_falls_back_to_the_template() {
    let h = start(Options::default()).await;
    h.graph.fail_text_messages(
        400,
        131047,
        "Re-engagement message: more than 24 hours have passed",
    );
    assert_eq!(
        h.post_signed(&fixture("whatsapp/text_webhook.json")).await,
        200
    );
    h.drained().await;
    let sends = h.graph.sends();
    assert_eq!(sends.len(), 1);
    assert!(sends[0].is_template());
    assert_eq!(sends[0].body["template"]["name"], "booking_confirmation");
    assert_eq!(sends[0].body["template"]["language"]["code"], "en_US");
    let rows = h.outbound(CUSTOMER, "biz-ny").await;
    assert!(rows[0].body_json.contains("\"template\""), "{rows:?}");
}

#[tokio::test]
async fn permanent_send_errors_are_recorded_not_retried() {
    let h = start(Options::default()).await;
    h.graph.fail_next(400, 131026, "Message undeliverable");
    assert_eq!(
        h.post_signed(&fixture("whatsapp/text_webhook.json")).await,
        200
    );
    h.drained().await;
    assert_eq!(h.graph.attempts().len(), 1);
    let rows = h.outbound(CUSTOMER, "biz-ny").await;
    assert_eq!(rows[0].status.as_str(), "failed");
    assert_eq!(rows[0].error_code, Some(131026));
}

#[tokio::test]
async fn statuses_out_of_order_never_regress() {
    let h = start(Options::default()).await;
    assert_eq!(
        h.post_signed(&fixture("whatsapp/text_webhook.json")).await,
        200
    );
    h.drained().await;
    let id = "wamid.FAKE000001";
    assert_eq!(
        h.outbound(CUSTOMER, "biz-ny").await[0]
            .provider_message_id
            .as_deref(),
        Some(id)
    );
    // read arrives first and without delivered, then a late sent, then duplicates.
    for (status, ts) in [("read", 30), ("sent", 10), ("read", 30), ("sent", 10)] {
        assert_eq!(h.post_signed(&status_webhook(id, status, ts)).await, 200);
    }
    h.drained().await;
    assert_eq!(
        h.outbound(CUSTOMER, "biz-ny").await[0].status.as_str(),
        "read"
    );
    assert_eq!(
        h.post_signed(&status_webhook(id, "delivered", 20)).await,
        200
    );
    assert_eq!(h.post_signed(&status_webhook(id, "failed", 40)).await, 200);
    h.drained().await;
    let row = &h.outbound(CUSTOMER, "biz-ny").await[0];
    assert_eq!(
        row.status.as_str(),
        "read",
        "a late failure does not undo read"
    );
    assert_eq!(row.error_code, Some(131026), "but it is recorded");
    assert_eq!(
        h.store.whatsapp_status_history(id).await.unwrap(),
        vec!["sent", "delivered", "read", "failed"]
    );
    // The failed-status fixture (not our message) is accepted and only logged in history.
    assert_eq!(
        h.post_signed(&fixture("whatsapp/status_failed_webhook.json"))
            .await,
        200
    );
    h.drained().await;
    assert_eq!(
        h.store
            .whatsapp_status_history("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA")
            .await
            .unwrap(),
        vec!["failed"]
    );
}

#[tokio::test]
async fn history_feeds_the_last_n_messages() {
    let h = start(Options::default()).await;
    for i in 0..7 {
        let body = text_webhook(
            &format!("wamid.H{i}"),
            CUSTOMER,
            NY_NUMBER_ID,
            &format!("m{i}"),
        );
        assert_eq!(h.post_signed(&body).await, 200);
        h.drained().await;
    }
    assert_eq!(h.agent.calls(), 7);
    let req = h.agent.last();
    // 7 user + 6 assistant messages so far, the last 10 of them handed over, oldest first.
    assert_eq!(req.history.len(), 10);
    let last = req.history.last().unwrap();
    assert_eq!((last.role, last.text.as_str()), (Role::User, "m6"));
    assert_eq!(req.history[0].role, Role::Assistant);
    assert_eq!(req.history[0].text, "**Noted**: m1");
    assert_eq!(
        (req.history[1].role, req.history[1].text.as_str()),
        (Role::User, "m2")
    );
}

#[tokio::test]
async fn the_same_customers_phone_turns_join_the_whatsapp_history() {
    use kav::store::booking::ConversationMessage;
    let h = start(Options::default()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let turn =
        |business: &str, phone: &str, role: &str, text: &str, ago_ms: i64| ConversationMessage {
            business_id: business.into(),
            customer_id: None,
            customer_phone: Some(phone.into()),
            channel: "phone".into(),
            conversation_id: "CA_earlier".into(),
            role: role.into(),
            text: text.into(),
            at_ms: now - ago_ms,
        };
    let ours = format!("+{CUSTOMER}");
    for m in [
        turn(
            "biz-ny",
            &ours,
            "user",
            "Is the Dubai room free tomorrow at 10?",
            60_000,
        ),
        turn("biz-ny", &ours, "assistant", "Yes, 10:00 is free.", 59_000),
        // Another customer, and the same customer with another business: never shown.
        turn(
            "biz-ny",
            "+15550001111",
            "user",
            "someone else's call",
            58_000,
        ),
        turn(
            "biz-bcn",
            &ours,
            "user",
            "a call to another business",
            57_000,
        ),
    ] {
        h.store.insert_message(&m).await.unwrap();
    }
    let body = text_webhook("wamid.X1", CUSTOMER, NY_NUMBER_ID, "book it please");
    assert_eq!(h.post_signed(&body).await, 200);
    h.drained().await;
    let history: Vec<(Role, String)> = h
        .agent
        .last()
        .history
        .iter()
        .map(|m| (m.role, m.text.clone()))
        .collect();
    let prefix = kav::channels::whatsapp::inbox::PHONE_CALL_PREFIX;
    assert_eq!(
        history,
        vec![
            (
                Role::User,
                format!("{prefix}Is the Dubai room free tomorrow at 10?")
            ),
            (Role::Assistant, format!("{prefix}Yes, 10:00 is free.")),
            (Role::User, "book it please".to_string()),
        ]
    );
}

// ------------------------------------------------------------------ voice notes

fn voice_note_bytes() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/audio-samples/voice_note_en.ogg"
    ))
    .expect("audio-samples/voice_note_en.ogg (audio-samples/generate_voice_note.sh)")
}

#[test]
fn voice_note_decodes_to_the_right_duration_and_level() {
    let bytes = voice_note_bytes();
    for rate in [8000, 16000, 48000] {
        let audio = kav::channels::whatsapp::voice_note::decode_ogg_opus(&bytes, rate).unwrap();
        // opusinfo: playback length 3.826 s.
        let secs = audio.duration().as_secs_f64();
        assert!((secs - 3.826).abs() < 0.03, "{rate} Hz: {secs} s");
        let level = audio.rms_dbfs();
        assert!((-35.0..-5.0).contains(&level), "{rate} Hz: {level} dBFS");
    }
    assert!(
        kav::channels::whatsapp::voice_note::decode_ogg_opus(b"not ogg at all", 16000).is_err()
    );
    let wav = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/audio-samples/book_en.wav"
    ))
    .unwrap();
    assert!(kav::channels::whatsapp::voice_note::decode_ogg_opus(&wav, 16000).is_err());
}

fn audio_webhook(wamid: &str, media_id: &str, sha256: &str) -> Vec<u8> {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "1", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": NY_NUMBER_ID },
            "contacts": [{ "profile": { "name": "Test" }, "wa_id": CUSTOMER }],
            "messages": [{ "from": CUSTOMER, "id": wamid, "timestamp": "1749416383", "type": "audio",
                "audio": { "mime_type": "audio/ogg; codecs=opus", "sha256": sha256, "id": media_id, "voice": true } }]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn voice_note_is_downloaded_decoded_transcribed_and_answered() {
    for format in [SttAudioFormat::Pcm16k, SttAudioFormat::Mulaw8k] {
        let (h, heard) = start_measuring("check next Friday 21:00 Barcelona room", format).await;
        h.graph
            .add_media("1234567890", "audio/ogg; codecs=opus", voice_note_bytes());
        assert_eq!(
            h.post_signed(&audio_webhook(
                "wamid.VOICE",
                "1234567890",
                &voice_note_sha256_base64()
            ))
            .await,
            200
        );
        h.drained().await;
        assert_eq!(h.graph.media_downloads(), 1);
        assert_eq!(
            h.graph.unauthorized(),
            0,
            "media fetched with the bearer token"
        );
        let (frames, level) = heard.lock().unwrap().expect("STT was fed");
        // 3.826 s in 20 ms frames.
        assert!((190..=193).contains(&frames), "{format:?}: {frames} frames");
        assert!((-35.0..-5.0).contains(&level), "{format:?}: {level} dBFS");
        let req = h.agent.last();
        assert_eq!(
            req.history.last().unwrap().text,
            "check next Friday 21:00 Barcelona room"
        );
        let sends = h.graph.sends();
        assert_eq!(sends.len(), 1);
        assert_eq!(
            sends[0].text(),
            Some("*Noted*: check next Friday 21:00 Barcelona room")
        );
    }
}

fn voice_note_sha256_base64() -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(voice_note_bytes()))
}

#[tokio::test]
async fn voice_note_that_does_not_match_its_sha256_is_not_transcribed() {
    let (h, heard) = start_measuring("words the customer never said", SttAudioFormat::Pcm16k).await;
    // The server hands out a file cut short; the webhook's digest is of the whole note.
    let whole = voice_note_bytes();
    h.graph.add_media(
        "1234567890",
        "audio/ogg; codecs=opus",
        whole[..whole.len() / 2].to_vec(),
    );
    let body = audio_webhook("wamid.CUT", "1234567890", &voice_note_sha256_base64());
    assert_eq!(h.post_signed(&body).await, 200);
    h.drained().await;
    assert_eq!(h.graph.media_downloads(), 1);
    assert!(heard.lock().unwrap().is_none(), "the STT was never fed");
    assert_eq!(h.agent.calls(), 0, "the agent never saw invented words");
    let sends = h.graph.sends();
    assert_eq!(sends.len(), 1, "the customer still gets an answer");
    assert!(
        sends[0].text().unwrap().contains("could not understand"),
        "{:?}",
        sends[0].text()
    );
}

// ------------------------------------------------------------------ Twilio

fn twilio_params(sid: &str, body: &str) -> Vec<(String, String)> {
    [
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ProfileName", "Jhonata"),
        ("WaId", "558282136275"),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", "whatsapp:+14155238886"),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", TWILIO_SID),
        ("From", "whatsapp:+558282136275"),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test]
async fn twilio_whatsapp_is_verified_queued_and_answered_over_rest() {
    let h = start(Options::default()).await;
    let params = twilio_params("SM01cd3925943ee3504f8a5c42d88efdf6", "Olá");
    let url = h.url("/twilio/whatsapp");
    let sig = signature::compute(TWILIO_TOKEN, &url, &params);
    let post = |sig: Option<String>, params: Vec<(String, String)>| {
        let mut req = h.http.post(url.clone()).form(&params);
        if let Some(s) = sig {
            req = req.header("x-twilio-signature", s);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(None, params.clone()).await, 403);
    let forged = signature::compute("wrong", &url, &params);
    assert_eq!(post(Some(forged), params.clone()).await, 403);
    let mut altered = params.clone();
    altered[5].1 = "something else".into();
    assert_eq!(post(Some(sig.clone()), altered).await, 403);
    for _ in 0..3 {
        assert_eq!(post(Some(sig.clone()), params.clone()).await, 200);
    }
    h.drained().await;
    assert_eq!(h.agent.calls(), 1);
    assert_eq!(h.agent.last().call.parameters["business_id"], "biz-bcn");
    let sends = h.twilio.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(h.twilio.unauthorized(), 0, "basic auth accepted");
    assert_eq!(sends[0].body["From"], "whatsapp:+14155238886");
    assert_eq!(sends[0].body["To"], "whatsapp:+558282136275");
    assert_eq!(sends[0].text(), Some("*Noted*: Olá"));
    assert!(h.graph.attempts().is_empty());
}

const STATUS_CALLBACK: &str = "https://kav.example/twilio/whatsapp/status";

/// A status callback as Twilio documents its parameters ("Outbound Message Status in Status
/// Callbacks"); there is no vendor recording of one in shared/.
fn twilio_status_params(sid: &str, status: &str, from: &str) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("AccountSid", TWILIO_SID),
        ("ApiVersion", "2010-04-01"),
        ("ChannelPrefix", "whatsapp"),
        ("ChannelToAddress", "+558282XXXXX"),
        ("From", from),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("To", "whatsapp:+558282136275"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if status == "undelivered" || status == "failed" {
        params.push(("ErrorCode".into(), "63024".into()));
    }
    params
}

#[tokio::test]
async fn twilio_delivery_reports_update_our_message_and_never_regress() {
    let h = start(Options::default()).await;
    let params = twilio_params("SM01cd3925943ee3504f8a5c42d88efdf6", "Olá");
    let url = h.url("/twilio/whatsapp");
    let sig = signature::compute(TWILIO_TOKEN, &url, &params);
    let sent = h
        .http
        .post(&url)
        .header("x-twilio-signature", sig)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    h.drained().await;
    let sends = h.twilio.sends();
    assert_eq!(sends[0].body["StatusCallback"], STATUS_CALLBACK);
    let ours = h.outbound("558282136275", "biz-bcn").await;
    let sid = ours[0].provider_message_id.clone().expect("Twilio sid");
    assert_eq!(ours[0].status.as_str(), "accepted");

    let post = |path: &'static str, params: Vec<(String, String)>, signed: bool| {
        let url = h.url(path);
        let mut req = h.http.post(&url).form(&params);
        if signed {
            req = req.header(
                "x-twilio-signature",
                signature::compute(TWILIO_TOKEN, &url, &params),
            );
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let from = "whatsapp:+14155238886";
    let status_path = "/twilio/whatsapp/status";
    assert_eq!(
        post(status_path, twilio_status_params(&sid, "read", from), false).await,
        403,
        "unsigned reports are refused"
    );
    // Early stages, read before delivered, then a late delivered and a duplicate; one report
    // arrives on the message webhook, where a number's console callback may point.
    for (path, status) in [
        (status_path, "queued"),
        (status_path, "sent"),
        (status_path, "read"),
        ("/twilio/whatsapp", "delivered"),
        (status_path, "read"),
    ] {
        let code = post(path, twilio_status_params(&sid, status, from), true).await;
        assert_eq!(code, 204, "{status} on {path}");
    }
    h.drained().await;
    assert_eq!(
        h.outbound("558282136275", "biz-bcn").await[0]
            .status
            .as_str(),
        "read"
    );
    assert_eq!(
        post(
            status_path,
            twilio_status_params(&sid, "undelivered", from),
            true
        )
        .await,
        204
    );
    h.drained().await;
    let row = &h.outbound("558282136275", "biz-bcn").await[0];
    assert_eq!(
        row.status.as_str(),
        "read",
        "a late failure does not undo read"
    );
    assert_eq!(row.error_code, Some(63024), "but it is recorded");
    // Twilio's reports carry no timestamp: rows are stamped on arrival, so compare as a set.
    let mut history = h.store.whatsapp_status_history(&sid).await.unwrap();
    history.sort();
    assert_eq!(
        history,
        vec!["delivered", "failed", "queued", "read", "sent"]
    );
    // A report for a number we do not serve is acknowledged and not processed.
    let stranger = twilio_status_params("SM999", "delivered", "whatsapp:+15550009999");
    assert_eq!(post(status_path, stranger, true).await, 204);
    h.drained().await;
    assert!(
        h.store
            .whatsapp_status_history("SM999")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.agent.calls(), 1, "reports never reach the agent");
}

#[tokio::test]
async fn twilio_voice_note_is_fetched_with_basic_auth_and_answered() {
    let (h, heard) = start_measuring("details on the New York room?", SttAudioFormat::Pcm16k).await;
    h.twilio
        .add_media("ME0001", "audio/ogg", voice_note_bytes());
    let mut params = twilio_params("MM00000000000000000000000000voice", "");
    params[1].1 = "1".into();
    params.push(("MediaUrl0".into(), h.twilio.media_url("ME0001")));
    params.push(("MediaContentType0".into(), "audio/ogg".into()));
    let url = h.url("/twilio/whatsapp");
    let sig = signature::compute(TWILIO_TOKEN, &url, &params);
    let r = h
        .http
        .post(url)
        .header("x-twilio-signature", sig)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    h.drained().await;
    assert_eq!(h.twilio.media_downloads(), 1);
    assert_eq!(h.twilio.unauthorized(), 0);
    let (frames, _) = heard.lock().unwrap().expect("STT was fed");
    assert!((190..=193).contains(&frames), "{frames} frames");
    assert_eq!(
        h.twilio.sends()[0].text(),
        Some("*Noted*: details on the New York room?")
    );
}

#[tokio::test]
async fn twilio_twiml_mode_answers_inline_once() {
    let h = start(Options {
        twiml: true,
        ..Options::default()
    })
    .await;
    let params = twilio_params("SM0000000000000000000000000000twiml", "a < b & c");
    let url = h.url("/twilio/whatsapp");
    let sig = signature::compute(TWILIO_TOKEN, &url, &params);
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let r = h
            .http
            .post(url.clone())
            .header("x-twilio-signature", sig.clone())
            .form(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        bodies.push(r.text().await.unwrap());
    }
    assert!(
        bodies[0].contains("<Message>*Noted*: a &lt; b &amp; c</Message>"),
        "{}",
        bodies[0]
    );
    // Retries of the same MessageSid get an empty response: one answer only.
    assert!(!bodies[1].contains("<Message>") && !bodies[2].contains("<Message>"));
    h.drained().await;
    assert_eq!(h.agent.calls(), 1);
    assert!(h.twilio.attempts().is_empty(), "no REST send in TwiML mode");
}

// ------------------------------------------------------------------ operator endpoints

#[tokio::test]
async fn operator_endpoints_require_the_admin_token() {
    let h = start(Options::default()).await;
    let body = serde_json::json!({ "message": "details on the New York room?", "phone": "+16505551234", "business": "biz-ny" });
    let post = |token: Option<&str>| {
        let mut req = h.http.post(h.url("/api/test/message")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status().as_u16(), 401);
    assert_eq!(post(Some("wrong")).await.unwrap().status().as_u16(), 401);
    let r = post(Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let reply: serde_json::Value = r.json().await.unwrap();
    assert_eq!(reply["reply"], "*Noted*: details on the New York room?");
    assert!(
        h.graph.attempts().is_empty(),
        "the test endpoint sends nothing"
    );
    // Same customer on real WhatsApp: same conversation (phone is the customer key).
    assert_eq!(
        h.post_signed(&fixture("whatsapp/text_webhook.json")).await,
        200
    );
    h.drained().await;
    assert_eq!(
        h.agent.last().history.len(),
        3,
        "test turn + its reply + new message"
    );

    let list = |token: Option<&str>| {
        let mut req = h.http.get(h.url("/api/conversations"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(list(None).await.unwrap().status().as_u16(), 401);
    let rows: serde_json::Value = list(Some(ADMIN_TOKEN)).await.unwrap().json().await.unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["message_count"], 4);
    assert_eq!(rows[0]["customer_phone"], CUSTOMER);
    assert!(
        rows[0]["last_message"]
            .as_str()
            .unwrap()
            .starts_with("**Noted**")
    );
    let id = rows[0]["id"].as_str().unwrap().to_string();

    let del = |token: Option<&str>, id: &str| {
        let mut req = h.http.delete(h.url(&format!("/api/conversations/{id}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(del(None, &id).await.unwrap().status().as_u16(), 401);
    assert_eq!(
        del(Some(ADMIN_TOKEN), &id).await.unwrap().status().as_u16(),
        204
    );
    assert_eq!(
        del(Some(ADMIN_TOKEN), &id).await.unwrap().status().as_u16(),
        404
    );
    let rows: serde_json::Value = list(Some(ADMIN_TOKEN)).await.unwrap().json().await.unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 0);

    // Without KAV_ADMIN_TOKEN the endpoints are closed, whatever is sent.
    let closed = start(Options {
        admin_token: false,
        ..Options::default()
    })
    .await;
    let r = closed
        .http
        .get(closed.url("/api/conversations"))
        .bearer_auth("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

// ------------------------------------------------------------------ replay

#[tokio::test]
async fn kav_replay_posts_signed_recordings_to_a_running_server() {
    let h = start(Options::default()).await;
    let dir = fixture_path("whatsapp");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kav"))
        .args(["replay", "--times", "3", "--url"])
        .arg(h.url("/whatsapp/webhook"))
        .arg(dir.join("text_webhook.json"))
        .arg(dir.join("interactive_button_reply_webhook.json"))
        .arg("--twilio-url")
        .arg(h.url("/twilio/whatsapp"))
        .arg(fixture_path(
            "twilio/whatsapp_inbound_form_THIRDPARTY_capture.txt",
        ))
        .env("WHATSAPP_APP_SECRET", APP_SECRET)
        .env("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
        .env("KAV_LOG", "off")
        .output()
        .await
        .expect("run kav replay");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches("-> 200").count(), 9, "{stdout}");
    h.drained().await;
    assert_eq!(h.agent.calls(), 3, "three distinct messages, each once");
    assert_eq!(h.graph.sends().len(), 2);
    let twilio = h.twilio.sends();
    assert_eq!(
        twilio.len(),
        1,
        "the Twilio capture was verified and answered"
    );
    assert_eq!(twilio[0].text(), Some("*Noted*: Olá"));

    // Without the secret it refuses to post unsigned requests.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kav"))
        .args(["replay", "--url"])
        .arg(h.url("/whatsapp/webhook"))
        .arg(dir.join("text_webhook.json"))
        .env_remove("WHATSAPP_APP_SECRET")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
}
