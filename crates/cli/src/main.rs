//! hpkvctl: the command line of `/dev/hpkv`, over [`hpkv_client::Client`].
//!
//! Keys and values are taken from the command line as raw bytes (any byte but NUL), or with
//! escapes (`-e`, any byte), values also from a file or standard input (binary safe). Output
//! formats are in [`mod@format`]: escaped on a terminal, raw otherwise, JSON or NUL-separated on
//! request. Messages go to standard error as `hpkvctl: <what>: <why>`; the exit codes are in
//! [`failure`]. The dump format of `dump` and `load` is described in [`mod@dump`].

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use hpkv_abi as abi;
use hpkv_client::{Client, Error, Range};

mod args;
mod dump;
mod failure;
mod format;
mod progress;
mod stats;

use args::{Cli, Cmd, OutputArgs, RangeArgs, StatsView};
use dump::{DumpReader, DumpWriter};
use failure::{out_failure, Failure, Outcome, Why, EXIT_OK};
use format::Format;

/// Bytes of buffer between a dump or load and its file.
const FILE_BUFFER_BYTES: usize = 1 << 20;
/// Puts `hpkvctl load` keeps in flight: enough for hpkvd's group commit to share a flush
/// among many writes.
const LOAD_IN_FLIGHT: usize = 32;
/// Batches `hpkvctl load` keeps in flight: one is committed while the next is sent.
const LOAD_BATCHES_IN_FLIGHT: usize = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(f) => {
            if !f.is_quiet() {
                eprintln!("hpkvctl: {}: {}", f.what, f.why);
            }
            ExitCode::from(f.code())
        }
    }
}

/// A key for messages: printable ASCII as is, every other byte escaped.
fn shown(key: &[u8]) -> String {
    format::escaped(key)
}

/// The device to open: `--device`, else `--name`, else `$HPKV_DEVICE`, else `/dev/hpkv`.
fn device_path(cli: &Cli) -> Result<PathBuf, Failure> {
    match (&cli.device, &cli.name) {
        (Some(path), _) => Ok(path.clone()),
        (None, Some(name)) => hpkv_client::device_path(name).ok_or_else(|| Failure {
            what: format!("--name {name}"),
            why: Why::NotADeviceName,
        }),
        (None, None) => Ok(hpkv_client::env_device()),
    }
}

/// What the commands share: the client, and how to read arguments.
struct Ctx {
    client: Client,
    device: String,
    unescape: bool,
}

impl Ctx {
    /// An argument's bytes: as given, or read with escapes (`-e`).
    fn bytes(&self, arg: &OsStr) -> Result<Vec<u8>, Failure> {
        if !self.unescape {
            return Ok(arg.as_bytes().to_vec());
        }
        format::unescape(arg.as_bytes()).map_err(|e| Failure {
            what: format!("argument {}", arg.to_string_lossy()),
            why: Why::Argument(e),
        })
    }

    fn opt_bytes(&self, arg: Option<&OsString>) -> Result<Option<Vec<u8>>, Failure> {
        arg.map(|a| self.bytes(a)).transpose()
    }
}

