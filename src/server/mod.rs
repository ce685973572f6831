//! axum front door: the TwiML webhook, the Media Streams WebSocket, health, metrics and the
//! per-turn latency API. Handlers are thin: calls run in [`crate::channels::twilio::call::run_call`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::channels::signature;
use crate::channels::twilio::call::{CallDeps, run_call};
use crate::store::Store;

/// WhatsApp channel routes (issue 5).
pub mod whatsapp;

pub const VOICE_PATH: &str = "/twilio/voice";
pub const STREAM_PATH: &str = "/twilio/stream";

pub struct AppState {
    pub deps: Arc<CallDeps>,
    /// `TWILIO_AUTH_TOKEN`: when set, every webhook and stream handshake must be signed.
    pub auth_token: Option<String>,
    pub store: Option<Store>,
    /// The WhatsApp channel, when configured (its routes answer 503 otherwise).
    pub whatsapp: Option<Arc<crate::channels::whatsapp::inbox::WhatsAppService>>,
    live_calls: AtomicUsize,
    calls_idle: Notify,
    draining: AtomicBool,
    hard_stop: watch::Sender<bool>,
}

impl AppState {
    pub fn new(deps: Arc<CallDeps>, auth_token: Option<String>, store: Option<Store>) -> Arc<Self> {
        Self::with_whatsapp(deps, auth_token, store, None)
    }

    pub fn with_whatsapp(
        deps: Arc<CallDeps>,
        auth_token: Option<String>,
        store: Option<Store>,
        whatsapp: Option<Arc<crate::channels::whatsapp::inbox::WhatsAppService>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            deps,
            auth_token: auth_token.filter(|t| !t.is_empty()),
            store,
            whatsapp,
            live_calls: AtomicUsize::new(0),
            calls_idle: Notify::new(),
            draining: AtomicBool::new(false),
            hard_stop: watch::channel(false).0,
        })
    }

    /// Shutdown has begun: new calls are refused.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn live_calls(&self) -> usize {
        self.live_calls.load(Ordering::Relaxed)
    }
}

/// Errors a handler can answer with; one place maps them to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("missing or invalid X-Twilio-Signature")]
    BadSignature,
    #[error("not accepting new calls: shutting down")]
    Draining,
    #[error("no store configured")]
    NoStore,
    #[error("store error: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match self {
            AppError::BadSignature => StatusCode::FORBIDDEN,
            AppError::Draining | AppError::NoStore => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::warn!(%status, error = %self, "request refused");
        (status, self.to_string()).into_response()
    }
}

pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route(VOICE_PATH, post(voice_webhook))
        .route(STREAM_PATH, get(media_stream))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/turns", get(recent_turns))
        .route("/api/calls/{call_sid}/turns", get(call_turns))
        .route("/api/calls/{call_sid}/tools", get(call_tool_traces))
        .merge(whatsapp::routes())
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting calls and gives live calls
/// `shutdown_grace_ms` to finish before closing them.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_millis(state.deps.config.server.shutdown_grace_ms);
    let drain_state = state.clone();
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    // Small frames every 20 ms: Nagle would batch them and add jitter.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app(state.clone())).with_graceful_shutdown(async move {
        shutdown.await;
        drain_state.draining.store(true, Ordering::SeqCst);
        let _ = stopped_tx.send(());
    });
    server.await?;
    let _ = stopped_rx.await;
    let live = state.live_calls();
    if live > 0 {
        tracing::info!(
            live,
            grace_ms = grace.as_millis() as u64,
            "waiting for live calls to finish"
        );
        if tokio::time::timeout(grace, wait_until_idle(&state))
            .await
            .is_err()
        {
            tracing::warn!(
                live = state.live_calls(),
                "grace period over; closing remaining calls"
            );
            let _ = state.hard_stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(3), wait_until_idle(&state)).await;
        }
    }
    if let Some(rec) = &state.deps.recorder {
        rec.flush().await;
    }
    Ok(())
}

/// Resolves once no call is live. The waiter registers before it reads the count: the last call's
/// `notify_waiters` stores no permit, so checking first could miss it and wait forever.
async fn wait_until_idle(state: &AppState) {
    loop {
        let idle = state.calls_idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if state.live_calls() == 0 {
            return;
        }
        idle.await;
    }
}

/// The URL Twilio used, as it signs it: the configured public URL, or scheme and host from the
/// request (X-Forwarded-Proto honoured) when none is configured.
fn request_url(state: &AppState, headers: &HeaderMap, uri: &Uri, ws: bool) -> String {
    let public = state.deps.config.server.public_url.trim_end_matches('/');
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or(uri.path());
    let base = if public.is_empty() {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("http");
        format!("{proto}://{host}")
    } else {
        public.to_string()
    };
    let url = format!("{base}{path_and_query}");
    if ws { to_ws_scheme(&url) } else { url }
}

fn to_ws_scheme(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_string()
    }
}

