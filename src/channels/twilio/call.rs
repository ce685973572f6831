//! The per-call driver: owns one [`CallSession`] and connects it to the Twilio WebSocket, the
//! providers, the store and the metrics.
//!
//! One task per call runs the loop "apply one input, drain outputs, await the next input or the
//! session's deadline". A second task writes to the socket from a bounded queue, so a peer that
//! stops reading cannot stall the loop; when that queue stays full the call is ended as a slow
//! consumer. Providers run in their own tasks behind bounded channels: STT audio is `try_send`
//! (a counted drop if the recogniser lags), TTS audio is only taken while the playout buffer has
//! room (backpressure), and cancelled agent/TTS work is aborted.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::channels::live::{LiveCalls, LiveGuard, LiveSnapshot, phase_name};
use crate::clock::unix_ms;
use crate::config::Config;
use crate::metrics::{Counter, Metrics};
use crate::providers::*;
use crate::store::{Record, Recorder};
use crate::voice::events::CallEvent;
use crate::voice::pacer::PacerStats;
use crate::voice::session::{
    CallSession, Output, SessionConfig, SessionCounters, SttFrame, TimerReason, mark_name,
};
use crate::voice::twilio::{self, Inbound};

mod measure;
mod workers;
mod writer;

use measure::{ClearTiming, fold_wire};
use workers::{AgentMsg, TtsMsg, TtsWorker, run_agent, spawn_stt, tts_worker};
pub use writer::SocketError;
use writer::{stop_writer, write_loop};

/// Everything a call needs from the process, shared by all calls.
pub struct CallDeps {
    pub config: Arc<Config>,
    pub stt: Arc<dyn SpeechToText>,
    pub agent: Arc<dyn Agent>,
    pub tts: Arc<dyn TextToSpeech>,
    pub recorder: Option<Recorder>,
    pub metrics: Arc<Metrics>,
    /// The live calls, for the console's ops view (bounded by the live-call limit).
    pub live: Arc<LiveCalls>,
}

