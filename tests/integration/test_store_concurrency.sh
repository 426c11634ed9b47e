#!/bin/bash
# Concurrency test: 8 processes put and read the same and different images
# (and blobs only an explicit lease protects) while gc runs in a loop, every
# other time with a 1-byte budget that evicts every name it may.  Ends
# with every worker successful, every named image reading back intact, fsck
# clean and no partial file anywhere.
source "$(dirname "$0")/lib/store_env.sh"
S=$WORK/store
WORKERS=${STORE_CONC_WORKERS:-8}
ROUNDS=${STORE_CONC_ROUNDS:-8}

# Many first opens of a fresh store at once: one schema, no errors.
F=$WORK/fresh
opens=()
# (the store tool opens with sbx_store_open, which makes the store; the
# read-only commands would not)
for ((i = 0; i < 8; i++)); do "$STORE_TOOL" "$F" verify-all >"$WORK/open.$i" 2>&1 & opens+=($!); done
for i in "${!opens[@]}"; do
  wait "${opens[$i]}" || fail "concurrent first open $i: $(cat "$WORK/open.$i")"
done
check_fsck_clean "$F"

"$STORE_TOOL" "$S" put-image base 1 100000 >/dev/null
touch "$WORK/gc.run"
( n=0
  while [[ -e $WORK/gc.run ]]; do
    # Plain gc, and every other time a budget of 1 byte: it evicts every name
    # it may, so only leases keep the workers' images and blobs alive.
    budget=(); ((n % 2)) && budget=(--max-bytes 1)
    sbx --store "$S" gc "${budget[@]}" --json >"$WORK/gc.last" 2>"$WORK/gc.err" ||
      echo "gc failed: $(cat "$WORK/gc.err")" >"$WORK/gc.failed"
    n=$((n + 1))
  done
  echo "$n" >"$WORK/gc.count" ) &
gcpid=$!

pids=()
for ((i = 0; i < WORKERS; i++)); do
  "$STORE_TOOL" "$S" worker "$i" "$ROUNDS" 2>"$WORK/worker.$i.err" & pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { failed=1; echo "worker $i failed: $(cat "$WORK/worker.$i.err")" >&2; }
done
rm -f "$WORK/gc.run"
wait "$gcpid"
[[ ! -e $WORK/gc.failed ]] || fail "$(cat "$WORK/gc.failed")"
((failed == 0)) || fail "a worker failed"
gcs=$(cat "$WORK/gc.count")
((gcs >= 3)) || fail "gc ran only $gcs times while the workers ran"

# Each worker keeps at most its last two images, plus base and the three
# shared ones (fewer when eviction took names).
want=$((WORKERS * 2 + 4))
n=$(sbx --store "$S" images --json | jq length)
((n <= want)) || fail "$n names, want at most $want"
"$STORE_TOOL" "$S" verify-all || fail "verify-all"
check_fsck_clean "$S"
check_no_partial "$S"
# Two writers of the same blob end with one: every name has its own image
# with one layer, so after gc there is exactly one layer file per name.
sbx --store "$S" gc >/dev/null
layers=$(ls "$S/layers/sha256" | wc -l)
((layers == n)) || fail "$layers layer files for $n names"
echo "PASS: $WORKERS workers x $ROUNDS rounds, gc ran $gcs times"
