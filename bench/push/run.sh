#!/bin/bash
# bench/push: sbx-image push against `skopeo copy oci:DIR docker://` and
# `buildah push` of the same images, each push into an empty loopback
# docker-registry, in one run, as ratios of medians; and a fresh store's
# `build --cache-from` of an unchanged recipe against pulling its image.
#
#   bench/push/run.sh [BUILD_DIR]     (root; default build; a non-sanitized build)
#   env: RUNS (default 5), BIG_MB (default 260), BIG_LAYERS (default 5, plus
#        busybox: 6 layers), DEBIAN=0 skips the Debian image, CACHE=0 skips the
#        --cache-from case (it needs an OCI runtime)
#
# Images (sbx-image load puts them in the store as zstd; sbx-image export
# writes them out as an OCI layout of the same blobs, so skopeo sends the
# bytes sbx-image sends; buildah pulls that layout into its own storage and
# pushes from there, recompressing as it always does):
#   debian  debootstrap --variant=minbase bookworm, one layer (cached in
#           BUILD_DIR/bench-debian-rootfs.tar; made before the run enters its
#           loopback-only network namespace)
#   big     busybox plus BIG_LAYERS layers of random and text-like files
# Each measurement pushes into a registry started empty for it, so no tool
# finds a blob there or mounts one from another repository.  Times are
# fork-to-exit; CPU is user+system of the child; peak RSS its ru_maxrss.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
SBX_BIN=$build/cli/sbx-image
export SBX_BIN SBX_SOURCE_DIR=$src SBX_BUILD_DIR=$build
RUNS=${RUNS:-5}
BIG_MB=${BIG_MB:-260}
BIG_LAYERS=${BIG_LAYERS:-5}
DEBIAN=${DEBIAN:-1}
CACHE=${CACHE:-1}
DEB_TAR=$build/bench-debian-rootfs.tar
[[ -x $SBX_BIN ]] || { echo "build first: scripts/build.sh ${1:-build}" >&2; exit 1; }

# ---- before the loopback-only namespace: what needs the network ----------
if [[ -z ${SBX_TEST_NETNS:-} ]]; then
    ((EUID == 0)) || { echo "bench/push runs as root (buildah, debootstrap)" >&2; exit 1; }
    if ! command -v buildah >/dev/null; then
        echo "installing buildah (bench only)..." >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah >/dev/null
    fi
    source "$src/bench/lib/debian_rootfs.sh"
    if ((DEBIAN)); then debian_rootfs_tar "$DEB_TAR" || exit 1; fi
fi

source "$src/tests/integration/lib/registry.sh"
t_init "$@"
t_need skopeo buildah jq
if nm -an "$SBX_BIN" 2>/dev/null | grep -q __asan_init; then
    echo "warning: $SBX_BIN is built with sanitizers; numbers will be slow" >&2
fi
mkdir -p "${XDG_RUNTIME_DIR:-$T/xdg-run}" "$DOCKER_CONFIG" && echo '{"auths": {}}' >"$DOCKER_CONFIG/config.json" # buildah wants one
BAH=(buildah --root "$T/bah-root" --runroot "$T/bah-run" --storage-driver vfs)
STORE=$T/store
measure() {
    local name=$1; shift
    "$PY" "$src/bench/pull/timeit.py" "$T/$name" "$@" >/dev/null || t_die "$name failed: $*"
}
col() { sort -n -k"$2","$2" "$T/$1" | awk -v c="$2" '{a[NR]=$c} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mib() { echo $(( $(sort -n -k2,2 "$T/$1" | tail -1 | awk '{print $2}') / 1024 )); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

# ---- the images ----------------------------------------------------------
IMAGES=()
if ((DEBIAN)); then
    echo "debian image from $DEB_TAR..."
    "$PY" "$HLIB/fixtures.py" tar "$T/fx-debian" debian "$DEB_TAR"
    IMAGES+=(debian)
fi
echo "a ${BIG_MB} MB image in $((BIG_LAYERS + 1)) layers..."
"$PY" "$HLIB/fixtures.py" bench "$T/fx-big" --mb "$BIG_MB" --layers "$BIG_LAYERS" >/dev/null
mv "$T/fx-big" "$T/fx-bench"
IMAGES+=(bench)
for img in "${IMAGES[@]}"; do
    "$SBX_BIN" load --store "$STORE" --tag "bench/$img:1" "$T/fx-$img" >/dev/null 2>&1 ||
        t_die "loading the $img image"
    "$SBX_BIN" export --store "$STORE" --tag v1 "bench/$img:1" "$T/oci-$img" >/dev/null 2>&1 ||
        t_die "exporting the $img image"
    # buildah names the image after the path, which must be lowercase
    ln -sfn "$T/oci-$img" "/tmp/sbxbench-$$-$img"
    "${BAH[@]}" pull -q "oci:/tmp/sbxbench-$$-$img:v1" >"$T/bah-id-$img" 2>"$T/bah.err" || { cat "$T/bah.err" >&2; t_die "buildah pull $img"; }
done

N=0
fresh_reg() { N=$((N + 1)); reg_start "q$N" plain >/dev/null; local h=q${N}_HOST; DEST=${!h}; }
stop_reg() { reg_stop "q$N"; rm -rf "$T/reg-q$N"; }

echo "warm-up..."
for img in "${IMAGES[@]}"; do
    fresh_reg
    "$SBX_BIN" push --store "$STORE" "bench/$img:1" "$DEST/w/$img:1" >/dev/null 2>&1
    skopeo copy -q --dest-tls-verify=false "oci:$T/oci-$img:v1" "docker://$DEST/w2/$img:1"
    stop_reg
done

for i in $(seq "$RUNS"); do
    echo "run $i/$RUNS"
    for img in "${IMAGES[@]}"; do
        # rotate the order so no tool always runs first
        case $((i % 3)) in
        0) order="sbx skopeo buildah" ;; 1) order="skopeo buildah sbx" ;; *) order="buildah sbx skopeo" ;;
        esac
        for who in $order; do
            fresh_reg
            case $who in
            sbx) measure "push_${img}_sbx" "$SBX_BIN" push --store "$STORE" "bench/$img:1" "$DEST/b/$img:1" ;;
            skopeo) measure "push_${img}_skopeo" skopeo copy -q --dest-tls-verify=false \
                "oci:$T/oci-$img:v1" "docker://$DEST/b/$img:1" ;;
            buildah) measure "push_${img}_buildah" "${BAH[@]}" push -q --tls-verify=false \
                "$(cat "$T/bah-id-$img")" "docker://$DEST/b/$img:1" ;;
            esac
            stop_reg
        done
    done