fn run(cli: Cli) -> Outcome {
    let path = device_path(&cli)?;
    let device = path.display().to_string();
    let client = Client::open(&path).map_err(|e| Failure::client(&device, e))?;
    let ctx = Ctx {
        client,
        device,
        unescape: cli.unescape,
    };
    match cli.command {
        Cmd::Get { key, output, hex } => get(&ctx, &ctx.bytes(&key)?, output, hex),
        Cmd::Put {
            key,
            value,
            value_file,
        } => {
            let key = ctx.bytes(&key)?;
            let value = read_value(&ctx, value, value_file)?;
            ctx.client
                .put(&key, &value)
                .map_err(|e| Failure::client(format!("put {}", shown(&key)), e))
        }
        Cmd::Append {
            key,
            suffix,
            value_file,
        } => {
            let key = ctx.bytes(&key)?;
            let value = read_value(&ctx, suffix, value_file)?;
            ctx.client
                .append(&key, &value)
                .map_err(|e| Failure::client(format!("append {}", shown(&key)), e))
        }
        Cmd::Delete { key } => delete(&ctx.client, &ctx.bytes(&key)?),
        Cmd::Exists { key } => exists(&ctx.client, &ctx.bytes(&key)?),
        Cmd::Count { range } => count(&ctx, &range),
        Cmd::Scan {
            range,
            limit,
            keys_only,
            output,
        } => scan(&ctx, &range, limit, keys_only, output.format()),
        Cmd::Stats { view, count } => stats(&ctx, &view, count),
        Cmd::Sync => ctx.client.sync().map_err(|e| Failure::client("sync", e)),
        Cmd::Purge { yes } => {
            if !yes {
                confirm_purge(&ctx.client, &ctx.device)?;
            }
            ctx.client.purge().map_err(|e| Failure::client("purge", e))
        }
        Cmd::Dump { file } => dump(&ctx.client, &file),
        Cmd::Load { file } => load(&ctx.client, &file),
    }
}

fn get(ctx: &Ctx, key: &[u8], output: OutputArgs, hex: bool) -> Outcome {
    let what = || format!("get {}", shown(key));
    let value = ctx
        .client
        .get(key)
        .map_err(|e| Failure::client(what(), e))?
        .ok_or_else(|| Failure::client(what(), Error::NotFound))?;
    let text = if hex {
        let mut text = String::with_capacity(2 * value.len() + 1);
        for b in &value {
            let _ = write!(text, "{b:02x}");
        }
        text.push('\n');
        text.into_bytes()
    } else {
        format::value(output.format(), key, &value)
    };
    let mut out = io::stdout().lock();
    out.write_all(&text)
        .and_then(|()| out.flush())
        .map_err(out_failure)
}

fn delete(client: &Client, key: &[u8]) -> Outcome {
    let what = || format!("delete {}", shown(key));
    match client.delete(key) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::client(what(), Error::NotFound)),
        Err(e) => Err(Failure::client(what(), e)),
    }
}

fn exists(client: &Client, key: &[u8]) -> Outcome {
    let found = client
        .exists(key)
        .map_err(|e| Failure::client(format!("exists {}", shown(key)), e))?;
    let mut out = io::stdout().lock();
    writeln!(out, "{found}")
        .and_then(|()| out.flush())
        .map_err(out_failure)?;
    if found {
        Ok(())
    } else {
        Err(Failure::quiet(failure::EXIT_NOT_FOUND))
    }
}

/// The records of `range` (all when it has no bounds).
fn range<'c>(ctx: &'c Ctx, range: &RangeArgs) -> Result<Range<'c>, Failure> {
    let mut scan = ctx.client.scan().capacity(abi::RANGE_CAPACITY_MAX);
    if let Some(from) = ctx.opt_bytes(range.from.as_ref())? {
        scan = scan.from(from);
    }
    if let Some(to) = ctx.opt_bytes(range.to.as_ref())? {
        scan = scan.to(to);
    }
    if let Some(prefix) = ctx.opt_bytes(range.prefix.as_ref())? {
        scan = scan.prefix(prefix);
    }
    Ok(scan)
}

