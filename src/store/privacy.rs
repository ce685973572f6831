//! Privacy (issue 15): data retention and "forget this customer".
//!
//! * [`RetentionPlan::at`] is the pure decision: from `now` and `[retention]`, the cut-off before
//!   which each kind of personal data goes. [`Store::sweep_retention`] applies a plan; a thin loop
//!   in `app` runs it every `sweep_every_s`.
//! * [`Store::forget_customer`] removes one customer's conversations (messages, turns, calls,
//!   events, tool traces, summaries, dialog state), their customer record, and redacts their phone
//!   and name wherever a row must stay: appointments stay (the slot is the business's; the
//!   booking's time and resource remain, name and phone do not), WhatsApp inbox rows keep their
//!   dedup key (a late vendor retry must still be recognised) with the payload redacted, sent
//!   messages keep their delivery state with recipient and body redacted, outbox events are
//!   redacted and a still-pending one is given up (`dead`), so nothing is sent after the request.
//!
//! One transaction each, so a failure leaves nothing half-forgotten. Kav stores no call audio,
//! so there are no recordings to remove.

use std::collections::BTreeMap;

use sqlx::{Any, Transaction};

use super::{Store, StoreError};
use crate::config::RetentionConfig;

const DAY_MS: i64 = 86_400_000;
/// What a redacted JSON payload becomes.
pub const REDACTED_JSON: &str = "{\"redacted\":true}";
/// What a redacted name becomes (the column is NOT NULL).
pub const REDACTED_NAME: &str = "(forgotten)";

/// The wall clock in unix ms (for the sweep loop, the CLI and the API; the plan itself takes `now`).
pub use crate::clock::unix_ms as unix_now_ms;

/// Cut-offs (unix ms): rows older than these are removed. `None` = kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPlan {
    pub transcripts_before_ms: Option<i64>,
    pub tool_traces_before_ms: Option<i64>,
    pub whatsapp_bodies_before_ms: Option<i64>,
}

