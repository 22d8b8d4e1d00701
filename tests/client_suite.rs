//! The extensions through the real device, with the Rust client (`hpkv_client::Client`).
//! Runs inside the VM (tests/vm/suite/run.sh); not part of a plain `cargo test` (the host
//! has no CUSE).
//!
//! Usage:
//! ```text
//! client_suite [--device PATH]                   the extension tests; HPKV-RESULT lines
//!                                                (client:NAME; with HPKV_SHARED_VIEW=off,
//!                                                client-device:NAME, every GET by ioctl)
//! client_suite range --device PATH --count N     scans a store of N keys (made by
//!                                                prepare-image) in order, with continuation
//! client_suite prepare-image IMAGE N             (on the host) writes a store of N keys
//!                                                into IMAGE with the engine itself
//! ```

use std::ops::Bound;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use hpkv_abi as abi;
use hpkv_client::{Client, Error};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut device = "/dev/hpkv".to_string();
    let mut count = 0usize;
    let mut positional = vec![];
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--device" => device = it.next().expect("--device PATH"),
            "--count" => count = it.next().expect("--count N").parse().expect("number"),
            _ => positional.push(a),
        }
    }
    match positional.first().map(String::as_str) {
        Some("prepare-image") => {
            let n = positional[2].parse().expect("N");
            prepare_image(Path::new(&positional[1]), n);
        }
        Some("range") => report(
            "client:range-scan-of-many-keys-in-order-with-continuation",
            || range_many(&device, count),
        ),
        _ => suite(&device),
    }
}

fn report(name: &str, f: impl FnOnce()) {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => println!("HPKV-RESULT PASS {name}"),
        Err(e) => {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(ToString::to_string))
                .unwrap_or_default();
            println!("HPKV-RESULT FAIL {name} {}", why.replace('\n', " "));
        }
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("range-{i:08}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value of record {i}").into_bytes()
}

/// A store of `n` keys, written by the engine itself on the host.
fn prepare_image(path: &Path, n: usize) {
    let started = Instant::now();
    let _ = std::fs::remove_file(path);
    hpkv_engine::device::create_image_if_missing(path, 256 << 20).expect("image");
    let config = hpkv_engine::Config {
        durability: hpkv_engine::Durability::MODULE_WRITE_BEHIND,
        ..Default::default()
    };
    let engine = hpkv_engine::Engine::open_path(path, config).expect("open the image");
    // Many writes in flight (the engine's bounded queue holds back the submitter): batches.
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..n {
        let tx = tx.clone();
        let op = hpkv_engine::WriteOp::Put {
            key: key(i).into(),
            value: value(i).into(),
        };
        engine.submit(op, Box::new(move |r| drop(tx.send(r))));
    }
    drop(tx);
    for r in rx {
        r.expect("put");
    }
    engine.close().expect("close");
    eprintln!(
        "prepare-image: {n} keys in {} ms",
        started.elapsed().as_millis()
    );
}

/// Scans every key through `HPKV_IOC_RANGE` with continuation; checks order and values.
fn range_many(device: &str, n: usize) {
    let c = Client::open(device).unwrap();
    let started = Instant::now();
    let mut seen = 0;
    for record in c.range(Bound::Unbounded, Bound::Unbounded) {
        let (k, v) = record.unwrap();
        assert_eq!(k, key(seen), "record {seen} out of order");
        assert_eq!(v, value(seen), "value of record {seen}");
        seen += 1;
    }
    assert_eq!(seen, n, "records returned");
    // A middle part with bounds, in small pages (many continuations).
    let part: Vec<_> = c
        .range(
            Bound::Included(&key(n / 2)[..]),
            Bound::Excluded(&key(n / 2 + 1000)[..]),
        )
        .max_count(7)
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(part, (n / 2..n / 2 + 1000).map(key).collect::<Vec<_>>());
    assert_eq!(c.stats().unwrap().records, n as u64);
    eprintln!(
        "client_suite: scanned {n} keys in order in {} ms",
        started.elapsed().as_millis()
    );
}

