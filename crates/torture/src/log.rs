//! The acknowledged-operations log: what every workload process was about to do and what it
//! was told, kept where the fault under test cannot reach it.
//!
//! The log is a file on tmpfs (it outlives hpkvd and the workload processes, not the VM) or a
//! block device of its own (it outlives a power-off: written with `O_DIRECT|O_DSYNC`, so a
//! record is on the disk before the operation it announces is issued). Sector 0 holds the
//! header; then one region per role (each writer, the purger, the orchestrator), each written
//! by one process at a time, record after record. A record is 128 bytes, four to a 512-byte
//! sector; appending one rewrites its whole sector (a sector write is atomic, so earlier
//! records of the sector survive any crash). A region ends at its first invalid record.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use memmap2::MmapMut;

/// The unit of atomic writes on the log device.
pub const SECTOR: usize = 512;
/// One record.
pub const RECORD: usize = 128;
const PER_SECTOR: usize = SECTOR / RECORD;
/// Bytes read at a time when scanning a region: a first small read (a region followed by a
/// reader has a few new records at a time), then large ones.
const SCAN_CHUNK_FIRST: usize = 16 << 10;
const SCAN_CHUNK: usize = 1 << 20;

const HEADER_MAGIC: &[u8; 4] = b"HTLH";
const RECORD_MAGIC: &[u8; 4] = b"HTLR";

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An operation about to be issued (`ts_ns` taken before it was).
    Intent = 1,
    /// Its outcome (`errno` 0: acknowledged; `ts_ns` taken after the call returned).
    Outcome = 2,
    /// The verifier observed this writer's keys after the round: `digest` of their state.
    Settle = 3,
    /// The verifier decided an uncertain PURGE (`seq`): `flag` 1 applied, 0 not.
    Decision = 4,
}

/// The operation of an intent or outcome record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `write(fd, "key:value")`.
    WritePut = 1,
    /// `write(fd, "key:+suffix")`.
    WriteAppend = 2,
    /// ioctl INSERT (4).
    Insert = 3,
    /// ioctl `PARTIAL_UPDATE` (5).
    PartialUpdate = 4,
    /// ioctl DELETE (1), readme profile.
    Delete = 5,
    /// ioctl PURGE (3).
    Purge = 6,
    /// No operation (settle and decision records).
    None = 0,
}

impl OpCode {
    fn from_u8(b: u8) -> Option<OpCode> {
        Some(match b {
            0 => OpCode::None,
            1 => OpCode::WritePut,
            2 => OpCode::WriteAppend,
            3 => OpCode::Insert,
            4 => OpCode::PartialUpdate,
            5 => OpCode::Delete,
            6 => OpCode::Purge,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            OpCode::WritePut => "write() put",
            OpCode::WriteAppend => "write() append",
            OpCode::Insert => "INSERT",
            OpCode::PartialUpdate => "PARTIAL_UPDATE",
            OpCode::Delete => "DELETE",
            OpCode::Purge => "PURGE",
            OpCode::None => "none",
        }
    }

    pub fn is_append(self) -> bool {
        matches!(self, OpCode::WriteAppend | OpCode::PartialUpdate)
    }

    pub fn is_put(self) -> bool {
        matches!(self, OpCode::WritePut | OpCode::Insert)
    }
}

/// One log record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub op: OpCode,
    /// The boot (power-off runs) the record was written in; clocks compare within one.
    pub epoch: u32,
    /// The operation's sequence number, per writer, from 1.
    pub seq: u64,
    /// `CLOCK_MONOTONIC`, nanoseconds.
    pub ts_ns: u64,
    pub errno: i32,
    pub key: u32,
    /// The segment length a put or append writes.
    pub len: u32,
    pub digest: u64,
    pub flag: u8,
}

impl Record {
    pub fn new(kind: Kind, op: OpCode, epoch: u32, seq: u64) -> Record {
        Record {
            kind,
            op,
            epoch,
            seq,
            ts_ns: now_ns(),
            errno: 0,
            key: 0,
            len: 0,
            digest: 0,
            flag: 0,
        }
    }

