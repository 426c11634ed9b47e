#!/bin/bash
# How sbx-image push uploads, through the fault proxy in front of the real
# docker-registry: blobs larger than --chunk-size go in PATCHes of that size
# (the rest with the closing PUT), each byte reaching the registry once; a
# chunk cut off on the way is resumed where the registry's upload stands; a
# session the registry dropped starts the blob again in a new one; a registry
# that refuses PATCH gets one PUT; OCI-Chunk-Min-Length raises the chunk size;
# --parallel uploads several blobs at once; a push killed in the middle and
# run again sends only what the registry lacks.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
reg_start r plain
proxy_start p r
export SBX_RETRY_MAX=4 SBX_RETRY_BASE_MS=50 SBX_STALL_TIMEOUT=5
# busybox and three layers of about 3 MB compressed each
FX=$T/fx
"$PY" "$HLIB/fixtures.py" bench "$FX" --mb 18 --layers 3 >/dev/null
fx_push r bench=src/big:v1
IMG=$r_HOST/src/big:v1
MiB=1048576
# a store of its own per case: one that pushed a blob to a repository of the
# registry mounts it from there instead of uploading it
fresh() { STORE=$T/store-$1; ok pull "$IMG"; }

# sums over the proxy log entries of one repository's upload requests
up() { proxy_reqs p "((.path // \"\") | startswith(\"/v2/$1/blobs/uploads/\")) and $2"; }
bytes_sent() { # bytes the registry accepted in PATCH and PUT bodies
    jq -s --arg p "/v2/$1/blobs/uploads/" '[.[] | select(((.path // "") | startswith($p)) and
        (.method == "PATCH" or .method == "PUT") and (.fault == null) and
        (.status == 202 or .status == 201)) | .body_len] | add // 0' "$p_DIR/proxy.log"
}
pulls_back() { # a fresh store pulls DEST with the digest push printed; skopeo copies it
    local st=$STORE want
    want=$(jq -r .digest "$T/out")
    STORE=$T/back-$1
    ok pull --json "$r_HOST/$1:v1"
    jq_is .digest "$want"
    STORE=$st
    skopeo copy -q --src-tls-verify=false "docker://$r_HOST/$1:v1" "oci:$T/copy-${1//\//-}:x" ||
        fail "skopeo cannot copy what was pushed to $1"
}

case_ "--chunk-size 1M: PATCHes of 1 MiB in order, the rest with the PUT, each byte once"
fresh c1
ok push --json --chunk-size 1M "$IMG" "$p_HOST/c1/big:v1"
jq_is .blobs_pushed 5
digest=$(jq -r .digest "$T/out")
total=$(jq -r .bytes_pushed "$T/out")
patches=$(up c1/big '.method == "PATCH"')
((patches >= 6)) || fail "expected at least 6 PATCHes of 1 MiB for three 3 MB layers, got $patches"
assert_eq "$(up c1/big '.method == "PATCH" and .body_len != '$MiB)" 0 "PATCHes not of 1 MiB"
# each PATCH of a blob starts where the last one ended
jq -s -e '[.[] | select(.method == "PATCH" and ((.path // "") | startswith("/v2/c1/")))
    | .content_range | split("-") | map(tonumber)] | all(.[0] % 1048576 == 0 and .[1] - .[0] == 1048575)' \
    "$p_DIR/proxy.log" >/dev/null || fail "a PATCH's Content-Range is not a 1 MiB step"
assert_eq "$(bytes_sent c1/big)" "$total" "bytes in PATCH and PUT bodies vs bytes_pushed"
pulls_back c1/big

case_ "default: blobs under 32 MiB go in one PUT each, and keep the manifest digest"
fresh c2
ok push --json "$IMG" "$p_HOST/c2/big:v1"
jq_is .digest "$digest"
assert_eq "$(up c2/big '.method == "PATCH"')" 0 "PATCHes with the default chunk size"
assert_eq "$(bytes_sent c2/big)" "$total" "bytes sent"

