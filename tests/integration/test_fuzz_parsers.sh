#!/bin/bash
# Bounded fuzz runs of what faces the network and untrusted publishers
# (tests/fuzz/fuzz_{image,ref,auth,layer}.c): manifests, indexes and configs;
# image refs and platforms; WWW-Authenticate challenges and token answers;
# layer tars through the unpacker.  Built with clang (ASan+UBSan, coverage on
# the modules) in its own build directory, each run for SBX_FUZZ_SECONDS
# (default 15) from the checked-in seeds (layer seeds are made here).  Any
# crash, leak, sanitizer report or timeout fails the test with a reproducer.
set -euo pipefail
src=${SBX_SOURCE_DIR:?set SBX_SOURCE_DIR}
bld=${SBX_BUILD_DIR:?set SBX_BUILD_DIR}
seconds=${SBX_FUZZ_SECONDS:-15}
command -v clang >/dev/null || { echo "FAIL: clang is not installed (scripts/deps.sh)"; exit 1; }
targets=(image ref auth layer)

dir="$bld/fuzz-parsers"
CC=clang cmake -S "$src" -B "$dir" -DSBX_FUZZ=ON -DSBX_WERROR=OFF -DSBX_SANITIZE=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
  >"$bld/fuzz-parsers.configure.log" 2>&1 || { cat "$bld/fuzz-parsers.configure.log"; exit 1; }
cmake --build "$dir" -j2 --target "${targets[@]/#/fuzz_}" >"$bld/fuzz-parsers.build.log" 2>&1 \
  || { tail -50 "$bld/fuzz-parsers.build.log"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tmp"
export TMPDIR="$work/tmp"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

for t in image ref auth; do
  mkdir -p "$work/corpus-$t"
  cp "$src/tests/fuzz/corpus/$t/"* "$work/corpus-$t/"
done
# Layer seeds: the tar shapes layers take and the ones a hostile layer tries.
mkdir -p "$work/corpus-layer"
python3 - "$work/corpus-layer" <<'PY'
import io, sys, tarfile
out = sys.argv[1]
def tar(name, members, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for m, data in members:
            t.addfile(m, io.BytesIO(data) if data is not None else None)
    open(f"{out}/{name}", "wb").write(buf.getvalue())
def ti(name, type=tarfile.REGTYPE, data=b"", link="", mode=0o644):
    m = tarfile.TarInfo(name); m.type = type; m.mode = mode; m.linkname = link
    if type == tarfile.REGTYPE: m.size = len(data)
    return (m, data if type == tarfile.REGTYPE else None)
tar("plain", [ti("etc", tarfile.DIRTYPE, mode=0o755), ti("etc/hosts", data=b"127.0.0.1 x\n"),
              ti("bin/sh", tarfile.SYMTYPE, link="busybox"), ti("bin/ln", tarfile.LNKTYPE, link="etc/hosts")])
tar("whiteouts", [ti("a/.wh.b"), ti("c/.wh..wh..opq"), ti("d/e", data=b"x")])
tar("escape-dotdot", [ti("../evil", data=b"x")])
tar("escape-symlink", [ti("l", tarfile.SYMTYPE, link="/etc"), ti("l/passwd", data=b"x")])
tar("escape-hardlink", [ti("h", tarfile.LNKTYPE, link="../../etc/passwd")])
tar("device", [ti("dev/null", tarfile.CHRTYPE)])
tar("gnu", [ti("long/" + "x" * 200, data=b"y")], fmt=tarfile.GNU_FORMAT)
PY

fail=0 summary=()
for t in "${targets[@]}"; do
  set +e
  "$dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix="$work/$t-" -print_final_stats=1 "$work/corpus-$t" \
    >"$work/$t.log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' || true)
  if [ "$rc" -ne 0 ]; then
    echo "FAIL: fuzz_$t exited $rc"
    tail -n 20 "$work/$t.log"
    grep -m1 -A40 "ERROR:\|runtime error\|deadly signal" "$work/$t.log" || true
    for f in "$work/$t"-crash-* "$work/$t"-leak-* "$work/$t"-timeout-* "$work/$t"-oom-*; do
      [ -e "$f" ] || continue
      echo "reproducer $f:"; od -c "$f" | head -40
    done
    fail=1
    continue
  fi
  min=1000
  [ "$t" = layer ] && min=100 # a forked, chrooted extractor per input
  [ "${runs:-0}" -gt "$min" ] || { echo "FAIL: fuzz_$t: too few runs ($runs)"; fail=1; }
  summary+=("fuzz_$t: ${runs:-0} inputs")
done
((fail == 0)) || exit 1
echo "ok: $(printf '%s; ' "${summary[@]}")${seconds}s each, without a crash or leak"
