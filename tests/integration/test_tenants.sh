#!/bin/bash
# Many tenants, one store: an image pulled with credentials is private to its
# registry repository.  Two private registries on loopback (token auth with
# the harness's issuer, htpasswd basic auth) and three tenants sharing one
# store: A has valid credentials, B none, C wrong ones.  After A pulls, every
# path (resolve, pull, inspect, unpack, mount, export, build base, by tag and
# by digest) refuses B and C, within the access cache time and after it; A
# is let through; a public image is never re-checked; revoking A at the
# registry takes effect once the cache time has passed.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init "$@"
fx_build
reg_start tr token
reg_start br htpasswd
fx_push tr oci-multi=private/img:v1 oci-single=public/img:v1
fx_push br oci-mixed=private/app:v1
export SBX_ACCESS_TTL=3 SBX_RESOLVE_TTL=600
STORE=$T/store
A=(--creds "$TEST_USER:$TEST_PASS")
C=(--creds "$TEST_USER:wrong-$TEST_PASS")
rm -f "$DOCKER_CONFIG/config.json"

recipe() { # recipe FILE BASE
    printf 'from_registry: %s\nsteps:\n  - env: {TENANT: "x"}\n' "$2" >"$1"
}

# refused WHO-ARGS... -- REF DIGEST: every path refuses the tenant
refused() {
    local who=() ref digest
    while [[ $1 != -- ]]; do who+=("$1"); shift; done
    ref=$2 digest=$3
    fails resolve "${who[@]}" "$ref"
    fails resolve "${who[@]}" "${ref%:*}@$digest"
    fails inspect "${who[@]}" "$ref"
    err_has 'private|credential|auth|denied|unauthori[sz]ed'
    fails inspect "${who[@]}" "$digest"
    err_has 'private|credential|refused'
    fails unpack "${who[@]}" "$ref" "$T/rootfs-no"
    err_has 'private|credential|refused'
    [[ ! -e $T/rootfs-no ]] || fail "a refused unpack left $T/rootfs-no"
    fails unpack "${who[@]}" "$digest" "$T/rootfs-no"
    fails export "${who[@]}" "$ref" "$T/layout-no"
    fails mount "${who[@]}" "$ref" "$T/mnt-no"
    err_has 'private|credential|refused'
    ok mounts --json
    [[ $(jq length "$T/out") == 0 ]] || fail "a refused mount left a record"
    recipe "$T/r-no.yaml" "$ref"
    fails build "${who[@]}" "$T/r-no.yaml"
    err_has 'private|credential|auth|denied|unauthori[sz]ed'
    recipe "$T/r-no.yaml" "${ref%:*}@$digest"
    fails build "${who[@]}" "$T/r-no.yaml"
    fails pull "${who[@]}" "$ref"
}

allowed() { # allowed REF DIGEST: tenant A gets through every path
    local ref=$1 digest=$2
    ok resolve "${A[@]}" "$ref"
    out_is "$digest"
    ok inspect --json "${A[@]}" "$digest"
    rm -rf "$T/rootfs-a"
    ok unpack "${A[@]}" "$ref" "$T/rootfs-a"
    ok mount --json "${A[@]}" "$ref" "$T/mnt-a"
    ok umount "$T/mnt-a"
    recipe "$T/r-a.yaml" "$ref"
    ok build --json "${A[@]}" "$T/r-a.yaml"
}

for reg in tr br; do
    h=${reg}_HOST
    if [[ $reg == tr ]]; then img=oci-multi; ref=${!h}/private/img:v1
    else img=oci-mixed; ref=${!h}/private/app:v1; fi
    dg=$(fx $img .digest)

    case_ "$reg: tenant A pulls $ref with credentials"
    ok pull --json "${A[@]}" "$ref"
    check_pulled $img

    case_ "$reg: within the cache time, tenants B (no credentials) and C (wrong ones) get nothing"
    refused -- "$ref" "$dg"
    refused "${C[@]}" -- "$ref" "$dg"

    case_ "$reg: tenant A gets through every path"
    allowed "$ref" "$dg"

    case_ "$reg: after the cache time, still nothing for B and C"
    sleep 4
    refused -- "$ref" "$dg"
    refused "${C[@]}" -- "$ref" "$dg"
done

case_ "a built image on a private base is as private as its base"
ok build --json "${A[@]}" "$T/r-a.yaml"
built=$(jq -r .digest "$T/out")
fails unpack "$built" "$T/rootfs-no"
err_has 'private|credential|refused'
fails unpack "${C[@]}" "$built" "$T/rootfs-no"
rm -rf "$T/rootfs-a"
ok unpack "${A[@]}" "$built" "$T/rootfs-a"

case_ "a step cache entry from a private cache repository goes only to its tenants"
# store 1 publishes the cache of a build on a public base to a private repository;
# store 2 gets it for tenant A; B, with no credentials, runs the step itself
recipe "$T/r-pub.yaml" "$tr_HOST/public/img:v1"
cache=$tr_HOST/private/cache
ok build --json "${A[@]}" --cache-to "$cache" "$T/r-pub.yaml"
pub_built=$(jq -r .digest "$T/out")
STORE=$T/store2
ok build --json "${A[@]}" --cache-from "$cache" "$T/r-pub.yaml"
assert_eq "$(jq -r .steps_run "$T/out")" 0 "steps run for A from the private cache"
ok build --json --cache-from "$cache" "$T/r-pub.yaml"
assert_eq "$(jq -r .steps_run "$T/out")" 1 "steps run for B (no access to the cache repository)"
assert_eq "$(jq -r .digest "$T/out")" "$pub_built" "B's own build of the same recipe"
rm -rf "$T/rootfs-b"
ok unpack "$pub_built" "$T/rootfs-b"   # built here for B: B's to use
ok build --json "${C[@]}" --cache-from "$cache" "$T/r-pub.yaml"
assert_eq "$(jq -r .steps_run "$T/out")" 0 "steps run for C after B built it here"
fsck_clean
STORE=$T/store

