//! `[call]`: which providers and agent a call uses, and what it says when they fail.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CallConfig {
    /// Language of calls (BCP-47); Hebrew first.
    pub language: String,
    /// Speech recogniser: `auto` (local Whisper when built with the `whisper` feature and its
    /// models are present, else `keypad`), `google`, `whisper` (local, offline; cargo feature
    /// `whisper`), `keypad` (no recogniser: calls understand keypad input only) or `simulated`
    /// (scripted transcripts, for tests and load runs). A configured recogniser that cannot start
    /// is a start-up error.
    pub stt: String,
    /// Agent: `simulated`, `openai` (an OpenAI-compatible chat model, see `[llm]`), `offline`
    /// (deterministic booking dialog) or `booking` (the LLM booking agent over the `[llm]` chat
    /// model when one is configured, else the offline one). An LLM that is configured but cannot
    /// start is a start-up error.
    pub agent: String,
    /// Speech synthesiser: `espeak` (real offline speech), `google`, or `simulated` (tones).
    /// A configured synthesiser that cannot start is a start-up error.
    pub tts: String,
    /// Spoken when the call connects; empty for none.
    pub greeting: String,
    /// Spoken when a provider fails mid-turn, so the caller is never left in silence.
    pub fallback_reply: String,
    /// Every this long, each provider's `warm()` runs again so pooled connections and caches stay
    /// warm between calls (Google and OpenAI close idle connections after minutes). 0 disables.
    pub keep_warm_ms: u64,
    /// Open the call's STT stream and LLM connection when the TwiML webhook arrives (phone still
    /// ringing), so the first turn pays no connection cost. Off only to measure what it saves.
    pub preconnect: bool,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            language: "he-IL".into(),
            stt: "auto".into(),
            agent: "booking".into(),
            tts: "espeak".into(),
            greeting: String::new(),
            fallback_reply: "Sorry, I did not catch that. Could you say it again?".into(),
            keep_warm_ms: 450_000,
            preconnect: true,
        }
    }
}
