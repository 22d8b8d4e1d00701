//! The in-memory index: where the current record of every key lives.
//!
//! Entries live in a [`Slab`] and are named by a `u32` id. Two structures refer to the ids:
//! a hash table ([`HashTable`]) for point lookups and an ordered index (sorted chunks of ids)
//! for ranges and the listing. The key bytes are stored once, in the entry.
//!
//! Besides the current record, each entry counts the key's *dead* records still on disk
//! (overwritten versions, an older tombstone, a copy compaction could not install). A
//! tombstone may be dropped only when that count is zero, that is when no older version of
//! the key is left anywhere on disk to come back after a restart (see DESIGN.md).

use crate::num::{u64_of, usize_of};
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::ops::{Bound, ControlFlow};

use hashbrown::{DefaultHashBuilder, HashTable};
use slab::Slab;

use super::format::{record_len, Kind};

/// Where a record lives: a segment and a byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Loc {
    pub segment: u32,
    pub offset: u32,
}

const TOMBSTONE: u32 = 1 << 31;
const DEAD_MASK: u32 = TOMBSTONE - 1;

/// 40 bytes besides the key's heap allocation.
pub struct Entry {
    key: Box<[u8]>,
    /// The current record's sequence number: its version, unique per write.
    pub seq: u64,
    pub loc: Loc,
    pub value_len: u32,
    /// Bit 31: the current record is a tombstone. Bits 0..31: dead records on disk.
    meta: u32,
}

impl Entry {
    pub fn key(&self) -> &[u8] {
        &self.key
    }
    pub fn is_tombstone(&self) -> bool {
        self.meta & TOMBSTONE != 0
    }
    pub fn dead(&self) -> u32 {
        self.meta & DEAD_MASK
    }
    /// The tombstone flag and dead count as stored in snapshots.
    pub fn meta_bits(&self) -> u32 {
        self.meta
    }
    fn kind(&self) -> Kind {
        if self.is_tombstone() {
            Kind::Tombstone
        } else {
            Kind::Put
        }
    }
    /// Bytes the current record occupies on disk.
    pub fn record_len(&self) -> u64 {
        u64_of(record_len(
            self.key.len(),
            usize_of(u64::from(self.value_len)),
        ))
    }
    fn add_dead(&mut self, n: i64) {
        let dead = i64::from(self.dead()) + n;
        let dead = u32::try_from(dead)
            .ok()
            .filter(|&d| d <= DEAD_MASK)
            .unwrap_or_else(|| panic!("dead count out of range: {dead}"));
        self.meta = (self.meta & TOMBSTONE) | dead;
    }
}

/// A copy of what a reader needs from an entry, taken under the index lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub seq: u64,
    pub loc: Loc,
    pub value_len: u32,
}

/// The result of applying a new current record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superseded {
    pub loc: Loc,
    pub was_tombstone: bool,
}

pub struct Index {
    entries: Slab<Entry>,
    hash: HashTable<u32>,
    hasher: DefaultHashBuilder,
    ordered: Ordered,
    /// Bytes of current records (live values and kept tombstones) per segment.
    segment_live: Vec<u64>,
    live_records: u64,
    live_value_bytes: u64,
}

impl Index {
    pub fn new(segment_count: u32) -> Index {
        Index {
            entries: Slab::new(),
            hash: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            ordered: Ordered::default(),
            segment_live: vec![0; segment_count as usize],
            live_records: 0,
            live_value_bytes: 0,
        }
    }

