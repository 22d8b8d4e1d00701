//! Opening a store: recognise it, format a blank device, or refuse foreign data; then
//! rebuild the index, from the snapshot a clean shutdown left or by scanning the log.
//!
//! The scan reads the header of every segment, then every record of every log segment in
//! order, stopping in each segment at the first bytes that are not a valid record of its
//! incarnation (a torn or lost write at the tail). Records are applied by sequence number,
//! so the order segments are read in does not matter, and records at or below the purge
//! point are ignored. Every segment is sealed afterwards: new writes always go to a fresh
//! segment, so whatever garbage follows a torn tail is never mistaken for records later.

use std::io;
use std::time::Instant;

use crate::config::Config;
use crate::device::{align_up, AlignedBuf, BlockDevice};
use crate::error::{Corruption, Incompatible, OpenError};
use crate::format::{self, SegmentHeader, SegmentState, Superblock};
use crate::index::{Index, Loc};
use crate::num::{seg_u32, u64_of, usize_of};
use crate::segment::SegmentWriter;
use crate::snapshot;
use crate::space::{low_free_segments, SegInfo, SegState, Space};
use crate::store::{write_superblock, Shared};

/// What opening found: the superblock, the index, the segment table and the next
/// sequence number.
pub(crate) struct Recovered {
    pub sb: Superblock,
    pub index: Index,
    pub space: Space,
    pub next_seq: u64,
}

/// Opens the store on `dev`, formatting it if `config` allows and it is blank.
pub(crate) fn open_or_format(
    dev: &dyn BlockDevice,
    config: &Config,
) -> Result<Recovered, OpenError> {
    let bs = dev.block_size();
    if !bs.is_power_of_two() || !(512..=32 * 1024).contains(&bs) {
        return Err(OpenError::Incompatible(Incompatible::BlockSize {
            block_size: bs,
        }));
    }
    let min = format::min_device_size(bs);
    if dev.size_bytes() < min {
        return Err(OpenError::TooSmall {
            size_bytes: dev.size_bytes(),
            min_bytes: min,
        });
    }
    let mut head = AlignedBuf::zeroed(usize_of(format::DATA_OFFSET))?;
    dev.read_at(&mut head, 0)?;
    let sb = format::SUPERBLOCK_OFFSETS
        .iter()
        .filter_map(|&o| Superblock::decode_versioned(&head[usize_of(o)..]))
        .max_by_key(|(sb, _)| sb.generation);
    let blank = head[..format::BLANK_PROBE_LEN].iter().all(|&b| b == 0);
    match sb {
        _ if config.force_initialize => format(dev),
        Some((sb, version)) => open_existing(dev, sb, version, config),
        None if blank && config.initialize_if_empty => format(dev),
        None if blank => Err(OpenError::Blank),
        None => Err(OpenError::ForeignData),
    }
}

fn format(dev: &dyn BlockDevice) -> Result<Recovered, OpenError> {
    let (size, bs) = (dev.size_bytes(), dev.block_size());
    let (segment_size, segment_count) =
        format::plan_geometry(size, bs).ok_or(OpenError::TooSmall {
            size_bytes: size,
            min_bytes: format::min_device_size(bs),
        })?;
    let sb = Superblock {
        uuid: *uuid::Uuid::new_v4().as_bytes(),
        generation: 1,
        block_size: bs,
        device_size: size,
        segment_size,
        segment_count,
        purge_seq: 0,
        created_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        snapshot: None,
    };
    write_superblock(dev, &sb)?;
    log::info!(
        "formatted {} as store {}: {} segments of {} KiB, block size {}",
        dev.describe(),
        format::uuid_string(&sb.uuid),
        segment_count,
        segment_size / 1024,
        bs
    );
    Ok(Recovered {
        sb,
        index: Index::new(segment_count),
        space: Space::new(segment_count, 0),
        next_seq: 1,
    })
}

fn check_device(dev: &dyn BlockDevice, sb: &Superblock) -> Result<(), OpenError> {
    if dev.size_bytes() < sb.device_size {
        return Err(OpenError::Incompatible(Incompatible::Shrunk {
            store_bytes: sb.device_size,
            device_bytes: dev.size_bytes(),
        }));
    }
    let bs = dev.block_size();
    if bs > sb.block_size || sb.block_size % bs != 0 {
        return Err(OpenError::Incompatible(Incompatible::Alignment {
            store_block_size: sb.block_size,
            device_block_size: bs,
        }));
    }
    Ok(())
}

