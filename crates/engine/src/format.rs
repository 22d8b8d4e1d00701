//! The on-disk format: superblock, segment headers and records (see DESIGN.md, "On-disk format").
//!
//! Everything here is pure encoding and decoding of byte slices, so that recovery, compaction
//! and the fuzz targets share one definition of what a valid structure is. All integers are
//! little-endian. Every structure carries a CRC32C (Castagnoli) over its own bytes.

use crate::le::{u16_at, u32_at, u64_at};
use crate::num::{u64_of, usize_of};
use std::fmt;

/// The version of the on-disk format written, in the superblock and every segment header
/// (DESIGN.md, "Format versions").
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version read. A store of format 1 is upgraded when opened (its
/// superblock is rewritten before any record is), so that a format-1 binary, which would
/// take format 2's flagged records for the end of the log, refuses it.
pub const FORMAT_VERSION_OLDEST: u32 = 1;

/// Bytes of a superblock copy that carry data (the rest of its block is zero).
pub const SUPERBLOCK_LEN: usize = 256;
/// Where the two superblock copies live. Both sit inside the first 40 KiB, the area the
/// module's `initialize_if_empty` looks at, and are aligned for any block size up to 32 KiB.
pub const SUPERBLOCK_OFFSETS: [u64; 2] = [0, 32 * 1024];
/// The first 40 KiB of a blank device are zero (the module's test for "empty").
pub const BLANK_PROBE_LEN: usize = 40 * 1024;
/// Segments start here.
pub const DATA_OFFSET: u64 = 64 * 1024;

/// Bytes of a segment header that carry data (the rest of its block is zero).
pub const SEGMENT_HEADER_LEN: usize = 192;
/// Bytes of a record's header: checksum, incarnation, sequence number, kind, lengths.
pub const RECORD_HEADER_LEN: usize = 24;

/// The longest key.
pub const KEY_MAX: usize = 512;
/// The longest value.
pub const VALUE_MAX: usize = 102_400;
/// The smallest segment a store is made with.
pub const SEGMENT_SIZE_MIN: u64 = 256 * 1024;
/// The largest segment: offsets inside a segment are stored in 32 bits, and whole segments
/// are held in memory (the active one, compaction's), so a superblock claiming more is
/// refused.
pub const SEGMENT_SIZE_MAX: u64 = 16 * 1024 * 1024;
// Offsets inside a segment fit the 32 bits records and the index store them in.
const _: () = assert!(SEGMENT_SIZE_MAX <= 1 << 32);
/// The smallest and largest logical block sizes a store is made with.
pub const BLOCK_SIZE_RANGE: std::ops::RangeInclusive<u32> = 512..=32 * 1024;
/// The largest record: header, longest key, longest value.
pub const RECORD_MAX: usize = RECORD_HEADER_LEN + KEY_MAX + VALUE_MAX;

const SUPERBLOCK_MAGIC: [u8; 8] = *b"HPKVSTOR";
const SEGMENT_MAGIC: [u8; 8] = *b"HPKVSEGM";

/// A store's UUID as text (`8-4-4-4-12` hexadecimal digits).
pub fn uuid_string(uuid: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*uuid).hyphenated().to_string()
}

/// The checksum of every on-disk structure: CRC32C (Castagnoli).
pub fn crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// The CRC seed of a store's records: the CRC of its UUID. Seeding every record's checksum
/// with it means records left on the device by another store (before a forced format)
/// never pass for this store's, whatever their incarnation number.
pub fn store_seed(uuid: &[u8; 16]) -> u32 {
    crc32c::crc32c(uuid)
}

/// The store's identity and geometry. Two copies; the valid one with the highest
/// `generation` wins, so a torn write of one copy loses at most that update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// The store's identity.
    pub uuid: [u8; 16],
    /// Grows by one with every update; the higher valid copy wins.
    pub generation: u64,
    /// The logical block size the store was made with.
    pub block_size: u32,
    /// The device size the store was made on.
    pub device_size: u64,
    /// Bytes of each segment.
    pub segment_size: u64,
    /// Segments in the data area.
    pub segment_count: u32,
    /// Every record with a sequence number at or below this one is gone (PURGE).
    pub purge_seq: u64,
    /// When the store was made, in seconds since 1970.
    pub created_unix_s: u64,
    /// A clean shutdown left an index snapshot that matches the log exactly (see snapshot.rs).
    pub snapshot: Option<SnapshotRef>,
}

/// Where a clean shutdown left its index snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotRef {
    /// The first segment of a run of consecutive segments holding the snapshot.
    pub first_segment: u32,
    /// Segments in the run.
    pub segment_count: u32,
    /// Bytes of the snapshot stream.
    pub bytes: u64,
    /// CRC32C of the stream.
    pub crc: u32,
}

