#!/bin/bash
# Runtime hosts against real overlayfs: mount an image, change files and
# directories, commit, mount the snapshot elsewhere and see exactly those
# changes (deletions and opaque dirs too); fork twice and diverge; commit
# determinism; read-only mounts; refusals; gc and fsck with live and dead
# mounts; expiry and its refresh; 16 concurrent mounts of a new image
# unpack each layer once.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_private_mounts "$0" "$@"
b_init

# listing ROOT: every entry with owner, mode, type, size and mtime (ns),
# plus file checksums: what a snapshot must carry over exactly.
listing() {
    (cd "$1" && find . -xdev -printf '%p %U:%G %m %y %s %T@\n' | sort &&
        find . -xdev -type f -exec md5sum {} + | sort)
}
mounts_json() { sbx mounts --json; }
# start_holder PATTERN CMD...: run CMD (in a mount namespace of its own) in
# the background as $holder, and wait until its mountinfo matches PATTERN.
start_holder() {
    local pat=$1
    shift
    "$@" &
    holder=$!
    for _ in $(seq 1 100); do grep -q "$pat" "/proc/$holder/mountinfo" 2>/dev/null && return 0; sleep 0.05; done
    b_die "the holder's namespace never matched '$pat'"
}
stop_holder() { kill "$holder" && wait "$holder" 2>/dev/null || true; }
# umount_refused ID|DIR WHAT: umount must fail because the mount is in use elsewhere
umount_refused() {
    if sbx umount "$1" 2>"$T/err"; then b_die "unmounted $2"; fi
    grep -q "also mounted elsewhere" "$T/err" || b_die "refusal for $2 unclear: $(cat "$T/err")"
}
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

b_busybox_rootfs "$T/bb"
mkdir -p "$T/bb/data/keep" "$T/bb/data/opq" "$T/bb/data/gone-dir/sub"
echo keep >"$T/bb/data/keep/k"
echo old >"$T/bb/data/opq/old"
echo g >"$T/bb/data/gone-dir/sub/f"
base=$("$B_DRIVER" --seed "$STORE" "$T/bb" rt:base)

# ---- refusals ----
if sbx mount no-such:image "$T/nope" 2>"$T/err"; then b_die "mounting an unknown image worked"; fi
grep -q "no-such:image" "$T/err" || b_die "unknown image error does not name it: $(cat "$T/err")"
[[ ! -e $T/nope ]] || b_die "a failed mount left its directory"
mkdir "$T/full" && touch "$T/full/x"
if sbx mount rt:base "$T/full" 2>"$T/err"; then b_die "mounted over a non-empty dir"; fi
grep -q "not empty" "$T/err" || b_die "non-empty error unclear: $(cat "$T/err")"
[[ $(mounts_json) == "[]" ]] || b_die "refused mounts left records: $(mounts_json)"
b_pass "unknown image and non-empty dir refused with clear errors, nothing left"

