#!/bin/bash
# A write into an `unpack --link` tree reaches the store's unpacked layer
# cache (the files are shared).  fsck compares every unpacked layer with a
# fresh extraction of its verified layer: it names the file that differs,
# takes the dir out of the cache (the next unpack makes it again from the
# layer), and keeps one a mount holds until it is unmounted.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
source "$SBX_SOURCE_DIR/tests/integration/lib/unpack_lib.sh"
b_init
u_image unpack:poison >/dev/null
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[2]))[sys.argv[1]])' "$1" "$T/out"; }

sbx unpack --link unpack:poison "$T/linked" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "unpack --link failed"; }
sbx fsck --json >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "fsck of a clean store failed"; }
(( $(field unpacked_checked) >= 4 )) || b_die "fsck checked $(field unpacked_checked) unpacked layers, want the image's 4"
[[ $(field unpacked_corrupt) == 0 ]] || b_die "a clean cache was found corrupt"
b_pass "fsck checks every unpacked layer of a clean store"

echo poisoned >>"$T/linked/data/keep/k" # the cache's inode
rc=0; sbx fsck --json >"$T/out" 2>"$T/err" || rc=$?
[[ $rc == 1 ]] || { cat "$T/err"; b_die "fsck exit $rc after the cache was written to, want 1"; }
[[ $(field unpacked_corrupt) == 1 && $(field clean) == False ]] || b_die "fsck: $(cat "$T/out")"
grep -q 'differs from its layer at /data/keep/k: size' "$T/err" || { cat "$T/err"; b_die "fsck does not name the file"; }
sbx unpack unpack:poison "$T/again" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "unpack after fsck failed"; }
[[ $(cat "$T/again/data/keep/k") == v2 ]] || b_die "the next unpack got the written file: $(cat "$T/again/data/keep/k")"
sbx fsck --json >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "fsck after the cache was made again"; }
b_pass "a write through a --link tree: fsck names the file, drops the dir, the next unpack is the layer's"

sbx unpack --link unpack:poison "$T/linked2" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "unpack --link failed"; }
sbx mount unpack:poison "$T/mnt" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "mount failed"; }
chmod 600 "$T/linked2/data/run.sh"
rc=0; sbx fsck --json >"$T/out" 2>"$T/err" || rc=$?
[[ $rc == 1 && $(field unpacked_kept) == 1 ]] || { cat "$T/err" "$T/out"; b_die "fsck with the layer mounted: exit $rc"; }
grep -q 'at /data/run.sh: mode, and is kept' "$T/err" || { cat "$T/err"; b_die "fsck does not say it kept the mounted layer"; }
sbx umount "$T/mnt" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "umount failed"; }
rc=0; sbx fsck --json >"$T/out" 2>"$T/err" || rc=$?
[[ $rc == 1 && $(field unpacked_kept) == 0 && $(field unpacked_corrupt) == 1 ]] || { cat "$T/err"; b_die "fsck after umount: exit $rc $(cat "$T/out")"; }
sbx fsck >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "fsck not clean at the end"; }
b_assert_clean
b_pass "a layer dir a mount holds is reported and kept, then dropped once unmounted"