impl Superblock {
    /// The superblock's bytes (DESIGN.md, "Superblock").
    pub fn encode(&self) -> [u8; SUPERBLOCK_LEN] {
        let mut b = [0u8; SUPERBLOCK_LEN];
        b[0..8].copy_from_slice(&SUPERBLOCK_MAGIC);
        b[12..16].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[16..32].copy_from_slice(&self.uuid);
        b[32..40].copy_from_slice(&self.generation.to_le_bytes());
        b[40..44].copy_from_slice(&self.block_size.to_le_bytes());
        b[48..56].copy_from_slice(&self.device_size.to_le_bytes());
        b[56..64].copy_from_slice(&DATA_OFFSET.to_le_bytes());
        b[64..72].copy_from_slice(&self.segment_size.to_le_bytes());
        b[72..76].copy_from_slice(&self.segment_count.to_le_bytes());
        b[80..88].copy_from_slice(&self.purge_seq.to_le_bytes());
        b[88..96].copy_from_slice(&self.created_unix_s.to_le_bytes());
        if let Some(s) = self.snapshot {
            b[96..100].copy_from_slice(&1u32.to_le_bytes());
            b[100..104].copy_from_slice(&s.first_segment.to_le_bytes());
            b[104..108].copy_from_slice(&s.segment_count.to_le_bytes());
            b[108..112].copy_from_slice(&s.crc.to_le_bytes());
            b[112..120].copy_from_slice(&s.bytes.to_le_bytes());
        }
        let c = crc(&b[12..]);
        b[8..12].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// `None` unless `b` holds a superblock of a format read here with a valid checksum.
    pub fn decode(b: &[u8]) -> Option<Superblock> {
        Superblock::decode_versioned(b).map(|(sb, _)| sb)
    }

    /// [`Superblock::decode`], and the format version the superblock was written with.
    pub fn decode_versioned(b: &[u8]) -> Option<(Superblock, u32)> {
        if b.len() < SUPERBLOCK_LEN || b[0..8] != SUPERBLOCK_MAGIC {
            return None;
        }
        let version = u32_at(b, 12);
        if u32_at(b, 8) != crc(&b[12..SUPERBLOCK_LEN]) || !is_read_version(version) {
            return None;
        }
        if u64_at(b, 56) != DATA_OFFSET {
            return None;
        }
        let snapshot = (u32_at(b, 96) == 1).then(|| SnapshotRef {
            first_segment: u32_at(b, 100),
            segment_count: u32_at(b, 104),
            crc: u32_at(b, 108),
            bytes: u64_at(b, 112),
        });
        let sb = Superblock {
            uuid: b[16..32].try_into().expect("16 bytes"),
            generation: u64_at(b, 32),
            block_size: u32_at(b, 40),
            device_size: u64_at(b, 48),
            segment_size: u64_at(b, 64),
            segment_count: u32_at(b, 72),
            purge_seq: u64_at(b, 80),
            created_unix_s: u64_at(b, 88),
            snapshot,
        };
        sb.geometry_is_sane().then_some((sb, version))
    }

    fn geometry_is_sane(&self) -> bool {
        let bs = u64::from(self.block_size);
        self.block_size.is_power_of_two()
            && BLOCK_SIZE_RANGE.contains(&self.block_size)
            && self.segment_size % bs == 0
            && self.segment_size >= u64_of(RECORD_MAX) + bs
            && self.segment_size <= SEGMENT_SIZE_MAX
            && self.segment_count >= MIN_SEGMENTS
            && self
                .segment_size
                .checked_mul(u64::from(self.segment_count))
                .and_then(|bytes| bytes.checked_add(DATA_OFFSET))
                .is_some_and(|end| end <= self.device_size)
            && self.snapshot.is_none_or(|s| {
                s.segment_count >= 1
                    && s.first_segment
                        .checked_add(s.segment_count)
                        .is_some_and(|end| end <= self.segment_count)
                    // The snapshot fits in its segments' record areas (its length sizes a
                    // buffer: a checksum-valid but bogus value must not exhaust memory).
                    && s.bytes <= u64::from(s.segment_count) * (self.segment_size - bs)
            })
    }

    /// The device offset of `segment`'s first byte.
    pub fn segment_offset(&self, segment: u32) -> u64 {
        DATA_OFFSET + u64::from(segment) * self.segment_size
    }
}

/// Whether this binary reads format `version`.
fn is_read_version(version: u32) -> bool {
    (FORMAT_VERSION_OLDEST..=FORMAT_VERSION).contains(&version)
}

/// A store needs room for the user's active segment, compaction's output and reserves.
pub const MIN_SEGMENTS: u32 = 8;

/// Picks the segment size for a device: about 1/256 of it, a power of two between
/// 256 KiB and 16 MiB, so that a segment always holds the largest record.
pub fn choose_segment_size(device_size: u64, block_size: u32) -> u64 {
    let target = (device_size.saturating_sub(DATA_OFFSET) / 256).max(1);
    let size = target
        .next_power_of_two()
        .clamp(SEGMENT_SIZE_MIN, SEGMENT_SIZE_MAX);
    size.max(u64::from(block_size))
}

/// Geometry for a new store on a device of `device_size` bytes, or `None` if it is too small.
pub fn plan_geometry(device_size: u64, block_size: u32) -> Option<(u64, u32)> {
    let mut segment_size = choose_segment_size(device_size, block_size);
    loop {
        let count = device_size.saturating_sub(DATA_OFFSET) / segment_size;
        if count >= u64::from(MIN_SEGMENTS) {
            return Some((segment_size, u32::try_from(count).unwrap_or(u32::MAX)));
        }
        if segment_size / 2 < u64_of(RECORD_MAX) + u64::from(block_size) {
            return None;
        }
        segment_size /= 2;
    }
}

/// The smallest device a store fits on.
pub fn min_device_size(block_size: u32) -> u64 {
    let segment_size = (u64_of(RECORD_MAX) + u64::from(block_size)).next_power_of_two();
    DATA_OFFSET + segment_size * u64::from(MIN_SEGMENTS)
}

/// What a segment header says the segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentState {
    /// Holds log records written under `incarnation`.
    Log,
    /// Emptied by compaction; its records are gone. Kept so incarnations are never reused.
    Free,
    /// Holds part of an index snapshot (see snapshot.rs).
    Snapshot,
}

