#!/usr/bin/env bash
# tests/vm/deps.sh — install the host packages the VM test harness needs.
#
# Usage:  tests/vm/deps.sh            (install whatever is missing; silent when nothing is)
#         . tests/vm/deps.sh          (only defines the helper functions below)
#
# Idempotent. Needs root (or passwordless sudo) only when something is missing.
# Packages:
#   qemu-system-x86   the emulator (installed with --no-install-recommends: no GUI stack)
#   busybox-static    the guest's userland (/bin/busybox, statically linked)
#   cpio              packs the initramfs
#   libfuse3-dev fuse3 pkg-config   build CUSE servers on the host (libfuse3.so.3 is copied into the guest)
#   libclang-dev      bindgen (Rust bindings to the uapi headers)
#   gcc libc6-dev     compile the C helpers of the tests
# The guest kernel and udev are NOT installed on the host: tests/vm/guest-kit.sh downloads them.

# Functions are defined even when sourced; the main part runs only when executed.

HPKV_DEPS_PACKAGES=(qemu-system-x86 busybox-static cpio libfuse3-dev fuse3 pkg-config libclang-dev gcc libc6-dev)

hpkv_log() { printf '[hpkv-vm] %s\n' "$*" >&2; }
hpkv_die() { printf '[hpkv-vm] ERROR: %s\n' "$*" >&2; exit 1; }

# Run a command as root (directly, or through sudo when available).
hpkv_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        hpkv_die "need root to run: $*"
    fi
}

# True when the package is installed (dpkg status "install ok installed").
hpkv_pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

# True when apt's package lists are missing or older than a day.
hpkv_apt_lists_stale() {
    local lists=/var/lib/apt/lists
    # No Packages index at all: never updated (fresh container).
    if ! compgen -G "$lists/*_Packages*" >/dev/null; then
        return 0
    fi
    # Any index touched in the last 24 h counts as fresh.
    [ -z "$(find "$lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit)" ]
}

# apt-get update, but only if the lists are stale (or when forced with "force").
hpkv_apt_update() {
    if [ "${1:-}" = force ] || hpkv_apt_lists_stale; then
        hpkv_log "apt-get update"
        hpkv_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
            || hpkv_die "apt-get update failed"
    fi
}

# Install the given packages if any are missing. Retries once after a forced
# apt-get update (a stale list may name a version the mirror no longer has).
hpkv_install_packages() {
    local missing=() p
    for p in "$@"; do
        hpkv_pkg_installed "$p" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    hpkv_log "installing: ${missing[*]}"
    hpkv_apt_update
    local cmd=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}")
    if ! hpkv_as_root "${cmd[@]}" >&2; then
        hpkv_apt_update force
        hpkv_as_root "${cmd[@]}" >&2 || hpkv_die "apt-get install ${missing[*]} failed"
    fi
}

hpkv_deps_main() {
    set -euo pipefail
    command -v dpkg-query >/dev/null || hpkv_die "this harness needs a Debian-based host (dpkg/apt)"
    hpkv_install_packages "${HPKV_DEPS_PACKAGES[@]}"
}

# Executed (not sourced)?
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    hpkv_deps_main "$@"
fi
