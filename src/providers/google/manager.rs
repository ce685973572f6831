//! The Google recogniser's stream manager: a sans-IO state machine for one call's
//! `StreamingRecognize` streams (which stream carries which utterance, rotation, the standby,
//! replay, debounce, and when a final is delivered). The design is described in the module doc of
//! `google` (`mod.rs`); this file is its logic, `stt.rs` the thin tokio shell around it.
//!
//! # Invariant
//! The manager never reads the clock, opens a socket or spawns a task: every input carries `now`,
//! every effect is an [`Output`] the shell carries out, and the one thing it waits for is the
//! deadline of [`StreamManager::poll_timeout`], returned with its [`Reason`]. The same inputs at
//! the same instants give the same outputs (the backoff jitter comes from a seeded generator), so
//! its tests run in virtual time with no socket and no sleep.
//!
//! # Run loop (the shell)
//! 1. apply one input: [`StreamManager::handle_input`] (a caller frame, utterance end or
//!    discard, from the session), [`StreamManager::handle_response`] (a response on stream N),
//!    [`StreamManager::handle_stream_end`] (stream N ended, cleanly or with a status), or
//!    [`StreamManager::handle_timeout`] once the deadline has passed. An `Err` ends the
//!    recogniser: the call driver's STT restart takes over;
//! 2. drain [`StreamManager::poll_output`], carrying out each output in order;
//! 3. wait for the next input, response or the deadline.
//!
//! Stream ids are the manager's own, per call; a response or end on an id it has released (or
//! never knew) is ignored. A frame costs no allocation and no logging unless it completes a
//! 100 ms request or triggers a rotation.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stats::{GoogleStats, STANDBY_BACKOFF, bump, record};
use super::{
    FAST_FAIL, MAX_AUDIO_REQUEST_BYTES, MAX_REPLAY_BYTES, REPLAY_PIECE_BYTES, SILENCE_MEAN_ABS,
    speech, status_error,
};
use crate::config::GoogleConfig;
use crate::providers::{SttError, SttEvent, SttInput};
use crate::voice::g711;

/// One `StreamingRecognize` call, numbered by the manager from 1 within a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Start a `StreamingRecognize` call whose first request is the recognition config.
    Open(StreamId),
    /// Send one audio request (≤ 25 KB) on the stream.
    Audio { stream: StreamId, audio: Vec<u8> },
    /// Half-close the stream: Google finalises what it heard and closes.
    HalfClose(StreamId),
    /// The manager is done with the stream: drop it (cancelling the call if it still runs).
    Release(StreamId),
    /// Deliver a transcript to the session.
    Event(SttEvent),
}

/// Why the manager wants to be woken (for traces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The debounce window of a partial transcript closes.
    PartialDebounce,
    /// Reopen the standby after a failed open (backoff).
    StandbyRetry,
    /// Replace the idle standby before it ages (half the rotation age).
    StandbyRefresh,
    /// A half-closed stream has had `[turn] stt_timeout_ms` to deliver its final.
    FinalWait,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PartialDebounce => "partial_debounce",
            Reason::StandbyRetry => "standby_retry",
            Reason::StandbyRefresh => "standby_refresh",
            Reason::FinalWait => "final_wait",
        }
    }
}

/// The manager's settings, taken from `[google]` and `[turn] stt_timeout_ms`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub rotate_after: Duration,
    pub rotate_hard_limit: Duration,
    /// A half-closed stream gets this long to deliver its final.
    pub finish_timeout: Duration,
    /// Audio bytes per request.
    pub batch_bytes: usize,
    pub partial_debounce: Duration,
    pub reconnect_attempts: u32,
}

