//! Unit tests of the writer and reader together, in one process, and (`stress`) across
//! processes.

// Test data generators narrow numbers on purpose (key bytes, lengths, ratios).
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::too_many_lines
)]

mod stress;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::{
    mark_dead_at, ConfigError, Lookup, OpenError, Unknown, ViewConfig, ViewReader, ViewState,
    ViewStats, ViewWriter, KEY_BYTES_MAX, VALUE_BYTES_MAX,
};

pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub writer: ViewWriter,
}

pub(crate) fn published(config: &ViewConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.view");
    let mut writer = ViewWriter::create(&path, config).unwrap();
    writer.publish().unwrap();
    Fixture { dir, path, writer }
}

fn get(reader: &ViewReader, key: &[u8]) -> (Lookup, Vec<u8>) {
    let mut v = Vec::new();
    let r = reader.get(key, &mut v);
    (r, v)
}

fn hit(reader: &ViewReader, key: &[u8]) -> (u64, Vec<u8>) {
    match get(reader, key) {
        (Lookup::Hit { seq }, v) => (seq, v),
        (other, _) => panic!(
            "{:?}: expected a hit, got {other:?}",
            String::from_utf8_lossy(key)
        ),
    }
}

#[test]
fn hits_misses_and_values_not_here() {
    let mut f = published(&ViewConfig::new(100, 4096, 1 << 16));
    let r = ViewReader::open(&f.path).unwrap();
    f.writer.upsert(b"a", 1, Some(b"apple"), 5).unwrap();
    f.writer.upsert(b"b", 2, None, 7).unwrap();
    assert_eq!(hit(&r, b"a"), (1, b"apple".to_vec()));
    assert_eq!(get(&r, b"b").0, Lookup::Unknown(Unknown::NotCached));
    assert_eq!(get(&r, b"c").0, Lookup::Miss);
    assert_eq!(get(&r, b"").0, Lookup::Unknown(Unknown::InvalidKey));
    assert_eq!(
        get(&r, &[b'x'; KEY_BYTES_MAX + 1]).0,
        Lookup::Unknown(Unknown::InvalidKey)
    );
    assert_eq!(r.state(), ViewState::Live);
    f.writer.check_invariants();
}

#[test]
fn every_update_is_seen_by_the_next_lookup() {
    let mut f = published(&ViewConfig::new(100, 4096, 1 << 16));
    let r = ViewReader::open(&f.path).unwrap();
    f.writer.upsert(b"k", 1, Some(b"one"), 3).unwrap();
    assert_eq!(hit(&r, b"k"), (1, b"one".to_vec()));
    f.writer.upsert(b"k", 2, Some(b"two!"), 4).unwrap();
    assert_eq!(hit(&r, b"k"), (2, b"two!".to_vec()));
    f.writer.upsert(b"k", 3, None, 5).unwrap();
    assert_eq!(
        get(&r, b"k").0,
        Lookup::Unknown(Unknown::NotCached),
        "never the old value"
    );
    f.writer.remove(b"k", 4).unwrap();
    assert_eq!(get(&r, b"k").0, Lookup::Miss);
    f.writer.upsert(b"k", 5, Some(b"back"), 4).unwrap();
    assert_eq!(hit(&r, b"k"), (5, b"back".to_vec()));
    f.writer.clear();
    assert_eq!(get(&r, b"k").0, Lookup::Miss);
    f.writer.upsert(b"k", 6, Some(b"after purge"), 11).unwrap();
    assert_eq!(hit(&r, b"k"), (6, b"after purge".to_vec()));
    f.writer.check_invariants();
}

#[test]
fn fill_installs_only_the_version_it_read() {
    let mut f = published(&ViewConfig::new(100, 4096, 1 << 16));
    let r = ViewReader::open(&f.path).unwrap();
    f.writer.upsert(b"k", 10, None, 3).unwrap();
    assert!(!f.writer.fill(b"k", 9, b"old").unwrap(), "an older version");
    assert!(
        !f.writer.fill(b"nope", 10, b"abc").unwrap(),
        "an absent key"
    );
    assert!(f.writer.fill(b"k", 10, b"new").unwrap());
    assert_eq!(hit(&r, b"k"), (10, b"new".to_vec()));
    assert!(!f.writer.fill(b"k", 10, b"new").unwrap(), "already there");
    f.writer.upsert(b"k", 11, None, 4).unwrap();
    assert!(
        !f.writer.fill(b"k", 10, b"new").unwrap(),
        "a read that lost the race"
    );
    assert_eq!(get(&r, b"k").0, Lookup::Unknown(Unknown::NotCached));
    f.writer.check_invariants();
}

