//! The three GET forms answered from a view, exactly as the device answers them.
//!
//! What the device does (hpkvd's `device.rs` with `hpkv_abi`'s decoders and reply builders):
//!
//! | form | reads at `arg` | on a hit writes | on a miss |
//! |---|---|---|---|
//! | command 0, `readme` | a key ending in a NUL within 512 bytes | the value and one NUL at `arg`; returns 0 | -1, ENOENT, nothing written |
//! | command 0, `v1.3` | `[u16 key_len][key]` | `[u64 value_len]` at `arg+2`, the value at `arg+10`; returns 0 | the same |
//! | `HPKV_IOC_GET` | `struct hpkv_get` (536 bytes) | `value_len` at `arg+16`, the value at `arg+536`; returns 0. A value longer than `capacity`: `value_len` only, -1, ERANGE | the same |
//!
//! Every request the device would refuse (an empty key, no NUL in 512 bytes, a `key_len` of
//! 0 or over 512, non-zero `flags` or `reserved`) is not answered here: the device answers it,
//! so its errno is the device's by construction. So are requests whose memory the caller's
//! [`CallerMemory`] cannot vouch for, and every lookup the view answers `Unknown`.

use hpkv_abi as abi;
use hpkv_view::{Lookup, ViewReader};

/// The caller's memory at `arg`: `span()` bytes from `arg` are known to be readable and
/// writable. `read` and `write` are only called within the span.
pub trait CallerMemory {
    /// Bytes from `arg` that may be read and written.
    fn span(&self) -> usize;
    /// Copies `out.len()` bytes from `arg + at`.
    fn read(&self, at: usize, out: &mut [u8]);
    /// Copies `bytes` to `arg + at`.
    fn write(&self, at: usize, bytes: &[u8]);
    /// The offset of the first NUL in the first `limit` bytes (`limit` within the span).
    fn find_nul(&self, limit: usize) -> Option<usize> {
        let mut chunk = [0u8; SCAN_CHUNK_BYTES];
        let mut at = 0;
        while at < limit {
            let n = SCAN_CHUNK_BYTES.min(limit - at);
            self.read(at, &mut chunk[..n]);
            if let Some(nul) = chunk[..n].iter().position(|&b| b == 0) {
                return Some(at + nul);
            }
            at += n;
        }
        None
    }
}

/// Which GET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The module's command 0, in the profile the view's daemon serves.
    Module,
    /// `HPKV_IOC_GET`.
    Safe,
}

impl Form {
    /// The form of an ioctl request, as the kernel sees it (the low 32 bits).
    #[inline]
    pub fn of_request(request: u64) -> Option<Form> {
        // The kernel's ioctl takes `unsigned int cmd`: the upper bits never reach a driver.
        #[allow(clippy::cast_possible_truncation)]
        match request as u32 {
            abi::CMD_GET => Some(Form::Module),
            abi::IOC_GET => Some(Form::Safe),
            _ => None,
        }
    }
}

/// The outcome of one GET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Return 0 (the caller's memory was written).
    Done,
    /// Return -1 with this errno (ENOENT: nothing written; ERANGE: `value_len` written).
    Fail(i32),
    /// Let the real `ioctl` answer; nothing was written.
    Forward,
}

const V13_KEY_AT: usize = 2;
const V13_LEN_AT: usize = abi::uapi::HPKV_V13_VALUE_LEN_OFFSET as usize;
const V13_VALUE_AT: usize = abi::uapi::HPKV_V13_VALUE_OFFSET as usize;
const SAFE_FLAGS_AT: usize = std::mem::offset_of!(abi::uapi::hpkv_get, flags);
const SAFE_RESERVED_AT: usize = std::mem::offset_of!(abi::uapi::hpkv_get, reserved);
const SAFE_CAPACITY_AT: usize = std::mem::offset_of!(abi::uapi::hpkv_get, capacity);
const SAFE_LEN_AT: usize = std::mem::offset_of!(abi::uapi::hpkv_get, value_len);
const SAFE_KEY_AT: usize = std::mem::offset_of!(abi::uapi::hpkv_get, key);
const SAFE_VALUE_AT: usize = abi::GET_STRUCT_SIZE;
/// A readme key and its NUL lie within this many bytes.
const STR_KEY_SPAN_MAX: usize = abi::STR_KEY_MAX + 1;
/// The readme key's NUL is looked for in pieces of this many bytes (by the default
/// [`CallerMemory::find_nul`]).
const SCAN_CHUNK_BYTES: usize = 32;

const _: () = assert!(V13_LEN_AT == 2 && V13_VALUE_AT == 10);
const _: () = assert!(SAFE_LEN_AT == 16 && SAFE_KEY_AT == 24 && SAFE_VALUE_AT == 536);

/// A thread's room for one GET, kept between calls (so that nothing is zeroed or allocated
/// per call once the value buffer has grown).
#[derive(Debug)]
pub struct Scratch {
    /// The key, copied from the caller.
    pub key: [u8; abi::KEY_MAX],
    /// The value, copied and validated by the view before the caller's memory is touched.
    pub value: Vec<u8>,
}

