//! hpkvd: serves `/dev/hpkv` (CUSE) from a store on a dedicated block device or image file.
#![deny(unsafe_code)]
// Lint debt (issue 12), paid down crate by crate: a lint leaves this list once it is clean.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_lossless,
    clippy::doc_markdown,
    clippy::used_underscore_binding,
    clippy::missing_errors_doc,
    clippy::semicolon_if_nothing_returned,
    clippy::cast_possible_wrap,
    clippy::return_self_not_must_use,
    clippy::borrow_as_ptr,
    clippy::redundant_closure_for_method_calls,
    clippy::ignored_unit_patterns,
    clippy::too_many_lines,
    clippy::needless_continue,
    clippy::single_match_else,
    clippy::ptr_as_ptr,
    clippy::cast_sign_loss,
    clippy::struct_excessive_bools,
    clippy::similar_names,
    clippy::ptr_cast_constness,
    clippy::match_wild_err_arm,
    clippy::match_same_arms,
    clippy::default_trait_access,
    clippy::cast_precision_loss,
    clippy::items_after_statements,
    clippy::zero_sized_map_values,
    clippy::unreadable_literal,
    clippy::unnecessary_debug_formatting,
    clippy::needless_pass_by_value,
    clippy::ignore_without_reason,
    clippy::format_push_string,
    clippy::match_bool,
    clippy::format_collect,
    clippy::many_single_char_names,
    clippy::float_cmp,
    clippy::unused_self,
    clippy::struct_field_names,
    clippy::map_unwrap_or
)]

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;

use hpkv_abi::Profile;
use hpkv_engine::{self as engine, Config, Durability, Engine};

use cuse::Server;
use device::HpkvDevice;

mod cuse;
mod device;
mod ffi;
mod progress;

/// The image used when no device is named (the module's start script made one too).
const DEFAULT_IMAGE: &str = "/var/lib/hpkv/hpkv.img";

#[derive(Parser, Debug)]
#[command(
    name = "hpkvd",
    version,
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
    /// information, 6 more detail, 7 debugging. RUST_LOG overrides it.
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

fn run(opts: Options) -> Result<(), String> {
    // Block the termination signals in every thread (threads inherit the mask); main reads
    // them from a signalfd.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    let signal_fd = SignalFd::new(&signals).map_err(|e| format!("signalfd: {e}"))?;

    if !cuse::available() {
        return Err(cuse::StartError::NoCuse.to_string());
    }
    let path = match opts.device.or(opts.mount_path) {
        Some(p) => p,
        None => {
            let p = PathBuf::from(DEFAULT_IMAGE);
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            if engine::device::create_image_if_missing(&p, opts.image_mib << 20)
                .map_err(|e| format!("{}: {e}", p.display()))?
            {
                log::info!(
                    "created the default image {} ({} MiB, sparse)",
                    p.display(),
                    opts.image_mib
                );
            }
            p
        }
    };
    let durability = match opts.durability {
        DurabilityArg::Sync => Durability::Sync,
        DurabilityArg::WriteBehind => Durability::WriteBehind {
            max_delay: Duration::from_millis(opts.write_behind_delay_ms),
            max_writes: opts.write_behind_writes.max(1),
        },
    };
    let config = Config {
        durability,
        cache_bytes: opts.cache_mib << 20,
        initialize_if_empty: opts.initialize_if_empty,
        force_initialize: opts.force_initialize,
        force_read_disk: opts.force_read_disk,
        background_compaction: true,
        progress: progress::on_terminal(),
    };
    let profile: Profile = opts.abi.parse()?;
    let engine =
        Arc::new(Engine::open_path(&path, config).map_err(|e| format!("{}: {e}", path.display()))?);
    let device = Arc::new(HpkvDevice::new(engine.clone(), profile));
    let mut server =
        Server::start(&opts.name, device, opts.threads as usize).map_err(|e| e.to_string())?;
    if let Err(e) = server.wait_registered(Duration::from_secs(10)) {
        server.stop_workers();
        engine.close().map_err(|e| e.to_string())?;
        return Err(e.to_string());
    }
    log::info!(
        "serving /dev/{} ({} profile, {:?} durability) from {}",
        opts.name,
        profile,
        opts.durability,
        path.display()
    );
    notify_ready();

    let stop = server.stop_event();
    let mut lost_connection = false;
    let mut fds = [
        PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
        PollFd::new(stop.as_fd(), PollFlags::POLLIN),
    ];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        if let Some(r) = fds[0].revents().filter(|r| !r.is_empty()) {
            let _ = r;
            if let Ok(Some(info)) = signal_fd.read_signal() {
                let name =
                    Signal::try_from(info.ssi_signo as i32).map_or("a signal", |s| s.as_str());
                log::info!("{name}: shutting down");
            }
            break;
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            log::error!("the CUSE connection ended: shutting down");
            lost_connection = true;
            break;
        }
    }
    // Stop taking requests, finish and answer every write in flight, flush, then remove
    // the device node.
    server.stop_workers();
    let closed = engine.close();
    server.unregister();
    closed.map_err(|e| format!("closing the store: {e}"))?;
    log::info!("stopped; everything acknowledged is on {}", path.display());
    if lost_connection {
        return Err(format!(
            "the kernel ended the CUSE connection of /dev/{}",
            opts.name
        ));
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
