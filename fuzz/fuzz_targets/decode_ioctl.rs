//! `abi::decode_ioctl` (and `abi::get_reply`, which continues a GET) on anything a caller
//! can pass: any profile, command (biased to the real ones), argument and memory.
//!
//! Two modes. One round with arbitrary input and output size: no panic, well-formed areas,
//! `Ready` slices inside the input. And the whole retry protocol as the kernel drives it,
//! over a fuzzed memory at a fuzzed address: every retry asks for at most 32 pages each
//! way in at most 4 areas that do not wrap around, never for fewer input bytes than it was
//! given, and the command completes (or fails) within 4 rounds. The kernel's side of the
//! protocol is `hpkv_abi::retry_sim`, the simulator every test shares.
#![no_main]

use hpkv_abi::retry_sim::{self, Answer, Memory};
use hpkv_abi::{self as abi, Command, Decoded, Iov, Profile, Retry};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const PAGE: u64 = retry_sim::PAGE;
/// CUSE's limit on the data of one ioctl, each way.
const MAX_BYTES: u64 = retry_sim::DATA_MAX;
const MAX_IOVS: usize = 4;
const MAX_ROUNDS: usize = 4;

fn command(u: &mut Unstructured) -> Result<u32> {
    Ok(match u.int_in_range(0u8..=17)? {
        n @ 0..=5 => n as u32,
        6 | 7 => abi::IOC_GET,
        8 | 9 => abi::IOC_RANGE,
        10 => abi::IOC_STATS,
        11 => if u.arbitrary()? { abi::IOC_SYNC } else { abi::IOC_INFO },
        // A real number with one bit flipped: the size or direction field of an _IOC.
        12 => abi::IOC_GET ^ (1 << u.int_in_range(0u32..=31)?),
        13 => abi::IOC_RANGE ^ (1 << u.int_in_range(0u32..=31)?),
        14 | 15 => abi::IOC_PUT_BATCH,
        _ => u.arbitrary()?,
    })
}

fn address(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0u8..=4)? {
        0 => 0,
        // Near the end of a page, where keys straddle granules.
        1 => 0x7f00_0000_0000 + u.int_in_range(0u64..=2 * PAGE)?,
        // Near the top of the address space, where offsets could wrap.
        2 => u64::MAX - u.int_in_range(0u64..=2 * MAX_BYTES)?,
        _ => u.arbitrary()?,
    })
}

fn total(v: &[Iov]) -> u64 {
    v.iter().map(|i| i.len).sum()
}

fn check_retry(r: &Retry) {
    assert!(r.input.len() <= MAX_IOVS && r.output.len() <= MAX_IOVS, "{r:?}");
    for v in r.input.iter().chain(&r.output) {
        assert!(v.base.checked_add(v.len).is_some(), "an area wraps around: {r:?}");
    }
    assert!(total(&r.input) <= MAX_BYTES, "input over 32 pages: {r:?}");
    assert!(total(&r.output) <= MAX_BYTES, "output over 32 pages: {r:?}");
}

