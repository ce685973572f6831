//! The understanding corpus: multi-turn conversations in Hebrew and English (customer wording,
//! typos, no punctuation, digits and words, mixed languages) run through the offline booking
//! agent against a real SQLite store, each with expected outcomes (booked at the right slot, the
//! right question asked, the refusal's reason, no false claim, Hebrew only in Hebrew replies).
//!
//! Data: `tests/data/understanding_corpus.txt` (format documented at its top). Safety (no
//! claim of a booking, cancellation or move that the store does not show) is asserted for every
//! conversation; the other expectations give the pass rate printed by
//! `cargo test --test understanding_corpus -- --nocapture`, which must not fall below `FLOOR`.

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
/// Conversations that must pass (raise it as understanding improves; never lower it to hide a
/// regression).
const FLOOR: usize = 68;

struct Scenario {
    name: String,
    language: String,
    phone: Option<String>,
    channel: Channel,
    setup: Vec<String>,
    turns: Vec<(String, Vec<String>)>,
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
            });
        } else if let Some(s) = out.last_mut() {
            if let Some(x) = line.strip_prefix("! ") {
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

/// Runs one conversation; returns the failed expectations and the safety violations.
async fn run(s: &Scenario) -> (Vec<String>, Vec<String>) {
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
            .filter(|a| a.status == "booked")
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
    (failed, unsafe_claims)
}

#[tokio::test]
async fn understanding_corpus() {
    let scenarios = parse_corpus();
    assert!(scenarios.len() >= 40, "{} conversations", scenarios.len());
    let (mut passed, mut report, mut unsafe_all) = (0, Vec::new(), Vec::new());
    let (mut he, mut en) = (0, 0);
    for s in &scenarios {
        if s.language.starts_with("he") {
            he += 1;
        } else {
            en += 1;
        }
        let (failed, unsafe_claims) = run(s).await;
        if failed.is_empty() {
            passed += 1;
        } else {
            report.push(format!("✗ {}\n    {}", s.name, failed.join("\n    ")));
        }
        unsafe_all.extend(
            unsafe_claims
                .into_iter()
                .map(|u| format!("{}: {u}", s.name)),
        );
    }
    println!(
        "understanding corpus: {passed}/{} conversations pass ({he} Hebrew, {en} English)",
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
        passed >= FLOOR,
        "{passed}/{} pass, floor {FLOOR}:\n{}",
        scenarios.len(),
        report.join("\n")
    );
}
