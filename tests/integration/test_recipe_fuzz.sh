#!/bin/bash
# Bounded fuzz run of the recipe parser (tests/fuzz/fuzz_recipe.c): build the
# libFuzzer target with clang (ASan+UBSan, coverage on the recipes and common
# libraries) in its own build directory, run it for SBX_FUZZ_SECONDS (default
# 30) over the checked-in seed corpus.  Any crash, leak, sanitizer report or
# timeout fails the test and prints the reproducer.
set -euo pipefail
src=${SBX_SOURCE_DIR:?set SBX_SOURCE_DIR}
bld=${SBX_BUILD_DIR:?set SBX_BUILD_DIR}
seconds=${SBX_FUZZ_SECONDS:-30}
command -v clang >/dev/null || { echo "FAIL: clang is not installed (scripts/deps.sh)"; exit 1; }

dir="$bld/fuzz-recipes"
CC=clang cmake -S "$src" -B "$dir" -DSBX_FUZZ=ON -DSBX_WERROR=OFF -DSBX_SANITIZE=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
  >"$bld/fuzz-recipes.configure.log" 2>&1 || { cat "$bld/fuzz-recipes.configure.log"; exit 1; }
cmake --build "$dir" --target fuzz_recipe -j2 >"$bld/fuzz-recipes.build.log" 2>&1 \
  || { tail -50 "$bld/fuzz-recipes.build.log"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/tmp"
cp "$src"/tests/fuzz/corpus/recipe/* "$work/corpus/"
export TMPDIR="$work/tmp"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
set +e
"$dir/tests/fuzz/fuzz_recipe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -max_len=4096 -dict="$src/tests/fuzz/recipe.dict" -artifact_prefix="$work/" \
  -print_final_stats=1 "$work/corpus" >"$work/log" 2>&1
rc=$?
set -e
tail -n 20 "$work/log"
if [ "$rc" -ne 0 ]; then
  echo "FAIL: fuzz_recipe exited $rc"
  grep -m1 -A40 "ERROR:\|runtime error\|deadly signal" "$work/log" || true
  for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    [ -e "$f" ] || continue
    echo "reproducer $f:"; od -c "$f" | head -40
  done
  exit 1
fi
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log" | grep -o '[0-9]*$')
echo "ok: fuzz_recipe ran $runs inputs in ${seconds}s without a crash or leak"
[ "${runs:-0}" -gt 1000 ] || { echo "FAIL: too few runs ($runs)"; exit 1; }