impl CallDeps {
    /// The shared dependencies of every call: the providers, the process metrics (with the
    /// providers' own measurements on `/metrics`) and the store's recorder.
    pub fn new(
        config: Arc<Config>,
        providers: crate::providers::Providers,
        recorder: Option<Recorder>,
    ) -> Arc<Self> {
        Arc::new(Self {
            metrics: providers.metrics(),
            stt: providers.stt,
            agent: providers.agent,
            tts: providers.tts,
            live: LiveCalls::for_config(&config),
            config,
            recorder,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct CallSummary {
    pub call_sid: Option<String>,
    pub end_reason: &'static str,
    pub counters: SessionCounters,
    pub pacer: PacerStats,
    pub wire: WireCounters,
    pub timers: TimerCounts,
}

/// How often the session's timer woke the driver, by the reason `poll_timeout` gave. Counted on
/// every wake-up (the playout clock fires every 20 ms, so it is counted, never traced); the
/// turn-deciding reasons are also traced one by one as `CallEvent::Timer`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TimerCounts {
    pub playout: u64,
    pub stt_final: u64,
    pub agent_first_words: u64,
    pub digits: u64,
}

impl TimerCounts {
    fn count(&mut self, reason: TimerReason) {
        match reason {
            TimerReason::Playout => self.playout += 1,
            TimerReason::SttFinal => self.stt_final += 1,
            TimerReason::AgentFirstWords => self.agent_first_words += 1,
            TimerReason::Digits => self.digits += 1,
        }
    }
}

/// Problems on the wire, per call.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct WireCounters {
    pub malformed: u64,
    pub invalid_payloads: u64,
    pub oversized: u64,
    pub before_start: u64,
    pub unknown_stream: u64,
    pub unknown_events: u64,
    pub binary: u64,
    pub send_dropped: u64,
    pub stt_dropped: u64,
    pub stt_errors: u64,
}

/// Chars of base64 decoded per step: a multiple of 4, so pieces decode independently into a
/// small stack buffer whatever the payload length.
const B64_STEP: usize = 2048;
const ARENA: usize = 32 * 1024;
/// Bad frames logged per call before we only count them.
const LOGGED_PROBLEMS: u64 = 3;
const MAX_STT_RESTARTS: u32 = 3;
/// Reopening a failed recogniser stream: the shared policy (jitter, the server's retry-after).
const STT_REOPEN: crate::retry::Backoff =
    crate::retry::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

/// Runs one Media Streams connection to completion. Generic over the socket so tests can drive it
/// with in-memory channels.
pub async fn run_call<S, E>(
    socket: S,
    deps: Arc<CallDeps>,
    mut shutdown: watch::Receiver<bool>,
) -> CallSummary
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Send + 'static,
    <S as Sink<Message>>::Error: Display,
    E: SocketError,
{
    let cfg = deps.config.clone();
    let (sink, mut stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel::<Message>(cfg.server.ws_send_queue.max(4));
    let clear_timing = Arc::new(ClearTiming::new());
    let writer = tokio::spawn(write_loop(sink, out_rx, clear_timing.clone()));
    let mut summary = CallSummary {
        end_reason: "disconnected",
        ..Default::default()
    };

    // ---- wait for `start`
    let start_deadline = Instant::now() + Duration::from_millis(cfg.server.start_timeout_ms);
    let start = loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if text.len() > cfg.server.max_message_bytes {
                        summary.wire.oversized += 1;
                        continue;
                    }
                    match twilio::parse_inbound(text.as_str()) {
                        Ok(Inbound::Start(start)) => break start,
                        Ok(Inbound::Connected { .. }) => {}
                        Ok(Inbound::Unknown { .. }) => summary.wire.unknown_events += 1,
                        Ok(_) => summary.wire.before_start += 1,
                        Err(e) => {
                            summary.wire.malformed += 1;
                            tracing::warn!(error = %e, "malformed message before start");
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => summary.wire.binary += 1,
                Some(Ok(Message::Close(_))) | None => {
                    summary.end_reason = "closed_before_start";
                    return finish_unstarted(summary, &deps, out_tx, writer).await;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "socket error before start");
                    summary.end_reason = "socket_error";
                    return finish_unstarted(summary, &deps, out_tx, writer).await;
                }
            },
            _ = sleep_until(start_deadline) => {
                deps.metrics.add(Counter::StartTimeouts, 1);
                tracing::warn!("no `start` within {} ms; closing", cfg.server.start_timeout_ms);
                summary.end_reason = "start_timeout";
                return finish_unstarted(summary, &deps, out_tx, writer).await;
            }
            _ = shutdown.changed() => {
                summary.end_reason = "shutdown";
                return finish_unstarted(summary, &deps, out_tx, writer).await;
            }
        }
    };

    let mut call = CallDriver::new(deps.clone(), start, out_tx, clear_timing, summary);
    call.run(&mut stream, &mut shutdown).await;
    call.finish(writer).await
}

async fn finish_unstarted(
    summary: CallSummary,
    deps: &CallDeps,
    out_tx: mpsc::Sender<Message>,
    writer: JoinHandle<()>,
) -> CallSummary {
    fold_wire(&deps.metrics, &summary.wire);
    drop(out_tx);
    stop_writer(writer, Duration::from_secs(1)).await;
    summary
}

struct CallDriver {
    deps: Arc<CallDeps>,
    cfg: Arc<Config>,
    session: CallSession,
    ctx: CallContext,
    call_id: String,
    out_tx: mpsc::Sender<Message>,
    clear_timing: Arc<ClearTiming>,
    arena: BytesMut,
    out_full_since: Option<Instant>,
    stt_in: mpsc::Sender<SttInput>,
    stt_events: mpsc::Receiver<SttEvent>,
    stt_task: JoinHandle<Result<(), SttError>>,
    stt_restarts: u32,
    agent_tx: mpsc::Sender<(u32, AgentMsg)>,
    agent_rx: mpsc::Receiver<(u32, AgentMsg)>,
    agent_task: Option<(u32, JoinHandle<()>)>,
    tts_tx: mpsc::Sender<TtsMsg>,
    tts_rx: mpsc::Receiver<TtsMsg>,
    tts_worker: Option<TtsWorker>,
    summary: CallSummary,
    ended: bool,
    folded: SessionCounters,
    folded_pacer: PacerStats,
    last_fold: Instant,
    /// This call's entry in the live-call registry (`None` when the registry was full).
    live: Option<LiveGuard>,
}

impl CallDriver {
    fn new(
        deps: Arc<CallDeps>,
        start: twilio::Start,
        out_tx: mpsc::Sender<Message>,
        clear_timing: Arc<ClearTiming>,
        mut summary: CallSummary,
    ) -> Self {
        let cfg = deps.config.clone();
        let now = Instant::now();
        let ctx = CallContext {
            call_sid: start.call_sid.clone(),
            stream_sid: start.stream_sid.clone(),
            language: cfg.call.language.clone(),
            parameters: start.custom_parameters.clone(),
        };
        let call_id = format!("{}:{}", start.call_sid, start.stream_sid);
        summary.call_sid = Some(start.call_sid.clone());
        deps.metrics.add(Counter::CallsStarted, 1);
        deps.metrics.call_started();
        let live = deps.live.register(
            &call_id,
            &start.call_sid,
            unix_ms(),
            &start.custom_parameters,
        );
        if let Some(rec) = &deps.recorder {
            rec.record(Record::CallStarted {
                call_id: call_id.clone(),
                call_sid: start.call_sid.clone(),
                stream_sid: start.stream_sid.clone(),
                account_sid: start.account_sid.clone(),
                at_ms: unix_ms(),
                parameters_json: serde_json::to_string(&start.custom_parameters)
                    .unwrap_or_default(),
            });
            rec.record(Record::CallProviders {
                call_id: call_id.clone(),
                providers: format!(
                    "{}/{}/{}",
                    deps.stt.name(),
                    deps.agent.name(),
                    deps.tts.name()
                ),
            });
        }
        tracing::info!(call_sid = %start.call_sid, stream_sid = %start.stream_sid, "call started");
        let session = CallSession::new(
            now.into_std(),
            SessionConfig::from_config(&cfg, deps.stt.audio_format()),
        );
        let (stt_in, stt_events, stt_task) = spawn_stt(&deps, &ctx, Duration::ZERO);
        let (agent_tx, agent_rx) = mpsc::channel(32);
        // Two chunks in flight at most: TTS waits on this channel when the call's buffer is full.
        let (tts_tx, tts_rx) = mpsc::channel(2);
        let mut arena = BytesMut::with_capacity(ARENA);
        arena.reserve(ARENA);
        Self {
            deps,
            cfg,
            session,
            ctx,
            call_id,
            out_tx,
            clear_timing,
            arena,
            out_full_since: None,
            stt_in,
            stt_events,
            stt_task,
            stt_restarts: 0,
            agent_tx,
            agent_rx,
            agent_task: None,
            tts_tx,
            tts_rx,
            tts_worker: None,
            summary,
            ended: false,
            folded: SessionCounters::default(),
            folded_pacer: PacerStats::default(),
            last_fold: now,
            live,
        }
    }

