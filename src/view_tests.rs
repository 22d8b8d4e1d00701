//! The daemon's view wiring without CUSE: an engine on an image file with a [`SharedView`] as
//! its observer, written through the engine (the device layer's path), read back through
//! `hpkv-view`'s reader, in this process and in another one.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use hpkv_engine::{Config, Engine, ObserverSink};
use hpkv_view::{Lookup, Unknown, ViewReader};

use super::{Settings, SharedView};

/// Set in the child process that plays a daemon killed with SIGKILL.
const CHILD_ENV: &str = "HPKVD_VIEW_TEST_CHILD";
/// A made-up device number for the node.
const RDEV: u64 = 0x1234_5678;

fn settings(dir: &Path, keys_min: u64, keys_max: u64) -> Settings {
    Settings {
        path: dir.join("views").join("hpkv.view"),
        keys_min,
        keys_max,
        value_arena_bytes: 1 << 20,
        abi_profile: 1,
    }
}

/// A "daemon": an engine on `dir/store.img` whose observer is a published view.
fn daemon(dir: &Path, keys_min: u64, keys_max: u64) -> (Arc<Engine>, Arc<SharedView>) {
    daemon_with_cache(dir, keys_min, keys_max, 1 << 20)
}

/// [`daemon`] with a value cache of `cache_bytes` (0: none).
fn daemon_with_cache(
    dir: &Path,
    keys_min: u64,
    keys_max: u64,
    cache_bytes: u64,
) -> (Arc<Engine>, Arc<SharedView>) {
    let image = dir.join("store.img");
    hpkv_engine::device::create_image_if_missing(&image, 32 << 20).unwrap();
    let view = Arc::new(SharedView::new(settings(dir, keys_min, keys_max)).unwrap());
    let config = Config {
        cache_bytes,
        observer: Some(ObserverSink(view.clone())),
        ..Config::default()
    };
    let engine = Arc::new(Engine::open_path(&image, config).unwrap());
    view.build(&engine).unwrap();
    view.publish(RDEV);
    (engine, view)
}

fn view_path(dir: &Path) -> PathBuf {
    settings(dir, 1, 1).path
}

fn get(reader: &ViewReader, key: &[u8]) -> (Lookup, Vec<u8>) {
    let mut value = Vec::new();
    let found = reader.get(key, &mut value);
    (found, value)
}

/// The view grows while keys are written: the write that makes it grow finds its value in
/// the new view too, though the view is filled from the index and a cache that does not hold
/// it (here there is none).
#[test]
fn the_write_that_grows_the_view_is_in_the_grown_view() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, view) = daemon_with_cache(dir.path(), 64, 1 << 20, 0);
    let mut reader = ViewReader::open(view_path(dir.path())).unwrap();
    let mut grown = 0;
    for i in 0..200 {
        let key = format!("g-{i}");
        engine.put(key.as_bytes(), b"value").unwrap();
        let mut got = Vec::new();
        let mut found = reader.get(key.as_bytes(), &mut got);
        if found == Lookup::Unknown(Unknown::Dead) {
            grown += 1;
            reader = ViewReader::open(view_path(dir.path())).unwrap();
            found = reader.get(key.as_bytes(), &mut got);
        }
        assert!(matches!(found, Lookup::Hit { .. }), "{key}: {found:?}");
        assert_eq!(got, b"value");
    }
    assert!(grown >= 2, "the view grew {grown} times");
    engine.close().unwrap();
    view.shutdown();
}

/// What the device layer does for a GET: read through the engine, offer the value.
fn device_get(engine: &Engine, view: &SharedView, key: &[u8]) -> Option<Vec<u8>> {
    let got = engine.get_versioned(key).unwrap()?;
    view.fill(key, got.seq, &got.value);
    Some(got.value.to_vec())
}

