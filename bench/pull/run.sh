#!/bin/bash
# bench/pull: sbx-image against skopeo on the same loopback docker-registry,
# in one run, as ratios of medians.
#
#   bench/pull/run.sh [BUILD_DIR]        (default: build; use a non-sanitized build)
#   env: RUNS (default 5), MB (image size, default 48), RESOLVE_RUNS (default 15)
#
# 1. pull of a multi-layer gzip image (busybox + 4 layers of random and
#    text-like files) into an empty store  vs  skopeo copy docker:// oci:DIR
# 2. pull + unpack to a directory           vs  skopeo copy + umoci unpack
#    (only when this sbx-image has an unpack verb; otherwise reported as skipped)
# 3. resolve of a tag (cache off)           vs  skopeo inspect --raw
# Peak RSS of each comes from /usr/bin/time -v.  sbx-image does more work in
# (1): it checks the compressed digest and the uncompressed diff_id, and
# recompresses every layer to zstd for the store.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
SBX_BIN=$build/cli/sbx-image
[[ -x $SBX_BIN ]] || SBX_BIN=$build/sbx-image
UNPACK_TOOL=$build/bench/bench_pull_unpack
export SBX_BIN SBX_SOURCE_DIR=$src SBX_BUILD_DIR=$build
RUNS=${RUNS:-5}
((EUID == 0)) || ROOTLESS=1
RESOLVE_RUNS=${RESOLVE_RUNS:-15}
MB=${MB:-48}
source "$src/tests/integration/lib/registry.sh"
t_init "$@"
command -v umoci >/dev/null || t_die "umoci missing (scripts/deps.sh installs it)"
[[ -x /usr/bin/time ]] || t_die "/usr/bin/time missing (Debian package 'time')"
if nm -an "$SBX_BIN" 2>/dev/null | grep -q __asan_init; then
    echo "warning: $SBX_BIN is built with sanitizers; numbers will be slow" >&2
fi

echo "building a ${MB} MB bench image..."
FX=$T/bench-image
"$PY" "$HLIB/fixtures.py" bench "$FX" --mb "$MB"
reg_start r plain
fx_push r bench=bench/img:v1
REF=$r_HOST/bench/img:v1
img_bytes=$(jq '[.bench.layers[].size] | add' "$FX/facts.json")
raw_bytes=$(for d in $(jq -r '.bench.layers[].digest' "$FX/facts.json"); do
    gzip -dc "$FX/blobs/sha256/${d#sha256:}"; done | wc -c)
nlayers=$(jq '.bench.layers | length' "$FX/facts.json")

