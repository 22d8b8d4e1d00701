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
        record_len(self.key.len(), self.value_len as usize) as u64
    }
    fn add_dead(&mut self, n: i64) {
        let dead = self.dead() as i64 + n;
        assert!(
            (0..=DEAD_MASK as i64).contains(&dead),
            "dead count out of range: {dead}"
        );
        self.meta = (self.meta & TOMBSTONE) | dead as u32;
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
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn count_in(&mut self, e_kind: Kind, key_len: usize, value_len: u32, loc: Loc, sign: i64) {
        let len = record_len(key_len, value_len as usize) as i64 * sign;
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
                .checked_add_signed(value_len as i64 * sign)
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

    /// Snapshot load: an entry exactly as [`Entry::meta_bits`] and the rest describe it.
    pub fn restore(
        &mut self,
        key: &[u8],
        seq: u64,
        loc: Loc,
        value_len: u32,
        meta: u32,
    ) -> Result<(), &'static str> {
        let kind = if meta & TOMBSTONE != 0 {
            Kind::Tombstone
        } else {
            Kind::Put
        };
        if (kind == Kind::Tombstone) != (value_len == 0) || self.find_id(key).is_some() {
            return Err("inconsistent snapshot entry");
        }
        self.insert_new(key, seq, loc, kind, value_len);
        let id = self.find_id(key).expect("just inserted");
        self.entries[id as usize].meta = meta;
        Ok(())
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
        match self.hash.find_entry(h, |&i| i == id) {
            Ok(slot) => {
                slot.remove();
            }
            Err(_) => panic!("entry {id} missing from the hash table"),
        }
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
        let segments = self.segment_live.len() as u32;
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
        let (mut c, mut p) = self.ordered.seek(start, &key_of);
        while let Some(chunk) = self.ordered.chunks.get(c) {
            while let Some(&id) = chunk.get(p) {
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
                p += 1;
            }
            c += 1;
            p = 0;
        }
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
        let ordered: usize = self
            .ordered
            .chunks
            .iter()
            .map(|c| c.capacity() * 4 + 24)
            .sum();
        (entries + keys + hash + ordered) as u64
    }

    /// Checks the structures against each other (tests and debug builds).
    pub fn check_invariants(&self) {
        assert_eq!(self.hash.len(), self.entries.len());
        assert_eq!(self.ordered.len(), self.entries.len());
        let mut previous: Option<&[u8]> = None;
        for chunk in &self.ordered.chunks {
            assert!(!chunk.is_empty(), "empty chunk");
            for &id in chunk {
                let key = &*self.entries[id as usize].key;
                assert!(
                    previous.is_none_or(|p| p < key),
                    "ordered index out of order"
                );
                assert_eq!(self.find_id(key), Some(id));
                previous = Some(key);
            }
        }
        let mut live = vec![0u64; self.segment_live.len()];
        let (mut records, mut values) = (0, 0);
        for (_, e) in &self.entries {
            live[e.loc.segment as usize] += e.record_len();
            if !e.is_tombstone() {
                records += 1;
                values += e.value_len as u64;
            }
        }
        assert_eq!(live, self.segment_live, "segment live bytes drifted");
        assert_eq!(
            (records, values),
            (self.live_records, self.live_value_bytes)
        );
    }
}

/// Entry ids sorted by key, in chunks of at most [`CHUNK_MAX`]: inserts move at most one
/// chunk, lookups are two binary searches. (std's BTreeMap cannot order ids by a key that
/// lives elsewhere without storing the key a second time.)
#[derive(Default)]
struct Ordered {
    chunks: Vec<Vec<u32>>,
}

const CHUNK_MAX: usize = 256;

