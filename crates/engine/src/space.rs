//! The segment table: which segment holds what, and the allocator of free segments.
//!
//! The data area is cut into equal segments. A segment is free, the user log's active
//! segment, compaction's output, sealed (full, read-only until compaction empties it), or
//! part of an index snapshot. Allocation takes the lowest free segment that no reader has
//! pinned and gives it a new incarnation number.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::num::{segment_u32, usize_of};

/// At or below this many free segments, space is short: compaction takes any victim that
/// reclaims something, and a restart resumes the user log in place.
pub(crate) fn low_free_segments(total: u32) -> usize {
    (usize_of(u64::from(total)) / 10).max(3)
}

fn at(segment: u32) -> usize {
    usize_of(u64::from(segment))
}

/// What a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SegState {
    Free,
    /// The user log's active segment.
    Active,
    /// Compaction's output segment.
    CompactionOutput,
    Sealed,
    Snapshot,
}

/// A segment's entry in the table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegInfo {
    pub state: SegState,
    pub incarnation: u32,
    /// Bytes in use from the segment's start (header block included) for sealed segments.
    pub written: u32,
}

/// Who asks for a segment, in order of priority. Lower priorities must leave reserves so
/// that deletes and compaction can always make progress on a full device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Puts and appends: leave two segments (one for deletes, one for compaction).
    Put,
    /// Deletes (tombstones): leave one for compaction.
    Delete,
    /// Compaction's output: may take the last one; it gives back more than it takes.
    Compaction,
}

impl Purpose {
    /// Whether a write for `self` may go into a segment taken for `taken_for`: deletes
    /// anywhere, puts only into a segment taken for puts, never into one from the reserve.
    pub fn may_write_in(self, taken_for: Purpose) -> bool {
        match self {
            Purpose::Put => taken_for == Purpose::Put,
            Purpose::Delete | Purpose::Compaction => true,
        }
    }

    /// Free segments a write for `self` must leave to the others.
    fn reserve(self) -> usize {
        match self {
            Purpose::Put => 2,
            Purpose::Delete => 1,
            Purpose::Compaction => 0,
        }
    }
}

/// The segment table and the free list.
pub(crate) struct Space {
    segs: Vec<SegInfo>,
    free: BTreeSet<u32>,
    next_incarnation: u32,
}

impl Space {
    /// A table where every segment is free and incarnations start after `max_incarnation`.
    pub fn new(segment_count: u32, max_incarnation: u32) -> Space {
        Space {
            segs: vec![
                SegInfo {
                    state: SegState::Free,
                    incarnation: 0,
                    written: 0
                };
                at(segment_count)
            ],
            free: (0..segment_count).collect(),
            next_incarnation: max_incarnation
                .checked_add(1)
                .expect("incarnations exhausted"),
        }
    }

    pub fn seg(&self, segment: u32) -> SegInfo {
        self.segs[at(segment)]
    }

