use super::intent::intent;
use super::*;

/// The state is plain data: it survives a round trip through JSON, so it can be stored.
#[test]
fn dialog_state_round_trips_through_json() {
    let st = DialogState {
        hebrew: true,
        date: Some(jiff::civil::date(2026, 12, 8)),
        time: Some(jiff::civil::time(19, 30, 0, 0)),
        part: Some(PartOfDay::Evening),
        range: None,
        am_pm: Some((
            jiff::civil::time(6, 0, 0, 0),
            jiff::civil::time(18, 0, 0, 0),
        )),
        resource: Some("Dubai".into()),
        name: Some("דנה לוי".into()),
        phone: Some("+972501234567".into()),
        expect: Expect::AmPm,
        free_rooms: vec!["Dubai".into()],
        offered: vec!["18:00".into(), "19:00".into()],
        moving: Some("appt_1".into()),
        cancelling: None,
        known: true,
        days: None,
        choices: Vec::new(),
        choosing: Some(Intent::Cancel),
        more: vec!["מחר 19:00, דובאי".into()],
    };
    let json = serde_json::to_string(&st).unwrap();
    assert_eq!(serde_json::from_str::<DialogState>(&json).unwrap(), st);
}

#[test]
fn intents_in_both_languages() {
    for (text, want) in [
        ("I need to cancel my booking", Some(Intent::Cancel)),
        ("אני רוצה לבטל את התור", Some(Intent::Cancel)),
        ("when is my booking again?", Some(Intent::List)),
        ("מתי התור שלי?", Some(Intent::List)),
        ("can I move my booking to thursday", Some(Intent::Move)),
        ("אפשר להזיז את התור שלי?", Some(Intent::Move)),
        ("I want to book a room", None),
        ("אני רוצה לקבוע תור", None),
    ] {
        assert_eq!(intent(text), want, "{text}");
    }
}
