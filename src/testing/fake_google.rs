//! Fake Google Cloud Speech-to-Text v1 (`StreamingRecognize`) and Text-to-Speech v1
//! (`SynthesizeSpeech`) servers on 127.0.0.1, speaking real gRPC with the vendor's protobuf types.
//!
//! The speech fake enforces the protocol rules a real server enforces (config first and only
//! first, at most 25 KB of audio per request, a stream-duration limit) by answering like Google
//! does (`INVALID_ARGUMENT`, `OUT_OF_RANGE`), records everything it received for assertions, and
//! recognises a script: per utterance some partial texts (one per `partial_every_bytes` of audio)
//! and a final text, returned when the client half-closes. Faults (an `UNAVAILABLE` or
//! `OUT_OF_RANGE` after some audio, a dropped stream) are queued and taken, in order, by the
//! streams that receive audio (pre-opened idle streams take none); every open can be refused.
//!
//! The TTS fake returns a WAV-headered 8 kHz tone in the encoding asked for (MULAW or LINEAR16),
//! like Google does, with a configurable latency and queued failures.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1 as speech;
use googleapis_tonic_google_cloud_texttospeech_v1::google::cloud::texttospeech::v1 as tts;
use speech::streaming_recognize_request::StreamingRequest;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::{Request, Response, Status, Streaming};

/// Google's per-request audio limit.
pub const MAX_AUDIO_REQUEST_BYTES: usize = 25 * 1024;

const SPEECH_PATH: &str = "/google.cloud.speech.v1.Speech/StreamingRecognize";
const TTS_PATH: &str = "/google.cloud.texttospeech.v1.TextToSpeech/SynthesizeSpeech";

/// What the fake "hears" in one utterance (one stream that receives audio).
#[derive(Debug, Clone, Default)]
pub struct ScriptedUtterance {
    pub partials: Vec<String>,
    pub final_text: String,
}

impl ScriptedUtterance {
    pub fn new(partials: &[&str], final_text: &str) -> Self {
        Self {
            partials: partials.iter().map(|s| s.to_string()).collect(),
            final_text: final_text.into(),
        }
    }
}

/// A fault for one stream, taken in order from the queue when the stream gets its first audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFault {
    /// Behave normally.
    None,
    /// Answer `UNAVAILABLE` after this much audio (mid-utterance).
    UnavailableAfterAudio(usize),
    /// End the response stream without a status error and without a final, after this much audio.
    DropAfterAudio(usize),
    /// Answer `OUT_OF_RANGE` ("Exceeded maximum allowed stream duration") after this much audio:
    /// the duration limit, at a deterministic point.
    OutOfRangeAfterAudio(usize),
}

/// What one stream received.
#[derive(Debug, Clone, Default)]
pub struct StreamRecord {
    pub config: Option<speech::StreamingRecognitionConfig>,
    /// Sizes of the audio requests, in order.
    pub request_sizes: Vec<usize>,
    /// All audio bytes, concatenated.
    pub audio: Vec<u8>,
    /// The client half-closed (as opposed to the stream failing or being cancelled).
    pub half_closed: bool,
    /// Protocol violations this stream committed (answered with `INVALID_ARGUMENT`).
    pub violations: Vec<String>,
    /// Which scripted utterance the stream recognised, if it got audio.
    pub utterance: Option<usize>,
    /// What the stream ended with, e.g. `final`, `OUT_OF_RANGE`, `UNAVAILABLE`.
    pub outcome: String,
}

#[derive(Debug, Default)]
struct SpeechState {
    script: VecDeque<(usize, ScriptedUtterance)>,
    next_utterance: usize,
    faults: VecDeque<StreamFault>,
    /// Every stream open fails with `UNAVAILABLE` while set.
    always_unavailable: bool,
    streams: Vec<StreamRecord>,
}