fn open_existing(
    dev: &dyn BlockDevice,
    mut sb: Superblock,
    version: u32,
    config: &Config,
) -> Result<Recovered, OpenError> {
    check_device(dev, &sb)?;
    let started = Instant::now();
    let mut recovered = None;
    if let Some(snap) = sb.snapshot {
        if config.force_read_disk {
            log::info!("force_read_disk: ignoring the index snapshot, scanning the log");
        } else {
            match snapshot::load(dev, &sb, snap) {
                Ok(r) => {
                    log::info!(
                        "loaded the index snapshot of the last clean shutdown: {} records in {} ms",
                        r.index.live_records(),
                        started.elapsed().as_millis()
                    );
                    recovered = Some(Recovered {
                        sb,
                        index: r.index,
                        space: r.space,
                        next_seq: r.next_seq,
                    });
                }
                Err(why) => log::warn!("index snapshot unusable ({why}); scanning the log instead"),
            }
        }
    }
    let recovered = match recovered {
        Some(r) => r,
        None => scan(dev, &sb, config)?,
    };
    if sb.snapshot.is_some() || version < format::FORMAT_VERSION {
        // The snapshot describes the disk only until the first write: retire it now, before
        // anything else is written. Its segments are free in `recovered.space`. A store of
        // an older format gets the current one before any record of it is written.
        if version < format::FORMAT_VERSION {
            log::info!(
                "upgrading the store from format {version} to {}",
                format::FORMAT_VERSION
            );
        }
        sb.snapshot = None;
        sb.generation += 1;
        write_superblock(dev, &sb)?;
    }
    Ok(Recovered { sb, ..recovered })
}

/// The log segments of the store (and the highest incarnation any header carries). A header
/// of this store that is damaged fails the open: its segment's records could be lost.
fn log_segments(
    dev: &dyn BlockDevice,
    sb: &Superblock,
) -> Result<(Vec<(u32, SegmentHeader)>, u32), OpenError> {
    let mut block = AlignedBuf::zeroed(usize_of(u64::from(sb.block_size)))?;
    let mut logs = Vec::new();
    let mut max_incarnation = 0;
    for segment in 0..sb.segment_count {
        dev.read_at(&mut block, sb.segment_offset(segment))?;
        if let Some(h) = SegmentHeader::decode(&block).filter(|h| h.uuid == sb.uuid) {
            max_incarnation = max_incarnation.max(h.current_incarnation());
            if h.state == SegmentState::Log {
                logs.push((segment, h));
            }
        } else if SegmentHeader::is_damaged(&block, &sb.uuid) {
            return Err(OpenError::Corrupt(Corruption::DamagedSegmentHeader {
                segment,
            }));
        }
    }
    Ok((logs, max_incarnation))
}

/// What one segment's scan found.
struct SegmentScan {
    /// Records read, those at or below the purge point included.
    records: u64,
    /// The highest sequence number above the purge point, if any record had one.
    max_seq: Option<u64>,
    /// Bytes from the segment's start to the end of its valid records.
    written: u32,
    torn: bool,
}

/// Applies the valid records of one log segment (its image in `buf`) to `index`. Fails if
/// the records stop at damage rather than at a torn or lost write ([`check_log_end`]).
fn scan_segment(
    buf: &[u8],
    sb: &Superblock,
    segment: u32,
    header: &SegmentHeader,
    index: &mut Index,
) -> Result<SegmentScan, Corruption> {
    let bs = usize_of(u64::from(sb.block_size));
    let seed = format::store_seed(&sb.uuid);
    let mut scanner = format::Scanner::with_runs(&buf[bs..], seed, header.runs(bs));
    let (mut records, mut max_seq) = (0u64, None);
    for (offset, r) in scanner.by_ref() {
        records += 1;
        if r.seq <= sb.purge_seq {
            continue;
        }
        max_seq = max_seq.max(Some(r.seq));
        let loc = Loc {
            segment,
            offset: seg_u32(bs + offset),
        };
        let value_len = seg_u32(r.value.len());
        index.apply_recovered(r.key, r.seq, loc, r.kind, value_len);
    }
    // A segment opened before the last PURGE holds nothing recovery uses; it may be free in
    // the table (PURGE writes no header) and its record area reused by a newer life whose
    // header write a crash lost: what its header says is stale.
    if header.first_seq > sb.purge_seq {
        check_log_end(&scanner, segment, header, bs)?;
    }
    let torn = scanner.end == Some(format::ScanEnd::Invalid);
    if torn {
        log::debug!(
            "segment {segment}: log ends at byte {} with torn or stale data",
            bs + scanner.offset
        );
    }
    Ok(SegmentScan {
        records,
        max_seq,
        written: seg_u32(bs + scanner.offset),
        torn,
    })
}

/// Whether a log segment's records may end where `scanner` stopped. A scan stops at the first
/// bytes that are no valid record; that is the end of the log only if those bytes were never
/// flushed (a torn or lost write) or never written. They were flushed, and are damage, if the
/// header says so (its durable end, or a resumption, lies past them) or if a record past
/// them was written after a flush ([`format::RECORD_FLAG_AFTER_FLUSH`]).
fn check_log_end(
    scanner: &format::Scanner<'_>,
    segment: u32,
    header: &SegmentHeader,
    block_bytes: usize,
) -> Result<(), Corruption> {
    let records_end = u64_of(block_bytes + scanner.offset);
    let durable_end = header.durable_bound();
    if records_end < u64::from(durable_end) {
        return Err(Corruption::LogBeforeDurableEnd {
            segment,
            records_end,
            durable_end,
        });
    }
    if let Some(at) = scanner.flushed_record_after_end() {
        return Err(Corruption::LogBeforeFlushedRecord {
            segment,
            records_end,
            later_record: u64_of(block_bytes + at),
        });
    }
    Ok(())
}

