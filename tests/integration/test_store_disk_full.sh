#!/bin/bash
# Disk full: a store on a small tmpfs.  A layer or blob too big for it fails
# with SBX_ENOSPC (exit 5 from the tool) and one error line naming the store;
# nothing partial is left, fsck is clean, what was stored still reads back,
# and once space is freed, writes work again.
source "$(dirname "$0")/lib/store_env.sh"
[[ $(id -u) == 0 ]] || fail "needs root to mount a tmpfs"
M=$WORK/mnt
mkdir -p "$M"
mount -t tmpfs -o size=6m,mode=0700 sbx-store-full "$M" || fail "mount tmpfs on $M"
STORE_MOUNTS+=("$M")
S=$M/store

m=$("$STORE_TOOL" "$S" put-image small 1 200000)
head -c 20000000 /dev/urandom >"$WORK/big"   # incompressible: 20 MB does not fit

expect_enospc() {
  local what=$1; shift
  local rc=0
  "$@" >/dev/null 2>"$WORK/err" || rc=$?
  ((rc == 5)) || fail "$what: exit $rc, want 5 (disk full): $(cat "$WORK/err")"
  (($(wc -l <"$WORK/err") == 1)) || fail "$what: want one error line, got: $(cat "$WORK/err")"
  grep -q "No space left on device" "$WORK/err" || fail "$what: no ENOSPC text: $(cat "$WORK/err")"
  grep -qF "store '$S'" "$WORK/err" || fail "$what: error does not name the store: $(cat "$WORK/err")"
  echo "ok: $what: $(cat "$WORK/err")"
}
expect_enospc "layer" "$STORE_TOOL" "$S" put-layer "$WORK/big"
check_tmp_empty "$S"
expect_enospc "blob" "$STORE_TOOL" "$S" put-blob "$WORK/big"
check_tmp_empty "$S"
check_fsck_clean "$S"
check_no_partial "$S"
"$STORE_TOOL" "$S" verify-all >/dev/null || fail "stored image no longer reads back"

# Fill the disk to the last byte, then try small writes: a clear error or
# success, never damage.
dd if=/dev/zero of="$M/filler" bs=64k 2>/dev/null || true
for i in 1 2 3; do
  rc=0
  "$STORE_TOOL" "$S" put-image "full-$i" "$((i + 10))" 300000 >/dev/null 2>"$WORK/err" || rc=$?
  ((rc == 0 || rc == 5)) || fail "write on a full disk: exit $rc: $(cat "$WORK/err")"
  echo "full disk, write $i: exit $rc $(cat "$WORK/err")"
done
# Still readable on a full disk, and gc frees space there.  The WAL file is
# kept (empty once the last handle closed), so opening needs no new file.
[[ -f $S/meta.db-wal && -f $S/meta.db-shm ]] || fail "the WAL or its index was not kept"
echo "full disk: meta.db-wal is $(stat -c %s "$S/meta.db-wal") bytes"
sbx --store "$S" images >/dev/null || fail "images on a full disk"
sbx --store "$S" rm small >/dev/null 2>"$WORK/err" || fail "rm on a full disk: $(cat "$WORK/err")"
freed=$(sbx --store "$S" gc --json | jq .bytes_freed) || fail "gc on a full disk"
((freed > 0)) || fail "gc on a full disk freed nothing"
echo "ok: gc on a full disk freed $freed bytes"
rm -f "$M/filler"
check_fsck_clean "$S"
check_no_partial "$S"
check_tmp_empty "$S"
# Space again: the same work now succeeds.
"$STORE_TOOL" "$S" put-image again 2 300000 >/dev/null || fail "write after freeing space"
"$STORE_TOOL" "$S" verify-all >/dev/null || fail "verify-all"
sbx --store "$S" gc >/dev/null || fail "gc"
check_fsck_clean "$S"
echo "PASS: disk full is a clear error and leaves the store consistent"
