//! A safe client for `/dev/hpkv`: the module's commands and hpkv's extensions, with typed
//! errors and no `unsafe` (the ioctls themselves are the small wrappers in [`crate::ffi::sys`]).
//!
//! ```no_run
//! use hpkv_client::Client;
//!
//! # fn main() -> Result<(), hpkv_client::Error> {
//! let hpkv = Client::open_default()?;
//! hpkv.put(b"user:1", b"alice")?;
//! hpkv.append(b"user:1", b" smith")?;
//! assert_eq!(hpkv.get(b"user:1")?.as_deref(), Some(&b"alice smith"[..]));
//! for record in hpkv.scan().from("user:").to("user;") {
//!     let (key, value) = record?;
//!     println!("{}: {} bytes", key.escape_ascii(), value.len());
//! }
//! assert!(hpkv.delete(b"user:1")?);
//! hpkv.sync()?;
//! # Ok(())
//! # }
//! ```
//!
//! Which layout DELETE takes depends on the profile the daemon serves (`hpkvd --abi`); the
//! client learns it once, at open, from the `abi_profile` field of HPKV_IOC_STATS. Reads use
//! the bounded extensions only (HPKV_IOC_GET and HPKV_IOC_RANGE), never the module's GET,
//! which writes as many bytes as the value holds whatever the caller's buffer.
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

use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::mem::offset_of;
use std::ops::Bound;
use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;

use hpkv_abi::le::{u16_at, u32_at, u64_at};
use hpkv_abi::{self as abi, uapi, Profile, StatsRecord};

mod ffi;
use ffi as sys;

/// Where hpkvd serves its device unless told otherwise (`hpkvd --name`).
pub const DEFAULT_DEVICE: &str = "/dev/hpkv";
/// The value room [`Client::get`] offers first; a longer value costs one more call.
pub const GET_INITIAL_CAPACITY: usize = 4096;
/// The data room a [`Range`] offers first; it grows (up to
/// [`abi::RANGE_CAPACITY_MAX`]) when a record does not fit.
pub const RANGE_INITIAL_CAPACITY: usize = 16 * 1024;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by the errno the device answered (see [`Error::errno`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// ENOENT: no such key.
    NotFound,
    /// EINVAL: the request is outside the ABI's limits (a key of 0 or over 512 bytes, an
    /// empty value, ...), checked here or by the daemon. The text says which.
    InvalidArgument(String),
    /// EMSGSIZE: an append would take the value past [`abi::VALUE_MAX`] bytes.
    TooLarge,
    /// ENOSPC: the store's device is full.
    NoSpace,
    /// ENOTTY: the device does not know the command: it is not hpkvd's.
    Unsupported,
    /// EPROTO: the device answered something the ABI does not allow.
    Protocol(String),
    /// Anything else: opening the device, EIO from a failing store, EACCES, ...
    Io(io::Error),
}

impl Error {
    /// The errno this error stands for (EIO for an I/O error without one).
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound => libc::ENOENT,
            Error::InvalidArgument(_) => libc::EINVAL,
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
            Errno::EINVAL => {
                Error::InvalidArgument("the device refused the request (EINVAL)".into())
            }
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
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::TooLarge => write!(
                f,
                "too large: the value would pass {} bytes",
                abi::VALUE_MAX
            ),
            Error::NoSpace => f.write_str("no space left on the store's device"),
            Error::Unsupported => f.write_str(
                "the device does not know the command (ENOTTY): is it hpkvd's /dev/hpkv?",
            ),
            Error::Protocol(what) => write!(f, "unexpected answer from the device: {what}"),
            Error::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
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

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            e => io::Error::new(io::Error::from_raw_os_error(e.errno()).kind(), e),
        }
    }
}

