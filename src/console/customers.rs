//! Customers and their cross-channel history. The list (`?q=` searches name or phone digits)
//! and a customer page: their appointments, their phone calls (transcript and the per-turn
//! table with latency marks, each turn with the tool calls the agent made in it) and their
//! WhatsApp threads (messages, our replies with their delivery statuses). One customer is one
//! phone number per business, whatever the channel.
//!
//! Phones are shown in full only to the business's own accounts ([`Ctx::shown_phone`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::routing::get;
use serde::Serialize;

use super::bookings::AppointmentView;
use super::pages::{Ctx, text_dir};
use super::{Answer, Console, ConsoleError};
use crate::booking::policy::Policy;
use crate::store::booking::ToolTraceRow;
use crate::store::console::CustomerRow;
use crate::store::{TurnRow, whatsapp::OutboundRow};

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/b/{biz}/customers", get(customers))
        .route("/b/{biz}/customers/{id}", get(customer))
}

/// Most customers one list shows.
const LIST_LIMIT: i64 = 200;
/// Most messages shown per WhatsApp thread.
const THREAD_LIMIT: usize = 500;

#[derive(Serialize)]
struct CustomersView {
    id: String,
    name: String,
    dir: &'static str,
    q: String,
    customers: Vec<CustomerView>,
}

#[derive(Serialize)]
struct CustomerView {
    id: String,
    name: Option<String>,
    phone: String,
    status: String,
    first_channel: String,
    last_channel: String,
    since: String,
    last_seen: String,
}

fn customer_view(ctx: &Ctx, biz: &str, policy: &Policy, c: CustomerRow) -> CustomerView {
    let when = |ms: i64| format!("{} {}", policy.date_iso(ms), policy.time_display(ms));
    CustomerView {
        phone: ctx.shown_phone(biz, &c.phone),
        since: when(c.created_at_ms),
        last_seen: when(c.updated_at_ms),
        id: c.id,
        name: c.name,
        status: c.status,
        first_channel: c.first_channel,
        last_channel: c.last_channel,
    }
}

#[derive(serde::Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

async fn customers(ctx: Ctx, Path(biz): Path<String>, Query(q): Query<SearchQuery>) -> Answer {
    let b = ctx.business(&biz).await?;
    let policy = b.policy().map_err(crate::agent::BookingError::from)?;
    let q = q.q.unwrap_or_default();
    if q.chars().count() > 100 {
        return Err(ConsoleError::invalid(
            "q",
            "search for at most 100 characters",
        ));
    }
    let rows = ctx
        .c
        .rt
        .store
        .customers_of_business(&b.id, &q, LIST_LIMIT)
        .await?;
    let customers = rows
        .into_iter()
        .map(|c| customer_view(&ctx, &b.id, &policy, c))
        .collect();
    ctx.render(
        "customers.html",
        &CustomersView {
            dir: text_dir(&b.language),
            id: b.id,
            name: b.name,
            q,
            customers,
        },
    )
}

#[derive(Serialize)]
struct CustomerPage {
    id: String,
    name: String,
    dir: &'static str,
    customer: CustomerView,
    appointments: Vec<AppointmentView>,
    calls: Vec<CallView>,
    threads: Vec<ThreadView>,
}

#[derive(Serialize)]
struct CallView {
    call_sid: String,
    started: String,
    ended: Option<String>,
    end_reason: Option<String>,
    turns: Vec<TurnView>,
    /// Tool calls not tied to a recorded turn.
    other_tools: Vec<ToolTraceRow>,
}

#[derive(Serialize)]
struct TurnView {
    #[serde(flatten)]
    turn: TurnRow,
    tools: Vec<ToolTraceRow>,
}

#[derive(Serialize)]
struct ThreadView {
    id: String,
    messages: Vec<MessageView>,
    /// Outbound messages not tied to a reply (confirmations, summaries).
    other_outbound: Vec<OutboundView>,
}

#[derive(Serialize)]
struct MessageView {
    role: String,
    text: String,
    at: String,
    dir: &'static str,
    /// Delivery status of each part of our reply.
    delivery: Vec<OutboundView>,
}

#[derive(Serialize)]
struct OutboundView {
    status: String,
    error: Option<String>,
}

