#!/bin/bash
# End-to-end build on a busybox base: run_cmd (as root and as a user), env,
# workdir, user, copy with owner and mode, start_cmd and ready_cmd.  The
# result's config is read back from the store and its filesystem is checked
# by a second build that runs on top of it.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_init
b_busybox_image busybox:test >/dev/null

ctx=$T/ctx
mkdir -p "$ctx/app/sub"
echo hello >"$ctx/app/hello.txt"
echo nested >"$ctx/app/sub/x"
printf '#!/bin/sh\necho "$GREETING from run.sh"\n' >"$ctx/app/run.sh"
chmod 0755 "$ctx/app/run.sh"
cat >"$ctx/recipe.yaml" <<'YAML'
image: busybox:test
steps:
  - env: {GREETING: hi, MODE: test}
  - workdir: /work
  - run_cmd: mkdir -p /work && echo "$GREETING" > greeting && id -u > /work/uid-root && echo x > 'Főtanúsítvány.pem' && ln -s 'Főtanúsítvány.pem' /work/link.0
  - run_cmd: {commands: ["id -u > /tmp/uid-app", "touch /home/app/made-by-app"], user: app}
  - copy: {src: app, dest: /opt/app, owner: app, mode: "0640"}
  - copy: {src: app/run.sh, dest: /usr/local/bin/}
  - user: app
  - run_cmd: whoami > /tmp/whoami
start_cmd: /usr/local/bin/run.sh
ready_cmd: test -f /work/greeting
YAML

sbx build "$ctx/recipe.yaml" --tag bb:built >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "build failed"; }
digest=$(cat "$T/out")
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || b_die "stdout is not one digest: $(cat "$T/out")"
grep -q '^\[3/8\] run_cmd mkdir -p /work' "$T/err" || { cat "$T/err"; b_die "no step line for step 3"; }
grep -q '^\[5/8\] copy app /opt/app owner=app mode=0640' "$T/err" || { cat "$T/err"; b_die "no step line for the copy"; }
base=$("$B_DRIVER" --state "$STORE" | awk '$1 == "name" && $2 == "busybox:test" {print $3}')
[[ $(head -n 1 "$T/err") == "[base] image busybox:test -> ${base:0:19}" ]] \
    || { head -n 3 "$T/err"; b_die "first line is not '[base] image busybox:test -> ${base:0:19}'"; }
# Off a terminal: only step lines, indented output/progress and no escapes.
! grep -v -e '^\[base\] ' -e '^\[[0-9]/8\] ' -e '^      ' "$T/err" | grep -q . \
    || { cat "$T/err"; b_die "unexpected unindented lines on stderr"; }
! grep -q $'\033' "$T/err" || b_die "terminal escapes off a terminal"
b_pass "build prints the digest, the base and each step"

# Named by recipe digest and tag.
rd=$(sbx digest "$ctx/recipe.yaml")
b_state | grep -q "^name recipe:$rd $digest$" || { b_state; b_die "no recipe:<digest> name"; }
b_state | grep -q "^name docker.io/library/bb:built $digest$" || b_die "no tag name (normalized)"
b_pass "image named by recipe digest and tag"

# The recipe on standard input, its context given.
sbx build --context "$ctx" - <"$ctx/recipe.yaml" >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "build - failed"; }
[[ $(cat "$T/out") == "$digest" ]] || b_die "build - gave $(cat "$T/out"), not $digest"
b_pass "build - reads the recipe from stdin"

# The config: Env, WorkingDir, User, Cmd, ready label, history, layers.
"$B_DRIVER" --config "$STORE" "$digest" >"$T/config.json"
python3 - "$T/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
cfg = c["config"]
assert "GREETING=hi" in cfg["Env"] and "MODE=test" in cfg["Env"], cfg["Env"]
assert any(e.startswith("PATH=") for e in cfg["Env"]), cfg["Env"]
assert cfg["WorkingDir"] == "/work", cfg
assert cfg["User"] == "app", cfg
assert cfg["Cmd"] == ["/bin/sh", "-c", "/usr/local/bin/run.sh"], cfg["Cmd"]
assert json.loads(cfg["Labels"]["sh.sbx.ready-cmd"]) == ["/bin/sh", "-c", "test -f /work/greeting"], cfg["Labels"]
h = c["history"]
assert len(h) == 9, h                       # base + 8 steps
empty = [x.get("empty_layer", False) for x in h[1:]]
assert empty == [True, True, False, False, False, False, True, False], empty
assert len(c["rootfs"]["diff_ids"]) == 6, c["rootfs"]   # base + 5 layers
assert c["created"] == "1970-01-01T00:00:00Z"
PY
b_pass "config has Env, WorkingDir, User, Cmd, ready label, history and diff_ids"

