//! `uapi/hpkv.h` is the single source of numbers and layouts: it must compile as strict C99,
//! and C must see the same sizes and numbers as Rust (which takes them through bindgen).

use std::process::Command;

use hpkv::abi;

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
    c += &check("ioc_get", "HPKV_IOC_GET", abi::IOC_GET as u64);
    c += &check("ioc_range", "HPKV_IOC_RANGE", abi::IOC_RANGE as u64);
    c += &check("ioc_stats", "HPKV_IOC_STATS", abi::IOC_STATS as u64);
    c += &check("ioc_sync", "HPKV_IOC_SYNC", abi::IOC_SYNC as u64);
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
