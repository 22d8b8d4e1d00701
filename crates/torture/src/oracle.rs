//! Bad input and what the contract says it must get: random and malformed `write()`,
//! `read()` and `ioctl()` calls, each with the outcomes `docs/ABI.md` (the contract) and the
//! kernel allow.
//!
//! The expectations are written from the contract, not from hpkvd's decoder. Where the
//! contract does not order two violations (a key too long *and* an empty value), either errno
//! is accepted. Where the outcome depends on what the store holds (a GET of a key another
//! process may have written, an append that may pass the limit, a full device), the set
//! allows each possibility. Where memory runs out (a buffer that ends in the guard page after
//! the arena), EFAULT is expected, except that a key whose bytes are readable must work (the
//! contract's note on keys at the end of mapped memory), and that the kernel cuts a `write()`
//! or `read()` at the first page it cannot reach (a short count).

use std::fmt;

use nix::errno::Errno;

use crate::ffi::Target;
use crate::rng::Rng;

/// Keys starting with this byte are the checker's; bad input never writes one.
pub const CHECKER_PREFIX: u8 = b'k';
/// The fuzzers' arena.
pub const ARENA_BYTES: usize = 256 * 1024;
/// Keys a fuzzer writes well-formed requests to, per process (bounds the live data).
const DICTIONARY_KEYS: u64 = 200;

const KEY_MAX: usize = hpkv_abi::KEY_MAX;
const STR_KEY_MAX: usize = hpkv_abi::STR_KEY_MAX;
const VALUE_MAX: usize = hpkv_abi::VALUE_MAX;
const WRITE_VALUE_MAX: usize = hpkv_abi::WRITE_VALUE_MAX;
const WRITE_MAX: usize = hpkv_abi::WRITE_MAX;
const KV_HEADER: usize = 10;
const GET_STRUCT: usize = hpkv_abi::GET_STRUCT_SIZE;
const RANGE_STRUCT: usize = hpkv_abi::RANGE_STRUCT_SIZE;
const STATS_STRUCT: usize = hpkv_abi::STATS_STRUCT_SIZE;
const RANGE_CAPACITY_MAX: usize = hpkv_abi::RANGE_CAPACITY_MAX;
const INFO_STRUCT: usize = hpkv_abi::INFO_STRUCT_SIZE;
const BATCH_HEADER: usize = hpkv_abi::PUT_BATCH_HEADER_SIZE;
const BATCH_ENTRY_HEADER: usize = hpkv_abi::BATCH_ENTRY_HEADER_SIZE;
const PUT_BATCH_MAX: usize = hpkv_abi::PUT_BATCH_MAX;
/// Records a generated batch holds at most (well-formed or not).
const BATCH_RECORDS_MAX: usize = 8;
/// The kernel's own command 2 (FIGETBSZ) writes an int.
const FIGETBSZ: u32 = 2;

/// Commands the kernel answers itself before a driver sees them (`do_vfs_ioctl`): random
/// command numbers skip them.
const KERNEL_COMMANDS: [u32; 17] = [
    0x5451,
    0x5450,
    0x5421,
    0x5452,
    0x5460,
    0xc004_5877,
    0xc004_5878,
    0xc020_660b,
    2,
    0x4004_9409,
    0x4020_940d,
    0xc018_9436,
    0x541b,
    0x8008_6601,
    0x4008_6602,
    0x801c_581f,
    0x401c_5820,
];

/// How an open file of a fuzzer was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdMode {
    ReadWrite,
    ReadOnly,
    WriteOnly,
}

/// One call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Write {
        fd: usize,
        target: Target,
        len: usize,
    },
    Read {
        fd: usize,
        target: Target,
        len: usize,
    },
    Ioctl {
        fd: usize,
        cmd: u32,
        target: Target,
    },
}

/// What a successful call may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Success {
    Never,
    Exactly(usize),
    UpTo(usize),
}

/// The outcomes the contract allows for a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub success: Success,
    pub errnos: Vec<Errno>,
}

impl Expect {
    fn fail(errnos: &[Errno]) -> Expect {
        Expect {
            success: Success::Never,
            errnos: errnos.to_vec(),
        }
    }

    fn ok(n: usize, errnos: &[Errno]) -> Expect {
        Expect {
            success: Success::Exactly(n),
            errnos: errnos.to_vec(),
        }
    }

    fn with(mut self, e: Errno, when: bool) -> Expect {
        if when && !self.errnos.contains(&e) {
            self.errnos.push(e);
        }
        self
    }

