//! The understanding corpus: multi-turn conversations in Hebrew and English (customer wording,
//! typos, no punctuation, digits and words, mixed languages) run through the offline booking
//! agent against a real SQLite store, each with expected outcomes (booked at the right slot, the
//! right question asked, the refusal's reason, no false claim, Hebrew only in Hebrew replies).
//!
//! Data: `tests/data/understanding_corpus.txt` (format documented at its top). Safety (no
//! claim of a booking, cancellation or move that the store does not show) is asserted for every
//! conversation; the other expectations give the pass rate printed by
//! `cargo test --test understanding_corpus -- --nocapture`, which must not fall below `FLOOR`.
//! Every phone reply must stay within `PHONE_MAX_WORDS`. `KAV_CORPUS_TRACE=1` prints every turn.

use std::collections::BTreeMap;
use std::sync::Arc;

use kav::agent::BookingRuntime;
use kav::agent::offline::OfflineBookingAgent;
use kav::agent::tools;
use kav::config::BookingConfig;
use kav::providers::{Agent, AgentEvent, AgentRequest, CallContext, Channel, Message, Role};
use kav::store::Store;
use kav::testing::clock::ManualClock;
use kav::testing::switchable_sender::SwitchableSender;
use serde_json::json;

const BUSINESS: &str = "biz_escape_tlv";
const CORPUS: &str = include_str!("data/understanding_corpus.txt");
/// Longest reply on the phone, in words (every reply, not only the first).
const PHONE_MAX_WORDS: usize = 24;
/// Conversations that must pass (raise it as understanding improves; never lower it to hide a
/// regression).
const FLOOR: usize = 128;

struct Scenario {
    name: String,
    language: String,
    phone: Option<String>,
    channel: Channel,
    setup: Vec<String>,
    turns: Vec<(String, Vec<String>)>,
    /// `~ known REASON`: a known failure, counted as failed in the rate, kept in the corpus.
    known: Option<String>,
}

fn parse_corpus() -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    for line in CORPUS.lines() {
        let line = line.trim_end();
        if let Some(head) = line.strip_prefix("=== ") {
            let cols: Vec<&str> = head.split('|').map(str::trim).collect();
            out.push(Scenario {
                name: cols[0].into(),
                language: cols[1].into(),
                phone: Some(cols[2]).filter(|p| *p != "-").map(str::to_string),
                channel: if cols[3] == "whatsapp" {
                    Channel::Whatsapp
                } else {
                    Channel::Phone
                },
                setup: Vec::new(),
                turns: Vec::new(),
                known: None,
            });
        } else if let Some(s) = out.last_mut() {
            if let Some(x) = line.strip_prefix("~ known ") {
                s.known = Some(x.into());
            } else if let Some(x) = line.strip_prefix("! ") {
                s.setup.push(x.into());
            } else if let Some(x) = line.strip_prefix("> ") {
                s.turns.push((x.into(), Vec::new()));
            } else if let Some(x) = line.strip_prefix("? ")
                && let Some(turn) = s.turns.last_mut()
            {
                turn.1.push(x.into());
            }
        }
    }
    out
}

fn request(s: &Scenario, sid: &str, history: Vec<Message>, digits: bool) -> AgentRequest {
    let mut parameters = BTreeMap::new();
    if let Some(p) = &s.phone {
        parameters.insert("From".to_string(), p.clone());
    }
    parameters.insert("To".to_string(), "+97235550100".to_string());
    AgentRequest {
        channel: s.channel,
        call: CallContext {
            call_sid: sid.into(),
            stream_sid: "MZ1".into(),
            language: s.language.clone(),
            parameters,
        },
        turn: history.iter().filter(|m| m.role == Role::User).count() as u32,
        history,
        digits,
    }
}

fn local_start(rt: &BookingRuntime, ms: i64) -> String {
    let z = jiff::Timestamp::from_millisecond(ms)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Jerusalem").unwrap());
    let _ = rt;
    z.strftime("%Y-%m-%dT%H:%M").to_string()
}

