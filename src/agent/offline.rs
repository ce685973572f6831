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

use std::sync::Arc;

use jiff::civil::{Date, Time};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::tools::{self, ToolContext};
use super::{BookingRuntime, OFFLINE_DIALOG};
use crate::adapters::providers::{
    Agent, AgentError, AgentEvent, AgentRequest, BoxFuture, CallContext, Channel,
};
use crate::core::booking::guard::{Evidence, is_hebrew};
use crate::core::booking::parse;

/// Digits the keypad collection accepts; `#` commits earlier.
pub const PHONE_MAX_DIGITS: u8 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
enum Expect {
    #[default]
    Nothing,
    Name,
    Phone,
    Confirm,
    Room,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct DialogState {
    hebrew: bool,
    date: Option<Date>,
    time: Option<Time>,
    resource: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    expect: Expect,
    /// Rooms free at the chosen time (to offer when asking for a room).
    free_rooms: Vec<String>,
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
        let ctx = self
            .rt
            .turn_context(request)
            .await
            .map_err(|e| AgentError::Failed(e.to_string()))?;
        let key = request.call.call_sid.clone();
        let mut state = self
            .rt
            .load_state(&key, OFFLINE_DIALOG)
            .await
            .map_err(|e| AgentError::Failed(e.to_string()))?
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

/// The documents are bilingual ("English. Hebrew."): the half in the customer's language.
fn in_language(body: &str, hebrew: bool) -> String {
    body.split_once(". ")
        .map(|(a, b)| if hebrew == is_hebrew(b) { b } else { a })
        .unwrap_or(body)
        .to_string()
}

fn say(hebrew: bool, en: &str, he: &str) -> String {
    if hebrew { he.into() } else { en.into() }
}

fn day_words(state: &DialogState, today: Date, d: Date) -> String {
    let he = state.hebrew;
    if d == today {
        say(he, "today", "היום")
    } else if today.tomorrow().ok() == Some(d) {
        say(he, "tomorrow", "מחר")
    } else if he {
        format!("ב-{}/{}", d.day(), d.month())
    } else {
        format!("on {} {}/{}", d.weekday_name_en(), d.day(), d.month())
    }
}

trait WeekdayName {
    fn weekday_name_en(&self) -> &'static str;
}

impl WeekdayName for Date {
    fn weekday_name_en(&self) -> &'static str {
        [
            "Sunday",
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
        ][self.weekday().to_sunday_zero_offset() as usize]
    }
}

fn join_or(items: &[String], hebrew: bool) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} {} {last}", rest.join(", "), say(hebrew, "or", "או")),
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

