#!/usr/bin/env bash
# tests/vm/torture/run.sh — the torture suite: hpkvd through the real /dev/hpkv in the VM under
# kill -9, power-offs, device errors, a full device and bad input, each checked by one verifier
# against a log of acknowledged operations (crates/torture); with --crash-seeds, the engine's
# crash sweeps on the host too.
#
# Usage: tests/vm/torture/run.sh [--long] [--seed N] [--kill9-rounds N] [--power-offs N]
#            [--bad-input-seconds S] [--bad-input-requests N] [--crash-seeds N]
#            [--only SCENARIO,...] [--verbose]
#   --long                  the long run: --kill9-rounds 100 --power-offs 20
#                           --bad-input-requests 10000000 --crash-seeds 6
#   --seed N                every choice of the run derives from it (default: random, printed)
#   --kill9-rounds N        kill -9 / SIGTERM rounds (default 20)
#   --power-offs N          power-offs, each followed by a boot that verifies (default 3)
#   --bad-input-seconds S   bad input for S seconds (default 60) ...
#   --bad-input-requests N  ... or until N requests (default 0: the time limit alone)
#   --crash-seeds N         also run the engine's crash sweeps (crates/engine/tests/engine_crash.rs)
#                           on the host with N seeds (default 0: cargo test runs them once)
#   --only LIST             scenarios, comma-separated: kill9, flakey, enospc, bad-input, power
# Boot 1 runs kill9, flakey, enospc and bad-input, then power-off 1; boots 2 .. N+1 each verify what
# the last power-off left, and all but the last end with the next power-off (sysrq b in the guest,
# or qemu killed by the host: chosen from the seed, at a random moment).
# Prints the figures of every scenario, then "N passed, M failed" as its last line; exit status 0
# iff M == 0. target/vm/torture-*.log hold the consoles.
set -euo pipefail
trap 'printf "[hpkv-vm] ERROR: %s: line %s: %s failed\\n" "${BASH_SOURCE[0]##*/}" "$LINENO" "$BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../common.sh
. "$here/../common.sh"

seed="" kill9_rounds=20 power_offs=3 bad_seconds=60 bad_requests=0 crash_seeds=0 only="" vm_opts=()
need() { [ "$#" -ge 2 ] || hpkv_die "$1 needs an argument (see --help)"; }
while [ "$#" -gt 0 ]; do
    case $1 in
        --long) kill9_rounds=100 power_offs=20 bad_requests=10000000 bad_seconds=36000 crash_seeds=6 ;;
        --seed) need "$@"; seed=$2; shift ;;
        --kill9-rounds) need "$@"; kill9_rounds=$2; shift ;;
        --power-offs) need "$@"; power_offs=$2; shift ;;
        --bad-input-seconds) need "$@"; bad_seconds=$2; shift ;;
        --bad-input-requests) need "$@"; bad_requests=$2; shift ;;
        --crash-seeds) need "$@"; crash_seeds=$2; shift ;;
        --only) need "$@"; only=$2; shift ;;
        --verbose) vm_opts+=(--verbose) ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) hpkv_die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
seed=${seed:-$(( $(od -An -N4 -tu4 /dev/urandom) % 1000000 + 1 ))}
replay="$0 --seed $seed --kill9-rounds $kill9_rounds --power-offs $power_offs"
replay+=" --bad-input-seconds $bad_seconds --bad-input-requests $bad_requests${only:+ --only $only}"
replay+=" --crash-seeds $crash_seeds"
hpkv_log "torture: seed $seed (replay: $replay)"
wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

t0=$(date +%s)
hpkv_install_packages "${HPKV_DEPS_PACKAGES[@]}"
cd "$HPKV_REPO"
out=$HPKV_REPO/target/vm/torture
payload=$out/payload
rm -rf "$payload"
mkdir -p "$payload"
hpkv_log "building hpkvd and hpkv-torture (release)"
cargo build --release --quiet --bin hpkvd --bin hpkv-torture
cp target/release/hpkvd target/release/hpkv-torture "$payload/"
install -m 0755 "$here/guest-main" "$payload/guest-main"

# Disks after /dev/vda: the power-off store and its log (vdb, vdc), the disk under dm-flakey (vdd),
# the small disk (vde). cache=none: qemu writes the images with O_DIRECT and turns the guest's
# flushes into fdatasync, so the guest sees a disk with a volatile cache and flushes it for real.
rm -f "$out"/{power-store,power-log,flakey,small}.img
truncate -s 256M "$out/power-store.img"
# The power-off log: a region for each of the 4 writers, the purger and the orchestrator, each
# 4096 sectors a boot and 4096 more (crates/torture/src/power.rs, log.rs): 12 MiB a boot.
power_log_mib=$(((power_offs + 2) * 12 + 1))
((power_log_mib >= 256)) || power_log_mib=256
truncate -s "${power_log_mib}M" "$out/power-log.img"
truncate -s 128M "$out/flakey.img"
truncate -s 8M "$out/small.img"
disks=()
for img in power-store power-log flakey small; do
    disks+=(--qemu-arg -drive --qemu-arg "file=$out/$img.img,format=raw,if=virtio,cache=none")
