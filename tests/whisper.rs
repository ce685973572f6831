//! The local Whisper recogniser on real speech, through the same path a call uses: 8 kHz mu-law
//! frames → the session's inbound audio graph (decode, 8k→16k upsampler) → `SttInput::Pcm16k`
//! frames → `UtteranceEnd` → `SttEvent::Final`.
//!
//! English: ten Asterisk core prompts (real human telephony recordings, package
//! asterisk-core-sounds-en-wav) against their published transcripts. Hebrew: there is no human
//! Hebrew speech on this machine, so espeak-ng sentences; only Hebrew script is asserted and the
//! word error rate is printed.
//!
//! The model tests need `--features whisper` and `scripts/fetch-models.sh`. Without the models
//! they print a skip notice locally but FAIL when `CI` is set, so CI cannot pass without running
//! them.

use kav::app::providers_from_config;
use kav::config::Config;

#[tokio::test]
async fn missing_whisper_models_are_a_start_up_error_and_auto_means_keypad_only() {
    let empty = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.call.stt = "whisper".into();
    cfg.call.agent = "simulated".into();
    cfg.call.tts = "simulated".into();
    cfg.whisper.model_dir = empty.path().display().to_string();
    // Configured but cannot start: an error with the reason, never a simulated recogniser.
    let err = providers_from_config(&cfg)
        .await
        .err()
        .expect("whisper without models must not start");
    let text = err.to_string();
    assert!(
        text.contains("whisper") && text.contains("cannot start"),
        "{text}"
    );
    // The default (`auto`) without models: no recogniser, keypad input only.
    cfg.call.stt = "auto".into();
    let providers = providers_from_config(&cfg).await.unwrap();
    assert_eq!(providers.stt.name(), "keypad-only");
}

#[cfg(feature = "whisper")]
mod with_models {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use kav::config::{Config, WhisperConfig};
    use kav::providers::audio_file::load_mulaw_8k;
    use kav::providers::whisper::{WhisperError, WhisperStt, check_model_dir};
    use kav::providers::{CallContext, SpeechToText, SttEvent, SttInput};
    use kav::voice::audio::InboundAudio;
    use kav::voice::wer::WordErrorCount;
    use tokio::sync::mpsc;

