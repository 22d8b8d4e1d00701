//! Background compaction: empties mostly-dead segments so their space can be reused.
//!
//! One round takes the sealed segment with the fewest live bytes (the victim) and:
//! 1. reads it and sorts its records into current ones (to copy), tombstones that nothing
//!    older needs any more (to drop) and dead ones (to forget);
//! 2. appends the current records to compaction's own output segment, writes and flushes it;
//! 3. installs the copies in the index, unless a writer changed the key meanwhile;
//! 4. waits until no reader is inside the victim, then erases the victim's header (the
//!    segment is now free on disk) and flushes;
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
//! holds more than twice the live data.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::device::{align_up, AlignedBuf};
use super::format::{self, Kind, SegmentHeader, SegmentState};
use super::index::Loc;
use super::space::{Purpose, SegState};
use super::writer::SegmentWriter;
use super::{Counters, Error, Shared};

/// How often the compaction thread looks at the space figures without being asked.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// A victim must hold at least this fraction of garbage, unless space is short.
const MIN_GARBAGE_DIVISOR: u64 = 16;

#[derive(Default)]
pub(crate) struct CompactionState {
    output: Option<SegmentWriter>,
    spare: Option<AlignedBuf>,
    read_buf: Option<AlignedBuf>,
}

impl CompactionState {
    /// Forgets the output segment (PURGE frees it with everything else).
    pub fn drop_output(&mut self) {
        if let Some(w) = self.output.take() {
            self.spare = Some(w.into_buf());
        }
    }
}

/// The compaction thread.
pub(crate) fn run(shared: &Shared) {
    loop {
        {
            let (lock, cv) = &shared.compaction_kick;
            let mut kicked = lock.lock().expect("poisoned");
            if !*kicked {
                kicked = cv.wait_timeout(kicked, IDLE_POLL).expect("poisoned").0;
            }
            *kicked = false;
        }
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        loop {
            match compact_once(shared, false) {
                Ok(true) if !shared.stopping.load(Ordering::SeqCst) => continue,
                Ok(_) => break,
                Err(e) => {
                    log::error!("compaction stopped: {e}");
                    break;
                }
            }
        }
    }
    seal_output(shared);
}

/// Seals the output segment (at shutdown): it becomes an ordinary sealed segment.
pub(crate) fn seal_output(shared: &Shared) {
    let mut st = shared.compaction.lock();
    if let Some(w) = st.output.take() {
        // A round writes its output out before it ends, unless that write failed: then the
        // store is read-only, so the segment is never compacted nor snapshotted, and sealing
        // it with records that never reached the disk is harmless.
        debug_assert!(
            !w.is_dirty() || shared.read_only.load(Ordering::SeqCst),
            "compaction leaves its output written at the end of each round"
        );
        shared.space.lock().seal(w.segment, w.fill() as u32);
    }
}

/// Bytes the output segment can still take; `None` when there is no output segment yet.
fn output_room(st: &CompactionState) -> Option<u64> {
    st.output.as_ref().map(|w| w.room() as u64)
}

/// At or below this many free segments, space is short: compaction takes any victim that
/// reclaims something, and a restart resumes the user log in place.
pub(crate) fn low_free_segments(total: u32) -> usize {
    (total as usize / 10).max(3)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Whatever reclaims anything.
    Aggressive,
    ShortOfSpace,
    /// Only worthwhile victims.
    Normal,
}