impl Limits {
    pub fn new(cfg: &GoogleConfig, finish_timeout: Duration) -> Self {
        Self {
            rotate_after: Duration::from_millis(cfg.rotate_after_ms),
            rotate_hard_limit: Duration::from_millis(cfg.rotate_hard_limit_ms),
            finish_timeout,
            batch_bytes: (cfg.stt_batch_ms as usize * 8).clamp(160, MAX_AUDIO_REQUEST_BYTES),
            partial_debounce: Duration::from_millis(cfg.stt_partial_debounce_ms),
            reconnect_attempts: cfg.reconnect_attempts,
        }
    }

    /// An idle standby is replaced at half the rotation age, so the stream an utterance starts on
    /// always has at least half of its time budget left.
    fn standby_max_age(&self) -> Duration {
        (self.rotate_after / 2).max(Duration::from_millis(1))
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
    opened: Instant,
    utterance: u64,
    done: bool,
    /// Final text received but not delivered yet (the utterance goes on, or an earlier segment is
    /// still open).
    held: String,
    /// Audio after the last final, for replay if the stream dies.
    tail: Vec<u8>,
    /// Stream audio time (ms) at the start of `tail`.
    tail_start_ms: u64,
    /// Audio bytes given to this stream.
    sent_bytes: usize,
    half_closed_at: Option<Instant>,
    got_result: bool,
}

impl Segment {
    fn new(opened: Instant, utterance: u64) -> Self {
        Self {
            opened,
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
}

/// The idle pre-opened stream.
struct Standby {
    id: StreamId,
    opened: Instant,
}

/// Per-call totals, logged when the call ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub utterances: u64,
    pub finals: u64,
    pub rotations: u64,
    pub reconnects: u64,
    pub audio_bytes: u64,
    pub final_latency_total: Duration,
    pub final_latency_max: Duration,
    /// Timer wake-ups, by [`Reason`] (see [`Totals::wakeups`]).
    wakeups: [u64; 4],
}

impl Totals {
    /// How often the manager was woken for `reason`.
    pub fn wakeups(&self, reason: Reason) -> u64 {
        self.wakeups[reason as usize]
    }
}

pub struct StreamManager {
    limits: Limits,
    stats: Arc<GoogleStats>,
    /// Jitter for the standby backoff.
    rng: fastrand::Rng,
    last_id: u64,
    standby: Option<Standby>,
    standby_retry_at: Option<Instant>,
    segments: HashMap<StreamId, Segment>,
    /// Segment ids, oldest first: results are delivered in this order.
    order: VecDeque<StreamId>,
    /// Utterances not delivered yet, with when our VAD ended them.
    utterances: HashMap<u64, Option<Instant>>,
    active: Option<StreamId>,
    current_utterance: u64,
    batch: Vec<u8>,
    debouncer: PartialDebouncer,
    /// A partial to deliver at once (debounce window 0).
    pending_partial: Option<String>,
    /// Failed opens (and streams lost before any result) in a row.
    failures: u32,
    outputs: VecDeque<Output>,
    totals: Totals,
}

impl StreamManager {
    /// `seed` seeds the backoff jitter. Call [`Self::adopt_standby`] for a stream opened before
    /// the call, then [`Self::start`].
    pub fn new(limits: Limits, stats: Arc<GoogleStats>, seed: u64) -> Self {
        Self {
            batch: Vec::with_capacity(limits.batch_bytes),
            debouncer: PartialDebouncer::new(limits.partial_debounce),
            limits,
            stats,
            rng: fastrand::Rng::with_seed(seed),
            last_id: 0,
            standby: None,
            standby_retry_at: None,
            segments: HashMap::new(),
            order: VecDeque::new(),
            utterances: HashMap::new(),
            active: None,
            current_utterance: 0,
            pending_partial: None,
            failures: 0,
            outputs: VecDeque::new(),
            totals: Totals::default(),
        }
    }

    /// Takes a stream the shell opened at `opened` (at the webhook, before the call) as the
    /// standby; the shell files it under the returned id.
    pub fn adopt_standby(&mut self, opened: Instant) -> StreamId {
        let id = self.next_id();
        if let Some(old) = self.standby.replace(Standby { id, opened }) {
            self.outputs.push_back(Output::Release(old.id));
        }
        id
    }

