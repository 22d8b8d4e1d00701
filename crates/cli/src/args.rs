//! The command line: what clap parses. Its doc comments are the `--help` text.
#![allow(
    clippy::doc_markdown,
    reason = "clap shows these comments as --help text, where backticks would show"
)]

use std::ffi::OsString;
use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::format::Format;

/// The exit codes, for `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  key not found (get, delete, exists)
  2  usage error (bad arguments or escapes; purge not confirmed)
  3  the device could not be opened or used (ENOENT or EACCES on open, EIO, ...),
     or a local file could not be read or written
  4  the store refused the input (EINVAL, EMSGSIZE, ENOSPC), or a dump file is not valid";

#[derive(Parser)]
#[command(
    name = "hpkvctl",
    version = VERSION,
    about = "Reads and writes the hpkv store behind /dev/hpkv",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// The device hpkvd serves [default: $HPKV_DEVICE, else /dev/hpkv]
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "name")]
    pub device: Option<PathBuf>,
    /// The store hpkvd serves under NAME (hpkvd --name NAME): /dev/NAME
    #[arg(long, global = true, value_name = "NAME")]
    pub name: Option<String>,
    /// Read keys, values and bounds given on the command line with the escapes the escaped
    /// output uses (\xHH \n \r \t \a \b \0 \\ \"), quotes around them optional
    #[arg(short = 'e', long = "unescape", global = true)]
    pub unescape: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

/// The output formats of `get` and `scan` (the module `format` describes them).
#[derive(Args, Clone, Copy)]
#[group(multiple = false)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "clap flags, of which the group lets one at most be set"
)]
pub struct OutputArgs {
    /// Print bytes as they are [default when standard output is not a terminal]
    #[arg(long)]
    pub raw: bool,
    /// Print keys and values quoted, with escapes for every byte but printable ASCII
    /// [default on a terminal]
    #[arg(long)]
    pub escaped: bool,
    /// Print JSON, a line per record; each byte is one character U+0000 to U+00FF
    #[arg(long)]
    pub json: bool,
    /// End each key and value with a NUL (a NUL in them is written \0, a backslash \\)
    #[arg(short = '0', long = "null")]
    pub nul: bool,
}

