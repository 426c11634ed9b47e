#!/bin/bash
# Failures leave the store as it was: a failing command, a timeout, a copy
# from outside the context, a missing base.  Each prints what failed, exits 1,
# and leaves no layer, no name, no mount, no bundle, no scratch dir.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_init
b_busybox_image busybox:test >/dev/null
ctx=$T/ctx
mkdir -p "$ctx"
echo secret >"$T/outside.txt"

expect_fail() { # NAME RECIPE-FILE [BUILD-ARGS...] ; leaves stderr in $T/err
    local name=$1 file=$2
    shift 2
    b_state >"$T/before"
    local rc=0
    sbx build "$@" "$file" >"$T/out" 2>"$T/err" || rc=$?
    [[ $rc == 1 ]] || { cat "$T/err"; b_die "$name: exit status $rc, want 1"; }
    [[ ! -s $T/out ]] || b_die "$name: printed a result: $(cat "$T/out")"
    b_state >"$T/after"
    diff "$T/before" "$T/after" >&2 || b_die "$name: the store changed"
    b_assert_clean
}

cat >"$ctx/fail.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: echo preparing; echo something > /made; echo boom >&2; exit 3
  - run_cmd: echo never
YAML
expect_fail "failing command" "$ctx/fail.yaml"
grep -q 'step 1 failed: run_cmd' "$T/err" || { cat "$T/err"; b_die "no failed step"; }
grep -q 'command: echo preparing; echo something > /made; echo boom >&2; exit 3' "$T/err" || b_die "no command"
grep -q 'exit code: 3' "$T/err" || b_die "no exit code"
grep -q '    boom' "$T/err" || b_die "no last output"
grep -q 'error: .*fail.yaml:3:.*step 1/2' "$T/err" || { cat "$T/err"; b_die "error line does not name the recipe position and step"; }
! grep -q 'never' "$T/err" || b_die "the step after the failure ran"
b_pass "failing command: step, command, exit code, output; store unchanged"

# 86 is what the python step's script uses for "not available": a user's
# command that exits 86 is an ordinary failure
printf 'image: busybox:test\nsteps:\n  - run_cmd: echo last words; exit 86\n' >"$ctx/e86.yaml"
expect_fail "exit 86" "$ctx/e86.yaml"
grep -q 'error: .*command failed with exit code 86' "$T/err" || { cat "$T/err"; b_die "exit 86 not reported as a failed command"; }
b_pass "a command exiting 86 is a failed command"

expect_fail "failing command (--json)" "$ctx/fail.yaml" --json
python3 - "$T/err" <<'PY' || b_die "--json failure output is not one JSON event per line"
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]   # every line parses
last = events[-1]
assert last["event"] == "error" and last["step"] == 1 and last["exit_code"] == 3, last
assert "boom" in last["tail"] and "fail.yaml:3" in last["where"], last
assert any(e["event"] == "output" and e["line"] == "boom" for e in events), events
PY
b_pass "failing command with --json: one JSON event per line, the error event says it all"

cat >"$ctx/slow.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: echo started; touch /partial; sleep 60
YAML
start=$(date +%s)
expect_fail "timeout" "$ctx/slow.yaml" --timeout 2
(( $(date +%s) - start < 30 )) || b_die "timeout did not stop the step"
grep -q 'timed out' "$T/err" || { cat "$T/err"; b_die "no timeout message"; }
grep -q '    started' "$T/err" || b_die "no last output on timeout"
b_pass "timeout: reported, store unchanged"

cat >"$ctx/bomb.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo all started
YAML
start=$(date +%s)
expect_fail "fork bomb" "$ctx/bomb.yaml" --pids-limit 32
(( $(date +%s) - start < 30 )) || b_die "the process limit did not stop the step"
grep -q 'process limit (32; raise it with --pids-limit)' "$T/err" || { cat "$T/err"; b_die "the error does not name the limit"; }
! grep -qx '      all started' "$T/err" || b_die "the step started all its processes"
b_pass "a fork bomb stops at --pids-limit, the error names the limit"

cat >"$ctx/hog.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: x=$(head -c 300000000 /dev/zero | tr '\0' a); echo survived
YAML
expect_fail "memory hog" "$ctx/hog.yaml" --memory 64M
grep -q 'memory limit (64 MiB; raise it with --memory)' "$T/err" || { cat "$T/err"; b_die "the error does not name the memory limit"; }
! grep -q '  survived' "$T/err" || b_die "the hog survived its memory limit"
b_pass "a step past --memory is killed, the error names the limit"

cat >"$ctx/writer.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: head -c 50000000 /dev/zero > /big; echo wrote; sleep 30
YAML
start=$(date +%s)
SBX_BUILD_DISK_LIMIT=8M expect_fail "disk writer" "$ctx/writer.yaml"
(( $(date +%s) - start < 20 )) || b_die "the disk limit did not stop the step while it ran"
grep -q 'disk limit (8 MiB; raise it with --disk-limit)' "$T/err" || { cat "$T/err"; b_die "the error does not name the disk limit"; }
b_pass "a step writing past SBX_BUILD_DISK_LIMIT is stopped while it runs, the error names the limit"

for bad in "--memory 0" "--memory 12X" "--disk-limit -1" "--cpus 0" "--cpus lots"; do
    rc=0; sbx build $bad "$ctx/writer.yaml" >/dev/null 2>"$T/err" || rc=$?
    ((rc == 2)) || { cat "$T/err"; b_die "'$bad': exit $rc, want 2 (usage)"; }
