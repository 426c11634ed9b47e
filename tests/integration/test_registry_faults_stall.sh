#!/bin/bash
# Stalled transfers, injected by the fault proxy: a blob body that stops
# halfway and stays silent.  The client abandons it after SBX_STALL_TIMEOUT
# seconds without progress, retries from where it stopped, and either ends
# pulled and correct or, when every attempt stalls, with a clear timeout error
# and an intact store.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
reg_start r plain
proxy_start p r
fx_push r oci-multi=test/img:v1
REF=$p_HOST/test/img:v1
export SBX_RETRY_MAX=2 SBX_RETRY_BASE_MS=50 SBX_STALL_TIMEOUT=2
BIG=$(fx oci-multi '.layers[0].digest')     # busybox, about 1 MB gzip
N=0
fresh() { N=$((N + 1)); STORE=$T/store-$N; proxy_mode p '{"mode":"pass"}'; }
pulled_ok() { check_pulled oci-multi; fsck_clean; }

case_ "a stalled body: abandoned after SBX_STALL_TIMEOUT, retried, pulled"
fresh
proxy_mode p '{"mode":"stall","fraction":0.4,"stall":60,"match":"/blobs/'"$BIG"'"}'
start=$(date +%s)
ok pull --json "$REF"
pulled_ok
(($(date +%s) - start < 30)) || fail "a stall of 60 s was not cut short by SBX_STALL_TIMEOUT=2"
# layers download at once: the other layers were fetched while this one hung
others=$(jq -s --arg b "$BIG" '
    (map(select(.stalling)) | first) as $s
    | (map(select(.method == "GET" and (.path | endswith($b)) and .t > $s.t_stall)) | first | .t) as $retry
    | map(select(.method == "GET" and (.path | test("/blobs/")) and (.path | endswith($b) | not)
                 and .t >= $s.t and .t < $retry)) | length' "$p_DIR/proxy.log")
((others >= 2)) || fail "only $others other blobs were fetched while one layer stalled (no parallel download?)"

case_ "a body that stalls every time: a clear timeout error"
fresh
proxy_mode p '{"mode":"stall","fraction":0.4,"stall":60,"count":-1,"match":"/blobs/'"$BIG"'"}'
start=$(date +%s)
fails pull "$REF"
err_has 'stall|timed? ?out|timeout|no progress'
(($(date +%s) - start < 40)) || fail "giving up on a stalled blob took too long"
fsck_clean

case_ "after the stalls the same store pulls cleanly"
proxy_mode p '{"mode":"pass"}'
ok pull --json "$REF"
pulled_ok

echo PASS
