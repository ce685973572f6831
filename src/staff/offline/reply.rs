//! The offline mode's replies in the staff member's language: help, the question for what a command
//! is missing, the "which customer?" question, and the per-item report of each tool's result
//! (bookings found, free slots, what a batch cancel or move did to each booking), capped at a
//! readable number of rows.

use serde_json::Value;

use super::{LISTED_ROWS, LISTED_SLOTS, Missing};
use crate::booking::temporal::PartOfDay;
use crate::staff::tools::{BATCH_CANCEL, FIND, FREE_SLOTS};

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

pub(super) fn text_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// One booking row: `2026-12-10 19:00 · Dubai · "Dana Levi" +972…` (names quoted: data).
pub(super) fn booking_line(row: &Value) -> String {
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

pub(super) fn find_report(result: &Value, he: bool) -> String {
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
pub(super) fn and_more(out: &mut String, total: u64, listed: usize, he: bool) {
    let more = total.saturating_sub(listed as u64);
    if more > 0 {
        out.push_str(&say(
            he,
            format!("\n… and {more} more."),
            format!("\n… ועוד {more}."),
        ));
    }
}

pub(super) fn slots_report(result: &Value, he: bool) -> String {
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

pub(super) fn batch_report(tool: &str, result: &Value, he: bool) -> String {
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
