#!/bin/bash
# bench/pull: sbx-image against skopeo on the same loopback docker-registry,
# in one run, as ratios of medians.
#
#   bench/pull/run.sh [BUILD_DIR]        (default: build; use a non-sanitized build)
#   env: RUNS (default 5), MB (image size, default 48), RESOLVE_RUNS (default 15),
#        BIG_MB (a one-layer image of that size for peak memory, default 128; 0: skip),
#        COLD (default 1: the cold-start section below; 0: skip), COLD_RUNS (default 5),
#        COLD_MB (default 260)
#
# 1. pull of a multi-layer gzip image (busybox + 4 layers of random and
#    text-like files) into an empty store  vs  skopeo copy docker:// oci:DIR
# 2. sbx-image pull + sbx-image unpack DIR  vs  skopeo copy + umoci unpack
#    (both end with one merged root filesystem; unpack with copies, the
#    default, and again with --link: hardlinks from the store's layer cache)
# 3. resolve of a tag (cache off)           vs  skopeo inspect --raw: the
#    sbx-image resolve command, and sbx_registry_resolve() called 50 times in
#    one process (bench_resolve_calls), as the control plane calls it
# 4. cold start on a runtime host, for the Debian image (debootstrap minbase
#    bookworm, one gzip layer; made once per build dir before the run enters
#    its loopback-only namespace), the same tree as one zstd layer (debzst: what
#    a build host's push makes; pull keeps it as sent) and a 6-layer COLD_MB
#    image: pull, and pull
#    --unpack (each layer unpacked into the store's cache while it downloads)
#    vs skopeo copy, and vs skopeo copy + umoci unpack
# Times are fork-to-exit of each command; peak RSS is the child's ru_maxrss.  sbx-image does more work in
# (1): it checks the compressed digest and also decompresses each layer to
# check its diff_id (gzip and zstd blobs are then stored as sent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
SBX_BIN=$build/cli/sbx-image
[[ -x $SBX_BIN ]] || SBX_BIN=$build/sbx-image
export SBX_BIN SBX_SOURCE_DIR=$src SBX_BUILD_DIR=$build
RUNS=${RUNS:-5}
((EUID == 0)) || ROOTLESS=1
RESOLVE_RUNS=${RESOLVE_RUNS:-15}
MB=${MB:-48}
BIG_MB=${BIG_MB:-128}
COLD=${COLD:-1}
COLD_RUNS=${COLD_RUNS:-5}
COLD_MB=${COLD_MB:-260}
DEB_TAR=$build/bench-debian-rootfs.tar
if ((COLD)) && [[ -z ${SBX_TEST_NETNS:-} ]]; then
    source "$src/bench/lib/debian_rootfs.sh"
    debian_rootfs_tar "$DEB_TAR" || exit 1
fi
source "$src/tests/integration/lib/registry.sh"
t_init "$@"
command -v umoci >/dev/null || t_die "umoci missing (scripts/deps.sh installs it)"
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

