//! Warm-up and keep-warm for the providers. Connection set-up (TLS, HTTP/2, gRPC channels, model
//! loads) must not land on a caller's first turn: it is paid at start-up, again periodically so
//! idle connections are not closed under us, and per call when the TwiML webhook arrives.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::task::JoinHandle;

use crate::channels::twilio::call::CallDeps;

/// Outcome of one provider's warm-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmReport {
    pub kind: &'static str,
    pub provider: &'static str,
    pub took_ms: u64,
    pub result: Result<(), String>,
}

/// Warms STT, agent and TTS concurrently and logs how long each took.
pub async fn warm_all(deps: &CallDeps) -> Vec<WarmReport> {
    async fn one(
        kind: &'static str,
        provider: &'static str,
        fut: crate::providers::BoxFuture<'static, Result<(), String>>,
    ) -> WarmReport {
        let started = Instant::now();
        let result = fut.await;
        WarmReport {
            kind,
            provider,
            took_ms: started.elapsed().as_millis() as u64,
            result,
        }
    }
    let (stt, agent, tts) = tokio::join!(
        one("stt", deps.stt.name(), deps.stt.warm()),
        one("agent", deps.agent.name(), deps.agent.warm()),
        one("tts", deps.tts.name(), deps.tts.warm()),
    );
    let reports = vec![stt, agent, tts];
    for r in &reports {
        match &r.result {
            Ok(()) => tracing::info!(
                kind = r.kind,
                provider = r.provider,
                took_ms = r.took_ms,
                "provider warm"
            ),
            Err(e) => tracing::warn!(
                kind = r.kind,
                provider = r.provider,
                took_ms = r.took_ms,
                error = %e,
                "provider warm-up failed; calls will pay the connection cost or fall back"
            ),
        }
    }
    reports
}

/// A provider failed its start-up warm-up (unreachable endpoint, bad credentials, a model that
/// does not load): the server does not start rather than answer calls without it.
#[derive(Debug, thiserror::Error)]
#[error("{kind} provider {provider:?} failed its start-up warm-up: {reason}")]
pub struct WarmUpFailed {
    pub kind: &'static str,
    pub provider: &'static str,
    pub reason: String,
}

/// The first failed report of the start-up warm-up, as an error. Keep-warm failures later on are
/// only logged: a provider that was reachable at start-up may recover.
pub fn require_all_warm(reports: &[WarmReport]) -> Result<(), WarmUpFailed> {
    match reports
        .iter()
        .find_map(|r| r.result.as_ref().err().map(|e| (r, e)))
    {
        Some((r, e)) => Err(WarmUpFailed {
            kind: r.kind,
            provider: r.provider,
            reason: e.clone(),
        }),
        None => Ok(()),
    }
}

/// Re-warms every `period` until the returned task is aborted. `period` zero: no task.
pub fn spawn_keep_warm(deps: Arc<CallDeps>, period: Duration) -> Option<JoinHandle<()>> {
    if period.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            warm_all(&deps).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use tokio::sync::mpsc;

    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::providers::*;

    /// Counts warm-ups and prepares; fails its warm-up when told to.
    #[derive(Default)]
    struct Probe {
        warms: Mutex<u32>,
        prepared: Mutex<Vec<String>>,
        fail: bool,
    }

    impl Probe {
        fn warm_result(&self) -> BoxFuture<'static, Result<(), String>> {
            *self.warms.lock().unwrap() += 1;
            let fail = self.fail;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                if fail {
                    Err("unreachable".into())
                } else {
                    Ok(())
                }
            })
        }
    }

    impl SpeechToText for Probe {
        fn name(&self) -> &'static str {
            "probe"
        }
        fn audio_format(&self) -> SttAudioFormat {
            SttAudioFormat::Mulaw8k
        }
        fn warm(&self) -> BoxFuture<'static, Result<(), String>> {
            self.warm_result()
        }
        fn prepare(&self, call_sid: &str) {
            self.prepared.lock().unwrap().push(call_sid.into());
        }
        fn stream(
            &self,
            _: CallContext,
            _: mpsc::Receiver<SttInput>,
            _: mpsc::Sender<SttEvent>,
        ) -> BoxFuture<'static, Result<(), SttError>> {
            Box::pin(async { Ok(()) })
        }
    }

    impl Agent for Probe {
        fn name(&self) -> &'static str {
            "probe"
        }
        fn warm(&self) -> BoxFuture<'static, Result<(), String>> {
            self.warm_result()
        }
        fn respond(
            &self,
            _: AgentRequest,
            _: mpsc::Sender<AgentEvent>,
        ) -> BoxFuture<'static, Result<(), AgentError>> {
            Box::pin(async { Ok(()) })
        }
    }

    impl TextToSpeech for Probe {
        fn name(&self) -> &'static str {
            "probe"
        }
        fn warm(&self) -> BoxFuture<'static, Result<(), String>> {
            self.warm_result()
        }
        fn synthesize(
            &self,
            _: String,
            _: String,
            _: mpsc::Sender<Bytes>,
        ) -> BoxFuture<'static, Result<(), TtsError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn deps(stt: Arc<Probe>, agent: Arc<Probe>, tts: Arc<Probe>) -> Arc<CallDeps> {
        Arc::new(CallDeps {
            config: Arc::new(Config::default()),
            stt,
            agent,
            tts,
            recorder: None,
            metrics: Arc::new(Metrics::new()),
            live: crate::channels::live::LiveCalls::new(1),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn warm_all_reports_each_provider_and_its_failure() {
        let ok = Arc::new(Probe::default());
        let bad = Arc::new(Probe {
            fail: true,
            ..Probe::default()
        });
        let reports = warm_all(&deps(ok.clone(), bad.clone(), ok.clone())).await;
        let summary: Vec<_> = reports
            .iter()
            .map(|r| (r.kind, r.result.is_ok(), r.took_ms))
            .collect();
        assert_eq!(
            summary,
            vec![("stt", true, 30), ("agent", false, 30), ("tts", true, 30)]
        );
        assert_eq!(*ok.warms.lock().unwrap(), 2);
        assert_eq!(*bad.warms.lock().unwrap(), 1);
        // At start-up that failure stops the server, naming the provider and the reason.
        let err = require_all_warm(&reports).unwrap_err();
        assert_eq!((err.kind, err.reason.as_str()), ("agent", "unreachable"));
        assert!(require_all_warm(&reports[..1]).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn keep_warm_runs_every_period_and_stops_when_aborted() {
        let p = Arc::new(Probe::default());
        let task = spawn_keep_warm(
            deps(p.clone(), p.clone(), p.clone()),
            Duration::from_secs(450),
        )
        .expect("a period was given");
        tokio::time::sleep(Duration::from_secs(449)).await;
        assert_eq!(
            *p.warms.lock().unwrap(),
            0,
            "the first run is one period after start"
        );
        tokio::time::sleep(Duration::from_secs(2 * 450 + 10)).await;
        assert_eq!(
            *p.warms.lock().unwrap(),
            3 * 3,
            "three periods, three providers each"
        );
        task.abort();
        tokio::time::sleep(Duration::from_secs(10 * 450)).await;
        assert_eq!(*p.warms.lock().unwrap(), 9);
        assert!(spawn_keep_warm(deps(p.clone(), p.clone(), p), Duration::ZERO).is_none());
    }
}
