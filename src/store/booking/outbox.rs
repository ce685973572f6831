//! The durable outbox: events written in the same transaction as the data that caused them
//! (`insert_outbox`), then claimed, delivered, retried or given up by the scheduler. An
//! idempotency key makes a second insert of the same event a no-op.

use super::super::value::text_enum;
use super::super::{Columns, Store, StoreError, select};
use super::new_id;

/// An outbox event to write together with the data that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEvent {
    pub business_id: String,
    pub kind: String,
    pub payload_json: String,
    pub idempotency_key: String,
    pub not_before_ms: i64,
}

text_enum! {
    /// Where an outbox event is: waiting for (another) attempt, done, or given up (migration 0002).
    pub enum OutboxStatus: "an outbox status" {
        Pending = "pending",
        Delivered = "delivered",
        Dead = "dead",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: String,
    pub business_id: String,
    pub kind: String,
    pub payload_json: String,
    pub idempotency_key: String,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub result: Option<String>,
    pub created_at_ms: i64,
    pub done_at_ms: Option<i64>,
}

impl Columns for OutboxRow {
    const COLUMNS: &'static str = "id, business_id, kind, payload_json, idempotency_key, status, \
         attempts, next_attempt_at_ms, last_error, result, created_at_ms, done_at_ms";
}

impl Store {
    /// Enqueues an event on its own (not tied to other data). A duplicate key is a no-op.
    pub async fn enqueue(&self, ev: &NewOutboxEvent, now_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_outbox(&mut tx, ev, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn outbox_by_key(&self, key: &str) -> Result<Option<OutboxRow>, StoreError> {
        Ok(
            select::<OutboxRow>("FROM outbox WHERE idempotency_key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn outbox_all(&self) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(
            select::<OutboxRow>("FROM outbox ORDER BY created_at_ms, id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Pending events due at `now_ms` and not leased by another worker.
    pub async fn outbox_due(&self, now_ms: i64, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(select::<OutboxRow>(
            "FROM outbox WHERE status = 'pending' \
             AND next_attempt_at_ms <= $1 AND locked_until_ms <= $1 \
             ORDER BY next_attempt_at_ms, id LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Leases an event for delivery until `now_ms + lease_ms`. False if someone else holds it or
    /// it is no longer pending, so two workers never send the same event at once.
    pub async fn outbox_claim(
        &self,
        id: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET locked_until_ms = $1 WHERE id = $2 AND status = 'pending' \
             AND locked_until_ms <= $3",
        )
        .bind(now_ms + lease_ms)
        .bind(id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn outbox_delivered(
        &self,
        id: &str,
        result: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, result = $1, \
             done_at_ms = $2, locked_until_ms = 0, last_error = NULL WHERE id = $3",
        )
        .bind(result)
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A failed attempt: try again at `next_attempt_at_ms`, or give up (`dead`).
    pub async fn outbox_failed(
        &self,
        id: &str,
        error: &str,
        next_attempt_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (status, next, done) = match next_attempt_at_ms {
            Some(at) => (OutboxStatus::Pending, at, None),
            None => (OutboxStatus::Dead, now_ms, Some(now_ms)),
        };
        sqlx::query(
            "UPDATE outbox SET status = $1, attempts = attempts + 1, last_error = $2, \
             next_attempt_at_ms = $3, done_at_ms = $4, locked_until_ms = 0 WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(next)
        .bind(done)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Rewrites an event's payload (e.g. switching to a template outside the 24-hour window).
    pub async fn outbox_set_payload(&self, id: &str, payload_json: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET payload_json = $1 WHERE id = $2")
            .bind(payload_json)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

pub(super) async fn insert_outbox(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ev: &NewOutboxEvent,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (id, business_id, kind, payload_json, idempotency_key, status, \
         attempts, next_attempt_at_ms, locked_until_ms, last_error, result, created_at_ms, done_at_ms) \
         VALUES ($1,$2,$3,$4,$5,'pending',0,$6,0,NULL,NULL,$7,NULL) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(new_id("evt"))
    .bind(&ev.business_id)
    .bind(&ev.kind)
    .bind(&ev.payload_json)
    .bind(&ev.idempotency_key)
    .bind(ev.not_before_ms)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
