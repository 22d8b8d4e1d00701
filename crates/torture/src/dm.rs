//! Device-mapper through its control ioctls (no `dmsetup` in the guest): one device whose
//! table can be swapped at any time between a healthy `linear` mapping and `flakey` ones.
//!
//! The ioctl interface: a `struct dm_ioctl` (312 bytes: version, sizes, flags, name, ...)
//! followed, for a table load, by one `struct dm_target_spec` (40 bytes: start, length,
//! status, next, target type) and the target's parameters as a NUL-terminated string.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::ffi::dm_ioctl;

const CONTROL: &str = "/dev/mapper/control";
const HEADER: usize = 312;
const TARGET_SPEC: usize = 40;
/// Room for a table's parameters.
const PARAMS_MAX: usize = 512;
const NAME_AT: usize = 48;
const NAME_MAX: usize = 127;

const CMD_VERSION: u8 = 0;
const CMD_DEV_CREATE: u8 = 3;
const CMD_DEV_REMOVE: u8 = 4;
const CMD_DEV_SUSPEND: u8 = 6;
const CMD_TABLE_LOAD: u8 = 9;
const FLAG_SUSPEND: u32 = 1 << 1;

/// A mapping of the whole underlying disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Every request passes.
    Linear,
    /// Writes (and flushes) fail with EIO; reads pass.
    ErrorWrites,
    /// Every request fails with EIO.
    ErrorAll,
}

/// A device-mapper device over one disk.
pub struct DmDevice {
    control: File,
    name: String,
    disk: PathBuf,
    sectors: u64,
    /// `/dev/dm-N`.
    pub node: PathBuf,
}

fn header(name: &str, len: usize, flags: u32) -> Vec<u8> {
    assert!(name.len() <= NAME_MAX, "dm name too long");
    let mut b = vec![0u8; len];
    b[0..4].copy_from_slice(&4u32.to_le_bytes()); // interface version 4.0.0
    b[12..16].copy_from_slice(&u32::try_from(len).expect("small").to_le_bytes());
    b[16..20].copy_from_slice(&u32::try_from(HEADER).expect("small").to_le_bytes());
    b[28..32].copy_from_slice(&flags.to_le_bytes());
    b[NAME_AT..NAME_AT + name.len()].copy_from_slice(name.as_bytes());
    b
}

/// The size of a block device in 512-byte sectors, from sysfs.
fn sectors_of(disk: &Path) -> Result<u64, String> {
    let name = disk
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("bad disk path")?;
    let text = std::fs::read_to_string(format!("/sys/class/block/{name}/size"))
        .map_err(|e| format!("size of {}: {e}", disk.display()))?;
    text.trim()
        .parse()
        .map_err(|e| format!("size of {}: {e}", disk.display()))
}

/// The `/dev/dm-N` node of the device-mapper device named `name`.
fn node_of(name: &str) -> Result<PathBuf, String> {
    let dir = std::fs::read_dir("/sys/block").map_err(|e| e.to_string())?;
    for entry in dir.flatten() {
        let dm_name = entry.path().join("dm/name");
        if std::fs::read_to_string(&dm_name).is_ok_and(|n| n.trim() == name) {
            return Ok(Path::new("/dev").join(entry.file_name()));
        }
    }
    Err(format!("no /sys/block/dm-*/dm/name says {name}"))
}

impl DmDevice {
    /// Creates device `name` over `disk` with the linear table.
    pub fn create(name: &str, disk: &Path) -> Result<DmDevice, String> {
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .open(CONTROL)
            .map_err(|e| format!("{CONTROL}: {e} (is dm-mod loaded?)"))?;
        let mut v = header(name, HEADER, 0);
        dm_ioctl(control.as_fd(), CMD_VERSION, &mut v).map_err(|e| format!("DM_VERSION: {e}"))?;
        let mut dev = DmDevice {
            control,
            name: name.into(),
            disk: disk.to_owned(),
            sectors: sectors_of(disk)?,
            node: PathBuf::new(),
        };
        dev.call(CMD_DEV_CREATE, 0, None)?;
        dev.load(Table::Linear)?;
        dev.call(CMD_DEV_SUSPEND, 0, None)?; // resume: the table goes live
        dev.node = node_of(name)?;
        for _ in 0..500 {
            if dev.node.exists() {
                return Ok(dev);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(format!("{} did not appear", dev.node.display()))
    }

    fn call(&self, cmd: u8, flags: u32, table: Option<(&str, &str)>) -> Result<(), String> {
        let mut b = header(&self.name, HEADER + TARGET_SPEC + PARAMS_MAX, flags);
        if let Some((target, params)) = table {
            assert!(
                params.len() < PARAMS_MAX && target.len() < 16,
                "dm table too long"
            );
            b[20..24].copy_from_slice(&1u32.to_le_bytes()); // target_count
            let spec = &mut b[HEADER..HEADER + TARGET_SPEC];
            spec[8..16].copy_from_slice(&self.sectors.to_le_bytes()); // length
            spec[24..24 + target.len()].copy_from_slice(target.as_bytes());
            let at = HEADER + TARGET_SPEC;
            b[at..at + params.len()].copy_from_slice(params.as_bytes());
        }
        dm_ioctl(self.control.as_fd(), cmd, &mut b)
            .map_err(|e: Errno| format!("device-mapper command {cmd} on {}: {e}", self.name))
    }

    fn load(&self, table: Table) -> Result<(), String> {
        let disk = self.disk.display();
        let down = "0 3600"; // up 0 s, down 3600 s: failing from the start
        let (target, params) = match table {
            Table::Linear => ("linear", format!("{disk} 0")),
            Table::ErrorWrites => ("flakey", format!("{disk} 0 {down} 1 error_writes")),
            Table::ErrorAll => ("flakey", format!("{disk} 0 {down}")),
        };
        self.call(CMD_TABLE_LOAD, 0, Some((target, &params)))
    }

    /// Swaps the live table: load, suspend (in-flight requests finish), resume.
    pub fn switch(&self, table: Table) -> Result<(), String> {
        self.load(table)?;
        self.call(CMD_DEV_SUSPEND, FLAG_SUSPEND, None)?;
        self.call(CMD_DEV_SUSPEND, 0, None)
    }

    /// Removes the device (nothing may hold it open).
    pub fn remove(self) -> Result<(), String> {
        self.call(CMD_DEV_REMOVE, 0, None)
    }
}
