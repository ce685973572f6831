//! WhatsApp tables (migration 0003): the durable inbound queue, conversations and their history,
//! outbound messages with delivery status. Same portable SQL for SQLite and PostgreSQL.
//!
//! Exactly-once: the inbox row id is the event's dedup key and is inserted with
//! `ON CONFLICT DO NOTHING`, so 50 deliveries of one webhook are one row. A worker claims a row
//! with one atomic `UPDATE … RETURNING` (a lease: a row claimed by a process that died is claimed
//! again after `lease_ms`). Replies are recorded with `reply_to` unique and outbound parts with an
//! idempotency-key id, so reprocessing after a crash does not ask the agent twice nor resend what
//! was already accepted by the provider.

use super::{Columns, Store, StoreError, select};

/// Delivery state of one of our outbound messages, ordered by progress.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Recorded before the send; not yet accepted by the provider (never in a webhook).
    Pending,
    /// Accepted by our sender, no webhook yet.
    Accepted,
    Sent,
    Delivered,
    Read,
    /// Voice message played (implies read).
    Played,
    Failed,
}

impl DeliveryStatus {
    /// A status as a webhook reports it (`pending` is ours alone, so it is not one).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "accepted" => Self::Accepted,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "played" => Self::Played,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Played => "played",
            Self::Failed => "failed",
        }
    }

    /// Progress rank: statuses arrive in any order and a later webhook must never move a message
    /// back. `failed` outranks `sent`/`delivered` (delivery stopped) but not `read`/`played`
    /// (the customer saw it; a late failure cannot undo that).
    pub fn rank(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Accepted => 1,
            Self::Sent => 2,
            Self::Delivered => 3,
            Self::Failed => 4,
            Self::Read => 5,
            Self::Played => 6,
        }
    }

    /// The status a message ends in when `incoming` arrives while it is `self`.
    pub fn merge(self, incoming: DeliveryStatus) -> DeliveryStatus {
        if incoming.rank() > self.rank() {
            incoming
        } else {
            self
        }
    }
}

super::value::text_column!(
    DeliveryStatus,
    "a WhatsApp delivery status",
    [
        DeliveryStatus::Pending,
        DeliveryStatus::Accepted,
        DeliveryStatus::Sent,
        DeliveryStatus::Delivered,
        DeliveryStatus::Read,
        DeliveryStatus::Played,
        DeliveryStatus::Failed,
    ]
);

/// One claimed inbox row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InboxItem {
    pub id: String,
    pub provider: String,
    pub business_id: String,
    pub conversation_id: String,
    pub payload_json: String,
    pub attempts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ConversationSummary {
    pub id: String,
    pub business_id: String,
    pub customer_key: String,
    pub customer_phone: Option<String>,
    pub customer_user_id: Option<String>,
    pub profile_name: Option<String>,
    pub channel: String,
    #[sqlx(rename = "n")]
    pub message_count: i64,
    #[sqlx(rename = "last_text")]
    pub last_message: Option<String>,
    pub last_role: Option<String>,
    pub last_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct StoredMessage {
    pub role: String,
    pub text: String,
    pub at_ms: i64,
}

/// Of `whatsapp_messages`.
impl Columns for StoredMessage {
    const COLUMNS: &'static str = "role, text, at_ms";
}

/// A message of a WhatsApp thread as the console shows it: `reply_to` ties our replies to their
/// outbound rows (`<reply_to>:<part>`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ThreadMessage {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub message: StoredMessage,
    pub reply_to: Option<String>,
}

impl Columns for OutboundRow {
    const COLUMNS: &'static str = "id, conversation_id, recipient, body_json, provider_message_id, \
         status, error_code, error_detail";
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct OutboundRow {
    pub id: String,
    pub conversation_id: String,
    pub recipient: String,
    pub body_json: String,
    pub provider_message_id: Option<String>,
    pub status: DeliveryStatus,
    pub error_code: Option<i64>,
    pub error_detail: Option<String>,
}

/// Who a conversation is with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationKey<'a> {
    pub business_id: &'a str,
    pub customer_key: &'a str,
    pub customer_phone: Option<&'a str>,
    pub customer_user_id: Option<&'a str>,
    pub profile_name: Option<&'a str>,
    pub channel: &'a str,
}

