//! Readers: processes that read every writer's keys while the writers write, the way clients
//! read, and check each value against the acknowledged-operations log as it stands.
//!
//! A read that starts at `t0` and returns at `t1` must show the key's state after some prefix
//! of its writer's operations: a prefix that holds every operation acknowledged before `t0`
//! and none issued after `t1` (and, when a PURGE ran meanwhile, what the operations after the
//! PURGE left). The log gives both bounds: intents are written before an operation is
//! issued, outcomes after it returned. A torn, mixed, stale or resurrected value fails.
//!
//! How values are read is a [`ReadPath`]. The readers use an ordinary client's GET (hpkvd's
//! shared view when it can answer, the device otherwise: issue 7) and the device alone. A
//! new way of reading, such as the C library `libhpkv` or the preload library, joins by
//! implementing `ReadPath` and naming it in [`read_path`]: every value it reads is then
//! checked like the others, in every scenario that runs readers.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use nix::errno::Errno;

use crate::log::{now_ns, Kind, LogDev, OpCode, Record};
use crate::model::{self, History, Keys, Op, Time};
use crate::rng::Rng;
use crate::store::Store;
use crate::value::{self, Seg};
use crate::worker::{open_store, WorkerSpec, EXIT_DONE, EXIT_IN_DOUBT, EXIT_LOG, EXIT_WRONG};

/// A reader's pause between two reads.
const READ_PAUSE: Duration = Duration::from_millis(2);

/// Where readers add their counts, one line each: reads checked, reads with no system call.
pub const COUNTS: &str = "/tmp/torture-readers.counts";

/// Sums the readers' counts since the file was last removed: (reads, with no system call).
pub fn counts() -> (u64, u64) {
    let text = std::fs::read_to_string(COUNTS).unwrap_or_default();
    text.lines().fold((0, 0), |(r, v), line| {
        let mut n = line
            .split_whitespace()
            .filter_map(|w| w.parse::<u64>().ok());
        (r + n.next().unwrap_or(0), v + n.next().unwrap_or(0))
    })
}

/// A way of reading one key.
pub trait ReadPath {
    /// For reports.
    fn name(&self) -> &'static str;
    /// The value of `key`, or `None` for no such key; the errno the read answered.
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Errno>;
    /// Reads answered without a system call so far (a shared view), if the path can tell.
    fn without_syscall(&self) -> u64 {
        0
    }
}

/// A client's GET: from hpkvd's shared view when it can answer, else the device.
struct ClientGet {
    store: Store,
    by_view: u64,
}

impl ReadPath for ClientGet {
    fn name(&self) -> &'static str {
        "client GET (shared view, else device)"
    }

    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Errno> {
        let (v, by_view) = self.store.get_view(key)?;
        self.by_view += u64::from(by_view);
        Ok(v)
    }

    fn without_syscall(&self) -> u64 {
        self.by_view
    }
}

/// The bounded GET through the device.
struct DeviceGet(Store);

impl ReadPath for DeviceGet {
    fn name(&self) -> &'static str {
        "HPKV_IOC_GET through the device"
    }

    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Errno> {
        self.0.get_safe(key)
    }
}

/// The read path called `kind`: "client" or "device". Add new ones here.
pub fn read_path(kind: &str, store: Store) -> Option<Box<dyn ReadPath>> {
    match kind {
        "client" => Some(Box::new(ClientGet { store, by_view: 0 })),
        "device" => Some(Box::new(DeviceGet(store))),
        _ => None,
    }
}

/// What the log says about one writer since its last settle record (the round's start).
struct Follow {
    slot: u64,
    /// The writer's keys when the round started.
    base: Keys,
    /// When the round started: the last settle record.
    start: Time,
    ops: Vec<Op>,
    /// A settle record appeared: the round is over.
    ended: bool,
}

fn time(r: &Record) -> Time {
    (r.epoch, r.ts_ns)
}