done
rc=0; SBX_BUILD_MEMORY=lots sbx build "$ctx/writer.yaml" >/dev/null 2>"$T/err" || rc=$?
((rc != 0)) && grep -q 'SBX_BUILD_MEMORY' "$T/err" || { cat "$T/err"; b_die "a bad SBX_BUILD_MEMORY was not named"; }
b_pass "bad limits are usage errors that name the option or variable"

for bad in 'Bad Tag!' 'x:' 'a/UPPER' 'a@sha256:0000000000000000000000000000000000000000000000000000000000000000'; do
    expect_fail "tag '$bad'" "$ctx/slow.yaml" --tag "$bad"
    grep -qF "tag '$bad'" "$T/err" || { cat "$T/err"; b_die "the error does not name the tag '$bad'"; }
    ! grep -q 'started' "$T/err" || b_die "a step ran before the bad tag '$bad' was refused"
done
b_pass "bad --tag names are refused before anything runs"

cat >"$ctx/outside.yaml" <<'YAML'
image: busybox:test
steps:
  - copy: {src: ../outside.txt, dest: /outside.txt}
YAML
expect_fail "copy outside the context" "$ctx/outside.yaml"
grep -qi 'outside' "$T/err" || { cat "$T/err"; b_die "no 'outside the context' error"; }
b_pass "copy from outside the context refused, store unchanged"

cat >"$ctx/missing.yaml" <<'YAML'
image: no-such-image:1
steps:
  - run_cmd: "true"
YAML
expect_fail "missing base" "$ctx/missing.yaml"
grep -q "no-such-image:1" "$T/err" || { cat "$T/err"; b_die "error does not name the base"; }
b_pass "missing base: named in the error, store unchanged"

# base: sbx with a mirror nothing listens on: debootstrap's own reason (its
# last "E:" line) ends the error, not a cut-off middle of its output
printf 'base: sbx\nsteps:\n  - run_cmd: "true"\n' >"$ctx/sbx.yaml"
expect_fail "debootstrap failure" "$ctx/sbx.yaml" --base-mirror http://127.0.0.1:9/debian
grep -q "error: .*debootstrap --variant=minbase bookworm .*failed (exit code 1): E: .*127.0.0.1:9/debian.*; last output:$" "$T/err" ||
    { cat "$T/err"; b_die "the error line does not give debootstrap's reason"; }
tail -n 1 "$T/err" | grep -q "^E: " || { cat "$T/err"; b_die "the output's end is not the error's end"; }
b_pass "a failing debootstrap: its reason in the error"

# A failure after cached steps keeps those steps and adds nothing of its own.
cat >"$ctx/late.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: echo ok > /ok
  - run_cmd: exit 7
YAML
rc=0; sbx build "$ctx/late.yaml" >/dev/null 2>"$T/err" || rc=$?
[[ $rc == 1 ]] && grep -q 'exit code: 7' "$T/err" || b_die "late failure not reported"
b_state >"$T/before"
rc=0; sbx build "$ctx/late.yaml" >/dev/null 2>"$T/err" || rc=$?
[[ $rc == 1 ]] && grep -q '\[1/2\] run_cmd echo ok > /ok (cached)' "$T/err" || { cat "$T/err"; b_die "step 1 not cached after a later failure"; }
b_state >"$T/after"
diff "$T/before" "$T/after" >&2 || b_die "a repeated failure changed the store"
b_assert_clean
b_pass "failure after a good step: good step cached, failed one leaves nothing"

# A builder killed with SIGKILL in the middle of a step leaves its bundle
# and scratch dir, but no mount (the step's mounts live in the runtime's own
# mount namespace); the next build removes them before it starts.
step_started() { # the step's first write reached its upper dir
    for _ in $(seq 100); do compgen -G "$STORE/tmp/build.*/upper/half-done" >/dev/null && return 0; sleep 0.1; done
    return 1
}
cat >"$ctx/killed.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: touch /half-done; sleep 120
YAML
"$SBX_BIN" --store "$STORE" build "$ctx/killed.yaml" >/dev/null 2>"$T/err" &
pid=$!
step_started || { cat "$T/err"; b_die "the step never started"; }
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
! grep -q " $STORE" /proc/self/mountinfo || b_die "the killed build left a mount: $(grep " $STORE" /proc/self/mountinfo)"
compgen -G "$STORE/tmp/build.*" >/dev/null && compgen -G "$STORE/tmp/run.*" >/dev/null ||
    b_die "the killed build left no bundle or scratch dir to clean (test is vacuous)"
cat >"$ctx/after.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: echo after > /after
YAML
sbx build "$ctx/after.yaml" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "build after a killed build failed"; }
b_assert_clean
b_pass "a SIGKILLed build leaves no mount; its bundle and scratch dir are removed by the next build"

# SIGINT while a step runs: the build stops, says so, and leaves nothing.
b_state >"$T/before"
"$SBX_BIN" --store "$STORE" build "$ctx/killed.yaml" >/dev/null 2>"$T/err" &
pid=$!
step_started || { cat "$T/err"; b_die "the step never started"; }
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
((rc == 130)) || { cat "$T/err"; b_die "an interrupted build exited $rc, want 130"; }
grep -q 'cancelled' "$T/err" || { cat "$T/err"; b_die "no 'cancelled' in the error"; }
grep -q 'interrupted by Interrupt' "$T/err" || { cat "$T/err"; b_die "no signal named"; }
b_state >"$T/after"
diff "$T/before" "$T/after" >&2 || b_die "an interrupted build changed the store"
b_assert_clean
b_pass "SIGINT mid-step: reported, store unchanged, nothing left"
