//! Times of day: parts of the day ("בערב", "tonight"), clock expressions (`18:30`, "at seven
//! thirty pm", "בשמונה וחצי", "רבע לשמונה", "half past 6") with the cues that make a bare
//! number an hour, their resolution to a `Time` (with the 12-hour [`Ambiguity`] when neither the
//! words nor the part of day say which), and ranges ("between 5 and 7", "בין 5 ל-7").

use jiff::civil::Time;

use super::dates::ordinal_digits;
use super::tokens::{HE_WEEKDAYS, MONTHS, hebrew_stems, lookup, number_at, number_word};
use super::{Ambiguity, PartOfDay};

pub(super) fn part_of_day(words: &[String], lower: &str) -> (Option<PartOfDay>, bool) {
    // (part, implies today)
    let has = |w: &str| words.iter().any(|x| x == w);
    let stem_in = |table: &[&str]| {
        words
            .iter()
            .any(|x| hebrew_stems(x).iter().skip(1).any(|s| table.contains(s)))
    };
    if has("tonight") || has("הלילה") {
        return (Some(PartOfDay::Night), true);
    }
    if has("הערב") || lower.contains("this evening") {
        return (Some(PartOfDay::Evening), true);
    }
    if lower.contains("this morning") || has("הבוקר") {
        return (Some(PartOfDay::Morning), true);
    }
    if lower.contains("this afternoon") {
        return (Some(PartOfDay::Afternoon), true);
    }
    if has("pm") || has("p.m") || lower.contains("p.m.") {
        return (Some(PartOfDay::Afternoon), false);
    }
    if has("am") || has("a.m") || lower.contains("a.m.") {
        return (Some(PartOfDay::Morning), false);
    }
    if has("evening") || has("evenings") || stem_in(&["ערב"]) || has("ערב") {
        return (Some(PartOfDay::Evening), false);
    }
    if has("night") || stem_in(&["לילה"]) || has("לילה") {
        return (Some(PartOfDay::Night), false);
    }
    if has("afternoon")
        || lower.contains("אחה\u{5f4}צ")
        || lower.contains("אחהצ")
        || lower.contains("אחר הצהריים")
        || lower.contains("אחרי הצהריים")
        || lower.contains("אחר הצהרים")
    {
        return (Some(PartOfDay::Afternoon), false);
    }
    if has("morning") || has("mornings") || stem_in(&["בוקר"]) || has("בוקר") {
        return (Some(PartOfDay::Morning), false);
    }
    if has("noon")
        || has("midday")
        || has("lunchtime")
        || stem_in(&["צהריים", "צהרים"])
        || has("צהריים")
    {
        return (Some(PartOfDay::Noon), false);
    }
    (None, false)
}

/// A clock reading before 12-hour resolution.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    pub(super) hour: i8,
    minute: i8,
    /// Written on a 24-hour clock (`18:00`, `06:30`, `20`): no am/pm question.
    explicit: bool,
    /// Written `7:30`: taken as written unless a part of day ("pm", "בערב") says otherwise.
    literal: bool,
}

pub(super) fn clock_token(word: &str) -> Option<Clock> {
    for s in hebrew_stems(word) {
        let (s, suffix) = if let Some(x) = s.strip_suffix("pm") {
            (x, Some(true))
        } else if let Some(x) = s.strip_suffix("am") {
            (x, Some(false))
        } else {
            (s, None)
        };
        let Some((h, m)) = s.split_once(':').or_else(|| {
            // "6pm", "11am"
            (suffix.is_some()
                && !s.is_empty()
                && s.len() <= 2
                && s.chars().all(|c| c.is_ascii_digit()))
            .then_some((s, "00"))
        }) else {
            continue;
        };
        let (Ok(hour), Ok(minute)) = (h.parse::<i8>(), m.parse::<i8>()) else {
            continue;
        };
        if !(0..=24).contains(&hour) || !(0..60).contains(&minute) || m.len() != 2 {
            continue;
        }
        let hour = match suffix {
            Some(true) if hour < 12 => hour + 12,
            Some(false) if hour == 12 => 0,
            _ => hour % 24,
        };
        let explicit = suffix.is_some() || hour == 0 || hour >= 13 || h.starts_with('0');
        return Some(Clock {
            hour,
            minute,
            explicit,
            // Written with a colon it reads as written (times are written 24-hour in Israel).
            literal: s.contains(':'),
        });
    }
    None
}

