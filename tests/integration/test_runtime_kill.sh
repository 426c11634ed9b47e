#!/bin/bash
# mount and commit SIGKILLed at any moment leave no mount, no half layer and
# no name, and the next command cleans what they left; fsck is clean after.
#  - mount killed exactly between its mount(2) and its record being marked
#    made (strace stops it at the wait for its mount child; the child mounts);
#  - mount killed at random points while it unpacks and mounts;
#  - commit killed at random points while it captures a 30 MB change.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_private_mounts "$0" "$@"
b_init
command -v strace >/dev/null || b_die "missing strace (scripts/deps.sh)"

ours_mounted() { grep -c " $T/.* - overlay sbx-" /proc/self/mountinfo || true; }
n_records() { sbx mounts --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

b_busybox_rootfs "$T/bb"
mkdir -p "$T/bb/many"
for i in $(seq 1 1500); do echo "file $i" >"$T/bb/many/f$i"; done
"$B_DRIVER" --seed "$STORE" "$T/bb" kill:base >/dev/null

# ---- the window between mount(2) and the record ----
sbx mount kill:base "$T/warm" >/dev/null 2>&1 && sbx umount "$T/warm" # layers cached: no unpack child
strace -f -qq -o /dev/null -e trace=wait4 -e inject=wait4:signal=SIGSTOP:when=1 \
    "$SBX_BIN" --store "$STORE" mount kill:base "$T/k" >/dev/null 2>&1 &
tracer=$!
for _ in $(seq 1 100); do grep -q " $T/k .* - overlay sbx-" /proc/self/mountinfo && break; sleep 0.05; done
grep -q " $T/k .* - overlay sbx-" /proc/self/mountinfo || b_die "the stopped mount never mounted"
victim=$(pgrep -P "$tracer" -f "mount kill:base" | head -1)
[[ -n $victim ]] || b_die "no mount process under strace"
kill -KILL "$victim"
wait "$tracer" 2>/dev/null || true
[[ $(n_records) == 0 ]] || b_die "the killed mount's record survived the next command"
! grep -q " $T/k " /proc/self/mountinfo || b_die "the killed mount's overlay survived the next command"
[[ -z $(ls "$STORE/mounts") ]] || b_die "mounts/ not empty: $(ls "$STORE/mounts")"
b_pass "mount killed after mount(2), before its record was made: the next command unmounts and removes it"

# ---- random kills of mount ----
made=0
for round in $(seq 1 16); do
    sbx gc --unpacked >/dev/null 2>&1 # the layer is unpacked again: more to interrupt
    dir=$T/r$round
    "$SBX_BIN" --store "$STORE" mount kill:base "$dir" >/dev/null 2>&1 &
    pid=$!
    sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [[ $(n_records) == 1 ]]; then
        grep -q " $dir .* - overlay sbx-" /proc/self/mountinfo || b_die "round $round: a listed mount is not mounted"
        [[ -d $dir/many ]] || b_die "round $round: the finished mount is empty"
        sbx umount "$dir"
        made=$((made + 1))
    else
        ! grep -q " $dir " /proc/self/mountinfo || b_die "round $round: overlay left at $dir"
        [[ ! -e $dir ]] || [[ -z $(ls -A "$dir") ]] || b_die "round $round: files left at $dir"
    fi
    [[ $(ours_mounted) == 0 ]] || { grep " - overlay sbx-" /proc/self/mountinfo >&2; sbx mounts >&2; ls -la "$STORE/mounts" >&2; b_die "round $round: an sbx overlay is left mounted"; }
done
sbx gc >/dev/null 2>&1
[[ -z $(ls "$STORE/mounts") && -z $(ls "$STORE/tmp") ]] || b_die "debris: mounts/ $(ls "$STORE/mounts") tmp/ $(ls "$STORE/tmp")"
b_pass "16 mounts killed at random points: each finished whole or left nothing ($made finished)"

# ---- random kills of commit ----
sbx mount kill:base "$T/c" >/dev/null 2>&1
python3 - "$T/c/work" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(5000):
    sub = os.path.join(d, "d%02d" % (i % 50))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "f%04d" % i), "wb") as f:
        f.write(os.urandom(6000))
PY
rm -rf "$T/c/many"
named=0
for round in $(seq 1 12); do
    "$SBX_BIN" --store "$STORE" commit --tag "kill:snap$round" "$T/c" >/dev/null 2>&1 &
    pid=$!
    sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if sbx inspect "kill:snap$round" >/dev/null 2>&1; then
        named=$((named + 1))
        sbx mount "kill:snap$round" "$T/v" >/dev/null 2>&1 || b_die "round $round: a named snapshot does not mount"
        [[ $(ls "$T/v/work" | wc -l) == 50 && ! -e $T/v/many ]] || b_die "round $round: a named snapshot is incomplete"
        sbx umount "$T/v"
    fi
done
want=$(sbx commit "$T/c" 2>/dev/null)
sbx umount "$T/c"
sbx gc >/dev/null 2>&1
sbx fsck --json >"$T/fsck.json" 2>/dev/null || b_die "fsck not clean: $(cat "$T/fsck.json")"
[[ -z $(ls "$STORE/tmp") && -z $(ls "$STORE/mounts") ]] || b_die "debris after gc: $(ls "$STORE/tmp" "$STORE/mounts")"
[[ $(ours_mounted) == 0 ]] || b_die "an sbx overlay is left mounted"
sbx images --json | python3 -c '
import json, sys
bad = [i for i in json.load(sys.stdin) if i["name"].startswith("docker.io/library/kill:snap") and i["digest"] != sys.argv[1]]
assert not bad, bad
' "$want" || b_die "a killed commit named something other than the whole snapshot"
b_pass "12 commits killed at random points: a name only for whole snapshots ($named), equal to an uninterrupted commit; gc and fsck clean"
