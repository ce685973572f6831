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

/// Lowercased words with surrounding punctuation removed; `10:30`, `15.12`, `ב-8` stay whole.
pub fn words(text: &str) -> Vec<String> {
    normalize(text)
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '!' | '?' | ';' | '(' | ')'))
        .map(|w| w.trim_matches(|c: char| matches!(c, '.' | '\'' | '`' | '’' | '-' | '־')))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Lowercase, with Hebrew abbreviation marks unified: `"`/`״` → `״` (gershayim) and an
/// apostrophe after a Hebrew letter → `׳` (geresh), so "אחה"צ" and "יום ג'" read as written.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev_hebrew = false;
    for c in text.to_lowercase().chars() {
        let c = match c {
            '"' | '\u{201d}' | '\u{201c}' => '\u{5f4}',
            '\'' | '\u{2019}' | '`' if prev_hebrew => '\u{5f3}',
            c => c,
        };
        prev_hebrew = ('\u{5d0}'..='\u{5ea}').contains(&c);
        out.push(c);
    }
    out
}

/// Hebrew one-letter prefixes: ו (and), ה (the), ב (at/on), ל (to/for), מ (from), ש (that),
/// כ (about). A word and the stems left after removing up to two of them, longest first.
pub fn hebrew_stems(word: &str) -> Vec<&str> {
    let mut out = vec![word];
    let mut cur = word;
    for _ in 0..2 {
        let Some(first) = cur.chars().next() else {
            break;
        };
        if !"והבלמשכ".contains(first) {
            break;
        }
        let rest = cur[first.len_utf8()..].trim_start_matches(['-', '־']);
        if rest.chars().count() < 2 && !rest.chars().all(|c| c.is_ascii_digit()) || rest.is_empty()
        {
            break;
        }
        out.push(rest);
        cur = rest;
    }
    out
}

fn lookup<T: Copy>(word: &str, table: &[(&str, T)]) -> Option<T> {
    hebrew_stems(word)
        .into_iter()
        .find_map(|s| table.iter().find(|(w, _)| *w == s).map(|(_, v)| *v))
}