case_ "chunks cut off by a front end: sent again, each byte reaching the registry once"
proxy_mode p '{"mode":"cut_upload","fraction":0.5,"method":"PATCH","match":"/c3/big/blobs/uploads/","count":2}'
fresh c3
ok push --json --chunk-size 1M "$IMG" "$p_HOST/c3/big:v1"
jq_is .digest "$digest"
assert_eq "$(up c3/big '.fault == "cut_upload"')" 2 "chunks cut off"
assert_eq "$(bytes_sent c3/big)" "$total" "bytes the registry took (each once)"
assert_eq "$(up c3/big '.method == "POST"')" 5 "upload sessions (one per blob: resumed, not restarted)"
pulls_back c3/big

case_ "a chunk refused with 503: the push asks where the upload stands and goes on from there"
proxy_mode p '{"mode":"status","status":503,"method":"PATCH","match":"/c3b/big/blobs/uploads/","skip":2,"count":1}'
fresh c3b
ok push --json --parallel 1 --chunk-size 1M "$IMG" "$p_HOST/c3b/big:v1"
jq_is .digest "$digest"
assert_eq "$(up c3b/big '.fault == "status"')" 1 "chunks refused"
assert_eq "$(up c3b/big '.method == "GET" and .status == 204')" 1 "upload status asked"
assert_eq "$(bytes_sent c3b/big)" "$total" "bytes the registry took (each once)"
assert_eq "$(up c3b/big '.method == "POST"')" 5 "upload sessions (one per blob: resumed, not restarted)"
at=$(grep -oE "resuming at byte [0-9]+ of" "$T/err" | grep -oE "[0-9]+") || fail "no resume said: $(cat "$T/err")"
((at > 0 && at % MiB == 0)) || fail "resumed at byte $at, not after a chunk the registry holds"
pulls_back c3b/big
proxy_mode p '{"mode":"pass"}'

case_ "a failed PUT of a small blob, its empty session's status saying Range: 0--1: sent again"
# (what zot and others answer for an empty session; distribution says 0-0)
proxy_mode p '{"mode":"status","status":503,"method":"PUT","match":"/c3c/big/blobs/uploads/","count":1,"headers_on":{"GET":{"Range":"0--1"}}}'
fresh c3c
ok push --json --parallel 1 "$IMG" "$p_HOST/c3c/big:v1"
jq_is .digest "$digest"
assert_eq "$(up c3c/big '.method == "GET" and .status == 204')" 1 "upload status asked"
err_has "resuming at byte 0 of"
proxy_mode p '{"mode":"pass"}'

case_ "an answer lost after the registry took the chunk: its session is gone, the blob starts again"
proxy_mode p '{"mode":"cut_upload","forward":true,"method":"PATCH","match":"/c4/big/blobs/uploads/","count":1}'
fresh c4
ok push --json --chunk-size 1M "$IMG" "$p_HOST/c4/big:v1"
jq_is .digest "$digest"
assert_eq "$(up c4/big '.method == "POST"')" 6 "upload sessions (one blob started twice)"
err_has "from the start"
pulls_back c4/big
proxy_mode p '{"mode":"pass"}'

case_ "the answer to a closing PUT lost (the blob stored): a HEAD finds it, nothing sent again"
proxy_mode p '{"mode":"cut_upload","forward":true,"method":"PUT","match":"/c4b/big/blobs/uploads/","count":1}'
fresh c4b
ok push --json --parallel 1 "$IMG" "$p_HOST/c4b/big:v1"
jq_is .digest "$digest"
assert_eq "$(up c4b/big '.method == "POST"')" 5 "upload sessions (none opened again)"
err_lacks "from the start"
pulls_back c4b/big
proxy_mode p '{"mode":"pass"}'

