//! The ioctls of `/dev/hpkv`: the client's only `unsafe` code, each block commented with the
//! invariant it relies on. Everything above this module sees safe functions over byte slices.
#![allow(unsafe_code)]

// Why these are sound. An hpkv command reaches hpkvd as a CUSE *unrestricted* ioctl: the
// kernel copies in and out of the caller's memory exactly the areas the daemon names in its
// retry replies, and on completion writes only as many bytes as the reply carries. What
// hpkvd names for each command is `hpkv_abi::decode_ioctl`, what it writes is the reply
// builders next to it; each wrapper below checks that `buf` covers every byte the daemon
// writes for the command with the contents `buf` holds, and every byte it reads but the
// tail of the 4 KiB page holding the key (hpkvd may read ahead to the end of that page, never
// beyond, and never writes there; reading mapped memory has no effect on it).
//
// The commands 0..5 are plain numbers that another driver could read differently: call them
// only on a descriptor of hpkvd's device. `crate::Client` checks this at open with
// HPKV_IOC_STATS, an `_IOC`-encoded command whose size every driver honours.

use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

use hpkv_abi::le::{get_u16, get_u32, get_u64};
use hpkv_abi::{self as abi, uapi};

/// Issues `ioctl(fd, cmd, arg)` and returns its non-negative result, or the errno.
///
/// For test programs that need odd pointers (EFAULT and EINVAL probes); everything else goes
/// through the safe wrappers below.
///
/// # Safety
/// Every byte that the driver behind `fd` may write through `arg` for `cmd` must be memory
/// the caller owns and nothing else references for the duration of the call (for hpkvd: the
/// areas `abi::decode_ioctl` names; an unmapped address is fine: the kernel answers EFAULT).
pub unsafe fn ioctl_raw(fd: BorrowedFd<'_>, cmd: u32, arg: usize) -> Result<i32, Errno> {
    // SAFETY: `fd` is open for the call (borrowed); the memory behind `arg` is the caller's
    // guarantee above.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request(cmd), arg) };
    Errno::result(r)
}

/// `cmd` as libc's `ioctl` takes it: the same 32 bits, in a `c_ulong` with glibc and a
/// `c_int` with musl (where the `_IOC` numbers over `i32::MAX` wrap, as in C).
#[allow(
    clippy::cast_lossless,
    clippy::cast_possible_wrap,
    reason = "the request type differs between C libraries; the bits are the same"
)]
fn request(cmd: u32) -> libc::Ioctl {
    cmd as libc::Ioctl
}

/// `ioctl(fd, cmd, buf)` for the wrappers below.
///
/// # Safety
/// `buf` covers every byte hpkvd writes for `cmd` given what `buf` holds (see the callers).
unsafe fn hpkv_ioctl(fd: BorrowedFd<'_>, cmd: u32, buf: &mut [u8]) -> Result<(), Errno> {
    // SAFETY: forwarded from the caller; `buf` is borrowed mutably, so nothing else sees it
    // while the daemon writes.
    unsafe { ioctl_raw(fd, cmd, buf.as_mut_ptr() as usize) }.map(drop)
}

/// INSERT (4) or `PARTIAL_UPDATE` (5): `buf` holds `[u16 key_len][u64 value_len][key][value]`.
/// EINVAL, without a call, for another `cmd` or when `buf` is shorter than its header says.
pub fn hpkv_kv(fd: BorrowedFd<'_>, cmd: u32, buf: &mut [u8]) -> Result<(), Errno> {
    let key_len = get_u16(buf, offset_of!(uapi::hpkv_kv, key_len)).ok_or(Errno::EINVAL)?;
    let value_len = get_u64(buf, offset_of!(uapi::hpkv_kv, value_len)).ok_or(Errno::EINVAL)?;
    let total = ((size_of::<uapi::hpkv_kv>() + usize::from(key_len)) as u64).checked_add(value_len);
    if !(cmd == abi::CMD_INSERT || cmd == abi::CMD_PARTIAL_UPDATE)
        || total.is_none_or(|t| t > buf.len() as u64)
    {
        return Err(Errno::EINVAL);
    }
    // SAFETY: hpkvd only reads for these commands (no output area), at most `total` bytes
    // plus the rest of the first page; `buf` holds `total` bytes (checked above).
    unsafe { hpkv_ioctl(fd, cmd, buf) }
}

