//! Truthfulness guard. Before a reply is spoken or sent, its claims (booked / free or busy / sent)
//! are checked against the tools that succeeded this turn. Sans-IO: text and evidence in, verdict
//! out. Claim detection is by phrase lists in English and Hebrew, with a negation check just
//! before the phrase ("not booked yet", "עוד לא קבעתי" are not claims).

/// What this turn's successful tool calls can back up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evidence {
    /// `calendar_create_appointment` or `calendar_update_appointment` succeeded.
    pub booked: bool,
    /// `calendar_cancel_appointment` succeeded.
    pub cancelled: bool,
    /// `calendar_find_slots` (or `calendar_list_appointments`) succeeded.
    pub availability: bool,
    /// A WhatsApp message was really sent (`whatsapp_send` ok, or `whatsapp_status: sent`).
    pub sent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Claim {
    Booked,
    Cancelled,
    Availability,
    Sent,
}

impl Claim {
    pub fn as_str(self) -> &'static str {
        match self {
            Claim::Booked => "booked",
            Claim::Cancelled => "cancelled",
            Claim::Availability => "availability",
            Claim::Sent => "sent",
        }
    }
}

const BOOKED: &[&str] = &[
    "booked",
    "i've booked",
    "i have booked",
    "is confirmed",
    "are confirmed",
    "appointment is set",
    "you're all set",
    "you are all set",
    "reserved",
    "scheduled you",
    "קבעתי",
    "נקבע",
    "הזמנתי",
    "הוזמן",
    "שריינתי",
    "התור שלך מאושר",
    "ההזמנה אושרה",
];

const CANCELLED: &[&str] = &["cancelled", "canceled", "ביטלתי", "בוטל"];

const AVAILABILITY: &[&str] = &[
    "available",
    "is free",
    "are free",
    "free slot",
    "free at",
    "is open at",
    "fully booked",
    "no availability",
    "is taken",
    "is busy",
    "we have openings",
    "there is a slot",
    "פנוי",
    "פנויה",
    "פנויים",
    "תפוס",
    "תפוסה",
    "אין מקום",
    "יש מקום",
    "יש תור",
];

const SENT: &[&str] = &[
    "i sent",
    "i've sent",
    "i have sent",
    "has been sent",
    "was sent",
    "sent you",
    "שלחתי",
    "נשלח",
    "נשלחה",
];

/// Words that, within the two words before a phrase, turn it into a non-claim.
const NEGATIONS: &[&str] = &[
    "not", "n't", "no", "never", "yet", "לא", "טרם", "עוד", "אם", "if", "whether",
];

fn lower(text: &str) -> String {
    text.to_lowercase().replace('’', "'")
}

fn negated(before: &str) -> bool {
    before
        .split_whitespace()
        .rev()
        .take(2)
        .any(|w| NEGATIONS.iter().any(|n| w.ends_with(n) || w == *n))
}

fn contains_claim(text: &str, phrases: &[&str]) -> bool {
    let text = lower(text);
    phrases.iter().any(|p| {
        text.match_indices(p).any(|(at, _)| {
            // Word start boundary for Latin phrases ("unavailable" is still availability talk).
            let before = &text[..at];
            !negated(before)
        })
    })
}

