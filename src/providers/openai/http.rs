//! The HTTP service under async-openai: every non-2xx response becomes an error with its
//! status, its best message and its Retry-After; and async-openai's errors as `ChatError`s.

use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::error::{ApiError, ApiErrorResponse, OpenAIError};
use async_openai::middleware::{HttpRequestFactory, ReqwestService};

use crate::providers::{BoxFuture, ChatError};

/// Retry-After hints travel from [`StatusMappingService`] to [`map_error`] in the error's `code`.
const RETRY_AFTER_CODE: &str = "kav_retry_after_s=";

pub(super) fn map_error(error: OpenAIError) -> ChatError {
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

/// Sends the request and turns every non-2xx response into `ApiError` with its status and the
/// best message we can find (OpenAI `{"error":{"message"}}`, llama.cpp/Ollama variants, or text).
#[derive(Clone)]
pub(super) struct StatusMappingService(pub(super) ReqwestService);

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
    use crate::providers::FailureKind;

    fn is_retryable(error: &ChatError) -> bool {
        // A timeout is not retried: the whole-answer deadline has passed.
        matches!(error.kind(), FailureKind::Retryable { .. })
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
}
