//! A fake OpenAI-compatible server on 127.0.0.1:0 speaking the real Chat Completions SSE protocol,
//! for tests of anything that talks to an LLM (the `OpenAiChat` client, agents with tools).
//!
//! Each `POST …/chat/completions` takes the next [`FakeReply`] from a script queue:
//! - [`FakeReply::replay`]/[`FakeReply::fixture`]: recorded vendor SSE bytes, sent byte for byte;
//! - [`FakeReply::text`]: text split into N content deltas;
//! - [`FakeReply::tool_calls`] (optionally [`FakeReply::with_text`] first): any number of tool
//!   calls, each split into argument fragments keyed by `index` exactly like the real API
//!   (optionally [`FakeReply::interleaved`] across calls);
//! - [`FakeReply::error`]: an HTTP status with an OpenAI error JSON body;
//!
//! and every reply can be delayed before its first byte, slowed between chunks, stalled or dropped
//! after N SSE events. Every request body is recorded as JSON, and the server notices when a client
//! hangs up before a stream finished (barge-in tests). `GET …/models` answers a one-model list.
//!
//! ```no_run
//! # async fn demo() {
//! use kav::testing::fake_openai::{FakeOpenAi, FakeReply};
//! let fake = FakeOpenAi::start(vec![FakeReply::text("Hello there.", 3)]).await;
//! // point the client at fake.base_url(), run it, then:
//! let bodies = fake.requests();
//! # }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::providers::ToolCall;

/// Recorded vendor streams shipped in `fixtures/openai/` (see its SOURCES.md).
pub const FIXTURE_SINGLE_TOOL_CALL: &str = "chat_stream_single_tool_call.sse";
pub const FIXTURE_PARALLEL_TOOL_CALLS: &str = "chat_stream_parallel_tool_calls.sse";
pub const FIXTURE_TEXT: &str = "chat_stream_text_content.sse";

/// Path of a file in `fixtures/openai/`.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/openai")
        .join(name)
}

/// How a streamed reply ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// All events, then `data: [DONE]`.
    Complete,
    /// After this many SSE events, send nothing more but keep the connection open.
    StallAfter(usize),
    /// After this many SSE events, abort the connection (no terminating chunk).
    DropAfter(usize),
}

#[derive(Debug, Clone)]
enum ReplyBody {
    Sse(Vec<Bytes>),
    Text {
        text: String,
        chunks: usize,
    },
    ToolCalls {
        text: String,
        text_chunks: usize,
        calls: Vec<ToolCall>,
        fragments: usize,
        interleave: bool,
    },
    Error {
        status: u16,
        message: String,
        /// `Retry-After` header, seconds.
        retry_after_s: Option<u64>,
    },
}

/// One scripted answer to one chat-completions request.
#[derive(Debug, Clone)]
pub struct FakeReply {
    body: ReplyBody,
    first_byte_delay: Duration,
    chunk_interval: Duration,
    ending: Ending,
}

impl FakeReply {
    fn new(body: ReplyBody) -> Self {
        Self {
            body,
            first_byte_delay: Duration::ZERO,
            chunk_interval: Duration::ZERO,
            ending: Ending::Complete,
        }
    }

    /// Recorded SSE bytes, sent unchanged (split at event boundaries only for pacing).
    pub fn replay(sse: impl Into<Bytes>) -> Self {
        Self::new(ReplyBody::Sse(split_events(&sse.into())))
    }

    /// A recorded stream from `fixtures/openai/` (e.g. [`FIXTURE_TEXT`]).
    pub fn fixture(name: &str) -> std::io::Result<Self> {
        Ok(Self::replay(std::fs::read(fixture_path(name))?))
    }

    /// `text` as `chunks` content deltas (split on character boundaries), finish reason `stop`.
    pub fn text(text: impl Into<String>, chunks: usize) -> Self {
        Self::new(ReplyBody::Text {
            text: text.into(),
            chunks: chunks.max(1),
        })
    }

