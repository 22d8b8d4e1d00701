#!/usr/bin/env bash
# tests/vm/systemd/run.sh — hpkv as an administrator installs it: the Debian package in a Debian 12
# system booted with systemd, in a VM whose kernel has CUSE (Debian's cloud kernel, as the VM suite).
#
# Usage: tests/vm/systemd/run.sh [--verbose] [--timeout SECONDS]
# Builds the package (pkg/build-deb.sh) and the seed README's example (the host's gcc), builds or
# reuses the cached root image (image.sh: debootstrap, a few minutes the first time), and boots it:
#   root    the image as an NVMe disk, snapshot=on (the cached image never changes)
#   payload a small ext4 disk (serial hpkv-payload): the .deb, readme_example, guest-main
#   store   a blank 256 MiB virtio disk (serial hpkv-store): /dev/disk/by-id/virtio-hpkv-store
# Inside (guest-main): dpkg -i; /etc/default/hpkvd names the store; systemctl enable --now hpkvd;
# the node is root:hpkv 0660 as soon as systemctl returns; the README example prints
# "Value: myvalue" for a member of group hpkv and a non-member is refused; hpkvd's
# /proc/PID/status: uid hpkv, every capability set empty, NoNewPrivs 1, Seccomp 2; restart,
# SIGHUP, kill -9 and a configuration error (exit 78, not restarted); the journal's lifecycle
# lines and their priorities; systemd-analyze security (exposure <= 2.0); stop; dpkg -r.
# Prints the FAIL lines, the timings and, last, "N passed, M failed"; exit status 0 iff M == 0.
set -euo pipefail
trap 'printf "[hpkv-vm] ERROR: %s: line %s: %s failed\\n" "${BASH_SOURCE[0]##*/}" "$LINENO" "$BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../common.sh
. "$here/../common.sh"

verbose=0 timeout_s=900
while [ "$#" -gt 0 ]; do
    case $1 in
        --verbose) verbose=1 ;;
        --timeout) timeout_s=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) hpkv_die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
t0=$(now)

hpkv_install_packages "${HPKV_DEPS_PACKAGES[@]}" debootstrap dpkg-dev e2fsprogs
kit=$("$HPKV_VM_DIR/guest-kit.sh")
image=$("$here/image.sh")
[ -f "$image/root.img" ] || hpkv_die "image.sh gave no image directory: '$image'"
t_image=$(now)

cd "$HPKV_REPO"
out=$HPKV_REPO/target/vm
mkdir -p "$out"
hpkv_log "building the package"
deb=$(pkg/build-deb.sh | tail -n 1)
[ -f "$deb" ] || hpkv_die "pkg/build-deb.sh made no package"
payload=$out/systemd-payload
rm -rf "$payload"
mkdir -p "$payload"
cp "$deb" "$payload/"
gcc -o "$payload/readme_example" examples/readme_example.c
# A program built against the package's header and C library, as its users build theirs: it finds
# libhpkv.so where the package puts it.
stage=$HPKV_REPO/target/debian/stage
gcc -std=c99 -O2 -I "$stage/usr/include" -o "$payload/view_get" examples/view_get.c \
    -L "$stage/usr/lib/$(gcc -print-multiarch)" -lhpkv
install -m 0755 "$here/guest-main" "$payload/guest-main"
rm -f "$out/systemd-payload.img" "$out/systemd-store.img"
mkfs.ext4 -q -F -L hpkv-payload -d "$payload" "$out/systemd-payload.img" 32M >/dev/null
truncate -s 256M "$out/systemd-store.img"
t_built=$(now)

