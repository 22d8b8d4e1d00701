//! The engine's errors: typed, with their sources, `#[non_exhaustive]` so variants can be
//! added without breaking callers.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::device::OpenDeviceError;
use crate::format::VALUE_MAX;

/// Why an operation failed. [`Error::errno`] gives the errno the ABI names.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The key has no value.
    NotFound,
    /// A key or value length out of bounds; the text names the bound.
    Invalid(&'static str),
    /// An append whose result would pass the value limit.
    TooLarge,
    /// The device is full; reads and deletes still work.
    NoSpace,
    /// The device failed.
    Io(Arc<io::Error>),
    /// An earlier device failure stopped all writes until the store is opened again.
    ReadOnly,
    /// Bytes on the device are not what the index says they are.
    Corrupt(Corruption),
    /// The engine is shutting down.
    Closed,
    /// The committer did not answer within its deadline (the write may still happen).
    TimedOut,
}

impl Error {
    /// The errno the ABI names for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound => libc::ENOENT,
            Error::Invalid(_) => libc::EINVAL,
            Error::TooLarge => libc::EMSGSIZE,
            Error::NoSpace => libc::ENOSPC,
            Error::Io(e) if e.raw_os_error() == Some(libc::ENOSPC) => libc::ENOSPC,
            Error::TimedOut => libc::ETIMEDOUT,
            Error::Io(_) | Error::ReadOnly | Error::Corrupt(_) | Error::Closed => libc::EIO,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("no such key"),
            Error::Invalid(what) => write!(f, "invalid argument: {what}"),
            Error::TooLarge => write!(f, "the value would exceed {VALUE_MAX} bytes"),
            Error::NoSpace => f.write_str("the device is full"),
            Error::Io(e) => write!(f, "device error: {e}"),
            Error::ReadOnly => f.write_str("an earlier device error stopped writes; restart hpkvd"),
            Error::Corrupt(what) => write!(f, "corrupt data: {what}"),
            Error::Closed => f.write_str("the store is shutting down"),
            Error::TimedOut => f.write_str("the store did not answer in time"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(&**e),
            Error::Corrupt(c) => Some(c),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(Arc::new(e))
    }
}

/// What was found wrong on the device.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The record the index points to is not there (bad checksum, other key or sequence).
    Record {
        /// The segment of the record.
        segment: u32,
        /// Its offset from the segment's start.
        offset: u32,
        /// The length of the key looked up.
        key_len: usize,
    },
    /// A segment's header does not say what the segment table says.
    SegmentHeader {
        /// The segment.
        segment: u32,
    },
    /// A log segment's records stop, at bytes that are no valid record, before the end its
    /// header says was on stable media: damage, not a torn write.
    LogBeforeDurableEnd {
        /// The segment.
        segment: u32,
        /// Where the valid records end, from the segment's start.
        records_end: u64,
        /// Bytes the header says were on stable media.
        durable_end: u32,
    },
    /// A log segment's records stop at bytes that are no valid record, but a record further
    /// on was written after those bytes were flushed: damage, not a torn write.
    LogBeforeFlushedRecord {
        /// The segment.
        segment: u32,
        /// Where the valid records end, from the segment's start.
        records_end: u64,
        /// Where the later record is, from the segment's start.
        later_record: u64,
    },
    /// A segment header block of this store that fails its checksum or checks.
    DamagedSegmentHeader {
        /// The segment.
        segment: u32,
    },
    /// A sealed segment's records end before the bytes the table says were written.
    SegmentTail {
        /// The segment.
        segment: u32,
        /// Where the valid records end, from the segment's start.
        records_end: u64,
        /// Bytes the table says were written.
        written: u32,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Record {
                segment,
                offset,
                key_len,
            } => write!(
                f,
                "the record of a {key_len}-byte key at segment {segment} offset {offset} \
                 does not match the index"
            ),
            Corruption::SegmentHeader { segment } => {
                write!(f, "segment {segment}: its header is unreadable")
            }
            Corruption::LogBeforeDurableEnd {
                segment,
                records_end,
                durable_end,
            } => write!(
                f,
                "segment {segment}: the record at byte {records_end} is damaged (checksum or \
                 lengths), but its header says the records up to byte {durable_end} were on \
                 stable media"
            ),
            Corruption::LogBeforeFlushedRecord {
                segment,
                records_end,
                later_record,
            } => write!(
                f,
                "segment {segment}: the record at byte {records_end} is damaged (checksum or \
                 lengths), but the record at byte {later_record} was written after it was on \
                 stable media"
            ),
            Corruption::DamagedSegmentHeader { segment } => write!(
                f,
                "segment {segment}: its header is damaged (checksum or checks), so its records \
                 cannot be trusted or skipped"
            ),
            Corruption::SegmentTail {
                segment,
                records_end,
                written,
            } => write!(
                f,
                "segment {segment}: records end at byte {records_end} but {written} were written"
            ),
        }
    }
}