# ---- mount, change, commit ----
sbx mount --json rt:base "$T/m1" >"$T/m1.json"
id1=$(field id <"$T/m1.json")
python3 - "$T/m1.json" "$base" "$T/m1" <<'PY' || b_die "mount --json wrong: $(cat "$T/m1.json")"
import json, os, sys
o = json.load(open(sys.argv[1]))
assert o["digest"] == sys.argv[2] and o["dir"] == sys.argv[3] and o["layers"] == 1, o
assert len(o["lowers"]) == 1 and all(os.path.isdir(l) for l in o["lowers"]), o
assert os.path.isdir(o["upper"]) and os.path.isdir(o["work"]) and not o["flattened"], o
PY
grep -q " $T/m1 .* - overlay sbx-$id1 " /proc/self/mountinfo || b_die "no overlay with source sbx-$id1 at $T/m1"
[[ $(cat "$T/m1/data/keep/k") == keep ]] || b_die "mount does not show the image"
m=$T/m1
echo new >"$m/data/new.txt"
echo changed >"$m/data/keep/k"
touch -d '2001-02-03 04:05:06.123456789' "$m/data/keep/k"
rm "$m/bin/vi"
rm -rf "$m/data/gone-dir"
rm -rf "$m/data/opq" && mkdir "$m/data/opq" && echo fresh >"$m/data/opq/fresh"
mkdir -p "$m/home/app/proj" && echo x >"$m/home/app/proj/f" && chown -R 1000:1000 "$m/home/app/proj"
chmod 0600 "$m/etc/group"
ln -s ../keep/k "$m/data/link"
listing "$m" >"$T/want"
sbx commit --json --tag rt:snap1 "$id1" >"$T/c1.json" 2>"$T/c1.err" || { cat "$T/c1.err"; b_die "commit failed"; }
snap1=$(field digest <"$T/c1.json")
python3 - "$T/c1.json" "$base" <<'PY' || b_die "commit --json wrong: $(cat "$T/c1.json")"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["parent"] == sys.argv[2] and o["changed"] and o["name"] == "docker.io/library/rt:snap1", o
assert o["diff_id"].startswith("sha256:") and o["digest"] != o["parent"], o
assert 0 < o["size_bytes"] < 10000 < o["total_bytes"], o
assert o["expires_at"] == 0, o
PY
sbx inspect --json rt:snap1 >"$T/inspect.json"
python3 - "$T/inspect.json" <<'PY' || b_die "snapshot image has not 2 layers"
import json, sys
o = json.load(open(sys.argv[1]))
s = json.dumps(o)
assert s.count("sha256:") >= 3, o
PY
b_pass "mount --json gives id, digest, lowers/upper/work; commit --json gives digest, parent, sizes"

sbx mount rt:snap1 "$T/m2" >/dev/null
listing "$T/m2" >"$T/got"
diff -u "$T/want" "$T/got" >"$T/diff" || { head -30 "$T/diff"; b_die "the snapshot differs from what the sandbox left"; }
[[ ! -e $T/m2/bin/vi && ! -e $T/m2/data/gone-dir && ! -e $T/m2/data/opq/old ]] || b_die "deletions lost"
[[ $(stat -c %y "$T/m2/data/keep/k") == "2001-02-03 04:05:06.123456789 +0000" ]] ||
    b_die "mtime not kept to the ns: $(stat -c %y "$T/m2/data/keep/k")"
b_pass "the snapshot mounted elsewhere has exactly the changes (new, modified, deleted files and dirs, opaque dir, owners, modes, ns mtimes)"

# ---- determinism: the same changes on the same parent ----
sbx mount rt:base "$T/d1" >/dev/null
sbx mount rt:base "$T/d2" >/dev/null
for d in "$T/d1" "$T/d2"; do
    echo same >"$d/same.txt"
    rm "$d/bin/vi"
    touch -h -d @1700000000 "$d/same.txt" "$d/bin" "$d" # times are content too
done
a=$(sbx commit "$T/d1"); b=$(sbx commit "$T/d2")
[[ $a == "$b" ]] || b_die "two commits of the same change differ: $a $b"
sbx umount "$T/d1" && sbx umount "$T/d2"
b_pass "same change on the same parent: same digest"

# ---- fork twice from one snapshot, diverge ----
sbx mount rt:snap1 "$T/f1" >/dev/null
sbx mount rt:snap1 "$T/f2" >/dev/null
echo one >"$T/f1/data/new.txt"
echo two >"$T/f2/data/new.txt"; rm "$T/f2/data/link"
s1=$(sbx commit "$T/f1"); s2=$(sbx commit "$T/f2")
[[ $s1 != "$s2" ]] || b_die "diverged forks gave one digest"
sbx umount "$T/f1" && sbx umount "$T/f2"
sbx mount "$s1" "$T/f1" >/dev/null && sbx mount "$s2" "$T/f2" >/dev/null
[[ $(cat "$T/f1/data/new.txt") == one && $(cat "$T/f2/data/new.txt") == two ]] || b_die "forks mixed up"
[[ -L $T/f1/data/link && ! -e $T/f2/data/link ]] || b_die "fork deletions mixed up"
[[ $(cat "$T/m2/data/new.txt") == new ]] || b_die "forking changed the snapshot"
b_pass "two forks of one snapshot diverge; the snapshot stays as it was"

