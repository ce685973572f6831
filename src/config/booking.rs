//! `[booking]`: the booking agent and its outbox worker.

use serde::{Deserialize, Serialize};

/// The booking agent (`call.agent = "booking"` or `"offline"`) and its outbox worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BookingConfig {
    /// Business used when a conversation names none (no `business_id`, unknown `To` number).
    pub default_business: String,
    /// An LLM round that does not finish within this long falls back to the offline agent.
    pub llm_timeout_ms: u64,
    /// Most LLM rounds (completion + tool calls) per turn.
    pub max_tool_rounds: u32,
    /// Conversation state (offline dialog, LLM tool memory; in the database) older than this is
    /// not resumed: the conversation starts that state afresh. 0 = kept for ever.
    pub conversation_state_ttl_hours: u64,
    /// Outbox worker: how often it looks for due events.
    pub outbox_poll_ms: u64,
    /// Retry backoff: base * 2^attempt, capped; a retry-after from the provider wins if longer.
    pub outbox_backoff_base_ms: u64,
    pub outbox_backoff_max_ms: u64,
    /// Attempts before an event is given up (`dead`).
    pub outbox_max_attempts: u32,
    /// Also send the call summary to the customer on WhatsApp when a call ends.
    pub send_call_summary: bool,
    /// Conversation history kept for the agent (calls and WhatsApp): at most this many messages,
    /// newest first ...
    pub history_max_messages: u32,
    /// ... and at most this many characters of them. Bookings made earlier are kept apart, as
    /// conversation state.
    pub history_max_chars: u32,
}

impl Default for BookingConfig {
    fn default() -> Self {
        Self {
            default_business: "biz_escape_tlv".into(),
            llm_timeout_ms: 8_000,
            max_tool_rounds: 4,
            conversation_state_ttl_hours: 24,
            outbox_poll_ms: 1_000,
            outbox_backoff_base_ms: 2_000,
            outbox_backoff_max_ms: 300_000,
            outbox_max_attempts: 12,
            send_call_summary: false,
            history_max_messages: 24,
            history_max_chars: 6_000,
        }
    }
}