    async fn run<R, E>(&mut self, stream: &mut R, shutdown: &mut watch::Receiver<bool>)
    where
        R: Stream<Item = Result<Message, E>> + Unpin,
        E: SocketError,
    {
        // One timer for the whole call, re-armed only when the session's deadline changes.
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let timer = tokio::time::sleep_until(far);
        tokio::pin!(timer);
        let mut armed = far;
        self.publish_live();
        loop {
            self.dispatch_outputs();
            if self.ended {
                return;
            }
            let deadline = self
                .session
                .poll_timeout()
                .map(|(at, reason)| (Instant::from_std(at), reason));
            let wanted = deadline.map_or(far, |(at, _)| at);
            if wanted != armed {
                timer.as_mut().reset(wanted);
                armed = wanted;
            }
            let take_tts = self.session.wants_tts_audio(TTS_MAX_CHUNK_BYTES);
            // The peer may stop reading while nothing more is sent (the pacer holds at its cap on
            // unconfirmed audio), so a full queue is re-checked on a timer, not only on the next send.
            let slow_at = self
                .out_full_since
                .map(|t| t + Duration::from_millis(self.cfg.server.slow_consumer_ms));
            tokio::select! {
                // Playout deadlines first: a burst of inbound messages must not delay outbound frames.
                biased;
                _ = &mut timer, if deadline.is_some() => {
                    armed = far; // fired: re-arm next turn, even for the same instant
                    if let Some((at, reason)) = deadline {
                        self.on_timer(at, reason);
                    }
                }
                msg = stream.next() => self.on_socket(msg),
                _ = sleep_until(slow_at.unwrap_or_else(Instant::now)), if slow_at.is_some() => {
                    if self.out_tx.capacity() == 0 {
                        self.end_slow_consumer();
                    } else {
                        self.out_full_since = None;
                    }
                }
                Some(ev) = self.stt_events.recv() => self.session.handle_stt(Instant::now().into_std(), ev),
                Some((turn, msg)) = self.agent_rx.recv() => {
                    let now = Instant::now().into_std();
                    match msg {
                        AgentMsg::Event(ev) => self.session.handle_agent(now, turn, ev),
                        AgentMsg::Done(result) => self.session.handle_agent_done(now, turn, result),
                    }
                }
                Some(msg) = self.tts_rx.recv(), if take_tts => {
                    let now = Instant::now().into_std();
                    if let Some(audio) = msg.audio {
                        self.session.handle_tts_audio(now, msg.turn, msg.segment, &audio);
                    }
                    if let Some(result) = msg.done {
                        self.session.handle_tts_done(now, msg.turn, msg.segment, result);
                    }
                }
                result = &mut self.stt_task => self.on_stt_ended(result),
                _ = shutdown.changed() => {
                    tracing::info!(call_sid = %self.ctx.call_sid, "closing call: shutdown deadline");
                    self.end("shutdown");
                }
            }
            let now = Instant::now();
            if now.duration_since(self.last_fold) >= Duration::from_secs(1) {
                self.fold_metrics();
                self.last_fold = now;
            }
        }
    }