#[test]
fn writes_reach_the_view_before_they_are_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, view) = daemon(dir.path(), 64, 1 << 20);
    let reader = ViewReader::open(view_path(dir.path())).unwrap();
    assert_eq!(reader.device(), RDEV);
    assert_eq!(reader.abi_profile(), 1);

    engine.put(b"a", b"one").unwrap();
    let (found, value) = get(&reader, b"a");
    assert!(matches!(found, Lookup::Hit { .. }), "{found:?}");
    assert_eq!(value, b"one");
    engine.append(b"a", b"+two").unwrap();
    assert_eq!(
        get(&reader, b"a").1,
        b"one+two",
        "an append shows the whole value"
    );
    assert_eq!(get(&reader, b"nobody").0, Lookup::Miss);
    engine.put(b"b", b"bee").unwrap();
    engine.delete(b"a").unwrap();
    assert_eq!(get(&reader, b"a").0, Lookup::Miss, "a deleted key");
    let stats = reader.stats().unwrap();
    assert_eq!((stats.records, stats.value_bytes), (1, 3));

    engine.purge().unwrap();
    assert_eq!(get(&reader, b"b").0, Lookup::Miss, "purged");
    engine.put(b"c", b"sea").unwrap();
    assert_eq!(get(&reader, b"c").1, b"sea");
    // Concurrent writers: each one's acknowledgement finds the view holding its value.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (engine, path) = (engine.clone(), view_path(dir.path()));
            std::thread::spawn(move || {
                let mut reader = ViewReader::open(&path).unwrap();
                for i in 0..50 {
                    let key = format!("t{t}-{i}");
                    let value = format!("v{i}");
                    engine.put(key.as_bytes(), value.as_bytes()).unwrap();
                    let mut got = Vec::new();
                    let mut found = reader.get(key.as_bytes(), &mut got);
                    // The view grew past its first 64 keys: its successor has it. Another
                    // thread's write may be growing that one in turn (it is dead from its
                    // successor's creation until the rename): reopen until a live view opens.
                    for _ in 0..1000 {
                        if found != Lookup::Unknown(Unknown::Dead) {
                            break;
                        }
                        match ViewReader::open(&path) {
                            Ok(r) => {
                                reader = r;
                                found = reader.get(key.as_bytes(), &mut got);
                            }
                            Err(hpkv_view::OpenError::Dead) => {
                                std::thread::sleep(std::time::Duration::from_millis(1));
                            }
                            Err(e) => panic!("{key}: reopening the view: {e}"),
                        }
                    }
                    assert!(matches!(found, Lookup::Hit { .. }), "{key}: {found:?}");
                    assert_eq!(got, value.as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    engine.close().unwrap();
    view.shutdown();
    assert!(reader.is_dead(), "a clean exit marks the view dead");
}

#[test]
fn a_restart_builds_keys_without_values_and_device_gets_fill_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (engine, view) = daemon(dir.path(), 64, 1 << 20);
        engine.put(b"kept", b"value").unwrap();
        engine.put(b"gone", b"x").unwrap();
        engine.delete(b"gone").unwrap();
        engine.close().unwrap();
        view.shutdown();
    }
    let (engine, view) = daemon(dir.path(), 64, 1 << 20);
    let reader = ViewReader::open(view_path(dir.path())).unwrap();
    assert_eq!(get(&reader, b"kept").0, Lookup::Unknown(Unknown::NotCached));
    assert_eq!(get(&reader, b"gone").0, Lookup::Miss);
    assert_eq!(device_get(&engine, &view, b"kept").unwrap(), b"value");
    let (found, value) = get(&reader, b"kept");
    assert!(matches!(found, Lookup::Hit { .. }), "{found:?}");
    assert_eq!(value, b"value");
    engine.close().unwrap();
    view.shutdown();
}

#[test]
fn the_view_grows_to_its_maximum_then_sends_misses_to_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, view) = daemon(dir.path(), 64, 256);
    let path = view_path(dir.path());
    let mut reader = ViewReader::open(&path).unwrap();
    let first = reader.instance_id();
    for i in 0..200u32 {
        engine.put(format!("key{i}").as_bytes(), b"v").unwrap();
    }
    assert!(reader.is_dead(), "growing replaced the view");
    reader = ViewReader::open(&path).unwrap();
    assert_ne!(reader.instance_id(), first);
    assert_eq!(
        reader.device(),
        RDEV,
        "the grown view keeps the device number"
    );
    for i in 0..200u32 {
        assert!(matches!(
            get(&reader, format!("key{i}").as_bytes()).0,
            Lookup::Hit { .. } | Lookup::Unknown(Unknown::NotCached)
        ));
    }
    assert_eq!(
        get(&reader, b"absent").0,
        Lookup::Miss,
        "complete again after growing"
    );
    for i in 200..300u32 {
        engine.put(format!("key{i}").as_bytes(), b"v").unwrap();
    }
    if reader.is_dead() {
        reader = ViewReader::open(&path).unwrap();
    }
    assert_eq!(
        get(&reader, b"absent").0,
        Lookup::Unknown(Unknown::Incomplete),
        "past --view-keys-max a miss is not authoritative"
    );
    assert!(view.is_live());
    engine.purge().unwrap();
    assert_eq!(
        get(&reader, b"absent").0,
        Lookup::Miss,
        "a purge makes it complete"
    );
    engine.close().unwrap();
    view.shutdown();
}

#[test]
fn no_group_hpkv_or_a_directory_hpkvd_makes_0750() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let (engine, view) = daemon(dir.path(), 64, 1 << 20);
    let path = view_path(dir.path());
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o7777, 0o750);
    let md = std::fs::metadata(&path).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o640);
    if let Ok(Some(group)) = nix::unistd::Group::from_name(super::VIEW_GROUP) {
        assert_eq!(md.gid(), group.gid.as_raw());
    }
    engine.close().unwrap();
    view.shutdown();
}

/// The child: a daemon that writes, says so, and waits to be killed.
#[test]
fn crashed_daemon_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let (engine, _view) = daemon(Path::new(&dir), 64, 1 << 20);
    engine.put(b"before-crash", b"acknowledged").unwrap();
    engine.put(b"deleted", b"x").unwrap();
    engine.delete(b"deleted").unwrap();
    println!("child-daemon-ready");
    loop {
        std::thread::park();
    }
}