/// Settings of the speech fake.
#[derive(Debug, Clone)]
pub struct SpeechFakeConfig {
    /// A partial is sent after each this many audio bytes of an utterance.
    pub partial_every_bytes: usize,
    /// Streams older than this fail with `OUT_OF_RANGE` (Google: 5 minutes).
    pub max_stream_duration: Duration,
    /// Delay between the half-close and the final result.
    pub final_delay: Duration,
}

impl Default for SpeechFakeConfig {
    fn default() -> Self {
        Self {
            partial_every_bytes: 1600,
            max_stream_duration: Duration::from_secs(300),
            final_delay: Duration::from_millis(10),
        }
    }
}

/// Settings and recordings of the TTS fake.
#[derive(Debug, Default)]
struct TtsState {
    latency: Duration,
    failures: usize,
    /// Put a LIST chunk before `data`, as some encoders do, to prove the parser walks chunks.
    extra_chunk: bool,
    requests: Vec<TtsRecord>,
}

#[derive(Debug, Clone)]
pub struct TtsRecord {
    pub text: String,
    pub language_code: String,
    pub voice_name: String,
    pub audio_encoding: i32,
    pub sample_rate_hertz: i32,
}

struct Shared {
    speech_cfg: SpeechFakeConfig,
    speech: Mutex<SpeechState>,
    tts: Mutex<TtsState>,
}

impl Shared {
    fn speech(&self) -> std::sync::MutexGuard<'_, SpeechState> {
        self.speech.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn tts(&self) -> std::sync::MutexGuard<'_, TtsState> {
        self.tts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Both fakes on one loopback port (`http://ADDR` for `[google] stt_endpoint` and `tts_endpoint`).
pub struct FakeGoogle {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeGoogle {
    pub async fn start(speech_cfg: SpeechFakeConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            speech_cfg,
            speech: Mutex::new(SpeechState::default()),
            tts: Mutex::new(TtsState::default()),
        });
        // Small gRPC frames both ways: Nagle + delayed ACK would add ~40 ms to each exchange.
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(SpeechService(shared.clone()))
            .add_service(TtsService(shared.clone()));
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming(incoming).await {
                tracing::warn!(error = %e, "fake Google server stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends utterances to what the speech fake recognises, in order of streams that get audio.
    pub fn script(&self, utterances: impl IntoIterator<Item = ScriptedUtterance>) {
        let mut s = self.shared.speech();
        for u in utterances {
            let i = s.next_utterance;
            s.next_utterance += 1;
            s.script.push_back((i, u));
        }
    }

    /// Queues faults for the next streams that receive audio, one per stream.
    pub fn fault_next_streams(&self, faults: impl IntoIterator<Item = StreamFault>) {
        self.shared.speech().faults.extend(faults);
    }

    pub fn set_always_unavailable(&self, on: bool) {
        self.shared.speech().always_unavailable = on;
    }

    pub fn streams(&self) -> Vec<StreamRecord> {
        self.shared.speech().streams.clone()
    }

    /// StreamingRecognize calls received so far.
    pub fn stream_opens(&self) -> usize {
        self.shared.speech().streams.len()
    }

    pub fn violations(&self) -> Vec<String> {
        self.shared
            .speech()
            .streams
            .iter()
            .flat_map(|s| s.violations.clone())
            .collect()
    }

    pub fn set_tts_latency(&self, latency: Duration) {
        self.shared.tts().latency = latency;
    }

    /// The next `n` SynthesizeSpeech calls fail with `UNAVAILABLE`.
    pub fn fail_next_tts(&self, n: usize) {
        self.shared.tts().failures = n;
    }

    pub fn set_tts_extra_wav_chunk(&self, on: bool) {
        self.shared.tts().extra_chunk = on;
    }

    pub fn tts_requests(&self) -> Vec<TtsRecord> {
        self.shared.tts().requests.clone()
    }
}

// ------------------------------------------------------------------ gRPC plumbing

/// Routes by method path, as tonic-generated servers do (the crate ships clients only).
macro_rules! named_service {
    ($ty:ident, $name:literal) => {
        #[derive(Clone)]
        struct $ty(Arc<Shared>);
        impl tonic::server::NamedService for $ty {
            const NAME: &'static str = $name;
        }
    };
}
named_service!(SpeechService, "google.cloud.speech.v1.Speech");
named_service!(TtsService, "google.cloud.texttospeech.v1.TextToSpeech");

type HttpResponse = http::Response<tonic::body::Body>;

impl Service<http::Request<tonic::body::Body>> for SpeechService {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<HttpResponse, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move {
            if req.uri().path() != SPEECH_PATH {
                return Ok(Status::unimplemented(req.uri().path().to_string()).into_http());
            }
            let codec = tonic_prost::ProstCodec::<
                speech::StreamingRecognizeResponse,
                speech::StreamingRecognizeRequest,
            >::default();
            Ok(tonic::server::Grpc::new(codec)
                .streaming(RecognizeHandler(shared), req)
                .await)
        })
    }
}

impl Service<http::Request<tonic::body::Body>> for TtsService {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<HttpResponse, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move {
            if req.uri().path() != TTS_PATH {
                return Ok(Status::unimplemented(req.uri().path().to_string()).into_http());
            }
            let codec = tonic_prost::ProstCodec::<
                tts::SynthesizeSpeechResponse,
                tts::SynthesizeSpeechRequest,
            >::default();
            Ok(tonic::server::Grpc::new(codec)
                .unary(SynthesizeHandler(shared), req)
                .await)
        })
    }
}

