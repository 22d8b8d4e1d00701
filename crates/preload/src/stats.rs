//! `/proc/hpkv_stats`: the module's three lines, for programs written for the module.
//!
//! User space cannot add a file to `/proc`. When the program opens `/proc/hpkv_stats` (by
//! that exact path, through `open`, `openat`, `fopen` or their variants) for reading and the
//! kernel has no such file, the library returns a read-only in-memory file (a `memfd`)
//! holding the three lines for one store, generated at open:
//!
//! ```text
//! Total records: N
//! Total disk usage: N bytes
//! Device size: N bytes
//! ```
//!
//! The store is the one named by `HPKV_NAME` (default `hpkv`, hpkvd's default `--name`). The
//! numbers come from its view when it is live, else from the STATS ioctl on `/dev/NAME`; if
//! neither answers, the open fails with ENOENT as before.

use std::path::{Path, PathBuf};

use hpkv_abi::StatsRecord;
use hpkv_view::ViewReader;

use crate::nodes::{init_env, stats_store_name};

/// The path the module's statistics lived at.
pub const PROC_STATS_PATH: &[u8] = b"/proc/hpkv_stats";

/// Whether `path` names the module's statistics file.
pub fn is_proc_stats(path: &[u8]) -> bool {
    path == PROC_STATS_PATH
}

/// The store's device node.
pub fn device_path() -> PathBuf {
    Path::new("/dev").join(stats_store_name())
}

/// The three lines, from the view if it is live, else from `device_stats` (the STATS ioctl on
/// the store's node); `None` if neither answers.
pub fn proc_text(device_stats: impl FnOnce(&Path) -> Option<StatsRecord>) -> Option<String> {
    let view = hpkv_nodeview::view_path(init_env(), stats_store_name());
    let from_view = ViewReader::open(view)
        .ok()
        .filter(ViewReader::is_live)
        .and_then(|reader| reader.stats());
    let record = match from_view {
        Some(s) => StatsRecord {
            records: s.records,
            disk_usage_bytes: s.value_bytes,
            device_size_bytes: s.device_bytes,
            ..StatsRecord::default()
        },
        None => device_stats(&device_path())?,
    };
    Some(record.proc_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_path() {
        assert!(is_proc_stats(b"/proc/hpkv_stats"));
        assert!(!is_proc_stats(b"/proc/hpkv_stats2"));
        assert!(!is_proc_stats(b"hpkv_stats"));
    }

    #[test]
    fn falls_back_to_the_device_then_to_nothing() {
        // No view at /run/hpkv/hpkv.view on a build machine (if there is one, it answers).
        if ViewReader::open(hpkv_nodeview::view_path(init_env(), stats_store_name())).is_ok() {
            return;
        }
        let text = proc_text(|p| {
            assert_eq!(p, device_path());
            Some(StatsRecord {
                records: 3,
                disk_usage_bytes: 18,
                device_size_bytes: 1 << 30,
                ..StatsRecord::default()
            })
        });
        assert_eq!(
            text.as_deref(),
            Some("Total records: 3\nTotal disk usage: 18 bytes\nDevice size: 1073741824 bytes\n")
        );
        assert_eq!(proc_text(|_| None), None);
    }
}
