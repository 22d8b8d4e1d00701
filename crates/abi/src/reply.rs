//! ioctl replies: the daemon's builders and, next to each, the client's parser.

use std::mem::offset_of;

use crate::le::{get_u16, get_u32, get_u64, set_u32, set_u64, u32_at, u64_at};
use crate::{
    uapi, Iov, Profile, RangeRequest, ReplyError, Retry, GET_STRUCT_SIZE, KEY_MAX,
    RANGE_CAPACITY_MAX, RANGE_ENTRY_HEADER_SIZE, RANGE_HEADER_SIZE, RANGE_MORE, RANGE_STRUCT_SIZE,
    V13_VALUE_LEN_OFFSET, V13_VALUE_OFFSET, VALUE_MAX,
};

/// A key and its value.
pub type Record = (Vec<u8>, Vec<u8>);

// ------------------------------------------------------------------------------ GET (0)

/// How to answer a GET whose value was found: copy out `prefix`, the value, `suffix`.
#[derive(Debug, PartialEq, Eq)]
pub struct ValueReply {
    /// Before the value: the v1.3 profile's `u64` length; nothing in the readme profile.
    pub prefix: Vec<u8>,
    /// After the value: the readme profile's NUL; nothing in the v1.3 profile.
    pub suffix: &'static [u8],
}

/// Builds the reply to GET (command 0) for a value of `value_len` bytes, given this round's
/// output size (the daemon's side).
///
/// # Errors
/// The [`Retry`] to ask for when the value does not fit the output area offered: the key is
/// fetched again and the exact room offered. `arg` is one [`crate::decode_ioctl`] accepted.
pub fn get_reply(
    profile: Profile,
    arg: u64,
    key_span: usize,
    out_size: usize,
    value_len: usize,
) -> Result<ValueReply, Retry> {
    let (out_at, reply) = match profile {
        Profile::Readme => (
            arg,
            ValueReply {
                prefix: vec![],
                suffix: b"\0",
            },
        ),
        Profile::V13 => (
            arg + V13_VALUE_LEN_OFFSET as u64,
            ValueReply {
                prefix: (value_len as u64).to_le_bytes().to_vec(),
                suffix: b"",
            },
        ),
    };
    let need = reply.prefix.len() + value_len + reply.suffix.len();
    if need > out_size {
        return Err(Retry {
            input: vec![Iov {
                base: arg,
                len: key_span as u64,
            }],
            output: vec![Iov {
                base: out_at,
                len: need as u64,
            }],
        });
    }
    Ok(reply)
}

/// The value a `readme`-profile GET wrote at the start of `buf`: the bytes before the first
/// NUL (the client's side; such a value cannot hold a NUL).
///
/// # Errors
/// [`ReplyError::NoNul`] when `buf` holds no NUL.
pub fn parse_readme_get(buf: &[u8]) -> Result<&[u8], ReplyError> {
    let nul = buf.iter().position(|&b| b == 0).ok_or(ReplyError::NoNul)?;
    Ok(&buf[..nul])
}

/// The value a `v1.3`-profile GET wrote into `buf`: its length at
/// [`crate::V13_VALUE_LEN_OFFSET`], the value at [`crate::V13_VALUE_OFFSET`] (the client's
/// side).
///
/// # Errors
/// [`ReplyError::Short`] when `buf` ends before the value it announces,
/// [`ReplyError::ValueLength`] for a length over [`VALUE_MAX`].
pub fn parse_v13_get(buf: &[u8]) -> Result<&[u8], ReplyError> {
    let short = |need| ReplyError::Short {
        len: buf.len(),
        need,
    };
    let len = get_u64(buf, V13_VALUE_LEN_OFFSET).ok_or(short(V13_VALUE_OFFSET))?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= VALUE_MAX)
        .ok_or(ReplyError::ValueLength {
            len,
            capacity: VALUE_MAX as u64,
        })?;
    buf.get(V13_VALUE_OFFSET..V13_VALUE_OFFSET + len)
        .ok_or(short(V13_VALUE_OFFSET + len))
}

// ------------------------------------------------------------------------------ HPKV_IOC_GET

