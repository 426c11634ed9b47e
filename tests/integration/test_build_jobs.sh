#!/bin/bash
# Builds as jobs for the control plane: records, logs, cancel.
#  - a build leaves a record (state, per-step timings, image) and a log with
#    every step's output; build-log --follow streams a running build to its end;
#  - build-cancel from another process during an apt_install step: the step's
#    sandbox is killed, nothing half-built is kept, the record says cancelled;
#  - a builder SIGKILLed mid-step: its record says failed, not running.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_init
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
record() { # RECIPE-DIGEST KEY: a field of its newest build's record
    sbx builds --json | python3 -c '
import json, sys
r = [b for b in json.load(sys.stdin) if b["recipe_digest"] == sys.argv[1]]
print(r[0][sys.argv[2]] if r else "")' "$1" "$2"
}

b_sbx_base # first: it replaces the store with a copy of the shared one
b_busybox_image busybox:jobs >/dev/null
mkdir -p "$T/a"
cat >"$T/a/recipe.yaml" <<'YAML'
image: busybox:jobs
steps:
  - run_cmd: for i in 1 2 3; do echo "line $i"; sleep 1; done
  - run_cmd: echo second-step-output > /out
YAML
ra=$(sbx digest "$T/a/recipe.yaml")

# ---- follow a running build, then read its record ----
sbx build --json "$T/a/recipe.yaml" >"$T/a/out" 2>"$T/a/err" &
builder=$!
for _ in $(seq 1 100); do [[ -n $(record "$ra" id) ]] && break; sleep 0.05; done
[[ -n $(record "$ra" id) ]] || b_die "no record while the build runs"
sbx build-log --follow "$ra" >"$T/a/follow" || b_die "build-log --follow failed"
wait "$builder" || { cat "$T/a/err"; b_die "the build failed"; }
id=$(field build_id <"$T/a/out")
for l in "line 1" "line 3" "second-step-output" "build $id succeeded"; do
    grep -q "$l" "$T/a/follow" || { cat "$T/a/follow"; b_die "followed log lacks '$l'"; }
done
sbx build-log "$id" | cmp -s - "$T/a/follow" || b_die "the followed log differs from the whole log"
sbx builds --json | python3 -c '
import json, sys
b = [r for r in json.load(sys.stdin) if r["id"] == sys.argv[1]][0]
assert b["state"] == "succeeded" and b["digest"] == sys.argv[2], b
assert [s["index"] for s in b["steps"]] == [1, 2], b["steps"]
assert b["steps"][0]["seconds"] >= 2.5 and b["ended"] >= b["started"] >= b["created"], b
' "$id" "$(field digest <"$T/a/out")" || b_die "the record is wrong: $(sbx builds --json)"
sbx builds | grep -q "^$id  succeeded " || b_die "builds does not list it: $(sbx builds)"
b_pass "a record (state, per-step seconds, image) and a log; build-log --follow streamed the running build to its end"

# ---- a builder killed mid-step: failed, not running ----
mkdir -p "$T/k"
printf 'image: busybox:jobs\nsteps:\n  - run_cmd: sleep 30\n' >"$T/k/recipe.yaml"
rk=$(sbx digest "$T/k/recipe.yaml")
"$SBX_BIN" --store "$STORE" build "$T/k/recipe.yaml" >/dev/null 2>"$T/k/err" &
builder=$!
for _ in $(seq 1 200); do [[ $(record "$rk" state) == running ]] && grep -q '\[1/1\]' "$T/k/err" && break; sleep 0.05; done
[[ $(record "$rk" state) == running ]] || b_die "the build never ran"
kill -KILL "$builder"
wait "$builder" 2>/dev/null || true
[[ $(record "$rk" state) == failed ]] || b_die "a dead builder's record says $(record "$rk" state)"
record "$rk" error | grep -q "builder died" || b_die "the dead builder's record has no reason"
b_pass "a builder SIGKILLed mid-step: its record says failed (the builder died), not running"

# ---- cancel from another process during an apt step ----
mkdir -p "$T/c"
printf 'base: sbx\nsteps:\n  - run_cmd: echo before > /before\n  - apt_install: [cowsay]\n' >"$T/c/recipe.yaml"
rc_=$(sbx digest "$T/c/recipe.yaml")
"$SBX_BIN" --store "$STORE" build "$T/c/recipe.yaml" >"$T/c/out" 2>"$T/c/err" &
builder=$!
for _ in $(seq 1 1200); do grep -q '^\[2/2\] apt_install' "$T/c/err" 2>/dev/null && break; sleep 0.05; done
grep -q '^\[2/2\] apt_install' "$T/c/err" || { cat "$T/c/err"; b_die "the apt step never started"; }
sleep 1
sbx build-cancel "$rc_" || b_die "build-cancel failed"
rc=0
wait "$builder" || rc=$?
[[ $rc != 0 ]] || b_die "the cancelled build exited 0"
grep -qi "cancel" "$T/c/err" || { tail -5 "$T/c/err"; b_die "the cancelled build does not say so"; }
[[ $(record "$rc_" state) == cancelled ]] || b_die "the record says $(record "$rc_" state), not cancelled"
if sbx build-cancel "$rc_" 2>"$T/c/err2"; then b_die "cancelling an ended build worked"; fi
grep -q "already ended (cancelled)" "$T/c/err2" || b_die "unclear: $(cat "$T/c/err2")"
sbx images --all --json | python3 -c '
import json, sys
names = [i["name"] for i in json.load(sys.stdin)]
assert not any(n == "recipe:" + sys.argv[1] for n in names), names
assert sum(n.startswith("cache:") for n in names) >= 1, names
' "$rc_" || b_die "a cancelled build named its image, or lost its finished step"
b_assert_clean
b_pass "build-cancel during apt_install: the step's sandbox killed, no image named, the first step cached, record cancelled"

# ---- retention: records older than SBX_BUILD_RECORDS_DAYS go at a build ----
old=$(record "$ra" id)
python3 - "$STORE/meta.db" "$old" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
v = json.loads(db.execute("SELECT value FROM meta WHERE ns='build' AND key=?", (sys.argv[2],)).fetchone()[0])
v["created"] = 1000
db.execute("UPDATE meta SET value=? WHERE ns='build' AND key=?", (json.dumps(v), sys.argv[2]))
db.execute("DELETE FROM meta WHERE ns='build-prune'")
db.commit()
PY
SBX_BUILD_RECORDS_DAYS=1 sbx build "$T/a/recipe.yaml" >/dev/null 2>&1 || b_die "the build after aging a record failed"
[[ -z $(sbx builds --json | python3 -c 'import json,sys; print("".join(b["id"] for b in json.load(sys.stdin) if b["id"] == sys.argv[1]))' "$old") ]] ||
    b_die "a record older than SBX_BUILD_RECORDS_DAYS stayed"
[[ ! -e $STORE/builds/$old.log ]] || b_die "its log stayed"
[[ -n $(record "$rk" id) ]] || b_die "a recent record went too"
b_pass "records older than SBX_BUILD_RECORDS_DAYS (and their logs) go when a build starts"
