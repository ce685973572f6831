//! One turn of the dialog: reads the customer's message against what the dialog waits for
//! (`DialogState::expect`) and moves it along the booking flow: time, then free slots, then room,
//! name and phone, then the confirmation and the booking itself. The tools are called in the same
//! order as the LLM agent's, and every answer they give is added to the turn's evidence for the guard.

use jiff::civil::Time;
use serde_json::{Value, json};

use super::bookings::{act_on, ask_which, handle_intent, pick_booking};
use super::create::{ask_phone, create, hebrew_room_names, next_days};
use super::intent::{has_any, intent, question_topic};
use super::slots::{
    days_between, explain, first_document, in_part, nearest_two, past_date_reply, pick_offered,
    slot_times, text_reply, which_day, with_phone,
};
use super::words::{day_words, hhmm, in_language, join_or, say};
use super::{DialogState, Expect, OfflineReply, PHONE_MAX_DIGITS};
use crate::agent::tools::{self, ToolContext};
use crate::booking::guard::{Evidence, is_hebrew};
use crate::booking::parse;
use crate::booking::policy::{Refusal, StartVerdict};
use crate::booking::retrieval::DocumentIndex;
use crate::booking::temporal::{self, Ambiguity, PartOfDay};
use crate::providers::Channel;

pub(super) async fn step(
    ctx: &ToolContext,
    st: &mut DialogState,
    user: &str,
    digits: bool,
    evidence: &mut Evidence,
) -> OfflineReply {
    let mut lead = None;
    let mut reply = step_inner(ctx, st, user, digits, evidence, &mut lead).await;
    if let Some(lead) = lead {
        let mut rest = reply.text.chars();
        let first: String = rest
            .next()
            .map(|c| c.to_uppercase().collect())
            .unwrap_or_default();
        reply.text = format!("{lead} {first}{}", rest.as_str());
    }
    reply
}

