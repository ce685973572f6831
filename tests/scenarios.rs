//! Whole-call scenarios in virtual time: the session driven by a scripted caller, Twilio's playback
//! buffer and scripted providers. Each runs in milliseconds of real time.

mod common;

use std::time::Duration;

use common::{CallerStep::*, Harness, NetModel, ScriptedReply, test_config};
use kav::providers::Role;
use kav::voice::events::{CallEvent, InputKind};
use kav::voice::session::Phase;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn normal_turn_records_every_latency_mark() {
    let cfg = test_config();
    let mut h = Harness::new(
        &cfg,
        vec![
            Silence(ms(200)),
            Speak(ms(800)),
            WaitForBot,
            Silence(ms(200)),
        ],
    )
    .transcripts(&["I want to book for tomorrow"]);
    h.replies = Box::new(|_, _| ScriptedReply::text("Sure. What time suits you?"));
    h.run(Duration::from_secs(20));

    let turns = h.turns();
    assert_eq!(turns.len(), 1, "{:?}", h.events);
    let t = &turns[0];
    assert_eq!(t.user_text, "I want to book for tomorrow");
    assert_eq!(t.bot_text, "Sure. What time suits you?");
    assert!(!t.interrupted);
    assert_eq!(
        h.tts_texts,
        vec!["Sure.", "What time suits you?"],
        "speech starts per sentence"
    );
    let m = t.marks;
    // Scripted latencies: partial 150 ms after the first STT frame, final 120 ms after our VAD
    // ended the utterance (hangover 140 ms), first token 300 ms, first TTS audio 100 ms.
    let first_partial = m.stt_first_partial_ms.unwrap();
    assert!((150..=260).contains(&first_partial), "{m:?}");
    assert_eq!(m.stt_final_ms, Some(140 + 120), "{m:?}");
    assert_eq!(m.ai_latency_ms, Some(300), "{m:?}");
    assert_eq!(m.tts_ready_ms, Some(100), "{m:?}");
    // TOTAL = end of speech → first frame: hangover + final, agent (the first token "Sure. "
    // is already a sentence), TTS. The engine itself adds nothing in virtual time.
    assert_eq!(m.total_ms, Some(140 + 120 + 300 + 100), "{m:?}");
    // Five word deltas 20 ms apart after the first token; done with the last one + 20 ms.
    assert_eq!(m.ai_total_ms, Some(300 + 5 * 20), "{m:?}");
    // The last sentence reaches TTS only when the agent finishes, 100 ms after the first; the
    // scripted TTS is faster than real time, so it finishes before the 1250 ms of speech it made.
    let tts_total = m.tts_total_ms.unwrap();
    assert!((100..1250).contains(&tts_total), "{m:?}");
    assert!(tts_total > m.tts_ready_ms.unwrap(), "{m:?}");
    assert_eq!(h.session.phase(), Phase::Listening);
    assert_eq!(h.session.pacer_stats().underrun_events, 0);
}

#[test]
fn playout_is_paced_with_a_bounded_lead() {
    let cfg = test_config(); // lead 5 frames, mark every 5
    let mut h =
        Harness::new(&cfg, vec![Speak(ms(600)), WaitForBot]).transcripts(&["tell me a long story"]);
    let long =
        "This is a long reply that goes on for several seconds so that pacing can be observed. "
            .repeat(3);
    h.replies = Box::new(move |_, _| ScriptedReply::text(&long));
    h.run(Duration::from_secs(60));

    let sent = &h.frames_sent_at;
    assert!(sent.len() > 500, "{} frames", sent.len());
    // After the initial lead, frames leave exactly one per 20 ms (virtual time, no jitter).
    let gaps: Vec<u128> = sent
        .windows(2)
        .skip(5)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    let off_grid = gaps.iter().filter(|g| **g != 20).count();
    assert_eq!(off_grid, 0, "gaps {:?}", &gaps[..20.min(gaps.len())]);
    assert!(
        h.max_twilio_buffer <= 10,
        "Twilio buffered {} frames",
        h.max_twilio_buffer
    );
    assert_eq!(h.session.pacer_stats().underrun_events, 0);
    assert_eq!(
        h.session.pacer_stats().overflow_bytes,
        0,
        "backpressure, not drops"
    );
}

