//! Local, offline Whisper speech-to-text: OpenAI Whisper in CTranslate2 format, run in-process
//! through `ct2rs` (feature `whisper`). Models come from `scripts/fetch-models.sh`.
//!
//! How a call uses it: the session's audio graph sends 20 ms frames of 16 kHz PCM
//! ([`SttAudioFormat::Pcm16k`]) while our VAD hears speech, then `UtteranceEnd` (or
//! `UtteranceDiscarded` for noise). [`WhisperStt::stream`] buffers one utterance and, at its end,
//! hands it to a per-call worker that transcribes it and emits one [`SttEvent::Final`]. Whisper
//! is not streaming, so there are no partials.
//!
//! Resource rules:
//! - Each model is loaded once per process (a process-wide cache keyed by directory and thread
//!   settings) and shared by every call.
//! - Inference runs on tokio's blocking pool, never on the async workers.
//! - A semaphore bounds concurrent transcriptions (default: one per core), so one long utterance
//!   cannot take every core from the others. Transcriptions waiting for a permit are bounded too
//!   (`max_queued`): past that a request fails at once with [`WhisperError::Busy`] instead of
//!   waiting without bound. A call that gets `Busy` skips that utterance (warning logged, counted),
//!   its turn then falls back like any STT timeout, and its recogniser stays up.
//! - An utterance is capped at `max_utterance_ms` (default 60 s). Up to the cap it is
//!   transcribed in Whisper's 30 s windows (ct2rs splits it and decodes the windows as one
//!   batch); audio past the cap is dropped and counted ([`WhisperStats::dropped_samples`]), so a
//!   caller who never pauses cannot grow memory without bound.
//!
//! Latency: Whisper's encoder always processes a 30 s window, so a short utterance costs about as
//! much as a long one (tiny.en: ~1-1.7 s per phone prompt on 2 busy cores). The session's
//! `[turn] stt_timeout_ms` (1.5 s by default, sized for streaming cloud STT) should be raised
//! with this provider, e.g. to 4 s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, Semaphore, mpsc};

use crate::config::WhisperConfig;
use crate::providers::{
    BoxFuture, CallContext, ProviderError, SpeechToText, SttAudioFormat, SttError, SttEvent,
    SttInput,
};
use crate::voice::g711;
use crate::voice::resample::Upsampler8kTo16k;

/// Whisper's sample rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// Files ct2rs reads from a model directory; `preprocessor_config.json` is written by
/// `scripts/fetch-models.sh` (the Whisper feature-extractor settings).
pub const MODEL_FILES: [&str; 4] = [
    "model.bin",
    "config.json",
    "tokenizer.json",
    "preprocessor_config.json",
];
/// Utterances a call may have waiting for its transcriber before further ones are dropped.
const UTTERANCES_PER_CALL: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    #[error(
        "Whisper model {model:?} not usable: {missing} missing in {} (run scripts/fetch-models.sh)",
        dir.display()
    )]
    MissingModel {
        model: String,
        dir: PathBuf,
        missing: String,
    },
    #[error("cannot load Whisper model {}: {reason}", dir.display())]
    Load { dir: PathBuf, reason: String },
    #[error("Whisper model {model:?} is English-only and cannot transcribe {language:?}")]
    EnglishOnly { model: String, language: String },
    #[error(
        "Whisper busy: {in_flight} transcriptions running or queued (limit {limit}: \
         max_concurrent + max_queued); refusing instead of waiting"
    )]
    Busy { in_flight: usize, limit: usize },
    #[error("Whisper inference failed: {0}")]
    Inference(String),
    #[error("unknown whisper compute_type {0:?} (default, auto, int8, int8_float32, float32)")]
    ComputeType(String),
}

/// One finished transcription.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// Model directory name that produced it.
    pub model: String,
    pub audio: Duration,
    /// Inference time, excluding any wait for a permit and the one-off model load.
    pub processing: Duration,
}

