#!/bin/bash
# docker.io mirrors from SBX_REGISTRIES_CONFIG: tried first, in order, falling
# back to the source when a mirror is down or lacks the image.  "Docker Hub"
# here is a TLS docker-registry on 10.99.0.3:443 that registry-1.docker.io
# points to through this test's own /etc/hosts (mount and network namespaces:
# nothing leaves the machine; needs root).  Mirror and source hold different
# images under the same name, so the digest tells who answered.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
add_ip 10.99.0.3
REG_IP=10.99.0.3 REG_PORT=443 REG_DNS="registry-1.docker.io docker.io index.docker.io" \
    reg_start hub plain tls
fake_hosts "10.99.0.3 registry-1.docker.io index.docker.io docker.io"
for h in registry-1.docker.io docker.io; do
    mkdir -p "$SBX_CERTS_DIR/$h"
    cp "$hub_CA" "$SBX_CERTS_DIR/$h/ca.crt"
done
reg_start m1 plain
reg_start m2 plain
fx_push hub oci-multi=library/busybox:latest oci-zstd=library/alpine:3 docker-single=someone/tool:1
fx_push m1 oci-single=library/busybox:latest
fx_push m2 oci-tar=library/alpine:3
dead=$(free_port)
mirrors() { printf '{"mirrors":{"docker.io":[%s]}}\n' "$1" >"$SBX_REGISTRIES_CONFIG"; }
N=0
fresh() { N=$((N + 1)); STORE=$T/store-$N; }

case_ "no mirror: docker.io refs go to the source (registry-1.docker.io)"
fresh
rm -f "$SBX_REGISTRIES_CONFIG"
ok pull --json busybox
check_pulled oci-multi
jq_is .ref docker.io/library/busybox:latest
ok resolve docker.io/someone/tool:1
out_is "$(fx docker-single .digest)"

case_ "a mirror that has the image answers first"
fresh
mirrors "\"http://$m1_HOST\""
ok pull --json busybox:latest
check_pulled oci-single
jq_is .ref docker.io/library/busybox:latest
ok images
out_has 'docker.io/library/busybox:latest'

case_ "a mirror that lacks the image: the next mirror, then the source"
fresh
mirrors "\"http://$m1_HOST\", \"http://$m2_HOST\""
ok pull --json alpine:3
check_pulled oci-tar
ok pull --json someone/tool:1
check_pulled docker-single

case_ "a mirror that is down: the source"
fresh
mirrors "\"http://127.0.0.1:$dead\""
ok pull --json index.docker.io/library/busybox
check_pulled oci-multi
fsck_clean

case_ "mirrors are for docker.io only: other registries are asked directly"
fresh
mirrors "\"http://$m1_HOST\""
ok pull --json "$m2_HOST/library/alpine:3"
check_pulled oci-tar

t_pass
