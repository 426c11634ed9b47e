#!/bin/bash
# TLS: a docker-registry serving HTTPS with a certificate from a CA the test
# makes.  With the CA in $SBX_CERTS_DIR/<host:port>/ca.crt pulls work (also
# with basic auth over TLS); without it the pull fails, says the certificate
# did not verify and where the CA belongs, and never falls back to plain HTTP.
# A plain-HTTP loopback registry is reached after HTTPS is refused.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
reg_start s plain tls
reg_start sb htpasswd tls
reg_start h plain
fx_push s oci-multi=test/img:v1 oci-index=test/multi:v1
fx_push sb oci-single=private/img:v1
fx_push h oci-single=test/img:v1

case_ "TLS with the CA in certs.d"
STORE=$T/store-ok
ok resolve "$s_HOST/test/img:v1"
out_is "$(fx oci-multi .digest)"
ok pull --json "$s_HOST/test/img:v1"
check_pulled oci-multi
ok pull --json --platform linux/arm64 "$s_HOST/test/multi:v1"
check_pulled oci-index linux/arm64/v8
fsck_clean

case_ "TLS and basic auth"
ok pull --json --creds "$TEST_USER:$TEST_PASS" "$sb_HOST/private/img:v1"
check_pulled oci-single

case_ "TLS without the CA: a clear error, no fallback to HTTP"
STORE=$T/store-noca
mkdir -p "$T/no-certs"
SBX_CERTS_DIR=$T/no-certs fails pull "$s_HOST/test/img:v1"
err_has 'certificate|verif|tls|ssl'
err_has "$s_HOST"
err_has 'ca\.crt|certs\.d'
SBX_CERTS_DIR=$T/no-certs fails resolve "$s_HOST/test/img:v1"
err_has 'certificate|verif|tls|ssl'
grep -q 'http: TLS handshake error' "$s_DIR/registry.log" ||
    fail "the registry saw no failed handshake (did the client try TLS at all?)"
ok images
[[ ! -s $T/out ]] || grep -vq "$s_HOST" "$T/out" || fail "a failed TLS pull named an image"

case_ "a CA for another registry does not help"
mkdir -p "$T/other-certs/127.0.0.1:1"
cp "$s_CA" "$T/other-certs/127.0.0.1:1/ca.crt"
SBX_CERTS_DIR=$T/other-certs fails pull "$s_HOST/test/img:v1"
err_has 'certificate|verif|tls|ssl'

case_ "a plain-HTTP loopback registry"
STORE=$T/store-http
ok pull --json "$h_HOST/test/img:v1"
check_pulled oci-single
fsck_clean
no_secrets

case_ "a loopback registry that moves from plain HTTP to TLS on the same port"
STORE=$T/store-http          # has pulled from it over plain HTTP above
reg_stop h
REG_PORT=${h_HOST#*:} reg_start h2 plain tls
fx_push h2 oci-multi=test/img:v2
ok pull --json "$h_HOST/test/img:v2"
check_pulled oci-multi
fsck_clean

t_pass
