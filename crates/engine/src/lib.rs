//! hpkv's storage engine: a crash-safe log-structured key-value store on a dedicated block
//! device (or an image file).
//!
//! - Writes go through one committer thread (`writer`) that batches them (group commit),
//!   appends records to the active segment, writes them with direct I/O, flushes the device
//!   cache, then updates the index and answers every writer of the batch.
//! - Reads look the key up in the index (a short read lock), then read the value from the
//!   value cache or the device without holding any lock, so a reader never waits for another
//!   client's disk I/O. Segments being read are pinned so compaction cannot reuse them.
//! - Compaction (`compaction`) runs in the background, copying live records out of
//!   mostly-dead segments and erasing them.
//! - Opening a store (`recovery`) rebuilds the index from the log, or loads the snapshot a
//!   clean shutdown left (`snapshot`).
//!
//! DESIGN.md argues why every acknowledged write survives a crash at any instant, gives the
//! on-disk format byte by byte and the lock order.
//!
//! # Quick start
//!
//! ```
//! use hpkv_engine::{device, Config, Engine};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let image = dir.path().join("store.img");
//! device::create_image_if_missing(&image, 64 << 20)?; // a 64 MiB image file
//! let engine = Engine::open_path(&image, Config::default())?; // formats the blank image
//! engine.put(b"greeting", b"hello")?; // durable once it returns
//! assert_eq!(engine.get(b"greeting")?.as_deref(), Some(&b"hello"[..]));
//! engine.close()?; // leaves an index snapshot for a fast restart
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod cohort;
mod compaction;
mod config;
pub mod device;
mod error;
#[cfg(feature = "testkit")]
pub mod faulty;
mod flusher;
pub mod format;
mod index;
mod le;
mod lock;
mod num;
pub mod observe;
mod recovery;
mod segment;
mod snapshot;
mod space;
mod store;
mod sys;
mod writer;

use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

pub use config::{Config, Durability, Progress, ProgressSink, SYNC_SAFETY_NET};
pub use device::{BlockDevice, FileDevice, OpenDeviceError};
pub use error::{Corruption, Error, Incompatible, OpenError, VerifyError};
pub use format::uuid_string;
pub use observe::{Applied, Change, LiveKey, Observer, ObserverSink};
pub use writer::{
    validate_key, validate_puts, validate_value, Done, KeyValue, PutsDone, Records, WriteOp,
    PUTS_BYTES_MAX, PUTS_RECORDS_MAX, RECORD_OVERHEAD_BYTES,
};

use compaction::Compactor;
use index::Found;
use lock::{Level, OrderedMutex, OrderedRwLock};
use num::u64_of;
use store::{Counters, Shared};
use writer::{Queued, Writer};

/// Writes queued for the committer at most; submitters block beyond (backpressure).
const QUEUE_DEPTH_MAX: usize = 4096;
/// Records a scan fetches under one read lock.
const SCAN_CHUNK_RECORDS: usize = 64;
/// The longest a caller waits for the committer: to queue a write, for its answer, for
/// the shutdown. Past it the caller gets [`Error::TimedOut`] (logged); the write may still
/// be carried out.
pub const ANSWER_WAIT_MAX: Duration = Duration::from_secs(300);

