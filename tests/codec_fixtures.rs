//! Wire codecs against vendor fixtures (`fixtures/*/SOURCES.md`): G.711 against the ITU-T G.191
//! STL vectors, Twilio Media Streams against the examples in Twilio's docs, `X-Twilio-Signature`
//! against the docs' worked example and twilio-python's test vectors.

use kav::voice::g711;

mod alloc_count;
use alloc_count::allocations_during;

// ---------------------------------------------------------------------------------------------
// G.711
// ---------------------------------------------------------------------------------------------

/// CRC-32 (IEEE, reflected, as zlib), which is what the STL README lists for its vector files.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// CRCs of the STL files (openitu/STL @139db497 src/g711/test_data, README "CRC32-LE"), recorded
// in fixtures/g711/SOURCES.md. They let the whole-sweep tests run without the ITU-licensed files.
const CRC_SWEEP_SRC: u32 = 0xC8BA_7682;
const CRC_SWEEP_R_U: u32 = 0xCD17_0E15;
const CRC_SWEEP_R_U_U: u32 = 0x6364_1C01;

/// `sweep.src`: every int16 from -32768 to 32767 once, little-endian.
fn sweep_src() -> Vec<u8> {
    (i16::MIN..=i16::MAX).flat_map(i16::to_le_bytes).collect()
}

/// Our encoder over the sweep in the `sweep-r.u` layout: one little-endian u16 word per code.
fn our_sweep_r_u() -> Vec<u8> {
    (i16::MIN..=i16::MAX)
        .flat_map(|x| u16::from(g711::encode(x)).to_le_bytes())
        .collect()
}

/// Our decoder over `sweep-r.u` in the `sweep-r.u-u` / `.reu` layout: int16 little-endian.
fn our_sweep_r_u_u() -> Vec<u8> {
    (i16::MIN..=i16::MAX)
        .flat_map(|x| g711::decode(g711::encode(x)).to_le_bytes())
        .collect()
}

/// The STL binaries themselves, if present: `fixtures/g711/` once their licence is cleared for
/// the repo, else `$KAV_STL_G711_DIR` (e.g. /work/shared/protocol-fixtures/g711).
fn stl_file(name: &str) -> Option<Vec<u8>> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/g711");
    let env = std::env::var_os("KAV_STL_G711_DIR").map(std::path::PathBuf::from);
    [Some(repo), env]
        .into_iter()
        .flatten()
        .map(|dir| dir.join(name))
        .find_map(|path| std::fs::read(path).ok())
}

#[test]
fn g711_sweep_layout_matches_stl_crc() {
    // Proves we read sweep.src's format right before trusting the other CRCs.
    assert_eq!(crc32(&sweep_src()), CRC_SWEEP_SRC);
}

#[test]
fn g711_encode_matches_stl_sweep_r_u_exactly() {
    let ours = our_sweep_r_u();
    assert_eq!(
        crc32(&ours),
        CRC_SWEEP_R_U,
        "encoder differs from STL ulaw_compress"
    );
    match stl_file("sweep-r.u") {
        Some(reference) => {
            let src = stl_file("sweep.src").expect("sweep.src beside sweep-r.u");
            assert_eq!(src, sweep_src());
            for (i, (a, b)) in ours.chunks(2).zip(reference.chunks(2)).enumerate() {
                assert_eq!(a, b, "pcm {}: ours {a:?}, STL {b:?}", i as i32 - 32768);
            }
            assert_eq!(ours.len(), reference.len());
        }
        None => eprintln!("sweep-r.u not present; verified by CRC only"),
    }
}

#[test]
fn g711_decode_matches_stl_expanded_sweep_exactly() {
    let ours = our_sweep_r_u_u();
    assert_eq!(
        crc32(&ours),
        CRC_SWEEP_R_U_U,
        "decode(encode(sweep)) differs from STL sweep-r.u-u"
    );
    for name in ["sweep-r.u-u", "sweep-r.reu"] {
        if let Some(reference) = stl_file(name) {
            assert_eq!(ours, reference, "{name}");
        }
    }
    // Decoding the reference codes themselves (not just ours) must give the expanded file.
    if let (Some(codes), Some(expanded)) = (stl_file("sweep-r.u"), stl_file("sweep-r.u-u")) {
        for (code, want) in codes.chunks(2).zip(expanded.chunks(2)) {
            let got = g711::decode(code[0]);
            assert_eq!(code[1], 0, "sweep-r.u high byte");
            assert_eq!(
                got.to_le_bytes(),
                [want[0], want[1]],
                "code {:#04x}",
                code[0]
            );
        }
    }
}

#[test]
fn g711_decode_table_matches_derived_fixture() {
    let json: serde_json::Value = serde_json::from_str(include_str!(
        "../fixtures/g711/ulaw_decode_table_DERIVED.json"
    ))
    .unwrap();
    let table = json["ulaw_to_linear16"].as_array().unwrap();
    assert_eq!(table.len(), 256);
    for (code, want) in table.iter().enumerate() {
        let want = want.as_i64().unwrap();
        assert_eq!(
            i64::from(g711::decode(code as u8)),
            want,
            "code {code:#04x}"
        );
        assert_eq!(i64::from(g711::DECODE_TABLE[code]), want);
    }
}