    fn find_id(&self, key: &[u8]) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        self.hash
            .find(h, |&id| *self.entries[id as usize].key == *key)
            .copied()
    }

    /// The entry of `key`, tombstones included.
    pub fn entry(&self, key: &[u8]) -> Option<&Entry> {
        self.find_id(key).map(|id| &self.entries[id as usize])
    }

    /// The live record of `key`, if it has one.
    pub fn get(&self, key: &[u8]) -> Option<Found> {
        self.entry(key)
            .filter(|e| !e.is_tombstone())
            .map(|e| Found {
                seq: e.seq,
                loc: e.loc,
                value_len: e.value_len,
            })
    }

    pub fn live_records(&self) -> u64 {
        self.live_records
    }
    pub fn live_value_bytes(&self) -> u64 {
        self.live_value_bytes
    }
    pub fn segment_live_bytes(&self, segment: u32) -> u64 {
        self.segment_live[segment as usize]
    }
    pub fn total_live_bytes(&self) -> u64 {
        self.segment_live.iter().sum()
    }
    /// Entries, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn count_in(&mut self, e_kind: Kind, key_len: usize, value_len: u32, loc: Loc, sign: i64) {
        let len = i64::try_from(record_len(key_len, usize_of(u64::from(value_len))))
            .expect("a record is at most RECORD_MAX bytes")
            * sign;
        let seg = &mut self.segment_live[loc.segment as usize];
        *seg = seg
            .checked_add_signed(len)
            .expect("segment live bytes out of range");
        if e_kind == Kind::Put {
            self.live_records = self
                .live_records
                .checked_add_signed(sign)
                .expect("record count");
            self.live_value_bytes = self
                .live_value_bytes
                .checked_add_signed(i64::from(value_len) * sign)
                .expect("value bytes");
        }
    }

    fn insert_new(&mut self, key: &[u8], seq: u64, loc: Loc, kind: Kind, value_len: u32) {
        let meta = if kind == Kind::Tombstone {
            TOMBSTONE
        } else {
            0
        };
        let id = self.entries.insert(Entry {
            key: key.into(),
            seq,
            loc,
            value_len,
            meta,
        });
        let id = u32::try_from(id).expect("more than 4 billion keys");
        let h = self.hasher.hash_one(key);
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.hash
            .insert_unique(h, id, |&i| hasher.hash_one(&*entries[i as usize].key));
        self.ordered.insert(id, key, &|i| &entries[i as usize].key);
        self.count_in(kind, key.len(), value_len, loc, 1);
    }

    /// A new current record for `key` (a put or a tombstone) is on disk at `loc`. The
    /// previous one, if any, becomes a dead record.
    pub fn apply(
        &mut self,
        key: &[u8],
        seq: u64,
        loc: Loc,
        kind: Kind,
        value_len: u32,
    ) -> Option<Superseded> {
        debug_assert!(kind == Kind::Put || value_len == 0);
        let Some(id) = self.find_id(key) else {
            self.insert_new(key, seq, loc, kind, value_len);
            return None;
        };
        let e = &self.entries[id as usize];
        assert!(seq > e.seq, "sequence numbers go backwards for one key");
        let (old_kind, old_value_len, old_loc) = (e.kind(), e.value_len, e.loc);
        self.count_in(old_kind, key.len(), old_value_len, old_loc, -1);
        let e = &mut self.entries[id as usize];
        e.seq = seq;
        e.loc = loc;
        e.value_len = value_len;
        e.meta = (e.meta & DEAD_MASK)
            | if kind == Kind::Tombstone {
                TOMBSTONE
            } else {
                0
            };
        e.add_dead(1);
        self.count_in(kind, key.len(), value_len, loc, 1);
        Some(Superseded {
            loc: old_loc,
            was_tombstone: old_kind == Kind::Tombstone,
        })
    }

    /// Recovery: a record found on disk, in any order. The highest sequence number wins;
    /// every other record of the key counts as dead.
    pub fn apply_recovered(&mut self, key: &[u8], seq: u64, loc: Loc, kind: Kind, value_len: u32) {
        match self.find_id(key) {
            None => self.insert_new(key, seq, loc, kind, value_len),
            Some(id) if seq > self.entries[id as usize].seq => {
                self.apply(key, seq, loc, kind, value_len);
            }
            Some(id) => self.entries[id as usize].add_dead(1),
        }
    }

    /// Compaction copied the current record of `key` from `from` to `to`. Installs the copy
    /// unless the key changed meanwhile; then the copy is one more dead record and `false`
    /// is returned.
    pub fn relocate(&mut self, key: &[u8], seq: u64, from: Loc, to: Loc) -> bool {
        let Some(id) = self.find_id(key) else {
            panic!("relocating a key that has no entry");
        };
        let e = &self.entries[id as usize];
        if e.seq != seq || e.loc != from {
            self.entries[id as usize].add_dead(1);
            return false;
        }
        let (kind, value_len) = (e.kind(), e.value_len);
        self.count_in(kind, key.len(), value_len, from, -1);
        self.count_in(kind, key.len(), value_len, to, 1);
        self.entries[id as usize].loc = to;
        true
    }

    /// A dead record of `key` is gone from the disk (its segment was erased).
    pub fn forget_dead(&mut self, key: &[u8]) {
        let id = self
            .find_id(key)
            .expect("a dead record of a key without an entry");
        self.entries[id as usize].add_dead(-1);
    }

    /// Drops the entry of `key` if its current record is the tombstone at `loc` and no other
    /// record of the key is on disk. Returns whether it did.
    pub fn drop_tombstone(&mut self, key: &[u8], loc: Loc) -> bool {
        let Some(id) = self.find_id(key) else {
            return false;
        };
        let e = &self.entries[id as usize];
        if !e.is_tombstone() || e.loc != loc || e.dead() != 0 {
            return false;
        }
        self.count_in(Kind::Tombstone, key.len(), 0, loc, -1);
        self.remove_id(id);
        true
    }

    fn remove_id(&mut self, id: u32) {
        let h = self.hasher.hash_one(&*self.entries[id as usize].key);
        let Ok(slot) = self.hash.find_entry(h, |&i| i == id) else {
            panic!("entry {id} missing from the hash table");
        };
        slot.remove();
        let entries = &self.entries;
        let removed = self
            .ordered
            .remove(&entries[id as usize].key, &|i| &entries[i as usize].key);
        assert_eq!(
            removed,
            Some(id),
            "ordered index out of step with the hash table"
        );
        self.entries.remove(id as usize);
    }

    /// Drops everything (PURGE).
    pub fn clear(&mut self) {
        let segments = u32::try_from(self.segment_live.len()).expect("a u32 segment count");
        *self = Index::new(segments);
    }

    /// Calls `f` with each live entry whose key is within the bounds, in key order, until
    /// `f` breaks.
    pub fn for_each_live(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        mut f: impl FnMut(&Entry) -> ControlFlow<()>,
    ) {
        let key_of = |i: u32| -> &[u8] { &self.entries[i as usize].key };
        for id in self.ordered.ids_from(self.ordered.seek(start, &key_of)) {
            let e = &self.entries[id as usize];
            let in_range = match end {
                Bound::Unbounded => true,
                Bound::Excluded(k) => *e.key < *k,
                Bound::Included(k) => *e.key <= *k,
            };
            if !in_range {
                return;
            }
            if !e.is_tombstone() && f(e).is_break() {
                return;
            }
        }
    }

    /// Every entry, tombstones included, in key order (snapshots).
    pub fn iter_ordered(&self) -> impl Iterator<Item = &Entry> {
        self.ordered
            .ids_from((Bound::Unbounded, 0))
            .map(|id| &self.entries[id as usize])
    }

    /// Every entry, tombstones included, in no particular order (snapshots, checks).
    pub fn iter_all(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().map(|(_, e)| e)
    }

    /// Approximate heap bytes held by the index, for the memory figure in STATS and benches.
    pub fn heap_bytes(&self) -> u64 {
        let entries = self.entries.capacity() * std::mem::size_of::<Entry>();
        let keys: usize = self
            .entries
            .iter()
            .map(|(_, e)| e.key.len().div_ceil(16) * 16 + 16)
            .sum();
        let hash = self.hash.capacity() * (std::mem::size_of::<u32>() + 1);
        let ordered = self.ordered.heap_bytes();
        (entries + keys + hash + ordered) as u64
    }

    /// Checks the structures against each other (tests and debug builds).
    pub fn check_invariants(&self) {
        assert_eq!(self.hash.len(), self.entries.len());
        assert_eq!(self.ordered.len(), self.entries.len());
        for id in self.ordered.check(&|i| &self.entries[i as usize].key) {
            assert_eq!(self.find_id(&self.entries[id as usize].key), Some(id));
        }
        let mut live = vec![0u64; self.segment_live.len()];
        let (mut records, mut values) = (0, 0);
        for (_, e) in &self.entries {
            live[e.loc.segment as usize] += e.record_len();
            if !e.is_tombstone() {
                records += 1;
                values += u64::from(e.value_len);
            }
        }
        assert_eq!(live, self.segment_live, "segment live bytes drifted");
        assert_eq!(
            (records, values),
            (self.live_records, self.live_value_bytes)
        );
    }
}

