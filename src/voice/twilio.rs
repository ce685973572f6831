//! Twilio Media Streams wire codec (bidirectional `<Connect><Stream>`), both directions.
//! OWNER: codec helper. Wire facts: `docs/protocols.md` §1.2 (Twilio → us) and §1.3 (us → Twilio).
//!
//! Parsing borrows from the frame text and allocates nothing for `media`, `dtmf`, `mark` and
//! `stop` (only `start`, once per call, owns its strings). Strings that contain JSON escapes are
//! the one exception: they cannot be borrowed, so they come back as `Cow::Owned`. Writers append
//! compact JSON to a caller-owned buffer and allocate nothing once that buffer has capacity (a
//! fixed-size `BufMut` such as `&mut [u8]` panics when full, as `BufMut` does; size it first).
//!
//! Strictness: every field of the documented shape is required (`MissingField`), except
//! `sequenceNumber` (optional everywhere), the top-level `streamSid` of `start` (it duplicates
//! `start.streamSid`) and `start.tracks` / `start.customParameters` (default empty). Unknown
//! fields are ignored because Twilio adds fields without notice. Known field names are typed even
//! for unknown events, so `{"event":"x","media":5}` is a `Json` error, not `Unknown`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Bytes of one 20 ms mu-law frame at 8 kHz.
pub const FRAME_BYTES: usize = 160;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("field `{0}` is not a valid number")]
    BadNumber(&'static str),
    #[error("invalid base64 in media payload")]
    InvalidBase64,
    #[error("media payload of {decoded_len} bytes exceeds the {limit}-byte buffer")]
    PayloadTooLarge { decoded_len: usize, limit: usize },
    #[error("invalid DTMF digit {0:?}")]
    BadDigit(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaFormat {
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Start {
    pub sequence_number: Option<u64>,
    pub stream_sid: String,
    pub account_sid: String,
    pub call_sid: String,
    pub tracks: Vec<String>,
    pub custom_parameters: BTreeMap<String, String>,
    pub media_format: MediaFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media<'a> {
    pub stream_sid: Cow<'a, str>,
    pub sequence_number: Option<u64>,
    pub track: Cow<'a, str>,
    pub chunk: u64,
    pub timestamp_ms: u64,
    /// Still base64; decode with [`decode_payload`] into a preallocated buffer.
    pub payload: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtmf<'a> {
    pub stream_sid: Cow<'a, str>,
    pub sequence_number: Option<u64>,
    pub track: Cow<'a, str>,
    pub digit: char,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark<'a> {
    pub stream_sid: Cow<'a, str>,
    pub sequence_number: Option<u64>,
    pub name: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop<'a> {
    pub stream_sid: Cow<'a, str>,
    pub sequence_number: Option<u64>,
    pub account_sid: Cow<'a, str>,
    pub call_sid: Cow<'a, str>,
}

/// A message Twilio sends to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<'a> {
    Connected {
        protocol: Cow<'a, str>,
        version: Cow<'a, str>,
    },
    Start(Start),
    Media(Media<'a>),
    Dtmf(Dtmf<'a>),
    Mark(Mark<'a>),
    Stop(Stop<'a>),
    /// A well-formed message whose `event` we do not know; counted and ignored.
    Unknown {
        event: Cow<'a, str>,
    },
}

/// A message we send to Twilio (parsed back by the simulated caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound<'a> {
    Media {
        stream_sid: Cow<'a, str>,
        payload: Cow<'a, str>,
    },
    Mark {
        stream_sid: Cow<'a, str>,
        name: Cow<'a, str>,
    },
    Clear {
        stream_sid: Cow<'a, str>,
    },
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// A JSON string that borrows from the frame when it has no escapes. `Option<Cow<str>>` with
/// `#[serde(borrow)]` would always allocate (serde only special-cases a bare `Cow<str>`), so the
/// `Cow` sits inside a transparent newtype.
#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A counter Twilio sends as a JSON string; numbers are accepted too. `None` inside means the
/// field was present but not a `u64`, so the caller can name the field in `BadNumber`.
struct Num(Option<u64>);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumVisitor)
    }
}

struct NumVisitor;

impl<'de> Visitor<'de> for NumVisitor {
    type Value = Num;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer, as a number or a string of digits")
    }
    fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
        Ok(Num(Some(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
        Ok(Num(u64::try_from(v).ok()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Num, E> {
        Ok(Num(None))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Num, E> {
        Ok(Num(None))
    }
    fn visit_unit<E>(self) -> Result<Num, E> {
        Ok(Num(None))
    }
    fn visit_str<E>(self, v: &str) -> Result<Num, E> {
        Ok(Num(parse_digits(v)))
    }
    // Draining containers here turns `"chunk": [1]` into `BadNumber("chunk")` instead of a
    // generic type error, and `IgnoredAny` skips without allocating.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Num, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Num(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Num, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Num(None))
    }
}

/// `u64::from_str` also takes a leading `+`; Twilio never sends one, so we don't either.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Every field any message may carry, all optional, so one pass over the text serves every event
/// without serde's internally-tagged enums (which buffer the whole message into owned `Content`).
#[derive(Deserialize)]
struct RawMsg<'a> {
    #[serde(borrow)]
    event: Option<Text<'a>>,
    #[serde(rename = "sequenceNumber")]
    sequence_number: Option<Num>,
    #[serde(rename = "streamSid", borrow)]
    stream_sid: Option<Text<'a>>,
    #[serde(borrow)]
    protocol: Option<Text<'a>>,
    #[serde(borrow)]
    version: Option<Text<'a>>,
    start: Option<RawStart>,
    #[serde(borrow)]
    media: Option<RawMedia<'a>>,
    #[serde(borrow)]
    dtmf: Option<RawDtmf<'a>>,
    #[serde(borrow)]
    mark: Option<RawMark<'a>>,
    #[serde(borrow)]
    stop: Option<RawStop<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStart {
    account_sid: Option<String>,
    stream_sid: Option<String>,
    call_sid: Option<String>,
    tracks: Option<Vec<String>>,
    custom_parameters: Option<BTreeMap<String, String>>,
    media_format: Option<RawMediaFormat>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMediaFormat {
    encoding: Option<String>,
    sample_rate: Option<Num>,
    channels: Option<Num>,
}

#[derive(Deserialize)]
struct RawMedia<'a> {
    #[serde(borrow)]
    track: Option<Text<'a>>,
    chunk: Option<Num>,
    timestamp: Option<Num>,
    #[serde(borrow)]
    payload: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawDtmf<'a> {
    #[serde(borrow)]
    track: Option<Text<'a>>,
    #[serde(borrow)]
    digit: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawMark<'a> {
    #[serde(borrow)]
    name: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStop<'a> {
    #[serde(borrow)]
    account_sid: Option<Text<'a>>,
    #[serde(borrow)]
    call_sid: Option<Text<'a>>,
}

fn required<T>(field: Option<T>, name: &'static str) -> Result<T, WireError> {
    field.ok_or(WireError::MissingField(name))
}

fn req_text<'a>(field: Option<Text<'a>>, name: &'static str) -> Result<Cow<'a, str>, WireError> {
    Ok(required(field, name)?.0)
}

fn optional_num(field: Option<Num>, name: &'static str) -> Result<Option<u64>, WireError> {
    match field {
        None => Ok(None),
        Some(Num(Some(n))) => Ok(Some(n)),
        Some(Num(None)) => Err(WireError::BadNumber(name)),
    }
}

fn num(field: Option<Num>, name: &'static str) -> Result<u64, WireError> {
    optional_num(field, name)?.ok_or(WireError::MissingField(name))
}

fn narrow<T: TryFrom<u64>>(n: u64, name: &'static str) -> Result<T, WireError> {
    T::try_from(n).map_err(|_| WireError::BadNumber(name))
}

fn parse_raw(text: &str) -> Result<RawMsg<'_>, WireError> {
    serde_json::from_str(text).map_err(|e| WireError::Json(e.to_string()))
}

/// Keys Twilio documents for `dtmf.digit` (the full 16-key DTMF pad).
pub fn is_dtmf_digit(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')
}

/// Parses one text frame from Twilio.
pub fn parse_inbound(text: &str) -> Result<Inbound<'_>, WireError> {
    let raw = parse_raw(text)?;
    let event = req_text(raw.event, "event")?;
    let msg = match &*event {
        "connected" => Inbound::Connected {
            protocol: req_text(raw.protocol, "protocol")?,
            version: req_text(raw.version, "version")?,
        },
        "start" => {
            let sequence_number = optional_num(raw.sequence_number, "sequenceNumber")?;
            let start = required(raw.start, "start")?;
            let stream_sid = match start.stream_sid {
                Some(sid) => sid,
                None => req_text(raw.stream_sid, "streamSid")?.into_owned(),
            };
            let format = required(start.media_format, "mediaFormat")?;
            Inbound::Start(Start {
                sequence_number,
                stream_sid,
                account_sid: required(start.account_sid, "accountSid")?,
                call_sid: required(start.call_sid, "callSid")?,
                tracks: start.tracks.unwrap_or_default(),
                custom_parameters: start.custom_parameters.unwrap_or_default(),
                media_format: MediaFormat {
                    encoding: required(format.encoding, "encoding")?,
                    sample_rate: narrow(num(format.sample_rate, "sampleRate")?, "sampleRate")?,
                    channels: narrow(num(format.channels, "channels")?, "channels")?,
                },
            })
        }
        "media" => {
            let media = required(raw.media, "media")?;
            Inbound::Media(Media {
                stream_sid: req_text(raw.stream_sid, "streamSid")?,
                sequence_number: optional_num(raw.sequence_number, "sequenceNumber")?,
                track: req_text(media.track, "track")?,
                chunk: num(media.chunk, "chunk")?,
                timestamp_ms: num(media.timestamp, "timestamp")?,
                payload: req_text(media.payload, "payload")?,
            })
        }
        "dtmf" => {
            let dtmf = required(raw.dtmf, "dtmf")?;
            let digit_text = req_text(dtmf.digit, "digit")?;
            let mut chars = digit_text.chars();
            let digit = match (chars.next(), chars.next()) {
                (Some(c), None) if is_dtmf_digit(c) => c,
                _ => return Err(WireError::BadDigit(digit_text.into_owned())),
            };
            Inbound::Dtmf(Dtmf {
                stream_sid: req_text(raw.stream_sid, "streamSid")?,
                sequence_number: optional_num(raw.sequence_number, "sequenceNumber")?,
                track: req_text(dtmf.track, "track")?,
                digit,
            })
        }
        "mark" => {
            let mark = required(raw.mark, "mark")?;
            Inbound::Mark(Mark {
                stream_sid: req_text(raw.stream_sid, "streamSid")?,
                sequence_number: optional_num(raw.sequence_number, "sequenceNumber")?,
                name: req_text(mark.name, "name")?,
            })
        }
        "stop" => {
            let stop = required(raw.stop, "stop")?;
            Inbound::Stop(Stop {
                stream_sid: req_text(raw.stream_sid, "streamSid")?,
                sequence_number: optional_num(raw.sequence_number, "sequenceNumber")?,
                account_sid: req_text(stop.account_sid, "accountSid")?,
                call_sid: req_text(stop.call_sid, "callSid")?,
            })
        }
        _ => Inbound::Unknown { event },
    };
    Ok(msg)
}

/// Parses one frame we sent to Twilio (for the simulated caller). An event other than `media`,
/// `mark` or `clear` is a protocol violation on our side, reported as `Json`.
pub fn parse_outbound(text: &str) -> Result<Outbound<'_>, WireError> {
    let raw = parse_raw(text)?;
    let event = req_text(raw.event, "event")?;
    match &*event {
        "media" => {
            let media = required(raw.media, "media")?;
            Ok(Outbound::Media {
                stream_sid: req_text(raw.stream_sid, "streamSid")?,
                payload: req_text(media.payload, "payload")?,
            })
        }
        "mark" => {
            let mark = required(raw.mark, "mark")?;
            Ok(Outbound::Mark {
                stream_sid: req_text(raw.stream_sid, "streamSid")?,
                name: req_text(mark.name, "name")?,
            })
        }
        "clear" => Ok(Outbound::Clear {
            stream_sid: req_text(raw.stream_sid, "streamSid")?,
        }),
        other => Err(WireError::Json(format!(
            "event `{other}` is not one we send to Twilio (media, mark, clear)"
        ))),
    }
}

/// Exact decoded size of canonical, padded standard base64, or `None` if the length alone rules
/// it out. Knowing it up front lets us report `PayloadTooLarge` without touching `out`.
pub fn decoded_payload_len(b64: &str) -> Option<usize> {
    let b = b64.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let padding = b.iter().rev().take(2).take_while(|&&c| c == b'=').count();
    Some(b.len() / 4 * 3 - padding)
}

/// Decodes a base64 media payload into `out`, returning the byte count. Allocates nothing.
///
/// Standard alphabet with canonical `=` padding, as Twilio sends and [`write_media`] writes.
pub fn decode_payload(b64: &str, out: &mut [u8]) -> Result<usize, WireError> {
    let len = decoded_payload_len(b64).ok_or(WireError::InvalidBase64)?;
    let Some(dst) = out.get_mut(..len) else {
        return Err(WireError::PayloadTooLarge {
            decoded_len: len,
            limit: out.len(),
        });
    };
    BASE64
        .decode_slice(b64.as_bytes(), dst)
        .map_err(|_| WireError::InvalidBase64)
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Input bytes per base64 round: a multiple of 3, so only the last round can need padding.
const B64_CHUNK: usize = 192;

fn put_base64<B: bytes::BufMut>(out: &mut B, data: &[u8]) {
    let mut buf = [0u8; B64_CHUNK / 3 * 4];
    for chunk in data.chunks(B64_CHUNK) {
        // Cannot fail: `buf` holds the encoding of a full chunk.
        if let Ok(n) = BASE64.encode_slice(chunk, &mut buf) {
            out.put_slice(&buf[..n]);
        }
    }
}

fn put_u64<B: bytes::BufMut>(out: &mut B, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[i..]);
}

/// Twilio sends its counters as JSON strings.
fn put_u64_str<B: bytes::BufMut>(out: &mut B, n: u64) {
    out.put_u8(b'"');
    put_u64(out, n);
    out.put_u8(b'"');
}

fn put_str<B: bytes::BufMut>(out: &mut B, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.put_slice(&bytes[run_start..i]);
        run_start = i + 1;
        if short.is_empty() {
            out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0x0F)],
            ]);
        } else {
            out.put_slice(short);
        }
    }
    out.put_slice(&bytes[run_start..]);
    out.put_u8(b'"');
}

