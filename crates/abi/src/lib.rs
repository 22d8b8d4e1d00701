//! The `/dev/hpkv` contract (ABI.md): limits, command numbers, the `write()` grammar, and
//! the ioctl decoders of both profiles and of the extensions.
//!
//! Numbers and layouts come from `uapi/hpkv.h` through bindgen ([`uapi`], generated once and
//! committed, so that building this crate needs no C toolchain; the daemon's tests regenerate it
//! and compare). Offsets are taken with `offset_of!` on the generated structs, so this crate
//! cannot drift from the header.
//!
//! # The unrestricted-ioctl retry protocol
//! CUSE cannot know how much of the caller's memory an ioctl reads or writes, so the first
//! call of every ioctl reaches the daemon with no data. The daemon answers "retry", naming
//! the areas of the caller's memory to copy in (`input`) and out (`output`); the kernel
//! copies them and calls again. The decoders here are stateless: each round looks at what
//! it was given and either asks for more ([`Decoded::Retry`]), or has a whole command
//! ([`Decoded::Ready`]), or fails ([`Decoded::Fail`]).
//!
//! Keys are read without overreaching: a string key is first fetched only up to the end of
//! its 4 KiB granule (readable whenever its first byte is), and further bytes only if the
//! NUL was not there yet, so a key near the end of mapped memory never fails with EFAULT.
//! A command whose key and value fit in a page takes two round trips; a larger value needs
//! a third (the daemon then knows its size).
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

use std::fmt;
use std::mem::{offset_of, size_of};

use nix::errno::Errno;

pub mod le;

/// `uapi/hpkv.h` as bindgen translated it (`tests/uapi_header.rs` at the workspace root
/// regenerates it and fails when this copy is stale). Generated code: its own lints are off.
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    dead_code,
    unsafe_code,
    clippy::all,
    clippy::pedantic
)]
pub mod uapi;

use crate::le::{u16_at, u32_at, u64_at};

pub const KEY_MAX: usize = uapi::HPKV_KEY_MAX as usize;
pub const STR_KEY_MAX: usize = uapi::HPKV_STR_KEY_MAX as usize;
pub const VALUE_MAX: usize = uapi::HPKV_VALUE_MAX as usize;
pub const WRITE_VALUE_MAX: usize = uapi::HPKV_WRITE_VALUE_MAX as usize;
pub const WRITE_MAX: usize = uapi::HPKV_WRITE_MAX as usize;

pub const CMD_GET: u32 = uapi::HPKV_IOCTL_GET;
pub const CMD_DELETE: u32 = uapi::HPKV_IOCTL_DELETE;
pub const CMD_PURGE: u32 = uapi::HPKV_IOCTL_PURGE;
pub const CMD_INSERT: u32 = uapi::HPKV_IOCTL_INSERT;
pub const CMD_PARTIAL_UPDATE: u32 = uapi::HPKV_IOCTL_PARTIAL_UPDATE;
pub const IOC_GET: u32 = uapi::HPKV_IOC_GET;
pub const IOC_RANGE: u32 = uapi::HPKV_IOC_RANGE;
pub const IOC_STATS: u32 = uapi::HPKV_IOC_STATS;
pub const IOC_SYNC: u32 = uapi::HPKV_IOC_SYNC;

pub const RANGE_START_EXCLUSIVE: u32 = uapi::HPKV_RANGE_START_EXCLUSIVE;
pub const RANGE_MORE: u32 = uapi::HPKV_RANGE_MORE;
pub const RANGE_CAPACITY_MAX: usize = uapi::HPKV_RANGE_CAPACITY_MAX as usize;
pub const RANGE_HEADER_SIZE: usize = uapi::HPKV_RANGE_HEADER_SIZE as usize;

pub const GET_STRUCT_SIZE: usize = size_of::<uapi::hpkv_get>();
pub const RANGE_STRUCT_SIZE: usize = size_of::<uapi::hpkv_range>();
pub const RANGE_ENTRY_HEADER_SIZE: usize = size_of::<uapi::hpkv_range_entry>();
pub const STATS_STRUCT_SIZE: usize = size_of::<uapi::hpkv_stats>();
/// Bytes of `struct hpkv_stats` that hold counters; `reserved` follows (zeros).
pub const STATS_COUNTERS_SIZE: usize = offset_of!(uapi::hpkv_stats, reserved);
const KV_HEADER_SIZE: usize = size_of::<uapi::hpkv_kv>();
const V13_KEY_HEADER_SIZE: usize = size_of::<uapi::hpkv_v13_key>();
const V13_VALUE_LEN_OFFSET: u64 = uapi::HPKV_V13_VALUE_LEN_OFFSET as u64;

