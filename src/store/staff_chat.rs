//! The staff assistant's tables (migration 0016): the console's staff chat, per business, and
//! each business's own staff-assistant prompt. Only the console's staff panel reads or writes
//! them; no customer channel does.

use super::{Store, StoreError};

/// One message of a business's staff chat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct StaffChatMessage {
    pub business_id: String,
    /// Who typed it (`user`), or who the reply was for.
    pub account_email: String,
    /// `user`, `assistant` or `tool`.
    pub role: String,
    /// The message; for `tool`, the result JSON.
    pub text: String,
    pub tool_name: Option<String>,
    pub arguments_json: Option<String>,
    pub call_id: Option<String>,
    /// `llm` or `offline` (assistant rows).
    pub mode: Option<String>,
    pub at_ms: i64,
}

/// A business's own staff-assistant prompt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct StaffPromptRow {
    pub prompt: String,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

impl Store {
    /// Appends one turn's messages (in order) to a business's staff chat, in one transaction.
    pub async fn append_staff_chat(&self, messages: &[StaffChatMessage]) -> Result<(), StoreError> {
        let Some(first) = messages.first() else {
            return Ok(());
        };
        let mut tx = self.begin_write().await?;
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(seq) AS seq FROM staff_chat_messages WHERE business_id = $1",
        )
        .bind(&first.business_id)
        .fetch_one(&mut *tx)
        .await?;
        let mut seq = last.unwrap_or(0);
        for m in messages {
            seq += 1;
            sqlx::query(
                "INSERT INTO staff_chat_messages (id, business_id, seq, account_email, role, text, \
                 tool_name, arguments_json, call_id, mode, at_ms) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
            )
            .bind(super::booking::new_id("smsg"))
            .bind(&m.business_id)
            .bind(seq)
            .bind(&m.account_email)
            .bind(&m.role)
            .bind(&m.text)
            .bind(&m.tool_name)
            .bind(&m.arguments_json)
            .bind(&m.call_id)
            .bind(&m.mode)
            .bind(m.at_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The last `limit` messages of one account's staff chat with a business, oldest first.
    pub async fn staff_chat(
        &self,
        business_id: &str,
        account_email: &str,
        limit: usize,
    ) -> Result<Vec<StaffChatMessage>, StoreError> {
        let mut out: Vec<StaffChatMessage> = sqlx::query_as(
            "SELECT business_id, account_email, role, text, tool_name, arguments_json, call_id, \
             mode, at_ms FROM staff_chat_messages WHERE business_id = $1 AND account_email = $2 \
             ORDER BY seq DESC LIMIT $3",
        )
        .bind(business_id)
        .bind(account_email)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        out.reverse();
        Ok(out)
    }

    /// A business's own staff-assistant prompt, if it set one.
    pub async fn staff_prompt(
        &self,
        business_id: &str,
    ) -> Result<Option<StaffPromptRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT prompt, updated_at_ms, updated_by FROM staff_agent_prompts WHERE business_id = $1",
        )
        .bind(business_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Sets (or, with an empty prompt, removes) a business's staff-assistant prompt.
    pub async fn set_staff_prompt(
        &self,
        business_id: &str,
        prompt: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if prompt.trim().is_empty() {
            sqlx::query("DELETE FROM staff_agent_prompts WHERE business_id = $1")
                .bind(business_id)
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO staff_agent_prompts (business_id, prompt, updated_at_ms, updated_by) \
             VALUES ($1,$2,$3,$4) ON CONFLICT (business_id) DO UPDATE SET \
             prompt = excluded.prompt, updated_at_ms = excluded.updated_at_ms, \
             updated_by = excluded.updated_by",
        )
        .bind(business_id)
        .bind(prompt)
        .bind(now_ms)
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
