#!/bin/bash
# Layers a plain pull stores unchecked (gzip kept without decompressing it;
# the diff_id checked at the first full read) decide nothing for other
# images: an image whose config claims another image's diff_id for a
# decompression bomb or for other bytes, pulled first, neither blocks nor
# changes the real image's pull, load and unpack; the real layer, checked,
# replaces the false one.  A bomb that claims its true diff_id stops at the
# expansion limit when it is first unpacked, and fsck quarantines it under
# the same limit rather than recording it as checked.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
t_need skopeo python3
reg_start r plain

# victim: one small layer; bomb: 48 MiB of zeros claiming the victim's
# diff_id; false: other small bytes claiming it; tbomb: zeros, true claim
"$PY" - "$HLIB" "$T" <<'PY'
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from layout import layer, ti, write_layout
T = sys.argv[2]
v = layer([ti("etc/motd", data=b"victim\n")])
write_layout(T + "/victim", [v])
vd = "sha256:" + hashlib.sha256(v[0]).hexdigest()
open(T + "/vdiff", "w").write(vd)
zeros = layer([ti("zeros", data=bytes(48 << 20))])
write_layout(T + "/bomb", [zeros], claim=[vd])
write_layout(T + "/false", [layer([ti("etc/motd", data=b"evil\n")])], claim=[vd])
write_layout(T + "/tbomb", [zeros])
PY
for n in victim bomb false tbomb; do
    skopeo copy -q "oci:$T/$n:latest" "docker://$r_HOST/test/$n:1" --dest-tls-verify=false
done
VD=$(cat "$T/vdiff")
VBLOB=$(jq -r '.layers[0].digest' "$T/victim/blobs/sha256/$(jq -r '.manifests[0].digest' "$T/victim/index.json" | cut -d: -f2)")
export SBX_EXPANSION_FLOOR=$((1 << 20)) SBX_MAX_EXPANSION=20
layer_row() { sqlite3 "$STORE/meta.db" "SELECT verified, zstd_digest FROM layers WHERE diff_id='$VD'"; }

case_ "a bomb claiming the victim's diff_id, pulled first, blocks none of the victim's pulls"
STORE=$T/s1
ok pull "$r_HOST/test/bomb:1"
assert_eq "$(layer_row | cut -d'|' -f1)" 0 "the bomb is stored unchecked"
ok pull "$r_HOST/test/victim:1"
assert_eq "$(layer_row)" "1|$VBLOB" "the victim's blob, checked, replaced it"
ok unpack "$r_HOST/test/victim:1" "$T/v1"
assert_eq "$(cat "$T/v1/etc/motd")" "victim" "the victim's tree"
STORE=$T/s1b
ok pull "$r_HOST/test/bomb:1"
ok pull --unpack "$r_HOST/test/victim:1"
assert_eq "$(layer_row)" "1|$VBLOB" "pull --unpack: the victim's blob, checked"
# the squatter's image now reads the real layer its config names
ok unpack "$r_HOST/test/bomb:1" "$T/b1"
assert_eq "$(cat "$T/b1/etc/motd")" "victim" "the diff_id's real tree"
ok fsck

case_ "false bytes claiming the victim's diff_id, pulled first, do not make load skip the real layer"
STORE=$T/s2
ok pull "$r_HOST/test/false:1"
ok load "$T/victim"
assert_eq "$(sqlite3 "$STORE/meta.db" "SELECT verified FROM layers WHERE diff_id='$VD'")" 1 \
    "the loaded layer, checked, replaced the false one"
vdigest=$(tail -1 "$T/out" | grep -o 'sha256:[0-9a-f]\{64\}' | tail -1)
ok unpack "$vdigest" "$T/v2"
assert_eq "$(cat "$T/v2/etc/motd")" "victim" "the loaded victim's tree"
ok fsck

case_ "a bomb with its true diff_id: the first unpack and fsck stop at the limit"
STORE=$T/s3
ok pull "$r_HOST/test/tbomb:1"
fails unpack "$r_HOST/test/tbomb:1" "$T/tb1"
err_has "expands beyond [0-9]+ bytes from [0-9]+ compressed"
[[ ! -e $T/tb1 ]] || fail "the bomb's unpack left $T/tb1"
if "$SBX_BIN" fsck --store "$STORE" >/dev/null 2>"$T/err"; then fail "fsck recorded the bomb as checked"; fi
err_has "expands beyond"
assert_eq "$(sqlite3 "$STORE/meta.db" "SELECT count(*) FROM layers")" 0 "quarantined"
unset SBX_EXPANSION_FLOOR SBX_MAX_EXPANSION

t_pass
