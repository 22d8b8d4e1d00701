//! The dedicated block device (or image file) under the store.
//!
//! All I/O goes through [`BlockDevice`]: aligned reads and writes at byte offsets and a
//! cache flush. [`FileDevice`] is the real one (direct I/O, exclusive claim); the
//! fault-injecting [`super::faulty::FaultyDevice`] implements the same trait for crash tests.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;
use nix::fcntl::{Flock, FlockArg};

use crate::num::u64_of;
use crate::sys;

/// A device that stores bytes at offsets. Offsets and lengths of reads and writes are
/// multiples of [`BlockDevice::block_size`]. Writes may sit in a volatile cache until
/// [`BlockDevice::flush`] returns; a write of one block is atomic (all or nothing), a
/// longer write may tear at block boundaries.
pub trait BlockDevice: Send + Sync {
    /// The device's size in bytes.
    fn size_bytes(&self) -> u64;
    /// The logical block size: the unit of atomic writes and of direct-I/O alignment.
    fn block_size(&self) -> u32;
    /// Fills `buf` with the bytes at `offset`.
    ///
    /// # Errors
    /// The device's failure, or a read past its end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes `buf` at `offset` (it may sit in the volatile cache until a flush).
    ///
    /// # Errors
    /// The device's failure.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Writes `buf` at `offset` into the kernel's page cache: once it returns the bytes
    /// survive the death of this process (the kernel holds them), and a [`BlockDevice::flush`]
    /// puts them on stable media like those of [`BlockDevice::write_at`]. Cheaper than a
    /// direct write: no device request is waited for. Reads and direct writes see it (the
    /// kernel writes dirty pages back before direct I/O to the same range).
    ///
    /// # Errors
    /// The device's failure.
    fn write_cached(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_at(buf, offset)
    }
    /// Returns once every write that returned before the call is on stable media.
    ///
    /// # Errors
    /// The device's failure: the writes before it may or may not be durable.
    fn flush(&self) -> io::Result<()>;
    /// A name for messages.
    fn describe(&self) -> String;
}

/// A zeroed, page-aligned buffer, as direct I/O needs. Backed by an anonymous mapping.
pub struct AlignedBuf {
    map: MmapMut,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    ///
    /// # Errors
    /// When the memory cannot be mapped.
    pub fn zeroed(len: usize) -> io::Result<AlignedBuf> {
        // A zero-length anonymous map is an error; keep one page behind empty buffers.
        let map = MmapMut::map_anon(len.max(1))?;
        Ok(AlignedBuf { map, len })
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.map[..self.len]
    }
}

/// `x` rounded down to a multiple of `to`.
pub fn align_down(x: u64, to: u64) -> u64 {
    x - x % to
}

/// `x` rounded up to a multiple of `to`.
pub fn align_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

/// Why a device could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenDeviceError {
    /// Nothing at that path.
    NotFound(PathBuf),
    /// Another process holds it (another hpkvd, a mount, ...).
    Busy(PathBuf),
    /// A directory, a socket, ...
    NotABlockDeviceOrFile(PathBuf),
    /// Opening or probing it failed.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for OpenDeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenDeviceError::NotFound(p) => write!(f, "{}: no such device or file", p.display()),
            OpenDeviceError::Busy(p) => write!(
                f,
                "{}: in use by another process (another hpkvd, or mounted); hpkv needs it exclusively",
                p.display()
            ),
            OpenDeviceError::NotABlockDeviceOrFile(p) => {
                write!(f, "{}: neither a block device nor a regular file", p.display())
            }
            OpenDeviceError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for OpenDeviceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenDeviceError::Io(_, e) => Some(e),
            _ => None,
        }
    }
}

/// A block device or a regular image file, opened for direct I/O and claimed exclusively.
pub struct FileDevice {
    file: Flock<File>,
    /// The same device opened without `O_DIRECT`, for [`BlockDevice::write_cached`]; `None`
    /// when `file` is buffered already.
    cached: Option<File>,
    path: PathBuf,
    size: u64,
    block_size: u32,
    direct: bool,
}

/// Block size used for image files: safe for direct I/O on every common file system.
pub const FILE_BLOCK_SIZE: u32 = 4096;

impl FileDevice {
    /// Opens `path`. A block device is opened with `O_EXCL` (the kernel's exclusive claim);
    /// every device also gets an exclusive `flock`, so a second hpkvd is refused.
    ///
    /// # Errors
    /// [`OpenDeviceError`]: missing, busy, not a device or file, or failing.
    pub fn open(path: &Path) -> Result<FileDevice, OpenDeviceError> {
        let err = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => OpenDeviceError::NotFound(path.to_owned()),
            _ if e.raw_os_error() == Some(libc::EBUSY) => OpenDeviceError::Busy(path.to_owned()),
            _ => OpenDeviceError::Io(path.to_owned(), e),
        };
        let meta = std::fs::metadata(path).map_err(err)?;
        let is_block = meta.file_type().is_block_device();
        if !is_block && !meta.is_file() {
            return Err(OpenDeviceError::NotABlockDeviceOrFile(path.to_owned()));
        }
        let open = |direct: bool| {
            let mut flags = 0;
            if direct {
                flags |= libc::O_DIRECT;
            }
            if is_block {
                flags |= libc::O_EXCL;
            }
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(flags)
                .open(path)
        };
        let (file, direct) = match open(true) {
            Ok(f) => (f, true),
            // tmpfs and a few others refuse O_DIRECT: run buffered, flushes still make it safe.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                log::warn!(
                    "{}: the file system refuses direct I/O; using buffered I/O (flushes still order writes)",
                    path.display()
                );
                (open(false).map_err(err)?, false)
            }
            Err(e) => return Err(err(e)),
        };
        let file =
            lock_exclusive(file, is_block).map_err(|_| OpenDeviceError::Busy(path.to_owned()))?;
        let cached = if direct {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(err)?;
            Some(f)
        } else {
            None
        };
        let (size, block_size) = if is_block {
            let size = sys::block_device_size(&*file).map_err(err)?;
            let bs = sys::block_device_logical_block_size(&*file).map_err(err)?;
            (size, bs)
        } else {
            (meta.len(), FILE_BLOCK_SIZE)
        };
        Ok(FileDevice {
            file,
            cached,
            path: path.to_owned(),
            size,
            block_size,
            direct,
        })
    }

    /// Whether I/O bypasses the page cache (`O_DIRECT`).
    pub fn is_direct(&self) -> bool {
        self.direct
    }
}