# ---- rollback: mount an earlier snapshot ----
sbx mount rt:base "$T/rb" >/dev/null
[[ -e $T/rb/bin/vi && ! -e $T/rb/data/new.txt ]] || b_die "rollback to the base shows later changes"
sbx umount "$T/rb"
b_pass "mounting an earlier image rolls back"

# ---- read-only ----
sbx mount --read-only --json rt:snap1 "$T/ro" >"$T/ro.json"
[[ $(field upper <"$T/ro.json") == None ]] || b_die "read-only mount has an upper"
if (echo x >"$T/ro/x") 2>/dev/null; then b_die "wrote into a read-only mount"; fi
[[ $(cat "$T/ro/data/new.txt") == new ]] || b_die "read-only mount shows the wrong image"
if sbx commit "$T/ro" 2>"$T/err"; then b_die "committed a read-only mount"; fi
grep -q "read-only" "$T/err" || b_die "read-only commit error unclear: $(cat "$T/err")"
sbx umount "$T/ro"
b_pass "read-only mount: no upper, writes fail, commit refused"

# ---- umount: busy, by id or dir ----
sleep 30 </dev/null &
sleeper=$!
(cd "$T/f1" && exec sleep 30) &
busy=$!
sleep 0.3
if sbx umount "$T/f1" 2>"$T/err"; then b_die "unmounted a busy mount"; fi
grep -q "busy" "$T/err" || b_die "busy error unclear: $(cat "$T/err")"
[[ -e $T/f1/data/new.txt ]] || b_die "a refused umount dropped the mount"
kill "$busy" "$sleeper" 2>/dev/null || true
wait "$busy" "$sleeper" 2>/dev/null || true
sbx umount "$T/f1"
! grep -q " $T/f1 " /proc/self/mountinfo || b_die "umount left the overlay"
sbx umount "$T/f2"
b_pass "umount refuses a busy mount (nothing lost), then unmounts"

# ---- umount refuses a mount still in use elsewhere ----
sbx mount rt:base "$T/u1" >/dev/null
mkdir -p "$T/bundle-root" && mount --bind "$T/u1" "$T/bundle-root"
umount_refused "$T/u1" "a mount that is bind-mounted elsewhere"
umount "$T/bundle-root"
# a container: a mount namespace whose root it is (pivot_root into it)
start_holder "^[0-9]* [0-9]* [0-9:]* / / .* - overlay sbx-" \
    unshare -m --propagation private sh -c "cd '$T/u1' && mkdir -p .oldroot && pivot_root . .oldroot && exec /bin/sleep 60"
umount_refused "$T/u1" "the root of a running container"
[[ -d $T/u1/bin ]] || b_die "a refused umount changed the mount"
stop_holder
# a namespace that only holds a copy (any unshare -m made meanwhile) does not block it
start_holder "sbx-" unshare -m --propagation private sleep 60
sbx umount "$T/u1" || b_die "a copy in an idle mount namespace blocked umount"
stop_holder
b_pass "umount refuses (changing nothing) while a bind mount or a container's root has the mount; a mere copy does not block it"

