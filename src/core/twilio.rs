//! Twilio Media Streams wire codec (bidirectional `<Connect><Stream>`), both directions.
//! OWNER: codec helper. The types below are the agreed API; bodies are placeholders.
//!
//! Parsing borrows from the frame text and allocates nothing for `media`, `dtmf`, `mark` and
//! `stop` (only `start`, once per call, owns its strings). Writers append JSON to a caller-owned
//! buffer and allocate nothing once that buffer has capacity.

use std::borrow::Cow;
use std::collections::BTreeMap;

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

pub fn parse_inbound(_text: &str) -> Result<Inbound<'_>, WireError> {
    unimplemented!("codec helper")
}

pub fn parse_outbound(_text: &str) -> Result<Outbound<'_>, WireError> {
    unimplemented!("codec helper")
}

/// Decodes a base64 media payload into `out`, returning the byte count. Allocates nothing.
pub fn decode_payload(_b64: &str, _out: &mut [u8]) -> Result<usize, WireError> {
    unimplemented!("codec helper")
}

/// Appends `{"event":"media","streamSid":…,"media":{"payload":…}}`.
pub fn write_media<B: bytes::BufMut>(_out: &mut B, _stream_sid: &str, _mulaw: &[u8]) {
    unimplemented!("codec helper")
}

/// Appends `{"event":"mark","streamSid":…,"mark":{"name":…}}`.
pub fn write_mark<B: bytes::BufMut>(_out: &mut B, _stream_sid: &str, _name: &str) {
    unimplemented!("codec helper")
}

/// Appends `{"event":"clear","streamSid":…}`.
pub fn write_clear<B: bytes::BufMut>(_out: &mut B, _stream_sid: &str) {
    unimplemented!("codec helper")
}

// Twilio-side writers, used by the simulated caller (`kav call`, loadgen) and tests.
pub fn write_connected<B: bytes::BufMut>(_out: &mut B) {
    unimplemented!("codec helper")
}
pub fn write_start<B: bytes::BufMut>(_out: &mut B, _start: &Start) {
    unimplemented!("codec helper")
}
pub fn write_inbound_media<B: bytes::BufMut>(
    _out: &mut B,
    _stream_sid: &str,
    _sequence_number: u64,
    _chunk: u64,
    _timestamp_ms: u64,
    _mulaw: &[u8],
) {
    unimplemented!("codec helper")
}
pub fn write_dtmf<B: bytes::BufMut>(
    _out: &mut B,
    _stream_sid: &str,
    _sequence_number: u64,
    _digit: char,
) {
    unimplemented!("codec helper")
}
pub fn write_mark_echo<B: bytes::BufMut>(
    _out: &mut B,
    _stream_sid: &str,
    _sequence_number: u64,
    _name: &str,
) {
    unimplemented!("codec helper")
}
pub fn write_stop<B: bytes::BufMut>(
    _out: &mut B,
    _stream_sid: &str,
    _sequence_number: u64,
    _account_sid: &str,
    _call_sid: &str,
) {
    unimplemented!("codec helper")
}
