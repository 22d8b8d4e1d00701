//! hpkvd: serves `/dev/hpkv` (CUSE) from a store on a dedicated block device or image file.
//!
//! Start-up, in this order, so that every refusal comes before anything is written to the
//! device and before any thread exists: the command line (`cli.rs`); the termination signals,
//! blocked and read from a signalfd; systemd's notification socket (`notify.rs`); the account to
//! run as (`privilege.rs`); `/dev/cuse` and the name (`cuse.rs`); the device, claimed and
//! checked writable (`store.rs`); the privilege drop and the system-call filter
//! (`seccomp.rs`); then the store is opened (formatted only if blank, or foreign with
//! `--force-initialize`), the workers start, the kernel creates the node, udev sets it up,
//! and READY=1. Exit statuses: `exit.rs`.
#![deny(unsafe_code)]

use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{CommandFactory, FromArgMatches};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;

use hpkv_abi::Profile;
use hpkv_engine::{self as engine, Config, Durability, Observer, ObserverSink};

use cli::{Cli, Command, DurabilityArg, ServeOptions, Switch};
use cuse::Server;
use device::HpkvDevice;
use exit::Failure;
use notify::Notifier;
use privilege::RunAs;
use view::SharedView;

mod cli;
mod cuse;
mod device;
mod exit;
mod ffi;
mod logging;
mod monitor;
mod notify;
mod privilege;
mod progress;
mod seccomp;
mod store;
mod view;

const _: () = assert!(cli::THREADS_MAX as usize == cuse::WORKERS_MAX);
const _: () = assert!(cli::POLL_US_MAX == cuse::POLL_US_MAX);
const _: () = assert!(cli::VIEW_KEYS_LIMIT == hpkv_view::KEYS_MAX);
const _: () = assert!(cli::VIEW_KEYS_MAX_DEFAULT == view::VIEW_KEYS_MAX_DEFAULT);

/// hpkvd's version: the package's, the commit and the build profile (also in STATS).
pub const VERSION: &str = env!("HPKV_VERSION");

/// How long the kernel may take to create the device once `CUSE_INIT` is answered.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

impl From<cuse::StartError> for Failure {
    fn from(e: cuse::StartError) -> Failure {
        match e {
            cuse::StartError::NoCuse => Failure::NoCuse,
            cuse::StartError::Access(e) => Failure::CuseAccess(e.into()),
            // The kernel refuses a second device of a name, like the sysfs check before it.
            cuse::StartError::NameInUse { name } | cuse::StartError::Refused { name } => {
                Failure::NameInUse(name)
            }
            other => Failure::Cuse(other),
        }
    }
}

/// SIGINT and SIGTERM (stop) and SIGHUP (ignored, said so), blocked in every thread (threads
/// inherit the mask) and read from a signalfd by the main thread.
fn block_signals() -> Result<SignalFd, Failure> {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(Failure::system("blocking signals"))?;
    SignalFd::new(&signals).map_err(Failure::system("signalfd"))
}

/// The engine's settings; with the shared view, half the value memory is the view's (README,
/// "Shared view") and the view observes every write.
fn engine_config(opts: &ServeOptions, view: Option<&Arc<SharedView>>) -> Config {
    let durability = match opts.durability {
        DurabilityArg::Sync => Durability::Sync,
        DurabilityArg::WriteBehind => Durability::WriteBehind {
            max_delay: Duration::from_millis(opts.write_behind_delay_ms),
            max_writes: opts.write_behind_writes,
        },
    };
    let cache_bytes = cache_bytes(opts);
    Config {
        durability,
        cache_bytes: cache_bytes - view.map_or(0, |_| cache_bytes / 2),
        initialize_if_empty: opts.initialize_if_empty,
        // store::open_store decides, after looking at what the device holds.
        force_initialize: false,
        force_read_disk: opts.force_read_disk,
        background_compaction: true,
        progress: progress::on_terminal(),
        observer: view.map(|v| ObserverSink(v.clone() as Arc<dyn Observer>)),
        sync_safety_net: hpkv_engine::SYNC_SAFETY_NET,
    }
}

fn cache_bytes(opts: &ServeOptions) -> u64 {
    opts.cache_mib
        .checked_mul(1 << 20)
        .expect("--cache-mib is bounded by CACHE_MIB_MAX")
}

