#!/bin/bash
# Pull, resolve and inspect of every fixture kind from a plain loopback
# docker-registry: OCI and Docker media types, single and multi-layer, gzip,
# zstd, uncompressed and mixed layers, an index and a manifest list (host
# platform).  The answers are compared with the digests fixtures.py computed
# itself; the store must pass fsck and not download what it already has.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
reg_start r plain
proxy_start p r            # pass-through, to count what the client fetches
R=$p_HOST/test
SINGLE=(oci-single oci-multi oci-zstd oci-tar oci-mixed docker-single docker-multi)
specs=()
for i in "${SINGLE[@]}" oci-zstd-nocheck oci-gzip-members oci-index docker-list bad-diffid squat-diffid; do specs+=("$i=test/$i:v1"); done
fx_push r "${specs[@]}"

case $(uname -m) in
x86_64) HOSTPLAT=linux/amd64 ;;
aarch64) HOSTPLAT=linux/arm64/v8 ;;
*) HOSTPLAT="" ;;
esac

for img in "${SINGLE[@]}"; do
    case_ "$img: resolve, pull, inspect"
    ok resolve "$R/$img:v1"
    out_is "$(fx "$img" .digest)"
    ok resolve --json "$R/$img:v1"
    jq_is .digest "$(fx "$img" .digest)"
    jq_is .media_type "$(fx "$img" .media_type)"
    jq_is .ref "$R/$img:v1"
    ok pull --json "$R/$img:v1"
    check_pulled "$img"
    jq_is .ref "$R/$img:v1"
    ok inspect --json "$R/$img:v1"
    for d in $(fx "$img" '.digest, .config, .layers[].digest, .layers[].diff_id'); do
        out_has "$d"
    done
    ok inspect --raw "$R/$img:v1"
    assert_eq "sha256:$(sha256sum <"$T/out" | cut -d' ' -f1)" "$(fx "$img" .digest)" \
        "sha256 of inspect --raw (exact manifest bytes)"
done

case_ "plain output: the digest alone on stdout, a line per layer on stderr, no escapes"
STORE=$T/store-plain
ok pull "$R/oci-multi:v1"
out_is "$(fx oci-multi .digest)"
for d in $(fx oci-multi '.layers[].digest'); do err_has "${d:0:19}"; done
! grep -q $'\e' "$T/err" || fail "terminal escapes in progress written to a pipe"
ok pull "$R/oci-multi:v1"
out_is "$(fx oci-multi .digest)"
for d in $(fx oci-multi '.layers[].digest'); do
    grep "${d:0:19}" "$T/err" | grep -qi 'present' || fail "second pull does not say layer ${d:0:19} is present"
done

case_ "TERM=dumb or NO_COLOR on a terminal: plain lines, no escape codes"
for env in TERM=dumb NO_COLOR=1; do
    script -q -e -c "env TERM=xterm $env '$SBX_BIN' pull --store '$T/store-dumb-${env%%=*}' '$R/oci-multi:v1'" /dev/null >"$T/tty" 2>&1 ||
        { cat "$T/tty"; fail "pull on a terminal with $env failed"; }
    ! grep -q $'\e' "$T/tty" || fail "escape codes on a terminal with $env"
    grep -q "${R#*/}" "$T/tty" || grep -q "pulled" "$T/tty" || fail "no progress with $env"
done

case_ "on a terminal: progress drawn in place for each layer"
script -q -e -c "env -u NO_COLOR TERM=xterm '$SBX_BIN' pull --store '$T/store-tty' '$R/oci-multi:v1'" /dev/null >"$T/tty" 2>&1 ||
    { cat "$T/tty"; fail "pull on a terminal failed"; }
grep -q $'\e\[' "$T/tty" || fail "no terminal control sequences on a terminal"
for d in $(fx oci-multi '.layers[].digest'); do
    grep -q "${d:0:19}" "$T/tty" || fail "layer ${d:0:19} not shown on the terminal"
done
grep -q "$(fx oci-multi .digest)" "$T/tty" || fail "the digest is not printed on a terminal"

