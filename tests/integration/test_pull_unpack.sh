#!/bin/bash
# sbx-image pull --unpack: each layer extracted into the store's layer cache
# while it downloads.  Against the real docker-registry (and the fault
# proxy): the result is byte for byte what pull and then unpack give (the
# same diff_ids, the same stored layer files, the same cache trees: whiteouts,
# an opaque dir, hardlinks, a symlink and a 200 MB file); a later unpack
# extracts nothing again; a digest mismatch in the middle of a layer leaves
# no blob, no unpacked layer and no temp file; pulls killed at random points
# leave a store fsck finds clean and nothing unpacked that is not stored;
# layers the store already had are unpacked from it; unpack --pull and
# mount --pull pull what the store lacks the same way.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
t_need skopeo
reg_start r plain
proxy_start p r
export SBX_RETRY_MAX=2 SBX_RETRY_BASE_MS=50 SBX_STALL_TIMEOUT=5

# the image: two gzip layers; the second whites out a file, makes a dir
# opaque, and adds a hardlink
"$PY" - "$T/fx" <<'PY'
import os, sys
sys.path.insert(0, os.path.join(os.environ["SBX_SOURCE_DIR"], "tests/integration/lib"))
from layout import ti, layer, write_layout, DIR
import tarfile
block = os.urandom(4096)
big = block * (200 * 256)           # 200 MiB, compresses well and fast
def link(name, target, kind):
    m, _ = ti(name)
    m.type = kind
    m.linkname = target
    m.size = 0
    return m, b""
l1 = layer([ti("etc", DIR), ti("etc/motd", data=b"hello\n"), ti("etc/gone", data=b"bye\n"),
            ti("data", DIR), ti("data/big.bin", data=big),
            ti("opq", DIR), ti("opq/old", data=b"old\n"),
            link("etc/motd.link", "motd", tarfile.SYMTYPE)], level=1)
l2 = layer([ti("etc", DIR), ti("etc/.wh.gone"), ti("opq", DIR), ti("opq/.wh..wh..opq"),
            ti("opq/new", data=b"new\n"), ti("etc/hard-a", data=b"one inode\n"),
            link("etc/hard-b", "etc/hard-a", tarfile.LNKTYPE)], level=1)
write_layout(sys.argv[1], [l1, l2])
PY
skopeo copy -q --dest-tls-verify=false "oci:$T/fx:latest" "docker://$r_HOST/t/img:1"
REF=$r_HOST/t/img:1
PREF=$p_HOST/t/img:1

# a tree as text: every entry's type, mode, owner, size, link target, link
# count, xattrs and content hash (hardlinks show as equal hashes and nlink 2)
tree() {
    "$PY" - "$1" <<'PY'
import hashlib, os, stat, sys
root = sys.argv[1]
for d, dirs, files in os.walk(root):
    dirs.sort()
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        st = os.lstat(p)
        x = sorted((a, os.getxattr(p, a, follow_symlinks=False).hex())
                   for a in os.listxattr(p, follow_symlinks=False))
        h = ""
        if stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                h = hashlib.file_digest(f, "sha256").hexdigest() if hasattr(hashlib, "file_digest") \
                    else hashlib.sha256(f.read()).hexdigest()
        t = os.readlink(p) if stat.S_ISLNK(st.st_mode) else ""
        print(os.path.relpath(p, root), oct(st.st_mode), st.st_uid, st.st_gid, st.st_size,
              st.st_nlink if not stat.S_ISDIR(st.st_mode) else "-", st.st_rdev, t, x, h)
PY
}
layer_files() { (cd "$1/layers" && find . -type f -printf '%p\n' | sort | xargs sha256sum); }
cache_trees() {
    local d
    for d in $(ls "$1/unpacked" | sort); do echo "== $d"; tree "$1/unpacked/$d"; done
}
no_temp() { [[ -z $(ls -A "$STORE/tmp" 2>/dev/null) ]] || fail "temp files left: $(ls -A "$STORE/tmp")"; }

