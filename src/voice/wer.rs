//! Word error rate of a transcript against a reference, after a light normalisation, for
//! measuring recognisers (tests, `kav transcribe --reference`).
//!
//! Normalisation: lower case; apostrophes removed (`party's` → `partys`, so the apostrophe style
//! does not count as an error); every other character that is not a letter or digit (any
//! script, so Hebrew works) separates words; the digits 0–10 written alone become English words,
//! because recognisers write "1" as often as "one".

/// Lower-cased words of `text` with punctuation removed (see the module docs).
pub fn normalize_words(text: &str) -> Vec<String> {
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, '\'' | '’' | '`'))
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .map(|w| match w {
            "0" => "zero".to_string(),
            "1" => "one".to_string(),
            "2" => "two".to_string(),
            "3" => "three".to_string(),
            "4" => "four".to_string(),
            "5" => "five".to_string(),
            "6" => "six".to_string(),
            "7" => "seven".to_string(),
            "8" => "eight".to_string(),
            "9" => "nine".to_string(),
            "10" => "ten".to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// Word-level edit distance (substitutions + deletions + insertions) between two word lists.
pub fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    // One row of the Levenshtein table at a time.
    let mut previous: Vec<usize> = (0..=hypothesis.len()).collect();
    let mut current = vec![0; hypothesis.len() + 1];
    for (i, r) in reference.iter().enumerate() {
        current[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let substitution = previous[j] + usize::from(r != h);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[hypothesis.len()]
}

/// Errors and reference length for one transcript, to be summed over a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WordErrorCount {
    pub errors: usize,
    pub reference_words: usize,
}

impl WordErrorCount {
    pub fn of(reference: &str, hypothesis: &str) -> Self {
        let reference = normalize_words(reference);
        let hypothesis = normalize_words(hypothesis);
        Self {
            errors: word_errors(&reference, &hypothesis),
            reference_words: reference.len(),
        }
    }

    /// Word error rate; 0 for an empty reference with an empty hypothesis.
    pub fn rate(&self) -> f64 {
        if self.reference_words == 0 {
            return if self.errors == 0 { 0.0 } else { 1.0 };
        }
        self.errors as f64 / self.reference_words as f64
    }
}

impl std::ops::AddAssign for WordErrorCount {
    fn add_assign(&mut self, other: Self) {
        self.errors += other.errors;
        self.reference_words += other.reference_words;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_ignores_case_punctuation_and_digit_spelling() {
        assert_eq!(
            normalize_words("Call-Forward on Busy. Press 1, party's"),
            ["call", "forward", "on", "busy", "press", "one", "partys"]
        );
        assert_eq!(normalize_words("שלום, עולם!"), ["שלום", "עולם"]);
    }

    #[test]
    fn counts_substitutions_deletions_and_insertions() {
        let w = |s: &str| normalize_words(s);
        assert_eq!(word_errors(&w("a b c d"), &w("a b c d")), 0);
        assert_eq!(word_errors(&w("a b c d"), &w("a x c d")), 1);
        assert_eq!(word_errors(&w("a b c d"), &w("a c d")), 1);
        assert_eq!(word_errors(&w("a b c d"), &w("a b c d e f")), 2);
        assert_eq!(word_errors(&w("a b c d"), &w("")), 4);
        assert_eq!(word_errors(&w(""), &w("x y")), 2);
    }

    #[test]
    fn rate_is_errors_over_reference_words_and_sums_over_a_set() {
        let mut total = WordErrorCount::of("Please try again.", "please try again");
        assert_eq!(total.rate(), 0.0);
        total += WordErrorCount::of("one two three four", "one too three");
        assert_eq!(
            total,
            WordErrorCount {
                errors: 2,
                reference_words: 7
            }
        );
        assert!((total.rate() - 2.0 / 7.0).abs() < 1e-12);
        assert_eq!(WordErrorCount::of("", "").rate(), 0.0);
        assert_eq!(WordErrorCount::of("", "hallucinated").rate(), 1.0);
    }
}
