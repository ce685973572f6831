//! The live ops view (issue 12 item 4): live calls (server-sent events), a call's per-turn
//! latency waterfall, latency percentiles per business and provider over the last hour and day
//! with a 5-minute time series, error and drop counters, WhatsApp health.
//!
//! **Sources:** live calls come from the in-memory registry the call drivers publish into once a
//! second ([`crate::channels::live`]); latencies from the `turns` table (not from `/metrics`);
//! process-wide counters from the metrics structs; WhatsApp health from the store.
//!
//! **Access:** like every console route; the platform admin sees every business, an owner or
//! staff member only their own (another business's ops page, events or call: 403). Process-wide
//! counters are shown to the platform admin only; a business sees the sums over its live calls.
//!
//! **Events:** `GET …/ops/events` is a `text/event-stream` of `calls` events, each the whole live
//! table (HTML rows on the page route, JSON under `/api`), sent when the registry changed, at most
//! once per [`TICK`]. The stream is produced on demand (pull): a slow client is sent fewer, newer
//! snapshots, so nothing queues for it; at most `console.ops_max_streams` streams are open at
//! once (then 503), a comment heartbeat keeps proxies from closing an idle one, and streams end
//! when the server starts draining.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Extension, Path};
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use hdrhistogram::Histogram as Exact;
use serde::Serialize;

use super::auth::AuthError;
use super::pages::Ctx;
use super::{Answer, Console, ConsoleError, Format};
use crate::channels::live::{LiveCall, LiveCalls, LiveSnapshot};
use crate::metrics::{Counter, MARK_NAMES, Metrics, mark_values};
use crate::store::booking::ToolTraceRow;
use crate::store::ops::WhatsAppHealth;

/// How often an event stream looks at the registry.
pub const TICK: Duration = Duration::from_secs(1);
/// Heartbeat comment on an idle event stream.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Most turns one percentile computation reads (newest first; the view says when it was cut).
pub const MAX_WINDOW_ROWS: u32 = 50_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Width of one point of the latency time series.
pub const BUCKET_MS: i64 = 5 * 60_000;
/// The marks a waterfall draws, in order.
const WATERFALL: [&str; 5] = [
    "stt_first_partial",
    "stt_final",
    "ai_latency",
    "tts_ready",
    "total",
];

/// What the ops view reads besides the store: handed to [`Console::router`] by the server.
#[derive(Clone)]
pub struct Sources {
    pub live: Arc<LiveCalls>,
    pub metrics: Arc<Metrics>,
    /// True once the server is shutting down: open event streams end.
    pub draining: Arc<dyn Fn() -> bool + Send + Sync>,
    streams: Arc<tokio::sync::Semaphore>,
}

impl Sources {
    pub fn new(
        live: Arc<LiveCalls>,
        metrics: Arc<Metrics>,
        draining: Arc<dyn Fn() -> bool + Send + Sync>,
        max_streams: usize,
    ) -> Self {
        Self {
            live,
            metrics,
            draining,
            streams: Arc::new(tokio::sync::Semaphore::new(max_streams)),
        }
    }
}

const OPS_JS: &str = include_str!("assets/ops.js");
const OPS_CSS: &str = include_str!("assets/ops.css");
const UPLOT_JS: &str = include_str!("assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/uPlot.min.css");

/// Adds the ops templates to the console's template set.
pub(super) fn with_templates(
    mut env: minijinja::Environment<'static>,
) -> minijinja::Environment<'static> {
    for (name, source) in [
        ("ops.html", include_str!("templates/ops.html")),
        ("ops_rows.html", include_str!("templates/ops_rows.html")),
        ("ops_call.html", include_str!("templates/ops_call.html")),
    ] {
        env.add_template(name, source)
            .expect("ops templates are valid");
    }
    env
}

/// The ops view's static files (no principal needed, like the console's other assets).
pub(super) fn public_routes() -> Router<Arc<Console>> {
    let asset = |content_type: &'static str, body: &'static str| {
        get(move || async move {
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, "max-age=86400"),
                ],
                body,
            )
                .into_response()
        })
    };
    Router::new()
        .route("/assets/ops.js", asset("text/javascript", OPS_JS))
        .route("/assets/ops.css", asset("text/css", OPS_CSS))
        .route(
            "/assets/uPlot.iife.min.js",
            asset("text/javascript", UPLOT_JS),
        )
        .route("/assets/uPlot.min.css", asset("text/css", UPLOT_CSS))
}

