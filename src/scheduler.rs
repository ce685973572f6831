//! The leased-job scheduler under both durable queues, the booking outbox
//! (`booking::outbox`) and the WhatsApp inbox (`channels::whatsapp::inbox`), as a sans-IO
//! machine. It decides *when*: when a worker looks for work, how long a claimed job is its own,
//! and whether a failed attempt is tried again (at what time, by the one retry policy,
//! [`crate::retry::Backoff`]) or given up. Its shell does the database and HTTP work and feeds the
//! results back; the machine never reads a clock, sleeps or touches IO.
//!
//! Time is the database's axis, Unix milliseconds: leases and retry times are rows every instance
//! shares. Every input carries `now_ms`.
//!
//! The run loop of a shell (one machine per worker):
//! 1. drain [`Scheduler::poll_output`] and carry out each [`Step`]:
//!    * `Claim` → claim (lease) the next runnable job at `now`, answer
//!      [`Scheduler::handle_claimed`] with it or `None`;
//!    * `Run` → run the job once, answer [`Scheduler::handle_outcome`] (bounded by nothing here:
//!      while it runs, the lease deadline is the machine's timeout);
//!    * `Finish` → record the verdict; `LeaseExpired` → say so (log, count).
//!
//!    A database failure anywhere: [`Scheduler::handle_store_error`].
//! 2. wait for [`Scheduler::poll_timeout`]'s deadline ([`Scheduler::handle_timeout`]) or a wake-up
//!    (new work queued: [`Scheduler::handle_wake`]), then go to 1.
//!
//! Invariants:
//! * One job at a time; a claimed job is run once and finished once. Outcomes for anything but
//!   the running job are ignored.
//! * Idle, the worker claims at its poll deadline (`poll_ms` after the last empty claim or store
//!   failure) or at once when woken; after a job it claims the next one at once.
//! * Attempt `n` (1 = first) of a job that fails retryably is retried while `n < max_attempts`, at
//!   `now + Backoff::delay(n - 1, retry_after)`; otherwise, or on a permanent failure, it is given
//!   up. `Run::last_attempt` tells the job when this is its last chance.
//! * A job that outlives its lease is reported once (`LeaseExpired`): another worker may claim it
//!   from then on. The attempt is not cut short, so its result is still recorded.

use std::collections::VecDeque;

use crate::retry::Backoff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Idle: look for work this often.
    pub poll_ms: i64,
    /// A claimed job is the worker's for this long.
    pub lease_ms: i64,
    /// Attempts per job, the first included.
    pub max_attempts: u32,
    pub backoff: Backoff,
}

/// Why the machine wants to be woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Look for work.
    Poll,
    /// The running job's lease runs out.
    LeaseExpiry,
}

/// A job the shell claimed: its id and which attempt this one is (1 = the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    pub attempt: u32,
}

/// How an attempt failed; the kind decides what happens next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt, not before `retry_after_ms` if the provider said so.
    Retryable {
        error: String,
        retry_after_ms: Option<u64>,
    },
    /// Another attempt would fail the same way.
    Permanent(String),
}

/// What becomes of a job after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done {
        result: String,
    },
    /// Runnable again from `at_ms`.
    Retry {
        error: String,
        at_ms: i64,
    },
    GiveUp {
        error: String,
    },
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Claim the next runnable job, leased for `lease_ms` from the shell's `now`; answer
    /// [`Scheduler::handle_claimed`] with that `now`.
    Claim { lease_ms: i64 },
    /// Run the claimed job once; answer [`Scheduler::handle_outcome`].
    Run {
        id: String,
        attempt: u32,
        last_attempt: bool,
    },
    /// Record how the attempt ended.
    Finish {
        id: String,
        attempt: u32,
        verdict: Verdict,
    },
    /// The running job outlived its lease: from now on another worker may claim it too.
    LeaseExpired { id: String },
}

#[derive(Debug)]
enum State {
    /// Waiting to look for work at `next_at`.
    Idle { next_at: i64 },
    /// A `Claim` is out.
    Claiming,
    Running {
        id: String,
        attempt: u32,
        lease_until: i64,
        lease_reported: bool,
        /// Where to go afterwards: `None` claims the next job, `Some(t)` idles until `t` (a job
        /// handed in from outside the poll loop).
        idle_until: Option<i64>,
    },
}

#[derive(Debug)]
pub struct Scheduler {
    settings: Settings,
    state: State,
    outputs: VecDeque<Step>,
    rng: fastrand::Rng,
}

impl Scheduler {
    /// A worker that first looks for work at `first_poll_ms`.
    pub fn new(settings: Settings, first_poll_ms: i64) -> Self {
        Self::with_rng(settings, first_poll_ms, fastrand::Rng::new())
    }