#[test]
fn barge_in_clears_cancels_and_keeps_only_what_was_heard() {
    let cfg = test_config();
    let mut h = Harness::new(
        &cfg,
        vec![
            Speak(ms(600)),
            WaitForBotAudio(ms(1000)),
            Speak(ms(700)),
            WaitForBot,
            Silence(ms(100)),
        ],
    )
    .transcripts(&["what are your hours", "wait, stop"]);
    let reply = "We are open from nine in the morning. Until late at night. Every day of the week.";
    h.replies = Box::new(move |user, _| {
        if user.starts_with("wait") {
            ScriptedReply::text("Okay.")
        } else {
            ScriptedReply::text(reply)
        }
    });
    h.run(Duration::from_secs(30));

    assert_eq!(h.clears.len(), 1, "exactly one clear");
    let onset = h.speech_onsets[1];
    let reaction = h.clears[0] - onset;
    // VAD start window (60 ms voiced) + false-barge-in guard (80 ms voiced) on 20 ms frames.
    assert!(reaction <= ms(120), "barge-in reaction {reaction:?}");

    let turns = h.turns();
    assert_eq!(turns.len(), 2, "{turns:?}");
    let first = &turns[0];
    assert!(first.interrupted);
    assert!(
        !first.bot_text.is_empty() && reply.starts_with(&first.bot_text),
        "heard {:?}",
        first.bot_text
    );
    assert!(
        first.bot_text.len() < reply.len() / 2,
        "heard {:?}",
        first.bot_text
    );
    // ~1.1 s played at 50 ms per character ≈ 22 characters, cut back to a word boundary.
    assert!(
        (10..=30).contains(&first.bot_text.len()),
        "heard {:?}",
        first.bot_text
    );
    assert!(
        h.cancels.iter().any(|c| c.starts_with("tts:")),
        "{:?}",
        h.cancels
    );
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, CallEvent::BargeIn { .. }))
    );

    // The agent's next request sees the truncated reply, flagged, then the new user message.
    let (_, _, history) = h.agent_requests.last().unwrap();
    let assistant = history.iter().find(|m| m.role == Role::Assistant).unwrap();
    assert_eq!(assistant.text, first.bot_text);
    assert!(assistant.interrupted);
    assert_eq!(history.last().unwrap().text, "wait, stop");
    assert_eq!(turns[1].bot_text, "Okay.");
    assert!(!turns[1].interrupted);
}

#[test]
fn short_noise_during_bot_speech_is_not_a_barge_in() {
    let cfg = test_config();
    let mut h = Harness::new(
        &cfg,
        vec![
            Speak(ms(600)),
            WaitForBotAudio(ms(400)),
            Speak(ms(60)),
            WaitForBot,
        ],
    )
    .transcripts(&["hello"]);
    h.replies = Box::new(|_, _| {
        ScriptedReply::text("Hello there, how can I help you today with your booking?")
    });
    h.run(Duration::from_secs(30));

    assert!(h.clears.is_empty(), "noise must not cut the bot off");
    assert_eq!(h.session.counters().false_barge_ins, 1);
    let turns = h.turns();
    assert_eq!(turns.len(), 1);
    assert!(!turns[0].interrupted);
}

#[test]
fn barge_in_can_be_disabled() {
    let mut cfg = test_config();
    cfg.turn.barge_in = false;
    let mut h = Harness::new(
        &cfg,
        vec![
            Speak(ms(600)),
            WaitForBotAudio(ms(400)),
            Speak(ms(500)),
            WaitForBot,
        ],
    )
    .transcripts(&["hello"]);
    h.replies = Box::new(|_, _| {
        ScriptedReply::text("Hello there, how can I help you today with your booking?")
    });
    h.run(Duration::from_secs(30));
    assert!(h.clears.is_empty());
    assert!(h.session.counters().speech_ignored >= 1);
}

fn digits_harness(keys: &[CallerStepKey], tail: Duration) -> Harness {
    let cfg = test_config();
    let mut steps = vec![Speak(ms(600)), WaitForBot];
    for k in keys {
        match k {
            CallerStepKey::Key(c) => {
                steps.push(Key(*c));
                steps.push(Silence(ms(200)));
            }
            CallerStepKey::Pause(d) => steps.push(Silence(*d)),
        }
    }
    steps.push(Silence(tail));
    let mut h = Harness::new(&cfg, steps).transcripts(&["book me in"]);
    h.replies = Box::new(|_, digits| {
        if digits {
            ScriptedReply::text("Thanks.")
        } else {
            let mut r = ScriptedReply::text("Please type your phone number and press pound.");
            r.collect_digits = Some(10);
            r
        }
    });
    h
}

