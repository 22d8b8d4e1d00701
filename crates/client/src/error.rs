//! The client's errors and their errno mapping.

use std::fmt;
use std::io;

use nix::errno::Errno;

use hpkv_abi::{ReplyError, RequestError, VALUE_MAX};

/// The result of the client's calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. Each variant stands for one errno ([`Error::errno`]); the device's
/// answers map back with [`Error::from_errno`]:
///
/// | variant | errno | when |
/// |---|---|---|
/// | [`Error::NotFound`] | ENOENT | no such key (only where a missing key is an error) |
/// | [`Error::Request`] | EINVAL | the request is outside the ABI's limits, found before any call |
/// | [`Error::InvalidArgument`] | EINVAL | the device refused the request |
/// | [`Error::TooLarge`] | EMSGSIZE | an append would take the value past 102400 bytes |
/// | [`Error::NoSpace`] | ENOSPC | the store's device is full |
/// | [`Error::Unsupported`] | ENOTTY | the device does not know the command: not hpkvd's |
/// | [`Error::Protocol`] | EPROTO | the device answered what the ABI does not allow |
/// | [`Error::Io`] | its own | opening the device (ENOENT, EACCES), EIO from a failing store, ... |
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// ENOENT: no such key.
    NotFound,
    /// EINVAL before any call: the request is outside the ABI's limits (a key of 0 or over
    /// 512 bytes, an empty value, a NUL in a `readme`-profile DELETE's key, ...).
    Request(RequestError),
    /// EINVAL from the device: it refused the request.
    InvalidArgument,
    /// EMSGSIZE: an append would take the value past [`VALUE_MAX`] bytes.
    TooLarge,
    /// ENOSPC: the store's device is full.
    NoSpace,
    /// ENOTTY: the device does not know the command: it is not hpkvd's.
    Unsupported,
    /// EPROTO: the device answered something the ABI does not allow.
    Protocol(ReplyError),
    /// Anything else: opening the device, EIO from a failing store, EACCES, ...
    Io(io::Error),
}

impl Error {
    /// The errno this error stands for (EIO for an I/O error without one).
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound => libc::ENOENT,
            Error::Request(_) | Error::InvalidArgument => libc::EINVAL,
            Error::TooLarge => libc::EMSGSIZE,
            Error::NoSpace => libc::ENOSPC,
            Error::Unsupported => libc::ENOTTY,
            Error::Protocol(_) => libc::EPROTO,
            Error::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// The error for an errno the device answered.
    pub fn from_errno(errno: Errno) -> Error {
        match errno {
            Errno::ENOENT => Error::NotFound,
            Errno::EINVAL => Error::InvalidArgument,
            Errno::EMSGSIZE => Error::TooLarge,
            Errno::ENOSPC => Error::NoSpace,
            Errno::ENOTTY => Error::Unsupported,
            e => Error::Io(io::Error::from_raw_os_error(e as i32)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("no such key"),
            Error::Request(e) => write!(f, "invalid argument: {e}"),
            Error::InvalidArgument => {
                f.write_str("invalid argument: the device refused the request (EINVAL)")
            }
            Error::TooLarge => write!(f, "too large: the value would pass {VALUE_MAX} bytes"),
            Error::NoSpace => f.write_str("no space left on the store's device"),
            Error::Unsupported => f.write_str(
                "the device does not know the command (ENOTTY): is it hpkvd's /dev/hpkv?",
            ),
            Error::Protocol(e) => write!(f, "unexpected answer from the device: {e}"),
            Error::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Request(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Error {
        Error::Request(e)
    }
}

impl From<ReplyError> for Error {
    fn from(e: ReplyError) -> Error {
        Error::Protocol(e)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            e => io::Error::new(io::Error::from_raw_os_error(e.errno()).kind(), e),
        }
    }
}