#[test]
#[should_panic(expected = "not above")]
fn updates_out_of_order_are_a_bug() {
    let mut f = published(&ViewConfig::new(10, 4096, 0));
    f.writer.upsert(b"k", 5, None, 1).unwrap();
    f.writer.upsert(b"k", 5, None, 1).unwrap();
}

#[test]
fn bad_arguments_change_nothing() {
    use crate::WriteError;
    let mut f = published(&ViewConfig::new(10, 4096, 4096));
    let w = &mut f.writer;
    assert_eq!(w.upsert(b"", 1, None, 1), Err(WriteError::KeyLength(0)));
    assert_eq!(w.upsert(b"k", 1, None, 0), Err(WriteError::ValueLength(0)));
    assert_eq!(
        w.upsert(b"k", 1, None, VALUE_BYTES_MAX + 1),
        Err(WriteError::ValueLength(VALUE_BYTES_MAX + 1))
    );
    assert_eq!(
        w.upsert(b"k", 1, Some(b"ab"), 3),
        Err(WriteError::ValueLengthMismatch {
            value_len: 3,
            bytes: 2
        })
    );
    assert_eq!(w.remove(&[0; 513], 1), Err(WriteError::KeyLength(513)));
    assert_eq!(w.live_keys(), 0);
}

#[test]
fn keys_and_values_of_every_size() {
    let mut f = published(&ViewConfig::new(1000, 600 * 1024, 8 * 120 * 1024));
    let r = ViewReader::open(&f.path).unwrap();
    let mut seq = 0;
    for len in 1..=KEY_BYTES_MAX {
        seq += 1;
        let key: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let value = vec![len as u8; len % 37 + 1];
        f.writer
            .upsert(&key, seq, Some(&value), value.len())
            .unwrap();
        assert_eq!(hit(&r, &key), (seq, value));
        // A key differing only in its last byte is another key.
        let mut other = key.clone();
        *other.last_mut().unwrap() ^= 0x80;
        assert_eq!(get(&r, &other).0, Lookup::Miss, "len {len}");
    }
    for value_len in [1, 7, 8, 9, VALUE_BYTES_MAX - 1, VALUE_BYTES_MAX] {
        seq += 1;
        let value: Vec<u8> = (0..value_len).map(|i| (i % 251) as u8).collect();
        f.writer
            .upsert(b"sized", seq, Some(&value), value_len)
            .unwrap();
        assert_eq!(hit(&r, b"sized"), (seq, value));
    }
    f.writer.check_invariants();
}

#[test]
fn the_value_ring_evicts_oldest_first_and_a_big_value_is_not_cached() {
    // 4 KiB of values (a block may take 512 bytes): 600 values of 16 to 400 bytes go round the
    // ring many times, each lap ending at another offset. The values still cached must always
    // be the newest ones (FIFO), each with its own bytes.
    let mut f = published(&ViewConfig::new(700, 16 * 1024, 4096));
    let r = ViewReader::open(&f.path).unwrap();
    let value = |i: u64| {
        format!("{i:08}")
            .repeat((i as usize * 7) % 49 + 1)
            .into_bytes()
    };
    let mut laps_seen = 0;
    for i in 0..600u64 {
        let v = value(i);
        f.writer
            .upsert(format!("key{i:03}").as_bytes(), i + 1, Some(&v), v.len())
            .unwrap();
        f.writer.check_invariants();
        f.writer.heartbeat(); // as the daemon does; this test runs for seconds in debug builds
        let mut cached = Vec::new();
        for j in 0..=i {
            match get(&r, format!("key{j:03}").as_bytes()) {
                (Lookup::Hit { seq }, v) => {
                    assert_eq!((seq, v), (j + 1, value(j)));
                    cached.push(j);
                }
                (Lookup::Unknown(Unknown::NotCached), _) => {}
                (other, _) => panic!("key{j:03}: {other:?}"),
            }
        }
        assert_eq!(cached.last(), Some(&i), "the newest stays");
        assert!(
            cached.windows(2).all(|w| w[1] == w[0] + 1),
            "a suffix: {cached:?}"
        );
        let bytes: usize = cached
            .iter()
            .map(|&j| 8 + value(j).len().next_multiple_of(8))
            .sum();
        assert!(bytes <= 4096);
        laps_seen = laps_seen.max((i as usize + 1).saturating_sub(cached.len()));
    }
    assert!(laps_seen > 500, "the ring evicted");
    let big = vec![1u8; 600];
    f.writer
        .upsert(b"big", 1000, Some(&big), big.len())
        .unwrap();
    assert_eq!(get(&r, b"big").0, Lookup::Unknown(Unknown::NotCached));
    f.writer.check_invariants();
}

