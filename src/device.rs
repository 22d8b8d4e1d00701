//! The behaviour of `/dev/hpkv`: each request of the ABI served with the engine.
//!
//! Writes (the `write()` upsert/append, DELETE, INSERT, `PARTIAL_UPDATE`, PURGE, SYNC) are
//! handed to the engine with their [`Reply`]: the answer goes out once the write is durable,
//! from the thread that committed it. That is the receiving worker itself when no commit is
//! under way (no hand-off); otherwise the worker is free at once and the committing one
//! answers (group commit). Reads are answered by the worker that received them. Each open
//! file has its own listing cursor.

use std::ops::{Bound, ControlFlow};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use slab::Slab;

use hpkv_abi::{
    self as abi, BatchRecords, Command, Decoded, InfoRecord, Profile, RangeBuilder, StatsRecord,
    WriteRequest,
};
use hpkv_engine::{Engine, Error, Records, Versioned, WriteOp};

use crate::cuse::{CallerArea, Handler, IoctlRequest, Reply};
use crate::monitor;
use crate::view::SharedView;

// The ABI's limits and the engine's are one set: every key and value the device accepts can
// be stored, and every stored one can be answered.
const _: () = assert!(abi::KEY_MAX == hpkv_engine::format::KEY_MAX);
const _: () = assert!(abi::VALUE_MAX == hpkv_engine::format::VALUE_MAX);
// Every batch the ABI carries is one the engine takes whole.
const _: () = assert!(abi::PUT_BATCH_RECORDS_MAX <= hpkv_engine::PUTS_RECORDS_MAX);
const _: () = assert!(abi::PUT_BATCH_MAX <= hpkv_engine::PUTS_BYTES_MAX);

/// Open files at most; more opens fail with ENFILE.
pub const OPEN_FILES_MAX: usize = 1 << 16;

pub struct HpkvDevice {
    engine: Arc<Engine>,
    profile: Profile,
    /// The shared view, offered every value a GET reads.
    view: Option<Arc<SharedView>>,
    files: Mutex<Slab<Arc<Mutex<Listing>>>>,
    /// ioctl requests received, every round of the retry protocol counted.
    ioctl_requests: AtomicU64,
    /// Of those, the ones answered with a retry.
    ioctl_retries: AtomicU64,
    /// Who serves the device (`HPKV_IOC_INFO`).
    info: InfoRecord,
}

impl HpkvDevice {
    pub fn new(engine: Arc<Engine>, profile: Profile, view: Option<Arc<SharedView>>) -> HpkvDevice {
        HpkvDevice {
            engine,
            profile,
            view,
            files: Mutex::new(Slab::new()),
            ioctl_requests: AtomicU64::new(0),
            ioctl_retries: AtomicU64::new(0),
            info: InfoRecord::default(),
        }
    }

    /// The device, saying who serves it (`HPKV_IOC_INFO`).
    #[must_use]
    pub fn with_info(self, info: InfoRecord) -> HpkvDevice {
        HpkvDevice { info, ..self }
    }

    /// Answers "retry": the kernel copies the areas named and calls again.
    fn retry(&self, reply: Reply, input: &[abi::Iov], output: &[abi::Iov]) {
        self.ioctl_retries.fetch_add(1, Ordering::Relaxed);
        let areas = |v: &[abi::Iov]| -> Vec<CallerArea> {
            v.iter()
                .map(|a| CallerArea {
                    base: a.base,
                    len: a.len,
                })
                .collect()
        };
        reply.ioctl_retry(&areas(input), &areas(output));
    }

    fn listing(&self, fh: u64) -> Option<Arc<Mutex<Listing>>> {
        let index = usize::try_from(fh).ok()?;
        self.files.lock().get(index).cloned()
    }

    /// Hands a write to the engine; the reply goes out when it is acknowledged.
    fn submit(&self, op: WriteOp, reply: Reply, on_success: impl FnOnce(Reply) + Send + 'static) {
        let traced = monitor::enabled().then(|| monitor::op(&op));
        self.engine.submit(
            op,
            Box::new(move |result| {
                if let Some(what) = traced {
                    log::trace!(
                        "{what}: {}",
                        result
                            .as_ref()
                            .map_or_else(ToString::to_string, |()| "done".into())
                    );
                }
                match result {
                    Ok(()) => on_success(reply),
                    Err(e) => reply.error(errno_of(&e)),
                }
            }),
        );
    }

