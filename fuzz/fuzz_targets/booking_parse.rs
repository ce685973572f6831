//! The booking parsers on arbitrary customer text: date, time, phone, name, yes/no/goodbye.
#![no_main]
use jiff::ToSpan;
use jiff::civil::Date;
use kav::core::booking::parse::{
    bare_name, is_goodbye, is_no, is_yes, normalize_phone, parse_date, parse_name, parse_phone,
    parse_time,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
    let _ = parse_date(text, today);
    let _ = parse_date(text, Date::MAX);
    let _ = parse_date(text, Date::MIN);
    if let Some(t) = parse_time(text) {
        assert!(t.hour() < 24);
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
});
