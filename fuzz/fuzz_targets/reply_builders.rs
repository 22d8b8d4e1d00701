//! The daemon's reply builders on anything: `abi::get_reply`, `abi::safe_get_reply`,
//! `abi::RangeBuilder` (whose reply is decoded back and compared with what was pushed) and
//! `StatsRecord::decode`. No panic, and sizes consistent with the ABI.
#![no_main]

use hpkv_abi::{self as abi, Decoded, Profile, RangeBuilder, RangeRequest, StatsRecord};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use nix::errno::Errno;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

// struct hpkv_range: the output fields of its header.
const FLAGS: usize = 4;
const COUNT: usize = 12;
const DATA_LEN: usize = 24;

fn get(u: &mut Unstructured) -> Result<()> {
    let profile = if u.arbitrary()? { Profile::Readme } else { Profile::V13 };
    let arg: u64 = if u.arbitrary()? { u.arbitrary()? } else { u64::MAX - u.int_in_range(0..=64)? };
    let key_span = u.int_in_range(1usize..=abi::KEY_MAX + 2)?;
    let out_size = u.int_in_range(0usize..=abi::VALUE_MAX + 16)?;
    // get_reply continues a GET that decode_ioctl accepted: only such arguments.
    if abi::decode_ioctl(profile, abi::CMD_GET, arg, b"k\0", 0) == Decoded::Fail(Errno::EFAULT) {
        return Ok(());
    }
    let value_len = u.int_in_range(0usize..=abi::VALUE_MAX)?;
    match abi::get_reply(profile, arg, key_span, out_size, value_len) {
        Ok(r) => assert!(r.prefix.len() + value_len + r.suffix.len() <= out_size),
        Err(retry) => {
            assert_eq!(retry.input.len(), 1);
            assert_eq!(retry.input[0].len, key_span as u64);
            assert_eq!(retry.output.len(), 1);
            assert!(retry.output[0].len > out_size as u64);
            assert!(retry.output[0].len <= value_len as u64 + 8);
        }
    }
    let capacity: u64 = u.arbitrary()?;
    let (result, len, with_value) = abi::safe_get_reply(capacity, value_len);
    assert_eq!(u64::from_le_bytes(len), value_len as u64);
    assert_eq!(with_value, value_len as u64 <= capacity);
    assert_eq!(result == 0, with_value);
    assert!(result == 0 || result == -libc::ERANGE);
    Ok(())
}

fn range(u: &mut Unstructured) -> Result<()> {
    let mut header: [u8; abi::RANGE_HEADER_SIZE] = u.arbitrary()?;
    // decode_ioctl refuses flags other than HPKV_RANGE_START_EXCLUSIVE.
    let flags = u32_at(&header, FLAGS) & abi::RANGE_START_EXCLUSIVE;
    header[FLAGS..FLAGS + 4].copy_from_slice(&flags.to_le_bytes());
    let req = RangeRequest {
        start: b"",
        start_exclusive: false,
        end: b"",
        max_count: if u.arbitrary()? { u.int_in_range(0..=8)? } else { u.arbitrary()? },
        capacity: u.int_in_range(0..=abi::RANGE_CAPACITY_MAX)?,
        header: &header,
    };
    let mut builder = RangeBuilder::new(&req);
    let mut pushed: Vec<(&[u8], Vec<u8>)> = vec![];
    let mut refused = false;
    while !u.is_empty() && pushed.len() < 64 {
        let key_len = u.int_in_range(1usize..=abi::KEY_MAX)?;
        let key = u.bytes(key_len.min(u.len()))?;
        let value_max = if u.arbitrary()? { abi::VALUE_MAX } else { 64 };
        let value = vec![u.arbitrary::<u8>()?; u.int_in_range(1usize..=value_max)?];
        if key.is_empty() {
            break;
        }
        if !builder.push(key, &value) {
            refused = true;
            break; // the daemon stops its scan here
        }
        pushed.push((key, value));
    }
    let (result, out) = builder.finish();
    assert!(out.len() >= abi::RANGE_HEADER_SIZE);
    // The input fields come back as the caller wrote them.
    assert_eq!(out[..4], header[..4]);
    assert_eq!(out[8..12], header[8..12]);
    assert_eq!(out[16..24], header[16..24]);
    let flags = u32_at(&out, FLAGS);
    assert_eq!(flags & !abi::RANGE_MORE, u32_at(&header, FLAGS) & !abi::RANGE_MORE);
    let count = u32_at(&out, COUNT) as usize;
    let data_len = u64_at(&out, DATA_LEN) as usize;
    if result == -libc::ERANGE {
        // Only when the first record did not fit, with no count limit in the way.
        assert!(pushed.is_empty() && refused);
        assert_eq!(count, 0);
        assert!(data_len > req.capacity, "ERANGE names more than the room");
        assert_eq!(out.len(), abi::RANGE_HEADER_SIZE);
        return Ok(());
    }
    assert_eq!(result, 0);
    assert_eq!(flags & abi::RANGE_MORE != 0, refused);
    assert_eq!(count, pushed.len());
    assert!(req.max_count == 0 || count <= req.max_count as usize);
    assert!(data_len <= req.capacity);
    assert_eq!(out.len(), abi::RANGE_HEADER_SIZE + data_len);
    // Decode the entries back: exactly the records pushed.
    let data = &out[abi::RANGE_HEADER_SIZE..];
    let mut at = 0;
    for (key, value) in &pushed {
        let key_len = u16::from_le_bytes([data[at], data[at + 1]]) as usize;
        let value_len = u32_at(data, at + 4) as usize;
        assert_eq!((key_len, value_len), (key.len(), value.len()));
        let k = at + abi::RANGE_ENTRY_HEADER_SIZE;
        assert_eq!(&data[k..k + key_len], *key);
        assert_eq!(&data[k + key_len..k + key_len + value_len], &value[..]);
        let size = abi::range_entry_size(key_len, value_len);
        assert_eq!(size % 8, 0);
        assert!(data[k + key_len + value_len..at + size].iter().all(|&b| b == 0));
        at += size;
    }
    assert_eq!(at, data_len);
    Ok(())
}

fn stats(u: &mut Unstructured) -> Result<()> {
    let bytes = u.bytes(u.len())?;
    match StatsRecord::decode(bytes) {
        None => assert!(bytes.len() < abi::STATS_STRUCT_SIZE),
        Some(s) => {
            let enc = s.encode();
            assert_eq!(enc.len(), abi::STATS_STRUCT_SIZE);
            // The counters, then reserved (encoded as zeros).
            let counters = abi::STATS_COUNTERS_SIZE;
            assert_eq!(enc[..counters], bytes[..counters]);
            assert!(enc[counters..].iter().all(|&b| b == 0));
            assert_eq!(StatsRecord::decode(&enc), Some(s.clone()));
            assert_eq!(s.proc_text().lines().count(), 3);
            assert_eq!(s.fields().len(), counters / 8);
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = match u.int_in_range(0u8..=2) {
        Ok(0) => get(&mut u),
        Ok(1) => range(&mut u),
        _ => stats(&mut u),
    };
});