fn outbound_view(o: &OutboundRow) -> OutboundView {
    OutboundView {
        status: o.status.as_str().to_string(),
        error: match (o.error_code, &o.error_detail) {
            (None, None) => None,
            (code, detail) => Some(format!(
                "{}{}",
                code.map(|c| format!("{c} ")).unwrap_or_default(),
                detail.as_deref().unwrap_or("")
            )),
        },
    }
}

async fn customer(ctx: Ctx, Path((biz, id)): Path<(String, String)>) -> Answer {
    let b = ctx.business(&biz).await?;
    let store = &ctx.c.rt.store;
    // Another business's customer id is as absent as a missing one.
    let c = store
        .customer_of_business(&b.id, &id)
        .await?
        .ok_or(ConsoleError::NotFound)?;
    let policy = b.policy().map_err(crate::agent::BookingError::from)?;
    let when = |ms: i64| format!("{} {}", policy.date_iso(ms), policy.time_display(ms));
    let rooms = store.resources(&b.id).await?;
    let appointments: Vec<AppointmentView> = store
        .appointments_of_customer(&b.id, &c.phone)
        .await?
        .into_iter()
        .map(|a| AppointmentView::new(&ctx, &policy, &rooms, a))
        .collect();
    // Calls: the conversations the customer's phone turns were stored under, and those their
    // appointments were made in, that are calls.
    let mut sids = store
        .customer_conversations(&b.id, &c.phone, "phone")
        .await?;
    for a in store.appointments_of_customer(&b.id, &c.phone).await? {
        if a.channel == "phone" && !sids.contains(&a.conversation_id) {
            sids.push(a.conversation_id);
        }
    }
    let mut calls = Vec::new();
    for sid in sids {
        let Some(call) = store.call(&sid).await? else {
            continue;
        };
        let mut traces: BTreeMap<i64, Vec<ToolTraceRow>> = BTreeMap::new();
        for t in store.tool_traces(&sid).await? {
            traces.entry(t.turn).or_default().push(t);
        }
        let turns: Vec<TurnView> = store
            .call_turns(&sid)
            .await?
            .into_iter()
            .map(|turn| TurnView {
                tools: traces.remove(&i64::from(turn.turn)).unwrap_or_default(),
                turn,
            })
            .collect();
        calls.push(CallView {
            call_sid: call.call_sid,
            started: when(call.started_at_ms),
            ended: call.ended_at_ms.map(when),
            end_reason: call.end_reason,
            turns,
            other_tools: traces.into_values().flatten().collect(),
        });
    }
    calls.sort_by(|a, b| b.started.cmp(&a.started));
    let mut threads = Vec::new();
    for thread in store.customer_whatsapp_threads(&b.id, &c.phone).await? {
        let outbound = store.whatsapp_outbound_for(&thread).await?;
        let stored = store.whatsapp_thread(&thread).await?;
        let replies: Vec<String> = stored
            .iter()
            .filter_map(|m| m.reply_to.as_ref().map(|r| format!("{r}:")))
            .collect();
        let messages: Vec<MessageView> = stored
            .into_iter()
            .rev()
            .take(THREAD_LIMIT)
            .rev()
            .map(|m| MessageView {
                delivery: m
                    .reply_to
                    .as_ref()
                    .map(|r| {
                        let prefix = format!("{r}:");
                        outbound
                            .iter()
                            .filter(|o| o.id.starts_with(&prefix))
                            .map(outbound_view)
                            .collect()
                    })
                    .unwrap_or_default(),
                dir: super::business::content_dir(&m.message.text),
                at: when(m.message.at_ms),
                role: m.message.role,
                text: m.message.text,
            })
            .collect();
        let other_outbound = outbound
            .iter()
            .filter(|o| !replies.iter().any(|p| o.id.starts_with(p)))
            .map(outbound_view)
            .collect();
        threads.push(ThreadView {
            id: thread,
            messages,
            other_outbound,
        });
    }
    ctx.render(
        "customer.html",
        &CustomerPage {
            dir: text_dir(&b.language),
            customer: customer_view(&ctx, &b.id, &policy, c),
            id: b.id,
            name: b.name,
            appointments,
            calls,
            threads,
        },
    )
}
