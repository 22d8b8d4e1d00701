//! `HPKV_IOC_PUT_BATCH`: many records in one request. The client packs them with
//! [`PutBatch`]; the daemon's decoder checks the whole batch before anything is stored and
//! hands out [`BatchRecords`].

use std::mem::offset_of;

use nix::errno::Errno;

use crate::le::{set_u32, u16_at, u32_at};
use crate::request::{granule_rest, iov, key_len, value_len, Command, Decoded, Retry};
use crate::{
    uapi, RequestError, BATCH_ENTRY_HEADER_SIZE, KEY_MAX, PUT_BATCH_HEADER_SIZE, PUT_BATCH_MAX,
    VALUE_MAX,
};

/// Bytes of entries a batch carries at most (after its header).
pub const PUT_BATCH_BYTES_MAX: usize = PUT_BATCH_MAX - PUT_BATCH_HEADER_SIZE;

/// Bytes one entry takes in a batch: `struct hpkv_batch_entry`, key, value, padding to 8
/// (`HPKV_BATCH_ENTRY_SIZE`).
pub const fn batch_entry_size(key_len: usize, value_len: usize) -> usize {
    crate::entry_size(key_len, value_len)
}

/// The smallest entry: a 1-byte key and a 1-byte value.
const ENTRY_SIZE_MIN: usize = batch_entry_size(1, 1);
const _: () = assert!(
    ENTRY_SIZE_MIN == 16,
    "the figure PUT_BATCH_RECORDS_MAX's doc gives"
);
/// Records one batch holds at most (each entry takes at least 16 bytes: a header, a 1-byte key
/// and a 1-byte value, padded to 8).
pub const PUT_BATCH_RECORDS_MAX: usize = PUT_BATCH_BYTES_MAX / ENTRY_SIZE_MIN;

// One largest record fits in a batch on its own.
const _: () = assert!(batch_entry_size(KEY_MAX, VALUE_MAX) <= PUT_BATCH_BYTES_MAX);

/// The argument of `HPKV_IOC_PUT_BATCH`, packed a record at a time (the client's side).
///
/// ```
/// use hpkv_abi::PutBatch;
///
/// let mut batch = PutBatch::new();
/// assert!(batch.push(b"a", b"1")?);
/// assert!(batch.push(b"b\0", b"2\n")?);
/// assert_eq!(batch.count(), 2);
/// // A record that would pass PUT_BATCH_MAX is refused with Ok(false): send, then start anew.
/// # Ok::<(), hpkv_abi::RequestError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutBatch {
    buf: Vec<u8>,
    count: u32,
}

impl Default for PutBatch {
    fn default() -> PutBatch {
        PutBatch::new()
    }
}

impl PutBatch {
    /// An empty batch (a header with a zero count, which the device refuses with EINVAL).
    pub fn new() -> PutBatch {
        PutBatch {
            buf: vec![0; PUT_BATCH_HEADER_SIZE],
            count: 0,
        }
    }

    /// Adds a record: `Ok(false)`, leaving the batch as it was, when it would pass
    /// [`PUT_BATCH_MAX`].
    ///
    /// # Errors
    /// [`RequestError::KeyLength`] or [`RequestError::ValueLength`] outside 1 to
    /// [`KEY_MAX`] and 1 to [`VALUE_MAX`].
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<bool, RequestError> {
        key_len(key, KEY_MAX)?;
        value_len(value)?;
        if self.buf.len() + batch_entry_size(key.len(), value.len()) > PUT_BATCH_MAX {
            return Ok(false);
        }
        crate::append_entry(&mut self.buf, key, value);
        self.count += 1;
        let bytes = u32::try_from(self.buf.len() - PUT_BATCH_HEADER_SIZE).expect("bounded");
        set_u32(
            &mut self.buf,
            offset_of!(uapi::hpkv_put_batch, count),
            self.count,
        );
        set_u32(
            &mut self.buf,
            offset_of!(uapi::hpkv_put_batch, bytes),
            bytes,
        );
        Ok(true)
    }

