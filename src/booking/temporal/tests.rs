use super::*;

/// Monday 2026-12-07 09:30 in Jerusalem.
fn now() -> Zoned {
    "2026-12-07T09:30:00[Asia/Jerusalem]".parse().unwrap()
}

/// `text | date (YYYY-MM-DD or -) | time (HH:MM or -) | ambiguity (-, 12h, past, pastdate,
/// invalid, which:FROM..TO) | part of day (-, m, n, a, e, l)`; the phrasings are customer wording, typed and
/// as a recogniser writes it (no punctuation, numbers as words).
const TABLE: &str = include_str!("../temporal_phrasings.txt");

fn amb_tag(a: Option<Ambiguity>) -> String {
    match a {
        None => "-".into(),
        Some(Ambiguity::TwelveHour { .. }) => "12h".into(),
        Some(Ambiguity::PastTime) => "past".into(),
        Some(Ambiguity::PastDate) => "pastdate".into(),
        Some(Ambiguity::InvalidDate) => "invalid".into(),
        Some(Ambiguity::WhichDay { from, to }) => format!("which:{from}..{to}"),
    }
}

fn part_tag(p: Option<PartOfDay>) -> &'static str {
    match p {
        None => "-",
        Some(PartOfDay::Morning) => "m",
        Some(PartOfDay::Noon) => "n",
        Some(PartOfDay::Afternoon) => "a",
        Some(PartOfDay::Evening) => "e",
        Some(PartOfDay::Night) => "l",
    }
}

#[test]
fn phrasing_table() {
    let now = now();
    let mut failures = Vec::new();
    let mut rows = 0;
    for line in TABLE.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        rows += 1;
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(cols.len() >= 4, "bad table row {line:?}");
        let got = parse(cols[0], &now);
        let date = got.date.map(|d| d.to_string()).unwrap_or("-".into());
        let time = got
            .time
            .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
            .unwrap_or("-".into());
        let amb = amb_tag(got.ambiguity);
        let part = part_tag(got.part_of_day);
        let want_part = cols.get(4).copied().unwrap_or("*");
        if date != cols[1]
            || time != cols[2]
            || amb != cols[3]
            || (want_part != "*" && want_part != part)
        {
            failures.push(format!(
                "{:?}: got {date} | {time} | {amb} | {part}, want {} | {} | {} | {want_part}",
                cols[0], cols[1], cols[2], cols[3]
            ));
        }
    }
    assert!(rows >= 200, "only {rows} rows");
    assert!(
        failures.is_empty(),
        "{} of {rows} phrasings wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn ranges() {
    let now = now();
    let r = |s: &str| {
        parse(s, &now)
            .range
            .map(|(a, b)| format!("{:02}-{:02}", a.hour(), b.hour()))
    };
    assert_eq!(r("between 5 and 7").as_deref(), Some("17-19"));
    assert_eq!(r("tomorrow between 10 and 12").as_deref(), Some("10-12"));
    assert_eq!(r("בין 5 ל-7").as_deref(), Some("17-19"));
    assert_eq!(r("מחר בין שש לשמונה בערב").as_deref(), Some("18-20"));
    assert_eq!(r("from 18:00 to 20:00").as_deref(), Some("18-20"));
    assert_eq!(r("at 7"), None);
}

#[test]
fn twelve_hour_resolution_by_what_is_acceptable() {
    let am = Time::new(6, 0, 0, 0).unwrap();
    let pm = Time::new(18, 0, 0, 0).unwrap();
    let open = |t: Time| t.hour() >= 10 && t.hour() < 22;
    assert_eq!(resolve_twelve_hour(am, pm, open), Some(pm));
    assert_eq!(resolve_twelve_hour(am, pm, |_| true), None);
    assert_eq!(resolve_twelve_hour(am, pm, |_| false), Some(pm));
    let eleven = Time::new(11, 0, 0, 0).unwrap();
    let twenty_three = Time::new(23, 0, 0, 0).unwrap();
    assert_eq!(
        resolve_twelve_hour(eleven, twenty_three, |_| false),
        Some(eleven)
    );
}

#[test]
fn bare_hours_pick_an_offered_time() {
    assert_eq!(bare_hour("7 works for us"), Some(7));
    assert_eq!(bare_hour("seven is good"), Some(7));
    assert_eq!(bare_hour("שבע"), Some(7));
    assert_eq!(bare_hour("19:00 please"), Some(19));
    assert_eq!(bare_hour("the first one"), None);
    assert_eq!(bare_hour("5 or 6"), None);
}

#[test]
fn hebrew_prefixes_are_stripped_one_or_two_deep() {
    assert_eq!(hebrew_stems("ובשש"), vec!["ובשש", "בשש", "שש"]);
    assert_eq!(hebrew_stems("ב-8"), vec!["ב-8", "8"]);
    assert_eq!(hebrew_stems("שש"), vec!["שש"]);
    assert_eq!(hebrew_stems("dubai"), vec!["dubai"]);
}
