//! The hpkv nodes the program opened: one [`NodeView`] per device number.
//!
//! A descriptor is tracked when `fstat` says it is a character device and this module finds a
//! view for its device number: by the node's name in sysfs (`/sys/dev/char/MAJOR:MINOR`,
//! `DEVNAME`), the view `/run/hpkv/NAME.view` (or the `HPKV_VIEW_DIR` / `HPKV_VIEW`
//! overrides) must exist and say it describes that device number. A CUSE node (hpkvd's kind)
//! is tracked even before its view exists, since the view may come later. Other character
//! devices (`/dev/null`, terminals) are remembered as "not hpkv" for [`NEGATIVE_TTL_NS`], so
//! opening them often costs one sysfs look-up per second.
//!
//! Nodes live in a static table of [`NODES_MAX`] entries, filled once and never freed (each
//! holds at most one mapping of its view).

use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use hpkv_nodeview::{char_device, view_path, Env, NodeView};

/// Distinct hpkv nodes (device numbers) a process can use through the view.
pub const NODES_MAX: usize = 16;
/// Character devices remembered as "not hpkv" at once.
const NEGATIVE_MAX: usize = 8;
/// How long a device number stays "not hpkv".
pub const NEGATIVE_TTL_NS: u64 = 1_000_000_000;

const FREE: u8 = 0;
const CLAIMED: u8 = 1;
const READY: u8 = 2;

struct Node {
    state: AtomicU8,
    rdev: AtomicU64,
    view: OnceLock<NodeView>,
}

static NODES: [Node; NODES_MAX] = [const {
    Node {
        state: AtomicU8::new(FREE),
        rdev: AtomicU64::new(0),
        view: OnceLock::new(),
    }
}; NODES_MAX];

struct Negative {
    /// rdev + 1 (0: empty).
    rdev: AtomicU64,
    until_ns: AtomicU64,
}

static NEGATIVE: [Negative; NEGATIVE_MAX] = [const {
    Negative {
        rdev: AtomicU64::new(0),
        until_ns: AtomicU64::new(0),
    }
}; NEGATIVE_MAX];
static NEGATIVE_NEXT: AtomicU64 = AtomicU64::new(0);

static ENV: OnceLock<Env> = OnceLock::new();

/// Reads the environment once (the library's constructor calls it; later calls do nothing).
pub fn init_env() -> &'static Env {
    ENV.get_or_init(Env::from_process)
}

fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The view of tracked node `index`.
#[inline]
pub fn view(index: u8) -> Option<&'static NodeView> {
    let node = NODES.get(usize::from(index))?;
    if node.state.load(Ordering::Acquire) != READY {
        return None;
    }
    node.view.get()
}

fn find(rdev: u64) -> Option<u8> {
    NODES.iter().enumerate().find_map(|(i, n)| {
        (n.state.load(Ordering::Acquire) == READY && n.rdev.load(Ordering::Relaxed) == rdev)
            .then(|| u8::try_from(i).ok())
            .flatten()
    })
}

fn known_negative(rdev: u64, now: u64) -> bool {
    NEGATIVE.iter().any(|n| {
        n.rdev.load(Ordering::Relaxed) == rdev.wrapping_add(1)
            && now < n.until_ns.load(Ordering::Relaxed)
    })
}

fn remember_negative(rdev: u64, now: u64) {
    let i = usize::try_from(NEGATIVE_NEXT.fetch_add(1, Ordering::Relaxed)).unwrap_or(0);
    let n = &NEGATIVE[i % NEGATIVE_MAX];
    n.until_ns
        .store(now.saturating_add(NEGATIVE_TTL_NS), Ordering::Relaxed);
    n.rdev.store(rdev.wrapping_add(1), Ordering::Relaxed);
}

/// The node index for a character device with device number `rdev`, registering it if it
/// is an hpkv node; `None` if it is not one (or the table is full).
pub fn node_for(rdev: u64) -> Option<u8> {
    if let Some(i) = find(rdev) {
        return Some(i);
    }
    let now = now_ns();
    if known_negative(rdev, now) {
        return None;
    }
    let env = init_env();
    let device = char_device(rdev);
    let path = match (&device, &env.view) {
        (Some(d), _) => view_path(env, &d.name),
        (None, Some(view)) => view.into(),
        (None, None) => {
            remember_negative(rdev, now);
            return None;
        }
    };
    let view = NodeView::new(path, rdev);
    let is_cuse = device.as_ref().is_some_and(|d| d.cuse);
    if !is_cuse && view.with(|_| ()).is_none() {
        remember_negative(rdev, now);
        return None;
    }
    register(rdev, view)
}

fn register(rdev: u64, view: NodeView) -> Option<u8> {
    let mut view = Some(view);
    for (i, node) in NODES.iter().enumerate() {
        if node
            .state
            .compare_exchange(FREE, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            node.rdev.store(rdev, Ordering::Relaxed);
            let _ = node.view.set(view.take()?);
            node.state.store(READY, Ordering::Release);
            return u8::try_from(i).ok();
        }
    }
    None
}

/// The store `/proc/hpkv_stats` describes: `HPKV_NAME`, default `hpkv`.
pub fn stats_store_name() -> &'static OsStr {
    static NAME: OnceLock<std::ffi::OsString> = OnceLock::new();
    NAME.get_or_init(|| init_env().store_name())
}