case_ "base: sbx from a private cache repository goes only to its tenants"
fake_debootstrap
printf 'base: sbx\nsteps:\n  - run_cmd: cat /etc/host-id > /id\n' >"$T/r-sbx.yaml"
sbxcache=$tr_HOST/private/sbxcache
STORE=$T/store3
ok build --json "${A[@]}" --cache-to "$sbxcache" "$T/r-sbx.yaml"
baseA=$(jq -r .base_digest "$T/out")
STORE=$T/store4
ok build --json "${A[@]}" --cache-from "$sbxcache" "$T/r-sbx.yaml"
assert_eq "$(jq -r .base_digest "$T/out")" "$baseA" "A's base from the private cache repository"
assert_eq "$(runs)" 1 "debootstrap runs (A's second store used the published base)"
ok build --json --cache-from "$sbxcache" "$T/r-sbx.yaml"
[[ $(jq -r .base_digest "$T/out") != "$baseA" ]] || fail "B (no credentials) got A's private base"
assert_eq "$(runs)" 2 "debootstrap runs (B made its own base)"
fsck_clean
STORE=$T/store

case_ "a public image is never re-checked"
pub=$tr_HOST/public/img:v1
ok pull --json "$pub"
before=$(grep -c 'response completed' "$tr_DIR/registry.log")
toks=$(jq -s length "$tr_tok_DIR/token.log")
sleep 4
for i in 1 2; do
    ok resolve "$pub"
    ok inspect --json "$pub"
    rm -rf "$T/rootfs-pub"
    ok unpack "$pub" "$T/rootfs-pub"
    ok unpack "${C[@]}" "$(fx oci-single .digest)" "$T/rootfs-pub$i"
done
assert_eq "$(grep -c 'response completed' "$tr_DIR/registry.log")" "$before" "registry requests for a public image"
assert_eq "$(jq -s length "$tr_tok_DIR/token.log")" "$toks" "token requests for a public image"

case_ "revoking tenant A at the registry takes effect after the cache time"
ref=$tr_HOST/private/img:v1
rm -rf "$T/rootfs-a"
ok unpack "${A[@]}" "$ref" "$T/rootfs-a"   # checked now: cached for 3 s
echo "$TEST_USER" >"$tr_tok_DIR/revoked"
rm -rf "$T/rootfs-a"
ok unpack "${A[@]}" "$ref" "$T/rootfs-a"   # within the cache time
sleep 4
rm -rf "$T/rootfs-a"
fails unpack "${A[@]}" "$ref" "$T/rootfs-a"
err_has 'refused|credential|private'
fails resolve "${A[@]}" "$ref"
rm -f "$tr_tok_DIR/revoked"

case_ "--password-stdin: the password comes on stdin, never on the command line"
rm -rf "$T/rootfs-a"
printf '%s\n' "$TEST_PASS" | ok unpack --creds "$TEST_USER" --password-stdin "$ref" "$T/rootfs-a"
printf '%s\n' "$TEST_PASS" | ok pull --json --creds "$TEST_USER" --password-stdin "$ref"
sbx pull --creds "$TEST_USER" "$ref" </dev/null
((RC == 2)) || fail "--creds USER without a password: exit $RC, expected 2 (usage)"
err_has 'no password'

case_ "the store holds no credential, only keyed identities"
! grep -rqaF -- "$TEST_PASS" "$STORE" || fail "the store holds the password"
! grep -rqaF -- "$(printf '%s:%s' "$TEST_USER" "$TEST_PASS" | base64 -w0)" "$STORE" ||
    fail "the store holds the base64 credentials"
[[ $(stat -c %a "$STORE/access.key") == 600 ]] || fail "access.key is not mode 600"

case_ "SBX_TOKEN_REALM=same-host keeps credentials from a token realm on another host"
add_ip 10.99.0.7
REG_IP=10.99.0.7 reg_start far token   # its token issuer is on 127.0.0.1
fx_push far oci-single=private/x:v1
printf '{"insecure":["%s"]}\n' "$far_HOST" >"$SBX_REGISTRIES_CONFIG"
n0=$(jq -s 'map(select(.user == "'"$TEST_USER"'")) | length' "$far_tok_DIR/token.log")
SBX_TOKEN_REALM=same-host fails pull "${A[@]}" "$far_HOST/private/x:v1"
err_has 'SBX_TOKEN_REALM'
assert_eq "$(jq -s 'map(select(.user == "'"$TEST_USER"'")) | length' "$far_tok_DIR/token.log")" "$n0" \
    "credentialed token requests under same-host"
ok pull --json "${A[@]}" "$far_HOST/private/x:v1"   # the default, any: as Docker does
check_pulled oci-single

case_ "--creds is hidden from ps once parsed"
# a registry that is not there: the pull retries for a while, in plain sight
"$SBX_BIN" --store "$STORE" pull "${A[@]}" "127.0.0.1:$(free_port 127.0.0.1)/x/y:1" \
    >/dev/null 2>"$T/ps.err" &
pid=$!
sleep 0.7
cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline") || fail "the pull ended at once: $(cat "$T/ps.err")"
kill "$pid"; wait "$pid" || true
[[ $cmd == *"--creds $TEST_USER:***"* ]] || fail "ps shows '$cmd'"
[[ $cmd != *"$TEST_PASS"* ]] || fail "ps shows the password"
fsck_clean
t_pass
