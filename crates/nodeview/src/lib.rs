//! The shared view of one hpkv device node, as the C library (`libhpkv`) and the preload
//! library (`libhpkv_preload.so`) use it.
//!
//! hpkvd publishes the view of the node `/dev/NAME` at `/run/hpkv/NAME.view`
//! ([`view_path`]). A [`NodeView`] ties one such path to the node's device number
//! (`st_rdev`): it answers only while the view it holds says it describes that very node
//! ([`hpkv_view::ViewReader::device`]), and when the view dies (its daemon stopped, or
//! republished a larger view) it opens the path again, at most once per
//! [`REOPEN_INTERVAL`], so that a missing or dead view costs the caller's hot path nothing
//! but a fall back to the device.
//!
//! Nothing here blocks: every lock is taken with `try_`, and a lock that is busy (another
//! thread reopening, or a signal handler that interrupted this thread in the middle of a
//! lookup) makes the lookup answer "ask the device". Nothing here panics on bad input.
#![deny(unsafe_code)]
#![warn(missing_docs)]

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use hpkv_view::ViewReader;

/// Where hpkvd publishes its views.
pub const VIEW_DIR_DEFAULT: &str = "/run/hpkv";
/// Environment: a directory to look for `NAME.view` in instead of [`VIEW_DIR_DEFAULT`].
pub const ENV_VIEW_DIR: &str = "HPKV_VIEW_DIR";
/// Environment: one view file to use for every node (tests, unusual layouts). A node still
/// gets answers from it only if the view's device number is the node's.
pub const ENV_VIEW: &str = "HPKV_VIEW";
/// Environment: the store that `/proc/hpkv_stats` and `hpkv_open(NULL)` describe.
pub const ENV_NAME: &str = "HPKV_NAME";
/// The store's name when [`ENV_NAME`] is not set (hpkvd's default `--name`).
pub const NAME_DEFAULT: &str = "hpkv";
/// A dead or missing view is looked for again at most this often.
pub const REOPEN_INTERVAL: Duration = Duration::from_millis(200);
/// The longest device name accepted (Linux limits device names to a path component).
pub const NAME_BYTES_MAX: usize = 255;

/// The environment the libraries read once, when they start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    /// [`ENV_VIEW_DIR`].
    pub view_dir: Option<OsString>,
    /// [`ENV_VIEW`].
    pub view: Option<OsString>,
    /// [`ENV_NAME`].
    pub name: Option<OsString>,
}

impl Env {
    /// Reads the three variables (empty ones count as unset).
    pub fn from_process() -> Env {
        let get = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        Env {
            view_dir: get(ENV_VIEW_DIR),
            view: get(ENV_VIEW),
            name: get(ENV_NAME),
        }
    }

    /// The store's name: [`ENV_NAME`] or [`NAME_DEFAULT`].
    pub fn store_name(&self) -> OsString {
        self.name
            .clone()
            .unwrap_or_else(|| OsString::from(NAME_DEFAULT))
    }
}

/// The view file of the node `/dev/NAME`: [`ENV_VIEW`] if set, else `DIR/NAME.view` with
/// `DIR` from [`ENV_VIEW_DIR`] or [`VIEW_DIR_DEFAULT`].
pub fn view_path(env: &Env, name: &OsStr) -> PathBuf {
    if let Some(view) = &env.view {
        return PathBuf::from(view);
    }
    let dir = env
        .view_dir
        .as_deref()
        .unwrap_or_else(|| OsStr::new(VIEW_DIR_DEFAULT));
    let mut file = name.to_os_string();
    file.push(".view");
    Path::new(dir).join(file)
}

/// A node's name from a path to it: `/dev/NAME` or `NAME` gives `NAME`; anything with a
/// directory other than `/dev` gives `None`. Used for names passed to `hpkv_open`.
pub fn name_of_path(path: &OsStr) -> Option<OsString> {
    let bytes = path.as_bytes();
    let name = bytes.strip_prefix(b"/dev/").unwrap_or(bytes);
    valid_name(name).then(|| OsString::from_vec(name.to_vec()))
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && !name.contains(&b'/')
        && !name.contains(&0)
        && name != b"."
        && name != b".."
}