fn count(ctx: &Ctx, bounds: &RangeArgs) -> Outcome {
    let n = if bounds.is_unbounded() {
        ctx.client
            .stats()
            .map_err(|e| Failure::client("count", e))?
            .records
    } else {
        let mut n = 0u64;
        for record in range(ctx, bounds)? {
            record.map_err(|e| Failure::client("count", e))?;
            n += 1;
        }
        n
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{n}")
        .and_then(|()| out.flush())
        .map_err(out_failure)
}

fn scan(
    ctx: &Ctx,
    bounds: &RangeArgs,
    limit: Option<usize>,
    keys_only: bool,
    format: Format,
) -> Outcome {
    let mut records = range(ctx, bounds)?;
    if let Some(limit) = limit {
        records = records.limit(limit);
    }
    let mut out = BufWriter::new(io::stdout().lock());
    for record in records {
        let (key, value) = record.map_err(|e| Failure::client("scan", e))?;
        let value = (!keys_only).then_some(value.as_slice());
        out.write_all(&format::record(format, &key, value))
            .map_err(out_failure)?;
    }
    out.flush().map_err(out_failure)
}

fn stats(ctx: &Ctx, view: &StatsView, count: Option<u64>) -> Outcome {
    let fetch = || ctx.client.stats().map_err(|e| Failure::client("stats", e));
    if let Some(interval) = view.watch {
        return watch(ctx, interval, count, fetch);
    }
    let stats = fetch()?;
    let text = if view.all || view.json || view.prometheus {
        // An hpkvd older than HPKV_IOC_INFO answers ENOTTY: show the numbers alone.
        let info = match ctx.client.info() {
            Ok(info) => Some(info),
            Err(Error::Unsupported) => None,
            Err(e) => return Err(Failure::client("stats", e)),
        };
        let snapshot = stats::Snapshot {
            stats: &stats,
            info: info.as_ref(),
            device: &ctx.device,
        };
        if view.json {
            let mut s = serde_json::to_string_pretty(&stats::json(&snapshot)).expect("JSON");
            s.push('\n');
            s
        } else if view.prometheus {
            stats::prometheus(&snapshot)
        } else {
            stats::all_text(&snapshot)
        }
    } else {
        stats.proc_text()
    };
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(out_failure)
}

/// `stats --watch`: a line of rates every `interval`, `count` lines or until interrupted.
fn watch(
    ctx: &Ctx,
    interval: Duration,
    count: Option<u64>,
    fetch: impl Fn() -> Result<abi::StatsRecord, Failure>,
) -> Outcome {
    let mut out = io::stdout().lock();
    let print = |out: &mut io::StdoutLock<'_>, line: &str| {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(out_failure)
    };
    print(&mut out, &format!("{} every {interval:?}", ctx.device))?;
    print(&mut out, stats::WATCH_HEADER)?;
    let started = Instant::now();
    let (mut before, mut at) = (fetch()?, Instant::now());
    let mut lines = 0u64;
    while count.is_none_or(|c| lines < c) {
        std::thread::sleep(interval);
        let (now, now_at) = (fetch()?, Instant::now());
        let line = match stats::rates(&before, &now, now_at - at) {
            Some(r) => stats::watch_line(started.elapsed().as_secs_f64(), now.records, &r),
            None => "hpkvd restarted: the rates start again".to_string(),
        };
        print(&mut out, &line)?;
        (before, at) = (now, now_at);
        lines += 1;
    }
    Ok(())
}

/// The value of `put` and `append`: the argument, or a file, or standard input.
fn read_value(
    ctx: &Ctx,
    value: Option<OsString>,
    file: Option<PathBuf>,
) -> Result<Vec<u8>, Failure> {
    match (value, file) {
        (Some(v), _) => ctx.bytes(&v),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut v = vec![];
            io::stdin()
                .lock()
                .read_to_end(&mut v)
                .map_err(|e| Failure::io("standard input", e))?;
            Ok(v)
        }
        (None, Some(path)) => std::fs::read(&path).map_err(|e| Failure::file(&path, e)),
        (None, None) => unreachable!("clap requires one of them"),
    }
}

