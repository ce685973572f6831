//! One agent turn for WhatsApp: the customer's text stored, the history built (the newest
//! messages of the chat merged in time order with their recent phone-call turns, marked with
//! [`PHONE_CALL_PREFIX`]), the agent run with a timeout and its text deltas joined into the
//! reply; also the operator's test endpoint, which runs a turn without WhatsApp.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{BusinessInfo, WhatsAppError, WhatsAppService};
use crate::channels::whatsapp::model::{InboundMessage, MessageContent, markdown_to_whatsapp};
use crate::providers::{Agent, AgentEvent, AgentRequest, CallContext, Channel, Message, Role};
use crate::store::whatsapp::{ConversationKey, StoredMessage};

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
    pub(super) async fn agent_turn(
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
        self.record_reply(&message_id, &conversation, &business.id, &customer, &reply)
            .await?;
        Ok((conversation, markdown_to_whatsapp(&reply)))
    }

    /// Stores our reply to inbound message `message_id` in the conversation (`out:<id>`).
    pub(super) async fn record_reply(
        &self,
        message_id: &str,
        conversation: &str,
        business_id: &str,
        customer: &str,
        reply: &str,
    ) -> Result<(), crate::store::StoreError> {
        self.store
            .whatsapp_append_message(
                &format!("out:{message_id}"),
                conversation,
                business_id,
                customer,
                "assistant",
                reply,
                self.now_ms(),
                None,
                Some(message_id),
            )
            .await?;
        Ok(())
    }
}

static TEST_COUNTER: AtomicU64 = AtomicU64::new(0);

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
