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

use std::io;
use std::sync::atomic::Ordering;

use super::device::{align_up, AlignedBuf, BlockDevice};
use super::format::{self, SegmentHeader, SegmentState, SnapshotRef, Superblock};
use super::index::{Loc, Restore};
use super::recovery::Recovered;
use super::space::{SegInfo, SegState, Space};
use super::writer::write_superblock;
use super::Shared;

const MAGIC: &[u8; 8] = b"HPKVSNAP";
/// 2: entries in strictly increasing key order (1 had them in no particular order).
const VERSION: u32 = 2;
/// The fewest bytes an entry takes in the stream (a 1-byte key).
const ENTRY_MIN: usize = 2 + 1 + 24;

/// Writes a snapshot of the quiet store and points the superblock at it. The committer and
/// compaction have stopped. If the device has no room, it says so and writes nothing.
pub(crate) fn write_at_shutdown(shared: &Shared) -> io::Result<()> {
    let started = std::time::Instant::now();
    let index = shared.index.read();
    let mut space = shared.space.lock();
    let capacity = shared.segment_capacity() as usize;
    let open = space
        .in_state(SegState::Active)
        .chain(space.in_state(SegState::CompactionOutput))
        .count();
    assert_eq!(open, 0, "a snapshot needs every segment sealed or free");
    // Size it first: the stream records the segment table after the run is allocated.
    let entries_bytes: usize = index.iter_all().map(|e| 2 + e.key().len() + 24).sum();
    let bytes = 8 + 4 + 8 + 8 + 4 + 4 + space.segment_count() as usize * 9 + 8 + entries_bytes;
    let run = bytes.div_ceil(capacity) as u32;
    let Some(first) = space.take_run(run, SegState::Snapshot) else {
        log::warn!("no {run} consecutive free segments for an index snapshot; the next start will scan the log");
        return Ok(());
    };
    let mut stream = Vec::with_capacity(bytes);
    stream.extend_from_slice(MAGIC);
    stream.extend_from_slice(&VERSION.to_le_bytes());
    stream.extend_from_slice(&shared.next_seq.load(Ordering::SeqCst).to_le_bytes());
    stream.extend_from_slice(&shared.sb.lock().purge_seq.to_le_bytes());
    stream.extend_from_slice(&space.next_incarnation().to_le_bytes());
    stream.extend_from_slice(&space.segment_count().to_le_bytes());
    for s in 0..space.segment_count() {
        let info = space.seg(s);
        let state = u8::from(info.state == SegState::Sealed);
        stream.push(state);
        stream.extend_from_slice(&info.incarnation.to_le_bytes());
        stream.extend_from_slice(&(if state == 1 { info.written } else { 0 }).to_le_bytes());
    }
    stream.extend_from_slice(&(index.len() as u64).to_le_bytes());
    for e in index.iter_ordered() {
        stream.extend_from_slice(&(e.key().len() as u16).to_le_bytes());
        stream.extend_from_slice(e.key());
        stream.extend_from_slice(&e.seq.to_le_bytes());
        stream.extend_from_slice(&e.loc.segment.to_le_bytes());
        stream.extend_from_slice(&e.loc.offset.to_le_bytes());
        stream.extend_from_slice(&e.value_len.to_le_bytes());
        stream.extend_from_slice(&e.meta_bits().to_le_bytes());
    }
    assert_eq!(stream.len(), bytes, "snapshot size estimate is off");
    let bs = shared.block_size as usize;
    let mut buf = AlignedBuf::zeroed(shared.segment_size as usize)?;
    for (i, chunk) in stream.chunks(capacity).enumerate() {
        let segment = first + i as u32;
        let header = SegmentHeader::new(
            shared.uuid,
            space.seg(segment).incarnation,
            SegmentState::Snapshot,
            0,
        );
        buf.fill(0);
        buf[..format::SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
        buf[bs..bs + chunk.len()].copy_from_slice(chunk);
        let end = align_up((bs + chunk.len()) as u64, bs as u64) as usize;
        shared.device_write(&buf[..end], shared.segment_base(segment))?;
    }
    shared.device_flush()?;
    let mut sb = shared.sb.lock();
    let mut new = *sb;
    new.generation += 1;
    new.snapshot = Some(SnapshotRef {
        first_segment: first,
        segment_count: run,
        bytes: bytes as u64,
        crc: format::crc(&stream),
    });
    write_superblock(&*shared.dev, &new)?;
    *sb = new;
    log::info!(
        "wrote an index snapshot of {} entries ({} KiB) in {} ms",
        index.len(),
        bytes / 1024,
        started.elapsed().as_millis()
    );
    Ok(())
}

/// Loads the snapshot `snap` describes. Any inconsistency is an error: the caller then
/// scans the log instead.
pub(crate) fn load(
    dev: &dyn BlockDevice,
    sb: &Superblock,
    snap: SnapshotRef,
) -> Result<Recovered, String> {
    let bs = sb.block_size as usize;
    let capacity = sb.segment_size as usize - bs;
    let mut stream = Vec::with_capacity(snap.bytes as usize);
    let mut buf = AlignedBuf::zeroed(sb.segment_size as usize).map_err(|e| e.to_string())?;
    let mut max_incarnation = 0;
    for i in 0..snap.segment_count {
        let segment = snap.first_segment + i;
        let want = (snap.bytes as usize - stream.len()).min(capacity);
        let end = align_up((bs + want) as u64, bs as u64) as usize;
        dev.read_at(&mut buf[..end], sb.segment_offset(segment))
            .map_err(|e| e.to_string())?;
        let h = SegmentHeader::decode(&buf[..bs])
            .filter(|h| h.uuid == sb.uuid && h.state == SegmentState::Snapshot)
            .ok_or_else(|| format!("segment {segment} is not part of a snapshot"))?;
        max_incarnation = max_incarnation.max(h.current_incarnation());
        stream.extend_from_slice(&buf[bs..bs + want]);
    }
    if stream.len() as u64 != snap.bytes || format::crc(&stream) != snap.crc {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader { b: &stream, at: 0 };
    if r.take(8)? != MAGIC || r.u32()? != VERSION {
        return Err("not a snapshot of this version".into());
    }
    let next_seq = r.u64()?;
    if r.u64()? != sb.purge_seq {
        return Err("purge point differs from the superblock".into());
    }
    let next_incarnation = r.u32()?;
    if r.u32()? != sb.segment_count {
        return Err("segment count differs from the superblock".into());
    }
    let mut space = Space::new(
        sb.segment_count,
        next_incarnation.max(max_incarnation + 1) - 1,
    );
    for segment in 0..sb.segment_count {
        let (state, incarnation, written) = (r.u8()?, r.u32()?, r.u32()?);
        let in_run =
            (snap.first_segment..snap.first_segment + snap.segment_count).contains(&segment);
        match state {
            1 if !in_run && written as u64 <= sb.segment_size => space.set(
                segment,
                SegInfo {
                    state: SegState::Sealed,
                    incarnation,
                    written,
                },
            ),
            0 => {}
            _ => return Err(format!("bad state for segment {segment}")),
        }
    }
    let entries = r.u64()?;
    // Sized by the count, unless the stream is too short to hold that many entries.
    let expected = entries.min(((stream.len() - r.at) / ENTRY_MIN) as u64);
    let mut restore = Restore::new(sb.segment_count, expected as usize);
    for _ in 0..entries {
        let key_len = r.u16()? as usize;
        let key = r.take(key_len)?;
        let (seq, segment, offset, value_len, meta) =
            (r.u64()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let sealed = segment < sb.segment_count && space.seg(segment).state == SegState::Sealed;
        let fits = sealed
            && offset as u64 + format::record_len(key_len, value_len as usize) as u64
                <= space.seg(segment).written as u64;
        if !(1..=format::KEY_MAX).contains(&key_len) || !fits || seq >= next_seq {
            return Err("an entry points outside the log".into());
        }
        let loc = Loc { segment, offset };
        // Also refuses a key not above the previous one: out of order, or a duplicate.
        restore
            .push(key, seq, loc, value_len, meta)
            .map_err(|e| e.to_string())?;
    }
    let index = restore.finish();
    if r.at != stream.len() {
        return Err("trailing bytes".into());
    }
    Ok(Recovered {
        sb: *sb,
        index,
        space,
        next_seq,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self.b.get(self.at..self.at + n).ok_or("truncated")?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
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
        let mut head = AlignedBuf::zeroed(format::DATA_OFFSET as usize).unwrap();
        dev.read_at(&mut head, 0).unwrap();
        format::SUPERBLOCK_OFFSETS
            .iter()
            .filter_map(|&o| Superblock::decode(&head[o as usize..]))
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