    /// Whether `got` is allowed (an interrupted call, EINTR, is judged by the caller).
    pub fn allows(&self, got: Result<usize, Errno>) -> bool {
        match got {
            Ok(n) => match self.success {
                Success::Never => false,
                Success::Exactly(m) => n == m,
                Success::UpTo(m) => n <= m,
            },
            Err(e) => self.errnos.contains(&e),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errs: Vec<String> = self.errnos.iter().map(|e| format!("{e}")).collect();
        match self.success {
            Success::Never => write!(f, "one of {errs:?}"),
            Success::Exactly(n) => write!(f, "{n} or one of {errs:?}"),
            Success::UpTo(n) => write!(f, "0..={n} or one of {errs:?}"),
        }
    }
}

/// A call, what it may give, and what it is (for reports).
#[derive(Clone, Debug)]
pub struct Request {
    pub call: Call,
    pub expect: Expect,
    pub what: String,
    /// A PURGE: the caller coordinates it with the checker.
    pub purge: bool,
}

/// The outcomes the contract allows for `write()` of `buf` (readable, on a writable file).
pub fn write_outcome(buf: &[u8]) -> Expect {
    let n = buf.len();
    if n == 0 {
        return Expect::ok(0, &[]); // the kernel answers it before hpkvd sees it
    }
    let mut errnos = Vec::new();
    if n > WRITE_MAX {
        errnos.push(Errno::EMSGSIZE);
    }
    let Some(colon) = buf.iter().position(|&b| b == b':') else {
        errnos.push(Errno::EINVAL);
        return Expect::fail(&errnos);
    };
    let (key, rest) = (&buf[..colon], &buf[colon + 1..]);
    if key.is_empty() {
        errnos.push(Errno::EINVAL);
    }
    if key.len() > STR_KEY_MAX || rest.len() > WRITE_VALUE_MAX {
        errnos.push(Errno::EMSGSIZE);
    }
    if rest.is_empty() || rest == b"+" {
        errnos.push(Errno::EINVAL);
    }
    if !errnos.is_empty() {
        errnos.dedup();
        return Expect::fail(&errnos);
    }
    Expect::ok(n, &[Errno::ENOSPC]).with(Errno::EMSGSIZE, rest[0] == b'+')
}

/// What a readme GET (`get`) or DELETE finds at `mem` (the readable bytes from `arg` to the
/// end of mapped memory).
pub fn str_key_outcome(mem: &[u8], get: bool) -> Expect {
    let span = mem.len().min(STR_KEY_MAX + 1);
    match mem[..span].iter().position(|&b| b == 0) {
        Some(0) => Expect::fail(&[Errno::EINVAL]),
        Some(_) if get => Expect::ok(0, &[Errno::ENOENT])
            // The value and its NUL are written at `arg`: a long value may not fit.
            .with(Errno::EFAULT, mem.len() < VALUE_MAX + 1),
        Some(_) => Expect::ok(0, &[Errno::ENOENT, Errno::ENOSPC]),
        None if mem.len() > STR_KEY_MAX => Expect::fail(&[Errno::EINVAL]),
        None => Expect::fail(&[Errno::EFAULT]),
    }
}

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// INSERT (4) or `PARTIAL_UPDATE` (5) with `mem` readable at `arg`.
pub fn kv_outcome(mem: &[u8], append: bool) -> Expect {
    if mem.len() < KV_HEADER {
        return Expect::fail(&[Errno::EFAULT]);
    }
    let key_len = u16_at(mem, 0);
    let value_len = u64_at(mem, 2);
    if !(1..=KEY_MAX).contains(&key_len) || !(1..=VALUE_MAX as u64).contains(&value_len) {
        return Expect::fail(&[Errno::EINVAL]);
    }
    if (mem.len() as u64) < (KV_HEADER + key_len) as u64 + value_len {
        return Expect::fail(&[Errno::EFAULT]);
    }
    Expect::ok(0, &[Errno::ENOSPC]).with(Errno::EMSGSIZE, append)
}

/// The safe GET extension with `mem` readable at `arg`.
pub fn safe_get_outcome(mem: &[u8]) -> Expect {
    if mem.len() < GET_STRUCT {
        return Expect::fail(&[Errno::EFAULT]);
    }
    let key_len = u16_at(mem, 0);
    if !(1..=KEY_MAX).contains(&key_len) || u16_at(mem, 2) != 0 || u32_at(mem, 4) != 0 {
        return Expect::fail(&[Errno::EINVAL]);
    }
    let capacity = u64_at(mem, 8).min(VALUE_MAX as u64);
    Expect::ok(0, &[Errno::ENOENT, Errno::ERANGE]).with(
        Errno::EFAULT,
        (mem.len() as u64) < GET_STRUCT as u64 + capacity,
    )
}

/// RANGE with `mem` readable at `arg`.
pub fn range_outcome(mem: &[u8]) -> Expect {
    if mem.len() < RANGE_STRUCT {
        return Expect::fail(&[Errno::EFAULT]);
    }
    let flags = u32_at(mem, 4);
    let capacity = u64_at(mem, 16);
    if u16_at(mem, 0) > KEY_MAX
        || u16_at(mem, 2) > KEY_MAX
        || flags & !hpkv_abi::RANGE_START_EXCLUSIVE != 0
        || capacity > RANGE_CAPACITY_MAX as u64
    {
        return Expect::fail(&[Errno::EINVAL]);
    }
    Expect::ok(0, &[Errno::ERANGE]).with(
        Errno::EFAULT,
        (mem.len() as u64) < RANGE_STRUCT as u64 + capacity,
    )
}

/// Bytes of a batch entry: header, key, value, padding to 8 (the contract's
/// `HPKV_BATCH_ENTRY_SIZE`).
fn batch_entry_size(key_len: usize, value_len: usize) -> usize {
    (BATCH_ENTRY_HEADER + key_len + value_len).div_ceil(8) * 8
}

/// Whether `entries` are exactly `count` entries of the contract's limits.
fn batch_entries_ok(count: usize, entries: &[u8]) -> bool {
    let mut at = 0;
    for _ in 0..count {
        if entries.len() - at < BATCH_ENTRY_HEADER {
            return false;
        }
        let key_len = u16_at(entries, at);
        let value_len = u32_at(entries, at + 4) as usize;
        let size = batch_entry_size(key_len, value_len);
        let ok = (1..=KEY_MAX).contains(&key_len)
            && u16_at(entries, at + 2) == 0
            && (1..=VALUE_MAX).contains(&value_len)
            && size <= entries.len() - at;
        if !ok {
            return false;
        }
        at += size;
    }
    at == entries.len()
}

/// `HPKV_IOC_PUT_BATCH` with `mem` readable at `arg`. The header is checked before the
/// entries are read; entries cut by unreadable memory may give EFAULT or, being malformed
/// too, EINVAL. A well-formed batch stores its records: its count, or fewer (the first
/// ones) when the device fills.
pub fn put_batch_outcome(mem: &[u8]) -> Expect {
    if mem.len() < BATCH_HEADER {
        return Expect::fail(&[Errno::EFAULT]);
    }
    let count = u32_at(mem, 0) as usize;
    let bytes = u32_at(mem, 4) as usize;
    if count == 0 || u32_at(mem, 8) != 0 || u32_at(mem, 12) != 0 {
        return Expect::fail(&[Errno::EINVAL]);
    }
    if bytes > PUT_BATCH_MAX - BATCH_HEADER {
        return Expect::fail(&[Errno::EMSGSIZE]);
    }
    if mem.len() < BATCH_HEADER + bytes {
        return Expect::fail(&[Errno::EFAULT, Errno::EINVAL]);
    }
    if !batch_entries_ok(count, &mem[BATCH_HEADER..BATCH_HEADER + bytes]) {
        return Expect::fail(&[Errno::EINVAL]);
    }
    Expect {
        success: Success::UpTo(count),
        errnos: vec![Errno::ENOSPC],
    }
}

/// Any command on `target`, given the readable bytes there (`None`: nothing is mapped).
pub fn ioctl_outcome(cmd: u32, mem: Option<&[u8]>) -> Expect {
    let fault = Expect::fail(&[Errno::EFAULT]);
    match cmd {
        hpkv_abi::CMD_PURGE | hpkv_abi::IOC_SYNC => Expect::ok(0, &[]),
        _ if !is_hpkv(cmd) => Expect::fail(&[Errno::ENOTTY]),
        _ => {
            let Some(mem) = mem else { return fault };
            match cmd {
                hpkv_abi::CMD_GET => str_key_outcome(mem, true),
                hpkv_abi::CMD_DELETE => str_key_outcome(mem, false),
                hpkv_abi::CMD_INSERT => kv_outcome(mem, false),
                hpkv_abi::CMD_PARTIAL_UPDATE => kv_outcome(mem, true),
                hpkv_abi::IOC_GET => safe_get_outcome(mem),
                hpkv_abi::IOC_RANGE => range_outcome(mem),
                hpkv_abi::IOC_STATS if mem.len() >= STATS_STRUCT => Expect::ok(0, &[]),
                hpkv_abi::IOC_INFO if mem.len() >= INFO_STRUCT => Expect::ok(0, &[]),
                hpkv_abi::IOC_PUT_BATCH => put_batch_outcome(mem),
                FIGETBSZ if mem.len() >= 4 => Expect::ok(0, &[]),
                _ => fault,
            }
        }
    }
}

/// The commands the contract names (and FIGETBSZ, which the kernel answers).
fn is_hpkv(cmd: u32) -> bool {
    matches!(
        cmd,
        hpkv_abi::CMD_GET
            | hpkv_abi::CMD_DELETE
            | FIGETBSZ
            | hpkv_abi::CMD_PURGE
            | hpkv_abi::CMD_INSERT
            | hpkv_abi::CMD_PARTIAL_UPDATE
            | hpkv_abi::IOC_GET
            | hpkv_abi::IOC_RANGE
            | hpkv_abi::IOC_STATS
            | hpkv_abi::IOC_SYNC
            | hpkv_abi::IOC_INFO
            | hpkv_abi::IOC_PUT_BATCH
    )
}

/// `_IOC(dir, type, nr, size)`.
fn ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | ((size & 0x3fff) << 16) | ((ty & 0xff) << 8) | (nr & 0xff)
}

