//! The stream manager in virtual time: no socket, no sleep. The harness plays the shell and a
//! scripted Google: it carries out every output, records what each stream received, and moves
//! the clock by hand, waking the manager at each `poll_timeout` deadline on the way.

use std::collections::BTreeMap;

use super::*;
use crate::providers::FailureKind;
use crate::testing::fake_google::{
    SILENT_FRAME, numbered_speech_frame, response, transcript_result,
};

const FRAME: Duration = Duration::from_millis(20);
/// Google closes a `StreamingRecognize` call after 5 minutes.
const GOOGLE_LIMIT: Duration = Duration::from_secs(300);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What one stream received from the manager.
#[derive(Debug, Default)]
struct Wire {
    opened: Option<Instant>,
    audio: Vec<u8>,
    requests: Vec<usize>,
    half_closed: Option<Instant>,
    released: Option<Instant>,
}

struct Harness {
    m: StreamManager,
    stats: Arc<GoogleStats>,
    t0: Instant,
    now: Instant,
    wires: BTreeMap<StreamId, Wire>,
    events: Vec<(Instant, SttEvent)>,
    wakeups: Vec<(Instant, Reason)>,
    /// Every audio byte the session gave the recogniser.
    sent: Vec<u8>,
    frames: usize,
    /// Play Google: a half-closed stream finalises all it heard ("s<id>") and closes.
    auto_finalise: bool,
}

fn limits() -> Limits {
    Limits::new(&crate::config::GoogleConfig::default(), ms(1500))
}

fn debounced(window: Duration) -> Limits {
    Limits {
        partial_debounce: window,
        ..limits()
    }
}

impl Harness {
    fn new(limits: Limits) -> Self {
        let stats = Arc::new(GoogleStats::default());
        let t0 = Instant::now();
        let mut h = Self {
            m: StreamManager::new(limits, stats.clone(), 7),
            stats,
            t0,
            now: t0,
            wires: BTreeMap::new(),
            events: Vec::new(),
            wakeups: Vec::new(),
            sent: Vec::new(),
            frames: 0,
            auto_finalise: false,
        };
        h.m.start(t0);
        h.drain();
        h
    }

    fn drain(&mut self) {
        let mut half_closed = Vec::new();
        while let Some(out) = self.m.poll_output() {
            match out {
                Output::Open(id) => {
                    let wire = self.wires.entry(id).or_default();
                    assert!(wire.opened.is_none(), "{id} opened twice");
                    wire.opened = Some(self.now);
                }
                Output::Audio { stream, audio } => {
                    let wire = self
                        .wires
                        .get_mut(&stream)
                        .expect("audio on an unknown stream");
                    assert!(
                        wire.opened.is_some() && wire.released.is_none(),
                        "{stream}: {wire:?}"
                    );
                    assert!(
                        wire.half_closed.is_none(),
                        "audio after half-close on {stream}"
                    );
                    assert!(audio.len() <= MAX_AUDIO_REQUEST_BYTES);
                    wire.requests.push(audio.len());
                    wire.audio.extend_from_slice(&audio);
                }
                Output::HalfClose(id) => {
                    let wire = self.wires.get_mut(&id).expect("known stream");
                    assert!(wire.half_closed.is_none(), "{id} half-closed twice");
                    wire.half_closed = Some(self.now);
                    half_closed.push(id);
                }
                Output::Release(id) => {
                    let wire = self.wires.get_mut(&id).expect("known stream");
                    assert!(wire.released.is_none(), "{id} released twice");
                    wire.released = Some(self.now);
                }
                Output::Event(e) => self.events.push((self.now, e)),
            }
        }
        if self.auto_finalise {
            for id in half_closed {
                let end_ms = (self.wires[&id].audio.len() / 8) as u64;
                self.respond(id, &format!("s{id}"), true, end_ms);
                self.end(id, Ok(())).expect("clean end");
            }
        }
    }