/// The shared view `--shared-view` asks for (not built yet), and the lock on the name in the
/// view directory; with the view off, a predecessor's view is marked dead. Runs before the
/// drop: it looks up group hpkv and makes the directory, then hands it to `run_as`, who builds
/// and updates the view.
fn shared_view(
    opts: &ServeOptions,
    profile: Profile,
    run_as: Option<&RunAs>,
) -> Result<(Option<Arc<SharedView>>, Option<view::NameLock>), Failure> {
    let path = view::view_path(&opts.view_dir, &opts.name);
    let view_dir = |source| Failure::ViewDir {
        path: opts.view_dir.clone(),
        source,
    };
    let shared_view = match opts.shared_view {
        Switch::On => {
            let settings = view::Settings {
                path: path.clone(),
                keys_min: view::VIEW_KEYS_MIN,
                keys_max: opts.view_keys_max,
                value_arena_bytes: cache_bytes(opts) / 2,
                abi_profile: u32::try_from(profile.number()).expect("profile numbers are small"),
            };
            Some(Arc::new(SharedView::new(settings).map_err(view_dir)?))
        }
        Switch::Off => None,
    };
    let lock = view::claim_name(&opts.view_dir, &opts.name).map_err(Failure::View)?;
    if shared_view.is_none() {
        view::retire(&path).map_err(Failure::View)?;
    }
    if let Some(owner) = run_as.filter(|r| !r.uid.is_root()) {
        privilege::hand_over_dir(&opts.view_dir, view::VIEW_DIR_MODE, owner).map_err(view_dir)?;
    }
    Ok((shared_view, lock))
}

/// Becomes `run_as` with no capabilities and the system-call filter; says so.
fn confine(opts: &ServeOptions, run_as: Option<&RunAs>) -> Result<(), Failure> {
    let dropped = privilege::drop_privileges(run_as)?;
    let filtered = seccomp::install(opts.seccomp)?;
    log::info!(
        "running as uid {} gid {}, no capabilities{}, no_new_privs, {}",
        nix::unistd::getuid(),
        nix::unistd::getgid(),
        if dropped.bounding_kept == 0 {
            " (bounding set empty)"
        } else {
            ""
        },
        if filtered {
            format!("system-call filter ({:?})", opts.seccomp).to_lowercase()
        } else {
            "no system-call filter".to_string()
        }
    );
    Ok(())
}

fn serve(opts: &ServeOptions) -> Result<(), Failure> {
    log::info!(
        "hpkvd {VERSION} starting: /dev/{} from {}",
        opts.name,
        opts.device
            .as_ref()
            .or(opts.mount_path.as_ref())
            .map_or(cli::DEFAULT_IMAGE.into(), |p| p.display().to_string())
    );
    let signals = block_signals()?;
    let notifier = Notifier::from_env();
    let run_as = privilege::resolve(opts.common.user.as_deref())?;
    let profile: Profile = opts.abi.parse().expect("clap accepts only known profiles");
    let server = Server::open(&opts.name)?;
    let named = opts.device.clone().or(opts.mount_path.clone());
    let path = store::device_path(named, &opts.common, run_as.as_ref())?;
    let dev = store::open_device(&path)?;
    // Held until exit: a second hpkvd under this name must not touch this one's view.
    let (view, _name_lock) = shared_view(opts, profile, run_as.as_ref())?;
    confine(opts, run_as.as_ref())?;

    notifier.status(&format!("opening the store on {}", path.display()));
    let config = engine_config(opts, view.as_ref());
    let durability = config.durability;
    let engine = store::open_store(&path, dev, config, opts.force_initialize)?;
    let mut running = Running {
        server,
        engine: Arc::new(engine),
        view,
    };
    let started = running.start(opts, profile, &path, durability, run_as.as_ref(), &notifier);
    let node = match started {
        Ok(node) => node,
        Err(e) => {
            running.stop()?;
            return Err(e);
        }
    };
    let serving = serving_line(opts, profile, &path, &node, run_as.as_ref());
    log::info!("{serving}");
    notifier.ready(&serving);

    let outcome = wait_for_stop(&signals, &running.server, &opts.name);
    notifier.stopping("stopping: finishing writes in flight, writing the index snapshot");
    running.stop()?;
    log::info!("stopped; everything acknowledged is on {}", path.display());
    outcome
}

/// The store, its view and the CUSE device once the store is open: stopped in order on every
/// way out.
struct Running {
    server: Server,
    engine: Arc<engine::Engine>,
    view: Option<Arc<SharedView>>,
}

