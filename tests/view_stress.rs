//! The shared view's coherence through the real `/dev/hpkv`, across processes and across
//! `kill -9` of hpkvd (tests/vm/suite/guest-main runs it; `test = false`: the host has no
//! CUSE).
//!
//! Writers change keys through the device (the Rust client's put, append and delete: ioctls);
//! readers look them up with the Rust client, whose GET answers from the shared view when it
//! can. Every process logs what it did with wall-clock times (one clock for the whole VM):
//! a writer each operation's start, end and outcome; a reader each lookup's start, end and
//! answer. `check` then holds every answer against the writes:
//!
//! - **stale**: a lookup that started after a write was acknowledged must see that write or a
//!   later one (a later write that started before the lookup ended);
//! - **resurrected**: after an acknowledged delete, the deleted value never comes back;
//! - **torn**: every value is made of checksummed 16-byte segments naming their key and
//!   write, in groups that must match the key's history (a put, then appends only);
//! - **from nowhere**: a value no write of the key could have stored by then.
//!
//! A write that failed because hpkvd was killed is "maybe": it may or may not have taken
//! effect (it may be durable without its acknowledgement). Each key has one writer, so a
//! key's writes are sequential and numbered 1, 2, ... by that writer.
//!
//! Usage:
//! ```text
//! view_stress writer --device P --dir D --id I --writers W --keys K --seconds S --run R
//! view_stress reader --device P --dir D --id I --keys K --seconds S --run R [--pause-us U]
//! view_stress check --dir D --keys K [--min-view-hits N]
//! view_stress purge-check --device P --keys K --run R
//! view_stress self-test        the checker's verdicts on made-up histories (no device)
//! ```
#![allow(clippy::cast_possible_truncation)] // record fields: counts and ids far below 2^32

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hpkv_client::{Client, Error};

const SEGMENT_BYTES: usize = 16;
/// An append turns into a put once the value would pass this many segments.
const SEGMENTS_MAX: usize = 48;
/// Bytes of one log record.
const RECORD_BYTES: usize = 32;
/// How long a process waits for the device to come back after hpkvd died.
const REOPEN_WAIT: Duration = Duration::from_secs(60);

// Writer operations and outcomes.
const PUT: u8 = 1;
const APPEND: u8 = 2;
const DELETE: u8 = 3;
const ACKED: u8 = 0;
const MAYBE: u8 = 1;
const REFUSED: u8 = 2;
// Reader answers.
const ABSENT: u8 = 0;
const PRESENT: u8 = 1;
const FAILED: u8 = 2;
const TORN: u8 = 3;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        usage();
    };
    let opts = Opts::parse(rest);
    let code = match mode.as_str() {
        "writer" => writer(&opts),
        "reader" => reader(&opts),
        "check" => check(&opts),
        "purge-check" => purge_check(&opts),
        "self-test" => self_test(),
        _ => usage(),
    };
    std::process::exit(code);
}

fn usage() -> ! {
    eprintln!("usage: view_stress writer|reader|check|purge-check [--device P] [--dir D] [--id I] [--writers W] [--keys K] [--seconds S] [--run R] [--min-view-hits N]");
    std::process::exit(2)
}