/// Generates requests for one fuzzer process.
pub struct Gen {
    pub rng: Rng,
    /// The modes of the process's open files.
    pub fds: Vec<FdMode>,
    /// Prefix byte of this process's dictionary keys.
    tag: u8,
    /// PURGEs per million requests.
    purge_ppm: u64,
}

impl Gen {
    pub fn new(rng: Rng, fds: Vec<FdMode>, process: u32, purge_ppm: u64) -> Gen {
        let tag = b'a' + u8::try_from(process % 10).expect("below 10");
        Gen {
            rng,
            fds,
            tag,
            purge_ppm,
        }
    }

    /// The next request; lays out its memory in `arena`.
    pub fn next(&mut self, arena: &mut [u8]) -> Request {
        let fd = self.rng.index(self.fds.len());
        match self.rng.below(100) {
            0..=27 => self.write(arena, fd),
            28..=35 => self.read(arena, fd),
            _ => self.ioctl(arena, fd),
        }
    }

    /// A bad target: NULL, a low address, a kernel address, the guard page.
    fn bad_target(&mut self) -> Target {
        match self.rng.below(4) {
            0 => Target::Null,
            1 => Target::Low(self.rng.index(4096)),
            2 => Target::Kernel,
            _ => Target::Guard(self.rng.index(4096)),
        }
    }

