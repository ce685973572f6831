//! Sending one reply part: an outbound row keyed by its idempotency key (pending → accepted or
//! failed), the provider's sender (Graph or Twilio, already retrying), and the template fallback
//! outside the 24-hour window. A part already accepted is never sent again.

use std::sync::atomic::Ordering;

use super::{BusinessInfo, PROVIDER_TWILIO, WhatsAppError, WhatsAppService};
use crate::providers::{OutboundBody, OutboundMessage, SendError};

impl WhatsAppService {
    /// Sends one reply part once: pending → accepted/failed. A part already accepted is skipped.
    pub(super) async fn send_part(
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
}
