//! Appointments: the status enum, the row, and the queries that book, find, cancel and move
//! them, with the one duplicate-request query shared by the early answer and the insert.
//!
//! Capacity race: `create_appointment` counts overlapping appointments and inserts in one
//! transaction. On SQLite that is serialised (one writer). On PostgreSQL at READ COMMITTED two
//! concurrent bookings of the last place could both pass; the transaction therefore takes a
//! per-business advisory lock on PostgreSQL (`pg_advisory_xact_lock`).

use super::super::value::text_enum;
use super::super::{Columns, Store, StoreError, select};
use super::new_id;
use super::outbox::{NewOutboxEvent, insert_outbox};
use crate::booking::policy::Busy;

text_enum! {
    /// An appointment's state: `booked` until cancelled (migration 0002).
    pub enum AppointmentStatus: "an appointment status" {
        Booked = "booked",
        Cancelled = "cancelled",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct Appointment {
    pub id: String,
    pub business_id: String,
    pub resource_id: Option<String>,
    pub customer_id: Option<String>,
    pub customer_name: String,
    pub customer_phone: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub status: AppointmentStatus,
    pub channel: String,
    pub conversation_id: String,
    pub request_key: String,
    pub created_at_ms: i64,
}

/// What `create_appointment` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created(Appointment),
    /// The same request was booked within the de-duplication window: that appointment.
    Existing(Appointment),
    /// Capacity ran out between the check and the insert.
    Full,
}

/// Capacity to enforce inside the insert transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapacityRule {
    /// At most `limit` overlapping booked appointments on this resource.
    Resource { resource_id: String, limit: i64 },
    /// At most `limit` overlapping booked appointments in the whole business.
    Business { limit: i64 },
}

impl Columns for Appointment {
    const COLUMNS: &'static str = "id, business_id, resource_id, customer_id, customer_name, \
         customer_phone, start_ms, end_ms, status, channel, conversation_id, request_key, \
         created_at_ms";
}

/// Appointments created by the same request within this window are one appointment.
pub const DEDUPE_WINDOW_MS: i64 = 5 * 60_000;

/// The one duplicate-request query: booked for `request_key` within the window before `now_ms`.
fn same_request_booked(
    request_key: &str,
    now_ms: i64,
) -> sqlx::query::QueryAs<'_, sqlx::Any, Appointment, sqlx::any::AnyArguments> {
    select::<Appointment>(
        "FROM appointments \
         WHERE request_key = $1 AND status = 'booked' AND created_at_ms >= $2 \
         ORDER BY created_at_ms LIMIT 1",
    )
    .bind(request_key)
    .bind(now_ms - DEDUPE_WINDOW_MS)
}

impl Store {
    /// Booked appointments overlapping `[from_ms, to_ms)`.
    pub async fn busy(
        &self,
        business_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Busy>, StoreError> {
        let rows: Vec<(Option<String>, i64, i64)> = sqlx::query_as(
            "SELECT resource_id, start_ms, end_ms FROM appointments \
             WHERE business_id = $1 AND status = 'booked' AND start_ms < $2 AND end_ms > $3",
        )
        .bind(business_id)
        .bind(to_ms)
        .bind(from_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(resource_id, start_ms, end_ms)| Busy {
                resource_id,
                start_ms,
                end_ms,
            })
            .collect())
    }

