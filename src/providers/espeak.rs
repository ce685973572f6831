//! Offline text to speech with the `espeak-ng` command-line program: real (robotic) speech in
//! Hebrew and English with no network or model files, for demos, tests and as a fallback voice.
//!
//! One process per utterance. Its WAV output is read from stdout as it is produced and converted
//! on the fly (22050 Hz PCM → 8 kHz mu-law), so the first audio goes out within milliseconds
//! regardless of how long the text is, and a full playout buffer (the bounded `audio` channel)
//! stalls espeak-ng itself through the pipe.

use std::process::{ExitStatus, Stdio};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{ChildStderr, Command};
use tokio::sync::mpsc;

use crate::config::EspeakConfig;
use crate::providers::audio_file::{WavEncoding, parse_wav_header};
use crate::providers::{BoxFuture, TTS_MAX_CHUNK_BYTES, TextToSpeech, TtsError};
use crate::voice::g711;
use crate::voice::resample::Resampler;

/// 20 ms of 8 kHz mu-law: chunks are whole frames so the playout side never has to split one.
const FRAME_BYTES: usize = 160;
/// Largest chunk sent, in whole frames.
const CHUNK_BYTES: usize = TTS_MAX_CHUNK_BYTES / FRAME_BYTES * FRAME_BYTES;
/// A single command-line argument is limited to 128 KiB on Linux; a reply this long is a bug
/// upstream anyway.
const MAX_TEXT_BYTES: usize = 100_000;
/// How much of espeak-ng's stderr is kept for error messages.
const STDERR_KEEP: usize = 2048;

#[derive(Debug, Clone)]
pub struct EspeakTts {
    binary: String,
    speed: u32,
    voice_he: String,
    voice_en: String,
}

impl EspeakTts {
    pub fn new(cfg: &EspeakConfig) -> Self {
        Self {
            binary: cfg.binary.clone(),
            speed: cfg.speed,
            voice_he: cfg.voice_he.clone(),
            voice_en: cfg.voice_en.clone(),
        }
    }

    /// The voice for a BCP-47 language: `he*` (also the legacy `iw*`) is Hebrew, anything else
    /// English.
    pub fn voice_for(&self, language: &str) -> &str {
        let lang = language.trim().to_ascii_lowercase();
        if lang.starts_with("he") || lang.starts_with("iw") {
            &self.voice_he
        } else {
            &self.voice_en
        }
    }

    /// Synthesises a word in each configured voice and discards it: at start-up this turns a
    /// missing binary or voice into one clear log line instead of a failure on the first call.
    pub async fn check(&self) -> Result<(), TtsError> {
        for (language, word) in [("en", "ok"), ("he", "שלום")] {
            let (tx, mut rx) = mpsc::channel::<Bytes>(16);
            let drain = tokio::spawn(async move {
                let mut bytes = 0;
                while let Some(chunk) = rx.recv().await {
                    bytes += chunk.len();
                }
                bytes
            });
            self.synthesize(word.into(), language.into(), tx).await?;
            let bytes = drain
                .await
                .map_err(|e| TtsError::fatal(format!("espeak-ng check: {e}")))?;
            if bytes == 0 {
                return Err(TtsError::fatal(format!(
                    "espeak-ng check: voice '{}' produced no audio",
                    self.voice_for(language)
                )));
            }
        }
        Ok(())
    }
}

impl TextToSpeech for EspeakTts {
    fn name(&self) -> &'static str {
        "espeak"
    }

    fn synthesize(
        &self,
        text: String,
        language: String,
        audio: mpsc::Sender<Bytes>,
    ) -> BoxFuture<'static, Result<(), TtsError>> {
        let job = Job {
            binary: self.binary.clone(),
            speed: self.speed,
            voice: self.voice_for(&language).to_string(),
        };
        Box::pin(job.run(text, audio))
    }
}

struct Job {
    binary: String,
    speed: u32,
    voice: String,
}

