//! Least privilege: hpkvd needs root only to open `/dev/cuse` and its device. Once both are
//! open it becomes `--user` (default `hpkv`, the group of the node) with an empty capability
//! set in every set, the bounding set included, and `no_new_privs`; then `seccomp.rs` puts a
//! system-call filter on it. Everything happens while hpkvd has a single thread, so every
//! thread started later inherits the result.
//!
//! State files are private to that user: the default image is 0600 in a 0700 directory, both
//! owned by it. The shared view's directory (`/run/hpkv`, 0750, group hpkv: `view.rs`) is handed
//! to it too, so that it writes the view after the drop.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use caps::CapSet;
use nix::unistd::{Gid, Uid, User};

use crate::exit::{EX_CONFIG, EX_NOPERM, EX_OSERR};

/// The directory of the default image, and its mode.
pub const STATE_DIR_MODE: u32 = 0o700;
/// The default image's mode.
pub const IMAGE_MODE: u32 = 0o600;

/// The account hpkvd runs as once started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// The name of `gid` (looked up now: after the drop the account database is out of
    /// reach, as glibc may ask nscd over a socket).
    pub group: String,
}

#[derive(Debug)]
#[non_exhaustive]
pub enum PrivilegeError {
    /// `--user` names no account.
    UnknownUser(String),
    /// The account database could not be read.
    Lookup { user: String, source: nix::Error },
    /// Started without root, hpkvd cannot become another user.
    NotRoot { user: String, uid: Uid },
    /// A step of the drop failed.
    Drop {
        step: &'static str,
        source: io::Error,
    },
    /// After the drop, the process still holds something it should not (a bug).
    StillPrivileged(String),
    /// The drop must happen before any thread exists.
    Threads(usize),
}

impl PrivilegeError {
    pub fn exit_code(&self) -> u8 {
        match self {
            PrivilegeError::UnknownUser(_) => EX_CONFIG,
            PrivilegeError::Lookup { .. } | PrivilegeError::Threads(_) => EX_OSERR,
            PrivilegeError::NotRoot { .. }
            | PrivilegeError::Drop { .. }
            | PrivilegeError::StillPrivileged(_) => EX_NOPERM,
        }
    }
}

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivilegeError::UnknownUser(user) => write!(
                f,
                "--user {user}: no such user. The package creates 'hpkv' (systemd-sysusers); \
                 by hand: 'useradd --system --user-group --home-dir /var/lib/hpkv --shell \
                 /usr/sbin/nologin {user}', or name another account with --user \
                 ('--user root' keeps uid 0 without capabilities)"
            ),
            PrivilegeError::Lookup { user, source } => {
                write!(f, "looking up user {user}: {source}")
            }
            PrivilegeError::NotRoot { user, uid } => write!(
                f,
                "--user {user}: hpkvd runs as uid {uid}, not root, and cannot change user"
            ),
            PrivilegeError::Drop { step, source } => {
                write!(f, "dropping privileges ({step}): {source}")
            }
            PrivilegeError::StillPrivileged(what) => {
                write!(f, "dropping privileges: {what} after the drop")
            }
            PrivilegeError::Threads(n) => write!(
                f,
                "dropping privileges: {n} threads exist; the drop must come before any"
            ),
        }
    }
}

