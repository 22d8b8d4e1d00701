//! Keys and self-describing values of the torture workloads.
//!
//! A key names its writer and its index: `t<writer hex>.<index, 4 digits>`, padded with a
//! filler that depends on both to one of several lengths (up to 511 bytes, the most
//! `write()` and the readme GET take, and 512, the most INSERT takes). Keys never hold `:`,
//! `\n` or NUL, so that the listing `read()` can be parsed.
//!
//! A value is a sequence of *segments*, one per operation that wrote it: a put writes one,
//! each append adds one. A segment is a 27-byte header `[wwsssssssssslllllcccccccc]` (writer,
//! operation sequence number, total segment length, all hex, and a CRC32C) then a printable
//! payload derived from (writer, sequence number). The CRC covers the key too, so a torn value,
//! a value of another key or writer, or stale bytes are told apart from what the log says was
//! written. Values hold no `\n`.

use crate::rng::{mix, Rng};

/// Writers at most (one hex digit in the key).
pub const WRITERS_MAX: u16 = 16;
/// Keys per writer at most (four digits in the key).
pub const KEYS_MAX: u32 = 10_000;
/// The length of a segment header.
pub const SEG_HEADER_LEN: usize = 27;
/// The length of the key prefix `tW.IIII`.
const KEY_PREFIX_LEN: usize = 7;

/// One operation's part of a value: the writer is the key's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seg {
    pub seq: u64,
    pub len: u32,
}

/// How a key may be used: a 512-byte key cannot go through `write()`, the readme GET or the
/// readme DELETE (511 bytes at most there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyClass {
    /// Up to 511 bytes: every path.
    String,
    /// 512 bytes: INSERT, `PARTIAL_UPDATE`, the safe GET and RANGE only.
    Binary,
}

/// The length of key `idx` (of any writer).
fn key_len(idx: u32) -> usize {
    let i = idx as usize;
    match idx % 8 {
        0 => hpkv_abi::STR_KEY_MAX,
        1 => hpkv_abi::KEY_MAX,
        2 => 100 + (i * 37) % 300,
        _ => KEY_PREFIX_LEN + (i * 13) % 40,
    }
}

pub fn key_class(idx: u32) -> KeyClass {
    if key_len(idx) > hpkv_abi::STR_KEY_MAX {
        KeyClass::Binary
    } else {
        KeyClass::String
    }
}

/// The key of writer `writer`, index `idx`.
pub fn key(writer: u16, idx: u32) -> Vec<u8> {
    assert!(writer < WRITERS_MAX && idx < KEYS_MAX, "key {writer}/{idx}");
    let mut k = format!("t{writer:x}.{idx:04}").into_bytes();
    let len = key_len(idx);
    if len > KEY_PREFIX_LEN {
        k.push(b'-');
        let mut rng = Rng::derive(u64::from(writer), &[u64::from(idx), 0x6b]);
        while k.len() < len {
            k.push(b'a' + u8::try_from(rng.below(26)).expect("below 26"));
        }
    }
    k
}

/// The (writer, index) a torture key names, if it is one exactly.
pub fn parse_key(k: &[u8]) -> Option<(u16, u32)> {
    if k.len() < KEY_PREFIX_LEN || k[0] != b't' || k[2] != b'.' {
        return None;
    }
    let writer = u16::from_str_radix(std::str::from_utf8(&k[1..2]).ok()?, 16).ok()?;
    let digits = std::str::from_utf8(&k[3..7]).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let idx: u32 = digits.parse().ok()?;
    (key(writer, idx) == k).then_some((writer, idx))
}

fn payload_byte(rng: &mut Rng) -> u8 {
    // Printable ASCII, space to '~': no '\n', so the listing stays one line per record.
    b' ' + u8::try_from(rng.below(95)).expect("below 95")
}

fn seg_crc(key: &[u8], fields: &[u8], payload: &[u8]) -> u32 {
    let c = crc32c::crc32c(key);
    let c = crc32c::crc32c_append(c, fields);
    crc32c::crc32c_append(c, payload)
}