/// What sysfs says about a character device (`/sys/dev/char/MAJOR:MINOR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharDevice {
    /// `DEVNAME` of its uevent: the node is `/dev/DEVNAME`.
    pub name: OsString,
    /// Whether it is a CUSE device (hpkvd's kind), whose view may appear later.
    pub cuse: bool,
}

/// Looks a character device up in sysfs by its device number. `None` if sysfs does not know
/// it (not mounted, or no such device) or names it oddly.
pub fn char_device(rdev: u64) -> Option<CharDevice> {
    let (major, minor) = split_dev(rdev);
    let dir = PathBuf::from(format!("/sys/dev/char/{major}:{minor}"));
    let uevent = std::fs::read(dir.join("uevent")).ok()?;
    let name = uevent_devname(&uevent)?;
    let class = std::fs::read_link(dir.join("subsystem")).ok();
    let cuse = class.as_deref().and_then(Path::file_name) == Some(OsStr::new("cuse"));
    Some(CharDevice { name, cuse })
}

/// `DEVNAME=` of a uevent file.
pub fn uevent_devname(uevent: &[u8]) -> Option<OsString> {
    let name = uevent
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"DEVNAME="))?;
    valid_name(name).then(|| OsString::from_vec(name.to_vec()))
}

/// glibc's `major()` and `minor()` of a `dev_t`.
pub fn split_dev(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff);
    (major, minor)
}

/// Nanoseconds since the first call in this process (a monotonic clock for rate limits).
fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The view of one device node: a path and the node's device number.
pub struct NodeView {
    path: PathBuf,
    rdev: u64,
    reader: RwLock<Option<ViewReader>>,
    /// [`now_ns`] before which no reopen is tried.
    reopen_after_ns: AtomicU64,
    /// Views opened (the first one included).
    opens: AtomicU64,
}

impl std::fmt::Debug for NodeView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeView")
            .field("path", &self.path)
            .field("rdev", &self.rdev)
            .finish_non_exhaustive()
    }
}

impl NodeView {
    /// A node view for the node with device number `rdev`, whose view is at `path`. Tries to
    /// open the view at once; if that fails, lookups fall back until a later try succeeds.
    pub fn new(path: PathBuf, rdev: u64) -> NodeView {
        let view = NodeView {
            path,
            rdev,
            reader: RwLock::new(None),
            reopen_after_ns: AtomicU64::new(0),
            opens: AtomicU64::new(0),
        };
        view.try_reopen();
        view
    }

    /// The view file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node's device number.
    pub fn rdev(&self) -> u64 {
        self.rdev
    }

    /// How many times a view was opened (for tests: reopening after a replacement).
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    /// Runs `f` on the view if there is a live one that describes this node; `None` means
    /// "ask the device" (no view, a dead view, a view of another node, or a lock busy).
    /// A dead or missing view is reopened first, at most once per [`REOPEN_INTERVAL`].
    pub fn with<T>(&self, f: impl FnOnce(&ViewReader) -> T) -> Option<T> {
        {
            let guard = self.reader.try_read().ok()?;
            if let Some(reader) = guard.as_ref().filter(|r| !r.is_dead()) {
                return (reader.device() == self.rdev).then(|| f(reader));
            }
        }
        if !self.try_reopen() {
            return None;
        }
        let guard = self.reader.try_read().ok()?;
        let reader = guard
            .as_ref()
            .filter(|r| !r.is_dead() && r.device() == self.rdev)?;
        Some(f(reader))
    }

