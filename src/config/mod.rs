//! Configuration: `config.toml` (documented defaults) overlaid by `KAV_<SECTION>_<KEY>` environment
//! variables. Secrets (auth tokens, API keys) are read from the environment only, never from files.
//!
//! This file holds `Config` (one field per `[section]`), loading, the environment overrides and
//! their errors; each section's struct and its documented defaults live in the file named after
//! it (`server.rs` also holds `[limits]`, `store.rs` `[retention]`, `console.rs` `[staff_agent]`,
//! `providers.rs` every provider's section). `config.toml` is kept equal to `Config::default()`
//! by a test below.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The engine's sections, owned by `crate::voice::config`.
pub use crate::voice::config::{DtmfConfig, PlayoutConfig, TurnConfig, VadConfig};

mod booking;
mod call;
mod console;
mod providers;
mod server;
mod store;
mod whatsapp;

pub use booking::BookingConfig;
pub use call::CallConfig;
pub use console::{ConsoleConfig, StaffAgentConfig};
pub use providers::{EspeakConfig, GoogleConfig, LlmConfig, SimConfig, WhisperConfig};
pub use server::{LimitsConfig, ServerConfig};
pub use store::{RetentionConfig, StoreConfig};
pub use whatsapp::{WhatsAppConfig, WhatsAppNumber};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("environment variable {var}={value:?} is not a valid {expected}")]
    Env {
        var: String,
        value: String,
        expected: &'static str,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub call: CallConfig,
    pub vad: VadConfig,
    pub turn: TurnConfig,
    pub playout: PlayoutConfig,
    pub dtmf: DtmfConfig,
    pub store: StoreConfig,
    pub sim: SimConfig,
    pub espeak: EspeakConfig,
    pub booking: BookingConfig,
    pub llm: LlmConfig,
    pub whatsapp: WhatsAppConfig,
    pub google: GoogleConfig,
    pub whisper: WhisperConfig,
    pub retention: RetentionConfig,
    pub console: ConsoleConfig,
    pub staff_agent: StaffAgentConfig,
}

/// Short names for the two settings operators reach for first.
const ENV_ALIASES: &[(&str, &str, &str)] = &[
    ("KAV_LISTEN", "server", "listen"),
    ("KAV_PUBLIC_URL", "server", "public_url"),
];

impl Config {
    /// Reads `path` if it exists (a missing file means all defaults), then applies `KAV_*` overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Self::from_toml_and_env(&text, std::env::vars())
    }

    pub fn from_toml_and_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parsed: Config = toml::from_str(text)?;
        let mut table = toml::Table::try_from(&parsed).expect("config serialises to a table");
        for (var, value) in env {
            let Some((section, key)) = env_target(&table, &var) else {
                continue;
            };
            let slot = table
                .get_mut(&section)
                .and_then(|s| s.as_table_mut())
                .and_then(|s| s.get_mut(&key))
                .expect("env_target only names existing keys");
            *slot = parse_like(slot, &var, &value)?;
        }
        Ok(table.try_into()?)
    }

    pub fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
}

/// Maps `KAV_SECTION_KEY` (or an alias) onto an existing `[section] key`.
fn env_target(table: &toml::Table, var: &str) -> Option<(String, String)> {
    if let Some((_, s, k)) = ENV_ALIASES.iter().find(|(name, _, _)| *name == var) {
        return Some((s.to_string(), k.to_string()));
    }
    let rest = var.strip_prefix("KAV_")?.to_ascii_lowercase();
    for (section, values) in table {
        let Some(key) = rest
            .strip_prefix(section.as_str())
            .and_then(|r| r.strip_prefix('_'))
        else {
            continue;
        };
        if values.as_table().is_some_and(|t| t.contains_key(key)) {
            return Some((section.clone(), key.to_string()));
        }
    }
    None
}

