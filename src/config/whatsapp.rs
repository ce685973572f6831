//! `[whatsapp]` and its `[[whatsapp.numbers]]`.

use serde::{Deserialize, Serialize};

/// WhatsApp channel (Meta Cloud API and Twilio). Secrets come from the environment only:
/// `WHATSAPP_APP_SECRET`, `WHATSAPP_VERIFY_TOKEN`, `WHATSAPP_ACCESS_TOKEN`, `TWILIO_ACCOUNT_SID`,
/// `TWILIO_AUTH_TOKEN`, `KAV_ADMIN_TOKEN`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// Messages of history (per customer and business) handed to the agent with each turn.
    pub history_messages: u32,
    /// Graph API base URL (tests point it at a fake server).
    pub graph_base_url: String,
    /// Graph API version path segment.
    pub api_version: String,
    /// Twilio REST base URL.
    pub twilio_base_url: String,
    /// Mock mode: log outbound messages instead of calling Meta / Twilio (signatures are still
    /// checked).
    pub mock_sends: bool,
    /// Twilio replies: `rest` (queued, sent through the REST API) or `twiml` (answered inline).
    pub twilio_reply: String,
    /// Where Twilio posts delivery reports for our messages (`StatusCallback`). Empty: the
    /// server's `public_url` + `/twilio/whatsapp/status` when a public URL is set, else none.
    pub twilio_status_callback_url: String,
    /// Template sent when free-form text is refused outside the 24-hour window (error 131047).
    pub confirmation_template: String,
    /// Language code of that template.
    pub template_language: String,
    /// Longest text part sent; longer replies are split (WhatsApp's limit is 4096).
    pub max_text_chars: usize,
    /// Send attempts per message for retryable errors (130429, 131056, 5xx), first try included.
    pub send_attempts: u32,
    /// First retry delay; doubles each attempt, capped at `retry_max_ms` (a server's
    /// `Retry-After` wins when larger).
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// HTTP timeout for Graph / Twilio requests and media downloads.
    pub http_timeout_ms: u64,
    /// Largest voice note downloaded (WhatsApp allows 16 MB audio).
    pub max_media_bytes: usize,
    /// Concurrent inbox workers (one conversation is never processed by two at once).
    pub workers: usize,
    /// A claimed inbox row not finished within this long is claimed again (its worker died).
    pub lease_ms: u64,
    /// Processing attempts per inbox row before it is marked failed.
    pub max_attempts: u32,
    /// Inbox poll period when idle (new webhooks also wake the workers at once).
    pub poll_ms: u64,
    /// The agent must finish its reply within this long.
    pub agent_timeout_ms: u64,
    /// Sent for message types we cannot handle (images, stickers, locations, …).
    pub unsupported_reply: String,
    /// Sent when the agent fails, so the customer is not left without an answer.
    pub fallback_reply: String,
    /// Log phone numbers and BSUIDs in clear; otherwise they are logged as short hashes.
    pub trace_log_pii: bool,
    /// DEVELOPMENT ONLY: accept unsigned webhooks. Refused at start-up in release builds.
    pub insecure_skip_signature: bool,
    /// Business numbers this instance answers (until the booking tables take over).
    pub numbers: Vec<WhatsAppNumber>,
}

/// One business number: `[[whatsapp.numbers]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct WhatsAppNumber {
    pub business_id: String,
    pub business_name: String,
    /// BCP-47 language of the business (replies, STT).
    pub language: String,
    /// Meta Cloud API phone number id.
    pub phone_number_id: String,
    /// Number in E.164 digits (no `+`): Meta display number / Twilio `To`.
    pub display_number: String,
}

impl Default for WhatsAppConfig {
    fn default() -> Self {
        Self {
            history_messages: 10,
            graph_base_url: "https://graph.facebook.com".into(),
            api_version: "v24.0".into(),
            twilio_base_url: "https://api.twilio.com".into(),
            mock_sends: false,
            twilio_reply: "rest".into(),
            twilio_status_callback_url: String::new(),
            confirmation_template: "booking_confirmation".into(),
            template_language: "en_US".into(),
            max_text_chars: 4_000,
            send_attempts: 5,
            retry_base_ms: 500,
            retry_max_ms: 30_000,
            http_timeout_ms: 15_000,
            max_media_bytes: 16 * 1024 * 1024,
            workers: 4,
            lease_ms: 120_000,
            max_attempts: 5,
            poll_ms: 1_000,
            agent_timeout_ms: 60_000,
            unsupported_reply:
                "Sorry, I can only read text and voice messages. Could you write or say it instead?"
                    .into(),
            fallback_reply:
                "Sorry, something went wrong on our side. Please try again in a moment.".into(),
            trace_log_pii: false,
            insecure_skip_signature: false,
            numbers: Vec::new(),
        }
    }
}
