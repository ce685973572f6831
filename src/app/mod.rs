//! The composition root: the one place that turns `Config` into running parts (providers, the
//! booking agent and runtime, the outbox worker, warm-up). Nothing else in the library imports it.

pub mod retention;
pub mod warm;

use std::sync::Arc;
use std::time::Instant;

use crate::channels::whatsapp::{graph as whatsapp_graph, inbox as whatsapp};
use crate::config::Config;
use crate::providers::keypad::KeypadOnlyStt;
use crate::providers::{self, Agent, SpeechToText, TextToSpeech, espeak, google, openai, sim};
use crate::store::Store;

pub use crate::providers::Providers;

impl crate::voice::session::SessionConfig {
    /// The engine's settings for one call, from the process configuration.
    pub fn from_config(cfg: &Config, stt_format: providers::SttAudioFormat) -> Self {
        Self {
            vad: cfg.vad.clone(),
            turn: cfg.turn.clone(),
            playout: cfg.playout.clone(),
            dtmf: cfg.dtmf.clone(),
            stt_format,
            greeting: cfg.call.greeting.clone(),
            fallback_reply: cfg.call.fallback_reply.clone(),
            history: cfg.booking.history_cap(),
        }
    }
}

/// The booking runtime and its running outbox worker (set when the agent is `booking` or
/// `offline`). The worker runs for the life of the process unless `worker_stop` sends `true`.
pub struct BookingHandle {
    pub runtime: Arc<crate::agent::BookingRuntime>,
    pub worker_stop: tokio::sync::watch::Sender<bool>,
    pub worker: tokio::task::JoinHandle<()>,
}

/// Why the providers could not be built. A provider that is configured but cannot start is an
/// error with the reason: the server never swaps a simulation in for it.
#[derive(Debug, thiserror::Error)]
pub enum ProviderConfigError {
    #[error("unknown {kind} provider {name:?} (available: {available})")]
    Unknown {
        kind: &'static str,
        name: String,
        available: &'static str,
    },
    #[error("{kind} provider {name:?} is configured but cannot start: {reason}")]
    Unavailable {
        kind: &'static str,
        name: String,
        reason: String,
    },
    #[error(
        "agent {name:?} needs the store (the booking agent keeps appointments and dialog state there)"
    )]
    NeedsStore { name: String },
    #[error(transparent)]
    Distribution(#[from] sim::DistributionError),
}

fn unavailable(kind: &'static str, name: &str, reason: impl ToString) -> ProviderConfigError {
    ProviderConfigError::Unavailable {
        kind,
        name: name.into(),
        reason: reason.to_string(),
    }
}

/// What a provider is, for the start-up log: real, offline, or a simulation.
pub fn provider_nature(name: &str) -> &'static str {
    match name {
        "google" => "real (Google Cloud)",
        "whisper" => "real (local Whisper, offline)",
        "espeak" => "real (espeak-ng, offline)",
        "llm-booking" => "real (LLM booking agent; offline dialog when the LLM fails)",
        "offline-booking" => "offline (deterministic booking dialog, no LLM)",
        "keypad-only" => "none: no speech recogniser, calls understand keypad input only",
        _ if name.starts_with("simulated") => "SIMULATED (scripted; for tests and load runs)",
        _ => "other",
    }
}

/// Builds the providers named in `[call]`, once per process, without a store: only agents that
/// need no store (`simulated`) can be built this way (see [`providers_with_store`]).
pub async fn providers_from_config(cfg: &Config) -> Result<Providers, ProviderConfigError> {
    Ok(providers_with_store(cfg, None).await?.0)
}

