//! hpkv-bench: per-operation latency of the hpkv storage engine against redb and fjall, by
//! the kernel module's method (one client, sequential operations, mean / standard deviation
//! / p50 / p99 per store size N), in both durability modes, on an image file and on a loop
//! device; plus a group-commit run (many writers in sync mode against one).
//!
//! See bench/README.md for the method and its caveats.

mod stats;
mod stores;
mod system;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;

use stats::{f64_len, f64_of, nanos, ratio, thousands, us, Rng, Summary};
use stores::{Data, EngineKind, EngineOptions, Mode, Place, Store};
use system::{check_interrupted, mib, Res};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DeviceKind {
    /// hpkv on a sparse image file; redb and fjall on files in the same directory.
    Image,
    /// hpkv on a loop device (direct I/O); redb and fjall on ext4 on a second loop device.
    Loop,
}

impl DeviceKind {
    fn name(self) -> &'static str {
        match self {
            DeviceKind::Image => "image file",
            DeviceKind::Loop => "loop device",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Order {
    /// Keys inserted in a random permutation (the harder case for ordered indexes).
    Shuffled,
    /// Keys inserted in ascending order.
    Sequential,
}

/// Latency benchmark of the hpkv storage engine against redb and fjall.
///
/// For each store size N: prefill N - M records quickly, reopen in the mode under test,
/// time M = min(N, --measured) sequential writes of new keys (the store grows to N), then M
/// reads of random existing keys. Needs root for the loop-device part.
#[derive(Parser, Debug)]
#[command(name = "hpkv-bench", version)]
struct Args {
    /// Store sizes N (records), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,1000,10000,100000,1000000"
    )]
    sizes: Vec<u64>,
    /// Store sizes for the loop-device part [default: the --sizes list].
    #[arg(long, value_delimiter = ',')]
    loop_sizes: Option<Vec<u64>>,
    /// Small sizes only (100, 1000, 10000) and 2-second group-commit runs.
    #[arg(long)]
    quick: bool,
    /// Operations timed per N and per phase: M = min(N, this).
    #[arg(long, default_value_t = 10_000)]
    measured: u64,
    /// Where M < this, repeat the experiment on fresh stores and pool the latencies until
    /// this many operations are timed (stable percentiles at small N).
    #[arg(long, default_value_t = 10_000)]
    min_samples: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Order of the keys written (prefill and timed writes).
    #[arg(long, value_enum, default_value = "shuffled")]
    order: Order,
    /// Engines to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "hpkv,redb,fjall"
    )]
    engines: Vec<EngineKind>,
    /// Durability modes to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sync,write-behind"
    )]
    modes: Vec<Mode>,
    /// Devices to run on, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "image,loop")]
    devices: Vec<DeviceKind>,
    /// Seconds per group-commit run (one per engine × thread count × device); 0 skips it.
    #[arg(long, default_value_t = 3.0)]
    group_secs: f64,
    /// Concurrent writers in the group-commit run (compared with 1).
    #[arg(long, default_value_t = 8)]
    group_threads: usize,
    /// Group-commit rounds (each runs every engine with 1 and with N writers, interleaved);
    /// the table shows the median throughput and the pooled latencies.
    #[arg(long, default_value_t = 3)]
    group_rounds: usize,
    /// Drop the OS page cache (root) after the prefill, before the reopen, so every engine
    /// starts with cold caches (hpkv bypasses the page cache anyway). Affects the whole
    /// machine.
    #[arg(long)]
    drop_caches: bool,
    /// Also write every timed latency as CSV to this file
    /// (device,mode,engine,n,rep,phase,index,ns).
    #[arg(long)]
    dump_latencies: Option<PathBuf>,
    /// Parent directory for images, stores and the mount point (a subdirectory
    /// hpkv-bench-PID is made there and removed at exit). Must not be tmpfs.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Logical sector size of the loop devices (losetup --sector-size; hpkv's block size
    /// follows it). 512 is losetup's default.
    #[arg(long, default_value_t = 512)]
    loop_sector_size: u32,
    /// hpkv's value cache (`Config::cache_bytes`), MiB.
    #[arg(long, default_value_t = 64)]
    hpkv_cache_mib: u64,
    /// Measure the smallest N once more after the largest (the ratios' baseline is then the
    /// mean of both; their difference shows the machine's drift).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    rebaseline: bool,
    /// Seed of the key order, read choices and values.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

