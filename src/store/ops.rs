//! Reads for the console's ops view: the turns of a time window (latency percentiles, the
//! time series) and the WhatsApp channel's health. Portable SQL (SQLite and PostgreSQL): the
//! percentiles are computed by the caller over the rows, so no backend-specific percentile
//! function is needed; the window read is bounded by a row limit (newest first).

use sqlx::Row;

use super::{Store, StoreError, TurnRow, turn_row};

/// A turn in a window, with what the ops view groups it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowTurn {
    /// The call's `<Parameter>`s (the business is resolved from them); `{}` when the call's start
    /// was never stored.
    pub parameters_json: String,
    /// `stt/agent/tts` names (migration 0013); `None` for calls recorded before it.
    pub providers: Option<String>,
    pub turn: TurnRow,
}

/// The WhatsApp channel's backlog and failures (one business, or all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WhatsAppHealth {
    /// Inbound messages waiting for or in processing.
    pub inbox_depth: i64,
    /// Inbound messages given up on.
    pub inbox_failed: i64,
    /// Outbound messages the provider reported failed.
    pub send_failed: i64,
    /// Booking confirmations (outbox) that died after their retries.
    pub outbox_dead: i64,
}

impl Store {
    /// Turns recorded at or after `since_ms` (any business), newest first, at most `limit` rows.
    pub async fn turns_since(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<WindowTurn>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.call_id, t.turn, t.input_kind, t.user_text, t.bot_text, t.interrupted, \
                    t.stt_first_partial_ms, t.stt_final_ms, t.ai_latency_ms, t.tts_ready_ms, \
                    t.total_ms, t.ai_total_ms, t.tts_total_ms, t.at_ms, \
                    COALESCE(c.parameters_json, '{}') AS parameters_json, c.providers \
             FROM turns t LEFT JOIN calls c ON c.id = t.call_id \
             WHERE t.at_ms >= $1 ORDER BY t.at_ms DESC LIMIT $2",
        )
        .bind(since_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WindowTurn {
                    parameters_json: r.try_get("parameters_json")?,
                    providers: r.try_get("providers")?,
                    turn: turn_row(r)?,
                })
            })
            .collect()
    }

    /// Backlog and failure counts of the WhatsApp channel, for one business or (`None`) all.
    pub async fn whatsapp_health(
        &self,
        business_id: Option<&str>,
    ) -> Result<WhatsAppHealth, StoreError> {
        // `$1 IS NULL` would need a typed NULL on PostgreSQL; an empty id means "every business".
        let biz = business_id.unwrap_or("");
        let count = |sql: &'static str| {
            let pool = self.pool.clone();
            async move {
                let row = sqlx::query(sql).bind(biz).fetch_one(&pool).await?;
                Ok::<i64, StoreError>(row.try_get("n")?)
            }
        };
        Ok(WhatsAppHealth {
            inbox_depth: count(
                "SELECT COUNT(*) AS n FROM whatsapp_inbox \
                 WHERE state IN ('queued', 'working') AND ($1 = '' OR business_id = $1)",
            )
            .await?,
            inbox_failed: count(
                "SELECT COUNT(*) AS n FROM whatsapp_inbox \
                 WHERE state = 'failed' AND ($1 = '' OR business_id = $1)",
            )
            .await?,
            send_failed: count(
                "SELECT COUNT(*) AS n FROM whatsapp_outbound \
                 WHERE status = 'failed' AND ($1 = '' OR business_id = $1)",
            )
            .await?,
            outbox_dead: count(
                "SELECT COUNT(*) AS n FROM outbox \
                 WHERE status = 'dead' AND ($1 = '' OR business_id = $1)",
            )
            .await?,
        })
    }
}