/// Builds the booking agent (`offline`, or `booking`: the LLM agent when configured) over the
/// store, with the offline WhatsApp sender, and starts the outbox worker.
fn booking_agent(
    cfg: &Config,
    store: Store,
) -> Result<(Arc<dyn Agent>, BookingHandle), ProviderConfigError> {
    // Confirmations go through the Graph API when WHATSAPP_ACCESS_TOKEN is set (one attempt per
    // delivery: the outbox does the retrying), else to the log sender.
    let token = whatsapp::WhatsAppSecrets::from_env()
        .access_token
        .filter(|_| !cfg.whatsapp.mock_sends);
    let sender: Arc<dyn providers::WhatsAppSender> = match token {
        Some(token) => Arc::new(whatsapp_graph::GraphSender::new(
            &cfg.whatsapp.graph_base_url,
            &cfg.whatsapp.api_version,
            &token,
            std::time::Duration::from_millis(cfg.whatsapp.http_timeout_ms),
            cfg.whatsapp.trace_log_pii,
        )),
        None => {
            tracing::info!(
                "WHATSAPP_ACCESS_TOKEN unset or whatsapp.mock_sends on: booking confirmations go to the log sender"
            );
            Arc::new(whatsapp_graph::LogSender::new(false))
        }
    };
    let runtime = crate::agent::BookingRuntime::new(
        store,
        sender,
        crate::agent::system_clock(),
        cfg.booking.clone(),
    );
    // `booking` uses the LLM when one is configured: an API key in the environment, or a base URL
    // other than the public OpenAI default (a local server needs no key).
    let use_llm =
        cfg.call.agent == "openai" || (cfg.call.agent == "booking" && llm_configured(cfg));
    let agent: Arc<dyn Agent> = if use_llm {
        let chat = openai::OpenAiChat::from_config(&cfg.llm)
            .map_err(|e| unavailable("agent", &cfg.call.agent, format!("[llm]: {e}")))?;
        tracing::info!(base_url = %cfg.llm.base_url, model = %cfg.llm.model, "LLM booking agent (offline dialog as fallback)");
        Arc::new(crate::agent::llm::BookingAgent::new(
            runtime.clone(),
            Arc::new(chat),
        ))
    } else {
        if cfg.call.agent == "booking" {
            tracing::info!(
                "agent = \"booking\" with no LLM configured (no API key, default base URL): the offline booking dialog answers"
            );
        }
        Arc::new(crate::agent::offline::OfflineBookingAgent::new(
            runtime.clone(),
        ))
    };
    let (worker_stop, stop_rx) = tokio::sync::watch::channel(false);
    let worker = crate::booking::outbox::spawn_worker(runtime.clone(), stop_rx);
    Ok((
        agent,
        BookingHandle {
            runtime,
            worker_stop,
            worker,
        },
    ))
}

/// [`providers_from_config`] with the store the booking agents need; also returns the booking
/// runtime handle when the agent is `booking` / `offline`.
pub async fn providers_with_store(
    cfg: &Config,
    store: Option<Store>,
) -> Result<(Providers, Option<BookingHandle>), ProviderConfigError> {
    let mut booking = None;
    let lat = Arc::new(sim::SimLatencies::from_config(&cfg.sim)?);
    let mut metric_sources: Vec<Arc<dyn crate::metrics::MetricsSource>> = Vec::new();
    // One set of Google measurements for STT and TTS (see google::GoogleStats).
    let google_stats = Arc::new(google::GoogleStats::default());
    let stt: Arc<dyn SpeechToText> = match cfg.call.stt.as_str() {
        "auto" => auto_stt(cfg, &mut metric_sources),
        "keypad" => Arc::new(KeypadOnlyStt),
        "simulated" => Arc::new(sim::SimulatedStt::new(lat.clone())),
        "google" => Arc::new(
            google::stt_from_config(cfg, google_stats.clone())
                .await
                .map_err(|e| unavailable("stt", "google", e))?,
        ),
        "whisper" => {
            whisper_stt(cfg, &mut metric_sources).map_err(|e| unavailable("stt", "whisper", e))?
        }
        other => {
            return Err(ProviderConfigError::Unknown {
                kind: "stt",
                name: other.into(),
                available: "auto, google, keypad, simulated, whisper",
            });
        }
    };
    let agent: Arc<dyn Agent> = match cfg.call.agent.as_str() {
        "simulated" => Arc::new(sim::SimulatedAgent::new(lat.clone())),
        // `openai` is the booking agent on the LLM, required (`booking` uses it when configured).
        "booking" | "offline" | "openai" => {
            let store = store.ok_or_else(|| ProviderConfigError::NeedsStore {
                name: cfg.call.agent.clone(),
            })?;
            let (agent, handle) = booking_agent(cfg, store)?;
            booking = Some(handle);
            agent
        }
        other => {
            return Err(ProviderConfigError::Unknown {
                kind: "agent",
                name: other.into(),
                available: "openai, simulated, offline, booking",
            });
        }
    };
    let tts: Arc<dyn TextToSpeech> = match cfg.call.tts.as_str() {
        "simulated" => Arc::new(sim::SimulatedTts::new(lat.clone())),
        "espeak" => {
            let espeak = espeak::EspeakTts::new(&cfg.espeak);
            let started = Instant::now();
            espeak
                .check()
                .await
                .map_err(|e| unavailable("tts", "espeak", format!("{e} (run scripts/setup.sh)")))?;
            tracing::info!(
                warmup_ms = started.elapsed().as_millis() as u64,
                "espeak-ng TTS ready"
            );
            Arc::new(espeak)
        }
        "google" => Arc::new(
            google::tts_from_config(cfg, google_stats.clone())
                .await
                .map_err(|e| unavailable("tts", "google", e))?,
        ),
        other => {
            return Err(ProviderConfigError::Unknown {
                kind: "tts",
                name: other.into(),
                available: "espeak, google, simulated",
            });
        }
    };
    for (kind, name) in [
        ("stt", stt.name()),
        ("agent", agent.name()),
        ("tts", tts.name()),
    ] {
        match provider_nature(name) {
            n if n.starts_with("real") || n.starts_with("offline") => {
                tracing::info!(kind, provider = name, nature = n, "provider")
            }
            n => tracing::warn!(kind, provider = name, nature = n, "provider"),
        }
    }
    tracing::info!(
        stt = stt.name(),
        agent = agent.name(),
        tts = tts.name(),
        "providers"
    );
    let google_stats = (stt.name() == "google" || tts.name() == "google").then_some(google_stats);
    Ok((
        Providers {
            stt,
            agent,
            tts,
            google_stats,
            metric_sources,
        },
        booking,
    ))
}