#[test]
fn a_full_table_turns_incomplete_until_cleared() {
    let mut f = published(&ViewConfig::new(4, 4096, 4096));
    let r = ViewReader::open(&f.path).unwrap();
    for i in 0..4u64 {
        f.writer
            .upsert(format!("k{i}").as_bytes(), i + 1, Some(b"v"), 1)
            .unwrap();
    }
    assert!(f.writer.is_complete());
    assert_eq!(get(&r, b"absent").0, Lookup::Miss);
    f.writer.upsert(b"k4", 5, Some(b"v"), 1).unwrap();
    assert!(!f.writer.is_complete());
    assert_eq!(get(&r, b"k4").0, Lookup::Unknown(Unknown::Incomplete));
    assert_eq!(get(&r, b"absent").0, Lookup::Unknown(Unknown::Incomplete));
    assert_eq!(hit(&r, b"k0").0, 1, "keys in the table still hit");
    // Removing keys does not make it complete again: the table cannot know which keys it lacks.
    f.writer.remove(b"k0", 6).unwrap();
    f.writer.upsert(b"k5", 7, Some(b"v"), 1).unwrap();
    assert_eq!(hit(&r, b"k5").0, 7);
    assert_eq!(get(&r, b"absent").0, Lookup::Unknown(Unknown::Incomplete));
    f.writer.check_invariants();
    f.writer.clear();
    assert!(f.writer.is_complete());
    assert_eq!(get(&r, b"absent").0, Lookup::Miss);
    f.writer.check_invariants();
}

#[test]
fn churn_rebuilds_the_table_and_keeps_every_key() {
    // 64 keys of capacity (128 slots): thousands of distinct keys come and go, leaving
    // tombstones that force rebuilds; the 40 keys that stay must stay findable.
    let mut f = published(&ViewConfig::new(64, 64 * 16, 1 << 14));
    let r = ViewReader::open(&f.path).unwrap();
    let mut seq = 0;
    for i in 0..40u64 {
        seq += 1;
        f.writer
            .upsert(
                format!("stay{i}").as_bytes(),
                seq,
                Some(&i.to_le_bytes()),
                8,
            )
            .unwrap();
    }
    for i in 0..5000u64 {
        seq += 1;
        let key = format!("churn{i}");
        f.writer.upsert(key.as_bytes(), seq, None, 3).unwrap();
        if i % 7 != 0 {
            seq += 1;
            f.writer.remove(key.as_bytes(), seq).unwrap();
        }
        if i % 97 == 0 {
            f.writer.check_invariants();
            f.writer.heartbeat();
        }
        if i % 7 == 6 {
            // Keep the live count bounded: remove the key kept 6 rounds ago.
            seq += 1;
            f.writer
                .remove(format!("churn{}", i - 6).as_bytes(), seq)
                .unwrap();
        }
    }
    assert!(
        f.writer.is_complete(),
        "churn never needed more than the capacity"
    );
    assert!(
        f.writer.rebuilds() >= 10,
        "{} rebuilds",
        f.writer.rebuilds()
    );
    for i in 0..40u64 {
        let (_, v) = hit(&r, format!("stay{i}").as_bytes());
        assert_eq!(v, i.to_le_bytes());
    }
    assert_eq!(get(&r, b"churn4").0, Lookup::Miss);
    f.writer.check_invariants();
}

