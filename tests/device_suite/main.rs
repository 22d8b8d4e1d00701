//! The ABI suite: runs inside the VM against the real `/dev/hpkv` served by hpkvd
//! (tests/vm/suite/run.sh builds it with `cargo test --no-run --test device_suite` and
//! copies it in). It is not run by a plain `cargo test` (`test = false` in Cargo.toml):
//! the host has no CUSE.
//!
//! Usage: `device_suite [--device PATH] [--profile readme|v1.3] [FILTER...]` (a FILTER picks
//!        the tests whose name contains it; `!FILTER` leaves them out)
//!        `device_suite writer --device PATH --log FILE --count N` (kill -9 test: writes
//!         records one by one, logging each key once acknowledged)
//!        `device_suite verify-log --device PATH --log FILE` (checks every logged key)
//!        `device_suite fill --device PATH --prefix P --count N` / `check --prefix P --count N`
//!
//! Each test prints `HPKV-RESULT PASS name` or `HPKV-RESULT FAIL name reason`, the lines
//! the VM runner counts. Raw ioctls with odd pointers (NULL, unmapped memory, a key at the
//! very end of a mapping) need `unsafe`; it stays in this test program.

use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::mem::offset_of;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use hpkv_abi::{self as abi, le, uapi, RangeQuery, StatsRecord};

mod ffi;
use ffi::{ioctl, Guarded};

type TestFn = fn(&Ctx);

struct Ctx {
    device: String,
    profile: abi::Profile,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut device = "/dev/hpkv".to_string();
    let mut profile = abi::Profile::Readme;
    let mut log = String::new();
    let mut count = 0usize;
    let mut prefix = "p".to_string();
    let mut filters = vec![];
    let mut mode = "suite".to_string();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--device" => device = it.next().expect("--device PATH"),
            "--profile" => profile = it.next().expect("--profile").parse().expect("profile"),
            "--log" => log = it.next().expect("--log FILE"),
            "--count" => count = it.next().expect("--count N").parse().expect("number"),
            "--prefix" => prefix = it.next().expect("--prefix P"),
            "writer" | "verify-log" | "verify-count" | "fill" | "check" | "worker" => mode = a,
            _ => filters.push(a),
        }
    }
    let ctx = Ctx { device, profile };
    match mode.as_str() {
        "writer" => writer(&ctx, &log, count),
        "verify-log" => verify_log(&ctx, &log),
        "verify-count" => verify_count(&ctx),
        "fill" => fill(&ctx, &prefix, count),
        "check" => check(&ctx, &prefix, count),
        "worker" => worker(&ctx, &prefix, count),
        _ => run_suite(&ctx, &filters),
    }
}

/// `(name, test)` pairs, each name the function's own.
macro_rules! tests {
    ($($test:ident),* $(,)?) => {
        vec![$((stringify!($test), $test as TestFn)),*]
    };
}

/// The tests of the `readme` profile.
fn readme_tests() -> Vec<(&'static str, TestFn)> {
    tests![
        write_upsert_returns_n_and_get_reads_it,
        write_is_binary_safe_split_at_first_colon,
        write_echo_style_keeps_the_newline,
        write_append_and_append_creates,
        write_errnos,
        write_limits_511_key_102399_value,
        append_past_the_limit_is_emsgsize,
        get_writes_value_and_one_nul_only,
        get_missing_is_enoent_buffer_untouched,
        get_and_delete_null_or_bad_pointer_efault,
        key_at_the_end_of_mapped_memory,
        get_no_nul_in_512_or_empty_key_einval,
        get_511_byte_key,
        value_of_102400_bytes,
        delete_then_enoent,
        insert_512_byte_key_and_binary_value,
        insert_and_partial_update_errnos,
        partial_update_appends_and_creates,
        unknown_commands_are_enotty,
        every_command_on_any_open_fd,
        purge_removes_everything_arg_ignored,
        listing_in_key_order_a_few_bytes_at_a_time,
        listing_cursor_is_per_open_file,
        stats_extension_counts_match_listing,
        concurrent_threads,
        concurrent_processes,
        round_trips_to_the_daemon_per_ioctl,
        put_batch_stores_every_record_with_one_flush,
        put_batch_of_the_largest_size_and_at_the_guard_page,
        put_batch_errnos_and_nothing_stored,
    ]
}

/// The tests of the `v1.3` profile.
fn v13_tests() -> Vec<(&'static str, TestFn)> {
    tests![
        v13_get_layout,
        v13_delete_and_errnos,
        v13_512_byte_key_and_large_value,
        v13_write_and_insert_unchanged,
    ]
}

fn run_suite(ctx: &Ctx, filters: &[String]) {
    let tests = match ctx.profile {
        abi::Profile::Readme => readme_tests(),
        abi::Profile::V13 => v13_tests(),
    };
    let (mut passed, mut failed) = (0, 0);
    // "!X" leaves out the tests whose name contains X; other filters pick the tests to run.
    let (excluded, included): (Vec<&String>, Vec<&String>) =
        filters.iter().partition(|f| f.starts_with('!'));
    for (name, test) in tests {
        if !included.is_empty() && !included.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        if excluded.iter().any(|f| name.contains(&f[1..])) {
            continue;
        }
        let prefix = if ctx.profile == abi::Profile::V13 {
            "v13:"
        } else {
            ""
        };
        match catch_unwind(AssertUnwindSafe(|| test(ctx))) {
            Ok(()) => {
                passed += 1;
                println!("HPKV-RESULT PASS abi:{prefix}{name}");
            }
            Err(e) => {
                failed += 1;
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(ToString::to_string))
                    .unwrap_or_default();
                println!(
                    "HPKV-RESULT FAIL abi:{prefix}{name} {}",
                    why.replace('\n', " ")
                );
            }
        }
    }
    eprintln!("device_suite: {passed} passed, {failed} failed");
    std::process::exit(i32::from(failed > 0));
}

// ------------------------------------------------------------------------ helpers

fn open(ctx: &Ctx) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&ctx.device)
        .unwrap_or_else(|e| panic!("open {}: {e}", ctx.device))
}

/// `write(fd, buf, n)`: Ok(n) or the errno.
fn write(f: &File, buf: &[u8]) -> Result<usize, i32> {
    let mut f = f;
    f.write(buf).map_err(|e| e.raw_os_error().unwrap_or(-1))
}