    /// Records in the batch.
    pub fn count(&self) -> usize {
        self.count as usize
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the whole argument (header and entries), at most [`PUT_BATCH_MAX`].
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The argument as the ioctl takes it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.resize(PUT_BATCH_HEADER_SIZE, 0);
        self.count = 0;
    }
}

/// The argument of `HPKV_IOC_PUT_BATCH` holding `records`, all of them.
///
/// # Errors
/// [`RequestError::KeyLength`], [`RequestError::ValueLength`], or
/// [`RequestError::BatchSize`] when they do not fit in one batch.
pub fn encode_put_batch(records: &[(&[u8], &[u8])]) -> Result<PutBatch, RequestError> {
    let bytes: usize = PUT_BATCH_HEADER_SIZE
        + records
            .iter()
            .map(|(k, v)| batch_entry_size(k.len(), v.len()))
            .sum::<usize>();
    let mut batch = PutBatch::new();
    for (key, value) in records {
        if !batch.push(key, value)? {
            return Err(RequestError::BatchSize {
                bytes,
                max: PUT_BATCH_MAX,
            });
        }
    }
    Ok(batch)
}

/// The records of a batch the decoder checked: each key 1 to [`KEY_MAX`] bytes, each value
/// 1 to [`VALUE_MAX`], at least one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRecords<'a> {
    count: usize,
    entries: &'a [u8],
}

impl<'a> BatchRecords<'a> {
    /// Records in the batch.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The records, in the batch's order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let mut rest = self.entries;
        (0..self.count).map(move |_| {
            let (key, value, size) = entry_at(rest).expect("the decoder checked every entry");
            rest = &rest[size..];
            (key, value)
        })
    }
}

/// The entry at the start of `entries`: key, value and the bytes it takes; `None` when it
/// is malformed or overruns `entries`.
fn entry_at(entries: &[u8]) -> Option<(&[u8], &[u8], usize)> {
    if entries.len() < BATCH_ENTRY_HEADER_SIZE {
        return None;
    }
    let key_len = usize::from(u16_at(entries, offset_of!(uapi::hpkv_batch_entry, key_len)));
    let reserved = u16_at(entries, offset_of!(uapi::hpkv_batch_entry, reserved));
    let value_len = usize::try_from(u32_at(
        entries,
        offset_of!(uapi::hpkv_batch_entry, value_len),
    ))
    .ok()?;
    let lengths_ok = (1..=KEY_MAX).contains(&key_len) && (1..=VALUE_MAX).contains(&value_len);
    let size = batch_entry_size(key_len, value_len);
    if !lengths_ok || reserved != 0 || size > entries.len() {
        return None;
    }
    let key_at = BATCH_ENTRY_HEADER_SIZE;
    let value_at = key_at + key_len;
    Some((
        &entries[key_at..value_at],
        &entries[value_at..value_at + value_len],
        size,
    ))
}

/// Checks every entry of a batch: `count` of them filling `entries` exactly.
fn check_entries(count: usize, entries: &[u8]) -> Result<BatchRecords<'_>, Errno> {
    let mut rest = entries;
    for _ in 0..count {
        let (_, _, size) = entry_at(rest).ok_or(Errno::EINVAL)?;
        rest = &rest[size..];
    }
    if !rest.is_empty() {
        return Err(Errno::EINVAL);
    }
    Ok(BatchRecords { count, entries })
}

