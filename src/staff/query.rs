//! The read tools (`staff_find`, `staff_free_slots`, `staff_chat_stats`) and the filter that
//! selects bookings, shared with the change tools.

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde_json::{Value, json};

use super::names::{name_matches, phone_matches};
use super::tools::{
    ChatStatsArgs, Cx, DEFAULT_MAX_RESULTS, Filter, FindArgs, FreeSlotsArgs, MAX_RESULTS, Section,
    Status, fail,
};
use crate::agent::tools::day_bounds;
use crate::agent::usecases::Refused;
use crate::store::booking::{Appointment, AppointmentStatus};

/// Longest `staff_free_slots` range, in days.
const MAX_SLOT_DAYS: i32 = 31;

/// `max_results` clamped to 1..=500 (default 200).
fn limit(max_results: Option<usize>) -> usize {
    max_results
        .unwrap_or(DEFAULT_MAX_RESULTS)
        .clamp(1, MAX_RESULTS)
}

/// A refusal of the use cases as a tool answer.
pub(super) fn refused_json(r: &Refused) -> Value {
    match r {
        Refused::UnknownResource { rooms, .. } => json!({"ok": false,
            "error": r.code(), "reason": r.to_string(), "resources": rooms}),
        _ => fail(r.code(), r.to_string()),
    }
}

/// One local day (`YYYY-MM-DD` or words), or `bad_arguments`.
fn day_arg(cx: &Cx<'_>, raw: &str) -> Result<Date, Value> {
    cx.bookings().date_arg(raw, cx.now).ok_or_else(|| {
        fail(
            "bad_arguments",
            format!("{raw:?} is not a date; use YYYY-MM-DD"),
        )
    })
}

/// A date range from `date`, or `from_date` (+ `to_date`), in local days.
pub(super) fn date_range(
    cx: &Cx<'_>,
    date: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Option<(Date, Date)>, Value> {
    let day = |raw: &str| day_arg(cx, raw);
    match (date, from, to) {
        (None, None, None) => Ok(None),
        (Some(d), None, None) => {
            let d = day(d)?;
            Ok(Some((d, d)))
        }
        (None, Some(f), t) => {
            let f = day(f)?;
            let t = t.map(day).transpose()?.unwrap_or(f);
            if t < f {
                return Err(fail("bad_arguments", "to_date is before from_date"));
            }
            Ok(Some((f, t)))
        }
        (None, None, Some(t)) => {
            let t = day(t)?;
            Ok(Some((cx.settings.policy.local_date(cx.now), t)))
        }
        _ => Err(fail(
            "bad_arguments",
            "give `date`, or `from_date` (and `to_date`), not both",
        )),
    }
}

/// The bookings a filter selects, by start. `changeable`: only booked ones starting from now
/// (what a change may act on), whatever `status` says.
pub(super) async fn select(
    cx: &Cx<'_>,
    filter: &Filter,
    changeable: bool,
) -> Result<Vec<Appointment>, Value> {
    let b = cx.bookings();
    let business = &cx.settings.business.id;
    let range = date_range(
        cx,
        filter.date.as_deref(),
        filter.from_date.as_deref(),
        filter.to_date.as_deref(),
    )?;
    let room = b
        .room_id(filter.room.as_deref())
        .map_err(|r| refused_json(&r))?;
    let store = &cx.rt.store;
    let all = match range {
        Some((from, to)) => {
            let (from_ms, to_ms) = day_bounds(&cx.settings.policy, from, to);
            store.appointments_between(business, from_ms, to_ms).await
        }
        None => store.appointments_for_business(business).await,
    }
    .map_err(|e| fail("internal", e.to_string()))?;
    let status = if changeable {
        Status::Booked
    } else {
        filter.status.unwrap_or_default()
    };
    Ok(all
        .into_iter()
        .filter(|a| match status {
            Status::Booked => a.status == AppointmentStatus::Booked,
            Status::Cancelled => a.status == AppointmentStatus::Cancelled,
            Status::Any => true,
        })
        .filter(|a| !changeable || a.start_ms >= cx.now)
        .filter(|a| room.is_none() || a.resource_id == room)
        .filter(|a| {
            filter
                .name
                .as_deref()
                .filter(|n| !n.trim().is_empty())
                .is_none_or(|n| name_matches(n, &a.customer_name))
        })
        .filter(|a| {
            filter
                .phone
                .as_deref()
                .filter(|p| !p.trim().is_empty())
                .is_none_or(|p| {
                    a.customer_phone
                        .as_deref()
                        .is_some_and(|ph| phone_matches(p, ph))
                })
        })
        .collect())
}

/// One booking as the tools show it.
pub(super) fn appointment_json(cx: &Cx<'_>, a: &Appointment) -> Value {
    let p = &cx.settings.policy;
    json!({"appointment_id": a.id, "customer_name": a.customer_name,
           "customer_phone": a.customer_phone, "date": p.date_iso(a.start_ms),
           "time": p.time_display(a.start_ms), "start_iso": p.iso(a.start_ms),
           "room": cx.bookings().resource_name(a.resource_id.as_deref()),
           "status": a.status, "channel": a.channel})
}

/// The different customers among `appts` (by phone, else by name), with their booking counts:
/// what an ambiguous name is answered with.
pub(super) fn customers_among(appts: &[Appointment]) -> Vec<Value> {
    let mut seen: BTreeMap<String, (String, Option<String>, usize)> = BTreeMap::new();
    for a in appts {
        let key = a
            .customer_phone
            .clone()
            .unwrap_or_else(|| format!("name:{}", a.customer_name.trim().to_lowercase()));
        seen.entry(key)
            .or_insert_with(|| (a.customer_name.clone(), a.customer_phone.clone(), 0))
            .2 += 1;
    }
    seen.into_values()
        .map(|(name, phone, n)| json!({"customer_name": name, "customer_phone": phone, "bookings": n}))
        .collect()
}

fn count_by<'a>(items: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for k in items {
        *out.entry(k.to_string()).or_insert(0) += 1;
    }
    out
}

