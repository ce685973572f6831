//! Deterministic understanding for the offline booking dialog, Hebrew and English: dates
//! (today, tomorrow, weekday names, ISO), times ("at 10", "10:30", "בעשר", "ב-10"), yes/no,
//! goodbye, names and phone numbers. Sans-IO: `today` is passed in.

use jiff::ToSpan;
use jiff::civil::{Date, Time, Weekday};

fn tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?' | ';'))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Hebrew prepositions glued to the next word: ב (at/on), ל (to), ה (the), ו (and).
fn strip_hebrew_prefix(token: &str) -> &str {
    let t = token.trim_start_matches(['-', '־']);
    for p in ["וב", "ב-", "ב־", "ל-", "ב", "ל", "ה", "ו"] {
        if let Some(rest) = t.strip_prefix(p)
            && rest.chars().count() >= 2
        {
            return rest;
        }
    }
    t
}

const EN_WEEKDAYS: [(&str, Weekday); 7] = [
    ("sunday", Weekday::Sunday),
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
];

/// After "יום" (day): ראשון, שני, ... ; שבת stands alone.
const HE_WEEKDAYS: [(&str, Weekday); 7] = [
    ("ראשון", Weekday::Sunday),
    ("שני", Weekday::Monday),
    ("שלישי", Weekday::Tuesday),
    ("רביעי", Weekday::Wednesday),
    ("חמישי", Weekday::Thursday),
    ("שישי", Weekday::Friday),
    ("שבת", Weekday::Saturday),
];

fn next_weekday(today: Date, w: Weekday) -> Date {
    // "On Tuesday" said on a Tuesday means today.
    let mut d = today;
    for _ in 0..7 {
        if d.weekday() == w {
            return d;
        }
        d = d.tomorrow().unwrap_or(d);
    }
    d
}

pub fn parse_date(text: &str, today: Date) -> Option<Date> {
    let lower = text.to_lowercase();
    if lower.contains("day after tomorrow") || lower.contains("מחרתיים") {
        return today.checked_add(2.days()).ok();
    }
    if lower.contains("tomorrow")
        || tokens(&lower)
            .iter()
            .any(|t| strip_hebrew_prefix(t) == "מחר" || t == "מחר")
    {
        return today.tomorrow().ok();
    }
    if lower.contains("today") || lower.contains("היום") {
        return Some(today);
    }
    let toks = tokens(&lower);
    for (name, w) in EN_WEEKDAYS {
        if toks.iter().any(|t| t == name) {
            return Some(next_weekday(today, w));
        }
    }
    for (i, t) in toks.iter().enumerate() {
        let bare = strip_hebrew_prefix(t);
        if (bare == "יום" || t == "יום")
            && let Some(next) = toks.get(i + 1)
            && let Some((_, w)) = HE_WEEKDAYS.iter().find(|(name, _)| next == name)
        {
            return Some(next_weekday(today, *w));
        }
        if bare == "שבת" || t == "שבת" {
            return Some(next_weekday(today, Weekday::Saturday));
        }
    }
    for t in &toks {
        if let Ok(d) = t.parse::<Date>() {
            return Some(d);
        }
        // 24/11 or 24.11 (day first, as in Israel).
        if let Some((d, m)) = t.split_once('/')
            && let (Ok(d), Ok(m)) = (d.parse::<i8>(), m.parse::<i8>())
            && let Ok(mut date) = Date::new(today.year(), m, d)
        {
            if date < today {
                date = Date::new(today.year() + 1, m, d).ok()?;
            }
            return Some(date);
        }
    }
    None
}

const EN_NUMBERS: [(&str, i8); 12] = [
    ("one", 1),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("eleven", 11),
    ("twelve", 12),
];

const HE_NUMBERS: [(&str, i8); 12] = [
    ("אחת", 1),
    ("שתיים", 2),
    ("שתים", 2),
    ("שלוש", 3),
    ("ארבע", 4),
    ("חמש", 5),
    ("שש", 6),
    ("שבע", 7),
    ("שמונה", 8),
    ("תשע", 9),
    ("עשר", 10),
    ("עשרה", 10),
];

fn he_number(token: &str) -> Option<i8> {
    let bare = strip_hebrew_prefix(token);
    HE_NUMBERS
        .iter()
        .find(|(w, _)| *w == bare || *w == token)
        .map(|(_, n)| *n)
}

