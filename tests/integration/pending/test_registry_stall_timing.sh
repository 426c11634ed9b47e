#!/bin/bash
# SBX_STALL_TIMEOUT is the time without progress after which a transfer is
# abandoned: a body that goes silent is given up within that time (plus a
# little slack), not after libcurl's averaged low-speed window.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
reg_start r plain
proxy_start p r
fx_push r oci-multi=test/img:v1
export SBX_RETRY_MAX=2 SBX_RETRY_BASE_MS=50 SBX_STALL_TIMEOUT=2
BIG=$(fx oci-multi '.layers[0].digest')

case_ "a silent body is abandoned about SBX_STALL_TIMEOUT seconds after its last byte"
proxy_mode p '{"mode":"stall","fraction":0.4,"stall":60,"count":1,"match":"/blobs/'"$BIG"'"}'
ok pull --json "$p_HOST/test/img:v1"
check_pulled oci-multi
gap=$(jq -s --arg b "$BIG" '
    (map(select(.stalling)) | first | .t_stall) as $s
    | map(select(.method == "GET" and (.path | endswith($b)) and .t > $s)) | first | .t - $s' \
    "$p_DIR/proxy.log")
jq -n --argjson g "$gap" '$g <= 4.5' | grep -q true ||
    fail "the retry came ${gap}s after the body went silent; SBX_STALL_TIMEOUT=2"

echo PASS