    const ASTERISK_SOUNDS: &str = "/usr/share/asterisk/sounds/en";
    /// The package's own transcript file lives under /usr/share/doc, which minimal Debian
    /// images exclude; the lines for the prompts used here are kept as a fixture.
    const ASTERISK_TRANSCRIPTS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/asterisk/core-sounds-en-transcripts.txt"
    );
    /// Prompts without digits or bracketed tone descriptions, 2.8 to 5.5 s each (38 s in all).
    const ENGLISH_PROMPTS: [&str; 10] = [
        "agent-alreadyon",
        "auth-incorrect",
        "conf-getconfno",
        "conf-invalid",
        "conf-onlyperson",
        "conf-waitforleader",
        "confbridge-lock-no-join",
        "followme/pls-hold-while-try",
        "pbx-invalidpark",
        "dir-nomore",
    ];
    /// Measured on this machine: see `english_asterisk_prompts_...`. Aggregate over the ten
    /// prompts, after normalisation (case, punctuation).
    const MAX_ENGLISH_WER: f64 = 0.10;
    /// Guards against a hang only; not a performance assertion.
    const HANG_GUARD: Duration = Duration::from_secs(300);

    fn models_dir() -> PathBuf {
        std::env::var_os("KAV_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
    }

    /// The config the tests run with, or `None` (skip) when the models are missing locally.
    /// Under CI a missing model is a failure.
    fn whisper_config() -> Option<WhisperConfig> {
        let cfg = WhisperConfig {
            model_dir: models_dir().display().to_string(),
            ..Config::default().whisper
        };
        for model in [&cfg.model_en, &cfg.model_he] {
            if let Err(e) = check_model_dir(model, &models_dir().join(model)) {
                if std::env::var_os("CI").is_some() {
                    panic!("CI is set and the Whisper models are missing: {e}");
                }
                eprintln!("SKIPPED (no models): {e}");
                return None;
            }
        }
        Some(cfg)
    }

    fn reference_transcripts() -> std::collections::HashMap<String, String> {
        std::fs::read_to_string(ASTERISK_TRANSCRIPTS)
            .unwrap_or_else(|e| panic!("cannot read {ASTERISK_TRANSCRIPTS}: {e}"))
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    /// 20 ms 16 kHz frames exactly as a call produces them from Twilio's mu-law.
    fn call_frames(mulaw: &[u8]) -> Vec<[i16; 320]> {
        let mut graph = InboundAudio::new(2, false, true);
        mulaw
            .chunks_exact(160)
            .map(|f| {
                graph.process(f.try_into().unwrap());
                *graph.pcm16k()
            })
            .collect()
    }

    fn asterisk_frames(prompt: &str) -> Vec<[i16; 320]> {
        call_frames(&load_mulaw_8k(format!("{ASTERISK_SOUNDS}/{prompt}.wav")).unwrap())
    }

    struct Call {
        input: mpsc::Sender<SttInput>,
        events: mpsc::Receiver<SttEvent>,
        task: tokio::task::JoinHandle<Result<(), kav::providers::SttError>>,
    }

    fn open_call(stt: &WhisperStt, language: &str) -> Call {
        let (input, input_rx) = mpsc::channel(64);
        let (events_tx, events) = mpsc::channel(16);
        let ctx = CallContext {
            call_sid: "CAwhisper".into(),
            language: language.into(),
            ..CallContext::default()
        };
        let task = tokio::spawn(stt.stream(ctx, input_rx, events_tx));
        Call {
            input,
            events,
            task,
        }
    }

    impl Call {
        async fn say(&self, frames: &[[i16; 320]]) {
            for f in frames {
                self.input.send(SttInput::Pcm16k(*f)).await.unwrap();
            }
        }

        async fn end_utterance(&mut self) -> String {
            self.input.send(SttInput::UtteranceEnd).await.unwrap();
            match tokio::time::timeout(HANG_GUARD, self.events.recv()).await {
                Ok(Some(SttEvent::Final { text })) => text,
                other => panic!("expected a final transcript, got {other:?}"),
            }
        }

        /// Closes the input; returns the events that arrived after the last `end_utterance`.
        async fn hang_up(self) -> Vec<SttEvent> {
            let Call {
                input,
                mut events,
                task,
            } = self;
            drop(input);
            task.await.unwrap().unwrap();
            let mut rest = Vec::new();
            while let Some(e) = events.recv().await {
                rest.push(e);
            }
            rest
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn english_asterisk_prompts_are_transcribed_through_the_call_path() {
        let Some(cfg) = whisper_config() else { return };
        let stt = WhisperStt::new(&cfg).unwrap();
        let references = reference_transcripts();
        let mut call = open_call(&stt, "en-US");
        let mut total = WordErrorCount::default();
        for prompt in ENGLISH_PROMPTS {
            let reference = &references[prompt];
            call.say(&asterisk_frames(prompt)).await;
            let text = call.end_utterance().await;
            let count = WordErrorCount::of(reference, &text);
            eprintln!(
                "{prompt}: WER {:.2}\n  ref: {reference}\n  hyp: {text}",
                count.rate()
            );
            total += count;
        }
        assert!(call.hang_up().await.is_empty());
        eprintln!(
            "English ({}): {} errors / {} words, WER {:.3}",
            cfg.model_en,
            total.errors,
            total.reference_words,
            total.rate()
        );
        assert!(
            total.rate() <= MAX_ENGLISH_WER,
            "WER {:.3} above {MAX_ENGLISH_WER}",
            total.rate()
        );
        assert_eq!(stt.stats().transcriptions, ENGLISH_PROMPTS.len() as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn discarded_audio_is_forgotten_and_silence_gives_no_final() {
        let Some(cfg) = whisper_config() else { return };
        let stt = WhisperStt::new(&cfg).unwrap();
        let mut call = open_call(&stt, "en-US");
        // Noise the VAD later rejected, then the real utterance: only the latter is transcribed.
        call.say(&asterisk_frames("conf-waitforleader")).await;
        call.input.send(SttInput::UtteranceDiscarded).await.unwrap();
        call.say(&asterisk_frames("dir-nomore")).await;
        let text = call.end_utterance().await.to_lowercase();
        assert!(text.contains("directory"), "{text}");
        assert!(!text.contains("leader"), "{text}");
        // An utterance end with no audio since the last one transcribes nothing.
        call.input.send(SttInput::UtteranceEnd).await.unwrap();
        assert!(call.hang_up().await.is_empty());
        assert_eq!(stt.stats().transcriptions, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn utterance_past_the_cap_is_cut_and_counted() {
        let Some(mut cfg) = whisper_config() else {
            return;
        };
        cfg.max_utterance_ms = 2_000;
        let stt = WhisperStt::new(&cfg).unwrap();
        let frames = asterisk_frames("agent-alreadyon"); // 5.5 s
        let mut call = open_call(&stt, "en-US");
        call.say(&frames).await;
        let text = call.end_utterance().await.to_lowercase();
        // The first two seconds: "That agent is already logged on ...".
        assert!(text.contains("agent"), "{text}");
        assert!(!text.contains("pound"), "{text}");
        assert!(call.hang_up().await.is_empty());
        assert_eq!(
            stt.stats().dropped_samples,
            (frames.len() * 320 - 32_000) as u64
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_with_a_clear_error() {
        let Some(mut cfg) = whisper_config() else {
            return;
        };
        cfg.max_concurrent = 1;
        cfg.max_queued = 0;
        let stt = WhisperStt::new(&cfg).unwrap();
        let pcm: Vec<i16> = asterisk_frames("dir-nomore").concat();
        // Both start in the same poll: the first takes the only slot, the second must not wait.
        let (first, second) = tokio::join!(
            stt.transcribe(pcm.clone(), "en"),
            stt.transcribe(pcm.clone(), "en")
        );
        assert!(first.unwrap().text.to_lowercase().contains("directory"));
        match second {
            Err(e @ WhisperError::Busy { .. }) => {
                assert!(e.to_string().contains("refusing"), "{e}")
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        assert_eq!(stt.stats().busy_rejections, 1);
        // The slot is free again afterwards.
        assert!(stt.transcribe(pcm, "en").await.is_ok());
    }

    #[tokio::test]
    async fn configured_whisper_is_used_when_the_models_are_present() {
        let Some(whisper) = whisper_config() else {
            return;
        };
        let mut cfg = Config::default();
        cfg.call.stt = "whisper".into();
        cfg.call.agent = "simulated".into();
        cfg.call.tts = "simulated".into();
        cfg.whisper = whisper;
        let providers = kav::app::providers_from_config(&cfg).await.unwrap();
        assert_eq!(providers.stt.name(), "whisper");
        assert_eq!(
            providers.stt.audio_format(),
            kav::providers::SttAudioFormat::Pcm16k
        );
        // Whisper's own counters reach /metrics; warm-up runs one inference per language.
        let metrics = providers.metrics();
        providers.stt.warm().await.unwrap();
        let text = metrics.render_prometheus(&[]);
        assert!(
            text.lines()
                .any(|l| l == "kav_whisper_transcriptions_total 2"),
            "{text}"
        );
        assert!(
            text.contains("kav_whisper_busy_rejections_total 0"),
            "{text}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn warm_loads_the_models_and_runs_an_inference_each() {
        let Some(cfg) = whisper_config() else { return };
        let stt = WhisperStt::new(&cfg).unwrap();
        stt.warm().await.unwrap();
        assert_eq!(stt.stats().transcriptions, 2);
        assert_eq!(stt.stats().failures, 0);
    }

    /// Synthetic Hebrew (espeak-ng reads unvocalised text poorly), so accuracy is only reported.
    const HEBREW_SENTENCES: [&str; 4] = [
        "שלום, אני רוצה לקבוע תור למחר בבוקר",
        "מה השעות שלכם ביום שלישי",
        "תודה רבה, להתראות",
        "אפשר לדבר עם נציג",
    ];

    fn espeak_hebrew(text: &str, dir: &Path, n: usize) -> Vec<[i16; 320]> {
        let path = dir.join(format!("he{n}.wav"));
        let status = std::process::Command::new("espeak-ng")
            .args(["-v", "he", "-s", "150", "-w"])
            .arg(&path)
            .arg(text)
            .status()
            .expect("espeak-ng runs (scripts/setup.sh installs it)");
        assert!(status.success());
        call_frames(&load_mulaw_8k(&path).unwrap())
    }

    fn has_hebrew_letters(text: &str) -> bool {
        text.chars().any(|c| ('\u{05d0}'..='\u{05ea}').contains(&c))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hebrew_speech_comes_back_in_hebrew_script() {
        let Some(cfg) = whisper_config() else { return };
        let stt = WhisperStt::new(&cfg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut call = open_call(&stt, "he-IL");
        let mut total = WordErrorCount::default();
        for (n, sentence) in HEBREW_SENTENCES.iter().enumerate() {
            call.say(&espeak_hebrew(sentence, dir.path(), n)).await;
            let text = call.end_utterance().await;
            let count = WordErrorCount::of(sentence, &text);
            eprintln!(
                "he #{n}: WER {:.2}\n  ref: {sentence}\n  hyp: {text}",
                count.rate()
            );
            total += count;
            assert!(has_hebrew_letters(&text), "not Hebrew script: {text:?}");
        }
        assert!(call.hang_up().await.is_empty());
        eprintln!(
            "Hebrew (espeak-ng, {}): {} errors / {} words, WER {:.3} (reported, not asserted)",
            cfg.model_he,
            total.errors,
            total.reference_words,
            total.rate()
        );
    }

    /// A WhatsApp voice note (OGG/Opus, espeak-ng speech) through the same decode-and-transcribe
    /// path the WhatsApp worker uses, with the real recogniser.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn whatsapp_voice_note_is_transcribed_by_whisper() {
        let Some(cfg) = whisper_config() else { return };
        let stt = WhisperStt::new(&cfg).unwrap();
        let ogg = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/audio-samples/voice_note_en.ogg"
        ))
        .unwrap();
        let ctx = CallContext {
            call_sid: "wa-voice-note".into(),
            language: "en-US".into(),
            ..CallContext::default()
        };
        let (text, audio) =
            kav::channels::whatsapp::voice_note::transcribe(&stt, ctx, &ogg, HANG_GUARD)
                .await
                .expect("voice note transcribed");
        let reference = "Check next Friday at nine in the evening for the Barcelona room.";
        let count = WordErrorCount::of(reference, &text);
        eprintln!(
            "voice note ({:.2} s): WER {:.2}\n  ref: {reference}\n  hyp: {text}",
            audio.duration().as_secs_f64(),
            count.rate()
        );
        // Measured: WER 0.25 with tiny.en; espeak-ng's "Barcelona" comes back as "Marcello"
        // (synthetic speech; names are the weak spot).
        assert!(count.rate() <= 0.3, "WER {:.2}: {text:?}", count.rate());
        let lower = text.to_lowercase();
        for word in ["check", "friday", "evening", "room"] {
            assert!(lower.contains(word), "{word:?} missing from {text:?}");
        }
    }
}
