//! `kav loadgen`: many simulated Twilio callers at once against a Kav server.
//!
//! By default it starts `kav serve` as a child process (same binary) with simulated providers at
//! fixed latencies, so the server's own CPU and memory can be read from /proc apart from the load
//! generator's, and the latency the engine adds can be separated from the simulated providers'.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::{CallOptions, CallReport, Step, http_get, run_call, synthetic_speech};

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub calls: usize,
    pub duration: Duration,
    /// Calls start spread over this long.
    pub ramp: Duration,
    /// An existing server (`http://host:port`); none = start one as a child process.
    pub server: Option<String>,
    /// Every n-th turn of a caller barges in (0 = never).
    pub barge_every: u32,
    pub seed: u64,
    pub lead_frames: u32,
    /// Round trip and jitter added to each caller's Media Streams link.
    pub rtt: Duration,
    pub jitter: Duration,
}

/// Fixed latencies the child server's simulated providers use; subtracted from what callers
/// observe to get the latency the engine adds.
pub const SIM_FIXED: [(&str, &str); 5] = [
    ("KAV_SIM_STT_FIRST_PARTIAL_MS", "fixed:150"),
    ("KAV_SIM_STT_FINAL_MS", "fixed:150"),
    ("KAV_SIM_AGENT_FIRST_TOKEN_MS", "fixed:300"),
    ("KAV_SIM_AGENT_TOKEN_MS", "fixed:20"),
    ("KAV_SIM_TTS_FIRST_AUDIO_MS", "fixed:100"),
];
/// VAD hangover 140 + final 150 + first token 300 + TTS 100. The child server speaks Hebrew,
/// whose first reply token ("אמרת:") is already a whole sentence, so no token wait is added.
pub const SIM_PROVIDER_MS: u64 = 140 + 150 + 300 + 100;

