//! Google Cloud Speech-to-Text v1 (`StreamingRecognize`) and Text-to-Speech v1 (`SynthesizeSpeech`)
//! over gRPC, with one shared tonic `Channel` per service.
//!
//! # Recogniser design: one gRPC stream per utterance, the next one always pre-opened
//! Our VAD decides when the caller speaks; the session only forwards audio during an utterance
//! (with its pre-roll). So each utterance gets its own `StreamingRecognize` stream:
//! - a *standby* stream is opened ahead of time (at the webhook via [`SpeechToText::prepare`], then
//!   after every utterance start), its config request already sent, so the first audio of the next
//!   utterance pays no stream set-up;
//! - at `UtteranceEnd` the stream is half-closed: Google then finalises everything it heard and
//!   closes, which is the fastest way to get the final (no waiting for Google's own endpointer).
//!   The finals of all of an utterance's streams are held until it ended and all of them closed,
//!   then joined and delivered as one `Final`: the session completes the turn on a final after the
//!   utterance end (or on an early one with no partial after it), so finals delivered piecemeal
//!   could end the turn short. Partials are debounced and carry the held finals in front;
//! - an idle standby is replaced at half the rotation age (and whenever Google closes it), so an
//!   utterance always starts on a stream with most of its 5 minutes left;
//! - `UtteranceDiscarded` cancels the utterance's streams: their results are never delivered.
//!
//! Rotation (Google closes streams after 5 minutes): a stream older than `rotate_after_ms` is
//! half-closed at the next silent frame and the standby takes over the same utterance (at
//! `rotate_hard_limit_ms` it is replaced even mid-word). Half-closing makes Google finalise what the
//! old stream heard, so nothing is lost and nothing is heard twice. A stream that dies instead
//! (an error, `OUT_OF_RANGE`, a dropped connection) loses what it had not finalised: each stream
//! keeps the audio after its last final (`result_end_time`), and that tail is replayed into the
//! replacement stream. Failed opens are retried with backoff; after `reconnect_attempts` failures
//! in a row the stream task returns [`SttError`] and the call driver's STT restart takes over.
//! Results are delivered strictly in stream order, so a rotated-out stream's final is never
//! overtaken by its successor's. A half-closed stream that gives no final within
//! `[turn] stt_timeout_ms` is given up (the engine has used the last partial by then).

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SelectAll, Stream, StreamExt};
use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1 as speech;
use googleapis_tonic_google_cloud_texttospeech_v1::google::cloud::texttospeech::v1 as tts;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use speech::streaming_recognize_request::StreamingRequest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::config::{Config, GoogleConfig};
use crate::providers::*;
use crate::voice::g711;

pub const DEFAULT_STT_ENDPOINT: &str = "https://speech.googleapis.com";
pub const DEFAULT_TTS_ENDPOINT: &str = "https://texttospeech.googleapis.com";
/// Static bearer token (tests, or a token minted elsewhere). Preferred over gcp_auth when set.
pub const ACCESS_TOKEN_ENV: &str = "KAV_GOOGLE_ACCESS_TOKEN";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's per-request audio limit.
pub const MAX_AUDIO_REQUEST_BYTES: usize = 25 * 1024;
/// Replayed audio is sent in pieces of 1 s, well under the request limit.
const REPLAY_PIECE_BYTES: usize = 8_000;
/// Unfinalised audio kept per stream for replay (30 s); older audio is dropped and counted.
const MAX_REPLAY_BYTES: usize = 240_000;
/// A stream that fails sooner than this after opening, without any result, is a failed open.
const FAST_FAIL: Duration = Duration::from_secs(2);
/// Mean absolute sample value below which a 20 ms frame counts as silence for rotation (≈ -40 dBFS).
const SILENCE_MEAN_ABS: u32 = 320;
const PARKED_STREAMS_MAX: usize = 256;

/// Hebrew phrase hints that every call needs: digits, weekdays, hours, "hour", "appointment".
const BUILTIN_HINTS_HE: &[&str] = &[
    "אפס",
    "אחת",
    "שתיים",
    "שלוש",
    "ארבע",
    "חמש",
    "שש",
    "שבע",
    "שמונה",
    "תשע",
    "עשר",
    "יום ראשון",
    "יום שני",
    "יום שלישי",
    "יום רביעי",
    "יום חמישי",
    "יום שישי",
    "שבת",
    "בשעה",
    "שעה",
    "חצי",
    "רבע",
    "בבוקר",
    "בצהריים",
    "בערב",
    "תור",
    "לקבוע תור",
    "לבטל תור",
];

// ------------------------------------------------------------------ stats

/// Provider measurements, process-wide, registered in the metrics registry as `kav_google_*`.
/// Latencies in ms: STT from our utterance end to the final delivered; TTS from the request to
/// the first audio byte handed to the pacer.
pub struct GoogleStats {
    pub stt_streams_opened: Counter,
    pub stt_rotations: Counter,
    pub stt_reconnects: Counter,
    pub stt_audio_bytes: Counter,
    pub stt_requests: Counter,
    pub stt_requests_dropped: Counter,
    pub stt_replay_bytes_dropped: Counter,
    pub stt_finals: Counter,
    pub stt_streams_given_up: Counter,
    pub tts_requests: Counter,
    pub tts_cache_hits: Counter,
    pub tts_errors: Counter,
    stt_final_ms: Histogram,
    tts_first_audio_ms: Histogram,
}

/// Failed standby opens back off with the one retry policy (200 ms doubling to 1.6 s, jittered).
const STANDBY_BACKOFF: crate::retry::Backoff =
    crate::retry::Backoff::new(Duration::from_millis(200), Duration::from_millis(1600));

fn bump(c: &Counter, n: u64) {
    c.inc_by(n);
}

fn record(h: &Histogram, d: Duration) {
    h.observe(d.as_secs_f64() * 1000.0);
}

impl Default for GoogleStats {
    fn default() -> Self {
        Self {
            stt_streams_opened: Counter::default(),
            stt_rotations: Counter::default(),
            stt_reconnects: Counter::default(),
            stt_audio_bytes: Counter::default(),
            stt_requests: Counter::default(),
            stt_requests_dropped: Counter::default(),
            stt_replay_bytes_dropped: Counter::default(),
            stt_finals: Counter::default(),
            stt_streams_given_up: Counter::default(),
            tts_requests: Counter::default(),
            tts_cache_hits: Counter::default(),
            tts_errors: Counter::default(),
            stt_final_ms: crate::metrics::latency_histogram(),
            tts_first_audio_ms: crate::metrics::latency_histogram(),
        }
    }
}