fn confirm_purge(client: &Client, device: &str) -> Outcome {
    let refused = |why| Failure {
        what: "purge".to_string(),
        why: Why::NotConfirmed(why),
    };
    if !io::stdin().is_terminal() {
        return Err(refused(
            "standard input is not a terminal: pass --yes to remove every record",
        ));
    }
    let records = client
        .stats()
        .map_err(|e| Failure::client("purge", e))?
        .records;
    eprint!("hpkvctl: purge removes all {records} records of {device}; type yes to go on: ");
    let mut answer = String::new();
    io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Failure::io("standard input", e))?;
    if answer.trim() != "yes" {
        return Err(refused("not confirmed; nothing removed"));
    }
    Ok(())
}

fn dump(client: &Client, path: &Path) -> Outcome {
    let to_stdout = path.as_os_str() == "-";
    let file = if to_stdout {
        None
    } else {
        Some(File::create(path).map_err(|e| Failure::file(path, e))?)
    };
    let sink: Box<dyn Write + '_> = match &file {
        Some(f) => Box::new(f),
        None => Box::new(io::stdout().lock()),
    };
    let shown_path = path.display().to_string();
    let write_err = |e: io::Error| Failure::io(&shown_path, e);
    let expected = client
        .stats()
        .map_err(|e| Failure::client("dump", e))?
        .records;
    let bar = progress::bar("dump", expected);
    let mut out =
        DumpWriter::new(BufWriter::with_capacity(FILE_BUFFER_BYTES, sink)).map_err(write_err)?;
    let mut bytes = 0u64;
    for record in client.scan().capacity(abi::RANGE_CAPACITY_MAX) {
        let (key, value) = record.map_err(|e| Failure::client("dump", e))?;
        out.record(&key, &value).map_err(write_err)?;
        bytes += (key.len() + value.len()) as u64;
        if bar.position() >= bar.length().unwrap_or(0) {
            bar.set_length(bar.position() + 1);
        }
        bar.inc(1);
    }
    let (out, count) = out.finish().map_err(write_err)?;
    drop(out);
    if let Some(f) = &file {
        f.sync_all().map_err(write_err)?;
    }
    bar.finish_and_clear();
    let report =
        format!("dumped {count} records ({bytes} bytes of keys and values) to {shown_path}");
    if to_stdout {
        eprintln!("{report}");
    } else {
        println!("{report}");
    }
    Ok(())
}

fn load(client: &Client, path: &Path) -> Outcome {
    let shown_path = path.display().to_string();
    let (source, records): (Box<dyn Read>, Option<u64>) = if path.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), None)
    } else {
        let mut file = File::open(path).map_err(|e| Failure::file(path, e))?;
        // Check the whole file first, so that a damaged dump stores nothing; it also counts
        // the records, for the progress.
        let reader = BufReader::with_capacity(FILE_BUFFER_BYTES, &mut file);
        let mut check = DumpReader::new(reader).map_err(|e| Failure::dump(&shown_path, e))?;
        while check
            .next_record()
            .map_err(|e| Failure::dump(&shown_path, e))?
            .is_some()
        {}
        let records = check.count;
        file.rewind().map_err(|e| Failure::file(path, e))?;
        (Box::new(file), Some(records))
    };
    let reader = BufReader::with_capacity(FILE_BUFFER_BYTES, source);
    let mut reader = DumpReader::new(reader).map_err(|e| Failure::dump(&shown_path, e))?;
    let bar = progress::bar("load", records.unwrap_or(0));
    let batches = client
        .supports_put_batch()
        .map_err(|e| Failure::client(format!("load {shown_path}"), e))?;
    let progress = |done| bar.set_position(done);
    let stored = if batches {
        store_batches(client, &mut reader, &shown_path, progress)?
    } else {
        // An hpkvd older than HPKV_IOC_PUT_BATCH: one put per record.
        store_records(client, &mut reader, &shown_path, progress)?
    };
    client
        .sync()
        .map_err(|e| Failure::client(format!("load {shown_path}"), e))?;
    bar.finish_and_clear();
    println!("loaded {stored} records from {shown_path}");
    Ok(())
}

