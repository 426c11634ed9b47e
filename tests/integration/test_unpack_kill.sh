#!/bin/bash
# sbx-image unpack killed with SIGKILL at random points: DIR is either
# absent or complete, never partial; the next unpack into the same DIR
# succeeds and removes the temp dir the killed one left.  SIGTERM and SIGINT
# stop it cleanly: no DIR, no temp dir, exit 128+N.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
source "$SBX_SOURCE_DIR/tests/integration/lib/unpack_lib.sh"
b_init
u_image unpack:big 400 >/dev/null

# calibrate: one cold unpack (layers unpacked into the cache), one warm;
# the first tree is checked in full, later ones against its listing
listing() { (cd "$1" && find . -printf '%p %U:%G %m %y %s %l\n' | sort); }
t0=$(date +%s%N)
sbx unpack unpack:big "$T/cal" 2>/dev/null >/dev/null || b_die "calibration unpack failed"
t1=$(date +%s%N)
sbx unpack --no-sync unpack:big "$T/cal2" 2>/dev/null >/dev/null || b_die "calibration unpack failed"
t2=$(date +%s%N)
u_check_tree "$T/cal"
listing "$T/cal" >"$T/expected"
cold_ms=$(((t1 - t0) / 1000000)) warm_ms=$(((t2 - t1) / 1000000))
echo "calibration: cold ${cold_ms} ms, warm ${warm_ms} ms"
rm -rf "$T/cal" "$T/cal2"
same() { listing "$1" | cmp -s - "$T/expected" || b_die "$1 is not the complete tree"; }

# debris N: temp dirs an unpack into $T/rN left
debris() { find "$T" -maxdepth 1 -name ".r$1.sbx-unpack-*"; }
# await_tmp NAME PID: wait until the unpack PID into $T/NAME has made its temp dir (merging)
await_tmp() {
    local n=0
    while [[ -z $(find "$T" -maxdepth 1 -name ".$1.sbx-unpack-*") ]] && kill -0 "$2" 2>/dev/null; do
        sleep 0.005
        ((++n < 4000)) || b_die "no temp dir for $1 after 20 s"
    done
}

rounds=8 killed_mid=0
for i in $(seq $rounds); do
    dir=$T/r$i
    args=(--no-sync)
    ((i % 4 == 0)) && args=(--link)
    span=$warm_ms
    ((i % 4 == 2)) && args=() # copies with sync: the longest merge
    if ((i % 4 == 1)); then
        rm -rf "$STORE/unpacked" # a cold cache: the kill may land in a layer unpack
        span=$cold_ms
        args=()
    fi
    delay=$((RANDOM % (span + 20)))
    # the binary itself, not a shell function around it, must get the signal
    "$SBX_BIN" --store "$STORE" unpack "${args[@]}" unpack:big "$dir" >/dev/null 2>"$T/kill.err" &
    pid=$!
    if ((i % 4 == 2 || i % 4 == 3)); then
        # half the rounds (copies) aim at the merge: killed soon after the temp dir appears
        await_tmp "r$i" "$pid"
        delay=$((RANDOM % 50))
    fi
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    if kill -KILL "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null && b_die "round $i: killed unpack exited 0"
        if [[ -e $dir ]]; then
            same "$dir" # the rename happened just before the kill: complete
        elif debris "$i" | grep -q .; then
            killed_mid=$((killed_mid + 1))
        fi
    else
        wait "$pid" || { cat "$T/kill.err"; b_die "round $i: unpack failed before the kill"; }
        same "$dir"
    fi
    # the next unpack into the same place completes and removes the debris
    rm -rf "$dir"
    sbx unpack --link --no-sync unpack:big "$dir" >/dev/null 2>"$T/again.err" ||
        { cat "$T/again.err"; b_die "round $i: unpack after the kill failed"; }
    same "$dir"
    left=$(debris "$i")
    [[ -z $left ]] || b_die "round $i: temp dir left after the next unpack: $left"
done
echo "$killed_mid of $rounds rounds killed in the middle of the work"
((killed_mid >= 3)) || b_die "only $killed_mid rounds were killed mid-way: the test did not test anything"
b_pass "killed unpacks leave no DIR (or a complete one); the next unpack completes and cleans up"

# SIGKILL during a layer unpack into the store's cache: the half-unpacked
# layer is a scratch dir tmp/unpack.<id> whose lock died with the process;
# gc removes it: no tmp debris, nothing half-made in unpacked/.
caught=0
for i in 1 2 3 4; do
    rm -rf "$STORE/unpacked"
    "$SBX_BIN" --store "$STORE" unpack unpack:big "$T/g$i" >/dev/null 2>&1 &
    pid=$!
    n=0
    while ! compgen -G "$STORE/tmp/unpack.*" >/dev/null && kill -0 "$pid" 2>/dev/null; do
        sleep 0.002
        ((++n < 10000)) || b_die "no layer scratch dir after 20 s"
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    compgen -G "$STORE/tmp/unpack.*" >/dev/null && caught=$((caught + 1))
    "$SBX_BIN" --store "$STORE" gc >/dev/null 2>"$T/gc.err" || { cat "$T/gc.err"; b_die "gc failed"; }
    left=$(ls -A "$STORE/tmp")
    [[ -z $left ]] || b_die "round $i: tmp debris after gc: $left"
    ! ls -A "$STORE/unpacked" | grep -qv '^[0-9a-f]\{64\}$' || b_die "round $i: debris in unpacked/: $(ls -A "$STORE/unpacked")"
    rm -rf "$T/g$i"
done
echo "$caught of 4 kills landed during a layer unpack"
((caught >= 2)) || b_die "no kill landed during a layer unpack: the test did not test anything"
b_pass "an unpack killed in a layer unpack leaves a scratch dir that gc removes"

# SIGTERM / SIGINT: the unpack stops, removes its temp dir itself, exits 128+N
stopped=0
for i in 1 2 3 4; do
    dir=$T/t$i sig=TERM
    ((i % 2 == 0)) && sig=INT
    "$SBX_BIN" --store "$STORE" unpack unpack:big "$dir" >/dev/null 2>"$T/term.err" &
    pid=$!
    await_tmp "t$i" "$pid"
    kill -"$sig" "$pid" 2>/dev/null || true
    set +e; wait "$pid"; rc=$?; set -e
    if ((rc == 0)); then
        same "$dir"
        continue
    fi
    want=143; [[ $sig == INT ]] && want=130
    ((rc == want)) || { cat "$T/term.err"; b_die "SIGTERM round $i: exit $rc, want $want"; }
    [[ ! -e $dir ]] || b_die "SIG$sig round $i: $dir left"
    left=$(find "$T" -maxdepth 1 -name ".t$i.sbx-unpack-*")
    [[ -z $left ]] || b_die "SIG$sig round $i: the stopped unpack left its temp dir: $left"
    grep -Eq "(unpacking|merging): cancelled" "$T/term.err" && stopped=$((stopped + 1))
done
echo "$stopped of 4 signalled unpacks stopped mid-way and cleaned up"
((stopped >= 2)) || b_die "no signal landed mid-way: the test did not test anything"
b_pass "SIGTERM and SIGINT stop an unpack with 128+N, leaving neither DIR nor its temp dir"
