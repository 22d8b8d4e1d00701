//! The CUSE server: registers the device and serves its requests with a pool of threads.
//!
//! A CUSE channel cannot be cloned, so every worker reads the same /dev/cuse descriptor.
//! It is non-blocking: a worker polls it together with a stop event, and a worker that lost
//! the race for a request just polls again. A slow request (a disk read, a large value)
//! holds one worker; the others go on. A write holds its worker while that worker commits
//! it (when no commit is under way); writes arriving meanwhile are queued by their workers,
//! which are free at once, and answered by the committing one once durable (group commit).
//!
//! With `--poll-us N`, one worker at a time spins before it sleeps: it reads the descriptor
//! without blocking, over and over, for up to N µs after its last request, so that a request
//! arriving meanwhile is taken without the wake-up of a sleeping thread. That costs up to one
//! CPU while requests keep coming, and nothing once they stop for N µs.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, AtFlags, FcntlArg, OFlag, AT_FDCWD};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::EventFd;
use nix::unistd::{faccessat, AccessFlags};

use crate::ffi::cuse::{Buffer, Received, Session, SessionError};
pub use crate::ffi::cuse::{CallerArea, Handler, IoctlRequest, Reply};

/// Worker threads at most (each holds a receive buffer of about 1 MiB).
pub const WORKERS_MAX: usize = 64;
/// The longest a worker may spin for requests (`--poll-us`), in µs.
pub const POLL_US_MAX: u64 = 10_000;

/// A CUSE device: `/dev/cuse` opened for it (before the privilege drop), then served by
/// worker threads.
pub struct Server {
    name: String,
    session: Arc<Session>,
    handler: Arc<Deferred>,
    stop: Arc<EventFd>,
    spin: Arc<Spin>,
    workers: Vec<JoinHandle<()>>,
}

/// The spinning worker's bounds: how long, who spins, and when to stop.
struct Spin {
    time: Duration,
    /// Set while one worker spins; the others sleep in `poll`.
    taken: AtomicBool,
    /// Set when the workers must stop (the stop event wakes the sleeping ones).
    stopping: AtomicBool,
}

