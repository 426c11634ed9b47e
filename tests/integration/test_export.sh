#!/bin/bash
# sbx-image export IMAGE DIR: an OCI image layout other tools read.
#  - a built image (busybox base + 2 steps) exports with its own manifest
#    bytes: skopeo reads the same digest, umoci unpacks the same tree as
#    `sbx-image unpack`, and skopeo copies it to the loopback registry, from
#    where `sbx-image pull` into a fresh store gets the same diff_ids;
#  - a pulled gzip image exports with its own digest (its layers stored as
#    sent); a pulled plain-tar image is re-referenced as zstd (new manifest
#    digest, said on stderr), and reads, unpacks and round-trips the same way;
#  - DIR that exists, an unknown image and bad usage are refused with one
#    line and nothing written;
#  - a SIGKILLed export leaves only a temp dir that the next export to the
#    same DIR removes; SIGTERM removes its own.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/registry.sh"
t_init "$@"
t_need umoci skopeo busybox
export SBX_RESOLVE_TTL=0
reg_start r1 plain

# listing ROOT: every path with owner, mode, type and link target, and the
# md5 of every regular file; what two unpacked trees must agree on.
listing() {
    (cd "$1" && find . -mindepth 1 -printf '%P %U:%G %m %y %l\n' && find . -type f -exec md5sum {} +) |
        sort
}
same_tree() {
    listing "$1" >"$T/l1"
    listing "$2" >"$T/l2"
    diff -u "$T/l1" "$T/l2" >"$T/ldiff" || { head -30 "$T/ldiff"; fail "$1 and $2 differ"; }
}
# blobs_verified DIR: every blob hashes to its name.
blobs_verified() {
    local f
    for f in "$1"/blobs/sha256/*; do
        [[ $(sha256sum <"$f" | cut -d' ' -f1) == "${f##*/}" ]] || fail "blob $f does not hash to its name"
    done
}
# umoci_unpack LAYOUT TAG DEST: umoci's unpack of the layout.  Debian's umoci
# 0.4.7 refuses zstd layers ("blob is not correct mediatype"); then skopeo,
# which reads and verifies the layout's zstd blobs, converts it to gzip first.
umoci_unpack() {
    if ! umoci unpack --image "$1:$2" "$3" >/dev/null 2>"$T/umoci.err"; then
        grep -q "not correct mediatype: application/vnd.oci.image.layer.v1.tar+zstd" "$T/umoci.err" ||
            fail "umoci unpack $1:$2: $(cat "$T/umoci.err")"
        rm -rf "$3"
        skopeo copy -q "oci:$1:$2" "oci:$1-gzip:$2" --dest-compress-format gzip
        umoci unpack --image "$1-gzip:$2" "$3" >/dev/null
    fi
}
# diff_ids STORE IMAGE: the image's diff_ids, one per line.
diff_ids() { "$SBX_BIN" inspect --store "$1" --json "$2" | jq -r '.layers[].diff_id'; }
# nothing_left NAME: no temp dir of an export into $T/NAME remains.
nothing_left() {
    local left
    left=$(find "$T" -maxdepth 1 -name ".$1.sbx-export-*")
    [[ -z $left ]] || fail "left behind: $left"
}

case_ "a built image: the layout holds the store's manifest bytes"
b_busybox_image busybox:export-base >/dev/null
mkdir -p "$T/ctx"
cat >"$T/ctx/r.yaml" <<'YAML'
image: busybox:export-base
steps:
  - run_cmd: mkdir -p /data && echo one > /data/one && ln -s one /data/link && chmod 0640 /data/one
  - run_cmd: echo two > /data/two && chown 1000:1000 /data/two && rm /etc/group
YAML
ok build --tag ex:1 "$T/ctx/r.yaml"
d1=$(cat "$T/out")
ok export --tag latest ex:1 "$T/lay"
out_is "$d1"
err_lacks "re-referenced"
err_has "^layer 1/3 sha256:[0-9a-f]{12}: copy"
assert_eq "$(cat "$T/lay/oci-layout")" '{"imageLayoutVersion":"1.0.0"}' "oci-layout"
assert_eq "$(jq -r '.manifests | length' "$T/lay/index.json")" 1 "index entries"
assert_eq "$(jq -r '.manifests[0].digest' "$T/lay/index.json")" "$d1" "index digest"
assert_eq "$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$T/lay/index.json")" latest "ref name"
assert_eq "$(jq -r '.manifests[0].platform.os' "$T/lay/index.json")" linux "platform os"
assert_eq "$(ls "$T/lay/blobs/sha256" | wc -l)" 5 "blobs (manifest, config, base + 2 step layers)"
blobs_verified "$T/lay"
[[ $(stat -c %a "$T/lay") == 755 ]] || fail "layout dir mode $(stat -c %a "$T/lay")"
nothing_left lay

