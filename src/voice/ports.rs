//! The engine's ports: the messages the voice session exchanges with the recogniser, the agent
//! and the synthesiser. Plain data, owned by the engine; the async traits that carry them live in
//! `crate::providers`, and every provider and agent speaks these types.

use std::collections::BTreeMap;

/// Who is calling and how the stream was set up; handed to every provider when a call starts.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub call_sid: String,
    pub stream_sid: String,
    /// BCP-47 language of the call, e.g. `he-IL`.
    pub language: String,
    /// `<Parameter>`s from the TwiML, as delivered in `start.customParameters`.
    pub parameters: BTreeMap<String, String>,
}

// ---------------------------------------------------------------- speech to text

/// Audio format a recogniser wants; the session's audio graph produces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SttAudioFormat {
    /// 8 kHz mu-law exactly as Twilio sent it (Google STT takes this as-is).
    #[default]
    Mulaw8k,
    /// 16 kHz linear PCM (e.g. Whisper).
    Pcm16k,
}

// Inline audio on purpose: boxing would allocate once per 20 ms frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SttInput {
    /// One 20 ms frame of caller audio in the recogniser's format.
    Mulaw([u8; 160]),
    Pcm16k([i16; 320]),
    /// Our VAD decided the caller stopped talking: finalise what you have.
    UtteranceEnd,
    /// The audio since the last utterance end was noise, not speech: forget it.
    UtteranceDiscarded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SttEvent {
    Partial { text: String },
    Final { text: String },
}

// ---------------------------------------------------------------- agent

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub text: String,
    /// The assistant was cut off by the caller; `text` is only what the caller heard.
    pub interrupted: bool,
}

/// How much of a conversation is kept for the agent: the newest messages, at most
/// `max_messages` of them and `max_chars` characters of text in all (`[booking]
/// history_max_messages`, `history_max_chars`). The call session keeps no more than this, and the
/// agent hands no more than this to a model, so a long call or chat costs the same per turn as a
/// short one. What was booked is not lost with the dropped turns: the agent keeps it as state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCap {
    pub max_messages: usize,
    pub max_chars: usize,
}

impl HistoryCap {
    /// Index of the first message of `history` to keep. The newest message is always kept (the
    /// agent cuts its text if it alone is over `max_chars`); older ones while both limits allow.
    /// When anything is dropped the kept part starts at a user message, so the model never sees
    /// an answer without the question it answered.
    pub fn first_kept(&self, history: &[Message]) -> usize {
        let Some(newest) = history.len().checked_sub(1) else {
            return 0;
        };
        let mut first = newest;
        let mut chars = history[newest].text.chars().count();
        while first > 0 && history.len() - first < self.max_messages.max(1) {
            let older = history[first - 1].text.chars().count();
            if chars + older > self.max_chars {
                break;
            }
            chars += older;
            first -= 1;
        }
        if first > 0 {
            while first < newest && history[first].role != Role::User {
                first += 1;
            }
        }
        first
    }
}

/// Where a conversation happens. The agent picks its prompt, reply length and tools by channel.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    #[default]
    Phone,
    Whatsapp,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Phone => "phone",
            Channel::Whatsapp => "whatsapp",
        }
    }
}

/// One agent turn. Conventions for `call.parameters` that agents rely on:
/// - `From`: the customer's phone (E.164, `whatsapp:` prefix stripped), absent if unknown;
/// - `To`: the business number that was called or messaged;
/// - `phone_number_id`: WhatsApp Cloud API number id (WhatsApp only);
/// - `business_id`: set when the channel already resolved the business.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub channel: Channel,
    pub call: CallContext,
    pub turn: u32,
    /// Conversation so far, ending with the user's message for this turn.
    pub history: Vec<Message>,
    /// The user's message arrived as keypad digits rather than speech.
    pub digits: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// A piece of the spoken reply, in order.
    TextDelta(String),
    /// After the reply is spoken, collect keypad digits (e.g. a phone number).
    CollectDigits { max_digits: u8 },
    /// End the call after the reply is spoken.
    Hangup,
}

// ---------------------------------------------------------------- failures

/// What a provider failure means for whoever called the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Worth trying again, not before `retry_after` when the server said so.
    Retryable {
        retry_after: Option<std::time::Duration>,
    },
    /// Will fail the same way again (bad request, auth, wiring).
    Fatal,
    /// Ran out of time.
    Timeout,
}

