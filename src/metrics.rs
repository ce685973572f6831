//! Counters and per-turn latency histograms, rendered for Prometheus at `GET /metrics`.
//!
//! Counters are atomics. Calls fold their own per-call counters in at the end of the call (and
//! periodically), so the per-frame path never touches shared state. Histograms are updated once
//! per turn under a short mutex.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use hdrhistogram::Histogram;

use crate::voice::events::LatencyMarks;

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

/// Server-side barge-in reaction summary on `/metrics` (ms, fractional).
pub const BARGE_IN_CLEAR_METRIC: &str = "kav_barge_in_clear_ms";

/// A provider's own metrics, appended to `/metrics` (e.g. Google stream rotations).
pub trait MetricsSource: Send + Sync {
    fn render_prometheus(&self) -> String;
}

pub struct Metrics {
    counters: Vec<AtomicU64>,
    calls_active: AtomicI64,
    marks: Mutex<[Histogram<u64>; MARK_NAMES.len()]>,
    calls: Mutex<[Histogram<u64>; CALL_FIGURES.len()]>,
    /// Playout: barge-in decision → `clear` flushed to the socket, µs (see `record_barge_in_clear_us`).
    barge_in_clear: Mutex<Histogram<u64>>,
    /// Registered at start-up, read on scrape; never touched on the call path.
    sources: Mutex<Vec<std::sync::Arc<dyn MetricsSource>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn histogram() -> Histogram<u64> {
    // 1 ms .. 10 min at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000, 3).expect("static histogram bounds are valid")
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            counters: Counter::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            calls_active: AtomicI64::new(0),
            marks: Mutex::new(std::array::from_fn(|_| histogram())),
            calls: Mutex::new(std::array::from_fn(|_| histogram())),
            barge_in_clear: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3)
                    .expect("static histogram bounds are valid"),
            ),
            sources: Mutex::new(Vec::new()),
        }
    }

    pub fn add_source(&self, source: std::sync::Arc<dyn MetricsSource>) {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(source);
    }

    pub fn add(&self, c: Counter, n: u64) {
        if n > 0 {
            self.counters[c as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize].load(Ordering::Relaxed)
    }

    pub fn call_started(&self) {
        self.calls_active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn call_ended(&self) {
        self.calls_active.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn calls_active(&self) -> i64 {
        self.calls_active.load(Ordering::Relaxed)
    }

    pub fn record_turn(&self, marks: &LatencyMarks) {
        let values = [
            marks.stt_first_partial_ms,
            marks.stt_final_ms,
            marks.ai_latency_ms,
            marks.tts_ready_ms,
            marks.total_ms,
            marks.ai_total_ms,
            marks.tts_total_ms,
        ];
        let mut hist = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        for (h, v) in hist.iter_mut().zip(values) {
            if let Some(v) = v {
                h.saturating_record(v.max(1) as u64);
            }
        }
    }

    /// A call's playout figures, once at its end (RTT only when an echo came back).
    pub fn record_call(&self, rtt_ms: Option<u64>, lead_max_ms: u64) {
        let mut hist = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        for (h, v) in hist.iter_mut().zip([rtt_ms, Some(lead_max_ms)]) {
            if let Some(v) = v {
                h.saturating_record(v.max(1));
            }
        }
    }

    /// Playout: one server-side barge-in reaction (the session's barge-in decision → the `clear`
    /// flushed to the socket), in µs. Folded in by the call driver, never on the frame path.
    pub fn record_barge_in_clear_us(&self, us: u64) {
        self.barge_in_clear
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saturating_record(us.max(1));
    }

    /// (name, count, p50, p90, p99, max) per latency mark.
    pub fn mark_summaries(&self) -> Vec<(&'static str, u64, u64, u64, u64, u64)> {
        let hist = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        MARK_NAMES
            .iter()
            .zip(hist.iter())
            .map(|(name, h)| {
                (
                    *name,
                    h.len(),
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.9),
                    h.value_at_quantile(0.99),
                    h.max(),
                )
            })
            .collect()
    }

    pub fn render_prometheus(&self, extra_gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(8 * 1024);
        for c in Counter::ALL {
            let name = format!("kav_{}_total", c.label());
            let _ = writeln!(
                out,
                "# HELP {name} {}\n# TYPE {name} counter\n{name} {}",
                c.help(),
                self.get(*c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP kav_calls_active Calls in progress\n# TYPE kav_calls_active gauge\nkav_calls_active {}",
            self.calls_active()
        );
        for (name, help, value) in extra_gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let hist = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        for (mark, h) in MARK_NAMES.iter().zip(hist.iter()) {
            let help = format!("Per-turn latency mark {} (see README)", mark.to_uppercase());
            render_summary(&mut out, &format!("kav_turn_{mark}"), &help, h);
        }
        drop(hist);
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        for ((name, help), h) in CALL_FIGURES.iter().zip(calls.iter()) {
            render_summary(&mut out, name, help, h);
        }
        drop(calls);
        // Playout: server-side barge-in reaction, in ms with µs resolution.
        let clear = self
            .barge_in_clear
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let name = BARGE_IN_CLEAR_METRIC;
        let _ = writeln!(
            out,
            "# HELP {name} Barge-in decision (VAD) to `clear` flushed to the socket, server side\n# TYPE {name} summary"
        );
        for q in [0.5, 0.9, 0.99, 1.0] {
            let us = if clear.is_empty() {
                0
            } else {
                clear.value_at_quantile(q)
            };
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {:.3}", us as f64 / 1000.0);
        }
        let _ = writeln!(out, "{name}_count {}", clear.len());
        drop(clear);
        llm_stats().render(&mut out);
        for source in self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.push_str(&source.render_prometheus());
        }
        out
    }
}

/// A histogram as a Prometheus summary (quantile 1 is the maximum).
fn render_summary(out: &mut String, name: &str, help: &str, h: &Histogram<u64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
    for q in [0.5, 0.9, 0.99, 1.0] {
        let v = if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        };
        let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {v}");
    }
    let sum: u64 = h
        .iter_recorded()
        .map(|v| v.value_iterated_to() * v.count_at_value())
        .sum();
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", h.len());
}

/// LLM request latency and failures. Process-wide rather than in [`Metrics`]: the chat model is
/// built once per process by `providers_from_config`, independently of the server's `Metrics`
/// (and a process serves one set of providers).
pub struct LlmStats {
    /// Time to first streamed chunk, and to the end, of successful completions (ms).
    latency: Mutex<[Histogram<u64>; 2]>,
    completions: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    retries: AtomicU64,
}

static LLM_STATS: std::sync::LazyLock<LlmStats> = std::sync::LazyLock::new(|| LlmStats {
    latency: Mutex::new([histogram(), histogram()]),
    completions: AtomicU64::new(0),
    errors: AtomicU64::new(0),
    timeouts: AtomicU64::new(0),
    retries: AtomicU64::new(0),
});

pub fn llm_stats() -> &'static LlmStats {
    &LLM_STATS
}