case_ "skopeo reads the same manifest digest"
skopeo inspect --raw "oci:$T/lay:latest" >"$T/raw"
assert_eq "sha256:$(sha256sum <"$T/raw" | cut -d' ' -f1)" "$d1" "skopeo's manifest digest"
skopeo inspect "oci:$T/lay:latest" | jq -e '.Layers | length == 3' >/dev/null || fail "skopeo does not see 3 layers"

case_ "umoci unpacks the tree sbx-image unpack gives"
umoci_unpack "$T/lay" latest "$T/umoci"
ok unpack ex:1 "$T/sbxroot"
same_tree "$T/sbxroot" "$T/umoci/rootfs"
[[ ! -e $T/umoci/rootfs/etc/group && $(stat -c %u:%a "$T/umoci/rootfs/data/two") == 1000:644 ]] ||
    fail "umoci's tree lacks the steps' changes"

case_ "json output"
ok export --json ex:1 "$T/lay2"
jq_is '[.image, .digest, .dir, .blobs, .recompressed] | map(tostring) | join(" ")' "ex:1 $d1 $T/lay2 5 false"
jq_is .bytes "$(find "$T/lay2/blobs" -type f -printf '%s\n' | awk '{n += $1} END {print n}')"

case_ "skopeo copies the layout to a registry; pull gets the same diff_ids"
skopeo copy -q "oci:$T/lay:latest" "docker://$r1_HOST/x/y:1" --dest-tls-verify=false
STORE_MAIN=$STORE
STORE=$T/store2
ok pull --json "$r1_HOST/x/y:1"
jq_is .digest "$d1"
assert_eq "$(diff_ids "$STORE" "$r1_HOST/x/y:1")" "$(diff_ids "$STORE_MAIN" ex:1)" "diff_ids after the round trip"

case_ "a pulled gzip image: its layers stored as sent, exported with its own digest"
# the same image with gzip layers, as most registries serve them
skopeo copy -q "oci:$T/lay:latest" "oci:$T/gzsrc:1" --dest-compress-format gzip
skopeo copy -q "oci:$T/gzsrc:1" "docker://$r1_HOST/x/gz:1" --dest-tls-verify=false
STORE=$T/store3
ok pull --json "$r1_HOST/x/gz:1"
dgz=$(jq -r .digest "$T/out")
[[ $(jq -r '.layers[0].media_type' "$T/out") == *gzip ]] || fail "the registry image is not gzip"
ok export --json --tag gz "$r1_HOST/x/gz:1" "$T/laygz"
jq_is .recompressed false
jq_is .digest "$dgz"
err_lacks "re-referenced"
blobs_verified "$T/laygz"
skopeo inspect --raw "oci:$T/laygz:gz" >"$T/raw"
assert_eq "sha256:$(sha256sum <"$T/raw" | cut -d' ' -f1)" "$dgz" "skopeo's manifest digest"
umoci_unpack "$T/laygz" gz "$T/umocigz"
same_tree "$T/sbxroot" "$T/umocigz/rootfs"

case_ "a pulled Docker image: re-referenced as an OCI manifest (a layout holds OCI ones)"
fx_build
fx_push r1 oci-tar=x/tar:1 docker-single=x/d:1
STORE=$T/store6
ok pull --json "$r1_HOST/x/d:1"
dd=$(jq -r .digest "$T/out")
ok export --json --tag d "$r1_HOST/x/d:1" "$T/layd"
jq_is .recompressed true
dnew=$(jq -r .digest "$T/out")
[[ $dnew != "$dd" ]] || fail "a Docker manifest was exported as it is"
skopeo inspect --raw "oci:$T/layd:d" >"$T/raw"
assert_eq "$(jq -r .mediaType "$T/raw")" application/vnd.oci.image.manifest.v1+json "manifest type"
assert_eq "$(jq -r '[.layers[].mediaType] | unique | join(",")' "$T/raw")" \
    application/vnd.oci.image.layer.v1.tar+gzip "layer media types (the gzip blob, as stored)"
umoci_unpack "$T/layd" d "$T/umocid"
cmp -s "$T/umocid/rootfs/bin/busybox" /bin/busybox || fail "umoci's busybox of the Docker image differs"