#[derive(Debug, Default)]
pub struct LoadReport {
    pub calls: usize,
    pub calls_completed: usize,
    pub calls_failed: usize,
    /// Calls the server answered with its overflow TwiML (admission control); not failures.
    pub calls_refused: usize,
    pub errors: Vec<String>,
    pub duration_s: f64,
    pub server_cpu_pct_per_call: Option<f64>,
    pub server_cpu_pct_total: Option<f64>,
    pub server_rss_idle_mb: Option<f64>,
    pub server_rss_peak_mb: Option<f64>,
    pub server_kib_per_call: Option<f64>,
    /// Steady-state jitter: |inter-arrival − 20 ms| after each reply's priming burst.
    pub jitter_ms: Quantiles,
    /// Spread (first to last frame) of each reply's priming burst, and the frames in bursts.
    pub priming_spread_ms: Quantiles,
    pub priming_frames: u64,
    pub frames_received: u64,
    pub underruns: u64,
    pub underrun_ms: u64,
    pub barge_in_ms: Quantiles,
    pub response_ms: Quantiles,
    pub engine_added_ms: Quantiles,
    pub server_underruns: Option<u64>,
    pub server_ws_send_dropped: Option<u64>,
    pub server_stt_dropped: Option<u64>,
    /// Server playout: holds at the unconfirmed-audio cap, missing echoes, priming frames.
    pub server_lead_holds: Option<u64>,
    pub server_missing_echoes: Option<u64>,
    pub server_priming_frames: Option<u64>,
    /// Server: frames sent, and steady-state frames sent > 5 / > 20 ms after their due time.
    pub server_frames_out: Option<u64>,
    pub server_late: Option<(u64, u64)>,
    /// Per-call SRTT estimate (p50, max) and largest lead at Twilio (max), from `/metrics`.
    pub server_rtt_ms: Option<(u64, u64)>,
    pub server_lead_max_ms: Option<u64>,
    /// Server side: barge-in decision → `clear` flushed to the socket, from `/metrics`.
    pub server_barge_in_ms: Option<Quantiles>,
    /// The round trip the callers added (subtracted from the caller-side barge-in reaction).
    pub rtt: Duration,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Quantiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Quantiles {
    fn from_us(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

impl std::fmt::Display for Quantiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.count == 0 {
            return write!(f, "n=0");
        }
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
            self.p50, self.p99, self.max, self.count
        )
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<f64>, unit: &str| {
            v.map(|v| format!("{v:.2} {unit}"))
                .unwrap_or_else(|| "n/a (external server)".into())
        };
        writeln!(
            f,
            "calls                      {} started, {} completed, {} failed, {} refused (overflow TwiML)",
            self.calls, self.calls_completed, self.calls_failed, self.calls_refused
        )?;
        writeln!(f, "duration                   {:.1} s", self.duration_s)?;
        writeln!(
            f,
            "server CPU                 {} total, {} per call",
            opt(self.server_cpu_pct_total, "% of one core"),
            opt(self.server_cpu_pct_per_call, "%")
        )?;
        writeln!(
            f,
            "server RSS                 idle {}, peak {}, {} per call",
            opt(self.server_rss_idle_mb, "MiB"),
            opt(self.server_rss_peak_mb, "MiB"),
            opt(self.server_kib_per_call, "KiB")
        )?;
        writeln!(f, "bot frames received        {}", self.frames_received)?;
        writeln!(
            f,
            "outbound jitter, steady   {}  (|inter-arrival − 20 ms| after each reply's priming burst)",
            self.jitter_ms
        )?;
        writeln!(
            f,
            "priming bursts            spread {}; {} frames in bursts",
            self.priming_spread_ms, self.priming_frames
        )?;
        writeln!(
            f,
            "underruns (caller side)    {} ({} ms)",
            self.underruns, self.underrun_ms
        )?;
        if let Some(u) = self.server_underruns {
            writeln!(f, "underruns (server side)    {u}")?;
        }
        writeln!(f, "barge-in reaction          {}", self.barge_in_ms)?;
        if !self.rtt.is_zero() {
            let q = self.barge_in_ms;
            let rtt = self.rtt.as_secs_f64() * 1000.0;
            writeln!(
                f,
                "  minus the added RTT      p50 {:.2} ms, p99 {:.2} ms (≈ server side: VAD onset → clear; jitter not removed)",
                q.p50 - rtt,
                q.p99 - rtt
            )?;
        }
        if let Some(q) = self.server_barge_in_ms {
            writeln!(
                f,
                "barge-in, server side      {q}  (VAD barge-in decision → clear flushed to the socket)"
            )?;
        }
        writeln!(f, "response (speech end→audio) {}", self.response_ms)?;
        writeln!(
            f,
            "engine-added per turn      {}  (server TOTAL_MS − {SIM_PROVIDER_MS} ms of VAD hangover and simulated providers; 1 ms resolution)",
            self.engine_added_ms
        )?;
        if let (Some(a), Some(b)) = (self.server_ws_send_dropped, self.server_stt_dropped) {
            writeln!(f, "server drops               ws_send {a}, stt_audio {b}")?;
        }
        if let (Some(h), Some(m), Some(p)) = (
            self.server_lead_holds,
            self.server_missing_echoes,
            self.server_priming_frames,
        ) {
            writeln!(
                f,
                "server playout             lead holds {h}, missing echoes {m}, priming frames {p}"
            )?;
        }
        if let (Some((l5, l20)), Some(out), Some(p)) = (
            self.server_late,
            self.server_frames_out,
            self.server_priming_frames,
        ) {
            let steady = out.saturating_sub(p).max(1) as f64;
            writeln!(
                f,
                "server sent late           > 5 ms: {l5} ({:.3} %), > 20 ms: {l20} ({:.3} %) of {} steady frames (the server's share of jitter)",
                l5 as f64 * 100.0 / steady,
                l20 as f64 * 100.0 / steady,
                out.saturating_sub(p)
            )?;
        }
        if let Some((p50, max)) = self.server_rtt_ms {
            writeln!(f, "server RTT estimate/call   p50 {p50} ms, max {max} ms")?;
        }
        if let Some(l) = self.server_lead_max_ms {
            writeln!(
                f,
                "lead at Twilio, max        {l} ms (priming burst included)"
            )?;
        }
        for e in self.errors.iter().take(5) {
            writeln!(f, "error: {e}")?;
        }
        Ok(())
    }
}

