//! Fake Meta Graph API and fake Twilio REST API on 127.0.0.1:0, speaking their HTTP APIs:
//!
//! * Graph: `POST /{version}/{phone_number_id}/messages` (Bearer required) answers like Meta
//!   (`messages[0].id`) or with a scripted error in Meta's error shape (a `status: read` body is
//!   a read receipt, recorded apart); `GET /{version}/{media_id}`
//!   returns media metadata whose `url` points back here; `GET /media/{id}` returns the bytes
//!   (Bearer required, as on Meta's CDN).
//! * Twilio: `POST /2010-04-01/Accounts/{sid}/Messages.json` (basic auth) answers `201` with a
//!   `sid`; `GET /media/{id}` returns media bytes (basic auth).
//!
//! Every request is recorded so tests can assert what a client really put on the wire.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSend {
    /// Graph: phone_number_id from the path; Twilio: the account SID.
    pub sender_id: String,
    /// JSON body (Graph) or the form as a JSON object (Twilio).
    pub body: serde_json::Value,
    /// What the fake answered (HTTP status).
    pub status: u16,
}

impl RecordedSend {
    /// The text of a Graph text message or the `Body` of a Twilio message.
    pub fn text(&self) -> Option<&str> {
        self.body["text"]["body"]
            .as_str()
            .or_else(|| self.body["Body"].as_str())
    }

    pub fn is_template(&self) -> bool {
        self.body["type"] == "template" || self.body.get("ContentSid").is_some()
    }
}

/// A scripted failure for the next send.
#[derive(Debug, Clone)]
pub struct ScriptedError {
    pub http_status: u16,
    pub code: i64,
    pub message: String,
}

#[derive(Default)]
struct Shared {
    secret: String,
    account_sid: String,
    sends: Vec<RecordedSend>,
    /// Sends refused (including scripted errors).
    refused: u32,
    script: VecDeque<ScriptedError>,
    /// Errors returned for every free-form text message (e.g. 131047 outside the window).
    text_error: Option<ScriptedError>,
    /// Errors returned for every message send, text or template (e.g. a 130429 storm).
    storm: Option<ScriptedError>,
    /// Message sends are held unanswered (and never processed) while set.
    hang: bool,
    /// Message sends held right now.
    hanging: u32,
    media: BTreeMap<String, (String, Vec<u8>)>,
    media_downloads: u32,
    unauthorized: u32,
    read_receipts: Vec<String>,
    base_url: String,
    next_id: u64,
}

/// Which vendor the fake imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Graph,
    Twilio,
}

/// Handle to a running fake; the server stops when this is dropped.
pub struct FakeVendor {
    pub addr: SocketAddr,
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

/// Fake Meta Graph API. `access_token` is the Bearer token it requires.
pub type FakeGraph = FakeVendor;
/// Fake Twilio REST API.
pub type FakeTwilioRest = FakeVendor;

impl Drop for FakeVendor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeVendor {
    /// Starts a fake Graph API requiring `Authorization: Bearer {access_token}`.
    pub async fn graph(access_token: &str) -> std::io::Result<FakeVendor> {
        Self::start(Flavor::Graph, access_token, "").await
    }

    /// Starts a fake Twilio REST API requiring basic auth `account_sid:auth_token`.
    pub async fn twilio(account_sid: &str, auth_token: &str) -> std::io::Result<FakeVendor> {
        Self::start(Flavor::Twilio, auth_token, account_sid).await
    }

