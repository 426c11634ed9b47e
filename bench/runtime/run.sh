#!/bin/bash
# bench/runtime: what a runtime host pays per sandbox, against the real
# alternatives on the same image, as ratios in one run (medians of RUNS):
#   - root filesystem: `sbx-image mount` (overlay of the cached layers)
#     against `umoci unpack` of the same image exported as an OCI layout and
#     `sbx-image unpack --link`, for the Debian base image (debootstrap, one
#     layer) and a 6-layer image with 200 MB of data on top of it;
#   - snapshot: `sbx-image commit` of a 100 MB, 5,000-file change against
#     `tar -c | zstd -3 -T0` of the same upper directory into a file on the
#     same filesystem (commit also hashes both streams, fsyncs and records);
#   - billing: size_bytes of a commit that added 10 MB of new data against
#     that data's own compressed size (tar | zstd -3), for both images.
# Every timed run is the whole command line a runtime host would run (a new
# process: store open included).  Caches are warm for every side (the layers
# unpacked once before, the layout's blobs read once), as on a busy host.
# Usage: bench/runtime/run.sh [BUILD_DIR]  (env: RUNS=5 BENCH_DIR=/tmp
#   BASE_STORE=<a store holding the platform base, to skip debootstrap>)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
SBX=$PWD/$BUILD/cli/sbx-image
[[ -x $SBX ]] || { echo "bench: build first: scripts/build.sh $BUILD" >&2; exit 1; }
command -v umoci >/dev/null || { echo "bench: needs umoci (scripts/deps.sh)" >&2; exit 1; }
RUNS=${RUNS:-5}
W=$(mktemp -d "${BENCH_DIR:-/tmp}/sbx-bench-runtime.XXXXXX")
S=$W/store
cleanup() {
  { grep -o " $W/[^ ]*" /proc/self/mountinfo 2>/dev/null || true; } | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
sbx() { "$SBX" --store "$S" "$@"; }

# ---- the images --------------------------------------------------------------
mkdir -p "$W/ctx"
if [[ -n ${BASE_STORE:-} ]]; then
  cp -a "$BASE_STORE" "$S"
  rm -rf "$S/unpacked" "$S/mounts" "$S/tmp"/*
fi
printf 'base: sbx\nsteps:\n  - env: {BENCH: "1"}\n' >"$W/ctx/debian.yaml"
sbx build --tag bench:debian "$W/ctx/debian.yaml" >/dev/null 2>"$W/build.err" ||
  { cat "$W/build.err" >&2; exit 1; }
{
  echo 'image: bench:debian'
  echo 'steps:'
  for i in 1 2 3 4 5; do
    # per layer 40 MB: 4 incompressible 5 MB files and 1,000 small text files
    echo "  - run_cmd: mkdir -p /data/l$i/small && for j in 1 2 3 4; do head -c 5000000 /dev/urandom > /data/l$i/blob\$j; done && for j in \$(seq 1 1000); do seq \$j \$((j + 2000)) > /data/l$i/small/f\$j; done"
  done
} >"$W/ctx/big.yaml"
sbx build --tag bench:big "$W/ctx/big.yaml" >/dev/null 2>"$W/build.err" ||
  { cat "$W/build.err" >&2; exit 1; }
# umoci (0.4) reads no zstd layers: its layout holds the same layers as
# plain tars (the diff_ids), the manifest re-referenced to them
untar_layout() {
  python3 - "$1" <<'PY'
import hashlib, json, os, subprocess, sys
d = sys.argv[1]
blob = lambda dg: os.path.join(d, "blobs", "sha256", dg.split(":")[1])
def put(data):
    dg = "sha256:" + hashlib.sha256(data).hexdigest()
    open(blob(dg), "wb").write(data)
    return dg
idx = json.load(open(os.path.join(d, "index.json")))
man = json.load(open(blob(idx["manifests"][0]["digest"])))
cfg = json.load(open(blob(man["config"]["digest"])))
for desc, diff_id in zip(man["layers"], cfg["rootfs"]["diff_ids"]):
    subprocess.run(["zstd", "-dqf", blob(desc["digest"]), "-o", blob(diff_id)], check=True)
    os.unlink(blob(desc["digest"]))
    desc.update(mediaType="application/vnd.oci.image.layer.v1.tar", digest=diff_id,
                size=os.path.getsize(blob(diff_id)))
raw = json.dumps(man).encode()
idx["manifests"][0].update(digest=put(raw), size=len(raw))
json.dump(idx, open(os.path.join(d, "index.json"), "w"))
PY
}
for img in debian big; do
  sbx export --tag bench "bench:$img" "$W/oci-$img" >/dev/null 2>&1
  untar_layout "$W/oci-$img"
  find "$W/oci-$img" -type f -exec cat {} + >/dev/null
  sbx mount "bench:$img" "$W/warm" >/dev/null 2>&1 && sbx umount "$W/warm" # layers cached
done

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { # wall seconds of a command (which must succeed); its output discarded
  local t0 t1
  t0=$EPOCHREALTIME
  "$@" >/dev/null 2>"$W/cmd.err" || { echo "bench: failed: $* ($(tail -1 "$W/cmd.err"))" >&2; return 1; }
  t1=$EPOCHREALTIME
  calc "$t1 - $t0"
}
calc() { awk "BEGIN {print $*}"; }
files_of() { find "$1" -xdev | wc -l; }

printf '%-8s %8s %7s  %12s %12s %14s  %10s %10s\n' image files layers "mount (ms)" "umoci (ms)" "unpack --link" "umoci/mount" "link/mount"
for img in debian big; do
  : >"$W/m"; : >"$W/u"; : >"$W/l"
  for ((r = 0; r < RUNS; r++)); do
    secs sbx mount "bench:$img" "$W/mnt" >>"$W/m"
    n=$(files_of "$W/mnt")
    sbx umount "$W/mnt"
    rm -rf "$W/bundle"
    secs umoci unpack --image "$W/oci-$img:bench" "$W/bundle" >>"$W/u"
    rm -rf "$W/bundle" "$W/tree"
    secs sbx unpack --link "bench:$img" "$W/tree" >>"$W/l"
    rm -rf "$W/tree"
  done
  layers=$(sbx inspect --json "bench:$img" | python3 -c 'import json,sys; o=json.load(sys.stdin); print(len(o.get("layers") or o["manifest"]["layers"]))' 2>/dev/null || echo "?")
  m=$(median <"$W/m"); u=$(median <"$W/u"); l=$(median <"$W/l")
  printf '%-8s %8s %7s  %12.1f %12.1f %14.1f  %9.0fx %9.0fx\n' "$img" "$n" "$layers" \
    "$(calc "$m * 1000")" "$(calc "$u * 1000")" "$(calc "$l * 1000")" "$(calc "$u / $m")" "$(calc "$l / $m")"
done

# ---- commit: 100 MB in 5,000 files ---------------------------------------------
echo
printf '%-8s %12s %20s %8s\n' image "commit (s)" "tar|zstd -3 -T0 (s)" ratio
mkchange() { # DIR MB FILES: FILES files, half random, half text, MB in all
  python3 - "$@" <<'PY'
import os, random, sys
d, mb, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per = mb * 1000000 // n
rnd = random.Random(7)
for i in range(n):
    sub = os.path.join(d, "d%02d" % (i % 50))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "f%05d" % i), "wb") as f:
        if i % 2:
            f.write(os.urandom(per))
        else:
            line = ("%d %s\n" % (i, "x" * rnd.randint(10, 70))).encode()
            f.write((line * (per // len(line) + 1))[:per])
PY
}
for img in debian big; do
  : >"$W/c"; : >"$W/t"
  for ((r = 0; r < RUNS; r++)); do
    sbx mount --json "bench:$img" "$W/mnt" >"$W/mnt.json" 2>/dev/null
    upper=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["upper"])' "$W/mnt.json")
    mkchange "$W/mnt/change" 100 5000
    sync
    secs sbx commit "$W/mnt" >>"$W/c"
    secs sh -c "tar -C '$upper' -cf - . | zstd -3 -T0 -q -f -o '$W/ref.tar.zst'" >>"$W/t"
    rm -f "$W/ref.tar.zst"
    sbx umount "$W/mnt"
    sbx gc >/dev/null 2>&1
  done
  c=$(median <"$W/c"); t=$(median <"$W/t")
  printf '%-8s %12.2f %20.2f %7.2fx\n' "$img" "$c" "$t" "$(calc "$c / $t")"
done

# ---- size_bytes of 10 MB of new data -------------------------------------------
echo
printf '%-8s %14s %18s %8s\n' image size_bytes "tar|zstd -3 bytes" ratio
for img in debian big; do
  sbx mount "bench:$img" "$W/mnt" >/dev/null 2>&1
  mkchange "$W/mnt/new" 10 500
  ref=$(tar -C "$W/mnt" -cf - new | zstd -3 -q -c | wc -c)
  size=$(sbx commit --json "$W/mnt" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["size_bytes"])')
  sbx umount "$W/mnt"
  printf '%-8s %14d %18d %7.3fx\n' "$img" "$size" "$ref" "$(calc "$size / $ref")"
done
