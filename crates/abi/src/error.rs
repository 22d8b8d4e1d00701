//! The errors of the codec: a request the ABI cannot carry ([`RequestError`], found by an
//! encoder before anything is sent), a reply the ABI does not allow ([`ReplyError`], found by
//! a parser), and an unknown profile name ([`ParseProfileError`]).

use std::fmt;

/// A request that the ABI cannot carry, refused by an encoder before anything reaches the
/// device. The device would answer EINVAL (or, for `write()`, EMSGSIZE); a client reports it
/// as EINVAL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// A key of `len` bytes where the layout takes 1 to `max`.
    KeyLength {
        /// The key's length in bytes.
        len: usize,
        /// The most the layout takes: [`crate::KEY_MAX`], or [`crate::STR_KEY_MAX`] for the
        /// NUL-terminated keys and `write()`.
        max: usize,
    },
    /// A value (or an appended suffix) of `len` bytes where the layout takes 1 to `max`.
    ValueLength {
        /// The value's length in bytes.
        len: usize,
        /// [`crate::VALUE_MAX`], or [`crate::WRITE_VALUE_MAX`] through `write()`.
        max: usize,
    },
    /// A NUL byte in a key that the layout ends with a NUL (the `readme` profile's GET and
    /// DELETE): the daemon would read a shorter key.
    NulInKey,
    /// A colon in a key of a `write()` request, which is split at its first colon.
    ColonInKey,
    /// A `write()` value that begins with `+`: the device would append the rest instead.
    PlusInWriteValue,
    /// A RANGE bound longer than [`crate::KEY_MAX`].
    BoundLength {
        /// The bound's length in bytes.
        len: usize,
    },
    /// Records that do not fit in one `HPKV_IOC_PUT_BATCH` request.
    BatchSize {
        /// The bytes the request would take, header included.
        bytes: usize,
        /// [`crate::PUT_BATCH_MAX`].
        max: usize,
    },
    /// A reply room (`capacity`) over what the command can fill.
    Capacity {
        /// The room asked for, in bytes.
        bytes: usize,
        /// The most the command takes.
        max: usize,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::KeyLength { len, max } => {
                write!(f, "the key is {len} bytes long; keys are 1 to {max} bytes")
            }
            RequestError::ValueLength { len, max } => {
                write!(
                    f,
                    "the value is {len} bytes long; values are 1 to {max} bytes"
                )
            }
            RequestError::NulInKey => f.write_str(
                "the key holds a NUL byte, and this layout ends keys with a NUL (the readme \
                 profile's GET and DELETE): use the v1.3 profile or HPKV_IOC_GET",
            ),
            RequestError::ColonInKey => {
                f.write_str("the key holds a colon, and write() splits at the first colon")
            }
            RequestError::PlusInWriteValue => f.write_str(
                "the value begins with '+', which write() reads as an append: use INSERT",
            ),
            RequestError::BoundLength { len } => write!(
                f,
                "a range bound of {len} bytes; keys are at most {} bytes",
                crate::KEY_MAX
            ),
            RequestError::BatchSize { bytes, max } => write!(
                f,
                "the records take {bytes} bytes; one batch carries at most {max}"
            ),
            RequestError::Capacity { bytes, max } => {
                write!(
                    f,
                    "a reply room of {bytes} bytes; the command fills at most {max}"
                )
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// A reply that the ABI does not allow: the device is not behaving as hpkvd does. A client
/// reports it as EPROTO.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// `HPKV_IOC_GET` succeeded with a `value_len` over the room offered.
    ValueLength {
        /// The `value_len` the device wrote.
        len: u64,
        /// The room the request offered.
        capacity: u64,
    },
    /// ERANGE naming a length that the room offered already held, or that no value has.
    Need {
        /// The length the device said it needs.
        needed: u64,
        /// The room the request offered.
        capacity: u64,
    },
    /// ERANGE even with room for the largest value or record there can be.
    NoRoomIsEnough,
    /// A RANGE reply whose `data_len` passes the room offered.
    DataLength {
        /// The `data_len` the device wrote.
        data_len: u64,
        /// The room the request offered.
        capacity: u64,
    },
    /// RANGE entry `index` with lengths outside the ABI's limits.
    EntryLimits {
        /// The entry's position in the reply, from 0.
        index: usize,
        /// Its `key_len`.
        key_len: usize,
        /// Its `value_len`.
        value_len: usize,
    },
    /// RANGE entry `index` of `count` running past the `data_len` bytes of data.
    EntryOverrun {
        /// The entry's position in the reply, from 0.
        index: usize,
        /// The `count` of the reply.
        count: usize,
        /// The `data_len` of the reply.
        data_len: u64,
    },
    /// The `count` entries of a RANGE reply take `used` bytes, not `data_len`.
    DataMismatch {
        /// The `count` of the reply.
        count: usize,
        /// The bytes its entries take.
        used: usize,
        /// The `data_len` of the reply.
        data_len: u64,
    },
    /// A RANGE reply with a key out of order or outside the bounds asked for.
    KeyOutOfOrder {
        /// The key.
        key: Vec<u8>,
    },
    /// A RANGE reply with no record that says more remain.
    EmptyPageWithMore,
    /// STATS names an ABI profile this crate does not know.
    UnknownProfile(u64),
    /// A `readme` GET reply with no NUL after the value.
    NoNul,
    /// `HPKV_IOC_PUT_BATCH` answered a count of stored records that is not 1 to the count
    /// sent.
    BatchCount {
        /// The count the device answered.
        stored: i64,
        /// The records sent.
        sent: usize,
    },
    /// A reply shorter than its layout.
    Short {
        /// The buffer's length.
        len: usize,
        /// The length the layout needs.
        need: usize,
    },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::BatchCount { stored, sent } => write!(
                f,
                "HPKV_IOC_PUT_BATCH says {stored} of {sent} records were stored"
            ),
            ReplyError::ValueLength { len, capacity } => {
                write!(
                    f,
                    "HPKV_IOC_GET says {len} bytes in a {capacity}-byte buffer"
                )
            }
            ReplyError::Need { needed, capacity } => write!(
                f,
                "ERANGE for a {needed}-byte value or record with {capacity} bytes of room"
            ),
            ReplyError::NoRoomIsEnough => {
                f.write_str("ERANGE with room for the largest value or record there can be")
            }
            ReplyError::DataLength { data_len, capacity } => write!(
                f,
                "HPKV_IOC_RANGE: {data_len} bytes of data in {capacity} bytes of room"
            ),
            ReplyError::EntryLimits {
                index,
                key_len,
                value_len,
            } => write!(
                f,
                "HPKV_IOC_RANGE: entry {index} with a {key_len}-byte key, {value_len}-byte value"
            ),
            ReplyError::EntryOverrun {
                index,
                count,
                data_len,
            } => write!(
                f,
                "HPKV_IOC_RANGE: entry {index} of {count} past the {data_len} bytes of data"
            ),
            ReplyError::DataMismatch {
                count,
                used,
                data_len,
            } => write!(
                f,
                "HPKV_IOC_RANGE: {count} entries take {used} bytes, data_len says {data_len}"
            ),
            ReplyError::KeyOutOfOrder { key } => write!(
                f,
                "HPKV_IOC_RANGE returned key \"{}\" out of order",
                key.escape_ascii()
            ),
            ReplyError::EmptyPageWithMore => {
                f.write_str("HPKV_IOC_RANGE returned no record but says more remain")
            }
            ReplyError::UnknownProfile(n) => write!(f, "unknown ABI profile {n}"),
            ReplyError::NoNul => f.write_str("GET wrote no NUL after the value"),
            ReplyError::Short { len, need } => {
                write!(f, "a reply of {len} bytes where the layout needs {need}")
            }
        }
    }
}

impl std::error::Error for ReplyError {}

/// A profile name other than `readme` and `v1.3` (see [`crate::Profile`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseProfileError {
    name: String,
}

impl ParseProfileError {
    pub(crate) fn new(name: &str) -> ParseProfileError {
        ParseProfileError {
            name: name.to_string(),
        }
    }

    /// The name that was given.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ParseProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown ABI profile {:?}: use readme or v1.3", self.name)
    }
}

impl std::error::Error for ParseProfileError {}
