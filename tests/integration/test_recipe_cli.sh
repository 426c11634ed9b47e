#!/bin/bash
# `sbx-image digest` and `sbx-image recipe show` as a user runs them: golden
# vectors through the CLI, --json, --context, digest stability across
# reformatting, clones and touches, errors with file:line:col and exit codes,
# and the independent Python check of the golden vectors.
set -euo pipefail
bin=${SBX_BIN:?set SBX_BIN}
src=${SBX_SOURCE_DIR:?set SBX_SOURCE_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SBX_CACHE_DIR="$work/cache"
fail() { echo "FAIL: $*"; exit 1; }

# Golden vectors through the CLI.
golden="$src/tests/recipes/golden"
for y in "$golden"/*.yaml; do
  want=$(cat "${y%.yaml}.digest")
  got=$("$bin" digest "$y")
  [ "$got" = "$want" ] || fail "digest $y: $got, golden $want"
  show=$("$bin" recipe show "$y")
  [ "$show" = "$(cat "${y%.yaml}.canonical")" ] || fail "recipe show $y differs from golden"
  # The digest is the sha256 of exactly what `recipe show` prints (minus its newline).
  sum=$(printf '%s' "$show" | sha256sum | cut -d' ' -f1)
  [ "sha256:$sum" = "$want" ] || fail "sha256 of show output != digest for $y"
  j=$("$bin" digest --json "$y")
  [ "$(jq -r .digest <<<"$j")" = "$want" ] || fail "digest --json for $y"
  j=$("$bin" recipe show --json "$y")
  [ "$(jq -r .digest <<<"$j")" = "$want" ] || fail "recipe show --json digest for $y"
  [ "$(jq -j .canonical <<<"$j")" = "$show" ] || fail "recipe show --json canonical for $y"
done
echo "ok: golden vectors via the CLI"

python3 "$src/tests/recipes/golden_check.py" "$golden" >/dev/null \
  || fail "the independent Python implementation disagrees with the golden vectors"
python3 "$src/tests/recipes/sdk_reference.py" "$golden" >/dev/null \
  || fail "the Python API reference (an SDK written from the docs) disagrees with the golden digests"
echo "ok: Python re-implementation and API reference agree"

# Every example recipe parses.
for y in "$src"/recipes/examples/*.yaml; do
  "$bin" digest "$y" | grep -Eq '^sha256:[0-9a-f]{64}$' || fail "example $y"
done
echo "ok: examples"

# A context of our own: --context, clones, touches, edits, exec bits, .sbxignore.
ctx="$work/ctx"
mkdir -p "$ctx/app/sub" "$work/recipes"
printf 'print(1)\n' >"$ctx/app/main.py"
printf '#!/bin/sh\n' >"$ctx/app/sub/run.sh"
chmod 755 "$ctx/app/sub/run.sh"
cat >"$work/recipes/r.yaml" <<'Y'
base: sbx
steps:
  - copy: {src: app, dest: /app/}
  - run_cmd: [echo a, echo b]
start_cmd: python3 /app/main.py
Y
cat >"$work/recipes/r2.yaml" <<'Y'
# the same recipe, written differently
start_cmd: ["/bin/sh", "-c", "python3 /app/main.py"]
steps:
- {copy: {dest: "/app/", src: "./app/"}}
  # comments anywhere
- run_cmd:
    commands:
    - "echo a"
    - 'echo b'
base: "sbx"
Y
d1=$("$bin" digest "$work/recipes/r.yaml" --context "$ctx")
"$bin" digest "$work/recipes/r.yaml" 2>"$work/err" && fail "missing copy source must fail"
grep -q "copy 'app'" "$work/err" || fail "error should name the copy source: $(cat "$work/err")"
grep -q "r.yaml:3:" "$work/err" || fail "error should carry file:line:col: $(cat "$work/err")"
d2=$("$bin" digest --context "$ctx" "$work/recipes/r2.yaml")
[ "$d1" = "$d2" ] || fail "reformatting changed the digest"
touch -d '2001-01-01' "$ctx/app/main.py"
[ "$("$bin" digest "$work/recipes/r.yaml" --context "$ctx")" = "$d1" ] || fail "touch changed the digest"
cp -a "$ctx" "$work/clone"
chmod -R go-rwx "$work/clone"
[ "$("$bin" digest "$work/recipes/r.yaml" --context "$work/clone")" = "$d1" ] || fail "a clone has another digest"
printf 'print(2)\n' >"$work/clone/app/main.py"
[ "$("$bin" digest "$work/recipes/r.yaml" --context "$work/clone")" != "$d1" ] || fail "an edit kept the digest"
chmod 644 "$ctx/app/sub/run.sh"
[ "$("$bin" digest "$work/recipes/r.yaml" --context "$ctx")" != "$d1" ] || fail "the exec bit did not count"
chmod 755 "$ctx/app/sub/run.sh"
printf 'junk\n' >"$ctx/app/debug.log"
[ "$("$bin" digest "$work/recipes/r.yaml" --context "$ctx")" != "$d1" ] || fail "a new file did not count"
printf '*.log\n**/*.log\n' >"$ctx/.sbxignore"
[ "$("$bin" digest "$work/recipes/r.yaml" --context "$ctx")" = "$d1" ] || fail ".sbxignore not honored"
[ "$(jq -r .context <<<"$("$bin" digest --json "$work/recipes/r.yaml" --context "$ctx")")" = "$(realpath "$ctx")" ] \
  || fail "digest --json context"
[ -s "$SBX_CACHE_DIR/file-hashes.v1" ] || fail "no file hash cache in SBX_CACHE_DIR"
ln -s /etc "$ctx/app/etc"
cat >"$work/recipes/escape.yaml" <<'Y'
base: sbx
steps:
  - copy: {src: app/etc/hostname, dest: /x}
Y
"$bin" digest "$work/recipes/escape.yaml" --context "$ctx" 2>"$work/err" && fail "escape must fail"
grep -q "escape.yaml:3:17: copy 'app/etc/hostname': refusing a source outside the build context" "$work/err" \
  || fail "escape error: $(cat "$work/err")"
echo "ok: --context, clones, touches, edits, exec bit, .sbxignore, escapes"

# Several processes sharing one cache directory: same digest, a valid cache after.
for i in $(seq 40); do printf 'file %d\n' "$i" >"$ctx/app/sub/f$i"; done
sleep 0.1 # past the racy-clean guard
rm -rf "$SBX_CACHE_DIR"
pids=()
for i in 1 2 3 4; do
  "$bin" digest "$work/recipes/r.yaml" --context "$ctx" >"$work/par.$i" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a parallel digest failed"; done
for i in 2 3 4; do cmp -s "$work/par.1" "$work/par.$i" || fail "parallel digests differ"; done
"$bin" -v digest "$work/recipes/r.yaml" --context "$ctx" 2>"$work/err" >"$work/par.5"
cmp -s "$work/par.1" "$work/par.5" || fail "digest after parallel runs differs"
grep -q "copy 'app': 42 files, 42 from the hash cache, 0 bytes hashed" "$work/err" \
  || fail "the shared cache was not used: $(cat "$work/err")"
echo "ok: parallel digests share the hash cache"

# Errors: one line on stderr with file:line:col, exit 1; usage errors exit 2.
printf 'base: sbx\nsteps:\n  - workdir: relative\n' >"$work/bad.yaml"
set +e
"$bin" digest "$work/bad.yaml" >"$work/out" 2>"$work/err"; rc=$?
set -e
[ "$rc" = 1 ] || fail "bad recipe: exit $rc"
[ ! -s "$work/out" ] || fail "bad recipe printed on stdout"
[ "$(wc -l <"$work/err")" = 1 ] || fail "error is not one line: $(cat "$work/err")"
grep -q "^sbx-image: error: $work/bad.yaml:3:14: expected an absolute path for workdir, got 'relative'$" "$work/err" \
  || fail "bad recipe message: $(cat "$work/err")"
set +e
"$bin" recipe show "$work/nope.yaml" 2>"$work/err"; rc1=$?
"$bin" digest 2>/dev/null; rc2=$?
"$bin" digest a.yaml b.yaml 2>/dev/null; rc3=$?
"$bin" recipe frobnicate x 2>/dev/null; rc4=$?
"$bin" digest --bogus x.yaml 2>/dev/null; rc5=$?
set -e
[ "$rc1" = 1 ] && grep -q "nope.yaml" "$work/err" || fail "missing file: exit $rc1 $(cat "$work/err")"
[ "$rc2$rc3$rc4$rc5" = 2222 ] || fail "usage errors exit $rc2 $rc3 $rc4 $rc5, want 2"
"$bin" digest --help | grep -q -- "--context DIR" || fail "digest --help"
"$bin" recipe show --help | grep -q -- "--context DIR" || fail "recipe show --help"
"$bin" recipe --help | grep -q "recipe show" || fail "recipe --help"
echo "ok: errors and help"

# A recipe on standard input: "-" (or /dev/stdin), the context the current directory.
y="$golden/$(ls "$golden" | grep '\.yaml$' | head -n 1)"
want=$(cat "${y%.yaml}.digest")
[ "$("$bin" digest - <"$y")" = "$want" ] || fail "digest - (a file on stdin)"
[ "$(cat "$y" | "$bin" digest -)" = "$want" ] || fail "digest - (a pipe)"
[ "$(cat "$y" | "$bin" digest /dev/stdin)" = "$want" ] || fail "digest /dev/stdin (a pipe)"
rc=0; printf 'image: x\nsteps:\n  - bogus: 1\n' | "$bin" digest - 2>"$work/err" || rc=$?
[ "$rc" = 1 ] && grep -q '^sbx-image: error: <stdin>:3:5: unknown step' "$work/err" || fail "stdin error: $rc $(cat "$work/err")"
rc=0; head -c 1100000 /dev/zero | tr '\0' '#' | "$bin" digest - 2>"$work/err" || rc=$?
[ "$rc" = 1 ] && grep -q 'more than the limit of 1048576 bytes' "$work/err" || fail "a 1.1 MB recipe on stdin: $rc $(cat "$work/err")"
echo "ok: a recipe on standard input"
