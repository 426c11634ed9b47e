#!/bin/bash
# libcurl and libarchive are loaded on first use: commands that need neither
# never map them, and a libarchive that cannot be loaded is a clear error at
# the first layer unpack, which leaves nothing behind.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_init
b_busybox_image bb:lazy >/dev/null

# loads LIB CMD...: did CMD map LIB (per the dynamic loader's own log)?
loads() {
    local lib=$1; shift
    LD_DEBUG=libs "$@" >/dev/null 2>"$T/ld.log" || b_die "$* failed: $(grep -v '^ *[0-9]*:' "$T/ld.log" | tail -3)"
    grep -q "find library=$lib" "$T/ld.log"
}
for cmd in "images" "inspect bb:lazy" "df" "--version"; do
    # shellcheck disable=SC2086
    ! loads libarchive.so sbx $cmd || b_die "'sbx-image $cmd' loaded libarchive"
    # shellcheck disable=SC2086
    ! loads libcurl.so sbx $cmd || b_die "'sbx-image $cmd' loaded libcurl"
done
b_pass "images, inspect (from the store), df and --version load neither libarchive nor libcurl"

# A cold unpack needs libarchive; one that cannot be loaded is an error
# naming it, and the destination, its temp dir and the layer cache stay empty.
mkdir -p "$T/fakelib"
: >"$T/fakelib/libarchive.so.13"
rc=0
LD_LIBRARY_PATH=$T/fakelib sbx unpack bb:lazy "$T/root" >/dev/null 2>"$T/err" || rc=$?
((rc == 1)) || b_die "unpack with a broken libarchive exited $rc, expected 1"
grep -q "loading libarchive: .*libarchive.so.13" "$T/err" || b_die "no clear error: $(cat "$T/err")"
[[ ! -e $T/root ]] || b_die "a failed unpack left $T/root"
[[ -z $(find "$T" -maxdepth 1 -name '.root.sbx-unpack-*') ]] || b_die "a failed unpack left its temp dir"
[[ -z $(ls -A "$STORE/unpacked" 2>/dev/null) ]] || b_die "a failed unpack left a layer in the cache"
b_pass "a libarchive that cannot be loaded: '$(tail -1 "$T/err")'"

# With the real library it works, and once the layers are cached an unpack
# no longer needs libarchive at all.
sbx unpack bb:lazy "$T/root" >/dev/null || b_die "unpack failed"
[[ -x $T/root/bin/busybox ]] || b_die "unpacked tree has no /bin/busybox"
LD_LIBRARY_PATH=$T/fakelib sbx unpack bb:lazy "$T/root2" >/dev/null 2>"$T/err" ||
    b_die "a warm unpack needed libarchive: $(cat "$T/err")"
! loads libarchive.so sbx unpack bb:lazy "$T/root3" || b_die "a warm unpack loaded libarchive"
b_pass "cold unpack loads libarchive; a warm one does not"
