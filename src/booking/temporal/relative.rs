//! Dates relative to today: weekdays with this/next/הבא/הקרוב, day and week offsets ("מחרתיים",
//! "in two weeks on Tuesday", "בעוד שבועיים"), minute offsets ("in half an hour", "בעוד
//! שעתיים"), the business's weekend and the spans a customer asks about ("this weekend", "next
//! week").

use jiff::civil::{Date, Weekday};
use jiff::{ToSpan, Zoned};

use super::tokens::{BARE_HE_WEEKDAYS, HE_WEEKDAYS, WEEKDAYS, hebrew_stems, lookup, number_at};

pub(super) fn next_on_or_after(from: Date, w: Weekday) -> Date {
    let mut d = from;
    for _ in 0..7 {
        if d.weekday() == w {
            return d;
        }
        d = d.tomorrow().unwrap_or(d);
    }
    d
}

/// The weekday named in the text, and whether it was "next"/"הבא".
pub(super) fn find_weekday(w: &[String]) -> Option<(Weekday, bool)> {
    for (i, word) in w.iter().enumerate() {
        let stems = hebrew_stems(word);
        let named = if stems.contains(&"יום") || stems.contains(&"ימי") {
            w.get(i + 1).and_then(|n| lookup(n, &HE_WEEKDAYS))
        } else if stems.contains(&"שבת") || word == "שבת" {
            Some(Weekday::Saturday)
        } else if let Some(d) = lookup(word, &BARE_HE_WEEKDAYS) {
            // "שישי ב-20:00", "בחמישי"; "שני"/"ראשון" alone are numbers, so only with a prefix.
            Some(d)
        } else if hebrew_stems(word).len() > 1
            && let Some(d) = hebrew_stems(word)[1..]
                .iter()
                .find_map(|s| lookup(s, &[("שני", Weekday::Monday), ("ראשון", Weekday::Sunday)]))
        {
            Some(d)
        } else {
            WEEKDAYS
                .iter()
                .find(|(n, _)| *n == word.as_str())
                .map(|(_, d)| *d)
        };
        if let Some(day) = named {
            let around: Vec<&str> = w
                .iter()
                .skip(i.saturating_sub(1))
                .take(4)
                .map(String::as_str)
                .collect();
            let next = around
                .iter()
                .any(|x| matches!(*x, "next" | "הבא" | "הבאה" | "הבאים"));
            return Some((day, next));
        }
    }
    None
}

/// "in 2 days", "בעוד יומיים", "עוד שבועיים", "in a week", "a month from now".
pub(super) fn find_offset(w: &[String]) -> Option<(i64, char)> {
    const DUALS: [(&str, i64, char); 6] = [
        ("יומיים", 2, 'd'),
        ("שבועיים", 2, 'w'),
        ("חודשיים", 2, 'm'),
        ("fortnight", 2, 'w'),
        ("שבוע", 1, 'w'),
        ("חודש", 1, 'm'),
    ];
    for (i, word) in w.iter().enumerate() {
        let after_in = i > 0
            && matches!(
                hebrew_stems(&w[i - 1]).last().copied(),
                Some("in" | "עוד" | "בעוד" | "within" | "אחרי")
            )
            || i > 1 && w[i - 2] == "in" && w[i - 1] == "a";
        if let Some((_, n, unit)) = DUALS
            .iter()
            .find(|(d, _, _)| hebrew_stems(word).contains(d))
        {
            let said_in = i > 0 && (w[i - 1] == "עוד" || w[i - 1] == "בעוד" || w[i - 1] == "אחרי")
                || word.starts_with("בעוד");
            if said_in || (*n == 2 && word != "שבוע" && word != "חודש" && i > 0) {
                return Some((*n, *unit));
            }
            continue;
        }
        let unit = match hebrew_stems(word).last().copied() {
            Some("day" | "days" | "ימים" | "יום") => 'd',
            Some("week" | "weeks" | "שבועות") => 'w',
            Some("month" | "months" | "חודשים") => 'm',
            _ => continue,
        };
        let Some(prev) = i.checked_sub(1) else {
            continue;
        };
        let n = number_at(w, prev).map(|(n, _)| n as i64).or_else(|| {
            // "in two" was read as one word before; "a week"
            (w[prev] == "a" || w[prev] == "one").then_some(1)
        });
        let before_in = prev > 0
            && matches!(
                w[prev - 1].as_str(),
                "in" | "עוד" | "בעוד" | "within" | "אחרי"
            );
        let from_now = w
            .get(i + 1)
            .is_some_and(|x| x == "from" || x == "later" || x == "מהיום" || x == "מעכשיו");
        if let Some(n) = n
            && (before_in || after_in || from_now)
        {
            return Some((n, unit));
        }
    }
    None
}