impl crate::metrics::MetricsSource for GoogleStats {
    fn register(&self, registry: &mut Registry) {
        let google = registry.sub_registry_with_prefix("kav_google");
        let counters: [(&str, &str, &Counter); 12] = [
            (
                "stt_streams_opened",
                "StreamingRecognize calls opened",
                &self.stt_streams_opened,
            ),
            (
                "stt_rotations",
                "Streams replaced before Google's duration limit",
                &self.stt_rotations,
            ),
            (
                "stt_reconnects",
                "Streams that died mid-utterance and were replayed",
                &self.stt_reconnects,
            ),
            (
                "stt_audio_bytes",
                "Mu-law bytes sent",
                &self.stt_audio_bytes,
            ),
            ("stt_requests", "Audio requests sent", &self.stt_requests),
            (
                "stt_requests_dropped",
                "Audio requests not queued (stalled or closed stream)",
                &self.stt_requests_dropped,
            ),
            (
                "stt_replay_bytes_dropped",
                "Unfinalised audio too old to keep for replay",
                &self.stt_replay_bytes_dropped,
            ),
            (
                "stt_finals",
                "Final transcripts delivered",
                &self.stt_finals,
            ),
            (
                "stt_streams_given_up",
                "Half-closed streams that gave no final in time",
                &self.stt_streams_given_up,
            ),
            ("tts_requests", "SynthesizeSpeech calls", &self.tts_requests),
            (
                "tts_cache_hits",
                "Fixed phrases served from memory",
                &self.tts_cache_hits,
            ),
            ("tts_errors", "Failed syntheses", &self.tts_errors),
        ];
        crate::metrics::register_all(
            google,
            &counters,
            &[
                (
                    "stt_final_after_end_ms",
                    "Our utterance end to the final transcript, ms",
                    &self.stt_final_ms,
                ),
                (
                    "tts_first_audio_ms",
                    "TTS request to the first audio byte, ms",
                    &self.tts_first_audio_ms,
                ),
            ],
        );
    }
}

impl GoogleStats {
    pub fn get(c: &Counter) -> u64 {
        c.get()
    }
}

// ------------------------------------------------------------------ connection and auth

#[derive(Debug, thiserror::Error)]
pub enum GoogleInitError {
    #[error("invalid Google endpoint {url:?}: {detail}")]
    Endpoint { url: String, detail: String },
    #[error(
        "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service-account JSON file or {ACCESS_TOKEN_ENV} to a bearer token ({0})"
    )]
    Credentials(String),
}

#[derive(Clone)]
enum TokenSource {
    /// Plain-http loopback endpoint (the test fakes): no auth.
    None,
    Static(String),
    Gcp(Arc<dyn gcp_auth::TokenProvider>),
}

/// One Google gRPC service: its endpoint, the shared channel and how requests are authorised.
struct GrpcService {
    url: String,
    endpoint: Endpoint,
    /// Lazy until the first `connect`, then the connected channel; every request clones it
    /// (clones share the one HTTP/2 connection).
    channel: RwLock<Channel>,
    connected: AtomicBool,
    auth: TokenSource,
}

/// tonic's transport errors say only "transport error"; the cause is in the source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A gRPC status as a provider failure of the right kind: what may pass (overload, a dropped
/// connection, an aborted stream) is retryable; bad requests, auth and wiring are fatal.
fn status_error(what: &str, status: &tonic::Status) -> ProviderError {
    use tonic::Code;
    let reason = format!("{what} {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::DeadlineExceeded => ProviderError::timeout(reason),
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled => ProviderError::retryable(reason),
        _ => ProviderError::fatal(reason),
    }
}

