//! Configuration: `config.toml` (documented defaults) overlaid by `KAV_<SECTION>_<KEY>` environment
//! variables. Secrets (auth tokens, API keys) are read from the environment only, never from files.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The engine's sections, owned by `crate::voice::config`.
pub use crate::voice::config::{DtmfConfig, PlayoutConfig, TurnConfig, VadConfig};

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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address `kav serve` listens on (also `KAV_LISTEN`, `--listen`).
    pub listen: String,
    /// Public base URL Twilio reaches us at, e.g. `https://kav.example.com` (also `KAV_PUBLIC_URL`,
    /// `--public-url`). Empty: derived from the request's Host header (fine on loopback only).
    pub public_url: String,
    /// Largest WebSocket message accepted from Twilio; larger ones end that call's stream.
    pub max_message_bytes: usize,
    /// Outbound WebSocket messages queued per call before further ones are dropped and counted.
    pub ws_send_queue: usize,
    /// A call whose outbound queue stays full this long is a slow consumer and is ended.
    pub slow_consumer_ms: u64,
    /// On shutdown, live calls get this long to finish before they are closed.
    pub shutdown_grace_ms: u64,
    /// A call that sends no `start` within this long after connecting is closed.
    pub start_timeout_ms: u64,
    /// Serve `/metrics` on this separate address (e.g. an internal interface) instead of `listen`.
    /// Empty: `/metrics` is on `listen`.
    pub metrics_listen: String,
}

/// The operator console (`/console`, issue 12): sessions and sign-in limits. Accounts are made
/// with `kav admin create-user`; `KAV_ADMIN_TOKEN` (environment) is a platform-admin bearer token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// A browser session ends this long after sign-in.
    pub session_ttl_min: u64,
    /// Sign-in attempts per minute from one client IP (also the burst); 0 = no limit.
    pub login_per_min_ip: u32,
    /// Sign-in attempts per minute at one account (also the burst); 0 = no limit.
    pub login_per_min_account: u32,
    /// Mark the session cookie `Secure` (set it when the console is served over HTTPS).
    pub secure_cookie: bool,
    /// Largest form or JSON body a console request may send (documents included).
    pub max_body_bytes: usize,
    /// Ops view: live-call event streams open at once (more get 503).
    pub ops_max_streams: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            session_ttl_min: 12 * 60,
            login_per_min_ip: 20,
            login_per_min_account: 5,
            secure_cookie: false,
            max_body_bytes: 256 * 1024,
            ops_max_streams: 64,
        }
    }
}

/// The staff assistant (issue 13, `src/staff/`): its batch tools.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StaffAgentConfig {
    /// A batch touching more items than this asks for confirmation first (a single-use token).
    pub confirm_over: usize,
    /// A confirmation token expires this long after it was issued.
    pub confirm_ttl_s: u64,
    /// The default staff-assistant prompt (tone, house rules), after the fixed rules in
    /// `src/staff/prompt.rs`; each business can replace it in the console.
    pub prompt: String,
}

impl Default for StaffAgentConfig {
    fn default() -> Self {
        Self {
            confirm_over: 5,
            confirm_ttl_s: 600,
            prompt: "Be brief and exact. Answer in the staff member's language. After any \
                     change, list each booking affected with its result."
                .into(),
        }
    }
}