/// Behind authentication (mounted for pages and under `/api`).
pub(super) fn routes(sources: Sources) -> Router<Arc<Console>> {
    Router::new()
        .route("/ops", get(ops_page))
        .route("/ops/events", get(events))
        .route("/b/{biz}/ops", get(ops_page))
        .route("/b/{biz}/ops/events", get(events))
        .route("/calls/{call_sid}", get(call_page))
        .layer(Extension(sources))
}

// ------------------------------------------------------------------ scope

/// Which businesses a view covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    All,
    One(String),
}

impl Scope {
    fn covers(&self, business: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::One(b) => b == business,
        }
    }

    fn business(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::One(b) => Some(b),
        }
    }
}

/// `/ops` covers everything for the platform admin, else the principal's business;
/// `/b/{biz}/ops` covers `biz` if the principal may see it (403 otherwise, 404 if unknown).
async fn scope_of(ctx: &Ctx, biz: Option<&str>) -> Result<Scope, ConsoleError> {
    match biz {
        Some(biz) => {
            ctx.p.can_view(biz)?;
            ctx.c
                .rt
                .store
                .business(biz)
                .await?
                .ok_or(ConsoleError::NotFound)?;
            Ok(Scope::One(biz.to_string()))
        }
        None if ctx.p.is_platform_admin() => Ok(Scope::All),
        None => Ok(Scope::One(
            ctx.p.business_id.clone().ok_or(AuthError::Forbidden)?,
        )),
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn render(ctx: &Ctx, template: &str, view: &impl Serialize) -> Answer {
    ctx.c.render(ctx.fmt, &ctx.page, template, view)
}

// ------------------------------------------------------------------ live calls

/// One live call as the table shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LiveRow {
    pub call_sid: String,
    pub business: String,
    pub started_at_ms: i64,
    pub duration_s: i64,
    #[serde(flatten)]
    pub now: LiveSnapshot,
}

impl LiveRow {
    fn new(c: &LiveCall, business: String, now_ms: i64) -> Self {
        Self {
            call_sid: c.call_sid.clone(),
            business,
            started_at_ms: c.started_at_ms,
            duration_s: (now_ms - c.started_at_ms).max(0) / 1000,
            now: c.now,
        }
    }
}

/// The live calls of `scope`; a call's business is resolved once (then kept in the registry).
async fn live_rows(
    console: &Console,
    live: &LiveCalls,
    scope: &Scope,
) -> Result<Vec<LiveRow>, ConsoleError> {
    let now = wall_ms();
    let mut rows = Vec::new();
    for call in live.list() {
        let business = match &call.business {
            Some(b) => b.clone(),
            None => {
                let b = console.business_of(call.parameters.clone()).await?;
                live.set_business(&call.call_id, &b);
                b
            }
        };
        if scope.covers(&business) {
            rows.push(LiveRow::new(&call, business, now));
        }
    }
    Ok(rows)
}

#[derive(Serialize)]
struct RowsView<'a> {
    live: &'a [LiveRow],
}

// ------------------------------------------------------------------ the ops page

#[derive(Serialize)]
struct OpsView {
    /// `None`: every business.
    business: Option<String>,
    events_url: String,
    live: Vec<LiveRow>,
    percentiles: Vec<PercentileRow>,
    /// Turns the percentiles were computed over, and whether the row limit cut the day short.
    rows_read: usize,
    rows_limit: u32,
    rows_cut: bool,
    series: Series,
    /// `series` as JSON, for the chart script (an HTML-escaped attribute).
    series_json: String,
    counters: Vec<CounterRow>,
    whatsapp: WhatsAppHealth,
}

