//! The shared view of an hpkv store: reads without a system call.
//!
//! hpkvd publishes a read-only view of its store in a tmpfs file (one per served device, for
//! instance `/run/hpkv/hpkv.view`): a key table holding **every live key**, and a bounded value
//! arena holding the values the daemon chose to cache. Readers in other processes map the
//! file read-only and look keys up with plain loads: a hit copies a validated value, a miss
//! is an authoritative "no such key", and anything the view cannot vouch for is
//! [`Lookup::Unknown`], which sends the caller to the device.
//!
//! - [`ViewWriter`] (the daemon): [`create`](ViewWriter::create) (marks any previous view
//!   dead), one [`upsert`](ViewWriter::upsert) per live key, [`publish`](ViewWriter::publish);
//!   then, for every write, after it is durable and **before** it is acknowledged:
//!   [`upsert`](ViewWriter::upsert), [`remove`](ViewWriter::remove) or
//!   [`clear`](ViewWriter::clear); [`fill`](ViewWriter::fill) when a value was read from the
//!   device; [`set_stats`](ViewWriter::set_stats) after each batch;
//!   [`heartbeat`](ViewWriter::heartbeat) every [`HEARTBEAT_INTERVAL`];
//!   [`mark_dead`](ViewWriter::mark_dead) (or drop) on exit.
//! - [`ViewReader`] (clients, the C library, the preload library): [`open`](ViewReader::open)
//!   checks the file can be trusted and its header is sane; [`get`](ViewReader::get) answers
//!   [`Lookup::Hit`], [`Lookup::Miss`] or [`Lookup::Unknown`];
//!   [`is_dead`](ViewReader::is_dead) tells a long-lived reader to reopen the path.
//!
//! The coherence contract: a lookup that starts after an update call returned sees that
//! update or a later one; a lookup never returns a torn value, a stale value, or a deleted
//! key. DESIGN.md ("The shared view") has the layout byte by byte and the argument.
//!
//! ```
//! use hpkv_view::{Lookup, Unknown, ViewConfig, ViewReader, ViewWriter};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("hpkv.view");
//! // 1000 keys, 64 KiB of keys, 1 MiB of values.
//! let mut writer = ViewWriter::create(&path, &ViewConfig::new(1000, 64 << 10, 1 << 20))?;
//! writer.upsert(b"greeting", 1, Some(b"hello"), 5)?;
//! writer.upsert(b"big", 2, None, 90_000)?; // exists, value only on the device
//! writer.publish()?;
//!
//! let reader = ViewReader::open(&path)?;
//! let mut value = Vec::new();
//! assert_eq!(reader.get(b"greeting", &mut value), Lookup::Hit { seq: 1 });
//! assert_eq!(value, b"hello");
//! assert_eq!(reader.get(b"nobody", &mut value), Lookup::Miss);
//! assert_eq!(reader.get(b"big", &mut value), Lookup::Unknown(Unknown::NotCached));
//!
//! writer.remove(b"greeting", 3)?;
//! assert_eq!(reader.get(b"greeting", &mut value), Lookup::Miss);
//!
//! drop(writer); // marks the view dead
//! assert!(reader.is_dead());
//! assert_eq!(reader.get(b"big", &mut value), Lookup::Unknown(Unknown::Dead));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]
// Offsets, lengths and slot indexes move between u64 (the file's format) and usize (memory
// addresses); shm.rs refuses to build for targets where usize is not 64 bits, so these casts
// lose nothing. Values are checked against their bounds before every narrowing to u32.
#![allow(clippy::cast_possible_truncation)]

mod error;
mod hash;
mod layout;
mod reader;
mod shm;
mod writer;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use error::{ConfigError, CreateError, OpenError, WriteError};
pub use layout::{
    ARENA_BYTES_MAX, HEADER_BYTES, KEYS_MAX, PROBE_SLOTS_MAX, SLOTS_PER_KEY, SLOT_BYTES,
};
pub use reader::{Lookup, Unknown, ViewReader, ViewState};
pub use writer::{mark_dead_at, Heartbeat, ViewConfig, ViewWriter, VALUE_BLOCK_SHARE_MAX};

/// The longest key (the store's limit).
pub const KEY_BYTES_MAX: usize = 512;
/// The longest value (the store's limit).
pub const VALUE_BYTES_MAX: usize = 102_400;
/// How often the daemon should bump the heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// Readers treat a view whose heartbeat is older than this as dead (a crashed daemon).
pub const HEARTBEAT_STALE_NS: u64 = 2_000_000_000;
/// Attempts of one lookup (each at most [`PROBE_SLOTS_MAX`] slots) before it answers
/// [`Unknown::Contended`].
pub const READ_ATTEMPTS_MAX: u32 = 8;
/// The largest file a reader accepts: a header, [`KEYS_MAX`] keys' slots and two arenas of
/// [`ARENA_BYTES_MAX`].
pub const FILE_BYTES_MAX: u64 =
    HEADER_BYTES + KEYS_MAX * SLOTS_PER_KEY * SLOT_BYTES + 2 * ARENA_BYTES_MAX + 3 * 4096;

/// The store's numbers the daemon publishes (the module's `/proc/hpkv_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewStats {
    /// Live records.
    pub records: u64,
    /// Sum of the live values' lengths ("Total disk usage").
    pub value_bytes: u64,
    /// The device's size in bytes.
    pub device_bytes: u64,
}