done

total_pass=0 total_fail=0
boot() {
    local outf rc=0 last
    outf=$(mktemp)
    "$HPKV_VM_DIR/run-vm.sh" --payload "$payload" --disk "$out/kill9.img" --disk-size 256M \
        --disk-cache none --module dm_flakey --mem 1536 "${disks[@]}" \
        "${vm_opts[@]+"${vm_opts[@]}"}" "$@" | tee "$outf" || rc=$?
    last=$(tail -n 1 "$outf")
    rm -f "$outf"
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        total_pass=$((total_pass + BASH_REMATCH[1]))
        total_fail=$((total_fail + BASH_REMATCH[2]))
    else
        echo "HPKV-RESULT FAIL torture:runner run-vm.sh exited $rc without a summary line"
        total_fail=$((total_fail + 1))
    fi
}

# The power-off schedule, from the seed: who cuts the power, and when.
RANDOM=$seed
power_mode=() power_ms=()
for ((b = 1; b <= power_offs; b++)); do
    if ((RANDOM % 2)); then power_mode[b]=host; else power_mode[b]=sysrq; fi
    power_ms[b]=$((200 + RANDOM % 2800))
done
# Options of boot B: before a power-off, the mode and delay.
power_opts() {
    local b=$1
    if ((b <= power_offs)); then
        echo "--append-cmdline HPKV_TORTURE_POWER_MODE=${power_mode[b]} --append-cmdline HPKV_TORTURE_POWER_MS=${power_ms[b]}"
        [ "${power_mode[b]}" = host ] && echo "--power-off-after-ms ${power_ms[b]}"
    fi
    return 0
}
common_cmdline="HPKV_TORTURE_SEED=$seed HPKV_TORTURE_POWER_OFFS=$power_offs"
main_cmdline="HPKV_TORTURE_STAGE=main HPKV_TORTURE_KILL9_ROUNDS=$kill9_rounds"
main_cmdline+=" HPKV_TORTURE_BAD_SECONDS=$bad_seconds HPKV_TORTURE_BAD_REQUESTS=$bad_requests"
main_timeout=$((1800 + kill9_rounds * 30 + bad_seconds + bad_requests / 1000))

rm -f "$HPKV_REPO"/target/vm/torture-*.log
# shellcheck disable=SC2046  # power_opts prints separate words
boot --name torture-main --fresh-disk --timeout "$main_timeout" \
    --append-cmdline "$main_cmdline $common_cmdline" \
    ${only:+--append-cmdline "HPKV_TORTURE_ONLY=$only"} \
    $(wanted power && power_opts 1)
if wanted power; then
    for ((b = 2; b <= power_offs + 1; b++)); do
        # shellcheck disable=SC2046
        boot --name "torture-power-$b" --timeout 900 \
            --append-cmdline "HPKV_TORTURE_STAGE=power HPKV_TORTURE_BOOT=$b $common_cmdline" \
            $(power_opts "$b")
    done
fi

# The engine's crash sweeps on the host, with more seeds (the long run).
crash_points=0 read_fault_points=0
for ((s = 1; s <= crash_seeds; s++)); do
    hpkv_log "engine crash sweeps, seed $s of $crash_seeds"
    sweep_out=$(mktemp)
    if HPKV_CRASH_SEED=$((seed + s)) cargo test --release --quiet -p hpkv-engine --test engine_crash \
        -- --nocapture 2>&1 | tee "$sweep_out" | grep -E 'crash points|read fault points|test result'; then
        total_pass=$((total_pass + 1))
    else
        echo "HPKV-RESULT FAIL torture:engine-crash-sweeps seed HPKV_CRASH_SEED=$((seed + s))"
        total_fail=$((total_fail + 1))
    fi
    n=$(grep -oE '[0-9]+ crash points' "$sweep_out" | awk '{ s += $1 } END { print s + 0 }')
    crash_points=$((crash_points + n))
    n=$(grep -oE '[0-9]+ read fault points' "$sweep_out" | awk '{ s += $1 } END { print s + 0 }')
    read_fault_points=$((read_fault_points + n))
    rm -f "$sweep_out"
done

echo "---- torture figures (seed $seed) ----"
cat "$HPKV_REPO"/target/vm/torture-*.log 2>/dev/null | tr -d '\r' | grep -a '^HPKV-TORTURE figures' |
    sed 's/^HPKV-TORTURE figures /  /' || true
((crash_seeds > 0)) && echo "  engine-crash-sweeps seeds=$crash_seeds crash_points=$crash_points read_fault_points=$read_fault_points"
echo "torture: $(($(date +%s) - t0)) s in all; seed $seed"
if [ "$total_fail" != 0 ]; then echo "torture: replay with: $replay"; fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ] && [ "$total_pass" -gt 0 ]