enum CallerStepKey {
    Key(char),
    Pause(Duration),
}

fn keys(s: &str) -> Vec<CallerStepKey> {
    s.chars().map(CallerStepKey::Key).collect()
}

fn digit_turn(h: &Harness) -> (String, &'static str) {
    let committed = h.events.iter().find_map(|e| match e {
        CallEvent::Digits {
            digits,
            committed_by,
        } => Some((digits.clone(), *committed_by)),
        _ => None,
    });
    committed.expect("digits committed")
}

#[test]
fn dtmf_hash_commits_and_star_clears() {
    let mut h = digits_harness(&keys("12*050123#"), ms(3000));
    h.run(Duration::from_secs(30));
    assert_eq!(digit_turn(&h), ("050123".to_string(), "hash"));
    let (_, digits, history) = h.agent_requests.last().unwrap();
    assert!(*digits, "typed turn");
    assert_eq!(history.last().unwrap().text, "050123");
    let turns = h.turns();
    assert_eq!(turns.last().unwrap().input, InputKind::Digits);
    assert_eq!(turns.last().unwrap().bot_text, "Thanks.");
}

#[test]
fn dtmf_inter_digit_timeout_commits_what_was_typed() {
    let mut h = digits_harness(&keys("0501"), ms(8000));
    h.run(Duration::from_secs(30));
    assert_eq!(digit_turn(&h), ("0501".to_string(), "timeout"));
}

#[test]
fn dtmf_collection_with_no_keys_times_out_to_the_agent() {
    let mut cfg = test_config();
    cfg.dtmf.overall_timeout_ms = 4000;
    cfg.dtmf.inter_digit_timeout_ms = 3000;
    let mut h = digits_harness(&[], ms(6000));
    h.session = kav::voice::session::CallSession::new(
        h.now,
        kav::voice::session::SessionConfig::from_config(&cfg, Default::default()),
    );
    h.run(Duration::from_secs(30));
    assert_eq!(digit_turn(&h), (String::new(), "timeout"));
}

#[test]
fn dtmf_max_digits_commits_without_hash() {
    let mut h = digits_harness(&keys("0501234567"), ms(500));
    h.run(Duration::from_secs(30));
    assert_eq!(digit_turn(&h), ("0501234567".to_string(), "max_digits"));
}

#[test]
fn hash_after_a_max_length_commit_is_swallowed() {
    let mut h = digits_harness(&keys("0501234567#"), ms(8000));
    h.run(Duration::from_secs(40));
    assert_eq!(digit_turn(&h), ("0501234567".to_string(), "max_digits"));
    let digit_turns: Vec<_> = h
        .turns()
        .into_iter()
        .filter(|t| t.input == InputKind::Digits)
        .collect();
    assert_eq!(digit_turns.len(), 1, "{digit_turns:?}");
    assert!(
        !digit_turns[0].interrupted,
        "the trailing # must not cut the reply"
    );
}

#[test]
fn keys_typed_during_the_prompt_interrupt_it() {
    let cfg = test_config();
    let steps = vec![
        Speak(ms(600)),
        WaitForBotAudio(ms(600)),
        Key('0'),
        Silence(ms(200)),
        Key('5'),
        Key('#'),
        WaitForBot,
    ];
    let mut h = Harness::new(&cfg, steps).transcripts(&["book me in"]);
    h.replies = Box::new(|_, digits| {
        if digits {
            ScriptedReply::text("Thanks.")
        } else {
            let mut r = ScriptedReply::text(
                "Please type your phone number and press pound when you are done, thank you.",
            );
            r.collect_digits = Some(10);
            r
        }
    });
    h.run(Duration::from_secs(30));
    assert_eq!(h.clears.len(), 1, "type-ahead stops the prompt");
    assert_eq!(digit_turn(&h), ("05".to_string(), "hash"));
}