    /// Opens the standby, unless one was adopted.
    pub fn start(&mut self, now: Instant) {
        if self.standby.is_none() {
            self.open_standby(now);
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next deadline and why; `None` while nothing is timed.
    pub fn poll_timeout(&self) -> Option<(Instant, Reason)> {
        let finish = self.limits.finish_timeout;
        let final_waits = self
            .segments
            .values()
            .filter(|s| !s.done)
            .map(move |s| (s.half_closed_at.map(|at| at + finish), Reason::FinalWait));
        let refresh = self
            .standby
            .as_ref()
            .map(|s| s.opened + self.limits.standby_max_age());
        [
            (self.debouncer.deadline(), Reason::PartialDebounce),
            (self.standby_retry_at, Reason::StandbyRetry),
            (refresh, Reason::StandbyRefresh),
        ]
        .into_iter()
        .chain(final_waits)
        .filter_map(|(at, why)| Some((at?, why)))
        .min_by_key(|&(at, _)| at)
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    // ------------------------------------------------------------------ inputs

    /// A frame, utterance end or discard from the session.
    pub fn handle_input(&mut self, now: Instant, input: SttInput) -> Result<(), SttError> {
        match input {
            SttInput::Mulaw(frame) => self.on_audio(now, &frame),
            // We asked for mu-law; anything else is a wiring bug, not the caller's fault.
            SttInput::Pcm16k(_) => {
                return Err(SttError::fatal("Google STT takes 8 kHz mu-law only"));
            }
            SttInput::UtteranceEnd => self.on_utterance_end(now),
            SttInput::UtteranceDiscarded => self.on_discarded(),
        }
        self.deliver(now);
        Ok(())
    }

    /// A response on `stream`; an error in it ends the stream.
    pub fn handle_response(
        &mut self,
        now: Instant,
        stream: StreamId,
        response: speech::StreamingRecognizeResponse,
    ) -> Result<(), SttError> {
        if let Some(err) = response.error {
            let status = tonic::Status::new(tonic::Code::from(err.code), err.message);
            return self.handle_stream_end(now, stream, Err(status));
        }
        self.on_results(now, stream, response.results);
        self.deliver(now);
        Ok(())
    }

    /// `stream` ended: `Ok` when the server closed it, else its status.
    pub fn handle_stream_end(
        &mut self,
        now: Instant,
        stream: StreamId,
        result: Result<(), tonic::Status>,
    ) -> Result<(), SttError> {
        self.on_stream_end(now, stream, result)?;
        self.deliver(now);
        Ok(())
    }

    /// Does what is due at `now` (see [`Reason`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, reason)) = self.poll_timeout()
            && at <= now
        {
            self.totals.wakeups[reason as usize] += 1;
        }
        if self.standby_retry_at.is_some_and(|t| t <= now) {
            self.open_standby(now);
        }
        let max_age = self.limits.standby_max_age();
        if let Some(s) = &self.standby
            && now.saturating_duration_since(s.opened) >= max_age
        {
            // An idle stream must not reach Google's limit either: replace it quietly.
            let old = s.id;
            self.standby = None;
            self.outputs.push_back(Output::Release(old));
            self.open_standby(now);
        }
        let timeout = self.limits.finish_timeout;
        for (id, seg) in self.segments.iter_mut() {
            if let (Some(at), false) = (seg.half_closed_at, seg.done)
                && now.saturating_duration_since(at) >= timeout
            {
                // The engine has moved on with the last partial by now; stop waiting.
                seg.done = true;
                bump(&self.stats.stt_streams_given_up, 1);
                tracing::warn!(stream = %id, reason = Reason::FinalWait.as_str(), "Google STT gave no final in time; giving up on that stream");
            }
        }
        self.deliver(now);
    }

    // ------------------------------------------------------------------ streams

    fn next_id(&mut self) -> StreamId {
        self.last_id += 1;
        StreamId(self.last_id)
    }

    fn open(&mut self) -> StreamId {
        let id = self.next_id();
        self.outputs.push_back(Output::Open(id));
        id
    }

    fn open_standby(&mut self, now: Instant) {
        let id = self.open();
        self.standby_retry_at = None;
        if let Some(old) = self.standby.replace(Standby { id, opened: now }) {
            self.outputs.push_back(Output::Release(old.id));
        }
    }

    /// The standby if there is one (a new one is opened behind it), else a fresh stream; with
    /// when it was opened.
    fn take_stream(&mut self, now: Instant) -> (StreamId, Instant) {
        let taken = match self.standby.take() {
            Some(s) => (s.id, s.opened),
            None => (self.open(), now),
        };
        self.open_standby(now);
        taken
    }

    /// Puts `id` right after `after` in delivery order (at the end if `after` is gone).
    fn insert_after(&mut self, after: StreamId, id: StreamId) {
        let pos = self
            .order
            .iter()
            .position(|&s| s == after)
            .map_or(self.order.len(), |p| p + 1);
        self.order.insert(pos, id);
    }

    fn half_close(&mut self, now: Instant, id: StreamId) {
        if let Some(seg) = self.segments.get_mut(&id) {
            seg.half_closed_at = Some(now);
            self.outputs.push_back(Output::HalfClose(id));
        }
    }

    fn on_audio(&mut self, now: Instant, frame: &[u8]) {
        match self.active {
            Some(id) => {
                let age = self
                    .segments
                    .get(&id)
                    .map_or(Duration::ZERO, |s| now.saturating_duration_since(s.opened));
                let rotate = (age >= self.limits.rotate_after && is_silent(frame))
                    || age >= self.limits.rotate_hard_limit;
                if rotate {
                    self.rotate(now, id);
                }
            }
            None => {
                self.current_utterance += 1;
                self.totals.utterances += 1;
                self.utterances.insert(self.current_utterance, None);
                let (id, opened) = self.take_stream(now);
                self.segments
                    .insert(id, Segment::new(opened, self.current_utterance));
                self.order.push_back(id);
                self.active = Some(id);
            }
        }
        self.batch.extend_from_slice(frame);
        if self.batch.len() >= self.limits.batch_bytes {
            self.flush_batch();
        }
    }

    /// Half-closes the active stream (Google finalises what it heard) and continues the same
    /// utterance on the standby.
    fn rotate(&mut self, now: Instant, old: StreamId) {
        self.flush_batch();
        self.totals.rotations += 1;
        bump(&self.stats.stt_rotations, 1);
        self.half_close(now, old);
        let (id, opened) = self.take_stream(now);
        self.segments
            .insert(id, Segment::new(opened, self.current_utterance));
        self.insert_after(old, id);
        self.active = Some(id);
        tracing::debug!(%old, new = %id, "Google STT stream rotated");
    }

    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let Some(id) = self.active else {
            self.batch.clear();
            return;
        };
        let audio = std::mem::replace(&mut self.batch, Vec::with_capacity(self.limits.batch_bytes));
        self.totals.audio_bytes += audio.len() as u64;
        if let Some(seg) = self.segments.get_mut(&id) {
            feed(&self.stats, &mut self.outputs, id, seg, audio);
        }
    }

    fn on_utterance_end(&mut self, now: Instant) {
        self.flush_batch();
        let Some(id) = self.active.take() else {
            return;
        };
        self.half_close(now, id);
        if let Some(ended) = self.utterances.get_mut(&self.current_utterance) {
            *ended = Some(now);
        }
    }

    fn on_discarded(&mut self) {
        self.batch.clear();
        self.debouncer.clear();
        if self.active.take().is_none() {
            return;
        }
        let utt = self.current_utterance;
        // Releasing the streams cancels the calls: noise is neither billed further nor delivered.
        let outputs = &mut self.outputs;
        self.segments.retain(|&id, s| {
            let keep = s.utterance != utt;
            if !keep {
                outputs.push_back(Output::Release(id));
            }
            keep
        });
        let segments = &self.segments;
        self.order.retain(|id| segments.contains_key(id));
        self.utterances.remove(&utt);
    }

    fn on_results(
        &mut self,
        now: Instant,
        id: StreamId,
        results: Vec<speech::StreamingRecognitionResult>,
    ) {
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
                if let Some(seg) = self.segments.get(sid)
                    && seg.utterance == utterance
                {
                    join_text(&mut text, &seg.held);
                }
            }
            join_text(&mut text, &partial);
            let partial = text.trim().to_string();
            if let Some(now_text) = self.debouncer.push(now, partial) {
                self.pending_partial = Some(now_text);
            }
        }
    }