fn is_plain_loopback(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    u.scheme() == "http"
        && match u.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

impl GrpcService {
    async fn new(
        configured: &str,
        default: &str,
        timeout: Duration,
    ) -> Result<Self, GoogleInitError> {
        let url = if configured.trim().is_empty() {
            default.to_string()
        } else {
            configured.trim().to_string()
        };
        let bad = |detail: String| GoogleInitError::Endpoint {
            url: url.clone(),
            detail,
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            // Keeps the warmed connection alive between calls.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_webpki_roots())
                .map_err(|e| bad(e.to_string()))?;
        }
        let auth = if is_plain_loopback(&url) {
            TokenSource::None
        } else if let Some(token) = std::env::var(ACCESS_TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            TokenSource::Static(token.trim().to_string())
        } else {
            // One lookup per process, shared by STT and TTS: without credentials it probes the
            // metadata server, which takes seconds.
            static PROVIDER: tokio::sync::OnceCell<
                Result<Arc<dyn gcp_auth::TokenProvider>, String>,
            > = tokio::sync::OnceCell::const_new();
            let provider = PROVIDER
                .get_or_init(|| async { gcp_auth::provider().await.map_err(|e| e.to_string()) })
                .await
                .clone()
                .map_err(GoogleInitError::Credentials)?;
            TokenSource::Gcp(provider)
        };
        let channel = RwLock::new(endpoint.connect_lazy());
        Ok(Self {
            url,
            endpoint,
            channel,
            connected: AtomicBool::new(false),
            auth,
        })
    }

    fn channel(&self) -> Channel {
        self.channel
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connects once (later calls return at once: the channel reconnects by itself).
    async fn connect(&self) -> Result<(), ProviderError> {
        if self.connected.load(Ordering::Acquire) {
            return Ok(());
        }
        let channel = self.endpoint.connect().await.map_err(|e| {
            ProviderError::retryable(format!(
                "cannot connect to {}: {}",
                self.url,
                error_chain(&e)
            ))
        })?;
        *self.channel.write().unwrap_or_else(|p| p.into_inner()) = channel;
        self.connected.store(true, Ordering::Release);
        Ok(())
    }

    async fn authorise<T>(&self, req: &mut tonic::Request<T>) -> Result<(), tonic::Status> {
        let token = match &self.auth {
            TokenSource::None => return Ok(()),
            TokenSource::Static(t) => t.clone(),
            TokenSource::Gcp(p) => p
                .token(&[SCOPE])
                .await
                .map_err(|e| tonic::Status::unauthenticated(format!("token: {e}")))?
                .as_str()
                .to_string(),
        };
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| tonic::Status::unauthenticated("token is not a valid header value"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(())
    }
}

// ------------------------------------------------------------------ speech to text

pub struct GoogleStt {
    inner: Arc<SttInner>,
}

struct SttInner {
    svc: GrpcService,
    cfg: GoogleConfig,
    default_language: String,
    /// `[turn] stt_timeout_ms`: a half-closed stream gets this long to deliver its final.
    finish_timeout: Duration,
    parked: Mutex<HashMap<String, (Instant, StreamHandle, StreamRx)>>,
    stats: Arc<GoogleStats>,
    next_id: AtomicU64,
}

enum StreamMsg {
    Response(speech::StreamingRecognizeResponse),
    End(Result<(), tonic::Status>),
}

type StreamRx = mpsc::Receiver<StreamMsg>;
type Tagged = Pin<Box<dyn Stream<Item = (u64, StreamMsg)> + Send>>;

/// Our side of one `StreamingRecognize` call. Dropping it cancels the call.
struct StreamHandle {
    id: u64,
    /// Requests to the server; `None` once half-closed.
    tx: Option<mpsc::Sender<speech::StreamingRecognizeRequest>>,
    task: JoinHandle<()>,
    opened: Instant,
    language: String,
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GoogleStt {
    pub async fn new(cfg: &Config, stats: Arc<GoogleStats>) -> Result<Self, GoogleInitError> {
        let g = &cfg.google;
        let svc = GrpcService::new(
            &g.stt_endpoint,
            DEFAULT_STT_ENDPOINT,
            Duration::from_millis(g.request_timeout_ms),
        )
        .await?;
        Ok(Self {
            inner: Arc::new(SttInner {
                svc,
                cfg: g.clone(),
                default_language: cfg.call.language.clone(),
                finish_timeout: Duration::from_millis(cfg.turn.stt_timeout_ms.max(1)),
                parked: Mutex::new(HashMap::new()),
                stats,
                next_id: AtomicU64::new(1),
            }),
        })
    }

    pub fn stats(&self) -> &Arc<GoogleStats> {
        &self.inner.stats
    }

    /// Streams opened at the webhook and not yet taken by their call.
    pub fn parked_streams(&self) -> usize {
        self.inner
            .parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

impl SttInner {
    fn recognition_config(&self, language: &str) -> speech::StreamingRecognitionConfig {
        let mut phrases: Vec<String> = BUILTIN_HINTS_HE
            .iter()
            .filter(|_| language.to_ascii_lowercase().starts_with("he"))
            .map(|s| s.to_string())
            .collect();
        phrases.extend(
            self.cfg
                .phrase_hints
                .iter()
                .filter(|p| !p.is_empty())
                .cloned(),
        );
        speech::StreamingRecognitionConfig {
            config: Some(speech::RecognitionConfig {
                encoding: speech::recognition_config::AudioEncoding::Mulaw as i32,
                sample_rate_hertz: 8000,
                audio_channel_count: 1,
                language_code: language.to_string(),
                max_alternatives: 1,
                // Partials are never punctuated; finals of a phone turn need none either.
                enable_automatic_punctuation: false,
                speech_contexts: if phrases.is_empty() {
                    Vec::new()
                } else {
                    vec![speech::SpeechContext {
                        phrases,
                        boost: self.cfg.phrase_boost,
                    }]
                },
                model: self.cfg.model.clone(),
                use_enhanced: self.cfg.use_enhanced,
                ..Default::default()
            }),
            single_utterance: false,
            interim_results: true,
            ..Default::default()
        }
    }

    /// Starts a `StreamingRecognize` call whose first request (config only) is already queued.
    fn open_stream(self: &Arc<Self>, language: &str) -> (StreamHandle, StreamRx) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        bump(&self.stats.stt_streams_opened, 1);
        // 64 requests of 100 ms: 6 s of audio may queue behind a stalled connection.
        let (req_tx, req_rx) = mpsc::channel(64);
        let config = speech::StreamingRecognizeRequest {
            streaming_request: Some(StreamingRequest::StreamingConfig(
                self.recognition_config(language),
            )),
        };
        let _ = req_tx.try_send(config);
        let (msg_tx, msg_rx) = mpsc::channel(32);
        let inner = self.clone();
        let task = tokio::spawn(async move {
            let end = run_stream(&inner, req_rx, &msg_tx).await;
            let _ = msg_tx.send(StreamMsg::End(end)).await;
        });
        (
            StreamHandle {
                id,
                tx: Some(req_tx),
                task,
                opened: Instant::now(),
                language: language.to_string(),
            },
            msg_rx,
        )
    }

    fn take_parked(&self, call_sid: &str, language: &str) -> Option<(StreamHandle, StreamRx)> {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = Duration::from_millis(self.cfg.prepared_stream_ttl_ms);
        let (at, handle, rx) = parked.remove(call_sid)?;
        (at.elapsed() < ttl && handle.language == language).then_some((handle, rx))
    }
}

async fn run_stream(
    inner: &SttInner,
    requests: mpsc::Receiver<speech::StreamingRecognizeRequest>,
    out: &mpsc::Sender<StreamMsg>,
) -> Result<(), tonic::Status> {
    let mut req = tonic::Request::new(ReceiverStream::new(requests));
    inner.svc.authorise(&mut req).await?;
    let mut client = speech::speech_client::SpeechClient::new(inner.svc.channel());
    let mut responses = client.streaming_recognize(req).await?.into_inner();
    while let Some(resp) = responses.message().await? {
        if out.send(StreamMsg::Response(resp)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

impl SpeechToText for GoogleStt {
    fn name(&self) -> &'static str {
        "google"
    }

    fn audio_format(&self) -> SttAudioFormat {
        SttAudioFormat::Mulaw8k
    }

    fn warm(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let started = Instant::now();
            let timeout = Duration::from_millis(inner.cfg.request_timeout_ms);
            tokio::time::timeout(timeout, inner.svc.connect())
                .await
                .map_err(|_| {
                    ProviderError::timeout(format!("connecting to {}", inner.svc.url))
                })??;
            tracing::info!(
                endpoint = %inner.svc.url,
                connect_ms = started.elapsed().as_millis() as u64,
                "Google STT channel ready"
            );
            Ok(())
        })
    }

    fn prepare(&self, call_sid: &str) {
        let inner = &self.inner;
        let ttl = Duration::from_millis(inner.cfg.prepared_stream_ttl_ms);
        let mut parked = inner.parked.lock().unwrap_or_else(|p| p.into_inner());
        parked.retain(|_, (at, _, _)| at.elapsed() < ttl);
        if parked.len() >= PARKED_STREAMS_MAX || parked.contains_key(call_sid) {
            return;
        }
        let (handle, rx) = inner.open_stream(&inner.default_language);
        let id = handle.id;
        parked.insert(call_sid.to_string(), (Instant::now(), handle, rx));
        // A call that never connects must not keep its stream open until the next webhook.
        let weak = Arc::downgrade(inner);
        let call_sid = call_sid.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            if let Some(inner) = weak.upgrade() {
                let mut parked = inner.parked.lock().unwrap_or_else(|p| p.into_inner());
                if parked.get(&call_sid).is_some_and(|(_, h, _)| h.id == id) {
                    parked.remove(&call_sid);
                }
            }
        });
    }

    fn stream(
        &self,
        call: CallContext,
        input: mpsc::Receiver<SttInput>,
        events: mpsc::Sender<SttEvent>,
    ) -> BoxFuture<'static, Result<(), SttError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let language = if call.language.is_empty() {
                inner.default_language.clone()
            } else {
                call.language.clone()
            };
            let parked = inner.take_parked(&call.call_sid, &language);
            let mut r = Recognizer::new(inner, language, events, call.call_sid.clone());
            match parked {
                Some((handle, rx)) => r.set_standby(handle, rx),
                None => r.open_standby(),
            }
            let result = r.run(input).await;
            r.log_totals(&result);
            result
        })
    }
}

/// Coalesces partial transcripts: the newest one is delivered `window` after the first of a burst.
#[derive(Debug, Default)]
pub struct PartialDebouncer {
    window: Duration,
    pending: Option<(String, Instant)>,
}