#[test]
fn speech_during_collection_before_any_key_becomes_a_spoken_turn() {
    let mut h = digits_harness(&[CallerStepKey::Pause(ms(300))], ms(10));
    // Caller says the number instead of typing it.
    h = {
        let cfg = test_config();
        let steps = vec![
            Speak(ms(600)),
            WaitForBot,
            Silence(ms(300)),
            Speak(ms(900)),
            WaitForBot,
        ];
        let mut n =
            Harness::new(&cfg, steps).transcripts(&["book me in", "oh five oh one two three"]);
        n.replies = std::mem::replace(&mut h.replies, Box::new(|_, _| ScriptedReply::text("x")));
        n
    };
    h.run_for(Duration::from_secs(8));
    assert!(h.agent_requests.len() >= 2);
    let (_, digits, history) = &h.agent_requests[1];
    assert!(!digits);
    assert_eq!(history.last().unwrap().text, "oh five oh one two three");
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, CallEvent::Digits { .. }))
    );
}

#[test]
fn slow_tts_is_throttled_not_dropped_and_underruns_are_recorded() {
    let cfg = test_config();
    let mut h = Harness::new(&cfg, vec![Speak(ms(600)), WaitForBot]).transcripts(&["hello"]);
    h.replies =
        Box::new(|_, _| ScriptedReply::text(&"A slow synthesiser reads this out loud. ".repeat(4)));
    // 200 ms of audio takes 260 ms to make: playback must starve now and then.
    h.lat.tts_chunk_gap = ms(260);
    h.run(Duration::from_secs(120));
    let stats = h.session.pacer_stats();
    assert!(stats.underrun_events > 0, "{stats:?}");
    assert!(stats.underrun_ms > 0);
    assert_eq!(stats.overflow_bytes, 0);
    assert_eq!(h.turns().len(), 1);
    assert!(!h.turns()[0].interrupted);
}

#[test]
fn fast_tts_fills_the_buffer_then_waits_for_playout() {
    let cfg = test_config(); // 1 s playout buffer
    let mut h = Harness::new(&cfg, vec![Speak(ms(600)), WaitForBot]).transcripts(&["hello"]);
    h.replies =
        Box::new(|_, _| ScriptedReply::text(&"Twenty seconds of reply audio at most. ".repeat(10)));
    h.run_for(Duration::from_secs(4));
    // Four seconds in: far less than the reply has been produced, because production waits.
    assert!(h.session.phase() == Phase::BotSpeaking);
    assert!(h.max_twilio_buffer <= 10);
    h.run(Duration::from_secs(120));
    assert_eq!(h.session.pacer_stats().overflow_bytes, 0);
    assert_eq!(h.session.pacer_stats().underrun_events, 0);
}

#[test]
fn stt_timeout_uses_the_last_partial_or_speaks_the_fallback() {
    let cfg = test_config();
    let mut h =
        Harness::new(&cfg, vec![Speak(ms(700)), WaitForBot]).transcripts(&["maybe tomorrow"]);
    h.lat.stt_final = ms(10_000); // recogniser never finalises in time
    h.run(Duration::from_secs(30));
    assert_eq!(h.session.counters().stt_timeouts, 1);
    let (_, _, history) = h.agent_requests.last().expect("agent still asked");
    assert_eq!(history.last().unwrap().text, "maybe", "partial used");

    let mut h = Harness::new(&cfg, vec![Speak(ms(700)), WaitForBot]).transcripts(&[""]);
    h.lat.stt_final = ms(10_000);
    h.lat.stt_partial = ms(10_000);
    h.run(Duration::from_secs(30));
    assert!(h.agent_requests.is_empty());
    assert_eq!(h.tts_texts, vec![cfg.call.fallback_reply.clone()]);
}