/// `/ops` and `/b/{biz}/ops`.
async fn ops_page(
    ctx: Ctx,
    Extension(src): Extension<Sources>,
    biz: Option<Path<String>>,
) -> Answer {
    let biz = biz.map(|Path(b)| b);
    let scope = scope_of(&ctx, biz.as_deref()).await?;
    let live = live_rows(&ctx.c, &src.live, &scope).await?;
    let now = wall_ms();
    let store = &ctx.c.rt.store;
    let window = store.turns_since(now - DAY_MS, MAX_WINDOW_ROWS).await?;
    let rows_cut = window.len() >= MAX_WINDOW_ROWS as usize;
    let mut turns = Vec::with_capacity(window.len());
    let mut businesses: HashMap<String, String> = HashMap::new();
    for w in window {
        let business = match businesses.get(&w.parameters_json) {
            Some(b) => b.clone(),
            None => {
                let params: BTreeMap<String, String> =
                    serde_json::from_str(&w.parameters_json).unwrap_or_default();
                let b = ctx.c.business_of(params).await?;
                businesses.insert(w.parameters_json.clone(), b.clone());
                b
            }
        };
        if scope.covers(&business) {
            turns.push(WindowTurn {
                business,
                provider: w.providers.unwrap_or_else(|| "unknown".into()),
                at_ms: w.turn.at_ms,
                marks: mark_values(&w.turn.marks),
            });
        }
    }
    let series = series(&turns, now);
    let whatsapp = store.whatsapp_health(scope.business()).await?;
    let view = OpsView {
        events_url: match &scope {
            Scope::All => "/console/ops/events".into(),
            Scope::One(b) if biz.is_some() => format!("/console/b/{b}/ops/events"),
            Scope::One(_) => "/console/ops/events".into(),
        },
        business: scope.business().map(str::to_string),
        counters: counters(&scope, &live, &src),
        live,
        percentiles: percentiles(&turns, now),
        rows_read: turns.len(),
        rows_limit: MAX_WINDOW_ROWS,
        rows_cut,
        series_json: serde_json::to_string(&series).unwrap_or_default(),
        series,
        whatsapp,
    };
    render(&ctx, "ops.html", &view)
}

// ------------------------------------------------------------------ percentiles

