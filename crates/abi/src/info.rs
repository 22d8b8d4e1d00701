//! `struct hpkv_info`: the reply of `HPKV_IOC_INFO`, who serves the device, built by the
//! daemon and parsed by clients with the same code.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::mem::offset_of;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::le::{set_u64, u64_at};
use crate::{uapi, INFO_STRUCT_SIZE};

/// How the daemon acknowledges writes (`hpkvd --durability`), as `struct hpkv_info` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DurabilityMode {
    /// Once on stable media.
    #[default]
    Sync,
    /// Once the device has the write; flushed within bounds.
    WriteBehind,
}

impl DurabilityMode {
    /// The mode's number in `struct hpkv_info`.
    pub fn number(self) -> u64 {
        match self {
            DurabilityMode::Sync => u64::from(uapi::HPKV_DURABILITY_SYNC),
            DurabilityMode::WriteBehind => u64::from(uapi::HPKV_DURABILITY_WRITE_BEHIND),
        }
    }

    /// The mode a number names, if it is one this crate knows.
    pub fn from_number(number: u64) -> Option<DurabilityMode> {
        [DurabilityMode::Sync, DurabilityMode::WriteBehind]
            .into_iter()
            .find(|m| m.number() == number)
    }

    /// The mode's name, as `hpkvd --durability` takes it.
    pub fn name(self) -> &'static str {
        match self {
            DurabilityMode::Sync => "sync",
            DurabilityMode::WriteBehind => "write-behind",
        }
    }
}

/// Who serves the device: the fields of `struct hpkv_info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InfoRecord {
    /// The store's identity, from its superblock.
    pub store_uuid: [u8; 16],
    /// The profile served: [`crate::ABI_README`] or [`crate::ABI_V13`].
    pub abi_profile: u64,
    /// How writes are acknowledged: a [`DurabilityMode`]'s number.
    pub durability: u64,
    /// Write-behind: the longest a write waits for a flush, in ms (0 in sync mode).
    pub write_behind_delay_ms: u64,
    /// Write-behind: the most writes between two flushes (0 in sync mode).
    pub write_behind_writes: u64,
    /// When hpkvd opened the store, in ms since 1970 (UTC).
    pub started_unix_ms: u64,
    /// hpkvd's version, commit and build profile.
    pub version: String,
    /// The node's name: `/dev/NAME`.
    pub name: String,
    /// The store's block device or image file.
    pub device_path: PathBuf,
}

/// Copies `text` into the field at `at` of `size` bytes, cut to leave at least one NUL.
fn put_text(b: &mut [u8], at: usize, size: usize, text: &[u8]) {
    let n = text.len().min(size - 1);
    b[at..at + n].copy_from_slice(&text[..n]);
}

/// The bytes of the field at `at` of `size` bytes, up to the first NUL.
fn text(b: &[u8], at: usize, size: usize) -> &[u8] {
    let field = &b[at..at + size];
    let end = field.iter().position(|&c| c == 0).unwrap_or(size);
    &field[..end]
}

const VERSION_SIZE: usize = uapi::HPKV_INFO_VERSION_MAX as usize;
const NAME_SIZE: usize = uapi::HPKV_INFO_NAME_MAX as usize;
const PATH_SIZE: usize = uapi::HPKV_INFO_PATH_MAX as usize;
const UUID_AT: usize = offset_of!(uapi::hpkv_info, store_uuid);
const VERSION_AT: usize = offset_of!(uapi::hpkv_info, version);
const NAME_AT: usize = offset_of!(uapi::hpkv_info, name);
const PATH_AT: usize = offset_of!(uapi::hpkv_info, device_path);
const _: () = assert!(NAME_AT - VERSION_AT == VERSION_SIZE && PATH_AT - NAME_AT == NAME_SIZE);

