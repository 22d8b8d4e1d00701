//! hpkvctl: the command line of `/dev/hpkv`, over [`hpkv_client::Client`].
//!
//! Keys and values are taken from the command line as raw bytes (any byte but NUL), values
//! also from a file or standard input (binary safe). Messages go to standard error as
//! `hpkvctl: <what>: <why>`; the exit codes are the `EXIT_*` constants below.
//!
//! The dump format (`dump`, `load`), all integers little-endian:
//! ```text
//! header  "HPKVDUMP"  u32 version = 1  u32 reserved = 0
//! record  u16 key_len (1..=512)  u32 value_len (1..=102400)  key  value      (repeated)
//! end     u16 0  u64 number of records
//! ```
//! A file without the end mark is truncated; `load` checks a whole file before it stores
//! anything (standard input is stored as it comes).
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

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Seek, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use hpkv_abi as abi;
use hpkv_client::{Client, Error, DEFAULT_DEVICE};

/// Success.
pub const EXIT_OK: u8 = 0;
/// `get` or `delete`: no such key.
pub const EXIT_NOT_FOUND: u8 = 1;
/// Bad arguments (clap's code), or `purge` not confirmed.
pub const EXIT_USAGE: u8 = 2;
/// The device could not be opened or used (ENOENT or EACCES on open, EIO, not hpkvd's
/// device), or a local file could not be read or written.
pub const EXIT_DEVICE: u8 = 3;
/// The store refused the input (EINVAL, EMSGSIZE, ENOSPC), or a dump file is not valid.
pub const EXIT_REFUSED: u8 = 4;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  key not found (get, delete)
  2  usage error (bad arguments; purge not confirmed)
  3  the device could not be opened or used (ENOENT or EACCES on open, EIO, ...),
     or a local file could not be read or written
  4  the store refused the input (EINVAL, EMSGSIZE, ENOSPC), or a dump file is not valid";

const DUMP_MAGIC: &[u8; 8] = b"HPKVDUMP";
const DUMP_VERSION: u32 = 1;

#[derive(Parser)]
#[command(
    name = "hpkvctl",
    version,
    about = "Reads and writes the hpkv store behind /dev/hpkv",
    after_help = EXIT_CODES
)]
struct Cli {
    /// The device hpkvd serves
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_DEVICE)]
    device: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Prints the value of KEY, raw, to standard output (exit 1 if there is none)
    #[command(after_help = EXIT_CODES)]
    Get {
        /// The key (its bytes as given)
        key: OsString,
        /// Print the value as lowercase hex and a newline
        #[arg(long)]
        hex: bool,
    },
    /// Stores VALUE under KEY, replacing any value it had
    #[command(after_help = EXIT_CODES)]
    Put {
        /// The key (its bytes as given)
        key: OsString,
        /// The value (its bytes as given)
        #[arg(required_unless_present = "value_file", conflicts_with = "value_file")]
        value: Option<OsString>,
        /// Read the value from PATH instead ("-": standard input), binary safe
        #[arg(long, value_name = "PATH")]
        value_file: Option<PathBuf>,
    },
    /// Appends SUFFIX to the value of KEY (a missing key is created)
    #[command(after_help = EXIT_CODES)]
    Append {
        /// The key (its bytes as given)
        key: OsString,
        /// The bytes to append
        #[arg(required_unless_present = "value_file", conflicts_with = "value_file")]
        suffix: Option<OsString>,
        /// Read the suffix from PATH instead ("-": standard input), binary safe
        #[arg(long, value_name = "PATH")]
        value_file: Option<PathBuf>,
    },
    /// Deletes KEY (exit 1 if there is none)
    #[command(after_help = EXIT_CODES)]
    Delete {
        /// The key (its bytes as given)
        key: OsString,
    },
    /// Prints records as `key:value` lines, in key order
    #[command(after_help = EXIT_CODES)]
    Scan {
        /// Start at this key (included)
        #[arg(long, value_name = "KEY")]
        from: Option<OsString>,
        /// Stop before this key (excluded)
        #[arg(long, value_name = "KEY")]
        to: Option<OsString>,
        /// Print at most N records
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Print only the keys, one a line
        #[arg(long)]
        keys_only: bool,
    },
    /// Prints the module's three /proc/hpkv_stats lines
    #[command(after_help = EXIT_CODES)]
    Stats {
        /// Print every counter as JSON instead
        #[arg(long)]
        json: bool,
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
    /// Writes every record to FILE ("-": standard output), binary safe
    #[command(after_help = EXIT_CODES)]
    Dump { file: PathBuf },
    /// Stores every record of a dump FILE ("-": standard input)
    #[command(after_help = EXIT_CODES)]
    Load { file: PathBuf },
}