/// A segment resumed after a restart: from `offset` (bytes from the segment's start) on, its
/// records carry `incarnation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Resumption {
    /// Bytes from the segment's start.
    pub offset: u32,
    /// The incarnation of the records from there on.
    pub incarnation: u32,
}

/// A segment header block whose UUID field differs from the store's in at most this many
/// bits is taken for a damaged header of the store (random UUIDs differ in about 64).
pub const HEADER_DAMAGE_BITS_MAX: u32 = 8;

/// How many times one segment can be resumed; after that it is sealed instead.
pub const RESUMPTIONS_MAX: usize = 15;

/// The first block of every segment that has ever been used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The store the segment belongs to.
    pub uuid: [u8; 16],
    /// Increases every time any segment is (re)opened for writing; records carry it, so
    /// that leftovers of an earlier life of the same segment never pass for current ones.
    pub incarnation: u32,
    /// What the segment holds.
    pub state: SegmentState,
    /// The next sequence number when the segment was opened (diagnostics only; for a
    /// compaction output, the sequence number of its first copy).
    pub first_seq: u64,
    /// Where the segment was resumed after restarts, in order (see [`SegmentHeader::runs`]).
    pub resumptions: [Resumption; RESUMPTIONS_MAX],
    /// How many entries of `resumptions` are used.
    pub resumed: u8,
    /// Bytes from the segment's start that were on stable media when this header was
    /// written (0: nothing said). Written only after a flush that covered them, so a record
    /// before it that fails its checksum is damage, not a torn write (DESIGN.md, Recovery).
    pub durable_end: u32,
}

impl SegmentHeader {
    /// The header of a segment opened with `incarnation`, never resumed.
    pub fn new(
        uuid: [u8; 16],
        incarnation: u32,
        state: SegmentState,
        first_seq: u64,
    ) -> SegmentHeader {
        SegmentHeader {
            uuid,
            incarnation,
            state,
            first_seq,
            resumptions: Default::default(),
            resumed: 0,
            durable_end: 0,
        }
    }

    /// Bytes from the segment's start known to have been on stable media: what the header
    /// says, or the last resumption's offset (a restart resumes a segment only after the
    /// records before that offset were read back, and flushes its new header before
    /// writing more).
    pub fn durable_bound(&self) -> u32 {
        let resumed_at = match self.resumed {
            0 => 0,
            n => self.resumptions[usize::from(n) - 1].offset,
        };
        self.durable_end.max(resumed_at)
    }

    /// The incarnation of the records written last.
    pub fn current_incarnation(&self) -> u32 {
        match self.resumed {
            0 => self.incarnation,
            n => self.resumptions[usize::from(n) - 1].incarnation,
        }
    }

    /// Where each incarnation's records start, as offsets into the record area (which
    /// begins `block_size` bytes into the segment): `[(0, first), (offset, next), ...]`. (A
    /// resumption inside the header block, which only a damaged header can hold, counts
    /// from the record area's start.)
    pub fn runs(&self, block_size: usize) -> Vec<(usize, u32)> {
        let mut runs = vec![(0, self.incarnation)];
        runs.extend(
            self.resumptions[..usize::from(self.resumed)]
                .iter()
                .map(|r| {
                    (
                        usize_of(u64::from(r.offset)).saturating_sub(block_size),
                        r.incarnation,
                    )
                }),
        );
        runs
    }

    /// The header after resuming the segment at `offset` with `incarnation`; `None` when it
    /// has been resumed too often already.
    pub fn resume(&self, offset: u32, incarnation: u32) -> Option<SegmentHeader> {
        let n = usize::from(self.resumed);
        if n >= RESUMPTIONS_MAX {
            return None;
        }
        let mut h = *self;
        h.resumptions[n] = Resumption {
            offset,
            incarnation,
        };
        h.resumed += 1;
        Some(h)
    }

