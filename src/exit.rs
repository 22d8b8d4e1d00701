//! Why hpkvd stopped, as one line for people and an exit status for systemd.
//!
//! The statuses are sysexits.h's. The unit lists the permanent ones in
//! `RestartPreventExitStatus=` (64, 69, 77, 78): restarting cannot help, so systemd does not
//! try; for the others (device in use, device missing, I/O error, lost connection) it does.

use std::fmt;
use std::io;
use std::path::PathBuf;

use hpkv_engine::{OpenDeviceError, OpenError};

use crate::cuse;
use crate::privilege::PrivilegeError;
use crate::seccomp::SeccompError;
use crate::view::ViewError;

/// sysexits.h.
pub const EX_FAILURE: u8 = 1;
pub const EX_USAGE: u8 = 64;
pub const EX_NOINPUT: u8 = 66;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_OSERR: u8 = 71;
pub const EX_CANTCREAT: u8 = 73;
pub const EX_IOERR: u8 = 74;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_NOPERM: u8 = 77;
pub const EX_CONFIG: u8 = 78;

/// Why hpkvd could not start, or stopped with an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum Failure {
    /// This kernel has no CUSE.
    NoCuse,
    /// `/dev/cuse` exists but this process may not open it.
    CuseAccess(io::Error),
    /// Another hpkvd (or CUSE server) serves `/dev/NAME`.
    NameInUse(String),
    /// libfuse could not set up the CUSE session, or the kernel did not create the device.
    Cuse(cuse::StartError),
    Privilege(PrivilegeError),
    Seccomp(SeccompError),
    /// The state directory or the default image could not be made.
    StateDir {
        path: PathBuf,
        source: io::Error,
    },
    Device(OpenDeviceError),
    /// The device cannot be written (a read-only block device or mount).
    ReadOnly(PathBuf),
    Store {
        path: PathBuf,
        source: OpenError,
    },
    /// `--force-initialize` met a store that `hpkvd format --erase-store` would have to erase.
    /// (Refused only when the store cannot be opened; an openable store is served.)
    WontErase {
        path: PathBuf,
        uuid: String,
    },
    /// `hpkvd format` found something it was not told to erase.
    FormatRefused {
        path: PathBuf,
        why: String,
    },
    /// A system resource (threads, signalfd, eventfd, poll) was refused.
    System {
        what: &'static str,
        source: io::Error,
    },
    /// The kernel ended the CUSE connection while serving.
    ConnectionLost(String),
    /// The store failed while closing: what was acknowledged is on the device, the snapshot
    /// may be missing (the next start scans the log).
    Close(hpkv_engine::Error),
    /// The shared view's directory could not be made.
    ViewDir {
        path: PathBuf,
        source: io::Error,
    },
    /// The shared view forbids serving (another hpkvd's name, a view that cannot be retired).
    View(ViewError),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::NoCuse => EX_UNAVAILABLE,
            Failure::CuseAccess(_) => EX_NOPERM,
            Failure::NameInUse(_) | Failure::View(ViewError::NameInUse { .. }) => EX_TEMPFAIL,
            Failure::Cuse(_) | Failure::ConnectionLost(_) => EX_FAILURE,
            Failure::Privilege(e) => e.exit_code(),
            Failure::Seccomp(_) | Failure::System { .. } => EX_OSERR,
            Failure::StateDir { .. }
            | Failure::ViewDir { .. }
            | Failure::View(ViewError::Lock { .. }) => EX_CANTCREAT,
            Failure::Device(e) => device_exit_code(e),
            Failure::ReadOnly(_)
            | Failure::WontErase { .. }
            | Failure::FormatRefused { .. }
            | Failure::View(ViewError::RetireOld { .. }) => EX_CONFIG,
            Failure::Store { source, .. } => match source {
                OpenError::Device(e) => device_exit_code(e),
                OpenError::Io(_) => EX_IOERR,
                _ => EX_CONFIG,
            },
            Failure::Close(_) => EX_IOERR,
        }
    }

    pub fn system(what: &'static str) -> impl FnOnce(nix::errno::Errno) -> Failure {
        move |e| Failure::System {
            what,
            source: e.into(),
        }
    }
}

fn device_exit_code(e: &OpenDeviceError) -> u8 {
    match e {
        OpenDeviceError::NotFound(_) => EX_NOINPUT,
        OpenDeviceError::Busy(_) => EX_TEMPFAIL,
        OpenDeviceError::NotABlockDeviceOrFile(_) => EX_CONFIG,
        OpenDeviceError::Io(_, e) if is_read_only(e) => EX_CONFIG,
        // Io, and whatever a later engine adds (the enum is non-exhaustive): a device error.
        _ => EX_IOERR,
    }
}

