//! Opening the store's device, every check before anything is written to it, and the one
//! command that erases a store (`hpkvd format`).
//!
//! `--force-initialize` (the module's `force_initialize`) formats a blank device or one that
//! holds data that is not an hpkv store; it never erases an hpkv store, so a flag forgotten in
//! `/etc/default/hpkvd` cannot wipe the store at the next restart. Erasing a store takes
//! `hpkvd format --erase-store UUID DEVICE`, with the UUID of the store being erased.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hpkv_engine::device::AlignedBuf;
use hpkv_engine::format::{Superblock, BLANK_PROBE_LEN, DATA_OFFSET, SUPERBLOCK_OFFSETS};
use hpkv_engine::{BlockDevice, Config, Engine, FileDevice, OpenError};

use crate::cli::{CommonOptions, FormatOptions, DEFAULT_IMAGE};
use crate::exit::Failure;
use crate::privilege::{self, RunAs};

/// What a device holds, judged from its first 64 KiB without writing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// The first 40 KiB are zero (the module's test for "empty").
    Blank,
    /// An hpkv superblock: the store's UUID.
    Store(String),
    /// Anything else: a file system, a partition table, the module's data, noise.
    Foreign,
}

/// Reads the head of `dev` and says what it holds.
pub fn identify(dev: &dyn BlockDevice) -> std::io::Result<Contents> {
    let head_len = DATA_OFFSET.min(dev.size_bytes());
    let head_len = head_len - head_len % u64::from(dev.block_size());
    let mut head = AlignedBuf::zeroed(usize::try_from(head_len).expect("64 KiB fits"))?;
    dev.read_at(&mut head, 0)?;
    let store = SUPERBLOCK_OFFSETS
        .iter()
        .filter_map(|&o| head.get(usize::try_from(o).ok()?..))
        .filter_map(Superblock::decode)
        .max_by_key(|sb| sb.generation);
    Ok(match store {
        Some(sb) => Contents::Store(hpkv_engine::uuid_string(&sb.uuid)),
        None if head.iter().take(BLANK_PROBE_LEN).all(|&b| b == 0) => Contents::Blank,
        None => Contents::Foreign,
    })
}

/// The device to serve: the one named, or the default image, made private to `owner` (and
/// created if missing).
pub fn device_path(
    named: Option<PathBuf>,
    common: &CommonOptions,
    owner: Option<&RunAs>,
) -> Result<PathBuf, Failure> {
    if let Some(path) = named {
        return Ok(path);
    }
    let path = PathBuf::from(DEFAULT_IMAGE);
    let dir = path.parent().expect("the default image is in a directory");
    let state_dir = |source| Failure::StateDir {
        path: dir.to_owned(),
        source,
    };
    privilege::prepare_state_dir(dir, owner).map_err(state_dir)?;
    let size_bytes = common
        .image_mib
        .checked_mul(1 << 20)
        .expect("--image-mib is bounded by IMAGE_MIB_MAX");
    let created =
        privilege::prepare_image(&path, size_bytes, owner).map_err(|source| Failure::StateDir {
            path: path.clone(),
            source,
        })?;
    if created {
        log::info!(
            "created the default image {} ({} MiB, sparse, mode 0600)",
            path.display(),
            common.image_mib
        );
    }
    Ok(path)
}

/// Whether the block device at `path` is read-only (sysfs `ro`); false for files.
fn block_device_read_only(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.file_type().is_block_device() {
        return false;
    }
    let rdev = meta.rdev();
    let sys = format!(
        "/sys/dev/block/{}:{}/ro",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    );
    fs::read_to_string(sys).is_ok_and(|ro| ro.trim() == "1")
}

/// Opens the device for the store (claimed exclusively); refuses a read-only one.
pub fn open_device(path: &Path) -> Result<Arc<FileDevice>, Failure> {
    if block_device_read_only(path) {
        return Err(Failure::ReadOnly(path.to_owned()));
    }
    let dev = FileDevice::open(path).map_err(Failure::Device)?;
    if !dev.is_direct() {
        log::warn!("{}: not using direct I/O", path.display());
    }
    Ok(Arc::new(dev))
}