    /// Where `len` bytes go: anywhere, ending exactly at the guard page, or running into it.
    fn place(&mut self, arena_len: usize, len: usize) -> usize {
        let len = len.min(arena_len);
        match self.rng.below(10) {
            0..=5 => self.rng.index(arena_len - len + 1),
            6..=8 => arena_len - len,
            _ => arena_len - len + self.rng.index(len.max(1)),
        }
    }

    fn key_bytes(&mut self, len: usize) -> Vec<u8> {
        let mut k: Vec<u8> = if self.rng.chance(70) && len >= 1 {
            let mut k =
                format!("{}{}", self.tag as char, self.rng.below(DICTIONARY_KEYS)).into_bytes();
            k.resize(len.max(1), b'_');
            k.truncate(len);
            k
        } else {
            (0..len).map(|_| self.rng.byte()).collect()
        };
        if k.first() == Some(&CHECKER_PREFIX) {
            k[0] = b'j';
        }
        k
    }

    fn key_len(&mut self) -> usize {
        match self.rng.below(100) {
            0..=2 => 0,
            3..=79 => self.rng.len(1, 40),
            80..=89 => self.rng.len(41, STR_KEY_MAX),
            90..=95 => self.rng.len(STR_KEY_MAX, KEY_MAX + 1),
            _ => self.rng.len(KEY_MAX + 2, 2000),
        }
    }

    fn value_len(&mut self) -> usize {
        match self.rng.below(1000) {
            0..=29 => 0,
            30..=929 => self.rng.len(1, 300),
            930..=989 => self.rng.len(300, 20_000),
            // Around the limits (costly to send: few).
            _ => self.rng.len(WRITE_VALUE_MAX - 2, VALUE_MAX + 2),
        }
    }