/// Why a command failed: `hpkvctl: <what>: <why>`, and the exit code.
struct Failure {
    what: String,
    why: String,
    code: u8,
}

impl Failure {
    fn new(what: impl Into<String>, why: impl ToString, code: u8) -> Failure {
        Failure {
            what: what.into(),
            why: why.to_string(),
            code,
        }
    }

    /// A failure of the client, with the exit code its kind calls for.
    fn client(what: impl Into<String>, e: Error) -> Failure {
        let code = match e {
            Error::NotFound => EXIT_NOT_FOUND,
            Error::InvalidArgument(_) | Error::TooLarge | Error::NoSpace => EXIT_REFUSED,
            _ => EXIT_DEVICE,
        };
        Failure::new(what, e, code)
    }

    /// A failure to read or write a local file.
    fn file(path: &Path, e: io::Error) -> Failure {
        Failure::new(path.display().to_string(), e, EXIT_DEVICE)
    }
}

type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(f) => {
            eprintln!("hpkvctl: {}: {}", f.what, f.why);
            ExitCode::from(f.code)
        }
    }
}

/// A key for messages: printable ASCII as is, other bytes escaped.
fn shown(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// Writes to standard output; a closed pipe (`hpkvctl scan | head`) ends quietly.
fn out_failure(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(EXIT_OK.into());
    }
    Failure::new("standard output", e, EXIT_DEVICE)
}

fn run(cli: Cli) -> Outcome {
    let device = cli.device.display().to_string();
    let client = Client::open(&cli.device).map_err(|e| Failure::client(&device, e))?;
    match cli.command {
        Cmd::Get { key, hex } => {
            let key = key.as_bytes();
            let what = || format!("get {}", shown(key));
            let value = client
                .get(key)
                .map_err(|e| Failure::client(what(), e))?
                .ok_or_else(|| Failure::client(what(), Error::NotFound))?;
            let mut out = io::stdout().lock();
            if hex {
                let text: String = value.iter().map(|b| format!("{b:02x}")).collect();
                writeln!(out, "{text}")
            } else {
                out.write_all(&value)
            }
            .and_then(|()| out.flush())
            .map_err(out_failure)
        }
        Cmd::Put {
            key,
            value,
            value_file,
        } => {
            let key = key.as_bytes();
            let value = read_value(value, value_file)?;
            client
                .put(key, &value)
                .map_err(|e| Failure::client(format!("put {}", shown(key)), e))
        }
        Cmd::Append {
            key,
            suffix,
            value_file,
        } => {
            let key = key.as_bytes();
            let value = read_value(suffix, value_file)?;
            client
                .append(key, &value)
                .map_err(|e| Failure::client(format!("append {}", shown(key)), e))
        }
        Cmd::Delete { key } => {
            let key = key.as_bytes();
            let what = || format!("delete {}", shown(key));
            match client.delete(key) {
                Ok(true) => Ok(()),
                Ok(false) => Err(Failure::client(what(), Error::NotFound)),
                Err(e) => Err(Failure::client(what(), e)),
            }
        }
        Cmd::Scan {
            from,
            to,
            limit,
            keys_only,
        } => {
            let mut range = client.scan().capacity(abi::RANGE_CAPACITY_MAX);
            if let Some(from) = &from {
                range = range.from(from.as_bytes());
            }
            if let Some(to) = &to {
                range = range.to(to.as_bytes());
            }
            if let Some(limit) = limit {
                range = range.limit(limit);
            }
            let mut out = BufWriter::new(io::stdout().lock());
            for record in range {
                let (key, value) = record.map_err(|e| Failure::client("scan", e))?;
                let line = if keys_only {
                    [&key[..], b"\n"].concat()
                } else {
                    abi::listing_line(&key, &value)
                };
                out.write_all(&line).map_err(out_failure)?;
            }
            out.flush().map_err(out_failure)
        }
        Cmd::Stats { json } => {
            let stats = client.stats().map_err(|e| Failure::client("stats", e))?;
            let text = if json {
                let mut s = serde_json::to_string_pretty(&stats_json(&stats)).expect("JSON");
                s.push('\n');
                s
            } else {
                stats.proc_text()
            };
            let mut out = io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(out_failure)
        }
        Cmd::Sync => client.sync().map_err(|e| Failure::client("sync", e)),
        Cmd::Purge { yes } => {
            if !yes {
                confirm_purge(&client, &device)?;
            }
            client.purge().map_err(|e| Failure::client("purge", e))
        }
        Cmd::Dump { file } => dump(&client, &file),
        Cmd::Load { file } => load(&client, &file),
    }
}