/// Morning/evening hints turn "at 4" into 16:00; business hours make 1..=7 afternoon by default.
fn to_24h(hour: i8, text: &str) -> i8 {
    let lower = text.to_lowercase();
    let pm = [
        "pm",
        "p.m",
        "evening",
        "afternoon",
        "בערב",
        "אחר הצהריים",
        "אחה\"צ",
        "בצהריים",
    ]
    .iter()
    .any(|w| lower.contains(w));
    let toks = tokens(&lower);
    let am = ["am", "a.m", "morning"]
        .iter()
        .any(|w| toks.iter().any(|t| t == w))
        || lower.contains("בבוקר");
    if hour < 12 && (pm || (!am && hour <= 7)) {
        hour + 12
    } else {
        hour
    }
}

pub fn parse_time(text: &str) -> Option<Time> {
    let lower = text.to_lowercase();
    let toks = tokens(&lower);
    let half = |i: usize| {
        toks.get(i + 1)
            .is_some_and(|t| t == "וחצי" || t == "thirty")
            || toks.get(i + 1).is_some_and(|t| t == "and")
                && toks.get(i + 2).is_some_and(|t| t == "a")
                && toks.get(i + 3).is_some_and(|t| t == "half")
    };
    // 10:30, ב-10:30
    for t in &toks {
        let t = strip_hebrew_prefix(t);
        if let Some((h, m)) = t.split_once(':')
            && let (Ok(h), Ok(m)) = (
                h.parse::<i8>(),
                m.trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse::<i8>(),
            )
        {
            return Time::new(to_24h(h, &lower), m, 0, 0).ok();
        }
    }
    if lower.contains("noon")
        || lower.contains("בצהריים") && !toks.iter().any(|t| he_number(t).is_some())
    {
        return Time::new(12, 0, 0, 0).ok();
    }
    for (i, t) in toks.iter().enumerate() {
        // "at 10", "at ten", "10am", "ב-10", "ב10"
        let after_at =
            i > 0 && (toks[i - 1] == "at" || toks[i - 1] == "ב" || toks[i - 1] == "בשעה");
        let digits = t.trim_end_matches("am").trim_end_matches("pm");
        let hebrew_prefixed = t.starts_with('ב') && t.chars().skip(1).any(|c| c.is_ascii_digit());
        let numeric = strip_hebrew_prefix(digits).parse::<i8>().ok();
        let has_suffix = t.ends_with("am") || t.ends_with("pm");
        if let Some(h) = numeric
            && (after_at || hebrew_prefixed || has_suffix)
            && (0..=23).contains(&h)
        {
            let m = if half(i) { 30 } else { 0 };
            return Time::new(to_24h(h, &lower), m, 0, 0).ok();
        }
        if after_at && let Some((_, h)) = EN_NUMBERS.iter().find(|(w, _)| w == t) {
            let m = if half(i) { 30 } else { 0 };
            return Time::new(to_24h(*h, &lower), m, 0, 0).ok();
        }
        // Hebrew: "בעשר", "בשעה עשר", "באחת עשרה", "בעשר וחצי"
        if let Some(mut h) = he_number(t)
            && (t.starts_with('ב') || after_at)
        {
            if h <= 2 && toks.get(i + 1).is_some_and(|n| n == "עשרה") {
                h += 10;
            }
            let m = if toks.iter().skip(i + 1).take(2).any(|n| n == "וחצי") {
                30
            } else {
                0
            };
            return Time::new(to_24h(h, &lower), m, 0, 0).ok();
        }
    }
    None
}

/// A phone number: at least 9 digits, allowing spaces, dashes and a leading `+`.
pub fn parse_phone(text: &str) -> Option<String> {
    let mut best = String::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || (c == '+' && current.is_empty()) {
            current.push(c);
        } else if matches!(c, '-' | ' ') && !current.is_empty() {
            continue;
        } else {
            if current.chars().filter(char::is_ascii_digit).count() > best.len() {
                best = current.clone();
            }
            current.clear();
        }
    }
    if current.chars().filter(char::is_ascii_digit).count() > best.len() {
        best = current;
    }
    (best.chars().filter(char::is_ascii_digit).count() >= 9).then_some(best)
}

/// Local Israeli numbers become E.164 (`0501234567` → `+972501234567`); others keep their digits.
pub fn normalize_phone(raw: &str) -> String {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if raw.trim_start().starts_with('+') {
        format!("+{digits}")
    } else if let Some(rest) = digits.strip_prefix('0') {
        format!("+972{rest}")
    } else if digits.starts_with("972") {
        format!("+{digits}")
    } else {
        digits
    }
}

pub fn is_yes(text: &str) -> bool {
    let toks = tokens(text);
    [
        "yes",
        "yeah",
        "yep",
        "sure",
        "correct",
        "confirm",
        "ok",
        "okay",
        "כן",
        "נכון",
        "בסדר",
        "מאשר",
        "מאשרת",
        "סגור",
        "יאללה",
        "בטח",
    ]
    .iter()
    .any(|w| toks.iter().any(|t| t == w))
}

