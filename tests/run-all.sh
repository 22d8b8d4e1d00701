#!/usr/bin/env bash
# tests/run-all.sh — every test of hpkv, from a fresh machine (the README's test command; .ci/run).
#
#   1. host packages (Debian's registry), formatting, lints (clippy pedantic on every crate, the
#      bench and the VM suites; tests/lint-policy.sh), the docs (cargo doc, warnings denied), and
#      the fuzz targets built;
#   2. cargo test: unit tests, model-based property tests, crash tests over thousands of crash
#      points, the engine on a real loop device (root), the hpkvd command line;
#   3. the fuzz targets, a bounded time each (fuzz/run.sh);
#   4. the VM suite: the real /dev/hpkv through CUSE in a VM (tests/vm/suite/run.sh);
#   5. the short torture suite in the VM (tests/vm/torture/run.sh: kill -9, power-offs, ...);
#   6. the Debian package in Debian 12 booted with systemd (tests/vm/systemd/run.sh: dpkg -i,
#      systemctl enable --now, privileges, restart, journal, systemd-analyze security). Its root
#      image is built once by debootstrap (about 3 minutes) and cached in ~/.cache/hpkv-vm.
#      The last line printed, "N passed, M failed", sums 4, 5 and 6.
# Options: --quick skips the fuzzing; HPKV_FUZZ_SECONDS (default 20) sets the time per fuzz target.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"
quick=0
[ "${1:-}" = --quick ] && quick=1
t0=$(date +%s)
step() { printf '\n==== %s (%ss)\n' "$1" "$(($(date +%s) - t0))"; }

step "host packages"
# shellcheck source=vm/common.sh
. tests/vm/common.sh
hpkv_install_packages "${HPKV_DEPS_PACKAGES[@]}"

step "cargo fmt --check, cargo clippy -D warnings, lint policy"
cargo fmt --all -- --check
# Every member, the bench included, and every target.
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The VM suites (test = false, so --all-targets leaves them out).
cargo clippy --quiet --test device_suite --test client_suite --test cli_suite --test view_stress --test get_latency -- -D warnings
tests/lint-policy.sh

step "cargo doc, warnings denied"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet

step "fuzz targets build (cargo check)"
# fuzz/ is its own workspace; cargo fuzz needs nightly flags, so RUSTC_BOOTSTRAP=1.
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo check --bins --quiet)

step "cargo test (unit, property, crash, loop device)"
cargo test --quiet 2>&1 | grep -v '^$'

if [ "$quick" = 0 ] && [ -x fuzz/run.sh ]; then
    step "fuzz targets, ${HPKV_FUZZ_SECONDS:-20} s each"
    fuzz/run.sh "${HPKV_FUZZ_SECONDS:-20}"
fi

# The VM parts each end with "N passed, M failed"; the last line sums them.
vm_pass=0 vm_fail=0 vm_rc=0
vm_part() {
    local out rc=0 last
    out=$(mktemp)
    "$@" | tee "$out" || rc=$?
    last=$(tail -n 1 "$out")
    rm -f "$out"
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        vm_pass=$((vm_pass + BASH_REMATCH[1]))
        vm_fail=$((vm_fail + BASH_REMATCH[2]))
    else
        vm_fail=$((vm_fail + 1))
    fi
    [ "$rc" = 0 ] || vm_rc=$rc
}

step "VM suite: /dev/hpkv through CUSE"
vm_part tests/vm/suite/run.sh

step "VM torture, short: kill -9, power-offs (tests/vm/torture/run.sh)"
vm_part tests/vm/torture/run.sh

step "VM systemd: the Debian package under systemd (tests/vm/systemd/run.sh)"
vm_part tests/vm/systemd/run.sh

echo "$vm_pass passed, $vm_fail failed"
[ "$vm_rc" = 0 ] && [ "$vm_fail" = 0 ]
