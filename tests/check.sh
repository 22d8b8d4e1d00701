#!/usr/bin/env bash
# tests/check.sh — the fast check before a commit (about a minute once built): formatting,
# clippy pedantic with -D warnings on every crate and test program, the lint policy
# (tests/lint-policy.sh), and the unit tests and doc tests. No crash sweeps, no fuzzing, no VM:
# tests/run-all.sh runs everything (what CI runs).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"
t0=$(date +%s)
step() { printf '==== %s (%ss)\n' "$1" "$(($(date +%s) - t0))"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings (every crate and target, the VM suites)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy --quiet --test device_suite --test client_suite --test cli_suite --test view_stress --test get_latency -- -D warnings
step "lint policy"
tests/lint-policy.sh
step "unit tests and doc tests"
cargo test --workspace --lib --bins --quiet 2>&1 | grep -v '^$'
cargo test --workspace --doc --quiet 2>&1 | grep -v '^$'
step "done"