/// How reading espeak-ng's output ended.
enum Streamed {
    /// stdout reached EOF; `audio` says whether a WAV header was ever seen.
    Eof { audio: bool },
    /// The receiver is gone (barge-in, call ended): nobody wants the rest.
    ReceiverGone,
}

impl Job {
    async fn run(self, text: String, audio: mpsc::Sender<Bytes>) -> Result<(), TtsError> {
        // An argument cannot hold NUL, and espeak-ng would stop at it anyway.
        let text = text.replace('\0', " ");
        if text.trim().is_empty() {
            return Ok(());
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(TtsError::fatal(format!(
                "text of {} bytes is too long for espeak-ng (limit {MAX_TEXT_BYTES})",
                text.len()
            )));
        }
        // The text is one argument after `--`: no shell, and text starting with '-' is not an
        // option. `-b 1`: the text is UTF-8 whatever the locale.
        let mut child = Command::new(&self.binary)
            .args(["-v", &self.voice, "-s", &self.speed.to_string(), "-b", "1", "--stdout", "--", &text])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => TtsError::fatal(format!(
                    "espeak-ng not found: cannot run '{}' (install espeak-ng, e.g. scripts/setup.sh, or set espeak.binary)",
                    self.binary
                )),
                // Out of processes or memory for now: another attempt may start it.
                _ => TtsError::retryable(format!("cannot start espeak-ng '{}': {e}", self.binary)),
            })?;
        let stderr = child.stderr.take().map(|s| tokio::spawn(read_capped(s)));
        let Some(stdout) = child.stdout.take() else {
            return Err(TtsError::fatal("espeak-ng stdout was not captured"));
        };

        let streamed = stream_wav_as_mulaw(stdout, &audio).await;
        let streamed = match streamed {
            Ok(s) => s,
            Err(e) => {
                let _ = child.kill().await;
                return Err(e);
            }
        };
        if let Streamed::ReceiverGone = streamed {
            // Killing (rather than letting it fill the pipe and block) ends it now; `kill` also
            // reaps it.
            let _ = child.kill().await;
            return Ok(());
        }
        let status = child
            .wait()
            .await
            .map_err(|e| TtsError::retryable(format!("waiting for espeak-ng: {e}")))?;
        if !status.success() {
            let stderr = match stderr {
                Some(task) => task.await.unwrap_or_default(),
                None => String::new(),
            };
            return Err(self.exit_error(status, &stderr));
        }
        match streamed {
            Streamed::Eof { audio: false } => Err(TtsError::fatal(format!(
                "espeak-ng (voice '{}') exited without writing audio",
                self.voice
            ))),
            _ => Ok(()),
        }
    }

    fn exit_error(&self, status: ExitStatus, stderr: &str) -> TtsError {
        let stderr = stderr.trim();
        let detail = if stderr.is_empty() {
            "no error output".to_string()
        } else {
            stderr.to_string()
        };
        TtsError::fatal(format!(
            "espeak-ng (voice '{}') failed with {status}: {detail}",
            self.voice
        ))
    }
}