impl Follow {
    fn new(
        log: &LogDev,
        writer: u16,
        purger: &[Record],
        orch: &[Record],
    ) -> Result<Follow, String> {
        let (records, slot) = log.read_region(writer).map_err(|e| e.to_string())?;
        let cut = records.iter().rposition(|r| r.kind == Kind::Settle);
        let (settled, rest) = match cut {
            Some(i) => records.split_at(i + 1),
            None => records.split_at(0),
        };
        let start = cut.map_or((0, 0), |i| time(&records[i]));
        // The state the last settle pinned: the history up to it, PURGEs before it.
        let earlier: Vec<Record> = purger.iter().filter(|r| time(r) < start).copied().collect();
        let h = History::build(&[settled.to_vec()], &earlier, orch)?;
        let base = model::replay(&h.writers[0], &h.purges)
            .map_err(|e| e.0)?
            .into_iter()
            .next()
            .map(|c| c.keys)
            .unwrap_or_default();
        let mut f = Follow {
            slot,
            base,
            start,
            ops: Vec::new(),
            ended: false,
        };
        f.take(rest);
        Ok(f)
    }

    fn take(&mut self, records: &[Record]) {
        for r in records {
            match r.kind {
                Kind::Intent => self.ops.push(Op {
                    seq: r.seq,
                    code: r.op,
                    key: r.key,
                    len: r.len,
                    start: time(r),
                    outcome: None,
                }),
                Kind::Outcome => {
                    if let Some(op) = self.ops.iter_mut().rev().find(|o| o.seq == r.seq) {
                        op.outcome = Some((r.errno, time(r)));
                    }
                }
                Kind::Settle | Kind::Decision => self.ended = true,
            }
        }
    }

    fn refresh(&mut self, log: &LogDev, writer: u16) -> Result<(), String> {
        let (new, slot) = log
            .read_region_from(writer, self.slot)
            .map_err(|e| e.to_string())?;
        self.slot = slot;
        self.take(&new);
        Ok(())
    }
}

/// A reader process: reads random keys of every writer through `path_kind` and checks them.
pub fn run_reader(spec: &WorkerSpec, path_kind: &str, counts_file: &Path) -> ExitCode {
    match reader(spec, path_kind, counts_file) {
        Ok(code) => ExitCode::from(code),
        Err((code, why)) => {
            eprintln!("torture reader ({path_kind}): {why}");
            ExitCode::from(code)
        }
    }
}

