//! Google STT/TTS clients against the fake gRPC servers in `kav::testing::fake_google` on
//! 127.0.0.1:0, and one simulated Twilio call through `kav serve` with both Google providers.
//! Assertions are on what crossed the wire and what was delivered, never on timings.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kav::caller::{self, Step, synthetic_speech};
use kav::config::Config;
use kav::providers::google::{GoogleStats, GoogleStt, GoogleTts};
use kav::providers::*;
use kav::testing::fake_google::{
    FakeGoogle, SILENT_FRAME, ScriptedUtterance, SpeechFakeConfig, StreamFault,
    numbered_speech_frame as speech_frame,
};
use kav::voice::g711;
use support::*;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The stats as they appear on `/metrics` (through the one registry).
fn rendered(stats: std::sync::Arc<kav::providers::google::GoogleStats>) -> String {
    let metrics = kav::metrics::Metrics::new();
    metrics.add_source(stats);
    metrics.render_prometheus(&[])
}

async fn bounded<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time bound")
}

fn google_config(fake: &FakeGoogle) -> Config {
    let mut cfg = Config::default();
    cfg.google.stt_endpoint = fake.endpoint();
    cfg.google.tts_endpoint = fake.endpoint();
    cfg.google.phrase_hints = vec!["תספורת".into()];
    cfg
}

struct Running {
    input: mpsc::Sender<SttInput>,
    events: mpsc::Receiver<SttEvent>,
    task: JoinHandle<Result<(), SttError>>,
    sent: Vec<u8>,
}

impl Running {
    fn start(stt: &GoogleStt, call_sid: &str) -> Self {
        let (input, in_rx) = mpsc::channel(1024);
        let (ev_tx, events) = mpsc::channel(64);
        let call = CallContext {
            call_sid: call_sid.into(),
            language: "he-IL".into(),
            ..Default::default()
        };
        let task = tokio::spawn(stt.stream(call, in_rx, ev_tx));
        Self {
            input,
            events,
            task,
            sent: Vec::new(),
        }
    }

    async fn frame(&mut self, f: [u8; 160]) {
        self.sent.extend_from_slice(&f);
        self.input.send(SttInput::Mulaw(f)).await.unwrap();
    }

    async fn speak(&mut self, frames: std::ops::Range<usize>, pace: bool) {
        for n in frames {
            self.frame(speech_frame(n)).await;
            if pace {
                tokio::time::sleep(ms(20)).await;
            }
        }
    }

    async fn send(&self, input: SttInput) {
        self.input.send(input).await.unwrap();
    }

    /// Events until the first final (inclusive).
    async fn until_final(&mut self) -> Vec<SttEvent> {
        let mut got = Vec::new();
        while let Some(ev) = self.events.recv().await {
            let done = matches!(ev, SttEvent::Final { .. });
            got.push(ev);
            if done {
                return got;
            }
        }
        panic!("events closed before a final: {got:?}");
    }

    /// Nothing more arrives for a while (used after the final to prove it came once).
    async fn no_more_events(&mut self) -> Vec<SttEvent> {
        let mut extra = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout(ms(300), self.events.recv()).await {
            extra.push(ev);
        }
        extra
    }
}

