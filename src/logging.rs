//! Logging to stderr: plain lines with a timestamp on a terminal or in a file; under systemd,
//! when stderr is the journal's stream, syslog priority prefixes (`<3>`) and no timestamp, so
//! that journald shows each line once, stamped, with its priority.

use std::io::Write;
use std::os::fd::AsFd;

/// The syslog priority of a log level (sd-daemon(3)).
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// The kernel's 0-7 `log_level` scale as a filter.
fn filter(level: u8) -> log::LevelFilter {
    match level {
        0..=2 => log::LevelFilter::Error,
        3 => log::LevelFilter::Warn,
        4..=5 => log::LevelFilter::Info,
        6 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// Whether stderr is the stream systemd connected to the journal: `JOURNAL_STREAM` names its
/// device and inode (systemd.exec(5)); a stderr redirected elsewhere does not match.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr().as_fd())
        .is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// Sets up `log` for the daemon; `RUST_LOG` overrides `level`.
pub fn init(level: u8) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(filter(level)).parse_env("RUST_LOG");
    if stderr_is_journal() {
        builder
            .format(|out, record| writeln!(out, "<{}>{}", priority(record.level()), record.args()));
    } else {
        builder.format_target(false);
    }
    builder.init();
}

/// The last words of a failed run, one line on stderr: `hpkvd: why`, with the error priority
/// under journald.
pub fn fatal(why: &dyn std::fmt::Display) {
    let prefix = if stderr_is_journal() { "<3>" } else { "" };
    let _ = writeln!(std::io::stderr(), "{prefix}hpkvd: {why}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_and_levels_follow_syslog_and_the_kernel_scale() {
        assert_eq!(priority(log::Level::Error), 3);
        assert_eq!(priority(log::Level::Warn), 4);
        assert_eq!(priority(log::Level::Info), 6);
        assert_eq!(priority(log::Level::Debug), 7);
        assert_eq!(filter(3), log::LevelFilter::Warn);
        assert_eq!(filter(4), log::LevelFilter::Info);
        assert_eq!(filter(7), log::LevelFilter::Trace);
    }
}
