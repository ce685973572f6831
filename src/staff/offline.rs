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

use jiff::ToSpan;
use jiff::Zoned;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::tools::{BATCH_CANCEL, BATCH_MODIFY, FIND, FREE_SLOTS};
use crate::booking::guard::is_hebrew;
use crate::booking::parse::{is_no, is_yes, normalize_phone, parse_phone};
use crate::booking::temporal::{self, Ambiguity, PartOfDay, hebrew_stems, words};
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

// ------------------------------------------------------------------ reading

const CONFIRM_WORDS: &[&str] = &[
    "אשר",
    "אישור",
    "תאשר",
    "מאושר",
    "בצע",
    "תבצע",
    "קדימה",
    "proceed",
    "confirmed",
];
const DECLINE_WORDS: &[&str] = &[
    "no", "nope", "don't", "dont", "stop", "abort", "never", "לא", "עזוב", "עזבי", "אל", "עצור",
];
const HELP_WORDS: &[&str] = &["help", "עזרה", "commands", "פקודות"];
const MOVE_WORDS: &[&str] = &[
    "move",
    "reschedule",
    "shift",
    "push",
    "transfer",
    "העבר",
    "תעביר",
    "תעבירי",
    "העבירי",
    "העבירו",
    "להעביר",
    "הזז",
    "תזיז",
    "תזיזי",
    "הזיזו",
    "להזיז",
    "דחה",
    "תדחה",
    "לדחות",
];
const CANCEL_WORDS: &[&str] = &[
    "cancel",
    "delete",
    "remove",
    "clear",
    "drop",
    "scrap",
    "בטל",
    "תבטל",
    "תבטלי",
    "בטלי",
    "בטלו",
    "לבטל",
    "מחק",
    "תמחק",
    "תמחקי",
    "למחוק",
    "ביטול",
];
const FREE_WORDS: &[&str] = &[
    "free",
    "available",
    "availability",
    "openings",
    "vacant",
    "vacancies",
    "gaps",
    "פנוי",
    "פנויה",
    "פנויים",
    "פנויות",
    "זמין",
    "זמינה",
    "זמינים",
    "זמינות",
    "חלונות",
];
const FIND_WORDS: &[&str] = &[
    "who",
    "who's",
    "whos",
    "show",
    "list",
    "find",
    "search",
    "lookup",
    "look",
    "bookings",
    "booking",
    "booked",
    "appointments",
    "reservations",
    "schedule",
    "calendar",
    "מי",
    "הראה",
    "תראה",
    "תראי",
    "הציגי",
    "הצג",
    "תציג",
    "רשימה",
    "רשימת",
    "חפש",
    "תחפש",
    "חפשי",
    "מצא",
    "תמצא",
    "מצאי",
    "תורים",
    "התורים",
    "הזמנות",
    "ההזמנות",
    "קבע",
    "קבעה",
    "קבעו",
    "רשום",
    "רשומה",
    "רשומים",
    "יומן",
];
/// Words that are never a customer's name.
const NOT_NAMES: &[&str] = &[
    "the",
    "a",
    "an",
    "all",
    "every",
    "everyone",
    "everybody",
    "bookings",
    "booking",
    "appointments",
    "appointment",
    "reservations",
    "room",
    "rooms",
    "me",
    "us",
    "my",
    "our",
    "week",
    "month",
    "next",
    "this",
    "that",
    "same",
    "times",
    "time",
    "on",
    "at",
    "in",
    "to",
    "from",
    "who",
    "what",
    "free",
    "whole",
    "day",
    "customer",
    "client",
    "please",
    "and",
    "is",
    "are",
    "כל",
    "את",
    "התורים",
    "תורים",
    "תור",
    "ההזמנות",
    "הזמנות",
    "חדר",
    "החדר",
    "יום",
    "שבוע",
    "הבא",
    "הזה",
    "מי",
    "מה",
    "כולם",
    "לקוח",
    "הלקוח",
    "לקוחה",
    "הלקוחה",
    "בבקשה",
    "החודש",
    "חודש",
    "השבוע",
];

