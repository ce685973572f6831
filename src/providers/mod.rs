//! Provider interfaces. Each provider runs in its own task and talks to the call driver over
//! bounded channels, so a slow provider throttles only its own call and never the audio loop.

pub mod audio_file;
pub mod espeak;
pub mod google;
pub mod keypad;
pub mod openai;
pub mod sim;
#[cfg(feature = "whisper")]
pub mod whisper;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use crate::voice::ports::{
    AgentEvent, AgentRequest, CallContext, Channel, FailureKind, Message, ProviderError, Role,
    SttAudioFormat, SttEvent, SttInput,
};

/// The three providers a call uses, as built by `crate::app` from the configuration.
pub struct Providers {
    pub stt: Arc<dyn SpeechToText>,
    pub agent: Arc<dyn Agent>,
    pub tts: Arc<dyn TextToSpeech>,
    /// Measurements of the Google providers when one is in use.
    pub google_stats: Option<Arc<google::GoogleStats>>,
    /// Other providers' own measurements for `/metrics` (e.g. Whisper's refusals and drops).
    pub metric_sources: Vec<Arc<dyn crate::metrics::MetricsSource>>,
}

impl Providers {
    /// The process metrics, with the providers' own measurements appended to `/metrics`.
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        let metrics = crate::metrics::Metrics::new();
        if let Some(g) = &self.google_stats {
            metrics.add_source(g.clone());
        }
        for source in &self.metric_sources {
            metrics.add_source(source.clone());
        }
        Arc::new(metrics)
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// ---------------------------------------------------------------- speech to text

/// A recogniser failure: a [`ProviderError`], whose kind the call driver acts on.
pub type SttError = ProviderError;

pub trait SpeechToText: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn audio_format(&self) -> SttAudioFormat;
    /// Opens connections and loads what the first call would otherwise pay for. Called once at
    /// start-up (its duration is logged) and again every `keep_warm` period.
    fn warm(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }

    /// The TwiML webhook arrived for `call_sid` (the phone is still ringing): open what this call
    /// will need, so its first turn pays no connection cost. Must not block.
    fn prepare(&self, _call_sid: &str) {}

    /// Runs one recognition stream for a call until `input` closes.
    fn stream(
        &self,
        call: CallContext,
        input: mpsc::Receiver<SttInput>,
        events: mpsc::Sender<SttEvent>,
    ) -> BoxFuture<'static, Result<(), SttError>>;
}

// ---------------------------------------------------------------- agent

/// An agent failure: a [`ProviderError`], whose kind the session records in the trace.
pub type AgentError = ProviderError;

pub trait Agent: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Opens connections and loads what the first call would otherwise pay for. Called once at
    /// start-up (its duration is logged) and again every `keep_warm` period.
    fn warm(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }

    /// The TwiML webhook arrived for `call_sid` (the phone is still ringing): open what this call
    /// will need, so its first turn pays no connection cost. Must not block.
    fn prepare(&self, _call_sid: &str) {}

    /// The conversation ended (call hung up). Must not block; default does nothing.
    fn call_ended(&self, _call: &CallContext, _channel: Channel) {}

    /// Streams the reply for one turn into `events`; returns when the reply is complete.
    fn respond(
        &self,
        request: AgentRequest,
        events: mpsc::Sender<AgentEvent>,
    ) -> BoxFuture<'static, Result<(), AgentError>>;
}

// ---------------------------------------------------------------- text to speech

/// A synthesiser failure: a [`ProviderError`], whose kind the session records in the trace.
pub type TtsError = ProviderError;

pub trait TextToSpeech: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Opens connections and loads what the first call would otherwise pay for. Called once at
    /// start-up (its duration is logged) and again every `keep_warm` period.
    fn warm(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }

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

// ---------------------------------------------------------------- chat model (LLM)

/// A JSON-schema'd function the model may call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// A complete tool call, assembled from the streamed fragments (by `index`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// Raw JSON text of the arguments, exactly as the model produced it (may be invalid JSON).
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    System(String),
    User(String),
    /// An assistant message: text and/or the tool calls it made.
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call, as JSON text.
    Tool {
        call_id: String,
        content: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
    pub temperature: f32,
}

