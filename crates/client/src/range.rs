//! [`Range`]: the records of a key range, fetched a page at a time with `HPKV_IOC_RANGE`.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Bound;

use nix::errno::Errno;

use hpkv_abi::{self as abi, RangePage, RangeQuery, Record, ReplyError, RequestError};

use crate::{Call, Client, Error, Result, RANGE_INITIAL_CAPACITY};

/// The records of [`Client::range`], in key order; fetches a page whenever it runs out.
/// After an error it yields nothing more.
pub struct Range<'c> {
    client: &'c Client,
    /// The next request's start: after the last key seen.
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    max_count: u32,
    limit: Option<usize>,
    capacity: usize,
    yielded: usize,
    page: VecDeque<Record>,
    done: bool,
}

impl fmt::Debug for Range<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Range")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("max_count", &self.max_count)
            .field("limit", &self.limit)
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}

/// The first key after every key that begins with `prefix`, if there is one: `prefix` with
/// its trailing 0xff bytes dropped and its last byte incremented.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

impl<'c> Range<'c> {
    pub(crate) fn new(client: &'c Client, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Range<'c> {
        Range {
            client,
            start: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
            max_count: 0,
            limit: None,
            capacity: RANGE_INITIAL_CAPACITY,
            yielded: 0,
            page: VecDeque::new(),
            done: false,
        }
    }

    /// Starts at `key`, included.
    #[must_use]
    pub fn from(mut self, key: impl AsRef<[u8]>) -> Self {
        self.start = Bound::Included(key.as_ref().to_vec());
        self
    }

    /// Starts after `key`.
    #[must_use]
    pub fn after(mut self, key: impl AsRef<[u8]>) -> Self {
        self.start = Bound::Excluded(key.as_ref().to_vec());
        self
    }

    /// Ends before `key` (excluded).
    #[must_use]
    pub fn to(mut self, key: impl AsRef<[u8]>) -> Self {
        self.end = Bound::Excluded(key.as_ref().to_vec());
        self
    }

    /// Ends at `key`, included.
    #[must_use]
    pub fn through(mut self, key: impl AsRef<[u8]>) -> Self {
        self.end = Bound::Included(key.as_ref().to_vec());
        self
    }

    /// Only the keys that begin with `prefix` (both bounds at once).
    ///
    /// ```no_run
    /// # let hpkv = hpkv_client::Client::open_default()?;
    /// let users = hpkv.scan().prefix("user:").count();
    /// # Ok::<(), hpkv_client::Error>(())
    /// ```
    #[must_use]
    pub fn prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        let prefix = prefix.as_ref();
        self.start = Bound::Included(prefix.to_vec());
        self.end = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        self
    }

    /// At most `n` records per request (0, the default: as many as fit the buffer).
    #[must_use]
    pub fn max_count(mut self, n: u32) -> Self {
        self.max_count = n;
        self
    }