impl PartialDebouncer {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            pending: None,
        }
    }

    /// Returns the text to deliver now, if the window is zero.
    pub fn push(&mut self, now: Instant, text: String) -> Option<String> {
        if self.window.is_zero() {
            return Some(text);
        }
        match &mut self.pending {
            Some((pending, _)) => *pending = text,
            None => self.pending = Some((text, now + self.window)),
        }
        None
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|(_, at)| *at)
    }

    pub fn poll(&mut self, now: Instant) -> Option<String> {
        match &self.pending {
            Some((_, at)) if *at <= now => self.pending.take().map(|(t, _)| t),
            _ => None,
        }
    }

    pub fn clear(&mut self) {
        self.pending = None;
    }
}

/// A stream carrying (part of) an utterance.
struct Segment {
    handle: StreamHandle,
    utterance: u64,
    done: bool,
    /// Final text received but not delivered yet (an earlier segment is still open).
    held: String,
    /// Audio after the last final, for replay if the stream dies.
    tail: Vec<u8>,
    /// Stream audio time (ms) at the start of `tail`.
    tail_start_ms: u64,
    /// Audio bytes sent on this stream.
    sent_bytes: usize,
    half_closed_at: Option<Instant>,
    got_result: bool,
}

struct UtteranceState {
    ended_at: Option<Instant>,
}

struct Recognizer {
    inner: Arc<SttInner>,
    language: String,
    call_sid: String,
    events: mpsc::Sender<SttEvent>,
    incoming: SelectAll<Tagged>,
    standby: Option<StreamHandle>,
    standby_retry_at: Option<Instant>,
    segments: HashMap<u64, Segment>,
    /// Segment ids, oldest first: results are delivered in this order.
    order: VecDeque<u64>,
    utterances: HashMap<u64, UtteranceState>,
    active: Option<u64>,
    current_utterance: u64,
    batch: Vec<u8>,
    batch_bytes: usize,
    debouncer: PartialDebouncer,
    /// A partial to deliver at once (debounce window 0).
    pending_partial: Option<String>,
    failures: u32,
    // per-call totals, logged at the end
    finals: u64,
    rotations: u64,
    reconnects: u64,
    audio_bytes: u64,
    final_latency_total: Duration,
    final_latency_max: Duration,
}

fn join_text(into: &mut String, piece: &str) {
    if piece.is_empty() {
        return;
    }
    if !into.is_empty() && !piece.starts_with(char::is_whitespace) {
        into.push(' ');
    }
    into.push_str(piece);
}

fn is_silent(frame: &[u8]) -> bool {
    let sum: u32 = frame
        .iter()
        .map(|&b| g711::decode(b).unsigned_abs() as u32)
        .sum();
    sum / (frame.len().max(1) as u32) < SILENCE_MEAN_ABS
}

fn duration_ms(d: &Option<prost_types::Duration>) -> Option<u64> {
    d.as_ref()
        .map(|d| d.seconds.max(0) as u64 * 1000 + d.nanos.max(0) as u64 / 1_000_000)
}

impl Recognizer {
    fn new(
        inner: Arc<SttInner>,
        language: String,
        events: mpsc::Sender<SttEvent>,
        call_sid: String,
    ) -> Self {
        let batch_bytes = (inner.cfg.stt_batch_ms as usize * 8).clamp(160, MAX_AUDIO_REQUEST_BYTES);
        let window = Duration::from_millis(inner.cfg.stt_partial_debounce_ms);
        Self {
            inner,
            language,
            call_sid,
            events,
            incoming: SelectAll::new(),
            standby: None,
            standby_retry_at: None,
            segments: HashMap::new(),
            order: VecDeque::new(),
            utterances: HashMap::new(),
            active: None,
            current_utterance: 0,
            batch: Vec::with_capacity(batch_bytes),
            batch_bytes,
            debouncer: PartialDebouncer::new(window),
            pending_partial: None,
            failures: 0,
            finals: 0,
            rotations: 0,
            reconnects: 0,
            audio_bytes: 0,
            final_latency_total: Duration::ZERO,
            final_latency_max: Duration::ZERO,
        }
    }

    fn track(&mut self, id: u64, rx: StreamRx) {
        self.incoming
            .push(Box::pin(ReceiverStream::new(rx).map(move |m| (id, m))));
    }

    fn set_standby(&mut self, handle: StreamHandle, rx: StreamRx) {
        self.track(handle.id, rx);
        self.standby = Some(handle);
    }

    fn open_standby(&mut self) {
        let (handle, rx) = self.inner.open_stream(&self.language);
        self.standby_retry_at = None;
        self.set_standby(handle, rx);
    }

    /// The standby if there is one (a new one is opened behind it), else a fresh stream.
    fn take_stream(&mut self) -> StreamHandle {
        let handle = match self.standby.take() {
            Some(h) => h,
            None => {
                let (h, rx) = self.inner.open_stream(&self.language);
                self.track(h.id, rx);
                h
            }
        };
        self.open_standby();
        handle
    }

    fn new_segment(&self, handle: StreamHandle, utterance: u64) -> Segment {
        Segment {
            handle,
            utterance,
            done: false,
            held: String::new(),
            tail: Vec::new(),
            tail_start_ms: 0,
            sent_bytes: 0,
            half_closed_at: None,
            got_result: false,
        }
    }