impl InfoRecord {
    /// `struct hpkv_info` as bytes (the daemon's side); texts too long are cut to fit.
    pub fn encode(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut b = vec![0u8; INFO_STRUCT_SIZE];
        b[UUID_AT..UUID_AT + 16].copy_from_slice(&self.store_uuid);
        let numbers = [
            (offset_of!(uapi::hpkv_info, abi_profile), self.abi_profile),
            (offset_of!(uapi::hpkv_info, durability), self.durability),
            (
                offset_of!(uapi::hpkv_info, write_behind_delay_ms),
                self.write_behind_delay_ms,
            ),
            (
                offset_of!(uapi::hpkv_info, write_behind_writes),
                self.write_behind_writes,
            ),
            (
                offset_of!(uapi::hpkv_info, started_unix_ms),
                self.started_unix_ms,
            ),
        ];
        for (at, n) in numbers {
            set_u64(&mut b, at, n);
        }
        put_text(&mut b, VERSION_AT, VERSION_SIZE, self.version.as_bytes());
        put_text(&mut b, NAME_AT, NAME_SIZE, self.name.as_bytes());
        put_text(
            &mut b,
            PATH_AT,
            PATH_SIZE,
            self.device_path.as_os_str().as_bytes(),
        );
        b
    }

    /// The record in `b` (the client's side), or `None` when `b` is shorter than `struct
    /// hpkv_info`. Texts that are not UTF-8 are decoded lossily.
    pub fn decode(b: &[u8]) -> Option<InfoRecord> {
        if b.len() < INFO_STRUCT_SIZE {
            return None;
        }
        let lossy = |at, size| String::from_utf8_lossy(text(b, at, size)).into_owned();
        Some(InfoRecord {
            store_uuid: b[UUID_AT..UUID_AT + 16].try_into().expect("16 bytes"),
            abi_profile: u64_at(b, offset_of!(uapi::hpkv_info, abi_profile)),
            durability: u64_at(b, offset_of!(uapi::hpkv_info, durability)),
            write_behind_delay_ms: u64_at(b, offset_of!(uapi::hpkv_info, write_behind_delay_ms)),
            write_behind_writes: u64_at(b, offset_of!(uapi::hpkv_info, write_behind_writes)),
            started_unix_ms: u64_at(b, offset_of!(uapi::hpkv_info, started_unix_ms)),
            version: lossy(VERSION_AT, VERSION_SIZE),
            name: lossy(NAME_AT, NAME_SIZE),
            device_path: PathBuf::from(OsString::from_vec(text(b, PATH_AT, PATH_SIZE).to_vec())),
        })
    }

    /// The store's UUID, hyphenated: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub fn uuid_text(&self) -> String {
        let mut hex = String::with_capacity(32);
        for b in self.store_uuid {
            let _ = write!(hex, "{b:02x}");
        }
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Profile;

    #[test]
    fn info_round_trips_and_cuts_long_texts() {
        let info = InfoRecord {
            store_uuid: *b"0123456789abcdef",
            abi_profile: Profile::V13.number(),
            durability: DurabilityMode::WriteBehind.number(),
            write_behind_delay_ms: 30_000,
            write_behind_writes: 1024,
            started_unix_ms: 1_700_000_000_000,
            version: "0.2.0 (abc, release)".into(),
            name: "hpkv-test".into(),
            device_path: PathBuf::from(OsString::from_vec(b"/tmp/\xff.img".to_vec())),
        };
        let bytes = info.encode();
        assert_eq!(bytes.len(), INFO_STRUCT_SIZE);
        assert_eq!(InfoRecord::decode(&bytes), Some(info.clone()));
        assert_eq!(InfoRecord::decode(&bytes[1..]), None);
        assert_eq!(info.uuid_text(), "30313233-3435-3637-3839-616263646566");
        let long = InfoRecord {
            name: "n".repeat(1000),
            device_path: PathBuf::from("/".repeat(5000)),
            ..info
        };
        let back = InfoRecord::decode(&long.encode()).unwrap();
        assert_eq!(back.name.len(), NAME_SIZE - 1);
        assert_eq!(back.device_path.as_os_str().len(), PATH_SIZE - 1);
        assert_eq!(
            DurabilityMode::from_number(1),
            Some(DurabilityMode::WriteBehind)
        );
        assert_eq!(DurabilityMode::from_number(2), None);
        assert_eq!(DurabilityMode::Sync.name(), "sync");
    }
}