/// Opening for writing was refused by the file system or the device, not by a passing state.
pub fn is_read_only(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EROFS | libc::EACCES | libc::EPERM)
    )
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoCuse => write!(f, "{}", cuse::StartError::NoCuse),
            Failure::CuseAccess(e) => write!(
                f,
                "/dev/cuse: {e}: hpkvd must be started as root (it then runs as --user)"
            ),
            Failure::NameInUse(name) => {
                write!(f, "another hpkvd is already serving /dev/{name}")
            }
            Failure::Cuse(e) => write!(f, "{e}"),
            Failure::Privilege(e) => write!(f, "{e}"),
            Failure::Seccomp(e) => write!(f, "{e}"),
            Failure::StateDir { path, source } => write!(f, "{}: {source}", path.display()),
            Failure::Device(OpenDeviceError::Io(path, e)) if is_read_only(e) => write!(
                f,
                "{}: cannot be opened for writing ({e}): a read-only device or file system",
                path.display()
            ),
            Failure::Device(e) => write!(f, "{e}"),
            Failure::ReadOnly(path) => write!(
                f,
                "{}: the device is read-only; hpkv needs to write to it",
                path.display()
            ),
            Failure::Store { path, source } => write!(f, "{}: {source}", path.display()),
            Failure::WontErase { path, uuid } => write!(
                f,
                "{}: holds hpkv store {uuid}, which cannot be opened; --force-initialize never erases \
                 an hpkv store: run 'hpkvd format --erase-store {uuid} {}' once",
                path.display(),
                path.display()
            ),
            Failure::FormatRefused { path, why } => write!(f, "{}: {why}", path.display()),
            Failure::System { what, source } => write!(f, "{what}: {source}"),
            Failure::ConnectionLost(name) => {
                write!(f, "the kernel ended the CUSE connection of /dev/{name}")
            }
            Failure::Close(e) => write!(f, "closing the store: {e}"),
            Failure::ViewDir { path, source } => {
                write!(f, "{} (the shared view's directory): {source}", path.display())
            }
            Failure::View(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::CuseAccess(e)
            | Failure::StateDir { source: e, .. }
            | Failure::ViewDir { source: e, .. }
            | Failure::System { source: e, .. } => Some(e),
            Failure::View(e) => Some(e),
            Failure::Cuse(e) => Some(e),
            Failure::Privilege(e) => Some(e),
            Failure::Seccomp(e) => Some(e),
            Failure::Device(e) => Some(e),
            Failure::Store { source, .. } => Some(source),
            Failure::Close(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PrivilegeError> for Failure {
    fn from(e: PrivilegeError) -> Failure {
        Failure::Privilege(e)
    }
}

impl From<SeccompError> for Failure {
    fn from(e: SeccompError) -> Failure {
        Failure::Seccomp(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_failures_are_config_errors_and_passing_ones_are_not() {
        let path = PathBuf::from("/dev/vdb");
        let foreign = Failure::Store {
            path: path.clone(),
            source: OpenError::ForeignData,
        };
        assert_eq!(foreign.exit_code(), EX_CONFIG);
        // A damaged store: restarting cannot help, and the line says what is damaged.
        let damaged = Failure::Store {
            path: path.clone(),
            source: OpenError::Corrupt(hpkv_engine::Corruption::DamagedSegmentHeader {
                segment: 3,
            }),
        };
        assert_eq!(damaged.exit_code(), EX_CONFIG);
        let line = damaged.to_string();
        assert!(
            line.contains("damaged") && line.contains("segment 3") && !line.contains('\n'),
            "{line}"
        );
        let ro = Failure::Device(OpenDeviceError::Io(
            path.clone(),
            io::Error::from_raw_os_error(libc::EROFS),
        ));
        assert_eq!(ro.exit_code(), EX_CONFIG);
        assert!(ro.to_string().contains("read-only"), "{ro}");
        let busy = Failure::Device(OpenDeviceError::Busy(path.clone()));
        assert_eq!(busy.exit_code(), EX_TEMPFAIL);
        let missing = Failure::Device(OpenDeviceError::NotFound(path));
        assert_eq!(missing.exit_code(), EX_NOINPUT);
        assert_eq!(Failure::NoCuse.exit_code(), EX_UNAVAILABLE);
        assert_eq!(
            Failure::ConnectionLost("hpkv".into()).exit_code(),
            EX_FAILURE
        );
    }
}