/// Reads a WAV stream, converts its samples to 8 kHz mu-law and sends them in whole 20 ms frames
/// (at most [`CHUNK_BYTES`] per message) as soon as they exist. The header is never sent.
async fn stream_wav_as_mulaw(
    mut wav: impl AsyncRead + Unpin,
    audio: &mpsc::Sender<Bytes>,
) -> Result<Streamed, TtsError> {
    let failed = |what: String| TtsError::fatal(format!("espeak-ng output: {what}"));
    let mut read_buf = vec![0u8; 16 * 1024];
    // Bytes before the header is complete; afterwards, a partial sample frame carried over.
    let mut carry: Vec<u8> = Vec::new();
    let mut stream: Option<PcmStream> = None;
    let mut mulaw: Vec<u8> = Vec::with_capacity(4 * CHUNK_BYTES);

    loop {
        let n = wav
            .read(&mut read_buf)
            .await
            .map_err(|e| failed(format!("read error: {e}")))?;
        if n == 0 {
            break;
        }
        let bytes = &read_buf[..n];
        if let Some(pcm) = stream.as_mut() {
            pcm.push(bytes, &mut carry, &mut mulaw);
        } else {
            carry.extend_from_slice(bytes);
            let Some(header) = parse_wav_header(&carry).map_err(|e| failed(e.to_string()))? else {
                continue;
            };
            if header.encoding != WavEncoding::Pcm16 {
                return Err(failed(format!(
                    "expected 16-bit PCM WAV, got {:?}",
                    header.encoding
                )));
            }
            let resampler =
                Resampler::new(header.sample_rate, 8000).map_err(|e| failed(e.to_string()))?;
            let mut pcm = PcmStream {
                channels: header.channels as usize,
                // Some streaming writers declare 0 for "unknown".
                remaining: match header.data_len {
                    0 => usize::MAX,
                    len => len as usize,
                },
                resampler,
                samples: Vec::new(),
                resampled: Vec::new(),
            };
            let rest = carry.split_off(header.data_offset.min(carry.len()));
            carry.clear();
            pcm.push(&rest, &mut carry, &mut mulaw);
            stream = Some(pcm);
        }
        let whole_frames = mulaw.len() / FRAME_BYTES * FRAME_BYTES;
        if !send_chunks(audio, &mut mulaw, whole_frames).await {
            return Ok(Streamed::ReceiverGone);
        }
    }

    let Some(mut pcm) = stream else {
        return Ok(Streamed::Eof { audio: false });
    };
    pcm.finish(&mut mulaw);
    let all = mulaw.len();
    if !send_chunks(audio, &mut mulaw, all).await {
        return Ok(Streamed::ReceiverGone);
    }
    Ok(Streamed::Eof { audio: true })
}

/// Sends the first `len` bytes of `mulaw` in chunks of at most [`CHUNK_BYTES`] and removes them.
/// `false` when the receiver is gone.
async fn send_chunks(audio: &mpsc::Sender<Bytes>, mulaw: &mut Vec<u8>, len: usize) -> bool {
    let mut sent = 0;
    while sent < len {
        let end = (sent + CHUNK_BYTES).min(len);
        // Awaiting here is the backpressure: a full playout buffer stalls the reader, the pipe
        // fills and espeak-ng blocks.
        if audio
            .send(Bytes::copy_from_slice(&mulaw[sent..end]))
            .await
            .is_err()
        {
            return false;
        }
        sent = end;
    }
    mulaw.drain(..len);
    true
}

/// PCM from the `data` chunk onwards → 8 kHz mu-law.
struct PcmStream {
    channels: usize,
    /// Bytes of the `data` chunk still expected; streaming writers declare a huge placeholder.
    remaining: usize,
    resampler: Resampler,
    samples: Vec<i16>,
    resampled: Vec<i16>,
}

impl PcmStream {
    fn push(&mut self, bytes: &[u8], carry: &mut Vec<u8>, mulaw: &mut Vec<u8>) {
        let bytes = &bytes[..bytes.len().min(self.remaining)];
        self.remaining -= bytes.len();
        carry.extend_from_slice(bytes);
        let frame = 2 * self.channels;
        let whole = carry.len() / frame * frame;
        self.samples.clear();
        for f in carry[..whole].chunks_exact(frame) {
            let sum: i32 = f
                .chunks_exact(2)
                .map(|s| i16::from_le_bytes([s[0], s[1]]) as i32)
                .sum();
            self.samples.push((sum / self.channels as i32) as i16);
        }
        carry.drain(..whole);
        self.resampled.clear();
        self.resampler.process(&self.samples, &mut self.resampled);
        encode_append(&self.resampled, mulaw);
    }

    fn finish(&mut self, mulaw: &mut Vec<u8>) {
        self.resampled.clear();
        self.resampler.flush(&mut self.resampled);
        encode_append(&self.resampled, mulaw);
    }
}

fn encode_append(pcm: &[i16], mulaw: &mut Vec<u8>) {
    let start = mulaw.len();
    mulaw.resize(start + pcm.len(), g711::SILENCE);
    g711::encode_into(pcm, &mut mulaw[start..]);
}