/// Minutes said after the hour: "וחצי", "ורבע", "thirty", "and a half", "fifteen", "30".
pub(super) fn minutes_after(w: &[String], i: usize) -> (i8, usize) {
    let get = |k: usize| w.get(i + k).map(String::as_str);
    match get(0) {
        Some("וחצי") => return (30, 1),
        Some("ורבע") => return (15, 1),
        Some("ועשרה") | Some("ועשר") => return (10, 1),
        Some("ועשרים") => return (20, 1),
        Some("and") if get(1) == Some("a") && get(2) == Some("half") => return (30, 3),
        Some("and") if get(1) == Some("half") => return (30, 2),
        Some("and") if get(1) == Some("a") && get(2) == Some("quarter") => return (15, 3),
        Some("o'clock") | Some("oclock") => return (0, 1),
        Some("oh") | Some("o") => {
            if let Some((n, used)) = number_at(w, i + 1).filter(|(n, _)| (1..10).contains(n)) {
                return (n as i8, used + 1);
            }
        }
        _ => {}
    }
    if let Some(word) = get(0)
        && (word.chars().all(|c| c.is_ascii_digit()) && word.len() == 2
            || number_word(word).is_some_and(|n| n >= 15))
        && let Some((n, used)) = number_at(w, i)
        && (0..60).contains(&n)
    {
        return (n as i8, used);
    }
    (0, 0)
}

/// Where a bare number reads as a clock hour.
pub(super) fn hour_cue_before(w: &[String], i: usize) -> bool {
    let prev = i.checked_sub(1).and_then(|p| w.get(p)).map(String::as_str);
    let prev2 = i.checked_sub(2).and_then(|p| w.get(p)).map(String::as_str);
    matches!(
        prev,
        Some(
            "at" | "@"
                | "around"
                | "about"
                | "by"
                | "till"
                | "until"
                | "ב"
                | "בשעה"
                | "שעה"
                | "בסביבות"
                | "בערך"
                | "סביבות"
                | "לשעה"
                | "ל"
                | "עד"
                | "מ"
                | "מהשעה"
                | "השעה"
                | "כ"
                | "בשעות"
        )
    ) || (prev == Some("ב") && prev2.is_some())
}

pub(super) fn hour_cue_after(w: &[String], i: usize) -> bool {
    matches!(
        w.get(i).map(String::as_str),
        Some(
            "am" | "pm"
                | "a.m"
                | "p.m"
                | "o'clock"
                | "oclock"
                | "וחצי"
                | "ורבע"
                | "בערב"
                | "בבוקר"
                | "בלילה"
                | "בצהריים"
                | "אחה\u{5f4}צ"
                | "in"
                | "tonight"
                | "this"
                | "ועשרים"
                | "ועשרה"
        )
    )
}

/// A Hebrew word glued to a preposition that makes the number a time: "בשש", "ב-8", "לשמונה".
pub(super) fn hebrew_time_prefix(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some('ב' | 'ל' | 'כ' | 'מ'))
        || word.starts_with("וב")
        || word.starts_with("ול")
}

/// Finds the last clock time said ("12:30, actually make it 1pm" means 1pm).
pub(super) fn find_clock(w: &[String]) -> Option<(Clock, usize, usize)> {
    let mut last = None;
    let mut from = 0;
    while let Some((c, i, used)) = first_clock(w, from) {
        last = Some((c, i, used));
        from = i + used.max(1);
    }
    last
}

