//! Bad input through the real device: fuzzer processes send random and malformed requests
//! (`oracle.rs` says what each must get), a checker verifies known keys all along, and a
//! signal storm interrupts, stops, continues and now and then kills the fuzzers. hpkvd must
//! answer every request as the contract says and stay up; the known keys must stay intact.
//!
//! PURGE is among the requests. It erases the known keys too, so a fuzzer takes the purge
//! lock (an exclusive `flock`) for it and counts it in the purge file; the checker holds the
//! lock while it checks and writes its keys again when the count moved.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::daemon::{log_tail, Daemon};
use crate::ffi::{catch_signal, Arena, Target};
use crate::kill9::Common;
use crate::log::now_ns;
use crate::oracle::{self, Call, FdMode, Gen, Request};
use crate::report;
use crate::rng::Rng;
use crate::store::Store;
use crate::worker::{open_store, EXIT_DONE, EXIT_WRONG};

/// Open files per fuzzer.
const FILES: usize = 4;
/// A fuzzer writes its count every this many requests.
const COUNT_EVERY: u64 = 1024;
/// Keys the checker keeps.
const KNOWN_KEYS: usize = 48;
/// PURGEs per million fuzzer requests.
const PURGE_PPM: u64 = 100;
/// The checker's pause between two checks.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often the storm says how far the fuzzers are.
const PROGRESS_EVERY: Duration = Duration::from_secs(300);
/// Fuzzer kills per thousand storm signals.
const KILL_PER_MILLE: u64 = 3;

/// What a fuzzer or the checker is told.
#[derive(Clone, Debug)]
pub struct FuzzSpec {
    pub device: PathBuf,
    pub seed: u64,
    pub process: u32,
    /// Restarts of this fuzzer so far (after the storm killed it).
    pub incarnation: u32,
    /// Requests to send (0: no limit).
    pub requests: u64,
    /// When to stop: `CLOCK_MONOTONIC` ns (the same for every incarnation).
    pub until_ns: u64,
    /// Where it keeps its count (and the checker's stop file and purge files live).
    pub dir: PathBuf,
}

impl FuzzSpec {
    fn count_file(&self) -> PathBuf {
        self.dir.join(format!("count.{}", self.process))
    }
}

fn lock_file(dir: &Path) -> PathBuf {
    dir.join("purge.lock")
}

fn purge_count_file(dir: &Path) -> PathBuf {
    dir.join("purges")
}

/// The purge lock, held while it lives.
fn purge_lock(dir: &Path) -> Flock<File> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_file(dir))
        .expect("the purge lock file");
    loop {
        match Flock::lock(f, FlockArg::LockExclusive) {
            Ok(lock) => return lock,
            // A storm signal handled without SA_RESTART interrupted the wait: wait again.
            Err((back, Errno::EINTR)) => f = back,
            Err((_, e)) => panic!("flock of the purge lock: {e}"),
        }
    }
}

