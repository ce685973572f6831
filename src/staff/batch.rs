//! The change tools (`staff_batch_reserve`, `staff_batch_modify`, `staff_batch_cancel`): plan the
//! items, ask for confirmation above `confirm_over`, commit each valid item through the booking
//! use cases, tell affected customers through the outbox, and write one audit record.

use std::collections::BTreeMap;

use jiff::civil::{DateTime, Time};
use serde_json::{Value, json};

use super::query::{appointment_json, customers_among, select};
use super::tools::{
    BATCH_CANCEL, BATCH_MODIFY, BATCH_RESERVE, CancelArgs, Changes, Cx, MAX_BATCH_ITEMS,
    ModifyArgs, ReserveArgs, ReserveItem, SAMPLE_ROWS, Verbosity, fail, parse,
};
use crate::agent::usecases::{Refused, ReserveRequest, start_ms_of};
use crate::booking::outbox::{KIND_WHATSAPP_SEND, SendPayload};
use crate::booking::parse::normalize_phone;
use crate::console::auth::{random_token, sha256_hex};
use crate::providers::{OutboundBody, OutboundMessage};
use crate::store::booking::{Appointment, AppointmentStatus, NewOutboxEvent, new_id};
use crate::store::staff::{AuditRow, ConfirmationRow, TokenUse};

/// One thing a batch will do.
enum Item {
    Reserve(ReserveItem),
    Modify {
        current: Appointment,
        set: Changes,
    },
    Cancel(Appointment),
    /// Refused while planning (an unknown id, another business's id): reported, never run.
    Invalid {
        appointment_id: String,
        error: &'static str,
        reason: String,
    },
}

struct Plan {
    items: Vec<Item>,
    notify: bool,
    verbosity: Verbosity,
    confirm: Option<String>,
}

/// The outcome of one item: its row in the answer and the audit.
struct Done {
    ok: bool,
    row: Value,
    /// Moved or cancelled: the customer is to be told.
    affected: bool,
    /// A customer to tell: (phone, name, what happened); `None` when affected without a phone.
    notice: Option<(String, String, String)>,
}

fn failed(mut row: Value, error: &str, reason: impl Into<String>) -> Done {
    row["ok"] = false.into();
    row["error"] = error.into();
    row["reason"] = reason.into().into();
    Done {
        ok: false,
        row,
        affected: false,
        notice: None,
    }
}

fn refused(row: Value, r: &Refused) -> Done {
    failed(row, r.code(), r.to_string())
}

/// Too many items, or none named: refused before anything is looked up.
fn check_size(n: usize) -> Result<(), Value> {
    if n > MAX_BATCH_ITEMS {
        return Err(fail(
            "too_many_items",
            format!("{n} items; one batch takes at most {MAX_BATCH_ITEMS}: narrow the filter"),
        ));
    }
    Ok(())
}

/// Explicit ids → this business's appointments; any other id is an invalid item that says
/// nothing about whether it exists elsewhere.
async fn explicit(cx: &Cx<'_>, ids: &[String]) -> Vec<Result<Appointment, Item>> {
    let b = cx.bookings();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(match b.appointment(id).await {
            Ok(a) if a.status != AppointmentStatus::Booked => Err(Item::Invalid {
                appointment_id: id.clone(),
                error: "not_found",
                reason: "that booking is already cancelled".into(),
            }),
            Ok(a) => Ok(a),
            Err(Refused::Store(e)) => Err(Item::Invalid {
                appointment_id: id.clone(),
                error: "internal",
                reason: e.to_string(),
            }),
            Err(_) => Err(Item::Invalid {
                appointment_id: id.clone(),
                error: "not_found",
                reason: "no such booking in this business".into(),
            }),
        });
    }
    out
}

/// A filter naming several different customers is a question, not a guess.
fn ambiguous(filter_name: Option<&str>, selected: &[Appointment]) -> Result<(), Value> {
    let candidates = customers_among(selected);
    if let Some(name) = filter_name
        && candidates.len() > 1
    {
        return Err(json!({"ok": false, "error": "ambiguous_name",
            "reason": format!("{name:?} matches {} different customers; ask which one (give the phone or the booking ids)", candidates.len()),
            "candidates": candidates}));
    }
    Ok(())
}

