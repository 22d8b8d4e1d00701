//! Gathering a batch's cohort: a leader that finds fewer writes queued than the writers seen
//! recently waits, a bounded time, for the others to come back before it commits.
//!
//! Concurrent writers that each wait for their answer before writing again come back one by
//! one as their answers go out. Without a wait the first one back is committed alone (or
//! with a few), and the rest wait a whole commit for the next batch: batches of 1, 7, 1, 7
//! writers instead of 8, and twice the flushes (README, "Through the device"). This is the
//! idea of Postgres' `commit_delay` and `commit_siblings`, keyed to the batch before: the
//! leader waits only when more writers were active than are queued, for at most about one
//! commit, and a lone writer never waits.
//!
//! The leader sleeps on a condition variable; a writer that queues wakes it only when the
//! queue reaches the leader's target, so a gathered batch costs the leader one wake-up.

use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// The longest a leader waits for its cohort.
pub(crate) const GATHER_WAIT_MAX: Duration = Duration::from_millis(2);
/// The shortest wait worth a sleep.
pub(crate) const GATHER_WAIT_MIN: Duration = Duration::from_micros(50);

/// Where a leader waits for writes to be queued.
#[derive(Default)]
pub(crate) struct Cohort {
    /// The queue length the waiting leader wants (0: nobody waits).
    target: AtomicUsize,
    lock: Mutex<()>,
    arrived: Condvar,
}

impl Cohort {
    /// A write was queued and the queue now holds `queued`: wakes the waiting leader if that
    /// is its target.
    pub(crate) fn arrived(&self, queued: usize) {
        // Pairs with the fence in `gather`: either the leader sees this write in the queue
        // before it sleeps, or this sees the leader's target. It also pairs with the fence a
        // leader passes after letting go of the committer (`Writer::lead`, which calls this
        // between queueing and `try_lock`): either that leader sees this write queued, or the
        // writer's `try_lock` sees the lock let go.
        fence(Ordering::SeqCst);
        let target = self.target.load(Ordering::Relaxed);
        if target > 0 && queued >= target {
            let _held = self.lock.lock();
            self.arrived.notify_one();
        }
    }

    /// Waits until `queued()` reaches `target` or `wait` passes. Returns how long it waited.
    pub(crate) fn gather(
        &self,
        target: usize,
        wait: Duration,
        queued: impl Fn() -> usize,
    ) -> Duration {
        assert!(target > 1, "a lone writer never waits");
        assert!(wait <= GATHER_WAIT_MAX, "gathering is bounded");
        let started = Instant::now();
        let deadline = started + wait;
        self.target.store(target, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let mut held = self.lock.lock();
        while queued() < target {
            if self.arrived.wait_until(&mut held, deadline).timed_out() {
                break;
            }
        }
        self.target.store(0, Ordering::Relaxed);
        drop(held);
        started.elapsed()
    }
}

/// How many writes the next batch should gather, and for how long, from the batch before.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Estimate {
    /// Writers active at the end of the last batch: its writes plus those queued meanwhile.
    pub(crate) writers: usize,
    /// How long the last batch took to commit.
    pub(crate) commit: Duration,
}

impl Estimate {
    /// The target and the wait for a leader that finds `queued` writes, or `None` when it
    /// should commit at once (nothing queued, or as many as were active).
    pub(crate) fn plan(self, queued: usize, batch_max: usize) -> Option<(usize, Duration)> {
        let target = self.writers.min(batch_max);
        if queued == 0 || queued >= target {
            return None;
        }
        let wait = self.commit.clamp(GATHER_WAIT_MIN, GATHER_WAIT_MAX);
        Some((target, wait))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_lone_writer_never_waits_and_a_full_cohort_commits_at_once() {
        let one = Estimate {
            writers: 1,
            commit: Duration::from_millis(1),
        };
        assert_eq!(one.plan(1, 512), None);
        let eight = Estimate {
            writers: 8,
            commit: Duration::from_millis(1),
        };
        assert_eq!(eight.plan(0, 512), None, "nothing queued: nobody to commit");
        assert_eq!(eight.plan(8, 512), None);
        assert_eq!(eight.plan(9, 512), None);
        assert_eq!(eight.plan(3, 512), Some((8, Duration::from_millis(1))));
        assert_eq!(eight.plan(3, 4), Some((4, Duration::from_millis(1))));
        let slow = Estimate {
            writers: 8,
            commit: Duration::from_secs(1),
        };
        assert_eq!(slow.plan(1, 512), Some((8, GATHER_WAIT_MAX)));
    }

    #[test]
    fn gather_returns_when_the_target_is_queued_and_is_bounded_otherwise() {
        let cohort = Arc::new(Cohort::default());
        let queued = Arc::new(AtomicUsize::new(1));
        let (c, q) = (cohort.clone(), queued.clone());
        let arrivals = std::thread::spawn(move || {
            for _ in 0..3 {
                std::thread::sleep(Duration::from_micros(200));
                let now = q.fetch_add(1, Ordering::SeqCst) + 1;
                c.arrived(now);
            }
        });
        let waited = cohort.gather(4, GATHER_WAIT_MAX, || queued.load(Ordering::SeqCst));
        arrivals.join().unwrap();
        assert!(queued.load(Ordering::SeqCst) >= 4 || waited >= GATHER_WAIT_MAX);
        // Nobody comes: the wait ends at its bound.
        let waited = cohort.gather(8, GATHER_WAIT_MIN, || 1);
        assert!(waited >= GATHER_WAIT_MIN, "{waited:?}");
        assert!(waited < Duration::from_secs(1), "{waited:?}");
    }
}
