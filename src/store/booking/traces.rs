//! Tool traces: one row per agent tool call (arguments, outcome, latency), read back in
//! order per conversation for the console and the tests.

use super::super::value::Flag;
use super::super::{Columns, Store, StoreError, select};
use super::new_id;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ToolTraceRow {
    pub business_id: String,
    pub conversation_id: String,
    pub channel: String,
    pub turn: i64,
    pub tool: String,
    pub args_json: String,
    #[sqlx(try_from = "Flag")]
    pub ok: bool,
    pub error: Option<String>,
    pub reason: Option<String>,
    pub latency_ms: i64,
    pub at_ms: i64,
}

impl Columns for ToolTraceRow {
    const COLUMNS: &'static str = "business_id, conversation_id, channel, turn, tool, args_json, \
         ok, error, reason, latency_ms, at_ms";
}

impl Store {
    pub async fn insert_tool_trace(&self, t: &ToolTraceRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tool_traces (id, business_id, conversation_id, channel, turn, tool, \
             args_json, ok, error, reason, latency_ms, at_ms) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
        )
        .bind(new_id("trace"))
        .bind(&t.business_id)
        .bind(&t.conversation_id)
        .bind(&t.channel)
        .bind(t.turn)
        .bind(&t.tool)
        .bind(&t.args_json)
        .bind(t.ok as i64)
        .bind(&t.error)
        .bind(&t.reason)
        .bind(t.latency_ms)
        .bind(t.at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Tool traces of one conversation (call sid or WhatsApp thread), in order.
    pub async fn tool_traces(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<ToolTraceRow>, StoreError> {
        Ok(select::<ToolTraceRow>(
            "FROM tool_traces WHERE conversation_id = $1 \
             ORDER BY at_ms, id",
        )
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
