//! An in-memory block device that models a disk with a volatile write cache, for crash and
//! fault-injection tests.
//!
//! Writes land in the cache and are visible to reads at once; [`BlockDevice::flush`] makes
//! them durable. At a crash ([`FaultyDevice::crash_image`]) every durable byte survives and
//! each unflushed block survives or not, independently or as a prefix of the write order,
//! chosen by a seed: exactly what a real disk may do on power loss (blocks are atomic,
//! longer writes tear, the cache reorders). The device can also be told to crash after a
//! given number of operations, or to fail writes or flushes with an error.
//!
//! Reads can be faulted too ([`ReadFault`]): a read that touches a given byte fails with EIO
//! or returns that byte with a bit flipped, while the medium keeps what was written; or the
//! n-th read from now fails. [`FaultyDevice::corrupt`] flips a bit on the medium itself.

use std::io;
use std::sync::Mutex;

use super::device::BlockDevice;
use crate::num::{u64_of, usize_of};

/// How unflushed blocks fare at a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unflushed block is lost.
    LoseAll,
    /// Every unflushed block survives (the cache was written back just in time).
    KeepAll,
    /// The unflushed blocks survive in write order up to a random point (an in-order disk).
    Prefix,
    /// Each unflushed block survives with probability 1/2, in any order.
    Random,
}

/// A fault of the reads that touch the byte at `offset` (the medium keeps its bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFault {
    /// The read fails with EIO.
    Eio {
        /// The byte whose reads fail.
        offset: u64,
    },
    /// The read returns the byte with a bit flipped.
    Flip {
        /// The byte.
        offset: u64,
        /// Which bit (0..8).
        bit: u8,
    },
}

impl ReadFault {
    fn offset(self) -> u64 {
        match self {
            ReadFault::Eio { offset } | ReadFault::Flip { offset, .. } => offset,
        }
    }
}

#[derive(Default)]
struct State {
    durable: Vec<u8>,
    visible: Vec<u8>,
    /// Unflushed blocks, in write order: (offset, bytes of one block).
    pending: Vec<(u64, Vec<u8>)>,
    /// Operations (writes and flushes) so far.
    ops: u64,
    /// After this many operations the device is gone: the crash point.
    crash_after_ops: Option<u64>,
    crashed: bool,
    /// Fail these operation numbers with EIO (the device stays alive).
    fail_ops: Vec<u64>,
    writes: u64,
    flushes: u64,
    /// Reads so far.
    reads: u64,
    /// Faults of the reads that touch given bytes.
    read_faults: Vec<ReadFault>,
    /// Fail these read numbers with EIO.
    fail_reads: Vec<u64>,
    /// Reads a fault acted on.
    faulted_reads: u64,
}

/// The fault-injecting device (see the module's text).
pub struct FaultyDevice {
    block_size: u32,
    state: Mutex<State>,
}

impl FaultyDevice {
    /// A zeroed device of `size_bytes` with `block_size`-byte blocks.
    pub fn new(size_bytes: u64, block_size: u32) -> FaultyDevice {
        Self::from_image(vec![0; usize_of(size_bytes)], block_size)
    }

    /// A device holding `image` (durable), with `block_size`-byte blocks.
    pub fn from_image(image: Vec<u8>, block_size: u32) -> FaultyDevice {
        assert!(u64_of(image.len()) % u64::from(block_size) == 0);
        FaultyDevice {
            block_size,
            state: Mutex::new(State {
                visible: image.clone(),
                durable: image,
                ..State::default()
            }),
        }
    }

    /// The device dies after `ops` more writes and flushes: later ones fail with EIO and
    /// are not applied. [`FaultyDevice::crash_image`] then gives what survived.
    pub fn crash_after(&self, ops: u64) {
        let mut s = self.state.lock().expect("poisoned");
        s.crash_after_ops = Some(s.ops + ops);
    }

    /// Operation number `n` (counting from now, 0-based) fails with EIO but the device lives on.
    pub fn fail_op(&self, n: u64) {
        let mut s = self.state.lock().expect("poisoned");
        let at = s.ops + n;
        s.fail_ops.push(at);
    }

    /// Every later read that touches `fault`'s byte is faulted, until
    /// [`FaultyDevice::clear_read_faults`].
    pub fn add_read_fault(&self, fault: ReadFault) {
        self.state.lock().expect("poisoned").read_faults.push(fault);
    }

