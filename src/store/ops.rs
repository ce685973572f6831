//! Reads for the console's ops view: the turns of a time window (latency percentiles, the
//! time series) and the WhatsApp channel's health. Portable SQL (SQLite and PostgreSQL): the
//! percentiles are computed by the caller over the rows, so no backend-specific percentile
//! function is needed; the window read is bounded by a row limit (newest first).

use super::{Columns, Store, StoreError, TurnRow};

/// A turn in a window, with what the ops view groups it by.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WindowTurn {
    /// The call's `<Parameter>`s (the business is resolved from them); `{}` when the call's start
    /// was never stored.
    pub parameters_json: String,
    /// `stt/agent/tts` names (migration 0013); `None` for calls recorded before it.
    pub providers: Option<String>,
    #[sqlx(flatten)]
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
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {}, COALESCE(c.parameters_json, '{{}}') AS parameters_json, \
                    c.providers \
             FROM turns t LEFT JOIN calls c ON c.id = t.call_id \
             WHERE t.at_ms >= $1 ORDER BY t.at_ms DESC LIMIT $2",
            TurnRow::COLUMNS
        )))
        .bind(since_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
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
                let n: i64 = sqlx::query_scalar(sql).bind(biz).fetch_one(&pool).await?;
                Ok::<i64, StoreError>(n)
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
