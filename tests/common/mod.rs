//! Deterministic virtual-time harness for call sessions: a scripted caller, Twilio's playback
//! buffer (marks echoed when playback reaches them, all pending marks echoed on `clear`), a seeded
//! network between the server and Twilio (delay each way, jitter, TCP-retransmit stalls), and
//! scripted STT / agent / TTS with fixed latencies and TTS backpressure.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use kav::caller::latency_proxy::next_rand;
use kav::config::Config;
use kav::providers::{AgentEvent, ProviderError, SttAudioFormat, SttEvent};
use kav::voice::events::{CallEvent, TurnRecord};
use kav::voice::g711;
use kav::voice::session::{CallSession, Output, Phase, SessionConfig, mark_name};

pub const FRAME: Duration = Duration::from_millis(20);

/// What the caller sends, 20 ms at a time.
#[derive(Debug, Clone)]
pub enum CallerStep {
    Speak(Duration),
    Silence(Duration),
    /// A Twilio `dtmf` event (no tone in the audio).
    Key(char),
    /// Keep silent until the bot has finished speaking (phase back to listening/collecting).
    WaitForBot,
    /// Wait until the bot has played at least this much audio of its current reply, then continue.
    WaitForBotAudio(Duration),
}

#[derive(Debug, Clone)]
pub struct ScriptedReply {
    pub deltas: Vec<String>,
    pub collect_digits: Option<u8>,
    pub hangup: bool,
    /// Agent never answers (for timeouts).
    pub stall: bool,
    pub fail: bool,
}

impl ScriptedReply {
    pub fn text(t: &str) -> Self {
        let deltas = t.split_inclusive(' ').map(str::to_string).collect();
        Self {
            deltas,
            collect_digits: None,
            hangup: false,
            stall: false,
            fail: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Latencies {
    pub stt_partial: Duration,
    pub stt_final: Duration,
    pub agent_first: Duration,
    pub agent_token: Duration,
    pub tts_first: Duration,
    /// Audio produced per character of text.
    pub tts_per_char: Duration,
    /// Extra time between successive TTS chunks (slow TTS).
    pub tts_chunk_gap: Duration,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            stt_partial: Duration::from_millis(150),
            stt_final: Duration::from_millis(120),
            agent_first: Duration::from_millis(300),
            agent_token: Duration::from_millis(20),
            tts_first: Duration::from_millis(100),
            tts_per_char: Duration::from_millis(50),
            tts_chunk_gap: Duration::ZERO,
        }
    }
}

/// The link between the server and Twilio's media server, in virtual time. TCP keeps order, so a
/// message never overtakes an earlier one in the same direction; a stall holds everything sent
/// in its window and then delivers it together, as a retransmit does.
#[derive(Debug, Clone, Copy)]
pub struct NetModel {
    pub one_way: Duration,
    /// Each message's delay is `one_way` + uniform 0..=`jitter`.
    pub jitter: Duration,
    /// Mean time between stalls per direction (`None`: no stalls); each lasts 200–500 ms.
    pub stall_every: Option<Duration>,
    /// Which directions stall: server→Twilio (media, marks, clear), Twilio→server (echoes).
    pub stall_down: bool,
    pub stall_up: bool,
    /// Extra delay on echoes only (a peer whose echoes come very late).
    pub echo_extra: Duration,
    pub seed: u64,
}

impl NetModel {
    pub fn rtt(rtt_ms: u64, jitter_ms: u64, seed: u64) -> Self {
        Self {
            one_way: Duration::from_millis(rtt_ms / 2),
            jitter: Duration::from_millis(jitter_ms),
            stall_every: None,
            stall_down: false,
            stall_up: false,
            echo_extra: Duration::ZERO,
            seed,
        }
    }
}

/// One direction of the link: in-order delivery times, stall windows.
#[derive(Debug)]
struct Link<T> {
    queue: VecDeque<(Instant, T)>,
    last: Option<Instant>,
    stalls: bool,
    next_stall: Option<Instant>,
    stall_until: Option<Instant>,
    pub stalled: u32,
}

impl<T> Link<T> {
    fn new(stalls: bool) -> Self {
        Self {
            queue: VecDeque::new(),
            last: None,
            stalls,
            next_stall: None,
            stall_until: None,
            stalled: 0,
        }
    }

