//! What the customer's words ask for besides booking: cancel, list or move an appointment
//! ([`Intent`]), or a question about the business by its topic. Hebrew and English, read after
//! the temporal parser's normalisation.

use serde::{Deserialize, Serialize};

use crate::booking::temporal;

/// What the customer wants besides booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Intent {
    Cancel,
    List,
    Move,
}

pub(super) fn has_any(lower: &str, words: &[&str]) -> bool {
    words.iter().any(|w| lower.contains(w))
}

pub(super) fn intent(user: &str) -> Option<Intent> {
    let lower = temporal::normalize(user);
    if has_any(
        &lower,
        &[
            "cancel",
            "לבטל",
            "ביטול",
            "תבטל",
            "בטל את",
            "לא נגיע",
            "can't make it",
            "cant make it",
        ],
    ) {
        return Some(Intent::Cancel);
    }
    if has_any(
        &lower,
        &[
            "reschedule",
            "move my",
            "move the",
            "move it",
            "push it",
            "push my",
            "push the",
            "postpone",
            "change my booking",
            "change my appointment",
            "change my reservation",
            "להזיז",
            "תזיז",
            "להעביר את",
            "לשנות את התור",
            "לשנות את ההזמנה",
            "לדחות את",
            "לדחות",
            "להקדים",
        ],
    ) {
        return Some(Intent::Move);
    }
    if has_any(
        &lower,
        &[
            "my booking",
            "my bookings",
            "my appointment",
            "my reservation",
            "bookings do i have",
            "any booking",
            "any reservation",
            "any appointment",
            "did i book",
            "when am i booked",
            "anything booked",
            "something booked",
            "booked anything",
            "booked something",
            "have i booked",
            "מתי קבעתי",
            "מה קבעתי",
            "קבעתי משהו",
            "על מה קבעתי",
            "התור שלי",
            "התורים שלי",
            "ההזמנה שלי",
            "ההזמנות שלי",
            "יש לי תור",
            "יש לי הזמנה",
            "מתי התור",
            "מתי ההזמנה",
            "מה הזמנתי",
            "הזמנתי?",
        ],
    ) {
        return Some(Intent::List);
    }
    None
}

/// A question about the business (prices, hours, rooms, facilities), by its topic.
pub(super) fn question_topic(user: &str) -> Option<&'static str> {
    let lower = temporal::normalize(user);
    let topics: [(&str, &[&str]); 4] = [
        (
            "prices",
            &[
                "price",
                "cost",
                "how much",
                "כמה עולה",
                "כמה זה עולה",
                "מחיר",
                "עלות",
                "כמה כסף",
            ],
        ),
        (
            "hours",
            &[
                "hours",
                "open",
                "close",
                "שעות",
                "פתוחים",
                "פתוח",
                "סוגרים",
                "עד איזו שעה",
                "עד מתי",
            ],
        ),
        (
            "rooms",
            &[
                "what rooms",
                "which rooms",
                "rooms do you",
                "איזה חדרים",
                "אילו חדרים",
                "מה החדרים",
                "חדרים יש",
            ],
        ),
        (
            "faq",
            &[
                "parking",
                "park",
                "kids",
                "children",
                "child",
                "age",
                "accessible",
                "wheelchair",
                "חניה",
                "חנייה",
                "ילדים",
                "ילד",
                "גיל",
                "נגיש",
                "כיסא גלגלים",
            ],
        ),
    ];
    topics
        .iter()
        .find(|(_, words)| has_any(&lower, words))
        .map(|(t, _)| *t)
}