/// Memory the daemon may read from the caller without knowing more: the rest of the
/// caller's 4 KiB granule. Pages are at least this large on every Linux architecture.
const GRANULE: u64 = 4096;

const _: () = assert!(KV_HEADER_SIZE == 10 && V13_KEY_HEADER_SIZE == 2);
const _: () = assert!(RANGE_HEADER_SIZE == offset_of!(uapi::hpkv_range, start));
const _: () = assert!(GET_STRUCT_SIZE == offset_of!(uapi::hpkv_get, value));
const _: () = assert!(RANGE_STRUCT_SIZE == offset_of!(uapi::hpkv_range, data));
// One largest entry fits in a RANGE reply; the whole reply fits CUSE's 32-page limit.
const _: () = assert!(RANGE_ENTRY_HEADER_SIZE + KEY_MAX + VALUE_MAX <= RANGE_CAPACITY_MAX);
const _: () = assert!(RANGE_HEADER_SIZE + RANGE_CAPACITY_MAX <= 32 * 4096);

/// Which layout GET and DELETE use (hpkvd --abi).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Profile {
    /// The seed README's: NUL-terminated string keys, GET writes the value and a NUL.
    #[default]
    Readme,
    /// The module's last release: `[u16 key_len][key]`, GET writes `[u64 len][value]` at +2.
    V13,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Profile, String> {
        match s {
            "readme" => Ok(Profile::Readme),
            "v1.3" | "v13" => Ok(Profile::V13),
            _ => Err(format!("unknown ABI profile {s:?}: use readme or v1.3")),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Readme => "readme",
            Profile::V13 => "v1.3",
        })
    }
}

// ------------------------------------------------------------------------------ write()

/// A parsed `write(fd, "key:value", n)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteRequest<'a> {
    Put {
        key: &'a [u8],
        value: &'a [u8],
    },
    /// `key:+suffix`
    Append {
        key: &'a [u8],
        suffix: &'a [u8],
    },
}

/// Parses a `write()` buffer: split at the first colon, binary safe.
pub fn parse_write(buf: &[u8]) -> Result<WriteRequest<'_>, Errno> {
    if buf.len() > WRITE_MAX {
        return Err(Errno::EMSGSIZE);
    }
    let colon = buf.iter().position(|&b| b == b':').ok_or(Errno::EINVAL)?;
    let (key, rest) = (&buf[..colon], &buf[colon + 1..]);
    if key.is_empty() {
        return Err(Errno::EINVAL);
    }
    if key.len() > STR_KEY_MAX || rest.len() > WRITE_VALUE_MAX {
        return Err(Errno::EMSGSIZE);
    }
    match rest {
        [] | [b'+'] => Err(Errno::EINVAL),
        [b'+', suffix @ ..] => Ok(WriteRequest::Append { key, suffix }),
        value => Ok(WriteRequest::Put { key, value }),
    }
}

// ------------------------------------------------------------------------------ ioctls

/// An area of the caller's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iov {
    pub base: u64,
    pub len: u64,
}

fn iov(base: u64, len: usize) -> Iov {
    Iov {
        base,
        len: len as u64,
    }
}

/// The areas the kernel should copy in and out before calling again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    pub input: Vec<Iov>,
    pub output: Vec<Iov>,
}

/// What one round of an ioctl comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Retry(Retry),
    Ready(Command<'a>),
    Fail(Errno),
}

/// A whole command, its arguments borrowed from the round's input.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// GET (command 0) in the daemon's profile. `key_span` is how many input bytes the key
    /// occupies (with its NUL or length prefix), for a further retry.
    Get {
        key: &'a [u8],
        key_span: usize,
    },
    Delete {
        key: &'a [u8],
    },
    Purge,
    Insert {
        key: &'a [u8],
        value: &'a [u8],
    },
    Append {
        key: &'a [u8],
        suffix: &'a [u8],
    },
    /// HPKV_IOC_GET.
    SafeGet {
        key: &'a [u8],
        capacity: u64,
    },
    /// HPKV_IOC_RANGE.
    Range(RangeRequest<'a>),
    Stats,
    Sync,
}

#[derive(Debug, PartialEq, Eq)]
pub struct RangeRequest<'a> {
    /// Empty: from the first key.
    pub start: &'a [u8],
    pub start_exclusive: bool,
    /// Empty: to the last key.
    pub end: &'a [u8],
    /// 0: no count limit.
    pub max_count: u32,
    pub capacity: usize,
    /// The first [`RANGE_HEADER_SIZE`] bytes of the caller's struct, echoed in the reply.
    pub header: &'a [u8],
}

