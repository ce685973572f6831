//! Store tests. Every test runs against a fresh SQLite file, and also against PostgreSQL when
//! `KAV_TEST_POSTGRES_URL` is set (see `scripts/ci-postgres.sh`); each PostgreSQL run gets its own
//! schema, dropped afterwards, so tests can run in parallel on one database.

use std::time::{Duration, Instant};

use kav::store::booking::AppointmentStatus;
use kav::store::{Record, Store, StoreError};
use kav::voice::events::{CallEvent, InputKind, LatencyMarks, TurnRecord};
use sqlx::{AnyPool, Row};

mod backends;
use backends::backends;

const T0: i64 = 1_700_000_000_000;

fn turn(n: u32, user: &str, bot: &str, interrupted: bool, marks: LatencyMarks) -> TurnRecord {
    TurnRecord {
        turn: n,
        input: InputKind::Speech,
        user_text: user.into(),
        bot_text: bot.into(),
        interrupted,
        marks,
        rtt_ms: None,
    }
}

fn started(call_id: &str, call_sid: &str, at_ms: i64) -> Record {
    Record::CallStarted {
        call_id: call_id.into(),
        call_sid: call_sid.into(),
        stream_sid: format!("MZ-{call_sid}"),
        account_sid: "AC123".into(),
        at_ms,
        parameters_json: r#"{"lang":"he-IL"}"#.into(),
    }
}

fn event(call_id: &str, at_ms: i64, event: CallEvent) -> Record {
    Record::Event {
        call_id: call_id.into(),
        at_ms,
        event,
    }
}

fn full_marks() -> LatencyMarks {
    LatencyMarks {
        stt_first_partial_ms: Some(180),
        stt_final_ms: Some(0),
        ai_latency_ms: Some(350),
        tts_ready_ms: Some(120),
        total_ms: Some(u32::MAX),
        ai_total_ms: Some(900),
        tts_total_ms: None,
    }
}

#[tokio::test]
async fn migrations_are_idempotent() {
    for b in backends().await {
        let first = Store::connect(&b.url)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        let second = Store::connect(&b.url)
            .await
            .unwrap_or_else(|e| panic!("{}: second connect: {e}", b.name));
        assert!(first.call("CA-none").await.unwrap().is_none());
        assert!(second.recent_turns(10).await.unwrap().is_empty());
        let side = b.side_pool().await;
        let applied: i64 = sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations")
            .fetch_one(&side)
            .await
            .unwrap()
            .get("n");
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
            })
            .count();
        assert_eq!(
            applied as usize, files,
            "each migration applied once: {}",
            b.name
        );
        side.close().await;
        b.cleanup().await;
    }
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub-dir-less.db");
    assert!(!path.exists());
    let url = format!("sqlite://{}", path.display());
    let _store = Store::connect(&url).await.unwrap();
    assert!(path.exists());
    let side = AnyPool::connect(&url).await.unwrap();
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&side)
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "wal");

    // An existing database in rollback-journal mode is switched to WAL on connect.
    let old = dir.path().join("old.db");
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&old)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Delete);
    sqlx::SqlitePool::connect_with(opts)
        .await
        .unwrap()
        .close()
        .await;
    let url = format!("sqlite://{}", old.display());
    let side = AnyPool::connect(&url).await.unwrap();
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&side)
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "delete");
    side.close().await;
    let _store = Store::connect(&url).await.unwrap();
    let side = AnyPool::connect(&url).await.unwrap();
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&side)
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn in_memory_sqlite_works() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let (rec, _writer) = store.recorder(8);
    rec.record(started("c1", "CA1", T0));
    rec.record(event(
        "c1",
        T0 + 1,
        CallEvent::Turn(turn(1, "hi", "hello", false, full_marks())),
    ));
    rec.flush().await;
    assert_eq!(rec.written(), 2);
    assert_eq!(store.call_turns("CA1").await.unwrap().len(), 1);
}

