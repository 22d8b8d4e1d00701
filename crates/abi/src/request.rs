//! ioctl requests: the client's encoders and, below them, the daemon's decoder.

use std::mem::offset_of;

use nix::errno::Errno;

use crate::le::{set_u16, set_u32, set_u64, u16_at, u32_at, u64_at};
use crate::{
    uapi, Profile, RequestError, CMD_DELETE, CMD_GET, CMD_INSERT, CMD_PARTIAL_UPDATE, CMD_PURGE,
    GET_STRUCT_SIZE, INFO_STRUCT_SIZE, IOC_GET, IOC_INFO, IOC_PUT_BATCH, IOC_RANGE, IOC_STATS,
    IOC_SYNC, KEY_MAX, KV_HEADER_SIZE, RANGE_CAPACITY_MAX, RANGE_HEADER_SIZE,
    RANGE_START_EXCLUSIVE, RANGE_STRUCT_SIZE, STATS_STRUCT_SIZE, STR_KEY_MAX, V13_KEY_HEADER_SIZE,
    V13_VALUE_LEN_OFFSET, VALUE_MAX,
};

// ------------------------------------------------------------------------------ encoders

/// `key`'s length as the layouts carry it, when it is 1 to `max` bytes.
pub(crate) fn key_len(key: &[u8], max: usize) -> Result<u16, RequestError> {
    let refused = RequestError::KeyLength {
        len: key.len(),
        max,
    };
    if key.is_empty() || key.len() > max {
        return Err(refused);
    }
    u16::try_from(key.len()).map_err(|_| refused)
}

/// `value`'s length, when it is 1 to [`VALUE_MAX`] bytes.
pub(crate) fn value_len(value: &[u8]) -> Result<u64, RequestError> {
    if value.is_empty() || value.len() > VALUE_MAX {
        return Err(RequestError::ValueLength {
            len: value.len(),
            max: VALUE_MAX,
        });
    }
    Ok(value.len() as u64)
}

/// The argument of INSERT and `PARTIAL_UPDATE` (commands 4 and 5): `struct hpkv_kv`, then the
/// key and the value.
///
/// # Errors
/// [`RequestError::KeyLength`] or [`RequestError::ValueLength`] outside 1 to [`KEY_MAX`] and
/// 1 to [`VALUE_MAX`].
pub fn encode_kv(key: &[u8], value: &[u8]) -> Result<Vec<u8>, RequestError> {
    let key_len = key_len(key, KEY_MAX)?;
    let value_len = value_len(value)?;
    let mut buf = vec![0u8; KV_HEADER_SIZE];
    set_u16(&mut buf, offset_of!(uapi::hpkv_kv, key_len), key_len);
    set_u64(&mut buf, offset_of!(uapi::hpkv_kv, value_len), value_len);
    buf.reserve(key.len() + value.len());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    Ok(buf)
}

/// A `readme`-profile key (GET and DELETE): the key and its NUL. GET writes the value and a
/// NUL over it, so give a GET buffer room for the value: `resize` the result.
///
/// # Errors
/// [`RequestError::KeyLength`] outside 1 to [`STR_KEY_MAX`], [`RequestError::NulInKey`].
pub fn encode_str_key(key: &[u8]) -> Result<Vec<u8>, RequestError> {
    key_len(key, STR_KEY_MAX)?;
    if key.contains(&0) {
        return Err(RequestError::NulInKey);
    }
    Ok([key, b"\0"].concat())
}

/// A `v1.3`-profile key (GET and DELETE): `struct hpkv_v13_key`, then the key. GET writes
/// the value's length at [`crate::V13_VALUE_LEN_OFFSET`] and the value after it, so give a
/// GET buffer room for them: `resize` the result.
///
/// # Errors
/// [`RequestError::KeyLength`] outside 1 to [`KEY_MAX`].
pub fn encode_v13_key(key: &[u8]) -> Result<Vec<u8>, RequestError> {
    let key_len = key_len(key, KEY_MAX)?;
    let mut buf = vec![0u8; V13_KEY_HEADER_SIZE];
    set_u16(&mut buf, offset_of!(uapi::hpkv_v13_key, key_len), key_len);
    buf.extend_from_slice(key);
    Ok(buf)
}