    fn encode(&self, run_id: u64, region: u16, out: &mut [u8]) {
        out.fill(0);
        out[0..4].copy_from_slice(RECORD_MAGIC);
        out[8..16].copy_from_slice(&run_id.to_le_bytes());
        out[16..18].copy_from_slice(&region.to_le_bytes());
        out[18] = self.kind as u8;
        out[19] = self.op as u8;
        out[20..24].copy_from_slice(&self.epoch.to_le_bytes());
        out[24..32].copy_from_slice(&self.seq.to_le_bytes());
        out[32..40].copy_from_slice(&self.ts_ns.to_le_bytes());
        out[40..44].copy_from_slice(&self.errno.to_le_bytes());
        out[44..48].copy_from_slice(&self.key.to_le_bytes());
        out[48..52].copy_from_slice(&self.len.to_le_bytes());
        out[52..60].copy_from_slice(&self.digest.to_le_bytes());
        out[60] = self.flag;
        let crc = crc32c::crc32c(&out[8..RECORD]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(b: &[u8], run_id: u64, region: u16) -> Option<Record> {
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if &b[0..4] != RECORD_MAGIC
            || u32_at(4) != crc32c::crc32c(&b[8..RECORD])
            || u64_at(8) != run_id
            || u16::from_le_bytes([b[16], b[17]]) != region
        {
            return None;
        }
        let kind = match b[18] {
            1 => Kind::Intent,
            2 => Kind::Outcome,
            3 => Kind::Settle,
            4 => Kind::Decision,
            _ => return None,
        };
        Some(Record {
            kind,
            op: OpCode::from_u8(b[19])?,
            epoch: u32_at(20),
            seq: u64_at(24),
            ts_ns: u64_at(32),
            errno: i32::from_le_bytes(b[40..44].try_into().expect("4 bytes")),
            key: u32_at(44),
            len: u32_at(48),
            digest: u64_at(52),
            flag: b[60],
        })
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: comparable between the processes of one boot.
pub fn now_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    u64::try_from(t.tv_sec()).expect("monotonic seconds are positive") * 1_000_000_000
        + u64::try_from(t.tv_nsec()).expect("nanoseconds are positive")
}

/// The log's shape, in sector 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub run_id: u64,
    pub seed: u64,
    /// Writer regions (the purger's and the orchestrator's follow them).
    pub writers: u16,
    pub region_sectors: u64,
    /// Boots so far (power-off runs bump it at every boot).
    pub epoch: u32,
}

impl Header {
    pub fn regions(&self) -> u16 {
        self.writers + 2
    }

    pub fn purger_region(&self) -> u16 {
        self.writers
    }

    pub fn orchestrator_region(&self) -> u16 {
        self.writers + 1
    }

    fn region_offset(&self, region: u16) -> u64 {
        assert!(region < self.regions(), "region {region}");
        (1 + u64::from(region) * self.region_sectors) * SECTOR as u64
    }

    /// The bytes a log of this shape needs.
    pub fn size_bytes(&self) -> u64 {
        self.region_offset(0) + u64::from(self.regions()) * self.region_sectors * SECTOR as u64
    }

    fn encode(&self, out: &mut [u8]) {
        out.fill(0);
        out[0..4].copy_from_slice(HEADER_MAGIC);
        out[8..16].copy_from_slice(&self.run_id.to_le_bytes());
        out[16..24].copy_from_slice(&self.seed.to_le_bytes());
        out[24..26].copy_from_slice(&self.writers.to_le_bytes());
        out[32..40].copy_from_slice(&self.region_sectors.to_le_bytes());
        out[40..44].copy_from_slice(&self.epoch.to_le_bytes());
        let crc = crc32c::crc32c(&out[8..SECTOR]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Option<Header> {
        if &b[0..4] != HEADER_MAGIC || b[4..8] != crc32c::crc32c(&b[8..SECTOR]).to_le_bytes() {
            return None;
        }
        Some(Header {
            run_id: u64::from_le_bytes(b[8..16].try_into().ok()?),
            seed: u64::from_le_bytes(b[16..24].try_into().ok()?),
            writers: u16::from_le_bytes(b[24..26].try_into().ok()?),
            region_sectors: u64::from_le_bytes(b[32..40].try_into().ok()?),
            epoch: u32::from_le_bytes(b[40..44].try_into().ok()?),
        })
    }
}

/// A sector-aligned buffer (direct I/O needs one).
struct Aligned(MmapMut);

impl Aligned {
    fn new(len: usize) -> io::Result<Aligned> {
        Ok(Aligned(MmapMut::map_anon(len)?))
    }
}

/// The log device: a block device (direct, synchronous) or a file (on tmpfs).
pub struct LogDev {
    file: File,
    pub header: Header,
}

fn open_file(path: &Path) -> io::Result<File> {
    let is_block = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    let mut flags = libc::O_DSYNC;
    if is_block {
        flags |= libc::O_DIRECT;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(!is_block)
        .truncate(false)
        .custom_flags(flags)
        .open(path)
}

impl LogDev {
    /// Starts a new log at `path`: writes the header (older records are told apart by their
    /// run id). A file is truncated to the log's size first.
    pub fn create(path: &Path, header: Header) -> io::Result<LogDev> {
        let file = open_file(path)?;
        if file.metadata()?.is_file() {
            file.set_len(0)?;
            file.set_len(header.size_bytes())?;
        } else {
            let size = (&file).seek(io::SeekFrom::End(0))?;
            if size < header.size_bytes() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: {size} bytes, the log needs {}",
                        path.display(),
                        header.size_bytes()
                    ),
                ));
            }
        }
        let dev = LogDev { file, header };
        dev.write_header()?;
        Ok(dev)
    }

    /// Opens the log at `path`.
    pub fn open(path: &Path) -> io::Result<LogDev> {
        let file = open_file(path)?;
        let mut buf = Aligned::new(SECTOR)?;
        file.read_exact_at(&mut buf.0[..SECTOR], 0)?;
        let header = Header::decode(&buf.0[..SECTOR])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no torture log header"))?;
        Ok(LogDev { file, header })
    }

    pub fn write_header(&self) -> io::Result<()> {
        let mut buf = Aligned::new(SECTOR)?;
        self.header.encode(&mut buf.0[..SECTOR]);
        self.file.write_all_at(&buf.0[..SECTOR], 0)
    }

    /// Every record of `region`, in order, up to the first invalid one; and the slot after it.
    pub fn read_region(&self, region: u16) -> io::Result<(Vec<Record>, u64)> {
        self.read_region_from(region, 0)
    }

    /// The records of `region` from slot `from` on (up to the first invalid one), and the
    /// slot after the last: a reader that follows a region reads only what is new.
    pub fn read_region_from(&self, region: u16, from: u64) -> io::Result<(Vec<Record>, u64)> {
        let h = self.header;
        let base = h.region_offset(region);
        let total = usize::try_from(h.region_sectors).expect("region fits memory") * SECTOR;
        let first_sector = usize::try_from(from).expect("slot fits") / PER_SECTOR;
        let mut skip = usize::try_from(from).expect("slot fits") % PER_SECTOR;
        let mut buf = Aligned::new(SCAN_CHUNK)?;
        let mut out = Vec::new();
        let mut done = first_sector * SECTOR;
        let mut chunk = SCAN_CHUNK_FIRST;
        while done < total {
            let n = chunk.min(total - done);
            self.file
                .read_exact_at(&mut buf.0[..n], base + done as u64)?;
            for rec in buf.0[..n].chunks_exact(RECORD) {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                let Some(r) = Record::decode(rec, h.run_id, region) else {
                    let slot = from + out.len() as u64;
                    return Ok((out, slot));
                };
                out.push(r);
            }
            done += n;
            chunk = SCAN_CHUNK;
        }
        let slot = from + out.len() as u64;
        Ok((out, slot))
    }

    /// A writer appending to `region` after its last valid record.
    pub fn region_writer(&self, region: u16) -> io::Result<RegionWriter<'_>> {
        let (records, slot) = self.read_region(region)?;
        let mut w = RegionWriter {
            dev: self,
            region,
            slot,
            sector: Aligned::new(SECTOR)?,
            last_seq: records
                .iter()
                .filter(|r| r.kind == Kind::Intent)
                .map(|r| r.seq)
                .max()
                .unwrap_or(0),
        };
        // The partly filled last sector is kept as it is and completed.
        let in_sector = usize::try_from(slot).expect("slot fits") % PER_SECTOR;
        if in_sector > 0 {
            let at = w.sector_offset();
            self.file.read_exact_at(&mut w.sector.0[..SECTOR], at)?;
            w.sector.0[in_sector * RECORD..SECTOR].fill(0);
        }
        Ok(w)
    }
}