/// Appends `{"event":"media","streamSid":…,"media":{"payload":…}}`.
pub fn write_media<B: bytes::BufMut>(out: &mut B, stream_sid: &str, mulaw: &[u8]) {
    out.put_slice(br#"{"event":"media","streamSid":"#);
    put_str(out, stream_sid);
    out.put_slice(br#","media":{"payload":""#);
    put_base64(out, mulaw);
    out.put_slice(br#""}}"#);
}

/// Appends `{"event":"mark","streamSid":…,"mark":{"name":…}}`.
pub fn write_mark<B: bytes::BufMut>(out: &mut B, stream_sid: &str, name: &str) {
    out.put_slice(br#"{"event":"mark","streamSid":"#);
    put_str(out, stream_sid);
    out.put_slice(br#","mark":{"name":"#);
    put_str(out, name);
    out.put_slice(b"}}");
}

/// Appends `{"event":"clear","streamSid":…}`.
/// How every `clear` [`write_clear`] writes begins (the socket writer recognises it by this).
pub const CLEAR_PREFIX: &[u8] = br#"{"event":"clear","#;

pub fn write_clear<B: bytes::BufMut>(out: &mut B, stream_sid: &str) {
    out.put_slice(CLEAR_PREFIX);
    out.put_slice(br#""streamSid":"#);
    put_str(out, stream_sid);
    out.put_u8(b'}');
}

// Twilio-side writers, used by the simulated caller (`kav call`, loadgen) and tests. Key order
// follows the examples in Twilio's docs; counters are strings, as Twilio sends them.

/// Appends `{"event":"connected","protocol":"Call","version":"1.0.0"}`.
pub fn write_connected<B: bytes::BufMut>(out: &mut B) {
    out.put_slice(br#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#);
}

/// Appends a `start` message. Fields left at their `Default` get what Twilio sends for a
/// bidirectional stream: `sequenceNumber` "1", tracks `["inbound"]`, `audio/x-mulaw` 8000 Hz mono.
pub fn write_start<B: bytes::BufMut>(out: &mut B, start: &Start) {
    out.put_slice(br#"{"event":"start","sequenceNumber":"#);
    put_u64_str(out, start.sequence_number.unwrap_or(1));
    out.put_slice(br#","start":{"accountSid":"#);
    put_str(out, &start.account_sid);
    out.put_slice(br#","streamSid":"#);
    put_str(out, &start.stream_sid);
    out.put_slice(br#","callSid":"#);
    put_str(out, &start.call_sid);
    out.put_slice(br#","tracks":["#);
    if start.tracks.is_empty() {
        out.put_slice(br#""inbound""#);
    }
    for (i, track) in start.tracks.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        put_str(out, track);
    }
    out.put_slice(br#"],"customParameters":{"#);
    for (i, (name, value)) in start.custom_parameters.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        put_str(out, name);
        out.put_u8(b':');
        put_str(out, value);
    }
    let format = &start.media_format;
    out.put_slice(br#"},"mediaFormat":{"encoding":"#);
    put_str(
        out,
        if format.encoding.is_empty() {
            "audio/x-mulaw"
        } else {
            &format.encoding
        },
    );
    out.put_slice(br#","sampleRate":"#);
    put_u64(
        out,
        u64::from(if format.sample_rate == 0 {
            8000
        } else {
            format.sample_rate
        }),
    );
    out.put_slice(br#","channels":"#);
    put_u64(
        out,
        u64::from(if format.channels == 0 {
            1
        } else {
            format.channels
        }),
    );
    out.put_slice(br#"}},"streamSid":"#);
    put_str(out, &start.stream_sid);
    out.put_u8(b'}');
}

/// Appends an inbound-track `media` message as Twilio sends it.
pub fn write_inbound_media<B: bytes::BufMut>(
    out: &mut B,
    stream_sid: &str,
    sequence_number: u64,
    chunk: u64,
    timestamp_ms: u64,
    mulaw: &[u8],
) {
    out.put_slice(br#"{"event":"media","sequenceNumber":"#);
    put_u64_str(out, sequence_number);
    out.put_slice(br#","media":{"track":"inbound","chunk":"#);
    put_u64_str(out, chunk);
    out.put_slice(br#","timestamp":"#);
    put_u64_str(out, timestamp_ms);
    out.put_slice(br#","payload":""#);
    put_base64(out, mulaw);
    out.put_slice(br#""},"streamSid":"#);
    put_str(out, stream_sid);
    out.put_u8(b'}');
}

/// Appends a `dtmf` message. The digit is written as given; the parser is what rejects bad ones.
pub fn write_dtmf<B: bytes::BufMut>(
    out: &mut B,
    stream_sid: &str,
    sequence_number: u64,
    digit: char,
) {
    let mut utf8 = [0u8; 4];
    out.put_slice(br#"{"event":"dtmf","streamSid":"#);
    put_str(out, stream_sid);
    out.put_slice(br#","sequenceNumber":"#);
    put_u64_str(out, sequence_number);
    out.put_slice(br#","dtmf":{"track":"inbound_track","digit":"#);
    put_str(out, digit.encode_utf8(&mut utf8));
    out.put_slice(b"}}");
}

/// Appends the `mark` Twilio echoes back when playback reaches (or `clear` flushes) a mark.
pub fn write_mark_echo<B: bytes::BufMut>(
    out: &mut B,
    stream_sid: &str,
    sequence_number: u64,
    name: &str,
) {
    out.put_slice(br#"{"event":"mark","sequenceNumber":"#);
    put_u64_str(out, sequence_number);
    out.put_slice(br#","streamSid":"#);
    put_str(out, stream_sid);
    out.put_slice(br#","mark":{"name":"#);
    put_str(out, name);
    out.put_slice(b"}}");
}

/// Appends a `stop` message.
pub fn write_stop<B: bytes::BufMut>(
    out: &mut B,
    stream_sid: &str,
    sequence_number: u64,
    account_sid: &str,
    call_sid: &str,
) {
    out.put_slice(br#"{"event":"stop","sequenceNumber":"#);
    put_u64_str(out, sequence_number);
    out.put_slice(br#","stop":{"accountSid":"#);
    put_str(out, account_sid);
    out.put_slice(br#","callSid":"#);
    put_str(out, call_sid);
    out.put_slice(br#"},"streamSid":"#);
    put_str(out, stream_sid);
    out.put_u8(b'}');
}

#[cfg(test)]
mod tests;