type Responses = ReceiverStream<Result<speech::StreamingRecognizeResponse, Status>>;

struct RecognizeHandler(Arc<Shared>);

impl Service<Request<Streaming<speech::StreamingRecognizeRequest>>> for RecognizeHandler {
    type Response = Response<Responses>;
    type Error = Status;
    type Future = BoxFuture<Response<Responses>, Status>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Streaming<speech::StreamingRecognizeRequest>>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move {
            let (refuse, index) = {
                let mut s = shared.speech();
                s.streams.push(StreamRecord::default());
                (s.always_unavailable, s.streams.len() - 1)
            };
            if refuse {
                shared.speech().streams[index].outcome = "UNAVAILABLE".into();
                return Err(Status::unavailable("fake: service unavailable"));
            }
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(recognize(shared, index, req.into_inner(), tx));
            Ok(Response::new(ReceiverStream::new(rx)))
        })
    }
}

/// One recognition result as Google sends it: a transcript ending at `end_ms` of stream audio.
pub fn transcript_result(
    text: &str,
    is_final: bool,
    end_ms: u64,
) -> speech::StreamingRecognitionResult {
    speech::StreamingRecognitionResult {
        alternatives: vec![speech::SpeechRecognitionAlternative {
            transcript: text.to_string(),
            confidence: if is_final { 0.9 } else { 0.0 },
            words: Vec::new(),
        }],
        is_final,
        stability: if is_final { 0.0 } else { 0.5 },
        result_end_time: Some(prost_types_duration(end_ms)),
        channel_tag: 0,
        language_code: String::new(),
    }
}

