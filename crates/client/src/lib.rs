//! The Rust client of `/dev/hpkv`, the device hpkvd serves: the HPKV kernel module's commands
//! and hpkv's extensions, with typed errors and no `unsafe` outside its small FFI module.
//! Building it needs no C compiler, no bindgen and no libfuse.
//!
//! # Quick start
//!
//! ```no_run
//! use hpkv_client::Client;
//!
//! # fn main() -> Result<(), hpkv_client::Error> {
//! let hpkv = Client::open_default()?; // /dev/hpkv; Client::open("/dev/hpkv-test") for another
//! hpkv.put(b"user:1", b"alice")?;
//! hpkv.append(b"user:1", b" smith")?;
//! assert_eq!(hpkv.get(b"user:1")?.as_deref(), Some(&b"alice smith"[..]));
//! // Keys and values are bytes: NUL, ':' and newlines are fine.
//! hpkv.put(b"bin\0ary", &[0, 1, 2, b'\n'])?;
//! // Records in key order, fetched a page at a time.
//! for record in hpkv.scan().from("user:").to("user;") {
//!     let (key, value) = record?;
//!     println!("{}: {} bytes", key.escape_ascii(), value.len());
//! }
//! assert!(hpkv.delete(b"user:1")?);
//! hpkv.sync()?; // every acknowledged write is on stable media
//! println!("{} records", hpkv.stats()?.records);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/client.rs` at the workspace root is a whole program (`cargo run --example
//! client`).
//!
//! # What each call costs
//! Every method is one ioctl, or a few: [`Client::get`] asks a second time for a value over
//! [`GET_INITIAL_CAPACITY`] bytes, and a [`Range`] one ioctl per page. A `Client` may be
//! shared between threads (`&self` everywhere); the daemon serves calls concurrently.
//!
//! # GETs without a system call
//! hpkvd publishes a shared-memory view of its store (`/run/hpkv/NAME.view`, readable by
//! group `hpkv`). A client opened on the node uses it: [`Client::get`] answers from the view
//! when the view holds the value or knows the key is absent, with no system call, and asks
//! the device otherwise. What it answers is what the device would: a GET that starts after
//! a write was acknowledged sees it. [`Client::without_view`] (or `HPKV_SHARED_VIEW=off` in
//! the environment, [`VIEW_ENV`]) keeps a client on the device; [`Client::view_counters`]
//! tells which way GETs went.
//!
//! # Profiles
//! Which layout DELETE takes depends on the profile the daemon serves (`hpkvd --abi`); the
//! client learns it once, at open, from the `abi_profile` field of `HPKV_IOC_STATS`. Reads use
//! the bounded extensions only (`HPKV_IOC_GET` and `HPKV_IOC_RANGE`), never the module's GET,
//! which writes as many bytes as the value holds whatever the caller's buffer.
//!
//! # Errors
//! Every call returns [`Error`], whose variants stand for the errnos the device answers: the
//! table is on [`Error`]. A request outside the ABI's limits is refused before any call
//! ([`Error::Request`]).
#![warn(missing_docs)]

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

mod error;
mod ffi;
mod range;
#[cfg(test)]
mod tests;
mod view;

pub use error::{Error, Result};
pub use range::Range;
pub use view::{ViewCounters, VIEW_ENV};

/// The ABI crate, for its limits ([`abi::KEY_MAX`], [`abi::VALUE_MAX`]) and numbers.
pub use hpkv_abi as abi;
pub use hpkv_abi::{DurabilityMode, InfoRecord, Profile, ReplyError, RequestError, StatsRecord};

/// Where hpkvd serves its device unless told otherwise (`hpkvd --name`).
pub const DEFAULT_DEVICE: &str = "/dev/hpkv";
/// The environment variable that names the device for [`Client::open_env`] (and hpkvctl).
pub const DEVICE_ENV: &str = "HPKV_DEVICE";

/// The device hpkvd serves under `name` (`hpkvd --name NAME`): `/dev/NAME`, or `None` for a
/// name that is not one file name (empty, `.`, `..`, or holding a `/` or a NUL).
///
/// ```
/// assert_eq!(
///     hpkv_client::device_path("hpkv-test").as_deref(),
///     Some(std::path::Path::new("/dev/hpkv-test"))
/// );
/// assert_eq!(hpkv_client::device_path("../etc"), None);
/// ```
pub fn device_path(name: &str) -> Option<PathBuf> {
    let one_file_name =
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']);
    one_file_name.then(|| Path::new("/dev").join(name))
}