impl OutputArgs {
    /// The format asked for, or the default for where standard output goes.
    pub fn format(self) -> Format {
        if self.raw {
            Format::Raw
        } else if self.escaped {
            Format::Escaped
        } else if self.json {
            Format::Json
        } else if self.nul {
            Format::Nul
        } else if io::stdout().is_terminal() {
            Format::Escaped
        } else {
            Format::Raw
        }
    }
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Prints the value of KEY (exit 1 if there is none): escaped on a terminal, raw otherwise
    #[command(after_help = EXIT_CODES)]
    Get {
        /// The key (its bytes as given; see -e)
        key: OsString,
        #[command(flatten)]
        output: OutputArgs,
        /// Print the value as lowercase hex and a newline
        #[arg(long, conflicts_with_all = ["raw", "escaped", "json", "nul"])]
        hex: bool,
    },
    /// Stores VALUE under KEY, replacing any value it had
    #[command(after_help = EXIT_CODES)]
    Put {
        /// The key (its bytes as given; see -e)
        key: OsString,
        /// The value (its bytes as given; see -e)
        #[arg(required_unless_present = "value_file", conflicts_with = "value_file")]
        value: Option<OsString>,
        /// Read the value from PATH instead ("-": standard input), binary safe
        #[arg(long, value_name = "PATH")]
        value_file: Option<PathBuf>,
    },
    /// Appends SUFFIX to the value of KEY (a missing key is created)
    #[command(after_help = EXIT_CODES)]
    Append {
        /// The key (its bytes as given; see -e)
        key: OsString,
        /// The bytes to append (see -e)
        #[arg(required_unless_present = "value_file", conflicts_with = "value_file")]
        suffix: Option<OsString>,
        /// Read the suffix from PATH instead ("-": standard input), binary safe
        #[arg(long, value_name = "PATH")]
        value_file: Option<PathBuf>,
    },
    /// Deletes KEY (exit 1 if there is none)
    #[command(after_help = EXIT_CODES)]
    Delete {
        /// The key (its bytes as given; see -e)
        key: OsString,
    },
    /// Prints true and exits 0 if KEY has a value, prints false and exits 1 otherwise
    #[command(after_help = EXIT_CODES)]
    Exists {
        /// The key (its bytes as given; see -e)
        key: OsString,
    },
    /// Prints the number of records (with bounds: those in the range, counted by a scan)
    #[command(after_help = EXIT_CODES)]
    Count {
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Prints records in key order: "key" "value" lines on a terminal, key:value lines otherwise
    #[command(after_help = EXIT_CODES)]
    Scan {
        #[command(flatten)]
        range: RangeArgs,
        /// Print at most N records
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Print only the keys
        #[arg(long)]
        keys_only: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Prints the module's three /proc/hpkv_stats lines; with options, who serves the store
    /// and every number, as text, JSON or Prometheus metrics, or rates per second
    #[command(after_help = EXIT_CODES)]
    Stats {
        #[command(flatten)]
        view: StatsView,
        /// With --watch: stop after N lines
        #[arg(long, value_name = "N", requires = "watch")]
        count: Option<u64>,
    },
    /// Returns once every acknowledged write is on stable media
    #[command(after_help = EXIT_CODES)]
    Sync,
    /// Removes every record (asks first; --yes when not on a terminal)
    #[command(after_help = EXIT_CODES)]
    Purge {
        /// Do not ask
        #[arg(long, short)]
        yes: bool,
    },
    /// Writes every record to FILE ("-": standard output) in hpkvctl's dump format
    #[command(after_help = DUMP_HELP)]
    Dump {
        /// The dump file ("-": standard output)
        file: PathBuf,
    },
    /// Stores every record of a dump FILE ("-": standard input), checking a file whole first
    #[command(after_help = DUMP_HELP)]
    Load {
        /// The dump file ("-": standard input)
        file: PathBuf,
    },
}

/// What `stats` shows.
#[derive(Args)]
#[group(multiple = false)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "clap flags, of which the group lets one at most be set"
)]
pub struct StatsView {
    /// Print who serves the store (version, node, device, UUID, profile, durability,
    /// uptime) and every number, a line each
    #[arg(long)]
    pub all: bool,
    /// Print the identity and every number as a JSON object
    #[arg(long)]
    pub json: bool,
    /// Print the Prometheus text format (hpkv_NAME gauges, hpkv_NAME_total counters, hpkv_info)
    #[arg(long)]
    pub prometheus: bool,
    /// Print rates per second (operations, gets, writes, cache hits, flushes) every SECONDS
    #[arg(long, value_name = "SECONDS", value_parser = watch_interval)]
    pub watch: Option<Duration>,
}

/// A `--watch` interval: 0.1 to 86400 seconds.
fn watch_interval(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.1..=86_400.0).contains(&secs) {
        return Err("the interval is 0.1 to 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The bounds of `scan` and `count`.
#[derive(Args)]
pub struct RangeArgs {
    /// Start at this key (included)
    #[arg(long, value_name = "KEY")]
    pub from: Option<OsString>,
    /// Stop before this key (excluded)
    #[arg(long, value_name = "KEY")]
    pub to: Option<OsString>,
    /// Only the keys that begin with PREFIX
    #[arg(long, value_name = "PREFIX", conflicts_with_all = ["from", "to"])]
    pub prefix: Option<OsString>,
}

impl RangeArgs {
    /// Whether no bound was given.
    pub fn is_unbounded(&self) -> bool {
        self.from.is_none() && self.to.is_none() && self.prefix.is_none()
    }
}

/// The dump format and the exit codes, for `dump --help` and `load --help`.
pub const DUMP_HELP: &str = concat!(
    "The dump format (hpkvctl's own, binary safe; integers little-endian):\n",
    "  header  \"HPKVDUMP\", u32 version = 1, u32 0\n",
    "  record  u16 key_len (1-512), u32 value_len (1-102400), key, value   (repeated)\n",
    "  end     u16 0, u64 number of records\n",
    "A file without its end is truncated and refused. load checks a whole file before it\n",
    "stores anything; standard input is stored as it comes.\n\n",
    "Exit codes:\n",
    "  0  success\n",
    "  2  usage error\n",
    "  3  the device, or the file, could not be opened, read or written\n",
    "  4  the store refused a record, or the file is not a valid dump"
);

/// hpkvctl's version: the package's, the commit and the build profile.
pub const VERSION: &str = env!("HPKV_VERSION");