    /// A `write()`: well-formed or not, placed anywhere, on a writable file or not.
    fn write(&mut self, arena: &mut [u8], fd: usize) -> Request {
        let mode = self.fds[fd];
        let mut req = match self.rng.below(100) {
            0..=3 => {
                let target = if self.rng.chance(50) {
                    self.bad_target()
                } else {
                    Target::At(0)
                };
                let call = Call::Write { fd, target, len: 0 };
                // FUSE answers a zero-length write itself (hpkvd never sees it), after the
                // kernel's check that the buffer is a user address at all.
                let expect = if target == Target::Kernel {
                    Expect::fail(&[Errno::EFAULT])
                } else {
                    Expect::ok(0, &[])
                };
                Request {
                    call,
                    expect,
                    what: format!("write() of 0 bytes from {target:?}"),
                    purge: false,
                }
            }
            4..=9 => {
                let call = Call::Write {
                    fd,
                    target: self.bad_target(),
                    len: self.rng.len(1, 1000),
                };
                Request {
                    call,
                    expect: Expect::fail(&[Errno::EFAULT]),
                    what: "write() from a bad pointer".into(),
                    purge: false,
                }
            }
            10..=12 => {
                // A huge length from a valid pointer: the arena ends long before.
                let len = self.rng.len(ARENA_BYTES, 1 << 30);
                let call = Call::Write {
                    fd,
                    target: Target::At(0),
                    len,
                };
                let expect = Expect::fail(&[Errno::EMSGSIZE, Errno::EFAULT]);
                Request {
                    call,
                    expect,
                    what: format!("write() of {len} bytes"),
                    purge: false,
                }
            }
            _ => self.write_buffer(arena, fd),
        };
        if mode == FdMode::ReadOnly {
            req.expect = Expect::fail(&[Errno::EBADF]);
            req.what += " on a read-only file";
        }
        req
    }

    fn write_buffer(&mut self, arena: &mut [u8], fd: usize) -> Request {
        let key_len = self.key_len();
        let mut buf = self.key_bytes(key_len);
        // No colon in the key part (the first colon splits), except now and then.
        if !self.rng.chance(3) {
            for b in &mut buf {
                if *b == b':' {
                    *b = b';';
                }
            }
        }
        match self.rng.below(20) {
            0 => {}                            // no colon at all
            1 => buf.extend_from_slice(b":"),  // empty value
            2 => buf.extend_from_slice(b":+"), // empty append
            3 => buf.extend_from_slice(b":+more"),
            _ => {
                buf.push(b':');
                if self.rng.chance(25) {
                    buf.push(b'+');
                }
                let len = self.value_len();
                buf.extend(self.rng.bytes(len));
            }
        }
        if self.rng.chance(3) {
            buf = (0..self.rng.len(1, 400)).map(|_| self.rng.byte()).collect();
        }
        if buf.first() == Some(&CHECKER_PREFIX) {
            buf[0] = b'j';
        }
        let at = self.place(arena.len(), buf.len());
        let fits = at + buf.len() <= arena.len();
        let copy = buf.len().min(arena.len() - at);
        arena[at..at + copy].copy_from_slice(&buf[..copy]);
        let expect = if fits {
            write_outcome(&buf)
        } else {
            // The kernel cuts a write at the first page it cannot read: hpkvd gets (and
            // stores) the readable part as a whole request, and write() returns its length.
            // Or it answers EFAULT. (A CUSE difference: the module copied all or nothing.)
            let mut e = write_outcome(&buf[..copy]).with(Errno::EFAULT, true);
            if buf.len() > WRITE_MAX {
                e = e.with(Errno::EMSGSIZE, true);
            }
            e
        };
        let what = format!(
            "write() of {} bytes ({}key {key_len} bytes) at arena+{at}",
            buf.len(),
            if fits {
                ""
            } else {
                "running into the guard page, "
            }
        );
        Request {
            call: Call::Write {
                fd,
                target: Target::At(at),
                len: buf.len(),
            },
            expect,
            what,
            purge: false,
        }
    }

    /// A listing `read()`.
    fn read(&mut self, arena: &mut [u8], fd: usize) -> Request {
        let len = match self.rng.below(10) {
            0 => 0,
            1..=4 => self.rng.len(1, 64),
            5..=8 => self.rng.len(64, 8192),
            _ => self.rng.len(8192, 1 << 30),
        };
        let (target, expect, what) = if self.rng.chance(15) && len > 0 {
            (
                self.bad_target(),
                Expect::fail(&[Errno::EFAULT]).with(Errno::EFAULT, true),
                "read() into a bad pointer",
            )
        } else {
            let at = self.place(arena.len(), len.min(arena.len()));
            let fits = at + len <= arena.len();
            let mut e = Expect {
                success: Success::UpTo(len),
                errnos: vec![],
            };
            e = e.with(Errno::EFAULT, !fits);
            (
                Target::At(at),
                e,
                if fits {
                    "read()"
                } else {
                    "read() running into the guard page"
                },
            )
        };
        // An empty answer (the end of the listing) needs no memory at all.
        let mut expect = expect;
        if expect.success == Success::Never {
            expect.success = Success::Exactly(0);
        }
        if self.fds[fd] == FdMode::WriteOnly {
            expect = Expect::fail(&[Errno::EBADF]);
        }
        let what = format!("{what} of {len} bytes");
        Request {
            call: Call::Read { fd, target, len },
            expect,
            what,
            purge: false,
        }
    }