async fn plan(cx: &Cx<'_>, tool: &str, args: &Value) -> Result<Plan, Value> {
    match tool {
        BATCH_RESERVE => {
            let a: ReserveArgs = parse(args)?;
            check_size(a.items.len())?;
            Ok(Plan {
                items: a.items.into_iter().map(Item::Reserve).collect(),
                notify: a.notify.unwrap_or(true),
                verbosity: a.verbosity.unwrap_or_default(),
                confirm: a.confirm,
            })
        }
        BATCH_MODIFY => {
            let a: ModifyArgs = parse(args)?;
            let items = match (a.items, a.filter, a.set) {
                (Some(items), None, None) => {
                    check_size(items.len())?;
                    let ids: Vec<String> = items.iter().map(|i| i.appointment_id.clone()).collect();
                    explicit(cx, &ids)
                        .await
                        .into_iter()
                        .zip(items)
                        .map(|(found, item)| match found {
                            Ok(current) => Item::Modify {
                                current,
                                set: item.set,
                            },
                            Err(invalid) => invalid,
                        })
                        .collect()
                }
                (None, Some(filter), Some(set)) => {
                    let selected = select(cx, &filter, true).await?;
                    ambiguous(filter.name.as_deref(), &selected)?;
                    check_size(selected.len())?;
                    selected
                        .into_iter()
                        .map(|current| Item::Modify {
                            current,
                            set: set.clone(),
                        })
                        .collect()
                }
                _ => {
                    return Err(fail(
                        "bad_arguments",
                        "give `items` (each with its `set`), or `filter` and `set`",
                    ));
                }
            };
            Ok(Plan {
                items,
                notify: a.notify.unwrap_or(true),
                verbosity: a.verbosity.unwrap_or_default(),
                confirm: a.confirm,
            })
        }
        BATCH_CANCEL => {
            let a: CancelArgs = parse(args)?;
            let items = match (a.appointment_ids, a.filter) {
                (Some(ids), None) => {
                    check_size(ids.len())?;
                    explicit(cx, &ids)
                        .await
                        .into_iter()
                        .map(|found| found.map(Item::Cancel).unwrap_or_else(|invalid| invalid))
                        .collect()
                }
                (None, Some(filter)) => {
                    let selected = select(cx, &filter, true).await?;
                    ambiguous(filter.name.as_deref(), &selected)?;
                    check_size(selected.len())?;
                    selected.into_iter().map(Item::Cancel).collect()
                }
                _ => {
                    return Err(fail("bad_arguments", "give `appointment_ids` or `filter`"));
                }
            };
            Ok(Plan {
                items,
                notify: a.notify.unwrap_or(true),
                verbosity: a.verbosity.unwrap_or_default(),
                confirm: a.confirm,
            })
        }
        other => Err(fail(
            "unknown_tool",
            format!("no staff tool named {other:?}"),
        )),
    }
}

/// The item as the preview and the answer show it before it runs.
fn item_row(cx: &Cx<'_>, item: &Item) -> Value {
    match item {
        Item::Reserve(r) => json!({"start_iso": r.start_iso, "room": r.room,
            "customer_name": r.customer_name, "customer_phone": r.customer_phone}),
        Item::Modify { current, set } => {
            let mut row = appointment_json(cx, current);
            row["set"] = serde_json::to_value(set).unwrap_or(Value::Null);
            row
        }
        Item::Cancel(current) => appointment_json(cx, current),
        Item::Invalid { appointment_id, .. } => json!({"appointment_id": appointment_id}),
    }
}

/// JSON with object keys sorted at every level, for digests that do not depend on key order.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            serde_json::to_value(sorted).unwrap_or(Value::Null)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The arguments without what does not change the batch (`confirm`, `verbosity`).
fn binding_args(args: &Value) -> Value {
    let mut args = canonical(args);
    if let Some(map) = args.as_object_mut() {
        map.remove("confirm");
        map.remove("verbosity");
    }
    args
}

/// What a token is bound to: the tool, its arguments and the bookings they selected.
fn binding(tool: &str, args: &Value, items: &[Item]) -> String {
    let ids: Vec<&str> = items
        .iter()
        .filter_map(|i| match i {
            Item::Modify { current, .. } | Item::Cancel(current) => Some(current.id.as_str()),
            _ => None,
        })
        .collect();
    sha256_hex(&format!(
        "{tool}\n{}\n{}",
        binding_args(args),
        ids.join(",")
    ))
}

