//! The console's UI strings in English and Hebrew: one table, looked up by key in templates
//! (`page.t.key`). A page in Hebrew is laid out right-to-left (`dir="rtl"`); business content
//! carries `dir="auto"` wherever it is shown.

/// UI strings: key, English, Hebrew.
pub(super) const STRINGS: &[(&str, &str, &str)] = &[
    ("console", "Kav console", "קונסולת קב"),
    ("sign_in", "Sign in", "כניסה"),
    ("sign_out", "Sign out", "יציאה"),
    ("email", "Email", "דוא\"ל"),
    ("password", "Password", "סיסמה"),
    ("businesses", "Businesses", "עסקים"),
    ("business", "Business", "עסק"),
    ("name", "Name", "שם"),
    ("timezone", "Timezone", "אזור זמן"),
    ("language", "Language", "שפה"),
    ("save", "Save", "שמירה"),
    ("saved", "Saved.", "נשמר."),
    ("prompts", "Prompts", "הנחיות"),
    ("prompt_default", "Default prompt", "הנחיה כללית"),
    ("prompt_phone", "Phone prompt", "הנחיה לטלפון"),
    ("prompt_whatsapp", "WhatsApp prompt", "הנחיה לוואטסאפ"),
    ("preview", "What the agent receives", "מה הסוכן מקבל"),
    ("policy", "Booking policy", "מדיניות הזמנות"),
    ("opening_hours", "Opening hours", "שעות פתיחה"),
    ("open_24_7", "Open 24/7", "פתוח 24/7"),
    ("slot_size", "Slot size (min)", "משך משבצת (דק')"),
    ("notice", "Minimum notice (min)", "התראה מינימלית (דק')"),
    ("window", "Booking window (days)", "חלון הזמנה (ימים)"),
    (
        "phone_required",
        "Phone required before booking",
        "טלפון נדרש לפני הזמנה",
    ),
    ("scope", "Concurrency per", "מקביליות לפי"),
    ("limit", "Concurrency limit", "מגבלת מקביליות"),
    ("next_slots", "Next free slots", "המשבצות הפנויות הבאות"),
    (
        "no_slots",
        "No free slot in the booking window.",
        "אין משבצת פנויה בחלון ההזמנה.",
    ),
    ("numbers", "Numbers", "מספרים"),
    ("rooms", "Rooms", "חדרים"),
    ("documents", "Knowledge documents", "מסמכי ידע"),
    ("bookings", "Bookings", "הזמנות"),
    ("settings", "Settings", "הגדרות"),
    ("new_booking", "New booking", "הזמנה חדשה"),
    ("start", "Start", "התחלה"),
    ("room", "Room", "חדר"),
    ("customer", "Customer", "לקוח"),
    ("phone", "Phone", "טלפון"),
    ("status", "Status", "סטטוס"),
    ("book", "Book", "הזמנה"),
    ("cancel", "Cancel", "ביטול"),
    ("move", "Move", "העברה"),
    ("day", "Day", "יום"),
    ("closed", "closed", "סגור"),
    ("api_tokens", "API tokens", "אסימוני API"),
    ("new_token", "New API token", "אסימון API חדש"),
    ("label", "Label", "תווית"),
    ("revoke", "Revoke", "ביטול"),
    (
        "token_once",
        "Copy it now: it is shown only once.",
        "העתיקו עכשיו: הוא מוצג פעם אחת בלבד.",
    ),
    (
        "read_only",
        "Read only: only the owner changes settings.",
        "קריאה בלבד: רק הבעלים משנים הגדרות.",
    ),
    ("calendar", "Calendar", "יומן"),
    ("week", "Week", "שבוע"),
    ("previous", "Previous", "הקודם"),
    ("next", "Next", "הבא"),
    ("any_room", "Any free room", "כל חדר פנוי"),
    ("off_grid", "Outside the slot grid", "מחוץ למשבצות"),
    ("customers", "Customers", "לקוחות"),
    ("outbox", "Outbox", "תיבת יוצא"),
    ("channel", "Channel", "ערוץ"),
    ("address", "Number or id", "מספר או מזהה"),
    ("channel_phone", "Phone (Twilio)", "טלפון (Twilio)"),
    (
        "channel_whatsapp",
        "WhatsApp phone_number_id",
        "מזהה מספר וואטסאפ",
    ),
    ("add", "Add", "הוספה"),
    ("remove", "Remove", "הסרה"),
    ("delete", "Delete", "מחיקה"),
    ("other_names", "Other names", "שמות נוספים"),
    ("new_document", "New document", "מסמך חדש"),
    ("title", "Title", "כותרת"),
    ("text", "Text", "טקסט"),
    ("all", "All", "הכול"),
    ("state_pending", "pending", "ממתין"),
    ("state_failed", "failed", "נכשל"),
    ("state_dead", "dead", "נזנח"),
    ("state_sent", "sent", "נשלח"),
    ("created", "Created", "נוצר"),
    ("kind", "Kind", "סוג"),
    ("attempts", "Attempts", "ניסיונות"),
    ("last_error", "Last error", "שגיאה אחרונה"),
    ("next_attempt", "Next attempt / done", "ניסיון הבא / הסתיים"),
    ("retry", "Retry", "נסו שוב"),
    (
        "msg_requeued",
        "Queued for another attempt.",
        "הוחזר לתור לניסיון נוסף.",
    ),
    ("none", "Nothing here.", "אין כאן כלום."),
    ("search", "Search", "חיפוש"),
    ("search_hint", "Name or phone", "שם או טלפון"),
    ("last_seen", "Last seen", "נראה לאחרונה"),
    ("calls", "Calls", "שיחות"),
    ("conversation", "Conversation", "שיחה"),
    ("total", "Total", "סה\"כ"),
    ("tools", "Tool calls", "קריאות לכלים"),
    ("turn", "turn", "סבב"),
    ("role_user", "Customer", "לקוח"),
    ("role_assistant", "Agent", "סוכן"),
    ("outbound", "Sent by us", "נשלח מאיתנו"),
    // The ops view (`ops.rs`).
    ("ops", "Live ops", "תפעול חי"),
    ("live_calls", "Live calls", "שיחות חיות"),
    ("no_live_calls", "No call in progress.", "אין שיחה פעילה."),
    ("call", "Call", "שיחה"),
    ("phase", "Phase", "שלב"),
    ("duration", "Duration", "משך"),
    ("turn_col", "Turn", "תור"),
    ("rtt", "RTT", "זמן הלוך-חזור"),
    ("lead", "Lead at Twilio", "מקדם ב-Twilio"),
    ("barge_ins", "Barge-ins", "התפרצויות"),
    (
        "late",
        "Late frames (>5/>20 ms)",
        "מסגרות מאחרות (>5/>20 מ\"ש)",
    ),
    ("dropped", "Dropped", "הושמטו"),
    ("underruns", "Underruns", "חוסרי שמע"),
    ("percentiles", "Latency percentiles", "אחוזוני השהיה"),
    ("provider", "Provider (STT/agent/TTS)", "ספק (STT/סוכן/TTS)"),
    ("time_window", "Window", "חלון"),
    ("hour", "last hour", "השעה האחרונה"),
    ("day_window", "last day", "היום האחרון"),
    ("mark", "Mark", "מדד"),
    ("count", "Turns", "תורות"),
    (
        "rows_cut",
        "Computed over the newest turns only (row limit reached):",
        "חושב על התורות האחרונות בלבד (הגעה למגבלת השורות):",
    ),
    (
        "chart",
        "p95 total per 5 minutes (last day)",
        "p95 כולל לכל 5 דקות (היום האחרון)",
    ),
    ("counters", "Errors and drops", "שגיאות והשמטות"),
    ("source", "Source", "מקור"),
    ("value", "Value", "ערך"),
    ("whatsapp", "WhatsApp", "וואטסאפ"),
    ("waterfall", "Latency per turn (ms)", "השהיה לכל תור (מ\"ש)"),
    ("transcript", "Transcript", "תמליל"),
    ("caller", "Caller", "מתקשר"),
    ("bot", "Bot", "בוט"),
    ("interrupted", "interrupted", "נקטע"),
    ("ended", "Ended", "הסתיימה"),
    ("in_progress", "in progress", "בתהליך"),
    ("all_businesses", "All businesses", "כל העסקים"),
    ("no_turns", "No turn recorded yet.", "עוד לא נרשם תור."),
    // The staff assistant's panel (`staff.rs`).
    ("staff_assistant", "Staff assistant", "עוזר לצוות"),
    ("staff_mode", "Mode", "מצב"),
    (
        "staff_placeholder",
        "e.g. who is booked on Thursday? / בטל את כל התורים של מחר",
        "למשל: מי קבע ביום חמישי? / cancel all Dubai-room bookings next week",
    ),
    ("send", "Send", "שליחה"),
    (
        "staff_prompt",
        "Staff assistant prompt",
        "הנחיה לעוזר הצוות",
    ),
];

