//! Reading a staff message into a [`Command`]: the command words in both languages, the days and
//! times (through [`crate::booking::temporal`]), the room, the customer's name (never a day, a room
//! or a command word), and the answer to a "which customer?" question. Only the staff member's own
//! message is read here, never a tool result.

use jiff::ToSpan;
use jiff::Zoned;
use jiff::civil::Date;
use serde_json::Value;

use super::reply::text_of;
use super::{Command, Context, Missing, Selection};
use crate::booking::guard::is_hebrew;
use crate::booking::parse::{is_no, is_yes, normalize_phone, parse_phone};
use crate::booking::temporal::{self, Ambiguity, hebrew_stems, words};
use crate::store::booking::Resource;

pub(super) const CONFIRM_WORDS: &[&str] = &[
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
pub(super) const DECLINE_WORDS: &[&str] = &[
    "no", "nope", "don't", "dont", "stop", "abort", "never", "לא", "עזוב", "עזבי", "אל", "עצור",
];
pub(super) const HELP_WORDS: &[&str] = &["help", "עזרה", "commands", "פקודות"];
pub(super) const MOVE_WORDS: &[&str] = &[
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
pub(super) const CANCEL_WORDS: &[&str] = &[
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
pub(super) const FREE_WORDS: &[&str] = &[
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
pub(super) const FIND_WORDS: &[&str] = &[
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
pub(super) const NOT_NAMES: &[&str] = &[
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

pub(super) fn any_word(w: &[String], list: &[&str]) -> bool {
    w.iter().any(|x| list.contains(&x.as_str()))
}

/// A word or its Hebrew stems (prefixes ו, ה, ב, ל, מ, ש, כ removed) is in `list`.
pub(super) fn any_stem(w: &[String], list: &[&str]) -> bool {
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
pub(super) fn move_days(w: &[String], now: &Zoned) -> Option<Target> {
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
pub(super) enum Target {
    /// From day, to day, and the time if one was named.
    At(Date, Date, Option<jiff::civil::Time>),
    /// A time was named that could be morning or evening.
    WhichTime,
}

/// A customer's name in a find or cancel: "Dana's bookings", "bookings for Dana Levi",
/// "התורים של דנה", "חפש את דנה". Never a day, a room or a command word.
pub(super) fn customer_name(text: &str, w: &[String], cx: &Context<'_>) -> Option<String> {
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
pub(super) fn room_word(room: &Resource, word: &str) -> bool {
    std::iter::once(&room.name)
        .chain(room.aliases.iter())
        .any(|n| n.to_lowercase().split_whitespace().any(|p| p == word))
}

/// The text with English possessives removed ("Thursday's" → "Thursday"), for reading days.
pub(super) fn without_possessives(text: &str) -> String {
    text.replace("'s ", " ")
        .replace("’s ", " ")
        .trim_end_matches("'s")
        .trim_end_matches("’s")
        .to_string()
}

/// Whether `word` appears capitalised in the original text (an English name, not "bookings").
pub(super) fn original_capitalised(text: &str, word: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-')
        .any(|t| t.to_lowercase() == word && t.chars().next().is_some_and(char::is_uppercase))
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