    /// The session's timer fired for `reason` (its deadline was `at`): counted, traced unless it
    /// is the playout clock (no allocation on that per-frame path), then handed to the session.
    fn on_timer(&mut self, at: Instant, reason: TimerReason) {
        let now = Instant::now();
        self.summary.timers.count(reason);
        if reason != TimerReason::Playout {
            let late_ms = now.saturating_duration_since(at).as_millis();
            self.record_event(CallEvent::Timer {
                reason,
                late_ms: u32::try_from(late_ms).unwrap_or(u32::MAX),
            });
        }
        self.session.handle_timeout(now.into_std());
    }

    fn end(&mut self, reason: &'static str) {
        if !self.ended {
            self.ended = true;
            self.summary.end_reason = reason;
            self.session.handle_stop(Instant::now().into_std());
            self.dispatch_outputs_after_end();
        }
    }

    fn on_socket<E: SocketError>(&mut self, msg: Option<Result<Message, E>>) {
        match msg {
            Some(Ok(Message::Text(text))) => self.on_text(&text),
            Some(Ok(Message::Binary(_))) => self.summary.wire.binary += 1,
            Some(Ok(Message::Close(_))) => self.end_disconnected("closed_without_stop"),
            Some(Ok(_)) => {} // ping/pong are answered by the WebSocket layer
            Some(Err(e)) if e.is_oversized() => {
                self.summary.wire.oversized += 1;
                tracing::warn!(call_sid = %self.ctx.call_sid, error = %e, "oversized message; ending stream");
                self.end("oversized_message");
            }
            Some(Err(e)) => {
                tracing::warn!(call_sid = %self.ctx.call_sid, error = %e, "socket error");
                self.end_disconnected("socket_error");
            }
            None => self.end_disconnected("disconnected_without_stop"),
        }
    }

