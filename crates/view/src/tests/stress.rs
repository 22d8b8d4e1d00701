//! Readers in other processes hammer the keys a writer keeps changing.
//!
//! The writer (this test's process) updates, removes, fills and purges 48 keys in a view with
//! a small table and a small value arena (so evictions, rebuilds and incompleteness happen),
//! and replaces the whole view twice mid-stream (a successor: create, which marks the old view
//! dead; fill; publish). Each value's bytes encode its key, its sequence number and its length
//! under a checksum, so a reader can tell a torn or foreign value.
//!
//! Through a second shared file (the *ack file*) the writer publishes, per key, the last
//! operation it completed (stored after the view call returned: an acknowledgement) and, before
//! each removal or purge, that one is starting. A reader loads the key's ack before each
//! lookup and checks the answer against it:
//! - a hit must decode, and its sequence number must be at least the acked one (not stale;
//!   after an acked removal, a newer upsert: not resurrected) and not above any the writer
//!   started;
//! - a miss is allowed only if the acked state was "absent" or a removal started since.
//!
//! One more reader is killed with SIGKILL mid-stream; the writer and the others carry on. The
//! readers are this test binary re-executed with `HPKV_VIEW_STRESS` set.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use crate::shm::Mapping;
use crate::{Lookup, Unknown, ViewConfig, ViewReader, ViewStats, ViewWriter};

const ENV: &str = "HPKV_VIEW_STRESS";
const KEYS: u64 = 48;
const RUN: Duration = Duration::from_secs(3);
const READERS: usize = 3;
/// Per key in the ack file: `seq << 1 | present` of the last completed operation, and the
/// sequence number of the last removal (or purge) started. Then: done flag, highest started.
const ACK: usize = 0;
const RM_STARTED: usize = 8;
const KEY_STRIDE: usize = 16;
const DONE: usize = KEYS as usize * KEY_STRIDE;
const MAX_STARTED: usize = DONE + 8;
/// Set by each reader (at `READY + 8 * index`) once it has opened the view.
const READY: usize = DONE + 64;
const ACK_FILE_BYTES: usize = 4096;

fn config() -> ViewConfig {
    // 48 keys of capacity for 48 keys (incomplete when all are live at once), 4 KiB of keys,
    // 12 KiB of values: a block may take 1.5 KiB, and the ring holds a few dozen values.
    ViewConfig::new(KEYS, 4096, 12 * 1024)
}

