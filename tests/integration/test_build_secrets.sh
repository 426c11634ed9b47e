#!/bin/bash
# Build secrets (BuildKit's meaning): steps that name a secret see it at
# /run/secrets/ID (mode 0400, the step's user's) and, when asked, as an
# environment variable; its value reaches no blob, layer, config, cache
# entry, build log, message or --json event, and the recipe's digest does
# not depend on it.  A cached state after a step that used a secret is
# given only to a build with the same value: another tenant of the store
# who knows the recipe gets nothing it could not build.  On a busybox base.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_private_mounts "$0" "$@"
b_init
b_busybox_image busybox:test >/dev/null

SECRET="sbx-secret-$RANDOM-$RANDOM-$(date +%s%N)"
printf '%s\n' "$SECRET" >"$T/tok"
chmod 600 "$T/tok"
printf 'other-%s\n' "$SECRET" >"$T/tok2"
sum=$(printf '%s' "$SECRET" | sha256sum | cut -d' ' -f1)
sum2=$(printf 'other-%s' "$SECRET" | sha256sum | cut -d' ' -f1)
ctx=$T/ctx
mkdir -p "$ctx"
cat >"$ctx/recipe.yaml" <<YAML
image: busybox:test
steps:
  - run_cmd: printf '%s\n' $sum $sum2 > /sums
  - run_cmd:
      commands:
        - grep -qx "\$(cat /run/secrets/tok | tr -d '\n' | sha256sum | cut -d' ' -f1)" /sums
        - test "\$TOK_ENV" = "\$(cat /run/secrets/tok)"
        - ls -ln /run/secrets/tok | awk '{print "mode", \$1, "owner", \$3}'
        - 'echo "leak: \$(cat /run/secrets/tok)"'
        - echo built > /built
      secrets: [{id: tok, env: TOK_ENV}]
  - run_cmd:
      commands: ["ls -ln /run/secrets/tok | awk '{print \"owner\", \$3}'", "cat /run/secrets/tok >/dev/null"]
      user: app
      secrets: [tok]
YAML

case_() { echo "=== $*"; }

case_ "a build with a secret: the steps see it, the output shows ****"
sbx build --json --secret id=tok,src="$T/tok" "$ctx/recipe.yaml" >"$T/out" 2>"$T/err" ||
    { cat "$T/err" "$T/out"; b_die "build failed"; }
digest=$(jq -r 'select(.event == "result" or .digest != null) | .digest' "$T/out" | tail -n 1)
[[ $digest =~ ^sha256: ]] || { cat "$T/out"; b_die "no digest in the --json result"; }
grep -q 'leak: \*\*\*\*' "$T/out" "$T/err" || { cat "$T/out"; b_die "the secret's value was not shown as ****"; }
grep -q 'mode -r-------- owner 0' "$T/out" "$T/err" || { cat "$T/out"; b_die "not mode 0400, root's, for root's step"; }
grep -q 'owner 1000' "$T/out" "$T/err" || { cat "$T/out"; b_die "not the app user's file in the app user's step"; }