#[test]
fn agent_timeout_and_failure_speak_the_fallback_and_the_call_goes_on() {
    let cfg = test_config();
    for mode in ["stall", "fail"] {
        let mut h = Harness::new(
            &cfg,
            vec![
                Speak(ms(600)),
                WaitForBot,
                Silence(ms(300)),
                Speak(ms(600)),
                WaitForBot,
            ],
        )
        .transcripts(&["first", "second"]);
        let mut n = 0;
        h.replies = Box::new(move |_, _| {
            n += 1;
            let mut r = ScriptedReply::text("Fine.");
            if n == 1 {
                r.stall = mode == "stall";
                r.fail = mode == "fail";
            }
            r
        });
        h.run(Duration::from_secs(40));
        let kind = if mode == "stall" {
            "agent_timeout"
        } else {
            "agent_error"
        };
        let warning = h.events.iter().find_map(|e| match e {
            CallEvent::Warning { kind: k, detail } if *k == kind => Some(detail.clone()),
            _ => None,
        });
        let detail = warning.unwrap_or_else(|| panic!("{mode}: no {kind} warning"));
        if mode == "fail" {
            // The trace says what kind of failure it was and what the caller heard instead.
            assert!(detail.contains("(retryable)"), "{detail}");
            assert!(detail.contains("fallback reply was spoken"), "{detail}");
        }
        let turns = h.turns();
        assert_eq!(turns.len(), 2, "{mode}: {turns:?}");
        assert_eq!(turns[0].bot_text, cfg.call.fallback_reply);
        assert_eq!(turns[1].bot_text, "Fine.");
    }
}

#[test]
fn tts_failure_speaks_the_fallback_once_and_the_call_goes_on() {
    let cfg = test_config();
    // failures = 2: the reply fails, then its fallback too (synthesis fully down for that turn).
    for failures in [1, 2] {
        let mut h = Harness::new(
            &cfg,
            vec![
                Speak(ms(600)),
                WaitForBot,
                Silence(ms(300)),
                Speak(ms(600)),
                WaitForBot,
            ],
        )
        .transcripts(&["first", "second"]);
        h.replies = Box::new(|_, _| ScriptedReply::text("Fine."));
        h.tts_failures = failures;
        h.run(Duration::from_secs(40));
        let warnings = h
            .events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    CallEvent::Warning {
                        kind: "tts_error",
                        ..
                    }
                )
            })
            .count();
        assert_eq!(warnings, failures, "{:?}", h.events);
        let turns = h.turns();
        assert_eq!(turns.len(), 2, "{failures}: {turns:?}");
        let fallback = &cfg.call.fallback_reply;
        assert_eq!(
            h.tts_texts,
            vec!["Fine.", fallback.as_str(), "Fine."],
            "fallback asked for once, never in a loop"
        );
        let heard = if failures == 1 { fallback.as_str() } else { "" };
        assert_eq!(turns[0].bot_text, heard);
        assert_eq!(turns[1].bot_text, "Fine.");
    }
}

#[test]
fn caller_who_keeps_talking_merges_into_one_turn() {
    let cfg = test_config();
    // Pause long enough to end the utterance and start the agent, but resume before any audio.
    let mut h = Harness::new(
        &cfg,
        vec![Speak(ms(600)), Silence(ms(500)), Speak(ms(600)), WaitForBot],
    )
    .transcripts(&["I want to book", "for four people"]);
    h.lat.agent_first = ms(600);
    h.run(Duration::from_secs(30));
    assert!(
        h.cancels.iter().any(|c| c.starts_with("agent:")),
        "{:?}",
        h.cancels
    );
    let turns = h.turns();
    assert_eq!(turns.len(), 1, "{turns:?}");
    assert_eq!(turns[0].user_text, "I want to book for four people");
    assert!(h.clears.is_empty());
}

#[test]
fn greeting_plays_first_and_hangup_follows_the_last_words() {
    let mut cfg = test_config();
    cfg.call.greeting = "Hello, you reached the studio.".into();
    let mut h =
        Harness::new(&cfg, vec![WaitForBot, Speak(ms(600)), WaitForBot]).transcripts(&["goodbye"]);
    h.replies = Box::new(|_, _| {
        let mut r = ScriptedReply::text("Goodbye!");
        r.hangup = true;
        r
    });
    h.run(Duration::from_secs(30));
    let turns = h.turns();
    assert_eq!(turns[0].input, InputKind::Greeting);
    assert_eq!(turns[0].bot_text, "Hello, you reached the studio.");
    assert_eq!(h.hangup, Some("agent"));
    assert_eq!(h.session.phase(), Phase::Ended);
}

#[test]
fn media_payloads_of_any_length_are_reframed() {
    let cfg = test_config();
    let mut h = Harness::new(&cfg, vec![]);
    for len in [1usize, 159, 160, 161, 333, 4000] {
        h.session.handle_media(h.now, &vec![0xFFu8; len]);
    }
    assert_eq!(
        h.session.counters().frames_in,
        (1 + 159 + 160 + 161 + 333 + 4000) as u64 / 160
    );
    h.session.handle_mark(h.now, "not-ours");
    h.session.handle_mark(h.now, "k999");
    assert_eq!(h.session.counters().unknown_marks, 2);
}

