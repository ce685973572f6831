use super::manager::{Limits, Output, Reason, StreamId, StreamManager};
#[allow(unused_imports)]
use super::*;
use tracing::Instrument;

// ------------------------------------------------------------------ speech to text

pub struct GoogleStt {
    pub(super) inner: Arc<SttInner>,
}

pub(super) struct SttInner {
    pub(super) svc: GrpcService,
    pub(super) cfg: GoogleConfig,
    pub(super) default_language: String,
    /// `[turn] stt_timeout_ms`: a half-closed stream gets this long to deliver its final.
    pub(super) finish_timeout: Duration,
    pub(super) parked: Mutex<HashMap<String, (Instant, StreamHandle, StreamRx)>>,
    pub(super) stats: Arc<GoogleStats>,
    pub(super) next_id: AtomicU64,
}

pub(super) enum StreamMsg {
    Response(speech::StreamingRecognizeResponse),
    End(Result<(), tonic::Status>),
}

pub(super) type StreamRx = mpsc::Receiver<StreamMsg>;
/// A stream's messages, tagged with the manager's id for it.
pub(super) type Tagged = Pin<Box<dyn Stream<Item = (StreamId, StreamMsg)> + Send>>;

/// Our side of one `StreamingRecognize` call. Dropping it cancels the call.
pub(super) struct StreamHandle {
    /// Process-wide, for the parked-stream expiry; a call's manager numbers its streams itself.
    pub(super) id: u64,
    /// Requests to the server; `None` once half-closed.
    pub(super) tx: Option<mpsc::Sender<speech::StreamingRecognizeRequest>>,
    pub(super) task: JoinHandle<()>,
    pub(super) opened: Instant,
    pub(super) language: String,
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
    pub(super) fn recognition_config(&self, language: &str) -> speech::StreamingRecognitionConfig {
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
    pub(super) fn open_stream(self: &Arc<Self>, language: &str) -> (StreamHandle, StreamRx) {
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

    pub(super) fn take_parked(
        &self,
        call_sid: &str,
        language: &str,
    ) -> Option<(StreamHandle, StreamRx)> {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = Duration::from_millis(self.cfg.prepared_stream_ttl_ms);
        let (at, handle, rx) = parked.remove(call_sid)?;
        (at.elapsed() < ttl && handle.language == language).then_some((handle, rx))
    }
}

pub(super) async fn run_stream(
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
            inner.svc.connect_within(timeout).await?;
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
        let span = tracing::info_span!("google_stt", call_sid = %call.call_sid);
        Box::pin(
            async move {
                let language = if call.language.is_empty() {
                    inner.default_language.clone()
                } else {
                    call.language.clone()
                };
                let parked = inner.take_parked(&call.call_sid, &language);
                let mut shell = Shell::new(inner, language);
                if let Some((handle, rx)) = parked {
                    let id = shell.manager.adopt_standby(handle.opened.into_std());
                    shell.adopt(id, handle, rx);
                }
                shell.manager.start(Instant::now().into_std());
                let result = shell.run(input, &events).await;
                shell.log_totals(&call.call_sid, &result);
                result
            }
            .instrument(span),
        )
    }
}

/// The tokio shell around the [`StreamManager`]: it owns the gRPC streams, reads the clock and
/// waits; every decision is the manager's (see `manager.rs` for the run loop).
struct Shell {
    inner: Arc<SttInner>,
    language: String,
    manager: StreamManager,
    streams: HashMap<StreamId, StreamHandle>,
    incoming: SelectAll<Tagged>,
}

impl Shell {
    fn new(inner: Arc<SttInner>, language: String) -> Self {
        let limits = Limits::new(&inner.cfg, inner.finish_timeout);
        let manager = StreamManager::new(limits, inner.stats.clone(), fastrand::u64(..));
        Self {
            inner,
            language,
            manager,
            streams: HashMap::new(),
            incoming: SelectAll::new(),
        }
    }

    fn adopt(&mut self, id: StreamId, handle: StreamHandle, rx: StreamRx) {
        self.incoming
            .push(Box::pin(ReceiverStream::new(rx).map(move |m| (id, m))));
        self.streams.insert(id, handle);
    }

    async fn run(
        &mut self,
        mut input: mpsc::Receiver<SttInput>,
        events: &mpsc::Sender<SttEvent>,
    ) -> Result<(), SttError> {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        loop {
            if !self.carry_out(events).await {
                return Ok(()); // the call went away
            }
            let timer = self.manager.poll_timeout();
            let deadline = timer.map(|(at, _)| Instant::from_std(at));
            tokio::select! {
                msg = input.recv() => match msg {
                    Some(msg) => self.manager.handle_input(Instant::now().into_std(), msg)?,
                    None => return Ok(()),
                },
                Some((id, msg)) = self.incoming.next() => {
                    let now = Instant::now().into_std();
                    match msg {
                        StreamMsg::Response(response) => self.manager.handle_response(now, id, response)?,
                        StreamMsg::End(result) => self.manager.handle_stream_end(now, id, result)?,
                    }
                }
                _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    let now = Instant::now();
                    if let Some((_, reason)) = timer {
                        let late = now.saturating_duration_since(deadline.unwrap_or(now));
                        tracing::debug!(reason = reason.as_str(), late_us = late.as_micros() as u64, "Google STT timer");
                    }
                    self.manager.handle_timeout(now.into_std());
                }
            }
        }
    }

    /// Carries out the manager's outputs in order; `false` if the call went away.
    async fn carry_out(&mut self, events: &mpsc::Sender<SttEvent>) -> bool {
        while let Some(output) = self.manager.poll_output() {
            match output {
                Output::Open(id) => {
                    let (handle, rx) = self.inner.open_stream(&self.language);
                    self.adopt(id, handle, rx);
                }
                Output::Audio { stream, audio } => {
                    if let Some(handle) = self.streams.get(&stream) {
                        send_audio(&self.inner.stats, handle, audio);
                    }
                }
                Output::HalfClose(id) => {
                    if let Some(handle) = self.streams.get_mut(&id) {
                        handle.tx = None;
                    }
                }
                // Dropping the handle cancels the call if it still runs.
                Output::Release(id) => drop(self.streams.remove(&id)),
                Output::Event(event) => {
                    if events.send(event).await.is_err() {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn log_totals(&self, call_sid: &str, result: &Result<(), SttError>) {
        let t = self.manager.totals();
        tracing::info!(
            call_sid,
            utterances = t.utterances,
            finals = t.finals,
            rotations = t.rotations,
            reconnects = t.reconnects,
            audio_bytes = t.audio_bytes,
            final_after_end_avg_ms = (t.final_latency_total.as_millis() as u64)
                .checked_div(t.finals)
                .unwrap_or(0),
            final_after_end_max_ms = t.final_latency_max.as_millis() as u64,
            wakeups_partial_debounce = t.wakeups(Reason::PartialDebounce),
            wakeups_standby_retry = t.wakeups(Reason::StandbyRetry),
            wakeups_standby_refresh = t.wakeups(Reason::StandbyRefresh),
            wakeups_final_wait = t.wakeups(Reason::FinalWait),
            ok = result.is_ok(),
            "Google STT call totals"
        );
    }
}

/// Queues one audio request without waiting: a stalled connection must not stall the call.
fn send_audio(stats: &GoogleStats, handle: &StreamHandle, audio: Vec<u8>) {
    let Some(tx) = &handle.tx else {
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
        // Full: the connection is stalled; the manager keeps the audio for a replay if it dies.
        // Closed: the stream already ended; its end message triggers the replay.
        Err(_) => bump(&stats.stt_requests_dropped, 1),
    }
}