    fn end_disconnected(&mut self, reason: &'static str) {
        self.deps.metrics.add(Counter::AbruptDisconnects, 1);
        self.end(reason);
    }

    fn problem(&mut self, what: &str, detail: &dyn Display) {
        let w = &self.summary.wire;
        let total = w.malformed + w.invalid_payloads + w.unknown_stream + w.before_start;
        if total <= LOGGED_PROBLEMS {
            tracing::warn!(call_sid = %self.ctx.call_sid, problem = what, detail = %detail, "bad message ignored");
        }
    }

    fn on_text(&mut self, text: &Utf8Bytes) {
        if text.len() > self.cfg.server.max_message_bytes {
            self.summary.wire.oversized += 1;
            self.problem("oversized", &text.len());
            return;
        }
        let now = Instant::now().into_std();
        let event = match twilio::parse_inbound(text.as_str()) {
            Ok(event) => event,
            Err(e) => {
                self.summary.wire.malformed += 1;
                self.problem("malformed", &e);
                return;
            }
        };
        let sid_ok = |sid: &str| sid == self.ctx.stream_sid;
        match event {
            Inbound::Media(m) if sid_ok(&m.stream_sid) => {
                if m.track != "inbound" {
                    return; // bidirectional streams carry only the caller's track
                }
                let mut buf = [0u8; B64_STEP / 4 * 3];
                let payload = m.payload.as_bytes();
                for piece in payload.chunks(B64_STEP) {
                    // Chunks of a multiple of 4 chars are whole base64 quanta.
                    let piece = std::str::from_utf8(piece).unwrap_or("");
                    match twilio::decode_payload(piece, &mut buf) {
                        Ok(n) => self.session.handle_media(now, &buf[..n]),
                        Err(e) => {
                            self.summary.wire.invalid_payloads += 1;
                            self.problem("invalid_payload", &e);
                            return;
                        }
                    }
                }
            }
            Inbound::Dtmf(d) if sid_ok(&d.stream_sid) => self.session.handle_dtmf(now, d.digit),
            Inbound::Mark(m) if sid_ok(&m.stream_sid) => self.session.handle_mark(now, &m.name),
            Inbound::Stop(s) if sid_ok(&s.stream_sid) => {
                self.ended = true;
                self.summary.end_reason = "stop";
                self.session.handle_stop(now);
                self.dispatch_outputs_after_end();
            }
            Inbound::Media(_) | Inbound::Dtmf(_) | Inbound::Mark(_) | Inbound::Stop(_) => {
                self.summary.wire.unknown_stream += 1;
                self.problem("unknown_stream_sid", &"message for another stream");
            }
            Inbound::Start(_) => self.problem("duplicate_start", &"ignored"),
            Inbound::Connected { .. } => {}
            Inbound::Unknown { .. } => self.summary.wire.unknown_events += 1,
        }
    }

