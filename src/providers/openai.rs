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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::config::{AzureConfig, Config, OpenAIConfig};
use async_openai::error::{ApiError, ApiErrorResponse, OpenAIError};
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionTool, ChatCompletionTools,
    CreateChatCompletionRequest, FunctionCall, FunctionObject,
};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::LlmConfig;
use crate::metrics::llm_stats;
use crate::providers::{
    BoxFuture, ChatCompletion, ChatError, ChatEvent, ChatMessage, ChatModel, ChatRequest,
    FailureKind, ProviderError, ToolCall, ToolSpec,
};

/// The API key for any server.
pub const KAV_API_KEY_ENV: &str = "KAV_LLM_API_KEY";
/// The conventional OpenAI key: sent only to OpenAI and Azure OpenAI hosts, so a key exported for
/// OpenAI never leaks to a self-hosted or third-party server named in `llm.base_url`.
pub const OPENAI_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// Picks the API key for `base_url` from environment variables (`lookup` is `std::env::var`).
pub fn api_key_from_env(base_url: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let non_empty = |var: &str| lookup(var).filter(|v| !v.is_empty());
    if let Some(key) = non_empty(KAV_API_KEY_ENV) {
        return Some(key);
    }
    let host = url::Url::parse(base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))?;
    let official = host == "api.openai.com" || host.ends_with(".openai.azure.com");
    official.then(|| non_empty(OPENAI_API_KEY_ENV)).flatten()
}

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

/// Retry-After hints travel from [`StatusMappingService`] to [`map_error`] in the error's `code`.
const RETRY_AFTER_CODE: &str = "kav_retry_after_s=";

#[cfg(test)]
fn is_retryable(error: &ChatError) -> bool {
    // A timeout is not retried: the whole-answer deadline has passed.
    matches!(error.kind(), FailureKind::Retryable { .. })
}

fn map_error(error: OpenAIError) -> ChatError {
    match error {
        OpenAIError::ApiError(e) => ChatError::Status {
            status: e.status_code.as_u16(),
            retry_after: e
                .api_error
                .code
                .as_deref()
                .and_then(|c| c.strip_prefix(RETRY_AFTER_CODE))
                .and_then(|s| s.parse().ok())
                .map(Duration::from_secs),
            message: e.api_error.message,
        },
        OpenAIError::Reqwest(e) if e.is_timeout() => ChatError::Timeout,
        other => ChatError::Stream(other.to_string()),
    }
}

// ---------------------------------------------------------------- request

fn build_request(model: &str, request: &ChatRequest) -> CreateChatCompletionRequest {
    let tools =
        (!request.tools.is_empty()).then(|| request.tools.iter().map(tool_to_openai).collect());
    #[allow(deprecated)]
    CreateChatCompletionRequest {
        model: model.to_string(),
        messages: request.messages.iter().map(message_to_openai).collect(),
        temperature: Some(request.temperature),
        // `max_tokens` rather than `max_completion_tokens`: every compatible server (vLLM,
        // llama.cpp, Ollama, Azure) understands it, and OpenAI's chat models still accept it.
        max_tokens: Some(request.max_tokens),
        tools,
        stream: Some(true),
        ..Default::default()
    }
}

fn tool_to_openai(tool: &ToolSpec) -> ChatCompletionTools {
    ChatCompletionTools::Function(ChatCompletionTool {
        function: FunctionObject {
            name: tool.name.clone(),
            description: Some(tool.description.clone()),
            parameters: Some(tool.parameters.clone()),
            strict: None,
        },
    })
}

