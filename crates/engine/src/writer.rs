//! The write path: the committer owns the user log (its active segment) and the sequence
//! numbers, and applies writes in batches.
//!
//! Writers put their operation into a bounded queue and then try to take the committer's
//! lock: the one that gets it commits (it is the *leader*) what is queued, batch after batch,
//! until the queue is empty; the others return at once, and the leader answers them. A lone
//! writer so commits its own write on its own thread, with no hand-off to another thread and
//! back; concurrent writers share the leader's batches (group commit). A small timer thread
//! flushes write-behind writes when their delay runs out.
//!
//! A batch is whatever is queued when the leader comes round, up to [`BATCH_OPS_MAX`]
//! operations: each is checked against the index (and earlier writes of the same batch),
//! encoded into the active segment's buffer and given the next sequence number. Then the
//! dirty blocks are written with one request, the device cache is flushed (in `Sync` mode;
//! in write-behind mode when a bound is reached), the index is updated and every writer of
//! the batch is answered. One flush covers the whole batch: group commit.
//!
//! Answers go out once the batch is in the index, never under the committer's lock: answering
//! a writer (a reply to the kernel, which wakes the writer's process) costs about as much as
//! staging a batch. When nothing else is queued the leader answers its batch itself, after
//! letting go of the lock. When the next batch is already waiting, the leader hands the
//! answers to the answer thread and commits that batch at once, so that the device is not
//! idle while a batch's writers are answered (the writers answered first would otherwise come
//! back, find the lock free and commit alone: batches of 1, 7, 1, 7 writers instead of 8).
//!
//! In `Sync` mode a batch of puts that fits the active segment is pipelined: the leader
//! writes it, lets go of the lock, and waits for a flush that covers it (`flusher.rs`), while
//! the next leader stages and writes the next batch; the batches in flight are published in
//! order once a flush covers them. Anything else first waits for every batch in flight to be
//! published (DESIGN.md, "Pipelined commit").
//!
//! Nothing is acknowledged before it is written (and, in `Sync` mode, flushed). A write or
//! flush error fails the whole batch and turns the store read-only (see DESIGN.md).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use std::sync::atomic::{fence, AtomicBool, Ordering};

use crossbeam_channel::Receiver;

use crate::cohort::{Cohort, Estimate};
use crate::compaction::Compactor;
use crate::config::Durability;
use crate::device::AlignedBuf;
use crate::error::Error;
use crate::flusher::Flusher;
use crate::format::{self, Kind, KEY_MAX, VALUE_MAX};
use crate::index::Loc;
use crate::lock::{Level, OrderedLongMutex};
use crate::observe::Change;
use crate::segment::{DurableMark, SegmentWriter, WriteMode};
use crate::space::{Purpose, SegState};
use crate::store::{Counters, Shared};

/// Answers a leader splits with the answer thread at least (fewer: it gives them all).
const ANSWER_SPLIT_MIN: usize = 2;
/// Operations one batch takes at most.
const BATCH_OPS_MAX: usize = 512;
/// Bytes of records one batch writes at most (besides the one that crosses the bound).
const BATCH_BYTES_MAX: usize = 8 << 20;
/// How long a write waits for compaction to free space before it answers ENOSPC.
const SPACE_WAIT_MAX: Duration = Duration::from_secs(2);
/// How often the timer thread looks at the queue when no flush is due, in write-behind mode
/// (where it takes the committer's lock itself to check the deadline, and lets go without
/// looking at the queue; `sync` mode waits [`Config::sync_safety_net`](crate::Config)).
const TIMER_IDLE: Duration = Duration::from_millis(100);

/// A write request.
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteOp {
    /// Insert or overwrite.
    Put {
        /// The key, 1 to 512 bytes.
        key: Box<[u8]>,
        /// The value, 1 to 102,400 bytes; shared as it is with the value cache and the
        /// observer (no copy of it is made once it is queued).
        value: Arc<[u8]>,
    },
    /// Append to the value (a missing key is created with `suffix`).
    Append {
        /// The key, 1 to 512 bytes.
        key: Box<[u8]>,
        /// The bytes to append, 1 to 102,400.
        suffix: Box<[u8]>,
    },
    /// Remove a key ([`Error::NotFound`] if it has no value).
    Delete {
        /// The key, 1 to 512 bytes.
        key: Box<[u8]>,
    },
    /// Remove every record.
    Purge,
    /// Make every acknowledged write durable.
    Sync,
}

/// Checks a key's length.
///
/// # Errors
/// [`Error::Invalid`] unless it is 1 to 512 bytes.
pub fn validate_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() || key.len() > KEY_MAX {
        return Err(Error::Invalid("key length must be 1 to 512 bytes"));
    }
    Ok(())
}

/// Checks a value's length.
///
/// # Errors
/// [`Error::Invalid`] unless it is 1 to 102,400 bytes.
pub fn validate_value(value: &[u8]) -> Result<(), Error> {
    if value.is_empty() || value.len() > VALUE_MAX {
        return Err(Error::Invalid("value length must be 1 to 102400 bytes"));
    }
    Ok(())
}

impl WriteOp {
    /// Checks the lengths of the operation's key and value.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a length out of bounds.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            WriteOp::Put { key, value } => validate_key(key).and_then(|()| validate_value(value)),
            WriteOp::Append { key, suffix } => {
                validate_key(key).and_then(|()| validate_value(suffix))
            }
            WriteOp::Delete { key } => validate_key(key),
            WriteOp::Purge | WriteOp::Sync => Ok(()),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            WriteOp::Put { key, value } => key.len() + value.len(),
            WriteOp::Append { key, suffix } => key.len() + suffix.len(),
            WriteOp::Delete { key } => key.len(),
            WriteOp::Purge | WriteOp::Sync => 0,
        }
    }
}

/// Called with the outcome of a write once it is acknowledged (or refused).
pub type Done = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// A writer's answer, given after the committer's lock is let go.
pub(crate) type Answer = (Done, Result<(), Error>);

/// Gives a batch's answers, in order.
pub(crate) fn deliver(answers: Vec<Answer>) {
    for (done, result) in answers {
        done(result);
    }
}

/// Batches of answers waiting for the answer thread, at most; a leader that finds it full
/// answers itself.
const ANSWER_BATCHES_MAX: usize = 1024;