    async fn run(&mut self, mut input: mpsc::Receiver<SttInput>) -> Result<(), SttError> {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                msg = input.recv() => match msg {
                    Some(SttInput::Mulaw(frame)) => self.on_audio(&frame),
                    Some(SttInput::Pcm16k(_)) => {
                        // We asked for mu-law; anything else is a wiring bug, not the caller's fault.
                        return Err(SttError::fatal("Google STT takes 8 kHz mu-law only"));
                    }
                    Some(SttInput::UtteranceEnd) => self.on_utterance_end(),
                    Some(SttInput::UtteranceDiscarded) => self.on_discarded(),
                    None => return Ok(()),
                },
                Some((id, msg)) = self.incoming.next() => self.on_stream_msg(id, msg)?,
                _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => self.on_timer()?,
            }
            if !self.deliver().await {
                return Ok(());
            }
        }
    }

    /// An idle standby is replaced at half the rotation age, so the stream an utterance starts on
    /// always has at least half of its time budget left.
    fn standby_max_age(&self) -> Duration {
        Duration::from_millis((self.inner.cfg.rotate_after_ms / 2).max(1))
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next = self.debouncer.deadline();
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if let Some(t) = self.standby_retry_at {
            consider(t);
        }
        if let Some(s) = &self.standby {
            consider(s.opened + self.standby_max_age());
        }
        for seg in self.segments.values() {
            if let (Some(at), false) = (seg.half_closed_at, seg.done) {
                consider(at + self.inner.finish_timeout);
            }
        }
        next
    }

    fn on_timer(&mut self) -> Result<(), SttError> {
        let now = Instant::now();
        if self.standby_retry_at.is_some_and(|t| t <= now) {
            self.open_standby();
        }
        let max_age = self.standby_max_age();
        if self
            .standby
            .as_ref()
            .is_some_and(|s| now.duration_since(s.opened) >= max_age)
        {
            // An idle stream must not reach Google's limit either: replace it quietly.
            self.standby = None;
            self.open_standby();
        }
        let timeout = self.inner.finish_timeout;
        for seg in self.segments.values_mut() {
            if let (Some(at), false) = (seg.half_closed_at, seg.done)
                && now.duration_since(at) >= timeout
            {
                // The engine has moved on with the last partial by now; stop waiting.
                seg.done = true;
                bump(&self.inner.stats.stt_streams_given_up, 1);
                tracing::warn!(call_sid = %self.call_sid, stream = seg.handle.id, "Google STT gave no final in time; giving up on that stream");
            }
        }
        Ok(())
    }

    fn on_audio(&mut self, frame: &[u8]) {
        match self.active {
            Some(id) => {
                let age = self.segments[&id].handle.opened.elapsed();
                let cfg = &self.inner.cfg;
                let rotate = (age >= Duration::from_millis(cfg.rotate_after_ms)
                    && is_silent(frame))
                    || age >= Duration::from_millis(cfg.rotate_hard_limit_ms);
                if rotate {
                    self.rotate(id);
                }
            }
            None => {
                self.current_utterance += 1;
                self.utterances
                    .insert(self.current_utterance, UtteranceState { ended_at: None });
                let handle = self.take_stream();
                let id = handle.id;
                let seg = self.new_segment(handle, self.current_utterance);
                self.segments.insert(id, seg);
                self.order.push_back(id);
                self.active = Some(id);
            }
        }
        self.batch.extend_from_slice(frame);
        if self.batch.len() >= self.batch_bytes {
            self.flush_batch();
        }
    }

    /// Half-closes the active stream (Google finalises what it heard) and continues the same
    /// utterance on the standby.
    fn rotate(&mut self, old: u64) {
        self.flush_batch();
        self.rotations += 1;
        bump(&self.inner.stats.stt_rotations, 1);
        if let Some(seg) = self.segments.get_mut(&old) {
            seg.handle.tx = None;
            seg.half_closed_at = Some(Instant::now());
        }
        let handle = self.take_stream();
        let id = handle.id;
        let seg = self.new_segment(handle, self.current_utterance);
        self.segments.insert(id, seg);
        let pos = self
            .order
            .iter()
            .position(|&s| s == old)
            .map_or(self.order.len(), |p| p + 1);
        self.order.insert(pos, id);
        self.active = Some(id);
        tracing::debug!(call_sid = %self.call_sid, old, new = id, "Google STT stream rotated");
    }

    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let Some(id) = self.active else {
            self.batch.clear();
            return;
        };
        let audio = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_bytes));
        self.audio_bytes += audio.len() as u64;
        if let Some(seg) = self.segments.get_mut(&id) {
            send_audio(&self.inner.stats, seg, audio);
        }
    }

    fn on_utterance_end(&mut self) {
        self.flush_batch();
        let Some(id) = self.active.take() else {
            return;
        };
        if let Some(seg) = self.segments.get_mut(&id) {
            seg.handle.tx = None;
            seg.half_closed_at = Some(Instant::now());
        }
        if let Some(u) = self.utterances.get_mut(&self.current_utterance) {
            u.ended_at = Some(Instant::now());
        }
    }

    fn on_discarded(&mut self) {
        self.batch.clear();
        self.debouncer.clear();
        if self.active.take().is_none() {
            return;
        }
        let utt = self.current_utterance;
        // Dropping the handles cancels the calls: noise is neither billed further nor delivered.
        self.segments.retain(|_, s| s.utterance != utt);
        let segments = &self.segments;
        self.order.retain(|id| segments.contains_key(id));
        self.utterances.remove(&utt);
    }

    fn on_stream_msg(&mut self, id: u64, msg: StreamMsg) -> Result<(), SttError> {
        match msg {
            StreamMsg::Response(resp) => {
                if let Some(err) = resp.error {
                    return self.on_stream_end(
                        id,
                        Err(tonic::Status::new(tonic::Code::from(err.code), err.message)),
                    );
                }
                self.on_results(id, resp.results);
                Ok(())
            }
            StreamMsg::End(result) => self.on_stream_end(id, result),
        }
    }

    fn on_results(&mut self, id: u64, results: Vec<speech::StreamingRecognitionResult>) {
        let Some(seg) = self.segments.get_mut(&id) else {
            return; // standby (nothing to say) or a discarded utterance
        };
        if results.is_empty() {
            return;
        }
        seg.got_result = true;
        self.failures = 0;
        let mut partial = String::new();
        for r in results {
            let text = r
                .alternatives
                .first()
                .map(|a| a.transcript.as_str())
                .unwrap_or("");
            if r.is_final {
                seg.held.push_str(text);
                // Everything up to the final's end is recognised: no replay needed for it.
                let end_ms = duration_ms(&r.result_end_time).unwrap_or((seg.sent_bytes / 8) as u64);
                let drop =
                    ((end_ms.saturating_sub(seg.tail_start_ms)) as usize * 8).min(seg.tail.len());
                seg.tail.drain(..drop);
                seg.tail_start_ms += (drop / 8) as u64;
            } else {
                partial.push_str(text);
            }
        }
        if self.active == Some(id) && !partial.is_empty() {
            // The partial covers only this stream: put the utterance's held finals in front, so
            // the engine's fallback (last partial at the STT timeout) has the whole utterance.
            let utterance = self.current_utterance;
            let mut text = String::new();
            for sid in &self.order {
                let seg = &self.segments[sid];
                if seg.utterance == utterance {
                    join_text(&mut text, &seg.held);
                }
            }
            join_text(&mut text, &partial);
            let partial = text.trim().to_string();
            if let Some(now_text) = self.debouncer.push(Instant::now(), partial) {
                self.pending_partial = Some(now_text);
            }
        }
    }

    fn on_stream_end(
        &mut self,
        id: u64,
        result: Result<(), tonic::Status>,
    ) -> Result<(), SttError> {
        if self.standby.as_ref().is_some_and(|s| s.id == id) {
            let standby = self.standby.take().expect("checked");
            let fast = standby.opened.elapsed() < FAST_FAIL;
            if let Err(status) = &result {
                tracing::warn!(call_sid = %self.call_sid, code = ?status.code(), message = status.message(), "Google STT standby stream failed");
            }
            // A stream that ends at once, even "cleanly", is a failed open: back off rather than
            // spin. Google's duration limit (OUT_OF_RANGE) on an idle stream is not a failure.
            let out_of_range = matches!(&result, Err(s) if s.code() == tonic::Code::OutOfRange);
            if fast && !out_of_range {
                self.failures += 1;
                self.check_failures(&result)?;
                let backoff = STANDBY_BACKOFF.delay(self.failures.saturating_sub(1), None);
                self.standby_retry_at = Some(Instant::now() + backoff);
            } else {
                self.open_standby();
            }
            return Ok(());
        }
        let Some(seg) = self.segments.get_mut(&id) else {
            return Ok(());
        };
        if seg.done {
            return Ok(());
        }
        let clean = result.is_ok() && seg.half_closed_at.is_some();
        seg.done = true;
        if clean || seg.tail.is_empty() && self.active != Some(id) {
            return Ok(());
        }
        // The stream died with audio it had not finalised: replay that on a new stream.
        let out_of_range = matches!(&result, Err(s) if s.code() == tonic::Code::OutOfRange);
        if !seg.got_result && !out_of_range {
            self.failures += 1;
        }
        let detail = match &result {
            Ok(()) => "stream closed early".to_string(),
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        };
        tracing::warn!(call_sid = %self.call_sid, stream = id, %detail, "Google STT stream ended mid-utterance; replaying its audio on a new stream");
        self.check_failures(&result)?;
        let seg = self.segments.get_mut(&id).expect("present");
        let tail = std::mem::take(&mut seg.tail);
        let utterance = seg.utterance;
        let was_half_closed = seg.half_closed_at.is_some();
        self.reconnects += 1;
        bump(&self.inner.stats.stt_reconnects, 1);
        let handle = self.take_stream();
        let new_id = handle.id;
        let mut new_seg = self.new_segment(handle, utterance);
        for piece in tail.chunks(REPLAY_PIECE_BYTES) {
            send_audio(&self.inner.stats, &mut new_seg, piece.to_vec());
        }
        if was_half_closed {
            new_seg.handle.tx = None;
            new_seg.half_closed_at = Some(Instant::now());
        }
        self.segments.insert(new_id, new_seg);
        let pos = self
            .order
            .iter()
            .position(|&s| s == id)
            .map_or(self.order.len(), |p| p + 1);
        self.order.insert(pos, new_id);
        if self.active == Some(id) {
            self.active = Some(new_id);
        }
        Ok(())
    }

    fn check_failures(&mut self, result: &Result<(), tonic::Status>) -> Result<(), SttError> {
        if self.failures > self.inner.cfg.reconnect_attempts {
            let what = format!("Google STT failed {} times in a row, last", self.failures);
            return Err(match result {
                Ok(()) => SttError::retryable(format!("{what}: stream closed")),
                Err(s) => status_error(&what, s),
            });
        }
        Ok(())
    }

    /// Delivers what is ready, in stream order. `false` if the call went away.
    ///
    /// Finals are held until the utterance ended and all of its streams are done, then delivered
    /// as one `Final`: the session completes the turn on a final that arrives after the utterance
    /// end, and also on one that arrived before it when no partial followed, so a rotated-out
    /// stream's early final would otherwise end the turn without the rest of the utterance.
    async fn deliver(&mut self) -> bool {
        let now = Instant::now();
        let mut out: Vec<SttEvent> = Vec::new();
        if let Some(text) = self
            .pending_partial
            .take()
            .or_else(|| self.debouncer.poll(now))
        {
            out.push(SttEvent::Partial { text });
        }
        while let Some(&front) = self.order.front() {
            let utt = self.segments[&front].utterance;
            let group: Vec<u64> = self
                .order
                .iter()
                .copied()
                .take_while(|id| self.segments[id].utterance == utt)
                .collect();
            let Some(state) = self.utterances.get_mut(&utt) else {
                break;
            };
            if let Some(ended_at) = state.ended_at {
                if !group.iter().all(|id| self.segments[id].done) {
                    break;
                }
                let mut text = String::new();
                for id in &group {
                    join_text(&mut text, &self.segments[id].held);
                }
                // The session appends finals as they come; if this utterance continues one it
                // already has text for (the caller paused), the words must stay apart. A leading
                // space on the turn's first final is trimmed by the session.
                if self.finals > 0 && !text.is_empty() && !text.starts_with(char::is_whitespace) {
                    text.insert(0, ' ');
                }
                if !text.is_empty() {
                    let latency = now.duration_since(ended_at);
                    record(&self.inner.stats.stt_final_ms, latency);
                    self.final_latency_total += latency;
                    self.final_latency_max = self.final_latency_max.max(latency);
                    bump(&self.inner.stats.stt_finals, 1);
                    self.finals += 1;
                    self.debouncer.clear();
                    out.retain(|e| !matches!(e, SttEvent::Partial { .. }));
                    out.push(SttEvent::Final {
                        text: text.trim_end().to_string(),
                    });
                }
                for id in &group {
                    self.segments.remove(id);
                }
                self.order.drain(..group.len());
                self.utterances.remove(&utt);
                continue;
            }
            // Still being spoken: its finals are held (see `deliver`).
            break;
        }
        for event in out {
            if self.events.send(event).await.is_err() {
                return false;
            }
        }
        true
    }

    fn log_totals(&self, result: &Result<(), SttError>) {
        tracing::info!(
            call_sid = %self.call_sid,
            utterances = self.current_utterance,
            finals = self.finals,
            rotations = self.rotations,
            reconnects = self.reconnects,
            audio_bytes = self.audio_bytes,
            final_after_end_avg_ms = (self.final_latency_total.as_millis() as u64)
                .checked_div(self.finals)
                .unwrap_or(0),
            final_after_end_max_ms = self.final_latency_max.as_millis() as u64,
            ok = result.is_ok(),
            "Google STT call totals"
        );
    }
}

