//! systemd's notification protocol (`sd_notify(3)`, `Type=notify`), and the wait for udev that
//! comes before READY=1.
//!
//! The socket is opened at start-up, while hpkvd may still open anything; later messages only
//! send on it (the system-call filter allows `sendto`, not `socket`).

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How long READY=1 waits for udev to give the node its group and mode.
pub const NODE_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the node is looked at meanwhile.
const NODE_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// udev's database file of a device is written after its rules applied; a file older than the
/// registration by more than this (the coarse clock of file times) is the previous device's.
const UDEV_DB_CLOCK_SLACK: Duration = Duration::from_millis(50);

/// The connection to systemd, if hpkvd runs under it.
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// Opens the socket `NOTIFY_SOCKET` names; without it every message is dropped.
    pub fn from_env() -> Notifier {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { socket: None };
        };
        let path = path.to_string_lossy().into_owned();
        let addr = match path.strip_prefix('@') {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes()),
            None => SocketAddr::from_pathname(&path),
        };
        match addr.and_then(|a| Ok((UnixDatagram::unbound()?, a))) {
            Ok(socket) => Notifier {
                socket: Some(socket),
            },
            Err(e) => {
                log::warn!("NOTIFY_SOCKET={path}: {e}; systemd will not hear from hpkvd");
                Notifier { socket: None }
            }
        }
    }

    fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.socket else {
            return;
        };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            log::warn!("could not notify systemd ({message:?}): {e}");
        }
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }
}

/// The node as udev left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// Whether udev is known to have finished with it (false: no udev, or the wait timed out).
    pub settled: bool,
}

/// What the node should look like once udev applied the rule: the group of the account hpkvd
/// runs as, mode 0660 (`udev/60-hpkv.rules`).
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    pub gid: u32,
    pub mode: u32,
}

/// Waits until udev has set up `/dev/NAME`: its database entry for the device is newer than
/// `registered`, or the node already has the `expected` group and mode. Without a running
/// udev (`/run/udev/control` absent) the node is taken as it is. Gives up after `timeout`,
/// returning the node as it is then (`settled: false`).
pub fn wait_node_settled(
    name: &str,
    registered: SystemTime,
    expected: Option<Expected>,
    timeout: Duration,
) -> io::Result<Node> {
    let path = Path::new("/dev").join(name);
    // The kernel adds the `dev` attribute just after the device's sysfs directory appears.
    let sys_dev = Path::new("/sys/class/cuse").join(name).join("dev");
    let udev_running = Path::new("/run/udev/control").exists();
    let deadline = Instant::now() + timeout;
    loop {
        let node = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.file_type().is_char_device());
        let db = std::fs::read_to_string(&sys_dev)
            .ok()
            .map(|dev| PathBuf::from(format!("/run/udev/data/c{}", dev.trim())));
        if let (Some(meta), Some(db)) = (node, db) {
            let mode = meta.permissions().mode() & 0o7777;
            let as_expected =
                expected.is_some_and(|want| meta.gid() == want.gid && mode == want.mode);
            let db_fresh = std::fs::metadata(&db)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t + UDEV_DB_CLOCK_SLACK >= registered);
            let settled = as_expected || db_fresh;
            if settled || !udev_running || Instant::now() >= deadline {
                return Ok(Node {
                    path,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mode,
                    settled: settled || !udev_running,
                });
            }
        } else if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not appear within {timeout:?}", path.display()),
            ));
        }
        std::thread::sleep(NODE_POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket_notify_socket_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            socket: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
        };
        notifier.ready("serving /dev/hpkv");
        notifier.stopping("stopping");
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving /dev/hpkv");
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=stopping");
        // Without NOTIFY_SOCKET nothing is sent and nothing fails.
        Notifier { socket: None }.ready("x");
    }
}
