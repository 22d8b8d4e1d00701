#!/usr/bin/env bash
# tests/vm/systemd/image.sh — builds (once) and caches the root disk of the systemd VM: a Debian 12
# userspace with systemd, made by debootstrap from Debian's archive, with the guest kit's kernel
# modules (tests/vm/guest-kit.sh: the cloud kernel, which has cuse.ko) installed so that
# systemd-udevd and systemd-modules-load load them.
#
# Usage: tests/vm/systemd/image.sh [--rebuild]
#   Prints the image directory as its only line on stdout (progress on stderr):
#     root.img   ext4 file system image (raw); the VM boots it as an NVMe disk (nvme and ext4 are
#                built into the cloud kernel: no initramfs) with snapshot=on, so it stays pristine
#     image.env  KVER=..., DEBIAN_SUITE=..., the packages, the build time
#   Without --rebuild a complete cached image is reused: no network.
#
# The image: debootstrap --variant=minbase bookworm, plus systemd, systemd-sysv, udev, kmod and
# libfuse3-3 (hpkv's one library dependency: the test installs the package with dpkg -i, without a
# network). No getty, no timers; hpkv-vm-test.service runs /payload/guest-main from the disk with
# serial hpkv-payload once the system is up, prints "HPKV-VM guest-main exit=N" on the console and
# powers off.
#
# Cache: $HPKV_VM_CACHE/systemd/<key>/ (key: this script, the kit, the suite, the packages); the
# downloaded packages in $HPKV_VM_CACHE/debootstrap/. Environment: HPKV_DEBIAN_MIRROR (default: the
# host's Debian mirror from apt's sources, else http://deb.debian.org/debian).
set -euo pipefail
trap 'printf "[hpkv-vm] ERROR: %s: line %s: %s failed\\n" "${BASH_SOURCE[0]##*/}" "$LINENO" "$BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../common.sh
. "$here/../common.sh"

rebuild=0
for arg in "$@"; do
    case $arg in
        --rebuild) rebuild=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) hpkv_die "image.sh: unknown argument: $arg" ;;
    esac
done

suite=bookworm
packages=(systemd systemd-sysv udev kmod libfuse3-3)
image_mib=1024

kit=$("$HPKV_VM_DIR/guest-kit.sh")
# shellcheck disable=SC1091
KVER=$(. "$kit/kit.env" && printf '%s' "$KVER")
key=$( { sha256sum "$0" | cut -d' ' -f1; printf '%s\n' "${kit##*/}" "$suite" "${packages[@]}"; } |
    sha256sum | cut -c1-16)
images=$HPKV_VM_CACHE/systemd
dir=$images/$key
if [ "$rebuild" = 0 ] && [ -s "$dir/image.env" ] && [ -f "$dir/root.img" ]; then
    touch "$dir"
    printf '%s\n' "$dir"
    exit 0
fi

hpkv_install_packages debootstrap e2fsprogs
# The host's Debian mirror (deb822 or one-line sources), unless told otherwise.
mirror=${HPKV_DEBIAN_MIRROR:-$(
    { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" { print $2 }'
      cat /etc/apt/sources.list 2>/dev/null | awk '$1 == "deb" { print $2 }'
    } | grep -v security | head -n 1 || true
)}
mirror=${mirror:-http://deb.debian.org/debian}

t0=$(date +%s)
mkdir -p "$images" "$HPKV_VM_CACHE/debootstrap"
work=$(mktemp -d "$images/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
hpkv_log "debootstrap $suite (minbase + ${packages[*]}) from $mirror"
include=$(IFS=,; printf '%s' "${packages[*]}")
if ! debootstrap --variant=minbase --include="$include" --cache-dir="$HPKV_VM_CACHE/debootstrap" \
        "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    hpkv_die "debootstrap failed (log above)"
fi
hpkv_log "debootstrap done in $(($(date +%s) - t0)) s"

# --- configuration ----------------------------------------------------------------------------
printf 'hpkv-systemd-vm\n' >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 hpkv-systemd-vm\n' >"$root/etc/hosts"
printf '/dev/nvme0n1 / ext4 rw,errors=remount-ro 0 1\n' >"$root/etc/fstab"
chroot "$root" systemd-machine-id-setup >/dev/null 2>&1
# Nothing on the console but the test; no login, no periodic jobs.
for unit in serial-getty@ttyS0.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer \
            e2scrub_all.timer fstrim.timer dpkg-db-backup.timer systemd-tmpfiles-clean.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
mkdir -p "$root/usr/local/lib/hpkv-vm" "$root/payload"
cat >"$root/usr/local/lib/hpkv-vm/run-test" <<'EOF'
#!/bin/sh
# Runs the test payload (the disk with serial hpkv-payload) and powers the VM off.
echo "HPKV-VM init uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r) systemd=$(systemctl --version | sed -n 's/^systemd \([0-9]*\).*/\1/p')"
disk=/dev/disk/by-id/virtio-hpkv-payload
i=0
while [ ! -b "$disk" ] && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
if mount -o ro "$disk" /payload && [ -x /payload/guest-main ]; then
    echo "HPKV-VM guest-main start uptime=$(cut -d' ' -f1 /proc/uptime)"
    (cd /payload && ./guest-main)
    rc=$?
else
    echo "HPKV-RESULT FAIL vm:payload the payload disk $disk could not be mounted"
    rc=1
fi
echo "HPKV-VM guest-main exit=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
systemctl poweroff --force --force
EOF
chmod 0755 "$root/usr/local/lib/hpkv-vm/run-test"
cat >"$root/etc/systemd/system/hpkv-vm-test.service" <<'EOF'
[Unit]
Description=hpkv systemd VM test (tests/vm/systemd)
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/lib/hpkv-vm/run-test
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/hpkv-vm-test.service "$root/etc/systemd/system/multi-user.target.wants/"

# --- the kernel's modules -------------------------------------------------------------------------
mkdir -p "$root/lib/modules"
cp -a "$kit/modules" "$root/lib/modules/$KVER"
chroot "$root" depmod "$KVER"

# --- smaller: no documentation, translations or package lists -------------------------------------
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
       "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb

# --- the file system image ------------------------------------------------------------------------
used_mib=$(du -sm "$root" | cut -f1)
[ "$used_mib" -lt $((image_mib * 3 / 4)) ] || hpkv_die "the root tree ($used_mib MiB) does not fit $image_mib MiB"
mkdir -p "$work/out"
mkfs.ext4 -q -F -L hpkv-root -d "$root" "$work/out/root.img" "${image_mib}M" >&2  # it may say "Creating regular file": stdout is the answer
cat >"$work/out/image.env" <<EOF
KVER=$KVER
DEBIAN_SUITE=$suite
PACKAGES="${packages[*]}"
MIRROR=$mirror
BUILT_SECONDS=$(($(date +%s) - t0))
EOF
rm -rf "$dir"
mv -T "$work/out" "$dir"
# Keep the two most recently used images.
find "$images" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%T@ %p\n' | sort -rn |
    tail -n +3 | cut -d' ' -f2- | while IFS= read -r d; do rm -rf "$d"; done
hpkv_log "systemd image built in $(($(date +%s) - t0)) s: $used_mib MiB in $dir/root.img"
printf '%s\n' "$dir"
