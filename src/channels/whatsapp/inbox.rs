//! The WhatsApp channel: accepts verified webhooks into the durable inbox, and workers that turn
//! each inbox row into at most one agent turn and one reply.
//!
//! ```text
//! webhook (signed) ─► accept_* ─► store.whatsapp_enqueue (dedup on wamid) ─► 200
//!                                   │ wake
//!                  worker ◄─ store.whatsapp_claim (lease; one conversation at a time)
//!                    │ message: handle_inbound → (voice note: download, decode, STT)
//!                    │          history (last N) → Agent(channel=whatsapp) → format, split
//!                    │          → outbound rows (idempotency key) → RetryingSender → provider
//!                    │ status:  store.whatsapp_apply_status (never regresses)
//!                    └► store.whatsapp_finish
//! ```
//!
//! When a worker claims, how long its lease lasts and whether a failed row is retried (and when)
//! is decided by the sans-IO [`crate::scheduler::Scheduler`]; the worker here is its shell
//! (database, agent, sends), on the service's [`Clock`]. Invariants:
//! * A row is claimed by one worker at a time (`whatsapp_claim` leases it for `lease_ms`); a row
//!   whose worker died is claimed again once the lease has run out.
//! * One conversation is processed by one worker at a time, oldest message first, and a message
//!   waiting for a retry holds back the later messages of its conversation.
//! * An idle worker claims every `poll_ms`, or at once when a webhook queued something; after a
//!   row it claims the next at once.
//! * An agent failure or a throttled send is retried by the one retry policy (`retry_*_ms`)
//!   until `max_attempts`; the last attempt answers with the fallback reply instead of failing.
//!   Anything else fails the row at once (kept for operators).
//!
//! Business routing goes through [`BusinessDirectory`]; [`ConfigDirectory`] serves
//! `[[whatsapp.numbers]]` until the booking tables provide one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::graph::{GraphSender, LogSender, RetryingSender, TwilioSender};
use super::voice_note;
use crate::channels::whatsapp::model::{
    InboundEvent, InboundMessage, MediaDigest, MessageContent, StatusUpdate, check_media_sha256,
    log_id, markdown_to_whatsapp, split_message,
};
use crate::clock::Clock;
use crate::config::{WhatsAppConfig, WhatsAppNumber};
use crate::providers::{
    Agent, AgentEvent, AgentRequest, BoxFuture, CallContext, Channel, Message, OutboundBody,
    OutboundMessage, Role, SendError, SpeechToText, WhatsAppSender,
};
use crate::retry::Backoff;
use crate::scheduler::{
    Claimed, Failure, Scheduler, Settings, Step, Verdict, run_leased, shell_wait,
};
use crate::store::whatsapp::{
    ConversationKey, InboxItem, InboxOutcome, StoredMessage, conversation_id,
};
use crate::store::{Store, StoreError};

pub const PROVIDER_META: &str = "meta";
pub const PROVIDER_TWILIO: &str = "twilio";

/// A business as the channel needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BusinessInfo {
    pub id: String,
    pub name: String,
    /// BCP-47, e.g. `he-IL`.
    pub language: String,
    /// Meta Cloud API number id (sender for Graph sends).
    pub phone_number_id: String,
    /// E.164 digits without `+` (Twilio sender, `To` for the agent).
    pub display_number: String,
}

/// A directory answer: found, not found (`Ok(None)`), or the lookup failed (a database error:
/// the caller must not treat it as "unknown", or a webhook would be acknowledged and lost).
pub type Lookup = Result<Option<BusinessInfo>, StoreError>;

/// Finds the business a message was sent to. The lead implements it over the booking tables.
pub trait BusinessDirectory: Send + Sync + 'static {
    fn by_whatsapp_number_id(&self, phone_number_id: &str) -> BoxFuture<'static, Lookup>;
    /// `number` is E.164 digits without `+` or `whatsapp:`.
    fn by_twilio_number(&self, number: &str) -> BoxFuture<'static, Lookup>;
    fn by_id(&self, business_id: &str) -> BoxFuture<'static, Lookup>;
}

/// `[[whatsapp.numbers]]` from the config.
pub struct ConfigDirectory {
    numbers: Vec<WhatsAppNumber>,
}

impl ConfigDirectory {
    pub fn new(numbers: Vec<WhatsAppNumber>) -> Self {
        Self { numbers }
    }

    fn find(&self, pred: impl Fn(&WhatsAppNumber) -> bool) -> Option<BusinessInfo> {
        self.numbers.iter().find(|n| pred(n)).map(|n| BusinessInfo {
            id: n.business_id.clone(),
            name: n.business_name.clone(),
            language: n.language.clone(),
            phone_number_id: n.phone_number_id.clone(),
            display_number: n.display_number.trim_start_matches('+').to_string(),
        })
    }
}

impl BusinessDirectory for ConfigDirectory {
    fn by_whatsapp_number_id(&self, id: &str) -> BoxFuture<'static, Lookup> {
        let found = self.find(|n| !id.is_empty() && n.phone_number_id == id);
        Box::pin(async move { Ok(found) })
    }

    fn by_twilio_number(&self, number: &str) -> BoxFuture<'static, Lookup> {
        let number = number.trim_start_matches('+');
        let found =
            self.find(|n| !number.is_empty() && n.display_number.trim_start_matches('+') == number);
        Box::pin(async move { Ok(found) })
    }

    fn by_id(&self, business_id: &str) -> BoxFuture<'static, Lookup> {
        let found = self.find(|n| n.business_id == business_id);
        Box::pin(async move { Ok(found) })
    }
}

