//! The system-call filter hpkvd puts on itself after dropping privileges: the calls of the
//! request path (CUSE reads and replies, the device's reads, writes and flushes, threads,
//! memory, time, signals, the log, systemd's notification socket) and of the shared view's
//! files in `/run/hpkv`; nothing that executes programs, opens network sockets, mounts,
//! traces, changes identity or loads code. A call outside the filter kills hpkvd
//! (`--seccomp enforce`, the kernel's audit log names the call) or is logged and allowed
//! (`--seccomp log`, for finding what a new libc needs).
//!
//! The list was measured: the VM suite runs hpkvd under it in enforce mode, through serving,
//! compaction, restarts and the snapshot at shutdown (tests/vm/suite).

use std::collections::BTreeMap;
use std::fmt;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::cli::SeccompMode;

#[derive(Debug)]
pub struct SeccompError(seccompiler::Error);

impl fmt::Display for SeccompError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "installing the system-call filter: {} (--seccomp off runs without it)",
            self.0
        )
    }
}

impl std::error::Error for SeccompError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<seccompiler::Error> for SeccompError {
    fn from(e: seccompiler::Error) -> SeccompError {
        SeccompError(e)
    }
}

impl From<seccompiler::BackendError> for SeccompError {
    fn from(e: seccompiler::BackendError) -> SeccompError {
        SeccompError(seccompiler::Error::Backend(e))
    }
}

/// Calls allowed whatever their arguments.
const ALLOWED: &[libc::c_long] = &[
    // Reading requests, answering them, the device, the log.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_lseek,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_close,
    libc::SYS_splice,
    libc::SYS_pipe2,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_ppoll,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_eventfd2,
    // systemd's notification socket (opened before the drop).
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    // Files: the shared view in /run/hpkv (the user's own directory), /proc/self.
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_fchmod,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlinkat,
    libc::SYS_readlinkat,
    libc::SYS_getdents64,
    libc::SYS_msync,
    // Memory.
    libc::SYS_brk,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    // Threads and synchronisation.
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_membarrier,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // Signals: the signalfd is read with read(); a panic aborts through tgkill.
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_restart_syscall,
    // Time.
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    // Hash seeds, store UUIDs.
    libc::SYS_getrandom,
];

/// Calls that exist on `x86_64` only (newer architectures have only the *at forms).
#[cfg(target_arch = "x86_64")]
const ALLOWED_X86_64: &[libc::c_long] = &[
    libc::SYS_poll,
    libc::SYS_epoll_wait,
    libc::SYS_open,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_rename,
    libc::SYS_unlink,
    libc::SYS_readlink,
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_X86_64: &[libc::c_long] = &[];

fn arg(index: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    SeccompCondition::new(index, len, op, value).expect("argument index below 6")
}

/// One rule per allowed value of argument `index`.
fn one_of(index: u8, values: &[u64]) -> Result<Vec<SeccompRule>, SeccompError> {
    values
        .iter()
        .map(|&v| {
            Ok(SeccompRule::new(vec![arg(
                index,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                v,
            )])?)
        })
        .collect()
}

/// Calls allowed with some arguments only.
fn conditional() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let no_exec = || -> Result<Vec<SeccompRule>, SeccompError> {
        Ok(vec![SeccompRule::new(vec![arg(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
            0,
        )])?])
    };
    let mut rules = BTreeMap::new();
    // Memory, never executable: no code is loaded after start-up.
    rules.insert(libc::SYS_mmap, no_exec()?);
    rules.insert(libc::SYS_mprotect, no_exec()?);
    // Local sockets only (systemd's notification socket).
    rules.insert(libc::SYS_socket, one_of(0, &[libc::AF_UNIX as u64])?);
    // Thread names; reading (not setting) resource limits.
    rules.insert(
        libc::SYS_prctl,
        one_of(0, &[libc::PR_SET_NAME as u64, libc::PR_GET_NAME as u64])?,
    );
    rules.insert(
        libc::SYS_prlimit64,
        vec![SeccompRule::new(vec![arg(
            2,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::Eq,
            0,
        )])?],
    );
    // The shared view's file given to group hpkv: fchown(fd, -1, gid), the owner unchanged
    // (an unprivileged process can only pick one of its own groups anyway).
    rules.insert(
        libc::SYS_fchown,
        vec![SeccompRule::new(vec![arg(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            u64::from(u32::MAX),
        )])?],
    );
    // Whether stderr is a terminal, and its width (progress bars).
    rules.insert(
        libc::SYS_ioctl,
        one_of(1, &[libc::TCGETS, libc::TIOCGWINSZ])?,
    );
    Ok(rules)
}

/// The filter, compiled for this architecture.
pub fn program(mode: SeccompMode) -> Result<Option<BpfProgram>, SeccompError> {
    let on_other_calls = match mode {
        SeccompMode::Off => return Ok(None),
        SeccompMode::Enforce => SeccompAction::KillProcess,
        SeccompMode::Log => SeccompAction::Log,
    };
    let mut rules = conditional()?;
    for &nr in ALLOWED.iter().chain(ALLOWED_X86_64) {
        let previous = rules.insert(nr, Vec::new());
        assert!(previous.is_none(), "system call {nr} listed twice");
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let filter = SeccompFilter::new(rules, on_other_calls, SeccompAction::Allow, arch)?;
    Ok(Some(filter.try_into()?))
}

/// Puts the filter on this thread and every thread it starts later (call it while hpkvd has
/// one thread). Sets `no_new_privs` too.
pub fn install(mode: SeccompMode) -> Result<bool, SeccompError> {
    match program(mode)? {
        Some(bpf) => {
            seccompiler::apply_filter(&bpf)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_compiles_for_this_architecture() {
        let bpf = program(SeccompMode::Enforce).unwrap().unwrap();
        // The kernel takes at most 4096 instructions per filter.
        assert!(bpf.len() < 4096, "{} instructions", bpf.len());
        assert!(program(SeccompMode::Off).unwrap().is_none());
    }

    const CHILD: &str = "HPKV_SECCOMP_TEST_CHILD";

    /// In a child process (this test binary again): the filter lets threads, files and
    /// sleeping through, and kills the process at its first network socket.
    #[test]
    fn the_filter_allows_the_daemons_calls_and_kills_at_a_forbidden_one() {
        if std::env::var_os(CHILD).is_some() {
            install(SeccompMode::Enforce).unwrap();
            let dir = std::env::var_os(CHILD).unwrap();
            let path = std::path::Path::new(&dir).join("written-under-the-filter");
            std::thread::spawn(move || std::fs::write(path, b"ok").unwrap())
                .join()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
            println!("allowed calls passed");
            let _ = std::net::UdpSocket::bind("127.0.0.1:0");
            println!("the forbidden call returned");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "seccomp::tests::the_filter_allows_the_daemons_calls_and_kills_at_a_forbidden_one",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("allowed calls passed"), "{stdout}");
        assert!(!stdout.contains("the forbidden call returned"), "{stdout}");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(libc::SIGSYS),
            "{:?}",
            out.status
        );
        assert_eq!(
            std::fs::read(dir.path().join("written-under-the-filter")).unwrap(),
            b"ok"
        );
    }
}