struct ChildServer {
    child: tokio::process::Child,
    pid: u32,
    url: String,
    _dir: tempfile_dir::TempDir,
}

mod tempfile_dir {
    /// A directory removed on drop (keeps the loadgen's SQLite file out of the way).
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The load generator could not start its own server.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("cannot prepare the server's port, directory or binary: {0}")]
    Setup(#[source] std::io::Error),
    #[error("cannot start the server: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the server exited at once")]
    Exited,
    #[error("the server did not become healthy within 20 s")]
    Unhealthy,
}

async fn start_child_server() -> Result<ChildServer, LoadgenError> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(LoadgenError::Setup)?;
        l.local_addr().map_err(LoadgenError::Setup)?.port()
    };
    let dir = std::env::temp_dir().join(format!("kav-loadgen-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(LoadgenError::Setup)?;
    let exe = std::env::current_exe().map_err(LoadgenError::Setup)?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(dir.join("none.toml"))
        .env("KAV_CALL_STT", "simulated")
        .env("KAV_CALL_AGENT", "simulated")
        .env("KAV_CALL_TTS", "simulated")
        .env("KAV_CALL_LANGUAGE", "he-IL")
        .env("KAV_CALL_GREETING", "")
        .env(
            "KAV_STORE_URL",
            format!("sqlite://{}", dir.join("loadgen.db").display()),
        )
        .env(
            "RUST_LOG",
            std::env::var("KAV_LOADGEN_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in SIM_FIXED {
        cmd.env(k, v);
    }
    // Every simulated caller posts from 127.0.0.1, where Twilio posts from many addresses: the
    // per-IP webhook limit would measure itself. Set KAV_LIMITS_WEBHOOK_RATE_PER_S to keep it.
    if std::env::var_os("KAV_LIMITS_WEBHOOK_RATE_PER_S").is_none() {
        cmd.env("KAV_LIMITS_WEBHOOK_RATE_PER_S", "0");
    }
    let child = cmd.spawn().map_err(LoadgenError::Spawn)?;
    let pid = child.id().ok_or(LoadgenError::Exited)?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(&format!("{url}/healthz")).await.is_err() {
        if Instant::now() > deadline {
            return Err(LoadgenError::Unhealthy);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(ChildServer {
        child,
        pid,
        url,
        _dir: tempfile_dir::TempDir(dir),
    })
}

fn proc_usage(pid: u32) -> Option<(u64, f64)> {
    crate::metrics::process_usage_of(&pid.to_string())
}

fn metric(text: &str, name: &str) -> Option<u64> {
    metric_f64(text, name).map(|v| v as u64)
}

fn metric_f64(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
}

/// The server's exact barge-in reaction quantiles (fractional ms) from `/metrics/latency`.
fn barge_in_quantiles(latency: &serde_json::Value) -> Option<Quantiles> {
    let q = &latency["barge_in"][crate::metrics::BARGE_IN_CLEAR_METRIC];
    Some(Quantiles {
        count: q["count"].as_u64()?,
        p50: q["p50"].as_f64()?,
        p99: q["p99"].as_f64()?,
        max: q["max"].as_f64()?,
    })
}

fn script(
    rng: &mut crate::providers::sim::Rng,
    turns: usize,
    barge_every: u32,
    speech: &Arc<Vec<u8>>,
) -> Vec<Step> {
    let mut steps = vec![Step::Pause(Duration::from_millis(
        200 + (rng.next_f64() * 800.0) as u64,
    ))];
    for turn in 1..=turns {
        steps.push(Step::Say {
            audio: speech.clone(),
            transcript: format!("utterance {turn}"),
        });
        if barge_every > 0 && (turn as u32).is_multiple_of(barge_every) && turn < turns {
            // Talk over the reply once some of it has played; the barge-in is the next utterance.
            steps.push(Step::BargeIn {
                after: Duration::from_millis(600 + (rng.next_f64() * 600.0) as u64),
                audio: speech.clone(),
                transcript: "barge in".into(),
            });
        }
        steps.push(Step::WaitForBot {
            max: Duration::from_secs(15),
        });
        steps.push(Step::Pause(Duration::from_millis(
            300 + (rng.next_f64() * 700.0) as u64,
        )));
    }
    steps
}

pub async fn run(opts: LoadOptions) -> Result<LoadReport, LoadgenError> {
    let child = match &opts.server {
        Some(_) => None,
        None => Some(start_child_server().await?),
    };
    let server = opts
        .server
        .clone()
        .unwrap_or_else(|| child.as_ref().map(|c| c.url.clone()).unwrap_or_default());
    let pid = child.as_ref().map(|c| c.pid);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = pid.and_then(proc_usage);

    let speech = Arc::new(synthetic_speech(Duration::from_millis(1200)));
    // A turn takes ~1.2 s of speech + ~0.8 s to answer + ~3 s of reply + a pause.
    let turns = (opts.duration.as_secs_f64() / 5.5).ceil().max(1.0) as usize + 1;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(opts.calls);
    for i in 0..opts.calls {
        let mut rng = crate::providers::sim::Rng::seeded_for(opts.seed, &i.to_string());
        let steps = script(&mut rng, turns, opts.barge_every, &speech);
        let delay = opts.ramp.mul_f64(i as f64 / opts.calls.max(1) as f64);
        let call_opts = CallOptions {
            server: server.clone(),
            call_sid: format!("CA{:032x}", i as u128 + 1),
            from: format!("+97250{:07}", i),
            lead_frames: opts.lead_frames,
            max_duration: opts.duration,
            rtt: opts.rtt,
            jitter: opts.jitter,
            ..CallOptions::default()
        };
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            run_call(&call_opts, steps).await
        }));
    }

    // Sample the server while the load runs: steady state starts when every call is up.
    let steady_from = started + opts.ramp + Duration::from_secs(2);
    let end_at = started + opts.ramp + opts.duration;
    let mut peak_rss = idle.map(|u| u.0).unwrap_or(0);
    let mut cpu_at_steady = None;
    while Instant::now() < end_at - Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(u) = pid.and_then(proc_usage) {
            peak_rss = peak_rss.max(u.0);
            if cpu_at_steady.is_none() && Instant::now() >= steady_from {
                cpu_at_steady = Some((Instant::now(), u.1));
            }
        }
    }
    let cpu_end = pid.and_then(proc_usage).map(|u| (Instant::now(), u.1));

    let mut report = LoadReport {
        calls: opts.calls,
        rtt: opts.rtt,
        ..Default::default()
    };
    let hist = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
    let (mut jitter, mut barge, mut response) = (hist(), hist(), hist());
    let mut priming = hist();
    for task in tasks {
        match task.await {
            Ok(Ok(r)) => {
                report.calls_completed += 1;
                absorb(
                    &mut report,
                    &r,
                    [&mut jitter, &mut priming, &mut barge, &mut response],
                );
            }
            Ok(Err(crate::caller::CallerError::Refused)) => report.calls_refused += 1,
            Ok(Err(e)) => {
                report.calls_failed += 1;
                report.errors.push(e.to_string());
            }
            Err(e) => {
                report.calls_failed += 1;
                report.errors.push(e.to_string());
            }
        }
    }
    report.duration_s = started.elapsed().as_secs_f64();
    report.jitter_ms = Quantiles::from_us(&jitter);
    report.priming_spread_ms = Quantiles::from_us(&priming);
    report.barge_in_ms = Quantiles::from_us(&barge);
    report.response_ms = Quantiles::from_us(&response);
    if let (Some((t0, c0)), Some((t1, c1))) = (cpu_at_steady, cpu_end) {
        let secs = t1.duration_since(t0).as_secs_f64().max(0.001);
        let total = (c1 - c0) / secs * 100.0;
        report.server_cpu_pct_total = Some(total);
        report.server_cpu_pct_per_call = Some(total / opts.calls.max(1) as f64);
    }
    if let Some((rss0, _)) = idle {
        report.server_rss_idle_mb = Some(rss0 as f64 / 1048576.0);
        report.server_rss_peak_mb = Some(peak_rss as f64 / 1048576.0);
        report.server_kib_per_call =
            Some(peak_rss.saturating_sub(rss0) as f64 / 1024.0 / opts.calls.max(1) as f64);
    }
    if let Ok(text) = http_get(&format!("{server}/metrics")).await {
        report.server_underruns = metric(&text, "kav_underruns_total ");
        report.server_ws_send_dropped = metric(&text, "kav_ws_send_dropped_total ");
        report.server_stt_dropped = metric(&text, "kav_stt_audio_dropped_total ");
        report.server_lead_holds = metric(&text, "kav_lead_holds_total ");
        report.server_missing_echoes = metric(&text, "kav_missing_mark_echoes_total ");
        report.server_priming_frames = metric(&text, "kav_priming_frames_total ");
        report.server_frames_out = metric(&text, "kav_frames_out_total ");
        report.server_late = metric(&text, "kav_frames_late_5ms_total ")
            .zip(metric(&text, "kav_frames_late_20ms_total "));
    }
    // Exact quantiles (the Prometheus histograms have buckets too coarse to subtract from).
    if let Ok(json) = http_get(&format!("{server}/metrics/latency")).await
        && let Ok(lat) = serde_json::from_str::<serde_json::Value>(&json)
    {
        let get = |group: &str, name: &str, q: &str| lat[group][name][q].as_u64();
        report.server_rtt_ms =
            get("call", "kav_call_rtt_ms", "p50").zip(get("call", "kav_call_rtt_ms", "max"));
        report.server_lead_max_ms = get("call", "kav_call_lead_max_ms", "max");
        report.server_barge_in_ms = barge_in_quantiles(&lat);
        // TOTAL_MS on the server's clock starts at the same VAD decision the providers' timing
        // hangs off, so subtracting their fixed latencies leaves what the engine added.
        let q = |quantile: &str| {
            get("turn", "total_ms", quantile).map(|v| v.saturating_sub(SIM_PROVIDER_MS) as f64)
        };
        if let (Some(p50), Some(p99), Some(max), Some(count)) = (
            q("p50"),
            q("p99"),
            q("max"),
            get("turn", "total_ms", "count"),
        ) {
            report.engine_added_ms = Quantiles {
                count,
                p50,
                p99,
                max,
            };
        }
    }
    if let Some(mut c) = child {
        let _ = c.child.start_kill();
        let _ = c.child.wait().await;
    }
    Ok(report)
}