/// The argument of `HPKV_IOC_GET`: a `struct hpkv_get` for `key`, followed by `capacity`
/// bytes of room for the value.
///
/// # Errors
/// [`RequestError::KeyLength`] outside 1 to [`KEY_MAX`]; [`RequestError::Capacity`] over
/// [`VALUE_MAX`] (no value is longer).
pub fn encode_safe_get(key: &[u8], capacity: usize) -> Result<Vec<u8>, RequestError> {
    let key_len = key_len(key, KEY_MAX)?;
    if capacity > VALUE_MAX {
        return Err(RequestError::Capacity {
            bytes: capacity,
            max: VALUE_MAX,
        });
    }
    let mut buf = vec![0u8; GET_STRUCT_SIZE + capacity];
    set_u16(&mut buf, offset_of!(uapi::hpkv_get, key_len), key_len);
    set_u64(
        &mut buf,
        offset_of!(uapi::hpkv_get, capacity),
        capacity as u64,
    );
    let at = offset_of!(uapi::hpkv_get, key);
    buf[at..at + key.len()].copy_from_slice(key);
    Ok(buf)
}

/// What a RANGE request asks for (the client's side of [`RangeRequest`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeQuery<'a> {
    /// The first key; empty: from the first key of the store.
    pub start: &'a [u8],
    /// Skip `start` itself (`HPKV_RANGE_START_EXCLUSIVE`).
    pub start_exclusive: bool,
    /// The key to stop before; empty: to the last key.
    pub end: &'a [u8],
    /// At most this many records; 0: no count limit.
    pub max_count: u32,
    /// Bytes of room for the entries (at most [`RANGE_CAPACITY_MAX`]).
    pub capacity: usize,
}

/// The argument of `HPKV_IOC_RANGE`: a `struct hpkv_range` for `query`, followed by
/// `query.capacity` bytes of room for the entries.
///
/// # Errors
/// [`RequestError::BoundLength`] for a bound over [`KEY_MAX`], [`RequestError::Capacity`]
/// over [`RANGE_CAPACITY_MAX`].
pub fn encode_range(query: &RangeQuery<'_>) -> Result<Vec<u8>, RequestError> {
    let bound_len = |bound: &[u8]| {
        if bound.len() > KEY_MAX {
            return Err(RequestError::BoundLength { len: bound.len() });
        }
        u16::try_from(bound.len()).map_err(|_| RequestError::BoundLength { len: bound.len() })
    };
    let (start_len, end_len) = (bound_len(query.start)?, bound_len(query.end)?);
    if query.capacity > RANGE_CAPACITY_MAX {
        return Err(RequestError::Capacity {
            bytes: query.capacity,
            max: RANGE_CAPACITY_MAX,
        });
    }
    let mut buf = vec![0u8; RANGE_STRUCT_SIZE + query.capacity];
    set_u16(&mut buf, offset_of!(uapi::hpkv_range, start_len), start_len);
    set_u16(&mut buf, offset_of!(uapi::hpkv_range, end_len), end_len);
    let flags = if query.start_exclusive {
        RANGE_START_EXCLUSIVE
    } else {
        0
    };
    set_u32(&mut buf, offset_of!(uapi::hpkv_range, flags), flags);
    set_u32(
        &mut buf,
        offset_of!(uapi::hpkv_range, max_count),
        query.max_count,
    );
    set_u64(
        &mut buf,
        offset_of!(uapi::hpkv_range, capacity),
        query.capacity as u64,
    );
    let at = offset_of!(uapi::hpkv_range, start);
    buf[at..at + query.start.len()].copy_from_slice(query.start);
    let at = offset_of!(uapi::hpkv_range, end);
    buf[at..at + query.end.len()].copy_from_slice(query.end);
    Ok(buf)
}

// ------------------------------------------------------------------------------ decoder

/// An area of the caller's memory: its address there and its length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iov {
    /// The address in the caller's memory.
    pub base: u64,
    /// The length in bytes.
    pub len: u64,
}

pub(crate) fn iov(base: u64, len: usize) -> Iov {
    Iov {
        base,
        len: len as u64,
    }
}