fn verb(tool: &str) -> &'static str {
    match tool {
        BATCH_RESERVE => "book",
        BATCH_MODIFY => "change",
        _ => "cancel",
    }
}

pub(super) async fn run(cx: &Cx<'_>, tool: &str, args: &Value) -> Value {
    let audit_id = new_id("audit");
    let plan = match plan(cx, tool, args).await {
        Ok(p) => p,
        Err(refusal) => {
            audit(cx, &audit_id, tool, args, &[], "refused", 0, 0, &refusal).await;
            return refusal;
        }
    };
    // A large batch needs a token; a token given is always checked (a replayed one is refused,
    // even once the batch it confirmed no longer selects anything).
    let bound = binding(tool, args, &plan.items);
    match &plan.confirm {
        None if plan.items.len() > cx.config.confirm_over => {
            let answer = ask_confirmation(cx, tool, &plan, &bound).await;
            let rows: Vec<Value> = plan.items.iter().map(|i| item_row(cx, i)).collect();
            let outcome = if answer["error"] == "confirmation_required" {
                "confirmation_required"
            } else {
                "refused"
            };
            audit(cx, &audit_id, tool, args, &rows, outcome, 0, 0, &answer).await;
            return answer;
        }
        None => {}
        Some(token) => {
            if let Err(refusal) = spend(cx, tool, token, &bound).await {
                audit(cx, &audit_id, tool, args, &[], "refused", 0, 0, &refusal).await;
                return refusal;
            }
        }
    }
    let mut items = plan.items;
    // Changes run in start order, so a day's bookings move in the order they stand.
    items.sort_by_key(|i| match i {
        Item::Modify { current, .. } | Item::Cancel(current) => current.start_ms,
        _ => 0,
    });
    let mut done = Vec::with_capacity(items.len());
    for item in &items {
        done.push(perform(cx, &audit_id, item, plan.notify).await);
    }
    let notices = if plan.notify && tool != BATCH_RESERVE {
        queue_notices(cx, &audit_id, &done).await
    } else {
        json!({"disabled": !plan.notify})
    };
    let succeeded = done.iter().filter(|d| d.ok).count();
    let failures = done.len() - succeeded;
    let rows: Vec<Value> = done.iter().map(|d| d.row.clone()).collect();
    let text = if done.is_empty() {
        "nothing matches the filter; nothing changed".to_string()
    } else {
        format!(
            "{}: {succeeded} of {} done, {failures} failed",
            verb(tool),
            done.len()
        )
    };
    let mut answer = json!({
        "ok": succeeded > 0 || done.is_empty(),
        "tool": tool,
        "audit_id": audit_id,
        "summary": {"requested": done.len(), "succeeded": succeeded, "failed": failures,
                    "notices": notices, "text": text},
    });
    if succeeded == 0 && !done.is_empty() {
        answer["error"] = "no_item_succeeded".into();
        answer["reason"] = format!("none of the {} item(s) could be done", done.len()).into();
    }
    if plan.verbosity == Verbosity::Detailed {
        answer["items"] = rows.clone().into();
    } else {
        // Failures first: they are what the staff member has to act on.
        let mut sample: Vec<&Done> = done.iter().filter(|d| !d.ok).collect();
        sample.extend(done.iter().filter(|d| d.ok));
        answer["sample"] = sample
            .into_iter()
            .take(SAMPLE_ROWS)
            .map(|d| d.row.clone())
            .collect();
    }
    let outcome = if done.is_empty() || failures == 0 {
        "done"
    } else if succeeded == 0 {
        "failed"
    } else {
        "partial"
    };
    audit(
        cx,
        &audit_id,
        tool,
        args,
        &rows,
        outcome,
        succeeded as i64,
        failures as i64,
        &answer,
    )
    .await;
    answer
}