/// `HPKV_IOC_PUT_BATCH`: the header (with the rest of its page), then the whole batch.
pub(crate) fn decode_put_batch(arg: u64, input: &[u8]) -> Decoded<'_> {
    if input.len() < PUT_BATCH_HEADER_SIZE {
        let len = granule_rest(arg).clamp(PUT_BATCH_HEADER_SIZE, PUT_BATCH_MAX);
        return Decoded::Retry(Retry {
            input: vec![iov(arg, len)],
            output: vec![],
        });
    }
    let field = |offset| u32_at(input, offset);
    let count = field(offset_of!(uapi::hpkv_put_batch, count)) as usize;
    let bytes = field(offset_of!(uapi::hpkv_put_batch, bytes)) as usize;
    let flags = field(offset_of!(uapi::hpkv_put_batch, flags));
    let reserved = field(offset_of!(uapi::hpkv_put_batch, reserved));
    if count == 0 || flags != 0 || reserved != 0 {
        return Decoded::Fail(Errno::EINVAL);
    }
    if bytes > PUT_BATCH_BYTES_MAX {
        return Decoded::Fail(Errno::EMSGSIZE);
    }
    if count > bytes / ENTRY_SIZE_MIN {
        return Decoded::Fail(Errno::EINVAL);
    }
    let total = PUT_BATCH_HEADER_SIZE + bytes;
    if input.len() < total {
        return Decoded::Retry(Retry {
            input: vec![iov(arg, total)],
            output: vec![],
        });
    }
    match check_entries(count, &input[PUT_BATCH_HEADER_SIZE..total]) {
        Ok(records) => Decoded::Ready(Command::PutBatch(records)),
        Err(e) => Decoded::Fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::le::set_u32;
    use crate::{decode_ioctl, Profile, IOC_PUT_BATCH};

    const ARG: u64 = 0x10_0000;

    fn decode(input: &[u8]) -> Decoded<'_> {
        decode_ioctl(Profile::Readme, IOC_PUT_BATCH, ARG, input, 0)
    }

    fn records(batch: &PutBatch) -> Vec<(Vec<u8>, Vec<u8>)> {
        match decode(batch.as_bytes()) {
            Decoded::Ready(Command::PutBatch(r)) => {
                let got: Vec<_> = r.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
                assert_eq!(got.len(), r.count());
                got
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encoder_and_decoder_agree() {
        let value_max = vec![7u8; VALUE_MAX];
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"a", b"1"),
            (b"k\0:\n", b"v:\0\n"),
            (&[b'k'; KEY_MAX], &value_max),
            (b"a", b"again"),
        ];
        let batch = encode_put_batch(&want).unwrap();
        assert_eq!(batch.count(), 4);
        assert_eq!(batch.len() % 8, 0);
        let got = records(&batch);
        let want: Vec<_> = want.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_decoder_asks_for_the_header_then_the_whole_batch() {
        let batch = encode_put_batch(&[(b"k", &[1u8; 5000])]).unwrap();
        let Decoded::Retry(first) = decode(&[]) else {
            panic!("the first round asks for the header");
        };
        assert_eq!(first.input.len(), 1);
        assert_eq!(first.input[0].base, ARG);
        assert!(first.input[0].len >= PUT_BATCH_HEADER_SIZE as u64);
        assert!(first.output.is_empty());
        let Decoded::Retry(second) = decode(&batch.as_bytes()[..PUT_BATCH_HEADER_SIZE]) else {
            panic!("the second round asks for the whole batch");
        };
        assert_eq!(second.input[0].len, batch.len() as u64);
        assert_eq!(records(&batch).len(), 1);
        // A header at the end of its page: the first round asks for the header alone.
        let at_end = 0x10_0000 - 16;
        let Decoded::Retry(r) = decode_ioctl(Profile::Readme, IOC_PUT_BATCH, at_end, &[], 0) else {
            panic!("retry");
        };
        assert_eq!(r.input[0].len, PUT_BATCH_HEADER_SIZE as u64);
    }

    #[test]
    fn the_builder_keeps_to_the_limit() {
        let mut batch = PutBatch::new();
        let value = vec![1u8; 10_000];
        let mut n = 0;
        while batch.push(format!("{n}").as_bytes(), &value).unwrap() {
            n += 1;
        }
        assert!(batch.len() <= PUT_BATCH_MAX);
        assert!(batch.len() + batch_entry_size(2, value.len()) > PUT_BATCH_MAX);
        assert_eq!(records(&batch).len(), n);
        assert_eq!(
            batch.push(b"", b"x"),
            Err(RequestError::KeyLength { len: 0, max: 512 })
        );
        assert!(batch.push(b"k", &[]).is_err());
        assert!(batch.push(b"k", &vec![0; VALUE_MAX + 1]).is_err());
        let too_many: Vec<(&[u8], &[u8])> = vec![(b"k", &value); 14];
        assert!(matches!(
            encode_put_batch(&too_many),
            Err(RequestError::BatchSize {
                max: PUT_BATCH_MAX,
                ..
            })
        ));
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(batch.len(), PUT_BATCH_HEADER_SIZE);
        // The smallest records: the most a batch holds.
        let mut batch = PutBatch::new();
        while batch.push(b"k", b"v").unwrap() {}
        assert_eq!(batch.count(), PUT_BATCH_RECORDS_MAX);
        assert_eq!(records(&batch).len(), PUT_BATCH_RECORDS_MAX);
    }

    /// Every malformed batch is refused whole, with the errno the ABI names.
    #[test]
    fn malformed_batches_are_refused() {
        let good = encode_put_batch(&[(b"a", b"1"), (b"bb", b"22")]).unwrap();
        let set = |offset: usize, v: u32| {
            let mut b = good.as_bytes().to_vec();
            set_u32(&mut b, offset, v);
            b
        };
        let header = |name| match name {
            "count" => offset_of!(uapi::hpkv_put_batch, count),
            "bytes" => offset_of!(uapi::hpkv_put_batch, bytes),
            "flags" => offset_of!(uapi::hpkv_put_batch, flags),
            _ => offset_of!(uapi::hpkv_put_batch, reserved),
        };
        let entry2 = PUT_BATCH_HEADER_SIZE + batch_entry_size(1, 1);
        let cases: Vec<(&str, Vec<u8>, Errno)> = vec![
            ("zero count", set(header("count"), 0), Errno::EINVAL),
            (
                "count over the entries",
                set(header("count"), 3),
                Errno::EINVAL,
            ),
            (
                "count under the entries",
                set(header("count"), 1),
                Errno::EINVAL,
            ),
            ("huge count", set(header("count"), u32::MAX), Errno::EINVAL),
            ("flags", set(header("flags"), 1), Errno::EINVAL),
            ("reserved", set(header("reserved"), 1), Errno::EINVAL),
            ("bytes short", set(header("bytes"), 16), Errno::EINVAL),
            ("bytes long", set(header("bytes"), 40), Errno::EINVAL),
            (
                "bytes over the limit",
                set(
                    header("bytes"),
                    u32::try_from(PUT_BATCH_BYTES_MAX + 8).unwrap(),
                ),
                Errno::EMSGSIZE,
            ),
            (
                "bytes huge",
                set(header("bytes"), u32::MAX),
                Errno::EMSGSIZE,
            ),
            ("value_len 0", set(entry2 + 4, 0), Errno::EINVAL),
            ("value_len over", set(entry2 + 4, 102_401), Errno::EINVAL),
            ("value_len overruns", set(entry2 + 4, 9), Errno::EINVAL),
            ("key_len 0", set(entry2, 0), Errno::EINVAL),
            ("key_len over", set(entry2, 513), Errno::EINVAL),
            ("entry reserved", set(entry2, 0x1_0002), Errno::EINVAL),
        ];
        for (what, mut input, errno) in cases {
            // What follows the batch in the caller's memory, should the header claim more.
            input.resize(input.len() + 64, 0);
            // The header round alone already refuses what the header says wrong.
            let got = match decode(&input[..PUT_BATCH_HEADER_SIZE]) {
                Decoded::Retry(r) => {
                    let len = usize::try_from(r.input[0].len).unwrap().min(input.len());
                    decode(&input[..len])
                }
                other => other,
            };
            assert_eq!(got, Decoded::Fail(errno), "{what}");
        }
        assert_eq!(
            decode_ioctl(Profile::V13, IOC_PUT_BATCH, 0, &[], 0),
            Decoded::Fail(Errno::EFAULT)
        );
    }
}
