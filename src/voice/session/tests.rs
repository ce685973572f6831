//! Session unit tests: mark names round-trip, and the sentence splitter. Whole calls are tested
//! in `tests/scenarios.rs`.

use super::*;

#[test]
fn mark_names_round_trip() {
    let mut buf = [0u8; 24];
    for id in [0, 1, 9, 10, 12345, u64::MAX] {
        assert_eq!(parse_mark_name(mark_name(id, &mut buf)), Some(id));
    }
    assert_eq!(parse_mark_name("responsePart"), None);
}

#[test]
fn splitter_cuts_sentences_and_keeps_decimals() {
    let mut s = SentenceSplitter::default();
    s.push("Sure. The price is 3.5 shekels");
    assert_eq!(s.next_sentence(false).as_deref(), Some("Sure."));
    assert_eq!(s.next_sentence(false), None);
    s.push(" per minute! Anything else?");
    assert_eq!(
        s.next_sentence(false).as_deref(),
        Some("The price is 3.5 shekels per minute!")
    );
    assert_eq!(s.next_sentence(false), None);
    assert_eq!(s.next_sentence(true).as_deref(), Some("Anything else?"));
    assert!(s.is_empty());
}

#[test]
fn splitter_handles_hebrew() {
    let mut s = SentenceSplitter::default();
    s.push("בטח. מחר בעשר בבוקר מתאים?");
    assert_eq!(s.next_sentence(false).as_deref(), Some("בטח."));
    assert_eq!(
        s.next_sentence(true).as_deref(),
        Some("מחר בעשר בבוקר מתאים?")
    );
}
