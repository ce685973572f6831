//! WhatsApp wire formats, sans-IO: the Meta Cloud API webhook (messages, statuses, BSUID users),
//! Twilio's WhatsApp form webhook, Graph API error bodies, and reply formatting/splitting.
//!
//! Parsing never requires `from`: since April 2026 a user with a username may arrive with only
//! `from_user_id` (a business-scoped user id, BSUID). Every inbound event has a stable dedup key
//! (the wamid for messages, wamid + status for statuses) because Meta retries for up to 7 days.

use serde::{Deserialize, Serialize};

mod format;
mod twilio;

pub use format::{markdown_to_whatsapp, split_message};
pub use twilio::{
    TwilioFormError, is_twilio_status_callback, parse_twilio_form, parse_twilio_status,
    strip_whatsapp_address,
};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook body is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("webhook object {0:?} is not whatsapp_business_account")]
    WrongObject(String),
}

// ------------------------------------------------------------------ Meta webhook (raw serde)

#[derive(Debug, Deserialize)]
struct Envelope {
    object: String,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
struct Change {
    #[serde(default)]
    field: String,
    value: ChangeValue,
}

#[derive(Debug, Deserialize)]
struct ChangeValue {
    metadata: Option<Metadata>,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<RawMessage>,
    #[serde(default)]
    statuses: Vec<RawStatus>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    display_phone_number: String,
    phone_number_id: String,
}

#[derive(Debug, Deserialize)]
struct Contact {
    #[serde(default)]
    profile: Option<Profile>,
    wa_id: Option<String>,
    user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Profile {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawMessage {
    from: Option<String>,
    from_user_id: Option<String>,
    id: String,
    #[serde(default)]
    timestamp: String,
    #[serde(rename = "type", default)]
    kind: String,
    text: Option<TextBody>,
    interactive: Option<Interactive>,
    audio: Option<Audio>,
    button: Option<QuickReplyButton>,
}

#[derive(Debug, Deserialize)]
struct TextBody {
    body: String,
}

#[derive(Debug, Deserialize)]
struct Interactive {
    #[serde(rename = "type")]
    kind: String,
    button_reply: Option<Reply>,
    list_reply: Option<Reply>,
}

#[derive(Debug, Deserialize)]
struct Reply {
    id: String,
    title: String,
}

#[derive(Debug, Deserialize)]
struct QuickReplyButton {
    #[serde(default)]
    payload: String,
    #[serde(default)]
    text: String,
}

#[derive(Debug, Deserialize)]
struct Audio {
    id: String,
    url: Option<String>,
    mime_type: Option<String>,
    sha256: Option<String>,
    voice: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct RawStatus {
    id: String,
    status: String,
    #[serde(default)]
    timestamp: String,
    recipient_id: Option<String>,
    recipient_user_id: Option<String>,
    #[serde(default)]
    errors: Vec<GraphErrorItem>,
}

#[derive(Debug, Deserialize)]
struct GraphErrorItem {
    code: i64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    message: String,
}

// ------------------------------------------------------------------ parsed events

/// Who wrote to us. At least one of `phone` / `user_id` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// E.164 digits without `+` (`wa_id` / `from`), absent for username-only users.
    pub phone: Option<String>,
    /// Business-scoped user id (`US.…`), present for users who adopted a username.
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
}

impl Sender {
    /// The key a conversation is stored under: the phone when known (so phone calls and
    /// WhatsApp meet on the same customer), else the BSUID.
    pub fn customer_key(&self) -> Option<&str> {
        self.phone.as_deref().or(self.user_id.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MessageContent {
    Text {
        body: String,
    },
    /// An interactive button or list reply (or a template quick-reply button).
    Choice {
        id: String,
        title: String,
    },
    /// A voice note or audio file. Meta: `media_id` + (since late 2025) `url`; Twilio: `url`.
    Audio {
        media_id: Option<String>,
        url: Option<String>,
        mime_type: Option<String>,
        sha256: Option<String>,
        voice: bool,
    },
    /// Anything we do not handle (image, sticker, location, …): answered with a polite note.
    Unsupported {
        message_type: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// Provider message id: the wamid, or Twilio's `MessageSid`.
    pub message_id: String,
    /// Meta `phone_number_id` of the business number (empty for Twilio).
    pub phone_number_id: String,
    /// Business number as displayed / Twilio `To` (digits, no `+`).
    pub business_number: String,
    pub sender: Sender,
    /// Unix seconds as sent by the provider (0 when absent or unparsable).
    pub timestamp_s: i64,
    pub content: MessageContent,
}

/// Delivery state of one of our outbound messages: owned by the store, which keeps it per message.
pub use crate::store::whatsapp::DeliveryStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// wamid of our outbound message.
    pub message_id: String,
    /// Raw status string (kept even when unknown, for the history).
    pub status: String,
    pub timestamp_s: i64,
    pub recipient_id: Option<String>,
    pub recipient_user_id: Option<String>,
    /// First error code on `failed`.
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
    pub phone_number_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum InboundEvent {
    Message(InboundMessage),
    Status(StatusUpdate),
}

impl InboundEvent {
    /// Unique per logical event: what the inbox deduplicates on.
    pub fn dedup_key(&self) -> String {
        match self {
            InboundEvent::Message(m) => format!("msg:{}", m.message_id),
            InboundEvent::Status(s) => format!("status:{}:{}", s.message_id, s.status),
        }
    }

    pub fn phone_number_id(&self) -> &str {
        match self {
            InboundEvent::Message(m) => &m.phone_number_id,
            InboundEvent::Status(s) => &s.phone_number_id,
        }
    }
}

/// Parses a Cloud API webhook body (already signature-checked) into events, in payload order.
/// Changes other than `messages` are skipped; a message without `from` and `from_user_id` is
/// skipped (nobody to answer).
pub fn parse_webhook(body: &[u8]) -> Result<Vec<InboundEvent>, WebhookError> {
    let env: Envelope = serde_json::from_slice(body)?;
    if env.object != "whatsapp_business_account" {
        return Err(WebhookError::WrongObject(env.object));
    }
    let mut events = Vec::new();
    for change in env.entry.into_iter().flat_map(|e| e.changes) {
        if change.field != "messages" {
            continue;
        }
        let value = change.value;
        let (phone_number_id, display) = match value.metadata {
            Some(m) => (m.phone_number_id, m.display_phone_number),
            None => continue,
        };
        for m in value.messages {
            let contact = value.contacts.iter().find(|c| {
                (m.from.is_some() && c.wa_id == m.from)
                    || (m.from_user_id.is_some() && c.user_id == m.from_user_id)
            });
            let sender = Sender {
                phone: m
                    .from
                    .clone()
                    .or_else(|| contact.and_then(|c| c.wa_id.clone()))
                    .filter(|p| is_phone_digits(p)),
                user_id: m
                    .from_user_id
                    .clone()
                    .or_else(|| contact.and_then(|c| c.user_id.clone())),
                profile_name: contact.and_then(|c| c.profile.as_ref()?.name.clone()),
            };
            if sender.customer_key().is_none() {
                continue;
            }
            let content = message_content(&m);
            events.push(InboundEvent::Message(InboundMessage {
                message_id: m.id,
                phone_number_id: phone_number_id.clone(),
                business_number: display.clone(),
                sender,
                timestamp_s: m.timestamp.parse().unwrap_or(0),
                content,
            }));
        }
        for s in value.statuses {
            let first_error = s.errors.first();
            events.push(InboundEvent::Status(StatusUpdate {
                message_id: s.id,
                status: s.status,
                timestamp_s: s.timestamp.parse().unwrap_or(0),
                recipient_id: s.recipient_id,
                recipient_user_id: s.recipient_user_id,
                error_code: first_error.map(|e| e.code),
                error_title: first_error.map(|e| {
                    if e.title.is_empty() {
                        e.message.clone()
                    } else {
                        e.title.clone()
                    }
                }),
                phone_number_id: phone_number_id.clone(),
            }));
        }
    }
    Ok(events)
}

fn message_content(m: &RawMessage) -> MessageContent {
    let unsupported = || MessageContent::Unsupported {
        message_type: m.kind.clone(),
    };
    match m.kind.as_str() {
        "text" => match &m.text {
            Some(t) => MessageContent::Text {
                body: t.body.clone(),
            },
            None => unsupported(),
        },
        "interactive" => {
            let reply = m.interactive.as_ref().and_then(|i| match i.kind.as_str() {
                "button_reply" => i.button_reply.as_ref(),
                "list_reply" => i.list_reply.as_ref(),
                _ => None,
            });
            match reply {
                Some(r) => MessageContent::Choice {
                    id: r.id.clone(),
                    title: r.title.clone(),
                },
                None => unsupported(),
            }
        }
        "button" => match &m.button {
            Some(b) => MessageContent::Choice {
                id: b.payload.clone(),
                title: b.text.clone(),
            },
            None => unsupported(),
        },
        "audio" => match &m.audio {
            Some(a) => MessageContent::Audio {
                media_id: Some(a.id.clone()),
                url: a.url.clone(),
                mime_type: a.mime_type.clone(),
                sha256: a.sha256.clone(),
                voice: a.voice.unwrap_or(false),
            },
            None => unsupported(),
        },
        _ => unsupported(),
    }
}

/// A phone as WhatsApp sends it: E.164 digits without `+`. Anything else is not used as a phone
/// (it would flow into agent parameters and lead lookups).
pub fn is_phone_digits(s: &str) -> bool {
    (6..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

// ------------------------------------------------------------------ Graph API errors

/// The `error` object of a Graph API error response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GraphError {
    pub code: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub error_data: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct GraphErrorBody {
    error: GraphError,
}

pub fn parse_graph_error(body: &[u8]) -> Option<GraphError> {
    serde_json::from_slice::<GraphErrorBody>(body)
        .ok()
        .map(|b| b.error)
}

/// How a Graph error code should be handled by a sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphErrorClass {
    Retryable,
    OutsideWindow,
    Permanent,
}

/// Meta error-codes page: throughput (130429), pair rate (131056), unknown (131000) and service
/// unavailable (131016) are worth retrying, as are the Graph API's own "temporary issue due to
/// downtime" codes 1 and 2; 131047 needs a template; the rest will not improve.
pub fn classify_graph_error(code: i64) -> GraphErrorClass {
    match code {
        130429 | 131056 | 131000 | 131016 | 80007 | 4 | 1 | 2 => GraphErrorClass::Retryable,
        131047 => GraphErrorClass::OutsideWindow,
        _ => GraphErrorClass::Permanent,
    }
}

/// Shortens an identifier for logs unless PII logging is on: first 12 hex chars of its SHA-256.
/// How a downloaded media file compares with the webhook's `sha256` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaDigest {
    Matches,
    Mismatch,
    /// The field is neither 64 hex digits nor 32 bytes of base64: nothing to check against.
    Unreadable,
}

/// Meta documents the field but not its encoding; payloads seen in the wild carry base64 and
/// older documentation shows hex, so both are accepted.
pub fn check_media_sha256(expected: &str, bytes: &[u8]) -> MediaDigest {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let expected = expected.trim();
    let wanted: Vec<u8> = if expected.len() == 64 && expected.bytes().all(|b| b.is_ascii_hexdigit())
    {
        (0..32)
            .map(|i| u8::from_str_radix(&expected[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect()
    } else {
        match base64::engine::general_purpose::STANDARD
            .decode(expected)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(expected))
        {
            Ok(raw) if raw.len() == 32 => raw,
            _ => return MediaDigest::Unreadable,
        }
    };
    if Sha256::digest(bytes).as_slice() == wanted.as_slice() {
        MediaDigest::Matches
    } else {
        MediaDigest::Mismatch
    }
}

pub use crate::booking::pii::log_id;

#[cfg(test)]
mod tests;