struct Opts {
    device: String,
    dir: PathBuf,
    id: u32,
    writers: u32,
    keys: u32,
    seconds: u64,
    run: String,
    min_view_hits: u64,
    pause_us: u64,
}

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut opts = Opts {
            device: "/dev/hpkv".into(),
            dir: PathBuf::from("/tmp/view-stress"),
            id: 0,
            writers: 1,
            keys: 32,
            seconds: 10,
            run: "0".into(),
            min_view_hits: 0,
            pause_us: 200,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().unwrap_or_else(|| usage());
            let num = || value.parse::<u64>().unwrap_or_else(|_| usage());
            match flag.as_str() {
                "--device" => opts.device.clone_from(value),
                "--dir" => opts.dir = PathBuf::from(value),
                "--id" => opts.id = num() as u32,
                "--writers" => opts.writers = num() as u32,
                "--keys" => opts.keys = num() as u32,
                "--seconds" => opts.seconds = num(),
                "--run" => opts.run.clone_from(value),
                "--min-view-hits" => opts.min_view_hits = num(),
                "--pause-us" => opts.pause_us = num(),
                _ => usage(),
            }
        }
        opts
    }

    fn key(&self, k: u32) -> Vec<u8> {
        format!("vs-{}-{k}", self.run).into_bytes()
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn check32(key: u32, write: u32, index: u8, count: u8) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key
        .to_le_bytes()
        .into_iter()
        .chain(write.to_le_bytes())
        .chain([index, count])
    {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    hash
}

/// `m` segments of write `n` of key `k`: `[k u32][n u32][i u8][m u8][0 u16][check u32]`.
fn group(k: u32, n: u32, m: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(usize::from(m) * SEGMENT_BYTES);
    for i in 0..m {
        v.extend_from_slice(&k.to_le_bytes());
        v.extend_from_slice(&n.to_le_bytes());
        v.extend_from_slice(&[i, m, 0, 0]);
        v.extend_from_slice(&check32(k, n, i, m).to_le_bytes());
    }
    v
}

/// The writes a value is made of (one per group, in order), or why it is malformed.
fn decode(k: u32, value: &[u8]) -> Result<Vec<u32>, String> {
    if value.is_empty() || value.len() % SEGMENT_BYTES != 0 {
        return Err(format!(
            "{} bytes is no whole number of segments",
            value.len()
        ));
    }
    let mut groups: Vec<u32> = Vec::new();
    let mut expect_i = 0u8;
    let mut group_m = 0u8;
    for (at, seg) in value.chunks(SEGMENT_BYTES).enumerate() {
        let word = |r: std::ops::Range<usize>| u32::from_le_bytes(seg[r].try_into().unwrap());
        let (sk, n, i, m) = (word(0..4), word(4..8), seg[8], seg[9]);
        if sk != k || check32(sk, n, i, m) != word(12..16) || seg[10..12] != [0, 0] {
            return Err(format!("segment {at} is not one of key {k}'s"));
        }
        if expect_i == 0 {
            if i != 0 || m == 0 || groups.last().is_some_and(|&last| n <= last) {
                return Err(format!("segment {at} starts no new, later group"));
            }
            groups.push(n);
            group_m = m;
        } else if i != expect_i || m != group_m || groups.last() != Some(&n) {
            return Err(format!("segment {at} breaks its group"));
        }
        expect_i = if i + 1 == group_m { 0 } else { i + 1 };
    }
    if expect_i != 0 {
        return Err("the last group is cut short".into());
    }
    Ok(groups)
}

fn record(out: &mut impl Write, a: u8, b: u8, key: u32, n: u64, t0: u64, t1: u64) {
    let mut r = [0u8; RECORD_BYTES];
    r[0] = a;
    r[1] = b;
    r[4..8].copy_from_slice(&key.to_le_bytes());
    r[8..16].copy_from_slice(&n.to_le_bytes());
    r[16..24].copy_from_slice(&t0.to_le_bytes());
    r[24..32].copy_from_slice(&t1.to_le_bytes());
    out.write_all(&r).expect("writing the log");
}

/// Opens the device, waiting up to [`REOPEN_WAIT`] for it to come back.
fn open(device: &str) -> Option<Client> {
    let deadline = Instant::now() + REOPEN_WAIT;
    loop {
        match Client::open(device) {
            Ok(c) => return Some(c),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                eprintln!("view_stress: {device}: {e}");
                return None;
            }
        }
    }
}

/// Per key: whether it is present (as far as this writer knows), its segments, the last
/// write's number.
#[derive(Clone, Copy, Default)]
struct Model {
    present: bool,
    segments: usize,
    n: u32,
}

