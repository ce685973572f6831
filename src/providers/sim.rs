//! Simulated providers for tests, benchmarks and the no-keys demo. They are labelled as
//! simulations everywhere they appear: the STT "recognises" a script, the agent follows a fixed
//! dialogue, and the simulated TTS produces a tone. Their latencies are configurable distributions.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};

use crate::config::SimConfig;
use crate::providers::*;
use crate::voice::g711;

/// `<Parameter name="sim_transcripts">`: what the simulated recogniser "hears", utterance by
/// utterance, separated by `|`.
pub const SIM_TRANSCRIPTS_PARAM: &str = "sim_transcripts";

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distribution {
    Fixed(f64),
    Uniform(f64, f64),
    Normal { mean: f64, sd: f64 },
}

#[derive(Debug, thiserror::Error)]
#[error("invalid latency distribution {0:?}: use fixed:MS, uniform:LO..HI or normal:MEAN,SD")]
pub struct DistributionError(String);

impl FromStr for Distribution {
    type Err = DistributionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DistributionError(s.to_string());
        let (kind, args) = s.split_once(':').ok_or_else(err)?;
        let num = |v: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(err)
        };
        Ok(match kind.trim() {
            "fixed" => Distribution::Fixed(num(args)?),
            "uniform" => {
                let (lo, hi) = args.split_once("..").ok_or_else(err)?;
                let (lo, hi) = (num(lo)?, num(hi)?);
                if hi < lo {
                    return Err(err());
                }
                Distribution::Uniform(lo, hi)
            }
            "normal" => {
                let (mean, sd) = args.split_once(',').ok_or_else(err)?;
                Distribution::Normal {
                    mean: num(mean)?,
                    sd: num(sd)?,
                }
            }
            _ => return Err(err()),
        })
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distribution::Fixed(v) => write!(f, "fixed:{v}"),
            Distribution::Uniform(a, b) => write!(f, "uniform:{a}..{b}"),
            Distribution::Normal { mean, sd } => write!(f, "normal:{mean},{sd}"),
        }
    }
}

impl Distribution {
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        let ms = match *self {
            Distribution::Fixed(v) => v,
            Distribution::Uniform(lo, hi) => lo + (hi - lo) * rng.next_f64(),
            Distribution::Normal { mean, sd } => {
                // Box-Muller.
                let u1 = rng.next_f64().max(1e-12);
                let u2 = rng.next_f64();
                mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            }
        };
        Duration::from_micros((ms.max(0.0) * 1000.0) as u64)
    }
}