/// Why the device could not be served.
#[derive(Debug)]
pub enum StartError {
    /// This kernel has no CUSE.
    NoCuse,
    /// `/dev/cuse` exists but this process may not open it.
    Access(nix::Error),
    /// Another hpkvd serves `/dev/NAME` already (it is in `/sys/class/cuse`).
    NameInUse { name: String },
    /// libfuse could not open the session.
    Session(SessionError),
    /// Making `/dev/cuse` non-blocking failed.
    NonBlocking(nix::Error),
    /// The workers' stop event could not be made.
    StopEvent(nix::Error),
    /// A worker thread could not be started.
    Spawn(std::io::Error),
    /// The kernel did not create the device: the workers ended first.
    Refused { name: String },
    /// The device did not appear in time.
    Timeout { name: String, timeout: Duration },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NoCuse => f.write_str(
                "/dev/cuse not found: this kernel has no CUSE (CONFIG_CUSE); try 'modprobe cuse', \
                 or run hpkvd in the VM (see README, \"Without CUSE\")",
            ),
            StartError::Access(e) => write!(f, "/dev/cuse: {e} (opening it)"),
            StartError::NameInUse { name } => {
                write!(f, "another hpkvd is already serving /dev/{name}")
            }
            StartError::Session(e) => e.fmt(f),
            StartError::NonBlocking(e) => write!(f, "/dev/cuse: {e}"),
            StartError::StopEvent(e) => write!(f, "eventfd: {e}"),
            StartError::Spawn(e) => write!(f, "spawning a worker: {e}"),
            StartError::Refused { name } => write!(
                f,
                "the kernel refused to create /dev/{name}: another hpkvd already serving that name?"
            ),
            StartError::Timeout { name, timeout } => {
                write!(f, "/dev/{name} did not appear within {timeout:?}")
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Session(e) => Some(e),
            StartError::Access(e) | StartError::NonBlocking(e) | StartError::StopEvent(e) => {
                Some(e)
            }
            StartError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// Whether this kernel offers CUSE.
pub fn available() -> bool {
    Path::new("/dev/cuse").exists()
}

/// The handler of a session opened before the daemon's handler exists (the store is opened
/// after the privilege drop, `/dev/cuse` before it). No request but `CUSE_INIT`, which libfuse
/// answers itself, can arrive before [`Server::start`] sets it.
#[derive(Default)]
struct Deferred(OnceLock<Arc<dyn Handler>>);

impl Handler for Deferred {
    fn open(&self, flags: i32) -> Result<u64, i32> {
        self.0.get().ok_or(libc::ENODEV)?.open(flags)
    }
    fn release(&self, fh: u64) {
        if let Some(h) = self.0.get() {
            h.release(fh);
        }
    }
    fn read(&self, fh: u64, size: usize, reply: Reply) {
        match self.0.get() {
            Some(h) => h.read(fh, size, reply),
            None => reply.error(libc::ENODEV),
        }
    }
    fn write(&self, fh: u64, data: &[u8], reply: Reply) {
        match self.0.get() {
            Some(h) => h.write(fh, data, reply),
            None => reply.error(libc::ENODEV),
        }
    }
    fn ioctl(&self, fh: u64, req: IoctlRequest<'_>, reply: Reply) {
        match self.0.get() {
            Some(h) => h.ioctl(fh, req, reply),
            None => reply.error(libc::ENODEV),
        }
    }
}

impl Server {
    /// Opens `/dev/cuse` for a device named `/dev/<name>`. Nothing is registered until
    /// [`Server::start`]: the kernel creates the device once a worker answers its `CUSE_INIT`.
    pub fn open(name: &str) -> Result<Server, StartError> {
        if !available() {
            return Err(StartError::NoCuse);
        }
        let rw = AccessFlags::R_OK | AccessFlags::W_OK;
        faccessat(AT_FDCWD, "/dev/cuse", rw, AtFlags::AT_EACCESS).map_err(StartError::Access)?;
        if Path::new("/sys/class/cuse").join(name).exists() {
            return Err(StartError::NameInUse {
                name: name.to_string(),
            });
        }
        let handler = Arc::new(Deferred::default());
        let session = Arc::new(Session::new(name, handler.clone()).map_err(StartError::Session)?);
        let fd = session.fd();
        let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(StartError::NonBlocking)?;
        fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(StartError::NonBlocking)?;
        let stop = Arc::new(EventFd::new().map_err(StartError::StopEvent)?);
        Ok(Server {
            name: name.to_string(),
            session,
            handler,
            stop,
            spin: Arc::new(Spin {
                time: Duration::ZERO,
                taken: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
            }),
            workers: Vec::new(),
        })
    }

    /// Serves the device with `handler` on `threads` workers; with `poll_us` > 0, one of them
    /// at a time spins for up to `poll_us` µs (at most [`POLL_US_MAX`]) before it sleeps.
    pub fn start(
        &mut self,
        handler: Arc<dyn Handler>,
        threads: usize,
        poll_us: u64,
    ) -> Result<(), StartError> {
        assert!(self.workers.is_empty(), "a server starts once");
        assert!(
            self.handler.0.set(handler).is_ok(),
            "the handler is set once, by start"
        );
        self.spin = Arc::new(Spin {
            time: Duration::from_micros(poll_us.min(POLL_US_MAX)),
            taken: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        });
        for i in 0..threads.clamp(1, WORKERS_MAX) {
            let (session, stop, spin) =
                (self.session.clone(), self.stop.clone(), self.spin.clone());
            let worker = std::thread::Builder::new()
                .name(format!("hpkv-cuse-{i}"))
                .spawn(move || work(&session, &stop, &spin))
                .map_err(StartError::Spawn)?;
            self.workers.push(worker);
        }
        Ok(())
    }

    /// Waits until the kernel has created the device (it does so once a worker answered
    /// `CUSE_INIT`), or says why it did not.
    pub fn wait_registered(&self, timeout: Duration) -> Result<(), StartError> {
        let sysfs = Path::new("/sys/class/cuse").join(&self.name);
        let deadline = Instant::now() + timeout;
        while !sysfs.exists() {
            if self.session.exited() || self.workers.iter().all(JoinHandle::is_finished) {
                return Err(StartError::Refused {
                    name: self.name.clone(),
                });
            }
            if Instant::now() >= deadline {
                return Err(StartError::Timeout {
                    name: self.name.clone(),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// The event that stops the workers; it is also signalled when the connection dies.
    pub fn stop_event(&self) -> Arc<EventFd> {
        self.stop.clone()
    }

    /// Stops the workers. The device stays registered (pending replies can still be sent)
    /// until [`Server::unregister`].
    pub fn stop_workers(&mut self) {
        self.spin.stopping.store(true, Ordering::Relaxed);
        let _ = self.stop.write(1);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Removes the device: closes /dev/cuse.
    pub fn unregister(mut self) {
        self.stop_workers();
        drop(self.session);
    }
}

fn work(session: &Session, stop: &EventFd, spin: &Spin) {
    let mut buf = Buffer::new();
    loop {
        if spin_for_request(session, &mut buf, spin) {
            session.process(&buf);
            continue;
        }
        let mut fds = [
            PollFd::new(session.fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                log::error!("poll on /dev/cuse: {e}");
                break;
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return;
        }
        match session.receive(&mut buf) {
            Received::Request => session.process(&buf),
            Received::Again => {}
            Received::Exited => {
                log::warn!("the kernel closed the CUSE connection");
                break;
            }
            Received::Error(errno) => {
                log::error!("reading /dev/cuse: {}", nix::errno::Errno::from_raw(errno));
                break;
            }
        }
    }
    // Wake everybody (and main): the connection is unusable.
    let _ = stop.write(1);
}

/// Reads the descriptor without blocking until a request comes or `spin.time` passes, if no
/// other worker is spinning (`true`: a request is in `buf`). An end of the connection or an
/// error is left for the caller's `poll` and read to find.
fn spin_for_request(session: &Session, buf: &mut Buffer, spin: &Spin) -> bool {
    if spin.time.is_zero() || spin.taken.swap(true, Ordering::Acquire) {
        return false;
    }
    let deadline = Instant::now() + spin.time;
    let got = loop {
        match session.receive(buf) {
            Received::Request => break true,
            Received::Again => {}
            Received::Exited | Received::Error(_) => break false,
        }
        if spin.stopping.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break false;
        }
        std::hint::spin_loop();
    };
    spin.taken.store(false, Ordering::Release);
    got
}
