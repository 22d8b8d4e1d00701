//! The reader's GET in nanoseconds, on this host: a view of 1M keys (16 bytes) with 100-byte
//! values, in tmpfs, every value cached. Not a test: it prints figures.
//!
//! ```sh
//! cargo run --release -p hpkv-view --example get_bench            # 1M keys
//! cargo run --release -p hpkv-view --example get_bench -- 100000  # another size
//! # Count system calls in the lookup loop: it writes "BEGIN" and "END" to stderr around it.
//! strace -f -e trace=all cargo run ... -- 1000000 --syscalls
//! ```
//!
//! Each lookup is timed alone with `Instant::now()` (the module's method: one client,
//! sequential), and the timer's own cost (two `Instant::now()`, measured the same way) is
//! printed beside it; a batch of untimed lookups gives the mean without the timer.
//! Keys are looked up in a random order, so at 1M keys most lookups miss the CPU caches
//! (the slot table alone is 64 MiB): this is the cold figure. "hot" repeats 1000 keys.

// Figures: nanosecond counts become means (f64) and test bytes are narrowed on purpose.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::too_many_lines
)]

use std::hint::black_box;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use hpkv_view::{Lookup, ViewConfig, ViewReader, ViewWriter};

const VALUE_BYTES: usize = 100;
const SAMPLES: usize = 1_000_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn key(i: u64) -> [u8; 16] {
    let mut k = *b"key:000000000000";
    let digits = format!("{i:012}");
    k[4..].copy_from_slice(digits.as_bytes());
    k
}

fn miss_key(i: u64) -> [u8; 16] {
    let mut k = key(i);
    k[2] = b'z';
    k
}

fn value(i: u64) -> [u8; VALUE_BYTES] {
    let mut v = [0u8; VALUE_BYTES];
    for (j, b) in v.iter_mut().enumerate() {
        *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
    }
    v
}

struct Figures {
    p50: u64,
    p99: u64,
    mean: f64,
}

fn percentiles(mut ns: Vec<u64>) -> Figures {
    ns.sort_unstable();
    let mean = ns.iter().sum::<u64>() as f64 / ns.len() as f64;
    Figures {
        p50: ns[ns.len() / 2],
        p99: ns[ns.len() * 99 / 100],
        mean,
    }
}

/// Times each call of `f(key)` for the keys in `order` alone.
fn timed(order: &[[u8; 16]], mut f: impl FnMut(&[u8; 16])) -> Figures {
    let mut ns = Vec::with_capacity(order.len());
    for k in order {
        let t = Instant::now();
        f(k);
        ns.push(t.elapsed().as_nanos() as u64);
    }
    percentiles(ns)
}

