//! axum front door: the TwiML webhook, the Media Streams WebSocket, health, metrics and the
//! per-turn latency API. Handlers are thin: calls run in [`crate::channels::twilio::call::run_call`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::channels::signature;
use crate::channels::twilio::call::{CallDeps, run_call};
use crate::store::Store;

/// Connection limits, rate limits and admission control (issue 15).
pub mod limits;
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
    pub limits: limits::Limits,
    /// The operator console (set by the composition root before serving): mounted at
    /// `/console`, and the authority for the operator API below.
    pub console: std::sync::OnceLock<Arc<crate::console::Console>>,
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
            auth_token: auth_token.filter(|t| !t.is_empty()),
            store,
            whatsapp,
            live_calls: AtomicUsize::new(0),
            calls_idle: Notify::new(),
            draining: AtomicBool::new(false),
            hard_stop: watch::channel(false).0,
            limits: limits::Limits::new(&deps.config.limits),
            console: std::sync::OnceLock::new(),
            deps,
        })
    }

    /// Shutdown has begun: new calls are refused.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn live_calls(&self) -> usize {
        self.live_calls.load(Ordering::Relaxed)
    }

    /// Calls admitted at the webhook whose stream has not opened yet.
    pub fn calls_admitted_pending(&self) -> usize {
        self.limits.admitted.held(monotonic_now())
    }

    /// Whether a new call may start now (see [`limits::admission`]); admitted calls whose
    /// stream has not opened yet count as live.
    pub fn admission(&self) -> Result<(), limits::Refusal> {
        limits::admission(
            self.is_draining(),
            self.live_calls() + self.calls_admitted_pending(),
            self.limits.lag.ms(),
            &self.deps.config.limits,
        )
    }

    /// Admits a new call at its webhook, holding its place until its stream opens.
    fn admit_call(&self) -> Result<(), limits::Refusal> {
        self.limits.admitted.admit(
            monotonic_now(),
            self.is_draining(),
            self.live_calls(),
            self.limits.lag.ms(),
            &self.deps.config.limits,
        )
    }
}

/// The shell's monotonic now for the admission machine: tokio's, so paused-time tests drive it.
fn monotonic_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
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
    #[error("too many requests from this address")]
    RateLimited,
    #[error("store error: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self {
            // The console answers its own errors (`{ok:false, error, reason}`).
            AppError::Console(e) => e.status(),
            AppError::BadSignature => StatusCode::FORBIDDEN,
            AppError::Draining | AppError::NoStore => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        };
        if let AppError::Console(e) = self {
            return e.into_response();
        }
        tracing::warn!(%status, error = %self, "request refused");
        (status, self.to_string()).into_response()
    }
}

pub fn app(state: Arc<AppState>) -> Router {
    let request_timeout = Duration::from_millis(state.deps.config.limits.request_timeout_ms);
    // Webhooks are what the internet can reach: rate-limited per client IP.
    let webhooks = Router::new()
        .route(VOICE_PATH, post(voice_webhook))
        .merge(whatsapp::webhook_routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            webhook_rate_limit,
        ));
    Router::new()
        .merge(webhooks)
        .route(STREAM_PATH, get(media_stream))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(operator_api(&state))
        .merge(whatsapp::operator_routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_request_timeouts,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .with_state(state)
}

/// `/metrics` when it is not on its own listener (`[server] metrics_listen`), the console at
/// `/console`, and the turn/trace API behind console authentication (transcripts, phones).
fn operator_api(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let mut router = Router::new()
        .route("/api/turns", get(recent_turns))
        .route("/api/calls/{call_sid}/turns", get(call_turns))
        .route("/api/calls/{call_sid}/tools", get(call_tool_traces))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_operator,
        ));
    if state.deps.config.server.metrics_listen.is_empty() {
        router = router
            .route("/metrics", get(metrics))
            .route("/metrics/latency", get(metrics_latency));
    }
    if let Some(console) = state.console.get() {
        let weak = Arc::downgrade(state);
        let ops = crate::console::ops::Sources::new(
            state.deps.live.clone(),
            state.deps.metrics.clone(),
            Arc::new(move || weak.upgrade().is_none_or(|s| s.is_draining())),
            state.deps.config.console.ops_max_streams,
        );
        router = router.nest_service("/console", console.router(ops));
    }
    router
}

/// `/metrics` alone, for `[server] metrics_listen`.
pub fn metrics_app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/metrics/latency", get(metrics_latency))
        .with_state(state)
}

