//! WhatsApp senders and media downloads: the Meta Graph API client, the Twilio REST client, a
//! mock that only logs, and [`RetryingSender`], the one place where retryable errors (130429,
//! 131056, 5xx, timeouts) are retried with bounded exponential backoff. Wrap any sender in it;
//! callers (the channel's worker, the booking outbox) then only see final results.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use crate::channels::whatsapp::model::{
    GraphErrorClass, classify_graph_error, log_id, parse_graph_error,
};
use crate::providers::{
    BoxFuture, OutboundBody, OutboundMessage, SendError, SendReceipt, WhatsAppSender,
};

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media request failed: {0}")]
    Http(String),
    #[error("media server answered {status}")]
    Status { status: u16 },
    #[error("media is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("media metadata unusable: {0}")]
    BadMetadata(String),
}

fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn transport_error(e: reqwest::Error) -> SendError {
    SendError::Retryable {
        code: 0,
        message: format!("transport: {e}"),
        retry_after_ms: None,
    }
}

fn retry_after_ms(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| s * 1000)
}

// ------------------------------------------------------------------ Meta Graph API

/// Meta WhatsApp Cloud API client: `POST {base}/{version}/{phone_number_id}/messages`.
#[derive(Clone)]
pub struct GraphSender {
    http: reqwest::Client,
    base_url: String,
    api_version: String,
    access_token: String,
    log_pii: bool,
}

impl GraphSender {
    pub fn new(
        base_url: &str,
        api_version: &str,
        access_token: &str,
        timeout: Duration,
        log_pii: bool,
    ) -> Self {
        Self {
            http: http_client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_version: api_version.trim_matches('/').to_string(),
            access_token: access_token.to_string(),
            log_pii,
        }
    }

    fn url(&self, path: &str) -> String {
        if self.api_version.is_empty() {
            format!("{}/{path}", self.base_url)
        } else {
            format!("{}/{}/{path}", self.base_url, self.api_version)
        }
    }

    /// The JSON body Meta expects for `message`.
    pub fn request_body(message: &OutboundMessage) -> serde_json::Value {
        // A BSUID (`US.…`) goes in `recipient`; a phone number in `to`.
        let mut body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
        });
        if message.to.starts_with("US.") {
            body["recipient"] = json!(message.to);
        } else {
            body["to"] = json!(format!("+{}", message.to.trim_start_matches('+')));
        }
        match &message.body {
            OutboundBody::Text { text } => {
                body["type"] = json!("text");
                body["text"] = json!({ "preview_url": false, "body": text });
            }
            OutboundBody::Template {
                name,
                language,
                params,
            } => {
                body["type"] = json!("template");
                let mut template = json!({ "name": name, "language": { "code": language } });
                if !params.is_empty() {
                    let parameters: Vec<_> = params
                        .iter()
                        .map(|p| json!({ "type": "text", "text": p }))
                        .collect();
                    template["components"] = json!([{ "type": "body", "parameters": parameters }]);
                }
                body["template"] = template;
            }
        }
        body
    }

    /// Marks an inbound message read and shows the typing indicator while the agent works
    /// (Meta sample: `status: read` + `typing_indicator`). Best effort: failures are logged only.
    pub async fn mark_read_typing(&self, phone_number_id: &str, message_id: &str) {
        let url = self.url(&format!("{phone_number_id}/messages"));
        let body = json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
            "typing_indicator": { "type": "text" },
        });
        match self
            .http
            .post(&url)
            .bearer_auth(&self.access_token)
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::debug!(status = %r.status(), "mark-read refused"),
            Err(e) => tracing::debug!(error = %e, "mark-read failed"),
        }
    }

    async fn send_once(&self, message: OutboundMessage) -> Result<SendReceipt, SendError> {
        let url = self.url(&format!("{}/messages", message.phone_number_id));
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.access_token)
            .json(&Self::request_body(&message))
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let retry_after = retry_after_ms(response.headers());
        let bytes = response.bytes().await.map_err(transport_error)?;
        if status.is_success() {
            let parsed: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| SendError::Permanent {
                    code: 0,
                    message: format!("unparsable Graph response: {e}"),
                })?;
            let id = parsed["messages"][0]["id"].as_str().unwrap_or_default();
            if id.is_empty() {
                return Err(SendError::Permanent {
                    code: 0,
                    message: "Graph response has no messages[0].id".into(),
                });
            }
            tracing::debug!(to = %log_id(&message.to, self.log_pii), wamid = id, "graph send accepted");
            return Ok(SendReceipt {
                message_id: id.to_string(),
            });
        }
        let error = parse_graph_error(&bytes);
        let (code, text) = match &error {
            Some(e) => (e.code, e.message.clone()),
            None => (
                0,
                format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            ),
        };
        let class = match (&error, status.is_server_error() || status.as_u16() == 429) {
            // A 5xx/429 is transient whatever code comes with it (a hung API's gateway answers
            // 503 with code 2); nothing was sent, so a retry cannot double it.
            (Some(e), transient) => match classify_graph_error(e.code) {
                GraphErrorClass::Permanent if transient => GraphErrorClass::Retryable,
                class => class,
            },
            (None, true) => GraphErrorClass::Retryable,
            (None, false) => GraphErrorClass::Permanent,
        };
        Err(match class {
            GraphErrorClass::Retryable => SendError::Retryable {
                code,
                message: text,
                retry_after_ms: retry_after,
            },
            GraphErrorClass::OutsideWindow => SendError::OutsideWindow { message: text },
            GraphErrorClass::Permanent => SendError::Permanent {
                code,
                message: text,
            },
        })
    }

    /// Downloads inbound media: resolve `media_id` to a short-lived URL (5 minutes), then fetch it
    /// with the same bearer token. A `direct_url` from the webhook is tried first.
    pub async fn download_media(
        &self,
        media_id: Option<&str>,
        direct_url: Option<&str>,
        max_bytes: usize,
    ) -> Result<Vec<u8>, MediaError> {
        if let Some(url) = direct_url {
            match self.fetch_bearer(url, max_bytes).await {
                Ok(bytes) => return Ok(bytes),
                // An expired or revoked URL: resolve the id again below.
                Err(e) if media_id.is_some() => {
                    tracing::debug!(error = %e, "direct media URL failed; resolving the media id")
                }
                Err(e) => return Err(e),
            }
        }
        let media_id =
            media_id.ok_or_else(|| MediaError::BadMetadata("no media id or url".into()))?;
        let meta_url = self.url(media_id);
        let response = self
            .http
            .get(&meta_url)
            .bearer_auth(&self.access_token)
            .send()
            .await
            .map_err(|e| MediaError::Http(e.to_string()))?;
        if !response.status().is_success() {
            return Err(MediaError::Status {
                status: response.status().as_u16(),
            });
        }
        let meta: serde_json::Value = response
            .json()
            .await
            .map_err(|e| MediaError::BadMetadata(e.to_string()))?;
        let url = meta["url"]
            .as_str()
            .ok_or_else(|| MediaError::BadMetadata("no url".into()))?;
        self.fetch_bearer(url, max_bytes).await
    }

    async fn fetch_bearer(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, MediaError> {
        let request = self.http.get(url).bearer_auth(&self.access_token);
        fetch_limited(request, max_bytes).await
    }
}