case_ "a pulled plain-tar image: layers re-referenced as the store's zstd, the digest changes"
STORE=$T/store5
ok pull --json "$r1_HOST/x/tar:1"
dtar=$(jq -r .digest "$T/out")
assert_eq "$dtar" "$(fx oci-tar .digest)" "the plain-tar image's digest"
ok export --json --tag t "$r1_HOST/x/tar:1" "$T/laytar"
jq_is .recompressed true
dnew=$(jq -r .digest "$T/out")
[[ $dnew != "$dtar" ]] || fail "re-referenced manifest kept the digest"
err_has "^layers re-referenced as stored: manifest digest changes from $dtar to $dnew\$"
blobs_verified "$T/laytar"
skopeo inspect --raw "oci:$T/laytar:t" >"$T/raw"
assert_eq "sha256:$(sha256sum <"$T/raw" | cut -d' ' -f1)" "$dnew" "skopeo's manifest digest"
assert_eq "$(jq -r '[.layers[].mediaType] | unique | join(",")' "$T/raw")" \
    application/vnd.oci.image.layer.v1.tar+zstd "layer media types"
umoci_unpack "$T/laytar" t "$T/umocitar"
ok unpack "$r1_HOST/x/tar:1" "$T/sbxtar"
# (its second layer adds etc/motd without listing etc/: etc stays 0755 in both)
same_tree "$T/sbxtar" "$T/umocitar/rootfs"
ok export "$r1_HOST/x/tar:1" "$T/laytar2"
out_is "$dnew"
skopeo copy -q "oci:$T/laytar:t" "docker://$r1_HOST/x/z:1" --dest-tls-verify=false
STORE=$T/store4
ok pull --json "$r1_HOST/x/z:1"
jq_is .digest "$dnew"
assert_eq "$(diff_ids "$STORE" "$r1_HOST/x/z:1")" "$(diff_ids "$T/store5" "$r1_HOST/x/tar:1")" "diff_ids after the round trip"
STORE=$STORE_MAIN

case_ "refusals: one line, nothing written"
fails export ex:1 "$T/lay"
err_has "^sbx-image: error: $T/lay: exporting: '$T/lay' already exists"
assert_eq "$(wc -l <"$T/err")" 1 "error lines"
mkdir "$T/emptydir"
fails export ex:1 "$T/emptydir"
err_has "already exists"
[[ -z $(ls -A "$T/emptydir") ]] || fail "export wrote into an existing dir"
fails export nosuch:image "$T/nosuch"
err_has "^sbx-image: error: nosuch:image: exporting 'nosuch:image': no such image in the store"
[[ ! -e $T/nosuch ]] || fail "unknown image left $T/nosuch"
sbx export ex:1
assert_eq "$RC" 2 "exit status of a usage error"
nothing_left nosuch
nothing_left emptydir

case_ "a killed export leaves a temp dir the next export removes"
mkdir -p "$T/big-rootfs/bin"
cp "$(command -v busybox)" "$T/big-rootfs/bin/busybox"
head -c 96M /dev/urandom >"$T/big-rootfs/blob"
"$B_DRIVER" --seed "$STORE" "$T/big-rootfs" big:1 >/dev/null
rm -rf "$T/big-rootfs"
# start_export SIG: start an export of big:1 into $T/big, signal it once its
# temp dir exists; sets KRC (exit status) and KILLED (1 when the signal came
# before the rename: $T/big absent).
start_export() {
    "$SBX_BIN" export --store "$STORE" big:1 "$T/big" >/dev/null 2>"$T/kill.err" &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null && ! compgen -G "$T/.big.sbx-export-*" >/dev/null; do :; done
    kill -"$1" "$pid" 2>/dev/null || true
    set +e
    wait "$pid"
    KRC=$?
    set -e
    KILLED=0
    [[ -e $T/big ]] || KILLED=1
}
killed_midway=0
for round in 1 2 3 4; do
    rm -rf "$T/big"
    start_export KILL
    if ((KILLED)); then
        assert_eq "$KRC" 137 "exit status after SIGKILL"
        [[ -n $(compgen -G "$T/.big.sbx-export-*") ]] || fail "SIGKILL mid-way left no temp dir"
        killed_midway=$((killed_midway + 1))
    else
        blobs_verified "$T/big"   # the rename came first: complete
        rm -rf "$T/big"
    fi
    ok export big:1 "$T/big"
    nothing_left big
    blobs_verified "$T/big"
    ((killed_midway < 2)) || break
done
((killed_midway >= 1)) || fail "no SIGKILL landed before the rename in $round rounds"

case_ "SIGTERM: exit 143, nothing left"
rm -rf "$T/big"
start_export TERM
((KILLED)) || fail "SIGTERM came after the rename (the copy of 96 MB was too quick?)"
assert_eq "$KRC" 143 "exit status after SIGTERM"
grep -q "exporting: cancelled" "$T/kill.err" || fail "no 'exporting: cancelled' line: $(cat "$T/kill.err")"
nothing_left big
ok fsck
t_pass
