#!/usr/bin/env bash
# tests/vm/smoke/run.sh — end-to-end smoke test of the VM harness.
#
# Usage: tests/vm/smoke/run.sh [--one-boot] [--verbose]
# Builds the payload (guest-main, a libfuse3 CUSE server and a C client compiled on the host) in
# <repo>/target/vm/smoke-payload, then boots the VM twice on the same disk
# (<repo>/target/vm/smoke-disk.img): boot 1 runs every check and writes a nonce to the disk, boot 2
# checks that the nonce survived (restart support). --one-boot skips boot 2.
# Prints "N passed, M failed" (both boots together) as its last line; exit status 0 iff M == 0.
set -euo pipefail
# Name the failing command instead of exiting silently.
trap 'printf "[hpkv-vm] ERROR: %s: line %s: %s failed\\n" "${BASH_SOURCE[0]##*/}" "$LINENO" "$BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../common.sh
. "$here/../common.sh"

one_boot=0
vm_opts=()
for arg in "$@"; do
    case $arg in
        --one-boot) one_boot=1 ;;
        --verbose) vm_opts+=(--verbose) ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) hpkv_die "unknown argument: $arg" ;;
    esac
done

t0=$(date +%s.%N)
hpkv_install_packages "${HPKV_DEPS_PACKAGES[@]}"

out=$HPKV_REPO/target/vm
payload=$out/smoke-payload
rm -rf "$payload"
mkdir -p "$payload"
cflags=(-O2 -Wall -Wextra -Werror)
# shellcheck disable=SC2046  # pkg-config prints several words
gcc "${cflags[@]}" $(pkg-config --cflags fuse3) -o "$payload/hpkv-smoke-server" \
    "$here/hpkv-smoke-server.c" $(pkg-config --libs fuse3)
gcc "${cflags[@]}" -o "$payload/hpkv-smoke-client" "$here/hpkv-smoke-client.c"
install -m 0755 "$here/guest-main" "$payload/guest-main"

nonce=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
total_pass=0 total_fail=0
# Run one boot; add its "N passed, M failed" line to the totals.
boot() {
    local outf rc=0 last
    outf=$(mktemp)
    "$HPKV_VM_DIR/run-vm.sh" --payload "$payload" --disk "$out/smoke-disk.img" --timeout 180 \
        --rules "$here/99-hpkv-smoke.rules" "${vm_opts[@]+"${vm_opts[@]}"}" "$@" | tee "$outf" || rc=$?
    last=$(tail -n 1 "$outf")
    rm -f "$outf"
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        total_pass=$((total_pass + BASH_REMATCH[1]))
        total_fail=$((total_fail + BASH_REMATCH[2]))
    else
        echo "HPKV-RESULT FAIL smoke:runner run-vm.sh exited $rc without a summary line"
        total_fail=$((total_fail + 1))
    fi
}

boot --name smoke-boot1 --fresh-disk --append-cmdline "HPKV_SMOKE_PHASE=1 HPKV_SMOKE_NONCE=$nonce"
if [ "$one_boot" = 0 ]; then
    boot --name smoke-boot2 --append-cmdline "HPKV_SMOKE_PHASE=2 HPKV_SMOKE_NONCE=$nonce"
fi
echo "smoke: whole run $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ] && [ "$total_pass" -gt 0 ]
