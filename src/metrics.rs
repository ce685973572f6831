//! The process's one metrics registry (prometheus-client), rendered at `GET /metrics` in the
//! OpenMetrics text format, and exact per-process latency quantiles at `GET /metrics/latency`.
//!
//! - Counters are prometheus-client counters (atomics). Calls fold their own per-call counters in
//!   at the end of the call (and periodically), so the per-frame path never touches shared state.
//! - Latency marks are histograms in milliseconds with voice buckets ([`LATENCY_BUCKETS_MS`],
//!   10 ms … 10 s), so they aggregate across instances; each is recorded once per turn (or once per
//!   call), never per frame. The same values also go into exact (HDR) histograms for
//!   `/metrics/latency`, which load measurements read.
//! - Labels are bounded: provider, business, channel. Never a phone number or a call id.
//!
//! Registering a metric: a counter is one line in [`counters!`] below; a per-turn latency is a
//! name in [`MARK_NAMES`] plus its value in [`Metrics::record_turn`]; a per-call figure is a row in
//! [`CALL_FIGURES`] plus its value in [`Metrics::record_call`]; a provider's own metrics come from
//! a [`MetricsSource`] added with [`Metrics::add_source`]; values read at scrape time are
//! [`Reading`]s handed to [`Metrics::render_prometheus`].

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram as Exact;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter as PromCounter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::voice::events::LatencyMarks;

/// Bucket upper bounds (ms) of every latency histogram: 10 ms … 10 s, dense where a voice turn's
/// latencies live (a reply should start within about a second).
pub const LATENCY_BUCKETS_MS: [f64; 16] = [
    10.0, 20.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0,
    3000.0, 5000.0, 10000.0,
];

/// A latency histogram (ms) with the voice buckets.
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

macro_rules! counters {
    ($($name:ident => $label:literal, $help:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Counter { $($name),* }
        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$name),*];
            pub fn label(self) -> &'static str { match self { $(Counter::$name => $label),* } }
            pub fn help(self) -> &'static str { match self { $(Counter::$name => $help),* } }
        }
    };
}

