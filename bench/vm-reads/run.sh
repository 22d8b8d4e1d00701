#!/usr/bin/env bash
# bench/vm-reads/run.sh — the Rust client's GET through the shared view and through the device,
# and the polling device path (hpkvd --poll-us), in the VM, one boot (one command; not a test).
#
# Usage: bench/vm-reads/run.sh [--keys K] [--samples N] [--rounds R] [--poll-us "50 200"]
#                              [--also-hpkvd PATH] [--verbose]
#
# The module's method: one client, sequential, each GET timed alone, every value verified. One
# boot, three daemons at once (--poll-us 0 and the two values given), K keys of 100 bytes each;
# R rounds, each: getppid() (the baseline), GETs through the view (Client::get on the first
# daemon), GETs through the device (Client::without_view) on each daemon, with the daemon's CPU
# time (/proc/PID/stat). Each figure is divided by its round's getppid() p50; the table shows the
# median over the rounds (the host's speed drifts, so rounds interleave everything). Then each
# daemon's CPU over 5 idle seconds. --also-hpkvd serves one more store with another build of
# hpkvd (row "device-also"), to compare two builds in one boot. Prints the table last.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
# shellcheck source=../../tests/vm/common.sh
. "$repo/tests/vm/common.sh"

keys=1000
samples=2000
rounds=5
poll="50 200"
also=""
vm_opts=()
while [ $# -gt 0 ]; do
    case $1 in
        --keys) keys=$2; shift ;;
        --samples) samples=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --also-hpkvd) also=$2; shift ;;
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
[ -z "$also" ] || install -m 0755 "$also" "$payload/hpkvd-also"

log=$out/vm.log
rc=0
"$HPKV_VM_DIR/run-vm.sh" --payload "$payload" --name bench-reads --log "$log" --timeout 3600 \
    --append-cmdline "HPKV_BENCH_KEYS=$keys HPKV_BENCH_SAMPLES=$samples HPKV_BENCH_ROUNDS=$rounds HPKV_BENCH_POLL=${poll// /,}" \
    "${vm_opts[@]+"${vm_opts[@]}"}" || rc=$?

python3 - "$log" "$keys" "$samples" "$rounds" <<'PY'
import re, statistics, sys
rnd, mode, base = None, None, None
ratios, p50s, cpu, idle, ppids = {}, {}, {}, {}, []
for l in open(sys.argv[1], errors="replace"):
    l = l.strip()
    if m := re.match(r"^BENCH-ROUND (\S+)$", l):
        rnd = m.group(1)
    elif m := re.match(r"^BENCH-MODE (\S+)$", l):
        mode = m.group(1)
    elif m := re.match(r"^BENCH (\S+) (\d+) (\d+) (\d+) (\d+)$", l):
        p50 = int(m.group(2))
        if m.group(1) == "getppid":
            base = p50
            ppids.append(p50)
        elif base:
            ratios.setdefault(mode, []).append((p50 / base, int(m.group(3)) / base, int(m.group(4)) / base))
            p50s.setdefault(mode, []).append(p50)
    elif m := re.match(r"^BENCH-CPU (\S+) (\d+) (\d+) (\d+)$", l):
        c, wall, calls = map(int, m.groups()[1:])
        if rnd == "idle":
            idle[mode] = (c, wall)
        else:
            t = cpu.setdefault(mode, [0, 0, 0])
            t[0] += c; t[1] += wall; t[2] += calls
if not ppids:
    sys.exit("no getppid baseline in the log")
med = statistics.median
print()
print(f"GET latency in the VM (TCG), one boot, {sys.argv[2]} keys of 100 bytes; {sys.argv[4]} rounds of")
print(f"{sys.argv[3]} GETs per row, each timed alone, every value verified. Each figure is divided by its")
print(f"round's getppid() p50 (p50 {min(ppids)}-{max(ppids)} ns over the rounds); the median over the rounds.")
print()
print("| client GET | p50 / getppid | mean / getppid | p99 / getppid | p50 (median) | daemon CPU per GET | daemon CPU idle |")
print("|---|--:|--:|--:|--:|--:|--:|")
for mode, rs in ratios.items():
    c = cpu.get(mode)
    per = f"{c[0] * 1e6 / c[2]:,.0f} ns ({c[0] * 100 / max(c[1], 1):.0f}% of a CPU)" if c and c[2] else "-"
    i = idle.get(mode)
    idle_s = f"{i[0]} ms in {i[1] // 1000} s" if i else "-"
    print(f"| {mode} | {med(r[0] for r in rs):.2f} | {med(r[1] for r in rs):.2f} | {med(r[2] for r in rs):.2f} | "
          f"{med(p50s[mode]):,.0f} ns | {per} | {idle_s} |")
PY
exit "$rc"
