//! The torture program's only `unsafe` code: raw `ioctl()`, `write()` and `read()` with the
//! odd pointers that bad input needs, the device-mapper control ioctl, and a signal handler.
//!
//! Why this is sound. Every call that lets the kernel write to user memory goes through an
//! [`Arena`]: an anonymous mapping with an inaccessible (`PROT_NONE`) page on each side. A
//! [`Target`] names either an address inside the arena (owned here, plain bytes, borrowed
//! mutably for the call) or an address where nothing can be mapped: NULL and the page under
//! `mmap_min_addr`, a guard page, a kernel address. The kernel copies out of and into user
//! memory with fault handling: touching an unmapped or inaccessible address fails the call
//! with EFAULT, it corrupts nothing. hpkvd names the areas the kernel copies for its ioctls
//! from `arg` upwards (`hpkv_abi`'s decoder: at most `RANGE_STRUCT_SIZE + RANGE_CAPACITY_MAX`
//! bytes, and for a readme GET `value_len + 1` bytes; FIGETBSZ, answered by the kernel,
//! writes 4 bytes at `arg`), so an area that starts in the arena ends in it or runs into the
//! guard page after it.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

const PAGE: usize = 4096;
/// Addresses below this are never mapped (the kernel's `vm.mmap_min_addr` is at least a page).
const UNMAPPABLE_BELOW: usize = PAGE;
/// A kernel address: never accessible from user space.
const KERNEL_ADDRESS: usize = 0xffff_8880_0000_0000;

/// Where a pointer argument points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Null,
    /// Below the lowest mappable address (taken modulo a page, never 0).
    Low(usize),
    Kernel,
    /// Into the guard page after the arena, this many bytes in (modulo a page).
    Guard(usize),
    /// This many bytes into the arena (at most its length: the guard page then).
    At(usize),
}

/// Pages of memory the kernel may write to during a call, between two guard pages.
pub struct Arena {
    base: *mut u8,
    len: usize,
}

// SAFETY: the arena is plain memory owned by this value; moving it to another thread moves
// the ownership with it (no thread-local state).
unsafe impl Send for Arena {}

impl Arena {
    /// An arena of `len` bytes (rounded up to pages), zeroed.
    pub fn new(len: usize) -> Arena {
        let len = len.div_ceil(PAGE) * PAGE;
        let total = len + 2 * PAGE;
        // SAFETY: an anonymous private mapping at an address the kernel picks; the result is
        // checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(
            map != libc::MAP_FAILED,
            "mmap of {total} bytes: {}",
            Errno::last()
        );
        let base = map.cast::<u8>().wrapping_add(PAGE);
        // SAFETY: `base .. base + len` lies inside the mapping just made (one page in).
        let r = unsafe { libc::mprotect(base.cast(), len, libc::PROT_READ | libc::PROT_WRITE) };
        assert_eq!(r, 0, "mprotect: {}", Errno::last());
        Arena { base, len }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The arena's bytes.
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `base .. base + len` is mapped read-write for the arena's life and only
        // reachable through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.base, self.len) }
    }

    fn addr(&self, t: Target) -> usize {
        match t {
            Target::Null => 0,
            Target::Low(a) => (a % UNMAPPABLE_BELOW).max(1),
            Target::Kernel => KERNEL_ADDRESS,
            Target::Guard(off) => self.base as usize + self.len + off % PAGE,
            Target::At(off) => self.base as usize + off.min(self.len),
        }
    }

    /// `ioctl(fd, cmd, target)`.
    pub fn ioctl(&mut self, fd: BorrowedFd<'_>, cmd: u32, t: Target) -> Result<i32, Errno> {
        let arg = self.addr(t);
        // SAFETY: `arg` is in this arena (borrowed mutably, so nothing else sees it during
        // the call) or at an address where nothing is mapped; see the module comment.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::Ioctl::from(cmd), arg) };
        Errno::result(r)
    }

    /// `write(fd, target, len)`: the kernel only reads there.
    pub fn write(&mut self, fd: BorrowedFd<'_>, t: Target, len: usize) -> Result<usize, Errno> {
        let addr = self.addr(t);
        // SAFETY: the kernel reads `len` bytes at `addr` with fault handling (EFAULT where
        // nothing is mapped); reading changes no memory.
        let r = unsafe { libc::write(fd.as_raw_fd(), addr as *const libc::c_void, len) };
        Errno::result(r).map(|n| usize::try_from(n).expect("non-negative"))
    }

    /// `read(fd, target, len)`: the kernel writes at most `len` bytes at `target`.
    pub fn read(&mut self, fd: BorrowedFd<'_>, t: Target, len: usize) -> Result<usize, Errno> {
        let addr = self.addr(t);
        // SAFETY: the kernel writes at `addr`, inside this arena (borrowed mutably) up to its
        // guard page, or faults (EFAULT) where nothing is mapped.
        let r = unsafe { libc::read(fd.as_raw_fd(), addr as *mut libc::c_void, len) };
        Errno::result(r).map(|n| usize::try_from(n).expect("non-negative"))
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; no reference into it outlives
        // `self`.
        unsafe {
            libc::munmap(self.base.wrapping_sub(PAGE).cast(), self.len + 2 * PAGE);
        }
    }
}

