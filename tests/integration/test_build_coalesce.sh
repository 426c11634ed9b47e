#!/bin/bash
# Builds as jobs: concurrent builds of one recipe in one store run it once.
#  - 16 `build` processes of a new 3-step recipe: every step runs exactly
#    once in all (the steps_run of the 16 results add up to 3), and all print
#    the same digest;
#  - the builder SIGKILLed in its second step: a waiter takes over from the
#    last cached step (the killed step reruns once) and the digest is the same
#    as an uninterrupted build's;
#  - a waiter interrupted (SIGINT) does not disturb the build it waits for;
#  - --wait-timeout gives up with a clear error, the build going on;
#  - --build-timeout bounds the whole build; finished steps stay cached.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_init
b_busybox_image busybox:co >/dev/null
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

recipe() { # DIR TAG: a 3-step recipe, each step about 1 s
    mkdir -p "$1"
    cat >"$1/recipe.yaml" <<YAML
image: busybox:co
steps:
  - run_cmd: sleep 1 && echo one-$2 > /one
  - run_cmd: sleep 2 && echo two-$2 > /two
  - run_cmd: sleep 1 && echo three-$2 > /three
YAML
}

# ---- 16 at once ----
recipe "$T/a" a
pids=()
for i in $(seq 1 16); do
    sbx build --json "$T/a/recipe.yaml" >"$T/a/out.$i" 2>"$T/a/err.$i" &
    pids+=($!)
done
for i in "${!pids[@]}"; do wait "${pids[$i]}" || { cat "$T/a/err.$((i + 1))"; b_die "build $((i + 1)) of 16 failed"; }; done
python3 - "$T/a" <<'PY' || b_die "16 concurrent builds did not coalesce"
import json, sys, glob
outs = [json.load(open(f)) for f in glob.glob(sys.argv[1] + "/out.*")]
assert len(outs) == 16, len(outs)
assert len({o["digest"] for o in outs}) == 1, {o["digest"] for o in outs}
ran = sum(o["steps_run"] for o in outs)
assert ran == 3, "steps run in all: %d (want 3: each once)" % ran
PY
grep -l "another build of this recipe is running" "$T"/a/err.* >/dev/null || b_die "no waiter said it waited"
b_pass "16 concurrent builds of a new recipe: each step ran once, one digest"

# ---- the builder killed mid-step: a waiter takes over ----
recipe "$T/k" k
recipe "$T/ref" k # the same recipe, built uninterrupted in another store for the digest
S2=$T/store2
b_busybox_image busybox:co "$S2" >/dev/null
want=$("$SBX_BIN" --store "$S2" build "$T/ref/recipe.yaml" 2>/dev/null)
"$SBX_BIN" --store "$STORE" build --json "$T/k/recipe.yaml" >"$T/k/out.0" 2>"$T/k/err.0" &
builder=$!
for _ in $(seq 1 200); do grep -q '"start".*"step":2\|\[2/3\]' "$T/k/err.0" 2>/dev/null && break; sleep 0.05; done
grep -q '"start".*"step":2\|\[2/3\]' "$T/k/err.0" || { cat "$T/k/err.0"; b_die "the builder never reached step 2"; }
pids=()
for i in 1 2 3 4; do
    sbx build --json "$T/k/recipe.yaml" >"$T/k/out.$i" 2>"$T/k/err.$i" &
    pids+=($!)
done
sleep 0.5
kill -KILL "$builder"
wait "$builder" 2>/dev/null || true
for i in "${!pids[@]}"; do wait "${pids[$i]}" || { cat "$T/k/err.$((i + 1))"; b_die "waiter $((i + 1)) failed after the builder died"; }; done
python3 - "$T/k" "$want" <<'PY' || b_die "the takeover did not give the uninterrupted digest, each remaining step once"
import json, sys
outs = [json.load(open("%s/out.%d" % (sys.argv[1], i))) for i in range(1, 5)]
assert {o["digest"] for o in outs} == {sys.argv[2]}, ({o["digest"] for o in outs}, sys.argv[2])
ran = sum(o["steps_run"] for o in outs)
assert ran == 2, "steps run by the waiters: %d (want 2: the killed step 2, then 3)" % ran
PY
b_pass "builder SIGKILLed in step 2: one waiter reran step 2 and 3 once, all four got the uninterrupted digest"

