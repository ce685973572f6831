//! The offline booking agent: a deterministic dialog in Hebrew and English that follows the same
//! tool order as the LLM agent (time → find slots → name and phone → confirm → create) through the
//! same tools, traces and guard. It answers when no LLM is configured and whenever the LLM agent
//! fails or times out, so a caller can still book.
//!
//! Dialog state: kept per conversation (call sid) in the database, loaded at the start of a turn
//! and saved at its end by the runtime ([`BookingRuntime::load_state`]), so any instance can take
//! the next message. Chosen over re-deriving from the history because the history carries only
//! text: what the agent was waiting for (a name, digits, a yes) and the offered alternatives would
//! have to be re-parsed from its own replies. A conversation whose state has expired starts again
//! from the last user message, which still carries date, time and room if said together.
//!
//! This file is the dialog; `intent.rs` reads what the customer asks for besides booking, and
//! `words.rs` says days, times and lists in the customer's language.

use std::sync::Arc;

use jiff::civil::{Date, Time};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::tools::{self, ToolContext};
use super::{BookingRuntime, OFFLINE_DIALOG};
use crate::booking::guard::{Evidence, is_hebrew};
use crate::booking::parse;
use crate::booking::policy::{Refusal, StartVerdict};
use crate::booking::retrieval::DocumentIndex;
use crate::booking::temporal::{self, Ambiguity, PartOfDay};
use crate::providers::{
    Agent, AgentError, AgentEvent, AgentRequest, BoxFuture, CallContext, Channel,
};

mod intent;
mod words;

pub use intent::Intent;
use intent::{has_any, intent, question_topic};
use words::{day_words, hhmm, in_language, join_or, say, short_day, weekday_label};

/// Digits the keypad collection accepts; `#` commits earlier.
pub const PHONE_MAX_DIGITS: u8 = 15;

/// What the dialog waits for from the customer's next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Expect {
    #[default]
    Nothing,
    Name,
    Phone,
    Confirm,
    Room,
    /// "6 in the morning or the evening?"
    AmPm,
    /// "Cancel your booking on …?"
    ConfirmCancel,
    /// "You have 2 bookings: …. Which one?" (for `DialogState::choosing`).
    WhichBooking,
    /// "… and 2 more. Shall I read the rest?" (on the phone).
    MoreBookings,
}

/// One conversation's offline dialog state: plain data, so it can be stored between turns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DialogState {
    pub hebrew: bool,
    pub date: Option<Date>,
    pub time: Option<Time>,
    /// A part of the day asked for ("evening") when no exact time was given.
    pub part: Option<PartOfDay>,
    /// "between 5 and 7".
    pub range: Option<(Time, Time)>,
    /// The two readings of a 12-hour time we are asking about.
    pub am_pm: Option<(Time, Time)>,
    pub resource: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub expect: Expect,
    /// Rooms free at the chosen time (to offer when asking for a room).
    pub free_rooms: Vec<String>,
    /// Times offered in the last reply (`HH:MM`), so "7 works" picks 19:00.
    pub offered: Vec<String>,
    /// Moving this appointment (reschedule) instead of booking a new one.
    pub moving: Option<String>,
    /// The appointment a cancellation waits for a yes on.
    pub cancelling: Option<String>,
    /// The customer record (name from another channel) was read.
    pub known: bool,
    /// "this weekend", "next week": the days asked about, until the customer says which.
    pub days: Option<(Date, Date)>,
    /// The customer's bookings offered to choose from, and what the choice is for.
    pub choices: Vec<Booking>,
    pub choosing: Option<Intent>,
    /// Bookings not yet read out on the phone ("and 2 more").
    pub more: Vec<String>,
}

/// What one offline turn produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineReply {
    pub text: String,
    pub collect_digits: Option<u8>,
    pub hangup: bool,
}

/// Cheap to clone: clones share the runtime.
#[derive(Clone)]
pub struct OfflineBookingAgent {
    rt: Arc<BookingRuntime>,
}

impl OfflineBookingAgent {
    pub fn new(rt: Arc<BookingRuntime>) -> Self {
        Self { rt }
    }

    pub fn runtime(&self) -> &Arc<BookingRuntime> {
        &self.rt
    }

