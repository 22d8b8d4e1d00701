//! The `/dev/hpkv` contract (`docs/ABI.md`): limits, command numbers, layouts, and the codec
//! of both directions, for the daemon (hpkvd) and its clients alike.
//!
//! Numbers and layouts come from `uapi/hpkv.h` through bindgen ([`uapi`]); offsets are taken
//! with `offset_of!` on the generated structs, and compile-time assertions below tie the
//! header's sizes to what the codec assumes, so this crate cannot drift from the header.
//!
//! | direction | encoder (client) | decoder (daemon) |
//! |---|---|---|
//! | `write()` | [`encode_write`] | [`parse_write`] |
//! | ioctl request | [`encode_kv`], [`encode_str_key`], [`encode_v13_key`], [`encode_safe_get`], [`encode_range`], [`PutBatch`] | [`decode_ioctl`] |
//! | ioctl reply | [`get_reply`], [`safe_get_reply`], [`RangeBuilder`], [`StatsRecord::encode`], [`InfoRecord::encode`] (daemon) | [`parse_readme_get`], [`parse_v13_get`], [`parse_safe_get`], [`parse_range`], [`StatsRecord::decode`], [`InfoRecord::decode`] (client) |
//! | `read()` listing | [`listing_line`] | |
//!
//! Every integer goes through one little-endian reader and writer, [`le`]. With the feature
//! `testkit`, `retry_sim` simulates the kernel's half of the retry protocol below, for tests.
//!
//! # The unrestricted-ioctl retry protocol
//! CUSE cannot know how much of the caller's memory an ioctl reads or writes, so the first
//! call of every ioctl reaches the daemon with no data. The daemon answers "retry", naming
//! the areas of the caller's memory to copy in (`input`) and out (`output`); the kernel
//! copies them and calls again. The decoder is stateless: each round looks at what it was
//! given and either asks for more ([`Decoded::Retry`]), or has a whole command
//! ([`Decoded::Ready`]), or fails ([`Decoded::Fail`]).
//!
//! Keys are read without overreaching: a string key is first fetched only up to the end of
//! its 4 KiB granule (readable whenever its first byte is), and further bytes only if the
//! NUL was not there yet, so a key near the end of mapped memory never fails with EFAULT.
//! A command whose key and value fit in a page takes two round trips; a larger value needs
//! a third (the daemon then knows its size).
//!
//! ```
//! use hpkv_abi::{decode_ioctl, encode_kv, Command, Decoded, Profile, CMD_INSERT};
//!
//! // The client's side: INSERT's argument.
//! let arg = encode_kv(b"key", b"value")?;
//! // The daemon's side: the first round has no data, the second has what it asked for.
//! let Decoded::Retry(retry) = decode_ioctl(Profile::Readme, CMD_INSERT, 0x1000, &[], 0) else {
//!     panic!("the first round asks for the argument");
//! };
//! assert_eq!(retry.input[0].base, 0x1000);
//! let Decoded::Ready(command) = decode_ioctl(Profile::Readme, CMD_INSERT, 0x1000, &arg, 0) else {
//!     panic!("the whole argument is there");
//! };
//! assert_eq!(command, Command::Insert { key: b"key", value: b"value" });
//! # Ok::<(), hpkv_abi::RequestError>(())
//! ```
#![warn(missing_docs)]

use std::fmt;
use std::mem::{offset_of, size_of};

pub mod le;
pub mod uapi;

mod batch;
mod error;
mod info;
mod reply;
mod request;
#[cfg(feature = "testkit")]
pub mod retry_sim;
mod stats;
mod write;

