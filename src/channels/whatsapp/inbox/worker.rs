//! The inbox workers: the tokio shell around the sans-IO [`Scheduler`]. Each worker claims one
//! row at a time under a lease, processes it (a status update, or one inbound message answered
//! through [`WhatsAppService::handle_inbound`]) and records the machine's verdict; agent
//! failures and throttled sends are retried, anything else fails the row at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{WhatsAppError, WhatsAppService};
use crate::channels::whatsapp::model::InboundEvent;
use crate::retry::Backoff;
use crate::scheduler::{
    Claimed, Failure, Scheduler, Settings, Step, Verdict, run_leased, shell_wait,
};
use crate::store::whatsapp::{InboxItem, InboxOutcome};

impl WhatsAppService {
    /// Starts `config.workers` inbox workers. They run until aborted; an aborted worker's row is
    /// claimed again after the lease.
    pub fn spawn_workers(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        (0..self.config.workers.max(1))
            .map(|_| {
                let this = self.clone();
                tokio::spawn(async move { this.worker_loop().await })
            })
            .collect()
    }

    /// The inbox worker's schedule (`[whatsapp] poll_ms`, `lease_ms`, `max_attempts`,
    /// `retry_*_ms`): the sans-IO [`Scheduler`] decides when to claim, retry or give up.
    pub fn schedule(&self) -> Settings {
        let ms = Duration::from_millis;
        Settings {
            poll_ms: self.config.poll_ms.max(10) as i64,
            lease_ms: self.config.lease_ms as i64,
            max_attempts: self.config.max_attempts.max(1),
            backoff: Backoff::new(ms(self.config.retry_base_ms), ms(self.config.retry_max_ms)),
        }
    }

    /// The shell of one worker: the machine's deadline, or a webhook's wake-up, then its steps.
    async fn worker_loop(self: Arc<Self>) {
        let mut worker = InboxWorker::new(self.schedule(), self.now_ms());
        loop {
            // Register interest before looking, so a webhook arriving in between is not missed.
            let woken = self.wake.notified();
            if let Err(e) = worker.drain(&self).await {
                tracing::warn!(error = %e, "WhatsApp inbox worker error");
            }
            let wait = shell_wait(&worker.machine, self.now_ms());
            tokio::select! {
                _ = tokio::time::sleep(wait) => worker.machine.handle_timeout(self.now_ms()),
                _ = woken => worker.machine.handle_wake(self.now_ms()),
            }
        }
    }

    /// Processes every inbox row runnable now, one after the other, as a worker's pass does;
    /// returns how many were processed. (Tests and tools on a manual clock; the workers loop.)
    pub async fn run_pending(&self) -> Result<usize, WhatsAppError> {
        let now = self.now_ms();
        let mut worker = InboxWorker::new(self.schedule(), now);
        worker.machine.handle_timeout(now);
        worker.drain(self).await?;
        Ok(worker.finished)
    }

    async fn process(&self, item: &InboxItem, last_attempt: bool) -> Result<(), WhatsAppError> {
        let event: InboundEvent = serde_json::from_str(&item.payload_json)?;
        match event {
            InboundEvent::Status(s) => {
                let at = if s.timestamp_s > 0 {
                    s.timestamp_s * 1000
                } else {
                    self.now_ms()
                };
                let now = self
                    .store
                    .whatsapp_apply_status(
                        &s.message_id,
                        &s.status,
                        s.error_code,
                        s.error_title.as_deref(),
                        at,
                    )
                    .await?;
                if let Some(code) = s.error_code {
                    tracing::warn!(wamid = %s.message_id, code, title = ?s.error_title, "WhatsApp delivery failed");
                }
                tracing::debug!(wamid = %s.message_id, status = %s.status, now = ?now, "status applied");
                Ok(())
            }
            InboundEvent::Message(m) => {
                // A failed lookup is an error (the row is retried), not a vanished business.
                let business = self.directory.by_id(&item.business_id).await?;
                let Some(business) = business else {
                    tracing::warn!(business_id = %item.business_id, "business vanished; message dropped");
                    return Ok(());
                };
                self.handle_inbound(&business, &m, &item.provider, last_attempt)
                    .await
                    .map(|_| ())
            }
        }
    }
}

/// One inbox worker: the [`Scheduler`] and the row it is processing. All database, agent and
/// send work happens here, in the shell.
struct InboxWorker {
    machine: Scheduler,
    running: Option<InboxItem>,
    finished: usize,
}

impl InboxWorker {
    fn new(settings: Settings, first_poll_ms: i64) -> Self {
        Self {
            machine: Scheduler::new(settings, first_poll_ms),
            running: None,
            finished: 0,
        }
    }

    /// Carries out the machine's steps until it waits for time or a wake-up.
    async fn drain(&mut self, svc: &WhatsAppService) -> Result<(), WhatsAppError> {
        while let Some(step) = self.machine.poll_output() {
            if let Err(e) = self.step(svc, step).await {
                self.machine.handle_store_error(svc.now_ms());
                self.running = None;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn step(&mut self, svc: &WhatsAppService, step: Step) -> Result<(), WhatsAppError> {
        match step {
            Step::Claim { lease_ms } => {
                let now = svc.now_ms();
                let max_attempts = i64::from(self.machine.settings().max_attempts);
                self.running = svc
                    .store
                    .whatsapp_claim(now, lease_ms, max_attempts)
                    .await?;
                let job = self.running.as_ref().map(|item| Claimed {
                    id: item.id.clone(),
                    attempt: u32::try_from(item.attempts).unwrap_or(u32::MAX),
                });
                self.machine.handle_claimed(now, job);
            }
            Step::Run {
                id, last_attempt, ..
            } => {
                if let Some(item) = &self.running {
                    let work = svc.process(item, last_attempt);
                    let outcome = run_leased(&mut self.machine, &|| svc.now_ms(), work).await;
                    let outcome = outcome.map(|()| String::new()).map_err(failure);
                    self.machine.handle_outcome(svc.now_ms(), &id, outcome);
                }
            }
            Step::Finish {
                id,
                attempt,
                verdict,
            } => {
                self.running = None;
                let now = svc.now_ms();
                let outcome = match &verdict {
                    Verdict::Done { .. } => InboxOutcome::Done,
                    Verdict::Retry { error, at_ms } => {
                        tracing::warn!(%id, attempts = attempt, backoff_ms = at_ms - now, %error, "WhatsApp event will be retried");
                        InboxOutcome::Retry {
                            error,
                            not_before_ms: *at_ms,
                        }
                    }
                    Verdict::GiveUp { error } => {
                        tracing::warn!(%id, %error, "WhatsApp event failed");
                        InboxOutcome::Failed(error)
                    }
                };
                svc.store.whatsapp_finish(&id, outcome, now).await?;
                svc.stats.processed.fetch_add(1, Ordering::Relaxed);
                self.finished += 1;
            }
            Step::LeaseExpired { id } => {
                tracing::warn!(%id, "WhatsApp event outlived its lease; another worker may take it too");
            }
        }
        Ok(())
    }
}

/// Agent failures and throttled sends are worth another attempt; anything else is not.
fn failure(e: WhatsAppError) -> Failure {
    match e {
        WhatsAppError::SendRetryable(_) | WhatsAppError::Agent(_) => Failure::Retryable {
            error: e.to_string(),
            retry_after_ms: None,
        },
        other => Failure::Permanent(other.to_string()),
    }
}