impl Transcript {
    /// Real-time factor: processing time / audio duration (below 1 is faster than real time).
    pub fn real_time_factor(&self) -> f64 {
        self.processing.as_secs_f64() / self.audio.as_secs_f64().max(1e-9)
    }
}

/// Counters since start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WhisperStats {
    pub transcriptions: u64,
    /// Requests refused with [`WhisperError::Busy`].
    pub busy_rejections: u64,
    /// 16 kHz samples dropped because an utterance passed `max_utterance_ms`.
    pub dropped_samples: u64,
    /// Utterances dropped because a call's transcriber queue was full.
    pub dropped_utterances: u64,
    pub failures: u64,
}

#[derive(Default)]
struct Counters {
    transcriptions: AtomicU64,
    busy_rejections: AtomicU64,
    dropped_samples: AtomicU64,
    dropped_utterances: AtomicU64,
    failures: AtomicU64,
}

/// `he-IL` → `he`, `en-US` → `en`, `EN` → `en`: Whisper's language tokens are ISO 639-1.
pub fn whisper_language(bcp47: &str) -> String {
    bcp47
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn compute_type(name: &str) -> Result<ct2rs::ComputeType, WhisperError> {
    Ok(match name {
        "default" => ct2rs::ComputeType::DEFAULT,
        "auto" => ct2rs::ComputeType::AUTO,
        "int8" => ct2rs::ComputeType::INT8,
        "int8_float32" => ct2rs::ComputeType::INT8_FLOAT32,
        "float32" => ct2rs::ComputeType::FLOAT32,
        other => return Err(WhisperError::ComputeType(other.into())),
    })
}

/// Checks that `dir` holds the files ct2rs needs.
pub fn check_model_dir(model: &str, dir: &Path) -> Result<(), WhisperError> {
    let missing: Vec<&str> = MODEL_FILES
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(WhisperError::MissingModel {
            model: model.into(),
            dir: dir.into(),
            missing: missing.join(", "),
        })
    }
}

// ---------------------------------------------------------------- process-wide model cache

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ModelKey {
    dir: PathBuf,
    threads: usize,
    replicas: usize,
    compute_type: String,
}

type ModelCell = Arc<OnceCell<Arc<ct2rs::Whisper>>>;

/// One cell per model: concurrent first users wait for a single load instead of each loading
/// hundreds of megabytes.
static MODELS: LazyLock<Mutex<HashMap<ModelKey, ModelCell>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

async fn shared_model(key: &ModelKey) -> Result<Arc<ct2rs::Whisper>, WhisperError> {
    let cell = {
        let mut models = MODELS.lock().unwrap_or_else(|p| p.into_inner());
        models.entry(key.clone()).or_default().clone()
    };
    cell.get_or_try_init(|| {
        let key = key.clone();
        async move {
            let dir = key.dir.clone();
            tokio::task::spawn_blocking(move || load_model(&key))
                .await
                .map_err(|e| WhisperError::Load {
                    dir,
                    reason: format!("loader task failed: {e}"),
                })?
        }
    })
    .await
    .cloned()
}

fn load_model(key: &ModelKey) -> Result<Arc<ct2rs::Whisper>, WhisperError> {
    let started = Instant::now();
    let config = ct2rs::Config {
        compute_type: compute_type(&key.compute_type)?,
        // One replica per permitted concurrent transcription. Replicas on the same device share
        // the weights; each brings its own worker thread(s).
        device_indices: vec![0; key.replicas],
        num_threads_per_replica: key.threads,
        ..Default::default()
    };
    let model = ct2rs::Whisper::new(&key.dir, config).map_err(|e| WhisperError::Load {
        dir: key.dir.clone(),
        reason: e.to_string(),
    })?;
    tracing::info!(
        model = %key.dir.display(),
        multilingual = model.is_multilingual(),
        load_ms = started.elapsed().as_millis() as u64,
        "Whisper model loaded"
    );
    Ok(Arc::new(model))
}

// ---------------------------------------------------------------- admission

/// Bounds transcriptions: `max_concurrent` run, `max_queued` more may wait, the rest are refused.
struct Admission {
    permits: Arc<Semaphore>,
    in_flight: Arc<AtomicUsize>,
    limit: usize,
}

