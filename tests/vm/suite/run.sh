#!/usr/bin/env bash
# tests/vm/suite/run.sh — the hpkv VM suite: the real /dev/hpkv, served by hpkvd through CUSE inside
# a VM whose kernel has CUSE (the host's has not).
#
# Usage: tests/vm/suite/run.sh [--verbose] [--one-boot]
# Builds hpkvd, hpkvctl and the test programs (release), compiles the C examples with the host's gcc,
# then boots the VM twice on one disk (target/vm/suite-disk.img):
#   boot 1: udev rule, the seed README example, hpkvd's privileges (uid, capabilities,
#           no_new_privs, seccomp), the ABI suite (tests/device_suite.rs), the same under
#           LD_PRELOAD=libhpkv_preload.so, the C library, extensions, restart, SIGHUP, kill -9,
#           refusals and their exit statuses (nothing written first), the --force-initialize
#           guard, the default image's privacy, the v1.3 profile (also under the preload library);
#   boot 2: everything acknowledged in boot 1 is still there.
# Prints "N passed, M failed" (both boots) as its last line; exit status 0 iff M == 0.
set -euo pipefail
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

t0=$(date +%s)
hpkv_install_packages "${HPKV_DEPS_PACKAGES[@]}"
cd "$HPKV_REPO"

out=$HPKV_REPO/target/vm
payload=$out/suite-payload
rm -rf "$payload"
mkdir -p "$payload"

hpkv_log "building hpkvd, hpkvctl, the C and preload libraries and the test programs (release)"
cargo build --release --bins --quiet
cargo build --release --quiet -p hpkv-capi -p hpkv-preload
cp target/release/hpkvd target/release/hpkvctl target/release/libhpkv.so \
    target/release/libhpkv_preload.so "$payload/"
# Test targets: the executables cargo reports, copied under their target names.
cargo test --release --no-run --quiet --test device_suite --test client_suite --test cli_suite --test view_stress --message-format=json-render-diagnostics 2>/dev/null |
    python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
' "$payload"
[ -x "$payload/device_suite" ] && [ -x "$payload/client_suite" ] && [ -x "$payload/cli_suite" ] ||
    hpkv_die "the test programs were not built"
# The Rust client's example program (examples/client.rs).
cargo build --release --quiet --example client
cp target/release/examples/client "$payload/client-example"

# A store of 100 000 keys for the RANGE scan, written on the host by the engine itself
# (loading it through CUSE under emulation would take minutes); the guest sees it as /dev/vdb.
range_keys=100000
"$payload/client_suite" prepare-image "$out/suite-range.img" "$range_keys"
# A blank read-only disk (/dev/vdc): hpkvd must refuse it before writing anything.
rm -f "$out/suite-ro.img"
truncate -s 16M "$out/suite-ro.img"

hpkv_log "compiling the C examples"
# The seed README's example, unmodified, built as its README says: plain gcc.
gcc -o "$payload/readme_example" examples/readme_example.c
for src in examples/*.c; do
    name=$(basename "$src" .c)
    [ "$name" = readme_example ] && continue
    # "ex-": busybox's shell prefers its own applets (sync!) to $PATH.
    libs=()
    # The C library's example links libhpkv.so, found next to it ($ORIGIN) in the guest.
    [ "$name" = view_get ] && libs=(-L"$payload" -lhpkv -Wl,-rpath,'$ORIGIN')
    gcc -std=c99 -Wall -Wextra -Werror -O2 -I uapi -o "$payload/ex-$name" "$src" "${libs[@]}"
done
# The preload library's probe (crates/preload/tests/probe.c): the same GETs with and without it.
gcc -std=c99 -Wall -Wextra -Werror -O2 -I uapi -o "$payload/preload-probe" crates/preload/tests/probe.c
gcc -std=c99 -Wall -Wextra -Werror -O2 -o "$payload/seccomp_control" "$here/seccomp_control.c"
gcc -std=c99 -Wall -Wextra -Werror -O2 -o "$payload/listing_files" "$here/listing_files.c"
install -m 0755 "$here/guest-main" "$payload/guest-main"

total_pass=0 total_fail=0
boot() {
    local outf rc=0 last
    outf=$(mktemp)
    # audit=1: the kernel logs any system call hpkvd's filter refuses (type=1326) to dmesg.
    "$HPKV_VM_DIR/run-vm.sh" --payload "$payload" --disk "$out/suite-disk.img" --disk-size 256M \
        --qemu-arg -drive --qemu-arg "file=$out/suite-range.img,format=raw,if=virtio" \
        --qemu-arg -drive --qemu-arg "file=$out/suite-ro.img,format=raw,if=virtio,readonly=on" \
        --append-cmdline audit=1 \
        --timeout 900 "${vm_opts[@]+"${vm_opts[@]}"}" "$@" | tee "$outf" || rc=$?
    last=$(tail -n 1 "$outf")
    rm -f "$outf"
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        total_pass=$((total_pass + BASH_REMATCH[1]))
        total_fail=$((total_fail + BASH_REMATCH[2]))
    else
        echo "HPKV-RESULT FAIL suite:runner run-vm.sh exited $rc without a summary line"
        total_fail=$((total_fail + 1))
    fi
}

boot --name suite-boot1 --fresh-disk --append-cmdline "HPKV_PHASE=1 HPKV_RANGE_KEYS=$range_keys"
if [ "$one_boot" = 0 ]; then
    boot --name suite-boot2 --append-cmdline "HPKV_PHASE=2"
fi
echo "vm suite: $(($(date +%s) - t0)) s in all"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ] && [ "$total_pass" -gt 0 ]
