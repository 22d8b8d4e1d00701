//! A full device: a small disk filled until writes answer ENOSPC. Expected: ENOSPC changes
//! nothing; reads and deletes keep working; after deletes, compaction gives the space back
//! and large puts succeed again; the same after a kill -9 on the full device (recovery on a
//! device with no free segment to spare).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;

use crate::daemon::{log_tail, Daemon, DaemonSpec};
use crate::kill9::Common;
use crate::log::{LogDev, OpCode};
use crate::model::Event;
use crate::report;
use crate::value::{key_class, KeyClass};
use crate::verify;
use crate::worker::{WorkerSpec, Writer};
use crate::workload::Round;

pub struct Enospc {
    pub common: Common,
    /// A small disk of its own.
    pub disk: PathBuf,
    pub log: PathBuf,
}

/// Keys per writer: enough large values to pass the small disk's size several times.
const KEYS: u32 = 40;
/// How long a put may keep answering ENOSPC after deletes, while compaction reclaims.
const RECLAIM_TIMEOUT: Duration = Duration::from_secs(20);
/// The size of the puts that must fit again after the deletes.
const BIG: u32 = 90_000;
/// Of them, per writer (fewer than it deleted: they must fit).
const PUTS_PER_WRITER: usize = 4;

#[derive(Default)]
struct Counts {
    enospc: u64,
    deletes: u64,
    puts_after_deletes: u64,
    acknowledged: u64,
}

impl Enospc {
    pub fn run(&self) -> bool {
        let c = &self.common;
        report::progress(
            "enospc",
            &format!("seed {}, disk {}", c.seed, self.disk.display()),
        );
        match self.scenario() {
            Ok(n) => {
                report::figures(
                    "enospc",
                    &[
                        ("enospc_answers", n.enospc),
                        ("deletes_on_full_device", n.deletes),
                        ("puts_after_deletes", n.puts_after_deletes),
                        ("acknowledged", n.acknowledged),
                        ("lost", 0),
                    ],
                );
                report::pass(
                    "enospc",
                    &format!(
                        "{} ENOSPC answers; {} deletes on the full device; {} large puts fit again after compaction; kill -9 on the full device; {} acknowledged operations verified, 0 lost",
                        n.enospc, n.deletes, n.puts_after_deletes, n.acknowledged
                    ),
                );
                true
            }
            Err(why) => {
                report::fail("enospc", &why, c.seed);
                false
            }
        }
    }

    fn spec(&self, device: PathBuf, round: u64, seconds: u64) -> WorkerSpec {
        let mut s = self
            .common
            .worker_spec(device, self.log.clone(), round, seconds);
        s.keys = KEYS;
        s.big_percent = 70;
        s.purges = false;
        // Deletes go on while the writers fill the device, and one answering ENOSPC fails
        // the worker: puts must never take the segments kept for deletes (the engine's
        // `deletes_keep_working_on_a_full_device_while_puts_go_on`, found here). More
        // deletes come between the fills, checked one by one.
        s
    }