/// The value of `put` and `append`: the argument, or a file, or standard input.
fn read_value(value: Option<OsString>, file: Option<PathBuf>) -> Result<Vec<u8>, Failure> {
    match (value, file) {
        (Some(v), _) => Ok(v.into_vec()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut v = vec![];
            io::stdin()
                .lock()
                .read_to_end(&mut v)
                .map_err(|e| Failure::new("standard input", e, EXIT_DEVICE))?;
            Ok(v)
        }
        (None, Some(path)) => std::fs::read(&path).map_err(|e| Failure::file(&path, e)),
        (None, None) => unreachable!("clap requires one of them"),
    }
}

fn confirm_purge(client: &Client, device: &str) -> Outcome {
    if !io::stdin().is_terminal() {
        return Err(Failure::new(
            "purge",
            "standard input is not a terminal: pass --yes to remove every record",
            EXIT_USAGE,
        ));
    }
    let records = client
        .stats()
        .map_err(|e| Failure::client("purge", e))?
        .records;
    eprint!("hpkvctl: purge removes all {records} records of {device}; type yes to go on: ");
    let mut answer = String::new();
    io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Failure::new("standard input", e, EXIT_DEVICE))?;
    if answer.trim() != "yes" {
        return Err(Failure::new(
            "purge",
            "not confirmed; nothing removed",
            EXIT_USAGE,
        ));
    }
    Ok(())
}

