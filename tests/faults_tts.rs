//! Fault injection (issue 15): the TTS stream fails *after* part of a reply has been played.
//! Deterministic, in virtual time: the sans-IO `CallSession` in the scenario harness (`tests/common`),
//! whose scripted synthesiser breaks off a chosen sentence after a chosen number of bytes, and whose
//! modelled Twilio plays 20 ms a frame and echoes marks. The promises: the call keeps its audio path
//! (no gap inside what is played, the next turn is heard), the caller hears the fallback when not
//! one sentence of the reply got through whole (otherwise the rest of the broken sentence is
//! skipped and the reply goes on), and the agent's record of what the caller heard — the turn's
//! `bot_text` and the history the next agent request carries — holds exactly the sentences whose
//! audio was sent whole, marked as cut short.
mod common;

use std::time::Duration;

use common::{CallerStep::*, Harness, ScriptedReply, test_config, two_turn_call};
use kav::providers::Role;
use kav::voice::events::CallEvent;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Bytes of mu-law the harness's synthesiser makes for a sentence (8 bytes per ms of audio).
fn full_audio(h: &Harness, sentence: &str) -> usize {
    sentence.chars().count() * h.lat.tts_per_char.as_millis() as usize * 8
}

fn tts_errors(h: &Harness) -> usize {
    h.events
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
        .count()
}

#[test]
fn tts_breaking_mid_sentence_records_only_whole_sentences_and_the_reply_goes_on() {
    let sentences = [
        "We open at nine.",
        "The studio is on Herzl street, next to the bakery.",
        "Anything else?",
    ];
    // The second sentence's stream dies after 200 ms of its audio (1,600 of its 4,000 bytes).
    let h = two_turn_call(
        &test_config(),
        "We open at nine. The studio is on Herzl street, next to the bakery. Anything else?",
        &[(1, 1_600)],
    );
    assert_eq!(tts_errors(&h), 1, "{:?}", h.events);
    // No fallback: a whole sentence got through, so the reply goes on after the broken one.
    assert_eq!(&h.tts_texts[..3], &sentences[..], "{:?}", h.tts_texts);
    assert_eq!(h.tts_texts[3..], ["Fine."], "{:?}", h.tts_texts);
    // What was sent: the first and third sentences whole, 1,600 bytes of the second.
    assert_eq!(h.tts_bytes[0], full_audio(&h, sentences[0]));
    assert_eq!(h.tts_bytes[1], 1_600);
    assert!(full_audio(&h, sentences[1]) > 1_600);
    assert_eq!(h.tts_bytes[2], full_audio(&h, sentences[2]));
    let sent: usize = h.tts_bytes[..3].iter().sum();
    assert_eq!(
        h.played_per_reply[0] as usize,
        sent.div_ceil(160),
        "every byte sent was played, nothing more"
    );
    assert_eq!(h.twilio_underruns, 0, "no gap where the sentence broke off");

    let turns = h.turns();
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_eq!(turns[0].bot_text, "We open at nine. Anything else?");
    assert!(turns[0].interrupted, "the reply was cut short");
    // The next turn works and its agent request carries what the caller heard, no more.
    assert_eq!(turns[1].bot_text, "Fine.");
    assert!(!turns[1].interrupted);
    assert_eq!(h.played_per_reply[1] as usize, h.tts_bytes[3].div_ceil(160));
    let (_, _, history) = &h.agent_requests[1];
    let said = history
        .iter()
        .find(|m| m.role == Role::Assistant)
        .expect("the first reply is in the history");
    assert_eq!(said.text, "We open at nine. Anything else?");
    assert!(said.interrupted);
}