/// No command names an area that ends further than this past `arg`.
const ARG_SPAN_MAX: u64 = 32 * GRANULE;
const _: () = assert!((RANGE_STRUCT_SIZE + RANGE_CAPACITY_MAX) as u64 <= ARG_SPAN_MAX);

/// A null `arg`, or one so close to the top of the address space that the areas named from
/// it would wrap around (no user memory is there: the kernel would answer EFAULT anyway).
fn bad_arg(arg: u64) -> bool {
    arg == 0 || arg > u64::MAX - ARG_SPAN_MAX
}

fn granule_rest(addr: u64) -> u64 {
    GRANULE - addr % GRANULE
}

/// Decodes one round of ioctl `cmd` on `arg`, given the `input` the kernel copied in and
/// the size of the output area it offers.
pub fn decode_ioctl(
    profile: Profile,
    cmd: u32,
    arg: u64,
    input: &[u8],
    out_size: usize,
) -> Decoded<'_> {
    let first_round = input.is_empty() && out_size == 0;
    match cmd {
        CMD_PURGE => Decoded::Ready(Command::Purge),
        CMD_GET | CMD_DELETE => {
            let get = cmd == CMD_GET;
            if bad_arg(arg) {
                return Decoded::Fail(Errno::EFAULT);
            }
            let output = match (get, profile) {
                (false, _) => vec![],
                (true, Profile::Readme) => vec![iov(arg, GRANULE as usize)],
                (true, Profile::V13) => vec![iov(arg + V13_VALUE_LEN_OFFSET, GRANULE as usize)],
            };
            let key = match profile {
                Profile::Readme => decode_str_key(arg, input),
                Profile::V13 => decode_v13_key(arg, input),
            };
            match key {
                Err(e) => Decoded::Fail(e),
                Ok(Err(more)) => Decoded::Retry(Retry {
                    input: vec![iov(arg, more)],
                    output,
                }),
                Ok(Ok((key, key_span))) if get => Decoded::Ready(Command::Get { key, key_span }),
                Ok(Ok((key, _))) => Decoded::Ready(Command::Delete { key }),
            }
        }
        CMD_INSERT | CMD_PARTIAL_UPDATE => {
            if bad_arg(arg) {
                return Decoded::Fail(Errno::EFAULT);
            }
            if input.len() < KV_HEADER_SIZE {
                let len = granule_rest(arg).clamp(
                    KV_HEADER_SIZE as u64,
                    (KV_HEADER_SIZE + KEY_MAX + VALUE_MAX) as u64,
                );
                return Decoded::Retry(Retry {
                    input: vec![Iov { base: arg, len }],
                    output: vec![],
                });
            }
            let key_len = u16_at(input, offset_of!(uapi::hpkv_kv, key_len)) as usize;
            let value_len = u64_at(input, offset_of!(uapi::hpkv_kv, value_len));
            if !(1..=KEY_MAX).contains(&key_len) || !(1..=VALUE_MAX as u64).contains(&value_len) {
                return Decoded::Fail(Errno::EINVAL);
            }
            let total = KV_HEADER_SIZE + key_len + value_len as usize;
            if input.len() < total {
                return Decoded::Retry(Retry {
                    input: vec![iov(arg, total)],
                    output: vec![],
                });
            }
            let key = &input[KV_HEADER_SIZE..KV_HEADER_SIZE + key_len];
            let value = &input[KV_HEADER_SIZE + key_len..total];
            Decoded::Ready(if cmd == CMD_INSERT {
                Command::Insert { key, value }
            } else {
                Command::Append { key, suffix: value }
            })
        }
        IOC_GET => {
            if bad_arg(arg) {
                return Decoded::Fail(Errno::EFAULT);
            }
            if input.len() < GET_STRUCT_SIZE {
                return Decoded::Retry(Retry {
                    input: vec![iov(arg, GET_STRUCT_SIZE)],
                    output: vec![
                        iov(arg + offset_of!(uapi::hpkv_get, value_len) as u64, 8),
                        iov(arg + GET_STRUCT_SIZE as u64, VALUE_MAX),
                    ],
                });
            }
            let key_len = u16_at(input, offset_of!(uapi::hpkv_get, key_len)) as usize;
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
        IOC_RANGE => {
            if bad_arg(arg) {
                return Decoded::Fail(Errno::EFAULT);
            }
            if input.len() < RANGE_STRUCT_SIZE {
                return Decoded::Retry(Retry {
                    input: vec![iov(arg, RANGE_STRUCT_SIZE)],
                    output: vec![
                        iov(arg, RANGE_HEADER_SIZE),
                        iov(arg + RANGE_STRUCT_SIZE as u64, RANGE_CAPACITY_MAX),
                    ],
                });
            }
            let start_len = u16_at(input, offset_of!(uapi::hpkv_range, start_len)) as usize;
            let end_len = u16_at(input, offset_of!(uapi::hpkv_range, end_len)) as usize;
            let flags = u32_at(input, offset_of!(uapi::hpkv_range, flags));
            let capacity = u64_at(input, offset_of!(uapi::hpkv_range, capacity));
            if start_len > KEY_MAX
                || end_len > KEY_MAX
                || flags & !RANGE_START_EXCLUSIVE != 0
                || capacity > RANGE_CAPACITY_MAX as u64
            {
                return Decoded::Fail(Errno::EINVAL);
            }
            let start_at = offset_of!(uapi::hpkv_range, start);
            let end_at = offset_of!(uapi::hpkv_range, end);
            Decoded::Ready(Command::Range(RangeRequest {
                start: &input[start_at..start_at + start_len],
                start_exclusive: flags & RANGE_START_EXCLUSIVE != 0,
                end: &input[end_at..end_at + end_len],
                max_count: u32_at(input, offset_of!(uapi::hpkv_range, max_count)),
                capacity: capacity as usize,
                header: &input[..RANGE_HEADER_SIZE],
            }))
        }
        IOC_STATS => {
            if bad_arg(arg) {
                return Decoded::Fail(Errno::EFAULT);
            }
            if first_round || out_size < STATS_STRUCT_SIZE {
                return Decoded::Retry(Retry {
                    input: vec![],
                    output: vec![iov(arg, STATS_STRUCT_SIZE)],
                });
            }
            Decoded::Ready(Command::Stats)
        }
        IOC_SYNC => Decoded::Ready(Command::Sync),
        _ => Decoded::Fail(Errno::ENOTTY),
    }
}

