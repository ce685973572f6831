//! Flows over the durable outbox. Events are written in the same transaction as the data that
//! caused them (see `Store::create_appointment`); this module delivers them at least once:
//!
//! * `appointment.created` / `whatsapp.send` → one WhatsApp message (`payload.message`);
//! * `call.ended` → a conversation summary stored with the call, optionally sent on WhatsApp.
//!
//! When and how often is decided by the sans-IO [`crate::scheduler::Scheduler`]; this module is
//! its shell (database, sender). Invariants:
//! * Delivery leases the row first (`outbox_claim`, [`LEASE_MS`]), so the immediate attempt made
//!   by a tool and the background workers never send the same event at the same time; an event
//!   whose worker died is taken by another once the lease has run out.
//! * A worker makes a pass every `outbox_poll_ms`: one fetch of up to 64 due events, delivered
//!   one at a time.
//! * A retryable failure schedules the next attempt by the one retry policy (exponential with
//!   jitter, raised to the provider's retry-after); a permanent failure, or a retryable one on
//!   attempt `outbox_max_attempts`, marks the event `dead`.
//! * The idempotency key goes to the sender with every attempt, so a send that succeeded but whose
//!   bookkeeping failed is one message to a provider that de-duplicates (WhatsApp Cloud API does
//!   not; see the report).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::BookingConfig;
use crate::providers::{OutboundBody, OutboundMessage, SendError, WhatsAppSender};
use crate::retry::Backoff;
use crate::scheduler::{
    Claimed, Failure, Scheduler, Settings, Step, Verdict, run_leased, shell_wait,
};
use crate::store::booking::{OutboxRow, OutboxStatus};
use crate::store::{Store, StoreError};

/// What delivering the outbox needs: the store, the sender, the clock and the settings. The
/// booking runtime (`crate::agent::BookingRuntime`) provides them; the outbox does not know it.
pub trait OutboxPorts: Send + Sync {
    fn store(&self) -> &Store;
    fn sender(&self) -> &dyn WhatsAppSender;
    /// Milliseconds since the Unix epoch, from the runtime's clock (tests set it).
    fn now_ms(&self) -> i64;
    fn config(&self) -> &BookingConfig;
}

impl<T: OutboxPorts + ?Sized> OutboxPorts for Arc<T> {
    fn store(&self) -> &Store {
        (**self).store()
    }
    fn sender(&self) -> &dyn WhatsAppSender {
        (**self).sender()
    }
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
    fn config(&self) -> &BookingConfig {
        (**self).config()
    }
}

/// How long one delivery attempt holds its lease.
pub const LEASE_MS: i64 = 30_000;

pub const KIND_APPOINTMENT_CREATED: &str = "appointment.created";
pub const KIND_WHATSAPP_SEND: &str = "whatsapp.send";
pub const KIND_CALL_ENDED: &str = "call.ended";

/// Payload of a message-sending event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendPayload {
    pub message: OutboundMessage,
    /// Sent instead when the 24-hour window is closed.
    pub template_fallback: Option<OutboundBody>,
}

/// Payload of `call.ended`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEndedPayload {
    pub conversation_id: String,
    pub channel: String,
    pub business_id: String,
    pub customer_phone: Option<String>,
    pub phone_number_id: Option<String>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Failed; a retry is scheduled.
    Retrying {
        error: String,
    },
    /// Given up.
    Dead {
        error: String,
    },
    /// Another worker holds the event, or it was already delivered.
    NotClaimed,
}

impl From<&Verdict> for Delivery {
    fn from(verdict: &Verdict) -> Self {
        match verdict {
            Verdict::Done { .. } => Delivery::Delivered,
            Verdict::Retry { error, .. } => Delivery::Retrying {
                error: error.clone(),
            },
            Verdict::GiveUp { error } => Delivery::Dead {
                error: error.clone(),
            },
        }
    }
}

/// Due events fetched per pass.
const BATCH: i64 = 64;

/// The outbox worker's schedule (`[booking] outbox_*`), under the one retry policy.
pub fn schedule(config: &BookingConfig) -> Settings {
    let ms = Duration::from_millis;
    Settings {
        poll_ms: config.outbox_poll_ms.max(10) as i64,
        lease_ms: LEASE_MS,
        max_attempts: config.outbox_max_attempts,
        backoff: Backoff::new(
            ms(config.outbox_backoff_base_ms),
            ms(config.outbox_backoff_max_ms),
        ),
    }
}

/// Delivers the event with this idempotency key now (one attempt), if it is pending.
pub async fn deliver_key_now(rt: &dyn OutboxPorts, key: &str) -> Result<Delivery, StoreError> {
    match rt.store().outbox_by_key(key).await? {
        Some(row) if row.status == OutboxStatus::Pending => deliver(rt, &row).await,
        Some(row) if row.status == OutboxStatus::Delivered => Ok(Delivery::Delivered),
        _ => Ok(Delivery::NotClaimed),
    }
}

