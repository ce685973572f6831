//! Provider interfaces. Each provider runs in its own task and talks to the call driver over
//! bounded channels, so a slow provider throttles only its own call and never the audio loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use tokio::sync::mpsc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who is calling and how the stream was set up; handed to every provider when a call starts.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub call_sid: String,
    pub stream_sid: String,
    /// BCP-47 language of the call, e.g. `he-IL`.
    pub language: String,
    /// `<Parameter>`s from the TwiML, as delivered in `start.customParameters`.
    pub parameters: BTreeMap<String, String>,
}

// ---------------------------------------------------------------- speech to text

/// Audio format a recogniser wants; the session's audio graph produces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SttAudioFormat {
    /// 8 kHz mu-law exactly as Twilio sent it (Google STT takes this as-is).
    #[default]
    Mulaw8k,
    /// 16 kHz linear PCM (e.g. Whisper).
    Pcm16k,
}

// Inline audio on purpose: boxing would allocate once per 20 ms frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SttInput {
    /// One 20 ms frame of caller audio in the recogniser's format.
    Mulaw([u8; 160]),
    Pcm16k([i16; 320]),
    /// Our VAD decided the caller stopped talking: finalise what you have.
    UtteranceEnd,
    /// The audio since the last utterance end was noise, not speech: forget it.
    UtteranceDiscarded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SttEvent {
    Partial { text: String },
    Final { text: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error("speech recogniser failed: {0}")]
    Failed(String),
}

pub trait SpeechToText: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn audio_format(&self) -> SttAudioFormat;
    /// Runs one recognition stream for a call until `input` closes.
    fn stream(
        &self,
        call: CallContext,
        input: mpsc::Receiver<SttInput>,
        events: mpsc::Sender<SttEvent>,
    ) -> BoxFuture<'static, Result<(), SttError>>;
}

// ---------------------------------------------------------------- agent

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub text: String,
    /// The assistant was cut off by the caller; `text` is only what the caller heard.
    pub interrupted: bool,
}

#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub call: CallContext,
    pub turn: u32,
    /// Conversation so far, ending with the user's message for this turn.
    pub history: Vec<Message>,
    /// The user's message arrived as keypad digits rather than speech.
    pub digits: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// A piece of the spoken reply, in order.
    TextDelta(String),
    /// After the reply is spoken, collect keypad digits (e.g. a phone number).
    CollectDigits { max_digits: u8 },
    /// End the call after the reply is spoken.
    Hangup,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent failed: {0}")]
    Failed(String),
    #[error("agent timed out")]
    Timeout,
}

pub trait Agent: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Streams the reply for one turn into `events`; returns when the reply is complete.
    fn respond(
        &self,
        request: AgentRequest,
        events: mpsc::Sender<AgentEvent>,
    ) -> BoxFuture<'static, Result<(), AgentError>>;
}

// ---------------------------------------------------------------- text to speech

#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("speech synthesis failed: {0}")]
    Failed(String),
}

pub trait TextToSpeech: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Synthesises `text` as headerless 8 kHz mu-law, sending chunks of at most
    /// [`TTS_MAX_CHUNK_BYTES`] as soon as they exist. `audio` is bounded: awaiting `send` is the
    /// backpressure that throttles synthesis when the call's playout buffer is full.
    fn synthesize(
        &self,
        text: String,
        language: String,
        audio: mpsc::Sender<Bytes>,
    ) -> BoxFuture<'static, Result<(), TtsError>>;
}

/// Largest TTS chunk a provider may send (200 ms of 8 kHz mu-law).
pub const TTS_MAX_CHUNK_BYTES: usize = 1600;
