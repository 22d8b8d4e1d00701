//! hpkvd's request monitor and identity.
//!
//! At log level 7 (`--log-level 7`, or `RUST_LOG=trace`) every request is logged as it
//! arrives, with its command, its key (escaped, as hpkvctl shows keys on a terminal) and the
//! size of its value, and every write once more when it is answered; at other levels the
//! monitor costs one check of the level per request. The identity is what `HPKV_IOC_INFO`
//! answers.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use hpkv_abi::{BatchRecords, Command, DurabilityMode, InfoRecord, Profile, WriteRequest};
use hpkv_engine::{Durability, Engine, WriteOp};

/// Whether requests are logged (log level 7, trace).
pub fn enabled() -> bool {
    log::log_enabled!(log::Level::Trace)
}

/// `key` escaped, in quotes: printable ASCII as it is, every other byte `\xHH` (or `\n` ...).
fn key(key: &[u8]) -> String {
    format!("\"{}\"", key.escape_ascii())
}

/// An ioctl command as the monitor shows it.
pub fn command(cmd: &Command<'_>) -> String {
    match cmd {
        Command::Get { key: k, .. } => format!("GET {}", key(k)),
        Command::Delete { key: k } => format!("DELETE {}", key(k)),
        Command::Purge => "PURGE".into(),
        Command::Insert { key: k, value } => format!("INSERT {} ({} bytes)", key(k), value.len()),
        Command::Append { key: k, suffix } => {
            format!("PARTIAL_UPDATE {} (+{} bytes)", key(k), suffix.len())
        }
        Command::SafeGet { key: k, capacity } => {
            format!("HPKV_IOC_GET {} (room {capacity})", key(k))
        }
        Command::Range(r) => {
            let mut text = format!("HPKV_IOC_RANGE from {}", key(r.start));
            let _ = write!(
                text,
                "{} to {} (max {}, room {})",
                if r.start_exclusive { " exclusive" } else { "" },
                key(r.end),
                r.max_count,
                r.capacity
            );
            text
        }
        Command::Stats => "HPKV_IOC_STATS".into(),
        Command::Info => "HPKV_IOC_INFO".into(),
        Command::Sync => "HPKV_IOC_SYNC".into(),
        Command::PutBatch(records) => batch(records),
    }
}

/// A `PUT_BATCH`: its size and its first key.
fn batch(records: &BatchRecords<'_>) -> String {
    let bytes: usize = records.iter().map(|(k, v)| k.len() + v.len()).sum();
    let first = records
        .iter()
        .next()
        .map_or_else(String::new, |(k, _)| key(k));
    format!(
        "HPKV_IOC_PUT_BATCH of {} records ({bytes} bytes), the first {first}",
        records.count()
    )
}

/// A `write()` as the monitor shows it.
pub fn write(request: &WriteRequest<'_>) -> String {
    match request {
        WriteRequest::Put { key: k, value } => format!("write {} ({} bytes)", key(k), value.len()),
        WriteRequest::Append { key: k, suffix } => {
            format!("write {} (+{} bytes)", key(k), suffix.len())
        }
    }
}

/// A write handed to the engine, for the line that says how it was answered.
pub fn op(op: &WriteOp) -> String {
    match op {
        WriteOp::Put { key: k, value } => format!("put {} ({} bytes)", key(k), value.len()),
        WriteOp::Append { key: k, suffix } => {
            format!("append {} (+{} bytes)", key(k), suffix.len())
        }
        WriteOp::Delete { key: k } => format!("delete {}", key(k)),
        WriteOp::Purge => "purge".into(),
        WriteOp::Sync => "sync".into(),
        // A kind of write this daemon does not know yet.
        _ => "write".into(),
    }
}

/// The 16 bytes of a hyphenated UUID.
fn uuid_bytes(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text.bytes().filter(|&c| c != b'-').collect();
    let mut bytes = [0u8; 16];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks(2)) {
        let pair = std::str::from_utf8(pair).unwrap_or("00");
        *byte = u8::from_str_radix(pair, 16).unwrap_or(0);
    }
    bytes
}

/// What `HPKV_IOC_INFO` answers for the store `engine` opened from `path`, served as
/// `/dev/NAME`.
pub fn identity(
    engine: &Engine,
    name: &str,
    path: &Path,
    profile: Profile,
    durability: Durability,
) -> InfoRecord {
    let (mode, delay_ms, writes) = match durability {
        Durability::Sync => (DurabilityMode::Sync, 0, 0),
        Durability::WriteBehind {
            max_delay,
            max_writes,
        } => (
            DurabilityMode::WriteBehind,
            u64::try_from(max_delay.as_millis()).unwrap_or(u64::MAX),
            u64::from(max_writes),
        ),
    };
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    InfoRecord {
        store_uuid: uuid_bytes(&engine.uuid()),
        abi_profile: profile.number(),
        durability: mode.number(),
        write_behind_delay_ms: delay_ms,
        write_behind_writes: writes,
        started_unix_ms: started,
        version: crate::VERSION.to_string(),
        name: name.to_string(),
        device_path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shown_escaped_and_uuids_read_back() {
        let cmd = Command::Insert {
            key: b"k\0:\n\x1b",
            value: b"v",
        };
        assert_eq!(command(&cmd), "INSERT \"k\\x00:\\n\\x1b\" (1 bytes)");
        let arg = hpkv_abi::encode_put_batch(&[(b"k\n", b"12"), (b"b", b"3")]).unwrap();
        let decoded = hpkv_abi::decode_ioctl(
            Profile::Readme,
            hpkv_abi::IOC_PUT_BATCH,
            4096,
            arg.as_bytes(),
            0,
        );
        let hpkv_abi::Decoded::Ready(cmd) = decoded else {
            panic!("{decoded:?}");
        };
        assert_eq!(
            command(&cmd),
            "HPKV_IOC_PUT_BATCH of 2 records (6 bytes), the first \"k\\n\""
        );
        let text = "30313233-3435-3637-3839-616263646566";
        let info = InfoRecord {
            store_uuid: uuid_bytes(text),
            ..InfoRecord::default()
        };
        assert_eq!(info.uuid_text(), text);
    }
}
