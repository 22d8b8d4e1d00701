//! The oracle itself: each expectation against the contract's words, and the generator over
//! many requests.

use super::*;

fn errs(e: &Expect) -> Vec<Errno> {
    let mut v = e.errnos.clone();
    v.sort_by_key(|e| *e as i32);
    v
}

#[test]
fn write_outcomes_follow_the_contract() {
    assert_eq!(
        write_outcome(b""),
        Expect::ok(0, &[]),
        "a zero-length write returns 0"
    );
    let put = write_outcome(b"key:value");
    assert!(
        put.allows(Ok(9)) && put.allows(Err(Errno::ENOSPC)) && !put.allows(Err(Errno::EMSGSIZE))
    );
    assert!(
        write_outcome(b"key:+more").allows(Err(Errno::EMSGSIZE)),
        "an append may pass the limit"
    );
    for bad in [&b"novalue"[..], b":value", b"key:", b"key:+"] {
        assert_eq!(errs(&write_outcome(bad)), vec![Errno::EINVAL], "{bad:?}");
    }
    let mut long_key = vec![b'a'; STR_KEY_MAX + 1];
    long_key.extend_from_slice(b":v");
    assert_eq!(errs(&write_outcome(&long_key)), vec![Errno::EMSGSIZE]);
    let mut ok_key = vec![b'a'; STR_KEY_MAX];
    ok_key.extend_from_slice(b":v");
    assert!(write_outcome(&ok_key).allows(Ok(ok_key.len())));
    let mut big = b"k:".to_vec();
    big.resize(2 + WRITE_VALUE_MAX, b'v');
    assert!(write_outcome(&big).allows(Ok(big.len())));
    big.push(b'v');
    assert_eq!(errs(&write_outcome(&big)), vec![Errno::EMSGSIZE]);
    // Two violations the contract does not order: either errno.
    let mut both = vec![b'a'; STR_KEY_MAX + 1];
    both.push(b':');
    assert_eq!(
        errs(&write_outcome(&both)),
        vec![Errno::EINVAL, Errno::EMSGSIZE]
    );
}

#[test]
fn a_write_running_into_the_guard_page_may_be_cut_there() {
    let mut arena = vec![0u8; ARENA_BYTES];
    let mut gen = Gen::new(Rng::new(9), vec![FdMode::ReadWrite], 0, 0);
    let mut cut = 0;
    for _ in 0..20_000 {
        let req = gen.next(&mut arena);
        if let Call::Write {
            target: Target::At(at),
            len,
            ..
        } = req.call
        {
            if at + len > arena.len() && req.what.contains("guard") {
                assert!(req.expect.errnos.contains(&Errno::EFAULT), "{}", req.what);
                let readable = arena.len() - at;
                if req.expect.allows(Ok(readable)) {
                    cut += 1;
                }
                assert!(
                    !req.expect.allows(Ok(len)),
                    "{}: all of it cannot be written",
                    req.what
                );
            }
        }
    }
    assert!(cut > 0, "no write whose readable part is a valid request");
}

#[test]
fn string_keys_at_the_end_of_memory() {
    let mut mem = b"abc\0".to_vec();
    let e = str_key_outcome(&mem, true);
    assert!(e.allows(Ok(0)) && e.allows(Err(Errno::ENOENT)));
    assert!(
        e.allows(Err(Errno::EFAULT)),
        "the value may not fit before the guard page"
    );
    mem.resize(VALUE_MAX + 10, 7);
    assert!(!str_key_outcome(&mem, true).allows(Err(Errno::EFAULT)));
    assert!(!str_key_outcome(&mem, false).allows(Err(Errno::EFAULT)));
    assert_eq!(
        errs(&str_key_outcome(b"\0abc", true)),
        vec![Errno::EINVAL],
        "empty key"
    );
    assert_eq!(
        errs(&str_key_outcome(&[b'x'; 600], true)),
        vec![Errno::EINVAL],
        "no NUL in 512"
    );
    assert_eq!(
        errs(&str_key_outcome(&[b'x'; 100], false)),
        vec![Errno::EFAULT],
        "runs into the guard"
    );
    let mut k511 = vec![b'x'; STR_KEY_MAX];
    k511.push(0);
    assert!(
        str_key_outcome(&k511, false).allows(Ok(0)),
        "a 511-byte key ending at the guard"
    );
    let mut k512 = vec![b'x'; STR_KEY_MAX + 1];
    k512.push(0);
    assert_eq!(errs(&str_key_outcome(&k512, false)), vec![Errno::EINVAL]);
}

fn kv(key_len: u16, value_len: u64, data: usize) -> Vec<u8> {
    let mut b = key_len.to_le_bytes().to_vec();
    b.extend_from_slice(&value_len.to_le_bytes());
    b.resize(KV_HEADER + data, b'z');
    b
}