    /// Moves the clock to `t`, waking the manager at every deadline on the way.
    fn advance_to(&mut self, t: Instant) {
        while let Some((at, reason)) = self.m.poll_timeout()
            && at <= t
        {
            self.now = self.now.max(at);
            self.wakeups.push((self.now, reason));
            self.m.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.now.max(t);
    }

    fn advance(&mut self, d: Duration) {
        self.advance_to(self.now + d);
    }

    fn input(&mut self, input: SttInput) -> Result<(), SttError> {
        let r = self.m.handle_input(self.now, input);
        self.drain();
        r
    }

    /// One frame, 20 ms after the previous one.
    fn frame(&mut self, f: [u8; 160]) {
        self.advance(FRAME);
        self.sent.extend_from_slice(&f);
        self.input(SttInput::Mulaw(f)).expect("frame");
    }

    fn speak(&mut self, frames: usize) {
        for _ in 0..frames {
            let n = self.frames;
            self.frames += 1;
            self.frame(numbered_speech_frame(n));
        }
    }

    fn respond(&mut self, id: StreamId, text: &str, is_final: bool, end_ms: u64) {
        let r = response(transcript_result(text, is_final, end_ms));
        self.m
            .handle_response(self.now, id, r)
            .expect("a result never fails");
        self.drain();
    }

    fn end(&mut self, id: StreamId, result: Result<(), tonic::Status>) -> Result<(), SttError> {
        let r = self.m.handle_stream_end(self.now, id, result);
        self.drain();
        r
    }

    fn finals(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                SttEvent::Final { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    fn partials(&self) -> Vec<(Duration, &str)> {
        self.events
            .iter()
            .filter_map(|(at, e)| match e {
                SttEvent::Partial { text } => Some((*at - self.t0, text.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Streams that carried audio, in the order they were opened.
    fn used(&self) -> Vec<StreamId> {
        self.wires
            .iter()
            .filter(|(_, w)| !w.audio.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The stream the current utterance is being sent on.
    fn active(&self) -> StreamId {
        self.m.active.expect("an utterance is on")
    }
}

#[test]
fn streams_rotate_before_googles_limit_and_every_byte_arrives_once() {
    // Default limits (soft 240 s at a silent frame, hard 290 s): one utterance of 10 minutes,
    // loud for the first 6 (only the hard limit can rotate), then with a pause every 10 s.
    let mut h = Harness::new(limits());
    h.auto_finalise = true;
    h.speak(6 * 60 * 50);
    for _ in 0..25 {
        h.speak(499);
        h.frame(SILENT_FRAME);
    }
    h.input(SttInput::UtteranceEnd).unwrap();

    let used = h.used();
    assert!(used.len() >= 3, "{:?}", h.wires);
    let mut joined = Vec::new();
    for (k, id) in used.iter().enumerate() {
        let w = &h.wires[id];
        let lived = w
            .half_closed
            .expect("every stream was half-closed, none died")
            - w.opened.unwrap();
        assert!(lived < GOOGLE_LIMIT, "{id} lived {lived:?}");
        assert!(w.requests.iter().all(|&n| n <= 800), "100 ms requests");
        match k {
            // The first rotation was forced mid-word at the hard limit ...
            0 => assert!(
                lived >= ms(290_000) && lived < ms(290_000) + FRAME,
                "{lived:?}"
            ),
            1 => assert_ne!(&w.audio[..160], &SILENT_FRAME),
            // ... the later ones waited for a pause past the soft limit and switched at it.
            _ => assert_eq!(&w.audio[..160], &SILENT_FRAME),
        }
        if k == 1 {
            assert!(lived >= ms(240_000) && lived < ms(250_000), "{lived:?}");
        }
        joined.extend_from_slice(&w.audio);
    }
    assert!(
        joined == h.sent,
        "every byte once, in order, across the rotations"
    );
    // One final for the utterance, joined in stream order.
    let expected: Vec<String> = used.iter().map(|id| format!("s{id}")).collect();
    assert_eq!(h.finals(), vec![expected.join(" ")]);
    assert_eq!(h.stats.stt_rotations.get(), used.len() as u64 - 1);
    assert_eq!(h.stats.stt_reconnects.get(), 0);
    // Idle standbys were replaced on the way: no stream, used or not, outlived Google's limit.
    for (id, w) in &h.wires {
        let end = w.half_closed.or(w.released).unwrap_or(h.now);
        assert!(end - w.opened.unwrap() < GOOGLE_LIMIT, "{id}: {w:?}");
    }
    assert!(h.m.totals().wakeups(Reason::StandbyRefresh) >= 4);
}

#[test]
fn a_stream_that_dies_mid_utterance_is_replayed_from_its_last_final() {
    let mut h = Harness::new(limits());
    h.speak(200); // 4 s
    let a = h.active();
    // Google finalised the first 1.2 s, then the stream hit its duration limit.
    h.respond(a, "אני רוצה", true, 1200);
    let status = tonic::Status::out_of_range("Exceeded maximum allowed stream duration");
    h.end(a, Err(status)).unwrap();
    let b = h.active();
    assert_ne!(a, b);
    // The replacement got exactly the unfinalised audio, in pieces of at most 1 s ...
    let replay = &h.wires[&b].requests;
    assert_eq!(replay, &[8000, 8000, 6400], "{replay:?}");
    assert_eq!(h.wires[&b].audio, h.sent[1200 * 8..]);
    // ... and the utterance goes on on it.
    h.speak(50);
    h.input(SttInput::UtteranceEnd).unwrap();
    assert_eq!(h.wires[&b].half_closed, Some(h.now));
    assert_eq!(
        [&h.sent[..1200 * 8], &h.wires[&b].audio[..]].concat(),
        h.sent,
        "what A finalised plus what B heard is every byte once"
    );
    h.respond(b, "תור למחר", true, 1800);
    h.end(b, Ok(())).unwrap();
    assert_eq!(h.finals(), vec!["אני רוצה תור למחר"]);
    assert_eq!(h.stats.stt_reconnects.get(), 1);

    // Dying after the utterance end: the replacement is half-closed right after its replay.
    h.speak(40);
    let c = h.active();
    h.input(SttInput::UtteranceEnd).unwrap();
    h.end(c, Err(tonic::Status::unavailable("connection reset")))
        .unwrap();
    let d = *h.used().last().unwrap();
    assert_ne!(c, d);
    assert_eq!(h.wires[&d].audio, h.wires[&c].audio);
    assert_eq!(h.wires[&d].half_closed, Some(h.now));
    h.respond(d, "כן", true, 800);
    h.end(d, Ok(())).unwrap();
    assert_eq!(h.finals(), vec!["אני רוצה תור למחר", " כן"]);
}

/// 0.5 s of speech, then a pause past the rotation age (300 ms): the utterance moves from
/// stream `a` to stream `b`.
fn rotated_at_a_pause(mut l: Limits) -> (Harness, StreamId, StreamId) {
    l.rotate_after = ms(300);
    let mut h = Harness::new(l);
    h.speak(25);
    let a = h.active();
    h.frame(SILENT_FRAME);
    let b = h.active();
    assert_ne!(a, b, "rotated at the pause");
    assert_eq!(h.wires[&a].half_closed, Some(h.now));
    (h, a, b)
}

#[test]
fn a_final_arriving_on_the_old_stream_after_rotation_is_delivered_once() {
    let (mut h, a, b) = rotated_at_a_pause(debounced(ms(50)));
    h.speak(15);
    // B's partial and final arrive before A's final.
    h.respond(b, "תור", false, 200);
    h.respond(a, "אני רוצה", true, 520);
    h.end(a, Ok(())).unwrap();
    assert!(
        h.finals().is_empty(),
        "the utterance goes on: nothing final yet"
    );
    h.respond(b, "תור", false, 240);
    h.advance(ms(50));
    // The partial carries A's held final in front.
    assert_eq!(h.partials().last().unwrap().1, "אני רוצה תור");
    h.input(SttInput::UtteranceEnd).unwrap();
    h.respond(b, "תור למחר", true, 320);
    h.end(b, Ok(())).unwrap();
    assert_eq!(h.finals(), vec!["אני רוצה תור למחר"]);
    assert!(h.wires[&a].released.is_some() && h.wires[&b].released.is_some());
    // Late duplicates on released streams change nothing.
    h.respond(a, "אני רוצה", true, 520);
    h.end(a, Ok(())).unwrap();
    h.end(b, Err(tonic::Status::cancelled("gone"))).unwrap();
    h.advance(ms(5000));
    assert_eq!(h.finals(), vec!["אני רוצה תור למחר"]);
    assert_eq!(h.stats.stt_finals.get(), 1);
}

#[test]
fn the_old_streams_final_waits_for_the_new_one_in_stream_order() {
    let (mut h, a, b) = rotated_at_a_pause(limits());
    h.speak(10);
    h.input(SttInput::UtteranceEnd).unwrap();
    // The new stream finishes first; the old one is still finalising.
    h.respond(b, "world", true, 220);
    h.end(b, Ok(())).unwrap();
    assert!(h.finals().is_empty());
    h.respond(a, "hello", true, 500);
    h.end(a, Ok(())).unwrap();
    assert_eq!(h.finals(), vec!["hello world"]);
}

#[test]
fn partials_are_debounced_in_virtual_time() {
    let mut h = Harness::new(debounced(ms(50)));
    h.speak(5);
    let a = h.active();
    let first = h.now;
    h.respond(a, "I", false, 60);
    assert_eq!(
        h.m.poll_timeout(),
        Some((first + ms(50), Reason::PartialDebounce))
    );
    h.advance(ms(10));
    h.respond(a, "I would", false, 80);
    h.advance(ms(20));
    h.respond(a, "I would like", false, 100);
    h.advance_to(first + ms(49));
    assert!(h.partials().is_empty(), "the window is still open");
    h.advance_to(first + ms(50));
    assert_eq!(
        h.partials(),
        vec![(first + ms(50) - h.t0, "I would like")],
        "one partial, the newest, when the window closes"
    );
    // A final supersedes a partial still in its window.
    h.respond(a, "I would like a", false, 120);
    h.input(SttInput::UtteranceEnd).unwrap();
    h.respond(a, "I would like a room", true, 140);
    h.end(a, Ok(())).unwrap();
    h.advance(ms(100));
    assert_eq!(h.partials().len(), 1);
    assert_eq!(h.finals(), vec!["I would like a room"]);

    // A zero window delivers at once.
    let mut h = Harness::new(debounced(Duration::ZERO));
    h.speak(5);
    let a = h.active();
    h.respond(a, "שלום", false, 60);
    assert_eq!(h.partials(), vec![(h.now - h.t0, "שלום")]);
}

/// How a stream ends.
type Ending = fn() -> Result<(), tonic::Status>;

/// The active stream fails `times` in a row before giving any result.
fn fail_mid_utterance(times: u32, status: Ending) -> Result<(), SttError> {
    let mut l = limits();
    l.reconnect_attempts = 2;
    let mut h = Harness::new(l);
    h.speak(30);
    for _ in 0..times {
        let id = h.active();
        h.end(id, status())?;
        h.speak(5);
    }
    Ok(())
}

#[test]
fn a_stream_failing_mid_utterance_reports_the_kind_of_its_last_status() {
    use tonic::Status;
    let cases: [(&str, Ending, FailureKind); 4] = [
        (
            "unavailable",
            || Err(Status::unavailable("reset")),
            FailureKind::Retryable { retry_after: None },
        ),
        (
            "deadline",
            || Err(Status::deadline_exceeded("slow")),
            FailureKind::Timeout,
        ),
        (
            "permission",
            || Err(Status::permission_denied("key revoked")),
            FailureKind::Fatal,
        ),
        (
            "closed early",
            || Ok(()),
            FailureKind::Retryable { retry_after: None },
        ),
    ];
    for (name, status, kind) in cases {
        // Within `reconnect_attempts` the audio is replayed and the call goes on ...
        assert!(fail_mid_utterance(2, status).is_ok(), "{name}");
        // ... one more failure in a row is the recogniser's end, with the status's kind.
        let err = fail_mid_utterance(3, status).expect_err(name);
        assert_eq!(err.kind(), kind, "{name}: {err}");
        assert!(err.reason().contains("3 times in a row"), "{name}: {err}");
    }
    // Google's duration limit is no failure, however often it comes.
    let limit = || {
        Err(tonic::Status::out_of_range(
            "Exceeded maximum allowed stream duration",
        ))
    };
    assert!(fail_mid_utterance(10, limit).is_ok());
}

#[test]
fn a_result_resets_the_failure_count() {
    let mut l = limits();
    l.reconnect_attempts = 1;
    let mut h = Harness::new(l);
    h.speak(30);
    for _ in 0..5 {
        let id = h.active();
        h.respond(id, "מילה", false, 100);
        h.end(id, Err(tonic::Status::unavailable("reset")))
            .expect("a stream that recognised something is no failed open");
        h.speak(5);
    }
    assert_eq!(h.stats.stt_reconnects.get(), 5);
}

#[test]
fn mu_law_is_the_only_audio_taken() {
    let mut h = Harness::new(limits());
    let err = h.input(SttInput::Pcm16k([0; 320])).unwrap_err();
    assert_eq!(err.kind(), FailureKind::Fatal);
}

#[test]
fn a_failed_standby_backs_off_then_gives_up() {
    let mut l = limits();
    l.reconnect_attempts = 2;
    let mut h = Harness::new(l);
    let mut standby = *h.wires.keys().last().unwrap();
    for retry in 0..2u32 {
        h.advance(ms(30));
        h.end(standby, Err(tonic::Status::unavailable("no route")))
            .unwrap();
        assert!(h.wires[&standby].released.is_some());
        let (at, reason) = h.m.poll_timeout().unwrap();
        assert_eq!(reason, Reason::StandbyRetry);
        // The one backoff policy: 200 ms doubling, jittered into the upper half.
        let full = ms(200) * 2u32.pow(retry);
        assert!(
            at - h.now >= full / 2 && at - h.now <= full,
            "{:?}",
            at - h.now
        );
        let before = h.wires.len();
        h.advance_to(at);
        assert_eq!(h.wires.len(), before + 1, "reopened at the deadline");
        standby = *h.wires.keys().last().unwrap();
    }
    h.advance(ms(30));
    let err = h
        .end(standby, Err(tonic::Status::unavailable("no route")))
        .unwrap_err();
    assert_eq!(err.kind(), FailureKind::Retryable { retry_after: None });
}

#[test]
fn an_idle_standby_is_replaced_at_half_the_rotation_age() {
    let mut h = Harness::new(limits());
    let first = *h.wires.keys().next().unwrap();
    assert_eq!(
        h.m.poll_timeout(),
        Some((h.t0 + ms(120_000), Reason::StandbyRefresh))
    );
    h.advance(ms(120_000));
    assert!(h.wires[&first].released.is_some());
    assert_eq!(h.wires.len(), 2);
    // Google closing an old idle standby (its limit) is no failure: it is reopened at once.
    let second = *h.wires.keys().last().unwrap();
    h.advance(ms(60_000));
    h.end(second, Err(tonic::Status::out_of_range("limit")))
        .unwrap();
    assert_eq!(h.wires.len(), 3);
    assert_eq!(h.wires.values().last().unwrap().opened, Some(h.now));
}

#[test]
fn a_half_closed_stream_with_no_final_is_given_up_after_the_stt_timeout() {
    let mut h = Harness::new(limits());
    h.speak(20);
    let a = h.active();
    h.respond(a, "שלום", true, 300);
    h.input(SttInput::UtteranceEnd).unwrap();
    let ended = h.now;
    assert_eq!(
        h.m.poll_timeout(),
        Some((ended + ms(1500), Reason::FinalWait))
    );
    h.advance(ms(1499));
    assert!(h.finals().is_empty());
    h.advance(ms(1));
    // What it had finalised is delivered; the stream is dropped.
    assert_eq!(h.finals(), vec!["שלום"]);
    assert!(h.wires[&a].released.is_some());
    assert_eq!(h.stats.stt_streams_given_up.get(), 1);
    assert_eq!(h.m.totals().wakeups(Reason::FinalWait), 1);
}

#[test]
fn a_discarded_utterance_releases_its_streams_and_delivers_nothing() {
    let mut h = Harness::new(debounced(ms(50)));
    h.speak(10);
    let noise = h.active();
    h.respond(noise, "רעש", false, 100);
    h.input(SttInput::UtteranceDiscarded).unwrap();
    assert!(h.wires[&noise].released.is_some());
    h.respond(noise, "רעש", true, 200);
    h.end(noise, Ok(())).unwrap();
    h.advance(ms(200));
    assert!(h.events.is_empty(), "{:?}", h.events);
    h.speak(10);
    let a = h.active();
    h.input(SttInput::UtteranceEnd).unwrap();
    h.respond(a, "שלום", true, 200);
    h.end(a, Ok(())).unwrap();
    assert_eq!(h.finals(), vec!["שלום"]);
}

#[test]
fn the_manager_never_reads_the_clock() {
    let code: String = include_str!("../manager.rs")
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    for forbidden in [
        "Instant::now",
        "SystemTime",
        "elapsed()",
        "tokio",
        "sleep",
        "spawn",
    ] {
        assert!(
            !code.contains(forbidden),
            "manager.rs must take time from its caller: found `{forbidden}`"
        );
    }
}
