//! The storage engine: a log-structured key-value store on a dedicated block device.
//!
//! - Writes go through one committer thread ([`writer`]) that batches them (group commit),
//!   appends records to the active segment, writes them with direct I/O, flushes the device
//!   cache, then updates the index and answers every writer of the batch.
//! - Reads look the key up in the index (a short read lock), then read the value from the
//!   value cache or the device without holding any lock, so a reader never waits for another
//!   client's disk I/O. Segments being read are pinned so compaction cannot reuse them.
//! - Compaction ([`compaction`]) runs in the background, copying live records out of
//!   mostly-dead segments and erasing them.
//! - Opening a store ([`recovery`]) rebuilds the index from the log, or loads the snapshot a
//!   clean shutdown left ([`snapshot`]).
//!
//! DESIGN.md argues why every acknowledged write survives a crash at any instant.
#![deny(unsafe_code)]
// Lint debt (issue 12), paid down crate by crate: a lint leaves this list once it is clean.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_lossless,
    clippy::doc_markdown,
    clippy::used_underscore_binding,
    clippy::missing_errors_doc,
    clippy::semicolon_if_nothing_returned,
    clippy::cast_possible_wrap,
    clippy::return_self_not_must_use,
    clippy::borrow_as_ptr,
    clippy::redundant_closure_for_method_calls,
    clippy::ignored_unit_patterns,
    clippy::too_many_lines,
    clippy::needless_continue,
    clippy::single_match_else,
    clippy::ptr_as_ptr,
    clippy::cast_sign_loss,
    clippy::struct_excessive_bools,
    clippy::similar_names,
    clippy::ptr_cast_constness,
    clippy::match_wild_err_arm,
    clippy::match_same_arms,
    clippy::default_trait_access,
    clippy::cast_precision_loss,
    clippy::items_after_statements,
    clippy::zero_sized_map_values,
    clippy::unreadable_literal,
    clippy::unnecessary_debug_formatting,
    clippy::needless_pass_by_value,
    clippy::ignore_without_reason,
    clippy::format_push_string,
    clippy::match_bool,
    clippy::format_collect,
    clippy::many_single_char_names,
    clippy::float_cmp,
    clippy::unused_self,
    clippy::struct_field_names,
    clippy::map_unwrap_or
)]

pub mod cache;
pub mod device;
#[cfg(feature = "testkit")]
pub mod faulty;
pub mod format;
pub mod index;
pub mod observe;
pub mod space;

mod compaction;
mod le;
mod recovery;
mod snapshot;
mod sys;
mod writer;

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use parking_lot::{Condvar, Mutex, RwLock};

pub use device::{BlockDevice, FileDevice, OpenDeviceError};
pub use observe::{Applied, Change, LiveKey, Observer, ObserverSink};
pub use writer::WriteOp;

use cache::ValueCache;
use device::{align_down, align_up, AlignedBuf};
use format::{Superblock, KEY_MAX, RECORD_HEADER_LEN, VALUE_MAX};
use index::{Found, Index};
use space::Space;

/// How long a write waits for compaction to free space before it answers ENOSPC.
const SPACE_WAIT_MAX: Duration = Duration::from_secs(2);
/// Writes queued for the committer at most; submitters block beyond (backpressure).
const QUEUE_DEPTH_MAX: usize = 4096;
/// Records a scan fetches under one read lock.
const SCAN_CHUNK_RECORDS: usize = 64;

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Once it is on stable media: written and the device cache flushed. Writers that
    /// arrive together share one flush (group commit).
    Sync,
    /// Once the device has it (written, not yet flushed). The device cache is flushed at
    /// most `max_delay` after the oldest unflushed write, after `max_writes` writes, on
    /// SYNC and at shutdown. A power loss can lose what was not flushed yet.
    WriteBehind {
        max_delay: Duration,
        max_writes: u32,
    },
}

impl Durability {
    /// The module's bounds: 30 s or 1024 writes.
    pub const MODULE_WRITE_BEHIND: Durability = Durability::WriteBehind {
        max_delay: Duration::from_secs(30),
        max_writes: 1024,
    };
}