/// A readme-profile key: NUL-terminated, at most [`STR_KEY_MAX`] bytes before the NUL.
/// `Ok(Ok((key, span)))`, or `Ok(Err(n))`: fetch `n` bytes from `arg` and call again.
#[allow(clippy::type_complexity)]
fn decode_str_key(arg: u64, input: &[u8]) -> Result<Result<(&[u8], usize), usize>, Errno> {
    let limit = STR_KEY_MAX + 1;
    if let Some(nul) = input.iter().take(limit).position(|&b| b == 0) {
        if nul == 0 {
            return Err(Errno::EINVAL);
        }
        return Ok(Ok((&input[..nul], nul + 1)));
    }
    if input.len() >= limit {
        return Err(Errno::EINVAL);
    }
    // The key goes on past what we have, so the byte after it is readable: take the rest
    // of that byte's granule (the first round: the rest of the key's first granule).
    let have = input.len() as u64;
    Ok(Err(
        (have + granule_rest(arg + have)).min(limit as u64) as usize
    ))
}

/// A v1.3 key: `[u16 key_len][key]`.
#[allow(clippy::type_complexity)]
fn decode_v13_key(arg: u64, input: &[u8]) -> Result<Result<(&[u8], usize), usize>, Errno> {
    if input.len() < V13_KEY_HEADER_SIZE {
        let len = granule_rest(arg).clamp(
            V13_KEY_HEADER_SIZE as u64,
            (V13_KEY_HEADER_SIZE + KEY_MAX) as u64,
        );
        return Ok(Err(len as usize));
    }
    let key_len = u16_at(input, offset_of!(uapi::hpkv_v13_key, key_len)) as usize;
    if !(1..=KEY_MAX).contains(&key_len) {
        return Err(Errno::EINVAL);
    }
    let span = V13_KEY_HEADER_SIZE + key_len;
    if input.len() < span {
        return Ok(Err(span));
    }
    Ok(Ok((&input[V13_KEY_HEADER_SIZE..span], span)))
}

// ------------------------------------------------------------------------------ replies

/// How to answer a GET whose value was found: copy out `prefix`, the value, `suffix`.
#[derive(Debug, PartialEq, Eq)]
pub struct ValueReply {
    pub prefix: Vec<u8>,
    pub suffix: &'static [u8],
}

