//! Deterministic understanding for the offline booking dialog, Hebrew and English: yes/no,
//! goodbye, names and phone numbers. Dates and times are read by [`super::temporal`].

use super::temporal::{self, words as tokens};

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
    // "yesss", "כןןן": a stretched last letter is still the word.
    let toks: Vec<String> = tokens(text)
        .into_iter()
        .map(|t| {
            let mut out: Vec<char> = t.chars().collect();
            while out.len() > 2 && out[out.len() - 1] == out[out.len() - 2] {
                out.pop();
            }
            out.into_iter().collect()
        })
        .collect();
    [
        "yes",
        "yeah",
        "yep",
        "yup",
        "yea",
        "ya",
        "absolutely",
        "perfect",
        "אוקיי",
        "אוקי",
        "בדיוק",
        "מעולה",
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

/// Lead-ins before a name, longest first so "my name is" wins over "name is".
const NAME_LEAD_INS: [&str; 33] = [
    "you can put it under ",
    "book it under ",
    "put it under ",
    "under the name ",
    "the name is ",
    "my name is ",
    "my name's ",
    "name's ",
    "name is ",
    "this is ",
    "call me ",
    "i am ",
    "i'm ",
    "name: ",
    "name ",
    "קוראים לי ",
    "השם שלי הוא ",
    "השם שלי ",
    "השם הוא ",
    "תרשום על שם ",
    "תרשמי על שם ",
    "תרשמו על שם ",
    "רשום על שם ",
    "לרשום על שם ",
    "תרשום על ",
    "תרשמי על ",
    "תרשמו על ",
    "תרשום את ",
    "רשום על ",
    "לרשום על ",
    "על שם ",
    "שמי ",
    "שם: ",
];

/// Lead-ins that only mean a name when the dialog asked for one ("it's for tomorrow").
const ANSWER_LEAD_INS: [&str; 11] = [
    "it's under ",
    "its under ",
    "it is under ",
    "under ",
    "it's ",
    "its ",
    "it is ",
    "זה על ",
    "זה ",
    "אני ",
    "i'm ",
];

/// Words that end a name or show it was not one ("I'm looking for…", "שמי דנה ואני רוצה").
const NOT_NAME: [&str; 40] = [
    "and",
    "please",
    "for",
    "to",
    "at",
    "on",
    "in",
    "from",
    "looking",
    "calling",
    "interested",
    "going",
    "wondering",
    "trying",
    "here",
    "the",
    "a",
    "book",
    "booking",
    "want",
    "would",
    "not",
    "just",
    "sorry",
    "ok",
    "thanks",
    "thank",
    "about",
    "with",
    "but",
    "רוצה",
    "בבקשה",
    "מבקש",
    "מבקשת",
    "מתקשר",
    "מתקשרת",
    "רציתי",
    "ואני",
    "תודה",
    "אבל",
];

fn name_words(clause: &str) -> Vec<&str> {
    clause
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| matches!(c, '"' | '\'' | ')' | '(')))
        .filter(|w| !w.is_empty())
        .take_while(|w| !NOT_NAME.contains(&w.to_lowercase().as_str()))
        .take(3)
        .collect()
}

fn is_plausible_name(words: &[&str]) -> bool {
    !words.is_empty()
        && words.iter().all(|w| {
            w.chars()
                .all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '.'))
        })
        && temporal::words(&words.join(" ")).iter().all(|w| {
            ![
                "yes", "no", "כן", "לא", "ok", "today", "tomorrow", "היום", "מחר",
            ]
            .contains(&w.as_str())
        })
}