/// Every slice of a `Ready` command lies inside `input`.
fn check_ready(cmd: &Command<'_>, input: &[u8]) {
    let inside = |s: &[u8]| {
        let (lo, hi) = (input.as_ptr() as usize, input.as_ptr() as usize + input.len());
        let p = s.as_ptr() as usize;
        s.is_empty() || (p >= lo && p + s.len() <= hi)
    };
    let slices: Vec<&[u8]> = match cmd {
        Command::Get { key, key_span } => {
            assert!(*key_span <= input.len() && key.len() < *key_span);
            vec![key]
        }
        Command::Delete { key } | Command::SafeGet { key, .. } => vec![key],
        Command::Insert { key, value } => vec![key, value],
        Command::Append { key, suffix } => vec![key, suffix],
        Command::Range(r) => {
            assert!(r.capacity <= abi::RANGE_CAPACITY_MAX);
            assert_eq!(r.header.len(), abi::RANGE_HEADER_SIZE);
            vec![r.start, r.end, r.header]
        }
        Command::PutBatch(records) => {
            assert!((1..=abi::PUT_BATCH_RECORDS_MAX).contains(&records.count()));
            assert_eq!(records.iter().count(), records.count());
            records.iter().flat_map(|(k, v)| [k, v]).collect()
        }
        Command::Purge | Command::Stats | Command::Info | Command::Sync => vec![],
    };
    for s in slices {
        assert!(inside(s), "a slice outside the input: {cmd:?}");
    }
    match cmd {
        Command::Get { key, .. } | Command::Delete { key } => assert!(!key.is_empty()),
        Command::Insert { key, value: v } | Command::Append { key, suffix: v } => {
            assert!((1..=abi::KEY_MAX).contains(&key.len()));
            assert!((1..=abi::VALUE_MAX).contains(&v.len()));
        }
        Command::SafeGet { key, .. } => assert!((1..=abi::KEY_MAX).contains(&key.len())),
        Command::PutBatch(records) => {
            for (key, value) in records.iter() {
                assert!((1..=abi::KEY_MAX).contains(&key.len()));
                assert!((1..=abi::VALUE_MAX).contains(&value.len()));
            }
        }
        _ => {}
    }
}

fn one_round(u: &mut Unstructured) -> Result<()> {
    let profile = if u.arbitrary()? { Profile::Readme } else { Profile::V13 };
    let cmd = command(u)?;
    let arg = address(u)?;
    let out_size = u.int_in_range(0usize..=2 * MAX_BYTES as usize)?;
    let input = u.bytes(u.len())?;
    match abi::decode_ioctl(profile, cmd, arg, input, out_size) {
        Decoded::Retry(r) => check_retry(&r),
        Decoded::Ready(c) => check_ready(&c, input),
        Decoded::Fail(_) => {}
    }
    Ok(())
}

fn protocol(u: &mut Unstructured) -> Result<()> {
    let profile = if u.arbitrary()? { Profile::Readme } else { Profile::V13 };
    let cmd = command(u)?;
    let base = address(u)?;
    let offset = u.int_in_range(0u64..=PAGE)?;
    let value_len = u.int_in_range(1usize..=abi::VALUE_MAX)?;
    let mut bytes = u.bytes(u.len())?.to_vec();
    // Memory that does not wrap around the top of the address space.
    bytes.truncate(usize::try_from(u64::MAX - base).unwrap_or(usize::MAX));
    let arg = base.wrapping_add(offset);
    // The kernel's side is the shared simulator; the daemon's side is the decoder, with
    // every retry and command checked as it comes.
    let mut memory = Memory::new(base, &mut bytes);
    let outcome = retry_sim::ioctl(&mut memory, |input, out_size| {
        let (retry, after_ready) = match abi::decode_ioctl(profile, cmd, arg, input, out_size) {
            Decoded::Fail(e) => return Answer::fail(e),
            Decoded::Ready(c) => {
                check_ready(&c, input);
                // A GET whose value does not fit asks again for exactly the room it needs.
                let Command::Get { key_span, .. } = c else {
                    return Answer::done(0, vec![]);
                };
                match abi::get_reply(profile, arg, key_span, out_size, value_len) {
                    Ok(reply) => {
                        let need = reply.prefix.len() + value_len + reply.suffix.len();
                        assert!(need <= out_size);
                        return Answer::done(0, vec![0xEE; need]);
                    }
                    Err(r) => (r, true),
                }
            }
            Decoded::Retry(r) => (r, false),
        };
        check_retry(&retry);
        assert!(
            after_ready || total(&retry.input) >= input.len() as u64,
            "a retry asks for less input than it had: {} < {}: {retry:?}",
            total(&retry.input),
            input.len()
        );
        Answer::Retry(retry)
    });
    assert!(outcome.rounds <= MAX_ROUNDS, "command {cmd:#x} took {} rounds", outcome.rounds);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = match u.arbitrary::<bool>() {
        Ok(true) => protocol(&mut u),
        _ => one_round(&mut u),
    };
});
