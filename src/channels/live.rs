//! The live-call registry: what each call in progress is doing now, for the console's ops view.
//!
//! **Invariant:** the per-frame path never touches it. A call driver registers once when its
//! stream starts (one allocation: the entry), publishes a [`LiveSnapshot`] (plain numbers, no
//! allocation) when it folds its counters into the metrics, at most once a second, and its
//! [`LiveGuard`] removes the entry when the driver ends, however it ends. The registry holds at
//! most `capacity` calls (the live-call limit); a call beyond that is not listed, and counted in
//! [`LiveCalls::refused`]. Readers take a copy ([`LiveCalls::list`]) and never hold the lock
//! across an await.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::voice::session::Phase;

/// What a call publishes each time it folds its counters (plain numbers: no allocation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LiveSnapshot {
    /// [`phase_name`] of the session's phase.
    pub phase: &'static str,
    /// Turns completed so far (the greeting, when there is one, is the first).
    pub turn: u64,
    /// Smoothed round trip to Twilio from mark echoes; `None` before the first echo.
    pub rtt_ms: Option<u64>,
    /// Largest lead at Twilio so far (audio sent minus audio due to have played).
    pub lead_max_ms: u64,
    pub barge_ins: u64,
    /// Frames sent more than 5 / 20 ms after their due time.
    pub frames_late_5ms: u64,
    pub frames_late_20ms: u64,
    pub underruns: u64,
    /// Caller audio not delivered to a lagging recogniser, and messages not queued to the socket.
    pub frames_dropped: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    /// Turns that ended in the fallback reply (STT or agent timeout, agent error).
    pub fallbacks: u64,
    pub tts_errors: u64,
}

/// The session phase as the ops view shows it. The bot speaking before any turn is the greeting.
pub fn phase_name(phase: Phase, turns: u64) -> &'static str {
    match phase {
        Phase::Listening => "listening",
        Phase::CallerSpeaking => "caller_speaking",
        Phase::Thinking => "thinking",
        Phase::BotSpeaking if turns == 0 => "greeting",
        Phase::BotSpeaking => "speaking",
        Phase::CollectingDigits => "digits",
        Phase::Ended => "ended",
    }
}

/// One live call as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveCall {
    /// The driver's key (`call_sid:stream_sid`).
    pub call_id: String,
    pub call_sid: String,
    pub started_at_ms: i64,
    /// The stream's `<Parameter>`s (`To`, `business_id`, …): what the business is resolved from.
    #[serde(skip)]
    pub parameters: BTreeMap<String, String>,
    /// The business, once a reader has resolved it ([`LiveCalls::set_business`]).
    pub business: Option<String>,
    /// Wall-clock time of the last snapshot.
    pub updated_at_ms: i64,
    #[serde(flatten)]
    pub now: LiveSnapshot,
}

/// The registry (one per process, shared by the call drivers and the console).
pub struct LiveCalls {
    calls: Mutex<BTreeMap<String, LiveCall>>,
    capacity: usize,
    /// Bumped on every change, so a reader can tell whether anything moved.
    version: AtomicU64,
    refused: AtomicU64,
}

