//! Opening a store: recognise it, format a blank device, or refuse foreign data; then
//! rebuild the index, from the snapshot a clean shutdown left or by scanning the log.
//!
//! The scan reads the header of every segment, then every record of every log segment in
//! order, stopping in each segment at the first bytes that are not a valid record of its
//! incarnation (a torn or lost write at the tail). Records are applied by sequence number,
//! so the order segments are read in does not matter, and records at or below the purge
//! point are ignored. Every segment is sealed afterwards: new writes always go to a fresh
//! segment, so whatever garbage follows a torn tail is never mistaken for records later.

use std::time::Instant;

use super::device::{align_up, AlignedBuf, BlockDevice};
use super::format::{self, SegmentHeader, SegmentState, Superblock};
use super::index::{Index, Loc};
use super::space::{SegInfo, SegState, Space};
use super::writer::{write_superblock, SegmentWriter};
use super::{snapshot, uuid_string, Config, OpenError, Shared};

pub(crate) struct Recovered {
    pub sb: Superblock,
    pub index: Index,
    pub space: Space,
    pub next_seq: u64,
}

pub(crate) fn open_or_format(
    dev: &dyn BlockDevice,
    config: &Config,
) -> Result<Recovered, OpenError> {
    let bs = dev.block_size();
    if !bs.is_power_of_two() || !(512..=32 * 1024).contains(&bs) {
        return Err(OpenError::Incompatible(format!(
            "unsupported logical block size {bs}"
        )));
    }
    let min = format::min_device_size(bs);
    if dev.size_bytes() < min {
        return Err(OpenError::TooSmall {
            size_bytes: dev.size_bytes(),
            min_bytes: min,
        });
    }
    let mut head = AlignedBuf::zeroed(format::DATA_OFFSET as usize)?;
    dev.read_at(&mut head, 0)?;
    let sb = format::SUPERBLOCK_OFFSETS
        .iter()
        .filter_map(|&o| Superblock::decode(&head[o as usize..]))
        .max_by_key(|sb| sb.generation);
    let blank = head[..format::BLANK_PROBE_LEN].iter().all(|&b| b == 0);
    match sb {
        _ if config.force_initialize => format(dev, config),
        Some(sb) => open_existing(dev, sb, config),
        None if blank && config.initialize_if_empty => format(dev, config),
        None if blank => Err(OpenError::Blank),
        None => Err(OpenError::ForeignData),
    }
}

fn format(dev: &dyn BlockDevice, _config: &Config) -> Result<Recovered, OpenError> {
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
        uuid_string(&sb.uuid),
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

fn open_existing(
    dev: &dyn BlockDevice,
    mut sb: Superblock,
    config: &Config,
) -> Result<Recovered, OpenError> {
    if dev.size_bytes() < sb.device_size {
        return Err(OpenError::Incompatible(format!(
            "the store was made on {} bytes but the device now has {}",
            sb.device_size,
            dev.size_bytes()
        )));
    }
    let bs = dev.block_size();
    if bs > sb.block_size || sb.block_size % bs != 0 {
        return Err(OpenError::Incompatible(format!(
            "the store uses {}-byte blocks, the device needs {bs}-byte alignment",
            sb.block_size
        )));
    }
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
                    recovered = Some(r);
                }
                Err(why) => log::warn!("index snapshot unusable ({why}); scanning the log instead"),
            }
        }
    }
    let recovered = match recovered {
        Some(r) => r,
        None => scan(dev, &sb, config)?,
    };
    if sb.snapshot.is_some() {
        // The snapshot describes the disk only until the first write: retire it now, before
        // anything else is written. Its segments are free in `recovered.space`.
        sb.snapshot = None;
        sb.generation += 1;
        write_superblock(dev, &sb)?;
    }
    Ok(Recovered { sb, ..recovered })
}