/// What one client may hold, and when new calls are refused (issue 15). Every limit is counted on
/// `/metrics` when it bites.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// A connection must deliver a whole request head within this long, also while it idles
    /// between keep-alive requests and for the WebSocket handshake; else it is closed.
    pub header_read_timeout_ms: u64,
    /// A request (body and handler) must be answered within this long, else 408.
    pub request_timeout_ms: u64,
    /// Open TCP connections (calls included); beyond this new connections are closed at once.
    pub max_connections: usize,
    /// Live calls; beyond this the voice webhook answers the overflow TwiML. 0 = no limit.
    pub max_calls: usize,
    /// Event-loop lag (a sampler's timer lateness, ms) above which new calls are refused. 0 = off.
    pub max_loop_lag_ms: u64,
    /// How often the lag sampler wakes up.
    pub lag_sample_ms: u64,
    /// Refused calls are dialled here (`<Dial>`, E.164) when set; else `overflow_say` is spoken.
    pub overflow_dial: String,
    /// Spoken to refused calls; empty = a built-in sentence in the call's language.
    pub overflow_say: String,
    /// Webhook requests per second per client IP (sustained); 0 = no limit.
    pub webhook_rate_per_s: u32,
    /// Webhook requests one IP may send in a burst.
    pub webhook_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_connections: 10_000,
            max_calls: 1_000,
            max_loop_lag_ms: 50,
            lag_sample_ms: 100,
            overflow_dial: String::new(),
            overflow_say: String::new(),
            webhook_rate_per_s: 50,
            webhook_burst: 200,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CallConfig {
    /// Language of calls (BCP-47); Hebrew first.
    pub language: String,
    /// Speech recogniser: `auto` (local Whisper when built with the `whisper` feature and its
    /// models are present, else `keypad`), `google`, `whisper` (local, offline; cargo feature
    /// `whisper`), `keypad` (no recogniser: calls understand keypad input only) or `simulated`
    /// (scripted transcripts, for tests and load runs). A configured recogniser that cannot start
    /// is a start-up error.
    pub stt: String,
    /// Agent: `simulated`, `openai` (an OpenAI-compatible chat model, see `[llm]`), `offline`
    /// (deterministic booking dialog) or `booking` (the LLM booking agent over the `[llm]` chat
    /// model when one is configured, else the offline one). An LLM that is configured but cannot
    /// start is a start-up error.
    pub agent: String,
    /// Speech synthesiser: `espeak` (real offline speech), `google`, or `simulated` (tones).
    /// A configured synthesiser that cannot start is a start-up error.
    pub tts: String,
    /// Spoken when the call connects; empty for none.
    pub greeting: String,
    /// Spoken when a provider fails mid-turn, so the caller is never left in silence.
    pub fallback_reply: String,
    /// Every this long, each provider's `warm()` runs again so pooled connections and caches stay
    /// warm between calls (Google and OpenAI close idle connections after minutes). 0 disables.
    pub keep_warm_ms: u64,
    /// Open the call's STT stream and LLM connection when the TwiML webhook arrives (phone still
    /// ringing), so the first turn pays no connection cost. Off only to measure what it saves.
    pub preconnect: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// sqlx URL: `sqlite://kav.db` (embedded default) or `postgres://…` for several instances.
    pub url: String,
    /// Rows queued for the writer before new ones are dropped and counted (never blocks audio).
    pub writer_queue: usize,
}

/// Latencies of the simulated providers, as distributions: `fixed:MS`, `uniform:LO..HI`,
/// `normal:MEAN,SD` (clamped at 0). They stand in for cloud providers in tests and benchmarks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    pub stt_first_partial_ms: String,
    pub stt_final_ms: String,
    pub agent_first_token_ms: String,
    pub agent_token_ms: String,
    pub tts_first_audio_ms: String,
    /// Seed for the distributions (each call mixes in its call sid).
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EspeakConfig {
    /// espeak-ng binary.
    pub binary: String,
    /// Words per minute.
    pub speed: u32,
    /// Voice per language prefix: Hebrew and English.
    pub voice_he: String,
    pub voice_en: String,
}

/// OpenAI-compatible chat model of the booking agent (`call.agent = "booking"` when configured,
/// `"openai"` to require it): OpenAI, Azure OpenAI, vLLM, llama.cpp server, Ollama. The API key comes from `KAV_LLM_API_KEY` or `OPENAI_API_KEY` only (never from
/// this file); local servers need none.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// API base including the version path, e.g. `http://127.0.0.1:11434/v1` (Ollama),
    /// `http://127.0.0.1:8000/v1` (vLLM), `http://127.0.0.1:8080/v1` (llama.cpp). For Azure: the
    /// resource URL `https://NAME.openai.azure.com` together with `azure_api_version`.
    pub base_url: String,
    /// Model name (Azure: the deployment id).
    pub model: String,
    /// Non-empty selects Azure OpenAI: `api-key` header, `?api-version=` query, deployment URLs.
    pub azure_api_version: String,
    /// Each attempt must deliver its first streamed chunk within this long.
    pub first_byte_timeout_ms: u64,
    /// The whole completion, retries included, must finish within this long.
    pub timeout_ms: u64,
    /// Extra attempts after a 429/5xx/connection failure, only while no text was streamed yet.
    pub retries: u32,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            azure_api_version: String::new(),
            first_byte_timeout_ms: 2_000,
            timeout_ms: 4_000,
            retries: 1,
        }
    }
}