fn hhmm(t: Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
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

async fn step(
    ctx: &ToolContext,
    st: &mut DialogState,
    user: &str,
    digits: bool,
    evidence: &mut Evidence,
) -> OfflineReply {
    if is_hebrew(user) {
        st.hebrew = true;
    } else if user.chars().any(|c| c.is_ascii_alphabetic()) {
        st.hebrew = false;
    }
    let he = st.hebrew;
    let policy = &ctx.settings.policy;
    let today = policy.local_date(ctx.rt.now_ms());

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
        let lower = user.to_lowercase();
        let asks_info = [
            "price",
            "cost",
            "how much",
            "hours",
            "open",
            "parking",
            "כמה עולה",
            "מחיר",
            "שעות",
            "חניה",
        ]
        .iter()
        .any(|w| lower.contains(w));
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
            && parse::parse_time(user).is_none()
            && parse::parse_date(user, today).is_none()
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
        if asks_info && st.expect == Expect::Nothing && parse::parse_time(user).is_none() {
            let topic = if ["price", "cost", "how much", "כמה עולה", "מחיר"]
                .iter()
                .any(|w| lower.contains(w))
            {
                "prices"
            } else if ["parking", "חניה"].iter().any(|w| lower.contains(w)) {
                "faq"
            } else {
                "hours"
            };
            let out = ctx
                .call(tools::BUSINESS_INFO, &json!({"topic": topic}).to_string())
                .await;
            let half = in_language(&first_document(&out.value), he);
            return text_reply(format!(
                "{half} {}",
                say(he, "Would you like to book?", "תרצה לקבוע?")
            ));
        }
        match st.expect {
            Expect::Name => {
                if let Some(n) = parse::parse_name(user).or_else(|| parse::bare_name(user)) {
                    st.name = Some(n);
                    st.expect = Expect::Nothing;
                }
            }
            Expect::Confirm => {
                if parse::is_yes(user) {
                    return create(ctx, st, evidence).await;
                }
                if parse::is_no(user) {
                    st.expect = Expect::Nothing;
                    st.time = None;
                    return text_reply(say(
                        he,
                        "No problem. Which day and time would suit you?",
                        "אין בעיה. איזה יום ושעה מתאימים לך?",
                    ));
                }
            }
            _ => {}
        }
        if st.name.is_none()
            && let Some(n) = parse::parse_name(user)
        {
            st.name = Some(n);
        }
        if let Some(d) = parse::parse_date(user, today) {
            st.date = Some(d);
        }
        let bare_hour = user
            .trim()
            .trim_end_matches(['.', '?', '!'])
            .parse::<i8>()
            .ok()
            .and_then(|h| Time::new(if h <= 7 { h + 12 } else { h }, 0, 0, 0).ok());
        if let Some(t) = parse::parse_time(user).or(if st.expect == Expect::Nothing {
            bare_hour
        } else {
            None
        }) {
            st.time = Some(t);
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

    // time → find slots
    let Some(date) = st.date else {
        return text_reply(if st.time.is_some() {
            say(he, "For which day?", "לאיזה יום?")
        } else {
            say(
                he,
                "Hello! Which day and time would you like to book?",
                "שלום! לאיזה יום ושעה תרצה לקבוע?",
            )
        });
    };
    let mut args = json!({"date": date.to_string()});
    if let Some(r) = &st.resource {
        args["resource"] = json!(r);
    }
    let found = ctx.call(tools::FIND_SLOTS, &args.to_string()).await;
    found.add_evidence(evidence);
    if !found.ok {
        return text_reply(say(
            he,
            "I could not check the calendar. Which other day would suit you?",
            "לא הצלחתי לבדוק ביומן. איזה יום אחר מתאים לך?",
        ));
    }
    let slots = slot_times(&found.value);
    let day = day_words(st, today, date);
    let Some(time) = st.time else {
        if slots.is_empty() {
            st.date = None;
            return text_reply(say(
                he,
                &format!("Nothing is available {day}. Which other day?"),
                &format!("אין מקום {day}. איזה יום אחר?"),
            ));
        }
        let first: Vec<String> = slots.iter().take(3).map(|(t, _)| t.clone()).collect();
        return text_reply(say(
            he,
            &format!(
                "{day} these times are available: {}. Which time?",
                join_or(&first, false)
            ),
            &format!("{day} יש מקום ב-{}. איזו שעה?", join_or(&first, true)),
        ));
    };
    let wanted = hhmm(time);
    let Some((_, rooms)) = slots.iter().find(|(t, _)| *t == wanted) else {
        st.time = None;
        let near = nearest_two(&slots, time);
        if near.is_empty() {
            st.date = None;
            return text_reply(say(
                he,
                &format!("Nothing is available {day}. Which other day?"),
                &format!("אין מקום {day}. איזה יום אחר?"),
            ));
        }
        return text_reply(say(
            he,
            &format!(
                "{wanted} {day} is not available. The nearest available times are {}. Which one?",
                join_or(&near, false)
            ),
            &format!(
                "{wanted} {day} לא פנוי. השעות הפנויות הקרובות הן {}. מה מתאים?",
                join_or(&near, true)
            ),
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
                &format!("Which room would you like: {}?", join_or(rooms, false)),
                &format!(
                    "איזה חדר: {}?",
                    join_or(&hebrew_room_names(ctx, rooms), true)
                ),
            ));
        }
    }
    // name and phone
    if st.name.is_none() {
        st.expect = Expect::Name;
        return text_reply(say(
            he,
            "Great. What name should I book under?",
            "מעולה. על איזה שם לרשום?",
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
    text_reply(say(
        he,
        &format!(
            "To confirm: the {room} room {day} at {wanted}, under the name {name}. Shall I book it?"
        ),
        &format!("לאישור: חדר {room_he} {day} בשעה {wanted}, על שם {name}. לקבוע?"),
    ))
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
    let (Some(date), Some(time), Some(name)) = (st.date, st.time, st.name.clone()) else {
        st.expect = Expect::Nothing;
        return text_reply(say(
            he,
            "Which day and time would you like?",
            "לאיזה יום ושעה?",
        ));
    };
    let mut args = json!({"start_iso": format!("{date}T{}", hhmm(time)), "customer_name": name});
    if let Some(r) = &st.resource {
        args["resource"] = json!(r);
    }
    if let Some(p) = &st.phone {
        args["customer_phone"] = json!(p);
    }
    let out = ctx.call(tools::CREATE, &args.to_string()).await;
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
        // The booking is done: start over for a possible second booking.
        let hebrew = st.hebrew;
        *st = DialogState {
            hebrew,
            ..DialogState::default()
        };
        let status = out
            .value
            .get("whatsapp_status")
            .and_then(Value::as_str)
            .unwrap_or("pending");
        return text_reply(confirmation_reply(status, hebrew, &when));
    }
    match out.error() {
        Some("need_phone") => {
            st.phone = None;
            ask_phone(ctx, st)
        }
        Some("off_grid") | Some("full") | Some("too_soon") => {
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
            text_reply(say(
                he,
                &format!(
                    "That time cannot be booked. I can offer {} instead. Which one?",
                    join_or(&times, false)
                ),
                &format!(
                    "אי אפשר לקבוע בשעה הזאת. אפשר במקום זה {}. מה מתאים?",
                    join_or(&times, true)
                ),
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
