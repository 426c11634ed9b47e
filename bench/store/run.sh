#!/bin/bash
# bench/store: put a 1 GiB layer into the store and read it back, against
# `openssl dgst -sha256` then `zstd -T0 -3` on the same file (the work the
# store does: diff_id + compression), as ratios in one run; medians of RUNS
# runs; peak memory of the store process.  The input is real files: tar
# stream of /usr/lib, cut at the size.
# Usage: bench/store/run.sh [BUILD_DIR]   (env: SIZE_MIB=1024 RUNS=3 BENCH_DIR=/tmp)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
TOOL=$BUILD/bench/bench_store_put_read
[[ -x $TOOL ]] || { echo "bench: build first: scripts/build.sh $BUILD" >&2; exit 1; }
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
W=$(mktemp -d "${BENCH_DIR:-/tmp}/sbx-bench-store.XXXXXX")
trap 'rm -rf "$W"' EXIT

echo "input: ${SIZE_MIB} MiB of tar (from /usr/lib)" >&2
{ tar -C /usr -cf - lib 2>/dev/null || true; } | head -c $((SIZE_MIB << 20)) >"$W/layer.tar"
(( $(stat -c %s "$W/layer.tar") == SIZE_MIB << 20 )) || { echo "bench: /usr/lib is too small" >&2; exit 1; }
cat "$W/layer.tar" >/dev/null # warm the page cache for both sides

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Wall seconds on stdout; CPU seconds (user+sys) appended to $W/cpu.
# (bash's time keyword: no tools beyond coreutils and awk.)
secs() {
  local TIMEFORMAT='%R %U %S'
  { time "$@" >/dev/null 2>&1; } 2>"$W/time"
  awk '{print $2 + $3}' "$W/time" >>"$W/cpu"
  awk '{print $1}' "$W/time"
}
calc() { awk "BEGIN {print $*}"; }

: >"$W/put"; : >"$W/read"; : >"$W/rss"; : >"$W/base"; : >"$W/sha"; : >"$W/zstd"
: >"$W/cpu"; : >"$W/scpu"; : >"$W/bcpu"
for ((i = 0; i < RUNS; i++)); do
  rm -rf "$W/store" "$W/out.zst"
  sync
  read -r put rd rss diff total scpu < <("$TOOL" "$W/store" "$W/layer.tar")
  echo "$put" >>"$W/put"; echo "$rd" >>"$W/read"; echo "$rss" >>"$W/rss"; echo "$scpu" >>"$W/scpu"
  stored=$(stat -c %s "$W/store/layers/sha256/${diff#sha256:}.zst")
  sync
  a=$(secs openssl dgst -sha256 "$W/layer.tar")
  b=$(secs zstd -T0 -3 -q -f "$W/layer.tar" -o "$W/out.zst")
  echo "$a" >>"$W/sha"; echo "$b" >>"$W/zstd"; calc "$a + $b" >>"$W/base"
  tail -2 "$W/cpu" | awk '{s += $1} END {print s}' >>"$W/bcpu"
  echo "run $((i + 1)): store put ${put}s + read ${rd}s; openssl ${a}s + zstd ${b}s" >&2
done
put=$(median <"$W/put"); rd=$(median <"$W/read"); base=$(median <"$W/base")
sha=$(median <"$W/sha"); zs=$(median <"$W/zstd"); rss=$(sort -g "$W/rss" | tail -1)
zsize=$(stat -c %s "$W/out.zst")
scpu=$(median <"$W/scpu"); bcpu=$(median <"$W/bcpu")
printf '\nbench/store: %d MiB layer, median of %d runs (2 cores)\n' "$SIZE_MIB" "$RUNS"
printf '  store put (sha256 diff_id + zstd -3, 2 workers, + sha256 of output, fsync): %.2f s\n' "$put"
printf '  store read back (stream decompress, zstd checksum):                         %.2f s\n' "$rd"
printf '  openssl dgst -sha256: %.2f s, then zstd -T0 -3: %.2f s; pair: %.2f s\n' "$sha" "$zs" "$base"
printf '  ratio put / pair:           %.2f\n' "$(calc "$put / $base")"
printf '  ratio put+read / pair:      %.2f   (goal: <= 1.00)\n' "$(calc "($put + $rd) / $base")"
printf '  CPU seconds (user+sys): store put+read %.2f, pair %.2f\n' "$scpu" "$bcpu"
printf '  load average at the end: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '  stored size: %d bytes (zstd CLI: %d)\n' "$stored" "$zsize"
printf '  peak RSS of the store process: %.1f MiB (goal: < 64)\n' "$(calc "$rss / 1024")"