#[test]
fn insert_lengths_then_memory() {
    assert!(kv_outcome(&kv(3, 4, 7), false).allows(Ok(0)));
    assert!(!kv_outcome(&kv(3, 4, 7), false).allows(Err(Errno::EMSGSIZE)));
    assert!(kv_outcome(&kv(3, 4, 7), true).allows(Err(Errno::EMSGSIZE)));
    assert_eq!(errs(&kv_outcome(&kv(3, 4, 6), false)), vec![Errno::EFAULT]);
    assert_eq!(
        errs(&kv_outcome(&kv(0, 4, 0), false)),
        vec![Errno::EINVAL],
        "lengths first"
    );
    assert_eq!(
        errs(&kv_outcome(&kv(513, 4, 0), false)),
        vec![Errno::EINVAL]
    );
    assert_eq!(errs(&kv_outcome(&kv(5, 0, 0), false)), vec![Errno::EINVAL]);
    assert_eq!(
        errs(&kv_outcome(&kv(5, 102_401, 0), false)),
        vec![Errno::EINVAL]
    );
    assert_eq!(
        errs(&kv_outcome(&kv(5, u64::MAX, 0), false)),
        vec![Errno::EINVAL]
    );
    assert_eq!(
        errs(&kv_outcome(&[1, 0, 1], false)),
        vec![Errno::EFAULT],
        "a torn header"
    );
}

#[test]
fn extensions_and_other_commands() {
    let mut get = vec![0u8; GET_STRUCT];
    get[0] = 3;
    assert!(safe_get_outcome(&get).allows(Err(Errno::ERANGE)));
    assert!(
        !safe_get_outcome(&get).allows(Err(Errno::EFAULT)),
        "capacity 0 writes nothing"
    );
    get[8..16].copy_from_slice(&100u64.to_le_bytes());
    assert!(
        safe_get_outcome(&get).allows(Err(Errno::EFAULT)),
        "no room for the value"
    );
    get[2] = 1;
    assert_eq!(
        errs(&safe_get_outcome(&get)),
        vec![Errno::EINVAL],
        "flags must be 0"
    );
    assert_eq!(errs(&safe_get_outcome(&get[..100])), vec![Errno::EFAULT]);
    let mut range = vec![0u8; RANGE_STRUCT + 10];
    range[16] = 10;
    assert!(
        range_outcome(&range).allows(Ok(0)) && !range_outcome(&range).allows(Err(Errno::EFAULT))
    );
    range[4] = 2;
    assert_eq!(
        errs(&range_outcome(&range)),
        vec![Errno::EINVAL],
        "unknown flag"
    );
    range[4] = 0;
    range[16..24].copy_from_slice(&(RANGE_CAPACITY_MAX as u64 + 1).to_le_bytes());
    assert_eq!(errs(&range_outcome(&range)), vec![Errno::EINVAL]);
    assert_eq!(errs(&ioctl_outcome(0x4008_4805, None)), vec![Errno::ENOTTY]);
    assert_eq!(errs(&ioctl_outcome(77, Some(&[]))), vec![Errno::ENOTTY]);
    assert!(ioctl_outcome(hpkv_abi::CMD_PURGE, None).allows(Ok(0)));
    assert!(ioctl_outcome(hpkv_abi::IOC_SYNC, None).allows(Ok(0)));
    assert_eq!(
        errs(&ioctl_outcome(hpkv_abi::IOC_STATS, None)),
        vec![Errno::EFAULT]
    );
    assert_eq!(
        errs(&ioctl_outcome(FIGETBSZ, Some(&[0, 0]))),
        vec![Errno::EFAULT]
    );
    assert!(ioctl_outcome(FIGETBSZ, Some(&[0; 4])).allows(Ok(0)));
}