    pub fn segment_count(&self) -> u32 {
        segment_u32(self.segs.len())
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Marks a segment found by recovery.
    pub fn set(&mut self, segment: u32, info: SegInfo) {
        self.segs[at(segment)] = info;
        if info.state == SegState::Free {
            self.free.insert(segment);
        } else {
            self.free.remove(&segment);
        }
    }

    /// Takes a free segment for `purpose`, unless that would eat into a reserve kept for a
    /// higher purpose. Segments that readers still pin are skipped. Returns the segment
    /// and its new incarnation.
    pub fn allocate(
        &mut self,
        purpose: Purpose,
        state: SegState,
        pins: &[AtomicU32],
    ) -> Option<(u32, u32)> {
        assert!(matches!(
            state,
            SegState::Active | SegState::CompactionOutput | SegState::Snapshot
        ));
        if self.free.len() <= purpose.reserve() {
            return None;
        }
        let segment = *self
            .free
            .iter()
            .find(|&&s| pins[at(s)].load(Ordering::Acquire) == 0)?;
        Some((segment, self.claim(segment, state)))
    }

    /// Moves free `segment` to `state`, empty, under a fresh incarnation; returns it.
    fn claim(&mut self, segment: u32, state: SegState) -> u32 {
        let was_free = self.free.remove(&segment);
        assert!(was_free, "segment {segment} claimed twice");
        let incarnation = self.next_incarnation;
        self.next_incarnation = incarnation.checked_add(1).expect("incarnations exhausted");
        self.segs[at(segment)] = SegInfo {
            state,
            incarnation,
            written: 0,
        };
        incarnation
    }

    /// Takes `count` consecutive free segments (for a snapshot); returns the first.
    pub fn take_run(&mut self, count: u32, state: SegState) -> Option<u32> {
        let mut run_start = None;
        let mut found = None;
        for s in 0..self.segment_count() {
            if self.segs[at(s)].state != SegState::Free {
                run_start = None;
                continue;
            }
            let start = *run_start.get_or_insert(s);
            if s + 1 - start == count {
                found = Some(start);
                break;
            }
        }
        let first = found?;
        for s in first..first + count {
            self.claim(s, state);
        }
        Some(first)
    }

    /// Reopens a sealed segment for writing after a restart (the user log goes on where it
    /// stopped); returns the incarnation its new records carry.
    pub fn resume(&mut self, segment: u32) -> u32 {
        let s = &mut self.segs[at(segment)];
        assert_eq!(
            s.state,
            SegState::Sealed,
            "only a sealed segment is resumed"
        );
        let incarnation = self.next_incarnation;
        self.next_incarnation = incarnation.checked_add(1).expect("incarnations exhausted");
        s.state = SegState::Active;
        s.incarnation = incarnation;
        incarnation
    }

    /// The segment is full (or its writer stopped): it becomes read-only.
    pub fn seal(&mut self, segment: u32, written: u32) {
        let s = &mut self.segs[at(segment)];
        assert!(
            matches!(s.state, SegState::Active | SegState::CompactionOutput),
            "segment {segment} sealed twice"
        );
        s.state = SegState::Sealed;
        s.written = written;
    }

    /// Records how far an open segment has been written (for readers of `written`).
    pub fn note_written(&mut self, segment: u32, written: u32) {
        self.segs[at(segment)].written = written;
    }

    /// The segment is empty on disk: it becomes free.
    pub fn release(&mut self, segment: u32) {
        let s = &mut self.segs[at(segment)];
        assert!(s.state != SegState::Free, "segment {segment} freed twice");
        s.state = SegState::Free;
        s.written = 0;
        self.free.insert(segment);
    }

    /// Frees every segment (PURGE); returns how many were in use.
    pub fn release_all(&mut self) -> usize {
        let mut n = 0;
        for segment in 0..segment_u32(self.segs.len()) {
            if self.segs[at(segment)].state != SegState::Free {
                self.release(segment);
                n += 1;
            }
        }
        n
    }

    pub fn sealed(&self) -> impl Iterator<Item = (u32, SegInfo)> + '_ {
        self.segs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SegState::Sealed)
            .map(|(i, s)| (segment_u32(i), *s))
    }

    pub fn in_state(&self, state: SegState) -> impl Iterator<Item = u32> + '_ {
        self.segs
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.state == state)
            .map(|(i, _)| segment_u32(i))
    }

    pub fn next_incarnation(&self) -> u32 {
        self.next_incarnation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_hold_back_the_last_segments() {
        let pins: Vec<AtomicU32> = (0..4).map(|_| AtomicU32::new(0)).collect();
        let mut s = Space::new(4, 10);
        assert_eq!(
            s.allocate(Purpose::Put, SegState::Active, &pins),
            Some((0, 11))
        );
        assert_eq!(
            s.allocate(Purpose::Put, SegState::Active, &pins),
            Some((1, 12))
        );
        assert_eq!(
            s.allocate(Purpose::Put, SegState::Active, &pins),
            None,
            "two left for deletes and compaction"
        );
        assert!(s
            .allocate(Purpose::Delete, SegState::Active, &pins)
            .is_some());
        assert_eq!(s.allocate(Purpose::Delete, SegState::Active, &pins), None);
        assert!(s
            .allocate(Purpose::Compaction, SegState::CompactionOutput, &pins)
            .is_some());
        assert_eq!(s.free_count(), 0);
    }

    #[test]
    fn puts_never_write_into_the_reserve() {
        assert!(Purpose::Put.may_write_in(Purpose::Put));
        assert!(!Purpose::Put.may_write_in(Purpose::Delete));
        assert!(Purpose::Delete.may_write_in(Purpose::Put));
        assert!(Purpose::Delete.may_write_in(Purpose::Delete));
    }

    #[test]
    fn pinned_segments_are_not_reused() {
        let pins: Vec<AtomicU32> = (0..8).map(|_| AtomicU32::new(0)).collect();
        let mut s = Space::new(8, 0);
        pins[0].store(1, Ordering::Release);
        assert_eq!(
            s.allocate(Purpose::Put, SegState::Active, &pins)
                .map(|x| x.0),
            Some(1)
        );
        pins[0].store(0, Ordering::Release);
        assert_eq!(
            s.allocate(Purpose::Put, SegState::Active, &pins)
                .map(|x| x.0),
            Some(0)
        );
    }
}
