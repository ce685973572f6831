//! Operator console persistence (migration 0009): accounts, sessions, API tokens, and the
//! versioned edits of a business's settings.
//!
//! Secrets are never stored in clear: sessions and API tokens by SHA-256 of their random value,
//! passwords as argon2id PHC strings (hashed by the caller, `crate::console::auth`).
//!
//! Business edits carry the `updated_at_ms` the editor saw: an edit made against an older version
//! changes nothing and reports [`EditOutcome::Conflict`] (the console shows a visible message, the
//! editor's input is kept). A successful edit moves `updated_at_ms`, which also makes the agent's
//! settings cache rebuild on its next turn.

use super::booking::{Business, OutboxRow};
use super::value::Flag;
use super::whatsapp::{StoredMessage, ThreadMessage};
use super::{Columns, Store, StoreError, select};
use crate::booking::policy::ConcurrencyScope;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct AccountRow {
    pub id: String,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: String,
    pub business_id: Option<String>,
    #[sqlx(try_from = "Flag")]
    pub disabled: bool,
    pub created_at_ms: i64,
}

/// A live session joined with its account.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    #[sqlx(flatten)]
    pub account: AccountRow,
    pub csrf_token: String,
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ApiTokenRow {
    pub id: String,
    pub account_id: String,
    pub label: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// Result of a versioned edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditOutcome {
    /// Stored; the business's new version.
    Saved(i64),
    /// Someone changed the business since `expected_version`: nothing was written.
    Conflict,
    NotFound,
}

pub use super::booking::CustomerRow;

/// What adding a number or WhatsApp id did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressOutcome {
    Added,
    /// This business already has it: nothing changed.
    AlreadyThis,
    /// Another business has it: refused, nothing changed.
    OwnedByAnother,
}

/// What removing a room did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomRemoval {
    Removed,
    /// Booked appointments end after now in this room: refused, nothing changed.
    HasFutureBookings(i64),
    NotFound,
}

/// The policy columns the console edits as one unit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyColumns {
    pub opening_hours_json: String,
    pub allow_24_7: bool,
    pub slot_size_min: i64,
    pub min_notice_min: i64,
    pub booking_window_days: i64,
    pub require_phone_before_booking: bool,
    pub concurrency_scope: ConcurrencyScope,
    pub concurrency_limit: i64,
}

impl PolicyColumns {
    pub fn of(b: &Business) -> Self {
        Self {
            opening_hours_json: b.opening_hours_json.clone(),
            allow_24_7: b.allow_24_7,
            slot_size_min: b.slot_size_min,
            min_notice_min: b.min_notice_min,
            booking_window_days: b.booking_window_days,
            require_phone_before_booking: b.require_phone_before_booking,
            concurrency_scope: b.concurrency_scope,
            concurrency_limit: b.concurrency_limit,
        }
    }
}

/// Of `console_accounts a` (joins name the table `a`).
impl Columns for AccountRow {
    const COLUMNS: &'static str =
        "a.id, a.email, a.password_hash, a.role, a.business_id, a.disabled, a.created_at_ms";
}

