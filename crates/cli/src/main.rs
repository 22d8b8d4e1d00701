//! hpkvctl: the command line of `/dev/hpkv`, over [`hpkv_client::Client`].
//!
//! Keys and values are taken from the command line as raw bytes (any byte but NUL), values
//! also from a file or standard input (binary safe). Messages go to standard error as
//! `hpkvctl: <what>: <why>`; the exit codes are in [`failure`]. The dump format of `dump`
//! and `load` is described in [`mod@dump`].

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Seek, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use hpkv_abi as abi;
use hpkv_client::{Client, Error, DEFAULT_DEVICE};

mod dump;
mod failure;
mod progress;

use dump::{DumpReader, DumpWriter};
use failure::{out_failure, Failure, Outcome, Why, EXIT_CODES, EXIT_OK};
use progress::Unit;

/// Bytes of buffer between a dump or load and its file.
const FILE_BUFFER_BYTES: usize = 1 << 20;

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
#[allow(
    clippy::doc_markdown,
    reason = "clap shows these comments as --help text, where backticks would show"
)]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(f) => {
            eprintln!("hpkvctl: {}: {}", f.what, f.why);
            ExitCode::from(f.code())
        }
    }
}

/// A key for messages: printable ASCII as is, other bytes escaped.
fn shown(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

fn run(cli: Cli) -> Outcome {
    let device = cli.device.display().to_string();
    let client = Client::open(&cli.device).map_err(|e| Failure::client(&device, e))?;
    match cli.command {
        Cmd::Get { key, hex } => get(&client, key.as_bytes(), hex),
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
        Cmd::Delete { key } => delete(&client, key.as_bytes()),
        Cmd::Scan {
            from,
            to,
            limit,
            keys_only,
        } => scan(&client, from.as_ref(), to.as_ref(), limit, keys_only),
        Cmd::Stats { json } => stats(&client, json),
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

fn get(client: &Client, key: &[u8], hex: bool) -> Outcome {
    let what = || format!("get {}", shown(key));
    let value = client
        .get(key)
        .map_err(|e| Failure::client(what(), e))?
        .ok_or_else(|| Failure::client(what(), Error::NotFound))?;
    let mut out = io::stdout().lock();
    if hex {
        let mut text = String::with_capacity(2 * value.len() + 1);
        for b in &value {
            let _ = write!(text, "{b:02x}");
        }
        writeln!(out, "{text}")
    } else {
        out.write_all(&value)
    }
    .and_then(|()| out.flush())
    .map_err(out_failure)
}

fn delete(client: &Client, key: &[u8]) -> Outcome {
    let what = || format!("delete {}", shown(key));
    match client.delete(key) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::client(what(), Error::NotFound)),
        Err(e) => Err(Failure::client(what(), e)),
    }
}

fn scan(
    client: &Client,
    from: Option<&OsString>,
    to: Option<&OsString>,
    limit: Option<usize>,
    keys_only: bool,
) -> Outcome {
    let mut range = client.scan().capacity(abi::RANGE_CAPACITY_MAX);
    if let Some(from) = from {
        range = range.from(from.as_bytes());
    }
    if let Some(to) = to {
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

fn stats(client: &Client, json: bool) -> Outcome {
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

/// The value of `put` and `append`: the argument, or a file, or standard input.
fn read_value(value: Option<OsString>, file: Option<PathBuf>) -> Result<Vec<u8>, Failure> {
    match (value, file) {
        (Some(v), _) => Ok(v.into_vec()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut v = vec![];
            io::stdin()
                .lock()
                .read_to_end(&mut v)
                .map_err(|e| Failure::io("standard input", e))?;
            Ok(v)
        }
        (None, Some(path)) => std::fs::read(&path).map_err(|e| Failure::file(&path, e)),
        (None, None) => unreachable!("clap requires one of them"),
    }
}

fn confirm_purge(client: &Client, device: &str) -> Outcome {
    let refused = |why| Failure {
        what: "purge".to_string(),
        why: Why::NotConfirmed(why),
    };
    if !io::stdin().is_terminal() {
        return Err(refused(
            "standard input is not a terminal: pass --yes to remove every record",
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
        .map_err(|e| Failure::io("standard input", e))?;
    if answer.trim() != "yes" {
        return Err(refused("not confirmed; nothing removed"));
    }
    Ok(())
}

fn dump(client: &Client, path: &Path) -> Outcome {
    let to_stdout = path.as_os_str() == "-";
    let file = if to_stdout {
        None
    } else {
        Some(File::create(path).map_err(|e| Failure::file(path, e))?)
    };
    let sink: Box<dyn Write + '_> = match &file {
        Some(f) => Box::new(f),
        None => Box::new(io::stdout().lock()),
    };
    let shown_path = path.display().to_string();
    let write_err = |e: io::Error| Failure::io(&shown_path, e);
    let expected = client
        .stats()
        .map_err(|e| Failure::client("dump", e))?
        .records;
    let bar = progress::bar("dump", Unit::Records, expected);
    let mut out =
        DumpWriter::new(BufWriter::with_capacity(FILE_BUFFER_BYTES, sink)).map_err(write_err)?;
    let mut bytes = 0u64;
    for record in client.scan().capacity(abi::RANGE_CAPACITY_MAX) {
        let (key, value) = record.map_err(|e| Failure::client("dump", e))?;
        out.record(&key, &value).map_err(write_err)?;
        bytes += (key.len() + value.len()) as u64;
        if bar.position() >= bar.length().unwrap_or(0) {
            bar.set_length(bar.position() + 1);
        }
        bar.inc(1);
    }
    let (out, count) = out.finish().map_err(write_err)?;
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

fn load(client: &Client, path: &Path) -> Outcome {
    let shown_path = path.display().to_string();
    let (source, len): (Box<dyn Read>, Option<u64>) = if path.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), None)
    } else {
        let mut file = File::open(path).map_err(|e| Failure::file(path, e))?;
        let len = file.metadata().map_err(|e| Failure::file(path, e))?.len();
        // Check the whole file first, so that a damaged dump stores nothing.
        let reader = BufReader::with_capacity(FILE_BUFFER_BYTES, &mut file);
        let mut check = DumpReader::new(reader).map_err(|e| Failure::dump(&shown_path, e))?;
        while check
            .next_record()
            .map_err(|e| Failure::dump(&shown_path, e))?
            .is_some()
        {}
        file.rewind().map_err(|e| Failure::file(path, e))?;
        (Box::new(file), Some(len))
    };
    let reader = BufReader::with_capacity(FILE_BUFFER_BYTES, source);
    let mut reader = DumpReader::new(reader).map_err(|e| Failure::dump(&shown_path, e))?;
    let bar = progress::bar("load", Unit::Bytes, len.unwrap_or(0));
    while let Some((key, value)) = reader
        .next_record()
        .map_err(|e| Failure::dump(&shown_path, e))?
    {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use failure::{EXIT_DEVICE, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_USAGE};

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
}