#[derive(Clone, Debug)]
pub struct Config {
    pub durability: Durability,
    /// Bytes of values to keep in memory; 0 turns the cache off.
    pub cache_bytes: u64,
    /// Format a device whose first 40 KiB are zero.
    pub initialize_if_empty: bool,
    /// Format the device even if it holds data.
    pub force_initialize: bool,
    /// Rebuild the index by scanning the whole log, even if a snapshot is there.
    pub force_read_disk: bool,
    /// Compact in the background (tests turn it off to drive compaction by hand).
    pub background_compaction: bool,
    /// Told how long operations (the recovery scan) advance, to show them to a person.
    pub progress: Option<ProgressSink>,
    /// Told about every applied write before it is acknowledged ([`observe`]).
    pub observer: Option<ObserverSink>,
}

/// Receives the progress of a long operation, for a progress bar or a log line. The engine
/// itself draws nothing.
pub trait Progress: Send + Sync {
    /// An operation of `total` steps begins; `what` names it ("recovering").
    fn start(&self, what: &str, total: u64);
    /// `done` steps of the current operation are finished; `note` says what was found so far.
    fn advance(&self, done: u64, note: &str);
    /// The operation is over.
    fn finish(&self);
}

/// A shared [`Progress`] for [`Config`].
#[derive(Clone)]
pub struct ProgressSink(pub Arc<dyn Progress>);

impl fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressSink")
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            durability: Durability::Sync,
            cache_bytes: 64 << 20,
            initialize_if_empty: true,
            force_initialize: false,
            force_read_disk: false,
            background_compaction: true,
            progress: None,
            observer: None,
        }
    }
}

/// Why an operation failed. [`Error::errno`] gives the errno the ABI names.
#[derive(Clone, Debug)]
pub enum Error {
    NotFound,
    /// A key or value length out of bounds.
    Invalid(&'static str),
    /// An append whose result would pass the value limit.
    TooLarge,
    /// The device is full; reads and deletes still work.
    NoSpace,
    /// The device failed.
    Io(Arc<io::Error>),
    /// An earlier device failure stopped all writes until hpkvd restarts.
    ReadOnly,
    /// A record failed its checksum.
    Corrupt(String),
    /// The engine is shutting down.
    Closed,
}

impl Error {
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound => libc::ENOENT,
            Error::Invalid(_) => libc::EINVAL,
            Error::TooLarge => libc::EMSGSIZE,
            Error::NoSpace => libc::ENOSPC,
            Error::Io(e) if e.raw_os_error() == Some(libc::ENOSPC) => libc::ENOSPC,
            Error::Io(_) | Error::ReadOnly | Error::Corrupt(_) | Error::Closed => libc::EIO,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("no such key"),
            Error::Invalid(what) => write!(f, "invalid argument: {what}"),
            Error::TooLarge => write!(f, "the value would exceed {VALUE_MAX} bytes"),
            Error::NoSpace => f.write_str("the device is full"),
            Error::Io(e) => write!(f, "device error: {e}"),
            Error::ReadOnly => f.write_str("an earlier device error stopped writes; restart hpkvd"),
            Error::Corrupt(what) => write!(f, "corrupt record: {what}"),
            Error::Closed => f.write_str("the store is shutting down"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(Arc::new(e))
    }
}

/// Why a store could not be opened.
#[derive(Debug)]
pub enum OpenError {
    Device(OpenDeviceError),
    /// The device holds data that is not an hpkv store (the module: ENOTEMPTY).
    ForeignData,
    /// The device is blank and `initialize_if_empty` is off.
    Blank,
    TooSmall {
        size_bytes: u64,
        min_bytes: u64,
    },
    Incompatible(String),
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Device(e) => write!(f, "{e}"),
            OpenError::ForeignData => f.write_str(
                "the device holds data that is not an hpkv store; refusing to format it \
                 (use --force-initialize to erase it)",
            ),
            OpenError::Blank => f.write_str("the device is blank and --initialize-if-empty is off"),
            OpenError::TooSmall {
                size_bytes,
                min_bytes,
            } => {
                write!(
                    f,
                    "the device has {size_bytes} bytes; a store needs at least {min_bytes}"
                )
            }
            OpenError::Incompatible(why) => write!(f, "cannot open this store: {why}"),
            OpenError::Io(e) => write!(f, "device error while opening: {e}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> OpenError {
        OpenError::Io(e)
    }
}

/// The engine's numbers: the store's contents, its space, its cache and its activity since
/// it was opened. (The daemon adds its own and carries them as the ABI's STATS record.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live keys.
    pub records: u64,
    /// Sum of the live values' lengths (the module's "disk usage").
    pub disk_usage_bytes: u64,
    pub device_size_bytes: u64,
    /// Bytes of the free segments, available for records.
    pub free_bytes: u64,
    /// Bytes of the segments in use.
    pub log_bytes: u64,
    /// Bytes of the live records, headers included.
    pub live_bytes: u64,
    pub segment_size_bytes: u64,
    pub segments_total: u64,
    pub segments_free: u64,
    pub cache_capacity_bytes: u64,
    pub cache_used_bytes: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub gets: u64,
    pub puts: u64,
    pub appends: u64,
    pub deletes: u64,
    pub purges: u64,
    pub device_writes: u64,
    pub device_flushes: u64,
    pub compactions: u64,
    pub compaction_bytes_moved: u64,
    pub compaction_bytes_reclaimed: u64,
    pub uptime_ms: u64,
    /// Heap bytes of the index.
    pub index_heap_bytes: u64,
    /// Whether a device error stopped writes.
    pub read_only: bool,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    pub appends: AtomicU64,
    pub deletes: AtomicU64,
    pub purges: AtomicU64,
    pub device_writes: AtomicU64,
    pub device_flushes: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_bytes_moved: AtomicU64,
    pub compaction_bytes_reclaimed: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// State shared by the committer, compaction and readers.
pub(crate) struct Shared {
    pub dev: Arc<dyn BlockDevice>,
    pub config: Config,
    pub uuid: [u8; 16],
    /// CRC seed of this store's records ([`format::store_seed`]).
    pub seed: u32,
    pub block_size: u32,
    pub segment_size: u64,
    pub segment_count: u32,
    pub sb: Mutex<Superblock>,
    pub index: RwLock<Index>,
    pub space: Mutex<Space>,
    /// Signalled when compaction frees a segment.
    pub space_freed: Condvar,
    /// Readers in each segment: a pinned segment is not reused.
    pub pins: Box<[AtomicU32]>,
    pub cache: Option<ValueCache>,
    pub compaction: Mutex<compaction::CompactionState>,
    pub compaction_kick: (std::sync::Mutex<bool>, std::sync::Condvar),
    pub stopping: AtomicBool,
    pub read_only: AtomicBool,
    /// The next sequence number (owned by the committer; read by snapshots and stats).
    pub next_seq: AtomicU64,
    pub counters: Counters,
    pub started: Instant,
}

impl Shared {
    pub fn segment_base(&self, segment: u32) -> u64 {
        format::DATA_OFFSET + segment as u64 * self.segment_size
    }