pub(super) const DAY_NAMES: [(&str, &str); 7] = [
    ("Sunday", "ראשון"),
    ("Monday", "שני"),
    ("Tuesday", "שלישי"),
    ("Wednesday", "רביעי"),
    ("Thursday", "חמישי"),
    ("Friday", "שישי"),
    ("Saturday", "שבת"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_once_with_both_languages() {
        let mut seen = std::collections::BTreeSet::new();
        for (key, en, he) in STRINGS {
            assert!(seen.insert(key), "{key} twice");
            assert!(!en.is_empty() && !he.is_empty(), "{key}");
            assert!(
                he.chars().any(|c| ('\u{0590}'..='\u{05FF}').contains(&c)),
                "{key}: the Hebrew string has no Hebrew"
            );
        }
    }

    #[test]
    fn every_string_a_template_names_exists() {
        let keys: std::collections::BTreeSet<&str> = STRINGS.iter().map(|s| s.0).collect();
        // Every template the console renders: the pages', the ops view's and the staff panel's.
        let mut env = super::super::ops::with_templates(super::super::pages::templates());
        super::super::staff::add_templates(&mut env);
        for (name, template) in env.templates() {
            let source = template.source();
            for (at, _) in source.match_indices("page.t.") {
                let key: String = source[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    keys.contains(key.as_str()),
                    "{name}: page.t.{key} has no string"
                );
            }
        }
    }
}