# measure NAME CMD...: wall seconds and peak RSS (KiB) appended to $T/NAME
# (timeit.py: fork-to-exit clock, ru_maxrss of the child).
measure() {
    local name=$1; shift
    "$PY" "$here/timeit.py" "$T/$name" "$@" || t_die "$name failed: $*"
}
median() { sort -n -k1,1 "$T/$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
cpu_median() { sort -n -k3,3 "$T/$1" | awk '{a[NR]=$3} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
maxrss() { sort -n -k2,2 "$T/$1" | tail -1 | awk '{print $2}'; }

"$SBX_BIN" unpack --help >/dev/null 2>&1 || t_die "this sbx-image has no unpack verb"

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
            # the first unpack also fills the store's layer cache; the ones
            # after it find the cache warm, as a runtime host mostly would
            measure sbx_unpack "$SBX_BIN" unpack --store "$T/s$i" "$REF" "$T/s$i-root"
            measure sbx_unpack_warm "$SBX_BIN" unpack --store "$T/s$i" "$REF" "$T/s$i-warm"
            measure sbx_unpack_link "$SBX_BIN" unpack --link --store "$T/s$i" "$REF" "$T/s$i-link"
            rm -rf "$T/s$i" "$T/s$i-root" "$T/s$i-warm" "$T/s$i-link"
        else
            measure skopeo_copy skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$T/o$i:img"
            measure umoci_unpack umoci unpack ${ROOTLESS:+--rootless} --image "$T/o$i:img" "$T/o$i-bundle"
            rm -rf "$T/o$i" "$T/o$i-bundle"
        fi
    done
done

if ((BIG_MB > 0)); then
    echo "one ${BIG_MB} MB layer (peak memory against layer size), x3..."
    FXB=$T/bench-big
    "$PY" "$HLIB/fixtures.py" bench "$FXB" --mb "$BIG_MB" --layers 1
    FX=$FXB fx_push r bench=bench/big:v1
    for i in 1 2 3; do
        measure big_sbx "$SBX_BIN" pull --store "$T/b$i" "$r_HOST/bench/big:v1"
        measure big_skopeo skopeo copy -q --src-tls-verify=false "docker://$r_HOST/bench/big:v1" "oci:$T/bo$i:img"
        rm -rf "$T/b$i" "$T/bo$i"
    done
fi

echo "resolve x$RESOLVE_RUNS..."
for i in $(seq "$RESOLVE_RUNS"); do
    SBX_RESOLVE_TTL=0 measure sbx_resolve "$SBX_BIN" resolve --store "$T/r" "$REF"
    measure sbx_resolve_cached "$SBX_BIN" resolve --store "$T/r" "$REF"
    measure skopeo_inspect skopeo inspect --raw --tls-verify=false "docker://$REF"
done

# The same against a registry that looks like Docker Hub: TLS (a CA the
# harness made, in $SBX_CERTS_DIR for sbx-image, --cert-dir for skopeo) and
# bearer tokens from a token issuer, with credentials.
echo "resolve against TLS + token auth x$RESOLVE_RUNS..."
reg_start t token tls
fx_push t bench=bench/img:v1
TREF=$t_HOST/bench/img:v1
docker_login t
for i in $(seq "$RESOLVE_RUNS"); do
    SBX_RESOLVE_TTL=0 measure sbx_resolve_tls "$SBX_BIN" resolve --store "$T/rt" "$TREF"
    measure skopeo_inspect_tls skopeo inspect --raw --creds "$TEST_USER:$TEST_PASS" \
        --cert-dir "$SBX_CERTS_DIR/$t_HOST" "docker://$TREF"
done

# The control plane's call: sbx_registry_resolve() from one long-lived process.
RESOLVE_CALLS=$build/bench/bench_resolve_calls
[[ -x $RESOLVE_CALLS ]] || t_die "$RESOLVE_CALLS missing (build the bench target)"
"$RESOLVE_CALLS" "$T/rc" "$REF" 50 >"$T/resolve_calls" || t_die "bench_resolve_calls failed"
"$RESOLVE_CALLS" "$T/rct" "$TREF" 50 >"$T/resolve_calls_tls" || t_die "bench_resolve_calls (tls) failed"
calls() { awk -v n="$1" '$1 == n {print $2}' "$T/resolve_calls${2:-}"; }

if ((COLD)); then
    echo "cold start: the Debian image and a ${COLD_MB} MB 6-layer image..."
    "$PY" "$HLIB/fixtures.py" tar "$T/cold-debian" debian "$DEB_TAR"
    FX=$T/cold-debian fx_push r debian=cold/debian:1
    # the same tree as a build host pushes it: zstd, which pull stores as sent
    "$PY" "$HLIB/fixtures.py" tar-zstd "$T/cold-debzst" debzst "$DEB_TAR"
    FX=$T/cold-debzst fx_push r debzst=cold/debzst:1
    "$PY" "$HLIB/fixtures.py" bench "$T/cold-six" --mb "$COLD_MB" --layers 5 >/dev/null
    FX=$T/cold-six fx_push r bench=cold/six:1
    for i in $(seq "$COLD_RUNS"); do
        echo "cold run $i/$COLD_RUNS"
        for img in debian debzst six; do
            ref=$r_HOST/cold/$img:1
            case $((i % 3)) in
            0) order="pull unpack skopeo" ;; 1) order="unpack skopeo pull" ;; *) order="skopeo pull unpack" ;;
            esac
            [[ $img == deb* ]] && order+=" tarx"
            for who in $order; do
                case $who in
                pull) measure "cold_${img}_pull" "$SBX_BIN" pull --store "$T/c$i" "$ref" ;;
                unpack) measure "cold_${img}_unpack" "$SBX_BIN" pull --unpack --store "$T/cu$i" "$ref" ;;
                tarx) # the filesystem's floor: GNU tar -x of the same tar from the page cache
                    mkdir -p "$T/tx$i"
                    measure "cold_${img}_tarx" tar -xf "$DEB_TAR" -C "$T/tx$i"
                    ;;
                skopeo)
                    measure "cold_${img}_skopeo" skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$T/co$i:img"
                    # umoci 0.4 reads no zstd layers
                    [[ $img == debzst ]] || measure "cold_${img}_umoci" umoci unpack ${ROOTLESS:+--rootless} --image "$T/co$i:img" "$T/co$i-bundle"
                    ;;
                esac
                rm -rf "$T/c$i" "$T/cu$i" "$T/co$i" "$T/co$i-bundle" "$T/tx$i"
            done
        done
    done
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
sum() { awk -v a="$1" -v b="$2" 'BEGIN {print a + b}'; }
mib() { echo $(( $(maxrss "$1") / 1024 )); }
# row LABEL SBX_WALL OTHER_WALL SBX_CPU OTHER_CPU SBX_RSS OTHER_RSS
row() {
    printf '%-38s %7.3fs %7.3fs %6s   %7.3fs %7.3fs %6s   %4s / %s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")" \
        "$4" "$5" "$(ratio "$4" "$5")" "$6" "$7"
}
echo
echo "bench/pull: $nlayers layers, $((img_bytes / 1048576)) MiB gzip, $((raw_bytes / 1048576)) MiB uncompressed;" \
    "medians of $RUNS runs (resolve: $RESOLVE_RUNS); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-38s %8s %8s %6s   %8s %8s %6s   %s\n' "" "sbx wall" "other" "ratio" "sbx CPU" "other" \
    "ratio" "peak RSS MiB sbx / other"
