//! OpenAI-compatible chat model (`OpenAiChat`). The one agent on top of it is the booking agent
//! (`crate::agent::llm::BookingAgent`).
//!
//! Works against OpenAI, Azure OpenAI, vLLM, llama.cpp server and Ollama: requests are built with
//! async-openai's typed Chat Completions request, and the streamed chunks are parsed with our own
//! lenient types (`byot`) because local servers omit fields that async-openai's chunk type requires.
//!
//! Latency policy (a caller is waiting on the phone):
//! - one `reqwest::Client` (connection pool) per process, shared by every call; `warm()` opens the
//!   connection ahead of the first call;
//! - every attempt must deliver its first chunk within `first_byte_timeout_ms`, and the whole
//!   completion (retries included) must end within `timeout_ms`;
//! - 429/5xx, connection failures and broken streams are retried (`retries` times) but only while no
//!   text has been streamed: once words went to the caller, a retry would repeat them;
//! - dropping the `complete` future drops the response, which closes the HTTP connection (barge-in).
//!
//! This file is the client and its retry loop; `request.rs` builds the request, `stream.rs` parses
//! the streamed chunks and assembles tool calls, `http.rs` maps HTTP statuses and errors, `key.rs`
//! picks the API key.

use std::sync::Arc;
use std::time::Duration;

use async_openai::config::{AzureConfig, Config, OpenAIConfig};
use async_openai::middleware::ReqwestService;
use async_openai::types::chat::CreateChatCompletionRequest;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::LlmConfig;
use crate::metrics::llm_stats;
use crate::providers::{
    BoxFuture, ChatCompletion, ChatError, ChatEvent, ChatModel, ChatRequest, FailureKind,
    ProviderError,
};

mod http;
mod key;
mod request;
mod stream;

pub use key::{KAV_API_KEY_ENV, OPENAI_API_KEY_ENV, api_key_from_env};

use http::{StatusMappingService, map_error};
use request::build_request;
use stream::{StreamChunk, ToolCallAssembler};

#[derive(Debug, thiserror::Error)]
pub enum OpenAiConfigError {
    #[error("llm.base_url {0:?} is not an http(s) URL")]
    BaseUrl(String),
    #[error("llm.model is empty")]
    Model,
    #[error("the LLM API key contains characters not allowed in an HTTP header")]
    ApiKey,
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// Timeouts and retry policy of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLimits {
    pub first_byte_timeout: Duration,
    pub timeout: Duration,
    pub retries: u32,
}

/// A streaming, tool-calling chat model behind an OpenAI-compatible `/chat/completions`.
/// Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct OpenAiChat {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_openai::Client<Box<dyn Config>>,
    http: reqwest::Client,
    model: String,
    limits: ChatLimits,
}

impl OpenAiChat {
    /// Builds the client from `[llm]` with the API key from the environment
    /// ([`api_key_from_env`]).
    pub fn from_config(cfg: &LlmConfig) -> Result<Self, OpenAiConfigError> {
        let api_key = api_key_from_env(&cfg.base_url, |var| std::env::var(var).ok());
        Self::new(cfg, api_key)
    }

