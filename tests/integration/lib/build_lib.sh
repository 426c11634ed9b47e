# Builder test helpers, sourced by tests/integration/test_build_*.sh.
#
# Every test gets a temp dir $T and a private store $STORE, removed on exit.
# Bases:
#  - b_busybox_image NAME: a one-layer image from busybox-static (applet
#    links, /etc/passwd with root and app(1000), /tmp 1777), put into $STORE
#    by the unit-test binary's fixture mode (test_builder --seed).
#  - b_sbx_base: the debootstrap base (base: sbx) is built at most once per
#    build dir, in a shared store under $SBX_BUILD_DIR/test-shared guarded by
#    a flock; each test copies that store (nobody writes it after seeding).
set -euo pipefail

: "${SBX_BIN:?SBX_BIN must name the sbx-image binary}"
: "${SBX_SOURCE_DIR:?SBX_SOURCE_DIR must name the source tree}"
: "${SBX_BUILD_DIR:?SBX_BUILD_DIR must name the build dir}"
B_DRIVER=$SBX_BUILD_DIR/tests/test_builder
B_HTTP_PIDS=()

b_die() { echo "build test: $*" >&2; exit 1; }
b_pass() { echo "ok - $*"; }

b_cleanup() {
    local rc=$? p
    for p in "${B_HTTP_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    # Whatever a failing test left mounted must not outlive it.
    if [[ -n ${T:-} ]]; then
        { grep -o " $T/[^ ]*" /proc/self/mountinfo 2>/dev/null || true; } | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
        [[ -n ${T_KEEP:-} ]] && echo "kept $T" || rm -rf "$T"
    fi
    exit "$rc"
}

b_init() {
    local c
    for c in busybox flock; do command -v $c >/dev/null || b_die "missing '$c' (scripts/deps.sh)"; done
    [[ -x $SBX_BIN ]] || b_die "SBX_BIN '$SBX_BIN' is not executable"
    [[ -x $B_DRIVER ]] || b_die "fixture driver '$B_DRIVER' is missing (build the tests)"
    T=$(mktemp -d /tmp/sbx-buildtest.XXXXXX)
    STORE=$T/store
    export SBX_STORE=$STORE
    trap b_cleanup EXIT
}

sbx() { "$SBX_BIN" --store "$STORE" "$@"; }

# b_private_mounts "$0" "$@" (first thing in a script that mounts): run the
# script in a mount namespace of its own, so its mounts are not copied into
# the namespaces other tests make meanwhile (and theirs not into its).
b_private_mounts() {
    if [[ -z ${SBX_TEST_MNTNS:-} ]]; then
        export SBX_TEST_MNTNS=1
        exec unshare -m --propagation private -- bash "$@"
    fi
}

# b_busybox_rootfs DIR
b_busybox_rootfs() {
    local d=$1 a
    mkdir -p "$d"/{bin,etc,tmp,root,home/app,var}
    cp "$(command -v busybox)" "$d/bin/busybox"
    for a in $("$d/bin/busybox" --list); do
        [[ $a == busybox ]] || ln -sf busybox "$d/bin/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$d/etc/passwd"
    printf 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n' >"$d/etc/group"
    chmod 1777 "$d/tmp"
    chmod 0700 "$d/root"
    chown 1000:1000 "$d/home/app"
}

# b_busybox_image NAME [STORE]: prints the manifest digest.
b_busybox_image() {
    local name=$1 store=${2:-$STORE}
    [[ -d $T/bb-rootfs ]] || b_busybox_rootfs "$T/bb-rootfs"
    "$B_DRIVER" --seed "$store" "$T/bb-rootfs" "$name"
}

# b_state [STORE]: names and layer/blob counts, to compare before/after.
b_state() { "$B_DRIVER" --state "${1:-$STORE}"; }

