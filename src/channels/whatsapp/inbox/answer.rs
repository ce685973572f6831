//! Answering one inbound message: the conversation row, a stored reply reused or a new one from
//! the agent (a voice note downloaded, checked against its sha256 and transcribed first), then
//! formatted and split for WhatsApp and sent part by part, or collected for an inline TwiML
//! answer. Idempotent per message id: a stored reply is reused and accepted parts not resent.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{BusinessInfo, PROVIDER_META, PROVIDER_TWILIO, WhatsAppError, WhatsAppService};
use crate::channels::whatsapp::model::{
    InboundEvent, InboundMessage, MediaDigest, MessageContent, check_media_sha256,
    markdown_to_whatsapp, split_message,
};
use crate::channels::whatsapp::voice_note;
use crate::providers::CallContext;
use crate::store::whatsapp::{ConversationKey, InboxOutcome, conversation_id};

impl WhatsAppService {
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
                self.record_reply(
                    &message.message_id,
                    &conversation,
                    &business.id,
                    &customer,
                    &reply,
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
