//! Google Cloud Speech-to-Text v1 (`StreamingRecognize`) and Text-to-Speech v1 (`SynthesizeSpeech`)
//! over gRPC, with one shared tonic `Channel` per service.
//!
//! # Recogniser design: one gRPC stream per utterance, the next one always pre-opened
//! Our VAD decides when the caller speaks; the session only forwards audio during an utterance
//! (with its pre-roll). So each utterance gets its own `StreamingRecognize` stream:
//! - a *standby* stream is opened ahead of time (at the webhook via [`SpeechToText::prepare`], then
//!   after every utterance start), its config request already sent, so the first audio of the next
//!   utterance pays no stream set-up;
//! - at `UtteranceEnd` the stream is half-closed: Google then finalises everything it heard and
//!   closes, which is the fastest way to get the final (no waiting for Google's own endpointer).
//!   The finals of all of an utterance's streams are held until it ended and all of them closed,
//!   then joined and delivered as one `Final`: the session completes the turn on a final after the
//!   utterance end (or on an early one with no partial after it), so finals delivered piecemeal
//!   could end the turn short. Partials are debounced and carry the held finals in front;
//! - an idle standby is replaced at half the rotation age (and whenever Google closes it), so an
//!   utterance always starts on a stream with most of its 5 minutes left;
//! - `UtteranceDiscarded` cancels the utterance's streams: their results are never delivered.
//!
//! Rotation (Google closes streams after 5 minutes): a stream older than `rotate_after_ms` is
//! half-closed at the next silent frame and the standby takes over the same utterance (at
//! `rotate_hard_limit_ms` it is replaced even mid-word). Half-closing makes Google finalise what the
//! old stream heard, so nothing is lost and nothing is heard twice. A stream that dies instead
//! (an error, `OUT_OF_RANGE`, a dropped connection) loses what it had not finalised: each stream
//! keeps the audio after its last final (`result_end_time`), and that tail is replayed into the
//! replacement stream. Failed opens are retried with backoff; after `reconnect_attempts` failures
//! in a row the stream task returns [`SttError`] and the call driver's STT restart takes over.
//! Results are delivered strictly in stream order, so a rotated-out stream's final is never
//! overtaken by its successor's. A half-closed stream that gives no final within
//! `[turn] stt_timeout_ms` is given up (the engine has used the last partial by then).
//!
//! All of the above is decided by one sans-IO machine per call, `manager.rs`, which never reads
//! the clock: it takes `now` with every input (a caller frame, utterance end or discard, a
//! response or the end of stream N, a timer) and answers with outputs (open, send audio on,
//! half-close or release stream N; deliver an `SttEvent`) and its next deadline with a reason.
//! The tokio shell in `stt.rs` owns the gRPC streams, reads the clock and traces each wake-up's
//! reason; the manager's tests run in virtual time.
//!
//! # Files
//! `grpc.rs` (one gRPC service: endpoint, channel, auth, status → failure kind), `manager.rs`
//! (the recogniser's stream manager), `stt.rs` (its tokio shell and the streams parked at the
//! webhook), `wav.rs` (Google's WAV-wrapped audio → mu-law), `synthesis.rs` (synthesis and the
//! fixed-phrase cache), `stats.rs` (their measurements on `/metrics`).

mod grpc;
mod manager;
mod stats;
mod stt;
mod synthesis;
mod wav;

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SelectAll, Stream, StreamExt};
use googleapis_tonic_google_cloud_speech_v1::google::cloud::speech::v1 as speech;
use googleapis_tonic_google_cloud_texttospeech_v1::google::cloud::texttospeech::v1 as tts;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use speech::streaming_recognize_request::StreamingRequest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::config::{Config, GoogleConfig};
use crate::providers::*;
use crate::voice::g711;

pub use grpc::GoogleInitError;
use grpc::*;
pub use manager::PartialDebouncer;
#[cfg(test)]
use manager::{is_silent, join_text};
pub use stats::GoogleStats;
use stats::*;
pub use stt::GoogleStt;
pub use synthesis::GoogleTts;
pub use wav::{WavError, wav_to_mulaw};

pub const DEFAULT_STT_ENDPOINT: &str = "https://speech.googleapis.com";
pub const DEFAULT_TTS_ENDPOINT: &str = "https://texttospeech.googleapis.com";
/// Static bearer token (tests, or a token minted elsewhere). Preferred over gcp_auth when set.
pub const ACCESS_TOKEN_ENV: &str = "KAV_GOOGLE_ACCESS_TOKEN";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's per-request audio limit.
pub const MAX_AUDIO_REQUEST_BYTES: usize = 25 * 1024;
/// Replayed audio is sent in pieces of 1 s, well under the request limit.
const REPLAY_PIECE_BYTES: usize = 8_000;
/// Unfinalised audio kept per stream for replay (30 s); older audio is dropped and counted.
const MAX_REPLAY_BYTES: usize = 240_000;
/// A stream that fails sooner than this after opening, without any result, is a failed open.
const FAST_FAIL: Duration = Duration::from_secs(2);
/// Mean absolute sample value below which a 20 ms frame counts as silence for rotation (≈ -40 dBFS).
const SILENCE_MEAN_ABS: u32 = 320;
const PARKED_STREAMS_MAX: usize = 256;

/// Hebrew phrase hints that every call needs: digits, weekdays, hours, "hour", "appointment".
const BUILTIN_HINTS_HE: &[&str] = &[
    "אפס",
    "אחת",
    "שתיים",
    "שלוש",
    "ארבע",
    "חמש",
    "שש",
    "שבע",
    "שמונה",
    "תשע",
    "עשר",
    "יום ראשון",
    "יום שני",
    "יום שלישי",
    "יום רביעי",
    "יום חמישי",
    "יום שישי",
    "שבת",
    "בשעה",
    "שעה",
    "חצי",
    "רבע",
    "בבוקר",
    "בצהריים",
    "בערב",
    "תור",
    "לקבוע תור",
    "לבטל תור",
];

