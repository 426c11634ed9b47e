#!/bin/bash
# Platform selection in an OCI index (amd64, arm64/v8, arm/v7) and a Docker
# manifest list whose arm64 entry has no variant: --platform picks the entry,
# variants normalized as containerd does (arm64 = arm64/v8, arm = arm/v7), and
# a platform the image lacks is an error that lists the platforms it has.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
reg_start r plain
fx_push r oci-index=test/multi:v1 docker-list=test/list:v1 foreign-index=test/foreign:v1
R=$r_HOST/test

# expect_platform REF PLATFORM-ARG FIXTURE FIXTURE-PLATFORM
expect_platform() {
    local want
    want=$(fx "$3" ".platforms[\"$4\"].digest")
    [[ $want != null ]] || t_die "no $4 in $3"
    ok resolve --platform "$2" "$1"
    out_is "$want"
}

case_ "OCI index: --platform chooses the entry"
expect_platform "$R/multi:v1" linux/amd64 oci-index linux/amd64
expect_platform "$R/multi:v1" linux/arm64 oci-index linux/arm64/v8
expect_platform "$R/multi:v1" linux/arm64/v8 oci-index linux/arm64/v8
expect_platform "$R/multi:v1" linux/arm/v7 oci-index linux/arm/v7
expect_platform "$R/multi:v1" linux/arm oci-index linux/arm/v7

case_ "Docker manifest list: arm64 without a variant matches linux/arm64/v8"
expect_platform "$R/list:v1" linux/arm64/v8 docker-list linux/arm64
expect_platform "$R/list:v1" linux/arm64 docker-list linux/arm64
expect_platform "$R/list:v1" linux/amd64 docker-list linux/amd64

case_ "resolve --json reports the chosen platform and the manifest's type"
ok resolve --json --platform linux/arm64 "$R/multi:v1"
jq_is .digest "$(fx oci-index '.platforms["linux/arm64/v8"].digest')"
jq_is .media_type application/vnd.oci.image.manifest.v1+json
jq_is '.platform | if type == "string" then . else [.os, .architecture, .variant] | join("/") end' \
    linux/arm64/v8

case_ "pull --platform linux/arm64 stores the arm64/v8 image under the ref"
ok pull --json --platform linux/arm64 "$R/multi:v1"
check_pulled oci-index linux/arm64/v8
ok inspect --json --platform linux/arm64 "$R/multi:v1"
out_has "$(fx oci-index '.platforms["linux/arm64/v8"].config')"
jq_is .source store
ok pull --json --platform linux/arm64/v8 "$R/list:v1"
check_pulled docker-list linux/arm64
fsck_clean

case_ "two platforms pulled under one name: each command's --platform picks its own"
ok pull --json "$R/multi:v1" # this host's, after the arm64 pull above
arm=$(fx oci-index '.platforms["linux/arm64/v8"].digest')
amd=$(fx oci-index '.platforms["linux/amd64"].digest')
ok images --json
jq -e --arg n "$R/multi:v1" --arg d "$(fx oci-index .digest)" \
    '[.[] | select(.name == $n)][0].digest == $d' "$T/out" >/dev/null ||
    fail "the name does not point at the index: $(cat "$T/out")"
rm -rf "$T/u-arm" "$T/u-host" "$T/u-v7"
ok unpack --json --platform linux/arm64 "$R/multi:v1" "$T/u-arm"
jq_is .digest "$arm"
ok unpack --json "$R/multi:v1" "$T/u-host"
[[ $(uname -m) != x86_64 ]] || jq_is .digest "$amd"
fails unpack --platform linux/arm/v7 "$R/multi:v1" "$T/u-v7"
err_has 'not for linux/arm/v7 .pull it with --platform linux/arm/v7'
[[ ! -e $T/u-v7 ]] || fail "a refused unpack left $T/u-v7"
printf 'image: %s\nsteps:\n  - env: {A: "1"}\n' "$R/multi:v1" >"$T/m.yaml"
ok build --json --platform linux/arm64 "$T/m.yaml"
jq_is .base_digest "$arm"
fsck_clean

case_ "a platform the index lacks: the error lists what it has"
fails resolve --platform linux/riscv64 "$R/multi:v1"
err_has 'riscv64'
err_has 'linux/amd64'
err_has 'linux/arm64/v8'
err_has 'linux/arm/v7'
err_has "$R/multi"
fails pull --platform linux/s390x "$R/list:v1"
err_has 'linux/amd64'
err_has 'linux/arm64'

case_ "an index with nothing for this host fails by default, naming its platforms"
if [[ $(uname -m) != s390x && $(uname -m) != ppc64le ]]; then
    fails pull "$R/foreign:v1"
    err_has 'linux/s390x'
    err_has 'linux/ppc64le'
    err_has "$R/foreign"
    ok pull --json --platform linux/s390x "$R/foreign:v1"
    check_pulled foreign-index linux/s390x
fi

case_ "a malformed --platform is refused before any request"
sbx resolve --platform 'linux/' "$R/multi:v1"
((RC == 1 || RC == 2)) || fail "exit $RC for --platform linux/"
err_has 'platform'
sbx resolve --platform 'a/b/c/d' "$R/multi:v1"
((RC == 1 || RC == 2)) || fail "exit $RC for --platform a/b/c/d"
err_has 'platform'

t_pass
