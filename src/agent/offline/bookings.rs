//! The customer's own upcoming bookings: listing them (two at a time on the phone), choosing one
//! by day, time, room or position, and starting its cancellation (which waits for a yes) or its
//! move (which goes on through the booking flow with `DialogState::moving` set). Bookings are found
//! only by the number the customer contacts us from.

use jiff::civil::Date;
use serde_json::Value;

use super::create::hebrew_room_names;
use super::slots::text_reply;
use super::words::{day_words, say, short_day};
use super::{Booking, DialogState, Expect, Intent, OfflineReply};
use crate::agent::tools::{self, ToolContext};
use crate::booking::guard::Evidence;
use crate::booking::temporal::{self, Ambiguity};
use crate::providers::Channel;

/// The customer's upcoming bookings.
pub(super) async fn my_bookings(
    ctx: &ToolContext,
    st: &DialogState,
    today: Date,
    evidence: &mut Evidence,
) -> Option<Vec<Booking>> {
    let out = ctx.call(tools::LIST, "{}").await;
    out.add_evidence(evidence);
    if !out.ok {
        return None;
    }
    let items = out.value.get("appointments").and_then(Value::as_array)?;
    Some(
        items
            .iter()
            .map(|a| {
                let get = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let date = get("date_iso").parse::<Date>().unwrap_or(today);
                let day = day_words(st, today, date);
                let resource = Some(get("resource")).filter(|r| !r.is_empty());
                let room = get("resource");
                let room_name = if st.hebrew {
                    hebrew_room_names(ctx, std::slice::from_ref(&room))
                        .pop()
                        .unwrap_or_default()
                } else {
                    room.clone()
                };
                let (room, short_room) = if room.is_empty() {
                    (String::new(), String::new())
                } else if st.hebrew {
                    (format!(", חדר {room_name}"), format!(", {room_name}"))
                } else {
                    (format!(", the {room} room"), format!(", {room}"))
                };
                let at = say(st.hebrew, "at", "בשעה");
                let time = get("time_display");
                Booking {
                    id: get("appointment_id"),
                    words: format!("{day} {at} {time}{room}"),
                    short: format!("{} {time}{short_room}", short_day(st.hebrew, today, date)),
                    date,
                    time,
                    resource,
                }
            })
            .collect(),
    )
}

/// The reply to an intent, or `None` when the dialog goes on with the same message: a move
/// that already names the new day ("can we push it to friday?"); `lead` then says which
/// booking moves.
pub(super) async fn handle_intent(
    ctx: &ToolContext,
    st: &mut DialogState,
    intent: Intent,
    user: &str,
    now: &jiff::Zoned,
    evidence: &mut Evidence,
    lead: &mut Option<String>,
) -> Option<OfflineReply> {
    let reply = intent_reply(ctx, st, intent, user, now, evidence).await;
    if intent != Intent::Move || st.moving.is_none() || temporal::parse(user, now).is_empty() {
        return Some(reply);
    }
    let moving = st.moving.clone();
    let short = my_bookings(ctx, st, now.date(), evidence)
        .await
        .and_then(|list| list.into_iter().find(|b| Some(&b.id) == moving.as_ref()))
        .map(|b| b.short)?;
    *lead = Some(say(
        st.hebrew,
        &format!("Moving {short}."),
        &format!("מעבירים את {short}."),
    ));
    None
}

pub(super) async fn intent_reply(
    ctx: &ToolContext,
    st: &mut DialogState,
    intent: Intent,
    user: &str,
    now: &jiff::Zoned,
    evidence: &mut Evidence,
) -> OfflineReply {
    let he = st.hebrew;
    let today = now.date();
    if ctx.caller_phone.is_none() {
        return text_reply(say(
            he,
            "I can only find bookings made from the number you are contacting us from.",
            "אני יכול למצוא רק הזמנות שנעשו מהמספר שממנו פנית.",
        ));
    }
    let Some(list) = my_bookings(ctx, st, today, evidence).await else {
        return text_reply(say(
            he,
            "I could not check your bookings right now.",
            "לא הצלחתי לבדוק את ההזמנות שלך כרגע.",
        ));
    };
    let Some(first) = list.first().cloned() else {
        return text_reply(say(
            he,
            "I don't see any upcoming booking for this number. Would you like to book?",
            "אני לא רואה הזמנה קרובה על המספר הזה. תרצה לקבוע?",
        ));
    };
    let phone = ctx.channel == Channel::Phone;
    match intent {
        Intent::List => {
            if list.len() == 1 {
                return text_reply(say(
                    he,
                    &format!("Your booking: {}.", first.words),
                    &format!("ההזמנה שלך: {}.", first.words),
                ));
            }
            let shorts: Vec<String> = list.iter().map(|b| b.short.clone()).collect();
            // On the phone: how many, the first two, and the rest on request.
            let (read, rest) = shorts.split_at(if phone {
                shorts.len().min(2)
            } else {
                shorts.len()
            });
            let lead = say(
                he,
                &format!("You have {} bookings:", list.len()),
                &format!("יש לך {} הזמנות:", list.len()),
            );
            if rest.is_empty() {
                return text_reply(format!("{lead} {}.", read.join("; ")));
            }
            st.more = rest.to_vec();
            st.expect = Expect::MoreBookings;
            text_reply(say(
                he,
                &format!(
                    "{lead} {}; and {} more. Shall I read them?",
                    read.join("; "),
                    rest.len()
                ),
                &format!(
                    "{lead} {}; ועוד {}. להקריא אותן?",
                    read.join("; "),
                    rest.len()
                ),
            ))
        }
        Intent::Cancel | Intent::Move if list.len() > 1 => {
            // "cancel tomorrow's booking" already says which; a move's message names the new
            // day, so it is never read as the choice.
            if intent == Intent::Cancel
                && let Some(i) = pick_booking(user, &list, now, ctx)
            {
                return act_on(st, intent, &list[i]);
            }
            st.choices = list;
            st.choosing = Some(intent);
            st.expect = Expect::WhichBooking;
            ask_which(st, phone)
        }
        Intent::Cancel | Intent::Move => act_on(st, intent, &first),
    }
}

