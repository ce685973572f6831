//! Async shells: the per-call driver that runs the sans-IO session, and provider implementations.

pub mod audio_file;
pub mod call;
pub mod espeak;
pub mod providers;
pub mod sim;
#[cfg(feature = "whisper")]
pub mod whisper;

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use providers::{Agent, SpeechToText, TextToSpeech};

pub struct Providers {
    pub stt: Arc<dyn SpeechToText>,
    pub agent: Arc<dyn Agent>,
    pub tts: Arc<dyn TextToSpeech>,
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
pub async fn providers_from_config(cfg: &Config) -> Result<Providers, ProviderConfigError> {
    let lat = Arc::new(sim::SimLatencies::from_config(&cfg.sim)?);
    let stt: Arc<dyn SpeechToText> = match cfg.call.stt.as_str() {
        "simulated" => Arc::new(sim::SimulatedStt::new(lat.clone())),
        "whisper" => whisper_stt(cfg, &lat),
        other => {
            return Err(ProviderConfigError::Unknown {
                kind: "stt",
                name: other.into(),
                available: "simulated, whisper",
            });
        }
    };
    let agent: Arc<dyn Agent> = match cfg.call.agent.as_str() {
        "simulated" => Arc::new(sim::SimulatedAgent::new(lat.clone())),
        other => {
            return Err(ProviderConfigError::Unknown {
                kind: "agent",
                name: other.into(),
                available: "simulated",
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
        other => {
            return Err(ProviderConfigError::Unknown {
                kind: "tts",
                name: other.into(),
                available: "espeak, simulated",
            });
        }
    };
    tracing::info!(
        stt = stt.name(),
        agent = agent.name(),
        tts = tts.name(),
        "providers"
    );
    Ok(Providers { stt, agent, tts })
}

/// The local Whisper recogniser, or the simulated one (with a warning) when its models are missing
/// or the binary was built without the `whisper` feature. Models load in `warm()` or on first use.
#[cfg(feature = "whisper")]
fn whisper_stt(cfg: &Config, lat: &Arc<sim::SimLatencies>) -> Arc<dyn SpeechToText> {
    match whisper::WhisperStt::new(&cfg.whisper) {
        Ok(stt) => Arc::new(stt),
        Err(e) => {
            tracing::warn!(error = %e, "Whisper STT unavailable; falling back to the simulated STT. Run scripts/fetch-models.sh");
            Arc::new(sim::SimulatedStt::new(lat.clone()))
        }
    }
}

#[cfg(not(feature = "whisper"))]
fn whisper_stt(_cfg: &Config, lat: &Arc<sim::SimLatencies>) -> Arc<dyn SpeechToText> {
    tracing::warn!(
        "stt = \"whisper\" but this binary was built without the `whisper` cargo feature; falling back to the simulated STT (cargo build --features whisper, then scripts/fetch-models.sh)"
    );
    Arc::new(sim::SimulatedStt::new(lat.clone()))
}