struct Ctx {
    args: Args,
    data: Data,
    opts: EngineOptions,
    dump: Option<std::sync::Mutex<std::io::BufWriter<std::fs::File>>>,
}

/// What one (device, mode, engine, N) run measured.
struct RunResult {
    device: DeviceKind,
    mode: Mode,
    engine: EngineKind,
    n: u64,
    /// The repeat of the smallest N after the sweep.
    again: bool,
    /// Fresh stores the latencies were pooled from.
    reps: u64,
    write: Summary,
    read: Summary,
    prefill_s: f64,
    open_s: f64,
    disk_bytes: Option<u64>,
    peak_rss: Option<u64>,
    hpkv: Option<hpkv_engine::Stats>,
}

struct GroupResult {
    engine: EngineKind,
    threads: usize,
    /// Writes per second of each round.
    rates: Vec<f64>,
    /// Latencies of all rounds, in ns.
    lat: Vec<u64>,
    /// hpkv: device flushes and acknowledged writes, summed over the rounds.
    flushes: u64,
    puts: u64,
}

impl GroupResult {
    fn merge(&mut self, mut other: GroupResult) {
        self.rates.append(&mut other.rates);
        self.lat.append(&mut other.lat);
        self.flushes += other.flushes;
        self.puts += other.puts;
    }

    fn median_rate(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(0.0)
    }
}

fn main() {
    system::install_signal_handlers();
    let mut args = Args::parse();
    if args.quick {
        args.sizes = vec![100, 1000, 10_000];
        args.loop_sizes = None;
        args.group_secs = args.group_secs.min(2.0);
    }
    args.sizes.retain(|&n| n > 0);
    let dump = match &args.dump_latencies {
        None => None,
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => {
                let mut w = std::io::BufWriter::new(f);
                let _ = writeln!(w, "device,mode,engine,n,rep,phase,index,ns");
                Some(std::sync::Mutex::new(w))
            }
            Err(e) => {
                eprintln!("hpkv-bench: {}: {e}", p.display());
                std::process::exit(2);
            }
        },
    };
    let ctx = Ctx {
        dump,
        data: Data {
            value_size: args.value_size.max(1),
            seed: args.seed,
        },
        opts: EngineOptions {
            hpkv_cache_bytes: args.hpkv_cache_mib << 20,
        },
        args,
    };
    let code = match run(&ctx) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hpkv-bench: {e}");
            1
        }
    };
    // Every guard has dropped by now.
    std::process::exit(code);
}

fn run(ctx: &Ctx) -> Res<()> {
    let args = &ctx.args;
    print_header(ctx);
    let work = system::WorkDir::create(&args.dir, "hpkv-bench")?;
    let mut all: Vec<RunResult> = Vec::new();
    for &device in &args.devices {
        match device {
            DeviceKind::Image => {
                let dir = work.path.join("image");
                std::fs::create_dir_all(&dir)?;
                let hpkv_place = |n: u64| Place::HpkvImage {
                    path: dir.join("hpkv.img"),
                    size: hpkv_image_bytes(n, ctx.data.value_size),
                };
                let other_place = |kind: EngineKind| Place::Dir(dir.join(kind.name()));
                run_device(
                    ctx,
                    device,
                    &args.sizes,
                    &hpkv_place,
                    &other_place,
                    &mut all,
                )?;
            }
            DeviceKind::Loop => {
                let sizes = args
                    .loop_sizes
                    .clone()
                    .unwrap_or_else(|| args.sizes.clone());
                if let Some(why) = loop_unavailable() {
                    println!("\n## Loop device: skipped ({why})\n");
                    eprintln!("loop-device part skipped: {why}");
                    continue;
                }
                let largest = sizes.iter().copied().max().unwrap_or(0);
                let raw = hpkv_image_bytes(largest.max(2_000_000), ctx.data.value_size);
                let fs = (raw * 4).max(4 << 30);
                let dir = work.path.join("loop");
                std::fs::create_dir_all(&dir)?;
                let setup = match system::LoopSetup::create(&dir, raw, fs, args.loop_sector_size) {
                    Ok(s) => s,
                    Err(e) => {
                        println!("\n## Loop device: skipped (setting it up failed: {e})\n");
                        eprintln!("loop-device part skipped: {e}");
                        continue;
                    }
                };
                eprintln!(
                    "loop devices: hpkv on {} (raw), redb/fjall on ext4 on {} mounted at {}",
                    setup.raw_loop.dev.display(),
                    setup.fs_loop.dev.display(),
                    setup.mount.dir.display()
                );
                let raw_dev = setup.raw_loop.dev.clone();
                let mnt = setup.mount.dir.clone();
                let hpkv_place = |_: u64| Place::HpkvDevice {
                    path: raw_dev.clone(),
                };
                let other_place = |kind: EngineKind| Place::Dir(mnt.join(kind.name()));
                let r = run_device(ctx, device, &sizes, &hpkv_place, &other_place, &mut all);
                drop(setup);
                r?;
            }
        }
    }
    print_summary(ctx, &all);
    drop(work);
    Ok(())
}