fn prost_types_duration(ms: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

pub fn response(result: speech::StreamingRecognitionResult) -> speech::StreamingRecognizeResponse {
    speech::StreamingRecognizeResponse {
        results: vec![result],
        ..Default::default()
    }
}

/// A loud 20 ms mu-law frame whose first two bytes encode its sequence number, so lost,
/// duplicated or reordered audio shows up when what a recogniser received is compared with what
/// was sent.
pub fn numbered_speech_frame(n: usize) -> [u8; 160] {
    let mut f = [0u8; 160];
    for (i, b) in f.iter_mut().enumerate() {
        let s = if i % 2 == 0 { 9000 } else { -9000 };
        *b = crate::voice::g711::encode(s);
    }
    f[0] = (n % 256) as u8;
    f[1] = (n / 256) as u8;
    f
}

/// 20 ms of mu-law silence.
pub const SILENT_FRAME: [u8; 160] = [0xFF; 160];

/// One stream's life: validate requests, recognise the script, obey faults and the duration limit.
async fn recognize(
    shared: Arc<Shared>,
    index: usize,
    mut requests: Streaming<speech::StreamingRecognizeRequest>,
    tx: mpsc::Sender<Result<speech::StreamingRecognizeResponse, Status>>,
) {
    let cfg = shared.speech_cfg.clone();
    let deadline = tokio::time::Instant::now() + cfg.max_stream_duration;
    let mut first = true;
    let mut audio_bytes = 0usize;
    let mut utterance: Option<ScriptedUtterance> = None;
    let mut partials_sent = 0usize;
    let mut fault = StreamFault::None;
    let end = |outcome: &str| {
        shared.speech().streams[index].outcome = outcome.to_string();
    };
    let violation = |what: String| {
        let mut s = shared.speech();
        s.streams[index].violations.push(what.clone());
        s.streams[index].outcome = "INVALID_ARGUMENT".into();
        Status::invalid_argument(what)
    };
    loop {
        let next = tokio::select! {
            next = requests.message() => next,
            _ = tokio::time::sleep_until(deadline) => {
                end("OUT_OF_RANGE");
                let _ = tx.send(Err(Status::out_of_range(
                    "Exceeded maximum allowed stream duration of 305 seconds.",
                ))).await;
                return;
            }
        };
        let request = match next {
            Ok(Some(r)) => r,
            Ok(None) => break, // half-close
            Err(_) => {
                end("cancelled");
                return;
            }
        };
        match (first, request.streaming_request) {
            (true, Some(StreamingRequest::StreamingConfig(c))) => {
                shared.speech().streams[index].config = Some(c);
            }
            (true, _) => {
                let status = violation("first request must carry streaming_config only".into());
                let _ = tx.send(Err(status)).await;
                return;
            }
            (false, Some(StreamingRequest::AudioContent(audio))) => {
                if audio.len() > MAX_AUDIO_REQUEST_BYTES {
                    let status = violation(format!(
                        "audio_content of {} bytes exceeds the 25 KB limit",
                        audio.len()
                    ));
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                audio_bytes += audio.len();
                {
                    let mut s = shared.speech();
                    let rec = &mut s.streams[index];
                    rec.request_sizes.push(audio.len());
                    rec.audio.extend_from_slice(&audio);
                    if audio_bytes == audio.len() {
                        // First audio: this stream is recognising the next utterance.
                        fault = s.faults.pop_front().unwrap_or(StreamFault::None);
                        if let Some((i, u)) = s.script.pop_front() {
                            s.streams[index].utterance = Some(i);
                            utterance = Some(u);
                        }
                    }
                }
                match fault {
                    StreamFault::UnavailableAfterAudio(n) if audio_bytes >= n => {
                        end("UNAVAILABLE");
                        let _ = tx
                            .send(Err(Status::unavailable("fake: backend went away")))
                            .await;
                        return;
                    }
                    StreamFault::OutOfRangeAfterAudio(n) if audio_bytes >= n => {
                        end("OUT_OF_RANGE");
                        let _ = tx
                            .send(Err(Status::out_of_range(
                                "Exceeded maximum allowed stream duration of 305 seconds.",
                            )))
                            .await;
                        return;
                    }
                    StreamFault::DropAfterAudio(n) if audio_bytes >= n => {
                        end("dropped");
                        return;
                    }
                    _ => {}
                }
                if let Some(u) = &utterance {
                    let due = audio_bytes / cfg.partial_every_bytes.max(1);
                    while partials_sent < due.min(u.partials.len()) {
                        let text = &u.partials[partials_sent];
                        partials_sent += 1;
                        let result = transcript_result(text, false, (audio_bytes / 8) as u64);
                        if tx.send(Ok(response(result))).await.is_err() {
                            return;
                        }
                    }
                }
            }
            (false, _) => {
                let status = violation("only the first request may carry streaming_config".into());
                let _ = tx.send(Err(status)).await;
                return;
            }
        }
        first = false;
    }
    shared.speech().streams[index].half_closed = true;
    if let Some(u) = utterance {
        tokio::time::sleep(cfg.final_delay).await;
        let result = transcript_result(&u.final_text, true, (audio_bytes / 8) as u64);
        let _ = tx.send(Ok(response(result))).await;
        end("final");
    } else {
        end("empty");
    }
}

struct SynthesizeHandler(Arc<Shared>);

impl Service<Request<tts::SynthesizeSpeechRequest>> for SynthesizeHandler {
    type Response = Response<tts::SynthesizeSpeechResponse>;
    type Error = Status;
    type Future = BoxFuture<Response<tts::SynthesizeSpeechResponse>, Status>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tts::SynthesizeSpeechRequest>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move {
            let req = req.into_inner();
            let text = match req.input.and_then(|i| i.input_source) {
                Some(tts::synthesis_input::InputSource::Text(t)) => t,
                _ => return Err(Status::invalid_argument("fake: only text input")),
            };
            let voice = req.voice.unwrap_or_default();
            let audio = req.audio_config.unwrap_or_default();
            let (latency, fail, extra_chunk) = {
                let mut t = shared.tts();
                t.requests.push(TtsRecord {
                    text: text.clone(),
                    language_code: voice.language_code.clone(),
                    voice_name: voice.name.clone(),
                    audio_encoding: audio.audio_encoding,
                    sample_rate_hertz: audio.sample_rate_hertz,
                });
                let fail = t.failures > 0;
                t.failures = t.failures.saturating_sub(1);
                (t.latency, fail, t.extra_chunk)
            };
            tokio::time::sleep(latency).await;
            if fail {
                return Err(Status::unavailable("fake: synthesis backend unavailable"));
            }
            if audio.sample_rate_hertz != 8000 {
                return Err(Status::invalid_argument("fake: only 8000 Hz"));
            }
            // 60 ms of tone per character, at least 300 ms: several 1600-byte chunks per phrase.
            let samples = (text.chars().count() * 480).max(2400);
            let tone: Vec<i16> = (0..samples)
                .map(|i| {
                    let t = i as f64 / 8000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                })
                .collect();
            let wav = match tts::AudioEncoding::try_from(audio.audio_encoding) {
                Ok(tts::AudioEncoding::Mulaw) => {
                    let data: Vec<u8> = tone
                        .iter()
                        .map(|&s| crate::voice::g711::encode(s))
                        .collect();
                    wav_file(7, 8, &data, extra_chunk)
                }
                Ok(tts::AudioEncoding::Linear16) => {
                    let data: Vec<u8> = tone.iter().flat_map(|s| s.to_le_bytes()).collect();
                    wav_file(1, 16, &data, extra_chunk)
                }
                _ => return Err(Status::invalid_argument("fake: MULAW or LINEAR16 only")),
            };
            Ok(Response::new(tts::SynthesizeSpeechResponse {
                audio_content: wav,
            }))
        })
    }
}

/// A mono 8 kHz WAV file as Google returns for MULAW (format 7) and LINEAR16 (format 1).
pub fn wav_file(format: u16, bits: u16, data: &[u8], extra_chunk: bool) -> Vec<u8> {
    let block_align = bits / 8;
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&format.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&8000u32.to_le_bytes());
    fmt.extend_from_slice(&(8000 * block_align as u32).to_le_bytes());
    fmt.extend_from_slice(&block_align.to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    let mut body = Vec::new();
    body.extend_from_slice(b"WAVE");
    let mut chunk = |id: &[u8; 4], payload: &[u8]| {
        body.extend_from_slice(id);
        body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        body.extend_from_slice(payload);
        if payload.len() % 2 == 1 {
            body.push(0);
        }
    };
    chunk(b"fmt ", &fmt);
    if extra_chunk {
        chunk(b"LIST", b"INFOISFT\x06\0\0\0fake\0\0");
    }
    chunk(b"data", data);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}
