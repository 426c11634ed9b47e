#!/bin/bash
# from_registry bases, against the Debian docker-registry on loopback (the
# registry harness, lib/registry.sh, in a loopback-only network namespace):
#  - the base is resolved and pulled, and keyed by its manifest digest;
#  - a rebuild runs nothing; after the tag moves, the build starts again
#    from the new base;
#  - add_python on a base without a package manager fails naming what is
#    available, and leaves nothing.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/registry.sh"
t_init "$@"
export SBX_RESOLVE_TTL=0
reg_start r1 plain
fx_build
fx_push r1 "oci-single=bb/base:1"
mkdir -p "$T/ctx"
cat >"$T/ctx/r.yaml" <<YAML
from_registry: $r1_HOST/bb/base:1
steps:
  - run_cmd: echo built > /built && cat /built
YAML
res() { jq -r ".$1" "$T/out"; }

case_ "build on a registry base"
ok build --json "$T/ctx/r.yaml"
assert_eq "$(res steps_run)" 1 "steps run"
assert_eq "$(res base_digest)" "$(fx oci-single .digest)" "base digest"
d1=$(res digest)
grep -q '"line":"built"' "$T/err" || fail "no step output"

case_ "rebuild: nothing runs"
ok build --json "$T/ctx/r.yaml"
assert_eq "$(res steps_run)" 0 "steps run"
assert_eq "$(res digest)" "$d1" "digest"
base1=$(res base_digest)

case_ "plain output names the registry base and what it resolved to"
ok build "$T/ctx/r.yaml"
assert_eq "$(head -n 1 "$T/err")" "[base] from_registry $r1_HOST/bb/base:1 -> ${base1:0:19}" "base line"
assert_eq "$(sed -n 2p "$T/err")" "[1/1] run_cmd echo built > /built && cat /built (cached)" "cached step line"

case_ "build --push: the built image goes to the registry with its digest"
ok build --json --push "$r1_HOST/bb/built:1" "$T/ctx/r.yaml"
assert_eq "$(res pushed)" "$r1_HOST/bb/built:1" "pushed ref"
pushed_digest=$(res digest)
STORE_SAVED=$STORE
STORE=$T/store-pulled
ok pull --json "$r1_HOST/bb/built:1"
assert_eq "$(res digest)" "$pushed_digest" "the pulled image's digest is the built one's"
STORE=$STORE_SAVED

case_ "the tag moves: rebuild from the new base"
fx_push r1 "oci-multi=bb/base:1"
ok build --json "$T/ctx/r.yaml"
assert_eq "$(res steps_run)" 1 "steps run after the tag moved"
assert_eq "$(res base_digest)" "$(fx oci-multi .digest)" "new base digest"
[[ $(res digest) != "$d1" ]] || fail "same image after the base tag moved"

case_ "add_python without a package manager names what is available"
cat >"$T/ctx/py.yaml" <<YAML
from_registry: $r1_HOST/bb/base:1
add_python: "3.11"
steps:
  - run_cmd: "true"
YAML
fails build "$T/ctx/py.yaml"
err_has "add_python 3.11"
err_has "available: none"

case_ "the step cache through the registry: a second store runs nothing"
fx_push r1 "oci-single=bb/cbase:1"
mark=$RANDOM$RANDOM
cat >"$T/ctx/c.yaml" <<YAML
from_registry: $r1_HOST/bb/cbase:1
steps:
  - run_cmd: echo one-$mark > /one
  - run_cmd: echo two > /two
  - run_cmd: echo three > /three
