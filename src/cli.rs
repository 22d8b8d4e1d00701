//! hpkvd's command line: what an administrator writes in `/etc/default/hpkvd`.
//!
//! This module depends on clap and std only, so that `pkg/docgen` can include it (`#[path]`)
//! to generate the man page and the shell completions from the same definitions.
#![allow(
    clippy::doc_markdown,
    reason = "the doc comments are the --help text and the man page, read by people, not rustdoc"
)]

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// The image used when no device is named (the module's start script made one too).
pub const DEFAULT_IMAGE: &str = "/var/lib/hpkv/hpkv.img";
/// The account hpkvd runs as once its device and `/dev/cuse` are open.
pub const DEFAULT_USER: &str = "hpkv";
/// Serving threads at most (each holds a receive buffer of about 1 MiB).
pub const THREADS_MAX: u16 = 64;
/// The longest `--poll-us` (a worker's spin for requests before it sleeps), in µs.
pub const POLL_US_MAX: u64 = 10_000;
/// The value cache at most: 1 TiB.
pub const CACHE_MIB_MAX: u64 = 1 << 20;
/// The default image: at least 16 MiB, at most 16 TiB.
pub const IMAGE_MIB_MIN: u64 = 16;
pub const IMAGE_MIB_MAX: u64 = 16 << 20;
/// Write-behind bounds: at most an hour, at most 1,048,576 writes.
pub const WRITE_BEHIND_DELAY_MS_MAX: u64 = 3_600_000;
pub const WRITE_BEHIND_WRITES_MAX: u32 = 1 << 20;
/// A device name: 1 to 64 bytes of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub const NAME_BYTES_MAX: usize = 64;
/// The shared view's directory (`src/view.rs` makes it 0750, group hpkv, owned by --user).
pub const VIEW_DIR_DEFAULT: &str = "/run/hpkv";
/// The shared view's key capacity: the default limit, and the format's (`hpkv_view::KEYS_MAX`).
pub const VIEW_KEYS_MAX_DEFAULT: u64 = 4 << 20;
pub const VIEW_KEYS_LIMIT: u64 = 1 << 30;

pub const EXIT_CODES: &str = "\
Exit status (sysexits.h; the unit does not restart on 64, 69, 77 and 78):
   0  stopped on SIGTERM or SIGINT, everything acknowledged on the device
   1  failed while serving (the CUSE connection ended, ...); a restart may help
  64  the command line is wrong (unknown option, value out of range)
  66  the device does not exist (yet)
  69  this kernel has no CUSE (/dev/cuse)
  71  the system refused a resource (threads, signalfd, seccomp, ...)
  73  the state directory, the default image or the shared view's directory or lock could
      not be made
  74  the device failed while the store was opened or closed
  75  the device or the name is in use; try again later
  77  not allowed to open /dev/cuse or to change to --user
  78  the configuration cannot work: unknown --user, a read-only device, a device holding
      data that is not an hpkv store, a store that cannot be opened here, a damaged store
      (opening it would lose data), an old shared view that cannot be marked dead";

const SERVE_EXAMPLES: &str = "\
The module's parameters are accepted under their own names too (--mount_path,
--initialize_if_empty, --force_initialize, --force_read_disk, --log_level).

Examples:
  hpkvd /dev/disk/by-id/nvme-EXAMPLE-part1
  hpkvd --name hpkv-test --abi v1.3 /var/lib/hpkv/test.img
  hpkvd format /dev/sdb            (once; then serve it)";

#[derive(Parser, Debug)]
#[command(
    name = "hpkvd",
    version,
    about = "Serve /dev/hpkv (the HPKV kernel module's interface) through CUSE, from a store on a dedicated block device",
    long_about = "Serve /dev/hpkv (the HPKV kernel module's interface) through CUSE, from a store on a \
                  dedicated block device or image file.\n\n\
                  Started as root, hpkvd opens /dev/cuse and the device, then runs as --user (default hpkv) \
                  with no capabilities, no_new_privs and a system-call filter. It logs to stderr \
                  (journald priorities under systemd) and tells systemd (Type=notify) once /dev/NAME \
                  exists with the group and mode udev gives it. SIGTERM and SIGINT stop it cleanly; \
                  SIGHUP is ignored.",
    after_help = SERVE_EXAMPLES,
    after_long_help = format!("{SERVE_EXAMPLES}\n\n{EXIT_CODES}"),
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeOptions,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Formats a device as an empty store, once, and exits (erasing a store needs its UUID)
    #[command(after_long_help = EXIT_CODES)]
    Format(FormatOptions),
}

