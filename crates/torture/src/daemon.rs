//! hpkvd under test: started, waited for, signalled, reaped.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long hpkvd may take to serve its device after start (recovery scans included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long hpkvd may take to exit after a signal.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start hpkvd.
#[derive(Clone, Debug)]
pub struct DaemonSpec {
    pub hpkvd: PathBuf,
    /// Serves `/dev/<name>`.
    pub name: String,
    pub store: PathBuf,
    pub args: Vec<String>,
    /// hpkvd's stderr is appended here.
    pub log: PathBuf,
}

impl DaemonSpec {
    pub fn node(&self) -> PathBuf {
        Path::new("/dev").join(&self.name)
    }
}

pub struct Daemon {
    child: Child,
    pub spec: DaemonSpec,
    pub started: Instant,
}

impl Daemon {
    /// Starts hpkvd (with `extra` arguments for this start only).
    pub fn start(spec: &DaemonSpec, extra: &[&str]) -> Result<Daemon, String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|e| format!("{}: {e}", spec.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&spec.hpkvd)
            .arg("--name")
            .arg(&spec.name)
            .args(&spec.args)
            .args(extra)
            .arg(&spec.store)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", spec.hpkvd.display()))?;
        Ok(Daemon {
            child,
            spec: spec.clone(),
            started: Instant::now(),
        })
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pids fit i32"))
    }

    /// Waits until the device answers STATS; the time since start.
    pub fn wait_ready(&mut self) -> Result<Duration, String> {
        let node = self.spec.node();
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "hpkvd exited ({status}) before serving {}",
                    node.display()
                ));
            }
            if node.exists() && hpkv_client::Client::open(&node).is_ok() {
                return Ok(self.started.elapsed());
            }
            if self.started.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "hpkvd did not serve {} within {READY_TIMEOUT:?}",
                    node.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, sig: Signal) {
        // The process may have exited already; that is for `wait_exit` to see.
        let _ = kill(self.pid(), sig);
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How it ended, if it did ("exit status: 1", "signal: 11 (SIGSEGV)", ...).
    pub fn ended(&mut self) -> Option<String> {
        self.child.try_wait().ok().flatten().map(|s| s.to_string())
    }

    /// Waits for it to exit; kills it (and says so) if it does not within `EXIT_TIMEOUT`.
    pub fn wait_exit(mut self) -> Result<ExitStatus, String> {
        let until = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status);
            }
            if Instant::now() > until {
                self.signal(Signal::SIGKILL);
                let _ = self.child.wait();
                return Err(format!("hpkvd did not exit within {EXIT_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.alive() {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// The last lines of hpkvd's log, for failure reports.
pub fn log_tail(spec: &DaemonSpec, lines: usize) -> String {
    let text = std::fs::read_to_string(&spec.log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
