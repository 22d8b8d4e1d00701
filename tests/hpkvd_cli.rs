//! hpkvd's command line on the host (the VM suite covers serving the device).

use std::os::fd::AsFd;
use std::process::{Command, Stdio};

/// sysexits.h, as hpkvd uses them (src/exit.rs).
const EX_USAGE: i32 = 64;
const EX_UNAVAILABLE: i32 = 69;
const EX_CONFIG: i32 = 78;

fn hpkvd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hpkvd"))
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("hpkvd runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

fn no_cuse_here() -> bool {
    if std::path::Path::new("/dev/cuse").exists() {
        eprintln!("SKIP: this kernel has CUSE; the VM suite covers this case");
        return false;
    }
    true
}

#[test]
fn without_cuse_it_says_so_in_one_line_and_fails() {
    if !no_cuse_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("store.img");
    let (code, _, stderr) = hpkvd(&["--user", "root", image.to_str().unwrap()]);
    assert_eq!(code, EX_UNAVAILABLE, "{stderr}");
    // The start-up line, then the reason in one line.
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("hpkvd:")).collect();
    assert_eq!(errors.len(), 1, "one line: {stderr:?}");
    assert!(
        errors[0].starts_with("hpkvd: /dev/cuse not found"),
        "{stderr:?}"
    );
    assert_eq!(stderr.lines().last(), Some(errors[0]), "{stderr:?}");
    assert!(
        !image.exists(),
        "nothing is created when the device cannot be served"
    );
}

#[test]
fn an_unknown_user_is_refused_before_anything_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("store.img");
    let (code, _, stderr) = hpkvd(&["--user", "hpkv-no-such-user", image.to_str().unwrap()]);
    assert_eq!(code, EX_CONFIG, "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("hpkvd: --user hpkv-no-such-user: no such user"),
        "{stderr}"
    );
    assert!(!image.exists());
}

#[test]
fn options_out_of_range_are_usage_errors() {
    for args in [
        &["--abi", "v2"][..],
        &["--log_level", "9"],
        &["--cache-mib", "18446744073709551615"],
        &["--cache-mib", "1048577"],
        &["--image-mib", "1"],
        &["--image-mib", "17592186044417"],
        &["--threads", "0"],
        &["--threads", "65"],
        &["--write-behind-writes", "0"],
        &["--write-behind-delay-ms", "3600001"],
        &["--name", "../cuse"],
        &["--name", ""],
        &["--seccomp", "maybe"],
        &["--name", "x", "format"],
    ] {
        let (code, _, stderr) = hpkvd(args);
        assert_eq!(code, EX_USAGE, "{args:?}: {stderr}");
    }
}

#[test]
fn module_parameters_are_accepted_under_their_own_names() {
    let (code, stdout, _) = hpkvd(&["--help"]);
    assert_eq!(code, 0);
    for option in [
        "--initialize-if-empty",
        "--force-initialize",
        "--force-read-disk",
        "--log-level",
        "--mount-path",
        "--abi",
        "--name",
        "--user",
        "--seccomp",
    ] {
        assert!(stdout.contains(option), "--help lacks {option}");
    }
    let (code, _, stderr) = hpkvd(&[
        "--force_read_disk",
        "--initialize_if_empty",
        "false",
        "--help",
    ]);
    assert_eq!(code, 0, "{stderr}");
}

/// Under systemd, stderr is the journal's stream (`JOURNAL_STREAM` names it): lines carry a
/// syslog priority and no timestamp. A `JOURNAL_STREAM` naming another file changes nothing.
#[test]
fn under_journald_lines_carry_priorities_and_no_timestamp() {
    let run = |matching: bool| {
        let (read, write) = nix::unistd::pipe().unwrap();
        let st = nix::sys::stat::fstat(write.as_fd()).unwrap();
        let stream = if matching {
            format!("{}:{}", st.st_dev, st.st_ino)
        } else {
            format!("{}:{}", st.st_dev, st.st_ino + 1)
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_hpkvd"))
            .args(["--user", "hpkv-no-such-user", "--log-level", "7"])
            .env("JOURNAL_STREAM", stream)
            .env_remove("RUST_LOG")
            .stderr(Stdio::from(write))
            .spawn()
            .unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut text).unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(EX_CONFIG));
        text
    };
    let journal = run(true);
    let first = journal.lines().next().unwrap();
    assert!(
        first.starts_with("<6>hpkvd ") && first.contains(" starting"),
        "{journal}"
    );
    let last = journal.lines().last().unwrap();
    assert!(
        last.starts_with("<3>hpkvd: --user hpkv-no-such-user: no such user"),
        "{journal}"
    );
    let plain = run(false);
    let first = plain.lines().next().unwrap();
    assert!(
        first.starts_with('[') && first.contains(" INFO "),
        "a timestamp and level: {plain}"
    );
    assert!(
        plain.lines().last().unwrap().starts_with("hpkvd: --user"),
        "{plain}"
    );
}

/// `hpkvd format` formats a blank device once; it erases a store only given its UUID, and
/// foreign data only when told so. (No CUSE needed.)
#[test]
fn format_erases_only_what_it_is_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("store.img");
    let img = image.to_str().unwrap();
    std::fs::File::create(&image)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let uuid_of = |stdout: &str| {
        let uuid = stdout.trim().rsplit(' ').next().unwrap().to_string();
        assert_eq!(uuid.len(), 36, "{stdout}");
        uuid
    };
    let (code, stdout, stderr) = hpkvd(&["format", img]);
    assert_eq!(code, 0, "{stderr}");
    let first = uuid_of(&stdout);

    let (code, _, stderr) = hpkvd(&["format", img]);
    assert_eq!(code, EX_CONFIG, "{stderr}");
    assert!(
        stderr.contains(&format!("--erase-store {first}")),
        "{stderr}"
    );
    let (code, _, stderr) = hpkvd(&[
        "format",
        "--erase-store",
        "00000000-0000-0000-0000-000000000000",
        img,
    ]);
    assert_eq!(code, EX_CONFIG, "a wrong UUID erases nothing: {stderr}");

    let (code, stdout, stderr) = hpkvd(&["format", "--erase-store", &first, img]);
    assert_eq!(code, 0, "{stderr}");
    assert_ne!(uuid_of(&stdout), first, "a new store");

    std::fs::write(&image, vec![0x5a; 32 << 20]).unwrap();
    let (code, _, stderr) = hpkvd(&["format", img]);
    assert_eq!(code, EX_CONFIG, "{stderr}");
    assert!(stderr.contains("--erase-foreign-data"), "{stderr}");
    let (code, _, stderr) = hpkvd(&["format", "--erase-foreign-data", img]);
    assert_eq!(code, 0, "{stderr}");
}