/// The answer thread's queue. A mutex and a condition variable rather than a channel: the
/// thread parks at once when the queue is empty, where a channel's receiver first spins and
/// yields the CPU a few times (a system call each, expensive under emulation).
#[derive(Default)]
pub(crate) struct AnswerQueue {
    state: parking_lot::Mutex<AnswerState>,
    ready: parking_lot::Condvar,
}

#[derive(Default)]
struct AnswerState {
    batches: std::collections::VecDeque<Vec<Answer>>,
    closed: bool,
}

impl AnswerQueue {
    /// Queues a batch's answers; back if the queue is closed or full.
    fn push(&self, answers: Vec<Answer>) -> Result<(), Vec<Answer>> {
        let mut state = self.state.lock();
        if state.closed || state.batches.len() >= ANSWER_BATCHES_MAX {
            return Err(answers);
        }
        state.batches.push_back(answers);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// Refuses later batches; the thread stops once it has given the queued ones.
    fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }

    /// The answer thread: gives the queued batches' answers until the queue is closed and
    /// empty ([`Writer::stop`]).
    pub(crate) fn run(&self) {
        loop {
            let next = {
                let mut state = self.state.lock();
                loop {
                    if let Some(answers) = state.batches.pop_front() {
                        break Some(answers);
                    }
                    if state.closed {
                        break None;
                    }
                    self.ready.wait(&mut state);
                }
            };
            match next {
                Some(answers) => deliver(answers),
                None => return,
            }
        }
    }
}

/// Records one batch of puts takes at most ([`crate::Engine::submit_puts`]).
pub const PUTS_RECORDS_MAX: usize = 1 << 14;
/// Bytes of keys and values one batch of puts takes at most.
pub const PUTS_BYTES_MAX: usize = 1 << 20;

/// A key and its value.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

/// The records of a batch of puts, in order.
pub type Records = Vec<KeyValue>;

/// Called with the outcome of a batch of puts once every record is acknowledged: the number
/// stored (all, or the first ones when the device filled), or why none was.
pub type PutsDone = Box<dyn FnOnce(Result<usize, Error>) + Send>;

/// Checks a batch of puts: 1 to [`PUTS_RECORDS_MAX`] records of at most [`PUTS_BYTES_MAX`]
/// bytes in all, each key and value within its limits.
///
/// # Errors
/// [`Error::Invalid`] for a batch out of bounds.
pub fn validate_puts(records: &[KeyValue]) -> Result<(), Error> {
    if records.is_empty() || records.len() > PUTS_RECORDS_MAX {
        return Err(Error::Invalid("a batch holds 1 to 16384 records"));
    }
    let bytes: usize = records.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > PUTS_BYTES_MAX {
        return Err(Error::Invalid(
            "a batch holds at most 1 MiB of keys and values",
        ));
    }
    records
        .iter()
        .try_for_each(|(key, value)| validate_key(key).and_then(|()| validate_value(value)))
}

/// A queued write and whom to tell.
pub(crate) enum Queued {
    /// One operation.
    One(WriteOp, Done),
    /// A batch of puts, committed in one group with one answer.
    Puts(Records, PutsDone),
}

impl Queued {
    fn bytes(&self) -> usize {
        match self {
            Queued::One(op, _) => op.bytes(),
            Queued::Puts(records, _) => records.iter().map(|(k, v)| k.len() + v.len()).sum(),
        }
    }

    /// Answers without carrying it out.
    pub(crate) fn refuse(self, e: Error) {
        match self {
            Queued::One(_, done) => done(Err(e)),
            Queued::Puts(_, done) => done(Err(e)),
        }
    }
}

/// Gathers the outcomes of the records of a batch of puts into its one answer. The records
/// are staged in order and stop at the first refused (ENOSPC), so the stored ones are always
/// the first ones.
struct Tally {
    /// Records whose outcome is not known yet.
    left: usize,
    stored: usize,
    error: Option<Error>,
    done: Option<PutsDone>,
}

impl Tally {
    fn new(records: usize, done: PutsDone) -> Arc<Mutex<Tally>> {
        assert!(records > 0, "a batch of puts holds a record");
        Arc::new(Mutex::new(Tally {
            left: records,
            stored: 0,
            error: None,
            done: Some(done),
        }))
    }

    /// The [`Done`] of one record.
    fn record_done(tally: &Arc<Mutex<Tally>>) -> Done {
        let tally = tally.clone();
        Box::new(move |result| Tally::note(&tally, 1, result.err()))
    }

    /// `records` records are settled: stored unless `error`. The batch is answered (outside
    /// the lock) once none is left.
    fn note(tally: &Mutex<Tally>, records: usize, error: Option<Error>) {
        let finished = {
            let mut t = tally.lock().expect("a tally's holder panicked");
            assert!(records <= t.left, "more outcomes than records");
            t.left -= records;
            // Outcomes come in any order (a batch's answers are split between two threads);
            // which records were stored was settled in order when they were staged.
            match error {
                None => t.stored += records,
                Some(e) => drop(t.error.get_or_insert(e)),
            }
            (t.left == 0).then(|| {
                let done = t.done.take().expect("answered once");
                let result = match t.error.take() {
                    Some(e) if t.stored == 0 => Err(e),
                    _ => Ok(t.stored),
                };
                (done, result)
            })
        };
        if let Some((done, result)) = finished {
            done(result);
        }
    }

    /// Records never staged (after a refused one): not stored, no error of their own.
    fn skip(tally: &Mutex<Tally>, records: usize) {
        if records > 0 {
            let mut t = tally.lock().expect("a tally's holder panicked");
            assert!(
                t.error.is_some() || t.left > records,
                "skipped without a refusal"
            );
            assert!(records <= t.left, "more outcomes than records");
            t.left -= records;
        }
    }
}

/// The outcome of one operation in a batch, held until the batch is on disk.
enum Staged {
    /// A record was appended; the index learns it once the batch is written.
    Record {
        key: Box<[u8]>,
        seq: u64,
        loc: Loc,
        kind: Kind,
        value: Option<Arc<[u8]>>,
        done: Done,
    },
    /// Answered without writing (an error, or a SYNC waiting for the flush).
    Answer {
        result: Result<(), Error>,
        done: Done,
        is_sync: bool,
    },
}

/// Values as the batch so far leaves them, for appends and deletes later in the batch.
type Overlay = HashMap<Box<[u8]>, Option<Arc<[u8]>>>;

