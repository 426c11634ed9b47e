#!/bin/bash
# Docker schema1 manifests are refused with an error that says so.  The real
# registry produces one itself: asked for a schema2 manifest without the
# schema2 type in Accept, docker-registry converts it to a signed schema1
# manifest (whose Docker-Content-Digest covers the payload without the
# signatures, so it never equals the body's digest).  The fault proxy's
# `accept` mode replaces the client's Accept header to get it.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
reg_start r plain
proxy_start p r
fx_push r docker-single=test/img:v1
proxy_mode p '{"mode":"accept","accept":"application/vnd.docker.distribution.manifest.v1+prettyjws","count":-1,"match":"/manifests/","method":"*"}'

case_ "resolve of a schema1 manifest: refused as schema1"
fails resolve "$p_HOST/test/img:v1"
err_has 'schema ?1'
err_has "$p_HOST/test/img:v1"

case_ "pull of a schema1 manifest: refused as schema1 (not as a digest mismatch)"
fails pull "$p_HOST/test/img:v1"
err_has 'schema ?1'
ok images
! grep -q test/img "$T/out" || fail "a schema1 image was named"
fsck_clean

t_pass
