//! The block-device ioctls that nix offers only as `unsafe` wrappers: the engine's only
//! `unsafe` code, each block commented with the invariant it relies on.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
nix::ioctl_read_bad!(blksszget, libc::BLKSSZGET, libc::c_int);

/// The size in bytes of the block device open at `fd` (BLKGETSIZE64).
pub fn block_device_size(fd: &impl AsRawFd) -> io::Result<u64> {
    let mut size = 0u64;
    // SAFETY: `fd` is an open descriptor for the lifetime of the call and BLKGETSIZE64 writes
    // exactly one u64 through the pointer, which points at a live local.
    unsafe { blkgetsize64(fd.as_raw_fd(), &raw mut size) }.map_err(io::Error::from)?;
    Ok(size)
}

/// The logical block size of the block device open at `fd` (BLKSSZGET).
pub fn block_device_logical_block_size(fd: &impl AsRawFd) -> io::Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: as above; BLKSSZGET writes one int through the pointer.
    unsafe { blksszget(fd.as_raw_fd(), &raw mut size) }.map_err(io::Error::from)?;
    u32::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative block size"))
}
