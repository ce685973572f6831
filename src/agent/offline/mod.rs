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
use tokio::sync::mpsc;

use super::{BookingRuntime, OFFLINE_DIALOG};
use crate::booking::guard::Evidence;
use crate::booking::temporal::PartOfDay;
use crate::providers::{
    Agent, AgentError, AgentEvent, AgentRequest, BoxFuture, CallContext, Channel,
};

mod bookings;
mod create;
mod intent;
mod slots;
mod step;
mod words;

pub use intent::Intent;
use step::step;
use words::say;

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
        Ok(self.turn_with_tools(request).await?.0)
    }

    /// [`Self::turn`], plus what its tools did (calls, and appointments booked, moved or
    /// cancelled): the LLM agent answers with this turn when the model fails, and remembers
    /// those like its own.
    pub async fn turn_with_tools(
        &self,
        request: &AgentRequest,
    ) -> Result<(OfflineReply, super::tools::ToolsUsed), AgentError> {
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
        Ok((OfflineReply { text, ..reply }, ctx.this_turn.take()))
    }
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
mod tests;
