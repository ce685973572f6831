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

mod accept;
mod agent;
mod answer;
mod directory;
mod secrets;
mod send;
mod worker;

pub use agent::{PHONE_CALL_PREFIX, run_agent};
pub use directory::{BusinessDirectory, BusinessInfo, ConfigDirectory, Lookup, StoreDirectory};
pub use secrets::{WhatsAppSecrets, check_insecure_allowed};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::graph::{GraphSender, LogSender, RetryingSender, TwilioSender};
use crate::channels::whatsapp::model::log_id;
use crate::clock::Clock;
use crate::config::WhatsAppConfig;
use crate::providers::{Agent, SpeechToText, WhatsAppSender};
use crate::store::{Store, StoreError};

pub const PROVIDER_META: &str = "meta";
pub const PROVIDER_TWILIO: &str = "twilio";

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
}