fn purges(dir: &Path) -> u64 {
    std::fs::read_to_string(purge_count_file(dir))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes `text` to `path` atomically (a process killed meanwhile leaves the old file).
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Counts a fuzzer keeps: requests sent, answered EINTR, PURGEs.
#[derive(Clone, Copy, Debug, Default)]
struct FuzzCounts {
    requests: u64,
    interrupted: u64,
    purges: u64,
}

fn read_counts(path: &Path) -> FuzzCounts {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let n: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match n[..] {
        [requests, interrupted, purges] => FuzzCounts {
            requests,
            interrupted,
            purges,
        },
        _ => FuzzCounts::default(),
    }
}

fn open_mode(device: &Path, mode: FdMode) -> Result<File, Errno> {
    let mut o = OpenOptions::new();
    match mode {
        FdMode::ReadWrite => o.read(true).write(true),
        FdMode::ReadOnly => o.read(true),
        FdMode::WriteOnly => o.write(true),
    };
    o.open(device)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

fn issue(arena: &mut Arena, files: &[File], call: Call) -> Result<usize, Errno> {
    match call {
        Call::Write { fd, target, len } => arena.write(files[fd].as_fd(), target, len),
        Call::Read { fd, target, len } => arena.read(files[fd].as_fd(), target, len),
        Call::Ioctl { fd, cmd, target } => arena
            .ioctl(files[fd].as_fd(), cmd, target)
            .map(|r| usize::try_from(r).unwrap_or(usize::MAX)),
    }
}

/// A fuzzer process.
pub fn run_fuzzer(spec: &FuzzSpec) -> ExitCode {
    catch_signal(Signal::SIGUSR1, false);
    catch_signal(Signal::SIGUSR2, true);
    catch_signal(Signal::SIGALRM, false);
    let mut rng = Rng::derive(
        spec.seed,
        &[0xbad, u64::from(spec.process), u64::from(spec.incarnation)],
    );
    let modes: Vec<FdMode> = (0..FILES)
        .map(|i| match (i, rng.below(4)) {
            (0, _) | (_, 0 | 1) => FdMode::ReadWrite,
            (_, 2) => FdMode::ReadOnly,
            _ => FdMode::WriteOnly,
        })
        .collect();
    let files: Result<Vec<File>, Errno> =
        modes.iter().map(|&m| open_mode(&spec.device, m)).collect();
    let Ok(mut files) = files else {
        eprintln!(
            "torture fuzzer {}: cannot open {}",
            spec.process,
            spec.device.display()
        );
        return ExitCode::from(EXIT_WRONG);
    };
    let mut gen = Gen::new(rng, modes, spec.process, PURGE_PPM);
    let mut arena = Arena::new(oracle::ARENA_BYTES);
    let mut counts = read_counts(&spec.count_file());
    let until = spec.until_ns;
    while (spec.requests == 0 || counts.requests < spec.requests) && now_ns() < until {
        let req = gen.next(arena.bytes());
        let got = if req.purge {
            let _lock = purge_lock(&spec.dir);
            // Counted before it is sent: a fuzzer the storm kills right after the PURGE
            // must not leave the checker expecting keys that are gone (a PURGE that never
            // went out only makes the checker write its keys again).
            write_atomic(
                &purge_count_file(&spec.dir),
                &(purges(&spec.dir) + 1).to_string(),
            );
            let got = issue(&mut arena, &files, req.call);
            if got.is_ok() {
                counts.purges += 1;
            }
            got
        } else {
            issue(&mut arena, &files, req.call)
        };
        counts.requests += 1;
        match got {
            Err(Errno::EINTR) => counts.interrupted += 1,
            got if req.expect.allows(got) => {}
            got => return violation(spec, &req, got),
        }
        if counts.requests % COUNT_EVERY == 0 {
            write_counts(spec, counts);
        }
        if gen.rng.below(5000) == 0 {
            // Close a file and open another, in any mode.
            let fd = gen.rng.index(FILES);
            if let Ok(f) = open_mode(&spec.device, gen.fds[fd]) {
                files[fd] = f;
            }
        }
    }
    write_counts(spec, counts);
    ExitCode::from(EXIT_DONE)
}

fn write_counts(spec: &FuzzSpec, c: FuzzCounts) {
    write_atomic(
        &spec.count_file(),
        &format!("{} {} {}", c.requests, c.interrupted, c.purges),
    );
}

fn violation(spec: &FuzzSpec, req: &Request, got: Result<usize, Errno>) -> ExitCode {
    let got = match got {
        Ok(n) => format!("success ({n})"),
        Err(e) => format!("{e}"),
    };
    eprintln!(
        "torture fuzzer {}: {} answered {got}; the contract allows {}",
        spec.process, req.what, req.expect
    );
    println!(
        "torture:bad-input: VIOLATION: {} answered {got}; allowed: {}",
        req.what, req.expect
    );
    ExitCode::from(EXIT_WRONG)
}

/// The checker's keys and values (generation `g`).
fn known(g: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..KNOWN_KEYS)
        .map(|i| {
            let mut key = format!("k{i:03}").into_bytes();
            if i % 16 == 5 {
                key.resize(hpkv_abi::STR_KEY_MAX, b'-');
            }
            let len = match i {
                0 | 24 => hpkv_abi::VALUE_MAX,
                _ if i % 12 == 1 => 20_000 + i * 100,
                _ => 10 + i * 37,
            };
            let mut rng = Rng::new(crate::rng::mix(&[g, i as u64]));
            let value = (0..len)
                .map(|_| b' ' + u8::try_from(rng.below(95)).expect("small"))
                .collect();
            (key, value)
        })
        .collect()
}

/// The checker: verifies the known keys again and again until the stop file appears; with
/// `once`, checks them once without writing (after a restart).
pub fn run_checker(spec: &FuzzSpec, once: bool) -> ExitCode {
    match checker(spec, once) {
        Ok(checks) => {
            write_atomic(&spec.count_file(), &format!("{checks} 0 0"));
            ExitCode::from(EXIT_DONE)
        }
        Err(why) => {
            println!("torture:bad-input: CHECKER: {why}");
            ExitCode::from(EXIT_WRONG)
        }
    }
}

fn checker(spec: &FuzzSpec, once: bool) -> Result<u64, String> {
    let mut store = open_store(&spec.device, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let generation_file = spec.dir.join("generation");
    let mut generation: u64 = std::fs::read_to_string(&generation_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let mut written_at: Option<u64> = None;
    let mut checks = 0;
    let stop = spec.dir.join("stop");
    loop {
        {
            let _lock = purge_lock(&spec.dir);
            let now = purges(&spec.dir);
            if !once && written_at != Some(now) {
                // First round, or a PURGE took the keys: write them (a new generation).
                generation += 1;
                for (k, v) in known(generation) {
                    store
                        .insert(&k, &v)
                        .map_err(|e| format!("INSERT of a known key answered {e}"))?;
                }
                store.sync().map_err(|e| format!("SYNC answered {e}"))?;
                write_atomic(&generation_file, &generation.to_string());
                written_at = Some(now);
            }
            check_known(&mut store, generation)?;
            checks += 1;
        }
        if once || stop.exists() {
            return Ok(checks);
        }
        std::thread::sleep(CHECK_EVERY);
    }
}

fn check_known(store: &mut Store, generation: u64) -> Result<(), String> {
    let want = known(generation);
    for (k, v) in &want {
        let shown = String::from_utf8_lossy(&k[..4]).into_owned();
        match store.get_safe(k) {
            Ok(Some(got)) if got == *v => {}
            other => {
                return Err(format!(
                    "the safe GET of {shown} gave {:?}",
                    other.map(|o| o.map(|g| g.len()))
                ))
            }
        }
        match store.get_readme(k) {
            Ok(Some(got)) if got == *v => {}
            other => {
                return Err(format!(
                    "GET of {shown} gave {:?}",
                    other.map(|o| o.map(|g| g.len()))
                ))
            }
        }
    }
    let listed: Vec<(Vec<u8>, Vec<u8>)> = store
        .client_range(b"k", b"l")
        .map_err(|e| format!("RANGE over the known keys answered {e}"))?;
    let mut sorted = want;
    sorted.sort();
    if listed != sorted {
        return Err(format!(
            "RANGE over the known keys gave {} records, not {}",
            listed.len(),
            sorted.len()
        ));
    }
    Ok(())
}

/// The scenario.
pub struct BadInput {
    pub common: Common,
    pub store: PathBuf,
    pub seconds: u64,
    /// Requests in all (0: as many as fit in `seconds`).
    pub requests: u64,
    pub fuzzers: u32,
}

/// What the run counted.
#[derive(Default)]
struct Totals {
    requests: u64,
    interrupted: u64,
    purges: u64,
    signals: u64,
    kills: u64,
    checks: u64,
}

/// A child process that is killed if it is still running when this is dropped (a scenario
/// that fails part-way leaves nothing behind).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn(role: &str, spec: &FuzzSpec, extra: &[&str]) -> Result<Proc, String> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hpkv-torture"));
    Command::new(exe)
        .arg(role)
        .args(extra)
        .arg("--device")
        .arg(&spec.device)
        .args(["--seed", &spec.seed.to_string()])
        .args(["--process", &spec.process.to_string()])
        .args(["--incarnation", &spec.incarnation.to_string()])
        .args(["--requests", &spec.requests.to_string()])
        .args(["--until-ns", &spec.until_ns.to_string()])
        .arg("--dir")
        .arg(&spec.dir)
        .spawn()
        .map(Proc)
        .map_err(|e| format!("starting a {role}: {e}"))
}

fn pid(c: &Proc) -> Pid {
    Pid::from_raw(i32::try_from(c.0.id()).expect("pid"))
}

impl BadInput {
    pub fn run(&self) -> bool {
        let c = &self.common;
        report::progress(
            "bad-input",
            &format!(
                "seed {}, {} fuzzers, {} s, {} requests",
                c.seed, self.fuzzers, self.seconds, self.requests
            ),
        );
        match self.scenario() {
            Ok(t) => {
                report::figures(
                    "bad-input",
                    &[
                        ("requests", t.requests),
                        ("interrupted", t.interrupted),
                        ("purges", t.purges),
                        ("signals", t.signals),
                        ("fuzzer_kills", t.kills),
                        ("checks", t.checks),
                    ],
                );
                report::pass(
                    "bad-input",
                    &format!(
                        "{} requests, every answer the contract's ({} interrupted by {} signals, {} fuzzers killed, {} PURGEs); {} checks of the known keys; hpkvd up",
                        t.requests, t.interrupted, t.signals, t.kills, t.purges, t.checks
                    ),
                );
                true
            }
            Err(why) => {
                report::fail("bad-input", &why, c.seed);
                false
            }
        }
    }

    fn scenario(&self) -> Result<Totals, String> {
        let c = &self.common;
        let dir = PathBuf::from("/tmp/torture-bad-input");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let spec = c.daemon("hpkv-bad", self.store.clone(), &[]);
        let mut daemon = Daemon::start(&spec, &["--force-initialize"])?;
        daemon.wait_ready()?;
        zero_length_writes(&spec.node())?;
        let base = FuzzSpec {
            device: spec.node(),
            seed: c.seed,
            process: 0,
            incarnation: 0,
            requests: self.requests.div_ceil(u64::from(self.fuzzers)),
            until_ns: now_ns() + self.seconds * 1_000_000_000,
            dir: dir.clone(),
        };
        let mut checker_spec = base.clone();
        checker_spec.process = self.fuzzers;
        let mut checker = spawn("checker", &checker_spec, &[])?;
        // The checker writes its keys before the storm begins.
        std::thread::sleep(Duration::from_secs(2));
        let mut totals = self
            .storm(&base, &mut daemon)
            .map_err(|e| match daemon.ended() {
                Some(how) => format!("{e}\nhpkvd ended: {how}\n{}", log_tail(&spec, 20)),
                None => e,
            })?;
        std::fs::write(dir.join("stop"), b"").map_err(|e| e.to_string())?;
        let status = checker.0.wait().map_err(|e| e.to_string())?;
        if status.code() != Some(i32::from(EXIT_DONE)) {
            return Err(format!("the checker failed ({status}): see its line above"));
        }
        totals.checks = read_counts(&checker_spec.count_file()).requests;
        if !daemon.alive() {
            return Err(format!("hpkvd died\n{}", log_tail(&spec, 20)));
        }
        daemon.signal(Signal::SIGTERM);
        let status = daemon.wait_exit()?;
        if !status.success() {
            return Err(format!(
                "hpkvd exited with {status} after SIGTERM\n{}",
                log_tail(&spec, 20)
            ));
        }
        // After a restart the known keys are still there.
        let mut daemon = Daemon::start(&spec, &[])?;
        daemon.wait_ready()?;
        let status = spawn("checker", &checker_spec, &["--once"])?
            .0
            .wait()
            .map_err(|e| e.to_string())?;
        if status.code() != Some(i32::from(EXIT_DONE)) {
            return Err("after a restart the known keys are not what they were (above)".into());
        }
        daemon.signal(Signal::SIGTERM);
        daemon.wait_exit()?;
        Ok(totals)
    }

    /// Runs the fuzzers under the signal storm until they finish.
    fn storm(&self, base: &FuzzSpec, daemon: &mut Daemon) -> Result<Totals, String> {
        let mut rng = Rng::derive(base.seed, &[0x5707]);
        let mut totals = Totals::default();
        let mut fuzzers: Vec<(FuzzSpec, Option<Proc>)> = Vec::new();
        for p in 0..self.fuzzers {
            let mut s = base.clone();
            s.process = p;
            let child = spawn("fuzz", &s, &[])?;
            fuzzers.push((s, Some(child)));
        }
        let deadline = Instant::now() + Duration::from_secs(self.seconds + 120);
        let mut next_report = Instant::now() + PROGRESS_EVERY;
        while fuzzers.iter().any(|(_, c)| c.is_some()) {
            if Instant::now() > deadline {
                return Err("the fuzzers did not finish in time".into());
            }
            if Instant::now() > next_report {
                next_report += PROGRESS_EVERY;
                let sent: u64 = fuzzers
                    .iter()
                    .map(|(s, _)| read_counts(&s.count_file()).requests)
                    .sum();
                report::progress("bad-input", &format!("{sent} requests so far"));
            }
            if !daemon.alive() {
                return Err("hpkvd died under bad input".into());
            }
            std::thread::sleep(Duration::from_millis(rng.range(5, 30)));
            let i = rng.index(fuzzers.len());
            let (s, slot) = &mut fuzzers[i];
            let Some(child) = slot.as_mut() else { continue };
            if let Some(status) = child.0.try_wait().map_err(|e| e.to_string())? {
                *slot = None;
                match status.code() {
                    Some(0) => continue,
                    Some(code) if code == i32::from(EXIT_WRONG) => {
                        return Err(format!(
                            "fuzzer {} saw an answer the contract does not allow (above)",
                            s.process
                        ))
                    }
                    Some(_) => {
                        return Err(format!(
                            "fuzzer {} ended with {status}, not by a signal: the torture program failed (above)",
                            s.process
                        ))
                    }
                    None => {
                        // Killed by the storm: start it again for the rest of its requests.
                        s.incarnation += 1;
                        *slot = Some(spawn("fuzz", s, &[])?);
                        continue;
                    }
                }
            }
            signal_one(&mut rng, pid(child), &mut totals);
        }
        for (s, _) in &fuzzers {
            let n = read_counts(&s.count_file());
            totals.requests += n.requests;
            totals.interrupted += n.interrupted;
            totals.purges += n.purges;
        }
        Ok(totals)
    }
}

/// One signal of the storm.
fn signal_one(rng: &mut Rng, p: Pid, totals: &mut Totals) {
    totals.signals += 1;
    let sig = match rng.below(1000) {
        r if r < KILL_PER_MILLE => {
            totals.kills += 1;
            Signal::SIGKILL
        }
        r if r < 400 => Signal::SIGUSR1,
        r if r < 700 => Signal::SIGUSR2,
        r if r < 850 => Signal::SIGALRM,
        r if r < 950 => Signal::SIGCONT, // a no-op for a running process
        _ => {
            let _ = kill(p, Signal::SIGSTOP);
            std::thread::sleep(Duration::from_millis(rng.range(1, 5)));
            Signal::SIGCONT
        }
    };
    let _ = kill(p, sig);
}

/// A zero-length `write()` returns 0 before hpkvd sees it (the kernel answers it), from a
/// valid pointer and from NULL alike.
fn zero_length_writes(device: &Path) -> Result<(), String> {
    let f =
        open_mode(device, FdMode::ReadWrite).map_err(|e| format!("{}: {e}", device.display()))?;
    let mut arena = Arena::new(4096);
    for t in [Target::At(0), Target::Null] {
        match arena.write(f.as_fd(), t, 0) {
            Ok(0) => {}
            other => {
                return Err(format!(
                    "a zero-length write() from {t:?} gave {other:?}, not 0"
                ))
            }
        }
    }
    report::pass(
        "bad-input-zero-length-write",
        "write(fd, buf, 0) returns 0: the kernel answers it (hpkvd would say EINVAL: no colon)",
    );
    Ok(())
}