#[allow(deprecated)]
fn message_to_openai(message: &ChatMessage) -> ChatCompletionRequestMessage {
    match message {
        ChatMessage::System(text) => {
            ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
                content: ChatCompletionRequestSystemMessageContent::Text(text.clone()),
                name: None,
            })
        }
        ChatMessage::User(text) => {
            ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
                content: ChatCompletionRequestUserMessageContent::Text(text.clone()),
                name: None,
            })
        }
        ChatMessage::Assistant { text, tool_calls } => {
            let tool_calls = (!tool_calls.is_empty()).then(|| {
                tool_calls
                    .iter()
                    .map(|call| {
                        ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                            id: call.id.clone(),
                            function: FunctionCall {
                                name: call.name.clone(),
                                arguments: call.arguments.clone(),
                            },
                        })
                    })
                    .collect()
            });
            // `content` may be omitted only when the message carries tool calls.
            let content = (!text.is_empty() || tool_calls.is_none())
                .then(|| ChatCompletionRequestAssistantMessageContent::Text(text.clone()));
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content,
                tool_calls,
                ..Default::default()
            })
        }
        ChatMessage::Tool { call_id, content } => {
            ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
                content: ChatCompletionRequestToolMessageContent::Text(content.clone()),
                tool_call_id: call_id.clone(),
            })
        }
    }
}

// ---------------------------------------------------------------- streamed chunks

/// One `chat.completion.chunk`, parsed leniently: every field the client does not need is ignored
/// and every field it needs is optional, so vLLM / llama.cpp / Ollama / Azure chunks all parse
/// (Azure's first chunk has empty `choices` and `prompt_filter_results`).
#[derive(Debug, Deserialize)]
struct StreamChunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    /// Some servers report failures inside the stream instead of with an HTTP status.
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<ChunkDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChunkDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallFragment>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallFragment {
    /// Which tool call this fragment belongs to. Some older servers leave it out.
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionFragment>,
}

#[derive(Debug, Deserialize)]
struct FunctionFragment {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Assembles tool calls from streamed fragments: keyed by `index`, `id` and `name` from the first
/// fragment that carries them, `arguments` concatenated in arrival order.
#[derive(Debug, Default)]
struct ToolCallAssembler {
    calls: BTreeMap<u32, ToolCall>,
}

impl ToolCallAssembler {
    fn add(&mut self, fragment: ToolCallFragment) {
        let index = fragment.index.unwrap_or_else(|| {
            // Without an index, a fragment with an id starts a new call; one without continues
            // the latest call.
            let last = self.calls.keys().next_back().copied();
            match (last, fragment.id.is_some()) {
                (None, _) => 0,
                (Some(last), true) => last + 1,
                (Some(last), false) => last,
            }
        });
        let call = self.calls.entry(index).or_insert_with(|| ToolCall {
            id: String::new(),
            name: String::new(),
            arguments: String::new(),
        });
        if let Some(id) = fragment.id.filter(|id| !id.is_empty())
            && call.id.is_empty()
        {
            call.id = id;
        }
        if let Some(function) = fragment.function {
            if let Some(name) = function.name.filter(|n| !n.is_empty())
                && call.name.is_empty()
            {
                call.name = name;
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&arguments);
            }
        }
    }

    fn finish(self) -> Vec<ToolCall> {
        self.calls.into_values().collect()
    }
}

// ---------------------------------------------------------------- HTTP service

/// Sends the request and turns every non-2xx response into `ApiError` with its status and the
/// best message we can find (OpenAI `{"error":{"message"}}`, llama.cpp/Ollama variants, or text).
#[derive(Clone)]
struct StatusMappingService(ReqwestService);

impl tower::Service<HttpRequestFactory> for StatusMappingService {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = BoxFuture<'static, Result<reqwest::Response, OpenAIError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let sent = self.0.call(request);
        Box::pin(async move {
            let response = sent.await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            // Retry-After in seconds (the HTTP-date form is not used by LLM servers we know).
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = response.bytes().await.unwrap_or_default();
            Err(OpenAIError::ApiError(ApiErrorResponse {
                status_code: status,
                api_error: ApiError {
                    message: error_message(&body),
                    code: retry_after.map(|s| format!("{RETRY_AFTER_CODE}{s}")),
                    ..Default::default()
                },
            }))
        })
    }
}