    /// At most `n` records in all.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// The data room of the first request, in bytes (default [`RANGE_INITIAL_CAPACITY`];
    /// at most [`abi::RANGE_CAPACITY_MAX`]). It grows by itself when one record needs more.
    #[must_use]
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes.clamp(abi::RANGE_ENTRY_HEADER_SIZE + 8, abi::RANGE_CAPACITY_MAX);
        self
    }

    fn remaining(&self) -> Option<usize> {
        self.limit.map(|l| l.saturating_sub(self.yielded))
    }

    /// This request's `max_count`: the per-request bound, within what the limit leaves.
    fn request_count(&self) -> u32 {
        match self.remaining() {
            Some(r) => {
                let r = u32::try_from(r).unwrap_or(u32::MAX);
                if self.max_count == 0 {
                    r
                } else {
                    self.max_count.min(r)
                }
            }
            None => self.max_count,
        }
    }

    /// Fetches the next page into `self.page`, or sets `done`.
    fn fetch(&mut self) -> Result<()> {
        for bound in [&self.start, &self.end] {
            if let Bound::Included(k) | Bound::Excluded(k) = bound {
                if k.len() > abi::KEY_MAX {
                    return Err(Error::Request(RequestError::BoundLength { len: k.len() }));
                }
            }
        }
        let (start, start_exclusive): (&[u8], bool) = match &self.start {
            Bound::Unbounded => (b"", false),
            Bound::Included(k) => (k, false),
            Bound::Excluded(k) => (k, true),
        };
        // The ABI's end is exclusive: an inclusive end is its successor, the key with a NUL
        // appended (when there is room for one; else no end, and `take` stops).
        let end_successor;
        let end: &[u8] = match &self.end {
            Bound::Excluded(k) if k.is_empty() => {
                self.done = true; // nothing is before the empty key
                return Ok(());
            }
            Bound::Excluded(k) => k,
            Bound::Included(k) if k.len() < abi::KEY_MAX => {
                end_successor = [&k[..], &[0]].concat();
                &end_successor
            }
            Bound::Included(_) | Bound::Unbounded => b"",
        };
        let mut query = RangeQuery {
            start,
            start_exclusive,
            end,
            max_count: self.request_count(),
            capacity: self.capacity,
        };
        let page = loop {
            let mut buf = abi::encode_range(&query)?;
            match self.client.io.call(Call::Range(&mut buf)) {
                Ok(_) => break abi::parse_range(&buf, query.capacity)?,
                Err(Errno::ERANGE) => query.capacity = grown(&buf, query.capacity)?,
                Err(e) => return Err(Error::from_errno(e)),
            }
        };
        self.capacity = query.capacity;
        self.take(page)
    }

    /// Checks a page against the order and bounds, and queues its records.
    fn take(&mut self, page: RangePage) -> Result<()> {
        if page.records.is_empty() {
            if page.more {
                return Err(Error::Protocol(ReplyError::EmptyPageWithMore));
            }
            self.done = true;
            return Ok(());
        }
        // The page must continue the order: every key after the start and the previous key.
        let mut previous: Option<&[u8]> = None;
        for (key, _) in &page.records {
            let after_start = match &self.start {
                Bound::Unbounded => true,
                Bound::Included(s) => key >= s,
                Bound::Excluded(s) => key > s,
            };
            let ordered = previous.is_none_or(|p| key.as_slice() > p);
            let before_end = match &self.end {
                Bound::Excluded(e) => key < e,
                _ => true,
            };
            if !(after_start && ordered && before_end) {
                return Err(Error::Protocol(ReplyError::KeyOutOfOrder {
                    key: key.clone(),
                }));
            }
            previous = Some(key);
        }
        self.done = !page.more;
        let last = page.records.last().expect("not empty").0.clone();
        self.start = Bound::Excluded(last);
        self.page.extend(page.records);
        if let Bound::Included(end) = &self.end {
            // Only a 512-byte inclusive end lets keys past it come back.
            if let Some(past) = self.page.iter().position(|(k, _)| k > end) {
                self.page.truncate(past);
                self.done = true;
            }
        }
        Ok(())
    }
}

/// The room to offer after an ERANGE answered in `buf` for `capacity` bytes: what the first
/// record needs, at least twice the room, at most the largest room.
fn grown(buf: &[u8], capacity: usize) -> Result<usize> {
    let needed = abi::range_data_len(buf)?;
    let needed_ok = usize::try_from(needed)
        .ok()
        .filter(|n| (capacity + 1..=abi::RANGE_CAPACITY_MAX).contains(n));
    let Some(needed) = needed_ok else {
        return Err(Error::Protocol(ReplyError::Need {
            needed,
            capacity: capacity as u64,
        }));
    };
    Ok(needed.max(capacity * 2).min(abi::RANGE_CAPACITY_MAX))
}

impl Iterator for Range<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.remaining() == Some(0) {
                return None;
            }
            if let Some(record) = self.page.pop_front() {
                self.yielded += 1;
                return Some(Ok(record));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"user:"), Some(b"user;".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