    /// The recogniser stream ended before the call. Retryable failures (and a stream that simply
    /// closed, and timeouts) reopen it after the retry policy's delay, at most
    /// `MAX_STT_RESTARTS` times; a fatal failure (or the last retry) stops it, and the session
    /// tells the caller and the trace.
    fn on_stt_ended(&mut self, result: Result<Result<(), SttError>, tokio::task::JoinError>) {
        let error = match result {
            Ok(Ok(())) => SttError::retryable("recogniser stream closed"),
            Ok(Err(e)) => e,
            // A panicking recogniser would panic again on the same audio.
            Err(e) => SttError::fatal(format!("recogniser task failed: {e}")),
        };
        self.summary.wire.stt_errors += 1;
        self.record_event(CallEvent::Warning {
            kind: "stt_error",
            detail: error.to_string(),
        });
        let retry_after = match error.kind() {
            FailureKind::Retryable { retry_after } => Some(retry_after),
            FailureKind::Timeout => Some(None),
            FailureKind::Fatal => None,
        };
        let Some(retry_after) = retry_after.filter(|_| self.stt_restarts < MAX_STT_RESTARTS) else {
            tracing::warn!(call_sid = %self.ctx.call_sid, %error, "recogniser stopped; call continues on the keypad");
            // Park the branch: a task that never finishes.
            self.stt_task = tokio::spawn(std::future::pending());
            self.session
                .handle_stt_lost(Instant::now().into_std(), &error);
            return;
        };
        let delay = STT_REOPEN.delay(self.stt_restarts, retry_after);
        self.stt_restarts += 1;
        tracing::warn!(call_sid = %self.ctx.call_sid, %error, delay_ms = delay.as_millis() as u64, "recogniser stream ended; reopening");
        let (stt_in, stt_events, stt_task) = spawn_stt(&self.deps, &self.ctx, delay);
        self.stt_in = stt_in;
        self.stt_events = stt_events;
        self.stt_task = stt_task;
    }

    /// Formats one message into the arena and queues it. No allocation per message: the arena is
    /// refilled in 32 KiB blocks, about one per hundred frames.
    fn send_ws(&mut self, write: impl FnOnce(&mut BytesMut, &str)) {
        if self.arena.capacity() < 1024 {
            self.arena.reserve(ARENA);
        }
        write(&mut self.arena, &self.ctx.stream_sid);
        let bytes = self.arena.split().freeze();
        let Ok(text) = Utf8Bytes::try_from(bytes) else {
            return;
        };
        match self.out_tx.try_send(Message::Text(text)) {
            Ok(()) => self.out_full_since = None,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.summary.wire.send_dropped += 1;
                let now = Instant::now();
                let since = *self.out_full_since.get_or_insert(now);
                if now.duration_since(since)
                    >= Duration::from_millis(self.cfg.server.slow_consumer_ms)
                {
                    self.end_slow_consumer();
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.end_disconnected("socket_closed"),
        }
    }

    fn end_slow_consumer(&mut self) {
        if !self.ended {
            tracing::warn!(call_sid = %self.ctx.call_sid, "peer stopped reading; ending call");
            self.deps.metrics.add(Counter::SlowConsumers, 1);
            self.end("slow_consumer");
        }
    }

    fn dispatch_outputs(&mut self) {
        while let Some(out) = self.session.poll_output() {
            self.dispatch(out);
        }
    }

    /// After the call ended only records and cancellations matter.
    fn dispatch_outputs_after_end(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Event(_) | Output::AgentCancel { .. } | Output::TtsCancel { .. } => {
                    self.dispatch(out)
                }
                _ => {}
            }
        }
    }