case_ "the value is nowhere: blobs, layers (decompressed), metadata, build logs, output"
find_secret() { # find_secret DIR: print where the secret is
    local f
    grep -rlaF -- "$SECRET" "$1" 2>/dev/null || true
    while IFS= read -r -d '' f; do
        zstd -dc "$f" 2>/dev/null | grep -qaF -- "$SECRET" && echo "$f (decompressed)"
    done < <(find "$1" \( -name '*.zst' -o -name '*.gz' \) -print0)
    sqlite3 "$1/meta.db" .dump 2>/dev/null | grep -qF -- "$SECRET" && echo "meta.db"
    return 0
}
found=$(find_secret "$STORE")
[[ -z $found ]] || b_die "the secret is in: $found"
! grep -qF -- "$SECRET" "$T/out" "$T/err" || b_die "the secret is in build's output"
ls "$STORE"/builds/*.log >/dev/null || b_die "no build log to search"

case_ "the image holds no /run/secrets, not even the mount point"
sbx unpack "$digest" "$T/rootfs" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "unpack failed"; }
[[ -e $T/rootfs/built ]] || b_die "the step's own file is missing"
[[ ! -e $T/rootfs/run ]] || b_die "the image got /run: $(ls -la "$T/rootfs/run")"
b_assert_clean

case_ "another value: the same recipe digest; the steps from the first that used the secret run again"
result() { jq -r "select(.steps_run != null) | .$1" "$2" | tail -n 1; }
d1=$(sbx digest "$ctx/recipe.yaml")
sbx build --json --secret id=tok,src="$T/tok2" "$ctx/recipe.yaml" >"$T/out2" 2>"$T/err" ||
    { cat "$T/err"; b_die "rebuild with another value failed"; }
[[ $(result steps_run "$T/out2") == 2 && $(result steps_cached "$T/out2") == 1 ]] ||
    { cat "$T/out2"; b_die "not steps 2 and 3 run again (the first cached) for a new secret value"; }
[[ $(sbx digest "$ctx/recipe.yaml") == "$d1" ]] || b_die "the recipe digest changed"

case_ "the same value again: every step cached, for either value"
for f in tok tok2; do
    sbx build --json --secret id=tok,src="$T/$f" "$ctx/recipe.yaml" >"$T/out2" 2>"$T/err" ||
        { cat "$T/err"; b_die "rebuild failed"; }
    [[ $(result steps_run "$T/out2") == 0 ]] || { cat "$T/out2"; b_die "a step ran again for the $f value"; }
done

case_ "no value: a cached state made with the secret is not given; the step needs it"
if sbx build "$ctx/recipe.yaml" >"$T/out" 2>"$T/err"; then b_die "a build without the secret got its cached state"; fi
grep -q "uses the secret 'tok'" "$T/err" || { cat "$T/err"; b_die "the error does not name the secret"; }

case_ "a step that runs without its secret fails before it starts, naming it"
if sbx build --no-cache "$ctx/recipe.yaml" >"$T/out" 2>"$T/err"; then b_die "built without the secret"; fi
grep -q "uses the secret 'tok'" "$T/err" || { cat "$T/err"; b_die "the error does not name the secret"; }
grep -q -- "--secret id=tok" "$T/err" || { cat "$T/err"; b_die "the error does not say how to give it"; }

case_ "a failing step that prints the secret: its tail in the error shows ****"
cat >"$ctx/fail.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: {commands: ["cat /run/secrets/tok; exit 3"], secrets: [tok]}
YAML
if SBX_TOK="$SECRET" sbx build --json --secret id=tok,env=SBX_TOK "$ctx/fail.yaml" >"$T/out" 2>"$T/err"; then
    b_die "a failing step built"
fi
grep -q '\*\*\*\*' "$T/out" "$T/err" || { cat "$T/out" "$T/err"; b_die "the tail does not show ****"; }
! grep -qF -- "$SECRET" "$T/out" "$T/err" || b_die "the failure printed the secret"
found=$(find_secret "$STORE")
[[ -z $found ]] || b_die "after a failed step the secret is in: $found"
b_assert_clean

case_ "a step's runtime holds no copy of a sandbox's mount"
# a runtime host mounts sandboxes' root filesystems (sbx-image mount); a
# step's runtime enters a mount namespace of its own, which must not keep a
# copy of them (nor of another build's secrets tmpfs) alive
sbx mount busybox:test "$T/sandbox" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "mount failed"; }
cat >"$ctx/other.yaml" <<'YAML'
image: busybox:test
steps:
  - run_cmd: touch /started-b; sleep 3
YAML
sbx build --no-cache "$ctx/other.yaml" >/dev/null 2>"$T/err-b" &
pb=$!
for _ in $(seq 100); do compgen -G "$STORE/tmp/build.*/upper/started-b" >/dev/null && break; sleep 0.1; done
runtimes=0 holders=0
for pid in $(pgrep -x crun; pgrep -x runc); do
    runtimes=$((runtimes + 1))
    grep -q " $T/sandbox " "/proc/$pid/mountinfo" 2>/dev/null && holders=$((holders + 1))
done
wait "$pb" || { cat "$T/err-b"; b_die "the build failed"; }
sbx umount "$T/sandbox" >/dev/null 2>&1 || true
((runtimes > 0)) || b_die "no runtime process seen while the step ran (test is vacuous)"
((holders == 0)) || b_die "the step's runtime held a copy of the sandbox's mount"

case_ "usage: --secret needs id and one source"
for bad in "src=$T/tok" "id=tok" "id=tok,src=$T/tok,env=X" "id=tok,src=$T/missing" "id=tok,env=SBX_UNSET_VAR" "id=tok,nope=1"; do
    rc=0; sbx build --secret "$bad" "$ctx/recipe.yaml" >/dev/null 2>"$T/err" || rc=$?
    ((rc == 2)) || { cat "$T/err"; b_die "--secret '$bad': exit $rc, expected 2"; }
done
! grep -qF -- "$SECRET" "$T/err" || b_die "a usage error printed the secret"

case_ "a recipe URL with credentials is refused, redacted, pointing to secrets"
printf 'image: busybox:test\nsteps:\n  - pip_install: {packages: [x], index_url: "https://u:%s@127.0.0.1:9/simple"}\n' "$SECRET" >"$ctx/url.yaml"
if sbx digest "$ctx/url.yaml" >/dev/null 2>"$T/err"; then b_die "a URL with a password was accepted"; fi
grep -q 'url.yaml:3:' "$T/err" || { cat "$T/err"; b_die "the error does not name the line"; }
grep -q 'secret' "$T/err" || b_die "the error does not point to secrets"
! grep -qF -- "$SECRET" "$T/err" || b_die "the error printed the password"
b_pass "build secrets: files and env, redacted output, nothing stored, digest independent, cache bound to the value"