fn progress(len: u64, template: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

fn dump(client: &Client, path: &Path) -> Outcome {
    let to_stdout = path.as_os_str() == "-";
    let file = match to_stdout {
        true => None,
        false => Some(File::create(path).map_err(|e| Failure::file(path, e))?),
    };
    let sink: Box<dyn Write + '_> = match &file {
        Some(f) => Box::new(f),
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let shown_path = path.display().to_string();
    let write_err = |e: io::Error| Failure::new(&shown_path, e, EXIT_DEVICE);
    let expected = client
        .stats()
        .map_err(|e| Failure::client("dump", e))?
        .records;
    let bar = progress(
        expected,
        "{spinner} dump [{bar:40}] {pos}/{len} records ({per_sec}, {eta})",
    );
    let mut header = DUMP_MAGIC.to_vec();
    header.extend_from_slice(&DUMP_VERSION.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    out.write_all(&header).map_err(write_err)?;
    let (mut count, mut bytes) = (0u64, 0u64);
    for record in client.scan().capacity(abi::RANGE_CAPACITY_MAX) {
        let (key, value) = record.map_err(|e| Failure::client("dump", e))?;
        out.write_all(&(key.len() as u16).to_le_bytes())
            .and_then(|()| out.write_all(&(value.len() as u32).to_le_bytes()))
            .and_then(|()| out.write_all(&key))
            .and_then(|()| out.write_all(&value))
            .map_err(write_err)?;
        count += 1;
        bytes += (key.len() + value.len()) as u64;
        if count > bar.length().unwrap_or(0) {
            bar.set_length(count);
        }
        bar.inc(1);
    }
    out.write_all(&0u16.to_le_bytes())
        .and_then(|()| out.write_all(&count.to_le_bytes()))
        .and_then(|()| out.flush())
        .map_err(write_err)?;
    drop(out);
    if let Some(f) = &file {
        f.sync_all().map_err(write_err)?;
    }
    bar.finish_and_clear();
    let report =
        format!("dumped {count} records ({bytes} bytes of keys and values) to {shown_path}");
    if to_stdout {
        eprintln!("{report}");
    } else {
        println!("{report}");
    }
    Ok(())
}

/// A key and its value.
type Record = (Vec<u8>, Vec<u8>);

/// Reads a dump, record by record.
struct DumpReader<R> {
    inner: R,
    count: u64,
    /// Bytes read so far.
    offset: u64,
}

/// Why a dump cannot be read: the file (EXIT_DEVICE), or its contents (EXIT_REFUSED).
enum DumpError {
    Io(io::Error),
    Invalid(String),
}

impl<R: Read> DumpReader<R> {
    fn new(mut inner: R) -> Result<DumpReader<R>, DumpError> {
        let mut header = [0u8; 16];
        read_exact_or(&mut inner, &mut header, "no dump header")?;
        if &header[..8] != DUMP_MAGIC {
            return Err(DumpError::Invalid(
                "not an hpkvctl dump (no HPKVDUMP header)".into(),
            ));
        }
        let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if version != DUMP_VERSION {
            return Err(DumpError::Invalid(format!(
                "dump format version {version}; this hpkvctl reads version {DUMP_VERSION}"
            )));
        }
        Ok(DumpReader {
            inner,
            count: 0,
            offset: 16,
        })
    }

    /// The next record, or `None` at the end mark (whose count is checked).
    fn next_record(&mut self) -> Result<Option<Record>, DumpError> {
        let truncated = format!("truncated after {} records", self.count);
        let mut len = [0u8; 2];
        read_exact_or(&mut self.inner, &mut len, &truncated)?;
        let key_len = u16::from_le_bytes(len) as usize;
        if key_len == 0 {
            let mut n = [0u8; 8];
            read_exact_or(&mut self.inner, &mut n, &truncated)?;
            let n = u64::from_le_bytes(n);
            if n != self.count {
                return Err(DumpError::Invalid(format!(
                    "the end mark says {n} records, the file holds {}",
                    self.count
                )));
            }
            self.offset += 10;
            return Ok(None);
        }
        let mut vlen = [0u8; 4];
        read_exact_or(&mut self.inner, &mut vlen, &truncated)?;
        let value_len = u32::from_le_bytes(vlen) as usize;
        if key_len > abi::KEY_MAX || !(1..=abi::VALUE_MAX).contains(&value_len) {
            return Err(DumpError::Invalid(format!(
                "record {} at byte {}: a {key_len}-byte key and a {value_len}-byte value",
                self.count + 1,
                self.offset
            )));
        }
        let mut key = vec![0u8; key_len];
        let mut value = vec![0u8; value_len];
        read_exact_or(&mut self.inner, &mut key, &truncated)?;
        read_exact_or(&mut self.inner, &mut value, &truncated)?;
        self.count += 1;
        self.offset += (6 + key_len + value_len) as u64;
        Ok(Some((key, value)))
    }
}

fn read_exact_or(r: &mut impl Read, buf: &mut [u8], truncated: &str) -> Result<(), DumpError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => DumpError::Invalid(truncated.to_string()),
        _ => DumpError::Io(e),
    })
}