pub(super) async fn find(cx: &Cx<'_>, args: FindArgs) -> Value {
    let filter = args.filter.unwrap_or_default();
    let include = args
        .include
        .unwrap_or_else(|| vec![Section::Reservations, Section::Customers]);
    let max = limit(args.max_results);
    let appts = match select(cx, &filter, false).await {
        Ok(a) => a,
        Err(e) => return e,
    };
    let b = cx.bookings();
    let rooms: Vec<String> = appts
        .iter()
        .map(|a| {
            b.resource_name(a.resource_id.as_deref())
                .unwrap_or_else(|| "-".into())
        })
        .collect();
    let mut out = json!({"ok": true});
    let candidates = customers_among(&appts);
    let mut summary = json!({
        "reservations": appts.len(),
        "distinct_customers": candidates.len(),
        "by_status": count_by(appts.iter().map(|a| a.status.as_str())),
        "by_room": count_by(rooms.iter().map(String::as_str)),
    });
    if include.contains(&Section::Reservations) {
        out["reservations"] = appts
            .iter()
            .take(max)
            .map(|a| appointment_json(cx, a))
            .collect();
        summary["reservations_returned"] = appts.len().min(max).into();
    }
    if include.contains(&Section::Customers) {
        let customers = match customers(cx, &filter, &appts).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        summary["customers"] = customers.len().into();
        summary["customers_returned"] = customers.len().min(max).into();
        out["customers"] = customers.into_iter().take(max).collect();
    }
    if filter.name.is_some() && candidates.len() > 1 {
        summary["ambiguous_name"] = true.into();
        summary["note"] = format!(
            "the name matches {} different customers; ask which one before changing anything",
            candidates.len()
        )
        .into();
        out["candidates"] = candidates.into();
    }
    summary["text"] = format!(
        "{} booking(s) of {} customer(s){}",
        summary["reservations"],
        summary["distinct_customers"],
        if appts.is_empty() {
            "; nothing matches the filter"
        } else {
            ""
        }
    )
    .into();
    out["summary"] = summary;
    out
}

