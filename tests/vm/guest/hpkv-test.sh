# shellcheck shell=sh
# /lib/hpkv-vm/hpkv-test.sh — helpers for guest-main scripts (busybox sh). Use: . /lib/hpkv-vm/hpkv-test.sh
#
#   hpkv_pass NAME                 print "HPKV-RESULT PASS NAME"
#   hpkv_fail NAME REASON...       print "HPKV-RESULT FAIL NAME REASON" (REASON flattened to one line)
#   hpkv_check NAME CMD [ARG...]   run CMD (its output goes to the console); PASS when it exits 0, else
#                                  FAIL with its exit status and the last line it printed
#   hpkv_as USER CMD [ARG...]      run CMD as USER (with USER's groups), e.g. hpkv_as hpkvuser cat /dev/x
#   hpkv_wait_for OP PATH [SECS]   wait up to SECS (default 10) until "test OP PATH" holds,
#                                  e.g. hpkv_wait_for -c /dev/hpkv 5
# Test names must not contain blanks. Users: root, hpkv (uid 999, hpkvd's account, group hpkv gid 1000),
# hpkvuser (uid 1000, group hpkv), nobody.
# HPKV_FAILED counts the failures reported through these helpers (exit with it: [ "$HPKV_FAILED" = 0 ]).

HPKV_FAILED=0

hpkv_pass() {
    echo "HPKV-RESULT PASS $1"
}

hpkv_fail() {
    _hpkv_name=$1
    shift
    HPKV_FAILED=$((HPKV_FAILED + 1))
    echo "HPKV-RESULT FAIL $_hpkv_name $(printf '%s' "$*" | tr '\n\r' '  ')"
}

hpkv_check() {
    _hpkv_name=$1
    shift
    _hpkv_out=$(mktemp)
    "$@" >"$_hpkv_out" 2>&1
    _hpkv_rc=$?
    cat "$_hpkv_out"
    if [ "$_hpkv_rc" -eq 0 ]; then
        hpkv_pass "$_hpkv_name"
    else
        hpkv_fail "$_hpkv_name" "exit $_hpkv_rc: $* :: $(tail -n 1 "$_hpkv_out")"
    fi
    rm -f "$_hpkv_out"
    return "$_hpkv_rc"
}

hpkv_as() {
    _hpkv_user=$1
    shift
    # busybox su (as root: no password) sets uid, gid and the supplementary groups from /etc/group.
    # shellcheck disable=SC2016  # "$@" is expanded by the inner shell
    su -s /bin/sh "$_hpkv_user" -c 'exec "$@"' sh "$@"
}

hpkv_wait_for() {
    _hpkv_i=0
    while ! test "$1" "$2" 2>/dev/null; do
        _hpkv_i=$((_hpkv_i + 1))
        [ "$_hpkv_i" -le $(( ${3:-10} * 10 )) ] || return 1
        sleep 0.1
    done
}
