//! Tokenising and vocabulary: a message split into lowercased words (`10:30`, `15.12` and `ב-8`
//! stay whole), Hebrew prefixes stripped one or two deep, and the tables of weekday, month and
//! number words in both languages with the readers of a number at a position.

use jiff::civil::Weekday;

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

pub(super) fn lookup<T: Copy>(word: &str, table: &[(&str, T)]) -> Option<T> {
    hebrew_stems(word)
        .into_iter()
        .find_map(|s| table.iter().find(|(w, _)| *w == s).map(|(_, v)| *v))
}

pub(super) const WEEKDAYS: [(&str, Weekday); 21] = [
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
pub(super) const HE_WEEKDAYS: [(&str, Weekday); 13] = [
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

pub(super) const BARE_HE_WEEKDAYS: [(&str, Weekday); 4] = [
    ("שלישי", Weekday::Tuesday),
    ("רביעי", Weekday::Wednesday),
    ("חמישי", Weekday::Thursday),
    ("שישי", Weekday::Friday),
];

pub(super) const MONTHS: [(&str, i8); 38] = [
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
pub(super) const NUMBERS: [(&str, i8); 78] = [
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

pub(super) fn number_word(word: &str) -> Option<i8> {
    lookup(word, &NUMBERS)
}

/// A whole number written in digits, with a Hebrew prefix or an English ordinal suffix allowed.
pub(super) fn digits(word: &str) -> Option<i32> {
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
pub(super) fn number_at(w: &[String], i: usize) -> Option<(i32, usize)> {
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
