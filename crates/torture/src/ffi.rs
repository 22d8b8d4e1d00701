//! The torture program's only `unsafe` code: ioctls on buffers the kernel may write to.
//!
//! Why this is sound. Every call that lets the kernel write to user memory goes through an
//! [`Arena`]: an anonymous mapping with an inaccessible (`PROT_NONE`) page on each side, owned
//! here, plain bytes, borrowed mutably for the call. The kernel copies into user memory with
//! fault handling: touching the guard pages fails the call with EFAULT, it corrupts nothing.
//! hpkvd names the areas the kernel copies for its ioctls from `arg` upwards (`hpkv_abi`'s
//! decoder: at most `RANGE_STRUCT_SIZE + RANGE_CAPACITY_MAX` bytes, and for a readme GET
//! `value_len + 1` bytes), so an area that starts in the arena ends in it or runs into the
//! guard page after it.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

const PAGE: usize = 4096;

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

    /// The arena's bytes.
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `base .. base + len` is mapped read-write for the arena's life and only
        // reachable through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.base, self.len) }
    }

    /// `ioctl(fd, cmd, arg)` with `arg` this many bytes into the arena.
    pub fn ioctl(&mut self, fd: BorrowedFd<'_>, cmd: u32, offset: usize) -> Result<i32, Errno> {
        let arg = self.base as usize + offset.min(self.len);
        // SAFETY: `arg` is in this arena, borrowed mutably, so nothing else sees it during
        // the call; see the module comment.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::Ioctl::from(cmd), arg) };
        Errno::result(r)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_arena_is_whole_pages_and_ioctls_reach_the_kernel() {
        let mut a = Arena::new(5000);
        assert_eq!(a.bytes().len(), 8192);
        a.bytes()[8191] = 1;
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert_eq!(a.ioctl(r.as_fd(), 0x1234_5678, 0), Err(Errno::ENOTTY));
    }
}