/// Appends records to one region.
pub struct RegionWriter<'a> {
    dev: &'a LogDev,
    region: u16,
    slot: u64,
    sector: Aligned,
    /// The highest operation sequence number of an intent in the region.
    pub last_seq: u64,
}

impl RegionWriter<'_> {
    fn sector_offset(&self) -> u64 {
        let h = self.dev.header;
        h.region_offset(self.region) + (self.slot / PER_SECTOR as u64) * SECTOR as u64
    }

    /// Appends `rec`; it is on the log device (durably, on a block device) when this returns.
    pub fn append(&mut self, rec: &Record) -> io::Result<()> {
        let h = self.dev.header;
        if self.slot >= h.region_sectors * PER_SECTOR as u64 {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("torture log region {} is full", self.region),
            ));
        }
        let in_sector = usize::try_from(self.slot).expect("slot fits") % PER_SECTOR;
        if in_sector == 0 {
            self.sector.0[..SECTOR].fill(0);
        }
        rec.encode(
            h.run_id,
            self.region,
            &mut self.sector.0[in_sector * RECORD..(in_sector + 1) * RECORD],
        );
        let at = self.sector_offset();
        self.dev.file.write_all_at(&self.sector.0[..SECTOR], at)?;
        self.slot += 1;
        if rec.kind == Kind::Intent {
            self.last_seq = self.last_seq.max(rec.seq);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            run_id: 42,
            seed: 7,
            writers: 2,
            region_sectors: 4,
            epoch: 1,
        }
    }

    #[test]
    fn records_survive_reopen_and_regions_are_separate() {
        let dir = std::env::temp_dir().join(format!("torture-log-{}", std::process::id()));
        let dev = LogDev::create(&dir, header()).unwrap();
        {
            let mut w = dev.region_writer(1).unwrap();
            for seq in 1..=6 {
                let mut r = Record::new(Kind::Intent, OpCode::Insert, 1, seq);
                r.key = 3;
                w.append(&r).unwrap();
            }
        }
        // A second writer continues after the sixth record, in the middle of a sector.
        let dev = LogDev::open(&dir).unwrap();
        assert_eq!(dev.header, header());
        let mut w = dev.region_writer(1).unwrap();
        assert_eq!(w.last_seq, 6);
        w.append(&Record::new(Kind::Outcome, OpCode::Insert, 1, 6))
            .unwrap();
        let (recs, slot) = dev.read_region(1).unwrap();
        assert_eq!(slot, 7);
        assert_eq!(recs[6].kind, Kind::Outcome);
        assert!(recs[..6]
            .iter()
            .all(|r| r.key == 3 && r.kind == Kind::Intent));
        assert_eq!(dev.read_region(0).unwrap().0.len(), 0);
        // Reading from a slot gives the rest, and the same end.
        let (rest, end) = dev.read_region_from(1, 5).unwrap();
        assert_eq!((rest.len(), end), (2, 7));
        assert_eq!(rest[1], recs[6]);
        assert_eq!(dev.read_region_from(1, 7).unwrap(), (vec![], 7));
        // The region holds 16 records; the 17th is refused.
        for seq in 7..=15 {
            w.append(&Record::new(Kind::Intent, OpCode::Delete, 1, seq))
                .unwrap();
        }
        assert!(w
            .append(&Record::new(Kind::Intent, OpCode::Delete, 1, 16))
            .is_err());
        assert_eq!(
            dev.read_region(2).unwrap().0.len(),
            0,
            "the purger's region is untouched"
        );
        // A log of another run is not read as this one's.
        let mut other = header();
        other.run_id = 43;
        let reopened = LogDev {
            file: open_file(&dir).unwrap(),
            header: other,
        };
        assert_eq!(reopened.read_region(1).unwrap().0.len(), 0);
        std::fs::remove_file(&dir).unwrap();
    }
}