fn send_audio(stats: &GoogleStats, seg: &mut Segment, audio: Vec<u8>) {
    seg.sent_bytes += audio.len();
    seg.tail.extend_from_slice(&audio);
    if seg.tail.len() > MAX_REPLAY_BYTES {
        let excess = seg.tail.len() - MAX_REPLAY_BYTES;
        seg.tail.drain(..excess);
        seg.tail_start_ms += (excess / 8) as u64;
        bump(&stats.stt_replay_bytes_dropped, excess as u64);
    }
    let Some(tx) = &seg.handle.tx else {
        return;
    };
    let len = audio.len() as u64;
    let request = speech::StreamingRecognizeRequest {
        streaming_request: Some(StreamingRequest::AudioContent(audio)),
    };
    match tx.try_send(request) {
        Ok(()) => {
            bump(&stats.stt_requests, 1);
            bump(&stats.stt_audio_bytes, len);
        }
        // Full: the connection is stalled; the tail keeps the audio for a replay if it dies.
        // Closed: the stream already ended; its end message triggers the replay.
        Err(_) => bump(&stats.stt_requests_dropped, 1),
    }
}

// ------------------------------------------------------------------ text to speech

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WavError {
    /// The audio ends before the `data` chunk starts.
    #[error("WAV header is truncated")]
    Truncated,
    #[error("not a valid WAV header: {0}")]
    Malformed(#[from] super::audio_file::WavHeaderError),
    #[error(
        "unsupported WAV audio: format {format}, {channels} channel(s), {rate} Hz, {bits} bits"
    )]
    Unsupported {
        format: u16,
        channels: u16,
        rate: u32,
        bits: u16,
    },
}