fn reader(spec: &WorkerSpec, path_kind: &str, counts_file: &Path) -> Result<u8, (u8, String)> {
    let log = LogDev::open(&spec.log).map_err(|e| (EXIT_LOG, e.to_string()))?;
    let h = log.header;
    let read_all = |r: u16| {
        log.read_region(r)
            .map(|(v, _)| v)
            .map_err(|e| (EXIT_LOG, e.to_string()))
    };
    let purger_records = read_all(h.purger_region())?;
    let orch = read_all(h.orchestrator_region())?;
    let mut follows = (0..h.writers)
        .map(|w| Follow::new(&log, w, &purger_records, &orch).map_err(|e| (EXIT_WRONG, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut purge_slot = purger_records.len() as u64;
    let mut purge_times: Vec<Time> = purger_records
        .iter()
        .filter(|r| r.kind == Kind::Intent)
        .map(time)
        .collect();
    let Ok(store) = open_store(&spec.device, Duration::from_secs(5)) else {
        return Ok(EXIT_IN_DOUBT);
    };
    let mut path =
        read_path(path_kind, store).ok_or((EXIT_WRONG, format!("no read path {path_kind:?}")))?;
    let mut rng = Rng::derive(
        spec.seed,
        &[
            0x7ead,
            u64::from(spec.writer),
            u64::from(h.epoch),
            spec.round,
        ],
    );
    let until = now_ns() + spec.seconds * 1_000_000_000;
    let mut reads = 0u64;
    let code = loop {
        if now_ns() >= until {
            break EXIT_DONE;
        }
        let w = u16::try_from(rng.below(u64::from(h.writers))).expect("writers fit u16");
        let idx = u32::try_from(rng.below(u64::from(spec.keys))).expect("keys fit u32");
        let key = value::key(w, idx);
        let t0 = (h.epoch, now_ns());
        let got = match path.read(&key) {
            Ok(v) => v,
            Err(e) if in_doubt(e) => break EXIT_IN_DOUBT,
            Err(e) => {
                return Err((
                    EXIT_WRONG,
                    format!("{}: a read of key {w}/{idx} answered {e}", path.name()),
                ))
            }
        };
        let t1 = (h.epoch, now_ns());
        let f = &mut follows[usize::from(w)];
        f.refresh(&log, w).map_err(|e| (EXIT_LOG, e))?;
        let (new, slot) = log
            .read_region_from(h.purger_region(), purge_slot)
            .map_err(|e| (EXIT_LOG, e.to_string()))?;
        purge_slot = slot;
        purge_times.extend(new.iter().filter(|r| r.kind == Kind::Intent).map(time));
        if f.ended {
            break EXIT_DONE;
        }
        let purge_ran = purge_times.iter().any(|&p| p >= f.start && p <= t1);
        let read = Read {
            writer: w,
            idx,
            key: &key,
            got: got.as_deref(),
            t0,
            t1,
        };
        judge(&read, f, purge_ran).map_err(|e| (EXIT_WRONG, format!("{}: {e}", path.name())))?;
        reads += 1;
        // Reads from the view cost no system call: pause, so the writers get the CPUs.
        std::thread::sleep(READ_PAUSE);
    };
    if let Ok(mut file) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(counts_file)
    {
        let _ = writeln!(file, "{reads} {}", path.without_syscall());
    }
    Ok(code)
}

fn in_doubt(e: Errno) -> bool {
    matches!(
        e,
        Errno::ECONNABORTED | Errno::ENODEV | Errno::ENOTCONN | Errno::ENXIO | Errno::EIO
    )
}

/// One read: of key `idx` of `writer`, from `t0` to `t1`, and what it gave.
struct Read<'a> {
    writer: u16,
    idx: u32,
    key: &'a [u8],
    got: Option<&'a [u8]>,
    t0: Time,
    t1: Time,
}

/// Checks one read against what `f` knows of its writer; `purged`: a PURGE ran meanwhile.
fn judge(read: &Read<'_>, f: &Follow, purged: bool) -> Result<(), String> {
    let Read {
        writer: w,
        idx,
        key,
        got,
        t0,
        t1,
    } = *read;
    let segs = match got {
        None => None,
        Some(v) => Some(value::parse_value(key, w, v).map_err(|e| format!("key {w}/{idx}: {e}"))?),
    };
    let ops: Vec<&Op> = f
        .ops
        .iter()
        .filter(|o| o.key == idx && o.code != OpCode::Purge)
        .collect();
    let allowed = model::possible_values(f.base.get(&idx), &ops, t0, t1, purged);
    if allowed.contains(&segs) {
        return Ok(());
    }
    let show = |s: &Option<Vec<Seg>>| {
        s.as_ref().map_or("absent".to_string(), |s| {
            format!("{:?}", s.iter().map(|x| x.seq).collect::<Vec<_>>())
        })
    };
    let by_seq: HashMap<u64, &Op> = ops.iter().map(|o| (o.seq, *o)).collect();
    let last = segs
        .as_ref()
        .and_then(|s| s.last())
        .and_then(|s| by_seq.get(&s.seq));
    Err(format!(
        "key {w}/{idx}, read from {} to {}: got {}{}; allowed: {}",
        model::show_time(t0),
        model::show_time(t1),
        show(&segs),
        last.map_or(String::new(), |op| format!(
            " (last written by {})",
            op.describe()
        )),
        allowed.iter().map(show).collect::<Vec<_>>().join(", ")
    ))
}