fn check_signature(
    state: &AppState,
    headers: &HeaderMap,
    url: &str,
    params: &[(String, String)],
) -> Result<(), AppError> {
    let Some(token) = &state.auth_token else {
        return Ok(());
    };
    let sig = headers
        .get("x-twilio-signature")
        .and_then(|h| h.to_str().ok())
        .ok_or(AppError::BadSignature)?;
    // Twilio's docs: for WebSocket handshakes, try the URL with a trailing slash as well.
    let with_slash = format!("{url}/");
    if signature::validate(token, url, params, sig)
        || (params.is_empty() && signature::validate(token, &with_slash, params, sig))
    {
        Ok(())
    } else {
        Err(AppError::BadSignature)
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// Caller details passed on to the stream as `<Parameter>`s (Twilio forbids a query string).
const FORWARDED_PARAMS: &[&str] = &["CallSid", "From", "To", "Direction"];

async fn voice_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, AppError> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(AppError::Draining);
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let url = request_url(&state, &headers, &uri, false);
    check_signature(&state, &headers, &url, &params)?;
    // The phone is still ringing: let the providers connect now, not on the first turn.
    if state.deps.config.call.preconnect
        && let Some((_, call_sid)) = params.iter().find(|(n, _)| n == "CallSid")
    {
        state.deps.stt.prepare(call_sid);
        state.deps.agent.prepare(call_sid);
    }
    let stream_url = request_url(&state, &headers, &Uri::from_static(STREAM_PATH), true);
    let mut twiml =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n  <Connect>\n");
    twiml.push_str(&format!(
        "    <Stream url=\"{}\">\n",
        xml_escape(&stream_url)
    ));
    for (name, value) in params
        .iter()
        .filter(|(n, _)| FORWARDED_PARAMS.contains(&n.as_str()))
    {
        // Twilio: name + value must stay under 500 characters.
        if name.len() + value.len() < 500 {
            twiml.push_str(&format!(
                "      <Parameter name=\"{}\" value=\"{}\" />\n",
                xml_escape(name),
                xml_escape(value)
            ));
        }
    }
    twiml.push_str("    </Stream>\n  </Connect>\n</Response>\n");
    Ok(([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], twiml).into_response())
}

async fn media_stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(AppError::Draining);
    }
    let url = request_url(&state, &headers, &uri, true);
    check_signature(&state, &headers, &url, &[])?;
    let max = state.deps.config.server.max_message_bytes;
    let hard_stop = state.hard_stop.subscribe();
    state.live_calls.fetch_add(1, Ordering::SeqCst);
    let guard = LiveCall(state.clone());
    // Twilio messages are a few hundred bytes: tungstenite's 128 KiB default buffers would be most
    // of a call's memory. The write buffer cap bounds what a non-reading peer can pin.
    Ok(ws
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let _guard = guard;
            run_call(socket, _guard.0.deps.clone(), hard_stop).await;
        }))
}

/// Counts a live call until dropped (also when the upgrade never happens).
struct LiveCall(Arc<AppState>);

impl Drop for LiveCall {
    fn drop(&mut self) {
        if self.0.live_calls.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.calls_idle.notify_waiters();
        }
    }
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let draining = state.draining.load(Ordering::SeqCst);
    let (rss, cpu) = crate::metrics::process_usage().unwrap_or((0, 0.0));
    let body = serde_json::json!({
        "status": if draining { "draining" } else { "ok" },
        "calls_active": state.live_calls(),
        "rss_bytes": rss,
        "cpu_seconds": cpu,
        "providers": {
            "stt": state.deps.stt.name(),
            "agent": state.deps.agent.name(),
            "tts": state.deps.tts.name(),
        },
    });
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let (rss, cpu) = crate::metrics::process_usage().unwrap_or((0, 0.0));
    let dropped = state
        .deps
        .recorder
        .as_ref()
        .map(|r| r.dropped())
        .unwrap_or(0) as f64;
    let mut extra = vec![
        (
            "process_resident_memory_bytes",
            "Resident memory",
            rss as f64,
        ),
        ("process_cpu_seconds_total", "CPU time used", cpu),
        (
            "kav_store_rows_dropped",
            "Rows dropped because the store writer fell behind",
            dropped,
        ),
    ];
    if let Some(wa) = &state.whatsapp {
        extra.extend(wa.metrics());
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.deps.metrics.render_prometheus(&extra),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn recent_turns(
    State(state): State<Arc<AppState>>,
    Query(q): Query<Limit>,
) -> Result<Response, AppError> {
    let store = state.store.as_ref().ok_or(AppError::NoStore)?;
    let turns = store.recent_turns(q.limit.unwrap_or(50).min(1000)).await?;
    Ok(axum::Json(turns).into_response())
}

async fn call_turns(
    State(state): State<Arc<AppState>>,
    Path(call_sid): Path<String>,
) -> Result<Response, AppError> {
    let store = state.store.as_ref().ok_or(AppError::NoStore)?;
    if let Some(rec) = &state.deps.recorder {
        rec.flush().await;
    }
    let turns = store.call_turns(&call_sid).await?;
    Ok(axum::Json(turns).into_response())
}

/// The booking agent's tool calls in one conversation (arguments PII-masked), in order.
async fn call_tool_traces(
    State(state): State<Arc<AppState>>,
    Path(call_sid): Path<String>,
) -> Result<Response, AppError> {
    let store = state.store.as_ref().ok_or(AppError::NoStore)?;
    let traces = store.tool_traces(&call_sid).await?;
    Ok(axum::Json(traces).into_response())
}