# ---- --no-mount: the runtime mounts the overlay itself ----
sbx mount --no-mount --json rt:base "$T/ext-root" >"$T/ext.json"
[[ ! -e $T/ext-root ]] || b_die "--no-mount made or mounted its dir"
ext=$(field id <"$T/ext.json")
src=$(field source <"$T/ext.json"); opts=$(field options <"$T/ext.json")
[[ $src == "sbx-$ext" && $(field type <"$T/ext.json") == overlay && $opts == lowerdir=/*upperdir=/*redirect_dir=off ]] ||
    b_die "--no-mount --json lacks the mount: $(cat "$T/ext.json")"
sbx mounts | grep -q "^$ext .* ext " || b_die "mounts does not say ext: $(sbx mounts)"
mkdir -p "$T/ext-root"
# the runtime, in its own mount namespace, writes and then is stopped
start_holder " - overlay $src " unshare -m --propagation private sh -c \
    "mount -t overlay '$src' -o '$opts' '$T/ext-root' && echo from-runtime > '$T/ext-root/by-runtime' && exec sleep 60"
umount_refused "$ext" "a mount the runtime still has"
for _ in $(seq 1 100); do [[ -f $(field upper <"$T/ext.json")/by-runtime ]] && break; sleep 0.05; done
stop_holder
sbx gc --json >"$T/gc.json" # stopped, not yet committed: it must stay
[[ $(field mounts_reaped <"$T/gc.json") == 0 ]] || b_die "gc reaped a stopped external mount"
sbx commit --tag rt:ext "$ext" >/dev/null
sbx mount rt:ext "$T/ext-check" >/dev/null
[[ $(cat "$T/ext-check/by-runtime") == from-runtime ]] || b_die "the runtime's write is not in the snapshot"
sbx umount "$T/ext-check" && sbx umount "$ext"
! sbx mounts --json | grep -q "$ext" || b_die "umount left the external record"
b_pass "--no-mount: the runtime mounts type/source/options itself; the record lives through stop and gc, commit captures the runtime's writes"

# ---- a sandbox swapping a dir for a symlink during the capture gets no host files ----
sbx mount rt:base "$T/sw" >/dev/null
mkdir "$T/sw/d" && echo mine >"$T/sw/d/f"
# the capture lists d's xattrs (its 3rd llistxattr: the root's takes 2), stalls
# there, and d becomes a symlink to /etc before it is opened
strace -f -qq -o "$T/sw.trace" -e trace=llistxattr -e inject=llistxattr:delay_exit=1500000:when=3 \
    "$SBX_BIN" --store "$STORE" commit --tag rt:swap "$T/sw" >"$T/sw.out" 2>"$T/sw.err" &
tracer=$!
for _ in $(seq 1 100); do
    n=$(grep -c 'llistxattr(' "$T/sw.trace" 2>/dev/null || true)
    ((${n:-0} >= 3)) && break
    sleep 0.05
done
mv "$T/sw/d" "$T/sw/d.old" && ln -s /etc "$T/sw/d"
if wait "$tracer"; then
    sbx mount rt:swap "$T/sw2" >/dev/null
    ls -la "$T/sw2/d.old" >&2
    b_die "the commit went on although d became a symlink to /etc mid-capture (host files in the snapshot?)"
fi
grep -q "changed during the capture" "$T/sw.err" || b_die "swap error unclear: $(cat "$T/sw.err")"
if sbx inspect rt:swap >/dev/null 2>&1; then b_die "a failed commit named its snapshot"; fi
sbx umount "$T/sw"
b_pass "a dir swapped for a symlink to /etc mid-capture fails the commit; nothing of the host is stored"

# ---- gc and fsck with live mounts ----
sbx rm rt:snap1 >/dev/null
sbx gc --unpacked --json >"$T/gc.json"
[[ $(cat "$T/m2/data/new.txt") == new ]] || b_die "gc broke a live mount"
python3 - "$T/gc.json" <<'PY' || b_die "gc reaped live mounts: $(cat "$T/gc.json")"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["mounts_reaped"] == 0, o
PY
sbx inspect "$snap1" >/dev/null || b_die "gc removed the image of a live mount"
up=$(mounts_json | python3 -c 'import json,sys; print([m["upper"] for m in json.load(sys.stdin) if m["dir"]==sys.argv[1]][0])' "$T/m1")
[[ -f $up/data/new.txt ]] || b_die "gc removed a live upper dir"
b_pass "gc (--unpacked) keeps a live mount's image (its name removed), layers and upper dir"

# a mount unmounted by hand is dead: fsck and gc remove its record and upper
umount "$T/m2"
sbx fsck --json >"$T/fsck.json" || b_die "fsck not clean: $(cat "$T/fsck.json")"
[[ $(field dead_mounts <"$T/fsck.json") == 1 ]] || b_die "fsck did not report the hand-unmounted mount: $(cat "$T/fsck.json")"
! mounts_json | grep -q "\"$T/m2\"" || b_die "dead mount still listed"
sbx mount rt:base "$T/m3" >/dev/null && umount "$T/m3"
sbx gc --json >"$T/gc.json"
[[ $(field mounts_reaped <"$T/gc.json") == 1 ]] || b_die "gc did not reap the hand-unmounted mount: $(cat "$T/gc.json")"
# a record from another boot goes at the next command
python3 - "$STORE/meta.db" "$T/m1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE mounts SET boot_id='another-boot' WHERE dir=?", (sys.argv[2],))
db.commit()
PY
umount "$T/m1" # a reboot would have
! mounts_json | grep -q "\"$T/m1\"" || b_die "the other boot's mount is still listed: $(mounts_json)"
[[ ! -e $up ]] || b_die "the other boot's mount's upper is still there"
sbx gc >/dev/null
if sbx inspect "$snap1" >/dev/null 2>&1; then b_die "gc kept the unnamed snapshot after its mounts went"; fi
b_pass "mounts unmounted by hand or from another boot: gc and fsck remove them, then their image"

# ---- expiry ----
sbx mount rt:base "$T/e" >/dev/null
echo e >"$T/e/e"
sbx commit --json --expires-in 2s --tag rt:exp "$T/e" >"$T/e.json"
exp=$(field expires_at <"$T/e.json")
now=$(date +%s)
((exp >= now + 1 && exp <= now + 3)) || b_die "expires_at $exp not ~2s after $now"
sbx images --json | python3 -c '
import json, sys
e = [i for i in json.load(sys.stdin) if i["name"] == "docker.io/library/rt:exp"][0]
assert e["expires_at"] > 0 and e["size_bytes"] > 0 and e["total_bytes"] > e["size_bytes"], e
' || b_die "images --json lacks expires_at/size_bytes/total_bytes"
sbx umount "$T/e"
sleep 1.2
sbx mount rt:exp "$T/e" >/dev/null # a use: the expiry moves
sleep 1.5
sbx gc --json >"$T/gc.json"
[[ $(field names_expired <"$T/gc.json") == 0 ]] || b_die "a mounted image's name expired"
sbx umount "$T/e"
sleep 2.2
sbx gc --json >"$T/gc.json"
[[ $(field names_expired <"$T/gc.json") == 1 ]] || b_die "the expired name stayed: $(cat "$T/gc.json")"
if sbx inspect rt:exp >/dev/null 2>&1; then b_die "expired name still resolves"; fi
b_pass "commit --expires-in: images shows it, a mount refreshes it, gc removes it once expired"

# ---- 16 concurrent mounts of a new image: each layer unpacked once ----
b_busybox_rootfs "$T/bb2"
echo other >"$T/bb2/other"
"$B_DRIVER" --seed "$STORE" "$T/bb2" rt:new >/dev/null
pids=()
for i in $(seq 1 16); do sbx mount rt:new "$T/c$i" >"$T/c$i.out" 2>"$T/c$i.err" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || b_die "a concurrent mount failed"; done
n=$(cat "$T"/c*.err | grep -c ": unpack " || true)
cached=$(cat "$T"/c*.err | grep -c "layer 1/1 .*: cached" || true)
[[ $n -ge 1 ]] || b_die "no mount unpacked the layer"
for i in $(seq 1 16); do [[ $(cat "$T/c$i/other") == other ]] || b_die "mount $i is wrong"; done
[[ $(mounts_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') == 16 ]] || b_die "not 16 mounts"
# the extractor ran once: one "unpack" progress per layer-unpack, whoever did it
[[ $(cat "$T"/c*.err | grep -c "^sha256:[0-9a-f]*: unpack" || true) == 1 ]] || {
    cat "$T"/c*.err | grep unpack >&2
    b_die "the layer was unpacked more than once"
}
for i in $(seq 1 16); do sbx umount "$T/c$i"; done
[[ $(mounts_json) == "[]" ]] || b_die "records left after umount: $(mounts_json)"
b_pass "16 concurrent mounts of a new image: one unpack, 16 working mounts ($cached saw it cached)"