/// "You have 2 bookings: tomorrow 19:00, Dubai; or Thursday 26/11 20:00, Barcelona. Which one?"
pub(super) fn ask_which(st: &DialogState, phone: bool) -> OfflineReply {
    let he = st.hebrew;
    let shorts: Vec<String> = st.choices.iter().map(|b| b.short.clone()).collect();
    let shown = if phone {
        shorts.len().min(2)
    } else {
        shorts.len()
    };
    let mut listed = shorts[..shown].join("; ");
    if shown < shorts.len() {
        listed.push_str(&say(
            he,
            &format!("; and {} more", shorts.len() - shown),
            &format!("; ועוד {}", shorts.len() - shown),
        ));
    }
    let what = match (st.choosing, he) {
        (Some(Intent::Move), false) => "Which one should I move?",
        (Some(Intent::Move), true) => "איזו להעביר?",
        (_, false) => "Which one should I cancel?",
        (_, true) => "איזו לבטל?",
    };
    text_reply(say(
        he,
        &format!("You have {} bookings: {listed}. {what}", shorts.len()),
        &format!("יש לך {} הזמנות: {listed}. {what}", shorts.len()),
    ))
}

/// Cancel (after a yes) or move the chosen booking.
pub(super) fn act_on(st: &mut DialogState, intent: Intent, b: &Booking) -> OfflineReply {
    let he = st.hebrew;
    let first = &b.words;
    match intent {
        Intent::Cancel | Intent::List => {
            st.cancelling = Some(b.id.clone());
            st.expect = Expect::ConfirmCancel;
            text_reply(say(
                he,
                &format!("Cancel your booking {first}?"),
                &format!("לבטל את ההזמנה {first}?"),
            ))
        }
        Intent::Move => {
            st.moving = Some(b.id.clone());
            st.resource = b.resource.clone();
            st.date = None;
            st.time = None;
            st.expect = Expect::Nothing;
            text_reply(say(
                he,
                &format!("Your booking is {first}. To which day and time?"),
                &format!("ההזמנה שלך {first}. לאיזה יום ושעה להעביר?"),
            ))
        }
    }
}

/// Which of `choices` the customer means: "the Thursday one", "השני", "the one at 7", "את של
/// יום חמישי", "the Dubai one", "tomorrow's". `None` when the words fit none or several.
pub(super) fn pick_booking(
    user: &str,
    choices: &[Booking],
    now: &jiff::Zoned,
    ctx: &ToolContext,
) -> Option<usize> {
    let w = temporal::words(user);
    let n = choices.len();
    // Ordinal words first: "השני" alone is "the second", "יום שני" is Monday.
    for (i, word) in w.iter().enumerate() {
        if i > 0 && temporal::hebrew_stems(&w[i - 1]).contains(&"יום") {
            continue;
        }
        let idx = match word.as_str() {
            "first" | "earlier" | "earliest" | "הראשון" | "הראשונה" | "המוקדם" | "המוקדמת" => {
                0
            }
            "second" | "השני" | "השנייה" | "השניה" => 1,
            "third" | "השלישי" | "השלישית" => 2,
            "last" | "later" | "latest" | "האחרון" | "האחרונה" | "המאוחר" | "המאוחרת" => {
                n - 1
            }
            _ => continue,
        };
        return (idx < n).then_some(idx);
    }
    let t = temporal::parse(user, now);
    let mut c: Vec<usize> = (0..n).collect();
    let mut narrowed = false;
    if let Some(wd) = t.weekday {
        c.retain(|&i| choices[i].date.weekday() == wd);
        narrowed = true;
    } else if let Some(d) = t.date {
        c.retain(|&i| choices[i].date == d);
        narrowed = true;
    }
    if let Some(r) = ctx.settings.resources.iter().find(|r| r.mentioned_in(user)) {
        c.retain(|&i| choices[i].resource.as_deref() == Some(r.name.as_str()));
        narrowed = true;
    }
    let hour_of = |b: &Booking| b.time.get(..2).and_then(|h| h.parse::<i8>().ok());
    let hours: Option<Vec<i8>> = match (t.time, t.ambiguity) {
        (Some(x), _) => Some(vec![x.hour()]),
        (_, Some(Ambiguity::TwelveHour { am, pm })) => Some(vec![am.hour(), pm.hour()]),
        // "את של שבע": a bare number, when nothing else said which.
        _ if !narrowed => temporal::bare_hour(user).map(|h| vec![h, h + 12]),
        _ => None,
    };
    if let Some(hours) = hours {
        c.retain(|&i| hour_of(&choices[i]).is_some_and(|h| hours.contains(&h)));
        narrowed = true;
    }
    (narrowed && c.len() == 1).then(|| c[0])
}
