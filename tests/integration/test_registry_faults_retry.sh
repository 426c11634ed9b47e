#!/bin/bash
# Transient faults between sbx-image and the registry, injected by the fault
# proxy: 429 with Retry-After, 500, a connection reset in the middle of a blob
# (stalled bodies: test_registry_faults_stall.sh).  Each case ends pulled and correct (digests and diff_ids as
# built, fsck clean) or, when the fault never clears, with a clear error within
# the retry bound.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
reg_start r plain
proxy_start p r
fx_push r oci-multi=test/img:v1 oci-single=test/one:v1 oci-zstd=test/zst:v1 \
    oci-zstd-nocheck=test/zstnc:v1
REF=$p_HOST/test/img:v1
export SBX_RETRY_MAX=3 SBX_RETRY_BASE_MS=50 SBX_STALL_TIMEOUT=2
BIG=$(fx oci-multi '.layers[0].digest')     # busybox, about 1 MB gzip
N=0
fresh() { N=$((N + 1)); STORE=$T/store-$N; proxy_mode p '{"mode":"pass"}'; }
pulled_ok() { check_pulled oci-multi; fsck_clean; }
blob_reqs() { proxy_reqs p ".method == \"GET\" and (.path | endswith(\"$BIG\")) $1"; }

case_ "429 with Retry-After on a blob: waits, then pulls"
fresh
proxy_mode p '{"mode":"status","status":429,"retry_after":"2","count":1,"match":"/blobs/'"$BIG"'"}'
ok pull --json "$REF"
pulled_ok
# the retry came no sooner than Retry-After said
gap=$(jq -s --arg b "$BIG" '[.[] | select(.method == "GET" and (.path | endswith($b)))] | .[-1].t - .[-2].t' \
    "$p_DIR/proxy.log")
jq -n --argjson g "$gap" '$g >= 1.9' | grep -q true || fail "retried after ${gap}s despite Retry-After: 2"

case_ "503 with Retry-After as an HTTP-date: waits until then, pulls"
fresh
proxy_mode p '{"mode":"status","status":503,"retry_after_date":3,"count":1,"match":"/blobs/'"$BIG"'"}'
ok pull --json "$REF"
pulled_ok
gap=$(jq -s --arg b "$BIG" '[.[] | select(.method == "GET" and (.path | endswith($b)))] | .[-1].t - .[-2].t' \
    "$p_DIR/proxy.log")
# the date has one-second resolution: 3 s ahead means at least 2 s of wait
jq -n --argjson g "$gap" '$g >= 1.9' | grep -q true || fail "retried after ${gap}s despite a Retry-After date 3 s ahead"

case_ "Retry-After far beyond the bound: a clear error at once, no hour-long wait"
fresh
proxy_mode p '{"mode":"status","status":429,"retry_after":"3600","count":-1,"match":"/blobs/'"$BIG"'"}'
start=$(date +%s)
fails pull "$REF"
err_has 'retry'
err_has '3600|429'
(($(date +%s) - start < 20)) || fail "waited on a Retry-After of an hour"

case_ "429 on the manifest: waits, then pulls"
fresh
proxy_mode p '{"mode":"status","status":429,"retry_after":"1","count":1,"match":"/manifests/","method":"*"}'
ok pull --json "$REF"
pulled_ok

case_ "500 twice on a blob: retried, pulled"
fresh
proxy_mode p '{"mode":"status","status":500,"count":2,"match":"/blobs/'"$BIG"'"}'
ok pull --json "$REF"
pulled_ok

case_ "500 that never clears: a clear error after a bounded number of attempts"
fresh
before=$(blob_reqs "")
proxy_mode p '{"mode":"status","status":500,"count":-1,"match":"/blobs/'"$BIG"'"}'
fails pull "$REF"
err_has '500|server error|internal'
err_has "$p_HOST/test/img"
tries=$(( $(blob_reqs "") - before ))
((tries >= 2 && tries <= SBX_RETRY_MAX + 1)) || fail "$tries attempts with SBX_RETRY_MAX=$SBX_RETRY_MAX"
fsck_clean

case_ "429 that never clears: a clear error"
fresh
proxy_mode p '{"mode":"status","status":429,"retry_after":"1","count":-1,"match":"/blobs/'"$BIG"'"}'
fails pull "$REF"
err_has '429|too many|rate'

