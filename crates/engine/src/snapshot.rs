//! Index snapshots: a clean shutdown writes the index and the segment table to free
//! segments, so the next start loads them instead of scanning the whole log.
//!
//! A snapshot is valid only while the disk is exactly as the shutdown left it. The
//! superblock points to it; the next open loads it and retires it (a superblock update)
//! before anything else is written. After a crash there is no snapshot, and recovery scans
//! the log; `force_read_disk` ignores a snapshot and scans anyway.
//!
//! Layout: a run of consecutive segments, each with a header in state `Snapshot`; their
//! record areas, concatenated, hold the stream below, whose length and CRC32C are in the
//! superblock.
//!
//! ```text
//! "HPKVSNAP" u32:version u64:next_seq u64:purge_seq u32:next_incarnation u32:segment_count
//! segment_count × (u8:state u32:incarnation u32:written)        state 0 free, 1 sealed
//! u64:entry_count
//! entry_count × (u16:key_len key u64:seq u32:segment u32:offset u32:value_len u32:meta)
//! ```
//!
//! Integers are little-endian. `meta` is [`Entry::meta_bits`](super::index::Entry::meta_bits):
//! the tombstone flag (bit 31) and the count of dead records. Since version 2 the entries
//! (tombstones included) come in strictly increasing key order, as the ordered index lists
//! them: the load checks that order (which also rules out a duplicate key) instead of looking
//! every key up, and builds the ordered index in one pass (see [`Restore`]). A snapshot of
//! another version is refused, and the log is scanned instead.

use std::fmt;
use std::time::Instant;

use crate::device::{align_up, AlignedBuf, BlockDevice};
use crate::error::Error;
use crate::format::{self, SegmentHeader, SegmentState, SnapshotRef, Superblock};
use crate::index::{Index, Loc, Restore};
use crate::num::{segment_u32, u64_of, usize_of};
use crate::space::{SegInfo, SegState, Space};
use crate::store::Shared;

const MAGIC: &[u8; 8] = b"HPKVSNAP";
/// 2: entries in strictly increasing key order (1 had them in no particular order).
const VERSION: u32 = 2;
/// Bytes of the stream's fixed head: magic, version, `next_seq`, `purge_seq`,
/// `next_incarnation`, `segment_count`.
const HEAD_LEN: usize = 8 + 4 + 8 + 8 + 4 + 4;
/// Bytes of one segment's entry in the table.
const SEGMENT_ENTRY_LEN: usize = 1 + 4 + 4;
/// Bytes of an index entry besides its key.
const ENTRY_FIXED_LEN: usize = 2 + 8 + 4 + 4 + 4 + 4;
/// The fewest bytes an entry takes in the stream (a 1-byte key).
const ENTRY_MIN: usize = ENTRY_FIXED_LEN + 1;

/// What a snapshot gives back: the index, the segment table and the next sequence number.
pub(crate) struct Loaded {
    pub index: Index,
    pub space: Space,
    pub next_seq: u64,
}

