#!/usr/bin/env bash
# pkg/build-deb.sh — builds the Debian package of hpkv: target/debian/hpkv_<version>_<arch>.deb.
#
# Usage: pkg/build-deb.sh [--out DIR]
#   Builds hpkvd and hpkvctl (release), generates the man pages and shell completions from their
#   command-line definitions (pkg/docgen), stages the files under target/debian/stage and packs
#   them with dpkg-deb. Needs: a Rust toolchain (Cargo.toml's rust-version), libfuse3-dev,
#   pkg-config, libclang-dev, dpkg-dev (dpkg-shlibdeps; without it the Depends line is a fixed
#   list). No debhelper. Prints the path of the .deb as its last line.
#
# The package (install with dpkg -i or apt install ./hpkv_*.deb):
#   /usr/sbin/hpkvd /usr/bin/hpkvctl
#   /usr/lib/systemd/system/hpkvd.service      /usr/lib/udev/rules.d/60-hpkv.rules
#   /usr/lib/sysusers.d/hpkv.conf              /usr/lib/tmpfiles.d/hpkv.conf
#   /usr/lib/modules-load.d/hpkv.conf          /etc/default/hpkvd (conffile)
#   /usr/share/man/man8/hpkvd*.8.gz            /usr/share/man/man1/hpkvctl*.1.gz
#   bash, zsh and fish completions             /usr/include/hpkv.h (the ABI), hpkv_view.h
#   every C library the workspace builds (its cdylib and staticlib targets: libhpkv.so and
#   libhpkv.a, the shared view's GET; libhpkv_preload.so) in /usr/lib/<multiarch>/, and every
#   header in uapi/
#   /usr/share/doc/hpkv/{copyright,crates-licenses,README.md.gz}
# postinst makes the hpkv account (systemd-sysusers) and /var/lib/hpkv, reloads udev's rules and
# systemd; it never enables or starts hpkvd and never touches a store (pkg/debian/).
set -euo pipefail
trap 'printf "[build-deb] ERROR: line %s: %s failed\\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
out=$repo/target/debian
while [ "$#" -gt 0 ]; do
    case $1 in
        --out) out=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
log() { printf '[build-deb] %s\n' "$*" >&2; }
cd "$repo"
mkdir -p "$out"
out=$(cd "$out" && pwd -P)

metadata=$out/metadata.json
cargo metadata --format-version 1 >"$metadata"
version=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(next(p["version"] for p in m["packages"] if p["name"]=="hpkvd"))' "$metadata")
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)

# The C libraries (the shared view's GET, the preload library): every cdylib or staticlib target
# of the workspace, as "package library shared static" (1 or 0).
mapfile -t cdylibs < <(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
members = set(m["workspace_members"])
for p in m["packages"]:
    if p["id"] not in members:
        continue
    for t in p["targets"]:
        kinds = t["crate_types"]
        if "cdylib" in kinds or "staticlib" in kinds:
            print(p["name"], t["name"].replace("-", "_"), int("cdylib" in kinds), int("staticlib" in kinds))
' "$metadata")

log "building hpkvd and hpkvctl $version (release)"
build=(-p hpkvd -p hpkvctl)
for c in "${cdylibs[@]+"${cdylibs[@]}"}"; do build+=(-p "${c%% *}"); done
cargo build --release --quiet "${build[@]}"
gen=$out/generated
rm -rf "$gen"
cargo run --release --quiet -p hpkv-docgen -- "$gen"

stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"
put() { install -D -m "$1" "$2" "$stage$3"; }
# Binaries without their debug sections (symbols stay, for backtraces).
put 0755 target/release/hpkvd /usr/sbin/hpkvd
put 0755 target/release/hpkvctl /usr/bin/hpkvctl
strip --strip-debug "$stage/usr/sbin/hpkvd" "$stage/usr/bin/hpkvctl"

put 0644 pkg/systemd/hpkvd.service /usr/lib/systemd/system/hpkvd.service
put 0644 udev/60-hpkv.rules /usr/lib/udev/rules.d/60-hpkv.rules
put 0644 pkg/systemd/hpkv.sysusers.conf /usr/lib/sysusers.d/hpkv.conf
put 0644 pkg/systemd/hpkv.tmpfiles.conf /usr/lib/tmpfiles.d/hpkv.conf
put 0644 pkg/systemd/hpkv.modules-load.conf /usr/lib/modules-load.d/hpkv.conf
put 0644 pkg/systemd/hpkvd.default /etc/default/hpkvd

for page in "$gen"/man/*.[18]; do
    section=${page##*.}
    put 0644 "$page" "/usr/share/man/man$section/${page##*/}"
    gzip -9n "$stage/usr/share/man/man$section/${page##*/}"
