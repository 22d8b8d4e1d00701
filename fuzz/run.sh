#!/usr/bin/env bash
# Runs every cargo-fuzz target of hpkv for SECONDS_PER_TARGET seconds (default 30), one after
# the other, with debug assertions and overflow checks on. Installs cargo-fuzz first if it is
# missing. Fails if any target crashes: the input is kept under fuzz/artifacts/TARGET/ and
# `cargo fuzz run -a TARGET fuzz/artifacts/TARGET/crash-...` replays it.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]
#
# The toolchain is stable: cargo fuzz needs nightly flags (-Zsanitizer), so RUSTC_BOOTSTRAP=1.
set -euo pipefail

secs=${1:-30}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    t0=$(date +%s)
    cargo install cargo-fuzz --locked
    echo "run.sh: cargo-fuzz installed in $(($(date +%s) - t0)) s"
fi

t0=$(date +%s)
cargo fuzz build -a
echo "run.sh: built in $(($(date +%s) - t0)) s"

mkdir -p logs
failed=()
summary=()
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    log="logs/$target.log"
    echo "run.sh: $target for $secs s"
    set +e
    cargo fuzz run -a "$target" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    corpus=$(find "corpus/$target" -type f | wc -l)
    if [ "$rc" -ne 0 ]; then
        failed+=("$target")
        echo "run.sh: $target FAILED (exit $rc); the end of $log:"
        grep -m1 -A1 'panicked at' "$log" || true
        tail -40 "$log"
        summary+=("$target: CRASH")
    else
        summary+=("$target: ok, ${execs:-?} execs, cov ${cov:-?}, ft ${ft:-?}, corpus $corpus")
    fi
done

printf 'run.sh: %s\n' "${summary[@]}"
echo "fuzz: ${#summary[@]} targets, $((${#summary[@]} - ${#failed[@]})) clean, ${#failed[@]} crashed (${secs} s each)${failed:+: ${failed[*]}}"
[ "${#failed[@]}" -eq 0 ]