impl LlmStats {
    pub fn record_completion(&self, ttfb_ms: u64, total_ms: u64) {
        self.completions.fetch_add(1, Ordering::Relaxed);
        let mut h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        h[0].saturating_record(ttfb_ms.max(1));
        h[1].saturating_record(total_ms.max(1));
    }

    /// A completion that failed for good (after any retries); `timeout` also counts as an error.
    pub fn record_failure(&self, timeout: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if timeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// (completions, errors, timeouts, retries).
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.completions.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.timeouts.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
        )
    }

    fn render(&self, out: &mut String) {
        let (completions, errors, timeouts, retries) = self.counts();
        for (name, help, value) in [
            (
                "kav_llm_completions_total",
                "LLM completions that succeeded",
                completions,
            ),
            (
                "kav_llm_errors_total",
                "LLM completions that failed (after retries)",
                errors,
            ),
            (
                "kav_llm_timeouts_total",
                "LLM completions that timed out",
                timeouts,
            ),
            (
                "kav_llm_retries_total",
                "LLM requests retried after 429/5xx/broken streams",
                retries,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        for (name, help, h) in [
            (
                "kav_llm_ttfb_ms",
                "LLM request to first streamed chunk",
                &h[0],
            ),
            ("kav_llm_total_ms", "LLM request to end of stream", &h[1]),
        ] {
            render_summary(out, name, help, h);
        }
    }
}

/// Resident memory and CPU time of this process, from /proc (Linux).
pub fn process_usage() -> Option<(u64, f64)> {
    process_usage_of("self")
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
        let text = m.render_prometheus(&[("kav_test_gauge", "test", 1.5)]);
        assert!(text.contains("kav_barge_ins_total 2"), "{text}");
        assert!(text.contains("kav_turn_total_ms_count 2"));
        assert!(text.contains("kav_turn_stt_final_ms_count 1"));
        assert!(text.contains("kav_test_gauge 1.5"));
        let total = m
            .mark_summaries()
            .into_iter()
            .find(|s| s.0 == "total_ms")
            .unwrap();
        assert_eq!(total.1, 2);
        assert!((899..=901).contains(&total.5), "{total:?}");
    }

    #[test]
    fn barge_in_reaction_renders_in_ms_with_microsecond_resolution() {
        let m = Metrics::new();
        let empty = m.render_prometheus(&[]);
        assert!(empty.contains("kav_barge_in_clear_ms_count 0"), "{empty}");
        for us in [180, 250, 12_400] {
            m.record_barge_in_clear_us(us);
        }
        let text = m.render_prometheus(&[]);
        assert!(text.contains("kav_barge_in_clear_ms_count 3"), "{text}");
        assert!(
            text.contains("kav_barge_in_clear_ms{quantile=\"0.5\"} 0.250"),
            "{text}"
        );
        assert!(
            text.contains("kav_barge_in_clear_ms{quantile=\"1\"} 12.4"),
            "{text}"
        );
    }

    #[test]
    fn llm_latency_renders_as_summaries() {
        // Process-wide: other tests may record too, so compare against a baseline.
        let (before, ..) = llm_stats().counts();
        llm_stats().record_completion(120, 480);
        llm_stats().record_failure(true);
        let (after, errors, timeouts, _) = llm_stats().counts();
        assert!(after > before);
        assert!(errors >= 1 && timeouts >= 1);
        let text = Metrics::new().render_prometheus(&[]);
        assert!(text.contains("# TYPE kav_llm_ttfb_ms summary"), "{text}");
        assert!(
            text.contains("kav_llm_total_ms{quantile=\"0.5\"}"),
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
}