/// `HPKV_IOC_PUT_BATCH`: `buf` holds `struct hpkv_put_batch` and the `bytes` of entries it
/// names; the number of records stored. EINVAL, without a call, when `buf` is shorter than
/// its header says.
pub fn hpkv_put_batch(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<i32, Errno> {
    let bytes = get_u32(buf, offset_of!(uapi::hpkv_put_batch, bytes)).ok_or(Errno::EINVAL)?;
    let total = usize::try_from(bytes)
        .ok()
        .and_then(|b| b.checked_add(abi::PUT_BATCH_HEADER_SIZE));
    if total.is_none_or(|t| t > buf.len()) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: hpkvd only reads for this command (no output area): the header with the rest
    // of its page, then the header and `bytes` bytes, which `buf` holds (checked above).
    // Nothing is written, so lending a shared slice is sound.
    unsafe { ioctl_raw(fd, abi::IOC_PUT_BATCH, buf.as_ptr() as usize) }
}

/// DELETE (1), readme profile: `buf` holds a NUL-terminated key. EINVAL, without a call,
/// when `buf` has no NUL.
pub fn hpkv_delete_str(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(), Errno> {
    if !buf.contains(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: DELETE has no output area; hpkvd reads up to the NUL (inside `buf`) and the
    // rest of the page it is in.
    unsafe { hpkv_ioctl(fd, abi::CMD_DELETE, buf) }
}

/// DELETE (1), v1.3 profile: `buf` holds `[u16 key_len][key]`. EINVAL, without a call, when
/// `buf` is shorter than that.
pub fn hpkv_delete_v13(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(), Errno> {
    let key_len = get_u16(buf, offset_of!(uapi::hpkv_v13_key, key_len)).ok_or(Errno::EINVAL)?;
    if size_of::<uapi::hpkv_v13_key>() + usize::from(key_len) > buf.len() {
        return Err(Errno::EINVAL);
    }
    // SAFETY: DELETE has no output area; hpkvd reads `2 + key_len` bytes (inside `buf`) and
    // the rest of the first page.
    unsafe { hpkv_ioctl(fd, abi::CMD_DELETE, buf) }
}

/// PURGE (3).
pub fn hpkv_purge(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: PURGE ignores its argument: a null pointer gives the daemon nothing to touch.
    unsafe { ioctl_raw(fd, abi::CMD_PURGE, 0) }.map(drop)
}

/// `HPKV_IOC_GET`: `buf` holds a `struct hpkv_get` and the `capacity` bytes of `value[]` it
/// declares. EINVAL, without a call, when `buf` is shorter than that.
pub fn hpkv_safe_get(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(), Errno> {
    let capacity = get_u64(buf, offset_of!(uapi::hpkv_get, capacity)).ok_or(Errno::EINVAL)?;
    if buf.len() < abi::GET_STRUCT_SIZE || capacity > (buf.len() - abi::GET_STRUCT_SIZE) as u64 {
        return Err(Errno::EINVAL);
    }
    // SAFETY: hpkvd reads the struct and writes `value_len` (inside the struct) and, only
    // when the value fits `capacity`, the value at `value[]`: all inside `buf`.
    unsafe { hpkv_ioctl(fd, abi::IOC_GET, buf) }
}

/// `HPKV_IOC_RANGE`: `buf` holds a `struct hpkv_range` and the `capacity` bytes of `data[]`
/// it declares. EINVAL, without a call, when `buf` is shorter than that.
pub fn hpkv_range(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(), Errno> {
    let capacity = get_u64(buf, offset_of!(uapi::hpkv_range, capacity)).ok_or(Errno::EINVAL)?;
    if buf.len() < abi::RANGE_STRUCT_SIZE || capacity > (buf.len() - abi::RANGE_STRUCT_SIZE) as u64
    {
        return Err(Errno::EINVAL);
    }
    // SAFETY: hpkvd reads the struct and writes its first HPKV_RANGE_HEADER_SIZE bytes and at
    // most `capacity` bytes of `data[]`: all inside `buf`.
    unsafe { hpkv_ioctl(fd, abi::IOC_RANGE, buf) }
}

/// `HPKV_IOC_STATS` into `buf`.
pub fn hpkv_stats(fd: BorrowedFd<'_>, buf: &mut [u8; abi::STATS_STRUCT_SIZE]) -> Result<(), Errno> {
    // SAFETY: the command's size field is the struct's: hpkvd (and any driver honouring
    // `_IOR`) writes at most that many bytes, `buf`'s length.
    unsafe { hpkv_ioctl(fd, abi::IOC_STATS, buf) }
}

/// `HPKV_IOC_INFO` into `buf`.
pub fn hpkv_info(fd: BorrowedFd<'_>, buf: &mut [u8; abi::INFO_STRUCT_SIZE]) -> Result<(), Errno> {
    // SAFETY: the command's size field is the struct's: hpkvd (and any driver honouring
    // `_IOR`) writes at most that many bytes, `buf`'s length.
    unsafe { hpkv_ioctl(fd, abi::IOC_INFO, buf) }
}

/// `HPKV_IOC_SYNC`.
pub fn hpkv_sync(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: `_IO` command: no argument memory at all.
    unsafe { ioctl_raw(fd, abi::IOC_SYNC, 0) }.map(drop)
}

#[cfg(test)]
mod hpkv_wrapper_tests {
    use std::fs::File;
    use std::os::fd::AsFd;

    use super::*;

    /// A buffer shorter than its layout says is refused with EINVAL before any call;
    /// /dev/null answers ENOTTY to a call that is made.
    #[test]
    fn short_buffers_never_reach_the_driver() {
        let null = File::open("/dev/null").unwrap();
        let fd = null.as_fd();
        let mut kv = [0u8; 13];
        kv[0] = 2; // key_len 2
        kv[2] = 2; // value_len 2: 14 bytes needed
        assert_eq!(hpkv_kv(fd, abi::CMD_INSERT, &mut kv), Err(Errno::EINVAL));
        assert_eq!(
            hpkv_kv(fd, abi::CMD_INSERT, &mut kv[..5]),
            Err(Errno::EINVAL)
        );
        let mut kv14 = [0u8; 14];
        kv14[..13].copy_from_slice(&kv);
        assert_eq!(
            hpkv_kv(fd, abi::CMD_DELETE, &mut kv14),
            Err(Errno::EINVAL),
            "not 4 or 5"
        );
        assert_eq!(
            hpkv_kv(fd, abi::CMD_PARTIAL_UPDATE, &mut kv14),
            Err(Errno::ENOTTY)
        );
        let mut huge = [0xFFu8; 10];
        assert_eq!(
            hpkv_kv(fd, abi::CMD_INSERT, &mut huge),
            Err(Errno::EINVAL),
            "no overflow"
        );

        assert_eq!(
            hpkv_delete_str(fd, &mut b"key".to_owned()),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            hpkv_delete_str(fd, &mut b"key\0".to_owned()),
            Err(Errno::ENOTTY)
        );
        assert_eq!(
            hpkv_delete_v13(fd, &mut [3, 0, b'k', b'e']),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            hpkv_delete_v13(fd, &mut [3, 0, b'k', b'e', b'y']),
            Err(Errno::ENOTTY)
        );

        let mut get = vec![0u8; abi::GET_STRUCT_SIZE + 10];
        get[offset_of!(uapi::hpkv_get, capacity)] = 11;
        assert_eq!(hpkv_safe_get(fd, &mut get), Err(Errno::EINVAL));
        assert_eq!(
            hpkv_safe_get(fd, &mut get[..abi::GET_STRUCT_SIZE - 1]),
            Err(Errno::EINVAL)
        );
        get[offset_of!(uapi::hpkv_get, capacity)] = 10;
        assert_eq!(hpkv_safe_get(fd, &mut get), Err(Errno::ENOTTY));

        let mut range = vec![0u8; abi::RANGE_STRUCT_SIZE + 10];
        range[offset_of!(uapi::hpkv_range, capacity)] = 11;
        assert_eq!(hpkv_range(fd, &mut range), Err(Errno::EINVAL));
        range[offset_of!(uapi::hpkv_range, capacity)] = 10;
        assert_eq!(hpkv_range(fd, &mut range), Err(Errno::ENOTTY));

        assert_eq!(
            hpkv_stats(fd, &mut [0; abi::STATS_STRUCT_SIZE]),
            Err(Errno::ENOTTY)
        );
        assert_eq!(hpkv_sync(fd), Err(Errno::ENOTTY));
        assert_eq!(
            hpkv_info(fd, &mut [0; abi::INFO_STRUCT_SIZE]),
            Err(Errno::ENOTTY)
        );
        assert_eq!(hpkv_purge(fd), Err(Errno::ENOTTY));

        let batch = abi::encode_put_batch(&[(b"k", b"v")]).unwrap();
        let bytes = batch.as_bytes();
        assert_eq!(
            hpkv_put_batch(fd, &bytes[..bytes.len() - 1]),
            Err(Errno::EINVAL)
        );
        assert_eq!(hpkv_put_batch(fd, &bytes[..3]), Err(Errno::EINVAL));
        assert_eq!(hpkv_put_batch(fd, bytes), Err(Errno::ENOTTY));
    }
}