/// The areas the kernel should copy in and offer out before calling again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Copied from the caller's memory, concatenated, as the next round's input.
    pub input: Vec<Iov>,
    /// Offered for the reply, which fills them in order.
    pub output: Vec<Iov>,
}

/// What one round of an ioctl comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Call again with these areas.
    Retry(Retry),
    /// A whole command.
    Ready(Command<'a>),
    /// Answer this errno.
    Fail(Errno),
}

/// A whole command, its arguments borrowed from the round's input.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// GET (command 0) in the daemon's profile.
    Get {
        /// The key.
        key: &'a [u8],
        /// How many input bytes the key occupies (with its NUL or length prefix), for a
        /// further retry ([`crate::get_reply`]).
        key_span: usize,
    },
    /// DELETE (command 1) in the daemon's profile.
    Delete {
        /// The key.
        key: &'a [u8],
    },
    /// PURGE (command 3).
    Purge,
    /// INSERT (command 4).
    Insert {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// `PARTIAL_UPDATE` (command 5).
    Append {
        /// The key.
        key: &'a [u8],
        /// The bytes to append.
        suffix: &'a [u8],
    },
    /// `HPKV_IOC_GET`.
    SafeGet {
        /// The key.
        key: &'a [u8],
        /// The room the caller offers for the value.
        capacity: u64,
    },
    /// `HPKV_IOC_RANGE`.
    Range(RangeRequest<'a>),
    /// `HPKV_IOC_STATS`.
    Stats,
    /// `HPKV_IOC_INFO`.
    Info,
    /// `HPKV_IOC_SYNC`.
    Sync,
    /// `HPKV_IOC_PUT_BATCH`: the records, checked.
    PutBatch(crate::BatchRecords<'a>),
}

/// A decoded `HPKV_IOC_RANGE` (the daemon's side of [`RangeQuery`]).
#[derive(Debug, PartialEq, Eq)]
pub struct RangeRequest<'a> {
    /// Empty: from the first key.
    pub start: &'a [u8],
    /// Skip `start` itself.
    pub start_exclusive: bool,
    /// Empty: to the last key.
    pub end: &'a [u8],
    /// 0: no count limit.
    pub max_count: u32,
    /// Bytes of room for the entries, at most [`RANGE_CAPACITY_MAX`].
    pub capacity: usize,
    /// The first [`RANGE_HEADER_SIZE`] bytes of the caller's struct, echoed in the reply.
    pub header: &'a [u8],
}

/// Memory the daemon may read from the caller without knowing more: the rest of the
/// caller's 4 KiB granule. Pages are at least this large on every Linux architecture.
pub(crate) const GRANULE_BYTES: usize = 4096;
const GRANULE: u64 = GRANULE_BYTES as u64;

/// No command names an area that ends further than this past `arg`.
pub(crate) const ARG_SPAN_MAX: u64 = 32 * GRANULE;
const _: () = assert!((RANGE_STRUCT_SIZE + RANGE_CAPACITY_MAX) as u64 <= ARG_SPAN_MAX);
const _: () = assert!((GET_STRUCT_SIZE + VALUE_MAX) as u64 <= ARG_SPAN_MAX);
const _: () = assert!((KV_HEADER_SIZE + KEY_MAX + VALUE_MAX) as u64 <= ARG_SPAN_MAX);
const _: () = assert!(crate::PUT_BATCH_MAX as u64 <= ARG_SPAN_MAX);

/// A null `arg`, or one so close to the top of the address space that the areas named from
/// it would wrap around (no user memory is there: the kernel would answer EFAULT anyway).
fn bad_arg(arg: u64) -> bool {
    arg == 0 || arg > u64::MAX - ARG_SPAN_MAX
}

/// Bytes from `addr` to the end of its granule: 1 to [`GRANULE`].
pub(crate) fn granule_rest(addr: u64) -> usize {
    usize::try_from(GRANULE - addr % GRANULE).expect("at most GRANULE")
}

/// Decodes one round of ioctl `cmd` on `arg` (the daemon's side), given the `input` the
/// kernel copied in and the size of the output area it offers.
pub fn decode_ioctl(
    profile: Profile,
    cmd: u32,
    arg: u64,
    input: &[u8],
    out_size: usize,
) -> Decoded<'_> {
    let needs_arg = !matches!(cmd, CMD_PURGE | IOC_SYNC);
    if needs_arg && is_known(cmd) && bad_arg(arg) {
        return Decoded::Fail(Errno::EFAULT);
    }
    match cmd {
        CMD_PURGE => Decoded::Ready(Command::Purge),
        IOC_SYNC => Decoded::Ready(Command::Sync),
        CMD_GET | CMD_DELETE => decode_key_command(profile, cmd == CMD_GET, arg, input),
        CMD_INSERT | CMD_PARTIAL_UPDATE => decode_kv(cmd == CMD_INSERT, arg, input),
        IOC_GET => decode_safe_get(arg, input),
        IOC_RANGE => decode_range(arg, input),
        IOC_STATS => decode_output_only(arg, input, out_size, STATS_STRUCT_SIZE, Command::Stats),
        IOC_INFO => decode_output_only(arg, input, out_size, INFO_STRUCT_SIZE, Command::Info),
        IOC_PUT_BATCH => crate::batch::decode_put_batch(arg, input),
        _ => Decoded::Fail(Errno::ENOTTY),
    }
}