/// One ioctl, its buffer laid out as the matching `ffi` wrapper takes it.
pub(crate) enum Call<'a> {
    /// INSERT or PARTIAL_UPDATE.
    Kv(u32, &'a mut [u8]),
    DeleteStr(&'a mut [u8]),
    DeleteV13(&'a mut [u8]),
    Purge,
    SafeGet(&'a mut [u8]),
    Range(&'a mut [u8]),
    Stats(&'a mut [u8; abi::STATS_STRUCT_SIZE]),
    Sync,
}

/// Where calls go: the device, or in tests a simulation of the kernel and hpkvd.
pub(crate) trait Transport: Send + Sync {
    fn call(&self, call: Call<'_>) -> Result<(), Errno>;
}

struct Device(File);

impl Transport for Device {
    fn call(&self, call: Call<'_>) -> Result<(), Errno> {
        let fd = self.0.as_fd();
        match call {
            Call::Kv(cmd, buf) => sys::hpkv_kv(fd, cmd, buf),
            Call::DeleteStr(buf) => sys::hpkv_delete_str(fd, buf),
            Call::DeleteV13(buf) => sys::hpkv_delete_v13(fd, buf),
            Call::Purge => sys::hpkv_purge(fd),
            Call::SafeGet(buf) => sys::hpkv_safe_get(fd, buf),
            Call::Range(buf) => sys::hpkv_range(fd, buf),
            Call::Stats(buf) => sys::hpkv_stats(fd, buf),
            Call::Sync => sys::hpkv_sync(fd),
        }
    }
}

/// An open `/dev/hpkv`. Every method is one or a few ioctls; a `Client` may be shared
/// between threads (`&self` everywhere), the daemon serves calls concurrently.
pub struct Client {
    io: Box<dyn Transport>,
    profile: Profile,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

fn invalid(why: impl Into<String>) -> Error {
    Error::InvalidArgument(why.into())
}

fn check_key(key: &[u8]) -> Result<()> {
    if !(1..=abi::KEY_MAX).contains(&key.len()) {
        return Err(invalid(format!(
            "the key is {} bytes long; keys are 1 to {} bytes",
            key.len(),
            abi::KEY_MAX
        )));
    }
    Ok(())
}

fn check_value(what: &str, value: &[u8]) -> Result<()> {
    if !(1..=abi::VALUE_MAX).contains(&value.len()) {
        return Err(invalid(format!(
            "the {what} is {} bytes long; it must be 1 to {} bytes",
            value.len(),
            abi::VALUE_MAX
        )));
    }
    Ok(())
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// `[u16 key_len][u64 value_len][key][value]`, the layout of INSERT and PARTIAL_UPDATE.
pub(crate) fn encode_kv(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(10 + key.len() + value.len());
    buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
    buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    buf
}

/// A `struct hpkv_get` for `key` followed by `capacity` bytes of room.
pub(crate) fn encode_safe_get(key: &[u8], capacity: usize) -> Vec<u8> {
    let mut buf = vec![0u8; abi::GET_STRUCT_SIZE + capacity];
    put_u16(
        &mut buf,
        offset_of!(uapi::hpkv_get, key_len),
        key.len() as u16,
    );
    put_u64(
        &mut buf,
        offset_of!(uapi::hpkv_get, capacity),
        capacity as u64,
    );
    let at = offset_of!(uapi::hpkv_get, key);
    buf[at..at + key.len()].copy_from_slice(key);
    buf
}

/// The `value_len` field of a `struct hpkv_get` the device answered.
fn safe_get_len(buf: &[u8]) -> u64 {
    u64_at(buf, offset_of!(uapi::hpkv_get, value_len))
}

impl Client {
    /// Opens the device at `path` (read-write) and learns the profile it serves.
    ///
    /// ```no_run
    /// let hpkv = hpkv_client::Client::open("/dev/hpkv-test")?;
    /// println!("serving the {} profile", hpkv.profile());
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Client> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Client::from_file(file)
    }

    /// Opens [`DEFAULT_DEVICE`].
    pub fn open_default() -> Result<Client> {
        Client::open(DEFAULT_DEVICE)
    }

    /// A client over an already open device; asks it for its profile (HPKV_IOC_STATS).
    /// [`Error::Unsupported`] when the file is not hpkvd's device.
    pub fn from_file(file: File) -> Result<Client> {
        Client::from_transport(Box::new(Device(file)))
    }

    /// A client over an already open device that serves `profile`, without asking it.
    /// Only for a descriptor of hpkvd's device: the module's commands are plain numbers
    /// that another driver could read differently.
    pub fn with_profile(file: File, profile: Profile) -> Client {
        Client {
            io: Box::new(Device(file)),
            profile,
        }
    }

    pub(crate) fn from_transport(io: Box<dyn Transport>) -> Result<Client> {
        let mut client = Client {
            io,
            profile: Profile::Readme,
        };
        client.profile = match client.stats()?.abi_profile {
            abi::ABI_README => Profile::Readme,
            abi::ABI_V13 => Profile::V13,
            n => return Err(Error::Protocol(format!("unknown ABI profile {n}"))),
        };
        Ok(client)
    }

    /// The profile the daemon serves: the layout of DELETE (and of the module's GET).
    pub fn profile(&self) -> Profile {
        self.profile
    }

    fn call(&self, call: Call<'_>) -> Result<()> {
        self.io.call(call).map_err(Error::from_errno)
    }

    /// The value of `key`, or `None` when there is none.
    ///
    /// Uses the bounded HPKV_IOC_GET: a first call offers [`GET_INITIAL_CAPACITY`] bytes;
    /// a longer value is answered with its length, and a second call offers exactly that.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// match hpkv.get(b"config")? {
    ///     Some(value) => println!("{} bytes", value.len()),
    ///     None => println!("no such key"),
    /// }
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        let mut capacity = GET_INITIAL_CAPACITY;
        // A concurrent append can lengthen the value between two calls: the third call
        // offers the largest value there can be.
        for attempt in 0..3 {
            let mut buf = encode_safe_get(key, capacity);
            match self.io.call(Call::SafeGet(&mut buf)) {
                Ok(()) => {
                    let len = safe_get_len(&buf);
                    if len > capacity as u64 {
                        return Err(Error::Protocol(format!(
                            "HPKV_IOC_GET says {len} bytes in a {capacity}-byte buffer"
                        )));
                    }
                    let at = abi::GET_STRUCT_SIZE;
                    buf.truncate(at + len as usize);
                    buf.drain(..at);
                    return Ok(Some(buf));
                }
                Err(Errno::ENOENT) => return Ok(None),
                Err(Errno::ERANGE) => {
                    let needed = safe_get_len(&buf);
                    if needed <= capacity as u64 || needed > abi::VALUE_MAX as u64 {
                        return Err(Error::Protocol(format!(
                            "HPKV_IOC_GET answered ERANGE for a {needed}-byte value with \
                             {capacity} bytes of room"
                        )));
                    }
                    capacity = if attempt == 0 {
                        needed as usize
                    } else {
                        abi::VALUE_MAX
                    };
                }
                Err(e) => return Err(Error::from_errno(e)),
            }
        }
        Err(Error::Protocol(
            "HPKV_IOC_GET answered ERANGE with room for the largest value".into(),
        ))
    }

    /// Stores `value` under `key` (INSERT, command 4), replacing any value it had.
    /// Keys are 1 to 512 bytes, values 1 to 102400 bytes, both binary.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// hpkv.put(b"blob", &[0u8, 1, 2, b':', b'\n'])?;
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.kv(abi::CMD_INSERT, key, value, "value")
    }

    /// Appends `suffix` to the value of `key` (PARTIAL_UPDATE, command 5); a missing key is
    /// created with `suffix`. [`Error::TooLarge`] when the result would pass 102400 bytes.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// hpkv.append(b"log", b"one more line\n")?;
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    pub fn append(&self, key: &[u8], suffix: &[u8]) -> Result<()> {
        self.kv(abi::CMD_PARTIAL_UPDATE, key, suffix, "suffix")
    }

    fn kv(&self, cmd: u32, key: &[u8], value: &[u8], what: &str) -> Result<()> {
        check_key(key)?;
        check_value(what, value)?;
        let mut buf = encode_kv(key, value);
        self.call(Call::Kv(cmd, &mut buf))
    }

    /// Deletes `key`: `true` if it was there, `false` if there was no such key.
    ///
    /// In the `readme` profile DELETE takes a NUL-terminated string: a key that holds a NUL
    /// byte or is longer than 511 bytes cannot be named that way, and gives
    /// [`Error::InvalidArgument`] without reaching the device.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// if !hpkv.delete(b"session:42")? {
    ///     eprintln!("already gone");
    /// }
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        check_key(key)?;
        let result = match self.profile {
            Profile::Readme => {
                if key.contains(&0) {
                    return Err(invalid(
                        "the daemon serves the readme profile, whose DELETE takes a \
                         NUL-terminated key: a key holding a NUL byte cannot be deleted",
                    ));
                }
                if key.len() > abi::STR_KEY_MAX {
                    return Err(invalid(format!(
                        "the daemon serves the readme profile, whose DELETE takes a \
                         NUL-terminated key of at most {} bytes: this key is {} bytes",
                        abi::STR_KEY_MAX,
                        key.len()
                    )));
                }
                let mut buf = Vec::with_capacity(key.len() + 1);
                buf.extend_from_slice(key);
                buf.push(0);
                self.io.call(Call::DeleteStr(&mut buf))
            }
            Profile::V13 => {
                let mut buf = Vec::with_capacity(key.len() + 2);
                buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
                buf.extend_from_slice(key);
                self.io.call(Call::DeleteV13(&mut buf))
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(Error::from_errno(e)),
        }
    }

    /// The records with keys between `start` and `end`, in bytewise key order (a shorter
    /// key first on a common prefix), fetched a page at a time with HPKV_IOC_RANGE. The
    /// iterator continues across requests from the last key it saw, so records written
    /// meanwhile may or may not appear, but none appears twice or out of order.
    ///
    /// Bounds are at most 512 bytes; an unbounded start is the first key, an unbounded end
    /// the last. Tune with [`Range::max_count`] (records per request) and [`Range::limit`]
    /// (records in all); [`Client::scan`] is the same with builder methods for the bounds.
    ///
    /// ```no_run
    /// use std::ops::Bound::{Excluded, Included, Unbounded};
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// // Every key from "a" (included) to "m" (excluded).
    /// for record in hpkv.range(Included(b"a".as_slice()), Excluded(b"m".as_slice())) {
    ///     let (key, value) = record?;
    ///     println!("{}:{}", key.escape_ascii(), value.escape_ascii());
    /// }
    /// // The first 10 records, 5 per request.
    /// let first: Vec<_> = hpkv
    ///     .range(Unbounded, Unbounded)
    ///     .max_count(5)
    ///     .limit(10)
    ///     .collect::<Result<_, _>>()?;
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    pub fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Range<'_> {
        Range {
            client: self,
            start: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
            max_count: 0,
            limit: None,
            capacity: RANGE_INITIAL_CAPACITY,
            yielded: 0,
            page: VecDeque::new(),
            done: false,
        }
    }

    /// Every record in key order; narrow it with [`Range::from`], [`Range::after`],
    /// [`Range::to`] and [`Range::through`] before the first `next()`.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// // The keys with prefix "user:" ("user;" is the first key past them).
    /// for record in hpkv.scan().from("user:").to("user;").max_count(100) {
    ///     let (key, _value) = record?;
    ///     println!("{}", key.escape_ascii());
    /// }
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    pub fn scan(&self) -> Range<'_> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }

    /// The store's numbers (HPKV_IOC_STATS); [`StatsRecord::proc_text`] gives the module's
    /// three `/proc/hpkv_stats` lines.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// print!("{}", hpkv.stats()?.proc_text());
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    pub fn stats(&self) -> Result<StatsRecord> {
        let mut buf = [0u8; abi::STATS_STRUCT_SIZE];
        self.call(Call::Stats(&mut buf))?;
        Ok(StatsRecord::decode(&buf).expect("a whole struct hpkv_stats"))
    }

    /// Returns once every write acknowledged before the call is on stable media
    /// (HPKV_IOC_SYNC).
    pub fn sync(&self) -> Result<()> {
        self.call(Call::Sync)
    }

    /// Removes every record (PURGE, command 3).
    pub fn purge(&self) -> Result<()> {
        self.call(Call::Purge)
    }
}

/// One page of a RANGE reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RangePage {
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
    pub more: bool,
}

/// A `struct hpkv_range` asking for the records after `start`, before `end`.
pub(crate) fn encode_range(
    start: &[u8],
    start_exclusive: bool,
    end: &[u8],
    max_count: u32,
    capacity: usize,
) -> Vec<u8> {
    let mut buf = vec![0u8; abi::RANGE_STRUCT_SIZE + capacity];
    put_u16(
        &mut buf,
        offset_of!(uapi::hpkv_range, start_len),
        start.len() as u16,
    );
    put_u16(
        &mut buf,
        offset_of!(uapi::hpkv_range, end_len),
        end.len() as u16,
    );
    let flags = if start_exclusive {
        abi::RANGE_START_EXCLUSIVE
    } else {
        0
    };
    put_u32(&mut buf, offset_of!(uapi::hpkv_range, flags), flags);
    put_u32(&mut buf, offset_of!(uapi::hpkv_range, max_count), max_count);
    put_u64(
        &mut buf,
        offset_of!(uapi::hpkv_range, capacity),
        capacity as u64,
    );
    let at = offset_of!(uapi::hpkv_range, start);
    buf[at..at + start.len()].copy_from_slice(start);
    let at = offset_of!(uapi::hpkv_range, end);
    buf[at..at + end.len()].copy_from_slice(end);
    buf
}

/// The `data_len` field of a RANGE reply (on ERANGE: the bytes the first record needs).
fn range_data_len(buf: &[u8]) -> u64 {
    u64_at(buf, offset_of!(uapi::hpkv_range, data_len))
}

/// Decodes a RANGE reply in `buf` (the struct and its `capacity` bytes of data), checking
/// every length against the ABI.
pub(crate) fn decode_range(buf: &[u8], capacity: usize) -> Result<RangePage> {
    let bad = |what: String| Err(Error::Protocol(format!("HPKV_IOC_RANGE: {what}")));
    let count = u32_at(buf, offset_of!(uapi::hpkv_range, count)) as usize;
    let flags = u32_at(buf, offset_of!(uapi::hpkv_range, flags));
    let data_len = range_data_len(buf);
    if data_len > capacity as u64 || buf.len() < abi::RANGE_STRUCT_SIZE + data_len as usize {
        return bad(format!(
            "{data_len} bytes of data in {capacity} bytes of room"
        ));
    }
    let data = &buf[abi::RANGE_STRUCT_SIZE..abi::RANGE_STRUCT_SIZE + data_len as usize];
    let mut records = Vec::with_capacity(count.min(data.len() / abi::RANGE_ENTRY_HEADER_SIZE));
    let mut at = 0usize;
    for i in 0..count {
        if data.len() - at < abi::RANGE_ENTRY_HEADER_SIZE {
            return bad(format!(
                "entry {i} of {count} past the {data_len} bytes of data"
            ));
        }
        let key_len = u16_at(data, at) as usize;
        let value_len = u32_at(data, at + 4) as usize;
        if !(1..=abi::KEY_MAX).contains(&key_len) || !(1..=abi::VALUE_MAX).contains(&value_len) {
            return bad(format!(
                "entry {i} with a {key_len}-byte key, {value_len}-byte value"
            ));
        }
        let size = abi::range_entry_size(key_len, value_len);
        if data.len() - at < size {
            return bad(format!(
                "entry {i} of {count} past the {data_len} bytes of data"
            ));
        }
        let key_at = at + abi::RANGE_ENTRY_HEADER_SIZE;
        let value_at = key_at + key_len;
        records.push((
            data[key_at..value_at].to_vec(),
            data[value_at..value_at + value_len].to_vec(),
        ));
        at += size;
    }
    if at != data.len() {
        return bad(format!(
            "{count} entries take {at} bytes, data_len says {data_len}"
        ));
    }
    Ok(RangePage {
        records,
        more: flags & abi::RANGE_MORE != 0,
    })
}

/// The records of [`Client::range`], in key order; fetches a page whenever it runs out.
/// After an error it yields nothing more.
pub struct Range<'c> {
    client: &'c Client,
    /// The next request's start: after the last key seen.
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    max_count: u32,
    limit: Option<usize>,
    capacity: usize,
    yielded: usize,
    page: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl fmt::Debug for Range<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Range")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("max_count", &self.max_count)
            .field("limit", &self.limit)
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}

impl Range<'_> {
    /// Starts at `key`, included.
    pub fn from(mut self, key: impl AsRef<[u8]>) -> Self {
        self.start = Bound::Included(key.as_ref().to_vec());
        self
    }

    /// Starts after `key`.
    pub fn after(mut self, key: impl AsRef<[u8]>) -> Self {
        self.start = Bound::Excluded(key.as_ref().to_vec());
        self
    }

    /// Ends before `key` (excluded).
    pub fn to(mut self, key: impl AsRef<[u8]>) -> Self {
        self.end = Bound::Excluded(key.as_ref().to_vec());
        self
    }

    /// Ends at `key`, included.
    pub fn through(mut self, key: impl AsRef<[u8]>) -> Self {
        self.end = Bound::Included(key.as_ref().to_vec());
        self
    }

    /// At most `n` records per request (0, the default: as many as fit the buffer).
    pub fn max_count(mut self, n: u32) -> Self {
        self.max_count = n;
        self
    }

    /// At most `n` records in all.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// The data room of the first request, in bytes (default [`RANGE_INITIAL_CAPACITY`];
    /// at most [`abi::RANGE_CAPACITY_MAX`]). It grows by itself when one record needs more.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes.clamp(abi::RANGE_ENTRY_HEADER_SIZE + 8, abi::RANGE_CAPACITY_MAX);
        self
    }

    fn remaining(&self) -> Option<usize> {
        self.limit.map(|l| l.saturating_sub(self.yielded))
    }

    /// Fetches the next page into `self.page`, or sets `done`.
    fn fetch(&mut self) -> Result<()> {
        let bound_key = |b: &Bound<Vec<u8>>| match b {
            Bound::Included(k) | Bound::Excluded(k) if k.len() > abi::KEY_MAX => {
                Err(invalid(format!(
                    "a range bound of {} bytes; keys are at most {}",
                    k.len(),
                    abi::KEY_MAX
                )))
            }
            _ => Ok(()),
        };
        bound_key(&self.start)?;
        bound_key(&self.end)?;
        let (start, start_exclusive): (&[u8], bool) = match &self.start {
            Bound::Unbounded => (b"", false),
            Bound::Included(k) => (k, false),
            Bound::Excluded(k) => (k, true),
        };
        // The ABI's end is exclusive: an inclusive end is its successor, the key with a NUL
        // appended (when there is room for one; else no end, and the check below stops).
        let end_successor;
        let end: &[u8] = match &self.end {
            Bound::Unbounded => b"",
            Bound::Excluded(k) if k.is_empty() => {
                self.done = true; // nothing is before the empty key
                return Ok(());
            }
            Bound::Excluded(k) => k,
            Bound::Included(k) if k.len() < abi::KEY_MAX => {
                end_successor = [&k[..], &[0]].concat();
                &end_successor
            }
            Bound::Included(_) => b"",
        };
        let max_count = match self.remaining() {
            Some(r) => {
                let r = u32::try_from(r).unwrap_or(u32::MAX);
                if self.max_count == 0 {
                    r
                } else {
                    self.max_count.min(r)
                }
            }
            None => self.max_count,
        };
        let page = loop {
            let mut buf = encode_range(start, start_exclusive, end, max_count, self.capacity);
            match self.client.io.call(Call::Range(&mut buf)) {
                Ok(()) => break decode_range(&buf, self.capacity)?,
                Err(Errno::ERANGE) => {
                    let needed = range_data_len(&buf);
                    if needed <= self.capacity as u64 || needed > abi::RANGE_CAPACITY_MAX as u64 {
                        return Err(Error::Protocol(format!(
                            "HPKV_IOC_RANGE answered ERANGE for a {needed}-byte record with \
                             {} bytes of room",
                            self.capacity
                        )));
                    }
                    self.capacity = (needed as usize)
                        .max(self.capacity * 2)
                        .min(abi::RANGE_CAPACITY_MAX);
                }
                Err(e) => return Err(Error::from_errno(e)),
            }
        };
        if page.records.is_empty() {
            if page.more {
                return Err(Error::Protocol(
                    "HPKV_IOC_RANGE returned no record but says more remain".into(),
                ));
            }
            self.done = true;
            return Ok(());
        }
        // The page must continue the order: every key after the start and the previous key.
        let mut previous: Option<&[u8]> = None;
        for (key, _) in &page.records {
            let after_start = match &self.start {
                Bound::Unbounded => true,
                Bound::Included(s) => key >= s,
                Bound::Excluded(s) => key > s,
            };
            let ordered = previous.is_none_or(|p| key.as_slice() > p);
            let before_end = match &self.end {
                Bound::Excluded(e) => key < e,
                _ => true,
            };
            if !(after_start && ordered && before_end) {
                return Err(Error::Protocol(format!(
                    "HPKV_IOC_RANGE returned key {:?} out of order",
                    key.escape_ascii().to_string()
                )));
            }
            previous = Some(key);
        }
        self.done = !page.more;
        let last = page.records.last().expect("not empty").0.clone();
        self.start = Bound::Excluded(last);
        self.page.extend(page.records);
        if let Bound::Included(end) = &self.end {
            // Only a 512-byte inclusive end lets keys past it come back.
            if let Some(past) = self.page.iter().position(|(k, _)| k > end) {
                self.page.truncate(past);
                self.done = true;
            }
        }
        Ok(())
    }
}

