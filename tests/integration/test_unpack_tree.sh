#!/bin/bash
# sbx-image unpack: the tree matches what the build step saw through
# overlayfs (whiteouts, opaque dirs, owners, modes, symlinks, hardlinks,
# devices, xattrs), with copies and with --link (inodes shared with the
# store's layer cache); lookups by tag, digest and ref; --config, --json;
# refusals (non-empty dir, a file, unknown image) leave nothing behind.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
source "$SBX_SOURCE_DIR/tests/integration/lib/unpack_lib.sh"
b_init
u_image unpack:test >/dev/null
digest=$(sbx inspect --json unpack:test | jq -r .digest)

# ---- copies (default) ----
sbx unpack --json --config "$T/config.json" unpack:test "$T/root" >"$T/out" 2>"$T/err" ||
    { cat "$T/err"; b_die "unpack failed"; }
python3 - "$T/out" "$digest" "$T/root" <<'PY' || b_die "--json result wrong: $(cat "$T/out")"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["image"] == "unpack:test" and o["digest"] == sys.argv[2] and o["dir"] == sys.argv[3], o
assert o["layers"] == 4, o
assert o["files"] > 250 and o["bytes"] > 1000000, o
assert o["linked"] == 0 and o["copied"] > 5, o
PY
for i in 1 2 3 4; do grep -q "\"id\":\"layer $i/4 sha256:" "$T/err" || { cat "$T/err"; b_die "no progress event for layer $i"; }; done
! grep -qv "^{" "$T/err" || { cat "$T/err"; b_die "--json: a stderr line that is not JSON"; }
b_pass "unpack --json reports image, digest, dir, layers, files, bytes; progress per layer on stderr"

u_check_tree "$T/root"
b_pass "copied tree equals the overlayfs view of the image (names, owners, modes, types, contents)"

r=$T/root
[[ ! -e $r/etc/gone ]] || b_die "whiteout not applied: /etc/gone exists"
[[ $(ls "$r/data/opq" | tr '\n' ' ') == "link new " ]] || b_die "opaque dir not applied: $(ls "$r/data/opq")"
[[ -f $r/olddir && $(cat "$r/olddir") == file ]] || b_die "/olddir should be the upper file"
[[ $(cat "$r/data/keep/k") == v2 ]] || b_die "upper layer's file does not win"
[[ ! -e $r/tmp/fifo ]] || b_die "deleted fifo came back"
[[ $(stat -c %u:%g:%a "$r/data/owned") == 1000:1000:640 ]] || b_die "owner/mode lost: $(stat -c %u:%g:%a "$r/data/owned")"
[[ $(stat -c %a "$r/data/run.sh") == 755 ]] || b_die "executable bit lost"
[[ $(chroot "$r" /data/run.sh) == ran ]] || b_die "the executable does not run in the tree"
[[ $(readlink "$r/data/opq/link") == ../keep/k && $(cat "$r/data/opq/link") == v2 ]] || b_die "symlink wrong"
[[ $(stat -c %a "$r/tmp") == 1777 && $(stat -c %a "$r/root") == 700 ]] || b_die "dir modes lost"
[[ $(stat -c '%F %t:%T' "$r/dev/null") == "character special file 1:3" ]] || b_die "device node lost: $(stat -c '%F %t:%T' "$r/dev/null")"
[[ $(stat -c %i "$r/data/h1") == $(stat -c %i "$r/data/h2") ]] || b_die "hardlink pair copied as two files"
[[ $(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.sbx-test").decode())' "$r/etc/xa") == val ]] ||
    b_die "xattr lost"
[[ $(stat -c %Y "$r/data/run.sh") == 0 ]] || b_die "mtime not kept: $(stat -c %Y "$r/data/run.sh")"
[[ $(stat -c %Y "$r/data") == 0 ]] || b_die "dir mtime not kept: $(stat -c %Y "$r/data")"
cache_ino=$(stat -c %i "$STORE"/unpacked/*/data/run.sh)
[[ $(stat -c %i "$r/data/run.sh") != "$cache_ino" ]] || b_die "a copy shares the cache's inode"
b_pass "whiteouts, opaque dir, owners, modes, symlink, device, hardlink, xattr, mtimes; copies are own inodes"

sbx inspect --config unpack:test >"$T/config.expected"
cmp -s "$T/config.json" "$T/config.expected" || b_die "--config did not write the image config's exact bytes"
b_pass "--config writes the image config"

# ---- --link ----
sbx unpack --link --json "$digest" "$T/linked" >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "unpack --link failed"; }
python3 -c 'import json,sys; o=json.load(open(sys.argv[1])); assert o["linked"] > 250 and o["copied"] == 0, o' "$T/out" ||
    b_die "--link did not link: $(cat "$T/out")"
u_check_tree "$T/linked"
[[ $(stat -c %i "$T/linked/data/run.sh") == "$cache_ino" ]] || b_die "--link does not share the cache's inode"
[[ $(stat -c %i "$T/linked/data/owned") == $(stat -c %i "$STORE"/unpacked/*/data/owned) ]] || b_die "--link: owned not shared"
b_pass "--link (by digest): same tree, files share inodes with the store cache"
sbx unpack --help | grep -q 'READ-ONLY' || b_die "--help does not say a --link tree is read-only"

# ---- lookups: a pulled ref's normalized name, an empty existing dir, a trailing slash ----
"$B_DRIVER" --seed "$STORE" "$T/bb-rootfs" docker.io/library/busybox:1 >/dev/null
mkdir "$T/empty"
sbx unpack busybox:1 "$T/empty/" >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "unpack by short ref into an empty dir failed"; }
[[ $(cat "$T/out") == "$T/empty/" && -x $T/empty/bin/busybox ]] || b_die "short ref not unpacked"
b_pass "a short ref finds the normalized name; an empty dir is filled"

# ---- refusals ----
mkdir "$T/full" && echo keep >"$T/full/mine"
if sbx unpack unpack:test "$T/full" >"$T/out" 2>"$T/err"; then b_die "unpack into a non-empty dir succeeded"; fi
grep -q "is not empty" "$T/err" || b_die "unclear error: $(cat "$T/err")"
[[ $(ls -A "$T/full") == mine && ! -s $T/out ]] || b_die "non-empty dir touched"
echo x >"$T/afile"
if sbx unpack unpack:test "$T/afile" 2>"$T/err"; then b_die "unpack over a file succeeded"; fi
grep -q "not a directory" "$T/err" || b_die "unclear error: $(cat "$T/err")"
if sbx unpack nosuch:image "$T/none" >"$T/out" 2>"$T/err"; then b_die "unknown image succeeded"; fi
[[ $(wc -l <"$T/err") == 1 ]] && grep -q "no such image in the store" "$T/err" && grep -q "sbx-image pull nosuch:image" "$T/err" ||
    b_die "unknown image error unclear: $(cat "$T/err")"
if sbx unpack "sha256:$(printf '%064d' 0)" "$T/none" 2>"$T/err"; then b_die "unknown digest succeeded"; fi
[[ ! -e $T/none ]] || b_die "a failed unpack left its dir"
left=$(find "$T" -maxdepth 1 -name '.*sbx-unpack*')
[[ -z $left ]] || b_die "temp dirs left: $left"
set +e; sbx unpack onlyone 2>/dev/null; rc=$?; set -e
((rc == 2)) || b_die "usage error should exit 2, got $rc"
b_pass "non-empty dir, file, unknown image and digest refused with one clear line; nothing left"
