#!/usr/bin/env bash
# tests/vm/run-vm.sh — boot Debian's cloud kernel (it has cuse.ko) in qemu under TCG with a busybox
# initramfs, run a test payload in it and report its results.
#
# Usage: tests/vm/run-vm.sh --payload DIR [options]
#   --payload DIR        files copied into the guest at /payload/; DIR/guest-main (executable, a busybox
#                        sh script) is run by the guest's /init after setup. Every ELF file in DIR gets
#                        its shared libraries (ldd on the host, loader included) copied in too.
#   --disk IMG           raw disk image attached as /dev/vda (virtio). Created sparse when missing and
#                        kept, so a second boot sees what the first wrote (restart tests). Default: a
#                        fresh scratch disk, deleted afterwards.
#   --disk-size SIZE     size when creating IMG (truncate syntax; default 256M)
#   --fresh-disk         recreate IMG even if it exists
#   --disk-cache MODE    qemu's cache mode for IMG (none, directsync, writeback, ...; default: qemu's)
#   --timeout SECONDS    kill the VM after that long (default 600); counts as a failure
#   --log FILE           console log (default <repo>/target/vm/<name>.log)
#   --name NAME          names the run in the log file name (default: basename of DIR)
#   --append-cmdline STR appended to the kernel command line (repeatable). NAME=VALUE words the kernel
#                        does not know become environment variables of /init and guest-main.
#   --rules PATH         udev rules file, or directory of *.rules, installed into /etc/udev/rules.d/
#                        (repeatable); <repo>/udev/*.rules are always installed when present
#   --module NAME        extra kernel module of the guest kernel to insmod (with its dependencies)
#   --host-file PATH     host file copied into the guest at the same path, with its libraries if ELF
#   --qemu-arg ARG       extra qemu argument (repeatable)
#   --mem MB / --smp N   guest memory (default 1024) and CPUs (default 2)
#   --verbose            stream the console to stderr while the VM runs
#   --power-off-after-ms MS  a power-off from the host: MS milliseconds after the guest prints a
#                        line starting "HPKV-VM power-off", qemu is killed (SIGKILL)
#
# Power-offs: a guest that prints a line starting "HPKV-VM power-off" announces that it will be
# powered off (by itself, e.g. sysrq b, which ends qemu through -no-reboot, or by the host with
# --power-off-after-ms). After that line, a missing "guest-main exit" line and qemu's death by
# that SIGKILL are expected, not failures.
#
# Result protocol: the guest prints "HPKV-RESULT PASS <name>" / "HPKV-RESULT FAIL <name> <reason>" lines
# (helpers: /lib/hpkv-vm/hpkv-test.sh in the guest). After the VM exits this prints every FAIL line
# and, as its last line, "N passed, M failed". A timeout, a guest that never finished guest-main, a
# non-zero guest-main exit without FAIL lines, or no result at all adds a FAIL line. Exit status 0 iff
# M == 0 and N > 0. On failure the log path and its last 60 lines are printed.
#
# Environment: HPKV_VM_CACHE (cache root, see guest-kit.sh), HPKV_VM_COMPRESS=none|gzip (initramfs),
#   HPKV_VM_BOOT_DEADLINE (seconds, default 240): a guest silent that long is killed and booted once more.
set -euo pipefail
# Name the failing command instead of exiting silently.
trap 'printf "[hpkv-vm] ERROR: %s: line %s: %s failed\\n" "${BASH_SOURCE[0]##*/}" "$LINENO" "$BASH_COMMAND" >&2' ERR

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# --- arguments -------------------------------------------------------------------------------------
payload="" disk="" disk_size=256M fresh_disk=0 disk_cache="" power_off_ms="" timeout_s=600 boot_deadline_s=${HPKV_VM_BOOT_DEADLINE:-240} log="" name="" verbose=0 mem=1024 smp=2
append=() rules=() extra_modules=() host_files=() qemu_args=()
need_arg() { [ "$#" -ge 2 ] || hpkv_die "$1 needs an argument (see --help)"; }
while [ "$#" -gt 0 ]; do
    case $1 in
        --payload) need_arg "$@"; payload=$2; shift ;;
        --disk) need_arg "$@"; disk=$2; shift ;;
        --disk-size) need_arg "$@"; disk_size=$2; shift ;;
        --fresh-disk) fresh_disk=1 ;;
        --disk-cache) need_arg "$@"; disk_cache=$2; shift ;;
        --power-off-after-ms) need_arg "$@"; power_off_ms=$2; shift ;;
        --timeout) need_arg "$@"; timeout_s=$2; shift ;;
        --log) need_arg "$@"; log=$2; shift ;;
        --name) need_arg "$@"; name=$2; shift ;;
        --append-cmdline) need_arg "$@"; append+=("$2"); shift ;;
        --rules) need_arg "$@"; rules+=("$2"); shift ;;
        --module) need_arg "$@"; extra_modules+=("$2"); shift ;;
        --host-file) need_arg "$@"; host_files+=("$2"); shift ;;
        --qemu-arg) need_arg "$@"; qemu_args+=("$2"); shift ;;
        --mem) need_arg "$@"; mem=$2; shift ;;
        --smp) need_arg "$@"; smp=$2; shift ;;
        --verbose) verbose=1 ;;
        -h|--help) usage; exit 0 ;;
        *) hpkv_die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