/// Rebuilds an index from a snapshot, whose entries come in strictly increasing key order:
/// the slab and the hash table are sized up front, and the ordered index is built in one pass
/// at the end instead of by a search per entry.
pub struct Restore {
    index: Index,
}

impl Restore {
    /// `entries`: how many are expected (only a capacity hint).
    pub fn new(segment_count: u32, entries: usize) -> Restore {
        let mut index = Index::new(segment_count);
        // The capacities inserting one by one would reach. (An exact slab would double at
        // the first write after the load: +40 bytes per record.)
        index.entries = Slab::with_capacity(entries.next_power_of_two());
        index.hash = HashTable::with_capacity(entries);
        Restore { index }
    }

    /// The next entry, exactly as [`Entry::meta_bits`] and the rest describe it. Its key must
    /// be above the previous one's; `loc.segment` must be below the segment count.
    pub fn push(
        &mut self,
        key: &[u8],
        seq: u64,
        loc: Loc,
        value_len: u32,
        meta: u32,
    ) -> Result<(), &'static str> {
        let ix = &mut self.index;
        let kind = if meta & TOMBSTONE != 0 {
            Kind::Tombstone
        } else {
            Kind::Put
        };
        if (kind == Kind::Tombstone) != (value_len == 0) {
            return Err("inconsistent snapshot entry");
        }
        let previous = ix.entries.len().checked_sub(1);
        if previous.is_some_and(|p| *ix.entries[p].key >= *key) {
            return Err("snapshot entries out of key order");
        }
        let id = ix.entries.insert(Entry {
            key: key.into(),
            seq,
            loc,
            value_len,
            meta,
        });
        // A fresh slab without removals hands out 0, 1, 2, ...: ids in key order.
        assert_eq!(id, previous.map_or(0, |p| p + 1));
        let id = u32::try_from(id).expect("more than 4 billion keys");
        let (entries, hasher) = (&ix.entries, &ix.hasher);
        ix.hash.insert_unique(hasher.hash_one(key), id, |&i| {
            hasher.hash_one(&*entries[i as usize].key)
        });
        ix.count_in(kind, key.len(), value_len, loc, 1);
        Ok(())
    }

    pub fn finish(self) -> Index {
        let mut ix = self.index;
        let n = u32::try_from(ix.entries.len()).expect("more than 4 billion keys");
        let entries = &ix.entries;
        ix.ordered = Ordered::from_sorted(0..n, &|i| &entries[i as usize].key);
        ix
    }
}

/// Entry ids sorted by key, for ranges and the listing, in chunks of at most `MAX` ids.
///
/// A lookup finds the chunk through a `BTreeMap` keyed by each chunk's lower bound, then the
/// position in the chunk. Searching sorted ids by comparing the keys they name costs two cache
/// misses per probe at 1M keys (the slab entry, then the boxed key), ~20 probes per lookup.
/// Here almost no probe reads a key:
///
/// - The chunk-level search compares only chunk bounds: one key copy per chunk (~1/180 of the
///   keys), few enough to stay in the CPU caches. The map also spares a split the memmove of
///   the whole chunk list.
/// - Each slot holds, beside the id, a 4-byte *head* of its key: the bytes just after the
///   prefix that every key of the chunk's range shares (`skip`). Heads order the slots; only
///   slots whose head equals the sought key's fall back to the key in the slab. Taking the
///   head after the shared prefix matters: keys like `key_00123456` all begin with the same 8
///   bytes, so a head at offset 0 would decide nothing.
///
/// Memory: 8 bytes per slot plus at most [`Ordered::GROW`] spare slots per chunk, and per chunk
/// its bound and map slot: about 9 bytes per key at 1M keys. (std's `BTreeMap` alone cannot
/// order ids by a key that lives elsewhere without storing every key a second time.)
#[derive(Default)]
struct Ordered<const MAX: usize = CHUNK_MAX> {
    /// Chunk bound → chunk. A chunk holds the keys in `bound..next bound` (the last one, every
    /// key from its bound on); the first bound is the empty key, below every key. A bound is a
    /// copy of the key that was first in the chunk when it was split off: it stays when that
    /// key is removed. Chunks are never empty.
    chunks: BTreeMap<Box<[u8]>, Chunk>,
}

/// Most ids in a chunk: a split then moves 128 slots, an insert at most 2 KiB.
const CHUNK_MAX: usize = 256;

struct Chunk {
    /// Every key in the chunk's range begins with the same `skip` bytes. At most the common
    /// prefix of the chunk's bound and the next bound (0 for the first and last chunks).
    skip: u32,
    /// Sorted by key (which is also (head, key) order, the prefix being shared).
    slots: Vec<Slot>,
}

#[derive(Clone, Copy)]
struct Slot {
    /// `head(key, skip)`.
    head: u32,
    id: u32,
}

/// The 4 key bytes after the first `skip`, big-endian, zero-padded. For two keys that share
/// their first `skip` bytes, a smaller head means a smaller key; equal heads decide nothing
/// ("ab" and "ab\0" have the same head).
fn head(key: &[u8], skip: u32) -> u32 {
    let rest = key.get(skip as usize..).unwrap_or_default();
    let mut b = [0u8; 4];
    let n = rest.len().min(4);
    b[..n].copy_from_slice(&rest[..n]);
    u32::from_be_bytes(b)
}

/// Length of the common prefix. If `a <= k < b`, then `k` begins with that prefix too.
fn common_prefix(a: &[u8], b: &[u8]) -> u32 {
    let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    u32::try_from(n).expect("keys are at most KEY_MAX bytes")
}