/// Turns what `SynthesizeSpeech` returned into headerless 8 kHz mu-law. Google wraps MULAW and
/// LINEAR16 in a WAV header, read by the one WAV parser ([`audio_file::parse_wav_header`], which
/// walks the chunks, so extra chunks such as LIST are handled). Audio without a RIFF header is
/// taken as mu-law already.
pub fn wav_to_mulaw(bytes: &[u8]) -> Result<Vec<u8>, WavError> {
    use super::audio_file::{WavEncoding, parse_wav_header};
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Ok(bytes.to_vec());
    }
    let header = parse_wav_header(bytes)
        .map_err(WavError::Malformed)?
        .ok_or(WavError::Truncated)?;
    let start = header.data_offset.min(bytes.len());
    // Streaming encoders write 0 or a placeholder near u32::MAX: the data then runs to the end.
    let end = match header.data_len {
        0 => bytes.len(),
        n => start.saturating_add(n as usize).min(bytes.len()),
    };
    let data = &bytes[start..end];
    match (header.encoding, header.channels, header.sample_rate) {
        (WavEncoding::MuLaw, 1, 8000) => Ok(data.to_vec()),
        (WavEncoding::Pcm16, 1, 8000) => Ok(data
            .chunks_exact(2)
            .map(|s| g711::encode(i16::from_le_bytes([s[0], s[1]])))
            .collect()),
        (encoding, channels, rate) => {
            let (format, bits) = match encoding {
                WavEncoding::Pcm16 => (1, 16),
                WavEncoding::MuLaw => (7, 8),
                WavEncoding::Other { tag, bits } => (tag, bits),
            };
            Err(WavError::Unsupported {
                format,
                channels,
                rate,
                bits,
            })
        }
    }
}

/// Fixed phrases (greeting, fallback, digits prompt) synthesised at start-up, bounded.
struct TtsCache {
    map: HashMap<(String, String), Bytes>,
    order: VecDeque<(String, String)>,
    capacity: usize,
}

impl TtsCache {
    fn get(&self, language: &str, text: &str) -> Option<Bytes> {
        self.map
            .get(&(language.to_string(), text.to_string()))
            .cloned()
    }

    fn insert(&mut self, language: &str, text: &str, audio: Bytes) {
        if self.capacity == 0 {
            return;
        }
        let key = (language.to_string(), text.to_string());
        if self.map.insert(key.clone(), audio).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

pub struct GoogleTts {
    inner: Arc<TtsInner>,
}

struct TtsInner {
    svc: GrpcService,
    cfg: GoogleConfig,
    default_language: String,
    /// The phrases that are cached (only these: replies are not worth keeping).
    fixed_phrases: HashSet<String>,
    cache: Mutex<TtsCache>,
    stats: Arc<GoogleStats>,
}

impl GoogleTts {
    pub async fn new(cfg: &Config, stats: Arc<GoogleStats>) -> Result<Self, GoogleInitError> {
        let g = &cfg.google;
        let svc = GrpcService::new(
            &g.tts_endpoint,
            DEFAULT_TTS_ENDPOINT,
            Duration::from_millis(g.request_timeout_ms),
        )
        .await?;
        let fixed_phrases = [&cfg.call.greeting, &cfg.call.fallback_reply]
            .into_iter()
            .chain(g.tts_cache_phrases.iter())
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        Ok(Self {
            inner: Arc::new(TtsInner {
                svc,
                cfg: g.clone(),
                default_language: cfg.call.language.clone(),
                fixed_phrases,
                cache: Mutex::new(TtsCache {
                    map: HashMap::new(),
                    order: VecDeque::new(),
                    capacity: g.tts_cache_entries,
                }),
                stats,
            }),
        })
    }

    pub fn stats(&self) -> &Arc<GoogleStats> {
        &self.inner.stats
    }

    pub fn cached_phrases(&self) -> usize {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }
}

impl TtsInner {
    fn request(&self, text: &str, language: &str) -> tts::SynthesizeSpeechRequest {
        let voice = &self.cfg.tts_voice;
        let voice_matches = voice
            .to_ascii_lowercase()
            .starts_with(&format!("{}-", language.to_ascii_lowercase()));
        tts::SynthesizeSpeechRequest {
            input: Some(tts::SynthesisInput {
                input_source: Some(tts::synthesis_input::InputSource::Text(text.to_string())),
                ..Default::default()
            }),
            voice: Some(tts::VoiceSelectionParams {
                language_code: language.to_string(),
                name: if voice_matches {
                    voice.clone()
                } else {
                    String::new()
                },
                ..Default::default()
            }),
            audio_config: Some(tts::AudioConfig {
                // MULAW at 8 kHz is what Twilio plays: no transcoding here, only the header goes.
                audio_encoding: tts::AudioEncoding::Mulaw as i32,
                sample_rate_hertz: 8000,
                speaking_rate: self.cfg.tts_speaking_rate,
                effects_profile_id: vec!["telephony-class-application".into()],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn fetch(&self, text: &str, language: &str) -> Result<Bytes, TtsError> {
        bump(&self.stats.tts_requests, 1);
        let mut req = tonic::Request::new(self.request(text, language));
        let timeout = Duration::from_millis(self.cfg.request_timeout_ms);
        req.set_timeout(timeout);
        let call = async {
            self.svc.authorise(&mut req).await?;
            let mut client =
                tts::text_to_speech_client::TextToSpeechClient::new(self.svc.channel());
            client.synthesize_speech(req).await
        };
        let response = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| TtsError::timeout("Google TTS"))?
            .map_err(|s| status_error("Google TTS", &s))?;
        let mulaw = wav_to_mulaw(&response.into_inner().audio_content)
            .map_err(|e| TtsError::fatal(format!("Google TTS audio: {e}")))?;
        Ok(Bytes::from(mulaw))
    }
}

async fn send_chunks(audio: &Bytes, out: &mpsc::Sender<Bytes>) -> bool {
    let mut pos = 0;
    while pos < audio.len() {
        let end = (pos + TTS_MAX_CHUNK_BYTES).min(audio.len());
        if out.send(audio.slice(pos..end)).await.is_err() {
            return false;
        }
        pos = end;
    }
    true
}

impl TextToSpeech for GoogleTts {
    fn name(&self) -> &'static str {
        "google"
    }

    fn warm(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let started = Instant::now();
            let timeout = Duration::from_millis(inner.cfg.request_timeout_ms);
            tokio::time::timeout(timeout, inner.svc.connect())
                .await
                .map_err(|_| {
                    ProviderError::timeout(format!("connecting to {}", inner.svc.url))
                })??;
            let connect_ms = started.elapsed().as_millis() as u64;
            let language = inner.default_language.clone();
            let mut cached = 0;
            for phrase in &inner.fixed_phrases {
                let have = inner
                    .cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&language, phrase)
                    .is_some();
                if have {
                    continue;
                }
                match inner.fetch(phrase, &language).await {
                    Ok(audio) => {
                        inner
                            .cache
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(&language, phrase, audio);
                        cached += 1;
                    }
                    Err(e) => {
                        bump(&inner.stats.tts_errors, 1);
                        tracing::warn!(error = %e, phrase, "could not pre-synthesise a fixed phrase");
                    }
                }
            }
            tracing::info!(
                endpoint = %inner.svc.url,
                connect_ms,
                cached,
                warm_ms = started.elapsed().as_millis() as u64,
                "Google TTS ready"
            );
            Ok(())
        })
    }

    fn synthesize(
        &self,
        text: String,
        language: String,
        audio: mpsc::Sender<Bytes>,
    ) -> BoxFuture<'static, Result<(), TtsError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let language = if language.is_empty() {
                inner.default_language.clone()
            } else {
                language
            };
            let phrase = text.trim();
            let hit = inner
                .cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&language, phrase);
            if let Some(cached) = hit {
                bump(&inner.stats.tts_cache_hits, 1);
                send_chunks(&cached, &audio).await;
                return Ok(());
            }
            let started = Instant::now();
            let mulaw = match inner.fetch(phrase, &language).await {
                Ok(m) => m,
                Err(e) => {
                    bump(&inner.stats.tts_errors, 1);
                    return Err(e);
                }
            };
            if inner.fixed_phrases.contains(phrase) {
                inner
                    .cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(&language, phrase, mulaw.clone());
            }
            if !mulaw.is_empty() {
                record(&inner.stats.tts_first_audio_ms, started.elapsed());
            }
            send_chunks(&mulaw, &audio).await;
            Ok(())
        })
    }
}

