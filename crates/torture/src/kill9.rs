//! kill -9 of hpkvd at random moments, during start-up and recovery too, and SIGTERM now
//! and then (sometimes followed by kill -9 during the clean shutdown). The acknowledged-
//! operations log is a file on tmpfs: it outlives hpkvd and the workers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::daemon::{log_tail, Daemon, DaemonSpec};
use crate::log::{Header, LogDev};
use crate::report;
use crate::rng::Rng;
use crate::verify::{self, Figures};
use crate::worker::WorkerSpec;
use crate::workload::{log_slots, wait_for_writers, Round};

/// The readers that run beside the writers (`reader::read_path`): a client's GET (hpkvd's
/// shared view when it can answer) and the device's.
pub const READERS: &[&str] = &["client", "device"];

/// What every scenario is given.
#[derive(Clone, Debug)]
pub struct Common {
    pub seed: u64,
    pub writers: u16,
    pub keys: u32,
    pub hpkvd: PathBuf,
    /// Where hpkvd's stderr goes.
    pub daemon_log: PathBuf,
}

impl Common {
    pub fn worker_spec(
        &self,
        device: PathBuf,
        log: PathBuf,
        round: u64,
        seconds: u64,
    ) -> WorkerSpec {
        WorkerSpec {
            device,
            log,
            writer: 0,
            keys: self.keys,
            seed: self.seed,
            round,
            seconds,
            purges: true,
            big_percent: 4,
            purge_every_ms: 4000,
        }
    }

    pub fn daemon(&self, name: &str, store: PathBuf, args: &[&str]) -> DaemonSpec {
        DaemonSpec {
            hpkvd: self.hpkvd.clone(),
            name: name.into(),
            store,
            args: args.iter().map(|s| (*s).to_string()).collect(),
            log: self.daemon_log.clone(),
        }
    }

    /// A new log for `rounds` rounds of this many writers.
    pub fn new_log(
        &self,
        path: &Path,
        sectors_per_round: u64,
        rounds: u64,
    ) -> Result<LogDev, String> {
        let header = Header {
            run_id: crate::rng::mix(&[
                self.seed,
                crate::log::now_ns(),
                u64::from(std::process::id()),
            ]),
            seed: self.seed,
            writers: self.writers,
            region_sectors: 4096 + sectors_per_round * rounds,
            epoch: 1,
        };
        LogDev::create(path, header)
            .map_err(|e| format!("creating the log {}: {e}", path.display()))
    }
}

pub struct Kill9 {
    pub common: Common,
    pub store: PathBuf,
    pub log: PathBuf,
    pub rounds: u64,
}

/// The fault of one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    Term,
    /// SIGTERM, then SIGKILL during the clean shutdown.
    TermThenKill(u64),
}

/// Running totals, printed as the scenario's figures.
#[derive(Default)]
struct Totals {
    kills: u64,
    startup_kills: u64,
    terms: u64,
    figures: Figures,
    /// GETs of the verifiers that the shared view answered.
    view_answers: u64,
}

impl Kill9 {
    pub fn run(&self) -> bool {
        let c = &self.common;
        report::progress(
            "kill9",
            &format!(
                "seed {}, {} rounds, {} writers",
                c.seed, self.rounds, c.writers
            ),
        );
        match self.rounds_loop() {
            Ok(t) => {
                report::figures(
                    "kill9",
                    &[
                        ("rounds", self.rounds),
                        ("kill9", t.kills),
                        ("kill9_startup", t.startup_kills),
                        ("sigterm", t.terms),
                        ("operations", t.figures.operations),
                        ("acknowledged", t.figures.acknowledged),
                        ("lost", 0),
                        ("reader_reads", crate::reader::counts().0),
                        ("reader_reads_by_view", crate::reader::counts().1),
                        ("verifier_gets_by_view", t.view_answers),
                    ],
                );
                report::pass(
                    "kill9",
                    &format!(
                        "{} rounds: {} kill -9 ({} during start-up), {} SIGTERM; {} acknowledged operations verified, 0 lost",
                        self.rounds, t.kills, t.startup_kills, t.terms, t.figures.acknowledged
                    ),
                );
                true
            }
            Err(why) => {
                report::fail("kill9", &why, c.seed);
                false
            }
        }
    }

