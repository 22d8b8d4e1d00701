#!/usr/bin/env bash
# tests/vm/bench/run.sh — the device benchmark: hpkvd through the real /dev/hpkv in the VM, next
# to same-boot baselines, printed as ratios (issue 8). Under TCG absolute times mean nothing.
#
# Usage: tests/vm/bench/run.sh [--rounds R] [--per-round N] [--alone] [--verbose]
# Builds hpkvd and hpkvctl (release), the floor server and the timing client (tests/vm/bench/*.c),
# writes a 100,000-record store on the host, then boots the VM once. Inside, every figure below is
# measured with R rounds (default 10) of N operations (default 200), interleaved round by round
# with the figures it is compared to (the host's speed drifts; interleaving hits all alike):
#   raw_flush      4 KiB O_DIRECT write + fdatasync on a raw virtio disk
#   raw_flush_8    the same from 8 threads at once: the block layer's own group commit (it merges
#                  concurrent flushes), with no CUSE round trip and no daemon
#   noop_write     write() to a CUSE server that answers at once (noop_get: its GET; _t1: one thread)
#   floor_sync     the same server doing one 4 KiB O_DIRECT write + fdatasync per write
#   sync_100       hpkvd --durability sync, one writer, overwrites in a 100-record store
#   sync_100k      the same in a 100,000-record store
#   sync_new       hpkvd, sync, one writer, new keys in a store of 100 records that grows (the
#                  module's method writes new keys); _bare: without the shared view and value cache
#   sync_100_t1    the same as sync_100 with hpkvd --threads 1
#   wb_100         hpkvd --durability write-behind, 100 records
#   *_1cpu         noop_write and wb_100 again, the client and every server thread on vCPU 0 (a
#                  separate step: on a busy host, work on both vCPUs at once waits for the host)
#   sync_1w/_8w    new keys, one writer / 8 writers (durable writes per second)
#   noop_write_8   8 writers on the no-op server: the most any CUSE server allows here, per second
#   floor_group_1/_8  a CUSE server that does group commit and nothing else (one 4 KiB O_DIRECT
#                  write + fdatasync per batch of queued writes; floor-server.c), 1 and 8 writers
#   floor_sync_1w  floor_sync's server again, beside them: one durable writer at the floor
#   sync_8w_alone  8 writers alone, with hpkvd's puts and flushes counted around them
#   load           hpkvctl load of a dump of the store (records per second)
# and the CPU time (user and system, from /proc) a write cost the servers of floor_sync, sync_new
# and sync_new_bare, each of which serves that one figure (hpkvd's CUSE workers and answer thread),
# and prints the ratios with the goals of issue 8; next to a ratio of two p50s measured in one
# step, the lowest and highest ratio of their p50s round by round. The last line is "N passed,
# M failed" (the steps that ran); the figures themselves never fail the run.
#
# --alone measures only the concurrent-writer figures (sync_8w, floor_group_8, raw_flush_8,
# noop_write_8, sync_1w, floor_sync_1w), each alone with 24 N writes (3 N for one writer), three
# times in turn, and prints the vCPUs' busy share during each: whether CPU holds durable writers
# (about 3 minutes with the build).
set -euo pipefail
trap 'printf "[hpkv-vm] ERROR: %s: line %s: %s failed\\n" "${BASH_SOURCE[0]##*/}" "$LINENO" "$BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../common.sh
. "$here/../common.sh"
# shellcheck source-path=SCRIPTDIR source=payload.sh
. "$here/payload.sh"

rounds=10
per=200
alone=0
vm_opts=()
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift ;;
        --per-round) per=$2; shift ;;
        --alone) alone=1 ;;
        --verbose) vm_opts+=(--verbose) ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) hpkv_die "unknown argument: $1" ;;
    esac
    shift
done

hpkv_install_packages "${HPKV_DEPS_PACKAGES[@]}"
cd "$HPKV_REPO"
out=$HPKV_REPO/target/vm
payload=$out/bench-payload

