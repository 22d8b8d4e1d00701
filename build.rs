//! The build information of `hpkvd --version` (`hpkv_build_info`), and binds libfuse3's CUSE
//! low-level API (`cuse_lowlevel.h`) with bindgen into `cuse_sys.rs`,
//! linked through pkg-config. (`uapi/hpkv.h` is bound once and committed in `crates/abi`, so
//! that clients build without a C toolchain; `tests/uapi_header.rs` checks that copy.)

use std::env;
use std::path::PathBuf;

fn main() {
    // HPKV_GIT_COMMIT and HPKV_BUILD_PROFILE, for `hpkvd --version` and STATS.
    hpkv_build_info::emit();
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    let fuse = pkg_config::Config::new()
        .atleast_version("3.10")
        .probe("fuse3")
        .unwrap_or_else(|e| {
            panic!("libfuse3 not found ({e}); install it with: apt-get install libfuse3-dev pkg-config")
        });
    let fuse_includes = fuse
        .include_paths
        .iter()
        .map(|p| format!("-I{}", p.display()));

    println!("cargo:rerun-if-changed=src/ffi/cuse_wrapper.h");
    bindgen::Builder::default()
        .header("src/ffi/cuse_wrapper.h")
        .clang_args(fuse_includes)
        .allowlist_function("cuse_lowlevel_setup")
        .allowlist_function("fuse_session_(receive_buf|process_buf|exit|exited|fd|destroy)")
        .allowlist_function("fuse_remove_signal_handlers")
        .allowlist_function("fuse_reply_(err|buf|write|open|ioctl|ioctl_iov|ioctl_retry|none)")
        .allowlist_function("fuse_req_userdata")
        .allowlist_type("cuse_lowlevel_ops")
        .allowlist_type("cuse_info")
        .allowlist_type("fuse_buf")
        .allowlist_var("CUSE_UNRESTRICTED_IOCTL")
        .derive_default(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen over cuse_lowlevel.h")
        .write_to_file(out.join("cuse_sys.rs"))
        .expect("write cuse_sys.rs");
}