/// Why a snapshot was not used (the log is scanned instead).
#[derive(Debug)]
pub(crate) enum SnapshotError {
    Io(std::io::Error),
    /// A segment of the run is not a snapshot segment of this store.
    NotSnapshot {
        segment: u32,
    },
    Checksum,
    Version,
    /// The stream ends inside a field.
    Truncated,
    /// The stream disagrees with the superblock (purge point or segment count).
    Superblock(&'static str),
    /// A segment's entry in the table is impossible.
    SegmentEntry {
        segment: u32,
    },
    /// An index entry is impossible (bad lengths, outside the log, out of order).
    Entry(&'static str),
    TrailingBytes,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io(e) => write!(f, "reading it: {e}"),
            SnapshotError::NotSnapshot { segment } => {
                write!(f, "segment {segment} is not part of a snapshot")
            }
            SnapshotError::Checksum => f.write_str("checksum mismatch"),
            SnapshotError::Version => f.write_str("not a snapshot of this version"),
            SnapshotError::Truncated => f.write_str("truncated"),
            SnapshotError::Superblock(what) => write!(f, "{what} differs from the superblock"),
            SnapshotError::SegmentEntry { segment } => write!(f, "bad state for segment {segment}"),
            SnapshotError::Entry(what) => write!(f, "bad entry: {what}"),
            SnapshotError::TrailingBytes => f.write_str("trailing bytes"),
        }
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for SnapshotError {
    fn from(e: std::io::Error) -> SnapshotError {
        SnapshotError::Io(e)
    }
}

/// The stream's bytes for the quiet store (see the module's text for the layout).
fn encode(index: &Index, space: &Space, next_seq: u64, purge_seq: u64, bytes: usize) -> Vec<u8> {
    let mut stream = Vec::with_capacity(bytes);
    stream.extend_from_slice(MAGIC);
    stream.extend_from_slice(&VERSION.to_le_bytes());
    stream.extend_from_slice(&next_seq.to_le_bytes());
    stream.extend_from_slice(&purge_seq.to_le_bytes());
    stream.extend_from_slice(&space.next_incarnation().to_le_bytes());
    stream.extend_from_slice(&space.segment_count().to_le_bytes());
    for s in 0..space.segment_count() {
        let info = space.seg(s);
        let sealed = info.state == SegState::Sealed;
        stream.push(u8::from(sealed));
        stream.extend_from_slice(&info.incarnation.to_le_bytes());
        stream.extend_from_slice(&(if sealed { info.written } else { 0 }).to_le_bytes());
    }
    stream.extend_from_slice(&u64_of(index.len()).to_le_bytes());
    for e in index.iter_ordered() {
        let key_len = u16::try_from(e.key().len()).expect("keys are at most KEY_MAX bytes");
        stream.extend_from_slice(&key_len.to_le_bytes());
        stream.extend_from_slice(e.key());
        stream.extend_from_slice(&e.seq.to_le_bytes());
        stream.extend_from_slice(&e.loc.segment.to_le_bytes());
        stream.extend_from_slice(&e.loc.offset.to_le_bytes());
        stream.extend_from_slice(&e.value_len.to_le_bytes());
        stream.extend_from_slice(&e.meta_bits().to_le_bytes());
    }
    assert_eq!(stream.len(), bytes, "snapshot size estimate is off");
    stream
}

/// Writes `stream` into the run of segments starting at `first`, each with its header.
fn write_run(shared: &Shared, space: &Space, first: u32, stream: &[u8]) -> Result<(), Error> {
    let geometry = &shared.geometry;
    let bs = geometry.block();
    let capacity = usize_of(geometry.segment_capacity());
    let mut buf = AlignedBuf::zeroed(geometry.segment_len())?;
    for (i, chunk) in stream.chunks(capacity).enumerate() {
        let segment = first + segment_u32(i);
        let incarnation = space.seg(segment).incarnation;
        let header = SegmentHeader::new(geometry.uuid, incarnation, SegmentState::Snapshot, 0);
        buf.fill(0);
        buf[..format::SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
        buf[bs..bs + chunk.len()].copy_from_slice(chunk);
        let end = usize_of(align_up(u64_of(bs + chunk.len()), u64_of(bs)));
        shared
            .disk
            .write(&buf[..end], geometry.segment_base(segment))?;
    }
    shared.disk.flush()
}

/// Writes a snapshot of the quiet store and points the superblock at it. The committer and
/// compaction have stopped; `next_seq` is the committer's last word. If the device has no
/// room, it says so and writes nothing.
pub(crate) fn write_at_shutdown(shared: &Shared, next_seq: u64) -> Result<(), Error> {
    let started = Instant::now();
    let mut sb = shared.sb.lock();
    let index = shared.index.read();
    let mut space = shared.segments.lock();
    let open = space
        .in_state(SegState::Active)
        .chain(space.in_state(SegState::CompactionOutput))
        .count();
    assert_eq!(open, 0, "a snapshot needs every segment sealed or free");
    // Size it first: the stream records the segment table after the run is allocated.
    let entries_bytes: usize = index
        .iter_all()
        .map(|e| ENTRY_FIXED_LEN + e.key().len())
        .sum();
    let segments = usize_of(u64::from(space.segment_count()));
    let bytes = HEAD_LEN + segments * SEGMENT_ENTRY_LEN + 8 + entries_bytes;
    let run = segment_u32(bytes.div_ceil(usize_of(shared.geometry.segment_capacity())));
    let Some(first) = space.take_run(run, SegState::Snapshot) else {
        log::warn!("no {run} consecutive free segments for an index snapshot; the next start will scan the log");
        return Ok(());
    };
    let stream = encode(&index, &space, next_seq, sb.purge_seq, bytes);
    write_run(shared, &space, first, &stream)?;
    let mut new = *sb;
    new.generation += 1;
    new.snapshot = Some(SnapshotRef {
        first_segment: first,
        segment_count: run,
        bytes: u64_of(bytes),
        crc: format::crc(&stream),
    });
    shared.disk.write_superblock(&new)?;
    *sb = new;
    log::info!(
        "wrote an index snapshot of {} entries ({} KiB) in {} ms",
        index.len(),
        bytes / 1024,
        started.elapsed().as_millis()
    );
    Ok(())
}

/// Reads the stream `snap` describes and checks its checksum. Returns it and the highest
/// incarnation of its segments' headers.
fn read_stream(
    dev: &dyn BlockDevice,
    sb: &Superblock,
    snap: SnapshotRef,
) -> Result<(Vec<u8>, u32), SnapshotError> {
    let bs = usize_of(u64::from(sb.block_size));
    let capacity = usize_of(sb.segment_size) - bs;
    // Superblock::decode bounds `bytes` by the run's record areas.
    let total = usize_of(snap.bytes);
    let mut stream = Vec::with_capacity(total);
    let mut buf = AlignedBuf::zeroed(usize_of(sb.segment_size))?;
    let mut max_incarnation = 0;
    for i in 0..snap.segment_count {
        let segment = snap.first_segment + i;
        let want = (total - stream.len()).min(capacity);
        let end = usize_of(align_up(u64_of(bs + want), u64_of(bs)));
        dev.read_at(&mut buf[..end], sb.segment_offset(segment))?;
        let h = SegmentHeader::decode(&buf[..bs])
            .filter(|h| h.uuid == sb.uuid && h.state == SegmentState::Snapshot)
            .ok_or(SnapshotError::NotSnapshot { segment })?;
        max_incarnation = max_incarnation.max(h.current_incarnation());
        stream.extend_from_slice(&buf[bs..bs + want]);
    }
    if stream.len() != total || format::crc(&stream) != snap.crc {
        return Err(SnapshotError::Checksum);
    }
    Ok((stream, max_incarnation))
}

/// Decodes the segment table; every field is bounded by the superblock.
fn decode_table(
    r: &mut Reader<'_>,
    sb: &Superblock,
    snap: SnapshotRef,
    space: &mut Space,
) -> Result<(), SnapshotError> {
    let run = snap.first_segment..snap.first_segment + snap.segment_count;
    for segment in 0..sb.segment_count {
        let (state, incarnation, written) = (r.u8()?, r.u32()?, r.u32()?);
        let fits = (u64::from(sb.block_size)..=sb.segment_size).contains(&u64::from(written));
        match state {
            1 if !run.contains(&segment) && fits && incarnation < space.next_incarnation() => {
                let info = SegInfo {
                    state: SegState::Sealed,
                    incarnation,
                    written,
                };
                space.set(segment, info);
            }
            0 => {}
            _ => return Err(SnapshotError::SegmentEntry { segment }),
        }
    }
    Ok(())
}

/// Decodes the index entries; each must point inside a sealed segment's written bytes.
fn decode_entries(
    r: &mut Reader<'_>,
    sb: &Superblock,
    space: &Space,
    next_seq: u64,
) -> Result<Index, SnapshotError> {
    let entries = r.u64()?;
    // Sized by the count, unless the stream is too short to hold that many entries.
    let expected = usize_of(entries).min(r.left() / ENTRY_MIN);
    let mut restore = Restore::new(sb.segment_count, expected);
    for _ in 0..entries {
        let key_len = usize::from(r.u16()?);
        let key = r.take(key_len)?;
        let (seq, segment, offset, value_len, meta) =
            (r.u64()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let lengths = (1..=format::KEY_MAX).contains(&key_len)
            && usize_of(u64::from(value_len)) <= format::VALUE_MAX;
        if !lengths {
            return Err(SnapshotError::Entry("a key or value length out of bounds"));
        }
        let sealed = segment < sb.segment_count && space.seg(segment).state == SegState::Sealed;
        let len = u64_of(format::record_len(key_len, usize_of(u64::from(value_len))));
        let fits = sealed
            && offset >= sb.block_size
            && u64::from(offset) + len <= u64::from(space.seg(segment).written);
        if !fits || seq >= next_seq || seq <= sb.purge_seq {
            return Err(SnapshotError::Entry("it points outside the log"));
        }
        let loc = Loc { segment, offset };
        // Also refuses a key not above the previous one: out of order, or a duplicate.
        restore
            .push(key, seq, loc, value_len, meta)
            .map_err(SnapshotError::Entry)?;
    }
    Ok(restore.finish())
}

/// Loads the snapshot `snap` describes. Any inconsistency is an error: the caller then
/// scans the log instead.
pub(crate) fn load(
    dev: &dyn BlockDevice,
    sb: &Superblock,
    snap: SnapshotRef,
) -> Result<Loaded, SnapshotError> {
    let (stream, max_incarnation) = read_stream(dev, sb, snap)?;
    let mut r = Reader { b: &stream, at: 0 };
    if r.take(8)? != MAGIC || r.u32()? != VERSION {
        return Err(SnapshotError::Version);
    }
    let next_seq = r.u64()?;
    if r.u64()? != sb.purge_seq || next_seq <= sb.purge_seq {
        return Err(SnapshotError::Superblock("the purge point"));
    }
    let next_incarnation = r.u32()?;
    if r.u32()? != sb.segment_count {
        return Err(SnapshotError::Superblock("the segment count"));
    }
    let last_incarnation = next_incarnation
        .max(max_incarnation.saturating_add(1))
        .checked_sub(1)
        .ok_or(SnapshotError::Superblock("the incarnation"))?;
    let mut space = Space::new(sb.segment_count, last_incarnation);
    decode_table(&mut r, sb, snap, &mut space)?;
    let index = decode_entries(&mut r, sb, &space, next_seq)?;
    if r.left() != 0 {
        return Err(SnapshotError::TrailingBytes);
    }
    Ok(Loaded {
        index,
        space,
        next_seq,
    })
}

/// Reads little-endian fields off the stream, refusing to read past its end.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.at.checked_add(n).ok_or(SnapshotError::Truncated)?;
        let s = self.b.get(self.at..end).ok_or(SnapshotError::Truncated)?;
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::faulty::FaultyDevice;
    use crate::index::Index;
    use crate::{Config, Engine};

    fn superblock(dev: &dyn BlockDevice) -> Superblock {
        let mut head = AlignedBuf::zeroed(usize_of(format::DATA_OFFSET)).unwrap();
        dev.read_at(&mut head, 0).unwrap();
        format::SUPERBLOCK_OFFSETS
            .iter()
            .filter_map(|&o| Superblock::decode(&head[usize_of(o)..]))
            .max_by_key(|sb| sb.generation)
            .unwrap()
    }

    /// A clean shutdown's snapshot loads (rather than failing over to a scan) and gives the
    /// index the scan of the log gives, tombstones and dead counts included.
    #[test]
    fn snapshot_round_trip_matches_a_scan() {
        let dev: Arc<dyn BlockDevice> = Arc::new(FaultyDevice::new(16 << 20, 512));
        let config = Config {
            background_compaction: false,
            ..Config::default()
        };
        let engine = Engine::open(dev.clone(), config.clone()).unwrap();
        for i in 0..3000u32 {
            // Shuffled keys sharing long prefixes, some overwritten, some deleted.
            let k = format!("key_{:08}", i.wrapping_mul(2_654_435_761) % 5000);
            engine.put(k.as_bytes(), &i.to_le_bytes()).unwrap();
            if i % 7 == 0 {
                engine.delete(k.as_bytes()).unwrap();
            }
        }
        engine.close().unwrap();
        let sb = superblock(&*dev);
        let snap = sb.snapshot.expect("a clean shutdown leaves a snapshot");
        let loaded = load(&*dev, &sb, snap).expect("the snapshot loads");
        loaded.index.check_invariants();
        let scanned = Engine::open(
            dev.clone(),
            Config {
                force_read_disk: true,
                ..config
            },
        )
        .unwrap();
        let entries = |ix: &Index| {
            ix.iter_ordered()
                .map(|e| (e.key().to_vec(), e.seq, e.loc, e.value_len, e.meta_bits()))
                .collect::<Vec<_>>()
        };
        let want = entries(&scanned.shared.index.read());
        assert_eq!(entries(&loaded.index), want);
        assert!(want.iter().any(|e| e.4 & (1 << 31) != 0), "tombstones too");
        assert!(
            want.iter().any(|e| e.4 & !(1 << 31) != 0),
            "dead counts too"
        );
        scanned.verify_against_disk().unwrap();
    }
}
