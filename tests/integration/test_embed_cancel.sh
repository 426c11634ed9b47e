#!/bin/bash
# A threaded host program, linked against the installed libsbx only
# (tests/integration/host_build.c), builds a recipe whose step sleeps; another
# of its threads sends the process SIGINT, then cancels the build through its
# context.  The host's own SIGINT handler runs and the build goes on; the
# cancel kills the step's container at once; nothing of the build is left
# (no mount, bundle, scratch dir, container, or image).  Then eight threads
# of the host build one new recipe at once: its steps run once in all.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/build_lib.sh"
b_init
for c in cc pkg-config readelf; do command -v $c >/dev/null || b_die "missing '$c'"; done

P=$T/prefix
cmake --install "$SBX_BUILD_DIR" --prefix "$P" >"$T/install.log" 2>&1 ||
    { cat "$T/install.log"; b_die "cmake --install failed"; }
export PKG_CONFIG_PATH=$(dirname "$(find "$P" -name sbx.pc)")
libdir=$(pkg-config --variable=libdir sbx)
extra=()
readelf -d "$libdir/libsbx.so" | grep -q 'libasan' && extra+=(-fsanitize=address,undefined)
cc -Wall -Werror "${extra[@]}" -o "$T/host_build" "$SBX_SOURCE_DIR/tests/integration/host_build.c" \
    $(pkg-config --cflags --libs sbx) -lpthread -Wl,-rpath,"$libdir" 2>"$T/cc.err" ||
    { cat "$T/cc.err"; b_die "host_build.c does not build against the installed library"; }

b_busybox_rootfs "$T/bb-rootfs"
export HOST_BUILD_MARK=host-build-$$-$RANDOM
rc=0
timeout 300 "$T/host_build" "$STORE" "$T/bb-rootfs" >"$T/out" 2>&1 || rc=$?
cat "$T/out"
((rc == 0)) || b_die "host_build exited $rc"
b_assert_clean
if (crun list; runc list) 2>/dev/null | grep -q "$STORE"; then b_die "a container of the build is left"; fi
pgrep -f "slee[p] 300; echo $HOST_BUILD_MARK" >/dev/null && b_die "the step's process is still running"
sbx images --all >"$T/images"
grep -q '^recipe:' "$T/images" && b_die "a cancelled build named an image: $(cat "$T/images")"
b_pass "a threaded host's SIGINT handler runs during a build, and a cancel from another thread stops it cleanly"

rc=0
timeout 300 "$T/host_build" "$STORE" "$T/bb-rootfs" coalesce >"$T/out" 2>&1 || rc=$?
cat "$T/out"
((rc == 0)) || b_die "host_build coalesce exited $rc"
b_pass "eight threads of one host build one new recipe: its steps run once, one image"
