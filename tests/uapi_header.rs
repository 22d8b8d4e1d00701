//! `uapi/hpkv.h` is the single source of numbers and layouts: it must compile as strict C99,
//! and C must see the same sizes and numbers as Rust (which takes them through bindgen).

use std::process::Command;

use hpkv_abi as abi;

#[test]
fn the_header_compiles_as_c99_and_agrees_with_rust() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("check.c");
    // C99 has no _Static_assert: a negative array size fails the build instead.
    let check = |name: &str, expr: &str, want: u64| {
        format!("typedef char check_{name}[({expr}) == {want}ULL ? 1 : -1];\n")
    };
    let mut c = String::from("#include \"hpkv.h\"\n#include <stddef.h>\n");
    c += &check(
        "get_size",
        "sizeof(struct hpkv_get)",
        abi::GET_STRUCT_SIZE as u64,
    );
    c += &check(
        "range_size",
        "sizeof(struct hpkv_range)",
        abi::RANGE_STRUCT_SIZE as u64,
    );
    c += &check(
        "stats_size",
        "sizeof(struct hpkv_stats)",
        abi::STATS_STRUCT_SIZE as u64,
    );
    c += &check(
        "entry_size",
        "sizeof(struct hpkv_range_entry)",
        abi::RANGE_ENTRY_HEADER_SIZE as u64,
    );
    c += &check("kv_size", "sizeof(struct hpkv_kv)", 10);
    c += &check("v13_size", "sizeof(struct hpkv_v13_key)", 2);
    c += &check(
        "range_header",
        "offsetof(struct hpkv_range, start)",
        abi::RANGE_HEADER_SIZE as u64,
    );
    c += &check("ioc_get", "HPKV_IOC_GET", u64::from(abi::IOC_GET));
    c += &check("ioc_range", "HPKV_IOC_RANGE", u64::from(abi::IOC_RANGE));
    c += &check("ioc_stats", "HPKV_IOC_STATS", u64::from(abi::IOC_STATS));
    c += &check("ioc_sync", "HPKV_IOC_SYNC", u64::from(abi::IOC_SYNC));
    c += &check("ioc_info", "HPKV_IOC_INFO", u64::from(abi::IOC_INFO));
    c += &check(
        "info_size",
        "sizeof(struct hpkv_info)",
        abi::INFO_STRUCT_SIZE as u64,
    );
    c += &check(
        "ioc_put_batch",
        "HPKV_IOC_PUT_BATCH",
        u64::from(abi::IOC_PUT_BATCH),
    );
    c += &check(
        "put_batch_size",
        "sizeof(struct hpkv_put_batch)",
        abi::PUT_BATCH_HEADER_SIZE as u64,
    );
    c += &check(
        "batch_entry_size",
        "sizeof(struct hpkv_batch_entry)",
        abi::BATCH_ENTRY_HEADER_SIZE as u64,
    );
    c += &check(
        "batch_entry_macro",
        "HPKV_BATCH_ENTRY_SIZE(3, 10)",
        abi::batch_entry_size(3, 10) as u64,
    );
    c += &check(
        "entry_macro",
        "HPKV_RANGE_ENTRY_SIZE(3, 10)",
        abi::range_entry_size(3, 10) as u64,
    );
    c += "int main(void) { return HPKV_IOCTL_GET + HPKV_IOCTL_DELETE; }\n";
    std::fs::write(&src, c).unwrap();
    let uapi = concat!(env!("CARGO_MANIFEST_DIR"), "/uapi");
    let out = Command::new("gcc")
        .args([
            "-std=c99",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
            uapi,
            "-o",
        ])
        .arg(dir.path().join("check"))
        .arg(&src)
        .output()
        .expect("gcc runs");
    assert!(
        out.status.success(),
        "gcc rejected uapi/hpkv.h:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `crates/abi/src/uapi/bindings.rs` is bindgen's translation of `uapi/hpkv.h`, committed so that the
/// client builds without clang. It must be exactly what bindgen makes of the header today.
/// `HPKV_UPDATE_UAPI=1 cargo test --test uapi_header` rewrites it after a change of the header.
#[test]
fn the_committed_bindings_are_the_headers() {
    let root = env!("CARGO_MANIFEST_DIR");
    let generated = bindgen::Builder::default()
        .header(format!("{root}/uapi/hpkv.h"))
        // The extension numbers are _IOWR(...) expressions: let clang evaluate them.
        .clang_macro_fallback()
        .allowlist_var("HPKV_.*")
        .allowlist_type("hpkv_.*")
        .derive_default(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen over uapi/hpkv.h")
        .to_string();
    let committed_path = format!("{root}/crates/abi/src/uapi/bindings.rs");
    if std::env::var_os("HPKV_UPDATE_UAPI").is_some() {
        std::fs::write(&committed_path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap();
    assert!(
        committed == generated,
        "{committed_path} is stale: run HPKV_UPDATE_UAPI=1 cargo test --test uapi_header"
    );
}