/// What a write puts on disk: key, kind, value (none for a tombstone), and whose space.
type Resolved = (Box<[u8]>, Kind, Option<Arc<[u8]>>, Purpose);

/// Wakes the timer thread before its tick: a write-behind deadline was set, or it must stop.
/// A condition variable, on which the timer sleeps in the kernel at once: the channel it
/// replaces spun and called `sched_yield` about four times each time the timer waited.
#[derive(Default)]
struct Alarm {
    rung: Mutex<bool>,
    bell: Condvar,
}

impl Alarm {
    fn ring(&self) {
        *self.rung.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.bell.notify_one();
    }

    /// Waits until rung or until `wait` passes, and clears the ring.
    fn wait(&self, wait: Duration) {
        let rung = self.rung.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut rung, _) = self
            .bell
            .wait_timeout_while(rung, wait, |rung| !*rung)
            .unwrap_or_else(PoisonError::into_inner);
        *rung = false;
    }
}

/// The write path's shared half: the queue, the committer behind its lock, the timer.
pub(crate) struct Writer {
    /// The committer; whoever holds this lock is the leader (level [`Level::Commit`]).
    core: OrderedLongMutex<Committer>,
    rx: Receiver<Queued>,
    /// Wakes the timer thread (a write-behind deadline was set, or it must stop).
    alarm: Arc<Alarm>,
    stopping: AtomicBool,
    /// `sync` mode: how long the timer sleeps between its safety-net leads.
    sync_safety_net: Duration,
    /// Where a leader waits for the rest of its batch's writers.
    cohort: Cohort,
    /// The store is in `Sync` mode (the timer has no write-behind deadline to keep).
    sync_mode: bool,
    /// The flushes of pipelined batches, run without the committer's lock.
    flusher: Arc<Flusher>,
}

/// A batch written but not yet covered by a flush (pipelined, `Sync` mode): published, in
/// order, once one is.
struct InFlight {
    ticket: u64,
    staged: Vec<Staged>,
}

/// What a leader's turn with the committer left to do.
struct Committed {
    /// Answers ready to give (after the lock is let go).
    answers: Vec<Answer>,
    /// The batch just written waits for the flush that covers this ticket (pipelined).
    ticket: Option<u64>,
}

/// The committer: the user log and everything a batch needs.
pub(crate) struct Committer {
    shared: Arc<Shared>,
    compactor: Arc<Compactor>,
    log: Option<SegmentWriter>,
    /// Whose space the active segment was taken from: a segment taken for deletes (from
    /// the reserve puts may not touch) takes no put, so the reserve stays the deletes'.
    log_taken_for: Purpose,
    spare: Option<AlignedBuf>,
    /// Segments filled during the current batch. They are sealed (and so become candidates
    /// for compaction) only after the batch is in the index: until then compaction would
    /// see their records as dead.
    filled: Vec<(u32, u32)>,
    /// Headers of the segments filled during the current batch that say all their records
    /// are durable: written (and flushed) once the batch is.
    filled_marks: Vec<DurableMark>,
    /// The sequence number of the next record; owned here alone.
    next_seq: u64,
    /// Written but not flushed (write-behind mode).
    unflushed_writes: u32,
    oldest_unflushed: Option<Instant>,
    /// An I/O error met while moving the log to a new segment in the middle of the batch.
    staging_error: Option<Error>,
    /// After the shutdown's final flush: every later write answers [`Error::Closed`].
    closed: bool,
    alarm: Arc<Alarm>,
    /// The answers of the batch being committed, given once the lock is let go.
    answers: Vec<Answer>,
    /// The answer thread's queue; taken by [`Writer::stop`] (then the leader answers
    /// everything itself).
    answers_out: Option<Arc<AnswerQueue>>,
    /// What the last batch says of the next one's writers.
    estimate: Estimate,
    /// The flushes shared by pipelined batches.
    flusher: Arc<Flusher>,
    /// Pipelined batches written and not yet published, in ticket order.
    in_flight: VecDeque<InFlight>,
    /// The batch being committed may be pipelined (set by `commit_next`).
    pipelining: bool,
    /// The ticket of the batch just pipelined, for `commit_next` to return.
    pending: Option<u64>,
    /// Empty vectors kept for the next batch's operations and staged records: a lone
    /// writer's every write would otherwise allocate and free both (each allocation costs
    /// as much as staging a record, under emulation).
    spare_batch: Vec<Queued>,
    spare_staged: Vec<Staged>,
}

impl Writer {
    /// The write path of a store just opened: `rx` is the queue's receiving end, `log` the
    /// segment the user log resumes in (see `recovery::resume_log`), `next_seq` one above
    /// the highest sequence number on the device.
    pub fn new(
        shared: Arc<Shared>,
        compactor: Arc<Compactor>,
        rx: Receiver<Queued>,
        log: Option<SegmentWriter>,
        next_seq: u64,
        answers_out: Arc<AnswerQueue>,
    ) -> Writer {
        let alarm = Arc::new(Alarm::default());
        let sync_mode = shared.config.durability == Durability::Sync;
        let sync_safety_net = shared.config.sync_safety_net;
        let flusher = Arc::new(Flusher::new(shared.clone()));
        let mut core = Committer::new(
            shared,
            compactor,
            log,
            next_seq,
            alarm.clone(),
            flusher.clone(),
        );
        core.answers_out = Some(answers_out);
        Writer {
            core: OrderedLongMutex::new(Level::Commit, core),
            rx,
            alarm,
            stopping: AtomicBool::new(false),
            sync_safety_net,
            cohort: Cohort::default(),
            sync_mode,
            flusher,
        }
    }

