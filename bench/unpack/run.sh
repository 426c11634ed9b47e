#!/bin/bash
# bench/unpack: unpack one real multi-MB layer with sbx-image's unpack
# (rootfs/layer_unpack.c, through bench_unpack_layer) against the real
# alternatives on the same bytes, as ratios in one run; medians of RUNS runs:
#   - `tar -xpf` of the uncompressed tar (GNU tar, as root: owners, modes,
#     times; --xattrs as sbx-image keeps xattrs),
#   - `zstd -dc <stored file> | tar -xpf -` (what the store holds),
#   - `umoci unpack` of a one-layer OCI layout holding the same tar.
# sbx-image is timed twice: from a plain tar (sbx_rootfs_unpack_tar_fd) and from the
# store (sbx_rootfs_layer_unpack: zstd decompression + extraction, the builder's path).
# Every run starts after `sync`, so no one pays for the previous run's writes.
# BUSY=1 models a busy host instead: before each timed run, a neighbour writes
# a copy of the layer (about its size of dirty data, not synced) on the same
# filesystem, as other unpacks and builds on a runtime host do.
# Input: LAYER=path (a .tar, or a .zst of one, e.g. a stored Debian base layer
# <store>/layers/sha256/<hex>.zst); default: a tar of real files under /usr
# and /etc (about 200 MB).
# Usage: bench/unpack/run.sh [BUILD_DIR]   (env: LAYER= RUNS=5 BUSY=0 UMOCI=1 BENCH_DIR=/tmp)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
TOOL=$BUILD/bench/bench_unpack_layer
[[ -x $TOOL ]] || { echo "bench: build first: scripts/build.sh $BUILD" >&2; exit 1; }
RUNS=${RUNS:-5}
W=$(mktemp -d "${BENCH_DIR:-/tmp}/sbx-bench-unpack.XXXXXX")
trap 'rm -rf "$W"' EXIT

if [[ -n ${LAYER:-} && $LAYER == *.zst ]]; then
  zstd -dcq "$LAYER" >"$W/layer.tar"
elif [[ -n ${LAYER:-} ]]; then
  cp "$LAYER" "$W/layer.tar"
else
  tar -C / -cf "$W/layer.tar" etc usr/share/doc usr/share/man usr/share/perl5 usr/sbin \
    usr/include usr/share/locale 2>/dev/null || true
fi
entries=$(tar -tf "$W/layer.tar" | wc -l)
bytes=$(stat -c %s "$W/layer.tar")
echo "input: $((bytes >> 20)) MiB tar, $entries entries${LAYER:+ (from $LAYER)}" >&2

diff_id=$("$TOOL" put "$W/store" "$W/layer.tar")
hex=${diff_id#sha256:}
stored=$W/store/layers/sha256/$hex.zst

have_umoci=0
if [[ ${UMOCI:-1} == 1 ]] && command -v umoci >/dev/null; then
  have_umoci=1
  o=$W/oci
  mkdir -p "$o/blobs/sha256"
  ln "$W/layer.tar" "$o/blobs/sha256/$hex"
  cfg='{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["'$diff_id'"]}}'
  printf '%s' "$cfg" >"$o/cfg"
  csha=$(sha256sum "$o/cfg" | cut -d' ' -f1); mv "$o/cfg" "$o/blobs/sha256/$csha"
  man='{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'$csha'","size":'${#cfg}'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"'$diff_id'","size":'$bytes'}]}'
  printf '%s' "$man" >"$o/man"
  msha=$(sha256sum "$o/man" | cut -d' ' -f1); mv "$o/man" "$o/blobs/sha256/$msha"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$o/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
    "$msha" "${#man}" >"$o/index.json"
fi
cat "$W/layer.tar" "$stored" >/dev/null # warm the page cache for every side

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Wall seconds on stdout; CPU seconds (user+sys, children included) appended to
# $W/<name>.cpu.  The machine is shared, so CPU time is the steadier figure;
# waiting for the disk (a sync) only shows in wall time.
secs() {
  local name=$1; shift
  local TIMEFORMAT='%R %U %S'
  { time "$@" >/dev/null 2>&1; } 2>"$W/time"
  awk '{print $2 + $3}' "$W/time" >>"$W/$name.cpu"
  awk '{print $1}' "$W/time"
}
calc() { awk "BEGIN {print $*}"; }
fresh() {
  rm -rf "$W/out" "$W/store/unpacked/$hex" "$W/bundle" "$W/neighbour"
  sync
  if [[ ${BUSY:-0} == 1 ]]; then cp "$W/layer.tar" "$W/neighbour"; fi
}

for f in sbx_tar sbx_store tar zstd_tar umoci; do : >"$W/$f"; : >"$W/$f.cpu"; done
for ((i = 0; i < RUNS; i++)); do
  fresh; a=$(secs sbx_tar "$TOOL" tar "$W/layer.tar" "$W/out")
  fresh; b=$(secs sbx_store "$TOOL" store "$W/store" "$diff_id")
  fresh; mkdir "$W/out"
  c=$(secs tar tar --xattrs --xattrs-include='*' -xpf "$W/layer.tar" -C "$W/out")
  fresh; mkdir "$W/out"
  d=$(secs zstd_tar bash -c "zstd -dcq '$stored' | tar --xattrs --xattrs-include='*' -xpf - -C '$W/out'")
  e=0
  if ((have_umoci)); then fresh; e=$(secs umoci umoci unpack --image "$W/oci:bench" "$W/bundle"); fi
  echo "$a" >>"$W/sbx_tar"; echo "$b" >>"$W/sbx_store"; echo "$c" >>"$W/tar"
  echo "$d" >>"$W/zstd_tar"; echo "$e" >>"$W/umoci"
  echo "run $((i + 1)): sbx tar ${a}s, sbx store ${b}s; tar -x ${c}s, zstd|tar ${d}s, umoci ${e}s" >&2
done
fresh
m() { median <"$W/$1"; }
a=$(m sbx_tar); b=$(m sbx_store); c=$(m tar); d=$(m zstd_tar); e=$(m umoci)
ac=$(m sbx_tar.cpu); bc=$(m sbx_store.cpu); cc=$(m tar.cpu); dc=$(m zstd_tar.cpu)
ec=$(m umoci.cpu)
printf '\nbench/unpack: %d MiB layer, %d entries, median of %d runs (2 shared cores)%s\n' \
  "$((bytes >> 20))" "$entries" "$RUNS" "$([[ ${BUSY:-0} == 1 ]] && echo ', busy: a neighbour'"'"'s dirty data pending')"
printf '                                      wall s   CPU s   wall ratio   CPU ratio\n'
printf '  sbx-image unpack, plain tar:        %6.2f  %6.2f   %5.2f        %5.2f   (vs tar -x)\n' \
  "$a" "$ac" "$(calc "$a / $c")" "$(calc "$ac / $cc")"
printf '  sbx-image unpack, from the store:   %6.2f  %6.2f   %5.2f        %5.2f   (vs zstd | tar)\n' \
  "$b" "$bc" "$(calc "$b / $d")" "$(calc "$bc / $dc")"
printf '  tar -xpf (uncompressed):            %6.2f  %6.2f\n' "$c" "$cc"
printf '  zstd -dc stored | tar -xpf -:       %6.2f  %6.2f\n' "$d" "$dc"
if ((have_umoci)); then
  printf '  umoci unpack (uncompressed layer):  %6.2f  %6.2f   %5.2f        %5.2f   (sbx store vs umoci)\n' \
    "$e" "$ec" "$(calc "$b / $e")" "$(calc "$bc / $ec")"
fi
printf '  load average at the end: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