fn ioctl_buf(f: &File, cmd: u32, buf: &mut [u8]) -> Result<i32, i32> {
    ioctl(f, cmd, buf.as_mut_ptr().cast())
}

/// readme GET with a buffer of `cap` bytes prefilled with 0xAA; returns the buffer.
fn get_readme(f: &File, key: &[u8], cap: usize) -> Result<Vec<u8>, i32> {
    let mut buf = abi::encode_str_key(key).expect("a string key");
    let len = cap.max(buf.len());
    buf.resize(len, 0xAA);
    ioctl_buf(f, abi::CMD_GET, &mut buf).map(|_| buf)
}

/// The value through readme GET (value then NUL: the value may not contain NUL).
fn get_str(f: &File, key: &[u8]) -> Result<Vec<u8>, i32> {
    let buf = get_readme(f, key, abi::VALUE_MAX + 2)?;
    Ok(abi::parse_readme_get(&buf)
        .expect("a NUL after the value")
        .to_vec())
}

/// The exact value through the safe GET extension (binary safe).
fn get_exact(f: &File, key: &[u8]) -> Result<Vec<u8>, i32> {
    let mut buf = abi::encode_safe_get(key, abi::VALUE_MAX).expect("a key");
    ioctl_buf(f, abi::IOC_GET, &mut buf)?;
    Ok(abi::parse_safe_get(&buf, abi::VALUE_MAX)
        .expect("a value in its room")
        .to_vec())
}

/// `i` modulo 256: the byte patterns of values.
fn byte(i: usize) -> u8 {
    u8::try_from(i % 256).expect("below 256")
}

fn kv(key: &[u8], value: &[u8]) -> Vec<u8> {
    abi::encode_kv(key, value).expect("a key and value within the limits")
}

/// An INSERT argument for the key "k" and value "v" whose header claims `key_len` and
/// `value_len` instead: the probes of the daemon's checks.
fn kv_claiming(key_len: u16, value_len: u64) -> Vec<u8> {
    let mut b = kv(b"k", b"v");
    le::set_u16(&mut b, offset_of!(uapi::hpkv_kv, key_len), key_len);
    le::set_u64(&mut b, offset_of!(uapi::hpkv_kv, value_len), value_len);
    b
}

fn insert(f: &File, key: &[u8], value: &[u8]) -> Result<i32, i32> {
    ioctl_buf(f, abi::CMD_INSERT, &mut kv(key, value))
}

fn delete_readme(f: &File, key: &[u8]) -> Result<i32, i32> {
    let mut k = abi::encode_str_key(key).expect("a string key");
    ioctl_buf(f, abi::CMD_DELETE, &mut k)
}

/// `HPKV_IOC_PUT_BATCH` of `records`: the number stored, or the errno.
fn put_batch(f: &File, records: &[(&[u8], &[u8])]) -> Result<i32, i32> {
    let batch = abi::encode_put_batch(records).expect("records that fit in a batch");
    ioctl_buf(f, abi::IOC_PUT_BATCH, &mut batch.as_bytes().to_vec())
}

fn purge(f: &File) {
    assert_eq!(ioctl(f, abi::CMD_PURGE, std::ptr::null_mut()), Ok(0));
}

fn stats(f: &File) -> StatsRecord {
    let mut buf = vec![0u8; abi::STATS_STRUCT_SIZE];
    ioctl_buf(f, abi::IOC_STATS, &mut buf).expect("STATS");
    StatsRecord::decode(&buf).unwrap()
}

