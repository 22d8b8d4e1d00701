//! libfuse3's CUSE low-level API (bound by bindgen in build.rs) behind safe types: a
//! [`Session`] that registers the character device, a [`Handler`] the daemon implements,
//! and a [`Reply`] per request that may be answered later, from any thread.
//!
//! Life of a CUSE device (libfuse's example/cuse.c, the kernel's fs/fuse/cuse.c): opening
//! /dev/cuse starts a connection; the kernel's first request is `CUSE_INIT`, which libfuse
//! answers with the device name and flags (here `CUSE_UNRESTRICTED_IOCTL`); the kernel then
//! creates the character device (devtmpfs makes the node, udev applies the rules). Closing
//! the /dev/cuse descriptor removes the device.

use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::os::fd::{BorrowedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

// bindgen's output: generated code, its own lints off.
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks
)]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/cuse_sys.rs"));
}

/// An area of the ioctl caller's memory: its address there and its length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallerArea {
    pub base: u64,
    pub len: u64,
}

/// One ioctl round as the kernel delivered it.
pub struct IoctlRequest<'a> {
    pub cmd: u32,
    /// The caller's argument: an address in the caller's memory.
    pub arg: u64,
    /// Bytes the kernel copied in from the areas of the previous retry (empty at first).
    pub input: &'a [u8],
    /// Bytes of caller memory the kernel offers for output.
    pub out_size: usize,
}

/// What a CUSE device does. Called from several worker threads at once.
pub trait Handler: Send + Sync + 'static {
    /// A process opened the device; returns the file handle later calls carry.
    fn open(&self, flags: i32) -> Result<u64, i32>;
    /// The last descriptor of an open file was closed.
    fn release(&self, fh: u64);
    fn read(&self, fh: u64, size: usize, reply: Reply);
    fn write(&self, fh: u64, data: &[u8], reply: Reply);
    fn ioctl(&self, fh: u64, req: IoctlRequest<'_>, reply: Reply);
}

/// The answer to one request. Answer it once, from any thread; a `Reply` dropped
/// unanswered (a bug, a panic, a shutdown) answers EIO, so a caller never hangs.
pub struct Reply {
    req: sys::fuse_req_t,
}

// SAFETY: libfuse lets any thread answer a request: a reply is one write of a whole message
// to the session descriptor, and the request's bookkeeping is under the session's lock.
unsafe impl Send for Reply {}

impl Reply {
    /// Takes the request out, so that Drop does not answer it again.
    fn take(mut self) -> sys::fuse_req_t {
        std::mem::replace(&mut self.req, ptr::null_mut())
    }

    pub fn error(self, errno: i32) {
        let req = self.take();
        // SAFETY: `req` is a live request not yet answered (Reply is consumed by value).
        unsafe { sys::fuse_reply_err(req, errno) };
    }

    /// Answers a read with `data`.
    pub fn data(self, data: &[u8]) {
        let req = self.take();
        // SAFETY: as above; libfuse copies `data` before returning.
        unsafe { sys::fuse_reply_buf(req, data.as_ptr().cast::<c_char>(), data.len()) };
    }

    /// Answers a write: `count` bytes were taken.
    pub fn written(self, count: usize) {
        let req = self.take();
        // SAFETY: as above.
        unsafe { sys::fuse_reply_write(req, count) };
    }

    /// Completes an ioctl with `result` (a negative value is an errno: the caller sees -1
    /// and errno, and the data is still copied out) and the concatenation of `parts`.
    pub fn ioctl(self, result: i32, parts: &[&[u8]]) {
        let iov: Vec<sys::iovec> = parts
            .iter()
            .map(|p| sys::iovec {
                iov_base: p.as_ptr() as *mut c_void,
                iov_len: p.len(),
            })
            .collect();
        let count = c_int::try_from(iov.len()).expect("a reply of a few parts");
        let req = self.take();
        // SAFETY: `req` is live and unanswered; every iovec points into a slice borrowed for
        // the duration of the call, and libfuse only reads them (it writes the message out
        // before returning).
        unsafe { sys::fuse_reply_ioctl_iov(req, result, iov.as_ptr(), count) };
    }

    /// Asks the kernel to copy `input` in and offer `output`, and to call again.
    pub fn ioctl_retry(self, input: &[CallerArea], output: &[CallerArea]) {
        let to_iovec = |v: &CallerArea| sys::iovec {
            iov_base: v.base as *mut c_void,
            iov_len: usize::try_from(v.len).expect("an area of at most 32 pages"),
        };
        let input: Vec<sys::iovec> = input.iter().map(to_iovec).collect();
        let output: Vec<sys::iovec> = output.iter().map(to_iovec).collect();
        let req = self.take();
        // SAFETY: `req` is live and unanswered. The iovecs hold addresses in the *caller's*
        // address space that libfuse only forwards to the kernel (it never dereferences
        // them); the arrays themselves live across the call.
        unsafe {
            sys::fuse_reply_ioctl_retry(
                req,
                input.as_ptr(),
                input.len(),
                output.as_ptr(),
                output.len(),
            )
        };
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.req.is_null() {
            // SAFETY: not answered yet (take() nulls the pointer).
            unsafe { sys::fuse_reply_err(self.req, libc::EIO) };
        }
    }
}

