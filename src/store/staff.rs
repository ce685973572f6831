//! Staff tools' tables (migration 0011): the audit of batch calls and the pending confirmations
//! of large batches, plus the business-wide reads the staff tools need (appointments in a range,
//! customers with their WhatsApp ids, message counts). Every query is scoped by `business_id`.

use super::booking::{Appointment, CustomerRow};
use super::{Store, StoreError, select};

/// One staff batch call as recorded (see the migration for `outcome`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: String,
    pub business_id: String,
    pub account_id: String,
    pub tool: String,
    pub args_json: String,
    pub items_json: String,
    pub outcome: String,
    pub succeeded: i64,
    pub failed: i64,
    pub error: Option<String>,
    pub reason: Option<String>,
    pub at_ms: i64,
}

/// A confirmation token as stored (its hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmationRow {
    pub token_hash: String,
    pub business_id: String,
    pub account_id: String,
    pub tool: String,
    pub binding: String,
    pub items: i64,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// What spending a confirmation token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// Valid, bound to exactly this call; now spent.
    Spent,
    /// No such token.
    Unknown,
    /// Already spent.
    Used,
    Expired,
    /// Issued to another account, business or tool, or for other arguments or items.
    Mismatch,
}

/// A WhatsApp conversation's customer: phone and/or business-scoped user id (BSUID).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct WhatsAppContact {
    pub customer_key: String,
    #[sqlx(rename = "customer_phone")]
    pub phone: Option<String>,
    #[sqlx(rename = "customer_user_id")]
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
}

/// Conversation messages of one customer (by phone; `None` = unknown) on one channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct MessageCount {
    pub customer_phone: Option<String>,
    pub channel: String,
    /// All messages, the customer's and the agent's.
    pub messages: i64,
    /// The customer's own.
    pub from_customer: i64,
}

impl Store {
    pub async fn insert_staff_audit(&self, a: &AuditRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO staff_audit (id, business_id, account_id, tool, args_json, items_json, \
             outcome, succeeded, failed, error, reason, at_ms) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
        )
        .bind(&a.id)
        .bind(&a.business_id)
        .bind(&a.account_id)
        .bind(&a.tool)
        .bind(&a.args_json)
        .bind(&a.items_json)
        .bind(&a.outcome)
        .bind(a.succeeded)
        .bind(a.failed)
        .bind(&a.error)
        .bind(&a.reason)
        .bind(a.at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A business's audit records, newest first, at most `limit`.
    pub async fn staff_audit(
        &self,
        business_id: &str,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM staff_audit WHERE business_id = $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
        )
        .bind(business_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn insert_staff_confirmation(&self, c: &ConfirmationRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO staff_confirmations (token_hash, business_id, account_id, tool, binding, \
             items, created_at_ms, expires_at_ms, used_at_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,NULL)",
        )
        .bind(&c.token_hash)
        .bind(&c.business_id)
        .bind(&c.account_id)
        .bind(&c.tool)
        .bind(&c.binding)
        .bind(c.items)
        .bind(c.created_at_ms)
        .bind(c.expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Spends the token if it is unused, unexpired and bound to exactly this call: one
    /// conditional UPDATE, so two instances cannot both spend it. Otherwise says why not.
    pub async fn spend_staff_confirmation(
        &self,
        token_hash: &str,
        account_id: &str,
        business_id: &str,
        tool: &str,
        binding: &str,
        now_ms: i64,
    ) -> Result<TokenUse, StoreError> {
        let done = sqlx::query(
            "UPDATE staff_confirmations SET used_at_ms = $1 WHERE token_hash = $2 \
             AND used_at_ms IS NULL AND expires_at_ms > $1 AND account_id = $3 \
             AND business_id = $4 AND tool = $5 AND binding = $6",
        )
        .bind(now_ms)
        .bind(token_hash)
        .bind(account_id)
        .bind(business_id)
        .bind(tool)
        .bind(binding)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(TokenUse::Spent);
        }
        let row: Option<(Option<i64>, i64)> = sqlx::query_as(
            "SELECT used_at_ms, expires_at_ms FROM staff_confirmations WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some((used, expires)) = row else {
            return Ok(TokenUse::Unknown);
        };
        Ok(if used.is_some() {
            TokenUse::Used
        } else if expires <= now_ms {
            TokenUse::Expired
        } else {
            TokenUse::Mismatch
        })
    }

    /// Appointments (any status) of a business starting in `[from_ms, to_ms)`, by start.
    pub async fn appointments_between(
        &self,
        business_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Appointment>, StoreError> {
        Ok(select::<Appointment>(
            "FROM appointments WHERE business_id = $1 \
             AND start_ms >= $2 AND start_ms < $3 ORDER BY start_ms, created_at_ms, id",
        )
        .bind(business_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Changes the name and/or phone an appointment is booked under.
    pub async fn set_appointment_contact(
        &self,
        id: &str,
        name: Option<&str>,
        phone: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE appointments SET customer_name = COALESCE($1, customer_name), \
             customer_phone = COALESCE($2, customer_phone), updated_at_ms = $3 \
             WHERE id = $4 AND status = 'booked'",
        )
        .bind(name)
        .bind(phone)
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn customers_of(&self, business_id: &str) -> Result<Vec<CustomerRow>, StoreError> {
        Ok(
            select::<CustomerRow>("FROM customers WHERE business_id = $1 ORDER BY phone")
                .bind(business_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn whatsapp_contacts(
        &self,
        business_id: &str,
    ) -> Result<Vec<WhatsAppContact>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT customer_key, customer_phone, customer_user_id, profile_name \
             FROM whatsapp_conversations WHERE business_id = $1 ORDER BY customer_key",
        )
        .bind(business_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Conversation messages per (customer phone, channel) in `[from_ms, to_ms)`.
    pub async fn message_counts(
        &self,
        business_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MessageCount>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT customer_phone, channel, COUNT(*) AS messages, \
             SUM(CASE WHEN role = 'user' THEN 1 ELSE 0 END) AS from_customer \
             FROM conversation_messages WHERE business_id = $1 AND at_ms >= $2 AND at_ms < $3 \
             GROUP BY customer_phone, channel ORDER BY customer_phone, channel",
        )
        .bind(business_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?)
    }
}