/// Builds the Google providers and warms them; the caller falls back if this fails.
/// Finding credentials can probe the metadata server; never let start-up hang on it.
fn init_deadline(cfg: &Config) -> Duration {
    Duration::from_millis(cfg.google.request_timeout_ms.max(1) * 2)
}

pub async fn stt_from_config(
    cfg: &Config,
    stats: Arc<GoogleStats>,
) -> Result<GoogleStt, GoogleStartError> {
    let stt = tokio::time::timeout(init_deadline(cfg), GoogleStt::new(cfg, stats))
        .await
        .map_err(|_| GoogleStartError::CredentialsTimedOut)??;
    stt.warm().await?;
    Ok(stt)
}

pub async fn tts_from_config(
    cfg: &Config,
    stats: Arc<GoogleStats>,
) -> Result<GoogleTts, GoogleStartError> {
    let tts = tokio::time::timeout(init_deadline(cfg), GoogleTts::new(cfg, stats))
        .await
        .map_err(|_| GoogleStartError::CredentialsTimedOut)??;
    tts.warm().await?;
    Ok(tts)
}

/// Why a configured Google provider could not start.
#[derive(Debug, thiserror::Error)]
pub enum GoogleStartError {
    #[error("looking for Google credentials timed out")]
    CredentialsTimedOut,
    #[error(transparent)]
    Init(#[from] GoogleInitError),
    #[error("warm-up failed: {0}")]
    Warm(#[from] ProviderError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake_google::wav_file;

    #[test]
    fn grpc_statuses_map_to_failure_kinds() {
        use tonic::{Code, Status};
        let kind = |code| status_error("Google STT", &Status::new(code, "x")).kind();
        let retryable = FailureKind::Retryable { retry_after: None };
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Internal,
        ] {
            assert_eq!(kind(code), retryable, "{code:?}");
        }
        assert_eq!(kind(Code::DeadlineExceeded), FailureKind::Timeout);
        for code in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::NotFound,
        ] {
            assert_eq!(kind(code), FailureKind::Fatal, "{code:?}");
        }
    }

    #[test]
    fn debouncer_delivers_the_newest_partial_once_per_window() {
        let t0 = std::time::Instant::now();
        let mut d = PartialDebouncer::new(Duration::from_millis(50));
        assert_eq!(d.push(t0, "a".into()), None);
        assert_eq!(d.push(t0 + Duration::from_millis(10), "ab".into()), None);
        assert_eq!(d.poll(t0 + Duration::from_millis(49)), None);
        assert_eq!(d.deadline(), Some(t0 + Duration::from_millis(50)));
        assert_eq!(
            d.poll(t0 + Duration::from_millis(50)).as_deref(),
            Some("ab")
        );
        assert_eq!(d.poll(t0 + Duration::from_millis(200)), None);
        let mut zero = PartialDebouncer::new(Duration::ZERO);
        assert_eq!(zero.push(t0, "x".into()).as_deref(), Some("x"));
    }

    #[test]
    fn wav_header_is_parsed_not_skipped() {
        let data: Vec<u8> = (0..=255u8).collect();
        for extra in [false, true] {
            let wav = wav_file(7, 8, &data, extra);
            assert_eq!(wav_to_mulaw(&wav).unwrap(), data, "extra chunk: {extra}");
        }
        // LINEAR16 is encoded to mu-law.
        let pcm: Vec<i16> = vec![0, 1000, -1000, 32000];
        let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        let expected: Vec<u8> = pcm.iter().map(|&s| g711::encode(s)).collect();
        assert_eq!(
            wav_to_mulaw(&wav_file(1, 16, &bytes, true)).unwrap(),
            expected
        );
        // Headerless audio passes through; broken or foreign WAVs are errors, not noise.
        assert_eq!(wav_to_mulaw(&[1, 2, 3]).unwrap(), vec![1, 2, 3]);
        let wav = wav_file(7, 8, &data, false);
        assert_eq!(wav_to_mulaw(&wav[..20]), Err(WavError::Truncated));
        assert_eq!(wav_to_mulaw(&wav[..36]), Err(WavError::Truncated));
        // A `data` chunk before any `fmt ` chunk cannot be read.
        let mut data_first = wav[..12].to_vec();
        data_first.extend_from_slice(b"data");
        data_first.extend_from_slice(&4u32.to_le_bytes());
        data_first.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            wav_to_mulaw(&data_first),
            Err(WavError::Malformed(_))
        ));
        let mut wrong_rate = wav_file(7, 8, &data, false);
        wrong_rate[24..28].copy_from_slice(&16000u32.to_le_bytes());
        assert!(matches!(
            wav_to_mulaw(&wrong_rate),
            Err(WavError::Unsupported { rate: 16000, .. })
        ));
    }

    #[test]
    fn joined_finals_keep_words_apart() {
        let mut s = String::new();
        join_text(&mut s, "שלום");
        join_text(&mut s, "עולם");
        join_text(&mut s, " וכו");
        assert_eq!(s, "שלום עולם וכו");
    }

    #[test]
    fn silence_detection_on_mulaw_frames() {
        assert!(is_silent(&[0xFF; 160]));
        let loud: Vec<u8> = (0..160)
            .map(|i| g711::encode(if i % 2 == 0 { 8000 } else { -8000 }))
            .collect();
        assert!(!is_silent(&loud));
    }
}
