//! Answers questions from the business's documents: BM25 (the `bm25` crate) over passages
//! (sentences) with a Hebrew-aware tokenizer that indexes each word by its stem without up to two
//! one-letter prefixes ו/ה/ב/ל/מ/ש/כ ("בחמישי" as "חמישי", "ולחניה" as "חניה"). Questions are
//! tokenized the same way, so a word that itself starts with such a letter ("מחיר" → "חיר") still
//! meets itself; indexing the surface form too was tried and let a prefixed verb ("להגיע", two
//! tokens) outweigh the subject ("ילדים", one). The answer is
//! the best passage in the customer's language, or `None` when no passage shares a word with
//! the question (the dialog then says it has no information instead of guessing).
//!
//! Pure: the documents are an input; nothing is read or cached here.

use bm25::{Document, SearchEngine, SearchEngineBuilder, Tokenizer};

use super::guard::is_hebrew;
use super::temporal::{hebrew_stems, words};

/// Customers' words for what documents call otherwise (both directions index the same token).
const SYNONYMS: [(&str, &str); 26] = [
    ("much", "ils"),
    ("price", "ils"),
    ("pay", "ils"),
    ("מחיר", "ש\u{5f4}ח"),
    ("עולה", "ש\u{5f4}ח"),
    ("ילדים", "גיל"),
    ("children", "age"),
    ("kids", "children"),
    ("kid", "children"),
    ("son", "children"),
    ("daughter", "children"),
    ("child", "children"),
    ("old", "age"),
    ("year", "age"),
    ("years", "age"),
    ("ילד", "ילדים"),
    ("ילדה", "ילדים"),
    ("ילדות", "ילדים"),
    ("חנייה", "חניה"),
    ("park", "parking"),
    ("car", "parking"),
    ("רכב", "חניה"),
    ("אוטו", "חניה"),
    ("cost", "price"),
    ("prices", "price"),
    ("עולה", "מחיר"),
];

/// Words, their prefix-less stems and synonyms; short function words dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct HebrewAwareTokenizer;

impl Tokenizer for HebrewAwareTokenizer {
    fn tokenize(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for w in words(text) {
            let w = w.trim_matches(|c: char| !c.is_alphanumeric());
            let Some(stem) = hebrew_stems(w).pop().filter(|s| s.chars().count() >= 2) else {
                continue;
            };
            let forms = std::iter::once(stem).chain(
                SYNONYMS
                    .iter()
                    .filter(|(from, _)| hebrew_stems(from).pop() == Some(stem))
                    .map(|(_, to)| *to),
            );
            for form in forms.collect::<Vec<_>>() {
                // A synonym is stemmed like any word, so both sides meet.
                out.push(hebrew_stems(form).pop().unwrap_or(form).to_string());
            }
        }
        out
    }
}

/// The passages of a business's documents, indexed for BM25.
pub struct DocumentIndex {
    engine: SearchEngine<u32, u32, HebrewAwareTokenizer>,
    passages: Vec<String>,
}