    /// One turn, tools included; the reply has passed the truthfulness guard and is stored.
    pub async fn turn(&self, request: &AgentRequest) -> Result<OfflineReply, AgentError> {
        let ctx = self.rt.turn_context(request).await?;
        let key = request.call.call_sid.clone();
        let mut state = self
            .rt
            .load_state(&key, OFFLINE_DIALOG)
            .await?
            .unwrap_or_else(|| DialogState {
                hebrew: if request.call.language.is_empty() {
                    ctx.settings.business.hebrew()
                } else {
                    request.call.language.starts_with("he")
                },
                ..DialogState::default()
            });
        let user = super::user_text(request);
        let mut evidence = Evidence::default();
        let reply = step(&ctx, &mut state, &user, request.digits, &mut evidence).await;
        let text = self.rt.guard_reply(&ctx, &reply.text, evidence).await;
        self.rt.record_turn(&ctx, &user, &text).await;
        if reply.hangup {
            self.rt.forget_state(&key, Some(OFFLINE_DIALOG)).await;
        } else {
            self.rt.save_state(&key, OFFLINE_DIALOG, &state).await;
        }
        Ok(OfflineReply { text, ..reply })
    }
}

/// Body of the first document a `business_info` result carries.
fn first_document(result: &Value) -> String {
    result
        .get("documents")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .and_then(|d| d.get("body"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn days_between(from: Date, to: Date) -> impl Iterator<Item = Date> {
    std::iter::successors(Some(from), move |d| d.tomorrow().ok().filter(|x| *x <= to))
}

/// The day meant by "this weekend" / "next week": the only day in `span` the business can take
/// (open, not past, a slot in the asked part of day or at the asked time), else a question
/// naming the days.
fn which_day(
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

fn text_reply(text: String) -> OfflineReply {
    OfflineReply {
        text,
        collect_digits: None,
        hangup: false,
    }
}

fn slot_times(v: &Value) -> Vec<(String, Vec<String>)> {
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
fn nearest_two(slots: &[(String, Vec<String>)], want: Time) -> Vec<String> {
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

fn past_date_reply(he: bool) -> OfflineReply {
    text_reply(say(
        he,
        "That date has already passed. Which day would you like?",
        "התאריך הזה כבר עבר. לאיזה יום?",
    ))
}

/// Why a time cannot be booked, in the customer's language.
fn explain(refusal: Refusal, he: bool, day: &str, wanted: &str, ctx: &ToolContext) -> String {
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

fn in_part(t: &str, part: Option<PartOfDay>, range: Option<(Time, Time)>) -> bool {
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
fn pick_offered(offered: &[String], hour: i8) -> Option<Time> {
    offered
        .iter()
        .filter_map(|t| {
            let (h, m) = t.split_once(':')?;
            Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
        })
        .find(|t| t.hour() == hour || t.hour() == hour + 12)
}

fn with_phone(ctx: &ToolContext, phone: Option<&String>) -> ToolContext {
    let mut c = ctx.clone();
    if c.caller_phone.is_none() {
        c.caller_phone = phone.cloned();
    }
    c
}

/// One of the customer's upcoming bookings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    id: String,
    /// "tomorrow at 19:00, the Dubai room" in the customer's language.
    words: String,
    /// "Thursday 26/11 19:00, Dubai": for lists and choices.
    short: String,
    date: Date,
    /// `HH:MM`
    time: String,
    resource: Option<String>,
}

/// The customer's upcoming bookings.
async fn my_bookings(
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
async fn handle_intent(
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

async fn intent_reply(
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
fn ask_which(st: &DialogState, phone: bool) -> OfflineReply {
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
fn act_on(st: &mut DialogState, intent: Intent, b: &Booking) -> OfflineReply {
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
fn pick_booking(
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

async fn step(
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
async fn step_inner(
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

/// The first two bookable times in the week after `date`, as "tomorrow 10:00".
async fn next_days(ctx: &ToolContext, st: &DialogState, today: Date, date: Date) -> Vec<String> {
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

fn hebrew_room_names(ctx: &ToolContext, names: &[String]) -> Vec<String> {
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

fn ask_phone(ctx: &ToolContext, st: &mut DialogState) -> OfflineReply {
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

async fn create(ctx: &ToolContext, st: &mut DialogState, evidence: &mut Evidence) -> OfflineReply {
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

/// The reply after a successful booking, by WhatsApp status (see the semantics).
pub fn confirmation_reply(status: &str, hebrew: bool, when: &str) -> String {
    match status {
        "sent" => say(
            hebrew,
            &format!("You're booked for {when}, and I sent a WhatsApp confirmation."),
            &format!("קבעתי לך תור ל-{when}, ושלחתי אישור בוואטסאפ."),
        ),
        "failed" => say(
            hebrew,
            &format!("You're booked for {when}. The details will reach you on WhatsApp shortly."),
            &format!("קבעתי לך תור ל-{when}. הפרטים יגיעו אליך בוואטסאפ בקרוב."),
        ),
        _ => say(
            hebrew,
            &format!("You're booked for {when}. The details will follow."),
            &format!("קבעתי לך תור ל-{when}. הפרטים יישלחו בהמשך."),
        ),
    }
}

/// Sends a finished reply as agent events (word by word, as a streaming agent would).
pub async fn emit(reply: &OfflineReply, events: &mpsc::Sender<AgentEvent>) {
    for word in reply.text.split_inclusive(' ') {
        if events
            .send(AgentEvent::TextDelta(word.to_string()))
            .await
            .is_err()
        {
            return;
        }
    }
    if let Some(max_digits) = reply.collect_digits {
        let _ = events.send(AgentEvent::CollectDigits { max_digits }).await;
    }
    if reply.hangup {
        let _ = events.send(AgentEvent::Hangup).await;
    }
}

pub(crate) fn spawn_call_ended(rt: &Arc<BookingRuntime>, call: &CallContext, channel: Channel) {
    let rt = rt.clone();
    let request = AgentRequest {
        channel,
        call: call.clone(),
        turn: 0,
        history: Vec::new(),
        digits: false,
    };
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            if let Err(e) = rt.conversation_ended(&request).await {
                tracing::warn!(error = %e, "call.ended event not enqueued");
            }
        });
    }
}

impl Agent for OfflineBookingAgent {
    fn name(&self) -> &'static str {
        "offline-booking"
    }

    fn call_ended(&self, call: &CallContext, channel: Channel) {
        spawn_call_ended(&self.rt, call, channel);
    }

    fn respond(
        &self,
        request: AgentRequest,
        events: mpsc::Sender<AgentEvent>,
    ) -> BoxFuture<'static, Result<(), AgentError>> {
        let this = self.clone();
        Box::pin(async move {
            let reply = this.turn(&request).await?;
            emit(&reply, &events).await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state is plain data: it survives a round trip through JSON, so it can be stored.
    #[test]
    fn dialog_state_round_trips_through_json() {
        let st = DialogState {
            hebrew: true,
            date: Some(jiff::civil::date(2026, 12, 8)),
            time: Some(jiff::civil::time(19, 30, 0, 0)),
            part: Some(PartOfDay::Evening),
            range: None,
            am_pm: Some((
                jiff::civil::time(6, 0, 0, 0),
                jiff::civil::time(18, 0, 0, 0),
            )),
            resource: Some("Dubai".into()),
            name: Some("דנה לוי".into()),
            phone: Some("+972501234567".into()),
            expect: Expect::AmPm,
            free_rooms: vec!["Dubai".into()],
            offered: vec!["18:00".into(), "19:00".into()],
            moving: Some("appt_1".into()),
            cancelling: None,
            known: true,
            days: None,
            choices: Vec::new(),
            choosing: Some(Intent::Cancel),
            more: vec!["מחר 19:00, דובאי".into()],
        };
        let json = serde_json::to_string(&st).unwrap();
        assert_eq!(serde_json::from_str::<DialogState>(&json).unwrap(), st);
    }

    #[test]
    fn intents_in_both_languages() {
        for (text, want) in [
            ("I need to cancel my booking", Some(Intent::Cancel)),
            ("אני רוצה לבטל את התור", Some(Intent::Cancel)),
            ("when is my booking again?", Some(Intent::List)),
            ("מתי התור שלי?", Some(Intent::List)),
            ("can I move my booking to thursday", Some(Intent::Move)),
            ("אפשר להזיז את התור שלי?", Some(Intent::Move)),
            ("I want to book a room", None),
            ("אני רוצה לקבוע תור", None),
        ] {
            assert_eq!(intent(text), want, "{text}");
        }
    }
}