/// Rebuilds the index by reading every log segment.
pub(crate) fn scan(
    dev: &dyn BlockDevice,
    sb: &Superblock,
    config: &Config,
) -> Result<Recovered, OpenError> {
    let started = Instant::now();
    let bs = sb.block_size as usize;
    let seed = format::store_seed(&sb.uuid);
    let mut block = AlignedBuf::zeroed(bs)?;
    let mut logs = Vec::new();
    let mut max_incarnation = 0;
    for segment in 0..sb.segment_count {
        dev.read_at(&mut block, sb.segment_offset(segment))?;
        if let Some(h) = SegmentHeader::decode(&block).filter(|h| h.uuid == sb.uuid) {
            max_incarnation = max_incarnation.max(h.current_incarnation());
            if h.state == SegmentState::Log {
                logs.push((segment, h));
            }
        }
    }
    let progress = config.progress.as_ref().map(|p| &p.0);
    if let Some(p) = progress {
        p.start("recovering segments", logs.len() as u64);
    }
    let mut index = Index::new(sb.segment_count);
    let mut space = Space::new(sb.segment_count, max_incarnation);
    let mut buf = AlignedBuf::zeroed(sb.segment_size as usize)?;
    let (mut max_seq, mut records, mut torn) = (sb.purge_seq, 0u64, 0u32);
    for (i, (segment, header)) in logs.iter().enumerate() {
        let (segment, incarnation) = (*segment, header.current_incarnation());
        dev.read_at(&mut buf, sb.segment_offset(segment))?;
        let mut scanner = format::Scanner::with_runs(&buf[bs..], seed, header.runs(bs));
        let mut any = false;
        for (offset, r) in scanner.by_ref() {
            records += 1;
            if r.seq <= sb.purge_seq {
                continue;
            }
            any = true;
            max_seq = max_seq.max(r.seq);
            let loc = Loc {
                segment,
                offset: (bs + offset) as u32,
            };
            index.apply_recovered(r.key, r.seq, loc, r.kind, r.value.len() as u32);
        }
        if scanner.end == Some(format::ScanEnd::Invalid) {
            torn += 1;
            log::debug!(
                "segment {segment}: log ends at byte {} with torn or stale data",
                bs + scanner.offset
            );
        }
        if any {
            let written = (bs + scanner.offset) as u32;
            space.set(
                segment,
                SegInfo {
                    state: SegState::Sealed,
                    incarnation,
                    written,
                },
            );
        }
        if let Some(p) = progress {
            p.advance(i as u64 + 1, &format!("{} records", index.live_records()));
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    log::info!(
        "scanned {} log segments ({} MiB) in {} ms: {} records read, {} live keys, {} segments with a torn or stale tail",
        logs.len(),
        (logs.len() as u64 * sb.segment_size) >> 20,
        started.elapsed().as_millis(),
        records,
        index.live_records(),
        torn
    );
    Ok(Recovered {
        sb: *sb,
        index,
        space,
        next_seq: max_seq + 1,
    })
}

/// On a device short of free segments, picks up the user log where it stopped: the sealed
/// segment with the most room left is reopened for writing, so the restart wastes no space
/// and a full device keeps its room for deletes. (With free segments to spare, the log
/// starts a fresh segment and the partly filled ones stay sealed, for compaction to merge.)
/// The resumed segment's header gets a resumption: records from its current end on carry a
/// new incarnation, so whatever a torn write left past that end is never read as a record.
/// The header is on stable media before any record is written there.
pub(crate) fn resume_log(shared: &Shared) -> std::io::Result<Option<SegmentWriter>> {
    let block = shared.block_size as usize;
    let space = shared.space.lock();
    if space.free_count() > super::compaction::low_free_segments(space.segment_count()) {
        return Ok(None);
    }
    let candidate = space
        .sealed()
        .map(|(s, info)| (shared.segment_size - info.written as u64, s, info))
        .filter(|&(room, _, _)| room >= 4 * block as u64)
        .max_by_key(|&(room, s, _)| (room, std::cmp::Reverse(s)));
    drop(space);
    let Some((_, segment, info)) = candidate else {
        return Ok(None);
    };
    let base = shared.segment_base(segment);
    let mut buf = AlignedBuf::zeroed(shared.segment_size as usize)?;
    let extent = align_up(info.written as u64, block as u64) as usize;
    shared.dev.read_at(&mut buf[..extent], base)?;
    let Some(header) = SegmentHeader::decode(&buf[..block]).filter(|h| {
        h.uuid == shared.uuid
            && h.state == SegmentState::Log
            && h.current_incarnation() == info.incarnation
    }) else {
        log::warn!("segment {segment}: header unreadable; not resuming it");
        return Ok(None);
    };
    if header.resumed as usize >= format::RESUMPTIONS_MAX {
        return Ok(None);
    }
    let incarnation = shared.space.lock().resume(segment);
    let resumed = header
        .resume(info.written, incarnation)
        .expect("checked above");
    let mut first = AlignedBuf::zeroed(block)?;
    first[..format::SEGMENT_HEADER_LEN].copy_from_slice(&resumed.encode());
    shared.device_write(&first, base)?;
    shared.device_flush()?;
    log::debug!(
        "resumed segment {segment} at byte {} with incarnation {incarnation}",
        info.written
    );
    Ok(Some(SegmentWriter::resume(
        shared,
        buf,
        segment,
        &resumed,
        info.written as usize,
    )))
}