fn is_known(cmd: u32) -> bool {
    matches!(
        cmd,
        CMD_GET
            | CMD_DELETE
            | CMD_PURGE
            | CMD_INSERT
            | CMD_PARTIAL_UPDATE
            | IOC_GET
            | IOC_RANGE
            | IOC_STATS
            | IOC_SYNC
            | IOC_INFO
            | IOC_PUT_BATCH
    )
}

/// STATS and INFO: no input; ask for the struct's room, then answer.
fn decode_output_only(
    arg: u64,
    input: &[u8],
    out_size: usize,
    size: usize,
    command: Command<'static>,
) -> Decoded<'static> {
    let first_round = input.is_empty() && out_size == 0;
    if first_round || out_size < size {
        return Decoded::Retry(Retry {
            input: vec![],
            output: vec![iov(arg, size)],
        });
    }
    Decoded::Ready(command)
}

/// GET and DELETE: the key in the profile's layout.
fn decode_key_command(profile: Profile, get: bool, arg: u64, input: &[u8]) -> Decoded<'_> {
    let output = match (get, profile) {
        (false, _) => vec![],
        (true, Profile::Readme) => vec![iov(arg, GRANULE_BYTES)],
        (true, Profile::V13) => vec![iov(arg + V13_VALUE_LEN_OFFSET as u64, GRANULE_BYTES)],
    };
    let key = match profile {
        Profile::Readme => decode_str_key(arg, input),
        Profile::V13 => decode_v13_key(arg, input),
    };
    match key {
        Err(e) => Decoded::Fail(e),
        Ok(KeyAt::Fetch(more)) => Decoded::Retry(Retry {
            input: vec![iov(arg, more)],
            output,
        }),
        Ok(KeyAt::Whole { key, span }) if get => Decoded::Ready(Command::Get {
            key,
            key_span: span,
        }),
        Ok(KeyAt::Whole { key, .. }) => Decoded::Ready(Command::Delete { key }),
    }
}

/// INSERT and `PARTIAL_UPDATE`: `struct hpkv_kv`, the key, the value.
fn decode_kv(insert: bool, arg: u64, input: &[u8]) -> Decoded<'_> {
    if input.len() < KV_HEADER_SIZE {
        let len = granule_rest(arg).clamp(KV_HEADER_SIZE, KV_HEADER_SIZE + KEY_MAX + VALUE_MAX);
        return Decoded::Retry(Retry {
            input: vec![iov(arg, len)],
            output: vec![],
        });
    }
    let key_len = usize::from(u16_at(input, offset_of!(uapi::hpkv_kv, key_len)));
    let value_len = usize::try_from(u64_at(input, offset_of!(uapi::hpkv_kv, value_len)))
        .ok()
        .filter(|len| (1..=VALUE_MAX).contains(len));
    let Some(value_len) = value_len.filter(|_| (1..=KEY_MAX).contains(&key_len)) else {
        return Decoded::Fail(Errno::EINVAL);
    };
    let total = KV_HEADER_SIZE + key_len + value_len;
    if input.len() < total {
        return Decoded::Retry(Retry {
            input: vec![iov(arg, total)],
            output: vec![],
        });
    }
    let key = &input[KV_HEADER_SIZE..KV_HEADER_SIZE + key_len];
    let value = &input[KV_HEADER_SIZE + key_len..total];
    Decoded::Ready(if insert {
        Command::Insert { key, value }
    } else {
        Command::Append { key, suffix: value }
    })
}