/// Packs the records of a dump into batches, in order.
struct Packer<'a, R> {
    reader: &'a mut DumpReader<R>,
    shown_path: &'a str,
    /// The record the previous batch had no room for.
    carry: Option<dump::Record>,
    /// The dump's end was read.
    ended: bool,
}

impl<'a, R: Read> Packer<'a, R> {
    fn new(reader: &'a mut DumpReader<R>, shown_path: &'a str) -> Packer<'a, R> {
        Packer {
            reader,
            shown_path,
            carry: None,
            ended: false,
        }
    }

    fn next_record(&mut self) -> Result<Option<dump::Record>, Failure> {
        if let Some(record) = self.carry.take() {
            return Ok(Some(record));
        }
        if self.ended {
            return Ok(None);
        }
        let next = self.reader.next_record();
        let record = next.map_err(|e| Failure::dump(self.shown_path, e))?;
        self.ended = record.is_none();
        Ok(record)
    }

    /// Fills `batch` with the next records until the next one does not fit (it waits for
    /// the next batch) or the dump ends (then `batch` may be empty). Returns the number, in
    /// the dump, of the batch's first record.
    fn fill(&mut self, batch: &mut abi::PutBatch) -> Result<u64, Failure> {
        batch.clear();
        while let Some(record) = self.next_record()? {
            let fits = batch.push(&record.0, &record.1).map_err(|e| {
                let number = self.reader.count;
                Failure::client(
                    format!("load {}: record {number}", self.shown_path),
                    e.into(),
                )
            })?;
            if !fits {
                assert!(!batch.is_empty(), "one largest record fits in a batch");
                self.carry = Some(record);
                break;
            }
        }
        let in_batch = batch.count() as u64 + u64::from(self.carry.is_some());
        Ok(self.reader.count + 1 - in_batch)
    }
}

/// Stores every record of `reader` in batches (`HPKV_IOC_PUT_BATCH`, each up to the
/// request's limit), telling `progress` how many are stored; the number stored. Up to
/// [`LOAD_BATCHES_IN_FLIGHT`] batches are in flight, so that one is committed (with one
/// flush) while the next is sent; each is counted only once hpkvd acknowledged it (durably,
/// in sync mode).
fn store_batches<R: Read>(
    client: &Client,
    reader: &mut DumpReader<R>,
    shown_path: &str,
    mut progress: impl FnMut(u64),
) -> Result<u64, Failure> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let stored = AtomicU64::new(0);
    let mut packer = Packer::new(reader, shown_path);
    let next = || {
        let mut batch = abi::PutBatch::new();
        let first = packer.fill(&mut batch)?;
        Ok((!batch.is_empty()).then_some((first, batch)))
    };
    let put = |(first, batch): (u64, abi::PutBatch)| {
        let count = batch.count() as u64;
        let what = format!(
            "load {shown_path}: records {first} to {}",
            first + count - 1
        );
        let n = client
            .put_packed(&batch)
            .map_err(|e| Failure::client(what.clone(), e))?;
        stored.fetch_add(n as u64, Ordering::Relaxed);
        if n == batch.count() {
            Ok(())
        } else {
            Err(Failure::client(
                format!("{what}: {n} stored"),
                Error::NoSpace,
            ))
        }
    };
    in_flight(LOAD_BATCHES_IN_FLIGHT, next, put, || {
        progress(stored.load(Ordering::Relaxed));
    })?;
    let stored = stored.into_inner();
    progress(stored);
    Ok(stored)
}