    /// The header's bytes (DESIGN.md, "Segment header").
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[12..16].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[16..32].copy_from_slice(&self.uuid);
        b[32..36].copy_from_slice(&self.incarnation.to_le_bytes());
        let state: u32 = match self.state {
            SegmentState::Log => 1,
            SegmentState::Free => 2,
            SegmentState::Snapshot => 3,
        };
        b[36..40].copy_from_slice(&state.to_le_bytes());
        b[40..48].copy_from_slice(&self.first_seq.to_le_bytes());
        b[48..52].copy_from_slice(&u32::from(self.resumed).to_le_bytes());
        b[52..56].copy_from_slice(&self.durable_end.to_le_bytes());
        for (i, r) in self.resumptions[..usize::from(self.resumed)]
            .iter()
            .enumerate()
        {
            let at = 64 + i * 8;
            b[at..at + 4].copy_from_slice(&r.offset.to_le_bytes());
            b[at + 4..at + 8].copy_from_slice(&r.incarnation.to_le_bytes());
        }
        let c = crc(&b[12..]);
        b[8..12].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// `None` unless `b` starts with a segment header of a format read here with a valid
    /// checksum, sane resumptions and a durable end inside a segment.
    pub fn decode(b: &[u8]) -> Option<SegmentHeader> {
        if b.len() < SEGMENT_HEADER_LEN || b[0..8] != SEGMENT_MAGIC {
            return None;
        }
        if u32_at(b, 8) != crc(&b[12..SEGMENT_HEADER_LEN]) || !is_read_version(u32_at(b, 12)) {
            return None;
        }
        let state = match u32_at(b, 36) {
            1 => SegmentState::Log,
            2 => SegmentState::Free,
            3 => SegmentState::Snapshot,
            _ => return None,
        };
        let resumed = u8::try_from(u32_at(b, 48)).ok()?;
        if usize::from(resumed) > RESUMPTIONS_MAX {
            return None;
        }
        let mut h = SegmentHeader::new(
            b[16..32].try_into().expect("16 bytes"),
            u32_at(b, 32),
            state,
            u64_at(b, 40),
        );
        let mut previous = (0u32, h.incarnation);
        for i in 0..usize::from(resumed) {
            let at = 64 + i * 8;
            let r = Resumption {
                offset: u32_at(b, at),
                incarnation: u32_at(b, at + 4),
            };
            // Offsets and incarnations only ever grow; offsets stay inside a segment.
            let inside = u64::from(r.offset) <= SEGMENT_SIZE_MAX;
            if r.offset < previous.0 || r.incarnation <= previous.1 || !inside {
                return None;
            }
            previous = (r.offset, r.incarnation);
            h.resumptions[i] = r;
        }
        h.resumed = resumed;
        h.durable_end = u32_at(b, 52);
        (u64::from(h.durable_end) <= SEGMENT_SIZE_MAX).then_some(h)
    }

    /// Whether `block`, which does not decode as a segment header, is one of the store with
    /// `uuid` that was damaged: its UUID field is that UUID but for at most
    /// [`HEADER_DAMAGE_BITS_MAX`] bits. A block that was never a header of this store (zeros,
    /// another store's, data from before a forced format) holds another UUID there.
    pub fn is_damaged(block: &[u8], uuid: &[u8; 16]) -> bool {
        let Some(field) = block.get(16..32) else {
            return false;
        };
        let differing: u32 = field
            .iter()
            .zip(uuid)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        differing <= HEADER_DAMAGE_BITS_MAX && SegmentHeader::decode(block).is_none()
    }
}

/// A record's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A key's value.
    Put,
    /// A key's deletion (no value).
    Tombstone,
}

/// A record as found in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Put or tombstone.
    pub kind: Kind,
    /// The record's sequence number.
    pub seq: u64,
    /// The key.
    pub key: &'a [u8],
    /// The value (empty for a tombstone).
    pub value: &'a [u8],
    /// Flag [`RECORD_FLAG_AFTER_FLUSH`]: every record before this one in its segment was on
    /// stable media before this one was written.
    pub after_flush: bool,
}

/// Record flag (byte 17, bit 0): every record before this one in its segment was on stable
/// media before this one was written (the writer had flushed them). A later record with
/// this flag proves an earlier one durable (DESIGN.md, Recovery).
pub const RECORD_FLAG_AFTER_FLUSH: u8 = 1;

impl RecordRef<'_> {
    /// Bytes the record takes on disk.
    pub fn encoded_len(&self) -> usize {
        record_len(self.key.len(), self.value.len())
    }
}

/// Bytes a record of these lengths takes on disk.
pub fn record_len(key_len: usize, value_len: usize) -> usize {
    RECORD_HEADER_LEN + key_len + value_len
}

/// Sets [`RECORD_FLAG_AFTER_FLUSH`] on the record `out` holds ([`encode_record`] with the
/// same `seed`) and seals its checksum again.
pub fn mark_after_flush(out: &mut [u8], seed: u32) {
    set_after_flush(out);
    seal_record(out, seed);
}

