use super::*;
use jiff::ToSpan;
use jiff::civil::{Weekday, date};

fn rooms() -> Vec<Resource> {
    ["Dubai", "Barcelona", "Tokyo"]
        .iter()
        .zip([&["דובאי"][..], &["ברצלונה"][..], &["טוקיו"][..]])
        .map(|(name, aliases)| Resource {
            id: format!("room_{}", name.to_lowercase()),
            name: name.to_string(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            concurrency_limit: 1,
        })
        .collect()
}

/// Monday 2026-12-07, 12:00 in Jerusalem.
fn now() -> Zoned {
    date(2026, 12, 7)
        .at(12, 0, 0, 0)
        .in_tz("Asia/Jerusalem")
        .unwrap()
}

fn read(text: &str) -> Command {
    let now = now();
    let rooms = rooms();
    parse(
        text,
        &Context {
            now: &now,
            rooms: &rooms,
        },
    )
}

fn day(d: Weekday) -> Date {
    let today = now().date();
    (0..7)
        .map(|i| today.checked_add(i.days()).unwrap())
        .find(|x| x.weekday() == d)
        .unwrap()
}

fn find(from: Date, to: Date) -> Command {
    Command::Find(Selection {
        from: Some(from),
        to: Some(to),
        ..Selection::default()
    })
}

#[test]
fn reads_the_issue_examples() {
    let thu = day(Weekday::Thursday);
    let sun = date(2026, 12, 13);
    let tomorrow = date(2026, 12, 8);
    let next_week = (date(2026, 12, 13), date(2026, 12, 19));
    assert_eq!(read("who is booked on Thursday?"), find(thu, thu));
    assert_eq!(read("מי קבע ביום חמישי?"), find(thu, thu));
    assert_eq!(
        read("show Dana's bookings"),
        Command::Find(Selection {
            name: Some("dana".into()),
            ..Selection::default()
        })
    );
    assert_eq!(
        read("cancel all Dubai-room bookings next week"),
        Command::Cancel(Selection {
            from: Some(next_week.0),
            to: Some(next_week.1),
            room: Some("Dubai".into()),
            ..Selection::default()
        })
    );
    assert_eq!(
        read("בטל את כל התורים של מחר"),
        Command::Cancel(Selection {
            from: Some(tomorrow),
            to: Some(tomorrow),
            ..Selection::default()
        })
    );
    let moved = Command::MoveDay {
        from: thu,
        to: sun,
        time: None,
        room: None,
    };
    assert_eq!(
        read("move everyone booked on Thursday to Sunday, same times"),
        moved
    );
    assert_eq!(
        read("תעביר את כל מי שקבע ליום חמישי ליום ראשון באותן שעות"),
        moved
    );
    assert_eq!(
        read("what's free tomorrow afternoon?"),
        Command::FreeSlots {
            from: tomorrow,
            to: tomorrow,
            part: Some(PartOfDay::Afternoon),
            room: None
        }
    );
    // Today is Monday: "יום שני" is today.
    assert_eq!(
        read("מה פנוי ביום שני?"),
        Command::FreeSlots {
            from: now().date(),
            to: now().date(),
            part: None,
            room: None
        }
    );
    for yes in ["yes", "כן", "confirm", "אשר"] {
        assert_eq!(read(yes), Command::Confirm, "{yes}");
    }
    for no in ["no", "לא", "no, stop"] {
        assert_eq!(read(no), Command::Decline, "{no}");
    }
}

#[test]
fn unclear_commands_ask_and_unknown_ones_say_what_it_can_do() {
    assert_eq!(read("cancel"), Command::Incomplete(Missing::CancelWhat));
    assert_eq!(read("בטל הכל"), Command::Incomplete(Missing::CancelWhat));
    assert_eq!(read("move them"), Command::Incomplete(Missing::MoveDays));
    assert_eq!(
        read("move Thursday's bookings to Sunday at 6"),
        Command::Incomplete(Missing::MoveTime)
    );
    assert_eq!(
        read("move Thursday's bookings to Sunday at 18:00"),
        Command::MoveDay {
            from: day(Weekday::Thursday),
            to: date(2026, 12, 13),
            time: Some(jiff::civil::time(18, 0, 0, 0)),
            room: None
        }
    );
    assert_eq!(read("what's the weather like"), Command::Unknown);
    assert_eq!(read("help"), Command::Help);
    assert!(help(true).contains("מי קבע"));
}

#[test]
fn a_name_is_never_a_day_a_room_or_a_command_word() {
    let Command::Find(s) = read("show me bookings for tomorrow") else {
        panic!()
    };
    assert_eq!(s.name, None);
    let Command::Find(s) = read("תראה את התורים של דובאי") else {
        panic!()
    };
    assert_eq!((s.name, s.room.as_deref()), (None, Some("Dubai")));
    let Command::Find(s) = read("find Dana Levi") else {
        panic!()
    };
    assert_eq!(s.name.as_deref(), Some("dana levi"));
    let Command::Cancel(s) = read("בטל את התורים של דנה") else {
        panic!()
    };
    assert_eq!(s.name.as_deref(), Some("דנה"));
    let Command::Find(s) = read("bookings of 050-123-4567") else {
        panic!()
    };
    assert_eq!(s.phone.as_deref(), Some("+972501234567"));
}

#[test]
fn candidates_are_picked_by_number_phone_or_full_name() {
    let c = vec![
        json!({"customer_name": "Dana Levi", "customer_phone": "+972501111111", "bookings": 2}),
        json!({"customer_name": "Dana Cohen", "customer_phone": "+972502222222", "bookings": 1}),
    ];
    assert_eq!(pick_candidate("2", &c), Some(1));
    assert_eq!(pick_candidate("the first", &c), Some(0));
    assert_eq!(pick_candidate("השנייה", &c), Some(1));
    assert_eq!(pick_candidate("050-222-2222", &c), Some(1));
    assert_eq!(pick_candidate("Dana Cohen", &c), Some(1));
    assert_eq!(pick_candidate("Dana", &c), None);
    let q = candidates_question("Dana", &c, false);
    assert!(
        q.contains("1. \"Dana Levi\"") && q.contains("2. \"Dana Cohen\""),
        "{q}"
    );
}

#[test]
fn reports_are_per_item_in_the_staff_language() {
    let result = json!({"ok": true, "summary": {"requested": 2, "succeeded": 1, "failed": 1,
        "notices": {"queued": 1}},
        "sample": [
            {"ok": false, "reason": "the day is closed", "date": "2026-12-10", "time": "19:00",
             "customer_name": "Avi", "room": "Dubai"},
            {"ok": true, "date": "2026-12-10", "time": "20:00", "customer_name": "Dana",
             "room": "Dubai"}]});
    let en = report(BATCH_CANCEL, &result, false);
    assert!(en.starts_with("Cancelled 1 of 2; 1 failed."), "{en}");
    assert!(en.contains("\"Avi\": failed: the day is closed"), "{en}");
    assert!(en.contains("\"Dana\": done"), "{en}");
    let he = report(BATCH_CANCEL, &result, true);
    assert!(he.starts_with("בוטלו 1 מתוך 2"), "{he}");
    let confirm = json!({"ok": false, "error": "confirmation_required", "confirm": "t",
        "preview": {"items": 7, "by_day": {"2026-12-10": 7}}});
    assert!(report(BATCH_CANCEL, &confirm, false).contains("cancel 7 bookings"));
    assert!(report(BATCH_CANCEL, &confirm, true).contains("לאשר"));
    let partly = json!({"ok": false, "error": "confirmation_required", "confirm": "t",
        "preview": {"items": 7, "would_fail": 2, "by_day": {}}});
    assert!(report(BATCH_MODIFY, &partly, false).contains("2 of them would fail"));
}
