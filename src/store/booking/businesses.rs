//! Businesses and what hangs off them: the business row with its policy and per-channel
//! prompts, its resources (rooms, staff, machines) and its documents, plus the lookups by
//! number and the console's settings writes. A business row is the single source of its
//! booking policy: `Business::policy` parses it, so a bad row fails there, not mid-booking.

use super::super::value::{Flag, PipeList};
use super::super::{Store, StoreError};
use crate::booking::policy::{
    ConcurrencyScope, Policy, PolicyError, ResourceCap, parse_opening_hours, timezone,
};

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

/// The `businesses` column holding a channel's prompt (`None` or another channel: the default).
pub(in crate::store) fn prompt_column(channel: Option<&str>) -> &'static str {
    match channel {
        Some("phone") => "prompt_phone",
        Some("whatsapp") => "prompt_whatsapp",
        _ => "prompt_default",
    }
}

impl Store {
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
}
