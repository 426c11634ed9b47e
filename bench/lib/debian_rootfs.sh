# Sourced by the benches: debian_rootfs_tar OUT makes OUT, a tar of
# `debootstrap --variant=minbase bookworm` from the host's Debian mirror
# without the downloaded .debs and package lists (as the debian image on
# Docker Hub: about 50 MB gzip, 6.6k files), unless it exists.  Run it before the harness moves the bench into its
# loopback-only network namespace (it needs Debian's archive).
debian_rootfs_tar() {
    local out=$1 mirror w
    [[ -s $out ]] && return 0
    mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' \
        /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    w=$(mktemp -d /var/tmp/sbx-bench-debian.XXXXXX)
    echo "debootstrap --variant=minbase bookworm ($mirror)..." >&2
    if ! debootstrap --variant=minbase bookworm "$w/root" "$mirror" >"$w/log" 2>&1; then
        tail -n 5 "$w/log" >&2
        rm -rf "$w"
        return 1
    fi
    rm -rf "$w/root/var/cache/apt/archives/"*.deb "$w/root/var/lib/apt/lists/"*_*
    tar -C "$w/root" --numeric-owner --sort=name -cf "$out.tmp" . && mv "$out.tmp" "$out"
    rm -rf "$w"
}