#[test]
fn stop_mid_reply_records_what_was_heard() {
    let cfg = test_config();
    let mut h = Harness::new(&cfg, vec![Speak(ms(600))]).transcripts(&["hi"]);
    h.replies = Box::new(|_, _| {
        ScriptedReply::text("A reply that the caller will not hear to the end, sadly.")
    });
    h.run_for(ms(2500));
    assert_eq!(h.session.phase(), Phase::BotSpeaking);
    let now = h.now;
    h.session.handle_stop(now);
    h.drain();
    let turns = h.turns();
    assert_eq!(turns.len(), 1);
    assert!(turns[0].interrupted);
    assert_eq!(h.session.phase(), Phase::Ended);
    assert!(h.session.poll_timeout().is_none());
}

// ---- Playout across a network: RTT, jitter, TCP stalls (seeded, virtual time). ----

const LONG_REPLY: &str = "Our clinic is open from nine in the morning until seven in the evening. \
    On Fridays we close at two in the afternoon. You can book by phone or on the website. \
    Parking is free for patients in the lot behind the building.";

fn long_reply_call(net: NetModel) -> Harness {
    let mut h = Harness::new(&test_config(), vec![Speak(ms(600)), WaitForBot])
        .transcripts(&["what are your opening hours"])
        .network(net);
    h.replies = Box::new(|_, _| ScriptedReply::text(LONG_REPLY));
    h.run(Duration::from_secs(60));
    h
}

#[test]
fn gap_free_playout_at_rtt_0_to_300_with_jitter_and_echo_stalls() {
    for rtt in [0u64, 100, 200, 300] {
        for seed in [1u64, 2, 3] {
            let net = NetModel {
                stall_every: Some(ms(2_000)),
                stall_up: true,
                ..NetModel::rtt(rtt, 20, seed)
            };
            let h = long_reply_call(net);
            let ctx = format!("rtt {rtt} seed {seed}");
            assert!(h.stalls().1 > 0, "{ctx}: the echo path stalled");
            let turns = h.turns();
            assert_eq!(turns.len(), 1, "{ctx}");
            assert!(!turns[0].interrupted, "{ctx}");
            assert_eq!(turns[0].bot_text, LONG_REPLY.replace("    ", ""), "{ctx}");
            let stats = h.session.pacer_stats();
            assert_eq!(h.twilio_underruns, 0, "{ctx}: Twilio ran dry {stats:?}");
            assert_eq!(stats.underrun_events, 0, "{ctx}");
            assert_eq!(
                stats.lead_holds, 0,
                "{ctx}: late echoes never slow the schedule"
            );
            // Frames leave on the 20 ms grid after the priming burst, whatever the echoes do.
            let off_grid = h
                .frames_sent_at
                .windows(2)
                .skip(5)
                .filter(|w| w[1] - w[0] != ms(20))
                .count();
            assert_eq!(off_grid, 0, "{ctx}");
            // Lead at Twilio bounded: what is buffered there never exceeds 300 ms + RTT.
            assert!(
                h.max_twilio_buffer as u64 * 20 <= 300 + rtt,
                "{ctx}: {} frames buffered",
                h.max_twilio_buffer
            );
            assert!(stats.lead_max_ms <= 100, "{ctx}: {stats:?}");
            // The estimate sees the round trip (plus jitter, stalls and the playback tick).
            let srtt = stats.srtt_ms;
            assert!((rtt..=rtt + 150).contains(&srtt), "{ctx}: srtt {srtt}");
            assert_eq!(turns[0].rtt_ms, Some(srtt as u32), "{ctx}");
        }
    }
}