/// Stores every record of `reader` one put at a time (`load` from an hpkvd without
/// batches), telling `progress` how many are stored; the number stored. Up to
/// [`LOAD_IN_FLIGHT`] puts are in flight, so that hpkvd's group commit makes few flushes of
/// many writes; each put still returns only once hpkvd acknowledged it (durably, in sync
/// mode), and only acknowledged ones are counted. A put is one `write()` when the ABI can
/// say it that way (`Client::put_by_write`): one request to hpkvd instead of the INSERT
/// ioctl's two.
fn store_records<R: Read>(
    client: &Client,
    reader: &mut DumpReader<R>,
    shown_path: &str,
    mut progress: impl FnMut(u64),
) -> Result<u64, Failure> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let stored = AtomicU64::new(0);
    let next = || {
        let record = reader
            .next_record()
            .map_err(|e| Failure::dump(shown_path, e))?;
        Ok(record.map(|r| (reader.count, r)))
    };
    let put = |(number, (key, value)): (u64, dump::Record)| {
        client
            .put_by_write(&key, &value)
            .map_err(|e| Failure::client(format!("load {shown_path}: record {number}"), e))?;
        stored.fetch_add(1, Ordering::Relaxed);
        Ok(())
    };
    in_flight(LOAD_IN_FLIGHT, next, put, || {
        progress(stored.load(Ordering::Relaxed));
    })?;
    let stored = stored.into_inner();
    progress(stored);
    Ok(stored)
}

