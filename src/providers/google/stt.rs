#[allow(unused_imports)]
use super::*;

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
pub(super) type Tagged = Pin<Box<dyn Stream<Item = (u64, StreamMsg)> + Send>>;

/// Our side of one `StreamingRecognize` call. Dropping it cancels the call.
pub(super) struct StreamHandle {
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
    pub(super) window: Duration,
    pub(super) pending: Option<(String, Instant)>,
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
pub(super) struct Segment {
    pub(super) handle: StreamHandle,
    pub(super) utterance: u64,
    pub(super) done: bool,
    /// Final text received but not delivered yet (an earlier segment is still open).
    pub(super) held: String,
    /// Audio after the last final, for replay if the stream dies.
    pub(super) tail: Vec<u8>,
    /// Stream audio time (ms) at the start of `tail`.
    pub(super) tail_start_ms: u64,
    /// Audio bytes sent on this stream.
    pub(super) sent_bytes: usize,
    pub(super) half_closed_at: Option<Instant>,
    pub(super) got_result: bool,
}

pub(super) struct UtteranceState {
    pub(super) ended_at: Option<Instant>,
}

pub(super) struct Recognizer {
    pub(super) inner: Arc<SttInner>,
    pub(super) language: String,
    pub(super) call_sid: String,
    pub(super) events: mpsc::Sender<SttEvent>,
    pub(super) incoming: SelectAll<Tagged>,
    pub(super) standby: Option<StreamHandle>,
    pub(super) standby_retry_at: Option<Instant>,
    pub(super) segments: HashMap<u64, Segment>,
    /// Segment ids, oldest first: results are delivered in this order.
    pub(super) order: VecDeque<u64>,
    pub(super) utterances: HashMap<u64, UtteranceState>,
    pub(super) active: Option<u64>,
    pub(super) current_utterance: u64,
    pub(super) batch: Vec<u8>,
    pub(super) batch_bytes: usize,
    pub(super) debouncer: PartialDebouncer,
    /// A partial to deliver at once (debounce window 0).
    pub(super) pending_partial: Option<String>,
    pub(super) failures: u32,
    // per-call totals, logged at the end
    pub(super) finals: u64,
    pub(super) rotations: u64,
    pub(super) reconnects: u64,
    pub(super) audio_bytes: u64,
    pub(super) final_latency_total: Duration,
    pub(super) final_latency_max: Duration,
}

pub(super) fn join_text(into: &mut String, piece: &str) {
    if piece.is_empty() {
        return;
    }
    if !into.is_empty() && !piece.starts_with(char::is_whitespace) {
        into.push(' ');
    }
    into.push_str(piece);
}

pub(super) fn is_silent(frame: &[u8]) -> bool {
    let sum: u32 = frame
        .iter()
        .map(|&b| g711::decode(b).unsigned_abs() as u32)
        .sum();
    sum / (frame.len().max(1) as u32) < SILENCE_MEAN_ABS
}

pub(super) fn duration_ms(d: &Option<prost_types::Duration>) -> Option<u64> {
    d.as_ref()
        .map(|d| d.seconds.max(0) as u64 * 1000 + d.nanos.max(0) as u64 / 1_000_000)
}

impl Recognizer {
    pub(super) fn new(
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

    pub(super) fn track(&mut self, id: u64, rx: StreamRx) {
        self.incoming
            .push(Box::pin(ReceiverStream::new(rx).map(move |m| (id, m))));
    }

    pub(super) fn set_standby(&mut self, handle: StreamHandle, rx: StreamRx) {
        self.track(handle.id, rx);
        self.standby = Some(handle);
    }

    pub(super) fn open_standby(&mut self) {
        let (handle, rx) = self.inner.open_stream(&self.language);
        self.standby_retry_at = None;
        self.set_standby(handle, rx);
    }

    /// The standby if there is one (a new one is opened behind it), else a fresh stream.
    pub(super) fn take_stream(&mut self) -> StreamHandle {
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

    pub(super) fn new_segment(&self, handle: StreamHandle, utterance: u64) -> Segment {
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

    pub(super) async fn run(
        &mut self,
        mut input: mpsc::Receiver<SttInput>,
    ) -> Result<(), SttError> {
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
    pub(super) fn standby_max_age(&self) -> Duration {
        Duration::from_millis((self.inner.cfg.rotate_after_ms / 2).max(1))
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
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

    pub(super) fn on_timer(&mut self) -> Result<(), SttError> {
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

    pub(super) fn on_audio(&mut self, frame: &[u8]) {
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
    pub(super) fn rotate(&mut self, old: u64) {
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

    pub(super) fn flush_batch(&mut self) {
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

    pub(super) fn on_utterance_end(&mut self) {
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

    pub(super) fn on_discarded(&mut self) {
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

    pub(super) fn on_stream_msg(&mut self, id: u64, msg: StreamMsg) -> Result<(), SttError> {
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

    pub(super) fn on_results(&mut self, id: u64, results: Vec<speech::StreamingRecognitionResult>) {
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

    pub(super) fn on_stream_end(
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

    pub(super) fn check_failures(
        &mut self,
        result: &Result<(), tonic::Status>,
    ) -> Result<(), SttError> {
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
    pub(super) async fn deliver(&mut self) -> bool {
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

    pub(super) fn log_totals(&self, result: &Result<(), SttError>) {
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

pub(super) fn send_audio(stats: &GoogleStats, seg: &mut Segment, audio: Vec<u8>) {
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