/// Claims a text makes (sorted, de-duplicated). Questions are not claims.
pub fn claims(text: &str) -> Vec<Claim> {
    let mut out = Vec::new();
    for sentence in split_sentences(text) {
        if sentence.trim_end().ends_with('?') {
            continue;
        }
        // "fully booked" is about availability, not about a booking we made.
        let without_full = lower(&sentence).replace("fully booked", "full");
        if contains_claim(&without_full, BOOKED) {
            out.push(Claim::Booked);
        }
        if contains_claim(&sentence, CANCELLED) {
            out.push(Claim::Cancelled);
        }
        if contains_claim(&sentence, AVAILABILITY) {
            out.push(Claim::Availability);
        }
        if contains_claim(&sentence, SENT) {
            out.push(Claim::Sent);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Claims in `text` that `evidence` does not back.
pub fn unsupported(text: &str, evidence: Evidence) -> Vec<Claim> {
    claims(text)
        .into_iter()
        .filter(|c| match c {
            Claim::Booked => !evidence.booked,
            Claim::Cancelled => !evidence.cancelled,
            Claim::Availability => !evidence.availability && !evidence.booked,
            Claim::Sent => !evidence.sent,
        })
        .collect()
}

pub fn is_hebrew(text: &str) -> bool {
    text.chars().any(|c| ('\u{0590}'..='\u{05FF}').contains(&c))
}

/// The truthful reply that replaces a reply with false claims: says what has NOT happened and
/// offers the next real step.
pub fn truthful_reply(false_claims: &[Claim], hebrew: bool) -> String {
    let first = false_claims.first().copied().unwrap_or(Claim::Booked);
    match (first, hebrew) {
        (Claim::Booked, false) => {
            "I have not booked anything yet. Shall I check the available times and book it for you?"
                .into()
        }
        (Claim::Booked, true) => "עדיין לא קבעתי את התור. לבדוק שעות פנויות ולקבוע עבורך?".into(),
        (Claim::Cancelled, false) => {
            "I have not cancelled anything yet. Shall I cancel it now?".into()
        }
        (Claim::Cancelled, true) => "עדיין לא ביטלתי. לבטל עכשיו?".into(),
        (Claim::Availability, false) => {
            "Let me check the calendar first. Which day suits you?".into()
        }
        (Claim::Availability, true) => "אני צריך לבדוק קודם ביומן. איזה יום מתאים לך?".into(),
        (Claim::Sent, false) => {
            "I have not sent a message yet. Shall I send you the details?".into()
        }
        (Claim::Sent, true) => "עדיין לא שלחתי הודעה. לשלוח לך את הפרטים?".into(),
    }
}

/// Verdict on one piece of reply text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardVerdict {
    Pass,
    /// Replace the text; the claims that were false are listed for the trace.
    Replace {
        replacement: String,
        false_claims: Vec<Claim>,
    },
}

pub fn check(text: &str, evidence: Evidence) -> GuardVerdict {
    let false_claims = unsupported(text, evidence);
    if false_claims.is_empty() {
        GuardVerdict::Pass
    } else {
        GuardVerdict::Replace {
            replacement: truthful_reply(&false_claims, is_hebrew(text)),
            false_claims,
        }
    }
}

/// Splits after `.`, `!`, `?` (and a newline); the punctuation stays with its sentence.
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if matches!(c, '.' | '!' | '?' | '\n') {
            if !current.trim().is_empty() {
                out.push(std::mem::take(&mut current));
            } else {
                current.clear();
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// Incremental sentence splitter for streamed text: `push` returns the sentences completed so far.
#[derive(Debug, Default)]
pub struct SentenceBuffer {
    pending: String,
}

impl SentenceBuffer {
    pub fn push(&mut self, delta: &str) -> Vec<String> {
        let mut out = Vec::new();
        for c in delta.chars() {
            self.pending.push(c);
            if matches!(c, '.' | '!' | '?' | '\n') {
                let s = std::mem::take(&mut self.pending);
                if !s.trim().is_empty() {
                    out.push(s);
                }
            }
        }
        out
    }

    /// What is left once the stream ended.
    pub fn finish(&mut self) -> Option<String> {
        let s = std::mem::take(&mut self.pending);
        (!s.trim().is_empty()).then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lies_are_caught_in_both_languages() {
        let none = Evidence::default();
        assert_eq!(
            unsupported(
                "Great, I've booked the Dubai room for tomorrow at 10.",
                none
            ),
            vec![Claim::Booked]
        );
        assert_eq!(
            unsupported("מעולה, קבעתי לך תור מחר בעשר.", none),
            vec![Claim::Booked]
        );
        assert_eq!(
            unsupported("Tomorrow at 10 is available.", none),
            vec![Claim::Availability]
        );
        assert_eq!(
            unsupported("מחר בעשר פנוי.", none),
            vec![Claim::Availability]
        );
        assert_eq!(
            unsupported("I sent you a WhatsApp confirmation.", none),
            vec![Claim::Sent]
        );
        assert_eq!(
            unsupported("שלחתי לך הודעה בוואטסאפ.", none),
            vec![Claim::Sent]
        );
    }

    #[test]
    fn supported_claims_questions_and_negations_pass() {
        let booked = Evidence {
            booked: true,
            ..Evidence::default()
        };
        assert_eq!(
            check("You're booked for tomorrow at 10.", booked),
            GuardVerdict::Pass
        );
        let none = Evidence::default();
        assert_eq!(
            check("Shall I book tomorrow at 10?", none),
            GuardVerdict::Pass
        );
        assert_eq!(check("Is 10 available for you?", none), GuardVerdict::Pass);
        assert_eq!(
            check("I have not booked anything yet.", none),
            GuardVerdict::Pass
        );
        assert_eq!(check("עוד לא קבעתי את התור.", none), GuardVerdict::Pass);
        assert_eq!(check("What name should I use?", none), GuardVerdict::Pass);
        // "booked; I sent" with only the booking backed: the sent part is false.
        assert_eq!(
            unsupported("Booked, and I sent a WhatsApp confirmation.", booked),
            vec![Claim::Sent]
        );
    }

    #[test]
    fn replacement_is_truthful_and_in_the_reply_language() {
        let GuardVerdict::Replace {
            replacement,
            false_claims,
        } = check("קבעתי לך תור.", Evidence::default())
        else {
            panic!("lie passed");
        };
        assert_eq!(false_claims, vec![Claim::Booked]);
        assert!(is_hebrew(&replacement));
        assert!(claims(&replacement).is_empty(), "{replacement}");
        for c in [
            Claim::Booked,
            Claim::Cancelled,
            Claim::Availability,
            Claim::Sent,
        ] {
            for he in [false, true] {
                let r = truthful_reply(&[c], he);
                assert!(claims(&r).is_empty(), "replacement makes a claim: {r}");
            }
        }
    }

    #[test]
    fn sentence_buffer_streams_whole_sentences() {
        let mut b = SentenceBuffer::default();
        assert!(b.push("Hello the").is_empty());
        assert_eq!(b.push("re. How "), vec!["Hello there.".to_string()]);
        assert_eq!(b.finish().as_deref(), Some(" How "));
        assert_eq!(b.finish(), None);
    }
}