/// "in an hour", "in half an hour", "in 3 hours", "in 90 minutes", "בעוד שעה", "בעוד חצי שעה",
/// "בעוד שעתיים", "עוד שלוש שעות", "בעוד שעה וחצי": minutes from now.
pub(super) fn find_minutes_offset(w: &[String]) -> Option<i64> {
    for (i, word) in w.iter().enumerate() {
        if !matches!(word.as_str(), "in" | "within" | "עוד" | "בעוד") {
            continue;
        }
        // "in about an hour", "בעוד בערך שעה"
        let skip = w[i + 1..]
            .iter()
            .take_while(|x| {
                matches!(
                    x.as_str(),
                    "about" | "around" | "like" | "roughly" | "בערך" | "כ"
                )
            })
            .count();
        let rest = &w[i + 1 + skip..];
        let g = |k: usize| rest.get(k).map(String::as_str);
        let unit = |k: usize| -> Option<i64> {
            match g(k)? {
                "hour" | "hours" | "hr" | "hrs" | "שעה" | "שעות" => Some(60),
                "minute" | "minutes" | "min" | "mins" | "דקה" | "דקות" => Some(1),
                _ => None,
            }
        };
        let (mut minutes, used) = match (g(0), g(1), g(2)) {
            (Some("half"), Some("an" | "a"), Some("hour")) => (30, 3),
            (Some("חצי"), Some("שעה"), _) => (30, 2),
            (Some("רבע"), Some("שעה"), _) => (15, 2),
            (Some("שעה"), _, _) => (60, 1),
            (Some("שעתיים"), _, _) => (120, 1),
            (Some("an" | "a" | "one"), Some("hour"), _) => (60, 2),
            _ => {
                let Some((n, u)) = number_at(rest, 0) else {
                    continue;
                };
                let Some(per) = unit(u) else {
                    continue;
                };
                (n as i64 * per, u + 1)
            }
        };
        // "an hour and a half", "שעה וחצי"
        if minutes >= 60 && minutes % 60 == 0 {
            match (g(used), g(used + 1), g(used + 2)) {
                (Some("וחצי"), _, _) | (Some("and"), Some("a"), Some("half")) => minutes += 30,
                _ => {}
            }
        }
        if (1..=24 * 60).contains(&minutes) {
            return Some(minutes);
        }
    }
    None
}

/// The business's weekend, by its timezone: Friday–Saturday in Israel, else Saturday–Sunday.
pub fn weekend(now: &Zoned) -> (Weekday, Weekday) {
    match now.time_zone().iana_name() {
        Some("Asia/Jerusalem" | "Asia/Tel_Aviv" | "Israel") => (Weekday::Friday, Weekday::Saturday),
        _ => (Weekday::Saturday, Weekday::Sunday),
    }
}

/// Days said without saying which one: "this weekend" / "בסוף השבוע" (the business's weekend,
/// the coming one; "next weekend" the one after), "next week" / "בשבוע הבא" and "this week" /
/// "השבוע" without a weekday.
pub(super) fn find_span(w: &[String], lower: &str, now: &Zoned) -> Option<(Date, Date)> {
    let today = now.date();
    let (first, last) = weekend(now);
    let week_start = last.next();
    let said = |phrases: &[&str]| phrases.iter().any(|p| lower.contains(p));
    let weekend_said = has_word(w, &["weekend", "weekends", "סופ״ש", "סופש", "סופשבוע"])
        || said(&["סוף השבוע", "סוף שבוע", "week end"]);
    if weekend_said {
        let this = if today.weekday() == last {
            (today, today)
        } else {
            let f = next_on_or_after(today, first);
            (f, f.tomorrow().unwrap_or(f))
        };
        let next = said(&[
            "next weekend",
            "the weekend after",
            "סוף השבוע הבא",
            "סופ״ש הבא",
            "סופש הבא",
            "סוף שבוע הבא",
        ]);
        if !next {
            return Some(this);
        }
        let f = next_on_or_after(this.1.tomorrow().ok()?, first);
        return Some((f, f.tomorrow().unwrap_or(f)));
    }
    let next_week = said(&["next week", "שבוע הבא", "שבוע הבאה", "שבוע שאחרי"]);
    if next_week {
        let from = next_on_or_after(today.tomorrow().ok()?, week_start);
        return Some((from, from.checked_add(6.days()).ok()?));
    }
    if said(&["this week", "later this week"]) || has_word(w, &["השבוע"]) {
        let end = next_on_or_after(today.tomorrow().ok()?, week_start)
            .yesterday()
            .ok()?;
        return Some((today, end));
    }
    None
}

pub(super) fn has_word(w: &[String], options: &[&str]) -> bool {
    w.iter().any(|x| {
        options.contains(&x.as_str()) || hebrew_stems(x).iter().skip(1).any(|s| options.contains(s))
    })
}
