//! The suite's only `unsafe` code: raw ioctls with the pointers the suite probes the daemon
//! with (NULL, unmapped memory, a key at the very end of a mapping), and the two-page mapping
//! that makes such an end. `tests/lint-policy.sh` lists this file as one that may allow
//! `unsafe_code`.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::fs::File;
use std::os::fd::AsRawFd;

/// `cmd` as libc's `ioctl` takes it: the same 32 bits, in a `c_ulong` with glibc and a
/// `c_int` with musl.
#[allow(
    clippy::cast_lossless,
    clippy::cast_possible_wrap,
    reason = "the request type differs between C libraries; the bits are the same"
)]
fn request(cmd: u32) -> libc::Ioctl {
    cmd as libc::Ioctl
}

/// `ioctl(fd, cmd, arg)` with a raw argument: the return value, or the errno.
pub fn ioctl(f: &File, cmd: u32, arg: *mut c_void) -> Result<i32, i32> {
    // SAFETY: test code probing the daemon: every caller passes a pointer that is either
    // valid for the command's layout or deliberately invalid (NULL, PROT_NONE) to check the
    // errno; the kernel validates every access to the caller's memory, and hpkvd writes
    // only the areas `hpkv_abi::decode_ioctl` names, which the callers size for.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), request(cmd), arg) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    } else {
        Ok(r)
    }
}

/// The size of each of the two pages of [`Guarded`].
const PAGE: usize = 4096;

/// Two pages, the second `PROT_NONE`: the first page's last bytes end mapped memory.
pub struct Guarded {
    base: *mut u8,
}

impl Guarded {
    pub fn new() -> Guarded {
        // SAFETY: an anonymous private mapping of our own; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap of two pages");
        let base = p.cast::<u8>();
        // SAFETY: the second page of the mapping just made; `base + PAGE` is inside it.
        let protected = unsafe { libc::mprotect(base.add(PAGE).cast(), PAGE, libc::PROT_NONE) };
        assert_eq!(protected, 0, "mprotect of the second page");
        Guarded { base }
    }

    /// The last `n` bytes of the readable page.
    pub fn tail(&mut self, n: usize) -> &mut [u8] {
        assert!(n <= PAGE);
        // SAFETY: the first page is ours, readable and writable, and `&mut self` makes the
        // slice the only reference into it.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(PAGE - n), n) }
    }

    /// The first byte of the `PROT_NONE` page.
    pub fn unmapped(&self) -> *mut c_void {
        // SAFETY: pointer arithmetic inside our own mapping.
        unsafe { self.base.add(PAGE).cast() }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: our own mapping, made in `new`; nothing refers to it any more.
        unsafe { libc::munmap(self.base.cast(), 2 * PAGE) };
    }
}
