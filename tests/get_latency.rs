//! GET latency through the Rust client, the module's method: one client, sequential, each
//! call timed alone; for the figures in the README (`bench/vm-reads/run.sh` runs it in the VM;
//! not a test: `test = false`). Every value is verified.
//!
//! ```text
//! get_latency getppid --samples N                    getppid() calls: the same boot's baseline
//! get_latency fill --device D --keys K               writes K keys (key_%08d, 100-byte values)
//! get_latency get --device D --keys K --samples N [--no-view] [--daemon PID]
//!     random GETs of those keys (through the view, after one pass over all of them); with
//!     --daemon, the daemon's CPU time over the timed GETs (/proc/PID/stat)
//! get_latency idle-cpu --daemon PID --seconds S      the daemon's CPU time while nobody calls
//! ```
//! Lines: `BENCH name p50_ns mean_ns p99_ns n` and `BENCH-CPU name cpu_ms wall_ms calls`.

use std::time::{Duration, Instant};

use hpkv_client::Client;

const VALUE_BYTES: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let num = |name: &str| -> u64 {
        flag(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage(name))
    };
    let device = flag("--device").unwrap_or_else(|| "/dev/hpkv".into());
    match args.first().map(String::as_str) {
        Some("getppid") => getppid(num("--samples")),
        Some("fill") => fill(&device, num("--keys")),
        Some("get") => get(
            &device,
            num("--keys"),
            num("--samples"),
            args.iter().any(|a| a == "--no-view"),
            flag("--daemon").map(|_| num("--daemon")),
        ),
        Some("idle-cpu") => idle_cpu(num("--daemon"), num("--seconds")),
        _ => usage("a mode"),
    }
}

fn usage(what: &str) -> ! {
    eprintln!("get_latency: missing or bad {what}; see the source's header for the usage");
    std::process::exit(2)
}

fn key(i: u64) -> Vec<u8> {
    format!("key_{i:08}").into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("value of {i:08} ").into_bytes();
    v.resize(VALUE_BYTES, b'.');
    v
}

/// Prints `BENCH name p50 mean p99 n` (ns) of `samples`.
fn report(name: &str, mut samples: Vec<u64>) {
    samples.sort_unstable();
    let n = samples.len() as u64;
    let pick = |q: u64| samples[usize::try_from((n - 1) * q / 100).unwrap_or(0)];
    let mean = samples.iter().sum::<u64>() / n.max(1);
    println!("BENCH {name} {} {mean} {} {n}", pick(50), pick(99));
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn getppid(n: u64) {
    let mut samples = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut sum = 0u64;
    for _ in 0..n {
        let t = Instant::now();
        sum = sum.wrapping_add(u64::from(std::os::unix::process::parent_id()));
        samples.push(ns(t.elapsed()));
    }
    std::hint::black_box(sum);
    report("getppid", samples);
}

fn fill(device: &str, keys: u64) {
    let c = Client::open(device).unwrap_or_else(|e| panic!("{device}: {e}"));
    for i in 0..keys {
        c.put(&key(i), &value(i)).expect("put");
    }
    println!("get_latency: wrote {keys} keys");
}

/// The daemon's user + system CPU time in ms (`/proc/PID/stat` fields 14 and 15, in ticks of
/// 10 ms: `CLK_TCK` is 100 on Linux).
fn cpu_ms(pid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command may hold spaces: fields count from after its closing parenthesis.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks * 10
}

fn get(device: &str, keys: u64, calls: u64, no_view: bool, daemon: Option<u64>) {
    let mut client = Client::open(device).unwrap_or_else(|e| panic!("{device}: {e}"));
    if no_view {
        client = client.without_view();
    }
    // Through the view, a pass over every key first: values the view lacks are filled by
    // device reads.
    if !no_view {
        for i in 0..keys {
            assert_eq!(client.get(&key(i)).unwrap().as_deref(), Some(&value(i)[..]));
        }
    }
    let before = client.view_counters();
    let mut samples = Vec::with_capacity(usize::try_from(calls).unwrap_or(0));
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let cpu0 = daemon.map(cpu_ms);
    let started = Instant::now();
    for _ in 0..calls {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let which = rng % keys;
        let k = key(which);
        let t = Instant::now();
        let got = client.get(&k);
        samples.push(ns(t.elapsed()));
        assert_eq!(
            got.unwrap().as_deref(),
            Some(&value(which)[..]),
            "key {which}"
        );
    }
    let wall_ms = started.elapsed().as_millis();
    let after = client.view_counters();
    let name = if no_view {
        "client-device"
    } else {
        "client-view"
    };
    println!(
        "get_latency: {name}: {} from the view, {} from the device",
        after.hits - before.hits,
        after.device - before.device
    );
    report(name, samples);
    if let (Some(pid), Some(cpu0)) = (daemon, cpu0) {
        println!("BENCH-CPU {name} {} {wall_ms} {calls}", cpu_ms(pid) - cpu0);
    }
}

fn idle_cpu(pid: u64, seconds: u64) {
    let cpu0 = cpu_ms(pid);
    std::thread::sleep(Duration::from_secs(seconds));
    println!("BENCH-CPU idle {} {} 0", cpu_ms(pid) - cpu0, seconds * 1000);
}
