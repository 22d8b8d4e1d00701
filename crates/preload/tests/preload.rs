//! `libhpkv_preload.so` under `LD_PRELOAD`, on the host: a C program (`tests/probe.c`) opens
//! `/dev/null` and issues GETs on it, while this test writes a view that says it describes
//! `/dev/null`'s device number. `/dev/null` answers every ioctl with ENOTTY, so each answer
//! shows where it came from: the view (the device's bytes, return value and errno) or the
//! real `ioctl` (ENOTTY). Every buffer is compared byte for byte with what the device writes.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use hpkv_view::{ViewConfig, ViewStats, ViewWriter};

const ENOENT: i32 = 2;
const EBADF: i32 = 9;
const ENOTTY: i32 = 25;
const ERANGE: i32 = 34;
/// errno before every call of the probe: a success must leave it.
const UNTOUCHED: i32 = 99;
const GET_STRUCT: usize = 536;
const IOC_GET: u32 = hpkv_abi::IOC_GET;

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The library, built for this test run (`cargo test` builds no cdylib for an integration
/// test, so the test asks cargo for it, in the same profile).
fn library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let dir = target_dir();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "hpkv-preload"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo build -p hpkv-preload");
        assert!(status.success(), "cargo build -p hpkv-preload failed");
        let so = dir.join("libhpkv_preload.so");
        assert!(so.exists(), "{} is missing", so.display());
        so
    })
}

/// The probe, compiled once per test run.
fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let dir = target_dir().join("preload-test");
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("probe");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let status = Command::new("cc")
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
            .arg(manifest.join("../../uapi"))
            .arg("-o")
            .arg(&out)
            .arg(manifest.join("tests/probe.c"))
            .status()
            .expect("cc");
        assert!(status.success(), "the probe does not compile");
        out
    })
}

fn null_rdev() -> u64 {
    std::fs::metadata("/dev/null").unwrap().rdev()
}

struct View {
    dir: tempfile::TempDir,
    path: PathBuf,
    writer: ViewWriter,
    _beating: Beating,
}

/// Keeps a view's heartbeat fresh from a thread, as hpkvd does, until dropped.
struct Beating {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Beating {
    fn start(writer: &ViewWriter) -> Beating {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let heart = writer.heartbeat_handle();
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                heart.beat();
                std::thread::sleep(hpkv_view::HEARTBEAT_INTERVAL);
            }
        });
        Beating { stop }
    }
}