case_ "pull --unpack gives what pull and then unpack give"
STORE=$T/store-ref
ok pull --json "$REF"
ids=$(jq -c '[.layers[].diff_id]' "$T/out")
ok unpack "$REF" "$T/root-ref"
STORE=$T/store-pu
ok pull --json --unpack "$REF"
assert_eq "$(jq -c '[.layers[].diff_id]' "$T/out")" "$ids" "diff_ids"
assert_eq "$(ls "$STORE/unpacked" | wc -l)" 2 "layers unpacked by the pull"
assert_eq "$(layer_files "$STORE")" "$(layer_files "$T/store-ref")" "stored layer files"
cache_trees "$T/store-ref" >"$T/trees-ref"
cache_trees "$STORE" >"$T/trees-pu"
diff "$T/trees-ref" "$T/trees-pu" >"$T/trees.diff" || fail "unpacked trees differ: $(head -5 "$T/trees.diff")"
grep -q "opq .*trusted.overlay.opaque" "$T/trees-pu" || fail "no opaque dir in the trees"
grep -q "etc/gone 0o20000" "$T/trees-pu" || fail "no whiteout in the trees"
grep -q "etc/hard-b .* 2 " "$T/trees-pu" || fail "no hardlink in the trees"
no_temp
fsck_clean

case_ "the same image as zstd (kept as sent): the same trees, from the writer's own decompression"
# zstd layers, as a build host pushes them (through a layout: copied straight to the
# registry, skopeo would reuse the gzip blobs it finds there)
skopeo copy -q --dest-compress --dest-compress-format zstd "oci:$T/fx:latest" "oci:$T/fx-zst:latest"
skopeo copy -q --dest-tls-verify=false "oci:$T/fx-zst:latest" "docker://$r_HOST/t/zst:1"
STORE=$T/store-zst
ok pull --json --unpack "$r_HOST/t/zst:1"
assert_eq "$(jq -c '[.layers[].diff_id]' "$T/out")" "$ids" "diff_ids"
jq -e '[.layers[].media_type] | all(endswith("zstd"))' "$T/out" >/dev/null || fail "not zstd: $(cat "$T/out")"
cache_trees "$STORE" >"$T/trees-zst"
diff "$T/trees-ref" "$T/trees-zst" >"$T/trees.diff" || fail "unpacked trees differ: $(head -5 "$T/trees.diff")"
no_temp
fsck_clean
STORE=$T/store-pu

case_ "a later unpack extracts nothing again"
before=$(stat -c %i "$STORE/unpacked/"* | sort)
ok unpack "$REF" "$T/root-pu"
assert_eq "$(stat -c %i "$STORE/unpacked/"* | sort)" "$before" "cache dirs (inodes)"
diff <(tree "$T/root-ref") <(tree "$T/root-pu") >"$T/root.diff" || fail "merged trees differ: $(head -5 "$T/root.diff")"

case_ "layers the store had already are unpacked from it"
STORE=$T/store-had
ok pull "$REF"
[[ ! -d $STORE/unpacked ]] || assert_eq "$(ls "$STORE/unpacked" | wc -l)" 0 "unpacked by a plain pull"
ok pull --unpack "$REF"
cache_trees "$STORE" >"$T/trees-had"
diff "$T/trees-ref" "$T/trees-had" >/dev/null || fail "trees unpacked from the store differ"

case_ "unpack --pull and mount --pull of an image the store lacks: pulled unpacking, then used"
STORE=$T/store-up
fails unpack "$REF" "$T/root-nopull"
ok unpack --pull "$REF" "$T/root-up"
diff <(tree "$T/root-ref") <(tree "$T/root-up") >/dev/null || fail "unpack --pull gives another tree"
cache_trees "$STORE" >"$T/trees-up"
diff "$T/trees-ref" "$T/trees-up" >/dev/null || fail "unpack --pull's cache trees differ"
STORE=$T/store-mp
ok mount --json --pull "$REF" "$T/mnt"
[[ $(cat "$T/mnt/etc/motd") == hello ]] || fail "the mount --pull root lacks etc/motd"
[[ ! -e $T/mnt/etc/gone ]] || fail "a whited-out file shows in the mount"
ok umount "$T/mnt"
cache_trees "$STORE" >"$T/trees-mp"
diff "$T/trees-ref" "$T/trees-mp" >/dev/null || fail "mount --pull's cache trees differ"

