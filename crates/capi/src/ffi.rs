//! The C functions of `uapi/hpkv_view.h`, and the one `ioctl` the library makes. Every
//! `unsafe` line of the crate is here.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, OsStr};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use hpkv_abi as abi;

use crate::{safe_get, Got, Handle};

/// `struct hpkv_counters` of the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HpkvCounters {
    /// GETs answered by the view with a value.
    pub view_hits: u64,
    /// GETs answered by the view with ENOENT.
    pub view_misses: u64,
    /// GETs the device answered.
    pub device_gets: u64,
}

fn set_errno(value: c_int) {
    // SAFETY: __errno_location returns this thread's errno, valid for the thread's lifetime.
    unsafe { *libc::__errno_location() = value };
}

/// `HPKV_IOC_GET` on `device` for `key`, into `out`.
pub(crate) fn device_safe_get(device: &File, key: &[u8], out: &mut [u8]) -> Result<Got, i32> {
    let capacity = out.len().min(abi::VALUE_MAX);
    let mut buf = safe_get::request(key, capacity);
    // SAFETY: `buf` holds a whole `struct hpkv_get` followed by `capacity` bytes, the most the
    // device writes for this request; the descriptor is open for the call.
    let r = unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            libc::c_ulong::from(abi::IOC_GET),
            buf.as_mut_ptr(),
        )
    };
    if r == 0 {
        let len = safe_get::value_len(&buf);
        let value = buf
            .get(safe_get::VALUE_AT..safe_get::VALUE_AT.saturating_add(len))
            .ok_or(libc::EIO)?;
        out[..len].copy_from_slice(value);
        return Ok(Got::Value(len));
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ERANGE) => Ok(Got::TooSmall(safe_get::value_len(&buf))),
        Some(e) => Err(e),
        None => Err(libc::EIO),
    }
}

fn boxed(handle: std::io::Result<Handle>) -> *mut Handle {
    match handle {
        Ok(h) => Box::into_raw(Box::new(h)),
        Err(e) => {
            set_errno(e.raw_os_error().unwrap_or(libc::EIO));
            std::ptr::null_mut()
        }
    }
}

fn os_str<'a>(s: *const c_char) -> Option<&'a OsStr> {
    if s.is_null() {
        return None;
    }
    // SAFETY: the header requires a NUL-terminated string that outlives the call.
    Some(OsStr::from_bytes(unsafe { CStr::from_ptr(s) }.to_bytes()))
}

/// `hpkv_open`: see the header.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn hpkv_open(name: *const c_char) -> *mut Handle {
    catch_unwind(|| boxed(Handle::open(os_str(name)))).unwrap_or_else(|_| {
        set_errno(libc::EIO);
        std::ptr::null_mut()
    })
}

/// `hpkv_open_paths`: see the header.
///
/// # Safety
/// `device_path` is a NUL-terminated string; `view_path` is NULL or one.
#[no_mangle]
pub unsafe extern "C" fn hpkv_open_paths(
    device_path: *const c_char,
    view_path: *const c_char,
) -> *mut Handle {
    let Some(device) = os_str(device_path) else {
        set_errno(libc::EINVAL);
        return std::ptr::null_mut();
    };
    let view = os_str(view_path);
    catch_unwind(|| {
        boxed(Handle::open_paths(
            std::path::Path::new(device),
            view.map(std::path::Path::new),
        ))
    })
    .unwrap_or_else(|_| {
        set_errno(libc::EIO);
        std::ptr::null_mut()
    })
}

/// `hpkv_get`: see the header.
///
/// # Safety
/// `handle` is NULL or from `hpkv_open*` and not closed; `key` points to `key_len` readable
/// bytes; `buf` to `cap` writable bytes (or is NULL with `cap` 0); `value_len` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn hpkv_get(
    handle: *const Handle,
    key: *const c_void,
    key_len: usize,
    buf: *mut c_void,
    cap: usize,
    value_len: *mut usize,
) -> c_int {
    if handle.is_null() || key.is_null() || value_len.is_null() || (buf.is_null() && cap > 0) {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: the caller's contract above: a live handle, key_len readable bytes at key, cap
    // writable bytes at buf (an empty slice when cap is 0: a dangling but aligned pointer).
    let (h, key, out) = unsafe {
        let out: &mut [u8] = if cap == 0 {
            &mut []
        } else {
            std::slice::from_raw_parts_mut(buf.cast::<u8>(), cap)
        };
        (
            &*handle,
            std::slice::from_raw_parts(key.cast::<u8>(), key_len),
            out,
        )
    };
    match catch_unwind(AssertUnwindSafe(|| h.get(key, out))) {
        Ok(Ok(Got::Value(len))) => {
            // SAFETY: checked non-NULL above; the caller gave it for writing.
            unsafe { *value_len = len };
            0
        }
        Ok(Ok(Got::TooSmall(len))) => {
            // SAFETY: as above.
            unsafe { *value_len = len };
            set_errno(libc::ERANGE);
            -1
        }
        Ok(Err(e)) => {
            set_errno(e);
            -1
        }
        Err(_) => {
            set_errno(libc::EIO);
            -1
        }
    }
}

/// `hpkv_view_live`: see the header.
///
/// # Safety
/// `handle` is NULL or from `hpkv_open*` and not closed.
#[no_mangle]
pub unsafe extern "C" fn hpkv_view_live(handle: *const Handle) -> c_int {
    if handle.is_null() {
        return 0;
    }
    // SAFETY: a live handle (the caller's contract).
    let h = unsafe { &*handle };
    c_int::from(catch_unwind(AssertUnwindSafe(|| h.view_live())).unwrap_or(false))
}

/// `hpkv_counters`: see the header.
///
/// # Safety
/// `handle` is NULL or from `hpkv_open*` and not closed; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hpkv_counters(handle: *const Handle, out: *mut HpkvCounters) {
    if handle.is_null() || out.is_null() {
        return;
    }
    // SAFETY: a live handle and a writable struct (the caller's contract).
    let (h, out) = unsafe { (&*handle, &mut *out) };
    let c = h.counters();
    *out = HpkvCounters {
        view_hits: c.view_hits.load(Ordering::Relaxed),
        view_misses: c.view_misses.load(Ordering::Relaxed),
        device_gets: c.device_gets.load(Ordering::Relaxed),
    };
}

/// `hpkv_close`: see the header.
///
/// # Safety
/// `handle` is NULL or from `hpkv_open*` and not closed, and no other thread uses it.
#[no_mangle]
pub unsafe extern "C" fn hpkv_close(handle: *mut Handle) {
    if !handle.is_null() {
        // SAFETY: made by Box::into_raw in hpkv_open*, closed once (the caller's contract).
        drop(unsafe { Box::from_raw(handle) });
    }
}