    /// Tool calls (index = position), each opened by an id/name chunk and followed by its
    /// arguments in `fragments` pieces; finish reason `tool_calls`.
    pub fn tool_calls(calls: Vec<ToolCall>, fragments: usize) -> Self {
        Self::new(ReplyBody::ToolCalls {
            text: String::new(),
            text_chunks: 1,
            calls,
            fragments: fragments.max(1),
            interleave: false,
        })
    }

    /// HTTP `status` with an OpenAI error body carrying `message`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::new(ReplyBody::Error {
            status,
            message: message.into(),
            retry_after_s: None,
        })
    }

    /// Like [`FakeReply::error`], with a `Retry-After: {seconds}` header.
    pub fn error_retry_after(status: u16, message: impl Into<String>, seconds: u64) -> Self {
        Self::new(ReplyBody::Error {
            status,
            message: message.into(),
            retry_after_s: Some(seconds),
        })
    }

    /// Send the fragments of parallel tool calls round-robin instead of call after call, so a
    /// client that ignores `index` mixes them up.
    pub fn interleaved(mut self) -> Self {
        if let ReplyBody::ToolCalls { interleave, .. } = &mut self.body {
            *interleave = true;
        }
        self
    }

    /// Tool-call replies only: stream `text` (in `chunks` deltas) before the tool calls, as models
    /// do when they say "Let me check" and then call a tool.
    pub fn with_text(mut self, preface: impl Into<String>, chunks: usize) -> Self {
        if let ReplyBody::ToolCalls {
            text, text_chunks, ..
        } = &mut self.body
        {
            *text = preface.into();
            *text_chunks = chunks.max(1);
        }
        self
    }

    /// Wait this long before answering at all (not even headers).
    pub fn delay_first_byte(mut self, delay: Duration) -> Self {
        self.first_byte_delay = delay;
        self
    }

    /// Wait this long between SSE events.
    pub fn chunk_interval(mut self, interval: Duration) -> Self {
        self.chunk_interval = interval;
        self
    }

    pub fn stall_after(mut self, events: usize) -> Self {
        self.ending = Ending::StallAfter(events);
        self
    }

    pub fn drop_after(mut self, events: usize) -> Self {
        self.ending = Ending::DropAfter(events);
        self
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// `Authorization` (OpenAI) or `api-key` (Azure) header, if any.
    pub authorization: Option<String>,
    pub api_key: Option<String>,
    /// The JSON body (`Value::Null` for GET; a JSON string holding the raw text if not JSON).
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<FakeReply>>,
    recorded: Mutex<Vec<RecordedRequest>>,
    streams_started: AtomicUsize,
    streams_finished: AtomicUsize,
    disconnects: AtomicUsize,
    changed: Notify,
}

