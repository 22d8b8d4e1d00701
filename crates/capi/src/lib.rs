//! `libhpkv`: a GET for new C programs (`uapi/hpkv_view.h`).
//!
//! `hpkv_open("hpkv")` opens the device node `/dev/hpkv` and the view hpkvd publishes for it
//! (`/run/hpkv/hpkv.view`); `hpkv_get` answers from the view when it can (a hit copies the
//! value, a miss is an authoritative ENOENT, neither makes a system call) and otherwise asks
//! the device with its safe GET (`HPKV_IOC_GET`); `hpkv_close` releases both. The C functions
//! are in `ffi.rs`; this module is the safe Rust behind them ([`Handle`]), usable from Rust
//! too.
#![deny(unsafe_code)]
#![warn(missing_docs)]

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hpkv_abi as abi;
use hpkv_nodeview::{char_device, name_of_path, view_path, Env, NodeView};
use hpkv_view::Lookup;

pub mod ffi;

/// A handle on one store: its device node and, when there is one, its view.
#[derive(Debug)]
pub struct Handle {
    device: File,
    view: Option<NodeView>,
    counters: Counters,
}

/// What [`Handle::get`] did, counted (`hpkv_counters`).
#[derive(Debug, Default)]
pub struct Counters {
    /// GETs answered by the view with a value.
    pub view_hits: AtomicU64,
    /// GETs answered by the view with ENOENT.
    pub view_misses: AtomicU64,
    /// GETs the device answered.
    pub device_gets: AtomicU64,
}

