#!/bin/bash
# The main job until the builder lands: a real store round trip in a
# throwaway store.  A real tarball goes in as a layer (zstd at rest, addressed
# by its diff_id), with an OCI config and manifest; the image is named,
# listed, measured, verified, read back byte for byte, and garbage-collected.
# Usage: main_job.sh path/to/sbx-image
set -euo pipefail
BIN=$(realpath "${1:?usage: main_job.sh path/to/sbx-image}")
TOOL=${SBX_STORE_TOOL:-$(dirname "$BIN")/../tests/sbx_store_tool}
[[ -x $TOOL ]] || { echo "main_job: $TOOL is not built" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/sbx-main-job.XXXXXX")
trap 'rm -rf "$W"' EXIT
S=$W/store
step() { printf '\n== %s\n' "$*" >&2; }

step "a layer from a real directory tree (/usr/share/common-licenses)"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  -C /usr/share -cf "$W/layer.tar" common-licenses
diff_id=$("$TOOL" "$S" put-layer "$W/layer.tar")
read -r _ size stored zdigest < <("$TOOL" "$S" layer-info "$diff_id")
echo "diff_id $diff_id: $size bytes as tar, $stored as zstd ($zdigest)"
[[ $diff_id == "sha256:$(sha256sum <"$W/layer.tar" | cut -d' ' -f1)" ]]

step "its OCI config and manifest, stored with their exact bytes, then named"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}' \
  "$diff_id" >"$W/config.json"
cfg=$("$TOOL" "$S" put-blob "$W/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"%s","size":%d}]}' \
  "$cfg" "$(stat -c %s "$W/config.json")" "$zdigest" "$stored" >"$W/manifest.json"
m=$("$TOOL" "$S" put-manifest "$W/manifest.json" example/licenses:1 "blob:$cfg" "layer:$diff_id")
"$BIN" --store "$S" images

step "the same layer again (another name): stored once"
"$TOOL" "$S" put-layer "$W/layer.tar" >/dev/null
"$TOOL" "$S" put-manifest "$W/manifest.json" example/licenses:latest "blob:$cfg" "layer:$diff_id" >/dev/null
"$BIN" --store "$S" images
"$BIN" --store "$S" df

step "fsck re-hashes everything"
"$BIN" --store "$S" fsck

step "the layer reads back byte for byte"
"$TOOL" "$S" read-layer "$diff_id" "$W/back.tar"
cmp "$W/layer.tar" "$W/back.tar" && echo "identical"

step "gc keeps what names reach; after rm, it frees the space"
"$BIN" --store "$S" gc
"$BIN" --store "$S" rm example/licenses:1 example/licenses:latest
"$BIN" --store "$S" gc --dry-run
"$BIN" --store "$S" gc --json
"$BIN" --store "$S" df
echo "main job: OK (image $m)"