impl std::error::Error for PrivilegeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PrivilegeError::Lookup { source, .. } => Some(source),
            PrivilegeError::Drop { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn step<E: Into<io::Error>>(step: &'static str) -> impl FnOnce(E) -> PrivilegeError {
    move |e| PrivilegeError::Drop {
        step,
        source: e.into(),
    }
}

fn caps_step(step: &'static str) -> impl FnOnce(caps::errors::CapsError) -> PrivilegeError {
    move |e| PrivilegeError::Drop {
        step,
        source: io::Error::other(e.to_string()),
    }
}

/// Who hpkvd will run as. `None`: it was not started as root and stays who it is (it still
/// sheds any capability and sets `no_new_privs`).
pub fn resolve(user: Option<&str>) -> Result<Option<RunAs>, PrivilegeError> {
    let euid = Uid::effective();
    let name = user.unwrap_or(crate::cli::DEFAULT_USER);
    let found = User::from_name(name).map_err(|source| PrivilegeError::Lookup {
        user: name.to_string(),
        source,
    })?;
    if !euid.is_root() {
        // Not root: nothing to change to. Naming another account is an error; the default
        // is not (a developer running hpkvd with access to /dev/cuse).
        return match (user, found) {
            (Some(name), Some(u)) if u.uid != euid => Err(PrivilegeError::NotRoot {
                user: name.to_string(),
                uid: euid,
            }),
            (Some(name), None) => Err(PrivilegeError::UnknownUser(name.to_string())),
            _ => Ok(None),
        };
    }
    let u = found.ok_or_else(|| PrivilegeError::UnknownUser(name.to_string()))?;
    let group = nix::unistd::Group::from_gid(u.gid)
        .ok()
        .flatten()
        .map_or_else(|| u.gid.to_string(), |g| g.name);
    Ok(Some(RunAs {
        name: u.name,
        uid: u.uid,
        gid: u.gid,
        group,
    }))
}

/// Gives `path` to `owner` (when hpkvd is root) with exactly `mode`, saying so when it
/// tightens what was there.
fn make_private(path: &Path, mode: u32, owner: Option<&RunAs>) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if let Some(o) = owner {
        if meta.uid() != o.uid.as_raw() || meta.gid() != o.gid.as_raw() {
            log::info!("{}: giving it to {}", path.display(), o.name);
            std::os::unix::fs::lchown(path, Some(o.uid.as_raw()), Some(o.gid.as_raw()))?;
        }
    }
    let was = meta.permissions().mode() & 0o7777;
    if was != mode {
        log::warn!("{}: mode {was:04o} -> {mode:04o}", path.display());
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Makes the directory of the default image: `mode` 0700, owned by `owner`.
pub fn prepare_state_dir(dir: &Path, owner: Option<&RunAs>) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .mode(STATE_DIR_MODE)
                .create(dir)
                .or_else(|e| match e.kind() {
                    io::ErrorKind::AlreadyExists => Ok(()),
                    _ => Err(e),
                })?;
        }
        Err(e) => return Err(e),
    }
    make_private(dir, STATE_DIR_MODE, owner)
}

/// Creates the default image (sparse, `size_bytes`, 0600, owned by `owner`) unless it exists,
/// and keeps an existing one private. Returns whether it was created.
pub fn prepare_image(path: &Path, size_bytes: u64, owner: Option<&RunAs>) -> io::Result<bool> {
    let created = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(IMAGE_MODE)
        .open(path)
    {
        Ok(file) => {
            fill_image(&file, size_bytes)?;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e),
    };
    if fs::symlink_metadata(path)?.is_file() {
        make_private(path, IMAGE_MODE, owner)?;
    }
    Ok(created)
}

fn fill_image(file: &File, size_bytes: u64) -> io::Result<()> {
    file.set_len(size_bytes)?;
    file.sync_all()
}

/// Hands the shared view's directory, once `view.rs` made it, to `owner` (mode `mode`), so that
/// hpkvd writes its view there after the drop. A missing directory is left alone.
pub fn hand_over_dir(dir: &Path, mode: u32, owner: &RunAs) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => make_private(dir, mode, Some(owner)),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a directory",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Threads of this process (the drop changes the calling thread's capabilities only).
fn thread_count() -> usize {
    fs::read_dir("/proc/self/task").map_or(1, Iterator::count)
}

/// What the drop left, for the log line that says so.
#[derive(Debug)]
pub struct Dropped {
    /// Capabilities left in the bounding set (only when `CAP_SETPCAP` was missing).
    pub bounding_kept: usize,
}