/// The segment to empty next. A victim either holds dead bytes (each round then reduces
/// the dead bytes on the device) or fits whole into the output's remaining room (each
/// round then frees a segment without taking one), so compaction always terminates.
/// Among candidates the one with the fewest live bytes goes first (greedy).
fn choose_victim(shared: &Shared, output_room: Option<u64>, mode: Mode) -> Option<u32> {
    let index = shared.index.read();
    let space = shared.space.lock();
    let capacity = shared.segment_capacity();
    let block = shared.block_size as u64;
    let mode = match mode {
        Mode::Normal => {
            let total = space.segment_count() as u64;
            let free = space.free_count() as u64;
            let used = (total - free) * shared.segment_size;
            // The log may hold up to twice the live data, plus the open segments and slack.
            let amplified = used > 2 * index.total_live_bytes() + 4 * shared.segment_size;
            if free <= low_free_segments(total as u32) as u64 {
                Mode::ShortOfSpace
            } else if amplified {
                Mode::Normal
            } else {
                return None;
            }
        }
        m => m,
    };
    let min_dead = if mode == Mode::Normal {
        capacity / MIN_GARBAGE_DIVISOR
    } else {
        1
    };
    space
        .sealed()
        .filter_map(|(s, info)| {
            let live = index.segment_live_bytes(s);
            let dead = (info.written as u64)
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

enum Plan {
    Copy {
        key: Box<[u8]>,
        seq: u64,
        kind: Kind,
        from: Loc,
        value: std::ops::Range<usize>,
    },
    DropTombstone {
        key: Box<[u8]>,
        at: Loc,
    },
    Forget {
        key: Box<[u8]>,
    },
}

/// Runs one round if the policy (or `aggressive`) says so. Returns whether it did one.
pub(crate) fn compact_once(shared: &Shared, aggressive: bool) -> Result<bool, Error> {
    round(
        shared,
        if aggressive {
            Mode::Aggressive
        } else {
            Mode::Normal
        },
    )
}

/// One round for a writer that found no free segment: any victim that reclaims something.
pub(crate) fn compact_for_space(shared: &Shared) -> Result<bool, Error> {
    round(shared, Mode::ShortOfSpace)
}

fn round(shared: &Shared, mode: Mode) -> Result<bool, Error> {
    if shared.read_only.load(Ordering::SeqCst) {
        return Ok(false);
    }
    let started = Instant::now();
    let mut st = shared.compaction.lock();
    let Some(victim) = choose_victim(shared, output_room(&st), mode) else {
        return Ok(false);
    };
    let info = shared.space.lock().seg(victim);
    debug_assert_eq!(info.state, SegState::Sealed);
    let block = shared.block_size as usize;
    let base = shared.segment_base(victim);

    // 1. Read the victim and sort its records.
    let mut buf = match st.read_buf.take() {
        Some(b) => b,
        None => AlignedBuf::zeroed(shared.segment_size as usize)?,
    };
    let extent = align_up(info.written as u64, block as u64) as usize;
    if let Err(e) = shared.dev.read_at(&mut buf[..extent], base) {
        st.read_buf = Some(buf);
        return Err(e.into());
    }
    let Some(header) = SegmentHeader::decode(&buf[..block]).filter(|h| {
        h.uuid == shared.uuid
            && h.state == SegmentState::Log
            && h.current_incarnation() == info.incarnation
    }) else {
        let what = format!("segment {victim}: its header is unreadable");
        st.read_buf = Some(buf);
        shared.enter_read_only(&what);
        return Err(Error::Corrupt(what));
    };
    let records = &buf[block..info.written as usize];
    let mut plans = Vec::new();
    let mut scanner = format::Scanner::with_runs(records, shared.seed, header.runs(block));
    {
        let index = shared.index.read();
        for (offset, r) in scanner.by_ref() {
            let at = Loc {
                segment: victim,
                offset: (block + offset) as u32,
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
                    panic!("a record in segment {victim} belongs to a key the index does not know")
                }
            };
            plans.push(plan);
        }
    }
    if scanner.offset != records.len() {
        let what = format!(
            "segment {victim}: records end at byte {} but {} were written ({})",
            block + scanner.offset,
            info.written,
            scanner.end.map_or("?".into(), |e| e.to_string())
        );
        st.read_buf = Some(buf);
        shared.enter_read_only(&what);
        return Err(Error::Corrupt(what));
    }

    // 2. Copy the current records to the output segment and make them durable.
    let live: usize = plans
        .iter()
        .map(|p| match p {
            Plan::Copy { key, value, .. } => format::record_len(key.len(), value.len()),
            _ => 0,
        })
        .sum();
    // The live records need at most one new segment (they came from one); take it first,
    // so that a round never stops halfway.
    let mut next = None;
    if st.output.as_ref().is_none_or(|w| !w.fits(live)) {
        match shared.space.lock().allocate(
            Purpose::Compaction,
            SegState::CompactionOutput,
            &shared.pins,
        ) {
            Some(got) => next = Some(got),
            None => {
                st.read_buf = Some(buf);
                return Ok(false);
            }
        }
    }
    let mut copied = Vec::with_capacity(plans.len());
    for p in &plans {
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
            if let Some(mut full) = st.output.take() {
                if let Err(e) = full.write_out(shared) {
                    shared.enter_read_only(&e);
                    return Err(e.into());
                }
                shared.space.lock().seal(full.segment, full.fill() as u32);
                st.spare = Some(full.into_buf());
            }
            let (segment, incarnation) = next.take().expect("one new segment is enough");
            let out_buf = match st.spare.take() {
                Some(b) => b,
                None => AlignedBuf::zeroed(shared.segment_size as usize)?,
            };
            let first_seq = shared.next_seq.load(Ordering::SeqCst);
            st.output = Some(SegmentWriter::start(
                shared,
                out_buf,
                segment,
                incarnation,
                first_seq,
            ));
        }
        let out = st.output.as_mut().expect("opened above");
        copied.push(out.append(*seq, *kind, key, &buf[value.clone()]));
    }
    if let Some((segment, _)) = next {
        // Not needed after all (only tombstones were dropped): give it back.
        shared.space.lock().release(segment);
    }
    let Some(out) = st.output.as_mut() else {
        // Nothing to copy and no output yet. Still flush before the erase: the victim's
        // records may be dead only because of newer acknowledged writes that write-behind
        // has not flushed yet, and a crash must not keep the erase but lose those writes
        // (the victim's keys would vanish or, for a lost delete, come back).
        if let Err(e) = shared.device_flush() {
            shared.enter_read_only(&e);
            st.read_buf = Some(buf);
            return Err(e.into());
        }
        return finish_round(
            shared, &mut st, buf, victim, info, plans, copied, live, started,
        );
    };
    let durable = out.write_out(shared).and_then(|_| shared.device_flush());
    if let Err(e) = durable {
        shared.enter_read_only(&e);
        st.read_buf = Some(buf);
        return Err(e.into());
    }
    let (out_segment, out_fill) = (out.segment, out.fill() as u32);
    shared.space.lock().note_written(out_segment, out_fill);
    finish_round(
        shared, &mut st, buf, victim, info, plans, copied, live, started,
    )
}

/// Steps 3 to 5: install the copies, erase the victim, forget its dead records.
#[allow(clippy::too_many_arguments)]
fn finish_round(
    shared: &Shared,
    st: &mut CompactionState,
    buf: AlignedBuf,
    victim: u32,
    info: super::space::SegInfo,
    plans: Vec<Plan>,
    copied: Vec<Loc>,
    live: usize,
    started: Instant,
) -> Result<bool, Error> {
    let block = shared.block_size as usize;
    let base = shared.segment_base(victim);

    // 3. Install the copies.
    let mut forget: Vec<Box<[u8]>> = Vec::new();
    {
        let mut index = shared.index.write();
        let mut to = copied.into_iter();
        for p in plans {
            match p {
                Plan::Copy { key, seq, from, .. } => {
                    if !index.relocate(&key, seq, from, to.next().expect("one copy per plan")) {
                        forget.push(key);
                    }
                }
                Plan::DropTombstone { key, at } => {
                    if !index.drop_tombstone(&key, at) {
                        forget.push(key);
                    }
                }
                Plan::Forget { key } => forget.push(key),
            }
        }
        debug_assert_eq!(
            index.segment_live_bytes(victim),
            0,
            "victim still holds live records"
        );
    }

    // 4. Erase the victim once no reader is inside it.
    while shared.pins[victim as usize].load(Ordering::Acquire) != 0 {
        std::thread::sleep(Duration::from_micros(50));
    }
    let mut erased = AlignedBuf::zeroed(block)?;
    // A free header keeps the last incarnation, so incarnations never go back.
    let free = SegmentHeader::new(shared.uuid, info.incarnation, SegmentState::Free, 0);
    erased[..format::SEGMENT_HEADER_LEN].copy_from_slice(&free.encode());
    if let Err(e) = shared
        .device_write(&erased, base)
        .and_then(|_| shared.device_flush())
    {
        shared.enter_read_only(&e);
        st.read_buf = Some(buf);
        return Err(e.into());
    }

    // 5. Its dead records are gone from the disk.
    {
        let mut index = shared.index.write();
        for key in &forget {
            index.forget_dead(key);
        }
    }
    shared.space.lock().release(victim);
    shared.space_freed.notify_all();
    st.read_buf = Some(buf);
    Counters::add(&shared.counters.compactions, 1);
    Counters::add(&shared.counters.compaction_bytes_moved, live as u64);
    Counters::add(
        &shared.counters.compaction_bytes_reclaimed,
        shared.segment_size - live as u64,
    );
    log::debug!(
        "compacted segment {victim}: moved {live} bytes, dropped {} dead records, in {} µs",
        forget.len(),
        started.elapsed().as_micros()
    );
    Ok(true)
}