/// Issues a token for this batch and answers with the preview; nothing changes.
async fn ask_confirmation(cx: &Cx<'_>, tool: &str, plan: &Plan, bound: &str) -> Value {
    let token = random_token(18);
    let row = ConfirmationRow {
        token_hash: sha256_hex(&token),
        business_id: cx.who.business_id().into(),
        account_id: cx.who.account_id().into(),
        tool: tool.into(),
        binding: bound.into(),
        items: plan.items.len() as i64,
        created_at_ms: cx.now,
        expires_at_ms: cx.now + cx.config.confirm_ttl_s as i64 * 1000,
    };
    if let Err(e) = cx.rt.store.insert_staff_confirmation(&row).await {
        return fail("internal", e.to_string());
    }
    let n = plan.items.len();
    let mut by_day: BTreeMap<String, usize> = BTreeMap::new();
    for i in &plan.items {
        if let Item::Modify { current, .. } | Item::Cancel(current) = i {
            *by_day
                .entry(cx.settings.policy.date_iso(current.start_ms))
                .or_default() += 1;
        }
    }
    let mut rows = Vec::with_capacity(n);
    for item in &plan.items {
        let mut row = item_row(cx, item);
        row["would"] = would(cx, item).await;
        rows.push(row);
    }
    let would_fail = rows.iter().filter(|r| r["would"]["ok"] == false).count();
    // Failures first, as in the answer after the run.
    rows.sort_by_key(|r| r["would"]["ok"] == true);
    json!({"ok": false, "error": "confirmation_required",
        "reason": format!("this will {} {n} bookings — confirm?", verb(tool)),
        "confirm": token,
        "expires_in_s": cx.config.confirm_ttl_s,
        "preview": {"items": n, "would_fail": would_fail, "by_day": by_day,
                    "notify": plan.notify,
                    "sample": rows.into_iter().take(SAMPLE_ROWS).collect::<Vec<_>>()}})
}

/// Spends the confirmation token, or says precisely why it cannot be used.
async fn spend(cx: &Cx<'_>, tool: &str, token: &str, bound: &str) -> Result<(), Value> {
    let used = cx
        .rt
        .store
        .spend_staff_confirmation(
            &sha256_hex(token.trim()),
            cx.who.account_id(),
            cx.who.business_id(),
            tool,
            bound,
            cx.now,
        )
        .await
        .map_err(|e| fail("internal", e.to_string()))?;
    match used {
        TokenUse::Spent => Ok(()),
        TokenUse::Unknown => Err(fail("bad_confirmation", "no such confirmation token")),
        TokenUse::Used => Err(fail(
            "bad_confirmation",
            "that confirmation was already used; nothing was done again",
        )),
        TokenUse::Expired => Err(fail(
            "bad_confirmation",
            "that confirmation expired; ask again without `confirm`",
        )),
        TokenUse::Mismatch => Err(fail(
            "bad_confirmation",
            "that confirmation was given for another request (other arguments, other bookings, or another account); ask again without `confirm`",
        )),
    }
}

/// `HH:MM` (or `H:MM`, `HH:MM:SS`).
fn time_arg(raw: &str) -> Option<Time> {
    raw.trim().parse::<Time>().ok().or_else(|| {
        let (h, m) = raw.trim().split_once(':')?;
        Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
    })
}

fn phone_arg(raw: Option<&str>) -> Result<Option<String>, ()> {
    match raw.map(str::trim).filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) if p.chars().filter(char::is_ascii_digit).count() >= 7 => {
            Ok(Some(normalize_phone(p)))
        }
        Some(_) => Err(()),
    }
}

/// A reserve item read into the use case's request: `(error, reason)` when it cannot be read.
fn reserve_request(
    cx: &Cx<'_>,
    audit_id: &str,
    r: &ReserveItem,
    notify: bool,
) -> Result<ReserveRequest, (&'static str, String)> {
    let b = cx.bookings();
    let start = b
        .start_arg(&r.start_iso, cx.now)
        .map_err(|e| (e.code(), e.reason()))?;
    let resource_id = b
        .room_id(r.room.as_deref())
        .map_err(|e| (e.code(), e.to_string()))?;
    let phone = phone_arg(r.customer_phone.as_deref()).map_err(|()| {
        (
            "bad_arguments",
            "customer_phone has too few digits".to_string(),
        )
    })?;
    Ok(ReserveRequest {
        start,
        resource_id,
        name: r.customer_name.trim().to_string(),
        phone,
        channel: "staff".into(),
        conversation_id: format!("staff:{audit_id}"),
        confirm_on_whatsapp: notify,
    })
}

