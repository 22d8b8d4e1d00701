//! Background compaction: empties mostly-dead segments so their space can be reused.
//!
//! One round takes the sealed segment with the fewest live bytes (the victim) and:
//! 1. reads it and sorts its records into current ones (to copy), tombstones that nothing
//!    older needs any more (to drop) and dead ones (to forget);
//! 2. appends the current records to compaction's own output segment, writes and flushes it;
//! 3. installs the copies in the index, unless a writer changed the key meanwhile;
//! 4. erases the victim's header (the segment is now free on disk) and flushes;
//! 5. only then forgets the victim's dead records in the per-key counts, and frees it.
//!
//! A crash between any two steps leaves a store that recovers to the same contents: before
//! step 4 the victim is still there and its records compete with their copies by sequence
//! number (a copy keeps the original's); after it, the copies are durable (step 2). A
//! tombstone is dropped only when its key has no other record on disk, so a deleted key can
//! never come back (see DESIGN.md).
//!
//! Writers never wait for a round except for the index write lock, held for in-memory
//! updates only. Compaction acts when the device runs low on free segments or when the log
//! holds more than twice the live data. Its state (the output segment, buffers) is owned
//! by the [`Compactor`] and guarded by the lock of level [`Level::Compaction`].

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::device::{align_up, AlignedBuf};
use crate::error::{Corruption, Error};
use crate::format::{self, Kind, SegmentHeader, SegmentState};
use crate::index::{Index, Loc};
use crate::lock::{Guard, Level, OrderedMutex};
use crate::num::{seg_u32, u64_of, usize_of};
use crate::segment::{DurableMark, SegmentWriter};
use crate::space::{low_free_segments, Purpose, SegInfo, SegState, Space};
use crate::store::{Counters, Shared};

/// How often the compaction thread looks at the space figures without being asked.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// A victim must hold at least this fraction of garbage, unless space is short.
const MIN_GARBAGE_DIVISOR: u64 = 16;
/// How long a round waits for readers to leave its victim before erasing it anyway (safe:
/// a pinned segment is never allocated, see [`Compactor::erase`]).
const PIN_WAIT_MAX: Duration = Duration::from_secs(1);
/// The pause between two looks at a victim's pins.
const PIN_POLL: Duration = Duration::from_micros(50);

/// Compaction's state, owned by the [`Compactor`].
#[derive(Default)]
pub(crate) struct CompactionState {
    output: Option<SegmentWriter>,
    /// Headers of outputs filled during the round, saying all their records are durable:
    /// written in step 4, after step 2's flush.
    filled_marks: Vec<DurableMark>,
    spare: Option<AlignedBuf>,
    read_buf: Option<AlignedBuf>,
}

impl CompactionState {
    /// Forgets the output segment (PURGE frees it with everything else).
    pub fn drop_output(&mut self) {
        if let Some(w) = self.output.take() {
            self.spare = Some(w.into_buf());
        }
        self.filled_marks.clear();
    }

    /// Bytes the output segment can still take; `None` when there is no output segment yet.
    fn output_room(&self) -> Option<u64> {
        self.output.as_ref().map(|w| u64_of(w.room()))
    }
}

/// The owner of compaction: its state, the thread's wake-up and stop signals.
pub(crate) struct Compactor {
    shared: Arc<Shared>,
    state: OrderedMutex<CompactionState>,
    kick_tx: Sender<()>,
    kick_rx: Receiver<()>,
    stopping: AtomicBool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Whatever reclaims anything.
    Aggressive,
    ShortOfSpace,
    /// Only worthwhile victims.
    Normal,
}

enum Plan {
    Copy {
        key: Box<[u8]>,
        seq: u64,
        kind: Kind,
        from: Loc,
        value: Range<usize>,
    },
    DropTombstone {
        key: Box<[u8]>,
        at: Loc,
    },
    Forget {
        key: Box<[u8]>,
    },
}