/// Customers matching the filter's name and phone (customers table and WhatsApp contacts, with
/// their WhatsApp ids); with any date, room or status condition, only those among `appts`.
async fn customers(
    cx: &Cx<'_>,
    filter: &Filter,
    appts: &[Appointment],
) -> Result<Vec<Value>, Value> {
    let store = &cx.rt.store;
    let business = &cx.settings.business.id;
    let internal = |e: crate::store::StoreError| fail("internal", e.to_string());
    let rows = store.customers_of(business).await.map_err(internal)?;
    let contacts = store.whatsapp_contacts(business).await.map_err(internal)?;
    let narrowed = filter.date.is_some()
        || filter.from_date.is_some()
        || filter.to_date.is_some()
        || filter.room.is_some()
        || filter.status.is_some();
    let name_ok = |names: &[Option<&str>]| {
        filter
            .name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .is_none_or(|q| names.iter().flatten().any(|n| name_matches(q, n)))
    };
    let phone_ok = |phone: Option<&str>| {
        filter
            .phone
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .is_none_or(|q| phone.is_some_and(|ph| phone_matches(q, ph)))
    };
    let booked = |phone: Option<&str>| {
        appts
            .iter()
            .filter(|a| phone.is_some() && a.customer_phone.as_deref() == phone)
            .count()
    };
    let mut out = Vec::new();
    for c in &rows {
        let wa: Vec<_> = contacts
            .iter()
            .filter(|w| w.phone.as_deref() == Some(c.phone.as_str()))
            .collect();
        let mut names = vec![c.name.as_deref()];
        names.extend(wa.iter().map(|w| w.profile_name.as_deref()));
        let n = booked(Some(&c.phone));
        if !name_ok(&names) || !phone_ok(Some(&c.phone)) || (narrowed && n == 0) {
            continue;
        }
        out.push(json!({"customer_id": c.id, "name": c.name, "phone": c.phone,
            "whatsapp_user_ids": wa.iter().filter_map(|w| w.user_id.clone()).collect::<Vec<_>>(),
            "whatsapp_profile_names": wa.iter().filter_map(|w| w.profile_name.clone()).collect::<Vec<_>>(),
            "status": c.status, "first_channel": c.first_channel, "last_channel": c.last_channel,
            "bookings_matched": n}));
    }
    // WhatsApp customers with no customers row (never booked): phone or user id only.
    for w in &contacts {
        if w.phone
            .as_deref()
            .is_some_and(|p| rows.iter().any(|c| c.phone == p))
        {
            continue;
        }
        let n = booked(w.phone.as_deref());
        if !name_ok(&[w.profile_name.as_deref()])
            || !phone_ok(w.phone.as_deref())
            || (narrowed && n == 0)
        {
            continue;
        }
        out.push(
            json!({"customer_id": null, "name": w.profile_name, "phone": w.phone,
            "whatsapp_user_ids": w.user_id.iter().collect::<Vec<_>>(),
            "whatsapp_profile_names": w.profile_name.iter().collect::<Vec<_>>(),
            "status": "whatsapp_contact", "first_channel": "whatsapp", "last_channel": "whatsapp",
            "bookings_matched": n}),
        );
    }
    Ok(out)
}

pub(super) async fn free_slots(cx: &Cx<'_>, args: FreeSlotsArgs) -> Value {
    let (from, to) = match date_range(
        cx,
        args.date.as_deref(),
        args.from_date.as_deref(),
        args.to_date.as_deref(),
    ) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return fail("bad_arguments", "give `date`, or `from_date` and `to_date`");
        }
        Err(e) => return e,
    };
    if (to - from).get_days() >= MAX_SLOT_DAYS {
        return fail(
            "bad_arguments",
            format!("a range is at most {MAX_SLOT_DAYS} days"),
        );
    }
    let b = cx.bookings();
    let room = match b.room_id(args.room.as_deref()) {
        Ok(id) => id,
        Err(r) => return refused_json(&r),
    };
    let p = &cx.settings.policy;
    let (from_ms, to_ms) = day_bounds(p, from, to);
    let busy = match cx
        .rt
        .store
        .busy(&cx.settings.business.id, from_ms, to_ms)
        .await
    {
        Ok(b) => b,
        Err(e) => return fail("internal", e.to_string()),
    };
    let slots = p.find_slots(cx.now, from, to, &b.caps(), &busy, room.as_deref());
    let max = limit(args.max_results);
    let per_day = count_by(
        slots
            .iter()
            .map(|s| p.date_iso(s.start_ms))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    );
    let listed: Vec<Value> = slots
        .iter()
        .take(max)
        .map(|s| {
            let rooms: Vec<String> = s
                .resource_ids
                .iter()
                .filter_map(|id| b.resource_name(Some(id)))
                .collect();
            json!({"date": p.date_iso(s.start_ms), "time": p.time_display(s.start_ms),
                   "start_iso": p.iso(s.start_ms), "end_iso": p.iso(s.end_ms), "rooms": rooms})
        })
        .collect();
    json!({"ok": true, "timezone": cx.settings.business.timezone, "slots": listed,
           "summary": {"from_date": from.to_string(), "to_date": to.to_string(),
                       "free_slots": slots.len(), "returned": listed.len(),
                       "truncated": slots.len() > listed.len(), "per_day": per_day,
                       "text": format!("{} free slot(s) from {from} to {to}", slots.len())}})
}