YAML
CACHE=$r1_HOST/cache/steps
STORE=$T/store-c1
ok build --json --cache-to "$CACHE" "$T/ctx/c.yaml"
assert_eq "$(res steps_run)" 3 "steps run with an empty cache"
dA=$(res digest)
blobs() { grep -c 'GET /v2/[^ ]*/blobs/' "$r1_DIR/registry.log" || true; }
tags() { grep -c "/v2/cache/steps/manifests/sbx-cache-" "$r1_DIR/registry.log" || true; }
STORE=$T/store-c2
b0=$(blobs) t0=$(tags)
ok build --json --cache-from "$CACHE" "$T/ctx/c.yaml"
assert_eq "$(res steps_run)" 0 "steps run in a second store with --cache-from"
assert_eq "$(res steps_cached)" 3 "steps from the registry's cache"
assert_eq "$(res digest)" "$dA" "the image from the cache"
# the deepest state only: its config and its 4 layers (base + 3 steps), no other
assert_eq "$(($(blobs) - b0))" 5 "blobs downloaded"
ok images --json
! grep -q 'sbx-cache-' "$T/out" || fail "the cache's tags became image names"
((($(tags) - t0) <= 3)) || fail "more than one tag lookup for the deepest key"

case_ "publishing again sends only what is new: one manifest HEAD per entry"
STORE=$T/store-c1
puts() { grep -c "PUT /v2/cache/steps/$1" "$r1_DIR/registry.log" || true; }
heads() { grep -c "HEAD /v2/cache/steps/blobs/" "$r1_DIR/registry.log" || true; }
m0=$(puts manifests/sbx-cache-) h0=$(heads) u0=$(puts blobs/uploads/)
ok build --json --cache-to "$CACHE" "$T/ctx/c.yaml"
assert_eq "$(($(puts manifests/sbx-cache-) - m0))" 0 "entries pushed again"
assert_eq "$(($(heads) - h0))" 0 "blob HEADs for entries the repository has"
err_has "cache: 0 entries published"
sed 's/echo three/echo three-changed/' "$T/ctx/c.yaml" >"$T/ctx/c3.yaml"
ok build --json --cache-to "$CACHE" "$T/ctx/c3.yaml"
assert_eq "$(($(puts manifests/sbx-cache-) - m0))" 1 "entries pushed after the last step changed"
assert_eq "$(($(puts blobs/uploads/) - u0))" 2 "blobs sent (the new layer and config)"
err_has "cache: 1 entries published"

case_ "another store, the last step changed: --cache-from runs that step only"
STORE=$T/store-c7
sed 's/echo three/echo three-again/' "$T/ctx/c.yaml" >"$T/ctx/c4.yaml"
ok build --json --cache-from "$CACHE" "$T/ctx/c4.yaml"
assert_eq "$(res steps_run)" 1 "steps run"
assert_eq "$(res steps_cached)" 2 "steps from the registry's cache"
STORE=$T/store-c2

case_ "what one build got from a cache repository feeds only builds that list it"
# store-c2 holds the states its build took from $CACHE: a build there that
# does not list $CACHE (another tenant) runs every step itself
ok build --json "$T/ctx/c.yaml"
assert_eq "$(res steps_run)" 3 "steps run without --cache-from, after another build used it"
ok build --json --cache-from "$CACHE" "$T/ctx/c.yaml"
assert_eq "$(res steps_run)" 0 "steps run with --cache-from again"
ok images --all --json
# the three states built here, and the deepest one from $CACHE under a name of its own
jq -e '[.[] | select(.name | startswith("cache:"))] | length == 4' "$T/out" >/dev/null ||
    fail "the states built here and those from the repository are not named apart: $(cat "$T/out")"

case_ "a change at step 2 reruns 2 and 3 only, from the registry's step 1"
sed -i 's/echo two/echo TWO/' "$T/ctx/c.yaml"
STORE=$T/store-c3
ok build --json --cache-from "$CACHE" "$T/ctx/c.yaml"
assert_eq "$(res steps_run)" 2 "steps run after a change at step 2"
assert_eq "$(res steps_cached)" 1 "steps from the registry's cache"

case_ "--cache-from a repository that does not answer: a warning, and the build runs"
STORE=$T/store-c4
ok build --json --cache-from "127.0.0.1:$(free_port 127.0.0.1)/nothing/here" "$T/ctx/c.yaml"
assert_eq "$(res steps_run)" 3 "steps run without a usable cache"
err_has "cache not usable"
assert_eq "$(grep -c 'cache not usable' "$T/err")" 1 "warnings for a dead cache repository (asked once)"
fails build --cache-from "$r1_HOST/cache/steps:tag" "$T/ctx/c.yaml"
err_has "without a tag or digest"

