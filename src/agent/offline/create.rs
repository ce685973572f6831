//! The end of the booking flow: the next bookable days when the wanted one is full, the rooms'
//! Hebrew names, asking for the phone number (on the keypad on a call) and creating or moving the
//! appointment once the customer said yes, with the reply that says whether it was booked.

use jiff::civil::Date;
use serde_json::{Value, json};

use super::slots::{explain, text_reply};
use super::words::{day_words, hhmm, join_or, say};
use super::{DialogState, Expect, OfflineReply, PHONE_MAX_DIGITS, confirmation_reply};
use crate::agent::tools::{self, ToolContext};
use crate::booking::guard::{Evidence, is_hebrew};
use crate::booking::policy::Refusal;
use crate::providers::Channel;

/// The first two bookable times in the week after `date`, as "tomorrow 10:00".
pub(super) async fn next_days(
    ctx: &ToolContext,
    st: &DialogState,
    today: Date,
    date: Date,
) -> Vec<String> {
    let from = date.tomorrow().unwrap_or(date).max(today);
    let to = from.checked_add(jiff::ToSpan::days(7)).unwrap_or(from);
    let out = ctx
        .call(
            tools::FIND_SLOTS,
            &json!({"from_date": from.to_string(), "to_date": to.to_string()}).to_string(),
        )
        .await;
    out.value
        .get("slots")
        .and_then(Value::as_array)
        .map(|slots| {
            slots
                .iter()
                .filter_map(|s| {
                    let iso = s.get("start_iso")?.as_str()?;
                    let d: Date = iso.get(..10)?.parse().ok()?;
                    let t = s.get("time_display")?.as_str()?;
                    Some(format!("{} {t}", day_words(st, today, d)))
                })
                .take(2)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn hebrew_room_names(ctx: &ToolContext, names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|n| {
            ctx.settings
                .resources
                .iter()
                .find(|r| &r.name == n)
                .and_then(|r| r.aliases.iter().find(|a| is_hebrew(a)).cloned())
                .unwrap_or_else(|| n.clone())
        })
        .collect()
}

pub(super) fn ask_phone(ctx: &ToolContext, st: &mut DialogState) -> OfflineReply {
    st.expect = Expect::Phone;
    let he = st.hebrew;
    if ctx.channel == Channel::Phone {
        OfflineReply {
            text: say(
                he,
                "What is your phone number? Please type it on the keypad and then press the pound key.",
                "מה מספר הטלפון שלך? אנא הקש אותו ובסיום הקש סולמית.",
            ),
            collect_digits: Some(PHONE_MAX_DIGITS),
            hangup: false,
        }
    } else {
        text_reply(say(he, "What is your phone number?", "מה מספר הטלפון שלך?"))
    }
}

pub(super) async fn create(
    ctx: &ToolContext,
    st: &mut DialogState,
    evidence: &mut Evidence,
) -> OfflineReply {
    let he = st.hebrew;
    let (Some(date), Some(time)) = (st.date, st.time) else {
        st.expect = Expect::Nothing;
        return text_reply(say(
            he,
            "Which day and time would you like?",
            "לאיזה יום ושעה?",
        ));
    };
    let start_iso = format!("{date}T{}", hhmm(time));
    let out = if let Some(id) = &st.moving {
        let mut args = json!({"appointment_id": id, "start_iso": start_iso});
        if let Some(r) = &st.resource {
            args["resource"] = json!(r);
        }
        ctx.call(tools::UPDATE, &args.to_string()).await
    } else {
        let Some(name) = st.name.clone() else {
            st.expect = Expect::Name;
            return text_reply(say(
                he,
                "What name should I book under?",
                "על איזה שם לרשום?",
            ));
        };
        let mut args = json!({"start_iso": start_iso, "customer_name": name});
        if let Some(r) = &st.resource {
            args["resource"] = json!(r);
        }
        if let Some(p) = &st.phone {
            args["customer_phone"] = json!(p);
        }
        ctx.call(tools::CREATE, &args.to_string()).await
    };
    out.add_evidence(evidence);
    st.expect = Expect::Nothing;
    if out.ok {
        let when = format!(
            "{} {}",
            out.value
                .get("date_iso")
                .and_then(Value::as_str)
                .unwrap_or(""),
            out.value
                .get("time_display")
                .and_then(Value::as_str)
                .unwrap_or("")
        );
        let moved = st.moving.is_some();
        // The booking is done: start over for a possible second booking, keeping who it is.
        *st = DialogState {
            hebrew: st.hebrew,
            name: st.name.take(),
            phone: st.phone.take(),
            known: true,
            ..DialogState::default()
        };
        if moved {
            return text_reply(say(
                he,
                &format!("Done: your booking is now {when}."),
                &format!("בוצע: ההזמנה שלך הועברה ל-{when}."),
            ));
        }
        let status = out
            .value
            .get("whatsapp_status")
            .and_then(Value::as_str)
            .unwrap_or("pending");
        return text_reply(confirmation_reply(status, he, &when));
    }
    let refusal = out.error().and_then(Refusal::from_code);
    match (out.error(), refusal) {
        (Some("need_phone"), _) => {
            st.phone = None;
            ask_phone(ctx, st)
        }
        (_, Some(refusal)) => {
            st.time = None;
            let times: Vec<String> = out
                .value
                .get("suggestions")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .filter_map(|x| x.get("time_display").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            st.offered = times.clone();
            let today = ctx.settings.policy.local_date(ctx.rt.now_ms());
            let why = explain(refusal, he, &day_words(st, today, date), &hhmm(time), ctx);
            if times.is_empty() {
                return text_reply(format!(
                    "{why} {}",
                    say(he, "Which other time?", "איזו שעה אחרת?")
                ));
            }
            text_reply(say(
                he,
                &format!(
                    "{why} I can offer {} instead. Which one?",
                    join_or(&times, false)
                ),
                &format!("{why} אפשר במקום זה {}. מה מתאים?", join_or(&times, true)),
            ))
        }
        _ => text_reply(say(
            he,
            "I could not complete the booking. Shall I try another time?",
            "לא הצלחתי להשלים את ההזמנה. לנסות שעה אחרת?",
        )),
    }
}