    /// Commits what is queued if no other thread is doing so: called by every writer right
    /// after queueing. Returns at once when another thread leads (it will take this
    /// writer's operation too: it empties the queue before it lets go, and looks again
    /// after letting go).
    ///
    /// Each batch's answers go to the answer thread when another batch waits (committed at
    /// once), else out from this thread after the lock is let go.
    ///
    /// Before each batch the leader may wait, a bounded time, for more of the writers seen
    /// recently to queue (see `cohort.rs`).
    pub fn lead(&self) {
        self.cohort.arrived(self.rx.len());
        while let Some(mut core) = self.core.try_lock() {
            self.gather(&core);
            let mut step = core.commit_next(&self.rx, true);
            while step.ticket.is_none() && !step.answers.is_empty() && !self.rx.is_empty() {
                match core.hand_over(step.answers) {
                    Ok(()) => {
                        self.gather(&core);
                        step = core.commit_next(&self.rx, true);
                    }
                    // No answer thread (stopping): answer here, then look again.
                    Err(back) => {
                        step.answers = back;
                        break;
                    }
                }
            }
            if let Some(ticket) = step.ticket {
                // The batch is written: let the next leader stage and write the next one
                // while the device flushes this one (its outcome is read under the lock).
                drop(core);
                let _ = self.flusher.flush_covering(ticket);
                core = self.core.lock();
                core.settle();
                step.answers.append(&mut core.answers);
            }
            // Each answer wakes its writer, which tends to take this thread's CPU at once:
            // two threads answering halves of a batch bring its writers back sooner.
            let mine = if step.answers.len() >= ANSWER_SPLIT_MIN {
                core.hand_over_half(step.answers)
            } else {
                step.answers
            };
            drop(core);
            deliver(mine);
            // Pairs with the fence in `Cohort::arrived`, which every writer passes between
            // queueing and its `try_lock`: either this load sees that write queued, or that
            // writer's `try_lock` sees the lock let go (DESIGN.md, "Write path").
            fence(Ordering::SeqCst);
            if self.rx.is_empty() {
                return;
            }
        }
    }

    /// Waits (bounded) for as many writes as the last batch's writers to be queued, when
    /// some but fewer are, in `sync` mode only. Not while a pipelined batch waits for its
    /// flush: writes queued during that flush are the next batch. Not in write-behind mode:
    /// there a batch costs one write into the kernel's cache and no flush, so a smaller batch
    /// costs less than the wait (8 writers made 1.24 times the writes a second without it, in
    /// the VM: README, "Through the device").
    fn gather(&self, core: &Committer) {
        if !self.sync_mode || !core.in_flight.is_empty() {
            return;
        }
        if let Some((target, wait)) = core.estimate.plan(self.rx.len(), BATCH_OPS_MAX) {
            let waited = self.cohort.gather(target, wait, || self.rx.len());
            Counters::add(&core.shared.counters.gathers, 1);
            Counters::add(
                &core.shared.counters.gather_us,
                u64::try_from(waited.as_micros()).unwrap_or(u64::MAX),
            );
        }
    }

    /// Holds the committer's lock until the hold is dropped, then leads: writes queued
    /// meanwhile (from other threads) are committed as one batch. For tests.
    #[cfg(feature = "testkit")]
    pub fn hold(&self) -> Hold<'_> {
        Hold {
            core: Some(self.core.lock()),
            writer: self,
        }
    }

    /// The timer thread: flushes write-behind writes when their delay runs out, and empties
    /// the queue now and then (a safety net). Stops on [`Writer::stop`].
    pub fn run_timer(&self) {
        while !self.stopping.load(Ordering::SeqCst) {
            // A sync store has no deadline: no need to wait for a busy leader to learn it.
            let deadline = if self.sync_mode {
                None
            } else {
                self.core.lock().flush_deadline()
            };
            let wait = if self.sync_mode {
                self.sync_safety_net
            } else {
                deadline.map_or(TIMER_IDLE, |d| {
                    d.saturating_duration_since(Instant::now()).min(TIMER_IDLE)
                })
            };
            self.alarm.wait(wait);
            // A sync store has no deadline to keep: no need to wait for the lock either (a
            // leader holds it through a whole batch).
            if !self.sync_mode {
                let mut core = self.core.lock();
                if core.flush_deadline().is_some_and(|d| d <= Instant::now()) {
                    core.flush_write_behind();
                }
            }
            // The safety net commits what is queued as any writer would: only if nobody leads
            // (under steady writes the queue is never empty, and a timer that drained it
            // under the lock led for long stretches, answering every batch itself).
            self.lead();
        }
    }

    /// Finishes everything queued, flushes, seals the log and refuses later writes.
    /// Returns the next sequence number (for the shutdown's snapshot).
    ///
    /// # Errors
    /// The final write or flush's failure; [`Error::TimedOut`] when the committer stays
    /// busy past `wait`.
    pub fn close(&self, wait: Duration) -> Result<u64, Error> {
        let Some(mut core) = self.core.try_lock_for(wait) else {
            log::error!("the committer stayed busy for {wait:?}; not waiting for it");
            return Err(Error::TimedOut);
        };
        core.drain(&self.rx);
        let result = core.finish().map(|()| core.next_seq);
        core.closed = true;
        result
    }

    /// Stops the timer thread and the answer thread (once it has given every answer handed
    /// to it).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let mut core = self.core.lock();
        if let Some(queue) = core.answers_out.take() {
            queue.close();
        }
        core.alarm.ring();
    }
}

/// The committer held by a test ([`Writer::hold`]).
#[cfg(feature = "testkit")]
pub struct Hold<'a> {
    core: Option<crate::lock::LongGuard<'a, Committer>>,
    writer: &'a Writer,
}

#[cfg(feature = "testkit")]
impl Drop for Hold<'_> {
    fn drop(&mut self) {
        drop(self.core.take());
        self.writer.lead();
    }
}

impl Committer {
    fn new(
        shared: Arc<Shared>,
        compactor: Arc<Compactor>,
        log: Option<SegmentWriter>,
        next_seq: u64,
        alarm: Arc<Alarm>,
        flusher: Arc<Flusher>,
    ) -> Committer {
        assert!(next_seq >= 1, "sequence numbers start at 1");
        Committer {
            shared,
            compactor,
            log,
            // A resumed segment was sealed, not taken from the free segments.
            log_taken_for: Purpose::Put,
            spare: None,
            filled: Vec::new(),
            filled_marks: Vec::new(),
            next_seq,
            unflushed_writes: 0,
            oldest_unflushed: None,
            staging_error: None,
            closed: false,
            alarm,
            answers: Vec::new(),
            answers_out: None,
            estimate: Estimate::default(),
            flusher,
            in_flight: VecDeque::new(),
            pipelining: false,
            pending: None,
            spare_batch: Vec::new(),
            spare_staged: Vec::new(),
        }
    }

