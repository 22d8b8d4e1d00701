//! Every `unsafe` line of the crate: the file mapping, atomic access to it, and the coarse clock.
//!
//! The view file is shared between one writer process and any number of reader processes, so
//! Rust's usual guarantee (nobody else mutates what you can see through `&`) does not hold for
//! it. This module therefore never hands out a `&[u8]` or a `&T` over the mapping: every access
//! is one atomic load or store of an aligned `u32` or `u64`, bounds-checked against the
//! mapping's length on every call. Concurrent atomic accesses of the same size are not a data
//! race in Rust's memory model (the C++20 model), so a reader copying bytes that the writer is
//! changing reads *some* value of each word, never undefined behaviour; the seqlocks built on
//! top (see `reader.rs`) decide whether what was copied may be used.
//!
//! Readers map the file read-only. Rust documents (`core::sync::atomic`, "Atomic accesses to
//! read-only memory") that `Relaxed` loads of at most 8 bytes on `x86_64` and `aarch64` work on
//! read-only memory; `Acquire` loads are not promised to. So every load here is `Relaxed`, and
//! callers that need acquire ordering follow the load with `fence(Ordering::Acquire)`, which is
//! what the same documentation recommends.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(target_pointer_width = "64"))]
compile_error!("hpkv-view assumes 64-bit pointers (usize and u64 convert without loss)");

