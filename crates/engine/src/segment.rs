//! A segment being filled: a memory image of the whole segment, written to the device in
//! block-aligned pieces. The committer owns one (the user log's active segment), compaction
//! another (its output).

use crate::device::{align_down, align_up, AlignedBuf};
use crate::error::Error;
use crate::format::{self, Kind, SegmentHeader, SegmentState};
use crate::index::Loc;
use crate::num::{seg_u32, u64_of, usize_of};
use crate::store::{Geometry, Shared};

/// How a segment's blocks reach the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// A direct write: the device has the bytes when it returns.
    Direct,
    /// Into the kernel's page cache: the bytes survive this process at once, the media
    /// after the next flush.
    Cached,
}

/// A segment header stating how far its records were on stable media (`durable_end`), to
/// be written only after a flush that covered them ([`SegmentWriter::durable_mark`]).
pub(crate) struct DurableMark {
    base: u64,
    header: SegmentHeader,
}

impl DurableMark {
    /// Writes the header block (no flush: the next one makes it durable; lost, it only
    /// says less). A failure turns the store read-only ([`crate::store::Disk`]).
    pub fn write(&self, shared: &Shared) -> Result<(), Error> {
        let mut block = AlignedBuf::zeroed(shared.geometry.block())?;
        block[..format::SEGMENT_HEADER_LEN].copy_from_slice(&self.header.encode());
        shared.disk.write(&block, self.base)
    }
}

pub(crate) struct SegmentWriter {
    pub segment: u32,
    pub incarnation: u32,
    header: SegmentHeader,
    seed: u32,
    base: u64,
    block: usize,
    buf: AlignedBuf,
    /// Bytes used from the segment's start.
    fill: usize,
    /// Bytes handed to the device so far.
    written: usize,
    /// Bytes from the segment's start known flushed: a record appended here carries
    /// [`format::RECORD_FLAG_AFTER_FLUSH`].
    durable: usize,
    /// The `durable_end` of the last [`DurableMark`] handed out.
    marked: usize,
}

