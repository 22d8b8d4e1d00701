//! The dump format of `hpkvctl dump` and `hpkvctl load`, all integers little-endian:
//!
//! ```text
//! header  "HPKVDUMP"  u32 version = 1  u32 reserved = 0
//! record  u16 key_len (1..=512)  u32 value_len (1..=102400)  key  value      (repeated)
//! end     u16 0  u64 number of records
//! ```
//!
//! A file without the end mark is truncated; `load` checks a whole file before it stores
//! anything (standard input is stored as it comes).

use std::fmt;
use std::io::{self, Read, Write};

use hpkv_abi as abi;

/// The first bytes of every dump.
pub const DUMP_MAGIC: &[u8; 8] = b"HPKVDUMP";
/// The version this hpkvctl writes and reads.
pub const DUMP_VERSION: u32 = 1;
/// Bytes of the header: magic, version, reserved.
pub const HEADER_BYTES: u64 = 16;
/// Bytes of a record's lengths.
const RECORD_HEADER_BYTES: u64 = 6;
/// Bytes of the end mark.
const END_BYTES: u64 = 10;

/// A key and its value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Why a dump cannot be read.
#[derive(Debug)]
pub enum DumpError {
    /// Reading it failed.
    Io(io::Error),
    /// Its contents are not a valid dump.
    Invalid(Invalid),
}

/// What is wrong with a dump's contents.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    /// It does not begin with [`DUMP_MAGIC`].
    NotADump,
    /// Another version of the format.
    Version(u32),
    /// It ends before its end mark, after this many records.
    Truncated { records: u64 },
    /// The end mark counts other than the records before it.
    Count { said: u64, found: u64 },
    /// A record with lengths outside the ABI's limits.
    Record {
        index: u64,
        offset: u64,
        key_len: usize,
        value_len: usize,
    },
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::Io(e) => e.fmt(f),
            DumpError::Invalid(Invalid::NotADump) => {
                f.write_str("not an hpkvctl dump (no HPKVDUMP header)")
            }
            DumpError::Invalid(Invalid::Version(v)) => write!(
                f,
                "dump format version {v}; this hpkvctl reads version {DUMP_VERSION}"
            ),
            DumpError::Invalid(Invalid::Truncated { records }) => {
                write!(f, "truncated after {records} records")
            }
            DumpError::Invalid(Invalid::Count { said, found }) => write!(
                f,
                "the end mark says {said} records, the file holds {found}"
            ),
            DumpError::Invalid(Invalid::Record {
                index,
                offset,
                key_len,
                value_len,
            }) => write!(
                f,
                "record {index} at byte {offset}: a {key_len}-byte key and a {value_len}-byte value"
            ),
        }
    }
}

impl std::error::Error for DumpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DumpError::Io(e) => Some(e),
            DumpError::Invalid(_) => None,
        }
    }
}

/// Writes a dump: [`DumpWriter::new`], a [`DumpWriter::record`] each, [`DumpWriter::finish`].
pub struct DumpWriter<W> {
    out: W,
    count: u64,
}

impl<W: Write> DumpWriter<W> {
    /// Writes the header.
    pub fn new(mut out: W) -> io::Result<DumpWriter<W>> {
        out.write_all(DUMP_MAGIC)?;
        out.write_all(&DUMP_VERSION.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        Ok(DumpWriter { out, count: 0 })
    }

    /// Writes one record; its key and value are within the ABI's limits (the store holds no
    /// others).
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let key_len = u16::try_from(key.len()).expect("a key of at most 512 bytes");
        let value_len = u32::try_from(value.len()).expect("a value of at most 102400 bytes");
        assert!((1..=abi::KEY_MAX).contains(&key.len()));
        self.out.write_all(&key_len.to_le_bytes())?;
        self.out.write_all(&value_len.to_le_bytes())?;
        self.out.write_all(key)?;
        self.out.write_all(value)?;
        self.count += 1;
        Ok(())
    }

    /// Writes the end mark; returns the output and the number of records.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.out.write_all(&0u16.to_le_bytes())?;
        self.out.write_all(&self.count.to_le_bytes())?;
        self.out.flush()?;
        Ok((self.out, self.count))
    }
}

/// Reads a dump, record by record.
pub struct DumpReader<R> {
    inner: R,
    /// Records read so far.
    pub count: u64,
    /// Bytes read so far.
    pub offset: u64,
}