log=$out/systemd.log
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hpkv-systemd.XXXXXX")
vm_pid=""
cleanup() {
    if [ -n "$vm_pid" ] && kill -0 "$vm_pid" 2>/dev/null; then
        kill -TERM "$vm_pid" 2>/dev/null || true
        sleep 1
        kill -KILL "$vm_pid" 2>/dev/null || true
    fi
    [ -s "$tmp/qemu.pid" ] && kill -KILL "$(cat "$tmp/qemu.pid")" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Kernel command line: quiet, no boot status noise; the crypto self-tests skipped (as run-vm.sh).
cmdline="root=/dev/nvme0n1 rw console=ttyS0 quiet loglevel=3 systemd.show_status=false panic=-1"
cmdline+=" cryptomgr.notests initcall_blacklist=crypto_kdf108_init"
# shellcheck disable=SC2054  # the commas are qemu's
qemu=(qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1024 -smp 2
      -nodefaults -no-user-config -display none -monitor none -serial stdio -no-reboot
      -kernel "$kit/vmlinuz" -append "$cmdline" -pidfile "$tmp/qemu.pid"
      -drive "file=$image/root.img,if=none,id=root,format=raw,snapshot=on"
      -device nvme,drive=root,serial=hpkvroot
      -drive "file=$out/systemd-payload.img,if=none,id=payload,format=raw,readonly=on"
      -device virtio-blk-pci,drive=payload,serial=hpkv-payload
      -drive "file=$out/systemd-store.img,if=none,id=store,format=raw"
      -device virtio-blk-pci,drive=store,serial=hpkv-store)
guard=()
command -v setpriv >/dev/null && guard=(setpriv --pdeathsig KILL --)
hpkv_log "booting Debian 12 with systemd ($(basename "$image")) (log: $log)"
t_boot=$(now)
"${guard[@]+"${guard[@]}"}" timeout --kill-after=5 "$timeout_s" "${guard[@]+"${guard[@]}"}" \
    "${qemu[@]}" </dev/null >"$log" 2>&1 &
vm_pid=$!
tail_pid=""
if [ "$verbose" = 1 ]; then
    tail -n +1 -f --pid="$vm_pid" "$log" >&2 &
    tail_pid=$!
fi
vm_rc=0
wait "$vm_pid" || vm_rc=$?
vm_pid=""
t_end=$(now)
[ -n "$tail_pid" ] && { wait "$tail_pid" 2>/dev/null || true; }

console=$tmp/console.txt
tr -d '\r' <"$log" >"$console"
fails=$tmp/fails.txt
npass=$(hpkv_vm_results "$console" "$fails")
exit_line=$(grep -a '^HPKV-VM guest-main exit=' "$console" | tail -n 1 || true)
if [ "$vm_rc" = 124 ] || [ "$vm_rc" = 137 ]; then
    echo "HPKV-RESULT FAIL vm:timeout the VM ran longer than ${timeout_s}s and was killed" >>"$fails"
elif [ "$vm_rc" != 0 ]; then
    echo "HPKV-RESULT FAIL vm:qemu qemu exited with status $vm_rc" >>"$fails"
elif [ -z "$exit_line" ]; then
    echo "HPKV-RESULT FAIL vm:crash the guest never finished guest-main" >>"$fails"
fi
if [ "$npass" = 0 ] && ! [ -s "$fails" ]; then
    echo "HPKV-RESULT FAIL vm:no-results the guest printed no HPKV-RESULT line" >>"$fails"
fi
nfail=$(wc -l <"$fails")

up_main=$(hpkv_vm_uptime "$console" 'guest-main start')
up_exit=$(hpkv_vm_uptime "$console" 'guest-main exit')
exposure=$(sed -n 's/^HPKV-VM exposure=//p' "$console" | head -n 1)
timing="systemd vm: image $(secs "$t0" "$t_image") s; package $(secs "$t_image" "$t_built") s; qemu $(secs "$t_boot" "$t_end") s"
[ -n "$up_main" ] && timing+="; boot to the test ${up_main} s (guest clock)"
[ -n "$up_main" ] && [ -n "$up_exit" ] && timing+="; test $(secs "$up_main" "$up_exit") s"
echo "$timing; total $(secs "$t0" "$(now)") s${exposure:+; exposure $exposure}"
if [ "$nfail" -gt 0 ] || [ "$npass" = 0 ]; then
    echo "---- last 80 lines of the console log $log ----"
    tail -n 80 "$console"
    echo "---- end of console log ----"
fi
cat "$fails"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ] && [ "$npass" -gt 0 ]