    fn send(&mut self, now: Instant, net: &NetModel, rng: &mut u64, item: T) {
        let jitter_ms = net.jitter.as_millis() as u64;
        let mut at = now + net.one_way + Duration::from_millis(next_rand(rng) % (jitter_ms + 1));
        if self.stalls
            && let Some(every) = net.stall_every
        {
            let next = *self.next_stall.get_or_insert_with(|| {
                now + Duration::from_millis(next_rand(rng) % (2 * every.as_millis() as u64 + 1))
            });
            if now >= next {
                let len = 200 + next_rand(rng) % 301;
                self.stall_until = Some(now + Duration::from_millis(len));
                self.stalled += 1;
                self.next_stall = Some(
                    now + Duration::from_millis(
                        next_rand(rng) % (2 * every.as_millis() as u64 + 1),
                    ),
                );
            }
            if let Some(until) = self.stall_until
                && now < until
            {
                at = at.max(until + net.one_way);
            }
        }
        let at = self.last.map_or(at, |last| at.max(last));
        self.last = Some(at);
        self.queue.push_back((at, item));
    }

    fn due(&mut self, now: Instant) -> Option<T> {
        if self.queue.front().is_some_and(|(at, _)| *at <= now) {
            self.queue.pop_front().map(|(_, t)| t)
        } else {
            None
        }
    }

