//! The retention sweep's thin loop: every `sweep_every_s`, compute the plan for now (a pure
//! function, `store::privacy::RetentionPlan::at`) and apply it.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::RetentionConfig;
use crate::store::Store;
use crate::store::privacy::{RetentionPlan, unix_now_ms};

/// Starts the sweep (first run at once). No task when nothing is to be swept or the period is 0.
pub fn spawn_retention_sweep(store: Store, cfg: RetentionConfig) -> Option<JoinHandle<()>> {
    if cfg.sweep_every_s == 0 || RetentionPlan::at(0, &cfg).is_empty() {
        return None;
    }
    let period = Duration::from_secs(cfg.sweep_every_s);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let plan = RetentionPlan::at(unix_now_ms(), &cfg);
            match store.sweep_retention(&plan).await {
                Ok(report) if report.total() > 0 => {
                    tracing::info!(?report, "retention sweep removed old personal data")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention sweep failed; retried next period"),
            }
        }
    }))
}