#[test]
fn barge_in_across_the_network_clears_at_once_and_keeps_what_was_played() {
    let mut reactions = Vec::new();
    for rtt in [0u64, 100, 200, 300] {
        let mut h = Harness::new(
            &test_config(),
            vec![
                Speak(ms(600)),
                WaitForBotAudio(ms(2_300)),
                Speak(ms(700)),
                WaitForBot,
                Silence(ms(100)),
            ],
        )
        .transcripts(&["what are your opening hours", "hold on"])
        .network(NetModel::rtt(rtt, 20, 7));
        h.replies = Box::new(|user, _| {
            if user.starts_with("hold") {
                ScriptedReply::text("Sure.")
            } else {
                ScriptedReply::text(LONG_REPLY)
            }
        });
        h.run(Duration::from_secs(60));
        let ctx = format!("rtt {rtt}");
        assert_eq!(h.clears.len(), 1, "{ctx}");
        // Server side: VAD onset → clear, the same with or without network delay.
        let reaction = h.clears[0] - h.speech_onsets[1];
        assert!(reaction <= ms(120), "{ctx}: {reaction:?}");
        reactions.push(reaction);
        let turns = h.turns();
        assert_eq!(turns.len(), 2, "{ctx}");
        let heard = &turns[0].bot_text;
        assert!(turns[0].interrupted, "{ctx}");
        assert!(LONG_REPLY.starts_with(heard.as_str()), "{ctx}: {heard:?}");
        // What Twilio played before the clear reached it, at 50 ms of audio per character:
        // the heard text is that, cut back to the last whole word.
        let played_chars = h.played_per_reply[0] as usize * 20 / 50;
        let cut_word = LONG_REPLY[heard.len()..]
            .split(' ')
            .nth(1)
            .map_or(0, str::len);
        assert!(
            heard.len() <= played_chars + 1 && played_chars <= heard.len() + cut_word + 3,
            "{ctx}: heard {} chars {heard:?}, Twilio played {played_chars} chars",
            heard.len()
        );
        assert_eq!(turns[1].bot_text, "Sure.", "{ctx}");
        assert_eq!(h.twilio_underruns, 0, "{ctx}");
    }
    let first = reactions[0];
    assert!(
        reactions.iter().all(|r| r.abs_diff(first) <= ms(20)),
        "within one frame at every RTT: {reactions:?}"
    );
}

#[test]
fn a_tcp_stall_towards_twilio_costs_at_most_the_stall_and_playout_goes_on() {
    for seed in [11u64, 12, 13] {
        let net = NetModel {
            stall_every: Some(ms(1_500)),
            stall_down: true,
            ..NetModel::rtt(200, 20, seed)
        };
        let h = long_reply_call(net);
        let ctx = format!("seed {seed}");
        let (down, _) = h.stalls();
        assert!(down > 0, "{ctx}");
        let stats = h.session.pacer_stats();
        // Nothing can play what is stuck in the network; the pacer must not add to it.
        assert!(
            h.twilio_underruns <= down as u64,
            "{ctx}: {} gaps for {down} stalls",
            h.twilio_underruns
        );
        assert!(
            h.twilio_gap_ms <= down as u64 * 500,
            "{ctx}: {} ms",
            h.twilio_gap_ms
        );
        assert_eq!(stats.underrun_events, 0, "{ctx}");
        assert_eq!(stats.lead_holds, 0, "{ctx}");
        let turns = h.turns();
        assert_eq!(turns.len(), 1, "{ctx}");
        assert!(!turns[0].interrupted, "{ctx}");
    }
}

/// One long reply (ending the call when `hangup`) to a peer whose echoes come `late`.
fn late_echo_call(late: Duration, rtt_ms: u64, hangup: bool) -> Harness {
    let net = NetModel {
        echo_extra: late,
        ..NetModel::rtt(rtt_ms, 0, 5)
    };
    let mut h = Harness::new(&test_config(), vec![Speak(ms(600)), WaitForBot])
        .transcripts(&["bye"])
        .network(net);
    h.replies = Box::new(move |_, _| ScriptedReply {
        hangup,
        ..ScriptedReply::text(LONG_REPLY)
    });
    h
}