/// Builds the reply to GET (command 0) for a value of `value_len` bytes, given this round's
/// output size; `Err(retry)` when the value does not fit the output area offered (the key
/// is fetched again and the exact room offered). `arg` is one [`decode_ioctl`] accepted.
pub fn get_reply(
    profile: Profile,
    arg: u64,
    key_span: usize,
    out_size: usize,
    value_len: usize,
) -> Result<ValueReply, Retry> {
    let (out_at, reply) = match profile {
        Profile::Readme => (
            arg,
            ValueReply {
                prefix: vec![],
                suffix: b"\0",
            },
        ),
        Profile::V13 => {
            let prefix = (value_len as u64).to_le_bytes().to_vec();
            (
                arg + V13_VALUE_LEN_OFFSET,
                ValueReply {
                    prefix,
                    suffix: b"",
                },
            )
        }
    };
    let need = reply.prefix.len() + value_len + reply.suffix.len();
    if need > out_size {
        return Err(Retry {
            input: vec![iov(arg, key_span)],
            output: vec![iov(out_at, need)],
        });
    }
    Ok(reply)
}

/// The reply to HPKV_IOC_GET: the ioctl result, the value_len bytes, and whether the value
/// follows (not when it does not fit: ERANGE).
pub fn safe_get_reply(capacity: u64, value_len: usize) -> (i32, [u8; 8], bool) {
    let len = (value_len as u64).to_le_bytes();
    if value_len as u64 > capacity {
        (-libc::ERANGE, len, false)
    } else {
        (0, len, true)
    }
}

/// Accumulates the entries of a RANGE reply within the caller's limits.
pub struct RangeBuilder<'a> {
    req: &'a RangeRequest<'a>,
    data: Vec<u8>,
    count: u32,
    more: bool,
    /// Bytes the first record needed when it did not fit.
    needed: Option<usize>,
}

impl<'a> RangeBuilder<'a> {
    pub fn new(req: &'a RangeRequest<'a>) -> RangeBuilder<'a> {
        RangeBuilder {
            req,
            data: Vec::new(),
            count: 0,
            more: false,
            needed: None,
        }
    }

    /// Adds a record; `false` when it does not fit (the scan should stop; the record is
    /// reported as "more").
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> bool {
        let size = range_entry_size(key.len(), value.len());
        let count_full = self.req.max_count != 0 && self.count >= self.req.max_count;
        if count_full || self.data.len() + size > self.req.capacity {
            if self.count == 0 && !count_full {
                self.needed = Some(size);
            }
            self.more = true;
            return false;
        }
        self.data
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.data.extend_from_slice(&0u16.to_le_bytes());
        self.data
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
        self.data.resize(self.data.len().next_multiple_of(8), 0);
        self.count += 1;
        true
    }

    /// The ioctl result and the bytes to copy out: the header (the caller's, with the
    /// output fields filled in), then the entries.
    pub fn finish(self) -> (i32, Vec<u8>) {
        let mut out = self.req.header.to_vec();
        let flags = u32_at(&out, offset_of!(uapi::hpkv_range, flags))
            | if self.more { RANGE_MORE } else { 0 };
        let put = |out: &mut Vec<u8>, at: usize, bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes)
        };
        put(
            &mut out,
            offset_of!(uapi::hpkv_range, flags),
            &flags.to_le_bytes(),
        );
        put(
            &mut out,
            offset_of!(uapi::hpkv_range, count),
            &self.count.to_le_bytes(),
        );
        let data_len = self.needed.unwrap_or(self.data.len()) as u64;
        put(
            &mut out,
            offset_of!(uapi::hpkv_range, data_len),
            &data_len.to_le_bytes(),
        );
        if self.needed.is_some() {
            return (-libc::ERANGE, out);
        }
        out.extend_from_slice(&self.data);
        (0, out)
    }
}

/// Bytes one entry takes in a RANGE reply (HPKV_RANGE_ENTRY_SIZE).
pub fn range_entry_size(key_len: usize, value_len: usize) -> usize {
    (RANGE_ENTRY_HEADER_SIZE + key_len + value_len).next_multiple_of(8)
}

/// The numbers of `struct hpkv_stats`: what the engine reports,
/// plus what the device layer knows (the profile it serves, the ioctl rounds it answered).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsRecord {
    pub records: u64,
    pub disk_usage_bytes: u64,
    pub device_size_bytes: u64,
    pub free_bytes: u64,
    pub log_bytes: u64,
    pub live_bytes: u64,
    pub segment_size_bytes: u64,
    pub segments_total: u64,
    pub segments_free: u64,
    pub cache_capacity_bytes: u64,
    pub cache_used_bytes: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub gets: u64,
    pub puts: u64,
    pub appends: u64,
    pub deletes: u64,
    pub purges: u64,
    pub device_writes: u64,
    pub device_flushes: u64,
    pub compactions: u64,
    pub compaction_bytes_moved: u64,
    pub compaction_bytes_reclaimed: u64,
    pub uptime_ms: u64,
    /// [`ABI_README`] or [`ABI_V13`].
    pub abi_profile: u64,
    pub index_heap_bytes: u64,
    /// 1 after a device error stopped writes.
    pub read_only: u64,
    /// ioctl requests the daemon received, every round of the retry protocol counted.
    pub ioctl_requests: u64,
    /// Of those, the ones answered with a retry.
    pub ioctl_retries: u64,
}