if [[ -n $HOSTPLAT ]]; then
    for img in oci-index docker-list; do
        case_ "$img: the host's platform ($HOSTPLAT) by default"
        ok resolve "$R/$img:v1"
        out_is "$(fx "$img" ".platforms[\"$HOSTPLAT\"].digest")"
        ok pull --json "$R/$img:v1"
        check_pulled "$img" "$HOSTPLAT"
        ok inspect --json "$R/$img:v1"
        # inspect of an index shows every platform's manifest
        for d in $(fx "$img" '.platforms[].digest'); do out_has "$d"; done
    done
fi

case_ "the store is consistent and names what was pulled"
STORE=$T/store
fsck_clean
ok images
for img in "${SINGLE[@]}"; do out_has "$R/$img:v1"; done

case_ "a second pull downloads no blob"
before=$(proxy_reqs p '.method == "GET" and (.path | test("/blobs/"))')
ok pull --json "$R/oci-multi:v1"
check_pulled oci-multi
jq_is '[.layers[].present] | all' true
after=$(proxy_reqs p '.method == "GET" and (.path | test("/blobs/"))')
assert_eq "$after" "$before" "blob GETs during a pull of a present image"

case_ "layers the store has by diff_id are not downloaded again in another compression"
STORE=$T/store-dedup
ok pull --json "$R/oci-multi:v1"
before=$(proxy_reqs p '.method == "GET" and (.path | test("/blobs/"))')
ok pull --json "$R/oci-mixed:v1"
check_pulled oci-mixed
after=$(proxy_reqs p '.method == "GET" and (.path | test("/blobs/"))')
# only the config is new: every layer's diff_id is already stored
assert_eq "$((after - before))" 1 "blob GETs for oci-mixed after oci-multi"
jq_is '[.layers[].present] | all' true
fsck_clean

# stored_is IMG WHICH: each layer of IMG as stored (layers/sha256/<diff_id>.zst
# or .gz, and its recorded digest) is the registry's blob itself (WHICH=blob)
# or was recompressed by the store (WHICH=recompressed, zstd with checksums).
STORE_TOOL=$SBX_BUILD_DIR/tests/sbx_store_tool
stored_is() {
    local img=$1 which=$2 digest diff_id file rec
    for i in $(seq 0 $(($(fx "$img" '.layers | length') - 1))); do
        digest=$(fx "$img" ".layers[$i].digest")
        diff_id=$(fx "$img" ".layers[$i].diff_id")
        file=$(compgen -G "$STORE/layers/sha256/${diff_id#sha256:}.*") ||
            fail "$img layer $i: not stored"
        rec=$("$STORE_TOOL" "$STORE" layer-info "$diff_id" | cut -d' ' -f4)
        assert_eq "$rec" "sha256:$(sha256sum <"$file" | cut -d' ' -f1)" "recorded digest of $file"
        if [[ $which == blob ]]; then
            cmp -s "$file" "$FX/blobs/sha256/${digest#sha256:}" ||
                fail "$img layer $i: the stored file is not the registry's blob"
        else
            [[ $file == *.zst ]] || fail "$img layer $i: recompressed, but not as zstd"
            ! cmp -s "$file" "$FX/blobs/sha256/${digest#sha256:}" ||
                fail "$img layer $i: the stored file is the registry's blob, frames without checksums"
            zstd -lv "$file" 2>&1 | grep -q 'Check: XXH64' || fail "$img layer $i: stored without a checksum"
        fi
    done
}

case_ "zstd layers are stored as the registry sent them, not recompressed"
STORE=$T/store-zstd
ok pull --json "$R/oci-zstd:v1"
check_pulled oci-zstd
stored_is oci-zstd blob
ok unpack "$R/oci-zstd:v1" "$T/zstd-root"
assert_eq "$(cat "$T/zstd-root/app/hello.txt")" "hello from the second layer" "a file of the stored layer"
cmp -s "$T/zstd-root/bin/busybox" /bin/busybox || fail "busybox unpacked from the stored layer differs"
fsck_clean