impl Running {
    /// Builds the view, starts the workers, waits for the kernel and udev to set up the node
    /// and publishes the view; returns the node as udev left it.
    fn start(
        &mut self,
        opts: &ServeOptions,
        profile: Profile,
        path: &Path,
        durability: Durability,
        run_as: Option<&RunAs>,
        notifier: &Notifier,
    ) -> Result<notify::Node, Failure> {
        if let Some(v) = &self.view {
            // Before the node exists: the predecessor's view is dead before anyone can write.
            v.build(&self.engine).map_err(Failure::View)?;
        }
        let info = monitor::identity(&self.engine, &opts.name, path, profile, durability);
        let device = HpkvDevice::new(self.engine.clone(), profile, self.view.clone());
        let registered_at = SystemTime::now();
        self.server.start(
            Arc::new(device.with_info(info)),
            usize::from(opts.threads),
            opts.poll_us,
        )?;
        self.server.wait_registered(REGISTER_TIMEOUT)?;
        notifier.status(&format!("waiting for udev to set up /dev/{}", opts.name));
        let expected = run_as
            .filter(|r| !r.uid.is_root())
            .map(|r| notify::Expected {
                gid: r.gid.as_raw(),
                mode: 0o660,
            });
        let node = notify::wait_node_settled(
            &opts.name,
            registered_at,
            expected,
            notify::NODE_SETTLE_TIMEOUT,
        )
        .map_err(|source| Failure::System {
            what: "waiting for the device node",
            source,
        })?;
        if let Some(v) = &self.view {
            v.publish_for(&opts.name);
        }
        Ok(node)
    }

    /// Stops taking requests, finishes and answers every write in flight, flushes, writes the
    /// index snapshot, marks the view dead (readers go to the device), then removes the node.
    fn stop(mut self) -> Result<(), Failure> {
        self.server.stop_workers();
        let closed = self.engine.close();
        if let Some(v) = &self.view {
            v.shutdown();
        }
        self.server.unregister();
        closed.map_err(Failure::Close)
    }
}

/// The lifecycle line (and systemd's STATUS=) once serving. Names come from what was looked
/// up before the drop (no account database lookups under the system-call filter).
fn serving_line(
    opts: &ServeOptions,
    profile: Profile,
    path: &Path,
    node: &notify::Node,
    run_as: Option<&RunAs>,
) -> String {
    let user = match node.uid {
        0 => "root".to_string(),
        uid => uid.to_string(),
    };
    let group = match run_as {
        Some(r) if r.gid.as_raw() == node.gid => r.group.clone(),
        _ if node.gid == 0 => "root".to_string(),
        _ => node.gid.to_string(),
    };
    if !node.settled {
        log::warn!(
            "{}: udev did not finish with it within {:?}; its group and mode may not be the rule's",
            node.path.display(),
            notify::NODE_SETTLE_TIMEOUT
        );
    } else if node.gid == 0 && run_as.is_some_and(|r| r.gid.as_raw() != 0) {
        // udev resolves a rule's GROUP= when it loads its rules: a group made afterwards
        // stays unknown to it until the rules are loaded again.
        log::warn!(
            "{}: udev left it in group root, so only root can use it: is udev/60-hpkv.rules \
             installed, and were udev's rules reloaded after group {} was made \
             ('udevadm control --reload-rules')?",
            node.path.display(),
            run_as.map_or("hpkv", |r| r.group.as_str())
        );
    }
    format!(
        "serving {} ({}:{} {:04o}; {profile} profile, {:?} durability) from {}",
        node.path.display(),
        user,
        group,
        node.mode,
        opts.durability,
        path.display()
    )
}

/// Serves until SIGTERM or SIGINT (Ok) or until the kernel ends the connection (Err).
fn wait_for_stop(signals: &SignalFd, server: &Server, name: &str) -> Result<(), Failure> {
    let stop = server.stop_event();
    loop {
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Failure::system("poll")(e)),
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            let signo = match signals.read_signal() {
                Ok(Some(info)) => i32::try_from(info.ssi_signo).ok(),
                _ => None,
            };
            match signo.and_then(|n| Signal::try_from(n).ok()) {
                Some(Signal::SIGHUP) => {
                    log::info!("SIGHUP: nothing to reload (restart hpkvd to change its options); serving on");
                }
                Some(s) => {
                    log::info!("{}: shutting down", s.as_str());
                    return Ok(());
                }
                None => {}
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            log::error!("the CUSE connection ended: shutting down");
            return Err(Failure::ConnectionLost(name.to_string()));
        }
    }
}

/// The exit status of a run, after its last words.
fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::fatal(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

fn main() -> ExitCode {
    // The version with its commit: cli.rs stays free of build-time variables (pkg/docgen
    // includes it).
    let parsed = Cli::command()
        .version(VERSION)
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::EX_USAGE } else { 0 });
        }
    };
    match cli.command {
        Some(Command::Format(opts)) => {
            logging::init(opts.common.log_level);
            finish(store::format_command(&opts))
        }
        None => {
            logging::init(cli.serve.common.log_level);
            finish(serve(&cli.serve))
        }
    }
}