pub const ABI_README: u64 = uapi::HPKV_ABI_README as u64;
pub const ABI_V13: u64 = uapi::HPKV_ABI_V13 as u64;

impl Profile {
    /// The profile's number in `struct hpkv_stats`.
    pub fn number(self) -> u64 {
        match self {
            Profile::Readme => ABI_README,
            Profile::V13 => ABI_V13,
        }
    }
}

/// Applies `$m!(field)` to every field of `struct hpkv_stats` but `reserved`, in order.
macro_rules! stats_fields {
    ($m:ident) => {
        $m!(records);
        $m!(disk_usage_bytes);
        $m!(device_size_bytes);
        $m!(free_bytes);
        $m!(log_bytes);
        $m!(live_bytes);
        $m!(segment_size_bytes);
        $m!(segments_total);
        $m!(segments_free);
        $m!(cache_capacity_bytes);
        $m!(cache_used_bytes);
        $m!(cache_hits);
        $m!(cache_misses);
        $m!(gets);
        $m!(puts);
        $m!(appends);
        $m!(deletes);
        $m!(purges);
        $m!(device_writes);
        $m!(device_flushes);
        $m!(compactions);
        $m!(compaction_bytes_moved);
        $m!(compaction_bytes_reclaimed);
        $m!(uptime_ms);
        $m!(abi_profile);
        $m!(index_heap_bytes);
        $m!(read_only);
        $m!(ioctl_requests);
        $m!(ioctl_retries);
    };
}

impl StatsRecord {
    /// `struct hpkv_stats` as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; STATS_STRUCT_SIZE];
        macro_rules! put {
            ($f:ident) => {
                let at = offset_of!(uapi::hpkv_stats, $f);
                b[at..at + 8].copy_from_slice(&self.$f.to_le_bytes());
            };
        }
        stats_fields!(put);
        b
    }

    pub fn decode(b: &[u8]) -> Option<StatsRecord> {
        if b.len() < STATS_STRUCT_SIZE {
            return None;
        }
        let mut s = StatsRecord::default();
        macro_rules! get {
            ($f:ident) => {
                s.$f = u64_at(b, offset_of!(uapi::hpkv_stats, $f));
            };
        }
        stats_fields!(get);
        Some(s)
    }

    /// The module's `/proc/hpkv_stats`, exactly three lines.
    pub fn proc_text(&self) -> String {
        format!(
            "Total records: {}\nTotal disk usage: {} bytes\nDevice size: {} bytes\n",
            self.records, self.disk_usage_bytes, self.device_size_bytes
        )
    }

    /// Every counter with its name (the field's name in `struct hpkv_stats`), in the
    /// header's order.
    pub fn fields(&self) -> Vec<(&'static str, u64)> {
        let mut fields = Vec::with_capacity(STATS_COUNTERS_SIZE / 8);
        macro_rules! field {
            ($f:ident) => {
                fields.push((stringify!($f), self.$f));
            };
        }
        stats_fields!(field);
        fields
    }
}

