#!/bin/bash
# Decompression bombs: a gzip layer of zeros (about 1000:1) pulled under a
# small expansion limit fails once it expands past the limit, with a message
# naming the limit and how to raise it, and keeps nothing (fsck clean, no
# name, tmp/ empty); raised, the same image pulls.  A normal image pulls
# under the same small limit.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
t_need skopeo python3
fx_build
reg_start r plain
fx_push r oci-multi=test/normal:v1

# a two-layer OCI layout: a small ordinary layer, then 48 MiB of zeros
"$PY" - "$T/lay" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out = sys.argv[1]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(data)
    return "sha256:" + d, len(data)
def layer(name, data):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        m = tarfile.TarInfo(name); m.size = len(data); m.mode = 0o644; m.mtime = 1000
        t.addfile(m, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, gzip.compress(raw, compresslevel=9, mtime=0)
layers, diff_ids = [], []
for raw, gz in (layer("etc/motd", b"hello\n"), layer("zeros", bytes(48 << 20))):
    d, n = blob(gz)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
cd, cn = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                          "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())
md, mn = blob(json.dumps({"schemaVersion": 2,
                          "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                     "digest": cd, "size": cn}, "layers": layers}).encode())
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": md, "size": mn, "platform": {"architecture": "amd64", "os": "linux"},
           "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
          open(f"{out}/index.json", "w"))
PY
skopeo copy -q "oci:$T/lay:latest" "docker://$r_HOST/test/bomb:1" --dest-tls-verify=false

case_ "a bomb stops at the expansion limit and keeps nothing"
export SBX_EXPANSION_FLOOR=$((1 << 20)) SBX_MAX_EXPANSION=20
fails pull --platform linux/amd64 "$r_HOST/test/bomb:1"
err_has "expands beyond [0-9]+ bytes from [0-9]+ compressed"
err_has "SBX_MAX_EXPANSION"
ok fsck
ok images
! grep -q "test/bomb" "$T/out" || fail "the refused image is named"
[[ -z $(ls -A "$STORE/tmp") ]] || fail "tmp/ holds $(ls -A "$STORE/tmp")"

case_ "an ordinary image pulls under the same limit"
ok pull "$r_HOST/test/normal:v1"

case_ "raised, the same image pulls"
export SBX_MAX_EXPANSION=100000
ok pull --platform linux/amd64 "$r_HOST/test/bomb:1"
unset SBX_EXPANSION_FLOOR SBX_MAX_EXPANSION

t_pass