/// Counts one transcription as in flight until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    fn new(max_concurrent: usize, max_queued: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            limit: max_concurrent + max_queued,
        }
    }

    /// Registers a transcription, or refuses it when `limit` are already running or waiting.
    fn enter(&self) -> Result<InFlight, WhisperError> {
        let previous = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(self.in_flight.clone());
        if previous >= self.limit {
            return Err(WhisperError::Busy {
                in_flight: previous,
                limit: self.limit,
            });
        }
        Ok(guard)
    }
}

// ---------------------------------------------------------------- the provider

struct Shared {
    model_dir: PathBuf,
    model_en: String,
    model_he: String,
    model_other: String,
    beam_size: usize,
    threads: usize,
    replicas: usize,
    compute_type: String,
    max_utterance_samples: usize,
    admission: Admission,
    counters: Counters,
}

/// The `whisper` speech recogniser. Cheap to clone; clones share models, permits and counters.
#[derive(Clone)]
pub struct WhisperStt {
    shared: Arc<Shared>,
}

impl WhisperStt {
    /// Validates the configuration and that every configured model's files exist. Loads nothing:
    /// models load on first use or in [`SpeechToText::warm`].
    pub fn new(cfg: &WhisperConfig) -> Result<Self, WhisperError> {
        compute_type(&cfg.compute_type)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let max_concurrent = match cfg.max_concurrent {
            0 => cores,
            n => n as usize,
        };
        let threads = match cfg.threads {
            0 => (cores / max_concurrent).max(1),
            n => n as usize,
        };
        let model_dir = PathBuf::from(&cfg.model_dir);
        for model in [&cfg.model_en, &cfg.model_he, &cfg.model_other] {
            check_model_dir(model, &model_dir.join(model))?;
        }
        if is_english_only(&cfg.model_he) {
            return Err(WhisperError::EnglishOnly {
                model: cfg.model_he.clone(),
                language: "he".into(),
            });
        }
        if is_english_only(&cfg.model_other) {
            return Err(WhisperError::EnglishOnly {
                model: cfg.model_other.clone(),
                language: "any language but English".into(),
            });
        }
        Ok(Self {
            shared: Arc::new(Shared {
                model_dir,
                model_en: cfg.model_en.clone(),
                model_he: cfg.model_he.clone(),
                model_other: cfg.model_other.clone(),
                beam_size: cfg.beam_size.max(1) as usize,
                threads,
                replicas: max_concurrent,
                compute_type: cfg.compute_type.clone(),
                max_utterance_samples: cfg.max_utterance_ms as usize * SAMPLE_RATE as usize / 1000,
                admission: Admission::new(max_concurrent, cfg.max_queued as usize),
                counters: Counters::default(),
            }),
        })
    }

    pub fn stats(&self) -> WhisperStats {
        let c = &self.shared.counters;
        WhisperStats {
            transcriptions: c.transcriptions.load(Ordering::Relaxed),
            busy_rejections: c.busy_rejections.load(Ordering::Relaxed),
            dropped_samples: c.dropped_samples.load(Ordering::Relaxed),
            dropped_utterances: c.dropped_utterances.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
        }
    }

    /// The model directory name used for a Whisper language code (`en`, `he`, ...).
    pub fn model_for(&self, language: &str) -> &str {
        match language {
            "en" => &self.shared.model_en,
            "he" => &self.shared.model_he,
            _ => &self.shared.model_other,
        }
    }

    fn key(&self, model: &str) -> ModelKey {
        ModelKey {
            dir: self.shared.model_dir.join(model),
            threads: self.shared.threads,
            replicas: self.shared.replicas,
            compute_type: self.shared.compute_type.clone(),
        }
    }

    /// Loads (once per process) the models this provider uses.
    pub async fn load(&self) -> Result<(), WhisperError> {
        for model in self.distinct_models() {
            shared_model(&self.key(&model)).await?;
        }
        Ok(())
    }