    /// Bytes of a segment available for records.
    pub fn segment_capacity(&self) -> u64 {
        self.segment_size - self.block_size as u64
    }

    pub fn device_write(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        Counters::add(&self.counters.device_writes, 1);
        self.dev.write_at(buf, offset)
    }

    pub fn device_flush(&self) -> io::Result<()> {
        Counters::add(&self.counters.device_flushes, 1);
        self.dev.flush()
    }

    /// Stops all writes after a device failure: what was acknowledged stays readable, and a
    /// restart recovers the truth from the disk.
    pub fn enter_read_only(&self, why: &dyn fmt::Display) {
        if !self.read_only.swap(true, Ordering::SeqCst) {
            log::error!("device error: {why}; no more writes are accepted until hpkvd restarts");
        }
    }

    pub fn kick_compaction(&self) {
        let (lock, cv) = &self.compaction_kick;
        *lock.lock().expect("poisoned") = true;
        cv.notify_one();
    }

    /// Looks `key` up and pins the segment of its record until the guard drops.
    fn lookup_pinned(&self, key: &[u8]) -> Option<(Found, Pin<'_>)> {
        let index = self.index.read();
        let found = index.get(key)?;
        Some((found, Pin::new(&self.pins[found.loc.segment as usize])))
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
        let bs = self.block_size as u64;
        let len = format::record_len(key.len(), found.value_len as usize) as u64;
        let at = self.segment_base(found.loc.segment) + found.loc.offset as u64;
        let (start, end) = (align_down(at, bs), align_up(at + len, bs));
        READ_BUF.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|b| b.len() < (end - start) as usize) {
                *slot = Some(AlignedBuf::zeroed(read_buf_len(self.block_size))?);
            }
            let buf = slot.as_mut().expect("just filled");
            let span = &mut buf[..(end - start) as usize];
            self.dev.read_at(span, start)?;
            let rec = &span[(at - start) as usize..(at - start + len) as usize];
            match format::decode_record_any_incarnation(rec, self.seed) {
                Ok((_, r)) if r.seq == found.seq && r.key == key && r.kind == format::Kind::Put => Ok(Arc::from(r.value)),
                _ => {
                    let what = format!(
                        "the record of a {}-byte key at segment {} offset {} does not match the index",
                        key.len(),
                        found.loc.segment,
                        found.loc.offset
                    );
                    log::error!("{what}");
                    Err(Error::Corrupt(what))
                }
            }
        })
    }
}

