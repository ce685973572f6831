//! Unit tests for the per-call driver, run against an in-memory socket and scripted
//! providers: timer reasons in traces, recogniser retry/backoff and fallback, and socket
//! errors classified by kind.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use super::*;

/// An in-memory Media Streams peer: inbound messages from a channel, outbound ones accepted
/// and dropped.
struct Peer(mpsc::Receiver<Message>);

impl Stream for Peer {
    type Item = Result<Message, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Sink<Message> for Peer {
    type Error = Infallible;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), Infallible> {
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
}

/// Fails its first `failures` streams with `error` as soon as they start; later streams run
/// until the call ends. Records when each stream started.
struct FailingStt {
    error: SttError,
    failures: usize,
    started: Arc<Mutex<Vec<Instant>>>,
}

impl SpeechToText for FailingStt {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn audio_format(&self) -> SttAudioFormat {
        SttAudioFormat::Mulaw8k
    }
    fn stream(
        &self,
        _: CallContext,
        mut input: mpsc::Receiver<SttInput>,
        _: mpsc::Sender<SttEvent>,
    ) -> BoxFuture<'static, Result<(), SttError>> {
        let (error, failures, started) = (self.error.clone(), self.failures, self.started.clone());
        Box::pin(async move {
            let n = {
                let mut started = started.lock().unwrap();
                started.push(Instant::now());
                started.len()
            };
            if n <= failures {
                return Err(error);
            }
            while input.recv().await.is_some() {}
            Ok(())
        })
    }
}

struct SilentAgent;

impl Agent for SilentAgent {
    fn name(&self) -> &'static str {
        "silent"
    }
    fn respond(
        &self,
        _: AgentRequest,
        _: mpsc::Sender<AgentEvent>,
    ) -> BoxFuture<'static, Result<(), AgentError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Records what it was asked to say and answers with 100 ms of silence.
struct RecordingTts(Arc<Mutex<Vec<String>>>);

impl TextToSpeech for RecordingTts {
    fn name(&self) -> &'static str {
        "recording"
    }
    fn synthesize(
        &self,
        text: String,
        _: String,
        audio: mpsc::Sender<Bytes>,
    ) -> BoxFuture<'static, Result<(), TtsError>> {
        self.0.lock().unwrap().push(text);
        Box::pin(async move {
            let _ = audio
                .send(Bytes::from_static(&[crate::voice::g711::SILENCE; 800]))
                .await;
            Ok(())
        })
    }
}

struct Outcome {
    started: Vec<Instant>,
    call_started: Instant,
    spoken: Vec<String>,
    summary: CallSummary,
}

/// A three-second call (virtual time) whose recogniser is `stt`.
async fn call_with(error: SttError, failures: usize) -> Outcome {
    let started = Arc::new(Mutex::new(Vec::new()));
    let spoken = Arc::new(Mutex::new(Vec::new()));
    let deps = Arc::new(CallDeps {
        config: Arc::new(Config::default()),
        stt: Arc::new(FailingStt {
            error,
            failures,
            started: started.clone(),
        }),
        agent: Arc::new(SilentAgent),
        tts: Arc::new(RecordingTts(spoken.clone())),
        recorder: None,
        metrics: Arc::new(Metrics::new()),
        live: crate::channels::live::LiveCalls::new(1),
    });
    let call_started = Instant::now();
    let summary = scripted_call(deps, &[], Duration::from_secs(3)).await;
    let started = started.lock().unwrap().clone();
    let spoken = spoken.lock().unwrap().clone();
    Outcome {
        started,
        call_started,
        spoken,
        summary,
    }
}