/// WhatsApp channel (Meta Cloud API and Twilio). Secrets come from the environment only:
/// `WHATSAPP_APP_SECRET`, `WHATSAPP_VERIFY_TOKEN`, `WHATSAPP_ACCESS_TOKEN`, `TWILIO_ACCOUNT_SID`,
/// `TWILIO_AUTH_TOKEN`, `KAV_ADMIN_TOKEN`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// Messages of history (per customer and business) handed to the agent with each turn.
    pub history_messages: u32,
    /// Graph API base URL (tests point it at a fake server).
    pub graph_base_url: String,
    /// Graph API version path segment.
    pub api_version: String,
    /// Twilio REST base URL.
    pub twilio_base_url: String,
    /// Mock mode: log outbound messages instead of calling Meta / Twilio (signatures are still
    /// checked).
    pub mock_sends: bool,
    /// Twilio replies: `rest` (queued, sent through the REST API) or `twiml` (answered inline).
    pub twilio_reply: String,
    /// Where Twilio posts delivery reports for our messages (`StatusCallback`). Empty: the
    /// server's `public_url` + `/twilio/whatsapp/status` when a public URL is set, else none.
    pub twilio_status_callback_url: String,
    /// Template sent when free-form text is refused outside the 24-hour window (error 131047).
    pub confirmation_template: String,
    /// Language code of that template.
    pub template_language: String,
    /// Longest text part sent; longer replies are split (WhatsApp's limit is 4096).
    pub max_text_chars: usize,
    /// Send attempts per message for retryable errors (130429, 131056, 5xx), first try included.
    pub send_attempts: u32,
    /// First retry delay; doubles each attempt, capped at `retry_max_ms` (a server's
    /// `Retry-After` wins when larger).
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// HTTP timeout for Graph / Twilio requests and media downloads.
    pub http_timeout_ms: u64,
    /// Largest voice note downloaded (WhatsApp allows 16 MB audio).
    pub max_media_bytes: usize,
    /// Concurrent inbox workers (one conversation is never processed by two at once).
    pub workers: usize,
    /// A claimed inbox row not finished within this long is claimed again (its worker died).
    pub lease_ms: u64,
    /// Processing attempts per inbox row before it is marked failed.
    pub max_attempts: u32,
    /// Inbox poll period when idle (new webhooks also wake the workers at once).
    pub poll_ms: u64,
    /// The agent must finish its reply within this long.
    pub agent_timeout_ms: u64,
    /// Sent for message types we cannot handle (images, stickers, locations, …).
    pub unsupported_reply: String,
    /// Sent when the agent fails, so the customer is not left without an answer.
    pub fallback_reply: String,
    /// Log phone numbers and BSUIDs in clear; otherwise they are logged as short hashes.
    pub trace_log_pii: bool,
    /// DEVELOPMENT ONLY: accept unsigned webhooks. Refused at start-up in release builds.
    pub insecure_skip_signature: bool,
    /// Business numbers this instance answers (until the booking tables take over).
    pub numbers: Vec<WhatsAppNumber>,
}

/// One business number: `[[whatsapp.numbers]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct WhatsAppNumber {
    pub business_id: String,
    pub business_name: String,
    /// BCP-47 language of the business (replies, STT).
    pub language: String,
    /// Meta Cloud API phone number id.
    pub phone_number_id: String,
    /// Number in E.164 digits (no `+`): Meta display number / Twilio `To`.
    pub display_number: String,
}

impl Default for WhatsAppConfig {
    fn default() -> Self {
        Self {
            history_messages: 10,
            graph_base_url: "https://graph.facebook.com".into(),
            api_version: "v24.0".into(),
            twilio_base_url: "https://api.twilio.com".into(),
            mock_sends: false,
            twilio_reply: "rest".into(),
            twilio_status_callback_url: String::new(),
            confirmation_template: "booking_confirmation".into(),
            template_language: "en_US".into(),
            max_text_chars: 4_000,
            send_attempts: 5,
            retry_base_ms: 500,
            retry_max_ms: 30_000,
            http_timeout_ms: 15_000,
            max_media_bytes: 16 * 1024 * 1024,
            workers: 4,
            lease_ms: 120_000,
            max_attempts: 5,
            poll_ms: 1_000,
            agent_timeout_ms: 60_000,
            unsupported_reply:
                "Sorry, I can only read text and voice messages. Could you write or say it instead?"
                    .into(),
            fallback_reply:
                "Sorry, something went wrong on our side. Please try again in a moment.".into(),
            trace_log_pii: false,
            insecure_skip_signature: false,
            numbers: Vec::new(),
        }
    }
}