impl Plan {
    /// Bytes the plan writes to the output segment.
    fn copy_len(&self) -> usize {
        match self {
            Plan::Copy { key, value, .. } => format::record_len(key.len(), value.len()),
            _ => 0,
        }
    }
}

/// A victim being emptied: its image and what to do with each record.
struct Victim {
    segment: u32,
    info: SegInfo,
    buf: AlignedBuf,
    plans: Vec<Plan>,
    /// Bytes of the records to copy.
    live: usize,
}

impl Compactor {
    pub fn new(shared: Arc<Shared>) -> Compactor {
        let (kick_tx, kick_rx) = bounded(1);
        Compactor {
            shared,
            state: OrderedMutex::new(Level::Compaction, CompactionState::default()),
            kick_tx,
            kick_rx,
            stopping: AtomicBool::new(false),
        }
    }

    /// Wakes the compaction thread (a segment was filled).
    pub fn kick(&self) {
        // A full channel means a wake-up is pending already.
        let _ = self.kick_tx.try_send(());
    }

    /// Asks the thread to stop after its current round.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.kick();
    }

    /// Compaction's state, for PURGE and verification (lock level [`Level::Compaction`]).
    pub fn lock_state(&self) -> Guard<'_, CompactionState> {
        self.state.lock()
    }

    /// The compaction thread: a round whenever kicked or every [`IDLE_POLL`].
    pub fn run(&self) {
        while let Ok(()) | Err(RecvTimeoutError::Timeout) = self.kick_rx.recv_timeout(IDLE_POLL) {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            while !self.stopping.load(Ordering::SeqCst) {
                match self.compact_once(false) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        log::error!("compaction stopped: {e}");
                        break;
                    }
                }
            }
        }
        self.seal_output();
    }

    /// Seals the output segment (at shutdown): it becomes an ordinary sealed segment.
    pub fn seal_output(&self) {
        let mut st = self.state.lock();
        if let Some(w) = st.output.take() {
            // A round writes its output out before it ends, unless that write failed: then
            // the store is read-only, so the segment is never compacted nor snapshotted,
            // and sealing it with records that never reached the disk is harmless.
            assert!(
                !w.is_dirty() || self.shared.disk.is_read_only(),
                "compaction leaves its output written at the end of each round"
            );
            self.shared.segments.seal(w.segment, w.fill());
        }
    }

    /// Runs one round if the policy (or `aggressive`) says so. Returns whether it did one.
    pub fn compact_once(&self, aggressive: bool) -> Result<bool, Error> {
        self.round(if aggressive {
            Mode::Aggressive
        } else {
            Mode::Normal
        })
    }

    /// One round for a writer that found no free segment: any victim that reclaims something.
    pub fn compact_for_space(&self) -> Result<bool, Error> {
        self.round(Mode::ShortOfSpace)
    }

    fn round(&self, mode: Mode) -> Result<bool, Error> {
        if self.shared.disk.is_read_only() {
            return Ok(false);
        }
        let started = Instant::now();
        let mut st = self.state.lock();
        let Some(segment) = self.choose_victim(st.output_room(), mode) else {
            return Ok(false);
        };
        let buf = match st.read_buf.take() {
            Some(b) => b,
            None => AlignedBuf::zeroed(self.shared.geometry.segment_len())?,
        };
        let victim = match self.read_victim(segment, buf) {
            Ok(v) => v,
            Err((buf, e)) => {
                st.read_buf = Some(buf);
                return Err(e);
            }
        };
        let result = self.empty_victim(&mut st, &victim);
        st.read_buf = Some(victim.buf);
        let Some(moved) = result? else {
            return Ok(false);
        };
        log::debug!(
            "compacted segment {segment}: moved {moved} bytes in {} µs",
            started.elapsed().as_micros()
        );
        Ok(true)
    }

    /// Steps 2 to 5 for a victim read and planned. Returns the bytes moved, or `None` when
    /// no output segment was free (nothing changed then).
    fn empty_victim(
        &self,
        st: &mut CompactionState,
        victim: &Victim,
    ) -> Result<Option<usize>, Error> {
        let Some(copied) = self.copy_live(st, victim)? else {
            return Ok(None);
        };
        let forget = self.install(victim, copied);
        // The output's headers say how far its records are durable (step 2 flushed them),
        // so that damage to them is found rather than taken for a torn write; the erase's
        // flush makes them durable.
        let marks = std::mem::take(&mut st.filled_marks);
        let current = st.output.as_mut().and_then(SegmentWriter::flushed_mark);
        for mark in marks.iter().chain(current.as_ref()) {
            mark.write(&self.shared)?;
        }
        self.erase(victim)?;
        // 5. Its dead records are gone from the disk.
        {
            let mut index = self.shared.index.write();
            for key in &forget {
                index.forget_dead(key);
            }
        }
        self.shared.segments.release(victim.segment);
        let counters = &self.shared.counters;
        Counters::add(&counters.compactions, 1);
        Counters::add(&counters.compaction_bytes_moved, u64_of(victim.live));
        Counters::add(
            &counters.compaction_bytes_reclaimed,
            self.shared.geometry.segment_size - u64_of(victim.live),
        );
        Ok(Some(victim.live))
    }

    /// The segment to empty next. A victim either holds dead bytes (each round then reduces
    /// the dead bytes on the device) or fits whole into the output's remaining room (each
    /// round then frees a segment without taking one), so compaction always terminates.
    /// Among candidates the one with the fewest live bytes goes first (greedy).
    fn choose_victim(&self, output_room: Option<u64>, mode: Mode) -> Option<u32> {
        let index = self.shared.index.read();
        let space = self.shared.segments.lock();
        let geometry = &self.shared.geometry;
        let capacity = geometry.segment_capacity();
        let block = u64::from(geometry.block_size);
        let min_dead = match self.effective_mode(&index, &space, mode)? {
            Mode::Normal => capacity / MIN_GARBAGE_DIVISOR,
            Mode::Aggressive | Mode::ShortOfSpace => 1,
        };
        space
            .sealed()
            .filter_map(|(s, info)| {
                let live = index.segment_live_bytes(s);
                let dead = u64::from(info.written)
                    .saturating_sub(block)
                    .saturating_sub(live);
                let merges = match output_room {
                    Some(room) => live <= room,
                    // A fresh output: only a half-empty segment is worth starting one for.
                    None => live <= capacity / 2,
                };
                (dead >= min_dead || merges).then_some((live, s))
            })
            .min()
            .map(|(_, s)| s)
    }

    /// What the policy asks for now: `None` when a normal round has nothing worth doing.
    fn effective_mode(&self, index: &Index, space: &Space, mode: Mode) -> Option<Mode> {
        if mode != Mode::Normal {
            return Some(mode);
        }
        let segment_size = self.shared.geometry.segment_size;
        let total = space.segment_count();
        let free = u64_of(space.free_count());
        let used = (u64::from(total) - free) * segment_size;
        // The log may hold up to twice the live data, plus the open segments and slack.
        let amplified = used > 2 * index.total_live_bytes() + 4 * segment_size;
        if free <= u64_of(low_free_segments(total)) {
            Some(Mode::ShortOfSpace)
        } else if amplified {
            Some(Mode::Normal)
        } else {
            None
        }
    }

    /// Step 1: reads the victim and sorts its records. Gives the buffer back on failure.
    fn read_victim(
        &self,
        segment: u32,
        mut buf: AlignedBuf,
    ) -> Result<Victim, (AlignedBuf, Error)> {
        let shared = &*self.shared;
        let info = shared.segments.info(segment);
        assert_eq!(info.state, SegState::Sealed, "a victim is sealed");
        let block = shared.geometry.block();
        let written = usize_of(u64::from(info.written));
        assert!(
            written >= block && written <= buf.len(),
            "a sealed segment's fill"
        );
        let extent = usize_of(align_up(u64::from(info.written), u64_of(block)));
        let base = shared.geometry.segment_base(segment);
        if let Err(e) = shared.disk.read(&mut buf[..extent], base) {
            return Err((buf, e));
        }
        let header = SegmentHeader::decode(&buf[..block]).filter(|h| {
            h.uuid == shared.geometry.uuid
                && h.state == SegmentState::Log
                && h.current_incarnation() == info.incarnation
        });
        let Some(header) = header else {
            let e = shared
                .disk
                .fail(Error::Corrupt(Corruption::SegmentHeader { segment }));
            return Err((buf, e));
        };
        match self.plan(segment, &buf[block..written], &header) {
            Ok(plans) => {
                let live = plans.iter().map(Plan::copy_len).sum();
                Ok(Victim {
                    segment,
                    info,
                    buf,
                    plans,
                    live,
                })
            }
            Err(e) => Err((buf, e)),
        }
    }

    /// What to do with each record of the victim's record area `records`.
    fn plan(
        &self,
        segment: u32,
        records: &[u8],
        header: &SegmentHeader,
    ) -> Result<Vec<Plan>, Error> {
        let shared = &*self.shared;
        let block = shared.geometry.block();
        let mut plans = Vec::new();
        let mut scanner =
            format::Scanner::with_runs(records, shared.geometry.seed, header.runs(block));
        let index = shared.index.read();
        for (offset, r) in scanner.by_ref() {
            let at = Loc {
                segment,
                offset: seg_u32(block + offset),
            };
            let key: Box<[u8]> = r.key.into();
            let plan = match index.entry(r.key) {
                Some(e) if e.loc == at && e.seq == r.seq => {
                    if e.is_tombstone() && e.dead() == 0 {
                        Plan::DropTombstone { key, at }
                    } else {
                        let value_start = block + offset + format::RECORD_HEADER_LEN + r.key.len();
                        Plan::Copy {
                            key,
                            seq: r.seq,
                            kind: r.kind,
                            from: at,
                            value: value_start..value_start + r.value.len(),
                        }
                    }
                }
                Some(_) => Plan::Forget { key },
                None => {
                    panic!("a record in segment {segment} belongs to a key the index does not know")
                }
            };
            plans.push(plan);
        }
        if scanner.offset != records.len() {
            let what = Corruption::SegmentTail {
                segment,
                records_end: u64_of(block + scanner.offset),
                written: seg_u32(block + records.len()),
            };
            return Err(shared.disk.fail(Error::Corrupt(what)));
        }
        Ok(plans)
    }

    /// Step 2: copies the current records to the output segment and makes them durable. `None`
    /// when no segment is free for the output (the round does nothing).
    fn copy_live(
        &self,
        st: &mut CompactionState,
        victim: &Victim,
    ) -> Result<Option<Vec<Loc>>, Error> {
        // The live records need at most one new segment (they came from one); take it first,
        // so that a round never stops halfway.
        let mut next = None;
        if st.output.as_ref().is_none_or(|w| !w.fits(victim.live)) {
            match (self.shared.segments).allocate(Purpose::Compaction, SegState::CompactionOutput) {
                Some(got) => next = Some(got),
                None => return Ok(None),
            }
        }
        let mut copied = Vec::with_capacity(victim.plans.len());
        for p in &victim.plans {
            let Plan::Copy {
                key,
                seq,
                kind,
                value,
                ..
            } = p
            else {
                continue;
            };
            let len = format::record_len(key.len(), value.len());
            if st.output.as_ref().is_none_or(|w| !w.fits(len)) {
                let fresh = next.take().expect("one new segment is enough");
                self.next_output(st, fresh, *seq)?;
            }
            let out = st.output.as_mut().expect("opened above");
            copied.push(out.append(*seq, *kind, key, &victim.buf[value.clone()]));
        }
        if let Some((segment, _)) = next {
            // Not needed after all (only tombstones were dropped): give it back.
            self.shared.segments.release(segment);
        }
        // Flush even with nothing to copy: the victim's records may be dead only because
        // of newer acknowledged writes that write-behind has not flushed yet, and a crash
        // must not keep the erase but lose those writes (the victim's keys would vanish or,
        // for a lost delete, come back).
        if let Some(out) = st.output.as_mut() {
            out.write_out(&self.shared)?;
            self.shared.disk.flush()?;
            out.note_flushed();
            self.shared.segments.note_written(out.segment, out.fill());
        } else {
            self.shared.disk.flush()?;
        }
        assert_eq!(
            copied.len(),
            victim
                .plans
                .iter()
                .filter(|p| matches!(p, Plan::Copy { .. }))
                .count(),
            "one copy per record to copy"
        );
        Ok(Some(copied))
    }

    /// Seals a full output segment and starts `fresh` as the next one; `first_seq`, the
    /// sequence number of its first copy, goes into its header (diagnostics only).
    fn next_output(
        &self,
        st: &mut CompactionState,
        fresh: (u32, u32),
        first_seq: u64,
    ) -> Result<(), Error> {
        if let Some(mut full) = st.output.take() {
            full.write_out(&self.shared)?;
            // Written in step 4, after the round's flush covered it.
            st.filled_marks.extend(full.written_mark());
            self.shared.segments.seal(full.segment, full.fill());
            st.spare = Some(full.into_buf());
        }
        let out_buf = match st.spare.take() {
            Some(b) => b,
            None => AlignedBuf::zeroed(self.shared.geometry.segment_len())?,
        };
        let (segment, incarnation) = fresh;
        st.output = Some(SegmentWriter::start(
            &self.shared.geometry,
            out_buf,
            segment,
            incarnation,
            first_seq,
        ));
        Ok(())
    }

    /// Step 3: installs the copies in the index. Returns the keys whose dead-record count drops
    /// once the victim is erased.
    fn install(&self, victim: &Victim, copied: Vec<Loc>) -> Vec<Box<[u8]>> {
        let mut forget: Vec<Box<[u8]>> = Vec::new();
        let mut index = self.shared.index.write();
        let mut to = copied.into_iter();
        for p in &victim.plans {
            match p {
                Plan::Copy { key, seq, from, .. } => {
                    let to = to.next().expect("one copy per plan");
                    if !index.relocate(key, *seq, *from, to) {
                        forget.push(key.clone());
                    }
                }
                Plan::DropTombstone { key, at } => {
                    if !index.drop_tombstone(key, *at) {
                        forget.push(key.clone());
                    }
                }
                Plan::Forget { key } => forget.push(key.clone()),
            }
        }
        assert_eq!(
            index.segment_live_bytes(victim.segment),
            0,
            "victim still holds live records"
        );
        forget
    }

    /// Step 4: erases the victim's header and flushes.
    ///
    /// Readers that looked a record up before [`Compactor::install`] may still be reading
    /// inside the victim. The erase does not touch the record area, and a pinned segment is
    /// never allocated again ([`Space::allocate`]), so their reads stay correct whatever
    /// happens here; the round still waits up to [`PIN_WAIT_MAX`] for them to leave, and
    /// past that logs it and erases anyway.
    fn erase(&self, victim: &Victim) -> Result<(), Error> {
        let deadline = Instant::now() + PIN_WAIT_MAX;
        while self.shared.segments.pinned(victim.segment) {
            if Instant::now() >= deadline {
                log::warn!(
                    "segment {}: readers still inside after {PIN_WAIT_MAX:?}; erasing it \
                     anyway (it is not reused while they read)",
                    victim.segment
                );
                break;
            }
            std::thread::sleep(PIN_POLL);
        }
        let geometry = &self.shared.geometry;
        let mut erased = AlignedBuf::zeroed(geometry.block())?;
        // A free header keeps the last incarnation, so incarnations never go back.
        let free = SegmentHeader::new(
            geometry.uuid,
            victim.info.incarnation,
            SegmentState::Free,
            0,
        );
        erased[..format::SEGMENT_HEADER_LEN].copy_from_slice(&free.encode());
        self.shared
            .disk
            .write(&erased, geometry.segment_base(victim.segment))?;
        self.shared.disk.flush()
    }
}