/// `HPKV_IOC_GET`: `struct hpkv_get`.
fn decode_safe_get(arg: u64, input: &[u8]) -> Decoded<'_> {
    if input.len() < GET_STRUCT_SIZE {
        return Decoded::Retry(Retry {
            input: vec![iov(arg, GET_STRUCT_SIZE)],
            output: vec![
                iov(arg + offset_of!(uapi::hpkv_get, value_len) as u64, 8),
                iov(arg + GET_STRUCT_SIZE as u64, VALUE_MAX),
            ],
        });
    }
    let key_len = usize::from(u16_at(input, offset_of!(uapi::hpkv_get, key_len)));
    let flags = u16_at(input, offset_of!(uapi::hpkv_get, flags));
    let reserved = u32_at(input, offset_of!(uapi::hpkv_get, reserved));
    if !(1..=KEY_MAX).contains(&key_len) || flags != 0 || reserved != 0 {
        return Decoded::Fail(Errno::EINVAL);
    }
    let capacity = u64_at(input, offset_of!(uapi::hpkv_get, capacity));
    let key_at = offset_of!(uapi::hpkv_get, key);
    Decoded::Ready(Command::SafeGet {
        key: &input[key_at..key_at + key_len],
        capacity,
    })
}

/// `HPKV_IOC_RANGE`: `struct hpkv_range`.
fn decode_range(arg: u64, input: &[u8]) -> Decoded<'_> {
    if input.len() < RANGE_STRUCT_SIZE {
        return Decoded::Retry(Retry {
            input: vec![iov(arg, RANGE_STRUCT_SIZE)],
            output: vec![
                iov(arg, RANGE_HEADER_SIZE),
                iov(arg + RANGE_STRUCT_SIZE as u64, RANGE_CAPACITY_MAX),
            ],
        });
    }
    let start_len = usize::from(u16_at(input, offset_of!(uapi::hpkv_range, start_len)));
    let end_len = usize::from(u16_at(input, offset_of!(uapi::hpkv_range, end_len)));
    let flags = u32_at(input, offset_of!(uapi::hpkv_range, flags));
    let capacity = usize::try_from(u64_at(input, offset_of!(uapi::hpkv_range, capacity)))
        .ok()
        .filter(|c| *c <= RANGE_CAPACITY_MAX);
    let Some(capacity) = capacity else {
        return Decoded::Fail(Errno::EINVAL);
    };
    if start_len > KEY_MAX || end_len > KEY_MAX || flags & !RANGE_START_EXCLUSIVE != 0 {
        return Decoded::Fail(Errno::EINVAL);
    }
    let start_at = offset_of!(uapi::hpkv_range, start);
    let end_at = offset_of!(uapi::hpkv_range, end);
    Decoded::Ready(Command::Range(RangeRequest {
        start: &input[start_at..start_at + start_len],
        start_exclusive: flags & RANGE_START_EXCLUSIVE != 0,
        end: &input[end_at..end_at + end_len],
        max_count: u32_at(input, offset_of!(uapi::hpkv_range, max_count)),
        capacity,
        header: &input[..RANGE_HEADER_SIZE],
    }))
}

/// Where a key stands after a round.
enum KeyAt<'a> {
    /// The whole key, and the input bytes it occupies with its NUL or length prefix.
    Whole { key: &'a [u8], span: usize },
    /// Fetch this many bytes from `arg` and call again.
    Fetch(usize),
}