impl LiveCalls {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(BTreeMap::new()),
            capacity: capacity.max(1),
            version: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Sized by the live-call limit (`limits.max_calls`, or `max_connections` when unlimited).
    pub fn for_config(cfg: &crate::config::Config) -> Arc<Self> {
        let limits = &cfg.limits;
        Self::new(if limits.max_calls > 0 {
            limits.max_calls
        } else {
            limits.max_connections
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LiveCall>> {
        // A panic while holding it leaves plain data behind: keep serving it.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Lists a call; `None` (counted) when the registry is full. Dropping the guard removes it.
    pub fn register(
        self: &Arc<Self>,
        call_id: &str,
        call_sid: &str,
        started_at_ms: i64,
        parameters: &BTreeMap<String, String>,
    ) -> Option<LiveGuard> {
        let mut calls = self.lock();
        if calls.len() >= self.capacity && !calls.contains_key(call_id) {
            drop(calls);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        calls.insert(
            call_id.to_string(),
            LiveCall {
                call_id: call_id.to_string(),
                call_sid: call_sid.to_string(),
                started_at_ms,
                parameters: parameters.clone(),
                business: None,
                updated_at_ms: started_at_ms,
                now: LiveSnapshot {
                    phase: phase_name(Phase::Listening, 0),
                    ..LiveSnapshot::default()
                },
            },
        );
        drop(calls);
        self.bump();
        Some(LiveGuard {
            registry: self.clone(),
            call_id: call_id.to_string(),
        })
    }

    /// The call's latest numbers (no allocation: the entry is updated in place).
    fn publish(&self, call_id: &str, at_ms: i64, now: LiveSnapshot) {
        let mut calls = self.lock();
        if let Some(call) = calls.get_mut(call_id) {
            call.now = now;
            call.updated_at_ms = at_ms;
            drop(calls);
            self.bump();
        }
    }

    /// Records the business a reader resolved for this call.
    pub fn set_business(&self, call_id: &str, business: &str) {
        if let Some(call) = self.lock().get_mut(call_id) {
            call.business = Some(business.to_string());
        }
    }

    /// A copy of every live call, in `call_id` order.
    pub fn list(&self) -> Vec<LiveCall> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes so far (registrations, snapshots, removals).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Calls not listed because the registry was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// A listed call: publishes its snapshots, and unlists it when dropped.
pub struct LiveGuard {
    registry: Arc<LiveCalls>,
    call_id: String,
}

impl LiveGuard {
    pub fn publish(&self, at_ms: i64, now: LiveSnapshot) {
        self.registry.publish(&self.call_id, at_ms, now);
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.registry.lock().remove(&self.call_id).is_some() {
            self.registry.bump();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(to: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("To".to_string(), to.to_string())])
    }

    #[test]
    fn calls_are_listed_updated_and_removed_when_their_guard_drops() {
        let live = LiveCalls::new(4);
        let a = live
            .register("CA1:MZ1", "CA1", 1_000, &params("+1"))
            .unwrap();
        let b = live
            .register("CA2:MZ2", "CA2", 2_000, &params("+2"))
            .unwrap();
        assert_eq!(live.len(), 2);
        let v = live.version();
        a.publish(
            3_000,
            LiveSnapshot {
                phase: "speaking",
                turn: 2,
                rtt_ms: Some(84),
                barge_ins: 1,
                ..LiveSnapshot::default()
            },
        );
        assert!(live.version() > v);
        let listed = live.list();
        assert_eq!(listed[0].call_sid, "CA1");
        assert_eq!(listed[0].now.phase, "speaking");
        assert_eq!(listed[0].now.rtt_ms, Some(84));
        assert_eq!(listed[0].updated_at_ms, 3_000);
        assert_eq!(listed[1].now.phase, "listening");
        drop(a);
        assert_eq!(live.list().len(), 1);
        assert_eq!(live.list()[0].call_sid, "CA2");
        drop(b);
        assert!(live.is_empty());
    }

    #[test]
    fn the_registry_is_bounded_and_counts_what_it_refuses() {
        let live = LiveCalls::new(2);
        let _a = live.register("a", "CA_a", 0, &params("+1")).unwrap();
        let b = live.register("b", "CA_b", 0, &params("+1")).unwrap();
        assert!(live.register("c", "CA_c", 0, &params("+1")).is_none());
        assert_eq!(live.refused(), 1);
        assert_eq!(live.len(), 2);
        // A slot frees when a call ends.
        drop(b);
        let _c = live.register("c", "CA_c", 0, &params("+1")).unwrap();
        assert_eq!(live.len(), 2);
    }

    #[test]
    fn a_snapshot_after_removal_lists_nothing() {
        let live = LiveCalls::new(2);
        let a = live.register("a", "CA_a", 0, &params("+1")).unwrap();
        live.set_business("a", "biz_x");
        assert_eq!(live.list()[0].business.as_deref(), Some("biz_x"));
        let registry = live.clone();
        drop(a);
        registry.publish("a", 5, LiveSnapshot::default());
        assert!(registry.is_empty());
    }

    #[test]
    fn the_greeting_is_the_bot_speaking_before_any_turn() {
        assert_eq!(phase_name(Phase::BotSpeaking, 0), "greeting");
        assert_eq!(phase_name(Phase::BotSpeaking, 1), "speaking");
        assert_eq!(phase_name(Phase::Thinking, 3), "thinking");
    }
}