/// The bytes of segment `seg` of writer `writer` under `key`.
pub fn segment(key: &[u8], writer: u16, seg: Seg) -> Vec<u8> {
    let len = seg.len as usize;
    assert!(len >= SEG_HEADER_LEN, "segment of {len} bytes");
    let fields = format!("{writer:02x}{:010x}{:05x}", seg.seq, seg.len);
    let mut rng = Rng::new(mix(&[u64::from(writer), seg.seq, u64::from(seg.len)]));
    let payload: Vec<u8> = (0..len - SEG_HEADER_LEN)
        .map(|_| payload_byte(&mut rng))
        .collect();
    let crc = seg_crc(key, fields.as_bytes(), &payload);
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    out.extend_from_slice(fields.as_bytes());
    out.extend_from_slice(format!("{crc:08x}").as_bytes());
    out.push(b']');
    out.extend_from_slice(&payload);
    debug_assert_eq!(out.len(), len);
    out
}

/// The bytes of a value made of `segs`.
#[cfg(test)]
pub fn value(key: &[u8], writer: u16, segs: &[Seg]) -> Vec<u8> {
    let mut out = Vec::new();
    for &s in segs {
        out.extend_from_slice(&segment(key, writer, s));
    }
    out
}

fn hex(b: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok()
}

/// Parses a value read under `key` of `writer` into its segments, checking each one's
/// header, length and CRC. The error says where and what is wrong (a torn or mixed value).
pub fn parse_value(key: &[u8], writer: u16, v: &[u8]) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    let mut at = 0;
    while at < v.len() {
        let rest = &v[at..];
        let bad = |what: &str| {
            let shown = String::from_utf8_lossy(&rest[..rest.len().min(SEG_HEADER_LEN)]);
            Err(format!(
                "value of {} bytes, segment {} at byte {at}: {what} ({shown:?})",
                v.len(),
                segs.len()
            ))
        };
        if rest.len() < SEG_HEADER_LEN || rest[0] != b'[' || rest[SEG_HEADER_LEN - 1] != b']' {
            return bad("no segment header");
        }
        let (Some(w), Some(seq), Some(len), Some(crc)) = (
            hex(&rest[1..3]),
            hex(&rest[3..13]),
            hex(&rest[13..18]),
            hex(&rest[18..26]),
        ) else {
            return bad("header fields are not hex");
        };
        if w != u64::from(writer) {
            return bad(&format!(
                "written by writer {w}, the key is writer {writer}'s"
            ));
        }
        let len = usize::try_from(len).expect("5 hex digits");
        if len < SEG_HEADER_LEN || len > rest.len() {
            return bad(&format!("length {len} does not fit"));
        }
        if u64::from(seg_crc(key, &rest[1..18], &rest[SEG_HEADER_LEN..len])) != crc {
            return bad("CRC mismatch (torn, mixed or another key's bytes)");
        }
        segs.push(Seg {
            seq,
            len: u32::try_from(len).expect("5 hex digits"),
        });
        at += len;
    }
    if segs.is_empty() {
        return Err("empty value".into());
    }
    Ok(segs)
}

/// The total length of a value made of `segs`.
pub fn value_len(segs: &[Seg]) -> usize {
    segs.iter().map(|s| s.len as usize).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_with_every_length_class() {
        let mut lens = std::collections::BTreeSet::new();
        for w in [0u16, 7, 15] {
            for idx in 0..64 {
                let k = key(w, idx);
                assert_eq!(parse_key(&k), Some((w, idx)));
                assert!(!k.contains(&b':') && !k.contains(&b'\n') && !k.contains(&0));
                assert_eq!(key_class(idx) == KeyClass::Binary, k.len() == 512);
                lens.insert(k.len());
            }
        }
        assert!(lens.contains(&511) && lens.contains(&512) && lens.iter().any(|&l| l < 50));
        let mut k = key(3, 8);
        k[300] ^= 1;
        assert_eq!(parse_key(&k), None);
        assert_eq!(parse_key(b"t3.0008"), None, "key 8 is 511 bytes long");
    }

    #[test]
    fn values_parse_back_and_damage_is_detected() {
        let k = key(2, 5);
        let segs = [Seg { seq: 9, len: 27 }, Seg { seq: 12, len: 5000 }];
        let v = value(&k, 2, &segs);
        assert_eq!(v.len(), 5027);
        assert!(!v.contains(&b'\n'));
        assert_eq!(parse_value(&k, 2, &v).unwrap(), segs);
        // A flipped byte, a torn value, another key, another writer: all refused.
        let mut flipped = v.clone();
        flipped[3000] ^= 0x01;
        assert!(parse_value(&k, 2, &flipped).is_err());
        assert!(parse_value(&k, 2, &v[..4000]).is_err());
        assert!(parse_value(&key(2, 6), 2, &v).is_err());
        assert!(parse_value(&k, 3, &v).is_err());
        assert!(parse_value(&k, 2, b"").is_err());
    }
}