/// Why the loop-device part cannot run here, if it cannot.
fn loop_unavailable() -> Option<String> {
    if !system::is_root() {
        return Some("needs root for losetup and mount".into());
    }
    for cmd in ["losetup", "mkfs.ext4", "mount", "umount"] {
        if !system::have_command(cmd) {
            return Some(format!(
                "{cmd} is missing (apt-get install util-linux mount e2fsprogs)"
            ));
        }
    }
    None
}

/// A sparse image big enough for N records with room for the log to move on.
fn hpkv_image_bytes(n: u64, value_size: usize) -> u64 {
    let record = (hpkv_engine::RECORD_OVERHEAD_BYTES + 12 + value_size) as u64;
    let want = (n * record * 4).max(256 << 20);
    want.div_ceil(1 << 20) << 20
}

fn run_device(
    ctx: &Ctx,
    device: DeviceKind,
    sizes: &[u64],
    hpkv_place: &dyn Fn(u64) -> Place,
    other_place: &dyn Fn(EngineKind) -> Place,
    all: &mut Vec<RunResult>,
) -> Res<()> {
    let args = &ctx.args;
    for &mode in &args.modes {
        let first = all.len();
        // The smallest N again after the largest: the baseline of the ratios is then
        // measured on both sides of the sweep, and the two show how much the machine drifted.
        let mut plan: Vec<(u64, bool)> = sizes.iter().map(|&n| (n, false)).collect();
        if args.rebaseline && sizes.len() > 1 {
            plan.push((*sizes.iter().min().expect("sizes"), true));
        }
        for (n, again) in plan {
            for &engine in &args.engines {
                let r = measure_size(ctx, device, mode, engine, n, again, hpkv_place, other_place)?;
                all.push(r);
            }
        }
        print_mode_table(ctx, device, mode, &all[first..]);
    }
    if args.group_secs > 0.0 && args.modes.contains(&Mode::Sync) {
        let mut groups: Vec<GroupResult> = Vec::new();
        let rounds = args.group_rounds.max(1);
        for round in 0..rounds {
            for threads in [1, args.group_threads.max(1)] {
                for &engine in &args.engines {
                    let place = match engine {
                        EngineKind::Hpkv => hpkv_place(0),
                        other => other_place(other),
                    };
                    eprintln!(
                        "[{}] group commit round {}/{rounds}: {} with {threads} writer(s) for {} s ...",
                        device.name(),
                        round + 1,
                        engine.name(),
                        args.group_secs
                    );
                    place.prepare()?;
                    let r = group_run(ctx, engine, &place, threads);
                    place.remove();
                    let r = r?;
                    match groups
                        .iter_mut()
                        .find(|g| g.engine == engine && g.threads == threads)
                    {
                        Some(g) => g.merge(r),
                        None => groups.push(r),
                    }
                }
            }
        }
        groups.sort_by_key(|g| (args.engines.iter().position(|&e| e == g.engine), g.threads));
        print_group_table(ctx, device, &groups);
    }
    Ok(())
}

