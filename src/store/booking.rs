//! Booking tables (migration 0002): businesses and their policy, resources, customers (leads),
//! appointments, conversation messages and summaries, tool traces and the durable outbox.
//!
//! Same conventions as the call tables: runtime queries through the `Any` driver with `$n`
//! placeholders, ids chosen here, unix-ms timestamps, 0/1 booleans.
//!
//! Capacity race: `create_appointment` counts overlapping appointments and inserts in one
//! transaction. On SQLite that is serialised (one writer). On PostgreSQL at READ COMMITTED two
//! concurrent bookings of the last place could both pass; the transaction therefore takes a
//! per-business advisory lock on PostgreSQL (`pg_advisory_xact_lock`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::value::{Flag, PipeList, text_enum};
use super::{Columns, Store, StoreError, select};
use crate::booking::policy::{
    Busy, ConcurrencyScope, Policy, PolicyError, ResourceCap, parse_opening_hours, timezone,
};

/// A fresh unique id: `prefix_<process-random>-<counter>`.
pub fn new_id(prefix: &str) -> String {
    static PROCESS: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process = PROCESS.get_or_init(|| format!("{:012x}", super::id_random() & 0xffff_ffff_ffff));
    let n = NEXT.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{prefix}_{process}{n:06x}")
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Business {
    pub id: String,
    pub name: String,
    pub timezone: String,
    pub language: String,
    pub prompt_default: String,
    pub prompt_phone: Option<String>,
    pub prompt_whatsapp: Option<String>,
    pub opening_hours_json: String,
    #[sqlx(try_from = "Flag")]
    pub allow_24_7: bool,
    pub slot_size_min: i64,
    pub min_notice_min: i64,
    pub booking_window_days: i64,
    #[sqlx(try_from = "Flag")]
    pub require_phone_before_booking: bool,
    pub concurrency_scope: ConcurrencyScope,
    pub concurrency_limit: i64,
    #[sqlx(try_from = "Flag")]
    pub trace_log_pii: bool,
    pub updated_at_ms: i64,
}

impl Business {
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        let policy = Policy {
            tz: timezone(&self.timezone)?,
            opening_hours: parse_opening_hours(&self.opening_hours_json)?,
            allow_24_7: self.allow_24_7,
            slot_size_min: self.slot_size_min,
            min_notice_min: self.min_notice_min,
            booking_window_days: self.booking_window_days,
            require_phone_before_booking: self.require_phone_before_booking,
            scope: self.concurrency_scope,
            business_limit: self.concurrency_limit,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// The prompt for a channel, falling back to the business default.
    pub fn prompt_for(&self, channel: &str) -> &str {
        let specific = match channel {
            "phone" => self.prompt_phone.as_deref(),
            "whatsapp" => self.prompt_whatsapp.as_deref(),
            _ => None,
        };
        specific
            .filter(|p| !p.trim().is_empty())
            .unwrap_or(&self.prompt_default)
    }

    pub fn hebrew(&self) -> bool {
        self.language.starts_with("he")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct Resource {
    pub id: String,
    pub name: String,
    #[sqlx(try_from = "PipeList")]
    pub aliases: Vec<String>,
    pub concurrency_limit: i64,
}

impl Resource {
    pub fn cap(&self) -> ResourceCap {
        ResourceCap {
            id: self.id.clone(),
            limit: self.concurrency_limit,
        }
    }

    /// Does `text` mention this resource (name or an alias, case-insensitive)?
    pub fn mentioned_in(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        std::iter::once(&self.name)
            .chain(self.aliases.iter())
            .any(|n| !n.is_empty() && lower.contains(&n.to_lowercase()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct Document {
    /// Not shown to the agent (its tools serialise documents); the console edits by it.
    #[serde(skip)]
    pub id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
}

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

/// One customer (lead) of a business: one per phone, across channels.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct CustomerRow {
    pub id: String,
    pub phone: String,
    pub name: Option<String>,
    pub status: String,
    pub first_channel: String,
    pub last_channel: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

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

impl Columns for OutboxRow {
    const COLUMNS: &'static str = "id, business_id, kind, payload_json, idempotency_key, status, \
         attempts, next_attempt_at_ms, last_error, result, created_at_ms, done_at_ms";
}

impl Columns for CustomerRow {
    const COLUMNS: &'static str = "id, phone, name, status, first_channel, last_channel, \
         created_at_ms, updated_at_ms";
}

impl Columns for ToolTraceRow {
    const COLUMNS: &'static str = "business_id, conversation_id, channel, turn, tool, args_json, \
         ok, error, reason, latency_ms, at_ms";
}

impl Columns for ConversationMessage {
    const COLUMNS: &'static str = "business_id, customer_id, customer_phone, channel, \
         conversation_id, role, text, at_ms";
}

/// The `businesses` column holding a channel's prompt (`None` or another channel: the default).
pub(super) fn prompt_column(channel: Option<&str>) -> &'static str {
    match channel {
        Some("phone") => "prompt_phone",
        Some("whatsapp") => "prompt_whatsapp",
        _ => "prompt_default",
    }
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
    pub fn is_postgres(&self) -> bool {
        self.pool
            .connect_options()
            .database_url
            .scheme()
            .starts_with("postgres")
    }

    pub async fn business(&self, id: &str) -> Result<Option<Business>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM businesses WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The business reached at `address` on `channel` (Twilio number or WhatsApp phone_number_id).
    pub async fn business_id_by_number(
        &self,
        channel: &str,
        address: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT business_id FROM business_numbers WHERE channel = $1 AND address = $2",
        )
        .bind(channel)
        .bind(address)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Version stamp of a business's configuration; agents rebuild cached settings when it moves.
    pub async fn business_version(&self, id: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT updated_at_ms FROM businesses WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Admin edit of a business's prompt (and the version stamp that invalidates caches).
    pub async fn set_business_prompt(
        &self,
        id: &str,
        channel: Option<&str>,
        prompt: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let column = prompt_column(channel);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE businesses SET {column} = $1, updated_at_ms = $2 WHERE id = $3"
        )))
        .bind(prompt)
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Test and admin helper: change policy columns (a JSON-free subset).
    pub async fn set_business_policy(
        &self,
        id: &str,
        require_phone_before_booking: bool,
        trace_log_pii: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE businesses SET require_phone_before_booking = $1, trace_log_pii = $2, \
             updated_at_ms = $3 WHERE id = $4",
        )
        .bind(require_phone_before_booking as i64)
        .bind(trace_log_pii as i64)
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Admin edit of the weekly opening hours (`{"sun":["10:00","22:00"], ...}`; a missing day is
    /// closed). Checked before it is stored, so a typo cannot break slot computation.
    pub async fn set_opening_hours(
        &self,
        id: &str,
        opening_hours_json: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        crate::booking::policy::parse_opening_hours(opening_hours_json).map_err(|e| {
            StoreError::BadValue {
                column: "opening_hours_json".into(),
                value: e.to_string(),
                expected: "valid opening hours",
            }
        })?;
        sqlx::query(
            "UPDATE businesses SET opening_hours_json = $1, updated_at_ms = $2 WHERE id = $3",
        )
        .bind(opening_hours_json)
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every (channel, address) a business is reached at, ordered.
    pub async fn business_addresses(
        &self,
        business_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT channel, address FROM business_numbers WHERE business_id = $1 \
             ORDER BY channel, address",
        )
        .bind(business_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The business's WhatsApp Cloud API phone_number_id (first one), if it has one.
    pub async fn whatsapp_number_for(
        &self,
        business_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT address FROM business_numbers WHERE business_id = $1 AND channel = 'whatsapp' \
             ORDER BY address LIMIT 1",
        )
        .bind(business_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn resources(&self, business_id: &str) -> Result<Vec<Resource>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, name, aliases, concurrency_limit FROM resources \
             WHERE business_id = $1 AND active = 1 ORDER BY id",
        )
        .bind(business_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn documents(&self, business_id: &str) -> Result<Vec<Document>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, kind, title, body FROM business_documents WHERE business_id = $1 ORDER BY id",
        )
        .bind(business_id)
        .fetch_all(&self.pool)
        .await?)
    }

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
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
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

    /// One customer per (business, phone): creates it or refreshes name and channel.
    pub async fn upsert_customer(
        &self,
        business_id: &str,
        phone: &str,
        name: Option<&str>,
        channel: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO customers (id, business_id, phone, name, status, first_channel, \
             last_channel, notes, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, NULL, $7, $7) \
             ON CONFLICT (business_id, phone) DO UPDATE SET \
             name = COALESCE(excluded.name, customers.name), status = excluded.status, \
             last_channel = excluded.last_channel, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(new_id("cust"))
        .bind(business_id)
        .bind(phone)
        .bind(name)
        .bind(status)
        .bind(channel)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT id FROM customers WHERE business_id = $1 AND phone = $2")
                .bind(business_id)
                .bind(phone)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The name a customer gave on any channel (by business and phone).
    pub async fn customer_name(
        &self,
        business_id: &str,
        phone: &str,
    ) -> Result<Option<String>, StoreError> {
        let name: Option<Option<String>> =
            sqlx::query_scalar("SELECT name FROM customers WHERE business_id = $1 AND phone = $2")
                .bind(business_id)
                .bind(phone)
                .fetch_optional(&self.pool)
                .await?;
        Ok(name.flatten())
    }

    pub async fn customer_count(&self, business_id: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) AS n FROM customers WHERE business_id = $1")
                .bind(business_id)
                .fetch_one(&self.pool)
                .await?,
        )
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

    /// Enqueues an event on its own (not tied to other data). A duplicate key is a no-op.
    pub async fn enqueue(&self, ev: &NewOutboxEvent, now_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
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

async fn insert_outbox(
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
