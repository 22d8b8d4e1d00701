//! The file's layout: header fields, slot fields, bit encodings, and the region arithmetic both
//! sides share. DESIGN.md ("The shared view") draws the same layout byte by byte.
//!
//! ```text
//! 0                 header (4096 bytes)
//! slots_offset      slot_count slots of 32 bytes (the key table)
//! keys_offset       key arena: every live key, 8-byte aligned blocks
//! values_offset     value arena: a ring of [key][value] blocks, 8-byte aligned
//! file_bytes        (every region starts on a 4096-byte boundary)
//! ```

use crate::shm::Mapping;
use crate::{OpenError, KEY_BYTES_MAX, VALUE_BYTES_MAX};

/// `HPKVVIEW`, little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"HPKVVIEW");
/// Bumped whenever any offset or encoding below changes; readers refuse other versions.
pub(crate) const LAYOUT_VERSION: u32 = 1;

/// Bytes of the header; the key table starts at this offset.
pub const HEADER_BYTES: u64 = 4096;
/// Bytes of one key-table slot.
pub const SLOT_BYTES: u64 = 32;
/// Slots per key of capacity: the table is never more than half full of live keys.
pub const SLOTS_PER_KEY: u64 = 2;
/// A key is always placed within this many slots of its home slot, so a reader that has
/// probed this many slots without finding it may answer "absent". It bounds a reader's work.
pub const PROBE_SLOTS_MAX: u64 = 1024;
/// The largest key capacity a view may have (2^31 slots: slot indexes fit a `u32`).
pub const KEYS_MAX: u64 = 1 << 30;
/// The largest key or value arena: offsets are stored in 8-byte units in a `u32`.
pub const ARENA_BYTES_MAX: u64 = 8 << 32;
/// Every region of the file starts on this boundary.
pub(crate) const REGION_ALIGN_BYTES: u64 = 4096;

/// Byte offsets of the header fields. Line 0 and 1 (bytes 0..128) are written once, before
/// the file is published; the control word, the heartbeat and the stats each have their own
/// 64-byte cache line so that a heartbeat or a stats update never invalidates the line every
/// reader loads twice per lookup (the control word).
pub(crate) mod hdr {
    pub const MAGIC: usize = 0; // u64
    pub const VERSION: usize = 8; // u32
    pub const HEADER_BYTES: usize = 12; // u32
    pub const FILE_BYTES: usize = 16; // u64
    pub const SLOT_BYTES: usize = 24; // u32
    pub const PROBE_SLOTS: usize = 28; // u32
    pub const SLOT_COUNT: usize = 32; // u64
    pub const SLOTS_OFFSET: usize = 40; // u64
    pub const KEYS_OFFSET: usize = 48; // u64
    pub const KEYS_BYTES: usize = 56; // u64
    pub const VALUES_OFFSET: usize = 64; // u64
    pub const VALUES_BYTES: usize = 72; // u64
    pub const HASH_SEED: usize = 80; // u64
    pub const INSTANCE_ID: usize = 88; // u64
    pub const STORE_UUID: usize = 96; // 16 bytes (two u64)
    pub const ABI_PROFILE: usize = 112; // u32
    pub const DEVICE: usize = 120; // u64 (dev_t of the device node)
    pub const CONTROL: usize = 128; // u64, own cache line
    pub const HEARTBEAT_NS: usize = 192; // u64, own cache line
    pub const STATS_VERSION: usize = 256; // u64 seqlock, own cache line with the stats
    pub const STATS_RECORDS: usize = 264; // u64
    pub const STATS_VALUE_BYTES: usize = 272; // u64
    pub const STATS_DEVICE_BYTES: usize = 280; // u64
}

/// The control word: flags in the low byte, an epoch above. Every change of the table's state
/// that readers must notice (clear, rebuild, the table becoming incomplete, death) changes the
/// word; readers load it before and after a lookup and discard the lookup if it changed.
pub(crate) mod control {
    /// The view is dead: never use it again; reopen the path.
    pub const DEAD: u64 = 1;
    /// The writer is clearing or rebuilding the table: nothing in it may be trusted.
    pub const BUSY: u64 = 2;
    /// Some live keys are not in the table: an absent key is not an authoritative miss.
    pub const INCOMPLETE: u64 = 4;
    /// One step of the epoch (the bits above the flags).
    pub const EPOCH_UNIT: u64 = 1 << 8;
}

/// Byte offsets inside a slot, and the bits of its `meta` word.
pub(crate) mod slot {
    /// u64 seqlock: odd while the writer changes the slot; bumped by 2 per change.
    pub const VERSION: usize = 0;
    /// u64: sequence number of the write the slot reflects (a removal for a tombstone).
    pub const SEQ: usize = 8;
    /// u32: the low 32 bits of the key's hash.
    pub const TAG: usize = 16;
    /// u32: key length, value length and flags; 0 means a never-used (empty) slot.
    pub const META: usize = 20;
    /// u32: the key's block in the key arena, in 8-byte units.
    pub const KEY_OFF: usize = 24;
    /// u32: the value's block in the value arena, in 8-byte units (when `VALUE_HERE`).
    pub const VALUE_OFF: usize = 28;

