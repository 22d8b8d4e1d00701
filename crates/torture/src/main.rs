//! hpkv-torture: the torture suite through the real `/dev/hpkv`, run inside the VM by
//! `tests/vm/torture/run.sh`.
//!
//! Scenarios (each prints `HPKV-RESULT` lines and a `HPKV-TORTURE figures` line):
//! - `kill9`: kill -9 and SIGTERM of hpkvd at random moments, during start-up too;
//! - `power`: one boot of a power-off run (verify what the last boot left, work, power off);
//! - `flakey`: device errors under hpkvd (dm-flakey): writes, then reads fail, reads corrupted;
//! - `enospc`: a full device.
//!
//! Internal: `worker` (a workload process), `verify` (check a store against a log once).
//! Every choice derives from `--seed`; a failure prints how to replay it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod badinput;
mod daemon;
mod dm;
mod enospc;
mod ffi;
mod flakey;
mod kill9;
mod log;
mod model;
mod oracle;
mod power;
mod reader;
mod report;
mod rng;
mod store;
mod value;
mod verify;
mod worker;
mod workload;

use kill9::Common;

#[derive(Parser)]
#[command(
    name = "hpkv-torture",
    about = "hpkv's torture suite (run inside the VM by tests/vm/torture/run.sh)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Every choice of the run derives from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Writer processes (each owns its keys).
    #[arg(long, default_value_t = 4)]
    writers: u16,
    /// Keys per writer.
    #[arg(long, default_value_t = 32)]
    keys: u32,
    /// The daemon.
    #[arg(long, default_value = "hpkvd")]
    hpkvd: PathBuf,
    /// hpkvd's stderr is appended to this file.
    #[arg(long, default_value = "/tmp/hpkvd.log")]
    daemon_log: PathBuf,
}