    fn distinct_models(&self) -> Vec<String> {
        let mut models = vec![
            self.shared.model_en.clone(),
            self.shared.model_he.clone(),
            self.shared.model_other.clone(),
        ];
        models.sort();
        models.dedup();
        models
    }

    /// Transcribes 16 kHz mono PCM in `language` (BCP-47 or ISO 639-1). Audio past
    /// `max_utterance_ms` is dropped and counted.
    pub async fn transcribe(
        &self,
        mut pcm: Vec<i16>,
        language: &str,
    ) -> Result<Transcript, WhisperError> {
        let shared = &self.shared;
        if pcm.len() > shared.max_utterance_samples {
            let dropped = pcm.len() - shared.max_utterance_samples;
            shared
                .counters
                .dropped_samples
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::warn!(
                dropped_ms = dropped as u64 * 1000 / SAMPLE_RATE as u64,
                "utterance longer than whisper.max_utterance_ms; the rest is not transcribed"
            );
            pcm.truncate(shared.max_utterance_samples);
        }
        let language = whisper_language(language);
        let model_name = self.model_for(&language).to_string();
        let in_flight = shared.admission.enter().inspect_err(|_| {
            shared
                .counters
                .busy_rejections
                .fetch_add(1, Ordering::Relaxed);
        })?;
        let permit = shared
            .admission
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let model = shared_model(&self.key(&model_name)).await?;
        if !model.is_multilingual() && language != "en" {
            return Err(WhisperError::EnglishOnly {
                model: model_name,
                language,
            });
        }
        let audio = Duration::from_micros(pcm.len() as u64 * 1_000_000 / SAMPLE_RATE as u64);
        let beam_size = shared.beam_size;
        let result = tokio::task::spawn_blocking(move || {
            // The permit and the in-flight mark live until inference really ends, even if the
            // caller stops waiting (call hung up): the core stays busy until then.
            let _permit = permit;
            let _in_flight = in_flight;
            let started = Instant::now();
            let text = run_model(&model, &pcm, &language, beam_size)?;
            Ok::<_, WhisperError>((text, started.elapsed()))
        })
        .await
        .map_err(|e| WhisperError::Inference(format!("inference task failed: {e}")))
        .and_then(|r| r);
        match result {
            Ok((text, processing)) => {
                shared
                    .counters
                    .transcriptions
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Transcript {
                    text,
                    model: model_name,
                    audio,
                    processing,
                })
            }
            Err(e) => {
                shared.counters.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// Model directory names ending in `.en` are OpenAI's English-only checkpoints.
fn is_english_only(model: &str) -> bool {
    model.ends_with(".en")
}

fn run_model(
    model: &ct2rs::Whisper,
    pcm: &[i16],
    language: &str,
    beam_size: usize,
) -> Result<String, WhisperError> {
    let samples: Vec<f32> = pcm.iter().map(|s| *s as f32 / 32768.0).collect();
    let options = ct2rs::WhisperOptions {
        beam_size,
        ..Default::default()
    };
    let pieces = model
        .generate(&samples, Some(language), false, &options)
        .map_err(|e| WhisperError::Inference(e.to_string()))?;
    let text = pieces
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(text)
}

impl SpeechToText for WhisperStt {
    fn name(&self) -> &'static str {
        "whisper"
    }

    fn audio_format(&self) -> SttAudioFormat {
        SttAudioFormat::Pcm16k
    }

    /// Loads the models, then transcribes half a second of silence with each, so the first
    /// caller pays neither the load nor the first-inference set-up.
    fn warm(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        let stt = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            stt.load()
                .await
                .map_err(|e| ProviderError::fatal(e.to_string()))?;
            let loaded = started.elapsed();
            let silence = vec![0i16; SAMPLE_RATE as usize / 2];
            for language in ["en", "he"] {
                stt.transcribe(silence.clone(), language)
                    .await
                    .map_err(|e| ProviderError::fatal(e.to_string()))?;
            }
            tracing::info!(
                load_ms = loaded.as_millis() as u64,
                total_ms = started.elapsed().as_millis() as u64,
                "Whisper warm: models loaded and one inference each"
            );
            Ok(())
        })
    }

