#!/bin/bash
# gVisor: the same busybox recipe built with --runtime runsc and with
# --runtime runc, each in an empty store, gives the same image (same diff_ids,
# same manifest digest): file writes, a deletion (whiteout), a symlink, a step
# as a non-root user, env and a copy.  A failing command under runsc is
# reported with its exit code and leaves the store as it was.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_init
command -v runsc >/dev/null || b_die "missing 'runsc' (Debian package runsc, scripts/deps.sh)"

ctx=$T/ctx
mkdir -p "$ctx"
echo payload >"$ctx/data.txt"
cat >"$ctx/r.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: mkdir -p /srv && echo "$(id -u) root" > /srv/who && ln -s who /srv/link && rm /etc/group
  - env: {GREETING: hello}
  - run_cmd: {commands: ["echo $GREETING > /home/app/greeting"], user: app}
  - copy: {src: data.txt, dest: /srv/data.txt, owner: app, mode: "0640"}
YAML
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
diff_ids() {
    "$B_DRIVER" --config "$STORE" "$1" |
        python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["rootfs"]["diff_ids"]))'
}

STORE=$T/runc
b_busybox_image busybox:test >/dev/null
sbx build --json --runtime runc "$ctx/r.yaml" >"$T/r-runc" 2>"$T/e-runc" || { cat "$T/e-runc"; b_die "runc build failed"; }
d_runc=$(field digest <"$T/r-runc")
ids_runc=$(diff_ids "$d_runc")

STORE=$T/runsc
b_busybox_image busybox:test >/dev/null
sbx build -v --json --runtime runsc "$ctx/r.yaml" >"$T/r-runsc" 2>"$T/e-runsc" || { cat "$T/e-runsc"; b_die "runsc build failed"; }
grep -q '"message":"sandbox [^"]* (runsc): setup+run' "$T/e-runsc" || { cat "$T/e-runsc"; b_die "the steps did not run under runsc"; }
! grep -q '(runc): setup+run\|(crun): setup+run' "$T/e-runsc" || b_die "a step ran under another runtime"
[[ $(field steps_run <"$T/r-runsc") == 4 ]] || b_die "runsc build ran $(field steps_run <"$T/r-runsc") steps, want 4"
d_runsc=$(field digest <"$T/r-runsc")
[[ $(diff_ids "$d_runsc") == "$ids_runc" ]] || { echo "runc:  $ids_runc"; echo "runsc: $(diff_ids "$d_runsc")"; b_die "runsc and runc layers differ"; }
[[ $d_runsc == "$d_runc" ]] || b_die "runsc gave $d_runsc, runc $d_runc"
b_pass "runsc and runc build the same image ($d_runsc)"

# A failing command under runsc: exit code reported, nothing stored.
cat >"$ctx/fail.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: echo about to fail; exit 3
YAML
b_state >"$T/before"
rc=0; sbx build --runtime runsc "$ctx/fail.yaml" >"$T/out" 2>"$T/err" || rc=$?
[[ $rc == 1 ]] || { cat "$T/err"; b_die "failing step under runsc exited $rc, want 1"; }
grep -q '^  exit code: 3$' "$T/err" || { cat "$T/err"; b_die "no exit code in the failure report"; }
grep -q '^    about to fail$' "$T/err" || b_die "no output tail in the failure report"
[[ ! -s $T/out ]] || b_die "a failed build printed a digest"
b_state | cmp -s - "$T/before" || b_die "a failed runsc step changed the store"
b_assert_clean
b_pass "a failing command under runsc: exit code and output reported, store unchanged, nothing left"