async fn fetch_limited(
    request: reqwest::RequestBuilder,
    max_bytes: usize,
) -> Result<Vec<u8>, MediaError> {
    let mut response = request
        .send()
        .await
        .map_err(|e| MediaError::Http(e.to_string()))?;
    if !response.status().is_success() {
        return Err(MediaError::Status {
            status: response.status().as_u16(),
        });
    }
    if let Some(len) = response.content_length()
        && len as usize > max_bytes
    {
        return Err(MediaError::TooLarge {
            size: len as usize,
            max: max_bytes,
        });
    }
    let mut out = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| MediaError::Http(e.to_string()))?
    {
        if out.len() + chunk.len() > max_bytes {
            return Err(MediaError::TooLarge {
                size: out.len() + chunk.len(),
                max: max_bytes,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

impl WhatsAppSender for GraphSender {
    fn name(&self) -> &'static str {
        "graph"
    }

    fn send(&self, message: OutboundMessage) -> BoxFuture<'static, Result<SendReceipt, SendError>> {
        let this = self.clone();
        Box::pin(async move { this.send_once(message).await })
    }
}

// ------------------------------------------------------------------ Twilio REST

/// Twilio Programmable Messaging: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`.
/// Templates go out as Content API messages (`ContentSid` = the template name configured as a
/// Twilio content SID, `ContentVariables` = `{"1": p1, …}`).
#[derive(Clone)]
pub struct TwilioSender {
    http: reqwest::Client,
    base_url: String,
    account_sid: String,
    auth_token: String,
    status_callback: Option<String>,
}

impl TwilioSender {
    pub fn new(base_url: &str, account_sid: &str, auth_token: &str, timeout: Duration) -> Self {
        Self {
            http: http_client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            account_sid: account_sid.to_string(),
            auth_token: auth_token.to_string(),
            status_callback: None,
        }
    }

    /// Asks Twilio to post delivery reports for every message sent to `url` (empty: none).
    pub fn with_status_callback(mut self, url: &str) -> Self {
        self.status_callback = Some(url.to_string()).filter(|u| !u.is_empty());
        self
    }

    /// `message.phone_number_id` carries the business's Twilio number (E.164 digits).
    async fn send_once(&self, message: OutboundMessage) -> Result<SendReceipt, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base_url, self.account_sid
        );
        let from = format!(
            "whatsapp:+{}",
            message.phone_number_id.trim_start_matches('+')
        );
        let to = format!("whatsapp:+{}", message.to.trim_start_matches('+'));
        let mut form: Vec<(String, String)> = vec![("From".into(), from), ("To".into(), to)];
        if let Some(url) = &self.status_callback {
            form.push(("StatusCallback".into(), url.clone()));
        }
        match &message.body {
            OutboundBody::Text { text } => form.push(("Body".into(), text.clone())),
            OutboundBody::Template { name, params, .. } => {
                form.push(("ContentSid".into(), name.clone()));
                let vars: serde_json::Map<String, serde_json::Value> = params
                    .iter()
                    .enumerate()
                    .map(|(i, p)| ((i + 1).to_string(), json!(p)))
                    .collect();
                form.push((
                    "ContentVariables".into(),
                    serde_json::Value::Object(vars).to_string(),
                ));
            }
        }
        let response = self
            .http
            .post(&url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let retry_after = retry_after_ms(response.headers());
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            let sid = body["sid"].as_str().unwrap_or_default();
            if sid.is_empty() {
                return Err(SendError::Permanent {
                    code: 0,
                    message: "Twilio response has no sid".into(),
                });
            }
            return Ok(SendReceipt {
                message_id: sid.to_string(),
            });
        }
        let code = body["code"].as_i64().unwrap_or(0);
        let text = body["message"].as_str().unwrap_or("").to_string();
        // 63016: free-form message outside the 24-hour window (Twilio's 131047).
        Err(if code == 63016 {
            SendError::OutsideWindow { message: text }
        } else if status.as_u16() == 429 || status.is_server_error() || code == 20429 {
            SendError::Retryable {
                code,
                message: text,
                retry_after_ms: retry_after,
            }
        } else {
            SendError::Permanent {
                code,
                message: text,
            }
        })
    }

    /// Twilio media URLs require HTTP basic auth (account SID + auth token).
    pub async fn download_media(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, MediaError> {
        let request = self
            .http
            .get(url)
            .basic_auth(&self.account_sid, Some(&self.auth_token));
        fetch_limited(request, max_bytes).await
    }
}

impl WhatsAppSender for TwilioSender {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn send(&self, message: OutboundMessage) -> BoxFuture<'static, Result<SendReceipt, SendError>> {
        let this = self.clone();
        Box::pin(async move { this.send_once(message).await })
    }
}