impl SegmentWriter {
    /// Starts segment `segment` in `buf` (a zeroed buffer of the segment's size): its header
    /// goes out with the first records.
    pub fn start(
        geometry: &Geometry,
        mut buf: AlignedBuf,
        segment: u32,
        incarnation: u32,
        first_seq: u64,
    ) -> SegmentWriter {
        assert_eq!(buf.len(), geometry.segment_len());
        let header = SegmentHeader::new(geometry.uuid, incarnation, SegmentState::Log, first_seq);
        buf[..format::SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
        SegmentWriter {
            segment,
            incarnation,
            header,
            seed: geometry.seed,
            base: geometry.segment_base(segment),
            block: geometry.block(),
            buf,
            fill: geometry.block(),
            written: 0,
            // No record precedes the first one.
            durable: geometry.block(),
            marked: 0,
        }
    }

    /// Resumes a segment after a restart: `buf` holds the segment as read from the device,
    /// its records end at `fill`, and `header` (already on the device) says that records
    /// from `fill` on carry `header.current_incarnation()`.
    pub fn resume(
        geometry: &Geometry,
        mut buf: AlignedBuf,
        segment: u32,
        header: &SegmentHeader,
        fill: usize,
    ) -> SegmentWriter {
        assert_eq!(buf.len(), geometry.segment_len());
        assert!(fill >= geometry.block() && fill <= buf.len());
        // Whatever followed the records (torn leftovers) goes; zeros end the log cleanly.
        buf[fill..].fill(0);
        buf[..format::SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
        SegmentWriter {
            segment,
            incarnation: header.current_incarnation(),
            header: *header,
            seed: geometry.seed,
            base: geometry.segment_base(segment),
            block: geometry.block(),
            buf,
            fill,
            written: fill,
            // The resumed header was flushed after the records before `fill` were read.
            durable: fill,
            marked: fill,
        }
    }

    pub fn fits(&self, len: usize) -> bool {
        self.fill + len <= self.buf.len()
    }

    /// Bytes used from the segment's start, as the segment table stores it.
    pub fn fill(&self) -> u32 {
        seg_u32(self.fill)
    }

    /// Bytes still free in the segment.
    pub fn room(&self) -> usize {
        self.buf.len() - self.fill
    }

    /// Appends a record; the caller checked that it [fits](SegmentWriter::fits).
    pub fn append(&mut self, seq: u64, kind: Kind, key: &[u8], value: &[u8]) -> Loc {
        let len = format::record_len(key.len(), value.len());
        assert!(self.fits(len), "record does not fit the segment");
        let at = self.fill;
        let out = &mut self.buf[at..at + len];
        format::encode_record_unsealed(out, self.incarnation, seq, kind, key, value);
        if at == self.durable {
            format::set_after_flush(out);
        }
        format::seal_record(out, self.seed);
        self.fill += len;
        Loc {
            segment: self.segment,
            offset: seg_u32(at),
        }
    }

    /// Whether records appended since the last [`SegmentWriter::write_out`] wait to be written.
    pub fn is_dirty(&self) -> bool {
        self.written < self.fill
    }

    /// Writes every block touched since the last call (the partial last block again), in
    /// one device request. A failure turns the store read-only ([`crate::store::Disk`]).
    pub fn write_out(&mut self, shared: &Shared) -> Result<(), Error> {
        self.write_out_as(shared, WriteMode::Direct)
    }

    /// [`SegmentWriter::write_out`], into the kernel's cache when `mode` says so (the
    /// write-behind log: see DESIGN.md, "Write path").
    pub fn write_out_as(&mut self, shared: &Shared, mode: WriteMode) -> Result<(), Error> {
        if !self.is_dirty() {
            return Ok(());
        }
        let block = u64_of(self.block);
        let start = usize_of(align_down(u64_of(self.written), block));
        let end = usize_of(align_up(u64_of(self.fill), block));
        assert!(start < end && end <= self.buf.len());
        let (bytes, at) = (&self.buf[start..end], self.base + u64_of(start));
        match mode {
            WriteMode::Direct => shared.disk.write(bytes, at)?,
            WriteMode::Cached => shared.disk.write_cached(bytes, at)?,
        }
        self.written = self.fill;
        Ok(())
    }

    /// The device was flushed after the last [`SegmentWriter::write_out`]: everything
    /// written so far is on stable media. The caller must know that flush succeeded.
    pub fn note_flushed(&mut self) {
        self.durable = self.written;
    }

    /// A header saying the records up to `durable_end` bytes from the segment's start were on
    /// stable media; `None` if the last mark said as much. The caller writes it only once a
    /// flush has covered them: by [`SegmentWriter::note_flushed`], or a flush of its own
    /// after the segment was written out.
    pub fn durable_mark(&mut self, durable_end: usize) -> Option<DurableMark> {
        assert!(
            durable_end <= self.written,
            "a durable end past what was written"
        );
        if durable_end <= self.marked {
            return None;
        }
        self.marked = durable_end;
        self.header.durable_end = seg_u32(durable_end);
        // The image's header block says it too, should it be written again.
        self.buf[..format::SEGMENT_HEADER_LEN].copy_from_slice(&self.header.encode());
        Some(DurableMark {
            base: self.base,
            header: self.header,
        })
    }

    /// [`SegmentWriter::durable_mark`] for everything flushed so far.
    pub fn flushed_mark(&mut self) -> Option<DurableMark> {
        self.durable_mark(self.durable)
    }

    /// Bytes used from the segment's start; everything written must be flushed before
    /// the mark is written.
    pub fn written_mark(&mut self) -> Option<DurableMark> {
        self.durable_mark(self.written)
    }

    /// Gives the buffer back, zeroed, for the next segment.
    pub fn into_buf(mut self) -> AlignedBuf {
        let end = usize_of(align_up(u64_of(self.fill), u64_of(self.block)));
        self.buf[..end].fill(0);
        self.buf
    }
}
