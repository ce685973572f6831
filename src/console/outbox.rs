//! A business's outbox (WhatsApp confirmations, call summaries): each event's state, attempts
//! and last error, newest first, filterable by state; failed and dead events can be retried by
//! the owner. A retry puts the event back in the queue due now ([`Store::outbox_retry`]), where
//! the outbox worker makes one more attempt with the same idempotency key; a second retry of the
//! same failure changes nothing.
//!
//! States as shown: `pending` (waiting for its first attempt), `failed` (an attempt failed; the
//! next one is scheduled), `dead` (given up), `sent` (delivered).
//!
//! [`Store::outbox_retry`]: crate::store::Store::outbox_retry

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::routing::{get, post};
use serde::Serialize;

use super::pages::{Ctx, text_dir};
use super::{Answer, Console, ConsoleError};
use crate::store::booking::{OutboxRow, OutboxStatus};

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/b/{biz}/outbox", get(outbox))
        .route("/b/{biz}/outbox/{id}/retry", post(retry))
}

/// Most events one page lists.
const PAGE_EVENTS: i64 = 500;
const STATES: [&str; 4] = ["pending", "failed", "dead", "sent"];

/// The state an event is shown in (see the module doc).
fn state(row: &OutboxRow) -> &'static str {
    match row.status.as_str() {
        "delivered" => "sent",
        "dead" => "dead",
        _ if row.last_error.is_some() => "failed",
        _ => "pending",
    }
}

#[derive(Serialize)]
struct OutboxView {
    id: String,
    name: String,
    dir: &'static str,
    can_retry: bool,
    /// The state filter, if any.
    state: Option<String>,
    counts: Vec<(&'static str, usize)>,
    events: Vec<EventView>,
    message: Option<String>,
}

#[derive(Serialize)]
struct EventView {
    id: String,
    kind: String,
    key: String,
    state: &'static str,
    attempts: i64,
    last_error: Option<String>,
    created: String,
    /// When the next attempt is due (pending and failed events).
    next_attempt: Option<String>,
    done: Option<String>,
    retryable: bool,
}

#[derive(serde::Deserialize)]
struct OutboxQuery {
    state: Option<String>,
    msg: Option<String>,
}

async fn outbox(ctx: Ctx, Path(biz): Path<String>, Query(q): Query<OutboxQuery>) -> Answer {
    let b = ctx.business(&biz).await?;
    let filter = q.state.filter(|s| !s.is_empty());
    if let Some(f) = &filter
        && !STATES.contains(&f.as_str())
    {
        return Err(ConsoleError::invalid(
            "state",
            format!("{f:?}: want one of {}", STATES.join(", ")),
        ));
    }
    let policy = b.policy().map_err(crate::agent::BookingError::from)?;
    let when = |ms: i64| format!("{} {}", policy.date_iso(ms), policy.time_display(ms));
    let rows = ctx
        .c
        .rt
        .store
        .outbox_of_business(&b.id, PAGE_EVENTS)
        .await?;
    let counts = STATES
        .iter()
        .map(|s| (*s, rows.iter().filter(|r| state(r) == *s).count()))
        .collect();
    let can_retry = ctx.p.can_configure(&b.id).is_ok();
    let events = rows
        .iter()
        .filter(|r| filter.as_deref().is_none_or(|f| state(r) == f))
        .map(|r| {
            let state = state(r);
            EventView {
                id: r.id.clone(),
                kind: r.kind.clone(),
                key: r.idempotency_key.clone(),
                state,
                attempts: r.attempts,
                last_error: r.last_error.clone(),
                created: when(r.created_at_ms),
                next_attempt: (r.status == OutboxStatus::Pending)
                    .then(|| when(r.next_attempt_at_ms)),
                done: r.done_at_ms.map(when),
                retryable: matches!(state, "failed" | "dead"),
            }
        })
        .collect();
    ctx.render(
        "outbox.html",
        &OutboxView {
            id: b.id.clone(),
            name: b.name.clone(),
            dir: text_dir(&b.language),
            can_retry,
            state: filter,
            counts,
            events,
            message: q.msg,
        },
    )
}

/// Owner only: one more attempt for a failed or dead event.
async fn retry(ctx: Ctx, Path((biz, id)): Path<(String, String)>) -> Answer {
    ctx.p.can_configure(&biz)?;
    ctx.business(&biz).await?;
    let store = &ctx.c.rt.store;
    if !store.outbox_retry(&biz, &id, ctx.c.now_ms()).await? {
        let events = store.outbox_of_business(&biz, PAGE_EVENTS).await?;
        return Err(match events.iter().find(|e| e.id == id) {
            None => ConsoleError::NotFound,
            Some(e) => ConsoleError::Refused(format!(
                "event {id} is {}: only failed and dead events can be retried",
                match state(e) {
                    "failed" => "already queued for its next attempt",
                    other => other,
                }
            )),
        });
    }
    ctx.done(
        &format!("/console/b/{biz}/outbox?msg=requeued"),
        serde_json::json!({"requeued": id}),
    )
}
