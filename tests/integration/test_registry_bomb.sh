#!/bin/bash
# Decompression bombs: a gzip layer of zeros (about 1000:1) pulled with
# --unpack under a small expansion limit fails once it expands past the
# limit, with a message naming the limit and how to raise it, and keeps
# nothing (fsck clean, no name, tmp/ empty); raised, the same image pulls.
# A plain pull stores the blob without decompressing it: its first unpack
# stops at the same limit and unpacks nothing.  A normal image pulls under
# the same small limit.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
t_need skopeo python3
fx_build
reg_start r plain
fx_push r oci-multi=test/normal:v1

# a two-layer OCI layout: a small ordinary layer, then 48 MiB of zeros
"$PY" - "$HLIB" "$T/lay" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from layout import layer, ti, write_layout
write_layout(sys.argv[2], [layer([ti("etc/motd", data=b"hello\n")]),
                           layer([ti("zeros", data=bytes(48 << 20))])])
PY
skopeo copy -q "oci:$T/lay:latest" "docker://$r_HOST/test/bomb:1" --dest-tls-verify=false

case_ "a bomb stops at the expansion limit and keeps nothing"
export SBX_EXPANSION_FLOOR=$((1 << 20)) SBX_MAX_EXPANSION=20
fails pull --unpack --platform linux/amd64 "$r_HOST/test/bomb:1"
err_has "expands beyond [0-9]+ bytes from [0-9]+ compressed"
err_has "SBX_MAX_EXPANSION"
ok fsck
ok images
! grep -q "test/bomb" "$T/out" || fail "the refused image is named"
[[ -z $(ls -A "$STORE/tmp") ]] || fail "tmp/ holds $(ls -A "$STORE/tmp")"

case_ "a plain pull keeps the bomb's blob unchecked; its first unpack stops at the limit"
STORE=$T/store-plain
ok pull --platform linux/amd64 "$r_HOST/test/bomb:1"
fails unpack "$r_HOST/test/bomb:1" "$T/bomb-root"
err_has "expands beyond [0-9]+ bytes from [0-9]+ compressed"
err_has "SBX_MAX_EXPANSION"
[[ ! -e $T/bomb-root ]] || fail "unpack of a bomb left $T/bomb-root"
bomb_diff=$(sqlite3 "$STORE/meta.db" "SELECT diff_id FROM layers WHERE verified=0")
[[ -n $bomb_diff && ! -e $STORE/unpacked/${bomb_diff#sha256:} ]] || fail "the bomb reached the cache"
[[ -z $(ls -A "$STORE/tmp") ]] || fail "tmp/ holds $(ls -A "$STORE/tmp")"
STORE=$T/store

case_ "an ordinary image pulls under the same limit"
ok pull "$r_HOST/test/normal:v1"

case_ "raised, the same image pulls"
export SBX_MAX_EXPANSION=100000
ok pull --platform linux/amd64 "$r_HOST/test/bomb:1"
unset SBX_EXPANSION_FLOOR SBX_MAX_EXPANSION

case_ "a layer whose descriptor is over SBX_MAX_LAYER_BYTES is refused before it is fetched"
STORE=$T/store-max
SBX_MAX_LAYER_BYTES=1000 sbx pull --platform linux/amd64 "$r_HOST/test/bomb:1"
((RC == 1)) || fail "pull over SBX_MAX_LAYER_BYTES exited $RC"
err_has "over SBX_MAX_LAYER_BYTES \\(1000\\)"
[[ -z $(ls "$STORE/layers/sha256" 2>/dev/null) ]] || fail "a refused layer was stored"

t_pass