impl Shared {
    fn bump(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// The running fake server. Dropping it stops the server.
pub struct FakeOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeOpenAi {
    /// Binds 127.0.0.1:0 and serves `script` to successive chat-completion requests. When the
    /// script runs out, requests get a 500 saying so.
    pub async fn start(script: Vec<FakeReply>) -> Self {
        let shared = Arc::new(Shared::default());
        shared.script.lock().unwrap().extend(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let app = axum::Router::new().fallback({
            let shared = shared.clone();
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                handle(shared.clone(), method, uri, headers, body)
            }
        });
        // Like a real API front end: without TCP_NODELAY, Nagle holds the second small SSE write
        // until the client's delayed ACK (~40 ms) on a reused connection.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            shared,
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, the value for `llm.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Appends a reply to the script.
    pub fn push(&self, reply: FakeReply) {
        self.shared.script.lock().unwrap().push_back(reply);
    }

    /// Replies not yet consumed.
    pub fn remaining(&self) -> usize {
        self.shared.script.lock().unwrap().len()
    }

    /// JSON bodies of every chat-completion request so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.recorded()
            .into_iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .map(|r| r.body)
            .collect()
    }

    /// Every request (chat completions and `/models`), in order.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.shared.recorded.lock().unwrap().clone()
    }

    /// `GET …/models` requests seen (warm-ups).
    pub fn model_requests(&self) -> usize {
        self.recorded()
            .iter()
            .filter(|r| r.path.ends_with("/models"))
            .count()
    }

    /// Streams the client stopped reading before they ended (client hung up).
    pub fn disconnects(&self) -> usize {
        self.shared.disconnects.load(Ordering::SeqCst)
    }

    /// Streams sent to the end.
    pub fn streams_finished(&self) -> usize {
        self.shared.streams_finished.load(Ordering::SeqCst)
    }

    /// Waits until `n` clients have hung up mid-stream.
    pub async fn wait_for_disconnects(&self, n: usize) {
        self.wait_until(|s| s.disconnects.load(Ordering::SeqCst) >= n)
            .await
    }

    /// Waits until `n` chat-completion requests have arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        self.wait_until(|s| {
            s.recorded
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.path.ends_with("/chat/completions"))
                .count()
                >= n
        })
        .await
    }

    async fn wait_until(&self, done: impl Fn(&Shared) -> bool) {
        loop {
            let changed = self.shared.changed.notified();
            if done(&self.shared) {
                return;
            }
            changed.await;
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let json_body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    let model = json_body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_string();
    shared.recorded.lock().unwrap().push(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(String::from),
        authorization: header_text("authorization"),
        api_key: header_text("api-key"),
        body: json_body,
    });
    shared.changed.notify_waiters();

    if method == Method::GET && path.ends_with("/models") {
        return axum::Json(json!({
            "object": "list",
            "data": [{"id": model, "object": "model", "created": 0, "owned_by": "kav-fake"}]
        }))
        .into_response();
    }
    if method != Method::POST || !path.ends_with("/chat/completions") {
        return error_response(404, &format!("no route for {method} {path}"));
    }
    let Some(reply) = shared.script.lock().unwrap().pop_front() else {
        return error_response(500, "FakeOpenAi: no scripted reply left");
    };
    if !reply.first_byte_delay.is_zero() {
        tokio::time::sleep(reply.first_byte_delay).await;
    }
    let events = match &reply.body {
        ReplyBody::Error {
            status,
            message,
            retry_after_s,
        } => {
            let mut response = error_response(*status, message);
            if let Some(seconds) = retry_after_s {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, (*seconds).into());
            }
            return response;
        }
        ReplyBody::Sse(events) => events.clone(),
        ReplyBody::Text { text, chunks } => text_events(&model, text, *chunks),
        ReplyBody::ToolCalls {
            text,
            text_chunks,
            calls,
            fragments,
            interleave,
        } => {
            let mut events = vec![chunk(
                &model,
                json!({"role": "assistant", "content": null}),
                None,
            )];
            for piece in split_text(text, *text_chunks) {
                events.push(chunk(&model, json!({"content": piece}), None));
            }
            events.extend(tool_call_events(&model, calls, *fragments, *interleave));
            events
        }
    };
    shared.bump(&shared.streams_started);
    let stream = EventStream {
        events: events.into(),
        sent: 0,
        interval: reply.chunk_interval,
        ending: reply.ending,
        guard: StreamGuard {
            shared,
            ended: false,
        },
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream.into_stream()))
        .expect("static response parts are valid")
}

fn error_response(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = if status.is_server_error() {
        "server_error"
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        "rate_limit_error"
    } else {
        "invalid_request_error"
    };
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    (status, axum::Json(body)).into_response()
}

/// Counts a stream as a client disconnect when hyper drops it before it ended on its own.
struct StreamGuard {
    shared: Arc<Shared>,
    ended: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.shared.bump(&self.shared.disconnects);
        }
    }
}

struct EventStream {
    events: VecDeque<Bytes>,
    sent: usize,
    interval: Duration,
    ending: Ending,
    guard: StreamGuard,
}

impl EventStream {
    fn into_stream(self) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
        futures_util::stream::unfold(self, |mut s| async move {
            match s.ending {
                Ending::StallAfter(n) if s.sent >= n => std::future::pending::<()>().await,
                Ending::DropAfter(n) if s.sent >= n => {
                    // Return Pending once first, so hyper flushes the events already written;
                    // otherwise the abort could discard them and the client would never see them.
                    tokio::task::yield_now().await;
                    // An error from the body makes hyper abort the connection mid-message; the
                    // stream ending here is the script's doing, not a client hang-up.
                    s.guard.ended = true;
                    return Some((
                        Err(std::io::Error::other(
                            "FakeOpenAi: scripted connection drop",
                        )),
                        s,
                    ));
                }
                _ => {}
            }
            let Some(event) = s.events.pop_front() else {
                if !s.guard.ended {
                    s.guard.ended = true;
                    s.guard.shared.bump(&s.guard.shared.streams_finished);
                }
                return None;
            };
            if s.sent > 0 && !s.interval.is_zero() {
                tokio::time::sleep(s.interval).await;
            }
            s.sent += 1;
            Some((Ok(event), s))
        })
    }
}

/// Splits SSE bytes after each blank line, keeping every byte (concatenation = input).
fn split_events(sse: &Bytes) -> Vec<Bytes> {
    let mut events = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < sse.len() {
        if sse[i] == b'\n' && sse[i + 1] == b'\n' {
            events.push(sse.slice(start..i + 2));
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    if start < sse.len() {
        events.push(sse.slice(start..));
    }
    events
}

fn chunk(model: &str, delta: Value, finish_reason: Option<&str>) -> Bytes {
    let chunk = json!({
        "id": "chatcmpl-kavfake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "system_fingerprint": null,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
    });
    Bytes::from(format!("data: {chunk}\n\n"))
}

fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// Splits `text` into `parts` non-empty pieces on character boundaries (fewer if it is short).
pub fn split_text(text: &str, parts: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let parts = parts.clamp(1, chars.len());
    let size = chars.len().div_ceil(parts);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn text_events(model: &str, text: &str, chunks: usize) -> Vec<Bytes> {
    let mut events = vec![chunk(
        model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    for piece in split_text(text, chunks) {
        events.push(chunk(model, json!({"content": piece}), None));
    }
    events.push(chunk(model, json!({}), Some("stop")));
    events.push(done());
    events
}

fn tool_call_events(
    model: &str,
    calls: &[ToolCall],
    fragments: usize,
    interleave: bool,
) -> Vec<Bytes> {
    let per_call: Vec<Vec<Bytes>> = calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            let mut events = vec![chunk(
                model,
                json!({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                    "function": {"name": call.name, "arguments": ""}}]}),
                None,
            )];
            for piece in split_text(&call.arguments, fragments) {
                events.push(chunk(
                    model,
                    json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
            events
        })
        .collect();
    let mut events = Vec::new();
    if interleave {
        let longest = per_call.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for call in &per_call {
                if let Some(event) = call.get(i) {
                    events.push(event.clone());
                }
            }
        }
    } else {
        events.extend(per_call.into_iter().flatten());
    }
    events.push(chunk(model, json!({}), Some("tool_calls")));
    events.push(done());
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_events_keeps_every_byte() {
        let raw = std::fs::read(fixture_path(FIXTURE_PARALLEL_TOOL_CALLS)).unwrap();
        let events = split_events(&Bytes::from(raw.clone()));
        assert!(events.len() > 5);
        assert_eq!(events.concat(), raw);
        assert!(events.iter().all(|e| e.starts_with(b"data: ")));
    }

    #[test]
    fn split_text_covers_the_text_in_order() {
        assert_eq!(split_text("héllo wörld", 4).concat(), "héllo wörld");
        assert_eq!(split_text("hi", 5), vec!["h", "i"]);
        assert!(split_text("", 3).is_empty());
    }
}
