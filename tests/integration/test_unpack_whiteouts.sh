#!/bin/bash
# Whiteout names against umoci's reading of the same image: an OCI layout
# (made here) whose second layer holds a directory entry ".wh.x/" (a
# whiteout), an opaque directory, a whiteout of nothing and aufs metadata;
# skopeo copies it to the loopback registry, sbx-image pulls and unpacks it,
# and the tree must be umoci's.  An opaque marker at a layer's root is
# refused at unpack with a message naming it.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
t_need umoci skopeo python3
reg_start r plain

# mk_layout DIR ROOT_OPAQUE: a two-layer gzip OCI layout tagged "latest".
mk_layout() {
    "$PY" - "$1" "$2" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out, root_opaque = sys.argv[1], sys.argv[2] == "1"
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(data)
    return "sha256:" + d, len(data)
def ti(name, kind=tarfile.REGTYPE, data=b""):
    m = tarfile.TarInfo(name); m.type = kind; m.mtime = 1000
    m.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind == tarfile.REGTYPE: m.size = len(data)
    return m, data
def layer(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for m, data in members:
            t.addfile(m, io.BytesIO(data) if m.type == tarfile.REGTYPE else None)
    raw = buf.getvalue()
    return raw, gzip.compress(raw, mtime=0)
base = layer([ti("a", tarfile.DIRTYPE), ti("a/x", data=b"x\n"), ti("a/y", data=b"y\n"),
              ti("b", tarfile.DIRTYPE), ti("b/z", data=b"z\n"),
              ti("c", tarfile.DIRTYPE), ti("c/keep", data=b"k\n")])
if root_opaque:
    top = layer([ti(".wh..wh..opq"), ti("new", data=b"n\n")])
else:
    # parents listed, as docker and buildah write layers (a parent a layer
    # leaves out is created by the extractor: see docs/sandbox.md)
    top = layer([ti("a", tarfile.DIRTYPE), ti("a/.wh.x", tarfile.DIRTYPE),
                 ti("a/.wh..wh.aufs"), ti("b", tarfile.DIRTYPE), ti("b/.wh..wh..opq"),
                 ti("b/new", data=b"n\n"), ti("c", tarfile.DIRTYPE), ti("c/.wh.gone")])
layers, diff_ids = [], []
for raw, gz in (base, top):
    d, n = blob(gz)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
cd, cn = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                          "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())
md, mn = blob(json.dumps({"schemaVersion": 2,
                          "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                     "digest": cd, "size": cn},
                          "layers": layers}).encode())
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": md, "size": mn, "platform": {"architecture": "amd64", "os": "linux"},
           "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
          open(f"{out}/index.json", "w"))
PY
}
listing() {
    (cd "$1" && find . -mindepth 1 -printf '%P %U:%G %m %y %l\n' && find . -type f -exec md5sum {} +) | sort
}

case_ "whiteout names: sbx-image unpack gives umoci's tree"
[[ $(uname -m) == x86_64 ]] || { echo "skip: the layout is made for amd64"; t_pass; exit 0; }
mk_layout "$T/lay" 0
umoci unpack --image "$T/lay:latest" "$T/umoci" >/dev/null 2>"$T/umoci.err" ||
    fail "umoci unpack: $(cat "$T/umoci.err")"
skopeo copy -q "oci:$T/lay:latest" "docker://$r_HOST/test/wh:1" --dest-tls-verify=false
ok pull "$r_HOST/test/wh:1"
ok unpack "$r_HOST/test/wh:1" "$T/sbx"
listing "$T/umoci/rootfs" >"$T/l-umoci"
listing "$T/sbx" >"$T/l-sbx"
diff -u "$T/l-umoci" "$T/l-sbx" || fail "sbx-image's tree differs from umoci's"
for p in a/x a/.wh.x b/z; do [[ ! -e $T/sbx/$p ]] || fail "$p is in the tree"; done
[[ -f $T/sbx/a/y && -f $T/sbx/b/new && -f $T/sbx/c/keep ]] || fail "kept files are missing"

case_ "an opaque marker at a layer's root is refused, naming it"
mk_layout "$T/lay2" 1
skopeo copy -q "oci:$T/lay2:latest" "docker://$r_HOST/test/wh:root" --dest-tls-verify=false
ok pull "$r_HOST/test/wh:root"
fails unpack "$r_HOST/test/wh:root" "$T/sbx2"
err_has "refusing entry '.wh..wh..opq': an opaque whiteout at the layer's root"
[[ ! -e $T/sbx2 ]] || fail "a refused unpack left $T/sbx2"

t_pass
