#!/bin/bash
# Crash test: writers and gc are killed with SIGKILL at random points, 50
# rounds.  After each, fsck is clean (it re-hashes every file), tmp/ is empty,
# and the interrupted work completes when run again; every 5th round, every
# file is also checked with sha256sum and zstd (no store code involved).
source "$(dirname "$0")/lib/store_env.sh"
S=$WORK/store
ROUNDS=${STORE_CRASH_ROUNDS:-50}
RANDOM=${STORE_CRASH_SEED:-$$}
echo "seed $RANDOM, $ROUNDS rounds"

# Calibrate: kill times are spread over how long a put takes on this machine.
"$STORE_TOOL" "$S" put-image base 1 1500000 >/dev/null
t0=$(date +%s%N)
"$STORE_TOOL" "$S" put-image calibrate 2 1500000 >/dev/null
span=$(( ($(date +%s%N) - t0) / 1000000 + 2 ))   # ms
sbx --store "$S" rm calibrate >/dev/null
echo "an uninterrupted put takes about $span ms"
killed=0
for ((r = 0; r < ROUNDS; r++)); do
  size=$(( (RANDOM % 6 + 1) * 250000 ))
  seed=$(( r % 7 + 10 ))       # repeats: some rounds rewrite what a killed round left
  delay=$(( RANDOM % (span * 2 / 3 + 1) ))   # ms
  pids=()
  case $(( RANDOM % 4 )) in
    0|1) # one writer
      "$STORE_TOOL" "$S" put-image "img-$r" "$seed" "$size" >/dev/null 2>&1 & pids+=($!) ;;
    2) # gc with work to do, and a writer at once
      sbx --store "$S" rm "img-$((r - 1))" >/dev/null 2>&1 || true
      sbx --store "$S" gc >/dev/null 2>&1 & pids+=($!)
      "$STORE_TOOL" "$S" put-image "img-$r" "$seed" "$size" >/dev/null 2>&1 & pids+=($!) ;;
    3) # two writers of the same image
      "$STORE_TOOL" "$S" put-image "img-$r" "$seed" "$size" >/dev/null 2>&1 & pids+=($!)
      "$STORE_TOOL" "$S" put-image "img-$r" "$seed" "$size" >/dev/null 2>&1 & pids+=($!) ;;
  esac
  sleep "$((delay / 1000)).$(printf '%03d' $((delay % 1000)))"
  kill -9 "${pids[@]}" 2>/dev/null || true
  for p in "${pids[@]}"; do
    st=0
    wait "$p" 2>/dev/null || st=$?
    ((st == 137)) && killed=$((killed + 1))   # died of the SIGKILL, not finished
  done

  check_fsck_clean "$S"         # opens the store, undoes half-done links, re-hashes all
  check_tmp_empty "$S"
  ((r % 5 == 4)) && check_no_partial "$S"   # the same, with sha256sum and zstd
  # The interrupted work completes when run again, and reads back.
  m=$("$STORE_TOOL" "$S" put-image "img-$r" "$seed" "$size") || fail "round $r: rerun failed"
  got=$(sbx --store "$S" images --json | jq -r --arg n "img-$r" '.[] | select(.name == $n) | .digest')
  [[ $got == "$m" ]] || fail "round $r: name img-$r -> '$got', want $m"
  # Keep the store small: old names go, and gc (sometimes killed) removes them.
  sbx --store "$S" rm "img-$((r - 4))" >/dev/null 2>&1 || true
  if (( r % 10 == 9 )); then
    "$STORE_TOOL" "$S" verify-all >/dev/null || fail "round $r: verify-all"
    sbx --store "$S" gc >/dev/null || fail "round $r: gc"
  fi
done
"$STORE_TOOL" "$S" verify-all || fail "verify-all"
check_fsck_clean "$S"
(( killed >= ROUNDS / 5 )) || fail "only $killed processes were killed in flight; the test did not test"
echo "PASS: $ROUNDS rounds, $killed processes killed in flight"