    /// An `ioctl()`: every command, well-formed or not, and numbers no driver knows.
    fn ioctl(&mut self, arena: &mut [u8], fd: usize) -> Request {
        if self.rng.below(1_000_000) < self.purge_ppm {
            let target = if self.rng.chance(50) {
                self.bad_target()
            } else {
                Target::At(self.rng.index(arena.len()))
            };
            let call = Call::Ioctl {
                fd,
                cmd: hpkv_abi::CMD_PURGE,
                target,
            };
            return Request {
                call,
                expect: Expect::ok(0, &[]),
                what: "PURGE".into(),
                purge: true,
            };
        }
        let cmd = match self.rng.below(1000) {
            0..=179 => hpkv_abi::CMD_GET,
            180..=279 => hpkv_abi::CMD_DELETE,
            280..=299 => FIGETBSZ,
            300..=449 => hpkv_abi::CMD_INSERT,
            450..=549 => hpkv_abi::CMD_PARTIAL_UPDATE,
            550..=649 => hpkv_abi::IOC_GET,
            650..=729 => hpkv_abi::IOC_RANGE,
            730..=759 => hpkv_abi::IOC_STATS,
            760..=779 => hpkv_abi::IOC_SYNC,
            780..=829 => hpkv_abi::IOC_PUT_BATCH,
            830..=889 => self.wrong_ioc(),
            _ => self.unknown_command(),
        };
        let (len, what) = if is_hpkv(cmd) {
            self.lay_out(arena, cmd)
        } else {
            (0, format!("command {cmd:#x}"))
        };
        let (target, mem) = if self.rng.chance(8) {
            (self.bad_target(), None)
        } else {
            let at = self.place(arena.len(), len);
            // The layout was written at the end of the arena; move it where it goes (its
            // tail is cut where it runs into the guard page).
            let end = arena.len();
            let src = end - len.min(end);
            arena.copy_within(src..src + (end - at.max(src)), at);
            (Target::At(at), Some(at))
        };
        let expect = ioctl_outcome(cmd, mem.map(|at| &arena[at..]));
        let place = match target {
            Target::At(at) => format!("arena+{at} ({} bytes to the guard page)", arena.len() - at),
            t => format!("{t:?}"),
        };
        Request {
            call: Call::Ioctl { fd, cmd, target },
            expect,
            what: format!("{what} at {place}"),
            purge: false,
        }
    }

    /// An `_IOC` number near the extensions': a wrong size, direction, number or type.
    fn wrong_ioc(&mut self) -> u32 {
        loop {
            let dir = u32::try_from(self.rng.below(4)).expect("small");
            let ty = if self.rng.chance(60) {
                u32::from(b'H')
            } else {
                u32::try_from(self.rng.below(256)).expect("small")
            };
            let nr = if self.rng.chance(50) {
                u32::try_from(self.rng.range(1, 4)).expect("small")
            } else {
                u32::try_from(self.rng.below(256)).expect("small")
            };
            let size = match self.rng.below(3) {
                0 => {
                    // The right sizes give or take a few bytes (0 wraps to the largest).
                    let right = [GET_STRUCT, RANGE_STRUCT, STATS_STRUCT, BATCH_HEADER, 0]
                        [self.rng.index(5)];
                    u32::try_from(right + self.rng.len(0, 16))
                        .expect("small")
                        .wrapping_sub(8)
                }
                1 => u32::try_from(self.rng.below(64)).expect("small"),
                _ => u32::try_from(self.rng.below(0x4000)).expect("small"),
            };
            let cmd = ioc(dir, ty, nr, size);
            if !is_hpkv(cmd)
                && !KERNEL_COMMANDS.contains(&cmd)
                && cmd > hpkv_abi::CMD_PARTIAL_UPDATE
            {
                return cmd;
            }
        }
    }

