#!/bin/bash
# A persistent sandbox stopped and started 200 times: each cycle mounts the
# last snapshot, changes files (adds, modifies, deletes, replaces a dir),
# commits and unmounts.  The chain grows past overlayfs's comfortable depth,
# so mounts flatten the bottom layers (docs/runtime.md); the last snapshot
# must still mount with exactly the files the cycles left, and the flattened
# dir is shared by the next snapshots and removed by gc once unused.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_private_mounts "$0" "$@"
b_init
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

b_busybox_rootfs "$T/bb"
"$B_DRIVER" --seed "$STORE" "$T/bb" chain:0 >/dev/null
cycles=${CHAIN_CYCLES:-200}
snap=chain:0
m=$T/m
for ((i = 1; i <= cycles; i++)); do
    sbx mount "$snap" "$m" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "cycle $i: mount of $snap failed"; }
    if ((i > 1)); then
        [[ $(cat "$m/gen") == $((i - 1)) ]] || b_die "cycle $i: resumed gen is $(cat "$m/gen"), not $((i - 1))"
    fi
    echo "$i" >"$m/gen"
    echo "$i" >"$m/f$i"
    ((i % 10 == 0)) && rm "$m/f$((i - 5))"          # deletions spread down the chain
    ((i % 25 == 0)) && { rm -rf "$m/dir"; mkdir "$m/dir"; echo "$i" >"$m/dir/only"; } # opaque
    ((i % 25 == 7)) && mkdir -p "$m/dir" && echo "$i" >"$m/dir/extra"
    snap=$(sbx commit "$m" 2>"$T/err") || { cat "$T/err"; b_die "cycle $i: commit failed"; }
    sbx umount "$m" || b_die "cycle $i: umount failed"
done
b_pass "$cycles mount/change/commit/umount cycles"

sbx mount --json "$snap" "$m" >"$T/last.json" 2>/dev/null
python3 - "$T/last.json" "$cycles" <<'PY' || b_die "last mount: $(cat "$T/last.json")"
import json, sys
o, n = json.load(open(sys.argv[1])), int(sys.argv[2])
assert o["layers"] == n + 1, o["layers"]
if n + 1 > 128:
    assert o["flattened"] and len(o["lowers"]) <= 128, (o["flattened"], len(o["lowers"]))
    assert "/unpacked/flat-" in o["lowers"][-1], o["lowers"][-1]
PY
# what the cycles left: gen, f1..fN minus every 10th's f(i-5), dir as the last % 25 left it
python3 - "$m" "$cycles" <<'PY' || b_die "the last snapshot's files are wrong"
import os, sys
m, n = sys.argv[1], int(sys.argv[2])
assert open(os.path.join(m, "gen")).read() == "%d\n" % n
gone = {i - 5 for i in range(10, n + 1, 10)}
for i in range(1, n + 1):
    p = os.path.join(m, "f%d" % i)
    assert os.path.exists(p) == (i not in gone), p
    if i not in gone:
        assert open(p).read() == "%d\n" % i, p
last25 = max([i for i in range(25, n + 1, 25)] or [0])
want = {"only"} if last25 else set()
want |= {"extra"} if any(i % 25 == 7 and i > last25 for i in range(1, n + 1)) else set()
have = set(os.listdir(os.path.join(m, "dir"))) if os.path.isdir(os.path.join(m, "dir")) else set()
assert have == want, (have, want)
PY
b_pass "the last of $cycles snapshots mounts ($(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["lowers"]))' "$T/last.json") lowers, bottom layers flattened) with exactly the files the cycles left"

flats=$(ls "$STORE/unpacked" | grep -c '^flat-' || true)
[[ $flats -ge 1 ]] || ((cycles + 1 <= 128)) || b_die "no flattened dir in the cache"
sbx gc --unpacked >/dev/null
[[ -d $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lowers"][-1])' "$T/last.json") ]] ||
    b_die "gc removed the flattened dir of a live mount"
sbx umount "$m"
sbx gc --unpacked >/dev/null
[[ $(ls "$STORE/unpacked" | grep -c '^flat-' || true) == 0 ]] || b_die "gc kept flattened dirs no mount uses"
sbx mount "$snap" "$m" >/dev/null 2>&1 && [[ $(cat "$m/gen") == "$cycles" ]] || b_die "remount after gc failed"
sbx umount "$m"
b_pass "gc keeps a live mount's flattened dir and removes unused ones; the next mount makes it again"
sbx fsck >/dev/null 2>&1 || b_die "fsck not clean after the chain"