/// The device-mapper control ioctl `_IOWR(0xfd, nr, struct dm_ioctl)` on `buf`, which holds
/// a `struct dm_ioctl` whose `data_size` (bytes 12..16) is `buf.len()`.
pub fn dm_ioctl(control: BorrowedFd<'_>, nr: u8, buf: &mut [u8]) -> Result<(), Errno> {
    const DM_IOCTL_SIZE: usize = 312;
    let data_size = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes"));
    assert_eq!(
        data_size as usize,
        buf.len(),
        "data_size must be the buffer's length"
    );
    assert!(buf.len() >= DM_IOCTL_SIZE, "a whole struct dm_ioctl");
    let cmd = nix::request_code_readwrite!(0xfd, nr, DM_IOCTL_SIZE);
    // SAFETY: the kernel reads and writes at most `data_size` bytes at `buf` (checked equal
    // to its length), which is borrowed mutably for the call.
    let r = unsafe { libc::ioctl(control.as_raw_fd(), cmd, buf.as_mut_ptr()) };
    Errno::result(r).map(drop)
}

extern "C" fn ignore_signal(_: c_int) {}

/// Installs a handler that does nothing for `signal`, with or without `SA_RESTART`: the
/// signal then interrupts blocking calls instead of ending the process.
pub fn catch_signal(signal: nix::sys::signal::Signal, restart: bool) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let flags = if restart {
        SaFlags::SA_RESTART
    } else {
        SaFlags::empty()
    };
    let action = SigAction::new(SigHandler::Handler(ignore_signal), flags, SigSet::empty());
    // SAFETY: the handler does nothing, so it is async-signal-safe, and it replaces no
    // handler anything relies on.
    unsafe { sigaction(signal, &action) }.expect("sigaction");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn bad_targets_fault_and_the_arena_takes_reads() {
        let mut a = Arena::new(5000);
        assert_eq!(a.len(), 8192);
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&w, b"hello").unwrap();
        assert_eq!(a.read(r.as_fd(), Target::Guard(0), 5), Err(Errno::EFAULT));
        assert_eq!(a.read(r.as_fd(), Target::At(8190), 2), Ok(2));
        assert_eq!(&a.bytes()[8190..], b"he");
        for t in [
            Target::Null,
            Target::Low(17),
            Target::Kernel,
            Target::Guard(3),
        ] {
            assert_eq!(a.write(w.as_fd(), t, 4), Err(Errno::EFAULT), "{t:?}");
        }
        a.bytes()[..3].copy_from_slice(b"abc");
        assert_eq!(a.write(w.as_fd(), Target::At(0), 3), Ok(3));
        assert_eq!(
            a.ioctl(r.as_fd(), 0x1234_5678, Target::At(0)),
            Err(Errno::ENOTTY)
        );
    }
}
