//! The reader: looks keys up in a view another process writes, without a system call.
//!
//! A lookup reads the control word, probes the key table, copies what it found, and then
//! validates: the slot's seqlock version must not have changed (nothing it copied was being
//! rewritten), and the control word must not have changed (no clear, rebuild, death or loss
//! of completeness overlapped the lookup). Anything else is retried a bounded number of times
//! and then answered [`Lookup::Unknown`]. Readers only load; they cannot block the writer, and
//! one killed mid-lookup leaves nothing behind.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{fence, Ordering};

use crate::error::OpenError;
use crate::hash::hash;
use crate::layout::{self, block_bytes, control, hdr, slot, Layout, HEADER_BYTES};
use crate::shm::{monotonic_coarse_ns, Mapping};
use crate::{
    ViewStats, FILE_BYTES_MAX, HEARTBEAT_STALE_NS, KEY_BYTES_MAX, READ_ATTEMPTS_MAX,
    VALUE_BYTES_MAX,
};

/// Spins a lookup may make at its most delicate points (after loading the control word, after
/// loading a slot's version, and after copying the slot, before re-checking its version): the stress test sets it at
/// random to widen the windows a missing check would leave open. Test builds only.
#[cfg(test)]
pub(crate) static TEST_PAUSE_SPINS: std::sync::atomic::AtomicU32 =
    std::sync::atomic::AtomicU32::new(0);

#[inline]
fn test_pause() {
    #[cfg(test)]
    for _ in 0..TEST_PAUSE_SPINS.load(Ordering::Relaxed) {
        std::hint::spin_loop();
    }
}

/// The answer of [`ViewReader::get`].
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The key's current value is in the caller's scratch buffer (validated: not torn, not
    /// stale), written by the write with sequence number `seq`.
    Hit {
        /// The sequence number of the write that stored the value.
        seq: u64,
    },
    /// The key does not exist: an authoritative ENOENT. The scratch buffer's contents are
    /// unspecified.
    Miss,
    /// The view cannot answer; ask the device. The scratch buffer's contents are unspecified.
    Unknown(Unknown),
}

/// Why a lookup answered [`Lookup::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unknown {
    /// The view is dead for good: reopen the path (a new daemon may have published another).
    Dead,
    /// The heartbeat is older than [`HEARTBEAT_STALE_NS`] (or the clock is unreadable): the
    /// daemon may have crashed. Not permanent: a live daemon's next heartbeat revives it.
    Stale,
    /// The writer is clearing or rebuilding the table.
    Busy,
    /// The key or the table kept changing during every attempt.
    Contended,
    /// The key exists but its value is not in the view.
    NotCached,
    /// The key is not in the table, but the table does not hold every live key.
    Incomplete,
    /// The key is empty or longer than [`KEY_BYTES_MAX`]: the device decides the error.
    InvalidKey,
    /// A slot points outside its arena or holds impossible lengths: a corrupt view.
    Corrupt,
}

/// Whether a view can be used now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewState {
    /// Serving, heartbeat fresh.
    Live,
    /// Heartbeat too old (or clock unreadable).
    Stale,
    /// Marked dead: never used again.
    Dead,
}

/// What one probe of the table found (before the control word is re-checked).
enum Probe {
    Hit(u64),
    NotCached,
    Absent,
    Retry,
    Corrupt,
}

/// What reading one candidate slot found.
enum Candidate {
    /// The key is here (validated): a hit or a key without its value.
    Found(Probe),
    /// Another key (validated): keep probing.
    Other,
    /// The slot changed while it was read: start over.
    Changed,
    Corrupt,
}

/// A read-only mapping of a view, checked when opened. Cheap to share between threads
/// (`Sync`); lookups allocate nothing once the caller's scratch buffer is large enough.
pub struct ViewReader {
    map: Mapping,
    layout: Layout,
    seed: u64,
    instance_id: u64,
    abi_profile: u32,
    device: u64,
    store_uuid: [u8; 16],
}

