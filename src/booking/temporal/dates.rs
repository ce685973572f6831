//! Absolute dates: ISO, `d.m(.y)`, `d/m(/y)`, month names in both languages ("December 8",
//! "24 בינואר", "ה-8 לדצמבר") and a bare day of the month ("the 3rd", "ב-3 לחודש הבא"). A date
//! that does not exist on the calendar is an error, never a neighbouring day.

use jiff::ToSpan;
use jiff::civil::Date;

use super::tokens::{MONTHS, digits, hebrew_stems, lookup, number_at};

/// Absolute dates: ISO, d.m(.y), d/m(/y), "December 8", "8 December", "24 בינואר", "ה-8 לדצמבר".
pub(super) fn find_absolute(w: &[String], today: Date) -> Option<Result<(Date, bool), ()>> {
    for (i, word) in w.iter().enumerate() {
        for s in hebrew_stems(word) {
            if let Ok(d) = s.parse::<Date>() {
                return Some(Ok((d, true)));
            }
            let sep = if s.contains('/') {
                '/'
            } else if s.contains('.') {
                '.'
            } else {
                continue;
            };
            let parts: Vec<&str> = s.split(sep).collect();
            if !(2..=3).contains(&parts.len())
                || parts
                    .iter()
                    .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
            {
                continue;
            }
            let (Ok(d), Ok(m)) = (parts[0].parse::<i8>(), parts[1].parse::<i8>()) else {
                continue;
            };
            let year = parts
                .get(2)
                .and_then(|y| y.parse::<i16>().ok())
                .map(|y| if y < 100 { 2000 + y } else { y });
            return Some(calendar(today, year, m, d));
        }
        if let Some(m) = lookup(word, &MONTHS) {
            // "may" is also a verb: only with a day number beside it.
            // "24 בינואר", "בעשרים וארבעה בינואר", "the twenty fourth of January"
            let before = i
                .checked_sub(1)
                .and_then(|p| number_ending_at(w, p).map(|(n, _)| n));
            let before = before.or_else(|| {
                // "8 of December", "ה-8 לדצמבר"
                (i >= 2 && w[i - 1] == "of")
                    .then(|| number_ending_at(w, i - 2).map(|(n, _)| n))
                    .flatten()
            });
            let after = w
                .get(i + 1)
                .filter(|x| !matches!(x.as_str(), "a" | "an" | "one"))
                .and_then(|_| number_at(w, i + 1).map(|(n, _)| n));
            let day = before.or(after).filter(|d| (1..=31).contains(d));
            if let Some(day) = day {
                let year = w
                    .get(i + if before.is_some() { 1 } else { 2 })
                    .and_then(|x| digits(x))
                    .filter(|y| *y >= 2000)
                    .map(|y| y as i16);
                return Some(calendar(today, year, m, day as i8));
            }
        }
    }
    None
}

pub(super) fn calendar(today: Date, year: Option<i16>, m: i8, d: i8) -> Result<(Date, bool), ()> {
    match year {
        Some(y) => Date::new(y, m, d).map(|x| (x, true)).map_err(|_| ()),
        None => {
            let this = Date::new(today.year(), m, d).map_err(|_| ())?;
            if this < today {
                Date::new(today.year() + 1, m, d)
                    .map(|x| (x, false))
                    .map_err(|_| ())
            } else {
                Ok((this, false))
            }
        }
    }
}

/// Digits with an English ordinal suffix: "3rd", "15th", "1st".
pub(super) fn ordinal_digits(word: &str) -> bool {
    word.chars().next().is_some_and(|c| c.is_ascii_digit())
        && ["st", "nd", "rd", "th"].iter().any(|x| word.ends_with(x))
}

/// A number whose last word is `end` ("עשרים וארבעה", "twenty fourth", "24"): the value and the
/// index of its first word.
pub(super) fn number_ending_at(w: &[String], end: usize) -> Option<(i32, usize)> {
    if end >= 1
        && let Some((n, 2)) = number_at(w, end - 1)
    {
        return Some((n, end - 1));
    }
    number_at(w, end)
        .filter(|(_, used)| *used == 1)
        .map(|(n, _)| (n, end))
}

/// Hebrew ordinals, for days of the month ("הראשון לחודש", "בשלישי לחודש").
pub(super) const HE_ORDINALS: [(&str, i8); 10] = [
    ("ראשון", 1),
    ("שני", 2),
    ("שלישי", 3),
    ("רביעי", 4),
    ("חמישי", 5),
    ("שישי", 6),
    ("שביעי", 7),
    ("שמיני", 8),
    ("תשיעי", 9),
    ("עשירי", 10),
];

/// A day of the month without a month name: "the 3rd", "on the 15th", "the first of next
/// month", "הראשון לחודש", "ב-3 לחודש הבא", "בעשרים וארבעה לחודש". Without "next month" it is
/// the next such day from today. `Err` for a day the month does not have.
pub(super) fn find_day_of_month(w: &[String], today: Date) -> Option<Result<Date, ()>> {
    let get = |k: usize| w.get(k).map(String::as_str);
    let mut found: Option<(i32, Option<bool>)> = None; // (day, Some(next month?))
    for (i, word) in w.iter().enumerate() {
        // Hebrew: "<number or ordinal> לחודש [הבא]".
        if matches!(word.as_str(), "לחודש" | "בחודש") && i > 0 {
            let day = number_ending_at(w, i - 1)
                .map(|(n, _)| n)
                .or_else(|| lookup(&w[i - 1], &HE_ORDINALS).map(i32::from));
            if let Some(day) = day {
                let next = matches!(get(i + 1), Some("הבא" | "הבאה"));
                let this = matches!(get(i + 1), Some("הזה" | "הנוכחי"));
                found = Some((day, (next || this).then_some(next)));
                break;
            }
        }
        // English: "the 3rd", "the twenty fourth of next month".
        let Some((day, used)) = number_at(w, i) else {
            continue;
        };
        let last = &w[i + used - 1];
        let suffixed = ordinal_digits(word);
        let ordinal_word = !last.chars().next().is_some_and(|c| c.is_ascii_digit())
            && last.is_ascii()
            && ["st", "nd", "rd", "th"].iter().any(|x| last.ends_with(x));
        if !suffixed && !ordinal_word {
            continue;
        }
        let j = i + used;
        let of_month = get(j) == Some("of")
            && (get(j + 1) == Some("month")
                || matches!(get(j + 1), Some("next" | "this" | "the"))
                    && get(j + 2) == Some("month"));
        let after_the = i > 0 && matches!(w[i - 1].as_str(), "the" | "on");
        // "the first one" is a choice, not a date: a word ordinal needs "of the month" or
        // "on the" ("on the twenty eighth").
        let on_the = i >= 2 && w[i - 2] == "on" && w[i - 1] == "the";
        if !(suffixed && after_the || of_month || on_the || suffixed && get(j).is_none() && i == 0)
        {
            continue;
        }
        let month = of_month.then(|| match get(j + 1) {
            Some("next") => Some(true),
            Some("this") => Some(false),
            _ => None,
        });
        found = Some((day, month.flatten()));
        break;
    }
    let (day, next_month) = found?;
    let day = i8::try_from(day).ok().filter(|d| (1..=31).contains(d))?;
    let this_month = today.first_of_month();
    let following = this_month.checked_add(1.month()).ok()?;
    let month = match next_month {
        Some(true) => following,
        Some(false) => this_month,
        None if day >= today.day() => this_month,
        None => following,
    };
    Some(Date::new(month.year(), month.month(), day).map_err(|_| ()))
}