    async fn start(flavor: Flavor, secret: &str, account_sid: &str) -> std::io::Result<FakeVendor> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Mutex::new(Shared {
            secret: secret.to_string(),
            account_sid: account_sid.to_string(),
            base_url: base_url.clone(),
            ..Default::default()
        }));
        let router = match flavor {
            Flavor::Graph => Router::new()
                .route("/{version}/{phone_number_id}/messages", post(graph_send))
                .route("/media/{id}", get(media_bytes_graph))
                .route("/{version}/{media_id}", get(graph_media_meta)),
            Flavor::Twilio => Router::new()
                .route(
                    "/2010-04-01/Accounts/{sid}/Messages.json",
                    post(twilio_send),
                )
                .route("/media/{id}", get(media_bytes_twilio)),
        }
        .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(FakeVendor {
            addr,
            base_url,
            shared,
            task,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        let mut guard = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The next send fails with this error (queue several for several failures).
    pub fn fail_next(&self, http_status: u16, code: i64, message: &str) {
        self.with(|s| {
            s.script.push_back(ScriptedError {
                http_status,
                code,
                message: message.to_string(),
            })
        });
    }

    /// Every free-form text send fails with this error (templates still succeed).
    pub fn fail_text_messages(&self, http_status: u16, code: i64, message: &str) {
        self.with(|s| {
            s.text_error = Some(ScriptedError {
                http_status,
                code,
                message: message.to_string(),
            })
        });
    }

    /// Every message send fails with this error until [`FakeVendor::calm`] (a rate-limit storm:
    /// `fail_all(429, 130429, "Rate limit hit")`).
    pub fn fail_all(&self, http_status: u16, code: i64, message: &str) {
        self.with(|s| {
            s.storm = Some(ScriptedError {
                http_status,
                code,
                message: message.to_string(),
            })
        });
    }

    /// Message sends are accepted on the socket but never answered nor processed (a hung
    /// Graph API) until [`FakeVendor::calm`]; then each held request gets a 503 and is not
    /// recorded as sent.
    pub fn hang(&self) {
        self.with(|s| s.hang = true);
    }

    /// Ends [`FakeVendor::fail_all`] and [`FakeVendor::hang`].
    pub fn calm(&self) {
        self.with(|s| {
            s.storm = None;
            s.hang = false;
        });
    }

    /// Texts of the sends the fake accepted (HTTP 200), in order; a template as `<template>`.
    pub fn accepted_texts(&self) -> Vec<String> {
        self.sends()
            .into_iter()
            .filter(|s| s.status == 200)
            .map(|s| s.text().unwrap_or("<template>").to_string())
            .collect()
    }

    /// Waits until at least `n` sends were accepted; panics after `within` (test helper).
    pub async fn wait_accepted(&self, n: usize, within: std::time::Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let accepted = self.accepted_texts();
            if accepted.len() >= n {
                return accepted;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {n} accepted sends: {:#?}",
                self.sends()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Message sends being held by [`FakeVendor::hang`] right now.
    pub fn hanging(&self) -> u32 {
        self.with(|s| s.hanging)
    }

    /// Serves `bytes` as media `id` (its URL is `{base_url}/media/{id}`).
    pub fn add_media(&self, id: &str, mime_type: &str, bytes: Vec<u8>) {
        self.with(|s| {
            s.media
                .insert(id.to_string(), (mime_type.to_string(), bytes));
        });
    }

    pub fn media_url(&self, id: &str) -> String {
        format!("{}/media/{id}", self.base_url)
    }

    /// Accepted sends, in order.
    pub fn sends(&self) -> Vec<RecordedSend> {
        self.with(|s| s.sends.iter().filter(|r| r.status < 300).cloned().collect())
    }

    /// Every send attempt, refused ones included.
    pub fn attempts(&self) -> Vec<RecordedSend> {
        self.with(|s| s.sends.clone())
    }

    pub fn refused(&self) -> u32 {
        self.with(|s| s.refused)
    }

    /// Message ids marked read (with the typing indicator), in order.
    pub fn read_receipts(&self) -> Vec<String> {
        self.with(|s| s.read_receipts.clone())
    }

    pub fn media_downloads(&self) -> u32 {
        self.with(|s| s.media_downloads)
    }

    /// Requests refused for missing or wrong credentials.
    pub fn unauthorized(&self) -> u32 {
        self.with(|s| s.unauthorized)
    }
}

type SharedState = State<Arc<Mutex<Shared>>>;

fn lock(shared: &Arc<Mutex<Shared>>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|t| t == token)
}

fn basic_ok(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .is_some_and(|t| t == expected)
}

fn graph_error(status: u16, code: i64, message: &str) -> Response {
    let body = json!({
        "error": {
            "message": format!("(#{code}) {message}"),
            "type": "OAuthException",
            "code": code,
            "error_data": { "messaging_product": "whatsapp", "details": message },
            "fbtrace_id": "AfakeTraceId",
        }
    });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response()
}

/// Holds a request while [`FakeVendor::hang`] is on; true if it was held (it is then refused,
/// never processed).
async fn hold_while_hung(shared: &Arc<Mutex<Shared>>) -> bool {
    {
        let mut s = lock(shared);
        if !s.hang {
            return false;
        }
        s.hanging += 1;
    }
    while lock(shared).hang {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut s = lock(shared);
    s.hanging -= 1;
    s.refused += 1;
    true
}

async fn graph_send(
    State(shared): SharedState,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if hold_while_hung(&shared).await {
        return graph_error(503, 2, "Service temporarily unavailable");
    }
    let mut s = lock(&shared);
    if !bearer_ok(&headers, &s.secret) {
        s.unauthorized += 1;
        return graph_error(401, 190, "Invalid OAuth access token");
    }
    let parsed: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return graph_error(400, 100, "Invalid parameter"),
    };
    // Mark-as-read (+ typing indicator) goes to the same endpoint but is not a message.
    if parsed["status"] == "read" {
        let id = parsed["message_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        s.read_receipts.push(id);
        return axum::Json(json!({ "success": true })).into_response();
    }
    let scripted = s
        .storm
        .clone()
        .or_else(|| s.script.pop_front())
        .or_else(|| {
            (parsed["type"] == "text")
                .then(|| s.text_error.clone())
                .flatten()
        });
    if let Some(err) = scripted {
        s.refused += 1;
        s.sends.push(RecordedSend {
            sender_id: phone_number_id,
            body: parsed,
            status: err.http_status,
        });
        return graph_error(err.http_status, err.code, &err.message);
    }
    s.next_id += 1;
    let id = format!("wamid.FAKE{:06}", s.next_id);
    let to = parsed["to"].as_str().unwrap_or("").to_string();
    let is_template = parsed["type"] == "template";
    s.sends.push(RecordedSend {
        sender_id: phone_number_id,
        body: parsed,
        status: 200,
    });
    let mut message = json!({ "id": id });
    if is_template {
        message["message_status"] = json!("accepted");
    }
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": to.trim_start_matches('+') }],
        "messages": [message],
    }))
    .into_response()
}

async fn graph_media_meta(
    State(shared): SharedState,
    Path((_version, media_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&shared);
    if !bearer_ok(&headers, &s.secret) {
        s.unauthorized += 1;
        return graph_error(401, 190, "Invalid OAuth access token");
    }
    let Some((mime, bytes)) = s.media.get(&media_id) else {
        return graph_error(404, 100, "Unsupported get request");
    };
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "url": format!("{}/media/{media_id}", s.base_url),
        "mime_type": mime,
        "sha256": crate::hash::sha256_hex(bytes),
        "file_size": bytes.len().to_string(),
        "id": media_id,
    }))
    .into_response()
}

