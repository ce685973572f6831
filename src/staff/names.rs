//! Fuzzy customer-name and phone matching for the staff filters, Hebrew and English.
//!
//! A name matches when every word of the query matches some word of the name: equal, a prefix
//! of it (two letters or more), or within a small edit distance (1 for words of 4–7 letters, 2
//! from 8; both words at least 4 letters). Words are compared lower-cased, without Hebrew points (niqqud) and with Hebrew final
//! letters folded (ם→מ, ן→נ, ך→כ, ף→פ, ץ→צ), so "דנה" finds "דָּנָה כהן" and "dana" finds "Danna".

/// Lower-cased words, Hebrew points removed, final letters folded, punctuation dropped.
pub(super) fn words(s: &str) -> Vec<String> {
    let folded: String = s
        .chars()
        .filter(|c| !('\u{0591}'..='\u{05C7}').contains(c) || *c == '\u{05BE}')
        .map(|c| match c {
            'ם' => 'מ',
            'ן' => 'נ',
            'ך' => 'כ',
            'ף' => 'פ',
            'ץ' => 'צ',
            '\u{05BE}' => ' ',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect();
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn word_matches(query: &str, word: &str) -> bool {
    if query == word {
        return true;
    }
    let q = query.chars().count();
    if q >= 2 && word.starts_with(query) {
        return true;
    }
    let allowed = match q {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    };
    allowed > 0 && word.chars().count() >= 4 && strsim::levenshtein(query, word) <= allowed
}

/// Does the customer name `name` match the query `query`?
pub(super) fn name_matches(query: &str, name: &str) -> bool {
    let q = words(query);
    let n = words(name);
    !q.is_empty() && q.iter().all(|qw| n.iter().any(|nw| word_matches(qw, nw)))
}

/// The national part of a phone number: its last 9 digits ("050-123-4567" and "+972501234567"
/// are the same number).
fn phone_key(raw: &str) -> String {
    let digits: Vec<char> = raw.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(9)..].iter().collect()
}

/// Does `phone` match the query (7 digits or more, compared on the national part)?
pub(super) fn phone_matches(query: &str, phone: &str) -> bool {
    let q = phone_key(query);
    q.len() >= 7 && phone_key(phone).ends_with(&q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_across_spelling_points_and_final_letters() {
        assert!(name_matches("Dana", "Dana Levi"));
        assert!(name_matches("dana", "DANNA"));
        assert!(name_matches("levi dana", "Dana Levi"));
        assert!(name_matches("דנה", "דָּנָה כהן"));
        assert!(name_matches("אברהם", "אברהמ"));
        assert!(name_matches("Av", "Avi Cohen"));
        assert!(!name_matches("Dana", "Dan"));
        assert!(!name_matches("Avi", "Eva"));
        assert!(!name_matches("", "Dana"));
        assert!(!name_matches("Dana", "Yael Cohen"));
    }

    #[test]
    fn phones_match_in_any_format() {
        assert!(phone_matches("050-123-4567", "+972501234567"));
        assert!(phone_matches("+972 50 123 4567", "+972501234567"));
        assert!(!phone_matches("050-123-4568", "+972501234567"));
        assert!(!phone_matches("4567", "+972501234567"));
    }
}
