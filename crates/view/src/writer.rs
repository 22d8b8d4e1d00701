//! The writer: the daemon's side of the view.
//!
//! One `ViewWriter` per view, owned by the daemon and called from one thread at a time
//! (`&mut self`), after a write is durable and before it is acknowledged. Every update is a
//! seqlocked slot change (see DESIGN.md, "The shared view"): the slot's version goes odd, a
//! release fence, the fields, the version goes even with release ordering. Arena space is
//! reused only after the slot that pointed to it changed version. Whole-table changes (clear,
//! rebuild) happen under the control word's BUSY flag, which readers check before and after
//! every lookup. Each public update ends with a sequentially consistent fence, so its stores
//! are visible to every CPU before the daemon goes on to acknowledge the write.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use crate::error::{ConfigError, CreateError, WriteError};
use crate::hash::hash;
use crate::layout::{
    self, block_bytes, control, hdr, slot, Layout, ARENA_BYTES_MAX, HEADER_BYTES, KEYS_MAX,
    LAYOUT_VERSION, MAGIC, PROBE_SLOTS_MAX, SLOT_BYTES,
};
use crate::shm::{monotonic_coarse_ns, Mapping};
use crate::{ViewStats, KEY_BYTES_MAX, VALUE_BYTES_MAX};

/// Live keys plus tombstones may fill at most this many eighths of the slots; reaching it
/// rebuilds the table (which drops every tombstone). Live keys alone fill at most half.
const USED_SLOTS_MAX_EIGHTHS: u64 = 5;
/// A `[key][value]` block may take at most this fraction (1/n) of the value arena, so one
/// large value never flushes most of it.
pub const VALUE_BLOCK_SHARE_MAX: u64 = 8;
/// The key arena is compacted (by a rebuild) only when at least this fraction (1/n) of it is
/// free-listed garbage, so a rebuild always frees enough for many inserts.
const KEY_GARBAGE_SHARE_FOR_REBUILD: u64 = 8;
/// Slot index meaning "no slot" in the value ring's bookkeeping.
const NO_SLOT: u32 = u32::MAX;
/// Key blocks come in this many sizes (8-byte units, 1 to 64).
const KEY_BLOCK_CLASSES: usize = KEY_BYTES_MAX / 8 + 1;

/// The sizes and identity of a view.
///
/// The file takes [`ViewConfig::file_bytes`]: a 4096-byte header, 64 bytes of key table per
/// key of `max_keys` (two 32-byte slots), the key arena and the value arena, each rounded up
/// to 4096 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewConfig {
    /// Live keys the table holds at most (1 to [`KEYS_MAX`]). Beyond it, the view marks
    /// itself incomplete (misses stop being authoritative) until [`ViewWriter::clear`].
    pub max_keys: u64,
    /// Bytes of key storage; each key takes its length rounded up to 8. At least
    /// [`KEY_BYTES_MAX`], at most [`ARENA_BYTES_MAX`]. Running out also makes the view
    /// incomplete.
    pub key_arena_bytes: u64,
    /// Bytes of value storage, a FIFO ring (0 keeps no values). Each cached value takes its
    /// key's and its own length, each rounded up to 8. At most [`ARENA_BYTES_MAX`]; rounded
    /// down to a multiple of 8.
    pub value_arena_bytes: u64,
    /// The store's UUID, published for readers.
    pub store_uuid: [u8; 16],
    /// The ABI profile number the daemon serves, published for readers.
    pub abi_profile: u32,
    /// `st_rdev` of the device node, so readers can match a descriptor they saw opened; can be
    /// set later with [`ViewWriter::set_device`], before publishing.
    pub device: u64,
}

impl ViewConfig {
    /// A configuration with the given sizes and a zero identity (UUID, profile, device).
    #[must_use]
    pub fn new(max_keys: u64, key_arena_bytes: u64, value_arena_bytes: u64) -> ViewConfig {
        ViewConfig {
            max_keys,
            key_arena_bytes,
            value_arena_bytes,
            store_uuid: [0; 16],
            abi_profile: 0,
            device: 0,
        }
    }

    /// The size of the file this configuration gives.
    ///
    /// # Errors
    /// A [`ConfigError`] if a size is out of bounds.
    pub fn file_bytes(&self) -> Result<u64, ConfigError> {
        Ok(self.layout()?.file_bytes)
    }

    fn layout(&self) -> Result<Layout, ConfigError> {
        if self.max_keys == 0 || self.max_keys > KEYS_MAX {
            return Err(ConfigError::KeyCapacity(self.max_keys));
        }
        let keys = self.key_arena_bytes - self.key_arena_bytes % 8;
        if keys < KEY_BYTES_MAX as u64 || keys > ARENA_BYTES_MAX {
            return Err(ConfigError::KeyArena(self.key_arena_bytes));
        }
        let values = self.value_arena_bytes - self.value_arena_bytes % 8;
        if values > ARENA_BYTES_MAX {
            return Err(ConfigError::ValueArena(self.value_arena_bytes));
        }
        Layout::new(self.max_keys, keys, values).ok_or(ConfigError::KeyCapacity(self.max_keys))
    }
}

/// A slot's fields (the version aside), as the writer reads and writes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    seq: u64,
    tag: u32,
    meta: u32,
    key_off: u32,
    value_off: u32,
}

