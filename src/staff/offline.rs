//! The staff assistant's offline mode: a deterministic reader for the common staff commands, in
//! Hebrew and English, mapped onto the staff tools, with the per-item report in the staff
//! member's language. Used when no LLM is configured, or when the LLM fails a turn.
//!
//! Understood: find ("who is booked on Thursday?", "מי קבע ביום חמישי?", "show Dana's bookings"),
//! cancel a range ("cancel all Dubai-room bookings next week", "בטל את כל התורים של מחר"), move a
//! day at the same times ("move everyone booked on Thursday to Sunday"), free slots ("what's free
//! tomorrow afternoon?", "מה פנוי ביום שני?"), and the answers to the assistant's own questions:
//! yes / no to a confirmation, which customer when a name matches several.
//!
//! Only the staff member's own message is ever parsed. Tool results (customer names, messages)
//! are shown, never read as commands: a customer named "cancel everything" is a name.
//!
//! Dates, times and parts of day are read by [`crate::booking::temporal`] (one reader for both
//! agents); rooms by [`Resource::mentioned_in`].

use jiff::Zoned;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::tools::{BATCH_CANCEL, BATCH_MODIFY, FIND, FREE_SLOTS};
use crate::booking::temporal::PartOfDay;
use crate::store::booking::Resource;

/// Rows of a find or a batch result listed in a reply; the rest is counted.
const LISTED_ROWS: usize = 20;
/// Free slots listed in a reply.
const LISTED_SLOTS: usize = 24;

/// Which bookings a command is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub from: Option<Date>,
    pub to: Option<Date>,
    pub room: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
}

impl Selection {
    fn is_empty(&self) -> bool {
        self.from.is_none() && self.room.is_none() && self.name.is_none() && self.phone.is_none()
    }

    /// The staff tools' `filter` object.
    pub fn filter(&self) -> Value {
        let mut f = serde_json::Map::new();
        match (self.from, self.to) {
            (Some(a), Some(b)) if a != b => {
                f.insert("from_date".into(), json!(a.to_string()));
                f.insert("to_date".into(), json!(b.to_string()));
            }
            (Some(a), _) => {
                f.insert("date".into(), json!(a.to_string()));
            }
            _ => {}
        }
        if let Some(r) = &self.room {
            f.insert("room".into(), json!(r));
        }
        if let Some(n) = &self.name {
            f.insert("name".into(), json!(n));
        }
        if let Some(p) = &self.phone {
            f.insert("phone".into(), json!(p));
        }
        Value::Object(f)
    }
}

/// What a staff message asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Find(Selection),
    Cancel(Selection),
    /// Every booking of `from` (optionally one room's) to the day `to`: same times, or all at
    /// `time` when the staff member named one ("to Sunday at 18:00").
    MoveDay {
        from: Date,
        to: Date,
        time: Option<jiff::civil::Time>,
        room: Option<String>,
    },
    FreeSlots {
        from: Date,
        to: Date,
        part: Option<PartOfDay>,
        room: Option<String>,
    },
    Confirm,
    Decline,
    Help,
    /// The kind of command is clear, what it applies to is not: the question to ask.
    Incomplete(Missing),
    Unknown,
}

/// What an understood command still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Missing {
    /// "cancel" with no day, room or customer.
    CancelWhat,
    /// "move" without the day it moves from or the day it moves to.
    MoveDays,
    /// "move … to Sunday at 6": morning or evening.
    MoveTime,
}

/// What the reader knows besides the text.
pub struct Context<'a> {
    /// Now, in the business's timezone.
    pub now: &'a Zoned,
    pub rooms: &'a [Resource],
}

mod read;
mod reply;

pub use read::{days, parse, pick_candidate};
pub(crate) use reply::say;
pub use reply::{ask_missing, candidates_question, help, report, slots_in_part};

// ------------------------------------------------------------------ tool calls

/// A tool call the offline mode makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub tool: String,
    pub args: Value,
}

/// The tool call a command maps onto (`None`: no tool, the reply says it).
pub fn call_for(command: &Command) -> Option<Call> {
    let call = |tool: &str, args: Value| {
        Some(Call {
            tool: tool.into(),
            args,
        })
    };
    match command {
        Command::Find(s) => call(
            FIND,
            json!({"filter": s.filter(), "include": ["reservations"]}),
        ),
        Command::Cancel(s) => call(BATCH_CANCEL, json!({"filter": s.filter()})),
        Command::MoveDay {
            from,
            to,
            time,
            room,
        } => {
            let s = Selection {
                from: Some(*from),
                to: Some(*from),
                room: room.clone(),
                ..Selection::default()
            };
            let mut set = json!({"date": to.to_string()});
            if let Some(t) = time {
                set["time"] = json!(t.strftime("%H:%M").to_string());
            }
            call(BATCH_MODIFY, json!({"filter": s.filter(), "set": set}))
        }
        Command::FreeSlots { from, to, room, .. } => {
            let mut args = if from == to {
                json!({"date": from.to_string()})
            } else {
                json!({"from_date": from.to_string(), "to_date": to.to_string()})
            };
            if let Some(r) = room {
                args["room"] = json!(r);
            }
            call(FREE_SLOTS, args)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