hpkv_log "building hpkvd, hpkvctl, the floor server, the timing client and the 100,000-record store (release)"
bench_payload "$payload"
suite=$(cargo test --release --no-run --quiet --test client_suite --message-format=json-render-diagnostics 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["executable"])
')
"$suite" prepare-image "$out/bench-100k.img" 100000
# The guest's disks after /dev/vda, in order (guest-main names them): the 100,000-record store,
# then the empty ones made here.
drives=(--qemu-arg -drive --qemu-arg "file=$out/bench-100k.img,format=raw,if=virtio")
for disk in scratch wb t1 new bare; do
    rm -f "$out/bench-$disk.img"
    truncate -s 64M "$out/bench-$disk.img"
    drives+=(--qemu-arg -drive --qemu-arg "file=$out/bench-$disk.img,format=raw,if=virtio")
done

install -m 0755 "$here/guest-main" "$payload/guest-main"

outf=$out/bench-output.txt
# The guest's console (with its RESULT lines) goes to this log.
console=$out/bench-console.log
rc=0
"$HPKV_VM_DIR/run-vm.sh" --payload "$payload" --name bench --log "$console" \
    --disk "$out/bench-disk.img" --fresh-disk \
    --disk-size 256M \
    "${drives[@]}" \
    --append-cmdline "HPKV_BENCH_ROUNDS=$rounds HPKV_BENCH_PER_ROUND=$per HPKV_BENCH_ALONE=$alone" \
    --timeout 1500 "${vm_opts[@]+"${vm_opts[@]}"}" | tee "$outf" || rc=$?

if [ "$alone" = 1 ]; then
    echo
    echo "## The concurrent-writer figures, each alone (writes a second; the vCPUs' busy share)"
    echo
    grep -a '^ALONE ' "$console" | tr -d '\r' | awk '
        { split($3, r, "="); split($4, b, "="); n[$2]++; rate[$2] = rate[$2] sep[$2] sprintf("%.0f", r[2])
          busy[$2] = busy[$2] sep[$2] b[2] "%"; sep[$2] = " / "; if (!($2 in order)) order[$2] = ++k }
        END {
            print "| figure | runs | vCPUs busy |"; print "|---|--:|--:|"
            for (l in order) line[order[l]] = l
            for (i = 1; i <= k; i++) printf "| %s | %s | %s |\n", line[i], rate[line[i]], busy[line[i]]
        }'
    grep -a '^GROUPSTAT ' "$console" | tr -d '\r' | tail -n 1 | awk '
        { split($2, w, "="); split($3, f, "=")
          printf "\nThe group-commit floor: %d writes in %d flushes, %.2f a flush\n", w[2], f[2], w[2] / f[2] }'
    echo
    tail -n 1 "$outf"
    exit "$rc"
