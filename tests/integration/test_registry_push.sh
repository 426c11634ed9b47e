#!/bin/bash
# sbx-image push against the real docker-registry: a pulled gzip image is
# pushed with its own manifest (its layers stored as sent) and pulls back into
# an empty store with the same diff_ids, while a pulled plain-tar image gets a
# new manifest over the store's zstd layers; pushing again sends no blob (HEAD
# first); skopeo reads what was pushed; a pushed image keeps its digest
# when pushed again elsewhere; token auth asks for push scope, anonymous
# push is refused, and a refused push sets no tag; htpasswd push; a gzip
# push copied by skopeo and unpacked by umoci.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
reg_start r plain
reg_start tr token
reg_start hr htpasswd
fx_push r oci-multi=src/img:v1 oci-zstd=src/zst:v1 oci-tar=src/tar:v1 \
    oci-gzip-incomplete=src/odd:v1 oci-single=src/one:v1
R=$r_HOST

case_ "push a pulled gzip image: its layers stored as sent, its own manifest, every blob sent"
STORE=$T/store-a
ok pull "$R/src/img:v1"
ok push --json "$R/src/img:v1" "$R/dst/img:v2"
jq_is .blobs_pushed 4
jq_is .blobs_existing 0
jq_is .recompressed false
pushed=$(jq -r .digest "$T/out")
assert_eq "$pushed" "$(fx oci-multi .digest)" "the pushed manifest digest"
err_lacks "new manifest"

case_ "push again: HEAD finds every blob, none is sent; same digest"
ok push --json "$R/src/img:v1" "$R/dst/img:v2"
jq_is .blobs_pushed 0
jq_is .blobs_existing 4
jq_is .digest "$pushed"

case_ "to another repository of the same registry: every blob mounted, none sent"
ok push --json "$R/src/img:v1" "$R/other/img:v1"
jq_is .blobs_mounted 4
jq_is .blobs_pushed 0
jq_is .digest "$pushed"
skopeo inspect --tls-verify=false "docker://$R/other/img:v1" >/dev/null || fail "the mounted image does not read back"

case_ "what was pushed pulls back into an empty store with the same diff_ids"
STORE=$T/store-b
ok pull --json "$R/dst/img:v2"
jq_is .digest "$pushed"
got=$(jq -c '[.layers[].diff_id]' "$T/out")
want=$(jq -c '[.layers[].diff_id]' <<<"$(fx oci-multi '{layers: .layers}')")
assert_eq "$got" "$want" "diff_ids after push and pull"
jq -e '[.layers[].media_type] | all(. == "application/vnd.oci.image.layer.v1.tar+gzip")' "$T/out" >/dev/null ||
  fail "pushed layers are not the gzip ones: $(cat "$T/out")"
skopeo inspect --tls-verify=false --raw "docker://$R/dst/img:v2" | sha256sum | grep -q "${pushed#sha256:}" ||
  fail "skopeo reads another manifest"

case_ "an image pushed as it is stored keeps its digest"
ok push --json "$R/dst/img:v2" "$R/third/img:v3"
jq_is .recompressed false
jq_is .digest "$pushed"

case_ "--compression gzip of an image stored as gzip: its own manifest, nothing gzipped"
ok push --json --compression gzip "$R/dst/img:v2" "$R/gzsame/img:v1"
jq_is .recompressed false
jq_is .digest "$pushed"
jq_is .blobs_pushed 0

case_ "--compression gzip: deterministic gzip layers, a reader of gzip gets the same tree"
STORE=$T/store-z # zstd layers, as a build host's
ok pull "$R/src/zst:v1"
ok push --json --compression gzip "$R/src/zst:v1" "$R/gz/img:v1"
jq_is .recompressed true
gz1=$(jq -r .digest "$T/out")
ok push --json --compression gzip "$R/src/zst:v1" "$R/gz/img:v2"
jq_is .digest "$gz1"
jq_is .blobs_pushed 0
skopeo inspect --tls-verify=false --raw "docker://$R/gz/img:v1" |
  jq -e '[.layers[].mediaType] | all(. == "application/vnd.oci.image.layer.v1.tar+gzip")' >/dev/null ||
  fail "gzip push has other layer types"
STORE=$T/store-gz
ok pull --json "$R/gz/img:v1"
assert_eq "$(jq -c '[.layers[].diff_id]' "$T/out")" "$(fx oci-zstd '[.layers[].diff_id]' | jq -c .)" \
    "diff_ids of the gzip push"
sbx push --compression lz4 "$R/dst/img:v2" "$R/gz/img:v3"
assert_eq "$RC" 2 "exit status of a bad --compression"
err_has "zstd or gzip"
STORE=$T/store-b

case_ "token auth: push scope with --creds; anonymous push refused, no tag set"
fails push "$R/dst/img:v2" "$tr_HOST/private/pushed:v1"
err_has 'auth|denied|unauthori[sz]ed|credential'
STORE=$T/store-c
fails pull "$tr_HOST/private/pushed:v1" --creds "$TEST_USER:$TEST_PASS"
STORE=$T/store-b
ok push --creds "$TEST_USER:$TEST_PASS" "$R/dst/img:v2" "$tr_HOST/private/pushed:v1"
jq -se 'map(select((.scopes // []) | any(test("push")))) | length >= 1' "$tr_tok_DIR/token.log" >/dev/null ||
  fail "no token was asked for with push scope"
STORE=$T/store-c
ok pull --json --creds "$TEST_USER:$TEST_PASS" "$tr_HOST/private/pushed:v1"
jq_is .digest "$pushed"