#[test]
fn the_generator_covers_every_kind_and_spares_the_checkers_keys() {
    let mut arena = vec![0u8; ARENA_BYTES];
    let fds = vec![FdMode::ReadWrite, FdMode::ReadOnly, FdMode::WriteOnly];
    let mut gen = Gen::new(Rng::new(5), fds, 3, 1000);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50_000 {
        let req = gen.next(&mut arena);
        assert!(
            !req.expect.errnos.is_empty() || req.expect.success != Success::Never,
            "{}",
            req.what
        );
        let kind = match req.call {
            Call::Write {
                target: Target::At(at),
                len,
                fd,
            } if gen.fds[fd] != FdMode::ReadOnly && len > 0 => {
                let end = (at + len).min(arena.len());
                assert!(
                    arena[at..end].first() != Some(&CHECKER_PREFIX) || !req.expect.allows(Ok(len)),
                    "a write to the checker's keys: {}",
                    req.what
                );
                "write".to_string()
            }
            Call::Write { .. } => "write".into(),
            Call::Read { .. } => "read".into(),
            Call::Ioctl {
                cmd: hpkv_abi::IOC_PUT_BATCH,
                target: Target::At(at),
                ..
            } => {
                let good = req.expect.success != Success::Never;
                if good {
                    assert_no_checker_key(&arena[at..]);
                    seen.insert("a well-formed batch".to_string());
                }
                format!("{:#x}", hpkv_abi::IOC_PUT_BATCH)
            }
            Call::Ioctl { cmd, .. } if is_hpkv(cmd) => format!("{cmd:#x}"),
            Call::Ioctl { .. } => "other".into(),
        };
        if req.purge {
            seen.insert("purge".to_string());
        }
        seen.insert(kind);
    }
    for k in [
        "write", "read", "other", "purge", "0x0", "0x1", "0x2", "0x4", "0x5",
    ] {
        assert!(seen.contains(k), "never generated {k}: {seen:?}");
    }
    assert!(seen.contains(&format!("{:#x}", hpkv_abi::IOC_RANGE)));
    assert!(seen.contains(&format!("{:#x}", hpkv_abi::IOC_PUT_BATCH)));
    assert!(seen.contains("a well-formed batch"));
}

/// The keys of a well-formed batch at the start of `mem`: none is the checker's.
fn assert_no_checker_key(mem: &[u8]) {
    let count = u32::from_le_bytes(mem[0..4].try_into().unwrap()) as usize;
    let mut at = BATCH_HEADER;
    for _ in 0..count {
        let key_len = usize::from(u16::from_le_bytes([mem[at], mem[at + 1]]));
        let value_len = u32::from_le_bytes(mem[at + 4..at + 8].try_into().unwrap()) as usize;
        assert_ne!(
            mem[at + 8],
            CHECKER_PREFIX,
            "a batch writes a checker's key"
        );
        at += batch_entry_size(key_len, value_len);
    }
}

/// A batch as the contract lays it out.
fn batch(records: &[(&[u8], &[u8])]) -> Vec<u8> {
    hpkv_abi::encode_put_batch(records)
        .unwrap()
        .as_bytes()
        .to_vec()
}

#[test]
fn put_batch_header_then_entries_then_memory() {
    let good = batch(&[(b"a", b"1"), (b"bb", b"22")]);
    let expect = put_batch_outcome(&good);
    assert!(expect.allows(Ok(2)) && expect.allows(Ok(1)) && !expect.allows(Ok(3)));
    assert!(expect.allows(Err(Errno::ENOSPC)) && !expect.allows(Err(Errno::EINVAL)));
    assert_eq!(ioctl_outcome(hpkv_abi::IOC_PUT_BATCH, Some(&good)), expect);
    let with = |at: usize, v: u32| {
        let mut b = good.clone();
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        b
    };
    for (what, b) in [
        ("zero count", with(0, 0)),
        ("count over", with(0, 3)),
        ("count under", with(0, 1)),
        ("flags", with(8, 1)),
        ("reserved", with(12, 4)),
        ("bytes under", with(4, 16)),
        ("value_len 0", with(BATCH_HEADER + 16 + 4, 0)),
        ("value_len overruns", with(BATCH_HEADER + 16 + 4, 100)),
        ("key_len 0", with(BATCH_HEADER, 0x0000_0000)),
        ("entry reserved", with(BATCH_HEADER, 0x0001_0001)),
    ] {
        assert_eq!(errs(&put_batch_outcome(&b)), vec![Errno::EINVAL], "{what}");
    }
    let mut longer = with(4, 40);
    assert_eq!(
        errs(&put_batch_outcome(&longer)),
        vec![Errno::EFAULT, Errno::EINVAL],
        "bytes past the readable memory"
    );
    longer.resize(BATCH_HEADER + 40, 0);
    assert_eq!(
        errs(&put_batch_outcome(&longer)),
        vec![Errno::EINVAL],
        "bytes over the entries"
    );
    let over = u32::try_from(PUT_BATCH_MAX - BATCH_HEADER + 8).unwrap();
    assert_eq!(
        errs(&put_batch_outcome(&with(4, over))),
        vec![Errno::EMSGSIZE]
    );
    assert_eq!(
        errs(&put_batch_outcome(&with(4, u32::MAX))),
        vec![Errno::EMSGSIZE]
    );
    assert_eq!(
        errs(&put_batch_outcome(&good[..15])),
        vec![Errno::EFAULT],
        "a header cut by the guard page"
    );
    assert_eq!(
        errs(&put_batch_outcome(&good[..good.len() - 1])),
        vec![Errno::EFAULT, Errno::EINVAL],
        "entries cut by the guard page"
    );
    assert_eq!(
        errs(&ioctl_outcome(hpkv_abi::IOC_PUT_BATCH, None)),
        vec![Errno::EFAULT]
    );
}