    fn next_at(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }
}

#[derive(Debug, Clone, Copy)]
enum ToTwilio {
    Frame,
    Mark(u64),
    Clear,
}

/// What Twilio holds: a frame (tagged with the reply it belongs to) or a mark.
#[derive(Debug, Clone, Copy)]
enum Buffered {
    Frame(usize),
    Mark(u64),
}

#[derive(Debug)]
struct TtsJob {
    turn: u32,
    segment: u32,
    remaining: usize,
    ready_at: Instant,
    /// Index in `Harness::tts_texts`.
    request: usize,
    /// Fails once this many bytes of audio were delivered: `Some(0)` fails without audio when it
    /// comes up (a TTS 5xx), more breaks the stream mid-sentence.
    fail_after: Option<usize>,
}

#[derive(Debug)]
enum Scheduled {
    Stt(SttEvent),
    Agent(u32, AgentEvent),
    AgentDone(u32, Result<(), ProviderError>),
}

/// The agent's behaviour: (user text, typed digits?) → reply.
pub type ReplyScript = Box<dyn FnMut(&str, bool) -> ScriptedReply>;

pub struct Harness {
    pub session: CallSession,
    pub now: Instant,
    pub t0: Instant,
    pub lat: Latencies,
    caller: VecDeque<CallerStep>,
    step_left: Option<Duration>,
    wait_baseline: Option<u64>,
    next_frame_at: Instant,
    voice_phase: f32,
    pub transcripts: VecDeque<String>,
    pub replies: ReplyScript,
    scheduled: Vec<(Instant, u64, Scheduled)>,
    seq: u64,
    stt_partial_pending: bool,
    tts: VecDeque<TtsJob>,
    // Twilio playback model.
    twilio_buffer: VecDeque<Buffered>,
    pub played_frames: u64,
    /// Frames Twilio played per reply (index = turn events before the reply's frames were sent).
    pub played_per_reply: Vec<u64>,
    /// Twilio-side gaps inside a reply: playback ran dry and then went on with the same reply.
    pub twilio_underruns: u64,
    pub twilio_gap_ms: u64,
    last_played: Option<usize>,
    gap_ticks: u64,
    /// The network between server and Twilio (`None`: loopback, everything at once).
    pub net: Option<NetModel>,
    rng: u64,
    down: Link<ToTwilio>,
    up: Link<u64>,
    /// When each `clear` reached Twilio.
    pub clears_delivered: Vec<Instant>,
    pub clears: Vec<Instant>,
    pub frames_sent_at: Vec<Instant>,
    pub events: Vec<CallEvent>,
    pub agent_requests: Vec<(u32, bool, Vec<kav::providers::Message>)>,
    pub tts_texts: Vec<String>,
    pub cancels: Vec<String>,
    pub stt_frames: u64,
    pub hangup: Option<&'static str>,
    /// Largest number of frames ever buffered at "Twilio".
    pub max_twilio_buffer: usize,
    /// Speech onsets of the caller (for reaction measurements).
    pub speech_onsets: Vec<Instant>,
    /// The next this many TTS requests fail without audio.
    pub tts_failures: usize,
    /// `(i, bytes)`: the i-th TTS request (0-based, as in `tts_texts`) breaks after `bytes` of
    /// audio (its stream fails mid-sentence; 0: fails without audio).
    pub tts_breaks: Vec<(usize, usize)>,
    /// Audio bytes handed to the session per TTS request, in `tts_texts` order.
    pub tts_bytes: Vec<usize>,
}

/// A speech-like frame (harmonic-rich, pitch-varying) that webrtc-vad calls voice.
pub fn voice_frame(phase: &mut f32) -> [u8; 160] {
    let mut out = [0u8; 160];
    for b in out.iter_mut() {
        let v: f32 = (1..8).map(|h| (*phase * h as f32).sin() / h as f32).sum();
        *phase += 2.0 * std::f32::consts::PI * 180.0 / 8000.0;
        *b = g711::encode((v * 7000.0) as i16);
    }
    out
}

/// A caller who speaks, waits for the reply, speaks again and waits for that reply: two turns,
/// the first answered with `first`, the second with "Fine."; `tts_breaks` as in
/// [`Harness::tts_breaks`]. Run to the end (at most 60 s of virtual time).
pub fn two_turn_call(cfg: &Config, first: &'static str, tts_breaks: &[(usize, usize)]) -> Harness {
    let ms = Duration::from_millis;
    let mut h = Harness::new(
        cfg,
        vec![
            CallerStep::Speak(ms(700)),
            CallerStep::WaitForBot,
            CallerStep::Silence(ms(300)),
            CallerStep::Speak(ms(700)),
            CallerStep::WaitForBot,
        ],
    )
    .transcripts(&["when are you open", "thanks"]);
    let mut replies = vec![first, "Fine."].into_iter();
    h.replies = Box::new(move |_, _| ScriptedReply::text(replies.next().unwrap_or("Fine.")));
    h.tts_breaks = tts_breaks.to_vec();
    h.run(Duration::from_secs(60));
    h
}

pub fn test_config() -> Config {
    let mut cfg = Config::default();
    cfg.call.greeting = String::new();
    cfg
}

impl Harness {
    pub fn new(cfg: &Config, caller: Vec<CallerStep>) -> Self {
        let t0 = Instant::now();
        Self {
            session: CallSession::new(t0, SessionConfig::from_config(cfg, SttAudioFormat::Mulaw8k)),
            now: t0,
            t0,
            lat: Latencies::default(),
            caller: caller.into(),
            step_left: None,
            wait_baseline: None,
            next_frame_at: t0,
            voice_phase: 0.0,
            transcripts: VecDeque::new(),
            replies: Box::new(|text, _| {
                ScriptedReply::text(&format!("You said {text}. Anything else?"))
            }),
            scheduled: Vec::new(),
            seq: 0,
            stt_partial_pending: false,
            tts: VecDeque::new(),
            twilio_buffer: VecDeque::new(),
            played_frames: 0,
            played_per_reply: Vec::new(),
            twilio_underruns: 0,
            twilio_gap_ms: 0,
            last_played: None,
            gap_ticks: 0,
            net: None,
            rng: 0,
            down: Link::new(false),
            up: Link::new(false),
            clears_delivered: Vec::new(),
            clears: Vec::new(),
            frames_sent_at: Vec::new(),
            events: Vec::new(),
            agent_requests: Vec::new(),
            tts_texts: Vec::new(),
            tts_failures: 0,
            tts_breaks: Vec::new(),
            tts_bytes: Vec::new(),
            cancels: Vec::new(),
            stt_frames: 0,
            hangup: None,
            max_twilio_buffer: 0,
            speech_onsets: Vec::new(),
        }
    }

    /// Puts a network between the server and Twilio.
    pub fn network(mut self, net: NetModel) -> Self {
        self.rng = net.seed;
        self.down = Link::new(net.stall_down);
        self.up = Link::new(net.stall_up);
        self.net = Some(net);
        self
    }

    /// Stalls that happened (server→Twilio, Twilio→server).
    pub fn stalls(&self) -> (u32, u32) {
        (self.down.stalled, self.up.stalled)
    }