impl Slot {
    const EMPTY: Slot = Slot {
        seq: 0,
        tag: 0,
        meta: 0,
        key_off: 0,
        value_off: 0,
    };
}

/// Key arena allocation: a bump pointer plus one free list per block size (8 to 512 bytes).
/// A freed block is reused only by a key of the same block size; the rest waits for a
/// rebuild, which packs every live key from offset 0.
struct KeyHeap {
    capacity_bytes: u64,
    bump_bytes: u64,
    /// `free[words]`: offsets (8-byte units) of free blocks of `words` words.
    free: Vec<Vec<u32>>,
    free_bytes: u64,
}

impl KeyHeap {
    fn new(capacity_bytes: u64) -> KeyHeap {
        KeyHeap {
            capacity_bytes,
            bump_bytes: 0,
            free: vec![Vec::new(); KEY_BLOCK_CLASSES],
            free_bytes: 0,
        }
    }

    fn alloc(&mut self, len: usize) -> Option<u32> {
        let words = len.div_ceil(8);
        let bytes = (words * 8) as u64;
        if let Some(units) = self.free[words].pop() {
            self.free_bytes -= bytes;
            return Some(units);
        }
        if self.bump_bytes + bytes > self.capacity_bytes {
            return None;
        }
        let units = u32::try_from(self.bump_bytes / 8).expect("the arena bound keeps units in u32");
        self.bump_bytes += bytes;
        Some(units)
    }

    fn release(&mut self, units: u32, len: usize) {
        let words = len.div_ceil(8);
        self.free[words].push(units);
        self.free_bytes += (words * 8) as u64;
    }

    fn reset(&mut self) {
        self.bump_bytes = 0;
        self.free.iter_mut().for_each(Vec::clear);
        self.free_bytes = 0;
    }

    fn worth_compacting(&self) -> bool {
        self.free_bytes
            >= (self.capacity_bytes / KEY_GARBAGE_SHARE_FOR_REBUILD).max(KEY_BYTES_MAX as u64)
    }
}

/// One value block the ring handed out, oldest first.
#[derive(Clone, Copy, Debug)]
struct RingEntry {
    /// Offset in 8-byte units.
    units: u32,
    /// The slot it was written for ([`NO_SLOT`] once that slot is gone).
    slot: u32,
}

/// The value arena: a FIFO ring. A new block goes at `head`; the blocks it overlaps are the
/// oldest ones, and their slots (if they still point there) are changed to "value not here"
/// before a byte is overwritten. A block that would cross the end starts again at 0, and
/// the blocks between `head` and the end go first.
struct ValueRing {
    capacity_bytes: u64,
    head_bytes: u64,
    /// Every block handed out and not yet overwritten, in allocation order (which is offset
    /// order within each lap).
    entries: VecDeque<RingEntry>,
}

impl ValueRing {
    fn reset(&mut self) {
        self.head_bytes = 0;
        self.entries.clear();
    }
}

/// The daemon's handle on a view it publishes. See the crate documentation for the order of
/// calls, and DESIGN.md for why readers see every update.
pub struct ViewWriter {
    map: Arc<Mapping>,
    file: File,
    layout: Layout,
    seed: u64,
    instance_id: u64,
    path: PathBuf,
    /// The file's name until [`ViewWriter::publish`] renames it to `path`.
    temp_path: Option<PathBuf>,
    max_keys: u64,
    live: u64,
    tombstones: u64,
    incomplete: bool,
    keys: KeyHeap,
    ring: ValueRing,
    rebuilds: u64,
}

/// A cheap handle a timer thread uses to bump the heartbeat (or mark the view dead) without
/// taking the writer's lock.
#[derive(Clone)]
pub struct Heartbeat {
    map: Arc<Mapping>,
}

impl Heartbeat {
    /// Stores the current `CLOCK_MONOTONIC_COARSE` time as the view's heartbeat.
    pub fn beat(&self) {
        beat(&self.map);
    }

    /// Marks the view dead (for instance from a shutdown path that does not own the writer).
    pub fn mark_dead(&self) {
        mark_mapping_dead(&self.map);
    }
}

fn beat(map: &Mapping) {
    if let Some(now) = monotonic_coarse_ns() {
        map.store64(hdr::HEARTBEAT_NS, now, Ordering::Relaxed);
    }
}

fn mark_mapping_dead(map: &Mapping) {
    map.update64(hdr::CONTROL, |w| w | control::DEAD);
    fence(Ordering::SeqCst);
}

/// Marks the view at `path` dead, if there is one; `Ok(true)` if it was a view.
///
/// A daemon calls this (through [`ViewWriter::create`], or directly when it runs without a
/// view) before it serves, so that readers of a predecessor's view stop using it. A symbolic
/// link, a file too short for a header or without the magic is no view a reader would accept,
/// and is left alone.
///
/// # Errors
/// Opening or mapping an existing file failed (for instance it belongs to someone else).
pub fn mark_dead_at(path: impl AsRef<Path>) -> io::Result<bool> {
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path.as_ref())
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(false),
        Err(e) => return Err(e),
    };
    let md = file.metadata()?;
    if !md.is_file() || md.len() < HEADER_BYTES {
        return Ok(false);
    }
    let map = Mapping::map(&file, HEADER_BYTES as usize, true)?;
    if map.load64(hdr::MAGIC) != Some(MAGIC) {
        return Ok(false);
    }
    // The control word's offset and its DEAD bit are the same in every layout version.
    mark_mapping_dead(&map);
    Ok(true)
}