impl<R: Read> DumpReader<R> {
    /// Reads and checks the header.
    pub fn new(mut inner: R) -> Result<DumpReader<R>, DumpError> {
        let mut header = [0u8; 16];
        read_exact_or(&mut inner, &mut header, 0).map_err(|e| match e {
            DumpError::Invalid(Invalid::Truncated { .. }) => DumpError::Invalid(Invalid::NotADump),
            e => e,
        })?;
        if &header[..8] != DUMP_MAGIC {
            return Err(DumpError::Invalid(Invalid::NotADump));
        }
        let version = abi::le::u32_at(&header, 8);
        if version != DUMP_VERSION {
            return Err(DumpError::Invalid(Invalid::Version(version)));
        }
        Ok(DumpReader {
            inner,
            count: 0,
            offset: HEADER_BYTES,
        })
    }

    /// The next record, or `None` at the end mark (whose count is checked).
    pub fn next_record(&mut self) -> Result<Option<Record>, DumpError> {
        let mut len = [0u8; 2];
        read_exact_or(&mut self.inner, &mut len, self.count)?;
        let key_len = usize::from(u16::from_le_bytes(len));
        if key_len == 0 {
            let mut n = [0u8; 8];
            read_exact_or(&mut self.inner, &mut n, self.count)?;
            let said = u64::from_le_bytes(n);
            if said != self.count {
                return Err(DumpError::Invalid(Invalid::Count {
                    said,
                    found: self.count,
                }));
            }
            self.offset += END_BYTES;
            return Ok(None);
        }
        let mut vlen = [0u8; 4];
        read_exact_or(&mut self.inner, &mut vlen, self.count)?;
        let value_len = usize::try_from(u32::from_le_bytes(vlen)).unwrap_or(usize::MAX);
        if key_len > abi::KEY_MAX || !(1..=abi::VALUE_MAX).contains(&value_len) {
            return Err(DumpError::Invalid(Invalid::Record {
                index: self.count + 1,
                offset: self.offset,
                key_len,
                value_len,
            }));
        }
        let mut key = vec![0u8; key_len];
        let mut value = vec![0u8; value_len];
        read_exact_or(&mut self.inner, &mut key, self.count)?;
        read_exact_or(&mut self.inner, &mut value, self.count)?;
        self.count += 1;
        self.offset += RECORD_HEADER_BYTES + (key_len + value_len) as u64;
        Ok(Some((key, value)))
    }
}

/// `read_exact`; an early end is a dump truncated after `records` records.
fn read_exact_or(r: &mut impl Read, buf: &mut [u8], records: u64) -> Result<(), DumpError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => DumpError::Invalid(Invalid::Truncated { records }),
        _ => DumpError::Io(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump_bytes(records: &[(&[u8], &[u8])], count: u64) -> Vec<u8> {
        let mut w = DumpWriter::new(vec![]).unwrap();
        for (k, v) in records {
            w.record(k, v).unwrap();
        }
        let (mut b, written) = w.finish().unwrap();
        assert_eq!(written, records.len() as u64);
        let end = b.len() - 8;
        b[end..].copy_from_slice(&count.to_le_bytes());
        b
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, String> {
        let err = |e: DumpError| e.to_string();
        let mut r = DumpReader::new(bytes).map_err(err)?;
        let mut all = vec![];
        while let Some(kv) = r.next_record().map_err(err)? {
            all.push(kv);
        }
        assert_eq!(r.offset, bytes.len() as u64, "every byte read");
        Ok(all)
    }

    #[test]
    fn dump_format_round_trips_and_refuses_damage() {
        let records: [(&[u8], &[u8]); 2] = [(b"a\0:", b"\n\0v"), (b"b", b"x")];
        let good = dump_bytes(&records, 2);
        let got = read_all(&good).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.as_slice(), got[0].1.as_slice()), records[0]);
        assert_eq!(
            read_all(&good[..good.len() - 1]).unwrap_err(),
            "truncated after 2 records"
        );
        assert_eq!(
            read_all(&good[..20]).unwrap_err(),
            "truncated after 0 records"
        );
        assert!(read_all(&dump_bytes(&records, 3))
            .unwrap_err()
            .contains("end mark says 3"));
        assert!(read_all(b"HPKVDUMX\x01\0\0\0\0\0\0\0")
            .unwrap_err()
            .contains("not an hpkvctl dump"));
        let mut bad = dump_bytes(&[(b"k", b"v")], 1);
        bad[18..22].copy_from_slice(&0u32.to_le_bytes());
        assert!(read_all(&bad).unwrap_err().contains("0-byte value"));
        assert_eq!(read_all(&dump_bytes(&[], 0)).unwrap(), vec![]);
    }
}