/// One repetition of one (engine, N) experiment: raw latencies and setup figures.
struct Rep {
    write: Vec<u64>,
    read: Vec<u64>,
    prefill_s: f64,
    open_s: f64,
    disk_bytes: Option<u64>,
    peak_rss: Option<u64>,
    hpkv: Option<hpkv_engine::Stats>,
}

impl Rep {
    /// Pools the latencies of `other` into `self` (setup figures: the first repetition's,
    /// peak RSS: the largest).
    fn pool(mut self, mut other: Rep) -> Rep {
        self.write.append(&mut other.write);
        self.read.append(&mut other.read);
        self.peak_rss = self.peak_rss.max(other.peak_rss);
        self
    }
}

/// Runs one (engine, N) experiment, repeated on fresh stores while M < --min-samples.
#[allow(clippy::too_many_arguments)]
fn measure_size(
    ctx: &Ctx,
    device: DeviceKind,
    mode: Mode,
    engine: EngineKind,
    n: u64,
    again: bool,
    hpkv_place: &dyn Fn(u64) -> Place,
    other_place: &dyn Fn(EngineKind) -> Place,
) -> Res<RunResult> {
    let args = &ctx.args;
    let m = n.min(args.measured.max(1));
    // Small N: repeat the whole experiment on fresh stores until --min-samples operations
    // are timed, so the percentiles (and the N=100 baseline) are stable.
    let reps = args.min_samples.div_ceil(m).clamp(1, 1000);
    eprintln!(
        "[{}] {} {} N={}{}{} ...",
        device.name(),
        mode.name(),
        engine.name(),
        thousands(n),
        if reps > 1 {
            format!(" ×{reps} fresh stores")
        } else {
            String::new()
        },
        if again { " (again)" } else { "" }
    );
    let mut pooled: Option<Rep> = None;
    for rep in 0..reps {
        let mut order: Vec<u32> = (0..u32::try_from(n).expect("at most 2^32 records")).collect();
        if args.order == Order::Shuffled {
            Rng::new(args.seed ^ n ^ rep.rotate_left(32)).shuffle(&mut order);
        }
        let place = match engine {
            EngineKind::Hpkv => hpkv_place(n),
            other => other_place(other),
        };
        place.prepare()?;
        let r = run_one(ctx, device, engine, mode, &place, n, m, &order, rep);
        place.remove();
        let r = r?;
        pooled = Some(match pooled {
            None => r,
            Some(p) => p.pool(r),
        });
    }
    let p = pooled.expect("at least one repetition");
    let r = RunResult {
        device,
        mode,
        engine,
        n,
        again,
        reps,
        write: Summary::from_nanos(p.write),
        read: Summary::from_nanos(p.read),
        prefill_s: p.prefill_s,
        open_s: p.open_s,
        disk_bytes: p.disk_bytes,
        peak_rss: p.peak_rss,
        hpkv: p.hpkv,
    };
    eprintln!(
        "    write p50 {} µs, read p50 {} µs (prefill {:.1} s, open {:.2} s)",
        us(r.write.p50_us),
        us(r.read.p50_us),
        r.prefill_s,
        r.open_s
    );
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    ctx: &Ctx,
    device: DeviceKind,
    engine: EngineKind,
    mode: Mode,
    place: &Place,
    n: u64,
    m: u64,
    order: &[u32],
    rep: u64,
) -> Res<Rep> {
    let data = ctx.data;
    system::trim_heap();
    let rss_reset = system::reset_peak_rss();
    let split = usize::try_from(n - m).expect("usize is 64 bits");

    let t = Instant::now();
    stores::prefill(engine, place, &order[..split], data, ctx.opts)?;
    let prefill_s = t.elapsed().as_secs_f64();
    if ctx.args.drop_caches {
        system::drop_os_caches()?;
    }

    let t = Instant::now();
    let store = stores::open(engine, place, mode, ctx.opts)?;
    let open_s = t.elapsed().as_secs_f64();

    let measured = measure(&*store, &order[split..], n, m, data, ctx.args.seed ^ rep);
    let hpkv = store.hpkv_stats();
    let closed = store.close();
    let (write, read) = measured?;
    closed?;
    if let Some(dump) = &ctx.dump {
        let mut w = dump.lock().map_err(|_| "dump file lock poisoned")?;
        for (phase, lat) in [("write", &write), ("read", &read)] {
            for (i, ns) in lat.iter().enumerate() {
                writeln!(
                    w,
                    "{},{},{},{n},{rep},{phase},{i},{ns}",
                    device.name(),
                    mode.name(),
                    engine.name()
                )?;
            }
        }
        w.flush()?;
    }
    if let Some(s) = &hpkv {
        if s.records != n {
            return Err(format!("hpkv holds {} records, expected {n}", s.records).into());
        }
    }
    Ok(Rep {
        write,
        read,
        prefill_s,
        open_s,
        disk_bytes: place.disk_path().map(system::disk_usage_bytes),
        peak_rss: rss_reset.then(system::peak_rss_bytes),
        hpkv,
    })
}