/// Folds one call into the run's histograms: jitter, priming spread, barge-in, response (µs).
fn absorb(report: &mut LoadReport, r: &CallReport, hists: [&mut Histogram<u64>; 4]) {
    let samples = [
        &r.jitter_us,
        &r.priming_spread_us,
        &r.barge_in_reaction_us,
        &r.response_us,
    ];
    for (h, values) in hists.into_iter().zip(samples) {
        for v in values {
            h.saturating_record((*v).max(1));
        }
    }
    report.priming_frames += r.priming_frames;
    report.frames_received += r.frames_received;
    report.underruns += r.underruns;
    report.underrun_ms += r.underrun_ms;
}

/// One step of [`find_capacity`]: the run at `calls` and the machine load before it.
#[derive(Debug)]
pub struct CapacityStep {
    pub calls: usize,
    /// 1-minute load average when the step started.
    pub load_before: Option<f64>,
    pub report: LoadReport,
}

impl CapacityStep {
    /// Playback ran dry somewhere: at the caller, or by the server's own schedule.
    pub fn underran(&self) -> bool {
        self.report.underruns > 0 || self.report.server_underruns.unwrap_or(0) > 0
    }
}

/// Runs the load at each call count in turn (a fresh server each time) and stops after the first
/// count with an underrun: the calls held are the step before it.
pub async fn find_capacity(
    opts: LoadOptions,
    steps: &[usize],
    mut on_step: impl FnMut(&CapacityStep),
) -> Result<Vec<CapacityStep>, LoadgenError> {
    let mut done = Vec::new();
    for &calls in steps {
        let load_before = load_average();
        let report = run(LoadOptions {
            calls,
            ..opts.clone()
        })
        .await?;
        let step = CapacityStep {
            calls,
            load_before,
            report,
        };
        on_step(&step);
        let stop = step.underran();
        done.push(step);
        if stop {
            break;
        }
    }
    Ok(done)
}