fn parse_like(current: &toml::Value, var: &str, value: &str) -> Result<toml::Value, ConfigError> {
    let err = |expected| ConfigError::Env {
        var: var.into(),
        value: value.into(),
        expected,
    };
    Ok(match current {
        toml::Value::Integer(_) => {
            toml::Value::Integer(value.trim().parse().map_err(|_| err("integer"))?)
        }
        toml::Value::Boolean(_) => toml::Value::Boolean(match value.trim() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => return Err(err("boolean")),
        }),
        toml::Value::Float(_) => {
            toml::Value::Float(value.trim().parse().map_err(|_| err("number"))?)
        }
        // A TOML inline array, for lists of tables such as `KAV_WHATSAPP_NUMBERS='[{business_id =
        // "b1", phone_number_id = "123"}]'`.
        toml::Value::Array(_) if value.trim_start().starts_with('[') => {
            let mut wrapped: toml::Table =
                toml::from_str(&format!("v = {value}")).map_err(|_| err("a TOML inline array"))?;
            wrapped
                .remove("v")
                .ok_or_else(|| err("a TOML inline array"))?
        }
        // Lists of words (e.g. `KAV_GOOGLE_PHRASE_HINTS`): comma-separated.
        toml::Value::Array(_) => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| toml::Value::String(v.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(value.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_values_then_env_overrides() {
        let cfg = Config::from_toml_and_env(
            "[vad]\nhangover_ms = 150\n[server]\nlisten = \"0.0.0.0:9000\"\n",
            env(&[
                ("KAV_VAD_MIN_UTTERANCE_MS", "240"),
                ("KAV_TURN_BARGE_IN", "false"),
                ("KAV_PUBLIC_URL", "https://x.test"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.vad.hangover_ms, 150);
        assert_eq!(cfg.vad.min_utterance_ms, 240);
        assert!(!cfg.turn.barge_in);
        assert_eq!(cfg.server.listen, "0.0.0.0:9000");
        assert_eq!(cfg.server.public_url, "https://x.test");
    }

    #[test]
    fn list_keys_take_comma_separated_env_values() {
        let cfg = Config::from_toml_and_env(
            "",
            env(&[
                ("KAV_GOOGLE_PHRASE_HINTS", "תספורת, צבע ,,פן"),
                ("KAV_GOOGLE_STT_ENDPOINT", "http://127.0.0.1:9"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.google.phrase_hints, vec!["תספורת", "צבע", "פן"]);
        assert_eq!(cfg.google.stt_endpoint, "http://127.0.0.1:9");
    }

    #[test]
    fn lists_of_tables_take_an_inline_toml_array_from_the_env() {
        let cfg = Config::from_toml_and_env(
            "",
            env(&[(
                "KAV_WHATSAPP_NUMBERS",
                r#"[{ business_id = "b1", language = "he-IL", phone_number_id = "123" },
                    { business_id = "b2", display_number = "15550001111" }]"#,
            )]),
        )
        .unwrap();
        let numbers = &cfg.whatsapp.numbers;
        assert_eq!(numbers.len(), 2);
        assert_eq!(numbers[0].business_id, "b1");
        assert_eq!(numbers[0].phone_number_id, "123");
        assert_eq!(numbers[1].display_number, "15550001111");
        // Typos are refused as in the file, and broken TOML names the variable.
        for bad in [r#"[{ business = "b1" }]"#, "[{ business_id = }]"] {
            let err = Config::from_toml_and_env("", env(&[("KAV_WHATSAPP_NUMBERS", bad)]));
            assert!(err.is_err(), "{bad}");
        }
        let err =
            Config::from_toml_and_env("", env(&[("KAV_WHATSAPP_NUMBERS", "[{")])).unwrap_err();
        assert!(err.to_string().contains("KAV_WHATSAPP_NUMBERS"), "{err}");
    }

    #[test]
    fn bad_env_value_is_a_clear_error() {
        let err =
            Config::from_toml_and_env("", env(&[("KAV_VAD_HANGOVER_MS", "soon")])).unwrap_err();
        assert!(err.to_string().contains("KAV_VAD_HANGOVER_MS"), "{err}");
    }

    #[test]
    fn unknown_keys_in_file_are_rejected() {
        assert!(Config::from_toml_and_env("[vad]\nhangover = 1\n", env(&[])).is_err());
    }

    #[test]
    fn shipped_config_toml_matches_defaults() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
        assert_eq!(
            Config::from_toml_and_env(&text, env(&[])).unwrap(),
            Config::default()
        );
    }
}