fn media_response(s: &mut Shared, id: &str) -> Response {
    match s.media.get(id) {
        Some((mime, bytes)) => {
            s.media_downloads += 1;
            ([(header::CONTENT_TYPE, mime.clone())], bytes.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn media_bytes_graph(
    State(shared): SharedState,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&shared);
    // Meta: "If you omit your token, the request will fail".
    if !bearer_ok(&headers, &s.secret) {
        s.unauthorized += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    media_response(&mut s, &id)
}

async fn media_bytes_twilio(
    State(shared): SharedState,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&shared);
    let (user, password) = (s.account_sid.clone(), s.secret.clone());
    if !basic_ok(&headers, &user, &password) {
        s.unauthorized += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    media_response(&mut s, &id)
}

fn twilio_error(status: u16, code: i64, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        })),
    )
        .into_response()
}

async fn twilio_send(
    State(shared): SharedState,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = lock(&shared);
    let (user, password) = (s.account_sid.clone(), s.secret.clone());
    if sid != user || !basic_ok(&headers, &user, &password) {
        s.unauthorized += 1;
        return twilio_error(401, 20003, "Authenticate");
    }
    let form: serde_json::Map<String, serde_json::Value> = form_urlencoded::parse(&body)
        .into_owned()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let form = serde_json::Value::Object(form);
    let scripted = s.script.pop_front().or_else(|| {
        form.get("Body")
            .is_some()
            .then(|| s.text_error.clone())
            .flatten()
    });
    if let Some(err) = scripted {
        s.refused += 1;
        s.sends.push(RecordedSend {
            sender_id: sid,
            body: form,
            status: err.http_status,
        });
        return twilio_error(err.http_status, err.code, &err.message);
    }
    s.next_id += 1;
    let message_sid = format!("SM{:032x}", s.next_id);
    s.sends.push(RecordedSend {
        sender_id: sid.clone(),
        body: form.clone(),
        status: 201,
    });
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "sid": message_sid,
            "account_sid": sid,
            "from": form["From"],
            "to": form["To"],
            "body": form.get("Body"),
            "status": "queued",
            "api_version": "2010-04-01",
        })),
    )
        .into_response()
}

/// A Cloud API `messages` webhook carrying one text message, shaped like Meta's documented
/// example (`fixtures/whatsapp/text_webhook.json`) with the fields a test varies.
/// Posts a Cloud API webhook `body` to `url` signed with `app_secret` as Meta signs it; returns
/// the HTTP status.
pub async fn post_signed_webhook(url: &str, app_secret: &str, body: &[u8]) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            crate::channels::signature::hub_signature_256(app_secret, body),
        )
        .body(body.to_vec())
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .expect("webhook post")
        .status()
        .as_u16()
}

pub fn text_webhook(
    wamid: &str,
    from: &str,
    phone_number_id: &str,
    display_number: &str,
    body: &str,
) -> Vec<u8> {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": display_number, "phone_number_id": phone_number_id },
            "contacts": [{ "profile": { "name": "Test" }, "wa_id": from }],
            "messages": [{ "from": from, "id": wamid, "timestamp": "1763900000",
                           "type": "text", "text": { "body": body } }]
        }}]}]
    })
    .to_string()
    .into_bytes()
}