impl Chunk {
    /// `Ok(i)` if slot `i` holds `key`, else `Err(i)` where it would go. `key` must lie in
    /// the chunk's range.
    fn search<'k>(&self, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) -> Result<usize, usize> {
        let h = head(key, self.skip);
        // Keys written in increasing order (counters, timestamps) land after the last slot:
        // its head decides, or one key comparison when the heads are equal.
        if let Some(last) = self.slots.last() {
            if h > last.head || (h == last.head && key > key_of(last.id)) {
                return Err(self.slots.len());
            }
        }
        // Heads order the slots (ties only among equal heads): a binary search over the
        // heads finds the first slot whose head is `h` without reading any key.
        let below = self.slots.partition_point(|s| s.head < h);
        let ties = &self.slots[below..];
        let ties = &ties[..ties.partition_point(|s| s.head == h)];
        match ties.binary_search_by(|s| key_of(s.id).cmp(key)) {
            Ok(i) => Ok(below + i),
            Err(i) => Err(below + i),
        }
    }

    /// Recomputes every head for a new `skip` (reads every key of the chunk).
    fn rehead<'k>(&mut self, skip: u32, key_of: &impl Fn(u32) -> &'k [u8]) {
        self.skip = skip;
        for s in &mut self.slots {
            s.head = head(key_of(s.id), skip);
        }
    }

    /// Whether two neighbouring slots have the same head: searches then read keys.
    fn has_ties(&self) -> bool {
        self.slots.windows(2).any(|w| w[0].head == w[1].head)
    }
}

impl<const MAX: usize> Ordered<MAX> {
    /// Spare slots a chunk keeps at most: it grows by this many at a time and gives back
    /// what it no longer needs, instead of holding `MAX` slots from the start.
    const GROW: usize = if MAX >= 64 { MAX / 16 } else { 2 };

    fn len(&self) -> usize {
        self.chunks.values().map(|c| c.slots.len()).sum()
    }

    /// The chunk whose range holds `key`, with its bound.
    fn chunk_for(&mut self, key: &[u8]) -> Option<(&[u8], &mut Chunk)> {
        // Keys written in increasing order go to the last chunk: one comparison with its
        // bound instead of a search down the map.
        if self
            .chunks
            .last_key_value()
            .is_some_and(|(bound, _)| key >= &**bound)
        {
            return self.chunks.iter_mut().next_back().map(|(b, c)| (&**b, c));
        }
        self.chunks
            .range_mut::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map(|(bound, chunk)| (&**bound, chunk))
    }