impl Iterator for Range<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.remaining() == Some(0) {
                return None;
            }
            if let Some(record) = self.page.pop_front() {
                self.yielded += 1;
                return Some(Ok(record));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;

    use super::*;
    use hpkv_abi::{Command, Decoded, Iov, RangeBuilder};

    /// Where the simulated caller's buffer sits: page aligned, like a fresh allocation.
    const BASE: u64 = 0x7f12_3450_0000;
    const PAGE: u64 = 4096;

    /// The kernel's half of a CUSE unrestricted ioctl and hpkvd's decoders and reply
    /// builders (`crate::abi`) over an in-memory store, mirroring `crate::device`.
    ///
    /// The caller's memory is the call's buffer, followed by readable bytes (0xA5) to the end
    /// of its last page; beyond that the kernel answers EFAULT. A write anywhere but the
    /// buffer panics: it would be a soundness hole in the `ffi::sys` wrappers.
    struct Sim {
        profile: Profile,
        store: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
        /// The command of every call, in order.
        calls: Mutex<Vec<u32>>,
        /// Appended to the value of the key of every HPKV_IOC_GET before it is answered: a
        /// concurrent writer.
        grow_on_get: usize,
        /// The `abi_profile` STATS reports (`None`: the profile's number).
        reported_profile: Option<u64>,
    }

    impl Sim {
        fn new(profile: Profile) -> Arc<Sim> {
            Arc::new(Sim {
                profile,
                store: Mutex::new(BTreeMap::new()),
                calls: Mutex::new(vec![]),
                grow_on_get: 0,
                reported_profile: None,
            })
        }

        fn calls(&self) -> Vec<u32> {
            self.calls.lock().unwrap().clone()
        }

        fn count(&self, cmd: u32) -> usize {
            self.calls().iter().filter(|&&c| c == cmd).count()
        }

        /// Runs the retry protocol for `cmd` on `mem` (empty: a null argument).
        fn ioctl(&self, cmd: u32, mem: &mut [u8]) -> Result<(), Errno> {
            self.calls.lock().unwrap().push(cmd);
            let arg = if mem.is_empty() { 0 } else { BASE };
            let readable_end = BASE + (mem.len() as u64).next_multiple_of(PAGE);
            let mut input: Vec<u8> = vec![];
            let mut output: Vec<Iov> = vec![];
            for _round in 0..8 {
                let out_size: u64 = output.iter().map(|v| v.len).sum();
                match abi::decode_ioctl(self.profile, cmd, arg, &input, out_size as usize) {
                    Decoded::Fail(e) => return Err(e),
                    Decoded::Retry(r) => {
                        let in_size: u64 = r.input.iter().map(|v| v.len).sum();
                        let out_size: u64 = r.output.iter().map(|v| v.len).sum();
                        assert!(in_size <= 32 * PAGE && out_size <= 32 * PAGE, "{r:?}");
                        input.clear();
                        for v in &r.input {
                            if v.base < BASE || v.base + v.len > readable_end {
                                return Err(Errno::EFAULT);
                            }
                            for a in v.base..v.base + v.len {
                                let i = (a - BASE) as usize;
                                input.push(mem.get(i).copied().unwrap_or(0xA5));
                            }
                        }
                        output = r.output;
                    }
                    Decoded::Ready(command) => {
                        let (result, reply) = self.run(command);
                        let room: u64 = output.iter().map(|v| v.len).sum();
                        if reply.len() as u64 > room {
                            return Err(Errno::EIO);
                        }
                        let mut rest = &reply[..];
                        for v in &output {
                            let n = rest.len().min(v.len as usize);
                            let at = v.base.wrapping_sub(BASE) as usize;
                            assert!(
                                v.base >= BASE && at + n <= mem.len(),
                                "the daemon writes {n} bytes at +{at}, outside a {}-byte buffer",
                                mem.len()
                            );
                            mem[at..at + n].copy_from_slice(&rest[..n]);
                            rest = &rest[n..];
                        }
                        return match result {
                            0 => Ok(()),
                            r => Err(Errno::from_raw(-r)),
                        };
                    }
                }
            }
            panic!("no end to the retries of command {cmd:#x}");
        }

        /// hpkvd's answer: the ioctl result and the bytes copied out.
        fn run(&self, command: Command<'_>) -> (i32, Vec<u8>) {
            let mut store = self.store.lock().unwrap();
            let done = (0, vec![]);
            let fail = |e: i32| (-e, vec![]);
            match command {
                Command::Get { .. } => panic!("the client must not use the module's GET"),
                Command::SafeGet { key, capacity } => {
                    let Some(value) = store.get_mut(key) else {
                        return fail(libc::ENOENT);
                    };
                    value.resize(value.len() + self.grow_on_get, b'+');
                    let (result, len, with_value) = abi::safe_get_reply(capacity, value.len());
                    let mut reply = len.to_vec();
                    if with_value {
                        reply.extend_from_slice(value);
                    }
                    (result, reply)
                }
                Command::Delete { key } => match store.remove(key) {
                    Some(_) => done,
                    None => fail(libc::ENOENT),
                },
                Command::Purge => {
                    store.clear();
                    done
                }
                Command::Insert { key, value } => {
                    store.insert(key.to_vec(), value.to_vec());
                    done
                }
                Command::Append { key, suffix } => {
                    let value = store.entry(key.to_vec()).or_default();
                    if value.len() + suffix.len() > abi::VALUE_MAX {
                        return fail(libc::EMSGSIZE);
                    }
                    value.extend_from_slice(suffix);
                    done
                }
                Command::Range(req) => {
                    let mut builder = RangeBuilder::new(&req);
                    for (k, v) in store.iter() {
                        let after_start = req.start.is_empty()
                            || if req.start_exclusive {
                                k.as_slice() > req.start
                            } else {
                                k.as_slice() >= req.start
                            };
                        let before_end = req.end.is_empty() || k.as_slice() < req.end;
                        if after_start && before_end && !builder.push(k, v) {
                            break;
                        }
                    }
                    builder.finish()
                }
                Command::Stats => {
                    let record = StatsRecord {
                        records: store.len() as u64,
                        disk_usage_bytes: store.values().map(|v| v.len() as u64).sum(),
                        device_size_bytes: 1 << 30,
                        abi_profile: self.reported_profile.unwrap_or(self.profile.number()),
                        ..Default::default()
                    };
                    (0, record.encode())
                }
                Command::Sync => done,
            }
        }
    }

    struct Shared(Arc<Sim>);

    impl Transport for Shared {
        fn call(&self, call: Call<'_>) -> Result<(), Errno> {
            let sim = &self.0;
            match call {
                Call::Kv(cmd, buf) => sim.ioctl(cmd, buf),
                Call::DeleteStr(buf) | Call::DeleteV13(buf) => sim.ioctl(abi::CMD_DELETE, buf),
                Call::Purge => sim.ioctl(abi::CMD_PURGE, &mut []),
                Call::SafeGet(buf) => sim.ioctl(abi::IOC_GET, buf),
                Call::Range(buf) => sim.ioctl(abi::IOC_RANGE, buf),
                Call::Stats(buf) => sim.ioctl(abi::IOC_STATS, buf),
                Call::Sync => sim.ioctl(abi::IOC_SYNC, &mut []),
            }
        }
    }

    fn client(sim: &Arc<Sim>) -> Client {
        Client::from_transport(Box::new(Shared(sim.clone()))).unwrap()
    }

    fn both() -> [Profile; 2] {
        [Profile::Readme, Profile::V13]
    }

    #[test]
    fn learns_the_profile_from_stats_at_open() {
        for profile in both() {
            let sim = Sim::new(profile);
            assert_eq!(client(&sim).profile(), profile);
            assert_eq!(sim.calls(), vec![abi::IOC_STATS]);
        }
        let sim = Arc::new(Sim {
            reported_profile: Some(7),
            ..Arc::into_inner(Sim::new(Profile::Readme)).unwrap()
        });
        let e = Client::from_transport(Box::new(Shared(sim))).unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e}");
        assert_eq!(e.errno(), libc::EPROTO);
    }

    #[test]
    fn put_get_append_delete_in_both_profiles() {
        for profile in both() {
            let sim = Sim::new(profile);
            let c = client(&sim);
            assert_eq!(c.get(b"k").unwrap(), None);
            c.put(b"k", b"v:1\0\n").unwrap();
            assert_eq!(c.get(b"k").unwrap().unwrap(), b"v:1\0\n");
            c.append(b"k", b"+more").unwrap();
            assert_eq!(c.get(b"k").unwrap().unwrap(), b"v:1\0\n+more");
            c.append(b"new", b"x").unwrap();
            assert_eq!(c.get(b"new").unwrap().unwrap(), b"x");
            assert!(c.delete(b"k").unwrap(), "{profile}");
            assert!(!c.delete(b"k").unwrap());
            assert_eq!(c.get(b"k").unwrap(), None);
            let s = c.stats().unwrap();
            assert_eq!((s.records, s.disk_usage_bytes), (1, 1));
            c.sync().unwrap();
            c.purge().unwrap();
            assert_eq!(c.stats().unwrap().records, 0);
        }
    }

    #[test]
    fn binary_keys_and_the_readme_delete() {
        let key = b"a\0b:c\n";
        for profile in both() {
            let sim = Sim::new(profile);
            let c = client(&sim);
            c.put(key, b"\0").unwrap();
            assert_eq!(c.get(key).unwrap().unwrap(), b"\0");
            let deletes = sim.count(abi::CMD_DELETE);
            match profile {
                Profile::V13 => assert!(c.delete(key).unwrap()),
                Profile::Readme => {
                    let e = c.delete(key).unwrap_err();
                    assert!(e.to_string().contains("NUL byte"), "{e}");
                    assert_eq!(e.errno(), libc::EINVAL);
                    assert_eq!(sim.count(abi::CMD_DELETE), deletes, "no call made");
                }
            }
            // The longest key: 512 bytes through the binary layouts, 511 as a string.
            let long = vec![b'k'; abi::KEY_MAX];
            c.put(&long, b"v").unwrap();
            assert_eq!(c.delete(&long).is_ok(), profile == Profile::V13);
            c.put(&long[1..], b"v").unwrap();
            assert!(c.delete(&long[1..]).unwrap());
        }
    }

    #[test]
    fn limits_are_checked_before_the_call() {
        let sim = Sim::new(Profile::Readme);
        let c = client(&sim);
        let too_long = vec![b'k'; abi::KEY_MAX + 1];
        let big = vec![b'v'; abi::VALUE_MAX + 1];
        let errors = [
            c.get(b"").unwrap_err(),
            c.get(&too_long).unwrap_err(),
            c.put(b"", b"v").unwrap_err(),
            c.put(&too_long, b"v").unwrap_err(),
            c.put(b"k", b"").unwrap_err(),
            c.put(b"k", &big).unwrap_err(),
            c.append(b"k", b"").unwrap_err(),
            c.delete(b"").unwrap_err(),
        ];
        for e in errors {
            assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
            assert_eq!(e.errno(), libc::EINVAL);
        }
        assert_eq!(
            sim.calls(),
            vec![abi::IOC_STATS],
            "nothing reached the device"
        );
        c.put(b"k", &big[1..]).unwrap();
        assert_eq!(c.get(b"k").unwrap().unwrap().len(), abi::VALUE_MAX);
        let e = c.append(b"k", b"x").unwrap_err();
        assert!(matches!(e, Error::TooLarge), "{e}");
        assert_eq!(e.errno(), libc::EMSGSIZE);
        assert_eq!(
            e.to_string(),
            "too large: the value would pass 102400 bytes"
        );
    }

    #[test]
    fn get_asks_again_once_for_a_long_value() {
        let sim = Sim::new(Profile::V13);
        let c = client(&sim);
        for (len, calls) in [
            (1, 1),
            (GET_INITIAL_CAPACITY, 1),
            (GET_INITIAL_CAPACITY + 1, 2),
            (abi::VALUE_MAX, 2),
        ] {
            let value: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            c.put(b"k", &value).unwrap();
            let before = sim.count(abi::IOC_GET);
            assert_eq!(c.get(b"k").unwrap().unwrap(), value);
            assert_eq!(sim.count(abi::IOC_GET) - before, calls, "{len}-byte value");
        }
    }

    #[test]
    fn get_keeps_up_with_a_value_that_grows_between_calls() {
        let sim = Arc::new(Sim {
            grow_on_get: 10,
            ..Arc::into_inner(Sim::new(Profile::Readme)).unwrap()
        });
        let c = client(&sim);
        c.put(b"k", &[b'v'; GET_INITIAL_CAPACITY]).unwrap();
        let got = c.get(b"k").unwrap().unwrap();
        // 4096 + 10 > 4096: ERANGE; 4106 + 10 > 4106: ERANGE; the largest room fits.
        assert_eq!(got.len(), GET_INITIAL_CAPACITY + 30);
        assert_eq!(sim.count(abi::IOC_GET), 3);
    }

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("key{i:03}").into_bytes()).collect()
    }

    #[test]
    fn range_pages_continue_in_order() {
        let sim = Sim::new(Profile::Readme);
        let c = client(&sim);
        for k in keys(50) {
            c.put(&k, &k).unwrap();
        }
        let got: Vec<_> = c.scan().max_count(10).map(Result::unwrap).collect();
        let want: Vec<_> = keys(50).into_iter().map(|k| (k.clone(), k)).collect();
        assert_eq!(got, want);
        assert_eq!(sim.count(abi::IOC_RANGE), 5, "the fifth page says no more");

        let before = sim.count(abi::IOC_RANGE);
        let got: Vec<_> = c.scan().max_count(3).limit(7).map(Result::unwrap).collect();
        assert_eq!(got, want[..7]);
        assert_eq!(sim.count(abi::IOC_RANGE) - before, 3, "3 + 3 + 1");

        let got: Vec<_> = c
            .scan()
            .after("key010")
            .through("key012")
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(got, keys(13)[11..]);
        let before = sim.count(abi::IOC_RANGE);
        assert_eq!(c.scan().to("").count(), 0);
        assert_eq!(
            sim.count(abi::IOC_RANGE),
            before,
            "nothing is before the empty key"
        );
    }

    #[test]
    fn range_grows_its_buffer_for_a_large_record() {
        let sim = Sim::new(Profile::V13);
        let c = client(&sim);
        let big = vec![7u8; abi::VALUE_MAX];
        for k in [b"a", b"b", b"c"] {
            c.put(k, &big).unwrap();
        }
        c.put(&[b'z'; abi::KEY_MAX], &big).unwrap();
        let got: Vec<_> = c.scan().capacity(64).map(Result::unwrap).collect();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|(_, v)| *v == big));
        // An ERANGE to grow for "a", one record per request (a second never fits), and one
        // more ERANGE for the 512-byte key's larger entry.
        assert_eq!(sim.count(abi::IOC_RANGE), 6);
        // An inclusive end of 512 bytes has no successor: the client stops by itself.
        let got: Vec<_> = c
            .scan()
            .through([b'z'; abi::KEY_MAX])
            .map(|r| r.unwrap().0.len())
            .collect();
        assert_eq!(got, [1, 1, 1, abi::KEY_MAX]);
        let e = c
            .scan()
            .from([b'z'; abi::KEY_MAX + 1])
            .next()
            .unwrap()
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    }

    #[test]
    fn range_replies_that_break_the_abi_are_refused() {
        let capacity = 64;
        let entry = |k: &[u8], v: &[u8]| {
            let mut e = vec![];
            e.extend_from_slice(&(k.len() as u16).to_le_bytes());
            e.extend_from_slice(&0u16.to_le_bytes());
            e.extend_from_slice(&(v.len() as u32).to_le_bytes());
            e.extend_from_slice(k);
            e.extend_from_slice(v);
            e.resize(e.len().next_multiple_of(8), 0);
            e
        };
        let reply = |count: u32, data_len: u64, data: &[u8]| {
            let mut b = encode_range(b"", false, b"", 0, capacity);
            put_u32(&mut b, offset_of!(uapi::hpkv_range, count), count);
            put_u64(&mut b, offset_of!(uapi::hpkv_range, data_len), data_len);
            b[abi::RANGE_STRUCT_SIZE..][..data.len()].copy_from_slice(data);
            b
        };
        let data = [entry(b"a", b"1"), entry(b"bb", b"22")].concat();
        let ok = decode_range(&reply(2, 32, &data), capacity).unwrap();
        assert_eq!(
            ok.records,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"bb".to_vec(), b"22".to_vec())
            ]
        );
        assert!(!ok.more);
        for (count, data_len) in [(3, 32), (1, 32), (2, 24), (2, 65), (2, u64::MAX)] {
            let e = decode_range(&reply(count, data_len, &data), capacity).unwrap_err();
            assert!(matches!(e, Error::Protocol(_)), "{count} {data_len}: {e}");
        }
        let zero_key = entry(b"", b"1");
        assert!(decode_range(&reply(1, 16, &zero_key), capacity).is_err());
    }

    fn model_range(
        model: &BTreeMap<Vec<u8>, Vec<u8>>,
        start: &Bound<Vec<u8>>,
        end: &Bound<Vec<u8>>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        model
            .iter()
            .filter(|(k, _)| match start {
                Bound::Unbounded => true,
                Bound::Included(s) => *k >= s,
                Bound::Excluded(s) => *k > s,
            })
            .filter(|(k, _)| match end {
                Bound::Unbounded => true,
                Bound::Included(e) => *k <= e,
                Bound::Excluded(e) => *k < e,
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
        let key = prop::collection::vec(prop::sample::select(b"ab\0".to_vec()), 0..4);
        prop_oneof![
            Just(Bound::Unbounded),
            key.clone().prop_map(Bound::Included),
            key.prop_map(Bound::Excluded),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the bounds, page size and limit: the records of the model, in order.
        #[test]
        fn range_matches_a_model(
            records in prop::collection::btree_map(
                prop::collection::vec(prop::sample::select(b"ab\0".to_vec()), 1..4),
                prop::collection::vec(any::<u8>(), 1..300),
                0..30,
            ),
            start in bound(),
            end in bound(),
            max_count in 0u32..5,
            limit in prop::option::of(0usize..20),
            capacity in 16usize..400,
        ) {
            let sim = Sim::new(Profile::Readme);
            let c = client(&sim);
            for (k, v) in &records {
                c.put(k, v).unwrap();
            }
            let mut range = c
                .range(start.as_ref().map(Vec::as_slice), end.as_ref().map(Vec::as_slice))
                .max_count(max_count)
                .capacity(capacity);
            if let Some(l) = limit {
                range = range.limit(l);
            }
            let got: Vec<_> = range.collect::<Result<_>>().unwrap();
            let mut want = model_range(&records, &start, &end);
            want.truncate(limit.unwrap_or(usize::MAX));
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn errors_map_errnos_and_read_well() {
        for (errno, want) in [
            (Errno::ENOENT, "no such key"),
            (
                Errno::EINVAL,
                "invalid argument: the device refused the request (EINVAL)",
            ),
            (Errno::ENOSPC, "no space left on the store's device"),
            (Errno::EIO, "Input/output error (os error 5)"),
        ] {
            let e = Error::from_errno(errno);
            assert_eq!(e.errno(), errno as i32);
            assert_eq!(e.to_string(), want);
        }
        let e = Error::from_errno(Errno::ENOTTY);
        assert!(e.to_string().contains("is it hpkvd's /dev/hpkv?"));
        let io: io::Error = Error::NoSpace.into();
        assert_eq!(io.raw_os_error(), None);
        assert_eq!(io.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn open_fails_cleanly_on_what_is_not_hpkv() {
        let e = Client::open("/nonexistent/hpkv").unwrap_err();
        assert_eq!(e.errno(), libc::ENOENT);
        assert!(matches!(e, Error::Io(_)));
        // /dev/null answers ENOTTY to HPKV_IOC_STATS: not hpkvd's device.
        let e = Client::open("/dev/null").unwrap_err();
        assert!(matches!(e, Error::Unsupported), "{e}");
    }
}