#[test]
fn another_process_reads_it_and_a_restart_after_kill_9_marks_it_dead() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "view::tests::crashed_daemon_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("child-daemon-ready"))),
        "the child daemon did not start"
    );
    let old = ViewReader::open(view_path(dir.path())).unwrap();
    let (found, value) = get(&old, b"before-crash");
    assert!(matches!(found, Lookup::Hit { .. }), "{found:?}");
    assert_eq!(value, b"acknowledged");
    assert_eq!(get(&old, b"deleted").0, Lookup::Miss);
    child.kill().unwrap(); // SIGKILL: no clean exit, the view is not marked dead
    child.wait().unwrap();
    assert!(!old.is_dead(), "nobody marked it dead yet");

    let (engine, view) = daemon(dir.path(), 64, 1 << 20);
    assert!(
        old.is_dead(),
        "the new daemon marked its predecessor's view dead"
    );
    assert_eq!(get(&old, b"before-crash").0, Lookup::Unknown(Unknown::Dead));
    let new = ViewReader::open(view_path(dir.path())).unwrap();
    assert_eq!(
        get(&new, b"before-crash").0,
        Lookup::Unknown(Unknown::NotCached)
    );
    assert_eq!(get(&new, b"deleted").0, Lookup::Miss);
    engine.close().unwrap();
    view.shutdown();
}

#[test]
fn a_second_daemon_under_the_same_name_is_refused_before_it_touches_the_view() {
    let dir = tempfile::tempdir().unwrap();
    assert!(super::claim_name(&dir.path().join("missing"), "hpkv")
        .unwrap()
        .is_none());
    let first = super::claim_name(dir.path(), "hpkv").unwrap();
    assert!(first.is_some());
    let second = super::claim_name(dir.path(), "hpkv");
    assert!(
        matches!(&second, Err(super::ViewError::NameInUse { .. })),
        "{:?}",
        second.err()
    );
    assert!(second.unwrap_err().to_string().contains("another hpkvd"));
    assert!(super::claim_name(dir.path(), "hpkv-other")
        .unwrap()
        .is_some());
    drop(first);
    assert!(super::claim_name(dir.path(), "hpkv").unwrap().is_some());
}

/// A profiling harness, not a check: `HPKV_WRITE_COST_N` sync overwrites of a 100-record
/// store through what the device layer does for a `write()` (parse, queue, commit, view),
/// on an image file, with the view on and sized as hpkvd sizes it. Run under callgrind to count the
/// instructions per write; `HPKV_WRITE_COST_VIEW=off` leaves the view out, and
/// `HPKV_WRITE_COST_KEYS=new` writes a new key each time instead (the module's method), and
/// `HPKV_WRITE_COST_CACHE=BYTES` sizes the value cache (1 MiB unless set; 0: none; with the
/// view on only).
#[test]
#[ignore = "a profiling harness, run by hand"]
fn write_cost_harness() {
    let n: usize = std::env::var("HPKV_WRITE_COST_N").map_or(1000, |v| v.parse().unwrap());
    let view_on = std::env::var("HPKV_WRITE_COST_VIEW").as_deref() != Ok("off");
    let new_keys = std::env::var("HPKV_WRITE_COST_KEYS").as_deref() == Ok("new");
    let dir = tempfile::tempdir().unwrap();
    let cache_bytes =
        std::env::var("HPKV_WRITE_COST_CACHE").map_or(1 << 20, |v| v.parse().unwrap());
    let engine = if view_on {
        daemon_with_cache(dir.path(), super::VIEW_KEYS_MIN, 1 << 20, cache_bytes).0
    } else {
        let image = dir.path().join("store.img");
        hpkv_engine::device::create_image_if_missing(&image, 32 << 20).unwrap();
        Arc::new(Engine::open_path(&image, Config::default()).unwrap())
    };
    let value = [b'v'; 100];
    let mut buf = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..n {
        buf.clear();
        let k = if new_keys { i } else { i % 100 };
        buf.extend_from_slice(format!("w-{k:08}:").as_bytes());
        buf.extend_from_slice(&value);
        let op = match hpkv_abi::parse_write(&buf).unwrap() {
            hpkv_abi::WriteRequest::Put { key, value } => hpkv_engine::WriteOp::Put {
                key: key.into(),
                value: value.into(),
            },
            hpkv_abi::WriteRequest::Append { .. } => unreachable!("puts only"),
        };
        let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = answered.clone();
        engine.submit(
            op,
            Box::new(move |r| {
                r.unwrap();
                flag.store(true, std::sync::atomic::Ordering::Release);
            }),
        );
        // Normally answered by now (this thread led); the timer's safety net may lead instead.
        while !answered.load(std::sync::atomic::Ordering::Acquire) {
            std::thread::yield_now();
        }
    }
    let per_write_ns = started.elapsed().as_nanos() / u128::try_from(n).unwrap();
    eprintln!("{n} writes, view {view_on}: {per_write_ns} ns each");
    let last = format!("w-{:08}", if new_keys { n - 1 } else { (n - 1) % 100 });
    assert_eq!(
        engine.get(last.as_bytes()).unwrap().as_deref(),
        Some(&value[..])
    );
}
