//! The state every part of the engine shares, each piece with one owner:
//!
//! - [`Geometry`]: the store's identity and layout, fixed at open;
//! - [`Disk`]: the device, its I/O counters and the store's health: the one place where a
//!   device failure turns the store read-only ([`Disk::fail`]);
//! - [`Segments`]: the segment table (space accounting) behind a small API, and the readers'
//!   pins;
//! - the index and the superblock, behind ordered locks ([`crate::lock`]);
//! - the value cache, and the read path ([`Shared::read_value`]).
//!
//! The committer ([`crate::writer`]) owns the active segment and the sequence numbers;
//! compaction ([`crate::compaction`]) owns its output segment and its buffers. Neither is
//! here.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::ops::{Bound, ControlFlow};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::cache::ValueCache;
use crate::config::Config;
use crate::device::{align_down, align_up, AlignedBuf, BlockDevice};
use crate::error::{Corruption, Error};
use crate::format::{self, Superblock};
use crate::index::{Found, Index};
use crate::lock::{Guard, Level, OrderedMutex, OrderedRwLock};
use crate::num::{u64_of, usize_of};
use crate::observe::{Applied, Change, KeySource, LiveKey};
use crate::space::{Purpose, SegInfo, SegState, Space};

/// The store's identity and layout, fixed when it is opened.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub uuid: [u8; 16],
    /// CRC seed of this store's records ([`format::store_seed`]).
    pub seed: u32,
    pub block_size: u32,
    pub segment_size: u64,
    pub segment_count: u32,
}

impl Geometry {
    pub fn of(sb: &Superblock) -> Geometry {
        assert!(sb.segment_size <= format::SEGMENT_SIZE_MAX);
        Geometry {
            uuid: sb.uuid,
            seed: format::store_seed(&sb.uuid),
            block_size: sb.block_size,
            segment_size: sb.segment_size,
            segment_count: sb.segment_count,
        }
    }

    /// The device offset of `segment`'s first byte.
    pub fn segment_base(&self, segment: u32) -> u64 {
        assert!(
            segment < self.segment_count,
            "segment {segment} out of range"
        );
        format::DATA_OFFSET + u64::from(segment) * self.segment_size
    }

    /// Bytes of a segment available for records.
    pub fn segment_capacity(&self) -> u64 {
        self.segment_size - u64::from(self.block_size)
    }

    /// The block size as a length.
    pub fn block(&self) -> usize {
        usize_of(u64::from(self.block_size))
    }

    /// The segment size as a length.
    pub fn segment_len(&self) -> usize {
        usize_of(self.segment_size)
    }
}

/// The device, its counters, and whether a failure stopped writes.
///
/// Every write and flush of a running store goes through [`Disk::write`] and
/// [`Disk::flush`]: a failure of either turns the store read-only right there, once, with
/// one log line. What was acknowledged stays readable, and the next open recovers the truth
/// from the disk (DESIGN.md, "Device errors").
pub(crate) struct Disk {
    dev: Arc<dyn BlockDevice>,
    read_only: AtomicBool,
    writes: AtomicU64,
    flushes: AtomicU64,
}

impl Disk {
    pub fn new(dev: Arc<dyn BlockDevice>) -> Disk {
        Disk {
            dev,
            read_only: AtomicBool::new(false),
            writes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        }
    }

    pub fn dev(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    /// Writes `buf` at `offset`; a failure turns the store read-only.
    pub fn write(&self, buf: &[u8], offset: u64) -> Result<(), Error> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.dev.write_at(buf, offset).map_err(|e| self.fail(e))
    }

    /// Writes `buf` at `offset` into the kernel's cache ([`BlockDevice::write_cached`]); a
    /// failure turns the store read-only.
    pub fn write_cached(&self, buf: &[u8], offset: u64) -> Result<(), Error> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.dev.write_cached(buf, offset).map_err(|e| self.fail(e))
    }

    /// Flushes the device cache; a failure turns the store read-only.
    pub fn flush(&self) -> Result<(), Error> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.dev.flush().map_err(|e| self.fail(e))
    }

    /// Reads; a failed read fails only itself.
    pub fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        self.dev.read_at(buf, offset).map_err(Error::from)
    }

    /// Writes both superblock copies ([`write_superblock`]); a failure turns the store
    /// read-only.
    pub fn write_superblock(&self, sb: &Superblock) -> Result<(), Error> {
        self.writes.fetch_add(2, Ordering::Relaxed);
        self.flushes.fetch_add(2, Ordering::Relaxed);
        write_superblock(&*self.dev, sb).map_err(|e| self.fail(e))
    }

    /// The read-only transition: stops all writes after a device failure or a corruption
    /// found while writing. Logs once; returns the error to hand to the caller.
    pub fn fail(&self, why: impl Into<Error>) -> Error {
        let err = why.into();
        if !self.read_only.swap(true, Ordering::SeqCst) {
            log::error!("{err}; no more writes are accepted until hpkvd restarts");
        }
        err
    }

    /// `Err(ReadOnly)` once a failure stopped writes.
    pub fn check_writable(&self) -> Result<(), Error> {
        if self.is_read_only() {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::SeqCst)
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}

