//! `libhpkv_preload.so`: hpkvd's shared view under unmodified programs.
//!
//! Loaded with `LD_PRELOAD`, the library stands between a dynamically linked program and the
//! C library's `ioctl`, `open` and friends:
//!
//! - It **tracks the files the program opens on an hpkv node**: after every `open`,
//!   `openat`, `fopen` (and their 64-bit, fortified and `creat` variants) it checks with
//!   `fstat` whether the new descriptor is a character device with a view ([`nodes`]), and
//!   notes it in a table of descriptors ([`fds`]). `close`, `close_range`, `closefrom`,
//!   `dup`, `dup2`, `dup3`, `fclose`, `freopen` and `fcloseall` keep the table right.
//! - It **answers GET ioctls on those descriptors from the view** ([`get`]): the module's
//!   command 0 in the daemon's profile (`readme` or `v1.3`) and the safe GET extension
//!   `HPKV_IOC_GET`, writing exactly the bytes the device writes, with the same return value
//!   and errno. Whatever the view cannot vouch for goes to the real `ioctl`: a value not in
//!   the view, a view that is missing, stale or dead, an invalid key, a pointer the library
//!   cannot prove to be readable and writable ([`memmap`]), any other request, and any
//!   descriptor it did not see opened.
//! - It **serves `/proc/hpkv_stats`** ([`stats`]): opening it, when the kernel has no such
//!   file, returns a read-only file holding the module's three lines for the store named by
//!   `HPKV_NAME` (default `hpkv`).
//!
//! Every `unsafe` line is in `ffi.rs`: the exported functions, the calls to the next
//! definitions (`dlsym(RTLD_NEXT)`), and the copies to and from the caller's memory. The other
//! modules are safe Rust over atomics; none of them blocks, allocates in the GET path once a
//! thread's scratch buffer has grown, or panics on bad input (and `ffi.rs` catches any panic
//! and falls back to the real function rather than unwind into C).
#![deny(unsafe_code)]

pub mod fds;
pub mod get;
pub mod memmap;
pub mod nodes;
pub mod stats;

#[cfg(not(test))]
mod ffi;