/// The largest span a record read can need: the record plus a partial block at each end.
fn read_buf_len(block_size: u32) -> usize {
    align_up(format::RECORD_MAX as u64 + 2 * block_size as u64, 4096) as usize
}

thread_local! {
    /// Each reading thread keeps one aligned buffer for direct-I/O reads.
    static READ_BUF: RefCell<Option<AlignedBuf>> = const { RefCell::new(None) };
}

/// A reader's hold on a segment.
pub(crate) struct Pin<'a>(&'a AtomicU32);

impl<'a> Pin<'a> {
    pub fn new(count: &'a AtomicU32) -> Pin<'a> {
        count.fetch_add(1, Ordering::AcqRel);
        Pin(count)
    }
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A value and the sequence number of the write that stored it ([`Engine::get_versioned`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub seq: u64,
    pub value: Arc<[u8]>,
}

/// Called with the outcome of a write once it is acknowledged (or refused).
pub type Done = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// An open store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Engine {
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<writer::Msg>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

pub fn validate_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() || key.len() > KEY_MAX {
        return Err(Error::Invalid("key length must be 1 to 512 bytes"));
    }
    Ok(())
}

pub fn validate_value(value: &[u8]) -> Result<(), Error> {
    if value.is_empty() || value.len() > VALUE_MAX {
        return Err(Error::Invalid("value length must be 1 to 102400 bytes"));
    }
    Ok(())
}

impl Engine {
    /// Opens the store on a block device or image file.
    pub fn open_path(path: &Path, config: Config) -> Result<Engine, OpenError> {
        let dev = FileDevice::open(path).map_err(OpenError::Device)?;
        if !dev.is_direct() {
            log::warn!("{}: not using direct I/O", path.display());
        }
        Engine::open(Arc::new(dev), config)
    }

    /// Opens (or formats, as `config` allows) the store on `dev`.
    pub fn open(dev: Arc<dyn BlockDevice>, config: Config) -> Result<Engine, OpenError> {
        let started = Instant::now();
        let rec = recovery::open_or_format(&*dev, &config)?;
        let sb = rec.sb;
        let cache = ValueCache::new(config.cache_bytes);
        let shared = Arc::new(Shared {
            dev,
            uuid: sb.uuid,
            seed: format::store_seed(&sb.uuid),
            block_size: sb.block_size,
            segment_size: sb.segment_size,
            segment_count: sb.segment_count,
            sb: Mutex::new(sb),
            index: RwLock::new(rec.index),
            space: Mutex::new(rec.space),
            space_freed: Condvar::new(),
            pins: (0..sb.segment_count).map(|_| AtomicU32::new(0)).collect(),
            cache,
            compaction: Mutex::new(compaction::CompactionState::default()),
            compaction_kick: (std::sync::Mutex::new(false), std::sync::Condvar::new()),
            stopping: AtomicBool::new(false),
            read_only: AtomicBool::new(false),
            next_seq: AtomicU64::new(rec.next_seq),
            counters: Counters::default(),
            started,
            config,
        });
        let log = recovery::resume_log(&shared).map_err(OpenError::Io)?;
        let (tx, rx) = bounded(QUEUE_DEPTH_MAX);
        let committer = writer::Committer::new(shared.clone(), rx, log);
        let committer = std::thread::Builder::new()
            .name("hpkv-commit".into())
            .spawn(move || committer.run())
            .map_err(OpenError::Io)?;
        let mut threads = vec![committer];
        if shared.config.background_compaction {
            let s = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("hpkv-compact".into())
                    .spawn(move || compaction::run(&s))
                    .map_err(OpenError::Io)?,
            );
        }
        let stats = {
            let ix = shared.index.read();
            (ix.live_records(), ix.len())
        };
        log::info!(
            "store {} open on {}: {} records, {} segments of {} KiB, opened in {} ms",
            uuid_string(&shared.uuid),
            shared.dev.describe(),
            stats.0,
            shared.segment_count,
            shared.segment_size / 1024,
            started.elapsed().as_millis()
        );
        Ok(Engine {
            shared,
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        })
    }

    /// The current value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>, Error> {
        Ok(self.get_versioned(key)?.map(|v| v.value))
    }