/// `stt = "auto"`: local Whisper when this binary has the `whisper` feature and its models are
/// present, else no recogniser (keypad input only), said loudly at start-up.
fn auto_stt(
    cfg: &Config,
    metric_sources: &mut Vec<Arc<dyn crate::metrics::MetricsSource>>,
) -> Arc<dyn SpeechToText> {
    match whisper_stt(cfg, metric_sources) {
        Ok(stt) => stt,
        Err(reason) => {
            tracing::warn!(
                %reason,
                "stt = \"auto\": no speech recogniser available. Calls will understand KEYPAD INPUT ONLY \
                 (set call.stt = \"google\", or build with --features whisper and run scripts/fetch-models.sh)"
            );
            Arc::new(KeypadOnlyStt)
        }
    }
}

/// The local Whisper recogniser. Models load in `warm()` or on first use; missing models or a
/// binary built without the `whisper` feature are an error.
#[cfg(feature = "whisper")]
fn whisper_stt(
    cfg: &Config,
    metric_sources: &mut Vec<Arc<dyn crate::metrics::MetricsSource>>,
) -> Result<Arc<dyn SpeechToText>, ProviderConfigError> {
    let stt = crate::providers::whisper::WhisperStt::new(&cfg.whisper).map_err(|e| {
        unavailable(
            "stt",
            "whisper",
            format!("{e} (run scripts/fetch-models.sh)"),
        )
    })?;
    let stt = Arc::new(stt);
    metric_sources.push(stt.clone());
    Ok(stt)
}

#[cfg(not(feature = "whisper"))]
fn whisper_stt(
    _cfg: &Config,
    _metric_sources: &mut Vec<Arc<dyn crate::metrics::MetricsSource>>,
) -> Result<Arc<dyn SpeechToText>, ProviderConfigError> {
    Err(unavailable(
        "stt",
        "whisper",
        "this binary was built without the `whisper` cargo feature (cargo build --features whisper, then scripts/fetch-models.sh)",
    ))
}

/// The operator console over the store. It shares the booking agent's runtime (settings cache,
/// clock, sender) when the agent is `booking`/`offline`; otherwise it gets a runtime of its own on
/// the same store, whose confirmations go to the log sender. `KAV_ADMIN_TOKEN` (environment) is
/// the platform-admin bearer token.
pub fn console(
    cfg: &Config,
    store: Store,
    booking: Option<&BookingHandle>,
) -> Arc<crate::console::Console> {
    let runtime = match booking {
        Some(handle) => handle.runtime.clone(),
        None => crate::agent::BookingRuntime::new(
            store,
            Arc::new(whatsapp_graph::LogSender::new(false)),
            crate::agent::system_clock(),
            cfg.booking.clone(),
        ),
    };
    let console = crate::console::Console::new(
        runtime.clone(),
        cfg.console.clone(),
        std::env::var("KAV_ADMIN_TOKEN").ok(),
    );
    // The staff assistant: the LLM when one is configured (offline reader as fallback), else
    // the offline reader.
    let model: Option<Arc<dyn crate::providers::ChatModel>> = if llm_configured(cfg) {
        match openai::OpenAiChat::from_config(&cfg.llm) {
            Ok(chat) => Some(Arc::new(chat)),
            Err(e) => {
                tracing::warn!(error = %e, "[llm] unusable for the staff assistant: offline commands only");
                None
            }
        }
    } else {
        None
    };
    let staff = crate::staff::agent::StaffAgent::new(runtime, model, cfg.staff_agent.clone());
    tracing::info!(
        mode = staff.mode(),
        "staff assistant at /console/b/{{business}}/staff"
    );
    console.set_staff_agent(staff);
    console
}

/// `booking` and the staff assistant use the LLM when one is configured: an API key in the
/// environment, or a base URL other than the public OpenAI default (a local server needs no key).
fn llm_configured(cfg: &Config) -> bool {
    let key_set = openai::api_key_from_env(&cfg.llm.base_url, |v| std::env::var(v).ok()).is_some();
    key_set || cfg.llm.base_url != crate::config::LlmConfig::default().base_url
}