/// Sets [`RECORD_FLAG_AFTER_FLUSH`] on an unsealed record ([`encode_record_unsealed`]).
pub(crate) fn set_after_flush(out: &mut [u8]) {
    assert!(out.len() >= RECORD_HEADER_LEN, "a whole record");
    out[17] |= RECORD_FLAG_AFTER_FLUSH;
}

/// Computes the checksum of the record `out` holds (with `seed`) into its header.
pub(crate) fn seal_record(out: &mut [u8], seed: u32) {
    let c = crc32c::crc32c_append(seed, &out[4..]);
    out[0..4].copy_from_slice(&c.to_le_bytes());
}

/// Writes a record into `out` (which must be exactly `record_len` bytes long), without flags.
pub fn encode_record(
    out: &mut [u8],
    seed: u32,
    incarnation: u32,
    seq: u64,
    kind: Kind,
    key: &[u8],
    value: &[u8],
) {
    encode_record_unsealed(out, incarnation, seq, kind, key, value);
    seal_record(out, seed);
}

/// [`encode_record`] without the checksum: flags may still be set before [`seal_record`]
/// (the log's writer marks a record after a flush so, with one checksum computed).
pub(crate) fn encode_record_unsealed(
    out: &mut [u8],
    incarnation: u32,
    seq: u64,
    kind: Kind,
    key: &[u8],
    value: &[u8],
) {
    assert!(
        (1..=KEY_MAX).contains(&key.len()),
        "key length out of bounds"
    );
    assert!(value.len() <= VALUE_MAX, "value length out of bounds");
    assert!(
        (kind == Kind::Put) != value.is_empty(),
        "a put has a value, a tombstone none"
    );
    assert_eq!(out.len(), record_len(key.len(), value.len()));
    out[4..8].copy_from_slice(&incarnation.to_le_bytes());
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out[16] = match kind {
        Kind::Put => 1,
        Kind::Tombstone => 2,
    };
    out[17] = 0;
    let key_len = u16::try_from(key.len()).expect("bounded by KEY_MAX");
    let value_len = u32::try_from(value.len()).expect("bounded by VALUE_MAX");
    out[18..20].copy_from_slice(&key_len.to_le_bytes());
    out[20..24].copy_from_slice(&value_len.to_le_bytes());
    out[24..24 + key.len()].copy_from_slice(key);
    out[24 + key.len()..].copy_from_slice(value);
}

/// Why a scan stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Zeroes: the end of what was written.
    Clean,
    /// Something that is not a valid record of this incarnation: a torn or lost write at the
    /// tail, or leftovers of an earlier incarnation.
    Invalid,
}

impl fmt::Display for ScanEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScanEnd::Clean => "clean end",
            ScanEnd::Invalid => "torn or stale data",
        })
    }
}

/// Decodes the record at the start of `b`, if it is a valid record of `incarnation` in the
/// store whose [`store_seed`] is `seed`.
///
/// # Errors
/// Why there is no such record there: zeroes ([`ScanEnd::Clean`]) or anything else.
pub fn decode_record(b: &[u8], seed: u32, incarnation: u32) -> Result<RecordRef<'_>, ScanEnd> {
    match decode_record_any_incarnation(b, seed)? {
        (inc, r) if inc == incarnation => Ok(r),
        _ => Err(ScanEnd::Invalid),
    }
}

/// Decodes the record at the start of `b` whatever its incarnation (readers that already
/// know which record they want check its sequence number instead).
///
/// # Errors
/// As [`decode_record`].
pub fn decode_record_any_incarnation(b: &[u8], seed: u32) -> Result<(u32, RecordRef<'_>), ScanEnd> {
    if b.len() < RECORD_HEADER_LEN {
        return Err(if b.iter().all(|&x| x == 0) {
            ScanEnd::Clean
        } else {
            ScanEnd::Invalid
        });
    }
    let header = &b[..RECORD_HEADER_LEN];
    if header.iter().all(|&x| x == 0) {
        return Err(ScanEnd::Clean);
    }
    let kind = match header[16] {
        1 => Kind::Put,
        2 => Kind::Tombstone,
        _ => return Err(ScanEnd::Invalid),
    };
    let key_len = usize::from(u16_at(header, 18));
    let value_len = usize_of(u64::from(u32_at(header, 20)));
    let lengths_ok = (1..=KEY_MAX).contains(&key_len)
        && value_len <= VALUE_MAX
        && (kind == Kind::Put) == (value_len > 0)
        && header[17] & !RECORD_FLAG_AFTER_FLUSH == 0;
    if !lengths_ok {
        return Err(ScanEnd::Invalid);
    }
    let len = record_len(key_len, value_len);
    if len > b.len() || u32_at(header, 0) != crc32c::crc32c_append(seed, &b[4..len]) {
        return Err(ScanEnd::Invalid);
    }
    let record = RecordRef {
        kind,
        seq: u64_at(header, 8),
        key: &b[RECORD_HEADER_LEN..RECORD_HEADER_LEN + key_len],
        value: &b[RECORD_HEADER_LEN + key_len..len],
        after_flush: header[17] & RECORD_FLAG_AFTER_FLUSH != 0,
    };
    Ok((u32_at(header, 4), record))
}