fn writer(opts: &Opts) -> i32 {
    let mut log = BufWriter::new(File::create(opts.dir.join(format!("w{}.log", opts.id))).unwrap());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((u64::from(opts.id) + 1) * 0x1000_0001));
    let mine: Vec<u32> = (0..opts.keys)
        .filter(|k| k % opts.writers == opts.id)
        .collect();
    let mut model = vec![Model::default(); opts.keys as usize];
    let Some(mut client) = open(&opts.device) else {
        return 1;
    };
    let (mut writes, mut maybes) = (0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(opts.seconds);
    while Instant::now() < end {
        let k = mine[rng.below(mine.len() as u64) as usize];
        let m = &mut model[k as usize];
        m.n += 1;
        let (n, key) = (m.n, opts.key(k));
        let roll = rng.below(10);
        let kind = if roll < 2 && m.present {
            DELETE
        } else if roll < 5 && m.present && m.segments < SEGMENTS_MAX {
            APPEND
        } else {
            PUT
        };
        let segments = 1 + rng.below(6) as u8;
        let t0 = now_ns();
        let result = match kind {
            DELETE => client.delete(&key).map(|_| ()),
            APPEND => client.append(&key, &group(k, n, 1)),
            _ => client.put(&key, &group(k, n, segments)),
        };
        let t1 = now_ns();
        let outcome = match &result {
            Ok(()) => ACKED,
            Err(
                Error::TooLarge
                | Error::InvalidArgument
                | Error::Request(_)
                | Error::NoSpace
                | Error::NotFound,
            ) => REFUSED,
            Err(_) => MAYBE,
        };
        record(&mut log, kind, outcome, k, u64::from(n), t0, t1);
        writes += 1;
        match (outcome, kind) {
            (ACKED, DELETE) => {
                *m = Model {
                    present: false,
                    segments: 0,
                    n,
                }
            }
            (ACKED, APPEND) => m.segments += 1,
            (ACKED, _) => {
                *m = Model {
                    present: true,
                    segments: usize::from(segments),
                    n,
                }
            }
            (REFUSED, _) => {}
            _ => {
                // hpkvd is gone: its effect is unknown, so the model is too.
                maybes += 1;
                m.present = true;
                m.segments = SEGMENTS_MAX;
                drop(client);
                let Some(c) = open(&opts.device) else {
                    return 1;
                };
                client = c;
            }
        }
    }
    log.flush().unwrap();
    println!(
        "view_stress: writer {}: {writes} writes, {maybes} cut short by hpkvd's death",
        opts.id
    );
    0
}

fn reader(opts: &Opts) -> i32 {
    let mut log = BufWriter::new(File::create(opts.dir.join(format!("r{}.log", opts.id))).unwrap());
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ ((u64::from(opts.id) + 7) * 0x9e37_79b9));
    let Some(mut client) = open(&opts.device) else {
        return 1;
    };
    let (mut reads, mut torn, mut errors) = (0u64, 0u64, 0u64);
    let pause = Duration::from_micros(opts.pause_us);
    let mut counted = hpkv_client::ViewCounters::default();
    let end = Instant::now() + Duration::from_secs(opts.seconds);
    while Instant::now() < end {
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let k = rng.below(u64::from(opts.keys)) as u32;
        let key = opts.key(k);
        let t0 = now_ns();
        let got = client.get(&key);
        let t1 = now_ns();
        reads += 1;
        match got {
            Ok(None) => record(&mut log, ABSENT, 0, k, 0, t0, t1),
            Ok(Some(value)) => match decode(k, &value) {
                Ok(groups) => {
                    // The groups' writes, first and last (the check wants the whole list:
                    // one record per group, the last one marked).
                    for (i, &n) in groups.iter().enumerate() {
                        let last = u8::from(i + 1 == groups.len());
                        record(&mut log, PRESENT, last, k, u64::from(n), t0, t1);
                    }
                }
                Err(why) => {
                    torn += 1;
                    eprintln!(
                        "view_stress: reader {}: key {k}: torn value: {why}",
                        opts.id
                    );
                    record(&mut log, TORN, 0, k, 0, t0, t1);
                }
            },
            Err(_) => {
                errors += 1;
                record(&mut log, FAILED, 0, k, 0, t0, t1);
                add(&mut counted, client.view_counters());
                drop(client);
                let Some(c) = open(&opts.device) else {
                    return 1;
                };
                client = c;
            }
        }
    }
    add(&mut counted, client.view_counters());
    log.flush().unwrap();
    println!(
        "view_stress: reader {}: {reads} lookups ({} answered by the view: {} values, {} absent; \
         {} by the device), {errors} failed while hpkvd was away, {torn} torn",
        opts.id,
        counted.hits + counted.misses,
        counted.hits,
        counted.misses,
        counted.device
    );
    let mut f = File::create(opts.dir.join(format!("r{}.counts", opts.id))).unwrap();
    writeln!(f, "{} {} {}", counted.hits, counted.misses, counted.device).unwrap();
    i32::from(torn > 0)
}