/// The engine's numbers: the store's contents, its space, its cache and its activity since
/// it was opened. (The daemon adds its own and carries them as the ABI's STATS record.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live keys.
    pub records: u64,
    /// Sum of the live values' lengths (the module's "disk usage").
    pub disk_usage_bytes: u64,
    /// The device's size.
    pub device_size_bytes: u64,
    /// Bytes of the free segments, available for records.
    pub free_bytes: u64,
    /// Bytes of the segments in use.
    pub log_bytes: u64,
    /// Bytes of the live records, headers included.
    pub live_bytes: u64,
    /// Bytes of one segment.
    pub segment_size_bytes: u64,
    /// Segments on the device.
    pub segments_total: u64,
    /// Segments free.
    pub segments_free: u64,
    /// Bytes the value cache may hold.
    pub cache_capacity_bytes: u64,
    /// Bytes the value cache holds.
    pub cache_used_bytes: u64,
    /// Reads answered from the cache.
    pub cache_hits: u64,
    /// Reads that went to the device.
    pub cache_misses: u64,
    /// GETs.
    pub gets: u64,
    /// Puts.
    pub puts: u64,
    /// Appends.
    pub appends: u64,
    /// Deletes.
    pub deletes: u64,
    /// Purges.
    pub purges: u64,
    /// Write requests sent to the device.
    pub device_writes: u64,
    /// Cache flushes sent to the device.
    pub device_flushes: u64,
    /// Compaction rounds.
    pub compactions: u64,
    /// Bytes of live records compaction copied.
    pub compaction_bytes_moved: u64,
    /// Bytes compaction gave back.
    pub compaction_bytes_reclaimed: u64,
    /// Times a leader waited for more of the recent writers before committing a batch.
    pub gathers: u64,
    /// Microseconds leaders spent in those waits.
    pub gather_us: u64,
    /// Batches written while the device flushed an earlier one (pipelined group commit).
    pub overlapped_writes: u64,
    /// Milliseconds since the store was opened.
    pub uptime_ms: u64,
    /// Heap bytes of the index.
    pub index_heap_bytes: u64,
    /// Whether a device error stopped writes.
    pub read_only: bool,
}

/// A value and the sequence number of the write that stored it ([`Engine::get_versioned`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Versioned {
    /// The sequence number of the write that stored the value.
    pub seq: u64,
    /// The value.
    pub value: Arc<[u8]>,
}

/// An open store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Engine {
    shared: Arc<Shared>,
    compactor: Arc<Compactor>,
    writer: Arc<Writer>,
    /// The committer's queue; `None` once closed (lock level [`Level::Handle`]). A
    /// read-write lock: every write takes it to clone the sender, and concurrent writers
    /// must not contend for that (a contended mutex spins and yields the CPU first).
    tx: OrderedRwLock<Option<Sender<Queued>>>,
    threads: OrderedMutex<Vec<JoinHandle<()>>>,
}

/// The answer to a write submitted with a `Done` that sends it on `rx`, waited for at most
/// [`ANSWER_WAIT_MAX`]; `what` names the write in the log.
fn answer<T>(rx: &Receiver<Result<T, Error>>, what: &str) -> Result<T, Error> {
    match rx.recv_timeout(ANSWER_WAIT_MAX) {
        Ok(r) => r,
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
            log::error!("{what} got no answer within {ANSWER_WAIT_MAX:?}");
            Err(Error::TimedOut)
        }
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(Error::Closed),
    }
}

impl Engine {
    /// Opens the store on a block device or image file.
    ///
    /// # Errors
    /// [`OpenError`] when the device cannot be opened or holds no usable store.
    pub fn open_path(path: &Path, config: Config) -> Result<Engine, OpenError> {
        let dev = FileDevice::open(path).map_err(OpenError::Device)?;
        if !dev.is_direct() {
            log::warn!("{}: not using direct I/O", path.display());
        }
        Engine::open(Arc::new(dev), config)
    }

