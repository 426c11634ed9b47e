#!/bin/bash
# The installed library, as a control plane links it: `cmake --install` puts
# libsbx.so (versioned SONAME), libsbx.a, include/sbx.h + include/sbx/*.h and
# sbx.pc under a prefix; examples/control-plane.c, compiled against that
# prefix alone through pkg-config, resolves a ref on the loopback registry,
# pulls it and unpacks it.  libsbx exports the public API and nothing else.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
t_need cc pkg-config readelf nm
fx_build
reg_start r plain
fx_push r oci-multi=test/oci-multi:v1
P=$T/prefix

case_ "cmake --install into a fresh prefix"
cmake --install "$SBX_BUILD_DIR" --prefix "$P" >"$T/install.log" 2>&1 ||
    { cat "$T/install.log"; fail "cmake --install failed"; }
pc=$(find "$P" -name sbx.pc)
[[ -n $pc ]] || fail "no sbx.pc installed"
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir sbx)
[[ -f $libdir/libsbx.a ]] || fail "no libsbx.a in $libdir"
soname=$(readelf -d "$libdir/libsbx.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
assert_eq "$soname" libsbx.so.0 "SONAME"
[[ -e $libdir/libsbx.so.0 ]] || fail "no libsbx.so.0 link"
for h in sbx.h sbx/api.h sbx/error.h sbx/context.h sbx/store.h sbx/image.h sbx/rootfs.h \
         sbx/registry.h sbx/recipe.h sbx/builder.h; do
    [[ -f $P/include/$h ]] || fail "header $h not installed"
done

case_ "only the public API is exported"
nm -D --defined-only "$libdir/libsbx.so" | awk '$2 ~ /^[TDB]$/ {print $3}' >"$T/syms"
[[ $(wc -l <"$T/syms") -gt 50 ]] || fail "too few exported symbols: $(wc -l <"$T/syms")"
# sbx_ then words joined by single underscores: no sbx__*, sbx_store__*, bld_*, ...
bad=$(grep -vE '^sbx_[a-z0-9]+(_[a-z0-9]+)*$' "$T/syms" | grep -vE '^_(init|fini|edata|end|_bss_start)$' || true)
[[ -z $bad ]] || fail "internal symbols exported: $(echo "$bad" | head -5 | tr '\n' ' ')"
# the same for the static library: its internals are local symbols
nm --defined-only "$libdir/libsbx.a" 2>/dev/null | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort -u >"$T/ssyms"
bad=$(grep -vE '^sbx_[a-z0-9]+(_[a-z0-9]+)*$' "$T/ssyms" || true)
[[ -z $bad ]] || fail "libsbx.a exports internal symbols: $(echo "$bad" | head -5 | tr '\n' ' ')"
grep -qx sbx_registry_resolve "$T/ssyms" || fail "libsbx.a lacks sbx_registry_resolve"
for f in $(grep -ho 'SBX_API [^(]*\bsbx_[a-z0-9_]*(' "$SBX_SOURCE_DIR"/include/sbx/*.h |
           grep -o 'sbx_[a-z0-9_]*(' | tr -d '('); do
    grep -qx "$f" "$T/syms" || fail "public $f is not exported"
done

case_ "a program built against the installed library resolves, pulls and unpacks"
extra=()
# a sanitized build's libsbx needs the sanitizer runtimes in the program too
readelf -d "$libdir/libsbx.so" | grep -q 'libasan' && extra+=(-fsanitize=address,undefined)
cc -Wall -Werror "${extra[@]}" -o "$T/control-plane" "$SBX_SOURCE_DIR/examples/control-plane.c" \
    $(pkg-config --cflags --libs sbx) -Wl,-rpath,"$libdir" 2>"$T/cc.err" ||
    { cat "$T/cc.err"; fail "examples/control-plane.c does not build against the installed library"; }
readelf -d "$T/control-plane" | grep -q 'NEEDED.*libsbx.so.0' || fail "not linked to libsbx.so.0"
# nothing of the build tree: a relocated prefix is enough
grep -q "$SBX_BUILD_DIR" "$pc" && fail "sbx.pc names the build tree"
"$T/control-plane" "$T/cp-store" "$r_HOST/test/oci-multi:v1" "$T/rootfs" >"$T/out" 2>"$T/err" ||
    { cat "$T/out" "$T/err"; fail "control-plane failed"; }
cat "$T/out"
want=$(fx oci-multi .digest)
out_has "^resolved $r_HOST/test/oci-multi:v1 $want"
out_has "^pulled $want $(fx oci-multi '.layers | length') layers"
out_has "^unpacked $want into $T/rootfs"
grep -q '^\[sandbox-create-1\]' "$T/err" || fail "progress did not carry the operation id"
[[ -d $T/rootfs/bin ]] || fail "no rootfs in $T/rootfs"
"$SBX_BIN" --store "$T/cp-store" fsck >/dev/null 2>"$T/err" || { cat "$T/err"; fail "fsck after the example"; }

case_ "the static library links too"
cc -Wall -Werror "${extra[@]}" -o "$T/control-plane-static" \
    "$SBX_SOURCE_DIR/examples/control-plane.c" -I"$P/include" "$libdir/libsbx.a" \
    $(pkg-config --libs-only-l --static sbx | sed 's/-lsbx//') 2>"$T/cc.err" ||
    { cat "$T/cc.err"; fail "examples/control-plane.c does not link against libsbx.a"; }
readelf -d "$T/control-plane-static" | grep -q 'libsbx' && fail "the static build needs libsbx.so"
"$T/control-plane-static" "$T/cp-store" "$r_HOST/test/oci-multi:v1" "$T/rootfs2" >"$T/out" 2>"$T/err" ||
    { cat "$T/out" "$T/err"; fail "the static control-plane failed"; }
out_has "^unpacked $want"

t_pass
