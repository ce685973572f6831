//! `CallSession` driven by an arbitrary sequence of inputs (caller media, keypad, mark echoes,
//! recogniser/agent/TTS events, stops, time passing and timers), the way `channels::twilio::call`
//! drives it. Checked after every step: no panic; time-outs make progress; every mark parses back
//! to its id and is sent once; the lead is bounded: audio queued at Twilio (which plays one frame
//! per 20 ms and drops its queue on `clear`) never exceeds `lead_frames + 1` frames; the agent's
//! turns increase; sentences to TTS are not empty; at most one hangup; nothing is sent after the
//! session ended.
use arbitrary::{Arbitrary, Unstructured};
use kav::config::Config;
use kav::providers::{AgentEvent, ProviderError, SttAudioFormat, SttEvent};
use kav::voice::session::{CallSession, Output, Phase, SessionConfig, mark_name, parse_mark_name};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const FRAME: Duration = Duration::from_millis(20);

#[derive(Arbitrary, Debug)]
enum Step {
    /// Caller audio of any length (Twilio sends 160 bytes; a broken peer may not).
    Media(Vec<u8>),
    /// `n` frames of a loud square wave (speech to the VAD), 20 ms apart.
    Loud(u8),
    /// `n` frames of silence, 20 ms apart.
    Silence(u8),
    Dtmf(char),
    /// Echo the i-th mark we were sent (modulo), as Twilio does when playback reaches it.
    EchoMark(u8),
    /// Echo every outstanding mark (Twilio after a `clear`, or playback done).
    EchoAll,
    RawMark(String),
    SttPartial(String),
    SttFinal(String),
    AgentText {
        stale: bool,
        text: String,
    },
    AgentCollect(u8),
    AgentHangup,
    AgentDone {
        ok: bool,
    },
    TtsAudio {
        stale: bool,
        len: u16,
    },
    TtsDone {
        ok: bool,
    },
    /// Let time pass and fire due timers.
    Wait(u16),
    /// Jump to the session's own next deadline and fire it.
    Timeout,
    Stop,
}

#[derive(Arbitrary, Debug)]
struct Input {
    greeting: bool,
    pcm16k: bool,
    steps: Vec<Step>,
}

#[derive(Default)]
struct Observer {
    media_total: u64,
    /// Media count when each mark went out.
    marks: HashMap<u64, u64>,
    mark_order: Vec<u64>,
    echoed: usize,
    turn: Option<u32>,
    segment: u32,
    hangups: u32,
    ended: bool,
    /// When Twilio would finish playing everything sent so far.
    queue_end: Option<Instant>,
    /// Most audio queued at Twilio allowed.
    bound: Duration,
    /// Frames fed and timers fired so far: one input stops after `MAX_WORK` (keeps exec/s up).
    work: u32,
    /// `KAV_FUZZ_DEBUG` set: the start time, and every output is printed with its time.
    debug: Option<Instant>,
}

/// Frames fed plus timers fired per input: 10 s of audio, room for a greeting, a turn and a
/// barge-in. Quiet time is cheap (a `Wait` over silence fires only the session's own deadlines),
/// so the long timeouts stay reachable. It was 3,000: each frame costs a VAD, DTMF and (16 kHz
/// inputs) an 8→16 kHz upsampling pass, ~75 % of the time in rubato, so long inputs held the
/// fuzzer at ~250 exec/s.
const MAX_WORK: u32 = 500;

/// The session configurations an input picks from (greeting, 16 kHz recogniser), built once:
/// `Config::default()` per input is needless work at thousands of executions a second.
fn session_config(greeting: bool, pcm16k: bool) -> SessionConfig {
    static CONFIGS: OnceLock<Vec<SessionConfig>> = OnceLock::new();
    let all = CONFIGS.get_or_init(|| {
        let mut out = Vec::new();
        for greeting in [false, true] {
            for pcm16k in [false, true] {
                let mut cfg = Config::default();
                if greeting {
                    cfg.call.greeting = "Hello, how can I help?".into();
                }
                let format = if pcm16k {
                    SttAudioFormat::Pcm16k
                } else {
                    SttAudioFormat::Mulaw8k
                };
                out.push(SessionConfig::from_config(&cfg, format));
            }
        }
        out
    });
    all[usize::from(greeting) * 2 + usize::from(pcm16k)].clone()
}