pub(super) async fn chat_stats(cx: &Cx<'_>, args: ChatStatsArgs) -> Value {
    let today = cx.settings.policy.local_date(cx.now);
    let day = |raw: &str| day_arg(cx, raw);
    let to = match args.to_date.as_deref().map(day).transpose() {
        Ok(t) => t.unwrap_or(today),
        Err(e) => return e,
    };
    let from = match args.from_date.as_deref().map(day).transpose() {
        Ok(f) => f.unwrap_or_else(|| to.saturating_sub(jiff::Span::new().days(30))),
        Err(e) => return e,
    };
    if to < from {
        return fail("bad_arguments", "to_date is before from_date");
    }
    let (from_ms, to_ms) = day_bounds(&cx.settings.policy, from, to);
    let store = &cx.rt.store;
    let business = &cx.settings.business.id;
    let counts = match store.message_counts(business, from_ms, to_ms).await {
        Ok(c) => c,
        Err(e) => return fail("internal", e.to_string()),
    };
    let appts = match store.appointments_for_business(business).await {
        Ok(a) => a,
        Err(e) => return fail("internal", e.to_string()),
    };
    let names: BTreeMap<String, Option<String>> = match store.customers_of(business).await {
        Ok(rows) => rows.into_iter().map(|c| (c.phone, c.name)).collect(),
        Err(e) => return fail("internal", e.to_string()),
    };
    #[derive(Default)]
    struct Row {
        name: Option<String>,
        messages: BTreeMap<String, (i64, i64)>,
        bookings: BTreeMap<String, i64>,
        cancelled: i64,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for c in &counts {
        let key = c.customer_phone.clone().unwrap_or_else(|| "unknown".into());
        let e = rows
            .entry(key)
            .or_default()
            .messages
            .entry(c.channel.clone())
            .or_default();
        e.0 += c.messages;
        e.1 += c.from_customer;
    }
    for a in appts
        .iter()
        .filter(|a| a.created_at_ms >= from_ms && a.created_at_ms < to_ms)
    {
        let key = a
            .customer_phone
            .clone()
            .unwrap_or_else(|| format!("name:{}", a.customer_name.trim()));
        let row = rows.entry(key).or_default();
        row.name.get_or_insert_with(|| a.customer_name.clone());
        *row.bookings.entry(a.channel.clone()).or_default() += 1;
        if a.status == AppointmentStatus::Cancelled {
            row.cancelled += 1;
        }
    }
    let mut list: Vec<(i64, i64, Value)> = rows
        .into_iter()
        .map(|(key, r)| {
            let bookings: i64 = r.bookings.values().sum();
            let messages: i64 = r.messages.values().map(|m| m.0).sum();
            let own: i64 = r.messages.values().map(|m| m.1).sum();
            let name = names.get(&key).cloned().flatten().or(r.name);
            let phone = (key.starts_with('+') || key.chars().all(|c| c.is_ascii_digit()))
                .then_some(key.clone());
            let by_channel: BTreeMap<&String, Value> = r
                .messages
                .iter()
                .map(|(ch, (n, u))| (ch, json!({"messages": n, "from_customer": u})))
                .collect();
            (
                bookings,
                own,
                json!({"customer_phone": phone, "customer_name": name,
                       "messages": messages, "messages_from_customer": own,
                       "messages_by_channel": by_channel, "bookings": bookings,
                       "bookings_by_channel": r.bookings, "bookings_cancelled": r.cancelled}),
            )
        })
        .filter(|(bk, own, _)| {
            args.min_bookings.is_none_or(|m| *bk >= m)
                && args.min_messages.is_none_or(|m| *own >= m)
        })
        .collect();
    list.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let total_bookings: i64 = list.iter().map(|r| r.0).sum();
    let total_messages: i64 = list
        .iter()
        .map(|r| r.2["messages"].as_i64().unwrap_or(0))
        .sum();
    let max = limit(args.max_results);
    let n = list.len();
    let customers: Vec<Value> = list.into_iter().take(max).map(|r| r.2).collect();
    json!({"ok": true, "customers": customers,
           "summary": {"from_date": from.to_string(), "to_date": to.to_string(),
                       "customers": n, "returned": customers.len(),
                       "messages": total_messages, "bookings": total_bookings,
                       "text": format!("{n} customer(s), {total_messages} message(s), {total_bookings} booking(s) from {from} to {to}")}})
}
