#!/bin/bash
# bench/build: sbx-image build against `buildah build --layers` (overlay
# storage) of the equivalent Dockerfile, on the same debootstrap base, in one
# run; plus the same apt work in a plain chroot, and on-disk sizes.
#
#   bench/build/run.sh [BUILD_DIR]      (root; installs buildah if missing)
#
# Cases (each tool with its own fresh storage): cold build, no-op rebuild,
# rebuild with the last step changed.  Medians of $RUNS runs for the rebuilds
# (default 5); cold builds once each (they download from Debian's archive).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
bdir=$(cd "${1:-$src/build}" && pwd)
SBX=$bdir/cli/sbx-image
DRIVER=$bdir/tests/test_builder
RUNS=${RUNS:-5}
[[ -x $SBX && -x $DRIVER ]] || { echo "build first: scripts/build.sh ${1:-build}" >&2; exit 1; }
if ! command -v buildah >/dev/null; then
    echo "installing buildah (bench only)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah fuse-overlayfs >/dev/null
fi
W=$(mktemp -d /var/tmp/sbx-bench-build.XXXXXX)
BAH=(buildah --root "$W/bah-root" --runroot "$W/bah-run" --storage-driver overlay)
cleanup() {
    umount "$W/chroot/proc" "$W/chroot/dev" 2>/dev/null || true
    "${BAH[@]}" rm --all >/dev/null 2>&1 || true
    "${BAH[@]}" rmi --all --force >/dev/null 2>&1 || true
    umount -R "$W/bah-root/overlay" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }

# ---- the shared base: one debootstrap tree, given to both tools ----------
mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
echo "debootstrap --variant=minbase bookworm ($mirror)..." >&2
debootstrap --variant=minbase bookworm "$W/rootfs" "$mirror" >"$W/debootstrap.log" 2>&1
find "$W/rootfs/dev" -mindepth 1 -delete
"$DRIVER" --seed "$W/sbx-store" "$W/rootfs" bench-base >/dev/null
tar -C "$W/rootfs" -cf "$W/base.tar" .
c=$("${BAH[@]}" from scratch)
"${BAH[@]}" add "$c" "$W/base.tar" / >/dev/null
"${BAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
"${BAH[@]}" commit -q "$c" localhost/bench-base >/dev/null
"${BAH[@]}" rm "$c" >/dev/null
rm "$W/base.tar"
base_store_kb=$(du -sk "$W/sbx-store" | cut -f1)
base_bah_kb=$(du -sk "$W/bah-root" | cut -f1)
# The unpacked layer dirs are a cache: gc --unpacked drops those no running
# build holds (none now); the next build that needs a layer unpacks it again.
"$SBX" --store "$W/sbx-store" gc --unpacked >>"$W/sbx.log"
sbx_gc_kb=$(du -sk "$W/sbx-store" | cut -f1)