[ -n "$payload" ] || hpkv_die "--payload DIR is required (see --help)"
[ -d "$payload" ] || hpkv_die "payload directory not found: $payload"
if ! [ -f "$payload/guest-main" ] || ! [ -x "$payload/guest-main" ]; then
    hpkv_die "$payload/guest-main must exist and be executable"
fi
if ! [[ $timeout_s =~ ^[1-9][0-9]*$ ]]; then
    hpkv_die "--timeout needs a positive number of seconds"
fi
if [ -n "$power_off_ms" ] && ! [[ $power_off_ms =~ ^[0-9]+$ ]]; then
    hpkv_die "--power-off-after-ms needs a number of milliseconds"
fi
payload=$(cd "$payload" && pwd -P)
name=${name:-$(basename "$payload")}
log=${log:-$HPKV_REPO/target/vm/$name.log}
mkdir -p "$(dirname "$log")"
log=$(cd "$(dirname "$log")" && pwd -P)/$(basename "$log")
compress=${HPKV_VM_COMPRESS:-none}
case $compress in none|gzip) ;; *) hpkv_die "HPKV_VM_COMPRESS must be none or gzip" ;; esac

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
t_start=$(now)

# --- host packages and the guest kit (kernel, udev) ------------------------------------------------
hpkv_install_packages "${HPKV_DEPS_PACKAGES[@]}"
kit=$("$HPKV_VM_DIR/guest-kit.sh")
# shellcheck disable=SC1091
KVER=$(. "$kit/kit.env" && printf '%s' "$KVER")
busybox=$(command -v busybox || true)
[ -x "$busybox" ] || hpkv_die "busybox not found (apt-get install busybox-static)"
if hpkv_elf_libs "$busybox" | grep -q .; then
    hpkv_die "$busybox is dynamically linked: install busybox-static"
fi