/// The submission loop of `load`: hands the items `next` gives, in order, to up to `workers`
/// threads running `work`, calling `after_each` once an item is handed on; stops at the end
/// of the items or at the first failure (of `next` or of a work), which it returns.
fn in_flight<T: Send>(
    workers: usize,
    mut next: impl FnMut() -> Result<Option<T>, Failure>,
    work: impl Fn(T) -> Result<(), Failure> + Sync,
    mut after_each: impl FnMut(),
) -> Result<(), Failure> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Mutex};
    assert!(workers > 0, "load needs a worker");
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Failure>> = Mutex::new(None);
    let (tx, rx) = mpsc::sync_channel::<T>(workers);
    let rx = Mutex::new(rx);
    std::thread::scope(|scope| -> Result<(), Failure> {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let Ok(item) = rx.lock().expect("a loader panicked").recv() else {
                    return;
                };
                if failed.load(Ordering::Relaxed) {
                    continue; // drain what is queued without sending it
                }
                if let Err(failure) = work(item) {
                    failed.store(true, Ordering::Relaxed);
                    let mut first = first_error.lock().expect("a loader panicked");
                    first.get_or_insert(failure);
                }
            });
        }
        // `tx` moves in here: an early return of `next`'s failure drops it too, which lets
        // the workers end.
        let tx = tx;
        while let Some(item) = next()? {
            if failed.load(Ordering::Relaxed) || tx.send(item).is_err() {
                break;
            }
            after_each();
        }
        drop(tx);
        Ok(())
    })?;
    match first_error.into_inner().expect("a loader panicked") {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use failure::{EXIT_DEVICE, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_USAGE};

    /// `load`'s submission loop hands on every item once, stops at a work's failure (no item
    /// is started after it is seen) and returns a failure of `next` without hanging.
    #[test]
    fn in_flight_runs_each_item_once_and_stops_at_the_first_failure() {
        use std::sync::Mutex;
        let done = Mutex::new(Vec::new());
        let mut items = 0..1000u32;
        let mut handed = 0;
        in_flight(
            4,
            || Ok(items.next()),
            |i| {
                done.lock().unwrap().push(i);
                Ok(())
            },
            || handed += 1,
        )
        .unwrap();
        let mut done = done.into_inner().unwrap();
        done.sort_unstable();
        assert_eq!(done, (0..1000).collect::<Vec<_>>());
        assert_eq!(handed, 1000);

        let started = Mutex::new(0u32);
        let mut items = 0..1000u32;
        let e = in_flight(
            4,
            || Ok(items.next()),
            |i| {
                *started.lock().unwrap() += 1;
                if i == 10 {
                    Err(Failure::client("item 10", Error::NoSpace))
                } else {
                    Ok(())
                }
            },
            || {},
        )
        .unwrap_err();
        assert_eq!(e.what, "item 10");
        assert!(*started.lock().unwrap() < 1000, "stopped early");

        let mut n = 0;
        let e = in_flight(
            2,
            || {
                n += 1;
                if n > 5 {
                    Err(Failure::client("the source broke", Error::NoSpace))
                } else {
                    Ok(Some(n))
                }
            },
            |_| Ok(()),
            || {},
        )
        .unwrap_err();
        assert_eq!(e.what, "the source broke");
    }

    /// `load` packs a dump into batches up to the request's limit, in order, numbering each
    /// batch's first record; a largest record travels in a batch of its own.
    #[test]
    fn load_packs_records_into_batches_in_order() {
        let big = vec![b'v'; abi::VALUE_MAX];
        let mut want: Vec<dump::Record> = (0..3000u32)
            .map(|i| (format!("k{i}").into_bytes(), vec![b'x'; 40]))
            .collect();
        want.insert(1000, (vec![b'K'; abi::KEY_MAX], big.clone()));
        want.insert(1001, (b"after".to_vec(), big));
        let mut writer = DumpWriter::new(Vec::new()).unwrap();
        for (k, v) in &want {
            writer.record(k, v).unwrap();
        }
        let (bytes, _) = writer.finish().unwrap();
        let mut reader = DumpReader::new(bytes.as_slice()).unwrap();
        let mut packer = Packer::new(&mut reader, "dump");
        let (mut got, mut batches) = (Vec::new(), Vec::new());
        loop {
            let mut batch = abi::PutBatch::new();
            let first = packer.fill(&mut batch).unwrap();
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= abi::PUT_BATCH_MAX);
            assert_eq!(first, got.len() as u64 + 1, "the batch's first record");
            let decoded = abi::decode_ioctl(
                abi::Profile::Readme,
                abi::IOC_PUT_BATCH,
                4096,
                batch.as_bytes(),
                0,
            );
            let abi::Decoded::Ready(abi::Command::PutBatch(records)) = decoded else {
                panic!("{decoded:?}");
            };
            got.extend(records.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
            batches.push(batch.count());
        }
        assert!(packer.carry.is_none() && packer.ended);
        assert_eq!(got, want);
        assert!(batches.len() < 10, "{batches:?}");
        assert!(batches.contains(&1), "a largest record alone: {batches:?}");
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Options that go together parse; those that do not are refused.
    #[test]
    fn option_combinations() {
        let parses = |args: &[&str]| Cli::try_parse_from(args).is_ok();
        assert!(parses(&[
            "hpkvctl", "stats", "--watch", "0.2", "--count", "2"
        ]));
        assert!(parses(&[
            "hpkvctl", "--name", "x", "-e", "scan", "--prefix", "p", "-0"
        ]));
        assert!(parses(&["hpkvctl", "get", "k", "--json"]));
        assert!(
            !parses(&["hpkvctl", "stats", "--count", "2"]),
            "--count needs --watch"
        );
        assert!(!parses(&["hpkvctl", "stats", "--json", "--prometheus"]));
        assert!(
            !parses(&["hpkvctl", "stats", "--watch", "0"]),
            "at least 0.1 s"
        );
        assert!(!parses(&["hpkvctl", "scan", "--json", "--raw"]));
        assert!(!parses(&[
            "hpkvctl", "scan", "--prefix", "p", "--from", "a"
        ]));
        assert!(!parses(&["hpkvctl", "get", "k", "--hex", "--json"]));
        assert!(!parses(&[
            "hpkvctl", "--device", "/dev/x", "--name", "x", "count"
        ]));
    }

    #[test]
    fn exit_codes_are_documented() {
        let help = Cli::command().render_long_help().to_string();
        for code in [
            EXIT_OK,
            EXIT_NOT_FOUND,
            EXIT_USAGE,
            EXIT_DEVICE,
            EXIT_REFUSED,
        ] {
            assert!(
                help.contains(&format!("\n  {code}  ")),
                "{code} missing from --help"
            );
        }
    }
}