fn add(total: &mut hpkv_client::ViewCounters, c: hpkv_client::ViewCounters) {
    total.hits += c.hits;
    total.misses += c.misses;
    total.device += c.device;
}

/// One writer operation, as logged.
#[derive(Clone, Copy)]
struct Op {
    kind: u8,
    outcome: u8,
    t0: u64,
    t1: u64,
}

fn read_records(path: &Path) -> Vec<[u8; RECORD_BYTES]> {
    let mut bytes = Vec::new();
    BufReader::new(File::open(path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
        .chunks_exact(RECORD_BYTES)
        .map(|c| c.try_into().unwrap())
        .collect()
}

fn field64(r: &[u8; RECORD_BYTES], at: usize) -> u64 {
    u64::from_le_bytes(r[at..at + 8].try_into().unwrap())
}

/// Every write of every key, from the writers' logs: `history[k][n - 1]` is write `n` of
/// key `k`.
fn load_history(logs: &[PathBuf], keys: u32) -> Vec<Vec<Op>> {
    let mut history: Vec<Vec<Op>> = vec![Vec::new(); keys as usize];
    for path in logs.iter().filter(|p| name_starts(p, "w")) {
        for r in read_records(path) {
            let k = u32::from_le_bytes(r[4..8].try_into().unwrap()) as usize;
            let n = field64(&r, 8) as usize;
            assert_eq!(
                n,
                history[k].len() + 1,
                "{}: write {n} of key {k} out of order",
                path.display()
            );
            history[k].push(Op {
                kind: r[0],
                outcome: r[1],
                t0: field64(&r, 16),
                t1: field64(&r, 24),
            });
        }
    }
    history
}

/// The readers' view counters, summed: (values, absences, device lookups).
fn load_counts(logs: &[PathBuf]) -> (u64, u64, u64) {
    let (mut hits, mut misses, mut device) = (0u64, 0u64, 0u64);
    for path in logs.iter().filter(|p| name_ends(p, "counts")) {
        let text = std::fs::read_to_string(path).unwrap();
        let n: Vec<u64> = text
            .split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect();
        (hits, misses, device) = (hits + n[0], misses + n[1], device + n[2]);
    }
    (hits, misses, device)
}

/// Every lookup of the readers' logs judged: the count per verdict, and the first bad ones.
fn judge_reads(logs: &[PathBuf], history: &[Vec<Op>]) -> (HashMap<&'static str, u64>, Vec<String>) {
    let mut verdicts: HashMap<&'static str, u64> = HashMap::new();
    let mut failures = Vec::new();
    for path in logs
        .iter()
        .filter(|p| name_starts(p, "r") && !name_ends(p, "counts"))
    {
        let records = read_records(path);
        let mut first = 0;
        while first < records.len() {
            // A present value spans one record per group, the last one marked.
            let mut last = first;
            while records[last][0] == PRESENT && records[last][1] == 0 {
                last += 1;
            }
            let head = &records[first];
            let key = u32::from_le_bytes(head[4..8].try_into().unwrap()) as usize;
            let groups: Vec<u32> = records[first..=last]
                .iter()
                .map(|r| field64(r, 8) as u32)
                .collect();
            let (t0, t1) = (field64(head, 16), field64(head, 24));
            let verdict = judge(&history[key], head[0], &groups, t0, t1);
            *verdicts.entry(verdict).or_default() += 1;
            if !is_good(verdict) && failures.len() < 20 {
                failures.push(format!(
                    "{}: key {key}: {verdict}: groups {groups:?}, lookup {t0}..{t1} ns",
                    path.display()
                ));
            }
            first = last + 1;
        }
    }
    (verdicts, failures)
}

fn is_good(verdict: &str) -> bool {
    matches!(verdict, "ok-value" | "ok-absent" | "failed")
}

fn check(opts: &Opts) -> i32 {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&opts.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    logs.sort();
    let history = load_history(&logs, opts.keys);
    let (verdicts, failures) = judge_reads(&logs, &history);
    let writes: usize = history.iter().map(Vec::len).sum();
    let acked = history
        .iter()
        .flatten()
        .filter(|op| op.outcome == ACKED)
        .count();
    let maybe = history
        .iter()
        .flatten()
        .filter(|op| op.outcome == MAYBE)
        .count();
    let (hits, misses, device) = load_counts(&logs);
    let mut names: Vec<_> = verdicts.iter().collect();
    names.sort();
    println!(
        "view_stress check: {writes} writes ({acked} acknowledged, {maybe} cut short by kill -9); \
         lookups by verdict: {names:?}; the view answered {hits} values and {misses} absences, \
         the device {device} lookups"
    );
    for f in &failures {
        println!("  {f}");
    }
    let bad: u64 = verdicts
        .iter()
        .filter(|(v, _)| !is_good(v))
        .map(|(_, n)| n)
        .sum();
    let values = verdicts.get("ok-value").copied().unwrap_or(0);
    if values == 0 || acked == 0 {
        println!("  nothing to judge: {acked} acknowledged writes, {values} values read");
    }
    if hits < opts.min_view_hits {
        println!(
            "  the view answered {hits} values, fewer than {}",
            opts.min_view_hits
        );
    }
    let ok = bad == 0 && hits >= opts.min_view_hits && values > 0 && acked > 0;
    i32::from(!ok)
}

fn name_starts(p: &Path, prefix: &str) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
}

fn name_ends(p: &Path, suffix: &str) -> bool {
    p.extension().is_some_and(|e| e == suffix)
}

/// The verdict on one lookup of a key with history `ops` that started at `t0` and ended at
/// `t1`, and answered `answer` (with the value's groups, if present).
fn judge(ops: &[Op], answer: u8, groups: &[u32], t0: u64, t1: u64) -> &'static str {
    match answer {
        FAILED => return "failed",
        TORN => return "torn",
        _ => {}
    }
    // A key's writes are sequential: both their starts and their ends increase with n.
    // The last write acknowledged before the lookup started (0: none, the key was absent).
    let done_before = ops.partition_point(|op| op.t1 < t0);
    let floor = ops[..done_before]
        .iter()
        .rposition(|op| op.outcome == ACKED)
        .map_or(0, |i| i + 1);
    // Later writes that started before the lookup ended could be what it saw too
    // (acknowledged or cut short; refused ones changed nothing).
    let started_before_end = ops.partition_point(|op| op.t0 < t1);
    let later = &ops[floor..started_before_end.max(floor)];
    if answer == ABSENT {
        let absent_at_floor = floor == 0 || ops[floor - 1].kind == DELETE;
        let deleted_later = later
            .iter()
            .any(|op| op.kind == DELETE && op.outcome != REFUSED);
        return if absent_at_floor || deleted_later {
            "ok-absent"
        } else {
            "stale-absent"
        };
    }
    let last = *groups.last().expect("a present value has a group") as usize;
    if last == 0 || last > started_before_end {
        return "from-nowhere";
    }
    if last < floor {
        return if ops[floor - 1].kind == DELETE {
            "resurrected"
        } else {
            "stale"
        };
    }
    history_verdict(ops, groups)
}