#[derive(Args, Debug)]
pub struct ServeOptions {
    /// The dedicated block device or image file holding the store [default: /var/lib/hpkv/hpkv.img, created as a sparse 1 GiB file if missing, 0600 in a 0700 directory owned by --user]
    #[arg(value_name = "DEVICE", value_parser = parse_device)]
    pub device: Option<PathBuf>,

    /// Same as DEVICE (the module's mount_path)
    #[arg(
        long = "mount-path",
        alias = "mount_path",
        value_name = "DEVICE",
        conflicts_with = "device"
    )]
    pub mount_path: Option<PathBuf>,

    /// Name of the device node: /dev/NAME
    #[arg(long, default_value = "hpkv", value_parser = parse_name)]
    pub name: String,

    /// ABI profile for GET and DELETE: readme (NUL-terminated keys) or v1.3 (length-prefixed)
    #[arg(long, default_value = "readme", value_parser = ["readme", "v1.3"])]
    pub abi: String,

    /// Format the device if its first 40 KiB are zero
    #[arg(long, alias = "initialize_if_empty", default_value_t = true, action = ArgAction::Set, value_name = "BOOL",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub initialize_if_empty: bool,

    /// Format the device if it holds data that is not an hpkv store (destroys that data). An
    /// hpkv store is never erased by this option: use `hpkvd format --erase-store UUID`
    #[arg(long, alias = "force_initialize")]
    pub force_initialize: bool,

    /// Rebuild the index by scanning the whole log instead of loading the shutdown snapshot
    #[arg(long, alias = "force_read_disk")]
    pub force_read_disk: bool,

    #[command(flatten)]
    pub common: CommonOptions,

    /// When a write is acknowledged: once on stable media (sync), or once written with the
    /// device cache flushed within --write-behind-delay-ms / --write-behind-writes
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    pub durability: DurabilityArg,

    /// write-behind: flush at most this long after the oldest unflushed write (at most an hour)
    #[arg(long, default_value_t = 30_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=WRITE_BEHIND_DELAY_MS_MAX))]
    pub write_behind_delay_ms: u64,

    /// write-behind: flush after this many unflushed writes (1 to 1048576)
    #[arg(long, default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(WRITE_BEHIND_WRITES_MAX)))]
    pub write_behind_writes: u32,

    /// Value cache size in MiB (0 turns the cache off; at most 1048576)
    #[arg(long, default_value_t = 64, value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(0..=CACHE_MIB_MAX))]
    pub cache_mib: u64,

    /// Threads serving requests (1 to 64)
    #[arg(long, default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(THREADS_MAX)))]
    pub threads: u16,

    /// Let one worker spin on the CUSE channel for up to this many µs after each request
    /// before it sleeps (0: never; at most 10000): lower device latency for up to one CPU
    /// while requests come
    #[arg(long, default_value_t = 0, value_name = "US",
          value_parser = clap::value_parser!(u64).range(0..=POLL_US_MAX))]
    pub poll_us: u64,

    /// The system-call filter hpkvd puts on itself once started: enforce (a call outside it
    /// kills hpkvd), log (allowed and logged by the kernel's audit, when audit is on: auditd or
    /// audit=1), off
    #[arg(long, value_enum, default_value_t = SeccompMode::Enforce)]
    pub seccomp: SeccompMode,

    /// Publish a shared-memory view of the store (DIR/NAME.view) that clients on this host
    /// read without a system call; with it on, --cache-mib is split half and half between the
    /// view's values and the engine's own cache
    #[arg(long, value_enum, default_value_t = Switch::On, value_name = "on|off")]
    pub shared_view: Switch,

    /// Directory of the shared view (made 0750, group hpkv, owned by --user, if missing)
    #[arg(long, default_value = VIEW_DIR_DEFAULT, value_name = "DIR")]
    pub view_dir: PathBuf,

    /// Most keys the shared view grows to hold (64 bytes of key table per key); beyond it,
    /// lookups of absent keys go to the device
    #[arg(long, default_value_t = VIEW_KEYS_MAX_DEFAULT, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=VIEW_KEYS_LIMIT))]
    pub view_keys_max: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Options of both commands.
