//! Warm-up and keep-warm for every provider: open connections (and load models) before the first
//! call pays for them, then refresh them periodically, because servers and load balancers close
//! idle connections (OpenAI's after a few minutes).
//!
//! Use at start-up: `warm_all(&providers).await` (logs each provider's warm-up time), then
//! `spawn_keep_warm(&providers, period)`; abort the returned handle on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::Providers;
use super::providers::{Agent, BoxFuture, SpeechToText, TextToSpeech};

/// A provider that can be warmed: implemented for the three provider traits.
pub trait Warmable: Send + Sync {
    /// `stt`, `agent` or `tts`.
    fn kind(&self) -> &'static str;
    fn provider_name(&self) -> &'static str;
    fn warm_up(&self) -> BoxFuture<'static, Result<(), String>>;
}

impl Warmable for dyn SpeechToText {
    fn kind(&self) -> &'static str {
        "stt"
    }
    fn provider_name(&self) -> &'static str {
        self.name()
    }
    fn warm_up(&self) -> BoxFuture<'static, Result<(), String>> {
        self.warm()
    }
}

impl Warmable for dyn Agent {
    fn kind(&self) -> &'static str {
        "agent"
    }
    fn provider_name(&self) -> &'static str {
        self.name()
    }
    fn warm_up(&self) -> BoxFuture<'static, Result<(), String>> {
        self.warm()
    }
}

impl Warmable for dyn TextToSpeech {
    fn kind(&self) -> &'static str {
        "tts"
    }
    fn provider_name(&self) -> &'static str {
        self.name()
    }
    fn warm_up(&self) -> BoxFuture<'static, Result<(), String>> {
        self.warm()
    }
}

/// Outcome of warming one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmReport {
    pub kind: &'static str,
    pub name: &'static str,
    pub took: Duration,
    pub result: Result<(), String>,
}

/// Warms one provider and logs how long it took (a failure is a warning, never fatal: the call
/// path opens its own connection if the warm one is gone).
pub async fn warm_one<W: Warmable + ?Sized>(provider: &W) -> WarmReport {
    let started = Instant::now();
    let result = provider.warm_up().await;
    let took = started.elapsed();
    let report = WarmReport {
        kind: provider.kind(),
        name: provider.provider_name(),
        took,
        result,
    };
    match &report.result {
        Ok(()) => tracing::info!(
            kind = report.kind,
            provider = report.name,
            warm_ms = took.as_millis() as u64,
            "provider warm"
        ),
        Err(error) => tracing::warn!(
            kind = report.kind,
            provider = report.name,
            warm_ms = took.as_millis() as u64,
            %error,
            "provider warm-up failed"
        ),
    }
    report
}

/// Warms the three providers concurrently; reports in stt, agent, tts order.
pub async fn warm_all(providers: &Providers) -> Vec<WarmReport> {
    let (stt, agent, tts) = tokio::join!(
        warm_one(&*providers.stt),
        warm_one(&*providers.agent),
        warm_one(&*providers.tts)
    );
    vec![stt, agent, tts]
}

/// Re-warms every provider each `period` (the first time one period from now: call [`warm_all`]
/// at start-up for the first). A slow warm-up delays the next tick instead of piling up.
pub fn spawn_keep_warm(providers: &Providers, period: Duration) -> JoinHandle<()> {
    let providers = Providers {
        stt: Arc::clone(&providers.stt),
        agent: Arc::clone(&providers.agent),
        tts: Arc::clone(&providers.tts),
    };
    let period = period.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            warm_all(&providers).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use tokio::sync::mpsc;

    use super::*;
    use crate::adapters::providers::{
        AgentError, AgentEvent, AgentRequest, CallContext, SttAudioFormat, SttError, SttEvent,
        SttInput, TtsError,
    };

    #[derive(Default)]
    struct Counting {
        warms: AtomicUsize,
        fail: bool,
    }

    impl Counting {
        fn warm_once(&self) -> BoxFuture<'static, Result<(), String>> {
            self.warms.fetch_add(1, Ordering::SeqCst);
            let fail = self.fail;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                if fail { Err("no route".into()) } else { Ok(()) }
            })
        }
    }

    impl SpeechToText for Counting {
        fn name(&self) -> &'static str {
            "counting-stt"
        }
        fn audio_format(&self) -> SttAudioFormat {
            SttAudioFormat::Mulaw8k
        }
        fn warm(&self) -> BoxFuture<'static, Result<(), String>> {
            self.warm_once()
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

    impl Agent for Counting {
        fn name(&self) -> &'static str {
            "counting-agent"
        }
        fn warm(&self) -> BoxFuture<'static, Result<(), String>> {
            self.warm_once()
        }
        fn respond(
            &self,
            _: AgentRequest,
            _: mpsc::Sender<AgentEvent>,
        ) -> BoxFuture<'static, Result<(), AgentError>> {
            Box::pin(async { Ok(()) })
        }
    }

    impl TextToSpeech for Counting {
        fn name(&self) -> &'static str {
            "counting-tts"
        }
        fn warm(&self) -> BoxFuture<'static, Result<(), String>> {
            self.warm_once()
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

    fn providers() -> (Providers, [Arc<Counting>; 3]) {
        let stt = Arc::new(Counting::default());
        let agent = Arc::new(Counting {
            fail: true,
            ..Counting::default()
        });
        let tts = Arc::new(Counting::default());
        (
            Providers {
                stt: stt.clone(),
                agent: agent.clone(),
                tts: tts.clone(),
            },
            [stt, agent, tts],
        )
    }

    #[tokio::test(start_paused = true)]
    async fn warm_all_reports_each_provider_and_its_failure() {
        let (providers, _) = providers();
        let reports = warm_all(&providers).await;
        let summary: Vec<_> = reports
            .iter()
            .map(|r| (r.kind, r.name, r.result.is_ok()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("stt", "counting-stt", true),
                ("agent", "counting-agent", false),
                ("tts", "counting-tts", true),
            ]
        );
        assert_eq!(reports[1].result, Err("no route".to_string()));
        // Concurrent: each took its own 30 ms (virtual), not the sum.
        assert!(reports.iter().all(|r| r.took == Duration::from_millis(30)));
    }

    #[tokio::test(start_paused = true)]
    async fn keep_warm_rewarms_every_period_until_aborted() {
        let (providers, counters) = providers();
        let period = Duration::from_secs(450);
        let task = spawn_keep_warm(&providers, period);
        let warms = || -> Vec<usize> {
            counters
                .iter()
                .map(|c| c.warms.load(Ordering::SeqCst))
                .collect()
        };
        tokio::time::sleep(period - Duration::from_secs(1)).await;
        assert_eq!(warms(), vec![0, 0, 0], "nothing before the first period");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(warms(), vec![1, 1, 1]);
        tokio::time::sleep(period * 2).await;
        assert_eq!(
            warms(),
            vec![3, 3, 3],
            "a failing provider keeps being retried"
        );
        task.abort();
        let _ = task.await;
        tokio::time::sleep(period * 3).await;
        assert_eq!(warms(), vec![3, 3, 3]);
    }
}