impl Observer {
    fn drain(&mut self, s: &mut CallSession, now: Instant) {
        while let Some(out) = s.poll_output() {
            if let Some(t0) = self.debug {
                let shown = match &out {
                    Output::Media(_) => "Media".to_string(),
                    other => format!("{other:?}"),
                };
                eprintln!("{:>6} ms  {shown}", (now - t0).as_millis());
            }
            assert!(!self.ended, "output after the session ended: {out:?}");
            match out {
                Output::Media(frame) => {
                    assert_eq!(frame.len(), 160);
                    self.media_total += 1;
                    let end = self.queue_end.map_or(now, |e| e.max(now)) + FRAME;
                    self.queue_end = Some(end);
                    let ahead = end - now;
                    assert!(
                        ahead <= self.bound,
                        "{ahead:?} of audio queued at Twilio (bound {:?})",
                        self.bound
                    );
                }
                Output::Mark(id) => {
                    let mut buf = [0u8; 24];
                    assert_eq!(parse_mark_name(mark_name(id, &mut buf)), Some(id));
                    assert!(
                        self.marks.insert(id, self.media_total).is_none(),
                        "mark {id} sent twice"
                    );
                    self.mark_order.push(id);
                }
                Output::Clear { .. } => {
                    self.queue_end = Some(now);
                    self.echoed = self.mark_order.len();
                }
                Output::AgentRequest { turn, .. } => {
                    if let Some(prev) = self.turn {
                        assert!(turn > prev, "turn {turn} after {prev}");
                    }
                    self.turn = Some(turn);
                    self.segment = 0;
                }
                Output::TtsSpeak {
                    turn,
                    segment,
                    text,
                } => {
                    assert!(!text.trim().is_empty(), "empty sentence to TTS");
                    if self.turn.is_none_or(|t| turn >= t) {
                        self.turn = Some(turn);
                        self.segment = segment;
                    }
                }
                Output::Hangup { .. } => self.hangups += 1,
                _ => {}
            }
        }
        assert!(self.hangups <= 1, "hung up twice");
        if s.phase() == Phase::Ended {
            self.ended = true;
        }
    }

    fn echo(&mut self, s: &mut CallSession, now: Instant, id: u64) {
        let mut buf = [0u8; 24];
        s.handle_mark(now, mark_name(id, &mut buf));
    }
}

fn fire_timers(s: &mut CallSession, obs: &mut Observer, until: Instant, now: &mut Instant) {
    for _ in 0..10_000 {
        match s.poll_timeout() {
            Some((deadline, _)) if deadline <= until => {
                obs.work += 1;
                *now = (*now).max(deadline);
                s.handle_timeout(*now);
                obs.drain(s, *now);
            }
            _ => break,
        }
    }
    *now = (*now).max(until);
}