    fn unknown_command(&mut self) -> u32 {
        loop {
            let cmd = if self.rng.chance(50) {
                u32::try_from(self.rng.range(6, 1000)).expect("small")
            } else {
                self.rng.u32()
            };
            if !is_hpkv(cmd)
                && !KERNEL_COMMANDS.contains(&cmd)
                && cmd > hpkv_abi::CMD_PARTIAL_UPDATE
            {
                return cmd;
            }
        }
    }

    /// Writes the argument of `cmd` at the end of `arena`; its length and a description.
    fn lay_out(&mut self, arena: &mut [u8], cmd: u32) -> (usize, String) {
        let mut buf = match cmd {
            hpkv_abi::CMD_GET | hpkv_abi::CMD_DELETE => self.str_key(),
            hpkv_abi::CMD_INSERT | hpkv_abi::CMD_PARTIAL_UPDATE => self.kv(),
            hpkv_abi::IOC_GET => self.safe_get(),
            hpkv_abi::IOC_RANGE => self.range(),
            hpkv_abi::IOC_STATS => vec![0; STATS_STRUCT],
            hpkv_abi::IOC_PUT_BATCH => self.put_batch(),
            _ => vec![0; 4],
        };
        buf.truncate(arena.len());
        let at = arena.len() - buf.len();
        arena[at..].copy_from_slice(&buf);
        let name = match cmd {
            hpkv_abi::CMD_GET => "GET",
            hpkv_abi::CMD_DELETE => "DELETE",
            hpkv_abi::CMD_INSERT => "INSERT",
            hpkv_abi::CMD_PARTIAL_UPDATE => "PARTIAL_UPDATE",
            hpkv_abi::IOC_GET => "HPKV_IOC_GET",
            hpkv_abi::IOC_RANGE => "HPKV_IOC_RANGE",
            hpkv_abi::IOC_STATS => "HPKV_IOC_STATS",
            hpkv_abi::IOC_SYNC => "HPKV_IOC_SYNC",
            hpkv_abi::IOC_PUT_BATCH => "HPKV_IOC_PUT_BATCH",
            _ => "FIGETBSZ",
        };
        (
            buf.len(),
            format!("{name} ({} bytes of argument)", buf.len()),
        )
    }

    fn str_key(&mut self) -> Vec<u8> {
        let len = self.key_len();
        let mut b = self.key_bytes(len);
        if self.rng.chance(90) {
            b.push(0);
        } else {
            b.extend((0..self.rng.len(1, 600)).map(|_| self.rng.nonzero_byte()));
        }
        b
    }

    fn kv(&mut self) -> Vec<u8> {
        let key_len = self.key_len();
        let value_len = self.value_len();
        let key = self.key_bytes(key_len);
        let declared_key = if self.rng.chance(95) {
            key_len
        } else {
            self.rng.index(70_000)
        };
        let declared_value: u64 = match self.rng.below(100) {
            0..=95 => value_len as u64,
            96..=97 => u64::MAX - self.rng.below(3),
            _ => self.rng.next_u64(),
        };
        let mut b = Vec::with_capacity(KV_HEADER + key_len + value_len);
        b.extend_from_slice(
            &u16::try_from(declared_key.min(0xffff))
                .expect("clamped")
                .to_le_bytes(),
        );
        b.extend_from_slice(&declared_value.to_le_bytes());
        b.extend_from_slice(&key);
        b.extend(self.rng.bytes(value_len));
        // Whatever the declared key length, its first byte is never the checker's.
        if b.get(KV_HEADER) == Some(&CHECKER_PREFIX) {
            b[KV_HEADER] = b'j';
        }
        b
    }