/// Google Cloud Speech-to-Text (v1 `StreamingRecognize`) and Text-to-Speech (v1 `SynthesizeSpeech`)
/// over gRPC. Credentials: `GOOGLE_APPLICATION_CREDENTIALS` (service account, via gcp_auth) or the
/// static bearer token `KAV_GOOGLE_ACCESS_TOKEN`; a plain `http://` loopback endpoint (the test
/// fakes) is used without auth.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GoogleConfig {
    /// Speech-to-Text endpoint; empty means `https://speech.googleapis.com`.
    pub stt_endpoint: String,
    /// Text-to-Speech endpoint; empty means `https://texttospeech.googleapis.com`.
    pub tts_endpoint: String,
    /// Recognition model: `default` (supports he-IL), `phone_call`, `latest_long`, ...
    pub model: String,
    /// Ask for the enhanced variant of `model` (only some models and languages have one).
    pub use_enhanced: bool,
    /// Phrase hints (speech context) added to every stream, on top of the built-in Hebrew hints
    /// for digits, weekdays, hours, "שעה" and "תור": the business's own words.
    pub phrase_hints: Vec<String>,
    /// Speech-context boost for the phrase hints (0 = Google's default weighting).
    pub phrase_boost: f32,
    /// Partial transcripts arriving within this window are coalesced into the newest one.
    pub stt_partial_debounce_ms: u64,
    /// Caller audio batched per request (20 ms frames; 100 ms = 800 bytes, capped at 25 KB).
    pub stt_batch_ms: u32,
    /// A stream older than this is replaced at the next silent frame (Google's limit is 5 min).
    pub rotate_after_ms: u64,
    /// A stream older than this is replaced even mid-word.
    pub rotate_hard_limit_ms: u64,
    /// Consecutive failed stream opens before the recogniser gives up and the call's STT restart
    /// takes over.
    pub reconnect_attempts: u32,
    /// A recogniser stream opened at the webhook (phone ringing) waits this long for its call.
    pub prepared_stream_ttl_ms: u64,
    /// Voice for TTS, e.g. `he-IL-Wavenet-A`; used when its language prefix matches the call's
    /// language, otherwise Google picks a voice for the language.
    pub tts_voice: String,
    /// 1.0 is normal speed.
    pub tts_speaking_rate: f64,
    /// Extra fixed phrases synthesised at start-up and served from memory (the greeting and the
    /// fallback reply from `[call]` are always included).
    pub tts_cache_phrases: Vec<String>,
    /// Most phrases kept in the TTS cache.
    pub tts_cache_entries: usize,
    /// Deadline for one TTS request and for connecting at start-up.
    pub request_timeout_ms: u64,
}

impl Default for GoogleConfig {
    fn default() -> Self {
        Self {
            stt_endpoint: String::new(),
            tts_endpoint: String::new(),
            model: "default".into(),
            use_enhanced: false,
            phrase_hints: Vec::new(),
            phrase_boost: 0.0,
            stt_partial_debounce_ms: 50,
            stt_batch_ms: 100,
            rotate_after_ms: 240_000,
            rotate_hard_limit_ms: 290_000,
            reconnect_attempts: 3,
            prepared_stream_ttl_ms: 30_000,
            tts_voice: "he-IL-Wavenet-A".into(),
            tts_speaking_rate: 1.0,
            tts_cache_phrases: vec!["הקלידו בבקשה את מספר הטלפון ובסיומו הקישו סולמית".into()],
            tts_cache_entries: 64,
            request_timeout_ms: 5_000,
        }
    }
}

/// Local Whisper speech-to-text (`[call] stt = "whisper"`, cargo feature `whisper`). Models are
/// CTranslate2 directories fetched by `scripts/fetch-models.sh`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WhisperConfig {
    /// Directory holding one sub-directory per model.
    pub model_dir: String,
    /// Model for English calls (`en-*`); an English-only `.en` model is allowed here only.
    pub model_en: String,
    /// Model for Hebrew calls (`he-*`); must be multilingual.
    pub model_he: String,
    /// Model for any other language; must be multilingual.
    pub model_other: String,
    /// Beam search width (1 = greedy).
    pub beam_size: u32,
    /// CPU threads per transcription; 0 = cores / max_concurrent (at least 1).
    pub threads: u32,
    /// Transcriptions running at once; 0 = one per core.
    pub max_concurrent: u32,
    /// Transcriptions that may wait for a free slot; past that a request is refused at once.
    pub max_queued: u32,
    /// Longest utterance transcribed (in Whisper's 30 s windows); audio past it is dropped and
    /// counted.
    pub max_utterance_ms: u32,
    /// CTranslate2 compute type: `int8` (fastest on CPU), `int8_float32`, `float32`, `auto`,
    /// `default` (as converted).
    pub compute_type: String,
}