/// Rebuilds the index by reading every log segment.
pub(crate) fn scan(
    dev: &dyn BlockDevice,
    sb: &Superblock,
    config: &Config,
) -> Result<Recovered, OpenError> {
    let started = Instant::now();
    let (logs, max_incarnation) = log_segments(dev, sb)?;
    let progress = config.progress.as_ref().map(|p| &p.0);
    if let Some(p) = progress {
        p.start("recovering segments", u64_of(logs.len()));
    }
    let mut index = Index::new(sb.segment_count);
    let mut space = Space::new(sb.segment_count, max_incarnation);
    let mut buf = AlignedBuf::zeroed(usize_of(sb.segment_size))?;
    let (mut max_seq, mut records, mut torn) = (sb.purge_seq, 0u64, 0u32);
    for (i, (segment, header)) in logs.iter().enumerate() {
        dev.read_at(&mut buf, sb.segment_offset(*segment))?;
        let found =
            scan_segment(&buf, sb, *segment, header, &mut index).map_err(OpenError::Corrupt)?;
        records += found.records;
        torn += u32::from(found.torn);
        if let Some(seq) = found.max_seq {
            max_seq = max_seq.max(seq);
            let info = SegInfo {
                state: SegState::Sealed,
                incarnation: header.current_incarnation(),
                written: found.written,
            };
            space.set(*segment, info);
        }
        if let Some(p) = progress {
            p.advance(u64_of(i) + 1, &format!("{} records", index.live_records()));
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    log::info!(
        "scanned {} log segments ({} MiB) in {} ms: {} records read, {} live keys, {} segments with a torn or stale tail",
        logs.len(),
        (u64_of(logs.len()) * sb.segment_size) >> 20,
        started.elapsed().as_millis(),
        records,
        index.live_records(),
        torn
    );
    Ok(Recovered {
        sb: *sb,
        index,
        space,
        next_seq: max_seq.checked_add(1).expect("sequence numbers exhausted"),
    })
}

/// On a device short of free segments, picks up the user log where it stopped: the sealed
/// segment with the most room left is reopened for writing, so the restart wastes no space
/// and a full device keeps its room for deletes. (With free segments to spare, the log
/// starts a fresh segment and the partly filled ones stay sealed, for compaction to merge.)
/// The resumed segment's header gets a resumption: records from its current end on carry a
/// new incarnation, so whatever a torn write left past that end is never read as a record.
/// The header is on stable media before any record is written there.
/// It runs while the store opens, before any thread starts: a failure fails the open.
pub(crate) fn resume_log(shared: &Shared) -> io::Result<Option<SegmentWriter>> {
    let geometry = &shared.geometry;
    let block = geometry.block();
    let candidate = {
        let space = shared.segments.lock();
        if space.free_count() > low_free_segments(space.segment_count()) {
            return Ok(None);
        }
        space
            .sealed()
            .map(|(s, info)| (geometry.segment_size - u64::from(info.written), s, info))
            .filter(|&(room, _, _)| room >= 4 * u64_of(block))
            .max_by_key(|&(room, s, _)| (room, std::cmp::Reverse(s)))
    };
    let Some((_, segment, info)) = candidate else {
        return Ok(None);
    };
    let base = geometry.segment_base(segment);
    let mut buf = AlignedBuf::zeroed(geometry.segment_len())?;
    let extent = usize_of(align_up(u64::from(info.written), u64_of(block)));
    let dev = shared.disk.dev();
    dev.read_at(&mut buf[..extent], base)?;
    let Some(header) = SegmentHeader::decode(&buf[..block]).filter(|h| {
        h.uuid == geometry.uuid
            && h.state == SegmentState::Log
            && h.current_incarnation() == info.incarnation
    }) else {
        log::warn!("segment {segment}: header unreadable; not resuming it");
        return Ok(None);
    };
    if usize::from(header.resumed) >= format::RESUMPTIONS_MAX {
        return Ok(None);
    }
    let incarnation = shared.segments.lock().resume(segment);
    let resumed = header
        .resume(info.written, incarnation)
        .expect("checked above");
    let mut first = AlignedBuf::zeroed(block)?;
    first[..format::SEGMENT_HEADER_LEN].copy_from_slice(&resumed.encode());
    dev.write_at(&first, base)?;
    dev.flush()?;
    log::debug!(
        "resumed segment {segment} at byte {} with incarnation {incarnation}",
        info.written
    );
    let fill = usize_of(u64::from(info.written));
    Ok(Some(SegmentWriter::resume(
        geometry, buf, segment, &resumed, fill,
    )))
}