case_ "gzip layers are stored as the registry sent them (one member or several); plain tars compressed"
STORE=$T/store-gzip
ok pull --json "$R/oci-multi:v1"
check_pulled oci-multi
stored_is oci-multi blob
fsck_clean
STORE=$T/store-gzip-members # (its layer is oci-multi's first, in two members)
ok pull --json "$R/oci-gzip-members:v1"
check_pulled oci-gzip-members
stored_is oci-gzip-members blob
ok unpack "$R/oci-gzip-members:v1" "$T/members-root"
cmp -s "$T/members-root/bin/busybox" /bin/busybox || fail "busybox of a two-member gzip layer differs"
fsck_clean
STORE=$T/store-tar
ok pull --json "$R/oci-tar:v1"
stored_is oci-tar recompressed

case_ "zstd frames without checksums are recompressed (the store's readers rely on them), nothing downloaded twice"
STORE=$T/store-zstd-nocheck
before=$(proxy_reqs p '.method == "GET" and (.path | test("/blobs/"))')
ok pull --json "$R/oci-zstd-nocheck:v1"
after=$(proxy_reqs p '.method == "GET" and (.path | test("/blobs/"))')
assert_eq "$((after - before))" 3 "blob GETs for a config and two layers"
err_has "zstd frames without checksums; stored recompressed"
check_pulled oci-zstd-nocheck
stored_is oci-zstd-nocheck recompressed
ok unpack "$R/oci-zstd-nocheck:v1" "$T/nocheck-root"
cmp -s "$T/nocheck-root/bin/busybox" /bin/busybox || fail "busybox of a recompressed layer differs"
fsck_clean

case_ "pinned refs: name@digest, and name:tag@digest where the digest wins"
STORE=$T/store-pin
d=$(fx oci-zstd .digest)
ok pull --json "$R/oci-zstd@$d"
check_pulled oci-zstd
ok resolve "$R/oci-zstd:nosuchtag@$d"
out_is "$d"
# the digest names a manifest that is not in this repository: not found
fails pull "$R/oci-single:v1@$(fx oci-tar .digest)"
err_has 'not found|unknown'
err_has "$R/oci-single"
fsck_clean

case_ "inspect from the registry without pulling (empty store)"
STORE=$T/store-empty
layer_gets() {
    local q='.method == "GET" and (.path | test("/blobs/"))'
    proxy_reqs p "$q and .path != \"/v2/test/oci-multi/blobs/$(fx oci-multi .config)\""
}
before=$(layer_gets)
ok inspect --json "$R/oci-multi:v1"
for d in $(fx oci-multi '.digest, .config, .layers[].digest'); do out_has "$d"; done
assert_eq "$(layer_gets)" "$before" "layer GETs during inspect"

case_ "four pulls at once into one store: the same image twice, and two sharing its layers"
STORE=$T/store-concurrent
imgs=(oci-multi oci-multi oci-mixed docker-multi)
pids=()
for i in 0 1 2 3; do
    "$SBX_BIN" pull --json --store "$STORE" "$R/${imgs[$i]}:v1" >"$T/c$i.out" 2>"$T/c$i.err" &
    pids+=($!)
done
for i in 0 1 2 3; do
    wait "${pids[$i]}" || { cat "$T/c$i.err"; fail "concurrent pull of ${imgs[$i]} failed"; }
    cp "$T/c$i.out" "$T/out"
    check_pulled "${imgs[$i]}"
done
fsck_clean

case_ "a config whose diff_id does not match its layer: pull --unpack refuses it and names nothing"
STORE=$T/store-baddiff
fails pull --unpack "$R/bad-diffid:v1"
err_has 'diff_?id|uncompressed'
err_has "bad-diffid"
ok images
if grep -q bad-diffid "$T/out"; then fail "the store names an image whose layer failed its diff_id"; fi
fsck_clean