    /// Hands a batch of puts to the engine; the reply (the number stored) goes out once every
    /// record is acknowledged, in one group commit.
    fn submit_batch(&self, records: &BatchRecords<'_>, reply: Reply) {
        let traced = monitor::enabled().then(|| records.count());
        let records: Records = records.iter().map(|(k, v)| (k.into(), v.into())).collect();
        self.engine.submit_puts(
            records,
            Box::new(move |result| {
                if let Some(count) = traced {
                    match &result {
                        Ok(stored) => log::trace!("batch of {count}: {stored} stored"),
                        Err(e) => log::trace!("batch of {count}: {e}"),
                    }
                }
                match result {
                    Ok(stored) => {
                        let stored = i32::try_from(stored).expect("a batch's count fits an i32");
                        reply.ioctl(stored, &[]);
                    }
                    Err(e) => reply.error(errno_of(&e)),
                }
            }),
        );
    }

    /// The value of `key` for a GET. The caller offers it to the view after answering.
    fn get(&self, key: &[u8]) -> Result<Option<Versioned>, Error> {
        self.engine.get_versioned(key)
    }

    /// Offers a value a GET read to the shared view (after the reply went out).
    fn offer(&self, key: &[u8], got: &Versioned) {
        if let Some(view) = &self.view {
            view.fill(key, got.seq, &got.value);
        }
    }

    fn run(&self, cmd: Command<'_>, arg: u64, out_size: usize, reply: Reply) {
        let done = |r: Reply| r.ioctl(0, &[]);
        match cmd {
            Command::Get { key, key_span } => match self.get(key) {
                Ok(Some(got)) => {
                    let value = &got.value;
                    match abi::get_reply(self.profile, arg, key_span, out_size, value.len()) {
                        Ok(v) => reply.ioctl(0, &[&v.prefix, value, v.suffix]),
                        Err(retry) => self.retry(reply, &retry.input, &retry.output),
                    }
                    self.offer(key, &got);
                }
                Ok(None) => reply.error(libc::ENOENT),
                Err(e) => reply.error(errno_of(&e)),
            },
            Command::SafeGet { key, capacity } => match self.get(key) {
                Ok(Some(got)) => {
                    let r = abi::safe_get_reply(capacity, got.value.len());
                    let value: &[u8] = if r.with_value { &got.value } else { &[] };
                    reply.ioctl(r.result, &[&r.value_len, value]);
                    self.offer(key, &got);
                }
                Ok(None) => reply.error(libc::ENOENT),
                Err(e) => reply.error(errno_of(&e)),
            },
            Command::Delete { key } => {
                self.submit(WriteOp::Delete { key: key.into() }, reply, done);
            }
            Command::Purge => self.submit(WriteOp::Purge, reply, done),
            Command::Sync => self.submit(WriteOp::Sync, reply, done),
            Command::Insert { key, value } => self.submit(
                WriteOp::Put {
                    key: key.into(),
                    value: value.into(),
                },
                reply,
                done,
            ),
            Command::Append { key, suffix } => self.submit(
                WriteOp::Append {
                    key: key.into(),
                    suffix: suffix.into(),
                },
                reply,
                done,
            ),
            Command::Range(req) => {
                let mut builder = RangeBuilder::new(&req);
                let start = match (req.start.is_empty(), req.start_exclusive) {
                    (true, _) => Bound::Unbounded,
                    (false, false) => Bound::Included(req.start),
                    (false, true) => Bound::Excluded(req.start),
                };
                let end = if req.end.is_empty() {
                    Bound::Unbounded
                } else {
                    Bound::Excluded(req.end)
                };
                let scanned = self.engine.scan(start, end, |k, v| {
                    if builder.push(k, v) {
                        ControlFlow::Continue(())
                    } else {
                        ControlFlow::Break(())
                    }
                });
                match scanned {
                    Ok(()) => {
                        let (result, data) = builder.finish();
                        reply.ioctl(result, &[&data]);
                    }
                    Err(e) => reply.error(errno_of(&e)),
                }
            }
            Command::PutBatch(records) => self.submit_batch(&records, reply),
            Command::Stats => reply.ioctl(0, &[&self.stats().encode()]),
            Command::Info => reply.ioctl(0, &[&self.info.encode()]),
        }
    }
}

impl HpkvDevice {
    /// The next bytes of the listing of open file `fh` (its `read()`), or an errno.
    fn read_listing(&self, fh: u64, size: usize) -> Result<Vec<u8>, i32> {
        let listing = self.listing(fh).ok_or(libc::EBADF)?;
        let mut listing = listing.lock();
        listing.read(&self.engine, size).map_err(|e| errno_of(&e))
    }