/// A shared mapping of a whole view file.
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: a `Mapping` is an address range of shared memory that stays mapped until `drop`; all
// access to it goes through the atomic operations below, which are safe to perform from any
// thread at the same time. No `&mut` to the memory is ever created.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`: every method takes `&self` and touches the memory only atomically.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file` from offset 0, shared; read-only unless `writable`.
    /// The caller has checked that the file is at least `len` bytes long.
    pub fn map(file: &File, len: usize, writable: bool) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a null hint lets the kernel choose a fresh address range, so the mapping
        // aliases no existing Rust object; `file` is an open descriptor for the call's duration;
        // the result is checked for MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping {
            base,
            len,
            writable,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The `u64` at `offset`, or `None` if it is unaligned or not wholly inside the mapping.
    fn word64(&self, offset: usize) -> Option<&AtomicU64> {
        self.words64(offset, 1).map(|w| &w[0])
    }

    /// The `count` `u64`s from `offset` on, or `None` if `offset` is unaligned or the range is
    /// not wholly inside the mapping. One bounds check for a whole copy: under emulation a
    /// check per word cost a third of a value's copy.
    // The alignment the lint cannot see is checked: `base` is page-aligned, `offset % 8 == 0`.
    #[allow(clippy::cast_ptr_alignment)]
    fn words64(&self, offset: usize, count: usize) -> Option<&[AtomicU64]> {
        let end = offset.checked_add(count.checked_mul(8)?)?;
        if offset % 8 != 0 || end > self.len {
            return None;
        }
        // SAFETY: [offset, end) lies inside the mapping (checked above), which stays mapped
        // for as long as `&self` lives; mmap returns page-aligned memory and `offset` is a
        // multiple of 8, so every cell is aligned for `AtomicU64`, which has the size and
        // alignment of `u64`. Every process touches this memory only with atomic operations of
        // this size, so shared references to the atomic cells are sound; on a read-only mapping
        // only `Relaxed` loads are ever issued through them (`load64`, `copy_out`), which Rust
        // documents as valid on read-only memory for 8-byte atomics on 64-bit targets.
        Some(unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().add(offset).cast::<AtomicU64>(), count)
        })
    }

    /// The `u32` at `offset`, or `None` if it is unaligned or not wholly inside the mapping.
    // As in `word64`: `base` is page-aligned and `offset % 4 == 0`.
    #[allow(clippy::cast_ptr_alignment)]
    fn word32(&self, offset: usize) -> Option<&AtomicU32> {
        if offset % 4 != 0 || offset.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: as in `word64`, for a 4-aligned 4-byte cell inside the mapping.
        Some(unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU32>() })
    }

    /// A writable word: panics (a writer bug) if the mapping is read-only or `offset` is bad.
    fn word64_mut(&self, offset: usize) -> &AtomicU64 {
        assert!(self.writable, "store to a read-only view mapping");
        self.word64(offset)
            .unwrap_or_else(|| panic!("store outside the view mapping: offset {offset}"))
    }

    fn word32_mut(&self, offset: usize) -> &AtomicU32 {
        assert!(self.writable, "store to a read-only view mapping");
        self.word32(offset)
            .unwrap_or_else(|| panic!("store outside the view mapping: offset {offset}"))
    }

    /// A `Relaxed` load (the only kind allowed on read-only memory).
    #[inline]
    pub fn load64(&self, offset: usize) -> Option<u64> {
        self.word64(offset).map(|w| w.load(Ordering::Relaxed))
    }

    /// A `Relaxed` load.
    #[inline]
    pub fn load32(&self, offset: usize) -> Option<u32> {
        self.word32(offset).map(|w| w.load(Ordering::Relaxed))
    }

    pub fn store64(&self, offset: usize, value: u64, order: Ordering) {
        self.word64_mut(offset).store(value, order);
    }

    pub fn store32(&self, offset: usize, value: u32, order: Ordering) {
        self.word32_mut(offset).store(value, order);
    }

    /// Atomically replaces the `u64` at `offset` with `f(old)`; returns the new value.
    pub fn update64(&self, offset: usize, f: impl Fn(u64) -> u64) -> u64 {
        let word = self.word64_mut(offset);
        let mut old = word.load(Ordering::Relaxed);
        loop {
            let new = f(old);
            match word.compare_exchange_weak(old, new, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return new,
                Err(now) => old = now,
            }
        }
    }

    /// Whether the `key.len()` bytes at `offset` (8-aligned) equal `key`; `None` if the range
    /// is not inside the mapping. Words are loaded `Relaxed`: the caller validates a seqlock.
    #[inline]
    pub fn bytes_eq(&self, offset: usize, key: &[u8]) -> Option<bool> {
        let end = offset.checked_add(key.len().next_multiple_of(8))?;
        if offset % 8 != 0 || end > self.len {
            return None;
        }
        let mut chunks = key.chunks_exact(8);
        let mut at = offset;
        for chunk in &mut chunks {
            let word = self.load64(at)?.to_ne_bytes();
            if word != chunk {
                return Some(false);
            }
            at += 8;
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let word = self.load64(at)?.to_ne_bytes();
            if word[..tail.len()] != *tail {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Replaces `dst` with the `len` bytes at `offset` (8-aligned), loaded word by word with
    /// `Relaxed` loads; `false` if the range (rounded up to whole words) is not inside the
    /// mapping. Does not allocate when `dst` already has a capacity of `len`.
    #[inline]
    pub fn copy_out(&self, offset: usize, len: usize, dst: &mut Vec<u8>) -> bool {
        let Some(words) = self.words64(offset, len.div_ceil(8)) else {
            return false;
        };
        dst.clear();
        dst.resize(len, 0);
        let mut chunks = dst.chunks_exact_mut(8);
        for (chunk, word) in (&mut chunks).zip(words) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        let tail = chunks.into_remainder();
        if let Some(last) = words.last().filter(|_| !tail.is_empty()) {
            let n = tail.len();
            tail.copy_from_slice(&last.load(Ordering::Relaxed).to_ne_bytes()[..n]);
        }
        true
    }

    /// Writes `bytes` at `offset` (8-aligned) word by word with `Relaxed` stores, padding the
    /// last word with zeros. The caller orders these stores with a seqlock.
    pub fn copy_in(&self, offset: usize, bytes: &[u8]) {
        assert!(self.writable, "store to a read-only view mapping");
        let words = self
            .words64(offset, bytes.len().div_ceil(8))
            .unwrap_or_else(|| panic!("copy outside the view mapping: offset {offset}"));
        let full = bytes.len() / 8;
        for (i, word) in words[..full].iter().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            word.store(u64::from_ne_bytes(w), Ordering::Relaxed);
        }
        let tail = &bytes[full * 8..];
        if let Some(last) = words.get(full).filter(|_| !tail.is_empty()) {
            let mut w = [0u8; 8];
            w[..tail.len()].copy_from_slice(tail);
            last.store(u64::from_ne_bytes(w), Ordering::Relaxed);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` describe exactly the range `mmap` returned, and no reference
        // into it outlives `self` (every accessor borrows `self`). munmap of a valid mapping
        // cannot fail in a way that leaves it half mapped, so its result is not needed.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds, or `None` if the clock cannot be read.
///
/// glibc serves this clock from the vDSO (`lib/vdso/gettimeofday.c`, the `VDSO_COARSE` branch
/// of `__cvdso_clock_gettime_common`: it copies the timekeeper's last tick from the vDSO data
/// page under its sequence counter, with no hardware counter read and no system call). See
/// DESIGN.md for the measurement that confirms it on this host.
pub(crate) fn monotonic_coarse_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec` owned by this frame, and clock_gettime
    // writes only to it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn mapped(len: usize, writable: bool) -> (tempfile::NamedTempFile, Mapping) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![0u8; len]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .open(f.path())
            .unwrap();
        let m = Mapping::map(&file, len, writable).unwrap();
        (f, m)
    }

    #[test]
    fn every_access_is_bounds_checked() {
        let (_f, m) = mapped(4096, true);
        assert_eq!(m.load64(4088), Some(0));
        assert_eq!(m.load64(4089), None, "unaligned");
        assert_eq!(m.load64(4096), None, "past the end");
        assert_eq!(m.load64(usize::MAX - 7), None, "overflowing offset");
        assert_eq!(m.load32(4092), Some(0));
        assert_eq!(m.load32(4094), None);
        assert_eq!(
            m.bytes_eq(4088, &[0; 9]),
            None,
            "the key's padded span passes the end"
        );
        let mut v = Vec::new();
        assert!(!m.copy_out(4088, 9, &mut v));
        assert!(m.copy_out(4088, 8, &mut v));
        assert!(!m.copy_out(usize::MAX - 7, 1, &mut v));
    }

    #[test]
    fn copies_round_trip_and_compare_exactly() {
        let (_f, m) = mapped(4096, true);
        let bytes: Vec<u8> = (0..=20u8).collect();
        m.copy_in(64, &bytes);
        let mut out = Vec::new();
        assert!(m.copy_out(64, bytes.len(), &mut out));
        assert_eq!(out, bytes);
        assert_eq!(m.bytes_eq(64, &bytes), Some(true));
        assert_eq!(m.bytes_eq(64, &bytes[..20]), Some(true), "a prefix matches");
        let mut other = bytes.clone();
        other[20] = 99;
        assert_eq!(
            m.bytes_eq(64, &other),
            Some(false),
            "the last partial word counts"
        );
        // Padding after the copy is zero.
        assert_eq!(m.load64(64 + 16).unwrap().to_ne_bytes()[5..], [0, 0, 0]);
    }

    #[test]
    #[should_panic(expected = "read-only")]
    fn a_read_only_mapping_refuses_stores() {
        let (_f, m) = mapped(4096, false);
        m.store64(0, 1, Ordering::Relaxed);
    }

    #[test]
    fn the_coarse_clock_moves_forward() {
        let a = monotonic_coarse_ns().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = monotonic_coarse_ns().unwrap();
        assert!(b > a, "{a} then {b}");
    }
}