fn read_all(f: &File, chunk: usize) -> Vec<u8> {
    let mut f = f;
    let mut out = vec![];
    let mut buf = vec![0u8; chunk];
    loop {
        let n = f.read(&mut buf).expect("read");
        assert!(
            n <= chunk,
            "read returned {n} bytes for a {chunk}-byte buffer"
        );
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

const EINVAL: i32 = libc::EINVAL;
const EMSGSIZE: i32 = libc::EMSGSIZE;
const ENOENT: i32 = libc::ENOENT;
const EFAULT: i32 = libc::EFAULT;
const ENOTTY: i32 = libc::ENOTTY;

// ------------------------------------------------------------------------ readme profile

fn write_upsert_returns_n_and_get_reads_it(ctx: &Ctx) {
    let f = open(ctx);
    assert_eq!(write(&f, b"t1-key:first"), Ok(12));
    assert_eq!(get_str(&f, b"t1-key"), Ok(b"first".to_vec()));
    assert_eq!(write(&f, b"t1-key:second"), Ok(13));
    assert_eq!(
        get_str(&f, b"t1-key"),
        Ok(b"second".to_vec()),
        "an overwrite is seen at once (no stale read)"
    );
}

fn write_is_binary_safe_split_at_first_colon(ctx: &Ctx) {
    let f = open(ctx);
    let value = b"a:b:c\0\x01\xffnew\nline";
    let mut buf = b"t2-key:".to_vec();
    buf.extend_from_slice(value);
    assert_eq!(write(&f, &buf), Ok(buf.len()));
    assert_eq!(get_exact(&f, b"t2-key"), Ok(value.to_vec()));
}

fn write_echo_style_keeps_the_newline(ctx: &Ctx) {
    let f = open(ctx);
    assert_eq!(write(&f, b"t3-key:v\n"), Ok(9));
    assert_eq!(get_exact(&f, b"t3-key"), Ok(b"v\n".to_vec()));
}

fn write_append_and_append_creates(ctx: &Ctx) {
    let f = open(ctx);
    let _ = delete_readme(&f, b"t4-new");
    assert_eq!(
        write(&f, b"t4-new:+more"),
        Ok(12),
        "append to a missing key creates it"
    );
    assert_eq!(get_str(&f, b"t4-new"), Ok(b"more".to_vec()));
    assert_eq!(write(&f, b"t4-new:+:and+more"), Ok(17));
    assert_eq!(
        get_str(&f, b"t4-new"),
        Ok(b"more:and+more".to_vec()),
        "the cache must not serve the old value"
    );
}

fn write_errnos(ctx: &Ctx) {
    let f = open(ctx);
    assert_eq!(write(&f, b"no colon"), Err(EINVAL), "no colon");
    assert_eq!(
        write(&f, b":value"),
        Err(EINVAL),
        "empty key (the module stored it)"
    );
    assert_eq!(write(&f, b"t5-key:"), Err(EINVAL), "empty value");
    assert_eq!(write(&f, b"t5-key:+"), Err(EINVAL), "empty append");
    let mut long_key = vec![b'k'; 512];
    long_key.extend_from_slice(b":v");
    assert_eq!(write(&f, &long_key), Err(EMSGSIZE), "512-byte key");
    let mut long_value = b"t5-key:".to_vec();
    long_value.extend(vec![b'v'; abi::WRITE_VALUE_MAX + 1]);
    assert_eq!(
        write(&f, &long_value),
        Err(EMSGSIZE),
        "value part of 102400 bytes"
    );
    let huge = vec![b'x'; abi::WRITE_MAX + 1];
    assert_eq!(write(&f, &huge), Err(EMSGSIZE), "n over 102913");
    let huger = vec![b'x'; 300_000];
    assert_eq!(
        write(&f, &huger),
        Err(EMSGSIZE),
        "n far over the limit (split by the kernel)"
    );
    assert_eq!(
        get_readme(&f, b"t5-key", 64).err(),
        Some(ENOENT),
        "nothing was stored by the failed writes"
    );
}

fn write_limits_511_key_102399_value(ctx: &Ctx) {
    let f = open(ctx);
    let key = vec![b'K'; 511];
    let value = vec![b'v'; abi::WRITE_VALUE_MAX];
    let mut buf = key.clone();
    buf.push(b':');
    buf.extend_from_slice(&value);
    assert_eq!(buf.len(), 511 + 1 + 102_399);
    assert_eq!(
        write(&f, &buf),
        Ok(buf.len()),
        "one write of 102911 bytes reaches the daemon whole"
    );
    assert_eq!(get_str(&f, &key), Ok(value));
}

fn append_past_the_limit_is_emsgsize(ctx: &Ctx) {
    let f = open(ctx);
    let mut buf = b"t6-key:".to_vec();
    buf.extend(vec![b'a'; abi::WRITE_VALUE_MAX]);
    assert_eq!(write(&f, &buf), Ok(buf.len()));
    assert_eq!(
        write(&f, b"t6-key:+x"),
        Ok(9),
        "102400 bytes is still allowed"
    );
    assert_eq!(write(&f, b"t6-key:+y"), Err(EMSGSIZE), "102401 is not");
    assert_eq!(
        ioctl_buf(&f, abi::CMD_PARTIAL_UPDATE, &mut kv(b"t6-key", b"z")),
        Err(EMSGSIZE)
    );
    let v = get_exact(&f, b"t6-key").unwrap();
    assert_eq!(
        (v.len(), v.last()),
        (abi::VALUE_MAX, Some(&b'x')),
        "the value is unchanged"
    );
}

fn get_writes_value_and_one_nul_only(ctx: &Ctx) {
    let f = open(ctx);
    assert_eq!(write(&f, b"t7-key:abc"), Ok(10));
    let buf = get_readme(&f, b"t7-key", 64).unwrap();
    // The buffer held "t7-key\0" then 0xAA: GET writes "abc\0" and nothing else.
    assert_eq!(
        &buf[..8],
        b"abc\0ey\0\xAA",
        "value, one NUL, and nothing more"
    );
    assert!(buf[7..].iter().all(|&b| b == 0xAA));
}

fn get_missing_is_enoent_buffer_untouched(ctx: &Ctx) {
    let f = open(ctx);
    let mut buf = vec![0xAAu8; 64];
    buf[..11].copy_from_slice(b"t8-missing\0");
    let before = buf.clone();
    assert_eq!(ioctl_buf(&f, abi::CMD_GET, &mut buf), Err(ENOENT));
    assert_eq!(buf, before, "the buffer is left as it was");
}

fn get_and_delete_null_or_bad_pointer_efault(ctx: &Ctx) {
    let f = open(ctx);
    let g = Guarded::new();
    for cmd in [
        abi::CMD_GET,
        abi::CMD_DELETE,
        abi::CMD_INSERT,
        abi::CMD_PARTIAL_UPDATE,
    ] {
        assert_eq!(
            ioctl(&f, cmd, std::ptr::null_mut()),
            Err(EFAULT),
            "NULL for command {cmd}"
        );
        assert_eq!(
            ioctl(&f, cmd, g.unmapped()),
            Err(EFAULT),
            "unmapped memory for command {cmd}"
        );
    }
}

fn key_at_the_end_of_mapped_memory(ctx: &Ctx) {
    let f = open(ctx);
    assert_eq!(write(&f, b"ab:x"), Ok(4));
    let mut g = Guarded::new();
    // "ab\0" in the last 3 readable bytes: the key is readable, 512 bytes from it are not.
    g.tail(3).copy_from_slice(b"ab\0");
    let at = g.tail(3).as_mut_ptr().cast();
    assert_eq!(
        ioctl(&f, abi::CMD_GET, at),
        Ok(0),
        "GET must not read past the key"
    );
    assert_eq!(
        &g.tail(3)[..],
        b"x\0\0",
        "value and NUL written where the key was"
    );
    g.tail(3).copy_from_slice(b"zz\0");
    assert_eq!(
        ioctl(&f, abi::CMD_GET, at),
        Err(ENOENT),
        "a missing key at the edge is ENOENT, not EFAULT"
    );
    g.tail(3).copy_from_slice(b"ab\0");
    assert_eq!(ioctl(&f, abi::CMD_DELETE, at), Ok(0));
    assert_eq!(get_readme(&f, b"ab", 8).err(), Some(ENOENT));
}

fn get_no_nul_in_512_or_empty_key_einval(ctx: &Ctx) {
    let f = open(ctx);
    let mut buf = vec![b'k'; 4096];
    assert_eq!(
        ioctl_buf(&f, abi::CMD_GET, &mut buf),
        Err(EINVAL),
        "no NUL within 512 bytes"
    );
    assert_eq!(ioctl_buf(&f, abi::CMD_DELETE, &mut buf), Err(EINVAL));
    buf[0] = 0;
    assert_eq!(
        ioctl_buf(&f, abi::CMD_GET, &mut buf),
        Err(EINVAL),
        "empty key"
    );
    assert_eq!(ioctl_buf(&f, abi::CMD_DELETE, &mut buf), Err(EINVAL));
}

fn get_511_byte_key(ctx: &Ctx) {
    let f = open(ctx);
    let key = vec![b'L'; 511];
    assert_eq!(insert(&f, &key, b"long key"), Ok(0));
    assert_eq!(get_str(&f, &key), Ok(b"long key".to_vec()));
    // The same key crossing a page boundary: the daemon fetches it in two pieces.
    let mut area = vec![0u8; 3 * 4096];
    let skew = (4096 - 100 - area.as_ptr() as usize % 4096) % 4096;
    let buf = &mut area[skew..skew + 1024];
    buf[..511].copy_from_slice(&key);
    buf[511] = 0;
    assert_eq!(ioctl_buf(&f, abi::CMD_GET, buf), Ok(0));
    assert_eq!(&buf[..9], b"long key\0");
}

fn value_of_102400_bytes(ctx: &Ctx) {
    let f = open(ctx);
    let value: Vec<u8> = (0..abi::VALUE_MAX).map(|i| b'a' + byte(i % 26)).collect();
    assert_eq!(insert(&f, b"t9-big", &value), Ok(0));
    let buf = get_readme(&f, b"t9-big", abi::VALUE_MAX + 16).unwrap();
    assert_eq!(&buf[..abi::VALUE_MAX], &value[..]);
    assert_eq!(buf[abi::VALUE_MAX], 0);
    assert_eq!(buf[abi::VALUE_MAX + 1], 0xAA);
    assert_eq!(get_exact(&f, b"t9-big"), Ok(value));
}

fn delete_then_enoent(ctx: &Ctx) {
    let f = open(ctx);
    assert_eq!(write(&f, b"t10-key:v"), Ok(9));
    assert_eq!(delete_readme(&f, b"t10-key"), Ok(0));
    assert_eq!(delete_readme(&f, b"t10-key"), Err(ENOENT));
    assert_eq!(get_readme(&f, b"t10-key", 16).err(), Some(ENOENT));
}

fn insert_512_byte_key_and_binary_value(ctx: &Ctx) {
    let f = open(ctx);
    let key: Vec<u8> = (0..512).map(|i| byte(i % 251) + 1).collect();
    let value = b"\0bin\0ary:\n".to_vec();
    assert_eq!(insert(&f, &key, &value), Ok(0));
    assert_eq!(get_exact(&f, &key), Ok(value));
    let listing = read_all(&open(ctx), 65536);
    let mut line = key.clone();
    line.push(b':');
    assert!(
        listing.windows(line.len()).any(|w| w == line),
        "the 512-byte key is listed"
    );
}

fn insert_and_partial_update_errnos(ctx: &Ctx) {
    let f = open(ctx);
    for cmd in [abi::CMD_INSERT, abi::CMD_PARTIAL_UPDATE] {
        for (key_len, value_len, what) in [
            (0, 1, "key_len 0"),
            (513, 1, "key_len 513"),
            (1, 0, "value_len 0"),
            (1, abi::VALUE_MAX as u64 + 1, "value_len 102401"),
        ] {
            let mut buf = kv_claiming(key_len, value_len);
            buf.resize(4096, b'x');
            assert_eq!(ioctl_buf(&f, cmd, &mut buf), Err(EINVAL), "{what}");
        }
    }
}

fn partial_update_appends_and_creates(ctx: &Ctx) {
    let f = open(ctx);
    let _ = delete_readme(&f, b"t11-key");
    assert_eq!(
        ioctl_buf(&f, abi::CMD_PARTIAL_UPDATE, &mut kv(b"t11-key", b"one")),
        Ok(0)
    );
    assert_eq!(
        ioctl_buf(&f, abi::CMD_PARTIAL_UPDATE, &mut kv(b"t11-key", b"+two")),
        Ok(0)
    );
    assert_eq!(
        get_str(&f, b"t11-key"),
        Ok(b"one+two".to_vec()),
        "ioctl 5 appends its value as is"
    );
    assert_eq!(insert(&f, b"t11-key", b"+plus"), Ok(0));
    assert_eq!(
        get_str(&f, b"t11-key"),
        Ok(b"+plus".to_vec()),
        "ioctl 4 can store a leading '+'"
    );
}

fn unknown_commands_are_enotty(ctx: &Ctx) {
    let f = open(ctx);
    let mut buf = vec![0u8; 4096];
    for cmd in [
        6u32,
        7,
        42,
        0x1234,
        0xdead_beef,
        abi::IOC_GET + 0x100,
        abi::IOC_SYNC + 1,
    ] {
        assert_eq!(
            ioctl_buf(&f, cmd, &mut buf),
            Err(ENOTTY),
            "command {cmd:#x}"
        );
    }
    // Command 2 is FIGETBSZ: the kernel answers it for every file; it never reaches hpkvd.
    let mut block = 0i32;
    assert_eq!(
        ioctl(&f, 2, std::ptr::from_mut::<i32>(&mut block).cast()),
        Ok(0)
    );
}

fn every_command_on_any_open_fd(ctx: &Ctx) {
    for flags in [
        libc::O_RDONLY,
        libc::O_WRONLY,
        libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
    ] {
        let f = OpenOptions::new()
            .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
            .write(flags & libc::O_ACCMODE != libc::O_RDONLY)
            .custom_flags(flags & !libc::O_ACCMODE)
            .open(&ctx.device)
            .unwrap();
        let key = format!("t12-{flags}");
        assert_eq!(
            insert(&f, key.as_bytes(), b"v"),
            Ok(0),
            "INSERT on flags {flags:#x}"
        );
        assert_eq!(
            get_str(&f, key.as_bytes()),
            Ok(b"v".to_vec()),
            "GET on flags {flags:#x}"
        );
        assert_eq!(
            delete_readme(&f, key.as_bytes()),
            Ok(0),
            "DELETE on flags {flags:#x}"
        );
        assert_eq!(
            put_batch(&f, &[(key.as_bytes(), b"b1"), (b"t12-batch", b"b2")]),
            Ok(2),
            "PUT_BATCH on flags {flags:#x}"
        );
        assert_eq!(get_str(&f, key.as_bytes()), Ok(b"b1".to_vec()));
        assert_eq!(delete_readme(&f, key.as_bytes()), Ok(0));
    }
}

fn purge_removes_everything_arg_ignored(ctx: &Ctx) {
    let f = open(ctx);
    for i in 0..20 {
        assert!(write(&f, format!("t13-{i}:v").as_bytes()).is_ok());
    }
    assert_eq!(
        ioctl(&f, abi::CMD_PURGE, 0xdead_beef_usize as *mut c_void),
        Ok(0),
        "arg is ignored"
    );
    assert_eq!(read_all(&open(ctx), 4096), b"");
    assert_eq!(get_readme(&f, b"t13-1", 16).err(), Some(ENOENT));
    let s = stats(&f);
    assert_eq!((s.records, s.disk_usage_bytes), (0, 0));
}

fn listing_in_key_order_a_few_bytes_at_a_time(ctx: &Ctx) {
    let f = open(ctx);
    purge(&f);
    for (k, v) in [
        ("b", "2"),
        ("ab", "x:y"),
        ("a", "1"),
        ("aa", "multi\nline"),
        ("a\u{7f}", "7"),
    ] {
        assert!(write(&f, format!("{k}:{v}").as_bytes()).is_ok());
    }
    // Bytewise order: "ab" (0x62) sorts before "a\x7f".
    let want = b"a:1\naa:multi\nline\nab:x:y\n\x61\x7f:7\nb:2\n".to_vec();
    for chunk in [1usize, 2, 3, 5, 8, 4096] {
        assert_eq!(
            read_all(&open(ctx), chunk),
            want,
            "read {chunk} bytes at a time"
        );
    }
}

fn listing_cursor_is_per_open_file(ctx: &Ctx) {
    let f = open(ctx);
    purge(&f);
    for i in 0..10 {
        assert!(write(&f, format!("c{i}:v{i}").as_bytes()).is_ok());
    }
    let (mut a, mut b) = (open(ctx), open(ctx));
    let mut buf = [0u8; 5];
    let mut got_a = vec![];
    let mut got_b = vec![];
    loop {
        let na = a.read(&mut buf).unwrap();
        got_a.extend_from_slice(&buf[..na]);
        let nb = b.read(&mut buf[..3]).unwrap();
        got_b.extend_from_slice(&buf[..nb]);
        if na == 0 && nb == 0 {
            break;
        }
    }
    let want: Vec<u8> = (0..10)
        .flat_map(|i| format!("c{i}:v{i}\n").into_bytes())
        .collect();
    assert_eq!(got_a, want);
    assert_eq!(got_b, want);
}

fn stats_extension_counts_match_listing(ctx: &Ctx) {
    let f = open(ctx);
    purge(&f);
    for (k, v) in [("s1", "abc"), ("s2", "de"), ("s3", "f")] {
        assert!(write(&f, format!("{k}:{v}").as_bytes()).is_ok());
    }
    let s = stats(&f);
    assert_eq!((s.records, s.disk_usage_bytes), (3, 6));
    assert!(s.device_size_bytes > 0);
    assert_eq!(s.abi_profile, abi::ABI_README);
    assert_eq!(s.proc_text().lines().count(), 3);
}

/// The ioctl rounds hpkvd received for `op` (one ioctl), and how many of them it answered
/// with a retry, from its STATS counters. Nothing else may use the device meanwhile.
fn rounds_of(f: &File, op: impl FnOnce()) -> (u64, u64) {
    let before = stats(f);
    op();
    let after = stats(f);
    // The second STATS takes two rounds (one retry); the first was counted before it read.
    (
        after.ioctl_requests - before.ioctl_requests - 2,
        after.ioctl_retries - before.ioctl_retries - 1,
    )
}

/// A command whose key and value fit in a page takes two round trips through CUSE's
/// unrestricted-ioctl protocol (an empty round, one retry); a readme GET of a value larger
/// than the first page takes three; commands without data take one. The buffers start on
/// a page boundary, so no key crosses one.
fn round_trips_to_the_daemon_per_ioctl(ctx: &Ctx) {
    const PAGE: usize = 4096;
    let f = open(ctx);
    purge(&f);
    let big: Vec<u8> = (0..abi::VALUE_MAX).map(|i| b'0' + byte(i % 10)).collect();
    let mut mem = vec![0u8; PAGE + abi::RANGE_STRUCT_SIZE + abi::RANGE_CAPACITY_MAX];
    let at = mem.as_ptr().align_offset(PAGE);
    let page = &mut mem[at..];
    let mut check = |name: &str, rounds_want: u64, op: &mut dyn FnMut(&mut [u8])| {
        let (rounds, retries) = rounds_of(&f, || op(&mut *page));
        assert_eq!(
            (rounds, retries),
            (rounds_want, rounds_want - 1),
            "{name}: (rounds, retries)"
        );
    };
    let put = |page: &mut [u8], cmd: u32, key: &[u8], value: &[u8]| {
        let b = kv(key, value);
        page[..b.len()].copy_from_slice(&b);
        assert_eq!(ioctl_buf(&f, cmd, page), Ok(0));
    };
    let key_in = |page: &mut [u8], key: &[u8]| {
        page[..key.len()].copy_from_slice(key);
        page[key.len()] = 0;
    };
    check("INSERT, small", 2, &mut |p| {
        put(p, abi::CMD_INSERT, b"rt", b"v");
    });
    check("PARTIAL_UPDATE, small", 2, &mut |p| {
        put(p, abi::CMD_PARTIAL_UPDATE, b"rt", b"w");
    });
    check("INSERT, 102400-byte value", 3, &mut |p| {
        put(p, abi::CMD_INSERT, b"rt-big", &big);
    });
    check("GET, small", 2, &mut |p| {
        key_in(p, b"rt");
        assert_eq!(ioctl_buf(&f, abi::CMD_GET, p), Ok(0));
        assert_eq!(&p[..3], b"vw\0");
    });
    check("GET, missing key", 2, &mut |p| {
        key_in(p, b"rt-none");
        assert_eq!(ioctl_buf(&f, abi::CMD_GET, p), Err(ENOENT));
    });
    check("GET, 102400-byte value", 3, &mut |p| {
        key_in(p, b"rt-big");
        assert_eq!(ioctl_buf(&f, abi::CMD_GET, p), Ok(0));
        assert_eq!(&p[..abi::VALUE_MAX], &big[..]);
    });
    check("HPKV_IOC_GET, 102400-byte value", 2, &mut |p| {
        let get = abi::encode_safe_get(b"rt-big", abi::VALUE_MAX).unwrap();
        p[..get.len()].copy_from_slice(&get);
        assert_eq!(ioctl_buf(&f, abi::IOC_GET, p), Ok(0));
        let value = abi::parse_safe_get(&p[..get.len()], abi::VALUE_MAX).unwrap();
        assert_eq!(value, &big[..]);
    });
    check("HPKV_IOC_RANGE", 2, &mut |p| {
        let query = RangeQuery {
            capacity: abi::RANGE_CAPACITY_MAX,
            ..RangeQuery::default()
        };
        let range = abi::encode_range(&query).unwrap();
        p[..range.len()].copy_from_slice(&range);
        assert_eq!(ioctl_buf(&f, abi::IOC_RANGE, p), Ok(0));
        let page = abi::parse_range(&p[..range.len()], abi::RANGE_CAPACITY_MAX).unwrap();
        assert_eq!(page.records.len(), 2);
    });
    check("HPKV_IOC_STATS", 2, &mut |p| {
        assert_eq!(ioctl_buf(&f, abi::IOC_STATS, p), Ok(0));
        let s = StatsRecord::decode(&p[..abi::STATS_STRUCT_SIZE]).unwrap();
        assert_eq!(s.records, 2);
    });
    check("DELETE", 2, &mut |p| {
        key_in(p, b"rt-big");
        assert_eq!(ioctl_buf(&f, abi::CMD_DELETE, p), Ok(0));
    });
    check("HPKV_IOC_SYNC", 1, &mut |_| {
        assert_eq!(ioctl(&f, abi::IOC_SYNC, std::ptr::null_mut()), Ok(0));
    });
    check("PURGE", 1, &mut |_| {
        assert_eq!(ioctl(&f, abi::CMD_PURGE, std::ptr::null_mut()), Ok(0));
    });
    check("HPKV_IOC_PUT_BATCH, in a page", 2, &mut |p| {
        let batch = abi::encode_put_batch(&[(b"rt-b1", b"1"), (b"rt-b2", b"2")]).unwrap();
        p[..batch.len()].copy_from_slice(batch.as_bytes());
        assert_eq!(ioctl_buf(&f, abi::IOC_PUT_BATCH, p), Ok(2));
    });
    check("HPKV_IOC_PUT_BATCH, 100 KiB", 3, &mut |p| {
        let value = vec![b'b'; 50_000];
        let batch = abi::encode_put_batch(&[(b"rt-b1", &value), (b"rt-b2", &value)]).unwrap();
        p[..batch.len()].copy_from_slice(batch.as_bytes());
        assert_eq!(ioctl_buf(&f, abi::IOC_PUT_BATCH, p), Ok(2));
    });
    check("unknown command", 1, &mut |p| {
        assert_eq!(ioctl_buf(&f, 42, p), Err(ENOTTY));
    });
}

fn concurrent_threads(ctx: &Ctx) {
    let threads = 8;
    let per = 150;
    let device = Arc::new(ctx.device.clone());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let device = device.clone();
            std::thread::spawn(move || {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&*device)
                    .unwrap();
                for i in 0..per {
                    let key = format!("thr{t}-{i}");
                    let line = format!("{key}:value-{t}-{i}");
                    assert_eq!(write(&f, line.as_bytes()), Ok(line.len()));
                    assert_eq!(
                        get_str(&f, key.as_bytes()),
                        Ok(format!("value-{t}-{i}").into_bytes())
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a writer thread failed");
    }
    let f = open(ctx);
    for t in 0..threads {
        for i in (0..per).step_by(7) {
            assert_eq!(
                get_str(&f, format!("thr{t}-{i}").as_bytes()),
                Ok(format!("value-{t}-{i}").into_bytes())
            );
        }
    }
}

fn concurrent_processes(ctx: &Ctx) {
    let me = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|p| {
            std::process::Command::new(&me)
                .args([
                    "worker",
                    "--device",
                    &ctx.device,
                    "--prefix",
                    &format!("proc{p}-"),
                    "--count",
                    "200",
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a worker process failed");
    }
    let f = open(ctx);
    for p in 0..4 {
        for i in (0..200).step_by(9) {
            let key = format!("proc{p}-{i}");
            assert_eq!(
                get_str(&f, key.as_bytes()),
                Ok(format!("v-{key}").into_bytes())
            );
        }
    }
}

/// A worker process: writes and reads its own keys, overwriting and appending as it goes.
fn worker(ctx: &Ctx, prefix: &str, count: usize) {
    let f = open(ctx);
    for i in 0..count {
        let key = format!("{prefix}{i}");
        assert_eq!(write(&f, format!("{key}:v-").as_bytes()), Ok(key.len() + 3));
        let append = format!("{key}:+{key}");
        assert_eq!(write(&f, append.as_bytes()), Ok(append.len()));
        assert_eq!(
            get_str(&f, key.as_bytes()),
            Ok(format!("v-{key}").into_bytes())
        );
    }
}

// ------------------------------------------------------------------------ v1.3 profile

/// A v1.3 key in a buffer of `cap` bytes (0xAA after the key).
fn v13_key(key: &[u8], cap: usize) -> Vec<u8> {
    let mut b = abi::encode_v13_key(key).expect("a key");
    let len = cap.max(b.len());
    b.resize(len, 0xAA);
    b
}

fn v13_get(f: &File, key: &[u8], cap: usize) -> Result<Vec<u8>, i32> {
    let mut b = v13_key(key, cap);
    ioctl_buf(f, abi::CMD_GET, &mut b)?;
    let value = abi::parse_v13_get(&b).expect("a v1.3 reply");
    let after = abi::V13_VALUE_OFFSET + value.len();
    assert_eq!(
        b.get(after).copied().unwrap_or(0xAA),
        0xAA,
        "no NUL after a v1.3 value"
    );
    Ok(value.to_vec())
}

fn v13_get_layout(ctx: &Ctx) {
    let f = open(ctx);
    assert_eq!(insert(&f, b"v13-a", b"value\0with nul"), Ok(0));
    assert_eq!(v13_get(&f, b"v13-a", 64), Ok(b"value\0with nul".to_vec()));
    let mut b = v13_key(b"v13-missing", 64);
    let before = b.clone();
    assert_eq!(ioctl_buf(&f, abi::CMD_GET, &mut b), Err(ENOENT));
    assert_eq!(b, before, "ENOENT leaves the buffer as it was");
    assert_eq!(stats(&f).abi_profile, abi::ABI_V13);
}

fn v13_delete_and_errnos(ctx: &Ctx) {
    let f = open(ctx);
    assert_eq!(insert(&f, b"v13-d", b"x"), Ok(0));
    assert_eq!(
        ioctl_buf(&f, abi::CMD_DELETE, &mut v13_key(b"v13-d", 16)),
        Ok(0)
    );
    assert_eq!(
        ioctl_buf(&f, abi::CMD_DELETE, &mut v13_key(b"v13-d", 16)),
        Err(ENOENT)
    );
    let mut zero = v13_key(b"k", 16);
    le::set_u16(&mut zero, offset_of!(uapi::hpkv_v13_key, key_len), 0);
    assert_eq!(
        ioctl_buf(&f, abi::CMD_GET, &mut zero),
        Err(EINVAL),
        "key_len 0"
    );
    let mut big = vec![0u8; 1024];
    le::set_u16(&mut big, offset_of!(uapi::hpkv_v13_key, key_len), 513);
    assert_eq!(
        ioctl_buf(&f, abi::CMD_GET, &mut big),
        Err(EINVAL),
        "key_len 513"
    );
    assert_eq!(ioctl_buf(&f, abi::CMD_DELETE, &mut big), Err(EINVAL));
    assert_eq!(ioctl(&f, abi::CMD_GET, std::ptr::null_mut()), Err(EFAULT));
}

fn v13_512_byte_key_and_large_value(ctx: &Ctx) {
    let f = open(ctx);
    let key = vec![b'q'; 512];
    let value: Vec<u8> = (0..abi::VALUE_MAX).map(byte).collect();
    assert_eq!(insert(&f, &key, &value), Ok(0));
    assert_eq!(v13_get(&f, &key, 10 + abi::VALUE_MAX + 8), Ok(value));
}

fn v13_write_and_insert_unchanged(ctx: &Ctx) {
    let f = open(ctx);
    assert_eq!(write(&f, b"v13-w:abc"), Ok(9));
    assert_eq!(write(&f, b"v13-w:+def"), Ok(10));
    assert_eq!(v13_get(&f, b"v13-w", 64), Ok(b"abcdef".to_vec()));
    assert_eq!(
        ioctl_buf(&f, abi::CMD_PARTIAL_UPDATE, &mut kv(b"v13-w", b"g")),
        Ok(0)
    );
    assert_eq!(v13_get(&f, b"v13-w", 64), Ok(b"abcdefg".to_vec()));
}

// ------------------------------------------------------------------------ restart / kill -9

/// Writes records one by one, appending each key to `log` once its write returned.
fn writer(ctx: &Ctx, log: &str, count: usize) {
    let f = open(ctx);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    for i in 0..count {
        let line = format!("kill-{i}:{}", value_for(i));
        match write(&f, line.as_bytes()) {
            Ok(_) => writeln!(log, "kill-{i}").unwrap(),
            Err(e) => {
                eprintln!("writer: write {i} failed with errno {e} (the daemon is gone)");
                return;
            }
        }
    }
}

fn value_for(i: usize) -> String {
    format!("acknowledged-{i}-{}", "x".repeat(i % 300))
}

fn verify_log(ctx: &Ctx, log: &str) {
    let f = open(ctx);
    let keys = std::fs::read_to_string(log).unwrap();
    let mut n = 0;
    for key in keys.lines() {
        let i: usize = key.trim_start_matches("kill-").parse().unwrap();
        match get_str(&f, key.as_bytes()) {
            Ok(v) if v == value_for(i).into_bytes() => n += 1,
            other => {
                println!("HPKV-RESULT FAIL kill9:acknowledged-writes-survive {key} lost after kill -9: {other:?}");
                std::process::exit(1);
            }
        }
    }
    println!(
        "HPKV-RESULT PASS kill9:acknowledged-writes-survive ({n} acknowledged writes checked)"
    );
}

/// After a reboot: the kill -9 test stored how many writes were acknowledged before the
/// kill ("kill9-count"); writes are sequential, so those are kill-0 .. kill-(count - 1).
fn verify_count(ctx: &Ctx) {
    let f = open(ctx);
    let count: usize = String::from_utf8(get_str(&f, b"kill9-count").expect("kill9-count"))
        .unwrap()
        .parse()
        .unwrap();
    for i in 0..count {
        let key = format!("kill-{i}");
        if get_str(&f, key.as_bytes()) != Ok(value_for(i).into_bytes()) {
            eprintln!("verify-count: {key} is missing or wrong");
            std::process::exit(1);
        }
    }
    eprintln!("verify-count: {count} records checked");
}

fn fill(ctx: &Ctx, prefix: &str, count: usize) {
    let f = open(ctx);
    for i in 0..count {
        let line = format!("{prefix}{i}:{}", value_for(i));
        assert_eq!(write(&f, line.as_bytes()), Ok(line.len()));
    }
}

fn check(ctx: &Ctx, prefix: &str, count: usize) {
    let f = open(ctx);
    for i in 0..count {
        let key = format!("{prefix}{i}");
        if get_str(&f, key.as_bytes()) != Ok(value_for(i).into_bytes()) {
            eprintln!("check: {key} is missing or wrong");
            std::process::exit(1);
        }
    }
}

// ------------------------------------------------------------------------ PUT_BATCH

/// A batch of 1000 records (binary keys and values, a duplicate key, a 512-byte key) is
/// answered with its count once all are stored: visible to GET, RANGE, the listing and
/// STATS, with one device flush for the whole batch (sync mode) and puts counted per record.
fn put_batch_stores_every_record_with_one_flush(ctx: &Ctx) {
    let f = open(ctx);
    purge(&f);
    let keys: Vec<Vec<u8>> = (0..998)
        .map(|i| format!("pb-{i:04}\0:\n").into_bytes())
        .collect();
    let values: Vec<Vec<u8>> = (0..998).map(|i| vec![byte(i); 1 + i % 17]).collect();
    let big = vec![b'B'; 50_000];
    let key_max = vec![b'K'; abi::KEY_MAX];
    let mut records: Vec<(&[u8], &[u8])> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    records.push((&key_max, &big));
    records.push((&keys[0], b"the later one wins"));
    let before = stats(&f);
    assert_eq!(put_batch(&f, &records), Ok(1000));
    let after = stats(&f);
    assert_eq!(after.records, 999);
    assert_eq!(
        after.puts - before.puts,
        1000,
        "puts are counted per record"
    );
    assert_eq!(
        after.device_flushes - before.device_flushes,
        1,
        "one flush for the batch"
    );
    assert_eq!(get_exact(&f, &keys[0]), Ok(b"the later one wins".to_vec()));
    assert_eq!(get_exact(&f, &keys[500]), Ok(values[500].clone()));
    assert_eq!(get_exact(&f, &key_max), Ok(big));
    let query = RangeQuery {
        start: b"pb-0100",
        end: b"pb-0200",
        capacity: abi::RANGE_CAPACITY_MAX,
        ..RangeQuery::default()
    };
    let mut range = abi::encode_range(&query).unwrap();
    range.resize(abi::RANGE_STRUCT_SIZE + abi::RANGE_CAPACITY_MAX, 0);
    assert_eq!(ioctl_buf(&f, abi::IOC_RANGE, &mut range), Ok(0));
    let page = abi::parse_range(&range, abi::RANGE_CAPACITY_MAX).unwrap();
    assert_eq!(page.records.len(), 100);
    assert_eq!(page.records[7].0, keys[107].as_slice());
    assert_eq!(page.records[7].1, values[107].as_slice());
    let listing = read_all(&open(ctx), 65536);
    let lines: usize = keys
        .iter()
        .zip(&values)
        .skip(1)
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum();
    let first_and_largest = keys[0].len() + 18 + 2 + abi::KEY_MAX + 50_000 + 2;
    assert_eq!(
        listing.len(),
        lines + first_and_largest,
        "the listing's bytes"
    );
}

/// A batch of exactly `HPKV_PUT_BATCH_MAX` bytes is carried whole, and so is the largest
/// record alone; a small one ending at
/// the last mapped byte works; one whose entries run into unmapped memory is EFAULT.
fn put_batch_of_the_largest_size_and_at_the_guard_page(ctx: &Ctx) {
    let f = open(ctx);
    let mut batch = abi::PutBatch::new();
    let mut n = 0u32;
    let room = |b: &abi::PutBatch| abi::PUT_BATCH_MAX - b.len();
    while room(&batch) > abi::batch_entry_size(8, abi::VALUE_MAX) {
        batch
            .push(format!("pbm-{n:04}").as_bytes(), &vec![b'm'; 20_000])
            .unwrap();
        n += 1;
    }
    // Fill the rest exactly: one record whose entry takes all the room left.
    let last_value = room(&batch) - abi::batch_entry_size(8, 0);
    assert!(batch.push(b"pbm-last", &vec![b'l'; last_value]).unwrap());
    assert_eq!(batch.len(), abi::PUT_BATCH_MAX);
    let stored = ioctl_buf(&f, abi::IOC_PUT_BATCH, &mut batch.as_bytes().to_vec());
    assert_eq!(stored, Ok(i32::try_from(n).unwrap() + 1));
    assert_eq!(get_exact(&f, b"pbm-last").map(|v| v.len()), Ok(last_value));
    let (key_max, value_max) = ([b'L'; abi::KEY_MAX], vec![b'l'; abi::VALUE_MAX]);
    assert_eq!(
        put_batch(&f, &[(&key_max, &value_max)]),
        Ok(1),
        "the largest record"
    );
    assert_eq!(get_exact(&f, &key_max).map(|v| v.len()), Ok(abi::VALUE_MAX));
    let mut g = Guarded::new();
    let small = abi::encode_put_batch(&[(b"pb-guard", b"at the end")]).unwrap();
    let tail = g.tail(small.len());
    tail.copy_from_slice(small.as_bytes());
    assert_eq!(
        ioctl(&f, abi::IOC_PUT_BATCH, tail.as_mut_ptr().cast()),
        Ok(1)
    );
    assert_eq!(get_exact(&f, b"pb-guard"), Ok(b"at the end".to_vec()));
    let cut = g.tail(small.len() - 8);
    cut.copy_from_slice(&small.as_bytes()[..small.len() - 8]);
    assert_eq!(
        ioctl(&f, abi::IOC_PUT_BATCH, cut.as_mut_ptr().cast()),
        Err(EFAULT)
    );
    let header = g.tail(10);
    header.copy_from_slice(&small.as_bytes()[..10]);
    assert_eq!(
        ioctl(&f, abi::IOC_PUT_BATCH, header.as_mut_ptr().cast()),
        Err(EFAULT)
    );
}

/// Every malformed batch is refused whole with the errno docs/ABI.md names; nothing of it
/// is stored, even its well-formed first records.
fn put_batch_errnos_and_nothing_stored(ctx: &Ctx) {
    let f = open(ctx);
    let good = abi::encode_put_batch(&[(b"pbe-1", b"1"), (b"pbe-2", b"22")]).unwrap();
    let with = |at: usize, v: u32| {
        let mut b = good.as_bytes().to_vec();
        le::set_u32(&mut b, at, v);
        b.resize(b.len() + 64, 0);
        b
    };
    let header = abi::PUT_BATCH_HEADER_SIZE;
    let second = header + abi::batch_entry_size(5, 1);
    let over = u32::try_from(abi::PUT_BATCH_BYTES_MAX + 8).unwrap();
    for (what, mut b, errno) in [
        ("zero count", with(0, 0), EINVAL),
        ("count over the entries", with(0, 3), EINVAL),
        ("count under the entries", with(0, 1), EINVAL),
        ("huge count", with(0, u32::MAX), EINVAL),
        ("flags", with(8, 1), EINVAL),
        ("reserved", with(12, 1), EINVAL),
        ("bytes over the entries", with(4, 64), EINVAL),
        ("bytes over the limit", with(4, over), EMSGSIZE),
        ("huge bytes", with(4, u32::MAX), EMSGSIZE),
        ("a value of 0 bytes", with(second + 4, 0), EINVAL),
        ("a value over the limit", with(second + 4, 102_401), EINVAL),
        ("a value overrunning", with(second + 4, 1000), EINVAL),
        ("a key of 0 bytes", with(second, 0), EINVAL),
        ("a key of 513 bytes", with(second, 513), EINVAL),
        ("an entry's reserved", with(second, 0x1_0005), EINVAL),
    ] {
        assert_eq!(
            ioctl_buf(&f, abi::IOC_PUT_BATCH, &mut b),
            Err(errno),
            "{what}"
        );
    }
    assert_eq!(get_exact(&f, b"pbe-1"), Err(ENOENT), "nothing stored");
    assert_eq!(
        ioctl(&f, abi::IOC_PUT_BATCH, std::ptr::null_mut()),
        Err(EFAULT)
    );
    let g = Guarded::new();
    assert_eq!(ioctl(&f, abi::IOC_PUT_BATCH, g.unmapped()), Err(EFAULT));
}
