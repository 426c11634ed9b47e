#!/bin/bash
# A pull killed with SIGKILL leaves the store intact: fsck clean, no name for
# the image, no partial blob, and the next pull completes and is correct.
# Killed at a known point (a layer stalled mid-body by the fault proxy) and at
# random points of a normal pull.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
reg_start r plain
proxy_start p r
fx_push r oci-multi=test/img:v1 oci-mixed=test/mixed:v1
REF=$p_HOST/test/img:v1
export SBX_STALL_TIMEOUT=60

# await_stall: wait until the proxy stalls the big layer mid-body.
await_stall() {
    local n=100
    until [[ -s $p_DIR/proxy.log ]] && grep -q '"stalling": true' "$p_DIR/proxy.log"; do
        ((n-- > 0)) || fail "the pull never reached the stalled layer"
        sleep 0.1
    done
    sleep 0.3
}

not_named() {
    ok images
    ! grep -q "$1" "$T/out" || fail "the store names '$1' after a killed pull"
}

case_ "killed while a layer is stalled mid-body"
STORE=$T/store-stall
BIG=$(fx oci-multi '.layers[0].digest')
proxy_mode p '{"mode":"stall","fraction":0.5,"stall":120,"match":"/blobs/'"$BIG"'"}'
"$SBX_BIN" pull --store "$STORE" "$REF" >/dev/null 2>"$T/killed.err" &
pid=$!
await_stall
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
fsck_clean
not_named test/img
proxy_mode p '{"mode":"pass"}'
ok pull --json "$REF"
check_pulled oci-multi
fsck_clean

case_ "SIGINT while a layer is stalled mid-body: cancelled at once, exit 130, nothing kept"
STORE=$T/store-int
proxy_mode p '{"mode":"stall","fraction":0.5,"stall":120,"match":"/blobs/'"$BIG"'"}'
: >"$p_DIR/proxy.log"
"$SBX_BIN" pull --store "$STORE" "$REF" >/dev/null 2>"$T/int.err" &
pid=$!
await_stall
t0=$SECONDS
kill -INT "$pid"
st=0; wait "$pid" 2>/dev/null || st=$?
((SECONDS - t0 < 15)) || fail "the pull took $((SECONDS - t0)) s to stop after SIGINT (stall 120 s)"
assert_eq "$st" 130 "exit status after SIGINT"
grep -q 'cancelled' "$T/int.err" || { cat "$T/int.err"; fail "no 'cancelled' in the error"; }
grep -q 'interrupted by Interrupt' "$T/int.err" || { cat "$T/int.err"; fail "the signal is not named"; }
fsck_clean
not_named test/img
[[ -z $(ls -A "$STORE/tmp") ]] || fail "the cancelled pull left $(ls -A "$STORE/tmp")"
proxy_mode p '{"mode":"pass"}'

case_ "killed at random points, 8 rounds, one store"
STORE=$T/store-random
killed=0
# a slow link (about 1.5 s for the image), so that most kills land mid-pull
proxy_mode p '{"mode":"slow","rate":800000,"count":-1}'
for round in 1 2 3 4 5 6 7 8; do
    img=oci-multi; ref=$REF
    ((round % 2)) || { img=oci-mixed; ref=$p_HOST/test/mixed:v1; }
    "$SBX_BIN" pull --store "$STORE" "$ref" >/dev/null 2>&1 &
    pid=$!
    sleep "0.$((RANDOM % 8))$((RANDOM % 10))"
    kill -9 "$pid" 2>/dev/null || true
    st=0; wait "$pid" 2>/dev/null || st=$?
    if ((st == 137)); then killed=$((killed + 1)); echo "round $round: killed a $img pull"
    else echo "round $round: the $img pull finished first (exit $st)"; fi
    if [[ -e $STORE/meta.db ]]; then
        ok fsck
    else # killed before it made the store: there is none, and fsck says so
        fails fsck
        err_has "no store at"
    fi
done
((killed >= 3)) || fail "only $killed of 8 pulls were killed in flight"
proxy_mode p '{"mode":"pass"}'
ok pull --json "$REF"
check_pulled oci-multi
ok pull --json "$p_HOST/test/mixed:v1"
check_pulled oci-mixed
fsck_clean

t_pass
