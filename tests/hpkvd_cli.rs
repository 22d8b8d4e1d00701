//! hpkvd's command line on the host (the VM suite covers serving the device).
// Lint debt (issue 12), paid down crate by crate: a lint leaves this list once it is clean.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_lossless,
    clippy::doc_markdown,
    clippy::used_underscore_binding,
    clippy::missing_errors_doc,
    clippy::semicolon_if_nothing_returned,
    clippy::cast_possible_wrap,
    clippy::return_self_not_must_use,
    clippy::borrow_as_ptr,
    clippy::redundant_closure_for_method_calls,
    clippy::ignored_unit_patterns,
    clippy::too_many_lines,
    clippy::needless_continue,
    clippy::single_match_else,
    clippy::ptr_as_ptr,
    clippy::cast_sign_loss,
    clippy::struct_excessive_bools,
    clippy::similar_names,
    clippy::ptr_cast_constness,
    clippy::match_wild_err_arm,
    clippy::match_same_arms,
    clippy::default_trait_access,
    clippy::cast_precision_loss,
    clippy::items_after_statements,
    clippy::zero_sized_map_values,
    clippy::unreadable_literal,
    clippy::unnecessary_debug_formatting,
    clippy::needless_pass_by_value,
    clippy::ignore_without_reason,
    clippy::format_push_string,
    clippy::match_bool,
    clippy::format_collect,
    clippy::many_single_char_names,
    clippy::float_cmp,
    clippy::unused_self,
    clippy::struct_field_names,
    clippy::map_unwrap_or
)]

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