impl FailureKind {
    /// The kind's name as traces and logs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Retryable { .. } => "retryable",
            FailureKind::Fatal => "fatal",
            FailureKind::Timeout => "timeout",
        }
    }
}

/// A failure of the recogniser, the agent or the synthesiser, with the kind the session and the
/// call driver act on (a retryable recogniser failure reconnects under the retry policy; a fatal
/// one stops the recogniser and the caller hears the fallback).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("{reason} (retryable)")]
    Retryable {
        reason: String,
        retry_after: Option<std::time::Duration>,
    },
    #[error("{reason} (fatal)")]
    Fatal { reason: String },
    #[error("{reason} (timed out)")]
    Timeout { reason: String },
}

impl ProviderError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        ProviderError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn fatal(reason: impl Into<String>) -> Self {
        ProviderError::Fatal {
            reason: reason.into(),
        }
    }

    pub fn timeout(reason: impl Into<String>) -> Self {
        ProviderError::Timeout {
            reason: reason.into(),
        }
    }

    /// `reason` with `kind`.
    pub fn of_kind(kind: FailureKind, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        match kind {
            FailureKind::Retryable { retry_after } => ProviderError::Retryable {
                reason,
                retry_after,
            },
            FailureKind::Fatal => ProviderError::Fatal { reason },
            FailureKind::Timeout => ProviderError::Timeout { reason },
        }
    }

    pub fn kind(&self) -> FailureKind {
        match self {
            ProviderError::Retryable { retry_after, .. } => FailureKind::Retryable {
                retry_after: *retry_after,
            },
            ProviderError::Fatal { .. } => FailureKind::Fatal,
            ProviderError::Timeout { .. } => FailureKind::Timeout,
        }
    }

    /// What failed, without the kind.
    pub fn reason(&self) -> &str {
        match self {
            ProviderError::Retryable { reason, .. }
            | ProviderError::Fatal { reason }
            | ProviderError::Timeout { reason } => reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(role: Role, text: &str) -> Message {
        Message {
            role,
            text: text.into(),
            interrupted: false,
        }
    }

    fn conversation(turns: usize) -> Vec<Message> {
        let mut history = vec![say(Role::Assistant, "Hello, how can I help?")];
        for i in 0..turns {
            history.push(say(Role::User, &format!("question {i}")));
            history.push(say(Role::Assistant, &format!("answer {i}")));
        }
        history.push(say(Role::User, "and the last one"));
        history
    }

    #[test]
    fn a_short_conversation_is_kept_whole() {
        let cap = HistoryCap {
            max_messages: 24,
            max_chars: 6_000,
        };
        assert_eq!(cap.first_kept(&conversation(3)), 0);
        assert_eq!(cap.first_kept(&[]), 0);
    }

    #[test]
    fn the_newest_messages_within_both_limits_are_kept_from_a_user_message() {
        let history = conversation(30);
        let five = HistoryCap {
            max_messages: 5,
            max_chars: 100_000,
        };
        let first = five.first_kept(&history);
        assert_eq!(history.len() - first, 5);
        assert_eq!(history[first].text, "question 28");
        // The four newest would start at an answer: the kept part starts at the next question.
        let four = HistoryCap {
            max_messages: 4,
            ..five
        };
        let first = four.first_kept(&history);
        assert_eq!(history.len() - first, 3);
        assert_eq!(history[first].text, "question 29");

        let by_chars = HistoryCap {
            max_messages: 100,
            max_chars: 40,
        };
        let first = by_chars.first_kept(&history);
        let kept: usize = history[first..]
            .iter()
            .map(|m| m.text.chars().count())
            .sum();
        assert!(kept <= 40, "{kept}");
        assert_eq!(history[first].role, Role::User);
        assert_eq!(history.last().unwrap().text, "and the last one");
    }

    #[test]
    fn an_oversized_newest_message_is_kept_alone() {
        let mut history = conversation(2);
        history.push(say(Role::Assistant, "ok"));
        history.push(say(Role::User, &"א".repeat(500)));
        let cap = HistoryCap {
            max_messages: 10,
            max_chars: 100,
        };
        assert_eq!(cap.first_kept(&history), history.len() - 1);
    }
}
