//! The on-disk decoders on anything a device can hold: `format::decode_record`, `Scanner`,
//! `Superblock::decode`, `SegmentHeader::decode`. No panic; decoded records are sub-slices of
//! the buffer that encode back to the same bytes; the scanner's offsets stay in bounds and
//! grow; a decoded structure encodes back to itself.
//!
//! Checksums stop random bytes at the first check, so a mode fixes them up first, and
//! another lays down valid records (`encode_record`) before a fuzzed tail: the scanner must
//! find each of them.
#![no_main]

use hpkv_engine::format::{
    self, decode_record, encode_record, Kind, Scanner, SegmentHeader, Superblock, ScanEnd,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SUPERBLOCK_LEN,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// The length a record header claims, if it is one the decoder could accept.
fn claimed_len(b: &[u8]) -> Option<usize> {
    if b.len() < RECORD_HEADER_LEN {
        return None;
    }
    let key_len = u16::from_le_bytes([b[18], b[19]]) as usize;
    let value_len = u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize;
    let len = format::record_len(key_len, value_len);
    (len <= b.len()).then_some(len)
}

/// Rewrites the checksum of the record at the start of `b`, if its lengths fit.
fn fix_record_crc(b: &mut [u8], seed: u32) {
    if let Some(len) = claimed_len(b) {
        let c = crc32c::crc32c_append(seed, &b[4..len]);
        b[0..4].copy_from_slice(&c.to_le_bytes());
    }
}

fn check_record(b: &[u8], seed: u32, incarnation: u32) {
    if let Ok(r) = decode_record(b, seed, incarnation) {
        let len = r.encoded_len();
        assert!(len <= b.len());
        assert!((1..=format::KEY_MAX).contains(&r.key.len()));
        assert!(r.value.len() <= format::VALUE_MAX);
        assert_eq!(r.kind == Kind::Put, !r.value.is_empty());
        assert_eq!(r.key.as_ptr(), b[RECORD_HEADER_LEN..].as_ptr());
        assert_eq!(r.value.as_ptr(), b[RECORD_HEADER_LEN + r.key.len()..].as_ptr());
        let mut again = vec![0u8; len];
        encode_record(&mut again, seed, incarnation, r.seq, r.kind, r.key, r.value);
        if r.after_flush {
            format::mark_after_flush(&mut again, seed);
        }
        assert_eq!(again, b[..len], "a decoded record encodes back to its bytes");
    }
}

/// Scans `b`: offsets grow and stay in bounds, and the end is reported.
fn scan(b: &[u8], seed: u32, incarnation: u32) -> Vec<(usize, Kind, u64, Vec<u8>, Vec<u8>)> {
    let mut scanner = Scanner::new(b, seed, incarnation);
    let mut found = vec![];
    let mut next_at = 0;
    for (at, r) in scanner.by_ref() {
        assert_eq!(at, next_at, "records follow each other");
        next_at = at + r.encoded_len();
        assert!(next_at <= b.len());
        found.push((at, r.kind, r.seq, r.key.to_vec(), r.value.to_vec()));
    }
    assert_eq!(scanner.offset, next_at);
    assert!(scanner.offset <= b.len());
    assert!(scanner.end.is_some(), "a finished scan says why");
    assert!(scanner.next().is_none(), "a finished scan stays finished");
    if scanner.end == Some(ScanEnd::Clean) {
        let rest = &b[scanner.offset..];
        let header = &rest[..rest.len().min(RECORD_HEADER_LEN)];
        assert!(header.iter().all(|&x| x == 0), "a clean end is zeroes");
    }
    found
}

fn raw(u: &mut Unstructured, fix: bool) -> Result<()> {
    let seed: u32 = u.arbitrary()?;
    let incarnation: u32 = u.arbitrary()?;
    let mut b = u.bytes(u.len())?.to_vec();
    if fix {
        fix_record_crc(&mut b, seed);
        if b.len() >= SUPERBLOCK_LEN {
            let mut sb = b[..SUPERBLOCK_LEN].to_vec();
            sb[0..8].copy_from_slice(b"HPKVSTOR");
            sb[12..16].copy_from_slice(&format::FORMAT_VERSION.to_le_bytes());
            sb[56..64].copy_from_slice(&format::DATA_OFFSET.to_le_bytes());
            let c = format::crc(&sb[12..]);
            sb[8..12].copy_from_slice(&c.to_le_bytes());
            check_superblock(&sb);
        }
        if b.len() >= SEGMENT_HEADER_LEN {
            let mut sh = b[..SEGMENT_HEADER_LEN].to_vec();
            sh[0..8].copy_from_slice(b"HPKVSEGM");
            sh[12..16].copy_from_slice(&format::FORMAT_VERSION.to_le_bytes());
            let c = format::crc(&sh[12..]);
            sh[8..12].copy_from_slice(&c.to_le_bytes());
            check_segment_header(&sh);
        }
    }
    check_record(&b, seed, incarnation);
    if let Ok((inc, _)) = format::decode_record_any_incarnation(&b, seed) {
        check_record(&b, seed, inc);
    }
    scan(&b, seed, incarnation);
    check_superblock(&b);
    check_segment_header(&b);
    Ok(())
}

fn check_superblock(b: &[u8]) {
    if let Some(sb) = Superblock::decode(b) {
        assert_eq!(Superblock::decode(&sb.encode()), Some(sb));
        for s in 0..sb.segment_count.min(4) {
            let _ = sb.segment_offset(s);
        }
    }
}

fn check_segment_header(b: &[u8]) {
    if let Some(h) = SegmentHeader::decode(b) {
        assert_eq!(SegmentHeader::decode(&h.encode()), Some(h));
    }
}

/// Valid records, then a fuzzed tail: the scanner finds every one of them.
fn records(u: &mut Unstructured) -> Result<()> {
    let seed: u32 = u.arbitrary()?;
    let incarnation: u32 = u.arbitrary()?;
    let mut b = vec![];
    let mut want = vec![];
    for seq in 0..u.int_in_range(0u64..=16)? {
        let kind = if u.arbitrary()? { Kind::Put } else { Kind::Tombstone };
        let key_len = u.int_in_range(1usize..=format::KEY_MAX)?;
        let key = vec![u.arbitrary::<u8>()?; key_len];
        let value = match kind {
            Kind::Put => {
                let max = if u.arbitrary()? { format::VALUE_MAX } else { 300 };
                vec![u.arbitrary::<u8>()?; u.int_in_range(1usize..=max)?]
            }
            Kind::Tombstone => vec![],
        };
        let at = b.len();
        b.resize(at + format::record_len(key.len(), value.len()), 0);
        encode_record(&mut b[at..], seed, incarnation, seq, kind, &key, &value);
        want.push((at, kind, seq, key, value));
    }
    let tail = u.bytes(u.len())?;
    b.extend_from_slice(tail);
    let found = scan(&b, seed, incarnation);
    assert!(found.len() >= want.len(), "the scanner lost a valid record");
    assert_eq!(found[..want.len()], want[..]);
    if tail.iter().all(|&x| x == 0) {
        assert_eq!(found.len(), want.len());
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = match u.int_in_range(0u8..=3) {
        Ok(0) => raw(&mut u, false),
        Ok(1) | Ok(2) => raw(&mut u, true),
        _ => records(&mut u),
    };
});
