#[allow(unused_imports)]
use super::*;

// ------------------------------------------------------------------ stats

/// Provider measurements, process-wide, registered in the metrics registry as `kav_google_*`.
/// Latencies in ms: STT from our utterance end to the final delivered; TTS from the request to
/// the first audio byte handed to the pacer.
pub struct GoogleStats {
    pub stt_streams_opened: Counter,
    pub stt_rotations: Counter,
    pub stt_reconnects: Counter,
    pub stt_audio_bytes: Counter,
    pub stt_requests: Counter,
    pub stt_requests_dropped: Counter,
    pub stt_replay_bytes_dropped: Counter,
    pub stt_finals: Counter,
    pub stt_streams_given_up: Counter,
    pub tts_requests: Counter,
    pub tts_cache_hits: Counter,
    pub tts_errors: Counter,
    pub(super) stt_final_ms: Histogram,
    pub(super) tts_first_audio_ms: Histogram,
}

/// Failed standby opens back off with the one retry policy (200 ms doubling to 1.6 s, jittered).
pub(super) const STANDBY_BACKOFF: crate::retry::Backoff =
    crate::retry::Backoff::new(Duration::from_millis(200), Duration::from_millis(1600));

pub(super) fn bump(c: &Counter, n: u64) {
    c.inc_by(n);
}

pub(super) fn record(h: &Histogram, d: Duration) {
    h.observe(d.as_secs_f64() * 1000.0);
}

impl Default for GoogleStats {
    fn default() -> Self {
        Self {
            stt_streams_opened: Counter::default(),
            stt_rotations: Counter::default(),
            stt_reconnects: Counter::default(),
            stt_audio_bytes: Counter::default(),
            stt_requests: Counter::default(),
            stt_requests_dropped: Counter::default(),
            stt_replay_bytes_dropped: Counter::default(),
            stt_finals: Counter::default(),
            stt_streams_given_up: Counter::default(),
            tts_requests: Counter::default(),
            tts_cache_hits: Counter::default(),
            tts_errors: Counter::default(),
            stt_final_ms: crate::metrics::latency_histogram(),
            tts_first_audio_ms: crate::metrics::latency_histogram(),
        }
    }
}

impl crate::metrics::MetricsSource for GoogleStats {
    fn register(&self, registry: &mut Registry) {
        let google = registry.sub_registry_with_prefix("kav_google");
        let counters: [(&str, &str, &Counter); 12] = [
            (
                "stt_streams_opened",
                "StreamingRecognize calls opened",
                &self.stt_streams_opened,
            ),
            (
                "stt_rotations",
                "Streams replaced before Google's duration limit",
                &self.stt_rotations,
            ),
            (
                "stt_reconnects",
                "Streams that died mid-utterance and were replayed",
                &self.stt_reconnects,
            ),
            (
                "stt_audio_bytes",
                "Mu-law bytes sent",
                &self.stt_audio_bytes,
            ),
            ("stt_requests", "Audio requests sent", &self.stt_requests),
            (
                "stt_requests_dropped",
                "Audio requests not queued (stalled or closed stream)",
                &self.stt_requests_dropped,
            ),
            (
                "stt_replay_bytes_dropped",
                "Unfinalised audio too old to keep for replay",
                &self.stt_replay_bytes_dropped,
            ),
            (
                "stt_finals",
                "Final transcripts delivered",
                &self.stt_finals,
            ),
            (
                "stt_streams_given_up",
                "Half-closed streams that gave no final in time",
                &self.stt_streams_given_up,
            ),
            ("tts_requests", "SynthesizeSpeech calls", &self.tts_requests),
            (
                "tts_cache_hits",
                "Fixed phrases served from memory",
                &self.tts_cache_hits,
            ),
            ("tts_errors", "Failed syntheses", &self.tts_errors),
        ];
        crate::metrics::register_all(
            google,
            &counters,
            &[
                (
                    "stt_final_after_end_ms",
                    "Our utterance end to the final transcript, ms",
                    &self.stt_final_ms,
                ),
                (
                    "tts_first_audio_ms",
                    "TTS request to the first audio byte, ms",
                    &self.tts_first_audio_ms,
                ),
            ],
        );
    }
}

impl GoogleStats {
    pub fn get(c: &Counter) -> u64 {
        c.get()
    }
}