pub use batch::{
    batch_entry_size, encode_put_batch, BatchRecords, PutBatch, PUT_BATCH_BYTES_MAX,
    PUT_BATCH_RECORDS_MAX,
};
pub use error::{ParseProfileError, ReplyError, RequestError};
pub use info::{DurabilityMode, InfoRecord};
pub use reply::{
    get_reply, parse_range, parse_readme_get, parse_safe_get, parse_v13_get, range_data_len,
    range_entry_size, safe_get_reply, safe_get_value_len, RangeBuilder, RangePage, Record,
    SafeGetReply, ValueReply,
};
pub use request::{
    decode_ioctl, encode_kv, encode_range, encode_safe_get, encode_str_key, encode_v13_key,
    Command, Decoded, Iov, RangeQuery, RangeRequest, Retry,
};
pub use stats::{StatField, StatKind, StatsRecord, STATS_FIELDS};
pub use write::{encode_write, listing_line, parse_write, WriteRequest};

// ------------------------------------------------------------------------------ limits

/// Key length through the binary layouts (ioctl 4 and 5, v1.3 GET and DELETE, extensions).
pub const KEY_MAX: usize = uapi::HPKV_KEY_MAX as usize;
/// Key length through `write()` and the `readme` profile's string keys (512 with the NUL).
pub const STR_KEY_MAX: usize = uapi::HPKV_STR_KEY_MAX as usize;
/// Value length through the binary layouts.
pub const VALUE_MAX: usize = uapi::HPKV_VALUE_MAX as usize;
/// The part of a `write()` after the first colon.
pub const WRITE_VALUE_MAX: usize = uapi::HPKV_WRITE_VALUE_MAX as usize;
/// The largest `write()` accepted: one request, `key ':' value`.
pub const WRITE_MAX: usize = uapi::HPKV_WRITE_MAX as usize;

const _: () = assert!(
    STR_KEY_MAX + 1 == KEY_MAX,
    "a string key and its NUL fill KEY_MAX"
);
const _: () = assert!(
    WRITE_VALUE_MAX + 1 == VALUE_MAX,
    "write() cannot store VALUE_MAX"
);
const _: () = assert!(
    WRITE_MAX == KEY_MAX + 1 + VALUE_MAX,
    "the module's bound on n"
);
const _: () = assert!(KEY_MAX <= u16::MAX as usize, "key lengths travel as u16");
const _: () = assert!(
    VALUE_MAX <= u32::MAX as usize,
    "RANGE's value lengths are u32"
);

// ------------------------------------------------------------------------------ numbers

/// The module's GET (0); its layout depends on the [`Profile`].
pub const CMD_GET: u32 = uapi::HPKV_IOCTL_GET;
/// The module's DELETE (1); its layout depends on the [`Profile`].
pub const CMD_DELETE: u32 = uapi::HPKV_IOCTL_DELETE;
/// The module's PURGE (3): removes every record, `arg` ignored.
pub const CMD_PURGE: u32 = uapi::HPKV_IOCTL_PURGE;
/// The module's INSERT (4): upsert, `struct hpkv_kv` ([`encode_kv`]).
pub const CMD_INSERT: u32 = uapi::HPKV_IOCTL_INSERT;
/// The module's `PARTIAL_UPDATE` (5): append, same layout as INSERT.
pub const CMD_PARTIAL_UPDATE: u32 = uapi::HPKV_IOCTL_PARTIAL_UPDATE;
/// `HPKV_IOC_GET`: the bounded GET (`struct hpkv_get`, [`encode_safe_get`]).
pub const IOC_GET: u32 = uapi::HPKV_IOC_GET;
/// `HPKV_IOC_RANGE`: records in key order (`struct hpkv_range`, [`encode_range`]).
pub const IOC_RANGE: u32 = uapi::HPKV_IOC_RANGE;
/// `HPKV_IOC_STATS`: the store's numbers (`struct hpkv_stats`, [`StatsRecord`]).
pub const IOC_STATS: u32 = uapi::HPKV_IOC_STATS;
/// `HPKV_IOC_SYNC`: returns once every acknowledged write is on stable media.
pub const IOC_SYNC: u32 = uapi::HPKV_IOC_SYNC;
/// `HPKV_IOC_INFO`: who serves the device (`struct hpkv_info`, [`InfoRecord`]).
pub const IOC_INFO: u32 = uapi::HPKV_IOC_INFO;
/// `HPKV_IOC_PUT_BATCH`: many puts in one request ([`PutBatch`], [`encode_put_batch`]).
pub const IOC_PUT_BATCH: u32 = uapi::HPKV_IOC_PUT_BATCH;