/// The dry run of one item for a confirmation preview: the same reading and policy check as
/// the real run, against the calendar as it stands (earlier items of the batch not applied).
async fn would(cx: &Cx<'_>, item: &Item) -> Value {
    let b = cx.bookings();
    let verdict: Result<(), (&str, String)> = match item {
        Item::Invalid { error, reason, .. } => Err((*error, reason.clone())),
        Item::Cancel(_) => Ok(()),
        Item::Reserve(r) => match reserve_request(cx, "preview", r, false) {
            Ok(req) => match b.check_contact(&req.name, req.phone.as_deref()) {
                Ok(()) => b
                    .check_start(req.start, req.resource_id.as_deref(), None, cx.now)
                    .await
                    .map(|_| ())
                    .map_err(|e| (e.code(), e.to_string())),
                Err(e) => Err((e.code(), e.to_string())),
            },
            Err(e) => Err(e),
        },
        Item::Modify { current, set } => match target(cx, current, set) {
            Ok(Target {
                moves_to: Some((start, room)),
                ..
            }) => {
                let room = room.or_else(|| current.resource_id.clone());
                b.check_start(start, room.as_deref(), Some(current), cx.now)
                    .await
                    .map(|_| ())
                    .map_err(|e| (e.code(), e.to_string()))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        },
    };
    match verdict {
        Ok(()) => json!({"ok": true}),
        Err((error, reason)) => json!({"ok": false, "error": error, "reason": reason}),
    }
}

async fn perform(cx: &Cx<'_>, audit_id: &str, item: &Item, notify: bool) -> Done {
    let b = cx.bookings();
    let p = &cx.settings.policy;
    let row = item_row(cx, item);
    match item {
        Item::Invalid { error, reason, .. } => failed(row, error, reason.clone()),
        Item::Reserve(r) => {
            let request = match reserve_request(cx, audit_id, r, notify) {
                Ok(req) => req,
                Err((error, reason)) => return failed(row, error, reason),
            };
            match b.reserve(&request, cx.now).await {
                Ok(reserved) => {
                    if !reserved.duplicate
                        && let Err(e) = b.attach_customer(&reserved.appointment, cx.now).await
                    {
                        tracing::warn!(error = %e, "staff booking: customer not recorded");
                    }
                    let mut row = appointment_json(cx, &reserved.appointment);
                    row["ok"] = true.into();
                    row["duplicate"] = reserved.duplicate.into();
                    row["confirmation_queued"] = reserved.confirmation_queued.into();
                    Done {
                        ok: true,
                        row,
                        affected: false,
                        notice: None,
                    }
                }
                Err(e) => refused(row, &e),
            }
        }
        Item::Cancel(current) => match b.cancel(current, cx.now).await {
            Ok(()) => {
                let mut row = row;
                row["ok"] = true.into();
                row["status"] = "cancelled".into();
                let what = format!(
                    "{} {} {}",
                    p.date_iso(current.start_ms),
                    p.time_display(current.start_ms),
                    b.resource_name(current.resource_id.as_deref())
                        .unwrap_or_default()
                );
                Done {
                    ok: true,
                    affected: true,
                    notice: current
                        .customer_phone
                        .clone()
                        .map(|ph| (ph, current.customer_name.clone(), cancelled_line(cx, &what))),
                    row,
                }
            }
            Err(e) => refused(row, &e),
        },
        Item::Modify { current, set } => modify(cx, row, current, set).await,
    }
}

/// What a `set` asks of one booking, read and checked for form (not yet against the policy).
struct Target {
    /// The new local start and room, when it moves.
    moves_to: Option<(DateTime, Option<String>)>,
    name: Option<String>,
    phone: Option<String>,
}

/// Reads `set` for `current`: `(error, reason)` when it cannot be read.
fn target(
    cx: &Cx<'_>,
    current: &Appointment,
    set: &Changes,
) -> Result<Target, (&'static str, String)> {
    let b = cx.bookings();
    let local = cx.settings.policy.local(current.start_ms);
    let date = match set.date.as_deref().filter(|d| !d.trim().is_empty()) {
        Some(raw) => Some(
            b.date_arg(raw, cx.now)
                .ok_or(("bad_arguments", format!("{raw:?} is not a date")))?,
        ),
        None => None,
    };
    let time = match set.time.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(raw) => {
            Some(time_arg(raw).ok_or(("bad_arguments", format!("{raw:?} is not a time (HH:MM)")))?)
        }
        None => None,
    };
    let room = b
        .room_id(set.room.as_deref())
        .map_err(|e| (e.code(), e.to_string()))?;
    let phone = phone_arg(set.customer_phone.as_deref()).map_err(|()| {
        (
            "bad_arguments",
            "customer_phone has too few digits".to_string(),
        )
    })?;
    let name = set
        .customer_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let moves = date.is_some() || time.is_some() || room.is_some();
    if !moves && name.is_none() && phone.is_none() {
        return Err(("bad_arguments", "nothing to change: `set` is empty".into()));
    }
    let moves_to = if moves {
        let start = date
            .unwrap_or(local.date())
            .to_datetime(time.unwrap_or(local.time()));
        let same = start_ms_of(cx.settings, start) == current.start_ms
            && room
                .as_ref()
                .is_none_or(|r| current.resource_id.as_ref() == Some(r));
        (!same).then_some((start, room))
    } else {
        None
    };
    Ok(Target {
        moves_to,
        name,
        phone,
    })
}

