//! The audio path on real recordings: human telephony prompts from Debian's
//! asterisk-core-sounds-en-wav (installed by scripts/setup.sh) and the generated DTMF sample.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kav::config::Config;
use kav::providers::SttAudioFormat;
use kav::providers::audio_file::load_mulaw_8k;
use kav::voice::events::CallEvent;
use kav::voice::session::{CallSession, Output, SessionConfig};

const ASTERISK: &str = "/usr/share/asterisk/sounds/en";

fn asterisk(name: &str) -> Vec<u8> {
    let path = Path::new(ASTERISK).join(name);
    assert!(
        path.exists(),
        "{} missing: run scripts/setup.sh (installs asterisk-core-sounds-en-wav)",
        path.display()
    );
    load_mulaw_8k(&path).expect("readable prompt")
}

fn sample(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("audio-samples")
        .join(name);
    load_mulaw_8k(path).expect("sample")
}

struct Run {
    outputs: Vec<(Duration, Output)>,
}

/// Feeds audio in 20 ms frames (with a second of silence after it) and records outputs.
fn feed(s: &mut CallSession, t0: Instant, start: Duration, audio: &[u8]) -> Run {
    let mut outputs = Vec::new();
    let silence = vec![0xFFu8; 8000];
    for (i, frame) in audio.chunks(160).chain(silence.chunks(160)).enumerate() {
        let at = start + Duration::from_millis(20 * i as u64);
        s.handle_media(t0 + at, frame);
        while let Some(o) = s.poll_output() {
            outputs.push((at, o));
        }
    }
    Run { outputs }
}

#[test]
fn human_prompts_become_one_utterance_each_and_silence_none() {
    let cfg = Config::default();
    let files = [
        "vm-goodbye.wav",
        "auth-thankyou.wav",
        "call-forwarding.wav",
        "all-circuits-busy-now.wav",
        "check-number-dial-again.wav",
    ];
    for name in files {
        let audio = asterisk(name);
        let t0 = Instant::now();
        let mut s = CallSession::new(
            t0,
            SessionConfig::from_config(&cfg, SttAudioFormat::Mulaw8k),
        );
        let run = feed(&mut s, t0, Duration::ZERO, &audio);
        let ends = run
            .outputs
            .iter()
            .filter(|(_, o)| matches!(o, Output::SttUtteranceEnd))
            .count();
        let sent = run
            .outputs
            .iter()
            .filter(|(_, o)| matches!(o, Output::SttAudio(_)))
            .count();
        assert!(ends >= 1, "{name}: no utterance detected");
        // The recogniser gets (nearly) all of the speech, pre-roll included.
        let speech_frames = audio.len() / 160;
        assert!(
            sent * 10 >= speech_frames * 7,
            "{name}: {sent} of {speech_frames} frames sent to STT"
        );
    }
    let t0 = Instant::now();
    let mut s = CallSession::new(
        t0,
        SessionConfig::from_config(&cfg, SttAudioFormat::Mulaw8k),
    );
    let run = feed(&mut s, t0, Duration::ZERO, &[0xFFu8; 8000 * 3]);
    assert!(
        run.outputs.is_empty(),
        "silence produced {:?}",
        run.outputs.first()
    );
}

#[test]
fn a_real_voice_barges_in_on_the_bot() {
    let cfg = Config::default();
    let t0 = Instant::now();
    let mut s = CallSession::new(
        t0,
        SessionConfig::from_config(&cfg, SttAudioFormat::Mulaw8k),
    );
    // Caller asks, the bot answers with 3 s of audio, the caller talks over it.
    feed(&mut s, t0, Duration::ZERO, &asterisk("vm-goodbye.wav"));
    let now = t0 + Duration::from_secs(3);
    s.handle_stt(
        now,
        kav::providers::SttEvent::Final {
            text: "hello".into(),
        },
    );
    s.handle_agent(
        now,
        1,
        kav::providers::AgentEvent::TextDelta("A long reply. ".repeat(10)),
    );
    s.handle_agent_done(now, 1, Ok(()));
    s.handle_tts_audio(now, 1, 0, &[0x55u8; 8000]);
    s.handle_timeout(now);
    while s.poll_output().is_some() {}
    let start = Duration::from_secs(3) + Duration::from_millis(200);
    let voice = asterisk("all-circuits-busy-now.wav");
    let run = feed(&mut s, t0, start, &voice);
    let clear = run
        .outputs
        .iter()
        .find(|(_, o)| matches!(o, Output::Clear { .. }))
        .map(|(at, _)| *at);
    let clear = clear.expect("real speech over the bot must clear playback");
    assert!(
        clear - start < Duration::from_millis(400),
        "clear after {:?}",
        clear - start
    );
    assert!(
        run.outputs
            .iter()
            .any(|(_, o)| matches!(o, Output::Event(CallEvent::BargeIn { .. })))
    );
}

#[test]
fn inband_tones_are_collected_and_merged_with_twilio_events() {
    let cfg = Config::default();
    let tones = sample("dtmf_0501234567_hash.wav");
    for with_events in [false, true] {
        let t0 = Instant::now();
        let mut s = CallSession::new(
            t0,
            SessionConfig::from_config(&cfg, SttAudioFormat::Mulaw8k),
        );
        let mut digits = None;
        let silence = vec![0xFFu8; 16000];
        // Each key is an 80 ms tone then 80 ms gap; Twilio's event arrives near the tone's end.
        let keys: Vec<char> = "0501234567#".chars().collect();
        for (i, frame) in tones.chunks(160).chain(silence.chunks(160)).enumerate() {
            let now = t0 + Duration::from_millis(20 * i as u64);
            s.handle_media(now, frame);
            if with_events && i % 8 == 4 && i / 8 < keys.len() {
                s.handle_dtmf(now, keys[i / 8]);
            }
            while let Some(o) = s.poll_output() {
                if let Output::Event(CallEvent::Digits {
                    digits: d,
                    committed_by,
                }) = o
                {
                    digits = Some((d, committed_by));
                }
            }
        }
        assert_eq!(
            digits,
            Some(("0501234567".to_string(), "hash")),
            "events too: {with_events}"
        );
        // Ten digits and the '#': one report per key press whatever the number of sources.
        assert_eq!(s.counters().digits, 11, "events too: {with_events}");
    }
}
