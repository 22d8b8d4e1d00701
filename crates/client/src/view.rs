//! GETs through hpkvd's shared view: no system call when the view can answer.
//!
//! hpkvd publishes a read-only view of its store in `/run/hpkv/NAME.view` for the node
//! `/dev/NAME` (`hpkvd --view-dir`; `HPKV_VIEW_DIR` points clients elsewhere). A
//! [`Client`](crate::Client) opened on the node answers [`get`](crate::Client::get) from it
//! when it can: a value the view holds, or an authoritative "no such key". Whatever the view
//! cannot vouch for (a value it does not hold, a table being rebuilt, a daemon that stopped
//! beating, a view of another node) goes to the device as before. A dead view (its daemon
//! exited, or replaced it by a larger one) is looked for again at most every 200 ms
//! (`hpkv_nodeview`, shared with the C and preload libraries).
//!
//! The coherence contract is the view's: a GET that starts after a write was acknowledged,
//! to any process, sees that write or a later one, and never a torn or deleted value
//! (DESIGN.md, "The shared view").

use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use hpkv_nodeview::{char_device, name_of_path, view_path, Env, NodeView};
use hpkv_view::Lookup;

/// Environment variable that keeps clients opened afterwards off the view (`off` or `0`):
/// every GET goes to the device.
pub const VIEW_ENV: &str = "HPKV_SHARED_VIEW";

/// How a client's GETs were answered ([`Client::view_counters`](crate::Client::view_counters)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ViewCounters {
    /// Values the view answered.
    pub hits: u64,
    /// "No such key" answers the view gave.
    pub misses: u64,
    /// GETs answered by the device (no view, or one that could not answer).
    pub device: u64,
}

/// What the view said about a key.
pub(crate) enum Answer {
    Value(Vec<u8>),
    Absent,
    /// Ask the device.
    Device,
}

/// The view of the node a client opened, and how its GETs were answered.
#[derive(Default)]
pub(crate) struct ViewLink {
    node: Option<NodeView>,
    hits: AtomicU64,
    misses: AtomicU64,
    device: AtomicU64,
}

impl ViewLink {
    /// The link for the node `file` (opened at `path`, if known). Without a view (turned off
    /// by [`VIEW_ENV`], or `file` is no character device with a name) every GET goes to the
    /// device. The view itself may appear later: it is looked for again on use.
    pub fn for_node(file: &File, path: Option<&Path>) -> ViewLink {
        ViewLink {
            node: node_view(file, path),
            ..ViewLink::default()
        }
    }

    /// A link that never uses a view.
    pub fn off() -> ViewLink {
        ViewLink::default()
    }

    /// A link to the view at `path` for the node with device number `rdev` (tests).
    #[cfg(test)]
    pub fn at(path: std::path::PathBuf, rdev: u64) -> ViewLink {
        ViewLink {
            node: Some(NodeView::new(path, rdev)),
            ..ViewLink::default()
        }
    }

    /// Looks `key` up in the view.
    pub fn get(&self, key: &[u8]) -> Answer {
        let mut value = Vec::new();
        let found = self
            .node
            .as_ref()
            .and_then(|n| n.with(|r| r.get(key, &mut value)));
        match found {
            Some(Lookup::Hit { .. }) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Answer::Value(value)
            }
            Some(Lookup::Miss) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Answer::Absent
            }
            Some(Lookup::Unknown(_)) | None => {
                self.device.fetch_add(1, Ordering::Relaxed);
                Answer::Device
            }
        }
    }

    /// Whether a live view of the node is mapped now.
    pub fn is_live(&self) -> bool {
        self.node
            .as_ref()
            .and_then(|n| n.with(hpkv_view::ViewReader::is_live))
            .unwrap_or(false)
    }

    pub fn counters(&self) -> ViewCounters {
        ViewCounters {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            device: self.device.load(Ordering::Relaxed),
        }
    }
}

fn node_view(file: &File, path: Option<&Path>) -> Option<NodeView> {
    if std::env::var_os(VIEW_ENV).is_some_and(|v| v == "off" || v == "0") {
        return None;
    }
    let md = file.metadata().ok()?;
    if !md.file_type().is_char_device() {
        return None;
    }
    let rdev = md.rdev();
    // The kernel's name for the node; the path's when sysfs cannot say.
    let name = char_device(rdev)
        .map(|d| d.name)
        .or_else(|| name_of_path(path?.as_os_str()))?;
    Some(NodeView::new(view_path(&Env::from_process(), &name), rdev))
}