case_ "states after a step that used a secret are not published"
cat >"$T/ctx/s.yaml" <<YAML
from_registry: $r1_HOST/bb/cbase:1
steps:
  - run_cmd: echo one-$mark > /one
  - run_cmd: {commands: ["cat /run/secrets/k > /dev/null"], secrets: [k]}
  - run_cmd: echo three > /three
YAML
echo value-$mark >"$T/k"
STORE=$T/store-c5
ok build --json --secret id=k,src="$T/k" --cache-to "$r1_HOST/cache/sec" "$T/ctx/s.yaml"
err_has "cache: 1 entries published"
assert_eq "$(grep -c 'PUT /v2/cache/sec/manifests/sbx-cache-' "$r1_DIR/registry.log")" 1 "cache entries pushed"
STORE=$T/store-c6
ok build --json --secret id=k,src="$T/k" --cache-from "$r1_HOST/cache/sec" "$T/ctx/s.yaml"
assert_eq "$(res steps_cached)" 1 "steps from the registry's cache"
assert_eq "$(res steps_run)" 2 "steps run from the one that used the secret"

# base: sbx through the cache repository.  A stand-in debootstrap (on PATH)
# makes a busybox tree with a random host id, as two real debootstraps give
# two different bases; it logs every call.
fake_debootstrap
cat >"$T/ctx/sbx.yaml" <<'YAML'
base: sbx
steps:
  - run_cmd: echo one > /one
  - run_cmd: cat /etc/host-id > /two
YAML
SCACHE=$r1_HOST/cache/sbxbase

case_ "base: sbx with --cache-to: the entries and the store's platform base are published"
STORE=$T/store-sa
ok build --json --cache-to "$SCACHE" "$T/ctx/sbx.yaml"
assert_eq "$(res steps_run)" 2 "steps run"
assert_eq "$(runs)" 1 "debootstrap runs"
dS=$(res digest)
baseS=$(res base_digest)
err_has "platform base published as $SCACHE:sbx-base-bookworm-minbase-"
ok build --json --cache-to "$SCACHE" "$T/ctx/sbx.yaml"
assert_eq "$(grep -c 'PUT /v2/cache/sbxbase/manifests/sbx-base-' "$r1_DIR/registry.log")" 1 \
    "platform bases pushed (the second build finds it there)"

case_ "another store with --cache-from: the published base, no debootstrap, no step run"
STORE=$T/store-sb
ok build --json --cache-from "$SCACHE" "$T/ctx/sbx.yaml"
assert_eq "$(runs)" 1 "debootstrap runs"
assert_eq "$(res steps_run)" 0 "steps run"
assert_eq "$(res base_digest)" "$baseS" "base digest"
assert_eq "$(res digest)" "$dS" "image digest"

case_ "a store with its own platform base: --cache-from uses the repository's, and only it"
STORE=$T/store-sc
ok build --json "$T/ctx/sbx.yaml"
assert_eq "$(runs)" 2 "debootstrap runs (this store's own base)"
[[ $(res base_digest) != "$baseS" ]] || fail "two debootstraps gave one base"
own=$(res digest)
ok build --json --cache-from "$SCACHE" "$T/ctx/sbx.yaml"
assert_eq "$(res steps_run)" 0 "steps run with --cache-from"
assert_eq "$(res digest)" "$dS" "image digest with --cache-from"
ok build --json "$T/ctx/sbx.yaml"
assert_eq "$(res digest)" "$own" "without --cache-from: this store's own base again"
assert_eq "$(res steps_run)" 0 "steps run (cached locally)"

case_ "--cache-from a repository with no platform base: this store's own, debootstrapped"
STORE=$T/store-sd
ok build --json --cache-from "$r1_HOST/cache/steps" "$T/ctx/sbx.yaml"
assert_eq "$(runs)" 3 "debootstrap runs"
assert_eq "$(res steps_run)" 2 "steps run"
echo "PASS"
