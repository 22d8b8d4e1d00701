//! The CUSE server: registers the device and serves its requests with a pool of threads.
//!
//! A CUSE channel cannot be cloned, so every worker reads the same /dev/cuse descriptor. Each
//! idle worker waits in an epoll of its own that holds the descriptor with `EPOLLEXCLUSIVE`
//! (and the stop event without): the kernel wakes one waiting worker per request, which reads
//! it and serves it. So a request wakes one thread, not every worker (each wake-up of a thread
//! that then finds nothing to read cost a whole CPU under load in the VM), and no worker hands
//! a turn to another (a second wake-up per request, which cost about 1 ms per write in the VM:
//! README, "Through the device"). A slow request (a disk read, a large value) holds one
//! worker; the others go on. A write holds its worker while that worker commits
//! it (when no commit is under way); writes arriving meanwhile are queued by their workers,
//! which are free at once, and answered by the committing one once durable (group commit).
//!
//! With `--poll-us N`, a worker spins before it sleeps (one worker at a time): it reads the
//! descriptor without blocking, over and over, for up to N µs, so that a request arriving
//! meanwhile is taken without waking a sleeping thread. That costs up to one CPU while
//! requests keep coming, and nothing once they stop for N µs.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, AtFlags, FcntlArg, OFlag, AT_FDCWD};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
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
    turns: Arc<Turns>,
    workers: Vec<JoinHandle<()>>,
}

/// What the workers share about waiting for requests.
struct Turns {
    /// Set while a worker spins (`--poll-us`): one spins at a time.
    spinning: AtomicBool,
    /// How long a worker spins before it sleeps in `epoll_wait` (`--poll-us`).
    spin: Duration,
    /// Set when the workers must stop (the stop event wakes a listener asleep in `poll`).
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
    /// A worker's epoll could not be made.
    Epoll(nix::Error),
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
            StartError::Epoll(e) => write!(f, "epoll: {e}"),
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
            StartError::Access(e)
            | StartError::NonBlocking(e)
            | StartError::StopEvent(e)
            | StartError::Epoll(e) => Some(e),
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
            turns: Arc::new(Turns {
                spinning: AtomicBool::new(false),
                spin: Duration::ZERO,
                stopping: AtomicBool::new(false),
            }),
            workers: Vec::new(),
        })
    }

    /// Serves the device with `handler` on `threads` workers; with `poll_us` > 0, the listener
    /// spins for up to `poll_us` µs (at most [`POLL_US_MAX`]) before it sleeps.
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
        self.turns = Arc::new(Turns {
            spinning: AtomicBool::new(false),
            spin: Duration::from_micros(poll_us.min(POLL_US_MAX)),
            stopping: AtomicBool::new(false),
        });
        for i in 0..threads.clamp(1, WORKERS_MAX) {
            let waiter = waiter(&self.session, &self.stop).map_err(StartError::Epoll)?;
            let (session, stop, turns) =
                (self.session.clone(), self.stop.clone(), self.turns.clone());
            let worker = std::thread::Builder::new()
                .name(format!("hpkv-cuse-{i}"))
                .spawn(move || work(&session, &waiter, &stop, &turns))
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
        self.turns.stopping.store(true, Ordering::Relaxed);
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

/// What a listener's wait ended with.
enum Next {
    /// A request is in the buffer.
    Request,
    /// The stop event: return.
    Stop,
    /// The connection ended or failed: stop everybody.
    End,
}

/// The `data` of the stop event's epoll entry (the descriptor's is 0).
const STOP_EVENT: u64 = 1;

/// A worker's epoll: the CUSE descriptor, of which the kernel wakes one waiting worker per
/// request (`EPOLLEXCLUSIVE`), and the stop event, which wakes them all.
fn waiter(session: &Session, stop: &EventFd) -> nix::Result<Epoll> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let exclusive = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
    epoll.add(session.fd(), EpollEvent::new(exclusive, 0))?;
    epoll.add(
        stop.as_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, STOP_EVENT),
    )?;
    Ok(epoll)
}

fn work(session: &Session, waiter: &Epoll, stop: &EventFd, turns: &Turns) {
    let mut buf = Buffer::new();
    loop {
        match listen(session, waiter, &mut buf, turns) {
            Next::Request => session.process(&buf),
            Next::Stop => return,
            Next::End => break,
        }
    }
    // Wake everybody (and main): the connection is unusable.
    let _ = stop.write(1);
}

/// A worker's wait for the next request: spinning first (`--poll-us`), then in `epoll_wait`.
fn listen(session: &Session, waiter: &Epoll, buf: &mut Buffer, turns: &Turns) -> Next {
    if spin_for_request(session, buf, turns) {
        return Next::Request;
    }
    loop {
        let mut events = [EpollEvent::empty(); 2];
        let ready = match waiter.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => {
                log::error!("epoll_wait on /dev/cuse: {e}");
                return Next::End;
            }
        };
        // The stop event stays readable, so every worker sees it.
        if events[..ready].iter().any(|e| e.data() == STOP_EVENT) {
            return Next::Stop;
        }
        // Another worker may have read the request first (a spinning one): then wait again.
        match session.receive(buf) {
            Received::Request => return Next::Request,
            Received::Again => {}
            Received::Exited => {
                log::warn!("the kernel closed the CUSE connection");
                return Next::End;
            }
            Received::Error(errno) => {
                log::error!("reading /dev/cuse: {}", nix::errno::Errno::from_raw(errno));
                return Next::End;
            }
        }
    }
}

/// Reads the descriptor without blocking until a request comes or `turns.spin` passes
/// (`true`: a request is in `buf`), unless another worker spins already. An end of the
/// connection or an error is left for `epoll_wait` and the read after it to find.
fn spin_for_request(session: &Session, buf: &mut Buffer, turns: &Turns) -> bool {
    if turns.spin.is_zero() || turns.spinning.swap(true, Ordering::Acquire) {
        return false;
    }
    let deadline = Instant::now() + turns.spin;
    let got = loop {
        match session.receive(buf) {
            Received::Request => break true,
            Received::Again => {}
            Received::Exited | Received::Error(_) => break false,
        }
        if turns.stopping.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break false;
        }
        std::hint::spin_loop();
    };
    turns.spinning.store(false, Ordering::Release);
    got
}
