#!/bin/bash
# Which scheme the client uses for a registry that is not on loopback: HTTPS,
# verified, always, unless SBX_REGISTRIES_CONFIG lists it as insecure; then
# plain HTTP is allowed, but a TLS certificate that fails verification is
# still an error.  The registries listen on 10.99.0.x, addresses the test adds
# to lo inside its own network namespace (so this needs root).
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
add_ip 10.99.0.1
add_ip 10.99.0.2
REG_IP=10.99.0.1 reg_start h plain
REG_IP=10.99.0.2 reg_start s plain tls
fx_push h oci-single=test/img:v1
fx_push s oci-multi=test/img:v1
sbx_requests() { grep -c 'useragent=sbx-image' "$1/registry.log" || true; }

case_ "plain HTTP on a non-loopback address: refused, no plain request made"
STORE=$T/store-h
fails pull "$h_HOST/test/img:v1"
err_has 'https|tls|ssl|insecure|http:'
err_has "$h_HOST"
fails resolve "$h_HOST/test/img:v1"
assert_eq "$(sbx_requests "$h_DIR")" 0 "plain HTTP requests from sbx-image"

case_ "the same registry listed as insecure: plain HTTP allowed"
printf '{"insecure":["%s"]}\n' "$h_HOST" >"$SBX_REGISTRIES_CONFIG"
ok pull --json "$h_HOST/test/img:v1"
check_pulled oci-single
rm -f "$SBX_REGISTRIES_CONFIG"

case_ "HTTPS on a non-loopback address with the CA in certs.d"
STORE=$T/store-s
ok pull --json "$s_HOST/test/img:v1"
check_pulled oci-multi
fsck_clean

case_ "HTTPS without the CA: a certificate error, also when listed as insecure"
STORE=$T/store-noca
mkdir -p "$T/no-certs"
SBX_CERTS_DIR=$T/no-certs fails resolve "$s_HOST/test/img:v1"
err_has 'certificate|verif|tls|ssl'
err_has "$s_HOST"
printf '{"insecure":["%s"]}\n' "$s_HOST" >"$SBX_REGISTRIES_CONFIG"
SBX_CERTS_DIR=$T/no-certs fails resolve "$s_HOST/test/img:v1"
err_has 'certificate|verif|tls|ssl'
rm -f "$SBX_REGISTRIES_CONFIG"
fsck_clean

t_pass
