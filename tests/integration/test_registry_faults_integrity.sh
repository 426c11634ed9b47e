#!/bin/bash
# Faults that test trust rather than patience: wrong bytes in a blob, a
# tampered manifest, an oversized manifest, and blob GETs redirected to another
# host (which must not receive the Authorization header).  A wrong digest never
# reaches the store: nothing in it mentions the digest of the bytes the proxy
# actually sent, no name is set, fsck stays clean.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
reg_start r plain
reg_start tr token
proxy_start p r
proxy_start tp tr
blobsrv_start cdn
fx_push r oci-multi=test/img:v1 oci-index=test/multi:v1 oci-zstd=test/zst:v1 \
    oci-zstd-skip=test/zskip:v1
fx_push tr oci-multi=private/img:v1
REF=$p_HOST/test/img:v1
export SBX_RETRY_MAX=3 SBX_RETRY_BASE_MS=50 SBX_STALL_TIMEOUT=5
L1=$(fx oci-multi '.layers[1].digest')
N=0
fresh() {
    N=$((N + 1)); STORE=$T/store-$N
    proxy_mode p '{"mode":"pass"}'; proxy_mode tp '{"mode":"pass"}'
}
not_named() {
    ok images
    ! grep -q "$1" "$T/out" || fail "the store names '$1' after a failed pull"
}
last_sent_digest() {
    jq -rs --arg m "$1" 'map(select(.fault == $m)) | last | .sha256' "$p_DIR/proxy.log"
}

# corrupt_refused REPO LAYER WHY: with one byte of LAYER flipped on every
# GET, a pull of test/REPO:v1 fails naming the ref and the layer (and WHY,
# an ERE), and nothing of the bytes sent is stored or named.
corrupt_refused() {
    local repo=$1 layer=$2 why=$3 bad
    fresh
    proxy_mode p '{"mode":"corrupt","count":-1,"match":"/blobs/'"$layer"'"}'
    fails pull "$p_HOST/test/$repo:v1"
    err_has "$why"
    err_has "$p_HOST/test/$repo"
    err_has "${layer:7:12}"       # names the layer that failed
    bad=$(last_sent_digest corrupt)
    [[ $bad == sha256:* ]] || fail "proxy did not corrupt anything"
    store_lacks "$bad"
    not_named "test/$repo"
    fsck_clean
}

case_ "wrong bytes in a layer, every time: digest error, nothing stored"
corrupt_refused img "$L1" 'digest|mismatch|checksum|corrupt'

case_ "wrong bytes in a zstd layer (hashed by the store's writer), every time: refused, nothing stored"
corrupt_refused zst "$(fx oci-zstd '.layers[1].digest')" 'digest|mismatch|checksum|corrupt'

case_ "a zstd layer whose changed byte still decodes (in a skippable frame): the digest refuses it"
S1=$(fx oci-zstd-skip '.layers[0].digest')
corrupt_refused zskip "$S1" "${S1:7:12}.*(digest|mismatch)"
fresh
ok pull "$p_HOST/test/zskip:v1"    # and untouched, it is stored as sent
diff_id=$(fx oci-zstd-skip '.layers[0].diff_id')
cmp -s "$STORE/layers/sha256/${diff_id#sha256:}.zst" "$FX/blobs/sha256/${S1#sha256:}" ||
    fail "a zstd layer with a skippable frame is not stored as sent"
fsck_clean
ok unpack "$p_HOST/test/zskip:v1" "$T/zskip-root"
assert_eq "$(cat "$T/zskip-root/app/hello.txt")" "hello from the second layer" "a file of the kept layer"

case_ "wrong bytes once: retried and correct, or a clear error; never stored"
fresh
proxy_mode p '{"mode":"corrupt","count":1,"match":"/blobs/'"$L1"'"}'
sbx pull --json "$REF"
if ((RC == 0)); then
    check_pulled oci-multi
else
    ((RC == 1)) || fail "exit $RC"
    err_has 'digest|mismatch|checksum|corrupt'
fi
store_lacks "$(last_sent_digest corrupt)"
fsck_clean

case_ "wrong bytes in the config blob: refused"
fresh
proxy_mode p '{"mode":"corrupt","count":-1,"match":"/blobs/'"$(fx oci-multi .config)"'"}'
fails pull "$REF"
err_has 'digest|mismatch|checksum|corrupt'
store_lacks "$(last_sent_digest corrupt)"
not_named test/img

case_ "a tampered manifest (body differs from Docker-Content-Digest): refused"
fresh
proxy_mode p '{"mode":"tamper","count":-1,"match":"/manifests/"}'
fails pull "$REF"
err_has 'digest|mismatch'
store_lacks "$(last_sent_digest tamper)"
not_named test/img
fails resolve --platform linux/arm64 "$p_HOST/test/multi:v1"
err_has 'digest|mismatch'

case_ "a tampered manifest under a pinned digest: refused"
fresh
proxy_mode p '{"mode":"tamper","count":-1,"match":"/manifests/"}'
fails pull "$p_HOST/test/img@$(fx oci-multi .digest)"
err_has 'digest|mismatch'
store_lacks "$(last_sent_digest tamper)"

case_ "a manifest that claims 1 GiB: refused before it is read"
fresh
proxy_mode p '{"mode":"huge","count":-1,"match":"/manifests/"}'
start=$(date +%s)
fails pull "$REF"
err_has 'large|limit|size|exceed|too big'
(($(date +%s) - start < 20)) || fail "took too long to refuse an oversized manifest"

case_ "a manifest streamed without a length that never ends: cut at the limit"
fresh
proxy_mode p '{"mode":"huge","chunked":true,"count":-1,"match":"/manifests/"}'
fails pull "$REF"
err_has 'large|limit|size|exceed|too big'
sent=$(jq -s 'map(select(.fault == "huge")) | last | .sent' "$p_DIR/proxy.log")
((sent < 200 * 1024 * 1024)) || fail "the client read $sent bytes of a runaway manifest"

case_ "blob GETs redirected to another host: followed, pulled"
fresh
proxy_mode p "{\"mode\":\"redirect\",\"target\":\"$cdn_URL\",\"count\":-1}"
ok pull --json "$REF"
check_pulled oci-multi
fsck_clean
n=$(jq -s 'map(select(.path | startswith("/blobs/"))) | length' "$cdn_DIR/blobs.log")
((n >= 4)) || fail "only $n blob requests reached the redirect target"

case_ "redirect from a token-auth registry: the other host never sees Authorization"
fresh
: >"$cdn_DIR/blobs.log"
proxy_mode tp "{\"mode\":\"redirect\",\"target\":\"$cdn_URL\",\"count\":-1}"
ok pull --json --creds "$TEST_USER:$TEST_PASS" "$tp_HOST/private/img:v1"
check_pulled oci-multi
# the registry side got the bearer token, the blob host none
authed=$(proxy_reqs tp '.auth == true and (.path | test("/blobs/"))')
((authed >= 1)) || fail "the client sent no Authorization to the registry for blobs"
jq -se 'length >= 4 and all(.auth == false)' "$cdn_DIR/blobs.log" >/dev/null ||
    fail "Authorization reached the redirect target: $(jq -c 'select(.auth)' "$cdn_DIR/blobs.log" | head -2)"
fsck_clean
no_secrets

case_ "a redirect to a host that lacks the blob: a clear error"
fresh
proxy_mode p "{\"mode\":\"redirect\",\"target\":\"$cdn_URL/nowhere\",\"count\":-1}"
fails pull "$REF"
err_has '404|not found|status'
not_named test/img
fsck_clean

t_pass