fi
echo
echo "## Through the device, one VM boot ($rounds interleaved rounds of $per operations; ratios of p50s unless noted)"
echo
awk '
/^RESULT / {
    for (i = 3; i <= NF; i++) { split($i, kv, "="); v[$2, kv[1]] = kv[2] }
    seen[$2] = 1
}
/^ROUNDS / {
    split($3, kv, "=")
    rounds_of[$2] = split(kv[2], each, ",")
    for (i = 1; i <= rounds_of[$2]; i++) q[$2, i] = each[i]
}
function p(l) { return v[l, "p50_us"] }
function r(l) { return v[l, "rate_per_s"] }
# The ratio of two figures of one step (interleaved, round i of each next to the other) round
# by round: " (rounds LO to HI)", or "" when either has no per-round p50s. How far one round
# strays from another says how much the pooled ratio can be trusted against its goal.
function spread(a, b,    i, n, x, lo, hi) {
    if (!(a in rounds_of) || !(b in rounds_of) || rounds_of[a] != rounds_of[b]) return ""
    n = rounds_of[a]
    for (i = 1; i <= n; i++) {
        if (q[b, i] <= 0) return ""
        x = q[a, i] / q[b, i]
        if (i == 1 || x < lo) lo = x
        if (i == 1 || x > hi) hi = x
    }
    return sprintf(" (rounds %.2f to %.2f)", lo, hi)
}
function show(what, num, den, goal, le, sp) {
    if (den == 0 || num == "" || den == "") { printf "| %s | – | %s | not measured |\n", what, goal; return }
    x = num / den
    if (goal == "–") { printf "| %s | %.2f%s | | |\n", what, x, sp; return }
    ok = (le ? x <= goal + 0 : x >= goal + 0) ? "met" : "NOT met"
    printf "| %s | %.2f%s | %s %s | %s |\n", what, x, sp, (le ? "≤" : "≥"), goal, ok
}
END {
    print "| figure | p50 µs | p99 µs | per second |"
    print "|---|--:|--:|--:|"
    n = split("raw_flush noop_write noop_write_t1 noop_get noop_get_t1 noop_write_8 raw_flush_8 floor_sync floor_sync_8 sync_100 sync_100k sync_new sync_new_bare hpkv_get sync_1w sync_8w wb_8w floor_sync_1w floor_group_1 floor_group_8 sync_8w_alone sync_100_t1 wb_100 noop_write_1cpu wb_100_1cpu load", L, " ")
    for (i = 1; i <= n; i++) if (L[i] in seen) printf "| %s | %s | %s | %s |\n", L[i], p(L[i]), v[L[i], "p99_us"], r(L[i])
    print ""
    print "| ratio | measured | goal | |"
    print "|---|--:|--:|---|"
    show("sync write, 100 records / floor (no-op + 4 KiB write + fdatasync)", p("sync_100"), p("floor_sync"), "1.10", 1, spread("sync_100", "floor_sync"))
    show("sync write, 100,000 records / floor", p("sync_100k"), p("floor_sync"), "1.10", 1, spread("sync_100k", "floor_sync"))
    show("sync write, 100,000 / 100 records", p("sync_100k"), p("sync_100"), "1.10", 1, spread("sync_100k", "sync_100"))
    show("sync write, new keys (a store growing from 100 records) / floor", p("sync_new"), p("floor_sync"), "1.10", 1, spread("sync_new", "floor_sync"))
    show("8 writers / 1 writer, durable writes per second", r("sync_8w"), r("sync_1w"), "5", 0)
    show("write-behind write / no-op write", p("wb_100"), p("noop_write"), "1.5", 1, spread("wb_100", "noop_write"))
    show("--threads 1 / default threads, sync write", p("sync_100_t1"), p("sync_100"), "1.0", 1, spread("sync_100_t1", "sync_100"))
    show("hpkvctl load / one durable put per record, records per second", r("load"), r("sync_1w"), "10", 0)
    show("(info) write-behind write / no-op write, client and servers on one vCPU", p("wb_100_1cpu"), p("noop_write_1cpu"), "–", 1, spread("wb_100_1cpu", "noop_write_1cpu"))
    show("(info) no-op write, both vCPUs / one vCPU", p("noop_write"), p("noop_write_1cpu"), "–", 1, "")
    show("(info) sync write, new keys, without the shared view and the value cache / floor", p("sync_new_bare"), p("floor_sync"), "–", 1, spread("sync_new_bare", "floor_sync"))
    show("(info) floor / raw device write + flush", p("floor_sync"), p("raw_flush"), "–", 1, spread("floor_sync", "raw_flush"))
    show("(info) GET / no-op GET", p("hpkv_get"), p("noop_get"), "–", 1, spread("hpkv_get", "noop_get"))
    show("(info) GET / no-op GET, one thread", p("hpkv_get"), p("noop_get_t1"), "–", 1, spread("hpkv_get", "noop_get_t1"))
    show("(info) no-op write, one thread / pool", p("noop_write_t1"), p("noop_write"), "–", 1, spread("noop_write_t1", "noop_write"))
    show("(info) 8 writers / the floor server with 8 writers, per second", r("sync_8w"), r("floor_sync_8"), "–", 1)
    show("(info) 8 writers / the raw device written and flushed by 8 threads, per second", r("sync_8w"), r("raw_flush_8"), "–", 1)
    show("(info) the raw device: 8 threads / 1 thread writing and flushing, per second", r("raw_flush_8"), r("raw_flush"), "–", 1)
    show("(info) the ceiling: no-op server, 8 writers / hpkvd, 1 writer, per second", r("noop_write_8"), r("sync_1w"), "–", 1)
    show("(info) hpkvd, 8 writers / no-op server, 8 writers, per second", r("sync_8w"), r("noop_write_8"), "–", 1)
    show("(info) the group-commit floor: 8 writers / 1 writer, per second", r("floor_group_8"), r("floor_group_1"), "–", 1)
    show("(info) the group-commit floor, 8 writers / hpkvd, 1 writer, per second", r("floor_group_8"), r("sync_1w"), "–", 1)
    show("(info) the group-commit floor, 8 writers / the floor, 1 writer, per second (what concurrency gives durable writers here)", r("floor_group_8"), r("floor_sync_1w"), "–", 1)
    show("(info) hpkvd, 8 writers / the group-commit floor, 8 writers, per second", r("sync_8w"), r("floor_group_8"), "–", 1)
    show("(info) hpkvd without waiting for the device: write-behind, 8 writers / sync, 1 writer, per second", r("wb_8w"), r("sync_1w"), "–", 1)
}' "$console"
echo
grep -a '^COUNTERS ' "$console" | tr -d '\r' | awk '
    { for (i = 3; i <= NF; i++) { split($i, kv, "="); c[$2, kv[1]] = kv[2] } }
    END {
        p = c["after-8w", "puts"] - c["before-8w", "puts"]
        f = c["after-8w", "device_flushes"] - c["before-8w", "device_flushes"]
        w = c["after-8w", "device_writes"] - c["before-8w", "device_writes"]
        t = c["after-8w", "cpu_ticks"] - c["before-8w", "cpu_ticks"]
        i = c["after-8w", "cpu_idle_ticks"] - c["before-8w", "cpu_idle_ticks"]
        if (f > 0) printf "8 writers alone (sync_8w_alone): %d puts, %d device writes, %d flushes: %.2f puts a flush", p, w, f, p / f
        if (f > 0 && t > 0) printf "; the vCPUs %.0f%% busy", 100 * (t - i) / t
        if (f > 0) printf "\n\n"
    }'