/// Why a session could not be made.
#[derive(Debug)]
pub enum SessionError {
    /// The device name holds a NUL byte.
    NulInName,
    /// `cuse_lowlevel_setup` failed; libfuse printed why.
    Setup,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionError::NulInName => "the device name holds a NUL byte",
            SessionError::Setup => "libfuse could not open /dev/cuse (see the message above)",
        })
    }
}

impl std::error::Error for SessionError {}

/// The handler behind a session, reached from callbacks through the session's userdata.
type Userdata = Arc<dyn Handler>;

/// A registered CUSE device: the connection to /dev/cuse.
pub struct Session {
    se: *mut sys::fuse_session,
    userdata: *mut Userdata,
}

// SAFETY: libfuse's multi-threaded loop calls fuse_session_receive_buf and
// fuse_session_process_buf from several threads on one session; that is all workers do.
// The session is destroyed only in Drop, once no worker uses it.
unsafe impl Send for Session {}
// SAFETY: as for Send: the workers share the session only through those two calls, which
// libfuse makes safe to run from several threads at once.
unsafe impl Sync for Session {}

/// What a receive brought.
pub enum Received {
    Request,
    /// Nothing to read (non-blocking descriptor) or interrupted: poll again.
    Again,
    /// The connection is gone (the kernel aborted it, or the session was told to exit).
    Exited,
    Error(i32),
}

/// A receive buffer; libfuse allocates its memory on first use.
pub struct Buffer(sys::fuse_buf);

impl Buffer {
    pub fn new() -> Buffer {
        Buffer(sys::fuse_buf::default())
    }
}

impl Default for Buffer {
    fn default() -> Buffer {
        Buffer::new()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: `mem` is null or the malloc'ed block libfuse stored there.
        unsafe { libc::free(self.0.mem) };
    }
}

impl Session {
    /// Opens /dev/cuse and asks for a device named `devname`, served by `handler`. The
    /// device appears once a worker has processed the kernel's `CUSE_INIT` request.
    pub fn new(devname: &str, handler: Arc<dyn Handler>) -> Result<Session, SessionError> {
        let devinfo =
            CString::new(format!("DEVNAME={devname}")).map_err(|_| SessionError::NulInName)?;
        let mut devinfo_argv = [devinfo.as_ptr()];
        let info = sys::cuse_info {
            dev_major: 0,
            dev_minor: 0,
            dev_info_argc: 1,
            dev_info_argv: devinfo_argv.as_mut_ptr(),
            flags: sys::CUSE_UNRESTRICTED_IOCTL,
        };
        let ops = sys::cuse_lowlevel_ops {
            open: Some(op_open),
            read: Some(op_read),
            write: Some(op_write),
            release: Some(op_release),
            ioctl: Some(op_ioctl),
            ..Default::default()
        };
        // "-f": stay in the foreground (libfuse would daemonize otherwise).
        let arg_strings: Vec<CString> = ["hpkvd", "-f"]
            .iter()
            .map(|a| CString::new(*a).expect("no NUL"))
            .collect();
        let mut argv: Vec<*mut c_char> =
            arg_strings.iter().map(|a| a.as_ptr().cast_mut()).collect();
        let arg_count = c_int::try_from(argv.len()).expect("two arguments");
        let userdata = Box::into_raw(Box::new(handler));
        let mut multithreaded: c_int = 0;
        // SAFETY: every pointer is valid for the call: libfuse copies the ops, the device
        // info strings and the arguments it keeps. `userdata` stays valid until Drop.
        let se = unsafe {
            sys::cuse_lowlevel_setup(
                arg_count,
                argv.as_mut_ptr(),
                &raw const info,
                &raw const ops,
                &raw mut multithreaded,
                userdata.cast::<c_void>(),
            )
        };
        if se.is_null() {
            // SAFETY: libfuse did not keep `userdata`; reclaim it.
            drop(unsafe { Box::from_raw(userdata) });
            return Err(SessionError::Setup);
        }
        // hpkvd handles its own signals (a signalfd in main); undo libfuse's handlers.
        // SAFETY: `se` is the session cuse_lowlevel_setup just installed handlers for.
        unsafe { sys::fuse_remove_signal_handlers(se) };
        Ok(Session { se, userdata })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the session's descriptor stays open until fuse_session_destroy in Drop,
        // which outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(sys::fuse_session_fd(self.se) as RawFd) }
    }

