//! The write path: one committer thread owns the user log and applies writes in batches.
//!
//! A batch is whatever is queued when the committer comes round, up to [`BATCH_OPS_MAX`]
//! operations: each is checked against the index (and earlier writes of the same batch),
//! encoded into the active segment's buffer and given the next sequence number. Then the
//! dirty blocks are written with one request, the device cache is flushed (in `Sync` mode;
//! in write-behind mode when a bound is reached), the index is updated and every writer of
//! the batch is answered. One flush covers the whole batch: group commit.
//!
//! Nothing is acknowledged before it is written (and, in `Sync` mode, flushed). A write or
//! flush error fails the whole batch and turns the store read-only (see DESIGN.md).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::device::{align_down, align_up, AlignedBuf, BlockDevice};
use super::format::{self, Kind, SegmentHeader, SegmentState, VALUE_MAX};
use super::index::Loc;
use super::observe::Change;
use super::space::{Purpose, SegState};
use super::{
    validate_key, validate_value, Counters, Done, Durability, Error, Shared, SPACE_WAIT_MAX,
};

/// Operations one batch takes at most.
const BATCH_OPS_MAX: usize = 512;
/// Bytes of records one batch writes at most (besides the one that crosses the bound).
const BATCH_BYTES_MAX: usize = 8 << 20;

/// A write request.
#[derive(Debug)]
pub enum WriteOp {
    /// Insert or overwrite.
    Put {
        key: Box<[u8]>,
        value: Box<[u8]>,
    },
    /// Append to the value (a missing key is created with `suffix`).
    Append {
        key: Box<[u8]>,
        suffix: Box<[u8]>,
    },
    Delete {
        key: Box<[u8]>,
    },
    /// Remove every record.
    Purge,
    /// Make every acknowledged write durable.
    Sync,
}

impl WriteOp {
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            WriteOp::Put { key, value } => validate_key(key).and_then(|_| validate_value(value)),
            WriteOp::Append { key, suffix } => {
                validate_key(key).and_then(|_| validate_value(suffix))
            }
            WriteOp::Delete { key } => validate_key(key),
            WriteOp::Purge | WriteOp::Sync => Ok(()),
        }
    }
}

pub(crate) enum Msg {
    Op(WriteOp, Done),
    /// Finish everything queued, flush, and answer.
    Shutdown(Sender<Result<(), Error>>),
}

/// A segment being filled: a memory image of the whole segment, written to the device in
/// block-aligned pieces. The committer and compaction each own one.
pub(crate) struct SegmentWriter {
    pub segment: u32,
    pub incarnation: u32,
    seed: u32,
    base: u64,
    block: usize,
    buf: AlignedBuf,
    /// Bytes used from the segment's start.
    fill: usize,
    /// Bytes handed to the device so far.
    written: usize,
}

