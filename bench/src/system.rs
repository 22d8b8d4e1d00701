//! The machine side: work directories, loop devices and mounts (each released by a Drop
//! guard), interruption by signals, and memory figures.
//!
//! The bench's only `unsafe` code (libc calls without a safe wrapper) lives here.
#![allow(unsafe_code)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // A second signal: give up on a clean exit (loop devices may be left behind).
        // SAFETY: _exit is async-signal-safe and has no preconditions.
        unsafe { libc::_exit(130) };
    }
}

/// SIGINT, SIGTERM and SIGHUP set a flag that the measuring loops check, so that the
/// benchmark unwinds normally and every guard (mount, loop device, work directory) runs.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only touches an atomic and calls the async-signal-safe _exit.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// Fails once a signal asked the benchmark to stop.
pub fn check_interrupted() -> Res<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        Err("interrupted by a signal; cleaning up".into())
    } else {
        Ok(())
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command, failing with its stderr if it exits non-zero; returns its stdout.
pub fn run(cmd: &str, args: &[&str]) -> Res<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn have_command(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/sbin"), PathBuf::from("/usr/sbin")])
            .any(|d| d.join(cmd).is_file())
    })
}

/// A directory removed (with everything in it) when the guard drops.
pub struct WorkDir {
    pub path: PathBuf,
}

impl WorkDir {
    pub fn create(parent: &Path, prefix: &str) -> Res<WorkDir> {
        fs::create_dir_all(parent)?;
        let path = parent.join(format!("{prefix}-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path)?;
        }
        fs::create_dir(&path)?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("warning: removing {}: {e}", self.path.display());
        }
    }
}

/// Creates (or truncates) a sparse file of `size` bytes.
pub fn create_sparse(path: &Path, size: u64) -> io::Result<()> {
    let f = fs::File::create(path)?;
    f.set_len(size)?;
    f.sync_all()
}

/// A loop device over an image file (`losetup -f --show --direct-io=on`), detached when
/// the guard drops.
pub struct LoopDevice {
    pub dev: PathBuf,
}

impl LoopDevice {
    pub fn attach(image: &Path, sector_size: u32) -> Res<LoopDevice> {
        let image = image.to_str().ok_or("image path is not UTF-8")?;
        let sector_size = sector_size.to_string();
        let mut args = vec!["-f", "--show", "--direct-io=on"];
        if sector_size != "512" {
            args.extend(["--sector-size", &sector_size]);
        }
        args.push(image);
        let dev = run("losetup", &args)?;
        if dev.is_empty() {
            return Err("losetup printed no device".into());
        }
        Ok(LoopDevice {
            dev: PathBuf::from(dev),
        })
    }

    pub fn path_str(&self) -> &str {
        self.dev.to_str().unwrap_or("?")
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let dev = self.path_str().to_string();
        // The engine's close may still be releasing the device: retry briefly.
        for attempt in 0..10 {
            match run("losetup", &["-d", &dev]) {
                Ok(_) => return,
                Err(e) if attempt == 9 => eprintln!("warning: detaching {dev}: {e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
    }
}

/// A file system mounted on a directory, unmounted when the guard drops.
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    pub fn new(dev: &str, dir: &Path) -> Res<Mount> {
        fs::create_dir_all(dir)?;
        let d = dir.to_str().ok_or("mount point is not UTF-8")?;
        run("mount", &[dev, d])?;
        Ok(Mount {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let d = self.dir.to_string_lossy().to_string();
        for attempt in 0..10 {
            match run("umount", &[&d]) {
                Ok(_) => return,
                Err(e) if attempt == 9 => {
                    eprintln!("warning: unmounting {d}: {e}; detaching it lazily");
                    let _ = run("umount", &["-l", &d]);
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
    }
}

/// The loop-device setup: one loop device that hpkv uses raw, and a second one with ext4
/// mounted for redb and fjall, both over sparse images in `dir`. Fields drop in order: the
/// mount goes before its loop device.
pub struct LoopSetup {
    pub mount: Mount,
    pub fs_loop: LoopDevice,
    pub raw_loop: LoopDevice,
}

impl LoopSetup {
    pub fn create(dir: &Path, raw_bytes: u64, fs_bytes: u64, sector_size: u32) -> Res<LoopSetup> {
        let raw_image = dir.join("hpkv-raw.img");
        let fs_image = dir.join("ext4.img");
        create_sparse(&raw_image, raw_bytes)?;
        create_sparse(&fs_image, fs_bytes)?;
        let raw_loop = LoopDevice::attach(&raw_image, sector_size)?;
        let fs_loop = LoopDevice::attach(&fs_image, sector_size)?;
        run("mkfs.ext4", &["-q", "-F", fs_loop.path_str()])?;
        let mount = Mount::new(fs_loop.path_str(), &dir.join("mnt"))?;
        Ok(LoopSetup {
            mount,
            fs_loop,
            raw_loop,
        })
    }
}

/// The largest peak RSS seen by [`peak_rss_bytes`] over the whole run (resets lose it).
static LIFETIME_PEAK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Hands memory freed by the previous run back to the OS (glibc keeps it otherwise, and it
/// would count in the next run's RSS).
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drops the OS page cache (root): `sync` then 3 > `/proc/sys/vm/drop_caches`.
pub fn drop_os_caches() -> Res<()> {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| format!("dropping the page cache (needs root): {e}"))?;
    Ok(())
}

/// Resets the process's peak RSS so that the next [`peak_rss_bytes`] covers only what
/// follows (Linux ≥ 4.0); false if the kernel refused.
pub fn reset_peak_rss() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak resident set size since start (or since the last reset), from `VmHWM`.
pub fn peak_rss_bytes() -> u64 {
    let peak = status_kib("VmHWM:") * 1024;
    LIFETIME_PEAK.fetch_max(peak, Ordering::Relaxed);
    peak
}

/// The peak RSS of the whole process lifetime (the kernel's own figure is lost on each
/// reset, so the largest of the peaks read is kept).
pub fn lifetime_peak_rss_bytes() -> u64 {
    peak_rss_bytes();
    LIFETIME_PEAK.load(Ordering::Relaxed)
}

fn status_kib(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l[field.len()..]
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// The size of `path` on disk (allocated blocks), summed over a directory tree.
pub fn disk_usage_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        fs::read_dir(path).map_or(0, |rd| {
            rd.filter_map(Result::ok)
                .map(|e| disk_usage_bytes(&e.path()))
                .sum()
        })
    } else {
        meta.blocks() * 512
    }
}

/// Bytes as "123.4 MiB".
pub fn mib(bytes: u64) -> String {
    format!(
        "{:.1} MiB",
        crate::stats::f64_of(bytes) / crate::stats::f64_of(1 << 20)
    )
}