fn load(client: &Client, path: &Path) -> Outcome {
    let shown_path = path.display().to_string();
    let dump_failure = |e: DumpError| match e {
        DumpError::Io(e) => Failure::new(&shown_path, e, EXIT_DEVICE),
        DumpError::Invalid(why) => Failure::new(&shown_path, why, EXIT_REFUSED),
    };
    let (source, len): (Box<dyn Read>, Option<u64>) = if path.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), None)
    } else {
        let mut file = File::open(path).map_err(|e| Failure::file(path, e))?;
        let len = file.metadata().map_err(|e| Failure::file(path, e))?.len();
        // Check the whole file first, so that a damaged dump stores nothing.
        let mut check =
            DumpReader::new(BufReader::with_capacity(1 << 20, &mut file)).map_err(dump_failure)?;
        while check.next_record().map_err(dump_failure)?.is_some() {}
        file.rewind().map_err(|e| Failure::file(path, e))?;
        (Box::new(file), Some(len))
    };
    let mut reader =
        DumpReader::new(BufReader::with_capacity(1 << 20, source)).map_err(dump_failure)?;
    let bar = match len {
        Some(len) => progress(
            len,
            "{spinner} load [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ),
        None => progress(0, "{spinner} load {bytes} ({bytes_per_sec})"),
    };
    while let Some((key, value)) = reader.next_record().map_err(dump_failure)? {
        client.put(&key, &value).map_err(|e| {
            Failure::client(format!("load {shown_path}: record {}", reader.count), e)
        })?;
        bar.set_position(reader.offset);
    }
    client
        .sync()
        .map_err(|e| Failure::client(format!("load {shown_path}"), e))?;
    bar.finish_and_clear();
    println!("loaded {} records from {shown_path}", reader.count);
    Ok(())
}

/// Every STATS counter as a JSON object, by its name in `struct hpkv_stats`.
fn stats_json(stats: &abi::StatsRecord) -> serde_json::Value {
    serde_json::Value::Object(
        stats
            .fields()
            .into_iter()
            .map(|(name, value)| (name.to_string(), value.into()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_are_documented() {
        let help = Cli::command().render_long_help().to_string();
        for code in [
            EXIT_OK,
            EXIT_NOT_FOUND,
            EXIT_USAGE,
            EXIT_DEVICE,
            EXIT_REFUSED,
        ] {
            assert!(
                help.contains(&format!("\n  {code}  ")),
                "{code} missing from --help"
            );
        }
    }

    fn dump_bytes(records: &[(&[u8], &[u8])], count: u64) -> Vec<u8> {
        let mut b = DUMP_MAGIC.to_vec();
        b.extend_from_slice(&DUMP_VERSION.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for (k, v) in records {
            b.extend_from_slice(&(k.len() as u16).to_le_bytes());
            b.extend_from_slice(&(v.len() as u32).to_le_bytes());
            b.extend_from_slice(k);
            b.extend_from_slice(v);
        }
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, String> {
        let err = |e: DumpError| match e {
            DumpError::Io(e) => e.to_string(),
            DumpError::Invalid(why) => why,
        };
        let mut r = DumpReader::new(bytes).map_err(err)?;
        let mut all = vec![];
        while let Some(kv) = r.next_record().map_err(err)? {
            all.push(kv);
        }
        Ok(all)
    }

    #[test]
    fn dump_format_round_trips_and_refuses_damage() {
        let records: [(&[u8], &[u8]); 2] = [(b"a\0:", b"\n\0v"), (b"b", b"x")];
        let good = dump_bytes(&records, 2);
        let got = read_all(&good).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.as_slice(), got[0].1.as_slice()), records[0]);
        assert_eq!(
            read_all(&good[..good.len() - 1]).unwrap_err(),
            "truncated after 2 records"
        );
        assert_eq!(
            read_all(&good[..20]).unwrap_err(),
            "truncated after 0 records"
        );
        assert!(read_all(&dump_bytes(&records, 3))
            .unwrap_err()
            .contains("end mark says 3"));
        assert!(read_all(b"HPKVDUMX\x01\0\0\0\0\0\0\0")
            .unwrap_err()
            .contains("not an hpkvctl dump"));
        assert!(read_all(&dump_bytes(&[(b"k", b"")], 1))
            .unwrap_err()
            .contains("0-byte value"));
        assert_eq!(read_all(&dump_bytes(&[], 0)).unwrap(), vec![]);
    }
}