fn finals(events: &[SttEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Final { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

async fn connected_stt(cfg: &Config) -> GoogleStt {
    let stt = GoogleStt::new(cfg, Arc::new(GoogleStats::default()))
        .await
        .expect("client");
    stt.warm().await.expect("warm");
    stt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_first_small_requests_and_mulaw_unchanged() {
    bounded(20, async {
        let fake = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        fake.script([ScriptedUtterance::new(&["שלום"], "שלום לך")]);
        let stt = connected_stt(&google_config(&fake)).await;
        assert_eq!(stt.audio_format(), SttAudioFormat::Mulaw8k);
        let mut call = Running::start(&stt, "CA1");
        call.speak(0..53, false).await;
        call.send(SttInput::UtteranceEnd).await;
        let events = call.until_final().await;
        assert_eq!(finals(&events), vec!["שלום לך"]);
        assert!(
            rendered(stt.stats().clone()).contains("\nkav_google_stt_final_after_end_ms_count 1\n"),
            "utterance end → final measured"
        );

        let streams = fake.streams();
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
        let used: Vec<_> = streams.iter().filter(|s| !s.audio.is_empty()).collect();
        assert_eq!(used.len(), 1, "{streams:#?}");
        let s = used[0];
        assert_eq!(s.audio, call.sent, "mu-law reaches Google byte for byte");
        assert!(s.half_closed, "utterance end half-closes the stream");
        // 100 ms per request (800 bytes), the remainder flushed at the utterance end.
        assert!(s.request_sizes.iter().all(|&n| n <= 25 * 1024));
        assert_eq!(&s.request_sizes[..10], &[800; 10]);
        assert_eq!(&s.request_sizes[10..], &[53 * 160 - 10 * 800]);
        let c = s.config.as_ref().expect("config recorded");
        let rc = c.config.as_ref().unwrap();
        assert!(c.interim_results && !c.single_utterance);
        assert_eq!(rc.encoding, 3, "MULAW");
        assert_eq!((rc.sample_rate_hertz, rc.audio_channel_count), (8000, 1));
        assert_eq!(rc.language_code, "he-IL");
        assert!(!rc.enable_automatic_punctuation);
        let phrases = &rc.speech_contexts[0].phrases;
        for hint in ["תור", "שעה", "שבע", "יום ראשון", "תספורת"] {
            assert!(phrases.iter().any(|p| p == hint), "missing hint {hint}");
        }
        // Every stream, including the pre-opened standby, sent its config first.
        assert!(streams.iter().all(|s| s.config.is_some()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partials_are_debounced_and_final_follows_utterance_end() {
    bounded(20, async {
        let fake = FakeGoogle::start(SpeechFakeConfig {
            partial_every_bytes: 160,
            ..Default::default()
        })
        .await
        .unwrap();
        fake.script([ScriptedUtterance::new(
            &["א", "אני", "אני רוצה", "אני רוצה תור", "אני רוצה תור מחר"],
            "אני רוצה תור מחר",
        )]);
        let mut cfg = google_config(&fake);
        cfg.google.stt_partial_debounce_ms = 400;
        cfg.google.stt_batch_ms = 20;
        let stt = connected_stt(&cfg).await;
        let mut call = Running::start(&stt, "CA2");
        call.speak(0..5, false).await;
        // The burst of five partials is coalesced into the newest one.
        let first = call.events.recv().await.unwrap();
        assert_eq!(
            first,
            SttEvent::Partial {
                text: "אני רוצה תור מחר".into()
            }
        );
        call.send(SttInput::UtteranceEnd).await;
        let events = call.until_final().await;
        assert_eq!(finals(&events), vec!["אני רוצה תור מחר"]);
        assert!(call.no_more_events().await.is_empty());
        assert!(fake.violations().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_in_silence_loses_nothing_and_delivers_once() {
    bounded(30, async {
        let fake = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        fake.script([
            ScriptedUtterance::new(&[], "אני רוצה"),
            ScriptedUtterance::new(&[], "תור למחר"),
        ]);
        let mut cfg = google_config(&fake);
        cfg.google.rotate_after_ms = 300;
        cfg.google.rotate_hard_limit_ms = 60_000;
        let stt = connected_stt(&cfg).await;
        let mut call = Running::start(&stt, "CA3");
        // Speech longer than the rotation age: no rotation mid-word ...
        call.speak(0..25, true).await;
        // ... then a pause inside the same utterance: the stream is rotated here.
        call.frame(SILENT_FRAME).await;
        call.speak(25..40, false).await;
        call.send(SttInput::UtteranceEnd).await;
        let events = call.until_final().await;
        assert_eq!(finals(&events), vec!["אני רוצה תור למחר"]);
        assert!(call.no_more_events().await.is_empty());

        let streams = fake.streams();
        let used: Vec<_> = streams.iter().filter(|s| !s.audio.is_empty()).collect();
        assert_eq!(used.len(), 2, "rotated once: {streams:#?}");
        assert!(used.iter().all(|s| s.half_closed && s.outcome == "final"));
        let mut joined = used[0].audio.clone();
        joined.extend_from_slice(&used[1].audio);
        assert_eq!(
            joined, call.sent,
            "every byte once, in order, across the switch"
        );
        assert_eq!(
            &used[1].audio[..160],
            &SILENT_FRAME,
            "the switch happened at the silent frame"
        );
        assert!(fake.violations().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_duration_limit_mid_utterance_replays_the_unfinalised_audio() {
    bounded(20, async {
        let fake = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        fake.fault_next_streams([StreamFault::OutOfRangeAfterAudio(2400)]);
        fake.script([
            ScriptedUtterance::new(&[], "lost with the stream"),
            ScriptedUtterance::new(&[], "קבעתי תור"),
        ]);
        let stt = connected_stt(&google_config(&fake)).await;
        let mut call = Running::start(&stt, "CA4");
        call.speak(0..30, true).await;
        call.send(SttInput::UtteranceEnd).await;
        let events = call.until_final().await;
        assert_eq!(finals(&events), vec!["קבעתי תור"]);
        assert!(call.no_more_events().await.is_empty());

        let streams = fake.streams();
        let first = streams.iter().find(|s| s.utterance == Some(0)).unwrap();
        assert_eq!(first.outcome, "OUT_OF_RANGE", "{streams:#?}");
        let replacement = streams
            .iter()
            .find(|s| s.utterance == Some(1))
            .expect("a second stream recognised the utterance");
        // The first stream never finalised anything, so all of its audio was replayed, and the
        // replacement heard the whole utterance exactly once.
        assert_eq!(replacement.audio, call.sent);
        assert!(fake.violations().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_unavailable_mid_utterance() {
    bounded(20, async {
        let fake = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        fake.fault_next_streams([StreamFault::UnavailableAfterAudio(1600)]);
        fake.script([
            ScriptedUtterance::new(&[], "never finished"),
            ScriptedUtterance::new(&[], "מחר בשעה שבע"),
        ]);
        let stt = connected_stt(&google_config(&fake)).await;
        let mut call = Running::start(&stt, "CA5");
        call.speak(0..20, true).await;
        call.send(SttInput::UtteranceEnd).await;
        let events = call.until_final().await;
        assert_eq!(finals(&events), vec!["מחר בשעה שבע"]);
        let streams = fake.streams();
        let first = streams.iter().find(|s| s.utterance == Some(0)).unwrap();
        assert_eq!(first.outcome, "UNAVAILABLE", "{streams:#?}");
        let replacement = streams.iter().find(|s| s.utterance == Some(1)).unwrap();
        assert_eq!(replacement.audio, call.sent);
        assert!(fake.violations().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_stream_mid_utterance_is_replayed_too() {
    bounded(20, async {
        let fake = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        fake.fault_next_streams([StreamFault::DropAfterAudio(800)]);
        fake.script([
            ScriptedUtterance::new(&[], "dropped"),
            ScriptedUtterance::new(&[], "ביום שלישי"),
        ]);
        let stt = connected_stt(&google_config(&fake)).await;
        let mut call = Running::start(&stt, "CA9");
        call.speak(0..20, true).await;
        call.send(SttInput::UtteranceEnd).await;
        assert_eq!(finals(&call.until_final().await), vec!["ביום שלישי"]);
        let streams = fake.streams();
        let replacement = streams.iter().find(|s| s.utterance == Some(1)).unwrap();
        assert_eq!(replacement.audio, call.sent, "{streams:#?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_limit_rotates_mid_speech_without_loss() {
    bounded(30, async {
        let fake = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        fake.script([
            ScriptedUtterance::new(&[], "one"),
            ScriptedUtterance::new(&[], "two"),
            ScriptedUtterance::new(&[], "three"),
        ]);
        let mut cfg = google_config(&fake);
        cfg.google.rotate_after_ms = 100;
        cfg.google.rotate_hard_limit_ms = 300;
        let stt = connected_stt(&cfg).await;
        let mut call = Running::start(&stt, "CA10");
        // Continuous speech, never silent: only the hard limit can rotate.
        call.speak(0..25, true).await;
        call.send(SttInput::UtteranceEnd).await;
        let events = call.until_final().await;
        let streams = fake.streams();
        let used: Vec<_> = streams.iter().filter(|s| !s.audio.is_empty()).collect();
        assert!(used.len() >= 2, "{streams:#?}");
        let expected = ["one", "two", "three"][..used.len()].join(" ");
        assert_eq!(finals(&events), vec![expected]);
        assert_eq!(
            used.iter()
                .flat_map(|s| s.audio.clone())
                .collect::<Vec<_>>(),
            call.sent
        );
        assert!(call.no_more_events().await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausting_retries_returns_an_stt_error() {
    bounded(20, async {
        let fake = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        fake.set_always_unavailable(true);
        let mut cfg = google_config(&fake);
        cfg.google.reconnect_attempts = 2;
        let stt = connected_stt(&cfg).await;
        let call = Running::start(&stt, "CA6");
        let result = call.task.await.unwrap();
        assert!(
            matches!(&result, Err(e @ SttError::Retryable { .. }) if e.reason().contains("Unavailable")),
            "{result:?}"
        );
        assert_eq!(fake.stream_opens(), 3, "one open plus two retries");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_stream_is_taken_by_the_call() {
    bounded(20, async {
        let fake = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        fake.script([ScriptedUtterance::new(&[], "כן")]);
        let stt = connected_stt(&google_config(&fake)).await;
        stt.prepare("CA7");
        assert_eq!(stt.parked_streams(), 1);
        while fake.stream_opens() < 1 {
            tokio::time::sleep(ms(5)).await;
        }
        let mut call = Running::start(&stt, "CA7");
        call.speak(0..15, false).await;
        call.send(SttInput::UtteranceEnd).await;
        assert_eq!(finals(&call.until_final().await), vec!["כן"]);
        assert_eq!(stt.parked_streams(), 0);
        let streams = fake.streams();
        assert_eq!(
            streams[0].utterance,
            Some(0),
            "the stream opened at the webhook carried the first utterance: {streams:#?}"
        );
        // Only the standby behind it was opened by the call itself.
        assert_eq!(streams.len(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarded_noise_is_never_delivered() {
    bounded(20, async {
        let fake = FakeGoogle::start(SpeechFakeConfig {
            partial_every_bytes: 800,
            ..Default::default()
        })
        .await
        .unwrap();
        fake.script([
            ScriptedUtterance::new(&["רעש"], "רעש"),
            ScriptedUtterance::new(&[], "שלום"),
        ]);
        let mut cfg = google_config(&fake);
        cfg.google.stt_partial_debounce_ms = 0;
        let stt = connected_stt(&cfg).await;
        let mut call = Running::start(&stt, "CA8");
        call.speak(0..5, false).await;
        // The noise reached the recogniser (its partial came back) before our VAD discarded it.
        assert_eq!(
            call.events.recv().await,
            Some(SttEvent::Partial {
                text: "רעש".into()
            })
        );
        call.send(SttInput::UtteranceDiscarded).await;
        call.speak(5..15, false).await;
        call.send(SttInput::UtteranceEnd).await;
        let events = call.until_final().await;
        assert_eq!(finals(&events), vec!["שלום"], "{events:?}");
        assert!(call.no_more_events().await.is_empty());
    })
    .await;
}

// ------------------------------------------------------------------ TTS

async fn collect(tts: &GoogleTts, text: &str) -> Result<Vec<Bytes>, TtsError> {
    let (tx, mut rx) = mpsc::channel(4);
    let fut = tts.synthesize(text.into(), "he-IL".into(), tx);
    let reader = tokio::spawn(async move {
        let mut chunks = Vec::new();
        while let Some(c) = rx.recv().await {
            chunks.push(c);
        }
        chunks
    });
    fut.await?;
    Ok(reader.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_strips_the_wav_header_chunks_small_and_serves_fixed_phrases_from_cache() {
    bounded(20, async {
        let fake = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        fake.set_tts_extra_wav_chunk(true);
        let mut cfg = google_config(&fake);
        cfg.call.greeting = "שלום, הגעתם למספרה".into();
        let tts = GoogleTts::new(&cfg, Arc::new(GoogleStats::default()))
            .await
            .unwrap();
        tts.warm().await.unwrap();
        // Greeting, fallback reply and the digits prompt were synthesised at start-up.
        assert_eq!(fake.tts_requests().len(), 3);
        assert_eq!(tts.cached_phrases(), 3);

        let reply = "יש תור פנוי מחר בעשר";
        let chunks = collect(&tts, reply).await.unwrap();
        let requests = fake.tts_requests();
        assert_eq!(requests.len(), 4);
        let r = &requests[3];
        assert_eq!(r.text, reply);
        assert_eq!(
            (r.audio_encoding, r.sample_rate_hertz),
            (5, 8000),
            "MULAW 8 kHz"
        );
        assert_eq!(
            (r.language_code.as_str(), r.voice_name.as_str()),
            ("he-IL", "he-IL-Wavenet-A")
        );
        assert!(
            chunks
                .iter()
                .all(|c| !c.is_empty() && c.len() <= TTS_MAX_CHUNK_BYTES)
        );
        let audio: Vec<u8> = chunks.concat();
        assert!(
            !audio
                .windows(4)
                .any(|w| w == b"RIFF" || w == b"LIST" || w == b"data")
        );
        // Exactly the tone the fake encoded: 480 samples per character.
        assert_eq!(audio.len(), reply.chars().count() * 480);
        let tone0: Vec<u8> = (0..8)
            .map(|i| {
                let t = i as f64 / 8000.0;
                g711::encode((8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16)
            })
            .collect();
        assert_eq!(&audio[..8], &tone0[..]);

        // A fixed phrase makes no request.
        let greeting = collect(&tts, "שלום, הגעתם למספרה").await.unwrap();
        assert_eq!(fake.tts_requests().len(), 4);
        assert!(greeting.iter().all(|c| c.len() <= TTS_MAX_CHUNK_BYTES));
        assert_eq!(
            greeting.concat().len(),
            "שלום, הגעתם למספרה".chars().count() * 480
        );
        assert_eq!(tts.stats().tts_cache_hits.get(), 1);
        let text = rendered(tts.stats().clone());
        assert!(
            text.contains("\nkav_google_tts_cache_hits_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nkav_google_tts_requests_total 4\n"),
            "{text}"
        );
        assert!(
            text.contains("\nkav_google_tts_first_audio_ms_count 1\n"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_failure_is_a_tts_error() {
    bounded(20, async {
        let fake = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        let cfg = google_config(&fake);
        let tts = GoogleTts::new(&cfg, Arc::new(GoogleStats::default()))
            .await
            .unwrap();
        fake.fail_next_tts(1);
        let err = collect(&tts, "משהו").await.unwrap_err();
        assert!(err.to_string().contains("Unavailable"), "{err}");
        // The next request works again.
        assert!(!collect(&tts, "משהו").await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_google_is_a_start_up_error_not_a_simulation() {
    bounded(30, async {
        // A port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cfg = Config::default();
        cfg.call.stt = "google".into();
        cfg.call.agent = "simulated".into();
        cfg.call.tts = "google".into();
        cfg.google.stt_endpoint = format!("http://127.0.0.1:{port}");
        cfg.google.tts_endpoint = format!("http://127.0.0.1:{port}");
        cfg.google.request_timeout_ms = 1_000;
        let err = kav::app::providers_from_config(&cfg)
            .await
            .err()
            .expect("unreachable Google STT must not start");
        let text = err.to_string();
        assert!(
            text.contains("stt provider \"google\" is configured but cannot start")
                && text.contains("127.0.0.1"),
            "{text}"
        );
        // The same for TTS alone.
        cfg.call.stt = "simulated".into();
        let err = kav::app::providers_from_config(&cfg)
            .await
            .err()
            .expect("unreachable Google TTS must not start");
        assert!(
            err.to_string()
                .contains("tts provider \"google\" is configured but cannot start"),
            "{err}"
        );
    })
    .await;
}

// ------------------------------------------------------------------ end to end

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_server_with_google_stt_and_tts() {
    bounded(40, async {
        let fake = FakeGoogle::start(SpeechFakeConfig::default())
            .await
            .unwrap();
        let said = "I want to leave my phone number";
        fake.script([ScriptedUtterance::new(&["I want"], said)]);
        let endpoint = fake.endpoint();
        let srv = TestServer::start(|cfg, _| {
            cfg.call.stt = "google".into();
            cfg.call.tts = "google".into();
            cfg.google.stt_endpoint = endpoint.clone();
            cfg.google.tts_endpoint = endpoint.clone();
        })
        .await;
        assert_eq!(srv.state.deps.stt.name(), "google");
        assert_eq!(srv.state.deps.tts.name(), "google");
        let sid = "CA00000000000000000000000000000901";
        let steps = vec![
            Step::Say {
                audio: Arc::new(synthetic_speech(ms(800))),
                transcript: said.into(),
            },
            Step::WaitForBot {
                max: Duration::from_secs(15),
            },
        ];
        let report = caller::run_call(&srv.caller(sid), steps).await.unwrap();
        srv.settle().await;
        assert!(report.frames_received > 10, "{report:?}");
        assert_eq!(report.response_us.len(), 1, "{report:?}");
        let turns = srv.store.call_turns(sid).await.unwrap();
        assert_eq!(turns.len(), 1, "{turns:#?}");
        assert_eq!(turns[0].user_text, said);
        // The recogniser opened at the webhook carried the call's speech.
        let streams = fake.streams();
        assert_eq!(streams[0].utterance, Some(0), "{streams:#?}");
        assert!(fake.violations().is_empty());
        // The reply was synthesised by Google TTS sentence by sentence while the agent streamed
        // (so its first audio did not wait for the whole reply); the fixed phrases came from the
        // start-up cache and made no request during the call.
        let reply = kav::providers::sim::SimulatedAgent::reply_for(said, false, false).0;
        assert_eq!(turns[0].bot_text, reply);
        let requests = fake.tts_requests();
        let warmed = 2; // fallback reply + digits prompt (no greeting configured)
        let spoken: Vec<String> = requests[warmed..].iter().map(|r| r.text.clone()).collect();
        assert!(spoken.len() >= 2, "one request per sentence: {spoken:?}");
        assert_eq!(
            spoken.join(" ").split_whitespace().collect::<Vec<_>>(),
            reply.split_whitespace().collect::<Vec<_>>()
        );
        // Ops see the provider's own measurements beside the turn marks.
        let metrics = srv.get("/metrics").await.body;
        let value = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        };
        assert_eq!(
            value("kav_google_tts_requests_total"),
            requests.len() as u64
        );
        assert!(value("kav_google_stt_streams_opened_total") >= 1);
        assert_eq!(value("kav_google_stt_final_after_end_ms_count"), 1);
    })
    .await;
}
