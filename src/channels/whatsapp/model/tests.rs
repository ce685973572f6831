//! Unit tests of the WhatsApp wire formats: Meta webhook fixtures (text, BSUID-only senders,
//! interactive choices, failed statuses), Twilio form and status callbacks, status ordering,
//! media sha256 checks, Graph error classification, reply formatting and splitting, and PII
//! hashing in log ids.

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn twilio_status_callbacks_map_onto_our_delivery_states() {
    let base = [
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("MessageSid", "SM11111111111111111111111111111111"),
        ("From", "whatsapp:+97235550100"),
        ("To", "whatsapp:+972501234567"),
    ];
    let with = |status: &str, extra: &[(&str, &str)]| {
        let mut p = form(&base);
        p.push(("MessageStatus".into(), status.into()));
        p.extend(form(extra));
        p
    };
    let (u, business) = parse_twilio_status(&with("delivered", &[])).unwrap();
    assert_eq!(u.message_id, "SM11111111111111111111111111111111");
    assert_eq!(u.status, "delivered");
    assert_eq!(business, "97235550100");
    assert_eq!(u.recipient_id.as_deref(), Some("972501234567"));
    assert_eq!(u.error_code, None);
    assert!(is_twilio_status_callback(&with("read", &[])));

    let (u, _) = parse_twilio_status(&with("undelivered", &[("ErrorCode", "63024")])).unwrap();
    assert_eq!((u.status.as_str(), u.error_code), ("failed", Some(63024)));
    assert_eq!(u.error_title.as_deref(), Some("undelivered"));
    assert_eq!(
        DeliveryStatus::parse(&u.status),
        Some(DeliveryStatus::Failed)
    );
    // Early stages stay raw: recorded in the history, never a delivery state.
    let (u, _) = parse_twilio_status(&with("queued", &[("ErrorCode", "")])).unwrap();
    assert_eq!((u.status.as_str(), u.error_code), ("queued", None));
    assert_eq!(DeliveryStatus::parse(&u.status), None);

    // An inbound message is not a status callback, and a callback without its keys is refused.
    let inbound = form(&[
        ("MessageSid", "SM2"),
        ("SmsStatus", "received"),
        ("Body", "hi"),
    ]);
    assert!(!is_twilio_status_callback(&inbound));
    assert!(!is_twilio_status_callback(&form(&[
        ("MessageStatus", "received"),
        ("Body", "hi")
    ])));
    assert!(matches!(
        parse_twilio_status(&form(&[("MessageStatus", "sent")])),
        Err(TwilioFormError::Missing("MessageSid"))
    ));
    assert!(matches!(
        parse_twilio_status(&form(&base)),
        Err(TwilioFormError::Missing("MessageStatus"))
    ));
}

#[test]
fn media_sha256_accepts_hex_and_base64_and_tells_mismatch_from_unreadable() {
    use base64::Engine as _;
    let bytes = b"OggS voice note";
    let hex = crate::hash::sha256_hex(bytes);
    let raw: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    assert_eq!(check_media_sha256(&hex, bytes), MediaDigest::Matches);
    assert_eq!(
        check_media_sha256(&hex.to_uppercase(), bytes),
        MediaDigest::Matches
    );
    assert_eq!(check_media_sha256(&b64, bytes), MediaDigest::Matches);
    assert_eq!(check_media_sha256(&hex, b"other"), MediaDigest::Mismatch);
    assert_eq!(check_media_sha256(&b64, b"other"), MediaDigest::Mismatch);
    for junk in ["", "x", "<SHA_256_HASH>", &hex[..40]] {
        assert_eq!(
            check_media_sha256(junk, bytes),
            MediaDigest::Unreadable,
            "{junk}"
        );
    }
}

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/whatsapp/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