/// A readme-profile key: NUL-terminated, at most [`STR_KEY_MAX`] bytes before the NUL.
fn decode_str_key(arg: u64, input: &[u8]) -> Result<KeyAt<'_>, Errno> {
    let limit = STR_KEY_MAX + 1;
    if let Some(nul) = input.iter().take(limit).position(|&b| b == 0) {
        if nul == 0 {
            return Err(Errno::EINVAL);
        }
        return Ok(KeyAt::Whole {
            key: &input[..nul],
            span: nul + 1,
        });
    }
    if input.len() >= limit {
        return Err(Errno::EINVAL);
    }
    // The key goes on past what we have, so the byte after it is readable: take the rest
    // of that byte's granule (the first round: the rest of the key's first granule).
    let have = input.len();
    Ok(KeyAt::Fetch(
        (have + granule_rest(arg + have as u64)).min(limit),
    ))
}

/// A v1.3 key: `[u16 key_len][key]`.
fn decode_v13_key(arg: u64, input: &[u8]) -> Result<KeyAt<'_>, Errno> {
    if input.len() < V13_KEY_HEADER_SIZE {
        let len = granule_rest(arg).clamp(V13_KEY_HEADER_SIZE, V13_KEY_HEADER_SIZE + KEY_MAX);
        return Ok(KeyAt::Fetch(len));
    }
    let key_len = usize::from(u16_at(input, offset_of!(uapi::hpkv_v13_key, key_len)));
    if !(1..=KEY_MAX).contains(&key_len) {
        return Err(Errno::EINVAL);
    }
    let span = V13_KEY_HEADER_SIZE + key_len;
    if input.len() < span {
        return Ok(KeyAt::Fetch(span));
    }
    Ok(KeyAt::Whole {
        key: &input[V13_KEY_HEADER_SIZE..span],
        span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoders_check_every_limit() {
        let key_max = [b'k'; KEY_MAX];
        let value_max = vec![b'v'; VALUE_MAX];
        assert!(encode_kv(&key_max, &value_max).is_ok());
        assert_eq!(
            encode_kv(&[b'k'; KEY_MAX + 1], b"v"),
            Err(RequestError::KeyLength { len: 513, max: 512 })
        );
        assert_eq!(
            encode_kv(b"k", &[]),
            Err(RequestError::ValueLength {
                len: 0,
                max: VALUE_MAX
            })
        );
        assert_eq!(
            encode_kv(b"k", &vec![0; VALUE_MAX + 1]),
            Err(RequestError::ValueLength {
                len: VALUE_MAX + 1,
                max: VALUE_MAX
            })
        );
        assert_eq!(encode_str_key(b"ab"), Ok(b"ab\0".to_vec()));
        assert_eq!(encode_str_key(b"a\0b"), Err(RequestError::NulInKey));
        assert_eq!(
            encode_str_key(&key_max),
            Err(RequestError::KeyLength { len: 512, max: 511 })
        );
        assert_eq!(encode_v13_key(b"ab"), Ok(b"\x02\0ab".to_vec()));
        assert!(encode_v13_key(&key_max).is_ok());
        assert!(encode_v13_key(b"").is_err());
        assert!(encode_safe_get(b"k", VALUE_MAX).is_ok());
        assert!(encode_safe_get(b"k", VALUE_MAX + 1).is_err());
        let query = RangeQuery {
            start: &key_max,
            end: &key_max[..1],
            capacity: RANGE_CAPACITY_MAX,
            ..RangeQuery::default()
        };
        assert!(encode_range(&query).is_ok());
        let long = [b'k'; KEY_MAX + 1];
        for bad in [
            RangeQuery {
                start: &long,
                ..query
            },
            RangeQuery {
                end: &long,
                ..query
            },
            RangeQuery {
                capacity: RANGE_CAPACITY_MAX + 1,
                ..query
            },
        ] {
            assert!(encode_range(&bad).is_err(), "{bad:?}");
        }
    }

    /// Every encoder's output, handed to the decoder whole, is the command it encoded.
    #[test]
    fn encoders_and_decoder_agree() {
        let arg = 0x10_0000;
        let decode = |profile, cmd, input: &[u8]| match decode_ioctl(profile, cmd, arg, input, 0) {
            Decoded::Ready(c) => format!("{c:?}"),
            other => panic!("{other:?}"),
        };
        let kv = encode_kv(b"k\0:", b"v\n").unwrap();
        let want = Command::Insert {
            key: b"k\0:",
            value: b"v\n",
        };
        assert_eq!(
            decode(Profile::Readme, CMD_INSERT, &kv),
            format!("{want:?}")
        );
        let want = Command::Append {
            key: b"k\0:",
            suffix: b"v\n",
        };
        assert_eq!(
            decode(Profile::V13, CMD_PARTIAL_UPDATE, &kv),
            format!("{want:?}")
        );
        let key = encode_str_key(b"key").unwrap();
        let want = Command::Get {
            key: b"key",
            key_span: 4,
        };
        assert_eq!(decode(Profile::Readme, CMD_GET, &key), format!("{want:?}"));
        let key = encode_v13_key(b"k\0y").unwrap();
        let want = Command::Delete { key: b"k\0y" };
        assert_eq!(decode(Profile::V13, CMD_DELETE, &key), format!("{want:?}"));
        let get = encode_safe_get(b"key", 100).unwrap();
        let want = Command::SafeGet {
            key: b"key",
            capacity: 100,
        };
        assert_eq!(decode(Profile::Readme, IOC_GET, &get), format!("{want:?}"));
        let query = RangeQuery {
            start: b"a",
            start_exclusive: true,
            end: b"b\0",
            max_count: 7,
            capacity: 64,
        };
        let range = encode_range(&query).unwrap();
        let Decoded::Ready(Command::Range(req)) =
            decode_ioctl(Profile::Readme, IOC_RANGE, arg, &range, 0)
        else {
            panic!("RANGE");
        };
        let got = RangeQuery {
            start: req.start,
            start_exclusive: req.start_exclusive,
            end: req.end,
            max_count: req.max_count,
            capacity: req.capacity,
        };
        assert_eq!(got, query);
        assert_eq!(req.header, &range[..RANGE_HEADER_SIZE]);
    }

    #[test]
    fn unknown_commands_are_enotty() {
        assert_eq!(
            decode_ioctl(Profile::Readme, 6, 1, &[], 0),
            Decoded::Fail(Errno::ENOTTY)
        );
        assert_eq!(
            decode_ioctl(Profile::Readme, IOC_GET + 1, 1, &[], 0),
            Decoded::Fail(Errno::ENOTTY)
        );
        assert_eq!(
            decode_ioctl(Profile::Readme, 6, 0, &[], 0),
            Decoded::Fail(Errno::ENOTTY),
            "an unknown command with a null argument"
        );
    }

    /// Found by `fuzz/decode_ioctl`: an `arg` near the top of the address space made
    /// `arg + offset` overflow (a panic with overflow checks, a wrapped area without).
    #[test]
    fn args_at_the_top_of_the_address_space_are_efault() {
        for cmd in [
            CMD_GET,
            CMD_DELETE,
            CMD_INSERT,
            IOC_GET,
            IOC_RANGE,
            IOC_STATS,
            IOC_PUT_BATCH,
        ] {
            for profile in [Profile::Readme, Profile::V13] {
                for arg in [u64::MAX, u64::MAX - 255, u64::MAX - ARG_SPAN_MAX + 1] {
                    assert_eq!(
                        decode_ioctl(profile, cmd, arg, &[], 0),
                        Decoded::Fail(Errno::EFAULT),
                        "{cmd:#x} at {arg:#x}"
                    );
                }
            }
        }
        // The highest accepted argument names areas that do not wrap.
        let arg = u64::MAX - ARG_SPAN_MAX;
        let Decoded::Retry(r) = decode_ioctl(Profile::V13, IOC_RANGE, arg, &[], 0) else {
            panic!("RANGE at the highest argument");
        };
        assert!(r.output.iter().all(|v| v.base.checked_add(v.len).is_some()));
        // PURGE and SYNC ignore their argument.
        assert_eq!(
            decode_ioctl(Profile::Readme, CMD_PURGE, u64::MAX, &[], 0),
            Decoded::Ready(Command::Purge)
        );
        assert_eq!(
            decode_ioctl(Profile::Readme, IOC_SYNC, u64::MAX, &[], 0),
            Decoded::Ready(Command::Sync)
        );
    }
}
