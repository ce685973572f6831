//! Wire codec unit tests: JSON string escaping and unescaping, numbers and digits, base64 across
//! chunk boundaries, and the exact bytes of the hand-written writers (ours and Twilio's side).

use super::*;

fn written(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    f(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn strings_are_escaped_for_json() {
    let nasty = "a\"b\\c\nd\re\tf\u{8}\u{c}\u{1}\u{1f}\u{7f}é/😀";
    let json = written(|o| put_str(o, nasty));
    assert_eq!(
        json,
        "\"a\\\"b\\\\c\\nd\\re\\tf\\b\\f\\u0001\\u001f\u{7f}é/😀\""
    );
    assert_eq!(serde_json::from_str::<String>(&json).unwrap(), nasty);
    assert_eq!(written(|o| put_str(o, "")), "\"\"");
}

#[test]
fn numbers_are_written_in_full() {
    for n in [0, 1, 9, 10, 99, 100, 12345, u64::MAX] {
        assert_eq!(written(|o| put_u64(o, n)), n.to_string());
    }
    assert_eq!(written(|o| put_u64_str(o, 42)), "\"42\"");
}

#[test]
fn digits_parse_strictly() {
    assert_eq!(parse_digits("0"), Some(0));
    assert_eq!(parse_digits("007"), Some(7));
    assert_eq!(parse_digits("18446744073709551615"), Some(u64::MAX));
    for bad in [
        "",
        "+1",
        "-1",
        " 1",
        "1 ",
        "1.0",
        "1e3",
        "18446744073709551616",
        "x",
    ] {
        assert_eq!(parse_digits(bad), None, "{bad:?}");
    }
}

#[test]
fn base64_crosses_chunk_boundaries() {
    for len in [
        0,
        1,
        2,
        3,
        B64_CHUNK - 1,
        B64_CHUNK,
        B64_CHUNK + 1,
        3 * B64_CHUNK + 2,
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        assert_eq!(
            written(|o| put_base64(o, &data)),
            BASE64.encode(&data),
            "len {len}"
        );
    }
}

#[test]
fn outbound_writers_are_exact() {
    assert_eq!(
        written(|o| write_media(o, "MZ1", &[0xFF, 0x7F, 0x00])),
        r#"{"event":"media","streamSid":"MZ1","media":{"payload":"/38A"}}"#
    );
    assert_eq!(
        written(|o| write_mark(o, "MZ1", "turn-3")),
        r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"turn-3"}}"#
    );
    assert_eq!(
        written(|o| write_clear(o, "MZ1")),
        r#"{"event":"clear","streamSid":"MZ1"}"#
    );
}

#[test]
fn twilio_side_writers_are_exact() {
    assert_eq!(
        written(|o| write_inbound_media(o, "MZ1", 4, 2, 40, &[1, 2])),
        r#"{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"AQI="},"streamSid":"MZ1"}"#
    );
    assert_eq!(
        written(|o| write_dtmf(o, "MZ1", 5, '#')),
        r##"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"#"}}"##
    );
    assert_eq!(
        written(|o| write_stop(o, "MZ1", 9, "AC1", "CA1")),
        r#"{"event":"stop","sequenceNumber":"9","stop":{"accountSid":"AC1","callSid":"CA1"},"streamSid":"MZ1"}"#
    );
    let start = Start {
        stream_sid: "MZ1".into(),
        account_sid: "AC1".into(),
        call_sid: "CA1".into(),
        ..Start::default()
    };
    assert_eq!(
        written(|o| write_start(o, &start)),
        r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"customParameters":{},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}},"streamSid":"MZ1"}"#
    );
}

#[test]
fn decoded_len_is_exact() {
    assert_eq!(decoded_payload_len(""), Some(0));
    assert_eq!(decoded_payload_len("AA=="), Some(1));
    assert_eq!(decoded_payload_len("AAA="), Some(2));
    assert_eq!(decoded_payload_len("AAAA"), Some(3));
    assert_eq!(decoded_payload_len("AAA"), None);
    assert_eq!(decoded_payload_len("="), None);
}

#[test]
fn escaped_strings_come_back_owned_and_unescaped() {
    let frame = r#"{"event":"mark","streamSid":"MZ\u0031","mark":{"name":"a\"b"}}"#;
    let Inbound::Mark(mark) = parse_inbound(frame).unwrap() else {
        panic!("not a mark")
    };
    assert!(matches!(mark.stream_sid, Cow::Owned(ref s) if s == "MZ1"));
    assert_eq!(mark.name, "a\"b");
    let plain = r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"n"}}"#;
    let Inbound::Mark(mark) = parse_inbound(plain).unwrap() else {
        panic!("not a mark")
    };
    assert!(matches!(mark.stream_sid, Cow::Borrowed("MZ1")));
    assert!(matches!(mark.name, Cow::Borrowed("n")));
}
