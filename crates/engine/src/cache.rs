//! The value cache: recently read or written values, bounded in bytes.
//!
//! Entries are tagged with the sequence number of the record they came from, and a lookup
//! names the sequence number the index holds now, so a cached value can never be served
//! after an overwrite, an append, a delete or a purge: it simply stops matching. (The
//! module's cache returned old values after an overwrite.) Eviction is `quick_cache`'s
//! CLOCK-Pro, weighted by bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

/// Bytes charged for an entry besides its key and value (the table slot, the Arc header).
const ENTRY_OVERHEAD: u64 = 64;

#[derive(Clone)]
struct Cached {
    seq: u64,
    value: Arc<[u8]>,
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<Box<[u8]>, Cached> for ByBytes {
    fn weight(&self, key: &Box<[u8]>, val: &Cached) -> u64 {
        key.len() as u64 + val.value.len() as u64 + ENTRY_OVERHEAD
    }
}

pub struct ValueCache {
    cache: Cache<Box<[u8]>, Cached, ByBytes>,
    capacity_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ValueCache {
    /// `None` when `capacity_bytes` is 0: the cache is off.
    pub fn new(capacity_bytes: u64) -> Option<ValueCache> {
        if capacity_bytes == 0 {
            return None;
        }
        // quick_cache wants an item estimate to size its table; assume ~1 KiB values.
        let items = (capacity_bytes / 1024).clamp(16, 1 << 24) as usize;
        Some(ValueCache {
            cache: Cache::with_weighter(items, capacity_bytes, ByBytes),
            capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The value of `key` if the cache holds exactly version `seq` of it.
    pub fn get(&self, key: &[u8], seq: u64) -> Option<Arc<[u8]>> {
        match self.cache.get(key) {
            Some(c) if c.seq == seq => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(c.value)
            }
            _ => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Like [`ValueCache::get`], without counting a hit or a miss.
    pub fn peek(&self, key: &[u8], seq: u64) -> Option<Arc<[u8]>> {
        self.cache
            .get(key)
            .filter(|c| c.seq == seq)
            .map(|c| c.value)
    }

    pub fn insert(&self, key: &[u8], seq: u64, value: Arc<[u8]>) {
        if self.fits(key, &value) {
            self.cache.insert(key.into(), Cached { seq, value });
        }
    }

    /// [`ValueCache::insert`] of a key the caller owns (no copy of it is made).
    pub fn insert_owned(&self, key: Box<[u8]>, seq: u64, value: Arc<[u8]>) {
        if self.fits(&key, &value) {
            self.cache.insert(key, Cached { seq, value });
        }
    }

    /// Whether an entry is small enough to cache: one value must not flush a large part of
    /// the cache.
    fn fits(&self, key: &[u8], value: &[u8]) -> bool {
        key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD <= self.capacity_bytes / 8
    }

    pub fn remove(&self, key: &[u8]) {
        self.cache.remove(key);
    }

    pub fn clear(&self) {
        self.cache.clear();
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }
    pub fn used_bytes(&self) -> u64 {
        self.cache.weight()
    }
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_version_never_sees_an_older_value() {
        let c = ValueCache::new(1 << 20).unwrap();
        c.insert(b"k", 1, Arc::from(&b"old"[..]));
        assert_eq!(c.get(b"k", 1).as_deref(), Some(&b"old"[..]));
        assert_eq!(c.get(b"k", 2), None, "version 2 must miss");
        c.insert(b"k", 2, Arc::from(&b"new"[..]));
        assert_eq!(c.get(b"k", 2).as_deref(), Some(&b"new"[..]));
        assert_eq!((c.hits(), c.misses()), (2, 1));
    }

    #[test]
    fn zero_capacity_turns_the_cache_off() {
        assert!(ValueCache::new(0).is_none());
    }

    #[test]
    fn weight_stays_within_capacity() {
        let c = ValueCache::new(64 * 1024).unwrap();
        for i in 0..1000u32 {
            c.insert(&i.to_be_bytes(), 1, Arc::from(vec![0u8; 1000]));
        }
        assert!(c.used_bytes() <= 64 * 1024, "used {}", c.used_bytes());
    }
}