impl CommonArgs {
    fn common(&self) -> Common {
        assert!(
            self.writers >= 1 && self.writers <= value::WRITERS_MAX,
            "--writers 1..=16"
        );
        assert!(
            self.keys >= 1 && self.keys <= value::KEYS_MAX,
            "--keys 1..=10000"
        );
        Common {
            seed: self.seed,
            writers: self.writers,
            keys: self.keys,
            hpkvd: self.hpkvd.clone(),
            daemon_log: self.daemon_log.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// kill -9 (and SIGTERM) of hpkvd at random moments, then verify, round after round.
    Kill9 {
        #[command(flatten)]
        common: CommonArgs,
        /// The store's device.
        #[arg(long)]
        store: PathBuf,
        /// The acknowledged-operations log (a file on tmpfs).
        #[arg(long, default_value = "/tmp/torture-kill9.log")]
        log: PathBuf,
        #[arg(long, default_value_t = 20)]
        rounds: u64,
    },
    /// One boot of a power-off run: verify what the last power-off left, then work until
    /// the power goes (sysrq b in the guest, or the host kills qemu).
    Power {
        #[command(flatten)]
        common: CommonArgs,
        /// The store's device (a disk with cache=none).
        #[arg(long)]
        store: PathBuf,
        /// The acknowledged-operations log: a disk of its own.
        #[arg(long)]
        log: PathBuf,
        /// This boot, from 1.
        #[arg(long)]
        boot: u64,
        /// Power-offs in the whole run (the boot after the last only verifies).
        #[arg(long)]
        power_offs: u64,
        /// sysrq: the guest reboots itself; host: the host kills qemu.
        #[arg(long, default_value = "sysrq")]
        mode: String,
        /// Milliseconds of workload before the guest powers off (sysrq).
        #[arg(long, default_value_t = 1000)]
        after_ms: u64,
    },
    /// Device errors: dm-flakey fails writes, then reads, then corrupts reads, under hpkvd.
    Flakey {
        #[command(flatten)]
        common: CommonArgs,
        /// The disk under the device-mapper device.
        #[arg(long)]
        disk: PathBuf,
        #[arg(long, default_value = "/tmp/torture-flakey.log")]
        log: PathBuf,
    },
    /// A full device: fill a small disk to ENOSPC, delete, put again, kill -9 while full.
    Enospc {
        #[command(flatten)]
        common: CommonArgs,
        /// A small disk.
        #[arg(long)]
        disk: PathBuf,
        #[arg(long, default_value = "/tmp/torture-enospc.log")]
        log: PathBuf,
    },
    /// Bad input: fuzzers send random and malformed requests under a signal storm while a
    /// checker verifies known keys.
    BadInput {
        #[command(flatten)]
        common: CommonArgs,
        /// The store's device.
        #[arg(long)]
        store: PathBuf,
        /// How long the fuzzers run at most.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Requests in all (0: as many as fit in --seconds).
        #[arg(long, default_value_t = 0)]
        requests: u64,
        #[arg(long, default_value_t = 4)]
        fuzzers: u32,
    },
    /// One fuzzer process (started by bad-input).
    Fuzz(FuzzArgs),
    /// The checker of bad-input.
    Checker {
        #[command(flatten)]
        args: FuzzArgs,
        /// Check once, write nothing.
        #[arg(long)]
        once: bool,
    },
    /// One workload process (started by the scenarios).
    Worker(WorkerArgs),
    /// Verifies the store behind DEVICE against LOG once (and settles the round).
    Verify {
        #[arg(long)]
        device: PathBuf,
        #[arg(long)]
        log: PathBuf,
        #[arg(long, default_value_t = 32)]
        keys: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Args)]
struct FuzzArgs {
    #[arg(long)]
    device: PathBuf,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    process: u32,
    #[arg(long)]
    incarnation: u32,
    #[arg(long)]
    requests: u64,
    #[arg(long)]
    until_ns: u64,
    #[arg(long)]
    dir: PathBuf,
}

impl FuzzArgs {
    fn spec(self) -> badinput::FuzzSpec {
        badinput::FuzzSpec {
            device: self.device,
            seed: self.seed,
            process: self.process,
            incarnation: self.incarnation,
            requests: self.requests,
            until_ns: self.until_ns,
            dir: self.dir,
        }
    }
}

#[derive(Args)]
struct WorkerArgs {
    #[arg(long)]
    role: String,
    #[arg(long)]
    device: PathBuf,
    #[arg(long)]
    log: PathBuf,
    #[arg(long)]
    writer: u16,
    #[arg(long)]
    keys: u32,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    round: u64,
    #[arg(long)]
    seconds: u64,
    #[arg(long)]
    purges: bool,
    #[arg(long)]
    big_percent: u64,
    #[arg(long)]
    purge_every_ms: u64,
    /// A reader's read path (`reader::read_path`).
    #[arg(long, default_value = "client")]
    read_path: String,
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Fuzz(a) => badinput::run_fuzzer(&a.spec()),
        Cmd::Checker { args, once } => badinput::run_checker(&args.spec(), once),
        Cmd::Worker(a) => run_worker(a),
        cmd => {
            if run_scenario(cmd) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run_worker(a: WorkerArgs) -> ExitCode {
    let spec = worker::WorkerSpec {
        device: a.device,
        log: a.log,
        writer: a.writer,
        keys: a.keys,
        seed: a.seed,
        round: a.round,
        seconds: a.seconds,
        purges: a.purges,
        big_percent: a.big_percent,
        purge_every_ms: a.purge_every_ms,
    };
    match a.role.as_str() {
        "writer" => worker::run_writer(&spec),
        "purger" => worker::run_purger(&spec),
        "reader" => reader::run_reader(&spec, &a.read_path, std::path::Path::new(reader::COUNTS)),
        r => {
            eprintln!("hpkv-torture worker: unknown role {r:?}");
            ExitCode::from(2)
        }
    }
}

/// Runs a scenario; whether it passed.
fn run_scenario(cmd: Cmd) -> bool {
    match cmd {
        Cmd::Kill9 {
            common,
            store,
            log,
            rounds,
        } => kill9::Kill9 {
            common: common.common(),
            store,
            log,
            rounds,
        }
        .run(),
        Cmd::Power {
            common,
            store,
            log,
            boot,
            power_offs,
            mode,
            after_ms,
        } => power::PowerOff {
            common: common.common(),
            store,
            log,
            boot,
            total: power_offs,
            mode: if mode == "host" {
                power::Mode::Host
            } else {
                power::Mode::Sysrq
            },
            after_ms,
        }
        .run(),
        Cmd::Flakey { common, disk, log } => flakey::Flakey {
            common: common.common(),
            disk,
            log,
        }
        .run(),
        Cmd::Enospc { common, disk, log } => enospc::Enospc {
            common: common.common(),
            disk,
            log,
        }
        .run(),
        Cmd::BadInput {
            common,
            store,
            seconds,
            requests,
            fuzzers,
        } => badinput::BadInput {
            common: common.common(),
            store,
            seconds,
            requests,
            fuzzers,
        }
        .run(),
        Cmd::Verify {
            device,
            log,
            keys,
            seed,
        } => match verify::verify_and_settle(&log, &device, keys, seed) {
            Ok(f) => {
                println!("verified: {f:?}");
                true
            }
            Err(e) => {
                println!("verification failed: {e}");
                false
            }
        },
        Cmd::Fuzz(_) | Cmd::Checker { .. } | Cmd::Worker(_) => unreachable!("not a scenario"),
    }
}