fn key(k: u64) -> Vec<u8> {
    let mut key = format!("stress-{k}-").into_bytes();
    key.resize(key.len() + (k as usize * 5) % 41, b'x');
    key
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// `[key u32][seq u64][len u32][payload][fnv64 of the rest]`, `len` bytes in all (>= 25).
fn encode(k: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&(k as u32).to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    for i in 0..len - 24 {
        v.push((seq.wrapping_mul(31) ^ k.wrapping_mul(7)).wrapping_add(i as u64) as u8);
    }
    let sum = fnv(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

/// Checks a value read for key `k` under sequence number `seq`; the reason if it is bad.
fn verify(k: u64, seq: u64, v: &[u8]) -> Result<(), String> {
    if v.len() < 25 {
        return Err(format!("{} bytes", v.len()));
    }
    let (body, sum) = v.split_at(v.len() - 8);
    if fnv(body).to_le_bytes() != sum {
        return Err("checksum".into());
    }
    let got_k = u64::from(u32::from_le_bytes(body[0..4].try_into().unwrap()));
    let got_seq = u64::from_le_bytes(body[4..12].try_into().unwrap());
    let got_len = u32::from_le_bytes(body[12..16].try_into().unwrap()) as usize;
    if (got_k, got_seq, got_len) != (k, seq, v.len()) {
        return Err(format!(
            "value of key {got_k} seq {got_seq} len {got_len} (slot seq {seq})"
        ));
    }
    if encode(k, seq, v.len()) != v {
        return Err("payload".into());
    }
    Ok(())
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn map_ack(path: &Path, writable: bool) -> Mapping {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .unwrap();
    Mapping::map(&file, ACK_FILE_BYTES, writable).unwrap()
}

struct Writer {
    view: ViewWriter,
    ack: Mapping,
    seq: u64,
    /// The model: each key's current (seq, value).
    model: Vec<Option<(u64, Vec<u8>)>>,
}

impl Writer {
    fn start(&mut self, seq: u64) {
        self.ack.store64(MAX_STARTED, seq, Ordering::SeqCst);
    }
    fn acked(&self, k: u64, seq: u64, present: bool) {
        self.ack.store64(
            k as usize * KEY_STRIDE + ACK,
            seq << 1 | u64::from(present),
            Ordering::SeqCst,
        );
    }

    fn step(&mut self, rng: &mut Rng) {
        self.seq += 1;
        let seq = self.seq;
        self.start(seq);
        let k = rng.below(KEYS);
        let roll = rng.below(1000);
        if roll >= 800 {
            // A key nobody reads comes and goes: tombstones amid the clusters, key blocks of
            // every size on the free lists, and so rebuilds.
            let churn = format!("churn-{seq}-{}", "y".repeat(rng.below(60) as usize));
            self.view.upsert(churn.as_bytes(), seq, None, 1).unwrap();
            self.seq += 1;
            self.view.remove(churn.as_bytes(), self.seq).unwrap();
        } else if roll < 2 {
            // PURGE.
            for k in 0..KEYS {
                self.ack
                    .store64(k as usize * KEY_STRIDE + RM_STARTED, seq, Ordering::SeqCst);
            }
            self.view.clear();
            for k in 0..KEYS {
                self.model[k as usize] = None;
                self.acked(k, seq, false);
            }
        } else if roll < 170 {
            self.ack
                .store64(k as usize * KEY_STRIDE + RM_STARTED, seq, Ordering::SeqCst);
            self.view.remove(&key(k), seq).unwrap();
            self.model[k as usize] = None;
            self.acked(k, seq, false);
        } else {
            let len = if roll < 200 {
                25 + rng.below(3000) as usize
            } else {
                25 + rng.below(300) as usize
            };
            let value = encode(k, seq, len);
            if roll < 300 {
                // The value is not given; a "worker" reads it and fills it in (or not).
                self.view.upsert(&key(k), seq, None, len).unwrap();
                self.acked(k, seq, true);
                if rng.below(2) == 0 {
                    self.view.fill(&key(k), seq, &value).unwrap();
                }
            } else {
                self.view.upsert(&key(k), seq, Some(&value), len).unwrap();
                self.acked(k, seq, true);
            }
            self.model[k as usize] = Some((seq, value));
        }
        if seq % 64 == 0 {
            let live = self.model.iter().flatten();
            let (records, value_bytes) =
                live.fold((0, 0), |(n, b), (_, v)| (n + 1, b + v.len() as u64));
            self.view.set_stats(ViewStats {
                records,
                value_bytes,
                device_bytes: 1 << 30,
            });
            self.view.heartbeat();
        }
    }

    /// A successor daemon's start: create (the old view goes dead at once), fill, publish.
    fn replace(&mut self, path: &Path) {
        let mut next = ViewWriter::create(path, &config()).unwrap();
        for (k, entry) in self.model.iter().enumerate() {
            if let Some((seq, value)) = entry {
                next.upsert(&key(k as u64), *seq, Some(value), value.len())
                    .unwrap();
            }
        }
        next.publish().unwrap();
        self.view = next; // drops the old writer
    }
}

fn spawn_reader(view: &Path, ack: &Path, id: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::stress::reader_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ENV, format!("{}|{}|{id}", view.display(), ack.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[test]
fn readers_in_other_processes_never_see_torn_stale_or_deleted_values() {
    let dir = tempfile::tempdir().unwrap();
    let view_path = dir.path().join("stress.view");
    let ack_path = dir.path().join("ack");
    std::fs::write(&ack_path, vec![0u8; ACK_FILE_BYTES]).unwrap();
    let mut w = Writer {
        view: ViewWriter::create(&view_path, &config()).unwrap(),
        ack: map_ack(&ack_path, true),
        seq: 0,
        model: vec![None; KEYS as usize],
    };
    w.view.publish().unwrap();
    let mut readers: Vec<Child> = (0..READERS)
        .map(|id| spawn_reader(&view_path, &ack_path, id))
        .collect();
    let mut victim = Some(spawn_reader(&view_path, &ack_path, READERS));
    // The run starts when every reader has opened the first view (a busy machine may start
    // them slowly), so that each must follow both replacements.
    let waiting = Instant::now();
    while (0..=READERS).any(|i| w.ack.load64(READY + 8 * i) != Some(1)) {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "the readers did not start"
        );
        w.view.heartbeat();
        std::thread::sleep(Duration::from_millis(5));
    }

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let (mut replaced, mut ops_after_kill, mut incomplete_seen) = (0, 0u64, 0);
    let mut earlier_rebuilds = 0;
    while started.elapsed() < RUN {
        w.step(&mut rng);
        if victim.is_none() {
            ops_after_kill += 1;
        }
        incomplete_seen += u64::from(!w.view.is_complete());
        let phase = started.elapsed().as_millis() * 3 / RUN.as_millis();
        if phase > replaced && replaced < 2 {
            earlier_rebuilds += w.view.rebuilds();
            w.replace(&view_path);
            replaced += 1;
        }
        if started.elapsed() > RUN / 2 {
            if let Some(mut v) = victim.take() {
                v.kill().unwrap(); // SIGKILL, wherever it is in a lookup
                let status = v.wait().unwrap();
                assert_eq!(
                    status.signal(),
                    Some(libc::SIGKILL),
                    "the victim was killed, not exited"
                );
            }
        }
    }
    w.ack.store64(DONE, 1, Ordering::SeqCst);
    let mut failures = Vec::new();
    for (id, mut child) in readers.drain(..).enumerate() {
        let out = BufReader::new(child.stdout.take().unwrap());
        // Read everything (a closed pipe would fail the child's last prints). The harness
        // prints "test ... " before the line, on the same line.
        let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
        let result = lines
            .iter()
            .find_map(|l| l.find("RESULT").map(|at| l[at..].to_string()));
        let status = child.wait().unwrap();
        let line = result.unwrap_or_default();
        eprintln!("reader {id}: {line}");
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if !status.success() || field("violations") != 0 {
            failures.push(format!("reader {id}: {status}: {line}"));
        }
        // The test must have tested something: many hits and misses, and both replacements.
        assert!(field("hits") >= 1000, "reader {id}: too few hits: {line}");
        assert!(
            field("misses") >= 100,
            "reader {id}: too few misses: {line}"
        );
        assert!(
            field("reopens") >= 2,
            "reader {id}: did not follow the replacements: {line}"
        );
    }
    let rebuilds = earlier_rebuilds + w.view.rebuilds();
    eprintln!(
        "writer: {} operations, {ops_after_kill} after the kill, {rebuilds} rebuilds, \
         incomplete during {incomplete_seen} operations",
        w.seq
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(ops_after_kill > 1000, "the writer went on after the kill");
    assert!(rebuilds > 0, "the stress must rebuild the table");
}

/// The reader process (runs only when re-executed with `HPKV_VIEW_STRESS`).
#[test]
fn reader_process() {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let view_path = Path::new(parts.next().unwrap()).to_path_buf();
    // Mapped writable only to set this reader's READY word.
    let ack = map_ack(Path::new(parts.next().unwrap()), true);
    let id: u64 = parts.next().unwrap().parse().unwrap();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (id + 1).wrapping_mul(0x9e37_79b9));
    let deadline = Instant::now() + RUN + Duration::from_secs(90);
    let (mut hits, mut misses, mut reopens, mut violations) = (0u64, 0u64, 0u64, 0u64);
    let mut unknown = std::collections::BTreeMap::<String, u64>::new();
    let mut reader: Option<ViewReader> = None;
    let mut last_instance = 0;
    let mut scratch = Vec::with_capacity(crate::VALUE_BYTES_MAX);
    let report = |what: String, violations: &mut u64| {
        *violations += 1;
        if *violations <= 10 {
            eprintln!("reader {id}: VIOLATION {what}");
        }
    };
    loop {
        if ack.load64(DONE) == Some(1) || Instant::now() > deadline {
            break;
        }
        if reader.as_ref().is_none_or(ViewReader::is_dead) {
            if let Ok(r) = ViewReader::open(&view_path) {
                if r.instance_id() != last_instance {
                    reopens += u64::from(last_instance != 0);
                    last_instance = r.instance_id();
                }
                reader = Some(r);
                ack.store64(READY + 8 * id as usize, 1, Ordering::SeqCst);
            } else {
                reader = None;
                std::thread::yield_now();
                continue;
            }
        }
        let r = reader.as_ref().unwrap();
        // A quarter of the lookups pause at their delicate points (up to some microseconds).
        let pause = if rng.below(4) == 0 {
            rng.below(2000) as u32
        } else {
            0
        };
        crate::reader::TEST_PAUSE_SPINS.store(pause, Ordering::Relaxed);
        let k = rng.below(KEYS);
        let acked = ack.load64(k as usize * KEY_STRIDE + ACK).unwrap();
        fence(Ordering::SeqCst);
        let (acked_seq, acked_present) = (acked >> 1, acked & 1 == 1);
        let answer = r.get(&key(k), &mut scratch);
        fence(Ordering::SeqCst);
        match answer {
            Lookup::Hit { seq } => {
                hits += 1;
                let max_started = ack.load64(MAX_STARTED).unwrap();
                if let Err(why) = verify(k, seq, &scratch) {
                    report(
                        format!("key {k}: torn or foreign value: {why}"),
                        &mut violations,
                    );
                } else if seq < acked_seq {
                    let what = if acked_present { "stale" } else { "deleted" };
                    report(
                        format!("key {k}: {what}: seq {seq} read after {acked_seq} was acked"),
                        &mut violations,
                    );
                } else if seq > max_started {
                    report(
                        format!("key {k}: seq {seq} from the future ({max_started})"),
                        &mut violations,
                    );
                }
            }
            Lookup::Miss => {
                misses += 1;
                let rm_started = ack.load64(k as usize * KEY_STRIDE + RM_STARTED).unwrap();
                if acked_present && rm_started <= acked_seq {
                    report(
                        format!(
                            "key {k}: miss, but seq {acked_seq} is acked and no removal started"
                        ),
                        &mut violations,
                    );
                }
            }
            Lookup::Unknown(why) => {
                *unknown.entry(format!("{why:?}")).or_default() += 1;
                if why == Unknown::Corrupt {
                    report(format!("key {k}: the view looked corrupt"), &mut violations);
                }
            }
        }
    }
    let unknown: Vec<String> = unknown.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    println!(
        "RESULT hits={hits} misses={misses} reopens={reopens} violations={violations} unknown={}",
        unknown.join(",")
    );
    assert_eq!(violations, 0);
}