/// Becomes `target` (or stays who it is, for `None`), with no capability in any set and
/// `no_new_privs`; checks the result.
pub fn drop_privileges(target: Option<&RunAs>) -> Result<Dropped, PrivilegeError> {
    let threads = thread_count();
    if threads != 1 {
        return Err(PrivilegeError::Threads(threads));
    }
    // The bounding set first: emptying it needs CAP_SETPCAP, which the uid change takes away.
    let bounding_kept = empty_bounding_set();
    if let Some(t) = target.filter(|t| !t.uid.is_root()) {
        nix::unistd::setgroups(&[t.gid]).map_err(step("setgroups"))?;
        nix::unistd::setresgid(t.gid, t.gid, t.gid).map_err(step("setresgid"))?;
        nix::unistd::setresuid(t.uid, t.uid, t.uid).map_err(step("setresuid"))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_step("clearing the ambient set"))?;
    for (set, what) in [
        (CapSet::Effective, "clearing the effective set"),
        (CapSet::Permitted, "clearing the permitted set"),
        (CapSet::Inheritable, "clearing the inheritable set"),
    ] {
        caps::clear(None, set).map_err(caps_step(what))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(step("no_new_privs"))?;
    verify(target)?;
    Ok(Dropped { bounding_kept })
}

/// Drops every capability from the bounding set that can be dropped; returns how many stay.
fn empty_bounding_set() -> usize {
    for cap in caps::all() {
        if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    let kept = caps::read(None, CapSet::Bounding).map_or(0, |s| s.len());
    if kept > 0 {
        log::warn!(
            "{kept} capabilities stay in the bounding set (CAP_SETPCAP is missing); the \
             permitted and effective sets are empty regardless"
        );
    }
    kept
}

/// Checks that the drop did what it should; anything else stops hpkvd.
fn verify(target: Option<&RunAs>) -> Result<(), PrivilegeError> {
    let still = |what: String| Err(PrivilegeError::StillPrivileged(what));
    if let Some(t) = target {
        let uids = nix::unistd::getresuid().map_err(step("getresuid"))?;
        let gids = nix::unistd::getresgid().map_err(step("getresgid"))?;
        if [uids.real, uids.effective, uids.saved] != [t.uid; 3] {
            return still(format!("uids {uids:?} instead of {}", t.uid));
        }
        if [gids.real, gids.effective, gids.saved] != [t.gid; 3] {
            return still(format!("gids {gids:?} instead of {}", t.gid));
        }
    }
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        let held = caps::read(None, set).map_err(caps_step("reading capabilities"))?;
        if !held.is_empty() {
            return still(format!("{set:?} capabilities {held:?}"));
        }
    }
    if !nix::sys::prctl::get_no_new_privs().map_err(step("no_new_privs"))? {
        return still("no no_new_privs".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_image_and_its_directory_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("hpkv");
        // An older hpkvd left them world-readable.
        DirBuilder::new().mode(0o755).create(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();
        prepare_state_dir(&state, None).unwrap();
        assert_eq!(
            fs::metadata(&state).unwrap().permissions().mode() & 0o7777,
            0o700
        );

        let image = state.join("hpkv.img");
        assert!(prepare_image(&image, 1 << 20, None).unwrap());
        let meta = fs::metadata(&image).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(meta.len(), 1 << 20);
        fs::set_permissions(&image, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!prepare_image(&image, 1 << 20, None).unwrap());
        assert_eq!(
            fs::metadata(&image).unwrap().permissions().mode() & 0o7777,
            0o600
        );

        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        assert!(prepare_state_dir(&file, None).is_err());
    }

    #[test]
    fn an_unknown_user_is_a_configuration_error() {
        let e = resolve(Some("hpkv-no-such-user-here")).unwrap_err();
        assert_eq!(e.exit_code(), EX_CONFIG, "{e}");
        assert!(e.to_string().contains("no such user"), "{e}");
    }
}
