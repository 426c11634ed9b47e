#!/bin/bash
# References and resolve: invalid refs are refused with a message that says
# what is wrong (before any request); unknown tags, repositories and hosts give
# clear errors naming the ref; resolve uses HEAD for a plain manifest, caches
# tag answers for SBX_RESOLVE_TTL and digest answers for good; a docker.io
# mirror from SBX_REGISTRIES_CONFIG serves `busybox` refs.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
reg_start r plain
proxy_start p r
fx_push r oci-single=test/img:v1 oci-multi=test/img:v2 oci-index=test/multi:v1
R=$p_HOST/test
reqs() { proxy_reqs p '(.tls_probe | not)'; }

case_ "invalid refs: refused with what is wrong, no request made"
before=$(reqs)
fails resolve "$R/Upper/img:v1"
err_has 'upper|lowercase|invalid'
err_has "Upper/img"
fails pull "$R/img@sha256:1234"
err_has 'digest'
fails pull "$R/img@md5:0123456789abcdef0123456789abcdef"
err_has 'digest|algorithm'
fails resolve "$R//img:v1"
err_has 'empty|invalid'
fails resolve "$R/img:"
err_has 'tag|empty|invalid'
fails resolve "$R/img:bad tag"
err_has 'tag|invalid'
fails resolve "$R/img:$(printf 't%.0s' {1..129})"
err_has 'tag|long|invalid'
sbx resolve ""
((RC == 1 || RC == 2)) || fail "exit $RC for an empty ref"
err_has 'empty|invalid|ref'
assert_eq "$(reqs)" "$before" "requests made for invalid refs"

case_ "usage errors exit 2; --help tells the options"
sbx resolve
assert_eq "$RC" 2 "resolve without a ref"
sbx pull --no-such-option "$R/img:v1"
assert_eq "$RC" 2 "pull with an unknown option"
for verb in resolve pull inspect; do
    sbx "$verb" --help
    assert_eq "$RC" 0 "$verb --help"
    grep -qE -- '--platform' "$T/out" "$T/err" || fail "$verb --help does not mention --platform"
    grep -qE -- '--creds' "$T/out" "$T/err" || fail "$verb --help does not mention --creds"
done

case_ "unknown tag, unknown repository: not found, naming the ref"
fails resolve "$R/img:nope"
err_has 'not found|unknown'
err_has "$R/img:nope"
fails pull "$R/nosuchrepo:v1"
err_has 'not found|unknown'
err_has "nosuchrepo"
fails pull "$R/img@sha256:$(printf '0%.0s' {1..64})"
err_has 'not found|unknown'

case_ "a registry that is not there: a clear connection error"
dead=$(free_port)
fails resolve "127.0.0.1:$dead/test/img:v1"
err_has 'connect|refused|reach'
err_has "127.0.0.1:$dead"

case_ "resolve by HEAD for a single manifest: no body fetched"
STORE=$T/store-head
mget='.method == "GET" and (.path | test("/(manifests|blobs)/"))'
before=$(proxy_reqs p "$mget")
SBX_RESOLVE_TTL=0 ok resolve "$R/img:v1"
out_is "$(fx oci-single .digest)"
assert_eq "$(proxy_reqs p "$mget")" "$before" "GETs made by resolve of a manifest"
(($(proxy_reqs p '.method == "HEAD"') >= 1)) || fail "resolve made no HEAD request"

case_ "a registry that refuses HEAD on manifests: resolve still answers"
proxy_mode p '{"mode":"status","status":405,"method":"HEAD","match":"/manifests/","count":-1}'
SBX_RESOLVE_TTL=0 ok resolve "$R/img:v1"
out_is "$(fx oci-single .digest)"
SBX_RESOLVE_TTL=0 ok resolve --platform linux/arm64 "$R/multi:v1"
out_is "$(fx oci-index '.platforms["linux/arm64/v8"].digest')"
proxy_mode p '{"mode":"pass"}'

case_ "tag answers are cached for SBX_RESOLVE_TTL, digests for good"
STORE=$T/store-cache
export SBX_RESOLVE_TTL=600
ok resolve "$R/img:v1"
out_is "$(fx oci-single .digest)"
before=$(reqs)
ok resolve "$R/img:v1"
out_is "$(fx oci-single .digest)"
assert_eq "$(reqs)" "$before" "requests for a cached tag"
ok resolve --json "$R/img:v1"
jq_is .cached true
# move the tag: the cached answer stands until the TTL runs out ...
fx_push r oci-multi=test/img:v1
ok resolve "$R/img:v1"
out_is "$(fx oci-single .digest)"
# ... and a TTL of 0 asks the registry
SBX_RESOLVE_TTL=0 ok resolve "$R/img:v1"
out_is "$(fx oci-multi .digest)"
d=$(fx oci-multi .digest)
SBX_RESOLVE_TTL=0 ok resolve "$R/img@$d"
out_is "$d"
before=$(reqs)
SBX_RESOLVE_TTL=0 ok resolve "$R/img@$d"
out_is "$d"
assert_eq "$(reqs)" "$before" "requests for a digest resolved before"
unset SBX_RESOLVE_TTL

case_ "docker.io refs through a mirror from SBX_REGISTRIES_CONFIG"
reg_start m plain
fx_push m oci-single=library/busybox:latest oci-multi=someone/tool:1.0
printf '{"mirrors":{"docker.io":["http://%s"]}}\n' "$m_HOST" >"$SBX_REGISTRIES_CONFIG"
STORE=$T/store-mirror
ok pull --json busybox
check_pulled oci-single
jq_is .ref docker.io/library/busybox:latest
ok pull --json docker.io/someone/tool:1.0
check_pulled oci-multi
ok images
out_has 'docker.io/library/busybox:latest'
fsck_clean
rm -f "$SBX_REGISTRIES_CONFIG"

t_pass
