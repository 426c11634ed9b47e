#!/bin/bash
# python: VERSION and add_python beyond the base's package manager: a
# standalone CPython (python-build-standalone's install_only layout) from
# the host's pinned source, here an archive this test makes and serves on
# 127.0.0.1 (its python3.12 is a stub ELF for glibc):
#  - add_python on a busybox-glibc base from the registry (no package
#    manager): the archive becomes /usr/local, owned by root, with python3
#    and python links; a rebuild runs and downloads nothing;
#  - a mirror (--python-mirror) serves the same pinned bytes;
#  - bytes that do not match the pin are refused naming both digests, and
#    leave the store as it was;
#  - a base without glibc or musl (static busybox) and a version with no
#    pin fail naming why; a bad pins file fails before any step runs;
#  - the pins change cache keys, never the recipe digest.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/registry.sh"
t_init "$@"
export SBX_RESOLVE_TTL=0
reg_start r1 plain
[[ $(uname -m) == x86_64 ]] || t_die "the glibc base below is x86_64's"

# a busybox-glibc base: static busybox plus the host's glibc loader and libc
bb=$T/bb-glibc
b_busybox_rootfs "$bb"
mkdir -p "$bb/lib64" "$bb/lib"
cp -L /lib64/ld-linux-x86-64.so.2 "$bb/lib64/"
cp -L "$(cc -print-file-name=libc.so.6)" "$bb/lib/libc.so.6"
"$B_DRIVER" --seed "$STORE" "$bb" bbglibc:test >/dev/null
ok push bbglibc:test "$r1_HOST/bb/glibc:1"
b_busybox_image bbstatic:test >/dev/null

srv=$T/pbs
mkdir -p "$srv/mirror"
sum=$(b_pbs_archive "$srv" 3.12.99)
cp "$srv/cpython-3.12.99-test.tar.gz" "$srv/mirror/"
b_http_serve "$srv"
b_pbs_pins "$T/pins.json" "$HTTP_URL/" 3.12.99 "$sum"
downloads() { grep -c "GET /${1:-}cpython-3.12.99-test.tar.gz" "$srv.log" || true; }

mkdir -p "$T/ctx"
cat >"$T/ctx/add.yaml" <<YAML
from_registry: $r1_HOST/bb/glibc:1
add_python: "3.12"
steps:
  - run_cmd: python3 --version > /py-version && python --version && ls -ln /usr/local/bin/python3.12
YAML

case_ "add_python 3.12 on busybox-glibc: the standalone build from the pinned source"
ok build --python-pins "$T/pins.json" "$T/ctx/add.yaml"
err_has "standalone CPython 3\.12\.99 \(x86_64-gnu\) from $HTTP_URL/cpython-3\.12\.99-test\.tar\.gz"
err_has "Python 3\.12\.99 \(standalone CPython in /usr/local\)"
assert_eq "$(downloads)" 1 "downloads"
img=$(cat "$T/out")
ok unpack "$img" "$T/tree"
assert_eq "$(cat "$T/tree/py-version")" "Python 3.12.99" "python3 --version in a later step"
assert_eq "$(stat -c %u:%g "$T/tree/usr/local/bin/python3.12")" 0:0 "owner of python3.12"
assert_eq "$(stat -c %u:%g "$T/tree/usr/local/lib/python3.12/os.py")" 0:0 "owner of lib/"
assert_eq "$(readlink "$T/tree/usr/local/bin/python3")" python3.12 "python3 link"
assert_eq "$(readlink "$T/tree/usr/local/bin/python")" python3 "python link"
assert_eq "$(readlink "$T/tree/usr/local/bin/pip")" pip3 "pip link"
[[ ! -e $T/tree/python ]] || fail "the archive's python/ dir is in the image"
b_assert_clean

case_ "rebuild: nothing runs, nothing is downloaded"
ok build --json --python-pins "$T/pins.json" "$T/ctx/add.yaml"
assert_eq "$(jq -r .steps_run "$T/out")" 0 "steps run"
assert_eq "$(downloads)" 1 "downloads"

case_ "the pins are the host's: the recipe digest does not change with them"
ok digest "$T/ctx/add.yaml"
d1=$(cat "$T/out")
SBX_PYTHON_PINS=/nonexistent ok digest "$T/ctx/add.yaml"
assert_eq "$(cat "$T/out")" "$d1" "recipe digest"

case_ "a mirror serves the same pinned bytes"
ok build --no-cache --python-pins "$T/pins.json" --python-mirror "$HTTP_URL/mirror" "$T/ctx/add.yaml"
assert_eq "$(downloads mirror/)" 1 "downloads from the mirror"
assert_eq "$(downloads)" 1 "downloads from the pins file's url"
SBX_PYTHON_MIRROR=$HTTP_URL/mirror/ ok build --no-cache --python-pins "$T/pins.json" "$T/ctx/add.yaml"
assert_eq "$(downloads mirror/)" 2 "downloads from \$SBX_PYTHON_MIRROR"

case_ "bytes that do not match the pin are refused; the store stays as it was"
b_pbs_pins "$T/bad-pins.json" "$HTTP_URL/" 3.12.99 "$(printf '%064d' 7)"
b_state >"$T/before"
fails build --python-pins "$T/bad-pins.json" "$T/ctx/add.yaml"
err_has "does not match its pinned SHA-256 0{63}7 \(it hashes to $sum"
b_state >"$T/after"
diff "$T/before" "$T/after" >&2 || fail "a refused archive changed the store"
b_assert_clean