    /// The appointment booked for the same request (`request_key`) within [`DEDUPE_WINDOW_MS`]
    /// before `now_ms`, if any. One indexed query; `create_appointment` repeats it inside its
    /// transaction, so this is only the early answer (before the policy is consulted).
    pub async fn recent_booking_for_request(
        &self,
        request_key: &str,
        now_ms: i64,
    ) -> Result<Option<Appointment>, StoreError> {
        Ok(same_request_booked(request_key, now_ms)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Inserts an appointment and its outbox events in one transaction, unless the same request
    /// was booked within [`DEDUPE_WINDOW_MS`] (then that one is returned) or capacity ran out.
    /// `outbox` events get `{appointment_id}` in their payload and key replaced by the new id.
    pub async fn create_appointment(
        &self,
        mut appt: Appointment,
        capacity: CapacityRule,
        outbox: Vec<NewOutboxEvent>,
    ) -> Result<CreateOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        if self.is_postgres() {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(&appt.business_id)
                .execute(&mut *tx)
                .await?;
        }
        let existing = same_request_booked(&appt.request_key, appt.created_at_ms)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(existing) = existing {
            tx.rollback().await?;
            return Ok(CreateOutcome::Existing(existing));
        }
        let (count_sql, limit, resource) = match &capacity {
            CapacityRule::Resource { resource_id, limit } => (
                "SELECT COUNT(*) AS n FROM appointments WHERE business_id = $1 AND status = 'booked' \
                 AND start_ms < $2 AND end_ms > $3 AND resource_id = $4",
                *limit,
                Some(resource_id.clone()),
            ),
            CapacityRule::Business { limit } => (
                "SELECT COUNT(*) AS n FROM appointments WHERE business_id = $1 AND status = 'booked' \
                 AND start_ms < $2 AND end_ms > $3",
                *limit,
                None,
            ),
        };
        let mut q = sqlx::query_scalar(count_sql)
            .bind(&appt.business_id)
            .bind(appt.end_ms)
            .bind(appt.start_ms);
        if let Some(r) = &resource {
            q = q.bind(r.clone());
        }
        let used: i64 = q.fetch_one(&mut *tx).await?;
        if used >= limit {
            tx.rollback().await?;
            return Ok(CreateOutcome::Full);
        }
        if appt.id.is_empty() {
            appt.id = new_id("appt");
        }
        sqlx::query(
            "INSERT INTO appointments (id, business_id, resource_id, customer_id, customer_name, \
             customer_phone, start_ms, end_ms, status, channel, conversation_id, request_key, \
             created_at_ms, updated_at_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$13)",
        )
        .bind(&appt.id)
        .bind(&appt.business_id)
        .bind(&appt.resource_id)
        .bind(&appt.customer_id)
        .bind(&appt.customer_name)
        .bind(&appt.customer_phone)
        .bind(appt.start_ms)
        .bind(appt.end_ms)
        .bind(appt.status.as_str())
        .bind(&appt.channel)
        .bind(&appt.conversation_id)
        .bind(&appt.request_key)
        .bind(appt.created_at_ms)
        .execute(&mut *tx)
        .await?;
        for mut ev in outbox {
            ev.payload_json = ev.payload_json.replace("{appointment_id}", &appt.id);
            ev.idempotency_key = ev.idempotency_key.replace("{appointment_id}", &appt.id);
            insert_outbox(&mut tx, &ev, appt.created_at_ms).await?;
        }
        tx.commit().await?;
        Ok(CreateOutcome::Created(appt))
    }

    pub async fn appointment(&self, id: &str) -> Result<Option<Appointment>, StoreError> {
        Ok(select::<Appointment>("FROM appointments WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Booked appointments of a customer (by phone) starting at or after `from_ms`.
    pub async fn appointments_for_phone(
        &self,
        business_id: &str,
        phone: &str,
        from_ms: i64,
    ) -> Result<Vec<Appointment>, StoreError> {
        Ok(select::<Appointment>(
            "FROM appointments WHERE business_id = $1 \
             AND customer_phone = $2 AND status = 'booked' AND start_ms >= $3 ORDER BY start_ms",
        )
        .bind(business_id)
        .bind(phone)
        .bind(from_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn appointments_for_business(
        &self,
        business_id: &str,
    ) -> Result<Vec<Appointment>, StoreError> {
        Ok(select::<Appointment>(
            "FROM appointments WHERE business_id = $1 \
             ORDER BY start_ms, created_at_ms",
        )
        .bind(business_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn cancel_appointment(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE appointments SET status = 'cancelled', updated_at_ms = $1 \
             WHERE id = $2 AND status = 'booked'",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves a booked appointment, re-checking capacity without counting itself.
    pub async fn move_appointment(
        &self,
        id: &str,
        resource_id: Option<&str>,
        start_ms: i64,
        end_ms: i64,
        capacity: CapacityRule,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let (sql, limit, resource) = match &capacity {
            CapacityRule::Resource { resource_id, limit } => (
                "SELECT COUNT(*) AS n FROM appointments WHERE id <> $1 AND status = 'booked' \
                 AND start_ms < $2 AND end_ms > $3 AND resource_id = $4",
                *limit,
                Some(resource_id.clone()),
            ),
            CapacityRule::Business { limit } => (
                "SELECT COUNT(*) AS n FROM appointments a WHERE a.id <> $1 AND a.status = 'booked' \
                 AND a.start_ms < $2 AND a.end_ms > $3 AND a.business_id = \
                 (SELECT business_id FROM appointments WHERE id = $1)",
                *limit,
                None,
            ),
        };
        let mut q = sqlx::query_scalar(sql).bind(id).bind(end_ms).bind(start_ms);
        if let Some(r) = &resource {
            q = q.bind(r.clone());
        }
        let used: i64 = q.fetch_one(&mut *tx).await?;
        if used >= limit {
            tx.rollback().await?;
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE appointments SET start_ms = $1, end_ms = $2, resource_id = $3, updated_at_ms = $4 \
             WHERE id = $5 AND status = 'booked'",
        )
        .bind(start_ms)
        .bind(end_ms)
        .bind(resource_id)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_appointment_customer(
        &self,
        appointment_id: &str,
        customer_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE appointments SET customer_id = $1 WHERE id = $2")
            .bind(customer_id)
            .bind(appointment_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