/// The timed phases: M sequential writes of new keys, then M reads of random existing keys
/// (uniform over all N, the same sequence for every engine).
fn measure(
    store: &dyn Store,
    writes: &[u32],
    records: u64,
    reads: u64,
    data: Data,
    seed: u64,
) -> Res<(Vec<u64>, Vec<u64>)> {
    let (mut key, mut value) = (Vec::with_capacity(32), Vec::with_capacity(data.value_size));
    let mut lat = Vec::with_capacity(writes.len());
    for (j, &i) in writes.iter().enumerate() {
        if j.is_multiple_of(256) {
            check_interrupted()?;
        }
        data.key(u64::from(i), &mut key);
        data.value(u64::from(i), &mut value);
        let started = Instant::now();
        store.put(&key, &value)?;
        lat.push(nanos(started.elapsed()));
    }
    let write = lat;

    let mut rng = Rng::new(seed ^ records.rotate_left(17) ^ 0x5EAD);
    let mut lat = Vec::with_capacity(usize::try_from(reads).expect("usize is 64 bits"));
    for j in 0..reads {
        if j.is_multiple_of(256) {
            check_interrupted()?;
        }
        let i = rng.below(records);
        data.key(i, &mut key);
        let started = Instant::now();
        let got = store.get(&key)?;
        lat.push(nanos(started.elapsed()));
        if got != Some(data.value_size) {
            return Err(format!(
                "read of key {} returned {got:?}, expected a {}-byte value",
                String::from_utf8_lossy(&key),
                data.value_size
            )
            .into());
        }
    }
    Ok((write, lat))
}

/// `threads` writers putting new keys in sync mode for --group-secs on a fresh store.
fn group_run(ctx: &Ctx, engine: EngineKind, place: &Place, threads: usize) -> Res<GroupResult> {
    let data = ctx.data;
    stores::prefill(engine, place, &[], data, ctx.opts)?;
    let store: Arc<Box<dyn Store>> = Arc::new(stores::open(engine, place, Mode::Sync, ctx.opts)?);
    let before = store.hpkv_stats();
    let barrier = Arc::new(Barrier::new(threads + 1));
    let secs = ctx.args.group_secs;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || -> Res<Vec<u64>> {
                let (mut k, mut v) = (Vec::new(), Vec::new());
                let mut lat = Vec::new();
                barrier.wait();
                let end = Instant::now() + Duration::from_secs_f64(secs);
                let mut j = 0u64;
                while Instant::now() < end {
                    if j.is_multiple_of(64) {
                        check_interrupted()?;
                    }
                    let id = (t as u64) << 40 | j;
                    k.clear();
                    k.extend_from_slice(format!("g{t:02}_{j:010}").as_bytes());
                    data.value(id, &mut v);
                    let s = Instant::now();
                    store.put(&k, &v)?;
                    lat.push(nanos(s.elapsed()));
                    j += 1;
                }
                Ok(lat)
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut lat = Vec::new();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(l)) => lat.extend(l),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some("a writer thread panicked".into())),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = store.hpkv_stats();
    let store = Arc::try_unwrap(store).map_err(|_| "store still shared")?;
    let closed = store.close();
    if let Some(e) = first_err {
        return Err(e);
    }
    closed?;
    let (flushes, puts) = match (before, after) {
        (Some(b), Some(a)) => (a.device_flushes - b.device_flushes, a.puts - b.puts),
        _ => (0, 0),
    };
    Ok(GroupResult {
        engine,
        threads,
        rates: vec![f64_len(lat.len()) / elapsed],
        lat,
        flushes,
        puts,
    })
}