counters! {
    CallsStarted => "calls_started", "Media streams that sent `start`";
    CallsEnded => "calls_ended", "Calls finished for any reason";
    Turns => "turns", "Completed or interrupted turns";
    FramesIn => "frames_in", "20 ms caller frames processed";
    FramesOut => "frames_out", "20 ms bot frames sent";
    MalformedMessages => "malformed_messages", "Messages that were not valid Media Streams JSON";
    InvalidPayloads => "invalid_payloads", "Media payloads that were not valid base64";
    OversizedMessages => "oversized_messages", "Messages over server.max_message_bytes";
    EventsBeforeStart => "events_before_start", "media/dtmf/mark/stop received before `start`";
    UnknownStreamSid => "unknown_stream_sid", "Messages naming another stream";
    UnknownEvents => "unknown_events", "Well-formed messages with an unknown `event`";
    BinaryFrames => "binary_frames", "Binary WebSocket frames (ignored)";
    StartTimeouts => "start_timeouts", "Streams closed because `start` never came";
    WsSendDropped => "ws_send_dropped", "Outbound messages dropped because the socket was not draining";
    SlowConsumers => "slow_consumers", "Calls ended because the peer stopped reading";
    AbruptDisconnects => "abrupt_disconnects", "Streams that ended without `stop`";
    Underruns => "underruns", "Playout underrun episodes during bot speech";
    UnderrunMs => "underrun_ms", "Total playout underrun time";
    LeadHolds => "lead_holds", "Times playout paused because unconfirmed audio reached the RTT-based cap";
    PrimingFrames => "priming_frames", "Frames sent in priming bursts (reply start, after an underrun)";
    FramesLate5ms => "frames_late_5ms", "Steady-state bot frames sent more than 5 ms after their due time (server's share of jitter)";
    FramesLate20ms => "frames_late_20ms", "Steady-state bot frames sent more than 20 ms after their due time";
    StaleMarkEchoes => "stale_mark_echoes", "Mark echoes out of order or after their echo timeout";
    MissingMarkEchoes => "missing_mark_echoes", "Mark echoes that never came within playout.echo_timeout_ms";
    BargeIns => "barge_ins", "Bot speech interrupted by the caller";
    FalseBargeIns => "false_barge_ins", "Caller sounds during bot speech too short to interrupt";
    Digits => "digits", "Keypad digits accepted";
    DuplicateDigits => "duplicate_digits", "Digit reports merged as duplicates (in-band + event)";
    ShortUtterances => "short_utterances", "Utterances discarded as noise";
    SttAudioDropped => "stt_audio_dropped", "Frames not delivered to a slow recogniser";
    SttTimeouts => "stt_timeouts", "No final transcript in time";
    AgentTimeouts => "agent_timeouts", "Agent silent past turn.agent_timeout_ms";
    AgentErrors => "agent_errors", "Agent failures";
    TtsErrors => "tts_errors", "Synthesis failures";
    SttErrors => "stt_errors", "Recogniser stream failures";
    StaleProviderEvents => "stale_provider_events", "Provider events for a cancelled turn";
    UnknownMarks => "unknown_marks", "Mark echoes that match nothing we sent";
    SpeechIgnored => "speech_ignored", "Caller speech ignored (typing digits, or barge-in disabled)";
    StrayTranscripts => "stray_transcripts", "Transcripts that arrived with no utterance open";
    TtsOverflowBytes => "tts_overflow_bytes", "TTS bytes dropped because the playout buffer was full (should stay 0)";
    ConnectionsRefused => "connections_refused", "Connections closed at once: limits.max_connections were open";
    HeaderTimeouts => "header_timeouts", "Connections closed: no whole request head within limits.header_read_timeout_ms (idle keep-alive and WebSocket handshakes included)";
    RequestTimeouts => "request_timeouts", "Requests answered 408: not done within limits.request_timeout_ms";
    RateLimited => "rate_limited", "Webhook requests refused 429 by the per-IP rate limit";
    CallsRefused => "calls_refused", "New calls answered with the overflow TwiML (admission control)";
    WebhooksNotStored => "webhooks_not_stored", "WhatsApp webhooks answered 5xx because they could not be stored (the vendor retries them)";
}

pub const MARK_NAMES: [&str; 7] = [
    "stt_first_partial_ms",
    "stt_final_ms",
    "ai_latency_ms",
    "tts_ready_ms",
    "total_ms",
    "ai_total_ms",
    "tts_total_ms",
];

/// A turn's marks in [`MARK_NAMES`] order.
pub fn mark_values(marks: &LatencyMarks) -> [Option<u32>; MARK_NAMES.len()] {
    [
        marks.stt_first_partial_ms,
        marks.stt_final_ms,
        marks.ai_latency_ms,
        marks.tts_ready_ms,
        marks.total_ms,
        marks.ai_total_ms,
        marks.tts_total_ms,
    ]
}

/// Per-call playout figures recorded when a call ends: (metric name, help).
pub const CALL_FIGURES: [(&str, &str); 2] = [
    (
        "kav_call_rtt_ms",
        "Per call: smoothed RTT to Twilio from mark echoes (SRTT)",
    ),
    (
        "kav_call_lead_max_ms",
        "Per call: largest lead at Twilio (audio sent ahead of the schedule)",
    ),
];

/// A value read at scrape time: process figures, open connections, another component's totals.
/// Counter names are given without `_total` (the encoder appends it).
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub name: String,
    pub help: &'static str,
    pub value: ReadingValue,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadingValue {
    Counter(u64),
    CounterF64(f64),
    Gauge(f64),
}

impl Reading {
    pub fn counter(name: impl Into<String>, help: &'static str, value: u64) -> Self {
        Self {
            name: name.into(),
            help,
            value: ReadingValue::Counter(value),
        }
    }

