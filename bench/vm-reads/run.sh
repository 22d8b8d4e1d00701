#!/usr/bin/env bash
# bench/vm-reads/run.sh — the Rust client's GET through the shared view and through the device,
# and the polling device path (hpkvd --poll-us), in the VM, one boot (one command; not a test).
#
# Usage: bench/vm-reads/run.sh [--keys K] [--samples N] [--poll-us "50 200"] [--verbose]
#
# The module's method: one client, sequential, each GET timed alone, every value verified. In
# one boot: getppid() p50 (the baseline); hpkvd (--poll-us 0) with K keys of 100 bytes: GETs
# through the view (Client::get) and through the device (Client::without_view); then hpkvd
# again with each --poll-us value: GETs through the device, with the daemon's CPU time per GET
# (/proc/PID/stat) and its CPU time over 5 idle seconds. Prints the table last.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
# shellcheck source=../../tests/vm/common.sh
. "$repo/tests/vm/common.sh"

keys=1000
samples=20000
poll="50 200"
vm_opts=()
while [ $# -gt 0 ]; do
    case $1 in
        --keys) keys=$2; shift ;;
        --samples) samples=$2; shift ;;
        --poll-us) poll=$2; shift ;;
        --verbose) vm_opts+=(--verbose) ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) hpkv_die "unknown argument: $1" ;;
    esac
    shift
done
hpkv_install_packages "${HPKV_DEPS_PACKAGES[@]}"
cd "$repo"
out=$repo/target/vm/bench-reads
payload=$out/payload
rm -rf "$payload"
mkdir -p "$payload"

hpkv_log "building hpkvd and get_latency (release)"
cargo build --release --quiet --bin hpkvd
cp target/release/hpkvd "$payload/"
cargo test --release --no-run --quiet --test get_latency --message-format=json-render-diagnostics 2>/dev/null |
    python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        shutil.copy(m["executable"], sys.argv[1] + "/get_latency")
' "$payload"
[ -x "$payload/get_latency" ] || hpkv_die "get_latency was not built"
install -m 0755 "$here/guest-main" "$payload/guest-main"

log=$out/vm.log
rc=0
"$HPKV_VM_DIR/run-vm.sh" --payload "$payload" --name bench-reads --log "$log" --timeout 3600 \
    --append-cmdline "HPKV_BENCH_KEYS=$keys HPKV_BENCH_SAMPLES=$samples HPKV_BENCH_POLL=${poll// /,}" \
    "${vm_opts[@]+"${vm_opts[@]}"}" || rc=$?

python3 - "$log" "$keys" "$samples" <<'PY'
import re, sys
mode, ppid, rows, cpu = "", [], {}, {}
for l in open(sys.argv[1], errors="replace"):
    l = l.strip()
    if m := re.match(r"^BENCH-MODE (\S+)$", l):
        mode = m.group(1)
    elif m := re.match(r"^BENCH (\S+) (\d+) (\d+) (\d+) (\d+)$", l):
        name, p50, mean, p99, n = m.group(1), *map(int, m.groups()[1:])
        if name == "getppid":
            ppid.append(p50)
        else:
            rows[f"{mode} {name}"] = (p50, mean, p99, n)
    elif m := re.match(r"^BENCH-CPU (\S+) (\d+) (\d+) (\d+)$", l):
        cpu[f"{mode} {m.group(1)}"] = tuple(map(int, m.groups()[1:]))
if not ppid:
    sys.exit("no getppid baseline in the log")
base = sorted(ppid)[len(ppid) // 2]
print()
print(f"GET latency in the VM (TCG), one boot, {sys.argv[2]} keys of 100 bytes, {sys.argv[3]} GETs")
print(f"per row, each timed alone; divided by getppid() p50 = {base} ns (median of {len(ppid)} runs")
print(f"in the same boot: {', '.join(map(str, ppid))} ns).")
print()
print("| hpkvd | client GET | p50 | mean | p99 | p50 ratio | daemon CPU per GET | daemon CPU idle |")
print("|---|---|--:|--:|--:|--:|--:|--:|")
for key, (p50, mean, p99, n) in rows.items():
    daemon, how = key.split(" ", 1)
    c = cpu.get(key)
    per = f"{c[0] * 1e6 / c[2]:.0f} ns ({c[0]} ms / {c[1]} ms wall)" if c and c[2] else "-"
    idle = cpu.get(f"{daemon} idle")
    idle_s = f"{idle[0]} ms in {idle[1] // 1000} s" if idle else "-"
    print(f"| {daemon} | {how} | {p50} ns | {mean} ns | {p99} ns | {p50 / base:.2f} | {per} | {idle_s} |")
PY
exit "$rc"