    /// [`Scheduler::new`] with the backoff jitter drawn from `rng` (seeded in tests).
    pub fn with_rng(settings: Settings, first_poll_ms: i64, rng: fastrand::Rng) -> Self {
        Self {
            settings,
            state: State::Idle {
                next_at: first_poll_ms,
            },
            outputs: VecDeque::new(),
            rng,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn poll_output(&mut self) -> Option<Step> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<(i64, Reason)> {
        match &self.state {
            State::Idle { next_at } => Some((*next_at, Reason::Poll)),
            State::Running {
                lease_until,
                lease_reported: false,
                ..
            } => Some((*lease_until, Reason::LeaseExpiry)),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now_ms: i64) {
        match &mut self.state {
            State::Idle { next_at } if now_ms >= *next_at => self.claim(),
            State::Running {
                id,
                lease_until,
                lease_reported,
                ..
            } if !*lease_reported && now_ms >= *lease_until => {
                *lease_reported = true;
                self.outputs
                    .push_back(Step::LeaseExpired { id: id.clone() });
            }
            _ => {}
        }
    }

    /// New work was queued: an idle worker looks at once.
    pub fn handle_wake(&mut self, now_ms: i64) {
        if let State::Idle { next_at } = &mut self.state {
            *next_at = (*next_at).min(now_ms);
            self.handle_timeout(now_ms);
        }
    }

    /// The answer to `Claim`, claimed at `now_ms`. An idle machine also takes a job claimed
    /// outside its poll loop (an immediate delivery), and goes back to idling after it.
    pub fn handle_claimed(&mut self, now_ms: i64, job: Option<Claimed>) {
        let idle_until = match self.state {
            State::Claiming => None,
            State::Idle { next_at } if job.is_some() => Some(next_at),
            _ => return,
        };
        let Some(Claimed { id, attempt }) = job else {
            self.state = State::Idle {
                next_at: now_ms + self.settings.poll_ms,
            };
            return;
        };
        self.outputs.push_back(Step::Run {
            id: id.clone(),
            attempt,
            last_attempt: attempt >= self.settings.max_attempts,
        });
        self.state = State::Running {
            id,
            attempt,
            lease_until: now_ms + self.settings.lease_ms,
            lease_reported: false,
            idle_until,
        };
    }

    /// The running job's attempt ended at `now_ms` (`Ok` carries its result, e.g. a receipt).
    pub fn handle_outcome(&mut self, now_ms: i64, id: &str, outcome: Result<String, Failure>) {
        let State::Running {
            id: running,
            attempt,
            idle_until,
            ..
        } = &self.state
        else {
            return;
        };
        if running != id {
            return;
        }
        let (attempt, idle_until) = (*attempt, *idle_until);
        let verdict = self.verdict(now_ms, attempt, outcome);
        self.outputs.push_back(Step::Finish {
            id: id.to_string(),
            attempt,
            verdict,
        });
        match idle_until {
            None => self.claim(),
            Some(next_at) => self.state = State::Idle { next_at },
        }
    }

    /// Claiming, running or finishing failed in the database: drop what is pending and look
    /// again after the poll interval (a claimed job comes back when its lease runs out).
    pub fn handle_store_error(&mut self, now_ms: i64) {
        self.outputs.clear();
        self.state = State::Idle {
            next_at: now_ms + self.settings.poll_ms,
        };
    }

    fn claim(&mut self) {
        self.state = State::Claiming;
        self.outputs.push_back(Step::Claim {
            lease_ms: self.settings.lease_ms,
        });
    }

    fn verdict(&mut self, now_ms: i64, attempt: u32, outcome: Result<String, Failure>) -> Verdict {
        match outcome {
            Ok(result) => Verdict::Done { result },
            Err(Failure::Retryable {
                error,
                retry_after_ms,
            }) if attempt < self.settings.max_attempts => {
                let delay = self.settings.backoff.delay_at(
                    attempt.saturating_sub(1),
                    retry_after_ms.map(std::time::Duration::from_millis),
                    self.rng.f64(),
                );
                Verdict::Retry {
                    error,
                    at_ms: now_ms + delay.as_millis() as i64,
                }
            }
            Err(Failure::Retryable { error, .. } | Failure::Permanent(error)) => {
                Verdict::GiveUp { error }
            }
        }
    }
}

// ------------------------------------------------------------------ shell helpers

/// How long a shell sleeps before calling [`Scheduler::handle_timeout`] (the poll interval when
/// the machine waits for nothing, which only happens mid-step).
pub fn shell_wait(machine: &Scheduler, now_ms: i64) -> std::time::Duration {
    match machine.poll_timeout() {
        Some((at, _)) => crate::clock::until(now_ms, at),
        None => crate::clock::until(0, machine.settings.poll_ms),
    }
}

/// Runs one job's `work` to its end. If the lease deadline passes first, the machine hears of it
/// (and queues `LeaseExpired`) while `work` goes on.
pub async fn run_leased<F: std::future::Future>(
    machine: &mut Scheduler,
    now_ms: &(dyn Fn() -> i64 + Sync),
    work: F,
) -> F::Output {
    tokio::pin!(work);
    while let Some((at, Reason::LeaseExpiry)) = machine.poll_timeout() {
        tokio::select! {
            out = &mut work => return out,
            _ = tokio::time::sleep(crate::clock::until(now_ms(), at)) => {
                machine.handle_timeout(now_ms());
            }
        }
    }
    work.await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: i64 = 1_700_000_000_000;
    const SETTINGS: Settings = Settings {
        poll_ms: 1_000,
        lease_ms: 30_000,
        max_attempts: 5,
        backoff: Backoff::new(Duration::from_millis(2_000), Duration::from_millis(20_000)),
    };

    fn machine(seed: u64) -> Scheduler {
        Scheduler::with_rng(SETTINGS, T0, fastrand::Rng::with_seed(seed))
    }

    fn steps(m: &mut Scheduler) -> Vec<Step> {
        std::iter::from_fn(|| m.poll_output()).collect()
    }

    fn job(id: &str, attempt: u32) -> Option<Claimed> {
        Some(Claimed {
            id: id.into(),
            attempt,
        })
    }

    fn retryable(retry_after_ms: Option<u64>) -> Result<String, Failure> {
        Err(Failure::Retryable {
            error: "503".into(),
            retry_after_ms,
        })
    }

    /// Runs attempt `attempt` of job `id` at `now` to `outcome`; returns the verdict.
    fn attempt(
        m: &mut Scheduler,
        now: i64,
        id: &str,
        attempt: u32,
        outcome: Result<String, Failure>,
    ) -> Verdict {
        m.handle_timeout(now);
        m.handle_wake(now);
        assert_eq!(
            steps(m),
            [Step::Claim { lease_ms: 30_000 }],
            "claims when due"
        );
        m.handle_claimed(now, job(id, attempt));
        assert!(matches!(&steps(m)[..], [Step::Run { attempt: a, .. }] if *a == attempt));
        m.handle_outcome(now, id, outcome);
        let out = steps(m);
        let [Step::Finish { verdict, .. }, Step::Claim { .. }] = &out[..] else {
            panic!("{out:?}");
        };
        m.handle_claimed(now, None);
        verdict.clone()
    }

    #[test]
    fn an_idle_worker_polls_on_its_interval_and_at_once_when_woken() {
        let mut m = machine(1);
        assert_eq!(m.poll_timeout(), Some((T0, Reason::Poll)));
        m.handle_timeout(T0);
        assert_eq!(steps(&mut m), [Step::Claim { lease_ms: 30_000 }]);
        assert_eq!(m.poll_timeout(), None, "waits for the claim's answer");
        m.handle_claimed(T0 + 5, None);
        assert_eq!(m.poll_timeout(), Some((T0 + 1_005, Reason::Poll)));
        m.handle_timeout(T0 + 1_004);
        assert!(steps(&mut m).is_empty(), "not before the interval");
        m.handle_wake(T0 + 300);
        assert_eq!(steps(&mut m), [Step::Claim { lease_ms: 30_000 }]);
        // A wake while claiming changes nothing: the claim under way sees the new work.
        m.handle_wake(T0 + 301);
        assert!(steps(&mut m).is_empty());
    }

    #[test]
    fn after_a_job_the_next_is_claimed_at_once() {
        let mut m = machine(1);
        m.handle_timeout(T0);
        steps(&mut m);
        m.handle_claimed(T0, job("a", 1));
        assert_eq!(
            steps(&mut m),
            [Step::Run {
                id: "a".into(),
                attempt: 1,
                last_attempt: false
            }]
        );
        m.handle_outcome(T0 + 40, "a", Ok("wamid.1".into()));
        assert_eq!(
            steps(&mut m),
            [
                Step::Finish {
                    id: "a".into(),
                    attempt: 1,
                    verdict: Verdict::Done {
                        result: "wamid.1".into()
                    }
                },
                Step::Claim { lease_ms: 30_000 }
            ]
        );
    }

    #[test]
    fn backoff_grows_with_jitter_within_the_policy_bounds() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let mut m = machine(seed);
            let mut now = T0;
            for n in 1..SETTINGS.max_attempts {
                let Verdict::Retry { at_ms, .. } = attempt(&mut m, now, "e", n, retryable(None))
                else {
                    panic!("attempt {n} is retried");
                };
                let full = (2_000i64 << (n - 1)).min(20_000);
                let wait = at_ms - now;
                assert!((full / 2..=full).contains(&wait), "attempt {n}: {wait}");
                seen.insert((n, wait));
                now = at_ms;
            }
        }
        // Jitter: twenty workers that failed together do not all retry together.
        assert!(
            seen.iter().filter(|(n, _)| *n == 1).count() > 10,
            "{seen:?}"
        );
    }

    #[test]
    fn a_retry_after_is_honoured_up_to_the_cap() {
        let mut m = machine(7);
        let Verdict::Retry { at_ms, .. } = attempt(&mut m, T0, "e", 1, retryable(Some(9_000)))
        else {
            panic!()
        };
        assert_eq!(at_ms, T0 + 9_000, "above the policy's 1-2 s: the hint wins");
        let Verdict::Retry { at_ms, .. } = attempt(&mut m, T0, "e", 2, retryable(Some(600_000)))
        else {
            panic!()
        };
        assert_eq!(at_ms, T0 + 20_000, "never past the cap");
    }

    #[test]
    fn a_job_is_given_up_after_max_attempts_or_at_once_when_permanent() {
        let mut m = machine(3);
        m.handle_timeout(T0);
        steps(&mut m);
        m.handle_claimed(T0, job("e", 5));
        assert_eq!(
            steps(&mut m),
            [Step::Run {
                id: "e".into(),
                attempt: 5,
                last_attempt: true
            }],
            "the job is told this is its last chance"
        );
        m.handle_outcome(T0, "e", retryable(None));
        assert!(matches!(
            &steps(&mut m)[0],
            Step::Finish { verdict: Verdict::GiveUp { error }, .. } if error == "503"
        ));
        m.handle_claimed(T0, None); // nothing else queued
        let v = attempt(
            &mut m,
            T0 + 1_000,
            "f",
            1,
            Err(Failure::Permanent("bad number".into())),
        );
        assert_eq!(
            v,
            Verdict::GiveUp {
                error: "bad number".into()
            }
        );
    }

    #[test]
    fn a_job_outliving_its_lease_is_reported_once_and_still_finished() {
        let mut m = machine(1);
        m.handle_timeout(T0);
        steps(&mut m);
        m.handle_claimed(T0 + 10, job("slow", 1));
        steps(&mut m);
        assert_eq!(m.poll_timeout(), Some((T0 + 30_010, Reason::LeaseExpiry)));
        m.handle_timeout(T0 + 30_009);
        assert!(steps(&mut m).is_empty());
        m.handle_timeout(T0 + 30_010);
        assert_eq!(steps(&mut m), [Step::LeaseExpired { id: "slow".into() }]);
        assert_eq!(m.poll_timeout(), None, "reported once");
        m.handle_outcome(T0 + 31_000, "slow", Ok("late".into()));
        assert!(matches!(
            &steps(&mut m)[0],
            Step::Finish {
                verdict: Verdict::Done { .. },
                ..
            }
        ));
    }

    #[test]
    fn stale_outcomes_are_ignored_and_a_store_error_backs_off_to_the_poll() {
        let mut m = machine(1);
        m.handle_timeout(T0);
        steps(&mut m);
        m.handle_claimed(T0, job("a", 1));
        steps(&mut m);
        m.handle_outcome(T0, "b", Ok(String::new()));
        assert!(steps(&mut m).is_empty(), "not the running job");
        m.handle_outcome(T0, "a", Ok(String::new()));
        assert_eq!(steps(&mut m).len(), 2);
        // Finishing failed in the database: the queued claim is dropped, the worker waits.
        m.handle_store_error(T0 + 50);
        assert!(steps(&mut m).is_empty());
        assert_eq!(m.poll_timeout(), Some((T0 + 1_050, Reason::Poll)));
    }

    #[test]
    fn a_job_claimed_outside_the_loop_runs_and_the_worker_idles_again() {
        let mut m = machine(1);
        m.handle_claimed(T0 - 500, job("now", 1));
        assert!(matches!(&steps(&mut m)[..], [Step::Run { .. }]));
        m.handle_outcome(T0 - 400, "now", Ok(String::new()));
        assert!(matches!(&steps(&mut m)[..], [Step::Finish { .. }]));
        assert_eq!(m.poll_timeout(), Some((T0, Reason::Poll)));
        m.handle_claimed(T0, None);
        assert!(steps(&mut m).is_empty(), "no claim was asked for");
    }
}