/// Streamed while a completion is generated.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// Assistant text, in order, as soon as it arrives.
    TextDelta(String),
}

/// What a finished completion produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatCompletion {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    /// `stop`, `tool_calls`, `length`, ... as reported by the server.
    pub finish_reason: String,
    /// Time from request to the first streamed byte of the answer, and to its end.
    pub ttfb_ms: u64,
    pub total_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("LLM request timed out")]
    Timeout,
    #[error("LLM HTTP status {status}: {message}")]
    Status {
        status: u16,
        message: String,
        /// The server's `Retry-After` (429, 503), when it sent one in seconds.
        retry_after: Option<std::time::Duration>,
    },
    #[error("LLM stream failed: {0}")]
    Stream(String),
}

impl ChatError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ChatError::Timeout => FailureKind::Timeout,
            ChatError::Status {
                status,
                retry_after,
                ..
            } if *status == 429 || *status >= 500 => FailureKind::Retryable {
                retry_after: *retry_after,
            },
            ChatError::Status { .. } => FailureKind::Fatal,
            ChatError::Stream(_) => FailureKind::Retryable { retry_after: None },
        }
    }
}

impl From<ChatError> for ProviderError {
    fn from(e: ChatError) -> Self {
        ProviderError::of_kind(e.kind(), e.to_string())
    }
}

/// An OpenAI-compatible chat model. Dropping the future cancels the HTTP stream (barge-in).
pub trait ChatModel: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Opens the pooled connection so the first completion pays no TCP/TLS set-up. Called at
    /// start-up and every `keep_warm` period by the agent that owns the model.
    fn warm(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }

    /// A call is about to start: warm a pooled connection for it. Must not block.
    fn prepare(&self, _call_sid: &str) {}

    fn complete(
        &self,
        request: ChatRequest,
        events: mpsc::Sender<ChatEvent>,
    ) -> BoxFuture<'static, Result<ChatCompletion, ChatError>>;
}

// ---------------------------------------------------------------- WhatsApp sending

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutboundBody {
    Text {
        text: String,
    },
    /// A pre-approved template (needed outside the 24-hour customer-service window).
    Template {
        name: String,
        language: String,
        params: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboundMessage {
    /// WhatsApp Cloud API sender number id of the business.
    pub phone_number_id: String,
    /// Recipient phone, E.164 digits.
    pub to: String,
    pub body: OutboundBody,
    /// Stable per logical message, so a retried send is one message to the customer.
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// Provider message id (wamid / Twilio SID).
    pub message_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later (rate limits 130429 / 131056, 5xx, timeouts).
    #[error("retryable send error {code}: {message}")]
    Retryable {
        code: i64,
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// Free-form text is not allowed: the 24-hour window is closed (131047); send a template.
    #[error("outside the 24-hour window: {message}")]
    OutsideWindow { message: String },
    /// Will never succeed as sent (bad number, bad template, auth).
    #[error("permanent send error {code}: {message}")]
    Permanent { code: i64, message: String },
}

/// Sends WhatsApp messages (Graph API, Twilio, or the offline log sender).
pub trait WhatsAppSender: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn send(&self, message: OutboundMessage) -> BoxFuture<'static, Result<SendReceipt, SendError>>;
    /// Whether a successful `send` reaches the customer. A stand-in that only logs (no WhatsApp
    /// configured, or mock mode) says no, so the agent never tells a customer a message was sent.
    fn delivers(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn chat_failures_keep_their_kind_as_agent_errors() {
        let status = |status, retry_after| ChatError::Status {
            status,
            message: "m".into(),
            retry_after,
        };
        let hint = Some(Duration::from_secs(2));
        let e = AgentError::from(status(429, hint));
        assert_eq!(e.kind(), FailureKind::Retryable { retry_after: hint });
        assert!(e.reason().contains("429"), "{e}");
        assert_eq!(
            AgentError::from(status(401, None)).kind(),
            FailureKind::Fatal
        );
        assert_eq!(
            AgentError::from(ChatError::Timeout).kind(),
            FailureKind::Timeout
        );
        assert_eq!(
            AgentError::from(ChatError::Stream("eof".into())).kind(),
            FailureKind::Retryable { retry_after: None }
        );
    }
}
