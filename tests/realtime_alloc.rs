//! The per-frame path allocates nothing after construction: caller frames in (decode, resample,
//! VAD, DTMF, segmentation, STT forwarding) and paced bot frames and marks out. Proven with a
//! counting global allocator over many frames of speech, silence and playout.

use std::time::{Duration, Instant};

mod alloc_count;
use alloc_count::allocations_during;

use kav::config::Config;
use kav::providers::{AgentEvent, SttAudioFormat, SttEvent};
use kav::voice::session::{CallSession, Output, SessionConfig};

fn drain(s: &mut CallSession, marks: &mut Vec<u64>) -> (u64, bool) {
    let (mut media, mut utterance_end) = (0, false);
    while let Some(out) = s.poll_output() {
        match out {
            Output::Media(_) => media += 1,
            Output::Mark(id) => marks.push(id),
            Output::SttUtteranceEnd => utterance_end = true,
            _ => {}
        }
    }
    (media, utterance_end)
}

#[test]
fn caller_frames_and_paced_playout_allocate_nothing() {
    for format in [SttAudioFormat::Mulaw8k, SttAudioFormat::Pcm16k] {
        let cfg = Config::default();
        let t0 = Instant::now();
        let mut s = CallSession::new(t0, SessionConfig::from_config(&cfg, format));
        let speech = kav::caller::synthetic_speech(Duration::from_millis(1500));
        let silence = vec![0xFFu8; 8000];
        let mut marks = Vec::with_capacity(4096);
        let mut now = t0;

        // Inbound: speech (VAD start, STT forwarding) then silence (hangover, utterance end).
        let mut ended = false;
        let (inbound, ()) = allocations_during(|| {
            for chunk in speech.chunks(160).chain(silence.chunks(160)) {
                now += Duration::from_millis(20);
                s.handle_media(now, chunk);
                ended |= drain(&mut s, &mut marks).1;
            }
        });
        assert!(ended, "{format:?}: the utterance should have ended");
        assert_eq!(
            inbound, 0,
            "{format:?}: allocations on the inbound frame path"
        );

        // Provider events may allocate (once per turn): transcript, agent text, TTS audio.
        s.handle_stt(
            now,
            SttEvent::Final {
                text: "hello".into(),
            },
        );
        s.handle_agent(
            now,
            1,
            AgentEvent::TextDelta("A reply long enough to play for a while.".into()),
        );
        s.handle_agent_done(now, 1, Ok(()));
        drain(&mut s, &mut marks);
        s.handle_tts_audio(now, 1, 0, &[0x55u8; 8000]);
        drain(&mut s, &mut marks);

        // Outbound: paced frames, marks and their echoes, with caller silence still flowing in.
        let mut sent = 0;
        let (outbound, ()) = allocations_during(|| {
            for _ in 0..40 {
                now += Duration::from_millis(20);
                s.handle_timeout(now);
                s.handle_media(now, &silence[..160]);
                sent += drain(&mut s, &mut marks).0;
                let mut name = [0u8; 24];
                while let Some(id) = marks.pop() {
                    s.handle_mark(now, kav::voice::session::mark_name(id, &mut name));
                }
            }
        });
        assert!(sent >= 35, "{format:?}: only {sent} frames paced out");
        assert_eq!(
            outbound, 0,
            "{format:?}: allocations on the outbound frame path"
        );
    }
}