/// The businesses of the booking tables (`business_numbers`), with `[[whatsapp.numbers]]` from
/// the config taking precedence, so one database serves every tenant without config edits.
pub struct StoreDirectory {
    store: Store,
    config: ConfigDirectory,
}

impl StoreDirectory {
    pub fn new(store: Store, numbers: Vec<WhatsAppNumber>) -> Self {
        Self {
            store,
            config: ConfigDirectory::new(numbers),
        }
    }

    async fn info(store: &Store, business_id: &str) -> Lookup {
        let Some(business) = store.business(business_id).await? else {
            return Ok(None);
        };
        let addresses = store.business_addresses(business_id).await?;
        let address = |channel: &str| {
            addresses
                .iter()
                .find(|(c, _)| c == channel)
                .map(|(_, a)| a.trim_start_matches('+').to_string())
                .unwrap_or_default()
        };
        Ok(Some(BusinessInfo {
            id: business.id,
            name: business.name,
            language: business.language,
            phone_number_id: address("whatsapp"),
            display_number: address("phone"),
        }))
    }

    async fn by_address(store: &Store, channel: &str, address: &str) -> Lookup {
        match store.business_id_by_number(channel, address).await? {
            Some(id) => Self::info(store, &id).await,
            None => Ok(None),
        }
    }
}

impl BusinessDirectory for StoreDirectory {
    fn by_whatsapp_number_id(&self, id: &str) -> BoxFuture<'static, Lookup> {
        let configured = self.config.by_whatsapp_number_id(id);
        let (store, id) = (self.store.clone(), id.to_string());
        Box::pin(async move {
            if let Some(found) = configured.await? {
                return Ok(Some(found));
            }
            if id.is_empty() {
                return Ok(None);
            }
            Self::by_address(&store, "whatsapp", &id).await
        })
    }

    fn by_twilio_number(&self, number: &str) -> BoxFuture<'static, Lookup> {
        let configured = self.config.by_twilio_number(number);
        let (store, digits) = (
            self.store.clone(),
            number.trim_start_matches('+').to_string(),
        );
        Box::pin(async move {
            if let Some(found) = configured.await? {
                return Ok(Some(found));
            }
            if digits.is_empty() {
                return Ok(None);
            }
            // Twilio WhatsApp senders are usually the business's own phone number.
            Self::by_address(&store, "phone", &format!("+{digits}")).await
        })
    }

    fn by_id(&self, business_id: &str) -> BoxFuture<'static, Lookup> {
        let configured = self.config.by_id(business_id);
        let (store, id) = (self.store.clone(), business_id.to_string());
        Box::pin(async move {
            match configured.await? {
                Some(found) => Ok(Some(found)),
                None => Self::info(&store, &id).await,
            }
        })
    }
}

/// Secrets, from the environment only.
#[derive(Clone, Default)]
pub struct WhatsAppSecrets {
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
    pub access_token: Option<String>,
    pub twilio_account_sid: Option<String>,
    pub twilio_auth_token: Option<String>,
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for WhatsAppSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "set" } else { "unset" };
        f.debug_struct("WhatsAppSecrets")
            .field("app_secret", &set(&self.app_secret))
            .field("verify_token", &set(&self.verify_token))
            .field("access_token", &set(&self.access_token))
            .field("twilio_account_sid", &set(&self.twilio_account_sid))
            .field("twilio_auth_token", &set(&self.twilio_auth_token))
            .field("admin_token", &set(&self.admin_token))
            .finish()
    }
}