impl BlockDevice for FileDevice {
    fn size_bytes(&self) -> u64 {
        self.size
    }

    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check_aligned(buf.len(), offset);
        let mut done = 0;
        while done < buf.len() {
            match nix::sys::uio::pread(&*self.file, &mut buf[done..], file_offset(offset, done)?) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "read past the end of the device",
                    ))
                }
                Ok(n) => done += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_aligned(buf.len(), offset);
        write_all_at(&self.file, buf, offset)
    }

    fn write_cached(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_aligned(buf.len(), offset);
        match &self.cached {
            Some(f) => write_all_at(f, buf, offset),
            None => write_all_at(&self.file, buf, offset),
        }
    }

    fn flush(&self) -> io::Result<()> {
        // fdatasync acts on the device (the inode), whichever descriptor wrote: it covers
        // the cached writes too.
        nix::unistd::fdatasync(&*self.file).map_err(io::Error::from)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// `pwrite` until every byte of `buf` is written at `offset`.
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match nix::sys::uio::pwrite(file, &buf[done..], file_offset(offset, done)?) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "device accepted no bytes",
                ))
            }
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The `off_t` of `offset + done`.
fn file_offset(offset: u64, done: usize) -> io::Result<i64> {
    u64_of(done)
        .checked_add(offset)
        .and_then(|at| i64::try_from(at).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset past 2^63"))
}

impl FileDevice {
    /// Direct I/O needs block-aligned offsets and lengths; the engine always gives them.
    fn check_aligned(&self, len: usize, offset: u64) {
        let block = u64::from(self.block_size);
        assert!(
            offset % block == 0 && u64_of(len) % block == 0,
            "unaligned I/O of {len} bytes at {offset}"
        );
    }
}

/// How long to wait for udev's shared lock on a block device to go away.
const UDEV_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes an exclusive `flock` on the device, the protocol of systemd's "Locking Block Device
/// Access": udev takes a shared lock on a block device while it probes it and leaves alone
/// a device someone holds exclusively. On a block device, which `O_EXCL` already keeps from
/// any other hpkvd or mount, a busy lock is udev's brief probe: wait for it a little. On an
/// image file only another hpkvd holds such a lock: give up at once.
fn lock_exclusive(mut file: File, is_block: bool) -> Result<Flock<File>, nix::errno::Errno> {
    let deadline = std::time::Instant::now() + UDEV_LOCK_WAIT;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((f, e))
                if is_block
                    && e == nix::errno::Errno::EWOULDBLOCK
                    && std::time::Instant::now() < deadline =>
            {
                file = f;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err((_, e)) => return Err(e),
        }
    }
}

/// Creates a sparse image file of `size_bytes` if `path` does not exist; returns whether
/// it did.
///
/// # Errors
/// When the file cannot be created or sized.
pub fn create_image_if_missing(path: &Path, size_bytes: u64) -> io::Result<bool> {
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(f) => {
            f.set_len(size_bytes)?;
            f.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_are_page_aligned_and_zeroed() {
        let b = AlignedBuf::zeroed(10_000).unwrap();
        assert_eq!(b.as_ptr().align_offset(4096), 0);
        assert_eq!(b.len(), 10_000);
        assert!(b.iter().all(|&x| x == 0));
    }

    #[test]
    fn file_device_round_trip_and_exclusive_claim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.img");
        assert!(create_image_if_missing(&path, 1 << 20).unwrap());
        assert!(!create_image_if_missing(&path, 1 << 20).unwrap());
        let dev = FileDevice::open(&path).unwrap();
        assert_eq!(dev.size_bytes(), 1 << 20);
        let mut w = AlignedBuf::zeroed(8192).unwrap();
        w[100] = 7;
        w[5000] = 9;
        dev.write_at(&w, 4096).unwrap();
        dev.flush().unwrap();
        let mut r = AlignedBuf::zeroed(8192).unwrap();
        dev.read_at(&mut r, 4096).unwrap();
        assert_eq!(&r[..], &w[..]);
        match FileDevice::open(&path) {
            Err(OpenDeviceError::Busy(_)) => {}
            Err(e) => panic!("second open failed with the wrong error: {e}"),
            Ok(_) => panic!("second open of the same device must be refused"),
        }
        drop(dev);
        FileDevice::open(&path).expect("open again after the first holder closed it");
    }
}