async fn modify(cx: &Cx<'_>, row: Value, current: &Appointment, set: &Changes) -> Done {
    let b = cx.bookings();
    let p = &cx.settings.policy;
    let Target {
        moves_to,
        name,
        phone,
    } = match target(cx, current, set) {
        Ok(t) => t,
        Err((error, reason)) => return failed(row, error, reason),
    };
    let name = name.as_deref();
    let mut after = current.clone();
    if let Some((start, room)) = moves_to {
        match b.modify(current, start, room, cx.now).await {
            Ok(moved) => after = moved,
            Err(e) => return refused(row, &e),
        }
    }
    if name.is_some() || phone.is_some() {
        match cx
            .rt
            .store
            .set_appointment_contact(&current.id, name, phone.as_deref(), cx.now)
            .await
        {
            Ok(true) => {
                if let Some(n) = name {
                    after.customer_name = n.to_string();
                }
                if phone.is_some() {
                    after.customer_phone = phone.clone();
                }
            }
            Ok(false) => {
                return failed(row, "not_found", "that booking is no longer booked");
            }
            Err(e) => return failed(row, "internal", e.to_string()),
        }
    }
    let mut row = row;
    row["ok"] = true.into();
    row["now"] = appointment_json(cx, &after);
    let moved = after.start_ms != current.start_ms || after.resource_id != current.resource_id;
    let notice = if moved {
        after.customer_phone.clone().map(|ph| {
            let what = format!(
                "{} {} → {} {} {}",
                p.date_iso(current.start_ms),
                p.time_display(current.start_ms),
                p.date_iso(after.start_ms),
                p.time_display(after.start_ms),
                b.resource_name(after.resource_id.as_deref())
                    .unwrap_or_default()
            );
            (ph, after.customer_name.clone(), moved_line(cx, &what))
        })
    } else {
        None
    };
    Done {
        ok: true,
        row,
        affected: moved,
        notice,
    }
}

fn cancelled_line(cx: &Cx<'_>, what: &str) -> String {
    if cx.settings.business.hebrew() {
        format!("בוטל: {}", what.trim())
    } else {
        format!("cancelled: {}", what.trim())
    }
}

fn moved_line(cx: &Cx<'_>, what: &str) -> String {
    if cx.settings.business.hebrew() {
        format!("הועבר: {}", what.trim())
    } else {
        format!("moved: {}", what.trim())
    }
}

/// The notice text for one customer: every change of theirs in this batch.
fn notice_text(hebrew: bool, business: &str, name: &str, lines: &[String]) -> String {
    if hebrew {
        format!(
            "{name}, עדכון על התור שלך ב-{business}:\n{}",
            lines.join("\n")
        )
    } else {
        format!(
            "{name}, an update on your booking at {business}:\n{}",
            lines.join("\n")
        )
    }
}