/// How to answer `HPKV_IOC_GET` for a value that was found (the daemon's side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SafeGetReply {
    /// The ioctl's result: 0, or `-ERANGE` when the value does not fit.
    pub result: i32,
    /// The `value_len` field, copied out first (also on ERANGE).
    pub value_len: [u8; 8],
    /// Whether the value follows `value_len` (not on ERANGE).
    pub with_value: bool,
}

/// The reply to `HPKV_IOC_GET` for a value of `value_len` bytes and a caller's `capacity`.
pub fn safe_get_reply(capacity: u64, value_len: usize) -> SafeGetReply {
    let fits = value_len as u64 <= capacity;
    SafeGetReply {
        result: if fits { 0 } else { -libc::ERANGE },
        value_len: (value_len as u64).to_le_bytes(),
        with_value: fits,
    }
}

/// The `value_len` field of a `struct hpkv_get` the device answered: the value's length, also
/// on ERANGE (the client's side).
///
/// # Errors
/// [`ReplyError::Short`] when `buf` is shorter than the struct.
pub fn safe_get_value_len(buf: &[u8]) -> Result<u64, ReplyError> {
    get_u64(buf, offset_of!(uapi::hpkv_get, value_len)).ok_or(ReplyError::Short {
        len: buf.len(),
        need: GET_STRUCT_SIZE,
    })
}

/// The value in a `struct hpkv_get` (and its `capacity` bytes of room) that `HPKV_IOC_GET`
/// answered with success (the client's side).
///
/// # Errors
/// [`ReplyError::ValueLength`] when `value_len` passes `capacity`, [`ReplyError::Short`] when
/// `buf` is shorter than the struct and its room.
pub fn parse_safe_get(buf: &[u8], capacity: usize) -> Result<&[u8], ReplyError> {
    let short = ReplyError::Short {
        len: buf.len(),
        need: GET_STRUCT_SIZE + capacity,
    };
    if buf.len() < GET_STRUCT_SIZE + capacity {
        return Err(short);
    }
    let len = safe_get_value_len(buf)?;
    let value_len =
        usize::try_from(len)
            .ok()
            .filter(|l| *l <= capacity)
            .ok_or(ReplyError::ValueLength {
                len,
                capacity: capacity as u64,
            })?;
    Ok(&buf[GET_STRUCT_SIZE..GET_STRUCT_SIZE + value_len])
}

// ------------------------------------------------------------------------------ RANGE

/// Bytes one entry takes in a RANGE reply (`HPKV_RANGE_ENTRY_SIZE`): its header, key and
/// value, padded to 8 bytes.
pub fn range_entry_size(key_len: usize, value_len: usize) -> usize {
    crate::entry_size(key_len, value_len)
}

/// Accumulates the entries of a RANGE reply within the caller's limits (the daemon's side).
#[derive(Debug)]
pub struct RangeBuilder<'a> {
    req: &'a RangeRequest<'a>,
    data: Vec<u8>,
    count: u32,
    more: bool,
    /// Bytes the first record needed when it did not fit.
    needed: Option<usize>,
}

impl<'a> RangeBuilder<'a> {
    /// An empty reply to `req`.
    pub fn new(req: &'a RangeRequest<'a>) -> RangeBuilder<'a> {
        RangeBuilder {
            req,
            data: Vec::new(),
            count: 0,
            more: false,
            needed: None,
        }
    }

    /// Adds a record; `false` when it does not fit (the scan should stop; the record is
    /// reported as "more"). Keys and values are within the ABI's limits (the store holds no
    /// others).
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> bool {
        assert!(key.len() <= KEY_MAX && value.len() <= VALUE_MAX);
        let size = range_entry_size(key.len(), value.len());
        let count_full = self.req.max_count != 0 && self.count >= self.req.max_count;
        if count_full || self.data.len() + size > self.req.capacity {
            if self.count == 0 && !count_full {
                self.needed = Some(size);
            }
            self.more = true;
            return false;
        }
        crate::append_entry(&mut self.data, key, value);
        self.count += 1;
        true
    }

    /// The ioctl result and the bytes to copy out: the header (the caller's, with the
    /// output fields filled in), then the entries.
    pub fn finish(self) -> (i32, Vec<u8>) {
        let mut out = self.req.header.to_vec();
        let flags_at = offset_of!(uapi::hpkv_range, flags);
        let more = if self.more { RANGE_MORE } else { 0 };
        let flags = u32_at(&out, flags_at) | more;
        set_u32(&mut out, flags_at, flags);
        set_u32(&mut out, offset_of!(uapi::hpkv_range, count), self.count);
        let data_len = self.needed.unwrap_or(self.data.len()) as u64;
        set_u64(&mut out, offset_of!(uapi::hpkv_range, data_len), data_len);
        if self.needed.is_some() {
            return (-libc::ERANGE, out);
        }
        out.extend_from_slice(&self.data);
        (0, out)
    }
}

