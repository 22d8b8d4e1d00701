//! The engine on a real block device: a loop device over a sparse image file, attached with
//! `losetup` (the tests need root; without `losetup` or the right to use it they print a
//! SKIP line and pass).
//!
//! Checked: `FileDevice` sees a block device (size from BLKGETSIZE64, block size from
//! BLKSSZGET: the loop device's 512-byte logical blocks), opens it for direct I/O and claims
//! it exclusively (a second open is refused as busy); thousands of records, 100 KiB values
//! among them, written by concurrent writers survive a close and reopen through the index
//! snapshot and through a scan of the log; foreign data is refused unless
//! `force_initialize`, a blank device is formatted unless `initialize_if_empty` is off.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::{Bound, ControlFlow};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hpkv_engine::{
    BlockDevice, Config, Durability, Engine, FileDevice, OpenDeviceError, OpenError,
};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// A loop device, detached when dropped.
struct LoopDevice {
    path: PathBuf,
}

impl LoopDevice {
    /// Attaches `image` with 512-byte logical blocks, with direct I/O to the image if the
    /// file system allows it.
    fn attach(image: &Path) -> Result<LoopDevice, String> {
        let attach = |direct: bool| {
            let mut cmd = Command::new("losetup");
            cmd.args(["-f", "--show", "--sector-size", "512"]);
            if direct {
                cmd.arg("--direct-io=on");
            }
            cmd.arg(image).output()
        };
        let mut out = attach(true).map_err(|e| format!("cannot run losetup: {e}"))?;
        if !out.status.success() {
            eprintln!(
                "losetup --direct-io=on failed ({}); attaching without it",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            out = attach(false).map_err(|e| format!("cannot run losetup: {e}"))?;
        }
        if !out.status.success() {
            return Err(format!(
                "losetup failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if !path.starts_with("/dev/") {
            return Err(format!("losetup printed {}", path.display()));
        }
        // Let udev finish with the new device (it probes it, holding a shared lock).
        let _ = Command::new("udevadm").args(["settle", "-t", "5"]).output();
        Ok(LoopDevice { path })
    }

    /// The logical block size the kernel reports.
    fn logical_block_size(&self) -> Option<u32> {
        let name = self.path.file_name()?.to_str()?;
        let s =
            std::fs::read_to_string(format!("/sys/block/{name}/queue/logical_block_size")).ok()?;
        s.trim().parse().ok()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        match Command::new("losetup").arg("-d").arg(&self.path).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "losetup -d {}: {}",
                self.path.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("losetup -d {}: {e}", self.path.display()),
        }
    }
}

/// A sparse image of `size` bytes in a temporary directory, with `bytes` written at `at`,
/// attached to a loop device; `None` (after a SKIP line) where loop devices are unavailable.
fn loop_device(
    test: &str,
    size: u64,
    at: u64,
    bytes: &[u8],
) -> Option<(tempfile::TempDir, LoopDevice)> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let image = dir.path().join("disk.img");
    {
        let mut f = std::fs::File::create(&image).expect("create the image");
        f.set_len(size).expect("size the image");
        if !bytes.is_empty() {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(bytes).unwrap();
        }
        f.sync_all().unwrap();
    }
    match LoopDevice::attach(&image) {
        Ok(l) => Some((dir, l)),
        Err(why) => {
            eprintln!("SKIP {test}: no loop device ({why}); this test needs root and losetup");
            None
        }
    }
}

/// Opens the store, retrying for a while if the device is busy: udev briefly holds a lock
/// on a block device after it is attached or closed after writing.
fn open_store(path: &Path, config: &Config) -> Result<Engine, OpenError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Engine::open_path(path, config.clone()) {
            Err(OpenError::Device(OpenDeviceError::Busy(_))) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// `FileDevice::open`, retrying while busy as [`open_store`] does.
fn open_device(path: &Path) -> Result<FileDevice, OpenDeviceError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match FileDevice::open(path) {
            Err(OpenDeviceError::Busy(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

fn scan_all(engine: &Engine) -> Model {
    let mut out = Model::new();
    let mut last: Option<Vec<u8>> = None;
    engine
        .scan(Bound::Unbounded, Bound::Unbounded, |k, v| {
            assert!(
                last.as_deref().is_none_or(|l| l < k),
                "a key twice or out of order"
            );
            last = Some(k.to_vec());
            out.insert(k.to_vec(), v.to_vec());
            ControlFlow::Continue(())
        })
        .expect("scan");
    out
}

fn value(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(seed.wrapping_mul(131).wrapping_add(i * 7) % 251).expect("below 251"))
        .collect()
}

fn config() -> Config {
    Config {
        durability: Durability::Sync,
        cache_bytes: 1 << 20,
        ..Config::default()
    }
}

fn check_store(engine: &Engine, model: &Model, what: &str) {
    let got = scan_all(engine);
    assert_eq!(got.len(), model.len(), "{what}: record count");
    assert!(got == *model, "{what}: contents differ");
    for (k, v) in model.iter().step_by(37) {
        assert_eq!(
            engine.get(k).unwrap().as_deref(),
            Some(v.as_slice()),
            "{what}: get"
        );
    }
    engine.check_invariants();
    engine
        .verify_against_disk()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
fn engine_on_a_loop_device() {
    const SIZE: u64 = 64 << 20;
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 800;
    let Some((_dir, lo)) = loop_device("engine_on_a_loop_device", SIZE, 0, &[]) else {
        return;
    };
    let path = lo.path.clone();
    let started = Instant::now();
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_block_device(), "{}", path.display());
    let kernel_block = lo.logical_block_size().expect("sysfs logical_block_size");
    assert_eq!(
        kernel_block, 512,
        "the loop device was attached with 512-byte sectors"
    );
    {
        let dev = open_device(&path).expect("open the loop device");
        assert_eq!(dev.size_bytes(), SIZE, "BLKGETSIZE64");
        assert_eq!(dev.block_size(), kernel_block, "BLKSSZGET");
        assert!(dev.is_direct(), "a block device takes O_DIRECT");
    }

    let engine = open_store(&path, &config()).expect("format the loop device");
    assert_eq!(engine.device().block_size(), 512);
    assert_eq!(engine.device().size_bytes(), SIZE);
    assert_eq!(engine.device().describe(), path.display().to_string());
    // The device is claimed: a second store (another hpkvd) is refused.
    match FileDevice::open(&path) {
        Err(OpenDeviceError::Busy(_)) => {}
        Err(e) => panic!("a second open failed with the wrong error: {e}"),
        Ok(_) => panic!("a second open of a device in use must be refused"),
    }
    match Engine::open_path(&path, config()) {
        Err(OpenError::Device(OpenDeviceError::Busy(_))) => {}
        Err(e) => panic!("a second store failed with the wrong error: {e}"),
        Ok(_) => panic!("a second store on a device in use must be refused"),
    }

    // Four writers, disjoint keys: puts (every 25th a 100 KiB value), then overwrites,
    // appends and deletes.
    let model = Mutex::new(Model::new());
    std::thread::scope(|s| {
        for t in 0..WRITERS {
            let (engine, model) = (&engine, &model);
            s.spawn(move || {
                let mut mine = Model::new();
                let key = |i: usize| format!("w{t}/{i:05}").into_bytes();
                for i in 0..PER_WRITER {
                    let len = if i % 25 == 0 {
                        100_000 + i % 2400
                    } else {
                        1 + (i * 37) % 1500
                    };
                    let v = value(t * 10_000 + i, len);
                    engine.put(&key(i), &v).unwrap();
                    mine.insert(key(i), v);
                }
                for i in (2..PER_WRITER).step_by(5) {
                    let v = value(t * 10_000 + i + 5000, 1 + i % 700);
                    engine.put(&key(i), &v).unwrap();
                    mine.insert(key(i), v);
                }
                for i in (1..PER_WRITER).step_by(11) {
                    let s = value(i, 64);
                    engine.append(&key(i), &s).unwrap();
                    mine.get_mut(&key(i)).unwrap().extend_from_slice(&s);
                }
                for i in (3..PER_WRITER).step_by(7) {
                    engine.delete(&key(i)).unwrap();
                    mine.remove(&key(i));
                }
                model.lock().unwrap().extend(mine);
            });
        }
    });
    let model = model.into_inner().unwrap();
    let stats = engine.stats();
    check_store(&engine, &model, "while open");
    engine.compact_now(false).unwrap();
    check_store(&engine, &model, "after compaction");
    engine.close().unwrap();
    drop(engine);

    // The index snapshot path.
    let engine = open_store(&path, &config()).expect("reopen");
    check_store(&engine, &model, "after a reopen (snapshot)");
    engine.close().unwrap();
    drop(engine);

    // The log scan path.
    let engine = open_store(
        &path,
        &Config {
            force_read_disk: true,
            ..config()
        },
    )
    .expect("reopen, scanning the log");
    check_store(&engine, &model, "after a reopen (log scan)");
    engine.close().unwrap();
    drop(engine);
    eprintln!(
        "loop device {}: {} writes by {WRITERS} writers in {} flushes, {} records ({} MiB) \
         checked after close/reopen via snapshot and via log scan, {:.1} s",
        path.display(),
        stats.puts + stats.appends + stats.deletes,
        stats.device_flushes,
        model.len(),
        model.values().map(Vec::len).sum::<usize>() >> 20,
        started.elapsed().as_secs_f64()
    );
}

/// What the device holds at `at`, read through the block device.
fn read_back(path: &Path, at: u64, len: usize) -> Vec<u8> {
    let mut f = OpenOptions::new().read(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn foreign_data_is_refused_unless_forced() {
    let junk = b"some file system's superblock".repeat(8);
    let Some((_dir, lo)) = loop_device(
        "foreign_data_is_refused_unless_forced",
        8 << 20,
        20_000,
        &junk,
    ) else {
        return;
    };
    match open_store(&lo.path, &config()) {
        Err(OpenError::ForeignData) => {}
        Err(e) => panic!("foreign data: wrong error {e}"),
        Ok(_) => panic!("a device holding foreign data must not be formatted"),
    }
    assert_eq!(
        read_back(&lo.path, 20_000, junk.len()),
        junk,
        "the refused device was written to"
    );
    let engine = open_store(
        &lo.path,
        &Config {
            force_initialize: true,
            ..config()
        },
    )
    .expect("force_initialize formats it");
    engine.put(b"k", b"v").unwrap();
    engine.close().unwrap();
    drop(engine);
    // It is a store now: it opens as one, without forcing.
    let engine = open_store(&lo.path, &config()).expect("reopen the new store");
    assert_eq!(engine.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn blank_device_is_formatted_only_if_allowed() {
    let Some((_dir, lo)) =
        loop_device("blank_device_is_formatted_only_if_allowed", 8 << 20, 0, &[])
    else {
        return;
    };
    let no_init = Config {
        initialize_if_empty: false,
        ..config()
    };
    match open_store(&lo.path, &no_init) {
        Err(OpenError::Blank) => {}
        Err(e) => panic!("blank device: wrong error {e}"),
        Ok(_) => panic!("initialize_if_empty is off: the blank device must not be formatted"),
    }
    assert!(
        read_back(&lo.path, 0, 64 << 10).iter().all(|&b| b == 0),
        "the refused device was written to"
    );
    let engine = open_store(&lo.path, &config()).expect("a blank device is formatted");
    engine.put(b"k", b"v").unwrap();
    engine.close().unwrap();
    drop(engine);
    let engine = open_store(&lo.path, &no_init).expect("an existing store opens");
    assert_eq!(engine.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// Only the first 40 KiB decide whether a device is blank (as in the module): data after
/// them is not "foreign", and formatting proceeds.
#[test]
fn data_past_the_first_40_kib_does_not_count() {
    let Some((_dir, lo)) = loop_device(
        "data_past_the_first_40_kib_does_not_count",
        8 << 20,
        40 << 10,
        &[0xAB; 4096],
    ) else {
        return;
    };
    let engine = open_store(&lo.path, &config()).expect("the first 40 KiB are zero: formatted");
    engine.put(b"k", b"v").unwrap();
    assert_eq!(engine.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}
