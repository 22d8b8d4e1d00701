//! hpkvd's command line on the host (the VM suite covers serving the device).

use std::process::Command;

fn hpkvd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hpkvd"))
        .args(args)
        .output()
        .expect("hpkvd runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn without_cuse_it_says_so_in_one_line_and_fails() {
    if std::path::Path::new("/dev/cuse").exists() {
        eprintln!(
            "SKIP: this kernel has CUSE; the message for kernels without it cannot be seen here"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("store.img");
    let (code, _, stderr) = hpkvd(&[image.to_str().unwrap()]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    assert!(
        lines[0].starts_with("hpkvd: /dev/cuse not found"),
        "{stderr:?}"
    );
    assert!(
        !image.exists(),
        "nothing is created when the device cannot be served"
    );
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
    ] {
        assert!(stdout.contains(option), "--help lacks {option}");
    }
    // The module's spellings parse (the run then stops at the missing CUSE, or serves).
    let (code, _, stderr) = hpkvd(&["--abi", "v2"]);
    assert_eq!(code, 2, "an unknown profile is a usage error: {stderr}");
    let (code, _, stderr) = hpkvd(&["--log_level", "9"]);
    assert_eq!(code, 2, "log_level is 0 to 7: {stderr}");
    let (code, _, stderr) = hpkvd(&[
        "--force_read_disk",
        "--initialize_if_empty",
        "false",
        "--help",
    ]);
    assert_eq!(code, 0, "{stderr}");
}