/// Console authentication (session cookie, account API token or `KAV_ADMIN_TOKEN`) for the
/// operator API; the principal goes into the request for the handlers' tenant checks.
async fn require_operator(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(console) = state.console.get() else {
        return (
            StatusCode::UNAUTHORIZED,
            "operator API needs the console (a store) and an account or KAV_ADMIN_TOKEN",
        )
            .into_response();
    };
    match console.authenticate(request.headers()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// The per-IP webhook limit. A request without a peer address (a test calling the router
/// directly) is not limited.
async fn webhook_rate_limit(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>();
    if let (Some(rate), Some(ConnectInfo(peer))) = (&state.limits.webhook_rate, peer)
        && !rate.check(peer.ip())
    {
        state
            .deps
            .metrics
            .add(crate::metrics::Counter::RateLimited, 1);
        return AppError::RateLimited.into_response();
    }
    next.run(request).await
}

/// Counts the 408s the request timeout produced (the layer outside this one answers them).
async fn count_request_timeouts(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    // Runs inside the timeout: if it is dropped, the request timed out.
    struct Pending<'a>(&'a AppState, bool);
    impl Drop for Pending<'_> {
        fn drop(&mut self) {
            if !self.1 {
                self.0
                    .deps
                    .metrics
                    .add(crate::metrics::Counter::RequestTimeouts, 1);
            }
        }
    }
    let mut pending = Pending(&state, false);
    let response = next.run(request).await;
    pending.1 = true;
    response
}

/// Serves until `shutdown` resolves, then stops accepting calls and gives live calls
/// `shutdown_grace_ms` to finish before closing them.
///
/// Our own accept loop over hyper's HTTP/1 connection (axum's `serve` offers no header-read
/// timeout): at most `limits.max_connections` connections (more are closed at once and counted),
/// each with hyper's header-read timeout on a tokio timer, upgrades enabled for the Media Streams
/// WebSocket. A call's WebSocket keeps its connection's slot until the call ends.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use crate::metrics::Counter;
    let cfg = &state.deps.config;
    let grace = Duration::from_millis(cfg.server.shutdown_grace_ms);
    tokio::spawn(limits::sample_loop_lag(
        Arc::downgrade(&state),
        Duration::from_millis(cfg.limits.lag_sample_ms),
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(cfg.limits.header_read_timeout_ms))
        .keep_alive(true);
    let router = app(state.clone());
    // Every connection task holds a receiver: a change asks it to finish gracefully, and
    // `closed()` resolves once they have all ended.
    let (conns_stop, conns_stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = state.limits.connections.clone().try_acquire_owned() else {
            state.deps.metrics.add(Counter::ConnectionsRefused, 1);
            drop(tcp);
            continue;
        };
        // Small frames every 20 ms: Nagle would batch them and add jitter.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        let permit = ConnectionSlot(Arc::new(permit));
        let router = router.clone();
        let slot = permit.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(slot.clone());
            tower::Service::call(&mut router.clone(), request)
        });
        let conn = http
            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
            .with_upgrades();
        let mut stop = conns_stop_rx.clone();
        let metrics = state.deps.metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    metrics.add(Counter::HeaderTimeouts, 1);
                } else {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
            }
        });
    }
    // Stop accepting (new connections are refused by the kernel), answer 503 on open ones.
    drop(listener);
    state.draining.store(true, Ordering::SeqCst);
    drop(conns_stop_rx);
    let _ = conns_stop.send(true);
    if tokio::time::timeout(grace, conns_stop.closed())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the grace period");
    }
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

/// A connection's slot under `limits.max_connections`, in the request's extensions so a call's
/// WebSocket can keep it after the HTTP connection task has handed the socket over.
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<tokio::sync::OwnedSemaphorePermit>);

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