/// Iterates over the valid records at the start of `b` (a segment's record area), stopping
/// at the first bytes that do not begin a valid record of the incarnation expected there.
pub struct Scanner<'a> {
    buf: &'a [u8],
    seed: u32,
    /// (offset, incarnation): from each offset on, records carry that incarnation.
    runs: Vec<(usize, u32)>,
    /// Where the next record would start.
    pub offset: usize,
    /// Why the scan stopped, once it has.
    pub end: Option<ScanEnd>,
}

impl<'a> Scanner<'a> {
    /// A scanner of records that all carry `incarnation`.
    pub fn new(buf: &'a [u8], seed: u32, incarnation: u32) -> Self {
        Self::with_runs(buf, seed, vec![(0, incarnation)])
    }

    /// A scanner of a resumed segment's records ([`SegmentHeader::runs`]).
    pub fn with_runs(buf: &'a [u8], seed: u32, runs: Vec<(usize, u32)>) -> Self {
        assert!(
            runs.first().is_some_and(|r| r.0 == 0),
            "the first run starts the record area"
        );
        Scanner {
            buf,
            seed,
            runs,
            offset: 0,
            end: None,
        }
    }

    fn incarnation_at(&self, offset: usize) -> u32 {
        let i = self.runs.partition_point(|r| r.0 <= offset);
        self.runs[i.max(1) - 1].1
    }

    /// The valid record at `offset`, as a scan reaching it would take it: of the
    /// incarnation expected there, not spanning a resumption point.
    fn record_at(&self, offset: usize) -> Option<RecordRef<'a>> {
        let buf: &'a [u8] = self.buf;
        let r = decode_record(buf.get(offset..)?, self.seed, self.incarnation_at(offset)).ok()?;
        let end = offset + r.encoded_len();
        let spans = self.runs.iter().any(|&(at, _)| at > offset && at < end);
        (!spans).then_some(r)
    }

    /// Once the scan has stopped: the offset of a valid record past where it stopped that
    /// carries [`RECORD_FLAG_AFTER_FLUSH`], if any. Such a record was written after the bytes
    /// where the scan stopped had been flushed: they are damage, not a torn write. Looks at
    /// every byte offset (the bytes at the stop tell nothing trustworthy about lengths).
    pub fn flushed_record_after_end(&self) -> Option<usize> {
        assert!(self.end.is_some(), "the scan has stopped");
        let last = self.buf.len().checked_sub(RECORD_HEADER_LEN)?;
        (self.offset + 1..=last).find(|&at| {
            let b = &self.buf[at..];
            // Cheap filters first: the flag, a kind, and the incarnation expected here.
            b[17] == RECORD_FLAG_AFTER_FLUSH
                && matches!(b[16], 1 | 2)
                && u32_at(b, 4) == self.incarnation_at(at)
                && self.record_at(at).is_some_and(|r| r.after_flush)
        })
    }
}