impl Scratch {
    /// An empty scratch (usable in a `const` thread-local).
    pub const fn new() -> Scratch {
        Scratch {
            key: [0; abi::KEY_MAX],
            value: Vec::new(),
        }
    }
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch::new()
    }
}

/// Answers one GET of `form` at the caller's memory from `view`.
pub fn answer(
    form: Form,
    view: &ViewReader,
    mem: &impl CallerMemory,
    scratch: &mut Scratch,
) -> Answer {
    let Scratch { key, value } = scratch;
    match form {
        Form::Safe => safe_get(view, mem, key, value),
        Form::Module => match u64::from(view.abi_profile()) {
            abi::ABI_README => readme_get(view, mem, key, value),
            abi::ABI_V13 => v13_get(view, mem, key, value),
            _ => Answer::Forward,
        },
    }
}

/// The key's length if a NUL ends it within 512 bytes of readable memory; `None` for an
/// empty key, no NUL in 512 bytes, or memory that ends first (the device decides those).
fn readme_key(mem: &impl CallerMemory, key: &mut [u8; abi::KEY_MAX]) -> Option<usize> {
    let len = mem.find_nul(STR_KEY_SPAN_MAX.min(mem.span()))?;
    if len == 0 {
        return None;
    }
    mem.read(0, &mut key[..len]);
    Some(len)
}

fn readme_get(
    view: &ViewReader,
    mem: &impl CallerMemory,
    key: &mut [u8; abi::KEY_MAX],
    scratch: &mut Vec<u8>,
) -> Answer {
    let Some(key_len) = readme_key(mem, key) else {
        return Answer::Forward;
    };
    match view.get(&key[..key_len], scratch) {
        Lookup::Hit { .. } if scratch.len() < mem.span() => {
            mem.write(0, scratch);
            mem.write(scratch.len(), &[0]);
            Answer::Done
        }
        Lookup::Miss => Answer::Fail(libc::ENOENT),
        Lookup::Hit { .. } | Lookup::Unknown(_) => Answer::Forward,
    }
}

fn v13_get(
    view: &ViewReader,
    mem: &impl CallerMemory,
    key: &mut [u8; abi::KEY_MAX],
    scratch: &mut Vec<u8>,
) -> Answer {
    if mem.span() < V13_KEY_AT {
        return Answer::Forward;
    }
    let mut len = [0u8; 2];
    mem.read(0, &mut len);
    let key_len = usize::from(u16::from_le_bytes(len));
    if !(1..=abi::KEY_MAX).contains(&key_len) || V13_KEY_AT + key_len > mem.span() {
        return Answer::Forward;
    }
    mem.read(V13_KEY_AT, &mut key[..key_len]);
    match view.get(&key[..key_len], scratch) {
        Lookup::Hit { .. } if V13_VALUE_AT + scratch.len() <= mem.span() => {
            mem.write(V13_LEN_AT, &(scratch.len() as u64).to_le_bytes());
            mem.write(V13_VALUE_AT, scratch);
            Answer::Done
        }
        Lookup::Miss => Answer::Fail(libc::ENOENT),
        Lookup::Hit { .. } | Lookup::Unknown(_) => Answer::Forward,
    }
}

fn safe_get(
    view: &ViewReader,
    mem: &impl CallerMemory,
    key: &mut [u8; abi::KEY_MAX],
    scratch: &mut Vec<u8>,
) -> Answer {
    if mem.span() < abi::GET_STRUCT_SIZE {
        return Answer::Forward;
    }
    let mut head = [0u8; SAFE_KEY_AT];
    mem.read(0, &mut head);
    let key_len = usize::from(abi::le::u16_at(&head, 0));
    let flags = abi::le::u16_at(&head, SAFE_FLAGS_AT);
    let reserved = abi::le::u32_at(&head, SAFE_RESERVED_AT);
    let capacity = abi::le::u64_at(&head, SAFE_CAPACITY_AT);
    if !(1..=abi::KEY_MAX).contains(&key_len) || flags != 0 || reserved != 0 {
        return Answer::Forward;
    }
    mem.read(SAFE_KEY_AT, &mut key[..key_len]);
    match view.get(&key[..key_len], scratch) {
        Lookup::Hit { .. } => {
            let reply = abi::safe_get_reply(capacity, scratch.len());
            if reply.with_value && SAFE_VALUE_AT + scratch.len() > mem.span() {
                return Answer::Forward;
            }
            mem.write(SAFE_LEN_AT, &reply.value_len);
            if reply.with_value {
                mem.write(SAFE_VALUE_AT, scratch);
            }
            if reply.result == 0 {
                Answer::Done
            } else {
                Answer::Fail(-reply.result)
            }
        }
        Lookup::Miss => Answer::Fail(libc::ENOENT),
        Lookup::Unknown(_) => Answer::Forward,
    }
}

#[cfg(test)]
mod tests;