/// Runs one conversation; returns the failed expectations, the safety violations and the phone
/// replies over `PHONE_MAX_WORDS`.
async fn run(s: &Scenario) -> (Vec<String>, Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kav.db").display());
    let store = Store::connect(&url).await.unwrap();
    let clock = ManualClock::monday_noon();
    let sender = Arc::new(SwitchableSender::new());
    let rt = BookingRuntime::new(
        store.clone(),
        sender,
        clock.clock(),
        BookingConfig::default(),
    );
    let sid = format!("CA_{}", s.name.replace(' ', "_"));
    for setup in &s.setup {
        let (kind, rest) = setup.split_once(' ').unwrap();
        match kind {
            "book" => {
                let parts: Vec<&str> = rest.split('|').map(str::trim).collect();
                let (start, room, name) = (parts[0], parts[1], parts[2]);
                let ctx = rt
                    .turn_context(&request(s, "CA_earlier", Vec::new(), false))
                    .await
                    .unwrap();
                let out = ctx
                    .call(
                        tools::CREATE,
                        &json!({"start_iso": start, "resource": room, "customer_name": name})
                            .to_string(),
                    )
                    .await;
                assert!(out.ok, "{}: setup {setup}: {:?}", s.name, out.value);
            }
            "customer" => {
                store
                    .upsert_customer(
                        BUSINESS,
                        s.phone.as_deref().unwrap(),
                        Some(rest),
                        "phone",
                        "lead",
                        clock.now_ms(),
                    )
                    .await
                    .unwrap();
            }
            other => panic!("unknown setup {other}"),
        }
    }
    let agent = OfflineBookingAgent::new(rt.clone());
    let mut history = Vec::new();
    let mut failed = Vec::new();
    let mut unsafe_claims = Vec::new();
    let mut too_long = Vec::new();
    for (i, (said, expects)) in s.turns.iter().enumerate() {
        let (text, digits) = match said.strip_prefix('#') {
            Some(d) => (d.to_string(), true),
            None => (said.clone(), false),
        };
        history.push(Message {
            role: Role::User,
            text: text.clone(),
            interrupted: false,
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        agent
            .respond(request(s, &sid, history.clone(), digits), tx)
            .await
            .unwrap();
        let mut reply = String::new();
        while let Ok(ev) = rx.try_recv() {
            if let AgentEvent::TextDelta(t) = ev {
                reply.push_str(&t);
            }
        }
        history.push(Message {
            role: Role::Assistant,
            text: reply.clone(),
            interrupted: false,
        });
        let all = store.appointments_for_business(BUSINESS).await.unwrap();
        let mine: Vec<_> = all.iter().filter(|a| a.conversation_id == sid).collect();
        let booked_here: Vec<String> = mine
            .iter()
            .filter(|a| a.status == kav::store::booking::AppointmentStatus::Booked)
            .map(|a| local_start(&rt, a.start_ms))
            .collect();
        let upcoming = match &s.phone {
            Some(p) => store
                .appointments_for_phone(BUSINESS, p, clock.now_ms())
                .await
                .unwrap()
                .len(),
            None => 0,
        };
        // Safety: a claim of having booked needs a booking made in this conversation.
        let lower = reply.to_lowercase();
        if (lower.contains("you're booked") || reply.contains("קבעתי לך")) && booked_here.is_empty()
        {
            unsafe_claims.push(format!("turn {i}: claims a booking: {reply:?}"));
        }
        let ctx = format!("turn {} {said:?} → {reply:?}", i + 1);
        if std::env::var_os("KAV_CORPUS_TRACE").is_some() {
            println!("[{}] {ctx}", s.name);
        }
        let words = reply.split_whitespace().count();
        if s.channel == Channel::Phone && words > PHONE_MAX_WORDS {
            too_long.push(format!("{ctx}: {words} words"));
        }
        for e in expects {
            let (kind, arg) = e.split_once(' ').unwrap_or((e.as_str(), ""));
            let ok = match kind {
                "has" => reply.contains(arg),
                "not" => !reply.contains(arg),
                "any" => arg.split('|').any(|a| reply.contains(a)),
                "hebrew" => !reply.chars().any(|c| c.is_ascii_alphabetic()),
                "words<=" => reply.split_whitespace().count() <= arg.trim().parse().unwrap(),
                "booked" => booked_here.iter().any(|b| b == arg),
                "nobooking" => booked_here.is_empty(),
                "mine" => upcoming == arg.trim().parse::<usize>().unwrap(),
                other => panic!("unknown expectation {other}"),
            };
            if !ok {
                failed.push(format!("{ctx}: expected {e}"));
            }
        }
    }
    (failed, unsafe_claims, too_long)
}

#[tokio::test]
async fn understanding_corpus() {
    let scenarios = parse_corpus();
    assert!(scenarios.len() >= 40, "{} conversations", scenarios.len());
    let (mut passed, mut report, mut unsafe_all) = (0, Vec::new(), Vec::new());
    let (mut too_long_all, mut known_now_pass, mut known) = (Vec::new(), Vec::new(), 0);
    let (mut he, mut en) = (0, 0);
    for s in &scenarios {
        if s.language.starts_with("he") {
            he += 1;
        } else {
            en += 1;
        }
        let (failed, unsafe_claims, too_long) = run(s).await;
        match (&s.known, failed.is_empty()) {
            (None, true) => passed += 1,
            (None, false) => report.push(format!("✗ {}\n    {}", s.name, failed.join("\n    "))),
            // A known failure stays counted as failed until its mark is removed.
            (Some(why), false) => {
                known += 1;
                report.push(format!(
                    "✗ {} (known: {why})\n    {}",
                    s.name,
                    failed.join("\n    ")
                ));
            }
            (Some(_), true) => known_now_pass.push(s.name.clone()),
        }
        too_long_all.extend(too_long.into_iter().map(|t| format!("{}: {t}", s.name)));
        unsafe_all.extend(
            unsafe_claims
                .into_iter()
                .map(|u| format!("{}: {u}", s.name)),
        );
    }
    println!(
        "understanding corpus: {passed}/{} conversations pass ({he} Hebrew, {en} English; \
         {known} known failures)",
        scenarios.len()
    );
    for r in &report {
        println!("{r}");
    }
    assert!(
        unsafe_all.is_empty(),
        "false claims:\n{}",
        unsafe_all.join("\n")
    );
    assert!(
        too_long_all.is_empty(),
        "phone replies over {PHONE_MAX_WORDS} words:\n{}",
        too_long_all.join("\n")
    );
    assert!(
        known_now_pass.is_empty(),
        "marked as known failures but pass now (remove the mark): {known_now_pass:?}"
    );
    assert!(
        passed >= FLOOR,
        "{passed}/{} pass, floor {FLOOR}:\n{}",
        scenarios.len(),
        report.join("\n")
    );
}
