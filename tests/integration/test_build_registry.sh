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
echo "PASS"