/// The device named by [`DEVICE_ENV`] when it is set and not empty, else [`DEFAULT_DEVICE`].
pub fn env_device() -> PathBuf {
    std::env::var_os(DEVICE_ENV)
        .filter(|path| !path.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_DEVICE), PathBuf::from)
}
/// The value room [`Client::get`] offers first; a longer value costs one more call.
pub const GET_INITIAL_CAPACITY: usize = 4096;
/// The data room a [`Range`] offers first; it grows (up to
/// [`abi::RANGE_CAPACITY_MAX`]) when a record does not fit.
pub const RANGE_INITIAL_CAPACITY: usize = 16 * 1024;
/// Calls [`Client::get`] makes at most: a concurrent append can lengthen the value between
/// two calls, so the last offers room for the largest value there can be.
const GET_CALLS_MAX: usize = 3;

/// One ioctl, its buffer laid out as the matching `ffi` wrapper takes it.
pub(crate) enum Call<'a> {
    /// INSERT or `PARTIAL_UPDATE`.
    Kv(u32, &'a mut [u8]),
    /// A `write()` of `key:value` (one request to the daemon).
    Write(&'a [u8]),
    DeleteStr(&'a mut [u8]),
    DeleteV13(&'a mut [u8]),
    Purge,
    SafeGet(&'a mut [u8]),
    Range(&'a mut [u8]),
    Stats(&'a mut [u8; abi::STATS_STRUCT_SIZE]),
    Info(&'a mut [u8; abi::INFO_STRUCT_SIZE]),
    Sync,
    /// `HPKV_IOC_PUT_BATCH`: answers the number of records stored.
    PutBatch(&'a [u8]),
}

/// Where calls go: the device, or in tests a simulation of the kernel and hpkvd.
pub(crate) trait Transport: Send + Sync {
    /// The call's non-negative result (0 but for `PutBatch`), or its errno.
    fn call(&self, call: Call<'_>) -> Result<i32, Errno>;
}

struct Device(File);

impl Transport for Device {
    fn call(&self, call: Call<'_>) -> Result<i32, Errno> {
        let fd = self.0.as_fd();
        let done = match call {
            Call::Kv(cmd, buf) => ffi::hpkv_kv(fd, cmd, buf),
            Call::Write(buf) => match nix::unistd::write(fd, buf) {
                Ok(n) if n == buf.len() => Ok(()),
                // One write() is one operation: the daemon takes all of it or none.
                Ok(_) => Err(Errno::EIO),
                Err(e) => Err(e),
            },
            Call::DeleteStr(buf) => ffi::hpkv_delete_str(fd, buf),
            Call::DeleteV13(buf) => ffi::hpkv_delete_v13(fd, buf),
            Call::Purge => ffi::hpkv_purge(fd),
            Call::SafeGet(buf) => ffi::hpkv_safe_get(fd, buf),
            Call::Range(buf) => ffi::hpkv_range(fd, buf),
            Call::Stats(buf) => ffi::hpkv_stats(fd, buf),
            Call::Info(buf) => ffi::hpkv_info(fd, buf),
            Call::Sync => ffi::hpkv_sync(fd),
            Call::PutBatch(buf) => return ffi::hpkv_put_batch(fd, buf),
        };
        done.map(|()| 0)
    }
}

/// An open `/dev/hpkv`. Every method is one or a few ioctls; a `Client` may be shared
/// between threads (`&self` everywhere), the daemon serves calls concurrently.
pub struct Client {
    io: Box<dyn Transport>,
    profile: Profile,
    /// The shared view GETs try first.
    view: view::ViewLink,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens the device at `path` (read-write) and learns the profile it serves.
    ///
    /// ```no_run
    /// let hpkv = hpkv_client::Client::open("/dev/hpkv-test")?;
    /// println!("serving the {} profile", hpkv.profile());
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] when the device cannot be opened (ENOENT: no hpkvd serves it; EACCES:
    /// not in its group), [`Error::Unsupported`] when it is not hpkvd's.
    pub fn open(path: impl AsRef<Path>) -> Result<Client> {
        let path = path.as_ref();
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let view = view::ViewLink::for_node(&file, Some(path));
        Ok(Client {
            view,
            ..Client::from_transport(Box::new(Device(file)))?
        })
    }

    /// Opens [`DEFAULT_DEVICE`].
    ///
    /// # Errors
    /// As [`Client::open`].
    pub fn open_default() -> Result<Client> {
        Client::open(DEFAULT_DEVICE)
    }

    /// Opens the device hpkvd serves under `name` (`hpkvd --name NAME`): `/dev/NAME`.
    ///
    /// # Errors
    /// An [`Error::Io`] of kind `InvalidInput` for a name that is not one file name
    /// ([`device_path`]); as [`Client::open`].
    pub fn open_name(name: &str) -> Result<Client> {
        let path = device_path(name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a device name (hpkvd --name)"),
            )
        })?;
        Client::open(path)
    }

    /// Opens the device named by the environment variable `HPKV_DEVICE` ([`DEVICE_ENV`]) when
    /// it is set, else [`DEFAULT_DEVICE`].
    ///
    /// # Errors
    /// As [`Client::open`].
    pub fn open_env() -> Result<Client> {
        Client::open(env_device())
    }

    /// A client over an already open device; asks it for its profile (`HPKV_IOC_STATS`).
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the file is not hpkvd's device.
    pub fn from_file(file: File) -> Result<Client> {
        let view = view::ViewLink::for_node(&file, None);
        Ok(Client {
            view,
            ..Client::from_transport(Box::new(Device(file)))?
        })
    }

    /// A client over an already open device that serves `profile`, without asking it.
    /// Only for a descriptor of hpkvd's device: the module's commands are plain numbers
    /// that another driver could read differently.
    pub fn with_profile(file: File, profile: Profile) -> Client {
        Client {
            view: view::ViewLink::for_node(&file, None),
            io: Box::new(Device(file)),
            profile,
        }
    }

    pub(crate) fn from_transport(io: Box<dyn Transport>) -> Result<Client> {
        let mut client = Client {
            io,
            profile: Profile::Readme,
            view: view::ViewLink::off(),
        };
        let number = client.stats()?.abi_profile;
        client.profile = Profile::from_number(number)
            .ok_or(Error::Protocol(ReplyError::UnknownProfile(number)))?;
        Ok(client)
    }

    /// The profile the daemon serves: the layout of DELETE (and of the module's GET).
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The same client with every GET going to the device, never to the shared view.
    #[must_use]
    pub fn without_view(self) -> Client {
        Client {
            view: view::ViewLink::off(),
            ..self
        }
    }

    /// Whether GETs can be answered from a live shared view right now.
    pub fn has_view(&self) -> bool {
        self.view.is_live()
    }

    /// How this client's GETs were answered so far: by the view (values, absences) or by the
    /// device.
    pub fn view_counters(&self) -> ViewCounters {
        self.view.counters()
    }

    fn call(&self, call: Call<'_>) -> Result<()> {
        self.io.call(call).map(drop).map_err(Error::from_errno)
    }

    /// The value of `key`, or `None` when there is none.
    ///
    /// First the shared view, with no system call (see the crate documentation); when the
    /// view cannot answer, the bounded `HPKV_IOC_GET`: a first call offers
    /// [`GET_INITIAL_CAPACITY`] bytes; a longer value is answered with its length, and a
    /// second call offers exactly that.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// match hpkv.get(b"config")? {
    ///     Some(value) => println!("{} bytes", value.len()),
    ///     None => println!("no such key"),
    /// }
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Request`] for a key of 0 or over 512 bytes; the device's errors.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.view.get(key) {
            view::Answer::Value(value) => return Ok(Some(value)),
            view::Answer::Absent => return Ok(None),
            view::Answer::Device => {}
        }
        let mut capacity = GET_INITIAL_CAPACITY.min(abi::VALUE_MAX);
        for attempt in 1..=GET_CALLS_MAX {
            let mut buf = abi::encode_safe_get(key, capacity)?;
            match self.io.call(Call::SafeGet(&mut buf)) {
                Ok(_) => return Ok(Some(abi::parse_safe_get(&buf, capacity)?.to_vec())),
                Err(Errno::ENOENT) => return Ok(None),
                Err(Errno::ERANGE) => {
                    let needed = abi::safe_get_value_len(&buf)?;
                    let needed_ok = usize::try_from(needed)
                        .ok()
                        .filter(|n| (capacity + 1..=abi::VALUE_MAX).contains(n));
                    let Some(needed) = needed_ok else {
                        return Err(Error::Protocol(ReplyError::Need {
                            needed,
                            capacity: capacity as u64,
                        }));
                    };
                    capacity = if attempt == 1 { needed } else { abi::VALUE_MAX };
                }
                Err(e) => return Err(Error::from_errno(e)),
            }
        }
        Err(Error::Protocol(ReplyError::NoRoomIsEnough))
    }

    /// Whether `key` has a value. Costs a GET: the value is fetched and dropped.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        self.get(key).map(|value| value.is_some())
    }

    /// Stores `value` under `key` (INSERT, command 4), replacing any value it had.
    /// Keys are 1 to 512 bytes, values 1 to 102400 bytes, both binary.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// hpkv.put(b"blob", &[0u8, 1, 2, b':', b'\n'])?;
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Request`] outside the limits; [`Error::NoSpace`]; the device's errors.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut buf = abi::encode_kv(key, value)?;
        self.call(Call::Kv(abi::CMD_INSERT, &mut buf))
    }

    /// [`Client::put`] in one request to the daemon instead of two: a `write()` of
    /// `key:value`, which the device reads as the same put, whenever it can say it (a key of
    /// at most 511 bytes without a colon, a value of at most 102399 bytes not beginning
    /// with `+`); otherwise [`Client::put`]. Acknowledged as a put is (durable in `sync` mode).
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// hpkv.put_by_write(b"user:1", b"alice")?; // a colon in the key: INSERT
    /// hpkv.put_by_write(b"user-2", b"bob")?; // one write() of "user-2:bob"
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Client::put`].
    pub fn put_by_write(&self, key: &[u8], value: &[u8]) -> Result<()> {
        match abi::encode_write(abi::WriteRequest::Put { key, value }) {
            Ok(buf) => self.call(Call::Write(&buf)),
            Err(_) => self.put(key, value),
        }
    }

    /// Stores many records with one request (`HPKV_IOC_PUT_BATCH`), in order: a later record
    /// of the same key wins. The answer comes once every record is acknowledged (durable in
    /// `sync` mode, with one flush for the whole batch); it is the number stored: all of
    /// them, or the first ones when the device filled in the middle. The records must fit in
    /// one request ([`abi::PUT_BATCH_MAX`] bytes; [`abi::PutBatch`] packs them up to it, and
    /// [`Client::put_packed`] sends it). No record is sent for an empty slice.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// let records: [(&[u8], &[u8]); 3] = [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")];
    /// match hpkv.put_batch(&records) {
    ///     Ok(stored) => println!("{stored} stored"), // 3, "a" holds "3"
    ///     // An hpkvd older than the command: one put per record instead.
    ///     Err(hpkv_client::Error::Unsupported) => {
    ///         for (key, value) in records {
    ///             hpkv.put(key, value)?;
    ///         }
    ///     }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Request`] for a key or value outside the limits or records that do not fit
    /// in one request (nothing is sent); [`Error::Unsupported`] from an hpkvd older than the
    /// command; [`Error::NoSpace`] when not even the first record fitted; as [`Client::put`].
    pub fn put_batch(&self, records: &[(&[u8], &[u8])]) -> Result<usize> {
        if records.is_empty() {
            return Ok(0);
        }
        self.put_packed(&abi::encode_put_batch(records)?)
    }

    /// Sends a batch packed with [`abi::PutBatch`]; as [`Client::put_batch`]. An empty batch
    /// is not sent.
    ///
    /// # Errors
    /// As [`Client::put_batch`].
    pub fn put_packed(&self, batch: &abi::PutBatch) -> Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        let stored = self
            .io
            .call(Call::PutBatch(batch.as_bytes()))
            .map_err(Error::from_errno)?;
        usize::try_from(stored)
            .ok()
            .filter(|n| (1..=batch.count()).contains(n))
            .ok_or(Error::Protocol(ReplyError::BatchCount {
                stored: i64::from(stored),
                sent: batch.count(),
            }))
    }

    /// Whether the device takes `HPKV_IOC_PUT_BATCH`: asks with an empty batch, which an
    /// hpkvd that knows the command refuses with EINVAL and an older one with ENOTTY.
    ///
    /// # Errors
    /// The device's errors.
    pub fn supports_put_batch(&self) -> Result<bool> {
        match self
            .io
            .call(Call::PutBatch(abi::PutBatch::new().as_bytes()))
        {
            Err(Errno::EINVAL) => Ok(true),
            Err(Errno::ENOTTY) => Ok(false),
            Err(e) => Err(Error::from_errno(e)),
            Ok(n) => Err(Error::Protocol(ReplyError::BatchCount {
                stored: i64::from(n),
                sent: 0,
            })),
        }
    }

    /// Appends `suffix` to the value of `key` (`PARTIAL_UPDATE`, command 5); a missing key is
    /// created with `suffix`.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// hpkv.append(b"log", b"one more line\n")?;
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::TooLarge`] when the result would pass 102400 bytes; as [`Client::put`].
    pub fn append(&self, key: &[u8], suffix: &[u8]) -> Result<()> {
        let mut buf = abi::encode_kv(key, suffix)?;
        self.call(Call::Kv(abi::CMD_PARTIAL_UPDATE, &mut buf))
    }

    /// Deletes `key`: `true` if it was there, `false` if there was no such key.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// if !hpkv.delete(b"session:42")? {
    ///     eprintln!("already gone");
    /// }
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    ///
    /// # Errors
    /// In the `readme` profile DELETE takes a NUL-terminated string: a key that holds a NUL
    /// byte or is longer than 511 bytes cannot be named that way, and gives
    /// [`Error::Request`] without reaching the device.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        let result = match self.profile {
            Profile::Readme => {
                let mut buf = abi::encode_str_key(key)?;
                self.io.call(Call::DeleteStr(&mut buf))
            }
            Profile::V13 => {
                let mut buf = abi::encode_v13_key(key)?;
                self.io.call(Call::DeleteV13(&mut buf))
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(Error::from_errno(e)),
        }
    }

    /// The records with keys between `start` and `end`, in bytewise key order (a shorter
    /// key first on a common prefix), fetched a page at a time with `HPKV_IOC_RANGE`. The
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
        Range::new(self, start, end)
    }

    /// Every record in key order; narrow it with [`Range::from`], [`Range::after`],
    /// [`Range::to`], [`Range::through`] and [`Range::prefix`] before the first `next()`.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// // The keys with prefix "user:".
    /// for record in hpkv.scan().prefix("user:").max_count(100) {
    ///     let (key, _value) = record?;
    ///     println!("{}", key.escape_ascii());
    /// }
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    pub fn scan(&self) -> Range<'_> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }

    /// The store's numbers (`HPKV_IOC_STATS`); [`StatsRecord::proc_text`] gives the module's
    /// three `/proc/hpkv_stats` lines.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// print!("{}", hpkv.stats()?.proc_text());
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    ///
    /// # Errors
    /// The device's errors; [`Error::Unsupported`] when it is not hpkvd's.
    pub fn stats(&self) -> Result<StatsRecord> {
        let mut buf = [0u8; abi::STATS_STRUCT_SIZE];
        self.call(Call::Stats(&mut buf))?;
        Ok(StatsRecord::decode(&buf).expect("a whole struct hpkv_stats"))
    }

    /// Who serves the device (`HPKV_IOC_INFO`): hpkvd's version, the node's name, the
    /// store's device and UUID, the profile and the durability mode.
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// let info = hpkv.info()?;
    /// println!("{} serves /dev/{} from {}", info.version, info.name, info.device_path.display());
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] from an hpkvd older than the command; the device's errors.
    pub fn info(&self) -> Result<InfoRecord> {
        let mut buf = vec![0u8; abi::INFO_STRUCT_SIZE];
        let buf: &mut [u8; abi::INFO_STRUCT_SIZE] =
            buf.as_mut_slice().try_into().expect("the struct's size");
        self.call(Call::Info(buf))?;
        Ok(InfoRecord::decode(buf).expect("a whole struct hpkv_info"))
    }

    /// Returns once every write acknowledged before the call is on stable media
    /// (`HPKV_IOC_SYNC`).
    ///
    /// # Errors
    /// EIO ([`Error::Io`]) when the device failed to flush.
    pub fn sync(&self) -> Result<()> {
        self.call(Call::Sync)
    }

    /// Removes every record (PURGE, command 3).
    ///
    /// # Errors
    /// The device's errors.
    pub fn purge(&self) -> Result<()> {
        self.call(Call::Purge)
    }
}