    pub fn gauge(name: impl Into<String>, help: &'static str, value: f64) -> Self {
        Self {
            name: name.into(),
            help,
            value: ReadingValue::Gauge(value),
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        fn one(
            encoder: &mut DescriptorEncoder,
            name: &str,
            help: &str,
            metric: &impl EncodeMetric,
        ) -> std::fmt::Result {
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
        }
        match self.value {
            ReadingValue::Counter(v) => one(encoder, &self.name, self.help, &ConstCounter::new(v)),
            ReadingValue::CounterF64(v) => {
                one(encoder, &self.name, self.help, &ConstCounter::new(v))
            }
            ReadingValue::Gauge(v) => one(encoder, &self.name, self.help, &ConstGauge::new(v)),
        }
    }
}

/// Readings as a prometheus-client collector (encoded on each scrape).
struct Readings<F>(F);

impl<F> std::fmt::Debug for Readings<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Readings")
    }
}

impl<F: Fn() -> Vec<Reading> + Send + Sync + 'static> Collector for Readings<F> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for r in (self.0)() {
            r.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// A provider's own metrics (e.g. Google stream rotations, Whisper refusals), added once at
/// start-up with [`Metrics::add_source`]: live metrics registered in the registry, and/or values
/// read on each scrape.
pub trait MetricsSource: Send + Sync + 'static {
    /// Registers live metrics (counters, histograms) once. Default: none.
    fn register(&self, _registry: &mut Registry) {}
    /// Values read on each scrape. Default: none.
    fn readings(&self) -> Vec<Reading> {
        Vec::new()
    }
}

/// Server-side barge-in reaction histogram on `/metrics` (ms) and its exact twin in
/// `/metrics/latency` (`"barge_in"` group, fractional ms).
pub const BARGE_IN_CLEAR_METRIC: &str = "kav_barge_in_clear_ms";
/// Barge-in reaction is sub-millisecond on a healthy server: buckets finer than the voice ones.
const BARGE_IN_BUCKETS_MS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 250.0,
];

/// The exact (HDR) twins of the latency histograms, for `/metrics/latency`.
struct ExactLatencies {
    marks: [Exact<u64>; MARK_NAMES.len()],
    calls: [Exact<u64>; CALL_FIGURES.len()],
    /// Barge-in decision → `clear` flushed, µs.
    barge_in_clear_us: Exact<u64>,
}