    fn insert<'k>(&mut self, id: u32, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) {
        let Some((bound, chunk)) = self.chunk_for(key) else {
            let slots = vec![Slot {
                head: head(key, 0),
                id,
            }];
            self.chunks.insert(Box::default(), Chunk { skip: 0, slots });
            return;
        };
        let Err(at) = chunk.search(key, key_of) else {
            panic!("duplicate key in the ordered index");
        };
        if chunk.slots.len() == chunk.slots.capacity() {
            chunk.slots.reserve_exact(Self::GROW);
        }
        let h = head(key, chunk.skip);
        chunk.slots.insert(at, Slot { head: h, id });
        if chunk.slots.len() <= MAX {
            return;
        }
        // Split: the upper half becomes a chunk whose bound is its first key.
        let mut upper = Vec::with_capacity(MAX - MAX / 2 + 1 + Self::GROW);
        upper.extend(chunk.slots.drain(MAX / 2..));
        chunk.slots.shrink_to(MAX / 2 + Self::GROW);
        let split: Box<[u8]> = key_of(upper[0].id).into();
        // Both halves have narrower ranges, so they may share a longer prefix: worth new
        // heads only where equal heads make searches read keys (say, while the store grows
        // from a single chunk, whose range has no common prefix at all).
        let old_skip = chunk.skip;
        let lower_skip = common_prefix(bound, &split);
        if lower_skip > old_skip && chunk.has_ties() {
            chunk.rehead(lower_skip, key_of);
        }
        let upper_skip = self
            .chunks
            .range::<[u8], _>((Bound::Excluded(&*split), Bound::Unbounded))
            .next()
            .map_or(0, |(next, _)| common_prefix(&split, next));
        debug_assert!(upper_skip >= old_skip);
        let mut upper = Chunk {
            skip: old_skip,
            slots: upper,
        };
        if upper_skip > old_skip && upper.has_ties() {
            upper.rehead(upper_skip, key_of);
        }
        self.chunks.insert(split, upper);
    }

    fn remove<'k>(&mut self, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) -> Option<u32> {
        let (bound, chunk) = self.chunk_for(key)?;
        let at = chunk.search(key, key_of).ok()?;
        let id = chunk.slots.remove(at).id;
        if chunk.slots.is_empty() {
            let bound = Box::from(bound);
            self.remove_chunk(&bound, key_of);
        } else if chunk.slots.capacity() - chunk.slots.len() > 2 * Self::GROW {
            chunk.slots.shrink_to(chunk.slots.len() + Self::GROW);
        }
        Some(id)
    }

    /// Drops the (empty) chunk at `bound`; its range goes to the chunk before it, or for the
    /// first chunk to the one after it, which takes the empty bound. The wider range may share
    /// a shorter prefix: then that chunk needs new heads.
    fn remove_chunk<'k>(&mut self, bound: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) {
        let removed = self.chunks.remove(bound);
        debug_assert!(removed.is_some_and(|c| c.slots.is_empty()));
        if bound.is_empty() {
            if let Some((_, mut next)) = self.chunks.pop_first() {
                if next.skip != 0 {
                    next.rehead(0, key_of);
                }
                self.chunks.insert(Box::default(), next);
            }
            return;
        }
        let skip = {
            let (before, _) = self
                .chunks
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(bound)))
                .next_back()
                .expect("the first chunk has the lowest bound");
            self.chunks
                .range::<[u8], _>((Bound::Included(bound), Bound::Unbounded))
                .next()
                .map_or(0, |(next, _)| common_prefix(before, next))
        };
        let (_, before) = self
            .chunks
            .range_mut::<[u8], _>((Bound::Unbounded, Bound::Excluded(bound)))
            .next_back()
            .expect("the first chunk has the lowest bound");
        if skip < before.skip {
            before.rehead(skip, key_of);
        }
    }

    /// Where a scan from `start` begins: the bound of a chunk and a position in it.
    fn seek<'a, 'k>(
        &'a self,
        start: Bound<&[u8]>,
        key_of: &impl Fn(u32) -> &'k [u8],
    ) -> (Bound<&'a [u8]>, usize) {
        let (Bound::Included(key) | Bound::Excluded(key)) = start else {
            return (Bound::Unbounded, 0);
        };
        let Some((bound, chunk)) = self
            .chunks
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
        else {
            return (Bound::Unbounded, 0);
        };
        let at = match (chunk.search(key, key_of), start) {
            (Ok(i), Bound::Excluded(_)) => i + 1,
            (Ok(i) | Err(i), _) => i,
        };
        (Bound::Included(bound), at)
    }

    /// The ids in key order from a [`Ordered::seek`] position on.
    fn ids_from<'a>(
        &'a self,
        (bound, at): (Bound<&'a [u8]>, usize),
    ) -> impl Iterator<Item = u32> + 'a {
        self.chunks
            .range::<[u8], _>((bound, Bound::Unbounded))
            .enumerate()
            .flat_map(move |(i, (_, c))| {
                let from = if i == 0 { at } else { 0 };
                c.slots[from..].iter().map(|s| s.id)
            })
    }

    /// Builds the index from ids already in strictly increasing key order, without a single
    /// search: chunks filled to 3/4 (room for inserts before they split), bounds their first
    /// keys.
    fn from_sorted<'k>(
        ids: impl Iterator<Item = u32>,
        key_of: &impl Fn(u32) -> &'k [u8],
    ) -> Ordered<MAX> {
        let fill = (MAX * 3 / 4).max(1);
        let mut parts: Vec<Vec<Slot>> = vec![];
        for id in ids {
            if parts.last().is_none_or(|p| p.len() == fill) {
                parts.push(Vec::with_capacity(fill + Self::GROW));
            }
            let part = parts.last_mut().expect("just pushed");
            part.push(Slot { head: 0, id });
        }
        let bounds: Vec<&[u8]> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| if i == 0 { &[][..] } else { key_of(p[0].id) })
            .collect();
        let chunks = parts.into_iter().enumerate().map(|(i, slots)| {
            let skip = bounds
                .get(i + 1)
                .map_or(0, |&n| common_prefix(bounds[i], n));
            let mut chunk = Chunk { skip, slots };
            chunk.rehead(skip, key_of);
            (Box::from(bounds[i]), chunk)
        });
        Ordered {
            chunks: chunks.collect(),
        }
    }

    /// Approximate heap bytes: slots, bounds, and the map's nodes (about 1.5 times the bytes
    /// of their entries).
    fn heap_bytes(&self) -> usize {
        let node = (std::mem::size_of::<Box<[u8]>>() + std::mem::size_of::<Chunk>()) * 3 / 2;
        self.chunks
            .iter()
            .map(|(b, c)| {
                c.slots.capacity() * std::mem::size_of::<Slot>() + b.len().div_ceil(16) * 16 + node
            })
            .sum()
    }

    /// Checks bounds, order, skips and heads; returns the ids in order.
    fn check<'k>(&self, key_of: &impl Fn(u32) -> &'k [u8]) -> Vec<u32> {
        let bounds: Vec<&[u8]> = self.chunks.keys().map(|b| &**b).collect();
        assert!(bounds.first().is_none_or(|b| b.is_empty()), "first bound");
        let mut ids = vec![];
        let mut previous: Option<&[u8]> = None;
        for (i, chunk) in self.chunks.values().enumerate() {
            let (lo, hi) = (bounds[i], bounds.get(i + 1).copied());
            assert!(!chunk.slots.is_empty(), "empty chunk");
            assert!(chunk.slots.len() <= MAX, "chunk over size");
            assert!(
                chunk.slots.capacity() <= MAX + 1 + Self::GROW,
                "chunk capacity"
            );
            assert!(
                chunk.skip <= hi.map_or(0, |hi| common_prefix(lo, hi)),
                "skip longer than the range's common prefix"
            );
            for s in &chunk.slots {
                let key = key_of(s.id);
                assert!(
                    lo <= key && hi.is_none_or(|hi| key < hi),
                    "key outside its chunk"
                );
                assert!(
                    previous.is_none_or(|p| p < key),
                    "ordered index out of order"
                );
                assert_eq!(s.head, head(key, chunk.skip), "stale head");
                previous = Some(key);
                ids.push(s.id);
            }
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn loc(segment: u32, offset: u32) -> Loc {
        Loc { segment, offset }
    }

    fn live_keys(ix: &Index, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<Vec<u8>> {
        let mut out = vec![];
        ix.for_each_live(start, end, |e| {
            out.push(e.key().to_vec());
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn overwrite_counts_dead_records_and_moves_live_bytes() {
        let mut ix = Index::new(4);
        ix.apply(b"k", 1, loc(0, 0), Kind::Put, 10);
        assert_eq!(ix.segment_live_bytes(0), record_len(1, 10) as u64);
        let prev = ix.apply(b"k", 2, loc(1, 0), Kind::Put, 5).unwrap();
        assert_eq!(prev.loc, loc(0, 0));
        assert_eq!(ix.segment_live_bytes(0), 0);
        assert_eq!(ix.entry(b"k").unwrap().dead(), 1);
        ix.apply(b"k", 3, loc(2, 0), Kind::Tombstone, 0);
        assert_eq!(ix.get(b"k"), None);
        assert_eq!(ix.live_records(), 0);
        assert!(
            !ix.drop_tombstone(b"k", loc(2, 0)),
            "older versions are still on disk"
        );
        ix.forget_dead(b"k");
        ix.forget_dead(b"k");
        assert!(ix.drop_tombstone(b"k", loc(2, 0)));
        assert_eq!(ix.len(), 0);
        ix.check_invariants();
    }

    #[test]
    fn recovery_keeps_the_highest_sequence_in_any_order() {
        let mut ix = Index::new(2);
        ix.apply_recovered(b"a", 5, loc(1, 0), Kind::Put, 3);
        ix.apply_recovered(b"a", 2, loc(0, 0), Kind::Put, 9);
        ix.apply_recovered(b"a", 5, loc(0, 100), Kind::Put, 3); // a compaction copy
        let e = ix.entry(b"a").unwrap();
        assert_eq!((e.seq, e.loc, e.dead()), (5, loc(1, 0), 2));
        ix.check_invariants();
    }

    #[test]
    fn relocate_fails_when_the_key_moved_on() {
        let mut ix = Index::new(3);
        ix.apply(b"a", 1, loc(0, 0), Kind::Put, 1);
        ix.apply(b"a", 2, loc(0, 50), Kind::Put, 1);
        assert!(!ix.relocate(b"a", 1, loc(0, 0), loc(2, 0)));
        assert_eq!(ix.entry(b"a").unwrap().dead(), 2);
        assert!(ix.relocate(b"a", 2, loc(0, 50), loc(2, 0)));
        assert_eq!(ix.segment_live_bytes(2), record_len(1, 1) as u64);
        ix.check_invariants();
    }

    /// One step of a model test: 0 and 1 put (`value_len`), 2 deletes, 3 erases every dead
    /// record of the key as compaction would and drops its tombstone.
    fn apply_model_op(
        ix: &mut Index,
        model: &mut BTreeMap<Vec<u8>, u32>,
        op: u8,
        key: Vec<u8>,
        seq: u64,
        value_len: u32,
    ) {
        let at = loc(0, u32::try_from(seq).unwrap());
        match op {
            0 | 1 => {
                ix.apply(&key, seq, at, Kind::Put, value_len);
                model.insert(key, value_len);
            }
            2 => {
                if model.remove(&key).is_some() {
                    ix.apply(&key, seq, at, Kind::Tombstone, 0);
                }
            }
            _ => {
                if let Some(e) = ix.entry(&key) {
                    let (dead, tomb_loc) = (e.dead(), e.loc);
                    for _ in 0..dead {
                        ix.forget_dead(&key);
                    }
                    ix.drop_tombstone(&key, tomb_loc);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The index against a BTreeMap model: puts, deletes, tombstone drops, ranges.
        #[test]
        fn index_matches_a_btreemap(ops in prop::collection::vec((0u8..4, prop::collection::vec(0u8..4, 1..4), 0u32..100), 1..800)) {
            let mut ix = Index::new(1);
            let mut model: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
            let mut seq = 0;
            for (op, key, len) in ops {
                seq += 1;
                apply_model_op(&mut ix, &mut model, op, key, seq, len + 1);
            }
            ix.check_invariants();
            for (k, v) in &model {
                prop_assert_eq!(ix.get(k).map(|f| f.value_len), Some(*v));
            }
            let all = live_keys(&ix, Bound::Unbounded, Bound::Unbounded);
            prop_assert_eq!(all, model.keys().cloned().collect::<Vec<_>>());
            let lo: &[u8] = &[1, 2];
            let hi: &[u8] = &[3];
            let want: Vec<Vec<u8>> = model.range::<[u8], _>((Bound::Excluded(lo), Bound::Excluded(hi))).map(|(k, _)| k.clone()).collect();
            prop_assert_eq!(live_keys(&ix, Bound::Excluded(lo), Bound::Excluded(hi)), want);
            prop_assert_eq!(ix.live_records(), model.len() as u64);
        }

        /// Many keys: chunk splits and merges keep the order.
        #[test]
        fn ordered_index_survives_many_inserts_and_removes(keys in prop::collection::vec(any::<u32>(), 1..3000)) {
            let mut ix = Index::new(1);
            let mut model = std::collections::BTreeSet::new();
            for (seq, k) in (1..).zip(&keys) {
                let key = k.to_be_bytes();
                if model.contains(&key) && k % 3 == 0 {
                    ix.apply(&key, seq, loc(0, 0), Kind::Tombstone, 0);
                    model.remove(&key);
                    let e = ix.entry(&key).unwrap();
                    let (dead, l) = (e.dead(), e.loc);
                    for _ in 0..dead { ix.forget_dead(&key); }
                    prop_assert!(ix.drop_tombstone(&key, l));
                } else {
                    ix.apply(&key, seq, loc(0, 0), Kind::Put, 1);
                    model.insert(key);
                }
            }
            ix.check_invariants();
            let all = live_keys(&ix, Bound::Unbounded, Bound::Unbounded);
            prop_assert_eq!(all, model.iter().map(|k| k.to_vec()).collect::<Vec<_>>());
        }
    }
    /// Keys written in increasing order (the last chunk's fast paths), then in decreasing
    /// order, with removes among them, in tiny chunks: the order matches a `BTreeMap`.
    #[test]
    fn increasing_and_decreasing_keys_keep_the_order() {
        let mut keys: Vec<Box<[u8]>> = vec![];
        let mut ordered = Ordered::<4>::default();
        let mut model: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        let numbers = (0..600u32)
            .map(|n| n * 2)
            .chain((0..600).rev().map(|n| n * 2 + 1));
        for (i, n) in numbers.enumerate() {
            let key = format!("n-{n:08}").into_bytes();
            let id = u32::try_from(keys.len()).unwrap();
            keys.push(key.clone().into());
            ordered.insert(id, &key, &|i| &keys[i as usize]);
            model.insert(key, id);
            if i % 7 == 6 {
                // A key written six keys ago (below when increasing, above when decreasing).
                let back = if n % 2 == 0 {
                    n.saturating_sub(12)
                } else {
                    n + 12
                };
                let old = format!("n-{back:08}").into_bytes();
                assert_eq!(
                    ordered.remove(&old, &|i| &keys[i as usize]),
                    model.remove(&old)
                );
            }
        }
        let ids = ordered.check(&|i| &keys[i as usize]);
        assert_eq!(ids, model.values().copied().collect::<Vec<_>>());
    }

    /// Keys with long shared prefixes (heads then tie), keys that are prefixes of others, and
    /// zero bytes ("ab" and "ab\0" have the same head).
    fn tricky_key() -> impl Strategy<Value = Vec<u8>> {
        let prefixes: [&[u8]; 4] = [b"", b"k", b"key_000000", b"a/long/shared/prefix/key_000"];
        (
            0..prefixes.len(),
            prop::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(b'0'), Just(0xff)],
                0..6,
            ),
        )
            .prop_map(move |(p, suffix)| {
                let mut key = prefixes[p].to_vec();
                key.extend(suffix);
                if key.is_empty() {
                    key.push(1);
                }
                key
            })
    }

    fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
        prop_oneof![
            Just(Bound::Unbounded),
            tricky_key().prop_map(Bound::Included),
            tricky_key().prop_map(Bound::Excluded),
        ]
    }

    fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Unbounded => Bound::Unbounded,
            Bound::Included(k) => Bound::Included(k),
            Bound::Excluded(k) => Bound::Excluded(k),
        }
    }

    /// A `BTreeMap` panics on a range whose start is above its end; such a range is empty.
    fn valid_range(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
        match (start, end) {
            (Bound::Included(s), Bound::Included(e)) => s <= e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => {
                s < e
            }
            _ => true,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The ordered index alone with tiny chunks (many splits, emptied chunks, new heads),
        /// against a BTreeMap: inserts, removes, seeks from random bounds, bulk rebuilds.
        #[test]
        fn tiny_chunks_match_a_btreemap(ops in prop::collection::vec((0u8..16, tricky_key(), bound()), 1..600)) {
            let mut keys: Vec<Box<[u8]>> = vec![];
            let mut ordered = Ordered::<4>::default();
            let mut model: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
            for (op, key, start) in ops {
                match op {
                    0..=7 => {
                        if let std::collections::btree_map::Entry::Vacant(slot) = model.entry(key) {
                            let id = u32::try_from(keys.len()).unwrap();
                            keys.push(slot.key().clone().into());
                            ordered.insert(id, slot.key(), &|i| &keys[i as usize]);
                            slot.insert(id);
                        }
                    }
                    8 | 9 => {
                        let removed = ordered.remove(&key, &|i| &keys[i as usize]);
                        prop_assert_eq!(removed, model.remove(&key));
                    }
                    10..=12 => {
                        // A run of removes: empties whole chunks.
                        let run: Vec<Vec<u8>> = model
                            .range::<[u8], _>((as_ref(&start), Bound::Unbounded))
                            .map(|(k, _)| k.clone())
                            .take(6)
                            .collect();
                        for k in run {
                            let removed = ordered.remove(&k, &|i| &keys[i as usize]);
                            prop_assert_eq!(removed, model.remove(&k));
                        }
                    }
                    13 | 14 => {
                        let got: Vec<u32> = ordered
                            .ids_from(ordered.seek(as_ref(&start), &|i| &keys[i as usize]))
                            .take(10)
                            .collect();
                        let want: Vec<u32> = model
                            .range::<[u8], _>((as_ref(&start), Bound::Unbounded))
                            .map(|(_, &id)| id)
                            .take(10)
                            .collect();
                        prop_assert_eq!(got, want);
                    }
                    _ => {
                        let ids: Vec<u32> = model.values().copied().collect();
                        ordered = Ordered::from_sorted(ids.into_iter(), &|i| &keys[i as usize]);
                    }
                }
                let ids = ordered.check(&|i| &keys[i as usize]);
                prop_assert_eq!(ids, model.values().copied().collect::<Vec<_>>());
            }
        }

        /// The index with tricky keys against a BTreeMap, ranges between random bounds, and a
        /// snapshot-style rebuild (which must give the same index and keep working).
        #[test]
        fn tricky_keys_and_bounds(ops in prop::collection::vec((0u8..4, tricky_key()), 1..1500), bounds in prop::collection::vec((bound(), bound()), 8)) {
            let mut ix = Index::new(1);
            let mut model: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
            let mut seq = 0;
            let half = ops.len() / 2;
            for (n, (op, key)) in ops.into_iter().enumerate() {
                if n == half {
                    let mut r = Restore::new(1, ix.len());
                    for e in ix.iter_ordered() {
                        r.push(e.key(), e.seq, e.loc, e.value_len, e.meta_bits()).unwrap();
                    }
                    let restored = r.finish();
                    restored.check_invariants();
                    let all = |ix: &Index| ix.iter_ordered().map(|e| (e.key().to_vec(), e.seq, e.dead(), e.is_tombstone())).collect::<Vec<_>>();
                    prop_assert_eq!(all(&restored), all(&ix));
                    ix = restored;
                }
                seq += 1;
                apply_model_op(&mut ix, &mut model, op, key, seq, u32::try_from(seq).unwrap());
            }
            ix.check_invariants();
            for (start, end) in &bounds {
                let (start, end) = (as_ref(start), as_ref(end));
                let want: Vec<Vec<u8>> = if valid_range(start, end) {
                    model.range::<[u8], _>((start, end)).map(|(k, _)| k.clone()).collect()
                } else {
                    vec![]
                };
                prop_assert_eq!(live_keys(&ix, start, end), want);
            }
        }
    }

    #[test]
    fn restore_refuses_keys_out_of_order() {
        let mut r = Restore::new(1, 2);
        r.push(b"b", 1, loc(0, 0), 1, 0).unwrap();
        assert!(r.push(b"b", 2, loc(0, 0), 1, 0).is_err(), "duplicate");
        assert!(r.push(b"a", 2, loc(0, 0), 1, 0).is_err(), "below");
        assert!(r.push(b"c", 2, loc(0, 0), 0, 0).is_err(), "empty put");
        assert!(
            r.push(b"c", 2, loc(0, 0), 1, TOMBSTONE).is_err(),
            "tombstone with a value"
        );
        r.push(b"c", 2, loc(0, 0), 0, TOMBSTONE | 3).unwrap();
        let ix = r.finish();
        ix.check_invariants();
        assert_eq!(ix.entry(b"c").unwrap().dead(), 3);
        assert_eq!(ix.live_records(), 1);
    }

    /// xorshift64*: deterministic, no extra dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// A number below `n`.
        fn below(&mut self, n: usize) -> usize {
            usize_of(self.next() % u64_of(n))
        }

        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                v.swap(i, self.below(i + 1));
            }
        }
    }

    fn nanos(t: std::time::Instant) -> u64 {
        u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn pct(v: &mut [u64], p: usize) -> u64 {
        v.sort_unstable();
        v[(v.len() * p / 100).min(v.len() - 1)]
    }

    /// Heap bytes per record besides the keys' own allocations.
    #[allow(clippy::cast_precision_loss)] // a printed figure; far below 2^52
    fn bytes_per_record(ix: &Index, keys: &[Vec<u8>], n: usize) -> f64 {
        let keys_heap: usize = keys.iter().map(|k| k.len().div_ceil(16) * 16 + 16).sum();
        (ix.heap_bytes() as f64 - keys_heap as f64) / n as f64
    }

    /// One round of the timings: `n` keys of `style`, the last `m` inserts timed, then `m`
    /// overwrites and `m` seeks. Returns the index and its keys for the heap figure.
    fn timed_round(
        rng: &mut Rng,
        style: &str,
        n: usize,
        m: usize,
        times: &mut [Vec<u64>; 3],
    ) -> (Index, Vec<Vec<u8>>) {
        // The bench's keys (shuffled `key_%08d`) or random 8..24-byte keys.
        let mut keys: Vec<Vec<u8>> = (0..n)
            .map(|i| match style {
                "random" => {
                    let len = 8 + rng.below(17);
                    (0..len).map(|_| rng.next().to_le_bytes()[0]).collect()
                }
                _ => format!("key_{i:08}").into_bytes(),
            })
            .collect();
        rng.shuffle(&mut keys);
        let mut ix = Index::new(1);
        let mut seq = 0;
        for (i, k) in keys.iter().enumerate() {
            seq += 1;
            let t = std::time::Instant::now();
            ix.apply(k, seq, loc(0, 0), Kind::Put, 100);
            if i >= n - m {
                times[0].push(nanos(t));
            }
        }
        for _ in 0..m {
            let k = &keys[rng.below(n)];
            seq += 1;
            let t = std::time::Instant::now();
            ix.apply(k, seq, loc(0, 0), Kind::Put, 100);
            times[1].push(nanos(t));
        }
        for _ in 0..m {
            let k = &keys[rng.below(n)];
            let t = std::time::Instant::now();
            let mut got = 0;
            ix.for_each_live(Bound::Included(k), Bound::Unbounded, |_| {
                got += 1;
                ControlFlow::Break(())
            });
            times[2].push(nanos(t));
            assert_eq!(got, 1);
        }
        (ix, keys)
    }

    /// Timings of `Index::apply` and friends (not a correctness test):
    /// `cargo test --release --lib -- --ignored --nocapture index_timings`
    /// (`INDEX_TIMINGS=ordered`: only the ordered index alone).
    #[test]
    #[ignore = "timings, not a correctness test"]
    fn index_timings() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let all = std::env::var("INDEX_TIMINGS").map_or(true, |v| v != "ordered");
        for style in ["key_%08d", "random"].into_iter().filter(|_| all) {
            for n in [100usize, 10_000, 1_000_000] {
                let m = n.min(10_000);
                let mut times = [vec![], vec![], vec![]];
                let mut per_record = 0.0;
                for _ in 0..10_000 / m {
                    let (ix, keys) = timed_round(&mut rng, style, n, m, &mut times);
                    per_record = bytes_per_record(&ix, &keys, n);
                }
                let [ins, over, seek] = &mut times;
                println!(
                    "{style:>9} n={n:>8}: insert p50 {:>5} p99 {:>6} ns | overwrite p50 {:>5} p99 {:>6} | seek p50 {:>5} p99 {:>6} | {per_record:.1} B/record besides keys",
                    pct(ins, 50), pct(ins, 99), pct(over, 50), pct(over, 99), pct(seek, 50), pct(seek, 99),
                );
            }
        }
        ordered_alone_timings(&mut rng);
        if all {
            restore_timings(&mut rng);
        }
    }

    /// The ordered index alone, 1M shuffled `key_%08d` keys (boxed in insertion order, as
    /// in the slab).
    fn ordered_alone_timings(rng: &mut Rng) {
        let n = 1_000_000u32;
        let mut order: Vec<u32> = (0..n).collect();
        rng.shuffle(&mut order);
        let keys: Vec<Box<[u8]>> = order
            .iter()
            .map(|k| format!("key_{k:08}").into_bytes().into())
            .collect();
        let key_of = |i: u32| -> &[u8] { &keys[i as usize] };
        let mut ordered = Ordered::<CHUNK_MAX>::default();
        let mut times = vec![];
        for id in 0..n {
            let t = std::time::Instant::now();
            ordered.insert(id, &keys[id as usize], &key_of);
            if id >= n - 10_000 {
                times.push(nanos(t));
            }
        }
        println!(
            "ordered index alone, 1M keys: insert p50 {} p99 {} ns",
            pct(&mut times, 50),
            pct(&mut times, 99)
        );
    }

    /// As in the benchmark: 990k entries restored the way a snapshot load does, then 10k
    /// inserts of new keys.
    fn restore_timings(rng: &mut Rng) {
        let (n, m) = (1_000_000usize, 10_000usize);
        let mut keys: Vec<Vec<u8>> = (0..n).map(|i| format!("key_{i:08}").into_bytes()).collect();
        rng.shuffle(&mut keys);
        let mut src = Index::new(1);
        for (seq, k) in (1..).zip(&keys[..n - m]) {
            src.apply(k, seq, loc(0, 0), Kind::Put, 100);
        }
        let stream: Vec<(Vec<u8>, u64, u32)> = src
            .iter_ordered()
            .map(|e| (e.key().to_vec(), e.seq, e.meta_bits()))
            .collect();
        drop(src);
        let t = std::time::Instant::now();
        let mut r = Restore::new(1, stream.len());
        for (key, seq, meta) in &stream {
            r.push(key, *seq, loc(0, 0), 100, *meta).unwrap();
        }
        let mut ix = r.finish();
        let restore_ms = t.elapsed().as_millis();
        let mut ins = vec![];
        for (seq, k) in (u64_of(n)..).zip(&keys[n - m..]) {
            let t = std::time::Instant::now();
            ix.apply(k, seq, loc(0, 0), Kind::Put, 100);
            ins.push(nanos(t));
        }
        println!(
            "restore of {} entries: {restore_ms} ms; then {m} inserts: p50 {} p99 {} ns, {:.1} B/record besides keys",
            stream.len(),
            pct(&mut ins, 50),
            pct(&mut ins, 99),
            bytes_per_record(&ix, &keys, n)
        );
    }
}
