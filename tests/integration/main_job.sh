#!/bin/bash
# The main job: a real build of recipes/examples/hello.yaml (base: sbx, the
# Debian bookworm base made with debootstrap from Debian's archive, then
# apt_install hello, env, workdir, copy, run_cmd) into a throwaway store; a
# rebuild that runs nothing; the image's own start command run in a build on
# top of it; then the store's view (images, df, fsck).
# Usage: main_job.sh path/to/sbx-image
set -euo pipefail
BIN=$(realpath "${1:?usage: main_job.sh path/to/sbx-image}")
SRC=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/sbx-main-job.XXXXXX")
trap 'rm -rf "$W"' EXIT
S=$W/store
step() { printf '\n== %s\n' "$*" >&2; }
sbx() { "$BIN" --store "$S" "$@"; }

step "build recipes/examples/hello.yaml (builds the debootstrap base first)"
sbx recipe show "$SRC/recipes/examples/hello.yaml" >&2 || true
digest=$(sbx build --tag example/hello:latest "$SRC/recipes/examples/hello.yaml")
echo "image $digest"

step "build it again: every step comes from the cache"
t0=$(date +%s%N)
again=$(sbx build "$SRC/recipes/examples/hello.yaml")
echo "rebuilt in $(( ($(date +%s%N) - t0) / 1000000 )) ms: $again"
[[ $again == "$digest" ]] || { echo "main job: rebuild gave another image" >&2; exit 1; }

step "run the image's start command (/app/greet.sh) in a step on top of it"
mkdir -p "$W/check"
cat >"$W/check/check.yaml" <<YAML
image: example/hello:latest
steps:
  - run_cmd: cat /app/greeting.txt && /app/greet.sh
YAML
sbx build "$W/check/check.yaml" >/dev/null

step "the store"
sbx images
sbx df
sbx fsck
echo "main job: OK (image $digest)"