# inspect says what the image runs as and with, without --json
sbx inspect bb:built >"$T/inspect" 2>"$T/err" || { cat "$T/err"; b_die "inspect failed"; }
for want in '^created: *1970-01-01T00:00:00Z$' '^user: *app$' '^workdir: *\/work$' \
    '^cmd: *\["/bin/sh" "-c" "/usr/local/bin/run.sh"\]$' 'GREETING=hi$' \
    'sh.sbx.ready-cmd=\["/bin/sh","-c","test -f /work/greeting"\]$' '^history: *9 entries$'; do
    grep -q -- "$want" "$T/inspect" || { cat "$T/inspect"; b_die "inspect lacks '$want'"; }
done
b_pass "inspect shows created, user, workdir, cmd, env, labels and history"

sbx history bb:built >"$T/hist" 2>"$T/err" || { cat "$T/err"; b_die "history failed"; }
[[ $(wc -l <"$T/hist") == 10 ]] || { cat "$T/hist"; b_die "history: not a header and 9 entries"; }
sed -n 2p "$T/hist" | grep -q 'whoami > /tmp/whoami' || { cat "$T/hist"; b_die "history: the newest entry is not first"; }
sbx history --json bb:built | jq -e 'length == 9 and ([.[] | select(.layer != null)] | length) == 6 and
    all(.[]; (.empty_layer and .size == 0) or (.empty_layer | not))' >/dev/null || b_die "history --json"
b_pass "history lists the config's history, newest first, with the layer each entry made"

out=$(sbx inspect --format '{{.Digest}}|{{.User}}|{{.WorkingDir}}|{{.Cmd}}|{{.Layers}}|{{.Labels.sh.sbx.ready-cmd}}' bb:built) ||
    b_die "inspect --format failed"
[[ $out == "$digest|app|/work|/bin/sh -c /usr/local/bin/run.sh|6|[\"/bin/sh\",\"-c\",\"test -f /work/greeting\"]" ]] ||
    b_die "inspect --format printed '$out'"
rc=0; sbx inspect --format '{{.Nope}}' bb:built 2>"$T/err" >/dev/null || rc=$?
[[ $rc == 2 ]] && grep -q "unknown field '.Nope'" "$T/err" || b_die "inspect --format with an unknown field: exit $rc $(cat "$T/err")"
b_pass "inspect --format prints the fields its template names"

# The filesystem, checked from inside a build on top of the image.
cat >"$ctx/check.yaml" <<YAML
image: $digest
steps:
  - run_cmd:
      user: root
      commands:
        - test "\$(cat /work/greeting)" = hi
        - test "\$(cat /work/link.0)" = x
        - test "\$(cat /work/uid-root)" = 0
        - test "\$(cat /tmp/uid-app)" = 1000
        - test "\$(stat -c %u /home/app/made-by-app)" = 1000
        - test "\$(cat /tmp/whoami)" = app
        - test "\$(stat -c %u:%g:%a /opt/app/hello.txt)" = 1000:1000:640
        - test "\$(stat -c %u:%g:%a /opt/app/sub/x)" = 1000:1000:640
        - test "\$(stat -c %u:%g:%a /opt/app/sub)" = 1000:1000:755
        - test "\$(stat -c %u:%g:%a /usr/local/bin/run.sh)" = 0:0:755
        - test "\$(stat -c %a /tmp)" = 1777
        - test "\$(pwd)" = /work
        - test "\$MODE" = test
        - test "\$(/usr/local/bin/run.sh)" = "hi from run.sh"
YAML
sbx build "$ctx/check.yaml" >"$T/out2" 2>"$T/err2" || { cat "$T/err2"; b_die "the image's files are not as built"; }
b_pass "files, owners, modes, user and env inside the image"
b_assert_clean
b_pass "no mount, bundle or scratch dir left"

# --network none: the step sees only loopback; --network host shares the host's;
# by default (isolated) it has lo and slirp4netns's tap0 (test_build_network.sh).
cat >"$ctx/net.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: |
      tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ' ' > /ifaces; cat /ifaces
