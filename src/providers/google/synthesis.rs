#[allow(unused_imports)]
use super::*;

/// Fixed phrases (greeting, fallback, digits prompt) synthesised at start-up, bounded.
pub(super) struct TtsCache {
    pub(super) map: HashMap<(String, String), Bytes>,
    pub(super) order: VecDeque<(String, String)>,
    pub(super) capacity: usize,
}

impl TtsCache {
    pub(super) fn get(&self, language: &str, text: &str) -> Option<Bytes> {
        self.map
            .get(&(language.to_string(), text.to_string()))
            .cloned()
    }

    pub(super) fn insert(&mut self, language: &str, text: &str, audio: Bytes) {
        if self.capacity == 0 {
            return;
        }
        let key = (language.to_string(), text.to_string());
        if self.map.insert(key.clone(), audio).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

pub struct GoogleTts {
    pub(super) inner: Arc<TtsInner>,
}

pub(super) struct TtsInner {
    pub(super) svc: GrpcService,
    pub(super) cfg: GoogleConfig,
    pub(super) default_language: String,
    /// The phrases that are cached (only these: replies are not worth keeping).
    pub(super) fixed_phrases: HashSet<String>,
    pub(super) cache: Mutex<TtsCache>,
    pub(super) stats: Arc<GoogleStats>,
}

impl GoogleTts {
    pub async fn new(cfg: &Config, stats: Arc<GoogleStats>) -> Result<Self, GoogleInitError> {
        let g = &cfg.google;
        let svc = GrpcService::new(
            &g.tts_endpoint,
            DEFAULT_TTS_ENDPOINT,
            Duration::from_millis(g.request_timeout_ms),
        )
        .await?;
        let fixed_phrases = [&cfg.call.greeting, &cfg.call.fallback_reply]
            .into_iter()
            .chain(g.tts_cache_phrases.iter())
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        Ok(Self {
            inner: Arc::new(TtsInner {
                svc,
                cfg: g.clone(),
                default_language: cfg.call.language.clone(),
                fixed_phrases,
                cache: Mutex::new(TtsCache {
                    map: HashMap::new(),
                    order: VecDeque::new(),
                    capacity: g.tts_cache_entries,
                }),
                stats,
            }),
        })
    }

    pub fn stats(&self) -> &Arc<GoogleStats> {
        &self.inner.stats
    }

    pub fn cached_phrases(&self) -> usize {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }
}

impl TtsInner {
    pub(super) fn request(&self, text: &str, language: &str) -> tts::SynthesizeSpeechRequest {
        let voice = &self.cfg.tts_voice;
        let voice_matches = voice
            .to_ascii_lowercase()
            .starts_with(&format!("{}-", language.to_ascii_lowercase()));
        tts::SynthesizeSpeechRequest {
            input: Some(tts::SynthesisInput {
                input_source: Some(tts::synthesis_input::InputSource::Text(text.to_string())),
                ..Default::default()
            }),
            voice: Some(tts::VoiceSelectionParams {
                language_code: language.to_string(),
                name: if voice_matches {
                    voice.clone()
                } else {
                    String::new()
                },
                ..Default::default()
            }),
            audio_config: Some(tts::AudioConfig {
                // MULAW at 8 kHz is what Twilio plays: no transcoding here, only the header goes.
                audio_encoding: tts::AudioEncoding::Mulaw as i32,
                sample_rate_hertz: 8000,
                speaking_rate: self.cfg.tts_speaking_rate,
                effects_profile_id: vec!["telephony-class-application".into()],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub(super) async fn fetch(&self, text: &str, language: &str) -> Result<Bytes, TtsError> {
        bump(&self.stats.tts_requests, 1);
        let mut req = tonic::Request::new(self.request(text, language));
        let timeout = Duration::from_millis(self.cfg.request_timeout_ms);
        req.set_timeout(timeout);
        let call = async {
            self.svc.authorise(&mut req).await?;
            let mut client =
                tts::text_to_speech_client::TextToSpeechClient::new(self.svc.channel());
            client.synthesize_speech(req).await
        };
        let response = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| TtsError::timeout("Google TTS"))?
            .map_err(|s| status_error("Google TTS", &s))?;
        let mulaw = wav_to_mulaw(&response.into_inner().audio_content)
            .map_err(|e| TtsError::fatal(format!("Google TTS audio: {e}")))?;
        Ok(Bytes::from(mulaw))
    }
}

pub(super) async fn send_chunks(audio: &Bytes, out: &mpsc::Sender<Bytes>) -> bool {
    let mut pos = 0;
    while pos < audio.len() {
        let end = (pos + TTS_MAX_CHUNK_BYTES).min(audio.len());
        if out.send(audio.slice(pos..end)).await.is_err() {
            return false;
        }
        pos = end;
    }
    true
}

impl TextToSpeech for GoogleTts {
    fn name(&self) -> &'static str {
        "google"
    }

    fn warm(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let started = Instant::now();
            let timeout = Duration::from_millis(inner.cfg.request_timeout_ms);
            inner.svc.connect_within(timeout).await?;
            let connect_ms = started.elapsed().as_millis() as u64;
            let language = inner.default_language.clone();
            let mut cached = 0;
            for phrase in &inner.fixed_phrases {
                let have = inner
                    .cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&language, phrase)
                    .is_some();
                if have {
                    continue;
                }
                match inner.fetch(phrase, &language).await {
                    Ok(audio) => {
                        inner
                            .cache
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(&language, phrase, audio);
                        cached += 1;
                    }
                    Err(e) => {
                        bump(&inner.stats.tts_errors, 1);
                        tracing::warn!(error = %e, phrase, "could not pre-synthesise a fixed phrase");
                    }
                }
            }
            tracing::info!(
                endpoint = %inner.svc.url,
                connect_ms,
                cached,
                warm_ms = started.elapsed().as_millis() as u64,
                "Google TTS ready"
            );
            Ok(())
        })
    }

    fn synthesize(
        &self,
        text: String,
        language: String,
        audio: mpsc::Sender<Bytes>,
    ) -> BoxFuture<'static, Result<(), TtsError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let language = if language.is_empty() {
                inner.default_language.clone()
            } else {
                language
            };
            let phrase = text.trim();
            let hit = inner
                .cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&language, phrase);
            if let Some(cached) = hit {
                bump(&inner.stats.tts_cache_hits, 1);
                send_chunks(&cached, &audio).await;
                return Ok(());
            }
            let started = Instant::now();
            let mulaw = match inner.fetch(phrase, &language).await {
                Ok(m) => m,
                Err(e) => {
                    bump(&inner.stats.tts_errors, 1);
                    return Err(e);
                }
            };
            if inner.fixed_phrases.contains(phrase) {
                inner
                    .cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(&language, phrase, mulaw.clone());
            }
            if !mulaw.is_empty() {
                record(&inner.stats.tts_first_audio_ms, started.elapsed());
            }
            send_chunks(&mulaw, &audio).await;
            Ok(())
        })
    }
}
