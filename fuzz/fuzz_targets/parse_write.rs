//! `abi::parse_write` on any buffer: no panic; on success the key and value are the parts
//! of the buffer around its first colon, within the limits of docs/ABI.md.
#![no_main]

use hpkv_abi::{self as abi, parse_write, WriteRequest};
use libfuzzer_sys::fuzz_target;
use nix::errno::Errno;

/// `part` is `data[at..]`'s prefix, by address, not only by value.
fn is_sub_slice(data: &[u8], part: &[u8], at: usize) -> bool {
    part.as_ptr() == data[at..].as_ptr() && at + part.len() <= data.len()
}

fuzz_target!(|data: &[u8]| {
    let colon = data.iter().position(|&b| b == b':');
    match parse_write(data) {
        Ok(request) => {
            let colon = colon.expect("a request has a colon");
            let (key, value, plus) = match request {
                WriteRequest::Put { key, value } => (key, value, false),
                WriteRequest::Append { key, suffix } => (key, suffix, true),
            };
            assert!(data.len() <= abi::WRITE_MAX);
            assert_eq!(key.len(), colon, "the key ends at the first colon");
            assert!(is_sub_slice(data, key, 0));
            assert!((1..=abi::STR_KEY_MAX).contains(&key.len()));
            let value_at = colon + 1 + plus as usize;
            assert!(is_sub_slice(data, value, value_at));
            assert_eq!(value_at + value.len(), data.len(), "the value runs to the end");
            assert!(!value.is_empty());
            assert!(value.len() + plus as usize <= abi::WRITE_VALUE_MAX);
            assert_eq!(data[colon + 1] == b'+', plus, "a '+' first means append");
            // The client's encoder writes exactly these bytes for the request.
            assert_eq!(abi::encode_write(request).as_deref(), Ok(data));
        }
        Err(e) => {
            assert!(e == Errno::EINVAL || e == Errno::EMSGSIZE, "{e}");
            if e == Errno::EINVAL {
                // No colon, an empty key, or nothing (or only '+') after the colon.
                let ok_shape = colon.is_some_and(|c| {
                    c > 0 && !matches!(&data[c + 1..], [] | [b'+'])
                });
                assert!(!ok_shape, "EINVAL for a well-formed request");
            }
        }
    }
});
