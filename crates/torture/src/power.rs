//! Power-offs: one boot of a run that powers the VM off again and again on the same disks.
//!
//! Boot 1 formats the store and starts the log; every later boot first verifies what the
//! power-off left (hpkvd recovers, the verifier reads everything back against the log) and
//! settles it. Unless it is the last boot, the workload then runs and, while it does, the
//! VM is powered off: by the guest (`sysrq b`: an immediate reboot, which ends the VM) or by
//! the host (run-vm.sh kills qemu `--power-off-after-ms` after the guest prints
//! `HPKV-VM power-off`). The log is a disk of its own written with `O_DIRECT|O_DSYNC`: each
//! record is on it before the operation it announces is issued.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::daemon::{log_tail, Daemon};
use crate::kill9::{Common, READERS};
use crate::log::LogDev;
use crate::report;
use crate::verify;
use crate::workload::{log_slots, wait_for_writers, Round};

/// Who powers the VM off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The guest: `echo b > /proc/sysrq-trigger`.
    Sysrq,
    /// The host: qemu killed with SIGKILL.
    Host,
}

pub struct PowerOff {
    pub common: Common,
    pub store: PathBuf,
    pub log: PathBuf,
    /// This boot, from 1.
    pub boot: u64,
    /// Power-offs in the run: boot `power_offs + 1` only verifies.
    pub total: u64,
    pub mode: Mode,
    /// How long the workload runs before the guest powers off (sysrq), or before the
    /// guest announces the power-off to the host (which then waits its own delay).
    pub after_ms: u64,
}

/// Sectors of each log region one boot may fill.
const SECTORS_PER_BOOT: u64 = 4096;
/// The workload runs at least this long (once every writer got going) before the power-off
/// is announced.
const WARM_UP_MS: u64 = 300;

impl PowerOff {
    pub fn run(&self) -> bool {
        let name = format!("power-boot-{}", self.boot);
        match self.boot_once() {
            Ok(summary) => {
                report::pass(&name, &summary);
                if self.boot <= self.total {
                    self.power_off();
                }
                true
            }
            Err(why) => {
                report::fail(&name, &why, self.common.seed);
                false
            }
        }
    }

    /// Verifies what the last power-off left (after boot 1), then starts the workload
    /// (before a power-off).
    fn boot_once(&self) -> Result<String, String> {
        let c = &self.common;
        let spec = c.daemon("hpkv-power", self.store.clone(), &[]);
        let mut summary = String::new();
        let daemon = if self.boot == 1 {
            c.new_log(&self.log, SECTORS_PER_BOOT, self.total + 1)?;
            let mut d = Daemon::start(&spec, &["--force-initialize"])?;
            d.wait_ready()?;
            d
        } else {
            let mut log = LogDev::open(&self.log).map_err(|e| format!("opening the log: {e}"))?;
            log.header.epoch = u32::try_from(self.boot).expect("boots fit u32");
            log.write_header()
                .map_err(|e| format!("writing the log header: {e}"))?;
            let mut d = Daemon::start(&spec, &[])?;
            let took = d
                .wait_ready()
                .map_err(|e| format!("{e}\n{}", log_tail(&spec, 15)))?;
            let f = verify::verify_and_settle(&self.log, &spec.node(), c.keys, c.seed)
                .map_err(|e| format!("after power-off {}: {e}", self.boot - 1))?;
            summary = format!(
                "after power-off {} (recovery {} ms): {} records, {} acknowledged operations verified, 0 lost",
                self.boot - 1,
                took.as_millis(),
                f.records,
                f.acknowledged
            );
            if self.boot > self.total {
                report::figures(
                    "power",
                    &[
                        ("power_offs", self.total),
                        ("operations", f.operations),
                        ("acknowledged", f.acknowledged),
                        ("lost", 0),
                    ],
                );
            }
            d
        };
        if self.boot > self.total {
            daemon.signal(Signal::SIGTERM);
            let status = daemon.wait_exit()?;
            if !status.success() {
                return Err(format!("hpkvd exited with {status} after SIGTERM"));
            }
            return Ok(summary);
        }
        let worker = c.worker_spec(spec.node(), self.log.clone(), self.boot, 3600);
        let log = LogDev::open(&self.log).map_err(|e| e.to_string())?;
        let slots = log_slots(&log)?;
        let round = Round::start(&worker, c.writers, READERS)?;
        // The power-off comes at a random moment after every writer got going.
        wait_for_writers(&log, &slots)?;
        // The workload goes on until the power goes: neither it nor hpkvd is stopped.
        std::mem::forget(round);
        std::mem::forget(daemon);
        if summary.is_empty() {
            summary = "formatted; the workload runs until the power-off".into();
        }
        Ok(summary)
    }

    fn power_off(&self) {
        std::thread::sleep(Duration::from_millis(WARM_UP_MS));
        let how = match self.mode {
            Mode::Sysrq => "by the guest (sysrq b)",
            Mode::Host => "by the host (qemu killed)",
        };
        println!("HPKV-VM power-off {how}, boot {}", self.boot);
        match self.mode {
            Mode::Host => loop {
                std::thread::sleep(Duration::from_secs(60));
            },
            Mode::Sysrq => {
                std::thread::sleep(Duration::from_millis(self.after_ms));
                if let Err(e) = std::fs::write("/proc/sysrq-trigger", b"b") {
                    println!(
                        "HPKV-RESULT FAIL torture:power-sysrq writing /proc/sysrq-trigger: {e}"
                    );
                }
                std::thread::sleep(Duration::from_secs(60));
            }
        }
    }
}