const WEEKDAYS: [(&str, Weekday); 21] = [
    ("sunday", Weekday::Sunday),
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sun", Weekday::Sunday),
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("tues", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("thurs", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("שבת", Weekday::Saturday),
    ("thursdays", Weekday::Thursday),
    ("fridays", Weekday::Friday),
    ("mondays", Weekday::Monday),
    ("tuesdays", Weekday::Tuesday),
];

/// After "יום" (day): ראשון, שני, ...; also "יום א׳" letters.
const HE_WEEKDAYS: [(&str, Weekday); 13] = [
    ("ראשון", Weekday::Sunday),
    ("שני", Weekday::Monday),
    ("שלישי", Weekday::Tuesday),
    ("רביעי", Weekday::Wednesday),
    ("חמישי", Weekday::Thursday),
    ("שישי", Weekday::Friday),
    ("א\u{5f3}", Weekday::Sunday),
    ("ב\u{5f3}", Weekday::Monday),
    ("ג\u{5f3}", Weekday::Tuesday),
    ("ד\u{5f3}", Weekday::Wednesday),
    ("ה\u{5f3}", Weekday::Thursday),
    ("ו\u{5f3}", Weekday::Friday),
    ("שבת", Weekday::Saturday),
];

const BARE_HE_WEEKDAYS: [(&str, Weekday); 4] = [
    ("שלישי", Weekday::Tuesday),
    ("רביעי", Weekday::Wednesday),
    ("חמישי", Weekday::Thursday),
    ("שישי", Weekday::Friday),
];

const MONTHS: [(&str, i8); 38] = [
    ("january", 1),
    ("jan", 1),
    ("february", 2),
    ("feb", 2),
    ("march", 3),
    ("mar", 3),
    ("april", 4),
    ("apr", 4),
    ("may", 5),
    ("june", 6),
    ("jun", 6),
    ("july", 7),
    ("jul", 7),
    ("august", 8),
    ("aug", 8),
    ("september", 9),
    ("sept", 9),
    ("sep", 9),
    ("october", 10),
    ("oct", 10),
    ("november", 11),
    ("nov", 11),
    ("december", 12),
    ("dec", 12),
    ("ינואר", 1),
    ("פברואר", 2),
    ("מרץ", 3),
    ("מרס", 3),
    ("אפריל", 4),
    ("מאי", 5),
    ("יוני", 6),
    ("יולי", 7),
    ("אוגוסט", 8),
    ("ספטמבר", 9),
    ("אוקטובר", 10),
    ("נובמבר", 11),
    ("דצמבר", 12),
    ("דיצמבר", 12),
];

/// Numbers as words, both languages, both Hebrew genders.
const NUMBERS: [(&str, i8); 78] = [
    ("one", 1),
    ("a", 1),
    ("an", 1),
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
    ("thirteen", 13),
    ("fourteen", 14),
    ("fifteen", 15),
    ("sixteen", 16),
    ("seventeen", 17),
    ("eighteen", 18),
    ("nineteen", 19),
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fourty", 40),
    ("fifty", 50),
    ("first", 1),
    ("second", 2),
    ("third", 3),
    ("fourth", 4),
    ("fifth", 5),
    ("sixth", 6),
    ("seventh", 7),
    ("eighth", 8),
    ("ninth", 9),
    ("tenth", 10),
    ("אחת", 1),
    ("אחד", 1),
    ("שתיים", 2),
    ("שתים", 2),
    ("שניים", 2),
    ("שני", 2),
    ("שתי", 2),
    ("שלוש", 3),
    ("שלושה", 3),
    ("שלושת", 3),
    ("ארבע", 4),
    ("ארבעה", 4),
    ("ארבעת", 4),
    ("חמש", 5),
    ("חמישה", 5),
    ("חמשת", 5),
    ("שש", 6),
    ("שישה", 6),
    ("ששת", 6),
    ("שבע", 7),
    ("שבעה", 7),
    ("שמונה", 8),
    ("שמונת", 8),
    ("תשע", 9),
    ("תשעה", 9),
    ("עשר", 10),
    ("עשרה", 10),
    ("עשרים", 20),
    ("שלושים", 30),
    ("ארבעים", 40),
    ("חמישים", 50),
    ("twelfth", 12),
    ("eleventh", 11),
    ("thirteenth", 13),
    ("fourteenth", 14),
    ("fifteenth", 15),
    ("sixteenth", 16),
    ("seventeenth", 17),
    ("eighteenth", 18),
    ("nineteenth", 19),
    ("twentieth", 20),
    ("thirtieth", 30),
];

fn number_word(word: &str) -> Option<i8> {
    lookup(word, &NUMBERS)
}

/// A whole number written in digits, with a Hebrew prefix or an English ordinal suffix allowed.
fn digits(word: &str) -> Option<i32> {
    for s in hebrew_stems(word) {
        let s = s
            .trim_end_matches("st")
            .trim_end_matches("nd")
            .trim_end_matches("rd")
            .trim_end_matches("th");
        if !s.is_empty() && s.len() <= 4 && s.chars().all(|c| c.is_ascii_digit()) {
            return s.parse().ok();
        }
    }
    None
}

/// A number in digits or words, with "eleven"/"אחת עשרה"-style two-word teens.
fn number_at(w: &[String], i: usize) -> Option<(i32, usize)> {
    let word = w.get(i)?;
    if let Some(n) = digits(word) {
        return Some((n, 1));
    }
    let n = number_word(word)?;
    // "אחת עשרה", "שתים עשרה", "חמש עשרה"
    if n < 10 && w.get(i + 1).is_some_and(|x| x == "עשרה" || x == "עשר") {
        return Some((n as i32 + 10, 2));
    }
    // "twenty five", "עשרים וחמש"
    if n >= 20
        && let Some(next) = w.get(i + 1)
        && let Some(unit) = number_word(next).filter(|u| *u < 10)
    {
        return Some((n as i32 + unit as i32, 2));
    }
    Some((n as i32, 1))
}

fn part_of_day(words: &[String], lower: &str) -> (Option<PartOfDay>, bool) {
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
struct Clock {
    hour: i8,
    minute: i8,
    /// Written on a 24-hour clock (`18:00`, `06:30`, `20`): no am/pm question.
    explicit: bool,
    /// Written `7:30`: taken as written unless a part of day ("pm", "בערב") says otherwise.
    literal: bool,
}

fn clock_token(word: &str) -> Option<Clock> {
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
fn minutes_after(w: &[String], i: usize) -> (i8, usize) {
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
fn hour_cue_before(w: &[String], i: usize) -> bool {
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

fn hour_cue_after(w: &[String], i: usize) -> bool {
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
fn hebrew_time_prefix(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some('ב' | 'ל' | 'כ' | 'מ'))
        || word.starts_with("וב")
        || word.starts_with("ול")
}

/// Finds the last clock time said ("12:30, actually make it 1pm" means 1pm).
fn find_clock(w: &[String]) -> Option<(Clock, usize, usize)> {
    let mut last = None;
    let mut from = 0;
    while let Some((c, i, used)) = first_clock(w, from) {
        last = Some((c, i, used));
        from = i + used.max(1);
    }
    last
}

/// The first clock time at or after word `from`: (clock, index of its first word, words used).
fn first_clock(w: &[String], from: usize) -> Option<(Clock, usize, usize)> {
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

fn resolve_clock(c: Clock, part: Option<PartOfDay>) -> (Option<Time>, Option<Ambiguity>) {
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
fn find_range(w: &[String], part: Option<PartOfDay>) -> Option<(Time, Time)> {
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

fn next_on_or_after(from: Date, w: Weekday) -> Date {
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
fn find_weekday(w: &[String]) -> Option<(Weekday, bool)> {
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
fn find_offset(w: &[String]) -> Option<(i64, char)> {
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

/// Absolute dates: ISO, d.m(.y), d/m(/y), "December 8", "8 December", "24 בינואר", "ה-8 לדצמבר".
fn find_absolute(w: &[String], today: Date) -> Option<Result<(Date, bool), ()>> {
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

fn calendar(today: Date, year: Option<i16>, m: i8, d: i8) -> Result<(Date, bool), ()> {
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
fn ordinal_digits(word: &str) -> bool {
    word.chars().next().is_some_and(|c| c.is_ascii_digit())
        && ["st", "nd", "rd", "th"].iter().any(|x| word.ends_with(x))
}

/// A number whose last word is `end` ("עשרים וארבעה", "twenty fourth", "24"): the value and the
/// index of its first word.
fn number_ending_at(w: &[String], end: usize) -> Option<(i32, usize)> {
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
const HE_ORDINALS: [(&str, i8); 10] = [
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
fn find_day_of_month(w: &[String], today: Date) -> Option<Result<Date, ()>> {
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

/// "in an hour", "in half an hour", "in 3 hours", "in 90 minutes", "בעוד שעה", "בעוד חצי שעה",
/// "בעוד שעתיים", "עוד שלוש שעות", "בעוד שעה וחצי": minutes from now.
fn find_minutes_offset(w: &[String]) -> Option<i64> {
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
fn find_span(w: &[String], lower: &str, now: &Zoned) -> Option<(Date, Date)> {
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

fn has_word(w: &[String], options: &[&str]) -> bool {
    w.iter().any(|x| {
        options.contains(&x.as_str()) || hebrew_stems(x).iter().skip(1).any(|s| options.contains(s))
    })
}

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
mod tests {
    use super::*;

    /// Monday 2026-12-07 09:30 in Jerusalem.
    fn now() -> Zoned {
        "2026-12-07T09:30:00[Asia/Jerusalem]".parse().unwrap()
    }

    /// `text | date (YYYY-MM-DD or -) | time (HH:MM or -) | ambiguity (-, 12h, past, pastdate,
    /// invalid, which:FROM..TO) | part of day (-, m, n, a, e, l)`; the phrasings are customer wording, typed and
    /// as a recogniser writes it (no punctuation, numbers as words).
    const TABLE: &str = include_str!("temporal_phrasings.txt");

    fn amb_tag(a: Option<Ambiguity>) -> String {
        match a {
            None => "-".into(),
            Some(Ambiguity::TwelveHour { .. }) => "12h".into(),
            Some(Ambiguity::PastTime) => "past".into(),
            Some(Ambiguity::PastDate) => "pastdate".into(),
            Some(Ambiguity::InvalidDate) => "invalid".into(),
            Some(Ambiguity::WhichDay { from, to }) => format!("which:{from}..{to}"),
        }
    }

    fn part_tag(p: Option<PartOfDay>) -> &'static str {
        match p {
            None => "-",
            Some(PartOfDay::Morning) => "m",
            Some(PartOfDay::Noon) => "n",
            Some(PartOfDay::Afternoon) => "a",
            Some(PartOfDay::Evening) => "e",
            Some(PartOfDay::Night) => "l",
        }
    }

    #[test]
    fn phrasing_table() {
        let now = now();
        let mut failures = Vec::new();
        let mut rows = 0;
        for line in TABLE.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            rows += 1;
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            assert!(cols.len() >= 4, "bad table row {line:?}");
            let got = parse(cols[0], &now);
            let date = got.date.map(|d| d.to_string()).unwrap_or("-".into());
            let time = got
                .time
                .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
                .unwrap_or("-".into());
            let amb = amb_tag(got.ambiguity);
            let part = part_tag(got.part_of_day);
            let want_part = cols.get(4).copied().unwrap_or("*");
            if date != cols[1]
                || time != cols[2]
                || amb != cols[3]
                || (want_part != "*" && want_part != part)
            {
                failures.push(format!(
                    "{:?}: got {date} | {time} | {amb} | {part}, want {} | {} | {} | {want_part}",
                    cols[0], cols[1], cols[2], cols[3]
                ));
            }
        }
        assert!(rows >= 200, "only {rows} rows");
        assert!(
            failures.is_empty(),
            "{} of {rows} phrasings wrong:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn ranges() {
        let now = now();
        let r = |s: &str| {
            parse(s, &now)
                .range
                .map(|(a, b)| format!("{:02}-{:02}", a.hour(), b.hour()))
        };
        assert_eq!(r("between 5 and 7").as_deref(), Some("17-19"));
        assert_eq!(r("tomorrow between 10 and 12").as_deref(), Some("10-12"));
        assert_eq!(r("בין 5 ל-7").as_deref(), Some("17-19"));
        assert_eq!(r("מחר בין שש לשמונה בערב").as_deref(), Some("18-20"));
        assert_eq!(r("from 18:00 to 20:00").as_deref(), Some("18-20"));
        assert_eq!(r("at 7"), None);
    }

    #[test]
    fn twelve_hour_resolution_by_what_is_acceptable() {
        let am = Time::new(6, 0, 0, 0).unwrap();
        let pm = Time::new(18, 0, 0, 0).unwrap();
        let open = |t: Time| t.hour() >= 10 && t.hour() < 22;
        assert_eq!(resolve_twelve_hour(am, pm, open), Some(pm));
        assert_eq!(resolve_twelve_hour(am, pm, |_| true), None);
        assert_eq!(resolve_twelve_hour(am, pm, |_| false), Some(pm));
        let eleven = Time::new(11, 0, 0, 0).unwrap();
        let twenty_three = Time::new(23, 0, 0, 0).unwrap();
        assert_eq!(
            resolve_twelve_hour(eleven, twenty_three, |_| false),
            Some(eleven)
        );
    }

    #[test]
    fn bare_hours_pick_an_offered_time() {
        assert_eq!(bare_hour("7 works for us"), Some(7));
        assert_eq!(bare_hour("seven is good"), Some(7));
        assert_eq!(bare_hour("שבע"), Some(7));
        assert_eq!(bare_hour("19:00 please"), Some(19));
        assert_eq!(bare_hour("the first one"), None);
        assert_eq!(bare_hour("5 or 6"), None);
    }

    #[test]
    fn hebrew_prefixes_are_stripped_one_or_two_deep() {
        assert_eq!(hebrew_stems("ובשש"), vec!["ובשש", "בשש", "שש"]);
        assert_eq!(hebrew_stems("ב-8"), vec!["ב-8", "8"]);
        assert_eq!(hebrew_stems("שש"), vec!["שש"]);
        assert_eq!(hebrew_stems("dubai"), vec!["dubai"]);
    }
}