case_ "cache keys follow the pinned bytes, not where they are downloaded from"
cp "$srv/cpython-3.12.99-test.tar.gz" "$srv/copy.tar.gz"
sed "s|cpython-3.12.99-test.tar.gz|copy.tar.gz|" "$T/pins.json" >"$T/pins2.json"
ok build --json --python-pins "$T/pins2.json" "$T/ctx/add.yaml"
assert_eq "$(jq -r .steps_run "$T/out")" 0 "steps run with the same bytes elsewhere"
sum98=$(b_pbs_archive "$srv" 3.12.98)
b_pbs_pins "$T/pins98.json" "$HTTP_URL/" 3.12.98 "$sum98"
ok build --json --python-pins "$T/pins98.json" "$T/ctx/add.yaml"
assert_eq "$(jq -r .steps_run "$T/out")" 1 "steps run with another pin (the run_cmd)"
err_has "Python 3\.12\.98"

case_ "python: \"3\" is the newest 3.x pinned (minor first, then patch)"
python3 - "$T/pins.json" "$T/pins3.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
e = dict(d["pythons"][0], version="3.9.100", path="no-such.tar.gz")
d["pythons"].append(e)
json.dump(d, open(sys.argv[2], "w"))
PY
printf 'image: bbglibc:test\nsteps:\n  - python: "3"\n' >"$T/ctx/three.yaml"
ok build --python-pins "$T/pins3.json" "$T/ctx/three.yaml"
err_has "standalone CPython 3\.12\.99"

case_ "a pin change reruns from its own python step, not from the first"
s131=$(b_pbs_archive "$srv" 3.13.1)
s132=$(b_pbs_archive "$srv" 3.13.2)
pins2() { # FILE VERSION-A SHA-A VERSION-B SHA-B
    python3 - "$@" "$HTTP_URL/" "$(uname -m)" <<'PY'
import json, sys
f, va, sa, vb, sb, url, arch = sys.argv[1:]
e = lambda v, s: {"version": v, "arch": arch, "libc": "gnu", "path": f"cpython-{v}-test.tar.gz", "sha256": s}
json.dump({"url": url, "pythons": [e(va, sa), e(vb, sb)]}, open(f, "w"))
PY
}
pins2 "$T/two-a.json" 3.12.99 "$sum" 3.13.1 "$s131"
pins2 "$T/two-b.json" 3.12.99 "$sum" 3.13.2 "$s132"
printf 'image: bbglibc:test\nsteps:\n  - python: "3.12"\n  - run_cmd: echo heavy\n  - python: "3.13"\n  - run_cmd: python3 --version\n' >"$T/ctx/two.yaml"
ok build --json --python-pins "$T/two-a.json" "$T/ctx/two.yaml"
assert_eq "$(jq -r .steps_run "$T/out")" 4 "steps run"
err_has '"line":"Python 3\.13\.1"'
ok build --json --python-pins "$T/two-b.json" "$T/ctx/two.yaml"
assert_eq "$(jq -r .steps_run "$T/out")" 2 "steps run after the 3.13 pin changed (python 3.13 and after)"
err_has '"line":"Python 3\.13\.2"'

case_ "a python: step on a base with no C library names why"
printf 'image: bbstatic:test\nsteps:\n  - python: "3.12"\n' >"$T/ctx/static.yaml"
fails build --python-pins "$T/pins.json" "$T/ctx/static.yaml"
err_has "the base has no package manager this builder knows"
err_has "nor can a standalone CPython run: the base has neither glibc's nor musl's dynamic loader"

case_ "a version with no pin names the pins file"
printf 'image: bbglibc:test\nsteps:\n  - python: "3.11"\n' >"$T/ctx/311.yaml"
fails build --python-pins "$T/pins.json" "$T/ctx/311.yaml"
err_has "no standalone CPython 3\.11 is pinned for x86_64-gnu in $T/pins.json"

case_ "a python: step (not add_python) on an image base"
printf 'image: bbglibc:test\nsteps:\n  - run_cmd: echo before\n  - python: "3.12.99"\n  - run_cmd: python3 --version\n' >"$T/ctx/step.yaml"
ok build --python-pins "$T/pins.json" "$T/ctx/step.yaml"
err_has "Python 3\.12\.99"

case_ "a bad pins file fails before any step runs"
printf '{"pythons": [{"version": "3.12", "arch": "x86_64", "libc": "gnu", "path": "x", "sha256": "%064d"}]}\n' 0 >"$T/short.json"
fails build --python-pins "$T/short.json" "$T/ctx/step.yaml"
err_has "python pins '$T/short.json': entry 1: \"version\" is not like"
printf '{"pythons": [{"version": "3.12.1", "arch": "x86_64", "libc": "gnu", "path": "../x", "sha256": "%064d"}]}\n' 0 >"$T/dots.json"
fails build --python-pins "$T/dots.json" "$T/ctx/step.yaml"
err_has "entry 1: \"path\" is not a relative path"
fails build --python-pins "$T/nope.json" "$T/ctx/step.yaml"
err_has "python pins '$T/nope.json'"
grep -q '^\[1/3\]' "$T/err" && fail "a step ran before the pins were read"
fails build --python-pins "$T/pins.json" --python-mirror "http://u:s3cr3t@127.0.0.1:9/" "$T/ctx/step.yaml"
err_has "a URL with credentials is refused"
err_lacks "s3cr3t"

t_pass