/// Builds the Google providers and warms them; the caller falls back if this fails.
/// Finding credentials can probe the metadata server; never let start-up hang on it.
fn init_deadline(cfg: &Config) -> Duration {
    Duration::from_millis(cfg.google.request_timeout_ms.max(1) * 2)
}

pub async fn stt_from_config(
    cfg: &Config,
    stats: Arc<GoogleStats>,
) -> Result<GoogleStt, GoogleStartError> {
    let stt = tokio::time::timeout(init_deadline(cfg), GoogleStt::new(cfg, stats))
        .await
        .map_err(|_| GoogleStartError::CredentialsTimedOut)??;
    stt.warm().await?;
    Ok(stt)
}

pub async fn tts_from_config(
    cfg: &Config,
    stats: Arc<GoogleStats>,
) -> Result<GoogleTts, GoogleStartError> {
    let tts = tokio::time::timeout(init_deadline(cfg), GoogleTts::new(cfg, stats))
        .await
        .map_err(|_| GoogleStartError::CredentialsTimedOut)??;
    tts.warm().await?;
    Ok(tts)
}

/// Why a configured Google provider could not start.
#[derive(Debug, thiserror::Error)]
pub enum GoogleStartError {
    #[error("looking for Google credentials timed out")]
    CredentialsTimedOut,
    #[error(transparent)]
    Init(#[from] GoogleInitError),
    #[error("warm-up failed: {0}")]
    Warm(#[from] ProviderError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake_google::wav_file;

    #[test]
    fn grpc_statuses_map_to_failure_kinds() {
        use tonic::{Code, Status};
        let kind = |code| status_error("Google STT", &Status::new(code, "x")).kind();
        let retryable = FailureKind::Retryable { retry_after: None };
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Internal,
        ] {
            assert_eq!(kind(code), retryable, "{code:?}");
        }
        assert_eq!(kind(Code::DeadlineExceeded), FailureKind::Timeout);
        for code in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::NotFound,
        ] {
            assert_eq!(kind(code), FailureKind::Fatal, "{code:?}");
        }
    }

    #[test]
    fn debouncer_delivers_the_newest_partial_once_per_window() {
        let t0 = Instant::now();
        let mut d = PartialDebouncer::new(Duration::from_millis(50));
        assert_eq!(d.push(t0, "a".into()), None);
        assert_eq!(d.push(t0 + Duration::from_millis(10), "ab".into()), None);
        assert_eq!(d.poll(t0 + Duration::from_millis(49)), None);
        assert_eq!(d.deadline(), Some(t0 + Duration::from_millis(50)));
        assert_eq!(
            d.poll(t0 + Duration::from_millis(50)).as_deref(),
            Some("ab")
        );
        assert_eq!(d.poll(t0 + Duration::from_millis(200)), None);
        let mut zero = PartialDebouncer::new(Duration::ZERO);
        assert_eq!(zero.push(t0, "x".into()).as_deref(), Some("x"));
    }

    #[test]
    fn wav_header_is_parsed_not_skipped() {
        let data: Vec<u8> = (0..=255u8).collect();
        for extra in [false, true] {
            let wav = wav_file(7, 8, &data, extra);
            assert_eq!(wav_to_mulaw(&wav).unwrap(), data, "extra chunk: {extra}");
        }
        // LINEAR16 is encoded to mu-law.
        let pcm: Vec<i16> = vec![0, 1000, -1000, 32000];
        let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        let expected: Vec<u8> = pcm.iter().map(|&s| g711::encode(s)).collect();
        assert_eq!(
            wav_to_mulaw(&wav_file(1, 16, &bytes, true)).unwrap(),
            expected
        );
        // Headerless audio passes through; broken or foreign WAVs are errors, not noise.
        assert_eq!(wav_to_mulaw(&[1, 2, 3]).unwrap(), vec![1, 2, 3]);
        let wav = wav_file(7, 8, &data, false);
        assert_eq!(wav_to_mulaw(&wav[..20]), Err(WavError::Truncated));
        assert_eq!(wav_to_mulaw(&wav[..36]), Err(WavError::Truncated));
        // A `data` chunk before any `fmt ` chunk cannot be read.
        let mut data_first = wav[..12].to_vec();
        data_first.extend_from_slice(b"data");
        data_first.extend_from_slice(&4u32.to_le_bytes());
        data_first.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            wav_to_mulaw(&data_first),
            Err(WavError::Malformed(_))
        ));
        let mut wrong_rate = wav_file(7, 8, &data, false);
        wrong_rate[24..28].copy_from_slice(&16000u32.to_le_bytes());
        assert!(matches!(
            wav_to_mulaw(&wrong_rate),
            Err(WavError::Unsupported { rate: 16000, .. })
        ));
    }

    #[test]
    fn joined_finals_keep_words_apart() {
        let mut s = String::new();
        join_text(&mut s, "שלום");
        join_text(&mut s, "עולם");
        join_text(&mut s, " וכו");
        assert_eq!(s, "שלום עולם וכו");
    }

    #[test]
    fn silence_detection_on_mulaw_frames() {
        assert!(is_silent(&[0xFF; 160]));
        let loud: Vec<u8> = (0..160)
            .map(|i| g711::encode(if i % 2 == 0 { 8000 } else { -8000 }))
            .collect();
        assert!(!is_silent(&loud));
    }
}
