//! The store through the real device: every path the workloads and the verifier use, each
//! returning the errno the device answered.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use hpkv_abi::Profile;
use hpkv_client::Client;
use nix::errno::Errno;

use crate::ffi::{Arena, Target};
use crate::rng::Rng;

/// Room for a readme GET: the largest value and its NUL, a key, and slack.
const GET_ARENA_BYTES: usize = 128 * 1024;
/// What the arena is filled with before a readme GET, to see how far the reply reached.
const FILL: u8 = 0xa5;

/// One record of a listing or a RANGE scan.
pub type Record = (Vec<u8>, Vec<u8>);

pub struct Store {
    pub path: PathBuf,
    file: File,
    /// Every call through the device.
    client: Client,
    /// GETs through hpkvd's shared view when it can answer (the device otherwise).
    viewer: Client,
    arena: Arena,
}

fn errno_of(e: &hpkv_client::Error) -> Errno {
    Errno::from_raw(e.errno())
}

impl Store {
    /// Opens the device; the profile must be readme (the workloads use its DELETE and GET).
    pub fn open(path: &Path) -> Result<Store, Errno> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        let dup = || file.try_clone().map_err(|_| Errno::EMFILE);
        let client = Client::from_file(dup()?)
            .map_err(|e| errno_of(&e))?
            .without_view();
        if client.profile() != Profile::Readme {
            return Err(Errno::EPROTO);
        }
        let viewer = Client::from_file(dup()?).map_err(|e| errno_of(&e))?;
        Ok(Store {
            path: path.to_owned(),
            file,
            client,
            viewer,
            arena: Arena::new(GET_ARENA_BYTES),
        })
    }

    /// `write(fd, data, n)`; a count other than `n` is a protocol error.
    pub fn write(&self, data: &[u8]) -> Result<(), Errno> {
        match nix::unistd::write(&self.file, data) {
            Ok(n) if n == data.len() => Ok(()),
            Ok(_) => Err(Errno::EPROTO),
            Err(e) => Err(e),
        }
    }

    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), Errno> {
        self.client.put(key, value).map_err(|e| errno_of(&e))
    }

    pub fn partial_update(&self, key: &[u8], suffix: &[u8]) -> Result<(), Errno> {
        self.client.append(key, suffix).map_err(|e| errno_of(&e))
    }

    /// DELETE; ENOENT for a missing key.
    pub fn delete(&self, key: &[u8]) -> Result<(), Errno> {
        match self.client.delete(key) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Errno::ENOENT),
            Err(e) => Err(errno_of(&e)),
        }
    }

    pub fn purge(&self) -> Result<(), Errno> {
        self.client.purge().map_err(|e| errno_of(&e))
    }

    pub fn sync(&self) -> Result<(), Errno> {
        self.client.sync().map_err(|e| errno_of(&e))
    }

    pub fn stats(&self) -> Result<hpkv_abi::StatsRecord, Errno> {
        self.client.stats().map_err(|e| errno_of(&e))
    }

    /// A GET as an ordinary client makes it: from hpkvd's shared view when the view can
    /// answer, with no system call, else through the device. The second value says whether
    /// the view answered.
    pub fn get_view(&self, key: &[u8]) -> Result<(Option<Vec<u8>>, bool), Errno> {
        let before = self.viewer.view_counters();
        let v = self.viewer.get(key).map_err(|e| errno_of(&e))?;
        let after = self.viewer.view_counters();
        Ok((v, after.device == before.device))
    }

    /// The bounded GET extension, through the device.
    pub fn get_safe(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Errno> {
        self.client.get(key).map_err(|e| errno_of(&e))
    }

    /// The module's GET (command 0, readme profile): the key and a NUL in, the value and a
    /// NUL out. The value must hold no NUL (the workloads' never do); EPROTO when the reply
    /// is not exactly value and NUL.
    pub fn get_readme(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Errno> {
        let buf = self.arena.bytes();
        buf.fill(FILL);
        buf[..key.len()].copy_from_slice(key);
        buf[key.len()] = 0;
        let fd = self.file.as_fd();
        match self.arena.ioctl(fd, hpkv_abi::CMD_GET, Target::At(0)) {
            Ok(_) => {}
            Err(Errno::ENOENT) => {
                // The buffer is left as it was.
                let buf = self.arena.bytes();
                let untouched = buf[..key.len()] == *key
                    && buf[key.len()] == 0
                    && buf[key.len() + 1..].iter().all(|&b| b == FILL);
                return if untouched {
                    Ok(None)
                } else {
                    Err(Errno::EPROTO)
                };
            }
            Err(e) => return Err(e),
        }
        let buf = self.arena.bytes();
        let len = buf.iter().position(|&b| b == 0).ok_or(Errno::EPROTO)?;
        // Nothing past the NUL: exactly value_len + 1 bytes are written (unless the value
        // was shorter than the key, whose tail then stays).
        let tail_from = (len + 1).max(key.len() + 1);
        if buf[tail_from..].iter().any(|&b| b != FILL) {
            return Err(Errno::EPROTO);
        }
        Ok(Some(buf[..len].to_vec()))
    }

    /// The records with keys in `[start, end)` through RANGE, in order.
    pub fn client_range(&self, start: &[u8], end: &[u8]) -> Result<Vec<Record>, Errno> {
        use std::ops::Bound::{Excluded, Included};
        self.client
            .range(Included(start), Excluded(end))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| errno_of(&e))
    }

    /// Every record through RANGE, in order.
    pub fn range_all(&self) -> Result<Vec<Record>, Errno> {
        self.client
            .scan()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| errno_of(&e))
    }

    /// Every byte of the listing `read()`, on a new open file, `read()`ing random amounts.
    pub fn listing(path: &Path, rng: &mut Rng) -> Result<Vec<u8>, Errno> {
        let mut f = File::open(path).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let want = match rng.below(4) {
                0 => rng.len(1, 64),
                1 => rng.len(64, 4096),
                _ => rng.len(4096, buf.len()),
            };
            match f.read(&mut buf[..want]) {
                Ok(0) => return Ok(out),
                Ok(n) if n <= want => out.extend_from_slice(&buf[..n]),
                Ok(_) => return Err(Errno::EPROTO),
                Err(e) => return Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
            }
        }
    }
}

/// Splits a listing into records: each line `key ':' value '\n'`, the key free of colons and
/// the value of newlines (true of every key and value the workloads write).
pub fn parse_listing(text: &[u8]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(format!(
                "the listing ends without a newline after {} records",
                out.len()
            ));
        };
        let line = &rest[..nl];
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(format!("listing line {} has no colon", out.len() + 1));
        };
        out.push((line[..colon].to_vec(), line[colon + 1..].to_vec()));
        rest = &rest[nl + 1..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_lines_split_at_the_first_colon() {
        let recs = parse_listing(b"a:1\nb:x:y\n").unwrap();
        assert_eq!(
            recs,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"x:y".to_vec())
            ]
        );
        assert!(parse_listing(b"a:1\nb").is_err());
        assert!(parse_listing(b"nocolon\n").is_err());
        assert_eq!(parse_listing(b"").unwrap(), vec![]);
    }
}