/// Whether a value's groups fit its key's history: the first group a put (or an append to
/// an absent key), every later one an append; every write acknowledged between the first and
/// the last group among the groups; nothing refused.
fn history_verdict(ops: &[Op], groups: &[u32]) -> &'static str {
    let (first, last) = (groups[0] as usize, *groups.last().unwrap() as usize);
    for (i, &n) in groups.iter().enumerate() {
        let op = &ops[n as usize - 1];
        if op.outcome == REFUSED || op.kind == DELETE || (i > 0 && op.kind != APPEND) {
            return "torn-history";
        }
    }
    // An append starting the value: the write before it must not have left a value.
    if ops[first - 1].kind == APPEND && first > 1 {
        let before = &ops[first - 2];
        if before.outcome == ACKED && before.kind != DELETE {
            return "torn-history";
        }
    }
    let skipped_acked =
        (first + 1..last).any(|n| ops[n - 1].outcome == ACKED && !groups.contains(&(n as u32)));
    if skipped_acked {
        return "torn-history";
    }
    "ok-value"
}

/// A purge through the device, then every key absent through the view.
fn purge_check(opts: &Opts) -> i32 {
    let Some(client) = open(&opts.device) else {
        return 1;
    };
    if let Err(e) = client.purge() {
        println!("view_stress purge-check: PURGE failed: {e}");
        return 1;
    }
    let before = client.view_counters();
    let mut present = 0;
    for k in 0..opts.keys {
        if !matches!(client.get(&opts.key(k)), Ok(None)) {
            present += 1;
        }
    }
    let after = client.view_counters();
    println!(
        "view_stress purge-check: {present} of {} keys still there after PURGE; the view \
         answered {} of the lookups",
        opts.keys,
        after.misses - before.misses
    );
    i32::from(present > 0 || after.misses - before.misses == 0)
}

