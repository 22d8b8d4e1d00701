#!/usr/bin/env bash
# tests/vm/bench/syscalls.sh — where hpkvd's system calls go under load: a short VM run that
# counts, per thread, the system calls (and context switches and wake-ups) of hpkvd and of the
# no-op CUSE server while 8 writers make 800 durable writes each way. Counts, not times: it uses
# the guest kernel's ftrace histogram triggers, which cost little, so the counts are those of a
# normal run (README, "Through the device": this is how the timer thread that led most batches,
# and clock reads that are system calls in the guest, were found).
#
# Usage: tests/vm/bench/syscalls.sh [--profile] [--verbose]
#   --profile  instead of counting, samples every vCPU with perf (the host's perf, copied in) during
#              1600 writes by 8 writers to each server, and prints where the vCPU time went
# Prints the VM run's "N passed, M failed", then the two rates (RESULT lines) and the histograms
# (one line per thread and system call, switch or wake-up); exits 0 iff the run passed. About 2
# minutes with the VM kit cached.
set -euo pipefail
trap 'printf "[hpkv-vm] ERROR: %s: line %s: %s failed\\n" "${BASH_SOURCE[0]##*/}" "$LINENO" "$BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../common.sh
. "$here/../common.sh"
# shellcheck source-path=SCRIPTDIR source=payload.sh
. "$here/payload.sh"

vm_opts=()
guest=syscalls-guest
for arg in "$@"; do
    case $arg in
        --verbose) vm_opts+=(--verbose) ;;
        --profile) guest=profile-guest ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) hpkv_die "unknown argument: $arg" ;;
    esac
done

hpkv_install_packages "${HPKV_DEPS_PACKAGES[@]}"
cd "$HPKV_REPO"
out=$HPKV_REPO/target/vm
payload=$out/syscalls-payload
hpkv_log "building hpkvd and hpkvctl (release), the no-op server and the timing client"
bench_payload "$payload"
install -m 0755 "$here/$guest" "$payload/guest-main"
if [ "$guest" = profile-guest ]; then
    command -v perf >/dev/null || hpkv_install_packages linux-perf
    vm_opts+=(--host-file "$(command -v perf)")
fi

console=$out/syscalls-console.log
rc=0
"$HPKV_VM_DIR/run-vm.sh" --payload "$payload" --name syscalls --log "$console" \
    --timeout 900 "${vm_opts[@]+"${vm_opts[@]}"}" || rc=$?
grep -a -E '^(RESULT|===|SAMPLES|\{ | +[0-9.]+%)' "$console" | tr -d '\r' | grep -v -E 'udev|guest-main' || true
exit "$rc"