/// One delivery attempt of `row` outside the worker's loop: lease, act, record the outcome.
pub async fn deliver(rt: &dyn OutboxPorts, row: &OutboxRow) -> Result<Delivery, StoreError> {
    let now = rt.now_ms();
    if !rt.store().outbox_claim(&row.id, now, LEASE_MS).await? {
        return Ok(Delivery::NotClaimed);
    }
    let mut shell = Shell::new(rt, i64::MAX);
    shell.running = Some(row.clone());
    shell.machine.handle_claimed(now, Some(claimed(row)));
    shell.drain(rt).await?;
    Ok(shell
        .last
        .as_ref()
        .map_or(Delivery::NotClaimed, Delivery::from))
}

/// One pass over due events; returns how many were attempted.
pub async fn run_once(rt: &dyn OutboxPorts) -> Result<usize, StoreError> {
    let now = rt.now_ms();
    let mut shell = Shell::new(rt, now);
    shell.machine.handle_timeout(now);
    shell.drain(rt).await?;
    Ok(shell.finished)
}

/// The background worker: a pass every `outbox_poll_ms` until `shutdown` turns true. If the
/// sender side is dropped without saying stop, the worker runs for the life of the process.
pub fn spawn_worker(
    rt: Arc<dyn OutboxPorts>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut shell = Shell::new(&*rt, rt.now_ms());
        let mut watching = true;
        loop {
            if let Err(e) = shell.drain(&*rt).await {
                tracing::warn!(error = %e, "outbox pass failed");
            }
            let wait = shell_wait(&shell.machine, rt.now_ms());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {
                    shell.machine.handle_timeout(rt.now_ms());
                }
                changed = shutdown.changed(), if watching => {
                    match changed {
                        Ok(()) if *shutdown.borrow() => break,
                        Ok(()) => {}
                        Err(_) => watching = false,
                    }
                }
            }
        }
    })
}

fn claimed(row: &OutboxRow) -> Claimed {
    Claimed {
        id: row.id.clone(),
        attempt: u32::try_from(row.attempts.max(0) + 1).unwrap_or(u32::MAX),
    }
}

/// The outbox's shell around the [`Scheduler`]: the rows of the current pass, the one being
/// delivered, and what the attempts came to. All database and sender work happens here.
struct Shell {
    machine: Scheduler,
    /// Due rows of the current pass not claimed yet; `None` between passes (one fetch a pass).
    pass: Option<VecDeque<OutboxRow>>,
    running: Option<OutboxRow>,
    finished: usize,
    last: Option<Verdict>,
}

impl Shell {
    fn new(rt: &dyn OutboxPorts, first_poll_ms: i64) -> Self {
        Self {
            machine: Scheduler::new(schedule(rt.config()), first_poll_ms),
            pass: None,
            running: None,
            finished: 0,
            last: None,
        }
    }

