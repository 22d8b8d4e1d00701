//! hpkvd's side of the shared view (`hpkv-view`): readers on this host look keys up in a
//! tmpfs file without a system call (DESIGN.md, "The shared view").
//!
//! - **Startup**, before the device serves: [`SharedView::build`] creates the view (which
//!   marks a predecessor's view dead) and enters every live key, without values; once the
//!   node exists, [`SharedView::publish`] records its `st_rdev`, renames the file into place,
//!   gives it to group `hpkv` and starts the heartbeat.
//! - **Writes**: the engine's committer calls [`SharedView`]'s [`Observer::applied`] with
//!   each batch, after it is durable and in the index and before any of it is acknowledged;
//!   the view is updated there, in sequence order, under one mutex. A view that stopped
//!   holding every key (more keys than it has room for) is replaced by a larger one, up to
//!   `--view-keys-max`, right there: writes wait for it.
//! - **Reads through the device** offer the value they read to the view
//!   ([`SharedView::fill`]) with `try_lock`: a GET never waits for the committer.
//! - **Exit**: [`SharedView::shutdown`] marks the view dead after the last acknowledgement.
//!
//! Anything that goes wrong with the view (a refused update, a broken invariant, a file
//! error) marks it dead and hpkvd goes on serving the device without it: a dead view sends
//! every reader to the device, which is always correct. Only a predecessor's view that cannot
//! be marked dead stops hpkvd from starting (its readers could read stale values).

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use parking_lot::Mutex;

use hpkv_engine::{Applied, Change, Engine, LiveKey, Observer};
use hpkv_view::{
    mark_dead_at, CreateError, Heartbeat, ViewConfig, ViewStats, ViewWriter, ARENA_BYTES_MAX,
    HEARTBEAT_INTERVAL, KEYS_MAX, KEY_BYTES_MAX,
};

// Where views live unless `--view-dir` says otherwise: `cli::VIEW_DIR_DEFAULT` (the command line
// is defined in cli.rs, which pkg/docgen includes on its own).
/// The mode of a view directory hpkvd creates (the file itself is 0640).
pub const VIEW_DIR_MODE: u32 = 0o750;
/// The group that may read views (and use the device node).
pub const VIEW_GROUP: &str = "hpkv";
/// The smallest key capacity a view is created with.
pub const VIEW_KEYS_MIN: u64 = 16_384;
/// The default of `--view-keys-max`: at most 4 Mi keys (a key table of 256 MiB).
pub const VIEW_KEYS_MAX_DEFAULT: u64 = 4 << 20;
/// How long hpkvd waits for the node's device number to show in sysfs.
const DEVICE_NUMBER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Key arena bytes planned per key of capacity before any key is known.
const KEY_BLOCK_BYTES_DEFAULT: u64 = 32;
/// Key arena bytes planned per key of capacity at least.
const KEY_BLOCK_BYTES_MIN: u64 = 16;

/// The path of the view of device `name` in `dir`.
pub fn view_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.view"))
}

/// What the daemon was asked for.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The view's path (`DIR/NAME.view`).
    pub path: PathBuf,
    /// The key capacity a view starts with at least ([`VIEW_KEYS_MIN`]).
    pub keys_min: u64,
    /// The largest key capacity the view may grow to (`--view-keys-max`).
    pub keys_max: u64,
    /// Bytes of the value arena.
    pub value_arena_bytes: u64,
    /// The ABI profile number readers are told.
    pub abi_profile: u32,
}

/// Why the view stops hpkvd from starting.
#[derive(Debug)]
#[non_exhaustive]
pub enum ViewError {
    /// A predecessor's view is there and could not be marked dead.
    RetireOld { path: PathBuf, source: io::Error },
    /// Another hpkvd holds the name's lock in the view directory.
    NameInUse { name: String },
    /// The name's lock file could not be opened or locked.
    Lock { path: PathBuf, source: io::Error },
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViewError::RetireOld { path, source } => write!(
                f,
                "{}: cannot mark the shared view of an earlier hpkvd dead ({source}); its readers \
                 could see stale values: remove the file or fix its permissions",
                path.display()
            ),
            ViewError::NameInUse { name } => {
                write!(f, "another hpkvd is already serving /dev/{name}")
            }
            ViewError::Lock { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for ViewError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ViewError::RetireOld { source, .. } | ViewError::Lock { source, .. } => Some(source),
            ViewError::NameInUse { .. } => None,
        }
    }
}