# ---- a build that fails: its waiters get its failure, without running the step ----
mkdir -p "$T/f"
cat >"$T/f/recipe.yaml" <<YAML
image: busybox:co
steps:
  - run_cmd: echo fine-$RANDOM > /fine
  - run_cmd: sleep 2 && echo "broken step" && exit 7
YAML
sbx build --json "$T/f/recipe.yaml" >"$T/f/out.0" 2>"$T/f/err.0" &
builder=$!
for _ in $(seq 1 200); do grep -q '"start".*"step":2\|\[2/2\]' "$T/f/err.0" 2>/dev/null && break; sleep 0.05; done
pids=()
for i in 1 2 3; do
    sbx build --json "$T/f/recipe.yaml" >"$T/f/out.$i" 2>"$T/f/err.$i" &
    pids+=($!)
done
wait "$builder" && b_die "the failing build succeeded"
for i in "${!pids[@]}"; do
    rc=0; wait "${pids[$i]}" || rc=$?
    ((rc == 1)) || { cat "$T/f/err.$((i + 1))"; b_die "waiter $((i + 1)) exited $rc, not 1 (the build's failure)"; }
    grep -q "exit code 7" "$T/f/err.$((i + 1))" || { cat "$T/f/err.$((i + 1))"; b_die "waiter $((i + 1)) does not say the step's failure"; }
    grep -q "failed in build [a-z0-9]\{12\}" "$T/f/err.$((i + 1))" || { cat "$T/f/err.$((i + 1))"; b_die "waiter $((i + 1)) does not name the build it waited for"; }
done
starts=$(cat $(ls -t "$STORE"/builds/*.log | head -n 4) | grep -c '\[2/2\].*: start' || true)
[[ $starts == 1 ]] || b_die "the failing step started $starts times in 4 builds (want 1)"
# a build that did not wait for it tries again
sbx build "$T/f/recipe.yaml" >/dev/null 2>"$T/f/err.5" && b_die "the broken step passed"
grep -q '^  2| broken step' "$(ls -t "$STORE"/builds/*.log | head -n 1)" || { cat "$T/f/err.5"; b_die "a later build did not run the step again"; }
b_pass "a failing build: 3 waiters got its failure, the step ran once; a later build runs it again"

# ---- a waiter interrupted, a waiter that gives up ----
recipe "$T/w" w
sbx build --json "$T/w/recipe.yaml" >"$T/w/out.0" 2>"$T/w/err.0" &
builder=$!
for _ in $(seq 1 200); do grep -q '"start"\|\[1/3\]' "$T/w/err.0" 2>/dev/null && break; sleep 0.05; done
"$SBX_BIN" --store "$STORE" build "$T/w/recipe.yaml" >"$T/w/out.1" 2>"$T/w/err.1" &
waiter=$! # the binary itself: a signal to a function's subshell would not reach it
sbx build --wait-timeout 1 "$T/w/recipe.yaml" >"$T/w/out.2" 2>"$T/w/err.2" && b_die "--wait-timeout 1 did not give up"
grep -q "still running after 1 s of waiting" "$T/w/err.2" || b_die "wait timeout error unclear: $(cat "$T/w/err.2")"
kill -INT "$waiter"
rc=0; wait "$waiter" || rc=$?
[[ $rc == 130 ]] || b_die "the interrupted waiter exited $rc, not 130"
wait "$builder" || { cat "$T/w/err.0"; b_die "the build failed after a waiter was interrupted"; }
[[ $(field steps_run <"$T/w/out.0") == 3 ]] || b_die "the builder did not run its 3 steps"
b_pass "an interrupted waiter (exit 130) and one that gave up (--wait-timeout) leave the build running to the end"

# ---- the whole build's time limit ----
recipe "$T/t" t
if sbx build --build-timeout 2 "$T/t/recipe.yaml" >"$T/t/out" 2>"$T/t/err"; then b_die "--build-timeout 2 did not stop a 4 s build"; fi
grep -q "the build's time (2 s) ran out\|the build ran out of its 2 seconds" "$T/t/err" || b_die "build timeout error unclear: $(cat "$T/t/err")"
sbx build --json "$T/t/recipe.yaml" >"$T/t/out" 2>"$T/t/err" || { cat "$T/t/err"; b_die "the rebuild failed"; }
[[ $(field steps_cached <"$T/t/out") == 1 && $(field steps_run <"$T/t/out") == 2 ]] ||
    b_die "the steps before the build timed out were not kept: $(cat "$T/t/out")"
b_pass "--build-timeout stops the build inside its second step; the first stays cached"
b_assert_clean