    /// Read number `n` (counting from now, 0-based) fails with EIO.
    pub fn fail_read(&self, n: u64) {
        let mut s = self.state.lock().expect("poisoned");
        let at = s.reads + n;
        s.fail_reads.push(at);
    }

    /// Reads behave again.
    pub fn clear_read_faults(&self) {
        let mut s = self.state.lock().expect("poisoned");
        s.read_faults.clear();
        s.fail_reads.clear();
    }

    /// (reads so far, reads a fault acted on).
    pub fn read_counts(&self) -> (u64, u64) {
        let s = self.state.lock().expect("poisoned");
        (s.reads, s.faulted_reads)
    }

    /// Flips bit `bit` of the byte at `offset` on the medium (durable and visible): damage
    /// that every later read sees.
    pub fn corrupt(&self, offset: u64, bit: u8) {
        let mut s = self.state.lock().expect("poisoned");
        let at = usize::try_from(offset).expect("offset fits");
        s.durable[at] ^= 1 << (bit % 8);
        s.visible[at] ^= 1 << (bit % 8);
    }

    /// Whether the crash point was reached.
    pub fn has_crashed(&self) -> bool {
        self.state.lock().expect("poisoned").crashed
    }

    /// (writes, flushes) so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.state.lock().expect("poisoned");
        (s.writes, s.flushes)
    }

    /// Operations (writes and flushes) so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().expect("poisoned").ops
    }

    /// What a disk would hold after power loss now.
    pub fn crash_image(&self, mode: CrashMode, seed: u64) -> Vec<u8> {
        let s = self.state.lock().expect("poisoned");
        let mut image = s.durable.clone();
        let mut rng = SplitMix64(seed);
        let keep_prefix = match s.pending.len() {
            0 => 0,
            n => usize_of(rng.next_u64() % (u64_of(n) + 1)),
        };
        for (i, (offset, block)) in s.pending.iter().enumerate() {
            let keep = match mode {
                CrashMode::LoseAll => false,
                CrashMode::KeepAll => true,
                CrashMode::Prefix => i < keep_prefix,
                CrashMode::Random => rng.next_u64() & 1 == 1,
            };
            if keep {
                let at = usize_of(*offset);
                image[at..at + block.len()].copy_from_slice(block);
            }
        }
        image
    }

    /// The current contents as reads see them.
    pub fn visible_image(&self) -> Vec<u8> {
        self.state.lock().expect("poisoned").visible.clone()
    }

    /// Applies the read faults to a read of `buf` at `offset`; counts the read.
    fn fault_read(s: &mut State, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let n = s.reads;
        s.reads += 1;
        if s.fail_reads.contains(&n) {
            s.faulted_reads += 1;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let end = offset + u64_of(buf.len());
        let mut hit = false;
        for f in s
            .read_faults
            .iter()
            .filter(|f| (offset..end).contains(&f.offset()))
        {
            hit = true;
            match *f {
                ReadFault::Eio { .. } => {
                    s.faulted_reads += 1;
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
                ReadFault::Flip { offset: at, bit } => {
                    buf[usize::try_from(at - offset).expect("in the buffer")] ^= 1 << (bit % 8);
                }
            }
        }
        s.faulted_reads += u64::from(hit);
        Ok(())
    }

    /// Counts an operation; `Err` if it must fail.
    fn begin_op(s: &mut State) -> io::Result<()> {
        if s.crashed {
            return Err(io::Error::other("device crashed"));
        }
        let n = s.ops;
        s.ops += 1;
        if s.crash_after_ops.is_some_and(|at| n >= at) {
            s.crashed = true;
            return Err(io::Error::other("device crashed"));
        }
        if s.fail_ops.contains(&n) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

impl BlockDevice for FaultyDevice {
    fn size_bytes(&self) -> u64 {
        u64_of(self.state.lock().expect("poisoned").visible.len())
    }

    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut s = self.state.lock().expect("poisoned");
        let bs = u64::from(self.block_size);
        assert!(
            offset % bs == 0 && u64_of(buf.len()) % bs == 0,
            "unaligned read"
        );
        let at = usize_of(offset);
        let src = s
            .visible
            .get(at..at + buf.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        buf.copy_from_slice(src);
        Self::fault_read(&mut s, buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.state.lock().expect("poisoned");
        let bs = usize_of(u64::from(self.block_size));
        assert!(
            offset % u64_of(bs) == 0 && buf.len() % bs == 0,
            "unaligned write"
        );
        if usize_of(offset) + buf.len() > s.visible.len() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Self::begin_op(&mut s)?;
        s.writes += 1;
        for (i, block) in buf.chunks(bs).enumerate() {
            let at = usize_of(offset) + i * bs;
            s.visible[at..at + bs].copy_from_slice(block);
            s.pending.push((u64_of(at), block.to_vec()));
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let mut s = self.state.lock().expect("poisoned");
        Self::begin_op(&mut s)?;
        s.flushes += 1;
        let pending = std::mem::take(&mut s.pending);
        for (at, block) in pending {
            let at = usize_of(at);
            s.durable[at..at + block.len()].copy_from_slice(&block);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "fault-injecting memory device".to_string()
    }
}

/// A tiny deterministic generator, so that a crash seed reproduces a failure exactly.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unflushed_writes_are_visible_but_not_durable() {
        let d = FaultyDevice::new(8192, 512);
        d.write_at(&[1u8; 1024], 512).unwrap();
        let mut r = [0u8; 512];
        d.read_at(&mut r, 1024).unwrap();
        assert_eq!(r, [1u8; 512]);
        assert!(d.crash_image(CrashMode::LoseAll, 0).iter().all(|&b| b == 0));
        assert_eq!(
            &d.crash_image(CrashMode::KeepAll, 0)[512..1536],
            &[1u8; 1024][..]
        );
        d.flush().unwrap();
        assert_eq!(
            &d.crash_image(CrashMode::LoseAll, 0)[512..1536],
            &[1u8; 1024][..]
        );
    }

    #[test]
    fn random_crash_tears_multi_block_writes_at_block_boundaries() {
        let d = FaultyDevice::new(64 * 512, 512);
        d.write_at(&[3u8; 32 * 512], 0).unwrap();
        let img = d.crash_image(CrashMode::Random, 7);
        let kept: Vec<bool> = img.chunks(512).take(32).map(|b| b[0] == 3).collect();
        assert!(
            kept.iter().any(|&k| k) && kept.iter().any(|&k| !k),
            "seed 7 should tear: {kept:?}"
        );
        for b in img.chunks(512) {
            assert!(
                b.iter().all(|&x| x == b[0]),
                "a block is never half-written"
            );
        }
    }

    #[test]
    fn read_faults_act_on_reads_only_and_clear() {
        let d = FaultyDevice::new(4096, 512);
        d.write_at(&[7u8; 1024], 512).unwrap();
        d.add_read_fault(ReadFault::Flip {
            offset: 600,
            bit: 1,
        });
        d.add_read_fault(ReadFault::Eio { offset: 2048 });
        let mut r = [0u8; 512];
        d.read_at(&mut r, 512).unwrap();
        assert_eq!(r[88], 7 ^ 2, "the flipped byte");
        assert!(r.iter().enumerate().all(|(i, &b)| i == 88 || b == 7));
        assert!(d.read_at(&mut r, 2048).is_err());
        d.read_at(&mut r, 1024).unwrap();
        assert_eq!(d.read_counts(), (3, 2));
        d.fail_read(1);
        d.read_at(&mut r, 1024).unwrap();
        assert!(
            d.read_at(&mut r, 1024).is_err(),
            "the second read from then fails"
        );
        d.clear_read_faults();
        d.read_at(&mut r, 512).unwrap();
        assert_eq!(r, [7u8; 512], "the medium kept its bytes");
        d.corrupt(513, 0);
        d.read_at(&mut r, 512).unwrap();
        assert_eq!(r[1], 6, "damage on the medium is read back");
        assert_eq!(d.crash_image(CrashMode::LoseAll, 0)[513], 1, "durable too");
    }

    #[test]
    fn crash_point_stops_the_device() {
        let d = FaultyDevice::new(4096, 512);
        d.crash_after(2);
        d.write_at(&[1u8; 512], 0).unwrap();
        d.flush().unwrap();
        assert!(d.write_at(&[2u8; 512], 512).is_err());
        assert!(d.has_crashed());
        assert!(d.flush().is_err());
        let img = d.crash_image(CrashMode::KeepAll, 0);
        assert_eq!(img[0], 1);
        assert_eq!(img[512], 0);
    }
}
