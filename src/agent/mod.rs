//! The booking agent: tools over the store (with traces), the durable outbox and its worker,
//! the deterministic offline dialog, and the LLM tool loop.
//!
//! [`BookingRuntime`] is what both agents share: the store, the WhatsApp sender, the clock, the
//! business resolution and the per-(business, channel) settings cache.

mod history;
pub mod llm;
pub mod offline;
pub mod schema;
pub mod tools;
pub mod usecases;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::booking::parse::normalize_phone;
use crate::booking::policy::{Policy, PolicyError};
use crate::config::BookingConfig;
use crate::providers::{AgentRequest, Channel, WhatsAppSender};
use crate::store::booking::{Business, Resource};
use crate::store::{Store, StoreError};

/// Unix milliseconds "now", injected so tests and the outbox worker run on a controlled clock.
pub use crate::clock::{Clock, system_clock};

#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("business {0:?} not found")]
    UnknownBusiness(String),
    #[error("business policy is invalid: {0}")]
    Policy(#[from] PolicyError),
}

/// The outbox delivers through the runtime's store, sender and clock.
impl crate::booking::outbox::OutboxPorts for BookingRuntime {
    fn store(&self) -> &Store {
        &self.store
    }
    fn sender(&self) -> &dyn WhatsAppSender {
        self.sender.as_ref()
    }
    fn now_ms(&self) -> i64 {
        (self.clock)()
    }
    fn config(&self) -> &BookingConfig {
        &self.config
    }
}

/// A database error is worth retrying (busy, connection lost); anything else will fail again.
impl From<StoreError> for crate::providers::ProviderError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(_) => Self::retryable(e.to_string()),
            StoreError::Migrate(_) | StoreError::BadValue { .. } => Self::fatal(e.to_string()),
        }
    }
}

impl From<BookingError> for crate::providers::ProviderError {
    fn from(e: BookingError) -> Self {
        match e {
            BookingError::Store(e) => e.into(),
            BookingError::UnknownBusiness(_) | BookingError::Policy(_) => {
                Self::fatal(e.to_string())
            }
        }
    }
}

/// A kind of per-conversation state kept in the database (`conversation_state`, migration 0006),
/// so any instance can take any message of any conversation, and a restart loses nothing.
/// `version` is the format of the JSON blob: a row of another version is ignored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StateKind {
    pub name: &'static str,
    pub version: i64,
}

/// The offline dialog's state (what it knows and what it waits for).
pub(crate) const OFFLINE_DIALOG: StateKind = StateKind {
    name: "offline_dialog",
    version: 1,
};
/// The LLM agent's recent tool calls with their results, and the appointments the conversation
/// touched (version 2; version 1 held the tool lines only).
pub(crate) const TOOL_MEMORY: StateKind = StateKind {
    name: "tool_memory",
    version: 2,
};

/// The fixed rules every business prompt is appended to. Business text can add tone and facts,
/// never override these.
pub const SYSTEM_RULES: &str = "You are a booking assistant on a live channel.\n\
Rules you must always follow:\n\
1. Never claim an action (booked, cancelled, a time is free or busy, a message was sent) unless \
you called the matching tool in this turn and it returned ok:true.\n\
2. Tool order for a booking: know the date and time -> calendar_find_slots -> customer name and \
phone -> read the details back and get a yes -> calendar_create_appointment.\n\
3. If calendar_create_appointment refuses a time (closed_day, outside_hours, off_grid, too_soon, \
outside_window, full, past_time), tell the customer that reason and offer its suggestions; on \
ambiguous_time ask morning or evening. If it returns need_phone, ask for the phone number (on the \
phone: type it on the keypad and press #).\n\
4. After booking, say it by whatsapp_status: sent -> booked and a WhatsApp confirmation was sent; \
failed -> booked, the details will reach them on WhatsApp shortly; pending -> booked, the details \
will follow.\n\
5. Answer questions about hours, prices, rooms and policies only from business_info.\n\
6. Reply in the customer's language; the business language first.";

/// Settings of one (business, channel), built once and cached until the business changes.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub business: Business,
    pub policy: Policy,
    pub resources: Vec<Resource>,
    /// System rules + the business prompt for this channel.
    pub instructions: String,
    pub max_tokens: u32,
    pub temperature: f32,
    /// First reply at most this many words (phone), 0 = no limit.
    pub first_reply_max_words: usize,
    /// `businesses.updated_at_ms` the settings were built from.
    pub version: i64,
}

pub struct BookingRuntime {
    pub store: Store,
    pub sender: Arc<dyn WhatsAppSender>,
    pub clock: Clock,
    pub config: BookingConfig,
    settings: Mutex<HashMap<(String, Channel), Arc<AgentSettings>>>,
    /// How many times settings were (re)built; observable so tests can prove caching.
    builds: std::sync::atomic::AtomicU64,
}