fn print_header(ctx: &Ctx) {
    let a = &ctx.args;
    let sizes: Vec<String> = a.sizes.iter().map(|&n| thousands(n)).collect();
    println!("# hpkv storage engine benchmark\n");
    println!(
        "Method (the kernel module's): one client, sequential operations, per-operation latency \
         in µs (mean, population standard deviation, nearest-rank p50 and p99)."
    );
    println!(
        "For each N: prefill N − M records quickly (hpkv: write-behind, many writes in flight, \
         then close; redb/fjall: transactions/batches of 50,000), reopen in the mode under test, \
         time M = min(N, {}) writes of NEW keys one after the other (the store grows from N − M \
         to N), then M reads of keys drawn uniformly from all N (same sequence for every engine). \
         Where M < {}, the experiment is repeated on fresh stores (column \"stores\") until that many \
         operations are timed, and the latencies pooled.",
        thousands(a.measured),
        thousands(a.min_samples)
    );
    println!(
        "Keys \"key_%08d\" inserted in {} order; values {} bytes (8-byte record number + \
         pseudo-random bytes). Every (engine, N) starts from an empty store. N = {}.",
        match a.order {
            Order::Shuffled =>
                "shuffled (random permutation, seed ".to_string() + &a.seed.to_string() + ")",
            Order::Sequential => "ascending".to_string(),
        },
        a.value_size,
        sizes.join(", ")
    );
    println!(
        "hpkv value cache: {} MiB (cold after the reopen). redb and fjall use their default \
         caches and the OS page cache. Machines are noisy: compare ratios within one run.",
        a.hpkv_cache_mib
    );
    println!("\nModes:");
    for mode in &a.modes {
        for engine in &a.engines {
            println!(
                "- {} / {}: {}",
                mode.name(),
                engine.name(),
                mode.describe(*engine)
            );
        }
    }
    println!(
        "\nDevices: image file = hpkv on a sparse image file, redb/fjall on files in the same \
         directory ({}); loop device = hpkv on /dev/loopN (losetup --direct-io=on, {}-byte sectors, \
         over a sparse image), redb/fjall on ext4 (mkfs.ext4 -q) on a second such loop device.",
        a.dir.display(),
        a.loop_sector_size
    );
}

fn find(rs: &[RunResult], engine: EngineKind, n: u64, again: bool) -> Option<&RunResult> {
    rs.iter()
        .find(|r| r.engine == engine && r.n == n && r.again == again)
}

/// hpkv's write p50 at the smallest N: the mean of the measurements before and after the
/// sweep (when repeated), with each of them.
fn baseline(rs: &[&RunResult]) -> Option<(u64, f64, Vec<f64>)> {
    let n0 = rs.iter().map(|r| r.n).min()?;
    let p: Vec<f64> = rs
        .iter()
        .filter(|r| r.n == n0 && r.engine == EngineKind::Hpkv)
        .map(|r| r.write.p50_us)
        .collect();
    if p.is_empty() {
        return None;
    }
    Some((n0, p.iter().sum::<f64>() / f64_len(p.len()), p))
}

