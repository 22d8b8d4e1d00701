//! The CUSE server: registers the device and serves its requests with a pool of threads.
//!
//! A CUSE channel cannot be cloned, so every worker reads the same /dev/cuse descriptor.
//! It is non-blocking: a worker polls it together with a stop event, and a worker that lost
//! the race for a request just polls again. A slow request (a disk read, a large value)
//! holds one worker; the others go on. Writes do not hold a worker at all: their replies
//! are sent by the engine's committer once the write is durable.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::EventFd;

use crate::ffi::cuse::{Buffer, Received, Session};
pub use crate::ffi::cuse::{CallerArea, Handler, IoctlRequest, Reply};

/// Worker threads at most (each holds a receive buffer of about 1 MiB).
pub const WORKERS_MAX: usize = 64;

/// A running CUSE device.
pub struct Server {
    name: String,
    session: Arc<Session>,
    stop: Arc<EventFd>,
    workers: Vec<JoinHandle<()>>,
}

/// Why the device could not be served.
#[derive(Debug)]
pub enum StartError {
    /// This kernel has no CUSE.
    NoCuse,
    Other(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NoCuse => f.write_str(
                "/dev/cuse not found: this kernel has no CUSE (CONFIG_CUSE); try 'modprobe cuse', \
                 or run hpkvd in the VM (see README, \"Without CUSE\")",
            ),
            StartError::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for StartError {}

/// Whether this kernel offers CUSE.
pub fn available() -> bool {
    Path::new("/dev/cuse").exists()
}

impl Server {
    /// Registers `/dev/<name>` and starts `threads` workers.
    pub fn start(
        name: &str,
        handler: Arc<dyn Handler>,
        threads: usize,
    ) -> Result<Server, StartError> {
        if !available() {
            return Err(StartError::NoCuse);
        }
        if Path::new("/sys/class/cuse").join(name).exists() {
            return Err(StartError::Other(format!(
                "another hpkvd is already serving /dev/{name}"
            )));
        }
        let session = Arc::new(Session::new(name, handler).map_err(StartError::Other)?);
        let fd = session.fd();
        let flags = fcntl(fd, FcntlArg::F_GETFL)
            .map_err(|e| StartError::Other(format!("/dev/cuse: {e}")))?;
        fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(|e| StartError::Other(format!("/dev/cuse: {e}")))?;
        let stop =
            Arc::new(EventFd::new().map_err(|e| StartError::Other(format!("eventfd: {e}")))?);
        let workers = (0..threads.clamp(1, WORKERS_MAX))
            .map(|i| {
                let (session, stop) = (session.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("hpkv-cuse-{i}"))
                    .spawn(move || work(&session, &stop))
                    .map_err(|e| StartError::Other(format!("spawning a worker: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Server {
            name: name.to_string(),
            session,
            stop,
            workers,
        })
    }

    /// Waits until the kernel has created the device (it does so once a worker answered
    /// CUSE_INIT), or says why it did not.
    pub fn wait_registered(&self, timeout: Duration) -> Result<(), StartError> {
        let sysfs = Path::new("/sys/class/cuse").join(&self.name);
        let deadline = Instant::now() + timeout;
        while !sysfs.exists() {
            if self.session.exited() || self.workers.iter().all(|w| w.is_finished()) {
                return Err(StartError::Other(format!(
                    "the kernel refused to create /dev/{}: another hpkvd already serving that name?",
                    self.name
                )));
            }
            if Instant::now() >= deadline {
                return Err(StartError::Other(format!(
                    "/dev/{} did not appear within {timeout:?}",
                    self.name
                )));
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

fn work(session: &Session, stop: &EventFd) {
    let mut buf = Buffer::new();
    loop {
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
            Received::Again => continue,
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