    /// Commits what is queued, batch after batch, until the queue is empty, answering each
    /// batch as it goes (the shutdown's work, under the lock).
    fn drain(&mut self, rx: &Receiver<Queued>) {
        self.settle_all();
        loop {
            let step = self.commit_next(rx, false);
            assert!(step.ticket.is_none(), "the drain pipelines nothing");
            if step.answers.is_empty() {
                return;
            }
            deliver(step.answers);
        }
    }

    /// Publishes (or fails) the pipelined batches that a finished flush covers, in order.
    fn settle(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        while let Some(front) = self.in_flight.front() {
            let Some(outcome) = self.flusher.outcome(front.ticket) else {
                break;
            };
            let mut batch = self.in_flight.pop_front().expect("looked at the front");
            match outcome {
                Ok(()) => self.publish(&mut batch.staged),
                Err(err) => self.fail_batch(&mut batch.staged, &err),
            }
            self.keep_staged(batch.staged);
        }
        if self.in_flight.is_empty() && self.flusher.all_flushed() {
            // Every record written so far is covered: the next one may say so.
            self.mark_flushed();
            self.note_log_flushed();
        }
    }

    /// Waits for a flush to cover every pipelined batch and publishes them: the committer
    /// is then as after a batch committed without pipelining.
    fn settle_all(&mut self) {
        if let Some(last) = self.in_flight.back() {
            let _ = self.flusher.flush_covering(last.ticket);
        }
        self.settle();
        assert!(self.in_flight.is_empty(), "a flush covered every batch");
    }

    /// A batch may be pipelined (written now, flushed and published after the lock is let
    /// go) when it is `Sync` mode's, holds only puts, and fits the active segment: no
    /// operation reads the state that the batches in flight have not published yet, and
    /// the log does not move to another segment (which flushes and marks headers).
    fn may_pipeline(&self, batch: &[Queued]) -> bool {
        let Some(w) = self.log.as_ref() else {
            return false;
        };
        if self.shared.config.durability != Durability::Sync
            || self.closed
            || self.staging_error.is_some()
            || !Purpose::Put.may_write_in(self.log_taken_for)
        {
            return false;
        }
        let mut bytes = 0usize;
        for queued in batch {
            match queued {
                Queued::One(WriteOp::Put { key, value }, _) => {
                    bytes += format::record_len(key.len(), value.len());
                }
                Queued::Puts(records, _) => {
                    bytes += records
                        .iter()
                        .map(|(k, v)| format::record_len(k.len(), v.len()))
                        .sum::<usize>();
                }
                Queued::One(..) => return false,
            }
        }
        bytes <= w.room()
    }

    /// Commits one batch of what is queued and returns its answers (none when nothing was
    /// queued). Once closed, refuses the batch with [`Error::Closed`] instead.
    /// With `may_pipeline`, a batch of puts is only written, and its ticket returned: the
    /// caller lets go of the lock, waits for the flush and then calls [`Committer::settle`].
    fn commit_next(&mut self, rx: &Receiver<Queued>, may_pipeline: bool) -> Committed {
        let mut batch = std::mem::take(&mut self.spare_batch);
        let mut bytes = 0usize;
        while batch.len() < BATCH_OPS_MAX && bytes < BATCH_BYTES_MAX {
            let Ok(queued) = rx.try_recv() else { break };
            bytes += queued.bytes();
            batch.push(queued);
        }
        let writes = batch.len();
        // Timed only when other writers are about: a clock read may be a system call (it is
        // under emulation), and a lone writer's commit time is never used.
        let started = (writes > 1 || !rx.is_empty()).then(Instant::now);
        if self.closed {
            for queued in batch.drain(..) {
                queued.refuse(Error::Closed);
            }
        } else if !batch.is_empty() {
            self.pipelining = may_pipeline && self.may_pipeline(&batch);
            if !self.pipelining {
                self.settle_all();
            }
            self.process(&mut batch);
            self.pipelining = false;
            self.estimate = Estimate {
                writers: writes + rx.len(),
                commit: started.map_or(self.estimate.commit, |t| t.elapsed()),
            };
        }
        assert!(
            batch.is_empty(),
            "every queued write is staged, answered or refused"
        );
        self.spare_batch = batch;
        Committed {
            answers: std::mem::take(&mut self.answers),
            ticket: self.pending.take(),
        }
    }

    /// Gives the second half of a batch's answers to the answer thread and returns the first
    /// half (all of them when there is no answer thread).
    fn hand_over_half(&mut self, mut answers: Vec<Answer>) -> Vec<Answer> {
        let theirs = answers.split_off(answers.len() / 2);
        if let Err(back) = self.hand_over(theirs) {
            answers.extend(back);
        }
        answers
    }

    /// Gives a batch's answers to the answer thread; back if there is none (stopping).
    fn hand_over(&mut self, answers: Vec<Answer>) -> Result<(), Vec<Answer>> {
        match self.answers_out.as_ref() {
            Some(queue) => queue.push(answers),
            None => Err(answers),
        }
    }

    /// Sync mode writes the log directly (the flush follows at once); write-behind writes
    /// it into the kernel's cache: acknowledged there, it survives a crash of hpkvd, and
    /// the bounded flush puts it on the media (DESIGN.md, "Write path").
    fn write_mode(&self) -> WriteMode {
        match self.shared.config.durability {
            Durability::Sync => WriteMode::Direct,
            Durability::WriteBehind { .. } => WriteMode::Cached,
        }
    }

    fn flush_deadline(&self) -> Option<Instant> {
        match self.shared.config.durability {
            Durability::WriteBehind { max_delay, .. } => {
                self.oldest_unflushed.map(|t| t + max_delay)
            }
            Durability::Sync => None,
        }
    }

    fn flush_write_behind(&mut self) {
        if self.unflushed_writes > 0 {
            // A failure is logged and turns the store read-only inside `flush`.
            if self.shared.disk.flush().is_ok() {
                self.note_log_flushed();
            }
            self.mark_flushed();
        }
    }

    /// A flush succeeded after the log's last write: the next record carries
    /// [`format::RECORD_FLAG_AFTER_FLUSH`].
    fn note_log_flushed(&mut self) {
        if let Some(w) = self.log.as_mut() {
            w.note_flushed();
        }
    }

    fn mark_flushed(&mut self) {
        self.unflushed_writes = 0;
        self.oldest_unflushed = None;
    }