    fn scenario(&self) -> Result<Counts, String> {
        let c = &self.common;
        let mut counts = Counts::default();
        c.new_log(&self.log, 4096, 4)?;
        let spec = c.daemon("hpkv-small", self.disk.clone(), &[]);
        let mut daemon = Daemon::start(&spec, &["--force-initialize"])?;
        daemon.wait_ready()?;
        let node = spec.node();
        // Fill it.
        Round::start(&self.spec(node.clone(), 1, 12), c.writers, &[])?.wait()?;
        let full = self.enospc_answers()?;
        if full == 0 {
            return Err("the workload never filled the device (no ENOSPC)".into());
        }
        verify::verify_and_settle(&self.log, &node, KEYS, c.seed)
            .map_err(|e| format!("on the full device: {e}"))?;
        self.delete_then_put(&node, 2, &mut counts)?;
        verify::verify_and_settle(&self.log, &node, KEYS, c.seed)
            .map_err(|e| format!("after deletes and puts: {e}"))?;
        // Fill it again, and kill hpkvd while the writers go on.
        let round = Round::start(&self.spec(node.clone(), 3, 600), c.writers, &[])?;
        wait_for_enospc(self, full)?;
        std::thread::sleep(Duration::from_millis(500));
        daemon.signal(Signal::SIGKILL);
        daemon.wait_exit()?;
        round.wait()?;
        let daemon = restart(&spec)?;
        verify::verify_and_settle(&self.log, &node, KEYS, c.seed)
            .map_err(|e| format!("after kill -9 on the full device: {e}"))?;
        self.delete_then_put(&node, 4, &mut counts)?;
        daemon.signal(Signal::SIGTERM);
        let status = daemon.wait_exit()?;
        if !status.success() {
            return Err(format!("hpkvd exited with {status} after SIGTERM"));
        }
        let daemon = restart(&spec)?;
        let f = verify::verify_and_settle(&self.log, &node, KEYS, c.seed)?;
        daemon.signal(Signal::SIGTERM);
        daemon.wait_exit()?;
        counts.enospc = self.enospc_answers()?;
        counts.acknowledged = f.acknowledged;
        Ok(counts)
    }

    /// Operations answered ENOSPC so far.
    fn enospc_answers(&self) -> Result<u64, String> {
        let log = LogDev::open(&self.log).map_err(|e| e.to_string())?;
        let h = verify::history(&log)?;
        let n = h
            .writers
            .iter()
            .flatten()
            .filter(|e| matches!(e, Event::Op(op) if op.outcome.is_some_and(|(e, _)| e == libc::ENOSPC)))
            .count();
        Ok(n as u64)
    }

    /// As each writer: deletes half of its keys (each must succeed on the full device); then
    /// puts large values into them until enough fit (compaction reclaims the deleted space).
    fn delete_then_put(
        &self,
        node: &std::path::Path,
        round: u64,
        counts: &mut Counts,
    ) -> Result<(), String> {
        let log = LogDev::open(&self.log).map_err(|e| e.to_string())?;
        let specs: Vec<WorkerSpec> = (0..self.common.writers)
            .map(|w| {
                let mut s = self.spec(node.to_owned(), round, 0);
                s.writer = w;
                s
            })
            .collect();
        let mut writers = Vec::new();
        for spec in &specs {
            let mut writer = Writer::open(spec, &log).map_err(|(_, e)| e)?;
            // (The readme DELETE cannot name a 512-byte key.)
            let victims: Vec<u32> = writer
                .keys()
                .keys()
                .copied()
                .filter(|&k| key_class(k) == KeyClass::String)
                .step_by(2)
                .collect();
            for &k in &victims {
                match writer.op(OpCode::Delete, k, 0) {
                    Ok(Ok(())) => counts.deletes += 1,
                    other => return Err(format!("DELETE on the full device: {other:?}")),
                }
            }
            writers.push((writer, victims));
        }
        let until = Instant::now() + RECLAIM_TIMEOUT;
        let mut fitted = 0;
        for (writer, victims) in &mut writers {
            for &k in victims.iter().take(PUTS_PER_WRITER) {
                loop {
                    match writer.op(OpCode::Insert, k, BIG) {
                        Ok(Ok(())) => break,
                        Ok(Err(Errno::ENOSPC)) if Instant::now() < until => {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        other => {
                            return Err(format!(
                                "a {BIG}-byte put after {} deletes, {fitted} puts: {other:?} after {RECLAIM_TIMEOUT:?}",
                                counts.deletes
                            ))
                        }
                    }
                }
                fitted += 1;
            }
        }
        counts.puts_after_deletes += fitted;
        Ok(())
    }
}

/// Waits until the workload meets ENOSPC again (more answers than `before`).
fn wait_for_enospc(s: &Enospc, before: u64) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        if s.enospc_answers()? > before {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err("the workload did not fill the device again".into())
}

fn restart(spec: &DaemonSpec) -> Result<Daemon, String> {
    let mut d = Daemon::start(spec, &[])?;
    d.wait_ready()
        .map_err(|e| format!("{e}\n{}", log_tail(spec, 15)))?;
    Ok(d)
}