pub struct Metrics {
    counters: Vec<PromCounter>,
    calls_active: Gauge,
    marks: [Histogram; MARK_NAMES.len()],
    calls: [Histogram; CALL_FIGURES.len()],
    barge_in_clear: Histogram,
    exact: Mutex<ExactLatencies>,
    /// Registration at start-up, encoding on scrape; never touched on the call path.
    registry: Mutex<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn exact_histogram() -> Exact<u64> {
    // 1 ms .. 10 min at 3 significant digits.
    Exact::new_with_bounds(1, 600_000, 3).expect("static histogram bounds are valid")
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let counters: Vec<PromCounter> = Counter::ALL
            .iter()
            .map(|c| {
                let counter = PromCounter::default();
                registry.register(format!("kav_{}", c.label()), c.help(), counter.clone());
                counter
            })
            .collect();
        let calls_active = Gauge::default();
        registry.register(
            "kav_calls_active",
            "Calls in progress",
            calls_active.clone(),
        );
        let marks: [Histogram; MARK_NAMES.len()] = std::array::from_fn(|_| latency_histogram());
        for (mark, h) in MARK_NAMES.iter().zip(&marks) {
            let help = format!(
                "Per-turn latency mark {} in ms (see README)",
                mark.to_uppercase()
            );
            registry.register(format!("kav_turn_{mark}"), help, h.clone());
        }
        let calls: [Histogram; CALL_FIGURES.len()] = std::array::from_fn(|_| latency_histogram());
        for ((name, help), h) in CALL_FIGURES.iter().zip(&calls) {
            registry.register(*name, *help, h.clone());
        }
        let barge_in_clear = Histogram::new(BARGE_IN_BUCKETS_MS);
        registry.register(
            BARGE_IN_CLEAR_METRIC,
            "Barge-in decision (VAD) to `clear` flushed to the socket, server side, ms",
            barge_in_clear.clone(),
        );
        llm_stats().register(&mut registry);
        Self {
            counters,
            calls_active,
            marks,
            calls,
            barge_in_clear,
            exact: Mutex::new(ExactLatencies {
                marks: std::array::from_fn(|_| exact_histogram()),
                calls: std::array::from_fn(|_| exact_histogram()),
                barge_in_clear_us: Exact::new_with_bounds(1, 60_000_000, 3)
                    .expect("static histogram bounds are valid"),
            }),
            registry: Mutex::new(registry),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a provider's metrics to the registry (once, at start-up).
    pub fn add_source(&self, source: Arc<dyn MetricsSource>) {
        let mut registry = self.registry();
        source.register(&mut registry);
        registry.register_collector(Box::new(Readings(move || source.readings())));
    }

    pub fn add(&self, c: Counter, n: u64) {
        if n > 0 {
            self.counters[c as usize].inc_by(n);
        }
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize].get()
    }

    pub fn call_started(&self) {
        self.calls_active.inc();
    }

    pub fn call_ended(&self) {
        self.calls_active.dec();
    }

    pub fn calls_active(&self) -> i64 {
        self.calls_active.get()
    }

    /// One turn's latency marks (once per turn, from the call driver; never per frame).
    pub fn record_turn(&self, marks: &LatencyMarks) {
        let values = mark_values(marks);
        let mut exact = self.exact.lock().unwrap_or_else(|p| p.into_inner());
        for ((h, e), v) in self.marks.iter().zip(exact.marks.iter_mut()).zip(values) {
            if let Some(v) = v {
                h.observe(v as f64);
                e.saturating_record(v.max(1) as u64);
            }
        }
    }

    /// A call's playout figures, once at its end (RTT only when an echo came back).
    pub fn record_call(&self, rtt_ms: Option<u64>, lead_max_ms: u64) {
        let mut exact = self.exact.lock().unwrap_or_else(|p| p.into_inner());
        for ((h, e), v) in self
            .calls
            .iter()
            .zip(exact.calls.iter_mut())
            .zip([rtt_ms, Some(lead_max_ms)])
        {
            if let Some(v) = v {
                h.observe(v as f64);
                e.saturating_record(v.max(1));
            }
        }
    }

    /// (name, count, p50, p90, p99, max) per latency mark, exact.
    pub fn mark_summaries(&self) -> Vec<(&'static str, u64, u64, u64, u64, u64)> {
        let exact = self.exact.lock().unwrap_or_else(|p| p.into_inner());
        MARK_NAMES
            .iter()
            .zip(exact.marks.iter())
            .map(|(name, h)| {
                let (count, p50, p90, p99, max) = quantiles(h);
                (*name, count, p50, p90, p99, max)
            })
            .collect()
    }

    /// Playout: one server-side barge-in reaction (the session's barge-in decision → the `clear`
    /// flushed to the socket), in µs. Folded in by the call driver, never on the frame path.
    pub fn record_barge_in_clear_us(&self, us: u64) {
        let us = us.max(1);
        self.barge_in_clear.observe(us as f64 / 1000.0);
        self.exact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .barge_in_clear_us
            .saturating_record(us);
    }

    /// Exact per-process quantiles of the turn marks and per-call figures (`GET /metrics/latency`):
    /// `{"turn": {"total_ms": {"count", "p50", "p90", "p99", "max"}, …}, "call": {"kav_call_rtt_ms": …}}`.
    /// Histogram buckets aggregate across instances; a load measurement needs the exact values.
    pub fn latency_json(&self) -> serde_json::Value {
        let exact = self.exact.lock().unwrap_or_else(|p| p.into_inner());
        let one = |h: &Exact<u64>| {
            let (count, p50, p90, p99, max) = quantiles(h);
            serde_json::json!({"count": count, "p50": p50, "p90": p90, "p99": p99, "max": max})
        };
        let turn: serde_json::Map<String, serde_json::Value> = MARK_NAMES
            .iter()
            .zip(exact.marks.iter())
            .map(|(n, h)| (n.to_string(), one(h)))
            .collect();
        let call: serde_json::Map<String, serde_json::Value> = CALL_FIGURES
            .iter()
            .zip(exact.calls.iter())
            .map(|((n, _), h)| (n.to_string(), one(h)))
            .collect();
        let (count, p50, p90, p99, max) = quantiles(&exact.barge_in_clear_us);
        let ms = |us: u64| us as f64 / 1000.0;
        let barge_in = serde_json::json!({ BARGE_IN_CLEAR_METRIC: {
            "count": count, "p50": ms(p50), "p90": ms(p90), "p99": ms(p99), "max": ms(max)
        }});
        serde_json::json!({"turn": turn, "call": call, "barge_in": barge_in})
    }

    /// The registry in the OpenMetrics text format, then `readings` (values read at scrape time).
    pub fn render_prometheus(&self, readings: &[Reading]) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry());
        let mut scrape = Registry::default();
        let readings = readings.to_vec();
        scrape.register_collector(Box::new(Readings(move || readings.clone())));
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &scrape);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

