#!/bin/bash
# The main job from a fresh Debian 12 machine (as root): install, build, and
# run the most real job sbx-image does today against a throwaway store.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build
exec tests/integration/main_job.sh build/cli/sbx-image