/// RANGE input flag: skip the start key itself.
pub const RANGE_START_EXCLUSIVE: u32 = uapi::HPKV_RANGE_START_EXCLUSIVE;
/// RANGE output flag: records remain in the range.
pub const RANGE_MORE: u32 = uapi::HPKV_RANGE_MORE;
/// The most `data[]` room a RANGE request may offer.
pub const RANGE_CAPACITY_MAX: usize = uapi::HPKV_RANGE_CAPACITY_MAX as usize;
/// The part of `struct hpkv_range` the daemon writes back.
pub const RANGE_HEADER_SIZE: usize = uapi::HPKV_RANGE_HEADER_SIZE as usize;

/// `struct hpkv_get`: the value follows it in the caller's memory.
pub const GET_STRUCT_SIZE: usize = size_of::<uapi::hpkv_get>();
/// `struct hpkv_range`: the data follows it in the caller's memory.
pub const RANGE_STRUCT_SIZE: usize = size_of::<uapi::hpkv_range>();
/// `struct hpkv_range_entry`: key, value and padding follow each.
pub const RANGE_ENTRY_HEADER_SIZE: usize = size_of::<uapi::hpkv_range_entry>();
/// `struct hpkv_put_batch`: the entries follow it.
pub const PUT_BATCH_HEADER_SIZE: usize = size_of::<uapi::hpkv_put_batch>();
/// `struct hpkv_batch_entry`: key, value and padding follow each.
pub const BATCH_ENTRY_HEADER_SIZE: usize = size_of::<uapi::hpkv_batch_entry>();
/// A whole `HPKV_IOC_PUT_BATCH` argument, header and entries, at most.
pub const PUT_BATCH_MAX: usize = uapi::HPKV_PUT_BATCH_MAX as usize;
/// `struct hpkv_stats`.
pub const STATS_STRUCT_SIZE: usize = size_of::<uapi::hpkv_stats>();
/// `struct hpkv_info`.
pub const INFO_STRUCT_SIZE: usize = size_of::<uapi::hpkv_info>();
/// Bytes of `struct hpkv_stats` that hold counters; `reserved` follows (zeros).
pub const STATS_COUNTERS_SIZE: usize = offset_of!(uapi::hpkv_stats, reserved);
/// `struct hpkv_kv`: key then value follow it.
pub const KV_HEADER_SIZE: usize = size_of::<uapi::hpkv_kv>();
/// `struct hpkv_v13_key`: the key follows it.
pub const V13_KEY_HEADER_SIZE: usize = size_of::<uapi::hpkv_v13_key>();
/// v1.3 GET output: where the `u64` value length is written, from `arg`.
pub const V13_VALUE_LEN_OFFSET: usize = uapi::HPKV_V13_VALUE_LEN_OFFSET as usize;
/// v1.3 GET output: where the value is written, from `arg`.
pub const V13_VALUE_OFFSET: usize = uapi::HPKV_V13_VALUE_OFFSET as usize;

/// `abi_profile` of `struct hpkv_stats` for [`Profile::Readme`].
pub const ABI_README: u64 = uapi::HPKV_ABI_README as u64;
/// `abi_profile` of `struct hpkv_stats` for [`Profile::V13`].
pub const ABI_V13: u64 = uapi::HPKV_ABI_V13 as u64;