    fn stream(
        &self,
        call: CallContext,
        input: mpsc::Receiver<SttInput>,
        events: mpsc::Sender<SttEvent>,
    ) -> BoxFuture<'static, Result<(), SttError>> {
        Box::pin(run_stream(self.clone(), call, input, events))
    }
}

/// Collects utterances from `input` and transcribes them in order on a per-call worker, so frames
/// keep being read (and the call driver's queue keeps draining) while Whisper runs.
async fn run_stream(
    stt: WhisperStt,
    call: CallContext,
    mut input: mpsc::Receiver<SttInput>,
    events: mpsc::Sender<SttEvent>,
) -> Result<(), SttError> {
    let (utterances, mut pending) = mpsc::channel::<Vec<i16>>(UTTERANCES_PER_CALL);
    let worker = {
        let stt = stt.clone();
        let language = call.language.clone();
        let call_sid = call.call_sid.clone();
        tokio::spawn(async move {
            while let Some(pcm) = pending.recv().await {
                match stt.transcribe(pcm, &language).await {
                    Ok(t) => {
                        tracing::debug!(%call_sid, model = %t.model, rtf = t.real_time_factor(), "whisper final");
                        if events.send(SttEvent::Final { text: t.text }).await.is_err() {
                            return; // the call is gone
                        }
                    }
                    // The utterance is lost but the recogniser stays up: the session's STT
                    // timeout turns this into the fallback reply.
                    Err(e) => {
                        tracing::warn!(%call_sid, error = %e, "whisper: utterance not transcribed")
                    }
                }
            }
        })
    };

    let cap = stt.shared.max_utterance_samples;
    let mut buffer: Vec<i16> = Vec::new();
    let mut over_cap = 0usize;
    let mut upsampler: Option<Upsampler8kTo16k> = None;
    while let Some(item) = input.recv().await {
        match item {
            SttInput::Pcm16k(frame) => append_capped(&mut buffer, &frame, cap, &mut over_cap),
            // Not what `audio_format` asks for, but cheap to honour: decode and upsample like
            // the session's audio graph would.
            SttInput::Mulaw(frame) => {
                let mut pcm8k = [0i16; 160];
                g711::decode_into(&frame, &mut pcm8k);
                let mut pcm16k = [0i16; 320];
                upsampler
                    .get_or_insert_with(Upsampler8kTo16k::new)
                    .process(&pcm8k, &mut pcm16k);
                append_capped(&mut buffer, &pcm16k, cap, &mut over_cap);
            }
            SttInput::UtteranceDiscarded => {
                buffer.clear();
                over_cap = 0;
                if let Some(u) = upsampler.as_mut() {
                    u.reset();
                }
            }
            SttInput::UtteranceEnd => {
                if over_cap > 0 {
                    stt.shared
                        .counters
                        .dropped_samples
                        .fetch_add(over_cap as u64, Ordering::Relaxed);
                    tracing::warn!(
                        call_sid = %call.call_sid,
                        dropped_ms = over_cap as u64 * 1000 / SAMPLE_RATE as u64,
                        "utterance longer than whisper.max_utterance_ms; the rest is not transcribed"
                    );
                    over_cap = 0;
                }
                if let Some(u) = upsampler.as_mut() {
                    u.reset();
                }
                if buffer.is_empty() {
                    continue;
                }
                let utterance = std::mem::take(&mut buffer);
                if utterances.try_send(utterance).is_err() {
                    stt.shared
                        .counters
                        .dropped_utterances
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(call_sid = %call.call_sid, "whisper: {UTTERANCES_PER_CALL} utterances already waiting; dropping this one");
                }
            }
        }
    }
    // Input closed (call over): finish what was said, then end.
    drop(utterances);
    worker
        .await
        .map_err(|e| SttError::fatal(format!("whisper worker failed: {e}")))
}