# Per thread name (the workers summed), ticks of user and system time during the 8 writers alone.
grep -a '^THREAD ' "$console" | tr -d '\r' | awk '
    { split($4, u, "="); split($5, k, "="); sign = ($2 == "after-8w") ? 1 : -1
      name = $3; sub(/-[0-9]+$/, "-N", name)
      user[name] += sign * u[2]; sys[name] += sign * k[2] }
    END {
        if (length(user) == 0) exit
        printf "hpkvd threads during the 8 writers alone, CPU ticks (user+system):"
        for (t in user) printf " %s %d+%d", t, user[t], sys[t]
        printf "\n\n"
    }'
# CPU time per write of the servers of floor_sync, sync_new and sync_new_bare (each serves that one
# figure; hpkvd's CUSE workers and answer thread): user time is the server's own code, system
# time the kernel's work for it.
grep -a '^CPUTIME ' "$console" | tr -d '\r' | awk -v writes=$((rounds * per)) -v hz=100 '
    { sign = ($2 == "after") ? 1 : -1; user[$3] += sign * $4; sys[$3] += sign * $5 }
    END {
        if (length(user) == 0) exit
        printf "CPU time a write in the one-writer step, user + system µs:"
        n = split("floor_sync sync_new sync_new_bare", L, " ")
        for (i = 1; i <= n; i++) if (L[i] in user)
            printf " %s %.0f + %.0f;", L[i], user[L[i]] * 1e6 / hz / writes, sys[L[i]] * 1e6 / hz / writes
        if (user["floor_sync"] > 0) printf " user time / the floor'"'"'s: sync_new %.2f, sync_new_bare %.2f", user["sync_new"] / user["floor_sync"], user["sync_new_bare"] / user["floor_sync"]
        printf "\n\n"
    }'
echo "Compaction in the stores the one-writer step overwrote (counters before and after it):"
grep -a '^COMPACTION ' "$console" | sed 's/^COMPACTION /  /' || echo "  (not reported)"
echo
tail -n 1 "$outf"
exit "$rc"
