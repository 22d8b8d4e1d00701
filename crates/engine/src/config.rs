//! How a store is opened and how it acknowledges writes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::observe::ObserverSink;

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Once it is on stable media: written and the device cache flushed. Writers that
    /// arrive together share one flush (group commit).
    Sync,
    /// Once the device has it (written, not yet flushed). The device cache is flushed at
    /// most `max_delay` after the oldest unflushed write, after `max_writes` writes, on
    /// SYNC and at shutdown. A power loss can lose what was not flushed yet, a suffix of
    /// the acknowledged writes within those bounds.
    WriteBehind {
        /// The longest a write stays unflushed.
        max_delay: Duration,
        /// The most writes left unflushed.
        max_writes: u32,
    },
}

impl Durability {
    /// The module's bounds: 30 s or 1024 writes.
    pub const MODULE_WRITE_BEHIND: Durability = Durability::WriteBehind {
        max_delay: Duration::from_secs(30),
        max_writes: 1024,
    };
}

/// How to open a store.
#[derive(Clone, Debug)]
#[allow(clippy::struct_excessive_bools)] // independent switches, each a command-line flag
pub struct Config {
    /// When writes are acknowledged.
    pub durability: Durability,
    /// Bytes of values to keep in memory; 0 turns the cache off.
    pub cache_bytes: u64,
    /// Format a device whose first 40 KiB are zero.
    pub initialize_if_empty: bool,
    /// Format the device even if it holds data.
    pub force_initialize: bool,
    /// Rebuild the index by scanning the whole log, even if a snapshot is there.
    pub force_read_disk: bool,
    /// Compact in the background (tests turn it off to drive compaction by hand).
    pub background_compaction: bool,
    /// Told how long operations (the recovery scan) advance, to show them to a person.
    pub progress: Option<ProgressSink>,
    /// Told about every applied write before it is acknowledged ([`crate::observe`]).
    pub observer: Option<ObserverSink>,
    /// In `sync` mode, how long the timer thread sleeps before it commits what is queued if
    /// no writer has: a safety net only, since the writers' own leading commits every write
    /// (DESIGN.md, "Write path"). Tests set it long to show that.
    pub sync_safety_net: Duration,
}

/// The default [`Config::sync_safety_net`].
pub const SYNC_SAFETY_NET: Duration = Duration::from_secs(1);

impl Default for Config {
    fn default() -> Config {
        Config {
            durability: Durability::Sync,
            cache_bytes: 64 << 20,
            initialize_if_empty: true,
            force_initialize: false,
            force_read_disk: false,
            background_compaction: true,
            progress: None,
            observer: None,
            sync_safety_net: SYNC_SAFETY_NET,
        }
    }
}

/// Receives the progress of a long operation, for a progress bar or a log line. The engine
/// itself draws nothing.
pub trait Progress: Send + Sync {
    /// An operation of `total` steps begins; `what` names it ("recovering").
    fn start(&self, what: &str, total: u64);
    /// `done` steps of the current operation are finished; `note` says what was found so far.
    fn advance(&self, done: u64, note: &str);
    /// The operation is over.
    fn finish(&self);
}

/// A shared [`Progress`] for [`Config`].
#[derive(Clone)]
pub struct ProgressSink(pub Arc<dyn Progress>);

impl fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressSink")
    }
}