// ------------------------------------------------------------------ mock

/// The one log-only sender: used when no WhatsApp client is configured (booking confirmations)
/// and in `mock_sends` mode (replies). Logs what would be sent (the phone hashed unless
/// `log_pii`), keeps it for inspection, answers like a provider that de-duplicates by idempotency
/// key (same receipt for the same key), never touches the network, and says it does not deliver,
/// so the agent never tells a customer a message was sent.
#[derive(Default)]
pub struct LogSender {
    sent: Mutex<Vec<(OutboundMessage, String)>>,
    log_pii: bool,
}

impl LogSender {
    pub fn new(log_pii: bool) -> Self {
        Self {
            log_pii,
            ..Default::default()
        }
    }

    pub fn sent(&self) -> Vec<OutboundMessage> {
        self.sent
            .lock()
            .map(|s| s.iter().map(|(m, _)| m.clone()).collect())
            .unwrap_or_default()
    }
}

impl WhatsAppSender for LogSender {
    fn name(&self) -> &'static str {
        "log-sender"
    }

    fn delivers(&self) -> bool {
        false
    }

    fn send(&self, message: OutboundMessage) -> BoxFuture<'static, Result<SendReceipt, SendError>> {
        let receipt = match self.sent.lock() {
            Ok(mut sent) => match sent
                .iter()
                .find(|(m, _)| m.idempotency_key == message.idempotency_key)
            {
                Some((_, id)) => id.clone(),
                None => {
                    let id = format!("log-{}", sent.len() + 1);
                    let body = match &message.body {
                        OutboundBody::Text { text } => text.clone(),
                        OutboundBody::Template { name, params, .. } => {
                            format!("template {name} {params:?}")
                        }
                    };
                    tracing::info!(
                        to = %log_id(&message.to, self.log_pii),
                        phone_number_id = %message.phone_number_id,
                        key = %message.idempotency_key,
                        %body,
                        "WhatsApp message (log sender, not sent)"
                    );
                    sent.push((message, id.clone()));
                    id
                }
            },
            Err(_) => "log-poisoned".to_string(),
        };
        Box::pin(async move {
            Ok(SendReceipt {
                message_id: receipt,
            })
        })
    }
}

// ------------------------------------------------------------------ retries