case_ "a layer of two concatenated gzip members pulls whole (the diff_id checks it)"
"$PY" - "$T/fx2" <<'PY'
import gzip, os, sys
sys.path.insert(0, os.path.join(os.environ["SBX_SOURCE_DIR"], "tests/integration/lib"))
from layout import ti, layer, write_layout, DIR
raw, _ = layer([ti("etc", DIR), ti("etc/a", data=os.urandom(300000)), ti("etc/b", data=b"b\n" * 50000)])
cut = len(raw) // 3
write_layout(sys.argv[1], [(raw, gzip.compress(raw[:cut], mtime=0) + gzip.compress(raw[cut:], mtime=0))])
PY
skopeo copy -q --dest-tls-verify=false "oci:$T/fx2:latest" "docker://$r_HOST/t/two:1"
STORE=$T/store-two
ok pull --unpack "$r_HOST/t/two:1"
ok unpack "$r_HOST/t/two:1" "$T/root-two"
assert_eq "$(wc -c <"$T/root-two/etc/a")" 300000 "size of a file across the members"

case_ "a digest mismatch in the middle of the big layer: no blob, no unpacked layer, no temp file"
big=$(jq -r '.layers[0].digest' "$T/fx/blobs/sha256/$(jq -r '.manifests[0].digest' "$T/fx/index.json" | cut -d: -f2)")
STORE=$T/store-bad
proxy_mode p '{"mode":"corrupt","match":"/blobs/'"$big"'","count":-1}'
fails pull --unpack "$PREF"
err_has "digest|corrupt"
proxy_mode p '{"mode":"pass"}'
bighex=$(echo "$ids" | jq -r '.[0]' | cut -d: -f2)
[[ ! -e $STORE/unpacked/$bighex ]] || fail "the unverified layer was unpacked"
only_stored_unpacked() {
    local d
    for d in $(ls "$STORE/unpacked" 2>/dev/null); do
        compgen -G "$STORE/layers/sha256/$d.*" >/dev/null || fail "$1: layer $d unpacked but not stored"
    done
}
only_stored_unpacked "after the mismatch"
ok images --json
assert_eq "$(jq length "$T/out")" 0 "names after the failed pull"
! compgen -G "$STORE/layers/sha256/$bighex.*" >/dev/null || fail "the unverified layer was stored"
no_temp
fsck_clean

case_ "pulls killed at random points: fsck clean, nothing unpacked that is not stored"
STORE=$T/store-kill
# the big layer takes about 2 s to arrive; kills land in its download, its
# extraction, or the commits after
bsz=$(stat -c %s "$T/fx/blobs/sha256/${big#sha256:}")
proxy_mode p '{"mode":"slow","rate":'$((bsz / 2 + 1))',"match":"/blobs/","count":-1}'
for round in 1 2 3 4 5 6; do
    "$SBX_BIN" pull --unpack --store "$STORE" "$PREF" >/dev/null 2>&1 &
    pid=$!
    sleep "$((RANDOM % 3)).$((RANDOM % 10))"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    sbx fsck
    ((RC == 0)) || grep -q "no store" "$T/err" || fail "fsck after kill round $round: $(tail -2 "$T/err")"
    only_stored_unpacked "kill round $round"
done
proxy_mode p '{"mode":"pass"}'
ok pull --unpack "$PREF"
cache_trees "$STORE" >"$T/trees-kill"
diff "$T/trees-ref" "$T/trees-kill" >/dev/null || fail "trees after the kill rounds differ"
fsck_clean
t_pass