    /// Carries out the machine's steps until it waits for time. A database error ends the pass.
    async fn drain(&mut self, rt: &dyn OutboxPorts) -> Result<(), StoreError> {
        while let Some(step) = self.machine.poll_output() {
            if let Err(e) = self.step(rt, step).await {
                self.machine.handle_store_error(rt.now_ms());
                self.pass = None;
                self.running = None;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn step(&mut self, rt: &dyn OutboxPorts, step: Step) -> Result<(), StoreError> {
        match step {
            Step::Claim { lease_ms } => {
                let now = rt.now_ms();
                self.running = self.claim(rt, now, lease_ms).await?;
                let job = self.running.as_ref().map(claimed);
                self.machine.handle_claimed(now, job);
            }
            Step::Run { id, .. } => {
                if let Some(row) = &self.running {
                    let outcome =
                        run_leased(&mut self.machine, &|| rt.now_ms(), act(rt, row)).await;
                    self.machine.handle_outcome(rt.now_ms(), &id, outcome);
                }
            }
            Step::Finish { id, verdict, .. } => {
                let kind = self.running.take().map(|r| r.kind).unwrap_or_default();
                record(rt, &id, &kind, &verdict).await?;
                self.finished += 1;
                self.last = Some(verdict);
            }
            Step::LeaseExpired { id } => {
                tracing::warn!(event = %id, lease_ms = LEASE_MS, "outbox delivery outlived its lease; another worker may deliver it too");
            }
        }
        Ok(())
    }

    /// Leases the next due row of this pass (fetching the pass's rows first), or ends the pass.
    async fn claim(
        &mut self,
        rt: &dyn OutboxPorts,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<OutboxRow>, StoreError> {
        let pass = match &mut self.pass {
            Some(pass) => pass,
            None => self
                .pass
                .insert(rt.store().outbox_due(now, BATCH).await?.into()),
        };
        while let Some(row) = pass.pop_front() {
            if rt.store().outbox_claim(&row.id, now, lease_ms).await? {
                return Ok(Some(row));
            }
        }
        self.pass = None;
        Ok(None)
    }
}

async fn record(
    rt: &dyn OutboxPorts,
    id: &str,
    kind: &str,
    verdict: &Verdict,
) -> Result<(), StoreError> {
    let now = rt.now_ms();
    match verdict {
        Verdict::Done { result } => rt.store().outbox_delivered(id, result, now).await,
        Verdict::Retry { error, at_ms } => {
            rt.store()
                .outbox_failed(id, error, Some(*at_ms), now)
                .await?;
            tracing::info!(event = %id, %kind, %error, retry_at_ms = at_ms, "outbox event will be retried");
            Ok(())
        }
        Verdict::GiveUp { error } => {
            rt.store().outbox_failed(id, error, None, now).await?;
            tracing::warn!(event = %id, %kind, %error, "outbox event given up (dead)");
            Ok(())
        }
    }
}

async fn act(rt: &dyn OutboxPorts, row: &OutboxRow) -> Result<String, Failure> {
    match row.kind.as_str() {
        KIND_APPOINTMENT_CREATED | KIND_WHATSAPP_SEND => {
            let mut payload: SendPayload = serde_json::from_str(&row.payload_json)
                .map_err(|e| Failure::Permanent(format!("bad payload: {e}")))?;
            match rt.sender().send(payload.message.clone()).await {
                Ok(receipt) => Ok(receipt.message_id),
                Err(SendError::Retryable {
                    code,
                    message,
                    retry_after_ms,
                }) => Err(Failure::Retryable {
                    error: format!("{code}: {message}"),
                    retry_after_ms,
                }),
                Err(SendError::OutsideWindow { message }) => match payload.template_fallback.take()
                {
                    // Switch the stored event to its template so the next attempt can succeed.
                    Some(template) => {
                        payload.message.body = template;
                        let json = serde_json::to_string(&payload)
                            .map_err(|e| Failure::Permanent(e.to_string()))?;
                        rt.store()
                            .outbox_set_payload(&row.id, &json)
                            .await
                            .map_err(|e| Failure::Retryable {
                                error: e.to_string(),
                                retry_after_ms: None,
                            })?;
                        Err(Failure::Retryable {
                            error: format!("outside 24h window, switching to template: {message}"),
                            retry_after_ms: Some(0),
                        })
                    }
                    None => Err(Failure::Permanent(format!("outside 24h window: {message}"))),
                },
                Err(SendError::Permanent { code, message }) => {
                    Err(Failure::Permanent(format!("{code}: {message}")))
                }
            }
        }
        KIND_CALL_ENDED => {
            let payload: CallEndedPayload = serde_json::from_str(&row.payload_json)
                .map_err(|e| Failure::Permanent(format!("bad payload: {e}")))?;
            let retry = |e: StoreError| Failure::Retryable {
                error: e.to_string(),
                retry_after_ms: None,
            };
            let summary = summarize(rt, &payload).await.map_err(retry)?;
            let now = rt.now_ms();
            rt.store()
                .put_summary(
                    &payload.conversation_id,
                    &payload.business_id,
                    &payload.channel,
                    &summary,
                    now,
                )
                .await
                .map_err(retry)?;
            if rt.config().send_call_summary
                && let (Some(to), Some(pnid)) = (&payload.customer_phone, &payload.phone_number_id)
            {
                let message = OutboundMessage {
                    phone_number_id: pnid.clone(),
                    to: to.trim_start_matches('+').to_string(),
                    body: OutboundBody::Text {
                        text: summary.clone(),
                    },
                    idempotency_key: format!("summary:{}", payload.conversation_id),
                };
                if let Err(e) = rt.sender().send(message).await {
                    return Err(match e {
                        SendError::Retryable { retry_after_ms, .. } => Failure::Retryable {
                            error: e.to_string(),
                            retry_after_ms,
                        },
                        other => Failure::Permanent(other.to_string()),
                    });
                }
            }
            Ok("summary stored".into())
        }
        other => Err(Failure::Permanent(format!("unknown event kind {other:?}"))),
    }
}

/// A deterministic summary from what the store knows: messages and appointments booked in the
/// conversation. (An LLM summary can replace this text later; the flow stays the same.)
async fn summarize(rt: &dyn OutboxPorts, p: &CallEndedPayload) -> Result<String, StoreError> {
    let messages = rt.store().messages(&p.conversation_id).await?;
    let appointments = rt.store().appointments_for_business(&p.business_id).await?;
    let booked: Vec<_> = appointments
        .iter()
        .filter(|a| a.conversation_id == p.conversation_id)
        .collect();
    let customer_turns = messages.iter().filter(|m| m.role == "user").count();
    let mut out = format!(
        "Conversation {} ({}): {} customer messages.",
        p.conversation_id, p.channel, customer_turns
    );
    let tz = rt
        .store()
        .business(&p.business_id)
        .await?
        .and_then(|b| b.policy().ok());
    for a in booked {
        let when = tz
            .as_ref()
            .map(|pol| {
                format!(
                    "{} {}",
                    pol.date_iso(a.start_ms),
                    pol.time_display(a.start_ms)
                )
            })
            .unwrap_or_else(|| a.start_ms.to_string());
        out.push_str(&format!(
            " Appointment {} {}: {} {}.",
            a.id,
            a.status,
            a.resource_id.as_deref().unwrap_or("-"),
            when
        ));
    }
    if let Some(last) = messages.iter().rev().find(|m| m.role == "user") {
        out.push_str(&format!(" Last customer message: \"{}\".", last.text));
    }
    Ok(out)
}
