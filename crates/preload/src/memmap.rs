//! Which of the caller's memory is readable and writable, without a system call per GET.
//!
//! The device validates the caller's pointers in the kernel: a key in unmapped or
//! `PROT_NONE` memory, or a value that would land there, fails with EFAULT. A library in the
//! caller's process that touched such memory would crash it instead. So the GET path first
//! asks this module for the end of the readable and writable memory that contains `arg`, and
//! hands the request to the device when the answer is not known.
//!
//! The answer comes from a copy of the process's read-write mappings (`/proc/self/maps`,
//! adjacent ones merged), kept in a static table under a seqlock. It is refreshed when an
//! address is not in it (a new mapping; at most once per [`UNKNOWN_REFRESH_INTERVAL_NS`]), and
//! dropped whole whenever the program changes its mappings through the C library:
//! `munmap`, `mremap`, `mprotect` without read and write, `pkey_mprotect`, a `MAP_FIXED`
//! `mmap`, `shmdt` and `dlclose` call [`invalidate`] before they act. Mappings that the C
//! library itself removes (`free` of a large block, a shrinking heap) are removed only from
//! memory the program no longer owns, which it cannot pass to GET without a use-after-free.

use std::io::Read;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Read-write ranges kept at most (merged); addresses past them are "unknown" (the device
/// answers).
pub const RANGES_MAX: usize = 4096;
/// An address not in the table triggers a new read of the maps at most this often.
pub const UNKNOWN_REFRESH_INTERVAL_NS: u64 = 10_000_000;
/// Attempts of a lookup that finds the table being rewritten.
const LOOKUP_ATTEMPTS_MAX: usize = 4;
/// Bytes read from `/proc/self/maps` at a time.
const READ_CHUNK_BYTES: usize = 2048;

/// The table: sorted, disjoint, non-adjacent `[start, end)` ranges.
struct Table {
    /// Seqlock: odd while the table is being rewritten.
    version: AtomicU64,
    /// The value of [`INVALIDATIONS`] before the maps were read.
    epoch: AtomicU64,
    count: AtomicUsize,
    /// The index of the range the last lookup found (a hint: checked before use).
    hint: AtomicUsize,
    starts: [AtomicU64; RANGES_MAX],
    ends: [AtomicU64; RANGES_MAX],
    /// Held by the one thread rewriting the table (never waited for).
    writing: AtomicBool,
    /// No refresh for an unknown address before this time ([`now_ns`]).
    unknown_refresh_after_ns: AtomicU64,
}

static TABLE: Table = Table {
    version: AtomicU64::new(0),
    // Never equal to INVALIDATIONS before the first read.
    epoch: AtomicU64::new(u64::MAX),
    count: AtomicUsize::new(0),
    hint: AtomicUsize::new(0),
    starts: [const { AtomicU64::new(0) }; RANGES_MAX],
    ends: [const { AtomicU64::new(0) }; RANGES_MAX],
    writing: AtomicBool::new(false),
    unknown_refresh_after_ns: AtomicU64::new(0),
};

/// Bumped before every change of the process's mappings that the library sees.
static INVALIDATIONS: AtomicU64 = AtomicU64::new(0);
/// Reads of `/proc/self/maps` (for tests and curiosity).
static REFRESHES: AtomicU64 = AtomicU64::new(0);

/// Drops what the table knows: the process is about to change its mappings.
#[inline]
pub fn invalidate() {
    INVALIDATIONS.fetch_add(1, Ordering::SeqCst);
}

/// How many times the maps were read.
pub fn refreshes() -> u64 {
    REFRESHES.load(Ordering::Relaxed)
}

/// After `fork`, in the child: a thread that was rewriting the table is gone.
pub fn after_fork_in_child() {
    invalidate();
    if TABLE.version.load(Ordering::Relaxed) % 2 == 1 {
        TABLE.version.fetch_add(1, Ordering::Relaxed);
    }
    TABLE.writing.store(false, Ordering::Release);
}

fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

enum Found {
    /// The end of the read-write memory containing the address.
    End(u64),
    /// Not in the table.
    Absent,
    /// The table is out of date or being rewritten.
    Stale,
}

fn lookup(addr: u64) -> Found {
    let t = &TABLE;
    for _ in 0..LOOKUP_ATTEMPTS_MAX {
        let v1 = t.version.load(Ordering::Acquire);
        if v1 % 2 == 1 {
            std::hint::spin_loop();
            continue;
        }
        if t.epoch.load(Ordering::Relaxed) != INVALIDATIONS.load(Ordering::SeqCst) {
            return Found::Stale;
        }
        let count = t.count.load(Ordering::Relaxed).min(RANGES_MAX);
        // Most GETs of a program use the buffer the last one used: try its range first.
        let hint = t.hint.load(Ordering::Relaxed);
        if hint < count
            && t.starts[hint].load(Ordering::Relaxed) <= addr
            && addr < t.ends[hint].load(Ordering::Relaxed)
        {
            let end = t.ends[hint].load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if t.version.load(Ordering::Relaxed) == v1 {
                return Found::End(end);
            }
            continue;
        }
        // The last range starting at or below addr.
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if t.starts[mid].load(Ordering::Relaxed) <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let found = lo
            .checked_sub(1)
            .map(|i| (i, t.ends[i].load(Ordering::Relaxed)))
            .filter(|&(_, end)| addr < end);
        fence(Ordering::Acquire);
        if t.version.load(Ordering::Relaxed) == v1 {
            return found.map_or(Found::Absent, |(i, end)| {
                t.hint.store(i, Ordering::Relaxed);
                Found::End(end)
            });
        }
    }
    Found::Stale
}

/// Bytes from `addr` up to the end of the readable and writable memory that contains it;
/// `None` if that is not known (the caller lets the device decide).
pub fn rw_span(addr: u64) -> Option<u64> {
    let refresh = match lookup(addr) {
        Found::End(end) => return Some(end - addr),
        Found::Stale => true,
        Found::Absent => {
            let now = now_ns();
            let after = TABLE.unknown_refresh_after_ns.load(Ordering::Relaxed);
            now >= after
                && TABLE
                    .unknown_refresh_after_ns
                    .compare_exchange(
                        after,
                        now + UNKNOWN_REFRESH_INTERVAL_NS,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok()
        }
    };
    if !refresh || !refresh_table() {
        return None;
    }
    match lookup(addr) {
        Found::End(end) => Some(end - addr),
        Found::Absent | Found::Stale => None,
    }
}

/// Reads `/proc/self/maps` into the table; `false` if another thread is at it.
fn refresh_table() -> bool {
    let t = &TABLE;
    if t.writing.swap(true, Ordering::Acquire) {
        return false;
    }
    let epoch = INVALIDATIONS.load(Ordering::SeqCst);
    let v = t.version.load(Ordering::Relaxed);
    t.version.store(v + 1, Ordering::Relaxed);
    fence(Ordering::Release);
    let mut sink = Sink { count: 0 };
    let complete = std::fs::File::open("/proc/self/maps")
        .and_then(|mut f| parse_maps(&mut f, &mut sink))
        .is_ok();
    t.count
        .store(if complete { sink.count } else { 0 }, Ordering::Relaxed);
    t.epoch.store(epoch, Ordering::Relaxed);
    t.version.store(v + 2, Ordering::Release);
    t.writing.store(false, Ordering::Release);
    REFRESHES.fetch_add(1, Ordering::Relaxed);
    true
}

/// Receives read-write ranges in ascending order.
trait Ranges {
    fn push(&mut self, start: u64, end: u64);
}

/// Writes ranges into the table (under its seqlock).
struct Sink {
    count: usize,
}

impl Ranges for Sink {
    fn push(&mut self, start: u64, end: u64) {
        let t = &TABLE;
        if self.count < RANGES_MAX {
            t.starts[self.count].store(start, Ordering::Relaxed);
            t.ends[self.count].store(end, Ordering::Relaxed);
            self.count += 1;
        }
    }
}

/// Where the parser is in a line of `/proc/self/maps` (`start-end perms offset dev ino path`).
#[derive(Clone, Copy)]
enum At {
    Start,
    End,
    Perms(u8),
    Rest,
}

/// Streams the maps through a fixed buffer and pushes every stretch of readable and
/// writable mappings, neighbours merged. Lines may be longer than the buffer (long paths):
/// the parser keeps its state across reads.
fn parse_maps(input: &mut impl Read, out: &mut impl Ranges) -> std::io::Result<()> {
    let mut buf = [0u8; READ_CHUNK_BYTES];
    let (mut at, mut start, mut end, mut rw) = (At::Start, 0u64, 0u64, true);
    let mut pending: Option<(u64, u64)> = None;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => {
                if let Some((s, e)) = pending {
                    out.push(s, e);
                }
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            at = match (at, b) {
                (_, b'\n') => {
                    if matches!(at, At::Rest) && rw && start < end {
                        pending = match pending {
                            Some((s, e)) if e == start => Some((s, end)),
                            Some((s, e)) => {
                                out.push(s, e);
                                Some((start, end))
                            }
                            None => Some((start, end)),
                        };
                    }
                    (start, end, rw) = (0, 0, true);
                    At::Start
                }
                (At::Start, b'-') => At::End,
                (At::Start, _) => {
                    start = hex_digit(start, b);
                    At::Start
                }
                (At::End, b' ') => At::Perms(0),
                (At::End, _) => {
                    end = hex_digit(end, b);
                    At::End
                }
                (At::Perms(i), _) => {
                    rw &= match i {
                        0 => b == b'r',
                        1 => b == b'w',
                        _ => true,
                    };
                    if i >= 1 {
                        At::Rest
                    } else {
                        At::Perms(i + 1)
                    }
                }
                (At::Rest, _) => At::Rest,
            };
        }
    }
}

/// Accumulates a hex digit; anything else poisons the number (a range that cannot be
/// trusted is dropped by making it empty).
fn hex_digit(acc: u64, b: u8) -> u64 {
    let digit = match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => return u64::MAX,
    };
    if acc > u64::MAX >> 4 {
        return u64::MAX;
    }
    (acc << 4) | u64::from(digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<(u64, u64)>);
    impl Ranges for Collect {
        fn push(&mut self, start: u64, end: u64) {
            self.0.push((start, end));
        }
    }

    /// Reads one byte at a time, so every line crosses read boundaries.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some((&b, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            buf[0] = b;
            self.0 = rest;
            Ok(1)
        }
    }

    const MAPS: &str = "\
55d0c8a00000-55d0c8a02000 r--p 00000000 08:01 1234 /usr/bin/cat
55d0c8a02000-55d0c8a07000 r-xp 00002000 08:01 1234 /usr/bin/cat
55d0c8a0b000-55d0c8a0c000 rw-p 0000a000 08:01 1234 /usr/bin/cat
55d0c8a0c000-55d0c8a2d000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000001000 rw-s 00000000 00:05 77 /dev/zero (deleted)
7f0000001000-7f0000002000 ---p 00000000 00:00 0
7f0000002000-7f0000003000 -w-p 00000000 00:00 0
7ffd1c5e0000-7ffd1c601000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
";

    #[test]
    fn parses_read_write_ranges_and_merges_neighbours() {
        let mut got = Collect(vec![]);
        parse_maps(&mut MAPS.as_bytes(), &mut got).unwrap();
        let want = vec![
            (0x55d0_c8a0_b000, 0x55d0_c8a2_d000),
            (0x7f00_0000_0000, 0x7f00_0000_1000),
            (0x7ffd_1c5e_0000, 0x7ffd_1c60_1000),
        ];
        assert_eq!(got.0, want);
        let mut trickled = Collect(vec![]);
        parse_maps(&mut Trickle(MAPS.as_bytes()), &mut trickled).unwrap();
        assert_eq!(trickled.0, want);
        // A line with garbage in its numbers is dropped.
        let mut bad = Collect(vec![]);
        parse_maps(&mut "zz-10 rw-p 0 0:0 0\n10-20 rw-p\n".as_bytes(), &mut bad).unwrap();
        assert_eq!(bad.0, vec![(0x10, 0x20)]);
    }

    #[test]
    fn this_process_memory_and_invalidation() {
        let heap = vec![7u8; 1 << 20];
        let addr = heap.as_ptr() as u64;
        let span = rw_span(addr).expect("a Vec is read-write memory");
        assert!(span >= 1 << 20);
        assert_eq!(rw_span(0), None, "page zero is never mapped");
        let static_text = parses_read_write_ranges_and_merges_neighbours as fn() as usize as u64;
        assert_eq!(rw_span(static_text), None, "code is not writable");
        let before = refreshes();
        assert!(rw_span(addr).is_some());
        invalidate();
        assert!(rw_span(addr).is_some());
        assert!(refreshes() > before, "an invalidation forces a new read");
    }
}