    pub fn transcripts(mut self, t: &[&str]) -> Self {
        self.transcripts = t.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn turns(&self) -> Vec<TurnRecord> {
        self.events
            .iter()
            .filter_map(|e| {
                if let CallEvent::Turn(t) = e {
                    Some(t.clone())
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn ms(&self, at: Instant) -> u64 {
        at.duration_since(self.t0).as_millis() as u64
    }

    fn schedule(&mut self, at: Instant, what: Scheduled) {
        self.seq += 1;
        self.scheduled.push((at, self.seq, what));
    }

    fn bot_done(&self) -> bool {
        matches!(
            self.session.phase(),
            Phase::Listening | Phase::CollectingDigits | Phase::Ended
        )
    }

    /// Runs until the caller script is done and everything settled, or `limit` passes.
    pub fn run(&mut self, limit: Duration) {
        let end = self.t0 + limit;
        while self.now < end {
            if self.caller.is_empty() && self.step_left.is_none() && self.idle() {
                break;
            }
            self.step();
        }
    }

    /// Runs for a fixed amount of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    fn idle(&self) -> bool {
        self.scheduled.is_empty()
            && self.tts.is_empty()
            && self.twilio_buffer.is_empty()
            && self.down.queue.is_empty()
            && self.up.queue.is_empty()
            && self.bot_done()
            && self.session.poll_timeout().is_none()
    }

    fn step(&mut self) {
        // Next instant anything happens: caller frame / Twilio playback tick, scheduled provider
        // events, TTS chunks, or the session's own deadline.
        let mut next = self.next_frame_at;
        if let Some((at, _, _)) = self.scheduled.iter().min_by_key(|(at, seq, _)| (*at, *seq)) {
            next = next.min(*at);
        }
        if let Some(job) = self.tts.front()
            && self.session.wants_tts_audio(1600)
        {
            next = next.min(job.ready_at.max(self.now));
        }
        if let Some((at, _)) = self.session.poll_timeout() {
            next = next.min(at.max(self.now));
        }
        for at in [self.down.next_at(), self.up.next_at()]
            .into_iter()
            .flatten()
        {
            next = next.min(at.max(self.now));
        }
        self.now = next.max(self.now);
        let now = self.now;
        self.deliver();

        if now >= self.next_frame_at {
            self.next_frame_at += FRAME;
            self.twilio_tick();
            self.caller_tick();
        }
        // Provider events due now, in order.
        self.scheduled.sort_by_key(|(at, seq, _)| (*at, *seq));
        while self.scheduled.first().is_some_and(|(at, _, _)| *at <= now) {
            let (_, _, what) = self.scheduled.remove(0);
            match what {
                Scheduled::Stt(ev) => self.session.handle_stt(now, ev),
                Scheduled::Agent(turn, ev) => self.session.handle_agent(now, turn, ev),
                Scheduled::AgentDone(turn, r) => self.session.handle_agent_done(now, turn, r),
            }
            self.drain();
        }
        self.tts_tick();
        if self.session.poll_timeout().is_some_and(|(at, _)| at <= now) {
            self.session.handle_timeout(now);
            self.drain();
        }
    }

    fn tts_tick(&mut self) {
        let now = self.now;
        while let Some(job) = self.tts.front_mut() {
            if job.ready_at > now {
                break;
            }
            if job.fail_after == Some(0) {
                let (turn, segment) = (job.turn, job.segment);
                self.tts.pop_front();
                self.session.handle_tts_done(
                    now,
                    turn,
                    segment,
                    Err(ProviderError::retryable("scripted TTS failure")),
                );
                self.drain();
                continue;
            }
            if !self.session.wants_tts_audio(1600) {
                break;
            }
            let n = job
                .remaining
                .min(1600)
                .min(job.fail_after.unwrap_or(usize::MAX));
            job.remaining -= n;
            job.fail_after = job.fail_after.map(|left| left - n);
            let (turn, segment) = (job.turn, job.segment);
            let chunk = vec![0x2Au8; n];
            job.ready_at = now + self.lat.tts_chunk_gap;
            if let Some(sent) = self.tts_bytes.get_mut(job.request) {
                *sent += n;
            }
            self.session.handle_tts_audio(now, turn, segment, &chunk);
            if self.tts.front().is_some_and(|j| j.remaining == 0) {
                self.tts.pop_front();
                self.session.handle_tts_done(now, turn, segment, Ok(()));
                if let Some(next) = self.tts.front_mut() {
                    next.ready_at = next.ready_at.max(now);
                }
            }
            self.drain();
        }
    }

    fn twilio_tick(&mut self) {
        // Play one frame, then echo any marks that playback has reached.
        let mut played_one = false;
        while let Some(item) = self.twilio_buffer.front().copied() {
            match item {
                Buffered::Mark(id) => {
                    self.twilio_buffer.pop_front();
                    self.echo(id);
                }
                Buffered::Frame(reply) if !played_one => {
                    self.twilio_buffer.pop_front();
                    self.played_frames += 1;
                    if self.played_per_reply.len() <= reply {
                        self.played_per_reply.resize(reply + 1, 0);
                    }
                    self.played_per_reply[reply] += 1;
                    if self.last_played == Some(reply) && self.gap_ticks > 0 {
                        self.twilio_underruns += 1;
                        self.twilio_gap_ms += self.gap_ticks * 20;
                    }
                    self.last_played = Some(reply);
                    self.gap_ticks = 0;
                    played_one = true;
                }
                Buffered::Frame(_) => break,
            }
        }
        if !played_one && self.last_played.is_some() {
            self.gap_ticks += 1;
        }
    }

    /// Twilio echoes a mark: over the network, or straight to the session on loopback.
    fn echo(&mut self, id: u64) {
        match self.net {
            Some(net) => {
                let net = NetModel {
                    one_way: net.one_way + net.echo_extra,
                    ..net
                };
                self.up.send(self.now, &net, &mut self.rng, id)
            }
            None => self.mark_to_session(id),
        }
    }

    fn mark_to_session(&mut self, id: u64) {
        let mut buf = [0u8; 24];
        let name = mark_name(id, &mut buf).to_string();
        self.session.handle_mark(self.now, &name);
        self.drain();
    }

    /// The server sends something to Twilio.
    fn send_to_twilio(&mut self, item: ToTwilio) {
        match self.net {
            Some(net) => self.down.send(self.now, &net, &mut self.rng, item),
            None => self.twilio_receives(item),
        }
    }

    fn twilio_receives(&mut self, item: ToTwilio) {
        match item {
            ToTwilio::Frame => {
                let reply = self.turns().len();
                self.twilio_buffer.push_back(Buffered::Frame(reply));
                let frames = self
                    .twilio_buffer
                    .iter()
                    .filter(|f| matches!(f, Buffered::Frame(_)))
                    .count();
                self.max_twilio_buffer = self.max_twilio_buffer.max(frames);
            }
            // Echoed when playback reaches it (at the next tick if nothing is buffered).
            ToTwilio::Mark(id) => self.twilio_buffer.push_back(Buffered::Mark(id)),
            ToTwilio::Clear => {
                self.clears_delivered.push(self.now);
                self.last_played = None;
                self.gap_ticks = 0;
                let marks: Vec<u64> = self
                    .twilio_buffer
                    .drain(..)
                    .filter_map(|b| match b {
                        Buffered::Mark(id) => Some(id),
                        Buffered::Frame(_) => None,
                    })
                    .collect();
                for id in marks {
                    self.echo(id);
                }
            }
        }
    }

    /// Delivers what the network has due now, both ways.
    fn deliver(&mut self) {
        let now = self.now;
        loop {
            if let Some(item) = self.down.due(now) {
                self.twilio_receives(item);
            } else if let Some(id) = self.up.due(now) {
                self.mark_to_session(id);
            } else {
                break;
            }
        }
    }

    fn caller_tick(&mut self) {
        let now = self.now;
        loop {
            let Some(step) = self.caller.front().cloned() else {
                self.send_frame(false);
                return;
            };
            match step {
                CallerStep::Key(k) => {
                    self.caller.pop_front();
                    self.session.handle_dtmf(now, k);
                    self.drain();
                    continue;
                }
                CallerStep::WaitForBot => {
                    if self.bot_done() && self.tts.is_empty() && self.scheduled.is_empty() {
                        self.caller.pop_front();
                        continue;
                    }
                    self.send_frame(false);
                    return;
                }
                CallerStep::WaitForBotAudio(d) => {
                    let base = *self.wait_baseline.get_or_insert(self.played_frames);
                    if self.played_frames - base >= d.as_millis() as u64 / 20 {
                        self.wait_baseline = None;
                        self.caller.pop_front();
                        continue;
                    }
                    self.send_frame(false);
                    return;
                }
                CallerStep::Speak(d) | CallerStep::Silence(d) => {
                    let speaking = matches!(step, CallerStep::Speak(_));
                    let left = *self.step_left.get_or_insert(d);
                    if speaking && left == d {
                        self.speech_onsets.push(now);
                    }
                    self.send_frame(speaking);
                    let left = left.saturating_sub(FRAME);
                    if left.is_zero() {
                        self.step_left = None;
                        self.caller.pop_front();
                    } else {
                        self.step_left = Some(left);
                    }
                    return;
                }
            }
        }
    }

    fn send_frame(&mut self, voiced: bool) {
        let frame = if voiced {
            voice_frame(&mut self.voice_phase)
        } else {
            [g711::SILENCE; 160]
        };
        self.session.handle_media(self.now, &frame);
        self.drain();
    }

    pub fn drain(&mut self) {
        let now = self.now;
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Media(_) => {
                    self.frames_sent_at.push(now);
                    self.send_to_twilio(ToTwilio::Frame);
                }
                Output::Mark(id) => self.send_to_twilio(ToTwilio::Mark(id)),
                Output::Clear { .. } => {
                    self.clears.push(now);
                    self.send_to_twilio(ToTwilio::Clear);
                }
                Output::SttAudio(_) => {
                    self.stt_frames += 1;
                    if !self.stt_partial_pending {
                        self.stt_partial_pending = true;
                        let word = self
                            .transcripts
                            .front()
                            .and_then(|t| t.split(' ').next())
                            .unwrap_or("")
                            .to_string();
                        self.schedule(
                            now + self.lat.stt_partial,
                            Scheduled::Stt(SttEvent::Partial { text: word }),
                        );
                    }
                }
                Output::SttUtteranceEnd => {
                    self.stt_partial_pending = false;
                    let text = self.transcripts.pop_front().unwrap_or_default();
                    self.schedule(
                        now + self.lat.stt_final,
                        Scheduled::Stt(SttEvent::Final { text }),
                    );
                }
                Output::SttUtteranceDiscarded => {
                    self.stt_partial_pending = false;
                    self.scheduled
                        .retain(|(_, _, s)| !matches!(s, Scheduled::Stt(SttEvent::Partial { .. })));
                }
                Output::AgentRequest { turn, digits } => {
                    let history = self.session.history().to_vec();
                    let user = history.last().map(|m| m.text.clone()).unwrap_or_default();
                    self.agent_requests.push((turn, digits, history));
                    let reply = (self.replies)(&user, digits);
                    if reply.stall {
                        continue;
                    }
                    let mut at = now + self.lat.agent_first;
                    if reply.fail {
                        self.schedule(
                            at,
                            Scheduled::AgentDone(
                                turn,
                                Err(ProviderError::retryable("scripted failure")),
                            ),
                        );
                        continue;
                    }
                    for d in reply.deltas {
                        self.schedule(at, Scheduled::Agent(turn, AgentEvent::TextDelta(d)));
                        at += self.lat.agent_token;
                    }
                    if let Some(n) = reply.collect_digits {
                        self.schedule(
                            at,
                            Scheduled::Agent(turn, AgentEvent::CollectDigits { max_digits: n }),
                        );
                    }
                    if reply.hangup {
                        self.schedule(at, Scheduled::Agent(turn, AgentEvent::Hangup));
                    }
                    self.schedule(at, Scheduled::AgentDone(turn, Ok(())));
                }
                Output::AgentCancel { turn } => {
                    self.cancels.push(format!("agent:{turn}"));
                    self.scheduled.retain(|(_, _, s)| !matches!(s, Scheduled::Agent(t, _) | Scheduled::AgentDone(t, _) if *t == turn));
                }
                Output::TtsSpeak {
                    turn,
                    segment,
                    text,
                } => {
                    let bytes = (text.chars().count() as u128
                        * self.lat.tts_per_char.as_millis()
                        * 8) as usize;
                    let request = self.tts_texts.len();
                    self.tts_texts.push(text);
                    self.tts_bytes.push(0);
                    let fail = self.tts_failures > 0;
                    self.tts_failures = self.tts_failures.saturating_sub(1);
                    let fail_after = if fail {
                        Some(0)
                    } else {
                        self.tts_breaks
                            .iter()
                            .find(|(i, _)| *i == request)
                            .map(|(_, after)| *after)
                    };
                    let ready_at = if self.tts.is_empty() {
                        now + self.lat.tts_first
                    } else {
                        now
                    };
                    self.tts.push_back(TtsJob {
                        turn,
                        segment,
                        remaining: bytes.max(1),
                        ready_at,
                        request,
                        fail_after,
                    });
                }
                Output::TtsCancel { turn } => {
                    self.cancels.push(format!("tts:{turn}"));
                    self.tts.retain(|j| j.turn != turn);
                }
                Output::Event(e) => self.events.push(e),
                Output::Hangup { reason } => self.hangup = Some(reason),
            }
        }
    }
}