impl BookingRuntime {
    pub fn new(
        store: Store,
        sender: Arc<dyn WhatsAppSender>,
        clock: Clock,
        config: BookingConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            sender,
            clock,
            config,
            settings: Mutex::new(HashMap::new()),
            builds: Default::default(),
        })
    }

    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    pub fn settings_builds(&self) -> u64 {
        self.builds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `business_id` parameter, else the number that was reached (`To` on the phone,
    /// `phone_number_id` on WhatsApp), else the configured default business.
    pub async fn resolve_business(&self, request: &AgentRequest) -> Result<String, BookingError> {
        let p = &request.call.parameters;
        if let Some(id) = p.get("business_id").filter(|v| !v.is_empty()) {
            return Ok(id.clone());
        }
        let address = match request.channel {
            Channel::Phone => p.get("To"),
            Channel::Whatsapp => p.get("phone_number_id"),
        };
        if let Some(address) = address.filter(|v| !v.is_empty())
            && let Some(id) = self
                .store
                .business_id_by_number(request.channel.as_str(), address)
                .await?
        {
            return Ok(id);
        }
        Ok(self.config.default_business.clone())
    }

    /// Cached settings; one cheap version query per turn decides whether to rebuild.
    pub async fn settings(
        &self,
        business_id: &str,
        channel: Channel,
    ) -> Result<Arc<AgentSettings>, BookingError> {
        let version = self
            .store
            .business_version(business_id)
            .await?
            .ok_or_else(|| BookingError::UnknownBusiness(business_id.into()))?;
        let key = (business_id.to_string(), channel);
        if let Some(s) = self.settings.lock().expect("settings lock").get(&key)
            && s.version == version
        {
            return Ok(s.clone());
        }
        let business = self
            .store
            .business(business_id)
            .await?
            .ok_or_else(|| BookingError::UnknownBusiness(business_id.into()))?;
        let policy = business.policy()?;
        let resources = self.store.resources(business_id).await?;
        let (max_tokens, first_reply_max_words) = match channel {
            Channel::Phone => (60, 24),
            Channel::Whatsapp => (120, 0),
        };
        let language = if business.hebrew() {
            "Hebrew"
        } else {
            "the business's language"
        };
        let instructions = format!(
            "{SYSTEM_RULES}\nChannel: {}. {}\nDefault language: {language}. Timezone: {}.\n\n\
             Business ({}):\n{}",
            channel.as_str(),
            match channel {
                Channel::Phone =>
                    "Spoken replies: one or two short sentences; the first reply at most 24 words.",
                Channel::Whatsapp => "Chat replies: short and friendly.",
            },
            business.timezone,
            business.name,
            business.prompt_for(channel.as_str()),
        );
        let settings = Arc::new(AgentSettings {
            version: business.updated_at_ms,
            policy,
            resources,
            instructions,
            max_tokens,
            temperature: 0.2,
            first_reply_max_words,
            business,
        });
        self.builds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.settings
            .lock()
            .expect("settings lock")
            .insert(key, settings.clone());
        Ok(settings)
    }
}

/// What the customer said this turn: the last message, if it is theirs.
pub fn user_text(request: &AgentRequest) -> String {
    request
        .history
        .last()
        .filter(|m| m.role == crate::providers::Role::User)
        .map(|m| m.text.clone())
        .unwrap_or_default()
}

/// The customer's phone from the channel (`From`, E.164), if known.
pub fn caller_phone(request: &AgentRequest) -> Option<String> {
    request
        .call
        .parameters
        .get("From")
        .map(|v| v.trim().trim_start_matches("whatsapp:").to_string())
        .filter(|v| v.chars().filter(char::is_ascii_digit).count() >= 7)
        .map(|v| normalize_phone(&v))
}

impl BookingRuntime {
    /// Everything one turn's tools need.
    pub async fn turn_context(
        self: &Arc<Self>,
        request: &AgentRequest,
    ) -> Result<tools::ToolContext, BookingError> {
        let business_id = self.resolve_business(request).await?;
        let settings = self.settings(&business_id, request.channel).await?;
        Ok(tools::ToolContext {
            rt: self.clone(),
            settings,
            channel: request.channel,
            conversation_id: request.call.call_sid.clone(),
            turn: request.turn,
            caller_phone: caller_phone(request),
            this_turn: Default::default(),
        })
    }

    /// Stores this turn's user message and final reply (summaries are built from them).
    pub async fn record_turn(&self, ctx: &tools::ToolContext, user: &str, reply: &str) {
        let now = self.now_ms();
        for (role, text) in [("user", user), ("assistant", reply)] {
            if text.is_empty() {
                continue;
            }
            let m = crate::store::booking::ConversationMessage {
                business_id: ctx.settings.business.id.clone(),
                customer_id: None,
                customer_phone: ctx.caller_phone.clone(),
                channel: ctx.channel.as_str().into(),
                conversation_id: ctx.conversation_id.clone(),
                role: role.into(),
                text: text.into(),
                at_ms: now,
            };
            if let Err(e) = self.store.insert_message(&m).await {
                tracing::warn!(error = %e, "conversation message not stored");
            }
        }
    }

    /// Runs the truthfulness guard on a whole reply; a false claim is replaced and traced.
    pub async fn guard_reply(
        &self,
        ctx: &tools::ToolContext,
        reply: &str,
        evidence: crate::booking::guard::Evidence,
    ) -> String {
        use crate::booking::guard::{GuardVerdict, check};
        match check(reply, evidence) {
            GuardVerdict::Pass => reply.to_string(),
            GuardVerdict::Replace {
                replacement,
                false_claims,
            } => {
                let claims: Vec<&str> = false_claims.iter().map(|c| c.as_str()).collect();
                ctx.trace(
                    GUARD_TRACE,
                    &serde_json::json!({"false_claims": claims, "text": reply}),
                    false,
                    Some("false_claim"),
                    Some(&format!(
                        "reply claimed {} without a successful tool call",
                        claims.join(", ")
                    )),
                    0,
                    self.now_ms(),
                )
                .await;
                tracing::warn!(conversation = %ctx.conversation_id, claims = ?claims, "reply with a false claim replaced");
                replacement
            }
        }
    }

    /// Enqueues the `call.ended` flow (summary) for a conversation and forgets its state.
    pub async fn conversation_ended(
        self: &Arc<Self>,
        request: &AgentRequest,
    ) -> Result<(), BookingError> {
        self.forget_state(&request.call.call_sid, None).await;
        let business_id = self.resolve_business(request).await?;
        let payload = crate::booking::outbox::CallEndedPayload {
            conversation_id: request.call.call_sid.clone(),
            channel: request.channel.as_str().into(),
            business_id: business_id.clone(),
            customer_phone: caller_phone(request),
            phone_number_id: self.store.whatsapp_number_for(&business_id).await?,
        };
        let now = self.now_ms();
        self.store
            .enqueue(
                &crate::store::booking::NewOutboxEvent {
                    business_id,
                    kind: crate::booking::outbox::KIND_CALL_ENDED.into(),
                    payload_json: serde_json::to_string(&payload).unwrap_or_default(),
                    idempotency_key: format!("call-ended:{}", request.call.call_sid),
                    not_before_ms: now,
                },
                now,
            )
            .await?;
        Ok(())
    }
}

impl BookingRuntime {
    /// A conversation's state of `kind`, as saved at the end of its last turn. `None` when there
    /// is none, it is of another format version, it is older than
    /// `booking.conversation_state_ttl_hours`, or it does not parse (logged): the conversation then
    /// starts that state afresh. A database error is an error (the turn fails and is retried or
    /// answered with the fallback), never a silent restart of the dialog.
    pub(crate) async fn load_state<T: serde::de::DeserializeOwned>(
        &self,
        conversation_id: &str,
        kind: StateKind,
    ) -> Result<Option<T>, StoreError> {
        let Some((version, json, updated_at_ms)) = self
            .store
            .conversation_state(conversation_id, kind.name)
            .await?
        else {
            return Ok(None);
        };
        let ttl_ms = self.config.conversation_state_ttl_hours as i64 * 3_600_000;
        if version != kind.version || (ttl_ms > 0 && self.now_ms() - updated_at_ms > ttl_ms) {
            return Ok(None);
        }
        match serde_json::from_str(&json) {
            Ok(state) => Ok(Some(state)),
            Err(e) => {
                tracing::warn!(conversation = %conversation_id, kind = kind.name, error = %e, "saved conversation state does not parse; starting afresh");
                Ok(None)
            }
        }
    }

    /// Saves a conversation's state of `kind` at the end of a turn. A failure is logged: the
    /// reply is already recorded and spoken, the next turn starts from the state saved before.
    pub(crate) async fn save_state<T: serde::Serialize>(
        &self,
        conversation_id: &str,
        kind: StateKind,
        state: &T,
    ) {
        let json = match serde_json::to_string(state) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(kind = kind.name, error = %e, "conversation state not serialisable");
                return;
            }
        };
        if let Err(e) = self
            .store
            .put_conversation_state(
                conversation_id,
                kind.name,
                kind.version,
                &json,
                self.now_ms(),
            )
            .await
        {
            tracing::warn!(conversation = %conversation_id, kind = kind.name, error = %e, "conversation state not saved");
        }
    }

    /// Forgets a conversation's state (`None`: every kind), e.g. when a call ends.
    pub(crate) async fn forget_state(&self, conversation_id: &str, kind: Option<StateKind>) {
        if let Err(e) = self
            .store
            .delete_conversation_state(conversation_id, kind.map(|k| k.name))
            .await
        {
            tracing::warn!(conversation = %conversation_id, error = %e, "conversation state not removed");
        }
    }
}

/// Tool name under which guard replacements are traced.
pub const GUARD_TRACE: &str = "truthfulness_guard";
