//! The C library from C: `uapi/hpkv_view.h` compiles as strict C99 and
//! `examples/view_get.c`, linked with `libhpkv.so`, reads a view written here (a view that
//! says it describes `/dev/null`, whose ioctls answer ENOTTY, so a GET that reached the
//! device shows).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hpkv_view::{ViewConfig, ViewWriter};

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// `libhpkv.so`, built for this run in the same profile.
fn build_library() -> PathBuf {
    let dir = target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", "hpkv-capi"]);
    if dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    assert!(
        build.status().unwrap().success(),
        "cargo build -p hpkv-capi"
    );
    assert!(dir.join("libhpkv.so").exists());
    dir
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_example_compiles_as_strict_c99_and_reads_the_view() {
    let lib_dir = build_library();
    let work = tempfile::tempdir().unwrap();
    let exe = work.path().join("view_get");
    let status = Command::new("cc")
        .args(["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(repo().join("uapi"))
        .arg(repo().join("examples/view_get.c"))
        .arg("-L")
        .arg(&lib_dir)
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .args(["-lhpkv", "-o"])
        .arg(&exe)
        .status()
        .unwrap();
    assert!(status.success(), "view_get.c does not compile as C99");

    let view = work.path().join("null.view");
    let mut config = ViewConfig::new(64, 4096, 1 << 16);
    config.device = std::fs::metadata("/dev/null").unwrap().rdev();
    let mut w = ViewWriter::create(&view, &config).unwrap();
    w.upsert(b"mykey", 1, Some(b"myvalue"), 7).unwrap();
    let long = vec![b'v'; 100];
    w.upsert(b"long", 2, Some(&long), 100).unwrap();
    w.upsert(b"cold", 3, None, 5).unwrap();
    w.publish().unwrap();

    // By name: the view of /dev/null is null.view in HPKV_VIEW_DIR.
    let out = Command::new(&exe)
        .args(["null", "mykey", "long", "nobody", "cold"])
        .env("HPKV_VIEW_DIR", work.path())
        .env_remove("HPKV_VIEW")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let want = format!(
        "mykey: myvalue\nlong: {}\nnobody: no such key\ncold: Inappropriate ioctl for device\n\
         view: live; answers: 3 view hits, 1 view misses, 1 from the device\n",
        "v".repeat(100),
    );
    assert_eq!(stdout, want);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the device's ENOTTY is a failure"
    );

    // Without a view, the device answers everything.
    w.mark_dead();
    let out = Command::new(&exe)
        .args(["/dev/null", "mykey"])
        .env("HPKV_VIEW_DIR", work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.ends_with(
            "view: not in use; answers: 0 view hits, 0 view misses, 1 from the device\n"
        ),
        "{stdout}"
    );
}