    fn on_stream_end(
        &mut self,
        now: Instant,
        id: StreamId,
        result: Result<(), tonic::Status>,
    ) -> Result<(), SttError> {
        if let Some(standby) = self.standby.take_if(|s| s.id == id) {
            self.outputs.push_back(Output::Release(id));
            let fast = now.saturating_duration_since(standby.opened) < FAST_FAIL;
            if let Err(status) = &result {
                tracing::warn!(stream = %id, code = ?status.code(), message = status.message(), "Google STT standby stream failed");
            }
            // A stream that ends at once, even "cleanly", is a failed open: back off rather than
            // spin. Google's duration limit (OUT_OF_RANGE) on an idle stream is not a failure.
            let out_of_range = matches!(&result, Err(s) if s.code() == tonic::Code::OutOfRange);
            if fast && !out_of_range {
                self.failures += 1;
                self.check_failures(&result)?;
                let unit = self.rng.f64();
                let backoff = STANDBY_BACKOFF.delay_at(self.failures.saturating_sub(1), None, unit);
                self.standby_retry_at = Some(now + backoff);
            } else {
                self.open_standby(now);
            }
            return Ok(());
        }
        let active = self.active == Some(id);
        let Some(seg) = self.segments.get_mut(&id) else {
            return Ok(());
        };
        if seg.done {
            return Ok(());
        }
        let clean = result.is_ok() && seg.half_closed_at.is_some();
        seg.done = true;
        if clean || seg.tail.is_empty() && !active {
            return Ok(());
        }
        // The stream died with audio it had not finalised: replay that on a new stream.
        let out_of_range = matches!(&result, Err(s) if s.code() == tonic::Code::OutOfRange);
        if !seg.got_result && !out_of_range {
            self.failures += 1;
        }
        match &result {
            Ok(()) => {
                tracing::warn!(stream = %id, "Google STT stream closed early mid-utterance; replaying its audio on a new stream")
            }
            Err(s) => {
                tracing::warn!(stream = %id, code = ?s.code(), message = s.message(), "Google STT stream failed mid-utterance; replaying its audio on a new stream")
            }
        }
        self.check_failures(&result)?;
        let Some(seg) = self.segments.get_mut(&id) else {
            return Ok(());
        };
        let tail = std::mem::take(&mut seg.tail);
        let utterance = seg.utterance;
        let was_half_closed = seg.half_closed_at.is_some();
        self.totals.reconnects += 1;
        bump(&self.stats.stt_reconnects, 1);
        let (new_id, opened) = self.take_stream(now);
        let mut new_seg = Segment::new(opened, utterance);
        for piece in tail.chunks(REPLAY_PIECE_BYTES) {
            feed(
                &self.stats,
                &mut self.outputs,
                new_id,
                &mut new_seg,
                piece.to_vec(),
            );
        }
        self.segments.insert(new_id, new_seg);
        if was_half_closed {
            self.half_close(now, new_id);
        }
        self.insert_after(id, new_id);
        if active {
            self.active = Some(new_id);
        }
        Ok(())
    }

