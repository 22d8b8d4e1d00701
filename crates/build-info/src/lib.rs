//! Build information for hpkv's binaries, for their build scripts (a build-dependency):
//! [`emit`] sets two environment variables for the crate being built, read with `env!`:
//!
//! - `HPKV_GIT_COMMIT`: the commit the source was built from (12 hex digits), or `unknown`
//!   outside a git checkout (a release tarball) or without `git`;
//! - `HPKV_BUILD_PROFILE`: Cargo's profile, `release` or `debug`;
//! - `HPKV_VERSION`: what `--version` prints, the package's version with both:
//!   `0.2.0 (0123456789ab, release)`.
//!
//! The build script runs again when the checkout's `HEAD` or the branch it names moves, so the
//! commit stays the one built.
#![warn(missing_docs)]

use std::process::Command;

/// What `HPKV_GIT_COMMIT` says when the commit cannot be known.
pub const UNKNOWN: &str = "unknown";

/// The output of `git ARGS`, trimmed, if git ran and succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// The commit of the checkout the build runs in, if it is one.
pub fn commit() -> Option<String> {
    git(&["rev-parse", "--short=12", "HEAD"])
}

/// Prints the `cargo:` lines of a build script: the two variables, and what to watch.
pub fn emit() {
    let commit = commit().unwrap_or_else(|| UNKNOWN.to_string());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| UNKNOWN.to_string());
    println!("cargo:rustc-env=HPKV_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=HPKV_BUILD_PROFILE={profile}");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| UNKNOWN.to_string());
    println!("cargo:rustc-env=HPKV_VERSION={version} ({commit}, {profile})");
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
    }
    let branch = git(&["rev-parse", "--symbolic-full-name", "HEAD"]);
    if let Some(path) = branch
        .filter(|b| b.starts_with("refs/"))
        .and_then(|b| git(&["rev-parse", "--path-format=absolute", "--git-path", &b]))
    {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Some(path) = git(&[
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        "packed-refs",
    ]) {
        println!("cargo:rerun-if-changed={path}");
    }
}