impl Store {
    /// Creates an account; `false` when the email is taken.
    pub async fn insert_account(&self, a: &AccountRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO console_accounts \
             (id, email, password_hash, role, business_id, disabled, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&a.id)
        .bind(&a.email)
        .bind(&a.password_hash)
        .bind(&a.role)
        .bind(a.business_id.as_deref())
        .bind(i64::from(a.disabled))
        .bind(a.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn account_by_email(&self, email: &str) -> Result<Option<AccountRow>, StoreError> {
        Ok(
            select::<AccountRow>("FROM console_accounts a WHERE a.email = $1")
                .bind(email)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn insert_session(
        &self,
        id_hash: &str,
        account_id: &str,
        csrf_token: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, account_id, csrf_token, created_at_ms, \
             expires_at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_hash)
        .bind(account_id)
        .bind(csrf_token)
        .bind(now_ms)
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this id hash, if it has not expired at `now_ms` and its account is
    /// enabled.
    pub async fn live_session(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<Option<SessionRow>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {}, s.csrf_token, s.expires_at_ms \
             FROM console_sessions s JOIN console_accounts a ON a.id = s.account_id \
             WHERE s.id_hash = $1 AND s.expires_at_ms > $2 AND a.disabled = 0",
            AccountRow::COLUMNS
        )))
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Logout: the session is gone server-side, whatever the browser keeps.
    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The sweep of sessions expired by `now_ms`; how many were deleted.
    pub async fn delete_expired_sessions(&self, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn insert_api_token(
        &self,
        t: &ApiTokenRow,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_api_tokens (id, account_id, token_hash, label, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&t.id)
        .bind(&t.account_id)
        .bind(token_hash)
        .bind(&t.label)
        .bind(t.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The enabled account owning this (unrevoked) token hash.
    pub async fn account_by_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<AccountRow>, StoreError> {
        Ok(select::<AccountRow>(
            "FROM console_api_tokens t \
             JOIN console_accounts a ON a.id = t.account_id \
             WHERE t.token_hash = $1 AND t.revoked_at_ms IS NULL AND a.disabled = 0",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Revokes a token of this account (`account_id` None: any account's, for the platform
    /// admin). `false` when there was no such live token.
    pub async fn revoke_api_token(
        &self,
        id: &str,
        account_id: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE console_api_tokens SET revoked_at_ms = $1 \
             WHERE id = $2 AND revoked_at_ms IS NULL AND ($3 IS NULL OR account_id = $3)",
        )
        .bind(now_ms)
        .bind(id)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn api_tokens(&self, account_id: &str) -> Result<Vec<ApiTokenRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, account_id, label, created_at_ms, revoked_at_ms FROM console_api_tokens \
             WHERE account_id = $1 ORDER BY created_at_ms, id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every business, by name (the platform admin's list).
    pub async fn businesses(&self) -> Result<Vec<Business>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM businesses ORDER BY name, id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Name, timezone and language, if the business is still at `expected_version`.
    pub async fn edit_business_basics(
        &self,
        id: &str,
        expected_version: i64,
        name: &str,
        timezone: &str,
        language: &str,
        now_ms: i64,
    ) -> Result<EditOutcome, StoreError> {
        let q = sqlx::query(
            "UPDATE businesses SET name = $1, timezone = $2, language = $3, updated_at_ms = $4 \
             WHERE id = $5 AND updated_at_ms = $6",
        )
        .bind(name)
        .bind(timezone)
        .bind(language);
        self.versioned(q, id, expected_version, now_ms).await
    }

    /// The prompt of one channel (`None`: the default prompt), if still at `expected_version`.
    pub async fn edit_business_prompt(
        &self,
        id: &str,
        expected_version: i64,
        channel: Option<&str>,
        prompt: &str,
        now_ms: i64,
    ) -> Result<EditOutcome, StoreError> {
        let column = super::booking::prompt_column(channel);
        let sql = format!(
            "UPDATE businesses SET {column} = $1, updated_at_ms = $2 \
             WHERE id = $3 AND updated_at_ms = $4"
        );
        let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(prompt);
        self.versioned(q, id, expected_version, now_ms).await
    }

    /// The booking policy columns, if still at `expected_version`. The caller validates them
    /// (`crate::booking::policy`) first.
    pub async fn edit_business_policy(
        &self,
        id: &str,
        expected_version: i64,
        p: &PolicyColumns,
        now_ms: i64,
    ) -> Result<EditOutcome, StoreError> {
        let q = sqlx::query(
            "UPDATE businesses SET opening_hours_json = $1, allow_24_7 = $2, slot_size_min = $3, \
             min_notice_min = $4, booking_window_days = $5, require_phone_before_booking = $6, \
             concurrency_scope = $7, concurrency_limit = $8, updated_at_ms = $9 \
             WHERE id = $10 AND updated_at_ms = $11",
        )
        .bind(p.opening_hours_json.clone())
        .bind(i64::from(p.allow_24_7))
        .bind(p.slot_size_min)
        .bind(p.min_notice_min)
        .bind(p.booking_window_days)
        .bind(i64::from(p.require_phone_before_booking))
        .bind(p.concurrency_scope.as_str())
        .bind(p.concurrency_limit);
        self.versioned(q, id, expected_version, now_ms).await
    }

    /// Runs an `UPDATE … SET …, updated_at_ms = $n WHERE id = $n+1 AND updated_at_ms = $n+2`
    /// whose leading binds are done. The new version is `max(now, expected + 1)`, so two edits in
    /// one millisecond still differ.
    async fn versioned<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        id: &str,
        expected_version: i64,
        now_ms: i64,
    ) -> Result<EditOutcome, StoreError> {
        let version = now_ms.max(expected_version + 1);
        let done = q
            .bind(version)
            .bind(id.to_string())
            .bind(expected_version)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 1 {
            return Ok(EditOutcome::Saved(version));
        }
        Ok(match self.business_version(id).await? {
            Some(_) => EditOutcome::Conflict,
            None => EditOutcome::NotFound,
        })
    }

    /// Adds a Twilio number (`phone`) or WhatsApp `phone_number_id` (`whatsapp`) to a business.
    /// The lookup that routes calls and messages reads this table on every call and message,
    /// so the change applies to the next one.
    pub async fn add_business_address(
        &self,
        business_id: &str,
        channel: &str,
        address: &str,
    ) -> Result<AddressOutcome, StoreError> {
        let done = sqlx::query(
            "INSERT INTO business_numbers (channel, address, business_id) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(channel)
        .bind(address)
        .bind(business_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(AddressOutcome::Added);
        }
        Ok(match self.business_id_by_number(channel, address).await? {
            Some(owner) if owner == business_id => AddressOutcome::AlreadyThis,
            _ => AddressOutcome::OwnedByAnother,
        })
    }

    /// Removes one of the business's addresses; false if it had no such address.
    pub async fn remove_business_address(
        &self,
        business_id: &str,
        channel: &str,
        address: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM business_numbers WHERE channel = $1 AND address = $2 AND business_id = $3",
        )
        .bind(channel)
        .bind(address)
        .bind(business_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves the business's version on, so the agent's cached settings (rooms) rebuild on the
    /// next turn. Not a versioned edit: rooms and documents are rows of their own.
    async fn touch_business(&self, business_id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE businesses SET updated_at_ms = CASE WHEN updated_at_ms >= $1 \
             THEN updated_at_ms + 1 ELSE $1 END WHERE id = $2",
        )
        .bind(now_ms)
        .bind(business_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A new active room; returns its id.
    pub async fn add_room(
        &self,
        business_id: &str,
        name: &str,
        aliases: &[String],
        concurrency_limit: i64,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        let id = super::booking::new_id("room");
        sqlx::query(
            "INSERT INTO resources (id, business_id, name, aliases, concurrency_limit, active) \
             VALUES ($1, $2, $3, $4, $5, 1)",
        )
        .bind(&id)
        .bind(business_id)
        .bind(name)
        .bind(aliases.join("|"))
        .bind(concurrency_limit)
        .execute(&self.pool)
        .await?;
        self.touch_business(business_id, now_ms).await?;
        Ok(id)
    }

    /// Renames an active room (name, other names, limit); false if the business has no such room.
    pub async fn edit_room(
        &self,
        business_id: &str,
        id: &str,
        name: &str,
        aliases: &[String],
        concurrency_limit: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE resources SET name = $1, aliases = $2, concurrency_limit = $3 \
             WHERE id = $4 AND business_id = $5 AND active = 1",
        )
        .bind(name)
        .bind(aliases.join("|"))
        .bind(concurrency_limit)
        .bind(id)
        .bind(business_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            self.touch_business(business_id, now_ms).await?;
        }
        Ok(done.rows_affected() == 1)
    }

    /// Retires a room (it stays in the table, so past appointments keep its name) unless booked
    /// appointments in it end after `now_ms`: then nothing changes and their count is returned.
    pub async fn remove_room(
        &self,
        business_id: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<RoomRemoval, StoreError> {
        let done = sqlx::query(
            "UPDATE resources SET active = 0 WHERE id = $1 AND business_id = $2 AND active = 1 \
             AND NOT EXISTS (SELECT 1 FROM appointments WHERE resource_id = $1 \
             AND business_id = $2 AND status = 'booked' AND end_ms > $3)",
        )
        .bind(id)
        .bind(business_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            self.touch_business(business_id, now_ms).await?;
            return Ok(RoomRemoval::Removed);
        }
        let (live, future): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM resources WHERE id = $1 AND business_id = $2 \
             AND active = 1) AS live, (SELECT COUNT(*) FROM appointments WHERE resource_id = $1 \
             AND business_id = $2 AND status = 'booked' AND end_ms > $3) AS future",
        )
        .bind(id)
        .bind(business_id)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(if live == 0 {
            RoomRemoval::NotFound
        } else {
            RoomRemoval::HasFutureBookings(future)
        })
    }

    /// Adds a knowledge document (`id` None) or rewrites one of the business's; false if the
    /// business has no document with that id. The agent's retrieval reads documents from the
    /// table on every question, so the next turn sees the change.
    pub async fn put_document(
        &self,
        business_id: &str,
        id: Option<&str>,
        kind: &str,
        title: &str,
        body: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some(id) = id else {
            let id = super::booking::new_id("doc");
            sqlx::query(
                "INSERT INTO business_documents (id, business_id, kind, title, body) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(business_id)
            .bind(kind)
            .bind(title)
            .bind(body)
            .execute(&self.pool)
            .await?;
            return Ok(Some(id));
        };
        let done = sqlx::query(
            "UPDATE business_documents SET kind = $1, title = $2, body = $3 \
             WHERE id = $4 AND business_id = $5",
        )
        .bind(kind)
        .bind(title)
        .bind(body)
        .bind(id)
        .bind(business_id)
        .execute(&self.pool)
        .await?;
        Ok((done.rows_affected() == 1).then(|| id.to_string()))
    }

    /// Deletes one of the business's documents; false if it had no such document.
    pub async fn delete_document(&self, business_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM business_documents WHERE id = $1 AND business_id = $2")
            .bind(id)
            .bind(business_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A business's outbox events, newest first, at most `limit`.
    pub async fn outbox_of_business(
        &self,
        business_id: &str,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(select::<OutboxRow>(
            "FROM outbox WHERE business_id = $1 \
             ORDER BY created_at_ms DESC, id DESC LIMIT $2",
        )
        .bind(business_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Puts a failed event (pending, waiting out its backoff) or a dead one back in the queue,
    /// due now, for one more attempt by the worker. Only one retry takes: once requeued (due, or
    /// leased by a worker) the event is not failed any more, so a second call changes nothing and
    /// returns false, as it does for another business's event.
    pub async fn outbox_retry(
        &self,
        business_id: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET status = 'pending', next_attempt_at_ms = $1, locked_until_ms = 0, \
             done_at_ms = NULL WHERE id = $2 AND business_id = $3 AND (status = 'dead' OR \
             (status = 'pending' AND last_error IS NOT NULL AND next_attempt_at_ms > $1 \
             AND locked_until_ms <= $1))",
        )
        .bind(now_ms)
        .bind(id)
        .bind(business_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A business's customers, most recently active first; `search` matches the name
    /// (case-insensitive) or a run of the phone's digits (a leading 0 of a local number is
    /// dropped, so `0501234567` finds `+972501234567`).
    pub async fn customers_of_business(
        &self,
        business_id: &str,
        search: &str,
        limit: i64,
    ) -> Result<Vec<CustomerRow>, StoreError> {
        let search = search.trim();
        let digits: String = search.chars().filter(char::is_ascii_digit).collect();
        let digits = digits.strip_prefix('0').unwrap_or(&digits);
        let name_like = format!("%{}%", search.to_lowercase());
        // Empty: a text search looks at names only.
        let phone_like = if digits.is_empty() {
            String::new()
        } else {
            format!("%{digits}%")
        };
        Ok(select::<CustomerRow>(
            "FROM customers WHERE business_id = $1 AND ($2 = '' \
             OR LOWER(COALESCE(name, '')) LIKE $3 OR ($4 <> '' AND phone LIKE $4)) \
             ORDER BY updated_at_ms DESC, id LIMIT $5",
        )
        .bind(business_id)
        .bind(search)
        .bind(name_like)
        .bind(phone_like)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One of the business's customers.
    pub async fn customer_of_business(
        &self,
        business_id: &str,
        id: &str,
    ) -> Result<Option<CustomerRow>, StoreError> {
        Ok(
            select::<CustomerRow>("FROM customers WHERE business_id = $1 AND id = $2")
                .bind(business_id)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Every appointment of a customer (by phone) with a business, any status, newest first.
    pub async fn appointments_of_customer(
        &self,
        business_id: &str,
        phone: &str,
    ) -> Result<Vec<super::booking::Appointment>, StoreError> {
        let mut all = self.appointments_for_business(business_id).await?;
        all.retain(|a| a.customer_phone.as_deref() == Some(phone));
        all.reverse();
        Ok(all)
    }

    /// The conversation ids (call sids, WhatsApp thread ids) a customer's messages with a
    /// business were stored under on `channel`, newest first.
    pub async fn customer_conversations(
        &self,
        business_id: &str,
        phone: &str,
        channel: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT conversation_id FROM conversation_messages \
             WHERE business_id = $1 AND customer_phone = $2 AND channel = $3 \
             GROUP BY conversation_id ORDER BY MAX(at_ms) DESC",
        )
        .bind(business_id)
        .bind(phone)
        .bind(channel)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The WhatsApp threads of a customer (by phone, with or without `+`) with a business.
    pub async fn customer_whatsapp_threads(
        &self,
        business_id: &str,
        phone: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM whatsapp_conversations WHERE business_id = $1 \
             AND (customer_phone = $2 OR customer_phone = $3 OR customer_key = $3) \
             ORDER BY last_at_ms DESC, id",
        )
        .bind(business_id)
        .bind(phone)
        .bind(phone.trim_start_matches('+'))
        .fetch_all(&self.pool)
        .await?)
    }

    /// A WhatsApp thread's messages, oldest first.
    pub async fn whatsapp_thread(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<ThreadMessage>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {}, reply_to FROM whatsapp_messages \
             WHERE conversation_id = $1 ORDER BY at_ms, id",
            StoredMessage::COLUMNS
        )))
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