    /// The STATS record: the engine's numbers and the device layer's own.
    pub fn stats(&self) -> StatsRecord {
        let e = self.engine.stats();
        StatsRecord {
            records: e.records,
            disk_usage_bytes: e.disk_usage_bytes,
            device_size_bytes: e.device_size_bytes,
            free_bytes: e.free_bytes,
            log_bytes: e.log_bytes,
            live_bytes: e.live_bytes,
            segment_size_bytes: e.segment_size_bytes,
            segments_total: e.segments_total,
            segments_free: e.segments_free,
            cache_capacity_bytes: e.cache_capacity_bytes,
            cache_used_bytes: e.cache_used_bytes,
            cache_hits: e.cache_hits,
            cache_misses: e.cache_misses,
            gets: e.gets,
            puts: e.puts,
            appends: e.appends,
            deletes: e.deletes,
            purges: e.purges,
            device_writes: e.device_writes,
            device_flushes: e.device_flushes,
            compactions: e.compactions,
            compaction_bytes_moved: e.compaction_bytes_moved,
            compaction_bytes_reclaimed: e.compaction_bytes_reclaimed,
            uptime_ms: e.uptime_ms,
            abi_profile: self.profile.number(),
            index_heap_bytes: e.index_heap_bytes,
            read_only: u64::from(e.read_only),
            ioctl_requests: self.ioctl_requests.load(Ordering::Relaxed),
            ioctl_retries: self.ioctl_retries.load(Ordering::Relaxed),
        }
    }
}

impl Handler for HpkvDevice {
    fn open(&self, _flags: i32) -> Result<u64, i32> {
        let mut files = self.files.lock();
        if files.len() >= OPEN_FILES_MAX {
            return Err(libc::ENFILE);
        }
        Ok(files.insert(Arc::new(Mutex::new(Listing::default()))) as u64)
    }

    fn release(&self, fh: u64) {
        if let Ok(index) = usize::try_from(fh) {
            self.files.lock().try_remove(index);
        }
    }

    fn read(&self, fh: u64, size: usize, reply: Reply) {
        if monitor::enabled() {
            log::trace!("read {size} bytes of the listing");
        }
        match self.read_listing(fh, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(errno) => reply.error(errno),
        }
    }

    fn write(&self, _fh: u64, data: &[u8], reply: Reply) {
        let n = data.len();
        let parsed = abi::parse_write(data);
        if monitor::enabled() {
            match &parsed {
                Ok(request) => log::trace!("{}", monitor::write(request)),
                Err(e) => log::trace!("write of {n} bytes: {e}"),
            }
        }
        let op = match parsed {
            Ok(WriteRequest::Put { key, value }) => WriteOp::Put {
                key: key.into(),
                value: value.into(),
            },
            Ok(WriteRequest::Append { key, suffix }) => WriteOp::Append {
                key: key.into(),
                suffix: suffix.into(),
            },
            Err(e) => return reply.error(e as i32),
        };
        self.submit(op, reply, move |r| r.written(n));
    }

    fn ioctl(&self, _fh: u64, req: IoctlRequest<'_>, reply: Reply) {
        self.ioctl_requests.fetch_add(1, Ordering::Relaxed);
        match abi::decode_ioctl(self.profile, req.cmd, req.arg, req.input, req.out_size) {
            Decoded::Fail(e) => {
                if monitor::enabled() {
                    log::trace!("ioctl {:#x}: {e}", req.cmd);
                }
                reply.error(e as i32);
            }
            Decoded::Retry(r) => self.retry(reply, &r.input, &r.output),
            Decoded::Ready(cmd) => {
                if monitor::enabled() {
                    log::trace!("{}", monitor::command(&cmd));
                }
                self.run(cmd, req.arg, req.out_size, reply);
            }
        }
    }
}

/// The errno the ABI names for an engine error.
pub fn errno_of(e: &Error) -> i32 {
    if matches!(e, Error::Io(_) | Error::Corrupt(_) | Error::ReadOnly) {
        log::warn!("answering EIO: {e}");
    }
    e.errno()
}

/// Bytes a listing `read()` prepares at most, whatever size the caller asks for.
const LISTING_READ_BYTES_MAX: usize = 1 << 17;

/// Where an open file's listing (`read()`) stands: the key of the line it is in (or last
/// finished) and, for a line a short read cut, how many of its bytes were returned and their
/// CRC32C. The rest of a cut line is rebuilt from the store by the next read, so an open file
/// holds one key and a few words, never a value (up to 100 KiB): 65,536 open files in the
/// middle of lines cost what their keys cost.
#[derive(Default)]
struct Listing {
    /// The key of the current or last line; `None` before the first.
    key: Option<Box<[u8]>>,
    /// Set while the line of `key` is not finished.
    cut: Option<Cut>,
}