#[test]
fn key_arena_garbage_is_compacted() {
    // 1 KiB of keys. 20 keys of 40 bytes, removed: 800 bytes on the 40-byte free list, which
    // 24-byte keys cannot reuse; so inserting 24-byte keys runs the bump pointer out, and the
    // writer packs the arena (a rebuild) instead of giving up.
    let mut f = published(&ViewConfig::new(50, 1024, 0));
    let r = ViewReader::open(&f.path).unwrap();
    let mut seq = 0;
    for i in 0..20u32 {
        seq += 1;
        f.writer
            .upsert(format!("{i:040}").as_bytes(), seq, None, 1)
            .unwrap();
    }
    for i in 0..20u32 {
        seq += 1;
        f.writer.remove(format!("{i:040}").as_bytes(), seq).unwrap();
    }
    assert_eq!(f.writer.rebuilds(), 0);
    for i in 0..30u32 {
        seq += 1;
        f.writer
            .upsert(format!("{i:024}").as_bytes(), seq, None, 1)
            .unwrap();
        f.writer.check_invariants();
    }
    assert!(f.writer.is_complete());
    assert_eq!(f.writer.rebuilds(), 1);
    for i in 0..30u32 {
        assert_eq!(
            get(&r, format!("{i:024}").as_bytes()).0,
            Lookup::Unknown(Unknown::NotCached)
        );
    }
    // 30 * 24 = 720 bytes live: 13 more 24-byte keys pass 1024 bytes.
    for i in 30..45u32 {
        seq += 1;
        f.writer
            .upsert(format!("{i:024}").as_bytes(), seq, None, 1)
            .unwrap();
    }
    assert!(!f.writer.is_complete());
    assert_eq!(
        f.writer.rebuilds(),
        1,
        "too little garbage to be worth a rebuild"
    );
    assert_eq!(get(&r, b"absent").0, Lookup::Unknown(Unknown::Incomplete));
    f.writer.check_invariants();
}

#[test]
fn stats_and_identity_reach_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id.view");
    let mut config = ViewConfig::new(10, 4096, 0);
    config.store_uuid = *b"0123456789abcdef";
    config.abi_profile = 2;
    config.device = 0xdead_beef;
    let mut w = ViewWriter::create(&path, &config).unwrap();
    w.set_device(0x1234_5678_9abc);
    w.publish().unwrap();
    let r = ViewReader::open(&path).unwrap();
    assert_eq!(r.store_uuid(), *b"0123456789abcdef");
    assert_eq!(r.abi_profile(), 2);
    assert_eq!(r.device(), 0x1234_5678_9abc);
    assert_eq!(r.instance_id(), w.instance_id());
    assert_eq!(r.file_bytes(), w.file_bytes());
    assert_eq!(r.stats(), Some(ViewStats::default()));
    let stats = ViewStats {
        records: 3,
        value_bytes: 18,
        device_bytes: 1 << 30,
    };
    w.set_stats(stats);
    assert_eq!(r.stats(), Some(stats));
    assert!(r.heartbeat_age_ns().unwrap() < 1_000_000_000);
}

#[test]
fn the_file_is_sized_as_stated() {
    let config = ViewConfig::new(1000, 16_000, 100_000);
    let f = published(&config);
    let md = fs::metadata(&f.path).unwrap();
    assert_eq!(md.len(), config.file_bytes().unwrap());
    // 4096 header + 2000 slots * 32 = 68096 -> 69632; + 16000 -> 86016 (16384 rounded);
    // + 100000 -> 188416.
    assert_eq!(md.len(), 4096 + 65536 + 16384 + 102_400);
    assert_eq!(md.permissions().mode() & 0o777, 0o640);
    assert_eq!(
        ViewConfig::new(0, 4096, 0).file_bytes(),
        Err(ConfigError::KeyCapacity(0))
    );
    assert_eq!(
        ViewConfig::new(1, 100, 0).file_bytes(),
        Err(ConfigError::KeyArena(100))
    );
    assert_eq!(
        ViewConfig::new(1, 4096, 1 << 40).file_bytes(),
        Err(ConfigError::ValueArena(1 << 40))
    );
}

#[test]
fn a_view_is_invisible_until_published_and_a_dropped_one_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.view");
    let w = ViewWriter::create(&path, &ViewConfig::new(10, 4096, 0)).unwrap();
    assert!(
        matches!(ViewReader::open(&path), Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound)
    );
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "the temporary file"
    );
    drop(w);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "removed");
}