/// Writes both superblock copies, one after the other, each flushed: a torn write can
/// damage at most the copy being written, and the other holds the previous state.
pub(crate) fn write_superblock(dev: &dyn BlockDevice, sb: &Superblock) -> io::Result<()> {
    let mut block = AlignedBuf::zeroed(usize_of(u64::from(sb.block_size)))?;
    block[..format::SUPERBLOCK_LEN].copy_from_slice(&sb.encode());
    for offset in format::SUPERBLOCK_OFFSETS {
        dev.write_at(&block, offset)?;
        dev.flush()?;
    }
    Ok(())
}

/// The segment table (owned here, changed only through these methods) and the readers'
/// pins on segments.
pub(crate) struct Segments {
    table: OrderedMutex<Space>,
    /// Readers in each segment: a pinned segment is not reused.
    pins: Box<[AtomicU32]>,
}

impl Segments {
    pub fn new(space: Space) -> Segments {
        let pins = (0..space.segment_count())
            .map(|_| AtomicU32::new(0))
            .collect();
        Segments {
            table: OrderedMutex::new(Level::Space, space),
            pins,
        }
    }

    /// The table, for the few callers that read several entries at once (victim choice,
    /// snapshots, the restart's resumption).
    pub fn lock(&self) -> Guard<'_, Space> {
        self.table.lock()
    }

    /// Takes a free, unpinned segment ([`Space::allocate`]).
    pub fn allocate(&self, purpose: Purpose, state: SegState) -> Option<(u32, u32)> {
        self.table.lock().allocate(purpose, state, &self.pins)
    }

    pub fn info(&self, segment: u32) -> SegInfo {
        self.table.lock().seg(segment)
    }

    pub fn seal(&self, segment: u32, written: u32) {
        self.table.lock().seal(segment, written);
    }

    pub fn note_written(&self, segment: u32, written: u32) {
        self.table.lock().note_written(segment, written);
    }

    pub fn release(&self, segment: u32) {
        self.table.lock().release(segment);
    }

    pub fn free_count(&self) -> usize {
        self.table.lock().free_count()
    }

    /// Pins `segment` until the returned guard drops.
    pub fn pin(&self, segment: u32) -> Pin<'_> {
        Pin::new(&self.pins[usize_of(u64::from(segment))])
    }

    pub fn pinned(&self, segment: u32) -> bool {
        self.pins[usize_of(u64::from(segment))].load(Ordering::Acquire) != 0
    }
}

/// A reader's hold on a segment: while any is held, the segment is not allocated again.
pub(crate) struct Pin<'a>(&'a AtomicU32);

impl<'a> Pin<'a> {
    fn new(count: &'a AtomicU32) -> Pin<'a> {
        count.fetch_add(1, Ordering::AcqRel);
        Pin(count)
    }
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        let before = self.0.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "a pin count went below zero");
    }
}

/// Counts of operations since the store was opened.
#[derive(Default)]
pub(crate) struct Counters {
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    pub appends: AtomicU64,
    pub deletes: AtomicU64,
    pub purges: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_bytes_moved: AtomicU64,
    pub compaction_bytes_reclaimed: AtomicU64,
    pub gathers: AtomicU64,
    pub gather_us: AtomicU64,
    pub overlapped_writes: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// State shared by the committer, compaction and readers (see the module's text for who
/// owns what). Locks are taken in the order of [`crate::lock`].
pub(crate) struct Shared {
    pub geometry: Geometry,
    pub disk: Disk,
    pub config: Config,
    pub sb: OrderedMutex<Superblock>,
    pub index: OrderedRwLock<Index>,
    pub segments: Segments,
    pub cache: Option<ValueCache>,
    pub counters: Counters,
    pub started: Instant,
}

impl Shared {
    pub fn new(
        dev: Arc<dyn BlockDevice>,
        config: Config,
        sb: Superblock,
        index: Index,
        space: Space,
    ) -> Shared {
        let cache = ValueCache::new(config.cache_bytes);
        Shared {
            geometry: Geometry::of(&sb),
            disk: Disk::new(dev),
            config,
            sb: OrderedMutex::new(Level::Superblock, sb),
            index: OrderedRwLock::new(Level::Index, index),
            segments: Segments::new(space),
            cache,
            counters: Counters::default(),
            started: Instant::now(),
        }
    }