    fn check_failures(&self, result: &Result<(), tonic::Status>) -> Result<(), SttError> {
        if self.failures > self.limits.reconnect_attempts {
            let what = format!("Google STT failed {} times in a row, last", self.failures);
            return Err(match result {
                Ok(()) => SttError::retryable(format!("{what}: stream closed")),
                Err(s) => status_error(&what, s),
            });
        }
        Ok(())
    }

    // ------------------------------------------------------------------ delivery

    /// Queues what is ready, in stream order.
    ///
    /// Finals are held until the utterance ended and all of its streams are done, then delivered
    /// as one `Final`: the session completes the turn on a final that arrives after the utterance
    /// end, and also on one that arrived before it when no partial followed, so a rotated-out
    /// stream's early final would otherwise end the turn without the rest of the utterance.
    fn deliver(&mut self, now: Instant) {
        let mut partial = self
            .pending_partial
            .take()
            .or_else(|| self.debouncer.poll(now));
        while let Some(utt) = self
            .order
            .front()
            .and_then(|id| self.segments.get(id))
            .map(|s| s.utterance)
        {
            // Still being spoken: its finals are held.
            let Some(Some(ended_at)) = self.utterances.get(&utt).copied() else {
                break;
            };
            let in_utterance =
                |id: &StreamId| self.segments.get(id).is_some_and(|s| s.utterance == utt);
            let group = self.order.iter().take_while(|id| in_utterance(id)).count();
            if !self
                .order
                .iter()
                .take(group)
                .all(|id| self.segments.get(id).is_some_and(|s| s.done))
            {
                break;
            }
            let mut text = String::new();
            for id in self.order.iter().take(group) {
                if let Some(seg) = self.segments.get(id) {
                    join_text(&mut text, &seg.held);
                }
            }
            // The session appends finals as they come; if this utterance continues one it
            // already has text for (the caller paused), the words must stay apart. A leading
            // space on the turn's first final is trimmed by the session.
            if self.totals.finals > 0 && !text.is_empty() && !text.starts_with(char::is_whitespace)
            {
                text.insert(0, ' ');
            }
            if !text.is_empty() {
                let latency = now.saturating_duration_since(ended_at);
                record(&self.stats.stt_final_ms, latency);
                self.totals.final_latency_total += latency;
                self.totals.final_latency_max = self.totals.final_latency_max.max(latency);
                bump(&self.stats.stt_finals, 1);
                self.totals.finals += 1;
                self.debouncer.clear();
                partial = None;
                text.truncate(text.trim_end().len());
                self.outputs
                    .push_back(Output::Event(SttEvent::Final { text }));
            }
            for id in self.order.drain(..group) {
                self.segments.remove(&id);
                self.outputs.push_back(Output::Release(id));
            }
            self.utterances.remove(&utt);
        }
        if let Some(text) = partial {
            self.outputs
                .push_back(Output::Event(SttEvent::Partial { text }));
        }
    }
}

/// Gives `audio` to a stream: kept for replay until finalised, and sent unless half-closed.
fn feed(
    stats: &GoogleStats,
    outputs: &mut VecDeque<Output>,
    id: StreamId,
    seg: &mut Segment,
    audio: Vec<u8>,
) {
    seg.sent_bytes += audio.len();
    seg.tail.extend_from_slice(&audio);
    if seg.tail.len() > MAX_REPLAY_BYTES {
        let excess = seg.tail.len() - MAX_REPLAY_BYTES;
        seg.tail.drain(..excess);
        seg.tail_start_ms += (excess / 8) as u64;
        bump(&stats.stt_replay_bytes_dropped, excess as u64);
    }
    if seg.half_closed_at.is_none() {
        outputs.push_back(Output::Audio { stream: id, audio });
    }
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

fn duration_ms(d: &Option<prost_types::Duration>) -> Option<u64> {
    d.as_ref()
        .map(|d| d.seconds.max(0) as u64 * 1000 + d.nanos.max(0) as u64 / 1_000_000)
}

#[cfg(test)]
mod tests;
