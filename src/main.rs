//! hpkvd: serves `/dev/hpkv` (CUSE) from a store on a dedicated block device or image file.
#![deny(unsafe_code)]

use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::EventFd;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;

use hpkv_abi::{ParseProfileError, Profile};
use hpkv_engine::{self as engine, Config, Durability, Engine, ObserverSink};

use cuse::Server;
use device::HpkvDevice;
use view::SharedView;

mod cuse;
mod device;
mod ffi;
mod monitor;
mod progress;
mod view;

/// hpkvd's version: the package's, the commit and the build profile (also in STATS).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("HPKV_GIT_COMMIT"),
    ", ",
    env!("HPKV_BUILD_PROFILE"),
    ")"
);

/// The image used when no device is named (the module's start script made one too).
const DEFAULT_IMAGE: &str = "/var/lib/hpkv/hpkv.img";

#[derive(Parser, Debug)]
#[allow(
    clippy::doc_markdown,
    reason = "clap shows these comments as --help text, where backticks would show"
)]
#[command(
    name = "hpkvd",
    version = VERSION,
    about = "Serve /dev/hpkv (the HPKV kernel module's interface) through CUSE, from a store on a dedicated block device",
    after_help = "The module's parameters are accepted under their own names too (--mount_path, --initialize_if_empty, \
                  --force_initialize, --force_read_disk, --log_level).\n\
                  Examples:\n  hpkvd /dev/sdb\n  hpkvd --name hpkv-test --abi v1.3 /var/lib/hpkv/test.img"
)]
struct Options {
    /// The dedicated block device or image file holding the store [default: /var/lib/hpkv/hpkv.img, created as a sparse 1 GiB file if missing]
    #[arg(value_name = "DEVICE")]
    device: Option<PathBuf>,

    /// Same as DEVICE (the module's mount_path)
    #[arg(
        long = "mount-path",
        alias = "mount_path",
        value_name = "DEVICE",
        conflicts_with = "device"
    )]
    mount_path: Option<PathBuf>,

    /// Name of the device node: /dev/NAME
    #[arg(long, default_value = "hpkv")]
    name: String,

    /// ABI profile for GET and DELETE: readme (NUL-terminated keys) or v1.3 (length-prefixed)
    #[arg(long, default_value = "readme", value_parser = ["readme", "v1.3"])]
    abi: String,

    /// Format the device if its first 40 KiB are zero
    #[arg(long, alias = "initialize_if_empty", default_value_t = true, action = ArgAction::Set, value_name = "BOOL",
          value_parser = clap::builder::BoolishValueParser::new())]
    initialize_if_empty: bool,

    /// Format the device even if it holds data (destroys it)
    #[arg(long, alias = "force_initialize")]
    force_initialize: bool,

    /// Rebuild the index by scanning the whole log instead of loading the shutdown snapshot
    #[arg(long, alias = "force_read_disk")]
    force_read_disk: bool,

    /// Log verbosity on the kernel's 0-7 scale: 3 and below errors, 4 warnings and lifecycle
    /// information, 6 more detail, 7 debugging. `RUST_LOG` overrides it.
    #[arg(long, alias = "log_level", default_value_t = 4, value_parser = clap::value_parser!(u8).range(0..=7))]
    log_level: u8,

    /// When a write is acknowledged: once on stable media (sync), or once written with the
    /// device cache flushed within --write-behind-delay-ms / --write-behind-writes
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    durability: DurabilityArg,

    /// write-behind: flush at most this long after the oldest unflushed write
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    write_behind_delay_ms: u64,

    /// write-behind: flush after this many unflushed writes
    #[arg(long, default_value_t = 1024, value_name = "N")]
    write_behind_writes: u32,

    /// Value cache size in MiB (0 turns the cache off)
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    cache_mib: u64,

    /// Threads serving requests
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=cuse::WORKERS_MAX as i64))]
    threads: u16,

    /// Size of the default image when it has to be created, in MiB
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    image_mib: u64,

    /// Publish a shared-memory view of the store (DIR/NAME.view) that clients on this host
    /// read without a system call; with it on, --cache-mib is split half and half between the
    /// view's values and the engine's own cache
    #[arg(long, value_enum, default_value_t = Switch::On, value_name = "on|off")]
    shared_view: Switch,

    /// Directory of the shared view (created 0750, group hpkv, if missing)
    #[arg(long, default_value = view::VIEW_DIR_DEFAULT, value_name = "DIR")]
    view_dir: PathBuf,

    /// Most keys the shared view grows to hold (64 bytes of key table per key); beyond it,
    /// lookups of absent keys go to the device
    #[arg(long, default_value_t = view::VIEW_KEYS_MAX_DEFAULT, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=hpkv_view::KEYS_MAX))]
    view_keys_max: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DurabilityArg {
    Sync,
    WriteBehind,
}