done

# ---- a fresh store's build --cache-from against pulling the image ----------
if ((CACHE)); then
    echo "build --cache-from against pull..."
    reg_start c plain
    "$SBX_BIN" push --store "$STORE" bench/bench:1 "$c_HOST/base/bench:1" >/dev/null 2>&1 ||
        t_die "pushing the base"
    mkdir -p "$T/ctx"
    cat >"$T/ctx/r.yaml" <<YAML
from_registry: $c_HOST/base/bench:1
steps:
  - run_cmd: head -c 20000000 /dev/urandom > /step-random
  - run_cmd: echo made > /made
YAML
    "$SBX_BIN" build --store "$T/builder" --cache-to "$c_HOST/cache" --push "$c_HOST/app/r:1" \
        "$T/ctx/r.yaml" >"$T/build.out" 2>&1 || { tail -n 5 "$T/build.out"; t_die "the first build failed"; }
    "$SBX_BIN" build --store "$T/check" --json --cache-from "$c_HOST/cache" "$T/ctx/r.yaml" \
        2>/dev/null | jq -e '.steps_run == 0' >/dev/null || t_die "a step ran with --cache-from"
    rm -rf "$T/check"
    for i in $(seq "$RUNS"); do
        if ((i % 2)); then order="build pull"; else order="pull build"; fi
        for who in $order; do
            if [[ $who == build ]]; then
                measure cache_build "$SBX_BIN" build --store "$T/cb$i" --cache-from "$c_HOST/cache" "$T/ctx/r.yaml"
                rm -rf "$T/cb$i"
            else
                measure cache_pull "$SBX_BIN" pull --store "$T/cp$i" "$c_HOST/app/r:1"
                rm -rf "$T/cp$i"
            fi
        done
    done
fi

# ---- the table -------------------------------------------------------------
row() { # LABEL A B: wall, CPU, RSS of A against B
    printf '%-40s %7.3fs %7.3fs %6s   %7.3fs %7.3fs %6s   %5s / %s\n' "$1" \
        "$(col "$2" 1)" "$(col "$3" 1)" "$(ratio "$(col "$2" 1)" "$(col "$3" 1)")" \
        "$(col "$2" 3)" "$(col "$3" 3)" "$(ratio "$(col "$2" 3)" "$(col "$3" 3)")" \
        "$(mib "$2")" "$(mib "$3")"
}
echo
echo "bench/push: medians of $RUNS runs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for img in "${IMAGES[@]}"; do
    layers=$(jq '.[].layers | length' "$T/fx-$img/facts.json" | head -1)
    bytes=$(du -sb "$T/oci-$img/blobs" | cut -f1)
    echo "  $img: $layers layers, $((bytes / 1048576)) MiB as stored (zstd)"
done
printf '%-40s %8s %8s %6s   %8s %8s %6s   %s\n' "" "sbx wall" "other" "ratio" "sbx CPU" "other" \
    "ratio" "peak RSS MiB sbx / other"
for img in "${IMAGES[@]}"; do
    row "push $img  vs skopeo copy oci: docker://" "push_${img}_sbx" "push_${img}_skopeo"
    row "push $img  vs buildah push" "push_${img}_sbx" "push_${img}_buildah"
done
if ((CACHE)); then
    row "build --cache-from (0 steps)  vs pull" cache_build cache_pull
fi
echo "goals: push at most 1.0x skopeo (wall); build --cache-from within 1.2x pull"
rm -f /tmp/sbxbench-$$-*
t_pass >/dev/null