row "pull  vs skopeo copy docker:// oci:" "$(median sbx_pull)" "$(median skopeo_copy)" \
    "$(cpu_median sbx_pull)" "$(cpu_median skopeo_copy)" "$(mib sbx_pull)" "$(mib skopeo_copy)"
row "pull+unpack  vs copy + umoci unpack" \
    "$(sum "$(median sbx_pull)" "$(median sbx_unpack)")" \
    "$(sum "$(median skopeo_copy)" "$(median umoci_unpack)")" \
    "$(sum "$(cpu_median sbx_pull)" "$(cpu_median sbx_unpack)")" \
    "$(sum "$(cpu_median skopeo_copy)" "$(cpu_median umoci_unpack)")" \
    "$(mib sbx_unpack)" "$(mib umoci_unpack)"
row "  unpack alone  vs umoci unpack" "$(median sbx_unpack)" "$(median umoci_unpack)" \
    "$(cpu_median sbx_unpack)" "$(cpu_median umoci_unpack)" "$(mib sbx_unpack)" "$(mib umoci_unpack)"
row "  unpack, cache warm  vs umoci unpack" "$(median sbx_unpack_warm)" "$(median umoci_unpack)" \
    "$(cpu_median sbx_unpack_warm)" "$(cpu_median umoci_unpack)" "$(mib sbx_unpack_warm)" \
    "$(mib umoci_unpack)"
row "  unpack --link, cache warm  vs umoci" "$(median sbx_unpack_link)" "$(median umoci_unpack)" \
    "$(cpu_median sbx_unpack_link)" "$(cpu_median umoci_unpack)" "$(mib sbx_unpack_link)" \
    "$(mib umoci_unpack)"
echo "  (both merge all layers into one rootfs; sbx unpack also keeps each layer unpacked in the"
echo "   store's cache, so later unpacks of the image only merge: the 'cache warm' rows;"
echo "   sbx unpack syncs the tree before renaming it into place, umoci does not)"
row "resolve, no cache  vs skopeo inspect" "$(median sbx_resolve)" "$(median skopeo_inspect)" \
    "$(cpu_median sbx_resolve)" "$(cpu_median skopeo_inspect)" "$(mib sbx_resolve)" "$(mib skopeo_inspect)"
row "resolve, cached tag  vs skopeo inspect" "$(median sbx_resolve_cached)" "$(median skopeo_inspect)" \
    "$(cpu_median sbx_resolve_cached)" "$(cpu_median skopeo_inspect)" "$(mib sbx_resolve_cached)" \
    "$(mib skopeo_inspect)"
for c in uncached first cached; do
    case $c in
    uncached) label="resolve() in process, no cache" ;;
    first) label="  its first call in a new process" ;;
    cached) label="  cached tag" ;;
    esac
    printf '%-38s %8.5fs %7.3fs %6s\n' "$label" "$(calls "$c")" "$(median skopeo_inspect)" \
        "$(ratio "$(calls "$c")" "$(median skopeo_inspect)")"