/// One page of a RANGE reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangePage {
    /// The records, in the order the device returned them.
    pub records: Vec<Record>,
    /// `HPKV_RANGE_MORE`: records remain in the range.
    pub more: bool,
}

/// The `data_len` field of a RANGE reply: the bytes of entries, or on ERANGE the bytes the
/// first record needs (the client's side).
///
/// # Errors
/// [`ReplyError::Short`] when `buf` is shorter than the header.
pub fn range_data_len(buf: &[u8]) -> Result<u64, ReplyError> {
    get_u64(buf, offset_of!(uapi::hpkv_range, data_len)).ok_or(ReplyError::Short {
        len: buf.len(),
        need: RANGE_HEADER_SIZE,
    })
}

/// Parses a RANGE reply in `buf` (the struct and the `capacity` bytes of room the request
/// offered), checking every length against the ABI (the client's side).
///
/// # Errors
/// [`ReplyError`] for a reply hpkvd cannot have written.
pub fn parse_range(buf: &[u8], capacity: usize) -> Result<RangePage, ReplyError> {
    if buf.len() < RANGE_STRUCT_SIZE + capacity || capacity > RANGE_CAPACITY_MAX {
        return Err(ReplyError::Short {
            len: buf.len(),
            need: RANGE_STRUCT_SIZE + capacity,
        });
    }
    let count = u32_at(buf, offset_of!(uapi::hpkv_range, count));
    let count = usize::try_from(count).expect("a u32 fits a usize");
    let flags = u32_at(buf, offset_of!(uapi::hpkv_range, flags));
    let data_len = u64_at(buf, offset_of!(uapi::hpkv_range, data_len));
    let data = usize::try_from(data_len)
        .ok()
        .filter(|len| *len <= capacity)
        .map(|len| &buf[RANGE_STRUCT_SIZE..RANGE_STRUCT_SIZE + len])
        .ok_or(ReplyError::DataLength {
            data_len,
            capacity: capacity as u64,
        })?;
    let mut records = Vec::with_capacity(count.min(data.len() / RANGE_ENTRY_HEADER_SIZE));
    let mut at = 0usize;
    for index in 0..count {
        let overrun = ReplyError::EntryOverrun {
            index,
            count,
            data_len,
        };
        let entry = &data[at..];
        let key_len = get_u16(entry, offset_of!(uapi::hpkv_range_entry, key_len));
        let value_len = get_u32(entry, offset_of!(uapi::hpkv_range_entry, value_len));
        let (Some(key_len), Some(value_len)) = (key_len, value_len) else {
            return Err(overrun);
        };
        let (key_len, value_len) = (usize::from(key_len), value_len as usize);
        if !(1..=KEY_MAX).contains(&key_len) || !(1..=VALUE_MAX).contains(&value_len) {
            return Err(ReplyError::EntryLimits {
                index,
                key_len,
                value_len,
            });
        }
        let size = range_entry_size(key_len, value_len);
        if entry.len() < size {
            return Err(overrun);
        }
        let key = &entry[RANGE_ENTRY_HEADER_SIZE..RANGE_ENTRY_HEADER_SIZE + key_len];
        let value = &entry[RANGE_ENTRY_HEADER_SIZE + key_len..][..value_len];
        records.push((key.to_vec(), value.to_vec()));
        at += size;
    }
    if at != data.len() {
        return Err(ReplyError::DataMismatch {
            count,
            used: at,
            data_len,
        });
    }
    Ok(RangePage {
        records,
        more: flags & RANGE_MORE != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::le::set_u16;
    use crate::{encode_range, RangeQuery};

    #[test]
    fn get_reply_asks_for_room_when_the_value_is_large() {
        assert_eq!(
            get_reply(Profile::Readme, 100, 4, 4096, 1),
            Ok(ValueReply {
                prefix: vec![],
                suffix: b"\0"
            })
        );
        let r = get_reply(Profile::Readme, 100, 4, 4096, 5000).unwrap_err();
        assert_eq!(r.input, vec![Iov { base: 100, len: 4 }]);
        assert_eq!(
            r.output,
            vec![Iov {
                base: 100,
                len: 5001
            }]
        );
        let v = get_reply(Profile::V13, 100, 5, 5008, 5000).unwrap();
        assert_eq!((u64_at(&v.prefix, 0), v.suffix), (5000, &b""[..]));
        let r = get_reply(Profile::V13, 100, 5, 4096, 5000).unwrap_err();
        assert_eq!(
            r.output,
            vec![Iov {
                base: 102,
                len: 5008
            }]
        );
    }

    #[test]
    fn module_get_replies_parse_back() {
        assert_eq!(parse_readme_get(b"value\0\xAA"), Ok(&b"value"[..]));
        assert_eq!(parse_readme_get(b"value"), Err(ReplyError::NoNul));
        let mut v13 = crate::encode_v13_key(b"key").unwrap();
        v13.resize(V13_VALUE_OFFSET + 3, 0xAA);
        let reply = get_reply(Profile::V13, 1, 5, 64, 3).unwrap();
        v13[V13_VALUE_LEN_OFFSET..V13_VALUE_OFFSET].copy_from_slice(&reply.prefix);
        v13[V13_VALUE_OFFSET..].copy_from_slice(b"\0:\n");
        assert_eq!(parse_v13_get(&v13), Ok(&b"\0:\n"[..]));
        assert!(matches!(
            parse_v13_get(&v13[..12]),
            Err(ReplyError::Short { .. })
        ));
        set_u64(&mut v13, V13_VALUE_LEN_OFFSET, u64::MAX);
        assert!(matches!(
            parse_v13_get(&v13),
            Err(ReplyError::ValueLength { .. })
        ));
    }

    #[test]
    fn safe_get_reply_and_parser_agree() {
        let r = safe_get_reply(10, 11);
        assert_eq!((r.result, r.with_value), (-libc::ERANGE, false));
        assert_eq!(r.value_len, 11u64.to_le_bytes());
        assert_eq!(safe_get_reply(11, 11).result, 0);
        let mut buf = crate::encode_safe_get(b"k", 8).unwrap();
        let reply = safe_get_reply(8, 3);
        buf[offset_of!(uapi::hpkv_get, value_len)..][..8].copy_from_slice(&reply.value_len);
        buf[GET_STRUCT_SIZE..GET_STRUCT_SIZE + 3].copy_from_slice(b"abc");
        assert_eq!(parse_safe_get(&buf, 8), Ok(&b"abc"[..]));
        assert_eq!(safe_get_value_len(&buf), Ok(3));
        set_u64(&mut buf, offset_of!(uapi::hpkv_get, value_len), 9);
        assert_eq!(
            parse_safe_get(&buf, 8),
            Err(ReplyError::ValueLength {
                len: 9,
                capacity: 8
            })
        );
        assert!(parse_safe_get(&buf[..GET_STRUCT_SIZE + 7], 8).is_err());
    }

    fn request(header: &[u8], max_count: u32, capacity: usize) -> RangeRequest<'_> {
        RangeRequest {
            start: b"",
            start_exclusive: false,
            end: b"",
            max_count,
            capacity,
            header,
        }
    }

    #[test]
    fn range_builder_limits_and_erange() {
        let header = [0u8; RANGE_HEADER_SIZE];
        let req = request(&header, 2, 64);
        let mut b = RangeBuilder::new(&req);
        assert!(b.push(b"a", b"1"));
        assert!(b.push(b"b", b"2"));
        assert!(!b.push(b"c", b"3"), "max_count reached");
        let (r, out) = b.finish();
        assert_eq!(r, 0);
        assert_eq!(u32_at(&out, offset_of!(uapi::hpkv_range, count)), 2);
        assert_ne!(
            u32_at(&out, offset_of!(uapi::hpkv_range, flags)) & RANGE_MORE,
            0
        );
        assert_eq!(out.len(), RANGE_HEADER_SIZE + 2 * 16);
        let mut b = RangeBuilder::new(&req);
        assert!(!b.push(b"key", &[0u8; 100]));
        let (r, out) = b.finish();
        assert_eq!(r, -libc::ERANGE);
        assert_eq!(range_data_len(&out), Ok(range_entry_size(3, 100) as u64));
    }

    /// What the builder writes, copied into the caller's buffer as the kernel does, parses
    /// back to the records pushed.
    #[test]
    fn range_builder_and_parser_agree() {
        let capacity = 200;
        let mut buf = encode_range(&RangeQuery {
            capacity,
            ..RangeQuery::default()
        })
        .unwrap();
        let req = request(&buf[..RANGE_HEADER_SIZE], 0, capacity);
        let records: [(&[u8], &[u8]); 3] = [(b"a", b"\0"), (b"b:c\n", b"v"), (&[0xff; 9], b"x")];
        let mut builder = RangeBuilder::new(&req);
        for (k, v) in records {
            assert!(builder.push(k, v));
        }
        let (result, out) = builder.finish();
        assert_eq!(result, 0);
        buf[..RANGE_HEADER_SIZE].copy_from_slice(&out[..RANGE_HEADER_SIZE]);
        buf[RANGE_STRUCT_SIZE..][..out.len() - RANGE_HEADER_SIZE]
            .copy_from_slice(&out[RANGE_HEADER_SIZE..]);
        let page = parse_range(&buf, capacity).unwrap();
        let want: Vec<Record> = records
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(
            page,
            RangePage {
                records: want,
                more: false
            }
        );
    }

    #[test]
    fn range_replies_that_break_the_abi_are_refused() {
        let capacity = 64;
        let entry = |k: &[u8], v: &[u8]| {
            let mut e = vec![0u8; range_entry_size(k.len(), v.len())];
            set_u16(&mut e, 0, u16::try_from(k.len()).unwrap());
            set_u32(&mut e, 4, u32::try_from(v.len()).unwrap());
            e[8..8 + k.len()].copy_from_slice(k);
            e[8 + k.len()..8 + k.len() + v.len()].copy_from_slice(v);
            e
        };
        let reply = |count: u32, data_len: u64, data: &[u8]| {
            let mut b = encode_range(&RangeQuery {
                capacity,
                ..RangeQuery::default()
            })
            .unwrap();
            set_u32(&mut b, offset_of!(uapi::hpkv_range, count), count);
            set_u64(&mut b, offset_of!(uapi::hpkv_range, data_len), data_len);
            b[RANGE_STRUCT_SIZE..][..data.len()].copy_from_slice(data);
            b
        };
        let data = [entry(b"a", b"1"), entry(b"bb", b"22")].concat();
        let ok = parse_range(&reply(2, 32, &data), capacity).unwrap();
        assert_eq!(
            ok.records,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"bb".to_vec(), b"22".to_vec())
            ]
        );
        assert!(!ok.more);
        for (count, data_len) in [(3, 32), (1, 32), (2, 24), (2, 65), (2, u64::MAX)] {
            let e = parse_range(&reply(count, data_len, &data), capacity).unwrap_err();
            assert!(
                e.to_string().starts_with("HPKV_IOC_RANGE"),
                "{count} {data_len}: {e}"
            );
        }
        let zero_key = entry(b"", b"1");
        assert!(matches!(
            parse_range(&reply(1, 16, &zero_key), capacity),
            Err(ReplyError::EntryLimits { .. })
        ));
        assert!(
            parse_range(&reply(0, 0, &[]), capacity + 1).is_err(),
            "short buffer"
        );
    }
}
