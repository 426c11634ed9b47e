#!/bin/bash
# No-op rebuild in detail: a 5-step busybox recipe (run_cmd x3, env, copy),
# built once, then rebuilt unchanged.  Prints the median wall time
# (hyperfine, 30 runs), the syscalls of one no-op rebuild that cost the most
# (fdatasync, pread64 of the SQLite WAL) and, for the store's figures, the same
# rebuild after the store's WAL was checkpointed and truncated.
#
#   bench/build/noop.sh [BUILD_DIR] [OTHER_SBX_IMAGE]
#
# OTHER_SBX_IMAGE (e.g. a binary built from an older commit) is timed in the
# same run against the same store, as a ratio.  Needs busybox, hyperfine and
# strace (Debian packages; bench only), python3.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
other=${2:-}
sbx=$build/cli/sbx-image
driver=$build/tests/test_builder
for c in busybox hyperfine strace python3; do
    command -v $c >/dev/null || { echo "missing '$c'" >&2; exit 1; }
done
[[ -x $sbx && -x $driver ]] || { echo "build $build first (sbx-image and the tests)" >&2; exit 1; }

T=$(mktemp -d /var/tmp/sbx-noop.XXXXXX)
trap 'rm -rf "$T"' EXIT
export SBX_BIN=$sbx SBX_SOURCE_DIR=$src SBX_BUILD_DIR=$build
# shellcheck source=../../tests/integration/lib/build_lib.sh
(source "$src/tests/integration/lib/build_lib.sh"; b_busybox_rootfs "$T/rootfs")
"$driver" --seed "$T/store" "$T/rootfs" busybox:bench >/dev/null
mkdir -p "$T/ctx"
echo data >"$T/ctx/data.txt"
cat >"$T/ctx/r.yaml" <<'YAML'
image: busybox:bench
steps:
  - run_cmd: echo one > /one
  - run_cmd: echo two > /two
  - env: {K: v}
  - copy: {src: data.txt, dest: /data/data.txt}
  - run_cmd: echo last > /last
YAML
cmd="$sbx --store $T/store build $T/ctx/r.yaml"
$cmd >/dev/null 2>&1

median_ms() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [print("%.1f" % (r["median"]*1e3)) for r in d["results"]]' "$1"; }
syscalls() { # syscalls STORE: "fdatasync N, pread64 N" for one no-op rebuild
    strace -f -c -o "$T/sc" "$sbx" --store "$1" build "$T/ctx/r.yaml" >/dev/null 2>&1
    awk '$NF == "fdatasync" || $NF == "fsync" {s += $4} $NF == "pread64" {p = $4}
         END {printf "fsync/fdatasync %d, pread64 %d", s, p}' "$T/sc"
}

if [[ -n $other ]]; then
    hyperfine -N -w 3 -r 30 --export-json "$T/h.json" "$other --store $T/store build $T/ctx/r.yaml" "$cmd" >/dev/null 2>&1
    read -r m_other m_this < <(median_ms "$T/h.json" | xargs)
    echo "no-op rebuild, 5 steps, median of 30: other ${m_other} ms, this ${m_this} ms, ratio $(python3 -c "print('%.2f' % ($m_this / $m_other))")"
else
    hyperfine -N -w 3 -r 30 --export-json "$T/h.json" "$cmd" >/dev/null 2>&1
    echo "no-op rebuild, 5 steps, median of 30: $(median_ms "$T/h.json") ms"
fi
echo "  one no-op rebuild: $(syscalls "$T/store"); WAL $(stat -c %s "$T/store/meta.db-wal" 2>/dev/null || echo 0) bytes"

# The same store with its WAL checkpointed and truncated (what a store that
# truncates its WAL would give every opener).
cp -a "$T/store" "$T/store-t"
python3 -c 'import sqlite3,sys; c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close()' "$T/store-t/meta.db"
hyperfine -N -w 3 -r 30 --export-json "$T/h2.json" "$sbx --store $T/store-t build $T/ctx/r.yaml" >/dev/null 2>&1
echo "  with the WAL truncated first: $(median_ms "$T/h2.json") ms; $(syscalls "$T/store-t")"
