//! A conversation with the offline booking agent, message by message, as a channel would drive
//! it: the history grows with each reply; the messages go to `agents` in turn (one agent = one
//! instance; several = instances sharing a database).
#![allow(dead_code)]

use std::collections::BTreeMap;

use kav::agent::offline::OfflineBookingAgent;
use kav::providers::{AgentRequest, CallContext, Channel, Message, Role};

pub const BUSINESS: &str = "biz_escape_tlv";

/// Returns the replies, one per message.
pub async fn converse(
    agents: &[OfflineBookingAgent],
    channel: Channel,
    conversation: &str,
    from: &str,
    language: &str,
    messages: &[&str],
) -> Vec<String> {
    let mut history = Vec::new();
    let mut replies = Vec::new();
    for (i, text) in messages.iter().enumerate() {
        history.push(Message {
            role: Role::User,
            text: text.to_string(),
            interrupted: false,
        });
        let mut parameters = BTreeMap::new();
        parameters.insert("From".to_string(), from.to_string());
        parameters.insert("business_id".to_string(), BUSINESS.to_string());
        let request = AgentRequest {
            channel,
            call: CallContext {
                call_sid: conversation.into(),
                stream_sid: if matches!(channel, Channel::Phone) {
                    "MZ1".into()
                } else {
                    String::new()
                },
                language: language.into(),
                parameters,
            },
            turn: i as u32 + 1,
            history: history.clone(),
            digits: false,
        };
        let reply = agents[i % agents.len()].turn(&request).await.unwrap();
        history.push(Message {
            role: Role::Assistant,
            text: reply.text.clone(),
            interrupted: false,
        });
        replies.push(reply.text);
    }
    replies
}