fn init_logging(level: u8) {
    let filter = match level {
        0..=2 => log::LevelFilter::Error,
        3 => log::LevelFilter::Warn,
        4..=5 => log::LevelFilter::Info,
        6 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(filter)
        .parse_env("RUST_LOG")
        .format_target(false)
        .init();
}

/// Tells systemd (Type=notify) that /dev/hpkv is ready, if it is listening.
fn notify_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(b"READY=1", &a));
    if let Err(e) = sent {
        log::warn!("could not notify systemd: {e}");
    }
}

/// Why hpkvd stopped with an error: `hpkvd: <this>`, one line.
#[derive(Debug)]
enum RunError {
    /// Blocking SIGINT and SIGTERM, or reading them through a signalfd.
    Signals(nix::Error),
    /// The default image, or its directory, could not be made.
    Image { path: PathBuf, source: io::Error },
    /// `--abi` named no profile (clap checks the names first).
    Profile(ParseProfileError),
    /// The store could not be opened.
    Open {
        path: PathBuf,
        source: engine::OpenError,
    },
    /// The device could not be served.
    Serve(cuse::StartError),
    /// Waiting for a signal failed.
    Poll(nix::Error),
    /// Closing the store failed: its last flush.
    Close(engine::Error),
    /// The kernel ended the CUSE connection of `/dev/NAME`.
    ConnectionLost { name: String },
    /// The shared view's directory could not be made.
    ViewDir { path: PathBuf, source: io::Error },
    /// The shared view forbids serving (another hpkvd's name, a view that cannot be retired).
    View(view::ViewError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Signals(e) => write!(f, "blocking SIGINT and SIGTERM: {e}"),
            RunError::Image { path, source } | RunError::ViewDir { path, source } => {
                write!(f, "{}: {source}", path.display())
            }
            RunError::Profile(e) => e.fmt(f),
            RunError::Open { path, source } => write!(f, "{}: {source}", path.display()),
            RunError::Serve(e) => e.fmt(f),
            RunError::Poll(e) => write!(f, "poll: {e}"),
            RunError::Close(e) => write!(f, "closing the store: {e}"),
            RunError::ConnectionLost { name } => {
                write!(f, "the kernel ended the CUSE connection of /dev/{name}")
            }
            RunError::View(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Signals(e) | RunError::Poll(e) => Some(e),
            RunError::Image { source, .. } | RunError::ViewDir { source, .. } => Some(source),
            RunError::View(e) => Some(e),
            RunError::Profile(e) => Some(e),
            RunError::Open { source, .. } => Some(source),
            RunError::Serve(e) => Some(e),
            RunError::Close(e) => Some(e),
            RunError::ConnectionLost { .. } => None,
        }
    }
}

/// The default image, made (sparse, `size_mib` MiB) if it is missing.
fn default_image(size_mib: u64) -> Result<PathBuf, RunError> {
    let path = PathBuf::from(DEFAULT_IMAGE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| RunError::Image {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let created =
        engine::device::create_image_if_missing(&path, size_mib << 20).map_err(|source| {
            RunError::Image {
                path: path.clone(),
                source,
            }
        })?;
    if created {
        log::info!(
            "created the default image {} ({size_mib} MiB, sparse)",
            path.display()
        );
    }
    Ok(path)
}

/// Waits for SIGINT or SIGTERM (`Ok(false)`) or for the end of the CUSE connection
/// (`Ok(true)`, signalled on `stop`).
fn wait_for_stop(signal_fd: &SignalFd, stop: &EventFd) -> Result<bool, RunError> {
    let mut fds = [
        PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
        PollFd::new(stop.as_fd(), PollFlags::POLLIN),
    ];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(RunError::Poll(e)),
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            if let Ok(Some(info)) = signal_fd.read_signal() {
                let name = i32::try_from(info.ssi_signo)
                    .ok()
                    .and_then(|n| Signal::try_from(n).ok())
                    .map_or("a signal", Signal::as_str);
                log::info!("{name}: shutting down");
            }
            return Ok(false);
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            log::error!("the CUSE connection ended: shutting down");
            return Ok(true);
        }
    }
}