done
for prog in hpkvd hpkvctl; do
    put 0644 "$gen/completions/bash/$prog" "/usr/share/bash-completion/completions/$prog"
    put 0644 "$gen/completions/zsh/_$prog" "/usr/share/zsh/vendor-completions/_$prog"
    put 0644 "$gen/completions/fish/$prog.fish" "/usr/share/fish/vendor_completions.d/$prog.fish"
done

for h in uapi/*.h; do
    put 0644 "$h" "/usr/include/${h##*/}"
done
for c in "${cdylibs[@]+"${cdylibs[@]}"}"; do
    read -r _pkg lib shared static <<<"$c"
    if [ "$shared" = 1 ]; then
        log "including lib$lib.so"
        put 0644 "target/release/lib$lib.so" "/usr/lib/$multiarch/lib$lib.so"
        strip --strip-debug "$stage/usr/lib/$multiarch/lib$lib.so"
    fi
    if [ "$static" = 1 ]; then
        put 0644 "target/release/lib$lib.a" "/usr/lib/$multiarch/lib$lib.a"
        strip --strip-debug "$stage/usr/lib/$multiarch/lib$lib.a"
    fi
done

doc=/usr/share/doc/hpkv
put 0644 pkg/debian/copyright "$doc/copyright"
put 0644 README.md "$doc/README.md"
gzip -9n "$stage$doc/README.md"
# The Rust crates linked in, with their licenses.
python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
members = set(m["workspace_members"])
print("Rust crates linked into hpkvd and hpkvctl (name version license):")
for p in sorted(m["packages"], key=lambda p: (p["name"], p["version"])):
    if p["id"] not in members:
        print(p["name"], p["version"], p.get("license") or "see the crate")
' "$metadata" >"$stage$doc/crates-licenses"
chmod 0644 "$stage$doc/crates-licenses"

for script in postinst prerm postrm; do
    install -m 0755 "pkg/debian/$script" "$stage/DEBIAN/$script"
done
printf '/etc/default/hpkvd\n' >"$stage/DEBIAN/conffiles"
# Shared libraries in /usr/lib: the dynamic linker's cache is refreshed after install and removal.
if compgen -G "$stage/usr/lib/$multiarch/*.so" >/dev/null; then
    printf 'activate-noawait ldconfig\n' >"$stage/DEBIAN/triggers"
fi

# Depends: the shared libraries the binaries use, as dpkg-shlibdeps finds them.
depends="libc6 (>= 2.34), libfuse3-3 (>= 3.2.3), libgcc-s1 (>= 4.2)"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
    shl=$out/shlibdeps
    rm -rf "$shl"
    mkdir -p "$shl/debian"
    printf 'Source: hpkv\n\nPackage: hpkv\nArchitecture: any\n' >"$shl/debian/control"
    elves=("$stage/usr/sbin/hpkvd" "$stage/usr/bin/hpkvctl")
    for f in "$stage/usr/lib/$multiarch"/*.so; do [ -f "$f" ] && elves+=("$f"); done
    found=$(cd "$shl" && dpkg-shlibdeps -O "${elves[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
    [ -n "$found" ] && depends=$found
fi
installed_kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: hpkv
Version: $version
Architecture: $arch
Maintainer: hpkv maintainers <hpkv@example.invalid>
Installed-Size: $installed_kib
Depends: $depends
Recommends: systemd, udev
Section: database
Priority: optional
Homepage: https://example.invalid/hpkv
Description: key-value store serving the HPKV kernel module's /dev/hpkv from user space
 hpkvd registers /dev/hpkv through CUSE with the ABI of the HPKV kernel module, so
 programs written for the module run unchanged, and keeps the records in a crash-safe
 log-structured store on a dedicated block device or an image file. It runs as the
 unprivileged user hpkv, with no capabilities and a system-call filter, as a systemd
 service (hpkvd.service, Type=notify); members of group hpkv may use /dev/hpkv.
 .
 The package has hpkvd, the command-line tool hpkvctl, the C headers and libraries
 (libhpkv: GETs from hpkvd's shared view; libhpkv_preload.so), the systemd unit, the
 udev rule, man pages and shell completions. Enable the service
 once a device is named in /etc/default/hpkvd: systemctl enable --now hpkvd.
EOF
(cd "$stage" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum) >"$stage/DEBIAN/md5sums"

deb=$out/hpkv_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
log "$(dpkg-deb --info "$deb" | sed -n 's/^ Depends:/Depends:/p')"
log "$(dpkg-deb --contents "$deb" | wc -l) entries, $(du -h "$deb" | cut -f1)"
printf '%s\n' "$deb"