/// Retries [`SendError::Retryable`] with the one backoff policy ([`crate::retry::Backoff`]:
/// `base` doubling, capped at `max`, jittered, or the server's `Retry-After` when larger), through
/// backon, at most `attempts` tries in all. Other errors and the last retryable one are returned as
/// they are.
pub struct RetryingSender {
    inner: Arc<dyn WhatsAppSender>,
    attempts: u32,
    policy: crate::retry::Backoff,
}

impl RetryingSender {
    pub fn new(
        inner: Arc<dyn WhatsAppSender>,
        attempts: u32,
        base: Duration,
        max: Duration,
    ) -> Self {
        Self {
            inner,
            attempts: attempts.max(1),
            policy: crate::retry::Backoff::new(base, max),
        }
    }
}

impl WhatsAppSender for RetryingSender {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn send(&self, message: OutboundMessage) -> BoxFuture<'static, Result<SendReceipt, SendError>> {
        use backon::Retryable as _;
        let inner = self.inner.clone();
        let policy = self.policy;
        let retries = self.attempts - 1;
        Box::pin(async move {
            let send = || inner.send(message.clone());
            send.retry(policy.retries(retries))
                .sleep(tokio::time::sleep)
                .when(|e| matches!(e, SendError::Retryable { .. }))
                .adjust(move |e, wait| match e {
                    SendError::Retryable {
                        retry_after_ms: Some(hint),
                        ..
                    } => wait.map(|w| w.max(Duration::from_millis(*hint).min(policy.max))),
                    _ => wait,
                })
                .notify(|e, wait| {
                    tracing::warn!(
                        error = %e,
                        wait_ms = wait.as_millis() as u64,
                        "WhatsApp send throttled; retrying"
                    )
                })
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_template_bodies_match_the_cloud_api() {
        let text = OutboundMessage {
            phone_number_id: "106540352242922".into(),
            to: "16505551234".into(),
            body: OutboundBody::Text { text: "hi".into() },
            idempotency_key: "k".into(),
        };
        let body = GraphSender::request_body(&text);
        assert_eq!(body["to"], "+16505551234");
        assert_eq!(body["type"], "text");
        assert_eq!(body["text"]["body"], "hi");
        assert_eq!(body["messaging_product"], "whatsapp");
        let template = OutboundMessage {
            body: OutboundBody::Template {
                name: "booking_confirmation".into(),
                language: "en_US".into(),
                params: vec!["Friday 21:00".into()],
            },
            to: "US.13491208655302741918".into(),
            ..text
        };
        let body = GraphSender::request_body(&template);
        assert_eq!(body["recipient"], "US.13491208655302741918");
        assert!(body.get("to").is_none());
        assert_eq!(body["template"]["language"]["code"], "en_US");
        assert_eq!(
            body["template"]["components"][0]["parameters"][0]["text"],
            "Friday 21:00"
        );
    }

    /// Fails with a retryable error `fail` times (with a Retry-After hint), then succeeds.
    struct Flaky {
        fail: u32,
        calls: std::sync::Mutex<u32>,
    }

    impl WhatsAppSender for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn send(&self, _: OutboundMessage) -> BoxFuture<'static, Result<SendReceipt, SendError>> {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            let result = if *calls <= self.fail {
                Err(SendError::Retryable {
                    code: 130429,
                    message: "rate".into(),
                    retry_after_ms: Some(700),
                })
            } else {
                Ok(SendReceipt {
                    message_id: "wamid.1".into(),
                })
            };
            Box::pin(async move { result })
        }
    }

    fn message() -> OutboundMessage {
        OutboundMessage {
            phone_number_id: "1".into(),
            to: "2".into(),
            body: OutboundBody::Text { text: "hi".into() },
            idempotency_key: "k".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_sends_back_off_honour_the_hint_and_run_out() {
        let flaky = Arc::new(Flaky {
            fail: 2,
            calls: Default::default(),
        });
        let s = RetryingSender::new(
            flaky.clone(),
            3,
            Duration::from_millis(100),
            Duration::from_millis(1000),
        );
        let started = tokio::time::Instant::now();
        assert!(s.send(message()).await.is_ok());
        assert_eq!(*flaky.calls.lock().unwrap(), 3);
        // Two waits of at least the 700 ms hint each (the policy alone would give ≤ 300 ms).
        let waited = started.elapsed();
        assert!(
            (Duration::from_millis(1400)..Duration::from_millis(1500)).contains(&waited),
            "{waited:?}"
        );
        let always = Arc::new(Flaky {
            fail: 10,
            calls: Default::default(),
        });
        let s = RetryingSender::new(
            always.clone(),
            3,
            Duration::from_millis(100),
            Duration::from_millis(1000),
        );
        assert!(matches!(
            s.send(message()).await,
            Err(SendError::Retryable { .. })
        ));
        assert_eq!(*always.calls.lock().unwrap(), 3, "at most `attempts` tries");
    }
}