/// One WhatsApp notice per affected customer, through the outbox (the worker delivers and
/// retries; outside the 24-hour window it switches to the template). Never fails the batch.
async fn queue_notices(cx: &Cx<'_>, audit_id: &str, done: &[Done]) -> Value {
    let mut per_customer: BTreeMap<&str, (&str, Vec<String>)> = BTreeMap::new();
    let mut no_phone = 0;
    for d in done.iter().filter(|d| d.ok && d.affected) {
        match &d.notice {
            Some((phone, name, line)) => per_customer
                .entry(phone)
                .or_insert((name, Vec::new()))
                .1
                .push(line.clone()),
            None => no_phone += 1,
        }
    }
    let business = &cx.settings.business;
    let number = match cx.rt.store.whatsapp_number_for(&business.id).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "staff notices: WhatsApp number not read");
            None
        }
    };
    let Some(pnid) = number else {
        return json!({"queued": 0, "customers": per_customer.len(), "no_phone": no_phone,
                      "not_sent_reason": "this business has no WhatsApp number"});
    };
    let (mut queued, mut failed) = (0, 0);
    for (phone, (name, lines)) in &per_customer {
        let key = format!("staff:{audit_id}:{phone}");
        let text = notice_text(business.hebrew(), &business.name, name, lines);
        let payload = SendPayload {
            message: OutboundMessage {
                phone_number_id: pnid.clone(),
                to: phone.trim_start_matches('+').to_string(),
                body: OutboundBody::Text { text },
                idempotency_key: key.clone(),
            },
            template_fallback: Some(OutboundBody::Template {
                name: "appointment_update".into(),
                language: if business.hebrew() { "he" } else { "en" }.into(),
                params: vec![name.to_string(), lines.join("; ")],
            }),
        };
        let ev = NewOutboxEvent {
            business_id: business.id.clone(),
            kind: KIND_WHATSAPP_SEND.into(),
            payload_json: serde_json::to_string(&payload).unwrap_or_default(),
            idempotency_key: key,
            not_before_ms: cx.now,
        };
        match cx.rt.store.enqueue(&ev, cx.now).await {
            Ok(()) => queued += 1,
            Err(e) => {
                failed += 1;
                tracing::warn!(error = %e, "staff notice not queued");
            }
        }
    }
    json!({"queued": queued, "failed": failed, "customers": per_customer.len(), "no_phone": no_phone})
}

/// One audit record for this call. A failure to write it is logged, never fatal: the change
/// has already been committed.
#[allow(clippy::too_many_arguments)]
async fn audit(
    cx: &Cx<'_>,
    id: &str,
    tool: &str,
    args: &Value,
    items: &[Value],
    outcome: &str,
    succeeded: i64,
    failures: i64,
    answer: &Value,
) {
    let mut args = canonical(args);
    if let Some(map) = args.as_object_mut()
        && map.remove("confirm").is_some()
    {
        map.insert("confirmed".into(), true.into());
    }
    let row = AuditRow {
        id: id.into(),
        business_id: cx.who.business_id().into(),
        account_id: cx.who.account_id().into(),
        tool: tool.into(),
        args_json: args.to_string(),
        items_json: Value::Array(items.to_vec()).to_string(),
        outcome: outcome.into(),
        succeeded,
        failed: failures,
        error: answer
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string),
        reason: answer
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        at_ms: cx.now,
    };
    if let Err(e) = cx.rt.store.insert_staff_audit(&row).await {
        tracing::warn!(error = %e, tool, "staff audit record not stored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_ignores_key_order_confirm_and_verbosity() {
        let a = json!({"filter": {"date": "2026-12-01", "room": "Dubai"}, "notify": true});
        let b = json!({"notify": true, "confirm": "x", "verbosity": "detailed",
                       "filter": {"room": "Dubai", "date": "2026-12-01"}});
        assert_eq!(
            binding(BATCH_CANCEL, &a, &[]),
            binding(BATCH_CANCEL, &b, &[])
        );
        let c = json!({"filter": {"date": "2026-12-02", "room": "Dubai"}, "notify": true});
        assert_ne!(
            binding(BATCH_CANCEL, &a, &[]),
            binding(BATCH_CANCEL, &c, &[])
        );
        assert_ne!(
            binding(BATCH_CANCEL, &a, &[]),
            binding(BATCH_MODIFY, &a, &[])
        );
    }

    #[test]
    fn times_read_as_hours_and_minutes() {
        assert_eq!(time_arg("20:00"), Some(Time::constant(20, 0, 0, 0)));
        assert_eq!(time_arg("9:30"), Some(Time::constant(9, 30, 0, 0)));
        assert_eq!(time_arg("evening"), None);
        assert_eq!(time_arg("25:00"), None);
    }
}
