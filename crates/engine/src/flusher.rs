//! Flushes that batches share, so that the next batch is staged and written while the device
//! flushes the one before (pipelined group commit, `sync` mode).
//!
//! Every pipelined batch, once written, takes a *ticket* (1, 2, 3, ...). A flush started when
//! the last ticket handed out was `g` covers every batch up to `g`: their writes had
//! completed before it began. One flush at a time is in flight; a batch whose ticket no
//! finished flush covers waits for the one in flight, then starts the next, which covers
//! every batch written meanwhile. So the device always has the next flush queued behind
//! the current one, and no batch waits for more than the flush in flight plus its own.
//!
//! The flush runs without the committer's lock: that is what lets the next leader stage and
//! write meanwhile. Only this module's own small lock is taken, never while waiting for
//! the device.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::error::Error;
use crate::store::Shared;

/// Where the tickets stand.
#[derive(Default)]
struct Tickets {
    /// The last ticket handed out (0: none yet).
    written: u64,
    /// Every ticket up to this one is covered by a flush that succeeded.
    flushed: u64,
    /// The first failed flush's error. It fails every ticket not covered by then: a later
    /// flush that succeeds proves nothing about the writes the failed one may have lost, and
    /// a batch after them in the log could not be read back without them (the store is
    /// read-only from the failure on, so no new batch is written).
    error: Option<Error>,
    /// A flush is under way.
    in_flight: bool,
}

impl Tickets {
    /// What became of `ticket`: `None` until a finished flush covers it.
    fn outcome(&self, ticket: u64) -> Option<Result<(), Error>> {
        if ticket <= self.flushed {
            Some(Ok(()))
        } else {
            self.error.clone().map(Err)
        }
    }
}

/// The shared flushes of the user log's pipelined batches.
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    tickets: Mutex<Tickets>,
    /// Signalled when a flush finishes.
    finished: Condvar,
}

impl Flusher {
    pub(crate) fn new(shared: Arc<Shared>) -> Flusher {
        Flusher {
            shared,
            tickets: Mutex::new(Tickets::default()),
            finished: Condvar::new(),
        }
    }

    /// A batch's write completed: its ticket. Returns also whether a flush was under way
    /// (the write overlapped it).
    pub(crate) fn note_written(&self) -> (u64, bool) {
        let mut t = self.tickets.lock();
        t.written += 1;
        (t.written, t.in_flight)
    }

    /// What became of `ticket`, if a finished flush covers it.
    pub(crate) fn outcome(&self, ticket: u64) -> Option<Result<(), Error>> {
        self.tickets.lock().outcome(ticket)
    }

    /// Every ticket handed out is covered by a flush that succeeded.
    pub(crate) fn all_flushed(&self) -> bool {
        let t = self.tickets.lock();
        t.flushed >= t.written
    }

    /// Returns once a finished flush covers `ticket`, with that flush's outcome: waits for
    /// the flush in flight, and starts the next one when that did not cover it.
    pub(crate) fn flush_covering(&self, ticket: u64) -> Result<(), Error> {
        let mut t = self.tickets.lock();
        assert!(
            ticket <= t.written,
            "a ticket is handed out before it is flushed"
        );
        loop {
            if let Some(outcome) = t.outcome(ticket) {
                return outcome;
            }
            if t.in_flight {
                self.finished.wait(&mut t);
                continue;
            }
            t.in_flight = true;
            let covers = t.written;
            // The device's flush, without this lock: writes go on meanwhile.
            let result = parking_lot::MutexGuard::unlocked(&mut t, || self.shared.disk.flush());
            t.in_flight = false;
            match result {
                Ok(()) => t.flushed = t.flushed.max(covers),
                Err(e) => {
                    t.error.get_or_insert(e);
                }
            }
            self.finished.notify_all();
        }
    }
}