case_ "a plain pull keeps the gzip blob unchecked; its first use finds the diff_id false"
# (the blob digest is checked at pull; the tar against the diff_id where it
# is read anyway: unpack, mount, push, export, fsck)
STORE=$T/store-baddiff2
bad_diff=sha256:$(printf 'not the layer' | sha256sum | cut -d' ' -f1) # what its config claims
ok pull "$R/bad-diffid:v1"
[[ -f $STORE/layers/sha256/${bad_diff#sha256:}.gz ]] || fail "the blob is not stored as sent"
assert_eq "$(sqlite3 "$STORE/meta.db" "SELECT verified FROM layers")" 0 "layer recorded unchecked"
fails unpack "$R/bad-diffid:v1" "$T/bad-root"
err_has "is not this layer"
err_has "$bad_diff"
[[ ! -e $T/bad-root ]] || fail "unpack of a false layer left $T/bad-root"
[[ -z $(ls "$STORE/unpacked") ]] || fail "a false layer reached the unpacked cache"
assert_eq "$(sqlite3 "$STORE/meta.db" "SELECT verified FROM layers")" 0 "still unchecked"
fails export "$R/bad-diffid:v1" "$T/bad-oci"
err_has "is not this layer"
if "$SBX_BIN" fsck --store "$STORE" >/dev/null 2>"$T/err"; then fail "fsck found no false layer"; fi
err_has "not this layer"
assert_eq "$(sqlite3 "$STORE/meta.db" "SELECT count(*) FROM layers")" 0 "quarantined by fsck"
# a true claim: checked by its first unpack, recorded as such
ok pull "$R/oci-single:v1"
assert_eq "$(sqlite3 "$STORE/meta.db" "SELECT verified FROM layers")" 0 "stored unchecked"
ok unpack "$R/oci-single:v1" "$T/single-root"
assert_eq "$(sqlite3 "$STORE/meta.db" "SELECT verified, size > 0 FROM layers")" "1|1" \
    "checked by its first read"
fsck_clean

case_ "an image claiming another layer's diff_id decides nothing for other images"
STORE=$T/store-squat
bb_diff=$(fx oci-single '.diff_ids[0]')
ok pull "$R/squat-diffid:v1" # first: its blob stored unchecked under busybox's diff_id
ok pull "$R/oci-single:v1"   # another blob for that diff_id: downloaded, checked, replaces it
assert_eq "$(sqlite3 "$STORE/meta.db" "SELECT verified, zstd_digest FROM layers")" \
    "1|$(fx oci-single '.layers[0].digest')" "the real blob, checked"
ok unpack "$R/oci-single:v1" "$T/squat-victim"
[[ -x $T/squat-victim/bin/busybox ]] || fail "the victim's tree is not busybox"
ok inspect --json "$R/squat-diffid:v1" # the squatter's image reads the real layer now
fsck_clean
# the other order: the real layer first; the squatter's pull reuses it
STORE=$T/store-squat2
ok pull "$R/oci-single:v1"
ok unpack "$R/oci-single:v1" "$T/squat-victim2"
ok pull "$R/squat-diffid:v1"
assert_eq "$(sqlite3 "$STORE/meta.db" "SELECT verified, zstd_digest FROM layers")" \
    "1|$(fx oci-single '.layers[0].digest')" "the real blob stays"
fsck_clean

case_ "exact config bytes: inspect --config"
STORE=$T/store
ok inspect --config "$R/oci-multi:v1"
assert_eq "sha256:$(sha256sum <"$T/out" | cut -d' ' -f1)" "$(fx oci-multi .config)" "sha256 of inspect --config"

case_ "with the registry gone: inspect from the store, pinned and cached resolves still answer"
STORE=$T/store
ok resolve "$R/oci-zstd@$(fx oci-zstd .digest)"
reg_stop r
ok inspect --json "$R/oci-multi:v1"
jq_is .source store
jq_is .digest "$(fx oci-multi .digest)"
ok resolve "$R/oci-zstd@$(fx oci-zstd .digest)"
out_is "$(fx oci-zstd .digest)"
SBX_RESOLVE_TTL=3600 ok resolve "$R/oci-multi:v1"
out_is "$(fx oci-multi .digest)"
fails resolve --no-cache "$R/oci-multi:v1"
err_has 'connect|refused|reach|answered|HTTP|reply'
fsck_clean

t_pass