done
echo "TLS + token auth:"
row "resolve, no cache  vs skopeo inspect" "$(median sbx_resolve_tls)" "$(median skopeo_inspect_tls)" \
    "$(cpu_median sbx_resolve_tls)" "$(cpu_median skopeo_inspect_tls)" "$(mib sbx_resolve_tls)" \
    "$(mib skopeo_inspect_tls)"
for c in uncached first; do
    case $c in
    uncached) label="resolve() in process, no cache" ;;
    first) label="  its first call in a new process" ;;
    esac
    printf '%-38s %8.5fs %7.3fs %6s\n' "$label" "$(calls "$c" _tls)" "$(median skopeo_inspect_tls)" \
        "$(ratio "$(calls "$c" _tls)" "$(median skopeo_inspect_tls)")"
done
echo "  (sbx_registry_resolve(), the control plane's call: medians of 50 calls in one process,"
echo "   connections kept open between calls, against the skopeo inspect process; the first"
echo "   call loads libcurl, connects, and for TLS + token also handshakes and gets a token)"
if ((BIG_MB > 0)); then
    printf '%-38s %7.3fs %7.3fs %6s   %7.3fs %7.3fs %6s   %4s / %s\n' \
        "pull, one ${BIG_MB} MB layer" "$(median big_sbx)" "$(median big_skopeo)" \
        "$(ratio "$(median big_sbx)" "$(median big_skopeo)")" "$(cpu_median big_sbx)" \
        "$(cpu_median big_skopeo)" "$(ratio "$(cpu_median big_sbx)" "$(cpu_median big_skopeo)")" \
        "$(mib big_sbx)" "$(mib big_skopeo)"
fi
if ((COLD)); then
    echo "cold start (medians of $COLD_RUNS):"
    for img in debian debzst six; do
        echo "  $img: $(jq '.[].layers | length' "$T/cold-$img/facts.json" | head -1) layers," \
            "$(( $(jq '[.[].layers[].size] | add' "$T/cold-$img/facts.json" | head -1) / 1048576 )) MiB" \
            "$(jq -r '.[].layers[-1].media_type | sub(".*[+.]"; "")' "$T/cold-$img/facts.json" | head -1)"
        row "  pull  vs skopeo copy" "$(median "cold_${img}_pull")" "$(median "cold_${img}_skopeo")" \
            "$(cpu_median "cold_${img}_pull")" "$(cpu_median "cold_${img}_skopeo")" \
            "$(mib "cold_${img}_pull")" "$(mib "cold_${img}_skopeo")"
        row "  pull --unpack  vs skopeo copy" "$(median "cold_${img}_unpack")" "$(median "cold_${img}_skopeo")" \
            "$(cpu_median "cold_${img}_unpack")" "$(cpu_median "cold_${img}_skopeo")" \
            "$(mib "cold_${img}_unpack")" "$(mib "cold_${img}_skopeo")"
        [[ $img == debzst ]] || row "  pull --unpack  vs copy + umoci unpack" "$(median "cold_${img}_unpack")" \
            "$(sum "$(median "cold_${img}_skopeo")" "$(median "cold_${img}_umoci")")" \
            "$(cpu_median "cold_${img}_unpack")" \
            "$(sum "$(cpu_median "cold_${img}_skopeo")" "$(cpu_median "cold_${img}_umoci")")" \
            "$(mib "cold_${img}_unpack")" "$(mib "cold_${img}_umoci")"
        [[ $img == deb* ]] && row "  pull --unpack  vs tar -x of the tar" "$(median "cold_${img}_unpack")" \
            "$(median "cold_${img}_tarx")" "$(cpu_median "cold_${img}_unpack")" \
            "$(cpu_median "cold_${img}_tarx")" "$(mib "cold_${img}_unpack")" "$(mib "cold_${img}_tarx")"
    done
    echo "  (tar -x: GNU tar extracting the same uncompressed tar, already in the page cache, into"
    echo "   an empty dir: what creating the tree costs this filesystem, with nothing downloaded)"
    echo "goals: pull <= 1.3x skopeo copy (wall, CPU); pull --unpack <= 1.0x skopeo copy;"
    echo "       peak RSS < 64 MiB"
fi
echo "goals: pull ratio <= 1.5, resolve ratio <= 0.25, sbx-image peak RSS < 64 MiB"