impl Drop for Beating {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn view(profile: u64) -> View {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("null.view");
    let mut config = ViewConfig::new(256, 1 << 16, 1 << 20);
    config.device = null_rdev();
    config.abi_profile = u32::try_from(profile).unwrap();
    let mut w = ViewWriter::create(&path, &config).unwrap();
    w.upsert(b"k", 1, Some(b"abc"), 3).unwrap();
    w.upsert(b"bin", 2, Some(b"a\0b\xff"), 4).unwrap();
    w.upsert(b"cold", 3, None, 40).unwrap();
    w.upsert(b"ab", 4, Some(b"x"), 1).unwrap();
    w.set_stats(ViewStats {
        records: 4,
        value_bytes: 48,
        device_bytes: 1 << 30,
    });
    w.publish().unwrap();
    View {
        dir,
        path,
        _beating: Beating::start(&w),
        writer: w,
    }
}

/// Runs the probe with the library (and `HPKV_VIEW` naming `view`) or without it.
fn run(view: &mut View, preload: bool, ops: &[&str]) -> Vec<String> {
    let mut cmd = Command::new(probe());
    cmd.args(ops).env_remove("LD_PRELOAD");
    if preload {
        cmd.env("LD_PRELOAD", library())
            .env("HPKV_VIEW", &view.path);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "probe {ops:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn line(what: &str, ret: i32, errno: i32, buf: &[u8]) -> String {
    format!("{what} ret {ret} errno {errno} buf {}", hex(buf))
}

/// The probe's readme buffer: the key, its NUL, 0xAA to `cap`.
fn readme_buf(key: &[u8], cap: usize) -> Vec<u8> {
    let mut b = vec![0xAA; cap];
    b[..key.len()].copy_from_slice(key);
    b[key.len()] = 0;
    b
}

/// What the device leaves in a readme buffer after a hit.
fn readme_hit(key: &[u8], cap: usize, value: &[u8]) -> Vec<u8> {
    let mut b = readme_buf(key, cap);
    b[..value.len()].copy_from_slice(value);
    b[value.len()] = 0;
    b
}

fn safe_buf(key: &[u8], capacity: u64, room: usize) -> Vec<u8> {
    let mut b = vec![0xAA; GET_STRUCT + room];
    b[..GET_STRUCT].fill(0);
    b[..2].copy_from_slice(&u16::try_from(key.len()).unwrap().to_le_bytes());
    b[8..16].copy_from_slice(&capacity.to_le_bytes());
    b[24..24 + key.len()].copy_from_slice(key);
    b
}

#[test]
fn readme_profile_hits_misses_and_what_goes_to_the_device() {
    let mut v = view(hpkv_abi::ABI_README);
    let ops = [
        "open",
        "/dev/null",
        "rw", //
        "readme",
        "3",
        "k",
        "16", //
        "readme",
        "3",
        "bin",
        "8", //
        "readme",
        "3",
        "nobody",
        "16", //
        "readme",
        "3",
        "cold",
        "16", //
        "raw",
        "3",
        "0",
        "00",
        "8", // empty key
        "raw",
        "3",
        "0",
        "",
        "1024", // no NUL in 512 bytes
        "null",
        "3",
        "0", //
        "prot-none",
        "3",
        "0", //
        "edge",
        "3",
        "ab", // "x\0" fits where "ab\0" was
        "edge",
        "3",
        "k", // "abc\0" does not fit in the 2 bytes left
        "read-only",
        "3",
        "k", //
        "readme",
        "0",
        "k",
        "16", // a descriptor it did not see opened
        "raw",
        "3",
        "1",
        "6b00",
        "8", // DELETE goes to the device
    ];
    let got = run(&mut v, true, &ops);
    let want = vec![
        "open ret 3 errno 99".to_string(),
        line("readme", 0, UNTOUCHED, &readme_hit(b"k", 16, b"abc")),
        line("readme", 0, UNTOUCHED, &readme_hit(b"bin", 8, b"a\0b\xff")),
        line("readme", -1, ENOENT, &readme_buf(b"nobody", 16)),
        line("readme", -1, ENOTTY, &readme_buf(b"cold", 16)),
        line("raw", -1, ENOTTY, &readme_buf(b"", 8)),
        line("raw", -1, ENOTTY, &[0xAA; 1024]),
        "null ret -1 errno 25".to_string(),
        "prot-none ret -1 errno 25".to_string(),
        line("edge", 0, UNTOUCHED, b"x\0\0"),
        line("edge", -1, ENOTTY, b"k\0"),
        line("writable", 0, UNTOUCHED, &{
            let mut b = vec![0; 16];
            b[..4].copy_from_slice(b"abc\0");
            b
        }),
        "read-only ret -1 errno 25".to_string(),
        "remapped-none ret -1 errno 25".to_string(),
        line("readme", -1, ENOTTY, &readme_buf(b"k", 16)),
        line("raw", -1, ENOTTY, &readme_buf(b"k", 8)),
    ];
    assert_eq!(got, want);

    // Without the library every GET reaches /dev/null.
    let plain = run(
        &mut v,
        false,
        &["open", "/dev/null", "rw", "readme", "3", "k", "16"],
    );
    assert_eq!(plain[1], line("readme", -1, ENOTTY, &readme_buf(b"k", 16)));
}

#[test]
fn v13_profile_and_the_safe_get() {
    let mut v = view(hpkv_abi::ABI_V13);
    let ops = [
        "open",
        "/dev/null",
        "r", //
        "v13",
        "3",
        "bin",
        "20", //
        "v13",
        "3",
        "nobody",
        "20", //
        "v13",
        "3",
        "cold",
        "64", //
        "raw",
        "3",
        "0",
        "0000",
        "16", // key_len 0
        "raw",
        "3",
        "0",
        "0102",
        "16", // key_len 513
        "safe",
        "3",
        "bin",
        "4",
        "8", //
        "safe",
        "3",
        "bin",
        "3",
        "8", // ERANGE
        "safe",
        "3",
        "nobody",
        "8",
        "8", //
        "safe",
        "3",
        "cold",
        "64",
        "64", //
    ];
    let got = run(&mut v, true, &ops);
    let mut v13_hit = vec![0xAA; 20];
    v13_hit[..2].copy_from_slice(&3u16.to_le_bytes());
    v13_hit[2..10].copy_from_slice(&4u64.to_le_bytes());
    v13_hit[10..14].copy_from_slice(b"a\0b\xff");
    let v13_key = |key: &[u8], cap: usize| {
        let mut b = vec![0xAA; cap];
        b[..2].copy_from_slice(&u16::try_from(key.len()).unwrap().to_le_bytes());
        b[2..2 + key.len()].copy_from_slice(key);
        b
    };
    let mut raw0 = vec![0xAA; 16];
    raw0[..2].fill(0);
    let mut raw513 = vec![0xAA; 16];
    raw513[..2].copy_from_slice(&[1, 2]);
    let mut safe_hit = safe_buf(b"bin", 4, 8);
    safe_hit[16..24].copy_from_slice(&4u64.to_le_bytes());
    safe_hit[GET_STRUCT..GET_STRUCT + 4].copy_from_slice(b"a\0b\xff");
    let mut safe_erange = safe_buf(b"bin", 3, 8);
    safe_erange[16..24].copy_from_slice(&4u64.to_le_bytes());
    let want = vec![
        "open ret 3 errno 99".to_string(),
        line("v13", 0, UNTOUCHED, &v13_hit),
        line("v13", -1, ENOENT, &v13_key(b"nobody", 20)),
        line("v13", -1, ENOTTY, &v13_key(b"cold", 64)),
        line("raw", -1, ENOTTY, &raw0),
        line("raw", -1, ENOTTY, &raw513),
        line("safe", 0, UNTOUCHED, &safe_hit),
        line("safe", -1, ERANGE, &safe_erange),
        line("safe", -1, ENOENT, &safe_buf(b"nobody", 8, 8)),
        line("safe", -1, ENOTTY, &safe_buf(b"cold", 64, 64)),
    ];
    assert_eq!(got, want);
    let _ = IOC_GET;
}

#[test]
fn descriptors_reused_duplicated_replaced_and_forked() {
    let mut v = view(hpkv_abi::ABI_README);
    let file = v.dir.path().join("regular");
    std::fs::write(&file, b"x").unwrap();
    let file = file.to_str().unwrap();
    let hit = line("readme", 0, UNTOUCHED, &readme_hit(b"k", 16, b"abc"));
    let fwd = line("readme", -1, ENOTTY, &readme_buf(b"k", 16));
    #[rustfmt::skip]
    let ops = [
        "open", "/dev/null", "rw",  // 3
        "close", "3",
        "open", file, "r",          // 3 again, a regular file
        "readme", "3", "k", "16",   // fwd
        "open", "/dev/null", "rw",  // 4
        "dup", "4",                 // 5, a copy of 4
        "readme", "5", "k", "16",   // hit
        "dup2", "3", "4",           // 4 is now the regular file
        "readme", "4", "k", "16",   // fwd
        "dup3", "5", "3",           // 3 is now /dev/null
        "readme", "3", "k", "16",   // hit
        "close-range", "3", "4",
        "open", file, "r",          // 3
        "readme", "3", "k", "16",   // fwd
        "closefrom", "4",
        "open", file, "r",          // 4
        "readme", "4", "k", "16",   // fwd
        "fopen", "/dev/null", "r",  // 5
        "readme", "5", "k", "16",   // hit
        "fork-readme", "5", "k", "16", // hit in the child
        "fclose-last",
        "open", file, "r",          // 5
        "readme", "5", "k", "16",   // fwd
        "open", "/dev/null", "path", // 6, O_PATH: ioctl answers EBADF
        "readme", "6", "k", "16",
    ];
    let got = run(&mut v, true, &ops);
    let want = vec![
        "open ret 3 errno 99".to_string(),
        "close ret 0".to_string(),
        "open ret 3 errno 99".to_string(),
        fwd.clone(),
        "open ret 4 errno 99".to_string(),
        "dup ret 5".to_string(),
        hit.clone(),
        "dup2 ret 4".to_string(),
        fwd.clone(),
        "dup3 ret 3".to_string(),
        hit.clone(),
        "close-range ret 0".to_string(),
        "open ret 3 errno 99".to_string(),
        fwd.clone(),
        "closefrom".to_string(),
        "open ret 4 errno 99".to_string(),
        fwd.clone(),
        "fopen fd 5 errno 99".to_string(),
        hit.clone(),
        hit.clone(),
        "fclose ret 0".to_string(),
        "open ret 5 errno 99".to_string(),
        fwd,
        "open ret 6 errno 99".to_string(),
        line("readme", -1, EBADF, &readme_buf(b"k", 16)),
    ];
    assert_eq!(got, want);
}

#[test]
fn proc_hpkv_stats_from_the_view() {
    let mut v = view(hpkv_abi::ABI_README);
    let text = "Total records: 4\nTotal disk usage: 48 bytes\nDevice size: 1073741824 bytes\n";
    let got = run(
        &mut v,
        true,
        &["cat", "/proc/hpkv_stats", "fcat", "/proc/hpkv_stats"],
    );
    assert_eq!(
        got,
        vec![
            format!("cat write -1 errno {EBADF}"),
            format!("cat text {}", hex(text.as_bytes())),
            format!("fcat text {}", hex(text.as_bytes())),
        ]
    );
    let plain = run(
        &mut v,
        false,
        &["cat", "/proc/hpkv_stats", "fcat", "/proc/hpkv_stats"],
    );
    assert_eq!(plain, vec!["cat errno 2", "fcat errno 2"]);
    // A dead view and no device node: the file does not exist, as before.
    v.writer.mark_dead();
    let mut cmd = Command::new(probe());
    cmd.args(["cat", "/proc/hpkv_stats"])
        .env("LD_PRELOAD", library())
        .env("HPKV_VIEW", &v.path)
        .env("HPKV_NAME", "hpkv-no-such-store");
    let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
    assert_eq!(out.trim(), "cat errno 2");
}

#[test]
fn a_dead_view_goes_to_the_device_and_its_successor_is_found() {
    let v = view(hpkv_abi::ABI_README);
    let ready = v.dir.path().join("ready");
    let replaced = v.dir.path().join("replaced");
    // The probe reads, waits while the test replaces the view, and reads again once the
    // reopen interval has passed.
    let child = Command::new(probe())
        .args(["open", "/dev/null", "rw", "readme", "3", "k", "16", "mark"])
        .arg(&ready)
        .args(["readme", "3", "k", "16", "wait"])
        .arg(&replaced)
        .args([
            "readme", "3", "k", "16", "sleep", "300", "readme", "3", "k", "16",
        ])
        .env("LD_PRELOAD", library())
        .env("HPKV_VIEW", &v.path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while !ready.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut config = ViewConfig::new(64, 4096, 4096);
    config.device = null_rdev();
    let mut next = ViewWriter::create(&v.path, &config).unwrap(); // marks the old one dead
    next.upsert(b"k", 9, Some(b"new"), 3).unwrap();
    next.publish().unwrap();
    let _beating = Beating::start(&next);
    std::fs::write(&replaced, b"").unwrap();
    let out = child.wait_with_output().unwrap();
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let old = line("readme", 0, UNTOUCHED, &readme_hit(b"k", 16, b"abc"));
    let forwarded = line("readme", -1, ENOTTY, &readme_buf(b"k", 16));
    let new = line("readme", 0, UNTOUCHED, &readme_hit(b"k", 16, b"new"));
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(
        got[..3],
        ["open ret 3 errno 99".to_string(), old.clone(), old]
    );
    // Right after the replacement: the device, or the new view if the interval had passed.
    assert!(got[3] == forwarded || got[3] == new, "{}", got[3]);
    assert_eq!(got[4], new);
}

#[test]
fn a_stale_view_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("null.view");
    let mut config = ViewConfig::new(64, 4096, 4096);
    config.device = null_rdev();
    let mut w = ViewWriter::create(&path, &config).unwrap();
    w.upsert(b"k", 1, Some(b"abc"), 3).unwrap();
    w.publish().unwrap();
    // No heartbeat for longer than the readers' limit: a daemon that crashed.
    std::thread::sleep(std::time::Duration::from_nanos(
        hpkv_view::HEARTBEAT_STALE_NS + 200_000_000,
    ));
    let out = Command::new(probe())
        .args(["open", "/dev/null", "rw", "readme", "3", "k", "16"])
        .env("LD_PRELOAD", library())
        .env("HPKV_VIEW", &path)
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.lines().nth(1).unwrap(),
        line("readme", -1, ENOTTY, &readme_buf(b"k", 16))
    );
    // Its daemon beats again: the view is used again.
    w.heartbeat();
    let out = Command::new(probe())
        .args(["open", "/dev/null", "rw", "readme", "3", "k", "16"])
        .env("LD_PRELOAD", library())
        .env("HPKV_VIEW", &path)
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.lines().nth(1).unwrap(),
        line("readme", 0, UNTOUCHED, &readme_hit(b"k", 16, b"abc"))
    );
}

#[test]
fn a_view_of_another_device_is_not_used() {
    let mut v = view(hpkv_abi::ABI_README);
    // /dev/zero is another character device: the view names /dev/null's number.
    let got = run(
        &mut v,
        true,
        &["open", "/dev/zero", "rw", "readme", "3", "k", "16"],
    );
    assert_eq!(got[1], line("readme", -1, ENOTTY, &readme_buf(b"k", 16)));
}

#[test]
fn many_gets_in_one_process() {
    let mut v = view(hpkv_abi::ABI_README);
    let got = run(
        &mut v,
        true,
        &["open", "/dev/null", "rw", "loop", "3", "k", "100000"],
    );
    assert_eq!(got[1], "loop ok 100000 of 100000");
}
