#!/bin/bash
# sbx-image load: images skopeo wrote as an OCI layout, an OCI archive and a
# docker-archive come into the store checked (the layout's manifest digest
# kept, a docker archive's layers the same diff_ids) and unpack; a layer
# with one byte changed, or a source without a name, is refused and the
# store gets nothing.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
command -v skopeo >/dev/null || t_die "missing skopeo (scripts/deps.sh)"
want=$(fx oci-multi .digest)
want_ids=$(fx oci-multi '[.layers[].diff_id] | join(",")')
skopeo copy -q "oci:$FX:oci-multi" "oci:$T/layout:v1"
skopeo copy -q "oci:$FX:oci-multi" "oci-archive:$T/oci.tar:v1"
skopeo copy -q "oci:$FX:oci-multi" "docker-archive:$T/docker.tar:img/app:1"
layout_digest=$(jq -r '.manifests[0].digest' "$T/layout/index.json")

case_ "an OCI layout: the manifest kept byte for byte, named by the layout's ref name"
STORE=$T/store-a
ok load --json --tag img/layout:1 "$T/layout"
jq_is .digest "$layout_digest"
jq_is .recompressed false
jq_is .layers 3
ok unpack img/layout:1 "$T/root-a"
[[ -x $T/root-a/bin/busybox ]] || fail "the loaded image does not unpack to its files"
# its gzip layers are stored as they are, so the image keeps its digest on the way out
for i in 0 1 2; do
    d=$(fx oci-multi ".layers[$i].digest")
    cmp -s "$STORE/layers/sha256/$(fx oci-multi ".layers[$i].diff_id" | cut -d: -f2).gz" \
        "$T/layout/blobs/sha256/${d#sha256:}" || fail "layer $i is not stored as the layout's gzip blob"
done
ok export --json img/layout:1 "$T/out-a"
jq_is .recompressed false
jq_is .digest "$layout_digest"
fsck_clean

case_ "an OCI archive"
STORE=$T/store-b
ok load --json --tag img/archive:1 "$T/oci.tar"
jq_is .digest "$layout_digest"
[[ -z $(ls "$STORE/tmp") ]] || fail "the extracted archive was left in tmp/"

case_ "a docker-archive: named by RepoTags, an OCI manifest made, the same diff_ids"
STORE=$T/store-c
ok load --json "$T/docker.tar"
jq_is .name docker.io/img/app:1
jq_is .recompressed true
ok inspect --json docker.io/img/app:1
got_ids=$(jq -r '[.layers[].diff_id] | join(",")' "$T/out")
assert_eq "$got_ids" "$want_ids" "diff_ids"