# Sweep the temporary directories of runs that were killed (SIGKILL leaves no chance to clean up).
for d in "${TMPDIR:-/tmp}"/hpkv-vm.*; do
    [ -f "$d/owner.pid" ] || continue
    kill -0 "$(cat "$d/owner.pid")" 2>/dev/null || rm -rf "$d"
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hpkv-vm.XXXXXX")
echo "$$" >"$tmp/owner.pid"
vm_pid="" tail_pid="" qemu_pidfile="" watch_pid=""
cleanup() {
    # Never leave qemu behind: stop timeout(1) (which forwards TERM to qemu), then kill hard.
    if [ -n "$vm_pid" ] && kill -0 "$vm_pid" 2>/dev/null; then
        kill -TERM "$vm_pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
            kill -0 "$vm_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$vm_pid" 2>/dev/null || true
        [ -n "$qemu_pidfile" ] && [ -s "$qemu_pidfile" ] && kill -KILL "$(cat "$qemu_pidfile")" 2>/dev/null
    fi
    [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null
    [ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Udev library search path of the kit: libraries the host lacks were extracted there.
kit_libdirs() {
    local d out=""
    for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib/x86_64-linux-gnu/systemd \
             usr/lib/x86_64-linux-gnu/systemd lib/systemd usr/lib; do
        [ -d "$kit/udev/$d" ] && out+="${out:+:}$kit/udev/$d"
    done
    printf '%s' "$out"
}

# Copy SRC's shared libraries into ROOT (at the path ldd names; those from the kit at their path
# inside the kit), skipping the paths listed in SKIPLIST. Appends the copied paths to ROOT/.libs.
copy_libs() {
    local src=$1 root=$2 skip=${3:-/dev/null} lib dest
    while IFS= read -r lib; do
        case $lib in
            "$kit/udev/"*) dest=${lib#"$kit/udev"} ;;
            *) dest=$lib ;;
        esac
        grep -qxF "$dest" "$skip" 2>/dev/null && continue
        [ -e "$root$dest" ] && continue
        mkdir -p "$root$(dirname "$dest")"
        cp -L "$lib" "$root$dest"
        printf '%s\n' "$dest" >>"$root/.libs"
    done < <(hpkv_elf_libs "$src" "$(kit_libdirs)" || hpkv_die "cannot resolve the libraries of $src")
}

# Pack directory ROOT into cpio archive OUT (newc, files owned by root).
pack() {
    local root=$1 out=$2
    (cd "$root" && find . -mindepth 1 ! -name .libs -printf '%P\n' | LC_ALL=C sort |
        cpio -o -H newc -R 0:0 --quiet) >"$out.raw"
    if [ "$compress" = gzip ]; then gzip -1 -c "$out.raw" >"$out" && rm -f "$out.raw"; else mv "$out.raw" "$out"; fi
}

# Module name -> path relative to the kit's module tree, for every module of the guest kernel.
declare -A ko_path=()
index_modules() {
    local f n
    [ "${#ko_path[@]}" -gt 0 ] && return 0
    while IFS= read -r f; do
        n=${f##*/}
        n=${n%.ko}
        ko_path[${n//-/_}]=$f
    done < <(cd "$kit/modules" && find kernel -name '*.ko')
}
# Print NAME's dependencies first (modinfo "depends=" of the .ko's .modinfo section), then NAME.
declare -A ko_seen=()
module_order() {
    local m=${1//-/_} dep deps
    [ -n "${ko_seen[$m]:-}" ] && return 0
    ko_seen[$m]=1
    [ -n "${ko_path[$m]:-}" ] || hpkv_die "kernel module not found in the guest kernel $KVER: $m (built-in or misspelt?)"
    deps=$(tr '\0' '\n' <"$kit/modules/${ko_path[$m]}" | sed -n 's/^depends=//p' | head -n 1)
    for dep in ${deps//,/ }; do module_order "$dep"; done
    printf '%s\n' "$m"
}

# --- the base initramfs: busybox, /init, modules, udev (cached) -------------------------------------
base_modules=(fuse cuse virtio_pci virtio_blk)
udev_elves=("$kit/udev/bin/udevadm")
for f in "$kit"/udev/lib/udev/*; do hpkv_is_elf "$f" && udev_elves+=("$f"); done
# The key covers everything the base is made of, host libraries (path, size, mtime) included.
base_key=$(
    {
        printf '%s\n' "$kit" "$compress" "${base_modules[@]}"
        sha256sum "$busybox" "$HPKV_VM_DIR/guest/init" "$HPKV_VM_DIR/guest/hpkv-test.sh" "$0" | cut -d' ' -f1
        for f in "${udev_elves[@]}"; do hpkv_elf_libs "$f" "$(kit_libdirs)"; done | sort -u |
            xargs -r stat -L -c '%n %s %Y'
    } | sha256sum | cut -c1-16
)
base_dir=$HPKV_VM_CACHE/base/$base_key
if [ ! -s "$base_dir/base.cpio" ]; then
    t0=$(now)
    hpkv_log "building the base initramfs ($base_key)"
    r=$tmp/base
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,lib/hpkv-vm,lib/modules/hpkv,lib/systemd,lib64,etc/hpkv-vm,etc/udev/rules.d,dev,proc,sys,run,tmp,root,payload,mnt,var}
    chmod 1777 "$r/tmp"
    cp "$busybox" "$r/bin/busybox"
    while IFS= read -r applet; do
        [ -e "$r/$applet" ] || [ -L "$r/$applet" ] || ln -s /bin/busybox "$r/$applet"
    done < <("$busybox" --list-full)
    install -m 0755 "$HPKV_VM_DIR/guest/init" "$r/init"
    install -m 0644 "$HPKV_VM_DIR/guest/hpkv-test.sh" "$r/lib/hpkv-vm/hpkv-test.sh"
    # Kernel modules, flat in /lib/modules/hpkv, and their load order.
    index_modules
    while IFS= read -r m; do
        cp "$kit/modules/${ko_path[$m]}" "$r/lib/modules/hpkv/$m.ko"
        printf '%s.ko\n' "$m" >>"$r/etc/hpkv-vm/modules"
    done < <(for m in "${base_modules[@]}"; do module_order "$m"; done)
    # udev: udevadm (systemd-udevd is a link to it), its helpers and rules, their libraries.
    cp "$kit/udev/bin/udevadm" "$r/bin/udevadm"
    ln -s /bin/udevadm "$r/lib/systemd/systemd-udevd"
    mkdir -p "$r/lib/udev"
    for f in "$kit"/udev/lib/udev/*; do
        case ${f##*/} in hwdb.d) continue ;; esac     # no hwdb.bin: lookups just find nothing
        cp -a "$f" "$r/lib/udev/"
    done
    printf 'udev_log=err\n' >"$r/etc/udev/udev.conf"  # quiet console; udev.log_level=debug overrides
    : >"$r/.libs"
    for f in "${udev_elves[@]}"; do copy_libs "$f" "$r"; done
    # glibc dlopen()s libgcc_s for pthread_cancel and unwinding (libfuse3's loop uses pthread_cancel):
    # ldd cannot see that, so it is always included.
    for f in /lib/x86_64-linux-gnu/libgcc_s.so.1 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1; do
        [ -f "$f" ] || continue
        mkdir -p "$r/lib/x86_64-linux-gnu"
        cp -L "$f" "$r/lib/x86_64-linux-gnu/libgcc_s.so.1"
        printf '%s\n' /lib/x86_64-linux-gnu/libgcc_s.so.1 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1 >>"$r/.libs"
        break
    done
    printf '%s\n' "$KVER" >"$r/etc/hpkv-vm/kver"
    mkdir -p "$tmp/basedir"
    pack "$r" "$tmp/basedir/base.cpio"
    cp "$r/.libs" "$tmp/basedir/libs.list"
    mkdir -p "$HPKV_VM_CACHE/base"
    # Atomic: a base directory exists only complete. A concurrent run may have won the race: keep its.
    mv -T "$tmp/basedir" "$base_dir" 2>/dev/null || true
    rm -rf "$r"
    # Keep the three most recently used bases (others are from older kits or harness versions).
    find "$HPKV_VM_CACHE/base" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -rn |
        tail -n +4 | cut -d' ' -f2- | while IFS= read -r d; do rm -rf "$d"; done
    hpkv_log "base initramfs built in $(secs "$t0" "$(now)") s: $(du -h "$base_dir/base.cpio" | cut -f1)"
fi
touch "$base_dir"

# --- the payload initramfs (rebuilt each run) ------------------------------------------------------
p=$tmp/payload
mkdir -p "$p/payload" "$p/etc/udev/rules.d" "$p/etc/hpkv-vm" "$p/lib/modules/hpkv"
: >"$p/.libs"
cp -a "$payload/." "$p/payload/"
# udev rules: the repository's, then --rules.
rule_srcs=()
[ -d "$HPKV_REPO/udev" ] && rule_srcs+=("$HPKV_REPO/udev")
rule_srcs+=("${rules[@]+"${rules[@]}"}")
for src in "${rule_srcs[@]+"${rule_srcs[@]}"}"; do
    if [ -d "$src" ]; then
        for f in "$src"/*.rules; do [ -f "$f" ] && cp "$f" "$p/etc/udev/rules.d/"; done
    elif [ -f "$src" ]; then
        cp "$src" "$p/etc/udev/rules.d/"
    else
        hpkv_die "--rules: not found: $src"
    fi
done
# Host files, at their host path.
for f in "${host_files[@]+"${host_files[@]}"}"; do
    [ -e "$f" ] || hpkv_die "--host-file: not found: $f"
    f=$(readlink -f "$f")
    mkdir -p "$p$(dirname "$f")"
    cp -L "$f" "$p$f"
done
# Shared libraries of every ELF in the payload, except those the base has.
while IFS= read -r -d '' f; do
    hpkv_is_elf "$f" && copy_libs "$f" "$p" "$base_dir/libs.list"
done < <(find "$p" -type f ! -name .libs -print0)
# Extra kernel modules.
if [ "${#extra_modules[@]}" -gt 0 ]; then
    index_modules
    for m in "${base_modules[@]}"; do module_order "$m" >/dev/null; done   # marks the base's as seen
    while IFS= read -r m; do
        cp "$kit/modules/${ko_path[$m]}" "$p/lib/modules/hpkv/$m.ko"
        printf '%s.ko\n' "$m" >>"$p/etc/hpkv-vm/modules.extra"
    done < <(for m in "${extra_modules[@]}"; do module_order "$m"; done)
fi
# Users and groups: root, hpkv (the daemon's account, as the package's sysusers.d file makes it: its
# primary group is the node's), hpkvuser in group hpkv, nobody, and every group a udev rule names.
{
    printf 'root:x:0:0:root:/root:/bin/sh\n'
    printf 'hpkv:x:999:1000:hpkv daemon:/var/lib/hpkv:/bin/false\n'
    printf 'hpkvuser:x:1000:1000:hpkv test user:/tmp:/bin/sh\n'
    printf 'nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n'
} >"$p/etc/passwd"
{
    printf 'root:x:0:\ntty:x:5:\ndisk:x:6:\nkmem:x:15:\ndialout:x:20:\ncdrom:x:24:\ntape:x:26:\n'
    printf 'audio:x:29:\nvideo:x:44:\nhpkv:x:1000:hpkvuser\nnogroup:x:65534:\n'
    gid=100
    find "$kit/udev/lib/udev/rules.d" "$p/etc/udev/rules.d" -name '*.rules' -exec cat {} + |
        grep -o 'GROUP="[^"]*"' | sed 's/GROUP="\(.*\)"/\1/' | sort -u |
        while IFS= read -r g; do
            case $g in root|tty|disk|kmem|dialout|cdrom|tape|audio|video|hpkv|nogroup) continue ;; esac
            printf '%s:x:%d:\n' "$g" "$gid"
            gid=$((gid + 1))
        done
} >"$p/etc/group"
pack "$p" "$tmp/payload.cpio"
cat "$base_dir/base.cpio" "$tmp/payload.cpio" >"$tmp/initrd.img"
t_built=$(now)

# --- the disk --------------------------------------------------------------------------------------
if [ -z "$disk" ]; then
    disk=$tmp/scratch-disk.img
    fresh_disk=1
fi
if [ "$fresh_disk" = 1 ] || [ ! -e "$disk" ]; then
    mkdir -p "$(dirname "$disk")"
    rm -f "$disk"
    truncate -s "$disk_size" "$disk" || hpkv_die "cannot create disk image $disk"
fi
if ! [ -f "$disk" ] || ! [ -w "$disk" ]; then
    hpkv_die "disk image is not a writable file: $disk"
fi

# --- boot ------------------------------------------------------------------------------------------
qemu_pidfile=$tmp/qemu.pid
# cryptomgr.notests and initcall_blacklist=crypto_kdf108_init skip the kernel's crypto self-tests,
# about 1 s of a ~3.5 s kernel boot under TCG; nothing the guest does depends on them.
cmdline="console=ttyS0 quiet panic=-1 cryptomgr.notests initcall_blacklist=crypto_kdf108_init"
cmdline+="${append[*]+ ${append[*]}}"
# shellcheck disable=SC2054  # the commas are qemu's
qemu=(qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m "$mem" -smp "$smp"
      -nodefaults -no-user-config -display none -monitor none -serial stdio -no-reboot
      -kernel "$kit/vmlinuz" -initrd "$tmp/initrd.img" -append "$cmdline"
      -drive "file=${disk//,/,,},format=raw,if=virtio${disk_cache:+,cache=$disk_cache}" -pidfile "$qemu_pidfile"
      "${qemu_args[@]+"${qemu_args[@]}"}")
command -v qemu-system-x86_64 >/dev/null || hpkv_die "qemu-system-x86_64 not found"
# timeout(1) bounds the run; with setpriv, qemu (and timeout) also die if their parent dies.
guard=()
command -v setpriv >/dev/null && guard=(setpriv --pdeathsig KILL --)
# Launches qemu in the background (vm_pid), its console into $log.
launch() {
    hpkv_log "booting $KVER (log: $log)"
    : >"$log"
    "${guard[@]+"${guard[@]}"}" timeout --kill-after=5 "$timeout_s" \
        "${guard[@]+"${guard[@]}"}" "${qemu[@]}" </dev/null >"$log" 2>&1 &
    vm_pid=$!
}
# True once the guest's /init has spoken, false if the VM ended first or boot_deadline_s passed.
booted() {
    local waited=0
    while [ "$waited" -lt "$boot_deadline_s" ]; do
        grep -aq '^HPKV-VM init' "$log" && return 0
        kill -0 "$vm_pid" 2>/dev/null || return 0   # ended: the results below say how
        sleep 1
        waited=$((waited + 1))
    done
    return 1
}
t_boot=$(now)
launch
# Under TCG a guest very rarely hangs in early boot, silently (seen once in ~50 boots: no console
# output at all for 900 s). Nothing has touched the disk before /init runs, so such a boot is
# killed and retried once, without "quiet", so that a second hang shows where it stops.
if ! booted; then
    hpkv_log "the guest printed nothing within ${boot_deadline_s}s: killing it and booting once more"
    pkill -KILL -P "$vm_pid" 2>/dev/null || true
    [ -s "$qemu_pidfile" ] && kill -KILL "$(cat "$qemu_pidfile")" 2>/dev/null
    wait "$vm_pid" 2>/dev/null || true
    cmdline=${cmdline/ quiet / }
    qemu=("${qemu[@]/#console=ttyS0 quiet /console=ttyS0 }")
    t_boot=$(now)
    launch
fi
if [ "$verbose" = 1 ]; then
    tail -n +1 -f --pid="$vm_pid" "$log" >&2 &
    tail_pid=$!
fi
# A power-off from the host: once the guest announces it, wait, then kill qemu as a power cut would.
if [ -n "$power_off_ms" ]; then
    (
        while kill -0 "$vm_pid" 2>/dev/null; do
            if grep -aq '^HPKV-VM power-off' "$log"; then
                sleep "$(awk -v ms="$power_off_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
                if [ -s "$qemu_pidfile" ] && kill -KILL "$(cat "$qemu_pidfile")" 2>/dev/null; then
                    echo "$power_off_ms" >"$tmp/powered-off"
                fi
                exit 0
            fi
            sleep 0.05
        done
    ) &
    watch_pid=$!
fi
vm_rc=0
# (Braces and the redirection keep bash from reporting a qemu killed on purpose as "Killed".)
{ wait "$vm_pid" || vm_rc=$?; } 2>/dev/null
vm_pid=""
t_end=$(now)
if [ -n "$tail_pid" ]; then wait "$tail_pid" 2>/dev/null || true; tail_pid=""; fi
if [ -n "$watch_pid" ]; then kill "$watch_pid" 2>/dev/null || true; wait "$watch_pid" 2>/dev/null || true; watch_pid=""; fi

# --- results ---------------------------------------------------------------------------------------
console=$tmp/console.txt
tr -d '\r' <"$log" >"$console"
fails=$tmp/fails.txt
npass=$(hpkv_vm_results "$console" "$fails")
exit_line=$(grep -a '^HPKV-VM guest-main exit=' "$console" | tail -n 1 || true)
power_off_line=$(grep -a '^HPKV-VM power-off' "$console" | tail -n 1 || true)
if [ -n "$power_off_line" ] && [ -z "$exit_line" ] && { [ "$vm_rc" = 0 ] || [ -f "$tmp/powered-off" ]; }; then
    # Announced, and it happened: the guest rebooted itself (qemu exits 0), or the host killed qemu.
    if [ -f "$tmp/powered-off" ]; then
        echo "HPKV-VM powered off by the host $(cat "$tmp/powered-off") ms after the guest's announcement"
    else
        echo "HPKV-VM powered off by the guest"
    fi
elif [ "$vm_rc" = 124 ] || [ "$vm_rc" = 137 ]; then
    echo "HPKV-RESULT FAIL vm:timeout the VM ran longer than ${timeout_s}s and was killed" >>"$fails"
elif [ "$vm_rc" != 0 ]; then
    echo "HPKV-RESULT FAIL vm:qemu qemu exited with status $vm_rc: $(grep -a 'qemu-system' "$console" | head -n 1)" >>"$fails"
elif [ -z "$exit_line" ]; then
    echo "HPKV-RESULT FAIL vm:crash the guest never finished guest-main (kernel panic or init died?)" >>"$fails"
fi
if [ -n "$exit_line" ]; then
    rc=${exit_line#*exit=}
    rc=${rc%% *}
    if [ "$rc" != 0 ] && ! [ -s "$fails" ]; then
        echo "HPKV-RESULT FAIL vm:guest-main guest-main exited with status $rc" >>"$fails"
    fi
fi
if [ "$npass" = 0 ] && ! [ -s "$fails" ]; then
    echo "HPKV-RESULT FAIL vm:no-results the guest printed no HPKV-RESULT line" >>"$fails"
fi
nfail=$(wc -l <"$fails")

# Timings: host wall clock, and the guest's uptime at its milestones.
up_main=$(hpkv_vm_uptime "$console" 'guest-main start')
up_exit=$(hpkv_vm_uptime "$console" 'guest-main exit')
timing="vm: kernel $KVER; initramfs $(secs "$t_start" "$t_built") s; qemu $(secs "$t_boot" "$t_end") s"
[ -n "$up_main" ] && timing+="; boot to guest-main ${up_main} s (guest clock)"
[ -n "$up_main" ] && [ -n "$up_exit" ] && timing+="; guest-main $(secs "$up_main" "$up_exit") s"
echo "$timing; total $(secs "$t_start" "$(now)") s"

if [ "$nfail" -gt 0 ] || [ "$npass" = 0 ]; then
    echo "---- last 60 lines of the console log $log ----"
    tail -n 60 "$console"
    echo "---- end of console log $log ----"
fi
cat "$fails"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ] && [ "$npass" -gt 0 ]