#[allow(clippy::too_many_lines)] // one table after another, read top to bottom
fn print_mode_table(ctx: &Ctx, device: DeviceKind, mode: Mode, rs: &[RunResult]) {
    let engines = &ctx.args.engines;
    let mut rows: Vec<(u64, bool)> = rs.iter().map(|r| (r.n, r.again)).collect();
    rows.dedup();
    let label = |n: u64, again: bool| {
        if again {
            format!("{} (again)", thousands(n))
        } else {
            thousands(n)
        }
    };
    println!("\n## {} — {} (latency in µs)\n", device.name(), mode.name());
    let mut head = String::from("| N | stores |");
    let mut rule = String::from("|--:|--:|");
    for e in engines {
        for what in ["W", "R"] {
            for stat in ["mean", "sd", "p50", "p99"] {
                let _ = write!(head, " {} {what} {stat} |", e.name());
                rule += "--:|";
            }
        }
    }
    println!("{head}\n{rule}");
    for &(n, again) in &rows {
        let reps = rs
            .iter()
            .find(|r| r.n == n && r.again == again)
            .map_or(1, |r| r.reps);
        let mut line = format!("| {} | {reps} |", label(n, again));
        for &e in engines {
            match find(rs, e, n, again) {
                Some(r) => {
                    for s in [r.write, r.read] {
                        let _ = write!(
                            line,
                            " {} | {} | {} | {} |",
                            us(s.mean_us),
                            us(s.sd_us),
                            us(s.p50_us),
                            us(s.p99_us)
                        );
                    }
                }
                None => line += " – | – | – | – | – | – | – | – |",
            }
        }
        println!("{line}");
    }
    println!();
    let refs: Vec<&RunResult> = rs.iter().collect();
    let base = baseline(&refs);
    if let Some((n0, mean, all)) = &base {
        if all.len() > 1 {
            let each: Vec<String> = all.iter().map(|&p| us(p)).collect();
            println!(
                "- baseline: hpkv write p50 at N={} = {} µs (mean of {} µs, before and after the sweep)",
                thousands(*n0),
                us(*mean),
                each.join(" and ")
            );
        }
    }
    for &(n, again) in &rows {
        let Some(h) = find(rs, EngineKind::Hpkv, n, again) else {
            continue;
        };
        let mut line = format!("- N={}:", label(n, again));
        if let Some((n0, p0, _)) = &base {
            let _ = write!(
                line,
                " hpkv write p50 / at N={}: {}",
                thousands(*n0),
                ratio(h.write.p50_us, *p0)
            );
        }
        for &other in engines.iter().filter(|&&e| e != EngineKind::Hpkv) {
            if let Some(o) = find(rs, other, n, again) {
                let _ = write!(
                    line,
                    "; hpkv/{} p50 write {} read {}",
                    other.name(),
                    ratio(h.write.p50_us, o.write.p50_us),
                    ratio(h.read.p50_us, o.read.p50_us)
                );
            }
        }
        println!("{line}");
    }
    println!("\nSetup per run (prefill s / reopen s / disk used / peak RSS of the run):\n");
    let mut head = String::from("| N |");
    let mut rule = String::from("|--:|");
    for e in engines {
        let _ = write!(head, " {} |", e.name());
        rule += "--|";
    }
    println!("{head}\n{rule}");
    for &(n, again) in rows.iter().filter(|r| !r.1) {
        let mut line = format!("| {} |", thousands(n));
        for &e in engines {
            match find(rs, e, n, again) {
                Some(r) => {
                    let _ = write!(
                        line,
                        " {:.1} / {:.2} / {} / {} |",
                        r.prefill_s,
                        r.open_s,
                        r.disk_bytes.map_or("–".into(), mib),
                        r.peak_rss.map_or("–".into(), mib)
                    );
                }
                None => line += " – |",
            }
        }
        println!("{line}");
    }
}