fn any_word(w: &[String], list: &[&str]) -> bool {
    w.iter().any(|x| list.contains(&x.as_str()))
}

/// A word or its Hebrew stems (prefixes ו, ה, ב, ל, מ, ש, כ removed) is in `list`.
fn any_stem(w: &[String], list: &[&str]) -> bool {
    w.iter()
        .any(|x| hebrew_stems(x).iter().any(|s| list.contains(s)))
}

/// Reads one staff message. Pure: the same text, time and rooms give the same command.
pub fn parse(text: &str, cx: &Context<'_>) -> Command {
    let w = words(text);
    if w.is_empty() {
        return Command::Unknown;
    }
    let short = w.len() <= 4;
    let moving = any_stem(&w, MOVE_WORDS);
    let cancelling = any_stem(&w, CANCEL_WORDS);
    let free = any_stem(&w, FREE_WORDS)
        || text.to_lowercase().contains("what's open")
        || text.contains("יש מקום");
    let finding = any_stem(&w, FIND_WORDS) || text.to_lowercase().contains("what's on");
    let commanding = moving || cancelling || free || finding;
    // A short answer: yes / no ("yes cancel them" is a yes too).
    if short && (!commanding || any_word(&w, &["confirm", "yes"])) {
        let lower = text.to_lowercase();
        if is_yes(text)
            || any_word(&w, CONFIRM_WORDS)
            || lower.contains("go ahead")
            || lower.contains("do it")
        {
            return Command::Confirm;
        }
        if is_no(text) || any_word(&w, DECLINE_WORDS) {
            return Command::Decline;
        }
    }
    if any_word(&w, HELP_WORDS)
        || text.to_lowercase().contains("what can you do")
        || text.contains("מה אתה יודע")
        || text.contains("מה את יודעת")
    {
        return Command::Help;
    }
    let room = cx
        .rooms
        .iter()
        .filter(|r| r.mentioned_in(text))
        .max_by_key(|r| r.name.len())
        .map(|r| r.name.clone());
    if moving {
        return match move_days(&w, cx.now) {
            Some(Target::At(from, to, time)) => Command::MoveDay {
                from,
                to,
                time,
                room,
            },
            Some(Target::WhichTime) => Command::Incomplete(Missing::MoveTime),
            None => Command::Incomplete(Missing::MoveDays),
        };
    }
    let (from, to) = match days(text, cx.now) {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    if free && !cancelling {
        let today = cx.now.date();
        let t = temporal::parse(text, cx.now);
        return Command::FreeSlots {
            from: from.unwrap_or(today),
            to: to.unwrap_or(today),
            part: t.part_of_day,
            room,
        };
    }
    let phone = parse_phone(text).map(|p| normalize_phone(&p));
    let name = if phone.is_some() {
        None
    } else {
        customer_name(text, &w, cx)
    };
    let selection = Selection {
        from,
        to,
        room,
        name,
        phone,
    };
    if cancelling {
        if selection.is_empty() {
            return Command::Incomplete(Missing::CancelWhat);
        }
        return Command::Cancel(selection);
    }
    if finding {
        return Command::Find(selection);
    }
    Command::Unknown
}

/// The days a text names: one day, or a span ("next week", "this week", "this month").
pub fn days(text: &str, now: &Zoned) -> Option<(Date, Date)> {
    let today = now.date();
    let text = &without_possessives(text);
    let lower = temporal::normalize(text);
    let w = words(text);
    if lower.contains("next month") || lower.contains("חודש הבא") {
        let first = today.first_of_month().checked_add(1.month()).ok()?;
        return Some((first, first.last_of_month()));
    }
    if lower.contains("this month") || any_stem(&w, &["החודש"]) {
        return Some((today, today.last_of_month()));
    }
    let t = temporal::parse(text, now);
    match (t.date, t.ambiguity) {
        (Some(d), _) => Some((d, d)),
        (None, Some(Ambiguity::WhichDay { from, to })) => Some((from, to)),
        _ => None,
    }
}

/// "Thursday … to Sunday": the day moved from and the day moved to. The target is the last day
/// named (the shortest tail of the text that names a day, with a "next"/"this" before it); the
/// source is the day named before it.
fn move_days(w: &[String], now: &Zoned) -> Option<Target> {
    let read = |ws: &[String]| temporal::parse(&without_possessives(&ws.join(" ")), now);
    let mut start = (0..w.len()).rev().find(|&i| read(&w[i..]).date.is_some())?;
    if start > 0 && matches!(w[start - 1].as_str(), "next" | "this" | "coming" | "the") {
        start -= 1;
    }
    let target = read(&w[start..]);
    let to = target.date?;
    let from = read(&w[..start]).date?;
    if from == to {
        return None;
    }
    if matches!(target.ambiguity, Some(Ambiguity::TwelveHour { .. })) {
        return Some(Target::WhichTime);
    }
    Some(Target::At(from, to, target.time))
}

/// Where a move goes.
enum Target {
    /// From day, to day, and the time if one was named.
    At(Date, Date, Option<jiff::civil::Time>),
    /// A time was named that could be morning or evening.
    WhichTime,
}

/// A customer's name in a find or cancel: "Dana's bookings", "bookings for Dana Levi",
/// "התורים של דנה", "חפש את דנה". Never a day, a room or a command word.
fn customer_name(text: &str, w: &[String], cx: &Context<'_>) -> Option<String> {
    let is_name_word = |x: &str| {
        x.chars().all(|c| c.is_alphabetic() || c == '-')
            && !NOT_NAMES.contains(&x)
            && !FIND_WORDS.contains(&x)
            && !CANCEL_WORDS.contains(&x)
            && !FREE_WORDS.contains(&x)
            && temporal::parse(x, cx.now).is_empty()
            && !cx
                .rooms
                .iter()
                .any(|r| r.mentioned_in(x) || room_word(r, x))
    };
    // A name is one or two name words from position i.
    let take = |i: usize| -> Option<String> {
        let first = w.get(i)?;
        if !is_name_word(first) {
            return None;
        }
        let mut name = first.clone();
        if let Some(second) = w.get(i + 1)
            && is_name_word(second)
            && !is_hebrew(second)
            && original_capitalised(text, second)
        {
            name.push(' ');
            name.push_str(second);
        }
        Some(name)
    };
    for (i, x) in w.iter().enumerate() {
        // "Dana's" (and "Dana Levi's").
        if let Some(base) = x.strip_suffix("'s").or_else(|| x.strip_suffix("’s"))
            && is_name_word(base)
        {
            if i > 0 && is_name_word(&w[i - 1]) && original_capitalised(text, &w[i - 1]) {
                return Some(format!("{} {base}", w[i - 1]));
            }
            return Some(base.to_string());
        }
    }
    const LEAD_INS: &[&str] = &[
        "for", "of", "by", "named", "called", "find", "search", "lookup", "של", "בשם", "את", "חפש",
        "תחפש", "מצא", "תמצא",
    ];
    for (i, x) in w.iter().enumerate() {
        if LEAD_INS.contains(&x.as_str())
            && let Some(name) = take(i + 1)
        {
            return Some(name);
        }
    }
    // "who is Dana booked with", "מתי דנה קבעה": a name word after an opening question word.
    None
}

/// Whether `word` is one word of a room's name or alias ("ניו" of "ניו יורק").
fn room_word(room: &Resource, word: &str) -> bool {
    std::iter::once(&room.name)
        .chain(room.aliases.iter())
        .any(|n| n.to_lowercase().split_whitespace().any(|p| p == word))
}

/// The text with English possessives removed ("Thursday's" → "Thursday"), for reading days.
fn without_possessives(text: &str) -> String {
    text.replace("'s ", " ")
        .replace("’s ", " ")
        .trim_end_matches("'s")
        .trim_end_matches("’s")
        .to_string()
}

/// Whether `word` appears capitalised in the original text (an English name, not "bookings").
fn original_capitalised(text: &str, word: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-')
        .any(|t| t.to_lowercase() == word && t.chars().next().is_some_and(char::is_uppercase))
}

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

// ------------------------------------------------------------------ replies

/// Says `en` or `he` by the staff member's language.
pub(crate) fn say(he: bool, en: impl Into<String>, hebrew: impl Into<String>) -> String {
    if he { hebrew.into() } else { en.into() }
}

/// What the offline mode can do, in the staff member's language.
pub fn help(he: bool) -> String {
    say(
        he,
        "Without the AI model I understand: who is booked (\"who is booked on Thursday?\", \
         \"show Dana's bookings\"), cancelling (\"cancel all Dubai-room bookings next week\"), \
         moving a day at the same times (\"move everyone on Thursday to Sunday\"), free slots \
         (\"what's free tomorrow afternoon?\"), and yes/no when I ask to confirm.",
        "בלי מודל הבינה אני מבין: מי קבע (\"מי קבע ביום חמישי?\", \"התורים של דנה\"), ביטול \
         (\"בטל את כל התורים של מחר\"), העברת יום באותן שעות (\"תעביר את כל מי שקבע ליום חמישי ליום \
         ראשון\"), משבצות פנויות (\"מה פנוי מחר אחר הצהריים?\"), וכן/לא כשאני מבקש אישור.",
    )
}

/// The question for an incomplete command.
pub fn ask_missing(missing: Missing, he: bool) -> String {
    match missing {
        Missing::CancelWhat => say(
            he,
            "Which bookings should I cancel? Name a day, a room or a customer.",
            "אילו תורים לבטל? ציינו יום, חדר או לקוח.",
        ),
        Missing::MoveDays => say(
            he,
            "From which day to which day? For example: \"move Thursday's bookings to Sunday\".",
            "מאיזה יום לאיזה יום? למשל: \"תעביר את התורים של יום חמישי ליום ראשון\".",
        ),
        Missing::MoveTime => say(
            he,
            "At what time: morning or evening? For example \"to Sunday at 18:00\", or \"same times\".",
            "באיזו שעה, בוקר או ערב? למשל \"ליום ראשון ב-18:00\", או \"באותן שעות\".",
        ),
    }
}

fn text_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// One booking row: `2026-12-10 19:00 · Dubai · "Dana Levi" +972…` (names quoted: data).
fn booking_line(row: &Value) -> String {
    let mut line = format!("{} {}", text_of(row, "date"), text_of(row, "time"));
    let room = text_of(row, "room");
    if !room.is_empty() && room != "-" {
        line.push_str(&format!(" · {room}"));
    }
    let name = text_of(row, "customer_name");
    if !name.is_empty() {
        line.push_str(&format!(" · \"{name}\""));
    }
    let phone = text_of(row, "customer_phone");
    if !phone.is_empty() {
        line.push_str(&format!(" {phone}"));
    }
    line.trim().to_string()
}

/// The candidates of an ambiguous name, numbered.
pub fn candidates_question(name: &str, candidates: &[Value], he: bool) -> String {
    let mut out = say(
        he,
        format!(
            "\"{name}\" matches {} customers. Which one? (say the number, the full name or the phone)",
            candidates.len()
        ),
        format!(
            "\"{name}\" מתאים ל-{} לקוחות. למי הכוונה? (מספר, שם מלא או טלפון)",
            candidates.len()
        ),
    );
    for (i, c) in candidates.iter().enumerate() {
        out.push_str(&format!(
            "\n{}. \"{}\" {} ({})",
            i + 1,
            text_of(c, "customer_name"),
            text_of(c, "customer_phone"),
            say(
                he,
                format!("{} bookings", text_of(c, "bookings")),
                format!("{} תורים", text_of(c, "bookings"))
            )
        ));
    }
    out
}

/// The reply to one tool result, per item, in the staff member's language.
pub fn report(tool: &str, result: &Value, he: bool) -> String {
    let ok = result.get("ok").and_then(Value::as_bool).unwrap_or(false);
    let error = text_of(result, "error");
    if error == "confirmation_required" {
        let n = result["preview"]["items"].as_u64().unwrap_or(0);
        let verb_en = if tool == BATCH_CANCEL {
            "cancel"
        } else {
            "change"
        };
        let verb_he = if tool == BATCH_CANCEL {
            "לבטל"
        } else {
            "לשנות"
        };
        let mut out = say(
            he,
            format!("This will {verb_en} {n} bookings. Confirm? (yes / no)"),
            format!("הפעולה הזאת עומדת {verb_he} {n} תורים. לאשר? (כן / לא)"),
        );
        let would_fail = result["preview"]["would_fail"].as_u64().unwrap_or(0);
        if would_fail > 0 {
            out.push_str(&say(
                he,
                format!(" {would_fail} of them would fail (the rest would be done)."),
                format!(" {would_fail} מהם ייכשלו (השאר יבוצעו)."),
            ));
        }
        if let Some(days) = result["preview"]["by_day"].as_object() {
            for (day, count) in days {
                out.push_str(&format!("\n{day}: {count}"));
            }
        }
        return out;
    }
    if !ok && error != "no_item_succeeded" {
        return say(
            he,
            format!("Not done: {} ({error}).", text_of(result, "reason")),
            format!("לא בוצע: {} ({error}).", text_of(result, "reason")),
        );
    }
    match tool {
        FIND => find_report(result, he),
        FREE_SLOTS => slots_report(result, he),
        _ => batch_report(tool, result, he),
    }
}

fn find_report(result: &Value, he: bool) -> String {
    let rows = result["reservations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = result["summary"]["reservations"]
        .as_u64()
        .unwrap_or(rows.len() as u64);
    if total == 0 {
        return say(he, "No bookings match.", "אין תורים שמתאימים.");
    }
    let mut out = match total {
        1 => say(he, "1 booking:", "תור אחד:"),
        n => say(he, format!("{n} bookings:"), format!("{n} תורים:")),
    };
    for row in rows.iter().take(LISTED_ROWS) {
        out.push_str("\n- ");
        out.push_str(&booking_line(row));
        let status = text_of(row, "status");
        if !status.is_empty() && status != "booked" {
            out.push_str(&format!(" [{status}]"));
        }
    }
    and_more(&mut out, total, rows.len().min(LISTED_ROWS), he);
    out
}

/// "… and 12 more." when fewer than `total` were listed.
fn and_more(out: &mut String, total: u64, listed: usize, he: bool) {
    let more = total.saturating_sub(listed as u64);
    if more > 0 {
        out.push_str(&say(
            he,
            format!("\n… and {more} more."),
            format!("\n… ועוד {more}."),
        ));
    }
}

fn slots_report(result: &Value, he: bool) -> String {
    let slots = result["slots"].as_array().cloned().unwrap_or_default();
    if slots.is_empty() {
        return say(he, "Nothing is free then.", "אין שום דבר פנוי אז.");
    }
    let total = result["summary"]["free_slots"]
        .as_u64()
        .unwrap_or(slots.len() as u64);
    let mut out = say(
        he,
        format!("{total} free slots:"),
        format!("{total} משבצות פנויות:"),
    );
    for s in slots.iter().take(LISTED_SLOTS) {
        let rooms: Vec<String> = s["rooms"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "\n- {} {}{}",
            text_of(s, "date"),
            text_of(s, "time"),
            if rooms.is_empty() {
                String::new()
            } else {
                format!(" · {}", rooms.join(", "))
            }
        ));
    }
    and_more(&mut out, total, slots.len().min(LISTED_SLOTS), he);
    out
}

fn batch_report(tool: &str, result: &Value, he: bool) -> String {
    let s = &result["summary"];
    let requested = s["requested"].as_u64().unwrap_or(0);
    let succeeded = s["succeeded"].as_u64().unwrap_or(0);
    let failed = s["failed"].as_u64().unwrap_or(0);
    if requested == 0 {
        return say(
            he,
            "No bookings match; nothing changed.",
            "אין תורים שמתאימים; שום דבר לא השתנה.",
        );
    }
    let (en, hebrew) = if tool == BATCH_CANCEL {
        ("Cancelled", "בוטלו")
    } else {
        ("Moved", "הועברו")
    };
    let mut out = say(
        he,
        format!("{en} {succeeded} of {requested}; {failed} failed."),
        format!("{hebrew} {succeeded} מתוך {requested}; {failed} נכשלו."),
    );
    let rows = result
        .get("items")
        .or_else(|| result.get("sample"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for row in rows.iter().take(LISTED_ROWS) {
        let ok = row.get("ok").and_then(Value::as_bool).unwrap_or(false);
        let mark = if ok {
            say(he, "done", "בוצע")
        } else {
            say(
                he,
                format!("failed: {}", text_of(row, "reason")),
                format!("נכשל: {}", text_of(row, "reason")),
            )
        };
        let mut line = booking_line(row);
        if let Some(date) = row["set"]["date"].as_str() {
            line.push_str(&format!(" → {date}"));
        }
        out.push_str(&format!("\n- {line}: {mark}"));
    }
    and_more(&mut out, requested, rows.len().min(LISTED_ROWS), he);
    let queued = s["notices"]["queued"].as_u64().unwrap_or(0);
    if queued > 0 {
        out.push_str(&say(
            he,
            format!("\nWhatsApp notices queued for {queued} customers."),
            format!("\nהודעות וואטסאפ נשלחות ל-{queued} לקוחות."),
        ));
    }
    out
}

/// A free-slots result narrowed to a part of the day ("tomorrow afternoon"): the tool takes days,
/// the part of day is applied here, on each slot's local start.
pub fn slots_in_part(mut result: Value, part: PartOfDay) -> Value {
    if let Some(slots) = result.get_mut("slots").and_then(Value::as_array_mut) {
        slots.retain(|s| {
            let hm = s["start_iso"].as_str().and_then(|iso| iso.get(11..16));
            let time = hm.and_then(|hm| {
                let (h, m) = hm.split_once(':')?;
                jiff::civil::Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
            });
            time.is_some_and(|t| part.contains(t))
        });
        let n = slots.len();
        result["summary"]["free_slots"] = n.into();
    }
    result
}

/// Which of the candidates an answer picks: its number ("2", "the second"), its phone, or a
/// name that only it contains.
pub fn pick_candidate(answer: &str, candidates: &[Value]) -> Option<usize> {
    let w = words(answer);
    const ORDINALS: &[(&[&str], usize)] = &[
        (
            &[
                "1",
                "first",
                "one",
                "ראשון",
                "הראשון",
                "הראשונה",
                "אחד",
                "אחת",
            ],
            0,
        ),
        (
            &[
                "2",
                "second",
                "two",
                "שני",
                "השני",
                "השנייה",
                "השניה",
                "שתיים",
            ],
            1,
        ),
        (
            &["3", "third", "three", "שלישי", "השלישי", "השלישית", "שלוש"],
            2,
        ),
    ];
    if let Some(phone) = parse_phone(answer).map(|p| normalize_phone(&p)) {
        return candidates
            .iter()
            .position(|c| normalize_phone(&text_of(c, "customer_phone")) == phone);
    }
    if w.len() <= 3 {
        for (said, i) in ORDINALS {
            if *i < candidates.len() && any_word(&w, said) {
                return Some(*i);
            }
        }
    }
    let lower = answer.trim().to_lowercase();
    let matching: Vec<usize> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let name = text_of(c, "customer_name").to_lowercase();
            !lower.is_empty() && (name == lower || name.contains(&lower) && lower.contains(' '))
        })
        .map(|(i, _)| i)
        .collect();
    (matching.len() == 1).then(|| matching[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{Weekday, date};

    fn rooms() -> Vec<Resource> {
        ["Dubai", "Barcelona", "Tokyo"]
            .iter()
            .zip([&["דובאי"][..], &["ברצלונה"][..], &["טוקיו"][..]])
            .map(|(name, aliases)| Resource {
                id: format!("room_{}", name.to_lowercase()),
                name: name.to_string(),
                aliases: aliases.iter().map(|a| a.to_string()).collect(),
                concurrency_limit: 1,
            })
            .collect()
    }

    /// Monday 2026-12-07, 12:00 in Jerusalem.
    fn now() -> Zoned {
        date(2026, 12, 7)
            .at(12, 0, 0, 0)
            .in_tz("Asia/Jerusalem")
            .unwrap()
    }

    fn read(text: &str) -> Command {
        let now = now();
        let rooms = rooms();
        parse(
            text,
            &Context {
                now: &now,
                rooms: &rooms,
            },
        )
    }

    fn day(d: Weekday) -> Date {
        let today = now().date();
        (0..7)
            .map(|i| today.checked_add(i.days()).unwrap())
            .find(|x| x.weekday() == d)
            .unwrap()
    }

    fn find(from: Date, to: Date) -> Command {
        Command::Find(Selection {
            from: Some(from),
            to: Some(to),
            ..Selection::default()
        })
    }

    #[test]
    fn reads_the_issue_examples() {
        let thu = day(Weekday::Thursday);
        let sun = date(2026, 12, 13);
        let tomorrow = date(2026, 12, 8);
        let next_week = (date(2026, 12, 13), date(2026, 12, 19));
        assert_eq!(read("who is booked on Thursday?"), find(thu, thu));
        assert_eq!(read("מי קבע ביום חמישי?"), find(thu, thu));
        assert_eq!(
            read("show Dana's bookings"),
            Command::Find(Selection {
                name: Some("dana".into()),
                ..Selection::default()
            })
        );
        assert_eq!(
            read("cancel all Dubai-room bookings next week"),
            Command::Cancel(Selection {
                from: Some(next_week.0),
                to: Some(next_week.1),
                room: Some("Dubai".into()),
                ..Selection::default()
            })
        );
        assert_eq!(
            read("בטל את כל התורים של מחר"),
            Command::Cancel(Selection {
                from: Some(tomorrow),
                to: Some(tomorrow),
                ..Selection::default()
            })
        );
        let moved = Command::MoveDay {
            from: thu,
            to: sun,
            time: None,
            room: None,
        };
        assert_eq!(
            read("move everyone booked on Thursday to Sunday, same times"),
            moved
        );
        assert_eq!(
            read("תעביר את כל מי שקבע ליום חמישי ליום ראשון באותן שעות"),
            moved
        );
        assert_eq!(
            read("what's free tomorrow afternoon?"),
            Command::FreeSlots {
                from: tomorrow,
                to: tomorrow,
                part: Some(PartOfDay::Afternoon),
                room: None
            }
        );
        // Today is Monday: "יום שני" is today.
        assert_eq!(
            read("מה פנוי ביום שני?"),
            Command::FreeSlots {
                from: now().date(),
                to: now().date(),
                part: None,
                room: None
            }
        );
        for yes in ["yes", "כן", "confirm", "אשר"] {
            assert_eq!(read(yes), Command::Confirm, "{yes}");
        }
        for no in ["no", "לא", "no, stop"] {
            assert_eq!(read(no), Command::Decline, "{no}");
        }
    }

    #[test]
    fn unclear_commands_ask_and_unknown_ones_say_what_it_can_do() {
        assert_eq!(read("cancel"), Command::Incomplete(Missing::CancelWhat));
        assert_eq!(read("בטל הכל"), Command::Incomplete(Missing::CancelWhat));
        assert_eq!(read("move them"), Command::Incomplete(Missing::MoveDays));
        assert_eq!(
            read("move Thursday's bookings to Sunday at 6"),
            Command::Incomplete(Missing::MoveTime)
        );
        assert_eq!(
            read("move Thursday's bookings to Sunday at 18:00"),
            Command::MoveDay {
                from: day(Weekday::Thursday),
                to: date(2026, 12, 13),
                time: Some(jiff::civil::time(18, 0, 0, 0)),
                room: None
            }
        );
        assert_eq!(read("what's the weather like"), Command::Unknown);
        assert_eq!(read("help"), Command::Help);
        assert!(help(true).contains("מי קבע"));
    }

    #[test]
    fn a_name_is_never_a_day_a_room_or_a_command_word() {
        let Command::Find(s) = read("show me bookings for tomorrow") else {
            panic!()
        };
        assert_eq!(s.name, None);
        let Command::Find(s) = read("תראה את התורים של דובאי") else {
            panic!()
        };
        assert_eq!((s.name, s.room.as_deref()), (None, Some("Dubai")));
        let Command::Find(s) = read("find Dana Levi") else {
            panic!()
        };
        assert_eq!(s.name.as_deref(), Some("dana levi"));
        let Command::Cancel(s) = read("בטל את התורים של דנה") else {
            panic!()
        };
        assert_eq!(s.name.as_deref(), Some("דנה"));
        let Command::Find(s) = read("bookings of 050-123-4567") else {
            panic!()
        };
        assert_eq!(s.phone.as_deref(), Some("+972501234567"));
    }

    #[test]
    fn candidates_are_picked_by_number_phone_or_full_name() {
        let c = vec![
            json!({"customer_name": "Dana Levi", "customer_phone": "+972501111111", "bookings": 2}),
            json!({"customer_name": "Dana Cohen", "customer_phone": "+972502222222", "bookings": 1}),
        ];
        assert_eq!(pick_candidate("2", &c), Some(1));
        assert_eq!(pick_candidate("the first", &c), Some(0));
        assert_eq!(pick_candidate("השנייה", &c), Some(1));
        assert_eq!(pick_candidate("050-222-2222", &c), Some(1));
        assert_eq!(pick_candidate("Dana Cohen", &c), Some(1));
        assert_eq!(pick_candidate("Dana", &c), None);
        let q = candidates_question("Dana", &c, false);
        assert!(
            q.contains("1. \"Dana Levi\"") && q.contains("2. \"Dana Cohen\""),
            "{q}"
        );
    }

    #[test]
    fn reports_are_per_item_in_the_staff_language() {
        let result = json!({"ok": true, "summary": {"requested": 2, "succeeded": 1, "failed": 1,
            "notices": {"queued": 1}},
            "sample": [
                {"ok": false, "reason": "the day is closed", "date": "2026-12-10", "time": "19:00",
                 "customer_name": "Avi", "room": "Dubai"},
                {"ok": true, "date": "2026-12-10", "time": "20:00", "customer_name": "Dana",
                 "room": "Dubai"}]});
        let en = report(BATCH_CANCEL, &result, false);
        assert!(en.starts_with("Cancelled 1 of 2; 1 failed."), "{en}");
        assert!(en.contains("\"Avi\": failed: the day is closed"), "{en}");
        assert!(en.contains("\"Dana\": done"), "{en}");
        let he = report(BATCH_CANCEL, &result, true);
        assert!(he.starts_with("בוטלו 1 מתוך 2"), "{he}");
        let confirm = json!({"ok": false, "error": "confirmation_required", "confirm": "t",
            "preview": {"items": 7, "by_day": {"2026-12-10": 7}}});
        assert!(report(BATCH_CANCEL, &confirm, false).contains("cancel 7 bookings"));
        assert!(report(BATCH_CANCEL, &confirm, true).contains("לאשר"));
        let partly = json!({"ok": false, "error": "confirmation_required", "confirm": "t",
            "preview": {"items": 7, "would_fail": 2, "by_day": {}}});
        assert!(report(BATCH_MODIFY, &partly, false).contains("2 of them would fail"));
    }
}