    /// The current value of `key` with the sequence number of the write that stored it
    /// (the number an [`Observer`] was told).
    pub fn get_versioned(&self, key: &[u8]) -> Result<Option<Versioned>, Error> {
        validate_key(key)?;
        Counters::add(&self.shared.counters.gets, 1);
        let Some((found, _pin)) = self.shared.lookup_pinned(key) else {
            return Ok(None);
        };
        self.shared.read_value(key, found).map(|value| {
            Some(Versioned {
                seq: found.seq,
                value,
            })
        })
    }

    /// Calls `f` for every live key, in key order, with its sequence number, its value's
    /// length and the value if the value cache holds it (no device read). Keys are copied
    /// out a chunk at a time: a write running alongside may or may not be seen (an
    /// [`Observer`] tells about those).
    pub fn for_each_key(&self, f: impl FnMut(LiveKey<'_>)) {
        observe::for_each_key(&self.shared, f);
    }

    /// The length of the current value of `key`, without reading it.
    pub fn value_len(&self, key: &[u8]) -> Option<u32> {
        self.shared.index.read().get(key).map(|f| f.value_len)
    }

    /// Queues a write; `done` runs on the committer thread once it is acknowledged or
    /// refused. Blocks while the queue is full.
    pub fn submit(&self, op: WriteOp, done: Done) {
        if let Err(e) = op.validate() {
            return done(Err(e));
        }
        if matches!(op, WriteOp::Sync) && self.shared.config.durability == Durability::Sync {
            // Everything acknowledged is already on stable media.
            return done(Ok(()));
        }
        // Clone the sender so that a full queue blocks only this submitter.
        let tx = self.tx.lock().clone();
        match tx {
            Some(tx) => {
                if let Err(crossbeam_channel::SendError(writer::Msg::Op(_, done))) =
                    tx.send(writer::Msg::Op(op, done))
                {
                    done(Err(Error::Closed));
                }
            }
            None => done(Err(Error::Closed)),
        }
    }

    /// Submits and waits for the outcome.
    pub fn execute(&self, op: WriteOp) -> Result<(), Error> {
        let (tx, rx) = bounded(1);
        self.submit(op, Box::new(move |r| drop(tx.send(r))));
        rx.recv().unwrap_or(Err(Error::Closed))
    }

    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.execute(WriteOp::Put {
            key: key.into(),
            value: value.into(),
        })
    }

    /// Appends `suffix` to the value of `key` (creating it if missing).
    pub fn append(&self, key: &[u8], suffix: &[u8]) -> Result<(), Error> {
        self.execute(WriteOp::Append {
            key: key.into(),
            suffix: suffix.into(),
        })
    }

    /// Deletes `key`; [`Error::NotFound`] if it has no value.
    pub fn delete(&self, key: &[u8]) -> Result<(), Error> {
        self.execute(WriteOp::Delete { key: key.into() })
    }

    /// Removes every record, atomically.
    pub fn purge(&self) -> Result<(), Error> {
        self.execute(WriteOp::Purge)
    }

    /// Returns once every write acknowledged before the call is on stable media.
    pub fn sync(&self) -> Result<(), Error> {
        self.execute(WriteOp::Sync)
    }