/// A turn of the window, grouped by business and provider; marks in [`MARK_NAMES`] order.
#[derive(Debug, Clone)]
pub struct WindowTurn {
    pub business: String,
    pub provider: String,
    pub at_ms: i64,
    pub marks: [Option<u32>; MARK_NAMES.len()],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PercentileRow {
    pub business: String,
    pub provider: String,
    /// `hour` or `day`.
    pub window: &'static str,
    /// The mark's column name without `_ms`.
    pub mark: &'static str,
    pub count: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
}

fn mark_label(name: &'static str) -> &'static str {
    name.strip_suffix("_ms").unwrap_or(name)
}

fn histogram() -> Exact<u64> {
    // 3 significant figures: exact below 2,048 ms, within 0.1 % above.
    Exact::new(3).expect("3 significant figures is valid")
}

/// p50/p95/p99 of each mark per (business, provider) over the last hour and the last day
/// before `now_ms`. Marks a turn did not measure are left out of that mark's figures.
pub fn percentiles(turns: &[WindowTurn], now_ms: i64) -> Vec<PercentileRow> {
    let windows: [(&'static str, i64); 2] = [("hour", HOUR_MS), ("day", DAY_MS)];
    let mut groups: BTreeMap<(&str, &str, usize, usize), Exact<u64>> = BTreeMap::new();
    for t in turns {
        for (w, (_, span)) in windows.iter().enumerate() {
            if t.at_ms < now_ms - span || t.at_ms > now_ms {
                continue;
            }
            for (m, value) in t.marks.iter().enumerate() {
                if let Some(v) = value {
                    groups
                        .entry((&t.business, &t.provider, w, m))
                        .or_insert_with(histogram)
                        .saturating_record(u64::from(*v));
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|((business, provider, w, m), h)| PercentileRow {
            business: business.to_string(),
            provider: provider.to_string(),
            window: windows[w].0,
            mark: mark_label(MARK_NAMES[m]),
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
        })
        .collect()
}

/// p95 of `total` per [`BUCKET_MS`] over the last day: bucket starts (unix seconds, for the
/// chart) and values (`None`: no turn in that bucket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Series {
    pub t: Vec<i64>,
    pub p95_total_ms: Vec<Option<u64>>,
}

pub fn series(turns: &[WindowTurn], now_ms: i64) -> Series {
    let total = MARK_NAMES
        .iter()
        .position(|n| *n == "total_ms")
        .expect("total_ms is a mark");
    let end = now_ms - now_ms.rem_euclid(BUCKET_MS) + BUCKET_MS;
    let start = end - DAY_MS;
    let n = (DAY_MS / BUCKET_MS) as usize;
    let mut buckets: Vec<Option<Exact<u64>>> = (0..n).map(|_| None).collect();
    for t in turns {
        if let (Some(v), true) = (t.marks[total], t.at_ms >= start && t.at_ms < end) {
            let i = ((t.at_ms - start) / BUCKET_MS) as usize;
            buckets[i]
                .get_or_insert_with(histogram)
                .saturating_record(u64::from(v));
        }
    }
    Series {
        t: (0..n as i64)
            .map(|i| (start + i * BUCKET_MS) / 1000)
            .collect(),
        p95_total_ms: buckets
            .iter()
            .map(|b| b.as_ref().map(|h| h.value_at_quantile(0.95)))
            .collect(),
    }
}

// ------------------------------------------------------------------ counters

#[derive(Debug, Clone, Serialize)]
pub struct CounterRow {
    pub name: &'static str,
    /// `process` (since the server started, every business), `live` (calls in progress) or
    /// `store` (the database now).
    pub source: &'static str,
    pub value: u64,
}

fn counters(scope: &Scope, live: &[LiveRow], src: &Sources) -> Vec<CounterRow> {
    let sum = |f: fn(&LiveSnapshot) -> u64| live.iter().map(|r| f(&r.now)).sum::<u64>();
    let mut rows = vec![
        ("live_calls", live.len() as u64),
        ("fallbacks", sum(|r| r.fallbacks)),
        ("tts_errors", sum(|r| r.tts_errors)),
        ("underruns", sum(|r| r.underruns)),
        ("frames_late_5ms", sum(|r| r.frames_late_5ms)),
        ("frames_late_20ms", sum(|r| r.frames_late_20ms)),
        ("frames_dropped", sum(|r| r.frames_dropped)),
        ("barge_ins", sum(|r| r.barge_ins)),
    ]
    .into_iter()
    .map(|(name, value)| CounterRow {
        name,
        source: "live",
        value,
    })
    .collect::<Vec<_>>();
    if *scope == Scope::All {
        let m = &src.metrics;
        let process = |name: &'static str, value: u64| CounterRow {
            name,
            source: "process",
            value,
        };
        rows.push(process("turns", m.get(Counter::Turns)));
        rows.push(process(
            "fallbacks",
            m.get(Counter::SttTimeouts)
                + m.get(Counter::AgentTimeouts)
                + m.get(Counter::AgentErrors),
        ));
        for c in [
            Counter::SttTimeouts,
            Counter::AgentTimeouts,
            Counter::AgentErrors,
            Counter::TtsErrors,
            Counter::SttErrors,
            Counter::Underruns,
            Counter::FramesLate5ms,
            Counter::FramesLate20ms,
            Counter::SttAudioDropped,
            Counter::WsSendDropped,
            Counter::SlowConsumers,
            Counter::BargeIns,
            Counter::CallsRefused,
        ] {
            rows.push(process(c.label(), m.get(c)));
        }
        rows.push(process("live_calls_unlisted", src.live.refused()));
    }
    rows
}

// ------------------------------------------------------------------ events

/// What one event stream carries between polls.
struct Stream {
    ctx: Ctx,
    src: Sources,
    scope: Scope,
    ticks: tokio::time::Interval,
    last_version: Option<u64>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// `/ops/events` and `/b/{biz}/ops/events`.
async fn events(ctx: Ctx, Extension(src): Extension<Sources>, biz: Option<Path<String>>) -> Answer {
    let biz = biz.map(|Path(b)| b);
    let scope = scope_of(&ctx, biz.as_deref()).await?;
    let slot = src.streams.clone().try_acquire_owned().map_err(|_| {
        ConsoleError::Unavailable("too many open ops event streams; try again later".into())
    })?;
    let mut ticks = tokio::time::interval(TICK);
    // A client that reads slowly gets the newest snapshot, not a backlog.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let state = Stream {
        ctx,
        src,
        scope,
        ticks,
        last_version: None,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            s.ticks.tick().await;
            if (s.src.draining)() {
                return None;
            }
            let version = s.src.live.version();
            if s.last_version == Some(version) {
                continue;
            }
            s.last_version = Some(version);
            let event = match live_event(&s).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "ops event stream: could not build an update");
                    continue;
                }
            };
            return Some((Ok::<Event, Infallible>(event), s));
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response())
}

/// The live table as one `calls` event: rendered rows (pages) or JSON (`/api`).
async fn live_event(s: &Stream) -> Result<Event, ConsoleError> {
    let live = live_rows(&s.ctx.c, &s.src.live, &s.scope).await?;
    let data = match s.ctx.fmt {
        Format::Json => serde_json::to_string(&live).unwrap_or_default(),
        Format::Html => {
            s.ctx
                .c
                .templates
                .get_template("ops_rows.html")?
                .render(minijinja::context! {
                    page => &s.ctx.page,
                    view => RowsView { live: &live },
                })?
        }
    };
    Ok(Event::default().event("calls").data(data))
}

// ------------------------------------------------------------------ a call's waterfall

#[derive(Debug, Serialize)]
struct CallView {
    call_sid: String,
    business: Option<String>,
    started_at_ms: Option<i64>,
    ended_at_ms: Option<i64>,
    end_reason: Option<String>,
    /// The live numbers, while the call is in progress.
    live: Option<LiveRow>,
    /// The largest mark of any turn: the full width of a bar.
    scale_ms: u32,
    turns: Vec<TurnView>,
    barge_ins: usize,
    /// Tool calls not tied to a turn of this call's table.
    other_tools: Vec<ToolTraceRow>,
}

#[derive(Debug, Serialize)]
struct TurnView {
    turn: u32,
    input_kind: String,
    user_text: String,
    bot_text: String,
    interrupted: bool,
    barged_in: bool,
    bars: Vec<Bar>,
    tools: Vec<ToolTraceRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bar {
    pub mark: &'static str,
    pub ms: Option<u32>,
    /// Width as a percentage of the call's scale (0 when not measured), one decimal.
    pub width_pct: f64,
}

/// A turn's waterfall bars: each mark (ms after the caller stopped speaking) to the call's scale.
pub fn bars(marks: &[Option<u32>; MARK_NAMES.len()], scale_ms: u32) -> Vec<Bar> {
    WATERFALL
        .iter()
        .map(|&mark| {
            let i = MARK_NAMES
                .iter()
                .position(|n| mark_label(n) == mark)
                .expect("waterfall marks are marks");
            let ms = marks[i];
            let width_pct = ms.map_or(0.0, |v| {
                (f64::from(v) * 1000.0 / f64::from(scale_ms.max(1))).round() / 10.0
            });
            Bar {
                mark,
                ms,
                width_pct,
            }
        })
        .collect()
}

async fn call_page(
    ctx: Ctx,
    Extension(src): Extension<Sources>,
    Path(call_sid): Path<String>,
) -> Answer {
    ctx.c.authorize_call(&ctx.p, &call_sid).await?;
    let store = &ctx.c.rt.store;
    let call = store.call(&call_sid).await?;
    let live_call = src.live.list().into_iter().find(|c| c.call_sid == call_sid);
    if call.is_none() && live_call.is_none() {
        return Err(ConsoleError::NotFound);
    }
    let business = match (&call, &live_call) {
        (Some(c), _) => {
            let parameters = serde_json::from_str(&c.parameters_json).unwrap_or_default();
            ctx.c.business_of(parameters).await?
        }
        (None, Some(l)) => match &l.business {
            Some(b) => b.clone(),
            None => ctx.c.business_of(l.parameters.clone()).await?,
        },
        (None, None) => return Err(ConsoleError::NotFound),
    };
    let rows = store.call_turns(&call_sid).await?;
    let events = store.call_events(&call_sid).await?;
    let mut tools = store.tool_traces(&call_sid).await?;
    let barged: Vec<u32> = events
        .iter()
        .filter(|e| e.kind == "barge_in")
        .filter_map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.detail_json)
                .ok()?
                .get("turn")?
                .as_u64()
                .and_then(|t| u32::try_from(t).ok())
        })
        .collect();
    let marks: Vec<_> = rows.iter().map(|r| mark_values(&r.marks)).collect();
    let scale_ms = marks
        .iter()
        .flat_map(|m| m.iter().flatten().copied())
        .max()
        .unwrap_or(1)
        .max(1);
    let turns = rows
        .into_iter()
        .zip(&marks)
        .map(|(r, m)| {
            let (mine, rest) = tools.drain(..).partition(|t| t.turn == i64::from(r.turn));
            tools = rest;
            TurnView {
                turn: r.turn,
                input_kind: r.input_kind.as_str().to_string(),
                user_text: r.user_text,
                bot_text: r.bot_text,
                interrupted: r.interrupted,
                barged_in: barged.contains(&r.turn),
                bars: bars(m, scale_ms),
                tools: mine,
            }
        })
        .collect();
    let view = CallView {
        live: live_call.map(|c| LiveRow::new(&c, business.clone(), wall_ms())),
        business: Some(business),
        started_at_ms: call.as_ref().map(|c| c.started_at_ms),
        ended_at_ms: call.as_ref().and_then(|c| c.ended_at_ms),
        end_reason: call.and_then(|c| c.end_reason),
        call_sid,
        scale_ms,
        turns,
        barge_ins: barged.len(),
        other_tools: tools,
    };
    render(&ctx, "ops_call.html", &view)
}

#[cfg(test)]
mod tests;
