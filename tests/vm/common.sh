# shellcheck shell=bash
# tests/vm/common.sh — helpers shared by the VM harness scripts. Source it; do not run it.
#
# Defines:
#   HPKV_VM_DIR     this directory (tests/vm), absolute
#   HPKV_REPO       the repository root (git top level, else ../.. of this directory)
#   HPKV_VM_CACHE   the download/build cache: ${HPKV_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hpkv-vm}
#   hpkv_log / hpkv_die / hpkv_as_root / hpkv_pkg_installed / hpkv_apt_update / hpkv_install_packages
#   hpkv_is_elf FILE          true for an ELF file
#   hpkv_elf_libs FILE [DIRS] prints the shared libraries (and the dynamic loader) FILE needs, as absolute
#                             paths, one per line; DIRS (colon-separated) are searched first (LD_LIBRARY_PATH)
#   hpkv_vm_results CONSOLE FAILS   writes the console's FAIL result lines to FAILS, prints the PASS count
#   hpkv_vm_uptime CONSOLE WHAT     the guest's uptime at its "HPKV-VM WHAT" milestone, if printed

HPKV_VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck disable=SC2034  # used by the scripts that source this file
HPKV_REPO=$(git -C "$HPKV_VM_DIR" rev-parse --show-toplevel 2>/dev/null || (cd "$HPKV_VM_DIR/../.." && pwd -P))
HPKV_VM_CACHE=${HPKV_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hpkv-vm}

# shellcheck source-path=SCRIPTDIR source=deps.sh
. "$HPKV_VM_DIR/deps.sh"

# True when FILE starts with the ELF magic number.
hpkv_is_elf() {
    [ -f "$1" ] && [ "$(head -c 4 "$1" 2>/dev/null | tr -d '\0')" = $'\x7fELF' ]
}

# Print the absolute paths of the shared objects FILE needs (transitively, through ldd), including the
# dynamic loader. Prints nothing for a static binary. Fails, naming them, when libraries are missing.
hpkv_elf_libs() {
    local file=$1 dirs=${2:-} out line missing=()
    if ! out=$(LD_LIBRARY_PATH="$dirs" ldd "$file" 2>&1); then
        case $out in
            *"not a dynamic executable"*) return 0 ;;   # static
            *) hpkv_log "ldd $file failed: $out"; return 1 ;;
        esac
    fi
    while IFS= read -r line; do
        line=${line#"${line%%[![:space:]]*}"}           # trim leading blanks
        case $line in
            *"=> not found"*) missing+=("${line%% *}") ;;
            *" => /"*) line=${line#* => }; printf '%s\n' "${line%% (*}" ;;
            /*) printf '%s\n' "${line%% (*}" ;;          # the loader: /lib64/ld-linux-x86-64.so.2 (0x...)
            *) ;;                                       # linux-vdso.so.1, "statically linked"
        esac
    done <<<"$out"
    if [ "${#missing[@]}" -gt 0 ]; then
        hpkv_log "$file: missing shared libraries: ${missing[*]}"
        return 1
    fi
}

# The guest's result lines in CONSOLE (carriage returns removed): the FAIL lines into FAILS, the
# number of PASS lines on stdout. A result line may follow a test's own output that did not end
# its line (the serial console keeps no line boundaries between writers), so results are found
# anywhere in a line.
hpkv_vm_results() {
    grep -a -o 'HPKV-RESULT FAIL .*' "$1" >"$2" || true
    { grep -a -o 'HPKV-RESULT PASS ' "$1" || true; } | wc -l  # none: 0, not a failed pipeline
}

# The guest's uptime (seconds) at its first "HPKV-VM WHAT ... uptime=S" line in CONSOLE.
hpkv_vm_uptime() {
    { grep -a "^HPKV-VM $2" "$1" || true; } | head -n 1 | sed -n 's/.*uptime=\([0-9.]*\).*/\1/p'
}