/// One fuzz input: the bytes become an [`Input`] the way `libfuzzer-sys` builds one
/// (`arbitrary_take_rest`); bytes that do not make one are skipped.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let debug = std::env::var_os("KAV_FUZZ_DEBUG").is_some();
    if debug {
        eprintln!("{input:#?}");
    }
    let scfg = session_config(input.greeting, input.pcm16k);
    let mut obs = Observer {
        bound: FRAME * (scfg.playout.lead_frames.max(1) + 1),
        ..Observer::default()
    };
    let t0 = Instant::now();
    let mut now = t0;
    obs.debug = debug.then_some(t0);
    let mut s = CallSession::new(now, scfg);
    obs.drain(&mut s, now);
    let frame_step = Duration::from_millis(20);
    let loud: [u8; 160] = std::array::from_fn(|i| if (i / 10) % 2 == 0 { 0x10 } else { 0x90 });
    let silence = [0xFFu8; 160];
    for step in input.steps.into_iter().take(500) {
        if obs.work > MAX_WORK {
            break;
        }
        if debug {
            eprintln!("{:>6} ms step {step:?}", (now - t0).as_millis());
        }
        match step {
            Step::Media(bytes) => s.handle_media(now, &bytes),
            Step::Loud(n) | Step::Silence(n) => {
                let frame = if matches!(step, Step::Loud(_)) {
                    &loud
                } else {
                    &silence
                };
                for _ in 0..n {
                    obs.work += 1;
                    let next = now + frame_step;
                    fire_timers(&mut s, &mut obs, next, &mut now);
                    s.handle_media(now, frame);
                    obs.drain(&mut s, now);
                }
            }
            Step::Dtmf(c) => s.handle_dtmf(now, c),
            Step::EchoMark(i) => {
                if !obs.mark_order.is_empty() {
                    let id = obs.mark_order[i as usize % obs.mark_order.len()];
                    obs.echo(&mut s, now, id);
                }
            }
            Step::EchoAll => {
                while obs.echoed < obs.mark_order.len() {
                    let id = obs.mark_order[obs.echoed];
                    obs.echoed += 1;
                    obs.echo(&mut s, now, id);
                    obs.drain(&mut s, now);
                }
            }
            Step::RawMark(name) => s.handle_mark(now, &name),
            Step::SttPartial(text) => s.handle_stt(now, SttEvent::Partial { text }),
            Step::SttFinal(text) => s.handle_stt(now, SttEvent::Final { text }),
            Step::AgentText { stale, text } => {
                let turn = obs.turn.unwrap_or(0).wrapping_sub(u32::from(stale));
                s.handle_agent(now, turn, AgentEvent::TextDelta(text));
            }
            Step::AgentCollect(max_digits) => s.handle_agent(
                now,
                obs.turn.unwrap_or(0),
                AgentEvent::CollectDigits { max_digits },
            ),
            Step::AgentHangup => s.handle_agent(now, obs.turn.unwrap_or(0), AgentEvent::Hangup),
            Step::AgentDone { ok } => {
                let result = if ok {
                    Ok(())
                } else {
                    Err(ProviderError::fatal("agent failed"))
                };
                s.handle_agent_done(now, obs.turn.unwrap_or(0), result);
            }
            Step::TtsAudio { stale, len } => {
                let len = usize::from(len % 4000);
                // The driver only hands TTS audio over while the pacer has room for it.
                if s.wants_tts_audio(len) {
                    let turn = obs.turn.unwrap_or(0).wrapping_sub(u32::from(stale));
                    let audio = vec![0x55u8; len];
                    s.handle_tts_audio(now, turn, obs.segment, &audio);
                }
            }
            Step::TtsDone { ok } => {
                let result = if ok {
                    Ok(())
                } else {
                    Err(ProviderError::fatal("tts failed"))
                };
                s.handle_tts_done(now, obs.turn.unwrap_or(0), obs.segment, result);
            }
            Step::Wait(ms) => {
                let until = now + Duration::from_millis(u64::from(ms));
                fire_timers(&mut s, &mut obs, until, &mut now);
            }
            Step::Timeout => {
                if let Some((deadline, _)) = s.poll_timeout() {
                    now = now.max(deadline);
                    s.handle_timeout(now);
                }
            }
            Step::Stop => s.handle_stop(now),
        }
        obs.drain(&mut s, now);
        if let Some((deadline, _)) = s.poll_timeout() {
            // A deadline in the past must be consumed by handle_timeout, not re-armed forever.
            if deadline <= now {
                s.handle_timeout(now);
                obs.drain(&mut s, now);
                if let Some((again, _)) = s.poll_timeout() {
                    assert!(
                        again > now || again > deadline,
                        "timer at {again:?} not consumed"
                    );
                }
            }
        }
    }
}