impl Ordered {
    fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// The chunk `key` belongs in: the first whose last key is not below it, else the last.
    fn chunk_for<'k>(&self, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) -> usize {
        let i = self
            .chunks
            .partition_point(|c| key_of(*c.last().expect("no empty chunks")) < key);
        i.min(self.chunks.len() - 1)
    }

    fn insert<'k>(&mut self, id: u32, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) {
        if self.chunks.is_empty() {
            let mut first = Vec::with_capacity(CHUNK_MAX + 1);
            first.push(id);
            self.chunks.push(first);
            return;
        }
        let c = self.chunk_for(key, key_of);
        let chunk = &mut self.chunks[c];
        let at = chunk.partition_point(|&i| key_of(i) < key);
        debug_assert!(
            chunk.get(at).is_none_or(|&i| key_of(i) != key),
            "duplicate key"
        );
        chunk.insert(at, id);
        if chunk.len() > CHUNK_MAX {
            let mut tail = Vec::with_capacity(CHUNK_MAX + 1);
            tail.extend(chunk.drain(CHUNK_MAX / 2..));
            self.chunks.insert(c + 1, tail);
        }
    }

    fn remove<'k>(&mut self, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) -> Option<u32> {
        if self.chunks.is_empty() {
            return None;
        }
        let c = self.chunk_for(key, key_of);
        let chunk = &mut self.chunks[c];
        let at = chunk.partition_point(|&i| key_of(i) < key);
        if chunk.get(at).is_none_or(|&i| key_of(i) != key) {
            return None;
        }
        let id = chunk.remove(at);
        if chunk.is_empty() {
            self.chunks.remove(c);
        }
        Some(id)
    }

    /// (chunk, position) of the first id at or after `start`.
    fn seek<'k>(&self, start: Bound<&[u8]>, key_of: &impl Fn(u32) -> &'k [u8]) -> (usize, usize) {
        let (key, inclusive) = match start {
            Bound::Unbounded => return (0, 0),
            Bound::Included(k) => (k, true),
            Bound::Excluded(k) => (k, false),
        };
        let before = |i: u32| {
            if inclusive {
                key_of(i) < key
            } else {
                key_of(i) <= key
            }
        };
        let c = self
            .chunks
            .partition_point(|c| before(*c.last().expect("no empty chunks")));
        match self.chunks.get(c) {
            None => (self.chunks.len(), 0),
            Some(chunk) => (c, chunk.partition_point(|&i| before(i))),
        }
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
        assert!(ix.is_empty());
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
                let at = loc(0, seq as u32);
                match op {
                    0 | 1 => {
                        ix.apply(&key, seq, at, Kind::Put, len + 1);
                        model.insert(key, len + 1);
                    }
                    2 => {
                        if model.remove(&key).is_some() {
                            ix.apply(&key, seq, at, Kind::Tombstone, 0);
                        }
                    }
                    _ => {
                        // Pretend compaction erased every dead record of the key, then drop.
                        if let Some(e) = ix.entry(&key) {
                            let (dead, tomb_loc) = (e.dead(), e.loc);
                            for _ in 0..dead { ix.forget_dead(&key); }
                            ix.drop_tombstone(&key, tomb_loc);
                        }
                    }
                }
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
            let mut model = BTreeMap::new();
            for (i, k) in keys.iter().enumerate() {
                let key = k.to_be_bytes();
                let seq = i as u64 + 1;
                if model.contains_key(&key) && k % 3 == 0 {
                    ix.apply(&key, seq, loc(0, 0), Kind::Tombstone, 0);
                    model.remove(&key);
                    let e = ix.entry(&key).unwrap();
                    let (dead, l) = (e.dead(), e.loc);
                    for _ in 0..dead { ix.forget_dead(&key); }
                    prop_assert!(ix.drop_tombstone(&key, l));
                } else {
                    ix.apply(&key, seq, loc(0, 0), Kind::Put, 1);
                    model.insert(key, ());
                }
            }
            ix.check_invariants();
            let all = live_keys(&ix, Bound::Unbounded, Bound::Unbounded);
            prop_assert_eq!(all, model.keys().map(|k| k.to_vec()).collect::<Vec<_>>());
        }
    }
}