# b_assert_clean: no mount, bundle or scratch dir left by a build (all work
# in flight lives in the store's tmp/, nothing beside it).
b_assert_clean() {
    if grep -q " $STORE" /proc/self/mountinfo; then
        grep " $STORE" /proc/self/mountinfo >&2
        b_die "mounts left under $STORE"
    fi
    local left
    left=$(ls -A "$STORE/tmp" 2>/dev/null | head -5)
    [[ -z $left ]] || b_die "left behind in $STORE/tmp: $left"
    [[ ! -e $STORE/run && ! -e $STORE/build ]] || b_die "a build wrote outside the store's tmp/"
}

# b_sbx_base: make $STORE a copy of the shared store holding the base: sbx image.
b_sbx_base() {
    local shared=$SBX_BUILD_DIR/test-shared/sbx-base
    mkdir -p "$shared"
    (
        flock 9
        if [[ ! -e $shared/ready ]]; then
            echo "building the shared debootstrap base (once per build dir)..." >&2
            rm -rf "$shared/store"
            mkdir -p "$shared/ctx"
            printf 'base: sbx\nsteps:\n  - env: {SBX_TEST: "1"}\n' >"$shared/ctx/base.yaml"
            "$SBX_BIN" --store "$shared/store" build "$shared/ctx/base.yaml" >&2 \
                || b_die "building the debootstrap base failed"
            rm -rf "$shared/store/unpacked" "$shared/store/build" "$shared/store/run"
            touch "$shared/ready"
        fi
    ) 9>"$shared/lock"
    rm -rf "$STORE"
    cp -a "$shared/store" "$STORE"
}

# b_json_field JSON KEY
b_json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# b_pbs_archive DIR VERSION: an archive in python-build-standalone's
# install_only layout, made here: python/bin/pythonX.Y is a stub ELF linked
# against the host's glibc that answers --version with "Python VERSION";
# python/bin/pipX.Y a script; entries owned by uid 1000 as a release's
# may be.  Written to DIR/cpython-VERSION-test.tar.gz; prints its SHA-256.
b_pbs_archive() {
    local dir=$1 v=$2 mm w
    mm=$(echo "$v" | cut -d. -f1,2)
    w=$T/pbs-work-$v
    mkdir -p "$w/python/bin" "$w/python/lib/python$mm" "$dir"
    cat >"$w/stub.c" <<C
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        puts("Python $v");
        return 0;
    }
    printf("python stub %s\n", argc > 2 ? argv[2] : "");
    return 0;
}
C
    cc -O1 -o "$w/python/bin/python$mm" "$w/stub.c" || b_die "cannot compile the python stub"
    printf '#!/bin/sh\necho "pip stub"\n' >"$w/python/bin/pip$mm"
    chmod 0755 "$w/python/bin/pip$mm"
    echo "# stub" >"$w/python/lib/python$mm/os.py"
    tar -C "$w" --owner=1000 --group=1000 -czf "$dir/cpython-$v-test.tar.gz" python
    sha256sum "$dir/cpython-$v-test.tar.gz" | cut -d' ' -f1
}

# b_pbs_pins FILE URL VERSION SHA256 [LIBC]: a pins file with one entry, for
# the archive b_pbs_archive made.
b_pbs_pins() {
    printf '{"url": "%s", "pythons": [{"version": "%s", "arch": "%s", "libc": "%s", "path": "cpython-%s-test.tar.gz", "sha256": "%s"}]}\n' \
        "$2" "$3" "$(uname -m)" "${5:-gnu}" "$3" "$4" >"$1"
}

# b_http_serve DIR: serve DIR on a free 127.0.0.1 port (requests logged to
# DIR.log); sets HTTP_URL.
b_http_serve() {
    local dir=$1 port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    python3 -m http.server --bind 127.0.0.1 --directory "$dir" "$port" >"$dir.log" 2>&1 &
    B_HTTP_PIDS+=($!)
    T_PIDS+=($!) # registry.sh's cleanup, when a test uses it
    HTTP_URL=http://127.0.0.1:$port
    local i
    for i in $(seq 100); do
        curl -fso /dev/null "$HTTP_URL/" && return 0
        sleep 0.1
    done
    b_die "the HTTP server on $HTTP_URL did not start"
}