    pub const KEY_LEN_MASK: u32 = 0x3ff; // bits 0..10
    pub const VALUE_LEN_SHIFT: u32 = 10;
    pub const VALUE_LEN_MASK: u32 = 0x1_ffff; // bits 10..27
    /// The value arena holds this slot's current value (a `[key][value]` block).
    pub const VALUE_HERE: u32 = 1 << 30;
    /// The key was removed; probing continues past this slot.
    pub const TOMBSTONE: u32 = 1 << 31;

    pub fn meta(key_len: usize, value_len: usize, here: bool) -> u32 {
        debug_assert!((1..=super::KEY_BYTES_MAX).contains(&key_len));
        debug_assert!((1..=super::VALUE_BYTES_MAX).contains(&value_len));
        let key = u32::try_from(key_len).expect("key length fits");
        let value = u32::try_from(value_len).expect("value length fits");
        key | (value << VALUE_LEN_SHIFT) | if here { VALUE_HERE } else { 0 }
    }

    pub fn key_len(meta: u32) -> usize {
        (meta & KEY_LEN_MASK) as usize
    }

    pub fn value_len(meta: u32) -> usize {
        ((meta >> VALUE_LEN_SHIFT) & VALUE_LEN_MASK) as usize
    }

    pub fn is_live(meta: u32) -> bool {
        meta != 0 && meta & TOMBSTONE == 0
    }
}

/// Bytes of the 8-byte-aligned block that holds `len` bytes.
pub(crate) fn block_bytes(len: usize) -> usize {
    len.next_multiple_of(8)
}

/// Where everything is. Readers build it from a header they validated; the writer from its
/// configuration. Both use only this copy afterwards, never the header again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub file_bytes: u64,
    pub slot_count: u64,
    pub slots_offset: u64,
    pub keys_offset: u64,
    pub keys_bytes: u64,
    pub values_offset: u64,
    pub values_bytes: u64,
}

impl Layout {
    /// The layout for `max_keys` keys and the given arenas (already validated and 8-aligned).
    pub fn new(max_keys: u64, keys_bytes: u64, values_bytes: u64) -> Option<Layout> {
        let slot_count = max_keys.checked_mul(SLOTS_PER_KEY)?;
        let slots_offset = HEADER_BYTES;
        let keys_offset =
            align_region(slots_offset.checked_add(slot_count.checked_mul(SLOT_BYTES)?)?)?;
        let values_offset = align_region(keys_offset.checked_add(keys_bytes)?)?;
        let file_bytes = align_region(values_offset.checked_add(values_bytes)?)?;
        Some(Layout {
            file_bytes,
            slot_count,
            slots_offset,
            keys_offset,
            keys_bytes,
            values_offset,
            values_bytes,
        })
    }

    /// Validates every header field against the constants and `map`'s length: after this,
    /// every region lies inside the mapping and no region overlaps another.
    pub fn parse(map: &Mapping) -> Result<Layout, OpenError> {
        let u64_at = |at| map.load64(at).ok_or(OpenError::BadSize);
        let u32_at = |at| map.load32(at).ok_or(OpenError::BadSize);
        if u64_at(hdr::MAGIC)? != MAGIC {
            return Err(OpenError::BadMagic);
        }
        let version = u32_at(hdr::VERSION)?;
        if version != LAYOUT_VERSION {
            return Err(OpenError::BadVersion(version));
        }
        let bad = OpenError::BadLayout;
        if u64::from(u32_at(hdr::HEADER_BYTES)?) != HEADER_BYTES {
            return Err(bad("header size"));
        }
        if u64::from(u32_at(hdr::SLOT_BYTES)?) != SLOT_BYTES {
            return Err(bad("slot size"));
        }
        if u64::from(u32_at(hdr::PROBE_SLOTS)?) != PROBE_SLOTS_MAX {
            return Err(bad("probe limit"));
        }
        let slot_count = u64_at(hdr::SLOT_COUNT)?;
        let keys_bytes = u64_at(hdr::KEYS_BYTES)?;
        let values_bytes = u64_at(hdr::VALUES_BYTES)?;
        if slot_count == 0
            || slot_count % SLOTS_PER_KEY != 0
            || slot_count / SLOTS_PER_KEY > KEYS_MAX
        {
            return Err(bad("slot count"));
        }
        if keys_bytes % 8 != 0 || keys_bytes > ARENA_BYTES_MAX {
            return Err(bad("key arena size"));
        }
        if values_bytes % 8 != 0 || values_bytes > ARENA_BYTES_MAX {
            return Err(bad("value arena size"));
        }
        let Some(expected) = Layout::new(slot_count / SLOTS_PER_KEY, keys_bytes, values_bytes)
        else {
            return Err(bad("sizes overflow"));
        };
        // The writer always lays regions out exactly as `Layout::new` does; anything else
        // is not a file this version wrote.
        let found = Layout {
            file_bytes: u64_at(hdr::FILE_BYTES)?,
            slot_count,
            slots_offset: u64_at(hdr::SLOTS_OFFSET)?,
            keys_offset: u64_at(hdr::KEYS_OFFSET)?,
            keys_bytes,
            values_offset: u64_at(hdr::VALUES_OFFSET)?,
            values_bytes,
        };
        if found != expected {
            return Err(bad("region offsets"));
        }
        if found.file_bytes > map.len() as u64 {
            return Err(OpenError::BadSize);
        }
        Ok(found)
    }

