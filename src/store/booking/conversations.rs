//! Conversation memory: the messages of each conversation (per thread and per customer),
//! the saved per-kind conversation state with its version, and the rolling summaries.

use super::super::{Columns, Store, StoreError, select};
use super::new_id;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ConversationMessage {
    pub business_id: String,
    pub customer_id: Option<String>,
    /// The customer's phone (E.164) when the channel knows it: how one customer's phone calls
    /// and WhatsApp chats are joined.
    pub customer_phone: Option<String>,
    pub channel: String,
    pub conversation_id: String,
    pub role: String,
    pub text: String,
    pub at_ms: i64,
}

impl Columns for ConversationMessage {
    const COLUMNS: &'static str = "business_id, customer_id, customer_phone, channel, \
         conversation_id, role, text, at_ms";
}

impl Store {
    pub async fn insert_message(&self, m: &ConversationMessage) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO conversation_messages (id, business_id, customer_id, customer_phone, \
             channel, conversation_id, role, text, at_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        )
        .bind(new_id("msg"))
        .bind(&m.business_id)
        .bind(&m.customer_id)
        .bind(&m.customer_phone)
        .bind(&m.channel)
        .bind(&m.conversation_id)
        .bind(&m.role)
        .bind(&m.text)
        .bind(m.at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn messages(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<ConversationMessage>, StoreError> {
        Ok(select::<ConversationMessage>(
            "FROM conversation_messages WHERE conversation_id = $1 \
             ORDER BY at_ms, id",
        )
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The newest `limit` messages of one customer (by phone) with one business on one channel,
    /// oldest first.
    pub async fn customer_messages(
        &self,
        business_id: &str,
        customer_phone: &str,
        channel: &str,
        limit: u32,
    ) -> Result<Vec<ConversationMessage>, StoreError> {
        let mut out: Vec<ConversationMessage> = select::<ConversationMessage>(
            "FROM conversation_messages \
             WHERE business_id = $1 AND customer_phone = $2 AND channel = $3 \
             ORDER BY at_ms DESC, id DESC LIMIT $4",
        )
        .bind(business_id)
        .bind(customer_phone)
        .bind(channel)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        out.reverse();
        Ok(out)
    }

    /// A conversation's saved state of one kind: `(version, state_json, updated_at_ms)`.
    pub async fn conversation_state(
        &self,
        conversation_id: &str,
        kind: &str,
    ) -> Result<Option<(i64, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT version, state_json, updated_at_ms FROM conversation_state \
             WHERE conversation_id = $1 AND kind = $2",
        )
        .bind(conversation_id)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Saves (inserts or replaces) a conversation's state of one kind.
    pub async fn put_conversation_state(
        &self,
        conversation_id: &str,
        kind: &str,
        version: i64,
        state_json: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO conversation_state (conversation_id, kind, version, state_json, updated_at_ms) \
             VALUES ($1,$2,$3,$4,$5) ON CONFLICT (conversation_id, kind) DO UPDATE SET \
             version = excluded.version, state_json = excluded.state_json, \
             updated_at_ms = excluded.updated_at_ms",
        )
        .bind(conversation_id)
        .bind(kind)
        .bind(version)
        .bind(state_json)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a conversation's state of one kind (`None`: every kind).
    pub async fn delete_conversation_state(
        &self,
        conversation_id: &str,
        kind: Option<&str>,
    ) -> Result<(), StoreError> {
        let query = match kind {
            Some(kind) => sqlx::query(
                "DELETE FROM conversation_state WHERE conversation_id = $1 AND kind = $2",
            )
            .bind(conversation_id)
            .bind(kind),
            None => sqlx::query("DELETE FROM conversation_state WHERE conversation_id = $1")
                .bind(conversation_id),
        };
        query.execute(&self.pool).await?;
        Ok(())
    }

    pub async fn put_summary(
        &self,
        conversation_id: &str,
        business_id: &str,
        channel: &str,
        summary: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO conversation_summaries (conversation_id, business_id, channel, summary, at_ms) \
             VALUES ($1,$2,$3,$4,$5) ON CONFLICT (conversation_id) DO UPDATE SET \
             summary = excluded.summary, at_ms = excluded.at_ms",
        )
        .bind(conversation_id)
        .bind(business_id)
        .bind(channel)
        .bind(summary)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn summary(&self, conversation_id: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT summary FROM conversation_summaries WHERE conversation_id = $1",
        )
        .bind(conversation_id)
        .fetch_optional(&self.pool)
        .await?)
    }
}
