#!/usr/bin/env bash
# tests/vm/torture/run.sh — the torture suite: hpkvd through the real /dev/hpkv in the VM, under
# kill -9, power-offs, device errors, a full device and bad input, each checked by one verifier
# against a log of acknowledged operations (crates/torture).
#
# Usage: tests/vm/torture/run.sh [--seed N] [--kill9-rounds N] [--power-offs N]
#                                [--only SCENARIO,...] [--verbose]
#   --seed N          every choice of the run derives from it (default: random, printed)
#   --kill9-rounds N  kill -9 / SIGTERM rounds (default 20)
#   --power-offs N    power-offs, each followed by a boot that verifies (default 3)
#   --only LIST       scenarios to run, comma-separated: kill9, power (default: all)
# Boot 1 runs the one-boot scenarios and ends with power-off 1; boots 2 .. N+1 each verify what the
# last power-off left, and all but the last end with the next power-off (sysrq b in the guest or
# qemu killed by the host, at random, at a random moment).
# Prints "N passed, M failed" as its last line; exit status 0 iff M == 0.
set -euo pipefail
trap 'printf "[hpkv-vm] ERROR: %s: line %s: %s failed\\n" "${BASH_SOURCE[0]##*/}" "$LINENO" "$BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../common.sh
. "$here/../common.sh"

seed="" kill9_rounds=20 power_offs=3 only="" vm_opts=()
while [ "$#" -gt 0 ]; do
    case $1 in
        --seed) seed=$2; shift ;;
        --kill9-rounds) kill9_rounds=$2; shift ;;
        --power-offs) power_offs=$2; shift ;;
        --only) only=$2; shift ;;
        --verbose) vm_opts+=(--verbose) ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) hpkv_die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
seed=${seed:-$(( $(od -An -N4 -tu4 /dev/urandom) % 1000000 + 1 ))}
replay="$0 --seed $seed --kill9-rounds $kill9_rounds --power-offs $power_offs${only:+ --only $only}"
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

# The power-off disks: the store and the log, with cache=none (below).
rm -f "$out/power-store.img" "$out/power-log.img"
truncate -s 256M "$out/power-store.img" "$out/power-log.img"
power_disks=()
for img in power-store power-log; do
    # cache=none: qemu writes with O_DIRECT and turns the guest's flushes into fdatasync.
    power_disks+=(--qemu-arg -drive --qemu-arg "file=$out/$img.img,format=raw,if=virtio,cache=none")
done

total_pass=0 total_fail=0
boot() {
    local outf rc=0 last
    outf=$(mktemp)
    "$HPKV_VM_DIR/run-vm.sh" --payload "$payload" --disk "$out/kill9.img" --disk-size 256M \
        "${power_disks[@]}" "${vm_opts[@]+"${vm_opts[@]}"}" "$@" | tee "$outf" || rc=$?
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
# Options of boot B: its stage and, before a power-off, the mode and delay.
power_opts() {
    local b=$1
    if ((b <= power_offs)); then
        echo "--append-cmdline HPKV_TORTURE_POWER_MODE=${power_mode[b]} --append-cmdline HPKV_TORTURE_POWER_MS=${power_ms[b]}"
        [ "${power_mode[b]}" = host ] && echo "--power-off-after-ms ${power_ms[b]}"
    fi
    return 0
}
common_cmdline="HPKV_TORTURE_SEED=$seed HPKV_TORTURE_POWER_OFFS=$power_offs"

# shellcheck disable=SC2046  # power_opts prints separate words
boot --name torture-main --fresh-disk --timeout 3600 \
    --append-cmdline "HPKV_TORTURE_STAGE=main $common_cmdline HPKV_TORTURE_KILL9_ROUNDS=$kill9_rounds" \
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
echo "torture: $(($(date +%s) - t0)) s in all; seed $seed"
if [ "$total_fail" != 0 ]; then echo "torture: replay with: $replay"; fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ] && [ "$total_pass" -gt 0 ]