/// Opens (or formats, as `config` and `--force-initialize` allow) the store on `dev`.
pub fn open_store(
    path: &Path,
    dev: Arc<FileDevice>,
    mut config: Config,
    force_initialize: bool,
) -> Result<Engine, Failure> {
    let store_err = |source| Failure::Store {
        path: path.to_owned(),
        source,
    };
    let mut guarded_uuid = None;
    if force_initialize {
        match identify(&*dev).map_err(|e| store_err(OpenError::Io(e)))? {
            Contents::Store(uuid) => {
                log::warn!(
                    "{}: --force-initialize ignored: the device holds hpkv store {uuid}, which \
                     only 'hpkvd format --erase-store {uuid}' erases",
                    path.display()
                );
                guarded_uuid = Some(uuid);
            }
            Contents::Foreign => {
                log::warn!(
                    "{}: --force-initialize: erasing data that is not an hpkv store",
                    path.display()
                );
                config.force_initialize = true;
            }
            Contents::Blank => config.force_initialize = true,
        }
    }
    let dev: Arc<dyn BlockDevice> = dev;
    Engine::open(dev, config).map_err(|source| match (guarded_uuid, &source) {
        (Some(uuid), OpenError::Incompatible(_) | OpenError::ForeignData) => Failure::WontErase {
            path: path.to_owned(),
            uuid,
        },
        _ => store_err(source),
    })
}

/// `hpkvd format`: formats a blank device at once; erases foreign data or an hpkv store only
/// when told exactly that. Runs as the user who started it (no CUSE, nothing to drop).
pub fn format_command(opts: &FormatOptions) -> Result<(), Failure> {
    // The account matters only for the default image, which it owns.
    let owner = match &opts.device {
        Some(_) => None,
        None => privilege::resolve(opts.common.user.as_deref())?,
    };
    let path = device_path(opts.device.clone(), &opts.common, owner.as_ref())?;
    let dev = open_device(&path)?;
    let refuse = |why: String| Failure::FormatRefused {
        path: path.clone(),
        why,
    };
    let contents = identify(&*dev).map_err(|e| Failure::Store {
        path: path.clone(),
        source: OpenError::Io(e),
    })?;
    match (&contents, &opts.erase_store) {
        (Contents::Store(uuid), Some(confirmed)) if confirmed.eq_ignore_ascii_case(uuid) => {}
        (Contents::Store(uuid), _) => {
            return Err(refuse(format!(
                "holds hpkv store {uuid}; to erase it: hpkvd format --erase-store {uuid} {}",
                path.display()
            )))
        }
        (_, Some(uuid)) => {
            return Err(refuse(format!(
                "--erase-store {uuid}: the device holds no hpkv store (it is {})",
                if contents == Contents::Blank {
                    "blank"
                } else {
                    "foreign data"
                }
            )))
        }
        (Contents::Foreign, None) if !opts.erase_foreign_data => {
            return Err(refuse(
                "holds data that is not an hpkv store; --erase-foreign-data erases it".into(),
            ))
        }
        (Contents::Foreign | Contents::Blank, None) => {}
    }
    let config = Config {
        force_initialize: true,
        background_compaction: false,
        ..Config::default()
    };
    let dev: Arc<dyn BlockDevice> = dev;
    let engine = Engine::open(dev, config).map_err(|source| Failure::Store {
        path: path.clone(),
        source,
    })?;
    let uuid = engine.uuid();
    engine.close().map_err(Failure::Close)?;
    println!("{}: formatted as hpkv store {uuid}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpkv_engine::faulty::FaultyDevice;

    #[test]
    fn identify_tells_blank_store_and_foreign_apart() {
        let dev = Arc::new(FaultyDevice::new(8 << 20, 4096));
        assert_eq!(identify(&*dev).unwrap(), Contents::Blank);
        let engine = Engine::open(dev.clone(), Config::default()).unwrap();
        let uuid = engine.uuid();
        engine.close().unwrap();
        drop(engine);
        assert_eq!(identify(&*dev).unwrap(), Contents::Store(uuid));

        let foreign = FaultyDevice::new(8 << 20, 4096);
        let mut block = AlignedBuf::zeroed(4096).unwrap();
        block[..4].copy_from_slice(b"XFSB");
        foreign.write_at(&block, 0).unwrap();
        assert_eq!(identify(&foreign).unwrap(), Contents::Foreign);
    }

    #[test]
    fn force_initialize_formats_foreign_data_but_never_erases_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.img");
        fs::write(&path, vec![0x5a; 16 << 20]).unwrap();
        let open = || open_device(&path).unwrap();
        // Foreign data: refused without the flag, formatted with it.
        match open_store(&path, open(), Config::default(), false) {
            Err(Failure::Store {
                source: OpenError::ForeignData,
                ..
            }) => {}
            other => panic!(
                "foreign data was not refused: {:?}",
                other.map(|e| e.uuid())
            ),
        }
        let engine = open_store(&path, open(), Config::default(), true).unwrap();
        engine.put(b"kept", b"yes").unwrap();
        let uuid = engine.uuid();
        engine.close().unwrap();
        drop(engine);
        // The flag left in place: the store is opened as it is, every record kept.
        let engine = open_store(&path, open(), Config::default(), true).unwrap();
        assert_eq!(engine.uuid(), uuid);
        assert_eq!(engine.get(b"kept").unwrap().as_deref(), Some(&b"yes"[..]));
    }
}
