#!/usr/bin/env bash
# tests/vm/guest-kit.sh — download and cache what the guest needs that the host does not have:
# Debian's cloud kernel (which has cuse.ko) and Debian's udev (systemd-udevd, udevadm).
#
# Usage: tests/vm/guest-kit.sh [--refresh]
#   Prints the kit directory (absolute path) as its only line on stdout; progress goes to stderr.
#   --refresh   re-resolve the package versions from apt (apt-get update when the lists are stale) and
#               download whatever changed. Without it a complete cached kit is reused as is: no apt, no
#               network.
#
# Environment:
#   HPKV_VM_CACHE        cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/hpkv-vm)
#   HPKV_VM_KERNEL_PKG   kernel package: a metapackage (default linux-image-cloud-amd64) or a versioned
#                        image package (linux-image-6.1.0-NN-cloud-amd64)
#   HPKV_VM_ASSUME_MISSING  (testing) space-separated library packages to treat as absent on the host
#
# Kit layout ($HPKV_VM_CACHE/kits/<kernel>_<kver>__udev_<uver>/):
#   vmlinuz        the kernel
#   modules/       lib/modules/<KVER>/ of the kernel package (kernel/..., modules.* indexes)
#   udev/          the udev package extracted (bin/udevadm, lib/systemd/systemd-udevd -> /bin/udevadm,
#                  lib/udev/{rules.d,*_id}), plus any library package the host lacks, extracted too
#   kit.env        KVER=..., versions; written last: a kit without it is incomplete and rebuilt
# $HPKV_VM_CACHE/debs/   the downloaded .deb files
# $HPKV_VM_CACHE/current the name of the kit last resolved (used when not --refresh)
set -euo pipefail
# Name the failing command instead of exiting silently.
trap 'printf "[hpkv-vm] ERROR: %s: line %s: %s failed\\n" "${BASH_SOURCE[0]##*/}" "$LINENO" "$BASH_COMMAND" >&2' ERR

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

refresh=0
for arg in "$@"; do
    case $arg in
        --refresh) refresh=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) hpkv_die "guest-kit.sh: unknown argument: $arg" ;;
    esac
done

debs=$HPKV_VM_CACHE/debs
kits=$HPKV_VM_CACHE/kits
mkdir -p "$debs" "$kits"

# Fast path: a complete kit from an earlier run. Touches neither apt nor the network.
if [ "$refresh" = 0 ] && [ -s "$HPKV_VM_CACHE/current" ]; then
    kit=$kits/$(cat "$HPKV_VM_CACHE/current")
    if [ -s "$kit/kit.env" ] && [ -f "$kit/vmlinuz" ] && [ -x "$kit/udev/bin/udevadm" ]; then
        printf '%s\n' "$kit"
        exit 0
    fi
fi

command -v apt-get >/dev/null || hpkv_die "apt-get not found: the guest kit comes from Debian's archive"
command -v dpkg-deb >/dev/null || hpkv_die "dpkg-deb not found"

# Candidate version of a package, from the local apt lists.
candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }'
}

hpkv_apt_update
kernel_meta=${HPKV_VM_KERNEL_PKG:-linux-image-cloud-amd64}
if [ -z "$(candidate "$kernel_meta")" ] || [ "$(candidate "$kernel_meta")" = "(none)" ]; then
    hpkv_apt_update force      # lists present but without this package: refresh once
fi

