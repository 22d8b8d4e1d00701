#!/usr/bin/env bash
# examples/run-readme-example.sh — runs the driver and the seed README's C example against it.
#
# Builds hpkvd, serves /dev/hpkv and runs examples/readme_example.c (the seed README's example,
# unmodified, compiled with plain gcc), which must print "Value: myvalue".
#   - natively when this kernel has CUSE (/dev/cuse): hpkvd on an image file under target/;
#   - otherwise inside the test VM (Debian's cloud kernel under qemu, see tests/vm/README.md),
#     with udev applying the project's rule to the node.
# Installs what it needs from Debian's registry on first use (needs root, like hpkvd itself).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=../tests/vm/common.sh
. "$repo/tests/vm/common.sh"
hpkv_install_packages "${HPKV_DEPS_PACKAGES[@]}"
cd "$repo"
echo "== building hpkvd and the seed README's example"
cargo build --release --quiet --bin hpkvd
mkdir -p target/demo
gcc -o target/demo/readme_example examples/readme_example.c

if [ -c /dev/cuse ]; then
    echo "== this kernel has CUSE: running hpkvd natively"
    [ ! -e /dev/hpkv ] || hpkv_die "/dev/hpkv already exists: another hpkvd is running"
    truncate -s 1G target/demo/hpkv.img
    # hpkvd drops to the package's account, hpkv; without the package, to nobody.
    user=hpkv
    getent passwd hpkv >/dev/null || user=nobody
    target/release/hpkvd --user "$user" target/demo/hpkv.img &
    pid=$!
    trap 'kill -TERM $pid 2>/dev/null; wait $pid' EXIT
    for _ in $(seq 100); do [ -c /dev/hpkv ] && break; sleep 0.1; done
    ls -l /dev/hpkv
    echo "== ./readme_example"
    out=$(target/demo/readme_example)
    echo "$out"
    [ "$out" = "Value: myvalue" ]
    exit
fi

echo "== this kernel has no CUSE (/dev/cuse is missing): running hpkvd in the test VM"
payload=target/demo/payload
rm -rf "$payload"
mkdir -p "$payload"
cp target/release/hpkvd target/demo/readme_example "$payload/"
cat >"$payload/guest-main" <<'GUEST'
#!/bin/sh
. /lib/hpkv-vm/hpkv-test.sh
/payload/hpkvd /dev/vda 2>/tmp/hpkvd.log &
hpkv_wait_for -c /dev/hpkv 60 || { cat /tmp/hpkvd.log; hpkv_fail demo "no /dev/hpkv"; exit 1; }
udevadm settle
echo "DEMO $ hpkvd /dev/vda"
sed 's/^/DEMO /' /tmp/hpkvd.log
echo "DEMO $ ls -l /dev/hpkv"
echo "DEMO $(ls -l /dev/hpkv)"
echo "DEMO $ ./readme_example"
out=$(/payload/readme_example)
echo "DEMO $out"
[ "$out" = "Value: myvalue" ] && hpkv_pass readme-example || hpkv_fail readme-example "printed: $out"
GUEST
chmod +x "$payload/guest-main"
rc=0
"$HPKV_VM_DIR/run-vm.sh" --payload "$payload" --name demo --timeout 300 >target/demo/vm.out 2>&1 || rc=$?
grep '^DEMO ' "$HPKV_REPO/target/vm/demo.log" | sed 's/^DEMO //' || true
tail -n 1 target/demo/vm.out
[ "$rc" = 0 ] || { cat target/demo/vm.out; exit "$rc"; }