    /// A batch of 1 to [`BATCH_RECORDS_MAX`] records, well-formed or with one flaw: a count
    /// or `bytes` that does not match the entries, a length out of bounds or overrunning, a
    /// non-zero flag or reserved field, `bytes` over the limit.
    fn put_batch(&mut self) -> Vec<u8> {
        let records = self.rng.len(1, BATCH_RECORDS_MAX);
        let mut b = vec![0u8; BATCH_HEADER];
        let mut entry_at = Vec::with_capacity(records);
        for _ in 0..records {
            let key_len = self.rng.len(1, 40);
            let value_len = self.rng.len(1, 300);
            let key = self.key_bytes(key_len);
            entry_at.push(b.len());
            let at = b.len();
            b.resize(at + batch_entry_size(key_len, value_len), 0);
            let len = u16::try_from(key_len).expect("small");
            b[at..at + 2].copy_from_slice(&len.to_le_bytes());
            let len = u32::try_from(value_len).expect("small");
            b[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
            b[at + 8..at + 8 + key_len].copy_from_slice(&key);
            let value = self.rng.bytes(value_len);
            b[at + 8 + key_len..at + 8 + key_len + value_len].copy_from_slice(&value);
        }
        let count = u32::try_from(records).expect("small");
        let bytes = u32::try_from(b.len() - BATCH_HEADER).expect("small");
        b[0..4].copy_from_slice(&count.to_le_bytes());
        b[4..8].copy_from_slice(&bytes.to_le_bytes());
        self.flaw_batch(&mut b, &entry_at);
        b
    }

    /// Gives a well-formed batch one flaw, or none (about a quarter of the time).
    fn flaw_batch(&mut self, b: &mut [u8], entry_at: &[usize]) {
        let entry = entry_at[self.rng.index(entry_at.len())];
        let count = u32::try_from(entry_at.len()).expect("small");
        let small = |v: u64| u32::try_from(v).expect("small");
        let (at, v) = match self.rng.below(20) {
            0 => (0, 0),
            1 => (0, count + small(self.rng.range(1, 3))),
            2 if count > 1 => (0, count - 1),
            3 => (0, self.rng.u32()),
            4 => (4, small(self.rng.below(1 << 17))),
            5 => (4, self.rng.u32()),
            6 => (8, 1 + small(self.rng.below(1 << 31))),
            7 => (12, 1 + small(self.rng.below(1 << 31))),
            8 => (entry + 4, 0),
            9 => (entry + 4, self.rng.u32()),
            10 => (entry + 4, small(VALUE_MAX as u64 + 1)),
            // key_len 0, key_len 513 (and reserved 0), reserved 1 with the key_len kept.
            11 => (entry, u32_at(b, entry) & 0xffff_0000),
            12 => (entry, (u32_at(b, entry) & 0xffff_0000) | 0x201),
            13 => (entry, u32_at(b, entry) | 0x1_0000),
            14 => (4, small(PUT_BATCH_MAX as u64)),
            _ => return,
        };
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn field_len(&mut self, real: usize) -> u16 {
        let v = match self.rng.below(100) {
            0..=89 => real,
            90..=94 => KEY_MAX + 1,
            _ => self.rng.index(0x1_0000),
        };
        u16::try_from(v.min(0xffff)).expect("clamped")
    }

    fn capacity(&mut self, max: usize) -> u64 {
        match self.rng.below(10) {
            0 => 0,
            1..=3 => self.rng.range(1, 200),
            4..=7 => self.rng.range(200, max as u64),
            8 => max as u64 + self.rng.range(1, 10),
            _ => self.rng.next_u64(),
        }
    }

    fn safe_get(&mut self) -> Vec<u8> {
        let mut b = vec![0u8; GET_STRUCT];
        let key_len = self.rng.len(0, KEY_MAX);
        let key = self.key_bytes(key_len);
        let len = self.field_len(key_len);
        b[0..2].copy_from_slice(&len.to_le_bytes());
        if self.rng.chance(4) {
            b[2..4].copy_from_slice(
                &(1 + u16::try_from(self.rng.below(0xffff)).expect("small")).to_le_bytes(),
            );
        }
        if self.rng.chance(4) {
            b[4..8].copy_from_slice(
                &(1 + u32::try_from(self.rng.below(0xffff_fffe)).expect("small")).to_le_bytes(),
            );
        }
        let capacity = self.capacity(VALUE_MAX);
        b[8..16].copy_from_slice(&capacity.to_le_bytes());
        b[24..24 + key.len()].copy_from_slice(&key);
        b
    }

    fn range(&mut self) -> Vec<u8> {
        let mut b = vec![0u8; RANGE_STRUCT];
        for (len_at, key_at) in [(0usize, 32usize), (2, 32 + KEY_MAX)] {
            let len = if self.rng.chance(40) {
                0
            } else {
                self.rng.len(1, 30)
            };
            let key = self.key_bytes(len);
            let field = self.field_len(len);
            b[len_at..len_at + 2].copy_from_slice(&field.to_le_bytes());
            b[key_at..key_at + key.len()].copy_from_slice(&key);
        }
        let flags: u32 = match self.rng.below(10) {
            0..=5 => 0,
            6..=8 => hpkv_abi::RANGE_START_EXCLUSIVE,
            _ => self.rng.u32(),
        };
        b[4..8].copy_from_slice(&flags.to_le_bytes());
        let max_count = if self.rng.chance(50) {
            0
        } else {
            u32::try_from(self.rng.below(20)).expect("small")
        };
        b[8..12].copy_from_slice(&max_count.to_le_bytes());
        let capacity = self.capacity(RANGE_CAPACITY_MAX);
        b[16..24].copy_from_slice(&capacity.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests;
