//! Accepting verified webhooks: route each event to its business, store it in the durable inbox
//! (deduplicated on its key) and wake a worker. Nothing is answered here; an event is stored
//! before the webhook is acknowledged, and an unknown number is acknowledged but not stored.

use std::sync::atomic::Ordering;

use super::{
    AcceptReport, BusinessInfo, PROVIDER_META, PROVIDER_TWILIO, WhatsAppError, WhatsAppService,
};
use crate::channels::whatsapp::model::{InboundEvent, InboundMessage, StatusUpdate};
use crate::store::whatsapp::conversation_id;

impl WhatsAppService {
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
}