#[test]
fn a_stale_heartbeat_stops_readers_and_a_fresh_one_revives_them() {
    let mut f = published(&ViewConfig::new(10, 4096, 4096));
    f.writer.upsert(b"k", 1, Some(b"v"), 1).unwrap();
    let r = ViewReader::open(&f.path).unwrap();
    assert_eq!(hit(&r, b"k").0, 1);
    let now = crate::shm::monotonic_coarse_ns().unwrap();
    f.writer
        .set_heartbeat_ns(now - crate::HEARTBEAT_STALE_NS - 50_000_000);
    assert_eq!(get(&r, b"k").0, Lookup::Unknown(Unknown::Stale));
    assert_eq!(get(&r, b"absent").0, Lookup::Unknown(Unknown::Stale));
    assert_eq!(r.state(), ViewState::Stale);
    f.writer.heartbeat();
    assert_eq!(r.state(), ViewState::Live);
    assert_eq!(hit(&r, b"k").0, 1);
    // The handle a timer thread uses.
    f.writer.set_heartbeat_ns(1);
    let beat = f.writer.heartbeat_handle();
    std::thread::spawn(move || beat.beat()).join().unwrap();
    assert!(r.is_live());
}

#[test]
fn a_new_writer_kills_the_old_view_before_it_serves() {
    let mut f = published(&ViewConfig::new(10, 4096, 4096));
    f.writer.upsert(b"k", 1, Some(b"old"), 3).unwrap();
    let old = ViewReader::open(&f.path).unwrap();
    assert_eq!(hit(&old, b"k").1, b"old");
    // The successor: creating it marks the old view dead at once, before it is filled.
    let mut next = ViewWriter::create(&f.path, &ViewConfig::new(10, 4096, 4096)).unwrap();
    assert!(old.is_dead());
    assert_eq!(old.state(), ViewState::Dead);
    assert_eq!(get(&old, b"k").0, Lookup::Unknown(Unknown::Dead));
    assert!(
        matches!(ViewReader::open(&f.path), Err(OpenError::Dead)),
        "the path still names the old file"
    );
    next.upsert(b"k", 2, Some(b"new"), 3).unwrap();
    next.publish().unwrap();
    let new = ViewReader::open(&f.path).unwrap();
    assert_ne!(new.instance_id(), old.instance_id());
    assert_eq!(hit(&new, b"k"), (2, b"new".to_vec()));
    // Dropping the old writer marks only its own (already dead) mapping.
    let Fixture { writer, dir, .. } = f;
    drop(writer);
    assert!(new.is_live());
    assert_eq!(hit(&new, b"k").0, 2);
    assert!(mark_dead_at(new_path(&dir)).unwrap());
    assert!(new.is_dead(), "mark_dead_at reaches a live view too");
}

fn new_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("test.view")
}

#[test]
fn mark_dead_at_leaves_other_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plain");
    assert!(!mark_dead_at(&p).unwrap(), "missing");
    fs::write(&p, vec![7u8; 8192]).unwrap();
    assert!(!mark_dead_at(&p).unwrap(), "no magic");
    assert_eq!(fs::read(&p).unwrap(), vec![7u8; 8192]);
    fs::write(&p, b"short").unwrap();
    assert!(!mark_dead_at(&p).unwrap(), "too short");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&p, &link).unwrap();
    assert!(!mark_dead_at(&link).unwrap(), "a symlink is not followed");
}

fn copy_view(from: &Path, to: &Path) {
    fs::copy(from, to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o640)).unwrap();
}

#[test]
fn readers_refuse_files_they_cannot_trust() {
    let f = published(&ViewConfig::new(10, 4096, 4096));
    let dir = f.dir.path();
    let open_err = |p: &Path| ViewReader::open(p).expect_err("must refuse");

    let p = dir.join("writable");
    copy_view(&f.path, &p);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o660)).unwrap();
    assert!(matches!(
        open_err(&p),
        OpenError::WritableByOthers { mode: 0o660 }
    ));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o642)).unwrap();
    assert!(matches!(open_err(&p), OpenError::WritableByOthers { .. }));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o440)).unwrap();
    ViewReader::open(&p).expect("read-only for everyone is fine");

    let link = dir.join("link");
    std::os::unix::fs::symlink(&f.path, &link).unwrap();
    assert!(matches!(open_err(&link), OpenError::Symlink));

    let sub = dir.join("subdir");
    fs::create_dir(&sub).unwrap();
    assert!(matches!(open_err(&sub), OpenError::NotRegularFile));

    // Ownership: only root can give files away; skip when not root.
    if nix_uid() == 0 {
        let owned = dir.join("owned");
        copy_view(&f.path, &owned);
        std::os::unix::fs::chown(&owned, Some(4242), None).unwrap();
        assert!(matches!(
            open_err(&owned),
            OpenError::UntrustedOwner {
                file_uid: 4242,
                dir_uid: 0
            }
        ));
        // A directory owned by 4242: its owner's files are trusted, and root's.
        std::os::unix::fs::chown(dir, Some(4242), None).unwrap();
        ViewReader::open(&owned).expect("the directory's owner");
        ViewReader::open(&f.path).expect("root");
        std::os::unix::fs::chown(dir, Some(0), None).unwrap();
    }
}