YAML
sbx build --network none --json "$ctx/net.yaml" >"$T/out-net" 2>"$T/err-net" || { cat "$T/err-net"; b_die "--network none build failed"; }
python3 - "$T/out-net" "$T/err-net" <<'PY' || b_die "--json: stderr is not all JSON events, or the base event is wrong"
import json, sys
res = json.load(open(sys.argv[1]))
events = [json.loads(l) for l in open(sys.argv[2])]
base = events[0]
assert base["event"] == "base" and base["summary"] == "image", base
assert base["detail"] == "busybox:test" and base["digest"] == res["base_digest"], base
PY
grep -q '"line":"lo "' "$T/err-net" || { cat "$T/err-net"; b_die "--network none: the step saw more than loopback"; }
sbx build --no-cache --json --network host "$ctx/net.yaml" >/dev/null 2>"$T/err-net2" || b_die "host network build failed"
host_ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ' ')
grep -qF "\"line\":\"$host_ifaces\"" "$T/err-net2" || { cat "$T/err-net2"; b_die "--network host is not the host's network ($host_ifaces)"; }
sbx build --no-cache --json "$ctx/net.yaml" >/dev/null 2>"$T/err-net3" || b_die "isolated network build failed"
grep -qF '"line":"lo tap0 "' "$T/err-net3" || { cat "$T/err-net3"; b_die "the default network is not lo and tap0"; }
b_pass "--network none gives loopback only, host the host's, the default lo and tap0"
b_assert_clean

# --help: every option, and what the command prints.
"$SBX_BIN" build --help >"$T/help" || b_die "build --help failed"
for o in context tag label no-cache platform runtime network timeout pids-limit memory cpus disk-limit secret cache-from cache-to base-suite base-variant base-mirror json store verbose quiet help; do
    grep -q -- "--$o\b" "$T/help" || b_die "build --help does not list --$o"
done
grep -q '^output:' "$T/help" && grep -q 'stdout: the image' "$T/help" || b_die "build --help does not say what it prints"
! awk 'length > 80' "$T/help" | grep -q . || b_die "build --help has lines over 80 columns"
b_pass "build --help lists every option and what it prints"

# docker's short forms: -t for --tag, -f for the recipe file; help COMMAND
d2=$(sbx build -t bb:short -f "$ctx/recipe.yaml" 2>/dev/null) || b_die "build -t -f failed"
[[ $d2 == "$digest" ]] || b_die "build -t -f built another image: $d2"
"$B_DRIVER" --state "$STORE" | awk '$1 == "name" && $2 == "docker.io/library/bb:short" {f=1} $1 == "name" && $2 == "bb:short" {f=1} END {exit !f}' ||
    b_die "-t did not name the image: $("$B_DRIVER" --state "$STORE" | grep name)"
if sbx build -f "$ctx/recipe.yaml" "$ctx/recipe.yaml" 2>"$T/err"; then b_die "-f and a RECIPE both taken"; fi
grep -q -- "-f names the recipe" "$T/err" || b_die "unclear: $(cat "$T/err")"
cmp -s <("$SBX_BIN" help build) <("$SBX_BIN" build --help) || b_die "help build is not build --help"
"$SBX_BIN" help | grep -q "^  build-log " || b_die "help does not list the commands"
b_pass "build -t NAME -f FILE, and help [COMMAND]"

# -q: the digest on stdout and nothing on stderr; images -q: the digests
sbx build -q --no-cache "$ctx/recipe.yaml" >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "build -q failed"; }
[[ $(cat "$T/out") == "$digest" && ! -s $T/err ]] || { cat "$T/err"; b_die "build -q printed on stderr"; }
sbx -q images >"$T/out" || b_die "images -q failed"
grep -qx "$digest" "$T/out" && ! grep -qv '^sha256:[0-9a-f]\{64\}$' "$T/out" || b_die "images -q: $(cat "$T/out")"
[[ $(sort "$T/out" | uniq -d) == "" ]] || b_die "images -q repeats a digest"
b_pass "build -q prints only the digest; images -q only the digests"

# --label: the image's config gets it; the recipe's digest and cache stay
sbx build --json --label team=infra --label org.opencontainers.image.source=https://x.example/app \
    "$ctx/recipe.yaml" >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "build --label failed"; }
[[ $(jq -r .steps_run "$T/out") == 0 ]] || b_die "--label ran steps again"
ld=$(jq -r .digest "$T/out")
[[ $ld != "$digest" ]] || b_die "--label gave the same image"
sbx inspect "$ld" | grep -q '^ *team=infra$' || b_die "inspect does not show the label"
"$B_DRIVER" --config "$STORE" "$ld" | jq -e '.config.Labels["org.opencontainers.image.source"] == "https://x.example/app"
    and (.config.Labels | has("sh.sbx.ready-cmd"))' >/dev/null || b_die "the labels are not in the config"
rc=0; sbx build --label noequals "$ctx/recipe.yaml" 2>"$T/err" || rc=$?
[[ $rc == 2 ]] || b_die "--label without = : exit $rc"
rc=0; sbx build --label sh.sbx.ready-cmd=x "$ctx/recipe.yaml" 2>"$T/err" || rc=$?
[[ $rc == 1 ]] && grep -q "the tool's own" "$T/err" || b_die "--label sh.sbx.*: exit $rc $(cat "$T/err")"
b_pass "--label sets the config's labels without touching the recipe digest or the cache"