fn print_group_table(ctx: &Ctx, device: DeviceKind, gs: &[GroupResult]) {
    let a = &ctx.args;
    println!(
        "\n## {} — group commit, sync mode: {} round(s) of {:.0} s per row, fresh store each\n",
        device.name(),
        a.group_rounds.max(1),
        a.group_secs
    );
    println!(
        "| engine | writers | writes | writes/s (median) | range | × vs 1 writer | p50 µs | p99 µs | flushes/write |"
    );
    println!("|--|--:|--:|--:|--:|--:|--:|--:|--:|");
    for g in gs {
        let rate = g.median_rate();
        let one = gs
            .iter()
            .find(|o| o.engine == g.engine && o.threads == 1)
            .map_or(0.0, GroupResult::median_rate);
        let (lo, hi) = g
            .rates
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        let lat = Summary::from_nanos(g.lat.clone());
        println!(
            "| {} | {} | {} | {:.0} | {:.0}–{:.0} | {} | {} | {} | {} |",
            g.engine.name(),
            g.threads,
            thousands(g.lat.len() as u64),
            rate,
            lo,
            hi,
            ratio(rate, one),
            us(lat.p50_us),
            us(lat.p99_us),
            if g.puts > 0 {
                format!("{:.3}", f64_of(g.flushes) / f64_of(g.puts))
            } else {
                "–".into()
            }
        );
    }
}

fn print_summary(ctx: &Ctx, all: &[RunResult]) {
    println!("\n## Summary\n");
    for device in [DeviceKind::Image, DeviceKind::Loop] {
        let runs: Vec<&RunResult> = all
            .iter()
            .filter(|r| r.device == device && r.mode == Mode::Sync)
            .collect();
        let Some((n0, p0, each)) = baseline(&runs) else {
            continue;
        };
        let Some(large) = runs
            .iter()
            .filter(|r| r.engine == EngineKind::Hpkv && !r.again)
            .max_by_key(|r| r.n)
        else {
            continue;
        };
        if large.n == n0 {
            continue;
        }
        let q = large.write.p50_us / p0;
        let each: Vec<String> = each.iter().map(|&p| us(p)).collect();
        println!(
            "- {}: hpkv sync write p50 at N={} / at N={}: {} ({} µs vs {} µs; baseline runs: {} µs) — target ≤ 1.20×: {}",
            device.name(),
            thousands(large.n),
            thousands(n0),
            ratio(large.write.p50_us, p0),
            us(large.write.p50_us),
            us(p0),
            each.join(", "),
            if q <= 1.2 { "met" } else { "NOT met" }
        );
    }
    let key_len = 12u64; // "key_%08d"
    for r in all
        .iter()
        .filter(|r| r.engine == EngineKind::Hpkv && !r.again)
    {
        let largest = all
            .iter()
            .filter(|o| o.device == r.device && o.mode == r.mode && o.engine == r.engine)
            .map(|o| o.n)
            .max();
        if Some(r.n) != largest {
            continue;
        }
        if let Some(s) = &r.hpkv {
            if s.records == 0 {
                continue;
            }
            let total = f64_of(s.index_heap_bytes) / f64_of(s.records);
            // Index::heap_bytes counts each key's allocation as its length rounded up to
            // 16 bytes plus 16 bytes of allocator overhead.
            let keys = f64_of(key_len.div_ceil(16) * 16 + 16);
            println!(
                "- hpkv index heap at N={} ({}, {}): {:.1} bytes/record in all, {:.1} besides \
                 the key allocations ({keys:.0} B/key counted) — goal ≤ 64: {}; device flushes {} \
                 for {} puts; value cache hits {} / misses {}",
                thousands(r.n),
                r.device.name(),
                r.mode.name(),
                total,
                total - keys,
                if total - keys <= 64.0 {
                    "met"
                } else {
                    "NOT met"
                },
                thousands(s.device_flushes),
                thousands(s.puts),
                thousands(s.cache_hits),
                thousands(s.cache_misses),
            );
        }
    }
    for engine in &ctx.args.engines {
        if let Some(r) = all
            .iter()
            .filter(|r| r.engine == *engine && r.peak_rss.is_some())
            .max_by_key(|r| (r.n, r.peak_rss))
        {
            println!(
                "- peak RSS of the process during a {} run at N={} ({}, {}): {}",
                engine.name(),
                thousands(r.n),
                r.device.name(),
                r.mode.name(),
                r.peak_rss.map_or("–".into(), mib)
            );
        }
    }
    println!(
        "- peak RSS of the whole benchmark process: {}",
        mib(system::lifetime_peak_rss_bytes())
    );
}