case_ "a layer with one byte changed: refused, nothing stored"
cp -a "$T/layout" "$T/bad"
blob=$(jq -r '.layers[1].digest' "$T/bad/blobs/sha256/${layout_digest#sha256:}")
f=$T/bad/blobs/sha256/${blob#sha256:}
chmod u+w "$f"
printf '\x00' | dd of="$f" bs=1 seek=100 conv=notrunc status=none
STORE=$T/store-d
fails load --tag img/bad:1 "$T/bad"
err_has "does not match"
ok images --json
assert_eq "$(cat "$T/out")" "[]" "names after a refused load"
[[ -z $(ls "$STORE/layers/sha256" 2>/dev/null) ]] || fail "a refused load stored layers"

case_ "a gzip layer padded with zeros after its last member: loaded, stored from its tar"
# (libarchive reads past the padding; the store keeps only clean gzip as it is)
cp -a "$T/layout" "$T/pad"
chmod -R u+w "$T/pad"
"$PY" - "$T/pad" <<'PY'
import hashlib, json, os, sys
root = sys.argv[1]
def blob(d): return os.path.join(root, "blobs", "sha256", d.split(":")[1])
def put(b):
    d = "sha256:" + hashlib.sha256(b).hexdigest()
    open(blob(d), "wb").write(b)
    return d, len(b)
idx = json.load(open(os.path.join(root, "index.json")))
man = json.load(open(blob(idx["manifests"][0]["digest"])))
layer = open(blob(man["layers"][0]["digest"]), "rb").read() + b"\0" * 512
man["layers"][0]["digest"], man["layers"][0]["size"] = put(layer)
idx["manifests"][0]["digest"], idx["manifests"][0]["size"] = put(json.dumps(man).encode())
json.dump(idx, open(os.path.join(root, "index.json"), "w"))
PY
STORE=$T/store-pad
ok load --json --tag img/pad:1 "$T/pad"
jq_is .digest "$(jq -r '.manifests[0].digest' "$T/pad/index.json")"
err_has "layer 1/3: not stored as it is \\(.*bytes after the last member.*\\); storing its tar"
ok unpack img/pad:1 "$T/root-pad"
[[ -x $T/root-pad/bin/busybox ]] || fail "the padded image does not unpack to its files"
fsck_clean

case_ "a layer that expands past the decompression cap: refused, nothing stored"
STORE=$T/store-e
# every layer expands past once the cap is its own compressed size
SBX_EXPANSION_FLOOR=0 SBX_MAX_EXPANSION=1 fails load --tag img/bomb:1 "$T/layout"
err_has "expands past"
ok images --json
assert_eq "$(cat "$T/out")" "[]" "names after a refused load"
[[ -z $(ls "$STORE/layers/sha256" 2>/dev/null) ]] || fail "a refused load stored layers"
ok load --tag img/bomb:1 "$T/layout"

case_ "what buildah writes: an OCI layout, an OCI archive and a docker-archive"
t_need buildah
mkdir -p "${XDG_RUNTIME_DIR:-$T/xdg-run}" "$DOCKER_CONFIG"
[[ -s $DOCKER_CONFIG/config.json ]] || echo '{"auths": {}}' >"$DOCKER_CONFIG/config.json"
BAH=(buildah --root "$T/bah-root" --runroot "$T/bah-run" --storage-driver vfs)
c=$("${BAH[@]}" from scratch)
"${BAH[@]}" copy "$c" /bin/busybox /bin/busybox >/dev/null
printf 'made by buildah\n' >"$T/note"
"${BAH[@]}" copy "$c" "$T/note" /etc/note >/dev/null
"${BAH[@]}" config --cmd /bin/busybox --env FROM=buildah "$c"
"${BAH[@]}" commit -q --format oci "$c" bah/img:1 >/dev/null
"${BAH[@]}" push -q bah/img:1 "oci:$T/bah-layout:v1"
"${BAH[@]}" push -q bah/img:1 "oci-archive:$T/bah-oci.tar:v1"
"${BAH[@]}" push -q bah/img:1 "docker-archive:$T/bah-docker.tar:bah/img:1"
bah_digest=$(jq -r '.manifests[0].digest' "$T/bah-layout/index.json")
n=0
for src in bah-layout bah-oci.tar bah-docker.tar; do
    n=$((n + 1))
    STORE=$T/store-bah$n
    ok load --json --tag "bah/loaded:$n" "$T/$src"
    [[ $src == bah-docker.tar ]] || jq_is .digest "$bah_digest"
    ok unpack "bah/loaded:$n" "$T/bah-root$n"
    assert_eq "$(cat "$T/bah-root$n/etc/note")" "made by buildah" "a file buildah copied ($src)"
    [[ -x $T/bah-root$n/bin/busybox ]] || fail "busybox missing from what buildah wrote ($src)"
    ok inspect --config "bah/loaded:$n"
    jq -e '.config.Env | index("FROM=buildah")' "$T/out" >/dev/null ||
        fail "the config buildah wrote is not the loaded one's ($src): $(head -c 300 "$T/out")"
done
"${BAH[@]}" rm --all >/dev/null 2>&1 || true

case_ "no name anywhere: --tag is asked for"
jq 'del(.manifests[0].annotations)' "$T/layout/index.json" >"$T/idx" && cp -a "$T/layout" "$T/noname" &&
  cp "$T/idx" "$T/noname/index.json"
fails load "$T/noname"
err_has "--tag"
fails load "$T/nothing-here"
err_has "nothing-here"
t_pass
