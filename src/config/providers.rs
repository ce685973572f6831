//! The provider sections: `[sim]`, `[espeak]`, `[llm]`, `[google]`, `[whisper]`.

use serde::{Deserialize, Serialize};

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
