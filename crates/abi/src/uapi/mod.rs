//! `uapi/hpkv.h` as bindgen translates it: the numbers, limits and structs of the ABI.
//!
//! `bindings.rs` is generated once and committed, so that building this crate needs no C
//! toolchain; `tests/uapi_header.rs` at the workspace root regenerates it and fails when the
//! copy is stale (`HPKV_UPDATE_UAPI=1 cargo test --test uapi_header` rewrites it). It is
//! generated code: its own lints are off. Its only `unsafe` items are bindgen's accessors of
//! the flexible array members (`value[]`, `data[]`), which nothing in hpkv calls; this module
//! is one of the files `tests/lint-policy.sh` lets allow `unsafe_code`.
#![allow(
    missing_docs,
    non_camel_case_types,
    non_upper_case_globals,
    dead_code,
    unsafe_code,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks
)]

include!("bindings.rs");