async fn read_capped(mut stderr: ChildStderr) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 1024];
    // Keep reading past the cap so espeak-ng never blocks on a full stderr pipe.
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = STDERR_KEEP.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tts() -> EspeakTts {
        EspeakTts::new(&EspeakConfig::default())
    }

    /// Runs one synthesis to completion, collecting the chunks.
    async fn synth(
        tts: &EspeakTts,
        text: &str,
        language: &str,
    ) -> (Result<(), TtsError>, Vec<Bytes>) {
        let (tx, mut rx) = mpsc::channel(8);
        let fut = tts.synthesize(text.into(), language.into(), tx);
        let collect = async {
            let mut chunks = Vec::new();
            while let Some(c) = rx.recv().await {
                chunks.push(c);
            }
            chunks
        };
        tokio::join!(fut, collect)
    }

    fn rms(mulaw: &[u8]) -> f64 {
        (mulaw
            .iter()
            .map(|b| (g711::decode(*b) as f64).powi(2))
            .sum::<f64>()
            / mulaw.len() as f64)
            .sqrt()
    }

    fn assert_chunking(chunks: &[Bytes]) {
        assert!(!chunks.is_empty());
        for (i, c) in chunks.iter().enumerate() {
            assert!(
                !c.is_empty() && c.len() <= TTS_MAX_CHUNK_BYTES,
                "chunk {i}: {} bytes",
                c.len()
            );
            if i + 1 < chunks.len() {
                assert_eq!(
                    c.len() % FRAME_BYTES,
                    0,
                    "chunk {i} not frame-aligned: {} bytes",
                    c.len()
                );
            }
        }
    }

    fn long_text(sentences: usize) -> String {
        (0..sentences)
            .map(|i| format!("This is sentence number {i} of a long reply that keeps going. "))
            .collect()
    }

    #[tokio::test]
    async fn english_and_hebrew_produce_speech_of_plausible_length() {
        let tts = tts();
        for (text, language) in [
            ("Hello, your appointment is booked for tomorrow.", "en-US"),
            ("שלום, התור שלך נקבע למחר בבוקר.", "he-IL"),
        ] {
            let (result, chunks) = synth(&tts, text, language).await;
            result.unwrap_or_else(|e| {
                panic!("{language}: {e} (is espeak-ng installed? scripts/setup.sh)")
            });
            assert_chunking(&chunks);
            let audio: Vec<u8> = chunks.concat();
            let secs = audio.len() as f64 / 8000.0;
            assert!((0.5..=5.0).contains(&secs), "{language}: {secs} s");
            assert!(
                rms(&audio) > 500.0,
                "{language}: rms {} is near silence",
                rms(&audio)
            );
            assert_ne!(
                &audio[..4],
                b"RIFF",
                "{language}: header leaked into the audio"
            );
        }
    }

    /// The streamed bytes are exactly what converting espeak-ng's complete WAV file gives, so the
    /// header is stripped and no sample is lost or duplicated at read boundaries.
    #[tokio::test]
    async fn streamed_audio_equals_converting_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("ref.wav");
        let text = "Streaming must not change a single byte.";
        let status = std::process::Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "165", "-b", "1", "-w"])
            .arg(&wav)
            .args(["--", text])
            .status()
            .expect("espeak-ng runs (scripts/setup.sh installs it)");
        assert!(status.success());
        let expected = crate::providers::audio_file::load_mulaw_8k(&wav).unwrap();
        let (result, chunks) = synth(&tts(), text, "en").await;
        result.unwrap();
        assert_eq!(chunks.concat(), expected);
    }

    #[tokio::test]
    async fn first_chunk_arrives_while_espeak_is_still_running() {
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(tts().synthesize(long_text(12), "en".into(), tx));
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(!first.is_empty());
        // Held back by the one-slot channel, the synthesis cannot have finished: that is both the
        // streaming and the backpressure.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!task.is_finished());
        let mut total = first.len();
        let mut chunks = vec![first];
        while let Some(c) = rx.recv().await {
            total += c.len();
            chunks.push(c);
        }
        task.await.unwrap().unwrap();
        assert_chunking(&chunks);
        assert!(total > 25 * 8000, "only {} s of audio", total / 8000);
    }

    /// A wrapper that records espeak-ng's pid, so the test can see the process die.
    fn pid_recording_tts(dir: &std::path::Path) -> (EspeakTts, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let pid_file = dir.join("pid");
        let script = dir.join("espeak-wrapper.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho $$ > '{}'\nexec espeak-ng \"$@\"\n",
                pid_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = EspeakConfig {
            binary: script.display().to_string(),
            ..EspeakConfig::default()
        };
        (EspeakTts::new(&cfg), pid_file)
    }

    /// Running (not exited and not a zombie awaiting reaping).
    fn alive(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z'),
            Err(_) => false,
        }
    }

    async fn wait_dead(pid: &str) -> bool {
        for _ in 0..100 {
            if !alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn dropping_the_receiver_ends_synthesis_and_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let (tts, pid_file) = pid_recording_tts(dir.path());
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(tts.synthesize(long_text(40), "en".into(), tx));
        rx.recv().await.unwrap();
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_string();
        assert!(alive(&pid));
        drop(rx);
        let result = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("synthesis hung")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
        assert!(wait_dead(&pid).await, "espeak-ng {pid} still running");
    }

    #[tokio::test]
    async fn aborting_the_task_kills_espeak() {
        let dir = tempfile::tempdir().unwrap();
        let (tts, pid_file) = pid_recording_tts(dir.path());
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(tts.synthesize(long_text(40), "en".into(), tx));
        rx.recv().await.unwrap();
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_string();
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(
            wait_dead(&pid).await,
            "espeak-ng {pid} still running after abort"
        );
    }

    #[tokio::test]
    async fn missing_binary_is_a_clear_error() {
        let cfg = EspeakConfig {
            binary: "/nonexistent/espeak-ng".into(),
            ..EspeakConfig::default()
        };
        let tts = EspeakTts::new(&cfg);
        let (result, chunks) = synth(&tts, "hello", "en").await;
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("espeak-ng not found") && err.contains("/nonexistent/espeak-ng"),
            "{err}"
        );
        assert!(chunks.is_empty());
        assert!(tts.check().await.is_err());
    }

    #[tokio::test]
    async fn failing_espeak_reports_exit_status_and_stderr() {
        let cfg = EspeakConfig {
            voice_en: "nosuchvoice".into(),
            ..EspeakConfig::default()
        };
        let tts = EspeakTts::new(&cfg);
        let (result, _) = synth(&tts, "hello", "en").await;
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("nosuchvoice") && err.contains("does not exist"),
            "{err}"
        );
        assert!(tts.check().await.is_err());
    }

    #[tokio::test]
    async fn check_passes_with_the_default_config() {
        tts().check().await.unwrap();
    }

    #[tokio::test]
    async fn odd_text_is_passed_literally() {
        // Would be options, shell syntax or nothing at all if the text were not one argument.
        for text in ["-v xx --help", "$(rm -rf /); `x` 'q' \"d\"", "a\0b"] {
            let (result, chunks) = synth(&tts(), text, "en").await;
            result.unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(!chunks.is_empty(), "{text:?}");
        }
        let (result, chunks) = synth(&tts(), "  ", "en").await;
        assert!(result.is_ok() && chunks.is_empty());
        let (result, _) = synth(&tts(), &"a".repeat(MAX_TEXT_BYTES + 1), "en").await;
        assert!(result.unwrap_err().to_string().contains("too long"));
    }

    #[test]
    fn voice_follows_the_language_prefix() {
        let tts = tts();
        for (language, voice) in [
            ("he-IL", "he"),
            ("HE", "he"),
            ("iw", "he"),
            ("en-US", "en-us"),
            ("", "en-us"),
            ("fr", "en-us"),
        ] {
            assert_eq!(tts.voice_for(language), voice, "{language}");
        }
    }
}