/// A made-up lookup: what it is, its answer, its groups, its start and end, the verdict due.
type Case = (&'static str, u8, &'static [u32], u64, u64, &'static str);

/// The checker against made-up histories: each kind of violation is named as such, and what
/// is allowed passes.
fn self_test() -> i32 {
    let failed = judge_cases() + decode_cases();
    println!("view_stress self-test: {failed} wrong");
    i32::from(failed > 0)
}

/// Times in ns: write n starts at 20 n and ends 10 later.
fn judge_cases() -> u32 {
    let op = |kind, outcome, n: u64| Op {
        kind,
        outcome,
        t0: n * 20,
        t1: n * 20 + 10,
    };
    // 1 put, 2 append, 3 put, 4 delete, 5 put (cut short), 6 put, 7 append (refused).
    let ops = [
        op(PUT, ACKED, 1),
        op(APPEND, ACKED, 2),
        op(PUT, ACKED, 3),
        op(DELETE, ACKED, 4),
        op(PUT, MAYBE, 5),
        op(PUT, ACKED, 6),
        op(APPEND, REFUSED, 7),
    ];
    let cases: [Case; 14] = [
        ("value after its put", PRESENT, &[1], 35, 38, "ok-value"),
        ("put and append", PRESENT, &[1, 2], 55, 58, "ok-value"),
        (
            "the old value during an overwrite",
            PRESENT,
            &[1, 2],
            61,
            65,
            "ok-value",
        ),
        (
            "the new value during an overwrite",
            PRESENT,
            &[3],
            61,
            65,
            "ok-value",
        ),
        ("an overwritten value", PRESENT, &[1, 2], 75, 78, "stale"),
        ("absent after the delete", ABSENT, &[0], 95, 98, "ok-absent"),
        ("a deleted value", PRESENT, &[3], 95, 98, "resurrected"),
        ("a put cut short, seen", PRESENT, &[5], 115, 118, "ok-value"),
        (
            "a put cut short, not seen",
            ABSENT,
            &[0],
            115,
            118,
            "ok-absent",
        ),
        (
            "a value before its write started",
            PRESENT,
            &[6],
            115,
            118,
            "from-nowhere",
        ),
        (
            "absent after an acknowledged put",
            ABSENT,
            &[0],
            135,
            138,
            "stale-absent",
        ),
        (
            "an append without its put",
            PRESENT,
            &[2],
            55,
            58,
            "torn-history",
        ),
        ("a put skipped", PRESENT, &[1, 6], 135, 138, "torn-history"),
        (
            "a refused append",
            PRESENT,
            &[6, 7],
            155,
            158,
            "torn-history",
        ),
    ];
    let mut failed = 0;
    for (what, answer, groups, t0, t1, want) in cases {
        let got = judge(&ops, answer, groups, t0, t1);
        if got != want {
            println!("view_stress self-test: {what}: judged {got}, should be {want}");
            failed += 1;
        }
    }
    failed
}

fn decode_cases() -> u32 {
    let good = [group(3, 1, 2), group(3, 2, 1)].concat();
    let mut failed = 0;
    let bad = [
        ("cut", good[8..].to_vec()),
        ("out of order", [group(3, 2, 1), group(3, 1, 1)].concat()),
        ("of another key", group(4, 1, 1)),
        ("with a group cut short", good[..16].to_vec()),
    ];
    for (what, value) in bad {
        if decode(3, &value).is_ok() {
            println!("view_stress self-test: a value {what} decoded");
            failed += 1;
        }
    }
    if decode(3, &good) != Ok(vec![1, 2]) {
        println!("view_stress self-test: a good value did not decode");
        failed += 1;
    }
    failed
}