#[test]
fn tts_breaking_in_the_only_sentence_speaks_the_fallback_and_the_next_turn_works() {
    let cfg = test_config();
    let fallback = cfg.call.fallback_reply.as_str();
    let reply = "Your table for four is booked for Friday at seven.";
    // For 100 ms the caller hears the start of the sentence, then the stream dies.
    let h = two_turn_call(&test_config(), reply, &[(0, 800)]);
    assert_eq!(tts_errors(&h), 1, "{:?}", h.events);
    assert_eq!(
        h.tts_texts,
        [reply, fallback, "Fine."],
        "fallback asked for once"
    );
    assert_eq!(h.tts_bytes[0], 800);
    assert_eq!(h.tts_bytes[1], full_audio(&h, fallback));
    assert_eq!(
        h.played_per_reply[0] as usize,
        (h.tts_bytes[0] + h.tts_bytes[1]).div_ceil(160),
        "the fragment, then the fallback"
    );
    assert_eq!(
        h.twilio_underruns, 0,
        "the fallback follows the fragment without a gap"
    );

    let turns = h.turns();
    assert_eq!(turns.len(), 2, "{turns:?}");
    // The caller never heard that the table is booked: the record must not say they did.
    assert_eq!(turns[0].bot_text, fallback);
    assert!(turns[0].interrupted);
    assert_eq!(turns[1].bot_text, "Fine.");
    let (_, _, history) = &h.agent_requests[1];
    assert!(
        history
            .iter()
            .all(|m| !m.text.contains("booked for Friday")),
        "{history:?}"
    );
}

#[test]
fn barge_in_after_a_broken_sentence_counts_only_whole_sentences_heard() {
    let cfg = test_config();
    let mut h = Harness::new(
        &cfg,
        vec![
            Speak(ms(700)),
            // Into the third sentence: the first and the fragment of the second have played.
            WaitForBotAudio(ms(2_200)),
            Speak(ms(900)),
            WaitForBot,
        ],
    )
    .transcripts(&["when are you open", "stop, thanks"]);
    let mut replies = vec![
        "We open at nine. The studio is on Herzl street, next to the bakery. Parking is free after six in the evening.",
        "Fine.",
    ]
    .into_iter();
    h.replies = Box::new(move |_, _| ScriptedReply::text(replies.next().unwrap_or("Fine.")));
    h.tts_breaks = vec![(1, 1_600)];
    h.run(Duration::from_secs(60));
    let turns = h.turns();
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert!(turns[0].interrupted);
    // "We open at nine." (800 ms) + 200 ms fragment, then part of the third sentence: the
    // fragment's words are not claimed, the third sentence's words heard so far are.
    assert!(
        turns[0].bot_text.starts_with("We open at nine. Parking"),
        "{:?}",
        turns[0].bot_text
    );
    assert!(
        !turns[0].bot_text.contains("Herzl"),
        "{:?}",
        turns[0].bot_text
    );
    assert_eq!(turns[1].bot_text, "Fine.");
}

#[test]
fn tts_breaking_in_the_last_sentence_ends_the_reply_and_the_next_turn_works() {
    let h = two_turn_call(
        &test_config(),
        "We open at nine. The studio is on Herzl street.",
        &[(1, 800)],
    );
    assert_eq!(tts_errors(&h), 1, "{:?}", h.events);
    assert_eq!(
        h.tts_texts,
        [
            "We open at nine.",
            "The studio is on Herzl street.",
            "Fine."
        ],
        "no fallback after a whole sentence"
    );
    let turns = h.turns();
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_eq!(turns[0].bot_text, "We open at nine.");
    assert!(turns[0].interrupted);
    assert_eq!(
        h.played_per_reply[0] as usize,
        (h.tts_bytes[0] + h.tts_bytes[1]).div_ceil(160)
    );
    assert_eq!(turns[1].bot_text, "Fine.");
}

#[test]
fn tts_breaking_mid_sentence_and_failing_on_the_fallback_leaves_the_call_working() {
    let cfg = test_config();
    let fallback = cfg.call.fallback_reply.as_str();
    let reply = "Your table for four is booked for Friday at seven.";
    // Synthesis is down: the reply breaks after 100 ms and the fallback fails outright.
    let h = two_turn_call(&test_config(), reply, &[(0, 800), (1, 0)]);
    assert_eq!(tts_errors(&h), 2, "{:?}", h.events);
    assert_eq!(
        h.tts_texts,
        [reply, fallback, "Fine."],
        "fallback asked for once"
    );
    let turns = h.turns();
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_eq!(turns[0].bot_text, "", "nothing heard whole");
    assert!(turns[0].interrupted);
    assert_eq!(h.played_per_reply[0], 5, "the 100 ms fragment");
    assert_eq!(turns[1].bot_text, "Fine.");
}
