# Helpers for tests/integration/test_unpack_*.sh (sourced after build_lib.sh).
#
# u_image NAME [EXTRA_FILES]: seeds a busybox base (plus a device node, a
# fifo, a user xattr, and EXTRA_FILES small files under /many when given),
# then builds a 3-step recipe on it and tags the result NAME.  The layers hold:
#  step 1: files, a dir later made opaque, a dir later replaced by a file,
#          a hardlink pair, /etc/gone
#  step 2: /etc/gone deleted (whiteout), /data/opq removed and re-made
#          (opaque dir), /olddir dir -> file, a symlink, an executable,
#          a file owned by 1000:1000 mode 0640
#  step 3: /data/keep/k changed, /tmp/fifo deleted, and /tree.txt: the
#          listing of the whole tree as the step saw it through overlayfs
#          (u_listing), the oracle every unpacked tree is compared with.
# Prints the manifest digest.

U_FIND="cd / && { find / -xdev ! -path /dev ! -path '/dev/*' ! -path /proc ! -path /sys ! -path /etc/resolv.conf ! -path /etc/hosts ! -path /tree.txt -exec stat -c '%n %u:%g %a %F' {} + ; find / -xdev -type f ! -path '/dev/*' ! -path /etc/resolv.conf ! -path /etc/hosts ! -path /tree.txt -exec md5sum {} + ; } | sort"

u_image() {
    local name=$1 extra=${2:-0} rootfs=$T/bb-rootfs
    if [[ ! -d $rootfs ]]; then
        b_busybox_rootfs "$rootfs"
        mkdir -p "$rootfs/dev"
        mknod "$rootfs/dev/null" c 1 3
        mkfifo "$rootfs/tmp/fifo"
        echo xattr >"$rootfs/etc/xa"
        python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.sbx-test", b"val")' "$rootfs/etc/xa"
        if ((extra > 0)); then
            mkdir -p "$rootfs/many"
            python3 - "$rootfs/many" "$extra" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    sub = os.path.join(d, "d%03d" % (i // 100))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "f%05d" % i), "w") as f:
        f.write("file %d\n" % i * 40)
PY
        fi
    fi
    "$B_DRIVER" --seed "$STORE" "$rootfs" busybox:unpack-base >/dev/null
    mkdir -p "$T/ctx"
    cat >"$T/ctx/recipe.yaml" <<YAML
image: busybox:unpack-base
steps:
  - run_cmd: mkdir -p /data/keep /data/opq /olddir/sub && echo a > /data/opq/old1 && echo b > /data/opq/old2 && echo gone > /etc/gone && echo v1 > /data/keep/k && echo x > /olddir/sub/f && echo h > /data/h1 && ln /data/h1 /data/h2
  - run_cmd: rm /etc/gone && rm -rf /data/opq && mkdir /data/opq && echo new > /data/opq/new && rm -rf /olddir && echo file > /olddir && ln -s ../keep/k /data/opq/link && printf '#!/bin/sh\\necho ran\\n' > /data/run.sh && chmod 0755 /data/run.sh && echo o > /data/owned && chown 1000:1000 /data/owned && chmod 0640 /data/owned
  - run_cmd: echo v2 > /data/keep/k && rm /tmp/fifo && ( $U_FIND ) > /tree.txt
YAML
    sbx build "$T/ctx/recipe.yaml" --tag "$name" 2>"$T/build.err" || { cat "$T/build.err" >&2; b_die "building the test image failed"; }
}

# u_listing ROOT: the same listing as the oracle, taken inside ROOT by chroot.
u_listing() { chroot "$1" /bin/sh -c "$U_FIND"; }

# u_check_tree ROOT: ROOT is the image's filesystem as overlayfs showed it.
u_check_tree() {
    local root=$1
    [[ -f $root/tree.txt ]] || b_die "$root: no /tree.txt"
    u_listing "$root" >"$T/listing" || b_die "listing $root failed"
    if ! diff -u "$root/tree.txt" "$T/listing" >"$T/listing.diff"; then
        head -40 "$T/listing.diff" >&2
        b_die "$root differs from the tree the build step saw through overlayfs"
    fi
    # no overlay whiteouts, overlay xattrs or the layer cache's boot mark leak into a tree
    python3 - "$root" <<'PY' || b_die "$root holds overlay metadata"
import os, stat, sys
bad = []
for d, dirs, files in os.walk(sys.argv[1]):
    for n in dirs + files + [""]:
        p = os.path.join(d, n) if n else d
        st = os.lstat(p)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            bad.append(("whiteout", p))
        if not stat.S_ISLNK(st.st_mode):
            for x in os.listxattr(p):
                if x.startswith(("trusted.overlay.", "user.overlay.")) or "sbx.unpacked-boot" in x:
                    bad.append((x, p))
if bad:
    print(bad[:10], file=sys.stderr)
    sys.exit(1)
PY
}