    /// Byte offset of slot `index` (which the caller keeps below `slot_count`).
    #[inline]
    pub fn slot_offset(&self, index: u64) -> usize {
        (self.slots_offset + index * SLOT_BYTES) as usize
    }

    /// The byte offset of the `len`-byte key block at `units` (8-byte units) in the key
    /// arena, if it lies wholly inside the arena.
    #[inline]
    pub fn key_block(&self, units: u32, len: usize) -> Option<usize> {
        let start = u64::from(units) * 8;
        let end = start.checked_add(block_bytes(len) as u64)?;
        (end <= self.keys_bytes).then_some((self.keys_offset + start) as usize)
    }

    /// The byte offset of the `bytes`-long block at `units` in the value arena, if it lies
    /// wholly inside the arena.
    #[inline]
    pub fn value_block(&self, units: u32, bytes: usize) -> Option<usize> {
        let start = u64::from(units) * 8;
        let end = start.checked_add(bytes as u64)?;
        (end <= self.values_bytes).then_some((self.values_offset + start) as usize)
    }

    /// The slot a key with hash `hash` starts probing from.
    #[inline]
    pub fn home(&self, hash: u64) -> u64 {
        // Multiply-shift: uses the hash's high bits; the tag uses its low 32.
        ((u128::from(hash) * u128::from(self.slot_count)) >> 64) as u64
    }

    /// How many slots a probe may visit.
    #[inline]
    pub fn probe_limit(&self) -> u64 {
        PROBE_SLOTS_MAX.min(self.slot_count)
    }
}

/// The tag a slot stores for a key with hash `hash`.
#[inline]
pub(crate) fn tag(hash: u64) -> u32 {
    hash as u32
}

fn align_region(offset: u64) -> Option<u64> {
    offset.checked_next_multiple_of(REGION_ALIGN_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_the_extremes() {
        for (k, v) in [(1, 1), (KEY_BYTES_MAX, VALUE_BYTES_MAX), (17, 100)] {
            for here in [false, true] {
                let m = slot::meta(k, v, here);
                assert!(slot::is_live(m));
                assert_eq!((slot::key_len(m), slot::value_len(m)), (k, v));
                assert_eq!(m & slot::VALUE_HERE != 0, here);
                assert_eq!(m & slot::TOMBSTONE, 0);
            }
        }
        assert!(!slot::is_live(0));
        assert!(!slot::is_live(slot::TOMBSTONE));
    }

    #[test]
    fn regions_are_aligned_and_ordered() {
        let l = Layout::new(1000, 24_000, 100_000).unwrap();
        assert_eq!(l.slot_count, 2000);
        assert_eq!(l.slots_offset, HEADER_BYTES);
        assert_eq!(l.keys_offset, (4096 + 2000 * 32_u64).next_multiple_of(4096));
        assert!(l.values_offset >= l.keys_offset + 24_000);
        assert_eq!(l.file_bytes % 4096, 0);
        assert!(l.file_bytes >= l.values_offset + 100_000);
        assert!(Layout::new(u64::MAX / 2, 8, 8).is_none());
    }

    #[test]
    fn homes_stay_in_the_table() {
        let l = Layout::new(3, 8, 8).unwrap();
        for h in [0, 1, u64::MAX, u64::MAX / 3, 1 << 63] {
            assert!(l.home(h) < l.slot_count);
        }
    }

    #[test]
    fn blocks_outside_an_arena_are_refused() {
        let l = Layout::new(10, 64, 128).unwrap();
        assert!(l.key_block(0, 64).is_some());
        assert!(l.key_block(1, 57).is_none(), "8 + 64 > 64");
        assert!(l.key_block(u32::MAX, 1).is_none());
        assert!(l.value_block(15, 8).is_some());
        assert!(l.value_block(16, 8).is_none());
    }
}
