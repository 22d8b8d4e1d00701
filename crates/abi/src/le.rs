//! The little-endian reader and writer of the ABI's layouts: every integer of `uapi/hpkv.h`
//! is little-endian at a fixed offset (taken with `offset_of!` on [`crate::uapi`]).
//!
//! Two families: the `*_at` readers and `set_*` writers take an offset the caller has checked
//! (the layouts are fixed-size: a short buffer is a bug, and they panic on it), the `get_*`
//! readers give `None` for an offset past the end (for bytes that came from elsewhere).
//!
//! ```
//! use hpkv_abi::le;
//! let mut b = [0u8; 10];
//! le::set_u16(&mut b, 0, 513);
//! le::set_u64(&mut b, 2, 1 << 40);
//! assert_eq!((le::u16_at(&b, 0), le::u64_at(&b, 2)), (513, 1 << 40));
//! assert_eq!(le::get_u64(&b, 3), None);
//! ```

/// The `N` bytes at `at`, or `None` when `b` ends before them.
fn array_at<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    b.get(at..end)?.try_into().ok()
}

/// The `u16` at `at`, or `None` when `b` ends before it.
pub fn get_u16(b: &[u8], at: usize) -> Option<u16> {
    array_at(b, at).map(u16::from_le_bytes)
}

/// The `u32` at `at`, or `None` when `b` ends before it.
pub fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    array_at(b, at).map(u32::from_le_bytes)
}

/// The `u64` at `at`, or `None` when `b` ends before it.
pub fn get_u64(b: &[u8], at: usize) -> Option<u64> {
    array_at(b, at).map(u64::from_le_bytes)
}

/// The `u16` at `at`; panics when `b` ends before it (the caller checked the length).
pub fn u16_at(b: &[u8], at: usize) -> u16 {
    get_u16(b, at).expect("a u16 inside the buffer")
}

/// The `u32` at `at`; panics when `b` ends before it (the caller checked the length).
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    get_u32(b, at).expect("a u32 inside the buffer")
}

/// The `u64` at `at`; panics when `b` ends before it (the caller checked the length).
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    get_u64(b, at).expect("a u64 inside the buffer")
}

/// Writes `v` at `at`; panics when `b` ends before its last byte.
pub fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// Writes `v` at `at`; panics when `b` ends before its last byte.
pub fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes `v` at `at`; panics when `b` ends before its last byte.
pub fn set_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes_and_refuses_short_buffers() {
        let mut b = [0u8; 14];
        set_u16(&mut b, 0, 0xbeef);
        set_u32(&mut b, 2, 0xdead_beef);
        set_u64(&mut b, 6, 0x0102_0304_0506_0708);
        assert_eq!(b[..2], [0xef, 0xbe], "little-endian");
        assert_eq!(u16_at(&b, 0), 0xbeef);
        assert_eq!(u32_at(&b, 2), 0xdead_beef);
        assert_eq!(u64_at(&b, 6), 0x0102_0304_0506_0708);
        assert_eq!(get_u64(&b, 6), Some(0x0102_0304_0506_0708));
        assert_eq!(get_u64(&b, 7), None);
        assert_eq!(get_u16(&b, usize::MAX), None, "no overflow");
        assert_eq!(get_u32(&b, 11), None);
    }
}
