//! The composition root: the one place that turns `Config` into running parts (providers, the
//! booking agent and runtime, the outbox worker, warm-up). Nothing else in the library imports it.

pub mod warm;

use std::sync::Arc;
use std::time::Instant;

use crate::channels::whatsapp::{graph as whatsapp_graph, inbox as whatsapp};
use crate::config::Config;
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

#[derive(Debug, thiserror::Error)]
pub enum ProviderConfigError {
    #[error("unknown {kind} provider {name:?} (available: {available})")]
    Unknown {
        kind: &'static str,
        name: String,
        available: &'static str,
    },
    #[error(transparent)]
    Distribution(#[from] sim::DistributionError),
}

/// Builds the providers named in `[call]`, once per process. A provider that cannot start is
/// replaced by one that works (with a warning), so the server always comes up.
/// Without a store the booking agents are unavailable (see [`providers_with_store`]).
pub async fn providers_from_config(cfg: &Config) -> Result<Providers, ProviderConfigError> {
    Ok(providers_with_store(cfg, None).await?.0)
}

/// Builds the booking agent (`offline`, or `booking`: the LLM agent when configured) over the
/// store, with the offline WhatsApp sender, and starts the outbox worker.
fn booking_agent(cfg: &Config, store: Store) -> (Arc<dyn Agent>, BookingHandle) {
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
    let (worker_stop, stop_rx) = tokio::sync::watch::channel(false);
    let worker = crate::booking::outbox::spawn_worker(runtime.clone(), stop_rx);
    // `booking` uses the LLM when one is configured: an API key in the environment, or a base URL
    // other than the public OpenAI default (a local server needs no key).
    let key_set = openai::api_key_from_env(&cfg.llm.base_url, |v| std::env::var(v).ok()).is_some();
    let llm_configured =
        key_set || cfg.llm.base_url != crate::config::LlmConfig::default().base_url;
    let agent: Arc<dyn Agent> = match (cfg.call.agent.as_str(), llm_configured) {
        ("booking", true) => match openai::OpenAiChat::from_config(&cfg.llm) {
            Ok(chat) => {
                tracing::info!(base_url = %cfg.llm.base_url, model = %cfg.llm.model, "LLM booking agent (offline dialog as fallback)");
                Arc::new(crate::agent::llm::BookingAgent::new(
                    runtime.clone(),
                    Arc::new(chat),
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, "LLM misconfigured ([llm]); the offline booking dialog answers");
                Arc::new(crate::agent::offline::OfflineBookingAgent::new(
                    runtime.clone(),
                ))
            }
        },
        _ => {
            tracing::info!("offline booking dialog (no LLM)");
            Arc::new(crate::agent::offline::OfflineBookingAgent::new(
                runtime.clone(),
            ))
        }
    };
    (
        agent,
        BookingHandle {
            runtime,
            worker_stop,
            worker,
        },
    )
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
        "simulated" => Arc::new(sim::SimulatedStt::new(lat.clone())),
        "google" => match google::stt_from_config(cfg, google_stats.clone()).await {
            Ok(stt) => Arc::new(stt),
            Err(e) => {
                tracing::warn!(error = %e, "Google STT unavailable; falling back to the simulated STT");
                Arc::new(sim::SimulatedStt::new(lat.clone()))
            }
        },
        "whisper" => whisper_stt(cfg, &lat, &mut metric_sources),
        other => {
            return Err(ProviderConfigError::Unknown {
                kind: "stt",
                name: other.into(),
                available: "google, simulated, whisper",
            });
        }
    };
    let agent: Arc<dyn Agent> = match cfg.call.agent.as_str() {
        "simulated" => Arc::new(sim::SimulatedAgent::new(lat.clone())),
        "booking" | "offline" => match store {
            Some(store) => {
                let (agent, handle) = booking_agent(cfg, store);
                booking = Some(handle);
                agent
            }
            None => {
                tracing::warn!(
                    "the booking agent needs the store; falling back to the simulated agent"
                );
                Arc::new(sim::SimulatedAgent::new(lat.clone()))
            }
        },
        "openai" => match openai::OpenAiChat::from_config(&cfg.llm) {
            Ok(chat) => {
                tracing::info!(base_url = %cfg.llm.base_url, model = %cfg.llm.model, "LLM agent");
                Arc::new(openai::LlmAgent::new(
                    Arc::new(chat),
                    openai::LlmAgentSettings::from_config(&cfg.llm),
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, "LLM misconfigured ([llm]); falling back to the simulated agent");
                Arc::new(sim::SimulatedAgent::new(lat.clone()))
            }
        },
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
            match espeak.check().await {
                Ok(()) => {
                    tracing::info!(
                        warmup_ms = started.elapsed().as_millis() as u64,
                        "espeak-ng TTS ready"
                    );
                    Arc::new(espeak)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "espeak-ng unavailable; falling back to the simulated TTS (tones). Run scripts/setup.sh");
                    Arc::new(sim::SimulatedTts::new(lat.clone()))
                }
            }
        }
        "google" => match google::tts_from_config(cfg, google_stats.clone()).await {
            Ok(tts) => Arc::new(tts),
            Err(e) => {
                tracing::warn!(error = %e, "Google TTS unavailable; falling back to the offline espeak-ng TTS");
                let espeak = espeak::EspeakTts::new(&cfg.espeak);
                if espeak.check().await.is_ok() {
                    Arc::new(espeak)
                } else {
                    tracing::warn!("espeak-ng unavailable too; using the simulated TTS (tones)");
                    Arc::new(sim::SimulatedTts::new(lat.clone()))
                }
            }
        },
        other => {
            return Err(ProviderConfigError::Unknown {
                kind: "tts",
                name: other.into(),
                available: "espeak, google, simulated",
            });
        }
    };
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

/// The local Whisper recogniser, or the simulated one (with a warning) when its models are missing
/// or the binary was built without the `whisper` feature. Models load in `warm()` or on first use.
#[cfg(feature = "whisper")]
fn whisper_stt(
    cfg: &Config,
    lat: &Arc<sim::SimLatencies>,
    metric_sources: &mut Vec<Arc<dyn crate::metrics::MetricsSource>>,
) -> Arc<dyn SpeechToText> {
    match crate::providers::whisper::WhisperStt::new(&cfg.whisper) {
        Ok(stt) => {
            let stt = Arc::new(stt);
            metric_sources.push(stt.clone());
            stt
        }
        Err(e) => {
            tracing::warn!(error = %e, "Whisper STT unavailable; falling back to the simulated STT. Run scripts/fetch-models.sh");
            Arc::new(sim::SimulatedStt::new(lat.clone()))
        }
    }
}

#[cfg(not(feature = "whisper"))]
fn whisper_stt(
    _cfg: &Config,
    lat: &Arc<sim::SimLatencies>,
    _metric_sources: &mut Vec<Arc<dyn crate::metrics::MetricsSource>>,
) -> Arc<dyn SpeechToText> {
    tracing::warn!(
        "stt = \"whisper\" but this binary was built without the `whisper` cargo feature; falling back to the simulated STT (cargo build --features whisper, then scripts/fetch-models.sh)"
    );
    Arc::new(sim::SimulatedStt::new(lat.clone()))
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
    crate::console::Console::new(
        runtime,
        cfg.console.clone(),
        std::env::var("KAV_ADMIN_TOKEN").ok(),
    )
}