// The header's layouts, as the codec assumes them (the generated bindings check the
// offsets bindgen saw; these check what the code below relies on).
const _: () = assert!(KV_HEADER_SIZE == 10 && V13_KEY_HEADER_SIZE == 2);
const _: () = assert!(offset_of!(uapi::hpkv_kv, value_len) == 2, "packed");
const _: () = assert!(V13_VALUE_OFFSET == V13_VALUE_LEN_OFFSET + size_of::<u64>());
const _: () = assert!(V13_VALUE_LEN_OFFSET == V13_KEY_HEADER_SIZE);
const _: () = assert!(RANGE_HEADER_SIZE == offset_of!(uapi::hpkv_range, start));
const _: () = assert!(GET_STRUCT_SIZE == offset_of!(uapi::hpkv_get, value));
const _: () = assert!(RANGE_STRUCT_SIZE == offset_of!(uapi::hpkv_range, data));
const _: () =
    assert!(offset_of!(uapi::hpkv_get, value) - offset_of!(uapi::hpkv_get, key) == KEY_MAX);
const _: () =
    assert!(offset_of!(uapi::hpkv_range, end) - offset_of!(uapi::hpkv_range, start) == KEY_MAX);
const _: () = assert!(
    RANGE_ENTRY_HEADER_SIZE == 8,
    "entries are padded to 8 bytes"
);
const _: () = assert!(STATS_STRUCT_SIZE == 256, "struct hpkv_stats keeps its size");
const _: () = assert!(STATS_COUNTERS_SIZE % 8 == 0);
// One largest entry fits in a RANGE reply; the whole reply fits CUSE's 32-page limit.
const _: () = assert!(RANGE_ENTRY_HEADER_SIZE + KEY_MAX + VALUE_MAX <= RANGE_CAPACITY_MAX);
const _: () = assert!(RANGE_HEADER_SIZE + RANGE_CAPACITY_MAX <= 32 * 4096);
const _: () = assert!(GET_STRUCT_SIZE + VALUE_MAX <= 32 * 4096);
// The extensions are _IOC-encoded with type 'H' and the size of their struct.
const fn ioc_type(cmd: u32) -> u32 {
    (cmd >> 8) & 0xff
}
const fn ioc_size(cmd: u32) -> usize {
    ((cmd >> 16) & 0x3fff) as usize
}
const _: () = assert!(uapi::HPKV_IOC_MAGIC == b'H');
const _: () = assert!(ioc_type(IOC_GET) == uapi::HPKV_IOC_MAGIC as u32);
const _: () = assert!(ioc_type(IOC_RANGE) == ioc_type(IOC_GET));
const _: () = assert!(ioc_type(IOC_STATS) == ioc_type(IOC_GET));
const _: () = assert!(ioc_type(IOC_SYNC) == ioc_type(IOC_GET));
const _: () = assert!(ioc_size(IOC_GET) == GET_STRUCT_SIZE);
const _: () = assert!(ioc_size(IOC_RANGE) == RANGE_STRUCT_SIZE);
const _: () = assert!(ioc_size(IOC_STATS) == STATS_STRUCT_SIZE);
const _: () = assert!(ioc_size(IOC_SYNC) == 0, "SYNC carries no data");
const _: () = assert!(ioc_type(IOC_INFO) == ioc_type(IOC_GET));
const _: () = assert!(ioc_size(IOC_INFO) == INFO_STRUCT_SIZE);
const _: () = assert!(INFO_STRUCT_SIZE == 4536, "struct hpkv_info keeps its size");
const _: () = assert!(INFO_STRUCT_SIZE <= 32 * 4096);
const _: () = assert!(ioc_type(IOC_PUT_BATCH) == ioc_type(IOC_GET));
const _: () = assert!(ioc_size(IOC_PUT_BATCH) == PUT_BATCH_HEADER_SIZE);
const _: () = assert!(PUT_BATCH_HEADER_SIZE == 16 && BATCH_ENTRY_HEADER_SIZE == 8);
// RANGE's entries and PUT_BATCH's share one layout (`entry_size`, `append_entry`).
const _: () = assert!(RANGE_ENTRY_HEADER_SIZE == BATCH_ENTRY_HEADER_SIZE);
const _: () = assert!(
    offset_of!(uapi::hpkv_range_entry, key_len) == offset_of!(uapi::hpkv_batch_entry, key_len)
);
const _: () = assert!(
    offset_of!(uapi::hpkv_range_entry, value_len) == offset_of!(uapi::hpkv_batch_entry, value_len)
);

