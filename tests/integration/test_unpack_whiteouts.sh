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
    "$PY" - "$HLIB" "$1" "$2" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from layout import DIR, layer, ti, write_layout
out, root_opaque = sys.argv[2], sys.argv[3] == "1"
base = layer([ti("a", DIR), ti("a/x", data=b"x\n"), ti("a/y", data=b"y\n"),
              ti("b", DIR), ti("b/z", data=b"z\n"), ti("c", DIR), ti("c/keep", data=b"k\n")])
if root_opaque:
    top = layer([ti(".wh..wh..opq"), ti("new", data=b"n\n")])
else:
    # parents listed, as docker and buildah write layers (a parent a layer
    # leaves out is created by the extractor: see docs/sandbox.md)
    top = layer([ti("a", DIR), ti("a/.wh.x", DIR), ti("a/.wh..wh.aufs"), ti("b", DIR),
                 ti("b/.wh..wh..opq"), ti("b/new", data=b"n\n"), ti("c", DIR),
                 ti("c/.wh.gone")])
write_layout(out, [base, top])
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