#[test]
fn echoes_ten_seconds_late_neither_stall_nor_flood_and_the_goodbye_is_not_cut() {
    let mut h = late_echo_call(Duration::from_secs(10), 100, true);
    h.run(Duration::from_secs(60));
    let stats = h.session.pacer_stats();
    let cfg = test_config();
    // Never more than the cap unconfirmed at Twilio (plus what is in flight on the link).
    let cap_frames = cfg.playout.unconfirmed_max_ms as usize / 20;
    assert!(h.max_twilio_buffer <= cap_frames, "{}", h.max_twilio_buffer);
    assert!(stats.missing_echoes > 0, "{stats:?}");
    assert!(stats.stale_echoes > 0, "{stats:?}");
    // The goodbye played to its end before the hang-up.
    assert_eq!(h.hangup, Some("agent"));
    let turns = h.turns();
    assert_eq!(turns.len(), 1);
    assert!(!turns[0].interrupted);
    let total_frames = h.frames_sent_at.len() as u64;
    assert_eq!(h.played_per_reply[0], total_frames, "every frame played");
    // Counted, and logged once per call.
    let warnings = |kind: &str| {
        h.events
            .iter()
            .filter(|e| matches!(e, CallEvent::Warning { kind: k, .. } if *k == kind))
            .count()
    };
    assert_eq!(warnings("missing_mark_echo"), 1);
    assert!(warnings("stale_mark_echo") <= 1);
}

#[test]
fn a_peer_that_never_echoes_is_not_fed_more_than_the_cap_and_the_call_still_ends() {
    let mut h = late_echo_call(Duration::from_secs(3_600), 0, false);
    h.run_for(Duration::from_secs(3));
    let cfg = test_config();
    let sent = h.frames_sent_at.len();
    assert_eq!(sent, cfg.playout.unconfirmed_max_ms as usize / 20, "capped");
    assert_eq!(h.session.pacer_stats().lead_holds, 1);
    h.run_for(Duration::from_secs(60));
    assert_eq!(h.turns().len(), 1, "the reply ends by the schedule");
    assert!(h.frames_sent_at.len() > sent, "playback went on");
}

#[test]
fn reply_sent_whole_before_synthesis_ends_still_finishes() {
    // "Ok" is 100 ms of audio: one mark interval, all of it in the priming burst before the
    // synthesiser says it is done. The reply used to wait for ever for a final mark never sent.
    for reply in ["Ok", "Yes", "Fine."] {
        let h = common::two_turn_call(&test_config(), reply, &[]);
        let turns = h.turns();
        assert_eq!(turns.len(), 2, "{reply}: {turns:?}");
        assert_eq!(turns[0].bot_text, reply);
        assert_eq!(h.session.phase(), Phase::Listening);
    }
}

/// A long call keeps only the newest part of its conversation (`[booking] history_max_messages`
/// and `history_max_chars`): every agent request carries at most the cap, ending with the
/// caller's words of that turn and starting with a caller's message, and the session itself
/// holds no more.
#[test]
fn a_long_call_keeps_its_history_under_the_cap() {
    let mut cfg = test_config();
    cfg.booking.history_max_messages = 6;
    cfg.booking.history_max_chars = 400;
    const TURNS: usize = 25;
    let mut steps = Vec::new();
    for _ in 0..TURNS {
        steps.push(Speak(ms(600)));
        steps.push(WaitForBot);
        steps.push(Silence(ms(300)));
    }
    let said: Vec<String> = (0..TURNS)
        .map(|i| match i % 3 {
            0 => format!("question number {i} about the opening hours"),
            1 => format!("שאלה מספר {i}: כמה עולה חדר לשישה אנשים בערב?"),
            _ => format!("{i}"),
        })
        .collect();
    let said_refs: Vec<&str> = said.iter().map(String::as_str).collect();
    let mut h = Harness::new(&cfg, steps).transcripts(&said_refs);
    h.replies = Box::new(|_, _| ScriptedReply::text("We are open every day from nine until late."));
    h.run(Duration::from_secs(30 * TURNS as u64));

    assert_eq!(h.agent_requests.len(), TURNS, "{:?}", h.events);
    for (i, (_, _, history)) in h.agent_requests.iter().enumerate() {
        let chars: usize = history.iter().map(|m| m.text.chars().count()).sum();
        assert!(history.len() <= 6, "turn {i}: {history:?}");
        assert!(chars <= 400, "turn {i}: {chars}");
        assert_eq!(history.last().unwrap().text, said[i], "turn {i}");
        assert_eq!(history[0].role, Role::User, "turn {i}");
    }
    // Early on the whole conversation fits; at the end only the newest part is kept.
    assert_eq!(h.agent_requests[1].2.len(), 3);
    assert!(h.session.history().len() <= 6);
    assert!(
        h.session
            .history()
            .iter()
            .all(|m| !m.text.contains("number 0 ")),
        "{:?}",
        h.session.history()
    );
}