impl SegmentWriter {
    /// Starts segment `segment` in `buf` (a zeroed buffer of the segment's size).
    pub fn start(
        shared: &Shared,
        mut buf: AlignedBuf,
        segment: u32,
        incarnation: u32,
        first_seq: u64,
    ) -> SegmentWriter {
        debug_assert_eq!(buf.len() as u64, shared.segment_size);
        let header = SegmentHeader::new(shared.uuid, incarnation, SegmentState::Log, first_seq);
        buf[..format::SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
        SegmentWriter {
            segment,
            incarnation,
            seed: shared.seed,
            base: shared.segment_base(segment),
            block: shared.block_size as usize,
            buf,
            fill: shared.block_size as usize,
            written: 0,
        }
    }

    /// Resumes a segment after a restart: `buf` holds the segment as read from the device,
    /// its records end at `fill`, and `header` (already on the device) says that records
    /// from `fill` on carry `header.current_incarnation()`.
    pub fn resume(
        shared: &Shared,
        mut buf: AlignedBuf,
        segment: u32,
        header: &SegmentHeader,
        fill: usize,
    ) -> SegmentWriter {
        debug_assert_eq!(buf.len() as u64, shared.segment_size);
        // Whatever followed the records (torn leftovers) goes; zeros end the log cleanly.
        buf[fill..].fill(0);
        buf[..format::SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
        SegmentWriter {
            segment,
            incarnation: header.current_incarnation(),
            seed: shared.seed,
            base: shared.segment_base(segment),
            block: shared.block_size as usize,
            buf,
            fill,
            written: fill,
        }
    }

    pub fn fits(&self, len: usize) -> bool {
        self.fill + len <= self.buf.len()
    }

    pub fn fill(&self) -> usize {
        self.fill
    }

    /// Bytes still free in the segment.
    pub fn room(&self) -> usize {
        self.buf.len() - self.fill
    }

    pub fn append(&mut self, seq: u64, kind: Kind, key: &[u8], value: &[u8]) -> Loc {
        let len = format::record_len(key.len(), value.len());
        assert!(self.fits(len), "record does not fit the segment");
        let at = self.fill;
        format::encode_record(
            &mut self.buf[at..at + len],
            self.seed,
            self.incarnation,
            seq,
            kind,
            key,
            value,
        );
        self.fill += len;
        Loc {
            segment: self.segment,
            offset: at as u32,
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.written < self.fill
    }

    /// Writes every block touched since the last call (the partial last block again).
    pub fn write_out(&mut self, shared: &Shared) -> std::io::Result<()> {
        if !self.is_dirty() {
            return Ok(());
        }
        let start = align_down(self.written as u64, self.block as u64) as usize;
        let end = align_up(self.fill as u64, self.block as u64) as usize;
        shared.device_write(&self.buf[start..end], self.base + start as u64)?;
        self.written = self.fill;
        Ok(())
    }

    /// Gives the buffer back, zeroed, for the next segment.
    pub fn into_buf(mut self) -> AlignedBuf {
        let end = align_up(self.fill as u64, self.block as u64) as usize;
        self.buf[..end].fill(0);
        self.buf
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

pub(crate) struct Committer {
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    log: Option<SegmentWriter>,
    spare: Option<AlignedBuf>,
    /// Segments filled during the current batch. They are sealed (and so become candidates
    /// for compaction) only after the batch is in the index: until then compaction would
    /// see their records as dead.
    filled: Vec<(u32, u32)>,
    next_seq: u64,
    /// Written but not flushed (write-behind mode).
    unflushed_writes: u32,
    oldest_unflushed: Option<Instant>,
    /// An I/O error met while moving the log to a new segment in the middle of the batch.
    staging_error: Option<Error>,
}

impl Committer {
    /// `log`: the segment the user log resumes in (see recovery::resume_log).
    pub fn new(shared: Arc<Shared>, rx: Receiver<Msg>, log: Option<SegmentWriter>) -> Committer {
        let next_seq = shared.next_seq.load(Ordering::SeqCst);
        Committer {
            shared,
            rx,
            log,
            spare: None,
            filled: Vec::new(),
            next_seq,
            unflushed_writes: 0,
            oldest_unflushed: None,
            staging_error: None,
        }
    }

    pub fn run(mut self) {
        let mut batch: Vec<(WriteOp, Done)> = Vec::with_capacity(BATCH_OPS_MAX);
        loop {
            let first = match self.flush_deadline() {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(deadline) => self.rx.recv_deadline(deadline),
            };
            let msg = match first {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.flush_write_behind();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if let Err(e) = self.finish() {
                        log::error!("final flush: {e}");
                    }
                    return;
                }
            };
            let mut shutdown = None;
            let mut bytes = 0usize;
            let mut next = Some(msg);
            while let Some(m) = next.take() {
                match m {
                    Msg::Op(op, done) => {
                        bytes += op_bytes(&op);
                        batch.push((op, done));
                    }
                    Msg::Shutdown(ack) => {
                        shutdown = Some(ack);
                        break;
                    }
                }
                if batch.len() < BATCH_OPS_MAX && bytes < BATCH_BYTES_MAX {
                    next = self.rx.try_recv().ok();
                }
            }
            self.process(&mut batch);
            if let Some(ack) = shutdown {
                let result = self.finish();
                let _ = ack.send(result);
                return;
            }
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
            if let Err(e) = self.shared.device_flush() {
                self.shared.enter_read_only(&e);
            }
            self.unflushed_writes = 0;
            self.oldest_unflushed = None;
        }
    }

    /// Writes out and flushes what is pending; the store is quiet afterwards.
    fn finish(&mut self) -> Result<(), Error> {
        if let Some(w) = self.log.as_mut() {
            w.write_out(&self.shared)?;
        }
        self.shared.device_flush()?;
        self.unflushed_writes = 0;
        self.oldest_unflushed = None;
        if let Some(w) = self.log.take() {
            self.shared.space.lock().seal(w.segment, w.fill() as u32);
        }
        Ok(())
    }

    fn process(&mut self, batch: &mut Vec<(WriteOp, Done)>) {
        let mut staged: Vec<Staged> = Vec::with_capacity(batch.len());
        // Values as this batch leaves them, for appends and deletes later in the batch.
        let mut overlay: HashMap<Box<[u8]>, Option<Arc<[u8]>>> = HashMap::new();
        let mut force_flush = false;
        for (op, done) in batch.drain(..) {
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
                    done(result);
                }
                op => {
                    let s = self.stage(op, done, &mut overlay);
                    staged.push(s);
                }
            }
        }
        self.commit(&mut staged, force_flush);
    }

    /// Checks one write against the current state and appends its record.
    fn stage(
        &mut self,
        op: WriteOp,
        done: Done,
        overlay: &mut HashMap<Box<[u8]>, Option<Arc<[u8]>>>,
    ) -> Staged {
        let answer = |result: Result<(), Error>, done: Done| Staged::Answer {
            result,
            done,
            is_sync: false,
        };
        if self.shared.read_only.load(Ordering::Relaxed) {
            return answer(Err(Error::ReadOnly), done);
        }
        let (key, kind, value, purpose) = match op {
            WriteOp::Put { key, value } => {
                Counters::add(&self.shared.counters.puts, 1);
                (key, Kind::Put, Some(Arc::<[u8]>::from(value)), Purpose::Put)
            }
            WriteOp::Append { key, suffix } => {
                Counters::add(&self.shared.counters.appends, 1);
                let current = match self.current_value(&key, overlay) {
                    Ok(v) => v,
                    Err(e) => return answer(Err(e), done),
                };
                let joined: Arc<[u8]> = match current {
                    None => Arc::from(suffix),
                    Some(cur) if cur.len() + suffix.len() > VALUE_MAX => {
                        return answer(Err(Error::TooLarge), done)
                    }
                    Some(cur) => cur.iter().chain(suffix.iter()).copied().collect(),
                };
                (key, Kind::Put, Some(joined), Purpose::Put)
            }
            WriteOp::Delete { key } => {
                Counters::add(&self.shared.counters.deletes, 1);
                let exists = match overlay.get(&key) {
                    Some(v) => v.is_some(),
                    None => self.shared.index.read().get(&key).is_some(),
                };
                if !exists {
                    return answer(Err(Error::NotFound), done);
                }
                (key, Kind::Tombstone, None, Purpose::Delete)
            }
            WriteOp::Purge | WriteOp::Sync => unreachable!("handled by process"),
        };
        let value_bytes: &[u8] = value.as_deref().unwrap_or(&[]);
        let len = format::record_len(key.len(), value_bytes.len());
        if let Err(e) = self.make_room(len, purpose) {
            return answer(Err(e), done);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let w = self.log.as_mut().expect("make_room opened a segment");
        let loc = w.append(seq, kind, &key, value_bytes);
        overlay.insert(key.clone(), value.clone());
        Staged::Record {
            key,
            seq,
            loc,
            kind,
            value,
            done,
        }
    }

    /// The value of `key` as of this point of the batch.
    fn current_value(
        &self,
        key: &[u8],
        overlay: &HashMap<Box<[u8]>, Option<Arc<[u8]>>>,
    ) -> Result<Option<Arc<[u8]>>, Error> {
        if let Some(v) = overlay.get(key) {
            return Ok(v.clone());
        }
        let Some((found, _pin)) = self.shared.lookup_pinned(key) else {
            return Ok(None);
        };
        self.shared.read_value(key, found).map(Some)
    }

    /// Makes sure the active segment can take `len` more bytes, sealing it and opening a
    /// new one if not. Waits a bounded time for compaction when the device is full.
    fn make_room(&mut self, len: usize, purpose: Purpose) -> Result<(), Error> {
        if self.log.as_ref().is_some_and(|w| w.fits(len)) {
            return Ok(());
        }
        if let Some(mut w) = self.log.take() {
            self.filled.push((w.segment, w.fill() as u32));
            // Flush before the log moves on (a no-op cost in Sync mode, where the batch
            // flushes anyway): unflushed writes then always sit in one segment, so a crash
            // in write-behind mode loses a suffix of the acknowledged writes, never a middle.
            // Records of the current batch in the old segment are not counted in
            // `unflushed_writes` yet, so write-behind flushes even when it is zero: otherwise
            // a crash could keep the batch's later records (in the new segment) and lose
            // its earlier ones.
            let write_behind = self.shared.config.durability != Durability::Sync;
            let flushed = w.write_out(&self.shared).and_then(|_| {
                if self.unflushed_writes > 0 || write_behind {
                    self.unflushed_writes = 0;
                    self.oldest_unflushed = None;
                    self.shared.device_flush()
                } else {
                    Ok(())
                }
            });
            if let Err(e) = flushed {
                self.shared.enter_read_only(&e);
                let err = Error::from(e);
                // The batch's records staged before this one were in `w` and may not be on
                // the device: the whole batch fails (see `commit_batch`).
                self.staging_error = Some(err.clone());
                return Err(err);
            }
            self.spare = Some(w.into_buf());
            self.shared.kick_compaction();
        }
        // On a full device, run compaction rounds right here: a bounded pause for writers.
        let deadline = Instant::now() + SPACE_WAIT_MAX;
        let (segment, incarnation) = loop {
            let got =
                self.shared
                    .space
                    .lock()
                    .allocate(purpose, SegState::Active, &self.shared.pins);
            if let Some(got) = got {
                break got;
            }
            if Instant::now() >= deadline || !super::compaction::compact_for_space(&self.shared)? {
                // Deletes keep working on a full device: as a last resort a delete may take
                // the segment kept for compaction. Its tombstones make the deleted values
                // dead, and a segment left with no live record is erased without needing
                // an output segment, which gives compaction room again.
                let last = if purpose == Purpose::Delete {
                    let mut space = self.shared.space.lock();
                    space.allocate(Purpose::Compaction, SegState::Active, &self.shared.pins)
                } else {
                    None
                };
                match last {
                    Some(got) => {
                        log::warn!("the device is full: deletes are using the last free segment");
                        break got;
                    }
                    None => return Err(Error::NoSpace),
                }
            }
        };
        let buf = match self.spare.take() {
            Some(b) => b,
            None => AlignedBuf::zeroed(self.shared.segment_size as usize)?,
        };
        self.log = Some(SegmentWriter::start(
            &self.shared,
            buf,
            segment,
            incarnation,
            self.next_seq,
        ));
        Ok(())
    }

    /// Writes the batch, flushes as the durability mode says, updates the index and answers.
    fn commit(&mut self, staged: &mut Vec<Staged>, force_flush: bool) {
        self.commit_batch(staged, force_flush);
        let mut space = self.shared.space.lock();
        for (segment, fill) in self.filled.drain(..) {
            space.seal(segment, fill);
        }
    }

    fn commit_batch(&mut self, staged: &mut Vec<Staged>, force_flush: bool) {
        if staged.is_empty() {
            return;
        }
        let records = staged
            .iter()
            .filter(|s| matches!(s, Staged::Record { .. }))
            .count() as u32;
        // A failure while staging (moving the log to a new segment) fails the whole batch:
        // records staged before it may never have reached the device.
        let mut io = match self.staging_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        if let Some(w) = self.log.as_mut().filter(|_| io.is_ok()) {
            io = w.write_out(&self.shared).map_err(Error::from);
            if io.is_ok() {
                let (segment, fill) = (w.segment, w.fill() as u32);
                self.shared.space.lock().note_written(segment, fill);
            }
        }
        if io.is_ok() && records > 0 {
            self.unflushed_writes += records;
            self.oldest_unflushed.get_or_insert_with(Instant::now);
        }
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
        if io.is_ok() && flush && (self.unflushed_writes > 0 || force_flush) {
            io = self.shared.device_flush().map_err(Error::from);
            self.unflushed_writes = 0;
            self.oldest_unflushed = None;
        }
        if let Err(err) = io {
            self.shared.enter_read_only(&err);
            for s in staged.drain(..) {
                match s {
                    Staged::Record { done, .. } => done(Err(err.clone())),
                    Staged::Answer {
                        result,
                        done,
                        is_sync,
                    } => done(if is_sync { Err(err.clone()) } else { result }),
                }
            }
            return;
        }
        {
            let mut index = self.shared.index.write();
            for s in staged.iter() {
                if let Staged::Record {
                    key,
                    seq,
                    loc,
                    kind,
                    value,
                    ..
                } = s
                {
                    let value_len = value.as_ref().map_or(0, |v| v.len() as u32);
                    index.apply(key, *seq, *loc, *kind, value_len);
                    if let Some(cache) = &self.shared.cache {
                        match value {
                            Some(v) => cache.insert(key, *seq, v.clone()),
                            None => cache.remove(key),
                        }
                    }
                }
            }
        }
        self.shared.next_seq.store(self.next_seq, Ordering::SeqCst);
        self.report(staged);
        for s in staged.drain(..) {
            match s {
                Staged::Record { done, .. } => done(Ok(())),
                Staged::Answer { result, done, .. } => done(result),
            }
        }
    }

    /// Tells the observer (if any) what the batch changed, before anyone is answered.
    fn report(&self, staged: &[Staged]) {
        if self.shared.config.observer.is_none() {
            return;
        }
        let changes: Vec<Change<'_>> = staged
            .iter()
            .filter_map(|s| match s {
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
            })
            .collect();
        if !changes.is_empty() {
            self.shared.report(&changes);
        }
    }

    /// Removes every record: one superblock update makes every record written so far
    /// invisible, then the segments are reused. No data block is written.
    fn purge(&mut self) -> Result<(), Error> {
        if self.shared.read_only.load(Ordering::Relaxed) {
            return Err(Error::ReadOnly);
        }
        Counters::add(&self.shared.counters.purges, 1);
        let mut compaction = self.shared.compaction.lock();
        let mut sb = self.shared.sb.lock();
        let mut new = *sb;
        new.purge_seq = self.next_seq - 1;
        new.generation += 1;
        new.snapshot = None;
        if let Err(e) = write_superblock(&*self.shared.dev, &new) {
            self.shared.enter_read_only(&e);
            return Err(e.into());
        }
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
        let freed = self.shared.space.lock().release_all();
        self.shared.space_freed.notify_all();
        log::info!(
            "purged: every record up to sequence {} is gone; {freed} segments free again",
            new.purge_seq
        );
        Ok(())
    }
}

fn op_bytes(op: &WriteOp) -> usize {
    match op {
        WriteOp::Put { key, value } => key.len() + value.len(),
        WriteOp::Append { key, suffix } => key.len() + suffix.len(),
        WriteOp::Delete { key } => key.len(),
        WriteOp::Purge | WriteOp::Sync => 0,
    }
}

/// Writes both superblock copies, one after the other, each flushed: a torn write can
/// damage at most the copy being written, and the other holds the previous state.
pub(crate) fn write_superblock(
    dev: &dyn BlockDevice,
    sb: &super::format::Superblock,
) -> std::io::Result<()> {
    let mut block = AlignedBuf::zeroed(sb.block_size as usize)?;
    block[..format::SUPERBLOCK_LEN].copy_from_slice(&sb.encode());
    for offset in format::SUPERBLOCK_OFFSETS {
        dev.write_at(&block, offset)?;
        dev.flush()?;
    }
    Ok(())
}
