//! Flows over the durable outbox. Events are written in the same transaction as the data that
//! caused them (see `Store::create_appointment`); this module delivers them at least once:
//!
//! * `appointment.created` / `whatsapp.send` → one WhatsApp message (`payload.message`);
//! * `call.ended` → a conversation summary stored with the call, optionally sent on WhatsApp.
//!
//! Delivery leases the row first (`outbox_claim`), so the immediate attempt made by a tool and the
//! background worker never send the same event at the same time. A retryable failure schedules
//! the next attempt with exponential backoff (or the provider's retry-after, if longer); a
//! permanent failure or too many attempts marks the event `dead`. The idempotency key goes to the
//! sender with every attempt, so a send that succeeded but whose bookkeeping failed is one message
//! to a provider that de-duplicates (WhatsApp Cloud API does not; see the report).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::BookingConfig;
use crate::providers::{OutboundBody, OutboundMessage, SendError, WhatsAppSender};
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

/// The one retry policy ([`crate::retry::Backoff`]) as a function of the attempts so far.
fn backoff_ms(rt: &dyn OutboxPorts, attempts_before: i64, retry_after_ms: Option<u64>) -> i64 {
    let policy = crate::retry::Backoff::new(
        std::time::Duration::from_millis(rt.config().outbox_backoff_base_ms),
        std::time::Duration::from_millis(rt.config().outbox_backoff_max_ms),
    );
    let retry = u32::try_from(attempts_before.max(0)).unwrap_or(u32::MAX);
    policy
        .delay(retry, retry_after_ms.map(std::time::Duration::from_millis))
        .as_millis() as i64
}

/// Delivers the event with this idempotency key now (one attempt), if it is pending.
pub async fn deliver_key_now(rt: &dyn OutboxPorts, key: &str) -> Result<Delivery, StoreError> {
    match rt.store().outbox_by_key(key).await? {
        Some(row) if row.status == OutboxStatus::Pending => deliver(rt, &row).await,
        Some(row) if row.status == OutboxStatus::Delivered => Ok(Delivery::Delivered),
        _ => Ok(Delivery::NotClaimed),
    }
}

/// One delivery attempt of `row`: lease, act, record the outcome.
pub async fn deliver(rt: &dyn OutboxPorts, row: &OutboxRow) -> Result<Delivery, StoreError> {
    let now = rt.now_ms();
    if !rt.store().outbox_claim(&row.id, now, LEASE_MS).await? {
        return Ok(Delivery::NotClaimed);
    }
    let outcome = act(rt, row).await;
    let now = rt.now_ms();
    match outcome {
        Ok(result) => {
            rt.store().outbox_delivered(&row.id, &result, now).await?;
            Ok(Delivery::Delivered)
        }
        Err(Failure::Retry {
            error,
            retry_after_ms,
        }) => {
            if row.attempts + 1 >= rt.config().outbox_max_attempts as i64 {
                rt.store().outbox_failed(&row.id, &error, None, now).await?;
                tracing::warn!(event = %row.id, kind = %row.kind, %error, "outbox event given up");
                return Ok(Delivery::Dead { error });
            }
            let at = now + backoff_ms(rt, row.attempts, retry_after_ms);
            rt.store()
                .outbox_failed(&row.id, &error, Some(at), now)
                .await?;
            tracing::info!(event = %row.id, kind = %row.kind, %error, retry_at_ms = at, "outbox event will be retried");
            Ok(Delivery::Retrying { error })
        }
        Err(Failure::Permanent(error)) => {
            rt.store().outbox_failed(&row.id, &error, None, now).await?;
            tracing::warn!(event = %row.id, kind = %row.kind, %error, "outbox event failed permanently");
            Ok(Delivery::Dead { error })
        }
    }
}

enum Failure {
    Retry {
        error: String,
        retry_after_ms: Option<u64>,
    },
    Permanent(String),
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
                }) => Err(Failure::Retry {
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
                            .map_err(|e| Failure::Retry {
                                error: e.to_string(),
                                retry_after_ms: None,
                            })?;
                        Err(Failure::Retry {
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
            let retry = |e: StoreError| Failure::Retry {
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
                        SendError::Retryable { retry_after_ms, .. } => Failure::Retry {
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

/// One pass over due events; returns how many were attempted.
pub async fn run_once(rt: &dyn OutboxPorts) -> Result<usize, StoreError> {
    let due = rt.store().outbox_due(rt.now_ms(), 64).await?;
    let mut attempted = 0;
    for row in &due {
        if deliver(rt, row).await? != Delivery::NotClaimed {
            attempted += 1;
        }
    }
    Ok(attempted)
}

/// The background worker: a pass every `outbox_poll_ms` until `shutdown` turns true. If the
/// sender side is dropped without saying stop, the worker runs for the life of the process.
pub fn spawn_worker(
    rt: Arc<dyn OutboxPorts>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick =
            tokio::time::interval(Duration::from_millis(rt.config().outbox_poll_ms.max(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watching = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = run_once(&*rt).await {
                        tracing::warn!(error = %e, "outbox pass failed");
                    }
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