# measure NAME CMD...: wall seconds and peak RSS (KiB) appended to $T/NAME.
measure() {
    local name=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$T/time.$name" "$@" >/dev/null 2>"$T/stderr.$name" ||
        { cat "$T/stderr.$name" >&2; t_die "$name failed: $*"; }
    t1=$(date +%s.%N)
    local rss
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$T/time.$name")
    echo "$t0 $t1 $rss" | awk '{printf "%.6f %d\n", $2 - $1, $3}' >>"$T/$name"
}
median() { sort -n -k1,1 "$T/$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
maxrss() { sort -n -k2,2 "$T/$1" | tail -1 | awk '{print $2}'; }

# Unpack: the CLI's unpack verb if it has one, else bench_pull_unpack (the
# builder's sbx_layer_unpack: one cached directory per layer, as overlayfs
# lowers; umoci instead merges all layers into one rootfs).
has_unpack=0 unpack_how=""
diff_ids=$(jq -r '.bench.diff_ids[]' "$FX/facts.json")
if "$SBX_BIN" --help 2>&1 | grep -qE '^\s+unpack\b'; then
    has_unpack=1 unpack_how="sbx-image unpack"
elif [[ -x $UNPACK_TOOL ]]; then
    has_unpack=1 unpack_how="bench_pull_unpack (sbx_layer_unpack per layer)"
fi
# unpack_cmd STORE DEST: sets UNPACK to the command that unpacks the image.
unpack_cmd() {
    if [[ $unpack_how == "sbx-image unpack" ]]; then
        UNPACK=("$SBX_BIN" unpack --store "$1" "$REF" "$2")
    else
        # shellcheck disable=SC2206
        UNPACK=("$UNPACK_TOOL" "$1" $diff_ids)
    fi
}

echo "warm-up..."
"$SBX_BIN" pull --store "$T/warm" "$REF" >/dev/null 2>&1
skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$T/warm-oci:img"
rm -rf "$T/warm" "$T/warm-oci"

for i in $(seq "$RUNS"); do
    echo "run $i/$RUNS"
    # alternate the order so neither side always runs on a warmer cache
    if ((i % 2)); then order="sbx skopeo"; else order="skopeo sbx"; fi
    for who in $order; do
        if [[ $who == sbx ]]; then
            measure sbx_pull "$SBX_BIN" pull --store "$T/s$i" "$REF"
            if ((has_unpack)); then
                unpack_cmd "$T/s$i" "$T/s$i-root"
                measure sbx_unpack "${UNPACK[@]}"
            fi
            rm -rf "$T/s$i" "$T/s$i-root"
        else
            measure skopeo_copy skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$T/o$i:img"
            measure umoci_unpack umoci unpack ${ROOTLESS:+--rootless} --image "$T/o$i:img" "$T/o$i-bundle"
            rm -rf "$T/o$i" "$T/o$i-bundle"
        fi
    done
done

echo "resolve x$RESOLVE_RUNS..."
for i in $(seq "$RESOLVE_RUNS"); do
    SBX_RESOLVE_TTL=0 measure sbx_resolve "$SBX_BIN" resolve --store "$T/r" "$REF"
    measure skopeo_inspect skopeo inspect --raw --tls-verify=false "docker://$REF"
done

sp=$(median sbx_pull); kp=$(median skopeo_copy); ku=$(median umoci_unpack)
sr=$(median sbx_resolve); kr=$(median skopeo_inspect)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo
echo "bench/pull: $nlayers layers, $((img_bytes / 1048576)) MiB gzip, $((raw_bytes / 1048576)) MiB uncompressed; medians of $RUNS runs (resolve: $RESOLVE_RUNS)"
printf '%-34s %9s %9s %7s   %s\n' "" "sbx-image" "skopeo" "ratio" "peak RSS sbx / other (MiB)"
[[ -z $unpack_how ]] || echo "(sbx unpack: $unpack_how)"
printf '%-34s %8.3fs %8.3fs %7s   %d / %d\n' "pull (vs skopeo copy to oci:)" "$sp" "$kp" \
    "$(ratio "$sp" "$kp")" $(( $(maxrss sbx_pull) / 1024 )) $(( $(maxrss skopeo_copy) / 1024 ))
if ((has_unpack)); then
    su=$(median sbx_unpack)
    tot_s=$(awk -v a="$sp" -v b="$su" 'BEGIN {print a + b}')
    tot_k=$(awk -v a="$kp" -v b="$ku" 'BEGIN {print a + b}')
    printf '%-34s %8.3fs %8.3fs %7s   %d / %d\n' "pull+unpack (vs copy+umoci unpack)" "$tot_s" \
        "$tot_k" "$(ratio "$tot_s" "$tot_k")" $(( $(maxrss sbx_unpack) / 1024 )) \
        $(( $(maxrss umoci_unpack) / 1024 ))
else
    printf '%-34s %9s %8.3fs %7s   (this sbx-image has no unpack verb: pull-only)\n' \
        "pull+unpack (vs copy+umoci unpack)" "-" "$(awk -v a="$kp" -v b="$ku" 'BEGIN {print a + b}')" "-"
fi
printf '%-34s %8.3fs %8.3fs %7s   %d / %d\n' "resolve (vs skopeo inspect --raw)" "$sr" "$kr" \
    "$(ratio "$sr" "$kr")" $(( $(maxrss sbx_resolve) / 1024 )) $(( $(maxrss skopeo_inspect) / 1024 ))
echo "goals: pull ratio <= 1.5, resolve ratio <= 0.25, sbx-image peak RSS < 64 MiB"