/// The shared view `--shared-view` asks for (not built yet), and the lock on the name in the
/// view directory. With the view off, a predecessor's view is marked dead.
fn shared_view(
    opts: &Options,
    profile: Profile,
    cache_bytes: u64,
) -> Result<(Option<Arc<SharedView>>, Option<view::NameLock>), RunError> {
    let path = view::view_path(&opts.view_dir, &opts.name);
    let shared_view = match opts.shared_view {
        Switch::On => {
            let settings = view::Settings {
                path: path.clone(),
                keys_min: view::VIEW_KEYS_MIN,
                keys_max: opts.view_keys_max,
                value_arena_bytes: cache_bytes / 2,
                abi_profile: u32::try_from(profile.number()).expect("profile numbers are small"),
            };
            let v = SharedView::new(settings).map_err(|source| RunError::ViewDir {
                path: opts.view_dir.clone(),
                source,
            })?;
            Some(Arc::new(v))
        }
        Switch::Off => None,
    };
    let lock = view::claim_name(&opts.view_dir, &opts.name).map_err(RunError::View)?;
    if shared_view.is_none() {
        view::retire(&path).map_err(RunError::View)?;
    }
    Ok((shared_view, lock))
}

fn run(opts: Options) -> Result<(), RunError> {
    // Block the termination signals in every thread (threads inherit the mask); main reads
    // them from a signalfd.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().map_err(RunError::Signals)?;
    let signal_fd = SignalFd::new(&signals).map_err(RunError::Signals)?;

    if !cuse::available() {
        return Err(RunError::Serve(cuse::StartError::NoCuse));
    }
    let path = match opts.device.clone().or(opts.mount_path.clone()) {
        Some(path) => path,
        None => default_image(opts.image_mib)?,
    };
    let durability = match opts.durability {
        DurabilityArg::Sync => Durability::Sync,
        DurabilityArg::WriteBehind => Durability::WriteBehind {
            max_delay: Duration::from_millis(opts.write_behind_delay_ms),
            max_writes: opts.write_behind_writes.max(1),
        },
    };
    let profile: Profile = opts.abi.parse().map_err(RunError::Profile)?;
    let cache_bytes = opts.cache_mib << 20;
    // Held until exit: a second hpkvd under this name must not touch this one's view.
    let (shared_view, _name_lock) = shared_view(&opts, profile, cache_bytes)?;
    let config = Config {
        durability,
        // With the view, half the value memory is the view's (see README, "Shared view").
        cache_bytes: cache_bytes - shared_view.as_ref().map_or(0, |_| cache_bytes / 2),
        initialize_if_empty: opts.initialize_if_empty,
        force_initialize: opts.force_initialize,
        force_read_disk: opts.force_read_disk,
        background_compaction: true,
        progress: progress::on_terminal(),
        observer: shared_view
            .as_ref()
            .map(|v| ObserverSink(v.clone() as Arc<dyn engine::Observer>)),
    };
    let engine = Engine::open_path(&path, config).map_err(|source| RunError::Open {
        path: path.clone(),
        source,
    })?;
    let engine = Arc::new(engine);
    if let Some(v) = &shared_view {
        // Before the node exists: the predecessor's view is dead before anyone can write.
        if let Err(e) = v.build(&engine) {
            engine.close().map_err(RunError::Close)?;
            return Err(RunError::View(e));
        }
    }
    let info = monitor::identity(&engine, &opts.name, &path, profile, durability);
    let device =
        Arc::new(HpkvDevice::new(engine.clone(), profile, shared_view.clone()).with_info(info));
    let mut server =
        Server::start(&opts.name, device, usize::from(opts.threads)).map_err(RunError::Serve)?;
    if let Err(e) = server.wait_registered(Duration::from_secs(10)) {
        server.stop_workers();
        engine.close().map_err(RunError::Close)?;
        if let Some(v) = &shared_view {
            v.shutdown();
        }
        return Err(RunError::Serve(e));
    }
    if let Some(v) = &shared_view {
        v.publish_for(&opts.name);
    }
    log::info!(
        "serving /dev/{} ({} profile, {:?} durability) from {}",
        opts.name,
        profile,
        opts.durability,
        path.display()
    );
    notify_ready();

    let lost_connection = wait_for_stop(&signal_fd, &server.stop_event())?;
    // Stop taking requests, finish and answer every write in flight, flush, then remove
    // the device node.
    server.stop_workers();
    let closed = engine.close();
    // After the last acknowledgement: readers go to the device (and find it gone).
    if let Some(v) = &shared_view {
        v.shutdown();
    }
    server.unregister();
    closed.map_err(RunError::Close)?;
    log::info!("stopped; everything acknowledged is on {}", path.display());
    if lost_connection {
        return Err(RunError::ConnectionLost { name: opts.name });
    }
    Ok(())
}

fn main() -> ExitCode {
    let opts = Options::parse();
    init_logging(opts.log_level);
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hpkvd: {e}");
            ExitCode::FAILURE
        }
    }
}