case_ "connection reset in the middle of a blob: resumed with Range"
fresh
proxy_mode p '{"mode":"reset","fraction":0.5,"match":"/blobs/'"$BIG"'"}'
ok pull --json "$REF"
pulled_ok
sent=$(jq -s --arg b "$BIG" 'map(select(.fault == "reset" and (.path | endswith($b)))) | last | .sent' \
    "$p_DIR/proxy.log")
# the next request for that blob asks for the rest, from a point the client had
rng=$(jq -rs --arg b "$BIG" '[.[] | select(.method == "GET" and (.path | endswith($b)))] | last | .range' \
    "$p_DIR/proxy.log")
[[ $rng =~ ^bytes=([0-9]+)- ]] || fail "no Range request after the reset (got '$rng')"
from=${BASH_REMATCH[1]}
((from > 0 && from <= sent)) || fail "resumed from $from, but only $sent bytes had been sent"

case_ "reset, then the server ignores Range (200, whole body): restarted or refused, never spliced"
fresh
proxy_mode p '{"mode":"reset","fraction":0.5,"on_range":"ignore","match":"/blobs/'"$BIG"'"}'
sbx pull --json "$REF"
if ((RC == 0)); then pulled_ok; else ((RC == 1)) || fail "exit $RC"; err_has 'range|206|resum'; fi
(($(proxy_reqs p '.on_range == "ignore"') >= 1)) || fail "the client never resumed with Range"
fsck_clean

case_ "reset, then a 206 that starts at byte 0 instead: restarted or refused, never spliced"
fresh
proxy_mode p '{"mode":"reset","fraction":0.5,"on_range":"misalign","match":"/blobs/'"$BIG"'"}'
sbx pull --json "$REF"
if ((RC == 0)); then pulled_ok; else ((RC == 1)) || fail "exit $RC"; err_has 'range|206|resum'; fi
(($(proxy_reqs p '.on_range == "misalign"') >= 1)) || fail "the client never resumed with Range"
fsck_clean

case_ "reset, then a server that caps each range (206s shorter than asked): asked again until whole"
fresh
proxy_mode p '{"mode":"reset","fraction":0.5,"on_range":"cap","cap":100000,"match":"/blobs/'"$BIG"'"}'
ok pull --json "$REF"
pulled_ok
(($(proxy_reqs p '.on_range == "cap"') >= 3)) || fail "fewer capped range answers than the rest needs"

case_ "connection reset twice: still pulled"
fresh
proxy_mode p '{"mode":"reset","fraction":0.3,"count":2,"match":"/blobs/'"$BIG"'"}'
ok pull --json "$REF"
pulled_ok

case_ "zstd layers reset mid-blob and resumed with Range: kept as sent, or recompressed, whole"
for img in oci-zstd oci-zstd-nocheck; do
    for on_range in none ignore; do
        fresh
        L=$(fx $img '.layers[0].digest')
        proxy_mode p '{"mode":"reset","fraction":0.5,"on_range":"'"$on_range"'","match":"/blobs/'"$L"'"}'
        repo=zst; [[ $img == oci-zstd-nocheck ]] && repo=zstnc
        ok pull --json "$p_HOST/test/$repo:v1"
        check_pulled $img
        fsck_clean
        diff_id=$(fx $img '.layers[0].diff_id')
        file=$STORE/layers/sha256/${diff_id#sha256:}.zst
        rec=$("$SBX_BUILD_DIR/tests/sbx_store_tool" "$STORE" layer-info "$diff_id" | cut -d' ' -f4)
        assert_eq "$rec" "sha256:$(sha256sum <"$file" | cut -d' ' -f1)" "$img ($on_range): recorded digest"
        if [[ $img == oci-zstd ]]; then
            cmp -s "$file" "$FX/blobs/sha256/${L#sha256:}" || fail "$img ($on_range): not stored as sent"
        fi
    done
done
(($(proxy_reqs p '.on_range == "ignore"') >= 1)) || fail "no resume met a server ignoring Range"

case_ "the store is not left holding a partial blob"
ok images
proxy_mode p '{"mode":"pass"}'
ok pull --json "$REF"
pulled_ok

t_pass