/// Mean per call of `f(key)` over `order`, untimed individually.
fn batch(order: &[[u8; 16]], mut f: impl FnMut(&[u8; 16])) -> f64 {
    let t = Instant::now();
    for k in order {
        f(k);
    }
    t.elapsed().as_nanos() as f64 / order.len() as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keys: u64 = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let syscalls_only = args.iter().any(|a| a == "--syscalls");
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    };
    let path = dir.path().join("bench.view");

    // Every value fits: 16-byte keys and 104-byte value blocks.
    let block = 16 + VALUE_BYTES.next_multiple_of(8) as u64;
    let config = ViewConfig::new(keys, keys * 16, keys * block + (1 << 20));
    let mut w = ViewWriter::create(&path, &config)?;
    let t = Instant::now();
    for i in 0..keys {
        w.upsert(&key(i), i + 1, Some(&value(i)), VALUE_BYTES)?;
    }
    let fill = t.elapsed();
    w.publish()?;
    let r = ViewReader::open(&path)?;
    // As the daemon does: a heartbeat every 100 ms, or readers call the view stale after 2 s.
    let beat = w.heartbeat_handle();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beating = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                beat.beat();
                std::thread::sleep(hpkv_view::HEARTBEAT_INTERVAL);
            }
        })
    };

    // The keys to look up, in lookup order, built beforehand (the timed loops read them
    // sequentially, as a caller reads its own buffer).
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let picks: Vec<u64> = (0..SAMPLES).map(|_| rng.next() % keys).collect();
    let order: Vec<[u8; 16]> = picks.iter().map(|&i| key(i)).collect();
    let misses_order: Vec<[u8; 16]> = picks.iter().map(|&i| miss_key(i)).collect();
    let hot: Vec<[u8; 16]> = (0..SAMPLES).map(|_| key(rng.next() % 1000)).collect();
    let mut scratch = Vec::with_capacity(hpkv_view::VALUE_BYTES_MAX);

    // Every answer checked once, untimed.
    for &i in picks.iter().take(100_000) {
        assert_eq!(r.get(&key(i), &mut scratch), Lookup::Hit { seq: i + 1 });
        assert_eq!(scratch, value(i));
        assert_eq!(r.get(&miss_key(i), &mut scratch), Lookup::Miss);
    }

    if syscalls_only {
        eprintln!("BEGIN {SAMPLES} hits and {SAMPLES} misses");
        let mut answered = 0;
        for (k, m) in order.iter().zip(&misses_order) {
            answered += u32::from(matches!(r.get(k, &mut scratch), Lookup::Hit { .. }));
            answered += u32::from(r.get(m, &mut scratch) == Lookup::Miss);
        }
        eprintln!("END");
        assert_eq!(answered as usize, 2 * SAMPLES);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        beating.join().expect("heartbeat thread");
        return Ok(());
    }

    let timer = timed(&order, |k| {
        black_box(k);
    });
    // Counts the answers, so that a figure can never be the cost of an unexpected `Unknown`.
    let answers = std::cell::RefCell::new([0u64; 3]);
    let get = |k: &[u8; 16], scratch: &mut Vec<u8>| {
        let kind = match black_box(r.get(k, scratch)) {
            Lookup::Hit { .. } => 0,
            Lookup::Miss => 1,
            Lookup::Unknown(_) => 2,
        };
        answers.borrow_mut()[kind] += 1;
    };
    let check = |name: &str, expected: usize| {
        let a = std::mem::take(&mut *answers.borrow_mut());
        assert_eq!(
            a[expected], SAMPLES as u64,
            "{name}: answers (hit, miss, unknown) {a:?}"
        );
    };
    let hits = timed(&order, |k| get(k, &mut scratch));
    check("timed hits", 0);
    let misses = timed(&misses_order, |k| get(k, &mut scratch));
    check("timed misses", 1);
    let hot_hits = timed(&hot, |k| get(k, &mut scratch));
    check("timed hot hits", 0);
    let hits_mean = batch(&order, |k| get(k, &mut scratch));
    check("hits", 0);
    let misses_mean = batch(&misses_order, |k| get(k, &mut scratch));
    check("misses", 1);
    let hot_mean = batch(&hot, |k| get(k, &mut scratch));
    check("hot hits", 0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    beating.join().expect("heartbeat thread");

    let md = std::fs::metadata(&path)?;
    println!(
        "view: {keys} keys, {VALUE_BYTES}-byte values, file {} MiB ({} MiB resident in tmpfs), filled in {:.2} s ({:.0} ns per upsert)",
        md.len() >> 20,
        (md.blocks() * 512) >> 20,
        fill.as_secs_f64(),
        fill.as_nanos() as f64 / keys as f64
    );
    println!(
        "timer (two Instant::now): p50 {} ns, mean {:.1} ns",
        timer.p50, timer.mean
    );
    println!(
        "{:<34} {:>8} {:>8} {:>10} {:>16}",
        "GET through the view", "p50 ns", "p99 ns", "mean ns", "untimed mean ns"
    );
    for (name, f, untimed) in [
        ("hit, random key (cold caches)", &hits, hits_mean),
        ("miss, random key (cold caches)", &misses, misses_mean),
        ("hit, 1000 hot keys", &hot_hits, hot_mean),
    ] {
        println!(
            "{name:<34} {:>8} {:>8} {:>10.1} {:>16.1}",
            f.p50, f.p99, f.mean, untimed
        );
    }
    println!("(timed figures include the timer; subtract its p50 for the lookup alone)");
    drop(w);
    Ok(())
}
