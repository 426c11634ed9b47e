#!/bin/bash
# Shared setup for the store's integration tests: the binaries, a throwaway
# directory removed on exit, and independent checks of a store's files.
set -euo pipefail

: "${SBX_BIN:?SBX_BIN must name the sbx-image binary}"
: "${SBX_BUILD_DIR:?SBX_BUILD_DIR must name the build directory}"
STORE_TOOL=${STORE_TOOL:-$SBX_BUILD_DIR/tests/sbx_store_tool}
[[ -x $STORE_TOOL ]] || { echo "FAIL: $STORE_TOOL not built" >&2; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sbx-store-it.XXXXXX")
_store_cleanup() {
  local pids
  pids=$(jobs -p) && [[ -n $pids ]] && kill -9 $pids 2>/dev/null
  wait 2>/dev/null || true
  for m in "${STORE_MOUNTS[@]:-}"; do [[ -n $m ]] && umount -l "$m" 2>/dev/null || true; done
  rm -rf "$WORK"
}
STORE_MOUNTS=()
trap _store_cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

sbx() { "$SBX_BIN" "$@"; }

# Every file under blobs/ and layers/ must hash to its name, checked with
# coreutils and the zstd tool rather than the store's own code.
check_no_partial() {
  local root=$1 f name got
  for f in "$root"/blobs/sha256/*; do
    [[ -e $f ]] || continue
    name=${f##*/}
    got=$(sha256sum <"$f" | cut -d' ' -f1)
    [[ $got == "$name" ]] || fail "blob $f hashes to $got"
  done
  for f in "$root"/layers/sha256/*; do
    [[ -e $f ]] || continue
    name=${f##*/}
    name=${name%.zst}
    name=${name%.gz} # zstd(1) reads gzip too
    got=$(zstd -dcq <"$f" | sha256sum | cut -d' ' -f1)
    [[ $got == "$name" ]] || fail "layer $f decompresses to $got"
  done
}

# fsck must exit 0 and say nothing was corrupt or dangling.
check_fsck_clean() {
  local root=$1 out
  out=$(sbx --store "$root" fsck --json 2>"$WORK/fsck.err") ||
    fail "fsck not clean: $(cat "$WORK/fsck.err") $out"
  jq -e '.clean and .corrupt == 0 and .dangling_repaired == 0' <<<"$out" >/dev/null ||
    fail "fsck report not clean: $out"
}

# Nothing left behind in tmp/ once a store was opened after a crash.
check_tmp_empty() {
  local root=$1
  [[ -z $(ls -A "$root/tmp") ]] || fail "stale temp files in $root/tmp: $(ls -A "$root/tmp")"
}
