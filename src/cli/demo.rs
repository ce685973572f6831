//! `kav demo`: a self-contained server on a fresh SQLite database and one simulated call that
//! books through the real booking agent (with a barge-in and keypad entry), then the stored
//! appointment and its pending WhatsApp confirmation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};

use kav::caller::{self, CallOptions, Step};
use kav::config::Config;
use kav::server;
use kav::store::Store;

use super::serve::build_state;
use super::{print_caller_report, print_turns, samples_dir};

/// The demo's booking request: tomorrow at a time the sample business is open (14:00, or 20:00
/// when tomorrow is Saturday, when it opens at 19:00), in its timezone.
fn demo_request() -> Result<String> {
    let tomorrow = jiff::Zoned::now()
        .in_tz("Asia/Jerusalem")?
        .date()
        .tomorrow()?;
    let at = if tomorrow.weekday() == jiff::civil::Weekday::Saturday {
        "8 pm"
    } else {
        "2 pm"
    };
    Ok(format!(
        "Hi, I would like to book the Dubai room for tomorrow at {at}."
    ))
}

/// The demo call: a booking through the booking agent, with a barge-in and the number typed on
/// the keypad (caller id withheld). Recorded samples where they say the words; otherwise
/// speech-shaped noise, and the simulated recogniser reports the script's transcript.
fn demo_steps(request: String) -> Vec<Step> {
    let speech = |ms: u64| Arc::new(caller::synthetic_speech(Duration::from_millis(ms)));
    let wait = || Step::WaitForBot {
        max: Duration::from_secs(20),
    };
    let thanks = kav::providers::audio_file::load_mulaw_8k(samples_dir().join("thanks_en.wav"))
        .map(Arc::new)
        .unwrap_or_else(|_| speech(1200));
    vec![
        Step::WaitForBot {
            max: Duration::from_secs(10),
        }, // the greeting
        Step::Say {
            audio: speech(2500),
            transcript: request,
        },
        // Talks over the agent's question once 600 ms of it has played.
        Step::BargeIn {
            after: Duration::from_millis(600),
            audio: speech(1200),
            transcript: "Sorry, my name is Dana.".into(),
        },
        wait(),
        Step::Pause(Duration::from_millis(300)),
        Step::Keys {
            digits: "0501234567#".into(),
            gap: Duration::from_millis(150),
        },
        wait(),
        Step::Pause(Duration::from_millis(300)),
        Step::Say {
            audio: speech(600),
            transcript: "Yes, please.".into(),
        },
        wait(),
        Step::Pause(Duration::from_millis(300)),
        Step::Say {
            audio: thanks,
            transcript: "Thank you, goodbye.".into(),
        },
        wait(),
    ]
}

/// Prints the call's appointment as stored and its WhatsApp confirmation in the outbox; true when
/// the call booked one.
async fn print_booking(store: &Store, business: &str, call_sid: &str) -> Result<bool> {
    let appts: Vec<_> = store
        .appointments_for_business(business)
        .await?
        .into_iter()
        .filter(|a| a.conversation_id == call_sid)
        .collect();
    println!("\ndatabase: appointments booked on this call");
    if appts.is_empty() {
        println!("  (none)");
    }
    for a in &appts {
        let start = jiff::Timestamp::from_millisecond(a.start_ms)?.in_tz("Asia/Jerusalem")?;
        println!(
            "  {}  {}  room {}  name {}  phone {}  status {}",
            a.id,
            start.strftime("%Y-%m-%d %H:%M %Z"),
            a.resource_id.as_deref().unwrap_or("-"),
            a.customer_name,
            a.customer_phone.as_deref().unwrap_or("-"),
            a.status
        );
        match store.outbox_by_key(&format!("confirm:{}", a.id)).await? {
            Some(row) => println!(
                "  outbox: {} {} status {} attempts {}{}",
                row.kind,
                row.idempotency_key,
                row.status,
                row.attempts,
                match row.result.as_deref() {
                    Some(r) if r.starts_with("log-") => format!(
                        " (to the log sender {r}: no WhatsApp account configured, nothing reached a phone)"
                    ),
                    Some(r) => format!(" (message id {r})"),
                    None => String::new(),
                }
            ),
            None => println!("  outbox: no WhatsApp confirmation queued"),
        }
    }
    Ok(!appts.is_empty())
}

pub(crate) async fn demo(mut cfg: Config, save_audio: Option<PathBuf>) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("kav-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    cfg.store.url = format!("sqlite://{}", dir.join("demo.db").display());
    cfg.call.language = "en-US".into();
    // The caller is simulated: the recogniser reports the script's transcripts. The agent is the
    // real booking agent (`[call] agent`, default `booking`: the LLM when configured, else the
    // offline dialog) over a fresh SQLite database.
    cfg.call.stt = "simulated".into();
    if cfg.call.greeting.is_empty() {
        cfg.call.greeting = "Hello, you have reached the studio. How can I help?".into();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let lead = cfg.playout.lead_frames;
    let business = cfg.booking.default_business.clone();
    let (state, _writer) = build_state(cfg).await?;
    println!(
        "Kav demo: server on http://{addr} (providers: stt={}, agent={}, tts={})",
        state.deps.stt.name(),
        state.deps.agent.name(),
        state.deps.tts.name()
    );
    let store = state.store.clone();
    let recorder = state.deps.recorder.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, state, async move {
        let _ = stop_rx.await;
    }));

    let opts = CallOptions {
        server: format!("http://{addr}"),
        // Caller id withheld: the agent asks for the number, typed on the keypad.
        from: String::new(),
        to: "+97235550100".into(),
        record_bot_audio: save_audio.is_some(),
        lead_frames: lead,
        max_duration: Duration::from_secs(120),
        ..CallOptions::default()
    };
    println!(
        "placing a simulated call: booking request, barge-in, keypad number, confirmation, goodbye …"
    );
    let report = caller::run_call(&opts, demo_steps(demo_request()?)).await?;
    if let Some(r) = &recorder {
        r.flush().await;
    }
    let turns = match &store {
        Some(store) => store.call_turns(&opts.call_sid).await?,
        None => Vec::new(),
    };
    let json: Vec<serde_json::Value> = turns
        .iter()
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect();
    print_turns(&json);
    print_caller_report(&report);
    let booked = match &store {
        Some(store) => print_booking(store, &business, &opts.call_sid).await?,
        None => false,
    };
    if let Some(path) = save_audio {
        kav::providers::audio_file::save_wav_mulaw_8k(&path, &report.bot_audio)?;
        println!("bot audio saved to {}", path.display());
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);

    let interrupted = json
        .iter()
        .filter(|t| t.get("interrupted").and_then(|x| x.as_bool()) == Some(true))
        .count();
    let digits = json
        .iter()
        .filter(|t| t.get("input_kind").and_then(|x| x.as_str()) == Some("digits"))
        .count();
    if json.len() < 4 || interrupted == 0 || digits == 0 || report.clears == 0 || !booked {
        bail!(
            "demo conversation incomplete: {} turns, {} interrupted, {} keypad turns, {} clears, booked: {booked}",
            json.len(),
            interrupted,
            digits,
            report.clears
        );
    }
    println!(
        "demo ok: {} turns, barge-in honoured, keypad number captured, appointment booked",
        json.len()
    );
    Ok(())
}