/// (count, p50, p90, p99, max) of an exact histogram; zeros when empty.
fn quantiles(h: &Exact<u64>) -> (u64, u64, u64, u64, u64) {
    if h.is_empty() {
        return (0, 0, 0, 0, 0);
    }
    (
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.max(),
    )
}

/// The Content-Type of [`Metrics::render_prometheus`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// LLM request latency and failures. Process-wide rather than in [`Metrics`]: the chat model is
/// built once per process by `providers_from_config`, independently of the server's `Metrics`
/// (and a process serves one set of providers); every [`Metrics`] registers these.
pub struct LlmStats {
    /// Time to first streamed chunk, and to the end, of successful completions (ms).
    ttfb_ms: Histogram,
    total_ms: Histogram,
    completions: PromCounter,
    errors: PromCounter,
    timeouts: PromCounter,
    retries: PromCounter,
}

static LLM_STATS: std::sync::LazyLock<LlmStats> = std::sync::LazyLock::new(|| LlmStats {
    ttfb_ms: latency_histogram(),
    total_ms: latency_histogram(),
    completions: PromCounter::default(),
    errors: PromCounter::default(),
    timeouts: PromCounter::default(),
    retries: PromCounter::default(),
});

pub fn llm_stats() -> &'static LlmStats {
    &LLM_STATS
}

impl LlmStats {
    pub fn record_completion(&self, ttfb_ms: u64, total_ms: u64) {
        self.completions.inc();
        self.ttfb_ms.observe(ttfb_ms as f64);
        self.total_ms.observe(total_ms as f64);
    }

    /// A completion that failed for good (after any retries); `timeout` also counts as an error.
    pub fn record_failure(&self, timeout: bool) {
        self.errors.inc();
        if timeout {
            self.timeouts.inc();
        }
    }

    pub fn record_retry(&self) {
        self.retries.inc();
    }

    /// (completions, errors, timeouts, retries).
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.completions.get(),
            self.errors.get(),
            self.timeouts.get(),
            self.retries.get(),
        )
    }

    fn register(&self, registry: &mut Registry) {
        register_all(
            registry,
            &[
                (
                    "kav_llm_completions",
                    "LLM completions that succeeded",
                    &self.completions,
                ),
                (
                    "kav_llm_errors",
                    "LLM completions that failed (after retries)",
                    &self.errors,
                ),
                (
                    "kav_llm_timeouts",
                    "LLM completions that timed out",
                    &self.timeouts,
                ),
                (
                    "kav_llm_retries",
                    "LLM requests retried after 429/5xx/broken streams",
                    &self.retries,
                ),
            ],
            &[
                (
                    "kav_llm_ttfb_ms",
                    "LLM request to first streamed chunk, ms",
                    &self.ttfb_ms,
                ),
                (
                    "kav_llm_total_ms",
                    "LLM request to end of stream, ms",
                    &self.total_ms,
                ),
            ],
        );
    }
}