/// One turn; `lead` is said before the reply ("Moving Thursday 26/11 18:00, Dubai.").
pub(super) async fn step_inner(
    ctx: &ToolContext,
    st: &mut DialogState,
    user: &str,
    digits: bool,
    evidence: &mut Evidence,
    lead: &mut Option<String>,
) -> OfflineReply {
    if is_hebrew(user) {
        st.hebrew = true;
    } else if user.chars().any(|c| c.is_ascii_alphabetic()) {
        st.hebrew = false;
    }
    let he = st.hebrew;
    let policy = &ctx.settings.policy;
    let now_ms = ctx.rt.now_ms();
    let now = policy.zoned(now_ms);
    let today = now.date();

    // Memory across channels: the name this customer gave before, by phone.
    if !st.known {
        st.known = true;
        if let Some(phone) = &ctx.caller_phone {
            if st.name.is_none() {
                st.name = ctx
                    .rt
                    .store
                    .customer_name(&ctx.settings.business.id, phone)
                    .await
                    .ok()
                    .flatten()
                    .filter(|n| !n.trim().is_empty());
            }
            if st.phone.is_none() {
                st.phone = Some(phone.clone());
            }
        }
    }

    if digits {
        match parse::parse_phone(user) {
            Some(p) => {
                st.phone = Some(parse::normalize_phone(&p));
                st.expect = Expect::Nothing;
            }
            None => {
                return OfflineReply {
                    text: say(
                        he,
                        "I did not get a full number. Please type your phone number and then press the pound key.",
                        "לא קיבלתי מספר מלא. אנא הקש את מספר הטלפון ובסיום סולמית.",
                    ),
                    collect_digits: Some(PHONE_MAX_DIGITS),
                    hangup: false,
                };
            }
        }
    } else if !user.trim().is_empty() {
        if parse::is_goodbye(user) {
            return OfflineReply {
                text: say(he, "Thank you, goodbye!", "תודה, להתראות!"),
                collect_digits: None,
                hangup: true,
            };
        }
        if st.expect == Expect::ConfirmCancel {
            st.expect = Expect::Nothing;
            if let Some(id) = st.cancelling.take() {
                if parse::is_yes(user) {
                    let out = ctx
                        .call(tools::CANCEL, &json!({"appointment_id": id}).to_string())
                        .await;
                    out.add_evidence(evidence);
                    return text_reply(if out.ok {
                        say(he, "Your booking is cancelled.", "ההזמנה בוטלה.")
                    } else {
                        say(
                            he,
                            "I could not cancel it. Please try again later.",
                            "לא הצלחתי לבטל. נסה שוב מאוחר יותר.",
                        )
                    });
                }
                return text_reply(say(
                    he,
                    "OK, I left your booking as it is.",
                    "בסדר, ההזמנה נשארת כמו שהיא.",
                ));
            }
        }
        if st.expect == Expect::MoreBookings {
            st.expect = Expect::Nothing;
            let rest = std::mem::take(&mut st.more);
            if parse::is_yes(user) && !rest.is_empty() {
                let (read, later) = rest.split_at(rest.len().min(2));
                if later.is_empty() {
                    return text_reply(format!("{}.", read.join("; ")));
                }
                st.more = later.to_vec();
                st.expect = Expect::MoreBookings;
                return text_reply(say(
                    he,
                    &format!(
                        "{}; and {} more. Shall I go on?",
                        read.join("; "),
                        later.len()
                    ),
                    &format!("{}; ועוד {}. להמשיך?", read.join("; "), later.len()),
                ));
            }
        }
        if st.expect == Expect::WhichBooking
            && let Some(choosing) = st.choosing
        {
            if let Some(i) = pick_booking(user, &st.choices, &now, ctx) {
                let b = st.choices[i].clone();
                st.choices.clear();
                st.choosing = None;
                return act_on(st, choosing, &b);
            }
            if intent(user).is_none() {
                if parse::is_no(user) || parse::is_yes(user) && st.choices.len() > 1 {
                    st.choices.clear();
                    st.choosing = None;
                    st.expect = Expect::Nothing;
                    if parse::is_no(user) {
                        return text_reply(say(
                            he,
                            "OK, I left your bookings as they are.",
                            "בסדר, ההזמנות נשארות כמו שהן.",
                        ));
                    }
                }
                if st.expect == Expect::WhichBooking {
                    return ask_which(st, ctx.channel == Channel::Phone);
                }
            }
            st.choices.clear();
            st.choosing = None;
            st.expect = Expect::Nothing;
        }
        if let Some(i) = intent(user) {
            let ctx = with_phone(ctx, None);
            if let Some(reply) = handle_intent(&ctx, st, i, user, &now, evidence, lead).await {
                return reply;
            }
        }
        let t = temporal::parse(user, &now);
        let lower = user.to_lowercase();
        // "Details on the New York room?": a question about a room, not a booking request.
        let room_asked = [
            "detail",
            "tell me about",
            "what is",
            "what's",
            "info",
            "פרטים",
            "ספר",
            "מידע",
            "מה זה",
        ]
        .iter()
        .any(|w| lower.contains(w))
        .then(|| ctx.settings.resources.iter().find(|r| r.mentioned_in(user)))
        .flatten();
        if let Some(room) = room_asked
            && st.expect == Expect::Nothing
            && t.is_empty()
        {
            let out = ctx
                .call(tools::BUSINESS_INFO, &json!({"topic": "rooms"}).to_string())
                .await;
            let body = first_document(&out.value);
            // The rooms document lists "Name (details), Name (details)": answer about this one.
            let about = in_language(&body, he)
                .split("), ")
                .find(|part| room.mentioned_in(part))
                .map(|part| format!("{})", part.trim().trim_end_matches(['.', ')'])))
                .unwrap_or_else(|| in_language(&body, he));
            return text_reply(format!(
                "{about}. {}",
                say(he, "Would you like to book it?", "תרצה לקבוע?")
            ));
        }
        let question = user.contains('?')
            || has_any(
                &lower,
                &[
                    "do you",
                    "is there",
                    "can i",
                    "are you",
                    "יש ",
                    "האם",
                    "אפשר ל",
                    "מה ",
                    "איך",
                ],
            );
        let booking_words = has_any(
            &lower,
            &[
                "book",
                "appointment",
                "reserv",
                "לקבוע",
                "להזמין",
                "תור",
                "הזמנה",
            ],
        );
        let about_business = question_topic(user).is_some() && t.time.is_none();
        let other_question = question
            && t.is_empty()
            && parse::parse_name(user).is_none()
            && ctx.settings.resources.iter().all(|r| !r.mentioned_in(user))
            && !booking_words;
        if (about_business || other_question) && matches!(st.expect, Expect::Nothing | Expect::Room)
        {
            // Retrieval over all the business's documents, answered in the customer's language.
            let out = ctx
                .call(tools::BUSINESS_INFO, &json!({"topic": "all"}).to_string())
                .await;
            let docs: Vec<(&str, &str)> = out
                .value
                .get("documents")
                .and_then(Value::as_array)
                .map(|d| {
                    d.iter()
                        .filter_map(|x| {
                            let title = x.get("title").and_then(Value::as_str).unwrap_or("");
                            Some((title, x.get("body")?.as_str()?))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let index = DocumentIndex::new(docs);
            return text_reply(match index.answer(user, he) {
                Some(passage) => format!(
                    "{passage} {}",
                    say(he, "Would you like to book?", "תרצה לקבוע?")
                ),
                None => say(
                    he,
                    "I don't have information about that. I can help you book a room.",
                    "אין לי מידע על זה. אני יכול לעזור לקבוע חדר.",
                ),
            });
        }
        match st.expect {
            Expect::Name => {
                if let Some(n) = parse::parse_name_answer(user) {
                    st.name = Some(n);
                    st.expect = Expect::Nothing;
                }
            }
            Expect::AmPm => {
                if let Some((am, pm)) = st.am_pm {
                    let chosen = match t.part_of_day {
                        Some(PartOfDay::Morning) => Some(am),
                        Some(_) => Some(pm),
                        None => t.time.filter(|x| *x == am || *x == pm),
                    };
                    if let Some(c) = chosen {
                        st.time = Some(c);
                        st.am_pm = None;
                        st.expect = Expect::Nothing;
                    }
                }
            }
            Expect::Confirm => {
                let correction = parse::parse_name(user);
                if parse::is_yes(user) && correction.is_none() && t.is_empty() {
                    return create(ctx, st, evidence).await;
                }
                if let Some(n) = correction {
                    st.name = Some(n);
                } else if temporal::bare_hour(user).is_some() && t.is_empty() {
                    // "no, make it 4": a new hour for the same day.
                    st.offered.clear();
                } else if parse::is_no(user) && t.is_empty() {
                    st.expect = Expect::Nothing;
                    return text_reply(say(
                        he,
                        "No problem. What should I change: the day, the time or the name?",
                        "אין בעיה. מה לשנות: את היום, השעה או השם?",
                    ));
                }
            }
            _ => {}
        }
        if st.name.is_none()
            && let Some(n) = parse::parse_name(user)
        {
            st.name = Some(n);
        } else if st.expect != Expect::Name
            && let Some(n) = parse::parse_name(user)
            && has_any(&lower, &["name", "שם", "שמי"])
        {
            // "the name is Dana Cohen, not Dana": the customer corrects the read-back.
            st.name = Some(n);
        }
        match t.ambiguity {
            Some(Ambiguity::PastTime) => {
                st.time = None;
                st.date = t.date;
                let wanted = t.time.map(hhmm).unwrap_or_default();
                return text_reply(say(
                    he,
                    &format!(
                        "{wanted} today has already passed. Which time later today, or another day?"
                    ),
                    &format!("{wanted} היום כבר עבר. איזו שעה מאוחרת יותר היום, או יום אחר?"),
                ));
            }
            Some(Ambiguity::PastDate) => {
                st.date = None;
                return past_date_reply(he);
            }
            Some(Ambiguity::InvalidDate) => {
                st.date = None;
                return text_reply(say(
                    he,
                    "That date does not exist in the calendar. Which day would you like?",
                    "התאריך הזה לא קיים בלוח השנה. לאיזה יום?",
                ));
            }
            Some(Ambiguity::TwelveHour { am, pm }) => {
                st.am_pm = Some((am, pm));
                st.time = None;
            }
            Some(Ambiguity::WhichDay { from, to }) => {
                st.days = Some((from, to));
                st.date = None;
                st.offered.clear();
            }
            None => {}
        }
        if let Some(mut d) = t.date {
            // "Tuesday" answering "which day next week?": that week's Tuesday.
            if let Some((from, to)) = st.days.take()
                && !(from..=to).contains(&d)
                && let Some(wd) = t.weekday
                && let Some(inside) = days_between(from, to).find(|x| x.weekday() == wd)
            {
                d = inside;
            }
            if st.date != Some(d) {
                st.offered.clear();
            }
            st.date = Some(d);
        }
        if let Some(time) = t.time {
            st.time = Some(time);
            st.am_pm = None;
        }
        if t.part_of_day.is_some() {
            st.part = t.part_of_day;
        }
        if t.range.is_some() {
            st.range = t.range;
        }
        if t.time.is_none()
            && t.ambiguity.is_none()
            && matches!(st.expect, Expect::Nothing | Expect::Confirm)
            && let Some(h) = temporal::bare_hour(user)
        {
            if let Some(time) = pick_offered(&st.offered, h) {
                st.time = Some(time);
                st.am_pm = None;
            } else if st.offered.is_empty() && (1..=12).contains(&h) {
                st.am_pm = Time::new(h % 12, 0, 0, 0)
                    .ok()
                    .zip(Time::new(h % 12 + 12, 0, 0, 0).ok());
            }
        }
        if let Some(r) = ctx.settings.resources.iter().find(|r| r.mentioned_in(user)) {
            st.resource = Some(r.name.clone());
            if st.expect == Expect::Room {
                st.expect = Expect::Nothing;
            }
        }
        if st.phone.is_none()
            && let Some(p) = parse::parse_phone(user)
        {
            st.phone = Some(parse::normalize_phone(&p));
        }
    }

    // "this weekend", "next week": the one open day, else ask which.
    if st.date.is_none()
        && let Some(span) = st.days
    {
        match which_day(ctx, st, span, now_ms) {
            Ok(d) => {
                st.date = Some(d);
                st.days = None;
            }
            Err(reply) => return reply,
        }
    }
    // time → find slots
    let Some(date) = st.date else {
        return text_reply(if st.time.is_some() || st.am_pm.is_some() {
            say(he, "For which day?", "לאיזה יום?")
        } else if st.name.is_some() && st.expect == Expect::Nothing && st.moving.is_none() {
            let name = st.name.clone().unwrap_or_default();
            say(
                he,
                &format!("Hello {name}! Which day and time would you like to book?"),
                &format!("שלום {name}! לאיזה יום ושעה תרצה לקבוע?"),
            )
        } else {
            say(
                he,
                "Hello! Which day and time would you like to book?",
                "שלום! לאיזה יום ושעה תרצה לקבוע?",
            )
        });
    };
    let day = day_words(st, today, date);
    // "at 6": the reading the business can take, else ask.
    if let Some((am, pm)) = st.am_pm {
        let open = |x: Time| {
            let dt = date.to_datetime(x);
            let caps: Vec<_> = ctx.settings.resources.iter().map(|r| r.cap()).collect();
            !matches!(
                policy.check_start(now_ms, dt, &caps, &[], None),
                StartVerdict::Refused(
                    Refusal::PastTime | Refusal::OutsideHours | Refusal::ClosedDay
                )
            )
        };
        let chosen = temporal::resolve_twelve_hour(am, pm, open);
        match chosen {
            Some(x) => {
                st.time = Some(x);
                st.am_pm = None;
            }
            None => {
                st.expect = Expect::AmPm;
                let h = am.hour() % 12;
                let h = if h == 0 { 12 } else { h };
                let m = if am.minute() > 0 {
                    format!(":{:02}", am.minute())
                } else {
                    String::new()
                };
                return text_reply(say(
                    he,
                    &format!("{h}{m} in the morning or in the evening?"),
                    &format!("{h}{m} בבוקר או בערב?"),
                ));
            }
        }
    }
    let mut args = json!({"date": date.to_string()});
    if let Some(r) = &st.resource {
        args["resource"] = json!(r);
    }
    let found = ctx.call(tools::FIND_SLOTS, &args.to_string()).await;
    found.add_evidence(evidence);
    if !found.ok {
        if found.error() == Some("past_time") {
            st.date = None;
            return past_date_reply(he);
        }
        return text_reply(say(
            he,
            "I could not check the calendar. Which other day would suit you?",
            "לא הצלחתי לבדוק ביומן. איזה יום אחר מתאים לך?",
        ));
    }
    let slots = slot_times(&found.value);
    let caps: Vec<_> = ctx.settings.resources.iter().map(|r| r.cap()).collect();
    if slots.is_empty() {
        // Why nothing: closed, beyond the window, or full; then the next days with room.
        let probe = st
            .time
            .or_else(|| {
                policy
                    .day_grid(date)
                    .first()
                    .map(|(s, _)| policy.local(*s).time())
            })
            .unwrap_or(Time::midnight());
        let reason = match policy.check_start(now_ms, date.to_datetime(probe), &caps, &[], None) {
            StartVerdict::Refused(r) if r != Refusal::OffGrid => r,
            _ if policy.day_grid(date).is_empty() => Refusal::ClosedDay,
            _ => Refusal::Full,
        };
        let wanted = st.time.map(hhmm).unwrap_or_default();
        let why = explain(reason, he, &day, &wanted, ctx);
        st.date = None;
        st.time = None;
        let later = next_days(ctx, st, today, date).await;
        if later.is_empty() {
            return text_reply(format!(
                "{why} {}",
                say(he, "Which other day?", "איזה יום אחר?")
            ));
        }
        return text_reply(format!(
            "{why} {} {}?",
            say(he, "Available:", "יש מקום"),
            join_or(&later, he)
        ));
    }
    let Some(time) = st.time else {
        let wanted: Vec<String> = slots
            .iter()
            .map(|(t, _)| t.clone())
            .filter(|t| in_part(t, st.part, st.range))
            .collect();
        let (first, none_in_part): (Vec<String>, bool) = if wanted.is_empty() {
            (slots.iter().take(3).map(|(t, _)| t.clone()).collect(), true)
        } else {
            (wanted.into_iter().take(3).collect(), false)
        };
        st.offered = first.clone();
        let lead = if none_in_part && (st.part.is_some() || st.range.is_some()) {
            say(he, "Nothing then, but ", "אין אז, אבל ")
        } else {
            String::new()
        };
        return text_reply(say(
            he,
            &format!(
                "{lead}{day} these times are available: {}. Which time?",
                join_or(&first, false)
            ),
            &format!("{lead}{day} יש מקום ב-{}. איזו שעה?", join_or(&first, true)),
        ));
    };
    let wanted = hhmm(time);
    let Some((_, rooms)) = slots.iter().find(|(t, _)| *t == wanted) else {
        st.time = None;
        let reason = match policy.check_start(now_ms, date.to_datetime(time), &caps, &[], None) {
            StartVerdict::Refused(r) => r,
            StartVerdict::Ok { .. } => Refusal::Full,
        };
        let near = nearest_two(&slots, time);
        st.offered = near.clone();
        let why = explain(reason, he, &day, &wanted, ctx);
        return text_reply(say(
            he,
            &format!("{why} Nearest: {}. Which one?", join_or(&near, false)),
            &format!("{why} הכי קרוב: {}. מה מתאים?", join_or(&near, true)),
        ));
    };
    st.free_rooms = rooms.clone();
    // room
    if st.resource.is_none() && !ctx.settings.resources.is_empty() {
        if rooms.len() == 1 {
            st.resource = rooms.first().cloned();
        } else {
            st.expect = Expect::Room;
            return text_reply(say(
                he,
                &format!(
                    "{day} at {wanted}: which room would you like, {}?",
                    join_or(rooms, false)
                ),
                &format!(
                    "{day} בשעה {wanted}: איזה חדר, {}?",
                    join_or(&hebrew_room_names(ctx, rooms), true)
                ),
            ));
        }
    }
    // name and phone
    if st.name.is_none() && st.moving.is_none() {
        st.expect = Expect::Name;
        return text_reply(say(
            he,
            &format!("Great, {day} at {wanted}. What name should I book under?"),
            &format!("מעולה, {day} בשעה {wanted}. על איזה שם לרשום?"),
        ));
    }
    if st.phone.is_none() {
        st.phone = ctx.caller_phone.clone();
    }
    if st.phone.is_none() && ctx.settings.policy.require_phone_before_booking {
        return ask_phone(ctx, st);
    }
    // confirm
    st.expect = Expect::Confirm;
    let room = st.resource.clone().unwrap_or_default();
    let room_he = hebrew_room_names(ctx, std::slice::from_ref(&room))
        .pop()
        .unwrap_or_default();
    let name = st.name.clone().unwrap_or_default();
    if st.moving.is_some() {
        return text_reply(say(
            he,
            &format!(
                "To confirm: move your booking to {} at {wanted}, the {room} room. Shall I?",
                day.strip_prefix("on ").unwrap_or(&day)
            ),
            &format!(
                "לאישור: להעביר את ההזמנה {} בשעה {wanted}, חדר {room_he}. להעביר?",
                day.strip_prefix("ב-")
                    .map(|d| format!("ל-{d}"))
                    .unwrap_or_else(|| format!("ל{day}"))
            ),
        ));
    }
    text_reply(say(
        he,
        &format!(
            "To confirm: the {room} room {day} at {wanted}, under the name {name}. Shall I book it?"
        ),
        &format!("לאישור: חדר {room_he} {day} בשעה {wanted}, על שם {name}. לקבוע?"),
    ))
}