    fn dispatch(&mut self, out: Output) {
        match out {
            Output::Media(frame) => self.send_ws(|b, sid| twilio::write_media(b, sid, &frame)),
            Output::Mark(id) => self.send_ws(|b, sid| {
                let mut name = [0u8; 24];
                twilio::write_mark(b, sid, mark_name(id, &mut name));
            }),
            Output::Clear { decided_at } => {
                self.clear_timing.decided(decided_at);
                self.send_ws(twilio::write_clear);
            }
            Output::SttAudio(frame) => {
                let input = match frame {
                    SttFrame::Mulaw(f) => SttInput::Mulaw(f),
                    SttFrame::Pcm16k(f) => SttInput::Pcm16k(f),
                };
                if self.stt_in.try_send(input).is_err() {
                    self.summary.wire.stt_dropped += 1;
                }
            }
            Output::SttUtteranceEnd => {
                if self.stt_in.try_send(SttInput::UtteranceEnd).is_err() {
                    self.summary.wire.stt_dropped += 1;
                }
            }
            Output::SttUtteranceDiscarded => {
                if self.stt_in.try_send(SttInput::UtteranceDiscarded).is_err() {
                    self.summary.wire.stt_dropped += 1;
                }
            }
            Output::AgentRequest { turn, digits } => {
                if let Some((_, task)) = self.agent_task.take() {
                    task.abort();
                }
                let agent = self.deps.agent.clone();
                let tx = self.agent_tx.clone();
                let request = AgentRequest {
                    channel: Channel::Phone,
                    call: self.ctx.clone(),
                    turn,
                    history: self.session.history().to_vec(),
                    digits,
                };
                self.agent_task = Some((turn, tokio::spawn(run_agent(agent, request, tx))));
            }
            Output::AgentCancel { turn } => {
                if let Some((t, task)) = self.agent_task.take() {
                    if t == turn {
                        task.abort();
                    } else {
                        self.agent_task = Some((t, task));
                    }
                }
            }
            Output::TtsSpeak {
                turn,
                segment,
                text,
            } => {
                if self.tts_worker.as_ref().is_none_or(|(t, _, _)| *t != turn) {
                    if let Some((_, _, old)) = self.tts_worker.take() {
                        old.abort();
                    }
                    let (seg_tx, seg_rx) = mpsc::channel(64);
                    let task = tokio::spawn(tts_worker(
                        self.deps.tts.clone(),
                        self.ctx.language.clone(),
                        turn,
                        seg_rx,
                        self.tts_tx.clone(),
                    ));
                    self.tts_worker = Some((turn, seg_tx, task));
                }
                if let Some((_, seg_tx, _)) = &self.tts_worker
                    && seg_tx.try_send((segment, text)).is_err()
                {
                    // More sentences than a reply ever has: say so rather than block.
                    self.session.handle_tts_done(
                        Instant::now().into_std(),
                        turn,
                        segment,
                        Err(TtsError::fatal("too many sentences queued")),
                    );
                }
            }
            Output::TtsCancel { turn } => {
                if self.tts_worker.as_ref().is_some_and(|(t, _, _)| *t == turn)
                    && let Some((_, _, task)) = self.tts_worker.take()
                {
                    task.abort();
                }
            }
            Output::Event(event) => self.record_event(event),
            Output::Hangup { reason } => {
                tracing::info!(call_sid = %self.ctx.call_sid, reason, "hanging up");
                self.ended = true;
                self.summary.end_reason = "hangup";
            }
        }
    }

    async fn finish(mut self, writer: JoinHandle<()>) -> CallSummary {
        if let Some((_, task)) = self.agent_task.take() {
            task.abort();
        }
        if let Some((_, _, task)) = self.tts_worker.take() {
            task.abort();
        }
        self.stt_task.abort();
        self.fold_metrics();
        fold_wire(&self.deps.metrics, &self.summary.wire);
        self.deps.metrics.add(Counter::CallsEnded, 1);
        self.deps.metrics.call_ended();
        // Lets a booking agent enqueue its `call.ended` flow (summary); must not block.
        self.deps.agent.call_ended(&self.ctx, Channel::Phone);
        self.summary.counters = self.session.counters();
        self.summary.pacer = self.session.pacer_stats();
        let rtt = self
            .session
            .pacer_rtt()
            .srtt()
            .map(|d| d.as_millis() as u64);
        self.deps
            .metrics
            .record_call(rtt, self.summary.pacer.lead_max_ms);
        if let Some(rec) = &self.deps.recorder {
            let counters = serde_json::json!({
                "session": format!("{:?}", self.summary.counters),
                "pacer": format!("{:?}", self.summary.pacer),
                "wire": self.summary.wire,
                "timers": self.summary.timers,
            });
            rec.record(Record::CallEnded {
                call_id: self.call_id.clone(),
                at_ms: unix_ms(),
                reason: self.summary.end_reason.to_string(),
                counters_json: counters.to_string(),
            });
        }
        tracing::info!(call_sid = %self.ctx.call_sid, reason = self.summary.end_reason, turns = self.summary.counters.turns, "call ended");
        // Closing our side of the queue lets the writer flush what is queued and close the socket.
        drop(self.out_tx);
        stop_writer(writer, Duration::from_secs(2)).await;
        self.summary
    }
}

#[cfg(test)]
mod tests;
