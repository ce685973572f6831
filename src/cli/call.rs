//! `kav call`: one simulated Twilio caller against a running server (the demo script, or the
//! `--say`/`--keys` steps given), then the server's turn table and the caller's report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use kav::caller::{self, CallOptions, Step};
use kav::config::Config;

use super::{print_caller_report, print_turns, samples_dir};

/// Runs one call and prints what the server recorded.
pub(crate) async fn run(
    cfg: &Config,
    server: String,
    says: Vec<String>,
    keys: Option<String>,
    save_audio: Option<PathBuf>,
    rtt: u64,
    jitter: u64,
) -> Result<()> {
    let steps = if says.is_empty() && keys.is_none() {
        caller::demo_script(&samples_dir())
    } else {
        let mut steps = Vec::new();
        for s in &says {
            let (file, text) = s.split_once('=').context("--say takes FILE=TEXT")?;
            let audio = kav::providers::audio_file::load_mulaw_8k(std::path::Path::new(file))?;
            steps.push(Step::Say {
                audio: Arc::new(audio),
                transcript: text.to_string(),
            });
            steps.push(Step::WaitForBot {
                max: Duration::from_secs(30),
            });
        }
        if let Some(k) = keys {
            steps.push(Step::Keys {
                digits: k,
                gap: Duration::from_millis(150),
            });
            steps.push(Step::WaitForBot {
                max: Duration::from_secs(30),
            });
        }
        steps
    };
    let opts = CallOptions {
        server: server.clone(),
        auth_token: std::env::var("TWILIO_AUTH_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        record_bot_audio: save_audio.is_some(),
        lead_frames: cfg.playout.lead_frames,
        rtt: Duration::from_millis(rtt),
        jitter: Duration::from_millis(jitter),
        ..CallOptions::default()
    };
    let report = caller::run_call(&opts, steps).await?;
    if let Some(path) = save_audio {
        kav::providers::audio_file::save_wav_mulaw_8k(&path, &report.bot_audio)?;
        println!("bot audio saved to {}", path.display());
    }
    let turns = operator_get(&format!(
        "{}/api/calls/{}/turns",
        server.trim_end_matches('/'),
        opts.call_sid
    ))
    .await;
    match turns {
        Ok(json) => {
            print_turns(&serde_json::from_str::<Vec<serde_json::Value>>(&json).unwrap_or_default())
        }
        Err(e) => println!("(turn table unavailable: {e})"),
    }
    print_caller_report(&report);
    Ok(())
}

/// GET on the operator API with `Authorization: Bearer` from `KAV_API_TOKEN` (an account's token)
/// or `KAV_ADMIN_TOKEN`; the body, or why not.
async fn operator_get(url: &str) -> Result<String, String> {
    let token = ["KAV_API_TOKEN", "KAV_ADMIN_TOKEN"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|t| !t.is_empty()));
    let mut request = reqwest::Client::new().get(url);
    match token {
        Some(token) => request = request.bearer_auth(token),
        None => return Err("set KAV_API_TOKEN or KAV_ADMIN_TOKEN to read the turn API".into()),
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {}", body.trim()))
    }
}