/// A successful [`Handle::get`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Got {
    /// The value, this many bytes, is at the start of the output buffer.
    Value(usize),
    /// The value has this many bytes, more than the buffer holds; the buffer is untouched.
    TooSmall(usize),
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Handle {
    /// Opens the store `name`: `None` for `HPKV_NAME` or `hpkv`; `hpkv` or `/dev/hpkv` for
    /// the node `/dev/hpkv`; any other path with a slash for that node. The view is looked
    /// for by the node's name (`/run/hpkv/NAME.view`, or the `HPKV_VIEW_DIR` and
    /// `HPKV_VIEW` overrides).
    ///
    /// # Errors
    /// The device node cannot be opened.
    pub fn open(name: Option<&OsStr>) -> io::Result<Handle> {
        let env = Env::from_process();
        let name = name.map_or_else(|| env.store_name(), OsStr::to_os_string);
        let device_path = if name.as_encoded_bytes().contains(&b'/') {
            PathBuf::from(&name)
        } else {
            Path::new("/dev").join(&name)
        };
        let device = open_device(&device_path)?;
        let rdev = device.metadata()?.rdev();
        let view_name: Option<OsString> = char_device(rdev)
            .map(|d| d.name)
            .or_else(|| name_of_path(&name));
        let view = view_name.map(|n| NodeView::new(view_path(&env, &n), rdev));
        Ok(Handle::with_parts(device, view))
    }

    /// Opens the node at `device` and the view at `view` (`None`: the device only).
    ///
    /// # Errors
    /// The device node cannot be opened.
    pub fn open_paths(device: &Path, view: Option<&Path>) -> io::Result<Handle> {
        let device = open_device(device)?;
        let rdev = device.metadata()?.rdev();
        let view = view.map(|v| NodeView::new(v.to_path_buf(), rdev));
        Ok(Handle::with_parts(device, view))
    }

    fn with_parts(device: File, view: Option<NodeView>) -> Handle {
        Handle {
            device,
            view,
            counters: Counters::default(),
        }
    }

    /// Whether a live view that describes this device is in use now.
    pub fn view_live(&self) -> bool {
        self.view
            .as_ref()
            .and_then(|v| v.with(hpkv_view::ViewReader::is_live))
            .unwrap_or(false)
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Reads the value of `key` into `out`.
    ///
    /// # Errors
    /// An errno: EINVAL for a key of 0 or more than 512 bytes, ENOENT for a missing key
    /// (`out` untouched), or what the device answered (EIO, ECONNABORTED, ...).
    pub fn get(&self, key: &[u8], out: &mut [u8]) -> Result<Got, i32> {
        if key.is_empty() || key.len() > abi::KEY_MAX {
            return Err(libc::EINVAL);
        }
        if let Some(answer) = self.view_get(key, out) {
            return answer;
        }
        self.counters.device_gets.fetch_add(1, Ordering::Relaxed);
        ffi::device_safe_get(&self.device, key, out)
    }

    fn view_get(&self, key: &[u8], out: &mut [u8]) -> Option<Result<Got, i32>> {
        let view = self.view.as_ref()?;
        SCRATCH
            .try_with(|scratch| {
                let mut scratch = scratch.try_borrow_mut().ok()?;
                match view.with(|r| r.get(key, &mut scratch))? {
                    Lookup::Hit { .. } => {
                        self.counters.view_hits.fetch_add(1, Ordering::Relaxed);
                        let len = scratch.len();
                        Some(Ok(match out.get_mut(..len) {
                            Some(dst) => {
                                dst.copy_from_slice(&scratch);
                                Got::Value(len)
                            }
                            None => Got::TooSmall(len),
                        }))
                    }
                    Lookup::Miss => {
                        self.counters.view_misses.fetch_add(1, Ordering::Relaxed);
                        Some(Err(libc::ENOENT))
                    }
                    Lookup::Unknown(_) => None,
                }
            })
            .ok()
            .flatten()
    }
}

fn open_device(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// The layout of the safe GET's buffer: `struct hpkv_get`, then the value.
pub(crate) mod safe_get {
    use super::abi;
    use std::mem::offset_of;

    pub const CAPACITY_AT: usize = offset_of!(abi::uapi::hpkv_get, capacity);
    pub const LEN_AT: usize = offset_of!(abi::uapi::hpkv_get, value_len);
    pub const KEY_AT: usize = offset_of!(abi::uapi::hpkv_get, key);
    pub const VALUE_AT: usize = abi::GET_STRUCT_SIZE;

    /// The request for `key` with room for `capacity` bytes of value.
    pub fn request(key: &[u8], capacity: usize) -> Vec<u8> {
        let mut buf = vec![0u8; VALUE_AT + capacity];
        let key_len = u16::try_from(key.len()).unwrap_or(0);
        buf[..2].copy_from_slice(&key_len.to_le_bytes());
        buf[CAPACITY_AT..CAPACITY_AT + 8].copy_from_slice(&(capacity as u64).to_le_bytes());
        buf[KEY_AT..KEY_AT + key.len()].copy_from_slice(key);
        buf
    }

    /// `value_len` of a reply.
    pub fn value_len(buf: &[u8]) -> usize {
        usize::try_from(abi::le::u64_at(buf, LEN_AT)).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpkv_view::{ViewConfig, ViewWriter};

    fn null_rdev() -> u64 {
        std::fs::metadata("/dev/null").unwrap().rdev()
    }

    #[test]
    fn view_hits_misses_erange_and_the_device_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("null.view");
        let mut config = ViewConfig::new(64, 4096, 1 << 16);
        config.device = null_rdev();
        let mut w = ViewWriter::create(&path, &config).unwrap();
        w.upsert(b"k", 1, Some(b"value"), 5).unwrap();
        w.upsert(b"cold", 2, None, 9).unwrap();
        w.publish().unwrap();

        let h = Handle::open_paths(Path::new("/dev/null"), Some(&path)).unwrap();
        assert!(h.view_live());
        let mut out = [0xAAu8; 8];
        assert_eq!(h.get(b"k", &mut out), Ok(Got::Value(5)));
        assert_eq!(&out, b"value\xAA\xAA\xAA");
        let mut small = [0xAAu8; 4];
        assert_eq!(h.get(b"k", &mut small), Ok(Got::TooSmall(5)));
        assert_eq!(small, [0xAA; 4]);
        assert_eq!(h.get(b"nobody", &mut out), Err(libc::ENOENT));
        assert_eq!(h.get(b"", &mut out), Err(libc::EINVAL));
        assert_eq!(h.get(&[b'x'; 513], &mut out), Err(libc::EINVAL));
        // /dev/null answers every ioctl with ENOTTY: the value not in the view went there.
        assert_eq!(h.get(b"cold", &mut out), Err(libc::ENOTTY));
        let c = h.counters();
        assert_eq!(c.view_hits.load(Ordering::Relaxed), 2);
        assert_eq!(c.view_misses.load(Ordering::Relaxed), 1);
        assert_eq!(c.device_gets.load(Ordering::Relaxed), 1);

        // A view of another device is not used.
        let other = Handle::open_paths(Path::new("/dev/zero"), Some(&path)).unwrap();
        assert!(!other.view_live());
        assert_eq!(other.get(b"k", &mut out), Err(libc::ENOTTY));
        // Without a view, the device answers.
        let bare = Handle::open_paths(Path::new("/dev/null"), None).unwrap();
        assert_eq!(bare.get(b"k", &mut out), Err(libc::ENOTTY));
        drop(w);
        assert!(!h.view_live(), "a dead view is not used");
        assert_eq!(h.get(b"k", &mut out), Err(libc::ENOTTY));
    }

    #[test]
    fn open_by_name_finds_the_view_by_the_node_name() {
        let e = Handle::open(Some(OsStr::new("/nonexistent/node"))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let h = Handle::open(Some(OsStr::new("null"))).unwrap();
        assert_eq!(
            h.view
                .as_ref()
                .map(|v| v.path().file_name().unwrap().to_owned()),
            Some(OsString::from("null.view"))
        );
    }

    #[test]
    fn safe_get_request_layout() {
        let b = safe_get::request(b"key", 7);
        assert_eq!(b.len(), 536 + 7);
        assert_eq!(&b[..2], &3u16.to_le_bytes());
        assert_eq!(&b[8..16], &7u64.to_le_bytes());
        assert_eq!(&b[24..27], b"key");
        assert_eq!(safe_get::value_len(&b), 0);
    }
}
