//! The subcommands' bodies, compiled only into the `kav` binary (`mod cli;` in `main.rs`), the
//! only code that uses `anyhow`. `main.rs` parses the arguments and dispatches here; this module
//! holds what several subcommands share: tracing set-up, the samples directory and the printed
//! call report.

use std::path::PathBuf;

use kav::caller;

pub(crate) mod admin;
pub(crate) mod call;
pub(crate) mod demo;
pub(crate) mod loadgen;
pub(crate) mod replay;
pub(crate) mod serve;
pub(crate) mod transcribe;

pub(crate) fn init_tracing(default: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

pub(crate) fn samples_dir() -> PathBuf {
    let here = PathBuf::from("audio-samples");
    if here.is_dir() {
        here
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("audio-samples")
    }
}

pub(crate) fn print_caller_report(r: &caller::CallReport) {
    let ms = |v: &u64| format!("{:.0}", *v as f64 / 1000.0);
    println!(
        "caller: {} bot frames heard, {} clears, barge-in reaction {} ms, speech end → bot audio {} ms, underruns {}",
        r.frames_received,
        r.clears,
        r.barge_in_reaction_us
            .iter()
            .map(ms)
            .collect::<Vec<_>>()
            .join(", "),
        r.response_us.iter().map(ms).collect::<Vec<_>>().join(", "),
        r.underruns
    );
}

pub(crate) fn print_turns(turns: &[serde_json::Value]) {
    let s = |v: &serde_json::Value, k: &str| {
        v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string()
    };
    let n = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|x| x.as_i64())
            .map(|x| x.to_string())
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "\n{:<4} {:<8} {:<4} {:>7} {:>7} {:>7} {:>7} {:>7}  conversation",
        "turn", "input", "cut", "partial", "final", "ai", "tts", "total"
    );
    for t in turns {
        let cut = if t
            .get("interrupted")
            .and_then(|x| x.as_bool())
            .unwrap_or(false)
        {
            "yes"
        } else {
            ""
        };
        println!(
            "{:<4} {:<8} {:<4} {:>7} {:>7} {:>7} {:>7} {:>7}  caller: {}",
            n(t, "turn"),
            s(t, "input_kind"),
            cut,
            n(t, "stt_first_partial_ms"),
            n(t, "stt_final_ms"),
            n(t, "ai_latency_ms"),
            n(t, "tts_ready_ms"),
            n(t, "total_ms"),
            s(t, "user_text"),
        );
        println!("{:<53}  bot:    {}", "", s(t, "bot_text"));
    }
    println!("(latency marks in ms; see README \"Latency marks\")\n");
}