/// Plays a call of `CA1` lasting `length` (virtual time): `start`, then the keys in `keys`
/// (Twilio `dtmf` events) at once.
async fn scripted_call(deps: Arc<CallDeps>, keys: &[char], length: Duration) -> CallSummary {
    let (tx, rx) = mpsc::channel(16);
    let (_stop_tx, stop_rx) = watch::channel(false);
    let call = tokio::spawn(run_call(Peer(rx), deps, stop_rx));
    let mut start = BytesMut::new();
    twilio::write_start(
        &mut start,
        &twilio::Start {
            stream_sid: "MZ1".into(),
            call_sid: "CA1".into(),
            tracks: vec!["inbound".into()],
            ..Default::default()
        },
    );
    let mut messages = vec![start.freeze()];
    for (i, key) in keys.iter().enumerate() {
        let mut dtmf = BytesMut::new();
        twilio::write_dtmf(&mut dtmf, "MZ1", i as u64 + 2, *key);
        messages.push(dtmf.freeze());
    }
    for text in messages {
        let text = Utf8Bytes::try_from(text).unwrap();
        tx.send(Message::Text(text)).await.unwrap();
    }
    tokio::time::sleep(length).await;
    drop(tx);
    call.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_timer_that_ends_a_turn_is_traced_with_its_reason() {
    // The database runs on a runtime of its own in real time: the pool's timeouts must not
    // see this test's virtual clock jump.
    let db = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (store, recorder) = db
        .spawn(async {
            let store = crate::store::Store::connect("sqlite::memory:")
                .await
                .unwrap();
            let (recorder, _writer) = store.recorder(256);
            (store, recorder)
        })
        .await
        .unwrap();
    let deps = Arc::new(CallDeps {
        config: Arc::new(Config::default()),
        stt: Arc::new(FailingStt {
            error: SttError::fatal("unused"),
            failures: 0,
            started: Default::default(),
        }),
        agent: Arc::new(SilentAgent),
        tts: Arc::new(RecordingTts(Default::default())),
        recorder: Some(recorder.clone()),
        metrics: Arc::new(Metrics::new()),
        live: crate::channels::live::LiveCalls::new(1),
    });
    // Two keys and no '#': only the inter-digit deadline (5 s) can end this input.
    let summary = scripted_call(deps, &['4', '2'], Duration::from_secs(8)).await;
    recorder.flush().await;
    let events = db
        .spawn(async move { store.call_events("CA1").await.unwrap() })
        .await
        .unwrap();
    db.shutdown_background();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let timer = events
        .iter()
        .position(|e| e.kind == "timer")
        .unwrap_or_else(|| panic!("no timer event in {kinds:?}"));
    let detail: serde_json::Value = serde_json::from_str(&events[timer].detail_json).unwrap();
    assert_eq!(detail["reason"], "digits", "{detail}");
    assert!(detail["late_ms"].as_u64().is_some(), "{detail}");
    // The wake-up comes first, then what it decided: the digits committed by the timeout.
    let digits = events
        .iter()
        .position(|e| e.kind == "digits")
        .unwrap_or_else(|| panic!("no digits event in {kinds:?}"));
    assert!(timer < digits, "{kinds:?}");
    assert!(
        events[digits].detail_json.contains("\"42\""),
        "{:?}",
        events[digits]
    );
    assert_eq!(summary.timers.digits, 1, "{:?}", summary.timers);
    assert_eq!(
        summary.timers.stt_final + summary.timers.agent_first_words,
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_retryable_recogniser_failure_reopens_after_the_backoff() {
    let out = call_with(SttError::retryable("connection reset"), 2).await;
    // Two failures, then a stream that lives until the call ends.
    assert_eq!(out.started.len(), 3, "{:?}", out.started);
    assert_eq!(out.summary.wire.stt_errors, 2);
    // The policy's first two delays, with jitter: [50, 100] ms, then [100, 200] ms.
    let gaps: Vec<Duration> = out.started.windows(2).map(|w| w[1] - w[0]).collect();
    let within = |d: Duration, lo: u64, hi: u64| {
        (Duration::from_millis(lo)..=Duration::from_millis(hi)).contains(&d)
    };
    assert!(within(gaps[0], 50, 100), "{gaps:?}");
    assert!(within(gaps[1], 100, 200), "{gaps:?}");
    assert!(out.started[0] - out.call_started < Duration::from_millis(10));
    // Nothing told the caller: the recogniser came back.
    assert!(out.spoken.is_empty(), "{:?}", out.spoken);
}

#[tokio::test(start_paused = true)]
async fn a_server_retry_after_delays_the_reopen() {
    let error = SttError::Retryable {
        reason: "quota".into(),
        retry_after: Some(Duration::from_millis(1500)),
    };
    let out = call_with(error, 1).await;
    assert_eq!(out.started.len(), 2);
    // Raised to the hint, which is under the policy's 2 s cap.
    assert!(out.started[1] - out.started[0] >= Duration::from_millis(1500));
}

#[tokio::test(start_paused = true)]
async fn a_fatal_recogniser_failure_stops_it_and_speaks_the_fallback() {
    let out = call_with(SttError::fatal("permission denied"), 5).await;
    assert_eq!(out.started.len(), 1, "a fatal failure is not retried");
    assert_eq!(out.summary.wire.stt_errors, 1);
    assert_eq!(out.spoken, vec![Config::default().call.fallback_reply]);
}

#[tokio::test(start_paused = true)]
async fn retries_run_out_into_the_fallback() {
    let out = call_with(SttError::timeout("no answer"), 10).await;
    assert_eq!(out.started.len(), 1 + MAX_STT_RESTARTS as usize);
    assert_eq!(out.spoken, vec![Config::default().call.fallback_reply]);
}

#[test]
fn socket_errors_are_classified_by_kind_not_by_text() {
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::CapacityError;
    let too_big = axum::Error::new(WsError::Capacity(CapacityError::MessageTooLong {
        size: 70_000,
        max_size: 65_536,
    }));
    assert!(too_big.is_oversized());
    // The old substring test would have called this oversized.
    let io = std::io::Error::other("frame size mismatch, message too long");
    assert!(!axum::Error::new(WsError::Io(io)).is_oversized());
    assert!(!axum::Error::new(WsError::ConnectionClosed).is_oversized());
}