    /// Writes out and flushes what is pending; the store is quiet afterwards.
    fn finish(&mut self) -> Result<(), Error> {
        assert!(self.in_flight.is_empty(), "the drain settled every batch");
        let mode = self.write_mode();
        if let Some(w) = self.log.as_mut() {
            w.write_out_as(&self.shared, mode)?;
        }
        self.shared.disk.flush()?;
        self.mark_flushed();
        if let Some(mut w) = self.log.take() {
            // The header says every record is durable, should a later start scan the log.
            w.note_flushed();
            if let Some(mark) = w.flushed_mark() {
                mark.write(&self.shared)?;
                self.shared.disk.flush()?;
            }
            self.shared.segments.seal(w.segment, w.fill());
        }
        Ok(())
    }

    fn process(&mut self, batch: &mut Vec<Queued>) {
        let mut staged = std::mem::take(&mut self.spare_staged);
        staged.reserve(batch.len());
        let mut overlay = Overlay::new();
        let mut force_flush = false;
        let mut queue = batch.drain(..);
        while let Some(queued) = queue.next() {
            // Only a later operation of the batch reads the overlay: the last one (the whole
            // batch, for a lone writer) skips it.
            let later = queue.len() > 0;
            let (op, done) = match queued {
                Queued::One(op, done) => (op, done),
                Queued::Puts(records, done) => {
                    self.stage_puts(records, done, &mut staged, &mut overlay, later);
                    continue;
                }
            };
            match op {
                WriteOp::Sync => {
                    force_flush = true;
                    staged.push(Staged::Answer {
                        result: Ok(()),
                        done,
                        is_sync: true,
                    });
                }
                WriteOp::Purge => {
                    self.commit(&mut staged, force_flush);
                    force_flush = false;
                    overlay.clear();
                    let result = self.purge();
                    if result.is_ok() {
                        self.shared.report(&[Change::Purge]);
                    }
                    self.answers.push((done, result));
                }
                op => {
                    let s = self.stage(op, done, &mut overlay, later);
                    staged.push(s);
                }
            }
        }
        self.commit(&mut staged, force_flush);
        // Committed and answered, or moved to the batches in flight (then this one is new).
        self.keep_staged(staged);
    }

    /// Keeps an emptied vector of staged records for the next batch, if it has room.
    fn keep_staged(&mut self, staged: Vec<Staged>) {
        assert!(
            staged.is_empty(),
            "every staged record was published or failed"
        );
        if staged.capacity() > self.spare_staged.capacity() {
            self.spare_staged = staged;
        }
    }

    /// Stages the records of a batch of puts in order, each with its own record, until the
    /// first that is refused (the device is full): the later ones are not stored, so that
    /// what a batch stores is always its first records.
    fn stage_puts(
        &mut self,
        records: Records,
        done: PutsDone,
        staged: &mut Vec<Staged>,
        overlay: &mut Overlay,
        later: bool,
    ) {
        let tally = Tally::new(records.len(), done);
        let mut records = records.into_iter();
        while let Some((key, value)) = records.next() {
            let op = WriteOp::Put {
                key,
                value: value.into(),
            };
            let remember = later || records.len() > 0;
            let s = self.stage(op, Tally::record_done(&tally), overlay, remember);
            let refused = matches!(s, Staged::Answer { .. });
            staged.push(s);
            if refused {
                break;
            }
        }
        Tally::skip(&tally, records.len());
    }