    /// Looks `key` up and pins the segment of its record until the guard drops. The pin is
    /// taken under the index lock, so once the index no longer points into a segment, its
    /// pin count only goes down.
    pub fn lookup_pinned(&self, key: &[u8]) -> Option<(Found, Pin<'_>)> {
        let index = self.index.read();
        let found = index.get(key)?;
        Some((found, self.segments.pin(found.loc.segment)))
    }

    /// The value of the record `found` names for `key` (cache first, then the device).
    /// The caller holds a pin on the record's segment.
    pub fn read_value(&self, key: &[u8], found: Found) -> Result<Arc<[u8]>, Error> {
        if let Some(v) = self.cache.as_ref().and_then(|c| c.get(key, found.seq)) {
            return Ok(v);
        }
        let value = self.read_record_value(key, found)?;
        if let Some(c) = &self.cache {
            c.insert(key, found.seq, value.clone());
        }
        Ok(value)
    }

    fn read_record_value(&self, key: &[u8], found: Found) -> Result<Arc<[u8]>, Error> {
        let bs = u64::from(self.geometry.block_size);
        let len = u64_of(format::record_len(
            key.len(),
            usize_of(u64::from(found.value_len)),
        ));
        let at = self.geometry.segment_base(found.loc.segment) + u64::from(found.loc.offset);
        let (start, end) = (align_down(at, bs), align_up(at + len, bs));
        let span_len = usize_of(end - start);
        READ_BUF.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|b| b.len() < span_len) {
                *slot = Some(AlignedBuf::zeroed(read_buf_len(self.geometry.block_size))?);
            }
            let buf = slot.as_mut().expect("just filled");
            let span = &mut buf[..span_len];
            self.disk.read(span, start)?;
            let rec = &span[usize_of(at - start)..usize_of(at - start + len)];
            match format::decode_record_any_incarnation(rec, self.geometry.seed) {
                Ok((_, r)) if r.seq == found.seq && r.key == key && r.kind == format::Kind::Put => {
                    Ok(Arc::from(r.value))
                }
                _ => {
                    let what = Corruption::Record {
                        segment: found.loc.segment,
                        offset: found.loc.offset,
                        key_len: key.len(),
                    };
                    log::error!("{what}");
                    Err(Error::Corrupt(what))
                }
            }
        })
    }
}

/// Keys [`Shared::for_each_key`] copies out under one read lock of the index.
const KEYS_PER_LOCK: usize = 1024;

impl Shared {
    /// Reports a batch to the observer, if there is one ([`crate::observe`]).
    pub fn report(&self, changes: &[Change<'_>]) {
        let Some(observer) = &self.config.observer else {
            return;
        };
        let (records, value_bytes) = {
            let index = self.index.read();
            (index.live_records(), index.live_value_bytes())
        };
        observer.0.applied(&Applied {
            changes,
            records,
            value_bytes,
            device_bytes: self.disk.dev().size_bytes(),
            keys: self,
        });
    }

    /// Every live key with its sequence number, value length and cached value, in key order,
    /// a chunk at a time (the index lock is never held while `f` runs).
    pub fn for_each_key(&self, f: &mut dyn FnMut(LiveKey<'_>)) {
        let mut from: Bound<Box<[u8]>> = Bound::Unbounded;
        loop {
            let mut chunk: Vec<(Box<[u8]>, u64, u32)> = Vec::with_capacity(KEYS_PER_LOCK);
            self.index
                .read()
                .for_each_live(from.as_ref().map(|k| &k[..]), Bound::Unbounded, |e| {
                    chunk.push((e.key().into(), e.seq, e.value_len));
                    if chunk.len() == KEYS_PER_LOCK {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
            let full = chunk.len() == KEYS_PER_LOCK;
            for (key, seq, value_len) in &chunk {
                let cached = self.cache.as_ref().and_then(|c| c.peek(key, *seq));
                f(LiveKey {
                    key,
                    seq: *seq,
                    value_len: *value_len,
                    cached: cached.as_ref(),
                });
            }
            match chunk.pop() {
                Some((last, _, _)) if full => from = Bound::Excluded(last),
                _ => return,
            }
        }
    }
}

impl KeySource for Shared {
    fn for_each_key(&self, f: &mut dyn FnMut(LiveKey<'_>)) {
        Shared::for_each_key(self, f);
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("geometry", &self.geometry)
            .finish_non_exhaustive()
    }
}

/// The largest span a record read can need: the record plus a partial block at each end.
fn read_buf_len(block_size: u32) -> usize {
    usize_of(align_up(
        u64_of(format::RECORD_MAX) + 2 * u64::from(block_size),
        4096,
    ))
}

thread_local! {
    /// Each reading thread keeps one aligned buffer for direct-I/O reads.
    static READ_BUF: RefCell<Option<AlignedBuf>> = const { RefCell::new(None) };
}