#[test]
fn text_webhook_parses_sender_and_number_id() {
    let events = parse_webhook(&fixture("text_webhook.json")).unwrap();
    let [InboundEvent::Message(m)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(m.phone_number_id, "106540352242922");
    assert_eq!(m.sender.phone.as_deref(), Some("16505551234"));
    assert_eq!(m.sender.profile_name.as_deref(), Some("Sheena Nelson"));
    assert!(matches!(&m.content, MessageContent::Text { body } if !body.is_empty()));
    assert!(m.timestamp_s > 1_600_000_000);
}

#[test]
fn bsuid_sender_without_phone_parses() {
    let events = parse_webhook(&fixture("text_webhook_username_bsuid_no_phone.json")).unwrap();
    let [InboundEvent::Message(m)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(m.sender.phone, None);
    assert_eq!(m.sender.user_id.as_deref(), Some("US.13491208655302741918"));
    assert_eq!(m.sender.customer_key(), Some("US.13491208655302741918"));
}

#[test]
fn interactive_replies_parse_as_choices() {
    for f in [
        "interactive_button_reply_webhook.json",
        "interactive_list_reply_webhook.json",
    ] {
        let events = parse_webhook(&fixture(f)).unwrap();
        let [InboundEvent::Message(m)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert!(
            matches!(&m.content, MessageContent::Choice { id, title } if !id.is_empty() && !title.is_empty()),
            "{f}: {:?}",
            m.content
        );
    }
}

#[test]
fn failed_status_carries_error_code() {
    let events = parse_webhook(&fixture("status_failed_webhook.json")).unwrap();
    let [InboundEvent::Status(s)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(s.status, "failed");
    assert_eq!(s.error_code, Some(131049));
    assert!(events[0].dedup_key().starts_with("status:wamid."));
}

#[test]
fn statuses_never_regress() {
    use DeliveryStatus::*;
    assert_eq!(Read.merge(Delivered), Read);
    assert_eq!(Sent.merge(Read), Read);
    assert_eq!(Delivered.merge(Sent), Delivered);
    assert_eq!(Delivered.merge(Failed), Failed);
    assert_eq!(Read.merge(Failed), Read);
    assert_eq!(Read.merge(Played), Played);
}

#[test]
fn twilio_form_parses() {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/twilio/whatsapp_inbound_form_THIRDPARTY_capture.txt"
    ))
    .unwrap();
    let line = raw.lines().find(|l| l.contains("MessageSid=")).unwrap();
    let params: Vec<(String, String)> = form_urlencoded::parse(line.trim().as_bytes())
        .into_owned()
        .collect();
    let m = parse_twilio_form(&params).unwrap();
    assert_eq!(m.sender.phone.as_deref(), Some("558282136275"));
    assert_eq!(m.business_number, "14155238886");
    assert_eq!(
        m.content,
        MessageContent::Text {
            body: "Olá".into()
        }
    );
}

#[test]
fn graph_error_fixture_classifies_as_retryable() {
    let e = parse_graph_error(&fixture("error_130429_response.json")).unwrap();
    assert_eq!(e.code, 130429);
    assert_eq!(classify_graph_error(e.code), GraphErrorClass::Retryable);
    assert_eq!(classify_graph_error(131047), GraphErrorClass::OutsideWindow);
    assert_eq!(classify_graph_error(131026), GraphErrorClass::Permanent);
    // "Temporary issue due to downtime": the code a hung API's 503 carries.
    assert_eq!(classify_graph_error(2), GraphErrorClass::Retryable);
}

#[test]
fn markdown_becomes_whatsapp_formatting() {
    let md = "## Rooms\n**New York** is *quiet*.\n* one\n* two\nSee [site](https://x.y)";
    assert_eq!(
        markdown_to_whatsapp(md),
        "*Rooms*\n*New York* is _quiet_.\n- one\n- two\nSee site (https://x.y)"
    );
}

#[test]
fn long_replies_split_under_the_limit_at_boundaries() {
    let text = "First sentence here. Second sentence is longer than that. Third.";
    let parts = split_message(text, 30);
    assert!(parts.iter().all(|p| p.chars().count() <= 30), "{parts:?}");
    assert_eq!(parts[0], "First sentence here.");
    assert_eq!(parts.join(" "), text);
    let hebrew = "שלום ".repeat(2000);
    let parts = split_message(&hebrew, 4096);
    assert!(parts.len() == 3 && parts.iter().all(|p| p.chars().count() <= 4096));
    assert_eq!(split_message("abcdef", 4), vec!["abcd", "ef"]);
}

#[test]
fn a_sender_cannot_smuggle_text_in_as_a_phone() {
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "changes": [{ "field": "messages", "value": {
            "metadata": { "display_phone_number": "1", "phone_number_id": "2" },
            "messages": [
                { "from": "+1 (650) admin", "id": "wamid.X", "type": "text", "text": { "body": "hi" } },
                { "from": "../../etc", "from_user_id": "US.1", "id": "wamid.Y", "type": "text", "text": { "body": "hi" } }
            ]
        }}]}]
    })
    .to_string();
    let events = parse_webhook(body.as_bytes()).unwrap();
    // The first has no usable identity and is skipped; the second keeps only its BSUID.
    let [InboundEvent::Message(m)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(m.sender.phone, None);
    assert_eq!(m.sender.customer_key(), Some("US.1"));
    let params: Vec<(String, String)> = [
        ("MessageSid", "SM1"),
        ("From", "whatsapp:+1;DROP"),
        ("WaId", "x"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert!(parse_twilio_form(&params).is_err());
}

#[test]
fn pii_is_hashed_unless_allowed() {
    assert_eq!(log_id("16505551234", true), "16505551234");
    let h = log_id("16505551234", false);
    assert!(h.starts_with("sha256:") && !h.contains("1650555"));
}