/// Deterministic conversation id: the same customer of the same business is one conversation.
pub fn conversation_id(business_id: &str, customer_key: &str) -> String {
    let hex = crate::hash::sha256_hex(format!("{business_id}\n{customer_key}").as_bytes());
    format!("wa_{}", &hex[..24])
}

impl Store {
    /// Queues an inbound event unless one with the same id was ever queued. Returns whether it
    /// was new. One statement, so the dedup and the enqueue are one atomic step.
    pub async fn whatsapp_enqueue(
        &self,
        id: &str,
        provider: &str,
        business_id: &str,
        conversation_id: &str,
        payload_json: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let row = (id, provider, business_id, conversation_id, payload_json);
        self.whatsapp_insert(row, now_ms, false).await
    }

    /// Like [`Store::whatsapp_enqueue`], but the new row is already claimed by the caller (who
    /// processes it inline, e.g. to answer with TwiML). If the caller dies, the lease expires and
    /// a worker takes over.
    pub async fn whatsapp_enqueue_claimed(
        &self,
        id: &str,
        provider: &str,
        business_id: &str,
        conversation_id: &str,
        payload_json: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let row = (id, provider, business_id, conversation_id, payload_json);
        self.whatsapp_insert(row, now_ms, true).await
    }

    async fn whatsapp_insert(
        &self,
        (id, provider, business_id, conversation_id, payload_json): (&str, &str, &str, &str, &str),
        now_ms: i64,
        claimed: bool,
    ) -> Result<bool, StoreError> {
        // A claimed row starts as one attempt in progress, leased from now.
        let done = sqlx::query(
            "INSERT INTO whatsapp_inbox (id, provider, business_id, conversation_id, payload_json, \
                 state, attempts, received_at_ms, claimed_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $7, $8, $6, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(provider)
        .bind(business_id)
        .bind(conversation_id)
        .bind(payload_json)
        .bind(now_ms)
        .bind(if claimed { "working" } else { "queued" })
        .bind(i64::from(claimed))
        .bind(claimed.then_some(now_ms))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims the oldest runnable row: queued, or working with an expired lease (its worker
    /// died). Skips conversations another worker is busy with, so one customer's messages are
    /// answered in order.
    pub async fn whatsapp_claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        max_attempts: i64,
    ) -> Result<Option<InboxItem>, StoreError> {
        let expired = now_ms - lease_ms;
        Ok(sqlx::query_as(
            "UPDATE whatsapp_inbox SET state = 'working', claimed_at_ms = $1, attempts = attempts + 1 \
             WHERE id = ( \
                 SELECT i.id FROM whatsapp_inbox i \
                 WHERE ((i.state = 'queued' AND (i.not_before_ms IS NULL OR i.not_before_ms <= $1)) \
                        OR (i.state = 'working' AND i.claimed_at_ms < $2)) \
                   AND i.attempts < $3 \
                   AND NOT EXISTS (SELECT 1 FROM whatsapp_inbox w \
                       WHERE w.conversation_id = i.conversation_id AND w.id <> i.id \
                         AND ((w.state = 'working' AND w.claimed_at_ms >= $2) \
                              OR (w.state = 'queued' AND w.received_at_ms < i.received_at_ms \
                                  AND w.not_before_ms > $1))) \
                 ORDER BY i.received_at_ms, i.id LIMIT 1) \
               AND ((state = 'queued' AND (not_before_ms IS NULL OR not_before_ms <= $1)) \
                    OR (state = 'working' AND claimed_at_ms < $2)) \
             RETURNING id, provider, business_id, conversation_id, payload_json, attempts",
        )
        .bind(now_ms)
        .bind(expired)
        .bind(max_attempts)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Marks a claimed row finished: `done`, or `failed` with the reason (kept for operators).
    /// A retryable failure goes back to `queued`, not to be claimed before `not_before_ms`
    /// (later messages of the same conversation wait behind it, to keep the order).
    pub async fn whatsapp_finish(
        &self,
        id: &str,
        outcome: InboxOutcome<'_>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (state, error, not_before) = match outcome {
            InboxOutcome::Done => ("done", None, None),
            InboxOutcome::Failed(e) => ("failed", Some(e), None),
            InboxOutcome::Retry {
                error,
                not_before_ms,
            } => ("queued", Some(error), Some(not_before_ms)),
        };
        sqlx::query(
            "UPDATE whatsapp_inbox SET state = $1, done_at_ms = $2, error = $3, not_before_ms = $4 \
             WHERE id = $5",
        )
        .bind(state)
        .bind(now_ms)
        .bind(error)
        .bind(not_before)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Inbox rows by state (operators, tests).
    pub async fn whatsapp_inbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT state, COUNT(*) AS n FROM whatsapp_inbox GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Creates the conversation if new, bumps `last_at_ms`; returns its id.
    pub async fn whatsapp_touch_conversation(
        &self,
        key: &ConversationKey<'_>,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        let id = conversation_id(key.business_id, key.customer_key);
        sqlx::query(
            "INSERT INTO whatsapp_conversations (id, business_id, customer_key, customer_phone, \
                 customer_user_id, profile_name, channel, created_at_ms, last_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (id) DO UPDATE SET last_at_ms = $8",
        )
        .bind(&id)
        .bind(key.business_id)
        .bind(key.customer_key)
        .bind(key.customer_phone)
        .bind(key.customer_user_id)
        .bind(key.profile_name)
        .bind(key.channel)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Appends a message. `id` is unique per logical message; a repeat is ignored. Returns
    /// whether it was new. `at_ms` is raised past the conversation's last message if needed.
    #[allow(clippy::too_many_arguments)]
    pub async fn whatsapp_append_message(
        &self,
        id: &str,
        conversation_id: &str,
        business_id: &str,
        customer_key: &str,
        role: &str,
        text: &str,
        at_ms: i64,
        provider_message_id: Option<&str>,
        reply_to: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            // at_ms is kept strictly increasing per conversation, so history order is the
            // order messages were written even within one millisecond.
            "INSERT INTO whatsapp_messages (id, conversation_id, business_id, customer_key, role, \
                 text, at_ms, provider_message_id, reply_to) \
             SELECT $1, $2, $3, $4, $5, $6, \
                    CASE WHEN COALESCE(MAX(m.at_ms), 0) >= $7 THEN MAX(m.at_ms) + 1 ELSE $7 END, \
                    $8, $9 \
             FROM whatsapp_messages m WHERE m.conversation_id = $2 \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(conversation_id)
        .bind(business_id)
        .bind(customer_key)
        .bind(role)
        .bind(text)
        .bind(at_ms)
        .bind(provider_message_id)
        .bind(reply_to)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The stored reply to inbound message `reply_to`, if one was produced already.
    pub async fn whatsapp_reply_for(&self, reply_to: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT text FROM whatsapp_messages WHERE reply_to = $1")
                .bind(reply_to)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The last `limit` messages of a conversation, oldest first.
    pub async fn whatsapp_history(
        &self,
        conversation_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut out: Vec<StoredMessage> = select::<StoredMessage>(
            "FROM whatsapp_messages WHERE conversation_id = $1 \
             ORDER BY at_ms DESC, id DESC LIMIT $2",
        )
        .bind(conversation_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        out.reverse();
        Ok(out)
    }

    /// Conversations, most recent first, with message count and last message.
    pub async fn whatsapp_conversations(
        &self,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT c.id, c.business_id, c.customer_key, c.customer_phone, c.customer_user_id, \
                    c.profile_name, c.channel, c.last_at_ms, \
                    (SELECT COUNT(*) FROM whatsapp_messages m WHERE m.conversation_id = c.id) AS n, \
                    (SELECT m.text FROM whatsapp_messages m WHERE m.conversation_id = c.id \
                        ORDER BY m.at_ms DESC, m.id DESC LIMIT 1) AS last_text, \
                    (SELECT m.role FROM whatsapp_messages m WHERE m.conversation_id = c.id \
                        ORDER BY m.at_ms DESC, m.id DESC LIMIT 1) AS last_role \
             FROM whatsapp_conversations c ORDER BY c.last_at_ms DESC, c.id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes a conversation and its messages. Returns whether it existed.
    pub async fn whatsapp_delete_conversation(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM whatsapp_messages WHERE conversation_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM conversation_state WHERE conversation_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM whatsapp_conversations WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records an outbound part as `pending` unless it exists; returns its current row.
    pub async fn whatsapp_outbound_begin(
        &self,
        id: &str,
        conversation_id: &str,
        business_id: &str,
        recipient: &str,
        body_json: &str,
        now_ms: i64,
    ) -> Result<OutboundRow, StoreError> {
        sqlx::query(
            "INSERT INTO whatsapp_outbound (id, conversation_id, business_id, recipient, body_json, \
                 status, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(conversation_id)
        .bind(business_id)
        .bind(recipient)
        .bind(body_json)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        self.whatsapp_outbound(id)
            .await?
            .ok_or(StoreError::BadValue {
                column: "whatsapp_outbound.id".into(),
                value: id.to_string(),
                expected: "the id of the row just written",
            })
    }

    pub async fn whatsapp_outbound(&self, id: &str) -> Result<Option<OutboundRow>, StoreError> {
        Ok(
            select::<OutboundRow>("FROM whatsapp_outbound WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The provider accepted the part (or refused it for good).
    pub async fn whatsapp_outbound_result(
        &self,
        id: &str,
        body_json: &str,
        result: Result<&str, (i64, &str)>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (status, provider_id, code, detail) = match result {
            Ok(pid) => (DeliveryStatus::Accepted, Some(pid), None, None),
            Err((code, detail)) => (DeliveryStatus::Failed, None, Some(code), Some(detail)),
        };
        sqlx::query(
            "UPDATE whatsapp_outbound SET status = $1, provider_message_id = $2, error_code = $3, \
                 error_detail = $4, body_json = $5, updated_at_ms = $6 WHERE id = $7",
        )
        .bind(status.as_str())
        .bind(provider_id)
        .bind(code)
        .bind(detail)
        .bind(body_json)
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Applies a status webhook: history row (deduplicated), and the outbound row's status moves
    /// only forward (see [`DeliveryStatus::merge`]). Returns the status the message now has, or
    /// `None` when the message is not ours (sent before this database, or by another system).
    pub async fn whatsapp_apply_status(
        &self,
        provider_message_id: &str,
        status: &str,
        error_code: Option<i64>,
        error_detail: Option<&str>,
        at_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO whatsapp_status_history (provider_message_id, status, at_ms, error_code) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(provider_message_id)
        .bind(status)
        .bind(at_ms)
        .bind(error_code)
        .execute(&mut *tx)
        .await?;
        let row: Option<OutboundRow> =
            select::<OutboundRow>("FROM whatsapp_outbound WHERE provider_message_id = $1")
                .bind(provider_message_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(OutboundRow {
            id,
            status: current,
            ..
        }) = row
        else {
            tx.commit().await?;
            return Ok(None);
        };
        let Some(incoming) = DeliveryStatus::parse(status) else {
            tx.commit().await?;
            return Ok(Some(current.as_str().to_string()));
        };
        let merged = current.merge(incoming);
        if merged != current || incoming == DeliveryStatus::Failed {
            // A failure is recorded even when a later state already won, for the trace.
            let (code, detail) = if incoming == DeliveryStatus::Failed {
                (error_code, error_detail)
            } else {
                (None, None)
            };
            sqlx::query(
                "UPDATE whatsapp_outbound SET status = $1, \
                     error_code = COALESCE($2, error_code), error_detail = COALESCE($3, error_detail), \
                     updated_at_ms = $4 WHERE id = $5",
            )
            .bind(merged.as_str())
            .bind(code)
            .bind(detail)
            .bind(at_ms)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(merged.as_str().to_string()))
    }

    /// Outbound rows of a conversation, oldest first.
    pub async fn whatsapp_outbound_for(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<OutboundRow>, StoreError> {
        Ok(select::<OutboundRow>(
            "FROM whatsapp_outbound WHERE conversation_id = $1 ORDER BY created_at_ms, id",
        )
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Distinct statuses recorded for one provider message, in arrival order.
    pub async fn whatsapp_status_history(
        &self,
        provider_message_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT status FROM whatsapp_status_history WHERE provider_message_id = $1 \
             ORDER BY at_ms, status",
        )
        .bind(provider_message_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// How processing an inbox row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxOutcome<'a> {
    Done,
    Failed(&'a str),
    Retry { error: &'a str, not_before_ms: i64 },
}
