#!/bin/bash
# Configure and build into DIR (default build/); extra args go to cmake.
# SBX_SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DSBX_SANITIZE="${SBX_SANITIZE:-OFF}" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