case_ "htpasswd: push with --creds; without them refused, no tag set"
STORE=$T/store-b
fails push "$R/dst/img:v2" "$hr_HOST/team/img:v1"
err_has 'username and password.*none given'
! skopeo inspect --tls-verify=false --creds "$TEST_USER:$TEST_PASS" "docker://$hr_HOST/team/img:v1" \
  >/dev/null 2>&1 || fail "a refused push set the tag"
ok push --json --creds "$TEST_USER:$TEST_PASS" "$R/dst/img:v2" "$hr_HOST/team/img:v1"
jq_is .digest "$pushed"
STORE=$T/store-h
ok pull --json --creds "$TEST_USER:$TEST_PASS" "$hr_HOST/team/img:v1"
jq_is .digest "$pushed"

case_ "--compression gzip: skopeo copies it and umoci unpacks it"
skopeo copy -q --src-tls-verify=false "docker://$R/gz/img:v1" "oci:$T/gz-oci:v1" ||
  fail "skopeo cannot copy the gzip push"
umoci unpack --image "$T/gz-oci:v1" "$T/gz-bundle" >/dev/null 2>&1 || fail "umoci cannot unpack the gzip push"
[[ -x $T/gz-bundle/rootfs/bin/busybox ]] || fail "umoci's tree of the gzip push lacks bin/busybox"

case_ "an upload location on another origin never receives the credentials"
proxy_start p tr    # the registry, with the fault
proxy_start q tr    # another origin for the same registry: it logs what arrives
proxy_mode p "{\"mode\":\"upload_to\",\"target\":\"http://$q_HOST\",\"match\":\"/blobs/uploads/\",\"method\":\"POST\",\"count\":-1}"
STORE=$T/store-b
sbx push --creds "$TEST_USER:$TEST_PASS" "$R/dst/img:v2" "$p_HOST/private/elsewhere:v1"
jq -e 'select(.method == "PUT")' "$q_DIR/proxy.log" >/dev/null ||
  fail "no upload reached the other origin: $(cat "$q_DIR/proxy.log" 2>/dev/null | head -3)"
! jq -e 'select(.auth)' "$q_DIR/proxy.log" >/dev/null ||
  fail "Authorization reached the other origin: $(jq -c 'select(.auth)' "$q_DIR/proxy.log" | head -2)"

case_ "errors: an image not in the store, a bad destination"
fails push "$R/nothing/here:v1" "$R/dst/img:v9"
err_has "nothing/here"
fails push "$R/dst/img:v2" "Bad Dest!"
err_has "Bad Dest"

case_ "a pulled zstd image (another tool's) is stored as sent: pushed with its own digest"
STORE=$T/store-zst
ok pull "$R/src/zst:v1"
ok push --json "$R/src/zst:v1" "$R/copy/zst:v1"
jq_is .recompressed false
jq_is .digest "$(fx oci-zstd .digest)"
jq_is .blobs_pushed 3
skopeo inspect --tls-verify=false --raw "docker://$R/copy/zst:v1" | sha256sum | grep -q "$(fx oci-zstd .digest | cut -c8-)" ||
  fail "the copy's manifest is not the original's"

case_ "a gzip blob zlib refuses, stored first by one image, never leaves in another's push"
# (ISA-L, which the store reads with, accepts an incomplete Huffman code; zlib,
# gzip(1) and Go refuse it.  oci-single has the same layer as a standard gzip.)
STORE=$T/store-odd
ok pull "$R/src/odd:v1"
ok pull --json "$R/src/one:v1"
jq_is '.layers[0].present' true
ok push --json "$R/src/one:v1" "$R/copy/one:v1"
err_has "its stored gzip blob is one zlib refuses; stored again as zstd"
jq_is .recompressed true
skopeo copy -q --src-tls-verify=false "docker://$R/copy/one:v1" "oci:$T/one-oci:v1" ||
  fail "skopeo cannot copy the push"
m=$(jq -r '.manifests[0].digest' "$T/one-oci/index.json")
l=$(jq -r '.layers[0].digest' "$T/one-oci/blobs/sha256/${m#sha256:}")
got=$(zstd -dcq <"$T/one-oci/blobs/sha256/${l#sha256:}" | sha256sum | cut -d' ' -f1) # zlib for gzip
assert_eq "sha256:$got" "$(fx oci-single '.layers[0].diff_id')" "the pushed layer, read by zstd(1)"
[[ $(ls "$STORE"/layers/sha256/) == *.zst ]] || fail "the layer was not stored again as zstd"
fsck_clean

case_ "a pulled plain-tar image: the store compressed its layers, so a new manifest over them"
STORE=$T/store-tar
ok pull "$R/src/tar:v1"
ok push --json "$R/src/tar:v1" "$R/copy/tar:v1"
jq_is .recompressed true
tard=$(jq -r .digest "$T/out")
[[ $tard != "$(fx oci-tar .digest)" ]] || fail "a re-referenced push kept the plain-tar manifest digest"
err_has "does not describe its layers as pushed; pushed a new manifest over them \\($tard\\)"
STORE=$T/store-tar2
ok pull --json "$R/copy/tar:v1"
jq_is .digest "$tard"
jq -e '[.layers[].media_type] | all(. == "application/vnd.oci.image.layer.v1.tar+zstd")' "$T/out" >/dev/null ||
  fail "re-referenced layers are not zstd: $(cat "$T/out")"
t_pass
