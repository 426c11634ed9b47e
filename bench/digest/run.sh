#!/bin/bash
# bench/digest: the digest of a recipe that copies a tree of N files (default
# 10,000, 1 GiB in total) against `openssl dgst -sha256` over the same files,
# in one run, page cache warm for both; then the second run over the unchanged
# tree (per-file hash cache) against the first.  Medians of ROUNDS runs.
#
#   bench/digest/run.sh [SBX_BIN]    env: FILES=10000 TOTAL_MB=1024 ROUNDS=3
#
# The tree is created under /tmp (or $TMPDIR) and deleted afterwards.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-${SBX_BIN:-$here/../../build/cli/sbx-image}}
files=${FILES:-10000}
total_mb=${TOTAL_MB:-1024}
rounds=${ROUNDS:-3}
[ -x "$bin" ] || { echo "no sbx-image at $bin (build first or pass its path)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sbx-bench-digest.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree="$work/ctx/tree"
mkdir -p "$tree"

echo "creating $files files, $total_mb MiB in total, under $work ..." >&2
bytes=$((total_mb * 1024 * 1024))
per=$(((bytes + files - 1) / files))
openssl rand -out "$work/blob" "$bytes" 2>/dev/null || head -c "$bytes" /dev/urandom >"$work/blob"
(cd "$tree" && split -a 5 -d -b "$per" "$work/blob" f)
rm -f "$work/blob"
# 100 files per directory, some executable, plus a few symlinks.
(cd "$tree" && i=0 && for f in f*; do
   d=$(printf 'd%03d' $((i / 100)))
   [ -d "$d" ] || mkdir "$d"
   mv "$f" "$d/"
   i=$((i + 1))
 done && chmod +x d000/* && ln -s d001 link1 && ln -s ../d002/f00200 d000/link)
nfiles=$(find "$tree" -type f | wc -l)
cat >"$work/ctx/recipe.yaml" <<'Y'
base: sbx
steps:
  - copy: {src: tree, dest: /data/}
Y
sleep 0.1 # past the racy-clean guard (20 ms on ext4/xfs/btrfs/tmpfs)

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

# Warm the page cache so both sides read from memory.
find "$tree" -type f -print0 | xargs -0 cat >/dev/null

# Each measurement: wall seconds, then CPU seconds (user + sys, children included).
TIMEFORMAT='%R %U %S'
measure() { # measure OUTFILE CMD...: prints "wall cpu"
  local out=$1 t
  shift
  t=$({ time "$@" >"$out" 2>/dev/null; } 2>&1)
  awk '{printf "%s %.3f\n", $1, $2 + $3}' <<<"$t"
}
openssl_all() { find "$tree" -type f -print0 | xargs -0 openssl dgst -sha256; }
sbx_digest() { SBX_CACHE_DIR="$work/cache" "$bin" digest "$work/ctx/recipe.yaml"; }

o=() c=() w=() oc=() cc=() wc=()
for r in $(seq "$rounds"); do
  read -r a b < <(measure /dev/null openssl_all)
  o+=("$a") oc+=("$b")
  rm -rf "$work/cache"
  read -r a b < <(measure "$work/d.cold" sbx_digest)
  c+=("$a") cc+=("$b")
  read -r a b < <(measure "$work/d.warm" sbx_digest)
  w+=("$a") wc+=("$b")
  grep -q '^sha256:' "$work/d.cold" || { echo "sbx-image digest failed" >&2; exit 1; }
  cmp -s "$work/d.cold" "$work/d.warm" || { echo "cached digest differs!" >&2; exit 1; }
  echo "round $r: openssl ${o[-1]}s, sbx cold ${c[-1]}s, sbx cached ${w[-1]}s (wall)" >&2
done
mo=$(median "${o[@]}") mc=$(median "${c[@]}") mw=$(median "${w[@]}")
echo "files: $nfiles, bytes: $bytes, cpus: $(nproc), load: $(cut -d' ' -f1-3 /proc/loadavg), rounds: $rounds (medians)"
echo "                                       wall       cpu (user+sys)"
echo "openssl dgst -sha256 (one process):    ${mo}s   $(median "${oc[@]}")s"
echo "sbx-image digest, cold (no cache):     ${mc}s   $(median "${cc[@]}")s   openssl/sbx = $(ratio "$mo" "$mc")x"
echo "sbx-image digest, second run (cached): ${mw}s   $(median "${wc[@]}")s   cold/cached = $(ratio "$mc" "$mw")x"
echo "digest: $(cat "$work/d.cold")"