fn nix_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file we just created is our effective uid.
    let f = tempfile::NamedTempFile::new().unwrap();
    fs::metadata(f.path()).unwrap().uid()
}

#[test]
fn readers_refuse_bad_headers() {
    use std::os::unix::fs::FileExt;
    type Case<'a> = (usize, &'a [u8], fn(&OpenError) -> bool);
    let f = published(&ViewConfig::new(10, 4096, 4096));
    let dir = f.dir.path();
    let cases: [Case; 7] = [
        (0, b"HPKVVIEX", |e| matches!(e, OpenError::BadMagic)),
        (8, &2u32.to_ne_bytes(), |e| {
            matches!(e, OpenError::BadVersion(2))
        }),
        (12, &8192u32.to_ne_bytes(), |e| {
            matches!(e, OpenError::BadLayout("header size"))
        }),
        (24, &64u32.to_ne_bytes(), |e| {
            matches!(e, OpenError::BadLayout("slot size"))
        }),
        (32, &u64::MAX.to_ne_bytes(), |e| {
            matches!(e, OpenError::BadLayout("slot count"))
        }),
        (48, &8u64.to_ne_bytes(), |e| {
            matches!(e, OpenError::BadLayout("region offsets"))
        }),
        (16, &(1u64 << 40).to_ne_bytes(), |e| {
            matches!(e, OpenError::BadLayout("region offsets"))
        }),
    ];
    for (i, (offset, bytes, expected)) in cases.iter().enumerate() {
        let p = dir.join(format!("bad{i}"));
        copy_view(&f.path, &p);
        fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .write_at(bytes, *offset as u64)
            .unwrap();
        let e = ViewReader::open(&p).expect_err("must refuse");
        assert!(expected(&e), "case {i}: {e:?}");
    }
    let p = dir.join("short");
    copy_view(&f.path, &p);
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(8192)
        .unwrap();
    assert!(matches!(ViewReader::open(&p), Err(OpenError::BadSize)));
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(100)
        .unwrap();
    assert!(matches!(ViewReader::open(&p), Err(OpenError::BadSize)));
}

#[test]
fn a_scratch_buffer_of_the_value_length_is_enough() {
    let mut f = published(&ViewConfig::new(10, 4096, 1 << 16));
    f.writer.upsert(b"k", 1, Some(&[9u8; 101]), 101).unwrap();
    let r = ViewReader::open(&f.path).unwrap();
    let mut scratch = Vec::with_capacity(101);
    let before = scratch.as_ptr();
    assert_eq!(r.get(b"k", &mut scratch), Lookup::Hit { seq: 1 });
    assert_eq!(scratch, [9u8; 101]);
    assert_eq!(
        scratch.as_ptr(),
        before,
        "no reallocation for a 101-byte value"
    );
}

#[test]
fn lookups_do_not_reallocate_the_scratch_buffer() {
    let mut f = published(&ViewConfig::new(10, 4096, 1 << 16));
    f.writer.upsert(b"k", 1, Some(&[5u8; 1000]), 1000).unwrap();
    let r = ViewReader::open(&f.path).unwrap();
    let mut scratch = Vec::with_capacity(VALUE_BYTES_MAX);
    let before = scratch.as_ptr();
    for _ in 0..100 {
        assert_eq!(r.get(b"k", &mut scratch), Lookup::Hit { seq: 1 });
        assert_eq!(r.get(b"x", &mut scratch), Lookup::Miss);
    }
    assert_eq!(scratch.as_ptr(), before);
}

#[test]
fn a_reader_can_be_shared_between_threads() {
    let mut f = published(&ViewConfig::new(100, 4096, 1 << 16));
    for i in 0..50u64 {
        f.writer
            .upsert(&i.to_le_bytes(), i + 1, Some(&i.to_be_bytes()), 8)
            .unwrap();
    }
    let r = std::sync::Arc::new(ViewReader::open(&f.path).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut v = Vec::new();
                for i in 0..50u64 {
                    assert_eq!(r.get(&i.to_le_bytes(), &mut v), Lookup::Hit { seq: i + 1 });
                    assert_eq!(v, i.to_be_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