pub(crate) fn xml_escape(s: &str) -> String {
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
    // Near capacity: this call hears a short message (or is dialled elsewhere) so the calls
    // already live keep their audio.
    if let Err(refusal) = state.admit_call() {
        state
            .deps
            .metrics
            .add(crate::metrics::Counter::CallsRefused, 1);
        tracing::warn!(reason = refusal.as_str(), ?refusal, "new call refused");
        let twiml =
            limits::overflow_twiml(&state.deps.config.limits, &state.deps.config.call.language);
        return Ok(([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], twiml).into_response());
    }
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
    slot: Option<axum::Extension<ConnectionSlot>>,
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
    // Live first, then release the held place: the call is never counted zero times.
    state.live_calls.fetch_add(1, Ordering::SeqCst);
    state.limits.admitted.stream_opened(monotonic_now());
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
            let _slot = slot;
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

/// Readiness (distinct from liveness): 503 while draining, over capacity, or when the store does
/// not answer within a second. A load balancer stops sending new calls; live ones carry on.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let admission = state.admission();
    let store = match &state.store {
        None => "none",
        Some(store) => match tokio::time::timeout(Duration::from_secs(1), store.ping()).await {
            Ok(Ok(())) => "ok",
            Ok(Err(_)) => "error",
            Err(_) => "timeout",
        },
    };
    let ready = admission.is_ok() && store != "error" && store != "timeout";
    let reason = match (admission, ready) {
        (Err(r), _) => r.as_str(),
        (Ok(()), false) => "store",
        (Ok(()), true) => "",
    };
    let body = serde_json::json!({
        "ready": ready,
        "reason": reason,
        "calls_active": state.live_calls(),
        "calls_admitted_pending": state.calls_admitted_pending(),
        "max_calls": state.deps.config.limits.max_calls,
        "loop_lag_ms": state.limits.lag.ms(),
        "connections_open": state.limits.open_connections(),
        "store": store,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    use crate::metrics::{Reading, ReadingValue};
    let (rss, cpu) = crate::metrics::process_usage().unwrap_or((0, 0.0));
    let dropped = state
        .deps
        .recorder
        .as_ref()
        .map(|r| r.dropped())
        .unwrap_or(0);
    let mut readings = vec![
        Reading::gauge(
            "process_resident_memory_bytes",
            "Resident memory",
            rss as f64,
        ),
        Reading {
            name: "process_cpu_seconds".into(),
            help: "CPU time used (user and system), seconds",
            value: ReadingValue::CounterF64(cpu),
        },
        Reading::gauge(
            "process_open_fds",
            "Open file descriptors",
            crate::metrics::open_fds().unwrap_or(0) as f64,
        ),
        Reading::gauge(
            "kav_tasks_alive",
            "Tokio tasks alive (spawned and not finished)",
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as f64,
        ),
        Reading::counter(
            "kav_store_rows_dropped",
            "Rows dropped because the store writer fell behind",
            dropped,
        ),
        Reading::gauge(
            "kav_connections_open",
            "Open HTTP/WebSocket connections",
            state.limits.open_connections() as f64,
        ),
        Reading::gauge(
            "kav_loop_lag_ms",
            "Event-loop lag seen by the sampler (decaying maximum)",
            state.limits.lag.ms() as f64,
        ),
        Reading::gauge(
            "kav_ready",
            "1 when new calls are admitted",
            f64::from(u8::from(state.admission().is_ok())),
        ),
    ];
    if let Some(wa) = &state.whatsapp {
        readings.extend(wa.metrics());
    }
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.deps.metrics.render_prometheus(&readings),
    )
        .into_response()
}

/// Exact per-process latency quantiles (turn marks, per-call figures) for load measurements;
/// `/metrics` carries the same values as histograms.
async fn metrics_latency(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(state.deps.metrics.latency_json()).into_response()
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn recent_turns(
    State(state): State<Arc<AppState>>,
    axum::Extension(principal): axum::Extension<crate::console::auth::Principal>,
    Query(q): Query<Limit>,
) -> Result<Response, AppError> {
    // Every call of every business: the platform admin's view only.
    if !principal.is_platform_admin() {
        return Err(AppError::Console(
            crate::console::auth::AuthError::Forbidden.into(),
        ));
    }
    let store = state.store.as_ref().ok_or(AppError::NoStore)?;
    let turns = store.recent_turns(q.limit.unwrap_or(50).min(1000)).await?;
    Ok(axum::Json(turns).into_response())
}

async fn call_turns(
    State(state): State<Arc<AppState>>,
    axum::Extension(principal): axum::Extension<crate::console::auth::Principal>,
    Path(call_sid): Path<String>,
) -> Result<Response, AppError> {
    let store = state.store.as_ref().ok_or(AppError::NoStore)?;
    authorize_call(&state, &principal, &call_sid).await?;
    if let Some(rec) = &state.deps.recorder {
        rec.flush().await;
    }
    let turns = store.call_turns(&call_sid).await?;
    Ok(axum::Json(turns).into_response())
}

/// The booking agent's tool calls in one conversation (arguments PII-masked), in order.
async fn call_tool_traces(
    State(state): State<Arc<AppState>>,
    axum::Extension(principal): axum::Extension<crate::console::auth::Principal>,
    Path(call_sid): Path<String>,
) -> Result<Response, AppError> {
    let store = state.store.as_ref().ok_or(AppError::NoStore)?;
    authorize_call(&state, &principal, &call_sid).await?;
    let traces = store.tool_traces(&call_sid).await?;
    Ok(axum::Json(traces).into_response())
}

/// A business's staff read only their business's calls (see `Console::authorize_call`).
async fn authorize_call(
    state: &AppState,
    principal: &crate::console::auth::Principal,
    call_sid: &str,
) -> Result<(), AppError> {
    match state.console.get() {
        Some(console) => Ok(console.authorize_call(principal, call_sid).await?),
        None => Err(AppError::NoStore),
    }
}