/// The 1-minute load average (Linux).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The summary table of a capacity search.
pub fn capacity_table(steps: &[CapacityStep]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "calls  load before  server CPU %  underruns caller/server  jitter p99 ms  barge-in server p99 ms  failed\n",
    );
    for s in steps {
        let r = &s.report;
        let _ = writeln!(
            out,
            "{:>5}  {:>11}  {:>12}  {:>23}  {:>13.2}  {:>22}  {:>6}",
            s.calls,
            s.load_before.map_or("-".into(), |l| format!("{l:.2}")),
            r.server_cpu_pct_total
                .map_or("-".into(), |c| format!("{c:.0}")),
            format!(
                "{} / {}",
                r.underruns,
                r.server_underruns.map_or("-".into(), |u| u.to_string())
            ),
            r.jitter_ms.p99,
            r.server_barge_in_ms
                .map_or("-".into(), |q| format!("{:.2}", q.p99)),
            r.calls_failed,
        );
    }
    match steps.iter().position(CapacityStep::underran) {
        Some(0) => out.push_str("first underrun at the first step; start lower\n"),
        Some(i) => {
            let _ = writeln!(
                out,
                "held {} calls without an underrun; first underrun at {} calls",
                steps[i - 1].calls,
                steps[i].calls
            );
        }
        None => {
            let _ = writeln!(
                out,
                "no underrun up to {} calls; go higher",
                steps.last().map_or(0, |s| s.calls)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(calls: usize, caller: u64, server: u64) -> CapacityStep {
        CapacityStep {
            calls,
            load_before: Some(1.0),
            report: LoadReport {
                underruns: caller,
                server_underruns: Some(server),
                ..Default::default()
            },
        }
    }

    #[test]
    fn capacity_is_the_step_before_the_first_underrun_on_either_side() {
        let table = capacity_table(&[step(100, 0, 0), step(200, 0, 0), step(300, 0, 2)]);
        assert!(
            table.contains("held 200 calls without an underrun; first underrun at 300 calls"),
            "{table}"
        );
        let table = capacity_table(&[step(100, 0, 0), step(200, 5, 0)]);
        assert!(table.contains("held 100 calls"), "{table}");
        let table = capacity_table(&[step(100, 0, 0), step(200, 0, 0)]);
        assert!(table.contains("no underrun up to 200 calls"), "{table}");
    }

    #[test]
    fn server_barge_in_quantiles_are_read_from_metrics_latency() {
        let m = crate::metrics::Metrics::new();
        for us in [400, 600, 25_000] {
            m.record_barge_in_clear_us(us);
        }
        let q = barge_in_quantiles(&m.latency_json()).expect("quantiles");
        assert_eq!(q.count, 3);
        assert!((q.p50 - 0.6).abs() < 0.01, "{q:?}");
        assert!((q.max - 25.0).abs() < 0.1, "{q:?}");
        assert!(barge_in_quantiles(&serde_json::json!({})).is_none());
    }
}