    fn rounds_loop(&self) -> Result<Totals, String> {
        let c = &self.common;
        c.new_log(&self.log, 2048, self.rounds)?;
        let _ = std::fs::remove_file(crate::reader::COUNTS);
        let spec = c.daemon("hpkv", self.store.clone(), &[]);
        let mut daemon = Daemon::start(&spec, &["--force-initialize"])?;
        let mut startup = daemon.wait_ready()?;
        let mut totals = Totals::default();
        for round in 1..=self.rounds {
            let mut rng = Rng::derive(c.seed, &[0x4b39, round]);
            let fault = match rng.below(100) {
                0..=79 => Fault::Kill,
                80..=89 => Fault::Term,
                _ => Fault::TermThenKill(rng.range(0, 300)),
            };
            let run_ms = rng.range(0, 2500);
            let log = LogDev::open(&self.log).map_err(|e| e.to_string())?;
            let slots = log_slots(&log)?;
            let workers = Round::start(
                &c.worker_spec(spec.node(), self.log.clone(), round, 60),
                c.writers,
                READERS,
            )?;
            // The fault strikes a random moment after every writer got going.
            wait_for_writers(&log, &slots).map_err(|e| format!("round {round}: {e}"))?;
            std::thread::sleep(Duration::from_millis(run_ms));
            let ended = strike(daemon, fault, &mut totals)?;
            let stopped = workers.wait().map_err(|e| format!("round {round}: {e}"))?;
            let (d, kills, took) = restart(&spec, &mut rng, startup)?;
            daemon = d;
            startup = took;
            totals.kills += kills;
            totals.startup_kills += kills;
            let figures = verify::verify_and_settle(&self.log, &spec.node(), c.keys, c.seed)
                .map_err(|e| {
                    format!(
                        "round {round} ({fault:?} after {run_ms} ms): {e}\nhpkvd's log:\n{}",
                        log_tail(&spec, 15)
                    )
                })?;
            totals.figures = figures;
            totals.view_answers += figures.view_answers;
            report::progress(
                "kill9",
                &format!(
                    "round {round}: {fault:?} after {run_ms} ms ({ended}); writers {}/{} in doubt; {kills} kill -9 during start-up; {} records; {} acknowledged operations so far, all there",
                    stopped.in_doubt,
                    stopped.in_doubt + stopped.done,
                    figures.records,
                    figures.acknowledged
                ),
            );
        }
        // A clean stop and start (the snapshot path) must keep everything too.
        daemon.signal(Signal::SIGTERM);
        let status = daemon.wait_exit()?;
        if !status.success() {
            return Err(format!(
                "hpkvd exited with {status} after SIGTERM\n{}",
                log_tail(&spec, 15)
            ));
        }
        let mut daemon = Daemon::start(&spec, &[])?;
        daemon.wait_ready()?;
        totals.figures = verify::verify_and_settle(&self.log, &spec.node(), c.keys, c.seed)
            .map_err(|e| format!("after the final clean restart: {e}"))?;
        daemon.signal(Signal::SIGTERM);
        daemon.wait_exit()?;
        Ok(totals)
    }
}

/// Delivers the round's fault; describes how hpkvd ended.
fn strike(daemon: Daemon, fault: Fault, totals: &mut Totals) -> Result<String, String> {
    let spec = daemon.spec.clone();
    match fault {
        Fault::Kill => {
            daemon.signal(Signal::SIGKILL);
            totals.kills += 1;
        }
        Fault::Term => {
            daemon.signal(Signal::SIGTERM);
            totals.terms += 1;
        }
        Fault::TermThenKill(ms) => {
            daemon.signal(Signal::SIGTERM);
            std::thread::sleep(Duration::from_millis(ms));
            daemon.signal(Signal::SIGKILL);
            totals.terms += 1;
            totals.kills += 1;
        }
    }
    let status = daemon.wait_exit()?;
    if fault == Fault::Term && !status.success() {
        return Err(format!(
            "hpkvd exited with {status} after SIGTERM\n{}",
            log_tail(&spec, 15)
        ));
    }
    Ok(format!("{status}"))
}

/// Starts hpkvd again; a third of the time it is killed during start-up (recovery) once to
/// three times first, at a random moment within the last start-up's duration.
fn restart(
    spec: &DaemonSpec,
    rng: &mut Rng,
    last_startup: Duration,
) -> Result<(Daemon, u64, Duration), String> {
    let mut kills = 0;
    if rng.chance(35) {
        for _ in 0..rng.range(1, 3) {
            let d = Daemon::start(spec, &[])?;
            let window = u64::try_from(last_startup.as_micros())
                .unwrap_or(u64::MAX)
                .max(1000);
            std::thread::sleep(Duration::from_micros(rng.below(window)));
            d.signal(Signal::SIGKILL);
            d.wait_exit()?;
            kills += 1;
        }
    }
    let mut d = Daemon::start(spec, &[])?;
    let startup = d
        .wait_ready()
        .map_err(|e| format!("{e}\nhpkvd's log:\n{}", log_tail(spec, 15)))?;
    Ok((d, kills, startup))
}