/// A test of the suite: its name and its body, given the device path.
type Test = (&'static str, fn(&str));

fn suite(device: &str) {
    let tests: Vec<Test> = vec![
        ("put_get_append_delete", put_get_append_delete),
        ("safe_get_grows_past_erange", safe_get_grows_past_erange),
        (
            "range_pages_bounds_and_continuation",
            range_pages_bounds_and_continuation,
        ),
        ("stats_counts_and_proc_lines", stats_counts_and_proc_lines),
        ("sync_and_typed_errors", sync_and_typed_errors),
        ("purge", purge),
        ("get_goes_where_the_view_says", get_goes_where_the_view_says),
        (
            "put_batch_is_seen_by_every_get",
            put_batch_is_seen_by_every_get,
        ),
    ];
    let prefix = if view_off() {
        "client-device"
    } else {
        "client"
    };
    for (name, test) in tests {
        report(&format!("{prefix}:{name}"), || test(device));
    }
}

/// Whether this run keeps clients off the shared view (`HPKV_SHARED_VIEW=off`).
fn view_off() -> bool {
    std::env::var_os(hpkv_client::VIEW_ENV).is_some_and(|v| v == "off" || v == "0")
}

/// With the view, GETs of written values and of absent keys make no ioctl (hpkvd's
/// `ioctl_requests` does not move); without it, each is one ioctl (or more).
fn get_goes_where_the_view_says(device: &str) {
    let c = Client::open(device).unwrap();
    c.put(b"cl-view", b"seen").unwrap();
    assert!(c.delete(b"cl-view-absent").is_ok());
    // A STATS call counts its own rounds: measure them first.
    let first = c.stats().unwrap().ioctl_requests;
    let before = c.stats().unwrap().ioctl_requests;
    let per_stats = before - first;
    for _ in 0..10 {
        assert_eq!(c.get(b"cl-view").unwrap().as_deref(), Some(&b"seen"[..]));
        assert_eq!(c.get(b"cl-view-absent").unwrap(), None);
    }
    let requests = c.stats().unwrap().ioctl_requests - before - per_stats;
    let counted = c.view_counters();
    if view_off() {
        assert!(!c.has_view());
        assert!(requests >= 20, "{requests} requests for 20 GETs by ioctl");
        assert_eq!((counted.hits, counted.misses), (0, 0));
    } else {
        assert!(c.has_view(), "no live view of {device}");
        assert_eq!(requests, 0, "GETs through the view reached the daemon");
        assert_eq!((counted.hits, counted.misses, counted.device), (10, 10, 0));
        let device_only = Client::open(device).unwrap().without_view();
        assert_eq!(
            device_only.get(b"cl-view").unwrap().as_deref(),
            Some(&b"seen"[..])
        );
        assert_eq!(device_only.view_counters().device, 1);
    }
}

/// A batch overwrites keys the view holds and adds new ones: every GET after the answer, by
/// the view or the device, sees the batch's values (the later of two for the same key).
fn put_batch_is_seen_by_every_get(device: &str) {
    let c = Client::open(device).unwrap();
    let keys: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("cl-batch-{i}").into_bytes())
        .collect();
    for k in &keys[..25] {
        c.put(k, b"old").unwrap();
        assert_eq!(
            c.get(k).unwrap().as_deref(),
            Some(&b"old"[..]),
            "in the view now"
        );
    }
    let values: Vec<Vec<u8>> = (0..50).map(|i| format!("new-{i}").into_bytes()).collect();
    let mut records: Vec<(&[u8], &[u8])> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    records.push((&keys[3], b"the later one"));
    assert!(c.supports_put_batch().unwrap());
    assert_eq!(c.put_batch(&records).unwrap(), 51);
    let device_only = Client::open(device).unwrap().without_view();
    for (i, k) in keys.iter().enumerate() {
        let want: &[u8] = if i == 3 { b"the later one" } else { &values[i] };
        assert_eq!(c.get(k).unwrap().as_deref(), Some(want), "key {i}");
        assert_eq!(
            device_only.get(k).unwrap().as_deref(),
            Some(want),
            "key {i}"
        );
    }
    if !view_off() {
        assert!(c.view_counters().hits >= 25, "{:?}", c.view_counters());
    }
    let too_big = vec![0u8; hpkv_client::abi::VALUE_MAX];
    assert!(matches!(
        c.put_batch(&[(b"cl-batch-x", &too_big), (b"cl-batch-y", &too_big)]),
        Err(Error::Request(_))
    ));
    assert_eq!(c.get(b"cl-batch-x").unwrap(), None);
}