/// SplitMix64: small, seedable, good enough for simulated latencies.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn seeded_for(seed: u64, key: &str) -> Self {
        let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in key.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01B3);
        }
        Self(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Parsed `[sim]` settings.
#[derive(Debug, Clone)]
pub struct SimLatencies {
    pub stt_first_partial: Distribution,
    pub stt_final: Distribution,
    pub agent_first_token: Distribution,
    pub agent_token: Distribution,
    pub tts_first_audio: Distribution,
    pub seed: u64,
}

impl SimLatencies {
    pub fn from_config(cfg: &SimConfig) -> Result<Self, DistributionError> {
        Ok(Self {
            stt_first_partial: cfg.stt_first_partial_ms.parse()?,
            stt_final: cfg.stt_final_ms.parse()?,
            agent_first_token: cfg.agent_first_token_ms.parse()?,
            agent_token: cfg.agent_token_ms.parse()?,
            tts_first_audio: cfg.tts_first_audio_ms.parse()?,
            seed: cfg.seed,
        })
    }
}

// ------------------------------------------------------------------ STT

/// Simulated recogniser: utterance k is transcribed as the k-th entry of the call's
/// `sim_transcripts` parameter (or "utterance k" when there is none).
pub struct SimulatedStt {
    lat: Arc<SimLatencies>,
}

impl SimulatedStt {
    pub fn new(lat: Arc<SimLatencies>) -> Self {
        Self { lat }
    }
}

impl SpeechToText for SimulatedStt {
    fn name(&self) -> &'static str {
        "simulated-stt"
    }

    fn audio_format(&self) -> SttAudioFormat {
        SttAudioFormat::Mulaw8k
    }

    fn stream(
        &self,
        call: CallContext,
        mut input: mpsc::Receiver<SttInput>,
        events: mpsc::Sender<SttEvent>,
    ) -> BoxFuture<'static, Result<(), SttError>> {
        let lat = self.lat.clone();
        Box::pin(async move {
            let script: Vec<String> = call
                .parameters
                .get(SIM_TRANSCRIPTS_PARAM)
                .map(|s| s.split('|').map(|t| t.trim().to_string()).collect())
                .unwrap_or_default();
            let mut rng = Rng::seeded_for(lat.seed, &call.call_sid);
            // Our VAD may cut one spoken sentence into several segments at its pauses; segments
            // closer than this belong to the same scripted utterance, which is reported once.
            let same_utterance = Duration::from_millis(600);
            let mut next_script = 0usize;
            // The scripted sentence being spoken, and whether its final was sent already.
            let mut current = String::new();
            let mut reported = true;
            let mut last_end: Option<Instant> = None;
            let far = || Instant::now() + Duration::from_secs(86_400);
            let mut partial_at: Option<Instant> = None;
            let mut finals: Vec<(Instant, String)> = Vec::new();
            let mut hearing = false;
            loop {
                let next_final = finals.first().map(|(at, _)| *at);
                tokio::select! {
                    msg = input.recv() => match msg {
                        None => return Ok(()),
                        Some(SttInput::Mulaw(_)) | Some(SttInput::Pcm16k(_)) => {
                            if !hearing {
                                hearing = true;
                                let continues = last_end.is_some_and(|t| t.elapsed() < same_utterance);
                                if !continues {
                                    let k = next_script;
                                    next_script += 1;
                                    current = script.get(k).cloned().unwrap_or_else(|| format!("utterance {}", k + 1));
                                    reported = false;
                                    partial_at = Some(Instant::now() + lat.stt_first_partial.sample(&mut rng));
                                }
                            }
                        }
                        Some(SttInput::UtteranceEnd) => {
                            hearing = false;
                            partial_at = None;
                            last_end = Some(Instant::now());
                            // The whole scripted sentence comes with its first segment's final.
                            let text = if reported { String::new() } else { current.clone() };
                            reported = true;
                            finals.push((Instant::now() + lat.stt_final.sample(&mut rng), text));
                        }
                        Some(SttInput::UtteranceDiscarded) => {
                            hearing = false;
                            partial_at = None;
                        }
                    },
                    _ = sleep_until(partial_at.unwrap_or_else(far)), if partial_at.is_some() => {
                        partial_at = None;
                        let text = current.split(' ').next().unwrap_or("").to_string();
                        if events.send(SttEvent::Partial { text }).await.is_err() {
                            return Ok(());
                        }
                    }
                    _ = sleep_until(next_final.unwrap_or_else(far)), if next_final.is_some() => {
                        let (_, text) = finals.remove(0);
                        if events.send(SttEvent::Final { text }).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
        })
    }
}

// ------------------------------------------------------------------ agent

/// Simulated agent: a fixed booking-flavoured dialogue in English, streamed word by word.
/// Asks for keypad digits when the caller mentions a number/phone, hangs up on "bye".
pub struct SimulatedAgent {
    lat: Arc<SimLatencies>,
}

impl SimulatedAgent {
    pub fn new(lat: Arc<SimLatencies>) -> Self {
        Self { lat }
    }

    /// The scripted reply for a user message: (text, ask for digits, hang up). Hebrew when the
    /// call's language is Hebrew, English otherwise.
    pub fn reply_for(user: &str, digits: bool, hebrew: bool) -> (String, Option<u8>, bool) {
        let lower = user.to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
        let pick = |en: &str, he: &str| {
            if hebrew {
                he.to_string()
            } else {
                en.to_string()
            }
        };
        if digits {
            if user.is_empty() {
                let text = pick(
                    "I did not get any digits. Let's continue without them. How else can I help?",
                    "לא קיבלתי ספרות. נמשיך בלעדיהן. איך עוד אפשר לעזור?",
                );
                return (text, None, false);
            }
            let spaced: Vec<String> = user.chars().map(|c| c.to_string()).collect();
            let spaced = spaced.join(" ");
            let text = if hebrew {
                format!("תודה. המספר שלך הוא {spaced}. הכול מוכן.")
            } else {
                format!("Thank you. I have your number as {spaced}. You are all set.")
            };
            return (text, None, false);
        }
        if has(&["bye", "להתראות", "ביי"]) {
            return (
                pick("Thank you for calling. Goodbye!", "תודה שהתקשרת. להתראות!"),
                None,
                true,
            );
        }
        if has(&[
            "number",
            "phone",
            "afternoon",
            "טלפון",
            "מספר",
            "אחר הצהריים",
        ]) {
            let text = pick(
                "Sure. Please type your phone number on the keypad and then press the pound key.",
                "בטח. אנא הקש את מספר הטלפון שלך ובסיום הקש סולמית.",
            );
            return (text, Some(10), false);
        }
        if has(&["book", "appointment", "תור", "לקבוע"]) {
            let text = pick(
                "Of course, I can help you book an appointment. We have openings tomorrow at ten in \
                 the morning, at noon, and at four in the afternoon. Which time would suit you best?",
                "בשמחה, אפשר לקבוע תור. יש מקום מחר בעשר בבוקר, בצהריים ובארבע אחר הצהריים. \
                 איזו שעה מתאימה לך?",
            );
            return (text, None, false);
        }
        let text = if hebrew {
            format!("אמרת: {user}. איך עוד אפשר לעזור?")
        } else {
            format!("You said: {user}. How can I help you further?")
        };
        (text, None, false)
    }
}

impl Agent for SimulatedAgent {
    fn name(&self) -> &'static str {
        "simulated-agent"
    }

    fn respond(
        &self,
        request: AgentRequest,
        events: mpsc::Sender<AgentEvent>,
    ) -> BoxFuture<'static, Result<(), AgentError>> {
        let lat = self.lat.clone();
        Box::pin(async move {
            let mut rng = Rng::seeded_for(lat.seed ^ request.turn as u64, &request.call.call_sid);
            let user = request
                .history
                .last()
                .map(|m| m.text.as_str())
                .unwrap_or("");
            let hebrew = request.call.language.starts_with("he");
            let (text, collect, hangup) = Self::reply_for(user, request.digits, hebrew);
            sleep(lat.agent_first_token.sample(&mut rng)).await;
            for (i, word) in text.split_inclusive(' ').enumerate() {
                if i > 0 {
                    sleep(lat.agent_token.sample(&mut rng)).await;
                }
                if events
                    .send(AgentEvent::TextDelta(word.to_string()))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            if let Some(max_digits) = collect {
                let _ = events.send(AgentEvent::CollectDigits { max_digits }).await;
            }
            if hangup {
                let _ = events.send(AgentEvent::Hangup).await;
            }
            Ok(())
        })
    }
}

// ------------------------------------------------------------------ TTS

/// Simulated synthesiser for load tests: a soft two-tone signal, 65 ms per character, after a
/// sampled first-audio latency; then as fast as the call's playout buffer accepts it.
pub struct SimulatedTts {
    lat: Arc<SimLatencies>,
    /// One second of the tone, made once; chunks are zero-copy slices of it so a load test
    /// measures the engine rather than the simulator.
    tone: Bytes,
}

impl SimulatedTts {
    pub const MS_PER_CHAR: u64 = 65;

    pub fn new(lat: Arc<SimLatencies>) -> Self {
        // 440 + 660 Hz both complete whole cycles in 1 s at 8 kHz, so the table loops seamlessly.
        let tone: Vec<u8> = (0..8000)
            .map(|i| {
                let t = i as f32 / 8000.0;
                let v = (t * 2.0 * std::f32::consts::PI * 440.0).sin()
                    + 0.5 * (t * 2.0 * std::f32::consts::PI * 660.0).sin();
                g711::encode((v * 3000.0) as i16)
            })
            .collect();
        Self {
            lat,
            tone: Bytes::from(tone),
        }
    }
}

impl TextToSpeech for SimulatedTts {
    fn name(&self) -> &'static str {
        "simulated-tts"
    }

    fn synthesize(
        &self,
        text: String,
        _language: String,
        audio: mpsc::Sender<Bytes>,
    ) -> BoxFuture<'static, Result<(), TtsError>> {
        let lat = self.lat.clone();
        let tone = self.tone.clone();
        Box::pin(async move {
            let mut rng = Rng::seeded_for(lat.seed, &text);
            sleep(lat.tts_first_audio.sample(&mut rng)).await;
            let total = (text.chars().count() as u64 * Self::MS_PER_CHAR * 8) as usize;
            let mut sent = 0usize;
            while sent < total {
                let at = sent % tone.len();
                let n = (total - sent).min(TTS_MAX_CHUNK_BYTES).min(tone.len() - at);
                if audio.send(tone.slice(at..at + n)).await.is_err() {
                    return Ok(());
                }
                sent += n;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_parse_and_sample_in_range() {
        let mut rng = Rng::new(1);
        assert_eq!(
            "fixed:150"
                .parse::<Distribution>()
                .unwrap()
                .sample(&mut rng),
            Duration::from_millis(150)
        );
        let u: Distribution = "uniform:100..200".parse().unwrap();
        for _ in 0..1000 {
            let d = u.sample(&mut rng).as_millis();
            assert!((100..=200).contains(&d));
        }
        let n: Distribution = "normal:300,50".parse().unwrap();
        let mean = (0..10_000)
            .map(|_| n.sample(&mut rng).as_secs_f64() * 1000.0)
            .sum::<f64>()
            / 10_000.0;
        assert!((mean - 300.0).abs() < 5.0, "mean {mean}");
        for bad in [
            "",
            "fixed",
            "fixed:-1",
            "uniform:5..1",
            "gamma:1,2",
            "normal:1",
        ] {
            assert!(bad.parse::<Distribution>().is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn simulated_stt_follows_the_script() {
        let lat = Arc::new(
            SimLatencies::from_config(&SimConfig {
                stt_first_partial_ms: "fixed:100".into(),
                stt_final_ms: "fixed:50".into(),
                ..SimConfig::default()
            })
            .unwrap(),
        );
        let stt = SimulatedStt::new(lat);
        let (atx, arx) = mpsc::channel(8);
        let (etx, mut erx) = mpsc::channel(8);
        let mut call = CallContext::default();
        call.parameters
            .insert(SIM_TRANSCRIPTS_PARAM.into(), "book a room | bye".into());
        tokio::spawn(stt.stream(call, arx, etx));
        atx.send(SttInput::Mulaw([0xFF; 160])).await.unwrap();
        assert_eq!(
            erx.recv().await,
            Some(SttEvent::Partial {
                text: "book".into()
            })
        );
        atx.send(SttInput::UtteranceEnd).await.unwrap();
        assert_eq!(
            erx.recv().await,
            Some(SttEvent::Final {
                text: "book a room".into()
            })
        );
        // Segments right after the last one continue the same sentence: nothing new to report.
        for _ in 0..2 {
            atx.send(SttInput::Mulaw([0xFF; 160])).await.unwrap();
            atx.send(SttInput::UtteranceEnd).await.unwrap();
            let next = erx.recv().await;
            assert_eq!(
                next,
                Some(SttEvent::Final {
                    text: String::new()
                })
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        atx.send(SttInput::Mulaw([0xFF; 160])).await.unwrap();
        let partial = erx.recv().await;
        assert_eq!(partial, Some(SttEvent::Partial { text: "bye".into() }));
        atx.send(SttInput::UtteranceEnd).await.unwrap();
        let last = erx.recv().await;
        assert_eq!(last, Some(SttEvent::Final { text: "bye".into() }));
    }

    #[tokio::test(start_paused = true)]
    async fn simulated_tts_makes_audio_proportional_to_text_in_bounded_chunks() {
        let lat = Arc::new(SimLatencies::from_config(&SimConfig::default()).unwrap());
        let tts = SimulatedTts::new(lat);
        let text = "x".repeat(200); // 200 × 65 ms = 13 s, longer than the 1 s tone table
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(tts.synthesize(text, "he-IL".into(), tx));
        let mut total = 0;
        while let Some(chunk) = rx.recv().await {
            assert!(!chunk.is_empty() && chunk.len() <= TTS_MAX_CHUNK_BYTES);
            assert!(chunk.iter().any(|b| *b != g711::SILENCE));
            total += chunk.len();
        }
        task.await.unwrap().unwrap();
        assert_eq!(total, 200 * 65 * 8);
    }

    #[test]
    fn simulated_agent_dialogue() {
        assert_eq!(
            SimulatedAgent::reply_for("my phone number", false, false).1,
            Some(10)
        );
        assert!(SimulatedAgent::reply_for("bye now", false, false).2);
        assert!(
            SimulatedAgent::reply_for("0501234567", true, false)
                .0
                .contains("0 5 0 1")
        );
        // Hebrew callers get Hebrew replies, and Hebrew keywords drive the same dialogue.
        let (text, collect, _) = SimulatedAgent::reply_for("אני רוצה לקבוע תור", false, true);
        assert!(text.contains("תור") && collect.is_none(), "{text}");
        assert_eq!(
            SimulatedAgent::reply_for("מספר הטלפון שלי", false, true).1,
            Some(10)
        );
        assert!(SimulatedAgent::reply_for("תודה, להתראות", false, true).2);
    }
}