    /// Opens the path again if the interval allows and no other thread holds the view;
    /// `true` if a live view is now in place.
    fn try_reopen(&self) -> bool {
        let now = now_ns();
        let after = self.reopen_after_ns.load(Ordering::Relaxed);
        if now < after {
            return false;
        }
        let next = now.saturating_add(u64::try_from(REOPEN_INTERVAL.as_nanos()).unwrap_or(0));
        if self
            .reopen_after_ns
            .compare_exchange(after, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false; // another thread is at it
        }
        let Ok(opened) = ViewReader::open(&self.path) else {
            return false;
        };
        let Ok(mut guard) = self.reader.try_write() else {
            return false;
        };
        *guard = Some(opened);
        self.opens.fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpkv_view::{Lookup, ViewConfig, ViewWriter};

    #[test]
    fn paths_and_names() {
        let env = Env::default();
        assert_eq!(
            view_path(&env, OsStr::new("hpkv")),
            PathBuf::from("/run/hpkv/hpkv.view")
        );
        let env = Env {
            view_dir: Some("/tmp/x".into()),
            ..Env::default()
        };
        assert_eq!(
            view_path(&env, OsStr::new("a")),
            PathBuf::from("/tmp/x/a.view")
        );
        let env = Env {
            view: Some("/tmp/y.view".into()),
            ..env
        };
        assert_eq!(
            view_path(&env, OsStr::new("a")),
            PathBuf::from("/tmp/y.view")
        );
        assert_eq!(name_of_path(OsStr::new("/dev/hpkv")), Some("hpkv".into()));
        assert_eq!(name_of_path(OsStr::new("store2")), Some("store2".into()));
        assert_eq!(name_of_path(OsStr::new("/tmp/hpkv")), None);
        assert_eq!(name_of_path(OsStr::new("/dev/")), None);
        assert_eq!(name_of_path(OsStr::new("..")), None);
        assert_eq!(Env::default().store_name(), OsString::from("hpkv"));
    }

    #[test]
    fn uevent_and_dev_numbers() {
        let u = b"MAJOR=1\nMINOR=3\nDEVNAME=null\nDEVMODE=0666\n";
        assert_eq!(uevent_devname(u), Some("null".into()));
        assert_eq!(uevent_devname(b"MAJOR=1\n"), None);
        assert_eq!(uevent_devname(b"DEVNAME=a/b\n"), None);
        // glibc's makedev(1, 3) and makedev(511, 70000).
        assert_eq!(split_dev(0x103), (1, 3));
        let big = ((0x0001_1170_u64 & 0xffff_ff00) << 12) | (0x0001_1170 & 0xff) | (511 << 8);
        assert_eq!(split_dev(big), (511, 70000));
    }

    #[test]
    fn null_is_a_char_device_named_null() {
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata("/dev/null").unwrap().rdev();
        if let Some(dev) = char_device(rdev) {
            assert_eq!(dev.name, OsString::from("null"));
            assert!(!dev.cuse);
        }
    }

    fn writer_at(path: &Path, device: u64) -> ViewWriter {
        let mut config = ViewConfig::new(64, 4096, 4096);
        config.device = device;
        let mut w = ViewWriter::create(path, &config).unwrap();
        w.upsert(b"k", 1, Some(b"v1"), 2).unwrap();
        w.publish().unwrap();
        w
    }

    #[test]
    fn answers_for_its_node_only_and_reopens_a_replaced_view() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.view");
        let missing = NodeView::new(path.clone(), 7);
        assert!(missing.with(|_| ()).is_none(), "no view yet");

        let w1 = writer_at(&path, 7);
        let other = NodeView::new(path.clone(), 8);
        assert!(other.with(|_| ()).is_none(), "a view of another node");

        let node = NodeView::new(path.clone(), 7);
        let mut scratch = Vec::new();
        assert_eq!(
            node.with(|r| r.get(b"k", &mut scratch)),
            Some(Lookup::Hit { seq: 1 })
        );
        assert_eq!(scratch, b"v1");

        // The daemon replaces its view: the old one dies, the new one is found by path.
        let mut w2 = {
            let mut config = ViewConfig::new(64, 4096, 4096);
            config.device = 7;
            ViewWriter::create(&path, &config).unwrap()
        };
        assert!(node.with(|_| ()).is_none(), "dead, and too early to reopen");
        w2.upsert(b"k", 2, Some(b"v2"), 2).unwrap();
        w2.publish().unwrap();
        std::thread::sleep(REOPEN_INTERVAL + Duration::from_millis(20));
        assert_eq!(
            node.with(|r| r.get(b"k", &mut scratch)),
            Some(Lookup::Hit { seq: 2 })
        );
        assert_eq!(scratch, b"v2");
        assert_eq!(node.opens(), 2);
        drop(w1);
        // The node that had no view at first finds this one once the interval allows.
        std::thread::sleep(REOPEN_INTERVAL);
        assert!(missing.with(|_| ()).is_some());
    }
}
