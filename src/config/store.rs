//! `[store]` (the database) and `[retention]` (how long personal data is kept).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// sqlx URL: `sqlite://kav.db` (embedded default) or `postgres://…` for several instances.
    pub url: String,
    /// Rows queued for the writer before new ones are dropped and counted (never blocks audio).
    pub writer_queue: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://kav.db".into(),
            writer_queue: 4_096,
        }
    }
}

/// How long personal data is kept (issue 15). Days; 0 = kept for ever. A sweep deletes what is
/// older every `sweep_every_s` (`store::privacy::RetentionPlan`). Kav stores no call audio, so
/// there is no recordings setting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Call transcripts: `calls`, `turns`, `call_events`, conversation messages and summaries.
    pub transcripts_days: u32,
    /// Tool-call traces (`tool_traces`).
    pub tool_traces_days: u32,
    /// WhatsApp message texts: `whatsapp_messages` deleted; inbox payloads, sent bodies and
    /// finished outbox payloads redacted (the dedup keys and delivery states stay).
    pub whatsapp_bodies_days: u32,
    /// How often the sweep runs in `kav serve`; 0 = never.
    pub sweep_every_s: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            transcripts_days: 0,
            tool_traces_days: 0,
            whatsapp_bodies_days: 0,
            sweep_every_s: 3_600,
        }
    }
}
