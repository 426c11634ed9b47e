#!/bin/bash
# gc --unpacked against real unpacks: while 8 unpacks (half --link) of one
# image run from a cold layer cache, gc --unpacked runs in a loop; every unpack
# completes with a correct tree, because its lease keeps the layers' unpacked
# dirs.  Then, with nothing running, gc --unpacked empties the cache: the
# layers, the name and the --link trees (which share files with the cache)
# stay intact, df counts nothing unpacked, and the next unpack unpacks again.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
source "$SBX_SOURCE_DIR/tests/integration/lib/unpack_lib.sh"
b_init
u_image gcu:img >/dev/null
rm -rf "$STORE/unpacked"
layers=$(sbx df --json | jq .layers)

pids=()
for i in 1 2 3 4 5 6 7 8; do
    args=()
    ((i % 2 == 0)) && args=(--link)
    "$SBX_BIN" --store "$STORE" unpack --no-sync "${args[@]}" gcu:img "$T/c$i" >/dev/null 2>"$T/c$i.err" &
    pids+=($!)
done
alive() { local p; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
runs=0
while alive; do
    sbx gc --unpacked --json >>"$T/gc.json" 2>"$T/gc.err" || { cat "$T/gc.err"; b_die "gc --unpacked failed"; }
    runs=$((runs + 1))
done
for i in 1 2 3 4 5 6 7 8; do
    wait "${pids[i - 1]}" || { cat "$T/c$i.err"; b_die "unpack $i failed while gc --unpacked ran"; }
done
u_check_tree "$T/c1"
(cd "$T/c1" && find . -printf '%p %U:%G %m %y %s %l\n' | sort) >"$T/expected"
sums() { (cd "$1" && find . -type f -exec md5sum {} + | sort -k2); }
sums "$T/c1" >"$T/expected.md5"
for i in 2 3 4 5 6 7 8; do
    (cd "$T/c$i" && find . -printf '%p %U:%G %m %y %s %l\n' | sort) | cmp -s - "$T/expected" ||
        b_die "tree $i differs from tree 1 after unpacking during gc --unpacked"
    sums "$T/c$i" | cmp -s - "$T/expected.md5" || b_die "tree $i: contents differ"
done
b_pass "8 unpacks while gc --unpacked ran $runs times: all complete and equal"

# The loop's last gc may have run after the unpacks ended: fill the cache
# again (an unpack into one more --link tree), then, with nothing running,
# the whole cache goes and nothing else does.
sbx unpack --no-sync --link gcu:img "$T/c9" >/dev/null 2>"$T/c9.err" || { cat "$T/c9.err"; b_die "unpack 9"; }
n=$(find "$STORE/unpacked" -mindepth 1 -maxdepth 1 | wc -l)
((n == layers)) || b_die "after unpack 9: $n cache dirs, want $layers"
sbx gc --unpacked --json >"$T/gc.out"
jq -e --argjson n "$layers" '.unpacked_removed == $n and .unpacked_bytes_freed > 0 and
  .layers_removed == 0 and .blobs_removed == 0' "$T/gc.out" >/dev/null ||
    b_die "gc --unpacked with nothing running: $(cat "$T/gc.out") (want $layers dirs)"
[[ -z $(ls -A "$STORE/unpacked") && -z $(ls -A "$STORE/tmp") ]] || b_die "cache or trash left"
sbx df --json | jq -e --argjson n "$layers" '.unpacked_bytes == 0 and .layers == $n' >/dev/null ||
    b_die "df after gc --unpacked: $(sbx df --json)"
for i in 2 4 6 8 9; do
    sums "$T/c$i" | cmp -s - "$T/expected.md5" || b_die "--link tree $i damaged by gc --unpacked"
done
sbx fsck >/dev/null 2>"$T/fsck.err" || { cat "$T/fsck.err"; b_die "fsck not clean"; }
sbx unpack --no-sync gcu:img "$T/again" >/dev/null 2>"$T/again.err" || { cat "$T/again.err"; b_die "unpack after gc --unpacked"; }
u_check_tree "$T/again"
n=$(find "$STORE/unpacked" -mindepth 1 -maxdepth 1 | wc -l)
((n == layers)) || b_die "unpack after gc --unpacked: $n cache dirs, want $layers"
b_pass "gc --unpacked: cache emptied, layers and --link trees intact, the next unpack unpacks again"
