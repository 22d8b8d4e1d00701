//! A round of workload processes: the writers and the purger, started together and reaped.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::log::LogDev;
use crate::worker::{WorkerSpec, EXIT_DONE, EXIT_IN_DOUBT, EXIT_LOG, EXIT_WRONG};

/// How long writers may take to start writing (process start-up is slow under emulation).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The next slot of each writer's region: where a round's records begin.
pub fn log_slots(log: &LogDev) -> Result<Vec<u64>, String> {
    (0..log.header.writers)
        .map(|w| {
            log.read_region(w)
                .map(|(_, slot)| slot)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Waits until every writer has logged an operation after `slots` (`log_slots` before the
/// round started): faults then strike a working store, not one whose clients are starting.
pub fn wait_for_writers(log: &LogDev, slots: &[u64]) -> Result<(), String> {
    let until = Instant::now() + START_TIMEOUT;
    let mut waiting: Vec<u16> = (0..log.header.writers).collect();
    while !waiting.is_empty() {
        if Instant::now() > until {
            return Err(format!(
                "writers {waiting:?} logged nothing within {START_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
        let mut still = Vec::new();
        for w in waiting {
            let (new, _) = log
                .read_region_from(w, slots[usize::from(w)])
                .map_err(|e| e.to_string())?;
            if new.is_empty() {
                still.push(w);
            }
        }
        waiting = still;
    }
    Ok(())
}

/// How long workers may take to stop once their daemon is gone or their time is up.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The running workload processes of one round.
pub struct Round {
    children: Vec<(String, Child)>,
}

/// How the workers of a round ended.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ended {
    /// Finished their time.
    pub done: u32,
    /// Stopped at an outcome in doubt (the fault).
    pub in_doubt: u32,
}

fn worker_command(spec: &WorkerSpec, role: &str) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hpkv-torture"));
    let mut c = Command::new(exe);
    c.arg("worker")
        .arg("--role")
        .arg(role)
        .arg("--device")
        .arg(&spec.device)
        .arg("--log")
        .arg(&spec.log)
        .args(["--writer", &spec.writer.to_string()])
        .args(["--keys", &spec.keys.to_string()])
        .args(["--seed", &spec.seed.to_string()])
        .args(["--round", &spec.round.to_string()])
        .args(["--seconds", &spec.seconds.to_string()])
        .args(["--big-percent", &spec.big_percent.to_string()])
        .args(["--purge-every-ms", &spec.purge_every_ms.to_string()]);
    if spec.purges {
        c.arg("--purges");
    }
    c
}

impl Round {
    /// Starts `writers` writers, the purger if `spec.purges`, and a reader for each read path
    /// named in `readers` (`reader::read_path`).
    pub fn start(spec: &WorkerSpec, writers: u16, readers: &[&str]) -> Result<Round, String> {
        let mut children = Vec::new();
        for w in 0..writers {
            let mut s = spec.clone();
            s.writer = w;
            let child = worker_command(&s, "writer")
                .spawn()
                .map_err(|e| format!("starting writer {w}: {e}"))?;
            children.push((format!("writer {w}"), child));
        }
        if spec.purges {
            let child = worker_command(spec, "purger")
                .spawn()
                .map_err(|e| format!("starting the purger: {e}"))?;
            children.push(("purger".into(), child));
        }
        for (i, path) in readers.iter().enumerate() {
            let mut s = spec.clone();
            s.writer = u16::try_from(i).expect("few readers");
            let child = worker_command(&s, "reader")
                .args(["--read-path", path])
                .spawn()
                .map_err(|e| format!("starting a reader: {e}"))?;
            children.push((format!("reader {i} ({path})"), child));
        }
        Ok(Round { children })
    }

    /// Waits for every worker; an error names the worker that saw something wrong, broke
    /// its log, or hung.
    pub fn wait(mut self) -> Result<Ended, String> {
        let until = Instant::now() + STOP_TIMEOUT;
        let mut ended = Ended::default();
        let mut problems = Vec::new();
        for (name, child) in &mut self.children {
            let status = loop {
                match child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => {
                        let _ = kill(
                            Pid::from_raw(i32::try_from(child.id()).expect("pid")),
                            Signal::SIGKILL,
                        );
                        let _ = child.wait();
                        break None;
                    }
                }
            };
            match status
                .as_ref()
                .and_then(ExitStatus::code)
                .and_then(|c| u8::try_from(c).ok())
            {
                Some(EXIT_DONE) => ended.done += 1,
                Some(EXIT_IN_DOUBT) => ended.in_doubt += 1,
                Some(EXIT_WRONG) => problems.push(format!("{name} saw a wrong answer (above)")),
                Some(EXIT_LOG) => problems.push(format!("{name}: the log failed (above)")),
                _ => problems.push(match status {
                    None => {
                        format!("{name} did not stop within {STOP_TIMEOUT:?} (blocked in a call?)")
                    }
                    Some(s) => format!("{name} ended with {s}"),
                }),
            }
        }
        self.children.clear();
        if problems.is_empty() {
            Ok(ended)
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
