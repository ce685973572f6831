//! The conversation as the model sees it: the newest part of what the engine's history says,
//! within the cap (`[booking] history_max_messages`, `history_max_chars`), plus what the text
//! alone would hide (the caller cut the assistant off; the user typed on the keypad).

use crate::config::BookingConfig;
use crate::providers::{AgentRequest, ChatMessage, Message, Role};
use crate::voice::ports::HistoryCap;

impl BookingConfig {
    /// The history cap both the call session and the agent apply.
    pub fn history_cap(&self) -> HistoryCap {
        HistoryCap {
            max_messages: self.history_max_messages as usize,
            max_chars: self.history_max_chars as usize,
        }
    }
}

/// The newest part of the history of `request` within `cap`, as chat messages, oldest first.
/// A newest message longer than the cap alone is cut to it.
pub fn chat_messages(
    request: &AgentRequest,
    cap: HistoryCap,
) -> impl Iterator<Item = ChatMessage> + '_ {
    let last = request.history.len().saturating_sub(1);
    let first = cap.first_kept(&request.history);
    request.history[first..]
        .iter()
        .enumerate()
        .map(move |(i, m)| {
            let newest = first + i == last;
            let message = chat_message(m, request.digits && newest);
            if newest {
                cut(message, cap.max_chars)
            } else {
                message
            }
        })
}

/// Cuts a message's text to `max_chars` characters (an ellipsis marks the cut).
fn cut(message: ChatMessage, max_chars: usize) -> ChatMessage {
    let shorten = |text: String| match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    };
    match message {
        ChatMessage::User(text) => ChatMessage::User(shorten(text)),
        ChatMessage::Assistant { text, tool_calls } => ChatMessage::Assistant {
            text: shorten(text),
            tool_calls,
        },
        other => other,
    }
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
        let messages: Vec<ChatMessage> =
            chat_messages(&request, BookingConfig::default().history_cap()).collect();
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
