//! The conversation as the model sees it: what the engine's history says, plus what the text alone
//! would hide (the caller cut the assistant off; the user typed on the keypad).

use crate::providers::{AgentRequest, ChatMessage, Message, Role};

/// The history of `request` as chat messages, oldest first.
pub fn chat_messages(request: &AgentRequest) -> impl Iterator<Item = ChatMessage> + '_ {
    let last = request.history.len().saturating_sub(1);
    request
        .history
        .iter()
        .enumerate()
        .map(move |(i, m)| chat_message(m, request.digits && i == last))
}

fn chat_message(message: &Message, typed_digits: bool) -> ChatMessage {
    match message.role {
        Role::User if typed_digits => {
            ChatMessage::User(format!("[typed on the keypad] {}", message.text))
        }
        Role::User => ChatMessage::User(message.text.clone()),
        // The model must know the caller cut it off, or it will assume everything it said landed.
        Role::Assistant if message.interrupted => ChatMessage::Assistant {
            text: format!("[interrupted; the caller heard only: \"{}\"]", message.text),
            tool_calls: Vec::new(),
        },
        Role::Assistant => ChatMessage::Assistant {
            text: message.text.clone(),
            tool_calls: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{CallContext, Channel};

    fn message(role: Role, text: &str, interrupted: bool) -> Message {
        Message {
            role,
            text: text.into(),
            interrupted,
        }
    }

    #[test]
    fn interruptions_and_keypad_input_are_spelled_out() {
        let request = AgentRequest {
            channel: Channel::Phone,
            call: CallContext::default(),
            turn: 2,
            history: vec![
                message(Role::User, "5", false),
                message(Role::Assistant, "We open at", true),
                message(Role::User, "0501234567", false),
            ],
            digits: true,
        };
        let messages: Vec<ChatMessage> = chat_messages(&request).collect();
        assert_eq!(
            messages,
            vec![
                // Only the last user message is the keypad entry.
                ChatMessage::User("5".into()),
                ChatMessage::Assistant {
                    text: "[interrupted; the caller heard only: \"We open at\"]".into(),
                    tool_calls: vec![]
                },
                ChatMessage::User("[typed on the keypad] 0501234567".into()),
            ]
        );
    }
}