fn put_get_append_delete(device: &str) {
    let c = Client::open(device).unwrap();
    c.put(b"cl-key", b"v\0with:binary\n").unwrap();
    assert_eq!(
        c.get(b"cl-key").unwrap().as_deref(),
        Some(&b"v\0with:binary\n"[..])
    );
    c.append(b"cl-key", b"+more").unwrap();
    assert_eq!(
        c.get(b"cl-key").unwrap().as_deref(),
        Some(&b"v\0with:binary\n+more"[..])
    );
    assert!(c.delete(b"cl-key").unwrap());
    assert!(
        !c.delete(b"cl-key").unwrap(),
        "a second delete finds nothing"
    );
    assert_eq!(c.get(b"cl-key").unwrap(), None);
    let k512 = vec![b'z'; abi::KEY_MAX];
    c.put(&k512, b"long").unwrap();
    assert_eq!(c.get(&k512).unwrap().as_deref(), Some(&b"long"[..]));
}

fn safe_get_grows_past_erange(device: &str) {
    let c = Client::open(device).unwrap();
    for len in [4095, 4096, 4097, 50_000, abi::VALUE_MAX] {
        let v: Vec<u8> = (0..len)
            .map(|i| u8::try_from(i * 7 % 251).unwrap())
            .collect();
        c.put(b"cl-big", &v).unwrap();
        assert_eq!(c.get(b"cl-big").unwrap(), Some(v), "a {len}-byte value");
    }
    assert!(
        matches!(c.append(b"cl-big", b"x"), Err(Error::TooLarge)),
        "EMSGSIZE past 102400"
    );
}

fn range_pages_bounds_and_continuation(device: &str) {
    let c = Client::open(device).unwrap();
    let keys: Vec<Vec<u8>> = (0..600)
        .map(|i| format!("pg-{i:04}").into_bytes())
        .collect();
    for (i, k) in keys.iter().enumerate() {
        c.put(k, &vec![b'v'; i % 300 + 1]).unwrap();
    }
    let all: Vec<Vec<u8>> = c
        .range(Bound::Included(&b"pg-"[..]), Bound::Excluded(&b"pg."[..]))
        .max_count(13)
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(all, keys, "every key, in order, across 47 requests");
    let some: Vec<Vec<u8>> = c
        .range(
            Bound::Excluded(&b"pg-0100"[..]),
            Bound::Included(&b"pg-0110"[..]),
        )
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(
        some,
        keys[101..=110].to_vec(),
        "exclusive start, inclusive end"
    );
    let limited = c.scan().from("pg-").limit(5).count();
    assert_eq!(limited, 5);
}

fn stats_counts_and_proc_lines(device: &str) {
    let c = Client::open(device).unwrap();
    let before = c.stats().unwrap();
    c.put(b"st-a", b"12345").unwrap();
    let after = c.stats().unwrap();
    assert!(after.records >= 1);
    assert!(after.puts > before.puts);
    assert!(after.device_size_bytes > 0 && after.segments_total > 0);
    let text = after.proc_text();
    assert_eq!(text.lines().count(), 3);
    assert!(text.starts_with(&format!("Total records: {}\n", after.records)));
}

fn sync_and_typed_errors(device: &str) {
    let c = Client::open(device).unwrap();
    c.sync().unwrap();
    assert!(matches!(c.put(b"", b"v"), Err(Error::Request(_))));
    assert!(matches!(c.put(b"k", b""), Err(Error::Request(_))));
    assert!(
        matches!(Client::open("/dev/null"), Err(Error::Unsupported)),
        "/dev/null is not hpkvd"
    );
}

fn purge(device: &str) {
    let c = Client::open(device).unwrap();
    c.put(b"pu-1", b"x").unwrap();
    c.purge().unwrap();
    assert_eq!(c.stats().unwrap().records, 0);
    assert_eq!(c.scan().count(), 0);
    c.put(b"pu-2", b"after").unwrap();
    assert_eq!(c.get(b"pu-2").unwrap().as_deref(), Some(&b"after"[..]));
}
