//! Why a command failed, as one line (`hpkvctl: <what>: <why>`) and an exit code.

use std::fmt;
use std::io;
use std::path::Path;

use hpkv_client::Error;

use crate::dump::DumpError;
use crate::format::UnescapeError;

/// Success.
pub const EXIT_OK: u8 = 0;
/// `get` or `delete`: no such key; `exists`: the key has no value.
pub const EXIT_NOT_FOUND: u8 = 1;
/// Bad arguments (clap's code), or `purge` not confirmed.
pub const EXIT_USAGE: u8 = 2;
/// The device could not be opened or used (ENOENT or EACCES on open, EIO, not hpkvd's
/// device), or a local file could not be read or written.
pub const EXIT_DEVICE: u8 = 3;
/// The store refused the input (EINVAL, EMSGSIZE, ENOSPC), or a dump file is not valid.
pub const EXIT_REFUSED: u8 = 4;

/// Why a command failed.
#[derive(Debug)]
pub enum Why {
    /// The client's call failed.
    Client(Error),
    /// A local file, standard input or standard output failed.
    Io(io::Error),
    /// A dump could not be read.
    Dump(DumpError),
    /// `purge` was not confirmed.
    NotConfirmed(&'static str),
    /// An argument written with escapes (`-e`) that cannot be read.
    Argument(UnescapeError),
    /// `--name` names no device (empty, `.`, `..`, or holding a `/`).
    NotADeviceName,
    /// Nothing to say: the exit code tells (`exists` of a missing key).
    Quiet(u8),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Client(e) => e.fmt(f),
            Why::Io(e) => e.fmt(f),
            Why::Dump(e) => e.fmt(f),
            Why::NotConfirmed(why) => f.write_str(why),
            Why::Argument(e) => e.fmt(f),
            Why::NotADeviceName => f.write_str("not a device name: one file name under /dev"),
            Why::Quiet(_) => Ok(()),
        }
    }
}

impl std::error::Error for Why {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Why::Client(e) => Some(e),
            Why::Io(e) => Some(e),
            Why::Dump(e) => Some(e),
            Why::Argument(e) => Some(e),
            Why::NotConfirmed(_) | Why::NotADeviceName | Why::Quiet(_) => None,
        }
    }
}

/// A failed command: what it was doing, and why it failed.
#[derive(Debug)]
pub struct Failure {
    /// What was being done (a command and its key, a file's path, ...).
    pub what: String,
    /// Why it failed.
    pub why: Why,
}

/// What a command comes to.
pub type Outcome = Result<(), Failure>;

impl Failure {
    /// A failure of the client.
    pub fn client(what: impl Into<String>, e: Error) -> Failure {
        Failure {
            what: what.into(),
            why: Why::Client(e),
        }
    }

    /// A failure to read or write a local file.
    pub fn file(path: &Path, e: io::Error) -> Failure {
        Failure::io(path.display().to_string(), e)
    }

    /// A failure to read or write `what` (a file, standard input or output).
    pub fn io(what: impl Into<String>, e: io::Error) -> Failure {
        Failure {
            what: what.into(),
            why: Why::Io(e),
        }
    }

    /// A dump `path` that cannot be read.
    pub fn dump(path: &str, e: DumpError) -> Failure {
        Failure {
            what: path.to_string(),
            why: Why::Dump(e),
        }
    }

    /// A failure that prints nothing: `code` says it all.
    pub fn quiet(code: u8) -> Failure {
        Failure {
            what: String::new(),
            why: Why::Quiet(code),
        }
    }

    /// Whether to print the failure (`hpkvctl: <what>: <why>`).
    pub fn is_quiet(&self) -> bool {
        matches!(self.why, Why::Quiet(_))
    }

    /// The exit code for this failure.
    pub fn code(&self) -> u8 {
        match &self.why {
            Why::Client(Error::NotFound) => EXIT_NOT_FOUND,
            Why::Client(
                Error::Request(_) | Error::InvalidArgument | Error::TooLarge | Error::NoSpace,
            )
            | Why::Dump(DumpError::Invalid(_)) => EXIT_REFUSED,
            Why::NotConfirmed(_) | Why::Argument(_) | Why::NotADeviceName => EXIT_USAGE,
            Why::Quiet(code) => *code,
            Why::Client(_) | Why::Io(_) | Why::Dump(DumpError::Io(_)) => EXIT_DEVICE,
        }
    }
}

/// A failure to write standard output; a closed pipe (`hpkvctl scan | head`) ends the
/// program quietly, with success.
pub fn out_failure(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(EXIT_OK.into());
    }
    Failure::io("standard output", e)
}
