//! The key hash, seeded per view (the seed is in the header).
//!
//! Writer and readers must compute the same function: it is part of the layout version. It
//! reads the key 8 bytes at a time and mixes with 64x64->128-bit multiplies folded to 64 bits,
//! which spreads every input bit over the whole output. It is not a keyed PRF: anyone who can
//! read the view can read its seed. A writer faced with keys that collide on purpose still
//! stays within its bounds (a key it cannot place within [`crate::PROBE_SLOTS_MAX`] slots makes
//! the table incomplete, and readers fall back to the device).

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The 64-bit hash of `key` under `seed`.
#[inline]
pub(crate) fn hash(seed: u64, key: &[u8]) -> u64 {
    let mut h = seed ^ fold(key.len() as u64 ^ P0, seed ^ P1);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        h = fold(word ^ P1, h ^ P2);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        h = fold(u64::from_le_bytes(word) ^ P2, h ^ P3);
    }
    fold(h ^ P0, seed ^ P3 ^ key.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn depends_on_seed_length_and_every_byte() {
        let key = b"user:000012345678";
        let h = hash(7, key);
        assert_ne!(h, hash(8, key), "seed");
        assert_ne!(
            hash(7, b"a"),
            hash(7, b"a\0"),
            "a trailing zero byte changes the length"
        );
        for i in 0..key.len() {
            let mut k = *key;
            k[i] ^= 1;
            assert_ne!(hash(7, &k), h, "byte {i}");
        }
    }

    #[test]
    #[allow(clippy::cast_precision_loss)] // ratios of small counts
    fn sequential_keys_spread_over_homes_and_tags() {
        // 100k sequential keys into 2^17 buckets by the high bits (as homes are chosen) and
        // by the low bits (as tags are): both close to what random hashes give.
        let n = 100_000u32;
        let buckets = 1u64 << 17;
        let mut high = vec![0u32; buckets as usize];
        let mut tags = HashSet::new();
        for i in 0..n {
            let h = hash(0x1234, format!("key{i:08}").as_bytes());
            high[((u128::from(h) * u128::from(buckets)) >> 64) as usize] += 1;
            tags.insert(h as u32);
        }
        let max = *high.iter().max().unwrap();
        assert!(max <= 10, "fullest bucket {max}");
        let used = high.iter().filter(|&&c| c > 0).count() as f64 / buckets as f64;
        // Random: 1 - e^(-100000/131072) = 0.534.
        assert!((0.51..0.56).contains(&used), "buckets used {used}");
        assert!(
            tags.len() >= n as usize - 5,
            "tag collisions {}",
            n as usize - tags.len()
        );
    }
}