impl RetentionPlan {
    /// The plan at `now_ms`: `days` 0 keeps for ever.
    pub fn at(now_ms: i64, cfg: &RetentionConfig) -> Self {
        let cut = |days: u32| (days > 0).then(|| now_ms.saturating_sub(i64::from(days) * DAY_MS));
        Self {
            transcripts_before_ms: cut(cfg.transcripts_days),
            tool_traces_before_ms: cut(cfg.tool_traces_days),
            whatsapp_bodies_before_ms: cut(cfg.whatsapp_bodies_days),
        }
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Rows touched, by `table.action` (e.g. `turns.deleted`, `appointments.redacted`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct PrivacyReport(pub BTreeMap<&'static str, u64>);

impl PrivacyReport {
    fn add(&mut self, what: &'static str, n: u64) {
        if n > 0 {
            *self.0.entry(what).or_default() += n;
        }
    }

    /// Rows touched for `what` (0 when none).
    pub fn get(&self, what: &str) -> u64 {
        self.0.get(what).copied().unwrap_or(0)
    }

    /// Rows touched in all.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// The two spellings a phone is stored under: E.164 (`+972…`, appointments, calls) and bare
/// digits (WhatsApp customer keys). Local Israeli numbers are normalised first.
fn phone_forms(phone: &str) -> Result<(String, String), StoreError> {
    let e164 = crate::booking::parse::normalize_phone(phone);
    let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 {
        return Err(StoreError::BadValue {
            column: "phone".into(),
            value: phone.to_string(),
            expected: "a phone number",
        });
    }
    Ok((format!("+{digits}"), digits))
}

async fn exec(
    tx: &mut Transaction<'static, Any>,
    sql: &'static str,
    binds: &[&str],
) -> Result<u64, StoreError> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(*b);
    }
    Ok(q.execute(&mut **tx).await?.rows_affected())
}

async fn exec_before(
    tx: &mut Transaction<'static, Any>,
    sql: &'static str,
    before_ms: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(sql)
        .bind(before_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

async fn strings(
    tx: &mut Transaction<'static, Any>,
    sql: &'static str,
    binds: &[&str],
) -> Result<Vec<String>, StoreError> {
    let mut q = sqlx::query_scalar(sql);
    for b in binds {
        q = q.bind(*b);
    }
    Ok(q.fetch_all(&mut **tx).await?)
}

impl Store {
    /// Applies a retention plan in one transaction.
    pub async fn sweep_retention(&self, plan: &RetentionPlan) -> Result<PrivacyReport, StoreError> {
        let mut report = PrivacyReport::default();
        if plan.is_empty() {
            return Ok(report);
        }
        let mut tx = self.begin_write().await?;
        if let Some(t) = plan.transcripts_before_ms {
            for (what, sql) in [
                ("turns.deleted", "DELETE FROM turns WHERE at_ms < $1"),
                (
                    "call_events.deleted",
                    "DELETE FROM call_events WHERE at_ms < $1",
                ),
                (
                    "calls.deleted",
                    "DELETE FROM calls WHERE COALESCE(ended_at_ms, started_at_ms) < $1",
                ),
                (
                    "conversation_messages.deleted",
                    "DELETE FROM conversation_messages WHERE at_ms < $1",
                ),
                (
                    "conversation_summaries.deleted",
                    "DELETE FROM conversation_summaries WHERE at_ms < $1",
                ),
            ] {
                report.add(what, exec_before(&mut tx, sql, t).await?);
            }
        }
        if let Some(t) = plan.tool_traces_before_ms {
            report.add(
                "tool_traces.deleted",
                exec_before(&mut tx, "DELETE FROM tool_traces WHERE at_ms < $1", t).await?,
            );
        }
        if let Some(t) = plan.whatsapp_bodies_before_ms {
            for (what, sql) in [
                (
                    "whatsapp_messages.deleted",
                    "DELETE FROM whatsapp_messages WHERE at_ms < $1",
                ),
                (
                    "whatsapp_inbox.redacted",
                    "UPDATE whatsapp_inbox SET payload_json = '{\"redacted\":true}' \
                     WHERE state IN ('done', 'failed') AND received_at_ms < $1 \
                       AND payload_json <> '{\"redacted\":true}'",
                ),
                (
                    "whatsapp_outbound.redacted",
                    "UPDATE whatsapp_outbound SET body_json = '{\"redacted\":true}' \
                     WHERE status <> 'pending' AND updated_at_ms < $1 \
                       AND body_json <> '{\"redacted\":true}'",
                ),
                (
                    "outbox.redacted",
                    "UPDATE outbox SET payload_json = '{\"redacted\":true}', result = NULL \
                     WHERE status <> 'pending' AND done_at_ms < $1 \
                       AND payload_json <> '{\"redacted\":true}'",
                ),
            ] {
                report.add(what, exec_before(&mut tx, sql, t).await?);
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Forgets one customer (by phone, any spelling), of one business or of all (`business` None).
    /// See the module documentation for what is removed and what is redacted.
    pub async fn forget_customer(
        &self,
        phone: &str,
        business: Option<&str>,
        now_ms: i64,
    ) -> Result<PrivacyReport, StoreError> {
        let (e164, digits) = phone_forms(phone)?;
        let biz = business.unwrap_or("");
        let like = format!("%{digits}%");
        let mut report = PrivacyReport::default();
        let mut tx = self.begin_write().await?;
        let who = [e164.as_str(), digits.as_str(), biz];

        // Every conversation of theirs: WhatsApp threads, calls that stored messages or made a
        // booking for this phone, and (all businesses only) calls whose parameters name it.
        let whatsapp = strings(
            &mut tx,
            "SELECT id FROM whatsapp_conversations \
             WHERE (customer_phone IN ($1, $2) OR customer_key IN ($1, $2)) \
               AND ($3 = '' OR business_id = $3)",
            &who,
        )
        .await?;
        let mut conversations = whatsapp.clone();
        for sql in [
            "SELECT DISTINCT conversation_id FROM conversation_messages \
             WHERE customer_phone IN ($1, $2) AND ($3 = '' OR business_id = $3)",
            "SELECT DISTINCT conversation_id FROM appointments \
             WHERE customer_phone IN ($1, $2) AND ($3 = '' OR business_id = $3)",
        ] {
            conversations.extend(strings(&mut tx, sql, &who).await?);
        }
        if business.is_none() {
            conversations.extend(
                strings(
                    &mut tx,
                    "SELECT call_sid FROM calls WHERE parameters_json LIKE $1",
                    &[&like],
                )
                .await?,
            );
        }
        conversations.sort();
        conversations.dedup();

        for conv in &conversations {
            let c = [conv.as_str()];
            for (what, sql) in [
                (
                    "turns.deleted",
                    "DELETE FROM turns WHERE call_id IN (SELECT id FROM calls WHERE call_sid = $1)",
                ),
                (
                    "call_events.deleted",
                    "DELETE FROM call_events WHERE call_id IN \
                     (SELECT id FROM calls WHERE call_sid = $1)",
                ),
                ("calls.deleted", "DELETE FROM calls WHERE call_sid = $1"),
                (
                    "conversation_messages.deleted",
                    "DELETE FROM conversation_messages WHERE conversation_id = $1",
                ),
                (
                    "conversation_summaries.deleted",
                    "DELETE FROM conversation_summaries WHERE conversation_id = $1",
                ),
                (
                    "tool_traces.deleted",
                    "DELETE FROM tool_traces WHERE conversation_id = $1",
                ),
                (
                    "conversation_state.deleted",
                    "DELETE FROM conversation_state WHERE conversation_id = $1",
                ),
                (
                    "whatsapp_messages.deleted",
                    "DELETE FROM whatsapp_messages WHERE conversation_id = $1",
                ),
                (
                    "whatsapp_inbox.redacted",
                    "UPDATE whatsapp_inbox SET payload_json = '{\"redacted\":true}' \
                     WHERE conversation_id = $1 AND state IN ('done', 'failed')",
                ),
                (
                    "whatsapp_outbound.redacted",
                    "UPDATE whatsapp_outbound SET recipient = '', body_json = '{\"redacted\":true}', \
                         status = CASE WHEN status = 'pending' THEN 'failed' ELSE status END, \
                         error_detail = CASE WHEN status = 'pending' THEN 'customer forgotten' \
                                        ELSE error_detail END \
                     WHERE conversation_id = $1",
                ),
                (
                    "whatsapp_conversations.deleted",
                    "DELETE FROM whatsapp_conversations WHERE id = $1",
                ),
            ] {
                report.add(what, exec(&mut tx, sql, &c).await?);
            }
        }
        // A queued inbox event of theirs is still processed (it is in flight); its reply is
        // recorded under a new conversation row. Forget again after it if that matters.

        report.add(
            "appointments.redacted",
            sqlx::query(
                "UPDATE appointments SET customer_name = $4, customer_phone = NULL, \
                     customer_id = NULL, updated_at_ms = $5 \
                 WHERE customer_phone IN ($1, $2) AND ($3 = '' OR business_id = $3)",
            )
            .bind(&e164)
            .bind(&digits)
            .bind(biz)
            .bind(REDACTED_NAME)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        );
        report.add(
            "customers.deleted",
            exec(
                &mut tx,
                "DELETE FROM customers \
                 WHERE phone IN ($1, $2) AND ($3 = '' OR business_id = $3)",
                &who,
            )
            .await?,
        );
        // Outbox events that name the phone (confirmations, call.ended): redacted; a pending one
        // is given up so nothing reaches the customer after they asked to be forgotten.
        report.add(
            "outbox.redacted",
            sqlx::query(
                "UPDATE outbox SET payload_json = '{\"redacted\":true}', result = NULL, \
                     status = CASE WHEN status = 'pending' THEN 'dead' ELSE status END, \
                     last_error = CASE WHEN status = 'pending' THEN 'customer forgotten' \
                                  ELSE last_error END, \
                     done_at_ms = COALESCE(done_at_ms, $3) \
                 WHERE payload_json LIKE $1 AND ($2 = '' OR business_id = $2)",
            )
            .bind(&like)
            .bind(biz)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        );
        // The staff assistant's records that name the phone: the audit keeps who ran which tool,
        // when, and the counts; its arguments and per-item rows (names, phones) are dropped. The
        // staff chat keeps its order; the messages that name the phone lose their text.
        for (what, sql) in [
            (
                "staff_audit.redacted",
                "UPDATE staff_audit SET args_json = '{\"redacted\":true}', items_json = '[]' \
                 WHERE (args_json LIKE $1 OR items_json LIKE $1) AND ($2 = '' OR business_id = $2)",
            ),
            (
                "staff_chat_messages.redacted",
                "UPDATE staff_chat_messages SET text = '[redacted]', arguments_json = NULL \
                 WHERE (text LIKE $1 OR arguments_json LIKE $1) AND ($2 = '' OR business_id = $2)",
            ),
        ] {
            report.add(what, exec(&mut tx, sql, &[like.as_str(), biz]).await?);
        }
        tx.commit().await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_keeps_everything() {
        let plan = RetentionPlan::at(1_000 * DAY_MS, &RetentionConfig::default());
        assert!(plan.is_empty());
    }

    #[test]
    fn cut_offs_are_now_minus_days() {
        let now = 400 * DAY_MS + 123;
        let cfg = RetentionConfig {
            transcripts_days: 30,
            tool_traces_days: 7,
            whatsapp_bodies_days: 0,
            sweep_every_s: 60,
        };
        let plan = RetentionPlan::at(now, &cfg);
        assert_eq!(plan.transcripts_before_ms, Some(370 * DAY_MS + 123));
        assert_eq!(plan.tool_traces_before_ms, Some(393 * DAY_MS + 123));
        assert_eq!(plan.whatsapp_bodies_before_ms, None);
        // Later "now", later cut-off: the same rows or more go.
        let later = RetentionPlan::at(now + DAY_MS, &cfg);
        assert!(later.transcripts_before_ms > plan.transcripts_before_ms);
    }

    #[test]
    fn phones_in_both_spellings() {
        assert_eq!(
            phone_forms("050-123 4567").unwrap(),
            ("+972501234567".into(), "972501234567".into())
        );
        assert_eq!(
            phone_forms("+1 415 555 0100").unwrap(),
            ("+14155550100".into(), "14155550100".into())
        );
        assert!(phone_forms("12").is_err());
    }
}
