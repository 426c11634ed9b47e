#!/bin/bash
# The step cache and reproducibility, on a busybox base:
#  - a second build of the same recipe runs no step and gives the same digest;
#  - a change at the last step reruns only that step;
#  - a change at step 2 reruns 2 and after, nothing before;
#  - the same recipe built from an empty cache (another store, and --no-cache)
#    gives the same layer diff_ids.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_init
b_busybox_image busybox:test >/dev/null

ctx=$T/ctx
mkdir -p "$ctx"
echo data >"$ctx/data.txt"
recipe() { # recipe LAST-COMMAND [STEP2-COMMAND]
    cat <<YAML
image: busybox:test
steps:
  - run_cmd: echo one > /one && mkdir -p /var/log && echo log > /var/log/x
  - run_cmd: ${2:-echo two > /two}
  - env: {K: v}
  - copy: {src: data.txt, dest: /data/data.txt, mode: "0600"}
  - run_cmd: rm /var/log/x && $1
YAML
}
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

recipe "echo last > /last" >"$ctx/r.yaml"
sbx build --json "$ctx/r.yaml" >"$T/r1" 2>"$T/e1" || { cat "$T/e1"; b_die "first build failed"; }
[[ $(field steps_run <"$T/r1") == 5 ]] || b_die "first build ran $(field steps_run <"$T/r1") steps, want 5"
d1=$(field digest <"$T/r1")

sbx build --json "$ctx/r.yaml" >"$T/r2" 2>"$T/e2" || { cat "$T/e2"; b_die "second build failed"; }
[[ $(field steps_run <"$T/r2") == 0 ]] || { cat "$T/e2"; b_die "second build ran steps"; }
[[ $(field steps_cached <"$T/r2") == 5 ]] || b_die "second build: not all steps cached"
[[ $(field digest <"$T/r2") == "$d1" ]] || b_die "second build gave another digest"
grep -q '"event":"cached"' "$T/e2" || b_die "no cached events in --json output"
! grep -q '"event":"start"' "$T/e2" || b_die "a step started in the no-op rebuild"
b_pass "unchanged recipe: no step runs, same digest"

recipe "echo changed > /last" >"$ctx/r.yaml"
sbx build --json "$ctx/r.yaml" >"$T/r3" 2>"$T/e3" || { cat "$T/e3"; b_die "last-step rebuild failed"; }
[[ $(field steps_run <"$T/r3") == 1 ]] || { cat "$T/e3"; b_die "last-step change ran $(field steps_run <"$T/r3") steps, want 1"; }
grep -q '"event":"start","step":5' "$T/e3" || b_die "step 5 did not run"
[[ $(field digest <"$T/r3") != "$d1" ]] || b_die "changed recipe, same digest"
b_pass "change at the last step reruns only it"

recipe "echo changed > /last" "echo TWO > /two" >"$ctx/r.yaml"
sbx build --json "$ctx/r.yaml" >"$T/r4" 2>"$T/e4" || { cat "$T/e4"; b_die "step-2 rebuild failed"; }
[[ $(field steps_run <"$T/r4") == 4 && $(field steps_cached <"$T/r4") == 1 ]] \
    || { cat "$T/e4"; b_die "step-2 change: want 4 run, 1 cached"; }
b_pass "change at step 2 reruns 2..5 only"

# Reproducibility: an empty cache elsewhere, and --no-cache here.
"$B_DRIVER" --config "$STORE" "$(field digest <"$T/r4")" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["rootfs"]["diff_ids"]))' >"$T/ids1"
STORE=$T/store2
b_busybox_image busybox:test >/dev/null
sbx build --json "$ctx/r.yaml" >"$T/r5" 2>"$T/e5" || { cat "$T/e5"; b_die "build in a fresh store failed"; }
"$B_DRIVER" --config "$STORE" "$(field digest <"$T/r5")" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["rootfs"]["diff_ids"]))' >"$T/ids2"
cmp -s "$T/ids1" "$T/ids2" || { diff "$T/ids1" "$T/ids2"; b_die "diff_ids differ between two cold builds"; }
[[ $(field digest <"$T/r5") == $(field digest <"$T/r4") ]] || b_die "manifest digests differ between two cold builds"
sbx build --json --no-cache "$ctx/r.yaml" >"$T/r6" 2>"$T/e6" || { cat "$T/e6"; b_die "--no-cache build failed"; }
[[ $(field steps_run <"$T/r6") == 5 ]] || b_die "--no-cache did not run every step"
[[ $(field digest <"$T/r6") == $(field digest <"$T/r5") ]] || b_die "--no-cache rebuild gave another image"
b_pass "same recipe from an empty cache: same diff_ids and manifest"

sbx build --json --no-cache --runtime runc "$ctx/r.yaml" >"$T/r7" 2>"$T/e7" || { cat "$T/e7"; b_die "--runtime runc build failed"; }
[[ $(field digest <"$T/r7") == $(field digest <"$T/r5") ]] || b_die "runc and the default runtime built different images"
b_pass "the same image whichever runtime ran the steps (runc vs default)"

# LRU (gc --max-bytes evicts the least recently used names): a no-op rebuild
# refreshes the last use of its recipe: name and its deepest cache: name when
# it is stale, and of its base (a use: it also pushes back an expiry), and
# leaves other names alone.  Made stale by hand (the store
# records last use in unix seconds and refreshes at most once a minute).
python3 -c 'import sqlite3,sys; c = sqlite3.connect(sys.argv[1]); c.execute("UPDATE names SET last_used = 1"); c.commit(); c.close()' "$STORE/meta.db"
now=$(date +%s)
sbx build --json "$ctx/r.yaml" >"$T/r8" 2>"$T/e8" || { cat "$T/e8"; b_die "no-op rebuild failed"; }
[[ $(field steps_run <"$T/r8") == 0 ]] || b_die "the rebuild ran steps"
sbx images --all --json | python3 -c '
import json, sys
now, digest = int(sys.argv[1]), sys.argv[2]
names = json.load(sys.stdin)
fresh = sorted(n["name"].split(":")[0] for n in names if n["last_used"] >= now)
stale = [n for n in names if n["last_used"] < now]
assert fresh == ["busybox", "cache", "recipe"], fresh
assert any(n["name"].startswith("recipe:") and n["digest"] == digest for n in names)
assert stale, "every name was refreshed"
' "$now" "$(field digest <"$T/r8")" || b_die "a no-op rebuild did not refresh exactly its base, recipe: and deepest cache: names"
b_pass "a no-op rebuild marks its image and deepest cache entry used (LRU)"
b_assert_clean
