//! The daemon's reply builders on anything: `abi::get_reply`, `abi::safe_get_reply`,
//! `abi::RangeBuilder` (whose reply is decoded back and compared with what was pushed) and
//! `StatsRecord::decode`. No panic, and sizes consistent with the ABI.
#![no_main]

use std::mem::offset_of;

use hpkv_abi::le::{set_u32, u32_at, u64_at};
use hpkv_abi::{self as abi, uapi, Decoded, Profile, RangeBuilder, RangeRequest, StatsRecord};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use nix::errno::Errno;

// struct hpkv_range: the output fields of its header.
const FLAGS: usize = offset_of!(uapi::hpkv_range, flags);
const COUNT: usize = offset_of!(uapi::hpkv_range, count);
const DATA_LEN: usize = offset_of!(uapi::hpkv_range, data_len);

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
    let r = abi::safe_get_reply(capacity, value_len);
    assert_eq!(u64::from_le_bytes(r.value_len), value_len as u64);
    assert_eq!(r.with_value, value_len as u64 <= capacity);
    assert_eq!(r.result == 0, r.with_value);
    assert!(r.result == 0 || r.result == -libc::ERANGE);
    Ok(())
}

fn range(u: &mut Unstructured) -> Result<()> {
    let mut header: [u8; abi::RANGE_HEADER_SIZE] = u.arbitrary()?;
    // decode_ioctl refuses flags other than HPKV_RANGE_START_EXCLUSIVE.
    let flags = u32_at(&header, FLAGS) & abi::RANGE_START_EXCLUSIVE;
    set_u32(&mut header, FLAGS, flags);
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
    for (at, len) in [
        (offset_of!(uapi::hpkv_range, start_len), 2),
        (offset_of!(uapi::hpkv_range, end_len), 2),
        (offset_of!(uapi::hpkv_range, max_count), 4),
        (offset_of!(uapi::hpkv_range, capacity), 8),
    ] {
        assert_eq!(out[at..at + len], header[at..at + len], "the field at {at}");
    }
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
    // The client's parser reads back exactly the records pushed, from the caller's buffer
    // as the kernel leaves it: the header written back, the entries after the struct.
    let mut caller = vec![0u8; abi::RANGE_STRUCT_SIZE + req.capacity];
    caller[..abi::RANGE_HEADER_SIZE].copy_from_slice(&out[..abi::RANGE_HEADER_SIZE]);
    caller[abi::RANGE_STRUCT_SIZE..][..data_len].copy_from_slice(&out[abi::RANGE_HEADER_SIZE..]);
    let page = abi::parse_range(&caller, req.capacity).expect("the parser takes the builder's reply");
    assert_eq!(page.more, refused);
    assert_eq!(page.records.len(), pushed.len());
    for ((key, value), (k, v)) in page.records.iter().zip(&pushed) {
        assert_eq!((key.as_slice(), value), (*k, v));
    }
    // Entries are padded with zeros to 8 bytes.
    let sizes: usize = pushed.iter().map(|(k, v)| abi::range_entry_size(k.len(), v.len())).sum();
    assert_eq!(sizes, data_len);
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
