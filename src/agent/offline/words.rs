//! How the dialog says things in the customer's language: the Hebrew or English form of a
//! sentence, days ("today", "יום חמישי 26/11"), times and lists ("a, b or c").

use jiff::civil::{Date, Time};

use super::DialogState;
use crate::booking::guard::is_hebrew;

/// The documents are bilingual ("English. Hebrew."): the half in the customer's language.
pub(super) fn in_language(body: &str, hebrew: bool) -> String {
    body.split_once(". ")
        .map(|(a, b)| if hebrew == is_hebrew(b) { b } else { a })
        .unwrap_or(body)
        .to_string()
}

pub(super) fn say(hebrew: bool, en: &str, he: &str) -> String {
    if hebrew { he.into() } else { en.into() }
}

pub(super) fn day_words(state: &DialogState, today: Date, d: Date) -> String {
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

/// "Thursday 26/11" / "יום חמישי 26/11"; "today", "tomorrow".
pub(super) fn short_day(he: bool, today: Date, d: Date) -> String {
    if d == today {
        return say(he, "today", "היום");
    }
    if today.tomorrow().ok() == Some(d) {
        return say(he, "tomorrow", "מחר");
    }
    weekday_label(he, d)
}

/// "Friday 11/12" / "יום שישי 11/12".
pub(super) fn weekday_label(he: bool, d: Date) -> String {
    let i = d.weekday().to_sunday_zero_offset() as usize;
    if he {
        let names = ["ראשון", "שני", "שלישי", "רביעי", "חמישי", "שישי", "שבת"];
        let day = if i == 6 {
            names[i].to_string()
        } else {
            format!("יום {}", names[i])
        };
        format!("{day} {}/{}", d.day(), d.month())
    } else {
        format!("{} {}/{}", d.weekday_name_en(), d.day(), d.month())
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

pub(super) fn join_or(items: &[String], hebrew: bool) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} {} {last}", rest.join(", "), say(hebrew, "or", "או")),
    }
}

pub(super) fn hhmm(t: Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}
