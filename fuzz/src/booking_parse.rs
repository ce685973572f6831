//! The booking parsers on arbitrary customer text: the temporal parser, phone, name, yes/no/goodbye.
use jiff::ToSpan;
use jiff::civil::Date;
use kav::booking::parse::{
    bare_name, is_goodbye, is_no, is_yes, normalize_phone, parse_name, parse_phone,
};
use kav::booking::temporal;

/// One fuzz input.
pub fn run(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    // Any day from 0001 to 9999 as "today", so date arithmetic meets the calendar's ends.
    let day = u16::from_le_bytes([data[0], data[1]]);
    let today = Date::constant(2026, 1, 1)
        .checked_add((i64::from(day) - 32768).days())
        .unwrap_or(Date::constant(2026, 1, 1));
    let Ok(text) = std::str::from_utf8(&data[2..]) else {
        return;
    };
    // Mid-year in the calendar's first and last years too (not Date::MIN/MAX themselves: jiff
    // 0.2.16 hits `unreachable!` resolving a zone offset at DateTime::MIN, and Kav's "today" is
    // the clock's).
    for day in [today, Date::constant(1, 6, 1), Date::constant(9999, 6, 1)] {
        if let Ok(now) = day.at(12, 0, 0, 0).in_tz("Asia/Jerusalem") {
            let _ = temporal::parse(text, &now);
        }
    }
    if let Some(p) = parse_phone(text) {
        assert!(!p.is_empty());
        let _ = normalize_phone(&p);
    }
    let _ = normalize_phone(text);
    let _ = (is_yes(text), is_no(text), is_goodbye(text));
    if let Some(n) = parse_name(text) {
        assert!(!n.trim().is_empty());
    }
    let _ = bare_name(text);
}