/// The lock a daemon holds on its name in the view directory for as long as it runs, so
/// that a second hpkvd started under the same name never touches the first one's view.
#[derive(Debug)]
pub struct NameLock {
    _file: Flock<File>,
}

/// Takes `DIR/.NAME.lock` (exclusive, never waiting). `Ok(None)` if `dir` does not exist
/// (there is no view to protect).
pub fn claim_name(dir: &Path, name: &str) -> Result<Option<NameLock>, ViewError> {
    let path = dir.join(format!(".{name}.lock"));
    let lock_err = |source| ViewError::Lock {
        path: path.clone(),
        source,
    };
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(lock_err(e)),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(file) => Ok(Some(NameLock { _file: file })),
        Err((_, Errno::EWOULDBLOCK)) => Err(ViewError::NameInUse {
            name: name.to_string(),
        }),
        Err((_, e)) => Err(lock_err(io::Error::from(e))),
    }
}

/// With the view turned off: marks a predecessor's view dead, so nobody reads it while this
/// daemon serves.
pub fn retire(path: &Path) -> Result<(), ViewError> {
    match mark_dead_at(path) {
        Ok(true) => {
            log::info!("{}: marked the earlier shared view dead", path.display());
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(source) => Err(ViewError::RetireOld {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The writer and what the daemon knows about it, under one mutex.
struct State {
    writer: Option<ViewWriter>,
    config: ViewConfig,
    /// Set once a view at the largest size went incomplete (warned once).
    capped: bool,
}

/// The daemon's shared view: the engine's [`Observer`], the device layer's fill, the
/// heartbeat.
pub struct SharedView {
    settings: Settings,
    state: Mutex<State>,
    gid: Option<u32>,
    heartbeat: Arc<Mutex<Option<Heartbeat>>>,
    stopping: Arc<AtomicBool>,
    beater: Mutex<Option<JoinHandle<()>>>,
}

impl SharedView {
    /// A view to be built; nothing is created yet. Resolves group `hpkv` and creates the
    /// directory (0750, group `hpkv`) if it does not exist.
    pub fn new(settings: Settings) -> io::Result<SharedView> {
        let gid = hpkv_gid();
        if let Some(dir) = settings.path.parent() {
            prepare_dir(dir, gid)?;
        }
        let config = ViewConfig::new(1, KEY_BYTES_MAX as u64, 0);
        Ok(SharedView {
            settings,
            state: Mutex::new(State {
                writer: None,
                config,
                capped: false,
            }),
            gid,
            heartbeat: Arc::new(Mutex::new(None)),
            stopping: Arc::new(AtomicBool::new(false)),
            beater: Mutex::new(None),
        })
    }

    /// Creates the view (marking a predecessor's dead) and enters every live key of
    /// `engine` (with the values the engine's cache holds), unpublished. From here on the committer keeps it current. A file error
    /// leaves hpkvd without a view (logged); only an old view that cannot be marked dead is
    /// an error.
    pub fn build(&self, engine: &Engine) -> Result<(), ViewError> {
        let mut config = self.sized(engine_sizes(|f| engine.for_each_key(f)));
        config.store_uuid = uuid_bytes(&engine.uuid());
        let mut state = self.state.lock();
        match self.create_filled(&config, |f| engine.for_each_key(f)) {
            Ok(writer) => {
                state.writer = Some(writer);
                state.config = config;
                Ok(())
            }
            Err(CreateError::RetireOld(source)) => Err(ViewError::RetireOld {
                path: self.settings.path.clone(),
                source,
            }),
            Err(e) => {
                log::warn!(
                    "{}: {e}; serving without the shared view",
                    self.settings.path.display()
                );
                Ok(())
            }
        }
    }

    /// Makes the view visible for the device node `device` (its `st_rdev`) and starts the
    /// heartbeat.
    pub fn publish(&self, device: u64) {
        let mut state = self.state.lock();
        state.config.device = device;
        let State { writer, config, .. } = &mut *state;
        let Some(w) = writer.as_mut() else {
            return;
        };
        w.set_device(device);
        if let Err(e) = self.publish_writer(w) {
            log::warn!(
                "{}: {e}; serving without the shared view",
                w.path().display()
            );
            *writer = None;
            return;
        }
        log::info!(
            "shared view {}: {} keys, room for {} keys, {} MiB of values ({} MiB file, sparse)",
            w.path().display(),
            w.live_keys(),
            config.max_keys,
            config.value_arena_bytes >> 20,
            w.file_bytes() >> 20
        );
        *self.heartbeat.lock() = Some(w.heartbeat_handle());
        drop(state);
        self.start_heartbeat();
    }

    /// [`publish`](Self::publish) for CUSE device `name` (its number from sysfs); without
    /// one, the view is dropped.
    pub fn publish_for(&self, name: &str) {
        match wait_for_device_number(name) {
            Ok(rdev) => self.publish(rdev),
            Err(e) => {
                log::warn!("/dev/{name}: its device number: {e}; serving without the shared view");
                self.shutdown();
            }
        }
    }

    /// Offers a value a GET read through the device: the view takes it if it still holds
    /// exactly version `seq` of `key` without a value. Never waits: if the writer is busy,
    /// the value is simply not offered.
    pub fn fill(&self, key: &[u8], seq: u64, value: &[u8]) {
        let Some(mut state) = self.state.try_lock() else {
            return;
        };
        let Some(w) = state.writer.as_mut() else {
            return;
        };
        if let Err(e) = w.fill(key, seq, value) {
            log::debug!("the shared view refused a value: {e}");
        }
    }

    /// Marks the view dead for good (after the last acknowledgement) and stops the
    /// heartbeat.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(t) = self.beater.lock().take() {
            let _ = t.join();
        }
        if let Some(mut w) = self.state.lock().writer.take() {
            w.mark_dead();
        }
        *self.heartbeat.lock() = None;
    }

    /// Whether a view is being kept (tests).
    #[cfg(test)]
    pub fn is_live(&self) -> bool {
        self.state.lock().writer.is_some()
    }

    // ---- sizes -------------------------------------------------------------------------

    /// The configuration for a store of `records` live keys whose key blocks (each key's
    /// length rounded up to 8) take `key_block_bytes`: room for 1.5 to 3 times the keys
    /// (a power of two, at least `keys_min`, at most `--view-keys-max`), and key
    /// arena for as many keys of the average block size.
    fn sized(&self, (records, key_block_bytes): (u64, u64)) -> ViewConfig {
        let keys_max = self.settings.keys_max.clamp(1, KEYS_MAX);
        let max_keys = (records + records / 2)
            .max(self.settings.keys_min)
            .next_power_of_two()
            .min(keys_max);
        let block = if records == 0 {
            KEY_BLOCK_BYTES_DEFAULT
        } else {
            key_block_bytes.div_ceil(records).max(KEY_BLOCK_BYTES_MIN)
        };
        self.config(max_keys, max_keys * block)
    }

    fn config(&self, max_keys: u64, key_arena_bytes: u64) -> ViewConfig {
        let key_arena_max = (max_keys * KEY_BYTES_MAX as u64).min(ARENA_BYTES_MAX);
        let mut config = ViewConfig::new(
            max_keys,
            key_arena_bytes.clamp(KEY_BYTES_MAX as u64, key_arena_max),
            self.settings.value_arena_bytes.min(ARENA_BYTES_MAX),
        );
        config.abi_profile = self.settings.abi_profile;
        config
    }

    // ---- the file ------------------------------------------------------------------------

    /// Creates a view at the path (marking the one there dead) and enters every key
    /// `for_each_key` lists.
    fn create_filled(
        &self,
        config: &ViewConfig,
        for_each_key: impl FnOnce(&mut dyn FnMut(LiveKey<'_>)),
    ) -> Result<ViewWriter, CreateError> {
        let mut w = ViewWriter::create(&self.settings.path, config)?;
        let mut refused = None;
        for_each_key(&mut |k| {
            if refused.is_none() {
                let value = k.cached.map(|v| &v[..]);
                refused = w.upsert(k.key, k.seq, value, k.value_len as usize).err();
            }
        });
        if let Some(e) = refused {
            return Err(CreateError::Io(io::Error::other(e)));
        }
        Ok(w)
    }

    fn publish_writer(&self, w: &mut ViewWriter) -> Result<(), CreateError> {
        if let Some(gid) = self.gid {
            w.set_group(gid)?;
        }
        w.publish()
    }

    fn start_heartbeat(&self) {
        let (beat, stopping) = (self.heartbeat.clone(), self.stopping.clone());
        let spawned = std::thread::Builder::new()
            .name("hpkv-view-beat".into())
            .spawn(move || {
                while !stopping.load(Ordering::SeqCst) {
                    if let Some(h) = beat.lock().as_ref() {
                        h.beat();
                    }
                    std::thread::sleep(HEARTBEAT_INTERVAL);
                }
            });
        match spawned {
            Ok(t) => *self.beater.lock() = Some(t),
            Err(e) => {
                log::warn!("cannot start the shared view's heartbeat ({e}): view turned off");
                if let Some(mut w) = self.state.lock().writer.take() {
                    w.mark_dead();
                }
            }
        }
    }

    // ---- growth --------------------------------------------------------------------------

    /// Replaces an incomplete view by a larger one (twice the room, or what the store needs),
    /// filled from the index, which the committer (our caller) holds still meanwhile.
    fn grow(&self, state: &mut State, batch: &Applied<'_>) {
        let (records, key_block_bytes) = engine_sizes(|f| batch.for_each_key(f));
        let needed = self.sized((records, key_block_bytes));
        let old = &state.config;
        let mut next = self.config(
            needed
                .max_keys
                .max(old.max_keys * 2)
                .min(self.settings.keys_max),
            needed.key_arena_bytes.max(old.key_arena_bytes * 2),
        );
        let grows = next.max_keys > old.max_keys || next.key_arena_bytes > old.key_arena_bytes;
        if records >= self.settings.keys_max || !grows {
            if !state.capped {
                state.capped = true;
                log::warn!(
                    "the shared view is full ({records} keys, room for {}: --view-keys-max): \
                     lookups of absent keys go to the device until a PURGE",
                    old.max_keys
                );
            }
            return;
        }
        next.store_uuid = old.store_uuid;
        next.device = old.device;
        let started = std::time::Instant::now();
        let replaced = self
            .create_filled(&next, |f| batch.for_each_key(f))
            .and_then(|mut w| {
                fill_batch_values(&mut w, batch);
                w.set_device(next.device);
                self.publish_writer(&mut w)?;
                Ok(w)
            });
        match replaced {
            Ok(w) => {
                log::info!(
                    "shared view grown to room for {} keys ({} live, {} ms)",
                    next.max_keys,
                    w.live_keys(),
                    started.elapsed().as_millis()
                );
                *self.heartbeat.lock() = Some(w.heartbeat_handle());
                state.writer = Some(w);
                state.config = next;
            }
            Err(e) => {
                // `create` marked the old view dead (or failed before touching it, and it
                // is incomplete but correct): either way it goes.
                log::warn!("growing the shared view failed ({e}); serving without it");
                state.writer = None;
                *self.heartbeat.lock() = None;
            }
        }
    }
}

impl Observer for SharedView {
    fn applied(&self, batch: &Applied<'_>) {
        let mut state = self.state.lock();
        let Some(w) = state.writer.as_mut() else {
            return;
        };
        let applied = catch_unwind(AssertUnwindSafe(|| apply(w, batch)));
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                log::error!("the shared view refused an update ({e}): it is dead from now on");
                state.writer = None;
            }
            Err(_) => {
                log::error!("the shared view broke an invariant: it is dead from now on");
                state.writer = None;
            }
        }
        if state.writer.as_ref().is_some_and(|w| !w.is_complete()) {
            self.grow(&mut state, batch);
        }
    }
}

/// Gives a view just filled from the index the values of the batch that made it grow: the
/// fill takes values from the engine's cache, which may not hold them (it learns a batch
/// after its observer, or is off, or refuses a value too large for it). A change that a
/// later one of the batch superseded no longer matches the view's version and is skipped.
fn fill_batch_values(w: &mut ViewWriter, batch: &Applied<'_>) {
    for change in batch.changes {
        if let Change::Put { key, seq, value } = *change {
            if let Err(e) = w.fill(key, seq, value) {
                log::debug!("the grown view took no value for a key of the batch: {e}");
            }
        }
    }
}

/// Applies one batch to the view, in order, and publishes the store's totals.
fn apply(w: &mut ViewWriter, batch: &Applied<'_>) -> Result<(), hpkv_view::WriteError> {
    for change in batch.changes {
        match *change {
            Change::Put { key, seq, value } => w.upsert(key, seq, Some(value), value.len())?,
            Change::Delete { key, seq } => w.remove(key, seq)?,
            // A kind of change this daemon does not know: forget everything, so that
            // readers go to the device rather than see a stale value.
            Change::Purge | _ => w.clear(),
        }
    }
    w.set_stats(ViewStats {
        records: batch.records,
        value_bytes: batch.value_bytes,
        device_bytes: batch.device_bytes,
    });
    Ok(())
}

/// Live keys and the bytes of their key blocks (lengths rounded up to 8).
fn engine_sizes(for_each_key: impl FnOnce(&mut dyn FnMut(LiveKey<'_>))) -> (u64, u64) {
    let (mut records, mut bytes) = (0u64, 0u64);
    for_each_key(&mut |k| {
        records += 1;
        bytes += k.key.len().div_ceil(8) as u64 * 8;
    });
    (records, bytes)
}

/// The 16 bytes of a hyphenated UUID (zeros if it does not parse: it is informational).
fn uuid_bytes(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    let mut out = [0u8; 16];
    if hex.len() == 32 {
        for (i, pair) in hex.chunks(2).enumerate() {
            let digits = std::str::from_utf8(pair).unwrap_or("00");
            out[i] = u8::from_str_radix(digits, 16).unwrap_or(0);
        }
    }
    out
}

/// The gid of group `hpkv`; `None` (with a warning) if there is no such group.
fn hpkv_gid() -> Option<u32> {
    if let Ok(Some(group)) = nix::unistd::Group::from_name(VIEW_GROUP) {
        return Some(group.gid.as_raw());
    }
    log::warn!(
        "there is no group '{VIEW_GROUP}': the shared view keeps hpkvd's own group, so only \
         hpkvd's user and group can read it (others go through the device)"
    );
    None
}

/// Creates the view directory (mode 0750, group `hpkv`) if it does not exist; an existing
/// one is left as it is (systemd's `RuntimeDirectory`, an administrator's choice).
fn prepare_dir(dir: &Path, gid: Option<u32>) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(md) if md.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is not a directory", dir.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    DirBuilder::new()
        .recursive(true)
        .mode(VIEW_DIR_MODE)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(VIEW_DIR_MODE))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(dir, None, Some(gid))?;
    }
    Ok(())
}

/// [`cuse_device_number`], waiting up to [`DEVICE_NUMBER_WAIT`]: the kernel creates the
/// device's sysfs directory before its `dev` attribute.
fn wait_for_device_number(name: &str) -> io::Result<u64> {
    let deadline = std::time::Instant::now() + DEVICE_NUMBER_WAIT;
    loop {
        match cuse_device_number(name) {
            Err(e)
                if e.kind() == io::ErrorKind::NotFound && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

/// `st_rdev` of the character device the kernel registered for CUSE device `name`, read
/// from `/sys/class/cuse/NAME/dev` ("major:minor").
pub fn cuse_device_number(name: &str) -> io::Result<u64> {
    let text = fs::read_to_string(Path::new("/sys/class/cuse").join(name).join("dev"))?;
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad device number {text:?}"),
        )
    };
    let (major, minor) = text.trim().split_once(':').ok_or_else(bad)?;
    let major: u32 = major.parse().map_err(|_| bad())?;
    let minor: u32 = minor.parse().map_err(|_| bad())?;
    Ok(libc::makedev(major, minor))
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