    /// Reads one request into `buf`.
    pub fn receive(&self, buf: &mut Buffer) -> Received {
        // SAFETY: the session is live; `buf` is this worker's own buffer.
        let n = unsafe { sys::fuse_session_receive_buf(self.se, &raw mut buf.0) };
        if n > 0 {
            Received::Request
        } else if n == -libc::EAGAIN || n == -libc::EINTR {
            Received::Again
        } else if n == 0 || self.exited() {
            Received::Exited
        } else {
            Received::Error(-n)
        }
    }

    /// Dispatches the request in `buf` to the handler (or to libfuse, for `CUSE_INIT`).
    pub fn process(&self, buf: &Buffer) {
        // SAFETY: the session is live and `buf` holds what receive() just read.
        unsafe { sys::fuse_session_process_buf(self.se, &raw const buf.0) };
    }

    pub fn exited(&self) -> bool {
        // SAFETY: the session is live.
        unsafe { sys::fuse_session_exited(self.se) != 0 }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: no worker uses the session any more (the owner joined them); destroying
        // it closes /dev/cuse, which removes the device. Then nothing refers to `userdata`.
        unsafe {
            sys::fuse_session_destroy(self.se);
            drop(Box::from_raw(self.userdata));
        }
    }
}

/// The handler of the session a request belongs to.
///
/// SAFETY: `req` is a live request of a session made by [`Session::new`], whose userdata is
/// a `*mut Userdata` that outlives every request.
unsafe fn handler_of<'a>(req: sys::fuse_req_t) -> &'a Userdata {
    &*sys::fuse_req_userdata(req).cast::<Userdata>()
}

/// Runs `f`, answering EIO if it panics (unwinding must not cross into C).
fn guarded(f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        log::error!("a request handler panicked; the request was answered EIO");
    }
}

unsafe extern "C" fn op_open(req: sys::fuse_req_t, fi: *mut sys::fuse_file_info) {
    // SAFETY (for the whole callback): libfuse passes a live request and a file info that is
    // valid until the reply.
    let handler = handler_of(req);
    let flags = (*fi).flags;
    match catch_unwind(AssertUnwindSafe(|| handler.open(flags))) {
        Ok(Ok(fh)) => {
            (*fi).fh = fh;
            sys::fuse_reply_open(req, fi);
        }
        Ok(Err(errno)) => {
            sys::fuse_reply_err(req, errno);
        }
        Err(_) => {
            sys::fuse_reply_err(req, libc::EIO);
        }
    }
}

unsafe extern "C" fn op_release(req: sys::fuse_req_t, fi: *mut sys::fuse_file_info) {
    // SAFETY: as in op_open.
    let handler = handler_of(req);
    let fh = (*fi).fh;
    guarded(|| handler.release(fh));
    sys::fuse_reply_err(req, 0);
}

unsafe extern "C" fn op_read(
    req: sys::fuse_req_t,
    size: usize,
    _off: libc::off_t,
    fi: *mut sys::fuse_file_info,
) {
    // SAFETY: as in op_open.
    let handler = handler_of(req);
    let fh = (*fi).fh;
    let reply = Reply { req };
    guarded(|| handler.read(fh, size, reply));
}

unsafe extern "C" fn op_write(
    req: sys::fuse_req_t,
    buf: *const c_char,
    size: usize,
    _off: libc::off_t,
    fi: *mut sys::fuse_file_info,
) {
    // SAFETY: as in op_open; `buf` holds `size` bytes until this callback returns.
    let handler = handler_of(req);
    let fh = (*fi).fh;
    let data = if size == 0 {
        &[][..]
    } else {
        std::slice::from_raw_parts(buf.cast::<u8>(), size)
    };
    let reply = Reply { req };
    guarded(|| handler.write(fh, data, reply));
}

#[allow(clippy::too_many_arguments, reason = "libfuse's callback signature")]
unsafe extern "C" fn op_ioctl(
    req: sys::fuse_req_t,
    cmd: c_int,
    arg: *mut c_void,
    fi: *mut sys::fuse_file_info,
    _flags: c_uint,
    in_buf: *const c_void,
    in_bufsz: usize,
    out_bufsz: usize,
) {
    // SAFETY: as in op_open; `in_buf` holds `in_bufsz` bytes until this callback returns.
    let handler = handler_of(req);
    let fh = (*fi).fh;
    let input = if in_bufsz == 0 || in_buf.is_null() {
        &[][..]
    } else {
        std::slice::from_raw_parts(in_buf.cast::<u8>(), in_bufsz)
    };
    let request = IoctlRequest {
        // The kernel's unsigned command number, carried in a C int: the same bits.
        cmd: u32::from_ne_bytes(cmd.to_ne_bytes()),
        arg: arg as u64,
        input,
        out_size: out_bufsz,
    };
    let reply = Reply { req };
    guarded(|| handler.ioctl(fh, request, reply));
}