pub fn is_no(text: &str) -> bool {
    let toks = tokens(text);
    ["no", "nope", "לא"]
        .iter()
        .any(|w| toks.iter().any(|t| t == w))
}

pub fn is_goodbye(text: &str) -> bool {
    let lower = text.to_lowercase();
    ["bye", "goodbye", "להתראות", "ביי"]
        .iter()
        .any(|w| lower.contains(w))
}

/// "my name is Dana", "I'm Dana", "this is Dana", "שמי דנה", "קוראים לי דנה", "השם שלי דנה".
pub fn parse_name(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    for marker in [
        "my name is ",
        "this is ",
        "i am ",
        "i'm ",
        "name: ",
        "שמי ",
        "קוראים לי ",
        "השם שלי ",
    ] {
        if let Some(at) = lower.find(marker) {
            // Same byte offsets: to_lowercase keeps lengths for the scripts we accept here.
            let rest = text.get(at + marker.len()..).unwrap_or("");
            let name: Vec<&str> = rest
                .split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?'))
                .filter(|w| !w.is_empty())
                .take(2)
                .collect();
            if !name.is_empty() {
                return Some(name.join(" "));
            }
        }
    }
    None
}

/// A bare answer to "what name?": up to three words, no digits.
pub fn bare_name(text: &str) -> Option<String> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?'))
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() || words.len() > 3 || text.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    const TODAY: Date = date(2026, 11, 23); // a Monday

    #[test]
    fn dates_in_english_and_hebrew() {
        assert_eq!(
            parse_date("tomorrow at 10", TODAY),
            Some(date(2026, 11, 24))
        );
        assert_eq!(parse_date("מחר בעשר", TODAY), Some(date(2026, 11, 24)));
        assert_eq!(parse_date("מחרתיים", TODAY), Some(date(2026, 11, 25)));
        assert_eq!(parse_date("today please", TODAY), Some(TODAY));
        assert_eq!(parse_date("on Thursday", TODAY), Some(date(2026, 11, 26)));
        assert_eq!(parse_date("ביום חמישי", TODAY), Some(date(2026, 11, 26)));
        assert_eq!(parse_date("2026-12-01", TODAY), Some(date(2026, 12, 1)));
        assert_eq!(parse_date("1/12", TODAY), Some(date(2026, 12, 1)));
        assert_eq!(parse_date("hello", TODAY), None);
    }

    #[test]
    fn times_in_english_and_hebrew() {
        assert_eq!(
            parse_time("tomorrow at 10 in the Dubai room"),
            Some(time(10, 0, 0, 0))
        );
        assert_eq!(parse_time("at 10:30"), Some(time(10, 30, 0, 0)));
        assert_eq!(parse_time("at 4"), Some(time(16, 0, 0, 0)));
        assert_eq!(parse_time("at ten"), Some(time(10, 0, 0, 0)));
        assert_eq!(parse_time("8pm"), Some(time(20, 0, 0, 0)));
        assert_eq!(parse_time("מחר בעשר"), Some(time(10, 0, 0, 0)));
        assert_eq!(parse_time("מחר ב-10"), Some(time(10, 0, 0, 0)));
        assert_eq!(parse_time("ב10:15"), Some(time(10, 15, 0, 0)));
        assert_eq!(parse_time("בעשר וחצי"), Some(time(10, 30, 0, 0)));
        assert_eq!(parse_time("באחת עשרה"), Some(time(11, 0, 0, 0)));
        assert_eq!(parse_time("בשמונה בערב"), Some(time(20, 0, 0, 0)));
        assert_eq!(parse_time("tomorrow"), None);
        assert_eq!(parse_time("the Dubai room"), None);
    }

    #[test]
    fn phones_names_and_answers() {
        assert_eq!(
            parse_phone("it's 050-123-4567").as_deref(),
            Some("0501234567")
        );
        assert_eq!(parse_phone("at 10"), None);
        assert_eq!(normalize_phone("0501234567"), "+972501234567");
        assert_eq!(normalize_phone("+972501234567"), "+972501234567");
        assert_eq!(
            parse_name("My name is Dana Levi.").as_deref(),
            Some("Dana Levi")
        );
        assert_eq!(parse_name("שמי דנה").as_deref(), Some("דנה"));
        assert_eq!(bare_name("Dana"), Some("Dana".into()));
        assert_eq!(bare_name("I would like to book a room"), None);
        assert!(is_yes("Yes, please"));
        assert!(is_yes("כן"));
        assert!(is_no("no thanks"));
        assert!(!is_yes("I know"));
        assert!(is_goodbye("ok bye"));
    }
}