    /// Builds the client from `[llm]` with an explicit API key (`None`: local server, no auth).
    pub fn new(cfg: &LlmConfig, api_key: Option<String>) -> Result<Self, OpenAiConfigError> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(OpenAiConfigError::BaseUrl(cfg.base_url.clone()));
        }
        if cfg.model.is_empty() {
            return Err(OpenAiConfigError::Model);
        }
        let api_key = api_key.unwrap_or_default();
        // async-openai unwraps the header value it builds from the key; check it here so a bad key
        // is a start-up error instead of a panic inside a call.
        if reqwest::header::HeaderValue::from_str(&format!("Bearer {api_key}")).is_err() {
            return Err(OpenAiConfigError::ApiKey);
        }
        let config: Box<dyn Config> = if cfg.azure_api_version.is_empty() {
            Box::new(
                OpenAIConfig::new()
                    .with_api_base(base)
                    .with_api_key(api_key),
            )
        } else {
            Box::new(
                AzureConfig::new()
                    .with_api_base(base)
                    .with_deployment_id(cfg.model.clone())
                    .with_api_version(cfg.azure_api_version.clone())
                    .with_api_key(api_key),
            )
        };
        let limits = ChatLimits {
            first_byte_timeout: Duration::from_millis(cfg.first_byte_timeout_ms.max(1)),
            timeout: Duration::from_millis(cfg.timeout_ms.max(1)),
            retries: cfg.retries,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(limits.first_byte_timeout)
            // Keep idle connections long enough for the keep-warm period to matter.
            .pool_idle_timeout(Duration::from_secs(600))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| OpenAiConfigError::Http(e.to_string()))?;
        // Our own service instead of async-openai's default executor: its built-in retry layer
        // retries 3 times with exponential backoff, which does not fit a caller waiting on the
        // line, and it loses the HTTP status of error bodies that are not OpenAI's JSON shape.
        let client = async_openai::Client::build(http.clone(), config)
            .with_http_service(StatusMappingService(ReqwestService::new(http.clone())));
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                http,
                model: cfg.model.clone(),
                limits,
            }),
        })
    }

    pub fn model(&self) -> &str {
        &self.inner.model
    }

    pub fn limits(&self) -> ChatLimits {
        self.inner.limits
    }

    /// Opens (or refreshes) a pooled connection with `GET {base}/models`. Any HTTP status counts:
    /// the point is the TCP/TLS connection, and local servers may not implement `/models`.
    /// Returns how long it took.
    pub fn warm_up(&self) -> BoxFuture<'static, Result<Duration, ProviderError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let started = Instant::now();
            let config = inner.client.config();
            let request = inner
                .http
                .get(config.url("/models"))
                .query(&config.query())
                .headers(config.headers());
            let response = tokio::time::timeout(inner.limits.timeout, request.send())
                .await
                .map_err(|_| ProviderError::timeout("LLM warm-up"))?
                .map_err(|e| ProviderError::retryable(format!("LLM warm-up failed: {e}")))?;
            // Read the (small) body so the connection goes back to the pool for reuse.
            let status = response.status();
            let _ = tokio::time::timeout(inner.limits.timeout, response.bytes()).await;
            let took = started.elapsed();
            tracing::info!(
                status = status.as_u16(),
                warm_ms = took.as_millis() as u64,
                "LLM connection warm"
            );
            Ok(took)
        })
    }

    async fn run(
        inner: Arc<Inner>,
        request: ChatRequest,
        events: mpsc::Sender<ChatEvent>,
    ) -> Result<ChatCompletion, ChatError> {
        let started = Instant::now();
        let deadline = started + inner.limits.timeout;
        let body = build_request(&inner.model, &request);
        let mut retries_left = inner.limits.retries;
        let mut attempt = Attempt::default();
        loop {
            let result = tokio::time::timeout_at(
                deadline,
                Self::attempt(&inner, &body, &events, &mut attempt),
            )
            .await
            .unwrap_or(Err(ChatError::Timeout));
            match result {
                Ok(finish_reason) => {
                    let now = Instant::now();
                    let completion = ChatCompletion {
                        text: attempt.text,
                        tool_calls: attempt.tool_calls.finish(),
                        finish_reason,
                        ttfb_ms: ms(attempt.first_chunk_at.unwrap_or(now) - started),
                        total_ms: ms(now - started),
                    };
                    llm_stats().record_completion(completion.ttfb_ms, completion.total_ms);
                    return Ok(completion);
                }
                Err(error) => {
                    let retry_after = match error.kind() {
                        FailureKind::Retryable { retry_after } if attempt.text.is_empty() => {
                            Some(retry_after)
                        }
                        _ => None,
                    };
                    // The one backoff policy, capped by the whole-answer timeout; a Retry-After
                    // that would land past the deadline ends the request now (the caller falls
                    // back) instead of sleeping into a timeout.
                    let retry = inner.limits.retries - retries_left;
                    let wait = retry_after.map(|hint| {
                        crate::retry::Backoff::new(LLM_RETRY_BASE, inner.limits.timeout)
                            .delay(retry, hint)
                    });
                    let wait = match wait {
                        Some(wait) if retries_left > 0 && Instant::now() + wait < deadline => wait,
                        _ => {
                            llm_stats().record_failure(matches!(error, ChatError::Timeout));
                            return Err(error);
                        }
                    };
                    llm_stats().record_retry();
                    retries_left -= 1;
                    tracing::warn!(%error, retries_left, wait_ms = ms(wait), "LLM attempt failed; retrying");
                    // Tool-call fragments of a broken attempt must not leak into the next one.
                    attempt = Attempt::default();
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One HTTP request. Accumulates into `attempt` so text already streamed is known to the
    /// retry decision even when this attempt fails or times out.
    async fn attempt(
        inner: &Inner,
        body: &CreateChatCompletionRequest,
        events: &mpsc::Sender<ChatEvent>,
        attempt: &mut Attempt,
    ) -> Result<String, ChatError> {
        let first_byte_deadline = Instant::now() + inner.limits.first_byte_timeout;
        let chat = inner.client.chat();
        let stream = chat.create_stream_byot::<_, StreamChunk>(body);
        let mut stream = tokio::time::timeout_at(first_byte_deadline, stream)
            .await
            .map_err(|_| ChatError::Timeout)?
            .map_err(map_error)?;
        let mut finish_reason = None;
        loop {
            let next = if attempt.first_chunk_at.is_none() {
                tokio::time::timeout_at(first_byte_deadline, stream.next())
                    .await
                    .map_err(|_| ChatError::Timeout)?
            } else {
                stream.next().await
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(map_error)?;
            attempt.first_chunk_at.get_or_insert_with(Instant::now);
            if let Some(error) = chunk.error {
                return Err(ChatError::Stream(format!(
                    "server error in stream: {error}"
                )));
            }
            // n = 1: only choice 0 exists; other indices would be alternative answers.
            for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
                if let Some(delta) = choice.delta {
                    if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                        attempt.text.push_str(&text);
                        // A closed receiver means nobody listens any more; the completion is
                        // still returned to the caller of `complete`.
                        let _ = events.send(ChatEvent::TextDelta(text)).await;
                    }
                    for fragment in delta.tool_calls.into_iter().flatten() {
                        attempt.tool_calls.add(fragment);
                    }
                }
                if let Some(reason) = choice.finish_reason {
                    finish_reason = Some(reason);
                }
            }
        }
        // async-openai ends the stream both on `data: [DONE]` and on a clean EOF; a stream without
        // a finish reason was cut short and may hold half a tool call.
        finish_reason.ok_or_else(|| {
            ChatError::Stream("stream ended without a finish_reason (connection closed?)".into())
        })
    }
}

impl ChatModel for OpenAiChat {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn warm(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        let warm = self.warm_up();
        Box::pin(async move { warm.await.map(|_| ()) })
    }

    fn prepare(&self, call_sid: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(%call_sid, "no tokio runtime; LLM pre-connect skipped");
            return;
        };
        let warm = self.warm_up();
        let call_sid = call_sid.to_string();
        // Fire and forget: the webhook must answer Twilio now; the connection lands in the pool.
        runtime.spawn(async move {
            if let Err(error) = warm.await {
                tracing::warn!(%call_sid, %error, "LLM pre-connect failed");
            }
        });
    }

    fn complete(
        &self,
        request: ChatRequest,
        events: mpsc::Sender<ChatEvent>,
    ) -> BoxFuture<'static, Result<ChatCompletion, ChatError>> {
        Box::pin(Self::run(self.inner.clone(), request, events))
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[derive(Default)]
struct Attempt {
    text: String,
    tool_calls: ToolCallAssembler,
    first_chunk_at: Option<Instant>,
}

/// First delay of the LLM retry backoff (then doubling, capped by `timeout_ms`).
const LLM_RETRY_BASE: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_config_is_a_start_up_error() {
        let cfg = LlmConfig {
            base_url: "ftp://x".into(),
            ..LlmConfig::default()
        };
        assert!(matches!(
            OpenAiChat::new(&cfg, None),
            Err(OpenAiConfigError::BaseUrl(_))
        ));
        let cfg = LlmConfig::default();
        assert!(matches!(
            OpenAiChat::new(&cfg, Some("line\nbreak".into())),
            Err(OpenAiConfigError::ApiKey)
        ));
    }
}