#[tokio::test]
async fn call_with_turns_and_events_round_trips() {
    for b in backends().await {
        let store = Store::connect(&b.url).await.unwrap();
        let (rec, writer) = store.recorder(64);
        let none = LatencyMarks::default();
        let partial = LatencyMarks {
            stt_first_partial_ms: Some(170),
            stt_final_ms: Some(90),
            ..none
        };
        let digits = TurnRecord {
            turn: 3,
            input: InputKind::Digits,
            user_text: "1234#".into(),
            bot_text: "תודה".into(),
            interrupted: false,
            marks: none,
            rtt_ms: None,
        };
        let records = vec![
            started("call-a", "CA-a", T0),
            started("call-b", "CA-b", T0 + 5),
            event(
                "call-a",
                T0 + 1_000,
                CallEvent::Turn(turn(
                    1,
                    "שלום",
                    "שלום! במה אפשר לעזור?",
                    false,
                    full_marks(),
                )),
            ),
            event(
                "call-a",
                T0 + 2_000,
                CallEvent::BargeIn {
                    turn: 2,
                    heard_chars: 7,
                    speech_ms: 240,
                },
            ),
            event(
                "call-a",
                T0 + 2_000,
                CallEvent::Turn(turn(2, "רגע", "אני יכו", true, partial)),
            ),
            event(
                "call-a",
                T0 + 3_000,
                CallEvent::Digits {
                    digits: "1234".into(),
                    committed_by: "hash",
                },
            ),
            event("call-a", T0 + 3_000, CallEvent::Turn(digits.clone())),
            event(
                "call-a",
                T0 + 3_500,
                CallEvent::Warning {
                    kind: "stt_timeout",
                    detail: "no final in 1500 ms".into(),
                },
            ),
            event(
                "call-b",
                T0 + 4_000,
                CallEvent::Turn(turn(1, "x", "y", false, none)),
            ),
            Record::CallEnded {
                call_id: "call-a".into(),
                at_ms: T0 + 9_000,
                reason: "hangup".into(),
                counters_json: r#"{"frames_in":450}"#.into(),
            },
        ];
        let n = records.len() as u64;
        for r in records {
            rec.record(r);
        }
        rec.flush().await;
        assert_eq!(
            (rec.written(), rec.dropped(), rec.failed()),
            (n, 0, 0),
            "{}",
            b.name
        );

        let call = store.call("CA-a").await.unwrap().expect("call row");
        assert_eq!(call.id, "call-a");
        assert_eq!(call.stream_sid, "MZ-CA-a");
        assert_eq!(call.account_sid, "AC123");
        assert_eq!(call.started_at_ms, T0);
        assert_eq!(call.ended_at_ms, Some(T0 + 9_000));
        assert_eq!(call.end_reason.as_deref(), Some("hangup"));
        assert_eq!(call.parameters_json, r#"{"lang":"he-IL"}"#);
        assert_eq!(call.counters_json.as_deref(), Some(r#"{"frames_in":450}"#));
        let open = store.call("CA-b").await.unwrap().unwrap();
        assert_eq!(
            (open.ended_at_ms, open.end_reason, open.counters_json),
            (None, None, None)
        );

        let turns = store.call_turns("CA-a").await.unwrap();
        assert_eq!(turns.len(), 3, "{}", b.name);
        assert!(turns.iter().all(|t| t.call_id == "call-a"));
        assert_eq!(
            (turns[0].turn, turns[0].marks, turns[0].interrupted),
            (1, full_marks(), false)
        );
        assert_eq!(turns[0].user_text, "שלום");
        assert_eq!(turns[0].input_kind.as_str(), "speech");
        assert_eq!(turns[0].at_ms, T0 + 1_000);
        assert_eq!(
            (turns[1].turn, turns[1].marks, turns[1].interrupted),
            (2, partial, true)
        );
        assert_eq!(turns[1].bot_text, "אני יכו");
        assert_eq!((turns[2].turn, turns[2].marks), (3, none));
        assert_eq!(
            (turns[2].input_kind.as_str(), turns[2].user_text.as_str()),
            ("digits", "1234#")
        );

        let events = store.call_events("CA-a").await.unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["barge_in", "digits", "stt_timeout"], "{}", b.name);
        let detail =
            |i: usize| serde_json::from_str::<serde_json::Value>(&events[i].detail_json).unwrap();
        assert_eq!(
            detail(0),
            serde_json::json!({"turn": 2, "heard_chars": 7, "speech_ms": 240})
        );
        assert_eq!(
            detail(1),
            serde_json::json!({"digits": "1234", "committed_by": "hash"})
        );
        assert_eq!(
            detail(2),
            serde_json::json!({"warning": true, "detail": "no final in 1500 ms"})
        );
        assert_eq!(events[2].at_ms, T0 + 3_500);

        let recent = store.recent_turns(2).await.unwrap();
        let keys: Vec<_> = recent
            .iter()
            .map(|t| (t.call_id.as_str(), t.turn))
            .collect();
        assert_eq!(keys, [("call-b", 1), ("call-a", 3)]);
        assert!(store.call_turns("CA-unknown").await.unwrap().is_empty());
        assert!(store.call("CA-unknown").await.unwrap().is_none());

        // Dropping the last recorder ends the writer after it drained the queue.
        rec.record(event(
            "call-b",
            T0 + 5_000,
            CallEvent::Turn(turn(2, "bye", "bye", false, none)),
        ));
        drop(rec);
        tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .expect("writer ends")
            .unwrap();
        assert_eq!(store.call_turns("CA-b").await.unwrap().len(), 2);
        b.cleanup().await;
    }
}

/// Decision: a duplicate (call_id, turn) is ignored — first write wins — and counted as failed.
#[tokio::test]
async fn duplicate_turn_is_ignored_and_counted() {
    for b in backends().await {
        let store = Store::connect(&b.url).await.unwrap();
        let (rec, _writer) = store.recorder(16);
        rec.record(started("c", "CA-dup", T0));
        rec.record(event(
            "c",
            T0 + 1,
            CallEvent::Turn(turn(1, "first", "one", false, full_marks())),
        ));
        rec.flush().await;
        // Same turn again, in a later batch and within one batch.
        rec.record(event(
            "c",
            T0 + 2,
            CallEvent::Turn(turn(1, "second", "two", true, LatencyMarks::default())),
        ));
        rec.flush().await;
        rec.record(event(
            "c",
            T0 + 3,
            CallEvent::Turn(turn(2, "a", "b", false, full_marks())),
        ));
        rec.record(event(
            "c",
            T0 + 4,
            CallEvent::Turn(turn(2, "again", "b", false, full_marks())),
        ));
        // A call end for a call that was never stored is not silently lost either.
        rec.record(Record::CallEnded {
            call_id: "ghost".into(),
            at_ms: T0,
            reason: "x".into(),
            counters_json: "{}".into(),
        });
        rec.flush().await;
        assert_eq!(
            (rec.written(), rec.failed(), rec.dropped()),
            (3, 3, 0),
            "{}",
            b.name
        );
        let turns = store.call_turns("CA-dup").await.unwrap();
        assert_eq!(turns.len(), 2, "{}", b.name);
        assert_eq!(
            (turns[0].user_text.as_str(), turns[0].interrupted),
            ("first", false)
        );
        assert_eq!(turns[1].user_text, "a");
        b.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_queue_drops_and_never_blocks() {
    for b in backends().await {
        let store = Store::connect(&b.url).await.unwrap();
        let (rec, _writer) = store.recorder(1);
        rec.record(started("c", "CA-burst", T0));
        rec.flush().await;
        const N: u64 = 20_000;
        let begin = Instant::now();
        let mut slowest = Duration::ZERO;
        for i in 0..N {
            let t = Instant::now();
            let warning = CallEvent::Warning {
                kind: "burst",
                detail: format!("#{i}"),
            };
            rec.record(event("c", T0 + i as i64, warning));
            slowest = slowest.max(t.elapsed());
        }
        let burst = begin.elapsed();
        assert!(
            burst < Duration::from_secs(2),
            "{}: burst of {N} took {burst:?}",
            b.name
        );
        assert!(
            slowest < Duration::from_millis(50),
            "{}: slowest record() took {slowest:?}",
            b.name
        );
        rec.flush().await;
        eprintln!(
            "{}: burst {burst:?}, slowest record() {slowest:?}, written {}, dropped {}",
            b.name,
            rec.written() - 1,
            rec.dropped()
        );
        assert!(
            rec.dropped() > 0,
            "{}: expected drops with a queue of 1",
            b.name
        );
        assert_eq!(rec.failed(), 0);
        assert_eq!(
            rec.written() - 1 + rec.dropped(),
            N,
            "{}: every record is written or dropped",
            b.name
        );
        let stored = store.call_events("CA-burst").await.unwrap().len() as u64;
        assert_eq!(stored, rec.written() - 1);
        b.cleanup().await;
    }
}

#[tokio::test]
async fn flush_waits_for_everything_queued_before_it() {
    for b in backends().await {
        let store = Store::connect(&b.url).await.unwrap();
        let (rec, _writer) = store.recorder(1_024);
        rec.record(started("c", "CA-flush", T0));
        for i in 0..500u32 {
            rec.record(event(
                "c",
                T0 + i64::from(i),
                CallEvent::Turn(turn(i + 1, "u", "b", false, full_marks())),
            ));
        }
        // More than one batch (MAX_BATCH) is queued: flush must wait for all of them.
        rec.flush().await;
        assert_eq!(rec.written(), 501, "{}", b.name);
        assert_eq!(store.call_turns("CA-flush").await.unwrap().len(), 500);
        // A flush from a clone with nothing queued returns promptly; so does one on a full queue.
        let other = rec.clone();
        tokio::time::timeout(Duration::from_secs(5), other.flush())
            .await
            .expect("idle flush");
        let (small, _w) = store.recorder(1);
        small.record(event(
            "c",
            T0,
            CallEvent::Digits {
                digits: "9".into(),
                committed_by: "timeout",
            },
        ));
        small.record(event(
            "c",
            T0,
            CallEvent::Digits {
                digits: "8".into(),
                committed_by: "timeout",
            },
        ));
        tokio::time::timeout(Duration::from_secs(5), small.flush())
            .await
            .expect("flush on full queue");
        assert_eq!(small.written() + small.dropped(), 2);
        b.cleanup().await;
    }
}

#[tokio::test]
async fn writer_survives_a_failing_write() {
    for b in backends().await {
        let store = Store::connect(&b.url).await.unwrap();
        let (rec, _writer) = store.recorder(64);
        rec.record(started("c", "CA-fail", T0));
        rec.flush().await;
        // Break the events table behind the store's back: every event insert now fails.
        let side = b.side_pool().await;
        sqlx::query("DROP TABLE call_events")
            .execute(&side)
            .await
            .unwrap();
        side.close().await;
        // One batch with a bad record between good ones: the good ones still land.
        rec.record(event(
            "c",
            T0 + 1,
            CallEvent::Turn(turn(1, "a", "b", false, full_marks())),
        ));
        rec.record(event(
            "c",
            T0 + 2,
            CallEvent::Warning {
                kind: "oops",
                detail: "lost".into(),
            },
        ));
        rec.record(event(
            "c",
            T0 + 3,
            CallEvent::Turn(turn(2, "c", "d", false, full_marks())),
        ));
        rec.flush().await;
        assert_eq!((rec.written(), rec.failed()), (3, 1), "{}", b.name);
        // And the writer keeps going afterwards.
        rec.record(event(
            "c",
            T0 + 4,
            CallEvent::Turn(turn(3, "e", "f", true, LatencyMarks::default())),
        ));
        rec.flush().await;
        assert_eq!((rec.written(), rec.failed()), (4, 1), "{}", b.name);
        assert_eq!(store.call_turns("CA-fail").await.unwrap().len(), 3);
        b.cleanup().await;
    }
}

/// A read of a corrupted row fails with `BadValue` naming this column, value and expectation.
#[track_caller]
fn assert_bad_value<T: std::fmt::Debug>(
    backend: &str,
    read: Result<T, StoreError>,
    want: (&str, &str, &str),
) {
    match read {
        Err(StoreError::BadValue {
            column,
            value,
            expected,
        }) => assert_eq!(
            (column.as_str(), value.as_str(), expected),
            want,
            "{backend}"
        ),
        other => panic!("{backend}: expected BadValue {want:?}, got {other:?}"),
    }
}

/// A status, kind or flag the code does not know, written behind the store's back (an older or
/// newer version, a hand edit), is a typed error naming the column and the value: not a panic,
/// not a silent default, and the row is left as it is. Fixing the row makes it readable again.
#[tokio::test]
async fn unknown_values_in_rows_are_typed_errors_naming_column_and_value() {
    for b in backends().await {
        let store = Store::connect(&b.url).await.unwrap();
        let side = b.side_pool().await;
        let exec = |sql: &'static str| {
            let side = side.clone();
            async move { sqlx::query(sql).execute(&side).await.unwrap() }
        };
        exec(
            "INSERT INTO appointments (id, business_id, resource_id, customer_id, customer_name, \
             customer_phone, start_ms, end_ms, status, channel, conversation_id, request_key, \
             created_at_ms, updated_at_ms) VALUES ('appt_odd', 'biz_escape_tlv', 'room_dubai', \
             NULL, 'Dana', '+972501234567', 1000, 2000, 'archived', 'phone', 'CA1', 'k', 1, 1)",
        )
        .await;
        let e = store.appointment("appt_odd").await.unwrap_err();
        assert!(e.to_string().contains("\"archived\""), "{}: {e}", b.name);
        const APPT: (&str, &str, &str) = ("status", "archived", "an appointment status");
        assert_bad_value(b.name, store.appointment("appt_odd").await, APPT);
        // A list holding that row fails the same way rather than leaving it out unseen.
        let all = store.appointments_for_business("biz_escape_tlv").await;
        assert_bad_value(b.name, all, APPT);
        // The agent's tools see it as a fatal failure (retrying reads the same row again).
        let e = store.appointment("appt_odd").await.unwrap_err();
        assert_eq!(
            kav::providers::ProviderError::from(e).kind(),
            kav::providers::FailureKind::Fatal,
            "{}",
            b.name
        );
        exec("UPDATE appointments SET status = 'cancelled' WHERE id = 'appt_odd'").await;
        let a = store.appointment("appt_odd").await.unwrap().unwrap();
        assert_eq!(a.status, AppointmentStatus::Cancelled, "{}", b.name);
        assert_eq!(a.customer_name, "Dana", "{}", b.name);

        exec(
            "INSERT INTO outbox (id, business_id, kind, payload_json, idempotency_key, status, \
             attempts, next_attempt_at_ms, locked_until_ms, created_at_ms) VALUES ('evt_odd', \
             'biz_escape_tlv', 'appointment.created', '{}', 'odd', 'sent', 0, 0, 0, 1)",
        )
        .await;
        let want = ("status", "sent", "an outbox status");
        assert_bad_value(b.name, store.outbox_by_key("odd").await, want);

        exec(
            "INSERT INTO whatsapp_outbound (id, conversation_id, business_id, recipient, \
             body_json, provider_message_id, status, created_at_ms, updated_at_ms) VALUES \
             ('out_odd', 'wa_1', 'biz_escape_tlv', '972501234567', '{}', 'wamid.odd', 'bounced', \
             1, 1)",
        )
        .await;
        let want = ("status", "bounced", "a WhatsApp delivery status");
        assert_bad_value(b.name, store.whatsapp_outbound("out_odd").await, want);
        // A status webhook for it fails too, rather than treating the unknown state as "accepted".
        let applied = store
            .whatsapp_apply_status("wamid.odd", "delivered", None, None, 2)
            .await;
        assert_bad_value(b.name, applied, want);

        exec(
            "INSERT INTO calls (id, call_sid, stream_sid, account_sid, started_at_ms, \
             parameters_json) VALUES ('c_odd', 'CA-odd', 'MZ', 'AC', 1, '{}')",
        )
        .await;
        exec(
            "INSERT INTO turns (call_id, turn, input_kind, user_text, bot_text, interrupted, at_ms) \
             VALUES ('c_odd', 1, 'typing', 'hi', 'hello', 0, 1)",
        )
        .await;
        let want = ("input_kind", "typing", "a turn input kind");
        assert_bad_value(b.name, store.call_turns("CA-odd").await, want);
        // A 0/1 flag holding 2, and a negative latency mark.
        exec("UPDATE turns SET input_kind = 'speech', interrupted = 2 WHERE call_id = 'c_odd'")
            .await;
        let want = ("interrupted", "2", "0 or 1");
        assert_bad_value(b.name, store.call_turns("CA-odd").await, want);
        exec("UPDATE turns SET interrupted = 1, total_ms = -5 WHERE call_id = 'c_odd'").await;
        let want = ("total_ms", "-5", "a count from 0 to 4294967295");
        assert_bad_value(b.name, store.call_turns("CA-odd").await, want);
        exec("UPDATE turns SET total_ms = 5 WHERE call_id = 'c_odd'").await;
        let t = &store.call_turns("CA-odd").await.unwrap()[0];
        let read = (t.input_kind, t.interrupted, t.marks.total_ms);
        assert_eq!(read, (InputKind::Speech, true, Some(5)), "{}", b.name);

        // A business's scope used to fall back to per-room capacity for any other text.
        exec("UPDATE businesses SET concurrency_scope = 'room' WHERE id = 'biz_escape_tlv'").await;
        let want = (
            "concurrency_scope",
            "room",
            "a concurrency scope (resource or business)",
        );
        assert_bad_value(b.name, store.business("biz_escape_tlv").await, want);
        side.close().await;
        b.cleanup().await;
    }
}

fn appointment(id: &str, start_ms: i64, request_key: &str) -> kav::store::booking::Appointment {
    kav::store::booking::Appointment {
        id: id.into(),
        business_id: "biz_race".into(),
        resource_id: None,
        customer_id: None,
        customer_name: "Noa".into(),
        customer_phone: Some("+972501234567".into()),
        start_ms,
        end_ms: start_ms + 3_600_000,
        status: AppointmentStatus::Booked,
        channel: "whatsapp".into(),
        conversation_id: id.into(),
        request_key: request_key.into(),
        created_at_ms: T0,
    }
}

/// Eight customers ask for the last place at once while other writers (the WhatsApp inbox, the
/// call recorder's kind of traffic) commit beside them: exactly one is booked, the other seven are
/// told it is full, and none meets a database error. On SQLite a read-then-write transaction that
/// began deferred fails at once with "database is locked" when another connection committed
/// after its read (the busy timeout does not apply), so every write transaction begins
/// IMMEDIATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_bookings_for_the_last_place_are_full_not_errors() {
    use kav::store::booking::{CapacityRule, CreateOutcome};
    for b in backends().await {
        let store = Store::connect(&b.url).await.unwrap();
        let n = b.name;
        for round in 0..5i64 {
            let start = T0 + 86_400_000 * (round + 1);
            let mut tasks = Vec::new();
            for i in 0..8 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    store
                        .create_appointment(
                            appointment(
                                &format!("appt_{round}_{i}"),
                                start,
                                &format!("k{round}{i}"),
                            ),
                            CapacityRule::Business { limit: 1 },
                            vec![],
                        )
                        .await
                }));
            }
            for i in 0..4 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let id = format!("msg:{round}:{i}");
                    store
                        .whatsapp_enqueue(&id, "meta", "biz_race", &id, "{}", T0)
                        .await
                        .map(|_| CreateOutcome::Full)?;
                    store.whatsapp_claim(T0 + 1, 10_000, 5).await?;
                    Ok(CreateOutcome::Full)
                }));
            }
            let mut created = 0;
            for t in tasks {
                match t.await.unwrap() {
                    Ok(CreateOutcome::Created(_)) => created += 1,
                    Ok(_) => {}
                    Err(e) => panic!("{n}, round {round}: a racing write failed: {e}"),
                }
            }
            assert_eq!(
                created, 1,
                "{n}, round {round}: one booking for the last place"
            );
        }
        b.cleanup().await;
    }
}
