//! Reading the tools' answers for the dialog: the first document of a `business_info` result, the
//! slots of a `find_slots` result and the two nearest a wanted time, which day of a range the
//! customer means, the offered time a bare hour picks, and the words that explain a refusal by the
//! booking policy. Pure helpers: none of them calls a tool or changes the dialog state.

use jiff::civil::{Date, Time};
use serde_json::Value;

use super::words::{join_or, say, weekday_label};
use super::{DialogState, OfflineReply};
use crate::agent::tools::ToolContext;
use crate::booking::policy::Refusal;
use crate::booking::temporal::PartOfDay;

/// Body of the first document a `business_info` result carries.
pub(super) fn first_document(result: &Value) -> String {
    result
        .get("documents")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .and_then(|d| d.get("body"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

pub(super) fn days_between(from: Date, to: Date) -> impl Iterator<Item = Date> {
    std::iter::successors(Some(from), move |d| d.tomorrow().ok().filter(|x| *x <= to))
}

/// The day meant by "this weekend" / "next week": the only day in `span` the business can take
/// (open, not past, a slot in the asked part of day or at the asked time), else a question
/// naming the days.
pub(super) fn which_day(
    ctx: &ToolContext,
    st: &DialogState,
    (from, to): (Date, Date),
    now_ms: i64,
) -> Result<Date, OfflineReply> {
    let he = st.hebrew;
    let policy = &ctx.settings.policy;
    let open: Vec<Date> = days_between(from, to)
        .filter(|d| {
            policy.day_grid(*d).iter().any(|(start, _)| {
                let t = policy.local(*start).time();
                *start > now_ms
                    && st.part.is_none_or(|p| p.contains(t))
                    && st.time.is_none_or(|x| x == t)
            })
        })
        .collect();
    match open.as_slice() {
        [one] => Ok(*one),
        [] => Err(text_reply(say(
            he,
            &format!(
                "We have nothing then ({} to {}). Which other day?",
                weekday_label(false, from),
                weekday_label(false, to)
            ),
            &format!(
                "אין לנו מקום אז ({} עד {}). איזה יום אחר?",
                weekday_label(true, from),
                weekday_label(true, to)
            ),
        ))),
        days if days.len() <= 3 => {
            let names: Vec<String> = days.iter().map(|d| weekday_label(he, *d)).collect();
            Err(text_reply(say(
                he,
                &format!("Which day: {}?", join_or(&names, false)),
                &format!("איזה יום: {}?", join_or(&names, true)),
            )))
        }
        days => Err(text_reply(say(
            he,
            &format!(
                "Which day? We are open {} to {}.",
                weekday_label(false, days[0]),
                weekday_label(false, days[days.len() - 1])
            ),
            &format!(
                "איזה יום? אנחנו פתוחים מ{} עד {}.",
                weekday_label(true, days[0]),
                weekday_label(true, days[days.len() - 1])
            ),
        ))),
    }
}

pub(super) fn text_reply(text: String) -> OfflineReply {
    OfflineReply {
        text,
        collect_digits: None,
        hangup: false,
    }
}

pub(super) fn slot_times(v: &Value) -> Vec<(String, Vec<String>)> {
    v.get("slots")
        .and_then(Value::as_array)
        .map(|slots| {
            slots
                .iter()
                .map(|s| {
                    let t = s
                        .get("time_display")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let rooms = s
                        .get("resources")
                        .and_then(Value::as_array)
                        .map(|r| {
                            r.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    (t, rooms)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Nearest two offered times to `want` (by minutes of the day).
pub(super) fn nearest_two(slots: &[(String, Vec<String>)], want: Time) -> Vec<String> {
    let minutes = |s: &str| {
        s.split_once(':')
            .and_then(|(h, m)| Some(h.parse::<i32>().ok()? * 60 + m.parse::<i32>().ok()?))
            .unwrap_or(0)
    };
    let target = want.hour() as i32 * 60 + want.minute() as i32;
    let mut v: Vec<&String> = slots.iter().map(|(t, _)| t).collect();
    v.sort_by_key(|t| ((minutes(t) - target).abs(), minutes(t)));
    let mut out: Vec<String> = v.into_iter().take(2).cloned().collect();
    out.sort_by_key(|t| minutes(t));
    out
}

pub(super) fn past_date_reply(he: bool) -> OfflineReply {
    text_reply(say(
        he,
        "That date has already passed. Which day would you like?",
        "התאריך הזה כבר עבר. לאיזה יום?",
    ))
}

/// Why a time cannot be booked, in the customer's language.
pub(super) fn explain(
    refusal: Refusal,
    he: bool,
    day: &str,
    wanted: &str,
    ctx: &ToolContext,
) -> String {
    let policy = &ctx.settings.policy;
    match refusal {
        Refusal::PastTime => say(
            he,
            &format!("{wanted} {day} has already passed."),
            &format!("{wanted} {day} כבר עבר."),
        ),
        Refusal::ClosedDay => say(
            he,
            &format!("We are closed {day}."),
            &format!("{day} אנחנו סגורים."),
        ),
        Refusal::OutsideHours => say(
            he,
            &format!("{wanted} is outside our opening hours {day}."),
            &format!("{wanted} מחוץ לשעות הפתיחה {day}."),
        ),
        Refusal::OffGrid => say(
            he,
            &format!("{wanted} is not a start time."),
            &format!("{wanted} היא לא שעת התחלה."),
        ),
        Refusal::TooSoon => say(
            he,
            &format!(
                "{wanted} is too soon: we need {} minutes notice.",
                policy.min_notice_min
            ),
            &format!(
                "{wanted} קרוב מדי: צריך להזמין {} דקות מראש.",
                policy.min_notice_min
            ),
        ),
        Refusal::OutsideWindow => say(
            he,
            &format!(
                "We take bookings up to {} days ahead.",
                policy.booking_window_days
            ),
            &format!("אפשר להזמין עד {} ימים מראש.", policy.booking_window_days),
        ),
        Refusal::Full => say(
            he,
            &format!("{wanted} {day} is fully booked."),
            &format!("{wanted} {day} תפוס."),
        ),
    }
}

pub(super) fn in_part(t: &str, part: Option<PartOfDay>, range: Option<(Time, Time)>) -> bool {
    let Some((h, m)) = t.split_once(':') else {
        return true;
    };
    let (Ok(h), Ok(m)) = (h.parse::<i8>(), m.parse::<i8>()) else {
        return true;
    };
    let Ok(time) = Time::new(h, m, 0, 0) else {
        return true;
    };
    part.is_none_or(|p| p.contains(time)) && range.is_none_or(|(a, b)| time >= a && time <= b)
}

/// Picks an offered time by its hour ("7" after "18:00 or 19:00").
pub(super) fn pick_offered(offered: &[String], hour: i8) -> Option<Time> {
    offered
        .iter()
        .filter_map(|t| {
            let (h, m) = t.split_once(':')?;
            Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
        })
        .find(|t| t.hour() == hour || t.hour() == hour + 12)
}

pub(super) fn with_phone(ctx: &ToolContext, phone: Option<&String>) -> ToolContext {
    let mut c = ctx.clone();
    if c.caller_phone.is_none() {
        c.caller_phone = phone.cloned();
    }
    c
}
