#!/usr/bin/env bash
# bench/vm-get/run.sh — the GET benchmark of issue 7, in the VM (one command; not a test).
#
# Usage: bench/vm-get/run.sh [--sizes "100 1000 10000 100000"] [--samples N] [--verbose]
#
# The module's method: one client, sequential, each GET timed alone, GET p50, mean and p99 at
# each store size, every value verified; each divided by a getppid() p50 of the same boot: the
# median of those timed alone, and the p50 of getppid() calls timed between the GETs (under TCG
# only ratios inside one boot mean anything, and a busy host moves both sides together).
# Three ways of reading:
#   device   an unmodified C client, ioctl(fd, 0, buf) (bench/vm-get/get_ioctl.c)
#   preload  the same binary under LD_PRELOAD=target/release/libhpkv_preload.so
#   lib      libhpkv's hpkv_get (bench/vm-get/get_lib.c)
# The stores are written on the host by the engine (client_suite prepare-image), one virtio disk
# each; in the guest hpkvd serves each in turn and publishes its view. Prints the table last.
# HPKV_BENCH_HPKVD=PATH runs another hpkvd binary (say, one built from a branch under review).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
# shellcheck source=../../tests/vm/common.sh
. "$repo/tests/vm/common.sh"

sizes="100 1000 10000 100000"
samples=20000
vm_opts=()
while [ $# -gt 0 ]; do
    case $1 in
        --sizes) sizes=$2; shift ;;
        --samples) samples=$2; shift ;;
        --verbose) vm_opts+=(--verbose) ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) hpkv_die "unknown argument: $1" ;;
    esac
    shift
done
hpkv_install_packages "${HPKV_DEPS_PACKAGES[@]}"
cd "$repo"
out=$repo/target/vm/bench-get
payload=$out/payload
rm -rf "$payload"
mkdir -p "$payload"

hpkv_log "building hpkvd and the libraries (release)"
cargo build --release --quiet --bin hpkvd
cargo build --release --quiet -p hpkv-capi -p hpkv-preload
cp "${HPKV_BENCH_HPKVD:-target/release/hpkvd}" "$payload/hpkvd"
cp target/release/libhpkv.so target/release/libhpkv_preload.so "$payload/"
cargo test --release --no-run --quiet --test client_suite --message-format=json-render-diagnostics 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["executable"])
' >"$out/client_suite.path"
client_suite=$(cat "$out/client_suite.path")
[ -x "$client_suite" ] || hpkv_die "client_suite was not built"
cflags=(-std=c99 -Wall -Wextra -Werror -O2 -I uapi -I "$here")
gcc "${cflags[@]}" -o "$payload/get_ioctl" "$here/get_ioctl.c"
gcc "${cflags[@]}" -o "$payload/get_lib" "$here/get_lib.c" -L"$payload" -lhpkv -Wl,-rpath,'$ORIGIN'
install -m 0755 "$here/guest-main" "$payload/guest-main"

disks=()
letters=(b c d e)
n=0
for records in $sizes; do
    [ "$n" -lt 4 ] || hpkv_die "at most 4 sizes"
    img=$out/store-$records.img
    if [ ! -s "$img.done" ]; then
        rm -f "$img"
        hpkv_log "writing a store of $records records (host, the engine)"
        "$client_suite" prepare-image "$img" "$records" >/dev/null
        echo "$records" >"$img.done"
    fi
    echo "$records" >"$payload/records-vd${letters[$n]}"
    disks+=(--qemu-arg -drive --qemu-arg "file=$img,format=raw,if=virtio")
    n=$((n + 1))
done

log=$out/vm.log
rc=0
"$HPKV_VM_DIR/run-vm.sh" --payload "$payload" --name bench-get --log "$log" --timeout 3600 \
    --append-cmdline "HPKV_BENCH_SAMPLES=$samples" "${disks[@]}" "${vm_opts[@]+"${vm_opts[@]}"}" || rc=$?

# The table: ratios to the getppid() p50 measured just before each size.
python3 - "$log" "$samples" <<'PY'
import re, statistics, sys
mode, timer, rows, base, gets, ppids = None, None, {}, {}, {}, []
for l in open(sys.argv[1], errors="replace"):
    l = l.strip()
    if m := re.match(r"^BENCH-MODE (\w+)$", l):
        mode = m.group(1)
    elif m := re.match(r"^BENCH-DEVICE-GETS (\d+) (\d+)$", l):
        gets[(int(m.group(1)), mode)] = int(m.group(2))
    elif m := re.match(r"^BENCH ([\w-]+) (\d+) (\d+) (\d+) (\d+)$", l):
        what, n, p50, mean, p99 = m.group(1), *map(int, m.groups()[1:])
        if what == "getppid":
            ppids.append(p50)
        elif what == "getppid-between":
            base[(n, mode)] = p50
        elif what == "timer":
            timer = p50
        else:
            rows.setdefault(n, {})[mode] = (p50, mean, p99)
if not rows or not ppids:
    sys.exit("no figures in the log")
alone = statistics.median(ppids)
print()
print(f"GET latency in the VM (TCG), {sys.argv[2]} samples per cell, each call timed alone, every value")
print("verified. Ratios: the GET's p50 / mean / p99 divided by a getppid() p50 of the same boot:")
print(f"- \"alone\": the median of the getppid() p50s measured alone before and after each size,")
print(f"  {alone:.0f} ns (of {', '.join(map(str, ppids))});")
print("- \"between\": the p50 of the getppid() calls timed right after each GET in the same run, so that")
print("  both see the same moments of a busy host (after a device GET, which switches to the daemon and")
print("  back, getppid() itself is slower: that column suits the view's rows).")
print(f"Two clock readings alone take {timer} ns (p50), included in every figure; \"less the timer\" takes")
print("them out of both sides (p50s; the device over \"alone\", the view's rows over \"between\").")
print()
print("| records | device ÷ alone | preload ÷ alone | preload ÷ between | libhpkv ÷ alone | libhpkv ÷ between | p50 less the timer: device, preload, libhpkv | timed GETs the daemon served: device, preload |")
print("|--:|--:|--:|--:|--:|--:|--:|--:|")
for n in sorted(rows):
    r = rows[n]
    def cell(k, b):
        return " / ".join(f"{v / b:.2f}" for v in r[k]) if k in r and b else "-"
    def net(k):
        b = alone if k == "device" else base.get((n, k))
        if k not in r or timer is None or not b or b <= timer:
            return "-"
        return f"{max(r[k][0] - timer, 0) / (b - timer):.2f}"
    print(f"| {n:,} | {cell('device', alone)} | {cell('preload', alone)} | "
          f"{cell('preload', base.get((n, 'preload')))} | {cell('lib', alone)} | "
          f"{cell('lib', base.get((n, 'lib')))} | {net('device')}, {net('preload')}, {net('lib')} | "
          f"{gets.get((n, 'device'), '-')}, {gets.get((n, 'preload'), '-')} |")
PY
exit "$rc"