fn name_after(text: &str, lead_ins: &[&str]) -> Option<String> {
    let lower = text.to_lowercase();
    let (at, marker) = lead_ins
        .iter()
        .filter_map(|m| {
            lower
                .find(m)
                .filter(|&i| i == 0 || !lower[..i].ends_with(|c: char| c.is_alphanumeric()))
                .map(|i| (i, *m))
        })
        .min_by_key(|(i, m)| (*i, usize::MAX - m.len()))?;
    // Same byte offsets: to_lowercase keeps lengths for the scripts we accept here.
    let rest = text.get(at + marker.len()..)?;
    let mut clauses = rest
        .split([',', '.', '!', '?', ';', '\n'])
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let first = name_words(clauses.next()?);
    if !is_plausible_name(&first) {
        return None;
    }
    // "זה יוסי, יוסי לוי": the fuller repetition is the name.
    if let Some(next) = clauses.next() {
        let second = name_words(next);
        if second.len() > first.len()
            && second.first() == first.first()
            && is_plausible_name(&second)
        {
            return Some(second.join(" "));
        }
    }
    Some(first.join(" "))
}

/// A name introduced by a lead-in: "my name's Jonathan Weiss", "שמי דנה לוי", "על שם משפחת
/// כהן", "תרשום על רונית".
pub fn parse_name(text: &str) -> Option<String> {
    name_after(text, &NAME_LEAD_INS)
}

/// The answer to "what name?": a lead-in (also "it's …", "זה …"), else the bare words.
pub fn parse_name_answer(text: &str) -> Option<String> {
    parse_name(text)
        .or_else(|| name_after(text, &ANSWER_LEAD_INS))
        .or_else(|| bare_name(text))
}

/// A bare answer to "what name?": up to three words, no digits, not yes/no or a date.
pub fn bare_name(text: &str) -> Option<String> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?'))
        .filter(|w| !w.is_empty())
        .filter(|w| !["please", "בבקשה", "thanks", "תודה"].contains(&w.to_lowercase().as_str()))
        .collect();
    if words.is_empty() || words.len() > 3 || text.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    if !is_plausible_name(&words) || is_yes(text) || is_no(text) {
        return None;
    }
    Some(words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(bare_name("yes"), None);
        assert_eq!(bare_name("tomorrow"), None);
        assert_eq!(bare_name("I would like to book a room"), None);
        assert!(is_yes("Yes, please"));
        assert!(is_yes("כן"));
        assert!(is_yes("yesss"));
        assert!(is_yes("כןן בבקשה"));
        assert!(is_no("no thanks"));
        assert!(!is_yes("I know"));
        assert!(is_goodbye("ok bye"));
    }

    #[test]
    fn names_after_lead_ins_in_both_languages() {
        let cases: &[(&str, Option<&str>)] = &[
            ("my name's Jonathan Weiss", Some("Jonathan Weiss")),
            ("My name is Dana Levi.", Some("Dana Levi")),
            ("hi, this is Avi Cohen calling", Some("Avi Cohen")),
            ("you can put it under Noa", Some("Noa")),
            ("book it under Ben Shimon please", Some("Ben Shimon")),
            ("name's Rachel", Some("Rachel")),
            ("I'm looking for a room", None),
            ("this is for tomorrow", None),
            ("שמי דנה", Some("דנה")),
            ("שמי דנה לוי ואני רוצה לקבוע", Some("דנה לוי")),
            ("קוראים לי משה", Some("משה")),
            ("על שם משפחת כהן", Some("משפחת כהן")),
            ("תרשום על רונית אברהם", Some("רונית אברהם")),
            ("תרשמי על שם אלון", Some("אלון")),
            ("השם שלי הוא יעל", Some("יעל")),
            ("אני רוצה לקבוע", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_name(text).as_deref(), *want, "{text}");
        }
        let answers: &[(&str, Option<&str>)] = &[
            ("it's Michael Stern", Some("Michael Stern")),
            ("ok and its under ben", Some("ben")),
            ("under Shira Katz", Some("Shira Katz")),
            ("זה על נועם", Some("נועם")),
            ("זה יוסי, יוסי לוי", Some("יוסי לוי")),
            ("זה אורית", Some("אורית")),
            ("Dana Cohen", Some("Dana Cohen")),
            ("דני", Some("דני")),
            ("yes", None),
            ("050-1234567", None),
        ];
        for (text, want) in answers {
            assert_eq!(parse_name_answer(text).as_deref(), *want, "{text}");
        }
    }
}