# ---- the same work both ways ---------------------------------------------
ctx=$W/ctx
mkdir -p "$ctx/app"
for i in $(seq 20); do head -c 4096 /dev/urandom | base64 >"$ctx/app/f$i.txt"; done
write_inputs() { # LAST-VALUE
    cat >"$ctx/recipe.yaml" <<YAML
image: bench-base
steps:
  - apt_install: [curl]
  - env: {APP_ENV: bench}
  - workdir: /app
  - copy: {src: app, dest: /app}
  - run_cmd: echo $1 > /app/version && ls -l /app > /app/listing
YAML
    cat >"$ctx/Dockerfile" <<DOCKER
FROM localhost/bench-base
RUN export DEBIAN_FRONTEND=noninteractive && apt-get update -q && apt-get install -y -q --no-install-recommends curl && apt-get clean && rm -rf /var/lib/apt/lists/*
ENV APP_ENV=bench
WORKDIR /app
COPY app /app
RUN echo $1 > /app/version && ls -l /app > /app/listing
DOCKER
}
sbx_build() { "$SBX" --store "$W/sbx-store" build "$ctx/recipe.yaml" >/dev/null 2>>"$W/sbx.log"; }
# crun refuses hybrid cgroup hosts (../shared/MACHINE-NOTES.md); runc runs as is.
bah_build() { "${BAH[@]}" build --runtime runc --layers -q -t bench-img -f "$ctx/Dockerfile" "$ctx" >/dev/null 2>>"$W/bah.log"; }
timed() { local t0 t1; t0=$(now); "$@" || return 1; t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b-a}'; }

write_inputs v0
echo "cold builds..." >&2
# sbx-image unpacks a base layer once per store (kept for every later build);
# time that apart from the build itself with a trivial recipe first.
printf 'image: bench-base\nsteps:\n  - run_cmd: "true"\n' >"$ctx/warm.yaml"
sbx_warm() { "$SBX" --store "$W/sbx-store" build "$ctx/warm.yaml" >/dev/null 2>>"$W/sbx.log"; }
sbx_unpack=$(timed sbx_warm)
sbx_cold=$(timed sbx_build) || { echo "sbx-image build failed:" >&2; tail -n 20 "$W/sbx.log" >&2; exit 1; }
bah_cold=$(timed bah_build) || { echo "buildah build failed:" >&2; tail -n 20 "$W/bah.log" >&2; exit 1; }

echo "no-op rebuilds..." >&2
sbx_noop=$(for _ in $(seq "$RUNS"); do timed sbx_build || exit 1; done | median)
bah_noop=$(for _ in $(seq "$RUNS"); do timed bah_build || exit 1; done | median)

echo "last-step rebuilds..." >&2
# The same runs give the last step's own time (its "done" event), so the
# overhead is a median over the same builds, not one extra run.
sbx_build_ev() { "$SBX" --store "$W/sbx-store" build --json "$ctx/recipe.yaml" >/dev/null 2>"$W/ev.$1"; }
sl=(); bl=(); ss=(); ov=()
for i in $(seq "$RUNS"); do
    write_inputs "v$i"
    sl+=("$(timed sbx_build_ev "$i")") || exit 1
    ss+=("$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("event") == "done" and e.get("step") == 5: print(e["seconds"])' "$W/ev.$i")")
    ov+=("$(awk -v a="${sl[-1]}" -v b="${ss[-1]}" 'BEGIN {printf "%.3f", a-b}')")
    bl+=("$(timed bah_build)") || exit 1
done
sbx_overhead=$(printf '%s\n' "${ov[@]}" | median)
sbx_last=$(printf '%s\n' "${sl[@]}" | median)
bah_last=$(printf '%s\n' "${bl[@]}" | median)
step_s=$(printf '%s\n' "${ss[@]}" | median)

# ---- the same apt work in a plain chroot -----------------------------------
echo "apt in a plain chroot..." >&2
cp -a "$W/rootfs" "$W/chroot"
mount --bind /dev "$W/chroot/dev"
mount -t proc proc "$W/chroot/proc"
cp /etc/resolv.conf "$W/chroot/etc/resolv.conf"
t0=$(now)
chroot "$W/chroot" sh -c 'export DEBIAN_FRONTEND=noninteractive && apt-get update -q && apt-get install -y -q --no-install-recommends curl && apt-get clean && rm -rf /var/lib/apt/lists/*' >/dev/null 2>&1
t1=$(now)
chroot_apt=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b-a}')
umount "$W/chroot/proc" "$W/chroot/dev"

# ---- sizes -----------------------------------------------------------------
sbx_kb=$(du -sk "$W/sbx-store" | cut -f1)
sbx_unpacked_kb=$(du -sk "$W/sbx-store/unpacked" 2>/dev/null | cut -f1 || echo 0)
bah_kb=$(du -sk "$W/bah-root" | cut -f1)
# The unpacked layer dirs are a cache: gc --unpacked drops those no running
# build holds (none now); the next build that needs a layer unpacks it again.
"$SBX" --store "$W/sbx-store" gc --unpacked >>"$W/sbx.log"
sbx_gc_kb=$(du -sk "$W/sbx-store" | cut -f1)

cat <<REPORT
bench/build: sbx-image build vs buildah build --layers (overlay), same debootstrap bookworm minbase
  recipe: apt_install curl, env, workdir, copy (20 files), run_cmd; rebuild medians of $RUNS
                          sbx-image    buildah    ratio (sbx/buildah)
  cold build              ${sbx_cold}s    ${bah_cold}s    $(ratio "$sbx_cold" "$bah_cold")
    (sbx-image unpacked the base once before, in ${sbx_unpack}s including a trivial step;
     with that: $(awk -v a="$sbx_cold" -v b="$sbx_unpack" 'BEGIN {printf "%.3f", a+b}')s, ratio $(awk -v a="$sbx_cold" -v b="$sbx_unpack" -v c="$bah_cold" 'BEGIN {printf "%.2f", (a+b)/c}'))
  no-op rebuild           ${sbx_noop}s    ${bah_noop}s    $(ratio "$sbx_noop" "$bah_noop")
  last step changed       ${sbx_last}s    ${bah_last}s    $(ratio "$sbx_last" "$bah_last")
    (the last step itself ran ${step_s}s in the sandbox; overhead ${sbx_overhead}s, medians per run)
  cold build vs the same apt work in a plain chroot (${chroot_apt}s): $(ratio "$sbx_cold" "$chroot_apt")x
    (buildah cold vs the chroot: $(ratio "$bah_cold" "$chroot_apt")x)
  on disk (base + all images and cache entries):
    sbx store  $((sbx_kb / 1024)) MiB (of which unpacked layer dirs $((sbx_unpacked_kb / 1024)) MiB; base alone $((base_store_kb / 1024)) MiB)
    buildah    $((bah_kb / 1024)) MiB (base alone $((base_bah_kb / 1024)) MiB)
    ratio sbx/buildah: $(ratio "$sbx_kb" "$bah_kb") (without unpacked dirs: $(ratio "$((sbx_kb - sbx_unpacked_kb))" "$bah_kb"))
    sbx store after \`sbx-image gc --unpacked\`: $((sbx_gc_kb / 1024)) MiB, ratio sbx/buildah $(ratio "$sbx_gc_kb" "$bah_kb")
REPORT