/// The first clock time at or after word `from`: (clock, index of its first word, words used).
pub(super) fn first_clock(w: &[String], from: usize) -> Option<(Clock, usize, usize)> {
    for (i, word) in w.iter().enumerate().skip(from) {
        if let Some(c) = clock_token(word) {
            return Some((c, i, 1));
        }
        // "half past seven", "quarter past 6", "quarter to eight"
        if (word == "half" || word == "quarter")
            && matches!(
                w.get(i + 1).map(String::as_str),
                Some("past" | "after" | "to")
            )
            && let Some((h, used)) = number_at(w, i + 2).filter(|(h, _)| (1..=12).contains(h))
        {
            let (hour, minute) = match (word.as_str(), w[i + 1].as_str()) {
                ("half", _) => (h, 30),
                ("quarter", "to") => (h - 1, 45),
                _ => (h, 15),
            };
            let hour = if hour == 0 { 12 } else { hour };
            return Some((
                Clock {
                    hour: hour as i8,
                    minute,
                    explicit: false,
                    literal: false,
                },
                i,
                2 + used,
            ));
        }
        // "רבע לשמונה", "רבע ל-8", "עשרים לשבע"
        if (word == "רבע" || word == "עשרים" || word == "עשרה")
            && let Some(next) = w.get(i + 1)
            && next.starts_with('ל')
            && let Some((h, used)) = number_at(w, i + 1).filter(|(h, _)| (1..=12).contains(h))
        {
            let before = match word.as_str() {
                "רבע" => 15,
                "עשרים" => 20,
                _ => 10,
            };
            let hour = if h == 1 { 12 } else { h - 1 };
            return Some((
                Clock {
                    hour: hour as i8,
                    minute: 60 - before,
                    explicit: false,
                    literal: false,
                },
                i,
                1 + used,
            ));
        }
        if word == "noon" || word == "midday" {
            return Some((
                Clock {
                    hour: 12,
                    minute: 0,
                    explicit: true,
                    literal: true,
                },
                i,
                1,
            ));
        }
        if word == "midnight" || word == "חצות" || word == "בחצות" {
            return Some((
                Clock {
                    hour: 0,
                    minute: 0,
                    explicit: true,
                    literal: true,
                },
                i,
                1,
            ));
        }
        let Some((n, used)) = number_at(w, i) else {
            continue;
        };
        // "the 3rd in the evening" is a day of the month.
        if !(0..=24).contains(&n) || ordinal_digits(word) {
            continue;
        }
        // "1 2 3" style articles: "a"/"an" only count as one in "an hour"; never as a time.
        // Hours are feminine in Hebrew ("בשתיים"): "בשני" is Monday, "ראשון" first.
        if matches!(word.as_str(), "a" | "an" | "first" | "second")
            || hebrew_stems(word)
                .iter()
                .any(|s| matches!(*s, "שני" | "שתי" | "ראשון"))
        {
            continue;
        }
        let next = i + used;
        // "6pm" split by a recogniser into "6 pm"; "7 o'clock"; "8 וחצי"
        let glued = hebrew_time_prefix(word) && hebrew_stems(word).len() > 1;
        let cued = hour_cue_before(w, i) || hour_cue_after(w, next) || glued;
        // Not a time: "in 2 days", "for 4 people", "2 weeks", a date "8 December".
        let unit_after = w.get(next).is_some_and(|x| {
            let x = hebrew_stems(x)
                .last()
                .copied()
                .unwrap_or(x.as_str())
                .to_string();
            [
                "days",
                "day",
                "weeks",
                "week",
                "months",
                "month",
                "people",
                "persons",
                "players",
                "ימים",
                "יום",
                "שבועות",
                "שבוע",
                "חודשים",
                "חודש",
                "אנשים",
                "איש",
                "משתתפים",
                "שחקנים",
                "דקות",
                "minutes",
                "hours",
                "שעות",
            ]
            .contains(&x.as_str())
                || lookup(&x, &MONTHS).is_some()
        });
        let month_before =
            i > 0 && lookup(&w[i - 1], &MONTHS).is_some() && hebrew_stems(word).len() == 1;
        // "יום שני" is Monday, not the number two.
        let weekday_name = i > 0
            && hebrew_stems(&w[i - 1]).contains(&"יום")
            && lookup(word, &HE_WEEKDAYS).is_some();
        if !cued || unit_after || month_before || weekday_name {
            continue;
        }
        if w.get(i.wrapping_sub(1))
            .is_some_and(|p| p == "in" || p == "בעוד")
        {
            continue;
        }
        let (minute, mused) = minutes_after(w, next);
        let explicit = n == 0 || n >= 13;
        return Some((
            Clock {
                hour: (n % 24) as i8,
                minute,
                explicit,
                literal: false,
            },
            i,
            used + mused,
        ));
    }
    None
}

pub(super) fn resolve_clock(
    c: Clock,
    part: Option<PartOfDay>,
) -> (Option<Time>, Option<Ambiguity>) {
    let t = |h: i8| Time::new(h, c.minute, 0, 0).ok();
    if c.explicit || c.hour > 12 || c.literal && part.is_none() {
        return (t(c.hour), None);
    }
    let hour12 = if c.hour == 0 { 12 } else { c.hour };
    match part {
        Some(p) => (t(p.to_24h(hour12)), None),
        None => {
            let am = t(if hour12 == 12 { 0 } else { hour12 });
            let pm = t(if hour12 == 12 { 12 } else { hour12 + 12 });
            match (am, pm) {
                // Noon is "12"; nobody books "12" meaning midnight.
                (_, Some(pm)) if hour12 == 12 => (Some(pm), None),
                (Some(am), Some(pm)) => (None, Some(Ambiguity::TwelveHour { am, pm })),
                _ => (None, None),
            }
        }
    }
}

/// "between 5 and 7", "from 5 to 7", "בין 5 ל-7", "בין שש לשמונה", "5-7pm".
pub(super) fn find_range(w: &[String], part: Option<PartOfDay>) -> Option<(Time, Time)> {
    for (i, word) in w.iter().enumerate() {
        if !matches!(word.as_str(), "between" | "בין" | "from" | "מ" | "משעה") {
            continue;
        }
        let (a, used) = number_at(w, i + 1)
            .or_else(|| clock_token(w.get(i + 1)?).map(|c| (c.hour as i32, 1)))?;
        let mut j = i + 1 + used;
        if matches!(
            w.get(j).map(String::as_str),
            Some("and" | "to" | "until" | "till" | "עד" | "ו" | "ל")
        ) {
            j += 1;
        }
        let (b, _) =
            number_at(w, j).or_else(|| clock_token(w.get(j)?).map(|c| (c.hour as i32, 1)))?;
        if !(0..=24).contains(&a) || !(0..=24).contains(&b) {
            return None;
        }
        let to24 = |h: i32| -> i8 {
            let h = h as i8;
            if h >= 13 || h == 0 {
                h
            } else {
                part.map(|p| p.to_24h(h))
                    .unwrap_or(if h <= 8 { h + 12 } else { h })
            }
        };
        let (from, to) = (to24(a), to24(b));
        if from < to {
            return Some((Time::new(from, 0, 0, 0).ok()?, Time::new(to, 0, 0, 0).ok()?));
        }
    }
    None
}