#[derive(Clone, Copy)]
struct Cut {
    /// Bytes of the line returned so far (fewer than the line has).
    sent: usize,
    /// CRC32C of those bytes: the value changed since if the rebuilt line's differ.
    crc: u32,
}

/// The bytes `from..to` of the listing line `key ':' value '\n'`, in up to four pieces.
fn line_pieces<'a>(
    key: &'a [u8],
    value: &'a [u8],
    from: usize,
    to: usize,
) -> impl Iterator<Item = &'a [u8]> {
    let mut start = 0;
    [key, b":".as_slice(), value, b"\n".as_slice()]
        .into_iter()
        .filter_map(move |part| {
            let (lo, hi) = (start, start + part.len());
            start = hi;
            let (a, b) = (from.max(lo), to.min(hi));
            (a < b).then(|| &part[a - lo..b - lo])
        })
}

fn line_len(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + 2
}

fn line_crc(key: &[u8], value: &[u8], to: usize) -> u32 {
    line_pieces(key, value, 0, to).fold(0, crc32c::crc32c_append)
}

impl Listing {
    /// The next bytes of the listing, at most `size`; empty at the end.
    fn read(&mut self, engine: &Engine, size: usize) -> Result<Vec<u8>, Error> {
        let size = size.min(LISTING_READ_BYTES_MAX);
        let mut out = Vec::with_capacity(size);
        if size == 0 {
            return Ok(out);
        }
        self.continue_cut_line(engine, size, &mut out)?;
        while out.len() < size {
            let before = out.len();
            let from = match &self.key {
                Some(k) => Bound::Excluded(&k[..]),
                None => Bound::Unbounded,
            };
            let mut last: Option<(Box<[u8]>, Option<Cut>)> = None;
            engine.scan(from, Bound::Unbounded, |key, value| {
                let room = size - out.len();
                let len = line_len(key, value);
                let cut = (len > room).then(|| Cut {
                    sent: room,
                    crc: line_crc(key, value, room),
                });
                out.extend(line_pieces(key, value, 0, len.min(room)).flatten());
                last = Some((key.into(), cut));
                if out.len() >= size {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            if let Some((key, cut)) = last {
                self.key = Some(key);
                self.cut = cut;
            }
            if out.len() == before {
                break; // the end
            }
        }
        assert!(
            out.len() <= size,
            "a listing read returns at most what was asked"
        );
        Ok(out)
    }

    /// Returns the rest of a line a short read cut, as much as fits. If the record changed
    /// meanwhile so that the bytes already returned are not its line's (it was overwritten or
    /// deleted), the line ends where it was cut; an append keeps them and continues.
    fn continue_cut_line(
        &mut self,
        engine: &Engine,
        size: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let (Some(key), Some(cut)) = (&self.key, self.cut) else {
            return Ok(());
        };
        let value = engine.get(key)?;
        let same = value
            .as_deref()
            .filter(|v| line_len(key, v) > cut.sent && line_crc(key, v, cut.sent) == cut.crc);
        let Some(value) = same else {
            log::debug!("a listing line changed while it was read; it ends where it was cut");
            out.push(b'\n');
            self.cut = None;
            return Ok(());
        };
        let len = line_len(key, value);
        let to = len.min(cut.sent + size);
        out.extend(line_pieces(key, value, cut.sent, to).flatten());
        self.cut = (to < len).then(|| Cut {
            sent: to,
            crc: line_crc(key, value, to),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::counting_alloc;
    use hpkv_engine::faulty::FaultyDevice;
    use hpkv_engine::{BlockDevice, Config};

    fn engine() -> Arc<Engine> {
        let dev: Arc<dyn BlockDevice> = Arc::new(FaultyDevice::new(8 << 20, 4096));
        Arc::new(Engine::open(dev, Config::default()).unwrap())
    }

    /// The listing of the store `e`, read `chunk` bytes at a time.
    fn read_all(e: &Engine, l: &mut Listing, chunk: usize) -> Vec<u8> {
        let mut got = vec![];
        loop {
            let part = l.read(e, chunk).unwrap();
            assert!(part.len() <= chunk, "read returned more than asked");
            if part.is_empty() {
                return got;
            }
            got.extend(part);
        }
    }

    #[test]
    fn a_cut_line_survives_an_append_and_ends_early_after_an_overwrite_or_delete() {
        let e = engine();
        e.put(b"a", b"0123456789").unwrap();
        e.put(b"b", b"2").unwrap();
        // Appended while cut: the line goes on with the longer value.
        let mut l = Listing::default();
        assert_eq!(l.read(&e, 5).unwrap(), b"a:012");
        e.append(b"a", b"ab").unwrap();
        assert_eq!(read_all(&e, &mut l, 4), b"3456789ab\nb:2\n");
        // Overwritten while cut: the bytes sent are no longer the value's; the line ends.
        let mut l = Listing::default();
        assert_eq!(l.read(&e, 5).unwrap(), b"a:012");
        e.put(b"a", b"zzzzzzzzzz").unwrap();
        assert_eq!(read_all(&e, &mut l, 100), b"\nb:2\n");
        // Deleted while cut: the same.
        let mut l = Listing::default();
        assert_eq!(l.read(&e, 3).unwrap(), b"a:z");
        e.delete(b"a").unwrap();
        assert_eq!(read_all(&e, &mut l, 100), b"\nb:2\n");
    }

    /// 65,536 open files (the limit), each in the middle of the listing line of a
    /// 102,400-byte value, measured with the counting allocator (`src/ffi/counting_alloc.rs`).
    #[test]
    fn open_files_in_the_middle_of_a_long_line_cost_a_few_hundred_bytes_each() {
        const PER_FILE_BYTES_MAX: i64 = 256;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.img");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let engine = Arc::new(Engine::open_path(&path, Config::default()).unwrap());
        let value: Vec<u8> = b"abcdefghijklmnopqrstuvwxyz"
            .iter()
            .copied()
            .cycle()
            .take(hpkv_abi::VALUE_MAX)
            .collect();
        engine.put(b"big", &value).unwrap();
        engine.put(b"small", b"x").unwrap();
        let mut line = b"big:".to_vec();
        line.extend(&value);
        line.push(b'\n');
        let device = HpkvDevice::new(engine.clone(), Profile::Readme, None);
        // The first read puts the value in the engine's cache (bounded by --cache-mib, shared
        // by all files): not a per-file cost.
        let warm = device.open(0).unwrap();
        assert_eq!(device.read_listing(warm, 64).unwrap(), &line[..64]);
        device.release(warm);

        let mut files = Vec::with_capacity(OPEN_FILES_MAX);
        let before = counting_alloc::thread_net_bytes();
        let per_file = |n: usize| {
            (counting_alloc::thread_net_bytes() - before) / i64::try_from(n).expect("a count")
        };
        for i in 0..OPEN_FILES_MAX {
            let fh = device.open(0).unwrap();
            assert_eq!(device.read_listing(fh, 64).unwrap(), &line[..64]);
            files.push(fh);
            if i == 1023 {
                // Stop early (before gigabytes) if a file holds its line again.
                assert!(
                    per_file(1024) <= PER_FILE_BYTES_MAX,
                    "{} bytes",
                    per_file(1024)
                );
            }
        }
        let cost = per_file(OPEN_FILES_MAX);
        eprintln!("{OPEN_FILES_MAX} open files in the middle of a line: {cost} bytes each");
        assert!(cost <= PER_FILE_BYTES_MAX, "{cost} bytes per open file");
        assert_eq!(
            device.open(0),
            Err(libc::ENFILE),
            "more files than the limit"
        );
        // Each still reads on from where it stopped, to the end.
        for &fh in files.iter().step_by(16_384) {
            let mut rest = Vec::new();
            loop {
                let part = device.read_listing(fh, 4096).unwrap();
                if part.is_empty() {
                    break;
                }
                rest.extend(part);
            }
            assert_eq!(rest.len(), line.len() - 64 + b"small:x\n".len());
            assert_eq!(&rest[..line.len() - 64], &line[64..]);
            assert_eq!(&rest[line.len() - 64..], b"small:x\n");
        }
    }

    #[test]
    fn listing_continues_across_short_reads_and_ends_with_empty() {
        let e = engine();
        e.put(b"b", b"2:x\n").unwrap();
        e.put(b"a", b"1").unwrap();
        e.put(b"ab", b"3").unwrap();
        let want = b"a:1\nab:3\nb:2:x\n\n".to_vec();
        for chunk in [1usize, 3, 7, 100] {
            let mut l = Listing::default();
            let mut got = vec![];
            loop {
                let part = l.read(&e, chunk).unwrap();
                assert!(part.len() <= chunk, "read returned more than asked");
                if part.is_empty() {
                    break;
                }
                got.extend(part);
            }
            assert_eq!(got, want, "chunk size {chunk}");
        }
    }
}
