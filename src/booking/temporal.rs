//! Temporal expressions in Hebrew and English, as customers type them and as a recogniser
//! transcribes them (no punctuation, numbers as words): absolute dates (`15.12`, `15/12/2026`,
//! ISO, "December 8", "24 בינואר"), relative days ("מחרתיים", "in two days", "בעוד שבועיים"),
//! weekdays with this/next/הבא/הקרוב ("in two weeks on Tuesday"), times (`18:30`, "at seven
//! thirty pm", "בשמונה וחצי", "רבע לשמונה", "half past 6"), parts of day ("בערב", "tonight",
//! "אחה״צ") and ranges ("between 5 and 7", "בין 5 ל-7").
//!
//! Pure and sans-IO: `now` (a `Zoned`, i.e. the business's timezone and the current instant) is
//! an input. The result carries its [`Ambiguity`], so the dialog asks ("6 in the morning or the
//! evening?", "06:00 today has passed") instead of silently moving the request.

use jiff::civil::{Date, Time, Weekday};
use jiff::{ToSpan, Zoned};
use serde::{Deserialize, Serialize};

/// A part of the day; it disambiguates a 12-hour time and narrows slot offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartOfDay {
    Morning,
    Noon,
    Afternoon,
    Evening,
    Night,
}

impl PartOfDay {
    /// Hours `[from, to)` the part of day covers (24-hour clock).
    pub fn hours(self) -> (i8, i8) {
        match self {
            PartOfDay::Morning => (6, 12),
            PartOfDay::Noon => (12, 15),
            PartOfDay::Afternoon => (12, 18),
            PartOfDay::Evening => (17, 23),
            PartOfDay::Night => (19, 24),
        }
    }

    pub fn contains(self, t: Time) -> bool {
        let (from, to) = self.hours();
        t.hour() >= from && t.hour() < to
    }

    /// A 12-hour clock hour (1..=12) read in this part of the day.
    fn to_24h(self, hour: i8) -> i8 {
        match self {
            PartOfDay::Morning => {
                if hour == 12 {
                    0
                } else {
                    hour
                }
            }
            PartOfDay::Noon => {
                if (11..=12).contains(&hour) {
                    hour
                } else {
                    hour + 12
                }
            }
            PartOfDay::Night if hour == 12 => 0,
            PartOfDay::Night if hour <= 4 => hour,
            _ if hour == 12 => 12,
            _ => hour + 12,
        }
    }
}

/// Why the value cannot be taken as said: the dialog asks about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ambiguity {
    /// "at 6" with no am/pm or part of day: both readings are possible.
    TwelveHour { am: Time, pm: Time },
    /// The date and time are already past (e.g. "today at 06:00" at 09:00).
    PastTime,
    /// The date is before today ("December 1" said with an explicit past year).
    PastDate,
    /// A date that does not exist ("31.2", "30 בפברואר").
    InvalidDate,
    /// Some day in `from..=to`, not which one: "this weekend" (the business's weekend, Friday
    /// and Saturday in Israel), "next week" without a day. Asked about, never guessed.
    WhichDay { from: Date, to: Date },
}

/// What a text says about when. Every field is `None` when the text does not say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Temporal {
    pub date: Option<Date>,
    /// The time, resolved to the 24-hour clock when the text made that possible.
    pub time: Option<Time>,
    pub part_of_day: Option<PartOfDay>,
    /// "between 5 and 7": the earliest and latest wanted start.
    pub range: Option<(Time, Time)>,
    pub ambiguity: Option<Ambiguity>,
    /// The weekday named ("Thursday", "יום חמישי"), so an answer to "which day next week?" can
    /// be placed in that week.
    #[serde(skip)]
    pub weekday: Option<Weekday>,
}

impl Temporal {
    pub fn is_empty(&self) -> bool {
        self.date.is_none()
            && self.time.is_none()
            && self.part_of_day.is_none()
            && self.range.is_none()
            && self.ambiguity.is_none()
            && self.weekday.is_none()
    }
}

mod dates;
mod relative;
mod times;
mod tokens;

use dates::{find_absolute, find_day_of_month};
use relative::{
    find_minutes_offset, find_offset, find_span, find_weekday, has_word, next_on_or_after,
};
use times::{clock_token, find_clock, find_range, part_of_day, resolve_clock};
use tokens::number_at;

pub use relative::weekend;
pub use tokens::{hebrew_stems, normalize, words};