impl std::fmt::Debug for ViewReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewReader")
            .field("instance_id", &format_args!("{:016x}", self.instance_id))
            .field("abi_profile", &self.abi_profile)
            .field("device", &self.device)
            .field("file_bytes", &self.layout.file_bytes)
            .finish_non_exhaustive()
    }
}

impl ViewReader {
    /// Opens and checks the view at `path`.
    ///
    /// The file must be a regular file (not a symbolic link), not writable by group or
    /// others, owned by root or by the owner of its directory, and have a header this version
    /// understands whose every size and offset lies inside the file. It must not be dead.
    ///
    /// # Errors
    /// [`OpenError`] says which check failed.
    pub fn open(path: impl AsRef<Path>) -> Result<ViewReader, OpenError> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    OpenError::Symlink
                } else {
                    OpenError::Io(e)
                }
            })?;
        Self::check_trust(path, &file)?;
        let bytes = file.metadata()?.len();
        if !(HEADER_BYTES..=FILE_BYTES_MAX).contains(&bytes) {
            return Err(OpenError::BadSize);
        }
        let map = Mapping::map(
            &file,
            usize::try_from(bytes).map_err(|_| OpenError::BadSize)?,
            false,
        )?;
        drop(file);
        let layout = Layout::parse(&map)?;
        let load64 = |at| map.load64(at).ok_or(OpenError::BadSize);
        let mut store_uuid = [0u8; 16];
        store_uuid[..8].copy_from_slice(&load64(hdr::STORE_UUID)?.to_ne_bytes());
        store_uuid[8..].copy_from_slice(&load64(hdr::STORE_UUID + 8)?.to_ne_bytes());
        let reader = ViewReader {
            seed: load64(hdr::HASH_SEED)?,
            instance_id: load64(hdr::INSTANCE_ID)?,
            abi_profile: map.load32(hdr::ABI_PROFILE).ok_or(OpenError::BadSize)?,
            device: load64(hdr::DEVICE)?,
            store_uuid,
            layout,
            map,
        };
        if reader.control() & control::DEAD != 0 {
            return Err(OpenError::Dead);
        }
        Ok(reader)
    }

    /// Only root or the directory's owner could have written a file we trust, and nobody
    /// else may be able to change it.
    fn check_trust(path: &Path, file: &File) -> Result<(), OpenError> {
        let md = file.metadata()?;
        if !md.file_type().is_file() {
            return Err(OpenError::NotRegularFile);
        }
        if md.mode() & 0o022 != 0 {
            return Err(OpenError::WritableByOthers {
                mode: md.mode() & 0o7777,
            });
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir_uid = std::fs::metadata(dir)?.uid();
        if md.uid() != 0 && md.uid() != dir_uid {
            return Err(OpenError::UntrustedOwner {
                file_uid: md.uid(),
                dir_uid,
            });
        }
        Ok(())
    }

    /// The control word, with acquire ordering (a relaxed load and a fence: see `shm`).
    #[inline]
    fn control(&self) -> u64 {
        let word = self.map.load64(hdr::CONTROL).unwrap_or(control::DEAD);
        fence(Ordering::Acquire);
        word
    }

    #[inline]
    fn heartbeat_fresh(&self) -> bool {
        let Some(now) = monotonic_coarse_ns() else {
            return false;
        };
        let beat = self.map.load64(hdr::HEARTBEAT_NS).unwrap_or(0);
        now.abs_diff(beat) <= HEARTBEAT_STALE_NS
    }

    /// Looks `key` up. On [`Lookup::Hit`], `scratch` holds exactly the value; otherwise its
    /// contents are unspecified (so a caller copies to a user buffer only on a hit).
    ///
    /// No system call (the clock is read through the vDSO) and no allocation once `scratch`
    /// has the value's capacity; at most [`READ_ATTEMPTS_MAX`] attempts of at most
    /// [`crate::PROBE_SLOTS_MAX`] slots each.
    pub fn get(&self, key: &[u8], scratch: &mut Vec<u8>) -> Lookup {
        if key.is_empty() || key.len() > KEY_BYTES_MAX {
            return Lookup::Unknown(Unknown::InvalidKey);
        }
        if !self.heartbeat_fresh() {
            return Lookup::Unknown(Unknown::Stale);
        }
        let h = hash(self.seed, key);
        for _ in 0..READ_ATTEMPTS_MAX {
            let before = self.control();
            if before & control::DEAD != 0 {
                return Lookup::Unknown(Unknown::Dead);
            }
            if before & control::BUSY != 0 {
                return Lookup::Unknown(Unknown::Busy);
            }
            test_pause();
            let probe = self.probe(key, h, scratch);
            fence(Ordering::Acquire);
            if self.map.load64(hdr::CONTROL) != Some(before) {
                continue; // a clear, a rebuild, death or incompleteness overlapped
            }
            return match probe {
                Probe::Hit(seq) => Lookup::Hit { seq },
                Probe::NotCached => Lookup::Unknown(Unknown::NotCached),
                Probe::Absent if before & control::INCOMPLETE != 0 => {
                    Lookup::Unknown(Unknown::Incomplete)
                }
                Probe::Absent => Lookup::Miss,
                Probe::Corrupt => Lookup::Unknown(Unknown::Corrupt),
                Probe::Retry => continue,
            };
        }
        Lookup::Unknown(Unknown::Contended)
    }

    /// Linear probing from the key's home slot. Slots with another tag or length are skipped
    /// on two relaxed loads; an empty slot, or the probe limit, ends the search: the writer
    /// never places a key past an empty slot of its path or past the limit, and never moves a
    /// live key (only a rebuild does, under BUSY, which the control word check catches).
    #[inline]
    fn probe(&self, key: &[u8], h: u64, scratch: &mut Vec<u8>) -> Probe {
        let tag = layout::tag(h);
        let n = self.layout.slot_count;
        let mut index = self.layout.home(h);
        for _ in 0..self.layout.probe_limit() {
            let at = self.layout.slot_offset(index);
            let Some(meta) = self.map.load32(at + slot::META) else {
                return Probe::Corrupt;
            };
            if meta == 0 {
                return Probe::Absent;
            }
            if slot::is_live(meta)
                && slot::key_len(meta) == key.len()
                && self.map.load32(at + slot::TAG) == Some(tag)
            {
                match self.read_candidate(at, key, tag, scratch) {
                    Candidate::Found(found) => return found,
                    Candidate::Other => {}
                    Candidate::Changed => return Probe::Retry,
                    Candidate::Corrupt => return Probe::Corrupt,
                }
            }
            index += 1;
            if index == n {
                index = 0;
            }
        }
        Probe::Absent
    }

    /// Reads the slot at byte offset `at` under its seqlock.
    #[inline]
    fn read_candidate(&self, at: usize, key: &[u8], tag: u32, scratch: &mut Vec<u8>) -> Candidate {
        let m = &self.map;
        let Some(v1) = m.load64(at + slot::VERSION) else {
            return Candidate::Corrupt;
        };
        fence(Ordering::Acquire); // v1 is an acquire load: the fields below are at least v1's
        if v1 % 2 != 0 {
            return Candidate::Changed;
        }
        test_pause();
        let (Some(seq), Some(meta), Some(slot_tag), Some(key_off), Some(value_off)) = (
            m.load64(at + slot::SEQ),
            m.load32(at + slot::META),
            m.load32(at + slot::TAG),
            m.load32(at + slot::KEY_OFF),
            m.load32(at + slot::VALUE_OFF),
        ) else {
            return Candidate::Corrupt;
        };
        // Everything below reads through offsets that may be torn until the version check, so
        // every one is bounds-checked and a failure is judged only after that check.
        let outcome = if !slot::is_live(meta) || slot::key_len(meta) != key.len() || slot_tag != tag
        {
            Some(Candidate::Other)
        } else if meta & slot::VALUE_HERE != 0 {
            self.copy_if_key(meta, value_off, key, scratch).map(|hit| {
                if hit {
                    Candidate::Found(Probe::Hit(seq))
                } else {
                    Candidate::Other
                }
            })
        } else {
            self.layout
                .key_block(key_off, key.len())
                .and_then(|block| m.bytes_eq(block, key))
                .map(|same| {
                    if same {
                        Candidate::Found(Probe::NotCached)
                    } else {
                        Candidate::Other
                    }
                })
        };
        test_pause();
        fence(Ordering::Acquire); // orders every load above before the version re-check
        if m.load64(at + slot::VERSION) != Some(v1) {
            return Candidate::Changed;
        }
        outcome.unwrap_or(Candidate::Corrupt)
    }

    /// Compares the key stored in the value block with `key` and, if equal, copies the value
    /// into `scratch`. `None` if the block is out of bounds or the length impossible.
    #[inline]
    fn copy_if_key(
        &self,
        meta: u32,
        value_off: u32,
        key: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Option<bool> {
        let value_len = slot::value_len(meta);
        if value_len == 0 || value_len > VALUE_BYTES_MAX {
            return None;
        }
        let key_bytes = block_bytes(key.len());
        let block = self
            .layout
            .value_block(value_off, key_bytes + block_bytes(value_len))?;
        if !self.map.bytes_eq(block, key)? {
            return Some(false);
        }
        self.map
            .copy_out(block + key_bytes, value_len, scratch)
            .then_some(true)
    }

    /// Whether the view can be used now: not dead, heartbeat fresh.
    #[must_use]
    pub fn state(&self) -> ViewState {
        if self.control() & control::DEAD != 0 {
            ViewState::Dead
        } else if self.heartbeat_fresh() {
            ViewState::Live
        } else {
            ViewState::Stale
        }
    }

    /// `state() == Live`.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.state() == ViewState::Live
    }

    /// Whether the view is dead (permanent: reopen the path to find its successor). One load.
    #[must_use]
    pub fn is_dead(&self) -> bool {
        self.control() & control::DEAD != 0
    }

    /// The store's numbers as the daemon last published them, read under their seqlock;
    /// `None` if they kept changing for [`READ_ATTEMPTS_MAX`] attempts.
    #[must_use]
    pub fn stats(&self) -> Option<ViewStats> {
        let m = &self.map;
        for _ in 0..READ_ATTEMPTS_MAX {
            let v1 = m.load64(hdr::STATS_VERSION)?;
            fence(Ordering::Acquire);
            let stats = ViewStats {
                records: m.load64(hdr::STATS_RECORDS)?,
                value_bytes: m.load64(hdr::STATS_VALUE_BYTES)?,
                device_bytes: m.load64(hdr::STATS_DEVICE_BYTES)?,
            };
            fence(Ordering::Acquire);
            if v1 % 2 == 0 && m.load64(hdr::STATS_VERSION)? == v1 {
                return Some(stats);
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Nanoseconds since the last heartbeat (`None` if the clock is unreadable).
    #[must_use]
    pub fn heartbeat_age_ns(&self) -> Option<u64> {
        let now = monotonic_coarse_ns()?;
        Some(now.saturating_sub(self.map.load64(hdr::HEARTBEAT_NS)?))
    }

    /// The ABI profile number the daemon serves.
    #[must_use]
    pub fn abi_profile(&self) -> u32 {
        self.abi_profile
    }

    /// `st_rdev` of the device node this view describes.
    #[must_use]
    pub fn device(&self) -> u64 {
        self.device
    }

    /// The store's UUID.
    #[must_use]
    pub fn store_uuid(&self) -> [u8; 16] {
        self.store_uuid
    }

    /// The writer's random instance id: differs between any two views.
    #[must_use]
    pub fn instance_id(&self) -> u64 {
        self.instance_id
    }

    /// Bytes of the file.
    #[must_use]
    pub fn file_bytes(&self) -> u64 {
        self.layout.file_bytes
    }
}
