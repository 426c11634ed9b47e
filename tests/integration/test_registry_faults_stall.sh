#!/bin/bash
# Stalled transfers, injected by the fault proxy: a blob body that stops
# halfway and stays silent.  The client abandons it SBX_STALL_TIMEOUT seconds
# after the last byte, retries from where it stopped (other layers carry on
# meanwhile: downloads run in parallel), and either ends
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
# the first layer the client asks for stalls, whichever it is
LAYERS=$(fx oci-multi '[.layers[].digest] | join("|")')
proxy_mode p '{"mode":"stall","fraction":0.4,"stall":60,"match":"/blobs/('"$LAYERS"')$"}'
start=$(date +%s)
ok pull --json "$REF"
pulled_ok
(($(date +%s) - start < 30)) || fail "a stall of 60 s was not cut short by SBX_STALL_TIMEOUT=2"
# layers download at once: another layer was requested while the first hung
# (one at a time, nothing else would be asked for until its retry)
others=$(jq -s --arg re "/blobs/($LAYERS)\$" '
    (map(select(.stalling)) | first) as $s
    | (map(select(.method == "GET" and .path == $s.path and .t > $s.t_stall)) | first | .t) as $retry
    | [.[] | select(.method == "GET" and (.path | test($re)) and .path != $s.path and .t < $retry)
      | .path] | unique | length' "$p_DIR/proxy.log")
((others >= 1)) || fail "no other layer was requested while one stalled (no parallel download?)"
# and the silent body was given up about SBX_STALL_TIMEOUT after its last byte
# (not after libcurl's averaged low-speed window, which takes ~8 s for 2)
gap=$(jq -s '(map(select(.stalling)) | first) as $s
    | map(select(.method == "GET" and .path == $s.path and .t > $s.t_stall)) | first | .t - $s.t_stall' \
    "$p_DIR/proxy.log")
jq -n --argjson g "$gap" '$g <= 6' | grep -q true ||
    fail "the retry came ${gap}s after the body went silent; SBX_STALL_TIMEOUT=2"

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

t_pass
