#!/bin/bash
# The whole test suite from a fresh Debian 12 machine (as root): install, build
# twice (plain, and with ASan+UBSan), run the unit tests on the plain build and
# every test on the sanitized one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build
SBX_SANITIZE=ON scripts/build.sh build-asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build && ctest -L unit --output-on-failure)
(cd build-asan && ctest --output-on-failure -j2 --timeout 900)