    /// Checks one write against the current state and appends its record; `remember`: a
    /// later operation of the batch follows, and may read this one's value in `overlay`.
    fn stage(&mut self, op: WriteOp, done: Done, overlay: &mut Overlay, remember: bool) -> Staged {
        let answer = |result: Result<(), Error>, done: Done| Staged::Answer {
            result,
            done,
            is_sync: false,
        };
        if let Err(e) = self.shared.disk.check_writable() {
            return answer(Err(e), done);
        }
        let (key, kind, value, purpose) = match self.resolve(op, overlay) {
            Ok(r) => r,
            Err(e) => return answer(Err(e), done),
        };
        let value_bytes: &[u8] = value.as_deref().unwrap_or(&[]);
        let len = format::record_len(key.len(), value_bytes.len());
        if let Err(e) = self.make_room(len, purpose) {
            return answer(Err(e), done);
        }
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).expect("sequence numbers exhausted");
        let w = self.log.as_mut().expect("make_room opened a segment");
        let loc = w.append(seq, kind, &key, value_bytes);
        if remember {
            overlay.insert(key.clone(), value.clone());
        }
        Staged::Record {
            key,
            seq,
            loc,
            kind,
            value,
            done,
        }
    }

    /// What record an operation writes: its key, kind, value and the purpose of its space.
    fn resolve(&self, op: WriteOp, overlay: &Overlay) -> Result<Resolved, Error> {
        let counters = &self.shared.counters;
        match op {
            WriteOp::Put { key, value } => {
                Counters::add(&counters.puts, 1);
                Ok((key, Kind::Put, Some(value), Purpose::Put))
            }
            WriteOp::Append { key, suffix } => {
                Counters::add(&counters.appends, 1);
                let joined: Arc<[u8]> = match self.current_value(&key, overlay)? {
                    None => Arc::from(suffix),
                    Some(cur) if cur.len() + suffix.len() > VALUE_MAX => {
                        return Err(Error::TooLarge)
                    }
                    Some(cur) => cur.iter().chain(suffix.iter()).copied().collect(),
                };
                Ok((key, Kind::Put, Some(joined), Purpose::Put))
            }
            WriteOp::Delete { key } => {
                Counters::add(&counters.deletes, 1);
                let exists = match overlay.get(&key) {
                    Some(v) => v.is_some(),
                    None => self.shared.index.read().get(&key).is_some(),
                };
                if !exists {
                    return Err(Error::NotFound);
                }
                Ok((key, Kind::Tombstone, None, Purpose::Delete))
            }
            WriteOp::Purge | WriteOp::Sync => unreachable!("handled by process"),
        }
    }

    /// The value of `key` as of this point of the batch.
    fn current_value(&self, key: &[u8], overlay: &Overlay) -> Result<Option<Arc<[u8]>>, Error> {
        if let Some(v) = overlay.get(key) {
            return Ok(v.clone());
        }
        let Some((found, _pin)) = self.shared.lookup_pinned(key) else {
            return Ok(None);
        };
        self.shared.read_value(key, found).map(Some)
    }

    /// Makes sure the active segment can take `len` more bytes for `purpose`, sealing it and
    /// opening a new one if not. Waits a bounded time for compaction when the device is
    /// full. The new segment is found before the active one is retired, so a write that
    /// answers ENOSPC leaves the active segment's room to the writes that may use it.
    fn make_room(&mut self, len: usize, purpose: Purpose) -> Result<(), Error> {
        let usable = self.log.as_ref().is_some_and(|w| w.fits(len))
            && purpose.may_write_in(self.log_taken_for);
        if usable {
            return Ok(());
        }
        let (segment, incarnation) = self.allocate(purpose)?;
        if let Err(e) = self.retire_active() {
            // Nothing was written to the new segment: it is free again.
            self.shared.segments.release(segment);
            return Err(e);
        }
        let buf = match self.spare.take() {
            Some(b) => b,
            None => AlignedBuf::zeroed(self.shared.geometry.segment_len())?,
        };
        self.log = Some(SegmentWriter::start(
            &self.shared.geometry,
            buf,
            segment,
            incarnation,
            self.next_seq,
        ));
        self.log_taken_for = purpose;
        Ok(())
    }

    /// Writes out and flushes the full active segment before the log moves on; it is
    /// sealed once the batch is in the index.
    fn retire_active(&mut self) -> Result<(), Error> {
        let Some(mut w) = self.log.take() else {
            return Ok(());
        };
        self.filled.push((w.segment, w.fill()));
        let write_behind = self.shared.config.durability != Durability::Sync;
        // Flush before the log moves on (a no-op cost in Sync mode, where the batch
        // flushes anyway): unflushed writes then always sit in one segment, so a crash
        // in write-behind mode loses a suffix of the acknowledged writes, never a middle.
        // Records of the current batch in the old segment are not counted in
        // `unflushed_writes` yet, so write-behind flushes even when it is zero: otherwise
        // a crash could keep the batch's later records (in the new segment) and lose
        // its earlier ones.
        let mut flushed = w.write_out_as(&self.shared, self.write_mode());
        if flushed.is_ok() && (self.unflushed_writes > 0 || write_behind) {
            self.mark_flushed();
            flushed = self.shared.disk.flush();
        }
        if let Err(err) = flushed {
            // The batch's records staged before this one were in `w` and may not be on
            // the device: the whole batch fails (see `commit_batch`).
            self.staging_error = Some(err.clone());
            return Err(err);
        }
        // Written once this batch's flush, or the one above, covered `w`.
        self.filled_marks.extend(w.written_mark());
        self.spare = Some(w.into_buf());
        self.compactor.kick();
        Ok(())
    }

    /// A free segment for the log. On a full device, runs compaction rounds right here: a
    /// pause for writers bounded by [`SPACE_WAIT_MAX`], after which the write answers
    /// ENOSPC (logged).
    fn allocate(&self, purpose: Purpose) -> Result<(u32, u32), Error> {
        let deadline = Instant::now() + SPACE_WAIT_MAX;
        loop {
            if let Some(got) = self.shared.segments.allocate(purpose, SegState::Active) {
                return Ok(got);
            }
            let expired = Instant::now() >= deadline;
            if expired || !self.compactor.compact_for_space()? {
                break;
            }
        }
        // Deletes keep working on a full device: as a last resort a delete may take the
        // segment kept for compaction. Its tombstones make the deleted values dead, and a
        // segment left with no live record is erased without needing an output segment,
        // which gives compaction room again.
        if purpose == Purpose::Delete {
            if let Some(got) =
                (self.shared.segments).allocate(Purpose::Compaction, SegState::Active)
            {
                log::warn!("the device is full: deletes are using the last free segment");
                return Ok(got);
            }
        }
        log::debug!("no free segment within {SPACE_WAIT_MAX:?}: the device is full");
        Err(Error::NoSpace)
    }

    /// Writes the batch, flushes as the durability mode says, updates the index and answers.
    fn commit(&mut self, staged: &mut Vec<Staged>, force_flush: bool) {
        self.commit_batch(staged, force_flush);
        self.filled_marks.clear();
        for (segment, fill) in self.filled.drain(..) {
            self.shared.segments.seal(segment, fill);
        }
    }

    fn commit_batch(&mut self, staged: &mut Vec<Staged>, force_flush: bool) {
        if staged.is_empty() {
            return;
        }
        let pipelined = self.pipelining
            && !force_flush
            && self.filled.is_empty()
            && self.filled_marks.is_empty();
        if pipelined {
            match self.write_batch(staged) {
                Ok(()) => {
                    let (ticket, overlapped) = self.flusher.note_written();
                    if overlapped {
                        Counters::add(&self.shared.counters.overlapped_writes, 1);
                    }
                    self.in_flight.push_back(InFlight {
                        ticket,
                        staged: std::mem::take(staged),
                    });
                    assert!(self.pending.is_none(), "one pipelined batch per turn");
                    self.pending = Some(ticket);
                }
                Err(err) => self.fail_batch(staged, &err),
            }
            return;
        }
        match self.make_durable(staged, force_flush) {
            Ok(()) => self.publish(staged),
            Err(err) => self.fail_batch(staged, &err),
        }
    }

    /// The batch failed with `err`: every writer of it is told so (a SYNC too).
    fn fail_batch(&mut self, staged: &mut Vec<Staged>, err: &Error) {
        for s in staged.drain(..) {
            self.answers.push(match s {
                Staged::Record { done, .. } => (done, Err(err.clone())),
                Staged::Answer {
                    result,
                    done,
                    is_sync,
                } => (done, if is_sync { Err(err.clone()) } else { result }),
            });
        }
    }

    /// Writes the batch's records and flushes as the durability mode says.
    fn make_durable(&mut self, staged: &[Staged], force_flush: bool) -> Result<(), Error> {
        self.write_batch(staged)?;
        let flush = match self.shared.config.durability {
            Durability::Sync => true,
            Durability::WriteBehind {
                max_delay,
                max_writes,
            } => {
                force_flush
                    || self.unflushed_writes >= max_writes
                    || self
                        .oldest_unflushed
                        .is_some_and(|t| t.elapsed() >= max_delay)
            }
        };
        if flush && (self.unflushed_writes > 0 || force_flush) {
            self.mark_flushed();
            self.shared.disk.flush()?;
            self.note_log_flushed();
        }
        self.mark_filled_durable()
    }

    /// Writes the batch's records (directly, or into the kernel's cache in write-behind
    /// mode), not yet flushed.
    fn write_batch(&mut self, staged: &[Staged]) -> Result<(), Error> {
        let records = staged
            .iter()
            .filter(|s| matches!(s, Staged::Record { .. }))
            .count();
        // A failure while staging (moving the log to a new segment) fails the whole batch:
        // records staged before it may never have reached the device.
        if let Some(e) = self.staging_error.take() {
            return Err(e);
        }
        let mode = self.write_mode();
        if let Some(w) = self.log.as_mut() {
            w.write_out_as(&self.shared, mode)?;
            self.shared.segments.note_written(w.segment, w.fill());
        }
        let write_behind = self.shared.config.durability != Durability::Sync;
        if records > 0 {
            let records = u32::try_from(records).expect("a batch's bytes are bounded");
            self.unflushed_writes = self.unflushed_writes.saturating_add(records);
            // Only write-behind has a deadline for the timer: a sync batch is flushed below,
            // and waking the timer there cost every sync write a thread wake-up (and the
            // timer's wait for the committer's lock).
            if write_behind && self.oldest_unflushed.is_none() {
                self.oldest_unflushed = Some(Instant::now());
                // The timer learns the new deadline (a full channel: it will look anyway).
                self.alarm.ring();
            }
        }
        Ok(())
    }

    /// The segments the log left during the batch are on stable media in full (the flush
    /// above, or the one when the log left them, covered them): their headers say so, so
    /// that damage to their last records is found rather than taken for a torn write
    /// (DESIGN.md, Recovery). Once per segment: one block and a flush. A failure fails the
    /// batch, as any write's.
    fn mark_filled_durable(&mut self) -> Result<(), Error> {
        if self.filled_marks.is_empty() {
            return Ok(());
        }
        for mark in self.filled_marks.drain(..) {
            mark.write(&self.shared)?;
        }
        self.shared.disk.flush()
    }

    /// The batch is durable (as the mode promises): the index and cache learn it, and
    /// every writer's answer is ready.
    fn publish(&mut self, staged: &mut Vec<Staged>) {
        {
            let mut index = self.shared.index.write();
            for s in staged.iter() {
                let Staged::Record {
                    key,
                    seq,
                    loc,
                    kind,
                    value,
                    ..
                } = s
                else {
                    continue;
                };
                assert!(
                    *seq < self.next_seq,
                    "a record's sequence number was not issued"
                );
                let value_len = value.as_ref().map_or(0, |v| {
                    u32::try_from(v.len()).expect("values are at most VALUE_MAX bytes")
                });
                index.apply(key, *seq, *loc, *kind, value_len);
            }
        }
        self.report(staged);
        // The cache takes each record's key and value as they are (no copy). It learns them
        // after the index: a reader in between misses it and reads the device, which is
        // correct (entries are tagged with their sequence number).
        let cache = self.shared.cache.as_ref();
        self.answers.extend(staged.drain(..).map(|s| match s {
            Staged::Record {
                key,
                seq,
                value,
                done,
                ..
            } => {
                if let Some(cache) = cache {
                    match value {
                        Some(v) => cache.insert_owned(key, seq, v),
                        None => cache.remove(&key),
                    }
                }
                (done, Ok(()))
            }
            Staged::Answer { result, done, .. } => (done, result),
        }));
    }

    /// Tells the observer (if any) what the batch changed, before anyone is answered.
    fn report(&self, staged: &[Staged]) {
        if self.shared.config.observer.is_none() {
            return;
        }
        // A lone writer's batch: its one change, without a vector to hold it.
        if let [one] = staged {
            if let Some(change) = change_of(one) {
                self.shared.report(&[change]);
            }
            return;
        }
        let changes: Vec<Change<'_>> = staged.iter().filter_map(change_of).collect();
        if !changes.is_empty() {
            self.shared.report(&changes);
        }
    }

    /// Removes every record: one superblock update makes every record written so far
    /// invisible, then the segments are reused. No data block is written.
    fn purge(&mut self) -> Result<(), Error> {
        self.shared.disk.check_writable()?;
        Counters::add(&self.shared.counters.purges, 1);
        let mut compaction = self.compactor.lock_state();
        let mut sb = self.shared.sb.lock();
        let mut new = *sb;
        new.purge_seq = self.next_seq - 1;
        new.generation += 1;
        new.snapshot = None;
        self.shared.disk.write_superblock(&new)?;
        *sb = new;
        drop(sb);
        compaction.drop_output();
        if let Some(w) = self.log.take() {
            self.spare = Some(w.into_buf());
        }
        self.filled.clear();
        self.shared.index.write().clear();
        if let Some(c) = &self.shared.cache {
            c.clear();
        }
        let freed = self.shared.segments.lock().release_all();
        drop(compaction);
        log::info!(
            "purged: every record up to sequence {} is gone; {freed} segments free again",
            new.purge_seq
        );
        Ok(())
    }
}