/// 16 random bytes (the hash seed and the instance id), from the kernel's generator; if it is
/// unreadable, from the clock and the process id (still distinct per instance).
fn random_words() -> (u64, u64) {
    let mut bytes = [0u8; 16];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        let (a, b) = bytes.split_at(8);
        return (
            u64::from_ne_bytes(a.try_into().expect("8 bytes")),
            u64::from_ne_bytes(b.try_into().expect("8 bytes")),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let pid = u64::from(std::process::id());
    (hash(now, &pid.to_ne_bytes()), hash(pid, &now.to_ne_bytes()))
}

fn check_key(key: &[u8]) -> Result<(), WriteError> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(WriteError::KeyLength(key.len()));
    }
    Ok(())
}

fn check_value_len(value_len: usize) -> Result<(), WriteError> {
    if value_len == 0 || value_len > VALUE_BYTES_MAX {
        return Err(WriteError::ValueLength(value_len));
    }
    Ok(())
}

/// What a writer-side probe found.
enum Find {
    /// The key is in this slot.
    Found(u64),
    /// The key is absent; the first free slot (tombstone or empty) it could take, if any
    /// within the probe limit.
    Vacant(Option<u64>),
}

impl ViewWriter {
    /// Creates a view for `path`, unpublished.
    ///
    /// First marks any view already at `path` dead (so its readers stop using it and reopen
    /// the path); then creates and sizes a temporary file in the same directory, mode 0640,
    /// empty. Fill it (one [`upsert`](Self::upsert) per live key), then
    /// [`publish`](Self::publish) it: readers find it only then.
    ///
    /// # Errors
    /// [`CreateError::Config`] for sizes out of bounds; [`CreateError::RetireOld`] if an
    /// existing view could not be marked dead; [`CreateError::Io`] for file errors.
    pub fn create(path: impl AsRef<Path>, config: &ViewConfig) -> Result<ViewWriter, CreateError> {
        let path = path.as_ref().to_path_buf();
        let layout = config.layout().map_err(CreateError::Config)?;
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the view path names no file")
        })?;
        mark_dead_at(&path).map_err(CreateError::RetireOld)?;
        let (seed, instance_id) = random_words();
        let temp_path = path.with_file_name(format!(
            ".{}.{instance_id:016x}.tmp",
            name.to_string_lossy()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp_path)?;
        let sized = file
            .set_permissions(fs::Permissions::from_mode(0o640))
            .and_then(|()| file.set_len(layout.file_bytes))
            .and_then(|()| Mapping::map(&file, layout.file_bytes as usize, true));
        let map = match sized {
            Ok(map) => map,
            Err(e) => {
                let _ = fs::remove_file(&temp_path);
                return Err(CreateError::Io(e));
            }
        };
        let writer = ViewWriter {
            map: Arc::new(map),
            file,
            layout,
            seed,
            instance_id,
            path,
            temp_path: Some(temp_path),
            max_keys: config.max_keys,
            live: 0,
            tombstones: 0,
            incomplete: false,
            keys: KeyHeap::new(layout.keys_bytes),
            ring: ValueRing {
                capacity_bytes: layout.values_bytes,
                head_bytes: 0,
                entries: VecDeque::new(),
            },
            rebuilds: 0,
        };
        writer.write_header(config);
        Ok(writer)
    }

    fn write_header(&self, config: &ViewConfig) {
        let m = &self.map;
        let l = &self.layout;
        let r = Ordering::Relaxed;
        m.store32(hdr::VERSION, LAYOUT_VERSION, r);
        m.store32(hdr::HEADER_BYTES, HEADER_BYTES as u32, r);
        m.store64(hdr::FILE_BYTES, l.file_bytes, r);
        m.store32(hdr::SLOT_BYTES, SLOT_BYTES as u32, r);
        m.store32(hdr::PROBE_SLOTS, PROBE_SLOTS_MAX as u32, r);
        m.store64(hdr::SLOT_COUNT, l.slot_count, r);
        m.store64(hdr::SLOTS_OFFSET, l.slots_offset, r);
        m.store64(hdr::KEYS_OFFSET, l.keys_offset, r);
        m.store64(hdr::KEYS_BYTES, l.keys_bytes, r);
        m.store64(hdr::VALUES_OFFSET, l.values_offset, r);
        m.store64(hdr::VALUES_BYTES, l.values_bytes, r);
        m.store64(hdr::HASH_SEED, self.seed, r);
        m.store64(hdr::INSTANCE_ID, self.instance_id, r);
        m.copy_in(hdr::STORE_UUID, &config.store_uuid);
        m.store32(hdr::ABI_PROFILE, config.abi_profile, r);
        m.store64(hdr::DEVICE, config.device, r);
        m.store64(hdr::CONTROL, 0, r);
        beat(m);
        // The magic last: a file with the magic has a complete header.
        m.store64(hdr::MAGIC, MAGIC, Ordering::Release);
        fence(Ordering::SeqCst);
    }

    /// Makes the view visible: renames the temporary file over the path, atomically, so a
    /// reader opening the path finds either the old (dead) file or this one. Also bumps the
    /// heartbeat. Calling it again does nothing.
    ///
    /// # Errors
    /// The rename failed; the view stays unpublished.
    pub fn publish(&mut self) -> Result<(), CreateError> {
        let Some(temp) = &self.temp_path else {
            return Ok(());
        };
        beat(&self.map);
        fence(Ordering::SeqCst);
        fs::rename(temp, &self.path)?;
        self.temp_path = None;
        Ok(())
    }

    /// Whether [`publish`](Self::publish) succeeded.
    #[must_use]
    pub fn is_published(&self) -> bool {
        self.temp_path.is_none()
    }

    /// Sets the device node's `st_rdev` that readers see. Only before publishing: readers
    /// read the header's identity once, when they open the file.
    ///
    /// # Panics
    /// If the view is already published.
    pub fn set_device(&mut self, device: u64) {
        assert!(
            !self.is_published(),
            "the device number is fixed once the view is published"
        );
        self.map.store64(hdr::DEVICE, device, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Gives the file to group `gid` (the daemon's `hpkv` group), keeping mode 0640.
    ///
    /// # Errors
    /// `fchown` failed.
    pub fn set_group(&self, gid: u32) -> io::Result<()> {
        std::os::unix::fs::fchown(&self.file, None, Some(gid))
    }

    /// The path readers open.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This view's random instance id (readers see the same).
    #[must_use]
    pub fn instance_id(&self) -> u64 {
        self.instance_id
    }

    /// Bytes of the file (sparse: see DESIGN.md for what becomes resident).
    #[must_use]
    pub fn file_bytes(&self) -> u64 {
        self.layout.file_bytes
    }

    /// Live keys in the table.
    #[must_use]
    pub fn live_keys(&self) -> u64 {
        self.live
    }

    /// Whether the table holds every live key it was told about since it was created or
    /// last cleared. Once it is incomplete it stays so until [`clear`](Self::clear); a daemon
    /// that wants authoritative misses back publishes a larger view.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        !self.incomplete
    }

    /// How many times the table was rebuilt (to drop tombstones or pack the key arena).
    #[must_use]
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// A handle for bumping the heartbeat from another thread.
    #[must_use]
    pub fn heartbeat_handle(&self) -> Heartbeat {
        Heartbeat {
            map: Arc::clone(&self.map),
        }
    }

    /// Stores the current `CLOCK_MONOTONIC_COARSE` time as the heartbeat. Call it at least
    /// every [`crate::HEARTBEAT_INTERVAL`]; readers treat a heartbeat older than
    /// [`crate::HEARTBEAT_STALE_NS`] as a dead daemon.
    pub fn heartbeat(&mut self) {
        beat(&self.map);
    }

    /// Marks the view dead, for good: readers stop using it (a lookup in progress answers
    /// `Unknown`) and reopen the path. Dropping the writer does the same.
    pub fn mark_dead(&mut self) {
        mark_mapping_dead(&self.map);
    }

    /// Publishes the store's numbers (for `/proc/hpkv_stats`), under the stats seqlock.
    ///
    /// # Panics
    /// If the stats seqlock was left odd (it never is: only this method writes it).
    pub fn set_stats(&mut self, stats: ViewStats) {
        let m = &self.map;
        let version = self.load64(hdr::STATS_VERSION);
        assert!(version % 2 == 0, "stats seqlock left odd");
        m.store64(hdr::STATS_VERSION, version + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        m.store64(hdr::STATS_RECORDS, stats.records, Ordering::Relaxed);
        m.store64(hdr::STATS_VALUE_BYTES, stats.value_bytes, Ordering::Relaxed);
        m.store64(
            hdr::STATS_DEVICE_BYTES,
            stats.device_bytes,
            Ordering::Relaxed,
        );
        m.store64(hdr::STATS_VERSION, version + 2, Ordering::Release);
        fence(Ordering::SeqCst);
    }

    /// Records that `key` now has the value written with sequence number `seq`, of
    /// `value_len` bytes. With `Some(value)`, the value goes into the value arena (if it is
    /// not larger than 1/[`VALUE_BLOCK_SHARE_MAX`] of it), evicting the oldest values;
    /// with `None` readers learn that the key exists but must ask the device for its value.
    ///
    /// Call it after the write is durable and before it is acknowledged, in sequence order.
    ///
    /// # Errors
    /// Key or value length out of bounds, or `value` not `value_len` long (nothing changed).
    ///
    /// # Panics
    /// If `seq` is not larger than the sequence number the view holds for `key` (updates out
    /// of order would let readers see an older value after a newer one).
    pub fn upsert(
        &mut self,
        key: &[u8],
        seq: u64,
        value: Option<&[u8]>,
        value_len: usize,
    ) -> Result<(), WriteError> {
        check_key(key)?;
        check_value_len(value_len)?;
        if let Some(v) = value {
            if v.len() != value_len {
                return Err(WriteError::ValueLengthMismatch {
                    value_len,
                    bytes: v.len(),
                });
            }
        }
        let h = hash(self.seed, key);
        match self.find(key, h) {
            Find::Found(index) => self.update_existing(index, key, seq, value, value_len),
            Find::Vacant(free) => self.insert_new(key, h, seq, value, value_len, free),
        }
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// Installs `value`, read from the device, as `key`'s value if the view still holds
    /// exactly version `seq` of the key without its value. Returns whether it did. Workers
    /// that read a value the view lacks call this (under the daemon's lock on the writer).
    ///
    /// # Errors
    /// Key or value length out of bounds (nothing changed).
    ///
    /// # Panics
    /// If the view holds version `seq` with another value length (two different values under
    /// one sequence number).
    pub fn fill(&mut self, key: &[u8], seq: u64, value: &[u8]) -> Result<bool, WriteError> {
        check_key(key)?;
        check_value_len(value.len())?;
        let h = hash(self.seed, key);
        let Find::Found(index) = self.find(key, h) else {
            return Ok(false);
        };
        let s = self.read_slot(index);
        if s.seq != seq || s.meta & slot::VALUE_HERE != 0 {
            return Ok(false);
        }
        assert_eq!(
            slot::value_len(s.meta),
            value.len(),
            "fill: version {seq} of a key has another value length"
        );
        let Some(value_off) = self.store_value(index, key, value) else {
            return Ok(false);
        };
        // Storing the value may evict other slots' values, never this slot's (it had none),
        // so `s` is still its content.
        self.write_slot(
            index,
            &Slot {
                meta: s.meta | slot::VALUE_HERE,
                value_off,
                ..s
            },
        );
        fence(Ordering::SeqCst);
        Ok(true)
    }

    /// Records that `key` was deleted by the write with sequence number `seq`. A key the view
    /// does not hold needs nothing.
    ///
    /// # Errors
    /// Key length out of bounds (nothing changed).
    ///
    /// # Panics
    /// If `seq` is not larger than the sequence number the view holds for `key`.
    pub fn remove(&mut self, key: &[u8], seq: u64) -> Result<(), WriteError> {
        check_key(key)?;
        let h = hash(self.seed, key);
        if let Find::Found(index) = self.find(key, h) {
            let s = self.read_slot(index);
            assert!(
                seq > s.seq,
                "remove: sequence number {seq} is not above the key's {}",
                s.seq
            );
            self.write_slot(
                index,
                &Slot {
                    seq,
                    meta: slot::TOMBSTONE,
                    ..Slot::EMPTY
                },
            );
            // Only now, with the slot's version changed, may the key's block be reused.
            self.keys.release(s.key_off, slot::key_len(s.meta));
            self.live -= 1;
            self.tombstones += 1;
            self.clear_tombstone_run(index);
        }
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// Removes every key (PURGE). Readers see the table BUSY meanwhile, and any lookup that
    /// overlapped it is discarded by the control word's epoch. A cleared table is complete.
    pub fn clear(&mut self) {
        self.begin_busy();
        for index in 0..self.layout.slot_count {
            if self.meta(index) != 0 {
                self.write_slot(index, &Slot::EMPTY);
            }
        }
        self.keys.reset();
        self.ring.reset();
        self.live = 0;
        self.tombstones = 0;
        self.incomplete = false;
        self.end_busy();
        fence(Ordering::SeqCst);
    }

    // ---- slots -------------------------------------------------------------------------

    fn load64(&self, at: usize) -> u64 {
        self.map
            .load64(at)
            .expect("writer offsets lie inside the view")
    }

    fn load32(&self, at: usize) -> u32 {
        self.map
            .load32(at)
            .expect("writer offsets lie inside the view")
    }

    fn meta(&self, index: u64) -> u32 {
        self.load32(self.layout.slot_offset(index) + slot::META)
    }

    fn read_slot(&self, index: u64) -> Slot {
        let at = self.layout.slot_offset(index);
        Slot {
            seq: self.load64(at + slot::SEQ),
            tag: self.load32(at + slot::TAG),
            meta: self.load32(at + slot::META),
            key_off: self.load32(at + slot::KEY_OFF),
            value_off: self.load32(at + slot::VALUE_OFF),
        }
    }

    /// One seqlocked slot change: version odd, release fence, fields, version even (release).
    /// A reader that copied any field (or arena bytes) written after this call's fence sees
    /// the odd or a later version when it re-checks, and discards its copy.
    fn write_slot(&self, index: u64, s: &Slot) {
        let at = self.layout.slot_offset(index);
        let m = &self.map;
        let version = self.load64(at + slot::VERSION);
        assert!(version % 2 == 0, "slot {index} seqlock left odd");
        m.store64(at + slot::VERSION, version + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        m.store64(at + slot::SEQ, s.seq, Ordering::Relaxed);
        m.store32(at + slot::TAG, s.tag, Ordering::Relaxed);
        m.store32(at + slot::META, s.meta, Ordering::Relaxed);
        m.store32(at + slot::KEY_OFF, s.key_off, Ordering::Relaxed);
        m.store32(at + slot::VALUE_OFF, s.value_off, Ordering::Relaxed);
        m.store64(at + slot::VERSION, version + 2, Ordering::Release);
    }

    fn next(&self, index: u64) -> u64 {
        if index + 1 == self.layout.slot_count {
            0
        } else {
            index + 1
        }
    }

    fn prev(&self, index: u64) -> u64 {
        if index == 0 {
            self.layout.slot_count - 1
        } else {
            index - 1
        }
    }

    fn key_equals(&self, s: &Slot, key: &[u8]) -> bool {
        let at = self
            .layout
            .key_block(s.key_off, key.len())
            .expect("live keys lie inside the key arena");
        self.map.bytes_eq(at, key).expect("inside the view")
    }

    /// Linear probing from the key's home slot, at most [`PROBE_SLOTS_MAX`] slots; an empty
    /// slot ends the search (no key is ever placed past an empty slot of its path).
    fn find(&self, key: &[u8], h: u64) -> Find {
        let tag = layout::tag(h);
        let mut index = self.layout.home(h);
        let mut free = None;
        for _ in 0..self.layout.probe_limit() {
            let s = self.read_slot(index);
            if s.meta == 0 {
                return Find::Vacant(free.or(Some(index)));
            }
            if s.meta & slot::TOMBSTONE != 0 {
                free.get_or_insert(index);
            } else if slot::key_len(s.meta) == key.len() && s.tag == tag && self.key_equals(&s, key)
            {
                return Find::Found(index);
            }
            index = self.next(index);
        }
        Find::Vacant(free)
    }

    /// Turns tombstones into empty slots where no probe needs them: a tombstone followed by
    /// an empty slot ends every path through it, so it can become empty, and so on backwards.
    /// (A live key's path never crosses an empty slot, so none is on such a run.)
    fn clear_tombstone_run(&mut self, index: u64) {
        if self.meta(self.next(index)) != 0 {
            return;
        }
        let mut at = index;
        for _ in 0..self.layout.slot_count {
            if self.meta(at) != slot::TOMBSTONE {
                break;
            }
            self.write_slot(at, &Slot::EMPTY);
            self.tombstones -= 1;
            at = self.prev(at);
        }
    }

    fn update_existing(
        &mut self,
        index: u64,
        key: &[u8],
        seq: u64,
        value: Option<&[u8]>,
        value_len: usize,
    ) {
        let s = self.read_slot(index);
        assert!(
            seq > s.seq,
            "upsert: sequence number {seq} is not above the key's {}",
            s.seq
        );
        // The new block may evict this slot's old value first: then its slot goes "value not
        // here" (a version change) before the bytes are reused, as for any other slot.
        let value_off = value.and_then(|v| self.store_value(index, key, v));
        self.write_slot(
            index,
            &Slot {
                seq,
                meta: slot::meta(key.len(), value_len, value_off.is_some()),
                value_off: value_off.unwrap_or(0),
                ..s
            },
        );
    }

    fn insert_new(
        &mut self,
        key: &[u8],
        h: u64,
        seq: u64,
        value: Option<&[u8]>,
        value_len: usize,
        mut free: Option<u64>,
    ) {
        if self.live >= self.max_keys {
            return self.set_incomplete();
        }
        let takes_empty = free.is_none_or(|index| self.meta(index) == 0);
        if takes_empty
            && self.live + self.tombstones + 1 > self.layout.slot_count * USED_SLOTS_MAX_EIGHTHS / 8
        {
            self.rebuild();
            free = self.find_vacant(key, h);
        }
        let mut key_off = self.keys.alloc(key.len());
        if key_off.is_none() && self.keys.worth_compacting() {
            self.rebuild();
            free = self.find_vacant(key, h);
            key_off = self.keys.alloc(key.len());
        }
        let (Some(index), Some(key_off)) = (free, key_off) else {
            if let Some(units) = key_off {
                self.keys.release(units, key.len());
            }
            return self.set_incomplete();
        };
        let key_at = self
            .layout
            .key_block(key_off, key.len())
            .expect("the key heap stays inside the key arena");
        // The block's previous owner (if any) changed version when it released it.
        self.map.copy_in(key_at, key);
        let value_off = value.and_then(|v| self.store_value(index, key, v));
        if self.meta(index) == slot::TOMBSTONE {
            self.tombstones -= 1;
        }
        self.write_slot(
            index,
            &Slot {
                seq,
                tag: layout::tag(h),
                meta: slot::meta(key.len(), value_len, value_off.is_some()),
                key_off,
                value_off: value_off.unwrap_or(0),
            },
        );
        self.live += 1;
    }

    fn find_vacant(&self, key: &[u8], h: u64) -> Option<u64> {
        match self.find(key, h) {
            Find::Vacant(free) => free,
            Find::Found(index) => panic!("a rebuild produced key slot {index} it did not have"),
        }
    }

    fn set_incomplete(&mut self) {
        if !self.incomplete {
            self.incomplete = true;
            self.map.update64(hdr::CONTROL, |w| {
                w.wrapping_add(control::EPOCH_UNIT) | control::INCOMPLETE
            });
        }
    }

    fn begin_busy(&self) {
        self.map.update64(hdr::CONTROL, |w| w | control::BUSY);
        // Orders every table store after BUSY: a reader that sees any of them sees BUSY, or
        // a later epoch, when it re-reads the control word.
        fence(Ordering::Release);
    }

    fn end_busy(&self) {
        let incomplete = if self.incomplete {
            control::INCOMPLETE
        } else {
            0
        };
        // A new epoch, with release ordering (the update is SeqCst): a reader that sees it
        // sees the whole new table.
        self.map.update64(hdr::CONTROL, |w| {
            (w.wrapping_add(control::EPOCH_UNIT) & !(control::BUSY | control::INCOMPLETE))
                | incomplete
        });
    }

    /// Rewrites the table under BUSY: every live key re-placed from its home (tombstones
    /// gone), key blocks packed from offset 0. Values stay where they are. A key that cannot
    /// be placed within the probe limit is dropped and the view marked incomplete.
    fn rebuild(&mut self) {
        struct Moved {
            key_start: usize,
            key_len: usize,
            old_index: u64,
            s: Slot,
        }
        self.rebuilds += 1;
        self.begin_busy();
        let mut key_bytes: Vec<u8> = Vec::with_capacity(self.keys.bump_bytes as usize);
        let mut moved = Vec::with_capacity(self.live as usize);
        let mut one_key = Vec::with_capacity(KEY_BYTES_MAX);
        for index in 0..self.layout.slot_count {
            let s = self.read_slot(index);
            if s.meta == 0 {
                continue;
            }
            if slot::is_live(s.meta) {
                let key_len = slot::key_len(s.meta);
                let at = self
                    .layout
                    .key_block(s.key_off, key_len)
                    .expect("live keys lie inside the key arena");
                assert!(
                    self.map.copy_out(at, key_len, &mut one_key),
                    "key inside the view"
                );
                moved.push(Moved {
                    key_start: key_bytes.len(),
                    key_len,
                    old_index: index,
                    s,
                });
                key_bytes.extend_from_slice(&one_key);
            }
            self.write_slot(index, &Slot::EMPTY);
        }
        self.keys.reset();
        self.live = 0;
        self.tombstones = 0;
        let mut new_index = vec![
            NO_SLOT;
            if self.ring.entries.is_empty() {
                0
            } else {
                self.layout.slot_count as usize
            }
        ];
        for m in &moved {
            let key = &key_bytes[m.key_start..m.key_start + m.key_len];
            let h = hash(self.seed, key);
            let Some(index) = self.find_empty(h) else {
                self.incomplete = true;
                continue;
            };
            let key_off = self
                .keys
                .alloc(key.len())
                .expect("keys that fitted before fit when packed");
            let at = self
                .layout
                .key_block(key_off, key.len())
                .expect("inside the key arena");
            self.map.copy_in(at, key);
            self.write_slot(
                index,
                &Slot {
                    tag: layout::tag(h),
                    key_off,
                    ..m.s
                },
            );
            self.live += 1;
            if let Some(slot) = new_index.get_mut(m.old_index as usize) {
                *slot = u32::try_from(index).expect("slot indexes fit u32");
            }
        }
        for entry in &mut self.ring.entries {
            if entry.slot != NO_SLOT {
                entry.slot = new_index[entry.slot as usize];
            }
        }
        self.end_busy();
    }

    fn find_empty(&self, h: u64) -> Option<u64> {
        let mut index = self.layout.home(h);
        for _ in 0..self.layout.probe_limit() {
            if self.meta(index) == 0 {
                return Some(index);
            }
            index = self.next(index);
        }
        None
    }

    // ---- the value ring ------------------------------------------------------------------

    /// Writes a `[key][value]` block for slot `index` and returns its offset (8-byte units),
    /// or `None` if it is too large for the arena.
    fn store_value(&mut self, index: u64, key: &[u8], value: &[u8]) -> Option<u32> {
        let key_bytes = block_bytes(key.len());
        let bytes = (key_bytes + block_bytes(value.len())) as u64;
        if bytes > self.ring.capacity_bytes / VALUE_BLOCK_SHARE_MAX {
            return None;
        }
        let start = self.ring_alloc(bytes);
        let units = u32::try_from(start / 8).expect("the arena bound keeps units in u32");
        let at = self
            .layout
            .value_block(units, bytes as usize)
            .expect("the ring stays inside the value arena");
        // Every slot that pointed into [start, start + bytes) changed version in ring_alloc.
        self.map.copy_in(at, key);
        self.map.copy_in(at + key_bytes, value);
        self.ring.entries.push_back(RingEntry {
            units,
            slot: u32::try_from(index).expect("slot indexes fit u32"),
        });
        Some(units)
    }

    /// Claims `bytes` at the ring's head, evicting the blocks there (oldest first).
    fn ring_alloc(&mut self, bytes: u64) -> u64 {
        if self.ring.head_bytes + bytes > self.ring.capacity_bytes {
            // The blocks from head to the end are the oldest: they go first, then start at 0.
            let head_units = self.ring.head_bytes / 8;
            while let Some(&e) = self.ring.entries.front() {
                if u64::from(e.units) < head_units {
                    break;
                }
                self.ring.entries.pop_front();
                self.evict(e);
            }
            self.ring.head_bytes = 0;
        }
        let start = self.ring.head_bytes;
        let end = start + bytes;
        while let Some(&e) = self.ring.entries.front() {
            let at = u64::from(e.units) * 8;
            if at < start || at >= end {
                break;
            }
            self.ring.entries.pop_front();
            self.evict(e);
        }
        self.ring.head_bytes = end;
        start
    }

    /// The block `e` is about to be overwritten: if its slot still points to it, the slot
    /// becomes "value not here" (a version change) first.
    fn evict(&mut self, e: RingEntry) {
        if e.slot == NO_SLOT {
            return;
        }
        let index = u64::from(e.slot);
        let s = self.read_slot(index);
        if slot::is_live(s.meta) && s.meta & slot::VALUE_HERE != 0 && s.value_off == e.units {
            self.write_slot(
                index,
                &Slot {
                    meta: s.meta & !slot::VALUE_HERE,
                    value_off: 0,
                    ..s
                },
            );
        }
    }

    /// Checks every structural invariant (tests; O(table)). Panics on a violation.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let n = self.layout.slot_count;
        let (mut live, mut tombstones) = (0, 0);
        let mut key_blocks = Vec::new();
        for index in 0..n {
            let at = self.layout.slot_offset(index);
            assert_eq!(self.load64(at + slot::VERSION) % 2, 0, "slot {index} odd");
            let s = self.read_slot(index);
            if s.meta == 0 {
                assert_eq!(s, Slot::EMPTY, "an empty slot is all zeros");
                continue;
            }
            if s.meta & slot::TOMBSTONE != 0 {
                assert_eq!(s.meta, slot::TOMBSTONE);
                assert_ne!(
                    self.meta(self.next(index)),
                    0,
                    "tombstone {index} before an empty slot"
                );
                tombstones += 1;
                continue;
            }
            live += 1;
            let key_len = slot::key_len(s.meta);
            assert!((1..=KEY_BYTES_MAX).contains(&key_len));
            assert!((1..=VALUE_BYTES_MAX).contains(&slot::value_len(s.meta)));
            let mut key = Vec::new();
            let key_at = self
                .layout
                .key_block(s.key_off, key_len)
                .expect("key in arena");
            assert!(self.map.copy_out(key_at, key_len, &mut key));
            let h = hash(self.seed, &key);
            assert_eq!(s.tag, layout::tag(h));
            let home = self.layout.home(h);
            let distance = (index + n - home) % n;
            assert!(
                distance < self.layout.probe_limit(),
                "slot {index} too far from home"
            );
            let mut at_path = home;
            while at_path != index {
                assert_ne!(
                    self.meta(at_path),
                    0,
                    "empty slot on the path of slot {index}"
                );
                at_path = self.next(at_path);
            }
            assert!(matches!(self.find(&key, h), Find::Found(i) if i == index));
            key_blocks.push((u64::from(s.key_off) * 8, block_bytes(key_len) as u64));
            if s.meta & slot::VALUE_HERE != 0 {
                let bytes = block_bytes(key_len) + block_bytes(slot::value_len(s.meta));
                let block = self
                    .layout
                    .value_block(s.value_off, bytes)
                    .expect("value in arena");
                assert_eq!(
                    self.map.bytes_eq(block, &key),
                    Some(true),
                    "value block's key"
                );
                let owners = self
                    .ring
                    .entries
                    .iter()
                    .filter(|e| e.units == s.value_off && u64::from(e.slot) == index)
                    .count();
                assert_eq!(owners, 1, "slot {index}'s value block is in the ring once");
            }
        }
        assert_eq!((live, tombstones), (self.live, self.tombstones));
        assert!(self.live <= self.max_keys);
        assert!(self.live + self.tombstones <= n * USED_SLOTS_MAX_EIGHTHS / 8 + 1);
        for (words, list) in self.keys.free.iter().enumerate() {
            key_blocks.extend(list.iter().map(|&u| (u64::from(u) * 8, (words * 8) as u64)));
        }
        key_blocks.sort_unstable();
        for pair in key_blocks.windows(2) {
            assert!(
                pair[0].0 + pair[0].1 <= pair[1].0,
                "key blocks overlap: {pair:?}"
            );
        }
        if let Some(last) = key_blocks.last() {
            assert!(last.0 + last.1 <= self.keys.bump_bytes);
        }
        // Ring entries: at most one wrap point, offsets increasing within each lap.
        let units: Vec<u64> = self
            .ring
            .entries
            .iter()
            .map(|e| u64::from(e.units))
            .collect();
        let wraps = units.windows(2).filter(|w| w[1] <= w[0]).count();
        assert!(wraps <= 1, "ring entries out of order: {units:?}");
        let control = self.load64(hdr::CONTROL);
        assert_eq!(control & control::BUSY, 0);
        assert_eq!(control & control::INCOMPLETE != 0, self.incomplete);
    }

    /// Moves the heartbeat (tests of staleness).
    #[cfg(test)]
    pub(crate) fn set_heartbeat_ns(&mut self, ns: u64) {
        self.map.store64(hdr::HEARTBEAT_NS, ns, Ordering::Relaxed);
    }
}

impl Drop for ViewWriter {
    fn drop(&mut self) {
        mark_mapping_dead(&self.map);
        if let Some(temp) = &self.temp_path {
            let _ = fs::remove_file(temp);
        }
    }
}

impl std::fmt::Debug for ViewWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewWriter")
            .field("path", &self.path)
            .field("published", &self.is_published())
            .field("live", &self.live)
            .field("tombstones", &self.tombstones)
            .field("complete", &!self.incomplete)
            .field("file_bytes", &self.layout.file_bytes)
            .finish_non_exhaustive()
    }
}