/// Registers a source's counters and latency histograms: (name, help, metric). Counter names are
/// given without `_total`.
pub fn register_all(
    registry: &mut Registry,
    counters: &[(&str, &str, &PromCounter)],
    histograms: &[(&str, &str, &Histogram)],
) {
    for (name, help, c) in counters {
        registry.register(*name, *help, (*c).clone());
    }
    for (name, help, h) in histograms {
        registry.register(*name, *help, (*h).clone());
    }
}

/// Resident memory and CPU time of this process, from /proc (Linux).
pub fn process_usage() -> Option<(u64, f64)> {
    process_usage_of("self")
}

/// Open file descriptors of this process (sockets, database files, pipes), from /proc (Linux).
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// Resident memory (bytes) and CPU time (s) of process `pid` (a number or `self`), from /proc.
pub fn process_usage_of(pid: &str) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14th and 15th overall.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((rss_kib * 1024, ticks as f64 / 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barge_in_reaction_is_a_histogram_with_exact_quantiles_in_ms() {
        let m = Metrics::new();
        let json = m.latency_json();
        assert_eq!(json["barge_in"][BARGE_IN_CLEAR_METRIC]["count"], 0);
        for us in [180, 250, 12_400] {
            m.record_barge_in_clear_us(us);
        }
        let text = m.render_prometheus(&[]);
        assert!(
            text.contains("# TYPE kav_barge_in_clear_ms histogram"),
            "{text}"
        );
        assert!(text.contains("kav_barge_in_clear_ms_count 3"), "{text}");
        assert!(
            text.contains("kav_barge_in_clear_ms_bucket{le=\"0.25\"} 2"),
            "{text}"
        );
        let q = &m.latency_json()["barge_in"][BARGE_IN_CLEAR_METRIC];
        assert_eq!(q["count"], 3);
        assert!((q["p50"].as_f64().unwrap() - 0.25).abs() < 0.01, "{q}");
        assert!((q["max"].as_f64().unwrap() - 12.4).abs() < 0.05, "{q}");
    }

    #[test]
    fn counters_and_turn_histograms_render() {
        let m = Metrics::new();
        m.add(Counter::BargeIns, 2);
        m.record_turn(&LatencyMarks {
            total_ms: Some(700),
            stt_final_ms: Some(200),
            ..Default::default()
        });
        m.record_turn(&LatencyMarks {
            total_ms: Some(900),
            ..Default::default()
        });
        let text = m.render_prometheus(&[
            Reading::gauge("kav_test_gauge", "test", 1.5),
            Reading::counter("kav_test_things", "test", 7),
        ]);
        assert!(text.contains("# TYPE kav_barge_ins counter\n"), "{text}");
        assert!(text.contains("\nkav_barge_ins_total 2\n"), "{text}");
        assert!(
            text.contains("# TYPE kav_turn_total_ms histogram\n"),
            "{text}"
        );
        assert!(text.contains("\nkav_turn_total_ms_count 2\n"), "{text}");
        assert!(text.contains("\nkav_turn_total_ms_sum 1600.0\n"), "{text}");
        // 700 ms in the 750 bucket; 900 ms only from the 1000 bucket on (cumulative).
        assert!(
            text.contains("kav_turn_total_ms_bucket{le=\"500.0\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("kav_turn_total_ms_bucket{le=\"750.0\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kav_turn_total_ms_bucket{le=\"1000.0\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("kav_turn_stt_final_ms_count 1"));
        assert!(text.contains("# TYPE kav_calls_active gauge\nkav_calls_active 0\n"));
        assert!(
            text.contains("# TYPE kav_test_gauge gauge\nkav_test_gauge 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE kav_test_things counter\nkav_test_things_total 7\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        let total = m
            .mark_summaries()
            .into_iter()
            .find(|s| s.0 == "total_ms")
            .unwrap();
        assert_eq!(total.1, 2);
        assert!((899..=901).contains(&total.5), "{total:?}");
        let json = m.latency_json();
        assert_eq!(json["turn"]["total_ms"]["count"], 2);
        assert!((699..=701).contains(&json["turn"]["total_ms"]["p50"].as_u64().unwrap()));
        assert_eq!(json["call"]["kav_call_rtt_ms"]["count"], 0);
    }

    #[test]
    fn per_call_figures_are_histograms() {
        let m = Metrics::new();
        m.record_call(Some(204), 100);
        m.record_call(None, 120);
        let text = m.render_prometheus(&[]);
        assert!(
            text.contains("# TYPE kav_call_rtt_ms histogram\n"),
            "{text}"
        );
        assert!(text.contains("\nkav_call_rtt_ms_count 1\n"), "{text}");
        assert!(text.contains("\nkav_call_lead_max_ms_count 2\n"), "{text}");
        let json = m.latency_json();
        assert!(
            (119..=121).contains(
                &json["call"]["kav_call_lead_max_ms"]["max"]
                    .as_u64()
                    .unwrap()
            )
        );
    }

    #[derive(Default)]
    struct Source {
        live: PromCounter,
    }

    impl MetricsSource for Source {
        fn register(&self, registry: &mut Registry) {
            registry.register("kav_source_live", "live", self.live.clone());
        }
        fn readings(&self) -> Vec<Reading> {
            vec![Reading::counter(
                "kav_source_read",
                "read at scrape",
                self.live.get() * 10,
            )]
        }
    }

    #[test]
    fn sources_register_live_metrics_and_are_read_on_each_scrape() {
        let m = Metrics::new();
        let source = Arc::new(Source::default());
        m.add_source(source.clone());
        source.live.inc_by(3);
        let text = m.render_prometheus(&[]);
        assert!(text.contains("\nkav_source_live_total 3\n"), "{text}");
        assert!(text.contains("\nkav_source_read_total 30\n"), "{text}");
        source.live.inc();
        let text = m.render_prometheus(&[]);
        assert!(text.contains("\nkav_source_read_total 40\n"), "{text}");
    }

    #[test]
    fn llm_latency_renders_as_histograms() {
        // Process-wide: other tests may record too, so compare against a baseline.
        let (before, ..) = llm_stats().counts();
        llm_stats().record_completion(120, 480);
        llm_stats().record_failure(true);
        let (after, errors, timeouts, _) = llm_stats().counts();
        assert!(after > before);
        assert!(errors >= 1 && timeouts >= 1);
        let text = Metrics::new().render_prometheus(&[]);
        assert!(text.contains("# TYPE kav_llm_ttfb_ms histogram"), "{text}");
        assert!(
            text.contains("kav_llm_total_ms_bucket{le=\"500.0\"}"),
            "{text}"
        );
        assert!(text.contains("kav_llm_timeouts_total "), "{text}");
    }

    #[test]
    fn process_usage_reads_proc() {
        let (rss, cpu) = process_usage().expect("linux /proc");
        assert!(rss > 1024 * 1024);
        assert!(cpu >= 0.0);
    }

    #[test]
    fn open_fds_counts_this_process_descriptors() {
        // Other tests open files concurrently: take the smallest of a few readings each way.
        let least = || (0..5).filter_map(|_| open_fds()).min().unwrap();
        let before = least();
        let held: Vec<std::fs::File> = (0..20)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        let during = (0..5).filter_map(|_| open_fds()).max().unwrap();
        assert!(during >= before + 20, "{before} -> {during}");
        drop(held);
    }
}