/// What a staged operation changed, as the observer learns it (an answer changed nothing).
fn change_of(staged: &Staged) -> Option<Change<'_>> {
    match staged {
        Staged::Record {
            key,
            seq,
            value: Some(value),
            ..
        } => Some(Change::Put {
            key,
            seq: *seq,
            value,
        }),
        Staged::Record {
            key,
            seq,
            value: None,
            ..
        } => Some(Change::Delete { key, seq: *seq }),
        Staged::Answer { .. } => None,
    }
}

/// Bytes of a record's header, for figures in docs and benches.
pub const RECORD_OVERHEAD_BYTES: usize = format::RECORD_HEADER_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_wakes_its_sleeper_once_and_otherwise_times_out() {
        let alarm = Arc::new(Alarm::default());
        // Rung before the wait: the wait returns at once, and takes the ring.
        alarm.ring();
        let started = Instant::now();
        alarm.wait(Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(30));
        // Not rung: the wait lasts its bound.
        let started = Instant::now();
        alarm.wait(Duration::from_millis(50));
        assert!(started.elapsed() >= Duration::from_millis(50));
        // Rung while it sleeps: it wakes.
        let ringer = alarm.clone();
        let ring = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            ringer.ring();
        });
        let started = Instant::now();
        alarm.wait(Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(30));
        ring.join().unwrap();
    }
}