    /// Opens (or formats, as `config` allows) the store on `dev`.
    ///
    /// # Errors
    /// [`OpenError`] when the device holds no usable store or fails.
    pub fn open(dev: Arc<dyn BlockDevice>, config: Config) -> Result<Engine, OpenError> {
        let started = Instant::now();
        let rec = recovery::open_or_format(&*dev, &config)?;
        let shared = Arc::new(Shared::new(dev, config, rec.sb, rec.index, rec.space));
        let log = recovery::resume_log(&shared)?;
        let compactor = Arc::new(Compactor::new(shared.clone()));
        let (tx, rx) = bounded(QUEUE_DEPTH_MAX);
        let answers_out = Arc::new(writer::AnswerQueue::default());
        let writer = Arc::new(Writer::new(
            shared.clone(),
            compactor.clone(),
            rx,
            log,
            rec.next_seq,
            answers_out.clone(),
        ));
        let timer = writer.clone();
        let mut threads = vec![
            std::thread::Builder::new()
                .name("hpkv-commit".into())
                .spawn(move || timer.run_timer())?,
            std::thread::Builder::new()
                .name("hpkv-answer".into())
                .spawn(move || answers_out.run())?,
        ];
        if shared.config.background_compaction {
            let c = compactor.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("hpkv-compact".into())
                    .spawn(move || c.run())?,
            );
        }
        let records = shared.index.read().live_records();
        log::info!(
            "store {} open on {}: {records} records, {} segments of {} KiB, opened in {} ms",
            uuid_string(&shared.geometry.uuid),
            shared.disk.dev().describe(),
            shared.geometry.segment_count,
            shared.geometry.segment_size / 1024,
            started.elapsed().as_millis()
        );
        Ok(Engine {
            shared,
            compactor,
            writer,
            tx: OrderedRwLock::new(Level::Handle, Some(tx)),
            threads: OrderedMutex::new(Level::Handle, threads),
        })
    }

    /// The current value of `key`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad key length; [`Error::Io`] or [`Error::Corrupt`] when
    /// the device fails to give the value back.
    pub fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>, Error> {
        Ok(self.get_versioned(key)?.map(|v| v.value))
    }

    /// The current value of `key` with the sequence number of the write that stored it
    /// (the number an [`Observer`] was told).
    ///
    /// # Errors
    /// As [`Engine::get`].
    pub fn get_versioned(&self, key: &[u8]) -> Result<Option<Versioned>, Error> {
        validate_key(key)?;
        Counters::add(&self.shared.counters.gets, 1);
        let Some((found, _pin)) = self.shared.lookup_pinned(key) else {
            return Ok(None);
        };
        let value = self.shared.read_value(key, found)?;
        Ok(Some(Versioned {
            seq: found.seq,
            value,
        }))
    }

    /// Calls `f` for every live key, in key order, with its sequence number, its value's
    /// length and the value if the value cache holds it (no device read). Keys are copied
    /// out a chunk at a time: a write running alongside may or may not be seen (an
    /// [`Observer`] tells about those).
    pub fn for_each_key(&self, mut f: impl FnMut(LiveKey<'_>)) {
        self.shared.for_each_key(&mut f);
    }

    /// The length of the current value of `key`, without reading it.
    pub fn value_len(&self, key: &[u8]) -> Option<u32> {
        self.shared.index.read().get(key).map(|f| f.value_len)
    }

    /// Holds the committer until the returned hold is dropped: writes submitted meanwhile
    /// from other threads are queued, and committed as one batch when it is dropped. For
    /// tests that need a given batch; the holding thread must not submit (that would take
    /// the queue's lock inside the committer's, against the lock order).
    #[cfg(feature = "testkit")]
    pub fn hold_commits(&self) -> impl Drop + '_ {
        self.writer.hold()
    }

    /// Queues a write; `done` runs once it is acknowledged or refused: on this thread if no
    /// other is committing (then `submit` returns after the commit), else on the committing
    /// thread or the answer thread (then `submit` returns at once). Blocks while the queue is
    /// full (at most [`ANSWER_WAIT_MAX`], then `done` gets [`Error::TimedOut`]). `done` must
    /// not wait for another write: at shutdown it runs under the committer's lock.
    pub fn submit(&self, op: WriteOp, done: Done) {
        if let Err(e) = op.validate() {
            return done(Err(e));
        }
        if matches!(op, WriteOp::Sync) && self.shared.config.durability == Durability::Sync {
            // Everything acknowledged is already on stable media.
            return done(Ok(()));
        }
        self.enqueue(Queued::One(op, done));
    }

    /// Queues a batch of puts, stored in order (a later duplicate key wins) in one group
    /// commit: in `Sync` mode one flush covers them all. `done` runs once every record is
    /// acknowledged, with the number stored: all of them, or when the device filled in the
    /// middle the first ones (then ENOSPC if none). A crash before the answer may leave any
    /// first records of the batch. Otherwise as [`Engine::submit`].
    pub fn submit_puts(&self, records: Records, done: PutsDone) {
        if let Err(e) = validate_puts(&records) {
            return done(Err(e));
        }
        self.enqueue(Queued::Puts(records, done));
    }

    /// Hands a write to the committer, leading it if no other thread does.
    fn enqueue(&self, queued: Queued) {
        // Clone the sender so that a full queue blocks only this submitter.
        let tx = self.tx.read().clone();
        let Some(tx) = tx else {
            return queued.refuse(Error::Closed);
        };
        // try_send first: send_timeout reads the clock for its deadline, which under
        // emulation is a system call per write.
        let queued = match tx.try_send(queued) {
            Ok(()) => return self.writer.lead(),
            Err(crossbeam_channel::TrySendError::Disconnected(queued)) => {
                return queued.refuse(Error::Closed)
            }
            Err(crossbeam_channel::TrySendError::Full(queued)) => queued,
        };
        match tx.send_timeout(queued, ANSWER_WAIT_MAX) {
            Ok(()) => self.writer.lead(),
            Err(crossbeam_channel::SendTimeoutError::Timeout(queued)) => {
                log::error!("the write queue stayed full for {ANSWER_WAIT_MAX:?}");
                queued.refuse(Error::TimedOut);
            }
            Err(crossbeam_channel::SendTimeoutError::Disconnected(queued)) => {
                queued.refuse(Error::Closed);
            }
        }
    }

    /// Stores a batch of records ([`Engine::submit_puts`]) and waits for the answer: the
    /// number stored.
    ///
    /// ```
    /// # use hpkv_engine::{device, Config, Engine};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let image = dir.path().join("store.img");
    /// # device::create_image_if_missing(&image, 64 << 20).unwrap();
    /// # let engine = Engine::open_path(&image, Config::default()).unwrap();
    /// let stored = engine.put_many(&[(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])?;
    /// assert_eq!(stored, 3);
    /// assert_eq!(engine.get(b"a")?.as_deref(), Some(&b"3"[..]));
    /// # Ok::<(), hpkv_engine::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Invalid`] for a batch out of bounds (nothing stored); [`Error::NoSpace`]
    /// when not even the first record fitted; as [`Engine::put`].
    pub fn put_many<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        records: &[(K, V)],
    ) -> Result<usize, Error> {
        let records: Records = records
            .iter()
            .map(|(k, v)| (k.as_ref().into(), v.as_ref().into()))
            .collect();
        let (tx, rx) = bounded(1);
        self.submit_puts(records, Box::new(move |r| drop(tx.send(r))));
        answer(&rx, "a batch")
    }

    /// Submits and waits for the outcome (at most [`ANSWER_WAIT_MAX`]).
    ///
    /// # Errors
    /// The write's refusal ([`Error`]).
    pub fn execute(&self, op: WriteOp) -> Result<(), Error> {
        let (tx, rx) = bounded(1);
        self.submit(op, Box::new(move |r| drop(tx.send(r))));
        answer(&rx, "a write")
    }

    /// Inserts or overwrites `key`.
    ///
    /// # Errors
    /// [`Error::Invalid`], [`Error::NoSpace`], [`Error::Io`], [`Error::ReadOnly`],
    /// [`Error::Closed`].
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.execute(WriteOp::Put {
            key: key.into(),
            value: value.into(),
        })
    }

    /// Appends `suffix` to the value of `key` (creating it if missing).
    ///
    /// # Errors
    /// As [`Engine::put`], and [`Error::TooLarge`] past the value limit.
    pub fn append(&self, key: &[u8], suffix: &[u8]) -> Result<(), Error> {
        self.execute(WriteOp::Append {
            key: key.into(),
            suffix: suffix.into(),
        })
    }

    /// Deletes `key`.
    ///
    /// # Errors
    /// [`Error::NotFound`] if it has no value; otherwise as [`Engine::put`].
    pub fn delete(&self, key: &[u8]) -> Result<(), Error> {
        self.execute(WriteOp::Delete { key: key.into() })
    }

    /// Removes every record, atomically.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::ReadOnly`], [`Error::Closed`].
    pub fn purge(&self) -> Result<(), Error> {
        self.execute(WriteOp::Purge)
    }

    /// Returns once every write acknowledged before the call is on stable media.
    ///
    /// # Errors
    /// [`Error::Io`] when the flush fails.
    pub fn sync(&self) -> Result<(), Error> {
        self.execute(WriteOp::Sync)
    }

    /// Calls `f` with each record whose key is within the bounds, in key order, until it
    /// breaks. Records are read in chunks; each chunk is a consistent view, and a scan
    /// running alongside writes sees each key at most once, at its value at some instant
    /// during the scan.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corrupt`] when a value cannot be read.
    pub fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let mut from: Bound<Vec<u8>> = start.map(<[u8]>::to_vec);
        loop {
            let mut chunk: Vec<(Box<[u8]>, Found)> = Vec::with_capacity(SCAN_CHUNK_RECORDS);
            let mut pins = Vec::with_capacity(SCAN_CHUNK_RECORDS);
            {
                let index = self.shared.index.read();
                index.for_each_live(from.as_ref().map(Vec::as_slice), end, |e| {
                    let found = Found {
                        seq: e.seq,
                        loc: e.loc,
                        value_len: e.value_len,
                    };
                    chunk.push((e.key().into(), found));
                    pins.push(self.shared.segments.pin(e.loc.segment));
                    if chunk.len() == SCAN_CHUNK_RECORDS {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
            }
            let full = chunk.len() == SCAN_CHUNK_RECORDS;
            for (key, found) in &chunk {
                let value = self.shared.read_value(key, *found)?;
                if f(key, &value).is_break() {
                    return Ok(());
                }
            }
            match chunk.pop() {
                Some((last, _)) if full => from = Bound::Excluded(last.into_vec()),
                _ => return Ok(()),
            }
        }
    }

    /// The engine's numbers now.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let (records, disk_usage_bytes, live_bytes, index_heap_bytes) = {
            let ix = s.index.read();
            (
                ix.live_records(),
                ix.live_value_bytes(),
                ix.total_live_bytes(),
                ix.heap_bytes(),
            )
        };
        let segments_free = u64_of(s.segments.free_count());
        let segments_total = u64::from(s.geometry.segment_count);
        let c = &s.counters;
        let cache = s.cache.as_ref();
        Stats {
            records,
            disk_usage_bytes,
            device_size_bytes: s.disk.dev().size_bytes(),
            free_bytes: segments_free * s.geometry.segment_capacity(),
            log_bytes: (segments_total - segments_free) * s.geometry.segment_size,
            live_bytes,
            segment_size_bytes: s.geometry.segment_size,
            segments_total,
            segments_free,
            cache_capacity_bytes: cache.map_or(0, cache::ValueCache::capacity_bytes),
            cache_used_bytes: cache.map_or(0, cache::ValueCache::used_bytes),
            cache_hits: cache.map_or(0, cache::ValueCache::hits),
            cache_misses: cache.map_or(0, cache::ValueCache::misses),
            gets: Counters::get(&c.gets),
            puts: Counters::get(&c.puts),
            appends: Counters::get(&c.appends),
            deletes: Counters::get(&c.deletes),
            purges: Counters::get(&c.purges),
            device_writes: s.disk.writes(),
            device_flushes: s.disk.flushes(),
            compactions: Counters::get(&c.compactions),
            compaction_bytes_moved: Counters::get(&c.compaction_bytes_moved),
            compaction_bytes_reclaimed: Counters::get(&c.compaction_bytes_reclaimed),
            gathers: Counters::get(&c.gathers),
            gather_us: Counters::get(&c.gather_us),
            overlapped_writes: Counters::get(&c.overlapped_writes),
            uptime_ms: u64::try_from(s.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            index_heap_bytes,
            read_only: s.disk.is_read_only(),
        }
    }

    /// Runs compaction until its policy is satisfied (`aggressive`: until no segment has
    /// garbage). For tests and maintenance; normally it runs by itself. Returns the rounds.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corrupt`] from a round.
    pub fn compact_now(&self, aggressive: bool) -> Result<u64, Error> {
        let mut n = 0;
        while self.compactor.compact_once(aggressive)? {
            n += 1;
        }
        Ok(n)
    }

    /// Checks the index's internal invariants (tests); panics on a violation.
    pub fn check_invariants(&self) {
        self.shared.index.read().check_invariants();
    }

    /// Rebuilds an index from what the device holds now, as recovery would after a crash
    /// that lost nothing, and compares it with the live index, dead-record counts included.
    /// For tests on a quiet store (no writes or compaction under way).
    ///
    /// # Errors
    /// [`VerifyError`]: the first difference found.
    pub fn verify_against_disk(&self) -> Result<(), VerifyError> {
        let _compaction = self.compactor.lock_state();
        let sb = *self.shared.sb.lock();
        let config = Config {
            progress: None,
            ..self.shared.config.clone()
        };
        let scanned =
            recovery::scan(&**self.shared.disk.dev(), &sb, &config).map_err(VerifyError::Scan)?;
        let live = self.shared.index.read();
        if scanned.index.len() != live.len() {
            return Err(VerifyError::KeyCount {
                disk: scanned.index.len(),
                index: live.len(),
            });
        }
        for e in live.iter_all() {
            let Some(d) = scanned.index.entry(e.key()) else {
                return Err(VerifyError::Missing {
                    key: e.key().to_vec(),
                });
            };
            let index = (e.seq, e.value_len, e.is_tombstone(), e.dead());
            let disk = (d.seq, d.value_len, d.is_tombstone(), d.dead());
            if index != disk {
                let key = e.key().to_vec();
                return Err(VerifyError::Differs { key, index, disk });
            }
        }
        Ok(())
    }

    /// The store's UUID as text.
    pub fn uuid(&self) -> String {
        uuid_string(&self.shared.geometry.uuid)
    }

    /// The device under the store.
    pub fn device(&self) -> Arc<dyn BlockDevice> {
        self.shared.disk.dev().clone()
    }

    /// Stops accepting writes, finishes those queued, flushes, stops compaction and leaves
    /// an index snapshot for a fast restart. Reads keep working; later writes answer
    /// [`Error::Closed`]. Closing twice is harmless.
    ///
    /// # Errors
    /// The final flush's or the snapshot's failure; [`Error::TimedOut`] when the committer
    /// does not finish within [`ANSWER_WAIT_MAX`] (then nothing else is done).
    pub fn close(&self) -> Result<(), Error> {
        let Some(tx) = self.tx.write().take() else {
            return Ok(());
        };
        drop(tx);
        let committed = self.writer.close(ANSWER_WAIT_MAX);
        if let Err(Error::TimedOut) = committed {
            return Err(Error::TimedOut);
        }
        self.writer.stop();
        self.compactor.stop();
        let threads: Vec<_> = self.threads.lock().drain(..).collect();
        for h in threads {
            if h.join().is_err() {
                log::error!("an engine thread panicked");
            }
        }
        self.compactor.seal_output();
        let next_seq = committed?;
        if !self.shared.disk.is_read_only() {
            snapshot::write_at_shutdown(&self.shared, next_seq)?;
        }
        log::info!("store {} closed", self.uuid());
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::error!("closing the store: {e}");
        }
    }
}