/// Reads what `text` says about when, relative to `now` (in the business's timezone).
pub fn parse(text: &str, now: &Zoned) -> Temporal {
    let today = now.date();
    let lower = normalize(text);
    let w = words(text);
    let mut out = Temporal::default();
    let (part, implies_today) = part_of_day(&w, &lower);
    out.part_of_day = part;

    // Date.
    let mut date = None;
    match find_absolute(&w, today) {
        Some(Ok((d, _))) => date = Some(d),
        Some(Err(())) => out.ambiguity = Some(Ambiguity::InvalidDate),
        None => match find_day_of_month(&w, today) {
            Some(Ok(d)) => date = Some(d),
            Some(Err(())) => out.ambiguity = Some(Ambiguity::InvalidDate),
            None => {}
        },
    }
    // "in an hour", "בעוד חצי שעה": a date and a time.
    let mut offset_time = None;
    if date.is_none()
        && out.ambiguity.is_none()
        && let Some(minutes) = find_minutes_offset(&w)
        && let Ok(at) = now.checked_add(minutes.minutes())
    {
        date = Some(at.date());
        offset_time = Time::new(at.hour(), at.minute(), 0, 0).ok();
    }
    if date.is_none() {
        if lower.contains("day after tomorrow") || has_word(&w, &["מחרתיים"]) {
            date = today.checked_add(2.days()).ok();
        } else if has_word(
            &w,
            &[
                "tomorrow",
                "tmrw",
                "tmr",
                "tomorow",
                "tommorow",
                "tommorrow",
                "2morrow",
                "מחר",
            ],
        ) {
            date = today.tomorrow().ok();
        } else if has_word(&w, &["today", "היום", "tonight", "הערב", "הלילה"]) || implies_today
        {
            date = Some(today);
        }
    }
    let offset = find_offset(&w);
    let weekday = find_weekday(&w);
    if date.is_none() {
        date = match (offset, weekday) {
            // "in two weeks on Tuesday": the Tuesday of the week (Sunday first) two weeks on.
            (Some((n, 'w')), Some((day, _))) => {
                let base = today.checked_add((n * 7).days()).ok();
                base.map(|b| {
                    let sunday = b
                        .checked_sub((b.weekday().to_sunday_zero_offset() as i64).days())
                        .unwrap_or(b);
                    next_on_or_after(sunday, day)
                })
            }
            (Some((n, unit)), _) => match unit {
                'd' => today.checked_add(n.days()).ok(),
                'w' => today.checked_add((n * 7).days()).ok(),
                _ => today.checked_add(n.months()).ok(),
            },
            (None, Some((day, next))) => {
                out.weekday = Some(day);
                let from = if next {
                    today.tomorrow().unwrap_or(today)
                } else {
                    today
                };
                // "next week on Tuesday" / "בשבוע הבא ביום שלישי": the Tuesday of next week.
                let next_week = lower.contains("next week") || lower.contains("שבוע הבא");
                if next_week {
                    let sunday_next =
                        next_on_or_after(today.tomorrow().unwrap_or(today), Weekday::Sunday);
                    Some(next_on_or_after(sunday_next, day))
                } else {
                    Some(next_on_or_after(from, day))
                }
            }
            (None, None) => match find_span(&w, &lower, now) {
                Some((from, to)) if from == to => Some(from),
                Some((from, to)) => {
                    if out.ambiguity.is_none() {
                        out.ambiguity = Some(Ambiguity::WhichDay { from, to });
                    }
                    None
                }
                None => None,
            },
        };
    }
    out.date = date;

    // Time.
    out.time = offset_time;
    out.range = find_range(&w, part);
    if out.range.is_none()
        && offset_time.is_none()
        && let Some((clock, _, _)) = find_clock(&w)
    {
        let (time, amb) = resolve_clock(clock, part);
        out.time = time;
        if amb.is_some() && out.ambiguity.is_none() {
            out.ambiguity = amb;
        }
    }

    // Past.
    if out.ambiguity.is_none()
        && let Some(d) = out.date
    {
        if d < today {
            out.ambiguity = Some(Ambiguity::PastDate);
        } else if d == today
            && let Some(t) = out.time
            && t < now.time()
        {
            out.ambiguity = Some(Ambiguity::PastTime);
        }
    }
    out
}

/// Picks between the two readings of a 12-hour time by what `acceptable` allows (e.g. inside
/// opening hours, not past): one left → that one; both → `None`, ask "morning or evening?";
/// neither → the daytime reading (7:00–18:59), so the refusal that follows explains why.
pub fn resolve_twelve_hour(am: Time, pm: Time, acceptable: impl Fn(Time) -> bool) -> Option<Time> {
    match (acceptable(am), acceptable(pm)) {
        (true, true) => None,
        (true, false) => Some(am),
        (false, true) => Some(pm),
        (false, false) => Some(if am.hour() >= 7 { am } else { pm }),
    }
}

/// A bare number answering "which time?" after times were offered ("7 works for us", "שבע").
pub fn bare_hour(text: &str) -> Option<i8> {
    let w = words(text);
    let mut found = None;
    for i in 0..w.len() {
        if let Some(c) = clock_token(&w[i]) {
            return Some(c.hour);
        }
        if let Some((n, _)) = number_at(&w, i)
            && (1..=23).contains(&n)
            && !matches!(w[i].as_str(), "a" | "an" | "first" | "second")
            && !(w[i] == "one"
                && i > 0
                && matches!(
                    w[i - 1].as_str(),
                    "the" | "first" | "that" | "this" | "last"
                ))
        {
            if found.is_some() {
                return None;
            }
            found = Some(n as i8);
        }
    }
    found
}

#[cfg(test)]
mod tests;