impl Default for WhisperConfig {
    fn default() -> Self {
        Self {
            model_dir: "models".into(),
            model_en: "whisper-tiny.en".into(),
            model_he: "whisper-base".into(),
            model_other: "whisper-base".into(),
            beam_size: 1,
            threads: 0,
            max_concurrent: 0,
            max_queued: 8,
            max_utterance_ms: 60_000,
            compute_type: "int8".into(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: String::new(),
            max_message_bytes: 64 * 1024,
            ws_send_queue: 128,
            slow_consumer_ms: 5_000,
            shutdown_grace_ms: 30_000,
            start_timeout_ms: 10_000,
            metrics_listen: String::new(),
        }
    }
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            language: "he-IL".into(),
            stt: "auto".into(),
            agent: "booking".into(),
            tts: "espeak".into(),
            greeting: String::new(),
            fallback_reply: "Sorry, I did not catch that. Could you say it again?".into(),
            keep_warm_ms: 450_000,
            preconnect: true,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://kav.db".into(),
            writer_queue: 4_096,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            stt_first_partial_ms: "normal:180,30".into(),
            stt_final_ms: "normal:150,40".into(),
            agent_first_token_ms: "normal:350,80".into(),
            agent_token_ms: "fixed:25".into(),
            tts_first_audio_ms: "normal:120,25".into(),
            seed: 7,
        }
    }
}

impl Default for EspeakConfig {
    fn default() -> Self {
        Self {
            binary: "espeak-ng".into(),
            speed: 165,
            voice_he: "he".into(),
            voice_en: "en-us".into(),
        }
    }
}

/// The booking agent (`call.agent = "booking"` or `"offline"`) and its outbox worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BookingConfig {
    /// Business used when a conversation names none (no `business_id`, unknown `To` number).
    pub default_business: String,
    /// An LLM round that does not finish within this long falls back to the offline agent.
    pub llm_timeout_ms: u64,
    /// Most LLM rounds (completion + tool calls) per turn.
    pub max_tool_rounds: u32,
    /// Conversation state (offline dialog, LLM tool memory; in the database) older than this is
    /// not resumed: the conversation starts that state afresh. 0 = kept for ever.
    pub conversation_state_ttl_hours: u64,
    /// Outbox worker: how often it looks for due events.
    pub outbox_poll_ms: u64,
    /// Retry backoff: base * 2^attempt, capped; a retry-after from the provider wins if longer.
    pub outbox_backoff_base_ms: u64,
    pub outbox_backoff_max_ms: u64,
    /// Attempts before an event is given up (`dead`).
    pub outbox_max_attempts: u32,
    /// Also send the call summary to the customer on WhatsApp when a call ends.
    pub send_call_summary: bool,
    /// Conversation history kept for the agent (calls and WhatsApp): at most this many messages,
    /// newest first ...
    pub history_max_messages: u32,
    /// ... and at most this many characters of them. Bookings made earlier are kept apart, as
    /// conversation state.
    pub history_max_chars: u32,
}

impl Default for BookingConfig {
    fn default() -> Self {
        Self {
            default_business: "biz_escape_tlv".into(),
            llm_timeout_ms: 8_000,
            max_tool_rounds: 4,
            conversation_state_ttl_hours: 24,
            outbox_poll_ms: 1_000,
            outbox_backoff_base_ms: 2_000,
            outbox_backoff_max_ms: 300_000,
            outbox_max_attempts: 12,
            send_call_summary: false,
            history_max_messages: 24,
            history_max_chars: 6_000,
        }
    }
}

/// How long personal data is kept (issue 15). Days; 0 = kept for ever. A sweep deletes what is
/// older every `sweep_every_s` (`store::privacy::RetentionPlan`). Kav stores no call audio, so
/// there is no recordings setting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Call transcripts: `calls`, `turns`, `call_events`, conversation messages and summaries.
    pub transcripts_days: u32,
    /// Tool-call traces (`tool_traces`).
    pub tool_traces_days: u32,
    /// WhatsApp message texts: `whatsapp_messages` deleted; inbox payloads, sent bodies and
    /// finished outbox payloads redacted (the dedup keys and delivery states stay).
    pub whatsapp_bodies_days: u32,
    /// How often the sweep runs in `kav serve`; 0 = never.
    pub sweep_every_s: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            transcripts_days: 0,
            tool_traces_days: 0,
            whatsapp_bodies_days: 0,
            sweep_every_s: 3_600,
        }
    }
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
