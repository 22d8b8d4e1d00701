//! Typed errors of the writer and the reader.

use std::fmt;
use std::io;

/// Why [`crate::ViewReader::open`] refused a file. Anything but `Io` means the file is not one
/// the reader can trust or understand; the caller uses the device instead.
#[derive(Debug)]
pub enum OpenError {
    /// Opening or inspecting the file failed (for instance: no such file).
    Io(io::Error),
    /// The path is a symbolic link (views are opened with `O_NOFOLLOW`).
    Symlink,
    /// Not a regular file.
    NotRegularFile,
    /// Group or others may write the file, so anyone could forge answers.
    WritableByOthers {
        /// The file's permission bits.
        mode: u32,
    },
    /// The file belongs neither to root nor to the owner of its directory.
    UntrustedOwner {
        /// The file's owner.
        file_uid: u32,
        /// The directory's owner.
        dir_uid: u32,
    },
    /// Shorter than its header says, shorter than a header, or larger than any view can be.
    BadSize,
    /// Not a view file.
    BadMagic,
    /// A view of another layout version.
    BadVersion(u32),
    /// A header field is out of bounds or inconsistent (names the field).
    BadLayout(&'static str),
    /// The view is dead: its daemon stopped or was replaced. Reopen later.
    Dead,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "cannot open the view: {e}"),
            OpenError::Symlink => f.write_str("the view path is a symbolic link"),
            OpenError::NotRegularFile => f.write_str("the view is not a regular file"),
            OpenError::WritableByOthers { mode } => {
                write!(f, "the view is writable by group or others (mode {mode:o})")
            }
            OpenError::UntrustedOwner { file_uid, dir_uid } => write!(
                f,
                "the view belongs to uid {file_uid}, neither root nor its directory's owner {dir_uid}"
            ),
            OpenError::BadSize => f.write_str("the view's size does not match its header"),
            OpenError::BadMagic => f.write_str("not an hpkv view"),
            OpenError::BadVersion(v) => write!(f, "view layout version {v} is not supported"),
            OpenError::BadLayout(what) => write!(f, "the view's header is invalid: {what}"),
            OpenError::Dead => f.write_str("the view is dead"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> OpenError {
        OpenError::Io(e)
    }
}

impl From<OpenError> for io::Error {
    fn from(e: OpenError) -> io::Error {
        match e {
            OpenError::Io(e) => e,
            OpenError::Symlink
            | OpenError::WritableByOthers { .. }
            | OpenError::UntrustedOwner { .. } => {
                io::Error::new(io::ErrorKind::PermissionDenied, e)
            }
            OpenError::Dead => io::Error::new(io::ErrorKind::NotFound, e),
            _ => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

/// A [`crate::ViewConfig`] the writer cannot honour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `max_keys` is 0 or above [`crate::KEYS_MAX`].
    KeyCapacity(u64),
    /// The key arena is smaller than one largest key or larger than
    /// [`crate::ARENA_BYTES_MAX`].
    KeyArena(u64),
    /// The value arena is larger than [`crate::ARENA_BYTES_MAX`].
    ValueArena(u64),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::KeyCapacity(n) => write!(f, "key capacity {n} is out of bounds"),
            ConfigError::KeyArena(n) => write!(f, "key arena of {n} bytes is out of bounds"),
            ConfigError::ValueArena(n) => write!(f, "value arena of {n} bytes is out of bounds"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why [`crate::ViewWriter::create`] or [`crate::ViewWriter::publish`] failed.
#[derive(Debug)]
pub enum CreateError {
    /// The configuration is out of bounds.
    Config(ConfigError),
    /// A view already at the path could not be marked dead. Its readers might go on using it,
    /// so the writer does not replace it; the daemon must not serve until it is dead (or its
    /// heartbeat is older than [`crate::HEARTBEAT_STALE_NS`]).
    RetireOld(io::Error),
    /// Creating, sizing, mapping or renaming the file failed.
    Io(io::Error),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::Config(e) => write!(f, "invalid view configuration: {e}"),
            CreateError::RetireOld(e) => write!(f, "cannot mark the existing view dead: {e}"),
            CreateError::Io(e) => write!(f, "cannot create the view: {e}"),
        }
    }
}

impl std::error::Error for CreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CreateError::Config(e) => Some(e),
            CreateError::RetireOld(e) | CreateError::Io(e) => Some(e),
        }
    }
}

impl From<io::Error> for CreateError {
    fn from(e: io::Error) -> CreateError {
        CreateError::Io(e)
    }
}

/// An update the writer refused because its arguments are out of bounds (nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// A key must be 1 to [`crate::KEY_BYTES_MAX`] bytes.
    KeyLength(usize),
    /// A value must be 1 to [`crate::VALUE_BYTES_MAX`] bytes.
    ValueLength(usize),
    /// The value's bytes are not as long as the stated value length.
    ValueLengthMismatch {
        /// The stated length.
        value_len: usize,
        /// The bytes given.
        bytes: usize,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::KeyLength(n) => write!(f, "a key of {n} bytes is out of bounds"),
            WriteError::ValueLength(n) => write!(f, "a value of {n} bytes is out of bounds"),
            WriteError::ValueLengthMismatch { value_len, bytes } => {
                write!(f, "value length {value_len} given with {bytes} bytes")
            }
        }
    }
}

impl std::error::Error for WriteError {}