#[test]
fn g711_encode_matches_derived_stl_vectors() {
    let json: serde_json::Value = serde_json::from_str(include_str!(
        "../fixtures/g711/ulaw_encode_vectors_DERIVED.json"
    ))
    .unwrap();
    let vectors = json["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 30);
    for v in vectors {
        let pcm = i16::try_from(v["pcm"].as_i64().unwrap()).unwrap();
        let want = u8::from_str_radix(v["stl_ulaw"].as_str().unwrap(), 16).unwrap();
        assert_eq!(g711::encode(pcm), want, "pcm {pcm}");
    }
}

#[test]
fn g711_into_variants_allocate_nothing() {
    let pcm: Vec<i16> = (0..160).map(|i| (i * 397 - 30000) as i16).collect();
    let mut ulaw = [0u8; 160];
    let mut back = [0i16; 160];
    let (allocs, ()) = allocations_during(|| {
        g711::encode_into(&pcm, &mut ulaw);
        g711::decode_into(&ulaw, &mut back);
    });
    assert_eq!(allocs, 0);
    assert_eq!(ulaw[0], g711::encode(pcm[0]));
    assert_eq!(back[159], g711::decode(ulaw[159]));
}

// ---------------------------------------------------------------------------------------------
// Twilio Media Streams
// ---------------------------------------------------------------------------------------------

mod twilio_wire {
    use super::allocations_during;
    use kav::voice::twilio::*;
    use serde_json::Value;
    use std::collections::BTreeMap;

    const CONNECTED: &str = include_str!("../fixtures/twilio/connected.json");
    const START: &str = include_str!("../fixtures/twilio/start.json");
    const MEDIA_INBOUND: &str = include_str!("../fixtures/twilio/media_inbound.json");
    const MEDIA_OUTBOUND_TRACK: &str = include_str!("../fixtures/twilio/media_outbound_track.json");
    const DTMF: &str = include_str!("../fixtures/twilio/dtmf.json");
    const MARK_INBOUND: &str = include_str!("../fixtures/twilio/mark_inbound.json");
    const STOP: &str = include_str!("../fixtures/twilio/stop.json");
    const SEND_MEDIA: &str = include_str!("../fixtures/twilio/send_media.json");
    const SEND_MARK: &str = include_str!("../fixtures/twilio/send_mark.json");
    const SEND_CLEAR: &str = include_str!("../fixtures/twilio/send_clear.json");

    const SID: &str = "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const ACCOUNT: &str = "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    const CALL: &str = "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn written(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn start_fixture_value() -> Start {
        Start {
            sequence_number: Some(1),
            stream_sid: SID.into(),
            account_sid: ACCOUNT.into(),
            call_sid: CALL.into(),
            tracks: vec!["inbound".into()],
            custom_parameters: BTreeMap::from([
                ("FirstName".into(), "Jane".into()),
                ("LastName".into(), "Doe".into()),
                ("RemoteParty".into(), "Bob".into()),
            ]),
            media_format: MediaFormat {
                encoding: "audio/x-mulaw".into(),
                sample_rate: 8000,
                channels: 1,
            },
        }
    }

    // --- every JSON stream fixture parses to the documented values -----------------------------

    #[test]
    fn fixture_connected() {
        assert_eq!(
            parse_inbound(CONNECTED).unwrap(),
            Inbound::Connected {
                protocol: "Call".into(),
                version: "1.0.0".into()
            }
        );
    }

    #[test]
    fn fixture_start() {
        assert_eq!(
            parse_inbound(START).unwrap(),
            Inbound::Start(start_fixture_value())
        );
    }

    #[test]
    fn fixture_media_inbound() {
        let Inbound::Media(m) = parse_inbound(MEDIA_INBOUND).unwrap() else {
            panic!("not media")
        };
        assert_eq!(
            m,
            Media {
                stream_sid: SID.into(),
                sequence_number: Some(4),
                track: "inbound".into(),
                chunk: 2,
                timestamp_ms: 5,
                payload: "no+JhoaJjpzS...".into(),
            }
        );
        // The docs abbreviate payloads; they are not base64 and must be rejected, not guessed at.
        assert_eq!(
            decode_payload(&m.payload, &mut [0u8; 160]),
            Err(WireError::InvalidBase64)
        );
    }

    #[test]
    fn fixture_media_outbound_track() {
        let Inbound::Media(m) = parse_inbound(MEDIA_OUTBOUND_TRACK).unwrap() else {
            panic!("not media")
        };
        assert_eq!(
            (m.sequence_number, &*m.track, m.chunk, m.timestamp_ms),
            (Some(3), "outbound", 1, 5)
        );
        assert_eq!(m.payload, "no+JhoaJjpz...");
        assert_eq!(
            decode_payload(&m.payload, &mut [0u8; 160]),
            Err(WireError::InvalidBase64)
        );
    }

    #[test]
    fn fixture_dtmf() {
        assert_eq!(
            parse_inbound(DTMF).unwrap(),
            Inbound::Dtmf(Dtmf {
                stream_sid: SID.into(),
                sequence_number: Some(5),
                track: "inbound_track".into(),
                digit: '1',
            })
        );
    }

    #[test]
    fn fixture_mark_inbound() {
        assert_eq!(
            parse_inbound(MARK_INBOUND).unwrap(),
            Inbound::Mark(Mark {
                stream_sid: SID.into(),
                sequence_number: Some(4),
                name: "my label".into(),
            })
        );
    }

    #[test]
    fn fixture_stop() {
        assert_eq!(
            parse_inbound(STOP).unwrap(),
            Inbound::Stop(Stop {
                stream_sid: SID.into(),
                sequence_number: Some(5),
                account_sid: ACCOUNT.into(),
                call_sid: CALL.into(),
            })
        );
    }

    #[test]
    fn fixtures_of_what_we_send_parse_as_outbound() {
        assert_eq!(
            parse_outbound(SEND_MEDIA).unwrap(),
            Outbound::Media {
                stream_sid: SID.into(),
                payload: "a3242sa...".into()
            }
        );
        assert_eq!(
            parse_outbound(SEND_MARK).unwrap(),
            Outbound::Mark {
                stream_sid: SID.into(),
                name: "my label".into()
            }
        );
        assert_eq!(
            parse_outbound(SEND_CLEAR).unwrap(),
            Outbound::Clear {
                stream_sid: SID.into()
            }
        );
        assert_eq!(
            decode_payload("a3242sa...", &mut [0u8; 160]),
            Err(WireError::InvalidBase64)
        );
    }

    #[test]
    fn fixtures_of_what_we_send_seen_by_the_inbound_parser() {
        // A mark without sequenceNumber is still a mark; media without track is incomplete.
        assert_eq!(
            parse_inbound(SEND_MARK).unwrap(),
            Inbound::Mark(Mark {
                stream_sid: SID.into(),
                sequence_number: None,
                name: "my label".into()
            })
        );
        assert_eq!(
            parse_inbound(SEND_MEDIA),
            Err(WireError::MissingField("track"))
        );
        assert_eq!(
            parse_inbound(SEND_CLEAR).unwrap(),
            Inbound::Unknown {
                event: "clear".into()
            }
        );
    }

    #[test]
    fn no_fixture_is_left_untested() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/twilio");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "connected.json",
                "dtmf.json",
                "mark_inbound.json",
                "media_inbound.json",
                "media_outbound_track.json",
                "send_clear.json",
                "send_mark.json",
                "send_media.json",
                "signature_vectors.json",
                "start.json",
                "stop.json",
            ]
        );
    }

    // --- our writers are JSON-equal to the fixtures -------------------------------------------

    /// The docs' payloads are not base64, so compare everything but the payload, which must be
    /// a string.
    fn assert_json_eq_but_payload(ours: &str, fixture: &str, payload_path: &[&str]) {
        let mut ours = json(ours);
        let fixture = json(fixture);
        let mut ours_payload = &mut ours;
        let mut fixture_payload = &fixture;
        for key in payload_path {
            ours_payload = &mut ours_payload[*key];
            fixture_payload = &fixture_payload[*key];
        }
        assert!(ours_payload.is_string());
        *ours_payload = fixture_payload.clone();
        assert_eq!(ours, fixture);
    }

    #[test]
    fn write_media_matches_send_media_fixture() {
        let ours = written(|o| write_media(o, SID, &[0xFF; 160]));
        assert_json_eq_but_payload(&ours, SEND_MEDIA, &["media", "payload"]);
    }

    #[test]
    fn write_mark_matches_send_mark_fixture() {
        assert_eq!(
            json(&written(|o| write_mark(o, SID, "my label"))),
            json(SEND_MARK)
        );
    }

    #[test]
    fn write_clear_matches_send_clear_fixture() {
        assert_eq!(json(&written(|o| write_clear(o, SID))), json(SEND_CLEAR));
    }

    #[test]
    fn twilio_side_writers_match_fixtures() {
        assert_eq!(json(&written(write_connected)), json(CONNECTED));
        assert_eq!(
            json(&written(|o| write_start(o, &start_fixture_value()))),
            json(START)
        );
        assert_json_eq_but_payload(
            &written(|o| write_inbound_media(o, SID, 4, 2, 5, &[0x7F; 160])),
            MEDIA_INBOUND,
            &["media", "payload"],
        );
        assert_eq!(json(&written(|o| write_dtmf(o, SID, 5, '1'))), json(DTMF));
        assert_eq!(
            json(&written(|o| write_mark_echo(o, SID, 4, "my label"))),
            json(MARK_INBOUND)
        );
        assert_eq!(
            json(&written(|o| write_stop(o, SID, 5, ACCOUNT, CALL))),
            json(STOP)
        );
    }

    // --- round trips --------------------------------------------------------------------------

    const PAYLOAD_LENGTHS: [usize; 10] = [0, 1, 2, 3, 4, 159, 160, 161, 480, 4000];

    fn audio(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    fn outbound_media_round_trips_any_length() {
        for len in PAYLOAD_LENGTHS {
            let data = audio(len);
            let frame = written(|o| write_media(o, SID, &data));
            let Outbound::Media {
                stream_sid,
                payload,
            } = parse_outbound(&frame).unwrap()
            else {
                panic!("not media")
            };
            assert_eq!(stream_sid, SID);
            let mut buf = vec![0u8; len];
            assert_eq!(decode_payload(&payload, &mut buf), Ok(len), "len {len}");
            assert_eq!(buf, data);
        }
    }

    #[test]
    fn inbound_media_round_trips_any_length() {
        for len in PAYLOAD_LENGTHS {
            let data = audio(len);
            let seq = len as u64 + 2;
            let frame = written(|o| write_inbound_media(o, SID, seq, 77, u64::MAX, &data));
            let Inbound::Media(m) = parse_inbound(&frame).unwrap() else {
                panic!("not media")
            };
            assert_eq!(
                (
                    &*m.stream_sid,
                    m.sequence_number,
                    &*m.track,
                    m.chunk,
                    m.timestamp_ms
                ),
                (SID, Some(seq), "inbound", 77, u64::MAX)
            );
            let mut buf = vec![0u8; 4000];
            let n = decode_payload(&m.payload, &mut buf).unwrap();
            assert_eq!(&buf[..n], &data[..]);
        }
    }

    /// Sids and names never need escaping in practice; these make sure the writers escape anyway.
    const AWKWARD: [&str; 5] = [
        "",
        "plain",
        "quote\" back\\slash",
        "ctl\n\r\t\u{1}\u{1f}",
        "ünïcødé 😀 /",
    ];

    #[test]
    fn mark_clear_dtmf_stop_start_round_trip() {
        for s in AWKWARD {
            assert_eq!(
                parse_outbound(&written(|o| write_mark(o, s, s))).unwrap(),
                Outbound::Mark {
                    stream_sid: s.into(),
                    name: s.into()
                }
            );
            assert_eq!(
                parse_outbound(&written(|o| write_clear(o, s))).unwrap(),
                Outbound::Clear {
                    stream_sid: s.into()
                }
            );
            assert_eq!(
                parse_inbound(&written(|o| write_mark_echo(o, s, 3, s))).unwrap(),
                Inbound::Mark(Mark {
                    stream_sid: s.into(),
                    sequence_number: Some(3),
                    name: s.into()
                })
            );
            assert_eq!(
                parse_inbound(&written(|o| write_stop(o, s, 9, s, s))).unwrap(),
                Inbound::Stop(Stop {
                    stream_sid: s.into(),
                    sequence_number: Some(9),
                    account_sid: s.into(),
                    call_sid: s.into()
                })
            );
            let mut start = start_fixture_value();
            start.stream_sid = s.into();
            start.custom_parameters.insert(s.into(), s.into());
            start.tracks = vec!["inbound".into(), s.into()];
            assert_eq!(
                parse_inbound(&written(|o| write_start(o, &start))).unwrap(),
                Inbound::Start(start)
            );
        }
        for digit in "0123456789*#ABCD".chars() {
            assert_eq!(
                parse_inbound(&written(|o| write_dtmf(o, SID, 12, digit))).unwrap(),
                Inbound::Dtmf(Dtmf {
                    stream_sid: SID.into(),
                    sequence_number: Some(12),
                    track: "inbound_track".into(),
                    digit
                })
            );
        }
        assert_eq!(
            parse_inbound(&written(write_connected)).unwrap(),
            Inbound::Connected {
                protocol: "Call".into(),
                version: "1.0.0".into()
            }
        );
    }

    #[test]
    fn default_start_is_written_as_twilio_would_send_it() {
        let start = Start {
            stream_sid: "MZ1".into(),
            account_sid: "AC1".into(),
            call_sid: "CA1".into(),
            ..Start::default()
        };
        let Inbound::Start(parsed) = parse_inbound(&written(|o| write_start(o, &start))).unwrap()
        else {
            panic!("not start")
        };
        assert_eq!(parsed.sequence_number, Some(1));
        assert_eq!(parsed.tracks, ["inbound"]);
        assert_eq!(
            parsed.media_format,
            MediaFormat {
                encoding: "audio/x-mulaw".into(),
                sample_rate: 8000,
                channels: 1
            }
        );
    }

    #[test]
    fn writers_append_to_bytes_mut() {
        let mut out = bytes::BytesMut::new();
        write_clear(&mut out, "MZ1");
        write_clear(&mut out, "MZ2");
        assert_eq!(
            &out[..],
            br#"{"event":"clear","streamSid":"MZ1"}{"event":"clear","streamSid":"MZ2"}"#
        );
    }

    // --- leniency and strictness --------------------------------------------------------------

    #[test]
    fn unknown_events_are_reported_not_rejected() {
        for (frame, event) in [
            (r#"{"event":"close"}"#, "close"),
            (r#"{"event":"clear","streamSid":"MZ1"}"#, "clear"),
            (r#"{"event":"","x":[1,{"y":null}]}"#, ""),
            (r#"{"sequenceNumber":"oops","event":"future"}"#, "future"),
        ] {
            assert_eq!(
                parse_inbound(frame),
                Ok(Inbound::Unknown {
                    event: event.into()
                }),
                "{frame}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let frame = r#"{"event":"mark","new":{"deep":[1,2,"x"]},"streamSid":"MZ1","sequenceNumber":"7","mark":{"name":"n","extra":true}}"#;
        assert_eq!(
            parse_inbound(frame).unwrap(),
            Inbound::Mark(Mark {
                stream_sid: "MZ1".into(),
                sequence_number: Some(7),
                name: "n".into()
            })
        );
    }

    #[test]
    fn missing_fields_are_named() {
        let cases: &[(&str, &str)] = &[
            (r#"{}"#, "event"),
            (r#"{"protocol":"Call"}"#, "event"),
            (r#"{"event":"connected","version":"1.0.0"}"#, "protocol"),
            (r#"{"event":"connected","protocol":"Call"}"#, "version"),
            (r#"{"event":"start","streamSid":"MZ"}"#, "start"),
            (
                r#"{"event":"start","start":{"accountSid":"A","callSid":"C","mediaFormat":{"encoding":"e","sampleRate":8000,"channels":1}}}"#,
                "streamSid",
            ),
            (
                r#"{"event":"start","start":{"streamSid":"M","callSid":"C","mediaFormat":{"encoding":"e","sampleRate":8000,"channels":1}}}"#,
                "accountSid",
            ),
            (
                r#"{"event":"start","start":{"streamSid":"M","accountSid":"A","mediaFormat":{"encoding":"e","sampleRate":8000,"channels":1}}}"#,
                "callSid",
            ),
            (
                r#"{"event":"start","start":{"streamSid":"M","accountSid":"A","callSid":"C"}}"#,
                "mediaFormat",
            ),
            (
                r#"{"event":"start","start":{"streamSid":"M","accountSid":"A","callSid":"C","mediaFormat":{"sampleRate":8000,"channels":1}}}"#,
                "encoding",
            ),
            (
                r#"{"event":"start","start":{"streamSid":"M","accountSid":"A","callSid":"C","mediaFormat":{"encoding":"e","channels":1}}}"#,
                "sampleRate",
            ),
            (
                r#"{"event":"start","start":{"streamSid":"M","accountSid":"A","callSid":"C","mediaFormat":{"encoding":"e","sampleRate":8000}}}"#,
                "channels",
            ),
            (r#"{"event":"media","streamSid":"M"}"#, "media"),
            (
                r#"{"event":"media","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":""}}"#,
                "streamSid",
            ),
            (
                r#"{"event":"media","streamSid":"M","media":{"chunk":"1","timestamp":"0","payload":""}}"#,
                "track",
            ),
            (
                r#"{"event":"media","streamSid":"M","media":{"track":"inbound","timestamp":"0","payload":""}}"#,
                "chunk",
            ),
            (
                r#"{"event":"media","streamSid":"M","media":{"track":"inbound","chunk":null,"timestamp":"0","payload":""}}"#,
                "chunk",
            ),
            (
                r#"{"event":"media","streamSid":"M","media":{"track":"inbound","chunk":"1","payload":""}}"#,
                "timestamp",
            ),
            (
                r#"{"event":"media","streamSid":"M","media":{"track":"inbound","chunk":"1","timestamp":"0"}}"#,
                "payload",
            ),
            (r#"{"event":"dtmf","streamSid":"M"}"#, "dtmf"),
            (
                r#"{"event":"dtmf","streamSid":"M","dtmf":{"track":"inbound_track"}}"#,
                "digit",
            ),
            (
                r#"{"event":"dtmf","streamSid":"M","dtmf":{"digit":"1"}}"#,
                "track",
            ),
            (
                r#"{"event":"dtmf","dtmf":{"track":"inbound_track","digit":"1"}}"#,
                "streamSid",
            ),
            (r#"{"event":"mark","streamSid":"M"}"#, "mark"),
            (r#"{"event":"mark","streamSid":"M","mark":{}}"#, "name"),
            (r#"{"event":"mark","mark":{"name":"n"}}"#, "streamSid"),
            (r#"{"event":"stop","streamSid":"M"}"#, "stop"),
            (
                r#"{"event":"stop","streamSid":"M","stop":{"callSid":"C"}}"#,
                "accountSid",
            ),
            (
                r#"{"event":"stop","streamSid":"M","stop":{"accountSid":"A"}}"#,
                "callSid",
            ),
            (
                r#"{"event":"stop","stop":{"accountSid":"A","callSid":"C"}}"#,
                "streamSid",
            ),
        ];
        for (frame, field) in cases {
            assert_eq!(
                parse_inbound(frame),
                Err(WireError::MissingField(field)),
                "{frame}"
            );
        }
        for (frame, field) in [
            (r#"{"streamSid":"M"}"#, "event"),
            (r#"{"event":"media","streamSid":"M"}"#, "media"),
            (r#"{"event":"media","streamSid":"M","media":{}}"#, "payload"),
            (r#"{"event":"media","media":{"payload":""}}"#, "streamSid"),
            (r#"{"event":"mark","streamSid":"M","mark":{}}"#, "name"),
            (r#"{"event":"clear"}"#, "streamSid"),
        ] {
            assert_eq!(
                parse_outbound(frame),
                Err(WireError::MissingField(field)),
                "{frame}"
            );
        }
    }

    #[test]
    fn missing_sequence_number_is_none() {
        let frame = r#"{"event":"media","streamSid":"M","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":""}}"#;
        let Inbound::Media(m) = parse_inbound(frame).unwrap() else {
            panic!("not media")
        };
        assert_eq!(m.sequence_number, None);
        let frame = r#"{"event":"stop","sequenceNumber":null,"streamSid":"M","stop":{"accountSid":"A","callSid":"C"}}"#;
        let Inbound::Stop(s) = parse_inbound(frame).unwrap() else {
            panic!("not stop")
        };
        assert_eq!(s.sequence_number, None);
    }

    fn media_with(seq: &str, chunk: &str, timestamp: &str) -> String {
        format!(
            r#"{{"event":"media","sequenceNumber":{seq},"streamSid":"M","media":{{"track":"inbound","chunk":{chunk},"timestamp":{timestamp},"payload":""}}}}"#
        )
    }

    #[test]
    fn counters_accept_strings_and_numbers_as_u64() {
        for (seq, chunk, ts, want) in [
            (r#""1""#, r#""2""#, r#""3""#, (1, 2, 3)),
            ("1", "2", "3", (1, 2, 3)),
            (
                r#""007""#,
                "0",
                r#""18446744073709551615""#,
                (7, 0, u64::MAX),
            ),
        ] {
            let frame = media_with(seq, chunk, ts);
            let Inbound::Media(m) = parse_inbound(&frame).unwrap() else {
                panic!("not media")
            };
            assert_eq!(
                (m.sequence_number, m.chunk, m.timestamp_ms),
                (Some(want.0), want.1, want.2)
            );
        }
    }

    #[test]
    fn counters_that_are_not_u64_are_bad_numbers() {
        let bad = [
            r#""""#,
            r#""abc""#,
            r#""+1""#,
            r#""-1""#,
            r#"" 1""#,
            r#""1.0""#,
            r#""18446744073709551616""#,
            "-1",
            "1.5",
            "1e3",
            "18446744073709551616",
            "true",
            "[1]",
            r#"{"n":1}"#,
        ];
        for b in bad {
            assert_eq!(
                parse_inbound(&media_with(b, "1", "1")),
                Err(WireError::BadNumber("sequenceNumber")),
                "{b}"
            );
            assert_eq!(
                parse_inbound(&media_with("1", b, "1")),
                Err(WireError::BadNumber("chunk")),
                "{b}"
            );
            assert_eq!(
                parse_inbound(&media_with("1", "1", b)),
                Err(WireError::BadNumber("timestamp")),
                "{b}"
            );
        }
    }

    fn start_with_format(rate: &str, channels: &str) -> String {
        format!(
            r#"{{"event":"start","start":{{"streamSid":"M","accountSid":"A","callSid":"C","mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":{rate},"channels":{channels}}}}}}}"#
        )
    }

    #[test]
    fn media_format_numbers_accept_strings_and_check_range() {
        let Inbound::Start(s) = parse_inbound(&start_with_format(r#""16000""#, r#""2""#)).unwrap()
        else {
            panic!("not start")
        };
        assert_eq!(
            (s.media_format.sample_rate, s.media_format.channels),
            (16000, 2)
        );
        assert_eq!(s.sequence_number, None);
        assert_eq!(s.stream_sid, "M");
        assert!(s.tracks.is_empty() && s.custom_parameters.is_empty());
        assert_eq!(
            parse_inbound(&start_with_format("4294967296", "1")),
            Err(WireError::BadNumber("sampleRate"))
        );
        assert_eq!(
            parse_inbound(&start_with_format("8000", "65536")),
            Err(WireError::BadNumber("channels"))
        );
        assert_eq!(
            parse_inbound(&start_with_format("8000.0", "1")),
            Err(WireError::BadNumber("sampleRate"))
        );
    }

    #[test]
    fn start_falls_back_to_top_level_stream_sid() {
        let frame = r#"{"event":"start","streamSid":"TOP","start":{"accountSid":"A","callSid":"C","mediaFormat":{"encoding":"e","sampleRate":8000,"channels":1}}}"#;
        let Inbound::Start(s) = parse_inbound(frame).unwrap() else {
            panic!("not start")
        };
        assert_eq!(s.stream_sid, "TOP");
    }

    #[test]
    fn dtmf_digits_are_checked() {
        for bad in ["", "E", "a", "d", "12", "１", "\u{0}", " 1"] {
            let mut frame = Vec::new();
            write_dtmf(&mut frame, "M", 1, 'x');
            let frame = String::from_utf8(frame).unwrap().replace(
                r#""digit":"x""#,
                &format!(r#""digit":{}"#, Value::from(bad)),
            );
            assert_eq!(
                parse_inbound(&frame),
                Err(WireError::BadDigit(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn wrong_types_and_malformed_json_are_json_errors() {
        for frame in [
            "",
            " ",
            "{",
            "null",
            "[]",
            "42",
            r#""media""#,
            r#"{"event":5}"#,
            r#"{"event":"media","streamSid":5}"#,
            r#"{"event":"media","streamSid":"M","media":"x"}"#,
            r#"{"event":"start","start":{"tracks":"inbound"}}"#,
            r#"{"event":"start","start":{"customParameters":{"a":1}}}"#,
            r#"{"event":"mark","streamSid":"M","mark":{"name":"n"}} trailing"#,
            r#"{"event":"mark","event":"mark"}"#,
            "{\"event\":\"mark\",\"streamSid\":\"M\u{1}\"}",
            r#"{"event":"mark","streamSid":"\ud800"}"#,
        ] {
            assert!(
                matches!(parse_inbound(frame), Err(WireError::Json(_))),
                "{frame:?}: {:?}",
                parse_inbound(frame)
            );
        }
        assert!(matches!(
            parse_outbound(r#"{"event":"stop","streamSid":"M"}"#),
            Err(WireError::Json(_))
        ));
    }

    // --- decode_payload -----------------------------------------------------------------------

    #[test]
    fn decode_payload_sizes_and_errors() {
        let mut buf = [0u8; 3];
        assert_eq!(decode_payload("", &mut buf), Ok(0));
        assert_eq!(decode_payload("", &mut []), Ok(0));
        assert_eq!(decode_payload("/38A", &mut buf), Ok(3));
        assert_eq!(buf, [0xFF, 0x7F, 0x00]);
        assert_eq!(decode_payload("AQ==", &mut buf[..1]), Ok(1));
        assert_eq!(
            decode_payload("AQID", &mut buf[..2]),
            Err(WireError::PayloadTooLarge {
                decoded_len: 3,
                limit: 2
            })
        );
        let big = "AAAA".repeat(54);
        assert_eq!(
            decode_payload(&big, &mut [0u8; 160]),
            Err(WireError::PayloadTooLarge {
                decoded_len: 162,
                limit: 160
            })
        );
        for bad in [
            "A", "AA", "AAA", "AQ=", "A===", "====", "AQ==AQ==", "AR==", "AQ-_", "AQ\nI", "AQ I",
            "é123",
        ] {
            assert_eq!(
                decode_payload(bad, &mut [0u8; 64]),
                Err(WireError::InvalidBase64),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn decode_payload_leaves_the_tail_of_out_alone() {
        let mut buf = [0xAAu8; 8];
        assert_eq!(decode_payload("AQI=", &mut buf), Ok(2));
        assert_eq!(buf, [1, 2, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA]);
    }

    // --- no panics on garbage -----------------------------------------------------------------

    /// xorshift64*: enough randomness to shake the parser, and reproducible from the seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let alphabet = b"{}[]\":,\\ 0123456789-+.eEtrufalsn\x01abcdexyz/=";
        let seeds = [
            CONNECTED,
            START,
            MEDIA_INBOUND,
            DTMF,
            MARK_INBOUND,
            STOP,
            SEND_MEDIA,
        ];
        let mut scratch = [0u8; 256];
        for round in 0..20_000 {
            let text: String = match round % 3 {
                // Random bytes, made into a &str the way a lossy WS layer would.
                0 => {
                    let len = rng.below(64);
                    let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    String::from_utf8_lossy(&raw).into_owned()
                }
                // JSON-ish token soup.
                1 => {
                    let len = rng.below(80);
                    (0..len)
                        .map(|_| char::from(alphabet[rng.below(alphabet.len())]))
                        .collect()
                }
                // A real frame with a few bytes mutated, deleted or the tail cut off.
                _ => {
                    let mut bytes = seeds[rng.below(seeds.len())].as_bytes().to_vec();
                    for _ in 0..=rng.below(4) {
                        let at = rng.below(bytes.len());
                        match rng.below(3) {
                            0 => bytes[at] = alphabet[rng.below(alphabet.len())],
                            1 => {
                                bytes.remove(at);
                            }
                            _ => bytes.truncate(at),
                        }
                        if bytes.is_empty() {
                            break;
                        }
                    }
                    String::from_utf8_lossy(&bytes).into_owned()
                }
            };
            if let Ok(Inbound::Media(m)) = parse_inbound(&text) {
                let _ = decode_payload(&m.payload, &mut scratch);
            }
            let _ = parse_outbound(&text);
            let _ = decode_payload(&text, &mut scratch);
        }
    }

    // --- allocation budget on the hot path ----------------------------------------------------

    #[test]
    fn hot_path_allocates_nothing() {
        let audio: Vec<u8> = (0..FRAME_BYTES).map(|i| (i * 13) as u8).collect();
        let sid = "MZ18ad3ab5a668481ce02b83e7395059f0";
        let mut frame = Vec::new();
        write_inbound_media(&mut frame, sid, 42, 40, 800, &audio);
        let frame = String::from_utf8(frame).unwrap();
        let mark_frame = r#"{"event":"mark","sequenceNumber":"43","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","mark":{"name":"turn-7"}}"#;
        let dtmf_frame = r#"{"event":"dtmf","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","sequenceNumber":"44","dtmf":{"track":"inbound_track","digit":"5"}}"#;
        let stop_frame = r#"{"event":"stop","sequenceNumber":"45","stop":{"accountSid":"AC1","callSid":"CA1"},"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}"#;
        let mut pcm = [0u8; FRAME_BYTES];
        let mut out_vec: Vec<u8> = Vec::with_capacity(4096);
        let mut out_bytes = bytes::BytesMut::with_capacity(4096);

        let (allocs, decoded) = allocations_during(|| {
            let Ok(Inbound::Media(m)) = parse_inbound(&frame) else {
                return None;
            };
            let n = decode_payload(&m.payload, &mut pcm).ok()?;
            write_media(&mut out_vec, sid, &pcm[..n]);
            write_mark(&mut out_vec, sid, "turn-7");
            write_clear(&mut out_vec, sid);
            write_media(&mut out_bytes, sid, &pcm[..n]);
            write_mark(&mut out_bytes, sid, "turn-7");
            let others = [
                parse_inbound(mark_frame).is_ok(),
                parse_inbound(dtmf_frame).is_ok(),
                parse_inbound(stop_frame).is_ok(),
                parse_outbound(mark_frame).is_ok(),
            ];
            Some((n, m.payload.len(), others))
        });
        assert_eq!(decoded, Some((FRAME_BYTES, 216, [true; 4])));
        assert_eq!(allocs, 0, "hot path allocated");
        assert_eq!(&pcm[..], &audio[..]);
        assert!(out_vec.starts_with(br#"{"event":"media""#));
        assert!(out_bytes.ends_with(br#""name":"turn-7"}}"#));
    }

    #[test]
    fn allocation_counter_sees_allocations() {
        let (allocs, v) = allocations_during(|| vec![1u8; 10]);
        assert!(allocs >= 1 && v.len() == 10);
        // `start` is allowed to allocate (once per call); confirm the counter would catch it.
        let (allocs, _) = allocations_during(|| parse_inbound(START).map(|_| ()));
        assert!(allocs > 0);
    }
}

// ---------------------------------------------------------------------------------------------
// X-Twilio-Signature
// ---------------------------------------------------------------------------------------------

mod twilio_signature {
    use kav::channels::signature::{compute, validate, validate_with_body};
    use kav::hash::sha256_hex;
    use serde_json::Value;

    struct Vector {
        name: String,
        token: String,
        url: String,
        params: Vec<(String, String)>,
        raw_body: Option<String>,
        signature: String,
        raw: Value,
    }

    fn vectors() -> Vec<Vector> {
        let json: Value =
            serde_json::from_str(include_str!("../fixtures/twilio/signature_vectors.json"))
                .unwrap();
        let str_of = |v: &Value| v.as_str().unwrap().to_owned();
        json["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let mut params = Vec::new();
                if let Some(map) = v["params"].as_object() {
                    params.extend(map.iter().map(|(k, val)| (k.clone(), str_of(val))));
                }
                if let Some(pairs) = v["params_multi"].as_array() {
                    params.extend(pairs.iter().map(|p| (str_of(&p[0]), str_of(&p[1]))));
                }
                Vector {
                    name: str_of(&v["name"]),
                    token: str_of(&v["auth_token"]),
                    url: str_of(&v["url"]),
                    params,
                    raw_body: v["raw_body"].as_str().map(str::to_owned),
                    signature: str_of(&v["expected_signature"]),
                    raw: v.clone(),
                }
            })
            .collect()
    }

    fn accepts(v: &Vector, signature: &str) -> bool {
        match &v.raw_body {
            Some(body) => validate_with_body(&v.token, &v.url, body.as_bytes(), signature),
            None => validate(&v.token, &v.url, &v.params, signature),
        }
    }

    #[test]
    fn every_vector_validates() {
        let vectors = vectors();
        assert_eq!(vectors.len(), 8);
        for v in &vectors {
            assert!(accepts(v, &v.signature), "{}", v.name);
        }
    }

    #[test]
    fn compute_matches_vectors_signed_over_the_url_as_given() {
        for v in vectors() {
            let direct = compute(&v.token, &v.url, &v.params);
            // The SDK's own comments: these two are hashes of the URL with port 443 / 80 added and
            // the https one of the URL with its port removed; the http `:1234` one is signed as given.
            let other_form = [
                "sdk_validation_adds_port_on_https",
                "sdk_validation_adds_port_on_http",
                "sdk_validation_removes_port_on_https",
            ];
            if other_form
                .iter()
                .any(|n| v.name.split_whitespace().next() == Some(n))
            {
                assert_ne!(direct, v.signature, "{}", v.name);
            } else {
                assert_eq!(direct, v.signature, "{}", v.name);
            }
        }
    }

    #[test]
    fn port_forms_the_sdk_vectors_encode() {
        for v in vectors() {
            let url = &v.url;
            match v.name.split_whitespace().next().unwrap() {
                "sdk_validation_adds_port_on_https" => {
                    let with_port = url.replace("mycompany.com/", "mycompany.com:443/");
                    assert_eq!(compute(&v.token, &with_port, &v.params), v.signature);
                }
                "sdk_validation_adds_port_on_http" => {
                    let with_port = url.replace("mycompany.com/", "mycompany.com:80/");
                    assert_eq!(compute(&v.token, &with_port, &v.params), v.signature);
                }
                "sdk_validation_removes_port_on_https" => {
                    let without = url.replace(":1234", "");
                    assert_eq!(compute(&v.token, &without, &v.params), v.signature);
                }
                "sdk_validation_removes_port_on_http" => {
                    assert_eq!(compute(&v.token, url, &v.params), v.signature);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn docs_worked_example_string_to_sign() {
        let v = vectors().into_iter().next().unwrap();
        assert_eq!(v.name, "docs_worked_example");
        let string_to_sign = v.raw["string_to_sign"].as_str().unwrap();
        // Signing the documented string with no params must give the same signature.
        assert_eq!(compute(&v.token, string_to_sign, &[]), v.signature);
        let mut reordered = v.params.clone();
        reordered.reverse();
        assert_eq!(compute(&v.token, &v.url, &reordered), v.signature);
    }

    #[test]
    fn json_body_hash_is_checked() {
        let v = vectors()
            .into_iter()
            .find(|v| v.raw_body.is_some())
            .unwrap();
        let body = v.raw_body.as_deref().unwrap();
        assert_eq!(
            sha256_hex(body.as_bytes()),
            v.raw["expected_body_sha256_hex"].as_str().unwrap()
        );
        let tampered = body.replace("true", "false");
        assert!(!validate_with_body(
            &v.token,
            &v.url,
            tampered.as_bytes(),
            &v.signature
        ));
        // The URL alone carries the signature; a URL without bodySHA256 binds no body.
        let (bare, _) = v.url.split_once("&bodySHA256").unwrap();
        let bare_sig = compute(&v.token, bare, &[]);
        assert!(validate(&v.token, bare, &[], &bare_sig));
        assert!(!validate_with_body(
            &v.token,
            bare,
            body.as_bytes(),
            &bare_sig
        ));
    }

    #[test]
    fn forgeries_fail() {
        for v in vectors() {
            let sig = &v.signature;
            // Flip one base64 character.
            let mut forged: Vec<u8> = sig.clone().into_bytes();
            forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(forged).unwrap();
            assert!(!accepts(&v, &forged), "{}: forged", v.name);
            assert!(!accepts(&v, ""), "{}: empty", v.name);
            assert!(!accepts(&v, &sig[..sig.len() - 1]), "{}: truncated", v.name);
            assert!(!accepts(&v, &format!("{sig} ")), "{}: padded", v.name);

            let wrong_token = Vector {
                token: format!("{}6", v.token),
                name: v.name.clone(),
                url: v.url.clone(),
                params: v.params.clone(),
                raw_body: v.raw_body.clone(),
                signature: v.signature.clone(),
                raw: Value::Null,
            };
            assert!(!accepts(&wrong_token, sig), "{}: wrong token", v.name);

            let other_url = v.url.replace("foo=1", "foo=2");
            assert!(
                !validate(&v.token, &other_url, &v.params, sig),
                "{}: tampered url",
                v.name
            );

            if !v.params.is_empty() {
                let mut tampered = v.params.clone();
                tampered[0].1.push('0');
                assert!(
                    !validate(&v.token, &v.url, &tampered, sig),
                    "{}: value",
                    v.name
                );
                let mut added = v.params.clone();
                added.push(("Extra".into(), "1".into()));
                assert!(
                    !validate(&v.token, &v.url, &added, sig),
                    "{}: extra",
                    v.name
                );
                // Not the last one: in the duplicates vector that is an exact repeat, which counts once.
                let mut dropped = v.params.clone();
                dropped.remove(0);
                assert!(
                    !validate(&v.token, &v.url, &dropped, sig),
                    "{}: dropped",
                    v.name
                );
            }
        }
    }

    #[test]
    fn duplicates_and_ordering_follow_the_sdk() {
        let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let a = compute(
            "t",
            "https://x/",
            &params(&[("b", "2"), ("a", "1"), ("a", "0")]),
        );
        let b = compute(
            "t",
            "https://x/",
            &params(&[("a", "0"), ("a", "1"), ("b", "2"), ("a", "1")]),
        );
        assert_eq!(a, b);
        assert_eq!(a, compute("t", "https://x/a0a1b2", &[]));
        // Case-sensitive byte order: "Z" sorts before "a".
        assert_eq!(
            compute("t", "u", &params(&[("a", "1"), ("Z", "2")])),
            compute("t", "uZ2a1", &[])
        );
    }

    #[test]
    fn odd_urls_do_not_panic() {
        for url in [
            "",
            "://",
            "https://",
            "https://:",
            "https://h:/p",
            "https://[::1",
            "https://u@h:99999999999999999999",
            "mailto:x",
            "https://é.example:443?q=1",
        ] {
            let sig = compute("t", url, &[]);
            assert!(validate("t", url, &[], &sig), "{url:?}");
            assert!(!validate_with_body("t", url, b"{}", &sig));
        }
    }
}
