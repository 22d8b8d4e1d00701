//! Integer conversions whose bounds are proven once, here, instead of at every cast.
//!
//! hpkv runs on 64-bit Linux only (asserted below), so `u64` and `usize` convert both ways
//! without loss. Offsets inside a segment are stored in 32 bits; a segment is at most
//! [`SEGMENT_SIZE_MAX`](crate::format::SEGMENT_SIZE_MAX) bytes (which `Superblock::decode`
//! enforces), so [`seg_u32`] cannot fail on a value that is an offset or length inside one:
//! it asserts that, in release builds too.

// Every `u64` fits a `usize`, and the other way round.
const _: () = assert!(usize::BITS == u64::BITS);

/// `x` as a `usize`: lossless, `usize` is 64 bits.
#[allow(clippy::cast_possible_truncation)] // usize is 64 bits (asserted above)
pub(crate) const fn usize_of(x: u64) -> usize {
    x as usize
}

/// `x` as a `u64`: lossless, `usize` is 64 bits.
pub(crate) const fn u64_of(x: usize) -> u64 {
    x as u64
}

/// An offset or length inside one segment as the `u32` the format stores. Panics (a bug,
/// not a condition) if `x` cannot be one.
pub(crate) fn seg_u32(x: usize) -> u32 {
    u32::try_from(x).unwrap_or_else(|_| panic!("{x} is no offset inside a segment"))
}

/// A segment number or count as a `u32`: segment counts come from a `u32` in the superblock.
pub(crate) fn segment_u32(x: usize) -> u32 {
    u32::try_from(x).expect("segment numbers fit 32 bits (the superblock stores them so)")
}