/// One `key ':' value '\n'` line of the listing.
pub fn listing_line(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(key.len() + value.len() + 2);
    line.extend_from_slice(key);
    line.push(b':');
    line.extend_from_slice(value);
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_grammar_and_errnos() {
        assert_eq!(
            parse_write(b"k:v"),
            Ok(WriteRequest::Put {
                key: b"k",
                value: b"v"
            })
        );
        assert_eq!(
            parse_write(b"k:a:b\0\n"),
            Ok(WriteRequest::Put {
                key: b"k",
                value: b"a:b\0\n"
            })
        );
        assert_eq!(
            parse_write(b"k:+more"),
            Ok(WriteRequest::Append {
                key: b"k",
                suffix: b"more"
            })
        );
        assert_eq!(
            parse_write(b"k:++"),
            Ok(WriteRequest::Append {
                key: b"k",
                suffix: b"+"
            })
        );
        assert_eq!(parse_write(b"novalue"), Err(Errno::EINVAL));
        assert_eq!(parse_write(b":v"), Err(Errno::EINVAL));
        assert_eq!(parse_write(b"k:"), Err(Errno::EINVAL));
        assert_eq!(parse_write(b"k:+"), Err(Errno::EINVAL));
        let long_key = [b"k".repeat(512), b":v".to_vec()].concat();
        assert_eq!(parse_write(&long_key), Err(Errno::EMSGSIZE));
        let ok_key = [b"k".repeat(511), b":v".to_vec()].concat();
        assert!(parse_write(&ok_key).is_ok());
        let big_value = [b"k:".to_vec(), vec![b'x'; WRITE_VALUE_MAX + 1]].concat();
        assert_eq!(parse_write(&big_value), Err(Errno::EMSGSIZE));
        let max_value = [b"k:".to_vec(), vec![b'x'; WRITE_VALUE_MAX]].concat();
        assert!(parse_write(&max_value).is_ok());
        assert_eq!(
            parse_write(&vec![b'k'; WRITE_MAX + 1]),
            Err(Errno::EMSGSIZE)
        );
    }

    /// Runs the retry protocol against `memory` (the caller's address space, starting at
    /// `base`), as the kernel does: EFAULT for areas outside it.
    fn drive(
        profile: Profile,
        cmd: u32,
        memory: &[u8],
        base: u64,
        arg: u64,
    ) -> (Result<Command<'static>, Errno>, usize) {
        let mut input: Vec<u8> = vec![];
        let mut out_size = 0;
        for round in 1..10 {
            let leaked: &'static [u8] = Box::leak(input.clone().into_boxed_slice());
            match decode_ioctl(profile, cmd, arg, leaked, out_size) {
                Decoded::Ready(c) => return (Ok(c), round),
                Decoded::Fail(e) => return (Err(e), round),
                Decoded::Retry(r) => {
                    input.clear();
                    for v in &r.input {
                        let (s, e) = ((v.base - base) as usize, (v.base - base + v.len) as usize);
                        if v.base < base || e > memory.len() {
                            return (Err(Errno::EFAULT), round);
                        }
                        input.extend_from_slice(&memory[s..e]);
                    }
                    out_size = r.output.iter().map(|v| v.len as usize).sum();
                }
            }
        }
        panic!("no end to the retries");
    }

    #[test]
    fn readme_get_reads_only_the_key_near_the_end_of_memory() {
        // The key "end" sits in the last 4 bytes of the caller's memory.
        let base = 0x10000u64;
        let mut mem = vec![0xAAu8; 8192];
        mem[8188..].copy_from_slice(b"end\0");
        let (cmd, rounds) = drive(Profile::Readme, CMD_GET, &mem, base, base + 8188);
        assert_eq!(
            cmd,
            Ok(Command::Get {
                key: b"end",
                key_span: 4
            })
        );
        assert_eq!(rounds, 2, "empty round + one retry");
    }

    #[test]
    fn readme_key_across_a_page_boundary_takes_one_more_round() {
        let base = 0x10000u64;
        let mut mem = vec![b'k'; 8192];
        mem[4096 + 10] = 0;
        let (cmd, rounds) = drive(Profile::Readme, CMD_DELETE, &mem, base, base + 4090);
        assert_eq!(
            cmd,
            Ok(Command::Delete {
                key: &[b'k'; 16][..]
            })
        );
        assert_eq!(rounds, 3);
    }

    #[test]
    fn readme_key_errors() {
        let base = 0x10000u64;
        let mut mem = vec![b'k'; 8192];
        assert_eq!(
            drive(Profile::Readme, CMD_GET, &mem, base, base).0,
            Err(Errno::EINVAL),
            "no NUL in 512 bytes"
        );
        mem[511] = 0;
        assert!(
            matches!(drive(Profile::Readme, CMD_GET, &mem, base, base).0, Ok(Command::Get { key, .. }) if key.len() == 511)
        );
        mem[0] = 0;
        assert_eq!(
            drive(Profile::Readme, CMD_GET, &mem, base, base).0,
            Err(Errno::EINVAL),
            "empty key"
        );
        assert_eq!(
            drive(Profile::Readme, CMD_GET, &mem, base, 0).0,
            Err(Errno::EFAULT)
        );
        assert_eq!(
            drive(Profile::Readme, CMD_GET, &mem, base, base + 100_000).0,
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn v13_and_insert_layouts() {
        let base = 0x20000u64;
        let mut mem = vec![0u8; 4096];
        mem[0..2].copy_from_slice(&3u16.to_le_bytes());
        mem[2..5].copy_from_slice(b"abc");
        assert_eq!(
            drive(Profile::V13, CMD_GET, &mem, base, base).0,
            Ok(Command::Get {
                key: b"abc",
                key_span: 5
            })
        );
        mem[0..2].copy_from_slice(&513u16.to_le_bytes());
        assert_eq!(
            drive(Profile::V13, CMD_DELETE, &mem, base, base).0,
            Err(Errno::EINVAL)
        );
        let mut kv = vec![];
        kv.extend_from_slice(&2u16.to_le_bytes());
        kv.extend_from_slice(&5000u64.to_le_bytes());
        kv.extend_from_slice(b"kk");
        kv.extend_from_slice(&[7u8; 5000]);
        let (cmd, rounds) = drive(Profile::Readme, CMD_INSERT, &kv, base, base);
        assert_eq!(
            cmd,
            Ok(Command::Insert {
                key: b"kk",
                value: &[7u8; 5000][..]
            })
        );
        assert_eq!(rounds, 3, "value larger than the first granule");
        kv[2..10].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(
            drive(Profile::Readme, CMD_PARTIAL_UPDATE, &kv, base, base).0,
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn get_reply_asks_for_room_when_the_value_is_large() {
        assert_eq!(
            get_reply(Profile::Readme, 100, 4, 4096, 1),
            Ok(ValueReply {
                prefix: vec![],
                suffix: b"\0"
            })
        );
        let r = get_reply(Profile::Readme, 100, 4, 4096, 5000).unwrap_err();
        assert_eq!(r.input, vec![Iov { base: 100, len: 4 }]);
        assert_eq!(
            r.output,
            vec![Iov {
                base: 100,
                len: 5001
            }]
        );
        let v = get_reply(Profile::V13, 100, 5, 5008, 5000).unwrap();
        assert_eq!((u64_at(&v.prefix, 0), v.suffix), (5000, &b""[..]));
        let r = get_reply(Profile::V13, 100, 5, 4096, 5000).unwrap_err();
        assert_eq!(
            r.output,
            vec![Iov {
                base: 102,
                len: 5008
            }]
        );
        assert_eq!(
            safe_get_reply(10, 11),
            (-libc::ERANGE, 11u64.to_le_bytes(), false)
        );
        assert_eq!(safe_get_reply(11, 11), (0, 11u64.to_le_bytes(), true));
    }

    /// Found by fuzz/decode_ioctl: an `arg` near the top of the address space made
    /// `arg + offset` overflow (a panic with overflow checks, a wrapped area without).
    #[test]
    fn args_at_the_top_of_the_address_space_are_efault() {
        for cmd in [
            CMD_GET, CMD_DELETE, CMD_INSERT, IOC_GET, IOC_RANGE, IOC_STATS,
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
        assert!(get_reply(Profile::V13, arg, 5, 0, VALUE_MAX).is_err());
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
    }

    #[test]
    fn range_builder_limits_and_erange() {
        let header = [0u8; RANGE_HEADER_SIZE];
        let req = RangeRequest {
            start: b"",
            start_exclusive: false,
            end: b"",
            max_count: 2,
            capacity: 64,
            header: &header,
        };
        let mut b = RangeBuilder::new(&req);
        assert!(b.push(b"a", b"1"));
        assert!(b.push(b"b", b"2"));
        assert!(!b.push(b"c", b"3"), "max_count reached");
        let (r, out) = b.finish();
        assert_eq!(r, 0);
        assert_eq!(u32_at(&out, 12), 2);
        assert_ne!(u32_at(&out, 4) & RANGE_MORE, 0);
        assert_eq!(out.len(), RANGE_HEADER_SIZE + 2 * 16);
        let mut b = RangeBuilder::new(&req);
        assert!(!b.push(b"key", &[0u8; 100]));
        let (r, out) = b.finish();
        assert_eq!(r, -libc::ERANGE);
        assert_eq!(u64_at(&out, 24) as usize, range_entry_size(3, 100));
    }

    #[test]
    fn stats_round_trip_and_proc_text() {
        let s = StatsRecord {
            records: 3,
            disk_usage_bytes: 18,
            device_size_bytes: 1 << 30,
            uptime_ms: 9,
            ..Default::default()
        };
        assert_eq!(StatsRecord::decode(&s.encode()), Some(s.clone()));
        assert_eq!(
            s.proc_text(),
            "Total records: 3\nTotal disk usage: 18 bytes\nDevice size: 1073741824 bytes\n"
        );
    }

    #[test]
    fn stats_fields_cover_every_counter_of_the_header() {
        // A counter missing from `stats_fields!` would come back as zeros here.
        let ones = vec![0xffu8; STATS_STRUCT_SIZE];
        let enc = StatsRecord::decode(&ones).unwrap().encode();
        assert!(enc[..STATS_COUNTERS_SIZE].iter().all(|&b| b == 0xff));
        assert!(enc[STATS_COUNTERS_SIZE..].iter().all(|&b| b == 0));
        assert_eq!(
            StatsRecord::default().fields().len() * 8,
            STATS_COUNTERS_SIZE
        );
    }
}