/// Bytes one entry of RANGE or `PUT_BATCH` takes: its header, key and value, padded to 8.
const fn entry_size(key_len: usize, value_len: usize) -> usize {
    (BATCH_ENTRY_HEADER_SIZE + key_len + value_len).next_multiple_of(8)
}

/// Appends one entry of the layout RANGE and `PUT_BATCH` share to `buf`: a `u16` key length, a `u32`
/// value length, the key, the value, zeros to [`entry_size`]. The caller checked the lengths.
fn append_entry(buf: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let key_len = u16::try_from(key.len()).expect("a key within KEY_MAX");
    let value_len = u32::try_from(value.len()).expect("a value within VALUE_MAX");
    let at = buf.len();
    buf.resize(at + entry_size(key.len(), value.len()), 0);
    let entry = &mut buf[at..];
    le::set_u16(entry, offset_of!(uapi::hpkv_batch_entry, key_len), key_len);
    le::set_u32(
        entry,
        offset_of!(uapi::hpkv_batch_entry, value_len),
        value_len,
    );
    let (key_at, value_at) = (BATCH_ENTRY_HEADER_SIZE, BATCH_ENTRY_HEADER_SIZE + key.len());
    entry[key_at..value_at].copy_from_slice(key);
    entry[value_at..value_at + value.len()].copy_from_slice(value);
}
// A whole batch is one ioctl input: CUSE's 32-page limit.
const _: () = assert!(PUT_BATCH_MAX <= 32 * 4096);
// The module's commands are plain numbers below every _IOC-encoded one.
const _: () = assert!(CMD_PARTIAL_UPDATE < 6 && IOC_SYNC > 0xff);

// ------------------------------------------------------------------------------ profiles

/// Which layout GET and DELETE use (`hpkvd --abi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum Profile {
    /// The seed README's: NUL-terminated string keys, GET writes the value and a NUL.
    #[default]
    Readme,
    /// The module's last release: `[u16 key_len][key]`, GET writes `[u64 len][value]` at +2.
    V13,
}

impl Profile {
    /// The profile's number in `struct hpkv_stats` (`abi_profile`).
    pub fn number(self) -> u64 {
        match self {
            Profile::Readme => ABI_README,
            Profile::V13 => ABI_V13,
        }
    }

    /// The profile a `struct hpkv_stats` names, if it is one this crate knows.
    pub fn from_number(number: u64) -> Option<Profile> {
        match number {
            ABI_README => Some(Profile::Readme),
            ABI_V13 => Some(Profile::V13),
            _ => None,
        }
    }

    /// The profile's name, as `hpkvd --abi` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Readme => "readme",
            Profile::V13 => "v1.3",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = ParseProfileError;
    fn from_str(s: &str) -> Result<Profile, ParseProfileError> {
        match s {
            "readme" => Ok(Profile::Readme),
            "v1.3" | "v13" => Ok(Profile::V13),
            _ => Err(ParseProfileError::new(s)),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_by_name_and_number() {
        for p in [Profile::Readme, Profile::V13] {
            assert_eq!(p.name().parse(), Ok(p));
            assert_eq!(Profile::from_number(p.number()), Some(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(Profile::from_number(2), None);
        let e = "v2".parse::<Profile>().unwrap_err();
        assert_eq!(e.name(), "v2");
        assert_eq!(
            e.to_string(),
            "unknown ABI profile \"v2\": use readme or v1.3"
        );
    }
}