impl std::error::Error for Corruption {}

/// Why a store could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The device or image file could not be opened.
    Device(OpenDeviceError),
    /// The device holds data that is not an hpkv store (the module: ENOTEMPTY).
    ForeignData,
    /// The device is blank and `initialize_if_empty` is off.
    Blank,
    /// The device is too small for a store.
    TooSmall {
        /// The device's size.
        size_bytes: u64,
        /// The smallest device a store fits on.
        min_bytes: u64,
    },
    /// The store cannot be used on this device.
    Incompatible(Incompatible),
    /// The device failed while opening.
    Io(io::Error),
    /// The store is damaged: bytes that were on stable media fail their checks. Opening it
    /// would lose data, so it is refused; nothing was written to the device.
    Corrupt(Corruption),
}

/// Why a store and its device do not fit together.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incompatible {
    /// The device's logical block size is not a power of two from 512 to 32 KiB.
    BlockSize {
        /// The device's logical block size.
        block_size: u32,
    },
    /// The device shrank since the store was made.
    Shrunk {
        /// Bytes the store was made on.
        store_bytes: u64,
        /// Bytes the device has now.
        device_bytes: u64,
    },
    /// The store's blocks are not aligned for the device.
    Alignment {
        /// The store's block size.
        store_block_size: u32,
        /// The device's logical block size.
        device_block_size: u32,
    },
}

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incompatible::BlockSize { block_size } => {
                write!(f, "unsupported logical block size {block_size}")
            }
            Incompatible::Shrunk {
                store_bytes,
                device_bytes,
            } => write!(
                f,
                "the store was made on {store_bytes} bytes but the device now has {device_bytes}"
            ),
            Incompatible::Alignment {
                store_block_size,
                device_block_size,
            } => write!(
                f,
                "the store uses {store_block_size}-byte blocks, the device needs \
                 {device_block_size}-byte alignment"
            ),
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Device(e) => write!(f, "{e}"),
            OpenError::ForeignData => f.write_str(
                "the device holds data that is not an hpkv store; refusing to format it \
                 (use --force-initialize to erase it)",
            ),
            OpenError::Blank => f.write_str("the device is blank and --initialize-if-empty is off"),
            OpenError::TooSmall {
                size_bytes,
                min_bytes,
            } => write!(
                f,
                "the device has {size_bytes} bytes; a store needs at least {min_bytes}"
            ),
            OpenError::Incompatible(why) => write!(f, "cannot open this store: {why}"),
            OpenError::Io(e) => write!(f, "device error while opening: {e}"),
            OpenError::Corrupt(c) => write!(
                f,
                "the store is damaged, refusing to open it (opening would lose data; nothing \
                 was written): {c}"
            ),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Device(e) => Some(e),
            OpenError::Incompatible(e) => Some(e),
            OpenError::Io(e) => Some(e),
            OpenError::Corrupt(c) => Some(c),
            OpenError::ForeignData | OpenError::Blank | OpenError::TooSmall { .. } => None,
        }
    }
}

impl std::error::Error for Incompatible {}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> OpenError {
        OpenError::Io(e)
    }
}

/// How the live index differs from what the device holds ([`crate::Engine::verify_against_disk`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum VerifyError {
    /// The device could not be scanned.
    Scan(OpenError),
    /// The device and the index hold different numbers of keys.
    KeyCount {
        /// Keys found on the device.
        disk: usize,
        /// Keys in the index.
        index: usize,
    },
    /// A key of the index is not on the device.
    Missing {
        /// The key.
        key: Vec<u8>,
    },
    /// A key's entry differs: (sequence, value length, tombstone, dead records).
    Differs {
        /// The key.
        key: Vec<u8>,
        /// What the index says.
        index: (u64, u32, bool, u32),
        /// What the device says.
        disk: (u64, u32, bool, u32),
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Scan(e) => write!(f, "scanning the device: {e}"),
            VerifyError::KeyCount { disk, index } => {
                write!(f, "the disk holds {disk} keys, the index {index}")
            }
            VerifyError::Missing { key } => write!(
                f,
                "key {:?} is in the index but not on disk",
                String::from_utf8_lossy(key)
            ),
            VerifyError::Differs { key, index, disk } => write!(
                f,
                "key {:?}: index (seq, len, tombstone, dead) = {index:?}, disk {disk:?}",
                String::from_utf8_lossy(key)
            ),
        }
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VerifyError::Scan(e) => Some(e),
            _ => None,
        }
    }
}
