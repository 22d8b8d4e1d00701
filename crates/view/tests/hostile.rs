//! A corrupt or hostile view must never crash a reader or make it read out of bounds: random
//! words written over the header, the slots and the arenas, then every kind of lookup. Any
//! answer is acceptable (the file lies); a panic, a crash or a hang is not. The reader's own
//! bounds checks are what is tested: the file is never shorter than its mapping here (only
//! its owner could truncate it, and the trust check excludes everyone else).

// Test data generators narrow numbers on purpose (key bytes, lengths); the model loop is
// one long function because each step's checks read best in one place.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines
)]

use std::os::unix::fs::FileExt;
use std::path::Path;

use hpkv_view::{Lookup, ViewConfig, ViewReader, ViewStats, ViewWriter};
use proptest::prelude::*;

const KEYS: u64 = 40;

fn key(i: u64) -> Vec<u8> {
    format!("hostile-key-{i}-{}", "k".repeat((i * 11 % 70) as usize)).into_bytes()
}

/// A view with live keys, tombstones, cached values and values not here.
fn build(path: &Path) -> ViewWriter {
    let mut w = ViewWriter::create(path, &ViewConfig::new(64, 8192, 16 << 10)).unwrap();
    for i in 0..KEYS {
        let v = vec![i as u8; (i * 37 % 500 + 1) as usize];
        w.upsert(&key(i), i + 1, (i % 3 != 0).then_some(&v[..]), v.len())
            .unwrap();
    }
    for i in (0..KEYS).step_by(5) {
        w.remove(&key(i), 100 + i).unwrap();
    }
    w.set_stats(ViewStats {
        records: 32,
        value_bytes: 1000,
        device_bytes: 1 << 30,
    });
    w.publish().unwrap();
    w
}

fn read_everything(path: &Path) {
    let Ok(r) = ViewReader::open(path) else {
        return;
    };
    let mut scratch = Vec::new();
    for i in 0..KEYS + 10 {
        let answer = r.get(&key(i), &mut scratch);
        if let Lookup::Hit { .. } = answer {
            assert!(scratch.len() <= hpkv_view::VALUE_BYTES_MAX);
        }
    }
    let _ = r.get(&[0xa5; 512], &mut scratch);
    let _ = r.get(b"x", &mut scratch);
    let _ = (r.stats(), r.state(), r.heartbeat_age_ns(), r.is_dead());
}

/// Where a corrupting write lands: mostly the header and the table, where the pointers are.
fn offset(file_bytes: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0..320u64,
        4 => 4096..4096 + 128 * 32u64,
        2 => 0..file_bytes,
    ]
}

fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(0),
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        (0..64u32).prop_map(|b| 1u64 << b),
        any::<u32>().prop_map(|x| u64::from(x) << 32 | 0x8000_0001),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn corrupt_views_never_crash_readers(
        writes in prop::collection::vec((offset(ViewConfig::new(64, 8192, 16 << 10).file_bytes().unwrap()), word()), 1..24),
        byte_writes in prop::collection::vec((0..12_288u64, any::<u8>()), 0..16),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hostile.view");
        let _writer = build(&path);
        read_everything(&path); // sound before
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for (at, value) in writes {
            file.write_at(&value.to_ne_bytes(), at & !7).unwrap();
        }
        for (at, value) in byte_writes {
            file.write_at(&[value], at).unwrap();
        }
        read_everything(&path);
    }
}

/// Every header word, set to each extreme value in turn.
#[test]
fn every_header_field_at_every_extreme() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.view");
    let _writer = build(&path);
    let pristine = std::fs::read(&path).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for at in (0..320u64).step_by(4) {
        for value in [0u32, 1, 7, 8, 4096, u32::MAX, 0x8000_0000] {
            file.write_at(&pristine[..320], 0).unwrap();
            file.write_at(&value.to_ne_bytes(), at).unwrap();
            read_everything(&path);
        }
    }
}

/// Slots whose offsets point past their arenas, or whose lengths are impossible.
#[test]
fn slots_pointing_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.view");
    let _writer = build(&path);
    let pristine = std::fs::read(&path).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for slot in 0..128u64 {
        let at = 4096 + slot * 32;
        for (field, value) in [
            (24, u32::MAX),
            (28, u32::MAX),
            (28, 2047),
            (20, 0x7fff_ffff),
            (20, 0x4000_03ff),
            (0, 1),
        ] {
            file.write_at(&pristine[at as usize..at as usize + 32], at)
                .unwrap();
            file.write_at(&value.to_ne_bytes(), at + field).unwrap();
            read_everything(&path);
        }
        file.write_at(&pristine[at as usize..at as usize + 32], at)
            .unwrap();
    }
}
