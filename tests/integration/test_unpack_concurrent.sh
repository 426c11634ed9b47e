#!/bin/bash
# 8 concurrent unpacks of the same image into different dirs, from a cold
# layer cache (so they also race to unpack each layer), half with --link:
# every tree is complete and correct, one cache dir per layer, nothing left
# in the store's temp areas.  Then 8 more while the image's name is removed
# and gc runs: each unpack either completes correctly (its lease kept the
# layers) or fails cleanly with no dir; the store stays consistent.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
source "$SBX_SOURCE_DIR/tests/integration/lib/unpack_lib.sh"
b_init
digest=$(u_image unpack:conc)
rm -rf "$STORE/unpacked"

pids=()
for i in 1 2 3 4 5 6 7 8; do
    args=()
    ((i % 2 == 0)) && args=(--link)
    "$SBX_BIN" --store "$STORE" unpack "${args[@]}" --json unpack:conc "$T/c$i" >"$T/c$i.out" 2>"$T/c$i.err" &
    pids+=($!)
done
for i in 1 2 3 4 5 6 7 8; do
    wait "${pids[i - 1]}" || { cat "$T/c$i.err"; b_die "concurrent unpack $i failed"; }
done
u_check_tree "$T/c1"
(cd "$T/c1" && find . -printf '%p %U:%G %m %y %s %l\n' | sort) >"$T/expected"
for i in 2 3 4 5 6 7 8; do
    (cd "$T/c$i" && find . -printf '%p %U:%G %m %y %s %l\n' | sort) | cmp -s - "$T/expected" ||
        b_die "tree $i differs from tree 1"
    cmp -s <(md5sum "$T"/c1/data/* 2>/dev/null | sed 's|.*/||') <(md5sum "$T/c$i"/data/* 2>/dev/null | sed 's|.*/||') ||
        b_die "tree $i: contents differ"
done
n=$(find "$STORE/unpacked" -mindepth 1 -maxdepth 1 | wc -l)
((n == 4)) || b_die "expected 4 layer cache dirs, found $n: $(ls "$STORE/unpacked")"
left=$(find "$T" -maxdepth 1 -name '.*sbx-unpack*')
[[ -z $left ]] || b_die "temp dirs left: $left"
b_pass "8 concurrent unpacks (copies and --link) from a cold cache: all complete and equal, one cache dir per layer"

# leases: remove the name and gc while unpacks run
rm -rf "$T"/c?
pids=()
for i in 1 2 3 4 5 6 7 8; do
    "$SBX_BIN" --store "$STORE" unpack --no-sync "$digest" "$T/g$i" >/dev/null 2>"$T/g$i.err" &
    pids+=($!)
done
sbx rm unpack:conc >/dev/null
for _ in 1 2 3; do sbx gc >/dev/null 2>&1 || b_die "gc failed"; done
ok=0
for i in 1 2 3 4 5 6 7 8; do
    if wait "${pids[i - 1]}"; then
        (cd "$T/g$i" && find . -printf '%p %U:%G %m %y %s %l\n' | sort) | cmp -s - "$T/expected" ||
            b_die "unpack $i succeeded during gc but its tree is wrong"
        ok=$((ok + 1))
    else
        [[ ! -e $T/g$i ]] || b_die "failed unpack $i left its dir"
        [[ $(wc -l <"$T/g$i.err") -ge 1 ]] && grep -q "sbx-image: error:" "$T/g$i.err" ||
            b_die "unpack $i failed without a clear error: $(cat "$T/g$i.err")"
    fi
done
echo "$ok of 8 unpacks completed while the name was removed and gc ran"
sbx fsck >/dev/null 2>"$T/fsck.err" || { cat "$T/fsck.err"; b_die "fsck not clean"; }
b_pass "unpacks during rm + gc: each complete and correct, or failed with nothing left; fsck clean"