impl DocumentIndex {
    /// Splits each `(title, body)` into sentences (`.`, `;`, new lines) and indexes each with
    /// its document's title ("Rooms / חדרים" makes "what rooms do you have?" find the rooms).
    pub fn new<'a>(documents: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut passages = Vec::new();
        let mut docs = Vec::new();
        for (title, body) in documents {
            for p in body.split_inclusive(['.', '\n', ';']) {
                let p = p.trim().trim_end_matches(';').trim();
                if p.chars().any(char::is_alphabetic) {
                    docs.push(Document::new(passages.len() as u32, format!("{title} {p}")));
                    passages.push(p.to_string());
                }
            }
        }
        let engine =
            SearchEngineBuilder::<u32, u32, HebrewAwareTokenizer>::with_tokenizer_and_documents(
                HebrewAwareTokenizer,
                docs,
            )
            .build();
        Self { engine, passages }
    }

    /// The best passage in the customer's language for `question`, if any shares a word with it.
    pub fn answer(&self, question: &str, hebrew: bool) -> Option<&str> {
        self.engine
            .search(question, self.passages.len().max(1))
            .into_iter()
            .filter(|r| r.score > 0.0)
            .map(|r| r.document.id as usize)
            .find(|&i| is_hebrew(&self.passages[i]) == hebrew)
            .map(|i| self.passages[i].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeded business's documents (migration 0002), bilingual.
    const DOCS: [(&str, &str); 4] = [
        (
            "Opening hours / שעות פתיחה",
            "Sun-Wed 10:00-22:00, Thu 10:00-23:00, Fri 09:00-15:00, Sat 19:00-23:00. ראשון-רביעי 10:00-22:00, חמישי 10:00-23:00, שישי 09:00-15:00, שבת 19:00-23:00.",
        ),
        (
            "Prices / מחירים",
            "Per room, 60 minutes: 2 players 300 ILS, 3-4 players 400 ILS, 5-6 players 480 ILS. לחדר, 60 דקות: 2 שחקנים 300 ש\"ח, 3-4 שחקנים 400 ש\"ח, 5-6 שחקנים 480 ש\"ח.",
        ),
        (
            "Rooms / חדרים",
            "Dubai (heist, 2-6 players), New York (detective, 2-5 players), Barcelona (family friendly, 2-6 players). דובאי (שוד, 2-6 שחקנים), ניו יורק (בלשי, 2-5), ברצלונה (משפחתי, 2-6).",
        ),
        (
            "FAQ / שאלות נפוצות",
            "Parking: free parking behind the building. Arrive 15 minutes early. Children under 12 with an adult. חניה: חניה חינם מאחורי הבניין. להגיע 15 דקות לפני. ילדים מתחת לגיל 12 בליווי מבוגר.",
        ),
    ];

    #[test]
    fn answers_in_the_customers_language_from_the_right_passage() {
        let index = DocumentIndex::new(DOCS);
        let cases: &[(&str, bool, Option<&str>)] = &[
            ("is there parking nearby?", false, Some("free parking")),
            ("where do i park the car", false, Some("free parking")),
            ("יש חניה קרובה?", true, Some("חניה חינם")),
            ("איפה אפשר לחנות את האוטו", true, Some("חניה חינם")),
            ("can my kids play?", false, Some("Children under 12")),
            (
                "is it ok for a 7 year old?",
                false,
                Some("Children under 12"),
            ),
            ("אפשר להגיע עם ילדים?", true, Some("ילדים מתחת")),
            (
                "עד איזו שעה אתם פתוחים בחמישי?",
                true,
                Some("חמישי 10:00-23:00"),
            ),
            ("how much for 4 players", false, Some("400 ILS")),
            ("כמה עולה לשחקנים", true, Some("400 ש")),
            (
                "which room is family friendly",
                false,
                Some("Barcelona (family"),
            ),
            ("what rooms do you have?", false, Some("Dubai (heist")),
            ("אילו חדרים יש לכם", true, Some("דובאי (שוד")),
            ("do you sell gift vouchers", false, None),
            ("יש לכם שוברי מתנה", true, None),
        ];
        for (q, he, want) in cases {
            let got = index.answer(q, *he);
            match want {
                Some(w) => assert!(
                    got.is_some_and(|g| g.contains(w)),
                    "{q}: got {got:?}, want …{w}…"
                ),
                None => assert_eq!(got, None, "{q}"),
            }
        }
    }

    #[test]
    fn tokenizer_indexes_stems_without_hebrew_prefixes() {
        let t = HebrewAwareTokenizer.tokenize("ובחמישי לחניה חמישי");
        assert_eq!(t, ["חמישי", "חניה", "חמישי"]);
        for want in ["חמישי", "חניה"] {
            assert!(t.contains(&want.to_string()), "{want} in {t:?}");
        }
    }
}
