//! Little-endian integers at byte offsets, for the on-disk format: every integer that hpkv
//! writes to the device is little-endian. The callers check lengths first; an out-of-range
//! offset panics. (The ABI has its own codec in `hpkv-abi`: the two layers share no types.)

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