impl WhatsAppSecrets {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            app_secret: var("WHATSAPP_APP_SECRET"),
            verify_token: var("WHATSAPP_VERIFY_TOKEN"),
            access_token: var("WHATSAPP_ACCESS_TOKEN"),
            twilio_account_sid: var("TWILIO_ACCOUNT_SID"),
            twilio_auth_token: var("TWILIO_AUTH_TOKEN"),
            admin_token: var("KAV_ADMIN_TOKEN"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WhatsAppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("inbox payload unreadable: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("message has no sender")]
    NoSender,
    #[error("agent failed: {0}")]
    Agent(String),
    #[error("send failed (will retry): {0}")]
    SendRetryable(String),
    #[error("insecure_skip_signature is refused in release builds")]
    InsecureInRelease,
    #[error("whatsapp.twilio_reply must be \"rest\" or \"twiml\", not {0:?}")]
    BadTwilioReply(String),
    #[error("no {0} sender configured (set the secrets, or mock_sends)")]
    NoProviderSender(&'static str),
}

/// Counters for /metrics and tests.
#[derive(Debug, Default)]
pub struct WhatsAppStats {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub unknown_number: AtomicU64,
    pub agent_calls: AtomicU64,
    pub sends: AtomicU64,
    pub send_failures: AtomicU64,
    pub processed: AtomicU64,
}

/// What happened to a webhook's events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AcceptReport {
    pub queued: usize,
    pub duplicates: usize,
    pub unknown_number: usize,
}

pub struct WhatsAppService {
    pub store: Store,
    pub agent: Arc<dyn Agent>,
    pub stt: Arc<dyn SpeechToText>,
    pub directory: Arc<dyn BusinessDirectory>,
    pub config: WhatsAppConfig,
    pub secrets: WhatsAppSecrets,
    /// Sends for Meta numbers / Twilio numbers (already wrapped in [`RetryingSender`]).
    graph_sender: Option<Arc<dyn WhatsAppSender>>,
    twilio_sender: Option<Arc<dyn WhatsAppSender>>,
    graph_media: Option<GraphSender>,
    twilio_media: Option<TwilioSender>,
    wake: Notify,
    pub stats: WhatsAppStats,
    /// The mock sender when `mock_sends` is on (tests read what it logged).
    pub mock: Option<Arc<LogSender>>,
    clock: Clock,
}

/// Marks turns that happened on a phone call in the WhatsApp agent's history.
pub const PHONE_CALL_PREFIX: &str = "(on a phone call) ";

/// Both histories in time order, the newest `limit` kept.
fn merge_history(
    chat: Vec<StoredMessage>,
    calls: impl IntoIterator<Item = StoredMessage>,
    limit: usize,
) -> Vec<StoredMessage> {
    let mut all = chat;
    all.extend(calls);
    // Stable: on equal times a chat message stays before a call turn, as stored.
    all.sort_by_key(|m| m.at_ms);
    let excess = all.len().saturating_sub(limit);
    all.drain(..excess);
    all
}

impl WhatsAppService {
    /// Builds the channel on the wall clock `clock` (`clock::system_clock()`; tests pass a manual
    /// one). Senders exist when their secrets are set (or in mock mode).
    pub fn new(
        store: Store,
        agent: Arc<dyn Agent>,
        stt: Arc<dyn SpeechToText>,
        directory: Arc<dyn BusinessDirectory>,
        config: WhatsAppConfig,
        secrets: WhatsAppSecrets,
        clock: Clock,
    ) -> Result<Arc<Self>, WhatsAppError> {
        check_insecure_allowed(config.insecure_skip_signature, !cfg!(debug_assertions))?;
        if !matches!(config.twilio_reply.as_str(), "rest" | "twiml") {
            return Err(WhatsAppError::BadTwilioReply(config.twilio_reply.clone()));
        }
        let timeout = Duration::from_millis(config.http_timeout_ms);
        let graph_media = secrets.access_token.as_deref().map(|token| {
            GraphSender::new(
                &config.graph_base_url,
                &config.api_version,
                token,
                timeout,
                config.trace_log_pii,
            )
        });
        let twilio_media = match (&secrets.twilio_account_sid, &secrets.twilio_auth_token) {
            (Some(sid), Some(token)) => Some(
                TwilioSender::new(&config.twilio_base_url, sid, token, timeout)
                    .with_status_callback(&config.twilio_status_callback_url),
            ),
            _ => None,
        };
        let retrying = |inner: Arc<dyn WhatsAppSender>| -> Arc<dyn WhatsAppSender> {
            Arc::new(RetryingSender::new(
                inner,
                config.send_attempts,
                Duration::from_millis(config.retry_base_ms),
                Duration::from_millis(config.retry_max_ms),
            ))
        };
        let (graph_sender, twilio_sender, mock) = if config.mock_sends {
            let mock = Arc::new(LogSender::new(config.trace_log_pii));
            let as_sender: Arc<dyn WhatsAppSender> = mock.clone();
            (Some(as_sender.clone()), Some(as_sender), Some(mock))
        } else {
            (
                graph_media
                    .clone()
                    .map(|g| retrying(Arc::new(g) as Arc<dyn WhatsAppSender>)),
                twilio_media
                    .clone()
                    .map(|t| retrying(Arc::new(t) as Arc<dyn WhatsAppSender>)),
                None,
            )
        };
        if graph_sender.is_none() {
            tracing::warn!("WHATSAPP_ACCESS_TOKEN unset: Meta replies cannot be sent");
        }
        Ok(Arc::new(Self {
            store,
            agent,
            stt,
            directory,
            config,
            secrets,
            graph_sender,
            twilio_sender,
            graph_media,
            twilio_media,
            wake: Notify::new(),
            stats: WhatsAppStats::default(),
            mock,
            clock,
        }))
    }

    /// Unix milliseconds from the service's clock.
    fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// Counters for `/metrics`, read at scrape time.
    pub fn metrics(&self) -> Vec<crate::metrics::Reading> {
        use crate::metrics::Reading;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.stats;
        vec![
            Reading::counter(
                "kav_whatsapp_events_queued",
                "WhatsApp webhook events queued",
                get(&s.accepted),
            ),
            Reading::counter(
                "kav_whatsapp_events_duplicate",
                "WhatsApp webhook events ignored as duplicates",
                get(&s.duplicates),
            ),
            Reading::counter(
                "kav_whatsapp_events_unknown_number",
                "WhatsApp events for numbers no business owns",
                get(&s.unknown_number),
            ),
            Reading::counter(
                "kav_whatsapp_events_processed",
                "WhatsApp inbox rows processed",
                get(&s.processed),
            ),
            Reading::counter(
                "kav_whatsapp_agent_calls",
                "Agent turns run for WhatsApp",
                get(&s.agent_calls),
            ),
            Reading::counter(
                "kav_whatsapp_sends",
                "WhatsApp send attempts (after retries)",
                get(&s.sends),
            ),
            Reading::counter(
                "kav_whatsapp_send_failures",
                "WhatsApp sends that failed after retries",
                get(&s.send_failures),
            ),
        ]
    }

    fn log_id(&self, value: &str) -> String {
        log_id(value, self.config.trace_log_pii)
    }

    // ------------------------------------------------------------ accepting webhooks

    /// Queues the events of a verified Meta webhook. Unknown `phone_number_id`s are logged and
    /// skipped (the webhook is still acknowledged, or Meta would retry for 7 days).
    pub async fn accept_meta(
        &self,
        events: Vec<InboundEvent>,
    ) -> Result<AcceptReport, WhatsAppError> {
        let mut report = AcceptReport::default();
        for event in events {
            let Some(business) = self
                .directory
                .by_whatsapp_number_id(event.phone_number_id())
                .await?
            else {
                report.unknown_number += 1;
                self.stats.unknown_number.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    phone_number_id = %event.phone_number_id(),
                    "WhatsApp webhook for an unknown phone_number_id; acknowledged, not processed"
                );
                continue;
            };
            self.enqueue(PROVIDER_META, &business, &event, &mut report)
                .await?;
        }
        if report.queued > 0 {
            self.wake.notify_waiters();
        }
        Ok(report)
    }

    /// Queues a verified Twilio WhatsApp message, routed by its `To` number.
    pub async fn accept_twilio(
        &self,
        message: InboundMessage,
    ) -> Result<AcceptReport, WhatsAppError> {
        let number = message.business_number.clone();
        self.accept_twilio_event(&number, InboundEvent::Message(message))
            .await
    }

    /// Queues a verified Twilio status callback, routed by the business number it was sent from.
    pub async fn accept_twilio_status(
        &self,
        update: StatusUpdate,
        business_number: &str,
    ) -> Result<AcceptReport, WhatsAppError> {
        self.accept_twilio_event(business_number, InboundEvent::Status(update))
            .await
    }

    /// Unknown numbers are acknowledged and logged, not processed (Twilio would retry otherwise).
    async fn accept_twilio_event(
        &self,
        business_number: &str,
        event: InboundEvent,
    ) -> Result<AcceptReport, WhatsAppError> {
        let mut report = AcceptReport::default();
        let Some(business) = self.directory.by_twilio_number(business_number).await? else {
            report.unknown_number += 1;
            self.stats.unknown_number.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(number = %business_number, "Twilio WhatsApp request for an unknown number; acknowledged, not processed");
            return Ok(report);
        };
        self.enqueue(PROVIDER_TWILIO, &business, &event, &mut report)
            .await?;
        if report.queued > 0 {
            self.wake.notify_waiters();
        }
        Ok(report)
    }

    async fn enqueue(
        &self,
        provider: &str,
        business: &BusinessInfo,
        event: &InboundEvent,
        report: &mut AcceptReport,
    ) -> Result<(), WhatsAppError> {
        let conversation = match event {
            InboundEvent::Message(m) => {
                let key = m.sender.customer_key().ok_or(WhatsAppError::NoSender)?;
                conversation_id(&business.id, key)
            }
            // Statuses touch only their outbound row: no ordering with the conversation needed.
            InboundEvent::Status(s) => format!("status:{}", s.message_id),
        };
        let payload = serde_json::to_string(event)?;
        let new = self
            .store
            .whatsapp_enqueue(
                &event.dedup_key(),
                provider,
                &business.id,
                &conversation,
                &payload,
                self.now_ms(),
            )
            .await?;
        if new {
            // The agent may open connections now, before a worker picks the message up.
            if matches!(event, InboundEvent::Message(_)) {
                self.agent.prepare(&conversation);
            }
            report.queued += 1;
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            report.duplicates += 1;
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(key = %event.dedup_key(), "duplicate WhatsApp event ignored");
        }
        Ok(())
    }

    // ------------------------------------------------------------ workers

    /// Starts `config.workers` inbox workers. They run until aborted; an aborted worker's row is
    /// claimed again after the lease.
    pub fn spawn_workers(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        (0..self.config.workers.max(1))
            .map(|_| {
                let this = self.clone();
                tokio::spawn(async move { this.worker_loop().await })
            })
            .collect()
    }

    /// The inbox worker's schedule (`[whatsapp] poll_ms`, `lease_ms`, `max_attempts`,
    /// `retry_*_ms`): the sans-IO [`Scheduler`] decides when to claim, retry or give up.
    pub fn schedule(&self) -> Settings {
        let ms = Duration::from_millis;
        Settings {
            poll_ms: self.config.poll_ms.max(10) as i64,
            lease_ms: self.config.lease_ms as i64,
            max_attempts: self.config.max_attempts.max(1),
            backoff: Backoff::new(ms(self.config.retry_base_ms), ms(self.config.retry_max_ms)),
        }
    }

    /// The shell of one worker: the machine's deadline, or a webhook's wake-up, then its steps.
    async fn worker_loop(self: Arc<Self>) {
        let mut worker = InboxWorker::new(self.schedule(), self.now_ms());
        loop {
            // Register interest before looking, so a webhook arriving in between is not missed.
            let woken = self.wake.notified();
            if let Err(e) = worker.drain(&self).await {
                tracing::warn!(error = %e, "WhatsApp inbox worker error");
            }
            let wait = shell_wait(&worker.machine, self.now_ms());
            tokio::select! {
                _ = tokio::time::sleep(wait) => worker.machine.handle_timeout(self.now_ms()),
                _ = woken => worker.machine.handle_wake(self.now_ms()),
            }
        }
    }

    /// Processes every inbox row runnable now, one after the other, as a worker's pass does;
    /// returns how many were processed. (Tests and tools on a manual clock; the workers loop.)
    pub async fn run_pending(&self) -> Result<usize, WhatsAppError> {
        let now = self.now_ms();
        let mut worker = InboxWorker::new(self.schedule(), now);
        worker.machine.handle_timeout(now);
        worker.drain(self).await?;
        Ok(worker.finished)
    }

    async fn process(&self, item: &InboxItem, last_attempt: bool) -> Result<(), WhatsAppError> {
        let event: InboundEvent = serde_json::from_str(&item.payload_json)?;
        match event {
            InboundEvent::Status(s) => {
                let at = if s.timestamp_s > 0 {
                    s.timestamp_s * 1000
                } else {
                    self.now_ms()
                };
                let now = self
                    .store
                    .whatsapp_apply_status(
                        &s.message_id,
                        &s.status,
                        s.error_code,
                        s.error_title.as_deref(),
                        at,
                    )
                    .await?;
                if let Some(code) = s.error_code {
                    tracing::warn!(wamid = %s.message_id, code, title = ?s.error_title, "WhatsApp delivery failed");
                }
                tracing::debug!(wamid = %s.message_id, status = %s.status, now = ?now, "status applied");
                Ok(())
            }
            InboundEvent::Message(m) => {
                // A failed lookup is an error (the row is retried), not a vanished business.
                let business = self.directory.by_id(&item.business_id).await?;
                let Some(business) = business else {
                    tracing::warn!(business_id = %item.business_id, "business vanished; message dropped");
                    return Ok(());
                };
                self.handle_inbound(&business, &m, &item.provider, last_attempt)
                    .await
                    .map(|_| ())
            }
        }
    }

    // ------------------------------------------------------------ one inbound message

    /// Answers one inbound message: text, choice, voice note or unsupported. Idempotent per
    /// `message.message_id`: a stored reply is reused and parts already accepted are not resent.
    /// Returns the reply parts (as formatted for WhatsApp).
    pub async fn handle_inbound(
        &self,
        business: &BusinessInfo,
        message: &InboundMessage,
        provider: &str,
        last_attempt: bool,
    ) -> Result<Vec<String>, WhatsAppError> {
        self.answer(business, message, provider, last_attempt, Delivery::Send)
            .await
    }

    async fn answer(
        &self,
        business: &BusinessInfo,
        message: &InboundMessage,
        provider: &str,
        last_attempt: bool,
        delivery: Delivery,
    ) -> Result<Vec<String>, WhatsAppError> {
        let customer = message
            .sender
            .customer_key()
            .ok_or(WhatsAppError::NoSender)?
            .to_string();
        let conversation = self
            .store
            .whatsapp_touch_conversation(
                &ConversationKey {
                    business_id: &business.id,
                    customer_key: &customer,
                    customer_phone: message.sender.phone.as_deref(),
                    customer_user_id: message.sender.user_id.as_deref(),
                    profile_name: message.sender.profile_name.as_deref(),
                    channel: "whatsapp",
                },
                self.now_ms(),
            )
            .await?;
        tracing::info!(
            business = %business.id,
            customer = %self.log_id(&customer),
            message_id = %message.message_id,
            kind = content_kind(&message.content),
            "WhatsApp message"
        );
        let reply = match self.store.whatsapp_reply_for(&message.message_id).await? {
            Some(stored) => stored,
            None => {
                // Blue ticks and "typing…" while the agent works (Meta only, not in mock mode).
                if provider == PROVIDER_META
                    && delivery == Delivery::Send
                    && self.mock.is_none()
                    && let Some(graph) = &self.graph_media
                {
                    graph
                        .mark_read_typing(&business.phone_number_id, &message.message_id)
                        .await;
                }
                let user_text = match &message.content {
                    MessageContent::Text { body } => Some(body.clone()),
                    MessageContent::Choice { title, .. } => Some(title.clone()),
                    MessageContent::Audio { .. } => {
                        self.transcribe_voice_note(business, &conversation, message, provider)
                            .await
                    }
                    MessageContent::Unsupported { .. } => None,
                };
                let reply = match user_text {
                    Some(text) => {
                        match self
                            .agent_turn(business, &conversation, &customer, message, &text)
                            .await
                        {
                            Ok(reply) => reply,
                            Err(e) if !last_attempt => return Err(e),
                            Err(e) => {
                                tracing::warn!(error = %e, "agent failed on the last attempt; sending the fallback reply");
                                self.config.fallback_reply.clone()
                            }
                        }
                    }
                    None if matches!(message.content, MessageContent::Audio { .. }) => {
                        "Sorry, I could not understand that voice message. Could you type it?"
                            .to_string()
                    }
                    None => self.config.unsupported_reply.clone(),
                };
                self.store
                    .whatsapp_append_message(
                        &format!("out:{}", message.message_id),
                        &conversation,
                        &business.id,
                        &customer,
                        "assistant",
                        &reply,
                        self.now_ms(),
                        None,
                        Some(&message.message_id),
                    )
                    .await?;
                reply
            }
        };
        let formatted = markdown_to_whatsapp(&reply);
        let parts = split_message(&formatted, self.config.max_text_chars.clamp(1, 4096));
        if delivery == Delivery::Collect {
            return Ok(parts);
        }
        let recipient = message
            .sender
            .phone
            .clone()
            .or_else(|| message.sender.user_id.clone())
            .ok_or(WhatsAppError::NoSender)?;
        for (i, part) in parts.iter().enumerate() {
            self.send_part(
                business,
                &conversation,
                provider,
                &recipient,
                &format!("{}:{i}", message.message_id),
                part,
            )
            .await?;
        }
        Ok(parts)
    }

    async fn agent_turn(
        &self,
        business: &BusinessInfo,
        conversation: &str,
        customer: &str,
        message: &InboundMessage,
        text: &str,
    ) -> Result<String, WhatsAppError> {
        self.store
            .whatsapp_append_message(
                &format!("in:{}", message.message_id),
                conversation,
                &business.id,
                customer,
                "user",
                text,
                self.now_ms(),
                Some(&message.message_id),
                None,
            )
            .await?;
        let limit = self.config.history_messages.max(1);
        let mut stored = self.store.whatsapp_history(conversation, limit).await?;
        // One customer across channels: what they said on the phone recently belongs in context.
        if let Some(phone) = &message.sender.phone {
            match self
                .store
                .customer_messages(&business.id, &format!("+{phone}"), "phone", limit)
                .await
            {
                Ok(calls) => {
                    stored = merge_history(
                        stored,
                        calls.into_iter().map(|m| StoredMessage {
                            role: m.role,
                            text: format!("{PHONE_CALL_PREFIX}{}", m.text),
                            at_ms: m.at_ms,
                        }),
                        limit as usize,
                    )
                }
                Err(e) => {
                    tracing::warn!(error = %e, "phone history not read; WhatsApp history only")
                }
            }
        }
        let mut parameters = BTreeMap::new();
        if let Some(phone) = &message.sender.phone {
            parameters.insert("From".to_string(), format!("+{phone}"));
        }
        if let Some(user_id) = &message.sender.user_id {
            parameters.insert("user_id".to_string(), user_id.clone());
        }
        if let Some(name) = &message.sender.profile_name {
            parameters.insert("profile_name".to_string(), name.clone());
        }
        parameters.insert("To".to_string(), format!("+{}", business.display_number));
        parameters.insert(
            "phone_number_id".to_string(),
            business.phone_number_id.clone(),
        );
        parameters.insert("business_id".to_string(), business.id.clone());
        let request = AgentRequest {
            channel: Channel::Whatsapp,
            call: CallContext {
                call_sid: conversation.to_string(),
                stream_sid: message.message_id.clone(),
                language: business.language.clone(),
                parameters,
            },
            turn: stored.iter().filter(|m| m.role == "user").count() as u32,
            history: stored
                .into_iter()
                .map(|m| Message {
                    role: if m.role == "assistant" {
                        Role::Assistant
                    } else {
                        Role::User
                    },
                    text: m.text,
                    interrupted: false,
                })
                .collect(),
            digits: false,
        };
        self.stats.agent_calls.fetch_add(1, Ordering::Relaxed);
        run_agent(
            self.agent.as_ref(),
            request,
            Duration::from_millis(self.config.agent_timeout_ms),
        )
        .await
    }

    async fn transcribe_voice_note(
        &self,
        business: &BusinessInfo,
        conversation: &str,
        message: &InboundMessage,
        provider: &str,
    ) -> Option<String> {
        let MessageContent::Audio {
            media_id,
            url,
            sha256,
            ..
        } = &message.content
        else {
            return None;
        };
        let max = self.config.max_media_bytes;
        let bytes = if provider == PROVIDER_TWILIO {
            match (&self.twilio_media, url) {
                (Some(t), Some(url)) => t.download_media(url, max).await,
                _ => {
                    tracing::warn!("voice note: no Twilio credentials or media URL");
                    return None;
                }
            }
        } else {
            match &self.graph_media {
                Some(g) => {
                    g.download_media(media_id.as_deref(), url.as_deref(), max)
                        .await
                }
                None => {
                    tracing::warn!("voice note: WHATSAPP_ACCESS_TOKEN unset, cannot download");
                    return None;
                }
            }
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "voice note download failed");
                return None;
            }
        };
        // A truncated or substituted file must not be transcribed into words the customer never
        // said; they are asked to type instead.
        if let Some(expected) = sha256 {
            match check_media_sha256(expected, &bytes) {
                MediaDigest::Matches => {}
                MediaDigest::Mismatch => {
                    tracing::warn!(
                        message_id = %message.message_id,
                        bytes = bytes.len(),
                        "voice note does not match the webhook's sha256; not transcribed"
                    );
                    return None;
                }
                MediaDigest::Unreadable => {
                    tracing::debug!("voice note sha256 field unreadable; not checked")
                }
            }
        }
        let call = CallContext {
            call_sid: conversation.to_string(),
            stream_sid: message.message_id.clone(),
            language: business.language.clone(),
            parameters: BTreeMap::new(),
        };
        match voice_note::transcribe(
            self.stt.as_ref(),
            call,
            &bytes,
            Duration::from_millis(self.config.agent_timeout_ms),
        )
        .await
        {
            Ok((text, audio)) => {
                tracing::info!(
                    duration_ms = audio.duration().as_millis() as u64,
                    chars = text.chars().count(),
                    "voice note transcribed"
                );
                Some(text)
            }
            Err(e) => {
                tracing::warn!(error = %e, "voice note not transcribed");
                None
            }
        }
    }

    /// Sends one reply part once: pending → accepted/failed. A part already accepted is skipped.
    async fn send_part(
        &self,
        business: &BusinessInfo,
        conversation: &str,
        provider: &str,
        recipient: &str,
        key: &str,
        text: &str,
    ) -> Result<(), WhatsAppError> {
        let body = OutboundBody::Text {
            text: text.to_string(),
        };
        let body_json = serde_json::to_string(&body)?;
        let row = self
            .store
            .whatsapp_outbound_begin(
                key,
                conversation,
                &business.id,
                recipient,
                &body_json,
                self.now_ms(),
            )
            .await?;
        if row.status != crate::store::whatsapp::DeliveryStatus::Pending {
            return Ok(());
        }
        let (sender, from) = if provider == PROVIDER_TWILIO {
            (&self.twilio_sender, business.display_number.clone())
        } else {
            (&self.graph_sender, business.phone_number_id.clone())
        };
        let Some(sender) = sender else {
            return Err(WhatsAppError::NoProviderSender(
                if provider == PROVIDER_TWILIO {
                    "Twilio"
                } else {
                    "Graph"
                },
            ));
        };
        let mut message = OutboundMessage {
            phone_number_id: from,
            to: recipient.to_string(),
            body,
            idempotency_key: key.to_string(),
        };
        let mut result = sender.send(message.clone()).await;
        if let Err(SendError::OutsideWindow { message: why }) = &result {
            // 131047: the customer last wrote more than 24 h ago; only a template delivers.
            tracing::info!(reason = %why, template = %self.config.confirmation_template, "outside the 24-hour window; sending the template");
            message.body = OutboundBody::Template {
                name: self.config.confirmation_template.clone(),
                language: self.config.template_language.clone(),
                params: vec![text.to_string()],
            };
            result = sender.send(message.clone()).await;
        }
        let body_json = serde_json::to_string(&message.body)?;
        self.stats.sends.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(receipt) => {
                self.store
                    .whatsapp_outbound_result(
                        key,
                        &body_json,
                        Ok(&receipt.message_id),
                        self.now_ms(),
                    )
                    .await?;
                Ok(())
            }
            Err(SendError::Retryable {
                code, message: m, ..
            }) => {
                self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                Err(WhatsAppError::SendRetryable(format!("{code}: {m}")))
            }
            Err(e) => {
                self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                let code = match &e {
                    SendError::Permanent { code, .. } => *code,
                    SendError::OutsideWindow { .. } => 131047,
                    SendError::Retryable { code, .. } => *code,
                };
                tracing::warn!(
                    code,
                    error = %e,
                    to = %self.log_id(recipient),
                    "WhatsApp send failed permanently"
                );
                self.store
                    .whatsapp_outbound_result(
                        key,
                        &body_json,
                        Err((code, &e.to_string())),
                        self.now_ms(),
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// TwiML mode: queues the Twilio message already claimed and answers it inline; the parts
    /// go back in the webhook response instead of through the REST API. `None` for a duplicate
    /// (or an unknown number): answer with an empty TwiML. If this process dies mid-way, the
    /// lease expires and a worker answers through the REST API.
    pub async fn answer_twilio_inline(
        &self,
        message: InboundMessage,
    ) -> Result<Option<Vec<String>>, WhatsAppError> {
        let Some(business) = self
            .directory
            .by_twilio_number(&message.business_number)
            .await?
        else {
            self.stats.unknown_number.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(to = %message.business_number, "Twilio WhatsApp message to an unknown number; acknowledged, not processed");
            return Ok(None);
        };
        let key = message
            .sender
            .customer_key()
            .ok_or(WhatsAppError::NoSender)?;
        let event = InboundEvent::Message(message.clone());
        let new = self
            .store
            .whatsapp_enqueue_claimed(
                &event.dedup_key(),
                PROVIDER_TWILIO,
                &business.id,
                &conversation_id(&business.id, key),
                &serde_json::to_string(&event)?,
                self.now_ms(),
            )
            .await?;
        if !new {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        // Inline there is no second attempt: the fallback reply is better than none.
        let parts = self
            .answer(
                &business,
                &message,
                PROVIDER_TWILIO,
                true,
                Delivery::Collect,
            )
            .await;
        let now = self.now_ms();
        match &parts {
            Ok(_) => {
                self.store
                    .whatsapp_finish(&event.dedup_key(), InboxOutcome::Done, now)
                    .await?
            }
            Err(e) => {
                self.store
                    .whatsapp_finish(
                        &event.dedup_key(),
                        InboxOutcome::Failed(&e.to_string()),
                        now,
                    )
                    .await?
            }
        }
        self.stats.processed.fetch_add(1, Ordering::Relaxed);
        parts.map(Some)
    }

    // ------------------------------------------------------------ operator test endpoint

    /// Runs the agent for `text` as if `session` wrote to `business` on WhatsApp, without
    /// WhatsApp: nothing is sent. `session` is a phone (digits, `+` allowed) or any session id.
    pub async fn test_message(
        &self,
        business: &BusinessInfo,
        session: &str,
        is_phone: bool,
        text: &str,
    ) -> Result<(String, String), WhatsAppError> {
        let phone = is_phone.then(|| session.trim_start_matches('+').to_string());
        let customer = phone
            .clone()
            .unwrap_or_else(|| format!("session:{session}"));
        let conversation = self
            .store
            .whatsapp_touch_conversation(
                &ConversationKey {
                    business_id: &business.id,
                    customer_key: &customer,
                    customer_phone: phone.as_deref(),
                    customer_user_id: None,
                    profile_name: None,
                    channel: "test",
                },
                self.now_ms(),
            )
            .await?;
        let message_id = format!(
            "test.{}.{}",
            self.now_ms(),
            TEST_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let message = InboundMessage {
            message_id: message_id.clone(),
            phone_number_id: business.phone_number_id.clone(),
            business_number: business.display_number.clone(),
            sender: crate::channels::whatsapp::model::Sender {
                phone,
                user_id: None,
                profile_name: None,
            },
            timestamp_s: self.now_ms() / 1000,
            content: MessageContent::Text { body: text.into() },
        };
        let reply = self
            .agent_turn(business, &conversation, &customer, &message, text)
            .await?;
        self.store
            .whatsapp_append_message(
                &format!("out:{message_id}"),
                &conversation,
                &business.id,
                &customer,
                "assistant",
                &reply,
                self.now_ms(),
                None,
                Some(&message_id),
            )
            .await?;
        Ok((conversation, markdown_to_whatsapp(&reply)))
    }
}

static TEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One inbox worker: the [`Scheduler`] and the row it is processing. All database, agent and
/// send work happens here, in the shell.
struct InboxWorker {
    machine: Scheduler,
    running: Option<InboxItem>,
    finished: usize,
}

impl InboxWorker {
    fn new(settings: Settings, first_poll_ms: i64) -> Self {
        Self {
            machine: Scheduler::new(settings, first_poll_ms),
            running: None,
            finished: 0,
        }
    }

    /// Carries out the machine's steps until it waits for time or a wake-up.
    async fn drain(&mut self, svc: &WhatsAppService) -> Result<(), WhatsAppError> {
        while let Some(step) = self.machine.poll_output() {
            if let Err(e) = self.step(svc, step).await {
                self.machine.handle_store_error(svc.now_ms());
                self.running = None;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn step(&mut self, svc: &WhatsAppService, step: Step) -> Result<(), WhatsAppError> {
        match step {
            Step::Claim { lease_ms } => {
                let now = svc.now_ms();
                let max_attempts = i64::from(self.machine.settings().max_attempts);
                self.running = svc
                    .store
                    .whatsapp_claim(now, lease_ms, max_attempts)
                    .await?;
                let job = self.running.as_ref().map(|item| Claimed {
                    id: item.id.clone(),
                    attempt: u32::try_from(item.attempts).unwrap_or(u32::MAX),
                });
                self.machine.handle_claimed(now, job);
            }
            Step::Run {
                id, last_attempt, ..
            } => {
                if let Some(item) = &self.running {
                    let work = svc.process(item, last_attempt);
                    let outcome = run_leased(&mut self.machine, &|| svc.now_ms(), work).await;
                    let outcome = outcome.map(|()| String::new()).map_err(failure);
                    self.machine.handle_outcome(svc.now_ms(), &id, outcome);
                }
            }
            Step::Finish {
                id,
                attempt,
                verdict,
            } => {
                self.running = None;
                let now = svc.now_ms();
                let outcome = match &verdict {
                    Verdict::Done { .. } => InboxOutcome::Done,
                    Verdict::Retry { error, at_ms } => {
                        tracing::warn!(%id, attempts = attempt, backoff_ms = at_ms - now, %error, "WhatsApp event will be retried");
                        InboxOutcome::Retry {
                            error,
                            not_before_ms: *at_ms,
                        }
                    }
                    Verdict::GiveUp { error } => {
                        tracing::warn!(%id, %error, "WhatsApp event failed");
                        InboxOutcome::Failed(error)
                    }
                };
                svc.store.whatsapp_finish(&id, outcome, now).await?;
                svc.stats.processed.fetch_add(1, Ordering::Relaxed);
                self.finished += 1;
            }
            Step::LeaseExpired { id } => {
                tracing::warn!(%id, "WhatsApp event outlived its lease; another worker may take it too");
            }
        }
        Ok(())
    }
}

/// Agent failures and throttled sends are worth another attempt; anything else is not.
fn failure(e: WhatsAppError) -> Failure {
    match e {
        WhatsAppError::SendRetryable(_) | WhatsAppError::Agent(_) => Failure::Retryable {
            error: e.to_string(),
            retry_after_ms: None,
        },
        other => Failure::Permanent(other.to_string()),
    }
}

/// Unsigned webhooks are a development convenience: a release (production) build refuses them.
pub fn check_insecure_allowed(
    insecure_skip_signature: bool,
    release_build: bool,
) -> Result<(), WhatsAppError> {
    if insecure_skip_signature && release_build {
        Err(WhatsAppError::InsecureInRelease)
    } else {
        Ok(())
    }
}

/// How reply parts reach the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Through the provider's send API (outbound rows, retries, template fallback).
    Send,
    /// Returned to the caller (TwiML response).
    Collect,
}

fn content_kind(content: &MessageContent) -> &'static str {
    match content {
        MessageContent::Text { .. } => "text",
        MessageContent::Choice { .. } => "choice",
        MessageContent::Audio { .. } => "audio",
        MessageContent::Unsupported { .. } => "unsupported",
    }
}

/// Runs one agent turn and joins its `TextDelta`s into the reply.
pub async fn run_agent(
    agent: &dyn Agent,
    request: AgentRequest,
    timeout: Duration,
) -> Result<String, WhatsAppError> {
    let (tx, mut rx) = mpsc::channel::<AgentEvent>(64);
    let respond = agent.respond(request, tx);
    let collect = async {
        let mut reply = String::new();
        while let Some(event) = rx.recv().await {
            if let AgentEvent::TextDelta(delta) = event {
                reply.push_str(&delta);
            }
        }
        reply
    };
    let run = async {
        let (result, reply) = tokio::join!(respond, collect);
        result.map(|()| reply)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(reply)) if !reply.trim().is_empty() => Ok(reply.trim().to_string()),
        Ok(Ok(_)) => Err(WhatsAppError::Agent("empty reply".into())),
        Ok(Err(e)) => Err(WhatsAppError::Agent(e.to_string())),
        Err(_) => Err(WhatsAppError::Agent("timed out".into())),
    }
}