impl<'a> Iterator for Scanner<'a> {
    /// The record and its offset in the buffer.
    type Item = (usize, RecordRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.end.is_some() {
            return None;
        }
        let incarnation = self.incarnation_at(self.offset);
        let Some(rest) = self.buf.get(self.offset..) else {
            self.end = Some(ScanEnd::Invalid);
            return None;
        };
        match decode_record(rest, self.seed, incarnation) {
            // A record never spans the point where a resumption began.
            Ok(r)
                if self
                    .runs
                    .iter()
                    .any(|&(at, _)| at > self.offset && at < self.offset + r.encoded_len()) =>
            {
                self.end = Some(ScanEnd::Invalid);
                None
            }
            Ok(r) => {
                let at = self.offset;
                self.offset += r.encoded_len();
                Some((at, r))
            }
            Err(end) => {
                self.end = Some(end);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb() -> Superblock {
        Superblock {
            uuid: [7; 16],
            generation: 3,
            block_size: 4096,
            device_size: 1 << 30,
            segment_size: 4 << 20,
            segment_count: 255,
            purge_seq: 9,
            created_unix_s: 1,
            snapshot: Some(SnapshotRef {
                first_segment: 3,
                segment_count: 2,
                bytes: 77,
                crc: 5,
            }),
        }
    }

    /// Found by `fuzz/record_scan`: a superblock with a valid checksum whose segment size
    /// times segment count passes 2^64 made the geometry check overflow (a panic with
    /// overflow checks; without, a wrapped product that passed for sane).
    #[test]
    fn superblock_with_an_overflowing_geometry_is_refused() {
        let huge = Superblock {
            segment_size: 1 << 61,
            segment_count: 8,
            snapshot: None,
            ..sb()
        };
        assert_eq!(Superblock::decode(&huge.encode()), None);
        let huge = Superblock {
            segment_size: u64::MAX - (u64::MAX % 4096),
            segment_count: u32::MAX,
            device_size: u64::MAX,
            snapshot: None,
            ..sb()
        };
        assert_eq!(Superblock::decode(&huge.encode()), None);
    }

    #[test]
    fn superblock_round_trips_and_rejects_any_flipped_bit() {
        let s = sb();
        let enc = s.encode();
        assert_eq!(Superblock::decode(&enc), Some(s));
        for byte in 0..120 {
            let mut bad = enc;
            bad[byte] ^= 0x10;
            assert_eq!(
                Superblock::decode(&bad),
                None,
                "flip in byte {byte} went unnoticed"
            );
        }
    }

    #[test]
    fn superblock_with_an_oversized_snapshot_is_rejected() {
        let mut s = sb();
        s.snapshot = Some(SnapshotRef {
            first_segment: 3,
            segment_count: 2,
            bytes: 2 * (4 << 20),
            crc: 5,
        });
        assert_eq!(Superblock::decode(&s.encode()), None);
    }

    #[test]
    fn superblock_with_impossible_geometry_is_rejected() {
        let mut s = sb();
        s.segment_count = 300; // 300 * 4 MiB does not fit in 1 GiB
        assert_eq!(Superblock::decode(&s.encode()), None);
    }

    #[test]
    fn record_round_trip_and_incarnation_check() {
        let mut buf = vec![0u8; record_len(3, 5) + 10];
        encode_record(
            &mut buf[..record_len(3, 5)],
            9,
            42,
            1000,
            Kind::Put,
            b"key",
            b"value",
        );
        let r = decode_record(&buf, 9, 42).unwrap();
        assert_eq!(
            (r.kind, r.seq, r.key, r.value),
            (Kind::Put, 1000, &b"key"[..], &b"value"[..])
        );
        assert_eq!(decode_record(&buf, 9, 43), Err(ScanEnd::Invalid));
        assert_eq!(
            decode_record(&buf, 8, 42),
            Err(ScanEnd::Invalid),
            "another store's record"
        );
        let rest = &buf[record_len(3, 5)..];
        assert_eq!(decode_record(rest, 9, 42), Err(ScanEnd::Clean));
    }

    #[test]
    fn torn_record_is_invalid() {
        let len = record_len(4, 2000);
        let mut buf = vec![0u8; len];
        encode_record(&mut buf, 0, 1, 1, Kind::Put, b"abcd", &[9u8; 2000]);
        // The last 512-byte sector did not make it to the disk.
        for b in &mut buf[len - 500..] {
            *b = 0;
        }
        assert_eq!(decode_record(&buf, 0, 1), Err(ScanEnd::Invalid));
    }

    #[test]
    fn scanner_stops_at_first_invalid_record() {
        let mut buf = vec![0u8; 4096];
        let a = record_len(1, 1);
        encode_record(&mut buf[..a], 0, 5, 1, Kind::Put, b"a", b"1");
        encode_record(
            &mut buf[a..a + record_len(1, 0)],
            0,
            5,
            2,
            Kind::Tombstone,
            b"a",
            b"",
        );
        let b_at = a + record_len(1, 0);
        encode_record(&mut buf[b_at..b_at + a], 0, 4, 3, Kind::Put, b"b", b"2"); // stale incarnation
        let mut s = Scanner::new(&buf, 0, 5);
        let seqs: Vec<u64> = s.by_ref().map(|(_, r)| r.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(s.end, Some(ScanEnd::Invalid));
        assert_eq!(s.offset, b_at);
    }

    /// Three records a, b, c of incarnation 5 at the start of a 4 KiB buffer; `flag_c` sets
    /// the after-flush flag on c. Returns the buffer and the offsets of b and c.
    fn three_records(flag_c: bool) -> (Vec<u8>, usize, usize) {
        let mut buf = vec![0u8; 4096];
        let len = record_len(1, 100);
        for (i, key) in [b"a", b"b", b"c"].iter().enumerate() {
            let at = i * len;
            let seq = u64::try_from(i).unwrap() + 1;
            encode_record(
                &mut buf[at..at + len],
                7,
                5,
                seq,
                Kind::Put,
                *key,
                &[1; 100],
            );
        }
        if flag_c {
            mark_after_flush(&mut buf[2 * len..3 * len], 7);
        }
        (buf, len, 2 * len)
    }

    #[test]
    fn a_flagged_record_after_damage_proves_the_damage_durable() {
        let (mut buf, b_at, c_at) = three_records(true);
        let (_, r) = decode_record_any_incarnation(&buf[c_at..], 7).unwrap();
        assert!(r.after_flush, "the flag survives a round trip");
        buf[b_at + 40] ^= 4;
        let mut s = Scanner::new(&buf, 7, 5);
        assert_eq!(s.by_ref().count(), 1);
        assert_eq!((s.end, s.offset), (Some(ScanEnd::Invalid), b_at));
        assert_eq!(s.flushed_record_after_end(), Some(c_at));
        // Another incarnation expected there: leftovers, no proof.
        let mut s = Scanner::with_runs(&buf, 7, vec![(0, 5), (c_at, 6)]);
        assert_eq!(s.by_ref().count(), 1);
        assert_eq!(s.flushed_record_after_end(), None);
    }

    #[test]
    fn damage_followed_by_unflagged_records_looks_like_a_torn_write() {
        let (mut buf, b_at, _) = three_records(false);
        buf[b_at + 40] ^= 4;
        let mut s = Scanner::new(&buf, 7, 5);
        assert_eq!(s.by_ref().count(), 1);
        assert_eq!(s.flushed_record_after_end(), None);
        // Flags other than after-flush are still refused.
        let (mut buf, _, c_at) = three_records(true);
        buf[c_at + 17] |= 2;
        assert_eq!(
            decode_record(&buf[c_at..], 7, 5),
            Err(ScanEnd::Invalid),
            "checksum aside, an unknown flag"
        );
    }

    #[test]
    fn segment_header_durable_end_and_damage() {
        let mut h = SegmentHeader::new([3; 16], 7, SegmentState::Log, 100);
        h.durable_end = 70_000;
        assert_eq!(SegmentHeader::decode(&h.encode()), Some(h));
        assert_eq!(h.durable_bound(), 70_000);
        let r = h.resume(90_000, 9).unwrap();
        assert_eq!(
            r.durable_bound(),
            90_000,
            "a resumption is a durable end too"
        );
        let mut block = vec![0u8; 512];
        block[..SEGMENT_HEADER_LEN].copy_from_slice(&h.encode());
        assert!(
            !SegmentHeader::is_damaged(&block, &[3; 16]),
            "a good header"
        );
        for bit in [0, 8 * 20, 8 * 52 + 3, 8 * SEGMENT_HEADER_LEN - 1] {
            let mut bad = block.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::is_damaged(&bad, &[3; 16]), "bit {bit}");
            assert!(
                !SegmentHeader::is_damaged(&bad, &[0x5a; 16]),
                "another store's"
            );
        }
        assert!(
            !SegmentHeader::is_damaged(&[0; 512], &[3; 16]),
            "never written"
        );
        let mut old = h.encode();
        old[12..16].copy_from_slice(&1u32.to_le_bytes());
        let c = crc(&old[12..]);
        old[8..12].copy_from_slice(&c.to_le_bytes());
        assert!(SegmentHeader::decode(&old).is_some(), "format 1 is read");
    }

    #[test]
    fn segment_header_round_trips_with_resumptions() {
        let h = SegmentHeader::new([3; 16], 7, SegmentState::Log, 100);
        assert_eq!(SegmentHeader::decode(&h.encode()), Some(h));
        let r = h
            .resume(4096 + 300, 9)
            .unwrap()
            .resume(4096 + 900, 12)
            .unwrap();
        assert_eq!(SegmentHeader::decode(&r.encode()), Some(r));
        assert_eq!(r.current_incarnation(), 12);
        assert_eq!(r.runs(4096), vec![(0, 7), (300, 9), (900, 12)]);
        let mut full = h;
        for i in 0..u32::try_from(RESUMPTIONS_MAX).unwrap() {
            full = full.resume(5000 + i, 10 + i).unwrap();
        }
        assert_eq!(full.resume(9999, 99), None);
    }

    #[test]
    fn a_resumed_segment_rejects_leftovers_of_the_old_incarnation() {
        // Incarnation 5 wrote a and b; the scan after a crash ended after a (b was torn, but
        // its bytes are valid: say the disk kept them after all). Resumed at that point with
        // incarnation 6, which wrote c over part of b's place... before crashing again.
        let (a, b) = (record_len(1, 1), record_len(1, 2));
        let mut buf = vec![0u8; 4096];
        encode_record(&mut buf[..a], 0, 5, 1, Kind::Put, b"a", b"1");
        encode_record(&mut buf[a..a + b], 0, 5, 2, Kind::Put, b"b", b"22");
        let runs = vec![(0, 5), (a, 6)];
        let seqs: Vec<u64> = Scanner::with_runs(&buf, 0, runs.clone())
            .map(|(_, r)| r.seq)
            .collect();
        assert_eq!(
            seqs,
            vec![1],
            "b is a leftover of incarnation 5 past the resumption point"
        );
        encode_record(&mut buf[a..a + a], 0, 6, 3, Kind::Put, b"c", b"3");
        let seqs: Vec<u64> = Scanner::with_runs(&buf, 0, runs)
            .map(|(_, r)| r.seq)
            .collect();
        assert_eq!(seqs, vec![1, 3]);
    }

    #[test]
    fn geometry_for_common_sizes() {
        assert_eq!(plan_geometry(1 << 30, 4096), Some((4 << 20, 255)));
        let small = min_device_size(4096);
        let (seg, count) = plan_geometry(small, 4096).unwrap();
        assert!(seg >= (RECORD_MAX + 4096) as u64);
        assert_eq!(count, MIN_SEGMENTS);
        assert_eq!(plan_geometry(small - 1, 4096), None);
    }
}