    /// Calls `f` with each record whose key is within the bounds, in key order, until it
    /// breaks. Records are read in chunks; each chunk is a consistent view, and a scan
    /// running alongside writes sees each key at most once, at its value at some instant
    /// during the scan.
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
                    chunk.push((
                        e.key().into(),
                        Found {
                            seq: e.seq,
                            loc: e.loc,
                            value_len: e.value_len,
                        },
                    ));
                    pins.push(Pin::new(&self.shared.pins[e.loc.segment as usize]));
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
        let segments_free = s.space.lock().free_count() as u64;
        let c = &s.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            records,
            disk_usage_bytes,
            device_size_bytes: s.dev.size_bytes(),
            free_bytes: segments_free * s.segment_capacity(),
            log_bytes: (s.segment_count as u64 - segments_free) * s.segment_size,
            live_bytes,
            segment_size_bytes: s.segment_size,
            segments_total: s.segment_count as u64,
            segments_free,
            cache_capacity_bytes: s.cache.as_ref().map_or(0, |c| c.capacity_bytes()),
            cache_used_bytes: s.cache.as_ref().map_or(0, |c| c.used_bytes()),
            cache_hits: s.cache.as_ref().map_or(0, |c| c.hits()),
            cache_misses: s.cache.as_ref().map_or(0, |c| c.misses()),
            gets: get(&c.gets),
            puts: get(&c.puts),
            appends: get(&c.appends),
            deletes: get(&c.deletes),
            purges: get(&c.purges),
            device_writes: get(&c.device_writes),
            device_flushes: get(&c.device_flushes),
            compactions: get(&c.compactions),
            compaction_bytes_moved: get(&c.compaction_bytes_moved),
            compaction_bytes_reclaimed: get(&c.compaction_bytes_reclaimed),
            uptime_ms: s.started.elapsed().as_millis() as u64,
            index_heap_bytes,
            read_only: s.read_only.load(Ordering::Relaxed),
        }
    }

    /// Runs compaction until its policy is satisfied (`aggressive`: until no segment has
    /// garbage). For tests and maintenance; normally it runs by itself.
    pub fn compact_now(&self, aggressive: bool) -> Result<u64, Error> {
        let mut n = 0;
        while compaction::compact_once(&self.shared, aggressive)? {
            n += 1;
        }
        Ok(n)
    }

    /// Checks internal invariants (tests).
    pub fn check_invariants(&self) {
        self.shared.index.read().check_invariants();
    }

    /// Rebuilds an index from what the device holds now, as recovery would after a crash
    /// that lost nothing, and compares it with the live index, dead-record counts included.
    /// For tests on a quiet store (no writes or compaction under way).
    pub fn verify_against_disk(&self) -> Result<(), String> {
        let _compaction = self.shared.compaction.lock();
        let sb = *self.shared.sb.lock();
        let config = Config {
            progress: None,
            ..self.shared.config.clone()
        };
        let scanned = recovery::scan(&*self.shared.dev, &sb, &config).map_err(|e| e.to_string())?;
        let live = self.shared.index.read();
        if scanned.index.len() != live.len() {
            return Err(format!(
                "the disk holds {} keys, the index {}",
                scanned.index.len(),
                live.len()
            ));
        }
        for e in live.iter_all() {
            let Some(d) = scanned.index.entry(e.key()) else {
                return Err(format!(
                    "key {:?} is in the index but not on disk",
                    String::from_utf8_lossy(e.key())
                ));
            };
            let a = (e.seq, e.value_len, e.is_tombstone(), e.dead());
            let b = (d.seq, d.value_len, d.is_tombstone(), d.dead());
            if a != b {
                return Err(format!(
                    "key {:?}: index (seq, len, tombstone, dead) = {a:?}, disk {b:?}",
                    String::from_utf8_lossy(e.key())
                ));
            }
        }
        Ok(())
    }

    pub fn uuid(&self) -> String {
        uuid_string(&self.shared.uuid)
    }

    pub fn device(&self) -> Arc<dyn BlockDevice> {
        self.shared.dev.clone()
    }

    /// Stops accepting writes, finishes those queued, flushes, stops compaction and leaves
    /// an index snapshot for a fast restart. Reads keep working; later writes answer
    /// [`Error::Closed`]. Closing twice is harmless.
    pub fn close(&self) -> Result<(), Error> {
        let Some(tx) = self.tx.lock().take() else {
            return Ok(());
        };
        let (ack_tx, ack_rx) = bounded(1);
        let _ = tx.send(writer::Msg::Shutdown(ack_tx));
        drop(tx);
        let committed = ack_rx.recv().unwrap_or(Err(Error::Closed));
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.kick_compaction();
        for h in self.threads.lock().drain(..) {
            let _ = h.join();
        }
        compaction::seal_output(&self.shared);
        committed?;
        if !self.shared.read_only.load(Ordering::SeqCst) {
            snapshot::write_at_shutdown(&self.shared)?;
        }
        log::info!("store {} closed", uuid_string(&self.shared.uuid));
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

pub fn uuid_string(uuid: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*uuid).hyphenated().to_string()
}

/// Bytes of record header per record, for figures in docs and benches.
pub const RECORD_OVERHEAD_BYTES: usize = RECORD_HEADER_LEN;