fn append_capped(buffer: &mut Vec<i16>, frame: &[i16], cap: usize, over_cap: &mut usize) {
    let room = cap.saturating_sub(buffer.len());
    let take = room.min(frame.len());
    buffer.extend_from_slice(&frame[..take]);
    *over_cap += frame.len() - take;
}

impl crate::metrics::MetricsSource for WhisperStt {
    fn readings(&self) -> Vec<crate::metrics::Reading> {
        let s = self.stats();
        [
            ("transcriptions", s.transcriptions, "Utterances transcribed"),
            (
                "busy_rejections",
                s.busy_rejections,
                "Utterances refused: all transcription slots and the queue were full",
            ),
            (
                "dropped_samples",
                s.dropped_samples,
                "16 kHz samples cut from utterances longer than max_utterance_ms",
            ),
            (
                "dropped_utterances",
                s.dropped_utterances,
                "Utterances dropped: a call's transcriber queue was full",
            ),
            ("failures", s.failures, "Transcriptions that failed"),
        ]
        .into_iter()
        .map(|(name, value, help)| {
            crate::metrics::Reading::counter(format!("kav_whisper_{name}"), help, value)
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcp47_maps_to_whisper_language_codes() {
        assert_eq!(whisper_language("he-IL"), "he");
        assert_eq!(whisper_language("en-US"), "en");
        assert_eq!(whisper_language("EN_gb"), "en");
        assert_eq!(whisper_language("fr"), "fr");
    }

    #[test]
    fn admission_refuses_past_running_plus_queued() {
        let admission = Admission::new(2, 1);
        let a = admission.enter().unwrap();
        let _b = admission.enter().unwrap();
        let _c = admission.enter().unwrap();
        match admission.enter() {
            Err(WhisperError::Busy { in_flight, limit }) => {
                assert_eq!((in_flight, limit), (3, 3));
            }
            other => panic!("expected Busy, got {:?}", other.map(|_| ())),
        }
        // A refused request does not keep its slot, a finished one frees its slot.
        drop(a);
        let d = admission.enter().unwrap();
        assert_eq!(admission.in_flight.load(Ordering::Acquire), 3);
        drop(d);
        assert_eq!(admission.in_flight.load(Ordering::Acquire), 2);
    }

    #[test]
    fn utterance_buffer_stops_at_the_cap_and_counts_the_rest() {
        let mut buffer = Vec::new();
        let mut over = 0;
        let frame = [1i16; 320];
        for _ in 0..4 {
            append_capped(&mut buffer, &frame, 1000, &mut over);
        }
        assert_eq!(buffer.len(), 1000);
        assert_eq!(over, 4 * 320 - 1000);
    }

    #[test]
    fn missing_model_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.bin"), b"x").unwrap();
        let err = check_model_dir("whisper-base", dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("config.json"), "{msg}");
        assert!(msg.contains("preprocessor_config.json"), "{msg}");
        assert!(!msg.contains("model.bin"), "{msg}");
        assert!(msg.contains("scripts/fetch-models.sh"), "{msg}");
    }

    #[test]
    fn english_only_model_is_refused_for_hebrew() {
        let dir = tempfile::tempdir().unwrap();
        for m in ["whisper-base", "whisper-tiny.en"] {
            std::fs::create_dir(dir.path().join(m)).unwrap();
            for f in MODEL_FILES {
                std::fs::write(dir.path().join(m).join(f), b"x").unwrap();
            }
        }
        let cfg = WhisperConfig {
            model_dir: dir.path().display().to_string(),
            model_he: "whisper-tiny.en".into(),
            ..WhisperConfig::default()
        };
        assert!(matches!(
            WhisperStt::new(&cfg),
            Err(WhisperError::EnglishOnly { .. })
        ));
        let ok = WhisperConfig {
            model_dir: dir.path().display().to_string(),
            ..WhisperConfig::default()
        };
        let stt = WhisperStt::new(&ok).unwrap();
        assert_eq!(stt.model_for("en"), "whisper-tiny.en");
        assert_eq!(stt.model_for("he"), "whisper-base");
        assert_eq!(stt.model_for("ar"), "whisper-base");
    }
}