# Resolve the metapackage to the versioned image package (linux-image-6.1.0-NN-cloud-amd64).
case $kernel_meta in
    linux-image-[0-9]*) kernel_pkg=$kernel_meta ;;
    *)
        kernel_pkg=$(apt-cache depends --important "$kernel_meta" 2>/dev/null |
            awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
        [ -n "$kernel_pkg" ] || hpkv_die "cannot resolve the image package that $kernel_meta depends on (apt-cache depends $kernel_meta)"
        ;;
esac
kver=${kernel_pkg#linux-image-}
kernel_ver=$(candidate "$kernel_pkg")
udev_ver=$(candidate udev)
for v in "$kernel_ver" "$udev_ver"; do
    { [ -n "$v" ] && [ "$v" != "(none)" ]; } || hpkv_die "no candidate version for $kernel_pkg or udev in the apt lists"
done

kit_name="${kver}_${kernel_ver}__udev_${udev_ver}"
kit_name=${kit_name//[:~]/_}
kit=$kits/$kit_name
if [ -s "$kit/kit.env" ]; then
    printf '%s\n' "$kit_name" >"$HPKV_VM_CACHE/current"
    printf '%s\n' "$kit"
    exit 0
fi

# Download PKG=VERSION into the deb cache unless already there; prints the .deb path.
fetch_deb() {
    local pkg=$1 ver=$2 enc f
    enc=${ver/:/%3a}                    # apt encodes the epoch colon in file names
    for f in "$debs/${pkg}_${enc}_"*.deb; do
        [ -f "$f" ] && { printf '%s\n' "$f"; return 0; }
    done
    hpkv_log "downloading $pkg $ver"
    # Download as root without apt's _apt sandbox user (which cannot write into the cache), into a
    # temporary directory first so that an interrupted download never leaves a truncated .deb behind.
    local tmp
    tmp=$(mktemp -d "$debs/.dl.XXXXXX")
    if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2); then
        rm -rf "$tmp"
        hpkv_die "apt-get download $pkg=$ver failed (run with --refresh after apt-get update?)"
    fi
    for f in "$tmp"/*.deb; do
        mv "$f" "$debs/"
        printf '%s\n' "$debs/${f##*/}"
    done
    rmdir "$tmp"
}

work=$(mktemp -d "$kits/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- kernel: vmlinuz and the module tree --------------------------------------------------------
kdeb=$(fetch_deb "$kernel_pkg" "$kernel_ver")
hpkv_log "extracting $kernel_pkg $kernel_ver"
mkdir -p "$work/k" "$work/kit"
dpkg-deb -x "$kdeb" "$work/k"
[ -f "$work/k/boot/vmlinuz-$kver" ] || hpkv_die "$kdeb has no boot/vmlinuz-$kver"
[ -f "$work/k/lib/modules/$kver/kernel/fs/fuse/cuse.ko" ] || hpkv_die "$kdeb has no cuse.ko (CONFIG_CUSE=m expected)"
mv "$work/k/boot/vmlinuz-$kver" "$work/kit/vmlinuz"
mv "$work/k/lib/modules/$kver" "$work/kit/modules"
rm -rf "$work/k"

# --- udev, and the libraries of its binaries that the host lacks ----------------------------------
udeb=$(fetch_deb udev "$udev_ver")
hpkv_log "extracting udev $udev_ver"
u=$work/kit/udev
dpkg-deb -x "$udeb" "$u"
[ -x "$u/bin/udevadm" ] || hpkv_die "$udeb has no bin/udevadm"

# Library directories inside the extracted tree: searched before the host's.
udev_libdirs() {
    local d out=""
    for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib/x86_64-linux-gnu/systemd \
             usr/lib/x86_64-linux-gnu/systemd lib/systemd usr/lib; do
        [ -d "$u/$d" ] && out+="${out:+:}$u/$d"
    done
    printf '%s' "$out"
}

# All ELF files of the udev package that the guest will run: udevadm and the helpers in lib/udev.
udev_elves() {
    local f
    for f in "$u/bin/udevadm" "$u"/lib/udev/*; do
        hpkv_is_elf "$f" && printf '%s\n' "$f"
    done
}

# Check that every ELF resolves. Libraries are looked up in the extracted tree first, then the host.
udev_libs_ok() {
    local f ok=0
    while IFS= read -r f; do
        hpkv_elf_libs "$f" "$(udev_libdirs)" >/dev/null 2>&1 || ok=1
    done < <(udev_elves)
    return "$ok"
}

# Library packages that udev needs and the host lacks: a walk of the Depends/Pre-Depends graph from
# udev through lib* packages only (first alternative of an "A | B" only), that descends only into
# packages missing on the host (an installed package has its own dependencies installed).
missing_lib_pkgs() {
    local queue=(udev) seen=" " p d
    while [ "${#queue[@]}" -gt 0 ]; do
        p=${queue[0]}
        queue=("${queue[@]:1}")
        for d in $(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
                       --no-replaces --no-enhances "$p" 2>/dev/null |
                   awk '{ alt = prev_or; prev_or = ($1 ~ /^[|]/) }
                        !alt && $1 ~ /^[|]?(Pre)?Depends:$/ && $2 ~ /^lib/ { print $2 }'); do
            case $seen in *" $d "*) continue ;; esac
            seen+="$d "
            case $d in libc6|libgcc-s1|libudev1) continue ;; esac   # libudev1: unused, version-locked
            case " ${HPKV_VM_ASSUME_MISSING:-} " in
                *" $d "*) ;;
                *) hpkv_pkg_installed "$d" && continue ;;
            esac
            printf '%s\n' "$d"
            queue+=("$d")
        done
    done
}

extra_pkgs=()
if [ -n "${HPKV_VM_ASSUME_MISSING:-}" ] || ! udev_libs_ok; then
    while IFS= read -r p; do
        v=$(candidate "$p")
        if [ -z "$v" ] || [ "$v" = "(none)" ]; then continue; fi
        d=$(fetch_deb "$p" "$v")
        hpkv_log "extracting $p $v (the host lacks it)"
        dpkg-deb -x "$d" "$u"
        extra_pkgs+=("$p=$v")
    done < <(missing_lib_pkgs)
fi
if ! udev_libs_ok; then
    while IFS= read -r f; do hpkv_elf_libs "$f" "$(udev_libdirs)" >/dev/null || true; done < <(udev_elves)
    hpkv_die "udev's binaries still miss shared libraries (see above)"
fi
# Keep only what the guest uses; the rest of the tree (man pages, systemd units...) is dead weight.
rm -rf "${u:?}/usr/share" "$u/lib/systemd/system" "$u/lib/systemd/network"

cat >"$work/kit/kit.env" <<EOF
KVER=$kver
KERNEL_PKG=$kernel_pkg
KERNEL_VERSION=$kernel_ver
UDEV_VERSION=$udev_ver
EXTRA_PKGS="${extra_pkgs[*]}"
EOF
rm -rf "$kit"                       # an incomplete kit (no kit.env) from an interrupted run
mv -T "$work/kit" "$kit" 2>/dev/null || [ -s "$kit/kit.env" ] || hpkv_die "cannot install the kit into $kit"
printf '%s\n' "$kit_name" >"$HPKV_VM_CACHE/current"
hpkv_log "guest kit ready: $kit"
printf '%s\n' "$kit"