case_ "a registry that refuses PATCH: each blob goes in one PUT"
proxy_mode p '{"mode":"status","status":405,"method":"PATCH","match":"/c5/big/blobs/uploads/","count":-1}'
fresh c5
ok push --json --chunk-size 1M "$IMG" "$p_HOST/c5/big:v1"
jq_is .digest "$digest"
# the first 405 ends chunking for the upload thread that got it (two threads)
patches=$(up c5/big '.method == "PATCH"')
((patches >= 1 && patches <= 2)) || fail "$patches PATCHes tried, expected one per upload thread"
assert_eq "$(up c5/big '.method == "GET"')" 0 "status requests (a refused PATCH took nothing)"
assert_eq "$(bytes_sent c5/big)" "$total" "bytes in PUT bodies"
pulls_back c5/big
proxy_mode p '{"mode":"pass"}'

case_ "OCI-Chunk-Min-Length: chunks no smaller than the registry asks"
proxy_mode p '{"mode":"delay","delay":0,"headers":{"OCI-Chunk-Min-Length":"2097152"},"method":"POST","match":"/c6/big/blobs/uploads/","count":-1}'
fresh c6
ok push --json --chunk-size 1M "$IMG" "$p_HOST/c6/big:v1"
(($(up c6/big '.method == "PATCH"') >= 3)) || fail "no chunked upload"
assert_eq "$(up c6/big '.method == "PATCH" and .body_len != 2097152')" 0 "PATCHes not of 2 MiB"
assert_eq "$(bytes_sent c6/big)" "$total" "bytes sent"
proxy_mode p '{"mode":"pass"}'

overlap() { # did two of the repository's requests overlap in time?
    jq -s --arg p "/v2/$1/" '[.[] | select((.path // "") | startswith($p))] | sort_by(.t)
        | [range(1; length) as $i | .[$i].t < .[$i - 1].t_end] | any' "$p_DIR/proxy.log"
}
case_ "--parallel 3 uploads blobs at once; --parallel 1 one after another"
proxy_mode p '{"mode":"delay","delay":0.4,"method":"PUT","match":"/c7[ab]/big/blobs/uploads/","count":-1}'
fresh c7a
ok push --json --parallel 1 "$IMG" "$p_HOST/c7a/big:v1"
assert_eq "$(overlap c7a/big)" false "requests overlapping with --parallel 1"
fresh c7b
ok push --json --parallel 3 "$IMG" "$p_HOST/c7b/big:v1"
jq_is .digest "$digest"
assert_eq "$(overlap c7b/big)" true "requests overlapping with --parallel 3"
pulls_back c7b/big
proxy_mode p '{"mode":"pass"}'

case_ "a push killed in the middle, run again: only what the registry lacks is sent"
fresh c8
proxy_mode p '{"mode":"delay","delay":1,"method":"PUT","match":"/c8/big/blobs/uploads/","count":-1}'
"$SBX_BIN" push --store "$STORE" --parallel 1 "$IMG" "$p_HOST/c8/big:v1" >"$T/kill.out" 2>&1 &
pid=$!
for _ in $(seq 100); do
    (($(up c8/big '.method == "PUT" and .status == 201') >= 2)) && break
    sleep 0.1
done
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
sleep 2 # a PUT the proxy held may still reach the registry
done_before=$(up c8/big '.method == "PUT" and .status == 201')
((done_before >= 2 && done_before < 5)) || fail "killed after $done_before of 5 blobs"
proxy_mode p '{"mode":"pass"}'
ok push --json "$IMG" "$p_HOST/c8/big:v1"
jq_is .digest "$digest"
jq_is .blobs_existing "$done_before"
jq_is .blobs_pushed "$((5 - done_before))"
pulls_back c8/big

case_ "bad --chunk-size and --parallel are usage errors"
sbx push --chunk-size 10K "$IMG" "$p_HOST/c9/big:v1"
assert_eq "$RC" 2 "exit status of a small --chunk-size"
err_has "chunk-size"
sbx push --chunk-size lots "$IMG" "$p_HOST/c9/big:v1"
assert_eq "$RC" 2 "exit status of a bad --chunk-size"
sbx push --parallel 9 "$IMG" "$p_HOST/c9/big:v1"
assert_eq "$RC" 2 "exit status of --parallel 9"
err_has "1 to 8"

t_pass