#[derive(Args, Debug)]
pub struct CommonOptions {
    /// Log verbosity on the kernel's 0-7 scale: 3 and below errors, 4 warnings and lifecycle
    /// information, 6 more detail, 7 debugging. RUST_LOG overrides it.
    #[arg(long, alias = "log_level", default_value_t = 4, value_parser = clap::value_parser!(u8).range(0..=7))]
    pub log_level: u8,

    /// The account to run as once /dev/cuse and the device are open, when started as root
    /// [default: hpkv, whose group is that of /dev/hpkv]; it owns the default image. "root"
    /// keeps uid 0 but still drops every capability
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Size of the default image when it has to be created, in MiB (16 to 16777216)
    #[arg(long, default_value_t = 1024, value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(IMAGE_MIB_MIN..=IMAGE_MIB_MAX))]
    pub image_mib: u64,
}

#[derive(Args, Debug)]
pub struct FormatOptions {
    /// The device or image file to format [default: /var/lib/hpkv/hpkv.img]
    #[arg(value_name = "DEVICE")]
    pub device: Option<PathBuf>,

    /// Erase the hpkv store with this UUID (hpkvd's log and this command's refusal name it)
    #[arg(long, value_name = "UUID")]
    pub erase_store: Option<String>,

    /// Erase data that is not an hpkv store (a file system, a partition table, ...)
    #[arg(long)]
    pub erase_foreign_data: bool,

    #[command(flatten)]
    pub common: CommonOptions,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DurabilityArg {
    Sync,
    WriteBehind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SeccompMode {
    Enforce,
    Log,
    Off,
}

/// A device path; a bare `format` is the subcommand written after options, which clap would
/// otherwise take for a file of that name.
fn parse_device(path: &str) -> Result<PathBuf, String> {
    if path == "format" {
        return Err(
            "'format' is a command: write it first ('hpkvd format [OPTIONS] [DEVICE]'), \
                    or name a file of that name as ./format"
                .into(),
        );
    }
    Ok(PathBuf::from(path))
}

/// A device name the kernel and udev take as is: `/dev/NAME`, no path separators, no
/// surprises in a shell or a udev match.
pub fn parse_name(name: &str) -> Result<String, String> {
    let ok_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(format!("a name has 1 to {NAME_BYTES_MAX} bytes"));
    }
    if name.starts_with(['.', '-']) || !name.bytes().all(ok_byte) {
        return Err(
            "a name is made of letters, digits, '.', '_' and '-', not starting with '.' or '-'"
                .into(),
        );
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn names_are_checked() {
        for good in ["hpkv", "hpkv-test", "a", "hpkv_2.v13"] {
            assert_eq!(parse_name(good).as_deref(), Ok(good));
        }
        let long = "x".repeat(NAME_BYTES_MAX + 1);
        for bad in ["", "../cuse", "a/b", ".hidden", "-x", "sp ace", "é", &long] {
            assert!(parse_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn format_is_a_subcommand_and_serving_is_the_default() {
        let cli = Cli::try_parse_from(["hpkvd", "/dev/vdb"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.device, Some(PathBuf::from("/dev/vdb")));
        let cli =
            Cli::try_parse_from(["hpkvd", "format", "--erase-store", "u", "/dev/vdb"]).unwrap();
        match cli.command {
            Some(Command::Format(f)) => {
                assert_eq!(f.device, Some(PathBuf::from("/dev/vdb")));
                assert_eq!(f.erase_store.as_deref(), Some("u"));
            }
            None => panic!("format was not parsed as the subcommand"),
        }
        assert!(Cli::try_parse_from(["hpkvd", "--name", "x", "format"]).is_err());
    }
}