fn error_message(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let message = json
            .pointer("/error/message")
            .or_else(|| json.get("error"))
            .or_else(|| json.get("message"));
        if let Some(message) = message {
            return match message {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    let text = String::from_utf8_lossy(body);
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(
        index: Option<u32>,
        id: Option<&str>,
        name: Option<&str>,
        args: &str,
    ) -> ToolCallFragment {
        ToolCallFragment {
            index,
            id: id.map(String::from),
            function: Some(FunctionFragment {
                name: name.map(String::from),
                arguments: Some(args.into()),
            }),
        }
    }

    #[test]
    fn assembler_keys_fragments_by_index_and_keeps_first_id_and_name() {
        let mut a = ToolCallAssembler::default();
        a.add(fragment(Some(0), Some("call_a"), Some("book"), ""));
        a.add(fragment(Some(1), Some("call_b"), Some("cancel"), "{\"x\""));
        a.add(fragment(Some(0), None, None, "{\"day\":"));
        a.add(fragment(Some(1), None, None, ":1}"));
        a.add(fragment(
            Some(0),
            Some("ignored"),
            Some("ignored"),
            "\"mon\"}",
        ));
        assert_eq!(
            a.finish(),
            vec![
                ToolCall {
                    id: "call_a".into(),
                    name: "book".into(),
                    arguments: "{\"day\":\"mon\"}".into()
                },
                ToolCall {
                    id: "call_b".into(),
                    name: "cancel".into(),
                    arguments: "{\"x\":1}".into()
                },
            ]
        );
    }

    #[test]
    fn assembler_without_index_starts_a_call_per_id() {
        let mut a = ToolCallAssembler::default();
        a.add(fragment(None, Some("c1"), Some("f"), "{}"));
        a.add(fragment(None, Some("c2"), Some("g"), "{\"a\""));
        a.add(fragment(None, None, None, ":2}"));
        let calls = a.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].arguments, "{\"a\":2}");
    }

    #[test]
    fn error_message_reads_openai_and_plain_bodies() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad model","type":"x"}}"#),
            "bad model"
        );
        assert_eq!(
            error_message(br#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(error_message(b"upstream down"), "upstream down");
    }

    #[test]
    fn retry_policy_is_5xx_429_and_broken_streams_only() {
        let status = |s| ChatError::Status {
            retry_after: None,
            status: s,
            message: String::new(),
        };
        assert!(is_retryable(&status(500)));
        assert!(is_retryable(&status(503)));
        assert!(is_retryable(&status(429)));
        assert!(!is_retryable(&status(400)));
        assert!(!is_retryable(&status(401)));
        assert!(!is_retryable(&ChatError::Timeout));
        assert!(is_retryable(&ChatError::Stream("eof".into())));
    }

    #[test]
    fn openai_key_goes_only_to_openai_hosts() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |var: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == var)
                    .map(|(_, v)| v.to_string())
            }
        };
        let openai_only = env(&[("OPENAI_API_KEY", "sk-openai")]);
        assert_eq!(
            api_key_from_env("https://api.openai.com/v1", openai_only).as_deref(),
            Some("sk-openai")
        );
        assert_eq!(
            api_key_from_env("https://res.openai.azure.com", openai_only).as_deref(),
            Some("sk-openai")
        );
        assert_eq!(
            api_key_from_env("http://127.0.0.1:11434/v1", openai_only),
            None
        );
        assert_eq!(
            api_key_from_env("https://llm.example.com/v1", openai_only),
            None
        );
        let both = env(&[("OPENAI_API_KEY", "sk-openai"), ("KAV_LLM_API_KEY", "kav")]);
        assert_eq!(
            api_key_from_env("http://127.0.0.1:8000/v1", both).as_deref(),
            Some("kav")
        );
        assert_eq!(
            api_key_from_env("https://api.openai.com/v1", both).as_deref(),
            Some("kav")
        );
        assert_eq!(
            api_key_from_env("https://api.openai.com/v1", env(&[])),
            None
        );
    }

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
